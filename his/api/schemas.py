"""marshmallow schemas shared by the REST API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error response carries them."""

    type = fields.String(metadata={"description": "URI naming the kind of problem"})
    title = fields.String(metadata={"description": "Short, translated summary"})
    status = fields.Integer()
    detail = fields.String(metadata={"description": "What went wrong in this request"})
    instance = fields.String(metadata={"description": "The request path"})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Field name → list of messages, for validation failures"},
    )
    request_id = fields.String()


class FacilityRefSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()


class FacilitySchema(ma.Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "5-character facility code (mã cơ sở KCB)"})
    name = fields.String()
    care_level = fields.String(metadata={"enum": ["primary", "basic", "specialised"]})
    legacy_tier = fields.String(
        allow_none=True, metadata={"enum": ["central", "provincial", "district", "commune"]}
    )
    parent = fields.Nested(FacilityRefSchema, allow_none=True)
    province_code = fields.String()
    commune_code = fields.String(allow_none=True)
    active = fields.Boolean()


def problem_doc(blp, status: int, description: str | None = None):
    """Documents an error response of an operation as problem+json."""
    return blp.alt_response(
        status,
        schema=ProblemSchema,
        content_type="application/problem+json",
        description=description or f"Problem details ({status})",
    )
