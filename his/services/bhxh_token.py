"""Logging in to the BHXH gateway (Cổng tiếp nhận dữ liệu BHXH): one implementation for every
client of that gateway — the card look-up (:mod:`his.services.bhyt_check`) and the claim
files (:mod:`billing.claim_gateway`).

``POST api/token/take`` with the account's username and password answers with an
``access_token`` and an ``id_token`` that the other calls carry. A :class:`GatewayLogin`
keeps the token, shared by every thread of its client, takes a new one shortly before it
expires, and takes one again — once — when the gateway refuses it (HTTP 401 or ``maKetQua``
"401"); a second refusal is a fault of the gateway or the account, not of the request.

How the login is sent differs between the public descriptions of the gateway: the card
look-up notes post JSON with the password as BHXH issued it, the claim (QĐ 130 / 3176) notes
post a form with the MD5 digest of the password in upper-case hex. Each client says which it
uses (``form`` and the ``password`` it passes); :func:`password_md5` gives the digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from his.db import utcnow

LOGIN_PATH = "/api/token/take"
LOGIN_OK = "200"  # maKetQua of a successful /api/token/take
AUTH_FAILED = "401"  # maKetQua (or HTTP status) of a rejected or expired token
TOKEN_TTL_DEFAULT = dt.timedelta(minutes=30)  # when the gateway gives no usable expires_in
TOKEN_EXPIRY_MARGIN = dt.timedelta(seconds=60)  # take a new token this long before expiry

T = TypeVar("T")


class GatewayUnavailable(Exception):
    """The gateway did not give a usable answer (network, timeout, 5xx, not JSON, login
    refused); try again later. The reason is for the log and the operator, not the user."""


class TokenRejected(Exception):
    """The gateway refused the token of a call: :meth:`GatewayLogin.call` logs in again."""


@dataclass(frozen=True)
class Token:
    access_token: str
    id_token: str
    expires_at: float  # time.monotonic()


def password_md5(password: str) -> str:
    """The MD5 digest of the password, upper-case hex, as BHXH asks for it."""
    return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def parse_expiry(value: object) -> dt.timedelta:
    """How long a token lives, from ``expires_in``: seconds, or an ISO time stamp (UTC).

    Public notes show ``"2017-11-13T03:51:20.1047187Z"``; the 7-digit fraction is cut to 6.
    Anything else gives :data:`TOKEN_TTL_DEFAULT`.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return dt.timedelta(seconds=int(text))
        head, dot, rest = text.partition(".")
        if dot:
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits) :]
            text = f"{head}.{digits[:6]}{zone}"
        try:
            at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return TOKEN_TTL_DEFAULT
        if at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        return at - utcnow()
    return TOKEN_TTL_DEFAULT


def post(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    """POSTs; a network fault, a timeout, a 5xx or a 429 is :class:`GatewayUnavailable`.
    Every other answer is returned for the caller to judge."""
    path = httpx.URL(url).path
    try:
        response = client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise GatewayUnavailable(f"{path}: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise GatewayUnavailable(f"{path}: HTTP {response.status_code}")
    return response


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer as a JSON object; anything else is :class:`GatewayUnavailable`."""
    try:
        answer = json.loads(response.text)
    except ValueError:
        raise GatewayUnavailable(f"{response.url.path}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise GatewayUnavailable(f"{response.url.path}: answer is not a JSON object")
    return answer


class GatewayLogin:
    """The token of one gateway account, shared by the threads of one client.

    ``password`` is sent as given (the caller hashes it where its API wants a digest);
    ``form`` sends the login form-encoded instead of as JSON.
    """

    def __init__(self, base_url: str, username: str, password: str, *, form: bool = False):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.form = form
        self._token: Token | None = None
        self._lock = threading.Lock()

    def call(self, client: httpx.Client, request: Callable[[Token], T]) -> T:
        """``request(token)``; when it raises :class:`TokenRejected`, once more with a new
        token. A second refusal is :class:`GatewayUnavailable`."""
        token = self.token(client)
        try:
            return request(token)
        except TokenRejected:
            self.forget(token)
        token = self.token(client)
        try:
            return request(token)
        except TokenRejected:
            self.forget(token)
            raise GatewayUnavailable("token rejected twice") from None

    def token(self, client: httpx.Client) -> Token:
        """The current token, taken anew when there is none or it is about to expire."""
        with self._lock:
            token = self._token
            if token is None or time.monotonic() >= token.expires_at:
                token = self._take(client)
                self._token = token
            return token

    def forget(self, token: Token) -> None:
        """The gateway refused ``token``: the next call logs in again (unless another
        thread already did)."""
        with self._lock:
            if self._token is token:
                self._token = None

    def _take(self, client: httpx.Client) -> Token:
        credentials = {"username": self.username, "password": self.password}
        sent = {"data": credentials} if self.form else {"json": credentials}
        response = post(client, self.base_url + LOGIN_PATH, **sent)
        if response.status_code != 401 and not response.is_success:
            raise GatewayUnavailable(f"{LOGIN_PATH}: HTTP {response.status_code}")
        answer = json_object(response)
        code = answer.get("maKetQua")
        # Public notes nest the tokens in APIKey; take them at the top level as well.
        key = answer.get("APIKey", answer)
        if (code is not None and str(code) != LOGIN_OK) or not isinstance(key, Mapping):
            raise GatewayUnavailable(f"login refused (maKetQua {code!r})")
        access, id_token = key.get("access_token"), key.get("id_token")
        if not isinstance(access, str) or not access or not isinstance(id_token, str):
            raise GatewayUnavailable("login answer without access_token/id_token")
        lifetime = parse_expiry(key.get("expires_in")) - TOKEN_EXPIRY_MARGIN
        return Token(access, id_token, time.monotonic() + lifetime.total_seconds())
