"""Machine clients of the FHIR API (SMART Backend Services): registering them, and their keys.

A client is registered out of band (``his fhir client add`` or the admin page) with its
public keys, either as a JWKS URL (preferred: the client rotates keys without asking us)
or as an inline JWKS, the system scopes it may ask for and, optionally, the facilities it
may see. Fetched key sets are cached per client for as long as the client's server says
(``Cache-Control: max-age``), within bounds.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from his.errors import Conflict, NotFound, ValidationFailed
from his.fhirapi import scopes as scope_rules
from his.models import AuditAction, Facility, FhirAccessToken, FhirClient, Role
from his.services import audit
from his.services.access import Principal

# The client id is named in every audit row as "client:<id>" (username is 64 characters).
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
# Key types we can verify: RS384 needs RSA, ES384 needs EC on P-384.
KEY_TYPES = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
MAX_KEYS = 20

FETCH_TIMEOUT = 5.0  # seconds: a token request waits at most this for the client's server
MAX_JWKS_BYTES = 64 * 1024
CACHE_DEFAULT = 300  # seconds, when the key set's response says nothing
CACHE_MAX = 3600  # a key the client revoked must stop working within the hour
# A kid we do not know may be a freshly rotated key: refetch, but not more often than this.
REFETCH_MIN_INTERVAL = 10


class JwksUnavailable(Exception):
    """The client's key set could not be fetched or is not a key set; says why."""


@dataclass(frozen=True)
class ClientView:
    client: FhirClient
    facility_codes: tuple[str, ...]


# --- validation -------------------------------------------------------------------------------


def check_jwks(jwks: Any) -> list[str]:
    """What is wrong with a JWKS (empty when nothing): each key needs kty and kid and the
    public members of its type, and a registered key set must never hold a private key."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        return [str(_l('A JWKS is a JSON object with a "keys" list.'))]
    keys = jwks["keys"]
    if not keys:
        return [str(_l("The JWKS holds no key."))]
    if len(keys) > MAX_KEYS:
        return [str(_l("The JWKS holds more than %(max)s keys.") % {"max": MAX_KEYS})]
    problems = []
    for n, key in enumerate(keys, start=1):
        if not isinstance(key, dict):
            problems.append(str(_l("Key %(n)s is not a JSON object.") % {"n": n}))
            continue
        kty = key.get("kty")
        if kty not in KEY_TYPES:
            problems.append(str(_l("Key %(n)s: kty must be RSA or EC.") % {"n": n}))
            continue
        if not key.get("kid"):
            problems.append(str(_l("Key %(n)s has no kid.") % {"n": n}))
        missing = [m for m in KEY_TYPES[kty] if not key.get(m)]
        if missing:
            problems.append(
                str(_l("Key %(n)s lacks %(members)s.") % {"n": n, "members": ", ".join(missing)})
            )
            continue
        if kty == "EC" and key.get("crv") != "P-384":
            problems.append(str(_l("Key %(n)s: an EC key must be on curve P-384.") % {"n": n}))
            continue
        if any(m in key for m in PRIVATE_MEMBERS):
            problems.append(
                str(_l("Key %(n)s is a private key: register only the public key.") % {"n": n})
            )
            continue
        try:
            jwt.PyJWK(key, algorithm="RS384" if kty == "RSA" else "ES384")
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            problems.append(str(_l("Key %(n)s is not a valid RSA or P-384 EC key.") % {"n": n}))
    return problems


def check_jwks_url(url: str) -> str | None:
    """What is wrong with a JWKS URL, or None. HTTPS only, except on this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return str(_l("The JWKS URL must be an https:// URL."))
    if parts.scheme == "http" and not _loopback(parts.hostname):
        return str(_l("The JWKS URL must be an https:// URL."))
    if len(url) > 500:
        return str(_l("At most %(max)s characters.") % {"max": 500})
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_scopes(text: str) -> tuple[str, list[str]]:
    """The registered scopes, space-separated, and what is wrong with them: only SMART
    system scopes (v1 ``system/Patient.read`` or v2 ``system/Patient.rs``)."""
    parts = text.split()
    problems = []
    kept: list[str] = []
    for part in parts:
        scope = scope_rules.parse(part)
        if scope is None or not part.startswith("system/"):
            problems.append(str(_l("%(scope)s is not a SMART system scope.") % {"scope": part}))
        elif part not in kept:
            kept.append(part)
    if not parts:
        problems.append(str(_l("Give at least one scope, e.g. system/*.read.")))
    return " ".join(kept), problems


# --- registration -----------------------------------------------------------------------------


def register(
    session: Session,
    principal: Principal,
    *,
    client_id: str,
    jwks_url: str | None = None,
    jwks: Any = None,
    scopes: str,
    facility_codes: list[str] | None = None,
) -> FhirClient:
    """Register a backend client; the caller commits. Admins (and the CLI) only."""
    principal.require_any(Role.ADMIN)
    client_id = (client_id or "").strip()
    jwks_url = (jwks_url or "").strip() or None
    errors: dict[str, list[str]] = {}
    if not CLIENT_ID.match(client_id):
        errors["client_id"] = [
            str(_l("1 to 50 letters, digits, dots, dashes or underscores, starting with one."))
        ]
    if (jwks_url is None) == (jwks is None):
        errors["jwks"] = [str(_l("Give either a JWKS URL or a JWKS, not both."))]
    elif jwks_url is not None:
        problem = check_jwks_url(jwks_url)
        if problem:
            errors["jwks_url"] = [problem]
    else:
        problems = check_jwks(jwks)
        if problems:
            errors["jwks"] = problems
    scope_text, scope_problems = normalise_scopes(scopes or "")
    if scope_problems:
        errors["scope"] = scope_problems
    facility_ids, unknown = _facility_ids(session, facility_codes or [])
    if unknown:
        errors["facility"] = [
            str(_l("No facility has this code: %(codes)s.") % {"codes": ", ".join(unknown)})
        ]
    if errors:
        raise ValidationFailed(str(_l("The FHIR client could not be registered.")), errors=errors)
    if session.scalar(select(FhirClient.id).where(FhirClient.client_id == client_id)):
        raise Conflict(
            str(_l("A FHIR client with this name exists.")), errors={"client_id": [client_id]}
        )
    client = FhirClient(
        client_id=client_id,
        jwks_url=jwks_url,
        jwks=jwks if jwks_url is None else None,
        scopes=scope_text,
        facility_ids=facility_ids,
        active=True,
    )
    session.add(client)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.CREATE,
        entity_type="FhirClient",
        entity_id=client.id,
        detail=f"fhir client {client_id}: scopes {scope_text}"[:500],
    )
    return client


def _facility_ids(session: Session, codes: list[str]) -> tuple[list[int] | None, list[str]]:
    codes = [c.strip() for c in codes if c and c.strip()]
    if not codes:
        return None, []
    found = {
        code: pk
        for code, pk in session.execute(
            select(Facility.code, Facility.id).where(Facility.code.in_(codes))
        )
    }
    unknown = [c for c in codes if c not in found]
    return sorted({found[c] for c in codes if c in found}), unknown


def list_clients(session: Session, principal: Principal) -> list[ClientView]:
    principal.require_any(Role.ADMIN)
    clients = session.scalars(select(FhirClient).order_by(FhirClient.client_id)).all()
    codes = {pk: code for pk, code in session.execute(select(Facility.id, Facility.code))}
    return [
        ClientView(c, tuple(sorted(codes.get(i, str(i)) for i in (c.facility_ids or []))))
        for c in clients
    ]


def set_active(session: Session, principal: Principal, client_id: str, *, active: bool) -> None:
    """Disable (or re-enable) a client. Disabling also revokes its live access tokens."""
    principal.require_any(Role.ADMIN)
    client = session.scalar(select(FhirClient).where(FhirClient.client_id == client_id))
    if client is None:
        raise NotFound(str(_l("No FHIR client has this name.")), errors={"client_id": [client_id]})
    client.active = active
    if not active:
        session.execute(delete(FhirAccessToken).where(FhirAccessToken.client_pk == client.id))
    forget_keys(client)
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="FhirClient",
        entity_id=client.id,
        detail=f"fhir client {client_id}: {'enabled' if active else 'disabled'}",
    )


# --- the client's keys ------------------------------------------------------------------------

# (client pk, url) → (fetched at, fresh until, key set). Per process; a few clients at most.
_cache: dict[tuple[int, str], tuple[float, float, dict]] = {}
_failures: dict[tuple[int, str], tuple[float, str]] = {}  # (client pk, url) → (when, why)
_cache_lock = threading.Lock()


def key_set(client: FhirClient, kid: str | None = None) -> dict:
    """The client's JWKS: the inline one, or the one at its URL (cached). When ``kid`` is
    not in a cached set, the set is fetched again (a client that rotated its key must not
    wait for our cache), at most once per ``REFETCH_MIN_INTERVAL``. A failed fetch is
    remembered as long: anyone can post an assertion naming a client, and must not make us
    hammer (or wait on) the client's server."""
    if not client.jwks_url:
        return client.jwks or {"keys": []}
    key = (client.id, client.jwks_url)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
        failed = _failures.get(key)
    if failed is not None and now - failed[0] < REFETCH_MIN_INTERVAL:
        raise JwksUnavailable(failed[1])
    if cached is not None:
        fetched_at, fresh_until, jwks = cached
        known = kid is None or any(k.get("kid") == kid for k in keys_of(jwks))
        if now < fresh_until and (known or now - fetched_at < REFETCH_MIN_INTERVAL):
            return jwks
    try:
        jwks, max_age = fetch_jwks(client.jwks_url)
    except JwksUnavailable as exc:
        with _cache_lock:
            _failures[key] = (now, str(exc))
        raise
    with _cache_lock:
        _cache[key] = (now, now + max_age, jwks)
        _failures.pop(key, None)
    return jwks


def forget_keys(client: FhirClient) -> None:
    with _cache_lock:
        for key in [k for k in _cache if k[0] == client.id]:
            del _cache[key]
        for key in [k for k in _failures if k[0] == client.id]:
            del _failures[key]


def keys_of(jwks: dict) -> list[dict]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def fetch_jwks(url: str) -> tuple[dict, int]:
    """GET the key set; returns it and how many seconds it may be cached."""
    try:
        with (
            httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=False) as http,
            http.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise JwksUnavailable(
                    str(_l("The client's JWKS URL answered HTTP %(status)s."))
                    % {"status": response.status_code}
                )
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable(str(_l("The client's JWKS is too large.")))
            cache_control = response.headers.get("Cache-Control", "")
    except httpx.HTTPError as exc:
        raise JwksUnavailable(
            str(_l("The client's JWKS URL could not be fetched: %(error)s"))
            % {"error": type(exc).__name__}
        ) from exc
    try:
        jwks = json.loads(body)
    except ValueError as exc:
        raise JwksUnavailable(str(_l("The client's JWKS URL did not return JSON."))) from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise JwksUnavailable(str(_l('A JWKS is a JSON object with a "keys" list.')))
    return jwks, cache_seconds(cache_control)


def cache_seconds(cache_control: str) -> int:
    """How long to keep a fetched key set: its max-age within [0, CACHE_MAX]; no-store or
    no-cache: not at all; nothing said: CACHE_DEFAULT."""
    directives = [d.strip().lower() for d in cache_control.split(",") if d.strip()]
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for directive in directives:
        name, _sep, value = directive.partition("=")
        if name.strip() == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():
                return min(int(value), CACHE_MAX)
    return CACHE_DEFAULT
