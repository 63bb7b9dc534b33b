"""The receptionist's screens: search, register, edit, open a visit, the slip, the boards.

Server-rendered (Jinja2 + htmx): a slow commune-station PC only renders HTML. Forms post
the same fields as the REST API and go through the same services, so a rule checked here
is the rule checked there.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import segno
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from his.context import db_session, principal
from his.errors import Conflict, DomainError, ValidationFailed
from his.models import Facility, Payment, PriorityReason, VisitType
from his.partial_date import PartialDate
from his.services import patients as patient_service
from his.services import visits as visit_service
from his.services.access import PATIENT_ROLES
from his.services.admin_units import communes_of

bp = Blueprint("reception", __name__, url_prefix="/reception")
boards = Blueprint("boards", __name__, url_prefix="/queues")

SEARCH_PAGE = 20

PRIORITY_NAMES = {
    PriorityReason.EMERGENCY: _l("Emergency"),
    PriorityReason.CHILD_UNDER_6: _l("Child under 6"),
    PriorityReason.PREGNANT: _l("Pregnant"),
    PriorityReason.DISABILITY: _l("Disability"),
    PriorityReason.AGE_75: _l("Aged 75 or over"),
    PriorityReason.REVOLUTIONARY_CONTRIBUTOR: _l("Revolutionary contributor"),
}
VISIT_TYPE_NAMES = {
    VisitType.OUTPATIENT: _l("Outpatient"),
    VisitType.EMERGENCY: _l("Emergency"),
    VisitType.INPATIENT: _l("Inpatient"),
    VisitType.DAY: _l("Day treatment"),
    VisitType.OBSERVATION: _l("Observation"),
}
PAYMENT_NAMES = {Payment.BHYT: _l("Health insurance (BHYT)"), Payment.FEE: _l("Fee-paying")}
SEX_NAMES = {"male": _l("Male"), "female": _l("Female"), "undetermined": _l("Undetermined")}


@bp.app_context_processor
def _names():
    return {
        "priority_names": PRIORITY_NAMES,
        "visit_type_names": VISIT_TYPE_NAMES,
        "payment_names": PAYMENT_NAMES,
        "sex_names": SEX_NAMES,
        "birth_display": lambda p: p.birth.display(),
    }


def _facility() -> Facility:
    return db_session().get(Facility, principal().facility_id)


# --- search --------------------------------------------------------------------------------


@bp.get("/")
@login_required
def search_page():
    return render_template("reception/search.html", q="", birth_year=None, searched=False)


@bp.post("/search")
@login_required
def search_results():
    """The patients found. The query comes in the body, never in the URL, where browser
    history, proxies and access logs would keep a name or an ID number. htmx posts it as
    the receptionist types and swaps in the fragment; the form posts it without scripts
    and gets the whole page. Searching changes nothing, so it needs no re-authentication;
    like every POST it carries the CSRF token."""
    principal().require_any(*PATIENT_ROLES)
    q = request.form.get("q", "").strip()
    birth_year = request.form.get("birth_year", type=int)
    if birth_year is not None and not 1880 <= birth_year <= 2200:
        birth_year = None  # the field's own bounds; a year past them matches no one
    context: dict[str, Any] = {"patients": [], "q": q, "birth_year": birth_year, "searched": False}
    if q or birth_year is not None:
        query = patient_service.SearchQuery(q=q, birth_year=birth_year)
        found = patient_service.search_patients(db_session(), principal(), query, limit=SEARCH_PAGE)
        context.update(patients=found.patients, has_more=found.has_more, searched=True)
    if request.headers.get("HX-Request"):
        return render_template("reception/_results.html", **context)
    return render_template("reception/search.html", **context)


# --- register and edit ----------------------------------------------------------------------


# Old ID numbers have their own fields; the API takes them as identifiers with these systems.
FORM_IDENTIFIERS = ("cmnd", "passport")
LEGACY_ADDRESS = ("legacy_province_code", "legacy_district_code", "legacy_commune_code")


def form_to_data(form, kept_identifiers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The form's flat fields in the REST API's shape; empty fields are left out of the
    optional groups so they do not count as given. ``kept_identifiers`` are the other
    systems' ids the form does not show, sent back so an edit keeps them."""

    def text(name: str) -> str | None:
        value = form.get(name, "").strip()
        return value or None

    def date(name: str) -> dt.date | str | None:
        value = text(name)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value  # reported by the service as an invalid date

    data: dict[str, Any] = {
        "full_name": text("full_name") or "",
        "sex": text("sex") or "",
        "birth_date": text("birth_date") or "",
        "cccd": text("cccd"),
        "phone": text("phone"),
        "ethnicity_code": text("ethnicity_code"),
        "nationality": text("nationality") or "VN",
        "occupation_code": text("occupation_code"),
        "address": {
            "line": text("address_line"),
            "province_code": text("province_code"),
            "commune_code": text("commune_code"),
            **{code: text(code) for code in LEGACY_ADDRESS},
        },
        "identifiers": [
            {"system": system, "value": text(system)} for system in FORM_IDENTIFIERS if text(system)
        ]
        + list(kept_identifiers or []),
    }
    if any(text(f"guardian_{k}") for k in ("name", "relation", "phone", "cccd")):
        data["guardian"] = {k: text(f"guardian_{k}") for k in ("name", "relation", "phone", "cccd")}
    else:
        data["guardian"] = None
    if text("card_number"):
        data["insurance"] = {
            "card_number": text("card_number"),
            "valid_from": date("card_valid_from"),
            "valid_to": date("card_valid_to"),
            "registered_facility_code": text("card_facility"),
        }
    allergies = [a.strip() for a in form.get("allergies", "").split(";") if a.strip()]
    data["allergies"] = [{"substance": a} for a in allergies]
    return data


# The form's fields in screen order: after a refused submit, focus goes to the first wrong one.
FORM_ORDER = (
    "full_name",
    "sex",
    "birth_date",
    "cccd",
    "cmnd",
    "passport",
    "phone",
    "ethnicity_code",
    "nationality",
    "occupation_code",
    "address_line",
    "province_code",
    "commune_code",
    "legacy_province_code",
    "legacy_district_code",
    "legacy_commune_code",
    "card_number",
    "card_valid_from",
    "card_valid_to",
    "card_facility",
    "guardian_name",
    "guardian_relation",
    "guardian_phone",
    "guardian_cccd",
    "allergies",
)
FIX_FIELDS = _l("Some fields are not valid; see the messages under them.")


def _form_context(values: dict[str, str], errors: dict[str, list[str]], **extra):
    facility = _facility()
    return {
        "values": values,
        "errors": errors,
        "focus": next((name for name in FORM_ORDER if name in errors), "full_name"),
        "communes": communes_of(
            db_session(), values.get("province_code") or facility.province_code
        ),
        "facility": facility,
        **extra,
    }


def _values_of(patient) -> dict[str, str]:
    card = patient.coverage
    return {
        "full_name": patient.full_name,
        "sex": patient.sex.value,
        "birth_date": PartialDate(
            patient.birth_year, patient.birth_month, patient.birth_day
        ).display(),
        "cccd": patient.identifier("cccd") or "",
        "phone": patient.phone or "",
        "ethnicity_code": patient.ethnicity_code or "",
        "nationality": patient.nationality,
        "occupation_code": patient.occupation_code or "",
        "address_line": patient.address_line or "",
        "province_code": patient.province_code or "",
        "commune_code": patient.commune_code or "",
        "guardian_name": patient.guardian_name or "",
        "guardian_relation": patient.guardian_relation or "",
        "guardian_phone": patient.guardian_phone or "",
        "guardian_cccd": patient.guardian_cccd or "",
        "card_number": card.card_number if card else "",
        "card_valid_from": card.valid_from.isoformat() if card and card.valid_from else "",
        "card_valid_to": card.valid_to.isoformat() if card and card.valid_to else "",
        "card_facility": card.registered_facility_code or "" if card else "",
        "allergies": "; ".join(a.substance for a in patient.allergies),
        "version": str(patient.version),
        "cmnd": patient.identifier("cmnd") or "",
        "passport": patient.identifier("passport") or "",
        **{code: getattr(patient, code) or "" for code in LEGACY_ADDRESS},
    }


def _external_ids(patient) -> list[dict[str, str]]:
    return [
        {"system": i.system, "value": i.value} for i in patient.identifiers if i.type == "external"
    ]


def _flat_errors(errors: dict[str, list[str]], form_values) -> dict[str, list[str]]:
    """Service error keys (address.commune_code, insurance.card_number) → form field names."""
    renames = {
        "address.line": "address_line",
        "address.province_code": "province_code",
        "address.commune_code": "commune_code",
        "insurance.card_number": "card_number",
        "insurance.valid_from": "card_valid_from",
        "insurance.valid_to": "card_valid_to",
        "insurance.registered_facility_code": "card_facility",
    }
    flat: dict[str, list[str]] = {}
    shown_ids = [system for system in FORM_IDENTIFIERS if form_values.get(system)]
    for key, messages in errors.items():
        name = renames.get(key, key.replace("guardian.", "guardian_").replace("address.", ""))
        if name.startswith("allergies."):
            name = "allergies"
        if name.startswith("identifiers."):
            # The form's own id fields lead the list it sends, in FORM_IDENTIFIERS order.
            index = int(name.split(".")[1])
            name = shown_ids[index] if index < len(shown_ids) else "cmnd"
        flat.setdefault(name, []).extend(messages)
    return flat


@bp.route("/patients/new", methods=["GET", "POST"])
@login_required
def register():
    if request.method == "GET":
        values = {"province_code": _facility().province_code, "nationality": "VN"}
        return render_template(
            "reception/patient_form.html", **_form_context(values, {}, mode="new")
        )
    values = request.form.to_dict()
    try:
        patient = patient_service.register_patient(
            db_session(),
            principal(),
            form_to_data(request.form),
            checker=current_app.extensions["his_card_checker"],
            allow_possible_duplicate=request.form.get("confirm_new_person") == "1",
        )
    except patient_service.PossibleDuplicate as exc:
        context = _form_context(values, {}, mode="new", duplicates=exc.similar)
        return render_template("reception/patient_form.html", **context), 409
    except Conflict as exc:
        context = _form_context(
            values, _flat_errors(exc.errors, values), mode="new", problem=exc.detail
        )
        return render_template("reception/patient_form.html", **context), 409
    except ValidationFailed as exc:
        context = _form_context(
            values, _flat_errors(exc.errors, values), mode="new", problem=FIX_FIELDS
        )
        return render_template("reception/patient_form.html", **context), 422
    return redirect(url_for("reception.open_visit", patient_id=patient.id, registered=1))


@bp.route("/patients/<int:patient_id>/edit", methods=["GET", "POST"])
@login_required
def edit(patient_id: int):
    if request.method == "GET":
        patient = patient_service.get_patient(db_session(), principal(), patient_id)
        context = _form_context(_values_of(patient), {}, mode="edit", patient=patient)
        return render_template("reception/patient_form.html", **context)
    values = request.form.to_dict()
    version = request.form.get("version", type=int)
    try:
        patient_service.update_patient(
            db_session(),
            principal(),
            patient_id,
            form_to_data(
                request.form, _external_ids(patient_service.load_patient(db_session(), patient_id))
            ),
            expected_version=version,
            checker=current_app.extensions["his_card_checker"],
        )
    except DomainError as exc:
        patient = patient_service.load_patient(db_session(), patient_id)
        errors = _flat_errors(exc.errors, values)
        problem = FIX_FIELDS if isinstance(exc, ValidationFailed) else exc.detail
        context = _form_context(values, errors, mode="edit", patient=patient, problem=problem)
        return render_template("reception/patient_form.html", **context), exc.status
    return redirect(url_for("reception.open_visit", patient_id=patient_id))


# --- visits ----------------------------------------------------------------------------------


@bp.route("/patients/<int:patient_id>/visit", methods=["GET", "POST"])
@login_required
def open_visit(patient_id: int):
    session = db_session()
    patient = patient_service.get_patient(session, principal(), patient_id)
    rooms = visit_service.rooms_of_facility(session, principal())
    values = (
        request.form.to_dict()
        if request.method == "POST"
        else {
            "payment": "bhyt" if patient.coverage else "fee",
            "visit_type": "outpatient",
        }
    )
    errors: dict[str, list[str]] = {}
    problem = None
    status = 200
    if request.method == "POST":
        referral = None
        if values.get("referral_from"):
            referral = visit_service.Referral(
                from_facility_code=values.get("referral_from", "").strip(),
                letter_number=values.get("referral_letter", "").strip(),
                date=_parse_date(values.get("referral_date")),
                diagnosis=values.get("referral_diagnosis", "").strip() or None,
            )
        try:
            visit = visit_service.open_visit(
                session,
                principal(),
                visit_service.VisitRequest(
                    patient_id=patient.id,
                    room_id=int(values.get("room_id") or 0),
                    visit_type=VisitType(values.get("visit_type") or "outpatient"),
                    payment=Payment(values.get("payment") or "fee"),
                    referral=referral,
                    priority_reason=PriorityReason(values["priority_reason"])
                    if values.get("priority_reason")
                    else None,
                ),
            )
        except DomainError as exc:
            errors = {k.replace("referral.", "referral_"): v for k, v in exc.errors.items()}
            problem, status = exc.detail, exc.status
        else:
            return redirect(url_for("reception.slip", visit_id=visit.id))
    return (
        render_template(
            "reception/visit_form.html",
            patient=patient,
            rooms=rooms,
            values=values,
            errors=errors,
            problem=problem,
            registered=request.args.get("registered"),
        ),
        status,
    )


def _parse_date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def qr_data_uri(text: str) -> str:
    """A PNG QR code as a data: URI (allowed by the CSP's img-src), no JavaScript; PNG
    rather than SVG because receipt printers' drivers rasterise it as is."""
    return segno.make(text, error="m").png_data_uri(scale=4, border=2)


@bp.get("/visits/<int:visit_id>/slip")
@login_required
def slip(visit_id: int):
    visit = visit_service.get_visit(db_session(), principal(), visit_id)
    return render_template(
        "reception/slip.html",
        visit=visit,
        facility=_facility(),
        qr=qr_data_uri(visit.visit_code),
        width=request.args.get("width", "a5"),
    )


# --- queue boards ----------------------------------------------------------------------------


@boards.get("/")
@login_required
def rooms():
    return render_template(
        "reception/rooms.html", rooms=visit_service.rooms_of_facility(db_session(), principal())
    )


@boards.get("/<int:room_id>/board")
@login_required
def board(room_id: int):
    queue = visit_service.room_queue(db_session(), principal(), room_id)
    return render_template("reception/board.html", queue=queue, facility=_facility())


@boards.get("/<int:room_id>/board/live")
@login_required
def board_live(room_id: int):
    """The part of the board htmx refreshes every few seconds."""
    queue = visit_service.room_queue(db_session(), principal(), room_id)
    return render_template("reception/_board_lists.html", queue=queue)
