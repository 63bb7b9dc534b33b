"""SMART Backend Services: discovery, the token endpoint's checks, scopes and facilities
enforced on reads, the JWKS URL fetched from a real local HTTP server, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import create_engine, select

from his.fhirapi import smart
from his.fhirapi.projection import Built, store
from his.models import AuditEvent, FhirAccessToken, FhirClient, FhirJti
from his.services import fhir_clients
from his.services.access import Principal
from tests.factories import FacilityFactory, PatientFactory

TOKEN_URL = "http://localhost/fhir/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(autouse=True)
def _no_cached_keys():
    """Key sets are cached per process by (client pk, url): each test starts afresh (a new
    database reuses pks, and a new local server may reuse a port)."""
    fhir_clients._cache.clear()
    fhir_clients._failures.clear()
    yield
    fhir_clients._cache.clear()
    fhir_clients._failures.clear()


# --- keys and assertions ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(private_key, kid: str) -> dict:
    algorithm = RSAAlgorithm if isinstance(private_key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    jwk["kid"] = kid
    return jwk


def sign(
    private_key,
    client_id: str,
    *,
    alg: str = "RS384",
    kid: str = "k1",
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    jti: str | None = None,
    sub: str | None = None,
    headers: dict | None = None,
    drop: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": sub or client_id,
        "aud": aud,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
    }
    for claim in drop:
        claims.pop(claim)
    return jwt.encode(
        claims, private_key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})}
    )


def register(db_session, name, *, jwks=None, jwks_url=None, scopes="system/*.rs", facilities=()):
    created = fhir_clients.register(
        db_session,
        Principal.system("test"),
        client_id=name,
        jwks=jwks,
        jwks_url=jwks_url,
        scopes=scopes,
        facility_codes=list(facilities),
    )
    db_session.commit()
    return created


def ask(client, assertion: str, scope: str = "system/Patient.rs", **overrides):
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    form.update(overrides)
    # English, so the assertions below can name the reason (Vietnamese is the default).
    return client.post(
        "/fhir/auth/token",
        data={k: v for k, v in form.items() if v is not None},
        headers={"Accept-Language": "en"},
    )


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, "Accept-Language": "en"}


@pytest.fixture
def lab(db_session, rsa_key, ec_key):
    """A client with an inline JWKS holding an RSA key (k1) and an EC P-384 key (e1)."""
    jwks = {"keys": [public_jwk(rsa_key, "k1"), public_jwk(ec_key, "e1")]}
    return register(db_session, "lab-1", jwks=jwks, scopes="system/Patient.rs system/*.read")


# --- a JWKS served over real HTTP -------------------------------------------------------------


class JwksServer:
    """A key set at http://127.0.0.1:<port>/jwks.json, counting the fetches."""

    def __init__(self, jwks: dict, cache_control: str = "max-age=300"):
        self.jwks = jwks
        self.cache_control = cache_control
        self.status = 200
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", outer.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- discovery --------------------------------------------------------------------------------


def test_smart_configuration_is_public_and_complete(client, db_session):
    response = client.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.json
    assert body["token_endpoint"] == TOKEN_URL
    assert body["grant_types_supported"] == ["client_credentials"]
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert {"system/*.read", "system/*.rs"} <= set(body["scopes_supported"])
    assert {"client-confidential-asymmetric", "permission-v1", "permission-v2"} <= set(
        body["capabilities"]
    )


# --- tokens accepted --------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "kid"), [("RS384", "k1"), ("ES384", "e1")])
def test_rs384_and_es384_assertions_get_a_token_that_reads(
    client, db_session, lab, rsa_key, ec_key, alg, kid
):
    patient = PatientFactory()
    db_session.commit()
    key = rsa_key if alg == "RS384" else ec_key
    response = ask(client, sign(key, "lab-1", alg=alg, kid=kid), scope="system/Patient.rs")
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs"
    stored = db_session.scalars(select(FhirAccessToken)).one()
    assert stored.token_hash != body["access_token"]  # only the hash is kept
    assert stored.expires_at - stored.created_at <= dt.timedelta(seconds=301)

    read = client.get(f"/fhir/Patient/{patient.id}", headers=bearer(body["access_token"]))
    assert read.status_code == 200, read.json
    assert read.json["id"] == str(patient.id)
    audit = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.entity_type == "Patient", AuditEvent.entity_id == str(patient.id)
        )
    ).all()
    assert [a.username for a in audit] == ["client:lab-1"]
    login = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "login")).one()
    assert login.username == "client:lab-1" and "system/Patient.rs" in login.detail
    assert audit[0].user_id is None and "lab-1" in audit[0].detail


def test_jwks_url_is_fetched_over_http_cached_and_refetched_for_a_new_kid(
    client, db_session, ec_key, rsa_key
):
    with JwksServer({"keys": [public_jwk(ec_key, "e1")]}) as keys:
        register(db_session, "pacs", jwks_url=keys.url, scopes="system/*.rs")
        first = ask(client, sign(ec_key, "pacs", alg="ES384", kid="e1", headers={"jku": keys.url}))
        assert first.status_code == 200, first.json
        again = ask(client, sign(ec_key, "pacs", alg="ES384", kid="e1"))
        assert again.status_code == 200, again.json
        assert keys.fetches == 1  # max-age=300: the second request used the cache

        # The client rotates: a new kid not in our cached copy makes us fetch once more.
        keys.jwks = {"keys": [public_jwk(ec_key, "e1"), public_jwk(rsa_key, "r2")]}
        fhir_clients._cache.clear()  # as if the minimum refetch interval had passed
        rotated = ask(client, sign(rsa_key, "pacs", alg="RS384", kid="r2"))
        assert rotated.status_code == 200, rotated.json
        assert keys.fetches == 2


def test_jwks_without_caching_is_fetched_every_time_and_a_failure_is_invalid_client(
    client, db_session, ec_key
):
    with JwksServer({"keys": [public_jwk(ec_key, "e1")]}, cache_control="no-store") as keys:
        register(db_session, "ris", jwks_url=keys.url, scopes="system/*.rs")
        for _ in range(2):
            assert ask(client, sign(ec_key, "ris", alg="ES384", kid="e1")).status_code == 200
        assert keys.fetches == 2
        keys.status = 500
        failed = ask(client, sign(ec_key, "ris", alg="ES384", kid="e1"))
        assert failed.status_code == 401
        assert failed.json["error"] == "invalid_client"
        assert "HTTP 500" in failed.json["error_description"]
        fetches = keys.fetches
        # A failure is remembered for a few seconds: unauthenticated callers naming this
        # client cannot make us fetch its URL on every request.
        assert ask(client, sign(ec_key, "ris", alg="ES384", kid="e1")).status_code == 401
        assert keys.fetches == fetches
        url = keys.url
    fhir_clients._failures.clear()  # as if the interval had passed
    gone = ask(client, sign(ec_key, "ris", alg="ES384", kid="e1"))  # the server is down now
    assert gone.status_code == 401 and gone.json["error"] == "invalid_client"
    assert "could not be fetched" in gone.json["error_description"]
    assert url in db_session.scalar(
        select(FhirClient.jwks_url).where(FhirClient.client_id == "ris")
    )


def test_cache_control_max_age_is_honoured_within_bounds():
    assert fhir_clients.cache_seconds("public, max-age=60") == 60
    assert fhir_clients.cache_seconds("max-age=999999") == fhir_clients.CACHE_MAX
    assert fhir_clients.cache_seconds("no-cache") == 0
    assert fhir_clients.cache_seconds("") == fhir_clients.CACHE_DEFAULT


# --- assertions refused -----------------------------------------------------------------------


def _refusals(rsa_key, ec_key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "wrong kid": lambda: sign(rsa_key, "lab-1", kid="nope"),
        "kid of the other key type": lambda: sign(rsa_key, "lab-1", kid="e1"),
        "no kid": lambda: jwt.encode(
            {
                "iss": "lab-1",
                "sub": "lab-1",
                "aud": TOKEN_URL,
                "exp": int(time.time()) + 60,
                "jti": "x",
            },
            rsa_key,
            algorithm="RS384",
        ),
        "wrong aud": lambda: sign(rsa_key, "lab-1", aud="http://localhost/fhir"),
        "exp more than 5 minutes ahead": lambda: sign(rsa_key, "lab-1", lifetime=600),
        "expired": lambda: sign(rsa_key, "lab-1", lifetime=-120),
        "no exp": lambda: sign(rsa_key, "lab-1", drop=("exp",)),
        "no jti": lambda: sign(rsa_key, "lab-1", drop=("jti",)),
        "iss is not sub": lambda: sign(rsa_key, "lab-1", sub="someone-else"),
        "unknown client": lambda: sign(rsa_key, "no-such-client"),
        "jku is not the registered url": lambda: sign(
            rsa_key, "lab-1", headers={"jku": "https://evil.example/jwks.json"}
        ),
        "signed by another key": lambda: sign(other, "lab-1"),
        "RS256": lambda: sign(rsa_key, "lab-1", alg="RS256"),
        "HS256 with the public key as secret": lambda: jwt.encode(
            {
                "iss": "lab-1",
                "sub": "lab-1",
                "aud": TOKEN_URL,
                "exp": int(time.time()) + 60,
                "jti": uuid.uuid4().hex,
            },
            "a-shared-secret-of-enough-length-32b",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        "alg none": lambda: jwt.encode(
            {
                "iss": "lab-1",
                "sub": "lab-1",
                "aud": TOKEN_URL,
                "exp": int(time.time()) + 60,
                "jti": uuid.uuid4().hex,
            },
            None,
            algorithm="none",
            headers={"kid": "k1"},
        ),
        "not a jwt": lambda: "not.a.jwt",
    }


REFUSALS = [
    "wrong kid",
    "kid of the other key type",
    "no kid",
    "wrong aud",
    "exp more than 5 minutes ahead",
    "expired",
    "no exp",
    "no jti",
    "iss is not sub",
    "unknown client",
    "jku is not the registered url",
    "signed by another key",
    "RS256",
    "HS256 with the public key as secret",
    "alg none",
    "not a jwt",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_assertions_are_invalid_client(client, db_session, lab, rsa_key, ec_key, case):
    assertion = _refusals(rsa_key, ec_key)[case]()
    response = ask(client, assertion)
    assert response.status_code == 401, response.json
    assert response.json["error"] == "invalid_client"
    assert response.json["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert db_session.scalars(select(FhirAccessToken)).all() == []
    refusal = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == "login_failed")
    ).one()
    assert refusal.outcome == "failure" and "invalid_client" in refusal.detail


def test_a_replayed_jti_is_refused(client, db_session, lab, rsa_key):
    assertion = sign(rsa_key, "lab-1", jti="once-only")
    assert ask(client, assertion).status_code == 200
    replay = ask(client, assertion)
    assert replay.status_code == 401
    assert replay.json["error"] == "invalid_client"
    assert "already used" in replay.json["error_description"]
    # A new assertion reusing the jti is refused too, however freshly signed.
    assert ask(client, sign(rsa_key, "lab-1", jti="once-only")).status_code == 401
    kept = db_session.scalars(select(FhirJti)).one()
    assert kept.client_id == "lab-1" and kept.jti == "once-only"


def test_expired_jtis_are_purged(client, db_session, lab, rsa_key):
    db_session.add(
        FhirJti(
            client_id="lab-1",
            jti="old",
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        )
    )
    db_session.commit()
    assert ask(client, sign(rsa_key, "lab-1")).status_code == 200
    assert "old" not in db_session.scalars(select(FhirJti.jti)).all()


def test_a_disabled_client_gets_no_token_and_its_tokens_stop_working(
    client, db_session, lab, rsa_key
):
    patient = PatientFactory()
    db_session.commit()
    token = ask(client, sign(rsa_key, "lab-1")).json["access_token"]
    assert client.get(f"/fhir/Patient/{patient.id}", headers=bearer(token)).status_code == 200
    fhir_clients.set_active(db_session, Principal.system("test"), "lab-1", active=False)
    db_session.commit()
    refused = ask(client, sign(rsa_key, "lab-1"))
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert "disabled" in refused.json["error_description"]
    after = client.get(f"/fhir/Patient/{patient.id}", headers=bearer(token))
    assert after.status_code == 401
    assert "WWW-Authenticate" in after.headers


def test_a_key_restricted_to_another_alg_or_use_is_not_used(client, db_session, rsa_key):
    for name, extra in (("alg-bound", {"alg": "RS256"}), ("enc-key", {"use": "enc"})):
        register(db_session, name, jwks={"keys": [{**public_jwk(rsa_key, "k1"), **extra}]})
        response = ask(client, sign(rsa_key, name))
        assert response.status_code == 401 and response.json["error"] == "invalid_client"
    register(
        db_session,
        "explicit",
        jwks={"keys": [{**public_jwk(rsa_key, "k1"), "alg": "RS384", "use": "sig"}]},
    )
    assert ask(client, sign(rsa_key, "explicit")).status_code == 200


def test_two_keys_with_the_same_kid_are_ambiguous(client, db_session, rsa_key):
    twin = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": [public_jwk(rsa_key, "same"), public_jwk(twin, "same")]}
    register(db_session, "twins", jwks=jwks)
    response = ask(client, sign(rsa_key, "twins", kid="same"))
    assert response.status_code == 401 and response.json["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "error", "status"),
    [
        ({"grant_type": "authorization_code"}, "unsupported_grant_type", 400),
        ({"grant_type": None}, "invalid_request", 400),
        ({"client_assertion_type": "urn:other"}, "invalid_request", 400),
        ({"client_assertion": None}, "invalid_request", 400),
        ({"scope": None}, "invalid_request", 400),
        ({"scope": "system/Practitioner.rs user/Patient.read"}, "invalid_scope", 400),
    ],
)
def test_request_errors_are_oauth_json(client, db_session, rsa_key, form, error, status):
    register(
        db_session, "lab-2", jwks={"keys": [public_jwk(rsa_key, "k1")]}, scopes="system/Patient.rs"
    )
    response = ask(client, sign(rsa_key, "lab-2"), **form)
    assert response.status_code == status
    assert response.json["error"] == error
    assert response.json["error_description"]


def test_a_json_body_is_refused(client, db_session):
    response = client.post("/fhir/auth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


# --- scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "registered", "granted"),
    [
        ("system/Patient.rs", "system/*.read", "system/Patient.rs"),
        ("system/Patient.read", "system/*.rs", "system/Patient.read"),
        ("system/*.read", "system/Patient.rs", "system/Patient.read"),
        ("system/Patient.cruds", "system/Patient.rs", "system/Patient.rs"),
        ("system/Patient.*", "system/Patient.read", "system/Patient.read"),
        ("system/Observation.rs system/Patient.rs", "system/Patient.rs", "system/Patient.rs"),
        ("system/Observation.rs", "system/Patient.rs", ""),
        ("patient/Patient.rs openid", "system/*.rs", ""),
        (
            "system/Observation.rs",
            "system/Observation.rs?category=laboratory",
            "system/Observation.rs?category=laboratory",
        ),
        (
            "system/Observation.rs?category=vital-signs",
            "system/Observation.rs?category=laboratory",
            "",
        ),
    ],
)
def test_granted_scope_is_the_request_narrowed_to_the_registration(requested, registered, granted):
    assert smart.grant(requested, registered) == granted


def test_partial_grant_says_what_was_granted(client, db_session, rsa_key):
    register(
        db_session,
        "lab-3",
        jwks={"keys": [public_jwk(rsa_key, "k1")]},
        scopes="system/Observation.cruds",
    )
    response = ask(
        client, sign(rsa_key, "lab-3"), scope="system/Observation.cruds system/Patient.rs"
    )
    assert response.status_code == 200
    assert response.json["scope"] == "system/Observation.cruds"


def test_scopes_are_enforced_per_type_and_interaction(client, db_session, rsa_key):
    patient = PatientFactory()
    db_session.commit()
    register(
        db_session,
        "obs-only",
        jwks={"keys": [public_jwk(rsa_key, "k1")]},
        scopes="system/Observation.read",
    )
    token = ask(client, sign(rsa_key, "obs-only"), scope="system/Observation.read").json[
        "access_token"
    ]
    denied = client.get(f"/fhir/Patient/{patient.id}", headers=bearer(token))
    assert denied.status_code == 403
    assert denied.json["resourceType"] == "OperationOutcome"
    assert denied.json["issue"][0]["code"] == "forbidden"


def test_a_facility_limited_client_sees_only_its_facilities(client, db_session, rsa_key):
    mine = FacilityFactory()
    theirs = FacilityFactory()
    db_session.flush()
    for facility, rid in ((mine, "vMINE"), (theirs, "vTHEIRS")):
        store(
            db_session,
            "Encounter",
            rid,
            Built(
                {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
                facility_id=facility.id,
            ),
        )
    db_session.commit()
    register(
        db_session,
        "province",
        jwks={"keys": [public_jwk(rsa_key, "k1")]},
        scopes="system/*.rs",
        facilities=[mine.code],
    )
    token = ask(client, sign(rsa_key, "province"), scope="system/*.rs").json["access_token"]
    assert client.get("/fhir/Encounter/vMINE", headers=bearer(token)).status_code == 200
    other = client.get("/fhir/Encounter/vTHEIRS", headers=bearer(token))
    assert other.status_code == 404
    assert other.json["resourceType"] == "OperationOutcome"


# --- access tokens ----------------------------------------------------------------------------


def test_no_token_and_expired_client_tokens_are_401(client, db_session, lab, rsa_key):
    patient = PatientFactory()
    db_session.commit()
    none = client.get(f"/fhir/Patient/{patient.id}", headers={"Accept": FHIR_JSON})
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"].startswith("Bearer")
    token = ask(client, sign(rsa_key, "lab-1")).json["access_token"]
    row = db_session.scalars(select(FhirAccessToken)).one()
    row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db_session.commit()
    expired = client.get(f"/fhir/Patient/{patient.id}", headers=bearer(token))
    assert expired.status_code == 401
    assert "expired" in expired.json["issue"][0]["diagnostics"]
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    made_up = client.get(f"/fhir/Patient/{patient.id}", headers=bearer("made-up-token"))
    assert made_up.status_code == 401


def test_staff_tokens_still_work(fhir_get, db_session):
    patient = PatientFactory()
    db_session.commit()
    assert fhir_get(f"/fhir/Patient/{patient.id}").status_code == 200


# --- registration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"client_id": "bad name!", "jwks_url": "https://x.example/jwks"}, "client_id"),
        ({"client_id": "a", "jwks_url": "http://x.example/jwks"}, "jwks_url"),
        ({"client_id": "a"}, "jwks"),
        ({"client_id": "a", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "jwks"),
        ({"client_id": "a", "jwks_url": "https://x.example/j", "scopes": "user/*.read"}, "scope"),
        (
            {"client_id": "a", "jwks_url": "https://x.example/j", "facility_codes": ["00000"]},
            "facility",
        ),
    ],
)
def test_registration_refuses_what_is_wrong(db_session, babel_context, kwargs, field):
    from his.errors import ValidationFailed

    kwargs = {"scopes": "system/*.read", **kwargs}
    with pytest.raises(ValidationFailed) as raised:
        fhir_clients.register(db_session, Principal.system("test"), **kwargs)
    assert field in raised.value.errors


def test_an_ec_key_must_be_on_p384(db_session, babel_context):
    p256 = public_jwk(ec.generate_private_key(ec.SECP256R1()), "e1")
    assert "P-384" in " ".join(fhir_clients.check_jwks({"keys": [p256]}))


def test_a_private_key_is_never_registered(db_session, babel_context, rsa_key):
    private = json.loads(RSAAlgorithm.to_jwk(rsa_key))
    private["kid"] = "k1"
    assert "private key" in " ".join(fhir_clients.check_jwks({"keys": [private]}))


def test_only_admins_register(db_session, babel_context):
    from his.errors import Forbidden
    from his.models import Role

    doctor = Principal(user_id=1, username="doc", roles=frozenset({Role.DOCTOR}))
    with pytest.raises(Forbidden):
        fhir_clients.register(
            db_session, doctor, client_id="x", jwks_url="https://x.example/j", scopes="system/*.rs"
        )


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_adds_lists_and_disables_clients(cli_db, tmp_path, rsa_key):
    from his.cli import main

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    assert run("db", "upgrade").exit_code == 0
    assert run("demo").exit_code == 0
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk(rsa_key, "k1")]}))
    inline = run(
        "fhir",
        "client",
        "add",
        "bhxh-gateway",
        "--jwks",
        str(jwks_file),
        "--scope",
        "system/Patient.rs system/Coverage.read",
        "--facility",
        "91001",
    )
    assert inline.exit_code == 0, inline.output
    assert "bhxh-gateway registered" in inline.output
    by_url = run(
        "fhir",
        "client",
        "add",
        "province",
        "--jwks-url",
        "https://so-yte.example/jwks.json",
        "--scope",
        "system/*.rs",
    )
    assert by_url.exit_code == 0, by_url.output
    both = run("fhir", "client", "add", "x", "--scope", "system/*.rs")
    assert both.exit_code != 0 and "exactly one" in both.output
    taken = run(
        "fhir",
        "client",
        "add",
        "province",
        "--jwks-url",
        "https://a.example/j",
        "--scope",
        "system/*.rs",
    )
    assert taken.exit_code != 0 and "exists" in taken.output
    bad = run(
        "fhir",
        "client",
        "add",
        "y",
        "--jwks-url",
        "https://a.example/j",
        "--scope",
        "patient/*.read",
        "--facility",
        "00000",
    )
    assert bad.exit_code != 0 and "scope" in bad.output and "facility" in bad.output

    listed = run("fhir", "client", "list").output.splitlines()
    assert listed[0].startswith("bhxh-gateway\tactive\tsystem/Patient.rs system/Coverage.read")
    assert "91001" in listed[0] and "inline JWKS" in listed[0]
    assert listed[1].startswith("province\tactive") and "all facilities" in listed[1]

    assert run("fhir", "client", "disable", "province").exit_code == 0
    assert "province\tdisabled" in run("fhir", "client", "list").output
    assert run("fhir", "client", "disable", "nobody").exit_code != 0

    engine = create_engine(cli_db)
    with engine.connect() as conn:
        row = conn.execute(
            select(FhirClient.jwks, FhirClient.facility_ids).where(
                FhirClient.client_id == "bhxh-gateway"
            )
        ).one()
        assert row.jwks["keys"][0]["kid"] == "k1"
        assert len(row.facility_ids) == 1
    engine.dispose()
