"""Column types shared by the models."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated

from sqlalchemy import BigInteger, Enum, Integer
from sqlalchemy.orm import mapped_column

from his.db import utcnow

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

created_at = Annotated[dt.datetime, mapped_column(default=utcnow)]
updated_at = Annotated[dt.datetime, mapped_column(default=utcnow, onupdate=utcnow)]


def str_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    """An enum stored as its value in a VARCHAR with a CHECK constraint.

    Not a native PostgreSQL ENUM: adding a value later is then a plain migration on both
    databases instead of ALTER TYPE, which cannot run inside a transaction on older servers.
    """
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls),  # type: ignore[attr-defined]
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )
