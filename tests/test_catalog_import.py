"""Catalog loaders: the MoH ICD-10 layout (CSV and XLSX), facility drugs and services with
new rows on change, the demo catalogs, and the `his catalog load` commands."""

import csv
import datetime as dt
import re
import shutil
import unicodedata
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from his.cli import main
from his.errors import Conflict
from his.models import Drug, Facility, Icd10Code, Icd10Version, MedicalService, RxClass
from his.services import catalog_import, catalogs
from his.services.catalog_import import CatalogFileError, load_drugs, load_moh_icd10
from his.text import fold_vi
from tests.factories import FacilityFactory

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "icd10_moh_sample.csv"
NEW_LIST_FROM = dt.date(2026, 7, 1)


def _sample_rows() -> list[list[str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _write_csv(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _write_xlsx(path: Path, rows) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        # Spreadsheets hold the row numbers as numbers, not text.
        sheet.append([int(c) if c.isdigit() and i == 0 else c or None for i, c in enumerate(row)])
    book.save(path)
    return path


def _version_codes(session, name: str) -> dict[str, Icd10Code]:
    version = session.scalar(select(Icd10Version).where(Icd10Version.name == name))
    rows = session.scalars(select(Icd10Code).where(Icd10Code.version_id == version.id))
    return {c.code: c for c in rows}


# --- ICD-10, Ministry of Health layout ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_moh_list_loads_codes_titles_and_flags(db_session, tmp_path, fmt):
    rows = _sample_rows()
    path = _write_xlsx(tmp_path / "list.xlsx", rows) if fmt == "xlsx" else SAMPLE
    _version, count = load_moh_icd10(
        db_session, path, name="TT 06/2026", valid_from=NEW_LIST_FROM, source="TT 06/2026/TT-BYT"
    )
    assert count == 12
    codes = _version_codes(db_session, "TT 06/2026")
    assert codes["J06.9"].title_vi == "Nhiễm trùng đường hô hấp trên cấp, không đặc hiệu"
    assert codes["J06.9"].title_en == "Acute upper respiratory infection, unspecified"
    assert codes["J06.9"].chapter_title == "Bệnh của hệ hô hấp"
    assert codes["G01"].not_main  # written "G01*" in the file
    assert codes["O80"].sex == "female" and codes["N40"].sex == "male"
    assert codes["R99"].cause_of_death_only and codes["R99"].not_main
    assert codes["U07.3"].never_usable
    assert not any(
        (c.not_main, c.never_usable, c.cause_of_death_only, c.sex) != (False, False, False, None)
        for c in (codes["A09"], codes["A09.0"], codes["I70.00"])
    )
    assert codes["A09"].has_children and not codes["A09.9"].has_children
    assert codes["I70.00"].parent_code == "I70.0" and codes["I70.0"].has_children
    assert codes["I70.00"].block == "I70-I79"
    # The new list is the one in force from its first day; the WHO list before.
    assert catalogs.icd10_code(db_session, "i7000", NEW_LIST_FROM).title_vi.startswith("Xơ vữa")
    assert catalogs.icd10_code(db_session, "I70.00", NEW_LIST_FROM - dt.timedelta(days=1)) is None
    assert [c.code for c in catalogs.search_icd10(db_session, "xo vua", NEW_LIST_FROM)] == [
        "I70",
        "I70.0",
        "I70.00",
    ]


def test_a_version_name_is_loaded_once(db_session):
    load_moh_icd10(db_session, SAMPLE, name="TT 06/2026", valid_from=NEW_LIST_FROM)
    with pytest.raises(Conflict, match="already loaded"):
        load_moh_icd10(db_session, SAMPLE, name="TT 06/2026", valid_from=NEW_LIST_FROM)


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (lambda r: r.__setitem__(16, "J6.9"), "row 11, column 17 (code)", "not an ICD-10 code"),
        (
            lambda r: r.__setitem__(17, "J068"),
            "row 11, column 18 (code without dot)",
            "does not match",
        ),
        (lambda r: r.__setitem__(23, "maybe"), "row 11, column 24 (not_main)", "expected x"),
        (lambda r: r.__setitem__(18, ""), "row 11, column 19 (English title)", "empty"),
        (
            lambda r: (r.__setitem__(27, "x"), r.__setitem__(28, "x")),
            "row 11, column 28/29",
            "both sexes",
        ),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_bad_row_names_row_and_column_and_loads_nothing(
    db_session, tmp_path, fmt, change, where, message
):
    rows = _sample_rows()
    change(rows[10])  # file row 11: J06.9
    writer = _write_xlsx if fmt == "xlsx" else _write_csv
    path = writer(tmp_path / f"bad.{fmt}", rows)
    before = db_session.scalar(select(func.count()).select_from(Icd10Code))
    with pytest.raises(CatalogFileError) as caught:
        load_moh_icd10(db_session, path, name="bad", valid_from=NEW_LIST_FROM)
    assert any(message in m for m in caught.value.errors[where]), caught.value.errors
    assert db_session.scalar(select(func.count()).select_from(Icd10Code)) == before
    assert db_session.scalar(select(Icd10Version).where(Icd10Version.name == "bad")) is None


def test_duplicate_codes_and_unreadable_files_are_refused(db_session, tmp_path):
    rows = _sample_rows()
    rows.append(rows[10])
    with pytest.raises(CatalogFileError) as caught:
        load_moh_icd10(
            db_session, _write_csv(tmp_path / "dup.csv", rows), name="d", valid_from=NEW_LIST_FROM
        )
    assert "J06.9 is already on row 11" in caught.value.errors["row 16, column 17 (code)"]
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("Mã,bên\n".encode("latin-1"))
    with pytest.raises(CatalogFileError, match="not UTF-8"):
        load_moh_icd10(db_session, latin1, name="l", valid_from=NEW_LIST_FROM)
    with pytest.raises(CatalogFileError, match=r"Only \.csv"):
        load_moh_icd10(db_session, tmp_path / "list.pdf", name="p", valid_from=NEW_LIST_FROM)


# --- drugs and services ---------------------------------------------------------------------

DRUG = {
    "code": "TH01",
    "active_ingredient": "Amoxicilin",
    "brand": "Amoxicilin 500",
    "strength": "500 mg",
    "dosage_form": "Viên nang cứng",
    "route": "Uống",
    "unit": "viên",
    "registration_number": "VD-12345-21",
    "national_code": "1.23",
    "bhyt_covered": "1",
    "bhyt_payment_rate": "100",
    "price": "900",
    "rx_class": "C",
}
JAN, JUN = dt.date(2026, 1, 1), dt.date(2026, 6, 1)


def _drug_rows(session, facility):
    return list(
        session.scalars(
            select(Drug).where(Drug.facility_id == facility.id).order_by(Drug.code, Drug.valid_from)
        )
    )


def test_drug_import_new_row_on_change_unchanged_untouched(db_session):
    facility = FacilityFactory()
    other = dict(DRUG, code="TH02", active_ingredient="Diazepam", strength="5 mg", rx_class="H")
    first = load_drugs(db_session, facility, [DRUG, other], JAN)
    assert first.as_dict() == {"created": 2, "changed": 0, "unchanged": 0}
    amox = _drug_rows(db_session, facility)[0]
    assert amox.ingredient_key == "amoxicillin" and amox.rx_class is RxClass.OTHER

    again = load_drugs(db_session, facility, [dict(DRUG, price="1.100"), other], JUN)
    assert again.as_dict() == {"created": 0, "changed": 1, "unchanged": 1}
    rows = _drug_rows(db_session, facility)
    assert [(r.code, r.price, r.valid_from, r.valid_to) for r in rows] == [
        ("TH01", 900, JAN, dt.date(2026, 5, 31)),
        ("TH01", 1100, JUN, None),
        ("TH02", 900, JAN, None),
    ]
    assert catalogs.drug_by_code(db_session, facility.id, "TH01", dt.date(2026, 5, 31)).price == 900
    assert catalogs.drug_by_code(db_session, facility.id, "TH01", JUN).price == 1100


def test_drug_import_errors_per_row_and_column_load_nothing(db_session):
    facility = FacilityFactory()
    bad = [
        DRUG,
        dict(DRUG, code="TH02", price="abc", rx_class="X"),
        dict(DRUG, code="TH03", bhyt_payment_rate="120", active_ingredient=""),
        dict(DRUG, code="TH01"),
    ]
    with pytest.raises(CatalogFileError) as caught:
        load_drugs(db_session, facility, bad, JAN)
    errors = caught.value.errors
    assert "'abc' is not a whole number" in errors["row 3, column price"]
    assert "'X': expected N, H, C or OTC" in errors["row 3, column rx_class"]
    assert errors["row 4, column bhyt_payment_rate"] == ["120 is outside 0–100"]
    assert errors["row 4, column active_ingredient"] == ["required"]
    assert errors["row 5, column code"] == ["TH01 is already on row 2"]
    assert _drug_rows(db_session, facility) == []


def test_changing_again_from_the_same_date_is_refused(db_session):
    facility = FacilityFactory()
    load_drugs(db_session, facility, [DRUG], JAN)
    with pytest.raises(CatalogFileError) as caught:
        load_drugs(db_session, facility, [dict(DRUG, price="1000")], JAN)
    assert "load it from a later date" in caught.value.errors["row 2, column code"][0]


def test_service_import_new_row_on_change(db_session):
    facility = FacilityFactory()
    glucose = {
        "code": "23.0075.1494",
        "name": "Định lượng Glucose (máu)",
        "kind": "lab",
        "bhyt_price": "21500",
        "service_price": "30000",
        "result_unit": "mmol/L",
        "reference_range": "3.9-6.4",
        "loinc": "2345-7",
    }
    assert catalog_import.load_services(db_session, facility, [glucose], JAN).created == 1
    changed = catalog_import.load_services(
        db_session, facility, [dict(glucose, bhyt_price="22000")], JUN
    )
    assert changed.changed == 1
    prices = db_session.execute(
        select(MedicalService.bhyt_price, MedicalService.valid_to)
        .where(MedicalService.facility_id == facility.id)
        .order_by(MedicalService.valid_from)
    ).all()
    assert prices == [(21500, dt.date(2026, 5, 31)), (22000, None)]
    with pytest.raises(CatalogFileError) as caught:
        catalog_import.load_services(db_session, facility, [dict(glucose, kind="xray")], JUN)
    assert "expected one of" in caught.value.errors["row 2, column kind"][0]


def test_demo_catalogs_parse_and_cover_every_prescription_class(db_session):
    facility = FacilityFactory()
    created = catalog_import.load_demo_catalogs(db_session, [facility], JAN)
    assert 90 <= created["drugs"] <= 140 and 45 <= created["services"] <= 60
    drugs = _drug_rows(db_session, facility)
    classes = {d.rx_class for d in drugs}
    assert classes == {RxClass.NARCOTIC, RxClass.PSYCHOTROPIC, RxClass.OTHER, RxClass.OTC}
    by_key = {d.ingredient_key: d for d in drugs}
    assert by_key["morphine"].rx_class is RxClass.NARCOTIC
    assert by_key["diazepam"].rx_class is RxClass.PSYCHOTROPIC
    assert by_key["amoxicillin"].active_ingredient == "Amoxicilin"
    assert "paracetamol" in by_key
    assert any(
        "pseudoephedrine" in k and d.rx_class is RxClass.PSYCHOTROPIC for k, d in by_key.items()
    )
    assert all(d.registration_number for d in drugs)
    services = db_session.scalars(
        select(MedicalService).where(MedicalService.facility_id == facility.id)
    ).all()
    assert {s.kind.value for s in services} == {"examination", "lab", "imaging", "procedure"}
    glucose = next(s for s in services if s.code == "23.0075.1494")
    assert (glucose.result_unit, glucose.reference_range, glucose.loinc) == (
        "mmol/L",
        "3.9-6.4",
        "2345-7",
    )
    again = catalog_import.load_demo_catalogs(db_session, [facility], JUN)
    assert again == {"drugs": 0, "services": 0}


# --- the CLI against a real migrated database -----------------------------------------------


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_loads_icd10_drugs_and_services(cli_db, tmp_path):
    loaded = _run(
        "catalog", "load", "icd10", SAMPLE, "--name", "TT 06/2026", "--valid-from", "2026-07-01"
    )
    assert loaded.exit_code == 0, loaded.output
    assert "12 codes loaded" in loaded.output
    twice = _run(
        "catalog", "load", "icd10", SAMPLE, "--name", "TT 06/2026", "--valid-from", "2026-07-01"
    )
    assert twice.exit_code == 1 and "already loaded" in twice.output

    rows = _sample_rows()
    rows[12][16] = "N4O"
    bad = _run(
        "catalog",
        "load",
        "icd10",
        _write_csv(tmp_path / "bad.csv", rows),
        "--name",
        "bad",
        "--valid-from",
        "2026-07-01",
    )
    assert bad.exit_code == 1
    assert "row 13, column 17 (code): 'N4O' is not an ICD-10 code" in bad.output

    assert _run("demo").exit_code == 0
    drugs = shutil.copy(catalog_import.demo_catalog_path("demo_drugs.csv"), tmp_path / "d.csv")
    same = _run("catalog", "load", "drugs", drugs, "--facility", "91001")
    assert same.exit_code == 0, same.output
    assert "0 new, 0 changed, 127 unchanged" in same.output
    services = catalog_import.demo_catalog_path("demo_services.csv")
    text = services.read_text("utf-8").replace(
        ",Khám Nội,examination,lần,42100,", ",Khám Nội,examination,lần,45000,"
    )
    changed_file = tmp_path / "s.csv"
    changed_file.write_text(text, "utf-8")
    changed = _run(
        "catalog",
        "load",
        "services",
        changed_file,
        "--facility",
        "91001",
        "--valid-from",
        "2030-01-01",
    )
    assert changed.exit_code == 0, changed.output
    assert "0 new, 1 changed" in changed.output
    unknown = _run("catalog", "load", "drugs", drugs, "--facility", "00000")
    assert unknown.exit_code == 1 and "No facility has the code 00000" in unknown.output

    engine = create_engine(cli_db)
    with engine.connect() as conn:
        versions = conn.scalars(select(Icd10Version.name).order_by(Icd10Version.id)).all()
        assert versions == [catalog_import.WHO_VERSION_NAME, "TT 06/2026"]
        exam = conn.execute(
            select(MedicalService.bhyt_price, MedicalService.valid_from)
            .join(Facility, Facility.id == MedicalService.facility_id)
            .where(Facility.code == "91001", MedicalService.code == "02.1896")
            .order_by(MedicalService.valid_from)
        ).all()
        assert [price for price, _ in exam] == [42100, 45000]
        assert exam[-1][1] == dt.date(2030, 1, 1)
    engine.dispose()


# --- the data files themselves --------------------------------------------------------------


def _data_rows(name: str) -> list[dict[str, str]]:
    with catalog_import.demo_catalog_path(name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_vietnamese_titles_are_clean_nfc_and_name_who_codes():
    rows = _data_rows("icd10_vi_common.csv")
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes))
    assert all(unicodedata.normalize("NFC", r["title_vi"]) == r["title_vi"] for r in rows)
    assert all(" ".join(r["title_vi"].split()) == r["title_vi"] != "" for r in rows)
    who = {r["code"] for r in catalog_import.who_icd10_rows()}
    chapters = {r["code"] for r in rows if not r["code"][1:3].isdigit()}
    assert len(chapters) == 22
    assert set(codes) - chapters <= who
    assert len(set(codes) - chapters) >= 300


def test_rule_flags_file_names_known_flags_and_ordered_ranges():
    rows = _data_rows("icd10_rule_flags.csv")
    assert {r["flag"] for r in rows} == set(catalog_import.RULE_FLAGS)
    pattern = re.compile(r"^[A-Z][0-9]{2}(\.[0-9])?$")
    assert all(pattern.match(r["first"]) and pattern.match(r["last"]) for r in rows)
    assert all(r["first"] <= r["last"] and r["source"] for r in rows)


def test_inn_spellings_are_folded_and_unambiguous():
    rows = _data_rows("inn_spellings.csv")
    variants = [r["variant"] for r in rows]
    assert len(variants) == len(set(variants))
    assert all(fold_vi(r["variant"]) == r["variant"] for r in rows)
    assert all(fold_vi(r["canonical"]) == r["canonical"] for r in rows)


def test_an_asterisk_code_is_never_main_even_unflagged(db_session, tmp_path):
    rows = _sample_rows()
    g01 = rows[6]
    assert g01[16] == "G01*"
    g01[23] = ""
    path = _write_csv(tmp_path / "asterisk.csv", rows)
    load_moh_icd10(db_session, path, name="asterisk", valid_from=NEW_LIST_FROM)
    codes = _version_codes(db_session, "asterisk")
    assert codes["G01"].not_main and not codes["J06.9"].not_main
