"""The resource types this server serves, and which of them accept writes."""

from __future__ import annotations

from flask_babel import gettext as _

from his.fhirapi.outcome import FhirError

# Projected from the domain tables (read, vread, history, search).
PROJECTED = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Encounter",
    "Condition",
    "Observation",
    "DiagnosticReport",
    "AllergyIntolerance",
    "ServiceRequest",
    "MedicationRequest",
    "Medication",
    "MedicationDispense",
    "Coverage",
    "Claim",
    "Group",
)
# Served from elsewhere: the audit trail, and the conformance artefacts of fhir/.
AUDIT = ("AuditEvent",)
CONFORMANCE = ("CodeSystem", "ValueSet", "StructureDefinition")
SERVED = PROJECTED + AUDIT + CONFORMANCE

# Types external systems may create or update through FHIR (everything else: 405).
CREATABLE = ("Patient", "Observation", "DiagnosticReport", "AllergyIntolerance")
UPDATABLE = ("Patient",)


def require_type(resource_type: str) -> None:
    if resource_type not in SERVED:
        raise FhirError(
            404,
            _("This server does not serve the resource type %(type)s.") % {"type": resource_type},
            code="not-supported",
        )
