"""Logging in, out and switching language through the real login page in chromium."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, Response, expect

from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.e2e

USERNAME = "reception"
FULL_NAME = "Nguyễn Thị Hồng"
FACILITY = "Bệnh viện Đa khoa tỉnh An Giang"

# Records Content-Security-Policy violations before any page script runs; a blocked
# inline style or script shows up here even when the console message wording changes.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(
    event.violatedDirective + " blocked " + (event.blockedURI || "inline") +
    " at " + event.sourceFile + ":" + event.lineNumber
  );
});
"""


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


def submit_login(page: Page, username: str, password: str) -> None:
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("main form button[type=submit]").click()


def log_in(page: Page, server: LiveServer, username: str = USERNAME) -> None:
    page.goto(server.at("/login"))
    submit_login(page, username, server.password)
    expect(page.get_by_test_id("home-title")).to_be_visible()
    assert path_of(page) == "/"


def test_receptionist_logs_in_and_sees_her_home_in_vietnamese(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    page.goto(live_server.at("/login"))
    # The context's browser language is en-US: pages ignore it and default to Vietnamese.
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.locator("main h1")).to_have_text("Đăng nhập")

    submit_login(page, USERNAME, live_server.password)

    expect(page).to_have_url(live_server.at("/"))
    expect(page.get_by_test_id("home-title")).to_contain_text(FULL_NAME)
    expect(page.get_by_test_id("home-title")).to_have_text(f"Xin chào, {FULL_NAME}")
    expect(page.get_by_test_id("role")).to_have_count(1)
    expect(page.get_by_test_id("role")).to_have_text("Tiếp đón")
    expect(page.get_by_test_id("facility")).to_have_text(FACILITY)
    expect(page.get_by_test_id("who")).to_have_text(FULL_NAME)
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.get_by_role("button", name="Đăng xuất")).to_be_visible()
    expect(page.locator("form[action='/logout'] button")).to_have_text("Đăng xuất")


def test_wrong_password_stays_on_login_page_with_an_error(ui_page: Page, live_server: LiveServer):
    page = ui_page
    page.goto(live_server.at("/login"))
    expect(page.get_by_test_id("login-error")).to_have_count(0)

    submit_login(page, USERNAME, "not-the-password")

    expect(page.get_by_test_id("login-error")).to_have_text(
        "Tên đăng nhập hoặc mật khẩu không đúng."
    )
    assert path_of(page) == "/login"
    expect(page.locator("#password")).to_have_value("")  # never echoed back
    expect(page.get_by_test_id("home-title")).to_have_count(0)
    expect(page.get_by_test_id("facility")).to_have_count(0)
    # Still anonymous: the home page sends the browser back to the login page.
    page.goto(live_server.at("/"))
    assert path_of(page) == "/login"


def test_language_switch_to_english_persists(ui_page: Page, live_server: LiveServer):
    page = ui_page
    page.goto(live_server.at("/login"))
    expect(page.locator("main h1")).to_have_text("Đăng nhập")

    page.get_by_test_id("lang-en").click()

    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("main h1")).to_have_text("Log in")
    expect(page.get_by_test_id("lang-vi")).to_be_visible()
    expect(page.get_by_test_id("lang-en")).to_have_count(0)

    # A plain reload of the page without ?lang= keeps English (the choice is remembered).
    page.goto(live_server.at("/login"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("main h1")).to_have_text("Log in")

    # ...and so does the next page, after logging in.
    submit_login(page, USERNAME, live_server.password)
    expect(page).to_have_url(live_server.at("/"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("home-title")).to_have_text(f"Hello, {FULL_NAME}")
    expect(page.get_by_test_id("role")).to_have_text("Receptionist")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    # Switching back works the same way.
    page.get_by_test_id("lang-vi").click()
    expect(page.locator("html")).to_have_attribute("lang", "vi")
    expect(page.get_by_role("button", name="Đăng xuất")).to_be_visible()


def test_log_out_returns_to_login_and_closes_the_session(ui_page: Page, live_server: LiveServer):
    page = ui_page
    log_in(page, live_server)

    page.get_by_role("button", name="Đăng xuất").click()

    expect(page.locator("main h1")).to_have_text("Đăng nhập")
    assert path_of(page) == "/login"
    expect(page.get_by_test_id("facility")).to_have_count(0)
    expect(page.get_by_role("button", name="Đăng xuất")).to_have_count(0)

    page.goto(live_server.at("/"))
    assert path_of(page) == "/login"
    assert parse_qs(urlsplit(page.url).query).get("next") == ["/"]
    expect(page.locator("#username")).to_be_visible()


def test_login_page_loads_without_console_errors_or_csp_violations(
    ui_page: Page, live_server: LiveServer
):
    page = ui_page
    problems: list[str] = []
    loaded: dict[str, int] = {}

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} ({message.location})")

    def on_response(response: Response) -> None:
        loaded[urlsplit(response.url).path] = response.status
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"uncaught exception: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.on("response", on_response)
    page.add_init_script(CSP_RECORDER)

    response = page.goto(live_server.at("/login"), wait_until="load")
    page.wait_for_load_state("networkidle")

    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, f"the login page is not served under the CSP: {csp!r}"
    assert "style-src 'self'" in csp, f"the login page is not served under the CSP: {csp!r}"
    violations = page.evaluate("window.__cspViolations")
    assert problems == [], "problems on /login:\n" + "\n".join(problems)
    assert violations == [], f"CSP violations on /login: {violations}"

    # The vendored htmx and app.js came from our own origin, and htmx ran.
    assert loaded.get("/static/vendor/htmx.min.js") == 200, loaded
    assert loaded.get("/static/js/app.js") == 200, loaded
    assert loaded.get("/static/css/app.css") == 200, loaded
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load or run"

    # Chromium asks for the page icon after the load and only once per browser, so whether
    # its console 404 shows up above depends on test order; check the icon directly too.
    icon = page.evaluate("document.querySelector('link[rel~=icon]')?.href ?? null")
    icon = icon or live_server.at("/favicon.ico")
    if not icon.startswith("data:"):
        answer = page.request.get(icon)
        assert answer.ok, (
            f"the browser fetches {icon} as the page icon and gets HTTP {answer.status}, "
            "which logs a console error on the first page load"
        )
