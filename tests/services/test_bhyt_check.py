"""BHYT card checks: offline rules on the dated group table, and the BHXH gateway over HTTP.

The gateway is a real HTTP server (tests/fake_bhyt_gateway.py) on 127.0.0.1; nothing is
mocked. Group codes starting with Z are made up here, so the group list that migration
0003 loads cannot change what these tests see.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time

import pytest
from sqlalchemy import select

from his.identifiers import parse_bhyt_card
from his.models import BhytGroup, CardStatus, Coverage
from his.partial_date import PartialDate
from his.services.bhyt_check import (
    CARD_CHECK_PATH,
    LOGIN_PATH,
    CardCheckResult,
    GatewayCardChecker,
    OfflineCardChecker,
    apply_check,
    checker_from_settings,
    recheck_unverified,
)
from tests import factories
from tests import fake_bhyt_gateway as fake
from tests.fake_bhyt_gateway import FakeBhytGateway

ON = dt.date(2026, 11, 27)
BIRTH = PartialDate(1980, 5, 17)
NAME = "Trần Thị Mai"
UNREACHABLE = "The BHXH gateway could not be reached; the card will be checked again later."
# Room for a loaded CI machine; the slow answer takes fake.SLOW_SECONDS (2 s).
FAST_TIMEOUT = 1.0


@pytest.fixture(autouse=True)
def english(make_app, db_session):
    """An app context in English: messages render as their msgids whatever vi.po says."""
    app = make_app(HIS_DEFAULT_LOCALE="en")
    with app.app_context():
        yield


def add_group(session, code, level, valid_from=dt.date(2021, 4, 1), valid_to=None):
    row = BhytGroup(
        code=code,
        benefit_level=level,
        description=f"Test group {code}",
        valid_from=valid_from,
        valid_to=valid_to,
        source="tests",
    )
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def zz_group(db_session):
    """The made-up group of the fake gateway's fault cards (ZZ, level 4)."""
    return add_group(db_session, "ZZ", 4)


@pytest.fixture
def gateway():
    with FakeBhytGateway() as server:
        yield server


@pytest.fixture
def checker(gateway):
    return GatewayCardChecker(
        gateway.url,
        gateway.username,
        gateway.password,
        timeout=FAST_TIMEOUT,
        staff_name="Nguyễn Thảo Chi",
        staff_cccd="072188004365",
    )


def check(checker, session, number, *, name=NAME, birth=BIRTH, on=ON):
    return checker.check(session, parse_bhyt_card(number), full_name=name, birth=birth, on=on)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- offline --------------------------------------------------------------------------------


def test_offline_valid_card_stays_unverified_with_group_and_level(db_session):
    add_group(db_session, "ZA", 4)
    result = check(OfflineCardChecker(), db_session, "ZA4010120878811")
    assert result == CardCheckResult(
        CardStatus.UNVERIFIED,
        "offline",
        "offline-ok",
        "The group code and benefit level are valid; only the BHXH gateway can confirm the card.",
        group_code="ZA",
        benefit_level=4,
    )


def test_offline_cannot_check_a_10_digit_number(db_session):
    result = check(OfflineCardChecker(), db_session, "7912058865")
    assert (result.status, result.method, result.code) == (
        CardStatus.UNVERIFIED,
        "offline",
        "offline-10-digit",
    )
    assert result.message == (
        "A 10-digit social insurance number can only be checked through the BHXH gateway."
    )
    assert result.group_code is None and result.benefit_level is None


def test_offline_unknown_group_fails(db_session):
    result = check(OfflineCardChecker(), db_session, "ZQ4010120878811")
    assert (result.status, result.code) == (CardStatus.FAILED, "group-unknown")
    assert result.message == "The beneficiary group code ZQ is not in the BHYT group list."


@pytest.mark.parametrize(
    ("on", "in_force"),
    [
        (dt.date(2024, 12, 31), False),
        (dt.date(2025, 1, 1), True),  # first day counts
        (dt.date(2025, 9, 1), True),
        (dt.date(2025, 12, 31), True),  # last day counts
        (dt.date(2026, 1, 1), False),
    ],
)
def test_offline_group_valid_only_in_a_date_range(db_session, on, in_force):
    add_group(db_session, "ZB", 2, dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    result = check(OfflineCardChecker(), db_session, "ZB2790120878811", on=on)
    if in_force:
        assert (result.status, result.code) == (CardStatus.UNVERIFIED, "offline-ok")
    else:
        assert (result.status, result.code) == (CardStatus.FAILED, "group-not-in-force")
        assert result.message == (
            f"The beneficiary group code ZB is not in force on {on:%d/%m/%Y}."
        )


def test_offline_uses_the_row_in_force_on_the_date(db_session):
    """The list changed a group's level: each date is checked against its own row."""
    add_group(db_session, "ZC", 4, dt.date(2021, 4, 1), dt.date(2025, 6, 30))
    add_group(db_session, "ZC", 3, dt.date(2025, 7, 1))
    offline = OfflineCardChecker()
    assert check(offline, db_session, "ZC4790120878811", on=dt.date(2025, 6, 30)).code == (
        "offline-ok"
    )
    assert check(offline, db_session, "ZC3790120878811", on=dt.date(2025, 7, 1)).code == (
        "offline-ok"
    )
    late = check(offline, db_session, "ZC4790120878811", on=dt.date(2025, 7, 1))
    assert (late.status, late.code) == (CardStatus.FAILED, "level-mismatch")


def test_offline_level_mismatch_fails_naming_both_levels(db_session):
    add_group(db_session, "ZD", 2)
    result = check(OfflineCardChecker(), db_session, "ZD4790120878811")
    assert (result.status, result.method, result.code) == (
        CardStatus.FAILED,
        "offline",
        "level-mismatch",
    )
    assert result.message == "The card's benefit level 4 does not match level 2 of group ZD."


def test_offline_message_in_vietnamese_when_the_deployment_speaks_it(make_app, db_session):
    """Outside a request (CLI, jobs) the deployment's default locale is used, without error."""
    app = make_app(HIS_DEFAULT_LOCALE="vi")
    with app.app_context():
        result = check(OfflineCardChecker(), db_session, "ZQ4010120878811")
    assert result.code == "group-unknown"
    assert "ZQ" in result.message


# --- the gateway ------------------------------------------------------------------------------


def test_gateway_ok_is_verified_with_every_detail(db_session, gateway, checker):
    result = check(checker, db_session, fake.CARD_OK)
    assert result == CardCheckResult(
        CardStatus.VERIFIED,
        "gateway",
        "000",
        "Thông tin thẻ chính xác!",
        card_number=fake.CARD_OK,
        group_code="HS",
        benefit_level=4,
        valid_from=dt.date(2026, 1, 1),
        valid_to=dt.date(2026, 12, 31),
        registered_facility_code="91001",
        area_code="K2",
        five_year_date=dt.date(2021, 3, 1),
        raw=gateway.sent[-1],
    )
    assert json.loads(result.raw)["cqBHXH"] == "Bảo hiểm Xã hội tỉnh An Giang"


def test_gateway_receives_what_bhxh_documents(db_session, gateway, checker):
    check(checker, db_session, fake.CARD_OK)
    [login] = gateway.logins
    assert login.body == {"username": fake.USERNAME, "password": fake.PASSWORD}
    assert login.content_type.startswith("application/json")
    [sent] = gateway.checks
    assert sent.body == {
        "maThe": fake.CARD_OK,
        "hoTen": NAME,
        "ngaySinh": "17/05/1980",
        "hoTenCb": "Nguyễn Thảo Chi",
        "cccdCb": "072188004365",
    }
    assert sent.query == {
        "token": "access-1",
        "id_token": "id-1",
        "username": fake.USERNAME,
        "password": fake.PASSWORD,
    }


@pytest.mark.parametrize(
    ("birth", "sent"),
    [(PartialDate(1950), "1950"), (PartialDate(1950, 3), "03/1950"), (BIRTH, "17/05/1980")],
)
def test_gateway_date_of_birth_as_known(db_session, gateway, checker, birth, sent):
    check(checker, db_session, fake.CARD_OK, birth=birth)
    assert gateway.checks[-1].body["ngaySinh"] == sent


def test_gateway_token_reused_across_checks(db_session, gateway, checker):
    check(checker, db_session, fake.CARD_OK)
    check(checker, db_session, fake.CARD_EXPIRED)
    assert len(gateway.logins) == 1
    assert [c.query["token"] for c in gateway.checks] == ["access-1", "access-1"]
    assert {c.query["id_token"] for c in gateway.checks} == {"id-1"}


def test_gateway_token_shared_by_threads(db_session, gateway, checker):
    results = []

    def run():
        # The session is not touched while the gateway answers.
        results.append(check(checker, db_session, fake.CARD_OK).status)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [CardStatus.VERIFIED] * 6
    assert len(gateway.logins) == 1
    assert {c.query["token"] for c in gateway.checks} == {"access-1"}


@pytest.mark.parametrize("expires_in", ["2020-01-01T00:00:00.1047187Z", 0, "30"])
def test_gateway_expired_token_is_taken_again(db_session, gateway, checker, expires_in):
    """Past, zero, or within the 60-second safety margin: each check logs in again."""
    gateway.expires_in = expires_in
    check(checker, db_session, fake.CARD_OK)
    check(checker, db_session, fake.CARD_OK)
    assert len(gateway.logins) == 2
    assert [c.query["token"] for c in gateway.checks] == ["access-1", "access-2"]


@pytest.mark.parametrize("rejection", ["http", "body"])
def test_gateway_rejected_token_is_taken_again_once(db_session, gateway, checker, rejection):
    gateway.token_rejection = rejection
    check(checker, db_session, fake.CARD_OK)
    gateway.revoke_tokens()
    result = check(checker, db_session, fake.CARD_OK)
    assert result.status is CardStatus.VERIFIED
    assert [c.query["token"] for c in gateway.checks] == ["access-1", "access-1", "access-2"]
    check(checker, db_session, fake.CARD_OK)
    assert len(gateway.logins) == 2


def test_gateway_expired_card_fails_with_its_dates(db_session, gateway, checker):
    result = check(checker, db_session, fake.CARD_EXPIRED)
    assert (result.status, result.method, result.code) == (CardStatus.FAILED, "gateway", "010")
    assert result.message == "Thẻ hết giá trị sử dụng!"
    assert (result.valid_from, result.valid_to) == (dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert result.raw == gateway.sent[-1]


def test_gateway_wrong_name_fails(db_session, gateway, checker):
    result = check(checker, db_session, fake.CARD_WRONG_NAME, name="Trần Thị Mây")
    assert (result.status, result.code, result.message) == (
        CardStatus.FAILED,
        "060",
        "Họ tên không đúng!",
    )
    assert result.valid_from is None and result.registered_facility_code is None
    assert gateway.checks[-1].body["hoTen"] == "Trần Thị Mây"


def test_gateway_unknown_card_fails(db_session, gateway, checker):
    result = check(checker, db_session, "HS4010120871234")
    assert (result.status, result.code) == (CardStatus.FAILED, "050")


def test_gateway_new_card_is_verified_as_the_new_card(db_session, gateway, checker):
    result = check(checker, db_session, fake.CARD_NEW)
    assert (result.status, result.code) == (CardStatus.VERIFIED, "003")
    assert result.card_number == fake.CARD_NEW_REPLACEMENT
    assert (result.group_code, result.benefit_level) == ("HT", 3)
    assert (result.valid_from, result.valid_to) == (dt.date(2026, 7, 1), dt.date(2027, 6, 30))


def test_gateway_10_digit_number_returns_the_full_code(db_session, gateway, checker):
    result = check(checker, db_session, fake.CARD_10_DIGITS)
    assert result.status is CardStatus.VERIFIED
    assert (result.card_number, result.group_code, result.benefit_level) == (
        fake.CARD_10_DIGITS_FULL,
        "GD",
        4,
    )
    assert gateway.checks[-1].body["maThe"] == fake.CARD_10_DIGITS


@pytest.mark.parametrize("card", [fake.CARD_SERVER_ERROR, fake.CARD_NOT_JSON, fake.CARD_SLOW])
def test_gateway_fault_falls_back_to_offline_unverified(db_session, zz_group, gateway, card):
    checker = GatewayCardChecker(
        gateway.url, gateway.username, gateway.password, timeout=FAST_TIMEOUT
    )
    started = time.monotonic()
    result = check(checker, db_session, card)
    assert time.monotonic() - started < fake.SLOW_SECONDS
    assert (result.status, result.method, result.code) == (
        CardStatus.UNVERIFIED,
        "offline",
        "offline-ok",
    )
    assert (result.group_code, result.benefit_level) == ("ZZ", 4)
    assert result.message.startswith(UNREACHABLE)
    assert result.message.endswith("only the BHXH gateway can confirm the card.")
    assert result.raw is None
    assert len(gateway.checks) == 1


def test_gateway_down_falls_back_to_offline(db_session):
    checker = GatewayCardChecker(closed_port_url(), "u", "p", timeout=FAST_TIMEOUT)
    result = check(checker, db_session, "7912058865")
    assert (result.status, result.method, result.code) == (
        CardStatus.UNVERIFIED,
        "offline",
        "offline-10-digit",
    )
    assert result.message == (
        f"{UNREACHABLE} Offline check: A 10-digit social insurance number can only be checked "
        "through the BHXH gateway."
    )


def test_gateway_down_never_fails_a_card_the_offline_rules_reject(db_session):
    """The gateway is the judge: an unknown group found offline stays unverified for now."""
    checker = GatewayCardChecker(closed_port_url(), "u", "p", timeout=FAST_TIMEOUT)
    result = check(checker, db_session, "ZQ4010120878811")
    assert (result.status, result.code) == (CardStatus.UNVERIFIED, "group-unknown")


def test_gateway_login_refused_falls_back(db_session, gateway):
    checker = GatewayCardChecker(gateway.url, gateway.username, "wrong", timeout=FAST_TIMEOUT)
    result = check(checker, db_session, "7912058865")
    assert (result.status, result.method) == (CardStatus.UNVERIFIED, "offline")
    assert gateway.checks == []


def test_gateway_fallback_can_be_replaced(db_session):
    class Always:
        def check(self, session, card, *, full_name, birth, on):
            return CardCheckResult(CardStatus.FAILED, "offline", "stub", "Stub.")

    checker = GatewayCardChecker(closed_port_url(), "u", "p", timeout=0.2, fallback=Always())
    result = check(checker, db_session, fake.CARD_OK)
    assert (result.status, result.code) == (CardStatus.UNVERIFIED, "stub")
    assert result.message == f"{UNREACHABLE} Offline check: Stub."


def test_checker_from_settings():
    assert isinstance(checker_from_settings("", "", "", 5), OfflineCardChecker)
    assert isinstance(checker_from_settings(None, None, None, 5), OfflineCardChecker)
    online = checker_from_settings("https://egw.example/", "91001_BV", "secret", 7)
    assert isinstance(online, GatewayCardChecker)
    assert (online.base_url, online.username, online.password, online.timeout) == (
        "https://egw.example",
        "91001_BV",
        "secret",
        7,
    )
    assert isinstance(online.fallback, OfflineCardChecker)
    assert LOGIN_PATH == "/api/token/take"
    assert CARD_CHECK_PATH == "/api/egw/KQNhanLichSuKCB2024"


# --- writing results ------------------------------------------------------------------------


def make_coverage(session, patient=None, number="7912058865", status=CardStatus.UNVERIFIED):
    card = parse_bhyt_card(number)
    coverage = Coverage(
        patient=patient or factories.PatientFactory(),
        card_number=card.number,
        insurance_number=card.insurance_number,
        group_code=card.group_code,
        benefit_level=card.benefit_level,
        issuing_province=card.province_code,
        status=status,
    )
    session.add(coverage)
    session.flush()
    return coverage


def test_apply_check_writes_every_field(db_session):
    coverage = make_coverage(db_session)
    result = CardCheckResult(
        CardStatus.VERIFIED,
        "gateway",
        "000",
        "Thông tin thẻ chính xác!",
        card_number="GD4797912058865",
        group_code="GD",
        benefit_level=4,
        valid_from=dt.date(2026, 1, 1),
        valid_to=dt.date(2026, 12, 31),
        registered_facility_code="91001",
        area_code="K1",
        five_year_date=dt.date(2021, 3, 1),
        raw='{"maKetQua":"000"}',
    )
    before = dt.datetime.now(dt.UTC)
    apply_check(coverage, result)
    db_session.flush()
    db_session.expire_all()
    row = db_session.get(Coverage, coverage.id)
    assert (row.status, row.check_method, row.check_code, row.check_message) == (
        CardStatus.VERIFIED,
        "gateway",
        "000",
        "Thông tin thẻ chính xác!",
    )
    assert before <= row.checked_at <= dt.datetime.now(dt.UTC)
    assert row.raw_response == '{"maKetQua":"000"}'
    assert (row.card_number, row.insurance_number, row.issuing_province) == (
        "GD4797912058865",
        "7912058865",
        "79",
    )
    assert (row.group_code, row.benefit_level) == ("GD", 4)
    assert (row.valid_from, row.valid_to, row.five_year_date) == (
        dt.date(2026, 1, 1),
        dt.date(2026, 12, 31),
        dt.date(2021, 3, 1),
    )
    assert (row.registered_facility_code, row.area_code) == ("91001", "K1")


def test_apply_check_keeps_details_the_result_does_not_carry(db_session):
    coverage = make_coverage(db_session, number="HS4010120878811")
    coverage.valid_to = dt.date(2026, 12, 31)
    coverage.registered_facility_code = "91001"
    coverage.raw_response = '{"old": true}'
    apply_check(coverage, CardCheckResult(CardStatus.FAILED, "gateway", "060", None, raw="{}"))
    db_session.flush()
    assert (coverage.card_number, coverage.group_code, coverage.benefit_level) == (
        "HS4010120878811",
        "HS",
        4,
    )
    assert (coverage.valid_to, coverage.registered_facility_code) == (
        dt.date(2026, 12, 31),
        "91001",
    )
    assert (coverage.status, coverage.check_message, coverage.raw_response) == (
        CardStatus.FAILED,
        None,
        "{}",
    )


def test_apply_check_cuts_a_long_message_to_the_column(db_session):
    coverage = make_coverage(db_session)
    apply_check(coverage, CardCheckResult(CardStatus.FAILED, "gateway", "999", "x" * 400))
    db_session.flush()
    assert len(coverage.check_message) == 300
    assert coverage.check_message.endswith("…")


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("7912058865", "offline-10-digit"),
        ("ZQ4010120878811", "group-unknown"),
        ("ZD4790120878811", "level-mismatch"),
        ("ZB2790120878811", "group-not-in-force"),
        ("ZA4010120878811", "offline-ok"),
    ],
)
def test_every_offline_result_can_be_stored(db_session, number, code):
    add_group(db_session, "ZA", 4)
    add_group(db_session, "ZB", 2, dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    add_group(db_session, "ZD", 2)
    coverage = make_coverage(db_session, number=number)
    result = check(OfflineCardChecker(), db_session, number)
    assert result.code == code
    apply_check(coverage, result)
    db_session.flush()
    db_session.expire_all()
    assert db_session.get(Coverage, coverage.id).check_code == code


# --- re-checking ----------------------------------------------------------------------------


def test_recheck_flips_unverified_cards_the_gateway_confirms(db_session, gateway, checker):
    mai = factories.PatientFactory()
    make_coverage(db_session, mai, fake.CARD_EXPIRED)  # an older card: history, not re-checked
    mai_now = make_coverage(db_session, mai, fake.CARD_OK)
    lan = factories.PatientFactory(birth_year=1950, birth_month=None, birth_day=None)
    lan_now = make_coverage(db_session, lan, fake.CARD_10_DIGITS)
    hoa = factories.PatientFactory()
    hoa_now = make_coverage(db_session, hoa, fake.CARD_WRONG_NAME)
    done = make_coverage(db_session, factories.PatientFactory(), fake.CARD_NEW, CardStatus.VERIFIED)

    assert recheck_unverified(db_session, checker) == 3
    assert [c.body["maThe"] for c in gateway.checks] == [
        fake.CARD_OK,
        fake.CARD_10_DIGITS,
        fake.CARD_WRONG_NAME,
    ]
    assert [(c.body["hoTen"], c.body["ngaySinh"]) for c in gateway.checks] == [
        (mai.full_name, "17/05/1980"),
        (lan.full_name, "1950"),
        (hoa.full_name, "17/05/1980"),
    ]
    assert (mai_now.status, mai_now.check_method, mai_now.check_code) == (
        CardStatus.VERIFIED,
        "gateway",
        "000",
    )
    assert mai_now.raw_response == gateway.sent[0]
    assert (lan_now.status, lan_now.card_number, lan_now.insurance_number) == (
        CardStatus.VERIFIED,
        fake.CARD_10_DIGITS_FULL,
        fake.CARD_10_DIGITS,
    )
    assert hoa_now.status is CardStatus.FAILED
    assert done.checked_at is None
    older = db_session.scalars(
        select(Coverage).where(Coverage.card_number == fake.CARD_EXPIRED)
    ).one()
    assert (older.status, older.checked_at) == (CardStatus.UNVERIFIED, None)

    assert recheck_unverified(db_session, checker) == 0  # nothing left unverified
    assert len(gateway.checks) == 3


def test_recheck_counts_only_changes_and_respects_the_limit(db_session, zz_group, gateway, checker):
    down = make_coverage(db_session, number=fake.CARD_SERVER_ERROR)
    first = make_coverage(db_session, number=fake.CARD_OK)
    second = make_coverage(db_session, number=fake.CARD_OK)

    assert recheck_unverified(db_session, checker, limit=2) == 1
    assert (down.status, down.check_code) == (CardStatus.UNVERIFIED, "offline-ok")
    assert down.check_message.startswith(UNREACHABLE)
    assert down.checked_at is not None
    assert first.status is CardStatus.VERIFIED
    assert second.checked_at is None

    assert recheck_unverified(db_session, checker, limit=2) == 1
    assert second.status is CardStatus.VERIFIED
