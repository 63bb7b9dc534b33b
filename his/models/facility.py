"""Facilities (cơ sở KCB), their departments and rooms."""

from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.types import created_at, str_enum


class CareLevel(enum.StrEnum):
    """Technical level under the 2023 KCB Law."""

    PRIMARY = "primary"
    BASIC = "basic"
    SPECIALISED = "specialised"


class LegacyTier(enum.StrEnum):
    """The tier (tuyến) a facility had before 1 January 2025; benefit rules still use it."""

    CENTRAL = "central"
    PROVINCIAL = "provincial"
    DISTRICT = "district"
    COMMUNE = "commune"


class Facility(Base):
    __tablename__ = "facility"
    __table_args__ = (CheckConstraint("length(code) = 5", name="code_length"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(5), unique=True)  # mã cơ sở KCB
    name: Mapped[str] = mapped_column(String(200))
    care_level: Mapped[CareLevel] = mapped_column(str_enum(CareLevel, "care_level"))
    legacy_tier: Mapped[LegacyTier | None] = mapped_column(str_enum(LegacyTier, "legacy_tier"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"), index=True)
    province_code: Mapped[str] = mapped_column(String(2))
    commune_code: Mapped[str | None] = mapped_column(String(5))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    parent: Mapped[Facility | None] = relationship(remote_side=[id])
    departments: Mapped[list[Department]] = relationship(
        back_populates="facility", order_by="Department.code"
    )


class Department(Base):
    __tablename__ = "department"
    __table_args__ = (UniqueConstraint("facility_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    code: Mapped[str] = mapped_column(String(20))  # mã khoa, e.g. K01 or K02.D35
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)

    facility: Mapped[Facility] = relationship(back_populates="departments")
    rooms: Mapped[list[Room]] = relationship(back_populates="department", order_by="Room.code")


class Room(Base):
    __tablename__ = "room"
    __table_args__ = (UniqueConstraint("department_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("department.id"), index=True)
    code: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)

    department: Mapped[Department] = relationship(back_populates="rooms")
