"""GET /fhir/metadata: a valid CapabilityStatement that declares exactly what works."""

from __future__ import annotations

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from his.fhirapi import searchparams
from his.fhirapi.resource_types import CREATABLE, SERVED
from his.fhirapi.search import COMMON
from his.models import Role
from tests.factories import UserFactory

RESULT_PARAMS = {"_count", "_sort", "_include", "_revinclude", "_total", "_summary", "_elements"}


def test_metadata_is_a_valid_capability_statement_without_a_token(client):
    response = client.get("/fhir/metadata", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json
    CapabilityStatement.model_validate(body)  # R4B: the same shape as R4 here
    assert body["status"] == "active" and body["kind"] == "instance"
    assert body["fhirVersion"] == "4.0.1" and body["format"] == ["json"]
    rest = body["rest"][0]
    assert rest["mode"] == "server"
    oauth = rest["security"]["extension"][0]
    assert oauth["url"].endswith("/oauth-uris")
    assert oauth["extension"][0] == {
        "url": "token",
        "valueUri": "http://localhost/fhir/auth/token",
    }
    assert {i["code"] for i in rest["interaction"]} == {"batch", "transaction"}
    assert any(op["name"] == "export" for op in rest["operation"])


def test_every_served_type_lists_its_interactions_and_exactly_its_parameters(client):
    import his.fhirapi.mappers  # noqa: F401

    body = client.get("/fhir/metadata").json
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(resources) == set(SERVED)
    for resource_type, resource in resources.items():
        codes = {i["code"] for i in resource["interaction"]}
        assert {"read", "vread", "history-instance", "history-type", "search-type"} <= codes
        assert ("create" in codes) == (resource_type in CREATABLE)
        declared = {p["name"] for p in resource["searchParam"]}
        results = {"_count", "_sort"} if resource_type == "AuditEvent" else RESULT_PARAMS
        expected = set(searchparams.params_of(resource_type)) | set(COMMON) | results
        assert declared == expected, resource_type
        for p in resource["searchParam"]:
            if p["name"] in searchparams.params_of(resource_type):
                assert p["type"] == searchparams.params_of(resource_type)[p["name"]].type
    patient = resources["Patient"]
    assert {"update", "patch"} <= {i["code"] for i in patient["interaction"]}
    assert patient["conditionalCreate"] is True
    assert {op["name"] for op in patient["operation"]} == {"everything", "export"}
    assert {op["name"] for op in resources["Group"]["operation"]} == {"export"}
    assert "Patient:link" in patient["searchInclude"]
    assert "Patient:link" in patient["searchRevInclude"]


def test_every_declared_search_parameter_is_accepted_and_others_refused(fhir_get, login_token):
    # The audit trail is searched by auditors only.
    auditor = UserFactory(roles=(Role.AUDITOR,))
    auditor_token = login_token(auditor.username)["Authorization"].removeprefix("Bearer ")
    body = fhir_get("/fhir/metadata").json
    for resource in body["rest"][0]["resource"]:
        resource_type = resource["type"]
        if resource_type not in searchparams.PARAMS and resource_type != "Patient":
            continue
        for p in resource["searchParam"]:
            if p["name"] in RESULT_PARAMS:
                continue
            value = {
                "token": "x",
                "string": "x",
                "date": "2020",
                "reference": "Patient/1",
                "number": "1",
                "quantity": "1",
                "uri": "urn:x",
            }[p["type"]]
            token = auditor_token if resource_type == "AuditEvent" else None
            response = fhir_get(
                f"/fhir/{resource_type}", token=token, query_string={p["name"]: value}
            )
            assert response.status_code == 200, (resource_type, p["name"], response.json)
            if resource_type != "AuditEvent":  # :missing is the projection engine's
                missing = fhir_get(
                    f"/fhir/{resource_type}", query_string={f"{p['name']}:missing": "true"}
                )
                assert missing.status_code == 200, (resource_type, p["name"])
        undeclared = fhir_get(
            f"/fhir/{resource_type}",
            token=auditor_token if resource_type == "AuditEvent" else None,
            query_string={"undeclared-param": "1"},
        )
        assert undeclared.status_code == 400
