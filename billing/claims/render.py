"""Writing a table's rows as XML, collecting every value that cannot be written.

This is the unchecked step: ``tables.build_table`` checks the claim first and validates after.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from billing.claims.formats import render
from billing.claims.layout import ROW_NUMBER, layout

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

# Where the facility's signature goes: last in the envelope, and last in the check-in file,
# which is sent alone and so carries its own.
SIGNATURE_PLACE = "CHUKYDONVI"


def document_bytes(root: etree._Element, *, indent: bool) -> bytes:
    """A whole file: the XML declaration, the document, a final newline. ``indent`` only for
    documents being built: indenting a signed one would change what was signed."""
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=indent)
    return XML_DECLARATION + body.rstrip(b"\n") + b"\n"


def row_label(kind: str, number: int) -> str:
    return kind if kind == "XML1" else f"{kind} row {number}"


def render_table(kind: str, rows: Sequence[object]) -> tuple[bytes, list[str]]:
    """The table's bytes (UTF-8, with the XML declaration) and the problems met writing it.

    A value that cannot be written (a float, a naive datetime, a str where a tuple belongs, a
    required value missing) is left empty and reported as ``"<table> [row n] <TAG>: why"``.
    """
    table = layout(kind)
    if len(table.path) == 1 and len(rows) != 1:
        raise ValueError(f"{kind} holds exactly one record, not {len(rows)}")
    root = etree.Element(table.path[0])
    parent = root
    for tag in table.path[1:-1]:
        parent = etree.SubElement(parent, tag)
    problems: list[str] = []
    for number, row in enumerate(rows, start=1):
        element = root if len(table.path) == 1 else etree.SubElement(parent, table.row)
        label = row_label(kind, number)
        for field in table.fields:
            value = number if field.tag == ROW_NUMBER else getattr(row, field.attribute)
            try:
                written = render(field.kind, value)
            except (TypeError, ValueError) as error:
                problems.append(f"{label} {field.tag}: {error}")
                written = ""
            else:
                if field.required and not written:
                    problems.append(f"{label} {field.tag}: required, but empty")
            etree.SubElement(element, field.tag).text = written or None
    if kind == "XML0":
        etree.SubElement(root, SIGNATURE_PLACE)
    # Indented, so that a schema error's line number points at one field.
    return document_bytes(root, indent=True), problems
