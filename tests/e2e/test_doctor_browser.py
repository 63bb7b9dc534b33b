"""The doctor's examination in chromium, from the room's queue to a signed, printed
prescription: take the waiting patient, record vital signs, code the main diagnosis by
typing it without accents, build a prescription, see a rule broken, fix it, sign, print."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect
from sqlalchemy import select

from his.db import Database
from his.localtime import local_today
from his.models import Facility, Icd10Code, Icd10Version, Room, User
from his.services import catalogs
from his.services import visits as visit_service
from his.services.access import Principal
from his.services.demo import load_demo
from tests import factories
from tests.e2e.conftest import LiveServer, serving
from tests.e2e.test_login_browser import CSP_RECORDER, log_in, path_of
from tests.prescribing_data import add_drugs

pytestmark = pytest.mark.e2e

DOCTOR = "doctor"
ROOM_CODE = "P104"
DRUG_PREFIX = "E2E-"
CODE = re.compile(r"^91001[0-9a-z]{7}-c$")
# A list of our own, started yesterday, so it is the one in force whatever else is loaded.
ICD10 = {
    "J20.9": ("Viêm phế quản cấp, không đặc hiệu", "Acute bronchitis, unspecified"),
    "J06.9": ("Nhiễm trùng đường hô hấp trên cấp, không đặc hiệu", "Acute URI, unspecified"),
    "I10": ("Tăng huyết áp vô căn (nguyên phát)", "Essential (primary) hypertension"),
}


@dataclass(frozen=True)
class Clinic:
    server: LiveServer
    room_id: int
    visit_id: int
    patient_name: str


def _open_the_clinic(url: str) -> tuple[int, int, str]:
    """The demo province plus, at the provincial hospital: our drugs and ICD-10 list, and a
    new patient waiting in the surgery room."""
    db = Database.from_url(url)
    try:
        with db.session() as session:
            load_demo(session)
            factories.bind(session)
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            add_drugs(session, hospital, prefix=DRUG_PREFIX)
            version = Icd10Version(
                name=f"e2e-{uuid.uuid4().hex[:8]}",
                source="e2e test",
                valid_from=local_today() - dt.timedelta(days=1),
                valid_to=None,
            )
            session.add(version)
            session.flush()
            for code, (title_vi, title_en) in ICD10.items():
                session.add(
                    Icd10Code(
                        version_id=version.id,
                        code=code,
                        title_vi=title_vi,
                        title_en=title_en,
                        search_key=catalogs.search_text(code, title_vi, title_en),
                    )
                )
            room = session.scalar(
                select(Room)
                .join(Room.department)
                .where(Room.code == ROOM_CODE, Room.department.has(facility_id=hospital.id))
            )
            patient = factories.PatientFactory(
                full_name="Phạm Quốc Đạt", family_name="Phạm", middle_name="Quốc", given_name="Đạt"
            )
            reception = session.scalar(select(User).where(User.username == "reception"))
            visit = visit_service.open_visit(
                session,
                Principal.for_user(reception),
                visit_service.VisitRequest(patient_id=patient.id, room_id=room.id),
            )
            return room.id, visit.id, patient.full_name
    finally:
        factories.bind(None)
        db.engine.dispose()


@pytest.fixture(scope="module")
def clinic(backend: str, fresh_database) -> Iterator[Clinic]:
    databases = fresh_database(backend)
    url = next(databases)
    try:
        room_id, visit_id, patient_name = _open_the_clinic(url)
        with serving(url, backend) as live:
            yield Clinic(live, room_id, visit_id, patient_name)
    finally:
        databases.close()


def test_doctor_examines_a_waiting_patient_to_a_signed_prescription(ui_page: Page, clinic):
    page = ui_page
    server = clinic.server
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.add_init_script(CSP_RECORDER)

    log_in(page, server, DOCTOR)
    page.goto(server.at("/doctor/?lang=en"))

    # 1. The room's worklist: the patient waits; the doctor starts the examination.
    page.locator(f"[data-testid=room-link][data-room-id='{clinic.room_id}']").click()
    waiting = page.locator(f"[data-testid=waiting][data-visit-id='{clinic.visit_id}']")
    expect(waiting).to_contain_text(clinic.patient_name)
    waiting.get_by_test_id("start-examination").click()
    expect(page.get_by_test_id("patient-summary")).to_contain_text(clinic.patient_name)
    assert path_of(page).startswith("/doctor/encounters/")
    encounter_path = path_of(page)

    # 2. Vital signs.
    page.locator("#vital-pulse").fill("88")
    page.locator("#vital-temperature").fill("38.2")
    page.locator("#vital-weight").fill("62")
    page.locator("#vital-height").fill("165")
    page.get_by_test_id("save-vitals").click()
    expect(page.get_by_test_id("vitals-row")).to_have_count(1)

    # 3. The main diagnosis, typed without accents, picked from the suggestions.
    page.get_by_test_id("icd10-search").press_sequentially("viem phe quan", delay=20)
    option = page.locator("[data-testid=icd10-option][data-code='J20.9']")
    expect(option).to_be_visible()
    option.click()
    diagnosis = page.locator("[data-testid=diagnosis][data-code='J20.9']")
    expect(diagnosis).to_contain_text("Viêm phế quản cấp")
    expect(diagnosis.get_by_test_id("main-diagnosis")).to_be_visible()

    # 4. The prescription builder, reached from the encounter.
    page.get_by_test_id("prescribe").click()
    assert path_of(page) == "/doctor/prescriptions/new"
    expect(page.get_by_test_id("patient-summary")).to_contain_text("J20.9")
    expect(page.get_by_test_id("weight_kg")).to_have_value("62")  # from the vital signs

    page.get_by_test_id("drug-search-0").press_sequentially("paracetamol", delay=20)
    pick = page.locator(
        f"[data-testid=drug-options-0] [data-testid=drug-option][data-code='{DRUG_PREFIX}PARA500']"
    )
    expect(pick).to_be_visible()
    pick.click()
    expect(page.get_by_test_id("drug-search-0")).to_have_value("Paracetamol 500 mg (Panadol)")
    expect(page.get_by_test_id("route-0")).to_have_value("uống")
    page.get_by_test_id("dose-0").fill("1")
    page.get_by_test_id("times_per_day-0").fill("3")
    page.get_by_test_id("days-0").fill("40")
    page.get_by_test_id("instructions-0").fill("Sau ăn, khi sốt trên 38,5 độ")

    # 5. Too many days: the rule is shown before signing, with the computed quantity.
    violation = page.locator("[data-testid=violation][data-rule='days-over-limit']")
    expect(violation).to_be_visible()
    expect(violation).to_contain_text("30")
    expect(page.get_by_test_id("computed-0")).to_have_text("120 viên")

    # 6. Fixed: the check clears and the quantity follows.
    page.get_by_test_id("days-0").fill("5")
    expect(page.get_by_test_id("rx-ok")).to_be_visible()
    expect(violation).to_have_count(0)
    expect(page.get_by_test_id("computed-0")).to_have_text("15 viên")

    # 7. Signed: the national code.
    page.get_by_test_id("rx-sign").click()
    expect(page.get_by_test_id("rx-signed")).to_be_visible()
    code = page.get_by_test_id("rx-code").inner_text()
    assert CODE.match(code), code
    expect(page.get_by_test_id("rx-status")).to_have_text("Signed")

    # 8. The printable A5 prescription: the code as text, QR code and barcode.
    page.get_by_test_id("rx-print").click()
    expect(page.get_by_test_id("print-code")).to_have_text(code)
    expect(page.get_by_test_id("print-qr")).to_be_visible()
    expect(page.get_by_test_id("print-barcode")).to_be_visible()
    expect(page.get_by_test_id("print-patient")).to_contain_text(clinic.patient_name.upper())
    expect(page.get_by_test_id("print-diagnosis")).to_contain_text("J20.9")
    expect(page.get_by_test_id("print-quantity")).to_have_text("15 viên")

    # Back at the encounter, it is still open for the doctor to finish.
    page.goto(server.at(encounter_path))
    expect(page.get_by_test_id("encounter-status")).to_be_visible()

    assert page.evaluate("window.__cspViolations") == []
    assert problems == []
