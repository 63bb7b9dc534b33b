"""Validation messages from marshmallow and webargs, in the client's language.

marshmallow writes its messages in English with the values filled in; each pattern here
recognises one such message and gives it again through our catalogue, so API clients
get Vietnamese field errors like every other string. A message not listed passes
through unchanged.
"""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

# Each pattern names its values; the translation receives them by name.
_PATTERNS: list[tuple[re.Pattern[str], LazyString]] = [
    (re.compile(r"Missing data for required field\."), _l("Missing data for required field.")),
    (re.compile(r"Field may not be null\."), _l("Field may not be null.")),
    (re.compile(r"Unknown field\."), _l("Unknown field.")),
    (re.compile(r"Invalid value\."), _l("Invalid value.")),
    (re.compile(r"Invalid input\."), _l("Invalid value.")),
    (re.compile(r"Not a valid string\."), _l("Not a valid string.")),
    (re.compile(r"Not a valid integer\."), _l("Not a valid integer.")),
    (re.compile(r"Not a valid number\."), _l("Not a valid number.")),
    (re.compile(r"Not a valid boolean\."), _l("Not a valid boolean.")),
    (re.compile(r"Not a valid (aware |naive )?datetime\."), _l("Not a valid date and time.")),
    (re.compile(r"Not a valid date\."), _l("Not a valid date.")),
    (re.compile(r"Not a valid mapping type\."), _l("Not a valid object.")),
    (re.compile(r"Not a valid list\."), _l("Not a valid list.")),
    (re.compile(r"Invalid input type\."), _l("Not a valid object.")),
    (re.compile(r"Must be one of: (?P<choices>.*)\."), _l("Must be one of: %(choices)s.")),
    (
        re.compile(r"Length must be between (?P<min>\d+) and (?P<max>\d+)\."),
        _l("Length must be between %(min)s and %(max)s."),
    ),
    (re.compile(r"Shorter than minimum length (?P<min>\d+)\."), _l("At least %(min)s characters.")),
    (re.compile(r"Longer than maximum length (?P<max>\d+)\."), _l("At most %(max)s characters.")),
]


def translate(message: str) -> str:
    for pattern, msgid in _PATTERNS:
        match = pattern.fullmatch(message)
        if match:
            return str(msgid) % match.groupdict()
    return message


def translate_errors(errors):
    """Translates every message of a (possibly nested) marshmallow error structure."""
    if isinstance(errors, dict):
        return {key: translate_errors(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [translate_errors(item) for item in errors]
    if isinstance(errors, str):
        return translate(errors)
    return errors
