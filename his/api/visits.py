"""Visits, rooms and queues at the user's own facility."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.openapi import link
from his.api.pagination import SelectPage
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.models import Payment, PriorityReason, VisitStatus, VisitType
from his.services import visits as service

blp = Blueprint("visits", __name__, description="Visits, rooms and queues at your facility")


class ReferralSchema(ma.Schema):
    from_facility_code = fields.String(
        required=True, metadata={"description": "5-character code of the referring facility"}
    )
    letter_number = fields.String(required=True, validate=validate.Length(min=1, max=50))
    date = fields.Date(required=True)
    diagnosis = fields.String(validate=validate.Length(max=300), allow_none=True)


class VisitCreateSchema(ma.Schema):
    patient_id = fields.Integer(required=True)
    room_id = fields.Integer(required=True)
    visit_type = fields.Enum(VisitType, by_value=True, load_default=VisitType.OUTPATIENT)
    payment = fields.Enum(Payment, by_value=True, load_default=Payment.FEE)
    referral = fields.Nested(ReferralSchema, allow_none=True, load_default=None)
    priority_reason = fields.Enum(PriorityReason, by_value=True, allow_none=True, load_default=None)


class VisitSchema(ma.Schema):
    id = fields.Integer()
    visit_code = fields.String(metadata={"description": "Immutable; MA_LK in the claim files"})
    facility_id = fields.Integer()
    patient_id = fields.Integer()
    department_id = fields.Integer(allow_none=True)
    room_id = fields.Integer(allow_none=True)
    visit_type = fields.Enum(VisitType, by_value=True)
    payment = fields.Enum(Payment, by_value=True)
    referral = fields.Function(
        lambda v: (
            None
            if not v.is_referred
            else {
                "from_facility_code": v.referral_from_facility_code,
                "letter_number": v.referral_letter_number,
                "date": v.referral_date.isoformat() if v.referral_date else None,
                "diagnosis": v.referral_diagnosis,
            }
        ),
        metadata={"type": "object", "nullable": True},
    )
    priority_reason = fields.Enum(PriorityReason, by_value=True, allow_none=True)
    queue_date = fields.Date(allow_none=True)
    queue_number = fields.Integer(allow_none=True)
    status = fields.String(
        metadata={"enum": ["waiting", "in_examination", "finished", "cancelled"]}
    )
    opened_at = fields.DateTime()
    called_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


class RoomSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    department_id = fields.Integer()
    department_code = fields.String(attribute="department.code")
    department_name = fields.String(attribute="department.name")


class QueueEntrySchema(ma.Schema):
    visit_id = fields.Integer(attribute="id")
    visit_code = fields.String()
    queue_number = fields.Integer()
    priority_reason = fields.Enum(PriorityReason, by_value=True, allow_none=True)
    patient_name = fields.String(attribute="patient.full_name")
    status = fields.String(metadata={"enum": [s.value for s in VisitStatus]})
    called_at = fields.DateTime(allow_none=True)


class QueueSchema(ma.Schema):
    room = fields.Nested(RoomSchema)
    day = fields.Date()
    waiting = fields.List(
        fields.Nested(QueueEntrySchema), metadata={"description": "In call order"}
    )
    called = fields.List(fields.Nested(QueueEntrySchema))
    in_examination = fields.List(fields.Nested(QueueEntrySchema))


VISIT = "/api/v1/visits/{visit_id}"
CREATED_VISIT_LINKS = {
    "GetVisit": link(VISIT, "get", visit_id="$response.body#/id"),
    "GetQueue": link("/api/v1/queues/{room_id}", "get", room_id="$response.body#/room_id"),
    "StartEncounter": link(VISIT + "/encounters", "post", visit_id="$response.body#/id"),
    "GetBill": link(VISIT + "/bill", "get", visit_id="$response.body#/id"),
}


@blp.route("/visits")
class VisitsResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, VisitSchema(many=True))
    @blp.paginate(SelectPage)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self):
        """Visits at your facility, newest first."""
        return service.list_visits(db_session(), principal())

    @blp.arguments(VisitCreateSchema)
    @blp.response(201, VisitSchema)
    @blp.doc(responses={201: {"links": CREATED_VISIT_LINKS}})
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 409, "Merged patient, or already waiting in this room today")
    def post(self, body):
        """Open a visit: answers with its `visit_code` and the room's `queue_number`."""
        referral = body.pop("referral")
        request = service.VisitRequest(
            referral=service.Referral(**referral) if referral else None, **body
        )
        return service.open_visit(db_session(), principal(), request)


@blp.route("/visits/<int:visit_id>")
class VisitResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, VisitSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    def get(self, visit_id: int):
        """One visit of your facility; another facility's visit is reported missing."""
        return service.get_visit(db_session(), principal(), visit_id)


@blp.route("/rooms")
class RoomsResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, RoomSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self):
        """The rooms of your facility."""
        return service.rooms_of_facility(db_session(), principal())


@blp.route("/queues/<int:room_id>")
class QueueResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, QueueSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such room at your facility")
    def get(self, room_id: int):
        """Today's queue of a room: waiting (in call order), called, in examination."""
        return service.room_queue(db_session(), principal(), room_id)
