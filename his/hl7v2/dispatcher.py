"""The outbound dispatcher: sends the outbox to the peers, in order per patient, at least
once and — once acknowledged — never again.

A round:

1. **Claim** (a short transaction): the due rows — pending, ``next_attempt_at`` passed, not
   claimed by a live dispatcher, and with no earlier message of the same (peer,
   patient_key) still pending or dead — get ``claimed_by``/``claimed_until`` (a lease).
   PostgreSQL locks them ``FOR UPDATE SKIP LOCKED``, so dispatchers running at once take
   disjoint rows; SQLite has one writer (the claim takes the write lock), so the same code
   holds there. At most one row per (peer, patient) is due at a time, so one patient's
   messages can never overtake each other, even across dispatchers.
2. **Send** outside any transaction, one persistent MLLP connection per peer, and wait for
   the ACK; MSA-2 must equal our MSH-10.
3. **Record** each outcome in its own short transaction: AA/CA → sent (with the ACK and its
   latency); otherwise a retry with exponential backoff (1 s, 2 s, 4 s … capped at
   ``settings.hl7_retry_max_seconds``, plus up to 10 % jitter), or a dead letter.

Dead letters. A message is parked (``dead``) after ``peer.max_attempts`` failed tries in
which the peer had it (an AE, a wrong or unreadable ACK, no ACK in time, a connection
broken after sending). A peer that cannot be reached at all (connection refused) is a
peer-wide outage, not a fault of the message: those tries are counted but never park the
message, or an hour's outage of the lab would leave every pending message dead. A dead
message holds its patient's later messages for that peer (their order matters) until an
operator resends or discards it; other patients' messages are not held.

AR / CR. The peer rejected the message for its type, version, processing id or structure
(ERR-3 codes 100–205): resending it unchanged cannot succeed, so it is parked at once.
HL7 also uses AR for "rejected for reasons unrelated to the content" (the receiving
application is down, an internal error — codes 206/207, or no ERR code at all); those are
retried like an AE, since the same message will be accepted once the peer recovers.

Crashes. A dispatcher that dies leaves its claims behind; they expire (the lease) and
another dispatcher takes the rows. A dispatcher starting on the same host takes back at
once the claims of this host's dispatchers whose process is gone (``release_orphaned``), so
a supervisor's restart after a crash does not wait out the lease. A message whose ACK was
lost in a crash is sent again with the same MSH-10, which the receiver recognises as a
duplicate; a message recorded as sent is never sent again (only pending rows are ever
claimed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from his.db import Database, utcnow
from his.errors import Conflict, NotFound
from his.hl7v2.ack import parse_ack
from his.hl7v2.client import MllpClient, MllpConnectionError, MllpError
from his.logging import get_logger
from his.models import AuditAction, Role
from his.models.hl7 import Hl7Outbound, Hl7Peer, OutboundStatus
from his.services import audit
from his.services.access import Principal

log = get_logger(__name__)

CONNECT_TIMEOUT = 5.0
MAX_PEER_THREADS = 8  # peers served at once by one dispatcher
# The peer's message-specific refusals: resending the same message cannot succeed.
PERMANENT_REJECT_CODES = frozenset({100, 101, 102, 103, 200, 201, 202, 203, 204, 205})
_HELD = (OutboundStatus.PENDING, OutboundStatus.DEAD)


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # claimed, not tried this round (their peer was unreachable)
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.sent + self.retried + self.dead


@dataclass
class _Claimed:
    id: int
    peer_id: int
    host: str
    port: int
    max_attempts: int
    control_id: str
    text: str
    attempts: int


class _Outcome:
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def backoff_seconds(attempts: int, cap: float, *, rng: random.Random | None = None) -> float:
    """Delay before the next try after ``attempts`` failed ones: 1, 2, 4 … s, at most
    ``cap``, stretched by up to 10 % so dispatchers do not retry in lockstep."""
    base = min(cap, 2.0 ** max(0, attempts - 1))
    jitter = (rng or random).uniform(0.0, 0.1)
    return min(cap, base * (1 + jitter)) if cap > 0 else 0.0


def due_rows(now: dt.datetime):
    """The statement selecting due rows (see the module docstring), oldest first."""
    earlier = aliased(Hl7Outbound)
    blocked = exists().where(
        earlier.peer_id == Hl7Outbound.peer_id,
        earlier.patient_key == Hl7Outbound.patient_key,
        earlier.id < Hl7Outbound.id,
        earlier.status.in_(_HELD),
    )
    return (
        select(Hl7Outbound)
        .join(Hl7Peer, Hl7Peer.id == Hl7Outbound.peer_id)
        .where(
            Hl7Outbound.status == OutboundStatus.PENDING,
            or_(Hl7Outbound.next_attempt_at.is_(None), Hl7Outbound.next_attempt_at <= now),
            or_(Hl7Outbound.claimed_until.is_(None), Hl7Outbound.claimed_until <= now),
            Hl7Peer.active.is_(True),
            Hl7Peer.host.is_not(None),
            Hl7Peer.port.is_not(None),
            ~blocked,
        )
        .order_by(Hl7Outbound.id)
    )


class Dispatcher:
    """One dispatcher: its identity (for claims) and its open connections, one per peer."""

    def __init__(
        self,
        database: Database,
        settings: Any,
        *,
        worker_id: str | None = None,
        lease_seconds: float | None = None,
        client_factory: Callable[..., MllpClient] = MllpClient,
    ):
        self.database = database
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self.ack_timeout = float(getattr(settings, "hl7_ack_timeout", 30.0))
        self.retry_cap = float(getattr(settings, "hl7_retry_max_seconds", 30.0))
        # Long enough for one send; renewed before each send when running short.
        self.per_message = CONNECT_TIMEOUT + self.ack_timeout + 5.0
        self.lease = lease_seconds or max(120.0, 4 * self.per_message)
        self.client_factory = client_factory
        self._clients: dict[tuple[int, str, int], MllpClient] = {}
        self._lock = threading.Lock()

    # -- connections ----------------------------------------------------------------------

    def _client(self, peer_id: int, host: str, port: int) -> MllpClient:
        # One connection per peer, used by that peer's thread only.
        key = (peer_id, host, port)
        if key not in self._clients:
            self._clients[key] = self.client_factory(
                host, port, connect_timeout=CONNECT_TIMEOUT, ack_timeout=self.ack_timeout
            )
        return self._clients[key]

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- a round --------------------------------------------------------------------------

    def claim(self, now: dt.datetime, limit: int) -> list[_Claimed]:
        until = now + dt.timedelta(seconds=self.lease)
        with self.database.session(write=True) as session:
            # Up to ``limit`` rows per peer: one peer's backlog never fills a round and
            # leaves the other peers' messages unclaimed behind it.
            peers = session.scalars(
                due_rows(now).with_only_columns(Hl7Outbound.peer_id).order_by(None).distinct()
            )
            rows = [
                row
                for peer_id in list(peers)
                for row in session.scalars(
                    due_rows(now)
                    .where(Hl7Outbound.peer_id == peer_id)
                    .options(selectinload(Hl7Outbound.peer))
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=Hl7Outbound)
                ).all()
            ]
            claimed = []
            for row in rows:
                row.claimed_by = self.worker_id
                row.claimed_until = until
                claimed.append(
                    _Claimed(
                        id=row.id,
                        peer_id=row.peer_id,
                        host=row.peer.host or "",
                        port=int(row.peer.port or 0),
                        max_attempts=max(1, row.peer.max_attempts),
                        control_id=row.control_id,
                        text=row.text,
                        attempts=row.attempts,
                    )
                )
        return claimed

    def dispatch_once(self, *, now: dt.datetime | None = None, limit: int = 50) -> DispatchStats:
        clock = now or utcnow()
        stats = DispatchStats()
        claimed = self.claim(clock, limit)
        stats.claimed = len(claimed)
        by_peer: dict[int, list[_Claimed]] = {}
        for item in claimed:
            by_peer.setdefault(item.peer_id, []).append(item)
        started = time.monotonic()
        if len(by_peer) <= 1:
            for items in by_peer.values():
                self._send_to_peer(items, clock, started, stats)
            return stats
        # One thread per peer: a slow or silent peer does not hold the others' messages.
        with ThreadPoolExecutor(min(MAX_PEER_THREADS, len(by_peer))) as pool:
            futures = [
                pool.submit(self._send_to_peer, items, clock, started, stats)
                for items in by_peer.values()
            ]
            for future in futures:
                future.result()
        return stats

    def _send_to_peer(
        self, items: list[_Claimed], clock: dt.datetime, started: float, stats: DispatchStats
    ) -> None:
        lease_end = clock + dt.timedelta(seconds=self.lease)
        while items:
            item = items[0]
            # The clock as the caller sees it (tests pass a fixed ``now``).
            moment = clock + dt.timedelta(seconds=time.monotonic() - started)
            if (lease_end - moment).total_seconds() < self.per_message:
                # Every row still to send gets a new lease, not only this one: a row whose
                # lease ran out may be another dispatcher's by now, and is left to it.
                kept = self._renew(items, moment)
                items = [i for i in items if i.id in kept]
                lease_end = moment + dt.timedelta(seconds=self.lease)
                continue
            items = items[1:]
            outcome, peer_down = self._send(item, moment, stats)
            with self._lock:
                if outcome == _Outcome.SENT:
                    stats.sent += 1
                elif outcome == _Outcome.DEAD:
                    stats.dead += 1
                elif outcome == _Outcome.RETRY:
                    stats.retried += 1
            if peer_down:
                for rest in items:
                    self._release(rest)
                with self._lock:
                    stats.released += len(items)
                return

    def _send(self, item: _Claimed, moment: dt.datetime, stats: DispatchStats):
        client = self._client(item.peer_id, item.host, item.port)
        began = time.monotonic()
        try:
            reply = client.send(item.text.encode("utf-8"))
        except MllpError as exc:
            # Not even connected: the peer is down, the message did not reach it.
            unreachable = isinstance(exc, MllpConnectionError) and not exc.sent
            error = f"{type(exc).__name__}: {exc}"
            stats.errors.append(error)
            return self._failed(item, moment, error, counts=not unreachable), True
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            stats.errors.append(error)
            return self._failed(item, moment, error, counts=True), True
        latency_ms = int((time.monotonic() - began) * 1000)
        ack_text = reply.decode("utf-8", errors="replace")
        try:
            info = parse_ack(reply)
        except Exception as exc:  # any unreadable reply is the peer's error, retried
            error = f"unreadable acknowledgment: {exc}"
            stats.errors.append(error)
            return self._failed(item, moment, error, counts=True, ack=ack_text), False
        if info.control_id_acked != item.control_id:
            error = (
                f"MSA-2 {info.control_id_acked!r} does not acknowledge MSH-10 {item.control_id!r}"
            )
            stats.errors.append(error)
            return self._failed(item, moment, error, counts=True, ack=ack_text), False
        if info.accepted:
            self._sent(item, moment, ack_text, info.code, latency_ms)
            return _Outcome.SENT, False
        details = "; ".join(f"{e.code} {e.location} {e.text}".strip() for e in info.errors) or (
            info.text or ""
        )
        error = f"{info.code}: {details}".strip().rstrip(":")
        stats.errors.append(error)
        codes = {e.code for e in info.errors}
        permanent = info.code in ("AR", "CR") and bool(codes & PERMANENT_REJECT_CODES)
        return (
            self._failed(
                item, moment, error, counts=True, ack=ack_text, code=info.code, park=permanent
            ),
            False,
        )

    # -- recording ------------------------------------------------------------------------

    def _sent(self, item: _Claimed, moment: dt.datetime, ack: str, code: str, ms: int) -> None:
        with self.database.session(write=True) as session:
            # Recorded whoever holds the claim now: the peer has the message.
            session.execute(
                update(Hl7Outbound)
                .where(Hl7Outbound.id == item.id, Hl7Outbound.status == OutboundStatus.PENDING)
                .values(
                    status=OutboundStatus.SENT,
                    attempts=Hl7Outbound.attempts + 1,
                    sent_at=moment,
                    acked_at=moment,
                    ack=ack,
                    ack_code=code,
                    ack_latency_ms=ms,
                    last_error=None,
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    def _failed(
        self,
        item: _Claimed,
        moment: dt.datetime,
        error: str,
        *,
        counts: bool,
        ack: str | None = None,
        code: str | None = None,
        park: bool = False,
    ) -> str:
        attempts = item.attempts + 1
        dead = park or (counts and attempts >= item.max_attempts)
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_error": error[:2000],
            "claimed_by": None,
            "claimed_until": None,
        }
        if ack is not None:
            values.update(ack=ack, ack_code=code)
        if dead:
            values["status"] = OutboundStatus.DEAD
        else:
            delay = backoff_seconds(attempts, self.retry_cap)
            values["next_attempt_at"] = moment + dt.timedelta(seconds=delay)
        with self.database.session(write=True) as session:
            session.execute(update(Hl7Outbound).where(self._mine(item)).values(**values))
        log.info(
            "hl7 outbound not accepted",
            outbound_id=item.id,
            attempts=attempts,
            dead=dead,
            error=error[:300],
        )
        return _Outcome.DEAD if dead else _Outcome.RETRY

    def _mine(self, item: _Claimed):
        return and_(
            Hl7Outbound.id == item.id,
            Hl7Outbound.status == OutboundStatus.PENDING,
            Hl7Outbound.claimed_by == self.worker_id,
        )

    def _release(self, item: _Claimed) -> None:
        with self.database.session(write=True) as session:
            session.execute(
                update(Hl7Outbound)
                .where(self._mine(item))
                .values(claimed_by=None, claimed_until=None)
            )

    def _renew(self, items: list[_Claimed], moment: dt.datetime) -> set[int]:
        """Extends this dispatcher's claim on ``items``; the ids it still holds."""
        until = moment + dt.timedelta(seconds=self.lease)
        with self.database.session(write=True) as session:
            result = session.execute(
                update(Hl7Outbound)
                .where(
                    Hl7Outbound.id.in_([i.id for i in items]),
                    Hl7Outbound.status == OutboundStatus.PENDING,
                    Hl7Outbound.claimed_by == self.worker_id,
                )
                .values(claimed_until=until)
                .returning(Hl7Outbound.id)
            )
            return set(result.scalars())


def _process_gone(worker_id: str, host: str) -> bool:
    """Whether ``worker_id`` (``host:pid:nonce``, see ``default_worker_id``) names a
    dispatcher of ``host`` whose process no longer exists. A pid reused since by another
    process counts as alive: its claims then wait out their lease, the safe side."""
    parts = worker_id.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def release_orphaned(database: Database, *, now: dt.datetime | None = None) -> int:
    """Frees the live claims of this host's dispatchers that were killed or crashed: their
    rows are due again at once. A message such a dispatcher had sent but not yet recorded
    is sent again with the same MSH-10, which the receiver recognises as a repeat."""
    host = socket.gethostname()
    moment = now or utcnow()
    with database.session(write=True) as session:
        claims = session.execute(
            select(Hl7Outbound.id, Hl7Outbound.claimed_by).where(
                Hl7Outbound.status == OutboundStatus.PENDING,
                Hl7Outbound.claimed_by.like(f"{host}:%"),
                Hl7Outbound.claimed_until > moment,
            )
        ).all()
        gone = {by for _, by in claims if _process_gone(by, host)}
        released = 0
        for by in sorted(gone):
            result = session.execute(
                update(Hl7Outbound)
                .where(
                    Hl7Outbound.status == OutboundStatus.PENDING,
                    Hl7Outbound.claimed_by == by,
                )
                .values(claimed_by=None, claimed_until=None)
            )
            released += result.rowcount
    if released:
        log.info("hl7 outbound claims of stopped dispatchers released", rows=released)
    return released


def dispatch_once(
    database: Database,
    settings: Any,
    *,
    worker_id: str | None = None,
    now: dt.datetime | None = None,
    limit: int = 50,
) -> DispatchStats:
    """One round with fresh connections (closed afterwards); ``run`` keeps them open."""
    with Dispatcher(database, settings, worker_id=worker_id) as dispatcher:
        return dispatcher.dispatch_once(now=now, limit=limit)


def run(
    database: Database,
    settings: Any,
    *,
    loop: bool,
    interval: float,
    with_parent: bool,
    limit: int = 50,
    echo: Callable[[str], None] = print,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """The dispatcher process (``his hl7 dispatch``): one round, or rounds every
    ``interval`` seconds; with ``with_parent`` it ends when the process that started it
    (``make run``) is gone."""
    parent = os.getppid()

    def orphaned() -> bool:
        return (with_parent and os.getppid() != parent) or bool(should_stop and should_stop())

    try:
        release_orphaned(database)
    except Exception as exc:  # the database may be away; the lease frees them later
        echo(f"hl7 dispatch: orphaned claims not released: {exc}")
    with Dispatcher(database, settings) as dispatcher:
        while True:
            try:
                stats = dispatcher.dispatch_once(limit=limit)
            except Exception as exc:
                if not loop:
                    raise
                # A database restart must not end the dispatcher: the next round retries.
                echo(f"hl7 dispatch round failed: {exc}")
                stats = DispatchStats()
            if stats.claimed or not loop:
                echo(
                    f"hl7 outbound: {stats.sent} sent, {stats.retried} to retry, "
                    f"{stats.dead} dead letters"
                )
            if not loop:
                return
            # A full round means more may be due: go again at once.
            deadline = time.monotonic() + (0 if stats.claimed >= limit else interval)
            while time.monotonic() < deadline:
                if orphaned():
                    return
                time.sleep(min(0.5, interval))
            if orphaned():
                return


# --- operator actions (admin UI) ---------------------------------------------------------------


def _row(session: Session, outbound_id: int) -> Hl7Outbound:
    row = session.scalar(select(Hl7Outbound).where(Hl7Outbound.id == outbound_id).with_for_update())
    if row is None:
        raise NotFound(str(_l("No outbound HL7 message has this id.")))
    return row


def resend(session: Session, outbound_id: int, principal: Principal) -> Hl7Outbound:
    """A dead letter goes back in the queue, its attempts reset (same text, same MSH-10:
    a peer that did get it recognises the duplicate)."""
    principal.require_any(Role.ADMIN)
    row = _row(session, outbound_id)
    if row.status is not OutboundStatus.DEAD:
        raise Conflict(str(_l("Only a dead-letter message can be sent again.")))
    row.status = OutboundStatus.PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    return _unclaimed_and_audited(session, principal, row, "resend")


def discard(session: Session, outbound_id: int, principal: Principal) -> Hl7Outbound:
    """An operator gives up on a dead (or still pending, unclaimed) message; the patient's
    later messages to that peer are no longer held by it."""
    principal.require_any(Role.ADMIN)
    row = _row(session, outbound_id)
    if row.status not in (OutboundStatus.DEAD, OutboundStatus.PENDING):
        raise Conflict(str(_l("Only a pending or dead-letter message can be discarded.")))
    if (
        row.status is OutboundStatus.PENDING
        and row.claimed_until is not None
        and row.claimed_until > utcnow()
    ):
        raise Conflict(str(_l("The message is being sent right now; try again in a minute.")))
    row.status = OutboundStatus.DISCARDED
    return _unclaimed_and_audited(session, principal, row, "discard")


def _unclaimed_and_audited(
    session: Session, principal: Principal, row: Hl7Outbound, detail: str
) -> Hl7Outbound:
    row.claimed_by = None
    row.claimed_until = None
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="Hl7Outbound",
        entity_id=row.id,
        patient_id=row.patient_id,
        detail=detail,
    )
    session.flush()
    return row
