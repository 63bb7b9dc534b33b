"""Patients of the province-wide index."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from marshmallow import fields

from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.services.patients import get_patient

blp = Blueprint("patients", __name__, description="The shared patient index")


class IdentifierSchema(ma.Schema):
    type = fields.String(metadata={"enum": ["cccd", "cmnd", "passport", "bhyt", "mrn", "external"]})
    system = fields.String()
    value = fields.String()


class PatientSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    full_name = fields.String()
    family_name = fields.String(allow_none=True)
    middle_name = fields.String(allow_none=True)
    given_name = fields.String(allow_none=True)
    sex = fields.String(metadata={"enum": ["male", "female", "undetermined"]})
    birth_date = fields.String(
        attribute="birth_date_text",
        metadata={"description": "dd/mm/yyyy, mm/yyyy or yyyy when only part is known"},
    )
    birth_year = fields.Integer()
    birth_month = fields.Integer(allow_none=True)
    birth_day = fields.Integer(allow_none=True)
    phone = fields.String(allow_none=True)
    identifiers = fields.List(fields.Nested(IdentifierSchema))


@blp.route("/patients/<int:patient_id>")
class PatientResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, PatientSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    def get(self, patient_id: int):
        """One patient. The read is written to the audit trail."""
        return get_patient(db_session(), principal(), patient_id)
