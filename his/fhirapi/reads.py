"""read, vread, and instance / type history."""

from __future__ import annotations

import datetime as dt

from flask import Response, request
from flask_babel import gettext as _
from sqlalchemy import select

from his.context import db_session
from his.fhirapi import audit_log
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import Entry, bundle_text, full_url
from his.fhirapi.outcome import FhirError
from his.fhirapi.resource_types import require_type
from his.fhirapi.searchparams import parse_date
from his.fhirapi.security import current_access
from his.fhirapi.store import require_current, version
from his.fhirapi.wire import etag, http_date, is_number, parse_etag, respond
from his.models import FhirResource, FhirResourceVersion

HISTORY_COUNT_DEFAULT = 20
HISTORY_COUNT_MAX = 1000


def _resource_headers(version_id: int, last_updated: dt.datetime) -> dict[str, str]:
    return {"ETag": etag(version_id), "Last-Modified": http_date(last_updated)}


@bp.get("/<resource_type>/<resource_id>")
def read(resource_type: str, resource_id: str) -> Response:
    require_type(resource_type)
    access = current_access()
    access.require(resource_type, "r")
    session = db_session()
    row = require_current(session, access, resource_type, resource_id)
    audit_log.read(session, access, row)
    headers = _resource_headers(row.version_id, row.last_updated)
    wanted = request.headers.get("If-None-Match")
    if wanted and parse_etag(wanted) == row.version_id:
        return Response(status=304, headers=headers)
    return respond(row.content, 200, headers)


@bp.get("/<resource_type>/<resource_id>/_history/<version_id>")
def vread(resource_type: str, resource_id: str, version_id: str) -> Response:
    require_type(resource_type)
    access = current_access()
    access.require(resource_type, "r")
    session = db_session()
    row = require_current_or_deleted(session, access, resource_type, resource_id)
    found = version(session, row, int(version_id)) if is_number(version_id) else None
    if found is None:
        raise FhirError(
            404,
            _("%(type)s/%(id)s has no version %(version)s.")
            % {"type": resource_type, "id": resource_id, "version": version_id},
        )
    if found.deleted:
        raise FhirError(410, _("This version records the deletion of the resource."))
    audit_log.read(session, access, row)
    return respond(found.content, 200, _resource_headers(found.version_id, found.last_updated))


def require_current_or_deleted(session, access, resource_type, resource_id) -> FhirResource:
    try:
        return require_current(session, access, resource_type, resource_id)
    except FhirError as error:
        if error.status != 410:
            raise
        return session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == resource_type,
                FhirResource.resource_id == resource_id,
            )
        ).one()


@bp.get("/<resource_type>/<resource_id>/_history")
def instance_history(resource_type: str, resource_id: str) -> Response:
    require_type(resource_type)
    access = current_access()
    access.require(resource_type, "r")
    session = db_session()
    row = require_current_or_deleted(session, access, resource_type, resource_id)
    audit_log.read(session, access, row)
    stmt = select(FhirResourceVersion).where(FhirResourceVersion.rid == row.rid)
    return _history(stmt, f"{resource_type}/{resource_id}/_history")


@bp.get("/<resource_type>/_history")
def type_history(resource_type: str) -> Response:
    require_type(resource_type)
    access = current_access()
    access.require(resource_type, "s")
    stmt = select(FhirResourceVersion).where(FhirResourceVersion.resource_type == resource_type)
    if access.facility_ids is not None:
        stmt = stmt.join(FhirResource, FhirResource.rid == FhirResourceVersion.rid).where(
            FhirResource.facility_id.is_(None)
            | FhirResource.facility_id.in_(sorted(access.facility_ids))
        )
    audit_log.search(db_session(), access, resource_type, None)
    return _history(stmt, f"{resource_type}/_history")


def _history(stmt, path: str) -> Response:
    """Newest first; paged by the version row id, so a page never repeats or skips an
    entry while new versions are written (they are newer than every page's cursor)."""
    from his.fhirapi.bundle import base_url

    count = _count_param()
    since = request.args.get("_since")
    if since:
        span = parse_date(since)
        if span is None:
            raise FhirError(400, _("_since must be a FHIR instant."), expression=["_since"])
        stmt = stmt.where(FhirResourceVersion.last_updated >= span[0])
    before = request.args.get("_before_version")
    if before:
        if not is_number(before):
            raise FhirError(400, _("The paging cursor is not valid."))
        stmt = stmt.where(FhirResourceVersion.id < int(before))
    rows = list(db_session().scalars(stmt.order_by(FhirResourceVersion.id.desc()).limit(count + 1)))
    more = len(rows) > count
    rows = rows[:count]
    entries = [
        Entry(
            full_url=full_url(v.resource_type, v.resource_id),
            resource=None if v.deleted else v.content,
            request={
                "method": v.method,
                "url": v.resource_type
                if v.method == "POST"
                else f"{v.resource_type}/{v.resource_id}",
            },
            response={
                "status": {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[
                    v.method
                ],
                "etag": etag(v.version_id),
                "lastModified": instant_of(v.last_updated),
            },
        )
        for v in rows
    ]
    base = f"{base_url()}/{path}"
    keep = {k: v for k, v in request.args.items() if k != "_before_version"}
    links = [("self", _url(base, request.args.to_dict()))]
    if more:
        links.append(("next", _url(base, {**keep, "_before_version": str(rows[-1].id)})))
    return respond(bundle_text("history", entries, links=links))


def instant_of(moment: dt.datetime) -> str:
    from his.fhirapi.wire import instant

    return instant(moment)


def _count_param() -> int:
    raw = request.args.get("_count", str(HISTORY_COUNT_DEFAULT))
    if not is_number(raw):
        raise FhirError(400, _("_count must be a whole number."), expression=["_count"])
    return max(1, min(int(raw), HISTORY_COUNT_MAX))


def _url(base: str, params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return base + ("?" + urlencode(params) if params else "")
