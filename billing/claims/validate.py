"""Our XSDs, loaded once, and validation of every file before it leaves.

The tables' schemas are versioned by the decision they follow (``schemas/qd4750-3176``); the
envelope's is not, as the same envelope has carried every version of the tables.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

from billing.claims.errors import ClaimError

SCHEMA_VERSION = "qd4750-3176"
SCHEMAS = Path(__file__).parent / "schemas"
TABLE_KINDS = ("XML0", "XML1", "XML2", "XML3", "XML4", "XML5")
ENVELOPE = "GIAMDINHHS"


def parser() -> etree.XMLParser:
    """A parser for files that may come from elsewhere: no entities, no network, no DTD."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def schema_file(kind: str) -> Path:
    if kind == ENVELOPE:
        return SCHEMAS / "giamdinhhs.xsd"
    if kind not in TABLE_KINDS:
        raise ValueError(f"no schema for {kind!r}: the tables are {', '.join(TABLE_KINDS)}")
    return SCHEMAS / SCHEMA_VERSION / f"{kind.lower()}.xsd"


@cache
def _schema(kind: str) -> etree.XMLSchema:
    # Parsed from the file so that xs:include finds types.xsd next to it.
    return etree.XMLSchema(etree.parse(str(schema_file(kind)), parser()))


def schema_problems(kind: str, xml_bytes: bytes) -> list[str]:
    """Every way the file breaks its schema, each with its line and element; empty if valid."""
    try:
        document = etree.fromstring(xml_bytes, parser())
    except etree.XMLSyntaxError as error:
        return [f"{kind}: not well-formed XML: {error}"]
    schema = _schema(kind)
    if schema.validate(document):
        return []
    return [f"{kind} line {entry.line} {entry.path}: {entry.message}" for entry in schema.error_log]


def validate_table(kind: str, xml_bytes: bytes) -> None:
    """Raises :class:`ClaimError` listing every schema error of the table ``kind``."""
    problems = schema_problems(kind, xml_bytes)
    if problems:
        raise ClaimError(problems)


def validate_envelope(xml_bytes: bytes) -> None:
    """Raises :class:`ClaimError` listing every schema error of the GIAMDINHHS envelope."""
    problems = schema_problems(ENVELOPE, xml_bytes)
    if problems:
        raise ClaimError(problems)
