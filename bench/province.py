"""A synthetic province of N patients (default 1,000,000) with a year of their care,
generated from a seed and bulk-loaded into a fresh bench database.

    .venv/bin/python bench/province.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/province.py --database-url sqlite --patients 100000
    .venv/bin/python bench/province.py --database-url postgresql://... --drop   # remove it

The generator and the loader are ``his.synthetic`` (also behind ``his demo --size N``); this
script makes the throw-away database (``his_bench_<N>`` on the server given, or a file under
``bench/.data/``), migrates it, loads the demo, then the province, and records the
parameters and timings in ``bench/results/load-<backend>-<N>.json`` and in the table
``bench_province`` of the database itself, where the other bench scripts find them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import psycopg
from common import (
    DB_PREFIX,
    META_TABLE,
    RESULTS_DIR,
    Progress,
    Target,
    display_url,
    log,
    resolve,
    write_json,
)

from his import migrate
from his.db import Database
from his.services.demo import load_demo
from his.synthetic.care import VISITS_PER_PATIENT
from his.synthetic.load import load_province
from his.synthetic.people import DEFAULT_AS_OF, DEFAULT_PATIENTS, DEFAULT_SEED, VISITED_SHARE

# --- the bench database ----------------------------------------------------------------------


def create_database(target: Target) -> None:
    if target.backend == "sqlite":
        path = target.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert target.db_name and target.db_name.startswith(DB_PREFIX)
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target.db_name}"')


def drop_database(target: Target) -> None:
    if target.backend == "sqlite":
        assert target.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        return
    assert target.db_name and target.db_name.startswith(DB_PREFIX)
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')


def load(
    target: Target,
    patients: int,
    seed: int,
    as_of: dt.date,
    visited_share: float = VISITED_SHARE,
    visits_per_patient: float = VISITS_PER_PATIENT,
) -> dict:
    started = time.perf_counter()
    create_database(target)
    migrate.upgrade(target.url)
    db = Database.from_url(target.url)
    with db.session() as session:
        load_demo(session, today=as_of)
    prepared = round(time.perf_counter() - started, 2)
    progress = Progress(f"loading {target.backend}", patients)
    meta = load_province(
        db,
        patients=patients,
        seed=seed,
        as_of=as_of,
        visited_share=visited_share,
        visits_per_patient=visits_per_patient,
        progress=progress.update,
    )
    progress.done(patients)
    db.engine.dispose()
    meta["timings"] = {"create_migrate_demo_s": prepared, **meta["timings"]}
    meta["timings"]["total_s"] = round(time.perf_counter() - started, 2)
    if target.backend == "postgresql":
        with psycopg.connect(target.conninfo) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    else:
        assert target.path is not None
        size = target.path.stat().st_size
    return {
        "backend": target.backend,
        **meta,
        "database_bytes": size,
        "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def save_meta(target: Target, meta: dict) -> None:
    """The generation parameters and load timings, inside the bench database itself, so
    ``bench/search.py`` can report them beside the search figures."""
    text = json.dumps(meta)
    if target.backend == "postgresql":
        with psycopg.connect(target.conninfo) as conn:
            conn.execute(f"CREATE TABLE {META_TABLE} (meta text NOT NULL)")
            conn.execute(f"INSERT INTO {META_TABLE} (meta) VALUES (%s)", [text])  # noqa: S608
    else:
        conn = sqlite3.connect(target.path)
        with conn:
            conn.execute(f"CREATE TABLE {META_TABLE} (meta text NOT NULL)")
            conn.execute(f"INSERT INTO {META_TABLE} (meta) VALUES (?)", [text])  # noqa: S608
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        required=True,
        help="PostgreSQL server (a database his_bench_<N> is created on it) or `sqlite` "
        "(a file under bench/.data/) or sqlite:///path",
    )
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument(
        "--visited-share",
        type=float,
        default=VISITED_SHARE,
        help="share of patients with a visit in the last year (0: a freshly imported index)",
    )
    parser.add_argument(
        "--visits-per-patient",
        type=float,
        default=VISITS_PER_PATIENT,
        help="visits in the year, per patient on average",
    )
    parser.add_argument("--drop", action="store_true", help="drop the bench database and stop")
    args = parser.parse_args(argv)
    target = resolve(args.database_url, args.patients)
    if args.drop:
        drop_database(target)
        log(f"dropped {display_url(target)}")
        return
    log(f"creating {display_url(target)} with {args.patients:,} patients (seed {args.seed})")
    meta = load(
        target,
        args.patients,
        args.seed,
        args.as_of,
        args.visited_share,
        args.visits_per_patient,
    )
    save_meta(target, meta)
    out = RESULTS_DIR / f"load-{target.backend}-{args.patients}.json"
    write_json(out, meta)
    log(json.dumps(meta["timings"]))
    log(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    log(f"next: .venv/bin/python bench/search.py --database-url {display_url(target)}")


if __name__ == "__main__":
    main()
