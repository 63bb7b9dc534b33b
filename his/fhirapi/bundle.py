"""Bundles assembled from stored JSON text: the entries' bytes are spliced in as they are
stored, never parsed and re-serialised."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import request

from his.db import utcnow
from his.fhirapi.wire import dumps, instant


@dataclass
class Entry:
    full_url: str | None
    resource: str | None  # stored JSON text, or None (a deleted version in history)
    search_mode: str | None = None  # match | include | outcome
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        parts = []
        if self.full_url:
            parts.append('"fullUrl":' + dumps(self.full_url))  # type: ignore[arg-type]
        if self.resource:
            parts.append('"resource":' + self.resource)
        if self.search_mode:
            parts.append('"search":{"mode":' + dumps(self.search_mode) + "}")  # type: ignore[arg-type]
        if self.request:
            parts.append('"request":' + dumps(self.request))
        if self.response:
            parts.append('"response":' + dumps(self.response))
        return "{" + ",".join(parts) + "}"


def base_url() -> str:
    """The FHIR base as the client addressed it (``https://host/fhir``)."""
    return request.host_url.rstrip("/") + "/fhir"


def full_url(resource_type: str, resource_id: str) -> str:
    return f"{base_url()}/{resource_type}/{resource_id}"


def bundle_text(
    bundle_type: str,
    entries: list[Entry],
    *,
    links: list[tuple[str, str]] | None = None,
    total: int | None = None,
) -> str:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": instant(utcnow())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    text = dumps(head)[:-1]
    if entries:
        text += ',"entry":[' + ",".join(e.text() for e in entries) + "]"
    return text + "}"
