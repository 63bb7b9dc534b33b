"""RFC 9457 problem details: the one error format of the REST API.

Every error a client can meet, from a bad field to an unhandled exception, leaves as
``application/problem+json`` with a stable ``type``, a translated ``title``, the request id,
and for validation failures an ``errors`` map of field → messages. Browsers asking for a
web page get the same facts as an HTML page. Neither ever carries a stack trace or SQL.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, json, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from his.db import database_unavailable
from his.errors import DomainError
from his.logging import get_logger
from his.validation_messages import translate_errors

log = get_logger(__name__)

PROBLEM_BASE = "https://his.example.vn/problems/"
# Seconds a client should wait before trying again while the database is unreachable.
RETRY_AFTER_SECONDS = 5
PROBLEM_JSON = "application/problem+json"

# Titles per status, translated at response time.
TITLES = {
    400: _l("Bad request"),
    401: _l("Authentication required"),
    403: _l("Forbidden"),
    404: _l("Not found"),
    405: _l("Method not allowed"),
    406: _l("Not acceptable"),
    409: _l("Conflict"),
    413: _l("Request too large"),
    415: _l("Unsupported media type"),
    422: _l("Validation failed"),
    429: _l("Too many requests"),
    500: _l("Internal server error"),
    503: _l("Service unavailable"),
}

SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}

DATABASE_UNAVAILABLE_SLUG = "database-unavailable"


def problem(
    status: int,
    detail: str | None = None,
    *,
    errors: dict[str, Any] | None = None,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or SLUGS.get(status, "error")),
        "title": str(TITLES.get(status, _l("Error"))),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path
    if errors:
        body["errors"] = errors
    body.update(extra or {})
    if g.get("request_id"):
        body["request_id"] = g.request_id
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def wants_html() -> bool:
    """Browser pages get HTML errors; the API, health checks and machine clients JSON."""
    if request.path.startswith(("/api", "/fhir", "/healthz", "/readyz")):
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json", PROBLEM_JSON])
    return best == "text/html"


def error_response(
    status: int,
    detail: str | None,
    errors: dict[str, Any] | None = None,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    if wants_html():
        title = str(TITLES.get(status, _l("Error")))
        html = render_template("error.html", status=status, title=title, detail=detail)
        response = Response(html, status=status, mimetype="text/html")
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response
    return problem(status, detail, errors=errors, slug=slug, headers=headers, extra=extra)


def flatten_webargs(messages: dict[str, Any]) -> dict[str, Any]:
    """webargs nests messages by location (json, query, ...); clients want field → messages,
    in their language."""
    flat: dict[str, Any] = {}
    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            flat.update(location_messages)
    return translate_errors(flat)


def handle_http_exception(exc: HTTPException) -> Response:
    if unavailable_behind(exc):
        # The commit after the view (``his.http``) failed because the database went away:
        # Flask wraps that in a 500, but the client should retry, not report a bug.
        return handle_database_error(exc.original_exception)  # type: ignore[attr-defined]
    if request.path == "/fhir" or request.path.startswith("/fhir/"):
        # No FHIR route matched (an unknown operation, a path too deep): FHIR clients
        # still get an OperationOutcome, not problem+json.
        from his.fhirapi.blueprint import fhir_http_error

        return fhir_http_error(exc)
    status = exc.code or 500
    errors = None
    data = getattr(exc, "data", None) or {}
    if status == 422 and "messages" in data:
        errors = flatten_webargs(data["messages"])
    detail = data.get("message") if isinstance(data, dict) else None
    headers: dict[str, str] = {}
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="his"'
    if status == 429:
        detail = _("Too many attempts. Wait a minute and try again.")
    if isinstance(exc, CSRFError):
        detail = _(
            "The form has expired or did not come from this site. Reload the page and try again."
        )
    if status == 422 and errors and not detail:
        detail = _("Some fields are not valid; see errors.")
    if detail is None and status in (400, 404, 405, 413, 415):
        detail = {
            400: _("The request could not be read: check that its body is valid JSON."),
            404: _("There is nothing at this address."),
            405: _("This address does not accept the %(method)s method.", method=request.method),
            413: _("The request body is larger than this server accepts."),
            415: _("Send the request body as application/json."),
        }[status]
    return error_response(status, detail, errors, headers=headers)


def handle_domain_error(exc: DomainError) -> Response:
    return error_response(
        exc.status, exc.detail, exc.errors or None, slug=exc.code, extra=exc.extra
    )


def handle_unexpected(exc: Exception) -> Response:
    # Logged with its traceback for operators; the client learns only the request id.
    log.exception("unhandled_exception", error_type=type(exc).__name__)
    # A failed flush leaves the session unusable; the error page must not touch it.
    session = g.get("db_session")
    if session is not None:
        session.rollback()
    return error_response(
        500, _("Something went wrong on the server. Quote the request id when reporting it.")
    )


def handle_value_out_of_range(exc: Exception) -> Response:
    """A number or text the database cannot hold (an integer past 64 bits, a string longer
    than its column on PostgreSQL) is the client's input, not a server fault."""
    log.info("value_out_of_range", error_type=type(exc).__name__)
    session = g.get("db_session")
    if session is not None:
        session.rollback()
    return error_response(422, _("A value in the request is too large or too long for this field."))


def unavailable_behind(exc: HTTPException) -> bool:
    original = getattr(exc, "original_exception", None)
    return (
        isinstance(exc, InternalServerError)
        and original is not None
        and database_unavailable(original)
    )


def rollback_quietly() -> None:
    """Ends the request's transaction; with the database gone even the rollback fails,
    and the session is dropped (its connection is invalid) so the answer still leaves."""
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.rollback()
        session.close()
    except Exception:
        log.info("rollback_failed_database_unavailable")


def handle_database_error(exc: Exception) -> Response:
    """The database cannot be reached or is busy: 503 with Retry-After, quickly, so clients
    and load balancers retry instead of reporting a bug; any other database error is a 500."""
    if not database_unavailable(exc):
        return handle_unexpected(exc)
    # No traceback: an outage is an operational event, logged once per request.
    log.warning("database_unavailable", error_type=type(exc).__name__)
    rollback_quietly()
    if "_login_user" not in g:
        # Who is calling cannot be known without the database: anonymous, so choosing the
        # answer's language (the user's locale) does not try the database once more.
        g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
    if request.path == "/fhir" or request.path.startswith("/fhir/"):
        from his.fhirapi.blueprint import database_unavailable_outcome

        return database_unavailable_outcome()
    return error_response(
        503,
        _("The database cannot be reached just now. Try again in a few seconds."),
        slug=DATABASE_UNAVAILABLE_SLUG,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    # Flask takes the handler of the most specific class: DataError (a DBAPIError) keeps
    # its 422 below, and database errors that are not an outage still end in a 500.
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(PoolTimeout, handle_database_error)
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(OverflowError, handle_value_out_of_range)
    app.register_error_handler(DataError, handle_value_out_of_range)
    app.register_error_handler(Exception, handle_unexpected)
