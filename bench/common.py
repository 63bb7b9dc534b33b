"""What the bench scripts share: where the bench database lives, and small helpers.

A bench database is always a throw-away one the generator created: on PostgreSQL a
database named ``his_bench_<patients>`` on the server given, on SQLite a file under
``bench/.data/``. Nothing here ever touches a database with another name.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
RESULTS_DIR = BENCH_DIR / "results"
DB_PREFIX = "his_bench_"
META_TABLE = "bench_province"  # one row: how the province was generated and loaded


@dataclass(frozen=True)
class Target:
    """The bench database: its SQLAlchemy URL and what the raw drivers need."""

    backend: str  # "postgresql" | "sqlite"
    url: str  # SQLAlchemy URL, as the app would be configured
    server_url: str | None = None  # PostgreSQL: the maintenance database to CREATE/DROP from
    db_name: str | None = None  # PostgreSQL
    path: Path | None = None  # SQLite

    @property
    def conninfo(self) -> str:
        """libpq URL of the bench database (PostgreSQL)."""
        return _libpq(make_url(self.url))

    @property
    def server_conninfo(self) -> str:
        assert self.server_url is not None
        return _libpq(make_url(self.server_url))


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def resolve(database_url: str, patients: int) -> Target:
    """``postgresql://user@host:port/anydb`` → the database ``his_bench_<patients>`` on that
    server (or the database named, when its name already starts with ``his_bench_``);
    ``sqlite`` or ``sqlite://`` → ``bench/.data/his_bench_<patients>.sqlite``;
    ``sqlite:///path`` → that file."""
    if database_url in ("sqlite", "sqlite://", "sqlite:///"):
        database_url = f"sqlite:///{DATA_DIR / f'{DB_PREFIX}{patients}.sqlite'}"
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise SystemExit("SQLite needs a file: give sqlite:///path or just `sqlite`")
        path = Path(url.database).resolve()
        return Target("sqlite", f"sqlite:///{path}", path=path)
    if url.get_backend_name() != "postgresql":
        raise SystemExit(f"unsupported database: {url.get_backend_name()}")
    name = url.database if (url.database or "").startswith(DB_PREFIX) else f"{DB_PREFIX}{patients}"
    server = url.set(drivername="postgresql+psycopg", database=url.database or "postgres")
    if server.database == name:
        server = server.set(database="postgres")
    bench = url.set(drivername="postgresql+psycopg", database=name)
    return Target(
        "postgresql",
        bench.render_as_string(hide_password=False),
        server_url=server.render_as_string(hide_password=False),
        db_name=name,
    )


def display_url(target: Target) -> str:
    if target.backend == "sqlite":
        try:
            return f"sqlite:///{target.path.relative_to(Path.cwd())}"
        except ValueError:
            return target.url
    return make_url(target.url).set(drivername="postgresql").render_as_string()


class Progress:
    """One line on stderr, rewritten in place (no tqdm here)."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, total
        self.start = time.perf_counter()
        self.last = 0.0
        self.last_done = -1
        self.tty = sys.stderr.isatty()

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last, self.last_done = now, done
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else math.inf
        line = (
            f"{self.label}: {done:,}/{self.total:,} ({100 * done / max(self.total, 1):.0f}%)"
            f"  {rate:,.0f}/s  elapsed {elapsed:.0f}s  eta {eta:.0f}s"
        )
        sys.stderr.write(("\r" + line + "   ") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self, done: int) -> None:
        if done != self.last_done:
            self.update(done, force=True)
        if self.tty:
            sys.stderr.write("\n")


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def spread(values: list[float], digits: int = 3) -> dict:
    """Several runs of one figure: the median (what is reported), the smallest and largest,
    and every run in order (``runs``)."""
    import statistics

    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def province_meta(url: str) -> dict | None:
    """The ``bench_province`` row of the PostgreSQL bench database at ``url`` (SQLAlchemy or
    libpq URL), or None when there is no such database or table."""
    import psycopg

    libpq = _libpq(make_url(url))
    try:
        with psycopg.connect(libpq, connect_timeout=10) as conn:
            row = conn.execute(f"SELECT meta FROM {META_TABLE}").fetchone()  # noqa: S608
    except psycopg.Error:
        return None
    return json.loads(row[0]) if row and row[0] else None


def reusable_province(meta: dict | None, patients: int) -> bool:
    """A province ``province.py`` loaded with ``patients`` patients and their year of care
    (visits), so a bench run may use it again instead of loading it anew."""
    return bool(meta) and meta.get("patients") == patients and "visit" in meta.get("rows", {})


def run_clients(run: Callable[[int], None], clients: int) -> float:
    """``run(n)`` in ``clients`` threads at once (the load generator's clients); returns the
    wall-clock seconds until the last one finished."""
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (a gunicorn master's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return sorted(found)
