"""Domain errors raised by services; each front door turns them into its own error format
(problem+json for REST, OperationOutcome for FHIR, an ACK with ERR for HL7 v2)."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: dict[str, list[str]] | None = None,
        extra: dict[str, object] | None = None,
        code: str | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}
        # More members for the problem document (e.g. the existing record of a duplicate).
        self.extra = extra or {}
        if code:
            self.code = code


class NotFound(DomainError):
    status = 404
    code = "not-found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class ValidationFailed(DomainError):
    status = 422
    code = "validation-failed"


class InvalidValue(ValueError):
    """One field's value is wrong; ``message`` says which part and why, translated."""

    def __init__(self, message: object):
        super().__init__(str(message))
        self.message = message
