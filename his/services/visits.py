"""Visits, always seen through the acting user's facility."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from his.errors import NotFound
from his.models import AuditAction, Visit
from his.services import audit
from his.services.access import PATIENT_ROLES, Principal


def visible_visits(principal: Principal) -> Select:
    """The one place that decides which visits a user sees: their own facility's."""
    return select(Visit).where(Visit.facility_id == principal.facility_id)


def list_visits(session: Session, principal: Principal) -> Select:
    principal.require_any(*PATIENT_ROLES)
    audit.record(session, principal, AuditAction.SEARCH, entity_type="Visit")
    return visible_visits(principal).order_by(Visit.opened_at.desc(), Visit.id.desc())


def get_visit(session: Session, principal: Principal, visit_id: int) -> Visit:
    """Another facility's visit is reported as missing, not forbidden, so its existence
    does not leak."""
    principal.require_any(*PATIENT_ROLES)
    visit = session.scalar(visible_visits(principal).where(Visit.id == visit_id))
    if visit is None:
        raise NotFound(str(_l("No visit has this id at your facility.")))
    audit.record_read(session, principal, "Visit", visit.id, visit.patient_id)
    return visit
