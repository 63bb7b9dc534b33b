"""The claim client against a fake BHXH gateway over real HTTP (tests/fake_bhxh_claim_gateway.py):
the exact wire format, and what each kind of answer becomes. No database."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import threading
import time

import pytest

from billing.claim_gateway import (
    CHECK_IN_PATH,
    SEND_PATH,
    SUCCESS_CODES,
    ClaimGateway,
    ClaimKind,
    GatewayAnswer,
    GatewayUnavailable,
    gateway_from_settings,
    received_time,
)
from his.services.bhxh_token import LOGIN_PATH, password_md5
from tests import fake_bhxh_claim_gateway as fake
from tests.conftest import settings_for
from tests.fake_bhxh_claim_gateway import FakeClaimGateway

# Bytes a UTF-8 decode/encode round trip would change (a BOM, CRLF, Vietnamese, a stray byte):
# the gateway must get exactly these.
CONTENT = (
    b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?>\r\n<GIAMDINHHS>'
    + "<MACSKCB>91001</MACSKCB><HO_TEN>Trần Thị Mai</HO_TEN>".encode()
    + b"\x00\xff</GIAMDINHHS>\n"
)
FAST_TIMEOUT = 0.5  # seconds; the slow answer takes fake.SLOW_SECONDS


class File:
    def __init__(self, content=CONTENT, kind=ClaimKind.XML, facility="91001", province="91"):
        self.content = content
        self.kind = kind
        self.facility_code = facility
        self.province_code = province


@pytest.fixture
def gateway():
    with FakeClaimGateway() as server:
        yield server


@pytest.fixture
def client(gateway):
    return ClaimGateway(gateway.url, gateway.username, gateway.password, FAST_TIMEOUT)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the wire ---------------------------------------------------------------------------------


def test_password_digest_is_md5_in_upper_case_hex():
    assert password_md5("123456") == "E10ADC3949BA59ABBE56E057F20F883E"
    assert password_md5(fake.PASSWORD) == fake.PASSWORD_MD5


def test_login_is_a_form_with_the_md5_password(gateway, client):
    client.send(File())
    [login] = gateway.logins
    assert login.content_type.startswith("application/x-www-form-urlencoded")
    assert login.body == {"username": fake.USERNAME, "password": fake.PASSWORD_MD5}


def test_the_file_goes_as_bhxh_documents(gateway, client):
    client.send(File())
    [sent] = gateway.files
    assert sent.path == SEND_PATH
    assert sent.content_type.startswith("application/json")
    assert (sent.headers["accesstoken"], sent.headers["tokenid"]) == ("access-1", "id-1")
    assert sent.headers["passwordhash"] == fake.PASSWORD_MD5
    assert sent.body == {
        "username": fake.USERNAME,
        "loaiHoSo": "130",
        "maTinh": "91",
        "maCSKCB": "91001",
        "fileHSBase64": base64.b64encode(CONTENT).decode("ascii"),
    }
    assert base64.b64decode(sent.body["fileHSBase64"]) == CONTENT


def test_a_check_in_goes_to_its_own_endpoint_as_loai_ho_so_0(gateway, client):
    client.send(File(b"<CHI_TIEU_TRANG_THAI_KCB/>", ClaimKind.CHECK_IN, "79012", "79"))
    [sent] = gateway.files
    assert sent.path == CHECK_IN_PATH
    assert (sent.body["loaiHoSo"], sent.body["maTinh"], sent.body["maCSKCB"]) == (
        "0",
        "79",
        "79012",
    )
    assert base64.b64decode(sent.body["fileHSBase64"]) == b"<CHI_TIEU_TRANG_THAI_KCB/>"


def test_the_token_serves_many_files_and_threads(gateway, client):
    threads = [threading.Thread(target=client.send, args=(File(),)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gateway.logins) == 1
    assert len(gateway.files) == 6
    assert {r.headers["accesstoken"] for r in gateway.files} == {"access-1"}


# --- answers ----------------------------------------------------------------------------------


def test_accepted_with_the_transaction_id_and_time(gateway, client):
    gateway.plan(fake.accept("GD-2026-0042"))
    answer = client.send(File())
    assert answer == GatewayAnswer(
        accepted=True,
        code="200",
        transaction_id="GD-2026-0042",
        # 08:30:15 in Vietnam (UTC+7)
        received_at=dt.datetime(2026, 11, 27, 1, 30, 15, tzinfo=dt.UTC),
        message="Tiếp nhận hồ sơ thành công",
        raw=answer.raw,
    )
    assert '"GD-2026-0042"' in answer.raw


@pytest.mark.parametrize("code", sorted(SUCCESS_CODES))
def test_every_success_code_accepts(gateway, client, code):
    gateway.plan(fake.accept("GD-1", code=code))
    assert client.send(File()).accepted


def test_rejected_with_the_gateways_message(gateway, client):
    gateway.plan(fake.reject("Thẻ BHYT không hợp lệ tại XML1: MA_THE_BHYT", code="05"))
    answer = client.send(File())
    assert (answer.accepted, answer.code, answer.message) == (
        False,
        "05",
        "Thẻ BHYT không hợp lệ tại XML1: MA_THE_BHYT",
    )
    assert answer.transaction_id == "GD-REJ-1"


def test_a_json_answer_on_http_400_is_a_rejection(gateway, client):
    gateway.plan(fake.Answer(status=400, body={"maKetQua": "400", "thongDiep": "Sai cấu trúc"}))
    answer = client.send(File())
    assert (answer.accepted, answer.code, answer.message) == (False, "400", "Sai cấu trúc")


def test_a_json_answer_without_a_code_is_a_rejection(gateway, client):
    gateway.plan(fake.Answer(body={"thongDiep": "Không xác định"}))
    answer = client.send(File())
    assert (answer.accepted, answer.code, answer.message) == (False, None, "Không xác định")


@pytest.mark.parametrize(
    "answer",
    [
        fake.server_error(),
        fake.not_json(),
        fake.Answer(status=503, body={"maKetQua": "503"}),
        fake.Answer(status=429, body={"maKetQua": "429"}),
        fake.Answer(body=["not", "an", "object"]),
    ],
    ids=["500", "not-json", "503-json", "429", "json-list"],
)
def test_faults_are_unavailable(gateway, client, answer):
    gateway.plan(answer)
    with pytest.raises(GatewayUnavailable):
        client.send(File())
    assert len(gateway.files) == 1


def test_slow_is_unavailable_within_the_timeout(gateway, client):
    gateway.plan(fake.slow())
    started = time.monotonic()
    with pytest.raises(GatewayUnavailable):
        client.send(File())
    assert time.monotonic() - started < fake.SLOW_SECONDS


def test_unreachable_is_unavailable():
    client = ClaimGateway(closed_port_url(), "u", "p", FAST_TIMEOUT)
    with pytest.raises(GatewayUnavailable):
        client.send(File())


def test_401_once_logs_in_again_and_sends_again(gateway, client):
    gateway.plan(fake.unauthorized(), fake.accept("GD-AFTER"))
    answer = client.send(File())
    assert (answer.accepted, answer.transaction_id) == (True, "GD-AFTER")
    assert len(gateway.logins) == 2
    assert [r.headers["accesstoken"] for r in gateway.files] == ["access-1", "access-2"]


def test_a_revoked_token_is_replaced(gateway, client):
    client.send(File())
    gateway.revoke_tokens()
    assert client.send(File()).accepted
    assert [r.headers["accesstoken"] for r in gateway.files] == [
        "access-1",
        "access-1",
        "access-2",
    ]


def test_401_in_the_body_logs_in_again(gateway, client):
    gateway.plan(fake.Answer(body={"maKetQua": "401", "thongDiep": "Hết phiên"}), fake.accept("X"))
    assert client.send(File()).transaction_id == "X"
    assert len(gateway.logins) == 2


def test_401_twice_is_unavailable_not_a_rejection(gateway, client):
    gateway.plan(fake.unauthorized(), fake.unauthorized())
    with pytest.raises(GatewayUnavailable, match="twice"):
        client.send(File())
    assert len(gateway.files) == 2


def test_wrong_password_is_unavailable_and_sends_nothing(gateway):
    client = ClaimGateway(gateway.url, gateway.username, "sai", FAST_TIMEOUT)
    with pytest.raises(GatewayUnavailable, match="login refused"):
        client.send(File())
    assert gateway.files == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20260101000000", dt.datetime(2025, 12, 31, 17, 0, tzinfo=dt.UTC)),
        (20260101000000, dt.datetime(2025, 12, 31, 17, 0, tzinfo=dt.UTC)),
        ("2026-01-01", None),
        ("20261301000000", None),
        ("", None),
        (None, None),
    ],
)
def test_received_time(value, expected):
    assert received_time(value) == expected


def test_gateway_from_settings():
    assert gateway_from_settings(settings_for("sqlite://")) is None
    settings = settings_for(
        "sqlite://",
        HIS_BHXH_GATEWAY_URL="https://gdbhyt.example/",
        HIS_BHXH_GATEWAY_USERNAME="91001_BV",
        HIS_BHXH_GATEWAY_PASSWORD="secret",
        HIS_BHXH_GATEWAY_TIMEOUT_SECONDS="12",
    )
    client = gateway_from_settings(settings)
    assert (client.base_url, client.username, client.timeout) == (
        "https://gdbhyt.example",
        "91001_BV",
        12.0,
    )
    assert LOGIN_PATH == "/api/token/take"
