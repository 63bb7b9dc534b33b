"""A fast, strict-where-it-matters HL7 v2 (ER7) reader for the ingest path.

Why our own tokenizer: hl7apy costs ~20 ms per message and python-hl7 ~0.7 ms, splits segments
on CR only (an LF file becomes one segment) and decodes ``\\X..\\`` as Latin-1. This module
splits a message into segments and fields once (plain ``str.split``) and leaves components,
repetitions, sub-components and escapes to the accessors, so the common ingest work (MSH,
PID-3, PID-5) stays around 0.1 ms per message.

What is strict, and why:
- The character set comes from MSH-18, read from the raw bytes before anything is decoded.
  Only UTF-8 (``UNICODE UTF-8``, or an empty MSH-18 that must decode strictly as UTF-8) and
  pure-ASCII input declared ``ASCII``/``8859/n`` are accepted. Windows-1258 or TCVN3 bytes are
  refused (code 102 at MSH^1^18) instead of being read as Latin-1 into a patient's name.
- A message must start with MSH and hold exactly one message: batch envelopes (FHS/BHS/BTS/FTS)
  and a second MSH are refused here and handled by :mod:`his.hl7v2.batch`.
- MSH-9, MSH-10 and MSH-12 must be present (table 0357 code 101), since routing, the duplicate
  check and the ACK all need them. Unknown versions, types or events are *not* refused here:
  that is the caller's decision (codes 200/201/203) and depends on the peer's profile.

What is tolerant: CR, LF or CRLF segment ends; a UTF-8 BOM; blank lines and trailing
whitespace between segments; custom delimiters from MSH-1/MSH-2 (including a two- or
three-character MSH-2 and the v2.7 truncation character); Z-segments anywhere.

Locations in errors use the ERR-2 (ERL) layout: ``segment^sequence^field^repetition^component``
(``MSH^1^18``, ``PID^1^3^2`` = second repetition of PID-3). The listener copies them into ERR-2
as they are.

A parse of a 7-segment ADT^A04 takes ~0.03-0.06 ms here (see the comment in
tests/hl7v2/test_codec.py); no timed tests, as the machine is shared.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from flask_babel import lazy_gettext as _l

from his.hl7v2.escapes import unescape

__all__ = [
    "SUPPORTED_VERSIONS",
    "DecodeError",
    "Delimiters",
    "Hl7Error",
    "Message",
    "Segment",
    "charset_encoding",
    "normalise_version",
    "parse",
]

SUPPORTED_VERSIONS = (
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.7.1",
    "2.8",
    "2.8.1",
    "2.8.2",
)

# Table 0357 codes, named for readability at call sites.
SEGMENT_SEQUENCE = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION = 203
UNKNOWN_KEY = 204
DUPLICATE_KEY = 205
RECORD_LOCKED = 206
INTERNAL_ERROR = 207

_BOM = b"\xef\xbb\xbf"
_UTF8_CHARSETS = frozenset({"", "UNICODE UTF-8", "UTF-8", "UTF8"})
_ENVELOPE = frozenset({"MSH", "FHS", "BHS", "BTS", "FTS"})


class Hl7Error(Exception):
    """An HL7 problem worth an ERR segment: table 0357 code, ERL location and severity.

    ``message`` may be a lazy (flask_babel) string: it is kept lazy so that it is translated
    when the caller renders it (``str(err.message)``) inside an app context.
    """

    def __init__(self, message: Any, *, code: int, location: str = "", severity: str = "E"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.location = location
        self.severity = severity

    def __str__(self) -> str:
        return str(self.message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code}, location={self.location!r}, "
            f"message={str(self.message)!r})"
        )


class DecodeError(Hl7Error):
    """Framing, character-set or structure problem: the message cannot be read as HL7.

    ``partial`` holds the parsed message when only required MSH fields were missing, so that
    an ACK can still copy what was readable.
    """

    def __init__(
        self,
        message: Any,
        *,
        code: int,
        location: str = "",
        severity: str = "E",
        partial: Message | None = None,
    ):
        super().__init__(message, code=code, location=location, severity=severity)
        self.partial = partial


@dataclass(frozen=True)
class Delimiters:
    """The separators of one message, from MSH-1 and MSH-2 (never assumed)."""

    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str
    truncation: str = ""

    DEFAULT: ClassVar[Delimiters]

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it must be written for these delimiters."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


Delimiters.DEFAULT = Delimiters("|", "^", "~", "\\", "&", "")


def normalise_version(version: str) -> str:
    """``2.3.0`` → ``2.3``, ``2.5.0`` → ``2.5`` (senders pad the version; nHapi #53)."""
    v = version.strip()
    while v.count(".") >= 2 and v.endswith(".0"):
        v = v[:-2]
    return v


def charset_encoding(charset: str) -> str:
    """The Python codec for a supported MSH-18 value: ``ascii`` for ASCII/8859, else utf-8."""
    cs = charset.strip().upper()
    if cs == "ASCII" or cs.startswith("8859/"):
        return "ascii"
    return "utf-8"


def _nfc(s: str) -> str:
    return s if s.isascii() else unicodedata.normalize("NFC", s)


class Segment:
    """One segment; ``field(n)`` is field n as numbered by the standard (MSH-1 is the separator)."""

    __slots__ = ("_d", "_f", "name")

    def __init__(self, name: str, fields: list[str], delimiters: Delimiters):
        self.name = name
        # _f[0] is the segment name, _f[n] field n (for MSH, _f[1] is the field separator).
        self._f = fields
        self._d = delimiters

    def __repr__(self) -> str:
        return f"<Segment {self.to_er7()[:60]!r}>"

    def __len__(self) -> int:
        """Number of fields present (the highest field number)."""
        return len(self._f) - 1

    @property
    def delimiters(self) -> Delimiters:
        return self._d

    def to_er7(self) -> str:
        """The segment text as received (escaped)."""
        if self.name == "MSH":
            return "MSH" + self._f[1] + self._f[1].join(self._f[2:])
        return self._d.field.join(self._f)

    def field(self, n: int) -> str:
        """Field n, raw and still escaped ("" when absent)."""
        f = self._f
        return f[n] if 0 < n < len(f) else ""

    def repetitions(self, n: int) -> list[str]:
        """The repetitions of field n, raw and escaped ([] when the field is empty)."""
        value = self.field(n)
        if not value:
            return []
        if self.name == "MSH" and n <= 2:
            return [value]
        return value.split(self._d.repetition)

    def _repetition(self, n: int, repetition: int) -> str:
        value = self.field(n)
        if not value or (self.name == "MSH" and n <= 2):
            return value if repetition == 1 else ""
        if self._d.repetition not in value:
            return value if repetition == 1 else ""
        reps = value.split(self._d.repetition)
        return reps[repetition - 1] if 0 < repetition <= len(reps) else ""

    def components(self, n: int, repetition: int = 1) -> list[str]:
        """The components of one repetition of field n, unescaped and NFC ([] when empty)."""
        value = self._repetition(n, repetition)
        if not value:
            return []
        if self.name == "MSH" and n <= 2:
            return [value]
        d = self._d
        return [_nfc(unescape(c, d)) for c in value.split(d.component)]

    def get(
        self, field: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """One value, unescaped and NFC-normalised ("" when absent)."""
        value = self._repetition(field, repetition)
        if not value:
            return ""
        if self.name == "MSH" and field <= 2:
            return value if component == 1 and subcomponent == 1 else ""
        d = self._d
        if d.component in value:
            comps = value.split(d.component)
            value = comps[component - 1] if 0 < component <= len(comps) else ""
        elif component != 1:
            return ""
        if d.subcomponent and d.subcomponent in value:
            subs = value.split(d.subcomponent)
            value = subs[subcomponent - 1] if 0 < subcomponent <= len(subs) else ""
        elif subcomponent != 1:
            return ""
        return _nfc(unescape(value, d)) if value else ""


class Message:
    """A decoded single HL7 v2 message; build it with :func:`parse`."""

    __slots__ = ("_index", "charset", "delimiters", "encoding", "raw", "segments", "text")

    def __init__(
        self,
        raw: bytes,
        text: str,
        delimiters: Delimiters,
        segments: list[Segment],
        charset: str,
        encoding: str,
    ):
        self.raw = raw
        self.text = text
        self.delimiters = delimiters
        self.segments = segments
        self.charset = charset  # MSH-18.1 as declared (stripped), "" when absent
        self.encoding = encoding  # the Python codec the bytes were decoded with
        self._index: dict[str, list[Segment]] | None = None

    def __repr__(self) -> str:
        return f"<Message {self.message_code}^{self.trigger} {self.control_id!r}>"

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def _by_name(self) -> dict[str, list[Segment]]:
        if self._index is None:
            index: dict[str, list[Segment]] = {}
            for s in self.segments:
                index.setdefault(s.name, []).append(s)
            self._index = index
        return self._index

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        found = self._by_name().get(name)
        if not found or not 0 < occurrence <= len(found):
            return None
        return found[occurrence - 1]

    def all(self, name: str) -> list[Segment]:
        return list(self._by_name().get(name, ()))

    def get(self, path: str) -> str:
        """Value at a path like ``PID-3-1``, ``PID-3(2)-1``, ``OBX(2)-5``, ``MSH-9.2``."""
        name, occurrence, field, repetition, component, subcomponent = _parse_path(path)
        seg = self.segment(name, occurrence)
        if seg is None:
            return ""
        return seg.get(field, component, subcomponent, repetition)

    # MSH shortcuts -------------------------------------------------------------------------

    @property
    def control_id(self) -> str:
        return self.msh.get(10).strip()

    @property
    def message_code(self) -> str:
        return self.msh.get(9, 1).strip()

    @property
    def trigger(self) -> str:
        return self.msh.get(9, 2).strip()

    @property
    def structure(self) -> str:
        return self.msh.get(9, 3).strip()

    @property
    def version_raw(self) -> str:
        return self.msh.get(12, 1).strip()

    @property
    def version(self) -> str:
        return normalise_version(self.version_raw)

    @property
    def processing_id(self) -> str:
        return self.msh.get(11, 1).strip()

    @property
    def sending_application(self) -> str:
        return self.msh.get(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4)

    @property
    def receiving_application(self) -> str:
        return self.msh.get(5)

    @property
    def receiving_facility(self) -> str:
        return self.msh.get(6)

    @property
    def timestamp(self) -> str:
        return self.msh.get(7).strip()

    @property
    def accept_ack_type(self) -> str:
        return self.msh.get(15).strip().upper()

    @property
    def application_ack_type(self) -> str:
        return self.msh.get(16).strip().upper()

    @property
    def is_enhanced_mode(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


@lru_cache(maxsize=512)
def _parse_path(path: str) -> tuple[str, int, int, int, int, int]:
    parts = path.strip().replace(".", "-").split("-")
    if len(parts) < 2 or len(parts) > 4:
        raise ValueError(f"not an HL7 path: {path!r}")
    name, occurrence = _with_index(parts[0])
    field, repetition = _with_index(parts[1])
    component = int(parts[2]) if len(parts) > 2 else 1
    subcomponent = int(parts[3]) if len(parts) > 3 else 1
    return name, occurrence, int(field), repetition, component, subcomponent


def _with_index(part: str) -> tuple[str, int]:
    if part.endswith(")") and "(" in part:
        base, _, idx = part[:-1].partition("(")
        return base, int(idx)
    return part, 1


# Decoding ------------------------------------------------------------------------------------


def _is_delimiter_char(c: int) -> bool:
    """Printable ASCII punctuation: letters, digits, space and controls cannot be delimiters."""
    return 0x21 <= c <= 0x7E and not chr(c).isalnum()


def read_delimiters(header: bytes, segment: str = "MSH") -> Delimiters:
    """Delimiters from the first bytes of an MSH/FHS/BHS segment (``MSH|^~\\&|...``)."""
    if len(header) < 5 or not _is_delimiter_char(header[3]):
        raise DecodeError(
            _l("The field separator (%(segment)s-1) is missing or invalid.", segment=segment),
            code=DATA_TYPE_ERROR,
            location=f"{segment}^1^1",
        )
    fs = header[3]
    end = 4
    while end < len(header) and header[end] not in (fs, 0x0D, 0x0A):
        end += 1
    enc = header[4:end]
    if not 2 <= len(enc) <= 5 or len(set(enc)) != len(enc) or fs in enc:
        raise DecodeError(
            _l(
                "The encoding characters (%(segment)s-2) are invalid: expected 2 to 5 distinct "
                "characters such as ^~\\&.",
                segment=segment,
            ),
            code=DATA_TYPE_ERROR,
            location=f"{segment}^1^2",
        )
    if not all(_is_delimiter_char(c) for c in enc):
        raise DecodeError(
            _l("The encoding characters (%(segment)s-2) are invalid.", segment=segment),
            code=DATA_TYPE_ERROR,
            location=f"{segment}^1^2",
        )
    chars = enc.decode("ascii")
    padded = chars + "\0" * (5 - len(chars))
    return Delimiters(
        chr(fs),
        padded[0],
        padded[1],
        padded[2] if len(chars) > 2 else "",
        padded[3] if len(chars) > 3 else "",
        padded[4] if len(chars) > 4 else "",
    )


def _raw_msh18(first_line: bytes, d: Delimiters) -> str:
    """MSH-18.1 read from the bytes: MSH is ASCII up to MSH-18 (table 0211 values are ASCII)."""
    parts = first_line.split(d.field.encode())
    if len(parts) < 18:
        return ""
    value = parts[17].split(d.repetition.encode())[0].split(d.component.encode())[0]
    # Escaped like any value: with "-" as a delimiter, UTF-8 is written "UTF\\R\\8".
    return unescape(value.decode("ascii", errors="replace"), d).strip()


def _decode(body: bytes, charset: str) -> tuple[str, str]:
    """Decode by MSH-18; never guess (no Latin-1 fallback)."""
    cs = charset.upper()
    if cs in _UTF8_CHARSETS:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            raise DecodeError(
                _l(
                    "The message is not valid UTF-8 (byte %(offset)s). Legacy Vietnamese "
                    "encodings (Windows-1258, TCVN3, VNI) are not accepted: send UTF-8 and "
                    "declare UNICODE UTF-8 in MSH-18.",
                    offset=exc.start,
                ),
                code=DATA_TYPE_ERROR,
                location="MSH^1^18",
            ) from None
    if cs == "ASCII" or cs.startswith("8859/"):
        if body.isascii():
            return body.decode("ascii"), "ascii"
        raise DecodeError(
            _l(
                "MSH-18 declares %(charset)s but the message contains non-ASCII bytes; "
                "Vietnamese text must be sent as UNICODE UTF-8.",
                charset=charset,
            ),
            code=TABLE_VALUE_NOT_FOUND,
            location="MSH^1^18",
        )
    raise DecodeError(
        _l(
            "Character set %(charset)s (MSH-18) is not supported; use UNICODE UTF-8.",
            charset=charset,
        ),
        code=TABLE_VALUE_NOT_FOUND,
        location="MSH^1^18",
    )


def strip_preamble(data: bytes) -> bytes:
    """Drop a UTF-8 BOM and whitespace before the first segment."""
    if data.startswith(_BOM):
        data = data[3:]
    return data.lstrip(b" \t\r\n")


_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_REST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _valid_name(name: str) -> bool:
    return (
        len(name) == 3
        and name[0] in _NAME_FIRST
        and name[1] in _NAME_REST
        and name[2] in _NAME_REST
    )


def parse(data: bytes | str, *, check_required: bool = True) -> Message:
    """Read one message (bytes as received; a str is taken as its UTF-8 encoding).

    ``check_required=False`` skips the MSH-9/10/12 presence check (used to read ACKs from peers
    that leave MSH-10 empty); everything else is checked the same way.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    body = strip_preamble(raw)
    head = body[:3]
    if head in (b"FHS", b"BHS"):
        raise DecodeError(
            _l(
                "This is a batch (%(segment)s): split it into messages first.",
                segment=head.decode(),
            ),
            code=SEGMENT_SEQUENCE,
            location=f"{head.decode()}^1",
        )
    if head != b"MSH":
        raise DecodeError(
            _l("This is not an HL7 v2 message: it must start with an MSH segment."),
            code=SEGMENT_SEQUENCE,
            location="MSH^1",
        )
    d = read_delimiters(body)
    line_end = len(body)
    for sep in (b"\r", b"\n"):
        pos = body.find(sep)
        if 0 <= pos < line_end:
            line_end = pos
    charset = _raw_msh18(body[:line_end], d)
    text, encoding = _decode(body, charset)

    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    fs = d.field
    segments: list[Segment] = []
    lines: list[str] = []
    for number, line in enumerate(text.split("\r"), start=1):
        if not line or line[-1] in " \t":
            line = line.rstrip(" \t")
            if not line:
                continue
        name = line[:3]
        # The name first: a line of one or two characters has no line[3].
        if not _valid_name(name) or (len(line) > 3 and line[3] != fs):
            raise DecodeError(
                _l("Line %(line)s is not an HL7 segment.", line=number),
                code=SEGMENT_SEQUENCE,
                location=f"{segments[-1].name}^{_occurrence(segments, segments[-1].name)}"
                if segments
                else "MSH^1",
            )
        if segments and name in _ENVELOPE:
            occ = _occurrence(segments, name) + 1
            if name == "MSH":
                msg = _l("A second MSH segment: one frame must hold exactly one message.")
            else:
                msg = _l(
                    "Batch segment %(segment)s inside a message: send batches as a file.",
                    segment=name,
                )
            raise DecodeError(msg, code=SEGMENT_SEQUENCE, location=f"{name}^{occ}")
        parts = line.split(fs)
        if not segments:
            parts.insert(1, fs)
        segments.append(Segment(name, parts, d))
        lines.append(line)

    message = Message(raw, "\r".join(lines), d, segments, charset, encoding)
    if check_required:
        _check_required(message)
    return message


def _occurrence(segments: list[Segment], name: str) -> int:
    return sum(1 for s in segments if s.name == name)


_REQUIRED_MSH = (
    (9, _l("The message type (MSH-9) is missing.")),
    (10, _l("The message control ID (MSH-10) is missing.")),
    (12, _l("The version ID (MSH-12) is missing.")),
)


def _check_required(message: Message) -> None:
    msh = message.msh
    for n, text in _REQUIRED_MSH:
        if not msh.get(n).strip():
            raise DecodeError(
                text,
                code=REQUIRED_FIELD_MISSING,
                location=f"MSH^1^{n}",
                partial=message,
            )
