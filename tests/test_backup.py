"""`his backup` and `his restore`, run the way operators run them, on both databases.

The restored database is compared with the original table by table and row by row here,
independently of the checksums the commands themselves record and verify.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import MetaData, create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from his.cli import main
from his.config import sqlite_url
from his.db import Database
from tests import databases, factories
from tests.encounters_data import clinic, examined
from tests.factories import PatientFactory


def _his(*args: str, url: str | None = None, monkeypatch=None):
    if url is not None:
        monkeypatch.setenv("HIS_DATABASE_URL", url)
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def empty_database(backend, tmp_path):
    """A database with no tables at all, as a fresh server's would be."""
    if backend == "sqlite":
        (tmp_path / "restored").mkdir()
        yield sqlite_url(tmp_path / "restored" / "his.sqlite3")
        return
    admin = databases.postgres_admin_url()
    name = f"his_restore_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    databases.drop_postgres(admin, url)


def _contents(url: str) -> dict[str, list[str]]:
    """Every table's rows as sorted text, read with nothing but SQLAlchemy's reflection."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn)
            return {
                name: sorted(repr(tuple(row)) for row in conn.execute(select(table)))
                for name, table in meta.tables.items()
            }
    finally:
        engine.dispose()


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(text(table)))
    finally:
        engine.dispose()


def _seed(url: str) -> str:
    """Rows of every kind of column the schema has (Vietnamese text, aware times, dates,
    decimals, JSON, enums) besides the reference data the migrations load; the demo province
    would do as well but costs ten times as long."""
    database = Database.from_url(url)
    try:
        with database.session() as session:
            factories.bind(session)
            place = clinic(session)
            examined(session, place)
            PatientFactory.create_batch(5)
            code = place.facility.code
    finally:
        database.engine.dispose()
    return code


def test_backup_restores_into_an_empty_database_row_for_row(
    cli_db, empty_database, tmp_path, monkeypatch
):
    facility_code = _seed(cli_db)
    peer = _his(
        "hl7",
        "peer",
        "add",
        "lis",
        "--facility",
        facility_code,
        "--identifier-map",
        "NNVNM=cccd,HC=bhyt",
    )
    assert peer.exit_code == 0, peer.output
    folder = tmp_path / "backups" / "2026-11-28"

    made = _his("backup", str(folder))
    assert made.exit_code == 0, made.output
    assert "backed up" in made.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["tables"]["patient"]["rows"] == _count(cli_db, "patient") > 0
    assert not folder.with_name("2026-11-28.partial").exists()

    restored = _his("restore", str(folder), url=empty_database, monkeypatch=monkeypatch)
    assert restored.exit_code == 0, restored.output
    assert "every count and checksum verified" in restored.output

    original, copy = _contents(cli_db), _contents(empty_database)
    assert set(copy) == set(original)
    assert {n: len(r) for n, r in copy.items()} == {n: len(r) for n, r in original.items()}
    assert copy == original

    # The restored database takes new rows: its id sequences came along with the data.
    created = _his(
        "user",
        "create",
        "--username",
        "after.restore",
        "--full-name",
        "Lê Thị Hồng",
        "--facility",
        facility_code,
        "--role",
        "receptionist",
        "--password",
        "a long enough passphrase",
    )
    assert created.exit_code == 0, created.output


def test_a_damaged_backup_is_refused_and_the_target_stays_empty(
    cli_db, empty_database, tmp_path, monkeypatch
):
    folder = tmp_path / "backup"
    assert _his("backup", str(folder)).exit_code == 0
    data = next(p for p in folder.iterdir() if p.name.startswith("database."))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))

    refused = _his("restore", str(folder), url=empty_database, monkeypatch=monkeypatch)
    assert refused.exit_code != 0
    assert "is damaged" in refused.output
    engine = create_engine(empty_database)
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    engine.dispose()


def test_restore_refuses_a_database_that_holds_data(cli_db, tmp_path, monkeypatch):
    folder = tmp_path / "backup"
    assert _his("backup", str(folder)).exit_code == 0
    before = _contents(cli_db)

    refused = _his("restore", str(folder))
    assert refused.exit_code != 0
    assert "restore only into an empty database" in refused.output
    assert _contents(cli_db) == before


def test_backup_refuses_a_folder_that_holds_files(cli_db, tmp_path):
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    refused = _his("backup", str(folder))
    assert refused.exit_code != 0
    assert "already exists" in refused.output
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_backup_taken_while_the_service_writes_is_one_snapshot(
    cli_db, empty_database, tmp_path, monkeypatch
):
    """Rows keep arriving while the backup runs; the manifest, counted in the backup's own
    snapshot, must match what the data file holds, which restore verifies."""
    engine = create_engine(cli_db)
    stop = threading.Event()
    written = 0

    def keep_writing() -> None:
        nonlocal written
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO counter (name, value) VALUES (:name, 1)"),
                    {"name": f"backup-test:{uuid.uuid4().hex}"},
                )
            written += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while written < 5:
            stop.wait(0.01)
        made = _his("backup", str(tmp_path / "backup"))
    finally:
        stop.set()
        writer.join()
        engine.dispose()
    assert made.exit_code == 0, made.output

    restored = _his(
        "restore", str(tmp_path / "backup"), url=empty_database, monkeypatch=monkeypatch
    )
    assert restored.exit_code == 0, restored.output
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert _count(empty_database, "counter") == manifest["tables"]["counter"]["rows"] >= 5


def test_a_backup_restores_only_into_its_own_kind_of_database(
    backend, cli_db, tmp_path, monkeypatch
):
    folder = tmp_path / "backup"
    assert _his("backup", str(folder)).exit_code == 0
    other = (
        "postgresql://nobody@127.0.0.1:1/none"
        if backend == "sqlite"
        else sqlite_url(Path(tmp_path) / "other.sqlite3")
    )
    refused = _his("restore", str(folder), url=other, monkeypatch=monkeypatch)
    assert refused.exit_code != 0
    assert f"this is a {backend} backup" in refused.output
