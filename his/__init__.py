"""The HIS web application."""

from __future__ import annotations

import datetime as dt

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from his.config import Settings
from his.db import Database

# Every process that touches the database (web workers, CLI, MLLP listener, tests) keeps
# the FHIR projection in step with the domain tables; the hooks live on the Session class.
from his.fhirapi import projection as _fhir_projection  # noqa: F401
from his.hl7v2 import outbox as _hl7_outbox
from his.logging import configure_logging


class _IdConverter(IntegerConverter):
    """``<int:…>`` in every route: ids are 64-bit, so a longer number names nothing (404)
    instead of overflowing the database driver (a 500)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(url_map, *args, **kwargs)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> Flask:
    """Build the app from settings (default: the ``HIS_*`` environment).

    ``database`` lets tests hand in an engine bound to their own transaction; everything
    else gets one built from ``settings.database_url``.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    _hl7_outbox.set_application(settings.hl7_application)

    # No app-wide static folder: the web blueprint serves /static, and an app route of
    # the same path would shadow it.
    app = Flask(__name__, instance_path=str(settings.instance_dir), static_folder=None)
    app.url_map.converters["int"] = _IdConverter
    app.config.update(
        HIS_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        TESTING=settings.env == "test",
        MAX_CONTENT_LENGTH=settings.max_content_length,
        SESSION_COOKIE_NAME="his_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        # The session cookie lasts as long as the browser; his.authn ends it sooner
        # (HIS_SESSION_IDLE_MINUTES, HIS_SESSION_MAX_HOURS). No remember-me cookie is
        # issued; these flags only keep one safe should it ever be.
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_max_hours),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.cookie_secure,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=1)  # type: ignore[method-assign]

    from his.services.bhyt_check import checker_for

    app.extensions["his_db"] = database or Database.from_url(settings.database_url)
    app.extensions["his_card_checker"] = checker_for(settings)

    from his import authn, http, i18n, problems
    from his.api import register_api
    from his.web import bp as web_bp
    from his.web import health_bp
    from his.web.billing_admin import bp as billing_admin_bp
    from his.web.cashier import bp as cashier_bp
    from his.web.claims import bp as claims_bp
    from his.web.doctor import bp as doctor_bp
    from his.web.fhir_clients import bp as fhir_clients_bp
    from his.web.hl7 import bp as hl7_bp
    from his.web.pharmacy import bp as pharmacy_bp
    from his.web.prescribing import bp as prescribing_bp
    from his.web.reception import boards as boards_bp
    from his.web.reception import bp as reception_bp

    http.init_app(app)
    i18n.init_app(app)
    authn.init_app(app)
    problems.register(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(reception_bp)
    app.register_blueprint(boards_bp)
    app.register_blueprint(doctor_bp)
    app.register_blueprint(prescribing_bp)
    app.register_blueprint(pharmacy_bp)
    app.register_blueprint(cashier_bp)
    app.register_blueprint(fhir_clients_bp)
    app.register_blueprint(hl7_bp)
    app.register_blueprint(claims_bp)
    app.register_blueprint(billing_admin_bp)
    register_api(app)
    from his import fhirapi

    fhirapi.init_app(app)
    return app
