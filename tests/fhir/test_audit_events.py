"""AuditEvent served live from the audit table: who may see it, what it says, how it is
searched and paged."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from urllib.parse import urlsplit

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle

from his.db import utcnow
from his.fhirapi import systems
from his.fhirapi.searchparams import params_of
from his.models import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    FhirAccessToken,
    FhirClient,
    Role,
)
from tests.factories import FacilityFactory, PatientFactory, UserFactory


@pytest.fixture
def people(db_session, login_token):
    """A doctor and an auditor of one facility, an admin of it, with their tokens."""
    facility = FacilityFactory()

    def person(role):
        user = UserFactory(roles=(role,), facility=facility)
        token = login_token(user.username)["Authorization"].removeprefix("Bearer ")
        return user, token

    return facility, person(Role.DOCTOR), person(Role.AUDITOR), person(Role.ADMIN)


def entries(bundle):
    Bundle.model_validate(bundle)
    found = [e["resource"] for e in bundle.get("entry", [])]
    for resource in found:
        FhirAuditEvent.model_validate(resource)
    return found


def test_a_fhir_read_is_an_audit_event_naming_the_caller(db_session, fhir_get, people):
    _facility, (doctor, doctor_token), (_auditor, auditor_token), _admin = people
    patient = PatientFactory()
    db_session.commit()
    assert fhir_get(f"/fhir/Patient/{patient.id}", doctor_token).status_code == 200

    response = fhir_get(f"/fhir/AuditEvent?patient=Patient/{patient.id}&action=R", auditor_token)
    assert response.status_code == 200, response.json
    [event] = entries(response.json)
    assert event["action"] == "R" and event["outcome"] == "0"
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {
        "system": systems.RESTFUL_INTERACTION,
        "code": "read",
        "display": "read",
    }
    [agent] = event["agent"]
    assert agent["requestor"] is True
    assert agent["who"]["reference"] == f"Practitioner/{doctor.id}"
    assert agent["who"]["identifier"] == {"system": systems.USERNAME, "value": doctor.username}
    assert event["entity"][0]["what"] == {"reference": f"Patient/{patient.id}"}
    assert event["source"]["observer"] == {"reference": f"Organization/{doctor.facility_id}"}

    one = fhir_get(f"/fhir/AuditEvent/{event['id']}", auditor_token)
    assert one.status_code == 200 and one.headers["ETag"] == 'W/"1"'
    FhirAuditEvent.model_validate(one.json)
    assert one.json["meta"]["versionId"] == "1"
    assert fhir_get(f"/fhir/AuditEvent/{event['id']}/_history/1", auditor_token).status_code == 200
    assert fhir_get(f"/fhir/AuditEvent/{event['id']}/_history/2", auditor_token).status_code == 404
    history = fhir_get(f"/fhir/AuditEvent/{event['id']}/_history", auditor_token).json
    assert history["type"] == "history" and len(entries(history)) == 1

    # By the caller: as Practitioner, by username, and by name.
    for query in (
        f"agent=Practitioner/{doctor.id}",
        f"agent:identifier={systems.USERNAME}|{doctor.username}",
        f"altid={doctor.username}",
        f"agent-name={doctor.username}",
    ):
        found = entries(
            fhir_get(f"/fhir/AuditEvent?{query}&entity-type=Patient", auditor_token).json
        )
        assert [e["id"] for e in found] == [event["id"]], query
    # The auditor's own reads of the trail are on the trail too.
    mine = fhir_get("/fhir/AuditEvent?entity-type=AuditEvent&action=R", auditor_token).json
    assert entries(mine)


def test_only_auditors_and_administrators_see_the_trail(db_session, fhir_get, people):
    _facility, (_doctor, doctor_token), (_auditor, auditor_token), (_admin, admin_token) = people
    denied = fhir_get("/fhir/AuditEvent", doctor_token)
    assert denied.status_code == 403
    assert denied.json["resourceType"] == "OperationOutcome"
    assert fhir_get("/fhir/AuditEvent/1", doctor_token).status_code == 403
    assert fhir_get("/fhir/AuditEvent", auditor_token).status_code == 200
    assert fhir_get("/fhir/AuditEvent", admin_token).status_code == 200
    # Logins are there, as User Authentication events.
    logins = fhir_get("/fhir/AuditEvent?type=110114", auditor_token).json
    assert {e["subtype"][0]["code"] for e in entries(logins)} == {"110122"}


def _row(facility_id, at, **extra):
    values = {
        "user_id": None,
        "username": "someone",
        "roles": "receptionist",
        "facility_id": facility_id,
        "action": AuditAction.READ,
        "entity_type": "Patient",
        "entity_id": "1",
        "patient_id": 1,
        "outcome": AuditOutcome.SUCCESS,
        "occurred_at": at,
    }
    values.update(extra)
    return AuditEvent(**values)


def test_search_by_date_pages_by_id_and_keeps_to_the_facilities(
    db_session, fhir_get, people, client
):
    facility, _doctor, (_auditor, auditor_token), _admin = people
    other = FacilityFactory()
    day = dt.datetime(2025, 3, 10, 3, 0, tzinfo=dt.UTC)  # 10:00 in Vietnam
    rows = [_row(facility.id, day + dt.timedelta(hours=h), username="dated") for h in range(5)]
    rows.append(_row(other.id, day, username="dated"))
    rows.append(
        _row(
            facility.id,
            day,
            username="svc",
            detail="fhir client lis-01: search",
            action=AuditAction.SEARCH,
            entity_id=None,
            outcome=AuditOutcome.DENIED,
        )
    )
    db_session.add_all(rows)
    db_session.commit()
    mine = [r.id for r in rows[:5]]

    def ids(query):
        response = fhir_get(f"/fhir/AuditEvent?{query}", auditor_token)
        assert response.status_code == 200, response.json
        return [int(e["id"]) for e in entries(response.json)]

    assert ids("agent-name=dated") == sorted(mine, reverse=True)  # not the other facility's
    assert ids("agent-name=dated&date=2025-03-10") == sorted(mine, reverse=True)
    assert ids("agent-name=dated&date=ge2025-03-10T12:00:00%2B07:00") == sorted(
        mine[2:], reverse=True
    )
    assert ids("agent-name=dated&date=lt2025-03-10T12:00:00%2B07:00") == sorted(
        mine[:2], reverse=True
    )
    assert ids("agent-name=dated&date=gt2025-03-10T04:00:00Z&date=le2025-03-10T05:00:00Z") == [
        mine[2]
    ]
    assert ids("agent-name=dated&date=2025-03-11") == []
    assert ids("agent-name=dated&_lastUpdated=le2025-03-10T03:00:00Z&_sort=-date") == [mine[0]]
    client_events = ids(f"agent:identifier={systems.FHIR_CLIENT_ID}|lis-01")
    assert client_events == [rows[-1].id]
    assert ids("outcome=4&action=E&type=rest&subtype=search-type") == [rows[-1].id]
    assert rows[-1].id not in ids("outcome=0&agent-name=svc")
    event = fhir_get(f"/fhir/AuditEvent/{rows[-1].id}", auditor_token).json
    assert event["agent"][0]["who"]["identifier"] == {
        "system": systems.FHIR_CLIENT_ID,
        "value": "lis-01",
    }
    assert fhir_get(f"/fhir/AuditEvent/{rows[5].id}", auditor_token).status_code == 404

    # Paging: newest first, two a page, each row once, following next links.
    seen, url = [], "/fhir/AuditEvent?agent-name=dated&_count=2"
    while url:
        bundle = fhir_get(url, auditor_token).json
        seen += [int(e["id"]) for e in entries(bundle)]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = None
        if following:
            parts = urlsplit(following[0])
            url = f"{parts.path}?{parts.query}"
    assert seen == sorted(mine, reverse=True)

    posted = client.post(
        "/fhir/AuditEvent/_search",
        data={"agent-name": "dated", "date": "2025-03-10"},
        headers={"Authorization": f"Bearer {auditor_token}", "Accept": "application/fhir+json"},
    )
    assert posted.status_code == 200
    assert len(entries(posted.json)) == 5


def test_bad_search_input_is_an_operation_outcome(db_session, fhir_get, people):
    _facility, _doctor, (_auditor, auditor_token), _admin = people
    for query in ("date=yesterday", "colour=blue", "_count=many", "entity=nothing", "_sort=date"):
        response = fhir_get(f"/fhir/AuditEvent?{query}", auditor_token)
        assert response.status_code == 400, query
        assert response.json["resourceType"] == "OperationOutcome"
    assert fhir_get("/fhir/AuditEvent/abc", auditor_token).status_code == 404
    declared = set(params_of("AuditEvent"))
    assert {"date", "patient", "agent", "entity-type", "action", "outcome", "type"} <= declared


def _client_token(db_session, client_id, scopes, facility_ids=None):
    """An access token as the token endpoint stores it (only its SHA-256)."""
    raw = secrets.token_urlsafe(32)
    client = FhirClient(client_id=client_id, scopes=scopes, facility_ids=facility_ids, jwks={})
    db_session.add(client)
    db_session.flush()
    db_session.add(
        FhirAccessToken(
            token_hash=hashlib.sha256(raw.encode()).hexdigest(),
            client_pk=client.id,
            scopes=scopes,
            expires_at=utcnow() + dt.timedelta(minutes=5),
        )
    )
    db_session.commit()
    return raw


def test_backend_clients_need_the_audit_event_scope_and_are_named_in_events(
    db_session, fhir_get, people
):
    facility, _doctor, (_auditor, auditor_token), _admin = people
    patient = PatientFactory()
    db_session.commit()
    reader = _client_token(db_session, "lis-reader", "system/Patient.rs", [facility.id])
    auditing = _client_token(db_session, "siem-01", "system/AuditEvent.rs", [facility.id])
    assert fhir_get(f"/fhir/Patient/{patient.id}", reader).status_code == 200
    assert fhir_get("/fhir/AuditEvent", reader).status_code == 403

    query = f"/fhir/AuditEvent?entity=Patient/{patient.id}&altid=lis-reader"
    for token in (auditing, auditor_token):
        [event] = entries(fhir_get(query, token).json)
        [agent] = event["agent"]
        assert agent["who"]["identifier"] == {
            "system": systems.FHIR_CLIENT_ID,
            "value": "lis-reader",
        }
        assert "reference" not in agent["who"]
        assert event["entity"][0]["what"] == {"reference": f"Patient/{patient.id}"}
