"""Bills, payments and billing parameters (the ``billing`` package's REST front door)."""

from __future__ import annotations

from decimal import Decimal

import marshmallow as ma
from flask import make_response
from flask.views import MethodView
from flask_login import login_required
from marshmallow import Schema, fields, validate

from billing import bills, charges, claim_files, params, payments
from billing.models import ChargeKind, PaymentMethod
from his.api.blueprint import Blueprint
from his.api.schemas import problem_doc
from his.context import db_session, principal

blp = Blueprint("billing", __name__, description="Bills, BHYT co-payment, payments, receipts")
CHARGE_KINDS = [kind.value for kind in ChargeKind]

_MONEY = {"description": "Integer VND"}


class FiguresSchema(Schema):
    total = fields.Integer(metadata=_MONEY)
    insurance_pays = fields.Integer(metadata={"description": "What the BHYT fund pays (VND)"})
    patient_copay = fields.Integer(metadata={"description": "The patient's co-payment (VND)"})
    patient_out_of_scope = fields.Integer(
        metadata={"description": "Out of the BHYT list, price differences, not covered (VND)"}
    )
    patient_pays = fields.Integer(metadata={"description": "copay + out of scope (VND)"})


class BillLineSchema(Schema):
    charge_id = fields.Integer(attribute="charge.id")
    bill_id = fields.Integer(attribute="charge.bill_id")
    kind = fields.String(attribute="charge.kind.value", metadata={"enum": CHARGE_KINDS})
    code = fields.String(attribute="charge.code")
    name = fields.String(attribute="charge.name")
    unit = fields.String(attribute="charge.unit", allow_none=True)
    quantity = fields.Decimal(attribute="charge.quantity", as_string=True)
    unit_price = fields.Integer(attribute="charge.unit_price", metadata=_MONEY)
    bhyt_price = fields.Integer(attribute="charge.bhyt_price", metadata=_MONEY)
    in_scope = fields.Boolean(attribute="charge.in_scope")
    service_rate = fields.Integer(attribute="charge.service_rate")
    payment_rate = fields.Integer(attribute="charge.payment_rate")
    service_date = fields.Date(attribute="charge.service_date")
    total = fields.Integer(attribute="split.total")
    insurance_pays = fields.Integer(attribute="split.insurance_pays")
    patient_copay = fields.Integer(attribute="split.patient_copay")
    patient_out_of_scope = fields.Integer(attribute="split.patient_out_of_scope")
    coverage_rate = fields.Integer(attribute="split.coverage_rate")


class PaymentSchema(Schema):
    id = fields.Integer()
    bill_id = fields.Integer()
    kind = fields.String(attribute="kind.value", metadata={"enum": ["payment", "refund"]})
    method = fields.String(attribute="method.value")
    amount = fields.Integer(metadata=_MONEY)
    receipt_number = fields.String(metadata={"description": "Per facility and year: 2026-000123"})
    at = fields.DateTime()
    reason = fields.String(allow_none=True)
    refund_of_id = fields.Integer(allow_none=True)
    transaction_id = fields.String(allow_none=True)


class BillPartSchema(Schema):
    id = fields.Integer(attribute="bill.id")
    number = fields.Integer(
        attribute="bill.number", metadata={"description": "1: the visit's bill; 2+: supplementary"}
    )
    status = fields.String(
        attribute="bill.status.value", metadata={"enum": ["open", "paid", "refunded"]}
    )
    figures = fields.Nested(FiguresSchema)
    paid = fields.Integer(metadata={"description": "Payments less refunds (VND)"})
    payments = fields.List(fields.Nested(PaymentSchema), attribute="bill.payments")


class VisitBillSchema(FiguresSchema):
    visit_id = fields.Integer(attribute="visit.id")
    visit_code = fields.String(attribute="visit.visit_code")
    patient_id = fields.Integer(attribute="visit.patient_id")
    payment = fields.String(attribute="visit.payment.value", metadata={"enum": ["bhyt", "fee"]})
    coverage_rule = fields.String(
        attribute="split.coverage_rule", metadata={"description": "The rule that decided coverage"}
    )
    coverage_rule_label = fields.String(attribute="coverage_label")
    coverage_rate = fields.Integer(
        attribute="split.coverage_rate", metadata={"description": "MUC_HUONG, percent"}
    )
    rules = fields.List(fields.String(), attribute="split.rules")
    lines = fields.Method("_lines")
    bills = fields.List(fields.Nested(BillPartSchema))
    open_bill_id = fields.Function(
        lambda vb: vb.open_bill.bill.id if vb.open_bill else None,
        metadata={"type": "integer", "nullable": True},
    )
    balance = fields.Integer(metadata={"description": "What the patient still owes (VND)"})
    vietqr = fields.String(
        allow_none=True,
        metadata={
            "description": "NAPAS VietQR payload for the balance (none when nothing is owed)"
        },
    )

    def _lines(self, vb):
        return BillLineSchema(many=True).dump([line for b in vb.bills for line in b.lines])

    def dump(self, obj, *args, **kwargs):
        data = super().dump(obj, *args, **kwargs)
        # The visit's figures sit at the top of the bill, beside the rule that decided them.
        data.update(FiguresSchema().dump(obj.figures))
        return data


class PayInSchema(Schema):
    method = fields.Enum(PaymentMethod, by_value=True, required=True)
    amount = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={
            "description": "The whole balance of the bill (VND); 0 locks a bill owing nothing"
        },
    )


class SettledSchema(Schema):
    payment = fields.Nested(PaymentSchema, allow_none=True)
    bill = fields.Nested(VisitBillSchema, attribute="visit_bill")


class RefundInSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=300))


class NotifyInSchema(Schema):
    transaction_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount = fields.Integer(required=True, validate=validate.Range(min=1))
    description = fields.String(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "The transfer note, holding the bill reference of the VietQR"},
    )
    paid_at = fields.DateTime(load_default=None)
    account_number = fields.String(load_default=None)


class NotifiedSchema(Schema):
    payment = fields.Nested(PaymentSchema)
    repeated = fields.Boolean(metadata={"description": "Seen before: nothing changed"})


class ParamSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True)
    value = fields.Decimal(required=True, as_string=True)
    valid_from = fields.Date(required=True)

    @ma.post_dump
    def _plain_number(self, data, **_kwargs):
        # 2340000, not 2340000.0000: the column's scale is storage, not meaning.
        data["value"] = f"{Decimal(data['value']).normalize():f}"
        return data

    valid_to = fields.Date(dump_only=True, allow_none=True)
    source = fields.String(required=True, validate=validate.Length(min=1, max=300))


@blp.route("/visits/<int:visit_id>/bill")
class VisitBillResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, VisitBillSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    @problem_doc(blp, 422, "The BHYT card cannot price the visit yet")
    def get(self, visit_id: int):
        """Every line of the visit, split between the fund and the patient, the totals, the
        rule that decided the coverage and the VietQR payload for what is owed."""
        return bills.visit_bill(db_session(), principal(), visit_id)


@blp.route("/bills/<int:bill_id>/payments")
class BillPaymentsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(PayInSchema)
    @blp.response(201, SettledSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such bill at your facility")
    @problem_doc(blp, 409, "The bill is paid or refunded already")
    @problem_doc(blp, 422, "The amount is not the balance")
    def post(self, body, bill_id: int):
        """Take the bill's balance; the bill is then locked and the receipt numbered."""
        return payments.take_payment(
            db_session(), principal(), bill_id, body["method"], body["amount"]
        )


@blp.route("/payments/<int:payment_id>/refund")
class RefundResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(RefundInSchema)
    @blp.response(201, PaymentSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such payment at your facility")
    @problem_doc(blp, 409, "Not a refundable payment")
    def post(self, body, payment_id: int):
        """Give a payment back in full, with a reason; the bill's charges are cancelled."""
        return payments.refund(db_session(), principal(), payment_id, body["reason"])


@blp.route("/payments/notify")
class NotifyResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(NotifyInSchema)
    @blp.response(201, NotifiedSchema)
    @blp.alt_response(200, schema=NotifiedSchema, description="A repeat: the first answer")
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No bill with the reference of the transfer note")
    @problem_doc(blp, 409, "The transaction id was used for another amount, or the bill is paid")
    @problem_doc(blp, 422, "No bill reference in the note, or not the balance")
    def post(self, body):
        """A bank's notification of a VietQR transfer (idempotent by `transaction_id`)."""
        raw = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in body.items()}
        done = payments.notify(
            db_session(),
            principal(),
            transaction_id=body["transaction_id"],
            amount=body["amount"],
            description=body["description"],
            raw=raw,
        )
        return done, (200 if done.repeated else 201)


@blp.route("/billing/params")
class ParamsResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, ParamSchema(many=True))
    @problem_doc(blp, 401)
    def get(self):
        """Every billing parameter with its periods of validity and the deciding text."""
        return params.history(db_session())

    @blp.arguments(ParamSchema)
    @blp.response(201, ParamSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Admins only")
    @problem_doc(blp, 409, "A value from that date or later exists")
    @problem_doc(blp, 422)
    def post(self, body):
        """A new value of a parameter from a date on (the one in force ends the day before)."""
        return params.set_param(
            db_session(),
            principal(),
            body["name"],
            body["value"],
            body["valid_from"],
            body["source"],
        )


class ClaimFileSchema(Schema):
    id = fields.Integer()
    visit_id = fields.Integer()
    version = fields.Integer(metadata={"description": "A corrected claim is a new version"})
    ma_lk = fields.String()
    schema_version = fields.String()
    tables = fields.String(metadata={"description": "XML1,XML2,…"})
    sha256 = fields.String()
    status = fields.String(attribute="status.value")
    created_at = fields.DateTime()
    answer_code = fields.String(allow_none=True)
    answer_message = fields.String(allow_none=True)
    transaction_id = fields.String(allow_none=True)


@blp.route("/claims/<int:visit_id>")
class ClaimResource(MethodView):
    decorators = (login_required,)

    @blp.response(201, ClaimFileSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    @problem_doc(blp, 409, "Not a BHYT visit, or not finished")
    @problem_doc(blp, 422, "The claim fails its checks or schema; every problem is listed")
    def post(self, visit_id: int):
        """Make a new version of the visit's claim file: built from the visit and its bill,
        checked, validated against the schema, signed with the facility's certificate."""
        return claim_files.make_claim_file(db_session(), principal(), visit_id)


@blp.route("/claims/<int:visit_id>/xml")
class ClaimXmlResource(MethodView):
    decorators = (login_required,)

    @blp.doc(
        responses={
            "200": {
                "description": "The signed GIAMDINHHS envelope (UTF-8 XML)",
                "content": {"application/xml": {"schema": {"type": "string"}}},
                "headers": {
                    "ETag": {
                        "description": "SHA-256 of the file",
                        "required": True,
                        "schema": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'},
                    },
                    "Content-Disposition": {
                        "required": True,
                        "schema": {"type": "string", "pattern": "^attachment; filename="},
                    },
                },
            }
        }
    )
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    @problem_doc(blp, 409, "Not a BHYT visit, or not finished")
    @problem_doc(blp, 422, "The claim fails its checks or schema; every problem is listed")
    def get(self, visit_id: int):
        """The visit's latest signed claim file (made now when there is none yet)."""
        session = db_session()
        acting = principal()
        claim = claim_files.latest_claim_file(session, acting, visit_id)
        if claim is None:
            claim = claim_files.make_claim_file(session, acting, visit_id)
        response = make_response(claim.content)
        response.headers["Content-Type"] = "application/xml; charset=utf-8"
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{claim.ma_lk}_v{claim.version}.xml"'
        )
        response.headers["ETag"] = f'"{claim.sha256}"'
        return response


class ChargeInSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Catalog code of the supply (VTYT) or service"},
    )
    quantity = fields.Decimal(required=True, places=3, as_string=True)
    kind = fields.Enum(ChargeKind, by_value=True, load_default=ChargeKind.SUPPLY)


class ChargeSchema(Schema):
    id = fields.Integer()
    visit_id = fields.Integer()
    bill_id = fields.Integer()
    kind = fields.String(attribute="kind.value", metadata={"enum": CHARGE_KINDS})
    code = fields.String()
    name = fields.String()
    unit = fields.String(allow_none=True)
    quantity = fields.Decimal(as_string=True)
    unit_price = fields.Integer(metadata=_MONEY)
    bhyt_price = fields.Integer(metadata=_MONEY)
    in_scope = fields.Boolean()
    service_date = fields.Date()
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)


@blp.route("/visits/<int:visit_id>/charges")
class VisitChargesResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(ChargeInSchema)
    @blp.response(201, ChargeSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such visit at your facility")
    @problem_doc(blp, 409, "The visit is cancelled")
    @problem_doc(blp, 422, "Unknown code, an examination, or a wrong quantity")
    def post(self, body, visit_id: int):
        """Charge a supply used (or a service done without an order) at today's catalog price."""
        return charges.add_charge(
            db_session(), principal(), visit_id, body["code"], body["quantity"], body["kind"]
        )


@blp.route("/charges/<int:charge_id>/cancel")
class ChargeCancelResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(RefundInSchema)
    @blp.response(200, ChargeSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404, "No such charge at your facility")
    @problem_doc(blp, 409, "From the clinical record, or on a paid bill")
    @problem_doc(blp, 422, "No reason")
    def post(self, body, charge_id: int):
        """Take a charge entered by hand off the open bill, with a reason."""
        return charges.cancel_charge(db_session(), principal(), charge_id, body["reason"])
