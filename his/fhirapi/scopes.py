"""SMART system scopes, v1 (``system/Patient.read``) and v2 (``system/Patient.rs``).

An interaction is one of the SMART v2 letters: c create, r read (read, vread, instance
history), u update (and patch), d delete, s search (and type history, operations that
search). v1 ``read`` means r+s, ``write`` c+u+d, ``*`` all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INTERACTIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"^(?P<context>system|user|patient)/(?P<type>\*|[A-Z][A-Za-z]+)\."
    r"(?P<perm>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>\S+))?$"
)


@dataclass(frozen=True)
class Scope:
    resource_type: str  # "*" for every type
    interactions: frozenset[str]
    text: str
    query: str | None = None  # v2 granular filter, e.g. category=laboratory


def parse(text: str) -> Scope | None:
    """One scope string; None when it is not a resource scope (``openid``, ``launch``...)."""
    match = _SCOPE.match(text.strip())
    if not match or not match["perm"]:
        return None
    perm = match["perm"]
    letters = _V1.get(perm, perm)
    return Scope(match["type"], frozenset(letters), text.strip(), match["query"])


def parse_all(text: str) -> list[Scope]:
    return [s for s in (parse(part) for part in text.split()) if s is not None]


def allows(scopes: list[Scope], resource_type: str, interaction: str) -> bool:
    # A v2 granular scope (``system/Observation.rs?category=laboratory``) grants nothing
    # here: filtering every read, search and export by its query is not built, and
    # granting the whole type instead would hand out more than was given.
    return any(
        interaction in s.interactions and s.resource_type in ("*", resource_type) and not s.query
        for s in scopes
    )
