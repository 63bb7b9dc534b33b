"""The outbox: our changes become outbound rows in the same transaction, for the subscribed
peers only, never echoed to the peer a change came from, and gone with a rollback."""

from __future__ import annotations

from sqlalchemy import select

from his.hl7v2 import outbox
from his.hl7v2.codec import parse
from his.models import Hl7Outbound, PatientMerge, VisitStatus
from tests.factories import FacilityFactory, PatientFactory, RoomFactory
from tests.hl7v2.outbound_data import add_peer, visit_in_room


def _rows(session, peer=None):
    stmt = select(Hl7Outbound).order_by(Hl7Outbound.id)
    if peer is not None:
        stmt = stmt.where(Hl7Outbound.peer_id == peer.id)
    return session.scalars(stmt).all()


def test_patient_created_gives_a28_to_adt_subscribers_only(db_session):
    facility = FacilityFactory()
    adt = add_peer(db_session, facility, name="HIS-TINH", events="ADT")
    lab = add_peer(db_session, facility, name="LIS", events="OML")
    db_session.commit()
    assert _rows(db_session) == []  # a peer row is no event

    patient = PatientFactory(family_name="Đặng", middle_name="Thị", given_name="Ửng")
    db_session.commit()
    rows = _rows(db_session)
    assert [(r.peer_id, r.event, r.message_type) for r in rows] == [
        (adt.id, "A28", "ADT^A28^ADT_A05")
    ]
    row = rows[0]
    assert row.patient_key == f"p{patient.id}" and row.status.value == "pending"
    assert len(row.control_id) == 20 and row.next_attempt_at is not None
    msg = parse(row.text.encode())
    assert msg.get("MSH-10") == row.control_id
    assert msg.get("MSH-4") == facility.code and msg.get("MSH-5") == "HIS-TINH"
    assert msg.get("PID-5-2") == "Ửng"
    assert _rows(db_session, lab) == []


def test_rollback_leaves_nothing(db_session):
    facility = FacilityFactory()
    add_peer(db_session, facility, events="ADT")
    db_session.commit()
    PatientFactory()
    db_session.rollback()
    db_session.commit()
    assert _rows(db_session) == []


def test_change_from_a_peer_is_not_echoed_to_it(db_session):
    facility = FacilityFactory()
    origin = add_peer(db_session, facility, name="ORIGIN", events="ADT")
    other = add_peer(db_session, facility, name="OTHER", events="ADT")
    db_session.commit()
    db_session.info[outbox.ORIGIN_PEER] = origin.id
    PatientFactory()
    db_session.commit()
    assert [r.peer_id for r in _rows(db_session)] == [other.id]


def test_visit_life_cycle(db_session):
    facility = FacilityFactory()
    peer = add_peer(db_session, facility, events="ADT", version="2.3")
    patient = PatientFactory()
    db_session.commit()
    visit = visit_in_room(db_session, patient, facility)
    db_session.commit()
    first_room = visit.room
    visit.room_id = RoomFactory(department__facility=facility).id
    db_session.commit()
    visit.status = VisitStatus.FINISHED
    db_session.commit()
    visit.status = VisitStatus.WAITING  # finish undone
    db_session.commit()
    visit.status = VisitStatus.CANCELLED
    db_session.commit()
    patient.phone = "0987654321"
    db_session.commit()
    patient.last_visit_at = visit.opened_at  # bookkeeping only: no A31
    db_session.commit()
    rows = _rows(db_session, peer)
    assert [r.event for r in rows] == ["A28", "A04", "A02", "A03", "A13", "A11", "A31"]
    a02 = parse(rows[2].text.encode())
    assert a02.get("PV1-6-2") == first_room.code
    assert "|ADT^A02|" in rows[2].text  # v2.3: no structure component
    assert {r.patient_key for r in rows} == {f"p{patient.id}"}


def test_merge_gives_a40_and_no_a31(db_session):
    from his.services.access import Principal
    from his.services.patients import merge_patients

    facility = FacilityFactory()
    peer = add_peer(db_session, facility, events="ADT")
    survivor, merged = PatientFactory(), PatientFactory()
    db_session.commit()
    merge_patients(db_session, Principal.system(), survivor.id, merged.id)
    db_session.commit()
    rows = _rows(db_session, peer)
    assert [r.event for r in rows] == ["A28", "A28", "A40"]
    assert parse(rows[-1].text.encode()).get("MRG-1-1") == merged.mrn
    assert db_session.scalar(select(PatientMerge.id)) is not None


def test_no_events_writes_nothing(db_session):
    facility = FacilityFactory()
    add_peer(db_session, facility, events="ADT,OML,RDE")
    db_session.commit()
    db_session.commit()
    assert _rows(db_session) == []
    assert outbox.pending_events(db_session) == ()
