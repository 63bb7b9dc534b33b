"""The claim files of the user's facility, for the cashiers and the administrators: what the
BHXH gateway answered to each (its code, message and transaction id, which the gateway itself
shows for only 60 days), the files still waiting for it, and "Send again" for a rejected file:
a new version of the visit's claim is made (``billing.claim_files``) and queued for the
sender (``billing.claim_sender``).
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import login_required
from sqlalchemy import case, func, select
from sqlalchemy.orm import defer

from billing import claim_sender
from billing.claim_files import make_claim_file
from billing.models import ClaimFile, ClaimStatus
from his.context import db_session, principal
from his.errors import DomainError, NotFound
from his.models import Role, Visit

bp = Blueprint("claims", __name__, url_prefix="/claims")

CLAIM_ROLES = (Role.ADMIN, Role.CASHIER)
PAGE_SIZE = 200

STATUS_NAMES = {
    ClaimStatus.REJECTED: _l("Rejected"),
    ClaimStatus.QUEUED: _l("Waiting for the gateway"),
    ClaimStatus.READY: _l("Ready, not queued"),
    ClaimStatus.ACCEPTED: _l("Accepted"),
    ClaimStatus.SUPERSEDED: _l("Superseded"),
}
# The order of the list: what needs a person first.
STATUS_ORDER = list(STATUS_NAMES)
_RANK = case({status: n for n, status in enumerate(STATUS_ORDER)}, value=ClaimFile.status)


def _status_arg() -> ClaimStatus | None:
    try:
        return ClaimStatus(request.args.get("status", "").strip())
    except ValueError:
        return None


def _page(*, problem: str | None = None, problems: list[str] | None = None, status: int = 200):
    who = principal()
    who.require_any(*CLAIM_ROLES)
    session = db_session()
    wanted = _status_arg()
    mine = ClaimFile.facility_id == who.facility_id
    query = (
        select(ClaimFile, Visit.visit_code)
        .join(Visit, Visit.id == ClaimFile.visit_id)
        .where(mine)
        .options(defer(ClaimFile.content))
        .order_by(_RANK, ClaimFile.created_at.desc(), ClaimFile.id.desc())
        .limit(PAGE_SIZE + 1)
    )
    if wanted is not None:
        query = query.where(ClaimFile.status == wanted)
    rows = session.execute(query).all()
    counts = dict(
        session.execute(
            select(ClaimFile.status, func.count()).where(mine).group_by(ClaimFile.status)
        ).all()
    )
    queued = None
    queued_id = request.args.get("queued", "")
    if queued_id.isdigit() and len(queued_id) < 19:
        queued = session.execute(
            select(ClaimFile.version, Visit.visit_code)
            .join(Visit, Visit.id == ClaimFile.visit_id)
            .where(mine, ClaimFile.id == int(queued_id))
        ).first()
    return (
        render_template(
            "claims/list.html",
            rows=rows[:PAGE_SIZE],
            more=len(rows) > PAGE_SIZE,
            page_size=PAGE_SIZE,
            wanted=wanted,
            counts=counts,
            statuses=STATUS_ORDER,
            status_names=STATUS_NAMES,
            queued=queued,
            problem=problem,
            problems=problems or [],
        ),
        status,
    )


@bp.get("/")
@login_required
def index():
    return _page()


@bp.post("/<int:file_id>/resend")
@login_required
def resend(file_id: int):
    """A new version of the rejected file's visit claim, queued for the gateway."""
    who = principal()
    who.require_any(*CLAIM_ROLES)
    session = db_session()
    row = session.scalar(
        select(ClaimFile)
        .where(ClaimFile.id == file_id, ClaimFile.facility_id == who.facility_id)
        .options(defer(ClaimFile.content))
        .with_for_update()
    )
    if row is None:
        raise NotFound(str(_l("No claim file of your facility has this number.")))
    if row.status is not ClaimStatus.REJECTED:
        return _page(problem=_("Only a rejected claim file can be sent again."), status=409)
    try:
        new = make_claim_file(session, who, row.visit_id)
        claim_sender.queue(session, new)
    except DomainError as exc:
        if exc.status in (401, 403, 404):
            raise
        # The request's transaction is rolled back with the error status: nothing changed.
        # A claim that fails its checks lists every problem, each naming table and field.
        problems = [str(p) for p in exc.errors.get("claim", [])]
        return _page(problem=exc.detail, problems=problems, status=exc.status)
    return redirect(url_for("claims.index", queued=new.id), 303)
