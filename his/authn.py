"""Authentication plumbing: Flask-Login sessions for the web UI, bearer tokens for the
REST API, CSRF for cookie-authenticated writes, and the login rate limit."""

from __future__ import annotations

from flask import Flask, current_app, g, redirect, request, url_for
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import selectinload

from his.context import db_session, principal
from his.errors import Forbidden
from his.models import AuditAction, AuditOutcome, User
from his.problems import error_response, handle_domain_error
from his.services import audit, auth

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
    return SessionUser(user) if user and user.active else None


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
    user = auth.user_for_token(db_session(), token)
    if user is None:
        return None
    g.auth_via = "bearer"
    return SessionUser(user)


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
    csrf.init_app(app)
    app.config["RATELIMIT_STORAGE_URI"] = app.config["HIS_SETTINGS"].ratelimit_storage_url
    limiter.init_app(app)
    app.register_error_handler(Forbidden, _audit_denial)
