"""The FHIR R4 (4.0.1) API at ``/fhir``: a façade over the services, serving the stored
projection (``projection``) of the domain tables."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from his.authn import csrf
    from his.fhirapi import reads  # noqa: F401  (route modules add their views to bp)
    from his.fhirapi.blueprint import bp

    csrf.exempt(bp)  # bearer tokens only: nothing a cross-site form could ride on
    app.register_blueprint(bp)
