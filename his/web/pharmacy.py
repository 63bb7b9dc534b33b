"""The pharmacist's screens: prescriptions waiting, the lot plan and dispensing, returns,
receiving stock and the stock list.

Forms go through the same services as the REST API, so the first-expiry-first-out rule,
the stock checks and the role checks are the ones the API enforces.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from his.context import db_session, principal
from his.errors import DomainError
from his.localtime import local_today
from his.models import DispenseKind, PrescriptionStatus, PrescriptionType
from his.services import stock as service

bp = Blueprint("pharmacy", __name__, url_prefix="/pharmacy")

RECEIPT_ROWS = 5
MAX_RECEIPT_ROWS = 40

RX_TYPE_NAMES = {
    PrescriptionType.OTHER: _l("Ordinary (C)"),
    PrescriptionType.NARCOTIC: _l("Narcotic (N)"),
    PrescriptionType.PSYCHOTROPIC: _l("Psychotropic (H)"),
}
STATUS_NAMES = {
    PrescriptionStatus.DRAFT: _l("Draft"),
    PrescriptionStatus.SIGNED: _l("Signed"),
    PrescriptionStatus.REPLACED: _l("Replaced"),
    PrescriptionStatus.CANCELLED: _l("Cancelled"),
}
KIND_NAMES = {DispenseKind.DISPENSE: _l("Dispensed"), DispenseKind.RETURN: _l("Returned")}


@bp.app_template_filter("pharmacy_qty")
def pharmacy_qty(value) -> str:
    return service.display_quantity(value)


@bp.context_processor
def _names():
    return {
        "rx_type_names": RX_TYPE_NAMES,
        "rx_status_names": STATUS_NAMES,
        "dispense_kind_names": KIND_NAMES,
    }


# --- the queue --------------------------------------------------------------------------------


@bp.get("/")
@login_required
def queue():
    waiting = service.waiting_prescriptions(db_session(), principal())
    return render_template("pharmacy/queue.html", waiting=waiting)


@bp.get("/queue/rows")
@login_required
def queue_rows():
    """The table body htmx refreshes, so a newly signed prescription shows up by itself."""
    waiting = service.waiting_prescriptions(db_session(), principal())
    return render_template("pharmacy/_queue_rows.html", waiting=waiting)


# --- one prescription -------------------------------------------------------------------------


def _prescription_page(
    prescription_id: int,
    *,
    status: int = 200,
    problem: str | None = None,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
):
    session = db_session()
    plan = service.dispense_plan(session, principal(), prescription_id)
    history = service.dispenses_of(session, principal(), prescription_id)
    prescription = plan.prescription
    blocked = None
    if prescription.status is not PrescriptionStatus.SIGNED:
        blocked = _l("This prescription is not signed and valid, so it cannot be dispensed.")
    elif prescription.valid_until is not None and prescription.valid_until < plan.today:
        blocked = _l(
            "This prescription was valid for dispensing until %(date)s.",
            date=prescription.valid_until.strftime("%d/%m/%Y"),
        )
    return (
        render_template(
            "pharmacy/prescription.html",
            plan=plan,
            prescription=prescription,
            history=history,
            blocked=blocked,
            problem=problem,
            errors=errors or {},
            values=values or {},
            done=request.args.get("done", type=int),
        ),
        status,
    )


@bp.get("/prescriptions/<int:prescription_id>")
@login_required
def prescription(prescription_id: int):
    return _prescription_page(prescription_id)


def _item_errors(errors: dict[str, list[str]], item_ids: list[int]) -> dict[str, list[str]]:
    """Service keys (items.<position in the request>.<field>) → item ids."""
    mapped: dict[str, list[str]] = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(item_ids):
            name = str(item_ids[int(parts[1])])
        else:
            name = key
        mapped.setdefault(name, []).extend(messages)
    return mapped


@bp.post("/prescriptions/<int:prescription_id>/dispense")
@login_required
def dispense(prescription_id: int):
    form = request.form
    item_ids = [int(key[4:]) for key in form if key.startswith("qty_") and key[4:].isdigit()]
    quantities = [
        service.DispenseQuantity(item_id, service.parse_quantity(form.get(f"qty_{item_id}")))
        for item_id in item_ids
    ]
    try:
        record = service.dispense(
            db_session(),
            principal(),
            prescription_id,
            quantities or None,
            allow_partial=form.get("allow_partial") == "1",
            note=form.get("note"),
        )
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        return _prescription_page(
            prescription_id,
            status=exc.status,
            problem=exc.detail,
            errors=_item_errors(exc.errors, item_ids),
            values=form.to_dict(),
        )
    return redirect(
        url_for("pharmacy.prescription", prescription_id=prescription_id, done=record.id)
    )


@bp.post("/prescriptions/<int:prescription_id>/returns")
@login_required
def return_units(prescription_id: int):
    form = request.form
    item_id, _sep, lot_id = (form.get("item_lot") or "").partition(":")
    entry = service.ReturnQuantity(
        item_id=int(item_id) if item_id.isdigit() else 0,
        quantity=service.parse_quantity(form.get("return_quantity")),
        lot_id=int(lot_id) if lot_id.isdigit() else None,
    )
    try:
        record = service.return_units(
            db_session(), principal(), prescription_id, [entry], reason=form.get("reason", "")
        )
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        errors = {
            ("return_" + key.split(".")[-1] if key.startswith("items") else key): messages
            for key, messages in exc.errors.items()
        }
        return _prescription_page(
            prescription_id,
            status=exc.status,
            problem=exc.detail,
            errors=errors,
            values=form.to_dict(),
        )
    return redirect(
        url_for("pharmacy.prescription", prescription_id=prescription_id, done=record.id)
    )


# --- stock ------------------------------------------------------------------------------------


@bp.get("/stock")
@login_required
def stock_list():
    days = request.args.get("days", type=int)
    if days is None or not 0 <= days <= 3650:
        days = service.EXPIRY_WARNING_DAYS
    drugs = service.stock_overview(db_session(), principal(), expiring_within_days=days)
    return render_template(
        "pharmacy/stock.html",
        drugs=drugs,
        days=days,
        received=request.args.get("received", type=int),
    )


def _rows_of(form) -> list[dict[str, str]]:
    rows = []
    for n in range(MAX_RECEIPT_ROWS):
        row = {
            name: form.get(f"{name}_{n}", "").strip()
            for name in ("drug_code", "lot_number", "expiry_date", "quantity", "unit_cost")
        }
        rows.append(row)
    # Trailing blank rows are the form's spare rows, not lines.
    while rows and not any(rows[-1].values()):
        rows.pop()
    return rows


def _line_of(row: dict[str, str]) -> service.ReceiptLine:
    try:
        expiry = dt.date.fromisoformat(row["expiry_date"]) if row["expiry_date"] else None
    except ValueError:
        expiry = None
    cost = row["unit_cost"].replace(".", "").replace(",", "").replace(" ", "")
    return service.ReceiptLine(
        drug_code=row["drug_code"],
        lot_number=row["lot_number"],
        expiry_date=expiry,
        quantity=service.parse_quantity(row["quantity"]),
        unit_cost=int(cost) if cost.lstrip("-").isdigit() else None,
    )


@bp.route("/stock/receive", methods=["GET", "POST"])
@login_required
def receive():
    session = db_session()
    drugs = service.catalog_drugs(session, principal())
    values: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    errors: dict[str, list[str]] = {}
    problem = None
    status = 200
    if request.method == "POST":
        values = request.form.to_dict()
        rows = _rows_of(request.form)
        # Blank rows in the middle are skipped; remember which row each line came from.
        filled = [n for n, row in enumerate(rows) if any(row.values())]
        try:
            received = service.receive_stock(
                session,
                principal(),
                service.ReceiptRequest(
                    lines=[_line_of(rows[n]) for n in filled],
                    supplier=values.get("supplier"),
                    invoice_number=values.get("invoice_number"),
                    note=values.get("note"),
                ),
            )
        except DomainError as exc:
            if exc.status in (403, 404):
                raise
            errors = _row_errors(exc.errors, filled)
            problem, status = exc.detail, exc.status
        else:
            return redirect(url_for("pharmacy.stock_list", received=received.receipt.id))
    wanted = request.args.get("rows", RECEIPT_ROWS, type=int)
    count = min(max(len(rows) + 2, wanted), MAX_RECEIPT_ROWS)
    rows = rows + [{} for _ in range(count - len(rows))]
    return (
        render_template(
            "pharmacy/receive.html",
            drugs=drugs,
            values=values,
            rows=rows,
            errors=errors,
            problem=problem,
            today=local_today(),
        ),
        status,
    )


def _row_errors(errors: dict[str, list[str]], filled: list[int]) -> dict[str, list[str]]:
    """``lines.<n>.<field>`` of the service → ``<field>_<form row>`` of the form."""
    mapped: dict[str, list[str]] = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(filled):
            key = f"{parts[2]}_{filled[int(parts[1])]}"
        mapped.setdefault(key, []).extend(messages)
    return mapped
