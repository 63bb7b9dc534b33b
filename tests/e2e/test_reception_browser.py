"""The receptionist's day in chromium: find a patient, register one, open a visit, print
the slip and watch the room's queue board, by mouse and by keyboard, on a live server."""

from __future__ import annotations

import re
import secrets
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
from playwright.sync_api import (
    APIRequestContext,
    Browser,
    ConsoleMessage,
    Frame,
    Page,
    Response,
    expect,
)

from his.localtime import local_today
from his.services.demo import DemoPatient, generate_patients
from his.text import fold_vi
from tests.e2e.conftest import LiveServer
from tests.e2e.test_login_browser import CSP_RECORDER, USERNAME, log_in, path_of

pytestmark = pytest.mark.e2e

FACILITY_CODE = "91001"
ROOM = "Phòng khám Nội 2"
DEPARTMENT = "Khoa Khám bệnh"
ROOM_OPTION = f"{DEPARTMENT} · {ROOM}"  # how the visit form lists the room
BOARD_PICKUP_MS = 8_000  # the board refreshes every 5 s
EMPTY_FORM_ERRORS = {  # the three required fields of the register form, left empty
    "full_name": "Chưa nhập họ tên.",
    "sex": "Trường này là bắt buộc.",
    "birth_date": "Chưa nhập ngày.",
}
FEE_PAYING = "Viện phí (tự chi trả)"


# --- test data ---------------------------------------------------------------------------


@cache
def demo_patients() -> tuple[DemoPatient, ...]:
    """The demo patients the live server loaded: the generator is seeded, and only the
    birth years depend on the day, so today's local date reproduces them."""
    return tuple(generate_patients(local_today()))


def accented_demo_patient() -> DemoPatient:
    """A demo patient with đ and tone marks whose unaccented name is theirs alone."""
    patients = demo_patients()
    folded = Counter(fold_vi(p.full_name) for p in patients)
    for patient in patients:
        name = patient.full_name
        accents = sum(not ch.isascii() for ch in name)
        if "Đ" in name.upper() and accents >= 3 and folded[fold_vi(name)] == 1:
            return patient
    raise AssertionError("no demo patient has an accented name of their own")


@dataclass(frozen=True)
class NewPatient:
    """A man born in 1985 in An Giang, unknown to the database."""

    full_name: str
    birth_date: str  # as typed in the form: dd/mm/yyyy
    iso_birth_date: str
    cccd: str
    phone: str
    address_line: str

    @property
    def wrong_cccd(self) -> str:
        """Digit 4 says a woman (odd); the patient is a man."""
        return self.cccd[:3] + "1" + self.cccd[4:]

    @property
    def board_name(self) -> str:
        """The family name's initial and the given name, as the wall screen shows them."""
        words = self.full_name.split()
        return f"{words[0][0]}. {words[-1]}"


_issued_cccds: set[str] = set()


def new_patient(family: str = "Nguyễn", given: str = "An") -> NewPatient:
    """A name no one else has (a random middle word: names take no digits), so re-runs on
    the same database never meet the duplicate warning, and a CCCD no one else holds."""
    token = "".join(secrets.choice(string.ascii_lowercase) for _ in range(8)).title()
    taken = {p.cccd for p in demo_patients()} | _issued_cccds
    while (cccd := f"089085{secrets.randbelow(10**6):06d}") in taken:
        pass
    _issued_cccds.add(cccd)
    return NewPatient(
        full_name=f"{family} {token} {given}",
        birth_date="15/03/1985",
        iso_birth_date="1985-03-15",
        cccd=cccd,
        phone=f"0912{secrets.randbelow(10**6):06d}",
        address_line="Số 12 đường Trần Hưng Đạo, khóm Đông Thịnh",
    )


# --- the REST API, for what happens at another counter ---------------------------------------


class ReceptionApi:
    """The receptionist's bearer-token API client, in a browser context of its own."""

    def __init__(self, browser: Browser, server: LiveServer) -> None:
        self._context = browser.new_context(base_url=server.url)
        self._request: APIRequestContext = self._context.request
        answer = self._request.post(
            "/api/v1/auth/token", data={"username": USERNAME, "password": server.password}
        )
        assert answer.status == 201, answer.text()
        self._headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def close(self) -> None:
        self._context.close()

    def room_id(self, name: str) -> int:
        answer = self._request.get("/api/v1/rooms", headers=self._headers)
        assert answer.status == 200, answer.text()
        ids = [room["id"] for room in answer.json() if room["name"] == name]
        assert len(ids) == 1, answer.json()
        return ids[0]

    def register(self, patient: NewPatient) -> int:
        answer = self._request.post(
            "/api/v1/patients",
            headers=self._headers,
            data={
                "full_name": patient.full_name,
                "sex": "male",
                "birth_date": patient.iso_birth_date,
                "cccd": patient.cccd,
                "phone": patient.phone,
            },
        )
        assert answer.status == 201, answer.text()
        return answer.json()["id"]

    def open_visit(self, patient_id: int, room_id: int) -> dict:
        answer = self._request.post(
            "/api/v1/visits",
            headers=self._headers,
            data={"patient_id": patient_id, "room_id": room_id, "payment": "fee"},
        )
        assert answer.status == 201, answer.text()
        return answer.json()


@pytest.fixture
def api(chromium_browser: Browser, live_server: LiveServer) -> Iterator[ReceptionApi]:
    client = ReceptionApi(chromium_browser, live_server)
    try:
        yield client
    finally:
        client.close()


# --- steps -----------------------------------------------------------------------------------


def open_reception(page: Page, server: LiveServer) -> None:
    """Logs in and follows the home page's link to the reception screen."""
    log_in(page, server)
    page.get_by_test_id("panel-link").click()
    expect(page.locator("main h1")).to_have_text("Tìm người bệnh")
    assert path_of(page) == "/reception/"


def fill_patient_form(page: Page, patient: NewPatient, cccd: str) -> str:
    """Types the patient in; answers the commune chosen (its option value)."""
    page.locator("#full_name").fill(patient.full_name)
    page.locator("#sex").select_option("male")
    page.locator("#birth_date").fill(patient.birth_date)
    page.locator("#cccd").fill(cccd)
    page.locator("#phone").fill(patient.phone)
    page.locator("#address_line").fill(patient.address_line)
    commune = page.locator("#commune_code option:not([value=''])").first.get_attribute("value")
    assert commune, "the commune list of the facility's province is empty"
    page.locator("#commune_code").select_option(commune)
    page.locator("#allergies").fill("Penicillin")
    return commune


def register_through_form(page: Page, patient: NewPatient) -> str:
    """From the reception screen: registers a valid patient; answers their record number."""
    page.get_by_test_id("new-patient").click()
    expect(page.locator("main h1")).to_have_text("Đăng ký người bệnh mới")
    fill_patient_form(page, patient, patient.cccd)
    page.get_by_test_id("save-patient").click()
    notice = page.get_by_test_id("registered")
    expect(notice).to_have_text(re.compile(r"^Đã đăng ký người bệnh: BN\d{8}$"))
    return notice.inner_text().rsplit(" ", 1)[-1]


def open_visit_through_form(page: Page) -> int:
    """On the open-visit page: a fee-paying visit in ROOM; answers the slip's number."""
    page.get_by_test_id("room").select_option(label=ROOM_OPTION)
    page.get_by_test_id("payment").select_option("fee")
    page.get_by_test_id("open-visit-submit").click()
    number = page.get_by_test_id("slip-queue-number")
    expect(number).to_have_text(re.compile(r"^\s*\d+\s*$"))
    assert re.fullmatch(r"/reception/visits/\d+/slip", path_of(page)), page.url
    return int(number.inner_text())


def press_access_key(page: Page, key: str) -> None:
    """Alt+key as a keyboard sends it on Linux. Chromium fires access keys on the "char"
    event (matching its unmodified text), and Playwright's ``keyboard.press("Alt+N")``
    sends no char event while Alt is held, so the keystroke goes through the DevTools
    protocol instead."""
    cdp = page.context.new_cdp_session(page)
    try:
        code = {"key": key, "code": f"Key{key.upper()}", "windowsVirtualKeyCode": ord(key.upper())}
        alt = {"modifiers": 1}
        cdp.send("Input.dispatchKeyEvent", {"type": "rawKeyDown", **alt, **code})
        cdp.send(
            "Input.dispatchKeyEvent",
            {"type": "char", **alt, "key": key, "text": key, "unmodifiedText": key},
        )
        cdp.send("Input.dispatchKeyEvent", {"type": "keyUp", **alt, **code})
    finally:
        cdp.detach()


def waiting_ticket(page: Page, number: int):
    """The board's waiting ticket with this number (not one whose number ends with it)."""
    return page.get_by_test_id("board-waiting").filter(has_text=re.compile(rf"^\s*{number}\s"))


# --- 1. search -----------------------------------------------------------------------------


def test_receptionist_finds_an_accented_patient_typing_without_accents(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    patient = accented_demo_patient()
    typed = fold_vi(patient.full_name)  # "do hoang thang" for "Đỗ Hoàng Thắng"
    assert typed.isascii() and typed != patient.full_name.lower()

    open_reception(page, live_server)
    rows = page.get_by_test_id("result")
    expect(rows).to_have_count(0)
    page.evaluate("window.__sameDocument = true")  # a page load would drop it

    def is_search_for_typed(response: Response) -> bool:
        return is_search_for(response, typed)

    with page.expect_response(is_search_for_typed) as searched:
        page.get_by_test_id("search").press_sequentially(typed)

    assert searched.value.status == 200
    assert searched.value.request.headers.get("hx-request") == "true"
    expect(rows.first).to_contain_text(patient.full_name)
    expect(rows.first).to_contain_text(patient.mrn)
    expect(rows.filter(has_text=patient.full_name)).to_have_count(1)
    expect(rows.first.get_by_test_id("open-visit")).to_have_text("Mở lượt khám")
    # The results came in place: same document, same address, nothing submitted.
    assert page.evaluate("window.__sameDocument") is True
    assert page.url == live_server.at("/reception/")
    expect(page.get_by_test_id("search")).to_have_value(typed)


def is_search_for(response: Response, typed: str) -> bool:
    """The search htmx posts: the query in the body, none in the address."""
    request = response.request
    return (
        urlsplit(response.url).path == "/reception/search"
        and request.method == "POST"
        and parse_qs(request.post_data or "").get("q") == [typed]
    )


def test_a_search_puts_no_name_or_number_in_any_address(ui_page: Page, live_server: LiveServer):
    """Issue 9: browser history, proxies and access logs keep addresses, so what is typed
    in the search box (a name, a CCCD, a phone or BHYT number) must never be in one. Every
    request the page makes is recorded, searches by each kind of identifier are made, and
    no recorded address may hold any of them, raw or URL-encoded."""
    page = ui_page
    patient = next(p for p in demo_patients() if p.cccd and p.phone and "Đ" in p.full_name.upper())
    addresses: list[str] = []
    page.on("request", lambda request: addresses.append(request.url))
    open_reception(page, live_server)
    searches = [fold_vi(patient.full_name), patient.full_name, patient.cccd, patient.phone]
    searches.append(patient.bhyt)
    rows = page.get_by_test_id("result")
    box = page.get_by_test_id("search")
    for typed in searches:
        box.fill("")
        with page.expect_response(lambda response, t=typed: is_search_for(response, t)) as got:
            box.press_sequentially(typed)
        assert got.value.status == 200, typed
        expect(rows.first).to_contain_text(patient.full_name)
    # Enter fires the search event: the same POST, the page stays where it is.
    with page.expect_response(lambda response: is_search_for(response, patient.bhyt)):
        box.press("Enter")
    expect(rows.first).to_contain_text(patient.mrn)
    assert page.url == live_server.at("/reception/")

    posted = [a for a in addresses if urlsplit(a).path == "/reception/search"]
    assert len(posted) >= len(searches) + 1  # the recorder saw the searches themselves
    leaked = [
        (typed, address)
        for typed in searches
        for address in addresses
        for form in {typed, quote(typed), quote_plus(typed), typed.replace(" ", "+")}
        if form in address or form.lower() in address.lower()
    ]
    assert not leaked, leaked
    # The browser's history holds only the addresses it visited, none with a query.
    assert "?" not in page.evaluate("location.href")


# --- 2. register, with a CCCD that contradicts the patient -----------------------------------


def test_register_shows_cccd_error_keeps_the_form_then_registers(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    patient = new_patient(given="An")
    open_reception(page, live_server)
    page.get_by_test_id("new-patient").click()
    expect(page.locator("main h1")).to_have_text("Đăng ký người bệnh mới")

    commune = fill_patient_form(page, patient, patient.wrong_cccd)
    page.get_by_test_id("save-patient").click()

    expect(page.get_by_test_id("error-cccd")).to_have_text(
        "Chữ số thứ 4 của số CCCD (1) là số lẻ, tức là nữ, nhưng người bệnh đang được ghi là nam."
    )
    assert path_of(page) == "/reception/patients/new"
    expect(page.get_by_test_id("registered")).to_have_count(0)
    expect(page.get_by_test_id("form-problem")).to_be_visible()
    expect(page.locator(".field-error")).to_have_count(1)  # only the CCCD is wrong
    cccd = page.locator("#cccd")
    expect(cccd).to_have_attribute("aria-invalid", "true")
    expect(cccd).to_have_attribute("aria-describedby", "cccd-error")
    # Everything typed is still there, the wrong number included.
    expect(cccd).to_have_value(patient.wrong_cccd)
    expect(page.locator("#full_name")).to_have_value(patient.full_name)
    expect(page.locator("#sex")).to_have_value("male")
    expect(page.locator("#birth_date")).to_have_value(patient.birth_date)
    expect(page.locator("#phone")).to_have_value(patient.phone)
    expect(page.locator("#address_line")).to_have_value(patient.address_line)
    expect(page.locator("#commune_code")).to_have_value(commune)
    expect(page.locator("#allergies")).to_have_value("Penicillin")

    cccd.fill(patient.cccd)
    page.get_by_test_id("save-patient").click()

    notice = page.get_by_test_id("registered")
    expect(notice).to_have_text(re.compile(r"^Đã đăng ký người bệnh: BN\d{8}$"))
    mrn = notice.inner_text().rsplit(" ", 1)[-1]
    assert re.fullmatch(r"/reception/patients/\d+/visit", path_of(page)), page.url
    assert parse_qs(urlsplit(page.url).query).get("registered") == ["1"]
    summary = page.get_by_test_id("patient-summary")
    for shown in (patient.full_name, patient.birth_date, "Nam", mrn, "Penicillin"):
        expect(summary).to_contain_text(shown)

    # The corrected number is the one on record: the search by CCCD finds this patient.
    page.goto(live_server.at("/reception/"))
    page.get_by_test_id("search").press_sequentially(patient.cccd)
    rows = page.get_by_test_id("result")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(patient.full_name)
    expect(rows).to_contain_text(patient.cccd)
    expect(rows).to_contain_text(mrn)


# --- 3. open a visit and print the slip ------------------------------------------------------


def test_open_visit_prints_slip_with_number_room_name_code_and_qr(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    patient = new_patient(family="Trần", given="Đức")
    open_reception(page, live_server)
    mrn = register_through_form(page, patient)
    expect(page.get_by_test_id("room")).to_be_focused()

    number = open_visit_through_form(page)

    assert number >= 1
    expect(page.get_by_test_id("slip-room")).to_have_text(f"{ROOM} · {DEPARTMENT}")
    expect(page.get_by_test_id("slip-patient")).to_have_text(patient.full_name)
    expect(page.locator("body")).to_contain_text(mrn)
    expect(page.locator("body")).to_contain_text(FEE_PAYING)
    expect(page.locator("body")).to_contain_text("Bệnh viện Đa khoa tỉnh An Giang")
    code = page.get_by_test_id("slip-visit-code").inner_text().strip()
    assert len(code) == 16 and code.isdigit(), code
    assert code.startswith(FACILITY_CODE), code
    assert code[5:11] == f"{local_today():%y%m%d}", f"{code} is not today's visit code"

    qr = page.get_by_test_id("slip-qr")
    expect(qr).to_have_attribute("src", re.compile(r"^data:image/(png|svg\+xml)[;,]"))
    expect(qr).to_have_attribute("alt", code)
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0"), (
        "the browser could not decode the QR image"
    )
    box = qr.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, box


# --- 4. the queue board ----------------------------------------------------------------------


def test_queue_board_shows_the_ticket_and_picks_up_new_ones_without_reload(
    ui_page: Page, live_server: LiveServer, api: ReceptionApi
):
    page = ui_page
    patient = new_patient(family="Lê", given="Bảo")
    open_reception(page, live_server)
    register_through_form(page, patient)
    number = open_visit_through_form(page)

    page.goto(live_server.at("/queues/"))
    page.get_by_test_id("board-link").filter(has_text=ROOM).click()
    expect(page.get_by_test_id("board-room")).to_have_text(ROOM)
    board = re.fullmatch(r"/queues/(\d+)/board", path_of(page))
    assert board is not None, page.url
    room_id = int(board.group(1))
    ticket = waiting_ticket(page, number)
    expect(ticket).to_have_count(1)
    expect(ticket).to_contain_text(patient.board_name)
    # A wall screen in a public room: initial and given name, never the full name.
    expect(page.locator("body")).not_to_contain_text(patient.full_name)

    page.evaluate("window.__sameDocument = true")
    navigations: list[str] = []

    def on_navigation(frame: Frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", on_navigation)

    # Another receptionist sends the next patient to the same room.
    other = new_patient(family="Võ", given="Hạnh")
    visit = api.open_visit(api.register(other), room_id)
    assert visit["room_id"] == room_id and visit["queue_number"] > number, visit

    newcomer = waiting_ticket(page, visit["queue_number"])
    expect(newcomer).to_have_count(1, timeout=BOARD_PICKUP_MS)
    expect(newcomer).to_contain_text(other.board_name)
    expect(waiting_ticket(page, number)).to_have_count(1)  # the first one is still waiting
    assert navigations == [], f"the board reloaded: {navigations}"
    assert page.evaluate("window.__sameDocument") is True


# --- 5. keyboard only ----------------------------------------------------------------------


def test_keyboard_only_search_to_visit_and_empty_register_form(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    patient = accented_demo_patient()
    log_in(page, live_server)
    page.goto(live_server.at("/reception/"))

    search = page.get_by_test_id("search")
    expect(search).to_be_focused()
    page.keyboard.type(fold_vi(patient.full_name))
    first = page.get_by_test_id("result").first
    expect(first).to_contain_text(patient.full_name)

    page.keyboard.press("Tab")
    expect(page.locator("#birth_year")).to_be_focused()  # the year filter, then the results
    page.keyboard.press("Tab")
    expect(first.get_by_test_id("open-visit")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("patient-summary")).to_contain_text(patient.full_name)
    expect(page.get_by_test_id("room")).to_be_focused()

    # Back on the search screen, the register form is one access key away.
    page.go_back()
    expect(page.get_by_test_id("search")).to_be_focused()
    press_access_key(page, "n")  # the Alt+N the button shows
    expect(page.locator("main h1")).to_have_text("Đăng ký người bệnh mới")
    full_name = page.locator("#full_name")
    expect(full_name).to_be_focused()

    page.keyboard.press("Enter")  # submits the empty form

    for name, message in EMPTY_FORM_ERRORS.items():
        expect(page.get_by_test_id(f"error-{name}")).to_have_text(message)
    expect(page.locator(".field-error")).to_have_count(len(EMPTY_FORM_ERRORS))
    assert path_of(page) == "/reception/patients/new"
    expect(page.get_by_test_id("registered")).to_have_count(0)
    # The cursor waits in the first field in error, which says why.
    expect(full_name).to_be_focused()
    expect(full_name).to_have_attribute("aria-invalid", "true")
    expect(full_name).to_have_attribute("aria-describedby", "full_name-error")
    expect(page.locator("#full_name-error")).to_have_text(EMPTY_FORM_ERRORS["full_name"])


# --- 6. no console errors or CSP violations --------------------------------------------------


def test_reception_pages_load_without_console_errors_or_csp_violations(
    ui_page: Page, live_server: LiveServer, api: ReceptionApi
):
    page = ui_page
    room_id = api.room_id(ROOM)
    visit = api.open_visit(api.register(new_patient(family="Phạm", given="Tâm")), room_id)
    log_in(page, live_server)
    page.wait_for_load_state("networkidle")  # the home page's icon, before listening

    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.on(
        "requestfailed",
        lambda request: problems.append(f"request failed: {request.url} ({request.failure})"),
    )

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    page.on("response", on_response)
    page.add_init_script(CSP_RECORDER)
    found: dict[str, list[str]] = {}

    def visit_page(path: str, then=None) -> None:
        problems.clear()
        response = page.goto(live_server.at(path), wait_until="load")
        assert response is not None and response.status == 200, f"{path}: {response}"
        csp = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, f"{path}: {csp!r}"
        page.wait_for_load_state("networkidle")
        if then is not None:
            then()
        violations = page.evaluate("window.__cspViolations")
        if problems or violations:
            found[path] = [*problems, *(f"CSP violation: {v}" for v in violations)]

    def search_something() -> None:  # the htmx-swapped results count too
        page.get_by_test_id("search").press_sequentially(fold_vi(accented_demo_patient().given))
        expect(page.get_by_test_id("result").first).to_be_visible()

    def refresh_the_board() -> None:  # and so does the board's own refresh
        live = f"/queues/{room_id}/board/live"
        with page.expect_response(lambda r: urlsplit(r.url).path == live) as refreshed:
            page.clock.run_for(5_000)  # the board's 5-second timer, without the wait
        assert refreshed.value.status == 200
        page.clock.run_for(100)  # htmx settles the swapped content on a short timer
        expect(waiting_ticket(page, visit["queue_number"])).to_have_count(1)

    visit_page("/reception/", then=search_something)
    visit_page("/reception/patients/new")
    visit_page(f"/reception/visits/{visit['id']}/slip")
    page.clock.install()  # page timers run when the test says so, from the next page on
    visit_page(f"/queues/{room_id}/board", then=refresh_the_board)

    assert found == {}, "\n".join(
        f"{path}:\n  " + "\n  ".join(lines) for path, lines in found.items()
    )
