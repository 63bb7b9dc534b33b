"""The administrator's page for FHIR backend clients (SMART Backend Services): who may ask
for a token, with which keys, for which scopes and facilities.

The same service as ``his fhir client add`` does the checks and the audit; only admins get
past it.
"""

from __future__ import annotations

import json

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from sqlalchemy import select

from his.context import db_session, principal
from his.errors import DomainError
from his.models import Facility, Role
from his.services import fhir_clients as service

bp = Blueprint("fhir_clients", __name__, url_prefix="/admin/fhir-clients")


def _page(values: dict | None = None, errors: dict | None = None, problem=None, status=200):
    session = db_session()
    who = principal()
    clients = service.list_clients(session, who)  # admins only: Forbidden otherwise
    facilities = session.scalars(
        select(Facility).where(Facility.active.is_(True)).order_by(Facility.code)
    ).all()
    return (
        render_template(
            "fhir_clients.html",
            clients=clients,
            facilities=facilities,
            values=values or {},
            errors=errors or {},
            problem=problem,
            added=request.args.get("added"),
            changed=request.args.get("changed"),
        ),
        status,
    )


@bp.get("/")
@login_required
def page():
    return _page()


@bp.post("/")
@login_required
def add():
    principal().require_any(Role.ADMIN)
    form = request.form
    values = {
        "client_id": form.get("client_id", "").strip(),
        "jwks_url": form.get("jwks_url", "").strip(),
        "jwks": form.get("jwks", "").strip(),
        "scopes": " ".join(form.get("scopes", "").split()),
        "facilities": form.getlist("facility"),
    }
    jwks = None
    if values["jwks"]:
        try:
            jwks = json.loads(values["jwks"])
        except ValueError:
            return _page(
                values,
                {"jwks": [_("The JWKS is not valid JSON.")]},
                _("The FHIR client could not be registered."),
                422,
            )
    try:
        created = service.register(
            db_session(),
            principal(),
            client_id=values["client_id"],
            jwks_url=values["jwks_url"] or None,
            jwks=jwks,
            scopes=values["scopes"],
            facility_codes=values["facilities"],
        )
    except DomainError as exc:
        if exc.status == 403:
            raise
        return _page(values, exc.errors or {}, exc.detail, exc.status)
    return redirect(url_for("fhir_clients.page", added=created.client_id), 303)


@bp.post("/<client_id>/<any(disable, enable):action>")
@login_required
def set_active(client_id: str, action: str):
    service.set_active(db_session(), principal(), client_id, active=action == "enable")
    return redirect(url_for("fhir_clients.page", changed=client_id), 303)
