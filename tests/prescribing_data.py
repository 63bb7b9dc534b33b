"""Drugs, an encounter in progress and its diagnoses for the prescription tests, made with
the ORM directly so these tests do not depend on the encounter services."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from his.localtime import local_today
from his.models import (
    Diagnosis,
    Drug,
    Encounter,
    Facility,
    Icd10Version,
    Patient,
    PatientAllergy,
    Role,
    RxClass,
    User,
    VitalSigns,
)
from his.services import catalogs
from tests.factories import (
    FacilityFactory,
    PatientFactory,
    RoomFactory,
    UserFactory,
    VisitFactory,
)

# code → (INN, brand, strength, form, unit, class)
DRUGS = {
    "PARA500": ("Paracetamol", "Panadol", "500 mg", "viên nén", "viên", RxClass.OTHER),
    "AMOX500": ("Amoxicillin", None, "500 mg", "viên nang", "viên", RxClass.OTHER),
    "AMOX250": ("Amoxicilin", "Amoxycap", "250 mg", "viên nang", "viên", RxClass.OTHER),
    "AMLO5": ("Amlodipin", None, "5 mg", "viên nén", "viên", RxClass.OTHER),
    "MORPH10": ("Morphin", None, "10 mg", "ống tiêm", "ống", RxClass.NARCOTIC),
    "DIAZ5": ("Diazepam", "Seduxen", "5 mg", "viên nén", "viên", RxClass.PSYCHOTROPIC),
    "SIRO": ("Ambroxol", None, "15 mg/5 ml", "si rô", "ml", RxClass.OTHER),
    "OLD1": ("Cimetidin", None, "200 mg", "viên nén", "viên", RxClass.OTHER),
}
WITHDRAWN = "OLD1"


def add_drugs(session, facility: Facility, prefix: str = "") -> dict[str, Drug]:
    made = {}
    for key, (inn, brand, strength, form, unit, rx_class) in DRUGS.items():
        code = prefix + key
        drug = Drug(
            facility_id=facility.id,
            code=code,
            active_ingredient=inn,
            ingredient_key=catalogs.ingredient_key(inn),
            brand=brand,
            strength=strength,
            dosage_form=form,
            route="uống" if unit != "ống" else "tiêm",
            unit=unit,
            national_code=f"VN-{code}",
            price=1000,
            rx_class=rx_class,
            search_key=catalogs.search_text(code, inn, brand),
            valid_from=dt.date(2020, 1, 1),
            valid_to=None,
            active=key != WITHDRAWN,
        )
        session.add(drug)
        made[key] = drug
    session.flush()
    return made


@dataclass
class Setting:
    facility: Facility
    doctor: User
    patient: Patient
    encounter: Encounter
    drugs: dict[str, Drug]
    icd: Icd10Version


def add_diagnosis(session, encounter: Encounter, icd: Icd10Version, code: str, main=False):
    row = Diagnosis(
        encounter_id=encounter.id,
        icd10_code=code,
        title=f"Bệnh {code}",
        icd10_version_id=icd.id,
        is_main=main,
        position=len(encounter.diagnoses),
    )
    session.add(row)
    session.flush()
    session.refresh(encounter)
    return row


def make_setting(session, *, facility_code: str = "91001", patient: Patient | None = None):
    facility = session.query(Facility).filter_by(code=facility_code).one_or_none()
    facility = facility or FacilityFactory(code=facility_code)
    room = RoomFactory(department__facility=facility)
    doctor = UserFactory(
        roles=(Role.DOCTOR,),
        facility=facility,
        full_name="BS. Lê Văn Khám",
        eprescription_code="BS-91001-0042",
    )
    patient = patient or PatientFactory(address_line="12 Trần Phú, Rạch Giá")
    visit = VisitFactory(facility_id=facility.id, patient_id=patient.id, room_id=room.id)
    encounter = Encounter(
        visit_id=visit.id,
        facility_id=facility.id,
        patient_id=patient.id,
        room_id=room.id,
        doctor_id=doctor.id,
        reason="Sốt, ho",
    )
    session.add(encounter)
    icd = Icd10Version(
        name=f"test-{uuid.uuid4().hex[:8]}",
        source="test",
        valid_from=dt.date(2026, 1, 1),
        valid_to=None,
    )
    session.add(icd)
    session.flush()
    add_diagnosis(session, encounter, icd, "J06.9", main=True)
    drugs = add_drugs(session, facility)
    return Setting(facility, doctor, patient, encounter, drugs, icd)


def next_encounter(session, s: Setting) -> Encounter:
    """Another visit of the same patient with the same doctor: a prescription there does not
    meet the duplicate-ingredient rule of the first encounter's prescriptions."""
    first = s.encounter
    visit = VisitFactory(facility_id=s.facility.id, patient_id=s.patient.id, room_id=first.room_id)
    encounter = Encounter(
        visit_id=visit.id,
        facility_id=s.facility.id,
        patient_id=s.patient.id,
        room_id=first.room_id,
        doctor_id=s.doctor.id,
        reason="Tái khám",
    )
    session.add(encounter)
    session.flush()
    add_diagnosis(session, encounter, s.icd, "J06.9", main=True)
    return encounter


def small_child(session, *, months: int = 30, guardian: str | None = None) -> Patient:
    today = local_today()
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return PatientFactory(
        birth_year=year,
        birth_month=month + 1,
        birth_day=1,
        guardian_name=guardian,
        guardian_cccd="091080001234" if guardian else None,
    )


def add_allergy(session, patient: Patient, substance: str) -> None:
    session.add(PatientAllergy(patient_id=patient.id, substance=substance))
    session.flush()
    session.refresh(patient)


def add_weight(session, encounter: Encounter, kg: str) -> None:
    session.add(VitalSigns(encounter_id=encounter.id, weight=Decimal(kg)))
    session.flush()
    session.refresh(encounter)


def item(code: str = "PARA500", dose="1", times=3, days=5, **extra) -> dict:
    return {
        "drug_code": code,
        "dose": str(dose),
        "times_per_day": times,
        "days": days,
        "route": extra.pop("route", None),
        "instructions": extra.pop("instructions", "Sau ăn"),
        **extra,
    }
