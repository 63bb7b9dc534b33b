"""A facility's billing settings: the bank account of its VietQR codes, its claim details."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base
from his.models.types import updated_at


class FacilityBankAccount(Base):
    __tablename__ = "facility_bank_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), unique=True)
    bank_bin: Mapped[str] = mapped_column(String(6))  # the bank's NAPAS BIN
    account_number: Mapped[str] = mapped_column(String(19))
    account_name: Mapped[str] = mapped_column(String(100))
    updated_at: Mapped[updated_at]


class FacilityClaimSettings(Base):
    """What a facility's claim files say about it beyond its code: the social-insurance
    number of its head or the delegate who answers for the claims (MA_TTDV)."""

    __tablename__ = "facility_claim_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), unique=True)
    head_insurance_number: Mapped[str] = mapped_column(String(10))  # MA_TTDV
    updated_at: Mapped[updated_at]
