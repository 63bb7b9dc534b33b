"""The request lifecycle: request ids, the unit of work, security headers, access logs."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from flask import Flask, Response, g, request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from his.logging import get_logger

log = get_logger("his.request")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# No inline scripts or styles anywhere in the UI; the API docs page needs inline styles
# because Swagger UI sets style attributes, and only that page gets them.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'self'; object-src 'none'"
)
CSP_API_DOCS = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


def _begin() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    _refuse_nul()


def _refuse_nul() -> None:
    """NUL (``%00``) is in no value this service holds, and PostgreSQL refuses it in text
    deep inside a query (a misleading 422, or a 500): it is refused here, for every door."""
    args = request.args.items(multi=True)
    if "\x00" in request.path or any("\x00" in key + value for key, value in args):
        message = _("The address holds a NUL character (%00), which no value may contain.")
        error = BadRequest(description=message)
        error.data = {"message": message}  # type: ignore[attr-defined]
        raise error


def _finish(response: Response) -> Response:
    session = g.pop("db_session", None)
    if session is not None:
        try:
            if response.status_code < 400:
                session.commit()
            else:
                session.rollback()
        finally:
            session.close()
    _secure(response)
    response.headers["X-Request-ID"] = g.get("request_id", "")
    log.info(
        "request",
        method=request.method,
        # The path only: query strings can carry a searched name or ID number.
        path=request.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
        user_id=_user_id(),
    )
    return response


def _user_id() -> str | None:
    # Only a user Flask-Login already loaded: logging must not cost a query.
    user = g.get("_login_user")
    return user.get_id() if user is not None and user.is_authenticated else None


def _teardown(_exc: BaseException | None) -> None:
    # Reached with the session still open only when a response was never produced.
    session = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()


def _secure(response: Response) -> None:
    headers = response.headers
    headers.setdefault(
        "Content-Security-Policy", CSP_API_DOCS if request.path == "/api/docs" else CSP
    )
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not request.path.startswith("/static"):
        # Patient data must not linger in shared browser or proxy caches.
        headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def init_app(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_finish)
    app.teardown_request(_teardown)
