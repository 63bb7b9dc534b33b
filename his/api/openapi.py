"""The errors every REST operation can answer with, written into the OpenAPI document.

Each view documents its own outcomes (its success, the 404 of a missing row, the 409 of a
conflict). Some answers do not depend on the view: any secured call can meet a 401, any
JSON body can be unreadable (400) or too large (413), any address can hold a NUL (400),
any call can find the database unreachable (503), and a write sent with the session
cookie needs its CSRF token (400).
This plugin adds those to every operation, so the document lists every
status an operation really answers with, in the format it really has (problem+json), and
no catch-all ``default`` response has to hide an undocumented one.
"""

from __future__ import annotations

import http
from typing import Any

import marshmallow as ma
from apispec import BasePlugin

from his.api.schemas import ProblemSchema

PROBLEM_JSON = "application/problem+json"
# Every row a REST path names has an INTEGER primary key (32-bit on PostgreSQL): a larger
# id names nothing (his.api.blueprint answers 404 before the database would refuse it).
MAX_ID = 2**31 - 1

# Header objects of the error responses that carry one.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "How to authenticate: a bearer token",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer "},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 0},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}

# What the shared responses mean, where the status's own name says too little.
DESCRIPTIONS = {
    400: (
        "The body is not readable JSON, the address holds a NUL character, or a write "
        "authenticated by the session cookie came without its CSRF token (X-CSRFToken)"
    ),
    401: "No valid bearer token or session",
    413: "The body is larger than the server accepts",
    422: "A parameter or field is not valid; `errors` says which",
    429: "Too many attempts; retry after Retry-After seconds",
    503: "The database cannot be reached just now; retry after Retry-After seconds",
}


def error_response_component(status: http.HTTPStatus) -> dict[str, Any]:
    """The reusable response object of an error status (components/responses/<NAME>)."""
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, status.phrase),
        "content": {PROBLEM_JSON: {"schema": ProblemSchema}},
    }
    if status in ERROR_HEADERS:
        response["headers"] = ERROR_HEADERS[status]
    return response


def _ref(status: int) -> str:
    return http.HTTPStatus(status).name


class CommonResponses(BasePlugin):
    """Adds to each operation the error responses that do not depend on its view."""

    def path_helper(self, path=None, operations=None, parameters=None, **kwargs) -> None:
        for parameter in parameters or []:
            schema = parameter.get("schema", {}) if isinstance(parameter, dict) else {}
            if parameter.get("in") == "path" and schema.get("type") == "integer":
                schema["maximum"] = min(schema.get("maximum", MAX_ID), MAX_ID)

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            present = {str(code) for code in responses}
            # 400: any address may hold a NUL (his.http refuses it); any write may carry an
            # unreadable body, and with the session cookie needs a CSRF token.
            common = [400, 503]
            if operation.get("security") != []:
                common.append(401)
            if method.lower() in ("post", "put", "patch", "delete"):
                common.append(413)
            if "requestBody" in operation:
                common.append(422)
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                common.append(422)
            for status in common:
                if str(status) not in present:
                    responses[status] = _ref(status)
                    present.add(str(status))


def number_properties(self, field: ma.fields.Field, ret: dict, **kwargs) -> dict:
    """apispec attribute function for numbers: bounds as JSON numbers (apispec writes a
    Decimal's as strings), an exclusive bound as exclusive, and a Decimal sent as a
    string (``as_string``) as the string it is."""
    if not isinstance(field, ma.fields.Number):
        return {}
    for key in ("minimum", "maximum"):
        if key in ret:
            ret[key] = _json_number(ret[key])
    for validator in field.validators:
        if isinstance(validator, ma.validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                ret["exclusiveMinimum"] = True
            if validator.max is not None and not validator.max_inclusive:
                ret["exclusiveMaximum"] = True
    if isinstance(field, ma.fields.Decimal) and field.as_string:
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            ret.pop(key, None)
        ret["type"] = "string"
        ret["format"] = "decimal"
        ret["pattern"] = r"^-?[0-9]+(\.[0-9]+)?$"
    return {}


def _json_number(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def link(path: str, method: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation ``method path``, its parameters taken from the
    response (e.g. ``patient_id="$response.body#/id"``): clients and schemathesis's
    stateful tests follow it from a created row to what can be done with it."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method.lower()}", "parameters": parameters}
