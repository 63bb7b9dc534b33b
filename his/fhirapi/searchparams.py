"""The search parameters of every resource type, and the values each resource indexes.

A parameter names its FHIR type and the element paths it reads from the stored JSON; on
every new version ``index_values`` turns those elements into ``fhir_search_value`` rows.
The same table of parameters drives the search engine and the CapabilityStatement, so a
parameter is declared exactly when it works.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from his.text import fold_vi

TOKEN, STRING, DATE, REFERENCE, NUMBER, QUANTITY, URI = (
    "token",
    "string",
    "date",
    "reference",
    "number",
    "quantity",
    "uri",
)


@dataclass(frozen=True)
class Param:
    resource_type: str
    name: str
    type: str
    paths: tuple[str, ...]  # dotted element paths; lists are walked through
    targets: tuple[str, ...] = ()  # for references: the types it may point at
    documentation: str = ""


PARAMS: dict[str, dict[str, Param]] = {}


def param(
    resource_type: str,
    name: str,
    type_: str,
    *paths: str,
    targets: tuple[str, ...] = (),
    doc: str = "",
) -> None:
    PARAMS.setdefault(resource_type, {})[name] = Param(
        resource_type, name, type_, paths, targets, doc
    )


def params_of(resource_type: str) -> dict[str, Param]:
    return PARAMS.get(resource_type, {})


# --- extraction ---------------------------------------------------------------------


def _walk(node: Any, parts: list[str]) -> list[Any]:
    if node is None:
        return []
    if isinstance(node, list):
        return [found for item in node for found in _walk(item, parts)]
    if not parts:
        return [node]
    if not isinstance(node, dict):
        return []
    return _walk(node.get(parts[0]), parts[1:])


def elements(resource: dict[str, Any], path: str) -> list[Any]:
    return _walk(resource, path.split("."))


def index_values(resource_type: str, resource: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in params_of(resource_type).values():
        for path in p.paths:
            for element in elements(resource, path):
                rows.extend({"param": p.name, **v} for v in _values(p.type, element))
    return rows


_EMPTY = {
    "system": None,
    "code": None,
    "text": None,
    "exact": None,
    "start": None,
    "end": None,
    "reference": None,
    "number": None,
}


def _row(**values: Any) -> dict[str, Any]:
    return {**_EMPTY, **values}


def _values(type_: str, element: Any) -> list[dict[str, Any]]:
    if type_ == TOKEN:
        return [_row(system=s, code=c, text=t) for s, c, t in tokens(element)]
    if type_ in (STRING, URI):
        return [_row(text=fold_vi(s)[:500], exact=s[:500]) for s in strings(element)]
    if type_ == DATE:
        span = date_range(element)
        return [_row(start=span[0], end=span[1])] if span else []
    if type_ == REFERENCE:
        ref = element.get("reference") if isinstance(element, dict) else None
        if isinstance(ref, str):
            return [_row(reference=ref[:130])]
        # A logical reference (Coverage.payor, Encounter.hospitalization.origin): its
        # identifier as a token, for the :identifier modifier.
        ident = element.get("identifier") if isinstance(element, dict) else None
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return [_row(system=ident.get("system"), code=ident["value"])]
        return []
    if type_ in (NUMBER, QUANTITY):
        value = element.get("value") if isinstance(element, dict) else element
        try:
            number = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return []
        unit = element.get("code") or element.get("unit") if isinstance(element, dict) else None
        system = element.get("system") if isinstance(element, dict) else None
        return [_row(number=number, code=unit, system=system)]
    return []


def tokens(element: Any) -> list[tuple[str | None, str, str | None]]:
    """(system, code, display text) of an Identifier, Coding, CodeableConcept, ContactPoint,
    code, boolean or string."""
    if isinstance(element, bool):
        return [(None, "true" if element else "false", None)]
    if isinstance(element, str):
        return [(None, element, None)]
    if not isinstance(element, dict):
        return []
    if "coding" in element or ("text" in element and "code" not in element):
        found = [t for coding in element.get("coding", []) for t in tokens(coding)]
        return found
    if "code" in element:
        return [(element.get("system"), str(element["code"]), element.get("display"))]
    if "value" in element and isinstance(element["value"], str):  # Identifier, ContactPoint
        return [(element.get("system"), element["value"], None)]
    return []


def strings(element: Any) -> list[str]:
    """Every text a string parameter matches in a string, HumanName or Address."""
    if isinstance(element, str):
        return [element]
    if not isinstance(element, dict):
        return []
    found: list[str] = []
    for key in (
        "text",
        "family",
        "given",
        "prefix",
        "suffix",
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
        "display",
    ):
        value = element.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    return found


_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(.+))?)?)?$")


def date_range(element: Any) -> tuple[dt.datetime, dt.datetime] | None:
    """The instants a date, dateTime, instant or Period covers: [start, end)."""
    if isinstance(element, dict):
        start = date_range(element.get("start")) if element.get("start") else None
        end = date_range(element.get("end")) if element.get("end") else None
        if not start and not end:
            return None
        return (
            start[0] if start else dt.datetime.min.replace(tzinfo=dt.UTC),
            end[1] if end else dt.datetime.max.replace(tzinfo=dt.UTC),
        )
    if not isinstance(element, str):
        return None
    return parse_date(element)


def parse_date(text: str) -> tuple[dt.datetime, dt.datetime] | None:
    """A FHIR date/dateTime/instant of any precision → the [start, end) it covers, in UTC.
    Dates without a time are days of Vietnam (UTC+7)."""
    match = _DATE.match(text.strip())
    if not match:
        return None
    year, month, day, time = match.groups()
    vn = dt.timezone(dt.timedelta(hours=7))
    try:
        if time is None:
            y = int(year)
            if month is None:
                start = dt.datetime(y, 1, 1, tzinfo=vn)
                end = (
                    dt.datetime(y + 1, 1, 1, tzinfo=vn)
                    if y < 9999
                    else dt.datetime.max.replace(tzinfo=dt.UTC)
                )
            elif day is None:
                m = int(month)
                start = dt.datetime(y, m, 1, tzinfo=vn)
                end = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=vn)
            else:
                start = dt.datetime(y, int(month), int(day), tzinfo=vn)
                end = start + dt.timedelta(days=1)
            return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=vn)
        # Inside the try: 0001-01-01T00:00+07:00 is before the first instant Python has.
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
    precision = dt.timedelta(seconds=1) if "." not in text else dt.timedelta(milliseconds=1)
    try:
        return moment, moment + precision
    except OverflowError:  # the last second of year 9999
        return moment, dt.datetime.max.replace(tzinfo=dt.UTC)


# --- the parameters -------------------------------------------------------------------
# Patient (the rest are added by their mappers' modules next to the JSON they build)

param("Patient", "identifier", TOKEN, "identifier", doc="CCCD, BHYT, MRN, ... (system|value)")
param("Patient", "name", STRING, "name", doc="Any part of the name, accents and case ignored")
param("Patient", "family", STRING, "name.family")
param("Patient", "given", STRING, "name.given")
param("Patient", "birthdate", DATE, "birthDate")
param("Patient", "gender", TOKEN, "gender")
param("Patient", "phone", TOKEN, "telecom")
param("Patient", "telecom", TOKEN, "telecom")
param("Patient", "address-city", STRING, "address.city")
param("Patient", "address", STRING, "address")
param("Patient", "active", TOKEN, "active")
param("Patient", "link", REFERENCE, "link.other", targets=("Patient",))
