"""JSON REST API under ``/api/v1``, described by OpenAPI at ``/api/openapi.json``."""

from __future__ import annotations

import http

from flask import Flask, current_app, g, request
from flask_smorest import Api

from his.api.openapi import CommonResponses, error_response_component, number_properties
from his.api.schemas import ProblemSchema
from his.authn import csrf
from his.problems import handle_http_exception


class HisApi(Api):
    """flask-smorest's Api with RFC 9457 errors instead of its own error payload."""

    ERROR_SCHEMA = ProblemSchema
    # No catch-all "default" response: CommonResponses documents each status instead.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_responses(self):
        """The reusable responses of each status; the errors as the problem+json they are."""
        for status in http.HTTPStatus:
            if status >= 400:
                self.spec.components.response(
                    status.name, error_response_component(status), lazy=True
                )
            else:
                self.spec.components.response(
                    status.name, {"description": status.phrase}, lazy=True
                )

    def handle_http_exception(self, error):  # type: ignore[override]
        return handle_http_exception(error)


def _csrf_for_cookie_sessions() -> None:
    """Bearer-token calls cannot be forged by another site; cookie-authenticated writes
    (the web UI's own calls) must carry the CSRF token like any form."""
    if not request.path.startswith("/api/") or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("Authorization") or g.get("auth_via") == "bearer":
        return
    if request.cookies.get(current_app.config["SESSION_COOKIE_NAME"]):
        csrf.protect()


def register_api(app: Flask) -> None:
    app.config.update(
        API_TITLE="HIS REST API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Reception, clinical and administrative REST API of the HIS. "
                    "Errors are RFC 9457 problem+json. Authenticate with "
                    "`POST /api/v1/auth/token` and send `Authorization: Bearer <token>`."
                )
            },
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        },
    )
    api = HisApi(app, spec_kwargs={"extra_plugins": [CommonResponses()]})
    api.ma_plugin.converter.add_attribute_function(number_properties)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme(
        "cookieAuth", {"type": "apiKey", "in": "cookie", "name": "his_session"}
    )
    from his.api import (
        audit,
        auth,
        billing,
        catalogs,
        docs,
        encounters,
        facilities,
        patients,
        prescriptions,
        stock,
        visits,
    )

    for module in (
        auth,
        facilities,
        patients,
        visits,
        catalogs,
        encounters,
        prescriptions,
        stock,
        audit,
        billing,
    ):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix="/api/v1")
    app.before_request(_csrf_for_cookie_sessions)
    app.register_blueprint(docs.bp)
