"""Tokens and the current user."""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from flask import current_app, g
from flask.views import MethodView
from flask_babel import gettext as _
from flask_login import current_user, login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.schemas import FacilitySchema, problem_doc
from his.authn import bearer_token, lockout_policy, login_limits
from his.context import db_session, principal
from his.models import Role
from his.problems import error_response
from his.services import auth

blp = Blueprint("auth", __name__, description="Log in, tokens and the current user")


class TokenRequestSchema(ma.Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(
        required=True, load_only=True, validate=validate.Length(min=1, max=1024)
    )


class TokenSchema(ma.Schema):
    access_token = fields.String()
    token_type = fields.String(metadata={"enum": ["Bearer"]})
    expires_in = fields.Integer(metadata={"description": "Seconds until the token expires"})
    expires_at = fields.DateTime()


class MeSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()
    full_name = fields.String()
    roles = fields.List(fields.String(metadata={"enum": [r.value for r in Role]}))
    facility = fields.Nested(FacilitySchema)
    locale = fields.String(allow_none=True)


@blp.route("/auth/token")
class TokenResource(MethodView):
    decorators = (login_limits(),)

    @blp.arguments(TokenRequestSchema)
    @blp.response(201, TokenSchema)
    @blp.doc(security=[])
    @problem_doc(blp, 401, "Wrong username or password")
    @problem_doc(blp, 429, "Too many failed attempts")
    def post(self, body):
        """Exchange a username and password for a bearer token."""
        session = db_session()
        user = auth.authenticate(
            session,
            principal(),
            body["username"],
            body["password"],
            channel="api",
            lockout=lockout_policy(),
        )
        if user is None:
            session.commit()  # keep the failed-login audit row
            g.login_failed = True
            return error_response(
                401,
                _("The username or password is wrong."),
                headers={"WWW-Authenticate": 'Bearer realm="his"'},
            )
        ttl = dt.timedelta(minutes=current_app.config["HIS_SETTINGS"].token_ttl_minutes)
        raw, token = auth.issue_token(session, user, ttl)
        return {
            "access_token": raw,
            "token_type": "Bearer",
            "expires_in": int(ttl.total_seconds()),
            "expires_at": token.expires_at,
        }


@blp.route("/auth/logout")
class LogoutResource(MethodView):
    decorators = (login_required,)

    @blp.response(204)
    @problem_doc(blp, 401)
    def post(self):
        """Revoke the bearer token this request carries."""
        token = bearer_token()
        if token is None:
            return error_response(400, _("Send the token to revoke as a bearer token."))
        auth.revoke_token(db_session(), principal(), token)
        return None


@blp.route("/me")
class MeResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, MeSchema)
    @problem_doc(blp, 401)
    def get(self):
        """The logged-in user, their roles and facility."""
        user = current_user.user
        return {
            "id": user.id,
            "username": user.username,
            "full_name": user.full_name,
            "roles": [r.value for r in user.roles],
            "facility": user.facility,
            "locale": user.locale,
        }
