"""Web sessions under attack: cookie flags, a new session at login, idle and absolute
timeouts, logout that ends every session and API token, CSRF on every state-changing form,
the security headers, and re-authentication before admin actions.

The clock is moved by editing the session's timestamps (``client.session_transaction()``)
or the token's issue time in the database, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update
from werkzeug.routing import AnyConverter, IntegerConverter

from his.authn import ADMIN_API_WRITES, WRITE_METHODS
from his.db import utcnow
from his.models import ApiToken, AuditAction, AuditEvent, AuditOutcome, Role
from tests.factories import PASSWORD, UserFactory
from tests.web.test_login_page import csrf_token, log_in

COOKIE = "his_session"
CSRF_REFUSED = (
    "Biểu mẫu đã hết hạn hoặc không được gửi từ trang này. Hãy tải lại trang rồi thử lại."
)
TEMPLATES = Path(__file__).resolve().parents[2] / "his" / "web" / "templates"


def _set_cookie(response, name=COOKIE) -> str:
    """The Set-Cookie header of the named cookie (attributes included)."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    assert headers, f"no {name} cookie set"
    return headers[-1]


def _cookie_value(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def _move_clock(client, **seconds_ago: int) -> None:
    """Pretends the named session timestamps were taken that many seconds ago."""
    with client.session_transaction() as session:
        for key, ago in seconds_ago.items():
            session[key] = int(time.time()) - ago


def _bearer(client, username) -> dict[str, str]:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 201
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def _logout(client):
    token = csrf_token(client.get("/").get_data(as_text=True))
    return client.post("/logout", data={"csrf_token": token})


# --- cookies and rotation --------------------------------------------------------------------


def test_session_cookie_is_httponly_and_samesite(client, db_session):
    user = UserFactory()
    response = log_in(client, user.username)
    header = _set_cookie(response)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    # A browser-session cookie (no expiry), and no long-lived remember-me cookie at all.
    assert "Expires=" not in header and "Max-Age=" not in header
    assert [h for h in response.headers.getlist("Set-Cookie") if "remember" in h] == []
    # The test settings run over plain http (HIS_COOKIE_SECURE defaults to false outside
    # production); the next test turns it on.
    assert "Secure" not in header


def test_session_cookie_is_secure_when_configured(make_app, db_session):
    client = make_app(HIS_COOKIE_SECURE="true").test_client()
    response = client.get("/login", base_url="https://localhost")
    header = _set_cookie(response)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header


def test_production_defaults_to_secure_cookies():
    from his.config import Settings

    settings = Settings.from_env({"HIS_ENV": "production", "HIS_SECRET_KEY": "k" * 40})
    assert settings.cookie_secure is True
    assert (settings.session_idle_minutes, settings.session_max_hours) == (30, 12)


def test_login_starts_a_new_session(client, db_session):
    user = UserFactory()
    client.get("/login")
    with client.session_transaction() as session:
        session["planted"] = "by someone else"  # what a fixation attack would rely on
    before = _cookie_value(client)
    assert before

    assert log_in(client, user.username).status_code == 302
    after = _cookie_value(client)
    assert after and after != before
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session["_user_id"] == str(user.id)
        assert session["login_at"] == session["seen_at"] == session["reauth_at"]

    # The pre-login cookie value stays anonymous: replayed, it does not log anyone in.
    replay = client.application.test_client()
    replay.set_cookie(COOKIE, before)
    response = replay.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# --- timeouts --------------------------------------------------------------------------------


def test_idle_session_ends(client, db_session):
    user = UserFactory()
    log_in(client, user.username)
    _move_clock(client, seen_at=29 * 60)
    assert client.get("/").status_code == 200  # 29 minutes idle: still in
    with client.session_transaction() as session:
        assert time.time() - session["seen_at"] < 5  # and the request counted as activity

    _move_clock(client, seen_at=31 * 60)
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    with client.session_transaction() as session:
        assert "_user_id" not in session
    # The session is gone, not merely hidden: the next request is anonymous too.
    assert client.get("/").status_code == 302


def test_absolute_timeout_ends_an_active_session(client, db_session):
    user = UserFactory()
    log_in(client, user.username)
    _move_clock(client, login_at=12 * 3600 - 60, seen_at=10)
    assert client.get("/").status_code == 200
    _move_clock(client, login_at=12 * 3600 + 1, seen_at=10)
    assert client.get("/").status_code == 302


def test_timeouts_follow_the_settings(make_app, db_session):
    client = make_app(HIS_SESSION_IDLE_MINUTES="5", HIS_SESSION_MAX_HOURS="1").test_client()
    user = UserFactory()
    log_in(client, user.username)
    _move_clock(client, seen_at=6 * 60)
    assert client.get("/").status_code == 302
    log_in(client, user.username)
    _move_clock(client, login_at=3601, seen_at=0)
    assert client.get("/").status_code == 302


def test_expired_cookie_session_on_the_api_is_401(client, db_session):
    user = UserFactory()
    log_in(client, user.username)
    assert client.get("/api/v1/me").status_code == 200
    _move_clock(client, seen_at=31 * 60)
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


def test_a_session_without_timestamps_is_not_trusted(client, db_session):
    # A cookie from before this code (or crafted without the stamps) is treated as expired.
    user = UserFactory()
    log_in(client, user.username)
    with client.session_transaction() as session:
        del session["login_at"]
    assert client.get("/").status_code == 302


# --- logout ----------------------------------------------------------------------------------


def test_web_logout_revokes_api_tokens_and_every_session(client, db_session):
    user = UserFactory()
    other = UserFactory()
    headers = _bearer(client, user.username)
    others_headers = _bearer(client, other.username)
    log_in(client, user.username)
    stolen = _cookie_value(client)  # a copy of the cookie, taken while logged in
    second_desk = client.application.test_client()
    log_in(second_desk, user.username)
    assert client.get("/api/v1/me", headers=headers).status_code == 200

    response = _logout(client)
    assert response.status_code == 302 and response.headers["Location"] == "/login"

    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert second_desk.get("/").status_code == 302  # the other workstation is out too
    replay = client.application.test_client()
    replay.set_cookie(COOKIE, stolen)
    assert replay.get("/").status_code == 302
    # Another user's token is untouched.
    assert client.get("/api/v1/me", headers=others_headers).status_code == 200
    live = db_session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).all()
    assert live == []
    event = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.LOGOUT)
    ).one()
    assert (event.user_id, event.detail) == (user.id, "web; 1 API tokens revoked")

    # Logging in again works and gives a working session.
    log_in(client, user.username)
    assert client.get("/").status_code == 200


def test_api_logout_revokes_the_token(client, db_session):
    user = UserFactory()
    headers = _bearer(client, user.username)
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


# --- CSRF on every state-changing form ----------------------------------------------------------


def _example_url(app, rule) -> str:
    """The rule filled with values that match its converters."""
    values = {}
    for name, converter in rule._converters.items():
        if isinstance(converter, AnyConverter):
            values[name] = sorted(converter.items)[0]
        elif isinstance(converter, IntegerConverter):
            values[name] = 1
        else:
            values[name] = "x"
    return app.url_map.bind("localhost").build(rule.endpoint, values)


def _web_write_routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.rule.startswith(("/api", "/fhir", "/static")):
            continue
        for method in sorted(rule.methods & WRITE_METHODS):
            yield method, rule


def test_every_web_form_refuses_a_request_without_the_csrf_token(client, db_session):
    assert client.application.config.get("WTF_CSRF_ENABLED", True)
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    token = csrf_token(client.get("/").get_data(as_text=True))
    json = {"Accept": "application/json"}
    checked = []
    for method, rule in _web_write_routes(client.application):
        url = _example_url(client.application, rule)
        refused = client.open(url, method=method, data={"x": "1"}, headers=json)
        assert refused.status_code == 400, (method, rule.rule, refused.status_code)
        assert refused.get_json()["detail"] == CSRF_REFUSED, (method, rule.rule)
        # A token from another session is refused too.
        forged = client.open(url, method=method, data={"csrf_token": "forged." + token[:20]})
        assert forged.status_code == 400, (method, rule.rule)
        if rule.endpoint != "web.logout":
            # The same request with the token gets past CSRF (whatever the view says then),
            # so the refusals above are CSRF's and not the view's.
            accepted = client.open(url, method=method, data={"csrf_token": token}, headers=json)
            body = accepted.get_json(silent=True) or {}
            assert body.get("detail") != CSRF_REFUSED, (method, rule.rule)
        checked.append((method, rule.rule))
    # Every blueprint with forms is in the walk (a route filter gone wrong would pass empty).
    prefixes = {path.split("/")[1] for _m, path in checked}
    assert {"login", "logout", "reauth", "admin", "doctor", "pharmacy", "cashier"} <= prefixes
    assert {"reception", "claims"} <= prefixes
    assert len(checked) >= 30


def test_cookie_authenticated_api_writes_need_the_csrf_token(client, db_session):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    log_in(client, user.username)
    response = client.post("/api/v1/patients", json={"full_name": "Nguyễn Văn A"})
    assert response.status_code == 400
    assert response.get_json()["detail"] == CSRF_REFUSED


# --- security headers ------------------------------------------------------------------------


def _directives(csp: str) -> dict[str, list[str]]:
    parts = [p.strip().split() for p in csp.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


@pytest.mark.parametrize(
    ("path", "kind", "status"),
    [
        ("/login", "text/html", 200),
        ("/no/such/page", "text/html", 404),
        ("/api/v1/me", "application/json", 200),
        ("/api/v1/no-such-thing", "application/problem+json", 404),
        ("/api/openapi.json", "application/json", 200),
        ("/api/docs", "text/html", 200),
        ("/fhir/metadata", "application/fhir+json", 200),
        ("/fhir/Patient/999999", "application/fhir+json", 404),
        ("/healthz", "application/json", 200),
        ("/static/favicon.svg", "image/svg+xml", 200),
    ],
)
def test_security_headers_on_every_kind_of_response(client, db_session, path, kind, status):
    user = UserFactory(roles=(Role.DOCTOR,))
    headers = {"Accept": "text/html"} if kind == "text/html" else {}
    if path.startswith(("/api/v1", "/fhir/Patient")):
        headers.update(_bearer(client, user.username))
    response = client.get(path, headers=headers)
    assert (response.status_code, response.mimetype) == (status, kind)
    csp = _directives(response.headers["Content-Security-Policy"])
    scripts = csp.get("script-src", csp["default-src"])
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert scripts == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_templates_have_no_inline_scripts_or_handlers():
    """The CSP refuses inline scripts; this keeps the templates from needing them."""
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) > 20
    problems = []
    for path in templates:
        html = path.read_text(encoding="utf-8")
        for match in re.finditer(r"<script\b([^>]*)>(.*?)</script\s*>", html, re.S | re.I):
            if match.group(2).strip() or "src=" not in match.group(1):
                problems.append(f"{path.name}: inline <script>")
        for match in re.finditer(r"<[a-z][^>]*\son[a-z]+\s*=", html, re.I):
            problems.append(f"{path.name}: event handler attribute {match.group(0)[-20:]!r}")
        if re.search(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", html, re.I):
            problems.append(f"{path.name}: javascript: URL")
    assert problems == []


def test_the_template_check_finds_what_it_looks_for(tmp_path):
    # The regular expressions above, on a page that breaks each rule.
    bad = '<script>alert(1)</script><button onclick="go()">x</button>'
    assert re.search(r"<script\b([^>]*)>(.*?)</script\s*>", bad, re.S).group(2).strip()
    assert re.search(r"<[a-z][^>]*\son[a-z]+\s*=", bad, re.I)


# --- re-authentication before admin actions ------------------------------------------------


def _admin_writes(app):
    # hl7.filter_messages is a read by POST (the patient term stays out of the URL):
    # exempt from re-authentication in his.authn.ADMIN_READS_BY_POST.
    return [
        (m, r)
        for m, r in _web_write_routes(app)
        if r.rule.startswith("/admin/") and r.endpoint != "hl7.filter_messages"
    ]


def test_every_admin_form_needs_a_recent_password(client, db_session):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    token = csrf_token(client.get("/admin/hl7/").get_data(as_text=True))
    _move_clock(client, reauth_at=16 * 60)  # the default window is 15 minutes
    routes = _admin_writes(client.application)
    assert len(routes) >= 6
    for method, rule in routes:
        url = _example_url(client.application, rule)
        response = client.open(
            url,
            method=method,
            data={"csrf_token": token},
            headers={"Referer": "http://localhost/admin/hl7/peers"},
        )
        assert response.status_code == 302, (method, rule.rule)
        assert response.headers["Location"] == "/reauth?next=/admin/hl7/peers", rule.rule
    # htmx requests are told where to go instead of getting a page swapped into a fragment.
    method, rule = routes[0]
    response = client.open(
        _example_url(client.application, rule),
        method=method,
        data={"csrf_token": token},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 204 and response.headers["HX-Redirect"].startswith("/reauth")


def test_reauthentication_flow(client, db_session):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    _move_clock(client, reauth_at=16 * 60)
    page = client.get("/admin/hl7/peers")  # reading admin pages needs no fresh password
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    peer = {"csrf_token": token, "name": "LIS", "sending_application": "LIS"}
    peer |= {"sending_facility": admin.facility.code, "facility_code": admin.facility.code}
    sent = client.post(
        "/admin/hl7/peers", data=peer, headers={"Referer": "http://localhost/admin/hl7/peers"}
    )
    assert sent.headers["Location"] == "/reauth?next=/admin/hl7/peers"

    form = client.get("/reauth?next=/admin/hl7/peers")
    assert form.status_code == 200
    reauth_token = csrf_token(form.get_data(as_text=True))
    wrong = client.post(
        "/reauth?next=/admin/hl7/peers", data={"csrf_token": reauth_token, "password": "nope"}
    )
    assert wrong.status_code == 401
    right = client.post(
        "/reauth?next=/admin/hl7/peers", data={"csrf_token": reauth_token, "password": PASSWORD}
    )
    assert (right.status_code, right.headers["Location"]) == (302, "/admin/hl7/peers")
    with client.session_transaction() as session:
        assert time.time() - session["reauth_at"] < 5
    # Now the same form goes through to the view.
    again = client.post("/admin/hl7/peers", data=peer)
    assert not again.headers.get("Location", "").startswith("/reauth")

    events = db_session.scalars(
        select(AuditEvent).where(AuditEvent.user_id == admin.id).order_by(AuditEvent.id)
    ).all()
    trail = [(e.action, e.outcome, e.detail) for e in events[:3]]
    assert trail == [
        (AuditAction.LOGIN, AuditOutcome.SUCCESS, "web"),
        (AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE, "reauth"),
        (AuditAction.LOGIN, AuditOutcome.SUCCESS, "reauth"),
    ]


def test_reauth_only_redirects_to_this_site(client, db_session):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    token = csrf_token(client.get("/reauth").get_data(as_text=True))
    response = client.post(
        "/reauth?next=//evil.example/", data={"csrf_token": token, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/"


def test_non_admins_are_refused_by_the_view_not_sent_to_reauth(client, db_session):
    doctor = UserFactory(roles=(Role.DOCTOR,))
    log_in(client, doctor.username)
    token = csrf_token(client.get("/").get_data(as_text=True))
    _move_clock(client, reauth_at=3600)
    response = client.post("/admin/billing/params", data={"csrf_token": token})
    assert response.status_code == 403


def test_admin_api_writes_named_in_the_list_exist(app):
    endpoints = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    for endpoint in ADMIN_API_WRITES:
        assert endpoint in endpoints, endpoint
        assert endpoints[endpoint].methods & WRITE_METHODS


def test_admin_rest_writes_need_a_fresh_token(client, db_session):
    admin = UserFactory(roles=(Role.ADMIN,))
    headers = _bearer(client, admin.username)
    # A merge of records that do not exist: 404 once past the re-authentication gate.
    fresh = client.post("/api/v1/patient-merges/999999/undo", headers=headers)
    assert fresh.status_code == 404

    # The token was issued 16 minutes ago (the default window is 15).
    db_session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == admin.id)
        .values(created_at=utcnow() - dt.timedelta(minutes=16))
    )
    db_session.flush()
    stale = client.post("/api/v1/patient-merges/999999/undo", headers=headers)
    assert stale.status_code == 401
    assert 'error="insufficient_user_authentication"' in stale.headers["WWW-Authenticate"]
    assert 'max_age="900"' in stale.headers["WWW-Authenticate"]
    assert stale.get_json()["type"].endswith("reauthentication-required")
    # Reads with the same token still work, and a new token is fresh again.
    assert client.get("/api/v1/billing/params", headers=headers).status_code == 200
    new = _bearer(client, admin.username)
    assert client.post("/api/v1/patient-merges/999999/undo", headers=new).status_code == 404


def test_admin_api_writes_with_a_cookie_need_a_recent_password(client, db_session):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    token = csrf_token(client.get("/").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    assert client.post("/api/v1/patient-merges/999999/undo", headers=headers).status_code == 404
    _move_clock(client, reauth_at=16 * 60)
    stale = client.post("/api/v1/patient-merges/999999/undo", headers=headers)
    assert stale.status_code == 401
    assert stale.mimetype == "application/problem+json"
