"""Medication (catalog drugs), MedicationRequest (one per prescription item) and
MedicationDispense (one per dispense line, hand-overs and returns alike)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, date_time, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import DATE, REFERENCE, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import (
    Dispense,
    DispenseKind,
    DispenseLine,
    Drug,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    RxClass,
    TreatmentCourse,
)

RX_CLASS_DISPLAY = {
    RxClass.NARCOTIC: "Thuốc gây nghiện",
    RxClass.PSYCHOTROPIC: "Thuốc hướng thần, tiền chất",
    RxClass.OTHER: "Thuốc kê đơn khác",
    RxClass.OTC: "Thuốc không kê đơn",
}


def number(value: Decimal | int) -> int | float:
    """A JSON number without the database's trailing zeros: 1.000 → 1, 2.500 → 2.5."""
    value = Decimal(value)
    return int(value) if value == value.to_integral_value() else float(value.normalize())


# --- Medication -------------------------------------------------------------------------

param("Medication", "code", TOKEN, "code", doc="Facility drug code or national code")
param("Medication", "identifier", TOKEN, "identifier", doc="Drug code, registration number")
param("Medication", "form", TOKEN, "form")
param("Medication", "status", TOKEN, "status")


@trigger(Drug)
def _drug_changed(row: Drug):
    return [("Medication", str(row.id))]


def _drug_ids(session: Session) -> Iterator[str]:
    for did in session.scalars(select(Drug.id).order_by(Drug.id)):
        yield str(did)


ALL_IDS["Medication"] = _drug_ids


@builder("Medication")
def build_medication(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    drug = session.get(Drug, int(resource_id))
    if drug is None:
        return None
    return Built(medication_resource(drug), facility_id=drug.facility_id)


_AMOUNT = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([^\d\s/][^/]*?)\s*$")


def _amount(text: str) -> dict[str, Any] | None:
    match = _AMOUNT.match(text)
    if not match:
        return None
    return {"value": number(Decimal(match[1].replace(",", "."))), "unit": match[2]}


def strength_ratio(text: str, unit: str) -> dict[str, Any] | None:
    """ "500 mg" → 500 mg per 1 unit counted; "15 mg/5 ml" → 15 mg per 5 ml; None when the
    catalog's text does not read as an amount (it stays in the strength extension)."""
    top, _slash, bottom = text.partition("/")
    numerator = _amount(top)
    if numerator is None:
        return None
    if not bottom:
        return {"numerator": numerator, "denominator": {"value": 1, "unit": unit}}
    denominator = _amount(bottom) or (
        {"value": 1, "unit": bottom.strip()} if bottom.strip() else None
    )
    return {"numerator": numerator, "denominator": denominator} if denominator else None


def _ingredients(drug: Drug) -> list[dict[str, Any]]:
    names = [n.strip() for n in drug.active_ingredient.split("+") if n.strip()]
    strengths = [s.strip() for s in (drug.strength or "").split("+")]
    if len(names) != len(strengths):  # strengths that do not pair up: say them once, as text
        strengths = [""] * len(names)
    return [
        {
            "itemCodeableConcept": {"text": name},
            "isActive": True,
            "strength": strength_ratio(s, drug.unit),
        }
        for name, s in zip(names, strengths, strict=True)
    ]


def medication_resource(drug: Drug) -> dict[str, Any]:
    from his.services.prescriptions import drug_name

    codings = [coding(systems.DRUG_CODE, drug.code, drug_name(drug))]
    if drug.national_code:
        codings.append(coding(systems.DRUG_NATIONAL_CODE, drug.national_code))
    identifiers = [{"use": "usual", "system": systems.DRUG_CODE, "value": drug.code}]
    if drug.registration_number:
        identifiers.append(
            {
                "use": "official",
                "system": systems.DRUG_REGISTRATION,
                "value": drug.registration_number,
            }
        )
    resource = {
        "extension": [
            {
                "url": systems.RX_CLASS_EXT,
                "valueCoding": coding(
                    systems.RX_CLASS_CS, str(drug.rx_class), RX_CLASS_DISPLAY[drug.rx_class]
                ),
            },
            {"url": systems.DRUG_STRENGTH_EXT, "valueString": drug.strength},
        ],
        "identifier": identifiers,
        "code": {"coding": codings, "text": drug_name(drug)},
        "status": "active" if drug.active else "inactive",
        "form": concept(systems.DOSAGE_FORM_CS, drug.dosage_form.strip(), drug.dosage_form),
        "ingredient": _ingredients(drug),
    }
    return drop_empty(resource)


# --- MedicationRequest ------------------------------------------------------------------

param("MedicationRequest", "patient", REFERENCE, "subject", targets=("Patient",))
param("MedicationRequest", "subject", REFERENCE, "subject", targets=("Patient",))
param("MedicationRequest", "identifier", TOKEN, "identifier", doc="National prescription code")
param("MedicationRequest", "authoredon", DATE, "authoredOn")
param("MedicationRequest", "status", TOKEN, "status")
param("MedicationRequest", "intent", TOKEN, "intent")
param("MedicationRequest", "category", TOKEN, "category")
param("MedicationRequest", "encounter", REFERENCE, "encounter", targets=("Encounter",))
param("MedicationRequest", "medication", REFERENCE, "medicationReference", targets=("Medication",))
param("MedicationRequest", "requester", REFERENCE, "requester", targets=("Practitioner",))


@trigger(PrescriptionItem)
def _item_changed(row: PrescriptionItem):
    return [("MedicationRequest", str(row.id))]


@trigger(Prescription)
def _prescription_changed(row: Prescription):
    # Status, code, signing time and validity live on the prescription: every item shows them.
    # Ids by a column query: loading the items inside the flush would clash with the ones
    # being flushed.
    ids = object_session(row).scalars(
        select(PrescriptionItem.id).where(PrescriptionItem.prescription_id == row.id)
    )
    return [("MedicationRequest", str(item_id)) for item_id in ids]


def _item_ids(session: Session) -> Iterator[str]:
    for iid in session.scalars(select(PrescriptionItem.id).order_by(PrescriptionItem.id)):
        yield str(iid)


ALL_IDS["MedicationRequest"] = _item_ids


@builder("MedicationRequest")
def build_medication_request(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    item = session.get(PrescriptionItem, int(resource_id))
    if item is None:
        return None
    rx = item.prescription
    resource = medication_request_resource(session, rx, item)
    return Built(resource, patient_id=rx.patient_id, facility_id=rx.facility_id)


def _status(session: Session, rx: Prescription, item: PrescriptionItem) -> str:
    """Draft → draft; signed → active until the item is dispensed in full (net of returns),
    then completed. Replaced → cancelled, not stopped: a prescription can only be replaced
    before anything was dispensed (``prescriptions.replace``), and R4 defines cancelled as
    "withdrawn before any administrations have occurred"; statusReason and the new request's
    priorPrescription say it was a replacement. A cancelled draft was never issued →
    cancelled too (not entered-in-error: nothing was recorded wrongly)."""
    if rx.status is PrescriptionStatus.DRAFT:
        return "draft"
    if rx.status in (PrescriptionStatus.REPLACED, PrescriptionStatus.CANCELLED):
        return "cancelled"
    from his.services.stock import net_dispensed

    out = net_dispensed(session, [item.id])[item.id]
    return "completed" if out >= Decimal(item.quantity) else "active"


def _prior(session: Session, rx: Prescription, item: PrescriptionItem) -> dict[str, Any] | None:
    """The replaced prescription's item for the same drug, when this one replaced it."""
    if rx.replaces_id is None:
        return None
    old = session.scalar(
        select(PrescriptionItem.id)
        .where(
            PrescriptionItem.prescription_id == rx.replaces_id,
            PrescriptionItem.drug_code == item.drug_code,
        )
        .order_by(PrescriptionItem.position)
        .limit(1)
    )
    return ref("MedicationRequest", old) if old else None


def medication_request_resource(
    session: Session, rx: Prescription, item: PrescriptionItem
) -> dict[str, Any]:
    drug = item.drug
    unit = drug.unit if drug else None
    status = _status(session, rx, item)
    national = (
        {"use": "official", "system": systems.EPRESCRIPTION, "value": rx.code} if rx.code else None
    )
    dose = number(item.dose)
    text = f"{dose} {unit or ''} x {item.times_per_day} lần/ngày x {item.days} ngày, {item.route}"
    if item.instructions:
        text += f". {item.instructions}"
    reason = None
    if rx.status is PrescriptionStatus.REPLACED:
        reason = concept(systems.MEDICATION_STATUS_REASON_CS, "replaced", "Đơn đã được thay thế")
    elif rx.status is PrescriptionStatus.CANCELLED:
        reason = concept(systems.MEDICATION_STATUS_REASON_CS, "draft-cancelled", "Hủy đơn nháp")
    resource = {
        "identifier": [national],
        "status": status,
        "statusReason": reason,
        "intent": "order",
        "category": [concept(systems.MEDREQ_CATEGORY, "outpatient", "Outpatient")],
        "medicationReference": ref("Medication", item.drug_id, item.drug_name),
        "subject": ref("Patient", rx.patient_id),
        "encounter": ref("Encounter", f"e{rx.encounter_id}"),
        "authoredOn": date_time(rx.signed_at or rx.created_at),
        "requester": ref("Practitioner", rx.prescriber_id),
        "groupIdentifier": national,
        "courseOfTherapyType": concept(systems.MEDREQ_COURSE, "continuous", "Continuous")
        if rx.course is TreatmentCourse.CHRONIC
        else concept(systems.MEDREQ_COURSE, "acute", "Short course (acute) therapy"),
        "note": [{"text": rx.advice}] if rx.advice else [],
        "dosageInstruction": [
            {
                "sequence": 1,
                "text": text,
                "patientInstruction": item.instructions,
                "timing": {
                    "repeat": {
                        "boundsDuration": {
                            "value": item.days,
                            "unit": "ngày",
                            "system": systems.UCUM,
                            "code": "d",
                        },
                        "frequency": item.times_per_day,
                        "period": 1,
                        "periodUnit": "d",
                    }
                },
                "route": concept(systems.ROUTE_CS, item.route.strip(), item.route)
                if item.route and item.route.strip()
                else None,
                "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}],
            }
        ],
        "dispenseRequest": {
            "validityPeriod": {
                "start": date_time(rx.signed_at),
                "end": rx.valid_until.isoformat() if rx.valid_until else None,
            },
            "quantity": {"value": number(item.quantity), "unit": unit},
            "expectedSupplyDuration": {
                "value": item.days,
                "unit": "ngày",
                "system": systems.UCUM,
                "code": "d",
            },
        },
        "priorPrescription": _prior(session, rx, item),
    }
    return drop_empty(resource)


# --- MedicationDispense -----------------------------------------------------------------

param("MedicationDispense", "patient", REFERENCE, "subject", targets=("Patient",))
param("MedicationDispense", "subject", REFERENCE, "subject", targets=("Patient",))
param(
    "MedicationDispense",
    "prescription",
    REFERENCE,
    "authorizingPrescription",
    targets=("MedicationRequest",),
)
param("MedicationDispense", "status", TOKEN, "status")
param("MedicationDispense", "type", TOKEN, "type", doc="dispense or return (dispense-kind)")
param("MedicationDispense", "whenhandedover", DATE, "whenHandedOver")
param("MedicationDispense", "medication", REFERENCE, "medicationReference", targets=("Medication",))
param("MedicationDispense", "performer", REFERENCE, "performer.actor", targets=("Practitioner",))
param("MedicationDispense", "context", REFERENCE, "context", targets=("Encounter",))


@trigger(DispenseLine)
def _line_changed(row: DispenseLine):
    # The request's status follows what is out with the patient (active → completed).
    return [("MedicationDispense", str(row.id)), ("MedicationRequest", str(row.item_id))]


@trigger(Dispense)
def _dispense_changed(row: Dispense):
    ids = object_session(row).scalars(
        select(DispenseLine.id).where(DispenseLine.dispense_id == row.id)
    )
    return [("MedicationDispense", str(line_id)) for line_id in ids]


def _line_ids(session: Session) -> Iterator[str]:
    for lid in session.scalars(select(DispenseLine.id).order_by(DispenseLine.id)):
        yield str(lid)


ALL_IDS["MedicationDispense"] = _line_ids


@builder("MedicationDispense")
def build_medication_dispense(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    line = session.get(DispenseLine, int(resource_id))
    if line is None:
        return None
    dispense = line.dispense
    rx = dispense.prescription
    resource = medication_dispense_resource(dispense, line, rx)
    return Built(resource, patient_id=rx.patient_id, facility_id=dispense.facility_id)


def medication_dispense_resource(
    dispense: Dispense, line: DispenseLine, rx: Prescription
) -> dict[str, Any]:
    """A return (units the patient brought back) is its own MedicationDispense, status
    completed (the event happened), type ``return`` of our dispense-kind code system and a
    negative quantity. Not "stopped" or "entered-in-error": the hand-over it reverses was
    real and stays completed. The sign lets a pharmacy integrator that sums the dispenses
    of a request get the units still out with the patient, as the pharmacy itself counts."""
    item = line.item
    unit = item.drug.unit if item.drug else None
    returned = dispense.kind is DispenseKind.RETURN
    amount = number(line.quantity)
    lot = line.lot
    kind = (
        concept(systems.DISPENSE_KIND_CS, "return", "Trả lại thuốc")
        if returned
        else concept(systems.DISPENSE_KIND_CS, "dispense", "Cấp phát thuốc")
    )
    resource = {
        "extension": [
            {
                "url": systems.DISPENSE_LOT_EXT,
                "extension": [
                    {"url": "lotNumber", "valueString": lot.lot_number},
                    {"url": "expirationDate", "valueDate": lot.expiry_date.isoformat()},
                ],
            }
        ]
        if lot
        else [],
        "status": "completed",
        "type": kind,
        "medicationReference": ref("Medication", item.drug_id, item.drug_name),
        "subject": ref("Patient", rx.patient_id),
        "context": ref("Encounter", f"e{rx.encounter_id}"),
        "performer": [{"actor": ref("Practitioner", dispense.pharmacist_id)}],
        "authorizingPrescription": [ref("MedicationRequest", item.id)],
        "quantity": {"value": -amount if returned else amount, "unit": unit},
        "whenHandedOver": date_time(dispense.at),
        "note": [{"text": dispense.note}] if dispense.note else [],
    }
    return drop_empty(resource)
