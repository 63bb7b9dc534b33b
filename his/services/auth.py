"""Passwords, logins and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from his.db import utcnow
from his.models import ApiToken, AuditAction, AuditOutcome, User
from his.services import audit
from his.services.access import Principal

_hasher = PasswordHasher()
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


@dataclass(frozen=True)
class Lockout:
    """After ``after`` consecutive failures an account is locked for ``minutes``, doubled
    at each further lock in a row, at most ``max_minutes``; a success resets both."""

    after: int = 5
    minutes: int = 1
    max_minutes: int = 60

    def duration(self, previous_locks: int) -> dt.timedelta:
        minutes = self.minutes * 2 ** min(previous_locks, 20)
        return dt.timedelta(minutes=min(minutes, self.max_minutes))


def is_locked(user: User, now: dt.datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def authenticate(
    session: Session,
    principal: Principal,
    username: str,
    password: str,
    *,
    channel: str,
    lockout: Lockout = Lockout(),
) -> User | None:
    """The user when the password is right, the account active and not locked, else None.

    Every outcome is audited; the caller commits so a failed attempt (and its count
    towards the lockout) is kept even though the request itself fails. A locked account
    answers exactly like a wrong password: a different answer would tell a stranger that
    the username exists.
    """
    user = find_user(session, username)
    if not _verify(user, password) or user is None or not user.active:
        _failed(session, principal, user, normalise_username(username)[:64], channel, lockout)
        return None
    if is_locked(user):
        _failed(session, principal, user, user.username, channel, lockout)
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = utcnow()
    user.failed_logins = user.lockouts = 0
    user.locked_until = None
    audit.record(
        session,
        Principal.for_user(user, source_ip=principal.source_ip, request_id=principal.request_id),
        AuditAction.LOGIN,
        detail=channel,
    )
    return user


def confirm_password(
    session: Session,
    principal: Principal,
    user: User,
    password: str,
    *,
    lockout: Lockout = Lockout(),
) -> bool:
    """Re-authentication of a logged-in user before an admin action: the same checks,
    lockout and audit as a login, so a stolen session cannot guess the password here."""
    return (
        authenticate(session, principal, user.username, password, channel="reauth", lockout=lockout)
        is not None
    )


def _verify(user: User | None, password: str) -> bool:
    # The dummy hash when the username is unknown, so a failed login takes as long
    # whether or not the account exists and timing does not reveal usernames.
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


def _failed(
    session: Session,
    principal: Principal,
    user: User | None,
    username: str,
    channel: str,
    lockout: Lockout,
) -> None:
    def record(outcome: AuditOutcome, detail: str) -> None:
        audit.record(
            session,
            principal,
            AuditAction.LOGIN_FAILED,
            outcome=outcome,
            username=username,
            user_id=user.id if user else None,
            facility_id=user.facility_id if user else None,
            detail=detail,
        )

    now = utcnow()
    if user is not None and is_locked(user, now):
        # Attempts during a lock neither count nor extend it: the owner gets back in when
        # it ends, however hard someone else keeps trying.
        record(AuditOutcome.DENIED, f"{channel}: account locked")
        return
    record(AuditOutcome.FAILURE, channel)
    if user is None:
        return  # unknown usernames: only the per-username rate limit (his.authn) applies
    user.failed_logins += 1
    if user.failed_logins >= lockout.after:
        length = lockout.duration(user.lockouts)
        user.locked_until = now + length
        user.lockouts += 1
        user.failed_logins = 0
        record(
            AuditOutcome.DENIED,
            f"{channel}: account locked for {int(length.total_seconds())} s "
            f"after {lockout.after} failed attempts (lock {user.lockouts} in a row)",
        )


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
    token = token_for(session, raw_token)
    return token.user if token else None


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


def revoke_all_tokens(session: Session, user_id: int) -> int:
    """Revokes every live token of the user; how many were live."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount  # type: ignore[attr-defined]


def log_out_everywhere(session: Session, principal: Principal, user: User) -> None:
    """Web logout: every API token of the user is revoked and every web session cookie
    issued so far (this browser's and any other's) stops working, at once."""
    revoked = revoke_all_tokens(session, user.id)
    user.session_generation += 1
    audit.record(
        session, principal, AuditAction.LOGOUT, detail=f"web; {revoked} API tokens revoked"
    )


def token_for(session: Session, raw_token: str) -> ApiToken | None:
    """The live token (unexpired, unrevoked, of an active user) with its user loaded."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(raw_token)))
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        return None
    user = session.get(User, token.user_id, options=[selectinload(User.role_rows)])
    return token if user and user.active else None
