"""OperationOutcome: the one error format of the FHIR API.

Every failure under ``/fhir`` leaves as an OperationOutcome with the HTTP status a FHIR
client expects, the FHIR issue code, the message in the caller's language and, when one
element is at fault, its FHIRPath ``expression``.
"""

from __future__ import annotations

from typing import Any

# HTTP status → the issue code used when the raiser names none.
_DEFAULT_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


class FhirError(Exception):
    """Raised anywhere in the FHIR layer; turned into an OperationOutcome response."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        code: str | None = None,
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
        issues: list[dict[str, Any]] | None = None,
    ):
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code or _DEFAULT_CODES.get(status, "processing")
        self.expression = expression
        self.headers = headers or {}
        self.extra_issues = issues or []

    def outcome(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": "error" if self.status < 500 else "fatal",
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = self.expression
        return operation_outcome([issue, *self.extra_issues])


def issue(severity: str, code: str, diagnostics: str, expression: list[str] | None = None):
    found: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        found["expression"] = expression
    return found


def operation_outcome(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}
