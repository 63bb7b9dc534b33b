"""Opening visits, queue numbers and the room queues through the REST API."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from his.localtime import local_today
from his.models import AuditAction, AuditEvent, Role, Visit
from tests.factories import (
    CoverageFactory,
    FacilityFactory,
    PatientFactory,
    RoomFactory,
    UserFactory,
    VisitFactory,
)


@pytest.fixture
def setting(db_session, login_token):
    facility = FacilityFactory(code="91001")
    room = RoomFactory(department__facility=facility, name="Phòng khám Nội 1")
    user = UserFactory(roles=(Role.RECEPTIONIST,), facility=facility)
    return facility, room, login_token(user.username)


def _open(client, headers, **body):
    return client.post("/api/v1/visits", json=body, headers=headers)


def test_open_visit_gives_code_and_queue_number(client, setting, db_session):
    _, room, headers = setting
    first, second = PatientFactory(), PatientFactory()
    a = _open(client, headers, patient_id=first.id, room_id=room.id)
    b = _open(client, headers, patient_id=second.id, room_id=room.id)
    assert a.status_code == 201, a.get_json()
    body = a.get_json()
    assert body["queue_number"] == 1 and b.get_json()["queue_number"] == 2
    today = local_today()
    assert body["visit_code"] == f"91001{today:%y%m%d}00001"
    assert b.get_json()["visit_code"].endswith("00002")
    assert body["status"] == "waiting"
    assert body["visit_type"] == "outpatient" and body["payment"] == "fee"
    assert body["queue_date"] == today.isoformat()
    db_session.expire_all()
    # Kept on the patient for search ranking.
    assert first.last_visit_at is not None
    [event] = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == AuditAction.CREATE, AuditEvent.patient_id == first.id
        )
    ).all()
    assert event.entity_type == "Visit"


def test_each_room_counts_on_its_own(client, setting, db_session):
    _, room, headers = setting
    other = RoomFactory(department=room.department)
    p1, p2 = PatientFactory(), PatientFactory()
    assert _open(client, headers, patient_id=p1.id, room_id=room.id).get_json()["queue_number"] == 1
    assert (
        _open(client, headers, patient_id=p2.id, room_id=other.id).get_json()["queue_number"] == 1
    )


def test_a_refused_visit_leaves_no_gap(client, setting, db_session):
    _, room, headers = setting
    patient = PatientFactory()
    assert (
        _open(client, headers, patient_id=patient.id, room_id=room.id, payment="bhyt").status_code
        == 422
    )
    assert (
        _open(client, headers, patient_id=patient.id, room_id=room.id).get_json()["queue_number"]
        == 1
    )


def test_bhyt_needs_a_valid_card(client, setting, db_session):
    _, room, headers = setting
    no_card = PatientFactory()
    refused = _open(client, headers, patient_id=no_card.id, room_id=room.id, payment="bhyt")
    assert refused.status_code == 422
    assert "payment" in refused.get_json()["errors"]
    expired = PatientFactory()
    CoverageFactory(patient=expired, valid_to=local_today() - dt.timedelta(days=1))
    refused = _open(client, headers, patient_id=expired.id, room_id=room.id, payment="bhyt")
    assert refused.status_code == 422
    covered = PatientFactory()
    CoverageFactory(patient=covered, valid_to=local_today() + dt.timedelta(days=30))
    assert (
        _open(client, headers, patient_id=covered.id, room_id=room.id, payment="bhyt").status_code
        == 201
    )


def test_referral_and_priority(client, setting, db_session):
    _, room, headers = setting
    patient = PatientFactory()
    body = _open(
        client,
        headers,
        patient_id=patient.id,
        room_id=room.id,
        referral={
            "from_facility_code": "91011",
            "letter_number": "123/GCT",
            "date": local_today().isoformat(),
            "diagnosis": "J18.9 Viêm phổi",
        },
        priority_reason="pregnant",
    ).get_json()
    assert body["referral"]["from_facility_code"] == "91011"
    assert body["priority_reason"] == "pregnant"


def test_bad_referral_and_room_are_field_errors(client, setting, db_session):
    _, _, headers = setting
    patient = PatientFactory()
    elsewhere = RoomFactory()
    response = _open(
        client,
        headers,
        patient_id=patient.id,
        room_id=elsewhere.id,
        referral={
            "from_facility_code": "9101",
            "letter_number": "x",
            "date": (local_today() + dt.timedelta(days=2)).isoformat(),
        },
    )
    assert response.status_code == 422
    assert {"room_id", "referral.from_facility_code", "referral.date"} <= set(
        response.get_json()["errors"]
    )
    assert db_session.scalar(select(func.count()).select_from(Visit)) == 0


def test_children_and_elderly_get_priority_by_law(client, setting, db_session):
    _, room, headers = setting
    child = PatientFactory(birth_year=local_today().year - 2)
    elder = PatientFactory(birth_year=local_today().year - 80, birth_month=None, birth_day=None)
    adult = PatientFactory(birth_year=1990)
    reasons = [
        _open(client, headers, patient_id=p.id, room_id=room.id).get_json()["priority_reason"]
        for p in (child, elder, adult)
    ]
    assert reasons == ["child_under_6", "age_75", None]


def test_the_same_patient_twice_in_a_room_is_409(client, setting, db_session):
    _, room, headers = setting
    patient = PatientFactory()
    first = _open(client, headers, patient_id=patient.id, room_id=room.id).get_json()
    again = _open(client, headers, patient_id=patient.id, room_id=room.id)
    assert again.status_code == 409
    assert again.get_json()["errors"]["visit_id"] == [str(first["id"])]


def test_queue_calls_priority_first_keeping_numbers(client, setting, db_session):
    _, room, headers = setting
    patients = [PatientFactory(birth_year=1990) for _ in range(3)]
    _open(client, headers, patient_id=patients[0].id, room_id=room.id)
    _open(client, headers, patient_id=patients[1].id, room_id=room.id)
    _open(client, headers, patient_id=patients[2].id, room_id=room.id, priority_reason="disability")
    queue = client.get(f"/api/v1/queues/{room.id}", headers=headers)
    assert queue.status_code == 200
    waiting = queue.get_json()["waiting"]
    assert [w["queue_number"] for w in waiting] == [3, 1, 2]
    assert waiting[0]["priority_reason"] == "disability"
    assert queue.get_json()["room"]["name"] == "Phòng khám Nội 1"


def test_queue_of_another_facilitys_room_is_404(client, setting, db_session):
    _, _, headers = setting
    assert client.get(f"/api/v1/queues/{RoomFactory().id}", headers=headers).status_code == 404


def test_rooms_of_the_users_facility(client, setting, db_session):
    _, room, headers = setting
    RoomFactory()  # another facility's
    rooms = client.get("/api/v1/rooms", headers=headers).get_json()
    assert [r["id"] for r in rooms] == [room.id]
    assert rooms[0]["department_name"] == "Khoa Khám bệnh"


def test_merged_patient_cannot_get_a_visit(client, setting, db_session):
    _, room, headers = setting
    survivor = PatientFactory()
    merged = PatientFactory(merged_into_id=survivor.id)
    response = _open(client, headers, patient_id=merged.id, room_id=room.id)
    assert response.status_code == 409


def test_visit_codes_are_immutable_and_unique(db_session):
    VisitFactory(visit_code="X1")
    with pytest.raises(Exception, match=r"UNIQUE|unique|duplicate"), db_session.begin_nested():
        VisitFactory(visit_code="X1")


def test_a_visit_code_cannot_be_changed(db_session):
    visit = VisitFactory(visit_code="X2")
    with pytest.raises(ValueError, match="never changes"):
        visit.visit_code = "X3"
