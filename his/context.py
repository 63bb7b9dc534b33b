"""Per-request state: the database session and the acting principal."""

from __future__ import annotations

from flask import current_app, g, request
from flask_login import current_user
from sqlalchemy.orm import Session

from his.db import Database
from his.services.access import Principal


def database() -> Database:
    return current_app.extensions["his_db"]


def db_session() -> Session:
    """One session per request, opened on first use; committed by ``his.http`` when the
    response is a success, rolled back otherwise."""
    if "db_session" not in g:
        # Every request may write, GETs included: reading a patient's record, a search or
        # a clinical note leaves an audit row in the same transaction. On SQLite a
        # transaction that began as a reader and writes later fails at once ("database is
        # locked", no busy wait) when another request committed in between, so each
        # request takes the write lock up front. PostgreSQL ignores the option.
        g.db_session = database().open_session(write=True)
    return g.db_session


def client_ip() -> str | None:
    # ProxyFix (configured from HIS_TRUSTED_PROXIES) has already resolved X-Forwarded-For.
    return request.remote_addr


def principal() -> Principal:
    request_id = g.get("request_id")
    if current_user.is_authenticated:
        return Principal.for_user(current_user.user, source_ip=client_ip(), request_id=request_id)
    return Principal.anonymous(source_ip=client_ip(), request_id=request_id)
