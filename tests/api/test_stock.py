"""Stock, receipts, the pharmacy queue and dispensing through the REST API."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from his.localtime import local_today
from his.models import AuditEvent, Dispense, Role, StockLot, StockMovement
from tests.factories import FacilityFactory, UserFactory
from tests.pharmacy_data import make_drug, make_lot, make_prescription

TODAY = local_today()


def days(n: int) -> str:
    return (TODAY + dt.timedelta(days=n)).isoformat()


@pytest.fixture
def pharmacy(db_session, login_token):
    facility = FacilityFactory(code="91001")
    pharmacist = UserFactory(roles=(Role.PHARMACIST,), facility=facility)
    drug = make_drug(db_session, facility, "AMO500", "Amoxicillin")
    return facility, drug, login_token(pharmacist.username)


def headers_for(login_token, facility, role: Role) -> dict[str, str]:
    return login_token(UserFactory(roles=(role,), facility=facility).username)


def test_receive_stock_then_list_it(client, pharmacy, db_session):
    _facility, _drug, headers = pharmacy
    body = {
        "supplier": "Công ty Dược An Giang",
        "invoice_number": "HD-7",
        "lines": [
            {
                "drug_code": "AMO500",
                "lot_number": "L1",
                "expiry_date": days(30),
                "quantity": 100,
                "unit_cost": 800,
            },
            {
                "drug_code": "AMO500",
                "lot_number": "L2",
                "expiry_date": days(400),
                "quantity": 2.5,
                "unit_cost": 900,
            },
        ],
    }
    response = client.post("/api/v1/stock/receipts", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    receipt = response.get_json()
    assert receipt["invoice_number"] == "HD-7" and receipt["supplier"] == body["supplier"]
    assert [
        (lot["lot_number"], lot["quantity"], lot["received"], lot["created"])
        for lot in receipt["lots"]
    ] == [("L1", 100, 100, True), ("L2", 2.5, 2.5, True)]

    # The same lot again is a top-up.
    again = client.post(
        "/api/v1/stock/receipts", json={"lines": body["lines"][:1]}, headers=headers
    ).get_json()
    assert again["lots"][0]["quantity"] == 200 and again["lots"][0]["created"] is False

    listed = client.get("/api/v1/stock", headers=headers)
    assert listed.status_code == 200
    [amox] = listed.get_json()
    assert amox["drug_code"] == "AMO500" and amox["drug_name"] == "Amoxicillin 500 mg"
    assert amox["available"] == 202.5 and amox["unit"] == "viên"
    assert [(lot["lot_number"], lot["expiring_soon"]) for lot in amox["lots"]] == [
        ("L1", True),
        ("L2", False),
    ]
    narrow = client.get("/api/v1/stock?expiring_within_days=7", headers=headers).get_json()
    assert [lot["expiring_soon"] for lot in narrow[0]["lots"]] == [False, False]
    assert client.get("/api/v1/stock?expiring_within_days=-1", headers=headers).status_code == 422


def test_receipt_problems_are_field_errors(client, pharmacy, db_session, login_token):
    facility, _drug, headers = pharmacy
    line = {"lot_number": "L1", "expiry_date": days(30), "quantity": 1, "unit_cost": 1}
    bad = client.post(
        "/api/v1/stock/receipts",
        json={
            "lines": [
                {**line, "drug_code": "NOPE"},
                {**line, "drug_code": "AMO500", "expiry_date": days(-1)},
            ]
        },
        headers=headers,
    )
    assert bad.status_code == 422
    problem = bad.get_json()
    assert bad.content_type.startswith("application/problem+json")
    assert set(problem["errors"]) == {"lines.0.drug_code", "lines.1.expiry_date"}
    zero = client.post(
        "/api/v1/stock/receipts",
        json={"lines": [{**line, "drug_code": "AMO500", "quantity": 0}]},
        headers=headers,
    )
    assert zero.status_code == 422
    assert db_session.scalar(select(func.count()).select_from(StockLot)) == 0
    doctor = headers_for(login_token, facility, Role.DOCTOR)
    refused = client.post(
        "/api/v1/stock/receipts",
        json={"lines": [{**line, "drug_code": "AMO500"}]},
        headers=doctor,
    )
    assert refused.status_code == 403


def test_pharmacist_sees_the_queue_the_plan_and_dispenses(client, pharmacy, db_session):
    facility, drug, headers = pharmacy
    make_lot(db_session, facility, drug, "LATE", TODAY + dt.timedelta(days=300), 50)
    early = make_lot(db_session, facility, drug, "EARLY", TODAY + dt.timedelta(days=20), 4)
    rx = make_prescription(db_session, facility, [(drug, 10)])

    queue = client.get("/api/v1/dispensing/queue", headers=headers)
    assert queue.status_code == 200
    [waiting] = queue.get_json()
    assert waiting["prescription_id"] == rx.id and waiting["code"] == rx.code
    assert waiting["rx_type"] == "c" and waiting["owed_items"] == 1 and not waiting["started"]
    assert waiting["patient_name"] == rx.patient.full_name

    plan = client.get(f"/api/v1/prescriptions/{rx.id}/dispense-plan", headers=headers)
    assert plan.status_code == 200
    body = plan.get_json()
    assert body["complete"] is True and body["code"] == rx.code
    [item] = body["items"]
    assert (item["prescribed"], item["owed"], item["available"], item["short"]) == (10, 10, 54, 0)
    assert [(lot["lot_number"], lot["quantity"]) for lot in item["lots"]] == [
        ("EARLY", 4),
        ("LATE", 6),
    ]

    done = client.post(f"/api/v1/prescriptions/{rx.id}/dispense", json={}, headers=headers)
    assert done.status_code == 201, done.get_json()
    record = done.get_json()
    assert record["kind"] == "dispense" and record["prescription_id"] == rx.id
    assert [
        (line["lot_number"], line["expiry_date"], line["quantity"]) for line in record["lines"]
    ] == [("EARLY", early.expiry_date.isoformat(), 4), ("LATE", days(300), 6)]
    assert client.get("/api/v1/dispensing/queue", headers=headers).get_json() == []
    again = client.post(f"/api/v1/prescriptions/{rx.id}/dispense", json={}, headers=headers)
    assert again.status_code == 409

    history = client.get(f"/api/v1/prescriptions/{rx.id}/dispenses", headers=headers).get_json()
    assert [d["id"] for d in history] == [record["id"]]


def test_partial_dispense_and_a_return(client, pharmacy, db_session):
    facility, drug, headers = pharmacy
    lot = make_lot(db_session, facility, drug, "A1", TODAY + dt.timedelta(days=100), 7)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    item_id = rx.items[0].id
    url = f"/api/v1/prescriptions/{rx.id}/dispense"

    short = client.post(url, json={}, headers=headers)
    assert short.status_code == 409
    problem = short.get_json()
    assert "Amoxicillin 500 mg" in problem["detail"]
    assert "cần 10" in problem["detail"] and "chỉ còn 7" in problem["detail"]
    assert problem["type"].endswith("/insufficient-stock")
    assert list(problem["errors"]) == ["items.0.quantity"]

    over = client.post(url, json={"items": [{"item_id": item_id, "quantity": 11}]}, headers=headers)
    assert over.status_code == 422 and "items.0.quantity" in over.get_json()["errors"]

    some = client.post(url, json={"items": [{"item_id": item_id, "quantity": 3}]}, headers=headers)
    assert some.status_code == 201
    rest = client.post(url, json={"allow_partial": True}, headers=headers)
    assert rest.status_code == 201
    assert [line["quantity"] for line in rest.get_json()["lines"]] == [4]
    [waiting] = client.get("/api/v1/dispensing/queue", headers=headers).get_json()
    assert waiting["started"] is True

    returned = client.post(
        f"/api/v1/prescriptions/{rx.id}/returns",
        json={"items": [{"item_id": item_id, "quantity": 2, "lot_id": lot.id}], "reason": "Dư"},
        headers=headers,
    )
    assert returned.status_code == 201, returned.get_json()
    assert returned.get_json()["kind"] == "return"
    too_many = client.post(
        f"/api/v1/prescriptions/{rx.id}/returns",
        json={"items": [{"item_id": item_id, "quantity": 6}], "reason": "Dư"},
        headers=headers,
    )
    assert too_many.status_code == 422
    db_session.expire_all()
    assert lot.quantity == 2
    plan = client.get(f"/api/v1/prescriptions/{rx.id}/dispense-plan", headers=headers).get_json()
    assert (plan["items"][0]["dispensed"], plan["items"][0]["owed"]) == (5, 5)
    history = client.get(f"/api/v1/prescriptions/{rx.id}/dispenses", headers=headers).get_json()
    assert [d["kind"] for d in history] == ["dispense", "dispense", "return"]


def test_one_return_cannot_bring_back_more_than_was_handed_out(client, pharmacy, db_session):
    facility, drug, headers = pharmacy
    soon = make_lot(db_session, facility, drug, "SOON1", TODAY + dt.timedelta(days=20), 10)
    late = make_lot(db_session, facility, drug, "LATE", TODAY + dt.timedelta(days=300), 50)
    rx = make_prescription(db_session, facility, [(drug, 15)])
    item_id = rx.items[0].id
    base = f"/api/v1/prescriptions/{rx.id}"
    for amount in (12, 3):
        response = client.post(
            base + "/dispense",
            json={"items": [{"item_id": item_id, "quantity": amount}]},
            headers=headers,
        )
        assert response.status_code == 201, response.get_json()

    over = client.post(
        base + "/returns",
        json={
            "reason": "trả",
            "items": [
                {"item_id": item_id, "quantity": 15},
                {"item_id": item_id, "quantity": 10, "lot_id": soon.id},
            ],
        },
        headers=headers,
    )
    assert over.status_code == 422, over.get_json()
    assert list(over.get_json()["errors"]) == ["items.0.quantity"]
    db_session.expire_all()
    assert (soon.quantity, late.quantity) == (0, 45)
    plan = client.get(base + "/dispense-plan", headers=headers).get_json()
    assert (plan["items"][0]["dispensed"], plan["items"][0]["owed"]) == (15, 0)
    again = client.post(base + "/dispense", json={}, headers=headers)
    assert again.status_code == 409

    # Everything back at once, lot by lot, is one valid request.
    back = client.post(
        base + "/returns",
        json={
            "reason": "trả",
            "items": [
                {"item_id": item_id, "quantity": 5},
                {"item_id": item_id, "quantity": 10, "lot_id": soon.id},
            ],
        },
        headers=headers,
    )
    assert back.status_code == 201, back.get_json()
    assert sorted((line["lot_number"], line["quantity"]) for line in back.get_json()["lines"]) == [
        ("LATE", 5),
        ("SOON1", 10),
    ]
    db_session.expire_all()
    assert (soon.quantity, late.quantity) == (10, 50)


def test_the_same_item_twice_in_one_dispense_is_refused(client, pharmacy, db_session):
    facility, drug, headers = pharmacy
    lot = make_lot(db_session, facility, drug, "A1", TODAY + dt.timedelta(days=100), 50)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    item_id = rx.items[0].id
    twice = client.post(
        f"/api/v1/prescriptions/{rx.id}/dispense",
        json={"items": [{"item_id": item_id, "quantity": 8}, {"item_id": item_id, "quantity": 8}]},
        headers=headers,
    )
    assert twice.status_code == 422
    assert list(twice.get_json()["errors"]) == ["items.1.item_id"]
    db_session.expire_all()
    assert lot.quantity == 50


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.RECEPTIONIST, Role.CASHIER])
def test_only_pharmacists_dispense(client, pharmacy, db_session, login_token, role):
    facility, drug, _headers = pharmacy
    lot = make_lot(db_session, facility, drug, "A1", TODAY + dt.timedelta(days=100), 50)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    other = headers_for(login_token, facility, role)
    refused = client.post(f"/api/v1/prescriptions/{rx.id}/dispense", json={}, headers=other)
    assert refused.status_code == 403
    assert client.get("/api/v1/dispensing/queue", headers=other).status_code == 403
    assert (
        client.get(f"/api/v1/prescriptions/{rx.id}/dispense-plan", headers=other).status_code == 403
    )
    returns = client.post(
        f"/api/v1/prescriptions/{rx.id}/returns",
        json={"items": [{"item_id": rx.items[0].id, "quantity": 1}], "reason": "x"},
        headers=other,
    )
    assert returns.status_code == 403
    db_session.expire_all()
    assert lot.quantity == 50
    assert db_session.scalar(select(func.count()).select_from(Dispense)) == 0


def test_another_facilitys_prescription_is_not_found(client, pharmacy, db_session):
    _facility, _drug, headers = pharmacy
    elsewhere = FacilityFactory()
    their_drug = make_drug(db_session, elsewhere, "AMO500", "Amoxicillin")
    make_lot(db_session, elsewhere, their_drug, "T1", TODAY + dt.timedelta(days=100), 50)
    theirs = make_prescription(db_session, elsewhere, [(their_drug, 10)])
    for method, path in [
        ("post", "dispense"),
        ("get", "dispense-plan"),
        ("get", "dispenses"),
    ]:
        response = getattr(client, method)(
            f"/api/v1/prescriptions/{theirs.id}/{path}",
            **({"json": {}} if method == "post" else {}),
            headers=headers,
        )
        assert response.status_code == 404, path
    assert client.get("/api/v1/dispensing/queue", headers=headers).get_json() == []
    assert client.get("/api/v1/stock", headers=headers).get_json() == []


def test_a_refused_dispense_leaves_no_trace(client, pharmacy, db_session):
    """The problem response rolls the request back: no dispense, movement or lot change."""
    facility, drug, headers = pharmacy
    paracetamol = make_drug(db_session, facility, "PARA500", "Paracetamol")
    make_lot(db_session, facility, paracetamol, "P1", TODAY + dt.timedelta(days=100), 100)
    make_lot(db_session, facility, drug, "A1", TODAY + dt.timedelta(days=100), 1)
    rx = make_prescription(db_session, facility, [(paracetamol, 10), (drug, 5)])
    before = db_session.scalar(select(func.count()).select_from(AuditEvent))
    response = client.post(f"/api/v1/prescriptions/{rx.id}/dispense", json={}, headers=headers)
    assert response.status_code == 409
    assert db_session.scalar(select(func.count()).select_from(StockMovement)) == 0
    assert db_session.scalar(select(func.sum(StockLot.quantity))) == 101
    # Only the request's own login audit rows may have been added, no stock ones.
    assert (
        db_session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.entity_type.in_(["StockMovement", "Dispense"]))
        )
        == 0
    )
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)) >= before


def test_the_endpoints_are_in_the_openapi_document(client, db_session):
    spec = client.get("/api/openapi.json").get_json()
    for path, method in [
        ("/api/v1/stock/receipts", "post"),
        ("/api/v1/stock", "get"),
        ("/api/v1/prescriptions/{prescription_id}/dispense", "post"),
        ("/api/v1/prescriptions/{prescription_id}/returns", "post"),
        ("/api/v1/prescriptions/{prescription_id}/dispenses", "get"),
        ("/api/v1/prescriptions/{prescription_id}/dispense-plan", "get"),
        ("/api/v1/dispensing/queue", "get"),
    ]:
        assert method in spec["paths"][path], path
    dispense = spec["paths"]["/api/v1/prescriptions/{prescription_id}/dispense"]["post"]
    assert "application/problem+json" in dispense["responses"]["409"]["content"]
    line = spec["components"]["schemas"]["DispenseLine"]["properties"]
    assert line["quantity"]["type"] == "number"
