"""A small stand-in for the BHXH card-lookup gateway, served over real HTTP on 127.0.0.1.

It implements ``POST /api/token/take`` and ``POST /api/egw/KQNhanLichSuKCB2024`` with
canned answers chosen by the card number (``maThe``) and records every request, so tests
can check what the HIS sent. Use it as a context manager::

    with FakeBhytGateway() as gateway:
        checker = GatewayCardChecker(gateway.url, gateway.username, gateway.password)
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from his.services.bhyt_check import CARD_CHECK_PATH, LOGIN_PATH
from tests.fake_http import LoopbackServer, QuietHandler, reply

# Card numbers that select an answer.
CARD_OK = "HS4010120878811"
CARD_10_DIGITS = "7912058865"  # answered with the full code CARD_10_DIGITS_FULL
CARD_10_DIGITS_FULL = "GD4797912058865"
CARD_EXPIRED = "HS4010120870010"
CARD_WRONG_NAME = "HS4010120870060"
CARD_NEW = "HS4010120870003"  # a new card was issued: CARD_NEW_REPLACEMENT
CARD_NEW_REPLACEMENT = "HT3010120870003"
CARD_SERVER_ERROR = "ZZ4010120870500"
CARD_SLOW = "ZZ4010120870999"
CARD_NOT_JSON = "ZZ4010120870888"

SLOW_SECONDS = 2.0
USERNAME = "91001_BV"
PASSWORD = "E10ADC3949BA59ABBE56E057F20F883E"  # what BHXH issued (an MD5 digest)


@dataclass
class Answer:
    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    delay: float = 0.0

    def text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return json.dumps(self.body, ensure_ascii=False)


def _card(code: str, note: str, card: str, **extra: Any) -> Answer:
    body = {
        "maKetQua": code,
        "ghiChu": note,
        "maThe": card,
        "hoTen": "Trần Thị Mai",
        "ngaySinh": "17/05/1980",
        "gioiTinh": "Nữ",
        "maDKBD": "91001",
        "cqBHXH": "Bảo hiểm Xã hội tỉnh An Giang",
        "gtTheTu": "01/01/2026",
        "gtTheDen": "31/12/2026",
        "maKV": "",
        "ngayDu5Nam": "01/03/2021",
        "maSoBHXH": card[-10:],
        "maTheCu": None,
        "maTheMoi": None,
        "dsLichSuKCB2018": None,
    }
    body.update(extra)
    return Answer(body=body)


def canned_answers() -> dict[str, Answer]:
    return {
        CARD_OK: _card(
            "000",
            "Thông tin thẻ chính xác!",
            CARD_OK,
            maKV="K2",
            gtTheTu="01/01/2026",
            gtTheDen="31/12/2026",
        ),
        CARD_10_DIGITS: _card("000", "Thông tin thẻ chính xác!", CARD_10_DIGITS_FULL),
        CARD_EXPIRED: _card(
            "010",
            "Thẻ hết giá trị sử dụng!",
            CARD_EXPIRED,
            gtTheTu="01/01/2025",
            gtTheDen="31/12/2025",
        ),
        CARD_WRONG_NAME: Answer(
            body={
                "maKetQua": "060",
                "ghiChu": "Họ tên không đúng!",
                "maThe": CARD_WRONG_NAME,
                "hoTen": None,
                "gtTheTu": None,
                "gtTheDen": None,
                "maDKBD": None,
                "maKV": None,
                "ngayDu5Nam": None,
            }
        ),
        CARD_NEW: _card(
            "003",
            "Thẻ cũ hết giá trị sử dụng nhưng đã được cấp thẻ mới!",
            CARD_NEW,
            maTheCu=CARD_NEW,
            maTheMoi=CARD_NEW_REPLACEMENT,
            gtTheTu="01/01/2025",
            gtTheDen="30/06/2026",
            gtTheTuMoi="01/07/2026",
            gtTheDenMoi="30/06/2027",
        ),
        CARD_SERVER_ERROR: Answer(status=500, body="Internal Server Error"),
        CARD_SLOW: replace(_card("000", "Thông tin thẻ chính xác!", CARD_SLOW), delay=SLOW_SECONDS),
        CARD_NOT_JSON: Answer(body="<html><body>Hệ thống đang bảo trì</body></html>"),
    }


@dataclass(frozen=True)
class Recorded:
    path: str
    query: dict[str, str]
    body: Any  # the JSON body, or the raw text when it is not JSON
    content_type: str | None


class FakeBhytGateway(LoopbackServer):
    """The gateway on 127.0.0.1, an ephemeral port, in a thread of its own.

    ``expires_in`` is what the login answers (default: in one hour); ``token_rejection``
    says how a revoked token is refused: ``"http"`` (HTTP 401) or ``"body"`` (HTTP 200,
    ``maKetQua`` "401").
    """

    def __init__(self, *, username: str = USERNAME, password: str = PASSWORD):
        self.username = username
        self.password = password
        self.answers = canned_answers()
        self.expires_in: object = None
        self.token_rejection = "http"
        self.requests: list[Recorded] = []
        self.sent: list[str] = []  # the text of every card-check answer, in order
        self._valid_tokens: set[str] = set()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._serve(self._handler_class())

    # what tests look at

    def of(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    @property
    def logins(self) -> list[Recorded]:
        return self.of(LOGIN_PATH)

    @property
    def checks(self) -> list[Recorded]:
        return self.of(CARD_CHECK_PATH)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._valid_tokens.clear()

    # serving

    def _login(self, body: Any) -> Answer:
        if not isinstance(body, dict) or (body.get("username"), body.get("password")) != (
            self.username,
            self.password,
        ):
            return Answer(body={"maKetQua": "401", "APIKey": None})
        n = next(self._counter)
        access = f"access-{n}"
        with self._lock:
            self._valid_tokens.add(access)
        expires_in = self.expires_in
        if expires_in is None:
            expires_in = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%S.1047187Z"
            )
        return Answer(
            body={
                "maKetQua": "200",
                "APIKey": {
                    "access_token": access,
                    "id_token": f"id-{n}",
                    "token_type": "Bearer",
                    "username": self.username,
                    "expires_in": expires_in,
                },
            }
        )

    def _check(self, query: dict[str, str], body: Any) -> Answer:
        with self._lock:
            valid = query.get("token") in self._valid_tokens
        if not valid or query.get("username") != self.username:
            if self.token_rejection == "http":
                return Answer(status=401, body={"message": "Unauthorized"})
            return Answer(body={"maKetQua": "401", "ghiChu": "Lỗi xác thực"})
        card = body.get("maThe") if isinstance(body, dict) else None
        return self.answers.get(card, _card("050", "Không có thông tin thẻ!", str(card)))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode("utf-8")
                try:
                    body: Any = json.loads(text)
                except ValueError:
                    body = text
                gateway.requests.append(
                    Recorded(url.path, query, body, self.headers.get("Content-Type"))
                )
                if url.path == LOGIN_PATH:
                    answer = gateway._login(body)
                elif url.path == CARD_CHECK_PATH:
                    answer = gateway._check(query, body)
                else:
                    answer = Answer(status=404, body="Not Found")
                if answer.delay and gateway._stopping.wait(answer.delay):
                    return
                payload = answer.text()
                if url.path == CARD_CHECK_PATH:
                    gateway.sent.append(payload)
                kind = "text/html" if isinstance(answer.body, str) else "application/json"
                reply(self, answer.status, payload, kind)

        return Handler
