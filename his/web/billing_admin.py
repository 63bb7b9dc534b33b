"""The administrator's page for the dated billing parameters (base salary, benefit rates,
thresholds, examination fee rates): every period of every parameter, and a new value from a
date.

The checks (admins only, a known name, a number, a deciding text, no date before the latest
change), the closing of the period in force and the audit are in :mod:`billing.params`, the
same service the REST API and ``his billing param set`` use.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from babel.numbers import format_decimal
from flask import (
    Blueprint,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import select

from billing import params as service
from billing.models import BillingParam
from his.context import db_session, principal
from his.errors import Conflict, DomainError
from his.localtime import local_today
from his.models import Role, User

bp = Blueprint("billing_admin", __name__, url_prefix="/admin/billing")

FLASH_CATEGORY = "billing-param-set"

# What each parameter is, in the reader's language; a name missing here is shown as it is.
LABELS = {
    "base_salary": _l("Base salary"),
    "small_bill_share_percent": _l("Small bill threshold, share of the base salary"),
    "copay_exemption_months": _l("Co-payment exemption threshold, months of base salary"),
    "self_referral_outpatient_rate": _l("Self-referral benefit rate, outpatient"),
    "self_referral_inpatient_central_rate": _l(
        "Self-referral benefit rate, inpatient at a central hospital"
    ),
    "card_expiry_grace_days": _l("Grace period after a BHYT card expires"),
    **{f"benefit_rate_level_{n}": _l("Benefit rate of level %(n)s", n=n) for n in range(1, 6)},
    **{
        f"exam_fee_rate_{n}": _l("Examination fee rate of the day's examination no. %(n)s", n=n)
        for n in range(1, 5)
    },
}

PERCENT = "%"
UNITS = {
    "base_salary": _l("dong a month"),
    "copay_exemption_months": _l("months"),
    "card_expiry_grace_days": _l("days"),
    "small_bill_share_percent": PERCENT,
    **{f"benefit_rate_level_{n}": PERCENT for n in range(1, 6)},
    "self_referral_outpatient_rate": PERCENT,
    "self_referral_inpatient_central_rate": PERCENT,
    **{f"exam_fee_rate_{n}": PERCENT for n in range(1, 5)},
}

FIELDS = ("name", "value", "valid_from", "source")


@dataclass
class Parameter:
    """One parameter's periods, newest first, and the one in force today (if any)."""

    name: str
    periods: list[BillingParam] = field(default_factory=list)
    today: BillingParam | None = None


@bp.app_template_filter("param_value")
def param_value(value: Decimal) -> str:
    """A parameter's value with the locale's grouping and every decimal it has, none more:
    2.530.000 in Vietnamese, 2,530,000 in English, 0,5 for a half."""
    return format_decimal(value.normalize(), locale=get_locale(), decimal_quantization=False)


def _grouped(rows: list[BillingParam], today: dt.date) -> list[Parameter]:
    """The history by parameter, in the order the billing rules name them."""
    by_name: dict[str, Parameter] = {}
    for row in rows:
        param = by_name.setdefault(row.name, Parameter(row.name))
        param.periods.insert(0, row)
        if row.valid_from <= today and (row.valid_to is None or row.valid_to >= today):
            param.today = row
    order = {name: i for i, name in enumerate(service.KNOWN)}
    return sorted(by_name.values(), key=lambda p: (order.get(p.name, len(order)), p.name))


def _page(values: dict | None = None, errors: dict | None = None, problem=None, status=200):
    session = db_session()
    principal().require_any(Role.ADMIN)
    today = local_today()
    rows = service.history(session)
    user_ids = {row.changed_by_id for row in rows if row.changed_by_id is not None}
    users = (
        {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    return (
        render_template(
            "billing_admin/params.html",
            parameters=_grouped(rows, today),
            users=users,
            today=today,
            known=service.KNOWN,
            labels=LABELS,
            units=UNITS,
            values=values or {"valid_from": (today + dt.timedelta(days=1)).isoformat()},
            errors=errors or {},
            problem=problem,
            done=get_flashed_messages(category_filter=[FLASH_CATEGORY]),
        ),
        status,
    )


@bp.get("/params")
@login_required
def params():
    return _page()


@bp.post("/params")
@login_required
def set_param():
    principal().require_any(Role.ADMIN)
    values = {key: request.form.get(key, "").strip() for key in FIELDS}
    try:
        valid_from = dt.date.fromisoformat(values["valid_from"])
    except ValueError:
        return _page(
            values,
            {"valid_from": [_("Enter the first day the value applies.")]},
            _("The parameter was not changed."),
            422,
        )
    try:
        row = service.set_param(
            db_session(),
            principal(),
            values["name"],
            values["value"],
            valid_from,
            values["source"],
        )
    except DomainError as exc:
        if exc.status == 403:
            raise
        errors = dict(exc.errors)
        if isinstance(exc, Conflict):
            # The service names the date of the latest change; the sentence says what to do.
            errors["valid_from"] = [exc.detail]
            problem = _("The parameter was not changed.")
        else:
            problem = exc.detail
        return _page(values, errors, problem, exc.status)
    flash(
        _(
            "%(name)s is %(value)s from %(date)s.",
            name=str(LABELS.get(row.name, row.name)),
            value=param_value(row.value),
            date=row.valid_from.strftime("%d/%m/%Y"),
        ),
        FLASH_CATEGORY,
    )
    return redirect(url_for("billing_admin.params"), 303)
