"""Hostile input at the REST and FHIR doors: SQL injection, oversized bodies, deeply nested
JSON, invalid UTF-8, mixed Unicode normalisation forms, huge page sizes and path traversal.

Each answer must be a clear client error (problem+json for REST, OperationOutcome for FHIR) or
a normal answer, never a 500, and the data must be as it was: injected text is only ever
data, stored literally where it is a valid value and never run.
"""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from his.config import Settings
from his.fhirapi import search
from his.models import Patient, Role
from his.services import fhir_export
from tests.factories import PASSWORD, PatientFactory, UserFactory

PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"

INJECTIONS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE patient; --",
    "1; DELETE FROM patient",
    "%' UNION SELECT password_hash, 1 FROM app_user --",
    "\\'; SELECT pg_sleep(5); --",
    '" OR ""="',
    "1' AND (SELECT COUNT(*) FROM patient) > 0 --",
    "%",
    "_",
    "\\",
]


def problem(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.get_data())
    assert response.mimetype == PROBLEM, response.mimetype
    body = response.get_json()
    assert body["status"] == response.status_code and body["title"]
    return body


def outcome(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.get_data())
    assert response.mimetype == FHIR_JSON, response.mimetype
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"]
    return body


@pytest.fixture
def reception(db_session, login_token):
    return login_token(UserFactory(roles=(Role.RECEPTIONIST,)).username)


@pytest.fixture
def fhir(client, reception):
    """GET and POST on /fhir with a receptionist's token (staff may use the FHIR API)."""

    class Fhir:
        def __init__(self):
            self.headers = {**reception, "Accept": FHIR_JSON}

        def get(self, path, **kwargs):
            return client.get(path, headers=self.headers, **kwargs)

        def post(self, path, data, content_type=FHIR_JSON):
            return client.post(path, headers=self.headers, data=data, content_type=content_type)

    return Fhir()


@pytest.fixture
def two_patients(db_session):
    first = PatientFactory(full_name="Nguyễn Văn An", family_name="Nguyễn", given_name="An")
    second = PatientFactory(full_name="Trần Thị Bình", family_name="Trần", given_name="Bình")
    db_session.commit()
    return first, second


def patient_count(db_session) -> int:
    db_session.expire_all()
    return db_session.scalar(select(func.count()).select_from(Patient))


def new_patient(**overrides) -> dict:
    body = {"full_name": "Lê Văn Tám", "sex": "male", "birth_date": "1985"}
    body.update(overrides)
    return body


# --- SQL injection ---


def test_sql_injection_in_rest_search_is_only_text(client, reception, db_session, two_patients):
    before = patient_count(db_session)
    for text in INJECTIONS:
        response = client.get("/api/v1/patients", query_string={"q": text}, headers=reception)
        if response.status_code == 200:
            # Searched for as text: neither patient's name, phone or number holds it.
            assert response.get_json() == [], text
        else:
            problem(response, 400, 422)
        for field in ("birth_year", "commune_code", "page", "page_size"):
            query = {"q": "an", field: text}
            response = client.get("/api/v1/patients", query_string=query, headers=reception)
            problem(response, 400, 422)
    assert patient_count(db_session) == before


def test_sql_injection_in_fhir_search_is_only_text(fhir, db_session, two_patients):
    before = patient_count(db_session)
    for text in INJECTIONS:
        # A lone "\\" escapes nothing: FHIR reads it as no value, and ignores the parameter.
        expected = len(two_patients) if text == "\\" else 0
        for name in ("name", "family", "identifier", "phone", "_id", "address", "gender"):
            response = fhir.get("/fhir/Patient", query_string={name: text})
            if response.status_code == 200:
                bundle = response.get_json()
                assert bundle["resourceType"] == "Bundle"
                matches = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
                assert len(matches) == expected, name
            else:
                outcome(response, 400)
        for name in ("_sort", "_count", "birthdate", "_lastUpdated", "_include", "_total"):
            response = fhir.get("/fhir/Patient", query_string={name: text})
            if response.status_code != 200:
                outcome(response, 400)
    assert patient_count(db_session) == before


def test_injected_text_is_stored_literally_when_valid_and_refused_by_the_rules_when_not(
    client, reception, db_session
):
    name = "Lê O'Drop--Table Tám"  # letters, apostrophe, hyphens: a valid name
    line = '\'; DROP TABLE patient; -- số 5 "ngõ" 7 <b>x</b>'
    body = new_patient(full_name=name, address={"line": line})
    response = client.post("/api/v1/patients", json=body, headers=reception)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["full_name"] == name and created["address"]["line"] == line
    db_session.expire_all()
    stored = db_session.get(Patient, created["id"])
    assert stored.full_name == name
    found = client.get("/api/v1/patients", query_string={"q": "o'drop--table"}, headers=reception)
    assert [p["id"] for p in found.get_json()] == [created["id"]]
    # Punctuation a name cannot hold is refused by the name rules, naming the character.
    before = patient_count(db_session)
    body = new_patient(full_name="Robert'); DROP TABLE patient;--")
    errors = problem(client.post("/api/v1/patients", json=body, headers=reception), 422)["errors"]
    assert "full_name" in errors and "“)”" in json.dumps(errors, ensure_ascii=False)
    assert patient_count(db_session) == before


def test_a_nul_character_in_the_address_is_refused_at_the_door(client, fhir, reception, db_session):
    # PostgreSQL refuses NUL in text deep inside a query; it is refused before any is run.
    rest = client.get("/api/v1/patients", query_string={"q": "a\x00b"}, headers=reception)
    assert "NUL" in problem(rest, 400)["detail"]
    for query in ({"name": "a\x00b"}, {"_sort": "\x00"}, {"x\x00": "1"}):
        body = outcome(fhir.get("/fhir/Patient", query_string=query), 400)
        assert "NUL" in body["issue"][0]["diagnostics"]
    outcome(fhir.get("/fhir/bulk/abc%00def"), 400)


# --- oversized bodies ---


def test_the_body_limit_is_configured_and_ten_megabytes_by_default():
    assert Settings.from_env({"HIS_ENV": "test"}).max_content_length == 10 * 1024 * 1024
    small = Settings.from_env({"HIS_ENV": "test", "HIS_MAX_CONTENT_LENGTH": "4096"})
    assert small.max_content_length == 4096


@pytest.fixture
def small_client(make_app, db_session):
    app = make_app(HIS_MAX_CONTENT_LENGTH="4096")
    client = app.test_client()
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    response = client.post(
        "/api/v1/auth/token", json={"username": user.username, "password": PASSWORD}
    )
    token = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    return client, token


def test_oversized_bodies_are_413_in_each_door_format_and_nothing_is_stored(
    small_client, db_session
):
    client, token = small_client
    before = patient_count(db_session)
    body = new_patient(address={"line": "x" * 5000})
    response = client.post(
        "/api/v1/patients", json=body, headers={**token, "Accept-Language": "en"}
    )
    assert "larger than this server accepts" in problem(response, 413)["detail"]
    fits = client.post("/api/v1/patients", json=new_patient(), headers=token)
    assert fits.status_code == 201, fits.get_json()
    assert patient_count(db_session) == before + 1
    before += 1
    resource = {"resourceType": "Patient", "name": [{"text": "x" * 5000}]}
    response = client.post(
        "/fhir/Patient",
        data=json.dumps(resource),
        content_type=FHIR_JSON,
        headers={**token, "Accept": FHIR_JSON},
    )
    outcome(response, 413)
    assert patient_count(db_session) == before


# --- deeply nested JSON ---

NESTED = b"[" * 100_000 + b"]" * 100_000
NESTED_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


def test_deeply_nested_json_is_a_400_not_a_recursion_error(client, reception, db_session):
    before = patient_count(db_session)
    for body in (NESTED, NESTED_OBJECT):
        assert_too_deep_is_refused(client, reception, body)
    assert patient_count(db_session) == before


def assert_too_deep_is_refused(client, reception, body: bytes) -> None:
    rest = client.post(
        "/api/v1/patients", data=body, content_type="application/json", headers=reception
    )
    assert problem(rest, 400)["detail"] == "Nội dung JSON lồng nhau quá sâu."
    fhir = client.post(
        "/fhir/Patient",
        data=body,
        content_type=FHIR_JSON,
        headers={**reception, "Accept": FHIR_JSON},
    )
    outcome(fhir, 400)
    bundle = client.post(
        "/fhir", data=body, content_type=FHIR_JSON, headers={**reception, "Accept": FHIR_JSON}
    )
    outcome(bundle, 400)


# --- invalid UTF-8 ---

BAD_UTF8 = b'{"full_name": "Nguy' + b"\xe1\xbb" + b' n", "sex": "male", "birth_date": "1985"}'


def test_bodies_that_are_not_utf8_are_refused_saying_so(client, reception, fhir, db_session):
    before = patient_count(db_session)
    response = client.post(
        "/api/v1/patients", data=BAD_UTF8, content_type="application/json", headers=reception
    )
    body = problem(response, 400)
    assert body["detail"] == (
        "Nội dung không phải UTF-8 hợp lệ (byte 19): hãy gửi JSON mã hoá UTF-8."
    )
    resource = b'{"resourceType": "Patient", "name": [{"text": "L\xea V\xe3n"}]}'  # Latin-1
    body = outcome(fhir.post("/fhir/Patient", resource), 400)
    assert "utf-8" in json.dumps(body).lower()
    assert patient_count(db_session) == before
    # In the URL, Werkzeug reads undecodable bytes as U+FFFD: a search for nothing, not a 500.
    assert client.get("/api/v1/patients?q=%FF%FE", headers=reception).status_code == 200
    assert fhir.get("/fhir/Patient?name=%FF%FE").status_code == 200
    outcome(fhir.get("/fhir/Patient/%FF%FE"), 404)
    problem(client.get("/api/v1/patients/%FF", headers=reception), 404)


# --- mixed Unicode normalisation forms ---

NAME = "Nguyễn Thị Thuỷ Đặng"


def test_a_name_registered_decomposed_is_stored_composed_and_found_in_either_form(
    client, reception, fhir, db_session
):
    nfd = unicodedata.normalize("NFD", NAME)
    assert nfd != NAME
    response = client.post(
        "/api/v1/patients", json=new_patient(full_name=nfd, sex="female"), headers=reception
    )
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["full_name"] == NAME
    db_session.expire_all()
    assert db_session.get(Patient, created["id"]).full_name == NAME
    for query in (NAME, nfd, "nguyen thi thuy dang"):
        found = client.get("/api/v1/patients", query_string={"q": query}, headers=reception)
        assert [p["id"] for p in found.get_json()] == [created["id"]], query
        bundle = fhir.get("/fhir/Patient", query_string={"name": query}).get_json()
        assert [e["resource"]["id"] for e in bundle.get("entry", [])] == [str(created["id"])]
    # NFC and NFD of one name are one name: the second registration is a likely duplicate.
    again = client.post(
        "/api/v1/patients", json=new_patient(full_name=NAME, sex="female"), headers=reception
    )
    assert again.status_code == 409


# --- huge page sizes ---


def test_huge_rest_page_sizes_are_refused_with_the_limit(client, reception, db_session):
    for size in (10**9, 101, 0, -1, 10**30):
        body = problem(
            client.get(
                "/api/v1/patients", query_string={"q": "an", "page_size": size}, headers=reception
            ),
            422,
        )
        assert "page_size" in body["errors"]
    for page in (0, -5, 10**30):
        problem(
            client.get(
                "/api/v1/patients", query_string={"q": "an", "page": page}, headers=reception
            ),
            422,
        )
    far = client.get("/api/v1/patients", query_string={"q": "an", "page": 10**9}, headers=reception)
    assert far.status_code in (200, 422)


def test_huge_fhir_counts_are_capped_or_refused(fhir, db_session, two_patients):
    capped = fhir.get("/fhir/Patient", query_string={"_count": str(10**9)})
    assert capped.status_code == 200
    assert len(capped.get_json()["entry"]) == len(two_patients)
    # The page is capped at the documented maximum (the CapabilityStatement says
    # "Page size: default 20, at most 1000"), whatever the client asks for.
    assert search.parse("Patient", [("_count", str(10**9))]).count == search.COUNT_MAX == 1000
    for count in (str(10**30), "-1", "1e9", "١٠"):
        outcome(fhir.get("/fhir/Patient", query_string={"_count": count}), 400)


# --- path traversal ---

TRAVERSALS = [
    "../secret.txt",
    "..%2fsecret.txt",
    "%2e%2e%2fsecret.txt",
    "%2e%2e/%2e%2e/secret.txt",
    "....//secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "secret.txt%00.ndjson",
    "..\\secret.txt",
    "..%5csecret.txt",
]
SECRET = b"TOP SECRET: must never be served"


@pytest.fixture
def export_app(make_app, db_session, tmp_path):
    app = make_app(HIS_INSTANCE_DIR=str(tmp_path))
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "secret.txt").write_bytes(SECRET)
    return app


def test_bulk_export_files_cannot_be_reached_by_path_traversal(export_app, db_session, login_token):
    client = export_app.test_client()
    user = UserFactory(roles=(Role.DOCTOR,))
    headers = {**login_token(user.username), "Accept": FHIR_JSON}
    # login_token posts to the default app's client; tokens live in the shared database.
    PatientFactory()
    db_session.commit()
    kick = client.get("/fhir/$export", headers={**headers, "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.get_data()
    status_url = kick.headers["Content-Location"]
    assert fhir_export.work_once(export_app.extensions["his_db"], export_app.config["HIS_SETTINGS"])
    job_path = status_url[status_url.index("/fhir/") :]
    manifest = client.get(job_path, headers=headers).get_json()
    real = manifest["output"][0]["url"]
    real_path = real[real.index("/fhir/") :]
    assert client.get(real_path, headers=headers).status_code == 200
    file_base = real_path.rsplit("/", 1)[0]
    for name in TRAVERSALS:
        response = client.get(f"{file_base}/{name}", headers=headers)
        assert response.status_code in (400, 404), (name, response.status_code)
        assert SECRET not in response.get_data(), name
    for path in (f"{job_path}/../../secret.txt", f"{job_path}/%2e%2e/secret.txt"):
        response = client.get(path, headers=headers)
        assert response.status_code in (400, 404) and SECRET not in response.get_data()


def test_static_and_api_doc_assets_cannot_be_reached_by_path_traversal(client, db_session):
    for name in [*TRAVERSALS, "../../his/config.py", "..%2f..%2fhis%2fconfig.py"]:
        for base in ("/static/", "/api/docs/assets/"):
            # "//" is redirected to "/" first (308), within the same folder.
            response = client.get(base + name, follow_redirects=True)
            assert response.status_code in (400, 404), (base + name, response.status_code)
            assert all(
                urlsplit(r.headers["Location"]).path.startswith(base) for r in response.history
            )
            text = response.get_data()
            assert b"HIS_SECRET_KEY" not in text and b"root:" not in text
    assert client.get("/static/favicon.svg").status_code == 200  # the folder itself is served
    # Claim files are served from the database by visit number: no path reaches the disk.
    for name in TRAVERSALS:
        assert client.get(f"/api/v1/claims/{name}/xml").status_code in (400, 404), name
