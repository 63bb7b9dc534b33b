"""The province-wide patient index: one row per person, shared by every facility."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.coverage import Coverage
from his.models.types import created_at, str_enum, updated_at
from his.partial_date import PartialDate


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
    phone: Mapped[str | None] = mapped_column(String(15), index=True)  # normalised digits
    ethnicity_code: Mapped[str | None] = mapped_column(String(2))  # MA_DANTOC
    nationality: Mapped[str] = mapped_column(String(3), default="VN", server_default="VN")
    occupation_code: Mapped[str | None] = mapped_column(String(5))  # MA_NGHE_NGHIEP
    # Address: a free line plus the 2025 codes; the pre-2025 codes as given are kept too.
    address_line: Mapped[str | None] = mapped_column(String(300))
    province_code: Mapped[str | None] = mapped_column(String(2))
    commune_code: Mapped[str | None] = mapped_column(String(5), index=True)
    legacy_province_code: Mapped[str | None] = mapped_column(String(2))
    legacy_district_code: Mapped[str | None] = mapped_column(String(3))
    legacy_commune_code: Mapped[str | None] = mapped_column(String(5))
    # Children under 6 come with a guardian (người giám hộ).
    guardian_name: Mapped[str | None] = mapped_column(String(200))
    guardian_relation: Mapped[str | None] = mapped_column(String(50))
    guardian_phone: Mapped[str | None] = mapped_column(String(15))
    guardian_cccd: Mapped[str | None] = mapped_column(String(12))
    registered_facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    # A merged record is kept, pointing at the survivor; it is never deleted.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    merged_at: Mapped[dt.datetime | None]
    # Kept by open_visit (and merges) so search can rank by it without a sub-select.
    last_visit_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1, server_default="1")  # the ETag
    created_at: Mapped[created_at]
    updated_at: Mapped[updated_at]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 (SQLAlchemy's API)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="PatientIdentifier.id"
    )
    allergies: Mapped[list[PatientAllergy]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="PatientAllergy.id"
    )
    coverages: Mapped[list[Coverage]] = relationship(
        back_populates="patient", order_by="Coverage.id"
    )

    @property
    def coverage(self) -> Coverage | None:
        """The card presented last."""
        return self.coverages[-1] if self.coverages else None

    def identifier(self, kind: IdentifierType) -> str | None:
        return next((i.value for i in self.identifiers if i.type == kind), None)

    @property
    def birth(self) -> PartialDate:
        """The birth date as known: elderly patients often know only the year."""
        return PartialDate(self.birth_year, self.birth_month, self.birth_day)


class AllergySeverity(enum.StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"
    UNKNOWN = "unknown"


class PatientAllergy(Base):
    __tablename__ = "patient_allergy"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    substance: Mapped[str] = mapped_column(String(200))
    reaction: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[AllergySeverity] = mapped_column(
        str_enum(AllergySeverity, "allergy_severity"), default=AllergySeverity.UNKNOWN
    )

    patient: Mapped[Patient] = relationship(back_populates="allergies")


class PatientIdentifier(Base):
    __tablename__ = "patient_identifier"
    # One CCCD (or BHYT number, or external id) belongs to one patient.
    __table_args__ = (UniqueConstraint("type", "system", "value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    type: Mapped[IdentifierType] = mapped_column(str_enum(IdentifierType, "identifier_type"))
    # Empty for the national identifier types; the issuing system's URI for external ids.
    system: Mapped[str] = mapped_column(String(200), default="")
    value: Mapped[str] = mapped_column(String(64), index=True)

    patient: Mapped[Patient] = relationship(back_populates="identifiers")
