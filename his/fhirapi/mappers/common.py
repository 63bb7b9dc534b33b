"""Small building blocks shared by the mappers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from his.fhirapi.wire import instant

VN = dt.timezone(dt.timedelta(hours=7))


def ref(resource_type: str, resource_id: object, display: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        found["display"] = display
    return found


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"coding": [coding(system, code, display)]}
    if display:
        found["text"] = display
    return found


def date_time(moment: dt.datetime | None) -> str | None:
    """A dateTime in Vietnam time, as staff read it (offset given)."""
    if moment is None:
        return None
    return moment.astimezone(VN).isoformat(timespec="seconds")


def when(moment: dt.datetime | None) -> str | None:
    return instant(moment) if moment else None


def drop_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """FHIR forbids empty elements: no None, "", [] or {} anywhere."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            cleaned = {k: clean(v) for k, v in value.items()}
            return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
        if isinstance(value, list):
            cleaned_list = [clean(v) for v in value]
            return [v for v in cleaned_list if v not in (None, "", [], {})]
        return value

    return clean(resource)
