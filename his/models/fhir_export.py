"""Bulk Data export jobs and the patient groups they can export."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base
from his.models.types import created_at


class FhirGroup(Base):
    """A list of patients an insurer exports together (FHIR Group, type person)."""

    __tablename__ = "fhir_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facility.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]


class FhirGroupMember(Base):
    __tablename__ = "fhir_group_member"

    group_id: Mapped[int] = mapped_column(ForeignKey("fhir_group.id"), primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), primary_key=True)
    added_at: Mapped[created_at]


class FhirExportJob(Base):
    """One ``$export`` request. The state lives here, so a restarted worker carries on."""

    __tablename__ = "fhir_export_job"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # uuid4, in the status URL
    owner: Mapped[str] = mapped_column(String(120), index=True)  # "client:NAME" | "user:ID"
    status: Mapped[str] = mapped_column(
        String(12), index=True
    )  # queued|running|completed|failed|cancelled
    level: Mapped[str] = mapped_column(String(10))  # system | patient | group
    group_id: Mapped[int | None]
    request_url: Mapped[str] = mapped_column(String(2000))
    params: Mapped[dict] = mapped_column(JSON)  # _type, _since, _typeFilter, _outputFormat
    scopes: Mapped[str] = mapped_column(String(1000))
    facility_ids: Mapped[list | None] = mapped_column(JSON)
    transaction_time: Mapped[dt.datetime | None]
    progress: Mapped[str | None] = mapped_column(String(100))
    manifest: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[created_at]
    started_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]


class FhirExportFile(Base):
    __tablename__ = "fhir_export_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fhir_export_job.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # output | deleted | error
    resource_type: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(String(500))  # under the instance folder
    count: Mapped[int] = mapped_column(default=0)
    size: Mapped[int] = mapped_column(default=0)
