"""Practitioner and PractitionerRole: the staff who take part in care (one of each per user
with a clinical role). Never the password hash, tokens or login times."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import REFERENCE, STRING, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import Role, User, UserRole

# Roles that make a user a Practitioner; with the HL7 practitioner-role code they map to.
CLINICAL_ROLES = {
    Role.DOCTOR: ("doctor", "Doctor"),
    Role.NURSE: ("nurse", "Nurse"),
    Role.PHARMACIST: ("pharmacist", "Pharmacist"),
}
ROLE_DISPLAY = {Role.DOCTOR: "Bác sĩ", Role.NURSE: "Điều dưỡng", Role.PHARMACIST: "Dược sĩ"}

param("Practitioner", "identifier", TOKEN, "identifier", doc="username, CCHN (system|value)")
param("Practitioner", "name", STRING, "name")
param("Practitioner", "active", TOKEN, "active")

param("PractitionerRole", "practitioner", REFERENCE, "practitioner", targets=("Practitioner",))
param("PractitionerRole", "organization", REFERENCE, "organization", targets=("Organization",))
param("PractitionerRole", "role", TOKEN, "code", doc="doctor, nurse, pharmacist")
param("PractitionerRole", "active", TOKEN, "active")


@trigger(User)
def _user_changed(row: User):
    return [("Practitioner", str(row.id)), ("PractitionerRole", str(row.id))]


@trigger(UserRole)
def _role_changed(row: UserRole):
    return [("Practitioner", str(row.user_id)), ("PractitionerRole", str(row.user_id))]


def _ids(session: Session) -> Iterator[str]:
    clinical = select(UserRole.user_id).where(UserRole.role.in_(list(CLINICAL_ROLES)))
    for uid in session.scalars(select(User.id).where(User.id.in_(clinical)).order_by(User.id)):
        yield str(uid)


ALL_IDS["Practitioner"] = _ids
ALL_IDS["PractitionerRole"] = _ids


def _clinician(session: Session, resource_id: str) -> User | None:
    if not is_number(resource_id):
        return None
    user = session.get(User, int(resource_id), options=[selectinload(User.role_rows)])
    # A user whose last clinical role was taken away is no longer a Practitioner: gone.
    if user is None or not any(r in CLINICAL_ROLES for r in user.roles):
        return None
    return user


@builder("Practitioner")
def build_practitioner(session: Session, resource_id: str) -> Built | None:
    user = _clinician(session, resource_id)
    if user is None:
        return None
    # Not the login name: publishing it would hand every account name to whoever reads
    # the directory. Clinicians are identified by their practising certificate (CCHN).
    identifiers: list[dict[str, Any]] = []
    if user.practising_certificate:
        identifiers.append(
            {"use": "official", "system": systems.CCHN, "value": user.practising_certificate}
        )
    if user.eprescription_code:
        identifiers.append({"system": systems.PRESCRIBER_CODE, "value": user.eprescription_code})
    resource = {
        "identifier": identifiers,
        "active": bool(user.active),
        "name": [{"use": "official", "text": user.full_name}],
        "qualification": [
            {
                "identifier": [{"system": systems.CCHN, "value": user.practising_certificate}],
                "code": {"text": "Chứng chỉ hành nghề"},
            }
        ]
        if user.practising_certificate
        else [],
    }
    # Shared: any facility may need to know who signed a referral or a prescription.
    return Built(drop_empty(resource))


@builder("PractitionerRole")
def build_practitioner_role(session: Session, resource_id: str) -> Built | None:
    user = _clinician(session, resource_id)
    if user is None:
        return None
    codes = [
        {
            "coding": [
                coding(systems.PRACTITIONER_ROLE_CS, *CLINICAL_ROLES[role]),
                coding(systems.STAFF_ROLE_CS, role.value, ROLE_DISPLAY[role]),
            ],
            "text": ROLE_DISPLAY[role],
        }
        for role in user.roles
        if role in CLINICAL_ROLES
    ]
    resource = {
        "active": bool(user.active),
        "practitioner": ref("Practitioner", user.id, user.full_name),
        "organization": ref("Organization", user.facility_id),
        "code": codes,
    }
    return Built(drop_empty(resource))
