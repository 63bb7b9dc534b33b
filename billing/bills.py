"""A visit's bill: its charges split between the health-insurance fund and the patient by
the co-payment engine, with the rules in force on the day of care.

The split is always computed over every charge of the visit, so the rules that look at the
whole visit (the small-bill threshold, the five-year exemption) see all of it. A paid bill
keeps the figures it was paid with; the open bill (the first, or a supplementary one after
a payment) owes the difference between the visit's figures now and what paid bills took.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask import has_app_context
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import vietqr
from billing.charges import accrue
from billing.copay import (
    RULE_LABELS,
    BillSplit,
    Card,
    FacilityFacts,
    Line,
    LineSplit,
    Route,
    VisitFacts,
    compute,
)
from billing.models import Bill, BillStatus, Charge, FacilityBankAccount, PaymentKind
from billing.params import params_on
from his.errors import ValidationFailed
from his.localtime import local_date, local_day_bounds
from his.models import Payment, Role, Visit, VisitType
from his.services.access import Principal
from his.services.visits import get_visit

INPATIENT_TYPES = (VisitType.INPATIENT, VisitType.DAY)  # day care is paid as inpatient care
STATUS_LABELS = {
    BillStatus.OPEN: _l("Unpaid"),
    BillStatus.PAID: _l("Paid"),
    BillStatus.REFUNDED: _l("Refunded"),
}
# Who sees bills: the cashiers, and admins.
BILL_ROLES = (Role.ADMIN, Role.CASHIER)
FIGURES = ("total", "insurance_pays", "patient_copay", "patient_out_of_scope", "patient_pays")


@dataclass
class Figures:
    total: int = 0
    insurance_pays: int = 0
    patient_copay: int = 0
    patient_out_of_scope: int = 0
    patient_pays: int = 0

    def minus(self, other: Figures) -> Figures:
        return Figures(*(getattr(self, f) - getattr(other, f) for f in FIGURES))

    def plus(self, other: Figures) -> Figures:
        return Figures(*(getattr(self, f) + getattr(other, f) for f in FIGURES))


@dataclass
class BillLine:
    charge: Charge
    split: LineSplit


@dataclass
class BillView:
    bill: Bill
    figures: Figures
    lines: list[BillLine]
    paid: int  # net of refunds


@dataclass
class VisitBill:
    visit: Visit
    split: BillSplit
    bills: list[BillView]
    open_bill: BillView | None
    vietqr: str | None
    coverage_label: str = field(default="")

    @property
    def figures(self) -> Figures:
        return _figures(self.split)

    @property
    def balance(self) -> int:
        """What the patient still owes (negative: owed back, after a later rule change)."""
        return self.open_bill.figures.patient_pays if self.open_bill else 0


def vnd(amount: int) -> str:
    """An amount of dong as the reader's language writes it (78.120 in Vietnamese)."""
    return format_decimal(amount) if has_app_context() else f"{amount:,}"


def _figures(split) -> Figures:
    return Figures(*(getattr(split, f) for f in FIGURES))


def care_date(visit: Visit) -> dt.date:
    """The day whose rules price the visit: the day it opened."""
    return local_date(visit.opened_at)


def route_of(visit: Visit) -> Route:
    if visit.visit_type == VisitType.EMERGENCY:
        return Route.EMERGENCY
    return Route.REFERRED if visit.is_referred else Route.SELF_REFERRED


def visit_facts(session: Session, visit: Visit) -> VisitFacts:
    day = care_date(visit)
    card = None
    if visit.payment == Payment.BHYT:
        coverage = visit.patient.coverage
        if coverage is None or coverage.benefit_level is None:
            raise ValidationFailed(
                str(_l("The BHYT card's benefit level is not known: check the card first.")),
                errors={"coverage": [str(_l("benefit level unknown"))]},
            )
        card = Card(
            benefit_level=coverage.benefit_level,
            valid_from=coverage.valid_from,
            valid_to=coverage.valid_to,
            five_year_date=coverage.five_year_date,
            registered_facility_code=coverage.registered_facility_code,
        )
    facility = visit.facility
    return VisitFacts(
        care_date=day,
        admitted_on=day,
        inpatient=visit.visit_type in INPATIENT_TYPES,
        route=route_of(visit),
        facility=FacilityFacts(
            code=facility.code,
            care_level=facility.care_level.value,
            legacy_tier=facility.legacy_tier.value if facility.legacy_tier else None,
        ),
        card=card,
        copay_year_to_date=_copay_this_year(session, visit, day.year),
    )


def _copay_this_year(session: Session, visit: Visit, year: int) -> int:
    """Co-payments of the patient's other visits paid this calendar year (five-year rule)."""
    paid = session.scalar(
        select(func.coalesce(func.sum(Bill.patient_copay), 0))
        .join(Visit, Bill.visit_id == Visit.id)
        .where(
            Visit.patient_id == visit.patient_id,
            Visit.id != visit.id,
            Bill.status == BillStatus.PAID,
            Bill.paid_at >= local_day_bounds(dt.date(year, 1, 1))[0],
            Bill.paid_at < local_day_bounds(dt.date(year + 1, 1, 1))[0],
        )
    )
    return int(paid or 0)


def line_of(charge: Charge) -> Line:
    return Line(
        key=str(charge.id),
        quantity=charge.quantity,
        unit_price=charge.unit_price,
        bhyt_price=charge.bhyt_price,
        in_scope=charge.in_scope,
        service_date=charge.service_date,
        service_rate=charge.service_rate,
        payment_rate=charge.payment_rate,
    )


def live_charges(session: Session, visit: Visit) -> list[Charge]:
    return list(
        session.scalars(
            select(Charge)
            .where(Charge.visit_id == visit.id, Charge.cancelled_at.is_(None))
            .order_by(Charge.id)
        )
    )


def compute_visit(session: Session, visit: Visit) -> tuple[BillSplit, list[Charge]]:
    charges = live_charges(session, visit)
    facts = visit_facts(session, visit)
    try:
        split = compute(facts, [line_of(c) for c in charges], params_on(session, facts.care_date))
    except KeyError as exc:
        name = exc.args[0] if exc.args else "?"
        raise ValidationFailed(
            str(
                _l(
                    "No value of the billing parameter %(name)s is in force on %(day)s: an "
                    "admin sets it with `his billing param set`.",
                    name=name,
                    day=facts.care_date.isoformat(),
                )
            ),
            errors={"parameter": [str(name)]},
        ) from exc
    return split, charges


def net_paid(bill: Bill) -> int:
    return sum(p.amount if p.kind == PaymentKind.PAYMENT else -p.amount for p in bill.payments)


def build(session: Session, visit: Visit) -> VisitBill:
    """The visit's bills as they stand (charges accrued first)."""
    # One accrual at a time per visit: two cashiers' screens looking at once would otherwise
    # both add the same missing charge (PostgreSQL locks the row; SQLite's writes are serial).
    session.execute(select(Visit.id).where(Visit.id == visit.id).with_for_update())
    accrue(session, visit)
    split, charges = compute_visit(session, visit)
    by_key = {line.key: line for line in split.lines}
    bills = list(
        session.scalars(select(Bill).where(Bill.visit_id == visit.id).order_by(Bill.number))
    )
    locked = Figures()
    views = []
    open_view = None
    for bill in bills:
        if bill.status == BillStatus.OPEN:
            lines = [BillLine(c, by_key[str(c.id)]) for c in charges if c.bill_id == bill.id]
        else:
            lines = _locked_lines(session, bill)
        if bill.status == BillStatus.PAID:
            figures = Figures(*(getattr(bill, f) for f in FIGURES))
            locked = locked.plus(figures)
        elif bill.status == BillStatus.REFUNDED:
            figures = Figures()
        else:
            figures = Figures()  # filled below, once every paid bill is counted
        view = BillView(bill, figures, lines, net_paid(bill))
        views.append(view)
        if bill.status == BillStatus.OPEN:
            open_view = view
    if open_view is not None:
        open_view.figures = _figures(split).minus(locked)
    payload = _vietqr(session, visit, open_view)
    label = RULE_LABELS.get(split.coverage_rule, split.coverage_rule)
    return VisitBill(visit, split, views, open_view, payload, str(label))


def _locked_lines(session: Session, bill: Bill) -> list[BillLine]:
    """A paid or refunded bill's lines as they were when it was paid, not as today's split
    of the whole visit would show them."""
    charges = {c.id: c for c in bill.charges}
    lines = []
    for kept in bill.lines or []:
        charge = charges.get(kept["charge_id"])
        if charge is None:
            continue
        lines.append(
            BillLine(
                charge,
                LineSplit(
                    key=str(charge.id),
                    total=kept["total"],
                    bhyt_amount=kept["insurance_pays"] + kept["patient_copay"],
                    insurance_pays=kept["insurance_pays"],
                    patient_copay=kept["patient_copay"],
                    patient_out_of_scope=kept["patient_out_of_scope"],
                    coverage_rate=kept["coverage_rate"],
                ),
            )
        )
    return lines


def _vietqr(session: Session, visit: Visit, open_view: BillView | None) -> str | None:
    """The VietQR payload for what the patient owes on the open bill, when the facility
    takes transfers."""
    if open_view is None or open_view.figures.patient_pays <= 0:
        return None
    account = session.scalar(
        select(FacilityBankAccount).where(FacilityBankAccount.facility_id == visit.facility_id)
    )
    if account is None:
        return None
    return vietqr.build_payload(
        # No merchant name: banking apps show the account holder's registered name, and
        # tag 59 holds only 25 unaccented characters.
        vietqr.PaymentAccount(bank_bin=account.bank_bin, account_number=account.account_number),
        open_view.figures.patient_pays,
        vietqr.bill_reference(visit.facility.code, open_view.bill.id),
    )


def visit_bill(session: Session, principal: Principal, visit_id: int) -> VisitBill:
    """The bill of a visit at the user's facility (another facility's is reported missing)."""
    principal.require_any(*BILL_ROLES)
    visit = get_visit(session, principal, visit_id)
    return build(session, visit)
