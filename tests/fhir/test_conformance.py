"""The artefacts of fhir/ (our extensions and Vietnamese code sets) and their routes."""

import csv
import datetime as dt
import json
from importlib import resources

import pytest

from his.fhirapi import systems
from his.fhirapi.conformance import FHIR_DIR, artefacts
from his.fhirapi.validation import validate_output
from his.localtime import local_today
from his.models import CareLevel, Icd10Code, Icd10Version

FHIR_JSON = "application/fhir+json"


def _ours(kind):
    """Every URL of systems.py under our canonical naming a StructureDefinition/CodeSystem."""
    return {
        value
        for name, value in vars(systems).items()
        if name.isupper() and isinstance(value, str) and value.startswith(f"{systems.OURS}/{kind}/")
    }


def _by_url():
    return {r["url"]: r for r in artefacts().values()}


# --- the files ----------------------------------------------------------------------------------


def test_every_file_is_valid_r4_and_named_for_its_id():
    files = sorted(FHIR_DIR.glob("*.json"))
    assert len(files) == len(artefacts()) >= 20
    for path in files:
        resource = json.loads(path.read_text(encoding="utf-8"))
        assert validate_output(resource) == [], path.name
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"


def test_every_extension_of_ours_is_published():
    published = _by_url()
    missing = sorted(_ours("StructureDefinition") - published.keys())
    assert missing == []
    for url in _ours("StructureDefinition"):
        definition = published[url]
        assert definition["type"] == "Extension" and definition["fhirVersion"] == "4.0.1"
        assert definition["context"], url
        fixed = [e for e in definition["differential"]["element"] if e["id"] == "Extension.url"]
        assert fixed[0]["fixedUri"] == url


def test_every_code_system_of_ours_is_published():
    """A receiving system can resolve every system URI we send under our canonical."""
    assert sorted(_ours("CodeSystem") - _by_url().keys()) == []


def test_the_vietnamese_code_sets_are_published():
    published = _by_url()
    for url in (
        systems.ETHNICITY_CS,
        systems.CARE_LEVEL_CS,
        systems.BHYT_GROUP_CS,
        systems.BENEFIT_LEVEL_CS,
        systems.ICD10_VN,
    ):
        assert published[url]["resourceType"] == "CodeSystem"
        assert published[url.replace("/CodeSystem/", "/ValueSet/")]["resourceType"] == "ValueSet"
    ethnicity = published[systems.ETHNICITY_CS]["concept"]
    assert [c["code"] for c in ethnicity] == [f"{i:02d}" for i in range(1, 55)]
    assert ethnicity[0]["display"] == "Kinh"
    care = published[systems.CARE_LEVEL_CS]["concept"]
    assert [c["code"] for c in care] == [level.value for level in CareLevel]
    benefit = published[systems.BENEFIT_LEVEL_CS]["concept"]
    assert [c["code"] for c in benefit] == ["1", "2", "3", "4", "5"]
    with resources.files("his.data").joinpath("bhyt_groups.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    groups = {c["code"]: c for c in published[systems.BHYT_GROUP_CS]["concept"]}
    assert groups.keys() == {r["code"] for r in rows}
    for row in rows:
        props = {p["code"]: list(p.values())[1] for p in groups[row["code"]]["property"]}
        assert props["benefit-level"] == row["benefit_level"]
        assert props["valid-from"] == row["valid_from"]
    assert published[systems.ICD10_VN]["content"] == "not-present"


def test_every_binding_names_a_published_value_set():
    published = _by_url()
    for resource in artefacts().values():
        for element in resource.get("differential", {}).get("element", []):
            binding = element.get("binding")
            if binding:
                assert binding["valueSet"] in published, (resource["id"], binding)


# --- the routes ---------------------------------------------------------------------------------


def test_read_each_artefact(fhir_get):
    for (resource_type, resource_id), resource in artefacts().items():
        if resource.get("url") == systems.ICD10_VN:
            continue
        response = fhir_get(f"/fhir/{resource_type}/{resource_id}")
        assert response.status_code == 200, (resource_type, resource_id)
        assert response.mimetype == FHIR_JSON
        body = response.get_json()
        assert body["url"] == resource["url"] and body["meta"]["versionId"] == "1"
        assert validate_output(body) == []
        assert response.headers["ETag"] == 'W/"1"'


def test_vread_history_and_304(fhir_get):
    path = "/fhir/StructureDefinition/care-level"
    assert fhir_get(f"{path}/_history/1").status_code == 200
    assert fhir_get(f"{path}/_history/2").status_code == 404
    history = fhir_get(f"{path}/_history").get_json()
    assert history["type"] == "history" and len(history["entry"]) == 1
    assert validate_output(history) == []
    assert fhir_get(path, headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_unknown_id_is_a_404_outcome(fhir_get):
    response = fhir_get("/fhir/CodeSystem/no-such-thing")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_a_token_is_required(client):
    response = client.get("/fhir/CodeSystem/care-level", headers={"Accept": FHIR_JSON})
    assert response.status_code == 401
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        (f"StructureDefinition?url={systems.CARE_LEVEL_EXT}", ["care-level"]),
        (f"CodeSystem?url={systems.CARE_LEVEL_CS}|0.1.0", ["care-level"]),
        (f"CodeSystem?url={systems.CARE_LEVEL_CS}|9.9", []),
        ("ValueSet?url=http://example.org/none", []),
        ("CodeSystem?name=bhyt", ["bhyt-benefit-level", "bhyt-group"]),
        ("CodeSystem?name:exact=BhytGroup", ["bhyt-group"]),
        ("CodeSystem?title:contains=dan toc", ["vn-ethnicity"]),
        ("StructureDefinition?_id=care-level,legacy-tier", ["care-level", "legacy-tier"]),
        ("ValueSet?status=active&name=care", ["care-level"]),
    ],
)
def test_search(fhir_get, query, ids):
    response = fhir_get(f"/fhir/{query}")
    assert response.status_code == 200, response.get_json()
    bundle = response.get_json()
    assert bundle["type"] == "searchset" and bundle["total"] == len(ids)
    assert sorted(e["resource"]["id"] for e in bundle.get("entry", [])) == ids
    assert all(e["search"]["mode"] == "match" for e in bundle.get("entry", []))
    assert validate_output(bundle) == []


def test_search_post_and_unknown_parameters(fhir_get, client, staff_token):
    response = client.post(
        "/fhir/CodeSystem/_search",
        data={"name": "care"},
        headers={"Authorization": f"Bearer {staff_token}", "Accept": FHIR_JSON},
    )
    assert [e["resource"]["id"] for e in response.get_json()["entry"]] == ["care-level"]
    strict = fhir_get("/fhir/CodeSystem?colour=red")
    assert strict.status_code == 400
    assert strict.get_json()["issue"][0]["expression"] == ["colour"]
    lenient = fhir_get(
        "/fhir/CodeSystem?colour=red&name=care", headers={"Prefer": "handling=lenient"}
    )
    assert lenient.get_json()["total"] == 1
    assert fhir_get("/fhir/CodeSystem?name=").status_code == 400


def test_icd10_vn_serves_the_list_in_force(fhir_get, db_session):
    """The newest list whose validity covers today; an expired list is not served."""
    today = local_today()
    old = Icd10Version(
        name="QĐ 4469/2020",
        source="test",
        valid_from=dt.date(2020, 1, 1),
        valid_to=today - dt.timedelta(days=1),
    )
    current = Icd10Version(name="TT 06/2026", source="test", valid_from=today)
    future = Icd10Version(name="ICD-10 2030", source="test", valid_from=today + dt.timedelta(1))
    db_session.add_all([old, current, future])
    db_session.flush()
    for version, code, title in [
        (old, "A00", "Bệnh tả (cũ)"),
        (current, "J18.9", "Viêm phổi, không đặc hiệu"),
        (current, "A00", "Bệnh tả"),
        (future, "U99", "Tương lai"),
    ]:
        db_session.add(
            Icd10Code(
                version_id=version.id,
                code=code,
                title_en=f"{code} en",
                title_vi=title,
                search_key=code.lower(),
            )
        )
    db_session.commit()
    response = fhir_get("/fhir/CodeSystem/icd-10-vn")
    body = response.get_json()
    assert body["url"] == systems.ICD10_VN and body["content"] == "fragment"
    assert body["version"] == "TT 06/2026" and body["count"] == 2
    assert [(c["code"], c["display"]) for c in body["concept"]] == [
        ("A00", "Bệnh tả"),
        ("J18.9", "Viêm phổi, không đặc hiệu"),
    ]
    assert body["concept"][0]["designation"] == [{"language": "en", "value": "A00 en"}]
    assert validate_output(body) == []
    found = fhir_get(f"/fhir/CodeSystem?url={systems.ICD10_VN}").get_json()
    assert found["entry"][0]["resource"]["count"] == 2


def test_common_and_result_parameters(fhir_get):
    def ids(query, **kwargs):
        response = fhir_get(f"/fhir/{query}", **kwargs)
        assert response.status_code == 200, response.get_json()
        return [e["resource"]["id"] for e in response.get_json().get("entry", [])]

    assert ids("CodeSystem?_sort=-name&name=bhyt") == ["bhyt-group", "bhyt-benefit-level"]
    assert ids("CodeSystem?_sort=name&name=bhyt") == ["bhyt-benefit-level", "bhyt-group"]
    assert ids("StructureDefinition?title:missing=true") == []
    assert "care-level" in ids("StructureDefinition?_lastUpdated=ge2026-01-01")
    assert ids("StructureDefinition?_lastUpdated=lt2000") == []
    counted = fhir_get("/fhir/ValueSet?_summary=count").get_json()
    assert counted["total"] >= 5 and "entry" not in counted
    subset = fhir_get("/fhir/CodeSystem?_id=care-level&_elements=url").get_json()
    resource = subset["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "url"}
    assert fhir_get("/fhir/CodeSystem?_lastUpdated=yesterday").status_code == 400
    assert fhir_get("/fhir/CodeSystem?_sort=colour").status_code == 400


def test_the_image_ships_the_folder():
    """fhir/ is data beside the package, not in it: the Dockerfile must copy it."""
    dockerfile = (FHIR_DIR.parent / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY fhir ./fhir" in dockerfile
    assert ".cache" in (FHIR_DIR.parent / ".dockerignore").read_text(encoding="utf-8")
