"""Sending signed prescriptions to the national e-prescription system (Hệ thống đơn thuốc
quốc gia, QĐ 808/QĐ-BYT connection specification).

The payload is built once, when the prescription is signed, and stored in an
:class:`EPrescriptionSubmission` in the same transaction: what is sent is exactly what was
signed, however often it has to be sent. :func:`send_pending` sends the submissions that are
due; a network fault or a server error (5xx, 429) schedules another try with exponential
backoff, so a prescription is retried until the system accepts it, and a refusal (4xx) is
kept for a person to look at. The system's answer is stored either way.

A replaced prescription that the system has not accepted yet is withdrawn (never sent);
one it has accepted is named by its replacement's payload.

The field names follow the payloads of public integrations (DOMAIN.md §3.2); the endpoint
path, the authentication, the sex codes and the field naming the replaced prescription
(``ma_don_thuoc_thay_the``) are not confirmed by an official text **[verify]** against the
connection specification before production.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from his.config import Settings
from his.db import utcnow
from his.localtime import VN_TZ
from his.logging import get_logger
from his.models import (
    EPrescriptionSubmission,
    IdentifierType,
    Prescription,
    PrescriptionStatus,
    Sex,
    SubmissionStatus,
    User,
)

log = get_logger(__name__)

SUBMIT_PATH = "/api/v1/gui-don-thuoc"  # [verify] against QĐ 808/QĐ-BYT
RETRY_BASE = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(hours=1)
# A claimed submission is left alone this long; longer than any one send can take.
CLAIM_LEASE = dt.timedelta(minutes=5)
# Claims convention (GIOI_TINH): 1 male, 2 female, 3 not determined [verify].
SEX_CODES = {Sex.MALE: 1, Sex.FEMALE: 2, Sex.UNDETERMINED: 3}
_ERROR_MAX = 1000


def _day(value: dt.date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _number(value: Decimal | None) -> str:
    if value is None:
        return ""
    text = f"{Decimal(value):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usage(item) -> str:
    """How to take it, in Vietnamese as the national system and the patient read it."""
    text = (
        f"{item.route.capitalize()}, mỗi lần {_number(item.dose)} {item.drug.unit}, "
        f"ngày {item.times_per_day} lần, trong {item.days} ngày"
    )
    if item.instructions:
        text += f". {item.instructions}"
    return text


def _guardian(rx: Prescription) -> str:
    if not rx.guardian_name:
        return ""
    if rx.guardian_id_number:
        return f"{rx.guardian_name}, CCCD {rx.guardian_id_number}"
    return rx.guardian_name


def locked_submission(session: Session, prescription_id: int) -> EPrescriptionSubmission | None:
    """The submission of a prescription, its row held (PostgreSQL) until the commit."""
    return session.scalar(
        select(EPrescriptionSubmission)
        .where(EPrescriptionSubmission.prescription_id == prescription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def withdraw(submission: EPrescriptionSubmission) -> None:
    """The prescription was replaced: unless the system already accepted it, it is never
    sent (an accepted one is named by the replacement instead)."""
    if submission.status is not SubmissionStatus.ACCEPTED:
        submission.status = SubmissionStatus.WITHDRAWN


def replaced_code(session: Session, rx: Prescription) -> str:
    """The code of the prescription ``rx`` replaces, when the national system holds it."""
    if rx.replaces_id is None:
        return ""
    row = session.execute(
        select(Prescription.code, EPrescriptionSubmission.status)
        .join(EPrescriptionSubmission, EPrescriptionSubmission.prescription_id == Prescription.id)
        .where(Prescription.id == rx.replaces_id)
    ).first()
    if row is None or row.status is not SubmissionStatus.ACCEPTED:
        return ""
    return row.code or ""


def build_payload(session: Session, rx: Prescription) -> dict[str, Any]:
    """The submission of a signed prescription, as the national system expects it."""
    patient = rx.patient
    encounter = rx.encounter
    signer = session.get(User, rx.signed_by_id) if rx.signed_by_id else None
    cccd = patient.identifier(IdentifierType.CCCD) or ""
    card = patient.coverage
    signed_local = rx.signed_at.astimezone(VN_TZ) if rx.signed_at else None
    diagnoses = sorted(encounter.diagnoses, key=lambda d: (not d.is_main, d.position))
    return {
        "ma_don_thuoc": rx.code,
        "loai_don_thuoc": rx.rx_type.value,
        "ma_co_so_kham_chua_benh": rx.code[:5] if rx.code else "",
        "ho_ten_benh_nhan": patient.full_name,
        # Decree 102/2025: the personal identification number is the health identity too.
        "ma_dinh_danh_y_te": cccd,
        "ma_dinh_danh_cong_dan": cccd,
        "ngay_sinh_benh_nhan": patient.birth.display(),
        "can_nang": _number(rx.weight_kg),
        "thang_tuoi": rx.age_months if rx.age_months is not None else "",
        "gioi_tinh": SEX_CODES[patient.sex],
        "ma_so_the_bao_hiem_y_te": card.card_number if card else "",
        "thong_tin_nguoi_giam_ho": _guardian(rx),
        "dia_chi": patient.address_line or "",
        "chan_doan": [
            {
                "ma_chan_doan": d.icd10_code,
                "ten_chan_doan": d.title,
                "ket_luan": encounter.conclusion or "",
            }
            for d in diagnoses
        ],
        "luu_y": rx.replacement_reason or "",
        # [verify] the field name: the accepted prescription this one replaces.
        "ma_don_thuoc_thay_the": replaced_code(session, rx),
        "dot_dung_thuoc": 1,
        "thong_tin_don_thuoc": [
            {
                "ma_thuoc": item.drug.national_code or item.drug_code,
                "biet_duoc": item.drug.brand or "",
                "ten_thuoc": item.drug_name,
                "don_vi_tinh": item.drug.unit,
                "so_luong": _number(item.quantity),
                "cach_dung": usage(item),
            }
            for item in rx.items
        ],
        "loi_dan": rx.advice or "",
        "ngay_tai_kham": _day(rx.follow_up_date),
        "ngay_gio_ke_don": signed_local.strftime("%Y-%m-%d %H:%M:%S") if signed_local else "",
        "ma_lien_thong_bac_si": (signer.eprescription_code or "") if signer else "",
        "ten_bac_si": signer.full_name if signer else "",
        "thoi_gian_ky": signed_local.isoformat(timespec="seconds") if signed_local else "",
        # The SHA-256 of the signed content until a digital signature is wired in.
        "signature": rx.content_hash or "",
    }


def queue(session: Session, rx: Prescription, now: dt.datetime) -> EPrescriptionSubmission:
    """Called by signing, inside its transaction."""
    submission = EPrescriptionSubmission(
        prescription_id=rx.id,
        payload=build_payload(session, rx),
        status=SubmissionStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(submission)
    session.flush()
    return submission


# --- the client ------------------------------------------------------------------------------


class EPrescriptionUnavailable(Exception):
    """The system could not be reached or failed (5xx, 429): try again later."""


@dataclass(frozen=True)
class Answer:
    accepted: bool
    status_code: int
    body: Any  # the JSON answer, or {"text": ...} when it is not JSON


class EPrescriptionClient:
    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self._auth = httpx.BasicAuth(username, password)
        self._timeout = timeout
        self._transport = transport

    def submit(self, payload: dict[str, Any]) -> Answer:
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
                response = client.post(self.url + SUBMIT_PATH, json=payload, auth=self._auth)
        except httpx.HTTPError as exc:
            raise EPrescriptionUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise EPrescriptionUnavailable(f"HTTP {response.status_code}: {response.text[:300]}")
        try:
            body: Any = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {"text": response.text[:2000]}
        return Answer(accepted=response.is_success, status_code=response.status_code, body=body)


def client_from_settings(settings: Settings) -> EPrescriptionClient | None:
    """None when no URL is configured: submissions then wait, pending."""
    if not settings.eprescription_url:
        return None
    return EPrescriptionClient(
        settings.eprescription_url,
        settings.eprescription_username,
        settings.eprescription_password,
        timeout=settings.eprescription_timeout,
    )


# --- sending ---------------------------------------------------------------------------------


@dataclass
class SendReport:
    accepted: int = 0
    rejected: int = 0
    retry: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + self.retry


def backoff(attempts: int) -> dt.timedelta:
    """1, 2, 4, … minutes after each failed try, at most an hour."""
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_MAX)


def due(session: Session, now: dt.datetime, limit: int) -> list[EPrescriptionSubmission]:
    return list(
        session.scalars(
            select(EPrescriptionSubmission)
            .join(Prescription, Prescription.id == EPrescriptionSubmission.prescription_id)
            .where(
                EPrescriptionSubmission.status == SubmissionStatus.PENDING,
                EPrescriptionSubmission.next_attempt_at <= now,
                # Replacing withdraws the submission; this holds even if a row escaped that.
                Prescription.status == PrescriptionStatus.SIGNED,
            )
            .order_by(EPrescriptionSubmission.next_attempt_at, EPrescriptionSubmission.id)
            .limit(limit)
            # Several senders may run: each takes rows the others have not locked.
            .with_for_update(skip_locked=True, of=EPrescriptionSubmission)
        )
    )


def send_pending(
    session: Session, client: EPrescriptionClient, now: dt.datetime | None = None, limit: int = 20
) -> SendReport:
    """Sends what is due. It commits: the due rows are claimed (a lease, so a sender that
    dies mid-round leaves them to the next) in one short transaction, and each answer is
    stored in another, so no lock is held while waiting for the network — on SQLite a write
    lock held that long would stop every other writer of the station."""
    now = now or utcnow()
    report = SendReport()
    claimed = []
    for submission in due(session, now, limit):
        submission.attempts += 1
        submission.next_attempt_at = now + CLAIM_LEASE
        claimed.append((submission.id, submission.payload))
    session.commit()
    for submission_id, payload in claimed:
        try:
            answer: Answer | None = client.submit(payload)
            error = None
        except EPrescriptionUnavailable as exc:
            answer, error = None, str(exc)[:_ERROR_MAX]
        # Read again under lock: the prescription may have been replaced meanwhile.
        submission = session.get(
            EPrescriptionSubmission, submission_id, with_for_update=True, populate_existing=True
        )
        assert submission is not None
        _record(submission, answer, error, now, report)
        session.commit()
    return report


def _record(
    submission: EPrescriptionSubmission,
    answer: Answer | None,
    error: str | None,
    now: dt.datetime,
    report: SendReport,
) -> None:
    if submission.status is SubmissionStatus.WITHDRAWN:
        _record_withdrawn(submission, answer, error, now, report)
        return
    if answer is None:
        submission.last_error = error
        submission.next_attempt_at = now + backoff(submission.attempts)
        report.retry += 1
        log.warning(
            "eprescription.retry",
            submission_id=submission.id,
            attempts=submission.attempts,
            error=error,
        )
        return
    submission.response = answer.body
    if answer.accepted:
        submission.status = SubmissionStatus.ACCEPTED
        submission.accepted_at = now
        submission.last_error = None
        report.accepted += 1
        return
    submission.status = SubmissionStatus.REJECTED
    submission.last_error = f"HTTP {answer.status_code}"
    report.rejected += 1
    log.warning(
        "eprescription.rejected", submission_id=submission.id, status_code=answer.status_code
    )


def _record_withdrawn(
    submission: EPrescriptionSubmission,
    answer: Answer | None,
    error: str | None,
    now: dt.datetime,
    report: SendReport,
) -> None:
    """Replaced while it was being sent. Not sent again; but if the system accepted it, it
    holds a prescription the replacement does not name, and a person must cancel it there."""
    if answer is None or not answer.accepted:
        submission.last_error = error or (f"HTTP {answer.status_code}" if answer else None)
        if answer is not None:
            submission.response = answer.body
        report.rejected += 1
        return
    submission.response = answer.body
    submission.status = SubmissionStatus.ACCEPTED
    submission.accepted_at = now
    submission.last_error = "accepted after its prescription was replaced: cancel it there"
    report.accepted += 1
    log.error("eprescription.accepted_after_replacement", submission_id=submission.id)


def pending_count(session: Session) -> int:
    return session.scalar(
        select(func.count())
        .select_from(EPrescriptionSubmission)
        .where(EPrescriptionSubmission.status == SubmissionStatus.PENDING)
    )
