"""The pharmacist's screens: prescriptions to dispense, stock (being built)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("pharmacy", __name__, url_prefix="/pharmacy")
