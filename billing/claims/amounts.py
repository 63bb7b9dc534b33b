"""The amounts of a detail line as QĐ 4750 computes them, rounded as the tables are written.

Exact decimals throughout; the only rounding is the last step, to 2 places, half up
([verify]: "làm tròn" read as the usual half-up rounding).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from billing.claims.data import DrugLine, ServiceLine

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def round_money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def drug_amounts(line: DrugLine) -> tuple[Decimal, Decimal]:
    """(THANH_TIEN_BV, THANH_TIEN_BH) of an XML2 line:
    SO_LUONG × DON_GIA, and that × TYLE_TT_BH / 100."""
    hospital = line.so_luong * line.don_gia
    return round_money(hospital), round_money(hospital * line.tyle_tt_bh / HUNDRED)


def service_amounts(line: ServiceLine) -> tuple[Decimal, Decimal]:
    """(THANH_TIEN_BV, THANH_TIEN_BH) of an XML3 line:
    SO_LUONG × DON_GIA_BV × TYLE_TT_DV / 100, and
    SO_LUONG × DON_GIA_BH × TYLE_TT_DV / 100 × TYLE_TT_BH / 100.

    [verify] a supply with a ceiling (T_TRANTT) may have its insured amount capped; not applied.
    """
    hospital = line.so_luong * line.don_gia_bv * line.tyle_tt_dv / HUNDRED
    insured = line.so_luong * line.don_gia_bh * line.tyle_tt_dv / HUNDRED * line.tyle_tt_bh
    return round_money(hospital), round_money(insured / HUNDRED)
