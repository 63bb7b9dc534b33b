"""A merge of two records of one person, kept so it can be undone exactly."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base, utcnow


class PatientMerge(Base):
    __tablename__ = "patient_merge"

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    merged_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    # JSON: the ids of the identifier, visit, coverage and allergy rows that moved, so an
    # undo moves back exactly those and nothing added to the survivor since.
    moved: Mapped[str] = mapped_column(Text)
    merged_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    merged_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    undone_at: Mapped[dt.datetime | None]
    undone_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
