"""Full names as printed on the ID card, and their family / middle / given parts.

The full name is the one value that matters (the BHYT gateway compares it with its own
records); it is kept as typed, except that the ID card's UPPER CASE, or a name typed all in
lower case, is put in title case. The parts are a convenience for addressing and sorting
people by their given name.
"""

from __future__ import annotations

import unicodedata

from flask_babel import lazy_gettext as _l

from his.errors import InvalidValue
from his.text import clean

MAX_LENGTH = 200
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})  # typographic forms → '
_PUNCTUATION = frozenset(" -'")


def _title_word(word: str) -> str:
    """``"H'HEN"`` → ``"H'Hen"``: upper case after anything that is not a letter or mark."""
    out = []
    previous_is_letter = False
    for char in word:
        category = unicodedata.category(char)
        if category.startswith("L"):
            out.append(char.lower() if previous_is_letter else char.upper())
            previous_is_letter = True
        else:
            out.append(char)
            previous_is_letter = category.startswith("M") and previous_is_letter
    return "".join(out)


def _fix_case(word: str) -> str:
    if word.isupper() or word.islower():
        return _title_word(word)
    return word


def normalise_full_name(value: str) -> str:
    """``"  NGUYỄN  VĂN ĐỨC "`` → ``"Nguyễn Văn Đức"``.

    NFC, single spaces, letters with only spaces, hyphens and apostrophes between them
    (``’`` is stored as ``'``, as in the Ê Đê name ``H'Hen Niê``). Words typed all in upper or
    all in lower case are put in title case; mixed-case words (``McDonald``) are kept.
    """
    name = clean(value).translate(_APOSTROPHES)
    if not name:
        raise InvalidValue(_l("The name is empty."))
    for char in name:
        category = unicodedata.category(char)
        if category[0] in "LM" or char in _PUNCTUATION:
            continue
        if category == "Nd" or char.isdigit():
            raise InvalidValue(
                _l("The name contains the digit “%(char)s”: names have no digits.", char=char)
            )
        raise InvalidValue(
            _l(
                "The name contains “%(char)s”: only letters, spaces, hyphens (-) and "
                "apostrophes (') are allowed.",
                char=char,
            )
        )
    if not any(unicodedata.category(char).startswith("L") for char in name):
        raise InvalidValue(_l("The name has no letters."))
    name = " ".join(_fix_case(word) for word in name.split(" "))
    if len(name) > MAX_LENGTH:
        raise InvalidValue(
            _l(
                "The name is too long: it has %(count)s characters, at most %(max)s are allowed.",
                count=len(name),
                max=MAX_LENGTH,
            )
        )
    return name


def split_name(full_name: str) -> tuple[str, str | None, str]:
    """``(family, middle, given)``: the first word, the words between, the last word.

    ``"Nguyễn Văn Đức"`` → ``("Nguyễn", "Văn", "Đức")``; ``"Lê Tám"`` → ``("Lê", None,
    "Tám")``. A one-word name gives ``("", None, word)``: the one name a person has is the
    one they are called and sorted by, which is what the given name is for; inventing a
    family name from it would be wrong. The split is a guess for names in Vietnamese order;
    Ê Đê names (family name last) and compound given names are split wrongly, which is why
    only the full name is authoritative.
    """
    words = clean(full_name).split(" ")
    if words == [""]:
        raise InvalidValue(_l("The name is empty."))
    if len(words) == 1:
        return "", None, words[0]
    middle = " ".join(words[1:-1]) or None
    return words[0], middle, words[-1]
