"""Diagnostic reports sent by laboratory and imaging systems (FHIR DiagnosticReport)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from his.db import Base, utcnow


class DiagnosticReport(Base):
    """A report on an order (or on a visit when the order is unknown), with the results
    it groups and the conclusion as written by the lab or imaging doctor."""

    __tablename__ = "diagnostic_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"), index=True)
    encounter_id: Mapped[int | None] = mapped_column(ForeignKey("encounter.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("service_order.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # FHIR report status: final, amended, ...
    category: Mapped[str | None] = mapped_column(String(20))  # LAB | RAD | ...
    code_system: Mapped[str | None] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(50))
    title: Mapped[str | None] = mapped_column(String(300))
    conclusion: Mapped[str | None] = mapped_column(Text)
    result_ids: Mapped[list] = mapped_column(JSON, default=list)  # observation_result ids
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Who sent it: the integration user, or the FHIR client's name.
    source: Mapped[str | None] = mapped_column(String(120))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
