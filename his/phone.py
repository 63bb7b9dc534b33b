"""Vietnamese phone numbers, stored as national-format digits (``0912345678``).

Mobiles have 10 digits and, since the 2018 renumbering, start 03, 05, 07, 08 or 09.
Landlines have 11 digits: the 02xx area code and the subscriber number (Hà Nội 024 and
Hồ Chí Minh City 028 have 3-digit codes and 8-digit numbers, still 11 digits in all).
The international forms +84, 84 and 0084 drop the leading 0.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from his.errors import InvalidValue

_SEPARATORS = frozenset(" .-()\t")
_DIGITS = frozenset("0123456789")
_MOBILE_PREFIXES = frozenset("35789")  # the digit after the leading 0
MOBILE_LENGTH = 10
LANDLINE_LENGTH = 11


def _digits(value: str) -> tuple[bool, str]:
    """Whether the number started with ``+``, and its digits; rejects anything else."""
    text = value.strip()
    plus = text.startswith("+")
    if plus:
        text = text[1:]
    digits = []
    for char in text:
        if char in _DIGITS:
            digits.append(char)
        elif char in _SEPARATORS:
            continue
        elif char == "+":
            raise InvalidValue(_l("A “+” may only stand at the start of the phone number."))
        elif char.isalpha():
            raise InvalidValue(_l("The phone number contains the letter “%(char)s”.", char=char))
        else:
            raise InvalidValue(
                _l(
                    "The phone number contains “%(char)s”: use only digits, spaces, dots, "
                    "dashes, parentheses and a leading +.",
                    char=char,
                )
            )
    return plus, "".join(digits)


def _national(plus: bool, digits: str) -> str:
    if plus:
        if not digits.startswith("84"):
            raise InvalidValue(
                _l("Only Vietnamese phone numbers are accepted: after “+” must come 84.")
            )
        rest = digits[2:]
    elif digits.startswith("0084"):
        rest = digits[4:]
    elif digits.startswith("0"):
        return digits
    elif digits.startswith("84"):
        rest = digits[2:]
    else:
        raise InvalidValue(
            _l(
                "The phone number starts with %(digit)s: write it with a leading 0 or with +84.",
                digit=digits[0],
            )
        )
    # "+84 (0) 912 …": the national 0 is sometimes kept after the country code.
    return rest if rest.startswith("0") else "0" + rest


def normalise_phone(value: str) -> str:
    """The number's digits in national format: ``"+84 912 345 678"`` → ``"0912345678"``."""
    plus, digits = _digits(value)
    if not digits:
        raise InvalidValue(_l("The phone number is empty."))
    number = _national(plus, digits)
    if len(number) < 2:
        raise InvalidValue(
            _l(
                "The phone number %(number)s is too short: a mobile number has 10 digits, "
                "a landline 11.",
                number=number,
            )
        )
    prefix = number[:2]
    if prefix == "02":
        if len(number) < LANDLINE_LENGTH:
            raise InvalidValue(
                _l(
                    "The landline number %(number)s is too short: it has %(count)s digits, "
                    "a landline number with its area code has 11.",
                    number=number,
                    count=len(number),
                )
            )
        if len(number) > LANDLINE_LENGTH:
            raise InvalidValue(
                _l(
                    "The landline number %(number)s is too long: it has %(count)s digits, "
                    "a landline number with its area code has 11.",
                    number=number,
                    count=len(number),
                )
            )
    elif prefix[1] in _MOBILE_PREFIXES:
        if len(number) < MOBILE_LENGTH:
            raise InvalidValue(
                _l(
                    "The mobile number %(number)s is too short: it has %(count)s digits, "
                    "a mobile number has 10.",
                    number=number,
                    count=len(number),
                )
            )
        if len(number) > MOBILE_LENGTH:
            raise InvalidValue(
                _l(
                    "The mobile number %(number)s is too long: it has %(count)s digits, "
                    "a mobile number has 10.",
                    number=number,
                    count=len(number),
                )
            )
    else:
        raise InvalidValue(
            _l(
                "The phone number %(number)s starts with %(prefix)s, which is not in use: "
                "mobile numbers start with 03, 05, 07, 08 or 09 and landlines with 02.",
                number=number,
                prefix=prefix,
            )
        )
    return number
