"""The administrator's HL7 v2 pages: messages in and out (raw text, parsed view, ACK, errors),
resending a dead letter, and the peers with their counters.

Views only read the query string or form and render: the checks (admins only), the audit and
the changes are in :mod:`his.hl7v2.monitor`, :mod:`his.hl7v2.peers` and
:mod:`his.hl7v2.dispatcher`, the same services the ``his hl7`` commands use.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select

from his.context import db_session, principal
from his.errors import DomainError
from his.hl7v2 import dispatcher, monitor
from his.hl7v2 import peers as peer_service
from his.hl7v2.codec import SUPPORTED_VERSIONS
from his.hl7v2.monitor import Direction, MessageFilter
from his.models import Facility, Role
from his.models.hl7 import BatchAck, PeerMode

bp = Blueprint("hl7", __name__, url_prefix="/admin/hl7")

MODE_NAMES = {PeerMode.APPLY: _l("Apply"), PeerMode.STORE: _l("Store only")}
BATCH_ACK_NAMES = {
    BatchAck.EACH: _l("One ACK per message"),
    BatchAck.BATCH: _l("One batch ACK"),
}


@bp.app_context_processor
def _hl7_names():
    return {"hl7_status_names": monitor.STATUS_NAMES}


def _int_arg(values, name: str) -> int | None:
    value = values.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def _date_arg(values, name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(values.get(name, "").strip())
    except ValueError:
        return None


def _filter(values, patient: str = "") -> MessageFilter:
    direction = Direction.OUT if values.get("dir") == Direction.OUT else Direction.IN
    return MessageFilter(
        direction=direction,
        peer_id=_int_arg(values, "peer"),
        message_type=values.get("type", "").strip()[:20],
        patient=patient.strip()[:40],
        status=values.get("status", "").strip(),
        date_from=_date_arg(values, "from"),
        date_to=_date_arg(values, "to"),
    )


def _filter_args(flt: MessageFilter) -> dict[str, str]:
    """The filter as query arguments, for the pager's links (empty ones left out). Never the
    patient: a CCCD, BHYT number or MRN must not be in a URL (issue 9), so a list filtered
    by patient pages with POST forms that carry the term in their body."""
    args = {
        "dir": flt.direction.value,
        "peer": "" if flt.peer_id is None else str(flt.peer_id),
        "type": flt.message_type,
        "status": flt.status,
        "from": flt.date_from.isoformat() if flt.date_from else "",
        "to": flt.date_to.isoformat() if flt.date_to else "",
    }
    return {k: v for k, v in args.items() if v}


def _messages_page(values, patient: str = ""):
    session = db_session()
    who = principal()
    flt = _filter(values, patient)
    page = monitor.list_messages(
        session,
        who,
        flt,
        before=_int_arg(values, "before"),
        after=_int_arg(values, "after"),
    )
    return render_template(
        "hl7/messages.html",
        flt=flt,
        page=page,
        args=_filter_args(flt),
        peers=monitor.list_peers(session, who),
        statuses=monitor.STATUSES[flt.direction],
        directions=Direction,
    )


@bp.get("/")
@login_required
def messages():
    # A ?patient= in the query string is ignored: the patient filter is only read from a
    # POST body (filter_messages), so that no link, bookmark or access log holds the term.
    return _messages_page(request.args)


@bp.post("/")
@login_required
def filter_messages():
    """The same list, filtered from the form's body. A read, not a write: it renders the
    list directly (a redirect would put the term back in a URL, and unapplied messages are
    matched by the typed identifier in PID-3, so there is no internal id to redirect to)."""
    return _messages_page(request.form, request.form.get("patient", ""))


def _message_page(direction: Direction, message_id: int, problem=None, status=200):
    detail = monitor.get_message(db_session(), principal(), direction, message_id)
    return (
        render_template(
            "hl7/message.html",
            d=detail,
            m=detail.message,
            problem=problem,
            done=request.args.get("done"),
            hex_limit=monitor.HEX_DUMP_LIMIT,
        ),
        status,
    )


@bp.get("/<any(in, out):direction>/<int:message_id>")
@login_required
def message(direction: str, message_id: int):
    return _message_page(Direction(direction), message_id)


@bp.post("/out/<int:message_id>/<any(resend, discard):action>")
@login_required
def outbound_action(message_id: int, action: str):
    principal().require_any(Role.ADMIN)
    act = dispatcher.resend if action == "resend" else dispatcher.discard
    try:
        act(db_session(), message_id, principal())
    except DomainError as exc:
        if exc.status == 403:
            raise
        return _message_page(Direction.OUT, message_id, exc.detail, exc.status)
    done = "resent" if action == "resend" else "discarded"
    return redirect(url_for("hl7.message", direction="out", message_id=message_id, done=done), 303)


# --- peers ----------------------------------------------------------------------------------------


def _peers_page(values: dict | None = None, errors: dict | None = None, problem=None, status=200):
    session = db_session()
    counters = monitor.peer_counters(session, principal())  # admins only
    own_facility = current_user.user.facility.code
    facilities = session.scalars(
        select(Facility).where(Facility.active.is_(True)).order_by(Facility.code)
    ).all()
    return (
        render_template(
            "hl7/peers.html",
            counters=counters,
            facilities=facilities,
            values=values or {"events": [], "version": "2.5.1", "facility": own_facility},
            errors=errors or {},
            problem=problem,
            event_classes=peer_service.EVENT_CLASSES,
            versions=SUPPORTED_VERSIONS,
            mode_names=MODE_NAMES,
            batch_ack_names=BATCH_ACK_NAMES,
            sample=monitor.LATENCY_SAMPLE,
            added=request.args.get("added"),
            changed=request.args.get("changed"),
        ),
        status,
    )


@bp.get("/peers")
@login_required
def peers():
    return _peers_page()


@bp.post("/peers")
@login_required
def add_peer():
    principal().require_any(Role.ADMIN)
    form = request.form
    values = {
        key: form.get(key, "").strip()
        for key in (
            "name",
            "facility",
            "sending_application",
            "sending_facility",
            "host",
            "port",
            "version",
            "mode",
            "batch_ack",
            "max_attempts",
            "identifier_map",
        )
    }
    values["events"] = form.getlist("events")
    errors: dict[str, list[str]] = {}
    for name in ("port", "max_attempts"):
        if values[name] and not values[name].isdigit():
            errors[name] = [_("Enter a whole number.")]
    if errors:
        return _peers_page(values, errors, _("The HL7 peer settings are not valid."), 422)
    data = peer_service.PeerInput(
        name=values["name"],
        facility_code=values["facility"],
        host=values["host"] or None,
        port=int(values["port"]) if values["port"] else None,
        events=values["events"],
        version=values["version"] or None,
        sending_application=values["sending_application"],
        sending_facility=values["sending_facility"],
        mode=values["mode"] or None,
        batch_ack=values["batch_ack"] or None,
        identifier_map=values["identifier_map"] or None,
        max_attempts=int(values["max_attempts"]) if values["max_attempts"] else None,
    )
    try:
        peer = peer_service.add_peer(db_session(), principal(), data)
    except DomainError as exc:
        if exc.status == 403:
            raise
        return _peers_page(values, exc.errors or {}, exc.detail, exc.status)
    return redirect(url_for("hl7.peers", added=peer.name), 303)


@bp.post("/peers/<int:peer_id>/<any(disable, enable):action>")
@login_required
def set_peer_active(peer_id: int, action: str):
    peer = peer_service.set_active(db_session(), principal(), peer_id, action == "enable")
    return redirect(url_for("hl7.peers", changed=peer.name), 303)
