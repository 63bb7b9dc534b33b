"""Vietnamese text helpers: one normaliser for everything that is searched.

``đ``/``Đ`` have no Unicode decomposition, so stripping combining marks alone would keep
them; they are mapped by hand. The stored search key and the query go through the same
function, so "nguyen van duc" finds "Nguyễn Văn Đức" on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import unicodedata

_D_MAP = str.maketrans({"đ": "d", "Đ": "d"})


def nfc(text: str) -> str:
    """Precomposed form: what the ID card, the gateway and PostgreSQL ``unaccent`` expect."""
    return unicodedata.normalize("NFC", text)


def clean(text: str) -> str:
    """NFC with runs of whitespace collapsed to one space and the ends trimmed."""
    return " ".join(nfc(text).split())


def fold_vi(text: str) -> str:
    """Lower case, no diacritics, ``đ``→``d``, single spaces."""
    decomposed = unicodedata.normalize("NFD", nfc(text).casefold().translate(_D_MAP))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.split())
