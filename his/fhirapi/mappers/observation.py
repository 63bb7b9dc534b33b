"""Observation (vital signs ``vs{id}-{kind}`` and results ``r{id}``), ServiceRequest (the
orders of an examination) and DiagnosticReport (reports sent by lab and imaging systems).

Vital signs follow the FHIR vital-signs profiles: one Observation per measurement, LOINC
codes, UCUM units, blood pressure as one Observation with systolic and diastolic
components.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, date_time, drop_empty, ref, when
from his.fhirapi.mappers.encounter import clinician_ref, row_id
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import DATE, QUANTITY, REFERENCE, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import (
    DiagnosticReport,
    Encounter,
    MedicalService,
    ObservationResult,
    OrderStatus,
    ServiceKind,
    ServiceOrder,
    Visit,
    VitalSigns,
)

# --- vital signs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Vital:
    loinc: tuple[tuple[str, str], ...]  # (code, display); the first is the profile's code
    profile: str  # the FHIR vital-signs profile
    text: str
    unit: str  # UCUM code
    unit_display: str
    value: Callable[[VitalSigns], Decimal | int | None]


def _temperature(v: VitalSigns):
    return v.temperature


VITALS: dict[str, Vital] = {
    "hr": Vital(
        (("8867-4", "Heart rate"),), "heartrate", "Mạch", "/min", "/min", lambda v: v.pulse
    ),
    "temp": Vital(
        (("8310-5", "Body temperature"),), "bodytemp", "Nhiệt độ", "Cel", "°C", _temperature
    ),
    "rr": Vital(
        (("9279-1", "Respiratory rate"),),
        "resprate",
        "Nhịp thở",
        "/min",
        "/min",
        lambda v: v.respiratory_rate,
    ),
    # 59408-5 (pulse oximetry) is what is measured; 2708-6 is the code the base profile
    # requires, so both are given.
    "spo2": Vital(
        (
            ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
            ("2708-6", "Oxygen saturation in Arterial blood"),
        ),
        "oxygensat",
        "SpO2",
        "%",
        "%",
        lambda v: v.spo2,
    ),
    "weight": Vital(
        (("29463-7", "Body weight"),), "bodyweight", "Cân nặng", "kg", "kg", lambda v: v.weight
    ),
    "height": Vital(
        (("8302-2", "Body height"),), "bodyheight", "Chiều cao", "cm", "cm", lambda v: v.height
    ),
}
BP = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
KINDS = ("bp", *VITALS)
VITAL_COLUMNS = (
    "id",
    "pulse",
    "systolic",
    "diastolic",
    "temperature",
    "respiratory_rate",
    "spo2",
    "weight",
    "height",
)
VITAL_CATEGORY = concept(systems.OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")

# --- results ---------------------------------------------------------------------------

RESULT_CATEGORY = {
    ServiceKind.LAB: ("laboratory", "Laboratory"),
    ServiceKind.IMAGING: ("imaging", "Imaging"),
    ServiceKind.PROCEDURE: ("procedure", "Procedure"),
    ServiceKind.EXAMINATION: ("exam", "Exam"),
}
# Units as Vietnamese labs write them → UCUM. A unit not listed is sent as text only: a
# wrong UCUM code would be worse than none.
UCUM_UNITS = {
    u: u
    for u in (
        "mmol/L",
        "g/L",
        "g/dL",
        "mg/dL",
        "mg/L",
        "U/L",
        "%",
        "fL",
        "pg",
        "ng/mL",
        "pg/mL",
        "pmol/L",
        "nmol/L",
        "mL/min",
        "s",
        "mm/h",
        "kg",
        "cm",
        "mm",
    )
} | {
    "G/L": "10*9/L",
    "T/L": "10*12/L",
    "µmol/L": "umol/L",
    "umol/L": "umol/L",
    "mEq/L": "meq/L",
    "IU/L": "[IU]/L",
    "UI/L": "[IU]/L",
    "mIU/L": "m[IU]/L",
    "µIU/mL": "u[IU]/mL",
    "mmHg": "mm[Hg]",
    "giây": "s",
}
_NUMBER = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)"
_LOINC = re.compile(r"^\d{1,7}-\d$")
_VALUE = re.compile(rf"^\s*(<=|>=|<|>|≤|≥)?\s*({_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*[-–—]\s*({_NUMBER})\s*$")
_COMPARATORS = {"≤": "<=", "≥": ">="}

ORDER_STATUS = {
    OrderStatus.ORDERED: "active",
    OrderStatus.RESULTED: "completed",
    OrderStatus.CANCELLED: "revoked",
}
# SNOMED CT codes of the R4 servicerequest-category value set, where one fits.
ORDER_CATEGORY = {
    ServiceKind.LAB: ("108252007", "Laboratory procedure"),
    ServiceKind.IMAGING: ("363679005", "Imaging"),
}
REPORT_STATUSES = {
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
}

# --- search parameters ----------------------------------------------------------------

param("Observation", "code", TOKEN, "code", doc="LOINC or the national service code")
param("Observation", "patient", REFERENCE, "subject", targets=("Patient",))
param("Observation", "subject", REFERENCE, "subject", targets=("Patient",))
param("Observation", "date", DATE, "effectiveDateTime")
param("Observation", "category", TOKEN, "category", doc="vital-signs, laboratory, imaging, ...")
param("Observation", "encounter", REFERENCE, "encounter", targets=("Encounter",))
param("Observation", "based-on", REFERENCE, "basedOn", targets=("ServiceRequest",))
param("Observation", "status", TOKEN, "status")
param("Observation", "performer", REFERENCE, "performer", targets=("Practitioner",))
param("Observation", "value-quantity", QUANTITY, "valueQuantity")
param("Observation", "component-code", TOKEN, "component.code")
param("Observation", "component-value-quantity", QUANTITY, "component.valueQuantity")
param("Observation", "combo-code", TOKEN, "code", "component.code")
param("Observation", "combo-value-quantity", QUANTITY, "valueQuantity", "component.valueQuantity")

param("ServiceRequest", "patient", REFERENCE, "subject", targets=("Patient",))
param("ServiceRequest", "subject", REFERENCE, "subject", targets=("Patient",))
param("ServiceRequest", "encounter", REFERENCE, "encounter", targets=("Encounter",))
param("ServiceRequest", "code", TOKEN, "code", doc="LOINC or the national service code")
param("ServiceRequest", "status", TOKEN, "status")
param("ServiceRequest", "intent", TOKEN, "intent")
param("ServiceRequest", "category", TOKEN, "category")
param("ServiceRequest", "authored", DATE, "authoredOn")
param("ServiceRequest", "identifier", TOKEN, "identifier")
param("ServiceRequest", "requester", REFERENCE, "requester", targets=("Practitioner",))

param("DiagnosticReport", "patient", REFERENCE, "subject", targets=("Patient",))
param("DiagnosticReport", "subject", REFERENCE, "subject", targets=("Patient",))
param("DiagnosticReport", "encounter", REFERENCE, "encounter", targets=("Encounter",))
param("DiagnosticReport", "code", TOKEN, "code")
param("DiagnosticReport", "status", TOKEN, "status")
param("DiagnosticReport", "based-on", REFERENCE, "basedOn", targets=("ServiceRequest",))
param("DiagnosticReport", "date", DATE, "effectiveDateTime")
param("DiagnosticReport", "issued", DATE, "issued")
param("DiagnosticReport", "category", TOKEN, "category", doc="v2-0074: LAB, RAD, ...")
param("DiagnosticReport", "result", REFERENCE, "result", targets=("Observation",))


# --- triggers -------------------------------------------------------------------------


@trigger(VitalSigns)
def _vitals_changed(row: VitalSigns):
    # Every kind: a measurement taken back returns None and its Observation is deleted.
    return [("Observation", f"vs{row.id}-{kind}") for kind in KINDS]


@trigger(ObservationResult)
def _result_changed(row: ObservationResult):
    keys = [("Observation", f"r{row.id}")]
    if row.supersedes_id is not None:  # the corrected one is now withdrawn
        keys.append(("Observation", f"r{row.supersedes_id}"))
    return keys


@trigger(ServiceOrder)
def _order_changed(row: ServiceOrder):
    return [("ServiceRequest", str(row.id))]


@trigger(DiagnosticReport)
def _report_changed(row: DiagnosticReport):
    return [("DiagnosticReport", str(row.id))]


def _observation_ids(session: Session) -> Iterator[str]:
    # Plain rows, not entities: a rebuild walks every measurement ever taken.
    columns = [getattr(VitalSigns, name) for name in VITAL_COLUMNS]
    for vitals in session.execute(select(*columns).order_by(VitalSigns.id)):
        for kind in KINDS:
            if _has_value(vitals, kind):
                yield f"vs{vitals.id}-{kind}"
    for rid in session.scalars(select(ObservationResult.id).order_by(ObservationResult.id)):
        yield f"r{rid}"


def _order_ids(session: Session) -> Iterator[str]:
    for oid in session.scalars(select(ServiceOrder.id).order_by(ServiceOrder.id)):
        yield str(oid)


def _report_ids(session: Session) -> Iterator[str]:
    for rid in session.scalars(select(DiagnosticReport.id).order_by(DiagnosticReport.id)):
        yield str(rid)


ALL_IDS["Observation"] = _observation_ids
ALL_IDS["ServiceRequest"] = _order_ids
ALL_IDS["DiagnosticReport"] = _report_ids


# --- helpers ---------------------------------------------------------------------------


def number(value: Decimal | int | float) -> int | float:
    """A JSON number: whole values as integers (60.00 kg → 60)."""
    if isinstance(value, int):
        return value
    decimal = Decimal(str(value))
    return int(decimal) if decimal == decimal.to_integral_value() else float(decimal)


def quantity(value: Decimal | int | float, unit: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {"value": number(value)}
    if unit:
        found["unit"] = unit
        ucum = UCUM_UNITS.get(unit.strip())
        if ucum:
            found["system"] = systems.UCUM
            found["code"] = ucum
    return found


def _patient_and_facility(session: Session, encounter_id: int) -> tuple[int, int]:
    encounter = session.get(Encounter, encounter_id)
    assert encounter is not None
    visit = session.get(Visit, encounter.visit_id)
    assert visit is not None
    return visit.patient_id, encounter.facility_id


def service_code(service: MedicalService | None, fallback_code: str) -> dict[str, Any]:
    """LOINC when the catalog gives one, and always the national service code."""
    codings = []
    if service is not None and service.loinc:
        codings.append(coding(systems.LOINC, service.loinc))
    codings.append(coding(systems.SERVICE_CODE, fallback_code, service.name if service else None))
    return {"coding": codings, "text": service.name if service else fallback_code}


# --- Observation: vital signs -----------------------------------------------------------


def _has_value(vitals: VitalSigns, kind: str) -> bool:
    if kind == "bp":
        return vitals.systolic is not None or vitals.diastolic is not None
    return VITALS[kind].value(vitals) is not None


def _component(code: tuple[str, str], value: int | None) -> dict[str, Any]:
    part: dict[str, Any] = {"code": concept(systems.LOINC, *code)}
    if value is None:
        part["dataAbsentReason"] = concept(systems.DATA_ABSENT_REASON, "unknown", "Unknown")
    else:
        part["valueQuantity"] = {
            "value": value,
            "unit": "mmHg",
            "system": systems.UCUM,
            "code": "mm[Hg]",
        }
    return part


def vital_resource(session: Session, vitals: VitalSigns, kind: str, patient_id: int):
    base: dict[str, Any] = {
        "status": "final",
        "category": [VITAL_CATEGORY],
        "subject": ref("Patient", patient_id),
        "encounter": ref("Encounter", f"e{vitals.encounter_id}"),
        "effectiveDateTime": date_time(vitals.recorded_at),
        "performer": [clinician_ref(session, vitals.recorded_by_id)],
    }
    if kind == "bp":
        resource = {
            "meta": {
                "profile": [
                    f"{systems.VITAL_SIGNS_PROFILE}/vitalsigns",
                    f"{systems.VITAL_SIGNS_PROFILE}/bp",
                ]
            },
            **base,
            "code": {"coding": [coding(systems.LOINC, *BP)], "text": "Huyết áp"},
            "component": [
                _component(SYSTOLIC, vitals.systolic),
                _component(DIASTOLIC, vitals.diastolic),
            ],
        }
        return drop_empty(resource)
    vital = VITALS[kind]
    value = vital.value(vitals)
    resource = {
        "meta": {
            "profile": [
                f"{systems.VITAL_SIGNS_PROFILE}/vitalsigns",
                f"{systems.VITAL_SIGNS_PROFILE}/{vital.profile}",
            ]
        },
        **base,
        "code": {
            "coding": [coding(systems.LOINC, code, display) for code, display in vital.loinc],
            "text": vital.text,
        },
        "valueQuantity": {
            "value": number(value),
            "unit": vital.unit_display,
            "system": systems.UCUM,
            "code": vital.unit,
        },
    }
    return drop_empty(resource)


# --- Observation: results ---------------------------------------------------------------


def result_status(session: Session, result: ObservationResult) -> str:
    """A corrected result is a new row pointing at the one it replaces. A lab integrator
    reads the new one as ``corrected`` (final, then changed to fix an error) and the old
    one as ``entered-in-error``: withdrawn after release, though decisions may have been
    based on it. The old value stays readable (and in ``_history``), but nobody who
    filters out entered-in-error results charts it beside the right one."""
    replaced = session.scalar(
        select(ObservationResult.id).where(ObservationResult.supersedes_id == result.id).limit(1)
    )
    if replaced is not None:
        return "entered-in-error"
    return "corrected" if result.supersedes_id is not None else "final"


def result_value(value: str, unit: str | None) -> dict[str, Any]:
    """valueQuantity for a number with its unit ("5.2" mmol/L, "<0.5" mg/L), else the
    text as written (positive, "Bình thường", an imaging description)."""
    match = _VALUE.match(value)
    if match and unit:
        found = quantity(Decimal(match.group(2)), unit)
        if match.group(1):
            found = {
                "value": found.pop("value"),
                "comparator": _COMPARATORS.get(match.group(1), match.group(1)),
                **found,
            }
        return {"valueQuantity": found}
    return {"valueString": value}


def reference_range(text: str | None, unit: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    found: dict[str, Any] = {"text": text}
    try:
        if match := _RANGE.match(text):
            found["low"] = quantity(Decimal(match.group(1)), unit)
            found["high"] = quantity(Decimal(match.group(2)), unit)
        elif match := _VALUE.match(text):
            sign, bound = match.group(1), Decimal(match.group(2))
            if sign in ("<", "<=", "≤"):
                found["high"] = quantity(bound, unit)
            elif sign in (">", ">=", "≥"):
                found["low"] = quantity(bound, unit)
    except InvalidOperation:
        pass
    return [found]


def analyte_code(result: ObservationResult, ordered: dict[str, Any]) -> dict[str, Any]:
    """One analyte of a panel is named by the code its sender gave (a LOINC code when
    the lab system sends one), beside the code of the service that was ordered."""
    if not result.code:
        return ordered
    system = systems.LOINC if _LOINC.match(result.code) else None
    analyte = drop_empty({"system": system, "code": result.code, "display": result.name})
    return {"coding": [analyte, *ordered.get("coding", [])], "text": result.name or result.code}


def result_resource(
    session: Session, result: ObservationResult, order: ServiceOrder, patient_id: int
) -> dict[str, Any]:
    service = session.get(MedicalService, order.service_id)
    category = RESULT_CATEGORY.get(service.kind) if service else None
    resource: dict[str, Any] = {
        "extension": [
            {
                "url": systems.SUPERSEDES_EXT,
                "valueReference": ref("Observation", f"r{result.supersedes_id}"),
            }
        ]
        if result.supersedes_id
        else [],
        "basedOn": [ref("ServiceRequest", order.id)],
        "status": result_status(session, result),
        "category": [concept(systems.OBSERVATION_CATEGORY, *category)] if category else [],
        "code": analyte_code(result, service_code(service, order.service_code)),
        "subject": ref("Patient", patient_id),
        "encounter": ref("Encounter", f"e{order.encounter_id}"),
        "effectiveDateTime": date_time(result.resulted_at),
        "issued": when(result.resulted_at),
        "performer": [clinician_ref(session, result.resulted_by_id)],
        **result_value(result.value, result.unit),
        "note": [{"text": result.conclusion}] if result.conclusion else [],
        "referenceRange": reference_range(result.reference_range, result.unit),
    }
    return drop_empty(resource)


@builder("Observation")
def build_observation(session: Session, resource_id: str) -> Built | None:
    if resource_id.startswith("vs"):
        vid, _, kind = resource_id[2:].partition("-")
        vitals = session.get(VitalSigns, int(vid)) if is_number(vid) and len(vid) < 19 else None
        if vitals is None or kind not in KINDS or not _has_value(vitals, kind):
            return None
        patient_id, facility_id = _patient_and_facility(session, vitals.encounter_id)
        return Built(vital_resource(session, vitals, kind, patient_id), patient_id, facility_id)
    rid = row_id(resource_id, "r")
    result = session.get(ObservationResult, rid) if rid is not None else None
    if result is None:
        return None
    order = session.get(ServiceOrder, result.order_id)
    assert order is not None
    patient_id, facility_id = _patient_and_facility(session, order.encounter_id)
    return Built(result_resource(session, result, order, patient_id), patient_id, facility_id)


# --- ServiceRequest ----------------------------------------------------------------------


@builder("ServiceRequest")
def build_service_request(session: Session, resource_id: str) -> Built | None:
    oid = row_id(resource_id)
    order = session.get(ServiceOrder, oid) if oid is not None else None
    if order is None:
        return None
    patient_id, _ = _patient_and_facility(session, order.encounter_id)
    service = session.get(MedicalService, order.service_id)
    category = []
    if service is not None:
        codings = [coding(systems.SERVICE_KIND_CS, str(service.kind))]
        if service.kind in ORDER_CATEGORY:
            codings.insert(0, coding(systems.SNOMED, *ORDER_CATEGORY[service.kind]))
        category.append({"coding": codings})
    resource = {
        "identifier": [{"system": systems.SERVICE_ORDER_ID, "value": str(order.id)}],
        "status": ORDER_STATUS[order.status],
        "intent": "order",
        "category": category,
        "code": service_code(service, order.service_code),
        "quantityQuantity": {"value": order.quantity, "unit": service.unit if service else None},
        "subject": ref("Patient", patient_id),
        "encounter": ref("Encounter", f"e{order.encounter_id}"),
        "authoredOn": date_time(order.ordered_at),
        "requester": clinician_ref(session, order.ordered_by_id),
        "note": [{"text": order.note}] if order.note else [],
    }
    return Built(drop_empty(resource), patient_id, order.facility_id)


# --- DiagnosticReport ---------------------------------------------------------------------


@builder("DiagnosticReport")
def build_diagnostic_report(session: Session, resource_id: str) -> Built | None:
    did = row_id(resource_id)
    report = session.get(DiagnosticReport, did) if did is not None else None
    if report is None:
        return None
    code = {"code": report.code}
    if report.code_system:
        code = {"system": report.code_system, **code}
    if report.title:
        code["display"] = report.title
    resource = {
        "basedOn": [ref("ServiceRequest", report.order_id)] if report.order_id else [],
        "status": report.status if report.status in REPORT_STATUSES else "unknown",
        "category": [concept(systems.V2_0074, report.category)] if report.category else [],
        "code": {"coding": [code], "text": report.title},
        "subject": ref("Patient", report.patient_id),
        "encounter": ref("Encounter", f"e{report.encounter_id}") if report.encounter_id else None,
        "effectiveDateTime": date_time(report.issued_at),
        "issued": when(report.issued_at),
        # Who sent it, by name: a lab system is no Practitioner or Organization of ours.
        "performer": [{"display": report.source}] if report.source else [],
        "result": [ref("Observation", f"r{rid}") for rid in report.result_ids or []],
        "conclusion": report.conclusion,
    }
    return Built(drop_empty(resource), report.patient_id, report.facility_id)
