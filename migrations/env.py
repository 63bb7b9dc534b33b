"""Alembic environment: the URL comes from his.migrate (HIS_DATABASE_URL), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import billing.models  # noqa: F401 (the billing tables, on the same metadata)
import his.models  # noqa: F401 (registers every table on the metadata)
from his.db import Base, UTCDateTime, make_engine

config = context.config
target_metadata = Base.metadata


def _render_item(type_, obj, autogen_context):
    """Migrations stay free of application imports: our UTC wrapper is written out as the
    plain timestamptz it stores into."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Search structures that differ by database (0004, 0009) live in the migrations alone: the
# models cannot describe them on both.
_MIGRATION_ONLY_INDEXES = (
    "ix_patient_recent",
    "ix_patient_search_name_prefix",
    "ix_patient_search_lexemes",
)
_MIGRATION_ONLY_TABLE_PREFIX = "patient_name_fts"  # SQLite's FTS5 table and its shadows


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    if type_ == "index" and name and (name.endswith("_trgm") or name in _MIGRATION_ONLY_INDEXES):
        return False
    return not (type_ == "table" and name and name.startswith(_MIGRATION_ONLY_TABLE_PREFIX))


def _run(connection) -> None:
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        # Never wait forever behind a long transaction in production: fail and retry.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '30min'"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        # SQLite cannot ALTER most constraints; batch mode rebuilds the table instead.
        render_as_batch=not is_pg,
        render_item=_render_item,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                _run_sqlite(conn)
            else:
                _run(conn)
            conn.commit()
    finally:
        engine.dispose()


def _run_sqlite(conn) -> None:
    """SQLite changes most columns by copying the table ("batch" mode); with foreign keys
    on, dropping the old copy fails. They are switched off for the migration (the pragma
    only works outside a transaction) and the data is checked against them afterwards."""
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _run(conn)
        conn.commit()
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows breaking foreign keys: {broken[:5]}")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `his db upgrade`")
run_migrations_online()
