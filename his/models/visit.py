"""A visit: one arrival of a patient at one facility (MA_LK in the claim files)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base, utcnow
from his.models.facility import Facility
from his.models.patient import Patient
from his.models.types import str_enum


class VisitStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Visit(Base):
    __tablename__ = "visit"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Clinical rows carry their facility: a user sees only their own facility's visits.
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    status: Mapped[VisitStatus] = mapped_column(
        str_enum(VisitStatus, "visit_status"), default=VisitStatus.OPEN
    )
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    closed_at: Mapped[dt.datetime | None]

    facility: Mapped[Facility] = relationship()
    patient: Mapped[Patient] = relationship()
