"""Charges accrue from what happened in a visit: examinations, services ordered, drugs
dispensed. Each keeps the catalog prices in force on its day.

Accrual reads the clinical tables and adds what is missing (each charge remembers its source,
so accruing again never charges twice). It runs whenever a bill is looked at or paid, so the
clinical services never need to know about billing (billing depends on them, not the
reverse). A service order cancelled while its bill is still open loses its charge; once the
bill is paid, the money goes back through a refund.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing.models import Bill, BillStatus, Charge, ChargeKind
from billing.params import params_on
from his.db import utcnow
from his.errors import Conflict, NotFound, ValidationFailed
from his.localtime import local_date
from his.models import (
    Dispense,
    DispenseLine,
    Drug,
    Encounter,
    MedicalService,
    OrderStatus,
    Payment,
    Prescription,
    Role,
    ServiceKind,
    ServiceOrder,
    User,
    Visit,
    VisitStatus,
)
from his.models.stock import DispenseKind
from his.services import audit
from his.services.access import Principal
from his.services.visits import get_visit


def open_bill(session: Session, visit: Visit) -> Bill:
    """The visit's open bill; a new one (the next number: supplementary) when every bill
    so far is paid or refunded."""
    bill = session.scalar(
        select(Bill).where(Bill.visit_id == visit.id, Bill.status == BillStatus.OPEN)
    )
    if bill is None:
        last = session.scalar(select(func.max(Bill.number)).where(Bill.visit_id == visit.id))
        bill = Bill(visit_id=visit.id, facility_id=visit.facility_id, number=(last or 0) + 1)
        session.add(bill)
        session.flush()
    return bill


def accrue(session: Session, visit: Visit) -> None:
    """Adds the charges of everything done in ``visit`` that is not charged yet."""
    existing = set(
        session.scalars(
            select(Charge.source_key).where(
                Charge.visit_id == visit.id, Charge.source_key.is_not(None)
            )
        )
    )
    # Each source already charged is skipped before its catalog price is looked up: a bill is
    # built every time it is looked at, and most of a visit is charged by then.
    new = [
        *_examinations(session, visit, existing),
        *_services(session, visit, existing),
        *_drugs(session, visit, existing),
    ]
    _drop_cancelled_orders(session, visit)
    if not new:
        return
    bill = open_bill(session, visit)
    for charge in new:
        charge.bill_id = bill.id
        session.add(charge)
    session.flush()


def _bhyt(visit: Visit) -> bool:
    return visit.payment == Payment.BHYT


def _service_on(session: Session, facility_id: int, code: str, day: dt.date):
    """The catalog row of ``code`` in force on ``day``: the price of that day."""
    return session.scalar(
        select(MedicalService)
        .where(
            MedicalService.facility_id == facility_id,
            MedicalService.code == code,
            MedicalService.valid_from <= day,
            or_(MedicalService.valid_to.is_(None), MedicalService.valid_to >= day),
        )
        .order_by(MedicalService.valid_from.desc())
        .limit(1)
    )


def _examination_service(session: Session, facility_id: int, day: dt.date):
    """The facility's examination fee in force on ``day`` (the first examination service
    of its catalog by code)."""
    return session.scalar(
        select(MedicalService)
        .where(
            MedicalService.facility_id == facility_id,
            MedicalService.kind == ServiceKind.EXAMINATION,
            MedicalService.active.is_(True),
            MedicalService.valid_from <= day,
            or_(MedicalService.valid_to.is_(None), MedicalService.valid_to >= day),
        )
        .order_by(MedicalService.code, MedicalService.valid_from.desc())
        .limit(1)
    )


def _service_charge(
    visit: Visit,
    service: MedicalService,
    *,
    kind: ChargeKind,
    source_key: str,
    quantity: Decimal,
    at: dt.datetime,
    service_rate: int = 100,
    doctor: User | None = None,
) -> Charge:
    in_scope = _bhyt(visit) and service.bhyt_covered
    return Charge(
        visit_id=visit.id,
        facility_id=visit.facility_id,
        kind=kind,
        source_key=source_key,
        code=service.code,
        name=service.name,
        unit=service.unit,
        quantity=quantity,
        # A BHYT patient is charged the fund's price for what the fund covers; everything
        # else is charged at the facility's own price.
        unit_price=service.bhyt_price if in_scope else service.service_price,
        bhyt_price=service.bhyt_price,
        in_scope=in_scope,
        service_rate=service_rate,
        payment_rate=100,
        service_date=local_date(at),
        performed_at=at,
        doctor_licence=doctor.practising_certificate if doctor else None,
    )


def _examinations(session: Session, visit: Visit, existing: set[str]) -> list[Charge]:
    """One examination fee per encounter; the n-th specialty examination of a day is paid
    at the n-th rate (``exam_fee_rate_n``; the last rate for any later one)."""
    encounters = session.scalars(
        select(Encounter)
        .where(Encounter.visit_id == visit.id)
        .order_by(Encounter.started_at, Encounter.id)
    ).all()
    per_day: dict[dt.date, int] = defaultdict(int)
    charges = []
    for encounter in encounters:
        day = local_date(encounter.started_at)
        per_day[day] += 1  # counted charged or not: the ordinal decides the rate
        if f"encounter:{encounter.id}" in existing:
            continue
        service = _examination_service(session, visit.facility_id, day)
        if service is None:
            continue  # the facility charges no examination fee
        params = params_on(session, day)
        nth = min(per_day[day], 4)
        rate = int(params.get(f"exam_fee_rate_{nth}", 0))
        charges.append(
            _service_charge(
                visit,
                service,
                kind=ChargeKind.EXAMINATION,
                source_key=f"encounter:{encounter.id}",
                quantity=Decimal(1),
                at=encounter.started_at,
                service_rate=rate,
                doctor=encounter.doctor,
            )
        )
    return charges


def _services(session: Session, visit: Visit, existing: set[str]) -> list[Charge]:
    orders = session.scalars(
        select(ServiceOrder)
        .join(Encounter, ServiceOrder.encounter_id == Encounter.id)
        .where(Encounter.visit_id == visit.id, ServiceOrder.status != OrderStatus.CANCELLED)
        .order_by(ServiceOrder.id)
    ).all()
    charges = []
    for order in orders:
        if f"service_order:{order.id}" in existing:
            continue
        day = local_date(order.ordered_at)
        service = _service_on(session, visit.facility_id, order.service_code, day) or order.service
        if service.kind == ServiceKind.EXAMINATION:
            continue  # examination fees come from the encounters
        charges.append(
            _service_charge(
                visit,
                service,
                kind=ChargeKind.SERVICE,
                source_key=f"service_order:{order.id}",
                quantity=Decimal(order.quantity),
                at=order.ordered_at,
                doctor=order.encounter.doctor,
            )
        )
    return charges


def _drug_on(session: Session, facility_id: int, code: str, day: dt.date) -> Drug | None:
    return session.scalar(
        select(Drug)
        .where(
            Drug.facility_id == facility_id,
            Drug.code == code,
            Drug.valid_from <= day,
            or_(Drug.valid_to.is_(None), Drug.valid_to >= day),
        )
        .order_by(Drug.valid_from.desc())
        .limit(1)
    )


def _drugs(session: Session, visit: Visit, existing: set[str]) -> list[Charge]:
    """One charge per dispensed line; units brought back are a negative charge."""
    lines = session.execute(
        select(DispenseLine, Dispense)
        .join(Dispense, DispenseLine.dispense_id == Dispense.id)
        .join(Prescription, Dispense.prescription_id == Prescription.id)
        .join(Encounter, Prescription.encounter_id == Encounter.id)
        .where(Encounter.visit_id == visit.id)
        .order_by(DispenseLine.id)
    ).all()
    charges = []
    for line, dispense in lines:
        if f"dispense_line:{line.id}" in existing:
            continue
        day = local_date(dispense.at)
        drug = _drug_on(session, visit.facility_id, line.item.drug_code, day) or line.item.drug
        in_scope = _bhyt(visit) and drug.bhyt_covered
        sign = -1 if dispense.kind == DispenseKind.RETURN else 1
        charges.append(
            Charge(
                visit_id=visit.id,
                facility_id=visit.facility_id,
                kind=ChargeKind.DRUG,
                source_key=f"dispense_line:{line.id}",
                code=drug.code,
                name=line.item.drug_name,
                unit=drug.unit,
                quantity=sign * line.quantity,
                unit_price=drug.price,
                bhyt_price=drug.price,
                in_scope=in_scope,
                service_rate=100,
                payment_rate=drug.bhyt_payment_rate if in_scope else 100,
                service_date=day,
                performed_at=dispense.at,
                doctor_licence=line.item.prescription.prescriber.practising_certificate,
            )
        )
    return charges


def _drop_cancelled_orders(session: Session, visit: Visit) -> None:
    """An order cancelled after it was charged: its charge goes while the bill is open."""
    cancelled = session.scalars(
        select(ServiceOrder.id)
        .join(Encounter, ServiceOrder.encounter_id == Encounter.id)
        .where(Encounter.visit_id == visit.id, ServiceOrder.status == OrderStatus.CANCELLED)
    ).all()
    if not cancelled:
        return
    rows = session.scalars(
        select(Charge)
        .join(Bill, Charge.bill_id == Bill.id)
        .where(
            Charge.visit_id == visit.id,
            Charge.source_key.in_([f"service_order:{order_id}" for order_id in cancelled]),
            Charge.cancelled_at.is_(None),
            Bill.status == BillStatus.OPEN,
        )
    ).all()
    for charge in rows:
        charge.cancelled_at = utcnow()
        charge.cancel_reason = "order cancelled"


# Who may put a charge on a visit by hand (a supply used, a service done without an order).
CHARGE_ROLES = (Role.ADMIN, Role.CASHIER, Role.DOCTOR, Role.NURSE)
_THOUSANDTH = Decimal("0.001")


def add_charge(
    session: Session,
    principal: Principal,
    visit_id: int,
    code: str,
    quantity: Decimal,
    kind: ChargeKind,
) -> Charge:
    """A supply (VTYT) used or a service done without an order, at the catalog price in force
    today; it goes on the visit's open bill (a supplementary one once the bill is paid)."""
    principal.require_any(*CHARGE_ROLES)
    visit = get_visit(session, principal, visit_id)
    errors: dict[str, list[str]] = {}
    if kind not in (ChargeKind.SUPPLY, ChargeKind.SERVICE):
        errors["kind"] = [
            str(_l("A supply or a service; examinations and drugs come by themselves."))
        ]
    if not quantity.is_finite() or quantity <= 0 or quantity != quantity.quantize(_THOUSANDTH):
        errors["quantity"] = [str(_l("More than zero, at most three decimals."))]
    now = utcnow()
    service = _service_on(session, visit.facility_id, code.strip(), local_date(now))
    if service is None or not service.active:
        errors["code"] = [str(_l("No catalog item of your facility has this code today."))]
    elif service.kind == ServiceKind.EXAMINATION:
        errors["code"] = [str(_l("Examination fees come from the examinations themselves."))]
    if errors:
        raise ValidationFailed(str(_l("The charge was not added.")), errors=errors)
    if visit.status == VisitStatus.CANCELLED:
        raise Conflict(str(_l("The visit is cancelled.")), errors={"visit_id": ["cancelled"]})
    charge = _service_charge(visit, service, kind=kind, source_key=None, quantity=quantity, at=now)
    charge.created_by_id = principal.user_id
    charge.bill_id = open_bill(session, visit).id
    session.add(charge)
    session.flush()
    audit.record_change(session, principal, "Charge", charge.id, visit.patient_id, kind.value)
    return charge


def cancel_charge(session: Session, principal: Principal, charge_id: int, reason: str) -> Charge:
    """Takes a charge entered by hand off an open bill, with a reason; a paid bill is changed
    only by a refund."""
    principal.require_any(*CHARGE_ROLES)
    charge = session.get(Charge, charge_id)
    if charge is None or charge.facility_id != principal.facility_id:
        raise NotFound(str(_l("No charge has this id at your facility.")))
    if not reason or not reason.strip():
        raise ValidationFailed(
            str(_l("Say why the charge is taken off.")), errors={"reason": [str(_l("required"))]}
        )
    if charge.source_key is not None:
        raise Conflict(
            str(_l("This charge comes from the clinical record: cancel its order or dispensing.")),
            errors={"charge_id": [charge.source_key]},
        )
    if charge.cancelled_at is not None or charge.bill.status != BillStatus.OPEN:
        raise Conflict(
            str(_l("Only a charge of an open bill can be taken off; a paid bill is refunded.")),
            errors={"charge_id": [charge.bill.status.value]},
        )
    charge.cancelled_at = utcnow()
    charge.cancel_reason = reason.strip()[:300]
    session.flush()
    visit = session.get(Visit, charge.visit_id)
    audit.record_change(session, principal, "Charge", charge.id, visit.patient_id, "cancelled")
    return charge
