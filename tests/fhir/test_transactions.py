"""batch and transaction Bundles: atomic transactions, urn:uuid references, processing
order, independent batch entries, and a transaction of 1,000 entries."""

import base64
import itertools
import json
import time
import uuid

import pytest
from sqlalchemy import func, select

from his.fhirapi import systems
from his.models import FhirResource, Patient, PatientAllergy

FHIR_JSON = "application/fhir+json"
FAMILIES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng"]
MIDDLES = ["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Đức", "Quốc", "Bảo", "Gia"]
N = 1000  # entries of the big transaction
GIVENS = ["An", "Bình", "Cường", "Dũng", "Hà", "Lan", "Mai", "Nam", "Phúc", "Tâm"]


@pytest.fixture
def post_bundle(client, staff_token):
    def post(bundle, **headers):
        all_headers = {"Authorization": f"Bearer {staff_token}", "Accept": FHIR_JSON}
        all_headers.update(headers)
        return client.post(
            "/fhir", data=json.dumps(bundle), content_type=FHIR_JSON, headers=all_headers
        )

    return post


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def patient(name: str, birth: str = "1970-01-01", **extra):
    return {
        "resourceType": "Patient",
        "name": [{"text": name}],
        "gender": "female",
        "birthDate": birth,
        **extra,
    }


def post_entry(resource, full_url=None, **request):
    return {
        "fullUrl": full_url or urn(),
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }


def _patients(db_session):
    return db_session.scalar(select(func.count()).select_from(Patient))


def test_transaction_resolves_urn_references_and_answers_in_order(post_bundle, db_session):
    patient_url = urn()
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": patient_url},
        "code": {"text": "Aspirin"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            # The allergy comes first in the Bundle but needs the patient created first.
            post_entry(allergy),
            post_entry(patient("Trần Thị Hoa"), patient_url),
            {"request": {"method": "GET", "url": f"Patient?identifier={systems.MRN}|nothing"}},
        ],
    }
    response = post_bundle(bundle)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["type"] == "transaction-response"
    first, second, third = body["entry"]
    assert first["response"]["status"].startswith("201")
    assert second["response"]["status"].startswith("201")
    assert second["response"]["etag"] == 'W/"1"'
    assert third["response"]["status"].startswith("200")
    assert third["resource"]["resourceType"] == "Bundle"
    pid = second["resource"]["id"]
    assert "/fhir/Patient/" + pid + "/_history/1" in second["response"]["location"]
    assert first["resource"]["patient"]["reference"] == f"Patient/{pid}"
    row = db_session.scalars(
        select(PatientAllergy).where(PatientAllergy.patient_id == int(pid))
    ).one()
    assert row.substance == "Aspirin"


def test_one_bad_entry_rolls_back_the_whole_transaction(post_bundle, db_session):
    before = _patients(db_session)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post_entry(patient("Lê Văn Một")),
            post_entry(patient("Lê Văn Hai", birth="2099-01-01")),  # in the future
        ],
    }
    response = post_bundle(bundle)
    assert response.status_code == 422, response.json
    assert response.json["resourceType"] == "OperationOutcome"
    assert any("Bundle.entry[1]" in i.get("expression", []) for i in response.json["issue"])
    assert _patients(db_session) == before
    read = post_bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "GET", "url": "Patient/99999999"}}],
        }
    )
    assert read.status_code == 404
    deleting = post_bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                post_entry(patient("Lê Văn Ba")),
                {"request": {"method": "DELETE", "url": "Patient/1"}},
            ],
        }
    )
    assert deleting.status_code == 405
    assert _patients(db_session) == before


def test_batch_entries_are_independent(post_bundle, db_session):
    before = _patients(db_session)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            post_entry(patient("Phạm Văn Một")),
            post_entry(patient("Phạm Văn Hai", birth="2099-01-01")),
            {"request": {"method": "DELETE", "url": "Patient/1"}},
            {"request": {"method": "GET", "url": "Patient/99999999"}},
            {"request": {"method": "POST"}},
            post_entry(patient("Phạm Văn Ba")),
        ],
    }
    response = post_bundle(bundle)
    assert response.status_code == 200, response.json
    statuses = [e["response"]["status"][:3] for e in response.json["entry"]]
    assert statuses == ["201", "422", "405", "404", "400", "201"]
    assert response.json["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert response.json["type"] == "batch-response"
    assert _patients(db_session) == before + 2


def test_if_none_exist_put_and_patch_inside_a_transaction(
    post_bundle, db_session, client, staff_token
):
    mrn_free = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post_entry(patient("Võ Thị Tư", telecom=[{"system": "phone", "value": "0912000999"}]))
        ],
    }
    created = post_bundle(mrn_free).json["entry"][0]["resource"]
    pid = created["id"]
    again = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post_entry(
                patient("Võ Thị Tư", telecom=[{"system": "phone", "value": "0912000999"}]),
                ifNoneExist="phone=0912000999",
            ),
            {
                "resource": dict(created, gender="female", birthDate="1970-01-02"),
                "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"1"'},
            },
        ],
    }
    response = post_bundle(again)
    assert response.status_code == 200, response.json
    found, updated = response.json["entry"]
    assert found["response"]["status"].startswith("200")
    assert found["resource"]["id"] == pid
    assert updated["response"]["etag"] == 'W/"2"'
    patch = [{"op": "replace", "path": "/birthDate", "value": "1970-01-03"}]
    patching = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": base64.b64encode(json.dumps(patch).encode()).decode(),
                },
                "request": {"method": "PATCH", "url": f"Patient/{pid}", "ifMatch": 'W/"2"'},
            },
            {
                "resource": dict(created, birthDate="1970-01-04"),
                "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"1"'},
            },
        ],
    }
    response = post_bundle(patching)
    assert [e["response"]["status"][:3] for e in response.json["entry"]] == ["200", "412"]
    assert response.json["entry"][0]["resource"]["birthDate"] == "1970-01-03"


def test_not_a_bundle_is_400(post_bundle):
    assert post_bundle({"resourceType": "Patient"}).status_code == 400
    assert post_bundle({"resourceType": "Bundle", "type": "collection"}).status_code == 400


def test_a_transaction_of_1000_patient_creates(post_bundle, db_session, capsys):
    names = itertools.islice(itertools.product(FAMILIES, MIDDLES, GIVENS), N)
    entries = [post_entry(patient(" ".join(n))) for n in names]
    before = _patients(db_session)
    started = time.perf_counter()
    response = post_bundle(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries},
        Prefer="return=minimal",
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.json
    assert len(response.json["entry"]) == N
    assert all(e["response"]["status"].startswith("201") for e in response.json["entry"])
    assert _patients(db_session) == before + N
    ids = {
        e["response"]["location"].split("/Patient/")[1].split("/")[0]
        for e in response.json["entry"]
    }
    assert len(ids) == N
    assert (
        db_session.scalar(
            select(func.count())
            .select_from(FhirResource)
            .where(FhirResource.resource_type == "Patient", FhirResource.resource_id.in_(ids))
        )
        == N
    )
    with capsys.disabled():
        print(f"\n1,000-entry transaction: {elapsed:.1f} s")


def test_if_none_exist_sees_an_earlier_entry_of_the_same_transaction(post_bundle, db_session):
    phone = [{"system": "phone", "value": "0912000777"}]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post_entry(patient("Đặng Văn Năm", telecom=phone), ifNoneExist="phone=0912000777"),
            post_entry(patient("Đặng Văn Năm", telecom=phone), ifNoneExist="phone=0912000777"),
        ],
    }
    response = post_bundle(bundle)
    assert response.status_code == 200, response.json
    first, second = response.json["entry"]
    assert first["response"]["status"].startswith("201")
    assert second["response"]["status"].startswith("200")
    assert first["resource"]["id"] == second["resource"]["id"]
    assert (
        db_session.scalar(
            select(func.count()).select_from(Patient).where(Patient.phone == "0912000777")
        )
        == 1
    )


def test_two_entries_with_one_full_url_are_refused(post_bundle, db_session):
    before = _patients(db_session)
    same = urn()
    response = post_bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                post_entry(patient("Lê Văn Một"), same),
                post_entry(patient("Lê Văn Hai"), same),
            ],
        }
    )
    assert response.status_code == 400
    assert response.json["issue"][0]["expression"] == ["Bundle.entry[1].fullUrl"]
    assert _patients(db_session) == before
