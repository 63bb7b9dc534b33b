"""An encounter: one examination of a visit's patient by one doctor in one room.

What it records (history, findings, vitals, diagnoses, orders and their results, the
conclusion and disposition) is locked when the doctor finishes and signs it; a later
correction is an amendment row that keeps the original values and says who changed what
and why.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base, utcnow
from his.models.catalog import MedicalService
from his.models.facility import Room
from his.models.patient import Patient
from his.models.types import str_enum
from his.models.user import User
from his.models.visit import Visit


class EncounterStatus(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"  # signed and locked


class Disposition(enum.StrEnum):
    HOME = "home"
    FOLLOW_UP = "follow_up"
    ADMIT = "admit"
    REFER_OUT = "refer_out"
    DIED = "died"


class Encounter(Base):
    __tablename__ = "encounter"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("room.id"))
    doctor_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    status: Mapped[EncounterStatus] = mapped_column(
        str_enum(EncounterStatus, "encounter_status"), default=EncounterStatus.IN_PROGRESS
    )
    reason: Mapped[str | None] = mapped_column(Text)  # lý do khám
    history: Mapped[str | None] = mapped_column(Text)  # bệnh sử
    findings: Mapped[str | None] = mapped_column(Text)  # khám lâm sàng
    conclusion: Mapped[str | None] = mapped_column(Text)
    advice: Mapped[str | None] = mapped_column(Text)  # lời dặn
    disposition: Mapped[Disposition | None] = mapped_column(str_enum(Disposition, "disposition"))
    follow_up_date: Mapped[dt.date | None]
    refer_to_facility_code: Mapped[str | None] = mapped_column(String(5))
    refer_reason: Mapped[str | None] = mapped_column(String(500))
    referral_letter_number: Mapped[str | None] = mapped_column(String(50))
    died_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # SHA-256 over the signed content (canonical JSON): shows later that nothing changed
    # without an amendment.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy's API)

    visit: Mapped[Visit] = relationship()
    patient: Mapped[Patient] = relationship()
    room: Mapped[Room | None] = relationship()
    doctor: Mapped[User] = relationship(foreign_keys=[doctor_id])
    signed_by: Mapped[User | None] = relationship(foreign_keys=[signed_by_id])
    vitals: Mapped[list[VitalSigns]] = relationship(
        back_populates="encounter", order_by="VitalSigns.id"
    )
    # The diagnoses in force. A removed one keeps its row (removed_at) so an amendment
    # never erases what was coded; every reader goes through this filter.
    diagnoses: Mapped[list[Diagnosis]] = relationship(
        primaryjoin="and_(Encounter.id == Diagnosis.encounter_id, Diagnosis.removed_at.is_(None))",
        back_populates="encounter",
        order_by="Diagnosis.position",
    )
    # Every diagnosis ever coded, removed ones included, for the audit trail.
    diagnosis_history: Mapped[list[Diagnosis]] = relationship(
        viewonly=True, order_by="Diagnosis.id"
    )
    orders: Mapped[list[ServiceOrder]] = relationship(
        back_populates="encounter", order_by="ServiceOrder.id"
    )
    amendments: Mapped[list[EncounterAmendment]] = relationship(
        back_populates="encounter", order_by="EncounterAmendment.id"
    )


class VitalSigns(Base):
    __tablename__ = "vital_signs"

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounter.id"), index=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    pulse: Mapped[int | None]  # /min
    systolic: Mapped[int | None]  # mmHg
    diastolic: Mapped[int | None]  # mmHg
    temperature: Mapped[Decimal | None] = mapped_column(Numeric(4, 1))  # °C
    respiratory_rate: Mapped[int | None]  # /min
    spo2: Mapped[int | None]  # %
    weight: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))  # kg
    height: Mapped[Decimal | None] = mapped_column(Numeric(5, 1))  # cm

    encounter: Mapped[Encounter] = relationship(back_populates="vitals")

    @property
    def bmi(self) -> Decimal | None:
        if not self.weight or not self.height:
            return None
        metres = self.height / 100
        return (self.weight / (metres * metres)).quantize(Decimal("0.1"))


class Diagnosis(Base):
    """One ICD-10 code on an encounter; position 0 is the main diagnosis. A removed one
    keeps its row with ``removed_at``: ``Encounter.diagnoses`` leaves it out."""

    __tablename__ = "diagnosis"

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounter.id"), index=True)
    icd10_code: Mapped[str] = mapped_column(String(10))
    title: Mapped[str] = mapped_column(String(500))  # the title as coded, kept with the row
    icd10_version_id: Mapped[int] = mapped_column(ForeignKey("icd10_version.id"))
    is_main: Mapped[bool] = mapped_column(default=False)
    position: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[dt.datetime | None]
    removed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))

    encounter: Mapped[Encounter] = relationship(back_populates="diagnoses")


class OrderStatus(enum.StrEnum):
    ORDERED = "ordered"
    RESULTED = "resulted"
    CANCELLED = "cancelled"


class ServiceOrder(Base):
    """A service ordered in an encounter (chỉ định): a lab test, imaging, a procedure."""

    __tablename__ = "service_order"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounter.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("medical_service.id"))
    service_code: Mapped[str] = mapped_column(String(50))
    quantity: Mapped[int] = mapped_column(default=1)
    note: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, "order_status"), default=OrderStatus.ORDERED
    )
    # None: the performing system reported a result nobody ordered here (an HL7 ORU
    # without our placer number); ``ordered_by_system`` names that system.
    ordered_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    ordered_by_system: Mapped[str | None] = mapped_column(String(80))
    ordered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The performing system's number for the order (ORC-3/OBR-3 of an HL7 v2 result);
    # our own order id is the placer number.
    filler_number: Mapped[str | None] = mapped_column(String(50), index=True)

    encounter: Mapped[Encounter] = relationship(back_populates="orders")
    service: Mapped[MedicalService] = relationship()
    results: Mapped[list[ObservationResult]] = relationship(
        back_populates="order", order_by="ObservationResult.id"
    )


class ObservationResult(Base):
    """A result entered for an order; a correction is a new row that supersedes the old."""

    __tablename__ = "observation_result"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("service_order.id"), index=True)
    # What was measured, when one order has several results (a blood count panel: one
    # row per analyte, e.g. LOINC 6690-2 "WBC"); None when the order has one result.
    code: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(500))
    unit: Mapped[str | None] = mapped_column(String(30))
    reference_range: Mapped[str | None] = mapped_column(String(100))
    conclusion: Mapped[str | None] = mapped_column(Text)
    # None: sent by a backend client (SMART), named in the audit trail instead.
    resulted_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    resulted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("observation_result.id"))

    order: Mapped[ServiceOrder] = relationship(back_populates="results")


class EncounterAmendment(Base):
    """A change to a signed encounter: who, when, why, and each field's old and new value."""

    __tablename__ = "encounter_amendment"

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounter.id"), index=True)
    amended_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    amended_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(String(500))
    # {"field": {"old": …, "new": …}, …}
    changes: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))  # of the content after the change

    encounter: Mapped[Encounter] = relationship(back_populates="amendments")
    amended_by: Mapped[User] = relationship()
