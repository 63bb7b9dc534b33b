"""Health checks, security headers, request ids and logs without patient data."""

import json
import logging

from sqlalchemy import text

from his.logging import drop_phi, get_logger
from his.models import Role
from tests.factories import PatientFactory, UserFactory


def test_healthz(client, db_session):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database_and_schema(client, db_session):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_readyz_reports_an_unmigrated_database(client, db_session, connection):
    connection.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["schema"] == "not migrated"


def test_readyz_reports_an_unreachable_database(db_session, tmp_path):
    from his import create_app
    from tests.conftest import settings_for

    app = create_app(settings_for(f"sqlite:///{tmp_path}/missing-dir/nope.sqlite3"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_security_headers_on_pages_and_api(client, db_session):
    for path in ("/login", "/api/v1/me", "/healthz"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"


def test_request_id_is_echoed_or_made(client, db_session):
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123-def-456"})
    assert given.headers["X-Request-ID"] == "abc-123-def-456"
    # An id that could smuggle text into logs is replaced.
    hostile = client.get("/healthz", headers={"X-Request-ID": "x INFO forged=line <b>"})
    assert hostile.headers["X-Request-ID"] != "x INFO forged=line <b>"
    assert len(hostile.headers["X-Request-ID"]) == 32


def test_openapi_document_and_docs_page(client, db_session):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/auth/token", "/api/v1/me", "/api/v1/facilities", "/api/v1/audit-events"):
        assert path in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    token_errors = spec["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert "application/problem+json" in token_errors["401"]["content"]
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.get_data(as_text=True)
    assert client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_request_log_line_has_request_id_and_no_patient_data(
    client, db_session, login_token, caplog
):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    patient = PatientFactory(full_name="Nguyễn Thị Bí Mật")
    headers = login_token(user.username)
    with caplog.at_level(logging.INFO, logger="his.request"):
        client.get(
            f"/api/v1/patients/{patient.id}?q=Nguyễn+Thị+Bí+Mật",
            headers={**headers, "X-Request-ID": "log-check-0001"},
        )
    [record] = [
        r
        for r in caplog.records
        if r.name == "his.request" and r.msg.get("request_id") == "log-check-0001"
    ]
    event = record.msg
    assert event["request_id"] == "log-check-0001"
    assert event["path"] == f"/api/v1/patients/{patient.id}"
    assert event["user_id"] == str(user.id)
    assert "Bí Mật" not in json.dumps(event, ensure_ascii=False)


def test_phi_keys_are_removed_from_log_events():
    event = drop_phi(None, "info", {"event": "x", "full_name": "Lê Văn A", "cccd": "0891", "ok": 1})
    assert event == {"event": "x", "full_name": "[removed]", "cccd": "[removed]", "ok": 1}


def test_logs_are_json_lines(capsys):
    from his.logging import configure_logging

    configure_logging("json", "INFO")
    get_logger("his.test").info("hello", phone="0912345678", facility="91001")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["event"] == "hello"
    assert record["phone"] == "[removed]"
    assert record["facility"] == "91001"
    assert record["level"] == "info"
