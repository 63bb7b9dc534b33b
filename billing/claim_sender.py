"""Sending the queued claim files to the BHXH assessment gateway, retrying until it answers,
and keeping its answers (the gateway itself shows them for only 60 days).

A claim file is built, signed and stored READY (``billing.claim_files``); :func:`queue` makes
it QUEUED. :func:`send_due` then takes the due files one at a time:

1. **Claim** (a short transaction): the oldest QUEUED file whose ``next_attempt_at`` has come
   gets ``next_attempt_at`` moved past the send (a lease). PostgreSQL locks the row
   ``FOR UPDATE SKIP LOCKED``, so senders running at once take different files; SQLite has
   one writer (the claim takes the write lock), so the same code holds there. A sender that
   dies leaves the file to whoever comes after the lease.
2. **Send** outside any transaction — no lock is held while waiting for the gateway.
3. **Record** (a second short transaction, the row locked): the gateway's answer (code,
   transaction id, message, time) and ACCEPTED or REJECTED; or, when the gateway could not
   answer (:class:`GatewayUnavailable`), one more failed attempt, the error, and the next try
   after an exponential backoff (1, 2, 4 … minutes, capped, 30 minutes by default).

A file is never sent again once answered: only QUEUED files are claimed, and an answer is
recorded only on a file that has none. A file superseded by a newer version while it was
being sent keeps SUPERSEDED, and the gateway's answer to it is kept all the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from billing.claim_gateway import ClaimGateway, ClaimKind, GatewayAnswer, GatewayUnavailable
from billing.models import ClaimFile, ClaimStatus
from his.db import Database, utcnow
from his.errors import Conflict
from his.logging import get_logger
from his.models import Facility

log = get_logger(__name__)

RETRY_BASE = dt.timedelta(minutes=1)
RETRY_CAP_DEFAULT = dt.timedelta(minutes=30)
# A claimed file is left alone this long; several times longer than one send can take
# (login, send, login again on a refused token and send again, each up to the timeout).
LEASE_MIN = dt.timedelta(minutes=10)
LEASE_PER_TIMEOUT = 8

# Column widths of claim_file.
_CODE_MAX = 20
_TRANSACTION_MAX = 100
_MESSAGE_MAX = 2000
_ERROR_MAX = 1000


def _cut(text: str | None, width: int) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def queue(session: Session, claim_file: ClaimFile, now: dt.datetime | None = None) -> ClaimFile:
    """A READY file is queued, due at once (flushed; the caller commits). Queuing a file that
    is already queued changes nothing; any other status is a :class:`Conflict`."""
    if claim_file.status is ClaimStatus.QUEUED:
        return claim_file
    if claim_file.status is not ClaimStatus.READY:
        raise Conflict(
            str(_l("Only a claim file that is ready can be queued for the gateway.")),
            errors={"status": [claim_file.status.value]},
        )
    claim_file.status = ClaimStatus.QUEUED
    claim_file.next_attempt_at = now or utcnow()
    claim_file.last_error = None
    session.flush()
    return claim_file


def backoff(attempts: int, cap: dt.timedelta = RETRY_CAP_DEFAULT) -> dt.timedelta:
    """The wait after ``attempts`` failed tries: 1, 2, 4 … minutes, at most ``cap``."""
    if attempts <= 0:
        return dt.timedelta(0)
    # 2**20 minutes is two years: past any sensible cap, and no overflow for huge counts.
    return min(cap, RETRY_BASE * 2 ** min(attempts - 1, 20))


@dataclass(frozen=True)
class _Claimed:
    """What the gateway needs, read while the file was claimed (an ``OutgoingClaim``)."""

    id: int
    content: bytes
    kind: ClaimKind
    facility_code: str
    province_code: str


def _kind(tables: str) -> ClaimKind:
    names = {t.strip().upper() for t in tables.split(",")}
    return ClaimKind.CHECK_IN if names == {"XML0"} else ClaimKind.XML


def _lease(gateway: ClaimGateway) -> dt.timedelta:
    timeout = float(getattr(gateway, "timeout", 30.0) or 30.0)
    return max(LEASE_MIN, dt.timedelta(seconds=LEASE_PER_TIMEOUT * timeout))


def _claim(db: Database, now: dt.datetime, until: dt.datetime) -> _Claimed | None:
    with db.session(write=True) as session:
        row = session.scalars(
            select(ClaimFile)
            .where(
                ClaimFile.status == ClaimStatus.QUEUED,
                or_(ClaimFile.next_attempt_at.is_(None), ClaimFile.next_attempt_at <= now),
            )
            .order_by(ClaimFile.next_attempt_at, ClaimFile.id)
            .limit(1)
            # Several senders may run: each takes a file the others have not locked.
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()
        if row is None:
            return None
        facility = session.get(Facility, row.facility_id)
        assert facility is not None  # the foreign key
        row.next_attempt_at = until
        return _Claimed(
            id=row.id,
            content=bytes(row.content),
            kind=_kind(row.tables),
            facility_code=facility.code,
            province_code=facility.province_code,
        )


def _record(
    db: Database,
    claimed: _Claimed,
    answer: GatewayAnswer | None,
    error: str | None,
    now: dt.datetime,
    retry_cap: dt.timedelta,
) -> str:
    """Stores the outcome; returns "accepted", "rejected", "retry" or "dropped"."""
    with db.session(write=True) as session:
        row = session.get(ClaimFile, claimed.id, with_for_update=True, populate_existing=True)
        assert row is not None  # claim files are never deleted
        if row.answered_at is not None or row.status not in (
            ClaimStatus.QUEUED,
            ClaimStatus.SUPERSEDED,
        ):
            # Answered by another sender after this one's lease ran out: the first answer stays.
            log.error("claim_sender.already_answered", claim_file_id=row.id)
            return "dropped"
        if answer is None:
            row.attempts += 1
            row.last_error = _cut(error, _ERROR_MAX)
            row.next_attempt_at = now + backoff(row.attempts, retry_cap)
            log.warning(
                "claim_sender.retry",
                claim_file_id=row.id,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at.isoformat(),
                error=row.last_error,
            )
            return "retry"
        row.answer_code = _cut(answer.code, _CODE_MAX)
        row.transaction_id = _cut(answer.transaction_id, _TRANSACTION_MAX)
        # Without thongDiep the answer itself is the only explanation there is.
        row.answer_message = _cut(
            answer.message or (None if answer.accepted else answer.raw), _MESSAGE_MAX
        )
        row.answered_at = answer.received_at or now
        row.last_error = None
        row.next_attempt_at = None
        outcome = "accepted" if answer.accepted else "rejected"
        if row.status is ClaimStatus.QUEUED:
            row.status = ClaimStatus.ACCEPTED if answer.accepted else ClaimStatus.REJECTED
        else:
            log.warning("claim_sender.answer_to_superseded", claim_file_id=row.id, outcome=outcome)
        log.info(
            "claim_sender.answered",
            claim_file_id=row.id,
            outcome=outcome,
            code=row.answer_code,
            transaction_id=row.transaction_id,
        )
        return outcome


def send_due(
    db: Database,
    gateway: ClaimGateway,
    now: dt.datetime | None = None,
    limit: int = 50,
    *,
    retry_cap: dt.timedelta = RETRY_CAP_DEFAULT,
) -> dict[str, int]:
    """Sends up to ``limit`` due files, each claimed, sent and recorded on its own (see the
    module docstring); it commits. Returns the counts of ``accepted``, ``rejected`` and
    ``retry`` (the gateway could not answer), and ``dropped`` (answered meanwhile by another
    sender: never expected). ``now`` fixes the clock (tests); by default each step reads it."""
    clock: Callable[[], dt.datetime] = (lambda: now) if now is not None else utcnow
    lease = _lease(gateway)
    counts = {"accepted": 0, "rejected": 0, "retry": 0, "dropped": 0}
    for _ in range(limit):
        moment = clock()
        claimed = _claim(db, moment, moment + lease)
        if claimed is None:
            break
        try:
            answer: GatewayAnswer | None = gateway.send(claimed)
            error = None
        except GatewayUnavailable as exc:
            answer, error = None, str(exc) or type(exc).__name__
        counts[_record(db, claimed, answer, error, clock(), retry_cap)] += 1
    return counts


def queued_count(session: Session) -> int:
    """How many files wait for the gateway (for the command's message)."""
    return session.scalar(
        select(func.count()).select_from(ClaimFile).where(ClaimFile.status == ClaimStatus.QUEUED)
    )
