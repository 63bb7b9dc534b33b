"""Claim files in bulk: making the missing ones (check-ins at the first charge, claims for
finished BHYT visits) and queuing them for the sender, and writing a period's files to a
folder (``his claims export``) for the gateway's manual upload or an auditor.

Made by a sweep rather than from the clinical services, which know nothing of billing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.claim_files import CHECK_IN, make_check_in_file, make_claim_file
from billing.claim_sender import queue
from billing.models import ClaimFile
from his.errors import DomainError
from his.localtime import local_day_bounds
from his.models import Encounter, Facility, Payment, Role, Visit, VisitStatus, VisitType
from his.services.access import Principal


@dataclass
class Made:
    made: list[ClaimFile] = field(default_factory=list)
    # visit code → why no file could be made (fix the visit, then run again)
    refused: dict[str, str] = field(default_factory=dict)


def finished_bhyt_visits(session: Session, facility_id: int, start: dt.date, end: dt.date):
    """The facility's finished BHYT visits that ended between two days (inclusive, local)."""
    low, _ = local_day_bounds(start)
    _, high = local_day_bounds(end)
    return select(Visit).where(
        Visit.facility_id == facility_id,
        Visit.payment == Payment.BHYT,
        Visit.status == VisitStatus.FINISHED,
        Visit.closed_at >= low,
        Visit.closed_at < high,
    )


def acting_for(facility: Facility) -> Principal:
    """The sweep acts for each facility in turn, as the system."""
    return Principal(
        user_id=None,
        username="claims-sweep",
        roles=frozenset({Role.ADMIN}),
        facility_id=facility.id,
    )


def _make_each(session: Session, principal: Principal, visits, make, folder: Path | None) -> Made:
    """``make`` for each visit, each in its own savepoint: a visit whose file fails its checks
    is reported with the reasons, not skipped silently, and stops no other."""
    result = Made()
    for visit in visits:
        try:
            with session.begin_nested():
                result.made.append(make(session, principal, visit.id, folder))
        except DomainError as exc:
            details = "; ".join(m for messages in exc.errors.values() for m in messages)
            result.refused[visit.visit_code] = f"{exc.detail} {details}".strip()
    return result


def make_missing(
    session: Session, principal: Principal, start: dt.date, end: dt.date, folder: Path | None
) -> Made:
    """A claim file for each finished BHYT visit of the period that has none yet. A visit
    whose claim fails its checks is reported, not skipped silently, and stops no other."""
    has_file = select(ClaimFile.visit_id).where(ClaimFile.tables != CHECK_IN)
    visits = session.scalars(
        finished_bhyt_visits(session, principal.facility_id, start, end)
        .where(Visit.id.not_in(has_file))
        .order_by(Visit.closed_at, Visit.id)
    ).all()
    return _make_each(session, principal, visits, make_claim_file, folder)


def export(
    session: Session,
    principal: Principal,
    start: dt.date,
    end: dt.date,
    out: Path,
    keys: Path | None = None,
) -> tuple[list[Path], dict[str, str]]:
    """Writes the latest claim file of every finished BHYT visit of the period to ``out`` as
    ``<MA_LK>_v<version>.xml`` (making the missing ones first); returns the files written and
    the visits refused with their reasons."""
    made = make_missing(session, principal, start, end, keys)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    visit_ids = select(Visit.id).where(
        Visit.id.in_(
            finished_bhyt_visits(session, principal.facility_id, start, end).with_only_columns(
                Visit.id
            )
        )
    )
    latest: dict[int, ClaimFile] = {}
    for claim in session.scalars(
        select(ClaimFile).where(ClaimFile.visit_id.in_(visit_ids)).order_by(ClaimFile.version)
    ):
        latest[claim.visit_id] = claim
    for claim in sorted(latest.values(), key=lambda c: c.ma_lk):
        path = out / f"{claim.ma_lk}_v{claim.version}.xml"
        path.write_bytes(claim.content)
        written.append(path)
    return written, made.refused


def _check_ins_missing(
    session: Session, principal: Principal, since: dt.date, folder: Path | None
) -> Made:
    """A check-in for each BHYT visit (not an emergency) opened since ``since`` that has been
    examined and has no check-in yet."""
    low, _ = local_day_bounds(since)
    visits = session.scalars(
        select(Visit)
        .where(
            Visit.facility_id == principal.facility_id,
            Visit.payment == Payment.BHYT,
            Visit.visit_type != VisitType.EMERGENCY,
            Visit.status != VisitStatus.CANCELLED,
            Visit.opened_at >= low,
            # Examined: the examination fee is the first charge.
            Visit.id.in_(select(Encounter.visit_id)),
            Visit.id.not_in(select(ClaimFile.visit_id).where(ClaimFile.tables == CHECK_IN)),
        )
        .order_by(Visit.opened_at, Visit.id)
    ).all()
    return _make_each(session, principal, visits, make_check_in_file, folder)


def prepare_due(session: Session, today: dt.date, folder: Path | None, days: int = 7) -> Made:
    """Check-ins and claim files of the last ``days`` days that are missing, made and queued
    for the gateway, at every facility."""
    since = today - dt.timedelta(days=days)
    result = Made()
    for facility in session.scalars(select(Facility).where(Facility.active.is_(True))):
        acting = acting_for(facility)
        for made in (
            _check_ins_missing(session, acting, since, folder),
            make_missing(session, acting, since, today, folder),
        ):
            for claim in made.made:
                queue(session, claim)
            result.made.extend(made.made)
            result.refused.update(made.refused)
    return result
