"""Catalog search through the REST API, on both databases."""

import datetime as dt

import pytest

from his.models import Role
from tests.catalog_data import make_drug, make_service
from tests.factories import FacilityFactory, UserFactory


@pytest.fixture
def setting(db_session, login_token):
    facility = FacilityFactory()
    make_drug(
        db_session,
        facility,
        "TH01",
        "Amoxicilin",
        brand="Amoxicilin 500",
        registration_number="VD-12345-21",
        national_code="1.23",
        bhyt_payment_rate=100,
    )
    make_drug(
        db_session,
        facility,
        "TH02",
        "Morphin hydroclorid",
        strength="10 mg/1 ml",
        rx_class="N",
        unit="ống",
    )
    make_drug(db_session, FacilityFactory(), "TH09", "Amoxicilin")
    make_service(
        db_session,
        facility,
        "23.0075.1494",
        "Định lượng Glucose (máu)",
        result_unit="mmol/L",
        reference_range="3.9-6.4",
        loinc="2345-7",
    )
    user = UserFactory(roles=(Role.RECEPTIONIST,), facility=facility)
    return facility, login_token(user.username)


def _get(client, headers, path, **params):
    return client.get(f"/api/v1/catalogs/{path}", query_string=params, headers=headers)


def test_icd10_search_in_vietnamese_without_accents(client, setting):
    _, headers = setting
    response = _get(client, headers, "icd10", q="viem hong cap")
    assert response.status_code == 200, response.get_json()
    items = {i["code"]: i for i in response.get_json()}
    j029 = items["J02.9"]
    assert j029["name"] == j029["title_vi"] == "Viêm họng cấp, không đặc hiệu"
    assert j029["title_en"] == "Acute pharyngitis, unspecified"
    assert (j029["chapter"], j029["block"]) == ("X", "J00-J06")
    assert j029["not_main"] is False and j029["sex"] is None


def test_icd10_code_prefix_and_flags(client, setting):
    _, headers = setting
    codes = [i["code"] for i in _get(client, headers, "icd10", q="o80", limit=3).get_json()]
    assert codes == ["O80", "O80.0", "O80.1"]
    o800 = _get(client, headers, "icd10", q="O80.0").get_json()[0]
    assert o800["sex"] == "female"
    g01 = _get(client, headers, "icd10", q="G01").get_json()[0]
    assert g01["not_main"] is True and g01["name"] == g01["title_en"]


def test_drug_search_is_the_users_facility_and_any_spelling(client, setting):
    _, headers = setting
    items = _get(client, headers, "drugs", q="amoxicillin").get_json()
    assert [i["code"] for i in items] == ["TH01"]
    drug = items[0]
    assert drug["name"] == "Amoxicilin 500 mg (Amoxicilin 500)"
    assert drug["active_ingredient"] == "Amoxicilin"
    assert (drug["rx_class"], drug["price"], drug["bhyt_payment_rate"]) == ("C", 1000, 100)
    assert (drug["registration_number"], drug["national_code"]) == ("VD-12345-21", "1.23")
    assert drug["bhyt_covered"] is True and drug["unit"] == "viên"
    morphine = _get(client, headers, "drugs", q="morphine").get_json()[0]
    assert morphine["rx_class"] == "N"


def test_service_search(client, setting):
    _, headers = setting
    items = _get(client, headers, "services", q="glucose").get_json()
    assert items == [
        {
            "id": items[0]["id"],
            "code": "23.0075.1494",
            "name": "Định lượng Glucose (máu)",
            "kind": "lab",
            "unit": "lần",
            "bhyt_price": 20000,
            "service_price": 30000,
            "bhyt_covered": True,
            "result_unit": "mmol/L",
            "reference_range": "3.9-6.4",
            "loinc": "2345-7",
            "valid_from": "2020-01-01",
            "valid_to": None,
        }
    ]


def test_on_selects_the_catalog_of_that_day(client, setting):
    _, headers = setting
    assert _get(client, headers, "drugs", q="amox", on="2019-12-31").get_json() == []
    assert len(_get(client, headers, "drugs", q="amox", on="2020-01-01").get_json()) == 1
    assert _get(client, headers, "drugs", q="amox", on="31/12/2019").status_code == 422


@pytest.mark.parametrize("q", ["", "   "])
def test_empty_query_is_refused(client, setting, q):
    _, headers = setting
    response = _get(client, headers, "icd10", q=q)
    assert response.status_code == 422
    body = response.get_json()
    assert response.content_type.startswith("application/problem+json")
    assert "q" in body["errors"]


def test_missing_query_and_limit(client, setting):
    _, headers = setting
    assert _get(client, headers, "services").status_code == 422
    assert _get(client, headers, "icd10", q="a", limit=0).status_code == 422
    assert len(_get(client, headers, "icd10", q="a", limit=5000).get_json()) == 100


def test_unknown_catalog_is_404_problem(client, setting):
    _, headers = setting
    response = _get(client, headers, "loinc", q="x")
    assert response.status_code == 404
    assert "icd10, drugs hoặc services" in response.get_json()["detail"]


def test_search_needs_login(client, setting):
    assert _get(client, {}, "icd10", q="j18").status_code == 401


def test_openapi_documents_the_query(client, setting):
    spec = client.get("/api/openapi.json").get_json()
    params = spec["paths"]["/api/v1/catalogs/drugs"]["get"]["parameters"]
    assert {p["name"] for p in params} >= {"q", "on", "limit"}


def test_a_later_row_replaces_the_price(client, setting, db_session):
    facility, headers = setting
    make_drug(db_session, facility, "TH03", "Paracetamol", valid_to=dt.date(2026, 5, 31))
    make_drug(
        db_session, facility, "TH03", "Paracetamol", valid_from=dt.date(2026, 6, 1), price=1500
    )
    prices = [
        _get(client, headers, "drugs", q="paracetamol", on=day).get_json()[0]["price"]
        for day in ("2026-05-31", "2026-06-01")
    ]
    assert prices == [1000, 1500]
