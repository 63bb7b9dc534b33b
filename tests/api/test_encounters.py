"""Worklist, encounters, vitals, diagnoses, orders, results and signing through the REST API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from his.models import EncounterAmendment, PriorityReason, VisitStatus
from tests import encounters_data as data
from tests.factories import PatientFactory, VisitFactory


@pytest.fixture
def clinic(db_session):
    clinic = data.clinic(db_session, code="91001")
    data.icd10_lists(db_session)
    return clinic


@pytest.fixture
def as_(login_token, clinic):
    """Auth headers of one of the clinic's users, by role name."""
    tokens: dict[str, dict[str, str]] = {}

    def headers(role: str) -> dict[str, str]:
        if role not in tokens:
            tokens[role] = login_token(getattr(clinic, role).username)
        return tokens[role]

    return headers


def waiting(clinic, number, priority=None):
    return VisitFactory(
        facility_id=clinic.facility.id,
        patient_id=PatientFactory().id,
        room_id=clinic.room.id,
        queue_date=data.today(),
        queue_number=number,
        priority_reason=priority,
        status=VisitStatus.WAITING,
    )


def start(client, as_, visit):
    response = client.post(f"/api/v1/visits/{visit.id}/encounters", json={}, headers=as_("doctor"))
    assert response.status_code == 201, response.get_json()
    return response


def coded(client, as_, clinic):
    encounter = start(client, as_, waiting(clinic, 1)).get_json()
    url = f"/api/v1/encounters/{encounter['id']}"
    response = client.post(
        f"{url}/diagnoses", json={"icd10": "I10", "main": True}, headers=as_("doctor")
    )
    assert response.status_code == 201, response.get_json()
    return url


def test_worklist_and_call_next(client, clinic, as_):
    first = waiting(clinic, 1)
    old = waiting(clinic, 2, PriorityReason.AGE_75)
    url = f"/api/v1/worklist?room_id={clinic.room.id}"
    body = client.get(url, headers=as_("nurse")).get_json()
    assert [e["visit_id"] for e in body["waiting"]] == [old.id, first.id]
    assert body["waiting"][0]["priority_reason"] == "age_75"
    called = client.post(
        f"/api/v1/worklist/call-next?room_id={clinic.room.id}", headers=as_("doctor")
    )
    assert called.status_code == 200 and called.get_json()["visit_id"] == old.id
    body = client.get(url, headers=as_("doctor")).get_json()
    assert [e["visit_id"] for e in body["called"]] == [old.id]
    # The reception's queue board reads the same state.
    board = client.get(f"/api/v1/queues/{clinic.room.id}", headers=as_("receptionist")).get_json()
    assert [e["visit_id"] for e in board["called"]] == [old.id]
    assert client.get(url, headers=as_("receptionist")).status_code == 403


def test_start_examination(client, clinic, as_):
    visit = waiting(clinic, 1)
    response = start(client, as_, visit)
    body = response.get_json()
    assert response.headers["ETag"] == f'"{body["version"]}"'
    assert body["status"] == "in_progress" and body["visit_id"] == visit.id
    assert body["patient_id"] == visit.patient_id and body["doctor_id"] == clinic.doctor.id
    board = client.get(f"/api/v1/queues/{clinic.room.id}", headers=as_("receptionist")).get_json()
    assert [e["visit_id"] for e in board["in_examination"]] == [visit.id]
    worklist = client.get(
        f"/api/v1/worklist?room_id={clinic.room.id}", headers=as_("doctor")
    ).get_json()
    assert worklist["in_examination"][0]["encounter_id"] == body["id"]
    again = client.post(f"/api/v1/visits/{visit.id}/encounters", json={}, headers=as_("doctor"))
    assert again.status_code == 409
    nurse = client.post(f"/api/v1/visits/{visit.id}/encounters", json={}, headers=as_("nurse"))
    assert nurse.status_code == 403
    listed = client.get(f"/api/v1/visits/{visit.id}/encounters", headers=as_("nurse"))
    assert [e["id"] for e in listed.get_json()] == [body["id"]]
    hidden = client.get(f"/api/v1/visits/{visit.id}/encounters", headers=as_("receptionist"))
    assert hidden.status_code == 403


def test_clinical_notes_are_closed_to_reception_and_cashiers(client, clinic, as_):
    encounter = start(client, as_, waiting(clinic, 1)).get_json()
    for role in ("receptionist", "cashier"):
        response = client.get(f"/api/v1/encounters/{encounter['id']}", headers=as_(role))
        assert response.status_code == 403
        assert "hồ sơ lâm sàng" in response.get_json()["detail"].lower()
    assert (
        client.get(f"/api/v1/encounters/{encounter['id']}", headers=as_("nurse")).status_code == 200
    )


def test_other_facility_sees_nothing(client, db_session, clinic, as_, login_token):
    encounter = start(client, as_, waiting(clinic, 1)).get_json()
    other = data.clinic(db_session)
    headers = login_token(other.doctor.username)
    assert client.get(f"/api/v1/encounters/{encounter['id']}", headers=headers).status_code == 404
    assert (
        client.post(
            f"/api/v1/encounters/{encounter['id']}/vitals", json={"pulse": 80}, headers=headers
        ).status_code
        == 404
    )
    visit = waiting(clinic, 2)
    assert (
        client.post(f"/api/v1/visits/{visit.id}/encounters", json={}, headers=headers).status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/worklist?room_id={clinic.room.id}", headers=headers).status_code == 404
    )


def test_patch_with_etag(client, clinic, as_):
    created = start(client, as_, waiting(clinic, 1))
    url = f"/api/v1/encounters/{created.get_json()['id']}"
    etag = created.headers["ETag"]
    changed = client.patch(
        url, json={"reason": "Sốt 3 ngày"}, headers={**as_("doctor"), "If-Match": etag}
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["reason"] == "Sốt 3 ngày"
    assert changed.headers["ETag"] != etag
    stale = client.patch(url, json={"history": "x"}, headers={**as_("doctor"), "If-Match": etag})
    assert stale.status_code == 412
    assert client.get(url, headers=as_("doctor")).get_json()["history"] is None


def test_vitals_with_bmi_and_range_messages(client, clinic, as_):
    url = f"/api/v1/encounters/{start(client, as_, waiting(clinic, 1)).get_json()['id']}"
    good = client.post(
        f"{url}/vitals",
        json={"pulse": 88, "temperature": 38.5, "weight": 70, "height": 175},
        headers=as_("nurse"),
    )
    assert good.status_code == 201, good.get_json()
    assert good.get_json()["bmi"] == 22.9 and good.get_json()["temperature"] == 38.5
    bad = client.post(f"{url}/vitals", json={"pulse": 300, "spo2": 40}, headers=as_("nurse"))
    assert bad.status_code == 422
    errors = bad.get_json()["errors"]
    assert "20 đến 250 /min" in errors["pulse"][0] and "50 đến 100 %" in errors["spo2"][0]
    assert len(client.get(url, headers=as_("doctor")).get_json()["vitals"]) == 1
    assert (
        client.post(f"{url}/vitals", json={"pulse": 80}, headers=as_("receptionist")).status_code
        == 403
    )


def test_diagnoses_rules_and_removal(client, clinic, as_):
    url = f"/api/v1/encounters/{start(client, as_, waiting(clinic, 1)).get_json()['id']}"
    doctor = as_("doctor")
    category = client.post(f"{url}/diagnoses", json={"icd10": "J06", "main": True}, headers=doctor)
    assert category.status_code == 422 and "J06.9" in category.get_json()["errors"]["icd10"][0]
    never = client.post(f"{url}/diagnoses", json={"icd10": "U85"}, headers=doctor)
    assert never.status_code == 422
    main = client.post(f"{url}/diagnoses", json={"icd10": "j06.9", "main": True}, headers=doctor)
    assert main.status_code == 201 and main.get_json()["icd10"] == "J06.9"
    second = client.post(f"{url}/diagnoses", json={"icd10": "I10"}, headers=doctor)
    assert client.post(f"{url}/diagnoses", json={"icd10": "I10"}, headers=doctor).status_code == 409
    body = client.get(url, headers=doctor).get_json()
    assert [(d["icd10"], d["main"]) for d in body["diagnoses"]] == [("J06.9", True), ("I10", False)]
    removed = client.delete(f"{url}/diagnoses/{second.get_json()['id']}", headers=doctor)
    assert removed.status_code == 204
    assert [d["icd10"] for d in client.get(url, headers=doctor).get_json()["diagnoses"]] == [
        "J06.9"
    ]
    assert (
        client.post(f"{url}/diagnoses", json={"icd10": "I10"}, headers=as_("nurse")).status_code
        == 403
    )


def test_orders_and_results(client, clinic, as_):
    url = f"/api/v1/encounters/{start(client, as_, waiting(clinic, 1)).get_json()['id']}"
    order = client.post(
        f"{url}/orders",
        json={"service_code": "23.0075.1494", "note": "nhịn đói"},
        headers=as_("doctor"),
    )
    assert order.status_code == 201, order.get_json()
    assert order.get_json()["service_name"] == "Định lượng Glucose máu"
    order_id = order.get_json()["id"]
    unknown = client.post(f"{url}/orders", json={"service_code": "nope"}, headers=as_("doctor"))
    assert unknown.status_code == 422 and "service_code" in unknown.get_json()["errors"]
    first = client.post(
        f"/api/v1/orders/{order_id}/result", json={"value": "7.1"}, headers=as_("lab")
    )
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["unit"] == "mmol/L" and first.get_json()["reference_range"] == "3.9–6.4"
    second = client.post(
        f"/api/v1/orders/{order_id}/result",
        json={"value": "6.9", "conclusion": "Tăng nhẹ"},
        headers=as_("nurse"),
    )
    assert second.get_json()["supersedes_id"] == first.get_json()["id"]
    body = client.get(url, headers=as_("doctor")).get_json()
    [row] = body["orders"]
    assert row["status"] == "resulted" and [r["value"] for r in row["results"]] == ["7.1", "6.9"]
    assert (
        client.post(
            f"/api/v1/orders/{order_id}/result", json={"value": "1"}, headers=as_("cashier")
        ).status_code
        == 403
    )
    xray = client.post(
        f"{url}/orders", json={"service_code": "18.0071.0028"}, headers=as_("doctor")
    )
    cancelled = client.post(f"{url}/orders/{xray.get_json()['id']}/cancel", headers=as_("doctor"))
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"


def test_finish_signs_and_locks(client, clinic, as_):
    url = coded(client, as_, clinic)
    doctor = as_("doctor")
    refused = client.post(f"{url}/finish", json={"disposition": "follow_up"}, headers=doctor)
    assert refused.status_code == 422 and "follow_up_date" in refused.get_json()["errors"]
    follow_up = (data.today() + dt.timedelta(days=14)).isoformat()
    done = client.post(
        f"{url}/finish",
        json={"disposition": "follow_up", "follow_up_date": follow_up, "conclusion": "THA độ 1"},
        headers=doctor,
    )
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["status"] == "finished" and body["signed_by_id"] == clinic.doctor.id
    assert body["follow_up_date"] == follow_up and len(body["content_hash"]) == 64
    for method, path, payload in (
        ("patch", url, {"reason": "x"}),
        ("post", f"{url}/vitals", {"pulse": 80}),
        ("post", f"{url}/diagnoses", {"icd10": "E11.9"}),
        ("post", f"{url}/orders", {"service_code": "18.0071.0028"}),
        ("post", f"{url}/finish", {"disposition": "home"}),
    ):
        response = getattr(client, method)(path, json=payload, headers=doctor)
        assert response.status_code == 409, (path, response.get_json())


def test_finish_needs_main_diagnosis(client, clinic, as_):
    url = f"/api/v1/encounters/{start(client, as_, waiting(clinic, 1)).get_json()['id']}"
    response = client.post(f"{url}/finish", json={"disposition": "home"}, headers=as_("doctor"))
    assert response.status_code == 422 and "diagnoses" in response.get_json()["errors"]


def test_died_needs_time_and_refer_out_needs_facility(client, clinic, as_):
    url = coded(client, as_, clinic)
    died = client.post(f"{url}/finish", json={"disposition": "died"}, headers=as_("doctor"))
    assert died.status_code == 422 and "died_at" in died.get_json()["errors"]
    refer = client.post(
        f"{url}/finish",
        json={"disposition": "refer_out", "refer_to_facility_code": "123"},
        headers=as_("doctor"),
    )
    assert set(refer.get_json()["errors"]) >= {"refer_to_facility_code", "refer_reason"}


def test_amendment_keeps_the_original(client, db_session, clinic, as_, login_token):
    url = coded(client, as_, clinic)
    doctor = as_("doctor")
    client.patch(url, json={"findings": "Phổi trong"}, headers=doctor)
    signed = client.post(f"{url}/finish", json={"disposition": "home"}, headers=doctor).get_json()
    locked = client.patch(url, json={"findings": "Phổi ran nổ"}, headers=doctor)
    assert locked.status_code == 409
    amended = client.patch(
        url,
        json={"findings": "Phổi ran nổ đáy phải", "amendment_reason": "Ghi nhầm khi khám"},
        headers=doctor,
    )
    assert amended.status_code == 200, amended.get_json()
    body = amended.get_json()
    assert body["findings"] == "Phổi ran nổ đáy phải"
    [amendment] = body["amendments"]
    assert amendment["changes"] == {
        "findings": {"old": "Phổi trong", "new": "Phổi ran nổ đáy phải"}
    }
    assert amendment["reason"] == "Ghi nhầm khi khám"
    assert body["content_hash"] == amendment["content_hash"] != signed["content_hash"]
    row = db_session.scalar(select(EncounterAmendment))
    assert row.amended_by_id == clinic.doctor.id
    from tests.factories import UserFactory

    colleague = UserFactory(roles=("doctor",), facility=clinic.facility)
    other = client.patch(
        url,
        json={"findings": "x", "amendment_reason": "y"},
        headers=login_token(colleague.username),
    )
    assert other.status_code == 403


def test_diagnoses_amended_after_signing(client, clinic, as_, login_token):
    url = coded(client, as_, clinic)
    doctor = as_("doctor")
    extra = client.post(f"{url}/diagnoses", json={"icd10": "E11.9"}, headers=doctor).get_json()
    signed = client.post(f"{url}/finish", json={"disposition": "home"}, headers=doctor).get_json()
    main_id = signed["diagnoses"][0]["id"]
    unexplained = client.post(
        f"{url}/diagnoses", json={"icd10": "K29.7", "replaces": main_id}, headers=doctor
    )
    assert unexplained.status_code == 409
    assert "amendment_reason" in unexplained.get_json()["errors"]
    forbidden = client.post(
        f"{url}/diagnoses",
        json={"icd10": "U85", "amendment_reason": "Sai mã"},
        headers=doctor,
    )
    assert (
        forbidden.status_code == 422
        and "không được dùng" in forbidden.get_json()["errors"]["icd10"][0]
    )
    from tests.factories import UserFactory

    colleague = UserFactory(roles=("doctor",), facility=clinic.facility)
    other = client.post(
        f"{url}/diagnoses",
        json={"icd10": "K29.7", "amendment_reason": "x"},
        headers=login_token(colleague.username),
    )
    assert other.status_code == 403
    replaced = client.post(
        f"{url}/diagnoses",
        json={"icd10": "K29.7", "replaces": main_id, "amendment_reason": "Sai mã bệnh chính"},
        headers=doctor,
    )
    assert replaced.status_code == 201, replaced.get_json()
    assert replaced.get_json()["main"] is True
    remove = f"{url}/diagnoses/{extra['id']}"
    assert client.delete(remove, headers=doctor).status_code == 409
    new_main = f"{url}/diagnoses/{replaced.get_json()['id']}?amendment_reason=x"
    assert client.delete(new_main, headers=doctor).status_code == 409
    removed = client.delete(f"{remove}?amendment_reason=Kh%C3%B4ng%20c%C3%B3", headers=doctor)
    assert removed.status_code == 204
    body = client.get(url, headers=doctor).get_json()
    assert body["status"] == "finished" and body["signed_by_id"] == clinic.doctor.id
    assert [(d["icd10"], d["main"]) for d in body["diagnoses"]] == [("K29.7", True)]
    gone = body["removed_diagnoses"]
    assert [d["icd10"] for d in gone] == ["I10", "E11.9"] and all(d["removed_at"] for d in gone)
    first, second = body["amendments"]
    assert first["reason"] == "Sai mã bệnh chính"
    assert [d["icd10"] for d in first["changes"]["diagnoses"]["old"]] == ["I10", "E11.9"]
    assert [d["icd10"] for d in first["changes"]["diagnoses"]["new"]] == ["K29.7", "E11.9"]
    assert second["reason"] == "Không có"
    assert [d["icd10"] for d in second["changes"]["diagnoses"]["new"]] == ["K29.7"]
    assert body["content_hash"] == second["content_hash"] != signed["content_hash"]


def test_result_after_signing_is_accepted_as_an_amendment(client, clinic, as_):
    url = coded(client, as_, clinic)
    doctor = as_("doctor")
    order = client.post(f"{url}/orders", json={"service_code": "23.0075.1494"}, headers=doctor)
    signed = client.post(f"{url}/finish", json={"disposition": "home"}, headers=doctor).get_json()
    result = client.post(
        f"/api/v1/orders/{order.get_json()['id']}/result", json={"value": "8.2"}, headers=as_("lab")
    )
    assert result.status_code == 201, result.get_json()
    body = client.get(url, headers=doctor).get_json()
    assert body["orders"][0]["status"] == "resulted"
    [amendment] = body["amendments"]
    assert amendment["amended_by_id"] == clinic.lab.id
    assert amendment["reason"] == "Nhận kết quả sau khi đã ký."
    assert amendment["changes"]["result"]["new"]["value"] == "8.2"
    assert body["content_hash"] == amendment["content_hash"] != signed["content_hash"]
    assert body["signed_by_id"] == clinic.doctor.id
    assert body["finished_at"] == signed["finished_at"]


def test_disposition_amended_through_finish(client, clinic, as_):
    url = coded(client, as_, clinic)
    doctor = as_("doctor")
    client.post(f"{url}/finish", json={"disposition": "home"}, headers=doctor)
    refer = {"disposition": "refer_out", "refer_to_facility_code": "79001", "refer_reason": "CT"}
    assert client.post(f"{url}/finish", json=refer, headers=doctor).status_code == 409
    amended = client.post(
        f"{url}/finish", json={**refer, "amendment_reason": "Chuyển tuyến"}, headers=doctor
    )
    assert amended.status_code == 200, amended.get_json()
    body = amended.get_json()
    assert body["disposition"] == "refer_out" and body["refer_to_facility_code"] == "79001"
    [amendment] = body["amendments"]
    assert amendment["changes"]["disposition"] == {"old": "home", "new": "refer_out"}


def test_openapi_documents_amendment_reason(client, db_session):
    spec = client.get("/api/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    for name in ("DiagnosisIn", "ResultIn", "Finish", "EncounterPatch"):
        assert "amendment_reason" in schemas[name]["properties"], name
    assert "replaces" in schemas["DiagnosisIn"]["properties"]
    delete = spec["paths"]["/api/v1/encounters/{encounter_id}/diagnoses/{diagnosis_id}"]["delete"]
    assert "amendment_reason" in [p["name"] for p in delete["parameters"]]


def test_openapi_lists_the_endpoints(client, db_session):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in (
        "/api/v1/worklist",
        "/api/v1/visits/{visit_id}/encounters",
        "/api/v1/encounters/{encounter_id}",
        "/api/v1/encounters/{encounter_id}/vitals",
        "/api/v1/encounters/{encounter_id}/diagnoses",
        "/api/v1/encounters/{encounter_id}/orders",
        "/api/v1/orders/{order_id}/result",
        "/api/v1/encounters/{encounter_id}/finish",
    ):
        assert path in paths, path


def test_hostile_numbers_and_text_get_specific_errors_and_change_nothing(client, clinic, as_):
    url = f"/api/v1/encounters/{start(client, as_, waiting(clinic, 1)).get_json()['id']}"
    doctor = as_("doctor")
    version = client.get(url, headers=doctor).get_json()["version"]
    # A fractional count is refused, not cut to 2.
    half = client.post(
        f"{url}/orders", json={"service_code": "23.0075.1494", "quantity": 2.5}, headers=doctor
    )
    assert half.status_code == 422 and "quantity" in half.get_json()["errors"]
    # A pasted document is refused with the limit, field by field.
    huge = client.patch(url, json={"findings": "x" * 20_001}, headers=doctor)
    assert huge.status_code == 422 and "20000" in huge.get_json()["errors"]["findings"][0]
    result = client.post(
        f"{url}/orders", json={"service_code": "23.0075.1494"}, headers=doctor
    ).get_json()
    long_conclusion = client.post(
        f"/api/v1/orders/{result['id']}/result",
        json={"value": "5", "conclusion": "y" * 20_001},
        headers=doctor,
    )
    assert (
        long_conclusion.status_code == 422 and "conclusion" in long_conclusion.get_json()["errors"]
    )
    # Ids past 64 bits name nothing; numbers past 4,300 digits are unreadable JSON.
    assert client.get("/api/v1/encounters/" + "9" * 30, headers=doctor).status_code == 404
    assert (
        client.post(
            "/api/v1/orders/" + "9" * 25 + "/result", json={"value": "1"}, headers=doctor
        ).status_code
        == 404
    )
    too_long = client.post(
        f"{url}/vitals",
        data='{"pulse": ' + "9" * 5000 + "}",
        content_type="application/json",
        headers=doctor,
    )
    assert too_long.status_code == 400 and too_long.get_json()["detail"], too_long.get_json()
    beyond = client.get("/api/v1/worklist", query_string={"room_id": "9" * 25}, headers=doctor)
    assert beyond.status_code in (404, 422) and beyond.mimetype == "application/problem+json"
    after = client.get(url, headers=doctor).get_json()
    assert after["findings"] is None and after["version"] == version + 1  # the one good order
    assert [o["quantity"] for o in after["orders"]] == [1]
