"""What must hold before a claim's tables are written, reported all at once.

Three layers, each reporting the table, row and field: the rules here (links between tables,
line amounts, header totals, cards, times, diagnoses), then every value written with its kind
(``formats``: a float is refused there), then the table's schema (lengths, codes, patterns).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from decimal import Decimal

from billing.claims.amounts import drug_amounts, service_amounts
from billing.claims.contents import rows, tables_for
from billing.claims.data import (
    CheckIn,
    Claim,
    CourseEntry,
    DrugLine,
    ResultLine,
    ServiceLine,
    Summary,
)
from billing.claims.render import render_table, row_label
from billing.claims.validate import schema_problems

MAX_SECONDARY_DIAGNOSES = 12

# QĐ 4750 exempts emergencies from check-in. [verify] no sub-codes of 2 are in use.
EMERGENCY = "2"

Row = CheckIn | DrugLine | ServiceLine | ResultLine | CourseEntry


def is_emergency(ma_doituong_kcb: object) -> bool:
    return ma_doituong_kcb == EMERGENCY


def check_claim(claim: Claim) -> list[str]:
    """Every problem of the claim (empty when its tables may be written), and of its check-in
    record when it has one."""
    summary = claim.summary
    problems = [
        *_links(claim),
        *_cards("XML1", summary),
        *_diagnoses(summary),
        *_times("XML1", summary.ngay_vao, summary.ngay_vao_noi_tru, summary.ngay_ra),
        *_drug_lines(claim.drugs),
        *_service_lines(claim.services),
        *_totals(claim),
    ]
    for kind in tables_for(claim):
        problems += _written(kind, rows(kind, claim))
    if claim.check_in is not None:
        problems += check_check_in(claim.check_in)
    return problems


def check_check_in(check_in: CheckIn) -> list[str]:
    """Every problem of a check-in record (XML0)."""
    problems = []
    if is_emergency(check_in.ma_doituong_kcb):
        problems.append(f"XML0: not sent for emergencies (MA_DOITUONG_KCB {EMERGENCY})")
    pairs = (
        (check_in.ma_dich_vu, check_in.ten_dich_vu),
        (check_in.ma_thuoc, check_in.ten_thuoc),
        (check_in.ma_vat_tu, check_in.ten_vat_tu),
    )
    # [verify] exactly one pair, both halves: the first charge is one service, drug or supply.
    named = [pair for pair in pairs if any(pair)]
    if len(named) != 1 or not all(named[0]):
        problems.append(
            "XML0: name the first charge with one pair, "
            "MA_DICH_VU/TEN_DICH_VU, MA_THUOC/TEN_THUOC or MA_VAT_TU/TEN_VAT_TU"
        )
    problems += _cards("XML0", check_in)
    problems += _times("XML0", check_in.ngay_vao, check_in.ngay_vao_noi_tru, None)
    problems += _written("XML0", (check_in,))
    return problems


def _written(kind: str, records: Sequence[object]) -> list[str]:
    xml_bytes, problems = render_table(kind, records)
    # A table whose values could not all be written would only repeat them as schema errors.
    return problems or schema_problems(kind, xml_bytes)


def _is_number(value: object) -> bool:
    return isinstance(value, Decimal | int) and not isinstance(value, bool)


def _numbers(values: Iterable[object]) -> bool:
    # Arithmetic on a float or None would raise; those values are reported when written.
    return all(_is_number(value) for value in values)


def _links(claim: Claim) -> list[str]:
    expected = claim.summary.ma_lk
    problems = []
    tables: list[tuple[str, Sequence[Row]]] = [
        ("XML2", claim.drugs),
        ("XML3", claim.services),
        ("XML4", claim.results),
        ("XML5", claim.course),
    ]
    if claim.check_in is not None:
        tables.insert(0, ("XML0", (claim.check_in,)))
    for kind, records in tables:
        for number, record in enumerate(records, start=1):
            if record.ma_lk != expected:
                label = row_label(kind, number)
                problems.append(f"{label} MA_LK: {record.ma_lk!r}, not the summary's {expected!r}")
    return problems


def _cards(kind: str, record: Summary | CheckIn) -> list[str]:
    """A patient with two cards in the episode has one value per card in each card field, in
    the same order. [verify] the four fields are aligned this way."""
    cards = record.ma_the_bhyt
    if not isinstance(cards, tuple):
        return []  # reported when written
    problems = []
    for tag, values in (
        ("MA_DKBD", record.ma_dkbd),
        ("GT_THE_TU", record.gt_the_tu),
        ("GT_THE_DEN", record.gt_the_den),
    ):
        if isinstance(values, tuple) and len(values) != len(cards):
            problems.append(
                f"{kind} {tag}: {len(values)} value(s) for {len(cards)} card(s) in MA_THE_BHYT"
            )
    if problems:
        return problems
    for number, (start, end) in enumerate(
        zip(record.gt_the_tu, record.gt_the_den, strict=True), start=1
    ):
        if isinstance(start, dt.date) and isinstance(end, dt.date) and start > end:
            problems.append(
                f"{kind} GT_THE_TU: card {number} is valid from {start.isoformat()}, "
                f"after its end {end.isoformat()} (GT_THE_DEN)"
            )
    return problems


def _diagnoses(summary: Summary) -> list[str]:
    codes = summary.ma_benh_kt
    if isinstance(codes, tuple) and len(codes) > MAX_SECONDARY_DIAGNOSES:
        return [
            f"XML1 MA_BENH_KT: {len(codes)} secondary diagnoses, at most {MAX_SECONDARY_DIAGNOSES}"
        ]
    return []


def _times(
    kind: str,
    arrival: dt.datetime,
    admission: dt.datetime | None,
    departure: dt.datetime | None,
) -> list[str]:
    """NGAY_VAO ≤ NGAY_VAO_NOI_TRU ≤ NGAY_RA, for those present."""
    moments = [
        (tag, moment)
        for tag, moment in (
            ("NGAY_VAO", arrival),
            ("NGAY_VAO_NOI_TRU", admission),
            ("NGAY_RA", departure),
        )
        if isinstance(moment, dt.datetime) and moment.utcoffset() is not None
    ]
    return [
        f"{kind} {later_tag}: {later.isoformat()} is before {earlier_tag} {earlier.isoformat()}"
        for (earlier_tag, earlier), (later_tag, later) in itertools.pairwise(moments)
        if later < earlier
    ]


def _split(label: str, line: DrugLine | ServiceLine) -> list[str]:
    """Who pays what adds up to the line: the fund, the co-payment, the patient's own share and
    the other sources. [verify] T_NGUONKHAC belongs in this sum."""
    parts = (
        line.t_nguonkhac_nsnn,
        line.t_nguonkhac_vtnn,
        line.t_nguonkhac_vttn,
        line.t_nguonkhac_cl,
    )
    payers = (line.t_bhtt, line.t_bncct, line.t_bntt, line.t_nguonkhac)
    problems = []
    if _numbers((*parts, line.t_nguonkhac)) and sum(parts) != line.t_nguonkhac:
        problems.append(
            f"{label} T_NGUONKHAC: {line.t_nguonkhac}, but its parts add up to {sum(parts)}"
        )
    if _numbers((*payers, line.thanh_tien_bv)) and sum(payers) != line.thanh_tien_bv:
        problems.append(
            f"{label} THANH_TIEN_BV: {line.thanh_tien_bv}, but T_BHTT + T_BNCCT + T_BNTT"
            f" + T_NGUONKHAC = {sum(payers)}"
        )
    return problems


def _drug_lines(lines: Sequence[DrugLine]) -> list[str]:
    problems = []
    for number, line in enumerate(lines, start=1):
        label = row_label("XML2", number)
        if _numbers((line.so_luong, line.don_gia, line.tyle_tt_bh)):
            hospital, insured = drug_amounts(line)
            problems += _compare(
                label, "THANH_TIEN_BV", line.thanh_tien_bv, hospital, "SO_LUONG × DON_GIA"
            )
            problems += _compare(
                label,
                "THANH_TIEN_BH",
                line.thanh_tien_bh,
                insured,
                "SO_LUONG × DON_GIA × TYLE_TT_BH / 100",
            )
        problems += _split(label, line)
    return problems


def _service_lines(lines: Sequence[ServiceLine]) -> list[str]:
    problems = []
    for number, line in enumerate(lines, start=1):
        label = row_label("XML3", number)
        if _numbers(
            (line.so_luong, line.don_gia_bv, line.don_gia_bh, line.tyle_tt_dv, line.tyle_tt_bh)
        ):
            hospital, insured = service_amounts(line)
            problems += _compare(
                label,
                "THANH_TIEN_BV",
                line.thanh_tien_bv,
                hospital,
                "SO_LUONG × DON_GIA_BV × TYLE_TT_DV / 100",
            )
            problems += _compare(
                label,
                "THANH_TIEN_BH",
                line.thanh_tien_bh,
                insured,
                "SO_LUONG × DON_GIA_BH × TYLE_TT_DV / 100 × TYLE_TT_BH / 100",
            )
        problems += _split(label, line)
        # [verify] a supply is named by MA_VAT_TU/TEN_VAT_TU, anything else by
        # MA_DICH_VU/TEN_DICH_VU.
        needed = ("MA_VAT_TU", "TEN_VAT_TU") if line.is_supply else ("MA_DICH_VU", "TEN_DICH_VU")
        what = "a supply" if line.is_supply else "a service"
        for tag in needed:
            if not getattr(line, tag.lower()):
                problems.append(f"{label} {tag}: required for {what} (MA_NHOM {line.ma_nhom})")
    return problems


def _compare(label: str, tag: str, written: object, expected: Decimal, formula: str) -> list[str]:
    if _is_number(written) and written != expected:
        return [f"{label} {tag}: {written}, but {formula} = {expected}"]
    return []


def _totals(claim: Claim) -> list[str]:
    """The summary's totals are the sums of the detail lines."""
    summary = claim.summary
    lines: list[DrugLine | ServiceLine] = [*claim.drugs, *claim.services]

    def total(values: Iterable[object]) -> Decimal | None:
        values = list(values)
        return sum(values, Decimal(0)) if _numbers(values) else None  # type: ignore[arg-type]

    expected = [
        (
            "T_THUOC",
            summary.t_thuoc,
            total(line.thanh_tien_bv for line in claim.drugs),
            "the drug lines' THANH_TIEN_BV (XML2)",
        ),
        (
            "T_VTYT",
            summary.t_vtyt,
            total(line.thanh_tien_bv for line in claim.services if line.is_supply),
            "the supply lines' THANH_TIEN_BV (XML3)",
        ),
        (
            "T_TONGCHI_BV",
            summary.t_tongchi_bv,
            total(line.thanh_tien_bv for line in lines),
            "THANH_TIEN_BV of XML2 and XML3",
        ),
        (
            "T_TONGCHI_BH",
            summary.t_tongchi_bh,
            total(line.thanh_tien_bh for line in lines),
            "THANH_TIEN_BH of XML2 and XML3",
        ),
        ("T_BNTT", summary.t_bntt, total(line.t_bntt for line in lines), "T_BNTT of XML2 and XML3"),
        (
            "T_BNCCT",
            summary.t_bncct,
            total(line.t_bncct for line in lines),
            "T_BNCCT of XML2 and XML3",
        ),
        ("T_BHTT", summary.t_bhtt, total(line.t_bhtt for line in lines), "T_BHTT of XML2 and XML3"),
        (
            "T_NGUONKHAC",
            summary.t_nguonkhac,
            total(line.t_nguonkhac for line in lines),
            "T_NGUONKHAC of XML2 and XML3",
        ),
    ]
    problems = [
        f"XML1 {tag}: {written}, but {source} add up to {sums}"
        for tag, written, sums, source in expected
        if sums is not None and _is_number(written) and written != sums
    ]
    # The fund pays the insured total less the co-payment and what other sources pay.
    # [verify] T_NGUONKHAC is subtracted too (DOMAIN.md writes T_BHTT = T_TONGCHI_BH - T_BNCCT,
    # which is the same whenever there is no other source).
    parts = (summary.t_bhtt, summary.t_tongchi_bh, summary.t_bncct, summary.t_nguonkhac)
    if _numbers(parts):
        fund = summary.t_tongchi_bh - summary.t_bncct - summary.t_nguonkhac
        if summary.t_bhtt != fund:
            problems.append(
                f"XML1 T_BHTT: {summary.t_bhtt}, but T_TONGCHI_BH - T_BNCCT - T_NGUONKHAC = {fund}"
            )
    return problems
