"""Catalogs the clinical work draws on: ICD-10 lists, the facility's drugs and services.

All of them are data with dates, never constants: an ICD-10 list has a validity period (an
episode is coded with the list valid on its end date), and a drug's or a service's price
row is valid from a date, so a later price change never re-prices an old visit.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.facility import Facility
from his.models.types import created_at, str_enum


class Icd10Version(Base):
    """One published ICD-10 list: WHO 2019, QĐ 4469/2020, Circular 06/2026, …"""

    __tablename__ = "icd10_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(300))  # the decision or file it came from
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]  # inclusive; none while in force
    loaded_at: Mapped[created_at]


class SexRestriction(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"


class Icd10Code(Base):
    __tablename__ = "icd10_code"
    __table_args__ = (
        UniqueConstraint("version_id", "code"),
        Index("ix_icd10_code_version_search", "version_id", "search_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("icd10_version.id"))
    code: Mapped[str] = mapped_column(String(10))  # with the dot, no dagger/asterisk: J18.9
    title_en: Mapped[str] = mapped_column(String(500))
    title_vi: Mapped[str | None] = mapped_column(String(500))
    # fold_vi of code, Vietnamese and English titles: what accent-free typing matches.
    search_key: Mapped[str] = mapped_column(String(1100))
    chapter: Mapped[str | None] = mapped_column(String(10))  # "X"
    chapter_title: Mapped[str | None] = mapped_column(String(300))
    block: Mapped[str | None] = mapped_column(String(10))  # "J09-J18"
    block_title: Mapped[str | None] = mapped_column(String(300))
    parent_code: Mapped[str | None] = mapped_column(String(10))
    # A three-character category with subdivisions is not a codable leaf.
    has_children: Mapped[bool] = mapped_column(default=False)
    not_main: Mapped[bool] = mapped_column(default=False)  # not as main diagnosis (col. 24)
    never_usable: Mapped[bool] = mapped_column(default=False)  # col. 26
    cause_of_death_only: Mapped[bool] = mapped_column(default=False)  # col. 27
    sex: Mapped[SexRestriction | None] = mapped_column(
        str_enum(SexRestriction, "icd10_sex")
    )  # cols. 28/29

    version: Mapped[Icd10Version] = relationship()

    @property
    def title(self) -> str:
        return self.title_vi or self.title_en


class RxClass(enum.StrEnum):
    """Prescription class of a drug (Circular 26/2025)."""

    NARCOTIC = "N"
    PSYCHOTROPIC = "H"  # psychotropic or precursor
    OTHER = "C"  # prescription-only, other
    OTC = "OTC"


class Drug(Base):
    """One drug of a facility's catalog, priced from ``valid_from``."""

    __tablename__ = "drug"
    __table_args__ = (
        UniqueConstraint("facility_id", "code", "valid_from"),
        CheckConstraint("bhyt_payment_rate BETWEEN 0 AND 100", name="payment_rate"),
        CheckConstraint("price >= 0", name="price"),
        Index("ix_drug_facility_search", "facility_id", "search_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    code: Mapped[str] = mapped_column(String(50))  # the facility's drug code (MA_THUOC)
    active_ingredient: Mapped[str] = mapped_column(String(300))  # INN, "A + B" when several
    # fold_vi of the INN with spelling variants reduced (Amoxicilin = Amoxicillin).
    ingredient_key: Mapped[str] = mapped_column(String(300), index=True)
    brand: Mapped[str | None] = mapped_column(String(200))
    strength: Mapped[str] = mapped_column(String(100))  # "500 mg"
    dosage_form: Mapped[str] = mapped_column(String(100))  # "viên nén"
    route: Mapped[str] = mapped_column(String(50))  # "uống"
    unit: Mapped[str] = mapped_column(String(30))  # what is counted and dispensed: "viên"
    registration_number: Mapped[str | None] = mapped_column(String(30))  # SĐK
    national_code: Mapped[str | None] = mapped_column(String(50))  # mã hoạt chất (DMDC)
    bhyt_covered: Mapped[bool] = mapped_column(default=True)
    bhyt_payment_rate: Mapped[int] = mapped_column(default=100)  # percent of the price
    price: Mapped[int]  # VND per unit
    rx_class: Mapped[RxClass] = mapped_column(str_enum(RxClass, "rx_class"))
    search_key: Mapped[str] = mapped_column(String(800))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    facility: Mapped[Facility] = relationship()


class ServiceKind(enum.StrEnum):
    EXAMINATION = "examination"
    LAB = "lab"
    IMAGING = "imaging"
    PROCEDURE = "procedure"
    OTHER = "other"


class MedicalService(Base):
    """A technical service (dịch vụ kỹ thuật) a facility performs, priced from ``valid_from``."""

    __tablename__ = "medical_service"
    __table_args__ = (
        UniqueConstraint("facility_id", "code", "valid_from"),
        CheckConstraint("bhyt_price >= 0 AND service_price >= 0", name="prices"),
        Index("ix_medical_service_facility_search", "facility_id", "search_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    code: Mapped[str] = mapped_column(String(50))  # national code (mã tương đương)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[ServiceKind] = mapped_column(str_enum(ServiceKind, "service_kind"))
    unit: Mapped[str | None] = mapped_column(String(30))  # "lần"
    bhyt_price: Mapped[int]  # VND the fund's price list sets
    service_price: Mapped[int]  # VND for patients paying themselves
    bhyt_covered: Mapped[bool] = mapped_column(default=True)
    # Lab results: the default unit and reference range offered when a result is entered.
    result_unit: Mapped[str | None] = mapped_column(String(30))
    reference_range: Mapped[str | None] = mapped_column(String(100))
    loinc: Mapped[str | None] = mapped_column(String(20))
    search_key: Mapped[str] = mapped_column(String(800))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    facility: Mapped[Facility] = relationship()
