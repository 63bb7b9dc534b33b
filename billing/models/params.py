"""Billing parameters: every rate, threshold and the base salary, each valid between two dates.

A visit is priced with the values in force on its own date, so an old claim re-computes the
same after a rule changes; a change is a new row from a date, never an edit of the past.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base
from his.models.types import created_at


class BillingParam(Base):
    __tablename__ = "billing_param"
    __table_args__ = (
        UniqueConstraint("name", "valid_from"),
        CheckConstraint("valid_to IS NULL OR valid_to >= valid_from", name="period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), index=True)
    value: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    valid_from: Mapped[dt.date]
    valid_to: Mapped[dt.date | None]  # inclusive; none while in force
    source: Mapped[str] = mapped_column(String(300))  # the decision that set it
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[created_at]
