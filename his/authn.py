"""Authentication plumbing: Flask-Login sessions for the web UI, bearer tokens for the
REST API, CSRF for cookie-authenticated writes, the login rate limit, session timeouts and
re-authentication before admin actions.

A web session (Flask's signed cookie) carries, besides Flask-Login's keys:
``login_at`` and ``seen_at`` (Unix seconds) for the absolute and idle timeouts,
``gen`` (the user's session generation: logout bumps it, ending every older cookie) and
``reauth_at`` (the last time the password was typed: at login or on /reauth).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import selectinload

from his.context import db_session, principal
from his.db import utcnow
from his.errors import Forbidden
from his.models import AuditAction, AuditOutcome, Role, User
from his.problems import error_response, handle_domain_error
from his.services import audit, auth

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# REST writes only an admin may make; every write under /admin/ (the web admin pages)
# counts as well. tests/security/test_sessions.py checks each endpoint named here exists.
ADMIN_API_WRITES = frozenset(
    {"billing.ParamsResource", "patients.MergeResource", "patients.UndoMergeResource"}
)

login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)


class SessionUser(UserMixin):
    """What Flask-Login keeps as ``current_user``: the User row of this request."""

    def __init__(self, user: User):
        self.user = user
        # Copied now: after a failed request rolls back, the row's attributes are expired
        # and the access log must still name the user without another query.
        self._id = str(user.id)
        self._active = user.active

    def get_id(self) -> str:
        return self._id

    @property
    def is_active(self) -> bool:
        return self._active


@login_manager.user_loader
def _load_from_session(user_id: str) -> SessionUser | None:
    if not user_id.isdigit():
        return None
    user = db_session().get(User, int(user_id), options=[selectinload(User.role_rows)])
    if user is None or not user.active:
        return None
    if session.get("gen") != user.session_generation:
        # The user logged out (somewhere) after this cookie was issued.
        session.clear()
        return None
    return SessionUser(user)


def start_session(user: User) -> None:
    """Called at login: a new session, so nothing set before login (by this browser or
    planted by someone else) carries over, stamped for the timeouts."""
    session.clear()
    now = int(time.time())
    session.update(login_at=now, seen_at=now, reauth_at=now, gen=user.session_generation)


def _enforce_session_timeouts() -> None:
    """Ends a cookie session idle too long or older than the absolute limit, before
    Flask-Login reads it; the request then goes on as anonymous (login page or 401)."""
    if "_user_id" not in session:
        return
    settings = current_app.config["HIS_SETTINGS"]
    now = time.time()
    login_at, seen_at = session.get("login_at"), session.get("seen_at")
    if (
        not isinstance(login_at, int)
        or not isinstance(seen_at, int)
        or now - seen_at > settings.session_idle_minutes * 60
        or now - login_at > settings.session_max_hours * 3600
    ):
        session.clear()
        return
    session["seen_at"] = int(now)


# POSTs under /admin/ that only read: the HL7 message list filtered by patient takes the
# term (a CCCD, BHYT number or MRN) in the body so that it never lands in a URL (issue 9),
# not because it changes anything. CSRF still applies to it.
ADMIN_READS_BY_POST = frozenset({"hl7.filter_messages"})


def is_admin_action() -> bool:
    return (
        request.method in WRITE_METHODS
        and request.endpoint not in ADMIN_READS_BY_POST
        and (request.path.startswith("/admin/") or request.endpoint in ADMIN_API_WRITES)
    )


def _require_recent_password() -> Response | None:
    """Admin actions need the password typed in the last HIS_REAUTH_MINUTES: a session
    left open on a workstation, or a stolen cookie or old token, cannot change settings,
    peers, clients or merge patients. Users without the admin role pass through to the
    view, which refuses them (403) as before."""
    if not is_admin_action() or not current_user.is_authenticated:
        return None
    if Role.ADMIN not in current_user.user.roles:
        return None
    window = current_app.config["HIS_SETTINGS"].reauth_minutes * 60
    if g.get("auth_via") == "bearer":
        # A token is issued for a password, so its age is the age of that password
        # check: an admin asks for a new token (RFC 9470 step-up challenge).
        issued = g.get("token_issued_at")
        if issued is not None and (utcnow() - issued).total_seconds() <= window:
            return None
        return error_response(
            401,
            _(
                "Admin actions need a token issued in the last %(minutes)s minutes: "
                "ask for a new token with your password.",
                minutes=window // 60,
            ),
            slug="reauthentication-required",
            headers={
                "WWW-Authenticate": 'Bearer realm="his", '
                f'error="insufficient_user_authentication", max_age="{window}"'
            },
        )
    reauth_at = session.get("reauth_at")
    if isinstance(reauth_at, int) and time.time() - reauth_at <= window:
        return None
    if request.path.startswith("/api/"):
        return error_response(
            401,
            _("Confirm your password before this admin action."),
            slug="reauthentication-required",
        )
    # The form's data cannot survive the detour: back to the page it was sent from.
    target = url_for("web.reauth", next=_referring_path())
    if request.headers.get("HX-Request"):
        return Response(status=204, headers={"HX-Redirect": target})
    return redirect(target)


def _referring_path() -> str:
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host and referrer.path.startswith("/"):
        return referrer.path + (f"?{referrer.query}" if referrer.query else "")
    return url_for("web.home")


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@login_manager.request_loader
def _load_from_bearer(_request: object) -> SessionUser | None:
    token = bearer_token()
    if token is None:
        return None
    api_token = auth.token_for(db_session(), token)
    if api_token is None:
        return None
    g.auth_via = "bearer"
    g.token_issued_at = api_token.created_at
    return SessionUser(api_token.user)


@login_manager.unauthorized_handler
def _unauthorized():
    if request.path.startswith("/api"):
        detail = (
            _("The token is missing, expired or revoked.")
            if request.headers.get("Authorization")
            else _("Log in or send a bearer token.")
        )
        return error_response(401, detail, headers={"WWW-Authenticate": 'Bearer realm="his"'})
    return redirect(url_for("web.login", next=request.full_path.rstrip("?")))


def lockout_policy() -> auth.Lockout:
    settings = current_app.config["HIS_SETTINGS"]
    return auth.Lockout(settings.lock_after, settings.lock_minutes, settings.lock_max_minutes)


def login_rate_limit() -> str:
    return current_app.config["HIS_SETTINGS"].login_rate_limit


def submitted_username() -> str:
    """The username a login attempt names, so guessing one account from many addresses
    is throttled as well as many accounts from one address."""
    if request.is_json:
        body = request.get_json(silent=True)
        name = body.get("username", "") if isinstance(body, dict) else ""
    else:
        name = request.form.get("username", "")
    if not name and current_user.is_authenticated:
        name = current_user.user.username  # the re-authentication form names nobody
    return "login-user:" + auth.normalise_username(str(name))[:64]


def login_failed(_response) -> bool:
    """Only failed attempts count against the limit; the views set the flag."""
    return bool(g.get("login_failed"))


def login_limits():
    """Decorators applied to every login endpoint (web form and API token)."""
    per_address = limiter.limit(login_rate_limit, methods=["POST"], deduct_when=login_failed)
    per_account = limiter.limit(
        login_rate_limit, key_func=submitted_username, methods=["POST"], deduct_when=login_failed
    )

    def decorate(view):
        return per_address(per_account(view))

    return decorate


def _audit_denial(exc: Forbidden):
    """A refused action is recorded even though the request fails: whatever the request
    did is rolled back first, then the refusal alone is committed."""
    if current_user.is_authenticated:
        session = db_session()
        session.rollback()
        rule = request.url_rule.rule if request.url_rule else request.path
        audit.record(
            session,
            principal(),
            AuditAction.ACCESS_DENIED,
            outcome=AuditOutcome.DENIED,
            detail=f"{request.method} {rule}",
        )
        session.commit()
    return handle_domain_error(exc)


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    app.before_request(_enforce_session_timeouts)
    csrf.init_app(app)
    app.config["RATELIMIT_STORAGE_URI"] = app.config["HIS_SETTINGS"].ratelimit_storage_url
    limiter.init_app(app)
    # After CSRFProtect's check of web forms: a forged admin post is refused as forged.
    app.before_request(_require_recent_password)
    app.register_error_handler(Forbidden, _audit_denial)
