"""The cashier's screens: visits with money owed, a visit's bill with its VietQR code, taking
a payment, the printable receipt, and refunds.

Forms go through the same billing services as the REST API, so the amount check (the
whole balance, nothing else), the locking of a paid bill, the receipt numbers and the role
checks are the ones the API enforces.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from flask_login import login_required

from billing import bills, payments, vietqr
from billing import cashier as service
from billing.bills import STATUS_LABELS
from billing.copay import RULE_LABELS
from billing.models import PaymentKind, PaymentMethod
from his.context import db_session, principal
from his.errors import DomainError
from his.models import Payment

bp = Blueprint("cashier", __name__, url_prefix="/cashier")

METHOD_NAMES = {
    PaymentMethod.CASH: _l("Cash"),
    PaymentMethod.CARD: _l("Card"),
    PaymentMethod.TRANSFER: _l("Bank transfer"),
}
BILL_STATUS_NAMES = STATUS_LABELS
PAYMENT_KIND_NAMES = {PaymentKind.PAYMENT: _l("Payment taken"), PaymentKind.REFUND: _l("Refund")}
VISIT_PAYMENT_NAMES = {Payment.BHYT: _l("Health insurance (BHYT)"), Payment.FEE: _l("Fee-paying")}
# The separators a cashier or a locale may write in an amount of dong: 78.120, 78,120, 78 120.
_AMOUNT_NOISE = str.maketrans("", "", ".,  ₫")


@bp.app_template_filter("vnd")
def vnd(amount) -> str:
    """Whole dong with the locale's grouping (78.120 in Vietnamese, 78,120 in English), as
    the billing messages write them."""
    return bills.vnd(amount or 0)


@bp.app_template_filter("cashier_qty")
def cashier_qty(value) -> str:
    """A charge's quantity without the database's trailing zeros (1.000 → 1, 0.500 → 0,5
    in Vietnamese): the locale's pattern shows at most three decimals and drops zeros."""
    return format_decimal(Decimal(str(value)))


@bp.context_processor
def _names():
    return {
        "method_names": METHOD_NAMES,
        "payment_methods": list(PaymentMethod),
        "bill_status_names": BILL_STATUS_NAMES,
        "payment_kind_names": PAYMENT_KIND_NAMES,
        "visit_payment_names": VISIT_PAYMENT_NAMES,
        "rule_labels": RULE_LABELS,
    }


# --- the list ---------------------------------------------------------------------------------


def _list_page(*, code: str = "", code_error=None):
    visits = service.unpaid_visits(db_session(), principal())
    return render_template(
        "cashier/index.html",
        visits=visits,
        days=service.DEFAULT_DAYS,
        code=code,
        code_error=code_error,
    )


@bp.get("/")
@login_required
def index():
    """Visits with money owed."""
    return _list_page()


@bp.post("/")
@login_required
def find():
    """A visit code typed in the search box opens that visit. The code comes in the body,
    not the URL, where browser history, proxies and access logs would keep it; the visit's
    page is addressed by its internal id. A lookup changes nothing (no re-authentication),
    and like every POST it carries the CSRF token."""
    code = (request.form.get("code") or "").strip()
    if not code:
        return _list_page()
    visit = service.find_visit(db_session(), principal(), code)
    if visit is not None:
        return redirect(url_for("cashier.visit", visit_id=visit.id), 303)
    return _list_page(code=code, code_error=_l("No visit has this code at your facility.")), 422


@bp.get("/rows")
@login_required
def rows():
    """The table body htmx refreshes, so a visit that runs up a bill shows up by itself."""
    visits = service.unpaid_visits(db_session(), principal())
    return render_template("cashier/_rows.html", visits=visits)


# --- one visit's bill -------------------------------------------------------------------------


def _bill_page(
    visit_id: int,
    *,
    status: int = 200,
    problem: str | None = None,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
):
    bill = service.cashier_bill(db_session(), principal(), visit_id)
    reference = None
    if bill.open_bill is not None and bill.balance > 0:
        reference = vietqr.bill_reference(bill.visit.facility.code, bill.open_bill.bill.id)
    return (
        render_template(
            "cashier/visit.html",
            vb=bill,
            visit=bill.visit,
            qr=vietqr.qr_data_uri(bill.vietqr) if bill.vietqr else None,
            reference=reference,
            problem=problem,
            errors=errors or {},
            values=values or {},
            refunded=request.args.get("refunded", type=int),
        ),
        status,
    )


@bp.get("/visits/<int:visit_id>")
@login_required
def visit(visit_id: int):
    return _bill_page(visit_id)


def _amount(text: str | None) -> int | None:
    digits = (text or "").translate(_AMOUNT_NOISE)
    return int(digits) if digits.isascii() and digits.isdigit() else None


@bp.post("/visits/<int:visit_id>/bills/<int:bill_id>/payments")
@login_required
def take_payment(visit_id: int, bill_id: int):
    form = request.form
    errors: dict[str, list[str]] = {}
    method = next((m for m in PaymentMethod if m.value == form.get("method")), None)
    if method is None:
        errors["method"] = [str(_l("Choose how the patient pays."))]
    amount = _amount(form.get("amount"))
    if amount is None:
        errors["amount"] = [str(_l("Enter the amount in whole dong."))]
    if method is None or amount is None:
        return _bill_page(
            visit_id,
            status=422,
            problem=str(_l("The payment was not taken.")),
            errors=errors,
            values=form.to_dict(),
        )
    try:
        settled = payments.take_payment(db_session(), principal(), bill_id, method, amount)
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        return _bill_page(
            visit_id,
            status=exc.status,
            problem=exc.detail,
            errors=exc.errors,
            values=form.to_dict(),
        )
    if settled.payment is None:  # nothing was owed: the bill is locked, no receipt
        return redirect(url_for("cashier.visit", visit_id=visit_id))
    return redirect(url_for("cashier.receipt", payment_id=settled.payment.id))


@bp.post("/visits/<int:visit_id>/payments/<int:payment_id>/refund")
@login_required
def refund(visit_id: int, payment_id: int):
    reason = request.form.get("reason", "")
    try:
        row = payments.refund(db_session(), principal(), payment_id, reason)
    except DomainError as exc:
        if exc.status in (403, 404):
            raise
        # The refund forms are one per payment: each field's errors go beside its own form.
        errors = {f"{key}_{payment_id}": messages for key, messages in exc.errors.items()}
        return _bill_page(
            visit_id,
            status=exc.status,
            problem=exc.detail,
            errors=errors,
            values={f"reason_{payment_id}": reason},
        )
    return redirect(url_for("cashier.receipt", payment_id=row.id))


# --- receipts ---------------------------------------------------------------------------------


@bp.get("/payments/<int:payment_id>/receipt")
@login_required
def receipt(payment_id: int):
    """The printable receipt of a payment or a refund."""
    found = service.receipt(db_session(), principal(), payment_id)
    return render_template(
        "cashier/receipt.html",
        r=found,
        rule_label=RULE_LABELS.get(found.bill.coverage_rule or "", found.bill.coverage_rule),
    )
