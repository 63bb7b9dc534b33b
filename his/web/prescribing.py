"""The doctor's prescription builder, the prescription view and the printable A5 form.

The builder posts the same fields as the REST API to the same services. While the doctor
types, htmx posts the form to a check endpoint that answers with the computed quantities
and the broken rules, so a violation is seen before signing; signing checks again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import select

from his.context import db_session, principal
from his.db import utcnow
from his.errors import DomainError, ValidationFailed
from his.localtime import local_date
from his.models import (
    EncounterStatus,
    EPrescriptionSubmission,
    Facility,
    IdentifierType,
    PrescriptionStatus,
    PrescriptionType,
    SubmissionStatus,
    TreatmentCourse,
    User,
)
from his.services import catalogs
from his.services import prescriptions as service
from his.web import code128
from his.web.reception import qr_data_uri

bp = Blueprint("prescribing", __name__, url_prefix="/doctor/prescriptions")

SUGGESTIONS = 10
BLANK_ROWS = 2
ITEM_FIELDS = (
    "drug_code",
    "drug_search",
    "dose",
    "times_per_day",
    "days",
    "route",
    "instructions",
    "quantity",
    "quantity_reason",
)
HEADER_FIELDS = (
    "course",
    "weight_kg",
    "age_months",
    "guardian_name",
    "guardian_id_number",
    "advice",
    "follow_up_date",
)
FIX_FIELDS = _l("Some fields are not valid; see the messages under them.")
TYPE_TITLES = {
    PrescriptionType.OTHER: _l("Prescription"),
    PrescriptionType.NARCOTIC: _l("Prescription “N” (narcotic drugs)"),
    PrescriptionType.PSYCHOTROPIC: _l("Prescription “H” (psychotropic drugs and precursors)"),
}
STATUS_NAMES = {
    PrescriptionStatus.DRAFT: _l("Draft"),
    PrescriptionStatus.SIGNED: _l("Signed"),
    PrescriptionStatus.REPLACED: _l("Replaced"),
    PrescriptionStatus.CANCELLED: _l("Cancelled"),
}
SUBMISSION_NAMES = {
    SubmissionStatus.PENDING: _l("waiting to be sent"),
    SubmissionStatus.ACCEPTED: _l("sent and accepted"),
    SubmissionStatus.REJECTED: _l("refused: needs a person to look at it"),
    SubmissionStatus.WITHDRAWN: _l("withdrawn: replaced before it was sent"),
}
COURSE_NAMES = {
    TreatmentCourse.ACUTE: _l("Acute"),
    TreatmentCourse.CHRONIC: _l("Chronic (long-term, cancer pain)"),
}


@bp.app_context_processor
def _names():
    return {
        "rx_type_titles": TYPE_TITLES,
        "rx_status_names": STATUS_NAMES,
        "rx_course_names": COURSE_NAMES,
        "submission_names": SUBMISSION_NAMES,
    }


# --- the form --------------------------------------------------------------------------------


@dataclass
class ParsedForm:
    data: service.PrescriptionInput | None
    rows: list[int]  # the form row of each item sent to the service
    errors: dict[str, list[str]]


def _row_indices(form) -> list[int]:
    rows = set()
    for key in form:
        parts = key.split("-")
        if len(parts) == 3 and parts[0] == "items" and parts[1].isdigit():
            rows.add(int(parts[1]))
    return sorted(rows)


def _decimal(text: str) -> Decimal:
    value = Decimal(text.strip().replace(",", "."))
    if not value.is_finite():
        raise InvalidOperation(text)
    return value


def parse_form(form, *, search_as_code: bool = True) -> ParsedForm:
    """The builder's flat fields as service input; a number that cannot be read is a field
    error under its own input. Rows without a drug are ignored; a line whose drug was typed
    but not picked counts the text as a drug code, except while checking as the doctor types
    (``search_as_code=False``), which would report a half-typed name as unknown."""
    errors: dict[str, list[str]] = {}
    items, rows = [], []
    number = str(_l("Enter a number."))
    for row in _row_indices(form):

        def get(name: str, row: int = row) -> str:
            return form.get(f"items-{row}-{name}", "").strip()

        code = get("drug_code") or (get("drug_search") if search_as_code else "")
        if not code:
            continue
        values: dict[str, Any] = {}
        for name, parse in (
            ("dose", _decimal),
            ("times_per_day", int),
            ("days", int),
            ("quantity", _decimal),
        ):
            text = get(name)
            if not text:
                values[name] = None
                continue
            try:
                values[name] = parse(text)
            except (ValueError, InvalidOperation):
                errors[f"items-{row}-{name}"] = [number]
        for name in ("dose", "times_per_day", "days"):
            if values.get(name) is None and f"items-{row}-{name}" not in errors:
                errors[f"items-{row}-{name}"] = [str(_l("Required."))]
        items.append(
            service.ItemInput(
                drug_code=code,
                dose=values.get("dose"),
                times_per_day=values.get("times_per_day"),
                days=values.get("days"),
                route=get("route") or None,
                instructions=get("instructions") or None,
                quantity=values.get("quantity"),
                quantity_reason=get("quantity_reason") or None,
            )
        )
        rows.append(row)
    header: dict[str, Any] = {}
    for name, parse in (("weight_kg", _decimal), ("age_months", int)):
        text = form.get(name, "").strip()
        try:
            header[name] = parse(text) if text else None
        except (ValueError, InvalidOperation):
            errors[name] = [number]
    follow_up = form.get("follow_up_date", "").strip()
    try:
        header["follow_up_date"] = dt.date.fromisoformat(follow_up) if follow_up else None
    except ValueError:
        errors["follow_up_date"] = [str(_l("Enter a date."))]
    course = form.get("course", "acute")
    header["course"] = (
        TreatmentCourse(course) if course in set(TreatmentCourse) else TreatmentCourse.ACUTE
    )
    for name in ("guardian_name", "guardian_id_number", "advice"):
        header[name] = form.get(name, "").strip() or None
    if not items and not errors:
        errors["items"] = [str(_l("Add at least one drug."))]
    if errors:
        return ParsedForm(None, rows, errors)
    return ParsedForm(service.PrescriptionInput(items=items, **header), rows, {})


def form_errors(errors: dict[str, list[str]], rows: list[int]) -> dict[str, list[str]]:
    """Service keys (items.1.days) → form names (items-3-days): blank rows were skipped."""
    flat: dict[str, list[str]] = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if parts[0] == "items" and len(parts) == 3 and parts[1].isdigit():
            index = int(parts[1])
            row = rows[index] if index < len(rows) else index
            name = "drug_search" if parts[2] == "drug_code" else parts[2]
            key = f"items-{row}-{name}"
        flat.setdefault(key, []).extend(messages)
    return flat


def _plain(value) -> str:
    if value is None:
        return ""
    text = f"{Decimal(value):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _values_of(rx) -> dict[str, str]:
    values = {
        "course": rx.course.value,
        "weight_kg": _plain(rx.weight_kg),
        "age_months": "" if rx.age_months is None else str(rx.age_months),
        "guardian_name": rx.guardian_name or "",
        "guardian_id_number": rx.guardian_id_number or "",
        "advice": rx.advice or "",
        "follow_up_date": rx.follow_up_date.isoformat() if rx.follow_up_date else "",
    }
    for row, item in enumerate(rx.items):
        values.update(
            {
                f"items-{row}-drug_code": item.drug_code,
                f"items-{row}-drug_search": item.drug_name,
                f"items-{row}-dose": _plain(item.dose),
                f"items-{row}-times_per_day": str(item.times_per_day),
                f"items-{row}-days": str(item.days),
                f"items-{row}-route": item.route or "",
                f"items-{row}-instructions": item.instructions or "",
                f"items-{row}-quantity": _plain(item.quantity)
                if item.quantity != item.computed_quantity
                else "",
                f"items-{row}-quantity_reason": item.quantity_reason or "",
            }
        )
    return values


def _prefilled(encounter) -> dict[str, str]:
    known = service.prefill(db_session(), encounter, local_date(utcnow()))
    return {
        "course": "acute",
        "weight_kg": _plain(known["weight_kg"]),
        "age_months": "" if known["age_months"] is None else str(known["age_months"]),
        "guardian_name": known["guardian_name"] or "",
        "guardian_id_number": known["guardian_id_number"] or "",
        "advice": encounter.advice or "",
        "follow_up_date": encounter.follow_up_date.isoformat() if encounter.follow_up_date else "",
    }


def _row_count(values: dict[str, str]) -> int:
    used = [int(k.split("-")[1]) for k in values if k.startswith("items-") and values[k]]
    return (max(used) + 1 if used else 0) + BLANK_ROWS


def _builder(
    encounter,
    values: dict[str, str],
    *,
    rx=None,
    replacing=None,
    errors: dict[str, list[str]] | None = None,
    violations=None,
    problem: str | None = None,
    status: int = 200,
):
    existing = service.list_for_encounter(db_session(), principal(), encounter.id)
    return (
        render_template(
            "prescribing/builder.html",
            encounter=encounter,
            patient=encounter.patient,
            rx=rx,
            replacing=replacing,
            existing=[p for p in existing if rx is None or p.id != rx.id],
            values=values,
            errors=errors or {},
            violations=violations or [],
            problem=problem,
            rows=range(_row_count(values)),
            in_progress=encounter.status is EncounterStatus.IN_PROGRESS,
        ),
        status,
    )


def _refused(encounter, exc: DomainError, values, rows, **extra):
    db_session().rollback()
    encounter = service.encounter_for(db_session(), principal(), encounter.id)
    return _builder(
        encounter,
        values,
        errors=form_errors(exc.errors, rows),
        violations=[_violation_for_form(v, rows) for v in (exc.extra or {}).get("violations", [])],
        problem=exc.detail or str(FIX_FIELDS),
        status=exc.status,
        **extra,
    )


def _violation_for_form(v: dict[str, str], rows: list[int]) -> dict[str, str]:
    return {**v, "label": _field_label(v["field"], rows)}


def _field_label(field: str, rows: list[int]) -> str:
    parts = field.split(".")
    if parts[0] == "items" and len(parts) == 3 and parts[1].isdigit():
        return str(_l("Line %(n)s", n=int(parts[1]) + 1))
    labels = {
        "age_months": _l("Age in months"),
        "weight_kg": _l("Weight (kg)"),
        "guardian_name": _l("Accompanying adult"),
    }
    return str(labels.get(field, field))


# --- builder ---------------------------------------------------------------------------------


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    encounter_id = request.args.get("encounter_id", type=int)
    if encounter_id is None:
        abort(404)
    session, who = db_session(), principal()
    encounter = service.encounter_for(session, who, encounter_id)
    if request.method == "GET":
        return _builder(encounter, _prefilled(encounter))
    values = request.form.to_dict()
    parsed = parse_form(request.form)
    if parsed.data is None:
        return _builder(
            encounter, values, errors=parsed.errors, problem=str(FIX_FIELDS), status=422
        )
    try:
        draft = service.create_draft(session, who, encounter.id, parsed.data)
        if request.form.get("action") == "sign":
            service.sign(session, who, draft.id)
            return redirect(url_for("prescribing.view", prescription_id=draft.id, signed=1))
    except DomainError as exc:
        return _refused(encounter, exc, values, parsed.rows)
    return redirect(url_for("prescribing.edit", prescription_id=draft.id, saved=1))


@bp.route("/<int:prescription_id>/edit", methods=["GET", "POST"])
@login_required
def edit(prescription_id: int):
    session, who = db_session(), principal()
    checked = service.get_prescription(session, who, prescription_id)
    rx = checked.prescription
    if rx.status is not PrescriptionStatus.DRAFT:
        return redirect(url_for("prescribing.view", prescription_id=rx.id))
    encounter = service.encounter_for(session, who, rx.encounter_id)
    if request.method == "GET":
        rows = list(range(len(rx.items)))
        return _builder(
            encounter,
            _values_of(rx),
            rx=rx,
            violations=[_violation_for_form(v.as_dict(), rows) for v in checked.violations],
        )
    values = request.form.to_dict()
    parsed = parse_form(request.form)
    if parsed.data is None:
        return _builder(
            encounter, values, rx=rx, errors=parsed.errors, problem=str(FIX_FIELDS), status=422
        )
    try:
        service.update_draft(session, who, rx.id, parsed.data)
        if request.form.get("action") == "sign":
            service.sign(session, who, rx.id)
            return redirect(url_for("prescribing.view", prescription_id=rx.id, signed=1))
    except DomainError as exc:
        return _refused(encounter, exc, values, parsed.rows, rx=rx)
    return redirect(url_for("prescribing.edit", prescription_id=rx.id, saved=1))


@bp.route("/<int:prescription_id>/replace", methods=["GET", "POST"])
@login_required
def replace(prescription_id: int):
    session, who = db_session(), principal()
    old = service.get_prescription(session, who, prescription_id).prescription
    encounter = service.encounter_for(session, who, old.encounter_id)
    if request.method == "GET":
        return _builder(encounter, _values_of(old), replacing=old)
    values = request.form.to_dict()
    parsed = parse_form(request.form)
    reason = request.form.get("reason", "").strip()
    if parsed.data is None:
        return _builder(
            encounter,
            values,
            replacing=old,
            errors=parsed.errors,
            problem=str(FIX_FIELDS),
            status=422,
        )
    try:
        new_rx = service.replace(session, who, old.id, reason, parsed.data)
    except DomainError as exc:
        return _refused(encounter, exc, values, parsed.rows, replacing=old)
    return redirect(url_for("prescribing.view", prescription_id=new_rx.id, signed=1))


@bp.post("/check")
@login_required
def check():
    """The fragment htmx swaps in while the doctor types: violations, computed quantities."""
    encounter_id = request.args.get("encounter_id", type=int) or 0
    parsed = parse_form(request.form, search_as_code=False)
    if parsed.data is None:
        return render_template(
            "prescribing/_check.html",
            violations=[],
            input_errors=form_errors(parsed.errors, parsed.rows),
            computed=[],
        )
    try:
        violations, computed = service.validate(
            db_session(),
            principal(),
            encounter_id,
            parsed.data,
            prescription_id=request.args.get("prescription_id", type=int),
            replaces_id=request.args.get("replaces_id", type=int),
        )
    except ValidationFailed as exc:
        return render_template(
            "prescribing/_check.html",
            violations=[],
            input_errors=form_errors(exc.errors, parsed.rows),
            computed=[],
        )
    return render_template(
        "prescribing/_check.html",
        violations=[_violation_for_form(v.as_dict(), parsed.rows) for v in violations],
        input_errors={},
        computed=list(zip(parsed.rows, computed, strict=True)),
        plain=_plain,
    )


@bp.get("/drugs")
@login_required
def drug_suggestions():
    row = request.args.get("row", type=int) or 0
    q = next(
        (v for k, v in request.args.items() if k.endswith("drug_search") or k == "q"), ""
    ).strip()
    drugs = []
    if len(q) >= 2:
        drugs = catalogs.search_drugs(
            db_session(), principal().facility_id, q, local_date(utcnow()), limit=SUGGESTIONS
        )
    return render_template(
        "prescribing/_drug_options.html", drugs=drugs, row=row, q=q, name_of=service.drug_name
    )


# --- view, sign, print -----------------------------------------------------------------------


@bp.get("/<int:prescription_id>")
@login_required
def view(prescription_id: int):
    checked = service.get_prescription(db_session(), principal(), prescription_id)
    rx = checked.prescription
    rows = list(range(len(rx.items)))
    submission = db_session().scalar(
        select(EPrescriptionSubmission).where(EPrescriptionSubmission.prescription_id == rx.id)
    )
    return render_template(
        "prescribing/view.html",
        rx=rx,
        patient=rx.patient,
        violations=[_violation_for_form(v.as_dict(), rows) for v in checked.violations],
        signed=request.args.get("signed"),
        submission=submission,
        plain=_plain,
    )


@bp.post("/<int:prescription_id>/sign")
@login_required
def sign(prescription_id: int):
    try:
        service.sign(db_session(), principal(), prescription_id)
    except DomainError as exc:
        db_session().rollback()
        checked = service.get_prescription(db_session(), principal(), prescription_id)
        rows = list(range(len(checked.prescription.items)))
        return (
            render_template(
                "prescribing/view.html",
                rx=checked.prescription,
                patient=checked.prescription.patient,
                violations=[
                    _violation_for_form(v, rows) for v in (exc.extra or {}).get("violations", [])
                ],
                problem=exc.detail,
                plain=_plain,
            ),
            exc.status,
        )
    return redirect(url_for("prescribing.view", prescription_id=prescription_id, signed=1))


def print_quantity(quantity, rx_type: PrescriptionType) -> str:
    """Under 10 with a leading zero ("05"); a narcotic's quantity also in words."""
    value = Decimal(quantity)
    if value != value.to_integral_value():
        return _plain(value)
    whole = int(value)
    text = f"{whole:02d}"
    if rx_type is PrescriptionType.NARCOTIC:
        text += f" ({vietnamese_number(whole)})"
    return text


_DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")


def _below_thousand(n: int, full: bool) -> str:
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words = []
    if hundreds or full:
        words += [_DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units and (hundreds or full):
            words.append("linh")
    elif tens == 1:
        words.append("mười")
    else:
        words += [_DIGITS[tens], "mươi"]
    if units:
        if units == 1 and tens > 1:
            words.append("mốt")
        elif units == 5 and tens > 0:
            words.append("lăm")
        elif units == 4 and tens > 1:
            words.append("tư")
        else:
            words.append(_DIGITS[units])
    return " ".join(words)


def vietnamese_number(n: int) -> str:
    """A whole number in Vietnamese words, as the law asks for narcotic quantities."""
    if n == 0:
        return "không"
    groups = []
    while n:
        n, group = divmod(n, 1000)
        groups.append(group)
    scales = ("", "nghìn", "triệu", "tỷ")
    words = []
    for i in range(len(groups) - 1, -1, -1):
        group = groups[i]
        if group == 0:
            continue
        words.append(_below_thousand(group, full=i < len(groups) - 1))
        if scales[i]:
            words.append(scales[i])
    return " ".join(words)


@bp.get("/<int:prescription_id>/print")
@login_required
def print_page(prescription_id: int):
    checked = service.get_prescription(db_session(), principal(), prescription_id)
    rx = checked.prescription
    facility = db_session().get(Facility, rx.facility_id)
    encounter = service.encounter_for(db_session(), principal(), rx.encounter_id)
    diagnoses = service.diagnoses_as_signed(db_session(), rx)
    if diagnoses is None:  # a draft: what the encounter says now
        diagnoses = sorted(encounter.diagnoses, key=lambda d: (not d.is_main, d.position))
    return render_template(
        "prescribing/print.html",
        rx=rx,
        patient=rx.patient,
        encounter=encounter,
        diagnoses=diagnoses,
        facility=facility,
        cccd=rx.patient.identifier(IdentifierType.CCCD),
        qr=qr_data_uri(rx.code) if rx.code else None,
        barcode=code128.data_uri(rx.code) if rx.code else None,
        quantity=print_quantity,
        signed_day=local_date(rx.signed_at) if rx.signed_at else None,
        doctor=db_session().get(User, rx.signed_by_id or rx.prescriber_id),
        plain=_plain,
    )
