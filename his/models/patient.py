"""The province-wide patient index: one row per person, shared by every facility."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.types import created_at, str_enum, updated_at


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNDETERMINED = "undetermined"


class IdentifierType(enum.StrEnum):
    CCCD = "cccd"  # 12-digit personal identification number (số định danh cá nhân)
    CMND = "cmnd"  # old 9-digit identity card
    PASSPORT = "passport"
    BHYT = "bhyt"  # health-insurance card number, 10 or 15 characters
    MRN = "mrn"  # medical record number this deployment assigns
    EXTERNAL = "external"  # another system's id; ``system`` names that system


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        CheckConstraint("birth_month IS NULL OR birth_month BETWEEN 1 AND 12", name="birth_month"),
        CheckConstraint(
            "birth_day IS NULL OR (birth_month IS NOT NULL AND birth_day BETWEEN 1 AND 31)",
            name="birth_day",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(20), unique=True)
    # Exactly as printed on the ID card (NFC); the gateway rejects any other spelling.
    full_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    given_name: Mapped[str | None] = mapped_column(String(100))
    search_name: Mapped[str] = mapped_column(String(200), index=True)
    sex: Mapped[Sex] = mapped_column(str_enum(Sex, "sex"))
    # Elderly patients often know only the year, or year and month, of their birth.
    birth_year: Mapped[int]
    birth_month: Mapped[int | None]
    birth_day: Mapped[int | None]
    phone: Mapped[str | None] = mapped_column(String(15))
    registered_facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="PatientIdentifier.id"
    )

    @property
    def birth_date_text(self) -> str:
        """dd/mm/yyyy, or mm/yyyy or yyyy when only part is known."""
        parts = [f"{self.birth_year:04d}"]
        if self.birth_month:
            parts.insert(0, f"{self.birth_month:02d}")
        if self.birth_day:
            parts.insert(0, f"{self.birth_day:02d}")
        return "/".join(parts)

    @property
    def birth_date(self) -> dt.date | None:
        if self.birth_month and self.birth_day:
            return dt.date(self.birth_year, self.birth_month, self.birth_day)
        return None


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    # One CCCD (or BHYT number, or external id) belongs to one patient.
    __table_args__ = (UniqueConstraint("type", "system", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    type: Mapped[IdentifierType] = mapped_column(str_enum(IdentifierType, "identifier_type"))
    # Empty for the national identifier types; the issuing system's URI for external ids.
    system: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[str] = mapped_column(String(64))

    patient: Mapped[Patient] = relationship(back_populates="identifiers")
