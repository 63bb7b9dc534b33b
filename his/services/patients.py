"""The province-wide patient index: registering, changing, finding and merging patients.

Input arrives as the REST API's shape (a dict; the web form builds the same). Every field
is checked and every problem reported at once, keyed by the API field name, and nothing
is stored unless all of it is valid. Every read, search and change is audited.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from his.db import utcnow
from his.errors import Conflict, DomainError, InvalidValue, NotFound, ValidationFailed
from his.identifiers import BhytCard, parse_bhyt_card, parse_cccd, parse_cmnd, parse_passport
from his.localtime import local_today
from his.models import (
    AllergySeverity,
    AuditAction,
    Coverage,
    DiagnosticReport,
    Encounter,
    IdentifierType,
    Patient,
    PatientAllergy,
    PatientIdentifier,
    PatientMerge,
    Prescription,
    Role,
    Sex,
    Visit,
)
from his.partial_date import PartialDate
from his.person_name import normalise_full_name, split_name
from his.phone import normalise_phone
from his.services import audit, counters, patient_search
from his.services.access import PATIENT_ROLES, REGISTRATION_ROLES, Principal
from his.services.admin_units import resolve_address
from his.services.bhyt_check import CardChecker, apply_check
from his.services.patient_search import SearchQuery
from his.text import clean, fold_vi

MRN_COUNTER = "mrn"
GUARDIAN_AGE_LIMIT = 6  # children under 6 come with a guardian
TYPED_SYSTEMS = {"cmnd": IdentifierType.CMND, "passport": IdentifierType.PASSPORT}


def format_mrn(number: int) -> str:
    return f"BN{number:08d}"


def _eager():
    return [
        selectinload(Patient.identifiers),
        selectinload(Patient.allergies),
        selectinload(Patient.coverages),
    ]


# --- reading -----------------------------------------------------------------------------


def load_patient(session: Session, patient_id: int) -> Patient:
    patient = session.get(Patient, patient_id, options=_eager())
    if patient is None:
        raise NotFound(str(_l("No patient has this id.")))
    return patient


def get_patient(session: Session, principal: Principal, patient_id: int) -> Patient:
    """Any facility's staff may read the province-wide index; the read is recorded."""
    principal.require_any(*PATIENT_ROLES)
    patient = load_patient(session, patient_id)
    audit.record_read(session, principal, "Patient", patient.id, patient.id)
    return patient


# --- checking input ------------------------------------------------------------------------


class _Errors:
    """Collects one or more messages per field; raised together at the end."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: object) -> None:
        self.by_field.setdefault(field, []).append(str(message))

    def run(self, field: str, check, *args, **kwargs):
        try:
            return check(*args, **kwargs)
        except InvalidValue as exc:
            self.add(field, exc.message)
        except ValidationFailed as exc:
            for name, messages in exc.errors.items():
                for message in messages:
                    self.add(name if "." in name else f"{field}.{name}", message)
        return None

    def raise_if_any(self, detail: object) -> None:
        if self.by_field:
            raise ValidationFailed(str(detail), errors=self.by_field)


@dataclass
class Cleaned:
    """Validated values, ready to be written; only the keys given are present."""

    values: dict[str, Any]
    cccd: str | None = None
    extra_identifiers: list[tuple[IdentifierType, str, str]] | None = None
    allergies: list[tuple[str, str | None, AllergySeverity]] | None = None
    insurance: dict[str, Any] | None = None


def _clean(session: Session, data: dict[str, Any], current: Patient | None) -> Cleaned:
    """Checks the fields present in ``data``; for an update, missing ones keep their value."""
    errors = _Errors()
    today = local_today()
    values: dict[str, Any] = {}
    cleaned = Cleaned(values=values)

    def given(key: str) -> bool:
        return key in data

    if given("full_name"):
        name = errors.run("full_name", normalise_full_name, data["full_name"] or "")
        if name:
            values["full_name"] = name
            family, middle, given_name = split_name(name)
            values["family_name"] = clean(data.get("family_name") or family) or None
            values["middle_name"] = clean(data.get("middle_name") or middle or "") or None
            values["given_name"] = clean(data.get("given_name") or given_name) or None
            values["search_name"] = fold_vi(name)
    if given("sex") and data["sex"]:
        try:
            values["sex"] = Sex(data["sex"])
        except ValueError:
            errors.add("sex", _l("Sex must be male, female or undetermined."))
    birth: PartialDate | None = None
    if given("birth_date"):
        birth = errors.run("birth_date", PartialDate.parse, data["birth_date"] or "", today=today)
        if birth:
            values.update(birth_year=birth.year, birth_month=birth.month, birth_day=birth.day)
    elif current is not None:
        birth = current.birth
    sex = values.get("sex", current.sex if current else None)

    if given("cccd") and data["cccd"]:
        cleaned.cccd = errors.run(
            "cccd", parse_cccd, data["cccd"], birth_year=birth.year if birth else None, sex=sex
        )
    elif given("cccd"):
        cleaned.cccd = ""  # an explicit empty value removes it
    if given("phone"):
        values["phone"] = (
            errors.run("phone", normalise_phone, data["phone"]) if data["phone"] else None
        )
    for key, size in (("ethnicity_code", 2), ("occupation_code", 5)):
        if given(key):
            code = (data[key] or "").strip() or None
            if code is not None and not (code.isdigit() and len(code) == size):
                errors.add(key, _l("Use the %(size)s-digit code.", size=size))
            values[key] = code
    if given("nationality"):
        nationality = (data["nationality"] or "VN").strip().upper()
        if not (nationality.isalpha() and len(nationality) in (2, 3)):
            errors.add("nationality", _l("Use the ISO 3166 country code, e.g. VN."))
        values["nationality"] = nationality
    if given("address"):
        address = data["address"] or {}
        resolved = errors.run(
            "address",
            resolve_address,
            session,
            province_code=address.get("province_code"),
            commune_code=address.get("commune_code"),
            legacy_province_code=address.get("legacy_province_code"),
            legacy_district_code=address.get("legacy_district_code"),
            legacy_commune_code=address.get("legacy_commune_code"),
        )
        values["address_line"] = clean(address.get("line") or "") or None
        if resolved:
            values.update(
                province_code=resolved.province_code,
                commune_code=resolved.commune_code,
                legacy_province_code=resolved.legacy_province_code,
                legacy_district_code=resolved.legacy_district_code,
                legacy_commune_code=resolved.legacy_commune_code,
            )
    if given("guardian"):
        guardian = data["guardian"] or {}
        values["guardian_name"] = (
            errors.run("guardian.name", normalise_full_name, guardian["name"])
            if guardian.get("name")
            else None
        )
        values["guardian_relation"] = clean(guardian.get("relation") or "") or None
        values["guardian_phone"] = (
            errors.run("guardian.phone", normalise_phone, guardian["phone"])
            if guardian.get("phone")
            else None
        )
        values["guardian_cccd"] = (
            errors.run("guardian.cccd", parse_cccd, guardian["cccd"])
            if guardian.get("cccd")
            else None
        )
    if birth is not None and birth.age_on(today) < GUARDIAN_AGE_LIMIT:
        guardian_name = values.get("guardian_name", current.guardian_name if current else None)
        if not guardian_name:
            errors.add("guardian.name", _l("A child under 6 needs a guardian: enter their name."))
    if given("identifiers"):
        cleaned.extra_identifiers = []
        for n, item in enumerate(data["identifiers"] or []):
            system = (item.get("system") or "").strip()
            value = (item.get("value") or "").strip()
            kind = TYPED_SYSTEMS.get(system.lower(), IdentifierType.EXTERNAL)
            if kind is IdentifierType.CMND:
                value = errors.run(f"identifiers.{n}.value", parse_cmnd, value)
                system = ""
            elif kind is IdentifierType.PASSPORT:
                value = errors.run(f"identifiers.{n}.value", parse_passport, value)
                system = ""
            elif not system or not value:
                errors.add(f"identifiers.{n}", _l("Give both the system and the value."))
            if value and (kind, system, value) in cleaned.extra_identifiers:
                errors.add(f"identifiers.{n}", _l("This identifier is already in the list."))
            elif value:
                cleaned.extra_identifiers.append((kind, system, value))
    if given("allergies"):
        cleaned.allergies = []
        for n, item in enumerate(data["allergies"] or []):
            substance = clean(item.get("substance") or "")
            if not substance:
                errors.add(f"allergies.{n}.substance", _l("Name the substance."))
                continue
            try:
                severity = AllergySeverity(item.get("severity") or "unknown")
            except ValueError:
                errors.add(
                    f"allergies.{n}.severity",
                    _l("Severity must be mild, moderate, severe or unknown."),
                )
                continue
            cleaned.allergies.append(
                (substance, clean(item.get("reaction") or "") or None, severity)
            )
    if given("insurance") and data["insurance"]:
        cleaned.insurance = _clean_insurance(errors, data["insurance"], today)
    if current is None:
        for key in ("full_name", "sex", "birth_date"):
            if not given(key) or data[key] in (None, ""):
                errors.by_field.setdefault(key, [str(_l("This field is required."))])
    errors.raise_if_any(_l("Some fields are not valid; see errors."))
    return cleaned


def _clean_insurance(
    errors: _Errors, insurance: dict[str, Any], today: dt.date
) -> dict[str, Any] | None:
    card = errors.run("insurance.card_number", parse_bhyt_card, insurance.get("card_number") or "")
    if card is None:
        return None
    out: dict[str, Any] = {"card": card}
    for key in ("valid_from", "valid_to", "five_year_date"):
        value = insurance.get(key)
        if value is not None and not isinstance(value, dt.date):
            errors.add(f"insurance.{key}", _l("Not a valid date."))
            value = None
        out[key] = value
    if out["valid_from"] and out["valid_to"] and out["valid_from"] > out["valid_to"]:
        errors.add("insurance.valid_to", _l("The card cannot end before it starts."))
    facility = (insurance.get("registered_facility_code") or "").strip() or None
    if facility is not None and len(facility) != 5:
        errors.add("insurance.registered_facility_code", _l("A facility code has 5 characters."))
    out["registered_facility_code"] = facility
    level = insurance.get("benefit_level")
    if level is not None and card.benefit_level is not None and level != card.benefit_level:
        errors.add(
            "insurance.benefit_level",
            _l("Character 3 of the card says benefit level %(level)s.", level=card.benefit_level),
        )
    out["benefit_level"] = card.benefit_level or level
    area = (insurance.get("area_code") or "").strip().upper() or None
    if area is not None and area not in ("K1", "K2", "K3"):
        errors.add("insurance.area_code", _l("The area code is K1, K2 or K3."))
    out["area_code"] = area
    return out


# --- duplicates ----------------------------------------------------------------------------


def _identifier_owner(
    session: Session, kind: IdentifierType, system: str, value: str
) -> int | None:
    return session.scalar(
        select(PatientIdentifier.patient_id).where(
            PatientIdentifier.type == kind,
            PatientIdentifier.system == system,
            PatientIdentifier.value == value,
        )
    )


def _refuse_taken_identifiers(session: Session, cleaned: Cleaned, patient_id: int | None) -> None:
    """One CCCD, one BHYT number, one external id: one patient. 409 names the owner."""
    wanted: list[tuple[str, IdentifierType, str, str]] = []
    if cleaned.cccd:
        wanted.append(("cccd", IdentifierType.CCCD, "", cleaned.cccd))
    if cleaned.insurance:
        wanted.append(
            (
                "insurance.card_number",
                IdentifierType.BHYT,
                "",
                cleaned.insurance["card"].insurance_number,
            )
        )
    for n, (kind, system, value) in enumerate(cleaned.extra_identifiers or []):
        wanted.append((f"identifiers.{n}.value", kind, system, value))
    for field, kind, system, value in wanted:
        owner = _identifier_owner(session, kind, system, value)
        if owner is not None and owner != patient_id:
            raise Conflict(
                str(_l("Another patient already has this number.")),
                errors={field: [str(_l("Already recorded for patient %(id)s.", id=owner))]},
                extra={"existing_patient": {"id": owner, "href": f"/api/v1/patients/{owner}"}},
                code="duplicate-identifier",
            )


def possible_duplicates(
    session: Session, search_name: str, birth: PartialDate, phone: str | None, exclude: int | None
) -> list[Patient]:
    """The same folded name and birth date, or the same name and phone."""
    same_birth = and_(
        Patient.birth_year == birth.year,
        Patient.birth_month.is_(None)
        if birth.month is None
        else Patient.birth_month == birth.month,
        Patient.birth_day.is_(None) if birth.day is None else Patient.birth_day == birth.day,
    )
    match = same_birth if not phone else or_(same_birth, Patient.phone == phone)
    stmt = select(Patient).where(
        Patient.search_name == search_name, Patient.merged_into_id.is_(None), match
    )
    if exclude is not None:
        stmt = stmt.where(Patient.id != exclude)
    return list(session.scalars(stmt.limit(10)))


# --- writing ---------------------------------------------------------------------------------


def _apply(
    session: Session, patient: Patient, cleaned: Cleaned, checker: CardChecker | None
) -> None:
    for key, value in cleaned.values.items():
        setattr(patient, key, value)
    if cleaned.cccd is not None:
        _set_identifier(patient, IdentifierType.CCCD, cleaned.cccd or None)
    if cleaned.extra_identifiers is not None:
        _set_other_identifiers(patient, cleaned.extra_identifiers)
    if cleaned.allergies is not None:
        patient.allergies = [
            PatientAllergy(substance=s, reaction=r, severity=sev) for s, r, sev in cleaned.allergies
        ]
    if cleaned.insurance is not None:
        _add_card(session, patient, cleaned.insurance, checker)


def _set_identifier(patient: Patient, kind: IdentifierType, value: str | None) -> None:
    """The patient's one identifier of a national kind, changed in place: deleting and
    re-inserting the same value would trip the uniqueness check, since SQLAlchemy
    flushes inserts before deletes."""
    current = next((i for i in patient.identifiers if i.type == kind), None)
    if value is None:
        if current is not None:
            patient.identifiers.remove(current)
    elif current is None:
        patient.identifiers.append(PatientIdentifier(type=kind, value=value))
    else:
        current.value = value


def _set_other_identifiers(patient: Patient, wanted: list[tuple[IdentifierType, str, str]]) -> None:
    """CMND, passport and other systems' ids become exactly ``wanted``; rows that stay
    are kept as they are (for the same reason as in ``_set_identifier``)."""
    national = (IdentifierType.CCCD, IdentifierType.BHYT, IdentifierType.MRN)
    keys = set(wanted)
    for row in [i for i in patient.identifiers if i.type not in national]:
        if (row.type, row.system, row.value) in keys:
            keys.discard((row.type, row.system, row.value))
        else:
            patient.identifiers.remove(row)
    for kind, system, value in wanted:
        if (kind, system, value) in keys:
            patient.identifiers.append(PatientIdentifier(type=kind, system=system, value=value))


def _add_card(
    session: Session, patient: Patient, insurance: dict[str, Any], checker: CardChecker | None
) -> None:
    card = insurance["card"]
    current = patient.coverage
    details = ("valid_from", "valid_to", "registered_facility_code", "area_code", "five_year_date")
    if (
        current is not None
        and current.card_number == card.number
        and all(insurance.get(k) in (None, getattr(current, k)) for k in details)
    ):
        return  # the same card presented again: nothing new to record
    coverage = Coverage(
        patient=patient,
        card_number=card.number,
        insurance_number=card.insurance_number,
        group_code=card.group_code,
        benefit_level=insurance.get("benefit_level"),
        issuing_province=card.province_code,
        valid_from=insurance.get("valid_from"),
        valid_to=insurance.get("valid_to"),
        registered_facility_code=insurance.get("registered_facility_code"),
        area_code=insurance.get("area_code"),
        five_year_date=insurance.get("five_year_date"),
    )
    session.add(coverage)
    _set_identifier(patient, IdentifierType.BHYT, card.insurance_number)
    if checker is not None:
        _check_card(session, patient, coverage, card, checker)


def _check_card(
    session: Session, patient: Patient, coverage: Coverage, card: BhytCard, checker: CardChecker
) -> None:
    result = checker.check(
        session, card, full_name=patient.full_name, birth=patient.birth, on=local_today()
    )
    apply_check(coverage, result)


def recheck_card(
    session: Session, principal: Principal, patient_id: int, checker: CardChecker
) -> Coverage:
    """Checks the current card again, e.g. once the gateway is back."""
    principal.require_any(*REGISTRATION_ROLES)
    patient = load_patient(session, patient_id)
    coverage = patient.coverage
    if coverage is None:
        message = str(_l("The patient has no BHYT card on file."))
        raise ValidationFailed(message, errors={"insurance": [message]})
    _check_card(session, patient, coverage, parse_bhyt_card(coverage.card_number), checker)
    session.flush()
    audit.record_change(session, principal, "Coverage", coverage.id, patient.id, "card check")
    return coverage


def register_patient(
    session: Session,
    principal: Principal,
    data: dict[str, Any],
    *,
    checker: CardChecker | None = None,
    allow_possible_duplicate: bool = False,
) -> Patient:
    principal.require_any(*REGISTRATION_ROLES)
    cleaned = _clean(session, data, None)
    _refuse_taken_identifiers(session, cleaned, None)
    values = cleaned.values
    birth = PartialDate(values["birth_year"], values.get("birth_month"), values.get("birth_day"))
    if not allow_possible_duplicate:
        similar = possible_duplicates(
            session, values["search_name"], birth, values.get("phone"), None
        )
        if similar:
            raise PossibleDuplicate(similar)
    mrn = format_mrn(counters.next_value(session, MRN_COUNTER))
    patient = Patient(
        mrn=mrn,
        registered_facility_id=principal.facility_id,
        identifiers=[PatientIdentifier(type=IdentifierType.MRN, value=mrn)],
        allergies=[],
        coverages=[],
    )
    session.add(patient)
    _apply(session, patient, cleaned, checker)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="Patient",
        entity_id=patient.id,
        patient_id=patient.id,
    )
    return patient


class PossibleDuplicate(DomainError):
    """Not an error of the data: a warning the receptionist confirms or acts on."""

    status = 409
    code = "possible-duplicate"

    def __init__(self, similar: list[Patient]):
        super().__init__(
            str(
                _l(
                    "A patient with the same name and birth date or phone exists. "
                    "Open their record, or confirm this is a different person."
                )
            ),
            extra={
                "possible_duplicates": [
                    {
                        "id": p.id,
                        "mrn": p.mrn,
                        "full_name": p.full_name,
                        "birth_date": p.birth.iso(),
                        "href": f"/api/v1/patients/{p.id}",
                    }
                    for p in similar
                ]
            },
        )
        self.similar = similar


class StaleVersion(DomainError):
    status = 412
    code = "stale-version"

    def __init__(self) -> None:
        super().__init__(
            str(_l("Someone changed this patient since you read it. Reload and try again."))
        )


def update_patient(
    session: Session,
    principal: Principal,
    patient_id: int,
    data: dict[str, Any],
    *,
    expected_version: int | None,
    checker: CardChecker | None = None,
) -> Patient:
    """Changes what ``data`` gives. ``expected_version`` is the ETag the client read:
    someone else's change in between is refused (412), never silently overwritten."""
    principal.require_any(*REGISTRATION_ROLES)
    patient = load_patient(session, patient_id)
    if patient.merged_into_id is not None:
        raise Conflict(
            str(_l("This record was merged into another patient; change that one.")),
            extra={"merged_into": {"id": patient.merged_into_id}},
        )
    if expected_version is not None and expected_version != patient.version:
        raise StaleVersion()
    cleaned = _clean(session, data, patient)
    _refuse_taken_identifiers(session, cleaned, patient.id)
    _apply(session, patient, cleaned, checker)
    # Touching the row bumps its version (the ETag) even when only child rows changed.
    patient.updated_at = utcnow()
    try:
        session.flush()
    except StaleDataError as exc:  # a concurrent change committed after our read
        raise StaleVersion() from exc
    audit.record_change(
        session,
        principal,
        "Patient",
        patient.id,
        patient.id,
        ",".join(sorted(k for k in data if k != "version")),
    )
    return patient


# --- searching ---------------------------------------------------------------------------------


_SEARCH_OPTIONS = tuple(_eager())  # made once: the search caches its statements by them


@dataclass(frozen=True)
class SearchPage:
    """One page of a search, and whether another follows. There is no total: counting
    every patient called Nguyễn would cost more than finding the first page."""

    patients: list[Patient]
    has_more: bool


def search_patients(
    session: Session, principal: Principal, query: SearchQuery, offset: int = 0, limit: int = 20
) -> SearchPage:
    """Searches the shared index (ranking in ``patient_search``). Needs something to search
    by; the search is audited (without the query, which may itself be a name or ID number)."""
    principal.require_any(*PATIENT_ROLES)
    if not fold_vi(query.q) and query.birth_year is None and not query.commune_code:
        raise ValidationFailed(
            str(_l("Type a name, phone, ID, BHYT or record number.")),
            errors={"q": [str(_l("This field is required."))]},
        )
    audit.record(session, principal, AuditAction.SEARCH, entity_type="Patient")
    patients, more = patient_search.search(session, query, offset, limit, _SEARCH_OPTIONS)
    return SearchPage(patients, has_more=more)


# --- merging -----------------------------------------------------------------------------------


def merge_patients(
    session: Session, principal: Principal, survivor_id: int, merged_id: int
) -> PatientMerge:
    """Moves everything of ``merged_id`` to ``survivor_id``; the merged record stays,
    pointing at the survivor. Refused when the two hold different national IDs."""
    principal.require_any(Role.ADMIN)
    if survivor_id == merged_id:
        raise ValidationFailed(
            str(_l("Choose two different patients.")), errors={"merged_id": [str(merged_id)]}
        )
    survivor, merged = load_patient(session, survivor_id), load_patient(session, merged_id)
    for patient in (survivor, merged):
        if patient.merged_into_id is not None:
            raise Conflict(str(_l("Patient %(id)s is already merged.", id=patient.id)))
    for kind in (IdentifierType.CCCD, IdentifierType.BHYT):
        mine, theirs = survivor.identifier(kind), merged.identifier(kind)
        if mine and theirs and mine != theirs:
            raise Conflict(
                str(
                    _l(
                        "The two records hold different %(kind)s numbers: they are not one person.",
                        kind=kind.value.upper(),
                    )
                )
            )
    survivor_kinds = {(i.type, i.system) for i in survivor.identifiers}
    moved_ids = [
        i.id
        for i in merged.identifiers
        if i.type is not IdentifierType.MRN and (i.type, i.system) not in survivor_kinds
    ]
    moved = {
        "identifiers": moved_ids,
        "visits": list(session.scalars(select(Visit.id).where(Visit.patient_id == merged.id))),
        "coverages": [c.id for c in merged.coverages],
        "allergies": [a.id for a in merged.allergies],
    }
    _move(session, moved, to_patient=survivor.id)
    refresh_last_visit(session, survivor.id, merged.id)
    merged.merged_into_id = survivor.id
    merged.merged_at = utcnow()
    survivor.updated_at = utcnow()
    record = PatientMerge(
        survivor_id=survivor.id,
        merged_id=merged.id,
        moved=json.dumps(moved),
        merged_by_id=principal.user_id,
    )
    session.add(record)
    session.flush()
    for patient in (survivor, merged):
        audit.record_change(
            session,
            principal,
            "Patient",
            patient.id,
            patient.id,
            f"merge {record.id}: {merged.id} into {survivor.id}",
        )
    session.expire_all()
    return record


def undo_merge(session: Session, principal: Principal, merge_id: int) -> PatientMerge:
    """Moves back exactly what the merge moved, and makes the merged record live again."""
    principal.require_any(Role.ADMIN)
    record = session.get(PatientMerge, merge_id)
    if record is None:
        raise NotFound(str(_l("No merge has this id.")))
    if record.undone_at is not None:
        raise Conflict(str(_l("This merge was already undone.")))
    _move(session, json.loads(record.moved), to_patient=record.merged_id)
    refresh_last_visit(session, record.survivor_id, record.merged_id)
    merged = load_patient(session, record.merged_id)
    merged.merged_into_id = None
    merged.merged_at = None
    record.undone_at = utcnow()
    record.undone_by_id = principal.user_id
    session.flush()
    for patient_id in (record.survivor_id, record.merged_id):
        audit.record_change(
            session,
            principal,
            "Patient",
            patient_id,
            patient_id,
            f"undo merge {record.id}",
        )
    session.expire_all()
    return record


def refresh_last_visit(session: Session, *patient_ids: int) -> None:
    """Recomputes the stored latest-visit time after visits moved between patients."""
    latest = (
        select(func.max(Visit.opened_at)).where(Visit.patient_id == Patient.id).scalar_subquery()
    )
    session.execute(
        update(Patient).where(Patient.id.in_(patient_ids)).values(last_visit_at=latest),
        execution_options={"synchronize_session": False},
    )


def _move(session: Session, moved: dict[str, list[int]], *, to_patient: int) -> None:
    tables = {
        "identifiers": PatientIdentifier,
        "visits": Visit,
        "coverages": Coverage,
        "allergies": PatientAllergy,
    }
    for key, model in tables.items():
        if moved.get(key):
            session.execute(
                update(model).where(model.id.in_(moved[key])).values(patient_id=to_patient),
                execution_options={"synchronize_session": False},
            )
    if moved.get("visits"):
        # The clinical records of a visit belong to whoever the visit belongs to.
        encounters = select(Encounter.id).where(Encounter.visit_id.in_(moved["visits"]))
        for model, column in (
            (Encounter, Encounter.visit_id.in_(moved["visits"])),
            (Prescription, Prescription.encounter_id.in_(encounters)),
            (DiagnosticReport, DiagnosticReport.encounter_id.in_(encounters)),
        ):
            session.execute(
                update(model).where(column).values(patient_id=to_patient),
                execution_options={"synchronize_session": False},
            )
