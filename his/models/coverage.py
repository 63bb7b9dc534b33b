"""Health-insurance (BHYT) cards: the dated group table and each patient's card history."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.types import created_at, str_enum


class BhytGroup(Base):
    """Beneficiary group code → benefit level, as in force between two dates.

    Data, not constants: BHXH changes the list (Law 51/2024 added groups) and a claim is
    priced with the list of its own date.
    """

    __tablename__ = "bhyt_group"
    __table_args__ = (UniqueConstraint("code", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(2))
    benefit_level: Mapped[int]
    description: Mapped[str] = mapped_column(String(300))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]
    source: Mapped[str] = mapped_column(String(200))


class CardStatus(enum.StrEnum):
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    FAILED = "failed"


class Coverage(Base):
    """One BHYT card as presented and checked; earlier cards stay as history."""

    __tablename__ = "coverage"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    card_number: Mapped[str] = mapped_column(String(15))  # as presented: 10 digits or 15 chars
    insurance_number: Mapped[str] = mapped_column(String(10), index=True)  # mã số BHXH
    group_code: Mapped[str | None] = mapped_column(String(2))
    benefit_level: Mapped[int | None]
    issuing_province: Mapped[str | None] = mapped_column(String(2))
    valid_from: Mapped[dt.date | None]
    valid_to: Mapped[dt.date | None]
    registered_facility_code: Mapped[str | None] = mapped_column(String(5))  # MA_DKBD
    area_code: Mapped[str | None] = mapped_column(String(2))  # K1 / K2 / K3
    five_year_date: Mapped[dt.date | None]
    status: Mapped[CardStatus] = mapped_column(
        str_enum(CardStatus, "card_status"), default=CardStatus.UNVERIFIED
    )
    check_method: Mapped[str | None] = mapped_column(String(10))  # offline | gateway
    check_code: Mapped[str | None] = mapped_column(String(20))
    check_message: Mapped[str | None] = mapped_column(String(300))
    checked_at: Mapped[dt.datetime | None]
    raw_response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]

    patient = relationship("Patient", back_populates="coverages")
