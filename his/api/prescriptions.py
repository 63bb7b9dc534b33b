"""Prescriptions: drafts inside an encounter, the rules' verdict, signing and replacing."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import marshmallow as ma
from flask.views import MethodView
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.models import PrescriptionStatus, PrescriptionType, TreatmentCourse
from his.services import prescriptions as service

blp = Blueprint(
    "prescriptions",
    __name__,
    description="Prescriptions: drafts, prescribing rules, signing with the national code",
)

STR = {"allow_none": True, "load_default": None}


class PlainDecimal(fields.Field):
    """A decimal as a string without trailing zeros: "15", "7.5", whatever the database."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {"type": "string", "example": "7.5"})
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        text = f"{Decimal(value):f}"
        return text.rstrip("0").rstrip(".") if "." in text else text


def _decimals(places: int):
    """A number stored with ``places`` decimals: more is refused with a message that says
    so, instead of being rounded (0.0001 would become 0)."""
    smallest = Decimal(1).scaleb(-places)

    def check(value: Decimal) -> None:
        # normalize(): 1.500 has three decimals written but only one that counts.
        if value.normalize().as_tuple().exponent < -places:
            raise ma.ValidationError(
                str(
                    _l(
                        "At most %(places)s decimals: the smallest value is %(smallest)s.",
                        places=places,
                        smallest=f"{smallest:f}",
                    )
                )
            )

    return check


class RxItemInSchema(ma.Schema):
    drug_code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "The facility's drug code"},
    )
    dose = fields.Decimal(
        required=True,
        validate=[_decimals(3), validate.Range(min=0, min_inclusive=False, max=10000)],
        metadata={"description": "Units per take, at most 3 decimals"},
    )
    times_per_day = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=24)
    )
    days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=366))
    route = fields.String(validate=validate.Length(max=50), **STR)
    instructions = fields.String(validate=validate.Length(max=500), **STR)
    quantity = fields.Decimal(
        validate=[_decimals(3), validate.Range(min=0, min_inclusive=False, max=1000000)],
        metadata={"description": "Default: dose × times_per_day × days, rounded up"},
        **STR,
    )
    quantity_reason = fields.String(
        validate=validate.Length(max=300),
        metadata={"description": "Required when quantity differs from the computed one"},
        **STR,
    )


class PrescriptionInSchema(ma.Schema):
    items = fields.List(
        fields.Nested(RxItemInSchema), required=True, validate=validate.Length(min=1, max=30)
    )
    course = fields.Enum(TreatmentCourse, by_value=True, load_default=TreatmentCourse.ACUTE)
    weight_kg = fields.Decimal(
        validate=[_decimals(2), validate.Range(min=0, min_inclusive=False, max=500)],
        allow_none=True,
    )
    age_months = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=1800), allow_none=True
    )
    guardian_name = fields.String(validate=validate.Length(max=200), allow_none=True)
    guardian_id_number = fields.String(validate=validate.Length(max=20), allow_none=True)
    advice = fields.String(validate=validate.Length(max=2000), allow_none=True)
    follow_up_date = fields.Date(allow_none=True)


class PrescriptionPatchSchema(PrescriptionInSchema):
    items = fields.List(fields.Nested(RxItemInSchema), validate=validate.Length(min=1, max=30))
    course = fields.Enum(TreatmentCourse, by_value=True)


class RxReplaceSchema(PrescriptionInSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class RxViolationSchema(ma.Schema):
    rule = fields.String(metadata={"description": "Stable code, e.g. days-over-limit"})
    field = fields.String(metadata={"description": "e.g. items.0.days"})
    message = fields.String()


class RxItemSchema(ma.Schema):
    id = fields.Integer()
    position = fields.Integer()
    drug_code = fields.String()
    drug_name = fields.String(metadata={"description": "By active ingredient: INN (brand)"})
    rx_class = fields.String(attribute="drug.rx_class", metadata={"enum": ["N", "H", "C", "OTC"]})
    unit = fields.String(attribute="drug.unit")
    dose = PlainDecimal()
    times_per_day = fields.Integer()
    days = fields.Integer()
    route = fields.String()
    instructions = fields.String(allow_none=True)
    computed_quantity = PlainDecimal()
    quantity = PlainDecimal()
    quantity_reason = fields.String(allow_none=True)


class PrescriptionSchema(ma.Schema):
    id = fields.Integer()
    encounter_id = fields.Integer()
    patient_id = fields.Integer()
    prescriber_id = fields.Integer()
    rx_type = fields.Enum(PrescriptionType, by_value=True)
    course = fields.Enum(TreatmentCourse, by_value=True)
    status = fields.Enum(PrescriptionStatus, by_value=True)
    code = fields.String(
        allow_none=True, metadata={"description": "National code xxxxxyyyyyyy-z, once signed"}
    )
    replaces_id = fields.Integer(allow_none=True)
    replacement_reason = fields.String(allow_none=True)
    age_months = fields.Integer(allow_none=True)
    weight_kg = PlainDecimal(allow_none=True)
    guardian_name = fields.String(allow_none=True)
    guardian_id_number = fields.String(allow_none=True)
    advice = fields.String(allow_none=True)
    follow_up_date = fields.Date(allow_none=True)
    created_at = fields.DateTime()
    signed_at = fields.DateTime(allow_none=True)
    signed_by_id = fields.Integer(allow_none=True)
    valid_until = fields.Date(allow_none=True)
    content_hash = fields.String(allow_none=True)
    items = fields.List(fields.Nested(RxItemSchema))
    violations = fields.Method(
        "_violations",
        metadata={"description": "Broken prescribing rules; a draft with any cannot be signed"},
    )

    def _violations(self, obj):
        return [v.as_dict() for v in getattr(obj, "violations", None) or []]


class RxCheckItemSchema(ma.Schema):
    drug_name = fields.String()
    unit = fields.String()
    computed_quantity = PlainDecimal()
    quantity = PlainDecimal()


class RxCheckSchema(ma.Schema):
    violations = fields.List(fields.Nested(RxViolationSchema))
    items = fields.List(fields.Nested(RxCheckItemSchema))


def _input(body: dict) -> service.PrescriptionInput:
    items = [service.ItemInput(**item) for item in body.get("items", [])]
    fields_ = {k: v for k, v in body.items() if k not in ("items", "reason")}
    return service.PrescriptionInput(items=items, **fields_)


@blp.route("/encounters/<int:encounter_id>/prescriptions")
class EncounterPrescriptions(MethodView):
    decorators = (login_required,)

    @blp.response(200, PrescriptionSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such encounter at your facility")
    def get(self, encounter_id: int):
        """The prescriptions of an encounter, oldest first."""
        return service.list_for_encounter(db_session(), principal(), encounter_id)

    @blp.arguments(PrescriptionInSchema)
    @blp.response(201, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only doctors prescribe")
    @problem_doc(blp, 404, "No such encounter at your facility")
    @problem_doc(blp, 409, "The encounter is finished")
    @problem_doc(blp, 422, "Invalid items, or a drug not in the facility catalog")
    def post(self, body, encounter_id: int):
        """Create a draft: quantities computed, the rules' `violations` listed. Age in months,
        weight and guardian not sent are taken from the patient's record."""
        return service.create_draft(db_session(), principal(), encounter_id, _input(body))


@blp.route("/encounters/<int:encounter_id>/prescriptions/check")
class EncounterPrescriptionCheck(MethodView):
    decorators = (login_required,)

    @blp.arguments(PrescriptionInSchema)
    @blp.response(200, RxCheckSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such encounter at your facility")
    def post(self, body, encounter_id: int):
        """A dry run: the violations and computed quantities, nothing saved."""
        violations, items = service.validate(db_session(), principal(), encounter_id, _input(body))
        return {"violations": [v.as_dict() for v in violations], "items": items}


@blp.route("/prescriptions/<int:prescription_id>")
class PrescriptionResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such prescription at your facility")
    def get(self, prescription_id: int):
        """One prescription; a draft comes with the rules' current `violations`."""
        return service.get_prescription(db_session(), principal(), prescription_id)

    @blp.arguments(PrescriptionPatchSchema)
    @blp.response(200, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such prescription at your facility")
    @problem_doc(blp, 409, "Not a draft: a signed prescription never changes")
    @problem_doc(blp, 422)
    def patch(self, body, prescription_id: int):
        """Change a draft; `items`, when sent, replace all items."""
        session, who = db_session(), principal()
        current = service.draft_input(session, who, prescription_id)
        changes = {k: v for k, v in body.items() if k != "items"}
        if "items" in body:
            changes["items"] = [service.ItemInput(**item) for item in body["items"]]
        data = dataclasses.replace(current, **changes)
        return service.update_draft(session, who, prescription_id, data)


@blp.route("/prescriptions/<int:prescription_id>/sign")
class PrescriptionSign(MethodView):
    decorators = (login_required,)

    @blp.response(200, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only doctors sign")
    @problem_doc(blp, 404, "No such prescription at your facility")
    @problem_doc(blp, 409, "Not a draft")
    @problem_doc(blp, 422, "Prescribing rules broken: `violations` lists each")
    def post(self, prescription_id: int):
        """Sign: gives the national `code`, fixes the content, queues the e-prescription."""
        return service.sign(db_session(), principal(), prescription_id)


@blp.route("/prescriptions/<int:prescription_id>/replace")
class PrescriptionReplace(MethodView):
    decorators = (login_required,)

    @blp.arguments(RxReplaceSchema)
    @blp.response(201, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such prescription at your facility")
    @problem_doc(blp, 409, "Not signed, or already dispensed")
    @problem_doc(blp, 422, "Prescribing rules broken")
    def post(self, body, prescription_id: int):
        """Issue and sign a new prescription (new code) in place of a signed one, which is
        kept, marked `replaced`."""
        return service.replace(
            db_session(), principal(), prescription_id, body["reason"], _input(body)
        )


@blp.route("/prescriptions/<int:prescription_id>/cancel")
class PrescriptionCancel(MethodView):
    decorators = (login_required,)

    @blp.response(200, PrescriptionSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such prescription at your facility")
    @problem_doc(blp, 409, "Not a draft")
    def post(self, prescription_id: int):
        """Cancel a draft (kept, never deleted)."""
        return service.cancel_draft(db_session(), principal(), prescription_id)
