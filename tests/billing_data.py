"""Claim-ready data for the billing and FHIR tests: a hospital that can sign claim files and
a finished BHYT visit with an examination, two services (one with a result), a dispensed
drug and a diagnosis."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from billing.claim_files import make_demo_keys
from billing.models import FacilityClaimSettings
from his.db import utcnow
from his.localtime import local_today
from his.models import (
    CareLevel,
    Diagnosis,
    Dispense,
    DispenseLine,
    LegacyTier,
    MedicalService,
    ObservationResult,
    Payment,
    Role,
    ServiceKind,
    VisitStatus,
)
from his.models.stock import DispenseKind
from his.services import catalogs
from his.services import encounters as encounter_service
from his.services.access import Principal
from tests.encounters_data import Clinic, clinic, icd10_lists
from tests.factories import CoverageFactory, PatientFactory, UserFactory, VisitFactory
from tests.pharmacy_data import make_drug, make_lot

_queue_numbers = itertools.count(1)


def billing_hospital(db_session, code: str = "91001") -> Clinic:
    """A basic-level former provincial hospital with an examination fee (42,100 BHYT /
    50,000 own price) beside the clinic's glucose test (21,500 / 30,000) and chest X-ray
    (65,400 / 90,000)."""
    place = clinic(db_session, code=code)
    place.facility.care_level = CareLevel.BASIC
    place.facility.legacy_tier = LegacyTier.PROVINCIAL
    db_session.add(
        MedicalService(
            facility_id=place.facility.id,
            code="02.1896",
            name="Khám Nội",
            kind=ServiceKind.EXAMINATION,
            unit="lần",
            bhyt_price=42_100,
            service_price=50_000,
            search_key=catalogs.search_text("02.1896", "Khám Nội"),
            valid_from=dt.date(2026, 1, 1),
        )
    )
    db_session.flush()
    return place


def claim_hospital(db_session, keys: Path, code: str = "91001") -> Clinic:
    """The billing hospital, making claim files: claim settings and a test certificate in
    ``keys``."""
    place = billing_hospital(db_session, code)
    place.doctor.practising_certificate = "000123/AG-CCHN"
    db_session.add(
        FacilityClaimSettings(facility_id=place.facility.id, head_insurance_number="9100012345")
    )
    db_session.flush()
    make_demo_keys(keys, place.facility)
    return place


def referred_bhyt() -> dict:
    """A BHYT visit with a referral letter: right route."""
    return {
        "payment": Payment.BHYT,
        "referral_from_facility_code": "91002",
        "referral_letter_number": "CT-1",
        "referral_date": local_today(),
    }


def examined(db_session, place: Clinic, *, patient_name: str | None = None, **visit_fields):
    """A new patient on a DN card (level 4: 80 %) valid from 2026 to the end of this year,
    waiting in the clinic's room, and the doctor's examination started: (visit, encounter,
    the doctor's principal)."""
    patient = PatientFactory(**({"full_name": patient_name} if patient_name else {}))
    year = local_today().year
    CoverageFactory(
        patient=patient,
        benefit_level=4,
        valid_from=dt.date(min(year, 2026), 1, 1),
        valid_to=dt.date(year, 12, 31),
    )
    waiting = VisitFactory(
        facility_id=place.facility.id,
        patient_id=patient.id,
        room_id=place.room.id,
        queue_date=local_today(),
        queue_number=next(_queue_numbers),
        **visit_fields,
    )
    doctor = Principal.for_user(place.doctor)
    encounter = encounter_service.start_examination(db_session, doctor, waiting.id)
    return waiting, encounter, doctor


def finished_visit(db_session, place, **visit_fields):
    """A referred BHYT patient (DN, level 4, card code HS4…): examined, a glucose test with a
    result, a chest X-ray, 10 tablets of amoxicillin at 1,500 dispensed, J18.9 diagnosed."""
    patient = PatientFactory(
        full_name="Nguyễn Thị Ánh",
        birth_month=None,
        birth_day=None,
        address_line="12 Trần Hưng Đạo, phường Long Xuyên",
        province_code="91",
        commune_code="30280",
    )
    CoverageFactory(
        patient=patient,
        card_number="DN4911234567890",
        benefit_level=4,
        registered_facility_code="91099",
    )
    visit = VisitFactory(
        facility_id=place.facility.id,
        patient_id=patient.id,
        room_id=place.room.id,
        queue_date=local_today(),
        queue_number=next(_queue_numbers),
        payment=Payment.BHYT,
        referral_from_facility_code="91002",
        referral_letter_number="CT-77",
        referral_date=local_today(),
        **visit_fields,
    )
    doctor = Principal.for_user(place.doctor)
    encounter = encounter_service.start_examination(db_session, doctor, visit.id)
    glucose = encounter_service.add_order(db_session, doctor, encounter.id, "23.0075.1494")
    encounter_service.add_order(db_session, doctor, encounter.id, "18.0071.0028")
    db_session.flush()
    db_session.add(
        ObservationResult(
            order_id=glucose.id, value="5.6", unit="mmol/L", resulted_by_id=place.lab.id
        )
    )
    version, _later = icd10_lists(db_session)
    db_session.add(
        Diagnosis(
            encounter_id=encounter.id,
            icd10_code="J18.9",
            title="Viêm phổi, không đặc hiệu",
            icd10_version_id=version.id,
            is_main=True,
        )
    )
    dispense(db_session, place, encounter, Decimal(10))
    encounter.finished_at = utcnow()
    visit.status = VisitStatus.FINISHED
    visit.closed_at = utcnow()
    db_session.flush()
    return visit


def dispense(db_session, place, encounter, quantity: Decimal) -> None:
    from his.models import Drug, Prescription, PrescriptionItem, StockLot
    from his.models.prescription import PrescriptionStatus, PrescriptionType

    drug = db_session.scalar(select(Drug).where(Drug.facility_id == place.facility.id))
    if drug is None:
        drug = make_drug(db_session, place.facility, "AMO500", price=1_500)
        make_lot(db_session, place.facility, drug, "L1", dt.date(2028, 1, 1), 100)
    lot = db_session.scalar(select(StockLot).where(StockLot.drug_code == drug.code))
    prescription = Prescription(
        encounter_id=encounter.id,
        facility_id=place.facility.id,
        patient_id=encounter.patient_id,
        prescriber_id=place.doctor.id,
        rx_type=PrescriptionType.OTHER,
        status=PrescriptionStatus.SIGNED,
        code=f"91001abcdef{next(_queue_numbers) % 10}-c",
    )
    item = PrescriptionItem(
        position=0,
        drug_id=drug.id,
        drug_code=drug.code,
        drug_name="Amoxicillin 500 mg",
        dose=Decimal(1),
        times_per_day=2,
        days=5,
        route="uống",
        computed_quantity=quantity,
        quantity=quantity,
    )
    prescription.items.append(item)
    db_session.add(prescription)
    db_session.flush()
    pharmacist = UserFactory(roles=(Role.PHARMACIST,), facility=place.facility)
    dispense = Dispense(
        prescription_id=prescription.id,
        facility_id=place.facility.id,
        kind=DispenseKind.DISPENSE,
        pharmacist_id=pharmacist.id,
    )
    dispense.lines.append(DispenseLine(item_id=item.id, lot_id=lot.id, quantity=quantity))
    db_session.add(dispense)
    db_session.flush()
