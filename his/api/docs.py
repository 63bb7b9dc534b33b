"""A browsable page for the OpenAPI document: Swagger UI served from the installed
``swagger-ui-bundle`` package, so it works offline and under a CSP without CDNs."""

from __future__ import annotations

from flask import Blueprint, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("api_docs", __name__)


@bp.get("/api/docs")
def page():
    return render_template("api_docs.html")


@bp.get("/api/docs/assets/<path:filename>")
def asset(filename: str):
    return send_from_directory(str(swagger_ui_path), filename, max_age=86400)
