"""REST endpoints: prescriptions (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("prescriptions", __name__, description="prescriptions")
