"""REST endpoints: catalogs (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("catalogs", __name__, description="catalogs")
