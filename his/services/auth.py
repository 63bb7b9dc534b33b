"""Passwords, logins and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from his.db import utcnow
from his.models import ApiToken, AuditAction, AuditOutcome, User
from his.services import audit
from his.services.access import Principal

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a failed login takes as long
# whether or not the account exists and timing does not reveal usernames.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalise_username(username: str) -> str:
    return username.strip().lower()


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(
        select(User)
        .where(User.username == normalise_username(username))
        .options(selectinload(User.role_rows))
    )


def authenticate(
    session: Session, principal: Principal, username: str, password: str, *, channel: str
) -> User | None:
    """The user when the password is right and the account active, else None.

    Both outcomes are audited; the caller commits so a failed attempt is recorded even
    though the request itself fails.
    """
    user = find_user(session, username)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        ok = user is not None and user.active
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None:
        audit.record(
            session,
            principal,
            AuditAction.LOGIN_FAILED,
            outcome=AuditOutcome.FAILURE,
            username=normalise_username(username)[:64],
            user_id=user.id if user else None,
            facility_id=user.facility_id if user else None,
            detail=channel,
        )
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    audit.record(
        session,
        Principal.for_user(user, source_ip=principal.source_ip, request_id=principal.request_id),
        AuditAction.LOGIN,
        detail=channel,
    )
    return user


def _digest(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl: dt.timedelta) -> tuple[str, ApiToken]:
    raw = secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, token_hash=_digest(raw), expires_at=utcnow() + ttl)
    session.add(token)
    session.flush()
    return raw, token


def user_for_token(session: Session, raw_token: str) -> User | None:
    """The token's user while the token is unexpired, unrevoked and the user active."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(raw_token)))
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        return None
    user = session.get(User, token.user_id, options=[selectinload(User.role_rows)])
    return user if user and user.active else None


def revoke_token(session: Session, principal: Principal, raw_token: str) -> bool:
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == _digest(raw_token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    revoked = result.rowcount > 0  # type: ignore[attr-defined]
    if revoked:
        audit.record(session, principal, AuditAction.LOGOUT, detail="api token")
    return revoked


def revoke_all_tokens(session: Session, user_id: int) -> None:
    session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
