"""Every error is RFC 9457 problem+json, never an HTML page or a stack trace."""

import pytest

from his.models import Role
from tests.factories import UserFactory

PROBLEM = "application/problem+json"


def _assert_problem(response, status):
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_404(client, db_session):
    body = _assert_problem(client.get("/api/v1/no-such-thing"), 404)
    assert body["instance"] == "/api/v1/no-such-thing"


@pytest.mark.parametrize("path", ["/api/v1/patients/2147483648", "/api/v1/queues/155418270123"])
def test_an_id_past_32_bits_names_nothing(client, db_session, login_token, path):
    """Found by schemathesis: on PostgreSQL such an id reached the INTEGER column and came
    back 422 ("too large"); it names no row, on either database."""
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    _assert_problem(client.get(path, headers=login_token(user.username)), 404)


def test_405_names_the_allowed_methods(client, db_session):
    response = client.delete("/api/v1/facilities")
    _assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_422_has_field_by_field_errors(client, db_session):
    response = client.post("/api/v1/auth/token", json={"username": "", "password": 5})
    body = _assert_problem(response, 422)
    assert set(body["errors"]) == {"username", "password"}
    assert all(isinstance(v, list) and v for v in body["errors"].values())


def test_body_that_is_not_json(client, db_session):
    response = client.post(
        "/api/v1/auth/token", data="username=a", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (400, 415, 422)
    assert response.mimetype == PROBLEM


def test_413_for_an_oversized_body(make_app, db_session):
    client = make_app(HIS_MAX_CONTENT_LENGTH="1024").test_client()
    response = client.post("/api/v1/auth/token", json={"username": "a", "password": "x" * 4096})
    _assert_problem(response, 413)


@pytest.fixture
def failing_app(make_app, db_session):
    app = make_app()

    @app.get("/api/v1/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM patient -- must never reach the client")

    @app.get("/boom-page")
    def boom_page():
        raise RuntimeError("SELECT secret")

    return app


def test_500_hides_the_exception(failing_app):
    response = failing_app.test_client().get("/api/v1/boom")
    body = _assert_problem(response, 500)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text
    assert "SELECT" not in text
    assert "RuntimeError" not in text
    assert body["request_id"]


def test_500_in_a_browser_is_an_html_page_without_a_trace(failing_app):
    response = failing_app.test_client().get("/api/v1/boom", headers={"Accept": "text/html"})
    # API paths always answer problem+json, whatever the browser asks for.
    assert response.mimetype == PROBLEM
    page = failing_app.test_client().get("/boom-page", headers={"Accept": "text/html"})
    assert page.status_code == 500
    assert page.mimetype == "text/html"
    assert "SELECT" not in page.get_data(as_text=True)
    assert page.headers["X-Request-ID"] in page.get_data(as_text=True)


def test_403_for_a_role_is_problem_json(client, db_session, login_token):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    _assert_problem(client.get("/api/v1/audit-events", headers=login_token(user.username)), 403)


def test_cookie_authenticated_api_writes_need_csrf(client, db_session):
    """A browser session cannot be ridden by another site to call the API."""
    user = UserFactory()
    client.get("/login")
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 400
    assert response.mimetype == PROBLEM


def test_validation_messages_are_translated(client, db_session, login_token):
    auditor = UserFactory(roles=(Role.AUDITOR,))
    headers = login_token(auditor.username)
    query = {"action": "steal", "patient_id": "x", "since": "hôm qua"}
    vi = client.get("/api/v1/audit-events", query_string=query, headers=headers).get_json()
    assert vi["errors"]["patient_id"] == ["Không phải số nguyên hợp lệ."]
    assert vi["errors"]["since"] == ["Không phải ngày giờ hợp lệ."]
    assert vi["errors"]["action"][0].startswith("Phải là một trong: login, login_failed")
    en = client.get(
        "/api/v1/audit-events", query_string=query, headers={**headers, "Accept-Language": "en"}
    ).get_json()
    assert en["errors"]["patient_id"] == ["Not a valid integer."]
    assert en["errors"]["since"] == ["Not a valid date and time."]


def test_a_body_that_is_not_valid_json_says_so(client, db_session):
    response = client.post("/api/v1/auth/token", data="{not json", content_type="application/json")
    body = _assert_problem(response, 400)
    assert body["detail"]


def test_an_integer_too_large_for_the_database_is_a_422(client, db_session, login_token):
    """Past 64 bits the SQLite driver overflows; that is the client's input, not a 500."""
    auditor = UserFactory(roles=(Role.AUDITOR,))
    response = client.get(
        "/api/v1/audit-events",
        query_string={"patient_id": "9" * 25},
        headers=login_token(auditor.username),
    )
    assert response.status_code in (200, 422), response.get_json()
    if response.status_code == 422:
        _assert_problem(response, 422)
    assert client.get("/api/v1/patients/" + "9" * 25).status_code in (401, 404)
