"""Examinations: the room worklist, encounters, vital signs, diagnoses, orders and results."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.etags import ETAG_HEADER, if_match, with_etag
from his.api.patients import PARTIAL_DATE
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.models import Disposition, PriorityReason, Sex, VisitStatus
from his.services import encounters as service

blp = Blueprint(
    "encounters", __name__, description="Worklists, encounters, diagnoses, orders and results"
)

STR = {"allow_none": True}
ETAG = ETAG_HEADER


class RoomArgsSchema(ma.Schema):
    room_id = fields.Integer(required=True)


class WorklistEntrySchema(ma.Schema):
    visit_id = fields.Integer(attribute="id")
    visit_code = fields.String()
    patient_id = fields.Integer()
    patient_name = fields.String(attribute="patient.full_name")
    sex = fields.Function(
        lambda v: v.patient.sex.value,
        metadata={"type": "string", "enum": [s.value for s in Sex]},
    )
    birth_date = fields.Function(lambda v: v.patient.birth.iso(), metadata=PARTIAL_DATE)
    queue_number = fields.Integer()
    priority_reason = fields.Enum(PriorityReason, by_value=True, allow_none=True)
    status = fields.String(metadata={"enum": [s.value for s in VisitStatus]})
    called_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)


class WorklistSchema(ma.Schema):
    room_id = fields.Integer(attribute="room.id")
    room_name = fields.String(attribute="room.name")
    day = fields.Date()
    waiting = fields.List(
        fields.Nested(WorklistEntrySchema),
        metadata={"description": "Not yet called, in call order: priority first, then number"},
    )
    called = fields.List(fields.Nested(WorklistEntrySchema))
    in_examination = fields.Function(
        lambda w: [
            {
                **WorklistEntrySchema().dump(v),
                "encounter_id": w.encounters[v.id].id if v.id in w.encounters else None,
            }
            for v in w.in_examination
        ],
        metadata={"description": "With the id of the encounter open in this room"},
    )


class StartSchema(ma.Schema):
    room_id = fields.Integer(
        load_default=None,
        allow_none=True,
        metadata={"description": "Defaults to the room the visit is queued in"},
    )


class VitalsInSchema(ma.Schema):
    pulse = fields.Raw(**STR, metadata={"description": "/min, 20–250", "type": "integer"})
    systolic = fields.Raw(**STR, metadata={"description": "mmHg, 50–280", "type": "integer"})
    diastolic = fields.Raw(
        **STR, metadata={"description": "mmHg, 20–180, below systolic", "type": "integer"}
    )
    temperature = fields.Raw(**STR, metadata={"description": "°C, 30–45", "type": "number"})
    respiratory_rate = fields.Raw(**STR, metadata={"description": "/min, 4–80", "type": "integer"})
    spo2 = fields.Raw(**STR, metadata={"description": "%, 50–100", "type": "integer"})
    weight = fields.Raw(**STR, metadata={"description": "kg, 0.3–350", "type": "number"})
    height = fields.Raw(**STR, metadata={"description": "cm, 20–250", "type": "number"})


class VitalsSchema(ma.Schema):
    id = fields.Integer()
    recorded_at = fields.DateTime()
    recorded_by_id = fields.Integer(allow_none=True)
    pulse = fields.Integer(allow_none=True)
    systolic = fields.Integer(allow_none=True)
    diastolic = fields.Integer(allow_none=True)
    temperature = fields.Float(allow_none=True)
    respiratory_rate = fields.Integer(allow_none=True)
    spo2 = fields.Integer(allow_none=True)
    weight = fields.Float(allow_none=True)
    height = fields.Float(allow_none=True)
    bmi = fields.Float(allow_none=True, metadata={"description": "kg/m², from weight and height"})


AMENDMENT_REASON = (
    "Only on a finished (signed) encounter, where it is required: the change is recorded "
    "as an amendment (`amendments`) that keeps the diagnoses before and after"
)


class DiagnosisInSchema(ma.Schema):
    icd10 = fields.String(required=True, metadata={"description": "With or without the dot"})
    main = fields.Boolean(
        load_default=False,
        metadata={"description": "A new main diagnosis makes the old one secondary"},
    )
    note = fields.String(validate=validate.Length(max=500), **STR)
    replaces = fields.Integer(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "Id of a diagnosis this code corrects: the new code takes its "
            "place and main role; the old one is marked removed (its row is kept)"
        },
    )
    amendment_reason = fields.String(
        validate=validate.Length(max=500), metadata={"description": AMENDMENT_REASON}, **STR
    )


class DiagnosisRemoveArgsSchema(ma.Schema):
    amendment_reason = fields.String(
        load_default=None,
        validate=validate.Length(max=500),
        metadata={"description": AMENDMENT_REASON},
    )


class DiagnosisSchema(ma.Schema):
    id = fields.Integer()
    icd10 = fields.String(attribute="icd10_code")
    title = fields.String(metadata={"description": "As coded"})
    icd10_version_id = fields.Integer()
    main = fields.Boolean(attribute="is_main")
    position = fields.Integer()
    note = fields.String(allow_none=True)
    removed_at = fields.DateTime(allow_none=True)
    removed_by_id = fields.Integer(allow_none=True)


class OrderInSchema(ma.Schema):
    service_code = fields.String(required=True)
    quantity = fields.Integer(load_default=1, strict=True)
    note = fields.String(validate=validate.Length(max=500), **STR)


class ResultInSchema(ma.Schema):
    value = fields.String(required=True, validate=validate.Length(max=500))
    unit = fields.String(
        validate=validate.Length(max=30),
        metadata={"description": "Defaults to the service's result unit"},
        **STR,
    )
    reference_range = fields.String(
        validate=validate.Length(max=100),
        metadata={"description": "Defaults to the service's reference range"},
        **STR,
    )
    conclusion = fields.String(**STR)
    amendment_reason = fields.String(
        validate=validate.Length(max=500),
        metadata={
            "description": "For a result on a finished (signed) encounter, which is stored "
            "and recorded as an amendment by the sender; defaults to "
            '"Result received after signing."'
        },
        **STR,
    )


class ResultSchema(ma.Schema):
    id = fields.Integer()
    order_id = fields.Integer()
    value = fields.String()
    unit = fields.String(allow_none=True)
    reference_range = fields.String(allow_none=True)
    conclusion = fields.String(allow_none=True)
    resulted_by_id = fields.Integer()
    resulted_at = fields.DateTime()
    supersedes_id = fields.Integer(
        allow_none=True, metadata={"description": "The earlier result this one corrects"}
    )


class OrderSchema(ma.Schema):
    id = fields.Integer()
    encounter_id = fields.Integer()
    service_code = fields.String()
    service_name = fields.String(attribute="service.name")
    kind = fields.Function(lambda o: o.service.kind.value, metadata={"type": "string"})
    quantity = fields.Integer()
    note = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["ordered", "resulted", "cancelled"]})
    ordered_by_id = fields.Integer()
    ordered_at = fields.DateTime()
    results = fields.List(fields.Nested(ResultSchema), metadata={"description": "Oldest first"})


class AmendmentSchema(ma.Schema):
    id = fields.Integer()
    amended_by_id = fields.Integer()
    amended_at = fields.DateTime()
    reason = fields.String()
    changes = fields.Dict(
        metadata={
            "description": "field → {old, new}; `diagnoses` holds the lists before and after "
            "(id, icd10, main), `result` the result replaced (or null) and the new one"
        }
    )
    content_hash = fields.String()


class EncounterPatchSchema(ma.Schema):
    reason = fields.String(**STR)
    history = fields.String(**STR)
    findings = fields.String(**STR)
    conclusion = fields.String(**STR)
    advice = fields.String(**STR)
    amendment_reason = fields.String(
        validate=validate.Length(max=500),
        metadata={"description": "Required to change a finished (signed) encounter"},
        **STR,
    )


class FinishSchema(ma.Schema):
    disposition = fields.String(required=True, metadata={"enum": [d.value for d in Disposition]})
    follow_up_date = fields.Date(**STR, metadata={"description": "Required for follow_up"})
    refer_to_facility_code = fields.String(
        **STR, metadata={"description": "5 characters; required for refer_out"}
    )
    refer_reason = fields.String(**STR, metadata={"description": "Required for refer_out"})
    referral_letter_number = fields.String(**STR)
    died_at = fields.DateTime(
        **STR, metadata={"description": "Required for died; without an offset, Vietnam time"}
    )
    conclusion = fields.String(**STR)
    advice = fields.String(**STR)
    amendment_reason = fields.String(
        validate=validate.Length(max=500),
        metadata={
            "description": "On a finished encounter, amends the disposition (and conclusion, "
            "advice) instead of signing; by the signing doctor only"
        },
        **STR,
    )


class EncounterSchema(ma.Schema):
    id = fields.Integer()
    visit_id = fields.Integer()
    visit_code = fields.String(attribute="visit.visit_code")
    patient_id = fields.Integer()
    facility_id = fields.Integer()
    room_id = fields.Integer(allow_none=True)
    doctor_id = fields.Integer()
    status = fields.String(metadata={"enum": ["in_progress", "finished"]})
    reason = fields.String(allow_none=True)
    history = fields.String(allow_none=True)
    findings = fields.String(allow_none=True)
    conclusion = fields.String(allow_none=True)
    advice = fields.String(allow_none=True)
    disposition = fields.Enum(Disposition, by_value=True, allow_none=True)
    follow_up_date = fields.Date(allow_none=True)
    refer_to_facility_code = fields.String(allow_none=True)
    refer_reason = fields.String(allow_none=True)
    referral_letter_number = fields.String(allow_none=True)
    died_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    signed_by_id = fields.Integer(allow_none=True)
    content_hash = fields.String(
        allow_none=True, metadata={"description": "SHA-256 of the signed (or amended) content"}
    )
    vitals = fields.List(fields.Nested(VitalsSchema))
    diagnoses = fields.List(fields.Nested(DiagnosisSchema), metadata={"description": "Main first"})
    removed_diagnoses = fields.Function(
        lambda e: DiagnosisSchema(many=True).dump([d for d in e.diagnosis_history if d.removed_at]),
        metadata={"description": "Diagnoses removed (kept for the record), oldest first"},
    )
    orders = fields.List(fields.Nested(OrderSchema))
    amendments = fields.List(fields.Nested(AmendmentSchema))
    version = fields.Integer(metadata={"description": "Also the ETag; send it in If-Match"})


@blp.route("/worklist")
class WorklistResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(RoomArgsSchema, location="query")
    @blp.response(200, WorklistSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors and nurses only")
    @problem_doc(blp, 404, "No such room at your facility")
    def get(self, args):
        """Today's patients of a room: waiting in call order, called, in examination."""
        return service.worklist(db_session(), principal(), args["room_id"])


@blp.route("/worklist/call-next")
class CallNextResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(RoomArgsSchema, location="query")
    @blp.response(200, WorklistEntrySchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors and nurses only")
    @problem_doc(blp, 404, "No such room, or nobody left to call")
    def post(self, args):
        """Call the next patient of the room (priority first); the queue board shows it."""
        return service.call_next(db_session(), principal(), args["room_id"])


@blp.route("/visits/<int:visit_id>/encounters")
class VisitEncountersResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, EncounterSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    def get(self, visit_id: int):
        """The encounters of a visit."""
        return service.encounters_of_visit(db_session(), principal(), visit_id)

    @blp.arguments(StartSchema)
    @blp.response(201, EncounterSchema, headers=ETAG)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only")
    @problem_doc(blp, 404, "No such visit at your facility")
    @problem_doc(blp, 409, "The visit is finished or cancelled, or already examined in the room")
    def post(self, body, visit_id: int):
        """Start the examination: opens an encounter and marks the visit in examination."""
        encounter = service.start_examination(
            db_session(), principal(), visit_id, room_id=body.get("room_id")
        )
        return with_etag(encounter, 201)


@blp.route("/encounters/<int:encounter_id>")
class EncounterResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, EncounterSchema, headers=ETAG)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Receptionists and cashiers cannot read clinical notes")
    @problem_doc(blp, 404)
    def get(self, encounter_id: int):
        """One encounter with its vitals, diagnoses, orders, results and amendments."""
        return with_etag(service.get_encounter(db_session(), principal(), encounter_id))

    @blp.arguments(EncounterPatchSchema)
    @blp.response(200, EncounterSchema, headers=ETAG)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "Signed: send amendment_reason to amend")
    @problem_doc(blp, 412, "Someone changed the encounter since the ETag given in If-Match")
    def patch(self, body, encounter_id: int):
        """Write the fields given. A finished encounter changes only by an amendment
        (`amendment_reason`), by the doctor who signed it; the original stays in
        `amendments`."""
        reason = body.pop("amendment_reason", None)
        encounter = service.update_encounter(
            db_session(),
            principal(),
            encounter_id,
            body,
            expected_version=if_match(),
            amendment_reason=reason,
        )
        return with_etag(encounter)


@blp.route("/encounters/<int:encounter_id>/vitals")
class VitalsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(VitalsInSchema)
    @blp.response(201, VitalsSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors and nurses only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "The encounter is signed")
    @problem_doc(blp, 422, "A value outside its plausible range (the message names it)")
    def post(self, body, encounter_id: int):
        """Record vital signs; BMI is derived from weight and height."""
        return service.record_vitals(db_session(), principal(), encounter_id, body)


@blp.route("/encounters/<int:encounter_id>/diagnoses")
class DiagnosesResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(DiagnosisInSchema)
    @blp.response(201, DiagnosisSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "Signed without amendment_reason, or the code is already there")
    @problem_doc(blp, 422, "Unknown code, or one the ICD-10 list forbids here")
    def post(self, body, encounter_id: int):
        """Add an ICD-10 diagnosis, checked against the list in force on the encounter's
        day. On a finished encounter this is an amendment: `amendment_reason` is required,
        only the signing doctor may make it, and the code is checked against the list in
        force on the day the encounter finished. `replaces` corrects a coded diagnosis."""
        return service.add_diagnosis(
            db_session(),
            principal(),
            encounter_id,
            body["icd10"],
            body["main"],
            note=body.get("note"),
            replaces=body.get("replaces"),
            amendment_reason=body.get("amendment_reason"),
        )


@blp.route("/encounters/<int:encounter_id>/diagnoses/<int:diagnosis_id>")
class DiagnosisResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(DiagnosisRemoveArgsSchema, location="query")
    @blp.response(204)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only; on a signed encounter, its signing doctor only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "Signed without amendment_reason, or the main diagnosis of a signed one")
    def delete(self, args, encounter_id: int, diagnosis_id: int):
        """Remove a diagnosis. Its row is kept, marked removed (`removed_diagnoses`). On a
        finished encounter this is an amendment: pass `amendment_reason` in the query;
        the main diagnosis is not removed then, but replaced (POST with `replaces`)."""
        service.remove_diagnosis(
            db_session(),
            principal(),
            encounter_id,
            diagnosis_id,
            amendment_reason=args.get("amendment_reason"),
        )


@blp.route("/encounters/<int:encounter_id>/orders")
class OrdersResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(OrderInSchema)
    @blp.response(201, OrderSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "The encounter is signed")
    @problem_doc(blp, 422, "No such service in the facility's catalog")
    def post(self, body, encounter_id: int):
        """Order a service of the facility's catalog (lab test, imaging, procedure)."""
        return service.add_order(
            db_session(),
            principal(),
            encounter_id,
            body["service_code"],
            quantity=body["quantity"],
            note=body.get("note"),
        )


@blp.route("/encounters/<int:encounter_id>/orders/<int:order_id>/cancel")
class CancelOrderResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, OrderSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "Signed, or the order already has a result")
    def post(self, encounter_id: int, order_id: int):
        """Cancel an order that has no result yet."""
        return service.cancel_order(db_session(), principal(), encounter_id, order_id)


@blp.route("/orders/<int:order_id>/result")
class ResultResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(ResultInSchema)
    @blp.response(201, ResultSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors, nurses and integration clients (lab systems) only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "The order is cancelled")
    def post(self, body, order_id: int):
        """Enter a result; a second result corrects the first (`supersedes_id`). A result
        for a finished (signed) encounter is accepted and recorded as an amendment by the
        sender (`amendment_reason`, by default "Result received after signing."); the
        doctor's signature stays as it was."""
        return service.enter_result(db_session(), principal(), order_id, **body)


@blp.route("/encounters/<int:encounter_id>/finish")
class FinishResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(FinishSchema)
    @blp.response(200, EncounterSchema, headers=ETAG)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Doctors only")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409, "Already signed (send amendment_reason to amend the disposition)")
    @problem_doc(blp, 412, "Someone changed the encounter since the ETag given in If-Match")
    @problem_doc(blp, 422, "No main diagnosis, a missing disposition field, or a code not valid")
    def post(self, body, encounter_id: int):
        """Finish and sign as the acting doctor; the encounter is locked from then on.
        Diagnoses are checked against the ICD-10 list in force on the finish date. On a
        finished encounter, `amendment_reason` amends the disposition fields instead (by
        the signing doctor; a follow-up date must come after the finish date)."""
        reason = body.pop("amendment_reason", None)
        encounter = service.finish(
            db_session(),
            principal(),
            encounter_id,
            service.Finish(**body),
            expected_version=if_match(),
            amendment_reason=reason,
        )
        return with_etag(encounter)
