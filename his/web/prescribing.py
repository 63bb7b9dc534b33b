"""The doctor's prescription builder and the printable prescription (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("prescribing", __name__, url_prefix="/doctor/prescriptions")
