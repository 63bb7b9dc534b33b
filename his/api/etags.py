"""Optimistic concurrency over HTTP: the row's version is its ETag, and a write sends it
back in If-Match, so two clerks editing one record cannot overwrite each other."""

from __future__ import annotations

from flask import request
from flask_babel import gettext as _

from his.errors import ValidationFailed

# How the OpenAPI document describes the header with_etag sets.
ETAG_HEADER = {
    "ETag": {
        "description": "The row's version; send it back in If-Match to change the row",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
    }
}


def with_etag(row, status: int = 200):
    """A flask-smorest response tuple carrying the versioned row's ETag."""
    return row, status, {"ETag": f'"{row.version}"'}


def if_match() -> int | None:
    """The version the client read (from If-Match), or None when it sent none."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ValidationFailed(
            _("If-Match must be the ETag you read."), errors={"If-Match": [header]}
        )
    return int(tag)
