"""A real FHIR client (fhirpy) over HTTP against the app on a real port: search, paging
through every ``next`` link, includes, sorting, result shaping."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome
from werkzeug.serving import make_server

from his import create_app
from his.db import Database
from his.models import Patient, Role
from tests import factories
from tests.conftest import settings_for


@pytest.fixture
def served(backend, fresh_database) -> Iterator[tuple[str, dict]]:
    """A committed database with 45 patients (one merged into another), and the app
    serving it on a free port; yields the FHIR base URL and what was made."""
    databases = fresh_database(backend)
    url = next(databases)
    app = create_app(settings_for(url))
    database: Database = app.extensions["his_db"]
    with database.session() as session:
        factories.bind(session)
        user = factories.UserFactory(roles=(Role.DOCTOR,))
        made = [
            factories.PatientFactory(
                family_name="Huỳnh", given_name=f"Lộc{i:02d}", birth_year=1940 + i
            )
            for i in range(45)
        ]
        session.flush()
        session.get(Patient, made[1].id).merged_into_id = made[0].id
        session.commit()
        info = {"ids": [str(p.id) for p in made], "username": user.username}
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        import requests

        token = requests.post(
            f"{base}/api/v1/auth/token",
            json={"username": info["username"], "password": factories.PASSWORD},
            timeout=30,
        ).json()["access_token"]
        info["token"] = token
        yield f"{base}/fhir", info
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        database.engine.dispose()
        databases.close()


def test_fhirpy_searches_pages_includes_and_sorts(served):
    base, info = served
    client = SyncFHIRClient(base, authorization=f"Bearer {info['token']}")
    patients = client.resources("Patient")

    # search, and fetch_all follows every next link (10 per page: 5 pages)
    everyone = patients.search(family="huynh").limit(10).fetch_all()
    assert sorted(p.id for p in everyone) == sorted(info["ids"])
    assert len(everyone) == 45

    # accent- and case-insensitive
    assert [p.id for p in patients.search(given="LOC07").fetch()] == [info["ids"][7]]

    # sort, descending, across pages
    ordered = patients.search(family="huynh").sort("-birthdate").limit(7).fetch_all()
    years = [p["birthDate"] for p in ordered]
    assert years == sorted(years, reverse=True) and len(ordered) == 45

    # date prefixes
    old = patients.search(family="huynh", birthdate="lt1945").fetch_all()
    assert sorted(p.id for p in old) == sorted(info["ids"][:5])

    # _include: the merged patient brings the one it links to
    raw = patients.search(_id=info["ids"][1]).include("Patient", "link").fetch_raw()
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in raw["entry"]}
    assert modes == {(info["ids"][1], "match"), (info["ids"][0], "include")}
    raw = patients.search(_id=info["ids"][0]).revinclude("Patient", "link").fetch_raw()
    assert {e["resource"]["id"] for e in raw["entry"]} == {info["ids"][0], info["ids"][1]}

    # _elements
    slim = patients.search(_id=info["ids"][3]).elements("birthDate").fetch()[0]
    assert slim["birthDate"] == "1943-05-17" and "name" not in slim

    # chaining
    linked = patients.search(**{"link:Patient.given": "loc00"}).fetch()
    assert [p.id for p in linked] == [info["ids"][1]]

    # read by id, and an unknown parameter is a 400 OperationOutcome
    assert client.reference("Patient", info["ids"][2]).to_resource()["id"] == info["ids"][2]
    with pytest.raises(OperationOutcome):
        patients.search(**{"shoe-size": "42"}).fetch()

    # conditional create (get_or_create sends the condition as the POST's query string):
    # the first call creates, the second finds the same patient
    new = client.resource(
        "Patient",
        name=[{"text": "Lâm Thị Bé", "family": "Lâm", "given": ["Thị", "Bé"]}],
        gender="female",
        birthDate="1990-03-04",
        identifier=[{"system": "https://example.vn/lis", "value": "LIS-77"}],
    )
    condition = patients.search(identifier="https://example.vn/lis|LIS-77")
    created, was_created = condition.get_or_create(new)
    assert was_created
    found, again = condition.get_or_create(new)
    assert not again and found.id == created.id
    assert len(condition.fetch_all()) == 1
