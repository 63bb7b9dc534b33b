"""The layout of each table (element path, fields in order, their kinds and which are required),
read from the table's schema so that the schema stays the one place where it is written."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lxml import etree

from billing.claims.formats import WRITERS
from billing.claims.validate import parser, schema_file

XS = "{http://www.w3.org/2001/XMLSchema}"

# Root, list and row elements of each table, checked against the BHXH guide's samples and
# public HIS code. XML1 is a single record without a list.
PATHS: dict[str, tuple[str, ...]] = {
    "XML0": ("CHI_TIEU_TRANG_THAI_KCB", "DSACH_TRANG_THAI_KCB", "TRANG_THAI_KCB"),
    "XML1": ("TONG_HOP",),
    "XML2": ("CHITIEU_CHITIET_THUOC", "DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC"),
    "XML3": ("CHITIEU_CHITIET_DVKT_VTYT", "DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT"),
    "XML4": ("CHITIEU_CHITIET_DICHVUCANLAMSANG", "DSACH_CHI_TIET_CLS", "CHI_TIET_CLS"),
    "XML5": (
        "CHITIEU_CHITIET_DIENBIENLAMSANG",
        "DSACH_CHI_TIET_DIEN_BIEN_BENH",
        "CHI_TIET_DIEN_BIEN_BENH",
    ),
}

ROW_NUMBER = "STT"  # numbered by the table, not held by the data


@dataclass(frozen=True)
class Field:
    tag: str
    kind: str  # a value type of types.xsd: a key of formats.WRITERS
    required: bool

    @property
    def attribute(self) -> str:
        return self.tag.lower()


@dataclass(frozen=True)
class Layout:
    kind: str
    path: tuple[str, ...]
    fields: tuple[Field, ...]

    @property
    def row(self) -> str:
        return self.path[-1]


@cache
def layout(kind: str) -> Layout:
    if kind not in PATHS:
        raise ValueError(f"no layout for {kind!r}: the tables are {', '.join(PATHS)}")
    path = PATHS[kind]
    schema = etree.parse(str(schema_file(kind)), parser())
    rows = schema.findall(f".//{XS}element[@name='{path[-1]}']")
    if len(rows) != 1:
        raise LookupError(f"{kind}: the schema declares {path[-1]} {len(rows)} times")
    elements = rows[0].findall(f"{XS}complexType/{XS}sequence/{XS}element")
    return Layout(kind, path, tuple(_field(kind, element) for element in elements))


def _field(kind: str, element: etree._Element) -> Field:
    tag = element.get("name")
    restriction = element.find(f"{XS}simpleType/{XS}restriction")
    value_type = element.get("type") if restriction is None else restriction.get("base")
    if tag is None or value_type not in WRITERS:
        # The schema's conventions are what the tables rely on: fail loudly when one is broken.
        raise LookupError(f"{kind} {tag}: type {value_type!r} is not a type of types.xsd")
    min_length = None if restriction is None else restriction.find(f"{XS}minLength")
    required = min_length is not None and int(min_length.get("value", "0")) > 0
    return Field(tag, value_type, required)
