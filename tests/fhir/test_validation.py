"""The validation layer: R4B models plus the shim for the R4 differences."""

import copy

import pytest

from his.fhirapi.outcome import FhirError
from his.fhirapi.validation import issues, validate, validate_output

PATIENT = {
    "resourceType": "Patient",
    "id": "1",
    "name": [{"family": "Nguyễn", "given": ["Văn", "An"], "text": "Nguyễn Văn An"}],
    "gender": "male",
    "birthDate": "1990-05-01",
}


def patient(**changes):
    found = copy.deepcopy(PATIENT)
    found.update(changes)
    return found


def only(found):
    assert len(found) == 1, found
    return found[0]


def test_a_valid_patient_passes():
    assert issues(PATIENT, "Patient") == []
    validate(PATIENT, "Patient")


@pytest.mark.parametrize("body", [None, [], "Patient", {"id": "1"}, {"resourceType": 3}])
def test_not_a_resource(body):
    problem = only(issues(body))
    assert problem["code"] == "structure"


def test_wrong_type():
    with pytest.raises(FhirError) as caught:
        validate(PATIENT, "Observation")
    assert caught.value.status == 400
    assert "not a Observation" in caught.value.diagnostics


def test_unknown_element_names_its_path():
    problem = only(issues(patient(nickname="An")))
    assert problem["code"] == "structure"
    assert problem["expression"] == ["Patient.nickname"]


def test_missing_required_element():
    observation = {"resourceType": "Observation", "code": {"text": "Mạch"}}
    problem = only(issues(observation))
    assert (problem["code"], problem["expression"]) == ("required", ["Observation.status"])


def test_bad_value_and_nested_paths():
    found = issues(patient(birthDate="1990-13-01", name=[{"given": ["An", 7]}]))
    by_path = {p["expression"][0]: p for p in found}
    assert by_path["Patient.birthDate"]["code"] == "value"
    assert by_path["Patient.name[0].given[1]"]["code"] == "structure"
    assert "Patient.birthDate" in by_path["Patient.birthDate"]["diagnostics"]


def test_choice_type_given_twice():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueString": "a",
        "valueBoolean": True,
    }
    problem = only(issues(observation))
    assert problem["expression"] == ["Observation"]


def test_required_binding_is_enforced():
    problem = only(issues(patient(gender="nam")))
    assert (problem["code"], problem["expression"]) == ("code-invalid", ["Patient.gender"])


def test_validate_raises_one_outcome_with_every_issue():
    with pytest.raises(FhirError) as caught:
        validate(patient(birthDate="01/05/1990", nickname="An"), "Patient")
    outcome = caught.value.outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert {i["expression"][0] for i in outcome["issue"]} == {
        "Patient.birthDate",
        "Patient.nickname",
    }
    assert issues(outcome) == []  # the error itself is valid R4


# --- R4 differences from the R4B models ------------------------------------------------

TRANSLATED = {
    "url": "http://example.org/ext",
    "valueString": "Dân tộc Kinh",
    "_valueString": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/translation",
                "extension": [
                    {"url": "lang", "valueCode": "en"},
                    {"url": "content", "valueString": "Kinh ethnicity"},
                ],
            }
        ]
    },
}


def test_primitive_extension_on_extension_value_is_accepted():
    """Upstream fhir.resources #204: the R4B model refuses it; R4 allows it."""
    assert validate_output(patient(extension=[TRANSLATED])) == []
    nested = patient(_birthDate={"extension": [dict(TRANSLATED)]})
    assert validate_output(nested) == []


def test_primitive_extension_on_extension_value_is_still_checked():
    bad = copy.deepcopy(TRANSLATED)
    bad["_valueString"]["extension"][0]["extension"][1]["valueString"] = 5
    bad["_valueString"]["colour"] = "red"
    found = issues(patient(extension=[bad]))
    assert {p["expression"][0] for p in found} == {
        "Patient.extension[0].valueString.colour",
        "Patient.extension[0].valueString.extension[0].extension[1].valueString",
    }


def test_meta_as_extension_value_is_r4():
    meta = {"url": "http://example.org/m", "valueMeta": {"versionId": "2"}}
    assert validate_output(patient(extension=[meta])) == []
    meta["valueMeta"] = {"versionId": "2", "lastUpdated": "yesterday"}
    problem = only(issues(patient(extension=[meta])))
    assert problem["expression"] == ["Patient.extension[0].valueMeta.lastUpdated"]


@pytest.mark.parametrize("resource_type", ["MedicinalProduct", "SubstanceSpecification"])
def test_r4_only_types_are_not_supported_cleanly(resource_type):
    problem = only(issues({"resourceType": resource_type, "id": "x"}))
    assert problem["code"] == "not-supported"
    contained = patient(contained=[{"resourceType": resource_type, "id": "x"}])
    problem = only(issues(contained))
    assert problem["expression"] == ["Patient.contained[0]"]


def test_r4b_only_types_are_refused():
    problem = only(issues({"resourceType": "Citation", "status": "draft"}))
    assert problem["code"] == "structure"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": PATIENT}, {"resource": {"resourceType": "Ingredient"}}],
    }
    problem = only(issues(bundle))
    assert problem["expression"] == ["Bundle.entry[1].resource"]
    problem = only(issues({"resourceType": "NoSuchThing"}))
    assert problem["code"] == "structure"


def test_r4b_only_elements_are_refused():
    extension = {"url": "http://example.org/e", "valueCodeableReference": {"concept": {}}}
    problem = only(issues(patient(extension=[extension])))
    assert problem["expression"] == ["Patient.extension[0].valueCodeableReference"]
    plan = {"resourceType": "PlanDefinition", "status": "draft", "subjectCanonical": "http://x"}
    problem = only(issues(plan))
    assert problem["expression"] == ["PlanDefinition.subjectCanonical"]


def test_bad_input_is_left_unchanged():
    body = patient(extension=[copy.deepcopy(TRANSLATED)], nickname="x")
    before = copy.deepcopy(body)
    issues(body)
    assert body == before


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"contained": [{"resourceType": 5}]}, "Patient.contained[0]"),
        ({"contained": [{"id": "a"}]}, "Patient.contained[0]"),
        ({"name": None}, "Patient.name"),
        ({"name": [None]}, "Patient.name"),
        ({"_gender": 5}, "Patient.gender"),
        ({"contained": [{"resourceType": "Extension", "url": "http://x"}]}, "Patient.contained[0]"),
        ({"contained": [{"resourceType": "DomainResource"}]}, "Patient.contained[0]"),
    ],
)
def test_malformed_input_is_an_issue_never_a_crash(body, expression):
    found = issues(patient(**body))
    assert found and found[0]["expression"] == [expression], found


def test_null_pads_a_primitive_array_beside_its_extensions():
    padded = patient(name=[{"given": ["An", None], "_given": [None, {"extension": [TRANSLATED]}]}])
    padded["name"][0]["given"][1] = "Bình"
    assert issues(padded) == []
    padded["name"][0]["given"] = ["An", None]
    assert issues(padded) == []  # the value may be absent where an extension stands in


def test_a_create_with_invalid_json_is_a_400_outcome_naming_the_element(client, staff_token):
    """The layer as a client meets it: POST /fhir/Patient; nothing is stored."""
    from sqlalchemy import func, select

    from his.context import db_session
    from his.models import Patient

    headers = {
        "Authorization": f"Bearer {staff_token}",
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
    }
    with client.application.app_context():
        before = db_session().scalar(select(func.count()).select_from(Patient))
    body = patient(birthDate="1990-13-01", _birthDate={"extension": [{"valueCode": "x"}]})
    response = client.post("/fhir/Patient", json=body, headers=headers)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = {e for i in outcome["issue"] for e in i["expression"]}
    assert {"Patient.birthDate", "Patient.birthDate.extension[0].url"} <= expressions
    assert {i["code"] for i in outcome["issue"]} == {"value", "required"}
    with client.application.app_context():
        assert db_session().scalar(select(func.count()).select_from(Patient)) == before
    medicinal = client.post(
        "/fhir/Patient", json={"resourceType": "MedicinalProduct"}, headers=headers
    )
    assert medicinal.status_code == 400
