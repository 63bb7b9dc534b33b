"""Encounter (the visit ``v{id}`` and each examination ``e{id}``) and Condition (the ICD-10
diagnoses coded in an examination).

A visit is one arrival at a facility (MA_LK); an examination is one doctor's encounter
within it, ``partOf`` the visit. The patient is always the visit's: a merge moves visits,
so the visit names the person the record now belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, date_time, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import DATE, REFERENCE, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import (
    Diagnosis,
    Disposition,
    Encounter,
    EncounterStatus,
    Icd10Version,
    Role,
    Room,
    UserRole,
    Visit,
    VisitStatus,
    VisitType,
)

VISIT_STATUS = {
    VisitStatus.WAITING: "arrived",
    VisitStatus.IN_EXAMINATION: "in-progress",
    VisitStatus.FINISHED: "finished",
    VisitStatus.CANCELLED: "cancelled",
}
ENCOUNTER_STATUS = {
    EncounterStatus.IN_PROGRESS: "in-progress",
    EncounterStatus.FINISHED: "finished",
}
# v3-ActCode encounter classes.
VISIT_CLASS = {
    VisitType.OUTPATIENT: ("AMB", "ambulatory"),
    VisitType.EMERGENCY: ("EMER", "emergency"),
    VisitType.INPATIENT: ("IMP", "inpatient encounter"),
    VisitType.DAY: ("SS", "short stay"),
    VisitType.OBSERVATION: ("OBSENC", "observation encounter"),
}
# The HL7 discharge-disposition code closest to ours; our own code goes along, exact.
# Admission has no HL7 code of its own here ("hosp" is hospice), hence "oth".
DISPOSITION = {
    Disposition.HOME: ("home", "Home"),
    Disposition.FOLLOW_UP: ("home", "Home"),
    Disposition.ADMIT: ("oth", "Other"),
    Disposition.REFER_OUT: ("other-hcf", "Other healthcare facility"),
    Disposition.DIED: ("exp", "Expired"),
}
DISPOSITION_VI = {
    Disposition.HOME: "Cho về",
    Disposition.FOLLOW_UP: "Hẹn tái khám",
    Disposition.ADMIT: "Nhập viện",
    Disposition.REFER_OUT: "Chuyển tuyến",
    Disposition.DIED: "Tử vong",
}
CLINICAL_ROLES = (Role.DOCTOR, Role.NURSE, Role.PHARMACIST)  # the users that are Practitioners

# --- search parameters ----------------------------------------------------------------

param("Encounter", "patient", REFERENCE, "subject", targets=("Patient",))
param("Encounter", "subject", REFERENCE, "subject", targets=("Patient",))
param("Encounter", "date", DATE, "period", doc="The period of the visit or examination")
param("Encounter", "status", TOKEN, "status")
param("Encounter", "class", TOKEN, "class", doc="v3-ActCode: AMB, EMER, IMP, SS, OBSENC")
param("Encounter", "service-provider", REFERENCE, "serviceProvider", targets=("Organization",))
param("Encounter", "identifier", TOKEN, "identifier", doc="MA_LK of a visit (system|value)")
param("Encounter", "part-of", REFERENCE, "partOf", targets=("Encounter",))
param("Encounter", "participant", REFERENCE, "participant.individual", targets=("Practitioner",))
param("Encounter", "practitioner", REFERENCE, "participant.individual", targets=("Practitioner",))
param("Encounter", "location", REFERENCE, "location.location", targets=("Location",))
param("Encounter", "diagnosis", REFERENCE, "diagnosis.condition", targets=("Condition",))

param("Condition", "code", TOKEN, "code", doc="ICD-10 (system|code)")
param("Condition", "patient", REFERENCE, "subject", targets=("Patient",))
param("Condition", "subject", REFERENCE, "subject", targets=("Patient",))
param("Condition", "encounter", REFERENCE, "encounter", targets=("Encounter",))
param("Condition", "category", TOKEN, "category")
param("Condition", "clinical-status", TOKEN, "clinicalStatus")
param("Condition", "verification-status", TOKEN, "verificationStatus")
param("Condition", "recorded-date", DATE, "recordedDate")


# --- triggers -------------------------------------------------------------------------


@trigger(Visit)
def _visit_changed(row: Visit):
    keys = [("Encounter", f"v{row.id}")]
    session = object_session(row)
    if session is not None and row.id is not None:
        # The examinations carry the visit's class and patient.
        for eid in session.scalars(select(Encounter.id).where(Encounter.visit_id == row.id)):
            keys.append(("Encounter", f"e{eid}"))
    return keys


@trigger(Encounter)
def _encounter_changed(row: Encounter):
    return [("Encounter", f"e{row.id}")]


@trigger(Diagnosis)
def _diagnosis_changed(row: Diagnosis):
    # The examination lists its diagnoses, so it changes with each of them.
    return [("Condition", str(row.id)), ("Encounter", f"e{row.encounter_id}")]


def _encounter_ids(session: Session) -> Iterator[str]:
    for vid in session.scalars(select(Visit.id).order_by(Visit.id)):
        yield f"v{vid}"
    for eid in session.scalars(select(Encounter.id).order_by(Encounter.id)):
        yield f"e{eid}"


def _condition_ids(session: Session) -> Iterator[str]:
    for did in session.scalars(select(Diagnosis.id).order_by(Diagnosis.id)):
        yield str(did)


ALL_IDS["Encounter"] = _encounter_ids
ALL_IDS["Condition"] = _condition_ids


# --- shared with the other clinical mappers ---------------------------------------------


def row_id(resource_id: str, prefix: str = "") -> int | None:
    """The table id in ``{prefix}{digits}``, or None for an id this server never gives."""
    if not resource_id.startswith(prefix):
        return None
    digits = resource_id[len(prefix) :]
    return int(digits) if is_number(digits) and len(digits) < 19 else None


def clinician_ref(session: Session, user_id: int | None) -> dict[str, Any] | None:
    """Practitioner/{id} when the user is one (a clinical role): a lab system's integration
    user has no Practitioner, and a reference to nothing would mislead."""
    if user_id is None:
        return None
    clinical = session.scalar(
        select(UserRole.user_id)
        .where(UserRole.user_id == user_id, UserRole.role.in_(CLINICAL_ROLES))
        .limit(1)
    )
    return ref("Practitioner", user_id) if clinical is not None else None


def visit_class(visit: Visit) -> dict[str, Any]:
    code, display = VISIT_CLASS[visit.visit_type]
    return coding(systems.ACT_CODE, code, display)


# --- Encounter ------------------------------------------------------------------------


@builder("Encounter")
def build_encounter(session: Session, resource_id: str) -> Built | None:
    if (vid := row_id(resource_id, "v")) is not None:
        visit = session.get(Visit, vid)
        if visit is None:
            return None
        return Built(visit_resource(session, visit), visit.patient_id, visit.facility_id)
    if (eid := row_id(resource_id, "e")) is not None:
        encounter = session.get(Encounter, eid)
        if encounter is None:
            return None
        visit = session.get(Visit, encounter.visit_id)
        assert visit is not None
        return Built(
            examination_resource(session, encounter, visit),
            visit.patient_id,
            encounter.facility_id,
        )
    return None


def _locations(session: Session, room_id: int | None) -> list[dict[str, Any]]:
    if room_id is None:
        return []
    room = session.get(Room, room_id)
    found = [{"location": ref("Location", f"r{room_id}", room.name if room else None)}]
    if room is not None:
        found.append({"location": ref("Location", f"d{room.department_id}")})
    return found


def visit_resource(session: Session, visit: Visit) -> dict[str, Any]:
    priority = None
    if visit.priority_reason is not None:
        codings = [coding(systems.PRIORITY_REASON_CS, str(visit.priority_reason))]
        if str(visit.priority_reason) == "emergency":
            codings.insert(0, coding(systems.ACT_PRIORITY, "EM", "emergency"))
        priority = {"coding": codings}
    hospitalization = None
    if visit.referral_from_facility_code or visit.referral_letter_number:
        hospitalization = {
            "preAdmissionIdentifier": {
                "system": systems.REFERRAL_LETTER,
                "value": visit.referral_letter_number,
            }
            if visit.referral_letter_number
            else None,
            "origin": {
                "identifier": {
                    "system": systems.FACILITY_CODE,
                    "value": visit.referral_from_facility_code,
                }
            }
            if visit.referral_from_facility_code
            else None,
        }
    resource = {
        "identifier": [{"use": "official", "system": systems.MA_LK, "value": visit.visit_code}],
        "status": VISIT_STATUS[visit.status],
        "class": visit_class(visit),
        "priority": priority,
        "subject": ref("Patient", visit.patient_id),
        "period": {"start": date_time(visit.opened_at), "end": date_time(visit.closed_at)},
        # The diagnosis written on the referral letter: why the patient was sent here.
        "reasonCode": [{"text": visit.referral_diagnosis}] if visit.referral_diagnosis else [],
        "hospitalization": hospitalization,
        "location": _locations(session, visit.room_id),
        "serviceProvider": ref("Organization", visit.facility_id),
    }
    return drop_empty(resource)


def examination_resource(session: Session, encounter: Encounter, visit: Visit) -> dict[str, Any]:
    diagnoses = session.scalars(
        select(Diagnosis)
        .where(Diagnosis.encounter_id == encounter.id, Diagnosis.removed_at.is_(None))
        .order_by(Diagnosis.is_main.desc(), Diagnosis.position, Diagnosis.id)
    ).all()
    participants = []
    doctor = clinician_ref(session, encounter.doctor_id)
    if doctor:
        participants.append(
            {
                "type": [concept(systems.PARTICIPATION_TYPE, "PPRF", "primary performer")],
                "individual": doctor,
            }
        )
    hospitalization = None
    if encounter.disposition is not None:
        code, display = DISPOSITION[encounter.disposition]
        hospitalization = {
            "dischargeDisposition": {
                "coding": [
                    coding(systems.DISCHARGE_DISPOSITION, code, display),
                    coding(
                        systems.DISPOSITION_CS,
                        str(encounter.disposition),
                        DISPOSITION_VI[encounter.disposition],
                    ),
                ],
                "text": DISPOSITION_VI[encounter.disposition],
            },
            "destination": {
                "identifier": {
                    "system": systems.FACILITY_CODE,
                    "value": encounter.refer_to_facility_code,
                }
            }
            if encounter.refer_to_facility_code
            else None,
        }
    resource = {
        "identifier": [{"system": systems.ENCOUNTER_ID, "value": str(encounter.id)}],
        "status": ENCOUNTER_STATUS[encounter.status],
        "class": visit_class(visit),
        "subject": ref("Patient", visit.patient_id),
        "participant": participants,
        "period": {
            "start": date_time(encounter.started_at),
            "end": date_time(encounter.finished_at),
        },
        "reasonCode": [{"text": encounter.reason}] if encounter.reason else [],
        "diagnosis": [
            {
                "condition": ref("Condition", d.id, f"{d.icd10_code} {d.title}"),
                "use": concept(systems.DIAGNOSIS_ROLE, "DD", "Discharge diagnosis")
                if d.is_main
                else concept(systems.DIAGNOSIS_ROLE, "CM", "Comorbidity diagnosis"),
                "rank": rank,
            }
            for rank, d in enumerate(diagnoses, start=1)
        ],
        "hospitalization": hospitalization,
        "location": _locations(session, encounter.room_id),
        "serviceProvider": ref("Organization", encounter.facility_id),
        "partOf": ref("Encounter", f"v{encounter.visit_id}"),
    }
    return drop_empty(resource)


# --- Condition ------------------------------------------------------------------------


@builder("Condition")
def build_condition(session: Session, resource_id: str) -> Built | None:
    did = row_id(resource_id)
    diagnosis = session.get(Diagnosis, did) if did is not None else None
    if diagnosis is None:
        return None
    encounter = session.get(Encounter, diagnosis.encounter_id)
    assert encounter is not None
    visit = session.get(Visit, encounter.visit_id)
    assert visit is not None
    return Built(
        condition_resource(session, diagnosis, visit.patient_id),
        visit.patient_id,
        encounter.facility_id,
    )


def condition_resource(session: Session, diagnosis: Diagnosis, patient_id: int) -> dict[str, Any]:
    removed = diagnosis.removed_at is not None
    version = session.get(Icd10Version, diagnosis.icd10_version_id)
    code = coding(systems.ICD10_VN, diagnosis.icd10_code, diagnosis.title)
    if version is not None:
        code["version"] = version.name  # the list it was coded with
    resource = {
        # A removed diagnosis was coded by mistake (or replaced by the right code): it stays,
        # marked entered-in-error, and has no clinical status (con-5).
        "clinicalStatus": None
        if removed
        else concept(systems.CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": concept(
            systems.CONDITION_VERIFICATION,
            "entered-in-error" if removed else "confirmed",
            "Entered in Error" if removed else "Confirmed",
        ),
        "category": [
            concept(systems.CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
        ],
        "code": {"coding": [code], "text": diagnosis.title},
        "subject": ref("Patient", patient_id),
        "encounter": ref("Encounter", f"e{diagnosis.encounter_id}"),
        "recordedDate": date_time(diagnosis.created_at),
        "note": [{"text": diagnosis.note}] if diagnosis.note else [],
    }
    return drop_empty(resource)
