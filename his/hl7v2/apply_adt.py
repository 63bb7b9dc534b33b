"""ADT messages applied through the services the UI and REST use: register, update, open,
move, discharge, cancel and merge. A message names its patient by PID-3 and its visit by
PV1-19 (our visit code, MA_LK) or, without one, the patient's open visit at the peer's
facility.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from his.hl7v2.codec import Hl7Error, Message
from his.hl7v2.pid import cx_identifiers, find_patient, patient_input
from his.models import (
    Department,
    Hl7Peer,
    IdentifierType,
    Patient,
    PatientIdentifier,
    Payment,
    Role,
    Room,
    Visit,
    VisitStatus,
    VisitType,
)
from his.services import patients, visits
from his.services.access import Principal
from his.services.bhyt_check import OfflineCardChecker

# The card is checked offline (format, group, level, dates): the listener must not wait on
# the social-insurance gateway; `his bhyt recheck` verifies unverified cards later.
CARD_CHECK = OfflineCardChecker()
VISIT_TYPES = {"O": VisitType.OUTPATIENT, "E": VisitType.EMERGENCY, "I": VisitType.INPATIENT}


def _known_ids(patient: Patient) -> list[dict[str, str]]:
    return [
        {
            "system": i.type.value if i.type is not IdentifierType.EXTERNAL else i.system,
            "value": i.value,
        }
        for i in patient.identifiers
        if i.type in (IdentifierType.EXTERNAL, IdentifierType.PASSPORT, IdentifierType.CMND)
    ]


def _owner(session: Session, cx) -> int | None:
    return session.scalar(
        select(PatientIdentifier.patient_id).where(
            PatientIdentifier.type == cx.kind,
            PatientIdentifier.system == cx.system,
            PatientIdentifier.value == cx.value,
        )
    )


def upsert_patient(
    session: Session, principal: Principal, msg: Message, peer: Hl7Peer, *, create: bool
) -> Patient:
    """The patient of PID, updated with what the message says, or registered when no
    identifier names one (``create``); a possible duplicate by name and birth date is
    refused (AE), as it is at the reception desk, never silently doubled."""
    given = patient_input(session, msg, peer)
    patient = find_patient(session, given.identifiers)
    if patient is None:
        if not create:
            raise Hl7Error(
                _l("No patient has any of the identifiers in PID-3."), code=204, location="PID^1^3"
            )
        return patients.register_patient(session, principal, given.data, checker=CARD_CHECK)
    data = dict(given.data)
    # An identifier of a record merged into this patient stays on that record (it names
    # this patient through the merge): it is not moved, and not refused as taken.
    merged = {
        (i.kind, i.system, i.value)
        for i in given.identifiers
        if _owner(session, i) not in (None, patient.id)
    }
    if data.get("cccd") and (IdentifierType.CCCD, "", data["cccd"]) in merged:
        del data["cccd"]
    if "identifiers" in data:
        # The peer's identifiers are added to the ones other systems gave, never replace them.
        known = _known_ids(patient)
        new = [
            i
            for i in data["identifiers"]
            if i not in known and not any(m[2] == i["value"] for m in merged)
        ]
        data["identifiers"] = known + new
    if data:
        patient = patients.update_patient(
            session, principal, patient.id, data, expected_version=None, checker=CARD_CHECK
        )
    return patient


def _room(session: Session, principal: Principal, msg: Message) -> Room:
    pv1 = msg.segment("PV1")
    department, room_code = (pv1.get(3, 1).strip(), pv1.get(3, 2).strip()) if pv1 else ("", "")
    query = (
        select(Room)
        .join(Department)
        .where(Department.facility_id == principal.facility_id, Room.active.is_(True))
    )
    rooms = list(session.scalars(query.where(Room.code == (room_code or department))))
    if department and room_code:
        rooms = [r for r in rooms if r.department.code == department] or rooms
    if len(rooms) != 1:
        raise Hl7Error(
            _l("PV1-3 names no single room of the facility (department^room)."),
            code=103,
            location="PV1^1^3",
        )
    return rooms[0]


def _visit(
    session: Session, principal: Principal, msg: Message, patient: Patient, statuses
) -> Visit:
    pv1 = msg.segment("PV1")
    number = pv1.get(19).strip() if pv1 else ""
    query = visits.visible_visits(principal)
    if number:
        visit = session.scalar(query.where(Visit.visit_code == number))
        if visit is None or visit.patient_id != patient.id:
            raise Hl7Error(
                _l("No visit of this patient has the visit number in PV1-19."),
                code=204,
                location="PV1^1^19",
            )
        return visit
    visit = session.scalar(
        query.where(Visit.patient_id == patient.id, Visit.status.in_(statuses))
        .order_by(Visit.opened_at.desc(), Visit.id.desc())
        .limit(1)
    )
    if visit is None:
        raise Hl7Error(
            _l("The patient has no visit here that this message can change."),
            code=204,
            location="PV1^1^19",
        )
    return visit


def register_and_open(session, principal, msg, peer, *, visit_type: VisitType) -> Patient:
    """A01 / A04: the patient (registered or updated) and their arrival."""
    patient = upsert_patient(session, principal, msg, peer, create=True)
    pv1 = msg.segment("PV1")
    kind = VISIT_TYPES.get(pv1.get(2).strip().upper(), visit_type) if pv1 else visit_type
    payment = Payment.BHYT if pv1 and pv1.get(20).strip().upper() == "BHYT" else Payment.FEE
    room = _room(session, principal, msg)
    visits.open_visit(
        session,
        principal,
        visits.VisitRequest(
            patient_id=patient.id, room_id=room.id, visit_type=kind, payment=payment
        ),
    )
    return patient


def admit(session, principal, msg, peer) -> Patient:
    return register_and_open(session, principal, msg, peer, visit_type=VisitType.INPATIENT)


def register_visit(session, principal, msg, peer) -> Patient:
    return register_and_open(session, principal, msg, peer, visit_type=VisitType.OUTPATIENT)


def add_person(session, principal, msg, peer) -> Patient:
    """A05 / A28: the person, no arrival (we keep no planned visits)."""
    return upsert_patient(session, principal, msg, peer, create=True)


def update_person(session, principal, msg, peer) -> Patient:
    """A08 / A31: changes to a patient we know."""
    return upsert_patient(session, principal, msg, peer, create=False)


def _known_patient(session, msg, peer) -> Patient:
    pid = msg.segment("PID")
    patient = find_patient(session, cx_identifiers(session, pid, 3, peer)) if pid else None
    if patient is None:
        raise Hl7Error(
            _l("No patient has any of the identifiers in PID-3."), code=204, location="PID^1^3"
        )
    return patient


def transfer(session, principal, msg, peer) -> Patient:
    patient = _known_patient(session, msg, peer)
    visit = _visit(session, principal, msg, patient, visits.ACTIVE_STATUSES)
    visits.transfer_visit(session, principal, visit.id, _room(session, principal, msg).id)
    return patient


def discharge(session, principal, msg, peer) -> Patient:
    patient = _known_patient(session, msg, peer)
    visit = _visit(session, principal, msg, patient, visits.ACTIVE_STATUSES)
    visits.discharge_visit(session, principal, visit.id)
    return patient


def cancel_admit(session, principal, msg, peer) -> Patient:
    patient = _known_patient(session, msg, peer)
    visit = _visit(session, principal, msg, patient, visits.ACTIVE_STATUSES)
    visits.cancel_visit(session, principal, visit.id)
    return patient


def cancel_discharge(session, principal, msg, peer) -> Patient:
    patient = _known_patient(session, msg, peer)
    visit = _visit(session, principal, msg, patient, (VisitStatus.FINISHED,))
    visits.undo_discharge(session, principal, visit.id)
    return patient


def merge(session, principal, msg, peer) -> Patient:
    """A40: MRG-1 names the record merged into the PID patient, through the same merge
    service (and its checks) as the administrator's screen."""
    survivor = _known_patient(session, msg, peer)
    mrg = msg.segment("MRG")
    prior = cx_identifiers(session, mrg, 1, peer) if mrg else []
    merged = find_patient(session, prior, follow_merges=False)
    if merged is not None and merged.merged_into_id == survivor.id:
        return survivor  # merged already (a replay, or another system told us first)
    if merged is None:
        raise Hl7Error(
            _l("No patient has any of the identifiers in MRG-1."), code=204, location="MRG^1^1"
        )
    if merged.id == survivor.id:
        raise Hl7Error(
            _l("PID-3 and MRG-1 name the same patient: there is nothing to merge."),
            code=207,
            location="MRG^1^1",
        )
    # Merging is an administrator's act; the peer's profile (mode apply) grants it.
    admin = Principal(
        user_id=None,
        username=principal.username,
        roles=principal.roles | {Role.ADMIN},
        facility_id=principal.facility_id,
        request_id=principal.request_id,
    )
    patients.merge_patients(session, admin, survivor.id, merged.id)
    return survivor


HANDLERS = {
    "A01": admit,
    "A04": register_visit,
    "A05": add_person,
    "A28": add_person,
    "A08": update_person,
    "A31": update_person,
    "A02": transfer,
    "A03": discharge,
    "A11": cancel_admit,
    "A13": cancel_discharge,
    "A40": merge,
}
