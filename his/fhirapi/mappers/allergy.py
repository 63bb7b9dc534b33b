"""AllergyIntolerance: the allergies recorded on the shared patient record."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, drop_empty, ref
from his.fhirapi.mappers.encounter import row_id
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import REFERENCE, TOKEN, param
from his.models import AllergySeverity, PatientAllergy

# Our severity is the reaction's; the worst one also says how dangerous a new exposure is.
SEVERITY = {
    AllergySeverity.MILD: "mild",
    AllergySeverity.MODERATE: "moderate",
    AllergySeverity.SEVERE: "severe",
}
CRITICALITY = {
    AllergySeverity.MILD: "low",
    AllergySeverity.MODERATE: "low",
    AllergySeverity.SEVERE: "high",
    AllergySeverity.UNKNOWN: "unable-to-assess",
}

param("AllergyIntolerance", "patient", REFERENCE, "patient", targets=("Patient",))
param("AllergyIntolerance", "code", TOKEN, "code", doc="The substance (coded when it is)")
param("AllergyIntolerance", "clinical-status", TOKEN, "clinicalStatus")
param("AllergyIntolerance", "criticality", TOKEN, "criticality")
param("AllergyIntolerance", "severity", TOKEN, "reaction.severity")


@trigger(PatientAllergy)
def _allergy_changed(row: PatientAllergy):
    # A deleted row is a deleted resource: the builder finds nothing and returns None.
    return [("AllergyIntolerance", str(row.id))]


def _ids(session: Session) -> Iterator[str]:
    for aid in session.scalars(select(PatientAllergy.id).order_by(PatientAllergy.id)):
        yield str(aid)


ALL_IDS["AllergyIntolerance"] = _ids


@builder("AllergyIntolerance")
def build_allergy(session: Session, resource_id: str) -> Built | None:
    aid = row_id(resource_id)
    allergy = session.get(PatientAllergy, aid) if aid is not None else None
    if allergy is None:
        return None
    reaction = None
    if allergy.reaction:  # manifestation is required: no reaction without its text
        reaction = {
            "manifestation": [{"text": allergy.reaction}],
            "severity": SEVERITY.get(allergy.severity),
        }
    resource = {
        "clinicalStatus": concept(systems.ALLERGY_CLINICAL, "active", "Active"),
        "criticality": CRITICALITY[allergy.severity],
        "code": {"text": allergy.substance},
        "patient": ref("Patient", allergy.patient_id),
        "reaction": [reaction],
        "extension": [
            {
                "url": systems.ALLERGY_SEVERITY_EXT,
                "valueCoding": coding(systems.ALLERGY_SEVERITY_CS, str(allergy.severity)),
            }
        ],
    }
    # Shared data: the patient record belongs to no single facility.
    return Built(drop_empty(resource), allergy.patient_id, None)
