"""``Patient/[id]/$everything``: the patient's whole record, paged without gaps or repeats.

The set is the Patient compartment (every stored resource whose ``patient_id`` is the
patient, the Patient itself included) plus the Organization, Practitioner, Location and
Medication resources those resources reference. Pages are ordered by ``rid`` (the stable
key of a stored resource) and the ``next`` link carries the last rid served: following
every link returns each resource exactly once, also while new records are written (a new
resource gets a higher rid and shows up on a later page; nothing shifts).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Response, request
from flask_babel import gettext as _
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from his.context import db_session
from his.fhirapi import audit_log, searchparams
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import Entry, base_url, bundle_text, full_url
from his.fhirapi.outcome import FhirError
from his.fhirapi.resource_types import PROJECTED
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.store import require_current
from his.fhirapi.wire import is_number, respond
from his.models import FhirResource, FhirSearchValue

COUNT_DEFAULT = 50
COUNT_MAX = 1000
REFERENCED = ("Organization", "Practitioner", "Location", "Medication")
# Dates that say when something happened to the patient, not when the record changed:
# start/end select on them. The birth date is no care date.
_NOT_CARE_DATES = {"birthdate", "death-date", "_lastUpdated"}
_REFERENCE = re.compile(r'"reference":"(' + "|".join(REFERENCED) + r')/([^"/]+)"')


@bp.get("/Patient/<patient_id>/$everything")
def everything(patient_id: str) -> Response:
    access = current_access()
    access.require("Patient", "r")
    session = db_session()
    patient = require_current(session, access, "Patient", patient_id)
    count = _count()
    after = _cursor()
    types = _types(access)
    rids = _everything_rids(session, access, patient.patient_id, types)
    total = len(rids)
    page = [rid for rid in rids if rid > after][: count + 1]
    more = len(page) > count
    page = page[:count]
    rows = {
        r.rid: r for r in session.scalars(select(FhirResource).where(FhirResource.rid.in_(page)))
    }
    entries = [
        Entry(
            full_url=full_url(rows[rid].resource_type, rows[rid].resource_id),
            resource=rows[rid].content,
            search_mode="include" if rows[rid].patient_id != patient.patient_id else "match",
        )
        for rid in page
        if rid in rows
    ]
    audit_log.search(session, access, "Patient", patient.patient_id, "$everything")
    base = f"{base_url()}/Patient/{patient_id}/$everything"
    args = {k: v for k, v in request.args.items() if k != "_cursor"}
    links = [("self", base + ("?" + urlencode(request.args.to_dict()) if request.args else ""))]
    if more:
        links.append(("next", base + "?" + urlencode({**args, "_cursor": str(page[-1])})))
    return respond(bundle_text("searchset", entries, links=links, total=total))


def _count() -> int:
    raw = request.args.get("_count", str(COUNT_DEFAULT))
    if not is_number(raw) or int(raw) < 1:
        raise FhirError(400, _("_count must be a positive whole number."), expression=["_count"])
    return min(int(raw), COUNT_MAX)


def _cursor() -> int:
    raw = request.args.get("_cursor", "0")
    if not is_number(raw):
        raise FhirError(400, _("The paging cursor is not valid."), expression=["_cursor"])
    return int(raw)


def _types(access: FhirAccess) -> set[str]:
    raw = request.args.get("_type")
    if raw:
        wanted = {t.strip() for t in raw.split(",") if t.strip()}
        unknown = sorted(wanted - set(PROJECTED))
        if unknown:
            raise FhirError(
                400,
                _("_type names types this server does not hold: %(types)s.")
                % {"types": ", ".join(unknown)},
                expression=["_type"],
            )
    else:
        wanted = set(PROJECTED)
    # What the token may not read is left out, as a search would leave it out.
    return {t for t in wanted if access.allows(t, "r") or access.allows(t, "s")}


def _instant(name: str) -> tuple[Any, Any] | None:
    raw = request.args.get(name)
    if not raw:
        return None
    span = searchparams.parse_date(raw)
    if span is None:
        raise FhirError(
            400, _("%(name)s must be a FHIR date or dateTime.") % {"name": name}, expression=[name]
        )
    return span


def _care_date_params() -> list[tuple[str, str]]:
    return [
        (resource_type, p.name)
        for resource_type, params in searchparams.PARAMS.items()
        for p in params.values()
        if p.type == searchparams.DATE and p.name not in _NOT_CARE_DATES
    ]


def _everything_rids(
    session: Session, access: FhirAccess, patient_id: int | None, types: set[str]
) -> list[int]:
    stmt = select(FhirResource.rid, FhirResource.resource_type).where(
        FhirResource.patient_id == patient_id, FhirResource.deleted.is_(False)
    )
    if access.facility_ids is not None:
        stmt = stmt.where(
            FhirResource.facility_id.is_(None)
            | FhirResource.facility_id.in_(sorted(access.facility_ids))
        )
    since = _instant("_since")
    if since:
        stmt = stmt.where(FhirResource.last_updated >= since[0])
    stmt = _care_dates(stmt)
    compartment = [(rid, t) for rid, t in session.execute(stmt)]
    rids = {rid for rid, t in compartment if t in types}
    referenced = _referenced(session, access, [rid for rid, _t in compartment], types, since)
    return sorted(rids | referenced)


def _care_dates(stmt):
    """start/end: the care dates (the date search values of each type, e.g. an
    Encounter's period, an Observation's effective time) overlapping [start, end];
    resources without a care date (the Patient, an allergy) are always in, as the
    specification asks for records not tied to a date."""
    start, end = _instant("start"), _instant("end")
    if not start and not end:
        return stmt
    pairs = _care_date_params()
    if not pairs:
        return stmt
    dated = or_(
        *[
            and_(FhirSearchValue.resource_type == t, FhirSearchValue.param == name)
            for t, name in pairs
        ]
    )
    overlap = [dated, FhirSearchValue.rid == FhirResource.rid]
    if start:
        overlap.append(FhirSearchValue.end > start[0])
    if end:
        overlap.append(FhirSearchValue.start < end[1])
    has_date = exists().where(FhirSearchValue.rid == FhirResource.rid, dated)
    return stmt.where(or_(~has_date, exists().where(*overlap)))


def _referenced(
    session: Session, access: FhirAccess, rids: list[int], types: set[str], since
) -> set[int]:
    wanted_types = [t for t in REFERENCED if t in types]
    if not wanted_types or not rids:
        return set()
    keys: set[tuple[str, str]] = set()
    for chunk in _chunks(rids, 500):
        for content in session.scalars(
            select(FhirResource.content).where(FhirResource.rid.in_(chunk))
        ):
            keys.update(_references_in(content, wanted_types))
    found: set[int] = set()
    by_type: dict[str, list[str]] = {}
    for t, resource_id in keys:
        by_type.setdefault(t, []).append(resource_id)
    for t, ids in by_type.items():
        for chunk in _chunks(sorted(ids), 500):
            stmt = select(FhirResource.rid, FhirResource.facility_id).where(
                FhirResource.resource_type == t,
                FhirResource.resource_id.in_(chunk),
                FhirResource.deleted.is_(False),
            )
            if since:
                stmt = stmt.where(FhirResource.last_updated >= since[0])
            found.update(rid for rid, fac in session.execute(stmt) if access.sees_facility(fac))
    return found


def _references_in(content: str, types: list[str]) -> set[tuple[str, str]]:
    # Stored JSON is compact (``"reference":"Type/id"``, ``wire.dumps``): a pattern finds
    # the references without parsing every resource.
    return {(m.group(1), m.group(2)) for m in _REFERENCE.finditer(content) if m.group(1) in types}


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
