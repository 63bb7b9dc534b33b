"""Patient: the province-wide patient index, per the VN Core Patient profile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.wire import is_number
from his.models import IdentifierType, Patient, PatientIdentifier, Sex

GENDER = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.UNDETERMINED: "unknown"}
IDENTIFIER_SYSTEMS = {
    IdentifierType.CCCD: systems.CCCD,
    IdentifierType.CMND: systems.CMND,
    IdentifierType.PASSPORT: systems.PASSPORT,
    IdentifierType.BHYT: systems.BHYT,
    IdentifierType.MRN: systems.MRN,
}
# HL7 v2-0203 identifier type codes: national id, passport, insurance member, medical record.
IDENTIFIER_TYPES = {
    IdentifierType.CCCD: "NI",
    IdentifierType.CMND: "NI",
    IdentifierType.PASSPORT: "PPN",
    IdentifierType.BHYT: "MB",
    IdentifierType.MRN: "MR",
}


@trigger(Patient)
def _patient_changed(row: Patient):
    return [("Patient", str(row.id))]


@trigger(PatientIdentifier)
def _identifier_changed(row: PatientIdentifier):
    return [("Patient", str(row.patient_id))]


def _all_ids(session: Session) -> Iterator[str]:
    for pid in session.scalars(select(Patient.id).order_by(Patient.id)):
        yield str(pid)


ALL_IDS["Patient"] = _all_ids


@builder("Patient")
def build_patient(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    patient = session.get(Patient, int(resource_id), options=[selectinload(Patient.identifiers)])
    if patient is None:
        return None
    return Built(patient_resource(session, patient), patient_id=patient.id)


def identifier(kind: IdentifierType, system: str, value: str) -> dict[str, Any]:
    found: dict[str, Any] = {"system": IDENTIFIER_SYSTEMS.get(kind) or system, "value": value}
    if kind in IDENTIFIER_TYPES:
        found["type"] = concept(systems.V2_0203, IDENTIFIER_TYPES[kind])
        found["use"] = "official" if kind == IdentifierType.CCCD else "usual"
    return found


def patient_resource(session: Session, patient: Patient) -> dict[str, Any]:
    from his.services.admin_units import unit_name

    identifiers = [identifier(i.type, i.system, i.value) for i in patient.identifiers]
    if not any(i.type == IdentifierType.MRN for i in patient.identifiers):
        identifiers.append(identifier(IdentifierType.MRN, "", patient.mrn))
    extensions = []
    if patient.ethnicity_code:
        extensions.append(
            {
                "url": systems.ETHNICITY,
                "valueCodeableConcept": concept(systems.ETHNICITY_CS, patient.ethnicity_code),
            }
        )
    if patient.occupation_code:
        extensions.append(
            {
                "url": systems.OCCUPATION,
                "valueCodeableConcept": {
                    "coding": [
                        coding(
                            f"{systems.VN_CORE}/CodeSystem/vn-occupation", patient.occupation_code
                        )
                    ]
                },
            }
        )
    birth = patient.birth
    birth_date = f"{birth.year:04d}"
    if birth.month:
        birth_date += f"-{birth.month:02d}"
        if birth.day:
            birth_date += f"-{birth.day:02d}"
    address_ext = []
    if patient.province_code:
        address_ext.append({"url": systems.ADMIN_PROVINCE, "valueCode": patient.province_code})
    if patient.commune_code:
        address_ext.append({"url": systems.ADMIN_COMMUNE, "valueCode": patient.commune_code})
    address = {
        "extension": address_ext,
        "use": "home",
        "line": [patient.address_line] if patient.address_line else [],
        "district": unit_name(session, "commune", patient.commune_code)
        if patient.commune_code
        else None,
        "city": unit_name(session, "province", patient.province_code)
        if patient.province_code
        else None,
        "country": "VN",
    }
    contact = []
    if patient.guardian_name:
        contact.append(
            {
                "relationship": [{"text": patient.guardian_relation}]
                if patient.guardian_relation
                else [],
                "name": {"text": patient.guardian_name},
                "telecom": [{"system": "phone", "value": patient.guardian_phone}]
                if patient.guardian_phone
                else [],
                "extension": [],
            }
        )
    resource: dict[str, Any] = {
        "meta": {"profile": [f"{systems.VN_CORE}/StructureDefinition/vn-core-patient"]},
        "extension": extensions,
        "identifier": identifiers,
        "active": patient.merged_into_id is None,
        "name": [
            {
                "use": "official",
                "text": patient.full_name,
                "family": patient.family_name,
                "given": [g for g in (patient.middle_name, patient.given_name) if g],
            }
        ],
        "telecom": [{"system": "phone", "value": patient.phone, "use": "mobile"}]
        if patient.phone
        else [],
        "gender": GENDER[patient.sex],
        "birthDate": birth_date,
        "address": [address]
        if any(v for k, v in address.items() if k not in ("use", "country"))
        else [],
        "contact": contact,
        "managingOrganization": ref("Organization", patient.registered_facility_id),
        "link": [{"other": ref("Patient", patient.merged_into_id), "type": "replaced-by"}]
        if patient.merged_into_id
        else [],
    }
    return drop_empty(resource)
