"""Backing up the database and restoring it into an empty one, with proof that nothing changed.

A backup is a folder: the database itself (``database.sqlite3``, made with SQLite's online
backup API, or ``database.dump``, pg_dump's custom format) and ``manifest.json``, which holds
the schema revision, the data file's SHA-256 and every table's row count and checksum, all
taken from the same snapshot the data file holds. A restore refuses a damaged data file,
refuses a database that already holds tables, and checks every count and checksum of the
restored database against the manifest.

The folder is written as ``<name>.partial`` and renamed when complete, so a backup that was
interrupted never looks like a usable one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, inspect, select, text
from sqlalchemy.engine import Connection, make_url

MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
POSTGRES_FILE = "database.dump"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class BackupError(Exception):
    """What an operator must fix before a backup or restore can go on."""


@dataclass(frozen=True)
class TableSum:
    rows: int
    checksum: str


@dataclass(frozen=True)
class Report:
    folder: Path
    backend: str
    revision: str | None
    tables: dict[str, TableSum]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


# --- checksums ------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    """One text per value whatever the driver hands back, so a table read on the server it
    was dumped from and on the one it was restored to gives the same checksum (an aware time
    is written in UTC: the two sessions' time zones may differ)."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, decimal.Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return repr(value)


def _table_sum(conn: Connection, table) -> TableSum:
    """Row count, and the sum of the rows' SHA-256 modulo 2**256: the sum does not depend on
    the order rows come back in, so no ORDER BY is needed (some columns, such as json, cannot
    be sorted) and a million-row table streams in constant memory."""
    total = 0
    rows = 0
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(select(table))
    for row in result:
        line = "\x1f".join(_canonical(v) for v in row).encode()
        total += int.from_bytes(hashlib.sha256(line).digest(), "big")
        rows += 1
    return TableSum(rows=rows, checksum=f"{total % (1 << 256):064x}")


def table_sums(conn: Connection) -> dict[str, TableSum]:
    """Every table of the database (the schema revision's own table included), by name."""
    meta = MetaData()
    meta.reflect(conn)
    return {name: _table_sum(conn, meta.tables[name]) for name in sorted(meta.tables)}


def _revision(sums_source: Connection) -> str | None:
    if not inspect(sums_source).has_table("alembic_version"):
        return None
    return sums_source.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- the folder -----------------------------------------------------------------------------


def _backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"unsupported database: {name}")
    return name


@contextlib.contextmanager
def _partial_folder(dest: Path) -> Iterator[Path]:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty folder")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, mode=0o700)  # patient data: readable by the operator only
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if dest.exists():
        dest.rmdir()
    partial.rename(dest)


def _write_manifest(folder: Path, backend: str, data_file: str, revision, sums) -> None:
    manifest = {
        "format": FORMAT_VERSION,
        "backend": backend,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema_revision": revision,
        "data_file": data_file,
        "data_sha256": _file_sha256(folder / data_file),
        "tables": {name: {"rows": s.rows, "checksum": s.checksum} for name, s in sums.items()},
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for written in (path, folder / data_file):
        with written.open("rb") as fh:
            os.fsync(fh.fileno())


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} is not a backup: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is not readable JSON: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(f"{path}: backup format {manifest.get('format')!r} is not supported")
    return manifest


# --- backup ---------------------------------------------------------------------------------


def backup(url: str, dest: Path) -> Report:
    backend = _backend(url)
    with _partial_folder(dest) as folder:
        if backend == "sqlite":
            revision, sums = _backup_sqlite(url, folder / SQLITE_FILE)
            _write_manifest(folder, backend, SQLITE_FILE, revision, sums)
        else:
            revision, sums = _backup_postgres(url, folder / POSTGRES_FILE)
            _write_manifest(folder, backend, POSTGRES_FILE, revision, sums)
    return Report(folder=dest, backend=backend, revision=revision, tables=sums)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _backup_sqlite(url: str, target: Path):
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"{source_path} does not exist")
    # The online backup API copies a consistent snapshot while the service keeps writing
    # (WAL mode: writers are not blocked), the WAL's committed pages included.
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        status = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if status != "ok":
            raise BackupError(f"the copy failed SQLite's integrity check: {status}")
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        copy.close()
        source.close()
    # The checksums come from the copy itself: they describe exactly what the backup holds.
    return _sums_of(f"sqlite+pysqlite:///{target}")


def _sums_of(url: str):
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return _revision(conn), table_sums(conn)
    finally:
        engine.dispose()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL pg_dump and pg_restore take, with the password passed in the environment
    (never on a command line, where ``ps`` shows it)."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    conninfo = parsed.set(drivername="postgresql", password=None)
    return conninfo.render_as_string(hide_password=False), env


def _run_pg_tool(argv: list[str], env: dict[str, str]) -> None:
    tool = argv[0]
    if shutil.which(tool) is None:
        raise BackupError(
            f"{tool} was not found: install the PostgreSQL client tools "
            "(the server's major version or newer)"
        )
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BackupError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _backup_postgres(url: str, target: Path):
    """pg_dump runs on a snapshot this process exported, and the checksums are read in the
    same snapshot, so they describe the dump exactly even while the service keeps writing."""
    conninfo, env = _libpq(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                _run_pg_tool(
                    [
                        "pg_dump",
                        "--format=custom",
                        f"--snapshot={snapshot}",
                        f"--file={target}",
                        f"--dbname={conninfo}",
                    ],
                    env,
                )
                return _revision(conn), table_sums(conn)
    finally:
        engine.dispose()


# --- restore --------------------------------------------------------------------------------


def restore(url: str, source: Path) -> Report:
    manifest = read_manifest(source)
    backend = _backend(url)
    if manifest["backend"] != backend:
        raise BackupError(
            f"this is a {manifest['backend']} backup; it restores into {manifest['backend']}, "
            f"not {backend}"
        )
    data_file = source / manifest["data_file"]
    if not data_file.is_file():
        raise BackupError(f"{data_file} is missing")
    if _file_sha256(data_file) != manifest["data_sha256"]:
        raise BackupError(f"{data_file} is damaged: its SHA-256 differs from the manifest's")
    if backend == "sqlite":
        _restore_sqlite(url, data_file)
    else:
        _restore_postgres(url, data_file)
    revision, sums = _sums_of(url)
    expected = {n: TableSum(t["rows"], t["checksum"]) for n, t in manifest["tables"].items()}
    if sums != expected:
        differ = sorted(n for n in expected.keys() | sums.keys() if sums.get(n) != expected.get(n))
        raise BackupError(
            "the restored database differs from the backup in: " + ", ".join(differ[:20])
        )
    return Report(folder=source, backend=backend, revision=revision, tables=sums)


def _refuse_unless_empty(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the target database already holds {len(tables)} table(s): "
            "restore only into an empty database"
        )


def _restore_sqlite(url: str, data_file: Path) -> None:
    target = _sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _refuse_unless_empty(url)
    source = sqlite3.connect(f"file:{data_file}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _restore_postgres(url: str, data_file: Path) -> None:
    _refuse_unless_empty(url)
    conninfo, env = _libpq(url)
    # One transaction: a restore that fails half-way leaves the database empty, not half full.
    # Owners and grants are the source server's; the target's connecting role owns everything.
    _run_pg_tool(
        [
            "pg_restore",
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={conninfo}",
            str(data_file),
        ],
        env,
    )
