"""A real FHIR client (``fhirclient``, SMART on FHIR's Python client) against the app on a
real port: it discovers the token endpoint, gets a token with a JWT signed by the test
(SMART Backend Services) and reads a Patient through its models. Also: the same assertion
sent by several clients at once is accepted exactly once."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhirclient import client as fhir_client
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRPermissionDeniedException
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import select

import his.fhirapi.mappers  # noqa: F401  (registers the projection's triggers before any flush)
from his.db import Database
from his.models import AuditEvent
from his.services import fhir_clients
from his.services.access import Principal
from tests import factories
from tests.e2e.conftest import serving

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def keys():
    return {
        "RS384": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "r1"),
        "ES384": (ec.generate_private_key(ec.SECP384R1()), "e1"),
    }


def _jwk(private_key, kid):
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    jwk["kid"] = kid
    return jwk


@pytest.fixture
def live(backend, fresh_database, keys):
    """The app on a real port, on a committed database holding one patient and two clients
    (one that may read patients, one limited to observations)."""
    databases = fresh_database(backend)
    url = next(databases)
    try:
        database = Database.from_url(url)
        try:
            with database.session() as session:
                factories.bind(session)
                patient = factories.PatientFactory(full_name="Lê Văn Khách")
                jwks = {"keys": [_jwk(k, kid) for k, kid in keys.values()]}
                for name, scopes in (
                    ("insurer", "system/*.read"),
                    ("lab", "system/Observation.rs"),
                ):
                    fhir_clients.register(
                        session,
                        Principal.system("test"),
                        client_id=name,
                        jwks=jwks,
                        scopes=scopes,
                    )
                session.flush()
                patient_id = str(patient.id)
        finally:
            database.engine.dispose()
        with serving(url, backend) as server:
            yield server, url, patient_id
    finally:
        databases.close()


def _assertion(keys, client_id, token_url, alg="RS384", jti=None):
    private_key, kid = keys[alg]
    return jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": int(time.time()) + 240,
            "jti": jti or uuid.uuid4().hex,
        },
        private_key,
        algorithm=alg,
        headers={"kid": kid, "typ": "JWT"},
    )


def _discover(base: str) -> dict:
    found = httpx.get(f"{base}/fhir/.well-known/smart-configuration", timeout=10)
    assert found.status_code == 200
    return found.json()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_fhirclient_discovers_authorizes_and_reads_a_patient(live, keys, alg):
    server, url, patient_id = live
    config = _discover(server.url)
    token_url = config["token_endpoint"]
    assert token_url == f"{server.url}/fhir/auth/token"
    assert alg in config["token_endpoint_auth_signing_alg_values_supported"]

    smart = fhir_client.FHIRClient(
        state={
            "app_id": "insurer",
            "scope": "system/Patient.read",
            "server": {
                "base_uri": f"{server.url}/fhir/",
                "auth_type": "oauth2",
                "auth": {
                    "token_uri": token_url,
                    "jwt_token": _assertion(keys, "insurer", token_url, alg),
                },
            },
        }
    )
    smart.authorize()  # fhirclient posts the client_credentials grant with our assertion
    assert smart.ready
    patient = Patient.read(patient_id, smart.server)
    assert patient.id == patient_id
    assert patient.name[0].text == "Lê Văn Khách"

    database = Database.from_url(url)
    try:
        with database.session() as session:
            audited = session.scalars(
                select(AuditEvent.username).where(
                    AuditEvent.entity_type == "Patient", AuditEvent.entity_id == patient_id
                )
            ).all()
    finally:
        database.engine.dispose()
    assert audited == ["client:insurer"]


def test_fhirclient_finds_the_token_endpoint_in_the_capability_statement(live, keys):
    server, _url, patient_id = live
    token_url = f"{server.url}/fhir/auth/token"
    smart = fhir_client.FHIRClient(
        settings={
            "app_id": "insurer",
            "api_base": f"{server.url}/fhir/",
            "scope": "system/Patient.rs",
            "jwt_token": _assertion(keys, "insurer", token_url),
        }
    )
    smart.prepare()  # GET /fhir/metadata: the SMART oauth-uris extension names the token URL
    assert smart.server.auth.auth_type == "oauth2"
    smart.authorize()
    assert Patient.read(patient_id, smart.server).id == patient_id


def test_a_client_without_the_patient_scope_is_refused(live, keys):
    server, _url, patient_id = live
    token_url = _discover(server.url)["token_endpoint"]
    smart = fhir_client.FHIRClient(
        state={
            "app_id": "lab",
            "scope": "system/Observation.rs",
            "server": {
                "base_uri": f"{server.url}/fhir/",
                "auth_type": "oauth2",
                "auth": {
                    "token_uri": token_url,
                    "jwt_token": _assertion(keys, "lab", token_url, "ES384"),
                },
            },
        }
    )
    smart.authorize()
    with pytest.raises(FHIRPermissionDeniedException):
        Patient.read(patient_id, smart.server)


def test_one_assertion_sent_concurrently_is_accepted_once(live, keys):
    server, _url, _patient_id = live
    token_url = _discover(server.url)["token_endpoint"]
    assertion = _assertion(keys, "insurer", token_url, jti="concurrent-" + uuid.uuid4().hex)
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }

    def post(_n):
        return httpx.post(token_url, data=form, timeout=30)

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(post, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401, 401, 401, 401, 401], [r.text for r in responses]
    assert all(r.json()["error"] == "invalid_client" for r in responses if r.status_code == 401)
