"""create, update, patch and conditional create, through the same services as the UI and
the REST API; and 405 for every other write.

The write functions (``create``, ``update``, ``patch``) are shared by the routes and the
batch/transaction processor (``transactions``): they take the parsed request and return
the stored row, raising ``FhirError`` for anything refused. The projection is brought up
to date (``projection.sync``) before they return, so the answer carries the version the
client will read back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Response, current_app, request
from flask_babel import gettext as _
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from his.context import db_session
from his.errors import DomainError
from his.fhirapi import audit_log, from_fhir, projection
from his.fhirapi.blueprint import body_json, bp
from his.fhirapi.bundle import full_url
from his.fhirapi.json_patch import PatchError, apply_patch
from his.fhirapi.outcome import FhirError, issue, operation_outcome
from his.fhirapi.resource_types import CREATABLE, UPDATABLE, require_type
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.store import current
from his.fhirapi.validation import validate
from his.fhirapi.wire import etag, http_date, is_number, parse_etag, respond
from his.models import AuditAction, FhirResource, FhirSearchValue, ServiceOrder

Key = tuple[str, str]


@dataclass
class Written:
    row: FhirResource | None  # None only when no mapper projects the type yet
    key: Key
    created: bool  # False: an update, or a conditional create that found its match

    @property
    def status(self) -> int:
        return 201 if self.created else 200

    def location(self) -> str:
        base = full_url(*self.key)
        return f"{base}/_history/{self.row.version_id}" if self.row else base


# --- create ------------------------------------------------------------------------------------


def create(
    session: Session,
    access: FhirAccess,
    resource_type: str,
    resource: Any,
    *,
    if_none_exist: str | None = None,
    defer: bool = False,
) -> Written:
    """``defer``: leave the projection and the audit row to ``finish_deferred``, called
    once for many creates (a transaction's thousand entries sync in one pass)."""
    _require_creatable(resource_type)
    access.require(resource_type, "c")
    validate(resource, resource_type)
    if if_none_exist:
        found = _conditional_match(session, access, resource_type, if_none_exist)
        if found is not None:
            return Written(found, (resource_type, found.resource_id), created=False)
    key = _CREATORS[resource_type](session, access, resource)
    if defer:
        projection.mark(session, [key])
        return Written(None, key, created=True)
    row = _synced(session, key)
    if row is not None:
        audit_log.change(session, access, AuditAction.CREATE, row, "create")
    return Written(row, key, created=True)


def finish_deferred(session: Session, access: FhirAccess, created: list[Written]) -> None:
    """Project the resources created with ``defer`` and audit each, in one pass."""
    projection.sync(session)
    by_type: dict[str, list[Written]] = {}
    for written in created:
        by_type.setdefault(written.key[0], []).append(written)
    for resource_type, items in by_type.items():
        ids = [w.key[1] for w in items]
        rows: dict[str, FhirResource] = {}
        for start in range(0, len(ids), 500):
            rows.update(
                (r.resource_id, r)
                for r in session.scalars(
                    select(FhirResource).where(
                        FhirResource.resource_type == resource_type,
                        FhirResource.resource_id.in_(ids[start : start + 500]),
                    )
                )
            )
        for written in items:
            written.row = rows.get(written.key[1])
            if written.row is not None:
                audit_log.change(session, access, AuditAction.CREATE, written.row, "create")


def _require_creatable(resource_type: str) -> None:
    require_type(resource_type)
    if resource_type not in CREATABLE:
        raise not_allowed(resource_type, None)


def _synced(session: Session, key: Key) -> FhirResource | None:
    projection.mark(session, [key])
    projection.sync(session)
    return current(session, *key)


def _service(call: Callable[[], Any], paths: dict[str, str], resource_type: str) -> Any:
    """A service call whose refusals name the FHIR elements; a uniqueness race lost at
    the database is a 409 like the service's own duplicate check."""
    try:
        return call()
    except DomainError as error:
        raise from_fhir.fhir_error(error, paths, resource_type) from error
    except IntegrityError as error:
        text_of = str(error.orig).lower()
        if "unique" in text_of or "duplicate" in text_of:
            raise FhirError(
                409,
                _("Another request stored the same record at the same time; read it and retry."),
                code="duplicate",
            ) from error
        # A row the database refuses for another reason (a required link missing): the
        # caller cannot do this write, not a server fault.
        raise FhirError(
            422,
            _("The record could not be stored as sent: %(reason)s")
            % {"reason": str(error.orig).splitlines()[0][:200]},
        ) from error


def _checker():
    return current_app.extensions.get("his_card_checker")


def _create_patient(session: Session, access: FhirAccess, resource: dict[str, Any]) -> Key:
    from his.services import patients

    found = from_fhir.patient_input(resource)
    from_fhir.check_patient_fields(found, create=True)
    patient = _service(
        lambda: patients.register_patient(
            session, access.principal, found.data, checker=_checker()
        ),
        found.paths,
        "Patient",
    )
    return ("Patient", str(patient.id))


def _subject_patient(resource: dict[str, Any], element: str, resource_type: str) -> int:
    ref = from_fhir.reference(resource.get(element))
    if ref is None or ref[0] != "Patient" or not is_number(ref[1]):
        raise FhirError(
            422,
            _("%(element)s must reference the Patient.") % {"element": element},
            expression=[f"{resource_type}.{element}"],
        )
    return int(ref[1])


def _create_observation(session: Session, access: FhirAccess, resource: dict[str, Any]) -> Key:
    """A laboratory or imaging result: recorded on its order (basedOn ServiceRequest), or
    on the encounter's order of the service the Observation's code names."""
    from his.services import encounters

    patient_id = _subject_patient(resource, "subject", "Observation")
    order_id = None
    for n, based in enumerate(resource.get("basedOn") or []):
        ref = from_fhir.reference(based)
        if ref and ref[0] == "ServiceRequest":
            order_id = from_fhir.numeric_id("", ref[1], f"Observation.basedOn[{n}]")
            break
    encounter_ref = from_fhir.reference(resource.get("encounter"))
    if order_id is None and encounter_ref and encounter_ref[0] == "Encounter":
        examinations = _examinations_of(session, encounter_ref[1], "Observation.encounter")
        order_id = _order_by_code(session, examinations, resource)
    if order_id is None:
        raise FhirError(
            422,
            _(
                "Attach the result to its order (basedOn ServiceRequest) or to an encounter "
                "with an order of the service its code names."
            ),
            expression=["Observation.basedOn"],
        )
    order = session.get(ServiceOrder, order_id)
    if order is not None and order.encounter.patient_id != patient_id:
        raise FhirError(
            422,
            _("The order is for another patient than the Observation's subject."),
            expression=["Observation.subject"],
        )
    value, unit = from_fhir.observation_value(resource)
    notes = [n.get("text") for n in resource.get("note") or [] if isinstance(n, dict)]
    interpretation = [
        from_fhir.concept_text(i) for i in resource.get("interpretation") or [] if i is not None
    ]
    conclusion = "; ".join(t for t in [*interpretation, *notes] if t) or None
    paths = {
        "value": "Observation.value",
        "unit": "Observation.value.unit",
        "reference_range": "Observation.referenceRange",
        "conclusion": "Observation.note",
        "order_id": "Observation.basedOn",
    }
    result = _service(
        lambda: encounters.enter_result(
            session,
            access.principal,
            order_id,
            value or "",
            unit=unit,
            reference_range=from_fhir.reference_range(resource),
            conclusion=conclusion,
        ),
        paths,
        "Observation",
    )
    return ("Observation", f"r{result.id}")


def _examinations_of(session: Session, encounter_id: str, expression: str) -> list[int]:
    """The examination ``e12``, or every examination of the visit ``v7``: a lab system
    often knows only the visit (its MA_LK), not which examination ordered the test."""
    from his.models import Encounter

    if encounter_id.startswith("v"):
        visit_id = from_fhir.numeric_id("v", encounter_id, expression)
        return list(session.scalars(select(Encounter.id).where(Encounter.visit_id == visit_id)))
    return [from_fhir.numeric_id("e", encounter_id, expression)]


def _order_by_code(
    session: Session, encounter_ids: list[int], resource: dict[str, Any]
) -> int | None:
    wanted = {code for _system, code in from_fhir.codes(resource.get("code"))}
    if not wanted or not encounter_ids:
        return None
    return session.scalar(
        select(ServiceOrder.id)
        .where(
            ServiceOrder.encounter_id.in_(encounter_ids),
            ServiceOrder.service_code.in_(wanted),
        )
        .order_by(ServiceOrder.id.desc())
        .limit(1)
    )


def _create_report(session: Session, access: FhirAccess, resource: dict[str, Any]) -> Key:
    from his.fhirapi.searchparams import parse_date
    from his.services import reports

    patient_id = _subject_patient(resource, "subject", "DiagnosticReport")
    order_id = encounter_id = None
    for n, based in enumerate(resource.get("basedOn") or []):
        ref = from_fhir.reference(based)
        if ref and ref[0] == "ServiceRequest":
            order_id = from_fhir.numeric_id("", ref[1], f"DiagnosticReport.basedOn[{n}]")
    encounter_ref = from_fhir.reference(resource.get("encounter"))
    if encounter_ref:
        encounter_id = from_fhir.numeric_id("e", encounter_ref[1], "DiagnosticReport.encounter")
    result_ids = []
    paths = {
        "patient_id": "DiagnosticReport.subject",
        "status": "DiagnosticReport.status",
        "code": "DiagnosticReport.code",
        "order_id": "DiagnosticReport.basedOn",
        "encounter_id": "DiagnosticReport.encounter",
    }
    for n, item in enumerate(resource.get("result") or []):
        ref = from_fhir.reference(item)
        where = f"DiagnosticReport.result[{n}]"
        if ref is None or ref[0] != "Observation":
            raise FhirError(422, _("A result must reference an Observation."), expression=[where])
        paths[f"result_ids.{len(result_ids)}"] = where
        result_ids.append(from_fhir.numeric_id("r", ref[1], where))
    codes = from_fhir.codes(resource.get("code"))
    categories = [c for item in resource.get("category") or [] for c in from_fhir.codes(item)]
    issued = resource.get("issued")
    span = parse_date(issued) if isinstance(issued, str) else None
    data = reports.ReportInput(
        patient_id=patient_id,
        status=resource.get("status"),
        code=codes[0][1] if codes else from_fhir.concept_text(resource.get("code")),
        code_system=codes[0][0] if codes else None,
        title=from_fhir.concept_text(resource.get("code")),
        category=categories[0][1] if categories else None,
        order_id=order_id,
        encounter_id=encounter_id,
        result_ids=result_ids,
        conclusion=resource.get("conclusion"),
        issued_at=span[0] if span else None,
        source=f"fhir client {access.client_id}" if access.client_id else None,
    )
    report = _service(
        lambda: reports.record_report(session, access.principal, data), paths, "DiagnosticReport"
    )
    return ("DiagnosticReport", str(report.id))


_SEVERITIES = {"mild", "moderate", "severe"}


def _create_allergy(session: Session, access: FhirAccess, resource: dict[str, Any]) -> Key:
    from his.services import allergies

    patient_id = _subject_patient(resource, "patient", "AllergyIntolerance")
    reactions = [r for r in resource.get("reaction") or [] if isinstance(r, dict)]
    first = reactions[0] if reactions else {}
    substance = from_fhir.concept_text(resource.get("code")) or from_fhir.concept_text(
        first.get("substance")
    )
    manifestations = [
        from_fhir.concept_text(m) for r in reactions for m in r.get("manifestation") or []
    ]
    severities = [r.get("severity") for r in reactions if r.get("severity") in _SEVERITIES]
    # The worst reaction's severity is the allergy's; without one, the criticality says
    # at least whether it is dangerous.
    order = ["mild", "moderate", "severe"]
    severity = max(severities, key=order.index) if severities else None
    if severity is None and resource.get("criticality") == "high":
        severity = "severe"
    paths = {
        "substance": "AllergyIntolerance.code",
        "severity": "AllergyIntolerance.reaction.severity",
    }
    allergy = _service(
        lambda: allergies.add_allergy(
            session,
            access.principal,
            patient_id,
            substance,
            reaction="; ".join(m for m in manifestations if m) or None,
            severity=severity,
        ),
        paths,
        "AllergyIntolerance",
    )
    return ("AllergyIntolerance", str(allergy.id))


_CREATORS: dict[str, Callable[[Session, FhirAccess, dict[str, Any]], Key]] = {
    "Patient": _create_patient,
    "Observation": _create_observation,
    "DiagnosticReport": _create_report,
    "AllergyIntolerance": _create_allergy,
}


# --- conditional create --------------------------------------------------------------------------


def condition_params(query: str) -> list[tuple[str, str]]:
    """``identifier=sys|v&name=x`` (with or without a leading ``Type?``) → pairs."""
    if "?" in query:
        query = query.split("?", 1)[1]
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k]
    if not params:
        raise FhirError(
            400, _("If-None-Exist must be a search query."), expression=["If-None-Exist"]
        )
    return params


def _lock_condition(session: Session, resource_type: str, params: list[tuple[str, str]]) -> None:
    """Serialise the requests that test the same condition, so exactly one of them creates.

    PostgreSQL: a transaction-scoped advisory lock on a hash of the normalised condition,
    taken before the search; a second request with the same condition waits until the
    first commits, and its search (a new statement, READ COMMITTED) then sees the created
    resource. SQLite: the request already holds the database's write lock (``BEGIN
    IMMEDIATE``, ``his.context.db_session``), which serialises every writer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    normalised = resource_type + "?" + "&".join(f"{k}={v}" for k, v in sorted(params))
    digest = hashlib.sha256(normalised.encode()).digest()
    session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"),
        {"key": int.from_bytes(digest[:8], "big", signed=True)},
    )


def _conditional_match(
    session: Session, access: FhirAccess, resource_type: str, query: str
) -> FhirResource | None:
    params = condition_params(query)
    _lock_condition(session, resource_type, params)
    projection.sync(session)  # what this transaction wrote so far is searchable too
    rows = _matching(session, access, resource_type, params)
    if len(rows) > 1:
        raise FhirError(
            412,
            _("The If-None-Exist condition matches %(n)s resources; make it more selective.")
            % {"n": len(rows)},
            code="multiple-matches",
        )
    return rows[0] if rows else None


def _matching(
    session: Session, access: FhirAccess, resource_type: str, params: list[tuple[str, str]]
) -> list[FhirResource]:
    try:
        from his.fhirapi.search import matching
    except ImportError:  # until the search engine lands: identifiers only
        matching = None
    if matching is not None:
        stmt = matching(session, access, resource_type, params)
        return list(session.scalars(stmt.limit(2)))
    return _identifier_matches(session, resource_type, params)


def _identifier_matches(
    session: Session, resource_type: str, params: list[tuple[str, str]]
) -> list[FhirResource]:
    stmt = select(FhirResource).where(
        FhirResource.resource_type == resource_type, FhirResource.deleted.is_(False)
    )
    for name, value in params:
        if name == "_id":
            stmt = stmt.where(FhirResource.resource_id == value)
            continue
        if name != "identifier":
            raise FhirError(
                400,
                _("Unknown search parameter %(name)s in the condition.") % {"name": name},
                expression=["If-None-Exist"],
            )
        system, sep, code = value.partition("|")
        if not sep:
            system, code = None, value
        sub = select(FhirSearchValue.rid).where(
            FhirSearchValue.resource_type == resource_type,
            FhirSearchValue.param == "identifier",
            FhirSearchValue.code == code,
        )
        if system:
            sub = sub.where(FhirSearchValue.system == system)
        stmt = stmt.where(FhirResource.rid.in_(sub))
    return list(session.scalars(stmt.limit(2)))


# --- update and patch --------------------------------------------------------------------


def update(
    session: Session,
    access: FhirAccess,
    resource_type: str,
    resource_id: str,
    resource: Any,
    *,
    if_match: str | None,
    required: bool = True,
) -> Written:
    """Replace the Patient with ``resource``; the ETag read must be sent in If-Match."""
    require_type(resource_type)
    if resource_type not in UPDATABLE:
        raise not_allowed(resource_type, resource_id)
    access.require(resource_type, "u")
    validate(resource, resource_type)
    if resource.get("id") != resource_id:
        raise FhirError(
            400,
            _("The resource's id must be the id in the URL (%(id)s).") % {"id": resource_id},
            expression=[f"{resource_type}.id"],
        )
    row = _locked_current(session, resource_type, resource_id)
    if row is None or not access.sees_facility(row.facility_id):
        # Ids are assigned here (the patient index numbers its records): a PUT cannot
        # create one under an id of the client's choosing.
        raise FhirError(
            405,
            _(
                "%(type)s/%(id)s does not exist and this server does not accept ids chosen "
                "by the client: create it with POST."
            )
            % {"type": resource_type, "id": resource_id},
            code="not-supported",
        )
    _check_if_match(row, if_match, required=required)
    key = _update_patient(session, access, int(resource_id), resource)
    row = _synced(session, key)
    assert row is not None
    audit_log.change(session, access, AuditAction.UPDATE, row, "update")
    return Written(row, key, created=False)


def _locked_current(session: Session, resource_type: str, resource_id: str) -> FhirResource | None:
    # FOR UPDATE: two updates sent with the same If-Match take turns, and the second sees
    # the first's new version (412) instead of overwriting it. SQLite ignores it: its
    # request transaction holds the write lock already.
    return session.scalars(
        select(FhirResource)
        .where(
            FhirResource.resource_type == resource_type,
            FhirResource.resource_id == resource_id,
        )
        .with_for_update()
    ).one_or_none()


def _check_if_match(row: FhirResource, if_match: str | None, *, required: bool) -> None:
    # 412 also when If-Match is missing (not 428): the FHIR specification lets a server
    # that requires version-aware updates say so with 412 Precondition Failed, and FHIR
    # clients handle 412 where few know 428.
    if not if_match:
        if not required:
            return
        raise FhirError(
            412,
            _(
                'Send the version you read in If-Match (If-Match: W/"%(version)s"): '
                "updates without it could overwrite someone else's change."
            )
            % {"version": row.version_id},
            code="conflict",
        )
    if parse_etag(if_match) != row.version_id:
        raise FhirError(
            412,
            _("%(type)s/%(id)s is at version %(version)s, not %(sent)s: read it again.")
            % {
                "type": row.resource_type,
                "id": row.resource_id,
                "version": row.version_id,
                "sent": if_match,
            },
            code="conflict",
        )


def _update_patient(
    session: Session, access: FhirAccess, patient_id: int, resource: dict[str, Any]
) -> Key:
    from his.models import IdentifierType
    from his.services import patients

    found = from_fhir.patient_input(resource)
    from_fhir.check_patient_fields(found, create=False)
    stored = patients.load_patient(session, patient_id)
    if found.bhyt is not None and found.bhyt in (
        stored.identifier(IdentifierType.BHYT),
        stored.coverage.card_number if stored.coverage else None,
    ):
        found.data.pop("insurance", None)  # the card on file, sent back as read
    _service(
        lambda: patients.update_patient(
            session,
            access.principal,
            patient_id,
            found.data,
            expected_version=None,  # checked against the FHIR version, under a row lock
            checker=_checker(),
        ),
        found.paths,
        "Patient",
    )
    return ("Patient", str(patient_id))


def patch(
    session: Session,
    access: FhirAccess,
    resource_type: str,
    resource_id: str,
    operations: Any,
    *,
    if_match: str | None,
) -> Written:
    """JSON Patch (RFC 6902) applied to the stored resource, then an update."""
    require_type(resource_type)
    if resource_type not in UPDATABLE:
        raise not_allowed(resource_type, resource_id)
    access.require(resource_type, "u")
    row = _locked_current(session, resource_type, resource_id)
    if row is None or row.deleted or not access.sees_facility(row.facility_id):
        raise FhirError(
            404,
            _("%(type)s/%(id)s does not exist.") % {"type": resource_type, "id": resource_id},
        )
    # A patch overwrites what it touches: like an update, it names the version it read, so
    # two clients patching the same record cannot silently undo each other.
    _check_if_match(row, if_match, required=True)
    try:
        patched = apply_patch(json.loads(row.content), operations)
    except PatchError as error:
        status = 409 if error.failed_test else 422
        raise FhirError(status, str(error)) from error
    return update(
        session,
        access,
        resource_type,
        resource_id,
        patched,
        if_match=etag(row.version_id),
        required=False,
    )


# --- not allowed ---------------------------------------------------------------------------------


def allowed_methods(resource_type: str, instance: bool) -> list[str]:
    if instance:
        return ["GET", "PUT", "PATCH"] if resource_type in UPDATABLE else ["GET"]
    return ["GET", "POST"] if resource_type in CREATABLE else ["GET"]


def not_allowed(resource_type: str, resource_id: str | None) -> FhirError:
    methods = allowed_methods(resource_type, resource_id is not None)
    what = resource_type if resource_id is None else f"{resource_type}/{resource_id}"
    return FhirError(
        405,
        _("%(what)s is read-only here: the allowed methods are %(methods)s.")
        % {"what": what, "methods": ", ".join(methods)},
        code="not-supported",
        headers={"Allow": ", ".join(methods)},
    )


# --- responses ------------------------------------------------------------------------------------


def _prefer_return() -> str:
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            key, _sep, value = item.strip().partition("=")
            if key.strip().lower() == "return":
                return value.strip().strip('"').lower()
    return "representation"


def write_response(written: Written) -> Response:
    headers = {"Location": written.location()}
    row = written.row
    if row is not None:
        headers["ETag"] = etag(row.version_id)
        headers["Last-Modified"] = http_date(row.last_updated)
    wanted = _prefer_return()
    if wanted == "minimal":
        return Response(status=written.status, headers=headers)
    if wanted == "operationoutcome":
        message = (
            _("Created %(what)s.") if written.created else _("%(what)s is stored as sent.")
        ) % {"what": "/".join(written.key)}
        return respond(
            operation_outcome([issue("information", "informational", message)]),
            written.status,
            headers,
        )
    if row is None:
        return Response(status=written.status, headers=headers)
    return respond(row.content, written.status, headers)


# --- routes ------------------------------------------------------------------------------


@bp.post("/<resource_type>")
def create_route(resource_type: str) -> Response:
    require_type(resource_type)
    if resource_type not in CREATABLE:
        raise not_allowed(resource_type, None)
    access = current_access()
    resource = body_json()
    # The condition normally comes in If-None-Exist; some clients (fhirpy's get_or_create)
    # put it in the query string of the POST instead. Both mean the same create-if-absent.
    condition = request.headers.get("If-None-Exist")
    if condition is None and request.query_string:
        query = [(k, v) for k, v in request.args.items(multi=True) if k != "_format"]
        condition = urlencode(query) if query else None
    written = create(db_session(), access, resource_type, resource, if_none_exist=condition)
    return write_response(written)


@bp.put("/<resource_type>/<resource_id>")
def update_route(resource_type: str, resource_id: str) -> Response:
    require_type(resource_type)
    if resource_type not in UPDATABLE:
        raise not_allowed(resource_type, resource_id)
    access = current_access()
    written = update(
        db_session(),
        access,
        resource_type,
        resource_id,
        body_json(),
        if_match=request.headers.get("If-Match"),
    )
    return write_response(written)


@bp.patch("/<resource_type>/<resource_id>")
def patch_route(resource_type: str, resource_id: str) -> Response:
    require_type(resource_type)
    if resource_type not in UPDATABLE:
        raise not_allowed(resource_type, resource_id)
    if (request.mimetype or "").lower() != "application/json-patch+json":
        raise FhirError(
            415,
            _("Send a JSON Patch as application/json-patch+json."),
            code="not-supported",
        )
    access = current_access()
    written = patch(
        db_session(),
        access,
        resource_type,
        resource_id,
        body_json(),
        if_match=request.headers.get("If-Match"),
    )
    return write_response(written)


@bp.delete("/<resource_type>/<resource_id>")
def delete_route(resource_type: str, resource_id: str) -> Response:
    require_type(resource_type)
    # Records are never deleted through FHIR: the domain keeps them (corrections are new
    # versions, merges link records).
    raise not_allowed(resource_type, resource_id)


@bp.route("/<resource_type>", methods=["PUT", "PATCH", "DELETE"])
def conditional_write_route(resource_type: str) -> Response:
    # Conditional update / patch / delete are not offered.
    require_type(resource_type)
    raise not_allowed(resource_type, None)
