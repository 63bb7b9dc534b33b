"""Roles and facilities decide what a user reaches."""

import pytest
from sqlalchemy import select

from his.models import AuditAction, AuditEvent, AuditOutcome, Role
from tests.factories import FacilityFactory, PatientFactory, UserFactory, VisitFactory


@pytest.mark.parametrize(
    "role", [Role.RECEPTIONIST, Role.DOCTOR, Role.NURSE, Role.PHARMACIST, Role.CASHIER]
)
def test_clinical_roles_cannot_read_the_audit_trail(client, db_session, login_token, role):
    user = UserFactory(roles=(role,))
    response = client.get("/api/v1/audit-events", headers=login_token(user.username))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == 403
    assert body["type"].endswith("/forbidden")
    assert body["errors"] == {"role": ["admin, auditor"]}


def test_a_refusal_is_audited(client, db_session, login_token):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    client.get("/api/v1/audit-events", headers=login_token(user.username))
    denied = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.ACCESS_DENIED)
    ).one()
    assert denied.outcome is AuditOutcome.DENIED
    assert denied.user_id == user.id
    assert denied.detail == "GET /api/v1/audit-events"


def test_auditor_reaches_the_audit_trail(client, db_session, login_token):
    user = UserFactory(roles=(Role.AUDITOR,))
    assert client.get("/api/v1/audit-events", headers=login_token(user.username)).status_code == 200


def test_auditor_cannot_read_patients(client, db_session, login_token):
    auditor = UserFactory(roles=(Role.AUDITOR,))
    patient = PatientFactory()
    response = client.get(f"/api/v1/patients/{patient.id}", headers=login_token(auditor.username))
    assert response.status_code == 403


def test_users_see_only_their_own_facilitys_visits(client, db_session, login_token):
    hospital, station = FacilityFactory(), FacilityFactory()
    mine = [VisitFactory(facility_id=hospital.id) for _ in range(3)]
    theirs = VisitFactory(facility_id=station.id)
    user = UserFactory(roles=(Role.RECEPTIONIST,), facility=hospital)
    headers = login_token(user.username)

    listed = client.get("/api/v1/visits", headers=headers)
    assert listed.status_code == 200
    assert sorted(v["id"] for v in listed.get_json()) == sorted(v.id for v in mine)
    assert '"total": 3' in listed.headers["X-Pagination"]

    assert client.get(f"/api/v1/visits/{mine[0].id}", headers=headers).status_code == 200
    # Another facility's visit is reported missing, so its existence does not leak.
    other = client.get(f"/api/v1/visits/{theirs.id}", headers=headers)
    assert other.status_code == 404
    assert other.mimetype == "application/problem+json"


def test_the_patient_index_is_shared_across_facilities(client, db_session, login_token):
    station = FacilityFactory()
    patient = PatientFactory(registered_facility_id=station.id)
    hospital_user = UserFactory(roles=(Role.RECEPTIONIST,), facility=FacilityFactory())
    response = client.get(
        f"/api/v1/patients/{patient.id}", headers=login_token(hospital_user.username)
    )
    assert response.status_code == 200
    assert response.get_json()["full_name"] == patient.full_name


def test_facilities_list(client, db_session, login_token):
    parent = FacilityFactory(code="91010", care_level="basic", legacy_tier="district")
    FacilityFactory(code="91011", parent=parent, commune_code="30313")
    user = UserFactory(facility=parent)
    response = client.get("/api/v1/facilities", headers=login_token(user.username))
    assert response.status_code == 200
    by_code = {f["code"]: f for f in response.get_json()}
    assert by_code["91010"]["care_level"] == "basic"
    assert by_code["91010"]["legacy_tier"] == "district"
    assert by_code["91010"]["parent"] is None
    assert by_code["91011"]["parent"]["code"] == "91010"
    assert by_code["91011"]["commune_code"] == "30313"
    assert by_code["91011"]["province_code"] == "91"
