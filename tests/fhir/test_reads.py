"""read, vread, history and the projection written in the same transaction."""

from sqlalchemy import select

from his.models import FhirResource, FhirResourceVersion
from tests.factories import PatientFactory


def test_a_patient_is_projected_on_commit_and_read_with_its_etag(db_session, fhir_get):
    patient = PatientFactory(full_name="Nguyễn Thị Thuý")
    db_session.commit()
    row = db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == "Patient", FhirResource.resource_id == str(patient.id)
        )
    ).one()
    assert row.version_id == 1
    response = fhir_get(f"/fhir/Patient/{patient.id}")
    assert response.status_code == 200, response.json
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert response.headers["ETag"] == 'W/"1"'
    body = response.json
    assert body["resourceType"] == "Patient"
    assert body["name"][0]["text"] == "Nguyễn Thị Thuý"
    assert body["meta"]["versionId"] == "1"
    again = fhir_get(f"/fhir/Patient/{patient.id}", headers={"If-None-Match": 'W/"1"'})
    assert again.status_code == 304


def test_a_change_makes_a_new_version_and_an_unchanged_commit_does_not(db_session, fhir_get):
    patient = PatientFactory()
    db_session.commit()
    patient.phone = "0912000111"
    db_session.commit()
    patient.phone = "0912000111"
    db_session.commit()
    versions = db_session.scalars(
        select(FhirResourceVersion.version_id).where(
            FhirResourceVersion.resource_type == "Patient",
            FhirResourceVersion.resource_id == str(patient.id),
        )
    ).all()
    assert sorted(versions) == [1, 2]
    first = fhir_get(f"/fhir/Patient/{patient.id}/_history/1").json
    assert "telecom" not in first or first["telecom"][0]["value"] != "0912000111"
    history = fhir_get(f"/fhir/Patient/{patient.id}/_history").json
    assert history["type"] == "history"
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']


def test_errors_are_operation_outcomes(fhir_get, client):
    missing = fhir_get("/fhir/Patient/999999")
    assert missing.status_code == 404
    assert missing.json["resourceType"] == "OperationOutcome"
    assert missing.json["issue"][0]["code"] == "not-found"
    assert fhir_get("/fhir/Spaceship/1").status_code == 404
    no_token = client.get("/fhir/Patient/1")
    assert no_token.status_code == 401
    assert "WWW-Authenticate" in no_token.headers
    assert no_token.json["resourceType"] == "OperationOutcome"
    xml = fhir_get("/fhir/Patient/1?_format=xml")
    assert xml.status_code == 406


def test_granular_v2_scopes_grant_nothing_until_their_filter_is_enforced():
    from his.fhirapi import scopes

    granted = scopes.parse_all("system/Observation.rs?category=laboratory system/Patient.read")
    assert scopes.allows(granted, "Patient", "r")
    assert scopes.allows(granted, "Patient", "s")
    assert not scopes.allows(granted, "Patient", "c")
    assert not scopes.allows(granted, "Observation", "r")
    assert scopes.allows(scopes.parse_all("system/*.cruds"), "Encounter", "d")


def test_an_unexpected_failure_is_a_500_operation_outcome(app, fhir_get, monkeypatch):
    from his.fhirapi import reads

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(reads, "require_current", broken)
    response = fhir_get("/fhir/Patient/1")
    assert response.status_code == 500
    body = response.json
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "fatal"
    assert "boom" not in response.get_data(as_text=True)


def test_digits_that_are_not_ascii_or_too_long_never_crash(db_session, fhir_get):
    patient = PatientFactory()
    db_session.commit()
    huge = "9" * 23
    answers = {
        "/fhir/Patient?_id=%C2%B2": 200,  # "²" is a digit to str.isdigit, not to int()
        f"/fhir/Patient?_id={huge}": 200,
        f"/fhir/Encounter?patient={huge}": 200,
        f"/fhir/Coverage?beneficiary=Patient/{huge}": 200,
        f"/fhir/Patient/{patient.id}/_history/%C2%B2": 404,
        f"/fhir/Patient/{patient.id}/_history/{huge}": 404,
        f"/fhir/Patient/{patient.id}/_history?_count=%C2%B2": 400,
        "/fhir/Patient?_count=%C2%B2": 400,
        f"/fhir/Patient/{patient.id}/$everything?_count=%C2%B2": 400,
    }
    for path, status in answers.items():
        response = fhir_get(path)
        assert response.status_code == status, (path, response.json)
        assert response.json["resourceType"] in ("Bundle", "OperationOutcome"), path


def test_no_route_under_fhir_still_answers_an_operation_outcome(fhir_get):
    for path in ("/fhir/Patient/1/$foo", "/fhir/Patient/1/foo/bar", "/fhir/bulk/x/file/a/b"):
        response = fhir_get(path)
        assert response.status_code == 404, path
        assert response.json["resourceType"] == "OperationOutcome", path


def test_audit_events_are_not_offered_as_includes(fhir_get):
    refused = fhir_get("/fhir/Patient?_revinclude=AuditEvent:patient")
    assert refused.status_code == 400
    metadata = fhir_get("/fhir/metadata").json
    for resource in metadata["rest"][0]["resource"]:
        assert not any(i.startswith("AuditEvent:") for i in resource.get("searchRevInclude", [])), (
            resource["type"]
        )
        if resource["type"] == "AuditEvent":
            assert "searchInclude" not in resource


def test_a_refused_fhir_request_is_in_the_audit_trail(db_session, fhir_get):
    from his.models import AuditAction, AuditEvent

    refused = fhir_get("/fhir/AuditEvent")  # a doctor is not an auditor
    assert refused.status_code == 403
    row = db_session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == AuditAction.ACCESS_DENIED)
        .order_by(AuditEvent.id.desc())
    ).first()
    assert row is not None
    assert row.detail.endswith("GET /fhir/AuditEvent")
    assert row.user_id is not None
