"""The password policy for passwords set through user management (`his user create`).

A password must be long enough (``HIS_PASSWORD_MIN_LENGTH``, 12 by default), must not be,
or be made from, a common password (his/data/common_passwords.txt: checked offline, nothing
is sent to a breach service), and must not contain the username. Length beats complexity
rules (NIST SP 800-63B): no "one digit, one capital" requirement.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from flask_babel import lazy_gettext as _l

DEFAULT_MIN_LENGTH = 12
MAX_LENGTH = 1024  # the login form's limit: a longer password could never be typed in
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common_passwords.txt"
# Stripped from both ends before the list is checked again, so "Password2024!" and
# "@@dragon123456" count as the common passwords they decorate.
_DECORATION = "0123456789!@#$%^&*()-_=+.,;:?/\\|~`'\"[]{}<> "


@cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    """The password, its lower case, or its core once leading and trailing digits and
    symbols are stripped, is on the list; a common password typed twice counts too."""
    lowered = password.lower()
    common = common_passwords()
    candidates = {lowered, lowered.strip(_DECORATION)}
    for text in list(candidates):
        half = len(text) // 2
        if half and text[:half] == text[half:]:
            candidates.add(text[:half])
    return any(c in common for c in candidates)


def problems(
    password: str, *, username: str = "", min_length: int = DEFAULT_MIN_LENGTH
) -> list[str]:
    """What is wrong with the password, as messages for the user; empty when it is fine."""
    found: list[str] = []
    if len(password) < min_length:
        found.append(str(_l("Use at least %(min)s characters.", min=min_length)))
    elif len(password) > MAX_LENGTH:
        found.append(str(_l("At most %(max)s characters.", max=MAX_LENGTH)))
    if is_common(password):
        found.append(str(_l("This password is too common: choose another.")))
    elif len(set(password)) < 5:
        found.append(str(_l("This password has too few different characters: choose another.")))
    name = username.strip().lower()
    if len(name) >= 3 and name in password.lower():
        found.append(str(_l("The password must not contain the username.")))
    return found
