"""BHYT co-payment: how one visit's charges split between the fund and the patient.

Pure Python over plain facts, no database: the caller reads the card, the facility and the
dated parameter table, and this module applies the rules of the Health Insurance Law as
amended by Law 51/2024 and Decree 188/2025 (see /work/shared/DOMAIN.md, 1.4 and 1.5).
Keeping it free of I/O lets the same code price a live bill, re-price a claim file and be
tested case by case against figures worked out by hand.

Money is whole VND. Every step computes in Decimal and rounds half up (the way the claim
files and the patient's statement round) at the points named in the comments, never in
between, so a figure can be checked on paper.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext

from flask_babel import lazy_gettext as _l


class Route(enum.StrEnum):
    """How the patient reached this facility; decides the share of the benefit the fund pays."""

    EMERGENCY = "emergency"
    REFERRED = "referred"  # came with a referral letter (giấy chuyển cơ sở)
    SELF_REFERRED = "self_referred"  # came on their own


@dataclass(frozen=True)
class Card:
    """The BHYT card used for the visit, as the gateway returned it."""

    benefit_level: int  # 1..5, the 3rd character of the 15-character code
    valid_from: date | None
    valid_to: date | None
    five_year_date: date | None  # day five continuous years were reached (NAM_NAM_LIEN_TUC)
    registered_facility_code: str | None  # MA_DKBD


@dataclass(frozen=True)
class FacilityFacts:
    code: str  # 5-character facility code
    care_level: str  # "primary" | "basic" | "specialised" (Law 15/2023 technical levels)
    # The tier before 2025-01-01 ("central" | "provincial" | "district" | "commune" | None):
    # the self-referral rates still depend on it.
    legacy_tier: str | None


@dataclass(frozen=True)
class VisitFacts:
    care_date: date  # the rules in force on this day price the visit
    admitted_on: date  # first day of the visit (a card expiring during treatment)
    inpatient: bool
    route: Route
    facility: FacilityFacts
    card: Card | None  # None: not a BHYT visit, the patient pays everything
    copay_year_to_date: int = 0  # co-payments (VND) already paid this calendar year


@dataclass(frozen=True)
class Line:
    key: str  # the caller's id of the charge
    quantity: Decimal  # up to 3 decimals
    unit_price: int  # VND the facility charges per unit (DON_GIA_BV)
    bhyt_price: int  # VND the fund's price per unit (DON_GIA_BH)
    in_scope: bool  # in the BHYT list (PHAM_VI 1) or not
    service_date: date
    service_rate: int = 100  # TYLE_TT_DV, e.g. 30 for a 2nd specialty examination
    payment_rate: int = 100  # TYLE_TT_BH: share of the BHYT price the fund considers


@dataclass(frozen=True)
class LineSplit:
    key: str
    total: int  # THANH_TIEN_BV
    bhyt_amount: int  # THANH_TIEN_BH (0 when not covered)
    insurance_pays: int  # T_BHTT
    patient_copay: int  # T_BNCCT
    patient_out_of_scope: int  # T_BNTT: out of the list, price difference, not covered
    coverage_rate: int  # MUC_HUONG in percent (e.g. 32 = 80 x 40%)


@dataclass(frozen=True)
class BillSplit:
    lines: tuple[LineSplit, ...]
    total: int
    insurance_pays: int
    patient_copay: int
    patient_out_of_scope: int
    patient_pays: int  # copay + out of scope
    coverage_rule: str  # the code of the rule that decided the coverage
    coverage_rate: int  # the visit's MUC_HUONG
    rules: tuple[str, ...]  # every rule that applied, in the order applied


# Every parameter the engine reads. They change by date (the base salary did on 2024-07-01
# and does again on 2026-07-01), so the caller passes the values in force on the care date
# and nothing here is a constant.
PARAMETER_NAMES: tuple[str, ...] = (
    "base_salary",
    "small_bill_share_percent",
    "copay_exemption_months",
    "benefit_rate_level_1",
    "benefit_rate_level_2",
    "benefit_rate_level_3",
    "benefit_rate_level_4",
    "benefit_rate_level_5",
    "self_referral_outpatient_rate",
    "self_referral_inpatient_central_rate",
    "card_expiry_grace_days",
)

# Parameters that are a percentage; anything outside 0..100 is a typo in the table.
_PERCENT_PARAMETERS = frozenset(
    {
        "small_bill_share_percent",
        "benefit_rate_level_1",
        "benefit_rate_level_2",
        "benefit_rate_level_3",
        "benefit_rate_level_4",
        "benefit_rate_level_5",
        "self_referral_outpatient_rate",
        "self_referral_inpatient_central_rate",
    }
)

RULE_LABELS = {
    "no_insurance": _l("Not a health insurance visit: the patient pays everything"),
    "card_expired": _l("The health insurance card had expired: the patient pays everything"),
    "card_not_yet_valid": _l(
        "The health insurance card was not yet valid: the patient pays everything"
    ),
    "card_expiry_grace": _l(
        "The card expired during treatment: the fund pays up to 15 days after expiry"
    ),
    "emergency": _l("Emergency care: the full benefit at any facility"),
    "registered_facility": _l("Care at the facility of initial registration: the full benefit"),
    "referred": _l("Referred by another facility: the full benefit"),
    "primary_level": _l("Care at a primary-level facility: paid in full"),
    "self_referral_inpatient": _l("Self-referred inpatient care: the full benefit nationwide"),
    "self_referral_inpatient_central": _l(
        "Self-referred inpatient care at a former central hospital: part of the benefit"
    ),
    "self_referral_outpatient": _l(
        "Self-referred outpatient care at a former provincial or central hospital: "
        "part of the benefit"
    ),
    "self_referral_outpatient_central": _l(
        "Self-referred outpatient care at a former central hospital: not covered"
    ),
    "self_referral_outpatient_basic": _l(
        "Self-referred outpatient care at a basic-level facility: the full benefit"
    ),
    "small_bill": _l("The visit cost less than 15 percent of the base salary: paid in full"),
    "level_5_out_of_list": _l("This card also covers items outside the health insurance list"),
    "five_year_exemption": _l(
        "Five continuous years of coverage and the year's co-payments passed six months of "
        "base salary: no further co-payment this year"
    ),
}

CARE_LEVELS = frozenset({"primary", "basic", "specialised"})
LEGACY_TIERS = frozenset({"central", "provincial", "district", "commune"})

# Enough digits that no product of a quantity, a price and two rates is ever rounded
# before the one rounding each step names.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_THOUSANDTH = Decimal("0.001")


def _vnd(amount: Decimal) -> int:
    """Round half up to a whole number (VND, or a whole percent)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Params:
    """The parameters checked and read once (``read_params``): a caller pricing many
    visits of one day reads them once."""

    base_salary: Decimal
    small_bill_share: Decimal
    exemption_months: Decimal
    benefit_rates: dict[int, Decimal]
    self_referral_outpatient_rate: Decimal
    self_referral_inpatient_central_rate: Decimal
    grace_days: int


def read_params(params: Mapping[str, Decimal]) -> Params:
    """Every name is read up front, whatever path the visit takes, so a table that lacks one
    fails on the first bill rather than on the first self-referred inpatient months later."""
    values: dict[str, Decimal] = {}
    for name in PARAMETER_NAMES:
        if name not in params:
            raise KeyError(f"BHYT parameter {name!r} is missing from the parameters in force")
        value = params[name]
        # A float would carry binary noise into money; bool is an int but never a rate.
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise ValueError(f"BHYT parameter {name!r} must be a Decimal or int, got {value!r}")
        value = Decimal(value)
        if not value.is_finite() or value < 0:
            raise ValueError(f"BHYT parameter {name!r} must be a non-negative number ({value})")
        if name in _PERCENT_PARAMETERS and value > 100:
            raise ValueError(f"BHYT parameter {name!r} is a percentage: 0..100 ({value})")
        values[name] = value
    grace = values["card_expiry_grace_days"]
    if grace != grace.to_integral_value():
        raise ValueError(f"BHYT parameter 'card_expiry_grace_days' must be whole days ({grace})")
    return Params(
        base_salary=values["base_salary"],
        small_bill_share=values["small_bill_share_percent"],
        exemption_months=values["copay_exemption_months"],
        benefit_rates={level: values[f"benefit_rate_level_{level}"] for level in range(1, 6)},
        self_referral_outpatient_rate=values["self_referral_outpatient_rate"],
        self_referral_inpatient_central_rate=values["self_referral_inpatient_central_rate"],
        grace_days=int(grace),
    )


def _check_visit(visit: VisitFacts) -> None:
    # An unknown level or tier would otherwise fall through to "anywhere else" and silently
    # pay the full benefit, so spelling mistakes are errors.
    Route(visit.route)
    if visit.facility.care_level not in CARE_LEVELS:
        raise ValueError(
            f"facility {visit.facility.code!r}: care_level must be one of "
            f"{sorted(CARE_LEVELS)} ({visit.facility.care_level!r})"
        )
    if visit.facility.legacy_tier is not None and visit.facility.legacy_tier not in LEGACY_TIERS:
        raise ValueError(
            f"facility {visit.facility.code!r}: legacy_tier must be None or one of "
            f"{sorted(LEGACY_TIERS)} ({visit.facility.legacy_tier!r})"
        )
    if visit.copay_year_to_date < 0:
        raise ValueError(f"copay_year_to_date must not be negative ({visit.copay_year_to_date})")
    card = visit.card
    if card is not None and (
        isinstance(card.benefit_level, bool)
        or not isinstance(card.benefit_level, int)
        or not 1 <= card.benefit_level <= 5
    ):
        raise ValueError(f"card benefit_level must be 1..5 ({card.benefit_level!r})")


def _check_line(line: Line) -> None:
    where = f"line {line.key!r}"
    quantity = line.quantity
    if isinstance(quantity, bool) or not isinstance(quantity, Decimal | int):
        raise ValueError(f"{where}: quantity must be a Decimal, got {quantity!r}")
    quantity = Decimal(quantity)
    # A negative quantity is units given back (a drug return): it splits as the mirror of
    # the same units charged, so a return undoes exactly what its dispensing charged.
    if not quantity.is_finite():
        raise ValueError(f"{where}: quantity must be a number ({quantity})")
    # The claim files carry three decimals; a fourth would be rounded away there but not here.
    if quantity != quantity.quantize(_THOUSANDTH):
        raise ValueError(f"{where}: quantity has more than 3 decimals ({quantity})")
    for field in ("unit_price", "bhyt_price"):
        price = getattr(line, field)
        if isinstance(price, bool) or not isinstance(price, int) or price < 0:
            raise ValueError(f"{where}: {field} must be a non-negative whole VND ({price!r})")
    for field in ("service_rate", "payment_rate"):
        rate = getattr(line, field)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= 100:
            raise ValueError(f"{where}: {field} must be a percentage 0..100 ({rate!r})")


def _valid_on(card: Card, day: date) -> bool:
    """A None bound is open: the gateway leaves it empty for cards without that limit."""
    return (card.valid_from is None or card.valid_from <= day) and (
        card.valid_to is None or day <= card.valid_to
    )


def _route(visit: VisitFacts, card: Card, p: Params) -> tuple[Decimal, str]:
    """Percent of the benefit the fund pays for how the patient came, and the rule's code.

    Law 51/2024 Art. 22 as amended and Decree 188/2025 Art. 19. The first match wins, in the
    order the law gives priority: an emergency or a referral is never "self-referral", and
    a patient at their own registered facility is right-route whatever their letter says.
    """
    facility = visit.facility
    if visit.route == Route.EMERGENCY:
        return Decimal(100), "emergency"
    if card.registered_facility_code is not None and card.registered_facility_code == facility.code:
        return Decimal(100), "registered_facility"
    if visit.route == Route.REFERRED:
        return Decimal(100), "referred"
    # Primary-level care (the former commune stations) needs no referral at all.
    if facility.care_level == "primary":
        return Decimal(100), "primary_level"
    former_central_specialised = (
        facility.care_level == "specialised" and facility.legacy_tier == "central"
    )
    if visit.inpatient:
        # Inpatient care has been interconnected nationwide since 2021, except at the
        # specialised former central hospitals, which pay part of the benefit (40%).
        if former_central_specialised:
            return p.self_referral_inpatient_central_rate, "self_referral_inpatient_central"
        return Decimal(100), "self_referral_inpatient"
    # Self-referred outpatient care: nothing at a former central specialised hospital (code
    # 3.1 = 0% outpatient); a dated share at the kinds of facility Decree 188 names (0 before
    # 2026-07-01, 50% from then); the full benefit at the other basic-level facilities.
    if former_central_specialised:
        return Decimal(0), "self_referral_outpatient_central"
    if (facility.care_level == "basic" and facility.legacy_tier in ("provincial", "central")) or (
        facility.care_level == "specialised" and facility.legacy_tier == "provincial"
    ):
        return p.self_referral_outpatient_rate, "self_referral_outpatient"
    return Decimal(100), "self_referral_outpatient_basic"


def _not_covered(lines: Sequence[Line], totals: list[int], rule: str) -> BillSplit:
    """Nothing is covered: every VND is the patient's, outside any co-payment."""
    splits = tuple(
        LineSplit(
            key=line.key,
            total=total,
            bhyt_amount=0,
            insurance_pays=0,
            patient_copay=0,
            patient_out_of_scope=total,
            coverage_rate=0,
        )
        for line, total in zip(lines, totals, strict=True)
    )
    return _bill(splits, rule, 0, (rule,))


def _bill(splits: tuple[LineSplit, ...], rule: str, rate: int, rules: tuple[str, ...]) -> BillSplit:
    # Totals are always the sums of the lines, so the statement and the claim file agree.
    copay = sum(s.patient_copay for s in splits)
    out_of_scope = sum(s.patient_out_of_scope for s in splits)
    return BillSplit(
        lines=splits,
        total=sum(s.total for s in splits),
        insurance_pays=sum(s.insurance_pays for s in splits),
        patient_copay=copay,
        patient_out_of_scope=out_of_scope,
        patient_pays=copay + out_of_scope,
        coverage_rule=rule,
        coverage_rate=rate,
        rules=rules,
    )


def compute(
    visit: VisitFacts, lines: Sequence[Line], params: Mapping[str, Decimal] | Params
) -> BillSplit:
    """Split the visit's charges between the BHYT fund and the patient.

    ``params`` holds the value of every name in ``PARAMETER_NAMES`` in force on
    ``visit.care_date``. Raises KeyError for a missing parameter and ValueError for a fact
    out of range (naming the field, and the line's key for a line).
    """
    p = params if isinstance(params, Params) else read_params(params)
    _check_visit(visit)
    for line in lines:
        _check_line(line)

    with localcontext(_CONTEXT):
        # Step 1: what the facility charges. The service rate (2nd examination at 30%, ...)
        # reduces the whole charge, not only the fund's part.
        totals = [
            _vnd(Decimal(line.quantity) * line.unit_price * line.service_rate / 100)
            for line in lines
        ]

        # Step 2: without a card the patient pays everything.
        card = visit.card
        if card is None:
            return _not_covered(lines, totals, "no_insurance")

        # Step 3: the card must be valid on each line's day. A card that expires during
        # treatment keeps paying up to discharge, at most the grace days after expiry
        # (Decree 188 Art. 50(4)), but only when the visit began while it was valid.
        admitted_valid = _valid_on(card, visit.admitted_on)
        covered: list[bool] = []
        grace_used = False
        for line in lines:
            if _valid_on(card, line.service_date):
                covered.append(True)
            elif (
                admitted_valid
                and card.valid_to is not None
                and card.valid_to < line.service_date
                and line.service_date <= card.valid_to + timedelta(days=p.grace_days)
            ):
                covered.append(True)
                grace_used = True
            else:
                covered.append(False)
        # An empty bill has no line to judge by, so the card's state on admission decides.
        if not (any(covered) if lines else admitted_valid):
            not_yet = card.valid_from is not None and visit.admitted_on < card.valid_from
            return _not_covered(lines, totals, "card_not_yet_valid" if not_yet else "card_expired")

        # Step 4: the amount the fund considers. In the list: its own price at its payment
        # rate, never more than the facility charged; the rest (out-of-list items, and the
        # facility's price above the fund's) is the patient's outside the co-payment. Level 5
        # cards (army, police, cipher staff) also cover items outside the list.
        bhyt_amounts: list[int] = []
        level_5_out_of_list = False
        for line, total, is_covered in zip(lines, totals, covered, strict=True):
            if not is_covered:
                bhyt_amounts.append(0)
            elif line.in_scope:
                considered = _vnd(
                    Decimal(line.quantity)
                    * line.bhyt_price
                    * line.service_rate
                    * line.payment_rate
                    / 10000
                )
                # Never more than the facility charged (nearer zero, for a return).
                bhyt_amounts.append(considered if abs(considered) <= abs(total) else total)
            elif card.benefit_level == 5:
                bhyt_amounts.append(total)
                level_5_out_of_list = True
            else:
                bhyt_amounts.append(0)

        # Step 5: how the patient came.
        route_rate, route_rule = _route(visit, card, p)

        # Step 6: the card's benefit level, raised to 100% for primary-level care and for a
        # small bill (the fund's amount under 15% of base salary). Primary level is checked
        # first, and once the rate is 100 the small bill has nothing left to raise.
        card_benefit = p.benefit_rates[card.benefit_level]
        benefit = card_benefit
        raised_by: str | None = None
        if visit.facility.care_level == "primary" and benefit < 100:
            benefit, raised_by = Decimal(100), "primary_level"
        elif sum(bhyt_amounts) < p.base_salary * p.small_bill_share / 100 and benefit < 100:
            benefit, raised_by = Decimal(100), "small_bill"

        # Step 7: MUC_HUONG is a whole percent in the claim files, so the product of the two
        # rates is rounded before it prices any line (95 x 50% -> 47.5 -> 48). A raise that
        # leaves it unchanged (a self-referral paid at 0%) decided nothing and is not recorded,
        # so the patient is not told a small bill was paid in full when it was not.
        coverage_rate = _vnd(benefit * route_rate / 100)
        if raised_by is not None and coverage_rate == _vnd(card_benefit * route_rate / 100):
            raised_by = None
        insurance = [_vnd(Decimal(amount) * coverage_rate / 100) for amount in bhyt_amounts]
        copays = [amount - paid for amount, paid in zip(bhyt_amounts, insurance, strict=True)]

        # Step 8: five continuous years and the year's co-payments above six months of base
        # salary: the fund takes over the rest of the co-payment. The law excludes
        # self-referral; a self-referral paid at the full rate (nationwide inpatient, basic
        # level) is treated as right-route, so only a reduced route rate blocks it.
        exemption_moved = False
        if (
            card.five_year_date is not None
            and card.five_year_date <= visit.care_date
            and route_rate == 100
        ):
            threshold = _vnd(p.base_salary * p.exemption_months)
            allowed = max(0, threshold - visit.copay_year_to_date)
            excess = sum(copays) - allowed
            # The threshold is crossed by the last charges of the visit, so the excess leaves
            # the last lines first; the same bill always splits the same way.
            for index in reversed(range(len(lines))):
                if excess <= 0:
                    break
                moved = min(excess, copays[index])
                if moved > 0:
                    copays[index] -= moved
                    insurance[index] += moved
                    excess -= moved
                    exemption_moved = True

    splits = tuple(
        LineSplit(
            key=line.key,
            total=total,
            bhyt_amount=amount,
            insurance_pays=paid,
            patient_copay=copay,
            patient_out_of_scope=total - amount,
            coverage_rate=coverage_rate if is_covered else 0,
        )
        for line, total, amount, paid, copay, is_covered in zip(
            lines, totals, bhyt_amounts, insurance, copays, covered, strict=True
        )
    )

    rules = [route_rule]
    if raised_by is not None and raised_by != route_rule:
        rules.append(raised_by)
    if level_5_out_of_list:
        rules.append("level_5_out_of_list")
    if grace_used:
        rules.append("card_expiry_grace")
    if exemption_moved:
        rules.append("five_year_exemption")

    # Step 9: the rule that decided the coverage is the last one that changed it.
    if exemption_moved:
        coverage_rule = "five_year_exemption"
    elif raised_by is not None:
        coverage_rule = raised_by
    else:
        coverage_rule = route_rule
    return _bill(splits, coverage_rule, coverage_rate, tuple(rules))
