"""Patients of the province-wide index."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_login import login_required
from flask_smorest.pagination import PaginationMetadataSchema, PaginationParameters
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.etags import ETAG_HEADER, if_match, with_etag
from his.api.openapi import MAX_ID, link
from his.api.pagination import open_ended
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.services import patients as service

blp = Blueprint("patients", __name__, description="The shared patient index")

STR = {"allow_none": True}
# How the API writes a date of birth that may lack its day or month.
PARTIAL_DATE = {"type": "string", "pattern": "^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$"}


class AddressSchema(ma.Schema):
    line = fields.String(validate=validate.Length(max=300), **STR)
    province_code = fields.String(metadata={"description": "2025 province code"}, **STR)
    commune_code = fields.String(metadata={"description": "2025 commune code"}, **STR)
    legacy_province_code = fields.String(metadata={"description": "pre-2025 code"}, **STR)
    legacy_district_code = fields.String(metadata={"description": "pre-2025 code"}, **STR)
    legacy_commune_code = fields.String(metadata={"description": "pre-2025 code"}, **STR)


class IdentifierInSchema(ma.Schema):
    system = fields.String(
        required=True,
        metadata={"description": "`cmnd`, `passport`, or the URI of another system"},
    )
    value = fields.String(required=True, validate=validate.Length(min=1, max=64))


class AllergySchema(ma.Schema):
    substance = fields.String(required=True, validate=validate.Length(min=1, max=200))
    reaction = fields.String(validate=validate.Length(max=200), **STR)
    severity = fields.String(
        validate=validate.OneOf(["mild", "moderate", "severe", "unknown"]), load_default="unknown"
    )


class GuardianSchema(ma.Schema):
    name = fields.String(validate=validate.Length(max=200), **STR)
    relation = fields.String(validate=validate.Length(max=50), **STR)
    phone = fields.String(**STR)
    cccd = fields.String(**STR)


class InsuranceInSchema(ma.Schema):
    card_number = fields.String(
        required=True, metadata={"description": "10-digit number or the 15-character code"}
    )
    valid_from = fields.Date(**STR)
    valid_to = fields.Date(**STR)
    registered_facility_code = fields.String(metadata={"description": "MA_DKBD"}, **STR)
    benefit_level = fields.Integer(validate=validate.Range(1, 5), **STR)
    five_year_date = fields.Date(**STR)
    area_code = fields.String(metadata={"enum": ["K1", "K2", "K3"]}, **STR)


class PatientInSchema(ma.Schema):
    full_name = fields.String(validate=validate.Length(max=200))
    family_name = fields.String(validate=validate.Length(max=100), **STR)
    middle_name = fields.String(validate=validate.Length(max=100), **STR)
    given_name = fields.String(validate=validate.Length(max=100), **STR)
    sex = fields.String(metadata={"enum": ["male", "female", "undetermined"]})
    birth_date = fields.String(metadata={"description": "YYYY, YYYY-MM or YYYY-MM-DD"})
    cccd = fields.String(metadata={"description": "12-digit personal ID number"}, **STR)
    phone = fields.String(**STR)
    ethnicity_code = fields.String(**STR)
    nationality = fields.String(**STR)
    occupation_code = fields.String(**STR)
    address = fields.Nested(AddressSchema, **STR)
    identifiers = fields.List(fields.Nested(IdentifierInSchema))
    allergies = fields.List(fields.Nested(AllergySchema))
    guardian = fields.Nested(GuardianSchema, **STR)
    insurance = fields.Nested(InsuranceInSchema, **STR)


class PatientCreateSchema(PatientInSchema):
    full_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    sex = fields.String(required=True, metadata={"enum": ["male", "female", "undetermined"]})
    birth_date = fields.String(
        required=True, metadata={"description": "YYYY, YYYY-MM or YYYY-MM-DD"}
    )
    allow_possible_duplicate = fields.Boolean(
        load_default=False,
        metadata={"description": "Register although a similar patient exists (after a 409)"},
    )


class IdentifierOutSchema(ma.Schema):
    type = fields.String(metadata={"enum": ["cccd", "cmnd", "passport", "bhyt", "mrn", "external"]})
    system = fields.String()
    value = fields.String()


class InsuranceOutSchema(ma.Schema):
    card_number = fields.String()
    insurance_number = fields.String()
    group_code = fields.String(allow_none=True)
    benefit_level = fields.Integer(allow_none=True)
    valid_from = fields.Date(allow_none=True)
    valid_to = fields.Date(allow_none=True)
    registered_facility_code = fields.String(allow_none=True)
    area_code = fields.String(allow_none=True)
    five_year_date = fields.Date(allow_none=True)
    status = fields.String(metadata={"enum": ["verified", "unverified", "failed"]})
    check_method = fields.String(allow_none=True)
    check_code = fields.String(allow_none=True)
    check_message = fields.String(allow_none=True)
    checked_at = fields.DateTime(allow_none=True)


class PatientSchema(ma.Schema):
    id = fields.Integer()
    mrn = fields.String()
    full_name = fields.String()
    family_name = fields.String(allow_none=True)
    middle_name = fields.String(allow_none=True)
    given_name = fields.String(allow_none=True)
    sex = fields.String(metadata={"enum": ["male", "female", "undetermined"]})
    birth_date = fields.Function(
        lambda p: p.birth.iso(),
        metadata={"description": "YYYY, YYYY-MM or YYYY-MM-DD", **PARTIAL_DATE},
    )
    birth_date_display = fields.Function(
        lambda p: p.birth.display(),
        metadata={"description": "dd/mm/yyyy, mm/yyyy or yyyy", "type": "string"},
    )
    cccd = fields.Function(
        lambda p: p.identifier("cccd"), metadata={"type": "string", "nullable": True}
    )
    phone = fields.String(allow_none=True)
    ethnicity_code = fields.String(allow_none=True)
    nationality = fields.String()
    occupation_code = fields.String(allow_none=True)
    address = fields.Function(
        lambda p: {
            "line": p.address_line,
            "province_code": p.province_code,
            "commune_code": p.commune_code,
            "legacy_province_code": p.legacy_province_code,
            "legacy_district_code": p.legacy_district_code,
            "legacy_commune_code": p.legacy_commune_code,
        },
        metadata={"allOf": [{"$ref": "#/components/schemas/Address"}]},
    )
    identifiers = fields.List(fields.Nested(IdentifierOutSchema))
    allergies = fields.List(fields.Nested(AllergySchema))
    guardian = fields.Function(
        lambda p: (
            None
            if not p.guardian_name
            else {
                "name": p.guardian_name,
                "relation": p.guardian_relation,
                "phone": p.guardian_phone,
                "cccd": p.guardian_cccd,
            }
        ),
        metadata={"allOf": [{"$ref": "#/components/schemas/Guardian"}], "nullable": True},
    )
    insurance = fields.Nested(InsuranceOutSchema, attribute="coverage", allow_none=True)
    insurance_history = fields.List(fields.Nested(InsuranceOutSchema), attribute="coverages")
    merged_into = fields.Integer(attribute="merged_into_id", allow_none=True)
    version = fields.Integer(metadata={"description": "Also the ETag; send it in If-Match"})


class SearchArgsSchema(ma.Schema):
    q = fields.String(load_default="", metadata={"description": "name, phone, CCCD, BHYT or MRN"})
    birth_year = fields.Integer(validate=validate.Range(1880, 2200))
    commune_code = fields.String(validate=validate.Length(equal=5))


class SearchBodySchema(SearchArgsSchema):
    """The search's parameters in a JSON body, paging included (the GET has them in its
    query string)."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_ID))
    page_size = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))


class MergeSchema(ma.Schema):
    merged_id = fields.Integer(
        required=True, metadata={"description": "The record to fold into this one"}
    )


class MergeOutSchema(ma.Schema):
    id = fields.Integer()
    survivor_id = fields.Integer()
    merged_id = fields.Integer()
    merged_at = fields.DateTime()
    undone_at = fields.DateTime(allow_none=True)


PATIENT = "/api/v1/patients/{patient_id}"
CREATED_PATIENT_LINKS = {
    "GetPatient": link(PATIENT, "get", patient_id="$response.body#/id"),
    "PatchPatient": link(PATIENT, "patch", patient_id="$response.body#/id"),
    "CheckCard": link(PATIENT + "/insurance/check", "post", patient_id="$response.body#/id"),
}


# The search's X-Pagination header, documented as the GET's is (blueprint.py).
PAGINATION_HEADER = {
    blp.PAGINATION_HEADER_NAME: {
        "description": "Pagination metadata (JSON)",
        "required": True,
        "content": {"application/json": {"schema": PaginationMetadataSchema}},
    }
}


def _search(args: dict, page_params) -> list:
    """One page of the search, shared by the GET and the POST."""
    found = service.search_patients(
        db_session(),
        principal(),
        service.SearchQuery(**args),
        offset=page_params.first_item,
        limit=page_params.page_size,
    )
    open_ended(page_params, found.has_more)
    return found.patients


def _checker():
    return current_app.extensions["his_card_checker"]


@blp.route("/patients")
class PatientsResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(SearchArgsSchema, location="query")
    @blp.response(200, PatientSchema(many=True))
    @blp.paginate()
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def get(self, args, pagination_parameters):
        """Search by name (accents optional, any word order), phone, CCCD, BHYT or MRN.
        `X-Pagination` has `next_page` while more match, and no total.

        The query string puts the name or number searched in every proxy's and server's
        access log: prefer `POST /api/v1/patients/search`, which answers the same."""
        return _search(args, pagination_parameters)

    @blp.arguments(PatientCreateSchema)
    @blp.response(201, PatientSchema, headers=ETAG_HEADER)
    @blp.doc(responses={201: {"links": CREATED_PATIENT_LINKS}})
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 409, "The CCCD/BHYT number belongs to another patient, or a likely duplicate")
    def post(self, body):
        """Register a patient; the answer carries the new `id` and `mrn`."""
        allow = body.pop("allow_possible_duplicate", False)
        patient = service.register_patient(
            db_session(), principal(), body, checker=_checker(), allow_possible_duplicate=allow
        )
        return with_etag(patient, 201)


@blp.route("/patients/search")
class PatientSearchResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(SearchBodySchema)
    @blp.response(200, PatientSchema(many=True), headers=PAGINATION_HEADER)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    def post(self, body):
        """Search patients with the parameters in a JSON body: the one to use.

        The search of `GET /api/v1/patients`, with its parameters (`page` and `page_size`
        too) in the body, answered the same way (`X-Pagination` included). A name, CCCD,
        phone or BHYT number sent in a body stays out of the URL, and so out of browser
        histories and the access logs of proxies and servers. Searching changes nothing."""
        page_params = PaginationParameters(body.pop("page"), body.pop("page_size"))
        patients = _search(body, page_params)
        result, headers = blp._set_pagination_metadata(page_params, patients, {})
        return result, 200, headers


@blp.route("/patients/<int:patient_id>")
class PatientResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, PatientSchema, headers=ETAG_HEADER)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    def get(self, patient_id: int):
        """One patient. The read is written to the audit trail."""
        return with_etag(service.get_patient(db_session(), principal(), patient_id))

    @blp.arguments(PatientInSchema)
    @blp.response(200, PatientSchema, headers=ETAG_HEADER)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    @problem_doc(blp, 409)
    @problem_doc(blp, 412, "Someone changed the patient since the ETag given in If-Match")
    def patch(self, body, patient_id: int):
        """Change the fields given. Send the ETag you read in If-Match."""
        patient = service.update_patient(
            db_session(),
            principal(),
            patient_id,
            body,
            expected_version=if_match(),
            checker=_checker(),
        )
        return with_etag(patient)


@blp.route("/patients/<int:patient_id>/insurance/check")
class CardCheckResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, InsuranceOutSchema)
    @problem_doc(blp, 401)
    @problem_doc(blp, 403)
    @problem_doc(blp, 404)
    @problem_doc(blp, 422, "The patient has no card on file")
    def post(self, patient_id: int):
        """Check the patient's current BHYT card again (after the gateway was down)."""
        return service.recheck_card(db_session(), principal(), patient_id, _checker())


@blp.route("/patients/<int:patient_id>/merge")
class MergeResource(MethodView):
    decorators = (login_required,)

    @blp.arguments(MergeSchema)
    @blp.response(200, MergeOutSchema)
    @problem_doc(blp, 403, "Only administrators merge records")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409)
    def post(self, body, patient_id: int):
        """Merge another record of the same person into this one (administrators)."""
        return service.merge_patients(db_session(), principal(), patient_id, body["merged_id"])


@blp.route("/patient-merges/<int:merge_id>/undo")
class UndoMergeResource(MethodView):
    decorators = (login_required,)

    @blp.response(200, MergeOutSchema)
    @problem_doc(blp, 403, "Only administrators undo merges")
    @problem_doc(blp, 404)
    @problem_doc(blp, 409)
    def post(self, merge_id: int):
        """Undo a merge: the records are separated again exactly as they were."""
        return service.undo_merge(db_session(), principal(), merge_id)
