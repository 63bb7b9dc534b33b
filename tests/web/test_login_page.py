"""The login page and the home screen, through the Flask test client.
(The same flow in a real browser is in tests/e2e.)"""

import re

import pytest
from sqlalchemy import select

from his.models import AuditAction, AuditEvent, Role
from tests.factories import PASSWORD, UserFactory


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


def log_in(client, username, password=PASSWORD, next_url=None):
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"username": username, "password": password, "csrf_token": token})


def test_login_page_is_vietnamese_by_default(client, db_session):
    response = client.get("/login", headers={"Accept-Language": "en-US,en"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="vi">' in html
    assert "Đăng nhập" in html
    assert "Tên đăng nhập" in html


def test_english_on_request_and_remembered(client, db_session):
    html = client.get("/login?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Username" in html
    # The choice is kept in a cookie for the next page.
    assert '<html lang="en">' in client.get("/login").get_data(as_text=True)
    assert '<html lang="vi">' in client.get("/login?lang=vi").get_data(as_text=True)


def test_anonymous_home_redirects_to_login(client, db_session):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/")


def test_login_needs_the_csrf_token(client, db_session):
    user = UserFactory()
    response = client.post("/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 400
    assert db_session.scalars(select(AuditEvent)).all() == []


@pytest.mark.parametrize(
    ("role", "panel"),
    [
        (Role.RECEPTIONIST, "Tiếp đón"),
        (Role.DOCTOR, "Khám bệnh"),
        (Role.PHARMACIST, "Khoa Dược"),
        (Role.CASHIER, "Thu ngân"),
        (Role.AUDITOR, "Kiểm tra truy vết"),
        (Role.ADMIN, "Quản trị"),
    ],
)
def test_login_leads_to_the_home_of_the_role(client, db_session, role, panel):
    user = UserFactory(roles=(role,), full_name="Phạm Thị Bích")
    response = log_in(client, user.username)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert "Xin chào, Phạm Thị Bích" in html
    assert f"<h2>{panel}</h2>" in html
    assert user.facility.name in html
    [event] = db_session.scalars(select(AuditEvent)).all()
    assert (event.action, event.detail) == (AuditAction.LOGIN, "web")


def test_wrong_password_stays_on_the_page(client, db_session):
    user = UserFactory()
    response = log_in(client, user.username, "nope")
    assert response.status_code == 401
    assert "Tên đăng nhập hoặc mật khẩu không đúng." in response.get_data(as_text=True)
    [event] = db_session.scalars(select(AuditEvent)).all()
    assert (event.action, event.detail) == (AuditAction.LOGIN_FAILED, "web")
    assert client.get("/").status_code == 302


def test_empty_form_names_the_missing_fields(client, db_session):
    response = log_in(client, "", "")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Nhập tên đăng nhập." in html
    assert "Nhập mật khẩu." in html


def test_next_is_followed_only_within_the_site(client, db_session):
    user = UserFactory()
    assert log_in(client, user.username, next_url="/api/docs").headers["Location"] == "/api/docs"
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert log_in(client, user.username, next_url=hostile).headers["Location"] == "/"
        client.post(
            "/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))}
        )


def test_failed_web_logins_are_rate_limited(make_app, db_session):
    client = make_app(HIS_LOGIN_RATE_LIMIT="2 per minute").test_client()
    user = UserFactory()
    assert log_in(client, user.username, "bad").status_code == 401
    assert log_in(client, user.username, "bad").status_code == 401
    blocked = log_in(client, user.username)
    assert blocked.status_code == 429
    assert "Quá nhiều lần thử" in blocked.get_data(as_text=True)


def test_logout(client, db_session):
    user = UserFactory()
    log_in(client, user.username)
    home = client.get("/").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token(home)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    actions = db_session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == [AuditAction.LOGIN, AuditAction.LOGOUT]


def test_logout_needs_post_with_csrf(client, db_session):
    user = UserFactory()
    log_in(client, user.username)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


def test_session_cookie_flags(make_app, db_session):
    client = make_app(HIS_COOKIE_SECURE="true").test_client()
    user = UserFactory()
    response = log_in(client, user.username)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("his_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie


def test_a_stale_form_gets_a_plain_explanation(client, db_session):
    response = client.post(
        "/login",
        data={"username": "x", "password": "y", "csrf_token": "stale"},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 400
    assert "Biểu mẫu đã hết hạn" in response.get_data(as_text=True)
