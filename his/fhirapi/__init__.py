"""The FHIR R4 (4.0.1) API at ``/fhir``: a façade over the services, serving the stored
projection (``projection``) of the domain tables."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from his.authn import csrf

    # Route modules add their views to the blueprint when imported.
    from his.fhirapi import (  # noqa: F401
        audit_events,
        bulk,
        capability,
        conformance,
        everything,
        reads,
        search,
        smart,
        transactions,
        writes,
    )
    from his.fhirapi.blueprint import bp

    csrf.exempt(bp)  # bearer tokens only: nothing a cross-site form could ride on
    app.register_blueprint(bp)
