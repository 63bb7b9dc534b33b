"""Creating and dropping the throwaway databases the tests run on.

SQLite gets a file in a temporary folder; PostgreSQL a database of its own on the server
named by ``HIS_TEST_POSTGRES_URL`` (dropped afterwards), so tests never touch data
someone cares about. Both are built by the Alembic migrations, never ``create_all``.
"""

from __future__ import annotations

import os
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


def create_sqlite(folder: Path) -> str:
    url = sqlite_url(folder / f"his-{uuid.uuid4().hex[:8]}.sqlite3")
    migrate.upgrade(url)
    return url


def create_postgres(admin_url: str) -> str:
    name = f"his_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def drop_postgres(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
