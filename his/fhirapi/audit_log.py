"""Every FHIR read and search leaves an audit row naming the caller (the staff member or
the backend client), in the same transaction as the response's data."""

from __future__ import annotations

from sqlalchemy.orm import Session

from his.fhirapi.security import FhirAccess
from his.models import AuditAction, FhirResource
from his.services import audit


def detail_for(access: FhirAccess, what: str) -> str:
    who = f"fhir client {access.client_id}" if access.client_id else "fhir"
    return f"{who}: {what}"


def read(session: Session, access: FhirAccess, row: FhirResource) -> None:
    audit.record(
        session,
        access.principal,
        AuditAction.READ,
        entity_type=row.resource_type,
        entity_id=row.resource_id,
        patient_id=row.patient_id,
        detail=detail_for(access, "read"),
    )


def search(
    session: Session,
    access: FhirAccess,
    resource_type: str,
    patient_id: int | None,
    what: str = "search",
) -> None:
    audit.record(
        session,
        access.principal,
        AuditAction.SEARCH,
        entity_type=resource_type,
        patient_id=patient_id,
        detail=detail_for(access, what),
    )


def change(
    session: Session, access: FhirAccess, action: AuditAction, row: FhirResource, what: str
) -> None:
    audit.record(
        session,
        access.principal,
        action,
        entity_type=row.resource_type,
        entity_id=row.resource_id,
        patient_id=row.patient_id,
        detail=detail_for(access, what),
    )
