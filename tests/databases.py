"""Creating and dropping the throwaway databases the tests run on.

SQLite gets a file in a temporary folder; PostgreSQL a database of its own on the server
named by ``HIS_TEST_POSTGRES_URL`` (dropped afterwards), so tests never touch data
someone cares about. Both are built by the Alembic migrations, never ``create_all``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from his import migrate
from his.config import normalise_database_url, sqlite_url

POSTGRES_ENV = "HIS_TEST_POSTGRES_URL"


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV)
    return normalise_database_url(url) if url else None


def create_sqlite(folder: Path, template: Path | None = None) -> str:
    """A migrated database file; a copy of ``template`` (already migrated) when given."""
    path = folder / f"his-{uuid.uuid4().hex[:8]}.sqlite3"
    url = sqlite_url(path)
    if template is None:
        migrate.upgrade(url)
    else:
        shutil.copyfile(template, path)
        # Closing the migration's last connection checkpoints the WAL; should one remain,
        # it holds committed pages the copy needs.
        wal = template.with_name(template.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, path.with_name(path.name + "-wal"))
    return url


def create_postgres(admin_url: str, template: str | None = None) -> str:
    """A migrated database; a copy of the ``template`` database (already migrated) when
    given: PostgreSQL copies files, where running the migrations again loads the 12,000
    ICD-10 codes row by row."""
    name = f"his_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    if template is None:
        migrate.upgrade(url)
    return url


def drop_postgres(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
