"""What the cashier's screens read: the visits with money owed, a visit found by its code,
a visit's bill, and a payment's receipt.

Every function checks the cashier roles here, at the service boundary, so a screen never
shows a bill to someone the REST payment endpoints would turn away.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session, selectinload

from billing.bills import FIGURES, Figures, VisitBill, build, visit_bill
from billing.models import Bill, PaymentKind
from billing.models import Payment as PaymentRow
from billing.payments import CASHIER_ROLES
from his.db import utcnow
from his.errors import DomainError, NotFound
from his.models import AuditAction, Facility, User, Visit, VisitStatus
from his.services import audit
from his.services.access import Principal
from his.services.visits import visible_visits

DEFAULT_DAYS = 3
MAX_DAYS = 31


@dataclass(frozen=True)
class UnpaidVisit:
    visit_id: int
    visit_code: str
    patient_name: str
    opened_at: dt.datetime
    # What the patient owes (negative: owed back); None when the visit cannot be priced yet.
    balance: int | None
    problem: str | None = None  # why it cannot be priced


def unpaid_visits(
    session: Session, principal: Principal, days: int = DEFAULT_DAYS
) -> list[UnpaidVisit]:
    """The visits of the cashier's facility opened in the last ``days`` days (a rolling
    window back from now), not cancelled, whose balance is not zero, newest first.

    Each visit's bill is built in full (charges accrued, the co-payment split computed),
    one visit after another: per-visit work, a few queries each, which is fine for a
    facility's few hundred visits a day. A visit whose bill cannot be built yet (a BHYT
    card with no benefit level) is listed with the reason instead of a balance, since the
    cashier is the one who will meet that patient.
    """
    principal.require_any(*CASHIER_ROLES)
    days = min(max(days, 1), MAX_DAYS)
    since = utcnow() - dt.timedelta(days=days)
    visits = session.scalars(
        visible_visits(principal)
        .where(Visit.opened_at >= since, Visit.status != VisitStatus.CANCELLED)
        .options(selectinload(Visit.patient))
        .order_by(Visit.opened_at.desc(), Visit.id.desc())
    ).all()
    audit.record(session, principal, AuditAction.SEARCH, entity_type="Bill", detail="unpaid")
    found = []
    for visit in visits:
        try:
            balance: int | None = build(session, visit).balance
            problem = None
        except DomainError as exc:
            balance, problem = None, exc.detail
        if balance != 0:
            found.append(
                UnpaidVisit(
                    visit_id=visit.id,
                    visit_code=visit.visit_code,
                    patient_name=visit.patient.full_name,
                    opened_at=visit.opened_at,
                    balance=balance,
                    problem=problem,
                )
            )
    return found


def find_visit(session: Session, principal: Principal, code: str) -> Visit | None:
    """The facility's visit with this visit code (spaces and letter case ignored)."""
    principal.require_any(*CASHIER_ROLES)
    wanted = "".join(code.split()).upper()
    if not wanted:
        return None
    return session.scalar(visible_visits(principal).where(Visit.visit_code == wanted))


def cashier_bill(session: Session, principal: Principal, visit_id: int) -> VisitBill:
    """A visit's bill as the cashier sees it (only cashiers and admins)."""
    principal.require_any(*CASHIER_ROLES)
    return visit_bill(session, principal, visit_id)


@dataclass
class ReceiptLine:
    code: str
    name: str
    quantity: str
    unit_price: int
    total: int
    insurance_pays: int
    patient_copay: int
    patient_out_of_scope: int
    coverage_rate: int


@dataclass
class Receipt:
    payment: PaymentRow
    bill: Bill
    visit: Visit
    facility: Facility
    cashier: User | None
    figures: Figures  # the bill's figures as it was paid
    lines: list[ReceiptLine]
    refund_of: PaymentRow | None  # for a refund: the payment given back


def receipt(session: Session, principal: Principal, payment_id: int) -> Receipt:
    """A payment or refund of the cashier's facility with what it was for: the bill's
    lines and figures as they were locked when the bill was paid."""
    principal.require_any(*CASHIER_ROLES)
    payment = session.get(PaymentRow, payment_id)
    if payment is None or payment.facility_id != principal.facility_id:
        raise NotFound(str(_l("No payment has this id at your facility.")))
    bill = payment.bill
    visit = session.get(Visit, bill.visit_id)
    assert visit is not None
    audit.record_read(session, principal, "Payment", payment.id, visit.patient_id)
    figures = Figures(*((getattr(bill, name) or 0) for name in FIGURES))
    lines = [
        ReceiptLine(
            code=row["code"],
            name=row["name"],
            quantity=row["quantity"],
            unit_price=row["unit_price"],
            total=row["total"],
            insurance_pays=row["insurance_pays"],
            patient_copay=row["patient_copay"],
            patient_out_of_scope=row["patient_out_of_scope"],
            coverage_rate=row["coverage_rate"],
        )
        for row in bill.lines or []
    ]
    cashier = session.get(User, payment.received_by_id) if payment.received_by_id else None
    refund_of = None
    if payment.kind == PaymentKind.REFUND and payment.refund_of_id is not None:
        refund_of = session.get(PaymentRow, payment.refund_of_id)
    return Receipt(
        payment=payment,
        bill=bill,
        visit=visit,
        facility=visit.facility,
        cashier=cashier,
        figures=figures,
        lines=lines,
        refund_of=refund_of,
    )
