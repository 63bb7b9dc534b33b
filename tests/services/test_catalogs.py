"""Catalog search (accent-free words, code prefixes, validity dates) and active-ingredient
keys; the ICD-10 list every migrated database starts with."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from his.models import Icd10Code, Icd10Version, SexRestriction
from his.services import catalogs
from his.services.catalog_import import WHO_VERSION_NAME, insert_icd10_version
from his.services.catalogs import ingredient_key, ingredient_keys, search_text
from tests.catalog_data import make_drug, make_service
from tests.factories import FacilityFactory

TODAY = dt.date(2026, 11, 28)


def _codes(rows):
    return [r.code for r in rows]


# --- the WHO list of migration 0006 ---------------------------------------------------------


def test_migrated_database_has_the_who_list_with_vietnamese_titles(db_session):
    version = catalogs.icd10_version_on(db_session, TODAY)
    assert version.name == WHO_VERSION_NAME
    count, vietnamese = db_session.execute(
        select(func.count(), func.count(Icd10Code.title_vi)).where(
            Icd10Code.version_id == version.id
        )
    ).one()
    assert count > 12000
    assert vietnamese >= 300
    j069 = catalogs.icd10_code(db_session, "J069", TODAY)
    assert j069.title_vi == "Nhiễm trùng đường hô hấp trên cấp, không đặc hiệu"
    assert j069.title_en == "Acute upper respiratory infection, unspecified"
    assert (j069.chapter, j069.block, j069.parent_code) == ("X", "J00-J06", "J06")
    assert j069.title == j069.title_vi
    assert catalogs.icd10_code(db_session, "J18", TODAY).has_children
    assert not catalogs.icd10_code(db_session, "J18.9", TODAY).has_children


@pytest.mark.parametrize(
    ("code", "flag", "expected"),
    [
        ("O80", "sex", SexRestriction.FEMALE),
        ("Z34.0", "sex", SexRestriction.FEMALE),
        ("N40", "sex", SexRestriction.MALE),
        ("C61", "sex", SexRestriction.MALE),
        ("D07.4", "sex", SexRestriction.MALE),
        ("D07", "sex", None),  # its subdivisions differ by sex
        ("J06.9", "sex", None),
        ("G01", "not_main", True),  # asterisk manifestation code
        ("W54", "not_main", True),  # external cause
        ("B96.2", "not_main", True),  # infectious agent, supplementary
        ("Z00.0", "not_main", False),  # a check-up is a main reason for contact
        ("I10", "not_main", False),
        ("U07.5", "never_usable", True),
        ("U07.1", "never_usable", False),
        ("R99", "cause_of_death_only", True),
        ("R50.9", "cause_of_death_only", False),
    ],
)
def test_rule_flags_of_the_who_list(db_session, code, flag, expected):
    assert getattr(catalogs.icd10_code(db_session, code, TODAY), flag) == expected


# --- ICD-10 search --------------------------------------------------------------------------


def test_icd10_search_without_accents_finds_vietnamese_titles(db_session):
    plain = catalogs.search_icd10(db_session, "viem hong cap", TODAY)
    accented = catalogs.search_icd10(db_session, "Viêm HỌNG cấp", TODAY)
    assert "J02.9" in _codes(plain)
    assert _codes(plain) == _codes(accented)
    assert _codes(catalogs.search_icd10(db_session, "cam thuong", TODAY)) == ["J00"]
    assert "E11.9" in _codes(catalogs.search_icd10(db_session, "dai thao duong", TODAY, 50))


def test_icd10_search_matches_word_starts_not_inner_letters(db_session):
    # "hong" is inside "không": only titles with a word starting with "hong" match.
    found = catalogs.search_icd10(db_session, "hong", TODAY, 100)
    assert found
    assert all(" hong" in r.search_key for r in found)
    assert catalogs.search_icd10(db_session, "viem xyzzyq", TODAY) == []


def test_icd10_search_finds_english_titles_too(db_session):
    assert "J18.9" in _codes(catalogs.search_icd10(db_session, "pneumonia unspecified", TODAY))


@pytest.mark.parametrize("query", ["j18", "J18", "j 18"])
def test_icd10_code_prefix_comes_first_in_code_order(db_session, query):
    found = catalogs.search_icd10(db_session, query, TODAY, 10)
    assert _codes(found)[:6] == ["J18", "J18.0", "J18.1", "J18.2", "J18.8", "J18.9"]


@pytest.mark.parametrize("query", ["J18.9", "j189", "j18.9"])
def test_icd10_code_with_or_without_dot(db_session, query):
    assert _codes(catalogs.search_icd10(db_session, query, TODAY))[0] == "J18.9"


def test_icd10_search_uses_the_list_in_force_on_the_date(db_session):
    row = {
        "code": "J06.9",
        "title_en": "Acute upper respiratory infection, unspecified",
        "title_vi": "Nhiễm khuẩn hô hấp trên cấp (danh mục mới)",
        "search_key": search_text("J06.9", "J069", "Nhiễm khuẩn hô hấp trên cấp (danh mục mới)"),
        "chapter": "X",
        "chapter_title": None,
        "block": None,
        "block_title": None,
        "parent_code": "J06",
        "has_children": False,
        "not_main": False,
        "never_usable": False,
        "cause_of_death_only": False,
        "sex": None,
    }
    insert_icd10_version(
        db_session.connection(),
        name="Test list 2026",
        source="test",
        valid_from=dt.date(2026, 7, 1),
        valid_to=None,
        rows=[row],
    )
    before = catalogs.search_icd10(db_session, "j06.9", dt.date(2026, 6, 30))
    after = catalogs.search_icd10(db_session, "j06.9", dt.date(2026, 7, 1))
    assert before[0].version.name == WHO_VERSION_NAME
    assert after[0].title_vi == "Nhiễm khuẩn hô hấp trên cấp (danh mục mới)"
    assert catalogs.search_icd10(db_session, "danh muc moi", dt.date(2026, 6, 30)) == []
    assert db_session.scalar(select(func.count()).select_from(Icd10Version)) == 2


def test_icd10_search_limit_is_capped(db_session):
    assert len(catalogs.search_icd10(db_session, "a", TODAY, 10_000)) == catalogs.SEARCH_LIMIT_MAX
    assert catalogs.search_icd10(db_session, "  ", TODAY) == []


# --- drugs and services ---------------------------------------------------------------------


@pytest.fixture
def pharmacy(db_session):
    facility = FacilityFactory()
    other = FacilityFactory()
    drugs = {
        "amox": make_drug(db_session, facility, "TH01", "Amoxicilin", brand="Amoxicilin 500"),
        "para": make_drug(db_session, facility, "TH02", "Paracetamol", brand="Hapacol"),
        "old": make_drug(db_session, facility, "TH03", "Cefalexin", valid_to=dt.date(2026, 1, 31)),
        "new": make_drug(
            db_session, facility, "TH03", "Cefalexin", valid_from=dt.date(2026, 2, 1), price=1200
        ),
        "off": make_drug(db_session, facility, "TH04", "Ampicilin", active=False),
        "elsewhere": make_drug(db_session, other, "TH05", "Amoxicilin"),
    }
    return facility, drugs


def test_drug_search_any_inn_spelling_and_accents(db_session, pharmacy):
    facility, drugs = pharmacy
    for query in ("amoxicillin", "AMOXICILIN", "amox"):
        assert catalogs.search_drugs(db_session, facility.id, query, TODAY) == [drugs["amox"]]
    assert catalogs.search_drugs(db_session, facility.id, "acetaminophen", TODAY) == [drugs["para"]]
    assert catalogs.search_drugs(db_session, facility.id, "hapacol 500", TODAY) == [drugs["para"]]


def test_drug_search_by_code_prefix_first(db_session, pharmacy):
    facility, _drugs = pharmacy
    found = catalogs.search_drugs(db_session, facility.id, "th0", TODAY)
    assert [d.code for d in found] == ["TH01", "TH02", "TH03"]


def test_drug_search_only_rows_valid_on_the_date_and_active(db_session, pharmacy):
    facility, drugs = pharmacy
    assert catalogs.search_drugs(db_session, facility.id, "cefalexin", TODAY) == [drugs["new"]]
    assert catalogs.search_drugs(db_session, facility.id, "cephalexin", dt.date(2026, 1, 15)) == [
        drugs["old"]
    ]
    assert catalogs.search_drugs(db_session, facility.id, "ampicilin", TODAY) == []
    assert (
        catalogs.drug_by_code(db_session, facility.id, "TH03", dt.date(2026, 1, 31)) == drugs["old"]
    )


def test_service_search(db_session):
    facility = FacilityFactory()
    xray = make_service(db_session, facility, "18.0067.0028", "Chụp X-quang ngực thẳng")
    glucose = make_service(db_session, facility, "23.0075.1494", "Định lượng Glucose (máu)")
    make_service(
        db_session, facility, "23.0083.1523", "Định lượng HbA1c", valid_from=dt.date(2027, 1, 1)
    )
    assert catalogs.search_services(db_session, facility.id, "x quang nguc", TODAY) == [xray]
    assert catalogs.search_services(db_session, facility.id, "dinh luong", TODAY) == [glucose]
    assert catalogs.search_services(db_session, facility.id, "23.00", TODAY) == [glucose]
    assert catalogs.search_services(db_session, FacilityFactory().id, "glucose", TODAY) == []


# --- active ingredients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("Amoxicilin", {"amoxicillin"}),
        ("AMOXICILLIN 500 mg", {"amoxicillin"}),
        (
            "Amoxicilin (dưới dạng amoxicilin trihydrat) 500 mg + Acid clavulanic 125 mg",
            {"amoxicillin", "clavulanic"},
        ),
        ("Paracetamol", {"paracetamol"}),
        ("acetaminophen", {"paracetamol"}),
        ("Cephalexin", {"cefalexin"}),
        ("Morphin hydroclorid 10 mg/ml", {"morphine"}),
        ("Sulfamethoxazol + Trimethoprim", {"sulfamethoxazole", "trimethoprim"}),
        ("Co-trimoxazole", {"sulfamethoxazole", "trimethoprim"}),
        ("Loratadin, Pseudoephedrin sulfat", {"loratadine", "pseudoephedrine"}),
        ("Natri clorid 0,9%", {"natri clorid"}),
        ("Vitamin B1 + Vitamin B6 + Vitamin B12", {"thiamine", "pyridoxine", "cyanocobalamin"}),
        ("Dị ứng với Amoxicilin", {"amoxicillin"}),
        ("allergic to cephalexin", {"cefalexin"}),
        ("", set()),
    ],
)
def test_ingredient_keys(text, keys):
    assert ingredient_keys(text) == keys


def test_allergy_matches_a_drug_across_spellings():
    allergy = ingredient_keys("amoxicillin")
    assert allergy & ingredient_keys("Amoxicilin + Acid clavulanic")
    assert not allergy & ingredient_keys("Ampicilin")
    assert ingredient_key("Acid clavulanic + Amoxicilin") == "amoxicillin+clavulanic"
