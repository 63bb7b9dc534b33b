"""A patient merge moves rows with bulk SQL; the FHIR projection must follow it."""

import json

from sqlalchemy import select

from his.models import FhirResource, Role
from his.services import encounters as encounter_service
from his.services import patients as patient_service
from his.services.access import Principal
from tests import encounters_data as data
from tests.factories import PatientFactory, UserFactory, VisitFactory


def _stored(db_session, resource_type, resource_id):
    row = db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == resource_type,
            FhirResource.resource_id == resource_id,
        )
    ).one()
    return row, json.loads(row.content)


def test_a_merge_moves_the_visits_encounter_to_the_survivor_and_undo_moves_it_back(db_session):
    admin = Principal.for_user(UserFactory(roles=(Role.ADMIN,)))
    survivor, merged = PatientFactory(), PatientFactory()
    clinic = data.clinic(db_session)
    visit = VisitFactory(patient=merged, facility=clinic.facility, room=clinic.room)
    examination = encounter_service.start_examination(
        db_session, Principal.for_user(clinic.doctor), visit.id
    )
    db_session.commit()
    row, encounter = _stored(db_session, "Encounter", f"v{visit.id}")
    assert encounter["subject"]["reference"] == f"Patient/{merged.id}"

    record = patient_service.merge_patients(db_session, admin, survivor.id, merged.id)
    db_session.commit()
    row, encounter = _stored(db_session, "Encounter", f"v{visit.id}")
    assert encounter["subject"]["reference"] == f"Patient/{survivor.id}"
    assert row.patient_id == survivor.id
    _row, exam = _stored(db_session, "Encounter", f"e{examination.id}")
    assert exam["subject"]["reference"] == f"Patient/{survivor.id}"
    db_session.refresh(examination)
    assert examination.patient_id == survivor.id
    _row, old = _stored(db_session, "Patient", str(merged.id))
    assert old["active"] is False
    assert old["link"][0]["other"]["reference"] == f"Patient/{survivor.id}"

    patient_service.undo_merge(db_session, admin, record.id)
    db_session.commit()
    row, encounter = _stored(db_session, "Encounter", f"v{visit.id}")
    assert encounter["subject"]["reference"] == f"Patient/{merged.id}"
    assert row.patient_id == merged.id
