"""Administrative units: the 2025 provinces and communes, and the pre-2025 ones they replaced.

Codes are reused across versions (a new commune keeps one predecessor's code), so a code
alone is not a place: each row carries the date its list took effect.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base


class AdminUnit(Base):
    """A province or commune of the list in force from ``valid_from`` (QĐ 19/2025/QĐ-TTg)."""

    __tablename__ = "admin_unit"
    __table_args__ = (UniqueConstraint("level", "code", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    level: Mapped[str] = mapped_column(String(10))  # province | commune
    code: Mapped[str] = mapped_column(String(5))
    name: Mapped[str] = mapped_column(String(100))
    province_code: Mapped[str] = mapped_column(String(2), index=True)
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]


class LegacyCommuneMap(Base):
    """A pre-2025 commune (with its district and province) and a 2025 commune it became
    part of; a commune split between several new ones has several rows."""

    __tablename__ = "legacy_commune_map"

    old_commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    new_commune_code: Mapped[str] = mapped_column(String(5), primary_key=True)
    old_commune_name: Mapped[str] = mapped_column(String(100))
    old_district_code: Mapped[str] = mapped_column(String(3), index=True)
    old_province_code: Mapped[str] = mapped_column(String(2), index=True)
    new_province_code: Mapped[str] = mapped_column(String(2))
    partial: Mapped[bool] = mapped_column(default=False)
