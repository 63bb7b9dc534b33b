"""The pharmacist's screens through the Flask test client (the browser lane dispenses in
chromium): the waiting list, the lot plan, dispensing, returns, receiving, the stock list."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from his.localtime import local_today
from his.models import Dispense, PrescriptionType, Role, StockLot, StockReceipt
from tests.factories import FacilityFactory, UserFactory
from tests.pharmacy_data import make_drug, make_lot, make_prescription
from tests.web.test_login_page import csrf_token, log_in

TODAY = local_today()


def days(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


@pytest.fixture
def counter(client, db_session):
    facility = FacilityFactory(code="91001")
    user = UserFactory(roles=(Role.PHARMACIST,), facility=facility)
    log_in(client, user.username)
    drug = make_drug(db_session, facility, "AMO500", "Amoxicillin")
    return facility, drug


def _post(client, page_url, url, data):
    token = csrf_token(client.get(page_url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def test_waiting_list_marks_controlled_prescriptions(client, counter, db_session):
    facility, drug = counter
    morphine = make_drug(db_session, facility, "MOR10", "Morphin", strength="10 mg")
    ordinary = make_prescription(db_session, facility, [(drug, 10)])
    narcotic = make_prescription(
        db_session, facility, [(morphine, 6)], rx_type=PrescriptionType.NARCOTIC
    )
    page = client.get("/pharmacy/?lang=en")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert ordinary.code in html and narcotic.code in html
    assert ordinary.patient.full_name in html
    assert re.search(r'data-code="' + narcotic.code + '" class="controlled"', html)
    assert "Narcotic (N)" in html and 'class="badge rx-n"' in html
    assert f'href="/pharmacy/prescriptions/{ordinary.id}"' in html
    assert 'hx-get="/pharmacy/queue/rows"' in html
    rows = client.get("/pharmacy/queue/rows").get_data(as_text=True)
    assert rows.count('data-testid="waiting"') == 2


def test_prescription_page_shows_the_lot_plan_and_dispenses(client, counter, db_session):
    facility, drug = counter
    early = make_lot(db_session, facility, drug, "EARLY-1", days(25), 4)
    make_lot(db_session, facility, drug, "LATE-2", days(500), 50)
    make_lot(db_session, facility, drug, "EXPIRED-0", days(-2), 100)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    url = f"/pharmacy/prescriptions/{rx.id}"

    html = client.get(url + "?lang=en").get_data(as_text=True)
    lots = re.findall(r'data-testid="plan-lot" data-lot="([^"]+)"', html)
    assert lots == ["EARLY-1", "LATE-2"]  # first expiry first, never the expired lot
    assert early.expiry_date.strftime("%d/%m/%Y") in html
    assert f'name="qty_{rx.items[0].id}"' in html and 'value="10"' in html

    done = _post(client, url, url + "/dispense", {f"qty_{rx.items[0].id}": "10"})
    assert done.status_code == 302
    record = db_session.scalars(select(Dispense)).one()
    assert done.headers["Location"] == f"{url}?done={record.id}"
    after = client.get(done.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert 'data-testid="done"' in after and 'data-testid="fully-dispensed"' in after
    assert after.count('data-testid="history-line"') == 2
    db_session.expire_all()
    assert early.quantity == 0


def test_partial_quantity_and_a_refusal_on_short_stock(client, counter, db_session):
    facility, drug = counter
    make_lot(db_session, facility, drug, "ONLY", days(100), 6)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    item = rx.items[0]
    url = f"/pharmacy/prescriptions/{rx.id}"
    html = client.get(url + "?lang=en").get_data(as_text=True)
    assert 'data-testid="short"' in html and "4 short" in html

    refused = _post(client, url, url + "/dispense?lang=en", {f"qty_{item.id}": "10"})
    assert refused.status_code == 409
    body = refused.get_data(as_text=True)
    assert 'data-testid="form-problem"' in body and "Not enough stock of" in body
    assert 'data-testid="item-error"' in body
    too_many = _post(client, url, url + "/dispense", {f"qty_{item.id}": "11"})
    assert too_many.status_code == 422
    assert db_session.scalar(select(func.count()).select_from(Dispense)) == 0

    partial = _post(client, url, url + "/dispense", {f"qty_{item.id}": "10", "allow_partial": "1"})
    assert partial.status_code == 302
    html = client.get(url + "?lang=en").get_data(as_text=True)
    owed = re.search(r'data-testid="owed"><strong>([^<]+)<', html).group(1)
    assert owed == "4"
    queue = client.get("/pharmacy/").get_data(as_text=True)
    assert 'data-testid="partly-dispensed"' in queue


def test_return_goes_back_to_its_lot_and_over_return_is_refused(client, counter, db_session):
    facility, drug = counter
    lot = make_lot(db_session, facility, drug, "R1", days(100), 20)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    url = f"/pharmacy/prescriptions/{rx.id}"
    assert _post(client, url, url + "/dispense", {}).status_code == 302
    html = client.get(url).get_data(as_text=True)
    key = f"{rx.items[0].id}:{lot.id}"
    assert f'<option value="{key}"' in html
    over = _post(
        client,
        url,
        url + "/returns?lang=en",
        {"item_lot": key, "return_quantity": "11", "reason": "Dư thuốc"},
    )
    assert over.status_code == 422
    assert 'data-testid="return-error"' in over.get_data(as_text=True)
    ok = _post(
        client, url, url + "/returns", {"item_lot": key, "return_quantity": "3", "reason": "Dư"}
    )
    assert ok.status_code == 302
    db_session.expire_all()
    assert lot.quantity == 13


def test_receive_stock_form_then_the_stock_list(client, counter, db_session):
    facility, drug = counter
    make_lot(db_session, facility, drug, "OLD", days(-5), 3)
    form = client.get("/pharmacy/stock/receive").get_data(as_text=True)
    assert '<option value="AMO500">' in form
    bad = _post(
        client,
        "/pharmacy/stock/receive",
        "/pharmacy/stock/receive?lang=en",
        {
            "supplier": "Công ty Dược",
            "drug_code_0": "AMO500",
            "lot_number_0": "N1",
            "expiry_date_0": days(-1).isoformat(),
            "quantity_0": "10",
            "unit_cost_0": "500",
            "drug_code_2": "NOPE",
            "lot_number_2": "N2",
            "expiry_date_2": days(30).isoformat(),
            "quantity_2": "5",
            "unit_cost_2": "500",
        },
    )
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'data-testid="error-expiry_date_0"' in html
    assert 'data-testid="error-drug_code_2"' in html  # the blank row 1 is skipped
    assert 'value="Công ty Dược"' in html
    assert db_session.scalar(select(func.count()).select_from(StockReceipt)) == 0

    ok = _post(
        client,
        "/pharmacy/stock/receive",
        "/pharmacy/stock/receive",
        {
            "drug_code_0": "AMO500",
            "lot_number_0": "N1",
            "expiry_date_0": days(30).isoformat(),
            "quantity_0": "10",
            "unit_cost_0": "1.500",
            "drug_code_1": "AMO500",
            "lot_number_1": "N2",
            "expiry_date_1": days(400).isoformat(),
            "quantity_1": "200",
            "unit_cost_1": "1400",
        },
    )
    assert ok.status_code == 302 and ok.headers["Location"].startswith("/pharmacy/stock?received=")
    n1 = db_session.scalars(select(StockLot).where(StockLot.lot_number == "N1")).one()
    assert n1.unit_cost == 1500 and n1.quantity == 10

    stock_page = client.get("/pharmacy/stock?lang=en").get_data(as_text=True)
    assert re.search(r'data-lot="N1" class="expiring"', stock_page)
    assert re.search(r'data-lot="N2">', stock_page)
    assert 'data-testid="expired-lot" data-drug="AMO500" data-lot="OLD"' in stock_page
    assert 'data-testid="lot" data-drug="AMO500" data-lot="OLD"' not in stock_page
    narrow = client.get("/pharmacy/stock?days=7").get_data(as_text=True)
    assert 'class="expiring"' not in narrow


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.RECEPTIONIST])
def test_other_roles_cannot_use_the_pharmacy(client, db_session, role):
    facility = FacilityFactory()
    drug = make_drug(db_session, facility, "AMO500")
    make_lot(db_session, facility, drug, "A", days(100), 50)
    rx = make_prescription(db_session, facility, [(drug, 10)])
    user = UserFactory(roles=(role,), facility=facility)
    log_in(client, user.username)
    assert client.get("/pharmacy/").status_code == 403
    url = f"/pharmacy/prescriptions/{rx.id}"
    assert client.get(url).status_code == 403
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post(url + "/dispense", data={"csrf_token": token}).status_code == 403
    assert client.get("/pharmacy/stock/receive").status_code == 403
    assert db_session.scalar(select(func.count()).select_from(Dispense)) == 0


def test_another_facilitys_prescription_is_not_found(client, counter, db_session):
    elsewhere = FacilityFactory()
    theirs = make_prescription(db_session, elsewhere, [(make_drug(db_session, elsewhere, "X"), 1)])
    assert client.get(f"/pharmacy/prescriptions/{theirs.id}").status_code == 404
