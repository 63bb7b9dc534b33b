"""Bulk-loading the synthetic province into a migrated database that holds the demo.

PostgreSQL: ``COPY … FROM STDIN`` (psycopg 3) in rounds of ``BATCH`` patients with their
care, ``synchronous_commit = off`` for the session. Before the load the secondary indexes,
unique and foreign-key constraints of the loaded tables are dropped and afterwards created
again from their saved definitions (``pg_get_indexdef``/``pg_get_constraintdef``), so the
schema ends exactly as the migrations made it and every key is checked once, in bulk;
then sequences are moved and the tables vacuumed and analysed.

SQLite: ``executemany`` in one transaction per round, ``synchronous=OFF`` on the loading
connection only; secondary indexes and the FTS5 name triggers are dropped and created again
(the FTS index rebuilt once), foreign keys checked once at the end (``foreign_key_check``).

Counters (MRN, visit codes, queue and receipt numbers) are moved past what was loaded, so
the app goes on from there.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.db import Database
from his.models import Counter
from his.services import counters
from his.services.demo import count_demo_mrns
from his.services.patients import MRN_COUNTER
from his.synthetic.care import STATION_FORMULARY, VISITS_PER_PATIENT, CareBatch, CareGenerator
from his.synthetic.care import TABLES as CARE_TABLES
from his.synthetic.facilities import add_facilities
from his.synthetic.people import (
    COVERAGE_COLUMNS,
    IDENTIFIER_COLUMNS,
    PATIENT_COLUMNS,
    VISITED_SHARE,
    PeopleGenerator,
)

BATCH = 25_000  # patients (with their care) per COPY round / SQLite transaction
PEOPLE_TABLES = (
    ("patient", PATIENT_COLUMNS),
    ("patient_identifier", IDENTIFIER_COLUMNS),
    ("coverage", COVERAGE_COLUMNS),
)
TABLES = PEOPLE_TABLES + CARE_TABLES
LOADED = tuple(name for name, _ in TABLES)
FTS_TABLE = "patient_name_fts"  # migration 0009

Progress = Callable[[int], None]
# Set to the number of patients once a province is loaded: its visit codes and queue
# numbers count from zero per day, so a second load into the same database would collide.
LOADED_COUNTER = "synthetic:province"


class AlreadyLoaded(Exception):
    pass


def refuse_if_loaded(session: Session) -> None:
    loaded = session.scalar(select(Counter.value).where(Counter.name == LOADED_COUNTER))
    if loaded:
        raise AlreadyLoaded(
            f"this database already holds a synthetic province of {loaded} patients; "
            "load a bigger one into a fresh database"
        )


def _existing(db: Database) -> tuple[set[str], set[str], dict[str, int], int]:
    """Taken CCCD and BHYT numbers, next ids of the loaded tables, next MRN number."""
    with db.session(write=False) as session:
        conn = session.connection()

        def column(sql: str) -> set[str]:
            return set(conn.exec_driver_sql(sql).scalars())

        taken_cccd = column("SELECT value FROM patient_identifier WHERE type = 'cccd'")
        taken_insurance = column("SELECT insurance_number FROM coverage") | column(
            "SELECT value FROM patient_identifier WHERE type = 'bhyt'"
        )
        next_ids = {
            table: (conn.exec_driver_sql(f"SELECT max(id) FROM {table}").scalar() or 0) + 1  # noqa: S608
            for table in LOADED
        }
        next_mrn = count_demo_mrns(session) + 1
    return taken_cccd, taken_insurance, next_ids, next_mrn


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_schema(cur) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """The loaded tables' secondary indexes (name, definition), and their unique and
    foreign-key constraints (table, name, definition), unique ones first."""
    indexes = cur.execute(
        """
        SELECT x.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_class x ON x.oid = i.indexrelid
        WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY t.relname, x.relname
        """,
        [list(LOADED)],
    ).fetchall()
    constraints = cur.execute(
        """
        SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s)
          AND c.contype IN ('u', 'f')
        ORDER BY c.contype DESC, t.relname, c.conname
        """,
        [list(LOADED)],
    ).fetchall()
    return indexes, constraints


def _load_postgresql(db: Database, batches, lap) -> None:
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        cur = conn.cursor()
        indexes, constraints = _pg_schema(cur)
        for table, name, _definition in reversed(constraints):  # foreign keys first
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        conn.commit()
        lap("drop_indexes_s")
        for rows in batches():
            for table, columns in TABLES:
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows[table]:
                        copy.write_row(row)
            conn.commit()
        lap("load_rows_s")
        for _name, definition in indexes:
            cur.execute(definition)
            conn.commit()
        lap("create_indexes_s")
        for table, name, definition in constraints:
            cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            conn.commit()
        lap("constraints_s")
        for table in LOADED:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        cur.execute(f"VACUUM (ANALYZE) {', '.join(LOADED)}")
        conn.autocommit = False
        lap("vacuum_analyze_s")
    finally:
        raw.close()


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_text(value: Any) -> Any:
    """Dates and times as SQLAlchemy writes them on SQLite (naive UTC, microseconds)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _load_sqlite(db: Database, batches, lap) -> None:
    raw = db.engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.isolation_level = None
        conn.execute("PRAGMA synchronous=OFF")  # during the load only
        conn.execute("PRAGMA cache_size=-524288")  # 512 MB, for the index builds
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA foreign_keys=OFF")  # checked once, after the load
        marks = ",".join("?" * len(LOADED))
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608
            f"AND tbl_name IN ({marks}) ORDER BY tbl_name, name",
            LOADED,
        ).fetchall()
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? "
            "ORDER BY name",
            (f"{FTS_TABLE}%",),
        ).fetchall()
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        # The name's FTS5 index is filled once after the load, not row by row.
        for name, _sql in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        lap("drop_indexes_s")
        inserts = {
            table: f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(columns))})"
            for table, columns in TABLES
        }
        for rows in batches():
            conn.execute("BEGIN")
            for table, _columns in TABLES:
                conn.executemany(
                    inserts[table], ([_sqlite_text(v) for v in row] for row in rows[table])
                )
            conn.execute("COMMIT")
        lap("load_rows_s")
        for _name, sql in indexes:
            conn.execute(sql)
        if triggers:
            conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # noqa: S608
            for _name, sql in triggers:
                conn.execute(sql)
        lap("create_indexes_s")
        broken = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
        if broken:
            raise RuntimeError(f"foreign keys broken after the load: {broken}")
        conn.execute("PRAGMA foreign_keys=ON")
        lap("foreign_key_check_s")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        lap("analyze_s")
    finally:
        raw.close()


# --- the province ----------------------------------------------------------------------------


def _generate(
    rounds,
    people: PeopleGenerator,
    care: CareGenerator,
    first_id: int,
    patients: int,
    ids: dict[str, int],
    mrn_base: int,
) -> None:
    """The generating process: one message per round of ``BATCH`` patients with their care,
    then the counters' final values (or the error that stopped it)."""
    generate_s = 0.0
    try:
        done = 0
        while done < patients:
            n = min(BATCH, patients - done)
            started = time.perf_counter()
            batch = people.batch(first_id + done, n, ids, mrn_base + done)
            cared = CareBatch()
            rows = batch.patients
            for i, person in enumerate(batch.people):
                last = care.person(person, cared)
                if last is not None:
                    rows[i] = (*rows[i][:-1], last)  # the patient's last_visit_at
            out = {
                "patient": rows,
                "patient_identifier": batch.identifiers,
                "coverage": batch.coverages,
                **cared.rows,
            }
            generate_s += time.perf_counter() - started
            rounds.put({"rows": out, "patients": n})
            done += n
        rounds.put({"end": {"counters": care.counters(), "generate_s": round(generate_s, 2)}})
    except Exception as exc:  # the loading process reports it
        rounds.put({"error": repr(exc)})


def load_province(
    db: Database,
    *,
    patients: int,
    seed: int,
    as_of: dt.date,
    visited_share: float = VISITED_SHARE,
    visits_per_patient: float = VISITS_PER_PATIENT,
    progress: Progress | None = None,
) -> dict:
    """Adds the province's facilities and staff, ``patients`` patients and a year of their
    care (before ``as_of``) to ``db``, which must hold the demo (``load_demo``)."""
    timings: dict[str, float] = {}
    mark = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - mark[0], 2)
        mark[0] = now

    started = mark[0]
    with db.session() as session:
        refuse_if_loaded(session)
        plan = add_facilities(
            session,
            seed=seed,
            catalogs_from=as_of - dt.timedelta(days=366),
            station_drugs=STATION_FORMULARY,
        )
    lap("facilities_s")
    taken_cccd, taken_insurance, next_ids, mrn_base = _existing(db)
    people = PeopleGenerator(
        seed=seed,
        as_of=as_of,
        plan=plan,
        taken_cccd=taken_cccd,
        taken_insurance=taken_insurance,
    )
    with db.session(write=False) as session:
        care = CareGenerator(
            session,
            seed=seed,
            as_of=as_of,
            plan=plan,
            next_ids=next_ids,
            visits_per_patient=visits_per_patient,
            visited_share=visited_share,
        )
    ids = {"identifier": next_ids["patient_identifier"], "coverage": next_ids["coverage"]}
    counts = dict.fromkeys(LOADED, 0)
    db.engine.dispose()  # no pooled connection may be shared with the generating process
    # The rows are generated in a child process while this one writes the previous round:
    # generation and COPY each keep a core busy.
    context = multiprocessing.get_context("fork")
    rounds = context.Queue(maxsize=2)
    child = context.Process(
        target=_generate,
        args=(rounds, people, care, next_ids["patient"], patients, ids, mrn_base),
        daemon=True,
    )
    child.start()
    finished: dict = {}

    def batches():
        done = 0
        while True:
            message = rounds.get()
            if "error" in message:
                raise RuntimeError(f"generating the province failed: {message['error']}")
            if "end" in message:
                finished.update(message["end"])
                return
            for table, table_rows in message["rows"].items():
                counts[table] += len(table_rows)
            yield message["rows"]
            done += message["patients"]
            if progress is not None:
                progress(done)

    loader = _load_postgresql if db.engine.dialect.name == "postgresql" else _load_sqlite
    try:
        loader(db, batches, lap)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    db.engine.dispose()  # the loading connection's settings stay with it
    timings["generate_s"] = finished["generate_s"]
    with db.session() as session:
        # New registrations, visits and receipts continue after the province's numbers.
        counters.ensure_at_least(session, MRN_COUNTER, mrn_base + patients - 1)
        counters.ensure_all_at_least(session, finished["counters"])
        counters.ensure_at_least(session, LOADED_COUNTER, patients)
    lap("counters_s")
    timings["total_s"] = round(time.perf_counter() - started, 2)
    return {
        "patients": patients,
        "seed": seed,
        "visited_share": visited_share,
        "visits_per_patient": visits_per_patient,
        "as_of": as_of.isoformat(),
        "facilities": len(plan.places),
        "rows": counts,
        "timings": timings,
        "rows_per_s": round(sum(counts.values()) / max(timings["load_rows_s"], 1e-9)),
    }
