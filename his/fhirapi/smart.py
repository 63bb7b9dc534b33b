"""SMART Backend Services: discovery, the token endpoint, and the access tokens it hands out.

A registered machine client (``his.services.fhir_clients``) asks for a token with the
OAuth 2.0 client-credentials grant, authenticating with a JWT it signed with its private
key (RFC 7523, ``private_key_jwt``; RS384 or ES384). We check the assertion exactly as
the SMART Backend Services IG says: the one key of its JWKS with the header's ``kid`` and
a ``kty`` fitting ``alg``; ``iss`` = ``sub`` = the client id; ``aud`` = this endpoint;
``exp`` at most five minutes ahead; a ``jti`` never seen before. The access token is
random, lives five minutes, and only its SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

import jwt
from flask import Response, g, jsonify, request
from flask_babel import gettext as _
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from his.context import client_ip, db_session
from his.db import utcnow
from his.fhirapi import scopes as scope_rules
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import base_url
from his.fhirapi.security import FhirAccess, unauthorized
from his.logging import get_logger
from his.models import AuditAction, AuditOutcome, FhirAccessToken, FhirClient, FhirJti, Role
from his.services import audit, fhir_clients
from his.services.access import Principal

log = get_logger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# alg → the kty its key must have. Only the two SMART names: never HS* (a shared secret
# would be the public key) nor "none".
ALGORITHMS = {"RS384": "RSA", "ES384": "EC"}
TOKEN_LIFETIME = 300  # seconds; the IG recommends five minutes
MAX_ASSERTION_LIFETIME = 300  # exp no more than five minutes ahead (the IG's SHALL)
CLOCK_SKEW = 30  # seconds of disagreement tolerated between the client's clock and ours
# Expired tokens are kept a while so their holder is told "expired", then purged.
EXPIRED_TOKEN_KEPT = dt.timedelta(hours=1)

SCOPES_SUPPORTED = [
    "system/*.read",
    "system/*.write",
    "system/*.rs",
    "system/*.cruds",
    "system/Patient.read",
    "system/Patient.rs",
    "system/Observation.rs",
    "system/Observation.cruds",
    "system/DiagnosticReport.cruds",
]


class OAuthError(Exception):
    """A token request refused, answered as RFC 6749 §5.2 JSON."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


def token_url() -> str:
    """The token endpoint as the client addressed it: what ``aud`` must be."""
    return f"{base_url()}/auth/token"


def _no_store(response: Response) -> Response:
    # RFC 6749 §5.1: responses carrying (or refusing) tokens are never cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# --- discovery --------------------------------------------------------------------------------


@bp.get("/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """Public: what a backend client needs to get a token (no token asked)."""
    response = jsonify(
        {
            "token_endpoint": token_url(),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "scopes_supported": SCOPES_SUPPORTED,
            "capabilities": [
                "client-confidential-asymmetric",
                "permission-v1",
                "permission-v2",
            ],
        }
    )
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- the token endpoint -----------------------------------------------------------------------


@bp.post("/auth/token")
def token() -> Response:
    session = db_session()
    try:
        client_id, body = _issue(session)
    except OAuthError as error:
        log.info("fhir token refused", error=error.error, reason=error.description, ip=client_ip())
        # Nothing of the refused request is kept (its jti included), but the refusal is:
        # as for a failed staff login, the audit trail shows who tried.
        session.rollback()
        audit.record(
            session,
            _client_principal(_claimed_client_id()),
            AuditAction.LOGIN_FAILED,
            outcome=AuditOutcome.FAILURE,
            detail=f"fhir token: {error.error}: {error.description}"[:500],
        )
        session.commit()
        response = jsonify({"error": error.error, "error_description": error.description})
        response.status_code = error.status
        return _no_store(response)
    audit.record(
        session,
        _client_principal(client_id),
        AuditAction.LOGIN,
        detail=f"fhir token: {body['scope']}"[:500],
    )
    return _no_store(jsonify(body))


def _claimed_client_id() -> str | None:
    """Who the refused assertion says it is (unverified: for the audit trail only)."""
    try:
        iss = jwt.decode(
            request.form.get("client_assertion", ""), options={"verify_signature": False}
        ).get("iss")
    except jwt.PyJWTError:
        return None
    return iss if isinstance(iss, str) else None


def _client_principal(client_id: str | None, facility_id: int | None = None) -> Principal:
    return Principal(
        user_id=None,
        # The audit trail's username holds 64 characters; client ids are at most 50.
        username=f"client:{client_id}"[:64] if client_id else None,
        # Machine clients act with the integration role in the services (lab results,
        # imaging reports); what they may touch at all is bounded by their scopes.
        roles=frozenset({Role.INTEGRATION}),
        facility_id=facility_id,
        source_ip=client_ip(),
        request_id=g.get("request_id"),
    )


def _issue(session: Session) -> tuple[str, dict]:
    """The client id and the token response, or OAuthError."""
    if (request.mimetype or "") != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", _("Send the token request as application/x-www-form-urlencoded.")
        )
    form = request.form
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise OAuthError("invalid_request", _("grant_type is missing."))
    if grant_type != "client_credentials":
        raise OAuthError(
            "unsupported_grant_type", _("Only the client_credentials grant is supported.")
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(
            "invalid_request",
            _("client_assertion_type must be %(type)s.") % {"type": ASSERTION_TYPE},
        )
    assertion = form.get("client_assertion", "")
    if not assertion:
        raise OAuthError("invalid_request", _("client_assertion is missing."))
    requested = form.get("scope", "").strip()
    if not requested:
        raise OAuthError("invalid_request", _("scope is missing."))

    client = authenticate(session, assertion, token_url())
    granted = grant(requested, client.scopes)
    if not granted:
        raise OAuthError(
            "invalid_scope",
            _("None of the requested scopes is registered for this client: %(scopes)s")
            % {"scopes": client.scopes},
        )
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(
        delete(FhirAccessToken).where(FhirAccessToken.expires_at < now - EXPIRED_TOKEN_KEPT)
    )
    session.add(
        FhirAccessToken(
            token_hash=_digest(raw),
            client_pk=client.id,
            scopes=granted,
            expires_at=now + dt.timedelta(seconds=TOKEN_LIFETIME),
        )
    )
    return client.client_id, {
        "access_token": raw,
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME,
        "scope": granted,
    }


def _invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2 allows 401 for a failed client authentication; the client did not use
    # the Authorization header, so no WWW-Authenticate challenge is owed.
    return OAuthError("invalid_client", description, 401)


def authenticate(session: Session, assertion: str, audience: str) -> FhirClient:
    """The client whose signed assertion this is, or OAuthError(invalid_client)."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _invalid_client(_("client_assertion is not a JWT.")) from exc
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _invalid_client(
            _("The assertion must be signed with %(algs)s.") % {"algs": " or ".join(ALGORITHMS)}
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid_client(_("The assertion's header has no kid."))
    iss, sub = unverified.get("iss"), unverified.get("sub")
    if not isinstance(iss, str) or not iss or iss != sub:
        raise _invalid_client(_("The assertion's iss and sub must both be the client id."))
    client = session.scalar(select(FhirClient).where(FhirClient.client_id == iss))
    if client is None:
        raise _invalid_client(_("No client is registered with this client id."))
    if not client.active:
        raise _invalid_client(_("This client is disabled."))
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise _invalid_client(_("The assertion's jku is not the client's registered JWKS URL."))

    try:
        jwks = fhir_clients.key_set(client, kid)
    except fhir_clients.JwksUnavailable as exc:
        raise _invalid_client(str(exc)) from exc
    candidates = [
        k
        for k in fhir_clients.keys_of(jwks)
        if k.get("kid") == kid
        and k.get("kty") == ALGORITHMS[alg]
        # A key that names its algorithm or use is only good for those (RFC 7517 §4).
        and k.get("alg") in (None, alg)
        and k.get("use") in (None, "sig")
        and (k.get("kty") != "EC" or k.get("crv") == "P-384")  # ES384 is P-384 only
    ]
    if len(candidates) != 1:
        raise _invalid_client(
            _("The client's JWKS has %(n)s keys with kid %(kid)s for %(alg)s; one is needed.")
            % {"n": len(candidates), "kid": kid, "alg": alg}
        )
    try:
        key = jwt.PyJWK(candidates[0], algorithm=alg).key
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=client.client_id,
            leeway=CLOCK_SKEW,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _invalid_client(_("The assertion has expired.")) from exc
    except jwt.InvalidAudienceError as exc:
        raise _invalid_client(
            _("The assertion's aud must be the token endpoint, %(url)s.") % {"url": audience}
        ) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid_client(
            _("The assertion lacks the %(claim)s claim.") % {"claim": exc.claim}
        ) from exc
    except jwt.InvalidSignatureError as exc:
        raise _invalid_client(_("The assertion's signature does not verify.")) from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _invalid_client(
            _("The assertion is not valid: %(error)s") % {"error": type(exc).__name__}
        ) from exc

    now = utcnow()
    exp = claims["exp"]
    if not isinstance(exp, int | float):
        raise _invalid_client(_("The assertion's exp must be a number."))
    if exp > now.timestamp() + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid_client(_("The assertion's exp is more than five minutes ahead."))
    jti = claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        raise _invalid_client(_("The assertion's jti must be a string of 1 to 200 characters."))
    _remember_jti(session, client.client_id, jti, exp, now)
    return client


def _remember_jti(session: Session, client_id: str, jti: str, exp: float, now: dt.datetime) -> None:
    """Refuse a jti this client already used; remember this one until its assertion could
    no longer be accepted. The primary key (client_id, jti) makes two concurrent requests
    with the same assertion race to one insert: the loser fails here (PostgreSQL waits for
    the winner's commit; SQLite serialises writers)."""
    session.execute(delete(FhirJti).where(FhirJti.expires_at < now))
    if session.get(FhirJti, (client_id, jti)) is not None:
        raise _invalid_client(_("This assertion (jti) was already used."))
    until = dt.datetime.fromtimestamp(exp, dt.UTC) + dt.timedelta(seconds=CLOCK_SKEW)
    try:
        with session.begin_nested():
            session.add(FhirJti(client_id=client_id, jti=jti, expires_at=until))
    except IntegrityError as exc:
        raise _invalid_client(_("This assertion (jti) was already used.")) from exc


# --- scopes -----------------------------------------------------------------------------------


def grant(requested: str, registered: str) -> str:
    """The requested system scopes, each narrowed to what the registration allows; a scope
    outside the registration is dropped (RFC 6749 §3.3: the server may grant less than
    asked and says what it granted in ``scope``). Empty when nothing is left."""
    allowed = [s for s in scope_rules.parse_all(registered) if s.text.startswith("system/")]
    granted: list[str] = []
    for text in requested.split():
        wanted = scope_rules.parse(text)
        if wanted is None or not text.startswith("system/"):
            continue  # user/, patient/, openid...: not for a backend client
        for have in allowed:
            found = _intersect(wanted, have, text)
            if found and found not in granted:
                granted.append(found)
    return " ".join(granted)


_V1_WORDS = {"rs": "read", "cud": "write", "cruds": "*"}


def _intersect(wanted: scope_rules.Scope, have: scope_rules.Scope, text: str) -> str | None:
    """What of ``wanted`` the registered ``have`` covers, as a scope string, or None."""
    if have.resource_type == "*":
        resource_type = wanted.resource_type
    elif wanted.resource_type in ("*", have.resource_type):
        resource_type = have.resource_type
    else:
        return None
    letters = wanted.interactions & have.interactions
    if not letters:
        return None
    if wanted.query and have.query and wanted.query != have.query:
        return None
    query = wanted.query or have.query
    if (resource_type, letters, query) == (
        wanted.resource_type,
        wanted.interactions,
        wanted.query,
    ):
        return text  # granted as asked, in the syntax (v1 or v2) it was asked in
    perm = "".join(c for c in scope_rules.INTERACTIONS if c in letters)
    asked_v1 = text.split(".", 1)[1].split("?", 1)[0] in ("read", "write", "*")
    if asked_v1:
        perm = _V1_WORDS.get(perm, perm)
    return f"system/{resource_type}.{perm}" + (f"?{query}" if query else "")


# --- access tokens ----------------------------------------------------------------------------


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def access_for_token(session: Session, token: str) -> FhirAccess | None:
    """The FhirAccess of a backend client's access token; None when the token is not one
    of ours (a staff token then gets its turn). An expired or revoked client token is a
    401 here: it must not be tried as anything else."""
    row = session.get(FhirAccessToken, _digest(token))
    if row is None:
        return None
    if row.expires_at <= utcnow():
        raise unauthorized(_("The access token has expired: ask the token endpoint for a new one."))
    client = session.get(FhirClient, row.client_pk)
    if client is None or not client.active:
        raise unauthorized(_("The access token was revoked."))
    facilities = frozenset(client.facility_ids) if client.facility_ids is not None else None
    principal = _client_principal(
        client.client_id,
        next(iter(facilities)) if facilities and len(facilities) == 1 else None,
    )
    return FhirAccess(
        principal=principal,
        scopes=tuple(scope_rules.parse_all(row.scopes)),
        client_id=client.client_id,
        facility_ids=facilities,
    )
