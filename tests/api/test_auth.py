"""Tokens, logout, the current user and the login rate limit."""

import datetime as dt

from sqlalchemy import select, update

from his.models import ApiToken, AuditAction, AuditEvent, AuditOutcome, Role
from tests.factories import PASSWORD, UserFactory

PROBLEM = "application/problem+json"


def _token(client, username, password=PASSWORD):
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


def test_token_then_me(client, db_session):
    user = UserFactory(roles=(Role.DOCTOR, Role.NURSE), full_name="Lê Văn Tám")
    response = _token(client, user.username)
    assert response.status_code == 201
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 8 * 3600
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    data = me.get_json()
    assert data["username"] == user.username
    assert data["full_name"] == "Lê Văn Tám"
    assert data["roles"] == ["doctor", "nurse"]
    assert data["facility"]["code"] == user.facility.code
    assert data["facility"]["care_level"] == "primary"


def test_only_a_hash_of_the_token_is_stored(client, db_session):
    user = UserFactory()
    raw = _token(client, user.username).get_json()["access_token"]
    stored = db_session.scalars(select(ApiToken.token_hash)).all()
    assert len(stored) == 1
    assert raw not in stored[0] and len(stored[0]) == 64


def test_username_is_case_insensitive(client, db_session):
    user = UserFactory(username="reception.x")
    assert _token(client, "  Reception.X ").status_code == 201
    db_session.refresh(user)
    assert user.last_login_at is not None


def test_wrong_password_is_401_problem_and_audited(client, db_session):
    user = UserFactory()
    response = _token(client, user.username, "wrong password")
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["status"] == 401
    assert body["detail"] == "Tên đăng nhập hoặc mật khẩu không đúng."
    event = db_session.scalars(select(AuditEvent)).one()
    assert event.action is AuditAction.LOGIN_FAILED
    assert event.outcome is AuditOutcome.FAILURE
    assert event.user_id == user.id
    assert event.facility_id == user.facility_id
    assert event.source_ip == "127.0.0.1"


def test_unknown_user_is_the_same_401(client, db_session):
    response = _token(client, "nobody")
    assert response.status_code == 401
    assert response.get_json()["detail"] == "Tên đăng nhập hoặc mật khẩu không đúng."
    event = db_session.scalars(select(AuditEvent)).one()
    assert (event.action, event.username, event.user_id) == (
        AuditAction.LOGIN_FAILED,
        "nobody",
        None,
    )


def test_inactive_user_cannot_log_in(client, db_session):
    user = UserFactory(active=False)
    assert _token(client, user.username).status_code == 401


def test_successful_login_is_audited(client, db_session):
    user = UserFactory(roles=(Role.CASHIER,))
    _token(client, user.username)
    event = db_session.scalars(select(AuditEvent)).one()
    assert (event.action, event.outcome, event.user_id, event.roles, event.detail) == (
        AuditAction.LOGIN,
        AuditOutcome.SUCCESS,
        user.id,
        "cashier",
        "api",
    )


def test_missing_fields_are_422_with_field_errors(client, db_session):
    response = client.post("/api/v1/auth/token", json={"username": "a"})
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert response.get_json()["errors"] == {"password": ["Thiếu dữ liệu cho trường bắt buộc."]}
    english = client.post(
        "/api/v1/auth/token", json={"username": "a"}, headers={"Accept-Language": "en"}
    )
    assert english.get_json()["errors"] == {"password": ["Missing data for required field."]}


def test_me_without_token_is_401(client, db_session):
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.mimetype == PROBLEM
    assert response.get_json()["detail"] == "Hãy đăng nhập hoặc gửi mã truy cập (bearer token)."


def test_api_errors_follow_accept_language(client, db_session):
    response = client.get("/api/v1/me", headers={"Accept-Language": "en-US,en;q=0.8"})
    body = response.get_json()
    assert (body["title"], body["detail"]) == (
        "Authentication required",
        "Log in or send a bearer token.",
    )


def test_garbage_token_is_401(client, db_session):
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.get_json()["detail"] == "Mã truy cập không có, đã hết hạn hoặc đã bị thu hồi."


def test_expired_token_is_refused(client, db_session, login_token):
    user = UserFactory()
    headers = login_token(user.username)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    db_session.execute(
        update(ApiToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    )
    db_session.flush()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_logout_revokes_the_token(client, db_session, login_token):
    user = UserFactory()
    headers = login_token(user.username)
    other = login_token(user.username)
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    # Only the presented token is revoked; the user's other session goes on.
    assert client.get("/api/v1/me", headers=other).status_code == 200
    actions = db_session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-1] is AuditAction.LOGOUT


def test_token_lifetime_follows_configuration(make_app, db_session):
    client = make_app(HIS_TOKEN_TTL_MINUTES="15").test_client()
    user = UserFactory()
    assert _token(client, user.username).get_json()["expires_in"] == 900


def test_failed_logins_are_rate_limited_per_address(make_app, db_session):
    client = make_app(HIS_LOGIN_RATE_LIMIT="3 per minute").test_client()
    user = UserFactory()
    for _ in range(3):
        assert _token(client, user.username, "wrong").status_code == 401
    # Even the right password is refused until the window passes.
    blocked = _token(client, user.username)
    assert blocked.status_code == 429
    assert blocked.mimetype == PROBLEM
    assert "Retry-After" in blocked.headers
    assert blocked.get_json()["type"].endswith("/rate-limited")


def test_successful_logins_are_not_counted(make_app, db_session):
    client = make_app(HIS_LOGIN_RATE_LIMIT="3 per minute").test_client()
    user = UserFactory()
    for _ in range(5):
        assert _token(client, user.username).status_code == 201


def test_failed_logins_are_rate_limited_per_account(make_app, db_session):
    """Guessing one account's password from many addresses is throttled too."""
    client = make_app(HIS_LOGIN_RATE_LIMIT="3 per minute").test_client()
    user = UserFactory()
    for n in range(3):
        response = client.post(
            "/api/v1/auth/token",
            json={"username": user.username, "password": "wrong"},
            environ_base={"REMOTE_ADDR": f"10.0.0.{n + 1}"},
        )
        assert response.status_code == 401
    response = client.post(
        "/api/v1/auth/token",
        json={"username": user.username, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.0.0.99"},
    )
    assert response.status_code == 429
