"""The doctor's screens: a room's worklist and the encounter form.

Server-rendered like reception: every form posts to a small handler that calls the same
service as the REST API and comes back to the page (post/redirect/get), so a slow PC only
renders HTML, and a refused form is shown again with what was typed and the service's
message next to the field. htmx only fetches the autocomplete suggestions and refreshes
the worklist.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import select

from his.context import db_session, principal
from his.errors import DomainError, NotFound, ValidationFailed
from his.localtime import VN_TZ, local_date, local_today
from his.models import Disposition, Encounter, EncounterStatus, Role, ServiceOrder
from his.services import catalogs
from his.services import encounters as service
from his.services import visits as visit_service

bp = Blueprint("doctor", __name__, url_prefix="/doctor")

SUGGESTIONS = 10
FIX_FIELDS = _l("Some fields are not valid; see the messages under them.")

DISPOSITION_NAMES = {
    Disposition.HOME: _l("Discharged home"),
    Disposition.FOLLOW_UP: _l("Follow-up visit"),
    Disposition.ADMIT: _l("Admit"),
    Disposition.REFER_OUT: _l("Refer to another facility"),
    Disposition.DIED: _l("Died"),
}
ORDER_STATUS_NAMES = {
    "ordered": _l("Ordered"),
    "resulted": _l("Resulted"),
    "cancelled": _l("Cancelled"),
}
TEXT_LABELS = {
    "reason": _l("Reason for visit"),
    "history": _l("History"),
    "findings": _l("Examination findings"),
    "conclusion": _l("Conclusion"),
    "advice": _l("Advice"),
}
# The names of what an amendment changed, beyond the notes.
CHANGE_LABELS = {
    **TEXT_LABELS,
    "diagnoses": _l("Diagnoses"),
    "result": _l("Result"),
    "disposition": _l("Disposition"),
    "follow_up_date": _l("Follow-up date"),
    "refer_to_facility_code": _l("To facility code"),
    "refer_reason": _l("Reason for referral"),
    "referral_letter_number": _l("Referral letter number"),
    "died_at": _l("Time of death"),
}


@bp.app_context_processor
def _names():
    return {
        "disposition_names": DISPOSITION_NAMES,
        "order_status_names": ORDER_STATUS_NAMES,
        "vital_names": service.VITAL_NAMES,
        "vital_ranges": service.VITAL_RANGES,
        "text_labels": TEXT_LABELS,
        "change_labels": CHANGE_LABELS,
        "plain": _plain_number,
        "local_input": _local_input,
    }


def _local_input(moment: dt.datetime | None) -> str:
    """A stored UTC time as a datetime-local field shows it: Vietnam's time, no offset."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(VN_TZ).strftime("%Y-%m-%dT%H:%M")


def _plain_number(value) -> str:
    """55.00 → 55, 37.50 → 37.5; empty for no value."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


# --- rooms and worklist ----------------------------------------------------------------------


@bp.get("/")
@login_required
def rooms():
    principal().require_any(*service.WORKLIST_ROLES)
    return render_template(
        "doctor/rooms.html", rooms=visit_service.rooms_of_facility(db_session(), principal())
    )


def _worklist_page(room_id: int, *, problem: str | None = None, status: int = 200):
    worklist = service.worklist(db_session(), principal(), room_id)
    called_id = request.args.get("called", type=int)
    called = next((v for v in worklist.called if v.id == called_id), None)
    return (
        render_template("doctor/worklist.html", worklist=worklist, called=called, problem=problem),
        status,
    )


@bp.get("/rooms/<int:room_id>")
@login_required
def worklist(room_id: int):
    return _worklist_page(room_id)


@bp.get("/rooms/<int:room_id>/list")
@login_required
def worklist_list(room_id: int):
    """The part of the worklist htmx refreshes."""
    worklist = service.worklist(db_session(), principal(), room_id)
    return render_template("doctor/_worklist.html", worklist=worklist)


@bp.post("/rooms/<int:room_id>/call-next")
@login_required
def call_next(room_id: int):
    try:
        visit = service.call_next(db_session(), principal(), room_id)
    except NotFound as exc:
        # The room exists (checked by the worklist below) but nobody is left to call.
        db_session().rollback()
        return _worklist_page(room_id, problem=exc.detail, status=404)
    return redirect(url_for("doctor.worklist", room_id=room_id, called=visit.id))


@bp.post("/visits/<int:visit_id>/start")
@login_required
def start(visit_id: int):
    room_id = request.form.get("room_id", type=int)
    try:
        encounter = service.start_examination(db_session(), principal(), visit_id, room_id)
    except DomainError as exc:
        running = exc.extra.get("encounter") if exc.extra else None
        if running:  # already open in this room: continue it
            return redirect(url_for("doctor.encounter", encounter_id=running["id"]))
        if room_id is None:
            raise
        db_session().rollback()
        return _worklist_page(room_id, problem=exc.detail, status=exc.status)
    return redirect(url_for("doctor.encounter", encounter_id=encounter.id))


# --- the encounter page ----------------------------------------------------------------------


def _encounter_page(
    encounter_id: int,
    *,
    section: str | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    problem: str | None = None,
    status: int = 200,
    order_id: int | None = None,
):
    """The page; after a refused post, ``section`` names the form whose ``values`` and
    ``errors`` are shown again."""
    encounter = service.get_encounter(db_session(), principal(), encounter_id)
    return (
        render_template(
            "doctor/encounter.html",
            encounter=encounter,
            patient=encounter.patient,
            latest_vitals=encounter.vitals[-1] if encounter.vitals else None,
            current_results=service.current_results,
            locked=encounter.status is EncounterStatus.FINISHED,
            section=section,
            values=values or {},
            errors=errors or {},
            problem=problem,
            error_order_id=order_id,
            today=local_today(),
            can_write=principal().has_any(service.DOCTOR_ROLES),
            can_vitals=principal().has_any(service.VITALS_ROLES),
            can_result=principal().has_any(service.RESULT_ROLES),
        ),
        status,
    )


def _refused(encounter_id: int, section: str, exc: DomainError, **extra):
    db_session().rollback()  # nothing of the refused post stays, even in this request
    return _encounter_page(
        encounter_id,
        section=section,
        values=request.form.to_dict(),
        errors=exc.errors,
        problem=exc.detail or FIX_FIELDS,
        status=exc.status,
        **extra,
    )


def _back(encounter_id: int, anchor: str):
    return redirect(url_for("doctor.encounter", encounter_id=encounter_id, _anchor=anchor))


@bp.get("/encounters/<int:encounter_id>")
@login_required
def encounter(encounter_id: int):
    return _encounter_page(encounter_id)


@bp.post("/encounters/<int:encounter_id>/notes")
@login_required
def notes(encounter_id: int):
    data = {name: request.form[name] for name in service.TEXT_FIELDS if name in request.form}
    section = "finish" if "conclusion" in data and "reason" not in data else "notes"
    try:
        service.update_encounter(
            db_session(),
            principal(),
            encounter_id,
            data,
            expected_version=request.form.get("version", type=int),
        )
    except DomainError as exc:
        return _refused(encounter_id, section, exc)
    return _back(encounter_id, section)


@bp.post("/encounters/<int:encounter_id>/amend")
@login_required
def amend(encounter_id: int):
    data = {name: request.form[name] for name in service.TEXT_FIELDS if name in request.form}
    try:
        service.update_encounter(
            db_session(),
            principal(),
            encounter_id,
            data,
            expected_version=request.form.get("version", type=int),
            amendment_reason=request.form.get("amendment_reason", "").strip() or None,
        )
    except DomainError as exc:
        return _refused(encounter_id, "amend", exc)
    return _back(encounter_id, "amendments")


@bp.post("/encounters/<int:encounter_id>/vitals")
@login_required
def vitals(encounter_id: int):
    data = {name: request.form.get(name) for name in service.VITAL_RANGES}
    try:
        service.record_vitals(db_session(), principal(), encounter_id, data)
    except DomainError as exc:
        return _refused(encounter_id, "vitals", exc)
    return _back(encounter_id, "vitals")


@bp.post("/encounters/<int:encounter_id>/diagnoses")
@login_required
def add_diagnosis(encounter_id: int):
    # A suggestion button sends its code as ``icd10``; Enter in the box sends what was typed.
    code = request.form.get("icd10") or request.form.get("icd10_q", "")
    try:
        service.add_diagnosis(
            db_session(),
            principal(),
            encounter_id,
            code,
            main=request.form.get("main") == "1",
        )
    except DomainError as exc:
        return _refused(encounter_id, "diagnoses", exc)
    return _back(encounter_id, "diagnoses")


@bp.post("/encounters/<int:encounter_id>/diagnoses/<int:diagnosis_id>/remove")
@login_required
def remove_diagnosis(encounter_id: int, diagnosis_id: int):
    try:
        service.remove_diagnosis(db_session(), principal(), encounter_id, diagnosis_id)
    except DomainError as exc:
        return _refused(encounter_id, "diagnoses", exc)
    return _back(encounter_id, "diagnoses")


@bp.post("/encounters/<int:encounter_id>/diagnoses/amend")
@login_required
def amend_diagnoses(encounter_id: int):
    """The signed encounter's coding correction: add (or, with a diagnosis chosen,
    replace) a code, or remove the chosen diagnosis; always with a reason."""
    form = request.form
    target = form.get("target", type=int)
    reason = form.get("amendment_reason", "").strip() or None
    try:
        if form.get("action") == "remove":
            if target is None:
                raise ValidationFailed(
                    str(_l("The diagnoses were not amended.")),
                    errors={"target": [str(_l("Choose the diagnosis to remove."))]},
                )
            service.remove_diagnosis(
                db_session(), principal(), encounter_id, target, amendment_reason=reason
            )
        else:
            code = form.get("icd10") or form.get("icd10_q", "")
            service.add_diagnosis(
                db_session(),
                principal(),
                encounter_id,
                code,
                main=form.get("main") == "1",
                replaces=target,
                amendment_reason=reason,
            )
    except DomainError as exc:
        return _refused(encounter_id, "amend-diagnoses", exc)
    return _back(encounter_id, "amendments")


@bp.post("/encounters/<int:encounter_id>/orders")
@login_required
def add_order(encounter_id: int):
    code = request.form.get("service_code") or request.form.get("service_q", "")
    quantity_text = request.form.get("quantity", "").strip() or "1"
    quantity: Any = int(quantity_text) if quantity_text.isdigit() else 0
    try:
        service.add_order(
            db_session(),
            principal(),
            encounter_id,
            code.strip(),
            quantity=quantity,
            note=request.form.get("note"),
        )
    except DomainError as exc:
        return _refused(encounter_id, "orders", exc)
    return _back(encounter_id, "orders")


@bp.post("/encounters/<int:encounter_id>/orders/<int:order_id>/cancel")
@login_required
def cancel_order(encounter_id: int, order_id: int):
    try:
        service.cancel_order(db_session(), principal(), encounter_id, order_id)
    except DomainError as exc:
        return _refused(encounter_id, "orders", exc)
    return _back(encounter_id, "orders")


@bp.post("/encounters/<int:encounter_id>/orders/<int:order_id>/result")
@login_required
def result(encounter_id: int, order_id: int):
    form = request.form
    try:
        if order_id not in _order_ids(encounter_id):
            raise NotFound(str(_l("This encounter has no order with this id.")))
        service.enter_result(
            db_session(),
            principal(),
            order_id,
            form.get("value", ""),
            unit=form.get("unit"),
            reference_range=form.get("reference_range"),
            conclusion=form.get("result_conclusion"),
            amendment_reason=form.get("amendment_reason", "").strip() or None,
        )
    except DomainError as exc:
        return _refused(encounter_id, "results", exc, order_id=order_id)
    return _back(encounter_id, f"order-{order_id}")


def _order_ids(encounter_id: int) -> set[int]:
    return set(
        db_session().scalars(
            select(ServiceOrder.id).where(
                ServiceOrder.encounter_id == encounter_id,
                ServiceOrder.facility_id == principal().facility_id,
            )
        )
    )


def _form_date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _form_local_time(value: str | None) -> dt.datetime | None:
    """A datetime-local field: Vietnam's time without an offset."""
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=VN_TZ) if value else None
    except ValueError:
        return None


def _finish_request(form, refused: str) -> service.Finish:
    """The disposition fields of a form; ``refused`` is the message if a date is unreadable."""
    errors: dict[str, list[str]] = {}
    follow_up = _form_date(form.get("follow_up_date"))
    if form.get("follow_up_date") and follow_up is None:
        errors["follow_up_date"] = [str(_l("Enter a date."))]
    died_at = _form_local_time(form.get("died_at"))
    if form.get("died_at") and died_at is None:
        errors["died_at"] = [str(_l("Enter a date and time."))]
    if errors:
        raise ValidationFailed(refused, errors=errors)
    return service.Finish(
        disposition=form.get("disposition") or None,
        follow_up_date=follow_up,
        refer_to_facility_code=form.get("refer_to_facility_code"),
        refer_reason=form.get("refer_reason"),
        referral_letter_number=form.get("referral_letter_number"),
        died_at=died_at,
        conclusion=form.get("conclusion"),
        advice=form.get("advice"),
    )


@bp.post("/encounters/<int:encounter_id>/finish")
@login_required
def finish(encounter_id: int):
    form = request.form
    try:
        service.finish(
            db_session(),
            principal(),
            encounter_id,
            _finish_request(form, str(_l("The encounter was not finished."))),
            expected_version=form.get("version", type=int),
        )
    except DomainError as exc:
        return _refused(encounter_id, "finish", exc)
    return _back(encounter_id, "signed")


@bp.post("/encounters/<int:encounter_id>/disposition/amend")
@login_required
def amend_disposition(encounter_id: int):
    form = request.form
    reason = form.get("amendment_reason", "").strip()
    try:
        if not reason:  # without one, finish() would take this for a second signature
            raise ValidationFailed(
                str(_l("The amendment could not be recorded.")),
                errors={"amendment_reason": [str(_l("Required to change a signed encounter."))]},
            )
        service.finish(
            db_session(),
            principal(),
            encounter_id,
            _finish_request(form, str(_l("The amendment could not be recorded."))),
            expected_version=form.get("version", type=int),
            amendment_reason=reason,
        )
    except DomainError as exc:
        return _refused(encounter_id, "amend-disposition", exc)
    return _back(encounter_id, "amendments")


# --- autocomplete ----------------------------------------------------------------------------


def _encounter_day(encounter_id: int | None) -> dt.date:
    """The day whose catalogs the suggestions come from: the encounter's end date once it
    is signed (an amendment is coded with that list), its first day before, else today.
    Read without an audit row: the suggestions hold no patient data."""
    if encounter_id is not None:
        row = (
            db_session()
            .execute(
                select(Encounter.started_at, Encounter.finished_at).where(
                    Encounter.id == encounter_id, Encounter.facility_id == principal().facility_id
                )
            )
            .first()
        )
        if row is not None:
            return local_date(row.finished_at or row.started_at)
    return local_today()


@bp.get("/icd10")
@login_required
def icd10_suggestions():
    principal().require_any(Role.DOCTOR)
    q = request.args.get("icd10_q", "").strip()
    on = _encounter_day(request.args.get("encounter_id", type=int))
    codes = catalogs.search_icd10(db_session(), q, on, SUGGESTIONS) if len(q) >= 2 else []
    return render_template("doctor/_icd10_options.html", codes=codes, q=q)


@bp.get("/services")
@login_required
def service_suggestions():
    principal().require_any(Role.DOCTOR)
    q = request.args.get("service_q", "").strip()
    on = _encounter_day(request.args.get("encounter_id", type=int))
    found = (
        catalogs.search_services(db_session(), principal().facility_id, q, on, SUGGESTIONS)
        if len(q) >= 2
        else []
    )
    return render_template("doctor/_service_options.html", services=found, q=q)
