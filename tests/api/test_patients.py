"""Registering, reading, changing, finding and merging patients through the REST API."""

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from his.localtime import local_today
from his.models import AuditAction, AuditEvent, Coverage, Patient, PatientIdentifier, Role
from tests.factories import CoverageFactory, PatientFactory, UserFactory, VisitFactory

PROBLEM = "application/problem+json"
# Valid CCCDs: An Giang (089); digit 4 is century+sex (0 male / 1 female 1900s, 2/3 2000s).
CCCD_MALE_1985 = "089085001234"
CCCD_FEMALE_1990 = "091190004321"


@pytest.fixture
def reception(db_session, login_token):
    user = UserFactory(roles=(Role.RECEPTIONIST,))
    return login_token(user.username)


def new_patient(**overrides):
    body = {
        "full_name": "NGUYỄN VĂN AN",
        "sex": "male",
        "birth_date": "1985-04-12",
        "cccd": CCCD_MALE_1985,
        "phone": "+84 912 345 678",
        "ethnicity_code": "01",
        "address": {"line": "12 Trần Hưng Đạo", "province_code": "91", "commune_code": "30742"},
        "allergies": [{"substance": "Penicillin", "reaction": "mề đay", "severity": "moderate"}],
        "insurance": {
            "card_number": "DN4910123456789",
            "valid_from": "2026-01-01",
            "valid_to": "2026-12-31",
            "registered_facility_code": "91011",
        },
    }
    body.update(overrides)
    return body


def _count(db_session, model):
    return db_session.scalar(select(func.count()).select_from(model))


def test_register_normalises_and_answers_id_and_mrn(client, reception, db_session):
    response = client.post("/api/v1/patients", json=new_patient(), headers=reception)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["id"] > 0
    assert body["mrn"].startswith("BN")
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert body["full_name"] == "Nguyễn Văn An"
    assert (body["family_name"], body["middle_name"], body["given_name"]) == ("Nguyễn", "Văn", "An")
    assert body["phone"] == "0912345678"
    assert body["cccd"] == CCCD_MALE_1985
    assert body["birth_date"] == "1985-04-12"
    assert body["address"]["commune_code"] == "30742"
    assert body["insurance"]["card_number"] == "DN4910123456789"
    assert body["insurance"]["insurance_number"] == "0123456789"
    assert body["insurance"]["benefit_level"] == 4
    assert body["insurance"]["status"] in ("unverified", "verified")
    assert body["allergies"][0]["substance"] == "Penicillin"
    types = {i["type"] for i in body["identifiers"]}
    assert {"cccd", "bhyt", "mrn"} <= types
    [event] = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.CREATE)
    ).all()
    assert (event.entity_type, event.patient_id) == ("Patient", body["id"])


def test_mrns_are_sequential(client, reception, db_session):
    first = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    second = client.post(
        "/api/v1/patients",
        json=new_patient(full_name="Trần Thị Bé", sex="female", cccd=None, insurance=None),
        headers=reception,
    ).get_json()
    assert int(second["mrn"][2:]) == int(first["mrn"][2:]) + 1


def test_partial_birth_dates(client, reception, db_session):
    for given, name in (("1938", "Lê Văn Cụ"), ("1941-03", "Lê Thị Bà")):
        body = new_patient(full_name=name, birth_date=given, cccd=None, insurance=None)
        response = client.post("/api/v1/patients", json=body, headers=reception)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["birth_date"] == given


def test_invalid_fields_are_each_reported_and_nothing_is_stored(client, reception, db_session):
    before = _count(db_session, Patient), _count(db_session, Coverage)
    body = new_patient(
        cccd="089185001234",  # digit 4 says female, born 1900s; the patient is a man born 1985
        phone="12345",
        birth_date="1985-02-30",
        address={"province_code": "91", "commune_code": "00001"},
        insurance={"card_number": "DN9910123456789"},
    )
    response = client.post(
        "/api/v1/patients", json=body, headers={**reception, "Accept-Language": "en"}
    )
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    errors = response.get_json()["errors"]
    assert set(errors) >= {"birth_date", "phone", "address.commune_code", "insurance.card_number"}
    assert "Character 3" in errors["insurance.card_number"][0]
    assert (_count(db_session, Patient), _count(db_session, Coverage)) == before


def test_cccd_errors_say_which_part_is_wrong(client, reception, db_session):
    wrong_sex = client.post(
        "/api/v1/patients",
        json=new_patient(cccd="089185001234", insurance=None),
        headers={**reception, "Accept-Language": "en"},
    ).get_json()
    assert "Digit 4" in wrong_sex["errors"]["cccd"][0]
    wrong_year = client.post(
        "/api/v1/patients",
        json=new_patient(cccd="089084001234", insurance=None),
        headers={**reception, "Accept-Language": "en"},
    ).get_json()
    assert "Digits 5–6" in wrong_year["errors"]["cccd"][0]


def test_errors_are_vietnamese_by_default(client, reception, db_session):
    response = client.post(
        "/api/v1/patients", json=new_patient(phone="abc", insurance=None), headers=reception
    )
    message = response.get_json()["errors"]["phone"][0]
    assert "phone" not in message.lower()  # translated


def test_missing_required_fields(client, reception, db_session):
    response = client.post("/api/v1/patients", json={"full_name": "A B"}, headers=reception)
    assert response.status_code == 422
    assert {"sex", "birth_date"} <= set(response.get_json()["errors"])


def test_child_under_6_needs_a_guardian(client, reception, db_session):
    child_birth = (local_today() - dt.timedelta(days=3 * 365)).isoformat()
    body = new_patient(
        full_name="Võ Bảo Ngọc", sex="female", birth_date=child_birth, cccd=None, insurance=None
    )
    refused = client.post("/api/v1/patients", json=body, headers=reception)
    assert refused.status_code == 422
    assert "guardian.name" in refused.get_json()["errors"]
    body["guardian"] = {"name": "Võ Văn Ba", "relation": "cha", "phone": "0987654321"}
    accepted = client.post("/api/v1/patients", json=body, headers=reception)
    assert accepted.status_code == 201, accepted.get_json()
    assert accepted.get_json()["guardian"]["name"] == "Võ Văn Ba"


def test_same_cccd_is_409_with_a_link(client, reception, db_session):
    first = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    again = client.post(
        "/api/v1/patients",
        json=new_patient(full_name="Nguyễn Văn Khác", insurance=None),
        headers=reception,
    )
    assert again.status_code == 409
    body = again.get_json()
    assert body["existing_patient"] == {
        "id": first["id"],
        "href": f"/api/v1/patients/{first['id']}",
    }
    assert "cccd" in body["errors"]


def test_same_bhyt_number_is_409(client, reception, db_session):
    client.post("/api/v1/patients", json=new_patient(), headers=reception)
    other = new_patient(
        full_name="Phạm Thị Hoa", sex="female", cccd=CCCD_FEMALE_1990, birth_date="1990-01-01"
    )
    other["insurance"] = {"card_number": "0123456789"}  # the same social-insurance number
    response = client.post("/api/v1/patients", json=other, headers=reception)
    assert response.status_code == 409
    assert "insurance.card_number" in response.get_json()["errors"]


def test_likely_duplicate_warns_and_can_be_overridden(client, reception, db_session):
    first = client.post(
        "/api/v1/patients", json=new_patient(cccd=None, insurance=None), headers=reception
    ).get_json()
    twin = new_patient(full_name="Nguyen Van An", cccd=None, insurance=None, phone=None)
    warned = client.post("/api/v1/patients", json=twin, headers=reception)
    assert warned.status_code == 409
    body = warned.get_json()
    assert body["type"].endswith("/possible-duplicate")
    assert [p["id"] for p in body["possible_duplicates"]] == [first["id"]]
    confirmed = client.post(
        "/api/v1/patients", json={**twin, "allow_possible_duplicate": True}, headers=reception
    )
    assert confirmed.status_code == 201


def test_patch_with_etag(client, reception, db_session):
    created = client.post("/api/v1/patients", json=new_patient(), headers=reception)
    patient_id, etag = created.get_json()["id"], created.headers["ETag"]
    changed = client.patch(
        f"/api/v1/patients/{patient_id}",
        json={"phone": "0296 3852 123"},
        headers={**reception, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["phone"] == "02963852123"
    assert changed.headers["ETag"] != etag
    stale = client.patch(
        f"/api/v1/patients/{patient_id}",
        json={"phone": "0912000111"},
        headers={**reception, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.mimetype == PROBLEM
    current = client.get(f"/api/v1/patients/{patient_id}", headers=reception).get_json()
    assert current["phone"] == "02963852123"


def test_patch_keeps_what_is_not_given(client, reception, db_session):
    created = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    changed = client.patch(
        f"/api/v1/patients/{created['id']}",
        json={"allergies": []},
        headers=reception,
    ).get_json()
    assert changed["allergies"] == []
    assert changed["cccd"] == CCCD_MALE_1985
    assert changed["insurance"]["card_number"] == "DN4910123456789"


def test_new_card_keeps_the_old_one_as_history(client, reception, db_session):
    created = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    changed = client.patch(
        f"/api/v1/patients/{created['id']}",
        json={"insurance": {"card_number": "HT3910123456789", "valid_to": "2027-12-31"}},
        headers=reception,
    ).get_json()
    assert changed["insurance"]["card_number"] == "HT3910123456789"
    assert [c["card_number"] for c in changed["insurance_history"]] == [
        "DN4910123456789",
        "HT3910123456789",
    ]


@pytest.mark.parametrize(
    "query",
    [
        "nguyen van an",
        "Nguyen Van An",
        "NGUYỄN VĂN AN",
        "an nguyen",
        "van an",
        "0912345678",
        "0912 345 678",
        CCCD_MALE_1985,
        "0123456789",
        "DN4910123456789",
    ],
)
def test_search_finds_the_patient(client, reception, db_session, query):
    created = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    PatientFactory(full_name="Nguyễn Văn Anh", search_name="nguyen van anh")
    found = client.get("/api/v1/patients", query_string={"q": query}, headers=reception)
    assert found.status_code == 200
    ids = [p["id"] for p in found.get_json()]
    assert ids[0] == created["id"]


def test_search_by_mrn(client, reception, db_session):
    created = client.post("/api/v1/patients", json=new_patient(), headers=reception).get_json()
    found = client.get(
        "/api/v1/patients", query_string={"q": created["mrn"].lower()}, headers=reception
    )
    assert [p["id"] for p in found.get_json()] == [created["id"]]


def test_search_folds_d_and_tone_marks(client, reception, db_session):
    dang = PatientFactory(full_name="Đặng Thị Thuý", search_name="dang thi thuy")
    thuy = PatientFactory(full_name="Lê Thị Thúy", search_name="le thi thuy")
    by_dang = client.get(
        "/api/v1/patients", query_string={"q": "dang"}, headers=reception
    ).get_json()
    assert [p["id"] for p in by_dang] == [dang.id]
    by_thuy = client.get(
        "/api/v1/patients", query_string={"q": "thuy"}, headers=reception
    ).get_json()
    assert {p["id"] for p in by_thuy} == {dang.id, thuy.id}


def test_search_ranks_exact_name_then_recent_visits(client, reception, db_session):
    exact = PatientFactory(full_name="Trần Văn Bình", search_name="tran van binh")
    # Alphabetically first, but never seen here: ranks after the one who came recently.
    never_seen = PatientFactory(full_name="Trần Văn Bình An", search_name="tran van binh an")
    came_recently = PatientFactory(
        full_name="Trần Văn Bình Minh",
        search_name="tran van binh minh",
        last_visit_at=dt.datetime.now(dt.UTC),
    )
    ids = [
        p["id"]
        for p in client.get(
            "/api/v1/patients", query_string={"q": "tran van binh"}, headers=reception
        ).get_json()
    ]
    assert ids == [exact.id, came_recently.id, never_seen.id]


def test_search_treats_percent_and_underscore_as_characters(client, reception, db_session):
    PatientFactory(full_name="Lê Văn An", search_name="le van an")
    for typed in ("%", "_e", "le %", "l_"):
        found = client.get("/api/v1/patients", query_string={"q": typed}, headers=reception)
        assert found.get_json() == [], typed


def test_search_filters_and_paging(client, reception, db_session):
    for year in (1950, 1950, 1960):
        PatientFactory(full_name="Huỳnh Văn Tư", search_name="huynh van tu", birth_year=year)
    pages = [
        client.get(
            "/api/v1/patients",
            query_string={"q": "huynh tu", "birth_year": 1950, "page_size": 1, "page": page},
            headers=reception,
        )
        for page in (1, 2)
    ]
    first, second = (response.get_json() for response in pages)
    assert len(first) == len(second) == 1
    assert {first[0]["id"], second[0]["id"]} == {
        p.id for p in db_session.scalars(select(Patient).where(Patient.birth_year == 1950))
    }
    # No total (counting a common name costs more than the page): only whether more follow.
    assert json.loads(pages[0].headers["X-Pagination"]) == {
        "page": 1,
        "first_page": 1,
        "next_page": 2,
    }
    assert json.loads(pages[1].headers["X-Pagination"]) == {
        "page": 2,
        "first_page": 1,
        "previous_page": 1,
    }


def test_search_needs_something_to_search(client, reception, db_session):
    assert client.get("/api/v1/patients", headers=reception).status_code == 422


def test_search_is_audited_without_the_query(client, reception, db_session):
    client.get("/api/v1/patients", query_string={"q": "nguyen"}, headers=reception)
    [event] = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == AuditAction.SEARCH)
    ).all()
    assert event.entity_type == "Patient"
    assert "nguyen" not in (event.detail or "")


def test_merge_and_undo(client, db_session, login_token):
    admin = login_token(UserFactory(roles=(Role.ADMIN,)).username)
    survivor = PatientFactory()
    duplicate = PatientFactory()
    CoverageFactory(patient=duplicate)
    visit = VisitFactory(patient_id=duplicate.id)
    merged = client.post(
        f"/api/v1/patients/{survivor.id}/merge", json={"merged_id": duplicate.id}, headers=admin
    )
    assert merged.status_code == 200, merged.get_json()
    merge_id = merged.get_json()["id"]
    survivor_now = client.get(f"/api/v1/patients/{survivor.id}", headers=admin).get_json()
    assert survivor_now["insurance"] is not None
    assert (
        client.get(f"/api/v1/patients/{duplicate.id}", headers=admin).get_json()["merged_into"]
        == survivor.id
    )
    db_session.expire_all()
    assert db_session.get(type(visit), visit.id).patient_id == survivor.id
    # The survivor now carries the moved visit's time for search ranking.
    assert db_session.get(Patient, survivor.id).last_visit_at == visit.opened_at
    # A merged record no longer turns up in searches.
    names = client.get("/api/v1/patients", query_string={"q": "tran thi"}, headers=admin).get_json()
    assert duplicate.id not in [p["id"] for p in names]

    undone = client.post(f"/api/v1/patient-merges/{merge_id}/undo", headers=admin)
    assert undone.status_code == 200
    db_session.expire_all()
    assert db_session.get(type(visit), visit.id).patient_id == duplicate.id
    assert db_session.get(Patient, survivor.id).last_visit_at is None
    assert (
        client.get(f"/api/v1/patients/{duplicate.id}", headers=admin).get_json()["merged_into"]
        is None
    )
    assert (
        client.get(f"/api/v1/patients/{survivor.id}", headers=admin).get_json()["insurance"] is None
    )
    details = db_session.scalars(
        select(AuditEvent.detail).where(AuditEvent.action == AuditAction.UPDATE)
    ).all()
    assert any(d.startswith("merge") for d in details) and any(
        d.startswith("undo merge") for d in details
    )


def test_only_admins_merge(client, reception, db_session):
    a, b = PatientFactory(), PatientFactory()
    response = client.post(
        f"/api/v1/patients/{a.id}/merge", json={"merged_id": b.id}, headers=reception
    )
    assert response.status_code == 403


def test_records_with_different_cccd_are_not_merged(client, db_session, login_token):
    admin = login_token(UserFactory(roles=(Role.ADMIN,)).username)
    a, b = PatientFactory(), PatientFactory()
    a.identifiers.append(PatientIdentifier(type="cccd", value=CCCD_MALE_1985))
    b.identifiers.append(PatientIdentifier(type="cccd", value="089085009999"))
    db_session.flush()
    response = client.post(
        f"/api/v1/patients/{a.id}/merge", json={"merged_id": b.id}, headers=admin
    )
    assert response.status_code == 409


def test_other_identifiers_can_be_resent_unchanged(client, reception, db_session):
    ids = [
        {"system": "cmnd", "value": "361234567"},
        {"system": "passport", "value": "c1234567"},
        {"system": "https://lis.bvdk.angiang.vn/patient", "value": "LIS-0042"},
    ]
    created = client.post(
        "/api/v1/patients", json=new_patient(identifiers=ids), headers=reception
    ).get_json()
    kinds = {(i["type"], i["value"]) for i in created["identifiers"]}
    assert {("cmnd", "361234567"), ("passport", "C1234567"), ("external", "LIS-0042")} <= kinds
    again = client.patch(
        f"/api/v1/patients/{created['id']}",
        json={"identifiers": ids, "cccd": CCCD_MALE_1985},
        headers=reception,
    )
    assert again.status_code == 200, again.get_json()
    dropped = client.patch(
        f"/api/v1/patients/{created['id']}", json={"identifiers": ids[:1]}, headers=reception
    ).get_json()
    assert {i["type"] for i in dropped["identifiers"]} == {"cccd", "bhyt", "mrn", "cmnd"}


def test_an_identifier_listed_twice_is_a_field_error_not_a_crash(client, reception, db_session):
    twice = {"system": "https://lis.bvdk.angiang.vn/patient", "value": "LIS-0042"}
    response = client.post(
        "/api/v1/patients",
        json=new_patient(identifiers=[twice, dict(twice)]),
        headers={**reception, "Accept-Language": "en"},
    )
    assert response.status_code == 422, response.get_json()
    assert "identifiers.1" in response.get_json()["errors"]


def test_an_external_id_belongs_to_one_patient(client, reception, db_session):
    lis = [{"system": "https://lis.example/p", "value": "7"}]
    client.post("/api/v1/patients", json=new_patient(identifiers=lis), headers=reception)
    other = new_patient(
        full_name="Lý Thị Sen",
        sex="female",
        birth_date="1970",
        cccd=None,
        insurance=None,
        identifiers=lis,
    )
    response = client.post("/api/v1/patients", json=other, headers=reception)
    assert response.status_code == 409
    assert "identifiers.0.value" in response.get_json()["errors"]


def test_card_check_again_through_the_gateway(make_app, db_session, login_token):
    """Registered while the gateway was unreachable, verified once it answers."""
    from tests.fake_bhyt_gateway import CARD_OK, PASSWORD, USERNAME, FakeBhytGateway

    with FakeBhytGateway() as gateway:
        down = make_app().test_client()  # no gateway configured: checked offline only
        user = UserFactory(roles=(Role.RECEPTIONIST,))
        token = down.post(
            "/api/v1/auth/token",
            json={"username": user.username, "password": "correct horse battery"},
        ).get_json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        created = down.post(
            "/api/v1/patients",
            json=new_patient(insurance={"card_number": CARD_OK}),
            headers=headers,
        ).get_json()
        assert created["insurance"]["status"] == "unverified"
        up = make_app(
            HIS_BHYT_GATEWAY_URL=gateway.url,
            HIS_BHYT_GATEWAY_USERNAME=USERNAME,
            HIS_BHYT_GATEWAY_PASSWORD=PASSWORD,
        ).test_client()
        checked = up.post(f"/api/v1/patients/{created['id']}/insurance/check", headers=headers)
        assert checked.status_code == 200, checked.get_json()
        assert checked.get_json()["status"] == "verified"
        assert checked.get_json()["check_method"] == "gateway"
        assert len(gateway.checks) == 1


def test_card_check_needs_a_card(client, reception, db_session):
    patient = PatientFactory()
    response = client.post(f"/api/v1/patients/{patient.id}/insurance/check", headers=reception)
    assert response.status_code == 422
    assert "insurance" in response.get_json()["errors"]
