"""The cashier's counter in chromium, on a live server: a referred BHYT patient's visit with
an examination, a glucose test and five chest X-rays waits with money owed; the cashier
opens it from the list, sees the totals and the VietQR code, takes the co-payment in cash,
lands on the receipt, and then refunds it with a reason.

Figures (hand-worked, VND): the demo provincial hospital is a basic-level former provincial
hospital; 42,100 + 21,500 + 5 x 65,400 = 390,600, above the small-bill threshold; referred,
level-4 card: the fund pays 80 % (312,480), the patient 78,120."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import select

from billing.models import FacilityBankAccount
from his.db import Database
from his.localtime import local_today
from his.models import Facility, Payment, User
from his.services import encounters as encounter_service
from his.services.access import Principal
from his.services.demo import load_demo
from his.services.visits import Referral, VisitRequest, open_visit
from tests import factories
from tests.e2e.conftest import LiveServer, serving
from tests.e2e.test_login_browser import CSP_RECORDER, log_in, path_of

pytestmark = pytest.mark.e2e

CASHIER = "cashier"
CASHIER_NAME = "Võ Thị Kim"  # the demo cashier
PATIENT_NAME = "Lâm Thị Ngọc Hân"
YEAR = local_today().year
# Counts the print button's calls instead of opening chromium's print dialog.
REFUSED = "the server responded with a status of 422 (UNPROCESSABLE ENTITY)"
PRINT_RECORDER = "window.__printed = 0; window.print = () => { window.__printed += 1; };"


@dataclass(frozen=True)
class Till:
    server: LiveServer
    visit_code: str


def _a_visit_with_money_owed(url: str) -> str:
    """The demo province plus a bank account for the hospital's VietQR codes and one
    examined visit with orders; returns its visit code."""
    today = local_today()
    db = Database.from_url(url)
    try:
        with db.session() as session:
            load_demo(session)
            factories.bind(session)
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            session.add(
                FacilityBankAccount(
                    facility_id=hospital.id,
                    bank_bin="970415",
                    account_number="113366668888",
                    account_name="BV Da khoa tinh An Giang",
                )
            )
            patient = factories.PatientFactory(full_name=PATIENT_NAME)
            factories.CoverageFactory(
                patient=patient,
                benefit_level=4,
                valid_from=dt.date(today.year, 1, 1),
                valid_to=dt.date(today.year, 12, 31),
            )
            reception = session.scalar(select(User).where(User.username == "reception"))
            doctor = Principal.for_user(
                session.scalar(select(User).where(User.username == "doctor"))
            )
            visit = open_visit(
                session,
                Principal.for_user(reception),
                VisitRequest(
                    patient_id=patient.id,
                    room_id=hospital.departments[0].rooms[0].id,
                    payment=Payment.BHYT,
                    referral=Referral(from_facility_code="91011", letter_number="CT-7", date=today),
                ),
            )
            encounter = encounter_service.start_examination(session, doctor, visit.id)
            encounter_service.add_order(session, doctor, encounter.id, "23.0075.1494")  # glucose
            encounter_service.add_order(session, doctor, encounter.id, "18.0067.0028", 5)  # X-ray
            return visit.visit_code
    finally:
        factories.bind(None)
        db.engine.dispose()


@pytest.fixture(scope="module")
def till(backend: str, fresh_database) -> Iterator[Till]:
    databases = fresh_database(backend)
    url = next(databases)
    try:
        code = _a_visit_with_money_owed(url)
        with serving(url, backend) as live:
            yield Till(live, code)
    finally:
        databases.close()


def test_cashier_takes_a_cash_payment_and_refunds_it(ui_page: Page, till: Till):
    page = ui_page
    server = till.server
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.add_init_script(CSP_RECORDER)
    page.add_init_script(PRINT_RECORDER)

    log_in(page, server, CASHIER)
    page.goto(server.at("/?lang=en"))

    # 1. The navigation leads to the list, where the visit waits with what is owed.
    page.get_by_test_id("nav-cashier").click()
    assert path_of(page) == "/cashier/"
    row = page.locator(f"[data-testid=unpaid-visit][data-code='{till.visit_code}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text(PATIENT_NAME)
    expect(row.get_by_test_id("balance")).to_have_text("78,120")
    expect(row.get_by_test_id("open-visit")).to_have_attribute(
        "href", re.compile(r"^/cashier/visits/\d+$")
    )

    # 2. The visit code typed in the box opens the bill. It is posted (issue 9): no
    # address the page asks for holds it, so history and access logs do not either.
    addresses: list[str] = []
    page.on("request", lambda request: addresses.append(request.url))
    page.get_by_test_id("code-search").fill(till.visit_code.lower())
    page.get_by_test_id("code-submit").click()
    expect(page.get_by_test_id("visit-code")).to_have_text(till.visit_code)
    assert re.fullmatch(r"/cashier/visits/\d+", path_of(page))
    assert any(urlsplit(a).path == "/cashier/" for a in addresses)  # the lookup was recorded
    assert not [a for a in addresses if till.visit_code.lower() in a.lower()]

    # The bill: the totals, the rule and the VietQR code asking for the balance.
    expect(page.get_by_test_id("line")).to_have_count(3)
    expect(page.get_by_test_id("total")).to_have_text("390,600")
    expect(page.get_by_test_id("insurance-pays")).to_have_text("312,480")
    expect(page.get_by_test_id("patient-copay")).to_have_text("78,120")
    expect(page.get_by_test_id("patient-pays")).to_have_text("78,120")
    expect(page.get_by_test_id("coverage-rate")).to_have_text("80%")
    qr = page.get_by_test_id("vietqr-image")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(page.get_by_test_id("vietqr-amount")).to_have_text("78,120 ₫")
    expect(page.get_by_test_id("vietqr-reference")).to_have_text(re.compile(r"^HIS91001B\d+[A-Z]$"))
    expect(page.get_by_test_id("method-cash")).to_be_checked()
    expect(page.get_by_test_id("amount")).to_have_value("78,120")
    expect(page.get_by_test_id("amount")).not_to_be_editable()

    # 3. Cash in: the receipt, numbered, with the fund's share and what the patient paid.
    page.get_by_test_id("pay-submit").click()
    expect(page.get_by_test_id("receipt-title")).to_have_text("Payment receipt")
    assert re.fullmatch(r"/cashier/payments/\d+/receipt", path_of(page))
    expect(page.get_by_test_id("receipt-number")).to_have_text(f"{YEAR}-000001")
    expect(page.get_by_test_id("receipt-patient")).to_contain_text(PATIENT_NAME)
    expect(page.get_by_test_id("receipt-visit-code")).to_have_text(till.visit_code)
    expect(page.get_by_test_id("receipt-line")).to_have_count(3)
    expect(page.get_by_test_id("receipt-fund")).to_have_text("312,480")
    expect(page.get_by_test_id("receipt-amount")).to_have_text("78,120 ₫")
    expect(page.get_by_test_id("receipt-method")).to_have_text("Cash")
    expect(page.get_by_test_id("receipt-cashier")).to_have_text(CASHIER_NAME)
    page.get_by_test_id("print").click()
    assert page.evaluate("window.__printed") == 1

    # 4. Back on the bill nothing is owed; the payment is refunded with a reason.
    page.get_by_test_id("receipt-back").click()
    expect(page.get_by_test_id("settled")).to_be_visible()
    expect(page.get_by_test_id("bill-status")).to_have_text("Paid")
    payment = page.locator(f"[data-testid=payment][data-receipt='{YEAR}-000001']")
    payment.get_by_test_id("refund-submit").click()
    expect(payment.get_by_test_id("error-reason")).to_have_text("required")
    expect(page.get_by_test_id("form-problem")).to_have_text("A refund needs a reason.")
    page.get_by_test_id("refund-reason").fill("Chụp X-quang không thực hiện")
    page.get_by_test_id("refund-submit").click()
    expect(page.get_by_test_id("receipt-title")).to_have_text("Refund receipt")
    expect(page.get_by_test_id("receipt-number")).to_have_text(f"{YEAR}-000002")
    expect(page.get_by_test_id("receipt-refund-of")).to_have_text(
        f"Refund of receipt no. {YEAR}-000001"
    )
    expect(page.get_by_test_id("receipt-reason")).to_have_text("Chụp X-quang không thực hiện")

    # 5. The bill shows the refund, and the visit is off the list (its charges cancelled).
    page.get_by_test_id("receipt-back").click()
    expect(page.get_by_test_id("bill-status")).to_have_text("Refunded")
    expect(page.locator(f"[data-testid=payment][data-receipt='{YEAR}-000002']")).to_be_visible()
    page.get_by_test_id("back-to-list").click()
    expect(
        page.locator(f"[data-testid=unpaid-visit][data-code='{till.visit_code}']")
    ).to_have_count(0)

    # Chromium logs the one error page on purpose, the refund refused for want of a reason.
    assert problems == [f"console error: Failed to load resource: {REFUSED}"]
    assert page.evaluate("window.__cspViolations") == []
