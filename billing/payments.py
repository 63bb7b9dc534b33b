"""Taking money at the cashier, giving it back, and bank notifications of VietQR transfers.

Every payment and refund gets a receipt number, sequential per facility and year, from the
same atomic counters as queue numbers: concurrent cashiers never share a number, and a
rolled-back payment leaves no gap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import vietqr
from billing.bills import FIGURES, STATUS_LABELS, VisitBill, build, vnd
from billing.models import (
    Bill,
    BillStatus,
    Charge,
    PaymentKind,
    PaymentMethod,
)
from billing.models import Payment as PaymentRow
from his.db import utcnow
from his.errors import Conflict, NotFound, ValidationFailed
from his.localtime import local_date
from his.models import Facility, Role, Visit
from his.services import audit, counters
from his.services.access import Principal

CASHIER_ROLES = (Role.ADMIN, Role.CASHIER)


def next_receipt_number(session: Session, facility: Facility, when: dt.datetime) -> str:
    year = local_date(when).year
    number = counters.next_value(session, f"receipt:{facility.code}:{year}")
    return f"{year}-{number:06d}"


def _bill_at_facility(session: Session, principal: Principal, bill_id: int) -> Bill:
    bill = session.get(Bill, bill_id, with_for_update=True)
    if bill is None or bill.facility_id != principal.facility_id:
        raise NotFound(str(_l("No bill has this id at your facility.")))
    return bill


@dataclass
class Settled:
    bill: Bill
    payment: PaymentRow | None  # none when the patient owed nothing
    visit_bill: VisitBill


def take_payment(
    session: Session,
    principal: Principal,
    bill_id: int,
    method: PaymentMethod,
    amount: int,
    *,
    transaction_id: str | None = None,
    notification: dict | None = None,
) -> Settled:
    """Takes what the patient owes on an open bill, in full, and locks the bill with the
    figures it was paid with. A bill owing nothing is locked without a payment."""
    principal.require_any(*CASHIER_ROLES)
    bill = _bill_at_facility(session, principal, bill_id)
    if bill.status != BillStatus.OPEN:
        raise Conflict(
            str(_l("This bill is closed: %(status)s.", status=STATUS_LABELS[bill.status])),
            errors={"bill_id": [bill.status.value]},
        )
    visit = session.get(Visit, bill.visit_id)
    current = build(session, visit)
    if current.open_bill is None or current.open_bill.bill.id != bill.id:
        raise Conflict(str(_l("This bill is no longer the visit's open bill.")))
    owed = current.open_bill.figures.patient_pays
    if amount != max(owed, 0):
        raise ValidationFailed(
            str(_l("The amount must be what the patient owes: %(owed)s VND.", owed=vnd(owed))),
            errors={"amount": [str(_l("expected %(owed)s", owed=vnd(owed)))]},
            extra={"owed": owed},
        )
    now = utcnow()
    payment = None
    if owed < 0:
        # The visit now owes the patient money back (a later charge made it a small bill,
        # or the exemption started): settling gives it back, with its own receipt.
        payment = PaymentRow(
            bill_id=bill.id,
            facility_id=bill.facility_id,
            kind=PaymentKind.REFUND,
            method=method,
            amount=-owed,
            receipt_number=next_receipt_number(session, visit.facility, now),
            received_by_id=principal.user_id,
            at=now,
            reason=str(_l("Overpaid on earlier bills of the visit")),
        )
        session.add(payment)
    elif amount > 0:
        payment = PaymentRow(
            bill_id=bill.id,
            facility_id=bill.facility_id,
            kind=PaymentKind.PAYMENT,
            method=method,
            amount=amount,
            receipt_number=next_receipt_number(session, visit.facility, now),
            received_by_id=principal.user_id,
            at=now,
            transaction_id=transaction_id,
            notification=notification,
        )
        session.add(payment)
    figures = current.open_bill.figures
    for name in FIGURES:
        setattr(bill, name, getattr(figures, name))
    bill.coverage_rule = current.split.coverage_rule
    bill.coverage_rate = current.split.coverage_rate
    bill.lines = [_snapshot(line.charge, line.split) for line in current.open_bill.lines]
    bill.status = BillStatus.PAID
    bill.paid_at = now
    session.flush()
    audit.record_change(
        session, principal, "Bill", bill.id, visit.patient_id, f"paid {method.value}"
    )
    return Settled(bill, payment, build(session, visit))


def _snapshot(charge: Charge, split) -> dict:
    return {
        "charge_id": charge.id,
        "kind": charge.kind.value,
        "code": charge.code,
        "name": charge.name,
        "quantity": str(charge.quantity),
        "unit_price": charge.unit_price,
        "total": split.total,
        "insurance_pays": split.insurance_pays,
        "patient_copay": split.patient_copay,
        "patient_out_of_scope": split.patient_out_of_scope,
        "coverage_rate": split.coverage_rate,
    }


def refund(session: Session, principal: Principal, payment_id: int, reason: str) -> PaymentRow:
    """Gives back a payment in full, with a reason. The bill's charges are cancelled with it
    (a refund is for care not given or wrongly charged); what is still owed for the visit is
    billed again on a new bill."""
    principal.require_any(*CASHIER_ROLES)
    if not reason or not reason.strip():
        raise ValidationFailed(
            str(_l("A refund needs a reason.")), errors={"reason": [str(_l("required"))]}
        )
    original = session.get(PaymentRow, payment_id)
    if original is None or original.facility_id != principal.facility_id:
        raise NotFound(str(_l("No payment has this id at your facility.")))
    if original.kind != PaymentKind.PAYMENT:
        raise Conflict(str(_l("A refund cannot itself be refunded.")))
    bill = _bill_at_facility(session, principal, original.bill_id)
    if bill.status != BillStatus.PAID:
        raise Conflict(
            str(
                _l(
                    "This bill is %(status)s: nothing to refund.",
                    status=STATUS_LABELS[bill.status],
                )
            )
        )
    visit = session.get(Visit, bill.visit_id)
    now = utcnow()
    row = PaymentRow(
        bill_id=bill.id,
        facility_id=bill.facility_id,
        kind=PaymentKind.REFUND,
        method=original.method,
        amount=original.amount,
        receipt_number=next_receipt_number(session, visit.facility, now),
        received_by_id=principal.user_id,
        at=now,
        reason=reason.strip()[:300],
        refund_of_id=original.id,
    )
    session.add(row)
    bill.status = BillStatus.REFUNDED
    for charge in bill.charges:
        if charge.cancelled_at is None:
            charge.cancelled_at = now
            charge.cancel_reason = f"refunded: {reason.strip()}"[:300]
    session.flush()
    audit.record_change(session, principal, "Bill", bill.id, visit.patient_id, "refunded")
    return row


@dataclass
class Notified:
    payment: PaymentRow
    repeated: bool  # the same transaction was notified before: nothing changed


def notify(
    session: Session,
    principal: Principal,
    *,
    transaction_id: str,
    amount: int,
    description: str,
    raw: dict,
) -> Notified:
    """A bank's notification of a transfer: finds the bill by the reference in the transfer
    note and takes the payment. A repeated notification (same transaction id) answers with
    the payment it made the first time."""
    principal.require_any(*CASHIER_ROLES, Role.INTEGRATION)
    earlier = session.scalar(select(PaymentRow).where(PaymentRow.transaction_id == transaction_id))
    if earlier is not None:
        if earlier.amount != amount:
            raise Conflict(
                str(_l("This transaction id was already used for another amount.")),
                errors={"transaction_id": [transaction_id]},
            )
        return Notified(earlier, repeated=True)
    found = vietqr.parse_bill_reference(description)
    if found is None:
        raise ValidationFailed(
            str(_l("The transfer note holds no bill reference.")),
            errors={"description": [str(_l("no bill reference found"))]},
        )
    facility_code, bill_id = found
    bill = session.get(Bill, bill_id)
    facility = session.get(Facility, principal.facility_id) if principal.facility_id else None
    if bill is None or facility is None or facility.code != facility_code:
        raise NotFound(str(_l("No bill has this reference at your facility.")))
    settled = take_payment(
        session,
        principal,
        bill.id,
        PaymentMethod.TRANSFER,
        amount,
        transaction_id=transaction_id,
        notification=raw,
    )
    if settled.payment is None:
        raise ValidationFailed(str(_l("This bill owes nothing.")))
    return Notified(settled.payment, repeated=False)
