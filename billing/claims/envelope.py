"""The GIAMDINHHS envelope: one visit's tables, base64-encoded, for the assessment gateway.

The envelope leaves an empty CHUKYDONVI where ``signing.sign_envelope`` puts the facility's
signature.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from lxml import etree

from billing.claims.contents import tables_for
from billing.claims.data import Claim
from billing.claims.errors import ClaimError
from billing.claims.formats import date8
from billing.claims.render import SIGNATURE_PLACE, document_bytes
from billing.claims.tables import build_table
from billing.claims.validate import parser, validate_envelope

ENVELOPE_TABLES = ("XML1", "XML2", "XML3", "XML4", "XML5")


def build_envelope(
    facility_code: str, claim: Claim, created: dt.date, tables: list[str] | None = None
) -> bytes:
    """The envelope of one visit (SOLUONGHOSO 1: the API takes one visit per file) holding the
    tables ``tables``, by default those the claim sends (``tables_for``), each checked and
    validated by ``build_table``; the envelope itself is validated before it is returned."""
    kinds = tables_for(claim) if tables is None else list(tables)
    problems = []
    if facility_code != claim.summary.ma_cskcb:
        problems.append(
            f"GIAMDINHHS MACSKCB: {facility_code!r}, but the claim is of {claim.summary.ma_cskcb!r}"
        )
    if "XML0" in kinds:
        problems.append("GIAMDINHHS: XML0 is not sent in the envelope but alone, at check-in")
    unknown = [kind for kind in kinds if kind not in ENVELOPE_TABLES and kind != "XML0"]
    if unknown:
        problems.append(f"GIAMDINHHS: no such table {', '.join(unknown)}")
    if "XML1" not in kinds:
        problems.append("GIAMDINHHS: XML1 is in every envelope")
    if len(set(kinds)) != len(kinds):
        problems.append("GIAMDINHHS: each table once")
    if problems:
        raise ClaimError(problems)

    root = etree.Element("GIAMDINHHS")
    etree.SubElement(etree.SubElement(root, "THONGTINDONVI"), "MACSKCB").text = facility_code
    records = etree.SubElement(root, "THONGTINHOSO")
    etree.SubElement(records, "NGAYLAP").text = date8(created)
    etree.SubElement(records, "SOLUONGHOSO").text = "1"
    visit = etree.SubElement(etree.SubElement(records, "DANHSACHHOSO"), "HOSO")
    for kind in sorted(kinds, key=ENVELOPE_TABLES.index):
        file = etree.SubElement(visit, "FILEHOSO")
        etree.SubElement(file, "LOAIHOSO").text = kind
        content = base64.b64encode(build_table(kind, claim)).decode("ascii")
        etree.SubElement(file, "NOIDUNGFILE").text = content
    etree.SubElement(root, SIGNATURE_PLACE)
    envelope = document_bytes(root, indent=True)
    validate_envelope(envelope)
    return envelope


def read_envelope(xml_bytes: bytes) -> dict[str, bytes]:
    """Table kind → the table's bytes, exactly as they were encoded, for a one-visit envelope.

    Validated against the envelope schema first (a signature in CHUKYDONVI is allowed). To rely
    on the content of a signed envelope, read what ``signing.verify_envelope`` returns.
    """
    validate_envelope(xml_bytes)
    root = etree.fromstring(xml_bytes, parser())
    visits = root.findall("THONGTINHOSO/DANHSACHHOSO/HOSO")
    declared = root.findtext("THONGTINHOSO/SOLUONGHOSO")
    if len(visits) != 1 or declared != "1":
        raise ClaimError(
            [f"GIAMDINHHS: {len(visits)} visit(s), SOLUONGHOSO {declared}: one visit per file"]
        )
    tables: dict[str, bytes] = {}
    for file in visits[0].iterfind("FILEHOSO"):
        kind = file.findtext("LOAIHOSO", "")
        try:
            # base64Binary may be wrapped in lines; the characters themselves must all be base64.
            content = "".join(file.findtext("NOIDUNGFILE", "").split())
            tables[kind] = base64.b64decode(content, validate=True)
        except binascii.Error as error:
            raise ClaimError([f"GIAMDINHHS {kind} NOIDUNGFILE: not base64: {error}"]) from error
    return tables
