"""Bulk Data $export end to end: kick-off, polling, the worker, the manifest and its files,
_since / _type / _typeFilter, who may see what, the quota and cancel."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time

import pytest
from sqlalchemy import select, update

from his.db import utcnow
from his.fhirapi.projection import Built, store
from his.models import FhirAccessToken, FhirClient, FhirExportJob, FhirResource
from his.services import fhir_export
from tests.factories import FacilityFactory, PatientFactory

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture
def app(make_app, db_session, tmp_path):
    # Export files go to the instance folder: a throwaway one per test.
    return make_app(HIS_INSTANCE_DIR=str(tmp_path), HIS_FHIR_EXPORT_MAX_CONCURRENT="2")


@pytest.fixture
def bulk(client, staff_token, app):
    class Bulk:
        token = staff_token

        def get(self, path, token=None, headers=None):
            sent = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
            return client.get(path, headers=sent)

        def delete(self, path, token=None):
            return client.delete(path, headers={"Authorization": f"Bearer {token or self.token}"})

        def kick(self, path="/fhir/$export", token=None, headers=None):
            response = self.get(path, token, {**ASYNC, **(headers or {})})
            assert response.status_code == 202, response.json
            return response.headers["Content-Location"]

        def work(self):
            return fhir_export.work_once(app.extensions["his_db"], app.config["HIS_SETTINGS"])

        def manifest(self, status_url, token=None):
            response = self.get(_path(status_url), token)
            assert response.status_code == 200, response.data
            return response.json

        def lines(self, url, token=None):
            response = self.get(_path(url), token, {"Accept": "application/fhir+ndjson"})
            assert response.status_code == 200, response.data
            assert response.headers["Content-Type"].startswith("application/fhir+ndjson")
            return response.data.decode().splitlines()

    return Bulk()


def _path(url: str) -> str:
    return url[url.index("/fhir/") :]


def _other_resource(session, resource_type, resource_id, patient_id, facility_id, **fields):
    """A stored resource of a type whose mapper is not under test here."""
    return store(
        session,
        resource_type,
        resource_id,
        Built(
            {"resourceType": resource_type, "status": "final", **fields}, patient_id, facility_id
        ),
    )


def _client_token(session, scopes: str, facility_ids=None) -> str:
    """A backend client and an access token as the SMART token endpoint stores them."""
    raw = secrets.token_urlsafe(24)
    client = FhirClient(
        client_id=f"insurer-{secrets.token_hex(4)}",
        jwks={"keys": []},
        scopes=scopes,
        facility_ids=facility_ids,
    )
    session.add(client)
    session.flush()
    session.add(
        FhirAccessToken(
            token_hash=hashlib.sha256(raw.encode()).hexdigest(),
            client_pk=client.id,
            scopes=scopes,
            expires_at=utcnow() + dt.timedelta(minutes=5),
        )
    )
    session.commit()
    return raw


def test_system_export_end_to_end(db_session, bulk, staff_token):
    patients = [PatientFactory(full_name=f"Lê Văn Bảo {i}") for i in range(3)]
    db_session.commit()
    user_facility = db_session.scalar(
        select(FhirResource.facility_id).where(FhirResource.resource_type == "Patient").limit(1)
    )
    from his.services import auth

    staff = auth.user_for_token(db_session, staff_token)
    other = FacilityFactory()
    _other_resource(
        db_session,
        "Observation",
        "t1",
        patients[0].id,
        staff.facility_id,
        note=[{"text": 'Bệnh nhân nói "đau" ở C:\\đầu\n\tgối'}],  # escapes survive
    )
    _other_resource(db_session, "Observation", "t2", patients[1].id, staff.facility_id)
    _other_resource(db_session, "Observation", "t3", patients[1].id, other.id)  # not theirs
    db_session.commit()
    assert user_facility is None  # the patient index is shared

    status_url = bulk.kick()
    assert status_url.startswith("http://localhost/fhir/bulk/")
    job = db_session.get(FhirExportJob, status_url.rsplit("/", 1)[1])
    assert job.status == "queued"
    assert job.owner == f"user:{staff.id}"
    assert job.facility_ids == [staff.facility_id]

    waiting = bulk.get(_path(status_url))
    assert waiting.status_code == 202
    assert waiting.headers["X-Progress"]
    assert waiting.headers["Retry-After"]

    assert bulk.work() == 1
    response = bulk.get(_path(status_url))
    assert response.status_code == 200
    assert response.headers["Expires"]
    manifest = response.json
    assert set(manifest) >= {
        "transactionTime",
        "request",
        "requiresAccessToken",
        "output",
        "deleted",
        "error",
    }
    assert manifest["request"] == "http://localhost/fhir/$export"
    assert manifest["requiresAccessToken"] is True
    assert manifest["deleted"] == [] and manifest["error"] == []
    by_type = {item["type"]: item for item in manifest["output"]}
    assert len(by_type) == len(manifest["output"])  # one file per type
    assert by_type["Observation"]["count"] == 2
    patient_count = db_session.scalar(
        select(FhirResource.rid)
        .where(FhirResource.resource_type == "Patient")
        .with_only_columns(__import__("sqlalchemy").func.count())
    )
    assert by_type["Patient"]["count"] == patient_count >= 3
    for item in manifest["output"]:
        assert item["url"].startswith("http://localhost/fhir/bulk/")
        lines = bulk.lines(item["url"])
        assert len(lines) == item["count"]
        for line in lines:
            assert json.loads(line)["resourceType"] == item["type"]
    # The stored bytes, exactly as the read endpoint serves them.
    lines = bulk.lines(by_type["Patient"]["url"])
    wanted = bulk.get(f"/fhir/Patient/{patients[2].id}").data.decode()
    assert wanted in lines
    observation_ids = {json.loads(line)["id"] for line in bulk.lines(by_type["Observation"]["url"])}
    assert observation_ids == {"t1", "t2"}
    stored = set(
        db_session.scalars(
            select(FhirResource.content).where(
                FhirResource.resource_type == "Observation",
                FhirResource.resource_id.in_(["t1", "t2"]),
            )
        )
    )
    assert set(bulk.lines(by_type["Observation"]["url"])) == stored


def test_kick_off_errors_are_operation_outcomes(bulk, client):
    no_token = client.get("/fhir/$export", headers=ASYNC)
    assert no_token.status_code == 401
    assert no_token.json["resourceType"] == "OperationOutcome"
    no_prefer = bulk.get("/fhir/$export")
    assert no_prefer.status_code == 400
    assert no_prefer.json["resourceType"] == "OperationOutcome"
    bad_format = bulk.get("/fhir/$export?_outputFormat=text/csv", headers=ASYNC)
    assert bad_format.status_code == 400
    for fmt in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
        ok = bulk.get(f"/fhir/$export?_type=Patient&_outputFormat={fmt}", headers=ASYNC)
        assert ok.status_code in (202, 429), ok.json
    bad_type = bulk.get("/fhir/$export?_type=Patient,Spaceship", headers=ASYNC)
    assert bad_type.status_code == 400
    assert bad_type.json["issue"][0]["expression"] == ["_type"]
    bad_since = bulk.get("/fhir/$export?_since=yesterday", headers=ASYNC)
    assert bad_since.status_code == 400
    no_group = bulk.get("/fhir/Group/999999/$export", headers=ASYNC)
    assert no_group.status_code == 404
    unknown = bulk.get("/fhir/bulk/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json["resourceType"] == "OperationOutcome"


def test_lenient_handling_drops_unknown_types(bulk, db_session):
    PatientFactory()
    db_session.commit()
    status_url = bulk.kick(
        "/fhir/$export?_type=Patient,Spaceship",
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    bulk.work()
    assert [o["type"] for o in bulk.manifest(status_url)["output"]] == ["Patient"]


def test_type_and_since_and_deleted(db_session, bulk, staff_token):
    from his.services import auth

    facility_id = auth.user_for_token(db_session, staff_token).facility_id
    patient = PatientFactory()
    PatientFactory()  # unchanged since _since: not exported
    _other_resource(db_session, "Observation", "gone", patient.id, facility_id)
    _other_resource(db_session, "Observation", "stays-old", patient.id, facility_id)
    db_session.commit()
    since = utcnow()
    time.sleep(0.01)  # the changes below are stamped after _since
    # Changed after _since: a new version of one patient, one new and one deleted resource.
    store(
        db_session,
        "Patient",
        str(patient.id),
        Built({"resourceType": "Patient", "active": False}, patient.id),
    )
    _other_resource(db_session, "Observation", "new", patient.id, facility_id)
    store(db_session, "Observation", "gone", None)
    db_session.commit()
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    status_url = bulk.kick(f"/fhir/$export?_type=Patient&_type=Observation&_since={stamp}")
    bulk.work()
    manifest = bulk.manifest(status_url)
    by_type = {o["type"]: o for o in manifest["output"]}
    assert set(by_type) == {"Patient", "Observation"}
    assert [json.loads(x)["id"] for x in bulk.lines(by_type["Patient"]["url"])] == [str(patient.id)]
    assert [json.loads(x)["id"] for x in bulk.lines(by_type["Observation"]["url"])] == ["new"]
    assert [d["type"] for d in manifest["deleted"]] == ["Bundle"]
    deleted = [json.loads(x) for x in bulk.lines(manifest["deleted"][0]["url"])]
    assert deleted == [
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": "Observation/gone"}}],
        }
    ]


def test_a_change_after_the_transaction_time_is_not_exported(db_session, bulk):
    patient = PatientFactory(phone="0912000001")
    db_session.commit()
    status_url = bulk.kick("/fhir/$export?_type=Patient")
    # A version stamped after the snapshot instant (a change racing the export).
    store(
        db_session,
        "Patient",
        str(patient.id),
        Built({"resourceType": "Patient", "active": False}, patient.id),
        at=utcnow() + dt.timedelta(minutes=5),
    )
    db_session.commit()
    bulk.work()
    manifest = bulk.manifest(status_url)
    lines = [json.loads(x) for x in bulk.lines(manifest["output"][0]["url"])]
    mine = [r for r in lines if r["id"] == str(patient.id)]
    assert len(mine) == 1
    assert mine[0]["meta"]["versionId"] == "1"  # as it was at transactionTime
    assert mine[0]["meta"]["lastUpdated"] <= manifest["transactionTime"]


def test_type_filter(db_session, bulk, staff_token):
    from his.services import auth

    facility_id = auth.user_for_token(db_session, staff_token).facility_id
    patient = PatientFactory()
    db_session.commit()
    _other_resource(
        db_session, "Observation", "f1", patient.id, facility_id, subject={"reference": "x"}
    )
    db_session.commit()
    status_url = bulk.kick(f"/fhir/$export?_type=Patient&_typeFilter=Patient%3F_id%3D{patient.id}")
    bulk.work()
    manifest = bulk.manifest(status_url)
    assert [o["count"] for o in manifest["output"]] == [1]
    assert json.loads(bulk.lines(manifest["output"][0]["url"])[0])["id"] == str(patient.id)
    bad = bulk.get("/fhir/$export?_typeFilter=Patient%3Fnonsense%3D1", headers=ASYNC)
    assert bad.status_code == 400
    assert bad.json["resourceType"] == "OperationOutcome"


def test_patient_and_group_exports(db_session, bulk, staff_token):
    from his.services import auth

    facility_id = auth.user_for_token(db_session, staff_token).facility_id
    members = [PatientFactory(), PatientFactory()]
    outsider = PatientFactory()
    db_session.commit()
    for p in (*members, outsider):
        _other_resource(db_session, "Observation", f"g{p.id}", p.id, facility_id)
    _other_resource(db_session, "Organization", "not-a-patient-thing", None, None)
    db_session.commit()
    group = fhir_export.create_group(db_session, "BHXH Hà Nội")
    fhir_export.add_members(db_session, group.id, [m.id for m in members])
    db_session.commit()

    group_url = bulk.kick(f"/fhir/Group/{group.id}/$export?_type=Patient,Observation")
    patient_url = bulk.kick("/fhir/Patient/$export")
    bulk.work()
    by_type = {o["type"]: o for o in bulk.manifest(group_url)["output"]}
    wanted = {str(m.id) for m in members}
    assert {json.loads(x)["id"] for x in bulk.lines(by_type["Patient"]["url"])} == wanted
    assert {json.loads(x)["id"] for x in bulk.lines(by_type["Observation"]["url"])} == {
        f"g{i}" for i in wanted
    }
    everyone = {o["type"]: o for o in bulk.manifest(patient_url)["output"]}
    assert "Organization" not in everyone  # not in the Patient compartment
    ids = {json.loads(x)["id"] for x in bulk.lines(everyone["Observation"]["url"])}
    assert f"g{outsider.id}" in ids


def test_scopes_facilities_and_owner(db_session, bulk):
    patient = PatientFactory()
    db_session.commit()
    _other_resource(db_session, "Observation", "s1", patient.id, None)
    db_session.commit()
    patients_only = _client_token(db_session, "system/Patient.rs")
    status_url = bulk.kick(token=patients_only)
    forbidden = bulk.get("/fhir/$export?_type=Observation", patients_only, ASYNC)
    assert forbidden.status_code == 403
    bulk.work()
    manifest = bulk.manifest(status_url, patients_only)
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    url = _path(manifest["output"][0]["url"])
    # Another caller, even with every scope, sees neither the status nor the files.
    assert bulk.get(_path(status_url)).status_code == 404
    assert bulk.get(url).status_code == 404
    assert bulk.get(url, patients_only).status_code == 200
    assert bulk.get(url, "not-a-token").status_code == 401


def test_quota_of_concurrent_exports(bulk):
    bulk.kick("/fhir/$export?_type=Patient")
    bulk.kick("/fhir/$export?_type=Patient")
    third = bulk.get("/fhir/$export?_type=Patient", headers=ASYNC)
    assert third.status_code == 429
    assert third.json["issue"][0]["code"] == "throttled"
    assert int(third.headers["Retry-After"]) > 0
    bulk.work()
    bulk.kick("/fhir/$export?_type=Patient")  # the finished ones no longer count


def test_cancel(db_session, bulk, app):
    PatientFactory()
    db_session.commit()
    queued = bulk.kick("/fhir/$export?_type=Patient")
    assert bulk.delete(_path(queued)).status_code == 202
    assert bulk.get(_path(queued)).status_code == 404
    assert bulk.delete(_path(queued)).status_code == 404
    assert bulk.work() == 0  # a cancelled job is never run

    done = bulk.kick("/fhir/$export?_type=Patient")
    bulk.work()
    manifest = bulk.manifest(done)
    folder = app.config["HIS_SETTINGS"].instance_dir / "exports" / done.rsplit("/", 1)[1]
    assert folder.is_dir()
    assert bulk.delete(_path(done)).status_code == 202
    assert not folder.exists()  # files removed
    assert bulk.get(_path(done)).status_code == 404
    assert bulk.get(_path(manifest["output"][0]["url"])).status_code == 404


def test_a_running_job_cancelled_stops_at_the_next_chunk(db_session, bulk, app, monkeypatch):
    for _ in range(5):
        PatientFactory()
    db_session.commit()
    status_url = bulk.kick("/fhir/$export?_type=Patient")
    job_id = status_url.rsplit("/", 1)[1]
    monkeypatch.setattr(fhir_export, "CHUNK", 2)
    monkeypatch.setattr(fhir_export, "BEAT_EVERY", 0.0)
    original = fhir_export._Run.beat
    calls = []

    def beat_then_cancel(run):
        calls.append(run.written)
        if run.written >= 2:  # the client cancels while the worker writes
            db_session.execute(
                update(FhirExportJob).where(FhirExportJob.id == job_id).values(status="cancelled")
            )
            db_session.commit()
        original(run)

    monkeypatch.setattr(fhir_export._Run, "beat", beat_then_cancel)
    assert bulk.work() == 0
    folder = app.config["HIS_SETTINGS"].instance_dir / "exports" / job_id
    assert not folder.exists()
    assert bulk.get(_path(status_url)).status_code == 404
    db_session.expire_all()
    assert db_session.get(FhirExportJob, job_id).manifest is None


def test_expired_exports_lose_their_files(db_session, bulk, app):
    PatientFactory()
    db_session.commit()
    status_url = bulk.kick("/fhir/$export?_type=Patient")
    bulk.work()
    job_id = status_url.rsplit("/", 1)[1]
    db_session.execute(
        update(FhirExportJob)
        .where(FhirExportJob.id == job_id)
        .values(expires_at=utcnow() - dt.timedelta(minutes=1))
    )
    db_session.commit()
    bulk.work()
    assert not (app.config["HIS_SETTINGS"].instance_dir / "exports" / job_id).exists()
    assert bulk.get(_path(status_url)).status_code == 404


def test_post_kick_off_with_parameters(db_session, bulk, client, staff_token):
    PatientFactory()
    db_session.commit()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        ],
    }
    response = client.post(
        "/fhir/$export",
        json=body,
        headers={"Authorization": f"Bearer {staff_token}", **ASYNC},
    )
    assert response.status_code == 202, response.json
    bulk.work()
    manifest = bulk.manifest(response.headers["Content-Location"])
    assert [o["type"] for o in manifest["output"]] == ["Patient"]


def test_chunks_neither_drop_nor_repeat_a_row(db_session, bulk, monkeypatch):
    for _ in range(7):
        PatientFactory()
    db_session.commit()
    stored = set(
        db_session.scalars(
            select(FhirResource.resource_id).where(FhirResource.resource_type == "Patient")
        )
    )
    monkeypatch.setattr(fhir_export, "CHUNK", 2)
    status_url = bulk.kick("/fhir/$export?_type=Patient")
    bulk.work()
    lines = bulk.lines(bulk.manifest(status_url)["output"][0]["url"])
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(stored) and set(ids) == stored


def test_a_type_that_fails_is_reported_in_the_error_file(db_session, bulk, monkeypatch):
    PatientFactory()
    db_session.commit()
    original = fhir_export._export_type

    def broken_for_observations(session, run, scope, resource_type, *args):
        if resource_type == "Observation":
            raise RuntimeError("disk on fire")
        return original(session, run, scope, resource_type, *args)

    monkeypatch.setattr(fhir_export, "_export_type", broken_for_observations)
    status_url = bulk.kick("/fhir/$export?_type=Patient,Observation")
    bulk.work()
    manifest = bulk.manifest(status_url)
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    (error,) = manifest["error"]
    assert error["type"] == "OperationOutcome"
    (line,) = bulk.lines(error["url"])
    outcome = json.loads(line)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Observation" in outcome["issue"][0]["diagnostics"]


def test_a_failed_job_polls_as_an_operation_outcome(db_session, bulk, monkeypatch):
    def broken(session, job):
        raise RuntimeError("the group table is gone")

    monkeypatch.setattr(fhir_export._Scope, "of", classmethod(lambda cls, s, j: broken(s, j)))
    status_url = bulk.kick("/fhir/$export?_type=Patient")
    bulk.work()
    response = bulk.get(_path(status_url))
    assert response.status_code == 500
    assert response.json["resourceType"] == "OperationOutcome"
    assert "the group table is gone" in response.json["issue"][0]["diagnostics"]


def test_copy_gives_the_stored_bytes(backend, db_session):
    """PostgreSQL's COPY path (the worker process uses it; tests share one connection, so
    the in-process runs above read through the cursor path)."""
    if backend != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    patient = PatientFactory()
    db_session.commit()
    _other_resource(
        db_session,
        "Observation",
        "c1",
        patient.id,
        None,
        note=[{"text": 'nói "đau" C:\\đầu\n\tgối \\n'}],
    )
    db_session.commit()
    stmt = select(FhirResource.content).where(FhirResource.resource_type == "Observation")
    stored = list(db_session.scalars(stmt))
    blocks = list(fhir_export._copy_stream(db_session, stmt))
    assert sum(count for _block, count in blocks) == len(stored) == 1
    lines = b"".join(block for block, _count in blocks).decode().splitlines()
    assert lines == stored
