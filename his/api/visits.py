"""Visits at the user's own facility."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from flask_smorest import Blueprint
from marshmallow import fields

from his.api.pagination import SelectPage
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.services.visits import get_visit, list_visits

blp = Blueprint("visits", __name__, description="Visits at your facility")


class VisitSchema(ma.Schema):
    id = fields.Integer()
    facility_id = fields.Integer()
    patient_id = fields.Integer()
    department_id = fields.Integer(allow_none=True)
    status = fields.String(metadata={"enum": ["open", "closed", "cancelled"]})
    opened_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


@blp.route("/visits")
class VisitsResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, VisitSchema(many=True))
    @blp.paginate(SelectPage)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self):
        """Visits at your facility, newest first."""
        return list_visits(db_session(), principal())


@blp.route("/visits/<int:visit_id>")
class VisitResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, VisitSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    def get(self, visit_id: int):
        """One visit of your facility; another facility's visit is reported missing."""
        return get_visit(db_session(), principal(), visit_id)
