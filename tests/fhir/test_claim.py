"""FHIR Claim: one per BHYT visit, read from its latest signed claim file, so it says what
the file sent to the gateway says."""

from __future__ import annotations

from billing.claim_files import make_claim_file
from his.fhirapi import systems
from his.fhirapi.validation import validate_output
from his.services.access import Principal
from tests.billing_data import claim_hospital, finished_visit


def test_a_claim_file_is_served_as_a_fhir_claim(db_session, fhir_get, login_token, tmp_path):
    place = claim_hospital(db_session, tmp_path)
    visit = finished_visit(db_session, place)
    cashier = Principal.for_user(place.cashier)
    make_claim_file(db_session, cashier, visit.id, tmp_path)
    db_session.commit()  # the projection is written here
    token = login_token(place.cashier.username)["Authorization"].removeprefix("Bearer ")

    response = fhir_get(f"/fhir/Claim/{visit.id}", token)

    assert response.status_code == 200, response.get_json()
    claim = response.get_json()
    assert validate_output(claim) == []
    assert claim["identifier"][0] == {"system": systems.MA_LK, "value": visit.visit_code}
    assert claim["identifier"][1]["value"] == f"{visit.visit_code}/v1"
    assert claim["patient"]["reference"] == f"Patient/{visit.patient_id}"
    assert claim["use"] == "claim" and claim["status"] == "active"
    assert claim["insurance"][0]["identifier"]["value"] == "DN4911234567890"
    # 42,100 + 21,500 + 65,400 + 10 x 1,500, as in the claim file.
    assert claim["total"] == {"value": 144000, "currency": "VND"}
    assert [
        (i["productOrService"]["coding"][0]["code"], i["net"]["value"]) for i in claim["item"]
    ] == [
        ("AMO500", 15000),
        ("02.1896", 42100),
        ("23.0075.1494", 21500),
        ("18.0071.0028", 65400),
    ]
    assert claim["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "J18.9"

    found = fhir_get(f"/fhir/Claim?patient=Patient/{visit.patient_id}", token).get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(visit.id)]
    by_code = fhir_get(
        f"/fhir/Claim?identifier={systems.MA_LK}|{visit.visit_code}", token
    ).get_json()
    assert [e["resource"]["id"] for e in by_code["entry"]] == [str(visit.id)]

    # A corrected claim is a new version of the same Claim.
    make_claim_file(db_session, cashier, visit.id, tmp_path)
    db_session.commit()
    again = fhir_get(f"/fhir/Claim/{visit.id}", token).get_json()
    assert again["meta"]["versionId"] == "2"
    assert again["identifier"][1]["value"] == f"{visit.visit_code}/v2"
