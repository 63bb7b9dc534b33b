"""Passwords: argon2 hashes, the policy for passwords set through user management (length,
the bundled common-password list, not the username), and the per-account lockout with
back-off after repeated failures, every failure and lock audited.

The lockout clock is moved by editing ``locked_until`` in the database, never by sleeping.
"""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from his.cli import main as his_command
from his.db import utcnow
from his.errors import ValidationFailed
from his.models import AuditAction, AuditEvent, AuditOutcome, Role, User
from his.services import auth, passwords
from his.services.access import Principal
from his.services.users import create_user
from tests.factories import PASSWORD, UserFactory
from tests.web.test_login_page import csrf_token, log_in

ANONYMOUS = Principal(user_id=None, username=None, source_ip="192.0.2.7")
# Test apps get a generous rate limit so the lockout, not Flask-Limiter, is what answers.
MANY = {"HIS_LOGIN_RATE_LIMIT": "1000 per minute"}


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "demo",  # too short
        "short pass",  # 10 characters
        "password1234",  # on the list once the digits are stripped
        "Password2024!",  # capitals and symbols do not hide it
        "@@Dragon123456",
        "qwertyqwerty",  # a common password typed twice
        "123qweasdzxc",  # on the list as it is
        "MatKhau@2024",  # Vietnamese: "password"
        "anhyeuem123456",  # Vietnamese: "I love you (to a woman)"
        "aaaaaaaaaaaabbbb",  # too few different characters
        "nguyen.van.a-2024",  # contains the username below
    ],
)
def test_weak_passwords_are_refused(password):
    assert passwords.problems(password, username="nguyen.van.a")


@pytest.mark.parametrize(
    "password",
    [PASSWORD, "Bệnh viện tỉnh, phòng 204", "tram-y-te-xa-hoa-binh-7", "x7#Lq9!vR2@m"],
)
def test_strong_passwords_pass(password):
    assert passwords.problems(password, username="nguyen.van.a") == []


def test_messages_say_what_is_wrong(app):
    with app.test_request_context():  # Vietnamese, the default locale
        assert passwords.problems("xq7-Lm2") == ["Dùng ít nhất 12 ký tự."]
        assert passwords.problems("Password2024!") == [
            "Mật khẩu này quá phổ biến: hãy chọn mật khẩu khác."
        ]
        assert passwords.problems("x" * 1025) == [
            "Tối đa 1024 ký tự.",
            "Mật khẩu này có quá ít ký tự khác nhau: hãy chọn mật khẩu khác.",
        ]
        assert passwords.problems("bs.lan: xq7-Lm2-Rv9", username="BS.Lan") == [
            "Mật khẩu không được chứa tên đăng nhập."
        ]


def test_the_minimum_length_is_configurable():
    assert passwords.problems("xq7-Lm2-Rv9", min_length=10) == []
    assert passwords.problems("xq7-Lm2-Rv9", min_length=12)


def test_the_common_password_list_is_bundled():
    common = passwords.common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "qwerty", "matkhau", "anhyeuem"} <= common
    assert all(p == p.lower() and p.strip() == p for p in common)
    assert passwords.COMMON_PASSWORDS.is_relative_to(passwords.COMMON_PASSWORDS.parents[1])


def test_user_creation_enforces_the_policy(db_session, facility):
    with pytest.raises(ValidationFailed) as refused:
        create_user(
            db_session,
            username="bs.lan",
            password="password1234",
            full_name="Lê Thị Lan",
            facility_code=facility.code,
            roles=[Role.DOCTOR],
        )
    assert list(refused.value.errors) == ["password"]
    assert db_session.scalar(select(User).where(User.username == "bs.lan")) is None

    user = create_user(
        db_session,
        username="bs.lan",
        password="Bệnh viện tỉnh, phòng 204",
        full_name="Lê Thị Lan",
        facility_code=facility.code,
        roles=[Role.DOCTOR],
    )
    assert user.password_hash.startswith("$argon2id$")
    assert "Bệnh viện" not in user.password_hash


def test_only_the_demo_loader_may_skip_the_policy(db_session, facility):
    # The demo accounts' password is published ("demo"), so the loader says so explicitly.
    user = create_user(
        db_session,
        username="demo.x",
        password="demo",
        full_name="Demo",
        facility_code=facility.code,
        roles=[Role.DOCTOR],
        check_password=False,
    )
    assert user.id is not None
    with pytest.raises(ValidationFailed):
        create_user(
            db_session,
            username="demo.y",
            password="demo",
            full_name="Demo",
            facility_code=facility.code,
            roles=[Role.DOCTOR],
        )


def test_the_cli_refuses_a_weak_password(cli_db, monkeypatch):
    runner = CliRunner()
    assert runner.invoke(his_command, ["db", "upgrade"]).exit_code == 0
    monkeypatch.setenv("HIS_PASSWORD_MIN_LENGTH", "30")
    args = ["user", "create", "--username", "x.y", "--full-name", "X", "--facility", "00000"]
    result = runner.invoke(his_command, [*args, "--role", "doctor", "--password", PASSWORD])
    assert result.exit_code == 1
    # Refused for the password (checked before the facility, which does not exist).
    assert "password: Use at least 30 characters." in result.output


# --- lockout ---------------------------------------------------------------------------------


def _token(client, username, password):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def _trail(db_session, user_id=None):
    query = select(AuditEvent).order_by(AuditEvent.id)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    return [(e.action, e.outcome, e.detail) for e in db_session.scalars(query)]


def test_five_failures_lock_the_account(make_app, db_session):
    client = make_app(**MANY).test_client()
    user = UserFactory()
    for _ in range(4):
        assert _token(client, user.username, "wrong password").status_code == 401
    db_session.refresh(user)
    assert (user.failed_logins, user.locked_until) == (4, None)
    assert _token(client, user.username, PASSWORD).status_code == 201  # a success resets
    db_session.refresh(user)
    assert user.failed_logins == 0

    for _ in range(5):
        _token(client, user.username, "wrong password")
    db_session.refresh(user)
    locked_for = user.locked_until - utcnow()
    assert dt.timedelta(seconds=50) < locked_for <= dt.timedelta(minutes=1)
    assert (user.failed_logins, user.lockouts) == (0, 1)

    # Even the right password is refused while locked, with the wrong-password answer.
    refused = _token(client, user.username, PASSWORD)
    assert refused.status_code == 401
    assert refused.get_json()["detail"] == "Tên đăng nhập hoặc mật khẩu không đúng."
    trail = _trail(db_session, user.id)
    failure = (AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE, "api")
    assert trail[-7:] == [
        failure,
        failure,
        failure,
        failure,
        failure,
        (
            AuditAction.LOGIN_FAILED,
            AuditOutcome.DENIED,
            "api: account locked for 60 s after 5 failed attempts (lock 1 in a row)",
        ),
        (AuditAction.LOGIN_FAILED, AuditOutcome.DENIED, "api: account locked"),
    ]

    # When the lock ends the right password works again and everything is reset.
    user.locked_until = utcnow() - dt.timedelta(seconds=1)
    db_session.flush()
    assert _token(client, user.username, PASSWORD).status_code == 201
    db_session.refresh(user)
    assert (user.failed_logins, user.lockouts, user.locked_until) == (0, 0, None)


def test_locks_double_up_to_the_cap(db_session):
    user = UserFactory()
    policy = auth.Lockout(after=1, minutes=1, max_minutes=3)
    lengths = []
    for _ in range(4):
        refused = auth.authenticate(
            db_session, ANONYMOUS, user.username, "wrong", channel="test", lockout=policy
        )
        assert refused is None
        lengths.append(round((user.locked_until - utcnow()).total_seconds() / 60))
        user.locked_until = utcnow() - dt.timedelta(seconds=1)  # the lock runs out
    assert lengths == [1, 2, 3, 3]
    assert user.lockouts == 4


def test_attempts_during_a_lock_neither_count_nor_extend_it(db_session):
    user = UserFactory()
    policy = auth.Lockout(after=2, minutes=5)
    for _ in range(2):
        auth.authenticate(
            db_session, ANONYMOUS, user.username, "wrong", channel="t", lockout=policy
        )
    until = user.locked_until
    for _ in range(10):
        auth.authenticate(
            db_session, ANONYMOUS, user.username, "wrong", channel="t", lockout=policy
        )
    assert (user.locked_until, user.failed_logins, user.lockouts) == (until, 0, 1)


def test_a_locked_account_answers_like_an_unknown_one(make_app, db_session):
    """Same status, body and headers (the lock adds no Retry-After of its own): a stranger
    cannot learn that a username exists by locking it."""
    client = make_app(HIS_LOGIN_LOCK_AFTER="2", **MANY).test_client()
    user = UserFactory()
    for _ in range(2):
        _token(client, user.username, "wrong password")
        _token(client, "nobody.here", "wrong password")
    locked = _token(client, user.username, "wrong password")
    unknown = _token(client, "nobody.here", "wrong password")
    assert locked.status_code == unknown.status_code == 401
    ignore = {"request_id"}
    assert {k: v for k, v in locked.get_json().items() if k not in ignore} == {
        k: v for k, v in unknown.get_json().items() if k not in ignore
    }
    assert set(locked.headers.keys()) == set(unknown.headers.keys())
    # Flask-Limiter's own headers count attempts per name alike for every name; only
    # their clock readings and the request id may differ.
    clocks = {"X-Request-ID", "X-RateLimit-Reset", "Retry-After"}
    different = {k for k, v in locked.headers.items() if unknown.headers.get(k) != v}
    assert different <= clocks
    # Unknown names leave a failed-login row too, without a user id.
    unknown_rows = [e for e in db_session.scalars(select(AuditEvent)) if e.user_id is None]
    assert {(e.action, e.username) for e in unknown_rows} == {
        (AuditAction.LOGIN_FAILED, "nobody.here")
    }
    assert len(unknown_rows) == 3


def test_the_web_login_locks_too(make_app, db_session):
    client = make_app(HIS_LOGIN_LOCK_AFTER="2", **MANY).test_client()
    user = UserFactory()
    for _ in range(2):
        assert log_in(client, user.username, "wrong password").status_code == 401
    response = log_in(client, user.username)
    assert response.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in
    assert _trail(db_session, user.id)[-1] == (
        AuditAction.LOGIN_FAILED,
        AuditOutcome.DENIED,
        "web: account locked",
    )


def test_wrong_passwords_on_the_reauth_page_count_towards_the_lock(make_app, db_session):
    client = make_app(HIS_LOGIN_LOCK_AFTER="2", **MANY).test_client()
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    token = csrf_token(client.get("/reauth").get_data(as_text=True))
    for _ in range(2):
        wrong = client.post("/reauth", data={"csrf_token": token, "password": "guess"})
        assert wrong.status_code == 401
    db_session.refresh(admin)
    assert admin.locked_until is not None
    right = client.post("/reauth", data={"csrf_token": token, "password": PASSWORD})
    assert right.status_code == 401  # locked: the session cannot be used to guess


def test_the_lockout_settings_are_read_from_the_environment(make_app, db_session):
    client = make_app(HIS_LOGIN_LOCK_AFTER="2", HIS_LOGIN_LOCK_MINUTES="7", **MANY).test_client()
    user = UserFactory()
    for _ in range(2):
        _token(client, user.username, "wrong password")
    db_session.refresh(user)
    assert dt.timedelta(minutes=6) < user.locked_until - utcnow() <= dt.timedelta(minutes=7)
