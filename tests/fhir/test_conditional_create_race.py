"""20 concurrent conditional creates of the same identifier, as real HTTP requests to the
app on a real port, on a committed database: exactly one Patient, and every answer points
to it (one 201, the others 200 with the same resource)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import func, select

from his.db import Database
from his.fhirapi import systems
from his.models import Patient, PatientIdentifier, Role
from tests import factories
from tests.e2e.conftest import serving

THREADS = 20
CCCD = "089085001234"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def live(backend: str, fresh_database) -> Iterator[tuple[str, str, str]]:
    databases = fresh_database(backend)
    url = next(databases)
    try:
        db = Database.from_url(url)
        try:
            with db.session() as session:
                factories.bind(session)
                user = factories.UserFactory(roles=(Role.RECEPTIONIST,))
                username = user.username
        finally:
            factories.bind(None)  # type: ignore[arg-type]
            db.engine.dispose()
        with serving(url, backend) as server:
            token = requests.post(
                server.at("/api/v1/auth/token"),
                json={"username": username, "password": factories.PASSWORD},
                timeout=30,
            ).json()["access_token"]
            yield server.url, token, url
    finally:
        databases.close()


def test_twenty_concurrent_conditional_creates_make_one_patient(live):
    base, token, url = live
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": systems.CCCD, "value": CCCD}],
        "name": [{"text": "Nguyễn Văn An"}],
        "gender": "male",
        "birthDate": "1985-04-12",
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": FHIR_JSON,
        "Accept": FHIR_JSON,
        "If-None-Exist": f"identifier={systems.CCCD}|{CCCD}",
    }
    start = threading.Barrier(THREADS)
    answers: list[tuple[int, str | None, str | None]] = [(0, None, None)] * THREADS

    def post(n: int) -> None:
        start.wait()
        response = requests.post(
            f"{base}/fhir/Patient", json=resource, headers=headers, timeout=120
        )
        body = response.json()
        answers[n] = (response.status_code, body.get("id"), response.text)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)

    statuses = sorted(status for status, _id, _text in answers)
    assert statuses == [200] * (THREADS - 1) + [201], [a for a in answers if a[0] not in (200, 201)]
    ids = {pid for _status, pid, _text in answers}
    assert len(ids) == 1 and None not in ids

    db = Database.from_url(url)
    try:
        with db.session() as session:
            owners = session.scalars(
                select(PatientIdentifier.patient_id).where(PatientIdentifier.value == CCCD)
            ).all()
            assert owners == [int(ids.pop())]
            assert session.scalar(select(func.count()).select_from(Patient)) == 1
    finally:
        db.engine.dispose()
