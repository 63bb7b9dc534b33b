"""Acknowledgements: building ours (ACK, batch ACK) and reading the peers' (parse_ack).

Rules the listener relies on (HL7 v2 ch. 2, and the field complaints in notes §1.4):
- MSH swaps sender and receiver, MSH-9 = ``ACK^<trigger>^ACK``, MSH-11/12/18 are copied, and
  the ACK uses the received message's delimiters, so a peer reads its ACK the way it writes.
- MSA-2 is the received MSH-10 (the sender matches on it).
- One ERR per error. From v2.5 on: ERR-2 location (ERL), ERR-3 table 0357 code (CWE), ERR-4
  severity, ERR-8 user message. Before 2.5 (2.1–2.4): ERR-1 (ELD ``seg^seq^field^code&text``).
- MSA-3 (text) is written only before v2.7, where it was withdrawn.
- When the peer declared ASCII/8859 (pure ASCII was required to accept it), the Vietnamese
  texts we add are folded to ASCII ("Thiếu" → "Thieu") so the ACK stays in its charset.
- The text returned has every segment terminated by CR (the HL7 segment terminator) and no
  MLLP framing; :func:`encode_ack` gives the bytes in the ACK's own MSH-18 charset.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import lazy_gettext as _l

from his.hl7v2.codec import (
    _UTF8_CHARSETS,
    SEGMENT_SEQUENCE,
    DecodeError,
    Delimiters,
    Hl7Error,
    Message,
    charset_encoding,
    normalise_version,
    parse,
    read_delimiters,
    strip_preamble,
)
from his.hl7v2.escapes import escape, unescape
from his.localtime import VN_TZ

__all__ = [
    "ACK_CODES",
    "AckInfo",
    "ErrorDetail",
    "build_ack",
    "build_batch_ack",
    "encode_ack",
    "format_ts",
    "parse_ack",
]

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

# Table 0357 texts (HL7's own English names, written into ERR-3.2 / ELD code text).
ERROR_TEXTS = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass
class ErrorDetail:
    """One ERR segment: table 0357 code, ERL location (``PID^1^3``), user text, severity."""

    code: int
    location: str
    text: str
    severity: str = "E"

    @classmethod
    def from_error(cls, error: Hl7Error) -> ErrorDetail:
        return cls(
            code=error.code,
            location=error.location,
            text=str(error.message),
            severity=error.severity,
        )


@dataclass
class AckInfo:
    """What a peer's ACK says; ``control_id_acked`` is MSA-2 (compare it with our MSH-10)."""

    code: str
    control_id_acked: str
    errors: list[ErrorDetail] = field(default_factory=list)
    text: str = ""
    control_id: str = ""  # the ACK's own MSH-10
    message: Message | None = None

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def format_ts(now: datetime) -> str:
    """``YYYYMMDDHHMMSS+0700`` in Viet Nam time; naive datetimes are refused (ambiguous)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("an aware datetime is required for HL7 timestamps")
    return now.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S%z")


def _fold_ascii(text: str) -> str:
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    return folded.encode("ascii", errors="replace").decode("ascii")


class _MshView:
    """The MSH fields an ACK copies, from a parsed message or read tolerantly from bytes."""

    def __init__(self, fields: dict[int, str], d: Delimiters):
        self.fields = fields  # field number → raw (escaped) text, in delimiters d
        self.d = d

    @classmethod
    def of_message(cls, msg: Message) -> _MshView:
        msh = msg.msh
        return cls({n: msh.field(n) for n in range(3, 22)}, msg.delimiters)

    @classmethod
    def of_bytes(cls, raw: bytes | None) -> _MshView:
        """Best effort for an ACK to a message we could not parse: never raises."""
        empty = cls({}, Delimiters.DEFAULT)
        if not raw:
            return empty
        body = strip_preamble(raw)
        if body[:3] != b"MSH":
            return empty
        end = len(body)
        for sep in (b"\r", b"\n"):
            pos = body.find(sep)
            if 0 <= pos < end:
                end = pos
        line = body[:end]
        try:
            d = read_delimiters(line)
        except DecodeError:
            return empty
        text = line.decode("utf-8", errors="replace")
        parts = text.split(d.field)
        fields = {n: parts[n - 1] for n in range(3, min(len(parts) + 1, 22))}
        return cls(fields, d)

    def raw(self, n: int) -> str:
        return self.fields.get(n, "")

    def value(self, n: int, component: int = 1) -> str:
        v = self.raw(n).split(self.d.repetition)[0].split(self.d.component)
        return unescape(v[component - 1], self.d).strip() if len(v) >= component else ""


def _readable_charset(charset: str) -> bool:
    """Whether MSH-18 names a character set the ACK can be written in. An unknown or garbled
    one is not copied: the ACK is then UTF-8 and must say so, or the peer cannot read it."""
    cs = charset.strip().upper()
    return cs in _UTF8_CHARSETS or _ascii_family(cs)


def _utf8_declaration(d: Delimiters) -> str:
    """MSH-18 for UTF-8 in the peer's delimiters; empty (read as UTF-8) when "-" is one of
    them and there is no escape character to write it with."""
    written = escape("UNICODE UTF-8", d)
    return written if unescape(written, d) == "UNICODE UTF-8" else ""


def _ascii_family(charset: str) -> bool:
    return charset_encoding(charset) == "ascii"


def _err_segments(
    errors: Iterable[ErrorDetail], version: str, d: Delimiters, clean
) -> list[list[str]]:
    """ERR segments as field lists (index 0 = 'ERR')."""
    old_style = _version_tuple(version) < (2, 5)
    segs = []
    for err in errors:
        code_text = ERROR_TEXTS.get(err.code, "")
        loc_parts = [escape(p, d) for p in err.location.split("^")] if err.location else []
        if old_style:
            sub = d.subcomponent or d.component
            eld = [*loc_parts[:3]]
            eld += [""] * (3 - len(eld))
            code_ce = sub.join([str(err.code), escape(clean(code_text), d), "HL70357"])
            eld.append(code_ce)
            segs.append(["ERR", d.component.join(eld)])
        else:
            cwe = d.component.join([str(err.code), escape(clean(code_text), d), "HL70357"])
            segs.append(
                [
                    "ERR",
                    "",
                    d.component.join(loc_parts),
                    cwe,
                    escape(err.severity or "E", d),
                    "",
                    "",
                    "",
                    escape(clean(err.text), d),
                ]
            )
    return segs


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in normalise_version(version).split("."))
    except ValueError:
        return (2, 5)


def _join(fields: Sequence[str], d: Delimiters) -> str:
    fields = list(fields)
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return d.field.join(fields)


def build_ack(
    received: Message | None,
    code: str,
    *,
    control_id: str,
    now: datetime,
    errors: Sequence[ErrorDetail] = (),
    text: str = "",
    raw: bytes | None = None,
    accept_ack: str = "",
) -> str:
    """The ACK to ``received`` (or, if None, to whatever MSH can be read from ``raw``).
    ``accept_ack`` (MSH-15) asks the peer to confirm receipt of this ACK: an enhanced-mode
    application ACK travels as a message of its own and wants ``AL``."""
    if code not in ACK_CODES:
        raise ValueError(f"not an acknowledgment code: {code!r}")
    view = _MshView.of_message(received) if received is not None else _MshView.of_bytes(raw)
    d = view.d
    charset = view.value(18)
    clean = _fold_ascii if _ascii_family(charset) else (lambda s: s)

    def copy(n: int) -> str:
        # Raw field text is copied as is (components kept): it is already escaped for d.
        return clean(view.raw(n))

    version_field = copy(12) or "2.5"
    version = view.value(12) or "2.5"
    trigger = view.value(9, 2)
    msg_type = d.component.join(["ACK", escape(trigger, d), "ACK"]) if trigger else "ACK"
    if trigger and _version_tuple(version) < (2, 3, 1):
        msg_type = d.component.join(["ACK", escape(trigger, d)])
    msh = [
        "MSH",
        d.encoding_characters,
        copy(5),
        copy(6),
        copy(3),
        copy(4),
        # Escaped: a peer whose field separator is "+" would otherwise read +0700 as MSH-8.
        escape(format_ts(now), d),
        "",
        msg_type,
        escape(clean(control_id), d),
        copy(11) or "P",
        version_field,
        "",
        "",
        accept_ack,
        "NE" if accept_ack else "",
        copy(17),
        copy(18) if _readable_charset(charset) else _utf8_declaration(d),
    ]
    acked = view.value(10)
    msa = ["MSA", code, escape(clean(acked), d)]
    if not text and errors and _version_tuple(version) < (2, 5):
        text = errors[0].text  # ELD has no room for the user message: MSA-3 carries it
    if text and _version_tuple(version) < (2, 7):
        msa.append(escape(clean(text), d))
    segments = [_join(msh, d), _join(msa, d)]
    segments += [_join(s, d) for s in _err_segments(errors, version, d, clean)]
    return "\r".join(segments) + "\r"


def encode_ack(ack_text: str) -> bytes:
    """The bytes of an ACK/batch ACK in the charset its own MSH-18 declares."""
    charset = ""
    for line in ack_text.split("\r"):
        if line.startswith("MSH") and len(line) > 3:
            parts = line.split(line[3])
            if len(parts) > 17:
                enc = parts[1]
                charset = parts[17].split(enc[1:2] or "~")[0].split(enc[:1] or "^")[0]
            break
    return ack_text.encode(charset_encoding(charset), errors="replace")


def build_batch_ack(
    batch,
    acks: Sequence[str],
    *,
    control_id: str,
    now: datetime,
) -> str:
    """A response batch ``[FHS] BHS {ACK} BTS [FTS]`` wrapping ``acks`` (texts from build_ack).

    ``batch`` is the :class:`his.hl7v2.batch.Batch` acknowledged (or None if unreadable):
    its headers give the swapped sender/receiver and delimiters; BHS-12 (and FHS-12) carry the
    acknowledged batch (file) control ID. FHS/FTS are written only if the batch had an FHS.
    BTS-1 is the number of ACK messages, FTS-1 the number of batches (1).
    """
    d = batch.delimiters if batch is not None else Delimiters.DEFAULT
    header = batch.header if batch is not None else None

    def hdr(n: int) -> str:
        return header.field(n) if header is not None else ""

    ts = escape(format_ts(now), d)
    cid = escape(control_id, d)
    swapped = [hdr(5), hdr(6), hdr(3), hdr(4), ts]
    segments = []
    has_file = batch is not None and batch.file_header is not None
    if has_file:
        fhs = batch.file_header
        segments.append(
            _join(
                [
                    "FHS",
                    d.encoding_characters,
                    fhs.field(5),
                    fhs.field(6),
                    fhs.field(3),
                    fhs.field(4),
                    ts,
                    "",
                    "",
                    "",
                    cid,
                    fhs.field(11),
                ],
                d,
            )
        )
    acked_batch = batch.batch_control_id if batch is not None else ""
    segments.append(
        _join(["BHS", d.encoding_characters, *swapped, "", "", "", cid, escape(acked_batch, d)], d)
    )
    body = "".join(a if a.endswith("\r") else a + "\r" for a in acks)
    trailer = [_join(["BTS", str(len(acks))], d)]
    if has_file:
        trailer.append(_join(["FTS", "1"], d))
    return "\r".join(segments) + "\r" + body + "\r".join(trailer) + "\r"


def parse_ack(data: bytes | str) -> AckInfo:
    """Read a peer's ACK (original or enhanced). Raises DecodeError if it has no usable MSA."""
    msg = parse(data, check_required=False)
    msa = msg.segment("MSA")
    if msa is None or not msa.get(1).strip():
        raise DecodeError(
            _l("The acknowledgment has no MSA segment or no MSA-1 code."),
            code=SEGMENT_SEQUENCE if msa is None else 101,
            location="MSA^1" if msa is None else "MSA^1^1",
        )
    code = msa.get(1).strip().upper()
    errors: list[ErrorDetail] = []
    for err in msg.all("ERR"):
        if err.field(3):  # v2.5+ layout
            loc = "^".join(err.components(2))
            errors.append(
                ErrorDetail(
                    code=_int(err.get(3, 1)),
                    location=loc.rstrip("^"),
                    text=err.get(8) or err.get(3, 2),
                    severity=err.get(4) or "E",
                )
            )
        elif err.field(1):  # ELD: seg^seq^field^code&text&system
            for rep in range(1, len(err.repetitions(1)) + 1):
                parts = [err.get(1, c, 1, rep) for c in (1, 2, 3)]
                errors.append(
                    ErrorDetail(
                        code=_int(err.get(1, 4, 1, rep)),
                        location="^".join(parts).rstrip("^"),
                        text=err.get(1, 4, 2, rep),
                    )
                )
    if not errors and msa.get(6):  # MSA-6 error condition (pre-2.5)
        errors.append(ErrorDetail(code=_int(msa.get(6, 1)), location="", text=msa.get(6, 2)))
    return AckInfo(
        code=code,
        control_id_acked=msa.get(2).strip(),
        errors=errors,
        text=msa.get(3),
        control_id=msg.control_id,
        message=msg,
    )


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return 0
