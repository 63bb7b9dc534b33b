"""Reading patients from the shared index. Every read is audited."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session, selectinload

from his.errors import NotFound
from his.models import Patient
from his.services import audit
from his.services.access import PATIENT_ROLES, Principal


def get_patient(session: Session, principal: Principal, patient_id: int) -> Patient:
    """Any facility's staff may read the province-wide index; the read is recorded."""
    principal.require_any(*PATIENT_ROLES)
    patient = session.get(Patient, patient_id, options=[selectinload(Patient.identifiers)])
    if patient is None:
        raise NotFound(str(_l("No patient has this id.")))
    audit.record_read(session, principal, "Patient", patient.id, patient.id)
    return patient
