"""A stand-in for the BHXH assessment gateway's claim endpoints, served over real HTTP on
127.0.0.1 in a thread of its own.

It implements ``POST /api/token/take`` (a form: username and the MD5 digest of the password,
upper-case hex), ``POST /api/qd130/guiHoSoXmlQD3176`` and ``POST /api/qd130/checkInKcbQd3176``
(JSON, token in the ``accessToken`` / ``tokenId`` headers). Each file call takes the next
answer a test planned (:meth:`FakeClaimGateway.plan`), else :attr:`FakeClaimGateway.default`
(accept, with a new transaction id). Every request is recorded::

    with FakeClaimGateway() as gateway:
        gateway.plan(reject("Sai MA_LK"), accept())
        client = ClaimGateway(gateway.url, gateway.username, gateway.password)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from billing.claim_gateway import CHECK_IN_PATH, SEND_PATH
from his.services.bhxh_token import LOGIN_PATH
from tests.fake_http import LoopbackServer, QuietHandler, reply

USERNAME = "91001_BV"
PASSWORD = "mật-khẩu-123"  # the account's password as BHXH issued it, in plain text
PASSWORD_MD5 = hashlib.md5(PASSWORD.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
RECEIVED_AT = "20261127083015"  # thoiGianTiepNhan of every answer (Vietnam time)
SLOW_SECONDS = 2.0
FILE_PATHS = (SEND_PATH, CHECK_IN_PATH)


@dataclass
class Answer:
    status: int = 200
    body: dict[str, Any] | str | None = None  # None: the accept answer with a new id
    delay: float = 0.0
    unauthorized: bool = False  # refuse the token whatever it is (HTTP 401)

    def text(self) -> str:
        if isinstance(self.body, str):
            return self.body
        return json.dumps(self.body, ensure_ascii=False)


def accept(transaction_id: str | None = None, code: str = "200") -> Answer:
    body = None
    if transaction_id is not None:
        body = {
            "maKetQua": code,
            "maGiaoDich": transaction_id,
            "thoiGianTiepNhan": RECEIVED_AT,
            "thongDiep": "Tiếp nhận hồ sơ thành công",
        }
    return Answer(body=body)


def reject(message: str, code: str = "500", transaction_id: str | None = "GD-REJ-1") -> Answer:
    """A refusal of the file (HTTP 200, a maKetQua that is not success)."""
    return Answer(
        body={
            "maKetQua": code,
            "maGiaoDich": transaction_id,
            "thoiGianTiepNhan": RECEIVED_AT,
            "thongDiep": message,
        }
    )


def server_error() -> Answer:
    return Answer(status=500, body="Internal Server Error")


def slow(seconds: float = SLOW_SECONDS) -> Answer:
    return Answer(delay=seconds)


def not_json() -> Answer:
    return Answer(body="<html><body>Hệ thống đang bảo trì</body></html>")


def unauthorized() -> Answer:
    """HTTP 401 for this call only: the client logs in again and sends once more."""
    return Answer(unauthorized=True)


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    content_type: str | None
    body: Any  # JSON as parsed, a form as a dict, or the text


@dataclass
class FakeClaimGateway(LoopbackServer):
    username: str = USERNAME
    password: str = PASSWORD
    default: Answer = field(default_factory=accept)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._planned: list[Answer] = []
        self._valid_tokens: set[str] = set()
        self._logins = itertools.count(1)
        self._transactions = itertools.count(1)
        self._lock = threading.Lock()
        self._serve(self._handler_class())

    # what tests set and look at

    def plan(self, *answers: Answer) -> None:
        """The answers of the next file calls, in order (then :attr:`default`)."""
        with self._lock:
            self._planned.extend(answers)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._valid_tokens.clear()

    def of(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    @property
    def logins(self) -> list[Recorded]:
        return self.of(LOGIN_PATH)

    @property
    def files(self) -> list[Recorded]:
        """Every file call (both endpoints), in order."""
        return [r for r in self.requests if r.path in FILE_PATHS]

    # serving

    def _login(self, form: dict[str, str]) -> Answer:
        if (form.get("username"), form.get("password")) != (self.username, PASSWORD_MD5):
            return Answer(body={"maKetQua": "401", "APIKey": None})
        n = next(self._logins)
        access = f"access-{n}"
        with self._lock:
            self._valid_tokens.add(access)
        return Answer(
            body={
                "maKetQua": "200",
                "APIKey": {
                    "access_token": access,
                    "id_token": f"id-{n}",
                    "token_type": "Bearer",
                    "username": self.username,
                    "expires_in": 3600,
                },
            }
        )

    def _file(self, headers: dict[str, str], body: Any) -> Answer:
        with self._lock:
            valid = (
                headers.get("accesstoken") in self._valid_tokens
                and headers.get("passwordhash") == PASSWORD_MD5
                and isinstance(body, dict)
                and body.get("username") == self.username
            )
            answer = self._planned.pop(0) if valid and self._planned else self.default
        if not valid or answer.unauthorized:
            return Answer(status=401, body={"message": "Unauthorized"})
        if answer.body is None and answer.status == 200:
            n = next(self._transactions)
            return Answer(
                body={
                    "maKetQua": "200",
                    "maGiaoDich": f"GD{n:010d}",
                    "thoiGianTiepNhan": RECEIVED_AT,
                    "thongDiep": "Tiếp nhận hồ sơ thành công",
                },
                delay=answer.delay,
            )
        return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                text = self.rfile.read(length).decode("utf-8")
                content_type = self.headers.get("Content-Type")
                body: Any
                if (content_type or "").startswith("application/x-www-form-urlencoded"):
                    body = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
                else:
                    try:
                        body = json.loads(text)
                    except ValueError:
                        body = text
                headers = {k.lower(): v for k, v in self.headers.items()}
                with gateway._lock:
                    gateway.requests.append(Recorded(self.path, headers, content_type, body))
                if self.path == LOGIN_PATH:
                    answer = gateway._login(body if isinstance(body, dict) else {})
                elif self.path in FILE_PATHS:
                    answer = gateway._file(headers, body)
                else:
                    answer = Answer(status=404, body="Not Found")
                if answer.delay and gateway._stopping.wait(answer.delay):
                    return
                kind = "text/html" if isinstance(answer.body, str) else "application/json"
                reply(self, answer.status, answer.text(), kind)

        return Handler
