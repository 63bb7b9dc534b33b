"""The administrator watches the HL7 v2 interface in chromium: finds a message by the
patient's CCCD (sent in a POST body, never in a URL), finds a dead letter by its status,
reads it (Vietnamese intact, parsed view), sends it again, and adds a peer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import select

from his.db import Database
from his.models import Facility
from his.models.hl7 import Hl7Inbound, Hl7Outbound, Hl7Peer, InboundStatus, OutboundStatus
from his.services.demo import load_demo
from tests.e2e.conftest import LiveServer, serving
from tests.e2e.test_login_browser import CSP_RECORDER, log_in

pytestmark = pytest.mark.e2e

NAME = "Đặng^Thị Ngọc Ánh"
CCCD = "001219012345"
TEXT = (
    "MSH|^~\\&|HIS|91001|LIS|LAB|20250301083015+0700||ADT^A28^ADT_A05|E2E-OUT-1|P|2.5.1"
    "|||AL|NE|VNM|UNICODE UTF-8\r"
    "EVN|A28|20250301083015+0700\r"
    f"PID|1||BN00000001^^^91001^MR||{NAME}||19900101|F\r"
    "PV1|1|N\r"
)


@dataclass(frozen=True)
class Interface:
    server: LiveServer
    dead_id: int
    sent_id: int
    unapplied_id: int


def _seed(url: str) -> tuple[int, int, int]:
    """The demo province plus one peer (the lab) with two messages received (one applied, one
    refused that names its patient only by CCCD in PID-3) and two sent to it: one
    acknowledged, one parked as a dead letter."""
    db = Database.from_url(url)
    try:
        with db.session() as session:
            load_demo(session)
            session.commit()  # before the peer exists: its patients are no news to the lab
        with db.session() as session:
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            lab = Hl7Peer(
                name="lab-e2e",
                facility_id=hospital.id,
                sending_application="LIS",
                sending_facility="LAB",
                host="127.0.0.1",
                port=9,  # nothing listens: the dispatcher, were it running, would fail
                events="ADT",
            )
            session.add(lab)
            session.flush()
            session.add(
                Hl7Inbound(
                    peer_id=lab.id,
                    sending_application="LIS",
                    sending_facility="LAB",
                    control_id="E2E-IN-1",
                    message_type="ORU^R01",
                    version="2.5.1",
                    raw=TEXT.encode(),
                    status=InboundStatus.APPLIED,
                    ack_code="AA",
                    ack_latency_ms=8,
                )
            )
            unapplied = Hl7Inbound(
                peer_id=lab.id,
                sending_application="LIS",
                sending_facility="LAB",
                control_id="E2E-IN-2",
                message_type="ORU^R01",
                version="2.5.1",
                raw=TEXT.replace("BN00000001^^^91001^MR", f"{CCCD}^^^VNM^NNVNM").encode(),
                patient_key=f"NNVNM:{CCCD}",
                status=InboundStatus.ERROR,
                ack_code="AE",
                ack_latency_ms=8,
                error_code=204,
                error="Unknown patient",
            )
            session.add(unapplied)
            common = dict(peer_id=lab.id, event="A28", message_type="ADT^A28^ADT_A05")
            sent = Hl7Outbound(
                **common,
                control_id="E2E-OUT-0",
                patient_key="p0",
                text=TEXT.replace("E2E-OUT-1", "E2E-OUT-0"),
                status=OutboundStatus.SENT,
                ack_code="AA",
                ack_latency_ms=15,
            )
            dead = Hl7Outbound(
                **common,
                control_id="E2E-OUT-1",
                patient_key="p1",
                text=TEXT,
                status=OutboundStatus.DEAD,
                attempts=10,
                last_error="Connection refused",
            )
            session.add_all([sent, dead])
            session.commit()
            return dead.id, sent.id, unapplied.id
    finally:
        db.engine.dispose()


@pytest.fixture(scope="module")
def interface(backend: str, fresh_database) -> Iterator[Interface]:
    databases = fresh_database(backend)
    url = next(databases)
    try:
        dead_id, sent_id, unapplied_id = _seed(url)
        with serving(url, backend) as live:
            yield Interface(live, dead_id, sent_id, unapplied_id)
    finally:
        databases.close()


def test_admin_resends_a_dead_letter_and_adds_a_peer(ui_page: Page, interface: Interface):
    page = ui_page
    server = interface.server
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.add_init_script(CSP_RECORDER)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    log_in(page, server, "admin")
    page.goto(server.at("/?lang=en"))
    page.get_by_test_id("hl7-link").click()
    expect(page.get_by_test_id("message")).to_have_count(2)  # received: the lab's results

    # 0. Filtered by the patient's CCCD: the refused message naming them in PID-3 only. The
    # term goes in the form's POST body: no URL the browser asked for holds it.
    page.locator("#patient").fill(CCCD)
    page.get_by_test_id("filter-submit").click()
    rows = page.get_by_test_id("message")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", str(interface.unapplied_id))
    expect(page.locator("#patient")).to_have_value(CCCD)
    assert [u for u in urls if CCCD in u] == [] and len(urls) > 3
    page.get_by_test_id("tab-out").click()
    expect(page.get_by_test_id("message")).to_have_count(2)

    # 1. Only the dead letter is left once the list is filtered by status.
    page.get_by_test_id("status-filter").select_option("dead")
    page.get_by_test_id("filter-submit").click()
    rows = page.get_by_test_id("message")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", str(interface.dead_id))
    expect(rows.first).to_contain_text("Connection refused")

    # 2. Its page: the text as sent, Vietnamese intact, one segment per line; the parsed view.
    rows.first.get_by_test_id("open").click()
    expect(page.get_by_test_id("status")).to_have_text("Dead letter")
    raw = page.get_by_test_id("raw")
    expect(raw).to_contain_text(NAME)
    lines = raw.inner_text().split("\n")
    assert [line[:3] for line in lines if line] == ["MSH", "EVN", "PID", "PV1"]
    pid5 = page.locator("[data-field='PID-5'] li")
    expect(pid5).to_have_text(["Đặng", "Thị Ngọc Ánh"])
    expect(page.get_by_test_id("not-utf8")).to_have_count(0)

    # 3. Sent again: back in the queue.
    page.get_by_test_id("resend").click()
    expect(page.get_by_test_id("done")).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_text("Pending")
    expect(page.get_by_test_id("resend")).to_have_count(0)
    expect(page.get_by_test_id("attempts")).to_contain_text("0")

    # 4. The peers page counts it, and a new peer is added through the form.
    page.get_by_test_id("tab-peers").click()
    lab = page.locator("[data-testid=peer][data-peer='lab-e2e']")
    expect(lab.get_by_test_id("in")).to_have_text("2")
    expect(lab.get_by_test_id("out")).to_have_text("2")
    expect(lab.get_by_test_id("pending")).to_have_text("1")
    expect(lab.get_by_test_id("dead")).to_have_text("0")
    expect(lab.get_by_test_id("latency-in")).to_have_text("8 / 8 / 8")
    page.locator("#name").fill("ris-pacs")
    page.locator("#sending_application").fill("RIS")
    page.locator("#sending_facility").fill("Khoa Chẩn đoán hình ảnh")
    page.locator("#host").fill("10.20.30.40")
    page.locator("#port").fill("2575")
    page.get_by_test_id("event-ADT").check()
    page.locator("#version").select_option("2.3")
    page.get_by_test_id("add-submit").click()
    expect(page.get_by_test_id("added")).to_contain_text("ris-pacs")
    added = page.locator("[data-testid=peer][data-peer='ris-pacs']")
    expect(added).to_contain_text("10.20.30.40:2575")
    expect(added).to_contain_text("Khoa Chẩn đoán hình ảnh")
    expect(added.get_by_test_id("in")).to_have_text("0")
    expect(added.get_by_test_id("out")).to_have_text("0")

    assert page.evaluate("window.__cspViolations") == []
    assert problems == []
    assert [u for u in urls if CCCD in u] == []
