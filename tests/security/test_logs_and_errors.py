"""No patient data in the logs, and no stack trace or SQL in error responses.

A realistic day in small: a receptionist registers a patient (name, CCCD, phone, BHYT card,
address), searches for them by each, reads the record and opens a visit; a FHIR client reads
and searches; a laboratory sends an ADT^A04 for another patient over the HL7 ingest path; one
registration is refused for a wrong CCCD and one as a duplicate; and three failures nobody
planned for (an exception, a unique-constraint violation, SQL the database refuses) hit REST
and FHIR. Every log line that flow writes is rendered by the production JSON formatter, and
none may hold any of the two patients' data. Error bodies may hold no traceback, SQL, table
or exception class name.

The access log is ``his.request``: method, path (no query string), status, user id. The FHIR
search URL, the one place a standard puts identifiers in a GET, is therefore not logged either.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from sqlalchemy import text

from his.context import db_session as request_session
from his.db import Database
from his.hl7v2.ack import parse_ack
from his.hl7v2.inbound import Receiver
from his.logging import configure_logging
from his.models import Hl7Peer, IdentifierType, PatientIdentifier, PeerMode, Role
from his.text import fold_vi
from tests.encounters_data import clinic
from tests.factories import UserFactory
from tests.hl7v2.test_inbound import ADDRESS, PHONE, a04

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"

# The patient registered through REST.
NAME = "Hoàng Thị Mỹ Duyên"
CCCD = "079190012345"  # Hồ Chí Minh City, female, born 1990
PHONE_NATIONAL = "0987654321"
CARD = "GD4790123456789"
INSURANCE_NUMBER = "0123456789"
LINE = "Số 77 đường Lý Chính Thắng"
# The patient the laboratory sends over HL7 (the rest of the message is tests.hl7v2's sample).
HL7_NAME = "Trịnh Văn Khải"
HL7_CCCD = "001219054321"
SECRETS = [
    NAME,
    fold_vi(NAME),
    NAME.upper(),
    CCCD,
    PHONE_NATIONAL,
    PHONE_NATIONAL[1:],
    CARD,
    INSURANCE_NUMBER,
    LINE,
    HL7_NAME,
    fold_vi(HL7_NAME),
    "Trịnh^Văn Khải",
    HL7_CCCD,
    PHONE.rsplit("^", 1)[1],  # the HL7 patient's subscriber number
    ADDRESS.split("^", 1)[0],  # and street
    "Đỗ Văn Nam",  # the HL7 patient's father (NK1)
]
LEAKED_INTERNALS = [
    "Traceback",
    "SELECT",
    "INSERT",
    "UPDATE ",
    "patient_identifier",
    "fhir_resource",
    "no_such_column",
    "Error:",
    "IntegrityError",
    "OperationalError",
    "ProgrammingError",
    "RuntimeError",
    "sqlalchemy",
    "psycopg",
    "sqlite",
    ".py",
]


@pytest.fixture
def app(make_app, db_session):
    """The test app, with three routes only this test has: failures nobody planned for."""
    app = make_app()

    @app.get("/api/v1/test-only/boom")
    def boom():
        raise RuntimeError("an unexpected failure")

    @app.get("/api/v1/test-only/second-owner/<int:owner_id>")
    def second_owner(owner_id: int):
        # The service refuses a second owner of a CCCD; written directly, the database's
        # unique constraint does, with the CCCD in the failed statement's parameters.
        session = request_session()
        session.add(PatientIdentifier(patient_id=owner_id, type=IdentifierType.CCCD, value=CCCD))
        session.flush()
        return {}

    @app.get("/api/v1/test-only/bad-sql")
    def bad_sql():
        statement = text("SELECT full_name FROM patient WHERE no_such_column = :value")
        request_session().execute(statement, {"value": CCCD})
        return {}

    return app


@pytest.fixture
def log_text(app):
    """Everything logged while the test runs, as the production JSON lines (DEBUG and up)."""
    configure_logging("json", "DEBUG")
    buffer = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(buffer)
    yield buffer
    configure_logging("console", "INFO")  # as the test settings have it


def assert_no_internals(response) -> None:
    body = response.get_data(as_text=True)
    for word in LEAKED_INTERNALS:
        assert word not in body, (word, body)


def test_a_day_of_work_leaves_no_patient_data_in_the_logs(
    app, client, db_session, login_token, log_text, engine, session_factory
):
    site = clinic(db_session)
    db_session.add(
        Hl7Peer(
            name="lis",
            facility_id=site.facility.id,
            sending_application="LIS",
            sending_facility="BV",
            version="2.5.1",
            events="",
            mode=PeerMode.APPLY,
        )
    )
    db_session.flush()
    reception = login_token(site.receptionist.username)
    fhir = {**login_token(UserFactory(roles=(Role.DOCTOR,), facility=site.facility).username)}
    fhir["Accept"] = FHIR_JSON

    body = {
        "full_name": NAME.upper(),
        "sex": "female",
        "birth_date": "1990-03-04",
        "cccd": CCCD,
        "phone": "+84 987 654 321",
        "address": {"line": LINE, "province_code": "79"},
        "insurance": {
            "card_number": CARD,
            "valid_from": "2026-01-01",
            "valid_to": "2026-12-31",
            "registered_facility_code": "79001",
        },
    }
    created = client.post("/api/v1/patients", json=body, headers=reception)
    assert created.status_code == 201, created.get_json()
    patient_id = created.get_json()["id"]
    for query in (NAME, fold_vi(NAME), CCCD, PHONE_NATIONAL, CARD, INSURANCE_NUMBER):
        found = client.get("/api/v1/patients", query_string={"q": query}, headers=reception)
        assert [p["id"] for p in found.get_json()] == [patient_id], query
    assert client.get(f"/api/v1/patients/{patient_id}", headers=reception).status_code == 200
    visit = client.post(
        "/api/v1/visits",
        json={"patient_id": patient_id, "room_id": site.room.id},
        headers=reception,
    )
    assert visit.status_code == 201, visit.get_json()

    assert client.get(f"/fhir/Patient/{patient_id}", headers=fhir).status_code == 200
    for query in ({"identifier": CCCD}, {"name": NAME}, {"phone": PHONE_NATIONAL}):
        bundle = client.get("/fhir/Patient", query_string=query, headers=fhir).get_json()
        assert bundle.get("entry"), query

    with app.app_context():
        receiver = Receiver(Database(engine, session_factory), app.config["HIS_SETTINGS"])
        message = a04(site.room, control="LOG1", cccd=HL7_CCCD, name="Trịnh^Văn Khải")
        ack = parse_ack(receiver.handle(message))
    assert ack.code in ("AA", "CA"), ack.errors
    with app.app_context():
        wrong = a04(site.room, control="LOG2", cccd="001019054321", name="Trịnh^Văn Khải")
        assert parse_ack(receiver.handle(wrong)).code == "AE"  # the CCCD says born in 1900s

    refused = client.post(
        "/api/v1/patients", json={**body, "cccd": "079090012345"}, headers=reception
    )
    assert refused.status_code == 422  # digit 4 says male
    duplicate = client.post("/api/v1/patients", json=body, headers=reception)
    assert duplicate.status_code == 409

    failed = client.get(f"/api/v1/test-only/second-owner/{patient_id}", headers=reception)
    assert failed.status_code == 500
    assert client.get("/api/v1/test-only/bad-sql", headers=reception).status_code == 500

    lines = log_text.getvalue().splitlines()
    assert len(lines) > 20
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert {r["event"] for r in records} >= {"request", "unhandled_exception"}
    logged = log_text.getvalue()
    for secret in SECRETS:
        assert secret not in logged, secret
    # The search URLs were logged by path only.
    searches = [r for r in records if r.get("path") in ("/api/v1/patients", "/fhir/Patient")]
    assert searches and all("?" not in r["path"] for r in searches)


def test_an_unexpected_exception_is_a_500_problem_without_internals(client, db_session):
    response = client.get("/api/v1/test-only/boom")
    assert response.status_code == 500 and response.mimetype == PROBLEM
    assert response.get_json()["request_id"] == response.headers["X-Request-ID"]
    assert_no_internals(response)


def test_database_errors_are_answered_without_sql_tables_or_exception_names(
    client, db_session, login_token
):
    from tests.factories import PatientFactory

    owner = PatientFactory()
    db_session.flush()
    reception = login_token(UserFactory(roles=(Role.RECEPTIONIST,)).username)
    client.get(f"/api/v1/test-only/second-owner/{owner.id}", headers=reception)
    # The second one breaks the unique constraint (type, system, value).
    unique = client.get(f"/api/v1/test-only/second-owner/{owner.id}", headers=reception)
    bad = client.get("/api/v1/test-only/bad-sql", headers=reception)
    for response in (unique, bad):
        assert response.status_code == 500 and response.mimetype == PROBLEM, response.data
        assert_no_internals(response)
        assert CCCD not in response.get_data(as_text=True)


def test_fhir_errors_are_operation_outcomes_without_internals(
    client, db_session, login_token, monkeypatch
):
    from his.fhirapi import search

    def failing_run(session, access, query):
        # What a broken query would do: SQL the database refuses, with a client's value in it.
        session.execute(text("SELECT rid FROM fhir_resource WHERE nope = :v"), {"v": CCCD})

    monkeypatch.setattr(search, "run", failing_run)
    headers = {**login_token(UserFactory(roles=(Role.DOCTOR,)).username), "Accept": FHIR_JSON}
    response = client.get("/fhir/Patient", query_string={"identifier": CCCD}, headers=headers)
    assert response.status_code == 500 and response.mimetype == FHIR_JSON
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert_no_internals(response)
    assert CCCD not in response.get_data(as_text=True)
