"""Outpatient prescriptions: drafts built inside an encounter, signing, replacing.

A draft may break the prescribing rules (the builder shows the violations as the doctor
types); signing refuses while any rule is broken. Signing gives the national code, fixes
the content (its SHA-256 is kept) and queues the e-prescription submission in the same
transaction. A signed prescription never changes: a correction is a new prescription,
signed with a new code, that replaces it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import secrets
import string
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from his.db import utcnow
from his.errors import Conflict, NotFound, ValidationFailed
from his.localtime import local_date
from his.models import (
    AuditAction,
    Dispense,
    Drug,
    Encounter,
    EncounterStatus,
    EPrescriptionSubmission,
    Facility,
    Patient,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    PrescriptionType,
    Role,
    TreatmentCourse,
)
from his.services import audit, eprescription
from his.services import prescription_rules as rules
from his.services.access import Principal
from his.text import clean, fold_vi

PRESCRIBER_ROLES = (Role.DOCTOR,)
# Who may read prescriptions: the clinical staff, the pharmacy that dispenses them, admins
# and machine clients; not reception or the cashier.
READ_ROLES = (Role.ADMIN, Role.DOCTOR, Role.NURSE, Role.PHARMACIST, Role.INTEGRATION)

CODE_ALPHABET = string.digits + string.ascii_lowercase
CODE_RANDOM_LENGTH = 7
CODE_ATTEMPTS = 20
MAX_ITEMS = 30
MAX_DAYS = 366  # a sanity bound on input; the prescribing limits are rules
# Units that are measured, not counted: the quantity keeps its decimals.
MEASURED_UNITS = frozenset({"ml", "l", "g", "mg", "mcg", "kg", "lit", "gam"})


@dataclass(frozen=True)
class ItemInput:
    drug_code: str
    dose: Decimal
    times_per_day: int
    days: int
    route: str | None = None
    instructions: str | None = None
    quantity: Decimal | None = None
    quantity_reason: str | None = None


@dataclass(frozen=True)
class PrescriptionInput:
    items: list[ItemInput]
    course: TreatmentCourse = TreatmentCourse.ACUTE
    weight_kg: Decimal | None = None
    age_months: int | None = None
    guardian_name: str | None = None
    guardian_id_number: str | None = None
    advice: str | None = None
    follow_up_date: dt.date | None = None


@dataclass(frozen=True)
class Checked:
    """A prescription with the rules' current verdict on it."""

    prescription: Prescription
    violations: list[rules.Violation]

    def __getattr__(self, name: str):
        return getattr(self.prescription, name)


@dataclass(frozen=True)
class ComputedItem:
    """One line as the builder shows it before anything is saved."""

    drug: Drug | None
    drug_name: str
    computed_quantity: Decimal
    quantity: Decimal
    unit: str


# --- reading ---------------------------------------------------------------------------------


def _visible(principal: Principal):
    return select(Prescription).where(Prescription.facility_id == principal.facility_id)


def _load(
    session: Session, principal: Principal, prescription_id: int, *, lock: bool = False
) -> Prescription:
    """``lock`` holds the row (PostgreSQL) as dispensing does, so a replacement and a
    dispense of one prescription queue up instead of both succeeding."""
    stmt = (
        _visible(principal)
        .where(Prescription.id == prescription_id)
        .options(selectinload(Prescription.items).selectinload(PrescriptionItem.drug))
    )
    if lock:
        stmt = stmt.with_for_update(of=Prescription).execution_options(populate_existing=True)
    rx = session.scalar(stmt)
    if rx is None:
        raise NotFound(str(_l("No prescription has this id at your facility.")))
    return rx


def get_prescription(session: Session, principal: Principal, prescription_id: int) -> Checked:
    principal.require_any(*READ_ROLES)
    rx = _load(session, principal, prescription_id)
    audit.record_read(session, principal, "Prescription", rx.id, rx.patient_id)
    violations = check_stored(session, rx) if rx.status is PrescriptionStatus.DRAFT else []
    return Checked(rx, violations)


def _encounter(session: Session, principal: Principal, encounter_id: int) -> Encounter:
    encounter = session.scalar(
        select(Encounter)
        .where(Encounter.id == encounter_id, Encounter.facility_id == principal.facility_id)
        .options(selectinload(Encounter.diagnoses), selectinload(Encounter.vitals))
    )
    if encounter is None:
        raise NotFound(str(_l("No encounter has this id at your facility.")))
    return encounter


def encounter_for(session: Session, principal: Principal, encounter_id: int) -> Encounter:
    principal.require_any(*READ_ROLES)
    return _encounter(session, principal, encounter_id)


def list_for_encounter(
    session: Session, principal: Principal, encounter_id: int
) -> list[Prescription]:
    principal.require_any(*READ_ROLES)
    encounter = _encounter(session, principal, encounter_id)
    audit.record_read(
        session, principal, "Encounter.prescriptions", encounter.id, encounter.patient_id
    )
    return list(
        session.scalars(
            select(Prescription)
            .where(Prescription.encounter_id == encounter.id)
            .options(selectinload(Prescription.items))
            .order_by(Prescription.id)
        )
    )


def diagnoses_as_signed(session: Session, rx: Prescription) -> list[dict[str, str]] | None:
    """The diagnoses a signed prescription was issued for, as its stored submission holds
    them: an amendment of the encounter after signing does not change the prescription.
    None for a draft."""
    payload = session.scalar(
        select(EPrescriptionSubmission.payload).where(
            EPrescriptionSubmission.prescription_id == rx.id
        )
    )
    if payload is None:
        return None
    return [
        {"icd10_code": d["ma_chan_doan"], "title": d["ten_chan_doan"]}
        for d in payload.get("chan_doan", [])
    ]


# --- computing -------------------------------------------------------------------------------


def is_measured(drug: Drug | None) -> bool:
    return drug is not None and fold_vi(drug.unit) in MEASURED_UNITS


def compute_quantity(drug: Drug | None, dose: Decimal, times_per_day: int, days: int) -> Decimal:
    """dose × takes a day × days, rounded up to whole units of anything counted (tablets,
    capsules, sachets, ampoules): nobody dispenses half a tablet."""
    raw = Decimal(dose) * times_per_day * days
    if is_measured(drug):
        return raw.quantize(Decimal("0.001"), rounding=ROUND_CEILING)
    return raw.to_integral_value(rounding=ROUND_CEILING)


def drug_name(drug: Drug) -> str:
    """Written by active ingredient as Circular 26 requires: INN strength (brand); a drug of
    several ingredients by its brand, the ingredients after it."""
    inn = clean(drug.active_ingredient)
    strength = clean(drug.strength or "")
    brand = clean(drug.brand or "")
    if "+" in inn and brand:
        return f"{brand} ({inn}) {strength}".strip()
    text = f"{inn} {strength}".strip()
    return f"{text} ({brand})" if brand else text


# Doses and quantities are stored with 3 decimals: a finer number would be rounded, 0.0001 to 0.
_TOO_FINE = _l("At most 3 decimals: the smallest value is 0.001.")


def _too_fine(number: Decimal) -> bool:
    return Decimal(number).normalize().as_tuple().exponent < -3


def _plain_input_errors(items: list[ItemInput]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not items:
        errors["items"] = [str(_l("Add at least one drug."))]
    if len(items) > MAX_ITEMS:
        errors["items"] = [str(_l("At most %(n)s drugs on one prescription.", n=MAX_ITEMS))]
    for i, item in enumerate(items):
        if not (item.drug_code or "").strip():
            errors[f"items.{i}.drug_code"] = [str(_l("Choose a drug."))]
        if item.dose is None or item.dose <= 0:
            errors[f"items.{i}.dose"] = [str(_l("The dose must be more than 0."))]
        elif _too_fine(item.dose):
            errors[f"items.{i}.dose"] = [str(_TOO_FINE)]
        if item.times_per_day is None or not 1 <= item.times_per_day <= 24:
            errors[f"items.{i}.times_per_day"] = [str(_l("Between 1 and 24 takes a day."))]
        if item.days is None or not 1 <= item.days <= MAX_DAYS:
            errors[f"items.{i}.days"] = [
                str(_l("The number of days must be between 1 and %(max)s.", max=MAX_DAYS))
            ]
        if item.quantity is not None and item.quantity <= 0:
            errors[f"items.{i}.quantity"] = [str(_l("The quantity must be more than 0."))]
        elif item.quantity is not None and _too_fine(item.quantity):
            errors[f"items.{i}.quantity"] = [str(_TOO_FINE)]
    return errors


def _facts(
    session: Session,
    facility_id: int,
    on: dt.date,
    encounter: Encounter,
    patient: Patient,
    data: PrescriptionInput,
    exclude: tuple[int | None, ...] = (),
) -> tuple[rules.RxFacts, list[ComputedItem]]:
    """``exclude``: the prescription itself and the one it replaces, whose drugs are not
    "another prescription" of the encounter."""
    item_facts, computed = [], []
    for item in data.items:
        code = item.drug_code.strip()
        found = rules.item_facts(
            session,
            facility_id,
            code,
            on,
            days=item.days,
            quantity=Decimal(0),
            computed_quantity=Decimal(0),
        )
        drug = found.drug
        quantity_calc = compute_quantity(drug, item.dose, item.times_per_day, item.days)
        quantity = Decimal(item.quantity) if item.quantity is not None else quantity_calc
        item_facts.append(
            rules.ItemFacts(
                drug_code=code,
                drug=drug,
                inactive=found.inactive,
                days=item.days,
                quantity=quantity,
                computed_quantity=quantity_calc,
                quantity_reason=item.quantity_reason,
            )
        )
        computed.append(
            ComputedItem(
                drug=drug,
                drug_name=drug_name(drug) if drug else code,
                computed_quantity=quantity_calc,
                quantity=quantity,
                unit=drug.unit if drug else "",
            )
        )
    facts = rules.RxFacts(
        on=on,
        course=data.course,
        birth=patient.birth,
        diagnosis_codes=tuple(d.icd10_code for d in encounter.diagnoses),
        allergies=tuple(a.substance for a in patient.allergies),
        items=tuple(item_facts),
        age_months=data.age_months,
        weight_kg=data.weight_kg,
        guardian_name=data.guardian_name,
        other_items=_other_items(session, encounter.id, exclude),
    )
    return facts, computed


def _other_items(
    session: Session, encounter_id: int, exclude: tuple[int | None, ...]
) -> tuple[rules.OtherItem, ...]:
    """The drugs of the encounter's other live prescriptions, drafts and signed ones."""
    stmt = (
        select(Prescription.code, Drug.active_ingredient)
        .join(PrescriptionItem, PrescriptionItem.prescription_id == Prescription.id)
        .join(Drug, Drug.id == PrescriptionItem.drug_id)
        .where(
            Prescription.encounter_id == encounter_id,
            Prescription.status.in_((PrescriptionStatus.DRAFT, PrescriptionStatus.SIGNED)),
        )
        .order_by(Prescription.id, PrescriptionItem.position)
    )
    ids = [i for i in exclude if i is not None]
    if ids:
        stmt = stmt.where(Prescription.id.not_in(ids))
    return tuple(rules.OtherItem(code, ingredient) for code, ingredient in session.execute(stmt))


def prefill(session: Session, encounter: Encounter, on: dt.date) -> dict[str, object]:
    """What the patient's record already says: age in months (for a small child), the last
    weight measured in the encounter, the guardian."""
    patient = encounter.patient
    months = patient.birth.months_on(on)
    weights = [v.weight for v in encounter.vitals if v.weight]
    return {
        "age_months": months if months < rules.limits()["child_months"] else None,
        "weight_kg": weights[-1] if weights else None,
        "guardian_name": patient.guardian_name,
        "guardian_id_number": patient.guardian_cccd,
    }


def _with_prefill(session: Session, encounter: Encounter, data: PrescriptionInput, on: dt.date):
    values = prefill(session, encounter, on)
    changes = {
        name: values[name]
        for name in ("age_months", "weight_kg", "guardian_name", "guardian_id_number")
        if getattr(data, name) is None
    }
    return dataclasses.replace(data, **changes)


def validate(
    session: Session,
    principal: Principal,
    encounter_id: int,
    data: PrescriptionInput,
    *,
    today: dt.date | None = None,
    prescription_id: int | None = None,
    replaces_id: int | None = None,
) -> tuple[list[rules.Violation], list[ComputedItem]]:
    """A dry run: the violations and computed quantities, nothing saved. ``prescription_id``
    is the draft being edited, ``replaces_id`` the prescription being replaced: their own
    drugs do not count as prescribed elsewhere in the encounter."""
    principal.require_any(*PRESCRIBER_ROLES)
    encounter = _encounter(session, principal, encounter_id)
    on = today or local_date(utcnow())
    errors = _plain_input_errors(data.items)
    if errors:
        raise ValidationFailed(str(_l("The prescription could not be checked.")), errors=errors)
    data = _with_prefill(session, encounter, data, on)
    facts, computed = _facts(
        session,
        principal.facility_id,
        on,
        encounter,
        encounter.patient,
        data,
        exclude=(prescription_id, replaces_id),
    )
    return rules.check(facts), computed


def check_stored(session: Session, rx: Prescription, *, today: dt.date | None = None):
    on = today or local_date(utcnow())
    encounter = session.get(Encounter, rx.encounter_id)
    assert encounter is not None
    facts, _ = _facts(
        session,
        rx.facility_id,
        on,
        encounter,
        rx.patient,
        _input_of(rx),
        exclude=(rx.id, rx.replaces_id),
    )
    return rules.check(facts)


def _input_of(rx: Prescription) -> PrescriptionInput:
    return PrescriptionInput(
        items=[
            ItemInput(
                drug_code=i.drug_code,
                dose=i.dose,
                times_per_day=i.times_per_day,
                days=i.days,
                route=i.route,
                instructions=i.instructions,
                quantity=i.quantity,
                quantity_reason=i.quantity_reason,
            )
            for i in rx.items
        ],
        course=rx.course,
        weight_kg=rx.weight_kg,
        age_months=rx.age_months,
        guardian_name=rx.guardian_name,
        guardian_id_number=rx.guardian_id_number,
        advice=rx.advice,
        follow_up_date=rx.follow_up_date,
    )


# --- drafts ----------------------------------------------------------------------------------


def _text(value: str | None) -> str | None:
    value = clean(value or "")
    return value or None


def _fill(
    session: Session, rx: Prescription, encounter: Encounter, data: PrescriptionInput, on: dt.date
) -> list[rules.Violation]:
    """Writes the input into the draft; refuses (422) what cannot be stored at all."""
    errors = _plain_input_errors(data.items)
    if errors:
        raise ValidationFailed(str(_l("The prescription could not be saved.")), errors=errors)
    facts, computed = _facts(
        session,
        rx.facility_id,
        on,
        encounter,
        encounter.patient,
        data,
        exclude=(rx.id, rx.replaces_id),
    )
    violations = rules.check(facts)
    missing = [v for v in violations if v.rule in (rules.DRUG_NOT_IN_CATALOG, rules.DRUG_INACTIVE)]
    if missing:
        raise ValidationFailed(
            str(_l("The prescription could not be saved.")),
            errors=rules.as_errors(missing),
            extra={"violations": [v.as_dict() for v in missing]},
        )
    for old in list(rx.items):
        rx.items.remove(old)
        session.delete(old)
    session.flush()
    for position, (item, calc) in enumerate(zip(data.items, computed, strict=True)):
        assert calc.drug is not None
        rx.items.append(
            PrescriptionItem(
                position=position,
                drug_id=calc.drug.id,
                drug=calc.drug,
                drug_code=calc.drug.code,
                drug_name=calc.drug_name,
                dose=Decimal(item.dose),
                times_per_day=item.times_per_day,
                days=item.days,
                route=_text(item.route) or calc.drug.route,
                instructions=_text(item.instructions),
                computed_quantity=calc.computed_quantity,
                quantity=calc.quantity,
                quantity_reason=_text(item.quantity_reason),
            )
        )
    rx.rx_type = rules.rx_type_of([c.drug.rx_class for c in computed if c.drug])
    rx.course = data.course
    rx.weight_kg = data.weight_kg
    rx.age_months = data.age_months
    rx.guardian_name = _text(data.guardian_name)
    rx.guardian_id_number = _text(data.guardian_id_number)
    rx.advice = _text(data.advice)
    rx.follow_up_date = data.follow_up_date
    return violations


def _require_in_progress(encounter: Encounter) -> None:
    if encounter.status is not EncounterStatus.IN_PROGRESS:
        raise Conflict(
            str(_l("The encounter is finished: a prescription is written during the examination."))
        )


def create_draft(
    session: Session,
    principal: Principal,
    encounter_id: int,
    data: PrescriptionInput,
    *,
    today: dt.date | None = None,
) -> Checked:
    principal.require_any(*PRESCRIBER_ROLES)
    encounter = _encounter(session, principal, encounter_id)
    _require_in_progress(encounter)
    on = today or local_date(utcnow())
    data = _with_prefill(session, encounter, data, on)
    rx = Prescription(
        encounter_id=encounter.id,
        facility_id=encounter.facility_id,
        patient_id=encounter.patient_id,
        prescriber_id=principal.user_id,
        status=PrescriptionStatus.DRAFT,
        rx_type=PrescriptionType.OTHER,  # set from the drugs by _fill
    )
    rx.patient = encounter.patient
    rx.encounter = encounter
    session.add(rx)
    violations = _fill(session, rx, encounter, data, on)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Prescription",
        entity_id=rx.id,
        patient_id=rx.patient_id,
    )
    return Checked(rx, violations)


def _draft(session: Session, principal: Principal, prescription_id: int) -> Prescription:
    rx = _load(session, principal, prescription_id)
    if rx.status is not PrescriptionStatus.DRAFT:
        raise Conflict(
            str(
                _l(
                    "Only a draft can be changed: a signed prescription is replaced by a new "
                    "one instead."
                )
            ),
            errors={"status": [rx.status.value]},
        )
    return rx


def draft_input(session: Session, principal: Principal, prescription_id: int):
    """A draft's content as input, for a partial change (PATCH) to start from."""
    principal.require_any(*PRESCRIBER_ROLES)
    return _input_of(_draft(session, principal, prescription_id))


def update_draft(
    session: Session,
    principal: Principal,
    prescription_id: int,
    data: PrescriptionInput,
    *,
    today: dt.date | None = None,
) -> Checked:
    principal.require_any(*PRESCRIBER_ROLES)
    rx = _draft(session, principal, prescription_id)
    encounter = _encounter(session, principal, rx.encounter_id)
    _require_in_progress(encounter)
    on = today or local_date(utcnow())
    violations = _fill(session, rx, encounter, data, on)
    session.flush()
    audit.record_change(session, principal, "Prescription", rx.id, rx.patient_id, "draft")
    return Checked(rx, violations)


def cancel_draft(session: Session, principal: Principal, prescription_id: int) -> Prescription:
    principal.require_any(*PRESCRIBER_ROLES)
    rx = _draft(session, principal, prescription_id)
    rx.status = PrescriptionStatus.CANCELLED
    audit.record_change(session, principal, "Prescription", rx.id, rx.patient_id, "cancelled")
    return rx


# --- signing ---------------------------------------------------------------------------------


def new_code(session: Session, facility_code: str, rx_type) -> str:
    """xxxxxyyyyyyy-z: the facility code, 7 random characters never used at the facility
    (any type), the type. Random, never a sequence: a code must not be guessable."""
    for _ in range(CODE_ATTEMPTS):
        stem = facility_code + "".join(
            secrets.choice(CODE_ALPHABET) for _ in range(CODE_RANDOM_LENGTH)
        )
        taken = session.scalar(select(exists().where(Prescription.code.like(f"{stem}-%"))))
        if not taken:
            return f"{stem}-{rx_type.value}"
    raise Conflict(str(_l("No free prescription code was found; try again.")))


def _canonical(number) -> str | None:
    """1, 1.0 and 1.000 are one number: the hash must not change when the database pads it."""
    if number is None:
        return None
    text = f"{Decimal(number):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def content_hash(rx: Prescription) -> str:
    """SHA-256 over the signed content as canonical JSON."""
    content = {
        "code": rx.code,
        "type": rx.rx_type.value,
        "patient_id": rx.patient_id,
        "encounter_id": rx.encounter_id,
        "signed_by_id": rx.signed_by_id,
        "signed_at": rx.signed_at.isoformat() if rx.signed_at else None,
        "course": rx.course.value,
        "age_months": rx.age_months,
        "weight_kg": _canonical(rx.weight_kg),
        "guardian_name": rx.guardian_name,
        "guardian_id_number": rx.guardian_id_number,
        "advice": rx.advice,
        "follow_up_date": rx.follow_up_date.isoformat() if rx.follow_up_date else None,
        "replaces_id": rx.replaces_id,
        "items": [
            {
                "drug_code": i.drug_code,
                "drug_name": i.drug_name,
                "dose": _canonical(i.dose),
                "times_per_day": i.times_per_day,
                "days": i.days,
                "route": i.route,
                "instructions": i.instructions,
                "quantity": _canonical(i.quantity),
                "quantity_reason": i.quantity_reason,
            }
            for i in rx.items
        ],
    }
    text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sign(
    session: Session, principal: Principal, rx: Prescription, now: dt.datetime
) -> Prescription:
    violations = check_stored(session, rx, today=local_date(now))
    if violations:
        raise ValidationFailed(
            str(_l("The prescription breaks the prescribing rules and cannot be signed.")),
            errors=rules.as_errors(violations),
            extra={"violations": [v.as_dict() for v in violations]},
        )
    facility = session.get(Facility, rx.facility_id)
    assert facility is not None
    for _ in range(CODE_ATTEMPTS):
        rx.code = new_code(session, facility.code.upper(), rx.rx_type)
        try:
            # Two signings at once may draw the same code: the unique index decides.
            with session.begin_nested():
                session.flush()
            break
        except IntegrityError:
            continue
    else:  # pragma: no cover - 36**7 codes per facility
        raise Conflict(str(_l("No free prescription code was found; try again.")))
    rx.status = PrescriptionStatus.SIGNED
    rx.signed_at = now
    rx.signed_by_id = principal.user_id
    rx.valid_until = local_date(now) + dt.timedelta(days=rules.limits()["valid_days"])
    rx.content_hash = content_hash(rx)
    session.flush()
    eprescription.queue(session, rx, now)
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="Prescription",
        entity_id=rx.id,
        patient_id=rx.patient_id,
        detail="signed",
    )
    return rx


def sign(
    session: Session,
    principal: Principal,
    prescription_id: int,
    *,
    now: dt.datetime | None = None,
) -> Prescription:
    principal.require_any(*PRESCRIBER_ROLES)
    rx = _draft(session, principal, prescription_id)
    encounter = _encounter(session, principal, rx.encounter_id)
    _require_in_progress(encounter)
    return _sign(session, principal, rx, now or utcnow())


def replace(
    session: Session,
    principal: Principal,
    prescription_id: int,
    reason: str,
    data: PrescriptionInput,
    *,
    now: dt.datetime | None = None,
) -> Prescription:
    """Issues and signs a new prescription in place of a signed one, which is kept, marked
    replaced. Allowed after the encounter is finished: that is when errors are found.

    The old one's e-prescription submission, if not accepted yet, is withdrawn so only the
    new one reaches the national system; if it was accepted, the new payload names it."""
    principal.require_any(*PRESCRIBER_ROLES)
    old = _load(session, principal, prescription_id, lock=True)
    if old.status is not PrescriptionStatus.SIGNED:
        raise Conflict(
            str(_l("Only a signed prescription can be replaced.")),
            errors={"status": [old.status.value]},
        )
    if not clean(reason or ""):
        raise ValidationFailed(
            str(_l("Give the reason for the replacement.")),
            errors={"reason": [str(_l("Give the reason for the replacement."))]},
        )
    dispensed = session.scalar(select(exists().where(Dispense.prescription_id == old.id)))
    if dispensed:
        raise Conflict(str(_l("This prescription has been dispensed; it cannot be replaced.")))
    now = now or utcnow()
    encounter = _encounter(session, principal, old.encounter_id)
    # Held from here: whether the old one was accepted decides the new payload, and a
    # sender must not record an answer for it in between.
    old_submission = eprescription.locked_submission(session, old.id)
    new = Prescription(
        encounter_id=old.encounter_id,
        facility_id=old.facility_id,
        patient_id=old.patient_id,
        prescriber_id=principal.user_id,
        status=PrescriptionStatus.DRAFT,
        rx_type=PrescriptionType.OTHER,  # set from the drugs by _fill
        replaces_id=old.id,
        replacement_reason=clean(reason)[:500],
    )
    new.patient = old.patient
    new.encounter = encounter
    session.add(new)
    _fill(
        session,
        new,
        encounter,
        _with_prefill(session, encounter, data, local_date(now)),
        local_date(now),
    )
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Prescription",
        entity_id=new.id,
        patient_id=new.patient_id,
        detail=f"replaces {old.id}",
    )
    _sign(session, principal, new, now)
    old.status = PrescriptionStatus.REPLACED
    if old_submission is not None:
        eprescription.withdraw(old_submission)
    audit.record_change(
        session, principal, "Prescription", old.id, old.patient_id, f"replaced by {new.id}"
    )
    return new
