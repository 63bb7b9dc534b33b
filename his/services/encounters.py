"""Examinations: the doctor's worklist, the encounter record, its signature and amendments.

An encounter is a draft while in progress: any doctor of the facility may write it, and a
diagnosis written by mistake may be removed. Finishing signs it: the content's SHA-256 is
kept, and from then on the only change is an amendment, which keeps each field's old and
new value and the reason. The signing doctor amends the notes, the diagnoses (coding
errors change the insurance claim) and the disposition; a result arriving after signing
is stored as an amendment by whoever enters it, leaving the doctor's signature as it was.
A removed diagnosis keeps its row (``removed_at``): nothing coded disappears without trace.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from his.db import utcnow
from his.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from his.localtime import VN_TZ, local_date, local_today
from his.models import (
    AuditAction,
    Diagnosis,
    Disposition,
    Encounter,
    EncounterAmendment,
    EncounterStatus,
    Icd10Code,
    MedicalService,
    ObservationResult,
    OrderStatus,
    Role,
    Room,
    ServiceOrder,
    Sex,
    Visit,
    VisitStatus,
    VitalSigns,
)
from his.services import audit, catalogs
from his.services import visits as visit_service
from his.services.access import Principal

# Who does what. Receptionists and cashiers see the queue, never the clinical record.
DOCTOR_ROLES = (Role.DOCTOR,)
WORKLIST_ROLES = (Role.DOCTOR, Role.NURSE)
VITALS_ROLES = (Role.DOCTOR, Role.NURSE)
RESULT_ROLES = (Role.DOCTOR, Role.NURSE, Role.INTEGRATION)  # a lab system is an integration
CLINICAL_READ_ROLES = (Role.DOCTOR, Role.NURSE, Role.PHARMACIST, Role.INTEGRATION)

TEXT_FIELDS = ("reason", "history", "findings", "conclusion", "advice")
MAX_SECONDARY = 12
MAX_QUANTITY = 1000


class StaleEncounter(DomainError):
    status = 412
    code = "stale-version"

    def __init__(self) -> None:
        super().__init__(
            str(_l("Someone changed this encounter since you read it. Reload and try again."))
        )


# --- worklist ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worklist:
    room: Room
    day: dt.date
    waiting: list[Visit]  # not yet called, in call order (priority first)
    called: list[Visit]  # called, not yet examined, in call order
    in_examination: list[Visit]
    encounters: dict[int, Encounter]  # visit id → its encounter in progress in this room


def worklist(session: Session, principal: Principal, room_id: int) -> Worklist:
    """Today's patients of a room, in the order the queue boards call them."""
    principal.require_any(*WORKLIST_ROLES)
    queue = visit_service.room_queue(session, principal, room_id)
    examining_ids = [v.id for v in queue.in_examination]
    encounters = {
        e.visit_id: e
        for e in session.scalars(
            select(Encounter).where(
                Encounter.visit_id.in_(examining_ids),
                Encounter.room_id == queue.room.id,
                Encounter.status == EncounterStatus.IN_PROGRESS,
            )
        )
    }
    audit.record(
        session, principal, AuditAction.SEARCH, entity_type="Worklist", entity_id=queue.room.id
    )
    return Worklist(
        room=queue.room,
        day=queue.day,
        waiting=queue.waiting,
        called=queue.called,
        in_examination=queue.in_examination,
        encounters=encounters,
    )


def call_next(session: Session, principal: Principal, room_id: int) -> Visit:
    """Calls the first patient not yet called. The conditional update makes two doctors
    pressing "call next" at once call two different patients."""
    principal.require_any(*WORKLIST_ROLES)
    queue = visit_service.room_queue(session, principal, room_id)
    for visit in queue.waiting:
        called = session.execute(
            update(Visit)
            .where(
                Visit.id == visit.id,
                Visit.called_at.is_(None),
                Visit.status == VisitStatus.WAITING,
            )
            .values(called_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if called.rowcount == 1:
            session.refresh(visit)
            audit.record_change(session, principal, "Visit", visit.id, visit.patient_id, "called")
            return visit
    raise NotFound(str(_l("No patient is waiting to be called in this room.")))


# --- loading -----------------------------------------------------------------------------------


def _load(session: Session, principal: Principal, encounter_id: int) -> Encounter:
    """Another facility's encounter is reported missing, so its existence does not leak."""
    encounter = session.scalar(
        select(Encounter)
        .where(Encounter.id == encounter_id, Encounter.facility_id == principal.facility_id)
        .options(
            selectinload(Encounter.vitals),
            selectinload(Encounter.diagnoses),
            selectinload(Encounter.orders).selectinload(ServiceOrder.results),
            selectinload(Encounter.orders).selectinload(ServiceOrder.service),
            selectinload(Encounter.amendments),
            selectinload(Encounter.patient),
            selectinload(Encounter.visit),
        )
    )
    if encounter is None:
        raise NotFound(str(_l("No encounter has this id at your facility.")))
    return encounter


def _require_clinical_reader(principal: Principal) -> None:
    if not principal.has_any(CLINICAL_READ_ROLES):
        raise Forbidden(
            str(
                _l(
                    "Clinical notes are for doctors, nurses and pharmacists; "
                    "your role cannot read them."
                )
            ),
            errors={"role": [", ".join(sorted(r.value for r in CLINICAL_READ_ROLES))]},
        )


def get_encounter(session: Session, principal: Principal, encounter_id: int) -> Encounter:
    _require_clinical_reader(principal)
    encounter = _load(session, principal, encounter_id)
    audit.record_read(session, principal, "Encounter", encounter.id, encounter.patient_id)
    return encounter


def encounters_of_visit(session: Session, principal: Principal, visit_id: int) -> list[Encounter]:
    _require_clinical_reader(principal)
    visit = visit_service.get_visit(session, principal, visit_id)
    found = list(
        session.scalars(
            select(Encounter).where(Encounter.visit_id == visit.id).order_by(Encounter.id)
        )
    )
    for encounter in found:
        audit.record_read(session, principal, "Encounter", encounter.id, encounter.patient_id)
    return found


def _in_progress(encounter: Encounter) -> None:
    if encounter.status is not EncounterStatus.IN_PROGRESS:
        raise Conflict(
            str(
                _l(
                    "The encounter is signed and locked; a correction is an amendment "
                    "with a reason."
                )
            )
        )


def _check_version(encounter: Encounter, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != encounter.version:
        raise StaleEncounter()


def _touch(session: Session, encounter: Encounter) -> None:
    """Bumps the encounter's version (its ETag) when only its child rows changed."""
    flag_modified(encounter, "status")
    try:
        session.flush()
    except StaleDataError as exc:  # a concurrent change committed after our read
        raise StaleEncounter() from exc


def encounter_date(encounter: Encounter) -> dt.date:
    """The local day the examination started: the catalogs are read as of that day."""
    return local_date(encounter.started_at)


# --- start -------------------------------------------------------------------------------------


def start_examination(
    session: Session, principal: Principal, visit_id: int, room_id: int | None = None
) -> Encounter:
    """Opens an encounter for the visit in its room (or ``room_id``); the visit shows as
    in examination on the queue board."""
    principal.require_any(*DOCTOR_ROLES)
    visit = session.scalar(
        visit_service.visible_visits(principal).where(Visit.id == visit_id).with_for_update()
    )
    if visit is None:
        raise NotFound(str(_l("No visit has this id at your facility.")))
    if visit.status is VisitStatus.FINISHED:
        raise Conflict(str(_l("This visit is finished; open a new visit to examine again.")))
    if visit.status is VisitStatus.CANCELLED:
        raise Conflict(str(_l("This visit was cancelled; it cannot be examined.")))
    room_id = room_id if room_id is not None else visit.room_id
    room = (
        visit_service.room_of_facility(session, principal, room_id) if room_id is not None else None
    )
    if room is None:
        raise ValidationFailed(
            str(_l("The examination could not be started.")),
            errors={"room_id": [str(_l("No room with this id at your facility."))]},
        )
    running = session.scalar(
        select(Encounter).where(
            Encounter.visit_id == visit.id,
            Encounter.room_id == room.id,
            Encounter.status == EncounterStatus.IN_PROGRESS,
        )
    )
    if running is not None:
        raise Conflict(
            str(_l("This patient is already being examined in this room.")),
            extra={"encounter": {"id": running.id, "href": f"/api/v1/encounters/{running.id}"}},
        )
    now = utcnow()
    encounter = Encounter(
        visit_id=visit.id,
        facility_id=visit.facility_id,
        patient_id=visit.patient_id,
        room_id=room.id,
        doctor_id=principal.user_id,
        status=EncounterStatus.IN_PROGRESS,
        started_at=now,
    )
    session.add(encounter)
    visit.status = VisitStatus.IN_EXAMINATION
    visit.called_at = visit.called_at or now
    visit.started_at = visit.started_at or now
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Encounter",
        entity_id=encounter.id,
        patient_id=encounter.patient_id,
    )
    return _load(session, principal, encounter.id)


# --- the record --------------------------------------------------------------------------------


# A long clinical note is a few thousand characters; the limit keeps a pasted document or
# a hostile client from growing one row to megabytes.
TEXT_LIMIT = 20_000


def _text(name: str, value: Any) -> str | None:
    value = value.strip() if isinstance(value, str) else value
    if isinstance(value, str) and len(value) > TEXT_LIMIT:
        message = str(_l("At most %(max)s characters.", max=TEXT_LIMIT))
        raise ValidationFailed(message, errors={name: [message]})
    return value or None


def _clean_text(data: dict[str, Any]) -> dict[str, str | None]:
    return {name: _text(name, data[name]) for name in TEXT_FIELDS if name in data}


def _closing_text(req) -> dict[str, str | None]:
    """The conclusion and advice a finish (or its amendment) sends, when it sends them."""
    given = {"conclusion": req.conclusion, "advice": req.advice}
    return _clean_text({name: value for name, value in given.items() if value is not None})


def update_encounter(
    session: Session,
    principal: Principal,
    encounter_id: int,
    data: dict[str, Any],
    *,
    expected_version: int | None = None,
    amendment_reason: str | None = None,
) -> Encounter:
    """Writes the fields ``data`` gives (PATCH). A signed encounter changes only by an
    amendment, which needs ``amendment_reason``."""
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    _check_version(encounter, expected_version)
    if encounter.status is EncounterStatus.FINISHED:
        return _amend(session, principal, encounter, data, amendment_reason)
    cleaned = _clean_text(data)
    for name, value in cleaned.items():
        setattr(encounter, name, value)
    _touch(session, encounter)
    audit.record_change(
        session,
        principal,
        "Encounter",
        encounter.id,
        encounter.patient_id,
        ",".join(sorted(cleaned)),
    )
    return encounter


def _signer_reason(encounter: Encounter, principal: Principal, reason: str | None) -> str:
    """The reason for amending a signed encounter, once the amender may amend it."""
    # The signature is personal: only the doctor who signed may correct what they signed.
    if encounter.signed_by_id != principal.user_id:
        raise Forbidden(str(_l("Only the doctor who signed this encounter may amend it.")))
    reason = (reason or "").strip()
    if not reason:
        raise Conflict(
            str(
                _l(
                    "The encounter is signed and locked; to correct it, give the reason "
                    "for the amendment."
                )
            ),
            errors={"amendment_reason": [str(_l("Required to change a signed encounter."))]},
        )
    return _checked_reason(reason)


def _checked_reason(reason: str) -> str:
    if len(reason) > 500:
        raise ValidationFailed(
            str(_l("The amendment could not be recorded.")),
            errors={"amendment_reason": [str(_l("At most 500 characters."))]},
        )
    return reason


def _record_amendment(
    session: Session,
    principal: Principal,
    encounter: Encounter,
    reason: str,
    changes: dict[str, Any],
) -> EncounterAmendment:
    """Re-hashes the content as it now stands and keeps who changed what and why. The
    signature (``signed_by_id``, ``finished_at``) stays the doctor's: the amendment rows
    say what came later."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise StaleEncounter() from exc
    # Reload what the hash covers, so a removed diagnosis is no longer in it.
    session.expire(encounter, ["diagnoses", "diagnosis_history"])
    new_hash = content_hash(encounter)
    encounter.content_hash = new_hash
    amendment = EncounterAmendment(
        encounter=encounter,
        amended_by_id=principal.user_id,
        amended_at=utcnow(),
        reason=reason,
        changes=changes,
        content_hash=new_hash,
    )
    session.add(amendment)
    _touch(session, encounter)
    audit.record_change(
        session,
        principal,
        "Encounter",
        encounter.id,
        encounter.patient_id,
        "amendment:" + ",".join(sorted(changes)),
    )
    return amendment


def end_date(encounter: Encounter) -> dt.date:
    """The local day the episode ended: its codes come from the ICD-10 list of that day."""
    return local_date(encounter.finished_at) if encounter.finished_at else local_today()


def _amend(
    session: Session,
    principal: Principal,
    encounter: Encounter,
    data: dict[str, Any],
    reason: str | None,
) -> Encounter:
    reason = _signer_reason(encounter, principal, reason)
    cleaned = _clean_text(data)
    changes = {
        name: {"old": getattr(encounter, name), "new": value}
        for name, value in cleaned.items()
        if getattr(encounter, name) != value
    }
    if not changes:
        raise ValidationFailed(
            str(_l("Nothing to amend: the values given are those already signed.")),
            errors={name: [str(_l("Unchanged."))] for name in cleaned} or None,
        )
    for name, change in changes.items():
        setattr(encounter, name, change["new"])
    _record_amendment(session, principal, encounter, reason, changes)
    return encounter


# --- vital signs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VitalRange:
    low: Decimal
    high: Decimal
    unit: str
    step: Decimal  # 1 for whole numbers


# Plausible values, not normal ones: outside these a number was surely mistyped.
VITAL_RANGES: dict[str, VitalRange] = {
    "pulse": VitalRange(Decimal(20), Decimal(250), "/min", Decimal(1)),
    "systolic": VitalRange(Decimal(50), Decimal(280), "mmHg", Decimal(1)),
    "diastolic": VitalRange(Decimal(20), Decimal(180), "mmHg", Decimal(1)),
    "temperature": VitalRange(Decimal(30), Decimal(45), "°C", Decimal("0.1")),
    "respiratory_rate": VitalRange(Decimal(4), Decimal(80), "/min", Decimal(1)),
    "spo2": VitalRange(Decimal(50), Decimal(100), "%", Decimal(1)),
    "weight": VitalRange(Decimal("0.3"), Decimal(350), "kg", Decimal("0.01")),
    "height": VitalRange(Decimal(20), Decimal(250), "cm", Decimal("0.1")),
}
VITAL_NAMES = {
    "pulse": _l("Pulse"),
    "systolic": _l("Systolic pressure"),
    "diastolic": _l("Diastolic pressure"),
    "temperature": _l("Temperature"),
    "respiratory_rate": _l("Respiratory rate"),
    "spo2": _l("SpO2"),
    "weight": _l("Weight"),
    "height": _l("Height"),
}


def _number(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InvalidOperation
    text = str(value).strip().replace(",", ".")  # Vietnamese keyboards write 36,5
    number = Decimal(text)
    if not number.is_finite():
        raise InvalidOperation
    return number


def clean_vitals(data: dict[str, Any]) -> dict[str, Decimal | int]:
    """The measurements given, checked against ``VITAL_RANGES``; raises with one message
    per wrong field, naming the range and its unit."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Decimal | int] = {}
    for name, spec in VITAL_RANGES.items():
        try:
            number = _number(data.get(name))
        except (InvalidOperation, ValueError):
            errors[name] = [str(_l("Enter a number."))]
            continue
        if number is None:
            continue
        if spec.step == 1 and number != number.to_integral_value():
            errors[name] = [str(_l("Enter a whole number."))]
            continue
        if not spec.low <= number <= spec.high:
            errors[name] = [
                str(
                    _l(
                        "%(field)s must be between %(low)s and %(high)s %(unit)s.",
                        field=VITAL_NAMES[name],
                        low=spec.low,
                        high=spec.high,
                        unit=spec.unit,
                    )
                )
            ]
            continue
        values[name] = int(number) if spec.step == 1 else number.quantize(spec.step, ROUND_HALF_UP)
    systolic, diastolic = values.get("systolic"), values.get("diastolic")
    if systolic is not None and diastolic is not None and diastolic >= systolic:
        errors["diastolic"] = [str(_l("Diastolic pressure must be lower than systolic."))]
    if not values and not errors:
        errors["vitals"] = [str(_l("Enter at least one measurement."))]
    if errors:
        raise ValidationFailed(str(_l("The vital signs were not recorded.")), errors=errors)
    return values


def record_vitals(
    session: Session, principal: Principal, encounter_id: int, data: dict[str, Any]
) -> VitalSigns:
    principal.require_any(*VITALS_ROLES)
    encounter = _load(session, principal, encounter_id)
    _in_progress(encounter)
    values = clean_vitals(data)
    vitals = VitalSigns(
        encounter=encounter, recorded_at=utcnow(), recorded_by_id=principal.user_id, **values
    )
    session.add(vitals)
    _touch(session, encounter)
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="VitalSigns",
        entity_id=vitals.id,
        patient_id=encounter.patient_id,
    )
    return vitals


# --- diagnoses ---------------------------------------------------------------------------------


def _code_problem(
    session: Session, code: Icd10Code, *, main: bool, sex: Sex | None, on: dt.date
) -> str | None:
    """Why the list forbids this code here, or None. The catalog's flags are the rules."""
    if code.never_usable:
        return str(_l("%(code)s may not be used as a diagnosis.", code=code.code))
    if code.has_children:
        children = session.scalars(
            select(Icd10Code.code)
            .where(Icd10Code.version_id == code.version_id, Icd10Code.parent_code == code.code)
            .order_by(Icd10Code.code)
            .limit(12)
        ).all()
        return str(
            _l(
                "%(code)s is a category: choose one of its subcodes (%(codes)s).",
                code=code.code,
                codes=", ".join(children) or "…",
            )
        )
    if code.cause_of_death_only:
        return str(_l("%(code)s is used only as a cause of death.", code=code.code))
    if main and code.not_main:
        return str(_l("%(code)s may not be the main diagnosis.", code=code.code))
    if code.sex is not None and sex in (Sex.MALE, Sex.FEMALE) and sex.value != code.sex.value:
        return str(
            _l(
                "%(code)s is for %(sex)s patients only.",
                code=code.code,
                sex=_l("female") if code.sex.value == "female" else _l("male"),
            )
        )
    return None


def _lookup(session: Session, raw: str, on: dt.date) -> Icd10Code:
    if not raw.strip():
        raise ValidationFailed(
            str(_l("The diagnosis was not added.")),
            errors={"icd10": [str(_l("Enter an ICD-10 code."))]},
        )
    version = catalogs.icd10_version_on(session, on)
    if version is None:
        raise ValidationFailed(
            str(_l("The diagnosis was not added.")),
            errors={
                "icd10": [
                    str(_l("No ICD-10 list is in force on %(date)s.", date=on.strftime("%d/%m/%Y")))
                ]
            },
        )
    code = catalogs.icd10_code(session, raw, on)
    if code is None:
        raise ValidationFailed(
            str(_l("The diagnosis was not added.")),
            errors={
                "icd10": [
                    str(
                        _l(
                            "%(code)s is not in the ICD-10 list in force on %(date)s (%(list)s).",
                            code=catalogs.normalise_icd10(raw),
                            date=on.strftime("%d/%m/%Y"),
                            list=version.name,
                        )
                    )
                ]
            },
        )
    return code


def _diagnosis_summary(encounter: Encounter) -> list[dict[str, Any]]:
    """The diagnoses in force as an amendment keeps them: main first, then by position."""
    return [
        {"id": d.id, "icd10": d.icd10_code, "main": d.is_main}
        for d in sorted(encounter.diagnoses, key=lambda d: (not d.is_main, d.position, d.id))
    ]


def _coding_context(
    encounter: Encounter, principal: Principal, amendment_reason: str | None
) -> tuple[dt.date, str | None]:
    """The day whose ICD-10 list applies and, for a signed encounter, the amendment's
    reason. A draft is coded with the list of its first day (re-checked on finishing); a
    signed episode with the list of its end date."""
    if encounter.status is EncounterStatus.FINISHED:
        return end_date(encounter), _signer_reason(encounter, principal, amendment_reason)
    return encounter_date(encounter), None


def _remove(principal: Principal, diagnosis: Diagnosis) -> None:
    diagnosis.removed_at = utcnow()
    diagnosis.removed_by_id = principal.user_id


def add_diagnosis(
    session: Session,
    principal: Principal,
    encounter_id: int,
    icd10: str,
    main: bool,
    note: str | None = None,
    *,
    replaces: int | None = None,
    amendment_reason: str | None = None,
) -> Diagnosis:
    """Adds a code as the list in force has it. A new main diagnosis replaces the current
    one, which stays as a secondary diagnosis. ``replaces`` corrects a coded diagnosis:
    the new code takes its place (and its main role), the old row is marked removed.
    On a signed encounter this is an amendment by the signing doctor, with its reason."""
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    on, reason = _coding_context(encounter, principal, amendment_reason)
    before = _diagnosis_summary(encounter) if reason else None
    current = list(encounter.diagnoses)
    target = None
    if replaces is not None:
        target = next((d for d in current if d.id == replaces), None)
        if target is None:
            raise NotFound(str(_l("This encounter has no diagnosis with this id.")))
        main = main or target.is_main
    code = _lookup(session, icd10, on)
    problem = _code_problem(session, code, main=main, sex=encounter.patient.sex, on=on)
    if problem:
        raise ValidationFailed(str(_l("The diagnosis was not added.")), errors={"icd10": [problem]})
    if any(d.icd10_code == code.code for d in current):
        raise Conflict(
            str(_l("%(code)s is already a diagnosis of this encounter.", code=code.code)),
            errors={"icd10": [str(_l("Already coded."))]},
        )
    remaining = [d for d in current if d is not target]
    old_main = next((d for d in remaining if d.is_main), None)
    secondaries = [d for d in remaining if not d.is_main]
    # Demoting the old main adds one secondary, exactly like adding one.
    if (not main or old_main is not None) and len(secondaries) >= MAX_SECONDARY:
        raise ValidationFailed(
            str(_l("The diagnosis was not added.")),
            errors={
                "icd10": [str(_l("At most %(n)s secondary diagnoses are coded.", n=MAX_SECONDARY))]
            },
        )
    next_position = max((d.position for d in current), default=0) + 1
    if main and old_main is not None:
        old_main.is_main = False
        old_main.position = next_position
        next_position += 1
    if main:
        position = 0
    elif target is not None:
        position = target.position  # the correction stands where the wrong code stood
    else:
        position = next_position
    if target is not None:
        _remove(principal, target)
    diagnosis = Diagnosis(
        encounter=encounter,
        icd10_code=code.code,
        title=code.title,
        icd10_version_id=code.version_id,
        is_main=main,
        position=position,
        note=(note or "").strip()[:500] or None,
        created_at=utcnow(),
    )
    session.add(diagnosis)
    session.flush()
    session.expire(encounter, ["diagnoses"])  # reloaded without a replaced row
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Diagnosis",
        entity_id=diagnosis.id,
        patient_id=encounter.patient_id,
        detail=f"replaces:{target.id}" if target is not None else None,
    )
    _diagnoses_changed(session, principal, encounter, before, reason)
    return diagnosis


def _diagnoses_changed(
    session: Session,
    principal: Principal,
    encounter: Encounter,
    before: list | None,
    reason: str | None,
) -> None:
    """On a signed encounter (a reason given) the change is an amendment holding the
    diagnoses before and after; on a draft it only moves the version (the ETag)."""
    if reason:
        session.flush()
        session.expire(encounter, ["diagnoses"])
        _record_amendment(
            session,
            principal,
            encounter,
            reason,
            {"diagnoses": {"old": before, "new": _diagnosis_summary(encounter)}},
        )
    else:
        _touch(session, encounter)
        session.expire(encounter, ["diagnoses", "diagnosis_history"])


def remove_diagnosis(
    session: Session,
    principal: Principal,
    encounter_id: int,
    diagnosis_id: int,
    *,
    amendment_reason: str | None = None,
) -> Encounter:
    """Marks a diagnosis removed; the row stays, with who removed it and when. In a draft
    this takes back a mis-click. On a signed encounter it is an amendment by the signing
    doctor with its reason, and the main diagnosis cannot go: the signed record always
    has one (correct it with ``replaces`` instead)."""
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    _, reason = _coding_context(encounter, principal, amendment_reason)
    diagnosis = next((d for d in encounter.diagnoses if d.id == diagnosis_id), None)
    if diagnosis is None:
        raise NotFound(str(_l("This encounter has no diagnosis with this id.")))
    if reason and diagnosis.is_main:
        raise Conflict(
            str(
                _l(
                    "A signed encounter keeps a main diagnosis: replace the main diagnosis "
                    "with the right code, or code another one as main first."
                )
            ),
            errors={"diagnoses": [str(_l("The main diagnosis cannot be removed."))]},
        )
    before = _diagnosis_summary(encounter) if reason else None
    _remove(principal, diagnosis)
    audit.record_change(
        session,
        principal,
        "Encounter",
        encounter.id,
        encounter.patient_id,
        f"diagnosis-removed:{diagnosis_id}",
    )
    _diagnoses_changed(session, principal, encounter, before, reason)
    return encounter


# --- orders and results ------------------------------------------------------------------------


def _catalog_service(
    session: Session, encounter: Encounter, service_code: str, errors: dict[str, list[str]]
) -> MedicalService | None:
    """The facility's service of this code on the encounter's date, or an error noted."""
    code = (service_code or "").strip()
    service = (
        catalogs.service_by_code(session, encounter.facility_id, code, encounter_date(encounter))
        if code
        else None
    )
    if service is None:
        errors["service_code"] = [
            str(_l("No service with code %(code)s in your facility's catalog.", code=code))
            if code
            else str(_l("Choose a service."))
        ]
    return service


def add_order(
    session: Session,
    principal: Principal,
    encounter_id: int,
    service_code: str,
    quantity: int = 1,
    note: str | None = None,
) -> ServiceOrder:
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    _in_progress(encounter)
    errors: dict[str, list[str]] = {}
    service = _catalog_service(session, encounter, service_code, errors)
    if not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        errors["quantity"] = [str(_l("Between 1 and %(n)s.", n=MAX_QUANTITY))]
    if errors:
        raise ValidationFailed(str(_l("The order was not added.")), errors=errors)
    assert service is not None
    order = ServiceOrder(
        encounter=encounter,
        facility_id=encounter.facility_id,
        service_id=service.id,
        service_code=service.code,
        quantity=quantity,
        note=(note or "").strip()[:500] or None,
        status=OrderStatus.ORDERED,
        ordered_by_id=principal.user_id,
        ordered_at=utcnow(),
    )
    session.add(order)
    _touch(session, encounter)
    session.expire(encounter, ["orders"])
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="ServiceOrder",
        entity_id=order.id,
        patient_id=encounter.patient_id,
    )
    return order


def record_reported_order(
    session: Session,
    principal: Principal,
    encounter_id: int,
    service_code: str,
    *,
    system: str,
    filler_number: str | None = None,
) -> ServiceOrder:
    """An order a performing system (a laboratory) reports along with its result when no
    order of ours names it: a walk-in test, or one ordered on paper. It belongs to the
    patient's examination, signed or not; ``system`` is named as who ordered it."""
    principal.require_any(*RESULT_ROLES)
    encounter = _load(session, principal, encounter_id)
    errors: dict[str, list[str]] = {}
    service = _catalog_service(session, encounter, service_code, errors)
    if service is None:
        raise ValidationFailed(str(_l("The order was not added.")), errors=errors)
    order = ServiceOrder(
        encounter=encounter,
        facility_id=encounter.facility_id,
        service_id=service.id,
        service_code=service.code,
        quantity=1,
        status=OrderStatus.ORDERED,
        ordered_by_id=None,
        ordered_by_system=system[:80],
        filler_number=(filler_number or "").strip()[:50] or None,
        ordered_at=utcnow(),
    )
    session.add(order)
    session.flush()
    session.expire(encounter, ["orders"])
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="ServiceOrder",
        entity_id=order.id,
        patient_id=encounter.patient_id,
        detail=f"reported by {system}",
    )
    return order


def _load_order(session: Session, principal: Principal, order_id: int) -> ServiceOrder:
    order = session.scalar(
        select(ServiceOrder)
        .where(ServiceOrder.id == order_id, ServiceOrder.facility_id == principal.facility_id)
        .options(selectinload(ServiceOrder.results), selectinload(ServiceOrder.service))
    )
    if order is None:
        raise NotFound(str(_l("No order has this id at your facility.")))
    return order


def cancel_order(
    session: Session, principal: Principal, encounter_id: int, order_id: int
) -> ServiceOrder:
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    _in_progress(encounter)
    order = next((o for o in encounter.orders if o.id == order_id), None)
    if order is None:
        raise NotFound(str(_l("This encounter has no order with this id.")))
    if order.status is not OrderStatus.ORDERED:
        raise Conflict(str(_l("Only an order without a result can be cancelled.")))
    order.status = OrderStatus.CANCELLED
    _touch(session, encounter)
    audit.record_change(
        session, principal, "ServiceOrder", order.id, encounter.patient_id, "cancelled"
    )
    return order


def enter_result(
    session: Session,
    principal: Principal,
    order_id: int,
    value: str,
    unit: str | None = None,
    reference_range: str | None = None,
    conclusion: str | None = None,
    *,
    amendment_reason: str | None = None,
    code: str | None = None,
    name: str | None = None,
) -> ObservationResult:
    """A result for an order; a second one corrects the first and points to it (with
    ``code``, the analyte of a panel: a result corrects the earlier one of its code). Lab
    results often arrive after the doctor signed: on a signed encounter the result is
    stored the same way and recorded as an amendment by whoever enters it (the reason
    given, or "result received after signing"); the doctor's signature is unchanged."""
    principal.require_any(*RESULT_ROLES)
    order = _load_order(session, principal, order_id)
    encounter = _load(session, principal, order.encounter_id)
    reason = None
    if encounter.status is EncounterStatus.FINISHED:
        reason = _checked_reason(
            (amendment_reason or "").strip() or str(_l("Result received after signing."))
        )
    if order.status is OrderStatus.CANCELLED:
        raise Conflict(str(_l("This order was cancelled; it takes no result.")))
    value = (value or "").strip()
    if not value:
        raise ValidationFailed(
            str(_l("The result was not recorded.")),
            errors={"value": [str(_l("Enter the result."))]},
        )
    code = (code or "").strip()[:50] or None
    same = [r for r in order.results if r.code == code]
    previous = same[-1] if same else None
    result = ObservationResult(
        order=order,
        code=code,
        name=(name or "").strip()[:200] or None,
        value=value[:500],
        unit=(unit or "").strip()[:30] or order.service.result_unit,
        reference_range=(reference_range or "").strip()[:100] or order.service.reference_range,
        conclusion=_text("conclusion", conclusion),
        resulted_by_id=principal.user_id,
        resulted_at=utcnow(),
        supersedes_id=previous.id if previous else None,
    )
    session.add(result)
    order.status = OrderStatus.RESULTED
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="ObservationResult",
        entity_id=result.id,
        patient_id=encounter.patient_id,
    )
    if reason:
        _record_amendment(
            session,
            principal,
            encounter,
            reason,
            {
                "result": {
                    "old": _result_summary(order, previous) if previous else None,
                    "new": _result_summary(order, result),
                }
            },
        )
    else:
        _touch(session, encounter)
    return result


def _result_summary(order: ServiceOrder, result: ObservationResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "order_id": order.id,
        "service_code": order.service_code,
        "value": result.value,
        "unit": result.unit,
        "conclusion": result.conclusion,
    }


def current_results(order: ServiceOrder) -> list[ObservationResult]:
    """The results no later result replaced."""
    replaced = {r.supersedes_id for r in order.results if r.supersedes_id}
    return [r for r in order.results if r.id not in replaced]


# --- finishing and signing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Finish:
    disposition: Disposition | str | None
    follow_up_date: dt.date | None = None
    refer_to_facility_code: str | None = None
    refer_reason: str | None = None
    referral_letter_number: str | None = None
    died_at: dt.datetime | None = None
    conclusion: str | None = None
    advice: str | None = None


def _clean_finish(req: Finish, encounter: Encounter, today: dt.date) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    fields: dict[str, Any] = {
        "follow_up_date": None,
        "refer_to_facility_code": None,
        "refer_reason": None,
        "referral_letter_number": None,
        "died_at": None,
    }
    disposition: Disposition | None = None
    try:
        disposition = Disposition(req.disposition) if req.disposition else None
    except ValueError:
        disposition = None
    if disposition is None:
        errors["disposition"] = [
            str(_l("Choose the disposition: home, follow-up, admit, refer out or died."))
        ]
    elif disposition is Disposition.FOLLOW_UP:
        if req.follow_up_date is None:
            errors["follow_up_date"] = [str(_l("Enter the follow-up date."))]
        elif req.follow_up_date <= today:
            errors["follow_up_date"] = [str(_l("The follow-up date must be in the future."))]
        fields["follow_up_date"] = req.follow_up_date
    elif disposition is Disposition.REFER_OUT:
        code = (req.refer_to_facility_code or "").strip().upper()
        if len(code) != 5:
            errors["refer_to_facility_code"] = [str(_l("A facility code has 5 characters."))]
        reason = (req.refer_reason or "").strip()
        if not reason:
            errors["refer_reason"] = [str(_l("Enter the reason for the referral."))]
        elif len(reason) > 500:
            errors["refer_reason"] = [str(_l("At most 500 characters."))]
        letter = (req.referral_letter_number or "").strip()
        if len(letter) > 50:
            errors["referral_letter_number"] = [str(_l("At most 50 characters."))]
        fields.update(
            refer_to_facility_code=code,
            refer_reason=reason,
            referral_letter_number=letter or None,
        )
    elif disposition is Disposition.DIED:
        died_at = req.died_at
        if died_at is None:
            errors["died_at"] = [str(_l("Enter the time of death."))]
        else:
            if died_at.tzinfo is None:  # a form's local time
                died_at = died_at.replace(tzinfo=VN_TZ)
            if died_at > utcnow():
                errors["died_at"] = [str(_l("The time of death is in the future."))]
            fields["died_at"] = died_at
    if not any(d.is_main for d in encounter.diagnoses):
        errors["diagnoses"] = [str(_l("Code the main diagnosis before finishing."))]
    if errors:
        raise ValidationFailed(str(_l("The encounter was not finished.")), errors=errors)
    fields["disposition"] = disposition
    return fields


def _recheck_codes(session: Session, encounter: Encounter, end: dt.date) -> None:
    """The episode is coded with the list in force on its end date (Circular 06/2026)."""
    problems: list[str] = []
    version = catalogs.icd10_version_on(session, end)
    for diagnosis in encounter.diagnoses:
        code = catalogs.icd10_code(session, diagnosis.icd10_code, end)
        if code is None:
            problems.append(
                str(
                    _l(
                        "%(code)s is not valid in the ICD-10 list in force on %(date)s "
                        "(%(list)s); code it again.",
                        code=diagnosis.icd10_code,
                        date=end.strftime("%d/%m/%Y"),
                        list=version.name if version else "-",
                    )
                )
            )
            continue
        problem = _code_problem(
            session, code, main=diagnosis.is_main, sex=encounter.patient.sex, on=end
        )
        if problem:
            problems.append(problem)
            continue
        diagnosis.icd10_version_id = code.version_id
    if problems:
        raise ValidationFailed(
            str(_l("The encounter was not finished.")), errors={"diagnoses": problems}
        )


def finish(
    session: Session,
    principal: Principal,
    encounter_id: int,
    req: Finish,
    *,
    expected_version: int | None = None,
    amendment_reason: str | None = None,
) -> Encounter:
    """Signs the encounter as the acting doctor and locks it. On a signed encounter with
    ``amendment_reason``, amends the disposition (and conclusion, advice) instead."""
    principal.require_any(*DOCTOR_ROLES)
    encounter = _load(session, principal, encounter_id)
    _check_version(encounter, expected_version)
    if (amendment_reason or "").strip():
        # An amendment request must never sign a draft by accident.
        if encounter.status is not EncounterStatus.FINISHED:
            raise Conflict(str(_l("The encounter is not signed yet; there is nothing to amend.")))
        return _amend_disposition(session, principal, encounter, req, amendment_reason)
    _in_progress(encounter)
    today = local_today()
    fields = _clean_finish(req, encounter, today)
    _recheck_codes(session, encounter, today)
    fields.update(_closing_text(req))
    for name, value in fields.items():
        setattr(encounter, name, value)
    now = utcnow()
    encounter.status = EncounterStatus.FINISHED
    encounter.finished_at = now
    encounter.signed_by_id = principal.user_id
    encounter.content_hash = content_hash(encounter)
    try:
        session.flush()
    except StaleDataError as exc:
        raise StaleEncounter() from exc
    others = session.scalar(
        select(Encounter.id).where(
            Encounter.visit_id == encounter.visit_id,
            Encounter.id != encounter.id,
            Encounter.status == EncounterStatus.IN_PROGRESS,
        )
    )
    visit = encounter.visit
    if others is None and visit.status is not VisitStatus.CANCELLED:
        visit.status = VisitStatus.FINISHED
        visit.closed_at = now
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="Encounter",
        entity_id=encounter.id,
        patient_id=encounter.patient_id,
        detail="signed",
    )
    return encounter


def _amend_disposition(
    session: Session,
    principal: Principal,
    encounter: Encounter,
    req: Finish,
    amendment_reason: str | None,
) -> Encounter:
    """The same checks as finishing, with the end date as "today": a follow-up date
    must come after the day the episode ended."""
    reason = _signer_reason(encounter, principal, amendment_reason)
    fields = _clean_finish(req, encounter, end_date(encounter))
    fields.update(_closing_text(req))
    changes = {
        name: {"old": _plain(getattr(encounter, name)), "new": _plain(value)}
        for name, value in fields.items()
        if _plain(getattr(encounter, name)) != _plain(value)
    }
    if not changes:
        raise ValidationFailed(
            str(_l("Nothing to amend: the values given are those already signed.")),
            errors={"disposition": [str(_l("Unchanged."))]},
        )
    for name in changes:
        setattr(encounter, name, fields[name])
    _record_amendment(session, principal, encounter, reason, changes)
    return encounter


# --- the signed content ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "value"):  # an enum
        return value.value
    return str(value)


def content(encounter: Encounter) -> dict[str, Any]:
    """The clinical content the signature covers, as plain JSON values."""
    return {
        "encounter_id": encounter.id,
        "visit_id": encounter.visit_id,
        "patient_id": encounter.patient_id,
        "doctor_id": encounter.doctor_id,
        **{name: _plain(getattr(encounter, name)) for name in TEXT_FIELDS},
        "disposition": _plain(encounter.disposition),
        "follow_up_date": _plain(encounter.follow_up_date),
        "refer_to_facility_code": encounter.refer_to_facility_code,
        "refer_reason": encounter.refer_reason,
        "referral_letter_number": encounter.referral_letter_number,
        "died_at": _plain(encounter.died_at),
        "vitals": [
            {"id": v.id, **{name: _plain(getattr(v, name)) for name in VITAL_RANGES}}
            for v in encounter.vitals
        ],
        "diagnoses": [
            {
                "icd10": d.icd10_code,
                "title": d.title,
                "main": d.is_main,
                "position": d.position,
                "note": d.note,
            }
            for d in sorted(encounter.diagnoses, key=lambda d: (d.position, d.id))
        ],
        "orders": [
            {
                "id": o.id,
                "service_code": o.service_code,
                "quantity": o.quantity,
                "note": o.note,
                "status": _plain(o.status),
                "results": [
                    {
                        "id": r.id,
                        "value": r.value,
                        "unit": r.unit,
                        "reference_range": r.reference_range,
                        "conclusion": r.conclusion,
                        "supersedes_id": r.supersedes_id,
                    }
                    for r in o.results
                ],
            }
            for o in encounter.orders
        ],
    }


def content_hash(encounter: Encounter) -> str:
    canonical = json.dumps(
        content(encounter), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def verify(encounter: Encounter) -> bool:
    """True when the stored content still hashes to what was signed (or last amended)."""
    return encounter.content_hash is not None and encounter.content_hash == content_hash(encounter)
