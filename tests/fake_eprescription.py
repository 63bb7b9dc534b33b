"""A small stand-in for the national e-prescription system, over real HTTP on 127.0.0.1.

It answers ``POST SUBMIT_PATH`` according to ``answers``: a queue of (status, body) pairs
used in order, then ``default``. It checks the Basic credentials and records what it got.
Use it as a context manager::

    with FakeEPrescription() as system:
        client = EPrescriptionClient(system.url, system.username, system.password)
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from his.services.eprescription import SUBMIT_PATH
from tests.fake_http import LoopbackServer, QuietHandler, reply

USERNAME = "91001"
PASSWORD = "lien-thong-secret"
ACCEPTED = (200, {"success": True, "message": "Gửi đơn thuốc thành công"})
REJECTED = (400, {"success": False, "message": "Mã đơn thuốc đã tồn tại"})
UNAVAILABLE = (503, "Service Unavailable")


@dataclass(frozen=True)
class Received:
    path: str
    body: Any
    authorised: bool


class FakeEPrescription(LoopbackServer):
    def __init__(self, *, username: str = USERNAME, password: str = PASSWORD):
        self.username = username
        self.password = password
        self.answers: list[tuple[int, Any]] = []
        self.default: tuple[int, Any] = ACCEPTED
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._serve(self._handler_class())

    def _answer(self, path: str, body: Any, authorised: bool) -> tuple[int, Any]:
        with self._lock:
            self.received.append(Received(path, body, authorised))
            if path != SUBMIT_PATH:
                return 404, "Not Found"
            if not authorised:
                return 401, {"success": False, "message": "Sai tài khoản liên thông"}
            return self.answers.pop(0) if self.answers else self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode("utf-8")
                try:
                    body: Any = json.loads(text)
                except ValueError:
                    body = text
                authorised = self.headers.get("Authorization") == expected
                status, answer = fake._answer(self.path, body, authorised)
                if isinstance(answer, str):
                    reply(self, status, answer, "text/plain")
                else:
                    reply(self, status, json.dumps(answer, ensure_ascii=False), "application/json")

        return Handler
