"""The append-only audit trail.

Rows are only ever inserted: database triggers (see the migration) refuse UPDATE and
DELETE on both SQLite and PostgreSQL, and the ORM refuses to flush a changed row.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import String, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from his.db import Base, utcnow
from his.models.types import BigIntPK, str_enum


class AuditAction(enum.StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    SEARCH = "search"
    ACCESS_DENIED = "access_denied"


class AuditOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    # No foreign keys: the trail must outlive any row it mentions, and a failed login
    # may name a user that does not exist.
    user_id: Mapped[int | None] = mapped_column(index=True)
    username: Mapped[str | None] = mapped_column(String(64))
    roles: Mapped[str | None] = mapped_column(String(200))
    facility_id: Mapped[int | None] = mapped_column(index=True)
    action: Mapped[AuditAction] = mapped_column(str_enum(AuditAction, "audit_action"))
    entity_type: Mapped[str | None] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(index=True)
    source_ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[AuditOutcome] = mapped_column(str_enum(AuditOutcome, "audit_outcome"))
    detail: Mapped[str | None] = mapped_column(String(500))


class AuditTrailIsAppendOnly(RuntimeError):
    pass


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context: object, _instances: object) -> None:
    """Fails fast in Python, before the database trigger would, with a clearer message."""
    changed = [o for o in session.dirty if isinstance(o, AuditEvent) and session.is_modified(o)]
    deleted = [o for o in session.deleted if isinstance(o, AuditEvent)]
    if changed or deleted:
        raise AuditTrailIsAppendOnly("audit_event rows are never changed or deleted")
