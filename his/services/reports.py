"""Diagnostic reports sent by laboratory and imaging systems: checked against the order,
the encounter and the results they name, so a report never lands on the wrong patient."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from his.db import utcnow
from his.errors import ValidationFailed
from his.models import (
    AuditAction,
    DiagnosticReport,
    Encounter,
    ObservationResult,
    Patient,
    ServiceOrder,
)
from his.services import audit
from his.services.access import Principal
from his.services.encounters import RESULT_ROLES

STATUSES = ("registered", "partial", "preliminary", "final", "amended", "corrected", "appended")


@dataclass
class ReportInput:
    patient_id: int | None
    status: str | None
    code: str | None
    code_system: str | None = None
    title: str | None = None
    category: str | None = None
    order_id: int | None = None
    encounter_id: int | None = None
    result_ids: list[int] = field(default_factory=list)
    conclusion: str | None = None
    issued_at: dt.datetime | None = None
    source: str | None = None


def record_report(session: Session, principal: Principal, data: ReportInput) -> DiagnosticReport:
    """Every reference must exist, at the caller's facility, and be about the same patient."""
    principal.require_any(*RESULT_ROLES)
    errors: dict[str, list[str]] = {}

    def refuse(name: str, message: object) -> None:
        errors.setdefault(name, []).append(str(message))

    patient = session.get(Patient, data.patient_id) if data.patient_id else None
    if patient is None:
        refuse("patient_id", _l("No patient has this id."))
    if data.status not in STATUSES:
        refuse("status", _l("Use a report status such as final or preliminary."))
    if not (data.code or "").strip():
        refuse("code", _l("Say what the report is (its code)."))
    facility_id = principal.facility_id
    order = session.get(ServiceOrder, data.order_id) if data.order_id else None
    if data.order_id and (order is None or not _ours(principal, order.facility_id)):
        refuse("order_id", _l("No order has this id at your facility."))
        order = None
    encounter_id = data.encounter_id
    if order is not None:
        facility_id = order.facility_id
        order_patient = session.scalar(
            select(Encounter.patient_id).where(Encounter.id == order.encounter_id)
        )
        if patient is not None and order_patient != patient.id:
            refuse("order_id", _l("The order is for another patient."))
        if encounter_id is None:
            encounter_id = order.encounter_id
        elif encounter_id != order.encounter_id:
            refuse("encounter_id", _l("The order belongs to another encounter."))
    if encounter_id is not None:
        encounter = session.get(Encounter, encounter_id)
        if encounter is None or not _ours(principal, encounter.facility_id):
            refuse("encounter_id", _l("No encounter has this id at your facility."))
        else:
            facility_id = encounter.facility_id
            if patient is not None and encounter.patient_id != patient.id:
                refuse("encounter_id", _l("The encounter is of another patient."))
    for n, result_id in enumerate(data.result_ids):
        row = session.execute(
            select(Encounter.patient_id, ServiceOrder.facility_id)
            .select_from(ObservationResult)
            .join(ServiceOrder, ServiceOrder.id == ObservationResult.order_id)
            .join(Encounter, Encounter.id == ServiceOrder.encounter_id)
            .where(ObservationResult.id == result_id)
        ).one_or_none()
        if row is None or not _ours(principal, row.facility_id):
            refuse(f"result_ids.{n}", _l("No result has this id at your facility."))
        elif patient is not None and row.patient_id != patient.id:
            refuse(f"result_ids.{n}", _l("The result is of another patient."))
    if facility_id is None and not errors:
        refuse("encounter_id", _l("Name the order or the encounter the report belongs to."))
    if errors:
        raise ValidationFailed(str(_l("The report was not recorded.")), errors=errors)
    assert patient is not None and facility_id is not None
    report = DiagnosticReport(
        patient_id=patient.id,
        facility_id=facility_id,
        encounter_id=encounter_id,
        order_id=order.id if order else None,
        status=data.status,
        category=(data.category or "")[:20] or None,
        code_system=(data.code_system or "")[:200] or None,
        code=(data.code or "").strip()[:50],
        title=(data.title or "").strip()[:300] or None,
        conclusion=(data.conclusion or "").strip() or None,
        result_ids=list(data.result_ids),
        issued_at=data.issued_at or utcnow(),
        source=(data.source or principal.username or "")[:120] or None,
        received_at=utcnow(),
    )
    session.add(report)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="DiagnosticReport",
        entity_id=report.id,
        patient_id=patient.id,
    )
    return report


def _ours(principal: Principal, facility_id: int) -> bool:
    # A principal without a facility (a backend client acting for the system) may attach
    # to any facility's records; staff only to their own facility's.
    return principal.facility_id is None or principal.facility_id == facility_id
