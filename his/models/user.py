"""Staff and machine users, their roles and API tokens."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.facility import Facility
from his.models.types import created_at, str_enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    RECEPTIONIST = "receptionist"
    DOCTOR = "doctor"
    NURSE = "nurse"
    PHARMACIST = "pharmacist"
    CASHIER = "cashier"
    AUDITOR = "auditor"
    INTEGRATION = "integration"  # machine clients: LIS, PACS, provincial platform


class User(Base):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str | None] = mapped_column(String(5))
    # Clinicians: the practising certificate (CCHN) and the prescriber's connection code
    # (mã liên thông) the national e-prescription system issued.
    practising_certificate: Mapped[str | None] = mapped_column(String(50))
    eprescription_code: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[created_at]
    last_login_at: Mapped[dt.datetime | None]
    # Lockout (his.services.auth): consecutive failed logins since the last success or
    # lock, the end of the current lock, and how many locks in a row (the back-off).
    failed_logins: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None]
    lockouts: Mapped[int] = mapped_column(default=0, server_default="0")
    # Stamped into each web session at login; logout bumps it, so every cookie issued
    # before (on any workstation) stops working even though Flask's cookie is signed.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")

    facility: Mapped[Facility] = relationship()
    role_rows: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", order_by="UserRole.role"
    )

    @property
    def roles(self) -> list[Role]:
        return [row.role for row in self.role_rows]


class UserRole(Base):
    __tablename__ = "user_role"

    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), primary_key=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"), primary_key=True)


class ApiToken(Base):
    """A bearer token for the REST API. Only its SHA-256 is stored, so a leaked
    database copy holds no usable tokens."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()
