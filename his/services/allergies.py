"""A patient's allergies recorded one at a time (by another system through FHIR, or a
clinician), next to the whole-list edit of the registration form."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from his.errors import ValidationFailed
from his.models import AllergySeverity, AuditAction, PatientAllergy
from his.services import audit
from his.services.access import REGISTRATION_ROLES, Principal
from his.services.patients import load_patient
from his.text import clean


def add_allergy(
    session: Session,
    principal: Principal,
    patient_id: int,
    substance: str | None,
    reaction: str | None = None,
    severity: str | None = None,
) -> PatientAllergy:
    """The same rules as the allergies of the registration form, for one more allergy."""
    principal.require_any(*REGISTRATION_ROLES)
    patient = load_patient(session, patient_id)
    errors: dict[str, list[str]] = {}
    name = clean(substance or "")[:200]
    if not name:
        errors["substance"] = [str(_l("Name the substance."))]
    try:
        level = AllergySeverity(severity or "unknown")
    except ValueError:
        errors["severity"] = [str(_l("Severity must be mild, moderate, severe or unknown."))]
        level = AllergySeverity.UNKNOWN
    if errors:
        raise ValidationFailed(str(_l("Some fields are not valid; see errors.")), errors=errors)
    allergy = PatientAllergy(
        patient_id=patient.id,
        substance=name,
        reaction=clean(reaction or "")[:200] or None,
        severity=level,
    )
    session.add(allergy)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="PatientAllergy",
        entity_id=allergy.id,
        patient_id=patient.id,
    )
    return allergy
