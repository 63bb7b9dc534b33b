"""Sending queued claim files to a fake BHXH gateway over real HTTP: answers kept, retries with
backoff while the gateway is down, never a file sent twice — also with two senders at once on
a committed database — and the ``claims send`` command."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from billing import claim_sender
from billing.claim_gateway import CHECK_IN_PATH, SEND_PATH, ClaimGateway
from billing.claim_sender import RETRY_CAP_DEFAULT, backoff, queue, send_due
from billing.claims import build_envelope
from billing.models import ClaimFile, ClaimStatus
from his.db import Database
from his.errors import Conflict
from his.models import CareLevel, Facility, Visit
from tests import factories
from tests import fake_bhxh_claim_gateway as fake
from tests.billing.test_claim_samples import FACILITY, outpatient_claim
from tests.fake_bhxh_claim_gateway import FakeClaimGateway

T0 = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)  # 09:00 in Vietnam
MINUTE = dt.timedelta(minutes=1)
PAST = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
FAST_TIMEOUT = 0.5
_contents = itertools.count(1)
ENVELOPE = build_envelope(FACILITY, outpatient_claim(), dt.date(2026, 11, 27))


@pytest.fixture
def database(engine, session_factory) -> Database:
    """The sender's units of work, inside the test's rolled-back transaction."""
    return Database(engine, session_factory)


@pytest.fixture
def gateway():
    with FakeClaimGateway() as server:
        yield server


@pytest.fixture
def client(gateway):
    return ClaimGateway(gateway.url, gateway.username, gateway.password, FAST_TIMEOUT)


@pytest.fixture
def facility(db_session):
    return Facility(code="91001", name="BV Thử", care_level=CareLevel.BASIC, province_code="91")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_file(
    session,
    facility=None,
    *,
    status=ClaimStatus.QUEUED,
    tables="XML1,XML2,XML3",
    due=T0,
    visit=None,
    version=1,
) -> ClaimFile:
    if facility is not None and facility.id is None:
        session.add(facility)
        session.flush()
    if isinstance(visit, int):
        visit = session.get(Visit, visit)
    facility_id = facility.id if facility is not None else None
    if visit is None:
        facility_id = facility_id or factories.FacilityFactory().id
        visit = factories.VisitFactory(facility_id=facility_id)
    facility_id = facility_id or visit.facility_id
    # A valid envelope (other code reads the files back), each file's bytes its own.
    content = ENVELOPE + f"<!-- tệp {next(_contents)} -->".encode()
    row = ClaimFile(
        visit_id=visit.id,
        facility_id=facility_id,
        version=version,
        ma_lk=visit.visit_code,
        schema_version="test",
        tables=tables,
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        status=status,
        next_attempt_at=due,
    )
    session.add(row)
    session.flush()
    return row


def reload(session, row) -> ClaimFile:
    session.expire_all()
    return session.get(ClaimFile, row.id)


def sent_contents(gateway) -> list[bytes]:
    return [base64.b64decode(r.body["fileHSBase64"]) for r in gateway.files]


def counts(accepted=0, rejected=0, retry=0, dropped=0):
    return {"accepted": accepted, "rejected": rejected, "retry": retry, "dropped": dropped}


# --- queuing ----------------------------------------------------------------------------------


def test_queue_makes_a_ready_file_due_now(db_session, facility):
    row = make_file(db_session, facility, status=ClaimStatus.READY, due=None)
    assert queue(db_session, row, T0) is row
    assert (row.status, row.next_attempt_at) == (ClaimStatus.QUEUED, T0)
    queue(db_session, row, T0 + MINUTE)  # already queued: nothing changes
    assert row.next_attempt_at == T0


@pytest.mark.usefixtures("babel_context")
@pytest.mark.parametrize(
    "status", [ClaimStatus.ACCEPTED, ClaimStatus.REJECTED, ClaimStatus.SUPERSEDED]
)
def test_only_a_ready_file_can_be_queued(db_session, facility, status):
    row = make_file(db_session, facility, status=status)
    with pytest.raises(Conflict):
        queue(db_session, row, T0)
    assert row.status is status


# --- answers ----------------------------------------------------------------------------------


def test_accepted_keeps_the_transaction_id(db_session, database, gateway, client, facility):
    row = make_file(db_session, facility)
    gateway.plan(fake.accept("GD-2026-000042"))
    assert send_due(database, client, now=T0) == counts(accepted=1)
    row = reload(db_session, row)
    assert row.status is ClaimStatus.ACCEPTED
    assert (row.answer_code, row.transaction_id, row.answer_message) == (
        "200",
        "GD-2026-000042",
        "Tiếp nhận hồ sơ thành công",
    )
    # The gateway's own time (08:30:15 in Vietnam), not ours.
    assert row.answered_at == dt.datetime(2026, 11, 27, 1, 30, 15, tzinfo=dt.UTC)
    assert (row.attempts, row.last_error, row.next_attempt_at) == (0, None, None)
    [sent] = gateway.files
    assert sent.path == SEND_PATH
    assert base64.b64decode(sent.body["fileHSBase64"]) == row.content
    assert (sent.body["maCSKCB"], sent.body["maTinh"]) == ("91001", "91")
    # Answered: never sent again.
    assert send_due(database, client, now=T0 + dt.timedelta(days=1)) == counts()
    assert len(gateway.files) == 1


def test_answer_time_is_ours_when_the_gateway_gives_none(db_session, database, gateway, client):
    row = make_file(db_session)
    gateway.plan(fake.Answer(body={"maKetQua": "000", "maGiaoDich": 123456}))
    send_due(database, client, now=T0)
    row = reload(db_session, row)
    assert (row.status, row.transaction_id, row.answered_at) == (
        ClaimStatus.ACCEPTED,
        "123456",
        T0,
    )


def test_rejected_keeps_the_reason_and_is_never_sent_again(
    db_session, database, gateway, client, facility
):
    row = make_file(db_session, facility)
    reason = "XML1: MA_THE_BHYT không đúng; XML3: thiếu MA_BAC_SI"
    gateway.plan(fake.reject(reason, code="05", transaction_id="GD-R-7"))
    assert send_due(database, client, now=T0) == counts(rejected=1)
    row = reload(db_session, row)
    assert row.status is ClaimStatus.REJECTED
    assert (row.answer_code, row.answer_message, row.transaction_id) == ("05", reason, "GD-R-7")
    assert row.answered_at is not None and row.attempts == 0
    for later in (T0 + MINUTE, T0 + dt.timedelta(days=3)):
        assert send_due(database, client, now=later) == counts()
    assert len(gateway.files) == 1


def test_a_rejection_without_a_message_keeps_the_answer(db_session, database, gateway, client):
    row = make_file(db_session)
    gateway.plan(fake.Answer(status=400, body={"maKetQua": "400", "loi": "Sai cấu trúc"}))
    send_due(database, client, now=T0)
    row = reload(db_session, row)
    assert row.status is ClaimStatus.REJECTED
    assert "Sai cấu trúc" in row.answer_message


def test_long_answers_fit_their_columns(db_session, database, gateway, client):
    row = make_file(db_session)
    gateway.plan(fake.reject("Lỗi " * 1000, code="E" * 30, transaction_id="G" * 150))
    send_due(database, client, now=T0)
    row = reload(db_session, row)
    assert row.status is ClaimStatus.REJECTED
    assert (len(row.answer_message), len(row.answer_code), len(row.transaction_id)) == (
        2000,
        20,
        100,
    )
    assert row.answer_message.endswith("…")


def test_a_check_in_goes_to_the_check_in_endpoint(db_session, database, gateway, client):
    check_in = make_file(db_session, tables="XML0")
    # The visit's latest version is its claim (what a FHIR Claim is read from), not sent yet.
    make_file(db_session, status=ClaimStatus.READY, visit=check_in.visit_id, version=2)
    send_due(database, client, now=T0)
    [sent] = gateway.files
    assert (sent.path, sent.body["loaiHoSo"]) == (CHECK_IN_PATH, "0")


def test_only_due_queued_files_are_sent(db_session, database, gateway, client, facility):
    due = make_file(db_session, facility)
    make_file(db_session, facility, due=T0 + MINUTE)  # later
    for status in (ClaimStatus.READY, ClaimStatus.SUPERSEDED, ClaimStatus.ACCEPTED):
        make_file(db_session, facility, status=status)
    assert send_due(database, client, now=T0) == counts(accepted=1)
    assert sent_contents(gateway) == [due.content]


def test_oldest_first_and_at_most_limit(db_session, database, gateway, client, facility):
    rows = [make_file(db_session, facility, due=T0 - n * MINUTE) for n in range(4)]
    assert send_due(database, client, now=T0, limit=3) == counts(accepted=3)
    assert sent_contents(gateway) == [r.content for r in reversed(rows[1:])]
    assert send_due(database, client, now=T0, limit=3) == counts(accepted=1)


# --- the gateway down -------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap():
    minutes = [backoff(n) / MINUTE for n in range(1, 9)]
    assert minutes == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff(10_000) == RETRY_CAP_DEFAULT
    assert backoff(3, cap=dt.timedelta(minutes=3)) == dt.timedelta(minutes=3)


def test_faults_retry_with_backoff_then_accepted(db_session, database, gateway, client):
    row = make_file(db_session)
    gateway.plan(fake.server_error(), fake.not_json(), fake.slow(), fake.accept("GD-LATE"))
    now = T0
    for attempt, wait, error in [
        (1, 1, "HTTP 500"),
        (2, 2, "not JSON"),
        (3, 4, "ReadTimeout"),
    ]:
        assert send_due(database, client, now=now) == counts(retry=1)
        row = reload(db_session, row)
        assert (row.status, row.attempts) == (ClaimStatus.QUEUED, attempt)
        assert error in row.last_error
        assert row.next_attempt_at == now + wait * MINUTE
        assert row.answered_at is None
        # Not due before its time.
        assert send_due(database, client, now=now + wait * MINUTE - dt.timedelta(seconds=1)) == (
            counts()
        )
        now += wait * MINUTE
    assert send_due(database, client, now=now) == counts(accepted=1)
    row = reload(db_session, row)
    assert (row.status, row.transaction_id, row.attempts, row.last_error) == (
        ClaimStatus.ACCEPTED,
        "GD-LATE",
        3,
        None,
    )
    assert len(gateway.files) == 4


def test_unreachable_then_back(db_session, database, gateway):
    row = make_file(db_session)
    down = ClaimGateway(closed_port_url(), fake.USERNAME, fake.PASSWORD, FAST_TIMEOUT)
    assert send_due(database, down, now=T0) == counts(retry=1)
    row = reload(db_session, row)
    assert row.attempts == 1 and "ConnectError" in row.last_error
    up = ClaimGateway(gateway.url, fake.USERNAME, fake.PASSWORD, FAST_TIMEOUT)
    assert send_due(database, up, now=T0 + MINUTE) == counts(accepted=1)
    assert reload(db_session, row).status is ClaimStatus.ACCEPTED


def test_the_cap_is_configurable(db_session, database, client, gateway):
    row = make_file(db_session)
    gateway.default = fake.server_error()
    cap = dt.timedelta(minutes=3)
    now, waits = T0, []
    for _ in range(4):
        assert send_due(database, client, now=now, retry_cap=cap) == counts(retry=1)
        due = reload(db_session, row).next_attempt_at
        waits.append((due - now) / MINUTE)
        now = due
    assert waits == [1, 2, 3, 3]
    assert reload(db_session, row).attempts == 4


def test_a_sender_that_dies_leaves_the_file_to_the_next_after_the_lease(
    db_session, database, gateway, client
):
    row = make_file(db_session)

    class Crashing:
        timeout = FAST_TIMEOUT

        def send(self, claim):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        send_due(database, Crashing(), now=T0)
    row = reload(db_session, row)
    assert row.status is ClaimStatus.QUEUED and row.next_attempt_at > T0
    assert send_due(database, client, now=T0) == counts()  # still claimed
    assert send_due(database, client, now=row.next_attempt_at) == counts(accepted=1)


def test_superseded_while_being_sent_keeps_the_answer(db_session, database, gateway, client):
    row = make_file(db_session)

    class Superseding:
        timeout = FAST_TIMEOUT

        def send(self, claim):
            # A new version replaced it while the gateway was working on it.
            with database.session() as session:
                session.execute(
                    update(ClaimFile)
                    .where(ClaimFile.id == claim.id)
                    .values(status=ClaimStatus.SUPERSEDED)
                )
            return client.send(claim)

    gateway.plan(fake.accept("GD-OLD"))
    assert send_due(database, Superseding(), now=T0) == counts(accepted=1)
    row = reload(db_session, row)
    assert (row.status, row.transaction_id) == (ClaimStatus.SUPERSEDED, "GD-OLD")


# --- two senders at once, committed ------------------------------------------------------------


def _committed_files(database: Database, n: int) -> list[bytes]:
    with database.session() as session:
        factories.bind(session)
        facility = Facility(
            code="91002", name="BV Thử", care_level=CareLevel.BASIC, province_code="91"
        )
        session.add(facility)
        session.flush()
        # Due long ago, whatever the real clock says; oldest first.
        rows = [make_file(session, facility, due=PAST - n * MINUTE) for n in range(n)]
        return [r.content for r in rows]


def test_two_senders_at_once_send_each_file_exactly_once(backend, fresh_database):
    """Two senders (own engines, own connections) over one committed database: the gateway
    gets every file exactly once and every file is accepted."""
    databases = fresh_database(backend)
    url = next(databases)
    db_a, db_b = Database.from_url(url), Database.from_url(url)
    try:
        contents = _committed_files(db_a, 24)
        with FakeClaimGateway() as gateway:
            gateway.default = fake.slow(0.02)  # accepted, after a moment
            results = []

            def work(database):
                client = ClaimGateway(gateway.url, fake.USERNAME, fake.PASSWORD, 5.0)
                for _ in range(10):
                    results.append(send_due(database, client, limit=5))

            threads = [threading.Thread(target=work, args=(db,)) for db in (db_a, db_b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            sent = sent_contents(gateway)
        assert sorted(sent) == sorted(contents)  # every file, none twice
        assert sum(r["accepted"] for r in results) == 24
        assert sum(r["dropped"] + r["retry"] + r["rejected"] for r in results) == 0
        with db_a.session() as session:
            rows = session.execute(select(ClaimFile.status, ClaimFile.transaction_id)).all()
        assert {status for status, _ in rows} == {ClaimStatus.ACCEPTED}
        assert len({transaction for _, transaction in rows}) == 24
    finally:
        db_a.engine.dispose()
        db_b.engine.dispose()
        databases.close()


# --- the command -------------------------------------------------------------------------------


def _env(monkeypatch, url, gateway=None):
    monkeypatch.setenv("HIS_ENV", "test")
    monkeypatch.setenv("HIS_DATABASE_URL", url)
    if gateway is None:
        monkeypatch.delenv("HIS_BHXH_GATEWAY_URL", raising=False)
        return
    monkeypatch.setenv("HIS_BHXH_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("HIS_BHXH_GATEWAY_USERNAME", gateway.username)
    monkeypatch.setenv("HIS_BHXH_GATEWAY_PASSWORD", gateway.password)


def test_cli_without_url_says_files_stay_queued(backend, fresh_database, monkeypatch):
    from his.cli_claims import claims

    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    try:
        _committed_files(database, 2)
        _env(monkeypatch, url)
        result = CliRunner().invoke(claims, ["send"])
        assert result.exit_code == 0, result.output
        assert "HIS_BHXH_GATEWAY_URL is not set: 2 claim file(s) stay queued" in result.output
    finally:
        database.engine.dispose()
        databases.close()


def test_cli_sends(backend, fresh_database, monkeypatch):
    from his.cli_claims import claims

    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    try:
        contents = _committed_files(database, 3)
        with FakeClaimGateway() as gateway:
            gateway.plan(fake.accept("A"), fake.reject("Sai"), fake.server_error())
            _env(monkeypatch, url, gateway)
            result = CliRunner().invoke(claims, ["send", "--max-backoff", "120"])
            assert result.exit_code == 0, result.output
            assert "1 accepted, 1 rejected, 1 to retry" in result.output
            assert sorted(sent_contents(gateway)) == sorted(contents)
        with database.session() as session:
            statuses = sorted(s.value for s in session.scalars(select(ClaimFile.status)))
        assert statuses == ["accepted", "queued", "rejected"]
    finally:
        database.engine.dispose()
        databases.close()


def test_the_loop_sends_and_stops_with_its_parent(backend, fresh_database):
    """How `make run` would run it: in the background of the shell that becomes the web
    server, ending when that process ends. (Run through the group itself until his.cli
    registers it.)"""
    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    try:
        with database.session() as session:
            factories.bind(session)
            content = make_file(session, due=None).content
        with FakeClaimGateway() as gateway:
            env = {
                **os.environ,
                "HIS_ENV": "test",
                "HIS_DATABASE_URL": url,
                "HIS_BHXH_GATEWAY_URL": gateway.url,
                "HIS_BHXH_GATEWAY_USERNAME": gateway.username,
                "HIS_BHXH_GATEWAY_PASSWORD": gateway.password,
            }
            command = (
                "from his.cli_claims import claims; "
                "claims(['send', '--loop', '--with-parent', '--interval', '0.2'])"
            )
            shell = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    f'{{ "{sys.executable}" -c "{command}" & }} && echo $! && exec sleep 4',
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            loop_pid = int(shell.stdout.readline())
            deadline = time.monotonic() + 15
            while not gateway.files and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sent_contents(gateway) == [content]
            shell.wait(timeout=15)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.kill(loop_pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(loop_pid, 9)
                raise AssertionError("the sender outlived the process that started it")
    finally:
        database.engine.dispose()
        databases.close()


def test_queued_count(db_session):
    make_file(db_session)
    make_file(db_session, status=ClaimStatus.READY)
    assert claim_sender.queued_count(db_session) == 1
