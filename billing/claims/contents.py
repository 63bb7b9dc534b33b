"""Which tables a claim sends, and the rows of each."""

from __future__ import annotations

from billing.claims.data import Claim


def tables_for(claim: Claim) -> list[str]:
    """The tables of the claim's envelope: XML1 always, XML2 with drugs, XML3 with services or
    supplies, XML4 with paraclinical results, XML5 with a clinical course (treatment episodes).

    Never XML0: the check-in goes alone, when the first charge is made
    (``tables.build_check_in``).
    """
    kinds = ["XML1"]
    for kind, rows in (
        ("XML2", claim.drugs),
        ("XML3", claim.services),
        ("XML4", claim.results),
        ("XML5", claim.course),
    ):
        if rows:
            kinds.append(kind)
    return kinds


def rows(kind: str, claim: Claim) -> tuple[object, ...]:
    """The records of the table ``kind`` in the claim (XML1: the summary alone)."""
    match kind:
        case "XML0":
            return () if claim.check_in is None else (claim.check_in,)
        case "XML1":
            return (claim.summary,)
        case "XML2":
            return claim.drugs
        case "XML3":
            return claim.services
        case "XML4":
            return claim.results
        case "XML5":
            return claim.course
    raise ValueError(f"unknown table {kind!r}")
