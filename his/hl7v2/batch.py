"""HL7 v2 batches and files (FHS/BHS … BTS/FTS), and plain multi-message streams.

A commune station that was offline uploads a day's messages as one batch. The counts in the
trailers (BTS-1 messages, FTS-1 batches) are our only guard against a batch that lost
messages on the way, so a count that does not match refuses the whole batch (code 100 at the
trailer, e.g. ``BTS^1^1``) and nothing in it is applied.

Choices (documented for the peer conformance profile):
- Accepted shapes: ``[FHS] {[BHS] {MSH…} [BTS]} [FTS]`` — a batch without a file header, a
  file without batch headers (one implicit batch), and a headerless stream ending with BTS.
- Missing trailers are accepted by default (python-hl7 and Mirth samples omit them), with
  ``Batch.complete`` False and no count to check; pass ``require_trailers=True`` (per-peer
  profile) to refuse them with code 100 naming the missing trailer.
- Refused (code 100, location names the offending segment): a segment outside any message
  (e.g. EVN right after BHS), a nested or repeated header before the trailer (BHS inside an
  open batch, a second FHS), anything after FTS, a message after BTS without a new BHS.
- Each message is returned as its own bytes, exactly as sent (its lines and line ends), so it
  can be stored raw and parsed on its own with :func:`his.hl7v2.codec.parse`; the character set
  is decided per message (MSH-18), not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l

from his.hl7v2.codec import (
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE,
    Delimiters,
    Hl7Error,
    Segment,
    read_delimiters,
    strip_preamble,
)

__all__ = ["Batch", "BatchGroup", "is_batch", "split", "split_stream"]

_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n|$)")


def is_batch(data: bytes) -> bool:
    """True when the data (after a BOM/whitespace) starts with FHS or BHS."""
    return strip_preamble(data)[:3] in (b"FHS", b"BHS")


@dataclass
class BatchGroup:
    """One BHS … BTS batch (header None for an implicit batch without BHS)."""

    header: Segment | None
    messages: list[bytes] = field(default_factory=list)
    declared_count: int | None = None  # BTS-1, None when there is no trailer or it is empty
    has_trailer: bool = False

    @property
    def control_id(self) -> str:
        return self.header.get(11) if self.header is not None else ""


@dataclass
class Batch:
    """A split batch file. ``messages`` holds every message of every batch, in order."""

    raw: bytes
    delimiters: Delimiters
    file_header: Segment | None
    groups: list[BatchGroup]
    messages: list[bytes]
    declared_count: int | None  # sum of BTS-1 over the batches (None if none declares one)
    declared_batch_count: int | None  # FTS-1
    has_file_trailer: bool

    @property
    def header(self) -> Segment | None:
        """The first BHS, else the FHS: what identifies sender and batch."""
        for g in self.groups:
            if g.header is not None:
                return g.header
        return self.file_header

    def _header_value(self, n: int) -> str:
        h = self.header
        return h.get(n) if h is not None else ""

    @property
    def sending_application(self) -> str:
        return self._header_value(3)

    @property
    def sending_facility(self) -> str:
        return self._header_value(4)

    @property
    def receiving_application(self) -> str:
        return self._header_value(5)

    @property
    def receiving_facility(self) -> str:
        return self._header_value(6)

    @property
    def control_id(self) -> str:
        """BHS-11 of the first batch, else FHS-11."""
        return self._header_value(11)

    @property
    def batch_control_id(self) -> str:
        return self.groups[0].control_id if self.groups else ""

    @property
    def file_control_id(self) -> str:
        return self.file_header.get(11) if self.file_header is not None else ""

    @property
    def complete(self) -> bool:
        """Every header present has its trailer (BHS→BTS, FHS→FTS)."""
        batches_ok = all(g.has_trailer or g.header is None for g in self.groups)
        return batches_ok and (self.file_header is None or self.has_file_trailer)


def _lines(data: bytes) -> list[bytes]:
    """Lines with their own line ends, as sent."""
    return [m.group(0) for m in _LINE.finditer(data) if m.group(0)]


def _header_segment(line: bytes, name: str) -> tuple[Segment, Delimiters]:
    d = read_delimiters(line, name)
    # Header texts (FHS-9 file name…) have no charset field; a bad byte is shown as U+FFFD
    # rather than guessed, and each message is decoded strictly by its own MSH-18 later.
    text = line.rstrip(b"\r\n").decode("utf-8", errors="replace").rstrip(" \t")
    parts = text.split(d.field)
    parts.insert(1, d.field)
    return Segment(name, parts, d), d


def _count(line: bytes, d: Delimiters, name: str, occurrence: int) -> int | None:
    text = line.rstrip(b"\r\n").decode("ascii", errors="replace")
    parts = text.split(d.field)
    value = parts[1].split(d.component)[0].strip() if len(parts) > 1 else ""
    if not value:
        return None
    if not value.isdigit():
        raise Hl7Error(
            _l("%(segment)s-1 (message count) is not a number.", segment=name),
            code=DATA_TYPE_ERROR,
            location=f"{name}^{occurrence}^1",
        )
    return int(value)


def _sequence_error(name: str, occurrence: int, message) -> Hl7Error:
    return Hl7Error(message, code=SEGMENT_SEQUENCE, location=f"{name}^{occurrence}")


def split(data: bytes, *, require_trailers: bool = False) -> Batch:
    """Split a batch/file into its messages and check its structure and counts."""
    body = strip_preamble(data)
    if body[:3] not in (b"FHS", b"BHS", b"MSH"):
        raise Hl7Error(
            _l("This is not an HL7 v2 batch: it must start with FHS, BHS or MSH."),
            code=SEGMENT_SEQUENCE,
            location="FHS^1",
        )
    delimiters = read_delimiters(body, body[:3].decode())
    file_header: Segment | None = None
    groups: list[BatchGroup] = []
    current: BatchGroup | None = None
    message_lines: list[bytes] | None = None
    seen: dict[str, int] = {}
    closed_file = False
    declared_batches: int | None = None
    has_file_trailer = False

    def end_message() -> None:
        nonlocal message_lines
        if message_lines is not None and current is not None:
            current.messages.append(b"".join(message_lines))
        message_lines = None

    for line in _lines(body):
        stripped = line.strip()
        if not stripped:
            continue
        name = line[:3].decode("ascii", errors="replace")
        seen[name] = seen.get(name, 0) + 1
        occ = seen[name]
        if closed_file:
            raise _sequence_error(name, occ, _l("Segments after the file trailer (FTS)."))
        if name == "FHS":
            if groups or file_header is not None:
                raise _sequence_error(name, occ, _l("A file header (FHS) must come first, once."))
            file_header, delimiters = _header_segment(line, "FHS")
        elif name == "BHS":
            end_message()
            if current is not None and not current.has_trailer:
                raise _sequence_error(
                    name, occ, _l("A batch header (BHS) inside a batch that has no trailer (BTS).")
                )
            header, hd = _header_segment(line, "BHS")
            if file_header is None and not groups:
                delimiters = hd
            current = BatchGroup(header=header)
            groups.append(current)
        elif name == "BTS":
            end_message()
            if current is None:
                current = BatchGroup(header=None)
                groups.append(current)
            if current.has_trailer:
                raise _sequence_error(name, occ, _l("A batch trailer (BTS) without its header."))
            current.has_trailer = True
            current.declared_count = _count(line, delimiters, "BTS", occ)
            if current.declared_count is not None and current.declared_count != len(
                current.messages
            ):
                raise Hl7Error(
                    _l(
                        "BTS-1 declares %(declared)s messages but the batch holds %(found)s: "
                        "the batch is incomplete and was not applied.",
                        declared=current.declared_count,
                        found=len(current.messages),
                    ),
                    code=SEGMENT_SEQUENCE,
                    location=f"BTS^{occ}^1",
                )
        elif name == "FTS":
            end_message()
            has_file_trailer = True
            closed_file = True
            declared_batches = _count(line, delimiters, "FTS", occ)
            if declared_batches is not None and declared_batches != len(groups):
                raise Hl7Error(
                    _l(
                        "FTS-1 declares %(declared)s batches but the file holds %(found)s.",
                        declared=declared_batches,
                        found=len(groups),
                    ),
                    code=SEGMENT_SEQUENCE,
                    location=f"FTS^{occ}^1",
                )
        elif name == "MSH":
            end_message()
            if current is None:
                current = BatchGroup(header=None)
                groups.append(current)
            elif current.has_trailer:
                raise _sequence_error(
                    name, occ, _l("A message after a batch trailer (BTS) without a new BHS.")
                )
            message_lines = [line]
        else:
            if message_lines is None:
                raise _sequence_error(
                    name, occ, _l("Segment %(segment)s is outside any message.", segment=name)
                )
            message_lines.append(line)
    end_message()

    if require_trailers:
        for i, g in enumerate(groups, start=1):
            if g.header is not None and not g.has_trailer:
                raise _missing("BTS", i)
        if file_header is not None and not has_file_trailer:
            raise _missing("FTS", 1)

    messages = [m for g in groups for m in g.messages]
    counts = [g.declared_count for g in groups if g.declared_count is not None]
    return Batch(
        raw=data,
        delimiters=delimiters,
        file_header=file_header,
        groups=groups,
        messages=messages,
        declared_count=sum(counts) if counts else None,
        declared_batch_count=declared_batches,
        has_file_trailer=has_file_trailer,
    )


def _missing(name: str, occurrence: int) -> Hl7Error:
    return Hl7Error(
        _l("The trailer segment %(segment)s is missing.", segment=name),
        code=SEGMENT_SEQUENCE,
        location=f"{name}^{occurrence}",
    )


def _is_comment(stripped: bytes) -> bool:
    return stripped.startswith((b"//", b"/*", b"*", b"#"))


def split_stream(data: bytes) -> list[bytes]:
    """Split a file of back-to-back messages (for ``his hl7 send FILE`` and sample files).

    A new message starts at each line beginning with MSH. Blank lines and comment lines
    (``//``, ``/* … */``, ``*``, ``#``) are dropped; batch envelope segments are skipped
    without any count check (use :func:`split` for batches). Lines before the first MSH that
    are not envelope segments are dropped too. Each message keeps its own lines and line ends.
    """
    messages: list[list[bytes]] = []
    for line in _lines(strip_preamble(data)):
        stripped = line.strip()
        if not stripped or _is_comment(stripped):
            continue
        head = line[:3]
        if head == b"MSH":
            messages.append([line])
        elif head in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        elif messages:
            messages[-1].append(line)
    return [b"".join(m) for m in messages]


def headers_only(data: bytes) -> Batch | None:
    """The FHS/BHS headers of a batch that :func:`split` refused (wrong counts, bad
    structure), read without any check, so the refusal can still be a batch ACK addressed
    to its sender; None when not even a header can be read."""
    fhs = bhs = None
    delimiters = None
    try:
        for line in _lines(strip_preamble(data)):
            stripped = line.lstrip()
            if stripped.startswith(b"FHS") and fhs is None and bhs is None:
                fhs, delimiters = _header_segment(stripped, "FHS")
            elif stripped.startswith(b"BHS"):
                bhs, found = _header_segment(stripped, "BHS")
                delimiters = delimiters or found
                break
            elif stripped.startswith(b"MSH"):
                break
    except Hl7Error:
        return None
    if delimiters is None:
        return None
    return Batch(
        raw=data,
        delimiters=delimiters,
        file_header=fhs,
        groups=[BatchGroup(header=bhs)] if bhs is not None else [],
        messages=[],
        declared_count=None,
        declared_batch_count=None,
        has_file_trailer=False,
    )
