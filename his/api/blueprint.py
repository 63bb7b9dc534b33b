"""The Blueprint every REST module uses: flask-smorest's, with a JSON reader that turns
every unreadable body into a 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from webargs.flaskparser import FlaskParser


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


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()
