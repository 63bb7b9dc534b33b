"""Reading a claim table back into its rows of text, for tests and for re-checking files."""

from __future__ import annotations

from lxml import etree

from billing.claims.errors import ClaimError
from billing.claims.layout import PATHS
from billing.claims.validate import parser


def read_table(kind: str, xml_bytes: bytes) -> list[dict[str, str]]:
    """Each row of the table as tag → text (``""`` for an empty element), in file order.

    Not validated, so that a rejected file can still be read; the root must be the table's.
    """
    if kind not in PATHS:
        raise ValueError(f"unknown table {kind!r}: the tables are {', '.join(PATHS)}")
    path = PATHS[kind]
    try:
        root = etree.fromstring(xml_bytes, parser())
    except etree.XMLSyntaxError as error:
        raise ClaimError([f"{kind}: not well-formed XML: {error}"]) from error
    if root.tag != path[0]:
        raise ClaimError([f"{kind}: the root is {root.tag}, not {path[0]}"])
    rows = [root] if len(path) == 1 else root.findall("/".join(path[1:]))
    return [
        {child.tag: child.text or "" for child in row if isinstance(child.tag, str)} for row in rows
    ]
