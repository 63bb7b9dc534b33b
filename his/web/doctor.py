"""The doctor's screens: worklist and encounter form (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("doctor", __name__, url_prefix="/doctor")
