"""The cashier's screens through the Flask test client (the browser lane takes a payment in
chromium): the list of visits with money owed, a visit's bill with hand-worked figures,
taking a payment, the receipt, refunds, errors beside the fields, and who may see them.

The figures are worked out by hand in the comments (integer VND): a basic-level former
provincial hospital, a referred BHYT visit on a level-4 card (80 %), the examination
(42,100), a glucose test (21,500) and five chest X-rays (5 x 65,400): 390,600 in all, above
the small-bill threshold of 379,500, so the fund pays 80 % of every line."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from sqlalchemy import func, select

from billing import bills, payments, vietqr
from billing.models import Bill, BillStatus, FacilityBankAccount, PaymentMethod
from billing.models import Payment as PaymentRow
from his.localtime import VN_TZ, local_today
from his.models import Payment, Role
from his.services import encounters as encounter_service
from his.services.access import Principal
from tests.billing_data import billing_hospital, examined, referred_bhyt
from tests.factories import UserFactory
from tests.web.test_login_page import csrf_token, log_in

YEAR = local_today().year


@pytest.fixture
def hospital(db_session):
    """The billing hospital, taking VietQR transfers."""
    place = billing_hospital(db_session)
    db_session.add(
        FacilityBankAccount(
            facility_id=place.facility.id,
            bank_bin="970415",
            account_number="113366668888",
            account_name="Benh vien Da khoa Tinh",
        )
    )
    place.cashier.full_name = "Đỗ Thị Thu"
    db_session.flush()
    return place


def _owing(db_session, place, **kwargs):
    """The visit of the hand-worked figures: 78,120 owed."""
    visit, encounter, doctor = examined(db_session, place, **referred_bhyt(), **kwargs)
    encounter_service.add_order(db_session, doctor, encounter.id, "23.0075.1494")  # glucose
    encounter_service.add_order(db_session, doctor, encounter.id, "18.0071.0028", 5)  # X-rays
    return visit


def _paid(db_session, place):
    """A fee-paying visit (50,000 + 30,000 at the facility's own prices), paid in cash."""
    visit, encounter, doctor = examined(db_session, place, payment=Payment.FEE)
    encounter_service.add_order(db_session, doctor, encounter.id, "23.0075.1494")
    open_bill = bills.build(db_session, visit).open_bill
    cashier = Principal.for_user(place.cashier)
    payments.take_payment(db_session, cashier, open_bill.bill.id, PaymentMethod.CASH, 80_000)
    return visit


def _testid(html: str, name: str) -> str:
    match = re.search(rf'data-testid="{name}"[^>]*>([^<]*)<', html)
    assert match, f"no data-testid={name}"
    return match.group(1).strip()


def _post(client, page_url, url, data):
    token = csrf_token(client.get(page_url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def _payment_count(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(PaymentRow))


def test_the_list_shows_a_visit_with_a_balance_and_not_a_paid_one(client, db_session, hospital):
    owing = _owing(db_session, hospital, patient_name="Nguyễn Thị Lan")
    paid = _paid(db_session, hospital)
    # 42,100 + 21,500 = 63,600, a small bill: the fund pays it all, nothing is owed.
    free, encounter, doctor = examined(db_session, hospital, **referred_bhyt())
    encounter_service.add_order(db_session, doctor, encounter.id, "23.0075.1494")
    log_in(client, hospital.cashier.username)

    page = client.get("/cashier/?lang=en")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    codes = re.findall(r'data-testid="unpaid-visit" data-code="([^"]+)"', html)
    assert codes == [owing.visit_code]
    assert paid.visit_code not in html and free.visit_code not in html
    assert "Nguyễn Thị Lan" in html
    assert _testid(html, "balance") == "78,120"
    assert f'href="/cashier/visits/{owing.id}"' in html
    assert owing.opened_at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M") in html
    assert 'hx-get="/cashier/rows"' in html
    rows = client.get("/cashier/rows").get_data(as_text=True)
    assert rows.count('data-testid="unpaid-visit"') == 1


def test_the_list_leaves_out_old_visits(client, db_session, hospital):
    old = _owing(db_session, hospital, opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=4))
    log_in(client, hospital.cashier.username)
    html = client.get("/cashier/").get_data(as_text=True)
    assert old.visit_code not in html
    assert 'data-testid="unpaid-empty"' in html


def test_a_visit_code_opens_its_bill_and_an_unknown_one_is_shown_beside_the_box(
    client, db_session, hospital
):
    visit = _owing(db_session, hospital)
    log_in(client, hospital.cashier.username)
    # The code is posted, never put in the URL: the bill is addressed by its internal id.
    found = _post(client, "/cashier/", "/cashier/", {"code": f" {visit.visit_code.lower()} "})
    assert found.status_code == 303
    assert found.headers["Location"] == f"/cashier/visits/{visit.id}"
    missing = _post(client, "/cashier/", "/cashier/?lang=en", {"code": "91001999999"})
    assert missing.status_code == 422
    html = missing.get_data(as_text=True)
    assert _testid(html, "code-error") == "No visit has this code at your facility."
    assert 'value="91001999999"' in html
    # A blank box shows the list again; a code in the query string is no longer read.
    assert _post(client, "/cashier/", "/cashier/", {"code": " "}).status_code == 200
    listed = client.get(f"/cashier/?code={visit.visit_code}")
    assert listed.status_code == 200
    assert 'data-testid="code-error"' not in listed.get_data(as_text=True)
    # Like every POST, the lookup needs the CSRF token.
    assert client.post("/cashier/", data={"code": visit.visit_code}).status_code == 400


def test_the_bill_page_shows_the_hand_worked_figures(client, db_session, hospital):
    visit = _owing(db_session, hospital)
    log_in(client, hospital.cashier.username)

    page = client.get(f"/cashier/visits/{visit.id}?lang=en")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    assert _testid(html, "visit-code") == visit.visit_code
    assert _testid(html, "total") == "390,600"
    assert _testid(html, "insurance-pays") == "312,480"
    assert _testid(html, "patient-copay") == "78,120"
    assert _testid(html, "patient-out-of-scope") == "0"
    assert _testid(html, "patient-pays") == "78,120"
    assert _testid(html, "balance") == "78,120"
    assert _testid(html, "coverage-label") == "Referred by another facility: the full benefit"
    assert _testid(html, "coverage-rate") == "80%"
    # Each line: code, quantity, total, fund 80 %, co-pay 20 %, nothing out of scope, bill 1.
    lines = re.findall(
        r'data-testid="line" data-code="([^"]+)">.*?line-quantity">([^<]+)<.*?'
        r'line-total">([^<]+)<.*?line-fund">([^<]+)<.*?line-copay">([^<]+)<.*?'
        r'line-out-of-scope">([^<]+)<.*?line-bill">([^<]+)<',
        html,
        re.S,
    )
    assert lines == [
        ("02.1896", "1", "42,100", "33,680", "8,420", "0", "1"),
        ("23.0075.1494", "1", "21,500", "17,200", "4,300", "0", "1"),
        ("18.0071.0028", "5", "327,000", "261,600", "65,400", "0", "1"),
    ]
    assert "65,400" in html  # the X-ray's unit price
    # The VietQR code of the open bill asks for the balance, with the bill's reference.
    open_bill = db_session.scalars(select(Bill).where(Bill.visit_id == visit.id)).one()
    reference = vietqr.bill_reference("91001", open_bill.id)
    assert _testid(html, "vietqr-reference") == reference
    assert _testid(html, "vietqr-amount") == "78,120 ₫"
    assert re.search(r'data-testid="vietqr"[^>]*>\s*<img src="data:image/png;base64,', html)
    # The form takes the whole balance, which the cashier cannot change.
    assert re.search(r'name="amount" value="78,120" readonly', html)
    assert 'value="cash" checked' in html
    assert 'data-testid="bill-status">Unpaid<' in html


def test_paying_locks_the_bill_and_leads_to_the_printable_receipt(client, db_session, hospital):
    visit = _owing(db_session, hospital, patient_name="Nguyễn Thị Lan")
    log_in(client, hospital.cashier.username)
    url = f"/cashier/visits/{visit.id}"
    client.get(url)
    bill = db_session.scalars(select(Bill).where(Bill.visit_id == visit.id)).one()

    done = _post(
        client,
        url,
        f"{url}/bills/{bill.id}/payments",
        {"method": "cash", "amount": "78.120"},  # as the Vietnamese page shows it
    )

    assert done.status_code == 302, done.get_data(as_text=True)
    payment = db_session.scalars(select(PaymentRow)).one()
    assert done.headers["Location"] == f"/cashier/payments/{payment.id}/receipt"
    db_session.expire_all()
    assert bill.status == BillStatus.PAID and payment.amount == 78_120
    receipt = client.get(done.headers["Location"] + "?lang=en")
    html = receipt.get_data(as_text=True)
    assert receipt.status_code == 200
    assert _testid(html, "receipt-number") == f"{YEAR}-000001"
    assert _testid(html, "receipt-title") == "Payment receipt"
    assert _testid(html, "receipt-facility") == hospital.facility.name
    assert _testid(html, "receipt-time") == payment.at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")
    assert "Nguyễn Thị Lan" in html
    assert _testid(html, "receipt-visit-code") == visit.visit_code
    assert html.count('data-testid="receipt-line"') == 3
    assert _testid(html, "receipt-total") == "390,600"
    assert _testid(html, "receipt-fund") == "312,480"
    assert _testid(html, "receipt-patient-pays") == "78,120"
    assert _testid(html, "receipt-amount") == "78,120 ₫"
    assert _testid(html, "receipt-method") == "Cash"
    assert _testid(html, "receipt-cashier") == "Đỗ Thị Thu"
    assert "Referred by another facility: the full benefit · 80%" in html
    # The print button works through a script file: the CSP allows no inline script.
    assert 'data-print data-testid="print"' in html
    assert '<script src="/static/js/print.js" defer></script>' in html
    assert "<script>" not in html and "onclick" not in html
    # The bill page now says nothing is owed and lists the receipt.
    after = client.get(url + "?lang=en").get_data(as_text=True)
    assert 'data-testid="settled"' in after and 'data-testid="pay-form"' not in after
    assert f'data-receipt="{YEAR}-000001"' in after
    assert 'data-testid="bill-status">Paid<' in after


def test_a_wrong_amount_or_a_paid_bill_shows_the_error_and_changes_nothing(
    client, db_session, hospital
):
    visit = _owing(db_session, hospital)
    log_in(client, hospital.cashier.username)
    url = f"/cashier/visits/{visit.id}"
    client.get(url)
    bill = db_session.scalars(select(Bill).where(Bill.visit_id == visit.id)).one()
    pay_url = f"{url}/bills/{bill.id}/payments?lang=en"

    short = _post(client, url, pay_url, {"method": "card", "amount": "78000"})
    html = short.get_data(as_text=True)
    assert short.status_code == 422
    assert _testid(html, "form-problem") == "The amount must be what the patient owes: 78,120 VND."
    assert _testid(html, "error-amount") == "expected 78,120"
    assert 'value="card" checked' in html  # the cashier's choice is kept
    assert re.search(r'name="amount" value="78,120" readonly', html)

    no_method = _post(client, url, pay_url, {"amount": "78120"})
    assert no_method.status_code == 422
    assert _testid(no_method.get_data(as_text=True), "error-method") == (
        "Choose how the patient pays."
    )
    garbled = _post(client, url, pay_url, {"method": "cash", "amount": "78k"})
    assert garbled.status_code == 422
    assert _testid(garbled.get_data(as_text=True), "error-amount") == (
        "Enter the amount in whole dong."
    )
    assert _payment_count(db_session) == 0
    db_session.expire_all()
    assert bill.status == BillStatus.OPEN

    assert _post(client, url, pay_url, {"method": "cash", "amount": "78120"}).status_code == 302
    twice = _post(client, url, pay_url, {"method": "cash", "amount": "78120"})
    assert twice.status_code == 409
    assert _testid(twice.get_data(as_text=True), "form-problem") == "This bill is closed: Paid."
    assert _payment_count(db_session) == 1


def test_a_refund_needs_a_reason_and_has_its_own_receipt(client, db_session, hospital):
    visit = _owing(db_session, hospital)
    log_in(client, hospital.cashier.username)
    url = f"/cashier/visits/{visit.id}"
    client.get(url)
    bill = db_session.scalars(select(Bill).where(Bill.visit_id == visit.id)).one()
    _post(client, url, f"{url}/bills/{bill.id}/payments", {"method": "cash", "amount": "78120"})
    payment = db_session.scalars(select(PaymentRow)).one()
    refund_url = f"{url}/payments/{payment.id}/refund?lang=en"

    blank = _post(client, url, refund_url, {"reason": "  "})
    html = blank.get_data(as_text=True)
    assert blank.status_code == 422
    assert _testid(html, "form-problem") == "A refund needs a reason."
    assert _testid(html, "error-reason") == "required"
    assert _payment_count(db_session) == 1

    done = _post(client, url, refund_url, {"reason": "Chụp X-quang không thực hiện"})
    assert done.status_code == 302
    refund = db_session.scalars(select(PaymentRow).where(PaymentRow.id != payment.id)).one()
    assert done.headers["Location"] == f"/cashier/payments/{refund.id}/receipt"
    html = client.get(done.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert _testid(html, "receipt-title") == "Refund receipt"
    assert _testid(html, "receipt-number") == f"{YEAR}-000002"
    assert _testid(html, "receipt-refund-of") == f"Refund of receipt no. {YEAR}-000001"
    assert _testid(html, "receipt-reason") == "Chụp X-quang không thực hiện"
    assert _testid(html, "receipt-amount") == "78,120 ₫"
    page = client.get(url + "?lang=en").get_data(as_text=True)
    assert 'data-testid="bill-status">Refunded<' in page
    assert 'data-testid="refund-form"' not in page  # nothing left to refund
    again = _post(client, url, refund_url, {"reason": "again"})
    assert again.status_code == 409
    assert _payment_count(db_session) == 2


def test_labels_in_vietnamese_by_default_and_english_on_request(client, db_session, hospital):
    visit = _owing(db_session, hospital)
    log_in(client, hospital.cashier.username)

    vi = client.get(f"/cashier/visits/{visit.id}").get_data(as_text=True)
    assert '<html lang="vi">' in vi
    assert 'data-testid="nav-cashier">Thu ngân<' in vi
    assert "Tổng chi phí" in vi and "Quỹ BHYT trả" in vi and "Người bệnh cùng chi trả" in vi
    assert "Thu tiền" in vi and "Tiền mặt" in vi and "Chuyển khoản" in vi
    assert _testid(vi, "total") == "390.600"
    assert _testid(vi, "balance") == "78.120"
    assert (
        _testid(vi, "coverage-label")
        == "Có giấy chuyển cơ sở khám bệnh, chữa bệnh: hưởng đủ mức quyền lợi"
    )
    assert re.search(r'name="amount" value="78.120" readonly', vi)
    listing = client.get("/cashier/").get_data(as_text=True)
    assert "Lượt khám còn nợ tiền" in listing and "Mã lượt khám" in listing

    en = client.get(f"/cashier/visits/{visit.id}?lang=en").get_data(as_text=True)
    assert 'data-testid="nav-cashier">Cashier<' in en
    assert "Total" in en and "Fund pays" in en and "Patient co-pay" in en
    assert "Take payment" in en and "Cash" in en and "Bank transfer" in en
    assert "Tổng chi phí" not in en


def test_the_navigation_and_home_lead_cashiers_to_their_screen(client, db_session, hospital):
    log_in(client, hospital.cashier.username)
    home = client.get("/?lang=en").get_data(as_text=True)
    assert 'href="/cashier/" data-testid="nav-cashier"' in home
    assert 'class="button" href="/cashier/" data-testid="panel-link">Open the cashier<' in home


@pytest.mark.parametrize("role", [Role.DOCTOR, Role.PHARMACIST])
def test_other_roles_get_403(client, db_session, hospital, role):
    visit = _owing(db_session, hospital)
    bill_id = bills.build(db_session, visit).open_bill.bill.id
    user = UserFactory(roles=(role,), facility=hospital.facility)
    log_in(client, user.username)
    assert 'data-testid="nav-cashier"' not in client.get("/").get_data(as_text=True)
    assert client.get("/cashier/").status_code == 403
    assert client.get("/cashier/rows").status_code == 403
    assert client.get(f"/cashier/visits/{visit.id}").status_code == 403
    token = csrf_token(client.get("/").get_data(as_text=True))
    paying = client.post(
        f"/cashier/visits/{visit.id}/bills/{bill_id}/payments",
        data={"csrf_token": token, "method": "cash", "amount": "78120"},
    )
    assert paying.status_code == 403
    assert _payment_count(db_session) == 0


def test_an_admin_may_use_the_cashier_screens(client, db_session, hospital):
    visit = _owing(db_session, hospital)
    admin = UserFactory(roles=(Role.ADMIN,), facility=hospital.facility)
    log_in(client, admin.username)
    assert 'data-testid="nav-cashier"' in client.get("/").get_data(as_text=True)
    assert client.get(f"/cashier/visits/{visit.id}").status_code == 200
    # Looking a code up changes nothing: no password again, however old the last check.
    with client.session_transaction() as session:
        session["reauth_at"] = int(time.time()) - 24 * 3600
    found = _post(client, "/cashier/", "/cashier/", {"code": visit.visit_code})
    assert found.status_code == 303
    assert found.headers["Location"] == f"/cashier/visits/{visit.id}"


def test_another_facilitys_visit_and_receipt_are_not_found(client, db_session, hospital):
    paid = _paid(db_session, hospital)
    payment = db_session.scalars(select(PaymentRow)).one()
    elsewhere = UserFactory(roles=(Role.CASHIER,))
    log_in(client, elsewhere.username)
    assert client.get(f"/cashier/visits/{paid.id}").status_code == 404
    assert client.get(f"/cashier/payments/{payment.id}/receipt").status_code == 404
    html = _post(client, "/cashier/", "/cashier/?lang=en", {"code": paid.visit_code}).get_data(
        as_text=True
    )
    assert _testid(html, "code-error") == "No visit has this code at your facility."
