"""Patient/$everything: the compartment plus the referenced Organization, Practitioner,
Location and Medication, paged so that following every next link returns each resource
exactly once (also with a write between pages); _type, _since, start/end."""

import pytest
from sqlalchemy import select

from his.models import AuditAction, AuditEvent, FhirResource, Role, VisitStatus
from his.services import allergies
from his.services import encounters as svc
from his.services.access import Principal
from tests import encounters_data as data
from tests.factories import PatientFactory, UserFactory, VisitFactory


@pytest.fixture
def record(db_session, login_token):
    """A patient with a visit, an examination, an order with its result and an allergy;
    and another patient whose records must never show up."""
    clinic = data.clinic(db_session)
    patient = PatientFactory()
    other = PatientFactory()
    doctor = Principal.for_user(clinic.doctor)
    for who, number in ((patient, 1), (other, 2)):
        visit = VisitFactory(
            facility_id=clinic.facility.id,
            patient_id=who.id,
            room_id=clinic.room.id,
            queue_date=data.today(),
            queue_number=number,
            status=VisitStatus.WAITING,
        )
        encounter = svc.start_examination(db_session, doctor, visit.id)
        order = svc.add_order(db_session, doctor, encounter.id, "23.0075.1494")
        svc.enter_result(db_session, Principal.for_user(clinic.lab), order.id, "5.5")
        allergies.add_allergy(db_session, doctor, who.id, "Penicillin", "mề đay", "mild")
    db_session.commit()
    # A staff member of the clinic's facility sees its records.
    reader = UserFactory(roles=(Role.DOCTOR,), facility=clinic.facility)
    db_session.commit()
    token = login_token(reader.username)["Authorization"].removeprefix("Bearer ")
    return {"patient": patient, "other": other, "clinic": clinic, "token": token}


@pytest.fixture
def get(fhir_get, record):
    def call(path):
        response = fhir_get(path, token=record["token"])
        assert response.status_code == 200, response.json
        return response.json

    return call


def _follow(get, first_path):
    keys, pages = [], 0
    bundle = get(first_path)
    while True:
        pages += 1
        assert bundle["type"] == "searchset"
        keys += [
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
        ]
        nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return keys, pages
        bundle = get(_path(nxt[0]))


def _path(url):
    """The path and query of an absolute link."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _expected(db_session, patient_id):
    compartment = db_session.scalars(
        select(FhirResource).where(
            FhirResource.patient_id == patient_id, FhirResource.deleted.is_(False)
        )
    ).all()
    return {f"{r.resource_type}/{r.resource_id}" for r in compartment}


def test_everything_holds_the_compartment_and_what_it_references(get, record, db_session):
    pid = record["patient"].id
    keys, _pages = _follow(get, f"/fhir/Patient/{pid}/$everything?_count=1000")
    assert len(keys) == len(set(keys))
    found = set(keys)
    assert _expected(db_session, pid) <= found
    assert f"Patient/{pid}" in found
    assert f"Patient/{record['other'].id}" not in found
    assert not {k for k in found if k in _expected(db_session, record["other"].id)}, (
        "another patient's records"
    )
    extra = {k.split("/")[0] for k in found - _expected(db_session, pid)}
    assert extra <= {"Organization", "Practitioner", "Location", "Medication"}
    assert "Organization" in extra  # the patient's managing organization
    types = {k.split("/")[0] for k in found}
    assert {"Patient", "Encounter", "Observation", "AllergyIntolerance"} <= types
    audited = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == AuditAction.SEARCH, AuditEvent.patient_id == pid
        )
    ).all()
    assert any("$everything" in (a.detail or "") for a in audited)


@pytest.mark.parametrize("count", ["1", "2", "total", "1000"])
def test_paging_returns_each_resource_exactly_once(get, record, count):
    pid = record["patient"].id
    everything, _pages = _follow(get, f"/fhir/Patient/{pid}/$everything?_count=1000")
    size = len(everything) if count == "total" else int(count)
    keys, pages = _follow(get, f"/fhir/Patient/{pid}/$everything?_count={size}")
    assert sorted(keys) == sorted(everything)
    assert len(keys) == len(set(keys))
    assert pages == max(1, -(-len(everything) // size))


def test_a_write_between_pages_neither_repeats_nor_skips(get, record, db_session):
    pid = record["patient"].id
    before, _pages = _follow(get, f"/fhir/Patient/{pid}/$everything?_count=1000")
    first = get(f"/fhir/Patient/{pid}/$everything?_count=2")
    doctor = Principal.for_user(record["clinic"].doctor)
    allergies.add_allergy(db_session, doctor, pid, "Aspirin", None, "severe")
    db_session.commit()
    keys = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in first["entry"]]
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest, _pages = _follow(get, _path(url))
    keys += rest
    assert len(keys) == len(set(keys))
    assert set(before) <= set(keys)
    assert len(keys) == len(before) + 1  # the new allergy comes last: its rid is the highest


def test_type_since_and_care_dates(get, record):
    pid = record["patient"].id
    only, _ = _follow(get, f"/fhir/Patient/{pid}/$everything?_type=Encounter,Observation")
    assert only and {k.split("/")[0] for k in only} <= {"Encounter", "Observation"}
    future, _ = _follow(get, f"/fhir/Patient/{pid}/$everything?_since=2999-01-01")
    assert future == []
    long_ago, _ = _follow(get, f"/fhir/Patient/{pid}/$everything?start=2000-01-01&end=2000-12-31")
    types = {k.split("/")[0] for k in long_ago}
    assert "Patient" in types  # no care date: always part of the record
    assert "Encounter" not in types  # today's visit is outside the range
    everything, _ = _follow(get, f"/fhir/Patient/{pid}/$everything?start=2000-01-01")
    assert any(k.startswith("Encounter/") for k in everything)


def test_everything_errors(fhir_get, record):
    token = record["token"]
    assert fhir_get("/fhir/Patient/99999999/$everything", token=token).status_code == 404
    pid = record["patient"].id
    for bad in ("_count=0", "_count=x", "_type=Spaceship", "_since=yesterday", "_cursor=x"):
        response = fhir_get(f"/fhir/Patient/{pid}/$everything?{bad}", token=token)
        assert response.status_code == 400, bad
        assert response.json["resourceType"] == "OperationOutcome"
