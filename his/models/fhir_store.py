"""The FHIR projection: each domain record's FHIR JSON, every version of it, and the
values the FHIR search parameters match on.

The domain tables stay the truth. These rows are written in the same transaction as the
domain change (``his.fhirapi.projection``), so a read, a search page, ``_history`` and a
bulk export serve stored bytes without re-serialising.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base, utcnow
from his.models.types import BigIntPK


class FhirResource(Base):
    """The current version of one resource. ``rid`` never changes and only grows, so it
    is the stable key of keyset paging: a record written while a client pages through a
    search lands after every page already served."""

    __tablename__ = "fhir_resource"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id"),
        Index("ix_fhir_resource_type_updated", "resource_type", "last_updated", "rid"),
        Index("ix_fhir_resource_patient", "patient_id", "resource_type"),
    )

    rid: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int]
    last_updated: Mapped[dt.datetime]
    deleted: Mapped[bool] = mapped_column(default=False)
    # The resource as served, meta included: compact JSON text.
    content: Mapped[str] = mapped_column(Text)
    # The Patient compartment this resource belongs to (None: not patient data).
    patient_id: Mapped[int | None]
    # The facility whose record this is (None: shared, e.g. the patient index).
    facility_id: Mapped[int | None] = mapped_column(index=True)


class FhirResourceVersion(Base):
    """Every version ever served, for vread and ``_history``."""

    __tablename__ = "fhir_resource_version"
    __table_args__ = (
        UniqueConstraint("rid", "version_id"),
        Index("ix_fhir_resource_version_type_updated", "resource_type", "last_updated"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rid: Mapped[int] = mapped_column(ForeignKey("fhir_resource.rid"))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int]
    last_updated: Mapped[dt.datetime]
    deleted: Mapped[bool] = mapped_column(default=False)
    method: Mapped[str] = mapped_column(String(6))  # POST | PUT | DELETE, for history bundles
    content: Mapped[str] = mapped_column(Text)


class FhirSearchValue(Base):
    """One value of one search parameter of one resource; rebuilt with each version.

    One table for every parameter type keeps the search engine one piece of code: a token
    fills system/code, a string the folded text, a date the instant range it covers, a
    reference the ``Type/id`` it points at, a number or quantity the number.
    """

    __tablename__ = "fhir_search_value"
    __table_args__ = (
        Index("ix_fhir_search_token", "resource_type", "param", "code", "system"),
        # Pattern ops: PostgreSQL uses the index for the prefix LIKE of a string search
        # only with them (the database's collation is not "C").
        Index(
            "ix_fhir_search_string",
            "resource_type",
            "param",
            "text",
            postgresql_ops={"text": "varchar_pattern_ops"},
        ),
        Index("ix_fhir_search_date", "resource_type", "param", "start", "end"),
        Index("ix_fhir_search_reference", "resource_type", "param", "reference"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rid: Mapped[int] = mapped_column(ForeignKey("fhir_resource.rid"), index=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(200))
    code: Mapped[str | None] = mapped_column(String(200))
    # Strings folded by his.text.fold_vi (no accents, lower case); ``exact`` as given (NFC).
    text: Mapped[str | None] = mapped_column(String(500))
    exact: Mapped[str | None] = mapped_column(String(500))
    start: Mapped[dt.datetime | None]
    end: Mapped[dt.datetime | None]
    reference: Mapped[str | None] = mapped_column(String(130))
    number: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))


class FhirSearchSnapshot(Base):
    """The order of a sorted search's matches, fixed when its first page was served, so
    following ``next`` serves each match exactly once even when a record's sort value
    changes between two pages (the default order needs none: ``rid`` never changes)."""

    __tablename__ = "fhir_search_snapshot"

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    rids: Mapped[str] = mapped_column(Text)  # JSON list of rid, in the sorted order
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
