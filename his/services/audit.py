"""Writing and reading the audit trail.

Every create, update and read of patient data, every login and failed login leaves one
row, written in the same transaction as the work it records, so the trail and the data
cannot disagree. Nothing here updates or deletes a row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from his.models import AuditAction, AuditEvent, AuditOutcome
from his.services.access import AUDIT_ROLES, Principal
from his.services.facilities import facility_subtree


def record(
    session: Session,
    principal: Principal,
    action: AuditAction,
    *,
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    entity_type: str | None = None,
    entity_id: object | None = None,
    patient_id: int | None = None,
    username: str | None = None,
    user_id: int | None = None,
    facility_id: int | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """Append one audit row. ``detail`` is a short technical note: never patient data."""
    event = AuditEvent(
        user_id=user_id if user_id is not None else principal.user_id,
        username=username if username is not None else principal.username,
        roles=",".join(sorted(r.value for r in principal.roles)) or None,
        facility_id=facility_id if facility_id is not None else principal.facility_id,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        patient_id=patient_id,
        source_ip=principal.source_ip,
        request_id=principal.request_id,
        outcome=outcome,
        detail=detail[:500] if detail else None,
    )
    session.add(event)
    return event


def record_read(
    session: Session, principal: Principal, entity_type: str, entity_id: object, patient_id: int
) -> AuditEvent:
    """One read of a patient's record: the most common audit row, so one way to write it."""
    return record(
        session,
        principal,
        AuditAction.READ,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient_id,
    )


def record_change(
    session: Session,
    principal: Principal,
    entity_type: str,
    entity_id: object,
    patient_id: int,
    detail: str | None = None,
) -> AuditEvent:
    """One change to a patient's record; ``detail`` says what changed, never the values."""
    return record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type=entity_type,
        entity_id=entity_id,
        patient_id=patient_id,
        detail=detail,
    )


@dataclass(frozen=True)
class AuditFilter:
    user_id: int | None = None
    username: str | None = None
    action: AuditAction | None = None
    outcome: AuditOutcome | None = None
    patient_id: int | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    facility_id: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def query_events(session: Session, principal: Principal, flt: AuditFilter) -> Select:
    """Events an auditor may see: their facility and the facilities under it, plus
    events tied to no facility (failed logins with an unknown username), newest first."""
    principal.require_any(*AUDIT_ROLES)
    visible = facility_subtree(session, principal.facility_id)
    stmt = select(AuditEvent).where(
        or_(AuditEvent.facility_id.in_(visible), AuditEvent.facility_id.is_(None))
    )
    conditions = {
        AuditEvent.user_id: flt.user_id,
        AuditEvent.username: flt.username,
        AuditEvent.action: flt.action,
        AuditEvent.outcome: flt.outcome,
        AuditEvent.patient_id: flt.patient_id,
        AuditEvent.entity_type: flt.entity_type,
        AuditEvent.entity_id: flt.entity_id,
        AuditEvent.facility_id: flt.facility_id,
    }
    for column, value in conditions.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.occurred_at < flt.until)
    return stmt.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
