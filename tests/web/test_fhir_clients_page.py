"""The admin page for FHIR backend clients, through the Flask test client."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select

from his.models import AuditEvent, FhirClient, Role
from tests.factories import FacilityFactory, UserFactory
from tests.web.test_login_page import csrf_token, log_in

PAGE = "/admin/fhir-clients/"


def _jwks() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "k1"
    return json.dumps({"keys": [jwk]})


def _admin(client):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    return admin


def _post(client, url, data):
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def test_admin_registers_a_client_with_a_pasted_jwks_and_facilities(client, db_session):
    _admin(client)
    home = client.get("/?lang=en").get_data(as_text=True)
    assert 'data-testid="fhir-clients-link"' in home and PAGE in home
    facility = FacilityFactory(code="91077", name="TYT Xã Thử")
    db_session.commit()
    page = client.get(PAGE + "?lang=en")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "No FHIR client is registered yet." in html
    assert 'value="91077"' in html

    done = client.post(
        PAGE,
        data={
            "csrf_token": csrf_token(html),
            "client_id": "lis-91077",
            "jwks": _jwks(),
            "scopes": "system/Observation.cruds  system/Patient.rs",
            "facility": ["91077"],
        },
    )
    assert done.status_code == 303, done.get_data(as_text=True)
    listed = client.get(done.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert 'data-testid="added"' in listed
    assert 'data-client="lis-91077"' in listed
    assert "system/Observation.cruds system/Patient.rs" in listed
    assert "Inline JWKS (1 keys)" in listed
    row = db_session.scalars(select(FhirClient).where(FhirClient.client_id == "lis-91077")).one()
    assert row.facility_ids == [facility.id] and row.jwks_url is None and row.active
    audit = db_session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "FhirClient")
    ).one()
    assert audit.action == "create"


def test_admin_registers_by_url_and_disables_then_enables(client, db_session):
    _admin(client)
    done = _post(
        client,
        PAGE,
        {
            "client_id": "province",
            "jwks_url": "https://so-yte.example/jwks.json",
            "scopes": "system/*.read",
        },
    )
    assert done.status_code == 303
    html = client.get(PAGE + "?lang=en").get_data(as_text=True)
    assert "https://so-yte.example/jwks.json" in html and "All facilities" in html
    off = _post(client, PAGE + "province/disable", {})
    assert off.status_code == 303
    html = client.get(PAGE + "?lang=en").get_data(as_text=True)
    assert 'data-testid="disabled"' in html and 'data-testid="enable"' in html
    db_session.expire_all()
    assert not db_session.scalar(
        select(FhirClient.active).where(FhirClient.client_id == "province")
    )
    assert _post(client, PAGE + "province/enable", {}).status_code == 303
    db_session.expire_all()
    assert db_session.scalar(select(FhirClient.active).where(FhirClient.client_id == "province"))


def test_mistakes_are_shown_beside_their_fields_and_nothing_is_saved(client, db_session):
    _admin(client)
    response = _post(
        client,
        PAGE + "?lang=en",
        {"client_id": "bad name!", "jwks": "{not json", "scopes": "patient/*.read"},
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'data-testid="error-jwks"' in html
    assert 'value="bad name!"' in html  # what was typed is kept
    both = _post(
        client,
        PAGE + "?lang=en",
        {"client_id": "bad name!", "jwks_url": "http://remote.example/j", "scopes": "user/*.rs"},
    )
    assert both.status_code == 422
    html = both.get_data(as_text=True)
    for field in ("client_id", "jwks_url", "scope"):
        assert f'data-testid="error-{field}"' in html
    assert db_session.scalars(select(FhirClient)).all() == []


def test_vietnamese_by_default(client, db_session):
    _admin(client)
    html = client.get(PAGE, headers={"Accept-Language": "vi"}).get_data(as_text=True)
    assert '<html lang="vi">' in html


def test_only_admins_and_only_with_csrf(client, db_session):
    doctor = UserFactory(roles=(Role.DOCTOR,))
    log_in(client, doctor.username)
    assert client.get(PAGE, headers={"Accept": "text/html"}).status_code == 403
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="fhir-clients-link"' not in home
    token = csrf_token(home)
    refused = client.post(
        PAGE,
        data={
            "csrf_token": token,
            "client_id": "x",
            "jwks_url": "https://a.example/j",
            "scopes": "system/*.rs",
        },
    )
    assert refused.status_code == 403
    assert client.post(PAGE + "x/disable", data={"csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})

    _admin(client)
    no_csrf = client.post(
        PAGE, data={"client_id": "x", "jwks_url": "https://a.example/j", "scopes": "system/*.rs"}
    )
    assert no_csrf.status_code == 400
    assert db_session.scalars(select(FhirClient)).all() == []


def test_anonymous_is_sent_to_login(client, db_session):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
