"""The staff web UI (Jinja2 + htmx) and the health endpoints."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import text
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from his.authn import SessionUser, lockout_policy, login_limits, start_session
from his.context import db_session, principal
from his.localtime import VN_TZ
from his.migrate import current_revision, head_revision
from his.models import Role
from his.services import auth

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static")
health_bp = Blueprint("health", __name__)

# What each role's home shows; later issues fill the panels.
ROLE_PANELS = {
    Role.ADMIN: (_l("Administration"), _l("Facilities, users and catalogs.")),
    Role.RECEPTIONIST: (
        _l("Reception"),
        _l("Find or register a patient and open a visit."),
    ),
    Role.DOCTOR: (_l("Examination"), _l("Your room's worklist.")),
    Role.NURSE: (_l("Nursing"), _l("Vital signs and orders to carry out.")),
    Role.PHARMACIST: (_l("Pharmacy"), _l("Signed prescriptions waiting to be dispensed.")),
    Role.CASHIER: (_l("Cashier"), _l("Bills waiting for payment.")),
    Role.AUDITOR: (_l("Audit"), _l("The audit trail of your facility.")),
    Role.INTEGRATION: (_l("Integration"), _l("Machine client: use the REST, FHIR or HL7 API.")),
}

# Where each role's home leads today; later issues add the rest.
ROLE_LINKS = {
    Role.RECEPTIONIST: ("reception.search_page", _l("Open reception")),
    Role.ADMIN: ("reception.search_page", _l("Open reception")),
    Role.NURSE: ("doctor.rooms", _l("Open the worklist")),
    Role.DOCTOR: ("doctor.rooms", _l("Open the worklist")),
    Role.PHARMACIST: ("pharmacy.queue", _l("Open the pharmacy")),
    Role.CASHIER: ("cashier.index", _l("Open the cashier")),
}

ROLE_NAMES = {
    Role.ADMIN: _l("Administrator"),
    Role.RECEPTIONIST: _l("Receptionist"),
    Role.DOCTOR: _l("Doctor"),
    Role.NURSE: _l("Nurse"),
    Role.PHARMACIST: _l("Pharmacist"),
    Role.CASHIER: _l("Cashier"),
    Role.AUDITOR: _l("Auditor"),
    Role.INTEGRATION: _l("Integration client"),
}


class LoginForm(FlaskForm):
    username = StringField(
        _l("Username"),
        validators=[
            DataRequired(message=_l("Enter your username.")),
            Length(max=64, message=_l("At most %(max)s characters.")),
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(message=_l("Enter your password.")),
            Length(max=1024, message=_l("At most %(max)s characters.")),
        ],
    )


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after login is a phishing tool."""
    # Browsers read a backslash as a slash, so "/\\evil.example" would leave the site.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.home")


@bp.app_template_filter("local_datetime")
def local_datetime(moment) -> str:
    """dd/mm/yyyy HH:MM in Vietnam's time: how clinical times are read here."""
    return moment.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M") if moment else ""


@bp.app_template_filter("board_name")
def board_name(full_name: str) -> str:
    """A name fit for a wall screen in a public waiting room: the family name's initial and
    the given name ("N. An"), enough to recognise oneself, not to identify a stranger."""
    parts = full_name.split()
    return f"{parts[0][0]}. {parts[-1]}" if len(parts) > 1 else full_name


@bp.app_context_processor
def _template_globals():
    return {"role_names": ROLE_NAMES, "get_locale": get_locale}


@bp.route("/login", methods=["GET", "POST"])
@login_limits()
def login():
    if current_user.is_authenticated:
        return redirect(url_for("web.home"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        db = db_session()
        user = auth.authenticate(
            db,
            principal(),
            form.username.data,
            form.password.data,
            channel="web",
            lockout=lockout_policy(),
        )
        if user is not None:
            start_session(user)
            login_user(SessionUser(user))
            return redirect(_safe_next(request.args.get("next")))
        db.commit()  # keep the failed-login audit row
        g.login_failed = True
        error = _("The username or password is wrong.")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
@login_required
def logout():
    # Logging out ends every session and API token of the user, not only this cookie:
    # a signed cookie copied before logout would otherwise still work.
    auth.log_out_everywhere(db_session(), principal(), current_user.user)
    logout_user()
    session.clear()
    return redirect(url_for("web.login"))


class ReauthForm(FlaskForm):
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(message=_l("Enter your password.")),
            Length(max=1024, message=_l("At most %(max)s characters.")),
        ],
    )


@bp.route("/reauth", methods=["GET", "POST"])
@login_required
@login_limits()
def reauth():
    """Confirm the password before admin actions (his.authn._require_recent_password)."""
    form = ReauthForm()
    error = None
    status = 200
    if form.validate_on_submit():
        db = db_session()
        if auth.confirm_password(
            db, principal(), current_user.user, form.password.data, lockout=lockout_policy()
        ):
            session["reauth_at"] = int(time.time())
            return redirect(_safe_next(request.args.get("next")))
        db.commit()  # keep the failed attempt's audit row and count
        g.login_failed = True
        error = _("The password is wrong.")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("reauth.html", form=form, error=error), status


@bp.get("/")
@login_required
def home():
    user = current_user.user
    panels = [(*ROLE_PANELS[r], ROLE_LINKS.get(r)) for r in user.roles]
    return render_template("home.html", user=user, panels=panels)


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page says."""
    return redirect(url_for("web.static", filename="favicon.svg"), code=301)


@health_bp.get("/healthz")
def healthz():
    """The process answers. Says nothing about the database, on purpose: a restart
    does not fix a database outage."""
    return {"status": "ok"}


@health_bp.get("/readyz")
def readyz():
    """Ready for traffic: the database answers and its schema is the one this code needs."""
    try:
        conn = db_session().connection()
        conn.execute(text("SELECT 1"))
        revision = current_revision(conn)
    except Exception:  # any driver error means not ready
        current_app.logger.warning("readyz: database unreachable", exc_info=True)
        return {"status": "unavailable", "database": "unreachable"}, 503
    expected = head_revision()
    if revision != expected:
        return {"status": "unavailable", "database": "ok", "schema": "not migrated"}, 503
    return {"status": "ok", "database": "ok", "schema": revision}
