"""How each kind of value is written in the claim tables: the one place for formats.

The kinds are the value types of the schemas (``types.xsd``): a table's schema says which kind
each field is, :func:`render` writes a Python value of that kind. Nothing here rounds: an amount
with more places than its kind allows is refused, because rounding belongs to the computation
(``amounts``) whose result the checks compare with what is written.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.claims.data import BirthDate

# Vietnam has kept UTC+7 since 1975; the project stores UTC and the gateway reads local time.
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

SEPARATOR = ";"

# Characters XML 1.0 cannot carry, escaped or not.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Places after the point, per kind of amount.
MONEY_PLACES = 2
QUANTITY_PLACES = 3
UNIT_PRICE_PLACES = 3
WEIGHT_PLACES = 2
PERCENT_MAX_PLACES = 2


def time12(value: dt.datetime) -> str:
    """A moment as ``yyyyMMddHHmm`` in Vietnam time."""
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{value!r} is not a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time could be UTC (as stored) or local (as typed): guessing shifts it 7 hours.
        raise ValueError(f"{value.isoformat()} has no time zone")
    return value.astimezone(VN_TZ).strftime("%Y%m%d%H%M")


def date8(value: dt.date) -> str:
    """A calendar day as ``yyyyMMdd``."""
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        # A datetime here is a mistake: its day depends on the zone it is read in.
        raise TypeError(f"{value!r} is not a date")
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def birth_date12(value: BirthDate) -> str:
    """``yyyyMMddHHmm`` with ``00`` for each unknown part: year only 1948 is ``194800000000``."""
    if not isinstance(value, BirthDate):
        raise TypeError(f"{value!r} is not a BirthDate")
    parts = (value.month, value.day, value.hour, value.minute)
    return f"{value.year:04d}" + "".join(f"{part or 0:02d}" for part in parts)


def _exact(value: Decimal | int) -> Decimal:
    # bool is an int, and float is what the tables must never see (0.1 + 0.2 != 0.3).
    if isinstance(value, float):
        raise TypeError(f"{value!r} is a float: use Decimal")
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{value!r} is not a Decimal")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{value} is not a number")
    return number


def fixed(value: Decimal | int, places: int) -> str:
    """A decimal with a point and exactly ``places`` decimals, never an exponent."""
    number = _exact(value)
    written = number.quantize(Decimal(1).scaleb(-places))
    if written != number:
        raise ValueError(f"{value} has more than {places} decimal places")
    return f"{written:f}"


def money(value: Decimal | int) -> str:
    return fixed(value, MONEY_PLACES)


def quantity(value: Decimal | int) -> str:
    return fixed(value, QUANTITY_PLACES)


def unit_price(value: Decimal | int) -> str:
    return fixed(value, UNIT_PRICE_PLACES)


def weight(value: Decimal | int) -> str:
    return fixed(value, WEIGHT_PLACES)


def percent(value: Decimal | int) -> str:
    """A rate without trailing zeros: ``100``, ``80``, ``47.5``."""
    number = _exact(value)
    fixed(number, PERCENT_MAX_PLACES)  # refuses more places than a rate may have
    written = number.normalize()
    if written == written.to_integral_value():
        written = written.quantize(Decimal(1))  # normalize() writes 100 as 1E+2
    return f"{written:f}"


def integer(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an int")
    return str(value)


def text(value: str) -> str:
    """Text as given, in composed form (NFC). lxml escapes ``&`` and ``<`` when writing."""
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a str")
    # Vietnamese typed on some systems arrives decomposed (a letter, then its marks): it would
    # count more characters against the lengths and compare unequal with the gateway's lists.
    composed = unicodedata.normalize("NFC", value)
    if _NOT_XML.search(composed):
        raise ValueError(f"{value!r} holds a character XML cannot carry")
    return composed


def code(value: str) -> str:
    written = text(value)
    if SEPARATOR in written:
        raise ValueError(f"{value!r} holds {SEPARATOR!r}, which separates values: use a tuple")
    return written


def joined(values: tuple[Any, ...], item: Callable[[Any], str]) -> str:
    """Several values written with ``;`` between them."""
    if not isinstance(values, tuple):
        # A str is iterable too, and would be written one character per value.
        raise TypeError(f"{values!r} is not a tuple")
    return SEPARATOR.join(item(value) for value in values)


# Kind of value (the schema's type name) -> how a value of that kind is written.
WRITERS: dict[str, Callable[[Any], str]] = {
    "Text": text,
    "Code": code,
    "CodeList": lambda values: joined(values, code),
    "Time": time12,
    "Date": date8,
    "DateList": lambda values: joined(values, date8),
    "BirthDate": birth_date12,
    "Integer": integer,
    "Money": money,
    "Quantity": quantity,
    "UnitPrice": unit_price,
    "Weight": weight,
    "Percent": percent,
}


def render(kind: str, value: object) -> str:
    """The text of a field of that kind; ``None`` (an unknown optional value) is empty."""
    if value is None:
        return ""
    return WRITERS[kind](value)
