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
        writes = request.method not in ("GET", "HEAD", "OPTIONS")
        g.db_session = database().open_session(write=writes)
    return g.db_session


def client_ip() -> str | None:
    # ProxyFix (configured from HIS_TRUSTED_PROXIES) has already resolved X-Forwarded-For.
    return request.remote_addr


def principal() -> Principal:
    request_id = g.get("request_id")
    if current_user.is_authenticated:
        return Principal.for_user(current_user.user, source_ip=client_ip(), request_id=request_id)
    return Principal.anonymous(source_ip=client_ip(), request_id=request_id)
