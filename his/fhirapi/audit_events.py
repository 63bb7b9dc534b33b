"""AuditEvent, served live from the append-only audit table (never projected).

An audit row never changes, so each AuditEvent has exactly one version, and its id is the
row's id. Only auditors and administrators (staff) or backend clients granted AuditEvent
search may see the trail, each within the facilities they may see, as in the audit UI
(``his.services.audit.query_events``). These routes are static, so Flask prefers them to
the generic ``/fhir/<type>`` routes of the projection.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Response, request
from flask_babel import gettext as _
from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select
from sqlalchemy.orm import Session

from his.context import db_session
from his.fhirapi import audit_log, systems
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import Entry, base_url, bundle_text, full_url
from his.fhirapi.mappers.common import drop_empty
from his.fhirapi.outcome import FhirError
from his.fhirapi.resource_types import SERVED
from his.fhirapi.searchparams import DATE, REFERENCE, STRING, TOKEN, param, parse_date
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.wire import dumps, etag, http_date, instant, is_number, respond
from his.models import AuditAction, AuditEvent, AuditOutcome, Role
from his.services.access import AUDIT_ROLES
from his.services.facilities import facility_subtree

COUNT_DEFAULT = 20
COUNT_MAX = 1000
TYPE = "AuditEvent"
RESOURCE_TYPES_CS = "http://hl7.org/fhir/resource-types"
SOURCE_TYPE_CS = "http://terminology.hl7.org/CodeSystem/security-source-type"
NETWORK_IP = "2"  # AuditEventAgentNetworkType: IP address
CLINICAL_ROLES = frozenset({Role.DOCTOR.value, Role.NURSE.value, Role.PHARMACIST.value})
_CLIENT = re.compile(r"^fhir client (?P<client>[^:]+):")

# AuditEvent.action: C create, R read, U update, D delete, E execute (search is execute).
ACTION = {
    AuditAction.CREATE: "C",
    AuditAction.READ: "R",
    AuditAction.UPDATE: "U",
    AuditAction.SEARCH: "E",
    AuditAction.LOGIN: "E",
    AuditAction.LOGIN_FAILED: "E",
    AuditAction.LOGOUT: "E",
    AuditAction.ACCESS_DENIED: "E",
}
# AuditEvent.outcome: 0 success, 4 minor failure (refused), 8 serious failure.
OUTCOME = {AuditOutcome.SUCCESS: "0", AuditOutcome.DENIED: "4", AuditOutcome.FAILURE: "8"}
RESTFUL = {
    AuditAction.READ: ("read", "read"),
    AuditAction.SEARCH: ("search-type", "search type"),
    AuditAction.CREATE: ("create", "create"),
    AuditAction.UPDATE: ("update", "update"),
}
LOGIN_ACTIONS = (AuditAction.LOGIN, AuditAction.LOGIN_FAILED, AuditAction.LOGOUT)
# type codes → the rows they name (see _type_of)
TYPE_CODES = {
    "rest": "FHIR RESTful operation",
    "110110": "Patient Record",
    "110114": "User Authentication",
    "110113": "Security Alert",
}

# Declared so the CapabilityStatement lists them; the paths document the elements they
# read (nothing is indexed: the rows are queried directly).
param(TYPE, "date", DATE, "recorded", doc="ge/gt/le/lt/eq/ne prefixes")
param(TYPE, "patient", REFERENCE, "entity.what", targets=("Patient",))
param(
    TYPE,
    "agent",
    REFERENCE,
    "agent.who",
    targets=("Practitioner",),
    doc="Practitioner/{user id}; agent:identifier=system|username or client id",
)
param(TYPE, "agent-name", STRING, "agent.name", doc="The username (exact)")
param(TYPE, "altid", TOKEN, "agent.altId", doc="The username or the backend client's id")
param(TYPE, "entity", REFERENCE, "entity.what", doc="Type/id of the record")
param(TYPE, "entity-type", TOKEN, "entity.type", doc="The record's type: Patient, ...")
param(TYPE, "action", TOKEN, "action", doc="C, R, U, D, E")
param(TYPE, "outcome", TOKEN, "outcome", doc="0, 4, 8")
param(TYPE, "type", TOKEN, "type", doc="rest, 110110, 110113, 110114")
param(TYPE, "subtype", TOKEN, "subtype", doc="read, search-type, create, update, login...")
param(TYPE, "source", REFERENCE, "source.observer", targets=("Organization",))

# Result parameters that do not select rows: the answer is always whole resources,
# newest first, without a total.
CONTROL = frozenset({"_count", "_format", "_pretty", "_before", "_total", "_elements"})
NEWEST_FIRST = frozenset({"-date", "-_lastUpdated", "-_id"})


# --- access -----------------------------------------------------------------------------


def _require_reader(access: FhirAccess, interaction: str) -> None:
    """Staff: an auditor or administrator; a backend client: the AuditEvent scope."""
    access.require(TYPE, interaction)
    if access.client_id is None and not (set(AUDIT_ROLES) & set(access.principal.roles)):
        raise FhirError(
            403,
            _("Only auditors and administrators may read the audit trail."),
            code="forbidden",
        )


def _visible(session: Session, access: FhirAccess) -> ColumnElement[bool]:
    if access.client_id is None:
        facilities = facility_subtree(session, access.principal.facility_id)
    elif access.facility_ids is None:
        return AuditEvent.id.isnot(None)
    else:
        facilities = set(access.facility_ids)
    # Rows tied to no facility (a failed login with an unknown username) are everyone's.
    return or_(AuditEvent.facility_id.in_(sorted(facilities)), AuditEvent.facility_id.is_(None))


# --- the resource -----------------------------------------------------------------------


def _client_of(row: AuditEvent) -> str | None:
    match = _CLIENT.match(row.detail or "")
    return match["client"] if match else None


def _is_fhir(row: AuditEvent) -> bool:
    return (row.detail or "").startswith("fhir")


def _type_of(row: AuditEvent) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(type, subtype): FHIR interactions are "rest" with the RESTful interaction; logins
    DICOM User Authentication; refusals a Security Alert; the rest of the record's reads
    and changes (the UI, the REST API) DICOM Patient Record. Our own action code is always
    a subtype too, so nothing is lost in the mapping."""
    ours = {"system": systems.AUDIT_ACTION_CS, "code": str(row.action)}
    if row.action in LOGIN_ACTIONS:
        dicom = ("110123", "Logout") if row.action is AuditAction.LOGOUT else ("110122", "Login")
        return (
            {"system": systems.AUDIT_EVENT_TYPE, "code": "110114", "display": TYPE_CODES["110114"]},
            [{"system": systems.AUDIT_EVENT_TYPE, "code": dicom[0], "display": dicom[1]}, ours],
        )
    if row.action is AuditAction.ACCESS_DENIED:
        return (
            {"system": systems.AUDIT_EVENT_TYPE, "code": "110113", "display": TYPE_CODES["110113"]},
            [ours],
        )
    if _is_fhir(row) and row.action in RESTFUL:
        code, display = RESTFUL[row.action]
        return (
            {"system": systems.AUDIT_REST_TYPE, "code": "rest", "display": TYPE_CODES["rest"]},
            [{"system": systems.RESTFUL_INTERACTION, "code": code, "display": display}, ours],
        )
    return (
        {"system": systems.AUDIT_EVENT_TYPE, "code": "110110", "display": TYPE_CODES["110110"]},
        [ours],
    )


def _agent(row: AuditEvent) -> dict[str, Any]:
    client = _client_of(row)
    roles = [r for r in (row.roles or "").split(",") if r]
    who: dict[str, Any] = {}
    alt_id = None
    if client:
        who = {
            "identifier": {"system": systems.FHIR_CLIENT_ID, "value": client},
            "display": client,
        }
        alt_id = client
    elif row.user_id is not None or row.username:
        # Only clinical staff are projected as Practitioner: no reference that would dangle.
        if row.user_id is not None and CLINICAL_ROLES & set(roles):
            who["reference"] = f"Practitioner/{row.user_id}"
        if row.username:
            who["identifier"] = {"system": systems.USERNAME, "value": row.username}
            who["display"] = row.username
        alt_id = row.username
    return {
        "type": {
            "coding": [
                {
                    "system": systems.EXTRA_SECURITY_ROLE,
                    "code": "datacollector" if client else "humanuser",
                    "display": "data collector" if client else "human user",
                }
            ]
        },
        "role": [{"coding": [{"system": systems.STAFF_ROLE_CS, "code": r}]} for r in roles],
        "who": who,
        "altId": alt_id,
        "name": row.username,
        "requestor": True,
        "network": {"address": row.source_ip, "type": NETWORK_IP} if row.source_ip else None,
    }


def _entities(row: AuditEvent) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if row.entity_type:
        fhir_type = row.entity_type in SERVED
        what: dict[str, Any] | None = None
        if row.entity_id is not None:
            if fhir_type:
                what = {"reference": f"{row.entity_type}/{row.entity_id}"}
            else:  # a domain record with no FHIR resource of its own: named, not referenced
                what = {
                    "identifier": {
                        "system": f"{systems.OURS}/sid/{row.entity_type.lower()}",
                        "value": row.entity_id,
                    },
                    "display": f"{row.entity_type}/{row.entity_id}",
                }
        found.append(
            {
                "what": what,
                "type": {
                    "system": RESOURCE_TYPES_CS if fhir_type else systems.AUDIT_ACTION_CS,
                    "code": row.entity_type,
                },
                "role": {
                    "system": systems.AUDIT_OBJECT_ROLE,
                    "code": "4",
                    "display": "Domain Resource",
                }
                if row.entity_id is not None
                else {"system": systems.AUDIT_OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": row.detail,
            }
        )
    is_patient = row.entity_type == "Patient" and row.entity_id == str(row.patient_id)
    if row.patient_id is not None and not is_patient:
        found.append(
            {
                "what": {"reference": f"Patient/{row.patient_id}"},
                "type": {"system": systems.AUDIT_ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": systems.AUDIT_OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    return found


def audit_event_resource(row: AuditEvent) -> dict[str, Any]:
    kind, subtypes = _type_of(row)
    recorded = instant(row.occurred_at)
    resource = {
        "resourceType": TYPE,
        "id": str(row.id),
        "meta": {"versionId": "1", "lastUpdated": recorded},
        "type": kind,
        "subtype": subtypes,
        "action": ACTION.get(row.action, "E"),
        "recorded": recorded,
        "outcome": OUTCOME.get(row.outcome, "8"),
        "outcomeDesc": row.detail if row.outcome is not AuditOutcome.SUCCESS else None,
        "agent": [_agent(row)],
        "source": {
            "site": row.request_id,
            "observer": {"reference": f"Organization/{row.facility_id}"}
            if row.facility_id is not None
            else {"display": "HIS"},
            "type": [{"system": SOURCE_TYPE_CS, "code": "4", "display": "Application Server"}],
        },
        "entity": _entities(row),
    }
    return drop_empty(resource)


# --- read, vread, history ---------------------------------------------------------------


def _row(session: Session, access: FhirAccess, resource_id: str) -> AuditEvent:
    row = None
    if is_number(resource_id) and len(resource_id) < 19:
        row = session.scalars(
            select(AuditEvent).where(AuditEvent.id == int(resource_id), _visible(session, access))
        ).one_or_none()
    if row is None:
        raise FhirError(
            404,
            _("%(type)s/%(id)s does not exist.") % {"type": TYPE, "id": resource_id},
            code="not-found",
        )
    return row


def _headers(row: AuditEvent) -> dict[str, str]:
    return {"ETag": etag(1), "Last-Modified": http_date(row.occurred_at)}


def _audit_read(session: Session, access: FhirAccess, row: AuditEvent) -> None:
    # Looking at the trail is itself on the trail.
    from his.services import audit

    audit.record(
        session,
        access.principal,
        AuditAction.READ,
        entity_type=TYPE,
        entity_id=row.id,
        detail=(f"fhir client {access.client_id}: read" if access.client_id else "fhir: read"),
    )


@bp.get("/AuditEvent/<resource_id>")
def read_audit_event(resource_id: str) -> Response:
    access = current_access()
    _require_reader(access, "r")
    session = db_session()
    row = _row(session, access, resource_id)
    body = dumps(audit_event_resource(row))
    _audit_read(session, access, row)
    wanted = request.headers.get("If-None-Match")
    if wanted and wanted.strip() in (etag(1), '"1"'):
        return Response(status=304, headers=_headers(row))
    return respond(body, 200, _headers(row))


@bp.get("/AuditEvent/<resource_id>/_history/<version_id>")
def vread_audit_event(resource_id: str, version_id: str) -> Response:
    access = current_access()
    _require_reader(access, "r")
    session = db_session()
    row = _row(session, access, resource_id)
    if version_id != "1":
        raise FhirError(
            404,
            _("%(type)s/%(id)s has no version %(version)s.")
            % {"type": TYPE, "id": resource_id, "version": version_id},
        )
    body = dumps(audit_event_resource(row))
    _audit_read(session, access, row)
    return respond(body, 200, _headers(row))


@bp.get("/AuditEvent/<resource_id>/_history")
def audit_event_history(resource_id: str) -> Response:
    access = current_access()
    _require_reader(access, "r")
    session = db_session()
    row = _row(session, access, resource_id)
    _audit_read(session, access, row)
    path = f"{TYPE}/{resource_id}/_history"
    return respond(
        bundle_text("history", [_history_entry(row)], links=[("self", f"{base_url()}/{path}")])
    )


def _history_entry(row: AuditEvent) -> Entry:
    return Entry(
        full_url=full_url(TYPE, str(row.id)),
        resource=dumps(audit_event_resource(row)),
        request={"method": "POST", "url": TYPE},
        response={
            "status": "201 Created",
            "etag": etag(1),
            "lastModified": instant(row.occurred_at),
        },
    )


# --- search -----------------------------------------------------------------------------


@bp.get("/AuditEvent")
def search_audit_events() -> Response:
    return _search(list(request.args.items(multi=True)), "searchset")


@bp.post("/AuditEvent/_search")
def search_audit_events_post() -> Response:
    params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return _search(params, "searchset")


@bp.get("/AuditEvent/_history")
def audit_event_type_history() -> Response:
    params = [(k, v) for k, v in request.args.items(multi=True)]
    # History of an append-only table: every row once, as its creation; _since = date=ge.
    params = [("date", f"ge{v}") if k == "_since" else (k, v) for k, v in params]
    return _search(params, "history")


def _count(params: list[tuple[str, str]]) -> int:
    raw = next((v for k, v in params if k == "_count"), str(COUNT_DEFAULT))
    if not is_number(raw):
        raise FhirError(400, _("_count must be a whole number."), expression=["_count"])
    return max(1, min(int(raw), COUNT_MAX))


def _search(params: list[tuple[str, str]], bundle_type: str) -> Response:
    access = current_access()
    _require_reader(access, "s")
    session = db_session()
    count = _count(params)
    stmt: Select = select(AuditEvent).where(_visible(session, access))
    for name, value in params:
        if name in CONTROL:
            continue
        if name == "_sort":
            if value not in NEWEST_FIRST:  # keyset paging by id: only the recorded order
                raise _bad(name, value)
            continue
        stmt = stmt.where(_condition(name, value))
    before = next((v for k, v in params if k == "_before"), None)
    if before is not None:
        if not is_number(before) or len(before) > 18:
            raise FhirError(400, _("The paging cursor is not valid."), expression=["_before"])
        stmt = stmt.where(AuditEvent.id < int(before))
    rows = list(session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(count + 1)))
    more = len(rows) > count
    rows = rows[:count]
    audit_log.search(session, access, TYPE, None)
    if bundle_type == "history":
        entries = [_history_entry(r) for r in rows]
        path = f"{TYPE}/_history"
    else:
        entries = [
            Entry(
                full_url=full_url(TYPE, str(r.id)),
                resource=dumps(audit_event_resource(r)),
                search_mode="match",
            )
            for r in rows
        ]
        path = TYPE
    base = f"{base_url()}/{path}"
    keep = [(k, v) for k, v in params if k != "_before"]
    links = [("self", base + ("?" + urlencode(params) if params else ""))]
    if more:
        links.append(("next", base + "?" + urlencode([*keep, ("_before", str(rows[-1].id))])))
    return respond(bundle_text(bundle_type, entries, links=links))


# --- conditions -------------------------------------------------------------------------


def _bad(name: str, value: str) -> FhirError:
    return FhirError(
        400,
        _("The value %(value)s is not valid for the search parameter %(param)s.")
        % {"value": value, "param": name},
        expression=[name],
    )


def _condition(name: str, value: str) -> ColumnElement[bool]:
    """One parameter: comma-separated values are OR-ed; repeated parameters AND-ed."""
    base, _sep, modifier = name.partition(":")
    if base in ("date", "_lastUpdated"):  # an audit event is recorded once, never updated
        if modifier:
            raise _unknown(name)
        return _date(value)
    build = _TOKEN_PARAMS.get(base)
    if build is None or (modifier and (base, modifier) not in _MODIFIERS):
        raise _unknown(name)
    values = value.split(",")
    if not all(values):
        raise _bad(name, value)
    return or_(*(build(v, modifier) if base == "agent" else build(v) for v in values))


def _unknown(name: str) -> FhirError:
    return FhirError(
        400,
        _("The search parameter %(param)s is not supported for %(type)s.")
        % {"param": name, "type": TYPE},
        expression=[name],
        code="not-supported",
    )


_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(.+)$")


def _date(value: str) -> ColumnElement[bool]:
    match = _PREFIX.match(value)
    span = parse_date(match[2]) if match else None
    if span is None:
        raise _bad("date", value)
    prefix = match[1] or "eq"
    start, end = span
    column = AuditEvent.occurred_at
    return {
        "eq": and_(column >= start, column < end),
        "ap": and_(column >= start, column < end),
        "ne": not_(and_(column >= start, column < end)),
        "gt": column >= end,
        "sa": column >= end,
        "ge": column >= start,
        "lt": column < start,
        "eb": column < start,
        "le": column < end,
    }[prefix]


def _split_token(value: str) -> tuple[str | None, str]:
    if "|" in value:
        system, _bar, code = value.partition("|")
        return system or None, code
    return None, value


def _id_of(value: str, resource_type: str) -> int | None:
    """``Type/123``, a full URL ending so, or ``123`` → 123; None when it names another type."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] != resource_type:
        return None
    last = parts[-1]
    return int(last) if is_number(last) and len(last) < 19 else None


def _patient(value: str) -> ColumnElement[bool]:
    found = _id_of(value, "Patient")
    return AuditEvent.patient_id == found if found is not None else false()


def _client_detail(client: str) -> ColumnElement[bool]:
    escaped = client.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return AuditEvent.detail.like(f"fhir client {escaped}:%", escape="\\")


def _identifier(value: str) -> ColumnElement[bool]:
    system, code = _split_token(value)
    if system == systems.USERNAME:
        return AuditEvent.username == code
    if system == systems.FHIR_CLIENT_ID:
        return _client_detail(code)
    if system is None:
        return or_(AuditEvent.username == code, _client_detail(code))
    return false()


def _agent_param(value: str, modifier: str = "") -> ColumnElement[bool]:
    if modifier == "identifier":
        return _identifier(value)
    found = _id_of(value, "Practitioner")
    return AuditEvent.user_id == found if found is not None else false()


def _entity(value: str) -> ColumnElement[bool]:
    resource_type, _slash, resource_id = value.rpartition("/")
    resource_type = resource_type.rsplit("/", 1)[-1]
    if not resource_type or not resource_id:
        raise _bad("entity", value)
    return and_(AuditEvent.entity_type == resource_type, AuditEvent.entity_id == resource_id)


def _entity_type(value: str) -> ColumnElement[bool]:
    _system, code = _split_token(value)
    return AuditEvent.entity_type == code


def _action(value: str) -> ColumnElement[bool]:
    _system, code = _split_token(value)
    actions = [a for a, letter in ACTION.items() if letter == code]
    return AuditEvent.action.in_(actions) if actions else false()


def _outcome(value: str) -> ColumnElement[bool]:
    _system, code = _split_token(value)
    outcomes = [o for o, c in OUTCOME.items() if c == code]
    return AuditEvent.outcome.in_(outcomes) if outcomes else false()


_FHIR_DETAIL = AuditEvent.detail.like("fhir%")


def _type(value: str) -> ColumnElement[bool]:
    _system, code = _split_token(value)
    rest_actions = list(RESTFUL)
    if code == "rest":
        return and_(AuditEvent.action.in_(rest_actions), _FHIR_DETAIL)
    if code == "110110":
        return and_(
            AuditEvent.action.in_(rest_actions),
            or_(AuditEvent.detail.is_(None), not_(_FHIR_DETAIL)),
        )
    if code == "110114":
        return AuditEvent.action.in_(LOGIN_ACTIONS)
    if code == "110113":
        return AuditEvent.action == AuditAction.ACCESS_DENIED
    return false()


def _subtype(value: str) -> ColumnElement[bool]:
    _system, code = _split_token(value)
    for action, (restful, _display) in RESTFUL.items():
        if code == restful:
            return and_(AuditEvent.action == action, _FHIR_DETAIL)
    if code == "110122":
        return AuditEvent.action.in_((AuditAction.LOGIN, AuditAction.LOGIN_FAILED))
    if code == "110123":
        return AuditEvent.action == AuditAction.LOGOUT
    try:
        return AuditEvent.action == AuditAction(code)
    except ValueError:
        return false()


def _agent_name(value: str) -> ColumnElement[bool]:
    return AuditEvent.username == value


def _source(value: str) -> ColumnElement[bool]:
    found = _id_of(value, "Organization")
    return AuditEvent.facility_id == found if found is not None else false()


def _id(value: str) -> ColumnElement[bool]:
    return AuditEvent.id == int(value) if is_number(value) and len(value) < 19 else false()


_TOKEN_PARAMS = {
    "_id": _id,
    "patient": _patient,
    "agent": _agent_param,
    "agent-name": _agent_name,
    "altid": _identifier,
    "entity": _entity,
    "entity-type": _entity_type,
    "action": _action,
    "outcome": _outcome,
    "type": _type,
    "subtype": _subtype,
    "source": _source,
}
_MODIFIERS = {("agent", "identifier")}
