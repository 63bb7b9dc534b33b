"""The export worker: claiming a job once, taking over a dead worker's job, and the real
``his fhir export-worker`` process against a committed database."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from his import create_app
from his.config import PROJECT_ROOT
from his.db import Database, utcnow
from his.models import FhirExportJob, Role
from his.services import fhir_export
from tests import factories
from tests.conftest import settings_for

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
HIS = str(Path(sys.executable).parent / "his")


@pytest.fixture
def app(make_app, db_session, tmp_path):
    return make_app(HIS_INSTANCE_DIR=str(tmp_path))


def _kick(client, token, path="/fhir/$export?_type=Patient") -> str:
    response = client.get(path, headers={"Authorization": f"Bearer {token}", **ASYNC})
    assert response.status_code == 202, response.json
    return response.headers["Content-Location"].rsplit("/", 1)[1]


def test_a_job_is_claimed_by_one_worker_only(db_session, client, staff_token, app):
    job_id = _kick(client, staff_token)
    now = utcnow()
    assert fhir_export.claim(db_session, job_id, now) == now
    assert fhir_export.claim(db_session, job_id, now + dt.timedelta(seconds=1)) is None
    # Still fresh: nobody takes it over.
    assert fhir_export.claimable(db_session, now + dt.timedelta(seconds=30)) == []


def test_a_job_whose_worker_died_is_done_again_from_scratch(db_session, client, staff_token, app):
    factories.PatientFactory()
    db_session.commit()
    job_id = _kick(client, staff_token)
    # A worker claimed it, wrote half a file and died an hour ago.
    long_ago = utcnow() - dt.timedelta(hours=1)
    db_session.execute(
        update(FhirExportJob)
        .where(FhirExportJob.id == job_id)
        .values(status="running", started_at=long_ago, heartbeat_at=long_ago)
    )
    db_session.commit()
    folder = app.config["HIS_SETTINGS"].instance_dir / "exports" / job_id
    folder.mkdir(parents=True)
    (folder / "Patient.ndjson").write_text('{"resourceType":"Pat', encoding="utf-8")
    (folder / "junk.ndjson").write_text("x\n", encoding="utf-8")

    assert fhir_export.work_once(app.extensions["his_db"], app.config["HIS_SETTINGS"]) == 1
    db_session.expire_all()
    job = db_session.get(FhirExportJob, job_id)
    assert job.status == "completed"
    assert not (folder / "junk.ndjson").exists()
    for line in (folder / "Patient.ndjson").read_text(encoding="utf-8").splitlines():
        assert json.loads(line)["resourceType"] == "Patient"
    # The dead run's late writes are refused: its token is not the job's any more.
    dead = fhir_export._Run(
        app.extensions["his_db"], app.config["HIS_SETTINGS"], job_id, long_ago, folder
    )
    with pytest.raises(fhir_export._Stopped):
        dead.beat()


def _committed_world(url: str) -> tuple[Database, int]:
    """A staff user and two patients, committed (the worker is another process)."""
    database = Database.from_url(url)
    with database.session() as session:
        factories.bind(session)
        user = factories.UserFactory(roles=(Role.DOCTOR,))
        patients = [factories.PatientFactory() for _ in range(2)]
        session.flush()
        username = user.username
        count = len(patients)
    factories.bind(None)
    return database, username, count


def _worker_env(url: str, instance: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HIS_ENV": "test",
            "HIS_DATABASE_URL": url,
            "HIS_INSTANCE_DIR": str(instance),
            "HIS_LOG_FORMAT": "console",
        }
    )
    return env


def test_the_worker_process_exports_end_to_end(backend, fresh_database, tmp_path):
    databases = fresh_database(backend)
    url = next(databases)
    process = None
    try:
        database, username, count = _committed_world(url)
        app = create_app(settings_for(url, HIS_INSTANCE_DIR=str(tmp_path)))
        client = app.test_client()
        login = client.post(
            "/api/v1/auth/token", json={"username": username, "password": factories.PASSWORD}
        )
        token = login.get_json()["access_token"]

        # Once: every waiting job, then exit.
        first = _kick(client, token)
        done = subprocess.run(
            [HIS, "fhir", "export-worker"],
            env=_worker_env(url, tmp_path),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "exports: 1 finished" in done.stdout
        headers = {"Authorization": f"Bearer {token}"}
        manifest = client.get(f"/fhir/bulk/{first}", headers=headers)
        assert manifest.status_code == 200, manifest.data
        (output,) = manifest.json["output"]
        assert output["type"] == "Patient" and output["count"] == count
        body = client.get(output["url"].removeprefix("http://localhost"), headers=headers)
        assert body.status_code == 200
        lines = body.data.decode().splitlines()
        assert len(lines) == count
        first_id = json.loads(lines[0])["id"]
        read = client.get(f"/fhir/Patient/{first_id}", headers=headers)
        assert read.data.decode() in lines  # the stored bytes, unchanged

        # As `make run` starts it: looping, picking up a job made while it waits.
        process = subprocess.Popen(
            [HIS, "fhir", "export-worker", "--loop", "--interval", "0.2"],
            env=_worker_env(url, tmp_path),
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        second = _kick(client, token)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = client.get(f"/fhir/bulk/{second}", headers=headers)
            if status.status_code != 202:
                break
            time.sleep(0.2)
        assert status.status_code == 200, status.data
        assert status.json["output"][0]["count"] == count
        database.engine.dispose()
        app.extensions["his_db"].engine.dispose()
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        databases.close()
