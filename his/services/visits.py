"""Visits and room queues, always seen through the acting user's facility."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, case, select
from sqlalchemy.orm import Session, selectinload

from his.db import utcnow
from his.errors import Conflict, NotFound, ValidationFailed
from his.localtime import local_today
from his.models import (
    AuditAction,
    CardStatus,
    Department,
    Encounter,
    EncounterStatus,
    Facility,
    Patient,
    Payment,
    PriorityReason,
    Room,
    Visit,
    VisitStatus,
    VisitType,
)
from his.services import audit, counters
from his.services.access import PATIENT_ROLES, REGISTRATION_ROLES, Principal

ACTIVE_STATUSES = (VisitStatus.WAITING, VisitStatus.IN_EXAMINATION)


def visible_visits(principal: Principal) -> Select:
    """The one place that decides which visits a user sees: their own facility's."""
    return select(Visit).where(Visit.facility_id == principal.facility_id)


def list_visits(session: Session, principal: Principal) -> Select:
    principal.require_any(*PATIENT_ROLES)
    audit.record(session, principal, AuditAction.SEARCH, entity_type="Visit")
    return visible_visits(principal).order_by(Visit.opened_at.desc(), Visit.id.desc())


def get_visit(session: Session, principal: Principal, visit_id: int) -> Visit:
    """Another facility's visit is reported as missing, not forbidden, so its existence
    does not leak."""
    principal.require_any(*PATIENT_ROLES)
    visit = session.scalar(visible_visits(principal).where(Visit.id == visit_id))
    if visit is None:
        raise NotFound(str(_l("No visit has this id at your facility.")))
    audit.record_read(session, principal, "Visit", visit.id, visit.patient_id)
    return visit


def room_of_facility(session: Session, principal: Principal, room_id: int) -> Room | None:
    return session.scalar(
        select(Room)
        .join(Department)
        .where(Room.id == room_id, Department.facility_id == principal.facility_id)
    )


@dataclass(frozen=True)
class Referral:
    from_facility_code: str
    letter_number: str
    date: dt.date | None  # None when the form's date could not be read: refused below
    diagnosis: str | None = None


@dataclass(frozen=True)
class VisitRequest:
    patient_id: int
    room_id: int
    visit_type: VisitType = VisitType.OUTPATIENT
    payment: Payment = Payment.FEE
    referral: Referral | None = None
    priority_reason: PriorityReason | None = None


def legal_priority(patient: Patient, on: dt.date) -> PriorityReason | None:
    """Priority the law gives by age alone (children under 6, people aged 75 and over),
    so the receptionist need not remember to tick it."""
    born = patient.birth
    if born.age_on(on) < 6:
        return PriorityReason.CHILD_UNDER_6
    # Counting an unknown birthday as late keeps a person from being called 75 too early.
    if born.age_on(on) >= 75:
        return PriorityReason.AGE_75
    return None


def _check_request(
    session: Session, principal: Principal, req: VisitRequest, today: dt.date
) -> tuple[Patient, Room]:
    errors: dict[str, list[str]] = {}
    patient = session.get(Patient, req.patient_id, options=[selectinload(Patient.coverages)])
    room = room_of_facility(session, principal, req.room_id)
    if patient is None:
        errors["patient_id"] = [str(_l("No patient has this id."))]
    elif patient.merged_into_id is not None:
        raise Conflict(
            str(_l("This record was merged into another patient; open the visit there.")),
            errors={"patient_id": [str(patient.merged_into_id)]},
        )
    if room is None:
        errors["room_id"] = [str(_l("No room with this id at your facility."))]
    if req.payment is Payment.BHYT and patient is not None:
        card = patient.coverage
        if card is None:
            errors["payment"] = [str(_l("The patient has no BHYT card on file."))]
        elif card.status is CardStatus.FAILED:
            errors["payment"] = [str(_l("The BHYT card check failed; check the card again."))]
        elif card.valid_to is not None and card.valid_to < today:
            errors["payment"] = [
                str(
                    _l(
                        "The BHYT card expired on %(date)s.",
                        date=card.valid_to.strftime("%d/%m/%Y"),
                    )
                )
            ]
    if req.referral is not None:
        ref = req.referral
        if len(ref.from_facility_code) != 5:
            errors["referral.from_facility_code"] = [str(_l("A facility code has 5 characters."))]
        if ref.date is None:
            errors["referral.date"] = [str(_l("Enter the date of the referral letter."))]
        elif ref.date > today:
            errors["referral.date"] = [str(_l("The referral date is in the future."))]
        if not ref.letter_number.strip():
            errors["referral.letter_number"] = [str(_l("Enter the referral letter number."))]
    if errors:
        raise ValidationFailed(str(_l("The visit could not be opened.")), errors=errors)
    assert patient is not None and room is not None
    return patient, room


def open_visit(session: Session, principal: Principal, req: VisitRequest) -> Visit:
    """Registers an arrival: a visit code and the next queue number of the room today."""
    principal.require_any(*REGISTRATION_ROLES)
    today = local_today()
    patient, room = _check_request(session, principal, req, today)
    already = session.scalar(
        select(Visit).where(
            Visit.patient_id == patient.id,
            Visit.room_id == room.id,
            Visit.queue_date == today,
            Visit.status.in_(ACTIVE_STATUSES),
        )
    )
    if already is not None:
        raise Conflict(
            str(_l("The patient is already waiting in this room today.")),
            errors={"visit_id": [str(already.id)]},
        )
    facility = session.get(Facility, principal.facility_id)
    assert facility is not None
    priority = req.priority_reason
    if req.visit_type is VisitType.EMERGENCY:
        priority = PriorityReason.EMERGENCY
    priority = priority or legal_priority(patient, today)
    sequence = counters.next_value(session, f"visit:{facility.code}:{today.isoformat()}")
    queue_number = counters.next_value(session, f"queue:{room.id}:{today.isoformat()}")
    ref = req.referral
    visit = Visit(
        visit_code=f"{facility.code}{today:%y%m%d}{sequence:05d}",
        facility_id=facility.id,
        patient_id=patient.id,
        department_id=room.department_id,
        room_id=room.id,
        visit_type=req.visit_type,
        payment=req.payment,
        referral_from_facility_code=ref.from_facility_code if ref else None,
        referral_letter_number=ref.letter_number.strip() if ref else None,
        referral_date=ref.date if ref else None,
        referral_diagnosis=ref.diagnosis if ref else None,
        priority_reason=priority,
        queue_date=today,
        queue_number=queue_number,
        status=VisitStatus.WAITING,
        created_by_id=principal.user_id,
    )
    session.add(visit)
    session.flush()
    patient.last_visit_at = visit.opened_at
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Visit",
        entity_id=visit.id,
        patient_id=patient.id,
    )
    return visit


@dataclass(frozen=True)
class Queue:
    room: Room
    day: dt.date
    waiting: list[Visit]
    called: list[Visit]
    in_examination: list[Visit]


def queue_order():
    """Priority patients first, each group in the order of their numbers: a priority
    patient is called earlier but keeps the number printed on their slip."""
    return (case((Visit.priority_reason.is_(None), 1), else_=0), Visit.queue_number)


def room_queue(
    session: Session, principal: Principal, room_id: int, day: dt.date | None = None
) -> Queue:
    principal.require_any(*PATIENT_ROLES)
    room = room_of_facility(session, principal, room_id)
    if room is None:
        raise NotFound(str(_l("No room with this id at your facility.")))
    day = day or local_today()
    visits = list(
        session.scalars(
            select(Visit)
            .where(
                Visit.room_id == room.id,
                Visit.queue_date == day,
                Visit.status.in_(ACTIVE_STATUSES),
            )
            .options(selectinload(Visit.patient))
            .order_by(*queue_order())
        )
    )
    waiting = [v for v in visits if v.status is VisitStatus.WAITING and v.called_at is None]
    called = [v for v in visits if v.status is VisitStatus.WAITING and v.called_at is not None]
    examining = [v for v in visits if v.status is VisitStatus.IN_EXAMINATION]
    return Queue(room=room, day=day, waiting=waiting, called=called, in_examination=examining)


def rooms_of_facility(session: Session, principal: Principal) -> list[Room]:
    principal.require_any(*PATIENT_ROLES)
    return list(
        session.scalars(
            select(Room)
            .join(Department)
            .where(Department.facility_id == principal.facility_id, Room.active.is_(True))
            .options(selectinload(Room.department))
            .order_by(Department.code, Room.code)
        )
    )


# --- changes after arrival: room transfer, discharge, cancel, undo ----------------------------
# Reception moves, closes and cancels visits; so do the HL7 v2 ADT messages of other systems
# (A02, A03, A11, A13), through these same functions.


def _visit_for_change(session: Session, principal: Principal, visit_id: int) -> Visit:
    principal.require_any(*REGISTRATION_ROLES)
    visit = session.scalar(visible_visits(principal).where(Visit.id == visit_id))
    if visit is None:
        raise NotFound(str(_l("No visit has this id at your facility.")))
    return visit


def _require_active(visit: Visit) -> None:
    if visit.status not in ACTIVE_STATUSES:
        raise Conflict(
            str(_l("The visit is %(status)s; only an open visit can change.", status=visit.status)),
            errors={"status": [visit.status.value]},
        )


def _started_encounters(session: Session, visit: Visit) -> list[Encounter]:
    return list(session.scalars(select(Encounter).where(Encounter.visit_id == visit.id)))


def transfer_visit(session: Session, principal: Principal, visit_id: int, room_id: int) -> Visit:
    """Sends the patient to another room of the facility, with a number in that room's
    queue today; the number printed on the first slip is no longer called."""
    visit = _visit_for_change(session, principal, visit_id)
    _require_active(visit)
    room = room_of_facility(session, principal, room_id)
    if room is None:
        raise ValidationFailed(
            str(_l("The visit could not be moved.")),
            errors={"room_id": [str(_l("No room with this id at your facility."))]},
        )
    if room.id == visit.room_id:
        return visit
    today = local_today()
    number = counters.next_value(session, f"queue:{room.id}:{today.isoformat()}")
    previous = visit.room_id
    visit.room_id = room.id
    visit.department_id = room.department_id
    visit.queue_date = today
    visit.queue_number = number
    visit.called_at = None
    session.flush()
    audit.record_change(
        session, principal, "Visit", visit.id, visit.patient_id, f"room {previous} -> {room.id}"
    )
    return visit


def discharge_visit(
    session: Session, principal: Principal, visit_id: int, at: dt.datetime | None = None
) -> Visit:
    """Closes the visit. An examination still being written keeps it open: the doctor
    signs it first (signing the last one closes the visit by itself)."""
    visit = _visit_for_change(session, principal, visit_id)
    _require_active(visit)
    if any(e.status is EncounterStatus.IN_PROGRESS for e in _started_encounters(session, visit)):
        raise Conflict(
            str(_l("An examination of this visit is still in progress; sign it first.")),
            errors={"status": [visit.status.value]},
        )
    visit.status = VisitStatus.FINISHED
    visit.closed_at = at or utcnow()
    session.flush()
    audit.record_change(session, principal, "Visit", visit.id, visit.patient_id, "discharged")
    return visit


def cancel_visit(session: Session, principal: Principal, visit_id: int) -> Visit:
    """Cancels an arrival entered by mistake. A visit with an examination has clinical
    records and is never cancelled: it is discharged instead."""
    visit = _visit_for_change(session, principal, visit_id)
    _require_active(visit)
    if _started_encounters(session, visit):
        raise Conflict(
            str(_l("The visit has an examination; it can be discharged, not cancelled.")),
            errors={"status": [visit.status.value]},
        )
    visit.status = VisitStatus.CANCELLED
    visit.closed_at = utcnow()
    session.flush()
    audit.record_change(session, principal, "Visit", visit.id, visit.patient_id, "cancelled")
    return visit


def undo_discharge(session: Session, principal: Principal, visit_id: int) -> Visit:
    """Reopens a visit closed by mistake (HL7 A13): back in examination when it has an
    examination, waiting otherwise."""
    visit = _visit_for_change(session, principal, visit_id)
    if visit.status is not VisitStatus.FINISHED:
        raise Conflict(
            str(_l("Only a discharged visit can be reopened.")),
            errors={"status": [visit.status.value]},
        )
    examined = bool(_started_encounters(session, visit))
    visit.status = VisitStatus.IN_EXAMINATION if examined else VisitStatus.WAITING
    visit.closed_at = None
    session.flush()
    audit.record_change(session, principal, "Visit", visit.id, visit.patient_id, "reopened")
    return visit
