"""Every read of patient data leaves an audit row; auditors can search the trail."""

import datetime as dt

from sqlalchemy import select

from his.models import AuditAction, AuditEvent, AuditOutcome, Role
from tests.factories import FacilityFactory, PatientFactory, UserFactory, VisitFactory


def _events(db_session, action):
    return db_session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def test_reading_a_patient_is_audited(client, db_session, login_token):
    user = UserFactory(roles=(Role.DOCTOR,))
    patient = PatientFactory()
    response = client.get(
        f"/api/v1/patients/{patient.id}",
        headers={**login_token(user.username), "X-Request-ID": "req-patient-read-1"},
    )
    assert response.status_code == 200
    assert response.get_json()["birth_date"] == "1980-05-17"
    assert response.get_json()["birth_date_display"] == "17/05/1980"
    [event] = _events(db_session, AuditAction.READ)
    assert event.user_id == user.id
    assert event.username == user.username
    assert event.roles == "doctor"
    assert event.facility_id == user.facility_id
    assert (event.entity_type, event.entity_id, event.patient_id) == (
        "Patient",
        str(patient.id),
        patient.id,
    )
    assert event.outcome is AuditOutcome.SUCCESS
    assert event.source_ip == "127.0.0.1"
    assert event.request_id == "req-patient-read-1"


def test_reading_a_missing_patient_writes_no_read_row(client, db_session, login_token):
    user = UserFactory(roles=(Role.DOCTOR,))
    response = client.get("/api/v1/patients/999999", headers=login_token(user.username))
    assert response.status_code == 404
    assert _events(db_session, AuditAction.READ) == []


def test_reading_a_visit_is_audited_with_its_patient(client, db_session, login_token):
    user = UserFactory(roles=(Role.NURSE,))
    visit = VisitFactory(facility_id=user.facility_id)
    client.get(f"/api/v1/visits/{visit.id}", headers=login_token(user.username))
    [event] = _events(db_session, AuditAction.READ)
    assert (event.entity_type, event.patient_id) == ("Visit", visit.patient_id)


def test_partial_birth_dates_are_shown_as_known(client, db_session, login_token):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    year_only = PatientFactory(birth_year=1938, birth_month=None, birth_day=None)
    year_month = PatientFactory(birth_year=1941, birth_month=3, birth_day=None)
    headers = login_token(user.username)
    assert (
        client.get(f"/api/v1/patients/{year_only.id}", headers=headers).get_json()["birth_date"]
        == "1938"
    )
    assert (
        client.get(f"/api/v1/patients/{year_month.id}", headers=headers).get_json()["birth_date"]
        == "1941-03"
    )


def test_auditor_lists_and_filters_events(client, db_session, login_token):
    facility = FacilityFactory()
    doctor = UserFactory(roles=(Role.DOCTOR,), facility=facility)
    auditor = UserFactory(roles=(Role.AUDITOR,), facility=facility)
    patients = [PatientFactory() for _ in range(3)]
    doctor_headers = login_token(doctor.username)
    for patient in patients:
        client.get(f"/api/v1/patients/{patient.id}", headers=doctor_headers)
    headers = login_token(auditor.username)

    response = client.get(
        "/api/v1/audit-events",
        query_string={"action": "read", "patient_id": patients[1].id},
        headers=headers,
    )
    assert response.status_code == 200
    [event] = response.get_json()
    assert event["patient_id"] == patients[1].id
    assert event["username"] == doctor.username
    assert event["roles"] == ["doctor"]
    assert event["action"] == "read"

    reads = client.get(
        "/api/v1/audit-events",
        query_string={"user_id": doctor.id, "action": "read", "page_size": 2},
        headers=headers,
    )
    assert len(reads.get_json()) == 2
    assert '"total": 3' in reads.headers["X-Pagination"]
    # Newest first.
    ids = [e["id"] for e in reads.get_json()]
    assert ids == sorted(ids, reverse=True)

    logins = client.get(
        "/api/v1/audit-events", query_string={"action": "login"}, headers=headers
    ).get_json()
    assert {e["username"] for e in logins} == {doctor.username, auditor.username}


def test_time_window_filters(client, db_session, login_token):
    auditor = UserFactory(roles=(Role.AUDITOR,))
    headers = login_token(auditor.username)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    assert (
        client.get(
            "/api/v1/audit-events", query_string={"since": future}, headers=headers
        ).get_json()
        == []
    )
    assert (
        client.get("/api/v1/audit-events", query_string={"until": past}, headers=headers).get_json()
        == []
    )
    assert (
        len(
            client.get(
                "/api/v1/audit-events", query_string={"since": past}, headers=headers
            ).get_json()
        )
        >= 1
    )


def test_bad_filters_are_422_field_errors(client, db_session, login_token):
    auditor = UserFactory(roles=(Role.AUDITOR,))
    response = client.get(
        "/api/v1/audit-events",
        query_string={"action": "steal", "since": "yesterday", "patient_id": "x"},
        headers=login_token(auditor.username),
    )
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert set(response.get_json()["errors"]) == {"action", "since", "patient_id"}


def test_auditor_sees_their_facility_and_those_below_it(client, db_session, login_token):
    centre = FacilityFactory()
    station = FacilityFactory(parent=centre)
    elsewhere = FacilityFactory()
    for facility in (centre, station, elsewhere):
        user = UserFactory(facility=facility)
        login_token(user.username)
    auditor = UserFactory(roles=(Role.AUDITOR,), facility=centre)
    events = client.get(
        "/api/v1/audit-events",
        query_string={"action": "login", "page_size": 100},
        headers=login_token(auditor.username),
    ).get_json()
    assert {e["facility_id"] for e in events} == {centre.id, station.id}
