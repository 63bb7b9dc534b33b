"""REST endpoints: stock (being built)."""

from __future__ import annotations

from flask_smorest import Blueprint

blp = Blueprint("stock", __name__, description="stock")
