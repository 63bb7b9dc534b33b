"""Drug stock and dispensing at the user's own facility: receipts, lots, the pharmacy's
queue, the first-expiry-first-out plan, dispenses and returns."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.models import DispenseKind, PrescriptionStatus, PrescriptionType
from his.services import stock as service

blp = Blueprint(
    "stock", __name__, description="Drug stock and dispensing at your facility (pharmacists)"
)


class Quantity(fields.Decimal):
    """A count of units: read with up to three decimals, written as a JSON number."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.setdefault("type", "number")

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        amount = service.quantity(value)
        return int(amount) if amount == amount.to_integral_value() else float(amount)


# --- receipts ---------------------------------------------------------------------------------


class StockReceiptLineSchema(ma.Schema):
    drug_code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Code of the drug in your facility's catalog"},
    )
    lot_number = fields.String(required=True, validate=validate.Length(min=1, max=50))
    expiry_date = fields.Date(required=True, metadata={"description": "Not already past"})
    quantity = Quantity(
        required=True, metadata={"description": "More than zero, in the drug's unit"}
    )
    unit_cost = fields.Integer(
        required=True, validate=validate.Range(min=0), metadata={"description": "VND per unit"}
    )


class StockReceiptCreateSchema(ma.Schema):
    supplier = fields.String(validate=validate.Length(max=200), load_default=None)
    invoice_number = fields.String(validate=validate.Length(max=50), load_default=None)
    note = fields.String(validate=validate.Length(max=500), load_default=None)
    lines = fields.List(
        fields.Nested(StockReceiptLineSchema),
        required=True,
        validate=validate.Length(min=1, max=service.MAX_RECEIPT_LINES),
    )


class StockReceivedLotSchema(ma.Schema):
    lot_id = fields.Integer(attribute="lot.id")
    drug_code = fields.String(attribute="lot.drug_code")
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    received = Quantity(attribute="quantity", metadata={"description": "Units this line added"})
    quantity = Quantity(attribute="lot.quantity", metadata={"description": "The lot now holds"})
    unit_cost = fields.Integer(attribute="lot.unit_cost")
    created = fields.Boolean(metadata={"description": "False when an existing lot was topped up"})


class StockReceiptSchema(ma.Schema):
    id = fields.Integer(attribute="receipt.id")
    supplier = fields.String(attribute="receipt.supplier", allow_none=True)
    invoice_number = fields.String(attribute="receipt.invoice_number", allow_none=True)
    note = fields.String(attribute="receipt.note", allow_none=True)
    received_by_id = fields.Integer(attribute="receipt.received_by_id", allow_none=True)
    received_at = fields.DateTime(attribute="receipt.received_at")
    lots = fields.List(fields.Nested(StockReceivedLotSchema), attribute="lines")


@blp.route("/stock/receipts")
class ReceiptsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(StockReceiptCreateSchema)
    @blp.response(201, StockReceiptSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only pharmacists and administrators receive stock")
    @problem_doc(blp, 422, "Unknown drug code, an expired lot, a quantity not above zero, …")
    def post(self, body):
        """Receive a delivery: each line makes a lot or tops up the same lot already held."""
        lines = [service.ReceiptLine(**line) for line in body.pop("lines")]
        return service.receive_stock(
            db_session(), principal(), service.ReceiptRequest(lines=lines, **body)
        )


# --- stock list -------------------------------------------------------------------------------


class StockQuerySchema(ma.Schema):
    expiring_within_days = fields.Integer(
        load_default=service.EXPIRY_WARNING_DAYS,
        validate=validate.Range(min=0, max=3650),
        metadata={"description": "Lots expiring within this many days are flagged"},
    )
    drug_code = fields.String(load_default=None)


class StockLotSchema(ma.Schema):
    id = fields.Integer(attribute="lot.id")
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    quantity = Quantity(attribute="lot.quantity")
    unit_cost = fields.Integer(attribute="lot.unit_cost")
    days_left = fields.Integer(metadata={"description": "Days until expiry; negative if past"})
    expiring_soon = fields.Boolean()
    expired = fields.Boolean()


class DrugStockSchema(ma.Schema):
    drug_code = fields.String()
    drug_name = fields.String(attribute="name")
    unit = fields.String()
    available = Quantity(metadata={"description": "Units in lots that have not expired"})
    expiring_soon = fields.Boolean()
    lots = fields.List(
        fields.Nested(StockLotSchema), metadata={"description": "Usable lots, first expiry first"}
    )
    expired_lots = fields.List(
        fields.Nested(StockLotSchema), metadata={"description": "Never dispensed; to write off"}
    )


@blp.route("/stock")
class StockResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(StockQuerySchema, location="query")
    @blp.response(200, DrugStockSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self, query):
        """Lots in stock per drug; expired lots are listed apart."""
        return service.stock_overview(db_session(), principal(), **query)


# --- dispensing -------------------------------------------------------------------------------


class DispenseItemSchema(ma.Schema):
    item_id = fields.Integer(required=True)
    quantity = Quantity(
        required=True,
        validate=validate.Range(min=0),
        metadata={"description": "At most what is still owed; less leaves the rest owed"},
    )


class DispenseCreateSchema(ma.Schema):
    items = fields.List(
        fields.Nested(DispenseItemSchema),
        load_default=None,
        metadata={"description": "Leave out to hand out everything still owed"},
    )
    allow_partial = fields.Boolean(
        load_default=False,
        metadata={"description": "With too little stock, hand out what there is"},
    )
    note = fields.String(validate=validate.Length(max=500), load_default=None)


class DispenseReturnItemSchema(ma.Schema):
    item_id = fields.Integer(required=True)
    quantity = Quantity(required=True)
    lot_id = fields.Integer(
        load_default=None,
        metadata={"description": "The lot the units came from; else the last lots taken from"},
    )


class DispenseReturnCreateSchema(ma.Schema):
    items = fields.List(
        fields.Nested(DispenseReturnItemSchema), required=True, validate=validate.Length(min=1)
    )
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class DispenseLineSchema(ma.Schema):
    id = fields.Integer()
    item_id = fields.Integer()
    drug_code = fields.String(attribute="lot.drug_code")
    drug_name = fields.String(attribute="item.drug_name")
    lot_id = fields.Integer()
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    quantity = Quantity()


class DispenseSchema(ma.Schema):
    id = fields.Integer()
    prescription_id = fields.Integer()
    kind = fields.Enum(DispenseKind, by_value=True)
    pharmacist_id = fields.Integer()
    at = fields.DateTime()
    note = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(DispenseLineSchema))


@blp.route("/prescriptions/<int:prescription_id>/dispense")
class DispenseResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(DispenseCreateSchema)
    @blp.response(201, DispenseSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only pharmacists dispense")
    @problem_doc(blp, 404, "No signed prescription with this id at your facility")
    @problem_doc(
        blp,
        409,
        "Not signed or no longer valid, nothing owed, too little stock (the drug, what is "
        "needed and what is available are named), or the stock was taken meanwhile",
    )
    @problem_doc(blp, 422, "An item not on the prescription, or more than is owed")
    def post(self, body, prescription_id: int):
        """Dispense a signed prescription, lots first expiry first, never an expired lot."""
        items = body["items"]
        return service.dispense(
            db_session(),
            principal(),
            prescription_id,
            None if items is None else [service.DispenseQuantity(**i) for i in items],
            allow_partial=body["allow_partial"],
            note=body["note"],
        )


@blp.route("/prescriptions/<int:prescription_id>/returns")
class ReturnsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(DispenseReturnCreateSchema)
    @blp.response(201, DispenseSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only pharmacists take returns")
    @problem_doc(blp, 404, "No signed prescription with this id at your facility")
    @problem_doc(blp, 422, "More than was handed out, or no reason")
    def post(self, body, prescription_id: int):
        """Record units the patient brought back; they go back into their lot."""
        return service.return_units(
            db_session(),
            principal(),
            prescription_id,
            [service.ReturnQuantity(**i) for i in body["items"]],
            reason=body["reason"],
        )


@blp.route("/prescriptions/<int:prescription_id>/dispenses")
class DispensesResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, DispenseSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No signed prescription with this id at your facility")
    def get(self, prescription_id: int):
        """Every dispense and return of a prescription, oldest first."""
        return service.dispenses_of(db_session(), principal(), prescription_id)


class DispensePlanLotSchema(ma.Schema):
    lot_id = fields.Integer(attribute="lot.id")
    lot_number = fields.String(attribute="lot.lot_number")
    expiry_date = fields.Date(attribute="lot.expiry_date")
    quantity = Quantity()


class DispenseItemPlanSchema(ma.Schema):
    item_id = fields.Integer(attribute="item.id")
    drug_code = fields.String(attribute="item.drug_code")
    drug_name = fields.String(attribute="item.drug_name")
    prescribed = Quantity(attribute="item.quantity")
    dispensed = Quantity(metadata={"description": "Handed out, net of returns"})
    owed = Quantity()
    available = Quantity(metadata={"description": "Units in usable lots"})
    short = Quantity(metadata={"description": "What stock cannot cover now"})
    lots = fields.List(
        fields.Nested(DispensePlanLotSchema),
        attribute="takes",
        metadata={"description": "What a dispense would take, first expiry first"},
    )


class DispensePlanSchema(ma.Schema):
    prescription_id = fields.Integer(attribute="prescription.id")
    code = fields.String(attribute="prescription.code")
    rx_type = fields.Enum(PrescriptionType, by_value=True, attribute="prescription.rx_type")
    status = fields.Enum(PrescriptionStatus, by_value=True, attribute="prescription.status")
    valid_until = fields.Date(attribute="prescription.valid_until", allow_none=True)
    complete = fields.Boolean(metadata={"description": "Stock covers everything owed"})
    items = fields.List(fields.Nested(DispenseItemPlanSchema))


@blp.route("/prescriptions/<int:prescription_id>/dispense-plan")
class DispensePlanResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, DispensePlanSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No signed prescription with this id at your facility")
    def get(self, prescription_id: int):
        """The lots a dispense of everything owed would take now (nothing is changed)."""
        return service.dispense_plan(db_session(), principal(), prescription_id)


class DispenseQueueEntrySchema(ma.Schema):
    prescription_id = fields.Integer(attribute="prescription.id")
    code = fields.String(attribute="prescription.code")
    rx_type = fields.Enum(PrescriptionType, by_value=True, attribute="prescription.rx_type")
    patient_id = fields.Integer(attribute="prescription.patient_id")
    patient_name = fields.String(attribute="prescription.patient.full_name")
    prescriber_name = fields.String(attribute="prescription.prescriber.full_name")
    signed_at = fields.DateTime(attribute="prescription.signed_at")
    valid_until = fields.Date(attribute="prescription.valid_until", allow_none=True)
    owed_items = fields.Integer()
    started = fields.Boolean(metadata={"description": "Partly dispensed already"})


@blp.route("/dispensing/queue")
class QueueResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, DispenseQueueEntrySchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self):
        """Signed, still valid prescriptions with something owed, oldest first."""
        return service.waiting_prescriptions(db_session(), principal())
