"""The dispatcher against a receiving peer over a real socket."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from his.db import Database, utcnow
from his.hl7v2 import dispatcher
from his.models import Hl7Outbound, OutboundStatus
from his.services.access import Principal
from tests.conftest import settings_for
from tests.factories import FacilityFactory
from tests.hl7v2.outbound_data import add_peer
from tests.hl7v2.peer import ReceiverPeer, ReplyPolicy, msh_fields

SETTINGS = settings_for("sqlite://", HIS_HL7_ACK_TIMEOUT_SECONDS="1")
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


def _message(control_id: str, patient: str) -> str:
    return (
        f"MSH|^~\\&|HIS|91001|LIS|LIS|20260302080000+0700||ADT^A31^ADT_A05|{control_id}|P|2.5.1"
        f"\rPID|1||{patient}^^^91001^MR\r"
    )


def _queue(session, peer, items, now=T0):
    rows = []
    for n, patient in enumerate(items):
        control_id = f"C{len(rows) + 1:03d}{patient}{n}"
        rows.append(
            Hl7Outbound(
                peer_id=peer.id,
                event="A31",
                message_type="ADT^A31^ADT_A05",
                control_id=control_id,
                patient_key=patient,
                text=_message(control_id, patient),
                next_attempt_at=now,
            )
        )
    session.add_all(rows)
    session.commit()
    return rows


def _received_ids(receiver) -> list[str]:
    return [msh_fields(m)[9].decode() for m in receiver.received]


def _reload(session, rows):
    session.expire_all()
    return [session.get(Hl7Outbound, r.id) for r in rows]


@pytest.fixture
def receiver():
    with ReceiverPeer() as peer:
        yield peer


@pytest.fixture
def database(engine, session_factory) -> Database:
    """The dispatcher's units of work, inside the test's rolled-back transaction."""
    return Database(engine, session_factory)


def test_delivers_in_order_and_never_twice(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port)
    rows = _queue(db_session, peer, ["p1", "p2", "p1", "p1"])
    stats = dispatcher.dispatch_once(database, SETTINGS, worker_id="w1", now=T0)
    # One message per patient per round: p1's second waits for its first.
    assert stats.sent == 2
    dispatcher.dispatch_once(database, SETTINGS, worker_id="w1", now=T0)
    dispatcher.dispatch_once(database, SETTINGS, worker_id="w1", now=T0)
    again = dispatcher.dispatch_once(database, SETTINGS, worker_id="w1", now=T0)
    assert again.claimed == 0
    ids = _received_ids(receiver)
    assert sorted(ids) == sorted(r.control_id for r in rows)  # each exactly once
    p1 = [r.control_id for r in rows if r.patient_key == "p1"]
    assert [i for i in ids if i in p1] == p1
    for row in _reload(db_session, rows):
        assert row.status is OutboundStatus.SENT and row.ack_code == "AA"
        assert row.ack_latency_ms is not None and row.claimed_by is None


def test_peer_down_then_back(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port)
    rows = _queue(db_session, peer, ["p1", "p2"])
    receiver.stop()
    stats = dispatcher.dispatch_once(database, SETTINGS, worker_id="w", now=T0)
    assert stats.sent == 0 and stats.retried == 1 and stats.released == 1
    first, second = _reload(db_session, rows)
    assert first.status is OutboundStatus.PENDING and first.attempts == 1
    assert first.next_attempt_at > T0 and first.last_error
    assert second.attempts == 0  # not tried: the peer was known to be down
    receiver.start()
    # Before the backoff ends only the untried one goes.
    stats = dispatcher.dispatch_once(database, SETTINGS, worker_id="w", now=T0)
    assert stats.sent == 1
    later = T0 + dt.timedelta(seconds=5)
    assert dispatcher.dispatch_once(database, SETTINGS, worker_id="w", now=later).sent == 1
    assert all(r.status is OutboundStatus.SENT for r in _reload(db_session, rows))


def test_ae_then_aa_and_wrong_msa2(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port)
    (row,) = _queue(db_session, peer, ["p1"])
    receiver.policy = ReplyPolicy(code="AE")
    assert dispatcher.dispatch_once(database, SETTINGS, now=T0).retried == 1
    receiver.policy = ReplyPolicy(code="AA", control_id=b"SOMETHING-ELSE")
    t1 = T0 + dt.timedelta(seconds=10)
    stats = dispatcher.dispatch_once(database, SETTINGS, now=t1)
    assert stats.retried == 1 and "MSA-2" in stats.errors[0]
    (row,) = _reload(db_session, [row])
    assert row.status is OutboundStatus.PENDING and row.attempts == 2
    receiver.policy = ReplyPolicy(code="AA")
    t2 = T0 + dt.timedelta(seconds=20)
    assert dispatcher.dispatch_once(database, SETTINGS, now=t2).sent == 1
    assert len(receiver.received) == 3  # the same message, three times, same MSH-10
    assert set(_received_ids(receiver)) == {row.control_id}


def test_dead_letter_holds_only_its_patient(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port, max_attempts=2)
    bad, later, other = _queue(db_session, peer, ["p1", "p1", "p2"])
    receiver.policy = ReplyPolicy(
        responder=lambda m: (
            b"MSH|^~\\&|LIS||HIS||20260302||ACK|X|P|2.5.1\rMSA|"
            + (b"AE" if msh_fields(m)[9] == bad.control_id.encode() else b"AA")
            + b"|"
            + msh_fields(m)[9]
            + b"\r"
        )
    )
    now = T0
    for _ in range(4):
        dispatcher.dispatch_once(database, SETTINGS, now=now)
        now += dt.timedelta(seconds=60)
    bad, later, other = _reload(db_session, [bad, later, other])
    assert bad.status is OutboundStatus.DEAD and bad.attempts == 2
    assert later.status is OutboundStatus.PENDING and later.attempts == 0  # held
    assert other.status is OutboundStatus.SENT  # another patient is not held

    admin = Principal.system("admin")
    dispatcher.resend(db_session, bad.id, admin)
    db_session.commit()
    receiver.policy = ReplyPolicy(code="AA")
    for _ in range(2):
        dispatcher.dispatch_once(database, SETTINGS, now=utcnow())
    bad, later = _reload(db_session, [bad, later])
    assert bad.status is OutboundStatus.SENT and later.status is OutboundStatus.SENT


def test_reject_with_unsupported_version_is_dead_at_once(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port)
    (row,) = _queue(db_session, peer, ["p1"])
    receiver.policy = ReplyPolicy(
        responder=lambda m: (
            b"MSH|^~\\&|LIS||HIS||20260302||ACK|X|P|2.5.1\rMSA|AR|"
            + msh_fields(m)[9]
            + b"\rERR||MSH^1^12|203^Unsupported version id^HL70357|E\r"
        )
    )
    assert dispatcher.dispatch_once(database, SETTINGS, now=T0).dead == 1
    (row,) = _reload(db_session, [row])
    assert row.status is OutboundStatus.DEAD and row.ack_code == "AR"


def test_expired_claim_of_a_crashed_dispatcher_is_taken_over(db_session, database, receiver):
    peer = add_peer(db_session, FacilityFactory(), port=receiver.port)
    (row,) = _queue(db_session, peer, ["p1"])
    row.claimed_by, row.claimed_until = "crashed", T0 + dt.timedelta(seconds=60)
    db_session.commit()
    assert dispatcher.dispatch_once(database, SETTINGS, now=T0).claimed == 0
    later = T0 + dt.timedelta(seconds=61)
    assert dispatcher.dispatch_once(database, SETTINGS, now=later).sent == 1


def test_two_dispatchers_at_once(backend, fresh_database):
    """Two dispatchers (own engines, own connections) over one committed database: each
    message reaches the receiver exactly once, each patient's in order."""
    databases = fresh_database(backend)
    url = next(databases)
    db_a, db_b = Database.from_url(url), Database.from_url(url)
    try:
        with ReceiverPeer() as receiver, db_a.session() as session:
            from his.models import CareLevel, Facility, Hl7Peer

            facility = Facility(
                code="93001", name="BV Thử", care_level=CareLevel.BASIC, province_code="93"
            )
            session.add(facility)
            session.flush()
            peer = Hl7Peer(
                name="LIS",
                facility_id=facility.id,
                sending_application="LIS",
                host="127.0.0.1",
                port=receiver.port,
                events="ADT",
            )
            session.add(peer)
            session.flush()
            rows = _queue(session, peer, [f"p{n % 5}" for n in range(40)], now=utcnow())
            expected = [(r.patient_key, r.control_id) for r in rows]
            session.commit()

            def work(database, name):
                with dispatcher.Dispatcher(database, SETTINGS, worker_id=name) as d:
                    for _ in range(30):
                        d.dispatch_once(limit=3)

            threads = [
                threading.Thread(target=work, args=(db_a, "a")),
                threading.Thread(target=work, args=(db_b, "b")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            ids = _received_ids(receiver)
            assert sorted(ids) == sorted(c for _, c in expected)
            for key in {k for k, _ in expected}:
                mine = [c for k, c in expected if k == key]
                assert [i for i in ids if i in mine] == mine
            statuses = session.scalars(select(Hl7Outbound.status)).all()
            assert set(statuses) == {OutboundStatus.SENT}
    finally:
        db_a.engine.dispose()
        db_b.engine.dispose()
        databases.close()


def test_a_slow_peer_does_not_hold_another_peers_messages(backend, fresh_database):
    """Peers are served side by side: while one takes its time over each ACK, the other's
    messages go out at once, not after it."""
    databases = fresh_database(backend)
    database = Database.from_url(next(databases))
    try:
        with (
            ReceiverPeer(ReplyPolicy(delay=0.8)) as slow_peer,
            ReceiverPeer() as healthy,
            database.session() as session,
        ):
            from his.models import CareLevel, Facility

            facility = Facility(
                code="93002", name="BV Thử", care_level=CareLevel.BASIC, province_code="93"
            )
            session.add(facility)
            session.flush()
            slow = add_peer(session, facility, name="SLOW", port=slow_peer.port)
            fine = add_peer(session, facility, name="FINE", port=healthy.port)
            _queue(session, slow, ["p1", "p2", "p3"], now=utcnow())
            expected = [r.control_id for r in _queue(session, fine, ["p1", "p2"], now=utcnow())]
            results = []
            with dispatcher.Dispatcher(database, SETTINGS, worker_id="one") as d:
                worker = threading.Thread(target=lambda: results.append(d.dispatch_once()))
                worker.start()
                # Served one after the other, these would wait 3 × 0.8 s behind the slow peer.
                arrived = healthy.wait_for(2, timeout=1.5)
                worker.join(10)
            assert sorted(msh_fields(m)[9].decode() for m in arrived) == sorted(expected)
            assert (results[0].sent, results[0].retried) == (5, 0)
    finally:
        database.engine.dispose()
        databases.close()


def test_one_peers_backlog_does_not_fill_a_round(db_session, database):
    """Rows are claimed per peer: a backlog of one peer leaves room for the others."""
    facility = FacilityFactory()
    busy = add_peer(db_session, facility, name="BUSY")
    quiet = add_peer(db_session, facility, name="QUIET")
    _queue(db_session, busy, [f"p{n}" for n in range(6)])
    (waiting,) = _queue(db_session, quiet, ["p9"])
    with dispatcher.Dispatcher(database, SETTINGS, worker_id="w") as d:
        claimed = d.claim(T0, limit=2)
    assert {c.peer_id for c in claimed} == {busy.id, quiet.id}
    assert waiting.id in {c.id for c in claimed} and len(claimed) == 3
