"""Machine clients of the FHIR API (SMART Backend Services) and what they were given."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base
from his.models.types import created_at


class FhirClient(Base):
    """A registered backend client. ``client_id`` is the name it was registered under."""

    __tablename__ = "fhir_client"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    jwks_url: Mapped[str | None] = mapped_column(String(500))
    jwks: Mapped[dict | None] = mapped_column(JSON)  # inline key set, when no URL
    scopes: Mapped[str] = mapped_column(String(1000))  # space-separated, what it may ask for
    # Facility ids it may see (None: every facility of the deployment).
    facility_ids: Mapped[list | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]


class FhirJti(Base):
    """Assertion ids already used, kept until the assertion expires: a replay is refused."""

    __tablename__ = "fhir_jti"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class FhirAccessToken(Base):
    """An access token handed to a backend client; only its SHA-256 is stored."""

    __tablename__ = "fhir_access_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("fhir_client.id"), index=True)
    scopes: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
