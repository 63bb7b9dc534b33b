"""Prescriptions through the REST API: drafts, violations, signing, replacing, roles."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from his.models import EPrescriptionSubmission, Role, SubmissionStatus
from tests.factories import UserFactory
from tests.prescribing_data import (
    item,
    make_setting,
    small_child,
)

CODE = re.compile(r"^[A-Z0-9]{5}[0-9a-z]{7}-[cnh]$")


@pytest.fixture
def s(db_session):
    return make_setting(db_session)


@pytest.fixture
def doctor(s, login_token):
    return login_token(s.doctor.username)


def _create(client, s, headers, *items, **extra):
    body = {"items": list(items) or [item()], **extra}
    return client.post(
        f"/api/v1/encounters/{s.encounter.id}/prescriptions", json=body, headers=headers
    )


def test_create_gives_a_draft_with_computed_quantities(client, s, doctor):
    response = _create(client, s, doctor, item("PARA500", 1, 3, 5), item("AMOX500", "0.5", 3, 5))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "draft" and body["code"] is None and body["rx_type"] == "c"
    assert body["violations"] == []
    para, amox = body["items"]
    assert para["drug_name"] == "Paracetamol 500 mg (Panadol)"
    assert para["computed_quantity"] == "15" and para["quantity"] == "15"
    assert amox["computed_quantity"] == "8" and amox["unit"] == "viên"
    assert para["route"] == "uống" and para["instructions"] == "Sau ăn"


def test_violations_are_listed_on_the_draft_and_block_signing(client, s, doctor):
    body = _create(client, s, doctor, item("PARA500", days=31), item("MORPH10", days=8)).get_json()
    rules = {(v["rule"], v["field"]) for v in body["violations"]}
    assert rules == {
        ("days-over-limit", "items.0.days"),
        ("controlled-not-alone", "items.0.drug_code"),
        ("narcotic-days", "items.1.days"),
    }
    response = client.post(f"/api/v1/prescriptions/{body['id']}/sign", headers=doctor)
    assert response.status_code == 422
    problem = response.get_json()
    assert response.content_type.startswith("application/problem+json")
    assert set(problem["errors"]) == {"items.0.days", "items.0.drug_code", "items.1.days"}
    assert {v["rule"] for v in problem["violations"]} == {
        "days-over-limit",
        "controlled-not-alone",
        "narcotic-days",
    }
    assert (
        client.get(f"/api/v1/prescriptions/{body['id']}", headers=doctor).get_json()["code"] is None
    )


def test_patch_fixes_the_draft_then_sign_returns_the_code(client, s, doctor):
    rx_id = _create(client, s, doctor, item("PARA500", days=31)).get_json()["id"]
    patched = client.patch(
        f"/api/v1/prescriptions/{rx_id}",
        json={"items": [item("PARA500", days=7)], "advice": "Tái khám nếu sốt cao"},
        headers=doctor,
    )
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["violations"] == []
    assert patched.get_json()["advice"] == "Tái khám nếu sốt cao"
    signed = client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=doctor)
    assert signed.status_code == 200, signed.get_json()
    body = signed.get_json()
    assert CODE.match(body["code"]) and body["code"].startswith("91001")
    assert body["status"] == "signed" and body["valid_until"] and body["content_hash"]
    # Immutable from now on.
    again = client.patch(f"/api/v1/prescriptions/{rx_id}", json={"advice": "x"}, headers=doctor)
    assert again.status_code == 409
    assert client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=doctor).status_code == 409


def test_signing_queues_the_submission(client, s, doctor, db_session):
    rx_id = _create(client, s, doctor).get_json()["id"]
    code = client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=doctor).get_json()["code"]
    submission = db_session.scalars(
        select(EPrescriptionSubmission).where(EPrescriptionSubmission.prescription_id == rx_id)
    ).one()
    assert submission.status is SubmissionStatus.PENDING
    assert submission.payload["ma_don_thuoc"] == code


def test_replace(client, s, doctor):
    rx_id = _create(client, s, doctor).get_json()["id"]
    old_code = client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=doctor).get_json()["code"]
    response = client.post(
        f"/api/v1/prescriptions/{rx_id}/replace",
        json={"reason": "Đổi liều", "items": [item("PARA500", 1, 2, 3)]},
        headers=doctor,
    )
    assert response.status_code == 201, response.get_json()
    new = response.get_json()
    assert new["replaces_id"] == rx_id and new["status"] == "signed"
    assert CODE.match(new["code"]) and new["code"] != old_code
    assert new["items"][0]["quantity"] == "6"
    old = client.get(f"/api/v1/prescriptions/{rx_id}", headers=doctor).get_json()
    assert old["status"] == "replaced" and old["code"] == old_code
    listed = client.get(f"/api/v1/encounters/{s.encounter.id}/prescriptions", headers=doctor)
    assert [p["status"] for p in listed.get_json()] == ["replaced", "signed"]
    no_reason = client.post(
        f"/api/v1/prescriptions/{new['id']}/replace", json={"items": [item()]}, headers=doctor
    )
    assert no_reason.status_code == 422


def test_check_is_a_dry_run(client, s, doctor):
    response = client.post(
        f"/api/v1/encounters/{s.encounter.id}/prescriptions/check",
        json={"items": [item("PARA500", 2, 3, 40), item("NOPE")]},
        headers=doctor,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {v["rule"] for v in body["violations"]} == {"days-over-limit", "drug-not-in-catalog"}
    assert body["items"][0]["computed_quantity"] == "240"
    listed = client.get(f"/api/v1/encounters/{s.encounter.id}/prescriptions", headers=doctor)
    assert listed.get_json() == []


def test_unknown_drug_and_bad_input_are_422(client, s, doctor):
    response = _create(client, s, doctor, item("NOPE"))
    assert response.status_code == 422
    assert "items.0.drug_code" in response.get_json()["errors"]
    assert _create(client, s, doctor, item(days=0)).status_code == 422
    assert (
        client.post(
            f"/api/v1/encounters/{s.encounter.id}/prescriptions", json={"items": []}, headers=doctor
        ).status_code
        == 422
    )


def test_small_child_fields_come_from_the_record(client, db_session, login_token):
    child = small_child(db_session, months=20, guardian="Nguyễn Thị Mẹ")
    s = make_setting(db_session, patient=child)
    headers = login_token(s.doctor.username)
    body = _create(client, s, headers).get_json()
    assert body["age_months"] == 20 and body["guardian_name"] == "Nguyễn Thị Mẹ"
    assert [v["rule"] for v in body["violations"]] == ["child-weight"]
    fixed = client.patch(
        f"/api/v1/prescriptions/{body['id']}", json={"weight_kg": "10.5"}, headers=headers
    ).get_json()
    assert fixed["violations"] == [] and fixed["weight_kg"] == "10.5"


@pytest.mark.parametrize("role", [Role.NURSE, Role.PHARMACIST, Role.RECEPTIONIST, Role.ADMIN])
def test_only_doctors_create_and_sign(client, s, doctor, login_token, role):
    rx_id = _create(client, s, doctor).get_json()["id"]
    other = login_token(UserFactory(roles=(role,), facility=s.facility).username)
    assert _create(client, s, other).status_code == 403
    assert client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=other).status_code == 403
    reading = client.get(f"/api/v1/prescriptions/{rx_id}", headers=other)
    assert reading.status_code == (403 if role is Role.RECEPTIONIST else 200)


def test_another_facility_sees_nothing(client, s, doctor, db_session, login_token):
    rx_id = _create(client, s, doctor).get_json()["id"]
    other = make_setting(db_session, facility_code="92002")
    headers = login_token(other.doctor.username)
    assert client.get(f"/api/v1/prescriptions/{rx_id}", headers=headers).status_code == 404
    assert _create(client, s, headers).status_code == 404
    assert client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=headers).status_code == 404


def test_cancel_a_draft(client, s, doctor):
    rx_id = _create(client, s, doctor).get_json()["id"]
    response = client.post(f"/api/v1/prescriptions/{rx_id}/cancel", headers=doctor)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=doctor).status_code == 409


def test_unauthenticated_is_401(client, s):
    assert _create(client, s, {}).status_code == 401


def test_numbers_of_the_wrong_kind_are_refused_not_truncated(client, s, doctor):
    english = {**doctor, "Accept-Language": "en"}
    for wrong in ({"days": 2.5}, {"times_per_day": 2.5}, {"days": "3"}):
        response = _create(client, s, english, item(**wrong))
        assert response.status_code == 422, (wrong, response.get_json())
    assert _create(client, s, english, age_months=20.5).status_code == 422
    fine = _create(client, s, english, item(dose="0.0001"))
    assert fine.status_code == 422
    text = str(fine.get_json())
    assert "At most 3 decimals: the smallest value is 0.001." in text
    assert "greater than" not in text
    assert _create(client, s, english, item(dose="0.001")).status_code == 201


def test_age_in_months_against_the_birth_month(client, db_session, login_token):
    from tests.factories import PatientFactory

    child = PatientFactory(birth_year=2022, birth_month=4, guardian_name="Nguyễn Thị Mẹ")
    s = make_setting(db_session, patient=child)
    headers = {**login_token(s.doctor.username), "Accept-Language": "en"}
    body = _create(client, s, headers, age_months=900, weight_kg="17.5").get_json()
    assert [v["rule"] for v in body["violations"]] == ["age-months-mismatch"]
    response = client.post(f"/api/v1/prescriptions/{body['id']}/sign", headers=headers)
    assert response.status_code == 422
    [message] = response.get_json()["errors"]["age_months"]
    assert "900" in message and "04/2022" in message
