"""ORU^R01: results from a laboratory or imaging system, attached to the service order
they answer. OBR-2 (or ORC-2) is our placer number — the order id we sent in OML/ORM —,
OBR-3 (or ORC-3) the filler number the performing system gave; each OBX becomes one result
of that order through the same service a doctor's result entry uses. A result without a
placer number that no filler number matches goes to the patient's visit, as an order the
performing system reported (OBR-4 names the service).
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from his.errors import ValidationFailed
from his.hl7v2.codec import Hl7Error, Message, Segment
from his.hl7v2.pid import cx_identifiers, find_patient
from his.models import Encounter, Hl7Peer, Patient, ServiceOrder, Visit, VisitStatus
from his.services import encounters, visits
from his.services.access import Principal

# OBX-11 result status: these carry no result to record.
NOT_RESULTS = {"X", "D", "W", "I"}
CODED_TYPES = {"CE", "CWE", "CNE", "CF"}


def _order(
    session: Session,
    principal: Principal,
    msg: Message,
    obr: Segment,
    orc: Segment | None,
    n: int,
    patient: Patient | None,
    peer: Hl7Peer,
) -> ServiceOrder:
    placer = obr.get(2).strip() or (orc.get(2).strip() if orc else "")
    filler = obr.get(3).strip() or (orc.get(3).strip() if orc else "")
    mine = select(ServiceOrder).where(ServiceOrder.facility_id == principal.facility_id)
    order = None
    if placer.isdigit():
        order = session.scalar(mine.where(ServiceOrder.id == int(placer)))
    if order is None and filler:
        order = session.scalar(mine.where(ServiceOrder.filler_number == filler))
    if order is None and patient is not None and not placer:
        return _reported_order(session, principal, msg, obr, n, patient, peer, filler)
    if order is None:
        raise Hl7Error(
            _l(
                "No order of this facility has the placer number in OBR-2 "
                "or the filler number in OBR-3."
            ),
            code=204,
            location=f"OBR^{n}^2",
        )
    if filler and not order.filler_number:
        order.filler_number = filler[:50]
    return order


def _reported_order(session, principal, msg, obr, n, patient, peer, filler) -> ServiceOrder:
    """A result nobody ordered here (no placer number): attached to the patient's visit —
    PV1-19, else their latest visit at the facility — as an order the peer reported."""
    pv1 = msg.segment("PV1")
    number = pv1.get(19).strip() if pv1 else ""
    query = visits.visible_visits(principal).where(Visit.patient_id == patient.id)
    if number:
        query = query.where(Visit.visit_code == number)
    visit = session.scalar(
        query.where(Visit.status != VisitStatus.CANCELLED)
        .order_by(Visit.opened_at.desc(), Visit.id.desc())
        .limit(1)
    )
    encounter = (
        session.scalar(
            select(Encounter)
            .where(Encounter.visit_id == visit.id)
            .order_by(Encounter.id.desc())
            .limit(1)
        )
        if visit is not None
        else None
    )
    if encounter is None:
        raise Hl7Error(
            _l("The patient has no examination here to attach this result to (PV1-19)."),
            code=204,
            location="PV1^1^19" if number else f"OBR^{n}^2",
        )
    try:
        return encounters.record_reported_order(
            session,
            principal,
            encounter.id,
            obr.get(4, 1),
            system=f"hl7:{peer.name}",
            filler_number=filler,
        )
    except ValidationFailed as exc:
        raise Hl7Error(
            _l("OBR-4 names no service of the facility's catalog."),
            code=103,
            location=f"OBR^{n}^4",
        ) from exc


def _value(obx: Segment) -> str:
    kind = obx.get(2).strip().upper()
    values = []
    for rep in range(1, len(obx.repetitions(5)) + 1):
        if kind in CODED_TYPES:
            values.append(obx.get(5, 2, repetition=rep) or obx.get(5, 1, repetition=rep))
        elif kind == "SN":  # structured numeric: comparator^number
            values.append(obx.get(5, 1, repetition=rep) + obx.get(5, 2, repetition=rep))
        else:
            values.append(
                obx.get(5, repetition=rep)
                if kind in ("TX", "FT", "ST")
                else obx.get(5, 1, repetition=rep)
            )
    return "\n".join(v for v in values if v)


def _notes_after(segments: list[Segment], index: int) -> str:
    notes = []
    for seg in segments[index + 1 :]:
        if seg.name != "NTE":
            break
        notes.append(seg.get(3))
    return "\n".join(n for n in notes if n)


def results(session: Session, principal: Principal, msg: Message, peer: Hl7Peer) -> Patient | None:
    segments = msg.segments
    pid = msg.segment("PID")
    named = find_patient(session, cx_identifiers(session, pid, 3, peer)) if pid else None
    order = None
    orc = None
    obr_no = 0
    recorded = 0
    patient: Patient | None = named
    for index, seg in enumerate(segments):
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            obr_no += 1
            order = _order(session, principal, msg, seg, orc, obr_no, named, peer)
            orc = None
            encounter = session.get(Encounter, order.encounter_id)
            if named is not None and encounter.patient_id != named.id:
                raise Hl7Error(
                    _l("The order in OBR-2 belongs to another patient than PID-3 names."),
                    code=207,
                    location=f"OBR^{obr_no}^2",
                )
            patient = session.get(Patient, encounter.patient_id)
        elif seg.name == "OBX":
            if order is None:
                raise Hl7Error(_l("An OBX comes before any OBR."), code=100, location="OBX")
            if seg.get(11).strip().upper() in NOT_RESULTS:
                continue
            value = _value(seg)
            if not value:
                continue
            encounters.enter_result(
                session,
                principal,
                order.id,
                value,
                seg.get(6, 1) or None,
                seg.get(7) or None,
                _notes_after(segments, index) or None,
                code=seg.get(3, 1) or None,
                name=seg.get(3, 2) or None,
            )
            recorded += 1
    if obr_no == 0:
        raise Hl7Error(_l("The message has no OBR segment."), code=100, location="OBR")
    if recorded == 0:
        raise Hl7Error(_l("The message has no OBX with a result."), code=101, location="OBX^1^5")
    return patient
