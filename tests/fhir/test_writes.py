"""Patient create / update / patch / conditional create, the other creatable types, and
405 for every other write: through the same services as the REST API."""

import json

import pytest
from sqlalchemy import func, select

from his.fhirapi import systems
from his.models import (
    AuditAction,
    AuditEvent,
    DiagnosticReport,
    FhirResource,
    Patient,
    PatientAllergy,
    Role,
)
from tests import encounters_data as data
from tests.factories import PatientFactory, UserFactory

FHIR_JSON = "application/fhir+json"
CCCD_MALE_1985 = "089085001234"
CCCD_FEMALE_1990 = "091190004321"


def patient_resource(**overrides):
    resource = {
        "resourceType": "Patient",
        "identifier": [
            {"system": systems.CCCD, "value": CCCD_MALE_1985},
            {"system": systems.BHYT, "value": "DN4910123456789"},
            {"system": "urn:oid:1.2.3.4", "value": "LAB-77"},
        ],
        "name": [
            {"use": "official", "text": "NGUYỄN VĂN AN", "family": "Nguyễn", "given": ["Văn", "An"]}
        ],
        "gender": "male",
        "birthDate": "1985-04-12",
        "telecom": [{"system": "phone", "value": "+84 912 345 678"}],
        "address": [
            {
                "use": "home",
                "line": ["12 Trần Hưng Đạo"],
                "extension": [
                    {"url": systems.ADMIN_PROVINCE, "valueCode": "91"},
                    {"url": systems.ADMIN_COMMUNE, "valueCode": "30742"},
                ],
            }
        ],
        "extension": [
            {
                "url": systems.ETHNICITY,
                "valueCodeableConcept": {
                    "coding": [{"system": systems.ETHNICITY_CS, "code": "01"}]
                },
            }
        ],
    }
    resource.update(overrides)
    return resource


@pytest.fixture
def fhir(client, staff_token):
    def call(method, path, body=None, token=None, content_type=FHIR_JSON, **headers):
        all_headers = {"Authorization": f"Bearer {token or staff_token}", "Accept": FHIR_JSON}
        all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
        return client.open(
            path,
            method=method,
            data=json.dumps(body) if body is not None else None,
            content_type=content_type if body is not None else None,
            headers=all_headers,
        )

    return call


def _count(db_session, model):
    return db_session.scalar(select(func.count()).select_from(model))


def test_create_patient_through_the_registration_service(fhir, db_session):
    response = fhir("POST", "/fhir/Patient", patient_resource())
    assert response.status_code == 201, response.json
    body = response.json
    pid = body["id"]
    assert response.headers["Location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    assert response.headers["ETag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    patient = db_session.get(Patient, int(pid))
    assert patient.full_name == "Nguyễn Văn An"
    assert (patient.family_name, patient.middle_name, patient.given_name) == ("Nguyễn", "Văn", "An")
    assert patient.phone == "0912345678"
    assert patient.commune_code == "30742" and patient.ethnicity_code == "01"
    assert patient.identifier("cccd") == CCCD_MALE_1985
    assert patient.coverage.card_number == "DN4910123456789"
    systems_back = {i["system"]: i["value"] for i in body["identifier"]}
    assert systems_back[systems.CCCD] == CCCD_MALE_1985
    assert systems_back["urn:oid:1.2.3.4"] == "LAB-77"
    assert systems_back[systems.MRN] == patient.mrn
    # Audited twice: by the service, and by the FHIR layer with the caller named.
    details = db_session.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.action == AuditAction.CREATE,
            AuditEvent.entity_type == "Patient",
            AuditEvent.entity_id == pid,
        )
    ).all()
    assert any(d and d.startswith("fhir") for d in details)


def test_partial_birth_dates_and_prefer_return(fhir):
    minimal = fhir(
        "POST",
        "/fhir/Patient",
        patient_resource(
            identifier=[], birthDate="1950", name=[{"text": "Trần Thị Bé"}], gender="female"
        ),
        Prefer="return=minimal",
    )
    assert minimal.status_code == 201 and minimal.data == b""
    assert "Location" in minimal.headers and minimal.headers["ETag"] == 'W/"1"'
    outcome = fhir(
        "POST",
        "/fhir/Patient",
        patient_resource(identifier=[], birthDate="1960-03", name=[{"text": "Lê Văn Cường"}]),
        Prefer="return=OperationOutcome",
    )
    assert outcome.status_code == 201
    assert outcome.json["resourceType"] == "OperationOutcome"
    location = outcome.headers["Location"].split("/fhir/")[1].rsplit("/_history", 1)[0]
    read = fhir("GET", f"/fhir/{location}").json
    assert read["birthDate"] == "1960-03"


def test_invalid_patient_names_the_fhir_elements(fhir, db_session):
    before = _count(db_session, Patient)
    bad = patient_resource(
        identifier=[{"system": systems.CCCD, "value": CCCD_FEMALE_1990}],  # a woman's, born 1990
        birthDate="2099-01-01",
    )
    response = fhir("POST", "/fhir/Patient", bad)
    assert response.status_code == 422, response.json
    assert response.json["resourceType"] == "OperationOutcome"
    expressions = {e for i in response.json["issue"] for e in i.get("expression", [])}
    assert "Patient.birthDate" in expressions
    child = patient_resource(identifier=[], birthDate="2024-01-01", name=[{"text": "Bé Na"}])
    response = fhir("POST", "/fhir/Patient", child)
    assert response.status_code == 422
    expressions = {e for i in response.json["issue"] for e in i.get("expression", [])}
    assert "Patient.contact[0].name" in expressions  # a child under 6 needs a guardian
    with_guardian = dict(
        child, contact=[{"name": {"text": "Nguyễn Thị Mẹ"}, "relationship": [{"text": "mẹ"}]}]
    )
    assert fhir("POST", "/fhir/Patient", with_guardian).status_code == 201
    assert _count(db_session, Patient) == before + 1
    wrong_cccd = patient_resource(identifier=[{"system": systems.CCCD, "value": "12345"}])
    response = fhir("POST", "/fhir/Patient", wrong_cccd)
    assert response.status_code == 422
    assert response.json["issue"][-1]["expression"] == ["Patient.identifier[0]"] or any(
        i.get("expression") == ["Patient.identifier[0]"] for i in response.json["issue"]
    )
    not_json = fhir("POST", "/fhir/Patient", None)
    assert not_json.status_code in (400, 415)
    wrong_type = fhir("POST", "/fhir/Patient", {"resourceType": "Observation"})
    assert wrong_type.status_code == 400


def test_duplicate_identifier_is_a_409_naming_the_owner(fhir):
    assert fhir("POST", "/fhir/Patient", patient_resource()).status_code == 201
    again = fhir(
        "POST",
        "/fhir/Patient",
        patient_resource(name=[{"text": "Người Khác"}], birthDate="1985-01-01"),
    )
    assert again.status_code == 409
    text = json.dumps(again.json, ensure_ascii=False)
    assert "Patient/" in text


def test_conditional_create_returns_the_existing_patient(fhir, db_session):
    condition = f"identifier={systems.CCCD}|{CCCD_MALE_1985}"
    first = fhir("POST", "/fhir/Patient", patient_resource(), If_None_Exist=condition)
    assert first.status_code == 201
    second = fhir("POST", "/fhir/Patient", patient_resource(), If_None_Exist=condition)
    assert second.status_code == 200, second.json
    assert second.json["id"] == first.json["id"]
    assert (
        db_session.scalar(
            select(func.count()).select_from(Patient).where(Patient.id == int(first.json["id"]))
        )
        == 1
    )
    bad = fhir("POST", "/fhir/Patient", patient_resource(), If_None_Exist="")
    assert bad.status_code == 201 or bad.status_code == 409  # an empty header is no condition


def test_conditional_create_with_several_matches_is_412(fhir, db_session):
    PatientFactory(phone="0909000111")
    PatientFactory(phone="0909000111")
    db_session.commit()
    response = fhir("POST", "/fhir/Patient", patient_resource(), If_None_Exist="phone=0909000111")
    assert response.status_code == 412, response.json
    assert response.json["resourceType"] == "OperationOutcome"


def test_update_requires_if_match_and_refuses_a_stale_one(fhir, db_session):
    created = fhir("POST", "/fhir/Patient", patient_resource()).json
    pid = created["id"]
    changed = dict(created, telecom=[{"system": "phone", "value": "0987654321"}])
    missing = fhir("PUT", f"/fhir/Patient/{pid}", changed)
    assert missing.status_code == 412 and "If-Match" in missing.json["issue"][0]["diagnostics"]
    ok = fhir("PUT", f"/fhir/Patient/{pid}", changed, If_Match='W/"1"')
    assert ok.status_code == 200, ok.json
    assert ok.headers["ETag"] == 'W/"2"'
    assert ok.json["telecom"][0]["value"] == "0987654321"
    # The card sent back as read adds no second card.
    assert (
        db_session.get(Patient, int(pid)).coverages
        and len(db_session.get(Patient, int(pid)).coverages) == 1
    )
    stale = fhir("PUT", f"/fhir/Patient/{pid}", changed, If_Match='W/"1"')
    assert stale.status_code == 412
    wrong_id = fhir("PUT", f"/fhir/Patient/{pid}", dict(changed, id="999"), If_Match='W/"2"')
    assert wrong_id.status_code == 400
    absent = fhir("PUT", "/fhir/Patient/999999", dict(changed, id="999999"), If_Match='W/"1"')
    assert absent.status_code == 405
    invalid = fhir(
        "PUT", f"/fhir/Patient/{pid}", dict(changed, birthDate="nonsense"), If_Match='W/"2"'
    )
    assert invalid.status_code in (400, 422)
    assert db_session.get(Patient, int(pid)).birth_year == 1985


def test_update_removes_what_the_resource_no_longer_has(fhir, db_session):
    created = fhir("POST", "/fhir/Patient", patient_resource()).json
    pid = created["id"]
    without_phone = {k: v for k, v in created.items() if k != "telecom"}
    response = fhir("PUT", f"/fhir/Patient/{pid}", without_phone, If_Match='W/"1"')
    assert response.status_code == 200, response.json
    db_session.expire_all()
    assert db_session.get(Patient, int(pid)).phone is None


def test_json_patch(fhir, db_session):
    created = fhir("POST", "/fhir/Patient", patient_resource()).json
    pid = created["id"]
    ops = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/telecom/0/value", "value": "0911222333"},
    ]
    response = fhir(
        "PATCH",
        f"/fhir/Patient/{pid}",
        ops,
        content_type="application/json-patch+json",
        If_Match='W/"1"',
    )
    assert response.status_code == 200, response.json
    assert response.json["telecom"][0]["value"] == "0911222333"
    assert response.json["meta"]["versionId"] == "2"
    failed_test = fhir(
        "PATCH",
        f"/fhir/Patient/{pid}",
        [{"op": "test", "path": "/gender", "value": "female"}],
        content_type="application/json-patch+json",
        If_Match='W/"2"',
    )
    assert failed_test.status_code == 409
    stale = fhir(
        "PATCH",
        f"/fhir/Patient/{pid}",
        ops,
        content_type="application/json-patch+json",
        If_Match='W/"1"',
    )
    assert stale.status_code == 412
    bad_path = fhir(
        "PATCH",
        f"/fhir/Patient/{pid}",
        [{"op": "remove", "path": "/nothing/here"}],
        content_type="application/json-patch+json",
        If_Match='W/"2"',
    )
    assert bad_path.status_code == 422
    unversioned = fhir(
        "PATCH", f"/fhir/Patient/{pid}", ops, content_type="application/json-patch+json"
    )
    assert unversioned.status_code == 412
    too_long = fhir(
        "PATCH",
        f"/fhir/Patient/{pid}",
        [{"op": "replace", "path": "/name/0/given", "value": ["X" + "a" * 300]}],
        content_type="application/json-patch+json",
        If_Match='W/"2"',
    )
    assert too_long.status_code == 422, too_long.json
    assert too_long.json["issue"][0]["expression"][0].startswith("Patient.name[0]")
    wrong_type = fhir("PATCH", f"/fhir/Patient/{pid}", ops)
    assert wrong_type.status_code == 415


def test_every_other_write_is_405_with_allow(fhir, db_session):
    patient = PatientFactory()
    db_session.commit()
    for method, path, allow in [
        ("DELETE", f"/fhir/Patient/{patient.id}", "GET, PUT, PATCH"),
        ("PUT", "/fhir/Organization/1", "GET"),
        ("PATCH", "/fhir/Encounter/e1", "GET"),
        ("DELETE", "/fhir/Observation/r1", "GET"),
        ("POST", "/fhir/Encounter", "GET"),
        ("POST", "/fhir/Practitioner", "GET"),
        ("DELETE", "/fhir/Patient", "GET, POST"),
        ("PUT", "/fhir/Patient", "GET, POST"),
    ]:
        response = fhir(method, path, {"resourceType": path.split("/")[2]})
        assert response.status_code == 405, (method, path, response.json)
        assert response.json["resourceType"] == "OperationOutcome"
        assert response.headers["Allow"] == allow, (method, path)
    assert fhir("POST", "/fhir/Spaceship", {"resourceType": "Spaceship"}).status_code == 404


def test_a_role_that_may_not_register_is_refused(fhir, db_session, login_token):
    # An auditor's staff token carries system/*.cruds: the registration service refuses.
    auditor = UserFactory(roles=(Role.AUDITOR,))
    token = login_token(auditor.username)["Authorization"].removeprefix("Bearer ")
    response = fhir("POST", "/fhir/Patient", patient_resource(), token=token)
    assert response.status_code == 403
    assert response.json["resourceType"] == "OperationOutcome"


# --- the other creatable types ------------------------------------------------------------------


@pytest.fixture
def lab_order(db_session, login_token):
    from his.services import encounters as svc
    from his.services.access import Principal

    clinic = data.clinic(db_session)
    encounter = data.examined(db_session, clinic)
    patient = encounter.patient
    order = svc.add_order(
        db_session, Principal.for_user(clinic.doctor), encounter.id, "23.0075.1494"
    )
    db_session.commit()
    token = login_token(clinic.lab.username)["Authorization"].removeprefix("Bearer ")
    return {
        "clinic": clinic,
        "patient": patient,
        "encounter": encounter,
        "order": order,
        "token": token,
    }


def observation(patient_id, **overrides):
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": systems.OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {
            "coding": [{"system": systems.SERVICE_CODE, "code": "23.0075.1494"}],
            "text": "Glucose",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
        "referenceRange": [{"text": "3.9–6.4"}],
    }
    resource.update(overrides)
    return resource


def test_observation_on_an_order_and_on_an_encounter(fhir, db_session, lab_order):
    from his.models import ObservationResult

    pid, order = lab_order["patient"].id, lab_order["order"]
    on_order = observation(pid, basedOn=[{"reference": f"ServiceRequest/{order.id}"}])
    response = fhir("POST", "/fhir/Observation", on_order, token=lab_order["token"])
    assert response.status_code == 201, response.json
    result_id = int(response.headers["Location"].split("/Observation/r")[1].split("/")[0])
    result = db_session.get(ObservationResult, result_id)
    assert result.order_id == order.id and result.value == "5.4" and result.unit == "mmol/L"
    on_encounter = observation(
        pid,
        encounter={"reference": f"Encounter/e{lab_order['encounter'].id}"},
        valueQuantity={"value": 6.1, "unit": "mmol/L"},
    )
    response = fhir("POST", "/fhir/Observation", on_encounter, token=lab_order["token"])
    assert response.status_code == 201, response.json
    second = int(response.headers["Location"].split("/Observation/r")[1].split("/")[0])
    assert db_session.get(ObservationResult, second).supersedes_id == result_id
    on_visit = observation(
        pid,
        encounter={"reference": f"Encounter/v{lab_order['encounter'].visit_id}"},
        valueQuantity={"value": 6.3, "unit": "mmol/L"},
    )
    response = fhir("POST", "/fhir/Observation", on_visit, token=lab_order["token"])
    assert response.status_code == 201, response.json
    third = int(response.headers["Location"].split("/Observation/r")[1].split("/")[0])
    assert db_session.get(ObservationResult, third).order_id == order.id


def test_observation_for_another_patient_or_without_order_is_422(fhir, db_session, lab_order):
    other = PatientFactory()
    db_session.commit()
    order = lab_order["order"]
    wrong = observation(other.id, basedOn=[{"reference": f"ServiceRequest/{order.id}"}])
    response = fhir("POST", "/fhir/Observation", wrong, token=lab_order["token"])
    assert response.status_code == 422
    assert response.json["issue"][0]["expression"] == ["Observation.subject"]
    loose = observation(lab_order["patient"].id)
    assert fhir("POST", "/fhir/Observation", loose, token=lab_order["token"]).status_code == 422


def test_diagnostic_report_checks_its_results(fhir, db_session, lab_order):
    pid, order = lab_order["patient"].id, lab_order["order"]
    obs = fhir(
        "POST",
        "/fhir/Observation",
        observation(pid, basedOn=[{"reference": f"ServiceRequest/{order.id}"}]),
        token=lab_order["token"],
    )
    obs_ref = obs.headers["Location"].split("/fhir/")[1].rsplit("/_history", 1)[0]
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {
            "coding": [{"system": systems.SERVICE_CODE, "code": "23.0075.1494"}],
            "text": "Glucose",
        },
        "subject": {"reference": f"Patient/{pid}"},
        "basedOn": [{"reference": f"ServiceRequest/{order.id}"}],
        "result": [{"reference": obs_ref}],
        "conclusion": "Đường huyết bình thường",
    }
    response = fhir("POST", "/fhir/DiagnosticReport", report, token=lab_order["token"])
    assert response.status_code == 201, response.json
    assert response.json["resourceType"] == "DiagnosticReport"
    assert response.json["conclusion"] == "Đường huyết bình thường"
    assert response.json["result"] == [{"reference": obs_ref}] or any(
        r["reference"] == obs_ref for r in response.json["result"]
    )
    row = db_session.scalars(
        select(DiagnosticReport).where(DiagnosticReport.patient_id == pid)
    ).one()
    assert row.order_id == order.id and row.conclusion == "Đường huyết bình thường"
    assert row.result_ids == [int(obs_ref.split("/r")[1])]
    other = PatientFactory()
    db_session.commit()
    wrong = dict(report, subject={"reference": f"Patient/{other.id}"})
    response = fhir("POST", "/fhir/DiagnosticReport", wrong, token=lab_order["token"])
    assert response.status_code == 422
    expressions = {e for i in response.json["issue"] for e in i.get("expression", [])}
    assert "DiagnosticReport.result[0]" in expressions
    missing = dict(report, result=[{"reference": "Observation/r999999"}])
    assert (
        fhir("POST", "/fhir/DiagnosticReport", missing, token=lab_order["token"]).status_code == 422
    )


def test_allergy_intolerance_create(fhir, db_session):
    patient = PatientFactory()
    db_session.commit()
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": f"Patient/{patient.id}"},
        "code": {"text": "Penicillin"},
        "reaction": [{"manifestation": [{"text": "mề đay"}], "severity": "moderate"}],
    }
    response = fhir("POST", "/fhir/AllergyIntolerance", allergy)
    assert response.status_code == 201, response.json
    assert response.json["resourceType"] == "AllergyIntolerance"
    assert response.json["patient"]["reference"] == f"Patient/{patient.id}"
    row = db_session.scalars(
        select(PatientAllergy).where(PatientAllergy.patient_id == patient.id)
    ).one()
    assert (row.substance, row.reaction, row.severity.value) == ("Penicillin", "mề đay", "moderate")
    no_substance = dict(allergy, code={})
    response = fhir("POST", "/fhir/AllergyIntolerance", no_substance)
    assert response.status_code == 422
    assert response.json["issue"][0]["expression"] == ["AllergyIntolerance.code"]
    unknown = dict(allergy, patient={"reference": "Patient/99999999"})
    assert fhir("POST", "/fhir/AllergyIntolerance", unknown).status_code in (404, 422)


def test_the_stored_projection_matches_after_create(fhir, db_session):
    response = fhir("POST", "/fhir/Patient", patient_resource())
    row = db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == "Patient", FhirResource.resource_id == response.json["id"]
        )
    ).one()
    assert json.loads(row.content) == response.json


def _client_token(db_session, scopes: str, facility_id: int) -> str:
    """A backend client's access token as the SMART token endpoint stores it."""
    import datetime as dt
    import secrets

    from his.db import utcnow
    from his.fhirapi import smart
    from his.models import FhirAccessToken, FhirClient

    client = FhirClient(
        client_id=f"lab-{secrets.token_hex(4)}",
        scopes=scopes,
        facility_ids=[facility_id],
        active=True,
    )
    db_session.add(client)
    db_session.flush()
    raw = secrets.token_urlsafe(32)
    db_session.add(
        FhirAccessToken(
            token_hash=smart._digest(raw),
            client_pk=client.id,
            scopes=scopes,
            expires_at=utcnow() + dt.timedelta(minutes=5),
        )
    )
    db_session.commit()
    return raw


def test_a_backend_client_records_results_within_its_scopes(fhir, db_session, lab_order):
    from his.models import ObservationResult

    facility_id = lab_order["clinic"].facility.id
    writer = _client_token(db_session, "system/Observation.c system/*.r", facility_id)
    reader = _client_token(db_session, "system/*.rs", facility_id)
    resource = observation(
        lab_order["patient"].id,
        basedOn=[{"reference": f"ServiceRequest/{lab_order['order'].id}"}],
    )
    refused = fhir("POST", "/fhir/Observation", resource, token=reader)
    assert refused.status_code == 403
    response = fhir("POST", "/fhir/Observation", resource, token=writer)
    assert response.status_code == 201, response.json
    result_id = int(response.headers["Location"].split("/Observation/r")[1].split("/")[0])
    assert db_session.get(ObservationResult, result_id).resulted_by_id is None
    detail = db_session.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.entity_type == "Observation", AuditEvent.entity_id == f"r{result_id}"
        )
    ).all()
    assert any(d and d.startswith("fhir client lab-") for d in detail)


def test_fhir_writes_keep_the_rest_apis_field_rules(fhir, db_session):
    before = _count(db_session, Patient)
    long_given = "A" * 150
    too_long = fhir(
        "POST",
        "/fhir/Patient",
        patient_resource(
            name=[{"text": f"Nguyễn {long_given}", "family": "Nguyễn", "given": [long_given]}]
        ),
    )
    assert too_long.status_code == 422, too_long.json
    assert any(i.get("expression") == ["Patient.name[0].given"] for i in too_long.json["issue"]), (
        too_long.json
    )
    parts_disagree = fhir(
        "POST",
        "/fhir/Patient",
        patient_resource(
            name=[{"text": "NGUYỄN VĂN AN", "family": "Nguyễn", "given": ["Văn", "An", "Lan"]}]
        ),
    )
    assert parts_disagree.status_code == 422
    assert parts_disagree.json["issue"][0]["expression"] == ["Patient.name[0]"]
    assert _count(db_session, Patient) == before
