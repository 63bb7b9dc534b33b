"""Format checks for the identity documents presented at reception.

None of these numbers carries a check digit, so a format check is all that can be done
offline: the CCCD's province, century/sex and year digits are compared with what the
patient says, and the BHYT code is split into its parts. Whether a BHYT group code exists
on a given date is decided elsewhere, from a dated table.

Every error is an :class:`~his.errors.InvalidValue` whose message names the part that is
wrong (which digit, which characters), so the receptionist can fix it without guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from flask_babel import lazy_gettext as _l

from his.errors import InvalidValue
from his.models.patient import Sex

DIGITS = frozenset("0123456789")
LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# Digit 4 of the CCCD: (digit // 2) gives the century, the parity the sex.
_CENTURY_BY_PAIR = {0: 1900, 1: 2000, 2: 2100, 3: 2200, 4: 1800}
_SEPARATORS = re.compile(r"[\s.]+")


@cache
def cccd_province_codes() -> dict[str, str]:
    """The 63 pre-2025 province codes of digits 1–3, mapped to the province's name."""
    text = resources.files("his.data").joinpath("cccd_province_codes.json").read_text("utf-8")
    return dict(json.loads(text)["codes"])


def _first_not_in(text: str, allowed: frozenset[str]) -> tuple[int, str] | None:
    """1-based position and character of the first character outside ``allowed``."""
    for position, char in enumerate(text, start=1):
        if char not in allowed:
            return position, char
    return None


def cccd_birth_century_sex(cccd: str) -> tuple[int, Sex]:
    """First year of the birth century and the sex that digit 4 of a CCCD encodes.

    ``cccd_birth_century_sex("079090001234") == (1900, Sex.MALE)``. The number is
    checked with :func:`parse_cccd` first.
    """
    digit = int(parse_cccd(cccd)[3])
    return _CENTURY_BY_PAIR[digit // 2], Sex.FEMALE if digit % 2 else Sex.MALE


def parse_cccd(value: str, *, birth_year: int | None = None, sex: Sex | None = None) -> str:
    """The 12 digits of a personal identification number (CCCD), checked.

    Spaces and dots are ignored. Digits 1–3 must be a province code, digit 4 gives the
    century and sex (even: male, odd: female), digits 5–6 the last two digits of the year of
    birth. ``birth_year`` and ``sex``, when given, must agree with them;
    ``Sex.UNDETERMINED`` skips the sex check.
    """
    number = _SEPARATORS.sub("", value)
    if not number:
        raise InvalidValue(_l("The citizen ID number is empty."))
    bad = _first_not_in(number, DIGITS)
    if bad:
        raise InvalidValue(
            _l(
                "Character %(position)s of the citizen ID number (“%(char)s”) is not a digit.",
                position=bad[0],
                char=bad[1],
            )
        )
    if len(number) != 12:
        raise InvalidValue(
            _l(
                "The citizen ID number must have 12 digits, not %(count)s.",
                count=len(number),
            )
        )
    province = number[:3]
    if province not in cccd_province_codes():
        raise InvalidValue(
            _l(
                "Digits 1–3 of the citizen ID number (%(code)s) are not a province code.",
                code=province,
            )
        )
    digit = int(number[3])
    century = _CENTURY_BY_PAIR[digit // 2]
    if birth_year is not None:
        if not century <= birth_year < century + 100:
            raise InvalidValue(
                _l(
                    "Digit 4 of the citizen ID number (%(digit)s) means born in %(first)s–"
                    "%(last)s, but the year of birth is %(year)s.",
                    digit=digit,
                    first=century,
                    last=century + 99,
                    year=birth_year,
                )
            )
        if number[4:6] != f"{birth_year % 100:02d}":
            raise InvalidValue(
                _l(
                    "Digits 5–6 of the citizen ID number (%(digits)s) must be the last two "
                    "digits of the year of birth %(year)s.",
                    digits=number[4:6],
                    year=birth_year,
                )
            )
    if sex is Sex.MALE and digit % 2:
        raise InvalidValue(
            _l(
                "Digit 4 of the citizen ID number (%(digit)s) is odd, which means female, "
                "but the patient is recorded as male.",
                digit=digit,
            )
        )
    if sex is Sex.FEMALE and not digit % 2:
        raise InvalidValue(
            _l(
                "Digit 4 of the citizen ID number (%(digit)s) is even, which means male, "
                "but the patient is recorded as female.",
                digit=digit,
            )
        )
    return number


def parse_cmnd(value: str) -> str:
    """The 9 digits of an old identity card (CMND); spaces and dots are ignored."""
    number = _SEPARATORS.sub("", value)
    if not number:
        raise InvalidValue(_l("The old identity card number is empty."))
    bad = _first_not_in(number, DIGITS)
    if bad:
        raise InvalidValue(
            _l(
                "Character %(position)s of the old identity card number (“%(char)s”) is not "
                "a digit.",
                position=bad[0],
                char=bad[1],
            )
        )
    if len(number) != 9:
        raise InvalidValue(
            _l(
                "The old identity card number must have 9 digits, not %(count)s.",
                count=len(number),
            )
        )
    return number


def parse_passport(value: str) -> str:
    """A passport number in upper case, spaces removed.

    Vietnamese passports are one letter and seven digits; foreign ones vary, so any 5 to 20
    letters A–Z and digits are accepted.
    """
    number = "".join(value.split()).upper()
    if not number:
        raise InvalidValue(_l("The passport number is empty."))
    bad = _first_not_in(number, DIGITS | LETTERS)
    if bad:
        raise InvalidValue(
            _l(
                "Character %(position)s of the passport number (“%(char)s”) is not allowed: "
                "use only letters A–Z and digits.",
                position=bad[0],
                char=bad[1],
            )
        )
    if not 5 <= len(number) <= 20:
        raise InvalidValue(
            _l(
                "The passport number must have 5 to 20 letters and digits, not %(count)s.",
                count=len(number),
            )
        )
    return number


@dataclass(frozen=True)
class BhytCard:
    """A health-insurance card number split into its parts.

    ``number`` is what was presented: the 15-character card code, or the 10-digit social
    insurance number printed on cards issued since April 2021 (then the other parts are
    ``None`` until the gateway returns the full code).
    """

    number: str
    insurance_number: str
    group_code: str | None
    benefit_level: int | None
    province_code: str | None


def insurance_number_of(value: str) -> str | None:
    """The social-insurance number a card number holds (how a card is keyed), or None
    when it is no card number."""
    try:
        return parse_bhyt_card(value).insurance_number
    except InvalidValue:
        return None


def parse_bhyt_card(value: str) -> BhytCard:
    """A BHYT card number: the 10-digit social insurance number or the 15-character code.

    The code is: characters 1–2 the beneficiary group (letters), 3 the benefit level (1–5),
    4–5 the province of the issuing BHXH office (digits), 6–15 the social insurance number.
    Whether the group code exists is not checked here.
    """
    number = "".join(value.split()).upper()
    if not number:
        raise InvalidValue(_l("The health insurance card number is empty."))
    if len(number) == 10:
        bad = _first_not_in(number, DIGITS)
        if bad:
            raise InvalidValue(
                _l(
                    "Character %(position)s of the 10-digit social insurance number "
                    "(“%(char)s”) is not a digit.",
                    position=bad[0],
                    char=bad[1],
                )
            )
        return BhytCard(number, number, None, None, None)
    if len(number) != 15:
        raise InvalidValue(
            _l(
                "The health insurance card number must have 15 characters (or the 10 digits "
                "of the social insurance number), not %(count)s.",
                count=len(number),
            )
        )
    group, level, province, insurance = number[:2], number[2], number[3:5], number[5:]
    if _first_not_in(group, LETTERS):
        raise InvalidValue(
            _l(
                "Characters 1–2 of the health insurance card number (%(code)s) must be two "
                "letters, the beneficiary group.",
                code=group,
            )
        )
    if level not in "12345":
        raise InvalidValue(
            _l(
                "Character 3 of the health insurance card number (%(char)s) must be the "
                "benefit level, a digit from 1 to 5.",
                char=level,
            )
        )
    if _first_not_in(province, DIGITS):
        raise InvalidValue(
            _l(
                "Characters 4–5 of the health insurance card number (%(code)s) must be the "
                "two-digit province code.",
                code=province,
            )
        )
    if _first_not_in(insurance, DIGITS):
        raise InvalidValue(
            _l(
                "Characters 6–15 of the health insurance card number (%(code)s) must be the "
                "10-digit social insurance number.",
                code=insurance,
            )
        )
    return BhytCard(number, insurance, group, int(level), province)
