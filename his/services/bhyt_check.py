"""Checking a BHYT card: offline against the dated group table, online through the BHXH gateway.

Offline, only the shape of the number can be checked: the beneficiary group must be in the
``bhyt_group`` list on the date and the card's benefit level must be that group's level.
That never proves a card is valid, so an offline check at best leaves the card
``unverified``; only the gateway (Cổng tiếp nhận dữ liệu BHXH, look-up
``KQNhanLichSuKCB2024``) makes it ``verified`` or ``failed``.

Reception must keep working while the gateway is down (Decree 188/2025 Art. 38): the
gateway checker never raises for a network or gateway fault; it answers with the offline
result, marked unverified, and :func:`recheck_unverified` runs the check again later.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from his.config import Settings
from his.db import utcnow
from his.errors import InvalidValue
from his.identifiers import BhytCard, parse_bhyt_card
from his.localtime import local_today
from his.logging import get_logger
from his.models.coverage import BhytGroup, CardStatus, Coverage
from his.models.patient import Patient
from his.partial_date import PartialDate
from his.services.bhxh_token import (
    LOGIN_PATH,  # noqa: F401 (re-exported: callers and tests import it from here)
    GatewayLogin,
    GatewayUnavailable,
    Token,
    TokenRejected,
    json_object,
    post,
)

log = get_logger(__name__)

METHOD_OFFLINE = "offline"
METHOD_GATEWAY = "gateway"

# Offline rule codes (``CardCheckResult.code`` when ``method == "offline"``).
OFFLINE_OK = "offline-ok"
OFFLINE_10_DIGIT = "offline-10-digit"
GROUP_UNKNOWN = "group-unknown"
GROUP_NOT_IN_FORCE = "group-not-in-force"
LEVEL_MISMATCH = "level-mismatch"

# The BHXH gateway, as public integration notes describe it; correct here if BHXH moves it.
# The login (LOGIN_PATH, tokens, expiry) is his.services.bhxh_token's, shared with the claims.
CARD_CHECK_PATH = "/api/egw/KQNhanLichSuKCB2024"
AUTH_FAILED = "401"  # maKetQua of a rejected or expired token

# maKetQua of KQNhanLichSuKCB2024.
CODE_OK = "000"
NEW_CARD_CODES = frozenset({"003", "004"})  # a new card was issued: maTheMoi
VERIFIED_CODES = frozenset({CODE_OK}) | NEW_CARD_CODES
# Named here for the reader; every code outside VERIFIED_CODES is a failure.
FAILED_CODES = frozenset(
    {"010", "050", "051", "060", "061", "070", "110", "120", "121", "122", "123", "124", "130"}
)

# Column widths of ``coverage``; a longer value from the gateway is not stored.
_MESSAGE_MAX = 300
_FACILITY_CODE_MAX = 5
_AREA_CODE_MAX = 2


@dataclass(frozen=True)
class CardCheckResult:
    status: CardStatus  # verified / unverified / failed
    method: str  # "offline" or "gateway"
    code: str | None  # gateway result code ("000", "010", ...) or an offline rule code
    message: str | None  # the gateway's ghiChu as received, or our msgid rendered
    card_number: str | None = None  # the 15-character code the gateway returns, when it does
    group_code: str | None = None
    benefit_level: int | None = None
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    registered_facility_code: str | None = None  # maDKBD
    area_code: str | None = None  # maKV
    five_year_date: dt.date | None = None  # ngayDu5Nam
    raw: str | None = None  # the gateway's raw JSON answer, verbatim


class CardChecker(Protocol):
    def check(
        self,
        session: Session,
        card: BhytCard,
        *,
        full_name: str,
        birth: PartialDate,
        on: dt.date,
    ) -> CardCheckResult: ...


def _display(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


# --- offline -------------------------------------------------------------------------------


class OfflineCardChecker:
    """Checks what can be checked without the network; never verifies a card."""

    def check(
        self,
        session: Session,
        card: BhytCard,
        *,
        full_name: str,
        birth: PartialDate,
        on: dt.date,
    ) -> CardCheckResult:
        if card.group_code is None or card.benefit_level is None:
            return CardCheckResult(
                CardStatus.UNVERIFIED,
                METHOD_OFFLINE,
                OFFLINE_10_DIGIT,
                str(
                    _l(
                        "A 10-digit social insurance number can only be checked through the "
                        "BHXH gateway."
                    )
                ),
            )
        code = card.group_code
        rows = session.scalars(
            select(BhytGroup).where(BhytGroup.code == code).order_by(BhytGroup.valid_from.desc())
        ).all()
        if not rows:
            return self._failed(
                GROUP_UNKNOWN,
                _l("The beneficiary group code %(code)s is not in the BHYT group list.", code=code),
            )
        row = next(
            (r for r in rows if r.valid_from <= on and (r.valid_to is None or on <= r.valid_to)),
            None,
        )
        if row is None:
            return self._failed(
                GROUP_NOT_IN_FORCE,
                _l(
                    "The beneficiary group code %(code)s is not in force on %(date)s.",
                    code=code,
                    date=_display(on),
                ),
            )
        if row.benefit_level != card.benefit_level:
            return self._failed(
                LEVEL_MISMATCH,
                _l(
                    "The card's benefit level %(level)s does not match level %(expected)s of "
                    "group %(code)s.",
                    level=card.benefit_level,
                    expected=row.benefit_level,
                    code=code,
                ),
            )
        return CardCheckResult(
            CardStatus.UNVERIFIED,
            METHOD_OFFLINE,
            OFFLINE_OK,
            str(
                _l(
                    "The group code and benefit level are valid; only the BHXH gateway can "
                    "confirm the card."
                )
            ),
            group_code=code,
            benefit_level=card.benefit_level,
        )

    @staticmethod
    def _failed(code: str, message: object) -> CardCheckResult:
        return CardCheckResult(CardStatus.FAILED, METHOD_OFFLINE, code, str(message))


# --- the BHXH gateway ----------------------------------------------------------------------


def _gateway_date(value: object) -> dt.date | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return dt.datetime.strptime(value.strip(), "%d/%m/%Y").date()  # noqa: DTZ007 (a date)
    except ValueError:
        return None


def _short_text(value: object, max_length: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if text and len(text) <= max_length else None


def _full_card(value: object) -> BhytCard | None:
    """The 15-character card the gateway names, or None for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        card = parse_bhyt_card(value)
    except InvalidValue:
        return None
    return card if card.group_code is not None else None


class GatewayCardChecker:
    """Looks a card up on the BHXH gateway; falls back to ``fallback`` when it cannot.

    The access token (:class:`~his.services.bhxh_token.GatewayLogin`, JSON login) is shared
    by every thread using this checker and taken again when it expires or the gateway
    rejects it. ``password`` is sent as configured (BHXH issues the account; public notes
    send the MD5 hex digest of the account's password).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 5.0,
        staff_name: str | None = None,
        staff_cccd: str | None = None,
        fallback: CardChecker | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.staff_name = staff_name
        self.staff_cccd = staff_cccd
        self.fallback: CardChecker = fallback if fallback is not None else OfflineCardChecker()
        self._login = GatewayLogin(self.base_url, username, password)

    def check(
        self,
        session: Session,
        card: BhytCard,
        *,
        full_name: str,
        birth: PartialDate,
        on: dt.date,
    ) -> CardCheckResult:
        body = {
            "maThe": card.number,
            "hoTen": full_name,
            "ngaySinh": birth.display(),
            "hoTenCb": self.staff_name,
            "cccdCb": self.staff_cccd,
        }
        try:
            with httpx.Client(timeout=self.timeout) as client:
                text, answer = self._look_up(client, body)
        except GatewayUnavailable as exc:
            log.warning("bhyt_gateway_unavailable", reason=str(exc))
            offline = self.fallback.check(session, card, full_name=full_name, birth=birth, on=on)
            message = str(
                _l(
                    "The BHXH gateway could not be reached; the card will be checked again "
                    "later. Offline check: %(detail)s",
                    detail=offline.message or "",
                )
            )
            return dataclasses.replace(offline, status=CardStatus.UNVERIFIED, message=message)
        return self._result(text, answer)

    # The two calls ----------------------------------------------------------------------

    def _look_up(self, client: httpx.Client, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self._login.call(client, lambda token: self._call_check(client, token, body))

    def _call_check(
        self, client: httpx.Client, token: Token, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        params = {
            "token": token.access_token,
            "id_token": token.id_token,
            "username": self.username,
            "password": self.password,
        }
        response = post(client, self.base_url + CARD_CHECK_PATH, json=body, params=params)
        if response.status_code == 401:
            raise TokenRejected
        if not response.is_success:
            raise GatewayUnavailable(f"{CARD_CHECK_PATH}: HTTP {response.status_code}")
        answer = json_object(response)
        code = answer.get("maKetQua")
        if code == AUTH_FAILED:
            raise TokenRejected
        if not isinstance(code, str) or not code:
            raise GatewayUnavailable("card check answer without maKetQua")
        return response.text, answer

    # The answer -------------------------------------------------------------------------

    @staticmethod
    def _result(text: str, answer: dict[str, Any]) -> CardCheckResult:
        code = answer["maKetQua"]
        new_card = _full_card(answer.get("maTheMoi")) if code in NEW_CARD_CODES else None
        if new_card is not None:
            card: BhytCard | None = new_card
            valid_from = _gateway_date(answer.get("gtTheTuMoi")) or _gateway_date(
                answer.get("gtTheTu")
            )
            valid_to = _gateway_date(answer.get("gtTheDenMoi")) or _gateway_date(
                answer.get("gtTheDen")
            )
        else:
            card = _full_card(answer.get("maThe"))
            valid_from = _gateway_date(answer.get("gtTheTu"))
            valid_to = _gateway_date(answer.get("gtTheDen"))
        message = answer.get("ghiChu")
        return CardCheckResult(
            CardStatus.VERIFIED if code in VERIFIED_CODES else CardStatus.FAILED,
            METHOD_GATEWAY,
            code,
            message if isinstance(message, str) and message else None,
            card_number=card.number if card else None,
            group_code=card.group_code if card else None,
            benefit_level=card.benefit_level if card else None,
            valid_from=valid_from,
            valid_to=valid_to,
            registered_facility_code=_short_text(answer.get("maDKBD"), _FACILITY_CODE_MAX),
            area_code=_short_text(answer.get("maKV"), _AREA_CODE_MAX),
            five_year_date=_gateway_date(answer.get("ngayDu5Nam")),
            raw=text,
        )


def checker_from_settings(
    url: str | None,
    username: str | None,
    password: str | None,
    timeout: float,
    *,
    staff_name: str | None = None,
    staff_cccd: str | None = None,
) -> CardChecker:
    """The gateway checker when a gateway URL is configured, else the offline one."""
    if url and url.strip():
        return GatewayCardChecker(
            url.strip(),
            username or "",
            password or "",
            timeout=timeout,
            staff_name=staff_name,
            staff_cccd=staff_cccd,
        )
    return OfflineCardChecker()


# --- writing results -----------------------------------------------------------------------

_CARD_DETAILS = (
    "card_number",
    "group_code",
    "benefit_level",
    "valid_from",
    "valid_to",
    "registered_facility_code",
    "area_code",
    "five_year_date",
)


def apply_check(coverage: Coverage, result: CardCheckResult) -> None:
    """Writes the result onto the coverage row: status, check_method, check_code, check_message,
    checked_at (now, UTC), raw_response, and every non-None card detail the result carries
    (card_number, group_code, benefit_level, valid_from, valid_to, registered_facility_code,
    area_code, five_year_date; insurance_number stays).

    A new 15-character card number also sets ``issuing_province`` (its characters 4–5). A
    message longer than the column is cut, ending with "…".
    """
    coverage.status = result.status
    coverage.check_method = result.method
    coverage.check_code = result.code
    message = result.message
    if message is not None and len(message) > _MESSAGE_MAX:
        message = message[: _MESSAGE_MAX - 1] + "…"
    coverage.check_message = message
    coverage.checked_at = utcnow()
    coverage.raw_response = result.raw
    for name in _CARD_DETAILS:
        value = getattr(result, name)
        if value is not None:
            setattr(coverage, name, value)
    if result.card_number is not None and len(result.card_number) == 15:
        coverage.issuing_province = result.card_number[3:5]


def recheck_unverified(session: Session, checker: CardChecker, *, limit: int = 100) -> int:
    """Checks again the latest card of each patient whose card is still unverified.

    Oldest first, at most ``limit`` cards; returns how many changed status. Rows are
    flushed, not committed: the caller owns the transaction. A stored card number or date
    of birth that no longer parses is logged and skipped.
    """
    latest = select(func.max(Coverage.id)).group_by(Coverage.patient_id).scalar_subquery()
    coverages = session.scalars(
        select(Coverage)
        .where(Coverage.id.in_(latest), Coverage.status == CardStatus.UNVERIFIED)
        .order_by(Coverage.id)
        .limit(limit)
    ).all()
    today = local_today()
    changed = 0
    for coverage in coverages:
        patient = session.get(Patient, coverage.patient_id)
        if patient is None:  # pragma: no cover - the foreign key forbids it
            continue
        try:
            card = parse_bhyt_card(coverage.card_number)
            birth = patient.birth
        except InvalidValue:
            log.warning("bhyt_recheck_skipped", coverage_id=coverage.id)
            continue
        result = checker.check(session, card, full_name=patient.full_name, birth=birth, on=today)
        before = coverage.status
        apply_check(coverage, result)
        if coverage.status != before:
            changed += 1
    session.flush()
    return changed


def checker_for(settings: Settings) -> CardChecker:
    """The checker a deployment's HIS_BHYT_GATEWAY_* settings describe."""
    return checker_from_settings(
        settings.bhyt_gateway_url,
        settings.bhyt_gateway_username,
        settings.bhyt_gateway_password,
        settings.bhyt_gateway_timeout,
        staff_name=settings.bhyt_gateway_staff_name or None,
        staff_cccd=settings.bhyt_gateway_staff_cccd or None,
    )
