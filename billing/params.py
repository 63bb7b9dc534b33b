"""Reading and changing the dated billing parameters (``billing_param``).

A change is a new row from a date: the row in force then is closed the day before, so the
history stays and a visit of any date reads the values of that date.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from billing.copay import PARAMETER_NAMES
from billing.models import BillingParam
from his.errors import Conflict, ValidationFailed
from his.models import AuditAction, Role
from his.services import audit
from his.services.access import Principal

# The examination fee rate of the 1st, 2nd, 3rd and 4th specialty examination of a day: the
# charges turn them into each examination line's service rate.
EXAM_FEE_PARAMS = tuple(f"exam_fee_rate_{n}" for n in range(1, 5))
KNOWN = (*PARAMETER_NAMES, *EXAM_FEE_PARAMS)


def in_force(day: dt.date):
    return (BillingParam.valid_from <= day) & or_(
        BillingParam.valid_to.is_(None), BillingParam.valid_to >= day
    )


def params_on(session: Session, day: dt.date) -> dict[str, Decimal]:
    """Every parameter's value in force on ``day``."""
    rows = session.scalars(select(BillingParam).where(in_force(day)))
    return {row.name: row.value for row in rows}


def history(session: Session) -> list[BillingParam]:
    return list(
        session.scalars(select(BillingParam).order_by(BillingParam.name, BillingParam.valid_from))
    )


def set_param(
    session: Session,
    principal: Principal,
    name: str,
    value: str | Decimal,
    valid_from: dt.date,
    source: str,
) -> BillingParam:
    """A new value of ``name`` from ``valid_from`` on; the value in force until then ends the
    day before. A date before the latest change is refused: it would rewrite a period that
    visits may already have been priced with."""
    principal.require_any(Role.ADMIN)
    errors: dict[str, list[str]] = {}
    if name not in KNOWN:
        errors["name"] = [str(_l("Unknown parameter; known: %(names)s", names=", ".join(KNOWN)))]
    try:
        amount = Decimal(str(value))
        if not amount.is_finite() or amount < 0:
            raise InvalidOperation
    except InvalidOperation:
        errors["value"] = [str(_l("A number of zero or more, with a point for decimals."))]
    if not source.strip():
        errors["source"] = [str(_l("Name the decision that sets this value."))]
    if errors:
        raise ValidationFailed(str(_l("The parameter was not changed.")), errors=errors)
    later = session.scalar(
        select(BillingParam)
        .where(BillingParam.name == name, BillingParam.valid_from >= valid_from)
        .limit(1)
    )
    if later is not None:
        raise Conflict(
            str(
                _l(
                    "%(name)s already has a value from %(date)s; a change must start after it.",
                    name=name,
                    date=later.valid_from.isoformat(),
                )
            ),
            errors={"valid_from": [later.valid_from.isoformat()]},
        )
    current = session.scalar(
        select(BillingParam).where(BillingParam.name == name, in_force(valid_from))
    )
    if current is not None:
        current.valid_to = valid_from - dt.timedelta(days=1)
    row = BillingParam(
        name=name,
        value=amount,
        valid_from=valid_from,
        valid_to=None,
        source=source.strip(),
        changed_by_id=principal.user_id,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="BillingParam",
        entity_id=row.id,
        detail=f"{name} from {valid_from.isoformat()}",
    )
    return row
