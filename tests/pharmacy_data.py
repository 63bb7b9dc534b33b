"""Rows the pharmacy tests need, made directly with the ORM: catalog drugs, stock lots and
signed prescriptions (the prescribing services are not needed to have something to
dispense)."""

from __future__ import annotations

import datetime as dt
import secrets
import string
from decimal import Decimal

from sqlalchemy.orm import Session

from his.db import utcnow
from his.localtime import local_today
from his.models import (
    Drug,
    Encounter,
    Facility,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    PrescriptionType,
    Role,
    RxClass,
    StockLot,
    User,
)
from his.services.access import Principal
from his.text import fold_vi
from tests.factories import PatientFactory, UserFactory, VisitFactory


def principal_of(user: User) -> Principal:
    return Principal.for_user(user)


def make_drug(
    session: Session,
    facility: Facility,
    code: str,
    ingredient: str = "Amoxicillin",
    *,
    strength: str = "500 mg",
    unit: str = "viên",
    rx_class: RxClass = RxClass.OTHER,
    price: int = 1_000,
    valid_from: dt.date = dt.date(2020, 1, 1),
) -> Drug:
    drug = Drug(
        facility_id=facility.id,
        code=code,
        active_ingredient=ingredient,
        ingredient_key=fold_vi(ingredient),
        strength=strength,
        dosage_form="viên nén",
        route="uống",
        unit=unit,
        price=price,
        rx_class=rx_class,
        search_key=fold_vi(f"{code} {ingredient}"),
        valid_from=valid_from,
    )
    session.add(drug)
    session.flush()
    return drug


def make_lot(
    session: Session,
    facility: Facility,
    drug: Drug,
    lot_number: str,
    expiry: dt.date,
    quantity: int | Decimal,
    unit_cost: int = 700,
) -> StockLot:
    lot = StockLot(
        facility_id=facility.id,
        drug_code=drug.code,
        lot_number=lot_number,
        expiry_date=expiry,
        quantity=Decimal(quantity),
        unit_cost=unit_cost,
    )
    session.add(lot)
    session.flush()
    return lot


def prescription_code(facility: Facility, rx_type: PrescriptionType) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return facility.code + "".join(secrets.choice(alphabet) for _ in range(7)) + "-" + rx_type


def make_prescription(
    session: Session,
    facility: Facility,
    items: list[tuple[Drug, int | Decimal]],
    *,
    doctor: User | None = None,
    patient=None,
    status: PrescriptionStatus = PrescriptionStatus.SIGNED,
    rx_type: PrescriptionType = PrescriptionType.OTHER,
    valid_until: dt.date | None = None,
    signed_at: dt.datetime | None = None,
) -> Prescription:
    """A prescription as the prescribing service leaves it after signing."""
    doctor = doctor or UserFactory(roles=(Role.DOCTOR,), facility=facility)
    patient = patient or PatientFactory()
    visit = VisitFactory(facility_id=facility.id, patient_id=patient.id)
    encounter = Encounter(
        visit_id=visit.id, facility_id=facility.id, patient_id=patient.id, doctor_id=doctor.id
    )
    session.add(encounter)
    session.flush()
    signed = status is not PrescriptionStatus.DRAFT
    prescription = Prescription(
        encounter_id=encounter.id,
        facility_id=facility.id,
        patient_id=patient.id,
        prescriber_id=doctor.id,
        rx_type=rx_type,
        status=status,
        code=prescription_code(facility, rx_type) if signed else None,
        signed_at=(signed_at or utcnow()) if signed else None,
        signed_by_id=doctor.id if signed else None,
        valid_until=valid_until or local_today() + dt.timedelta(days=5),
    )
    for position, (drug, amount) in enumerate(items):
        days = 5
        prescription.items.append(
            PrescriptionItem(
                position=position,
                drug_id=drug.id,
                drug_code=drug.code,
                drug_name=f"{drug.active_ingredient} {drug.strength}",
                dose=Decimal(1),
                times_per_day=2,
                days=days,
                route=drug.route,
                computed_quantity=Decimal(amount),
                quantity=Decimal(amount),
            )
        )
    session.add(prescription)
    session.flush()
    return prescription
