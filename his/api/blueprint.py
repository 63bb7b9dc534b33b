"""The Blueprint every REST module uses: flask-smorest's, with a JSON reader that turns
every unreadable body into a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from flask import request
from flask_babel import lazy_gettext as _l
from flask_smorest import abort
from flask_smorest.pagination import PaginationMetadataSchema
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import NotFound

from his.api.openapi import MAX_ID
from his.api.pagination import open_ended_metadata


class _Parser(FlaskParser):
    def _raw_load_json(self, req) -> Any:
        try:
            return super()._raw_load_json(req)
        except json.JSONDecodeError:
            raise
        except ValueError as exc:
            # Python refuses integers longer than 4,300 digits with a plain ValueError
            # (CVE-2020-10735); to the client that is just unreadable JSON. (webargs reads
            # an error on an empty document as "no body", so the document is named.)
            raise json.JSONDecodeError(str(exc), "<request body>", 0) from exc
        except RecursionError as exc:
            # "[[[[…" a hundred thousand deep exhausts the parser's stack: a 400, not a 500.
            raise json.JSONDecodeError(_TOO_DEEP, "<request body>", 0) from exc

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        """A 400 that says what is wrong with the body when it can be said precisely."""
        message = None
        if isinstance(error, json.JSONDecodeError) and error.msg == _TOO_DEEP:
            message = str(_l("The JSON body is nested too deeply."))
        elif isinstance(error, json.JSONDecodeError) and error.msg.startswith("Bytes decoding"):
            message = str(
                _l(
                    "The body is not valid UTF-8 (byte %(position)s): send JSON encoded in UTF-8.",
                    position=error.pos,
                )
            )
        if message is None:
            super()._handle_invalid_json_error(error, req, *args, **kwargs)
        abort(400, exc=error, message=message, messages={"json": [message]})


_TOO_DEEP = "nested too deeply"


def _ids_in_range() -> None:
    """An id past MAX_ID names no row: 404, as on SQLite, where PostgreSQL would refuse to
    compare it with its INTEGER column (a 422 that says the value is too large)."""
    for value in (request.view_args or {}).values():
        if isinstance(value, int) and value > MAX_ID:
            raise NotFound()


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.before_request(_ids_in_range)

    def _document_pagination_metadata(self, spec, resp_doc):
        # The header's value is a JSON object: OpenAPI says so with ``content``, where a
        # ``schema`` would describe a simple-style "key,value" list.
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = {
            "description": "Pagination metadata (JSON)",
            "required": True,
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }

    def _set_pagination_metadata(self, page_params, result, headers):
        meta = open_ended_metadata(page_params)
        if meta is None:
            return super()._set_pagination_metadata(page_params, result, headers)
        headers = {} if headers is None else headers
        headers[self.PAGINATION_HEADER_NAME] = json.dumps(PaginationMetadataSchema().dump(meta))
        return result, headers
