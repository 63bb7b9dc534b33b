"""The claim tables XML0-XML5 as files: checked before they are written, validated after.

``build_table(kind, claim)`` writes one table of a claim; ``build_check_in(check_in)`` writes the
check-in file (XML0) at the first charge, before the claim exists. Both refuse with
:class:`ClaimError` listing every problem, and validate what they wrote against the table's
schema, so that no file leaves unchecked.
"""

from __future__ import annotations

from billing.claims.checks import check_check_in, check_claim
from billing.claims.contents import rows, tables_for
from billing.claims.data import CheckIn, Claim
from billing.claims.errors import ClaimError
from billing.claims.render import render_table
from billing.claims.validate import TABLE_KINDS, validate_table

__all__ = ["build_check_in", "build_table", "check_claim", "tables_for"]


def build_table(kind: str, claim: Claim) -> bytes:
    """The table ``kind`` (``XML0`` … ``XML5``) of the claim: UTF-8 bytes with the XML
    declaration. Refuses a claim with any problem, and a table the claim has no rows for."""
    if kind not in TABLE_KINDS:
        raise ValueError(f"unknown table {kind!r}: the tables are {', '.join(TABLE_KINDS)}")
    if kind == "XML0":
        if claim.check_in is None:
            raise ClaimError(["XML0: the claim has no check-in record"])
        return build_check_in(claim.check_in)
    problems = check_claim(claim)
    if problems:
        raise ClaimError(problems)
    records = rows(kind, claim)
    if not records:
        raise ClaimError([f"{kind}: the claim has no rows for this table"])
    return _written(kind, records)


def build_check_in(check_in: CheckIn) -> bytes:
    """The check-in file (XML0), sent alone at the first charge of a visit and at the first
    charge in each treating department; refused for emergencies."""
    problems = check_check_in(check_in)
    if problems:
        raise ClaimError(problems)
    return _written("XML0", (check_in,))


def _written(kind: str, records: tuple[object, ...]) -> bytes:
    xml_bytes, problems = render_table(kind, records)
    if problems:  # the checks render the same way; kept so that nothing unwritable slips by
        raise ClaimError(problems)
    validate_table(kind, xml_bytes)
    return xml_bytes
