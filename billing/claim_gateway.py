"""The client of the BHXH assessment gateway (Cổng tiếp nhận dữ liệu Hệ thống thông tin giám
định BHYT) for signed claim files (DOMAIN.md §2.3).

Login is :class:`his.services.bhxh_token.GatewayLogin`: a form with the username and the MD5
digest of the password in upper-case hex. A claim file then goes to
``api/qd130/guiHoSoXmlQD3176`` (a GIAMDINHHS envelope) or ``api/qd130/checkInKcbQd3176``
(an XML0 check-in, ``loaiHoSo`` 0), with the token in the ``accessToken`` / ``tokenId``
headers, the password digest in ``passwordHash``, and the exact bytes of the signed file in
base64 in ``fileHSBase64``.

The answer is one of two things:

- :class:`GatewayUnavailable` — the network failed, the gateway timed out, answered 5xx or
  429, or answered something that is not a JSON object, or refused the token twice: nothing
  was decided, send the same file again later;
- a :class:`GatewayAnswer` — anything else is the gateway's decision on this file: accepted
  when ``maKetQua`` is one of :data:`SUCCESS_CODES`, otherwise rejected with ``thongDiep``.

Not confirmed by an official text, **[verify]** against the gateway's documentation before
production: :data:`SUCCESS_CODES`, :data:`LOAI_HO_SO` for the envelope, the JSON body (one
public description of the QĐ 4750 endpoints lists a form-encoded body), and the time zone
of ``thoiGianTiepNhan`` (read as Vietnam time).
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from his.localtime import VN_TZ
from his.logging import get_logger
from his.services.bhxh_token import (
    AUTH_FAILED,
    GatewayLogin,
    GatewayUnavailable,
    Token,
    TokenRejected,
    json_object,
    password_md5,
    post,
)

__all__ = [
    "CHECK_IN_PATH",
    "LOAI_HO_SO",
    "SEND_PATH",
    "SUCCESS_CODES",
    "ClaimGateway",
    "ClaimKind",
    "GatewayAnswer",
    "GatewayUnavailable",
    "OutgoingClaim",
    "gateway_from_settings",
]

log = get_logger(__name__)

SEND_PATH = "/api/qd130/guiHoSoXmlQD3176"
CHECK_IN_PATH = "/api/qd130/checkInKcbQd3176"

# [verify] Which maKetQua means "received". The card look-up answers "000"; public notes of
# the QĐ 130 endpoints say "200 - success". Both are taken until BHXH's own text says which.
SUCCESS_CODES = frozenset({"000", "200"})


class ClaimKind(enum.StrEnum):
    XML = "xml"  # a GIAMDINHHS envelope (XML1…XML15)
    CHECK_IN = "check-in"  # XML0, sent alone


# loaiHoSo of each kind. Check-in is 0 (DOMAIN.md §2.3). [verify] The envelope's value: a
# public description of the QĐ 130/4750 endpoints says "130 by default".
LOAI_HO_SO = {ClaimKind.XML: "130", ClaimKind.CHECK_IN: "0"}
PATHS = {ClaimKind.XML: SEND_PATH, ClaimKind.CHECK_IN: CHECK_IN_PATH}


class OutgoingClaim(Protocol):
    """What the gateway needs of a claim file."""

    @property
    def content(self) -> bytes: ...  # the signed file, sent byte for byte

    @property
    def kind(self) -> ClaimKind: ...

    @property
    def facility_code(self) -> str: ...  # maCSKCB, 5 characters

    @property
    def province_code(self) -> str: ...  # maTinh, 2 characters


@dataclass(frozen=True)
class GatewayAnswer:
    accepted: bool
    code: str | None  # maKetQua
    transaction_id: str | None  # maGiaoDich: keep it, the gateway shows results 60 days only
    received_at: dt.datetime | None  # thoiGianTiepNhan, as an aware UTC time
    message: str | None  # thongDiep
    raw: str  # the answer's text, verbatim


def _text(value: object) -> str | None:
    """A scalar of the answer as text (codes may come as numbers); None when empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def received_time(value: object) -> dt.datetime | None:
    """``thoiGianTiepNhan`` (``yyyyMMddHHmmss``, Vietnam time [verify]) in UTC."""
    text = _text(value)
    if text is None or len(text) != 14 or not text.isdigit():
        return None
    try:
        local = dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=VN_TZ)
    except ValueError:
        return None
    return local.astimezone(dt.UTC)


class ClaimGateway:
    """Sends one claim file and says what the gateway decided (or raises
    :class:`GatewayUnavailable`). The token is kept between files, across threads."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = url.rstrip("/")
        self.username = username
        self.timeout = timeout
        self._password_hash = password_md5(password)
        self._transport = transport
        self._login = GatewayLogin(self.base_url, username, self._password_hash, form=True)

    def send(self, claim: OutgoingClaim) -> GatewayAnswer:
        kind = ClaimKind(claim.kind)
        path = PATHS[kind]
        body = {
            "username": self.username,
            "loaiHoSo": LOAI_HO_SO[kind],
            "maTinh": claim.province_code,
            "maCSKCB": claim.facility_code,
            "fileHSBase64": base64.b64encode(claim.content).decode("ascii"),
        }
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            response = self._login.call(client, lambda token: self._post(client, token, path, body))
        return self._answer(response)

    def _post(
        self, client: httpx.Client, token: Token, path: str, body: dict[str, Any]
    ) -> tuple[httpx.Response, dict[str, Any]]:
        headers = {
            "accessToken": token.access_token,
            "tokenId": token.id_token,
            "passwordHash": self._password_hash,
        }
        response = post(client, self.base_url + path, json=body, headers=headers)
        if response.status_code == 401:
            raise TokenRejected
        answer = json_object(response)
        if _text(answer.get("maKetQua")) == AUTH_FAILED:
            raise TokenRejected
        return response, answer

    @staticmethod
    def _answer(received: tuple[httpx.Response, dict[str, Any]]) -> GatewayAnswer:
        response, answer = received
        code = _text(answer.get("maKetQua"))
        result = GatewayAnswer(
            accepted=code in SUCCESS_CODES,
            code=code,
            transaction_id=_text(answer.get("maGiaoDich")),
            received_at=received_time(answer.get("thoiGianTiepNhan")),
            message=_text(answer.get("thongDiep")),
            raw=response.text,
        )
        if not result.accepted:
            log.warning(
                "claim_gateway.rejected",
                status_code=response.status_code,
                code=code,
                transaction_id=result.transaction_id,
            )
        return result


def gateway_from_settings(settings: Any) -> ClaimGateway | None:
    """The gateway of HIS_BHXH_GATEWAY_*; None when no URL is configured (files then wait,
    queued)."""
    url = (settings.bhxh_gateway_url or "").strip()
    if not url:
        return None
    return ClaimGateway(
        url,
        settings.bhxh_gateway_username,
        settings.bhxh_gateway_password,
        settings.bhxh_gateway_timeout,
    )
