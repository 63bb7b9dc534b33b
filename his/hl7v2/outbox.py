"""Our own changes become HL7 v2 messages in the transaction that makes them (the outbox).

Modelled on the FHIR projection (``his.fhirapi.projection``): ``after_flush`` notes what
changed while the attribute history is still there, ``before_commit`` builds one message
per subscribed peer and adds it to ``hl7_outbound``. The change and its messages therefore
commit together or not at all; the dispatcher (``his.hl7v2.dispatcher``) sends them later.

What is an event:

- a Patient inserted → ADT^A28; changed (any column but bookkeeping ones), or one of its
  identifiers, cards or allergies added/changed/removed → ADT^A31. Not for patients taking
  part in a merge in the same transaction (the A40 says it all), nor for a patient inserted
  in it (the A28 already carries the final state);
- a Visit inserted → ADT^A04; its room changed → A02 (PV1-6 the room it left); its status
  → finished: A03, → cancelled: A11, finished → waiting/in examination: A13;
- a PatientMerge inserted → ADT^A40; a merge undone → A31 for both records;
- a ServiceOrder inserted → OML^O21 (ORM^O01 for peers on 2.3–2.4);
- a Prescription whose status becomes signed → RDE^O11 (RDE^O01 for 2.3/2.3.1).

Changes that came from a peer (``session.info["hl7_origin_peer_id"]``, set by the inbound
side) are not echoed back to that peer.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, selectinload

from his.db import utcnow
from his.hl7v2 import outbound_messages as om
from his.models import (
    Coverage,
    Patient,
    PatientAllergy,
    PatientIdentifier,
    PatientMerge,
    Prescription,
    PrescriptionStatus,
    ServiceOrder,
    Visit,
    VisitStatus,
)
from his.models.hl7 import Hl7Inbound, Hl7Outbound, Hl7Peer, OutboundStatus

_PENDING = "hl7_events"
ORIGIN_PEER = "hl7_origin_peer_id"
APPLICATION = "hl7_application"  # session.info key: our MSH-3, when not the default

# Columns whose change is not news for a peer: caches, the optimistic-lock counter.
_BOOKKEEPING = frozenset({"last_visit_at", "version", "search_name", "created_at"})
_PATIENT_CHILDREN = (PatientIdentifier, Coverage, PatientAllergy)
_REOPENED = (VisitStatus.WAITING, VisitStatus.IN_EXAMINATION)

# Order of events noted in one flush: the person before the visit, the visit before what
# happens in it, the end of the visit last.
_RANK = {
    "A28": 0,
    "A40": 1,
    "A31": 2,
    "A04": 3,
    "A13": 4,
    "A02": 5,
    "O21": 6,
    "O11": 7,
    "A03": 8,
    "A11": 9,
}
EVENT_CLASS = {
    "A28": "ADT",
    "A31": "ADT",
    "A40": "ADT",
    "A04": "ADT",
    "A02": "ADT",
    "A03": "ADT",
    "A11": "ADT",
    "A13": "ADT",
    "O21": "OML",
    "O11": "RDE",
}


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``kind`` is our trigger name (A28 … O11), ``key`` the row."""

    kind: str
    key: int
    prior_room_id: int | None = None  # A02 only


# --- noting changes ----------------------------------------------------------------------------


def _history(obj: Any, name: str):
    return inspect(obj).attrs[name].history


def _changed_columns(obj: Any) -> set[str]:
    state = inspect(obj)
    return {
        attr.key
        for attr in state.mapper.column_attrs
        if attr.key not in _BOOKKEEPING and state.attrs[attr.key].history.has_changes()
    }


def _visit_events(visit: Visit, is_new: bool) -> list[Event]:
    if is_new:
        return [Event("A04", visit.id)]
    found = []
    room = _history(visit, "room_id")
    if room.has_changes():
        before = room.deleted[0] if room.deleted else None
        if before != visit.room_id:
            found.append(Event("A02", visit.id, prior_room_id=before))
    status = _history(visit, "status")
    if status.has_changes():
        before = status.deleted[0] if status.deleted else None
        now = visit.status
        if now is VisitStatus.FINISHED and before is not VisitStatus.FINISHED:
            found.append(Event("A03", visit.id))
        elif now is VisitStatus.CANCELLED and before is not VisitStatus.CANCELLED:
            found.append(Event("A11", visit.id))
        elif now in _REOPENED and before is VisitStatus.FINISHED:
            found.append(Event("A13", visit.id))
    return found


def _events_of(obj: Any, is_new: bool, is_deleted: bool) -> list[Event]:
    if isinstance(obj, Patient):
        if is_new:
            return [Event("A28", obj.id)]
        if not is_deleted and _changed_columns(obj):
            return [Event("A31", obj.id)]
    elif isinstance(obj, _PATIENT_CHILDREN):
        if obj.patient_id is not None and (is_new or is_deleted or _changed_columns(obj)):
            return [Event("A31", obj.patient_id)]
    elif isinstance(obj, Visit) and not is_deleted:
        return _visit_events(obj, is_new)
    elif isinstance(obj, PatientMerge):
        if is_new:
            return [Event("A40", obj.id)]
        undone = _history(obj, "undone_at")
        if undone.has_changes() and obj.undone_at is not None:
            return [Event("A31", obj.survivor_id), Event("A31", obj.merged_id)]
    elif isinstance(obj, ServiceOrder) and is_new and obj.ordered_by_system is None:
        # An order a performing system reported with its result is no order to pass on.
        return [Event("O21", obj.id)]
    elif isinstance(obj, Prescription) and obj.status is PrescriptionStatus.SIGNED:
        status = _history(obj, "status")
        if is_new or (status.has_changes() and PrescriptionStatus.SIGNED not in status.deleted):
            return [Event("O11", obj.id)]
    return []


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    found: list[Event] = []
    for objects, is_new, is_deleted in (
        (session.new, True, False),
        (session.dirty, False, False),
        (session.deleted, False, True),
    ):
        for obj in objects:
            found.extend(_events_of(obj, is_new, is_deleted))
    if found:
        noted: list[Event] = session.info.setdefault(_PENDING, [])
        for item in sorted(found, key=lambda e: (_RANK[e.kind], e.key)):
            if item not in noted:
                noted.append(item)


# A room or status set on a row whose old value was never loaded would leave no history:
# these listeners make SQLAlchemy load the old value first (A02 needs the room it left).
for _attribute in (Visit.room_id, Visit.status, Prescription.status):
    event.listen(_attribute, "set", lambda *args: None, active_history=True)


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    if session.info.get(_PENDING):
        write_pending(session)


# --- writing the outbox ------------------------------------------------------------------------


def new_control_id(now: dt.datetime | None = None) -> str:
    """MSH-10, unique per peer without a shared counter row (which would serialise every
    writer): the second it was made and 40 random bits, 20 characters (MSH-10 is ST 20 in
    v2.3/2.4)."""
    moment = (now or utcnow()).astimezone(dt.UTC)
    return f"{moment:%y%m%d%H%M%S}{secrets.token_hex(4).upper()}"


def _settled(session: Session, events: list[Event]) -> list[Event]:
    """Drops what another event of the same transaction already says."""
    merged: set[int] = set()
    for item in events:
        if item.kind == "A40":
            merge = session.get(PatientMerge, item.key)
            if merge is not None:
                merged.update((merge.survivor_id, merge.merged_id))
    created = {e.key for e in events if e.kind == "A28"}
    created_visits = {e.key for e in events if e.kind == "A04"}
    kept = []
    for item in events:
        if item.kind == "A31" and (item.key in merged or item.key in created):
            continue
        if item.kind == "A02" and item.key in created_visits:
            continue  # the A04 already names the room it ended up in
        kept.append(item)
    return kept


def _subscribers(session: Session, classes: set[str]) -> list[Hl7Peer]:
    origin = session.info.get(ORIGIN_PEER)
    peers = session.scalars(
        select(Hl7Peer)
        .where(Hl7Peer.active.is_(True), Hl7Peer.host.is_not(None))
        .options(selectinload(Hl7Peer.facility))
        .order_by(Hl7Peer.id)
    ).all()
    return [p for p in peers if p.id != origin and p.event_classes & classes]


_application = om.DEFAULT_APPLICATION


def set_application(name: str) -> None:
    """Our MSH-3 for this process (HIS_HL7_APPLICATION); the app factory and the CLI set
    it, since the commit hook sees no settings."""
    global _application
    _application = name or om.DEFAULT_APPLICATION


def write_pending(session: Session) -> list[Hl7Outbound]:
    """Builds and adds the messages for every event noted so far; returns the rows added."""
    session.flush()
    events = session.info.pop(_PENDING, None)
    if not events:
        return []
    events = _settled(session, events)
    peers = _subscribers(session, {EVENT_CLASS[e.kind] for e in events})
    if not peers:
        return []
    application = session.info.get(APPLICATION) or _application
    now = utcnow()
    rows: list[Hl7Outbound] = []
    for item in events:
        source = _load(session, item)
        if source is None:
            continue
        for peer in peers:
            if EVENT_CLASS[item.kind] not in peer.event_classes:
                continue
            control_id = new_control_id(now)
            header = om.Header.for_peer(peer, control_id, now, application=application)
            built = om.build(item.kind, header, source, prior_room=_prior_room(session, item))
            rows.append(
                Hl7Outbound(
                    peer_id=peer.id,
                    event=built.event,
                    message_type=built.message_type,
                    control_id=control_id,
                    patient_key=f"p{built.patient_id}",
                    patient_id=built.patient_id,
                    text=built.text,
                    status=OutboundStatus.PENDING,
                    next_attempt_at=now,
                )
            )
    session.add_all(rows)
    session.flush()
    return rows


def _load(session: Session, item: Event) -> Any:
    model = {
        "A28": Patient,
        "A31": Patient,
        "A40": PatientMerge,
        "O21": ServiceOrder,
        "O11": Prescription,
    }.get(item.kind, Visit)
    row = session.get(model, item.key)
    if isinstance(row, Patient) and item.kind == "A31" and row.merged_into_id is not None:
        return None  # a merged-away record is no longer a person to update
    return row


def _prior_room(session: Session, item: Event):
    from his.models import Room

    if item.kind != "A02" or item.prior_room_id is None:
        return None
    return session.get(Room, item.prior_room_id)


def queue_application_ack(session: Session, inbound: Hl7Inbound, ack_text: str) -> Hl7Outbound:
    """An enhanced-mode application acknowledgment for ``inbound``, sent to the peer that
    sent it through the same outbox and dispatcher as our own messages.

    ``ack_text`` is the complete ACK (ER7, CR-separated) with its own MSH-10; the
    dispatcher waits for the peer's reply to it like for any message, so the ACK should ask
    for an accept acknowledgment (MSH-15 ``AL``). On a key of its own, so it never holds the
    patient's other messages.
    """
    if inbound.peer_id is None:
        raise ValueError("an application acknowledgment needs the inbound message's peer")
    control_id = control_id_of(ack_text)
    row = Hl7Outbound(
        peer_id=inbound.peer_id,
        event="ACK",
        message_type=_message_type_of(ack_text) or "ACK",
        control_id=control_id,
        # Its own key: an ACK the peer is slow to confirm never holds the patient's messages.
        patient_key=f"i{inbound.id}",
        patient_id=inbound.patient_id,
        text=ack_text,
        status=OutboundStatus.PENDING,
        next_attempt_at=utcnow(),
        inbound_id=inbound.id,
    )
    session.add(row)
    session.flush()
    return row


def _msh_fields(text: str) -> list[str]:
    first = text.lstrip("\ufeff").split("\r", 1)[0].split("\n", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        raise ValueError("the message does not start with MSH")
    return first.split(first[3])


def control_id_of(text: str) -> str:
    """MSH-10 of an ER7 message (the index is off by one: MSH-1 is the separator)."""
    fields = _msh_fields(text)
    if len(fields) < 10 or not fields[9]:
        raise ValueError("the message has no MSH-10")
    return fields[9]


def _message_type_of(text: str) -> str:
    fields = _msh_fields(text)
    return fields[8] if len(fields) > 8 else ""


def pending_events(session: Session) -> Iterable[Event]:
    """What the current transaction will turn into messages (for tests and debugging)."""
    return tuple(session.info.get(_PENDING, ()))
