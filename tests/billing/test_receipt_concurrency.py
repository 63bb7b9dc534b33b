"""Forty cashiers' payments at once: every receipt number of the facility and year is
different and none is skipped, on SQLite (threads sharing the file) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from billing.bills import build
from billing.models import Payment as PaymentRow
from billing.models import PaymentMethod
from billing.payments import take_payment
from his.db import Database, make_engine
from his.localtime import local_today
from his.models import (
    Facility,
    MedicalService,
    Patient,
    Payment,
    Role,
    ServiceKind,
    Visit,
)
from his.services.access import Principal
from his.services.demo import load_demo

PAYMENTS = 40


def test_receipt_numbers_under_concurrency(backend, fresh_database):
    databases = fresh_database(backend)
    db = Database(make_engine(next(databases), pool_size=12, max_overflow=4))
    try:
        with db.session() as session:
            load_demo(session)
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            exam = session.scalar(
                select(MedicalService).where(
                    MedicalService.facility_id == hospital.id,
                    MedicalService.kind == ServiceKind.EXAMINATION,
                )
            )
            assert exam is not None, "the demo catalog has an examination fee"
            patients = session.scalars(select(Patient.id).order_by(Patient.id).limit(PAYMENTS))
            cashier = Principal(
                user_id=None,
                username="burst",
                roles=frozenset({Role.CASHIER}),
                facility_id=hospital.id,
            )
            bill_ids = []
            for n, patient_id in enumerate(patients):
                visit = Visit(
                    visit_code=f"BURST{n:05d}",
                    facility_id=hospital.id,
                    patient_id=patient_id,
                    payment=Payment.FEE,
                )
                session.add(visit)
                session.flush()
                _examination(session, visit, hospital)
                bill_ids.append(build(session, visit).open_bill.bill.id)

        def pay(bill_id: int) -> str:
            with db.session(write=True) as session:
                owed = session.get(Visit, _visit_of(session, bill_id))
                amount = build(session, owed).balance
                settled = take_payment(session, cashier, bill_id, PaymentMethod.CASH, amount)
                return settled.payment.receipt_number

        with ThreadPoolExecutor(max_workers=10) as pool:
            numbers = list(pool.map(pay, bill_ids))

        year = local_today().year
        assert sorted(numbers) == [f"{year}-{n:06d}" for n in range(1, PAYMENTS + 1)]
        with db.session(write=False) as session:
            stored = session.scalars(select(PaymentRow.receipt_number)).all()
        assert sorted(stored) == sorted(numbers)
    finally:
        db.engine.dispose()
        databases.close()


def _visit_of(session, bill_id: int) -> int:
    from billing.models import Bill

    return session.get(Bill, bill_id).visit_id


def _examination(session, visit: Visit, hospital: Facility) -> None:
    """A finished examination of the visit: what its examination fee is charged for."""
    from his.models import Encounter, User

    doctor = session.scalar(select(User).where(User.facility_id == hospital.id).limit(1))
    session.add(
        Encounter(
            visit_id=visit.id,
            facility_id=hospital.id,
            patient_id=visit.patient_id,
            doctor_id=doctor.id,
            started_at=dt.datetime.now(dt.UTC),
        )
    )
    session.flush()
