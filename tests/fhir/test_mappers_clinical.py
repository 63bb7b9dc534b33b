"""The clinical projection: visits and examinations, diagnoses, vital signs, orders and
results, reports, allergies and BHYT cards, written on commit and read back over /fhir."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select

from his.db import utcnow
from his.fhirapi import systems
from his.models import (
    AllergySeverity,
    BhytGroup,
    CardStatus,
    DiagnosticReport,
    FhirResource,
    FhirSearchValue,
    PatientAllergy,
    PriorityReason,
    VisitType,
)
from his.services import encounters as svc
from his.services.access import Principal
from tests import encounters_data as data
from tests.factories import CoverageFactory, PatientFactory


def valid(resource: dict) -> dict:
    """The resource as served, checked against the R4B models (R4 stand-in)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def who(user) -> Principal:
    return Principal.for_user(user)


@pytest.fixture
def clinic(db_session):
    found = data.clinic(db_session)
    found.services["GLU"].loinc = "2345-7"
    data.icd10_lists(db_session)
    return found


@pytest.fixture
def read(fhir_get, login_token, clinic):
    """GET as the clinic's doctor (staff read their own facility's records); the body,
    validated."""
    token = login_token(clinic.doctor.username)["Authorization"].removeprefix("Bearer ")

    def get(path: str, status: int = 200):
        response = fhir_get(path, token=token)
        assert response.status_code == status, response.json
        return valid(response.json) if status == 200 else response.json

    return get


def started(db_session, clinic, **visit):
    return data.examined(db_session, clinic, **visit)


def values(db_session, resource_type: str, resource_id: str) -> dict[str, list]:
    """The search values indexed for the resource: param → rows."""
    row = db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == resource_type, FhirResource.resource_id == resource_id
        )
    ).one()
    found: dict[str, list] = {}
    for value in db_session.scalars(select(FhirSearchValue).where(FhirSearchValue.rid == row.rid)):
        found.setdefault(value.param, []).append(value)
    return found


def row_of(db_session, resource_type: str, resource_id: str) -> FhirResource | None:
    return db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == resource_type, FhirResource.resource_id == resource_id
        )
    ).one_or_none()


# --- Encounter ---------------------------------------------------------------------------


def test_visit_and_examination_encounters(db_session, clinic, read):
    encounter = started(
        db_session,
        clinic,
        visit_type=VisitType.EMERGENCY,
        priority_reason=PriorityReason.EMERGENCY,
        referral_from_facility_code="91001",
        referral_letter_number="CT-123",
        referral_diagnosis="Sốt cao",
    )
    svc.update_encounter(db_session, who(clinic.doctor), encounter.id, {"reason": "Sốt, ho"})
    db_session.commit()
    visit = encounter.visit

    body = read(f"/fhir/Encounter/v{visit.id}")
    assert body["identifier"] == [
        {"use": "official", "system": systems.MA_LK, "value": visit.visit_code}
    ]
    assert body["status"] == "in-progress"
    assert body["class"]["code"] == "EMER" and body["class"]["system"] == systems.ACT_CODE
    assert body["subject"] == {"reference": f"Patient/{visit.patient_id}"}
    assert body["serviceProvider"] == {"reference": f"Organization/{clinic.facility.id}"}
    assert body["location"][0]["location"]["reference"] == f"Location/r{clinic.room.id}"
    assert body["priority"]["coding"][0]["code"] == "EM"
    assert body["hospitalization"]["origin"]["identifier"] == {
        "system": systems.FACILITY_CODE,
        "value": "91001",
    }
    assert body["period"]["start"].endswith("+07:00") and "end" not in body["period"]

    exam = read(f"/fhir/Encounter/e{encounter.id}")
    assert exam["partOf"] == {"reference": f"Encounter/v{visit.id}"}
    assert exam["status"] == "in-progress"
    assert exam["participant"][0]["individual"] == {"reference": f"Practitioner/{clinic.doctor.id}"}
    assert exam["reasonCode"] == [{"text": "Sốt, ho"}]
    assert exam["class"]["code"] == "EMER"

    indexed = values(db_session, "Encounter", f"e{encounter.id}")
    assert {v.reference for v in indexed["part-of"]} == {f"Encounter/v{visit.id}"}
    assert {v.reference for v in indexed["patient"]} == {f"Patient/{visit.patient_id}"}
    assert {v.reference for v in indexed["participant"]} == {f"Practitioner/{clinic.doctor.id}"}
    assert {v.code for v in indexed["status"]} == {"in-progress"}
    assert indexed["date"][0].start is not None
    visit_indexed = values(db_session, "Encounter", f"v{visit.id}")
    for name in ("identifier", "class", "service-provider", "location", "status", "subject"):
        assert visit_indexed[name], name
    assert (systems.MA_LK, visit.visit_code) in {
        (v.system, v.code) for v in visit_indexed["identifier"]
    }


def test_finishing_makes_new_versions_with_the_disposition(db_session, clinic, read):
    encounter = started(db_session, clinic)
    svc.add_diagnosis(db_session, who(clinic.doctor), encounter.id, "J06.9", main=True)
    db_session.commit()
    first = row_of(db_session, "Encounter", f"e{encounter.id}").version_id
    svc.finish(
        db_session,
        who(clinic.doctor),
        encounter.id,
        svc.Finish(disposition="refer_out", refer_to_facility_code="91002", refer_reason="Vượt"),
    )
    db_session.commit()
    exam = read(f"/fhir/Encounter/e{encounter.id}")
    assert int(exam["meta"]["versionId"]) == first + 1
    assert exam["status"] == "finished" and "end" in exam["period"]
    disposition = exam["hospitalization"]["dischargeDisposition"]["coding"]
    assert disposition[0] == {
        "system": systems.DISCHARGE_DISPOSITION,
        "code": "other-hcf",
        "display": "Other healthcare facility",
    }
    assert disposition[1]["code"] == "refer_out"
    assert exam["hospitalization"]["destination"]["identifier"]["value"] == "91002"


# --- Condition ---------------------------------------------------------------------------


def test_diagnoses_are_conditions_and_a_removed_one_is_entered_in_error(db_session, clinic, read):
    encounter = started(db_session, clinic)
    doctor = who(clinic.doctor)
    main = svc.add_diagnosis(db_session, doctor, encounter.id, "J06.9", main=True)
    second = svc.add_diagnosis(db_session, doctor, encounter.id, "I10", main=False)
    db_session.commit()

    condition = read(f"/fhir/Condition/{main.id}")
    assert condition["code"]["coding"][0]["system"] == systems.ICD10_VN
    assert condition["code"]["coding"][0]["code"] == "J06.9"
    assert condition["code"]["coding"][0]["display"] == main.title
    assert condition["code"]["coding"][0]["version"].startswith("Test ICD-10")
    assert condition["subject"] == {"reference": f"Patient/{encounter.patient_id}"}
    assert condition["encounter"] == {"reference": f"Encounter/e{encounter.id}"}
    assert condition["category"][0]["coding"][0]["code"] == "encounter-diagnosis"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert "recordedDate" in condition

    exam = read(f"/fhir/Encounter/e{encounter.id}")
    assert [
        (d["condition"]["reference"], d["rank"], d["use"]["coding"][0]["code"])
        for d in exam["diagnosis"]
    ] == [(f"Condition/{main.id}", 1, "DD"), (f"Condition/{second.id}", 2, "CM")]

    indexed = values(db_session, "Condition", str(main.id))
    assert (systems.ICD10_VN, "J06.9") in {(v.system, v.code) for v in indexed["code"]}
    for name in (
        "patient",
        "subject",
        "encounter",
        "category",
        "clinical-status",
        "verification-status",
        "recorded-date",
    ):
        assert indexed[name], name

    svc.remove_diagnosis(db_session, doctor, encounter.id, second.id)
    db_session.commit()
    removed = read(f"/fhir/Condition/{second.id}")
    assert removed["meta"]["versionId"] == "2"
    assert removed["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "clinicalStatus" not in removed
    assert removed["code"]["coding"][0]["code"] == "I10"  # kept, never deleted
    exam = read(f"/fhir/Encounter/e{encounter.id}")
    assert [d["condition"]["reference"] for d in exam["diagnosis"]] == [f"Condition/{main.id}"]
    indexed = values(db_session, "Condition", str(second.id))
    assert {v.code for v in indexed["verification-status"]} == {"entered-in-error"}


# --- Observation: vital signs -------------------------------------------------------------


def test_vital_signs_are_observations_with_loinc_and_ucum(db_session, clinic, read):
    encounter = started(db_session, clinic)
    vitals = svc.record_vitals(
        db_session,
        who(clinic.nurse),
        encounter.id,
        {"pulse": 82, "systolic": 130, "diastolic": 85, "temperature": "37.5", "weight": "60.5"},
    )
    db_session.commit()

    bp = read(f"/fhir/Observation/vs{vitals.id}-bp")
    assert bp["code"]["coding"][0] == {
        "system": systems.LOINC,
        "code": "85354-9",
        "display": "Blood pressure panel with all children optional",
    }
    assert bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert "valueQuantity" not in bp
    components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in bp["component"]}
    assert components["8480-6"] == {
        "value": 130,
        "unit": "mmHg",
        "system": systems.UCUM,
        "code": "mm[Hg]",
    }
    assert components["8462-4"]["value"] == 85
    assert bp["subject"] == {"reference": f"Patient/{encounter.patient_id}"}
    assert bp["encounter"] == {"reference": f"Encounter/e{encounter.id}"}
    assert bp["status"] == "final"

    hr = read(f"/fhir/Observation/vs{vitals.id}-hr")
    assert hr["code"]["coding"][0]["code"] == "8867-4"
    assert hr["valueQuantity"] == {
        "value": 82,
        "unit": "/min",
        "system": systems.UCUM,
        "code": "/min",
    }
    assert "http://hl7.org/fhir/StructureDefinition/heartrate" in hr["meta"]["profile"]
    temp = read(f"/fhir/Observation/vs{vitals.id}-temp")
    assert temp["code"]["coding"][0]["code"] == "8310-5"
    assert temp["valueQuantity"]["value"] == 37.5 and temp["valueQuantity"]["code"] == "Cel"
    weight = read(f"/fhir/Observation/vs{vitals.id}-weight")
    assert weight["code"]["coding"][0]["code"] == "29463-7"
    assert weight["valueQuantity"]["value"] == 60.5 and weight["valueQuantity"]["code"] == "kg"
    # Nothing measured, nothing projected.
    read(f"/fhir/Observation/vs{vitals.id}-spo2", status=404)
    read(f"/fhir/Observation/vs{vitals.id}-height", status=404)
    read(f"/fhir/Observation/vs{vitals.id}-rr", status=404)

    indexed = values(db_session, "Observation", f"vs{vitals.id}-hr")
    assert {(v.system, v.code) for v in indexed["code"]} == {(systems.LOINC, "8867-4")}
    assert {v.code for v in indexed["category"]} == {"vital-signs"}
    assert [(v.number, v.code) for v in indexed["value-quantity"]] == [(Decimal(82), "/min")]
    for name in ("patient", "subject", "date", "encounter", "status"):
        assert indexed[name], name
    bp_indexed = values(db_session, "Observation", f"vs{vitals.id}-bp")
    assert {v.code for v in bp_indexed["component-code"]} == {"8480-6", "8462-4"}


def test_each_vital_sign_kind_has_its_code_and_unit(db_session, clinic, read):
    encounter = started(db_session, clinic)
    vitals = svc.record_vitals(
        db_session,
        who(clinic.nurse),
        encounter.id,
        {"respiratory_rate": 18, "spo2": 97, "height": "158.5", "systolic": 120},
    )
    db_session.commit()
    expected = {"rr": ("9279-1", "/min", 18), "spo2": ("59408-5", "%", 97)}
    expected["height"] = ("8302-2", "cm", 158.5)
    for kind, (code, unit, value) in expected.items():
        body = read(f"/fhir/Observation/vs{vitals.id}-{kind}")
        assert body["code"]["coding"][0]["code"] == code
        assert body["valueQuantity"]["code"] == unit and body["valueQuantity"]["value"] == value
    # A pressure with one side only: the missing one is said to be absent.
    bp = read(f"/fhir/Observation/vs{vitals.id}-bp")
    diastolic = next(c for c in bp["component"] if c["code"]["coding"][0]["code"] == "8462-4")
    assert diastolic["dataAbsentReason"]["coding"][0]["code"] == "unknown"

    vitals.spo2 = None  # taken back: the resource is deleted
    vitals.pulse = 64  # newly measured: created
    db_session.commit()
    read(f"/fhir/Observation/vs{vitals.id}-spo2", status=410)
    assert read(f"/fhir/Observation/vs{vitals.id}-hr")["valueQuantity"]["value"] == 64
    assert read(f"/fhir/Observation/vs{vitals.id}-rr")["meta"]["versionId"] == "1"


# --- ServiceRequest and results -------------------------------------------------------------


def test_orders_and_results(db_session, clinic, read):
    encounter = started(db_session, clinic)
    order = svc.add_order(db_session, who(clinic.doctor), encounter.id, "23.0075.1494")
    db_session.commit()
    request = read(f"/fhir/ServiceRequest/{order.id}")
    assert request["status"] == "active" and request["intent"] == "order"
    assert request["code"]["coding"] == [
        {"system": systems.LOINC, "code": "2345-7"},
        {
            "system": systems.SERVICE_CODE,
            "code": "23.0075.1494",
            "display": "Định lượng Glucose máu",
        },
    ]
    assert request["subject"] == {"reference": f"Patient/{encounter.patient_id}"}
    assert request["encounter"] == {"reference": f"Encounter/e{encounter.id}"}
    assert request["requester"] == {"reference": f"Practitioner/{clinic.doctor.id}"}
    assert request["category"][0]["coding"][0]["code"] == "108252007"
    indexed = values(db_session, "ServiceRequest", str(order.id))
    for name in ("patient", "subject", "encounter", "code", "status", "authored", "identifier"):
        assert indexed[name], name

    first = svc.enter_result(db_session, who(clinic.lab), order.id, "5.2")
    db_session.commit()
    result = read(f"/fhir/Observation/r{first.id}")
    assert result["status"] == "final"
    assert result["valueQuantity"] == {
        "value": 5.2,
        "unit": "mmol/L",
        "system": systems.UCUM,
        "code": "mmol/L",
    }
    assert result["basedOn"] == [{"reference": f"ServiceRequest/{order.id}"}]
    assert result["encounter"] == {"reference": f"Encounter/e{encounter.id}"}
    assert result["category"][0]["coding"][0]["code"] == "laboratory"
    assert [c["code"] for c in result["code"]["coding"]] == ["2345-7", "23.0075.1494"]
    assert result["referenceRange"][0]["text"] == "3.9–6.4"
    assert result["referenceRange"][0]["low"]["value"] == 3.9
    assert result["referenceRange"][0]["high"]["value"] == 6.4
    assert "performer" not in result  # the lab system's user is no Practitioner
    assert read(f"/fhir/ServiceRequest/{order.id}")["status"] == "completed"
    indexed = values(db_session, "Observation", f"r{first.id}")
    assert {v.reference for v in indexed["based-on"]} == {f"ServiceRequest/{order.id}"}
    assert [v.number for v in indexed["value-quantity"]] == [Decimal("5.2")]
    assert {v.code for v in indexed["category"]} == {"laboratory"}

    second = svc.enter_result(
        db_session, who(clinic.lab), order.id, "Bình thường", conclusion="Đã làm lại"
    )
    db_session.commit()
    corrected = read(f"/fhir/Observation/r{second.id}")
    assert corrected["status"] == "corrected"
    assert corrected["valueString"] == "Bình thường"
    assert corrected["extension"][0]["valueReference"] == {"reference": f"Observation/r{first.id}"}
    assert corrected["note"] == [{"text": "Đã làm lại"}]
    withdrawn = read(f"/fhir/Observation/r{first.id}")
    assert withdrawn["status"] == "entered-in-error" and withdrawn["meta"]["versionId"] == "2"
    assert withdrawn["valueQuantity"]["value"] == 5.2  # the value stays readable


def test_a_cancelled_order_is_revoked(db_session, clinic, read):
    encounter = started(db_session, clinic)
    order = svc.add_order(db_session, who(clinic.doctor), encounter.id, "18.0071.0028")
    db_session.commit()
    svc.cancel_order(db_session, who(clinic.doctor), encounter.id, order.id)
    db_session.commit()
    request = read(f"/fhir/ServiceRequest/{order.id}")
    assert request["status"] == "revoked" and request["meta"]["versionId"] == "2"
    assert request["code"]["coding"] == [
        {
            "system": systems.SERVICE_CODE,
            "code": "18.0071.0028",
            "display": "Chụp X-quang ngực thẳng",
        }
    ]
    assert request["category"][0]["coding"][0]["code"] == "363679005"


def test_diagnostic_report(db_session, clinic, read):
    encounter = started(db_session, clinic)
    order = svc.add_order(db_session, who(clinic.doctor), encounter.id, "23.0075.1494")
    result = svc.enter_result(db_session, who(clinic.lab), order.id, "<0.5", unit="G/L")
    report = DiagnosticReport(
        patient_id=encounter.patient_id,
        facility_id=clinic.facility.id,
        encounter_id=encounter.id,
        order_id=order.id,
        status="final",
        category="LAB",
        code_system=systems.LOINC,
        code="2345-7",
        title="Glucose",
        conclusion="Bình thường",
        result_ids=[result.id],
        issued_at=utcnow(),
        source="LIS Bệnh viện",
    )
    db_session.add(report)
    db_session.commit()
    body = read(f"/fhir/DiagnosticReport/{report.id}")
    assert body["status"] == "final"
    assert body["code"]["coding"] == [
        {"system": systems.LOINC, "code": "2345-7", "display": "Glucose"}
    ]
    assert body["category"][0]["coding"][0] == {"system": systems.V2_0074, "code": "LAB"}
    assert body["basedOn"] == [{"reference": f"ServiceRequest/{order.id}"}]
    assert body["result"] == [{"reference": f"Observation/r{result.id}"}]
    assert body["encounter"] == {"reference": f"Encounter/e{encounter.id}"}
    assert body["subject"] == {"reference": f"Patient/{encounter.patient_id}"}
    assert body["conclusion"] == "Bình thường"
    indexed = values(db_session, "DiagnosticReport", str(report.id))
    for name in ("patient", "subject", "encounter", "code", "status", "based-on", "date"):
        assert indexed[name], name
    assert {v.code for v in indexed["category"]} == {"LAB"}
    value = read(f"/fhir/Observation/r{result.id}")["valueQuantity"]
    assert value == {
        "value": 0.5,
        "comparator": "<",
        "unit": "G/L",
        "system": systems.UCUM,
        "code": "10*9/L",
    }
    report.status = "amended"
    db_session.commit()
    assert read(f"/fhir/DiagnosticReport/{report.id}")["meta"]["versionId"] == "2"


# --- AllergyIntolerance -----------------------------------------------------------------------


def test_allergies_and_a_deleted_one(db_session, read):
    patient = PatientFactory()
    allergy = PatientAllergy(
        patient=patient,
        substance="Penicillin",
        reaction="Mẩn ngứa",
        severity=AllergySeverity.SEVERE,
    )
    db_session.add(allergy)
    db_session.commit()
    body = read(f"/fhir/AllergyIntolerance/{allergy.id}")
    assert body["patient"] == {"reference": f"Patient/{patient.id}"}
    assert body["code"] == {"text": "Penicillin"}
    assert body["clinicalStatus"]["coding"][0]["code"] == "active"
    assert body["criticality"] == "high"
    assert body["reaction"] == [{"manifestation": [{"text": "Mẩn ngứa"}], "severity": "severe"}]
    assert row_of(db_session, "AllergyIntolerance", str(allergy.id)).facility_id is None
    indexed = values(db_session, "AllergyIntolerance", str(allergy.id))
    assert {v.reference for v in indexed["patient"]} == {f"Patient/{patient.id}"}
    assert {v.code for v in indexed["clinical-status"]} == {"active"}

    patient.allergies.remove(allergy)
    db_session.commit()
    read(f"/fhir/AllergyIntolerance/{allergy.id}", status=410)


# --- Coverage -------------------------------------------------------------------------------


def test_coverage_is_the_bhyt_card_and_a_newer_card_cancels_the_old(db_session, read):
    patient = PatientFactory()
    db_session.add(
        BhytGroup(
            code="DN",
            benefit_level=4,
            description="Người lao động trong doanh nghiệp",
            valid_from=dt.date(2025, 7, 1),
            valid_to=None,
            source="test",
        )
    )
    old = CoverageFactory(
        patient=patient,
        area_code="K2",
        five_year_date=dt.date(2024, 3, 1),
        status=CardStatus.VERIFIED,
    )
    db_session.commit()
    body = read(f"/fhir/Coverage/{old.id}")
    assert body["status"] == "active"
    assert {(i["system"], i["value"]) for i in body["identifier"]} == {
        (systems.BHYT, old.card_number),
        (systems.BHXH, old.insurance_number),
    }
    assert body["beneficiary"] == {"reference": f"Patient/{patient.id}"}
    assert body["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert body["payor"][0]["display"] == "Bảo hiểm xã hội Việt Nam"
    assert body["class"][0]["value"] == "DN"
    assert body["class"][0]["name"] == "Người lao động trong doanh nghiệp"
    extensions = {e["url"]: e for e in body["extension"]}
    assert extensions[systems.BENEFIT_LEVEL_EXT]["valueCoding"]["code"] == "4"
    assert extensions[systems.REGISTERED_FACILITY_EXT]["valueIdentifier"] == {
        "system": systems.FACILITY_CODE,
        "value": "91011",
    }
    assert extensions[systems.AREA_CODE_EXT]["valueCode"] == "K2"
    assert extensions[systems.FIVE_YEARS_EXT]["valueDate"] == "2024-03-01"
    assert extensions[systems.VERIFICATION_EXT]["valueCode"] == "verified"
    assert row_of(db_session, "Coverage", str(old.id)).patient_id == patient.id
    indexed = values(db_session, "Coverage", str(old.id))
    for name in ("beneficiary", "patient", "identifier", "status", "payor"):
        assert indexed[name], name
    assert {(v.system, v.code) for v in indexed["payor"]} == {(systems.PAYOR_ID, "BHXH")}

    new = CoverageFactory(patient=patient, valid_from=dt.date(2027, 1, 1))
    db_session.commit()
    assert read(f"/fhir/Coverage/{new.id}")["status"] == "active"
    earlier = read(f"/fhir/Coverage/{old.id}")
    assert earlier["status"] == "cancelled" and earlier["meta"]["versionId"] == "2"


# --- every id, for a rebuild ------------------------------------------------------------------


def test_all_ids_list_what_is_projected(db_session, clinic):
    from his.fhirapi.mappers import ids_of
    from his.fhirapi.projection import rebuild_all

    encounter = started(db_session, clinic)
    vitals = svc.record_vitals(db_session, who(clinic.nurse), encounter.id, {"pulse": 70})
    diagnosis = svc.add_diagnosis(db_session, who(clinic.doctor), encounter.id, "I10", main=True)
    db_session.commit()
    assert f"e{encounter.id}" in set(ids_of(db_session, "Encounter"))
    assert f"v{encounter.visit_id}" in set(ids_of(db_session, "Encounter"))
    observations = set(ids_of(db_session, "Observation"))
    assert f"vs{vitals.id}-hr" in observations and f"vs{vitals.id}-bp" not in observations
    assert str(diagnosis.id) in set(ids_of(db_session, "Condition"))
    types = (
        "Encounter",
        "Condition",
        "Observation",
        "ServiceRequest",
        "DiagnosticReport",
        "AllergyIntolerance",
        "Coverage",
    )
    for resource_type in types:
        for resource_id in ids_of(db_session, resource_type):
            row = row_of(db_session, resource_type, resource_id)
            assert row is not None and not row.deleted, (resource_type, resource_id)
    # A full rebuild finds the projection as the commits left it: nothing to write.
    assert rebuild_all(db_session, types) == 0
