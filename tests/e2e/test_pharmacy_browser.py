"""The pharmacist's day in chromium: a signed prescription waits, its lots are chosen first
expiry first, it is dispensed, and the stock list shows what is left, on a live server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import select

from his.db import Database
from his.localtime import local_today
from his.models import Facility, Role, User
from his.services.demo import load_demo
from tests import factories
from tests.e2e.conftest import LiveServer, serving
from tests.e2e.test_login_browser import CSP_RECORDER, log_in, path_of
from tests.pharmacy_data import make_drug, make_lot, make_prescription

pytestmark = pytest.mark.e2e

PHARMACIST = "pharmacist"
DRUG_CODE = "E2E-AMOX500"


@dataclass(frozen=True)
class Counter:
    server: LiveServer
    code: str  # the waiting prescription's national code
    patient_name: str
    lots: dict[str, dt.date]  # lot number → expiry


def _stock_the_counter(url: str) -> tuple[str, str, dict[str, dt.date]]:
    """The demo province plus, at the provincial hospital, one drug in three lots (one
    expired) and a signed prescription of 6 units waiting for the pharmacist."""
    today = local_today()
    lots = {
        "EARLY-25D": today + dt.timedelta(days=25),
        "MID-60D": today + dt.timedelta(days=60),
        "LATE-2Y": today + dt.timedelta(days=700),
        "GONE-3D": today - dt.timedelta(days=3),
    }
    db = Database.from_url(url)
    try:
        with db.session() as session:
            load_demo(session)
            factories.bind(session)
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            doctor = session.scalar(select(User).where(User.username == "doctor"))
            assert Role.DOCTOR in doctor.roles
            drug = make_drug(session, hospital, DRUG_CODE, "Amoxicillin", strength="500 mg")
            amounts = {"EARLY-25D": 4, "MID-60D": 10, "LATE-2Y": 100, "GONE-3D": 50}
            for number, expiry in lots.items():
                make_lot(session, hospital, drug, number, expiry, amounts[number])
            rx = make_prescription(session, hospital, [(drug, 6)], doctor=doctor)
            return rx.code, rx.patient.full_name, lots
    finally:
        factories.bind(None)
        db.engine.dispose()


@pytest.fixture(scope="module")
def counter(backend: str, fresh_database) -> Iterator[Counter]:
    databases = fresh_database(backend)
    url = next(databases)
    try:
        code, patient_name, lots = _stock_the_counter(url)
        with serving(url, backend) as live:
            yield Counter(live, code, patient_name, lots)
    finally:
        databases.close()


def test_pharmacist_dispenses_a_waiting_prescription_first_expiry_first(
    ui_page: Page, counter: Counter
):
    page = ui_page
    server = counter.server
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.add_init_script(CSP_RECORDER)

    log_in(page, server, PHARMACIST)
    page.goto(server.at("/pharmacy/?lang=en"))

    # 1. The signed prescription waits, with its patient and doctor.
    row = page.locator(f"[data-testid=waiting][data-code='{counter.code}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text(counter.patient_name)
    expect(row).to_contain_text("Trần Văn Minh")  # the demo doctor
    expect(row.get_by_test_id("rx-type")).to_have_text("Ordinary (C)")

    # 2. Its page shows the lots a dispense takes: first expiry first, never the expired one.
    row.get_by_test_id("open-prescription").click()
    expect(page.get_by_test_id("rx-code")).to_have_text(counter.code)
    plan = page.get_by_test_id("plan-lot")
    expect(plan).to_have_count(2)
    early = counter.lots["EARLY-25D"].strftime("%d/%m/%Y")
    mid = counter.lots["MID-60D"].strftime("%d/%m/%Y")
    expect(plan.nth(0)).to_have_text(f"lot EARLY-25D · exp. {early} · 4")
    expect(plan.nth(1)).to_have_text(f"lot MID-60D · exp. {mid} · 2")
    expect(page.get_by_test_id("owed")).to_have_text("6")
    expect(page.get_by_test_id("qty")).to_have_value("6")

    # 3. Dispense.
    page.get_by_test_id("dispense-submit").click()
    expect(page.get_by_test_id("done")).to_be_visible()
    expect(page.get_by_test_id("fully-dispensed")).to_be_visible()
    expect(page.get_by_test_id("owed")).to_have_text("0")
    history = page.get_by_test_id("history-line")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text("EARLY-25D")
    expect(history.nth(1)).to_contain_text("MID-60D")

    # 4. It has left the waiting list.
    page.get_by_test_id("nav-queue").click()
    expect(page.locator(f"[data-testid=waiting][data-code='{counter.code}']")).to_have_count(0)

    # 5. The stock list shows what is left: the early lot used up, 8 left of the next one,
    #    which expires within 90 days and is highlighted; the expired lot is kept apart.
    page.get_by_test_id("nav-stock").click()
    assert path_of(page) == "/pharmacy/stock"
    lots = page.locator(f"[data-testid=lot][data-drug='{DRUG_CODE}']")
    expect(lots).to_have_count(2)
    expect(page.locator(f"[data-drug='{DRUG_CODE}'][data-lot='EARLY-25D']")).to_have_count(0)
    mid_row = lots.nth(0)
    expect(mid_row).to_have_attribute("data-lot", "MID-60D")
    expect(mid_row).to_have_class("expiring")
    expect(mid_row.get_by_test_id("lot-quantity")).to_have_text("8")
    expect(mid_row.get_by_test_id("expiring")).to_be_visible()
    late_row = lots.nth(1)
    expect(late_row.get_by_test_id("lot-quantity")).to_have_text("100")
    expect(late_row).not_to_have_class("expiring")
    expect(mid_row.get_by_test_id("available")).to_have_text("108")
    expired = page.locator(f"[data-testid=expired-lot][data-drug='{DRUG_CODE}']")
    expect(expired).to_have_attribute("data-lot", "GONE-3D")

    assert problems == []
    assert page.evaluate("window.__cspViolations") == []
