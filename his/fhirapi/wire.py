"""FHIR on the wire: media types, ``_format``, and building responses from stored bytes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Response, request
from flask_babel import gettext as _

from his.fhirapi.outcome import FhirError

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
FHIR_VERSION = "4.0.1"

_JSON_FORMATS = {"json", "application/json", "application/fhir+json", FHIR_JSON}
_XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml"}


def check_format() -> None:
    """JSON only: ``_format`` or an Accept header that asks only for XML is a 406."""
    fmt = request.args.get("_format")
    if fmt is not None:
        base = fmt.split(";")[0].strip().lower()
        if base in _JSON_FORMATS:
            return
        raise FhirError(406, _("Only JSON is served: use _format=json."), code="not-supported")
    accept = request.accept_mimetypes
    if not accept or accept.best_match([FHIR_JSON, "application/json", "*/*"]):
        return
    if any(accept.quality(x) for x in _XML_FORMATS):
        raise FhirError(406, _("Only JSON is served: use _format=json."), code="not-supported")


def dumps(resource: dict[str, Any]) -> str:
    """Compact JSON with the letters as they are (Vietnamese stays readable)."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def instant(moment: dt.datetime) -> str:
    """A FHIR instant in UTC with milliseconds: 2026-11-28T04:12:33.123Z."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def http_date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def respond(
    body: str | bytes | dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    data = dumps(body) if isinstance(body, dict) else body
    response = Response(data, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def is_number(text: str) -> bool:
    """ASCII digits that fit a 64-bit id. ``str.isdigit`` alone also accepts "²" and
    Arabic-Indic digits, which ``int()`` then refuses or the database cannot hold."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def parse_etag(value: str) -> int | None:
    """``W/"3"`` or ``"3"`` → 3; anything else None."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    return int(value) if is_number(value) else None
