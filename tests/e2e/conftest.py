"""The browser lane: the real app on a live server, driven by Debian's chromium.

One committed database and one server per backend (sqlite / postgresql, from the
``backend`` fixture), with the demo province loaded once; one chromium per session;
a fresh browser context, so fresh cookies, per test.

Playwright's own browser downloads are never used: the lane runs the chromium that
``apt-get install chromium`` puts in ``/usr/bin/chromium``. Without it the lane skips
locally and fails under CI (``CI=true``), which must run it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from his import create_app
from his.db import Database
from his.services.demo import DEMO_PASSWORD, load_demo
from tests.conftest import settings_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class LiveServer:
    url: str
    backend: str
    password: str = DEMO_PASSWORD

    def at(self, path: str) -> str:
        return self.url + path


def _require_chromium() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI must run the browser lane, but {CHROMIUM} is missing: "
            "add `apt-get install chromium` to the CI image",
            pytrace=False,
        )
    pytest.skip(f"browser lane: {CHROMIUM} is missing; `apt-get install chromium` enables it")


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Browser]:
    _require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serving(url: str, backend: str) -> Iterator[LiveServer]:
    """The real app on the committed database at ``url``, on a free port, until the block
    ends."""
    app = create_app(settings_for(url))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="his-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", backend=backend)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["his_db"].engine.dispose()


@pytest.fixture(scope="session")
def live_server(backend: str, fresh_database) -> Iterator[LiveServer]:
    """The real app on a real, committed database holding the demo province."""
    databases = fresh_database(backend)
    url = next(databases)
    try:
        demo_db = Database.from_url(url)
        try:
            with demo_db.session() as session:
                load_demo(session)
        finally:
            demo_db.engine.dispose()

        with serving(url, backend) as server:
            yield server
    finally:
        databases.close()  # runs fresh_database's cleanup: drops the PostgreSQL database


@pytest.fixture
def ui_page(chromium_browser: Browser) -> Iterator[Page]:
    """A page in a browser context of its own: no cookies shared between tests."""
    context = chromium_browser.new_context(locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()
