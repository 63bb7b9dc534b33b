"""HL7 v2 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh..\\ \\.br\\), both ways.

Why our own: python-hl7 decodes ``\\XC3A9\\`` byte by byte as Latin-1 ("Ã©") and hl7apy has no
unescape at all. Vietnamese senders that hex-escape do so on the UTF-8 bytes of the message, so
hex runs are collected as bytes (also across adjacent ``\\X..\\`` sequences) and decoded as UTF-8.
A run that is not valid UTF-8 is kept exactly as sent: we never guess a legacy encoding.

Sequences we do not interpret are kept as-is, escape characters included: the highlighting
pair ``\\H\\``/``\\N\\``, ``\\Cxxyy\\``/``\\Mxxyyzz\\`` character-set switches, ``\\Z..\\`` locals
and the formatting commands other than ``\\.br\\`` (``\\.sp\\``, ``\\.in\\``, ...). A reader
who needs them can still see them; escape() turns their escape characters into ``\\E\\``
so they round-trip.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from his.hl7v2.codec import Delimiters

__all__ = ["escape", "unescape"]


def unescape(text: str, d: Delimiters) -> str:
    """Decode the escape sequences of one field/component value (the text between delimiters)."""
    e = d.escape
    if not e or e not in text:
        return text
    simple = _simple_map(d)
    out: list[str] = []
    pending = bytearray()  # bytes of consecutive \X..\ runs, decoded together
    pending_src: list[str] = []  # their source text, kept if the bytes are not UTF-8
    i = 0
    n = len(text)
    while i < n:
        j = text.find(e, i)
        if j < 0:
            break
        k = text.find(e, j + 1)
        if k < 0:
            break
        seq = text[j + 1 : k]
        hex_bytes = _hex(seq)
        if pending and (j > i or hex_bytes is None):
            out.append(_flush(pending, pending_src))
        if j > i:
            out.append(text[i:j])
        if hex_bytes is not None:
            pending.extend(hex_bytes)
            pending_src.append(text[j : k + 1])
            i = k + 1
            continue
        replacement = simple.get(seq)
        if replacement is not None:
            out.append(replacement)
            i = k + 1
        elif seq == "":
            # "\\" is no sequence: emit one escape char and let the second start a new one.
            out.append(e)
            i = k
        else:
            out.append(text[j : k + 1])
            i = k + 1
    if pending:
        out.append(_flush(pending, pending_src))
    out.append(text[i:])
    return "".join(out)


def _hex(seq: str) -> bytes | None:
    """The bytes of an ``Xhhhh`` sequence, or None if it is not one."""
    if len(seq) < 3 or seq[0] != "X" or len(seq) % 2 == 0 or " " in seq:
        return None
    try:
        return bytes.fromhex(seq[1:])
    except ValueError:
        return None


def _flush(pending: bytearray, pending_src: list[str]) -> str:
    try:
        value = pending.decode("utf-8")
    except UnicodeDecodeError:
        value = "".join(pending_src)
    pending.clear()
    pending_src.clear()
    return value


def escape(text: str, d: Delimiters) -> str:
    """Escape a plain value so it can sit between delimiters; newlines become ``\\.br\\``.

    A CR inside a value would end the segment, so CR, LF and CRLF are all written ``\\.br\\``.
    With no escape character in MSH-2 (a two-character MSH-2) nothing can be escaped:
    delimiters and newlines are then replaced by a space rather than corrupting the structure.
    """
    if not text:
        return text
    table = _escape_table(d)
    if not _needs_escape(text, d):
        return text
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return text.translate(table)


def _needs_escape(text: str, d: Delimiters) -> bool:
    return any(ch in text for ch in _specials(d))


@lru_cache(maxsize=64)
def _specials(d: Delimiters) -> tuple[str, ...]:
    chars = [d.field, d.component, d.repetition, d.escape, d.subcomponent, d.truncation]
    return (*tuple(c for c in chars if c), "\r", "\n")


@lru_cache(maxsize=64)
def _simple_map(d: Delimiters) -> dict[str, str]:
    m = {
        "F": d.field,
        "S": d.component,
        "R": d.repetition,
        "E": d.escape,
        ".br": "\n",
    }
    if d.subcomponent:
        m["T"] = d.subcomponent
    if d.truncation:
        m["P"] = d.truncation
    return m


@lru_cache(maxsize=64)
def _escape_table(d: Delimiters) -> dict[int, str]:
    e = d.escape
    if not e:
        chars = [d.field, d.component, d.repetition, d.subcomponent, d.truncation, "\r", "\n"]
        return {ord(c): " " for c in chars if c}
    table = {
        ord(e): f"{e}E{e}",
        ord(d.field): f"{e}F{e}",
        ord(d.component): f"{e}S{e}",
        ord(d.repetition): f"{e}R{e}",
        ord("\r"): f"{e}.br{e}",
        ord("\n"): f"{e}.br{e}",
    }
    if d.subcomponent:
        table[ord(d.subcomponent)] = f"{e}T{e}"
    if d.truncation:
        table[ord(d.truncation)] = f"{e}P{e}"
    return table
