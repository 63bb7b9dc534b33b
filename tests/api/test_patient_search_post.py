"""POST /api/v1/patients/search: the patient search with its parameters in a JSON body, so a
name or an identification number never sits in a URL (issue 9). It must answer exactly as
GET /api/v1/patients does, which stays for the systems that already call it."""

import json

import pytest
from sqlalchemy import select

from his.models import AuditAction, AuditEvent, Role
from tests.factories import PatientFactory, UserFactory

PROBLEM = "application/problem+json"
SEARCH = "/api/v1/patients/search"
# A patient with every number the search takes (a valid An Giang CCCD of a man born in 1985).
AN = {
    "full_name": "Nguyễn Văn An",
    "sex": "male",
    "birth_date": "1985-04-12",
    "cccd": "089085001234",
    "phone": "0912345678",
    "insurance": {"card_number": "DN4910123456789", "registered_facility_code": "91011"},
}


@pytest.fixture
def reception(db_session, login_token):
    return login_token(UserFactory(roles=(Role.RECEPTIONIST,)).username)


@pytest.fixture
def huynh(db_session):
    """Three patients of one name, two born in 1950, and another name."""
    found = [
        PatientFactory(full_name="Huỳnh Văn Tư", search_name="huynh van tu", birth_year=year)
        for year in (1950, 1950, 1960)
    ]
    PatientFactory(full_name="Lê Văn An", search_name="le van an")
    return found


# One test per kind rather than one per case: each case costs a request, a test a fixture.
SEARCHES = [
    {"q": "huynh tu"},
    {"q": "huynh tu", "birth_year": 1950},
    {"q": "huynh tu", "birth_year": 1950, "page_size": 1, "page": 1},
    {"q": "huynh tu", "birth_year": 1950, "page_size": 1, "page": 2},
    {"q": "huynh tu", "page_size": 2, "page": 2},
    {"q": "nobody at all"},
]


def test_post_answers_exactly_as_get(client, reception, huynh):
    for params in SEARCHES:
        by_get = client.get("/api/v1/patients", query_string=params, headers=reception)
        by_post = client.post(SEARCH, json=params, headers=reception)
        assert by_get.status_code == by_post.status_code == 200, params
        assert by_post.get_json() == by_get.get_json(), params
        assert json.loads(by_post.headers["X-Pagination"]) == json.loads(
            by_get.headers["X-Pagination"]
        ), params
    assert client.post(SEARCH, json={"q": "huynh tu"}, headers=reception).get_json()


def test_post_finds_by_identifier_and_pages(client, reception, huynh):
    registered = client.post("/api/v1/patients", json=AN, headers=reception).get_json()
    for number in (AN["cccd"], AN["phone"], AN["insurance"]["card_number"], registered["mrn"]):
        found = client.post(SEARCH, json={"q": number}, headers=reception).get_json()
        assert [p["id"] for p in found] == [registered["id"]], number

    first = client.post(
        SEARCH, json={"q": "huynh tu", "birth_year": 1950, "page_size": 1}, headers=reception
    )
    second = client.post(
        SEARCH,
        json={"q": "huynh tu", "birth_year": 1950, "page_size": 1, "page": 2},
        headers=reception,
    )
    ids = {first.get_json()[0]["id"], second.get_json()[0]["id"]}
    assert ids == {huynh[0].id, huynh[1].id}
    assert json.loads(first.headers["X-Pagination"]) == {"page": 1, "first_page": 1, "next_page": 2}
    assert json.loads(second.headers["X-Pagination"]) == {
        "page": 2,
        "first_page": 1,
        "previous_page": 1,
    }


BAD = [
    ({"q": "an", "birth_year": 1700}, "birth_year"),
    ({"q": "an", "birth_year": "nineteen"}, "birth_year"),
    ({"q": "an", "commune_code": "123"}, "commune_code"),
    ({"q": "an", "page": 0}, "page"),
    ({"q": "an", "page_size": 101}, "page_size"),
    ({"q": "an", "page_size": 0}, "page_size"),
    ({"q": 12}, "q"),
    ({"q": "an", "surname": "Lê"}, "surname"),
]


def test_bad_parameters_are_422_naming_the_field(client, reception, db_session):
    for body, field in BAD:
        answer = client.post(SEARCH, json=body, headers=reception)
        assert answer.status_code == 422, body
        assert answer.content_type == PROBLEM
        assert field in answer.get_json()["errors"], body


def test_nothing_to_search_is_422_as_with_get(client, reception, db_session):
    assert client.get("/api/v1/patients", headers=reception).status_code == 422
    answer = client.post(SEARCH, json={}, headers=reception)
    assert answer.status_code == 422
    assert answer.content_type == PROBLEM


def test_a_body_that_is_not_json_is_400(client, reception, db_session):
    answer = client.post(
        SEARCH, data="q=nguyen", headers={**reception, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400


def test_roles_are_those_of_the_get(client, login_token, huynh):
    for role in Role:
        headers = login_token(UserFactory(roles=(role,)).username)
        by_get = client.get("/api/v1/patients", query_string={"q": "huynh"}, headers=headers)
        by_post = client.post(SEARCH, json={"q": "huynh"}, headers=headers)
        assert by_post.status_code == by_get.status_code, role
        # The patient roles of his.services.access; the auditor reads the audit trail only.
        assert by_post.status_code == (403 if role is Role.AUDITOR else 200), role


def test_anonymous_is_401(client, db_session):
    answer = client.post(SEARCH, json={"q": "huynh"})
    assert answer.status_code == 401
    assert answer.content_type == PROBLEM


def test_search_is_audited_without_the_query(client, reception, db_session):
    client.post(SEARCH, json={"q": "nguyen"}, headers=reception)
    [event] = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.SEARCH)
    ).all()
    assert event.entity_type == "Patient"
    assert "nguyen" not in (event.detail or "")


def test_documented_in_openapi_with_the_get_s_answer(client, db_session):
    spec = client.get("/api/openapi.json").get_json()
    post = spec["paths"][SEARCH]["post"]
    get = spec["paths"]["/api/v1/patients"]["get"]
    assert post["responses"]["200"]["content"] == get["responses"]["200"]["content"]
    assert set(post["responses"]["200"]["headers"]) == set(get["responses"]["200"]["headers"])
    assert "422" in post["responses"]
    assert "URL" in post["description"]
    assert "get" not in spec["paths"][SEARCH]
