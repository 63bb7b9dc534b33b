"""Engine, sessions and the declarative base.

Plain SQLAlchemy rather than Flask-SQLAlchemy: services take a ``Session`` argument so the
MLLP listener, CLI jobs and the web app share them without an application context.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC and always hands back an aware datetime.

    SQLite has no time-zone type, so without this a value read back is naive and
    comparisons with ``now(UTC)`` raise; PostgreSQL keeps ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the HIS stores only aware UTC times")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}  # noqa: RUF012 (SQLAlchemy's API)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every SQLite connection.

    pysqlite opens transactions lazily and never for DDL or SAVEPOINT, which breaks
    nested transactions; handing transaction control to SQLAlchemy (isolation_level=None
    plus an explicit BEGIN) is the fix SQLAlchemy documents.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        # FULL, not NORMAL: a committed record must survive a power cut at a commune station.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A unit of work that will write takes the write lock up front: a deferred
        # transaction that read first and writes later fails outright (SQLITE_BUSY, no
        # waiting) when another writer committed in between.
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


WRITE_OPTION = "his_write"

# Seconds a new PostgreSQL connection may take: a database host that does not answer at all
# (no refusal, packets dropped) fails the request with 503 after this, instead of holding a
# worker thread for the kernel's TCP timeout (minutes).
CONNECT_TIMEOUT = 5


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A failed statement's values (a name, a CCCD) would otherwise be in the exception's
    # text, and so in the log line of every error that is logged with its traceback.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    # A connection the server or the network dropped (a database restart, a failover) is
    # noticed when taken from the pool and replaced, so the first request after an outage
    # succeeds instead of failing on a dead socket.
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return create_engine(url, connect_args=connect_args, **kwargs)


# SQLite errors that mean "not now" rather than a fault in the statement.
_SQLITE_TRANSIENT = ("database is locked", "database is busy", "unable to open", "disk i/o")


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached or is busy (a retry later may
    succeed: 503), as opposed to a fault in our statement or data (500/422).

    PostgreSQL: every driver-level OperationalError (connection refused or lost, server
    shutting down, serialization failures) and InterfaceError (a closed connection);
    SQLAlchemy's pool timeout. SQLite: only a locked, busy or unopenable file; its other
    OperationalErrors ("no such table", syntax) are our bugs."""
    if isinstance(exc, sa_exc.TimeoutError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        text = str(exc.orig).lower()
        return any(marker in text for marker in _SQLITE_TRANSIENT)
    return True


class Database:
    """The engine and session factory one process uses."""

    def __init__(self, engine: Engine, session_factory: sessionmaker[Session] | None = None):
        self.engine = engine
        self.session_factory = session_factory or sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    def open_session(self, *, write: bool = False) -> Session:
        """A session whose transaction, on SQLite, takes the write lock at once when
        ``write``; PostgreSQL ignores the option (its row locks do the same job)."""
        session = self.session_factory()
        if write:
            session.connection(execution_options={WRITE_OPTION: True})
        return session

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A unit of work: commits when the block ends cleanly, rolls back otherwise."""
        session = self.open_session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
