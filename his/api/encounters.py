"""REST endpoints: encounters (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("encounters", __name__, description="encounters")
