"""VietQR payloads: the QR a patient scans with any Vietnamese banking app to pay a bill.

VietQR is NAPAS's profile of the EMVCo merchant-presented QR. The payload is a run of
data objects, each written as a two-digit ID, a two-digit length and the value; some
values (templates) are themselves such runs. What this module writes:

====  =============================================================================
ID    value
====  =============================================================================
00    payload format indicator, always ``01``
01    point of initiation: ``11`` static (same code for many payments), ``12`` dynamic
      (one code for one payment; used here whenever the amount is fixed)
38    merchant account template: 00 NAPAS's GUID ``A000000727``; 01 the beneficiary
      organisation (itself a template: 00 the bank's 6-digit NAPAS BIN, 01 the account
      number, at most 19 characters); 02 the service code ``QRIBFTTA`` (24/7
      inter-bank transfer to an account; ``QRIBFTTC`` would be to a card)
53    currency, ISO 4217 numeric: ``704`` (VND)
54    amount; VND has no minor unit, so whole dong, at most 13 characters
58    country, ISO 3166-1 alpha-2: ``VN``
59    merchant name, at most 25 characters (optional here)
60    merchant city, at most 15 characters (optional here)
62    additional data template; sub-ID 08 "purpose of transaction", at most 25
      characters: banking apps prefill the transfer note with it, and the bank's
      credit notification carries the note back, which is how a payment is matched
      to its bill (see :func:`bill_reference`)
63    CRC-16/CCITT-FALSE (ISO/IEC 13239: polynomial 0x1021, initial value 0xFFFF) over
      the whole payload up to and including ``6304``, as four upper-case hex digits
====  =============================================================================

Sources of these facts (read, not copied):

* EMV QR Code Specification for Payment Systems, Merchant-Presented Mode, v1.0 (2017)
  and v1.1 (2020), EMVCo: the ID/length/value layout with lengths ``01``–``99``; ``11``
  and ``12`` for ID 01; the CRC's polynomial, initial value and coverage (restated in
  PayOn's KHQR library documentation, "QR code payload data objects"); the lengths of
  IDs 59 and 60 (as tabulated in the README of the Kaligo/emv-qr encoder).
* Technical Specifications on NAPAS QR Switching, Part IV: QR Code Format, v1.5.2
  (NAPAS, January 2021), the VietQR specification, in the summaries of the READMEs of
  giautm/emvqr-go (template 38's sub-IDs, the 19-character account number, 62/08 up to
  25 characters) and of unicubevn/vietqr-payment-js (the service codes QRPUSH,
  QRIBFTTA, QRIBFTTC).
* The worked payloads in the READMEs of duyquoc1508/napas-qr and subiz/vietqr, which the
  tests re-parse and whose CRCs they check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import segno

from his.text import fold_vi

__all__ = [
    "PaymentAccount",
    "bill_reference",
    "build_payload",
    "crc16_ccitt_false",
    "parse_bill_reference",
    "parse_payload",
    "qr_data_uri",
]

NAPAS_GUID = "A000000727"
SERVICE_TO_ACCOUNT = "QRIBFTTA"
CURRENCY_VND = "704"
COUNTRY_VN = "VN"

STATIC = "11"
DYNAMIC = "12"

MAX_AMOUNT_DIGITS = 13
MAX_ACCOUNT_NUMBER = 19
MAX_MERCHANT_NAME = 25
MAX_MERCHANT_CITY = 15
# The transfer note: EMVCo (and the VietQR profile) cap "purpose of transaction" (62/08)
# at 25 characters, so a longer note makes a code that does not follow the standard and
# that an app may refuse or cut short. Within 25, the note reaches the receiving bank
# whole, which then wraps it in its own description (see parse_bill_reference).
MAX_REFERENCE = 25

_BIN = re.compile(r"[0-9]{6}")
_ACCOUNT_NUMBER = re.compile(r"[0-9A-Za-z]{1,19}")
# Plain ASCII letters, digits, space and - . /: anything else (accents, other punctuation)
# is stripped or replaced by some bank on the way, and the note would not come back as sent.
_REFERENCE = re.compile(r"[A-Za-z0-9 ./-]+")

# Templates whose value is itself a run of data objects, by the path of IDs leading to them.
_TEMPLATES = {("38",), ("38", "01"), ("62",)}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


@dataclass(frozen=True)
class PaymentAccount:
    """The hospital's receiving account: the bank's NAPAS BIN and the account number.

    ``merchant_name`` and ``city`` are optional: a transfer needs only the BIN and the
    account number (the published VietQR examples carry neither).
    """

    bank_bin: str
    account_number: str
    merchant_name: str | None = None
    city: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bank_bin, str) or not _BIN.fullmatch(self.bank_bin):
            raise ValueError(
                f"bank_bin must be the bank's 6-digit NAPAS BIN, not {self.bank_bin!r}"
            )
        if not isinstance(self.account_number, str) or not _ACCOUNT_NUMBER.fullmatch(
            self.account_number
        ):
            raise ValueError(
                f"account_number must be 1–{MAX_ACCOUNT_NUMBER} letters or digits, "
                f"not {self.account_number!r}"
            )
        # Fail here rather than at the first bill: the name and city must fold to ASCII.
        if self.merchant_name is not None:
            _ascii_field("merchant_name", self.merchant_name, MAX_MERCHANT_NAME)
        if self.city is not None:
            _ascii_field("city", self.city, MAX_MERCHANT_CITY)


def _ascii_field(field: str, text: str, limit: int) -> str:
    """``text`` as banks write names: no accents, ``đ`` as ``D``, upper case, single spaces."""
    folded = fold_vi(text).upper()
    if not folded:
        raise ValueError(f"{field} is empty")
    if not all(" " <= ch <= "~" for ch in folded):
        raise ValueError(f"{field} has characters with no ASCII form: {text!r}")
    if len(folded) > limit:
        raise ValueError(f"{field} is {len(folded)} characters once folded, at most {limit}")
    return folded


def _tlv(field: str, tag: str, value: str) -> str:
    if not value:
        raise ValueError(f"{field} (ID {tag}) is empty")
    if len(value) > 99:
        raise ValueError(f"{field} (ID {tag}) is {len(value)} characters, at most 99")
    return f"{tag}{len(value):02d}{value}"


def _check_amount(amount: int) -> str:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be a whole number of dong, not {amount!r}")
    if amount <= 0:
        raise ValueError(f"amount must be positive, not {amount}")
    text = str(amount)
    if len(text) > MAX_AMOUNT_DIGITS:
        raise ValueError(f"amount has {len(text)} digits, at most {MAX_AMOUNT_DIGITS}")
    return text


def _check_reference(reference: str) -> str:
    if not isinstance(reference, str) or not reference:
        raise ValueError("reference is empty")
    if not _REFERENCE.fullmatch(reference):
        raise ValueError(
            f"reference may hold only A–Z, a–z, 0–9, space, '-', '.' and '/': {reference!r}"
        )
    if len(reference) > MAX_REFERENCE:
        raise ValueError(f"reference is {len(reference)} characters, at most {MAX_REFERENCE}")
    return reference


def build_payload(account: PaymentAccount, amount: int | None, reference: str) -> str:
    """The VietQR payload asking for ``amount`` dong (any amount if ``None``) to ``account``,
    with ``reference`` as the transfer note."""
    reference = _check_reference(reference)
    amount_text = None if amount is None else _check_amount(amount)

    beneficiary = _tlv("bank_bin", "00", account.bank_bin) + _tlv(
        "account_number", "01", account.account_number
    )
    merchant_account = (
        _tlv("GUID", "00", NAPAS_GUID)
        + _tlv("beneficiary organisation", "01", beneficiary)
        + _tlv("service code", "02", SERVICE_TO_ACCOUNT)
    )
    parts = [
        _tlv("payload format indicator", "00", "01"),
        _tlv("point of initiation", "01", STATIC if amount_text is None else DYNAMIC),
        _tlv("merchant account information", "38", merchant_account),
        _tlv("currency", "53", CURRENCY_VND),
    ]
    if amount_text is not None:
        parts.append(_tlv("amount", "54", amount_text))
    parts.append(_tlv("country", "58", COUNTRY_VN))
    if account.merchant_name is not None:
        name = _ascii_field("merchant_name", account.merchant_name, MAX_MERCHANT_NAME)
        parts.append(_tlv("merchant_name", "59", name))
    if account.city is not None:
        city = _ascii_field("city", account.city, MAX_MERCHANT_CITY)
        parts.append(_tlv("city", "60", city))
    parts.append(_tlv("additional data", "62", _tlv("reference", "08", reference)))

    body = "".join(parts) + "6304"
    return f"{body}{crc16_ccitt_false(body.encode('ascii')):04X}"


def _data_objects(text: str, path: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """The (ID, value, offset of the value) of each data object in ``text``."""
    where = "/".join(path) or "payload"
    objects = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        head = text[pos : pos + 4]
        if len(head) < 4:
            raise ValueError(f"{where}: truncated data object at offset {pos}: {head!r}")
        tag, length_text = head[:2], head[2:]
        if not (tag.isascii() and tag.isdigit()):
            raise ValueError(f"{where}: ID {tag!r} at offset {pos} is not two digits")
        if not (length_text.isascii() and length_text.isdigit()) or length_text == "00":
            raise ValueError(f"{where}: ID {tag} has length {length_text!r}, not 01–99")
        length = int(length_text)
        value = text[pos + 4 : pos + 4 + length]
        if len(value) < length:
            raise ValueError(f"{where}: ID {tag} is truncated: {len(value)} of {length} characters")
        if tag in seen:
            raise ValueError(f"{where}: ID {tag} appears twice")
        seen.add(tag)
        objects.append((tag, value, pos + 4))
        pos += 4 + length
    return objects


def _parse_level(text: str, path: tuple[str, ...]) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for tag, value, _ in _data_objects(text, path):
        inner = (*path, tag)
        parsed[tag] = _parse_level(value, inner) if inner in _TEMPLATES else value
    return parsed


def parse_payload(payload: str) -> dict[str, object]:
    """The data objects of a payload by ID, templates 38 (with its 01) and 62 as dicts.

    Raises ``ValueError`` on a truncated or malformed data object, an ID that appears
    twice in the same template, a missing or misplaced CRC, or a CRC that does not match.
    """
    objects = _data_objects(payload, ())
    if not objects or objects[-1][0] != "63":
        raise ValueError("payload does not end with the CRC (ID 63)")
    _, crc_text, crc_at = objects[-1]
    if len(crc_text) != 4 or not all(ch in "0123456789ABCDEFabcdef" for ch in crc_text):
        raise ValueError(f"CRC (ID 63) must be 4 hex digits, not {crc_text!r}")
    expected = crc16_ccitt_false(payload[:crc_at].encode("utf-8"))
    if int(crc_text, 16) != expected:
        raise ValueError(f"CRC mismatch: payload says {crc_text}, content gives {expected:04X}")
    return _parse_level(payload, ())


# --- Bill references -------------------------------------------------------------------
#
# HIS + the 5-character facility code + B + the bill id + one check letter, e.g.
# HIS91001B42F. Banks upper-case the note, drop punctuation and add their own words,
# sometimes with no space between, so the reference is letters and digits only, its
# parts have fixed widths or fixed delimiters, and the check letter ends the digit run:
# "HIS91001B42F0912..." still reads as bill 42. The check letter also turns a mistyped
# bill id (a customer retyping the note) into no match rather than a payment credited to
# someone else's bill: always for one wrong digit or two swapped neighbours, otherwise in
# 22 cases out of 23.

_CHECK_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # 23 letters, a prime; no I, O, Q (read as 1, 0, 0)
_FACILITY = re.compile(r"[0-9A-Z]{5}")
# HIS, 5, B and the check letter leave 15 of the 25 characters for the bill id.
_MAX_BILL_DIGITS = MAX_REFERENCE - len("HIS") - 5 - len("B") - 1
_IN_NOTE = re.compile(rf"(?=HIS([0-9A-Z]{{5}})B([1-9][0-9]{{0,{_MAX_BILL_DIGITS - 1}}})([A-Z]))")


def _check_letter(facility_code: str, digits: str) -> str:
    # Horner's rule in base 36 modulo 23: every single-digit change and every swap of two
    # adjacent different digits changes the result, as 23 is prime and 36 ≢ 1 (mod 23).
    total = 0
    for ch in facility_code + digits:
        total = (total * 36 + int(ch, 36)) % len(_CHECK_LETTERS)
    return _CHECK_LETTERS[total]


def bill_reference(facility_code: str, bill_id: int) -> str:
    """The transfer note that identifies bill ``bill_id`` of facility ``facility_code``."""
    code = facility_code.upper() if isinstance(facility_code, str) else facility_code
    if not isinstance(code, str) or not _FACILITY.fullmatch(code):
        raise ValueError(f"facility_code must be 5 letters or digits, not {facility_code!r}")
    if isinstance(bill_id, bool) or not isinstance(bill_id, int) or bill_id <= 0:
        raise ValueError(f"bill_id must be a positive integer, not {bill_id!r}")
    digits = str(bill_id)
    if len(digits) > _MAX_BILL_DIGITS:
        raise ValueError(
            f"bill_id {bill_id} has more than {_MAX_BILL_DIGITS} digits: the reference "
            f"would be longer than {MAX_REFERENCE} characters"
        )
    return f"HIS{code}B{digits}{_check_letter(code, digits)}"


def parse_bill_reference(text: str) -> tuple[str, int] | None:
    """(facility code, bill id) of the first valid bill reference in a bank's transfer
    note, or ``None``. Case, punctuation and the bank's own words around it do not
    matter; neither do spaces or punctuation the bank put inside it."""
    upper = text.upper()
    compact = re.sub(r"[^0-9A-Z]", "", upper)
    for candidate in (upper, compact):
        for match in _IN_NOTE.finditer(candidate):
            code, digits, check = match.groups()
            if _check_letter(code, digits) == check:
                return code, int(digits)
    return None


# --- Rendering -------------------------------------------------------------------------


def qr_data_uri(payload: str) -> str:
    """The payload as a PNG QR code in a ``data:`` URI, error correction level M.

    Always a full QR symbol, never Micro QR (which common phone scanners do not read), at
    exactly level M: segno's default of raising the level when the symbol has room is
    turned off. The quiet zone is the 4 modules QR codes are specified with, as the code
    is scanned off screens and printed receipts alike.
    """
    qr = segno.make_qr(payload, error="m", boost_error=False)
    return qr.png_data_uri(scale=5, border=4)
