"""A visit's bill through the REST API: charges accrued from the examination and the orders,
the BHYT split, paying, the supplementary bill, VietQR transfers and refunds.

Expected figures are worked out by hand in the comments (integer VND); the base salary on
the day of care decides the small-bill threshold (2,530,000 from 1 July 2026: 379,500)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from billing import vietqr
from billing.models import Charge, FacilityBankAccount
from his.localtime import local_today
from his.models import (
    MedicalService,
    Payment,
    Role,
    ServiceKind,
    VisitType,
)
from his.services import catalogs
from his.services import encounters as encounter_service
from tests.billing_data import billing_hospital, examined, referred_bhyt
from tests.factories import UserFactory

YEAR = local_today().year


@pytest.fixture
def hospital(db_session):
    return billing_hospital(db_session)


def _examined(db_session, place, *, opened: dt.datetime | None = None, **visit):
    return examined(db_session, place, **({"opened_at": opened} if opened else {}), **visit)


def _order(db_session, doctor, encounter, code, quantity=1):
    return encounter_service.add_order(db_session, doctor, encounter.id, code, quantity)


def test_a_referred_bhyt_visit_splits_at_the_card_level(client, db_session, hospital, login_token):
    visit, encounter, doctor = _examined(db_session, hospital, **referred_bhyt())
    _order(db_session, doctor, encounter, "23.0075.1494")  # glucose
    _order(db_session, doctor, encounter, "18.0071.0028", 5)  # 5 X-rays
    headers = login_token(hospital.cashier.username)

    response = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    # 42,100 + 21,500 + 5 x 65,400 = 390,600, above 379,500: no small-bill rule.
    # Referred (right route), level 4: 80 %. Fund: 33,680 + 17,200 + 261,600 = 312,480.
    assert body["total"] == 390_600
    assert body["insurance_pays"] == 312_480
    assert body["patient_copay"] == 78_120
    assert body["patient_out_of_scope"] == 0
    assert body["patient_pays"] == 78_120
    assert body["coverage_rule"] == "referred"
    assert body["coverage_rate"] == 80
    assert body["coverage_rule_label"]
    assert [(line["code"], line["total"], line["insurance_pays"]) for line in body["lines"]] == [
        ("02.1896", 42_100, 33_680),
        ("23.0075.1494", 21_500, 17_200),
        ("18.0071.0028", 327_000, 261_600),
    ]
    assert body["balance"] == 78_120
    assert body["vietqr"] is None  # the facility has no bank account for transfers yet
    # Looking again charges nothing twice.
    again = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    assert again["total"] == 390_600
    assert db_session.scalar(select(Charge.id).where(Charge.visit_id == visit.id).offset(3)) is None


def test_paying_locks_the_bill_and_a_later_charge_opens_a_supplementary_one(
    client, db_session, hospital, login_token
):
    visit, encounter, doctor = _examined(db_session, hospital, **referred_bhyt())
    _order(db_session, doctor, encounter, "23.0075.1494")
    _order(db_session, doctor, encounter, "18.0071.0028", 5)
    headers = login_token(hospital.cashier.username)
    bill = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    bill_id = bill["open_bill_id"]

    short = client.post(
        f"/api/v1/bills/{bill_id}/payments",
        json={"method": "cash", "amount": 78_000},
        headers=headers,
    )
    assert short.status_code == 422
    assert "78120" in short.get_json()["detail"].replace(",", "").replace(".", "")

    paid = client.post(
        f"/api/v1/bills/{bill_id}/payments",
        json={"method": "cash", "amount": 78_120},
        headers=headers,
    )
    assert paid.status_code == 201, paid.get_json()
    assert paid.get_json()["payment"]["receipt_number"] == f"{YEAR}-000001"
    assert paid.get_json()["bill"]["balance"] == 0

    twice = client.post(
        f"/api/v1/bills/{bill_id}/payments",
        json={"method": "cash", "amount": 78_120},
        headers=headers,
    )
    assert twice.status_code == 409

    _order(db_session, doctor, encounter, "23.0075.1494")  # one more glucose after paying
    body = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    # The visit now: 412,100 in scope, 80 %: fund 329,680, co-payment 82,420.
    assert (body["total"], body["insurance_pays"], body["patient_copay"]) == (
        412_100,
        329_680,
        82_420,
    )
    first, supplementary = body["bills"]
    assert first["status"] == "paid" and first["figures"]["patient_pays"] == 78_120
    assert supplementary["number"] == 2 and supplementary["status"] == "open"
    # The supplementary bill owes the difference: 21,500 of which the patient pays 4,300.
    assert supplementary["figures"] == {
        "total": 21_500,
        "insurance_pays": 17_200,
        "patient_copay": 4_300,
        "patient_out_of_scope": 0,
        "patient_pays": 4_300,
    }
    assert body["balance"] == 4_300


def test_a_vietqr_transfer_notification_pays_the_bill_once(
    client, db_session, hospital, login_token
):
    db_session.add(
        FacilityBankAccount(
            facility_id=hospital.facility.id,
            bank_bin="970415",
            account_number="113366668888",
            account_name="Benh vien Da khoa Tinh",
        )
    )
    visit, encounter, doctor = _examined(db_session, hospital, **referred_bhyt())
    _order(db_session, doctor, encounter, "18.0071.0028", 5)
    headers = login_token(hospital.cashier.username)
    body = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    # 42,100 + 327,000 = 369,100 < 379,500: a small bill, paid in full by the fund.
    assert body["coverage_rule"] == "small_bill"
    assert body["patient_pays"] == 0 and body["vietqr"] is None

    _order(db_session, doctor, encounter, "23.0075.1494")
    body = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    assert body["patient_pays"] == 78_120
    payload = vietqr.parse_payload(body["vietqr"])
    assert payload["54"] == "78120"
    reference = payload["62"]["08"]
    assert reference == vietqr.bill_reference("91001", body["open_bill_id"])

    note = {
        "transaction_id": "FT26332001",
        "amount": 78_120,
        "description": f"NGUYEN VAN A CHUYEN TIEN {reference} CAM ON",
    }
    first = client.post("/api/v1/payments/notify", json=note, headers=headers)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["payment"]["method"] == "transfer"
    repeat = client.post("/api/v1/payments/notify", json=note, headers=headers)
    assert repeat.status_code == 200
    assert repeat.get_json()["repeated"] is True
    assert repeat.get_json()["payment"]["id"] == first.get_json()["payment"]["id"]
    other_amount = client.post(
        "/api/v1/payments/notify", json={**note, "amount": 1}, headers=headers
    )
    assert other_amount.status_code == 409
    no_reference = client.post(
        "/api/v1/payments/notify",
        json={**note, "transaction_id": "FT26332002", "description": "TIEN KHAM"},
        headers=headers,
    )
    assert no_reference.status_code == 422
    assert client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()["balance"] == 0


def test_a_refund_has_its_own_receipt_and_a_reason(client, db_session, hospital, login_token):
    visit, encounter, doctor = _examined(db_session, hospital, payment=Payment.FEE)
    _order(db_session, doctor, encounter, "23.0075.1494")
    headers = login_token(hospital.cashier.username)
    body = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    # Not a BHYT visit: the patient pays the facility's own prices, 50,000 + 30,000.
    assert (body["total"], body["patient_pays"], body["insurance_pays"]) == (80_000, 80_000, 0)
    assert body["coverage_rule"] == "no_insurance"
    paid = client.post(
        f"/api/v1/bills/{body['open_bill_id']}/payments",
        json={"method": "card", "amount": 80_000},
        headers=headers,
    ).get_json()
    payment_id = paid["payment"]["id"]

    no_reason = client.post(
        f"/api/v1/payments/{payment_id}/refund", json={"reason": ""}, headers=headers
    )
    assert no_reason.status_code == 422
    refunded = client.post(
        f"/api/v1/payments/{payment_id}/refund",
        json={"reason": "Xét nghiệm không thực hiện"},
        headers=headers,
    )
    assert refunded.status_code == 201, refunded.get_json()
    assert refunded.get_json()["kind"] == "refund"
    assert refunded.get_json()["receipt_number"] == f"{YEAR}-000002"
    after = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    assert after["bills"][0]["status"] == "refunded" and after["bills"][0]["paid"] == 0
    again = client.post(
        f"/api/v1/payments/{payment_id}/refund", json={"reason": "again"}, headers=headers
    )
    assert again.status_code == 409


def test_the_day_of_care_chooses_the_rules(client, db_session, hospital, login_token):
    """The same charges, one visit opened in June 2026 (base salary 2,340,000: threshold
    351,000) and one now (2,530,000: 379,500): 369,100 is a small bill only now."""
    june = dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.UTC)
    then, then_encounter, doctor = _examined(db_session, hospital, opened=june, **referred_bhyt())
    _order(db_session, doctor, then_encounter, "18.0071.0028", 5)
    now, now_encounter, doctor = _examined(db_session, hospital, **referred_bhyt())
    _order(db_session, doctor, now_encounter, "18.0071.0028", 5)
    headers = login_token(hospital.cashier.username)

    old = client.get(f"/api/v1/visits/{then.id}/bill", headers=headers).get_json()
    new = client.get(f"/api/v1/visits/{now.id}/bill", headers=headers).get_json()

    # June: 80 % of 369,100 = 295,280 (33,680 + 261,600).
    assert (old["coverage_rule"], old["insurance_pays"], old["patient_pays"]) == (
        "referred",
        295_280,
        73_820,
    )
    assert (new["coverage_rule"], new["insurance_pays"], new["patient_pays"]) == (
        "small_bill",
        369_100,
        0,
    )


def test_bills_are_for_cashiers_of_the_visits_facility(client, db_session, hospital, login_token):
    visit, _encounter, _doctor = _examined(db_session, hospital, **referred_bhyt())
    elsewhere = UserFactory(roles=(Role.CASHIER,))
    response = client.get(
        f"/api/v1/visits/{visit.id}/bill", headers=login_token(elsewhere.username)
    )
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    bill = client.get(
        f"/api/v1/visits/{visit.id}/bill", headers=login_token(hospital.cashier.username)
    ).get_json()
    doctor = client.post(
        f"/api/v1/bills/{bill['open_bill_id']}/payments",
        json={"method": "cash", "amount": bill["patient_pays"]},
        headers=login_token(hospital.doctor.username),
    )
    assert doctor.status_code == 403


def test_an_emergency_visit_is_covered_at_the_card_level(client, db_session, hospital, login_token):
    visit, encounter, doctor = _examined(
        db_session, hospital, payment=Payment.BHYT, visit_type=VisitType.EMERGENCY
    )
    _order(db_session, doctor, encounter, "18.0071.0028", 6)
    body = client.get(
        f"/api/v1/visits/{visit.id}/bill", headers=login_token(hospital.cashier.username)
    ).get_json()
    # 42,100 + 6 x 65,400 = 434,500; 80 %: 33,680 + 313,920 = 347,600; patient 86,900.
    assert (body["coverage_rule"], body["insurance_pays"], body["patient_pays"]) == (
        "emergency",
        347_600,
        86_900,
    )


def test_a_visit_that_became_a_small_bill_gives_the_co_payment_back(
    client, db_session, hospital, login_token
):
    """Paid at 80 % (390,600: co-payment 78,120); then 20 tablets at 1,500 come back, the
    visit falls to 360,600, under 379,500: a small bill, all paid by the fund. Settling the
    supplementary bill gives the 78,120 back, with a receipt; the paid bill keeps its lines
    as they were paid."""
    from billing.charges import open_bill
    from billing.models import ChargeKind

    visit, encounter, doctor = _examined(db_session, hospital, **referred_bhyt())
    _order(db_session, doctor, encounter, "23.0075.1494")
    _order(db_session, doctor, encounter, "18.0071.0028", 5)
    headers = login_token(hospital.cashier.username)
    bill = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers).get_json()
    client.post(
        f"/api/v1/bills/{bill['open_bill_id']}/payments",
        json={"method": "cash", "amount": 78_120},
        headers=headers,
    )
    returned = Charge(
        visit_id=visit.id,
        facility_id=visit.facility_id,
        bill_id=open_bill(db_session, visit).id,
        kind=ChargeKind.DRUG,
        code="AMO500",
        name="Amoxicillin 500 mg (trả lại)",
        quantity=-20,
        unit_price=1_500,
        bhyt_price=1_500,
        in_scope=True,
        service_date=local_today(),
        performed_at=dt.datetime.now(dt.UTC),
    )
    db_session.add(returned)
    db_session.flush()

    response = client.get(f"/api/v1/visits/{visit.id}/bill", headers=headers)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["coverage_rule"], body["patient_pays"]) == ("small_bill", 0)
    assert body["balance"] == -78_120
    paid_lines = [line for line in body["lines"] if line["bill_id"] == body["bills"][0]["id"]]
    assert {line["coverage_rate"] for line in paid_lines} == {80}  # as paid, not as now
    settled = client.post(
        f"/api/v1/bills/{body['open_bill_id']}/payments",
        json={"method": "cash", "amount": 0},
        headers=headers,
    )
    assert settled.status_code == 201, settled.get_json()
    given_back = settled.get_json()["payment"]
    assert (given_back["kind"], given_back["amount"]) == ("refund", 78_120)
    assert given_back["receipt_number"] == f"{YEAR}-000002"
    assert settled.get_json()["bill"]["balance"] == 0


def _supply(db_session, place):
    db_session.add(
        MedicalService(
            facility_id=place.facility.id,
            code="N03.03.030",
            name="Bơm tiêm nhựa 5 ml",
            kind=ServiceKind.OTHER,
            unit="cái",
            bhyt_price=1_000,
            service_price=1_200,
            search_key=catalogs.search_text("N03.03.030", "Bơm tiêm nhựa 5 ml"),
            valid_from=dt.date(2026, 1, 1),
        )
    )
    db_session.flush()


def test_a_supply_is_charged_by_hand_and_taken_off_with_a_reason(
    client, db_session, hospital, login_token
):
    _supply(db_session, hospital)
    visit, _encounter, _doctor = _examined(db_session, hospital, **referred_bhyt())
    nurse = login_token(hospital.nurse.username)
    added = client.post(
        f"/api/v1/visits/{visit.id}/charges",
        json={"code": "N03.03.030", "quantity": "2"},
        headers=nurse,
    )
    assert added.status_code == 201, added.get_json()
    assert (added.get_json()["kind"], added.get_json()["unit_price"]) == ("supply", 1_000)
    body = client.get(
        f"/api/v1/visits/{visit.id}/bill", headers=login_token(hospital.cashier.username)
    ).get_json()
    # 42,100 + 2 x 1,000 = 44,100: a small bill, all the fund's.
    assert sorted((line["kind"], line["total"]) for line in body["lines"]) == [
        ("examination", 42_100),
        ("supply", 2_000),
    ]
    for wrong, field in (
        ({"code": "N03.03.030", "quantity": "0"}, "quantity"),
        ({"code": "NOPE", "quantity": "1"}, "code"),
        ({"code": "02.1896", "quantity": "1"}, "code"),  # an examination
    ):
        refused = client.post(f"/api/v1/visits/{visit.id}/charges", json=wrong, headers=nurse)
        assert refused.status_code == 422 and field in refused.get_json()["errors"], wrong
    receptionist = UserFactory(roles=(Role.RECEPTIONIST,), facility=hospital.facility)
    denied = client.post(
        f"/api/v1/visits/{visit.id}/charges",
        json={"code": "N03.03.030", "quantity": "1"},
        headers=login_token(receptionist.username),
    )
    assert denied.status_code == 403

    charge_id = added.get_json()["id"]
    no_reason = client.post(
        f"/api/v1/charges/{charge_id}/cancel", json={"reason": ""}, headers=nurse
    )
    assert no_reason.status_code == 422
    taken_off = client.post(
        f"/api/v1/charges/{charge_id}/cancel", json={"reason": "Nhập nhầm"}, headers=nurse
    )
    assert taken_off.status_code == 200 and taken_off.get_json()["cancel_reason"] == "Nhập nhầm"
    exam_charge = db_session.scalar(
        select(Charge.id).where(Charge.visit_id == visit.id, Charge.source_key.is_not(None))
    )
    clinical = client.post(
        f"/api/v1/charges/{exam_charge}/cancel", json={"reason": "x"}, headers=nurse
    )
    assert clinical.status_code == 409
    after = client.get(
        f"/api/v1/visits/{visit.id}/bill", headers=login_token(hospital.cashier.username)
    ).get_json()
    assert [line["kind"] for line in after["lines"]] == ["examination"]
