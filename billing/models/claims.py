"""Claim files for the social-insurance gateway: one signed file per BHYT visit and version,
with what the gateway answered.

A corrected claim is a new version of the same visit (same MA_LK); earlier versions stay
with their answers, which the gateway itself shows for only 60 days.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base, utcnow
from his.models.types import created_at, str_enum


class ClaimStatus(enum.StrEnum):
    READY = "ready"  # built, signed and valid; not queued for the gateway
    QUEUED = "queued"  # waiting for the sender (again, after a failed attempt)
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the gateway refused it: staff fix and send a new version
    SUPERSEDED = "superseded"  # a newer version of the same visit replaced it


class ClaimFile(Base):
    __tablename__ = "claim_file"
    __table_args__ = (UniqueConstraint("visit_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    version: Mapped[int] = mapped_column(default=1)
    ma_lk: Mapped[str] = mapped_column(String(100))
    schema_version: Mapped[str] = mapped_column(String(40))
    tables: Mapped[str] = mapped_column(String(100))  # "XML1,XML2,XML3"
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the signed GIAMDINHHS envelope
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[ClaimStatus] = mapped_column(
        str_enum(ClaimStatus, "claim_status"), default=ClaimStatus.READY, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[created_at]
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    answer_code: Mapped[str | None] = mapped_column(String(20))  # maKetQua
    answer_message: Mapped[str | None] = mapped_column(String(2000))  # thongDiep
    transaction_id: Mapped[str | None] = mapped_column(String(100))  # maGiaoDich
    answered_at: Mapped[dt.datetime | None]
