"""Room transfer, discharge, cancel and reopening of a visit (reception and HL7 ADT)."""

from __future__ import annotations

import itertools

import pytest

from his.errors import Conflict, NotFound, ValidationFailed
from his.models import AuditEvent, VisitStatus
from his.services import encounters, visits
from his.services.access import Principal
from tests.encounters_data import clinic, examined, today
from tests.factories import PatientFactory, RoomFactory, VisitFactory


@pytest.fixture
def setting(db_session):
    return clinic(db_session)


_numbers = itertools.count(100)


def _waiting(setting, **extra):
    return VisitFactory(
        facility_id=setting.facility.id,
        patient_id=PatientFactory().id,
        room_id=setting.room.id,
        queue_date=today(),
        queue_number=next(_numbers),
        status=VisitStatus.WAITING,
        **extra,
    )


def test_transfer_gives_a_number_in_the_new_room(db_session, setting):
    visit = _waiting(setting)
    other = RoomFactory(department=setting.room.department)
    who = Principal.for_user(setting.receptionist)
    moved = visits.transfer_visit(db_session, who, visit.id, other.id)
    assert (moved.room_id, moved.queue_number, moved.queue_date) == (other.id, 1, today())
    second = _waiting(setting)
    assert visits.transfer_visit(db_session, who, second.id, other.id).queue_number == 2
    trail = db_session.query(AuditEvent).filter_by(entity_type="Visit", entity_id=str(visit.id))
    assert any(f"-> {other.id}" in (e.detail or "") for e in trail)


def test_transfer_only_to_a_room_of_the_facility(db_session, setting):
    visit = _waiting(setting)
    elsewhere = RoomFactory()
    with pytest.raises(ValidationFailed) as refused:
        visits.transfer_visit(
            db_session, Principal.for_user(setting.receptionist), visit.id, elsewhere.id
        )
    assert "room_id" in refused.value.errors
    assert db_session.get(type(visit), visit.id).room_id == setting.room.id


def test_discharge_waits_for_the_examination_to_be_signed(db_session, setting):
    encounter = examined(db_session, setting)
    who = Principal.for_user(setting.receptionist)
    with pytest.raises(Conflict):
        visits.discharge_visit(db_session, who, encounter.visit_id)
    plain = _waiting(setting)
    closed = visits.discharge_visit(db_session, who, plain.id)
    assert closed.status is VisitStatus.FINISHED and closed.closed_at is not None
    with pytest.raises(Conflict):
        visits.discharge_visit(db_session, who, plain.id)
    reopened = visits.undo_discharge(db_session, who, plain.id)
    assert reopened.status is VisitStatus.WAITING and reopened.closed_at is None


def test_cancel_only_without_an_examination(db_session, setting):
    who = Principal.for_user(setting.receptionist)
    encounter = examined(db_session, setting)
    with pytest.raises(Conflict):
        visits.cancel_visit(db_session, who, encounter.visit_id)
    plain = _waiting(setting)
    assert visits.cancel_visit(db_session, who, plain.id).status is VisitStatus.CANCELLED
    with pytest.raises(Conflict):
        visits.undo_discharge(db_session, who, plain.id)


def test_another_facilitys_visit_is_not_found(db_session, setting):
    stranger = clinic(db_session)
    visit = _waiting(setting)
    with pytest.raises(NotFound):
        visits.cancel_visit(db_session, Principal.for_user(stranger.receptionist), visit.id)


def test_a_panel_keeps_one_current_result_per_analyte(db_session, setting):
    encounter = examined(db_session, setting)
    doctor, lab = Principal.for_user(setting.doctor), Principal.for_user(setting.lab)
    service = next(s for s in setting.services.values() if s.kind.value == "lab")
    order = encounters.add_order(db_session, doctor, encounter.id, service.code)
    encounters.enter_result(db_session, lab, order.id, "7.2", "10*9/L", code="6690-2", name="WBC")
    encounters.enter_result(db_session, lab, order.id, "4.5", "10*12/L", code="789-8", name="RBC")
    fixed = encounters.enter_result(
        db_session, lab, order.id, "7.5", "10*9/L", code="6690-2", name="WBC"
    )
    current = {r.code: r.value for r in encounters.current_results(order)}
    assert current == {"6690-2": "7.5", "789-8": "4.5"}
    assert fixed.supersedes_id is not None
