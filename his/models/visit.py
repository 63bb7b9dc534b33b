"""A visit: one arrival of a patient at one facility (MA_LK in the claim files)."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from his.db import Base, utcnow
from his.models.facility import Facility, Room
from his.models.patient import Patient
from his.models.types import str_enum


class VisitStatus(enum.StrEnum):
    WAITING = "waiting"
    IN_EXAMINATION = "in_examination"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class VisitType(enum.StrEnum):
    OUTPATIENT = "outpatient"
    EMERGENCY = "emergency"
    INPATIENT = "inpatient"
    DAY = "day"
    OBSERVATION = "observation"


class Payment(enum.StrEnum):
    BHYT = "bhyt"
    FEE = "fee"  # dịch vụ: the patient pays


class PriorityReason(enum.StrEnum):
    """Who is seen first by law (KCB Law 2023 Art. 3(2))."""

    EMERGENCY = "emergency"
    CHILD_UNDER_6 = "child_under_6"
    PREGNANT = "pregnant"
    DISABILITY = "disability"
    AGE_75 = "age_75"
    REVOLUTIONARY_CONTRIBUTOR = "revolutionary_contributor"


class Visit(Base):
    __tablename__ = "visit"
    __table_args__ = (UniqueConstraint("room_id", "queue_date", "queue_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Immutable once given; used as MA_LK in the claim files.
    visit_code: Mapped[str] = mapped_column(String(30), unique=True)
    # Clinical rows carry their facility: a user sees only their own facility's visits.
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("department.id"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("room.id"), index=True)
    visit_type: Mapped[VisitType] = mapped_column(
        str_enum(VisitType, "visit_type"), default=VisitType.OUTPATIENT, server_default="outpatient"
    )
    payment: Mapped[Payment] = mapped_column(
        str_enum(Payment, "payment"), default=Payment.FEE, server_default="fee"
    )
    # A referral letter (giấy chuyển tuyến); none means the patient came on their own.
    referral_from_facility_code: Mapped[str | None] = mapped_column(String(5))
    referral_letter_number: Mapped[str | None] = mapped_column(String(50))
    referral_date: Mapped[dt.date | None]
    referral_diagnosis: Mapped[str | None] = mapped_column(String(300))
    priority_reason: Mapped[PriorityReason | None] = mapped_column(
        str_enum(PriorityReason, "priority_reason")
    )
    queue_date: Mapped[dt.date | None]
    queue_number: Mapped[int | None]
    status: Mapped[VisitStatus] = mapped_column(
        str_enum(VisitStatus, "visit_status"), default=VisitStatus.WAITING
    )
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    called_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))

    facility: Mapped[Facility] = relationship()
    patient: Mapped[Patient] = relationship()
    room: Mapped[Room | None] = relationship()

    @validates("visit_code")
    def _keep_code(self, _key: str, code: str) -> str:
        # The code is the claim's MA_LK: once given it names this visit for good.
        if self.visit_code is not None and code != self.visit_code:
            raise ValueError("a visit code never changes")
        return code

    @property
    def is_referred(self) -> bool:
        return self.referral_from_facility_code is not None
