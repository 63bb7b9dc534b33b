"""The e-prescription payload, and sending it to a fake national system over real HTTP."""

from __future__ import annotations

import datetime as dt
import socket
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from his.models import (
    EPrescriptionSubmission,
    IdentifierType,
    PatientIdentifier,
    SubmissionStatus,
)
from his.services import eprescription
from his.services import prescriptions as service
from his.services.access import Principal
from tests.factories import CoverageFactory
from tests.fake_eprescription import ACCEPTED, REJECTED, UNAVAILABLE, FakeEPrescription
from tests.prescribing_data import (
    add_diagnosis,
    make_setting,
    small_child,
)

pytestmark = pytest.mark.usefixtures("babel_context")

NOW = dt.datetime(2026, 11, 28, 2, 30, tzinfo=dt.UTC)  # 09:30 in Vietnam


def _signed(db_session, s, *items, now=NOW, **extra):
    doctor = Principal.for_user(s.doctor)
    data = service.PrescriptionInput(
        items=list(items)
        or [
            service.ItemInput("PARA500", Decimal(1), 3, 5, instructions="Sau ăn", route=None),
            service.ItemInput("AMOX500", Decimal(1), 2, 7),
        ],
        advice="Uống nhiều nước",
        follow_up_date=dt.date(2026, 12, 5),
        **extra,
    )
    draft = service.create_draft(db_session, doctor, s.encounter.id, data)
    assert draft.violations == []
    return service.sign(db_session, doctor, draft.id, now=now)


def _submission(db_session, rx) -> EPrescriptionSubmission:
    return db_session.scalars(
        select(EPrescriptionSubmission).where(EPrescriptionSubmission.prescription_id == rx.id)
    ).one()


def test_payload_fields(db_session):
    child = small_child(db_session, months=30, guardian="Trần Văn Bố")
    child.address_line = "12 Trần Phú, Rạch Giá"
    db_session.add(
        PatientIdentifier(patient_id=child.id, type=IdentifierType.CCCD, value="091224000123")
    )
    CoverageFactory(patient=child, card_number="TE1919123456789")
    s = make_setting(db_session, patient=child)
    add_diagnosis(db_session, s.encounter, s.icd, "J20.9")
    s.encounter.conclusion = "Viêm phế quản cấp"
    db_session.refresh(child)
    rx = _signed(db_session, s, weight_kg=Decimal("12.5"))
    payload = _submission(db_session, rx).payload
    assert payload["ma_don_thuoc"] == rx.code and payload["loai_don_thuoc"] == "c"
    assert payload["ho_ten_benh_nhan"] == child.full_name
    assert payload["ma_dinh_danh_cong_dan"] == "091224000123"
    assert payload["ngay_sinh_benh_nhan"] == child.birth.display()
    assert payload["can_nang"] == "12.5"
    assert payload["thang_tuoi"] == 30
    assert payload["gioi_tinh"] == 2
    assert payload["ma_so_the_bao_hiem_y_te"] == "TE1919123456789"
    assert payload["thong_tin_nguoi_giam_ho"] == "Trần Văn Bố, CCCD 091080001234"
    assert payload["dia_chi"] == "12 Trần Phú, Rạch Giá"
    assert [d["ma_chan_doan"] for d in payload["chan_doan"]] == ["J06.9", "J20.9"]
    assert payload["chan_doan"][0]["ket_luan"] == "Viêm phế quản cấp"
    para, amox = payload["thong_tin_don_thuoc"]
    assert para == {
        "ma_thuoc": "VN-PARA500",
        "biet_duoc": "Panadol",
        "ten_thuoc": "Paracetamol 500 mg (Panadol)",
        "don_vi_tinh": "viên",
        "so_luong": "15",
        "cach_dung": "Uống, mỗi lần 1 viên, ngày 3 lần, trong 5 ngày. Sau ăn",
    }
    assert amox["so_luong"] == "14"
    assert payload["loi_dan"] == "Uống nhiều nước"
    assert payload["ngay_tai_kham"] == "05/12/2026"
    assert payload["ngay_gio_ke_don"] == "2026-11-28 09:30:00"
    assert payload["ma_lien_thong_bac_si"] == "BS-91001-0042"
    assert payload["thoi_gian_ky"] == "2026-11-28T09:30:00+07:00"
    assert payload["signature"] == rx.content_hash


def test_accepted(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        report = eprescription.send_pending(db_session, client, NOW)
        assert (report.accepted, report.rejected, report.retry) == (1, 0, 0)
        [received] = system.received
    assert received.authorised and received.body["ma_don_thuoc"] == rx.code
    submission = _submission(db_session, rx)
    assert submission.status is SubmissionStatus.ACCEPTED
    assert submission.accepted_at == NOW and submission.attempts == 1
    assert submission.response == ACCEPTED[1]
    # Sent once: nothing is due any more.
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        assert eprescription.send_pending(db_session, client, NOW).total == 0
        assert system.received == []


def test_rejected_is_kept_for_a_person(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)
    with FakeEPrescription() as system:
        system.default = REJECTED
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        assert eprescription.send_pending(db_session, client, NOW).rejected == 1
        assert eprescription.send_pending(db_session, client, NOW + dt.timedelta(days=1)).total == 0
    submission = _submission(db_session, rx)
    assert submission.status is SubmissionStatus.REJECTED
    assert submission.response == REJECTED[1] and submission.last_error == "HTTP 400"


def test_wrong_credentials_are_a_rejection(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, "wrong")
        assert eprescription.send_pending(db_session, client, NOW).rejected == 1
    assert _submission(db_session, rx).last_error == "HTTP 401"


def test_503_then_accepted_with_backoff(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)
    with FakeEPrescription() as system:
        system.answers = [UNAVAILABLE, UNAVAILABLE]
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        assert eprescription.send_pending(db_session, client, NOW).retry == 1
        submission = _submission(db_session, rx)
        assert submission.status is SubmissionStatus.PENDING
        assert submission.next_attempt_at == NOW + dt.timedelta(minutes=1)
        assert "503" in submission.last_error
        # Not due yet: nothing is sent.
        assert (
            eprescription.send_pending(db_session, client, NOW + dt.timedelta(seconds=30)).total
            == 0
        )
        later = NOW + dt.timedelta(minutes=1)
        assert eprescription.send_pending(db_session, client, later).retry == 1
        assert submission.next_attempt_at == later + dt.timedelta(minutes=2)
        final = later + dt.timedelta(minutes=2)
        assert eprescription.send_pending(db_session, client, final).accepted == 1
        assert len(system.received) == 3
        # The same payload every time: built once, at signing.
        assert system.received[0].body == system.received[2].body
    assert submission.status is SubmissionStatus.ACCEPTED and submission.attempts == 3


def test_unreachable_is_retried(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there
    client = eprescription.EPrescriptionClient(f"http://127.0.0.1:{port}", "u", "p", timeout=2)
    assert eprescription.send_pending(db_session, client, NOW).retry == 1
    submission = _submission(db_session, rx)
    assert submission.status is SubmissionStatus.PENDING and submission.attempts == 1
    assert submission.last_error.startswith("ConnectError")


def test_backoff_grows_to_an_hour():
    assert [eprescription.backoff(n).total_seconds() / 60 for n in (1, 2, 3, 7)] == [1, 2, 4, 60]
    assert eprescription.backoff(30) == dt.timedelta(hours=1)


def test_client_only_when_configured():
    from tests.conftest import settings_for

    assert eprescription.client_from_settings(settings_for("sqlite://")) is None
    settings = settings_for(
        "sqlite://",
        HIS_EPRESCRIPTION_URL="https://donthuoc.example/",
        HIS_EPRESCRIPTION_USERNAME="u",
        HIS_EPRESCRIPTION_PASSWORD="p",
        HIS_EPRESCRIPTION_TIMEOUT_SECONDS="7",
    )
    client = eprescription.client_from_settings(settings)
    assert client is not None and client.url == "https://donthuoc.example"


def test_settings_are_checked():
    from his.config import ConfigError
    from tests.conftest import settings_for

    with pytest.raises(ConfigError) as caught:
        settings_for(
            "sqlite://", HIS_EPRESCRIPTION_URL="ftp://x", HIS_EPRESCRIPTION_TIMEOUT_SECONDS="0"
        )
    assert {
        "HIS_EPRESCRIPTION_URL",
        "HIS_EPRESCRIPTION_USERNAME",
        "HIS_EPRESCRIPTION_PASSWORD",
        "HIS_EPRESCRIPTION_TIMEOUT_SECONDS",
    } <= set(caught.value.problems)


def test_cli_without_url_says_submissions_stay_pending(backend, fresh_database, monkeypatch):
    from his.cli import main

    databases = fresh_database(backend)
    url = next(databases)
    try:
        monkeypatch.setenv("HIS_ENV", "test")
        monkeypatch.setenv("HIS_DATABASE_URL", url)
        monkeypatch.delenv("HIS_EPRESCRIPTION_URL", raising=False)
        result = CliRunner().invoke(main, ["eprescription", "send"])
        assert result.exit_code == 0, result.output
        assert "HIS_EPRESCRIPTION_URL is not set: 0 prescription(s) stay pending" in result.output
    finally:
        databases.close()


def test_cli_sends(backend, fresh_database, monkeypatch):
    from his.cli import main
    from his.db import Database

    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    try:
        with database.session() as session:
            from tests import factories

            factories.bind(session)
            s = make_setting(session)
            rx = _signed(session, s, now=None)  # due now, by the real clock
            code = rx.code
        with FakeEPrescription() as system:
            monkeypatch.setenv("HIS_ENV", "test")
            monkeypatch.setenv("HIS_DATABASE_URL", url)
            monkeypatch.setenv("HIS_EPRESCRIPTION_URL", system.url)
            monkeypatch.setenv("HIS_EPRESCRIPTION_USERNAME", system.username)
            monkeypatch.setenv("HIS_EPRESCRIPTION_PASSWORD", system.password)
            result = CliRunner().invoke(main, ["eprescription", "send"])
            assert result.exit_code == 0, result.output
            assert "1 accepted, 0 rejected, 0 to retry" in result.output
            assert [r.body["ma_don_thuoc"] for r in system.received] == [code]
        with database.session() as session:
            status = session.scalar(select(EPrescriptionSubmission.status))
        assert status is SubmissionStatus.ACCEPTED
    finally:
        database.engine.dispose()
        databases.close()


def test_the_loop_sends_and_stops_with_its_parent(backend, fresh_database):
    """How `make run` runs the sender: in the background of the shell that becomes the web
    server, ending when that process ends."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from his.db import Database
    from tests import factories

    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    his = str(Path(sys.executable).with_name("his"))
    try:
        with database.session() as session:
            factories.bind(session)
            code = _signed(session, make_setting(session), now=None).code
        with FakeEPrescription() as system:
            env = {
                **os.environ,
                "HIS_ENV": "test",
                "HIS_DATABASE_URL": url,
                "HIS_EPRESCRIPTION_URL": system.url,
                "HIS_EPRESCRIPTION_USERNAME": system.username,
                "HIS_EPRESCRIPTION_PASSWORD": system.password,
            }
            shell = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    f'{{ "{his}" eprescription send --loop --with-parent --interval 0.2 & }}'
                    " && echo $! && exec sleep 4",
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            loop_pid = int(shell.stdout.readline())
            deadline = time.monotonic() + 15
            while not system.received and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [r.body["ma_don_thuoc"] for r in system.received] == [code]
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


def test_a_sender_that_dies_mid_round_leaves_the_claim_to_the_next(db_session):
    s = make_setting(db_session)
    rx = _signed(db_session, s)

    class Crashing:
        def submit(self, payload):
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        eprescription.send_pending(db_session, Crashing(), NOW)
    submission = _submission(db_session, rx)
    assert submission.status is SubmissionStatus.PENDING and submission.attempts == 1
    assert submission.next_attempt_at == NOW + eprescription.CLAIM_LEASE
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        assert (
            eprescription.send_pending(db_session, client, NOW + dt.timedelta(minutes=1)).total == 0
        )
        later = NOW + eprescription.CLAIM_LEASE
        assert eprescription.send_pending(db_session, client, later).accepted == 1
    assert submission.status is SubmissionStatus.ACCEPTED and submission.attempts == 2


def _replace(db_session, s, old, now=NOW):
    doctor = Principal.for_user(s.doctor)
    data = service.PrescriptionInput(items=[service.ItemInput("PARA500", Decimal(1), 2, 5)])
    return service.replace(db_session, doctor, old.id, "Sai liều", data, now=now)


def test_a_replaced_prescription_not_yet_accepted_is_withdrawn_and_never_sent(db_session):
    s = make_setting(db_session)
    old = _signed(db_session, s)
    new = _replace(db_session, s, old)
    assert _submission(db_session, old).status is SubmissionStatus.WITHDRAWN
    assert _submission(db_session, new).payload["ma_don_thuoc_thay_the"] == ""
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        report = eprescription.send_pending(db_session, client, NOW + dt.timedelta(days=1))
        assert [r.body["ma_don_thuoc"] for r in system.received] == [new.code]
    assert (report.accepted, report.total) == (1, 1)
    assert _submission(db_session, old).status is SubmissionStatus.WITHDRAWN
    assert _submission(db_session, old).attempts == 0


def test_replacing_an_accepted_prescription_names_it_in_the_new_payload(db_session):
    s = make_setting(db_session)
    old = _signed(db_session, s)
    with FakeEPrescription() as system:
        client = eprescription.EPrescriptionClient(system.url, system.username, system.password)
        assert eprescription.send_pending(db_session, client, NOW).accepted == 1
        new = _replace(db_session, s, old)
        assert eprescription.send_pending(db_session, client, NOW).accepted == 1
        sent = [r.body for r in system.received]
    assert [b["ma_don_thuoc"] for b in sent] == [old.code, new.code]
    assert sent[1]["ma_don_thuoc_thay_the"] == old.code
    assert _submission(db_session, old).status is SubmissionStatus.ACCEPTED


def test_replaced_while_being_sent_is_recorded_and_flagged(db_session):
    """A sender claimed the old one and the doctor replaced it before the answer came: the
    system holds it, so it is recorded as accepted, with a note for a person."""
    s = make_setting(db_session)
    old = _signed(db_session, s)
    replaced = []

    class ReplacingMidway(eprescription.EPrescriptionClient):
        def submit(self, payload):
            if not replaced:
                replaced.append(_replace(db_session, s, old))
            return super().submit(payload)

    with FakeEPrescription() as system:
        client = ReplacingMidway(system.url, system.username, system.password)
        assert eprescription.send_pending(db_session, client, NOW).accepted == 1
        assert [r.body["ma_don_thuoc"] for r in system.received] == [old.code]
    submission = _submission(db_session, old)
    assert submission.status is SubmissionStatus.ACCEPTED
    assert "replaced" in submission.last_error
    assert _submission(db_session, replaced[0]).status is SubmissionStatus.PENDING
