"""Organization, Location, Practitioner(Role), Medication, MedicationRequest,
MedicationDispense and Group: built from the domain rows on commit, valid R4, versioned when
the rows change, indexed for their search parameters."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationdispense import MedicationDispense
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from sqlalchemy import select

from his.fhirapi import projection, systems
from his.fhirapi.searchparams import params_of
from his.localtime import local_today
from his.models import (
    FhirGroup,
    FhirGroupMember,
    FhirResource,
    FhirSearchValue,
    PrescriptionStatus,
    Role,
    UserRole,
)
from his.services import stock
from his.services.stock import ReturnQuantity
from tests.factories import (
    DepartmentFactory,
    FacilityFactory,
    PatientFactory,
    RoomFactory,
    UserFactory,
)
from tests.pharmacy_data import make_drug, make_lot, make_prescription, principal_of

MODELS = {
    "Organization": Organization,
    "Location": Location,
    "Practitioner": Practitioner,
    "PractitionerRole": PractitionerRole,
    "Medication": Medication,
    "MedicationRequest": MedicationRequest,
    "MedicationDispense": MedicationDispense,
    "Group": Group,
}


@pytest.fixture
def token_for(login_token):
    def make(facility, roles=(Role.DOCTOR,)):
        user = UserFactory(roles=roles, facility=facility)
        return login_token(user.username)["Authorization"].removeprefix("Bearer ")

    return make


def fetch(fhir_get, path, token=None):
    """GET a resource, check it is valid R4 for its type, return its JSON."""
    response = fhir_get(path, token=token)
    assert response.status_code == 200, response.json
    body = response.json
    resource_type = path.split("/")[2]
    assert body["resourceType"] == resource_type
    MODELS[resource_type].model_validate(body)
    return body


def indexed(session, resource_type, resource_id) -> dict[str, set]:
    """param → the values its search rows hold (code, reference, exact text or start)."""
    rid = session.scalar(
        select(FhirResource.rid).where(
            FhirResource.resource_type == resource_type, FhirResource.resource_id == resource_id
        )
    )
    found: dict[str, set] = {}
    for row in session.scalars(select(FhirSearchValue).where(FhirSearchValue.rid == rid)):
        found.setdefault(row.param, set()).add(row.code or row.reference or row.exact or row.start)
    return found


def versions(session, resource_type, resource_id) -> int:
    return session.scalar(
        select(FhirResource.version_id).where(
            FhirResource.resource_type == resource_type, FhirResource.resource_id == resource_id
        )
    )


def test_a_facility_is_an_organization_and_its_departments_and_rooms_locations(
    db_session, fhir_get, token_for
):
    centre = FacilityFactory(code="91100", name="Trung tâm Y tế Thử")
    station = FacilityFactory(code="91101", parent=centre, commune_code="30313")
    room = RoomFactory(department=DepartmentFactory(facility=station, code="K01"), code="P01")
    db_session.commit()
    token = token_for(station)

    org = fetch(fhir_get, f"/fhir/Organization/{station.id}")
    assert org["identifier"] == [
        {"use": "official", "system": systems.FACILITY_CODE, "value": "91101"}
    ]
    assert org["partOf"] == {"reference": f"Organization/{centre.id}"}
    assert org["active"] is True
    care = next(e for e in org["extension"] if e["url"] == systems.CARE_LEVEL_EXT)
    assert care["valueCodeableConcept"]["coding"][0]["code"] == "primary"
    assert {"system": systems.CARE_LEVEL_CS, "code": "primary"}.items() <= (
        org["type"][1]["coding"][0].items()
    )
    address_ext = {e["url"]: e["valueCode"] for e in org["address"][0]["extension"]}
    assert address_ext == {systems.ADMIN_PROVINCE: "91", systems.ADMIN_COMMUNE: "30313"}
    values = indexed(db_session, "Organization", str(station.id))
    assert {"identifier", "name", "partof", "type", "active"} <= set(values)
    assert "91101" in values["identifier"] and f"Organization/{centre.id}" in values["partof"]

    department = fetch(fhir_get, f"/fhir/Location/d{room.department_id}", token)
    assert department["identifier"][0] == {"system": systems.DEPARTMENT_CODE, "value": "K01"}
    assert department["physicalType"]["coding"][0]["code"] == "wa"
    assert department["managingOrganization"] == {"reference": f"Organization/{station.id}"}
    loc = fetch(fhir_get, f"/fhir/Location/r{room.id}", token)
    assert loc["partOf"] == {"reference": f"Location/d{room.department_id}"}
    assert loc["physicalType"]["coding"][0]["code"] == "ro"
    assert loc["name"] == room.name
    values = indexed(db_session, "Location", f"r{room.id}")
    assert {"identifier", "name", "organization", "partof"} <= set(values)
    # A location is its facility's: staff of another facility do not see it.
    assert fhir_get(f"/fhir/Location/r{room.id}").status_code == 404

    station.name = "Trạm Y tế xã Mới"
    station.active = False
    room.active = False
    db_session.commit()
    assert versions(db_session, "Organization", str(station.id)) == 2
    org = fetch(fhir_get, f"/fhir/Organization/{station.id}")
    assert org["name"] == "Trạm Y tế xã Mới" and org["active"] is False
    assert fetch(fhir_get, f"/fhir/Location/r{room.id}", token)["status"] == "inactive"
    assert versions(db_session, "Location", f"d{room.department_id}") == 1


def test_clinical_staff_are_practitioners_and_others_are_not(db_session, fhir_get):
    facility = FacilityFactory()
    doctor = UserFactory(
        roles=(Role.DOCTOR,),
        facility=facility,
        full_name="BS. Trần Văn Khám",
        practising_certificate="001234/KG-CCHN",
    )
    cashier = UserFactory(roles=(Role.CASHIER,), facility=facility)
    db_session.commit()

    body = fetch(fhir_get, f"/fhir/Practitioner/{doctor.id}")
    assert doctor.username not in json.dumps(body)  # login names are not published
    assert {"use": "official", "system": systems.CCHN, "value": "001234/KG-CCHN"} in body[
        "identifier"
    ]
    assert body["name"][0]["text"] == "BS. Trần Văn Khám" and body["active"] is True
    text = str(body)
    assert doctor.password_hash not in text and "password" not in text
    role = fetch(fhir_get, f"/fhir/PractitionerRole/{doctor.id}")
    assert role["practitioner"]["reference"] == f"Practitioner/{doctor.id}"
    assert role["organization"] == {"reference": f"Organization/{facility.id}"}
    assert role["code"][0]["coding"][0]["code"] == "doctor"
    assert {"identifier", "name", "active"} <= set(
        indexed(db_session, "Practitioner", str(doctor.id))
    )
    assert {"practitioner", "organization", "role"} <= set(
        indexed(db_session, "PractitionerRole", str(doctor.id))
    )
    assert fhir_get(f"/fhir/Practitioner/{cashier.id}").status_code == 404

    # A second role shows in the PractitionerRole; losing every clinical role removes both.
    doctor.role_rows.append(UserRole(role=Role.PHARMACIST))
    db_session.commit()
    codes = [
        c["coding"][0]["code"]
        for c in fetch(fhir_get, f"/fhir/PractitionerRole/{doctor.id}")["code"]
    ]
    assert sorted(codes) == ["doctor", "pharmacist"]
    doctor.role_rows.clear()
    doctor.role_rows.append(UserRole(role=Role.CASHIER))
    db_session.commit()
    assert fhir_get(f"/fhir/Practitioner/{doctor.id}").status_code == 410
    assert fhir_get(f"/fhir/PractitionerRole/{doctor.id}").status_code == 410


@pytest.fixture
def pharmacy(db_session):
    facility = FacilityFactory(code="91200")
    pharmacist = UserFactory(roles=(Role.PHARMACIST,), facility=facility)
    drug = make_drug(db_session, facility, "AMOX500", "Amoxicillin", strength="500 mg")
    drug.registration_number = "VD-12345-20"
    drug.national_code = "40.123"
    make_lot(db_session, facility, drug, "L001", local_today() + dt.timedelta(days=300), 100)
    return facility, pharmacist, drug


def test_a_prescription_item_is_a_medication_request_that_follows_the_prescription(
    db_session, fhir_get, token_for, pharmacy
):
    facility, pharmacist, drug = pharmacy
    rx = make_prescription(db_session, facility, [(drug, 10)], status=PrescriptionStatus.DRAFT)
    rx.advice = "Uống nhiều nước"
    rx.items[0].instructions = "Sau ăn"
    db_session.commit()
    token = token_for(facility)
    item = rx.items[0]

    med = fetch(fhir_get, f"/fhir/Medication/{drug.id}", token)
    assert {"system": systems.DRUG_CODE, "code": "AMOX500"}.items() <= med["code"]["coding"][
        0
    ].items()
    assert {"system": systems.DRUG_NATIONAL_CODE, "code": "40.123"} in med["code"]["coding"]
    assert {"use": "official", "system": systems.DRUG_REGISTRATION, "value": "VD-12345-20"} in med[
        "identifier"
    ]
    assert med["ingredient"][0]["itemCodeableConcept"]["text"] == "Amoxicillin"
    assert med["ingredient"][0]["strength"]["numerator"] == {"value": 500, "unit": "mg"}
    assert med["form"]["text"] == "viên nén"
    assert med["extension"][0]["valueCoding"]["code"] == "C"
    assert {"code", "identifier", "form"} <= set(indexed(db_session, "Medication", str(drug.id)))

    drug.active = False  # a catalog change is a new version of the Medication
    db_session.commit()
    assert versions(db_session, "Medication", str(drug.id)) == 2
    assert fetch(fhir_get, f"/fhir/Medication/{drug.id}", token)["status"] == "inactive"

    draft = fetch(fhir_get, f"/fhir/MedicationRequest/{item.id}", token)
    assert draft["status"] == "draft" and "identifier" not in draft
    assert draft["intent"] == "order"

    rx.status = PrescriptionStatus.SIGNED
    rx.code = "91200abcdefg-c"
    rx.signed_at = dt.datetime(2026, 11, 27, 2, 30, tzinfo=dt.UTC)
    rx.valid_until = dt.date(2026, 12, 2)
    db_session.commit()
    assert versions(db_session, "MedicationRequest", str(item.id)) == 2
    signed = fetch(fhir_get, f"/fhir/MedicationRequest/{item.id}", token)
    national = {"use": "official", "system": systems.EPRESCRIPTION, "value": "91200abcdefg-c"}
    assert signed["identifier"] == [national] and signed["groupIdentifier"] == national
    assert signed["status"] == "active"
    assert signed["authoredOn"] == "2026-11-27T09:30:00+07:00"
    assert signed["medicationReference"]["reference"] == f"Medication/{drug.id}"
    assert signed["subject"] == {"reference": f"Patient/{rx.patient_id}"}
    assert signed["encounter"] == {"reference": f"Encounter/e{rx.encounter_id}"}
    assert signed["requester"] == {"reference": f"Practitioner/{rx.prescriber_id}"}
    dosage = signed["dosageInstruction"][0]
    assert dosage["timing"]["repeat"]["frequency"] == 2
    assert dosage["timing"]["repeat"]["boundsDuration"]["value"] == 5
    assert dosage["doseAndRate"][0]["doseQuantity"] == {"value": 1, "unit": "viên"}
    assert dosage["patientInstruction"] == "Sau ăn" and dosage["route"]["text"] == "uống"
    request = signed["dispenseRequest"]
    assert request["quantity"] == {"value": 10, "unit": "viên"}
    assert request["expectedSupplyDuration"]["value"] == 5
    assert request["validityPeriod"]["end"] == "2026-12-02"
    assert signed["note"] == [{"text": "Uống nhiều nước"}]
    values = indexed(db_session, "MedicationRequest", str(item.id))
    declared = {"patient", "subject", "identifier", "authoredon", "status", "intent"}
    declared |= {"encounter", "medication", "requester"}
    assert declared <= set(values) <= set(params_of("MedicationRequest"))
    assert "91200abcdefg-c" in values["identifier"] and "active" in values["status"]

    # Dispensed in full: completed; a return makes it active again and is its own dispense.
    pharmacist_principal = principal_of(pharmacist)
    dispense = stock.dispense(db_session, pharmacist_principal, rx.id)
    db_session.commit()
    line = dispense.lines[0]
    assert fetch(fhir_get, f"/fhir/MedicationRequest/{item.id}", token)["status"] == "completed"
    handed = fetch(fhir_get, f"/fhir/MedicationDispense/{line.id}", token)
    assert handed["status"] == "completed"
    assert handed["type"]["coding"][0]["code"] == "dispense"
    assert handed["quantity"] == {"value": 10, "unit": "viên"}
    assert handed["authorizingPrescription"] == [{"reference": f"MedicationRequest/{item.id}"}]
    assert handed["performer"][0]["actor"] == {"reference": f"Practitioner/{pharmacist.id}"}
    assert handed["subject"] == {"reference": f"Patient/{rx.patient_id}"}
    assert handed["medicationReference"]["reference"] == f"Medication/{drug.id}"
    lot = handed["extension"][0]["extension"]
    assert {"url": "lotNumber", "valueString": "L001"} in lot
    assert "whenHandedOver" in handed
    values = indexed(db_session, "MedicationDispense", str(line.id))
    declared = {"patient", "subject", "prescription", "status", "whenhandedover"}
    declared |= {"medication", "performer"}
    assert declared <= set(values)

    back = stock.return_units(
        db_session,
        pharmacist_principal,
        rx.id,
        [ReturnQuantity(item.id, Decimal(3))],
        reason="Dị ứng",
    )
    db_session.commit()
    returned = fetch(fhir_get, f"/fhir/MedicationDispense/{back.lines[0].id}", token)
    assert returned["status"] == "completed"
    assert returned["type"]["coding"][0]["code"] == "return"
    assert returned["quantity"]["value"] == -3
    assert fetch(fhir_get, f"/fhir/MedicationRequest/{item.id}", token)["status"] == "active"
    # The search engine finds them by the values indexed here.
    found = fhir_get(
        f"/fhir/MedicationDispense?prescription=MedicationRequest/{item.id}&type=return",
        token=token,
    )
    assert found.status_code == 200, found.json
    assert [e["resource"]["id"] for e in found.json["entry"]] == [str(back.lines[0].id)]
    found = fhir_get(
        f"/fhir/MedicationRequest?identifier={systems.EPRESCRIPTION}|91200abcdefg-c"
        f"&patient=Patient/{rx.patient_id}&status=active",
        token=token,
    )
    assert [e["resource"]["id"] for e in found.json["entry"]] == [str(item.id)]
    # Another facility's staff see neither.
    assert fhir_get(f"/fhir/MedicationRequest/{item.id}").status_code == 404


def test_replaced_and_cancelled_prescriptions_are_cancelled_requests(
    db_session, fhir_get, token_for, pharmacy
):
    facility, _pharmacist, drug = pharmacy
    old = make_prescription(db_session, facility, [(drug, 10)])
    new = make_prescription(db_session, facility, [(drug, 8)])
    new.replaces_id = old.id
    old.status = PrescriptionStatus.REPLACED
    draft = make_prescription(db_session, facility, [(drug, 4)], status=PrescriptionStatus.DRAFT)
    draft.status = PrescriptionStatus.CANCELLED
    db_session.commit()
    token = token_for(facility)
    replaced = fetch(fhir_get, f"/fhir/MedicationRequest/{old.items[0].id}", token)
    assert replaced["status"] == "cancelled"
    assert replaced["statusReason"]["coding"][0]["code"] == "replaced"
    successor = fetch(fhir_get, f"/fhir/MedicationRequest/{new.items[0].id}", token)
    assert successor["priorPrescription"] == {"reference": f"MedicationRequest/{old.items[0].id}"}
    cancelled = fetch(fhir_get, f"/fhir/MedicationRequest/{draft.items[0].id}", token)
    assert cancelled["status"] == "cancelled"


def test_a_patient_group_lists_its_members(db_session, fhir_get, token_for):
    facility = FacilityFactory()
    first, second = PatientFactory(), PatientFactory()
    group = FhirGroup(name="BHXH tỉnh: đợt 11", facility_id=facility.id)
    db_session.add(group)
    db_session.flush()
    db_session.add(FhirGroupMember(group_id=group.id, patient_id=first.id))
    db_session.commit()
    token = token_for(facility, roles=(Role.INTEGRATION,))  # export groups: integrations
    body = fetch(fhir_get, f"/fhir/Group/{group.id}", token)
    assert body["type"] == "person" and body["actual"] is True
    assert body["name"] == "BHXH tỉnh: đợt 11"
    assert [m["entity"] for m in body["member"]] == [{"reference": f"Patient/{first.id}"}]
    assert body["managingEntity"] == {"reference": f"Organization/{facility.id}"}
    db_session.add(FhirGroupMember(group_id=group.id, patient_id=second.id))
    db_session.commit()
    assert versions(db_session, "Group", str(group.id)) == 2
    values = indexed(db_session, "Group", str(group.id))
    assert {f"Patient/{first.id}", f"Patient/{second.id}"} == values["member"]
    assert {"type", "actual", "identifier"} <= set(values)


def test_rebuild_all_projects_every_record_of_these_types(db_session):
    facility = FacilityFactory()
    RoomFactory(department=DepartmentFactory(facility=facility))
    UserFactory(roles=(Role.NURSE,), facility=facility)
    db_session.commit()
    types = ["Organization", "Location", "Practitioner", "PractitionerRole", "Group"]
    types += ["Medication", "MedicationRequest", "MedicationDispense"]
    # Already current: nothing new to write.
    assert projection.rebuild_all(db_session, types) == 0
