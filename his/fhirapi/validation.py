"""Validating incoming FHIR JSON against the R4 definitions (R4B models plus a shim).

(Placeholder until the validation work lands: checks only the resource type.)
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _

from his.fhirapi.outcome import FhirError


def validate(resource: Any, expected_type: str | None = None) -> None:
    """Raise a 400 FhirError with one issue per problem; return when the JSON is valid."""
    if not isinstance(resource, dict) or "resourceType" not in resource:
        raise FhirError(400, _("The body must be a FHIR resource with a resourceType."))
    if expected_type and resource["resourceType"] != expected_type:
        raise FhirError(
            400,
            _("The body is a %(found)s, not a %(expected)s.")
            % {"found": resource["resourceType"], "expected": expected_type},
        )
