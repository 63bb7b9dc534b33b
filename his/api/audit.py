"""The audit trail, for auditors."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_login import login_required
from marshmallow import fields

from his.api.blueprint import Blueprint
from his.api.pagination import SelectPage
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.models import AuditAction, AuditOutcome
from his.services.audit import AuditFilter, query_events

blp = Blueprint("audit", __name__, description="The append-only audit trail")


class AuditQuerySchema(ma.Schema):
    user_id = fields.Integer()
    username = fields.String()
    action = fields.Enum(AuditAction, by_value=True)
    outcome = fields.Enum(AuditOutcome, by_value=True)
    patient_id = fields.Integer()
    entity_type = fields.String()
    entity_id = fields.String()
    facility_id = fields.Integer()
    since = fields.AwareDateTime(metadata={"description": "Inclusive lower bound (ISO 8601)"})
    until = fields.AwareDateTime(metadata={"description": "Exclusive upper bound (ISO 8601)"})


class AuditEventSchema(ma.Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    user_id = fields.Integer(allow_none=True)
    username = fields.String(allow_none=True)
    roles = fields.Function(
        lambda e: e.roles.split(",") if e.roles else [],
        metadata={"type": "array", "items": {"type": "string"}},
    )
    facility_id = fields.Integer(allow_none=True)
    action = fields.Enum(AuditAction, by_value=True)
    entity_type = fields.String(allow_none=True)
    entity_id = fields.String(allow_none=True)
    patient_id = fields.Integer(allow_none=True)
    source_ip = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    outcome = fields.Enum(AuditOutcome, by_value=True)
    detail = fields.String(allow_none=True)


@blp.route("/audit-events")
class AuditEventsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate(SelectPage)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403, "Only auditors and administrators read the audit trail")
    def get(self, args):
        """Audit events of your facility and the facilities under it, newest first."""
        return query_events(db_session(), principal(), AuditFilter(**args))
