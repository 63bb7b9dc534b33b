"""marshmallow schemas shared by the REST API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class ProblemLinkSchema(ma.Schema):
    id = fields.Integer()
    href = fields.String()


class ProblemDuplicateSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    full_name = fields.String()
    birth_date = fields.String(metadata={"description": "YYYY, YYYY-MM or YYYY-MM-DD"})
    href = fields.String()


class ProblemViolationSchema(ma.Schema):
    rule = fields.String(metadata={"description": "Stable code, e.g. drug-not-in-catalog"})
    field = fields.String(metadata={"description": "e.g. items.0.drug_code"})
    message = fields.String()


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error response carries them, with the extension
    members some problems add (each named below with the problem that adds it)."""

    type = fields.String(required=True, metadata={"description": "URI naming the kind of problem"})
    title = fields.String(required=True, metadata={"description": "Short, translated summary"})
    status = fields.Integer(required=True)
    detail = fields.String(metadata={"description": "What went wrong in this request"})
    instance = fields.String(required=True, metadata={"description": "The request path"})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Field name → list of messages, for validation failures"},
    )
    request_id = fields.String()
    existing_patient = fields.Nested(
        ProblemLinkSchema, metadata={"description": "409: the patient who has this number"}
    )
    possible_duplicates = fields.List(
        fields.Nested(ProblemDuplicateSchema),
        metadata={"description": "409: similar patients already registered"},
    )
    merged_into = fields.Nested(
        ProblemLinkSchema, metadata={"description": "409: the record this one was merged into"}
    )
    encounter = fields.Nested(
        ProblemLinkSchema, metadata={"description": "409: the examination already running"}
    )
    violations = fields.List(
        fields.Nested(ProblemViolationSchema),
        metadata={"description": "422: the prescribing rules the prescription breaks"},
    )
    owed = fields.Integer(metadata={"description": "422: what the patient owes, in VND"})


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
