"""Bulk Data ``$export`` (system, Patient, Group): kick-off, status, cancel, files.

The request only stores the job; ``his fhir export-worker`` writes the files
(``his.services.fhir_export``). Status and files belong to the caller that started the
export (``FhirAccess.owner``); anyone else gets a 404, as for a job that never existed.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, request, send_file
from flask_babel import gettext as _

from his.context import db_session
from his.fhirapi import audit_log
from his.fhirapi.blueprint import body_json, bp
from his.fhirapi.bundle import base_url
from his.fhirapi.outcome import FhirError, issue, operation_outcome
from his.fhirapi.searchparams import parse_date
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.wire import NDJSON, http_date, is_number, respond
from his.models import FhirExportFile, FhirGroup
from his.services import fhir_export
from his.services.fhir_export import EXPORT_TYPES, OUTPUT_FORMATS, ExportRequest

RETRY_AFTER_SECONDS = 5  # how soon a client should poll again
QUOTA_RETRY_SECONDS = 60  # how soon a refused client may try another kick-off


def _settings():
    return current_app.config["HIS_SETTINGS"]


@bp.route("/$export", methods=["GET", "POST"])
def export_system() -> Response:
    return _kick_off("system")


@bp.route("/Patient/$export", methods=["GET", "POST"])
def export_patients() -> Response:
    return _kick_off("patient")


@bp.route("/Group/<group_id>/$export", methods=["GET", "POST"])
def export_group(group_id: str) -> Response:
    return _kick_off("group", group_id)


def _params() -> dict[str, list[str]]:
    """The kick-off parameters, from the query string or a POSTed Parameters resource."""
    found: dict[str, list[str]] = {}
    for key in request.args:
        found[key] = request.args.getlist(key)
    if request.method == "POST" and request.get_data(cache=True):
        body = body_json()
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FhirError(400, _("POST $export with a Parameters resource as the body."))
        for parameter in body.get("parameter") or []:
            name = parameter.get("name") if isinstance(parameter, dict) else None
            values = [v for k, v in parameter.items() if k.startswith("value")] if name else []
            if not name or len(values) != 1 or not isinstance(values[0], str):
                raise FhirError(
                    400,
                    _("Each parameter of $export needs a name and one text value."),
                    expression=["Parameters.parameter"],
                )
            found.setdefault(name, []).append(values[0])
    return found


def _prefer() -> tuple[bool, bool]:
    """(respond-async asked, handling=lenient asked)."""
    tokens = {
        part.strip().lower().replace(" ", "")
        for header in request.headers.getlist("Prefer")
        for part in header.split(",")
    }
    return "respond-async" in tokens, "handling=lenient" in tokens


def _kick_off(level: str, group_id: str | None = None) -> Response:
    access = current_access()
    respond_async, lenient = _prefer()
    if not respond_async:
        raise FhirError(
            400, _("$export runs asynchronously: send the header Prefer: respond-async.")
        )
    session = db_session()
    params = _params()
    group = _group(session, access, group_id) if level == "group" else None
    output_format = (params.get("_outputFormat") or ["application/fhir+ndjson"])[-1]
    # An unencoded "+" in the query string arrives as a space.
    if output_format.split(";")[0].strip().lower().replace(" ", "+") not in OUTPUT_FORMATS:
        raise FhirError(
            400,
            _("Only NDJSON is written: _outputFormat must be application/fhir+ndjson."),
            code="not-supported",
            expression=["_outputFormat"],
        )
    since = None
    if params.get("_since"):
        span = parse_date(params["_since"][-1])
        if span is None:
            raise FhirError(400, _("_since must be a FHIR instant."), expression=["_since"])
        since = span[0]
    types = _types(access, params, lenient)
    filters = _type_filters(session, access, params, types, lenient)
    settings = _settings()
    if fhir_export.active_count(session, access.owner) >= settings.fhir_export_max_concurrent:
        raise FhirError(
            429,
            _("You already have %(count)d exports in progress: wait for one to finish.")
            % {"count": settings.fhir_export_max_concurrent},
            code="throttled",
            headers={"Retry-After": str(QUOTA_RETRY_SECONDS)},
        )
    job = fhir_export.create_job(
        session,
        owner=access.owner,
        scopes=" ".join(s.text for s in access.scopes),
        facility_ids=access.facility_ids,
        wanted=ExportRequest(
            level=level,
            request_url=request.url,
            types=types,
            since=since,
            type_filters=filters,
            output_format=output_format,
            group_id=group.id if group is not None else None,
        ),
    )
    for resource_type in types:
        audit_log.search(session, access, resource_type, None, what=f"$export {job.id}")
    outcome = operation_outcome(
        [issue("information", "informational", _("The export was accepted."))]
    )
    return respond(outcome, 202, {"Content-Location": _status_url(job.id)})


def _status_url(job_id: str) -> str:
    return f"{base_url()}/bulk/{job_id}"


def _group(session, access: FhirAccess, group_id: str | None) -> FhirGroup:
    group = session.get(FhirGroup, int(group_id)) if group_id and is_number(group_id) else None
    if group is None or not group.active or not access.sees_facility(group.facility_id):
        raise FhirError(404, _("Group/%(id)s does not exist.") % {"id": group_id})
    return group


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _types(access: FhirAccess, params: dict[str, list[str]], lenient: bool) -> list[str]:
    """The types to write: those asked for (every exportable one by default) that the
    caller's scopes allow to read and search."""
    asked = _split(params.get("_type") or [])
    if not asked:
        types = [t for t in EXPORT_TYPES if access.allows(t, "r") and access.allows(t, "s")]
        if not types:
            raise FhirError(
                403, _("The access token's scopes do not allow any type to be exported.")
            )
        return types
    types = []
    for resource_type in dict.fromkeys(asked):
        if resource_type not in EXPORT_TYPES:
            if lenient:
                continue
            raise FhirError(
                400,
                _("$export does not write the resource type %(type)s.") % {"type": resource_type},
                code="not-supported",
                expression=["_type"],
            )
        access.require(resource_type, "r")
        access.require(resource_type, "s")
        types.append(resource_type)
    if not types:
        raise FhirError(400, _("None of the types in _type can be exported."), expression=["_type"])
    return types


def _type_filters(
    session, access: FhirAccess, params: dict[str, list[str]], types: list[str], lenient: bool
) -> dict[str, list[str]]:
    """``_typeFilter=Type?query,...`` → {type: [query, ...]}, each query checked now by the
    search engine, so a bad one is a 400 here rather than an error file later."""
    found: dict[str, list[str]] = {}
    for entry in _split(params.get("_typeFilter") or []):
        resource_type, sep, query = entry.partition("?")
        if not sep or not query or resource_type not in EXPORT_TYPES:
            if lenient:
                continue
            raise FhirError(
                400,
                _("_typeFilter must be a list of Type?search queries: %(value)s")
                % {"value": entry},
                expression=["_typeFilter"],
            )
        if resource_type not in types:
            continue  # a filter on a type not exported changes nothing
        from urllib.parse import parse_qsl

        from his.fhirapi.search import matching

        matching(session, access, resource_type, parse_qsl(query, keep_blank_values=True))
        found.setdefault(resource_type, []).append(query)
    return found


# --- status, cancel, files ---------------------------------------------------------------------


def _owned(job_id: str):
    access = current_access()
    job = fhir_export.owned_job(db_session(), access.owner, job_id)
    if job is None:
        raise FhirError(404, _("There is no export %(id)s.") % {"id": job_id})
    return job


@bp.get("/bulk/<job_id>")
def export_status(job_id: str) -> Response:
    job = _owned(job_id)
    if job.status in ("queued", "running"):
        response = Response(status=202)
        response.headers["X-Progress"] = (job.progress or job.status)[:100]
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if job.status == "failed":
        raise FhirError(
            500,
            _("The export failed: %(error)s") % {"error": job.error or ""},
            code="exception",
        )
    manifest = _absolute(job.manifest or {})
    headers = {"Expires": http_date(job.expires_at)} if job.expires_at else {}
    response = respond(manifest, 200, headers)
    # The Bulk Data manifest is plain JSON, not a FHIR resource.
    response.content_type = "application/json; charset=utf-8"
    return response


def _absolute(manifest: dict[str, Any]) -> dict[str, Any]:
    base = base_url()
    found = dict(manifest)
    for key in ("output", "deleted", "error"):
        found[key] = [{**item, "url": f"{base}/{item['url']}"} for item in manifest.get(key, [])]
    return found


@bp.delete("/bulk/<job_id>")
def export_cancel(job_id: str) -> Response:
    job = _owned(job_id)
    fhir_export.cancel(db_session(), _settings(), job)
    outcome = operation_outcome(
        [issue("information", "informational", _("The export was cancelled."))]
    )
    return respond(outcome, 202)


@bp.get("/bulk/<job_id>/file/<name>")
def export_file(job_id: str, name: str) -> Response:
    job = _owned(job_id)
    found = None
    if job.status == "completed":
        found = (
            db_session()
            .query(FhirExportFile)
            .filter(
                FhirExportFile.job_id == job.id,
                FhirExportFile.path == f"exports/{job.id}/{name}",
            )
            .one_or_none()
        )
    path = _settings().instance_dir / found.path if found is not None else None
    if path is None or not path.is_file():
        raise FhirError(404, _("There is no file %(name)s in this export.") % {"name": name})
    # send_file streams from disk (and answers Range requests): a large file never sits in
    # memory.
    return send_file(path, mimetype=NDJSON, conditional=True, max_age=0)
