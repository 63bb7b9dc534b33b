"""Facilities of the deployment."""

from __future__ import annotations

from flask.views import MethodView
from flask_login import login_required

from his.api.blueprint import Blueprint
from his.api.schemas import FacilitySchema, problem_doc
from his.context import db_session
from his.services.facilities import list_facilities

blp = Blueprint("facilities", __name__, description="Facilities (cơ sở KCB)")


@blp.route("/facilities")
class FacilitiesResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, FacilitySchema(many=True))
    @problem_doc(blp, 401)
    def get(self):
        """Every facility, ordered by code: referral targets and the hierarchy are public
        to staff of the deployment."""
        return list_facilities(db_session())
