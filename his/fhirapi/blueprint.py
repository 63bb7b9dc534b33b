"""The ``/fhir`` blueprint: JSON only, bearer tokens only, every error an OperationOutcome.

Route modules (``reads``, ``search``, ``writes``, ``bundles``, ``everything``, ``bulk``,
``smart``, ``conformance``) add their views to ``bp``; ``his.fhirapi.init_app`` imports
them all.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request
from flask_babel import gettext as _
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from his.errors import DomainError
from his.fhirapi.outcome import FhirError
from his.fhirapi.wire import check_format, respond
from his.logging import get_logger

log = get_logger(__name__)

bp = Blueprint("fhir", __name__, url_prefix="/fhir")


@bp.before_request
def _negotiate() -> None:
    check_format()


def outcome_response(error: FhirError) -> Response:
    return respond(error.outcome(), error.status, error.headers)


@bp.errorhandler(FhirError)
def _fhir_error(error: FhirError) -> Response:
    if error.status == 403:
        _audit_denial()
    return outcome_response(error)


def _audit_denial() -> None:
    """A refused request is recorded even though it fails: whatever it did is rolled back
    first, then the refusal alone is committed, naming the staff member or the client."""
    from his.context import db_session
    from his.fhirapi.audit_log import detail_for
    from his.models import AuditAction, AuditOutcome
    from his.services import audit

    access = g.get("fhir_access")
    if access is None:
        return
    session = db_session()
    session.rollback()
    rule = request.url_rule.rule if request.url_rule else request.path
    audit.record(
        session,
        access.principal,
        AuditAction.ACCESS_DENIED,
        outcome=AuditOutcome.DENIED,
        detail=detail_for(access, f"{request.method} {rule}"),
    )
    session.commit()


@bp.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Response:
    return outcome_response(from_domain_error(error))


def from_domain_error(error: DomainError) -> FhirError:
    """A service's refusal (validation, conflict, forbidden) as the FHIR client sees it."""
    status = getattr(error, "status", 422)
    issues = []
    errors = getattr(error, "errors", None) or {}
    for field, messages in errors.items():
        for message in messages if isinstance(messages, list) else [messages]:
            issues.append(
                {
                    "severity": "error",
                    "code": "invariant" if status == 422 else "processing",
                    "diagnostics": f"{field}: {message}",
                    "expression": [field],
                }
            )
    return FhirError(status, str(error), issues=issues)


@bp.errorhandler(OverflowError)
@bp.errorhandler(DataError)
def _value_out_of_range(error: Exception) -> Response:
    # A number or text the database cannot hold is the client's input, not a server fault.
    log.info("value_out_of_range", error_type=type(error).__name__)
    _rollback()
    return outcome_response(
        FhirError(422, _("A value in the request is too large or too long for this field."))
    )


@bp.errorhandler(DBAPIError)
@bp.errorhandler(PoolTimeout)
def _database_error(error: Exception) -> Response:
    from his.db import database_unavailable
    from his.problems import handle_database_error

    # 503 + Retry-After when the database is unreachable or busy, else the 500 below.
    return handle_database_error(error) if database_unavailable(error) else _unexpected(error)


def database_unavailable_outcome() -> Response:
    """What a FHIR client gets while the database is unreachable: 503, issue code
    ``transient`` (retry later), and Retry-After."""
    from his.problems import RETRY_AFTER_SECONDS

    return outcome_response(
        FhirError(
            503,
            _("The database cannot be reached just now. Try again in a few seconds."),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    )


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    # The operators get the traceback; the client an OperationOutcome with the request id.
    log.exception("unhandled_exception", error_type=type(error).__name__)
    _rollback()
    return outcome_response(
        FhirError(
            500,
            _("Something went wrong on the server. Quote the request id %(id)s when reporting it.")
            % {"id": g.get("request_id", "")},
        )
    )


def _rollback() -> None:
    # A failed flush leaves the session unusable; answering must not touch it.
    session = g.get("db_session")
    if session is not None:
        session.rollback()


@bp.errorhandler(HTTPException)
def fhir_http_error(error: HTTPException) -> Response:
    from his.problems import handle_database_error, unavailable_behind

    if unavailable_behind(error):  # the commit after the view lost the database
        return handle_database_error(error.original_exception)  # type: ignore[attr-defined]
    status = error.code or 500
    detail = error.description or _("The request failed.")
    headers = {}
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
        detail = _("This interaction is not supported here; allowed: %(methods)s.") % {
            "methods": headers["Allow"]
        }
    return outcome_response(FhirError(status, str(detail), headers=headers))


def body_json() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 OperationOutcome saying what is wrong."""
    mimetype = (request.mimetype or "").lower()
    if mimetype not in ("application/fhir+json", "application/json", "application/json-patch+json"):
        raise FhirError(
            415,
            _("Send the body as application/fhir+json."),
            code="not-supported",
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:
        raise FhirError(400, _("The body is not valid JSON: %(error)s") % {"error": exc}) from exc
    return data
