"""Outpatient prescriptions (đơn thuốc), their items and their submission to the national
e-prescription system.

A signed prescription is immutable: changing it issues a new prescription, with a new
code, that replaces the old one (``replaces_id``).
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base, utcnow
from his.models.catalog import Drug
from his.models.encounter import Encounter
from his.models.patient import Patient
from his.models.types import str_enum
from his.models.user import User


class PrescriptionType(enum.StrEnum):
    """The last character of the national code: narcotic, psychotropic/precursor, other."""

    OTHER = "c"
    NARCOTIC = "n"
    PSYCHOTROPIC = "h"


class PrescriptionStatus(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    REPLACED = "replaced"  # a newer prescription replaced it
    CANCELLED = "cancelled"


class TreatmentCourse(enum.StrEnum):
    """Decides the day limit of N and H prescriptions."""

    ACUTE = "acute"
    CHRONIC = "chronic"


class Prescription(Base):
    __tablename__ = "prescription"
    __table_args__ = (UniqueConstraint("code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    encounter_id: Mapped[int] = mapped_column(ForeignKey("encounter.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    rx_type: Mapped[PrescriptionType] = mapped_column(
        str_enum(PrescriptionType, "prescription_type")
    )
    course: Mapped[TreatmentCourse] = mapped_column(
        str_enum(TreatmentCourse, "treatment_course"), default=TreatmentCourse.ACUTE
    )
    status: Mapped[PrescriptionStatus] = mapped_column(
        str_enum(PrescriptionStatus, "prescription_status"), default=PrescriptionStatus.DRAFT
    )
    # xxxxxyyyyyyy-z, given when signed.
    code: Mapped[str | None] = mapped_column(String(14))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("prescription.id"))
    replacement_reason: Mapped[str | None] = mapped_column(String(500))
    # Children under 72 months: age in months, weight and the accompanying adult are required.
    age_months: Mapped[int | None]
    weight_kg: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    guardian_name: Mapped[str | None] = mapped_column(String(200))
    guardian_id_number: Mapped[str | None] = mapped_column(String(20))
    advice: Mapped[str | None] = mapped_column(Text)  # lời dặn
    follow_up_date: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[dt.datetime | None]
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # The national system accepts a prescription for dispensing this many days after issue.
    valid_until: Mapped[dt.date | None]
    content_hash: Mapped[str | None] = mapped_column(String(64))

    encounter: Mapped[Encounter] = relationship()
    patient: Mapped[Patient] = relationship()
    prescriber: Mapped[User] = relationship(foreign_keys=[prescriber_id])
    replaces: Mapped[Prescription | None] = relationship(remote_side=[id])
    items: Mapped[list[PrescriptionItem]] = relationship(
        back_populates="prescription", order_by="PrescriptionItem.position"
    )


class PrescriptionItem(Base):
    __tablename__ = "prescription_item"
    __table_args__ = (
        CheckConstraint("times_per_day > 0 AND days > 0 AND quantity > 0", name="positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescription.id"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    drug_id: Mapped[int] = mapped_column(ForeignKey("drug.id"))
    drug_code: Mapped[str] = mapped_column(String(50))
    # Written by active ingredient (INN) as Circular 26 requires, brand in brackets.
    drug_name: Mapped[str] = mapped_column(String(500))
    dose: Mapped[Decimal] = mapped_column(Numeric(10, 3))  # units per take
    times_per_day: Mapped[int]
    days: Mapped[int]
    route: Mapped[str] = mapped_column(String(50))
    instructions: Mapped[str | None] = mapped_column(String(500))
    computed_quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    quantity_reason: Mapped[str | None] = mapped_column(String(300))  # when it differs

    prescription: Mapped[Prescription] = relationship(back_populates="items")
    drug: Mapped[Drug] = relationship()


class SubmissionStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the national system refused it; needs a person
    # Replaced before the national system accepted it: never to be sent.
    WITHDRAWN = "withdrawn"


class EPrescriptionSubmission(Base):
    """A signed prescription queued for the national e-prescription system, retried until
    accepted; the payload is built at signing and never changes."""

    __tablename__ = "eprescription_submission"

    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescription.id"), unique=True)
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[SubmissionStatus] = mapped_column(
        str_enum(SubmissionStatus, "submission_status"), default=SubmissionStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    response: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[dt.datetime | None]

    prescription: Mapped[Prescription] = relationship()
