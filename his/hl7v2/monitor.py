"""What the admin page shows about the HL7 v2 exchange: the messages in and out, one message
in full, and counters per peer.

Read-only queries plus the audit rows they owe. Only administrators get past them: the
messages carry patients' names and identifiers, so opening one is audited as a read of
that patient's record, and a list filtered by patient as a search.

Lists page by keyset on the primary key (newest first): ``id`` grows with arrival, so the
order is the arrival order, every page is an index range scan however deep it is (but for
the suffix match of a patient filter on messages never applied), and a
message arriving while someone pages does not shift the pages. The filter columns are
indexed (peer, patient, status); the message type and date filters narrow a range that the
key already bounds.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.orm import Session, defer

from his.errors import NotFound
from his.hl7v2 import peers as peer_service
from his.identifiers import insurance_number_of
from his.localtime import VN_TZ
from his.models import AuditAction, IdentifierType, Patient, PatientIdentifier, Role
from his.models.hl7 import (
    Hl7Inbound,
    Hl7Outbound,
    Hl7Peer,
    InboundStatus,
    OutboundStatus,
)
from his.services import audit
from his.services.access import Principal

PAGE_SIZE = 50
# Latency percentiles are taken over each peer's most recent acknowledged messages: recent
# behaviour is what an operator watches, and the sample bounds the work per page view.
LATENCY_SAMPLE = 1000
# ... taken from the newest messages of all peers, at most this many rows per page view.
LATENCY_WINDOW = 50_000
# Outbound NAKs are broken down by the error code in the ACK text the peer sent, read in
# Python; only this many of the most recent are read.
NAK_SAMPLE = 5000
# Codes that say "not accepted" in original (AE/AR) and enhanced (CE/CR) mode.
NAK_CODES = ("AE", "AR", "CE", "CR")
# A hex dump longer than this is cut: it is there to show what was wrong with the bytes.
HEX_DUMP_LIMIT = 16 * 1024


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


STATUSES = {
    Direction.IN: tuple(InboundStatus),
    Direction.OUT: tuple(OutboundStatus),
}

STATUS_NAMES = {
    InboundStatus.RECEIVED: _l("Received"),
    InboundStatus.APPLIED: _l("Applied"),
    InboundStatus.STORED: _l("Stored only"),
    InboundStatus.ERROR: _l("Error"),
    InboundStatus.REJECTED: _l("Rejected"),
    OutboundStatus.PENDING: _l("Pending"),
    OutboundStatus.SENT: _l("Sent"),
    OutboundStatus.DEAD: _l("Dead letter"),
    OutboundStatus.DISCARDED: _l("Discarded"),
}


def _require_admin(principal: Principal) -> None:
    principal.require_any(Role.ADMIN)


# --- message lists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFilter:
    direction: Direction = Direction.IN
    peer_id: int | None = None
    message_type: str = ""  # "ADT" or "ADT^A04": a prefix on the ^ boundary
    patient: str = ""  # our patient id or MRN
    status: str = ""
    date_from: dt.date | None = None  # Vietnam's calendar days, inclusive
    date_to: dt.date | None = None


@dataclass(frozen=True)
class MessagePage:
    direction: Direction
    rows: list[Hl7Inbound] | list[Hl7Outbound]
    mrns: dict[int, str]  # patient id -> MRN, for the rows on the page
    newer: int | None  # cursor (``after``) for the page of newer messages, if any
    older: int | None  # cursor (``before``) for the page of older messages, if any
    patient_found: bool = True  # False: the patient filter named nobody


def _model(direction: Direction) -> type[Hl7Inbound] | type[Hl7Outbound]:
    return Hl7Inbound if direction is Direction.IN else Hl7Outbound


def find_patient_id(session: Session, term: str) -> int | None:
    """Our patient id from an MRN (``BN00000012``), a CCCD (12 digits), a BHYT card or
    social-insurance number, or the id itself (``12``)."""
    term = term.strip()
    if not term:
        return None
    found = session.scalar(select(Patient.id).where(Patient.mrn == term.upper()))
    digits = term.isascii() and term.isdigit()  # "²" is a digit to Python, not to int()
    for kind, value in (
        (IdentifierType.CCCD, term if len(term) == 12 and digits else None),
        (IdentifierType.BHYT, insurance_number_of(term)),
    ):
        if found is None and value:
            found = session.scalar(
                select(PatientIdentifier.patient_id).where(
                    PatientIdentifier.type == kind,
                    PatientIdentifier.system == "",
                    PatientIdentifier.value == value,
                )
            )
    if found is None and digits and len(term) < 19:
        found = session.scalar(select(Patient.id).where(Patient.id == int(term)))
    return found


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), VN_TZ).astimezone(dt.UTC)


def _conditions(model, flt: MessageFilter, patient_id: int | None) -> list:
    where = []
    if flt.peer_id is not None:
        where.append(model.peer_id == flt.peer_id)
    if flt.status:
        where.append(model.status == flt.status)
    kind = flt.message_type.strip().upper()
    if kind:
        where.append(
            or_(
                model.message_type == kind,
                model.message_type.startswith(kind + "^", autoescape=True),
            )
        )
    term = flt.patient.strip()
    if term:
        named = model.patient_id == patient_id if patient_id is not None else false()
        if model is Hl7Inbound:
            # Messages never applied (refused, in error) name the patient only in PID-3:
            # the first identifier there is kept as the message's patient key.
            # Only those: an applied message is found by the patient it was applied to.
            unapplied = and_(
                model.patient_id.is_(None),
                model.patient_key.endswith(":" + term, autoescape=True),
            )
            named = or_(named, unapplied)
        where.append(named)
    moment = model.received_at if model is Hl7Inbound else model.created_at
    if flt.date_from:
        where.append(moment >= _day_start(flt.date_from))
    if flt.date_to:
        where.append(moment < _day_start(flt.date_to + dt.timedelta(days=1)))
    return where


def list_messages(
    session: Session,
    principal: Principal,
    flt: MessageFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> MessagePage:
    """One page of messages, newest first: the newest page, the page just older than
    ``before`` or the page just newer than ``after``."""
    _require_admin(principal)
    if flt.status and flt.status not in STATUSES[flt.direction]:
        flt = MessageFilter(**{**flt.__dict__, "status": ""})
    model = _model(flt.direction)
    patient_id = find_patient_id(session, flt.patient) if flt.patient.strip() else None
    if flt.patient.strip():
        audit.record(
            session,
            principal,
            AuditAction.SEARCH,
            entity_type=model.__name__,
            patient_id=patient_id,
        )
        if patient_id is None and model is not Hl7Inbound:
            return MessagePage(flt.direction, [], {}, None, None, patient_found=False)
    where = _conditions(model, flt, patient_id)
    # The message bodies stay in the database until a message is opened.
    heavy = (model.raw, model.ack) if model is Hl7Inbound else (model.text, model.ack)
    rows_of = select(model).where(*where).options(*(defer(c) for c in heavy))

    def exists(*more) -> bool:
        return session.scalar(select(model.id).where(*where, *more).limit(1)) is not None

    if after is not None:
        stmt = rows_of.where(model.id > after).order_by(model.id).limit(limit + 1)
        rows = list(session.scalars(stmt))
        more_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        more_older = exists(model.id <= after)
    else:
        stmt = rows_of if before is None else rows_of.where(model.id < before)
        rows = list(session.scalars(stmt.order_by(model.id.desc()).limit(limit + 1)))
        more_older = len(rows) > limit
        rows = rows[:limit]
        more_newer = before is not None and exists(model.id >= before)
    if rows:
        newer = rows[0].id if more_newer else None
        older = rows[-1].id if more_older else None
    else:  # an empty page past either end: offer the way back
        newer = before - 1 if before is not None and more_newer else None
        older = after + 1 if after is not None and more_older else None
    ids = {r.patient_id for r in rows if r.patient_id is not None}
    mrns = (
        dict(session.execute(select(Patient.id, Patient.mrn).where(Patient.id.in_(ids))).all())
        if ids
        else {}
    )
    # A term that names no patient of ours and no message's PID-3: say so.
    found = patient_id is not None or bool(rows) or before is not None or after is not None
    return MessagePage(
        flt.direction, rows, mrns, newer, older, patient_found=found or not flt.patient.strip()
    )


# --- one message --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawView:
    """Message bytes made readable: one segment per line, Vietnamese intact when the bytes
    are UTF-8; otherwise shown with replacement characters and as a hex dump, and marked."""

    text: str
    valid_utf8: bool
    bom: bool
    size: int
    hex_dump: str | None = None
    hex_truncated: bool = False


_SEGMENT_END = re.compile(r"\r\n|\r|\n")


def as_lines(text: str) -> str:
    """Segments one per line whatever ended them (CR on the wire, LF or CRLF in files)."""
    return "\n".join(line for line in _SEGMENT_END.split(text) if line != "")


def hex_dump(data: bytes) -> str:
    """Offset, sixteen bytes in hex, and the printable ASCII of each line."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    return "\n".join(lines)


def raw_view(data: bytes) -> RawView:
    bom = data.startswith(b"\xef\xbb\xbf")
    body = data[3:] if bom else data
    try:
        text = body.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        # Only for display: the stored bytes are what they are, and the page says so.
        text = body.decode("utf-8", errors="replace")
        valid = False
    if valid:
        return RawView(as_lines(text), True, bom, len(data))
    return RawView(
        as_lines(text),
        False,
        bom,
        len(data),
        hex_dump(data[:HEX_DUMP_LIMIT]),
        len(data) > HEX_DUMP_LIMIT,
    )


@dataclass(frozen=True)
class ParsedField:
    number: int
    raw: str  # as on the wire, still escaped
    # Per repetition, its components unescaped and NFC; empty when the field is one plain value.
    repetitions: list[list[str]]
    value: str  # the readable value when there is one component and one repetition


@dataclass(frozen=True)
class ParsedSegment:
    name: str
    fields: list[ParsedField]


@dataclass(frozen=True)
class ParsedView:
    segments: list[ParsedSegment] = field(default_factory=list)
    error_code: int | None = None
    error_location: str | None = None
    error: str | None = None


def parsed_view(data: bytes) -> ParsedView:
    """The message as the codec reads it: each segment's non-empty fields with their
    components. When the codec refuses the message, its error code and location instead
    (with the part it could read, when it read one)."""
    from his.hl7v2 import codec  # the one reader of message content

    try:
        message = codec.parse(data)
    except codec.Hl7Error as exc:
        partial = getattr(exc, "partial", None)
        return ParsedView(
            segments=[_segment_view(seg) for seg in partial.segments] if partial else [],
            error_code=exc.code,
            error_location=exc.location or None,
            error=str(exc),
        )
    return ParsedView(segments=[_segment_view(seg) for seg in message.segments])


def _segment_view(seg) -> ParsedSegment:
    fields = []
    for number in range(1, len(seg) + 1):
        raw = seg.field(number)
        if not raw:
            continue
        reps = [seg.components(number, r) for r in range(1, len(seg.repetitions(number)) + 1)]
        plain = len(reps) == 1 and len(reps[0]) == 1
        fields.append(ParsedField(number, raw, [] if plain else reps, reps[0][0] if plain else ""))
    return ParsedSegment(seg.name, fields)


@dataclass(frozen=True)
class MessageDetail:
    direction: Direction
    message: Hl7Inbound | Hl7Outbound
    peer_name: str | None
    patient_mrn: str | None
    raw: RawView
    parsed: ParsedView
    ack: str | None  # the ACK, one segment per line
    ack_error_code: str = ""
    can_resend: bool = False
    can_discard: bool = False


def get_message(
    session: Session, principal: Principal, direction: Direction, message_id: int
) -> MessageDetail:
    _require_admin(principal)
    model = _model(direction)
    message = session.get(model, message_id)
    if message is None:
        raise NotFound(str(_l("No HL7 message has this number.")), errors={"id": [str(message_id)]})
    audit.record(
        session,
        principal,
        AuditAction.READ,
        entity_type=model.__name__,
        entity_id=message.id,
        patient_id=message.patient_id,
    )
    data = message.raw if isinstance(message, Hl7Inbound) else message.text.encode("utf-8")
    mrn = (
        session.scalar(select(Patient.mrn).where(Patient.id == message.patient_id))
        if message.patient_id is not None
        else None
    )
    outbound = isinstance(message, Hl7Outbound)
    return MessageDetail(
        direction=direction,
        message=message,
        peer_name=message.peer.name if message.peer is not None else None,
        patient_mrn=mrn,
        raw=raw_view(data),
        parsed=parsed_view(data),
        ack=as_lines(message.ack) if message.ack else None,
        ack_error_code=ack_error_code(message.ack or "") if message.ack_code in NAK_CODES else "",
        can_resend=outbound and message.status == OutboundStatus.DEAD,
        can_discard=outbound and message.status in (OutboundStatus.DEAD, OutboundStatus.PENDING),
    )


def ack_error_code(ack: str) -> str:
    """The HL7 error code (table 0357) an ACK gives: ERR-3 from v2.5 on, else the code in
    ERR-1 (ELD, component 4) that v2.3/2.4 peers send. Reads only that one field, tolerantly,
    with the delimiters the ACK's own MSH declares: a peer's ACK is not ours to refuse."""
    segments = [s for s in _SEGMENT_END.split(ack.lstrip("\ufeff")) if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 5:
        return ""
    fs, cs = segments[0][3], segments[0][4]
    for seg in segments[1:]:
        if not seg.startswith("ERR" + fs):
            continue
        fields = seg.split(fs)
        err3 = fields[3].split(cs)[0] if len(fields) > 3 else ""
        if err3.strip():
            return err3.strip()
        eld = fields[1].split(cs) if len(fields) > 1 else []
        if len(eld) > 3 and eld[3].strip():
            return eld[3].split(fs)[0].strip()
    return ""


# --- per-peer counters --------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    count: int = 0
    p50: int | None = None
    p95: int | None = None
    max: int | None = None


def latency(samples: Sequence[int]) -> Latency:
    """Nearest-rank percentiles: always one of the observed values, no interpolation."""
    if not samples:
        return Latency()
    ordered = sorted(samples)
    n = len(ordered)

    def rank(p: float) -> int:
        return ordered[max(1, math.ceil(p * n)) - 1]

    return Latency(n, rank(0.50), rank(0.95), ordered[-1])


@dataclass
class PeerCounters:
    peer: Hl7Peer | None  # None: messages from senders no peer is configured for
    inbound: int = 0
    outbound: int = 0
    pending: int = 0
    dead: int = 0
    duplicates: int = 0
    # (ack code, HL7 error code or "") -> count
    naks_in: dict[tuple[str, str], int] = field(default_factory=dict)
    naks_out: dict[tuple[str, str], int] = field(default_factory=dict)
    latency_in: Latency = field(default_factory=Latency)
    latency_out: Latency = field(default_factory=Latency)


def list_peers(session: Session, principal: Principal) -> list[Hl7Peer]:
    _require_admin(principal)
    return peer_service.list_peers(session)


def peer_counters(session: Session, principal: Principal) -> list[PeerCounters]:
    """Counters for every peer (by name), then for unknown senders if any wrote to us.

    Totals are over all stored messages; NAKs are the messages whose last ACK refused them
    (an outbound message answered AE and then accepted on a retry counts as sent).

    Each query is shaped to be answered from an index, not by reading every message (the
    rows carry the message bodies): totals from the peer index, NAKs, pending and dead
    letters from the status indexes (a refused message is never applied/sent), latencies
    from the newest rows by primary key.
    """
    peers = list_peers(session, principal)
    by_id: dict[int | None, PeerCounters] = {p.id: PeerCounters(p) for p in peers}

    def counters(peer_id: int | None) -> PeerCounters:
        if peer_id not in by_id:
            by_id[peer_id] = PeerCounters(None)
        return by_id[peer_id]

    In, Out = Hl7Inbound, Hl7Outbound
    for peer_id, count in session.execute(select(In.peer_id, func.count()).group_by(In.peer_id)):
        counters(peer_id).inbound = count
    duplicates = session.execute(
        select(In.peer_id, func.sum(In.duplicates)).where(In.duplicates > 0).group_by(In.peer_id)
    )
    for peer_id, count in duplicates:
        counters(peer_id).duplicates = int(count)
    naks_in = session.execute(
        select(In.peer_id, In.ack_code, In.error_code, func.count())
        .where(
            In.status.in_((InboundStatus.ERROR, InboundStatus.REJECTED)),
            In.ack_code.in_(NAK_CODES),
        )
        .group_by(In.peer_id, In.ack_code, In.error_code)
    )
    for peer_id, code, error_code, count in naks_in:
        key = (code, "" if error_code is None else str(error_code))
        naks = counters(peer_id).naks_in
        naks[key] = naks.get(key, 0) + count

    for peer_id, count in session.execute(select(Out.peer_id, func.count()).group_by(Out.peer_id)):
        counters(peer_id).outbound = count
    waiting = session.execute(
        select(Out.peer_id, Out.status, func.count())
        .where(Out.status.in_((OutboundStatus.PENDING, OutboundStatus.DEAD)))
        .group_by(Out.peer_id, Out.status)
    )
    for peer_id, status, count in waiting:
        row = counters(peer_id)
        if status == OutboundStatus.PENDING:
            row.pending = count
        else:
            row.dead = count
    naks_out = session.execute(
        select(Out.peer_id, Out.ack_code, Out.ack)
        .where(
            Out.status.in_((OutboundStatus.PENDING, OutboundStatus.DEAD, OutboundStatus.DISCARDED)),
            Out.ack_code.in_(NAK_CODES),
        )
        .limit(NAK_SAMPLE)
    )
    tally: dict[int | None, Counter] = defaultdict(Counter)
    for peer_id, code, ack in naks_out:
        tally[peer_id][(code, ack_error_code(ack or ""))] += 1
    for peer_id, counts in tally.items():
        counters(peer_id).naks_out = dict(counts)

    window = min(LATENCY_SAMPLE * max(1, len(by_id)), LATENCY_WINDOW)
    for peer_id, samples in _latencies(session, In, window).items():
        counters(peer_id).latency_in = latency(samples)
    for peer_id, samples in _latencies(session, Out, window).items():
        counters(peer_id).latency_out = latency(samples)
    known = [by_id[p.id] for p in peers]
    return known + ([by_id[None]] if None in by_id else [])


def _latencies(session: Session, model, window: int) -> dict[int | None, list[int]]:
    """Up to LATENCY_SAMPLE latencies per peer, newest first, from the newest ``window``
    acknowledged messages of all peers (a walk down the primary key)."""
    found: dict[int | None, list[int]] = defaultdict(list)
    rows = session.execute(
        select(model.peer_id, model.ack_latency_ms)
        .where(model.ack_latency_ms.is_not(None))
        .order_by(model.id.desc())
        .limit(window)
    )
    for peer_id, ms in rows:
        if len(found[peer_id]) < LATENCY_SAMPLE:
            found[peer_id].append(ms)
    return found
