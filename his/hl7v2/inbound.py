"""Receiving HL7 v2 messages: store first, then acknowledge, then (or meanwhile) apply.

For each message (or each message of a batch):
1. The raw bytes and the header fields are committed to ``hl7_inbound`` before any ACK
   leaves. A message we cannot store is answered AE (original mode) or CE (enhanced mode):
   the sender keeps it and sends it again.
2. A repeat of (MSH-3, MSH-4, MSH-10) is answered with the ACK we gave the first time and
   is not applied again; the repeat is counted on the stored row.
3. Original mode (MSH-15/16 empty): the message is applied at once and answered AA, AE
   (understood, not applied: the ERR segment names the field) or AR (refused: unsupported
   type, event, version or processing id, unknown sender, unreadable MSH).
4. Enhanced mode: CA / CR is the answer on receipt (MSH-15 says when to send one), and the
   application acknowledgment follows through the outbox as MSH-16 asks.

Messages are applied one at a time in arrival order (the listener runs this class on one
thread), so one patient's messages are applied in the order they arrived; a message applied
inline first applies any earlier message still waiting.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from his.config import Settings
from his.db import Database, utcnow
from his.errors import DomainError, ValidationFailed
from his.hl7v2 import apply_adt, apply_oru, batch, outbox
from his.hl7v2.ack import ErrorDetail, build_ack, build_batch_ack, encode_ack
from his.hl7v2.codec import SUPPORTED_VERSIONS, Hl7Error, Message, normalise_version, parse
from his.hl7v2.pid import FIELD_LOCATIONS
from his.logging import get_logger
from his.models import Hl7Inbound, Hl7Peer, InboundStatus, PeerMode, Role
from his.services.access import Principal
from his.services.patients import PossibleDuplicate

log = get_logger(__name__)

HANDLERS = {("ADT", trigger): handler for trigger, handler in apply_adt.HANDLERS.items()}
HANDLERS[("ORU", "R01")] = apply_oru.results
# Billing goes to the social-insurance gateway as claim files, never over HL7 v2.
BILLING_TYPES = {"BAR", "DFT"}
PROCESSING_IDS = {"P", "D", "T"}
PENDING_ROUND = 500  # stored messages applied per round of the applier


def new_ack_id() -> str:
    """Our ACK's MSH-10: unique without a shared counter, at most 20 characters."""
    return f"K{int(time.time() * 1000)}{secrets.token_hex(3)}"


def _version_family(version: str) -> str:
    return ".".join(normalise_version(version).split(".")[:2])


@dataclass
class Outcome:
    code: str  # AA AE AR CA CE CR, or "" when MSH-15 asks for no answer
    ack: str | None
    row_id: int | None


class Receiver:
    """Stores, acknowledges and applies inbound messages; not thread-safe on purpose."""

    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings
        # Whether stored messages may wait to be applied (enhanced mode, or left by a stop):
        # checked at start, then known, so the common case asks the database nothing more.
        self._waiting = True

    # -- one frame -------------------------------------------------------------------------

    def handle(self, frame: bytes, remote: str = "") -> bytes | None:
        """The reply to one MLLP frame (a message or a batch), or None for no reply."""
        if batch.is_batch(frame):
            return self._batch(frame, remote)
        outcome = self.receive(frame, remote)
        return encode_ack(outcome.ack) if outcome.ack else None

    def receive(self, raw: bytes, remote: str = "", batch_control_id: str | None = None) -> Outcome:
        started = time.monotonic()
        try:
            msg, error = parse(raw), None
        except Hl7Error as exc:
            msg, error = None, exc
        if self._waiting:
            # Messages accepted earlier (enhanced mode, or left by a stop) are applied first.
            try:
                # All of them, however many: this message must not overtake any.
                while self.apply_pending() == PENDING_ROUND:
                    pass
            except Exception:  # the database may be away: this message's answer says so
                log.exception("hl7.apply_pending_failed")
        return self._guarded(raw, msg, error, remote, batch_control_id, started)

    def _guarded(self, raw, msg, error, remote, batch_control_id, started) -> Outcome:
        """``_receive``, and whatever it could not do still answered (and kept if it can be)."""
        for _attempt in range(2):
            try:
                return self._receive(raw, msg, error, remote, batch_control_id, started)
            except IntegrityError:
                continue  # stored by another listener in between: the next try sees a repeat
            except Exception:  # answered below
                log.exception("hl7.receive_failed")
                break
        return self._keep_failed(raw, msg, remote, batch_control_id, started)

    def _receive(self, raw, msg, error, remote, batch_control_id, started) -> Outcome:
        """One transaction: the message is stored, and in original mode applied (in a
        savepoint: an AE leaves only the stored message), and its ACK recorded; the ACK
        leaves after the commit."""
        enhanced = bool(msg and msg.is_enhanced_mode)
        with self.database.session() as session:
            earlier = self._earlier(session, msg)
            reused = earlier is not None and not _same_message(earlier.raw, msg)
            if earlier is not None and not reused:
                return self._repeat(session, earlier, msg, raw, started)
            peer = self._peer(session, msg)
            row = self._new_row(raw, msg, peer, remote, batch_control_id)
            if reused:
                row.control_id = None  # kept beside the first one, never taken for it
            session.add(row)
            session.flush()
            refusal = ErrorDetail.from_error(error) if error else self._refusal(msg, peer)
            if reused:
                refusal = ErrorDetail(
                    205,
                    "MSH^1^10",
                    str(
                        _l(
                            "MSH-10 %(id)s was used before for a different message; "
                            "send this one with a new control id.",
                            id=msg.control_id,
                        )
                    ),
                )
            errors: list[ErrorDetail] = []
            if refusal is not None:
                code, errors = ("CR" if enhanced else "AR"), [refusal]
                row.status = InboundStatus.REJECTED
            elif peer is None or peer.mode is PeerMode.STORE:
                code = "CA" if enhanced else "AA"
                row.status = InboundStatus.STORED
            elif enhanced:
                code = "CA"  # stored; applied next, the application ACK follows
                self._waiting = True
            else:
                code, errors = self._apply(session, row, msg)
            wanted = refusal is not None or _answer_wanted(msg, code)
            ack = self._ack(msg, code, errors, raw) if wanted else None
            _record_ack(row, code, ack, errors, started)
            return Outcome(code if ack else "", ack, row.id)

    def _repeat(self, session, earlier: Hl7Inbound, msg, raw, started) -> Outcome:
        earlier.duplicates += 1
        earlier.last_duplicate_at = utcnow()
        if earlier.status is InboundStatus.RECEIVED and not earlier.enhanced and msg is not None:
            # Stored but never answered (we stopped in between): apply it now, once.
            code, errors = self._apply(session, earlier, msg)
            ack = self._ack(msg, code, errors)
            _record_ack(earlier, code, ack, errors, started)
            return Outcome(code, ack, earlier.id)
        if earlier.ack or not _answer_wanted(msg, "CA"):
            return Outcome(earlier.ack_code or "", earlier.ack, earlier.id)
        code = "CA" if earlier.enhanced else "AA"
        return Outcome(code, self._ack(msg, code, [], raw), earlier.id)

    def _keep_failed(self, raw, msg, remote, batch_control_id, started) -> Outcome:
        """What we did not foresee still leaves the message stored (status error) and
        answered AE; when even storing fails the answer asks the sender to send again."""
        enhanced = bool(msg and msg.is_enhanced_mode)
        problem = ErrorDetail(207, "", str(_l("Internal error while applying the message.")))
        try:
            with self.database.session() as session:
                row = self._new_row(raw, msg, self._peer(session, msg), remote, batch_control_id)
                session.add(row)
                session.flush()
                row.status = InboundStatus.ERROR
                code = "CE" if enhanced else "AE"
                ack = self._ack(msg, code, [problem], raw)
                _record_ack(row, code, ack, [problem], started)
                return Outcome(code, ack, row.id)
        except Exception:
            log.exception("hl7.store_failed")
            problem = ErrorDetail(
                207, "", str(_l("The message could not be stored; send it again."))
            )
            code = "CE" if enhanced else "AE"
            return Outcome(code, self._ack(msg, code, [problem], raw), None)

    # -- storing ---------------------------------------------------------------------------

    def _earlier(self, session: Session, msg: Message | None) -> Hl7Inbound | None:
        """The stored message this one repeats: same MSH-3, MSH-4 and MSH-10."""
        if msg is None or not msg.control_id:
            return None
        return session.scalar(
            select(Hl7Inbound).where(
                Hl7Inbound.sending_application == msg.sending_application[:180],
                Hl7Inbound.sending_facility == msg.sending_facility[:180],
                Hl7Inbound.control_id == msg.control_id[:199],
            )
        )

    def _new_row(self, raw, msg, peer, remote, batch_control_id) -> Hl7Inbound:
        kind = "^".join(p for p in (msg.message_code, msg.trigger) if p)[:20] if msg else ""
        return Hl7Inbound(
            peer_id=peer.id if peer else None,
            remote=remote[:80] or None,
            sending_application=msg.sending_application[:180] if msg else "",
            sending_facility=msg.sending_facility[:180] if msg else "",
            control_id=(msg.control_id[:199] or None) if msg else None,
            message_type=kind,
            version=msg.version_raw[:10] if msg else "",
            enhanced=bool(msg and msg.is_enhanced_mode),
            app_ack_type=msg.application_ack_type[:2] if msg else "",
            batch_control_id=batch_control_id,
            raw=raw,
            patient_key=_patient_key(msg),
            status=InboundStatus.RECEIVED,
        )

    def _peer(self, session: Session, msg: Message | None) -> Hl7Peer | None:
        if msg is None:
            return None
        return session.scalar(
            select(Hl7Peer).where(
                Hl7Peer.sending_application == msg.sending_application,
                Hl7Peer.sending_facility == msg.sending_facility,
                Hl7Peer.active.is_(True),
            )
        )

    def _refusal(self, msg: Message, peer: Hl7Peer | None) -> ErrorDetail | None:
        """Why the message is not accepted at all (AR / CR), or None."""
        if peer is None and self.settings.hl7_unknown_senders == "reject":
            return ErrorDetail(
                207,
                "MSH^1^3",
                str(_l("Unknown sender: no active peer has this MSH-3 / MSH-4.")),
            )
        if msg.processing_id and msg.processing_id not in PROCESSING_IDS:
            return ErrorDetail(202, "MSH^1^11", str(_l("Processing id must be P, D or T.")))
        version = msg.version
        if version not in SUPPORTED_VERSIONS:
            return ErrorDetail(
                203,
                "MSH^1^12",
                str(_l("HL7 version %(v)s is not supported (2.3 to 2.8).", v=version)),
            )
        if peer is not None and _version_family(peer.version) != _version_family(version):
            return ErrorDetail(
                203,
                "MSH^1^12",
                str(_l("This peer's profile expects HL7 version %(v)s.", v=peer.version)),
            )
        if msg.message_code in BILLING_TYPES:
            return ErrorDetail(
                200,
                "MSH^1^9",
                str(
                    _l(
                        "Billing messages (BAR, DFT) are not accepted: BHYT charges are "
                        "claimed through the social-insurance claim files."
                    )
                ),
            )
        if peer is None or peer.mode is PeerMode.STORE:
            return None  # kept, never applied: any type is welcome
        if (msg.message_code, msg.trigger) not in HANDLERS:
            if msg.message_code in {code for code, _ in HANDLERS}:
                return ErrorDetail(
                    201,
                    "MSH^1^9^2",
                    str(_l("Event %(e)s is not supported.", e=msg.trigger or "?")),
                )
            return ErrorDetail(
                200,
                "MSH^1^9",
                str(_l("Message type %(t)s is not supported.", t=msg.message_code or "?")),
            )
        return None

    # -- answering and applying -------------------------------------------------------------

    def _ack(self, msg: Message | None, code: str, errors, raw: bytes | None = None) -> str:
        return build_ack(msg, code, control_id=new_ack_id(), now=utcnow(), errors=errors, raw=raw)

    def apply_pending(self, *, before_id: int | None = None, limit: int = PENDING_ROUND) -> int:
        """Applies stored messages still waiting (enhanced mode, or left by a stop), in
        arrival order; sends each application ACK that MSH-16 asks for. Returns how many."""
        with self.database.session(write=False) as session:
            query = select(Hl7Inbound.id).where(Hl7Inbound.status == InboundStatus.RECEIVED)
            if before_id is not None:
                query = query.where(Hl7Inbound.id < before_id)
            ids = list(session.scalars(query.order_by(Hl7Inbound.id).limit(limit)))
        if before_id is None and len(ids) < limit:
            self._waiting = False  # all applied below; a new enhanced message sets it again
        for row_id in ids:
            try:
                self._apply_stored(row_id)
            except Exception:  # one bad message must not stop the others
                log.exception("hl7.apply_failed", inbound_id=row_id)
                self._mark_failed(row_id)
        return len(ids)

    def _apply_stored(self, row_id: int) -> None:
        with self.database.session() as session:
            row = session.get(Hl7Inbound, row_id)
            if row is None or row.status is not InboundStatus.RECEIVED:
                return
            try:
                msg = parse(row.raw)
            except Hl7Error as exc:  # stored before a codec change: refuse it now
                row.status = InboundStatus.REJECTED
                row.error, row.error_code = str(exc.message), exc.code
                return
            code, errors = self._apply(session, row, msg)
            if row.enhanced:
                if _app_ack_wanted(row.app_ack_type, code):
                    self._send_application_ack(session, row, msg, code, errors)
            else:
                # The sender never got an answer; a resend is answered from this row.
                row.ack_code, row.ack = code, self._ack(msg, code, errors)
            _note_error(row, errors)

    def _mark_failed(self, row_id: int) -> None:
        """A stored message that could not be applied: an error, with the AE its sender
        gets (now as the application ACK, or when it sends the message again)."""
        problem = ErrorDetail(207, "", str(_l("Internal error while applying the message.")))
        with self.database.session() as session:
            row = session.get(Hl7Inbound, row_id)
            row.status = InboundStatus.ERROR
            _note_error(row, [problem])
            try:
                msg = parse(row.raw)
            except Hl7Error:
                msg = None
            if row.enhanced and msg is not None and _app_ack_wanted(row.app_ack_type, "AE"):
                self._send_application_ack(session, row, msg, "AE", [problem])
            elif not row.enhanced:
                row.ack_code, row.ack = "AE", self._ack(msg, "AE", [problem], row.raw)

    def _send_application_ack(self, session, row, msg, code, errors) -> None:
        """Through the outbox to the peer's address; it asks for a commit ACK (MSH-15 AL),
        so the dispatcher knows it arrived. A peer without an address cannot get one:
        the row says so, for the admin page."""
        peer = session.get(Hl7Peer, row.peer_id)
        if peer is None or not peer.host or not peer.port:
            row.error = (row.error + "\n" if row.error else "") + str(
                _l("No application acknowledgment sent: the peer has no host and port.")
            )
            return
        ack = build_ack(
            msg, code, control_id=new_ack_id(), now=utcnow(), errors=errors, accept_ack="AL"
        )
        outbox.queue_application_ack(session, row, ack)

    def _apply(self, session: Session, row: Hl7Inbound, msg: Message) -> tuple[str, list]:
        peer = session.get(Hl7Peer, row.peer_id) if row.peer_id else None
        handler = HANDLERS.get((msg.message_code, msg.trigger))
        if peer is None or handler is None:
            row.status = InboundStatus.STORED
            return "AA", []
        principal = Principal(
            user_id=None,
            username=f"hl7:{peer.name}",
            roles=frozenset({Role.INTEGRATION}),
            facility_id=peer.facility_id,
            request_id=f"hl7-{row.id}",
        )
        # What this peer sent is not echoed back to it by the outbox.
        session.info["hl7_origin_peer_id"] = peer.id
        try:
            with session.begin_nested():
                patient = handler(session, principal, msg, peer)
        except Exception as exc:
            errors = _errors_of(exc)
            if not isinstance(exc, Hl7Error | DomainError):
                log.exception("hl7.apply_failed", inbound_id=row.id)
            row.status = InboundStatus.ERROR
            _note_error(row, errors)
            return "AE", errors
        finally:
            session.info.pop("hl7_origin_peer_id", None)
        row.status = InboundStatus.APPLIED
        row.applied_at = utcnow()
        row.patient_id = patient.id if patient is not None else None
        return "AA", []

    # -- batches ---------------------------------------------------------------------------

    def _batch(self, frame: bytes, remote: str) -> bytes:
        try:
            split = batch.split(frame)
        except Hl7Error as exc:
            # The whole batch is refused and kept as received; nothing in it is applied.
            outcome = self._guarded(frame, None, exc, remote, None, time.monotonic())
            head = batch.headers_only(frame)
            if head is None or outcome.row_id is None:
                return encode_ack(outcome.ack)
            # Answered as a batch, to the sender its header names; the row keeps what left.
            text = build_batch_ack(head, [outcome.ack], control_id=new_ack_id(), now=utcnow())
            try:
                with self.database.session() as session:
                    session.get(Hl7Inbound, outcome.row_id).ack = text
            except Exception:  # the refusal is kept; only its wrapping is not
                log.exception("hl7.batch_ack_not_recorded")
                return encode_ack(outcome.ack)
            return encode_ack(text)
        outcomes = [self.receive(m, remote, split.batch_control_id or None) for m in split.messages]
        try:
            with self.database.session(write=False) as session:
                peer = session.scalar(
                    select(Hl7Peer).where(
                        Hl7Peer.sending_application == split.sending_application,
                        Hl7Peer.sending_facility == split.sending_facility,
                        Hl7Peer.active.is_(True),
                    )
                )
                only_errors = peer is not None and peer.batch_ack.value == "batch"
        except Exception:  # every message is answered then, one ACK each
            log.exception("hl7.batch_peer_lookup_failed")
            only_errors = False
        acks = [o.ack for o in outcomes if o.ack and not (only_errors and o.code in ("AA", "CA"))]
        text = build_batch_ack(split, acks, control_id=new_ack_id(), now=utcnow())
        return encode_ack(text)


def _same_message(stored: bytes, msg: Message) -> bool:
    """A resend is the same message, but for its MSH-7 (some senders stamp each try);
    anything else under a used MSH-10 is a different message, never silently dropped."""

    def content(m: Message) -> list:
        return [
            tuple(seg.field(n) for n in range(1, len(seg) + 1) if n != 7)
            if seg.name == "MSH"
            else seg.to_er7()
            for seg in m.segments
        ]

    try:
        return content(parse(stored)) == content(msg)
    except Hl7Error:
        return False


def _app_ack_wanted(wanted: str, code: str) -> bool:
    """MSH-16: AL always, NE (or empty) never, ER only on error, SU only on success."""
    return wanted == "AL" or (wanted == "ER" and code != "AA") or (wanted == "SU" and code == "AA")


def _answer_wanted(msg: Message | None, code: str) -> bool:
    """MSH-15 in enhanced mode: AL always, NE never, ER only on error, SU only on success."""
    if msg is None or not msg.is_enhanced_mode:
        return True
    wanted = msg.accept_ack_type
    if wanted not in ("NE", "ER", "SU"):
        # AL, empty, or a value outside table 0155: silence would leave the sender waiting.
        return True
    ok = code in ("AA", "CA")
    return (wanted == "ER" and not ok) or (wanted == "SU" and ok)


def _record_ack(row: Hl7Inbound, code: str, ack: str | None, errors, started: float) -> None:
    row.ack_code = code if ack else None
    row.ack = ack
    row.acked_at = utcnow()
    row.ack_latency_ms = int((time.monotonic() - started) * 1000)
    _note_error(row, errors)


def _note_error(row: Hl7Inbound, errors) -> None:
    if errors:
        first = errors[0]
        row.error_code = first.code
        row.error_location = first.location[:60] or None
        row.error = "\n".join(e.text for e in errors)


def _errors_of(exc: Exception) -> list[ErrorDetail]:
    """The ERR segments for a failure of the services, naming the HL7 field when the
    service names its input field."""
    if isinstance(exc, Hl7Error):
        return [ErrorDetail.from_error(exc)]
    if isinstance(exc, PossibleDuplicate):
        return [ErrorDetail(205, "PID^1^5", str(exc))]
    if isinstance(exc, ValidationFailed) and exc.errors:
        found = []
        for name, messages in exc.errors.items():
            location = FIELD_LOCATIONS.get(name, FIELD_LOCATIONS.get(name.split(".")[0], ""))
            for message in messages:
                required = message == str(_l("This field is required."))
                found.append(ErrorDetail(101 if required else 102, location, f"{name}: {message}"))
        return found
    if isinstance(exc, DomainError):
        code = {404: 204, 409: 205}.get(exc.status, 207)
        fields = getattr(exc, "errors", None) or {}
        top = next(iter(fields), "")
        location = FIELD_LOCATIONS.get(top, FIELD_LOCATIONS.get(top.split(".")[0], ""))
        return [ErrorDetail(code, location, str(exc))]
    return [ErrorDetail(207, "", str(_l("Internal error while applying the message.")))]


def _patient_key(msg: Message | None) -> str | None:
    if msg is None:
        return None
    pid = msg.segment("PID")
    if pid is not None and pid.get(3):
        return f"{pid.get(3, 5) or '?'}:{pid.get(3)}"[:200]
    obr = msg.segment("OBR")
    if obr is not None and obr.get(2):
        return f"order:{obr.get(2)}"[:200]
    return None
