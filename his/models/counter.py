"""Named counters for numbers handed out in order: MRNs, visit codes, queue numbers.

One row per counter, incremented with an atomic upsert inside the transaction that uses
the number, so a rolled-back registration gives its number back: no duplicates, no gaps.
"""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base


class Counter(Base):
    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[int]
