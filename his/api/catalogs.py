"""Searching the catalogs: ICD-10, the facility's drugs and its technical services."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_babel import gettext as _
from flask_login import login_required
from marshmallow import fields, validate

from his.api.blueprint import Blueprint
from his.api.schemas import problem_doc
from his.context import db_session, principal
from his.errors import NotFound, ValidationFailed
from his.localtime import local_today
from his.models import RxClass, ServiceKind
from his.services import catalogs as service

blp = Blueprint(
    "catalogs",
    __name__,
    description=(
        "Catalog search for any signed-in staff member. `q` is required: words typed with or "
        "without Vietnamese accents (every word must start a word of the entry) or the start "
        "of a code (`j18` finds J18, J18.0 …; ICD-10 codes with or without the dot). An empty "
        "`q` is refused with 422. Entries whose code starts with `q` come first, then by "
        "code. Only entries valid on `on` (default: today) are returned; `limit` is capped "
        f"at {service.SEARCH_LIMIT_MAX}."
    ),
)


class SearchArgs(ma.Schema):
    q = fields.String(
        required=True,
        validate=validate.Length(max=100),
        metadata={"description": "Words (accents optional) or the start of a code"},
    )
    on = fields.Date(
        load_default=None, metadata={"description": "Catalog valid on this date; default today"}
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1),
        metadata={"description": f"At most this many (capped at {service.SEARCH_LIMIT_MAX})"},
    )


class Icd10ItemSchema(ma.Schema):
    code = fields.String(metadata={"description": "With the dot: J18.9"})
    name = fields.String(
        attribute="title", metadata={"description": "Vietnamese title, else English"}
    )
    title_en = fields.String()
    title_vi = fields.String(allow_none=True)
    chapter = fields.String(allow_none=True)
    chapter_title = fields.String(allow_none=True)
    block = fields.String(allow_none=True)
    block_title = fields.String(allow_none=True)
    parent_code = fields.String(allow_none=True)
    has_children = fields.Boolean(
        metadata={"description": "A category with subdivisions: code one of these instead"}
    )
    not_main = fields.Boolean(metadata={"description": "Not allowed as the main diagnosis"})
    never_usable = fields.Boolean()
    cause_of_death_only = fields.Boolean()
    sex = fields.String(
        allow_none=True, metadata={"enum": ["female", "male"], "description": "Only for"}
    )
    version_id = fields.Integer()


def _drug_name(drug) -> str:
    name = f"{drug.active_ingredient} {drug.strength}"
    return f"{name} ({drug.brand})" if drug.brand else name


class DrugItemSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "The facility's drug code"})
    name = fields.Function(
        _drug_name,
        metadata={"description": "Active ingredient and strength (brand)", "type": "string"},
    )
    active_ingredient = fields.String()
    brand = fields.String(allow_none=True)
    strength = fields.String()
    dosage_form = fields.String()
    route = fields.String()
    unit = fields.String()
    rx_class = fields.Enum(
        RxClass,
        by_value=True,
        metadata={"description": "N narcotic, H psychotropic/precursor, C other, OTC"},
    )
    bhyt_covered = fields.Boolean()
    bhyt_payment_rate = fields.Integer(metadata={"description": "Percent of the price"})
    price = fields.Integer(metadata={"description": "VND per unit"})
    registration_number = fields.String(allow_none=True)
    national_code = fields.String(allow_none=True)
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)


class ServiceItemSchema(ma.Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "National code of the service"})
    name = fields.String()
    kind = fields.Enum(ServiceKind, by_value=True)
    unit = fields.String(allow_none=True)
    bhyt_price = fields.Integer(metadata={"description": "VND"})
    service_price = fields.Integer(metadata={"description": "VND"})
    bhyt_covered = fields.Boolean()
    result_unit = fields.String(allow_none=True)
    reference_range = fields.String(allow_none=True)
    loinc = fields.String(allow_none=True)
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)


def _query(args: dict) -> tuple[str, object, int]:
    q = " ".join(args["q"].split())
    if not q:
        raise ValidationFailed(
            _("Type a word or the start of a code to search for."),
            errors={"q": [_("Must not be empty.")]},
        )
    return q, args["on"] or local_today(), args["limit"]


@blp.route("/catalogs/icd10")
class Icd10Search(MethodView):
    decorators = (login_required,)

    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, Icd10ItemSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 422, "`q` missing or empty, or a bad `on`/`limit`")
    def get(self, args):
        """ICD-10 codes of the list in force on `on`."""
        q, on, limit = _query(args)
        return service.search_icd10(db_session(), q, on, limit)


@blp.route("/catalogs/drugs")
class DrugSearch(MethodView):
    decorators = (login_required,)

    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, DrugItemSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 422, "`q` missing or empty, or a bad `on`/`limit`")
    def get(self, args):
        """Your facility's drugs: by code, active ingredient (any INN spelling) or brand."""
        q, on, limit = _query(args)
        facility_id = principal().facility_id
        if facility_id is None:
            return []
        return service.search_drugs(db_session(), facility_id, q, on, limit)


@blp.route("/catalogs/services")
class ServiceSearch(MethodView):
    decorators = (login_required,)

    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, ServiceItemSchema(many=True))
    @problem_doc(blp, 401)
    @problem_doc(blp, 422, "`q` missing or empty, or a bad `on`/`limit`")
    def get(self, args):
        """Your facility's technical services: examinations, lab tests, imaging, procedures."""
        q, on, limit = _query(args)
        facility_id = principal().facility_id
        if facility_id is None:
            return []
        return service.search_services(db_session(), facility_id, q, on, limit)


@blp.route("/catalogs/<string:kind>")
class UnknownCatalog(MethodView):
    decorators = (login_required,)

    @blp.response(200)
    @problem_doc(blp, 404, "Not one of icd10, drugs, services")
    def get(self, kind: str):
        """Any other catalog name is answered with 404."""
        raise NotFound(
            _("There is no catalog named %(kind)s: use icd10, drugs or services.", kind=kind[:40])
        )
