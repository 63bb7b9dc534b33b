"""A patient merge (or its undo) moves visits, cards, allergies and identifiers with bulk
SQL, which no row trigger sees; so a merge row re-marks both patients' whole compartment,
and every resource in it is rebuilt under the patient it now belongs to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import object_session

from his.fhirapi.projection import trigger
from his.models import FhirResource, PatientMerge


@trigger(PatientMerge)
def _merge_changed(row: PatientMerge):
    session = object_session(row)
    patients = (row.survivor_id, row.merged_id)
    keys = [("Patient", str(pid)) for pid in patients]
    if session is not None:
        keys += session.execute(
            select(FhirResource.resource_type, FhirResource.resource_id).where(
                FhirResource.patient_id.in_(patients)
            )
        ).all()
    return [tuple(k) for k in keys]
