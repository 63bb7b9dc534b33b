"""ADT^A04 ingest over MLLP (parsed, stored, applied, acknowledged) beside an MLLP echo
server on the same machine in the same run.

    .venv/bin/python bench/hl7_ingest.py                       # SQLite (+ PostgreSQL if
                                                               # HIS_BENCH_POSTGRES_URL is set)
    .venv/bin/python bench/hl7_ingest.py --database-url sqlite \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --messages 1000

Two servers run in this process, on one asyncio loop, both built on
``his.hl7v2.listener.serve``:

* ``echo`` (the limit): answers every frame with a fixed minimal ACK whose MSA-2 is MSH-10
  taken by a plain bytes split. No parse, no database.
* ``ours``: ``his.hl7v2.server.Hl7Server`` on a scratch database (migrated, one facility,
  department, room and an ``Hl7Peer`` in mode apply): each message is parsed, stored and
  committed, applied (a new patient registered, a visit opened) and acknowledged AA, the
  ACK committed with its row. SQLite runs as the app configures it (WAL, synchronous=FULL);
  PostgreSQL with the server's defaults (synchronous_commit on).

The sender is a separate process (this file, ``client`` sub-command; standard library
only): plain asyncio streams, each connection sending one message and waiting for its ACK
before the next. A separate process so that the client's own CPU does not share the
server's interpreter lock; and raw streams rather than ``AsyncMllpClient`` because that
client's idle-connection check costs two extra loop turns per send, which would lower the
echo limit for a reason that is not the server's. The client times each send→ACK and the
lane's wall time once every connection is open; the ACKs are checked here afterwards
(``parse_ack``: MSA-1 must be AA and MSA-2 the message's MSH-10), so checking costs the
client nothing. Any other answer, or none, is a failure and the run is reported failed.

For 1 and then 8 connections, ``--runs`` times (3): echo, ours, ours with the peer in mode
store (parsed, stored, ACKed, not applied), echo again (the two echo runs bracket ours, so a
machine whose speed drifts shows it). A lane reports the median of its runs (with min, max and
every run). Every message of ``ours`` is a new patient (unique name + birth date,
CCCD, phone, LIS id) with a unique MSH-10. Afterwards a few hundred messages on one
connection with the DB thread's time split by phase (wall and CPU), and as many under
cProfile (the DB thread only). Also measured, before and after: the durable commits per
second this database does (one-row INSERT + COMMIT, raw driver), the floor any design that
commits once per message meets.

Results: ``bench/results/hl7-ingest-<backend>-<N>.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pickle
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

START, END = b"\x0b", b"\x1c\r"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SCRATCH = "hl7_ingest"  # the scratch database: his_bench_hl7_ingest / bench/.data/his_bench_…

# --- the sender (a subprocess; standard library only) -------------------------------------


async def _sender(host: str, port: int, messages: list[bytes], connections: int, warmup: int):
    """Warm-up messages on the first connection, untimed; then the rest spread round robin
    over ``connections``, each connection strictly send → ACK → next."""
    opened = [await asyncio.open_connection(host, port) for _ in range(connections)]
    acks: list[bytes | None] = [None] * len(messages)
    latency = [0.0] * len(messages)
    errors: list[str] = []

    async def run(conn: int, indexes: list[int]) -> None:
        reader, writer = opened[conn]
        for i in indexes:
            started = time.perf_counter()
            try:
                writer.write(START + messages[i] + END)
                await writer.drain()
                reply = await reader.readuntil(END)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                errors.append(f"connection {conn}: {exc!r}")
                return
            latency[i] = time.perf_counter() - started
            acks[i] = reply[reply.find(START) + 1 : -len(END)]

    await run(0, list(range(warmup)))
    measured = list(range(warmup, len(messages)))
    started = time.perf_counter()
    await asyncio.gather(*(run(c, measured[c::connections]) for c in range(connections)))
    wall = time.perf_counter() - started
    for _reader, writer in opened:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return {"wall": wall, "latency": latency, "acks": acks, "errors": errors}


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hl7_ingest.py client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True, help="pickled list of bytes")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    messages = pickle.loads(args.messages.read_bytes())  # noqa: S301 (our own temp file)
    result = asyncio.run(_sender("127.0.0.1", args.port, messages, args.connections, args.warmup))
    args.out.write_bytes(pickle.dumps(result))


# --- the messages -------------------------------------------------------------------------

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Phan", "Trương", "Đặng", "Bùi"]
MIDDLE_M = ["Văn", "Hữu", "Minh", "Quốc", "Đức"]
MIDDLE_F = ["Thị", "Ngọc", "Thanh", "Kim", "Mỹ"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hải", "Hùng", "Khôi", "Long", "Nam", "Phúc", "Tài"]
GIVEN_F = ["Anh", "Chi", "Dung", "Hà", "Hoa", "Lan", "Linh", "Mai", "Ngân", "Thảo", "Yến"]
BIRTH_FROM = dt.date(1940, 1, 1)
BIRTH_DAYS = 25_000  # up to 2008: adults, who need no guardian
ADDRESS = "Số 12 đường Trần Hưng Đạo^^^01^^VNM^H"


def a04(i: int, tag: str, provinces: list[str], department: str, room: str) -> tuple[str, bytes]:
    """Message ``i``: a new patient. Name + birth date are unique (no possible-duplicate
    refusal), and so are the CCCD (checked against the province table, century/sex digit
    and year), the phone and the LIS's own id."""
    day, family = i % BIRTH_DAYS, FAMILY[(i // BIRTH_DAYS) % len(FAMILY)]
    birth = BIRTH_FROM + dt.timedelta(days=day)
    female = day % 2 == 1
    middle = (MIDDLE_F if female else MIDDLE_M)[day % 5]
    given = (GIVEN_F if female else GIVEN_M)[(day // 5) % 11]
    century_sex = (0 if birth.year < 2000 else 2) + (1 if female else 0)
    cccd = f"{provinces[i % len(provinces)]}{century_sex}{birth.year % 100:02d}{i:06d}"
    control = f"{tag}{i:07d}"
    segments = [
        f"MSH|^~\\&|LIS|BV|HIS|HIS|20260301083015+0700||ADT^A04^ADT_A01|{control}|P|2.5"
        "|||||VNM|UNICODE UTF-8",
        "EVN|A04|20260301083000+0700",
        f"PID|1||LIS-{i}^^^LISBV^PI~{cccd}^^^BCA^NNVNM||{family}^{middle} {given}^^^^^L||"
        f"{birth:%Y%m%d}|{'F' if female else 'M'}|||{ADDRESS}||^PRN^CP^^84^^91{i:07d}",
        f"PV1|1|O|{department}^{room}^^BV",
    ]
    return control, ("\r".join(segments) + "\r").encode()


# --- the echo server ----------------------------------------------------------------------

ECHO_ACK = b"MSH|^~\\&|HIS|HIS|LIS|BV|20260301083016+0700||ACK^A04^ACK|E1|P|2.5\rMSA|AA|"


async def echo(payload: bytes, _conn) -> bytes:
    return ECHO_ACK + payload.split(b"\r", 1)[0].split(b"|", 10)[9] + b"\r"


# --- helpers ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def code_version() -> dict:
    """The checked-out commit, read from .git without running git."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.exists():
                return {"commit": path.read_text().strip()[:12]}
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return {"commit": line.split()[0][:12]}
            return {}
        return {"commit": head[:12]}
    except OSError:
        return {}


async def drive(port: int, messages: list[bytes], connections: int, warmup: int) -> dict:
    """Run the sender subprocess against ``port``; its result (wall, latency, acks)."""
    with tempfile.TemporaryDirectory(prefix="hl7-bench-") as tmp:
        given, out = Path(tmp) / "in.pickle", Path(tmp) / "out.pickle"
        given.write_bytes(pickle.dumps(messages))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "client",
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--warmup",
            str(warmup),
            "--messages",
            str(given),
            "--out",
            str(out),
        )
        if await process.wait() != 0 or not out.exists():
            return {"wall": 0.0, "latency": [], "acks": [None] * len(messages), "errors": ["died"]}
        return pickle.loads(out.read_bytes())  # noqa: S301 (our own temp file)


def check(controls: list[str], acks: list[bytes | None]) -> list[str]:
    """Every ACK must be AA for its own message; the problems found (empty: all fine)."""
    from his.hl7v2.ack import parse_ack
    from his.hl7v2.codec import Hl7Error

    problems = []
    for control, ack in zip(controls, acks, strict=True):
        if ack is None:
            problems.append(f"{control}: no ACK")
            continue
        try:
            info = parse_ack(ack)
        except Hl7Error as exc:
            problems.append(f"{control}: unreadable ACK ({exc.message})")
            continue
        if info.code != "AA" or info.control_id_acked != control:
            texts = "; ".join(f"{e.location} {e.text}" for e in info.errors)
            problems.append(f"{control}: {info.code} for {info.control_id_acked} {texts}")
    return problems


def lane_figures(result: dict, warmup: int) -> dict:
    ms = [s * 1000 for s in result["latency"][warmup:]]
    count = len(ms)
    return {
        "messages": count,
        "seconds": round(result["wall"], 6),
        "msg_per_s": round(count / result["wall"], 1) if result["wall"] else 0.0,
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "max_ms": round(max(ms), 3) if ms else 0.0,
    }


def combine_runs(runs: list[dict]) -> dict:
    """Several runs of one lane: the run whose ``ours`` rate is the median (its figures are
    the lane's, for the table), with the median rates of ours and of the echo, their ratio,
    and min, max and every run of each (``*_runs``); ``runs`` keeps every run whole."""
    from common import spread

    ordered = sorted(runs, key=lambda r: r["ours"]["msg_per_s"])
    lane = dict(ordered[(len(ordered) - 1) // 2])
    ours = spread([r["ours"]["msg_per_s"] for r in runs], 1)
    echo = spread([r["echo_msg_per_s"] for r in runs], 1)
    lane["ours_msg_per_s_runs"] = ours
    lane["echo_msg_per_s_runs"] = echo
    lane["ratio_ours_over_echo_runs"] = spread([r["ratio_ours_over_echo"] for r in runs], 4)
    if all("ours_store_only" in r for r in runs):
        lane["store_only_msg_per_s_runs"] = spread(
            [r["ours_store_only"]["msg_per_s"] for r in runs], 1
        )
    # the lane's figures: medians over the runs (the echo's from every run, not one)
    lane["echo_msg_per_s"] = echo["median"]
    lane["ratio_ours_over_echo"] = round(ours["median"] / echo["median"], 4)
    lane["runs"] = runs
    return lane


# --- the scratch database -----------------------------------------------------------------


def scratch_target(url: str, resolve):
    """The scratch database for ``url``: always ``his_bench_hl7_ingest`` on a PostgreSQL
    server, whatever database the URL names (so a province bench database is never the one
    dropped); on SQLite a new file, or an old one whose name starts with ``his_bench_``."""
    from common import DB_PREFIX
    from sqlalchemy.engine import make_url

    if url.startswith("postgresql"):
        url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    target = resolve(url, SCRATCH)
    path = target.path
    if target.backend == "sqlite" and path.exists() and not path.name.startswith(DB_PREFIX):
        raise SystemExit(f"{target.path} exists and is not a bench file: not touching it")
    return target


def create_database(target) -> None:
    import psycopg

    if target.backend == "sqlite":
        target.path.parent.mkdir(parents=True, exist_ok=True)
        drop_database(target)
        return
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target.db_name}"')


def drop_database(target) -> None:
    import psycopg
    from common import DB_PREFIX

    if target.backend == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        return
    assert target.db_name.startswith(DB_PREFIX)  # nothing else is ever dropped
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')


def prepare(target):
    """Migrate; add a facility, a department with a room and the sending LIS as a peer in
    mode apply. Returns (app, database, settings, department code, room code)."""
    from his import create_app
    from his.config import Settings
    from his.db import Database
    from his.migrate import upgrade
    from his.models import (
        CareLevel,
        Department,
        Facility,
        Hl7Peer,
        LegacyTier,
        PeerMode,
        Room,
    )

    upgrade(target.url)
    settings = Settings.from_env(
        {
            "HIS_ENV": "development",
            "HIS_DATABASE_URL": target.url,
            "HIS_SECRET_KEY": "bench-" + "x" * 40,
            "HIS_LOG_LEVEL": "WARNING",
        }
    )
    database = Database.from_url(target.url)
    app = create_app(settings, database=database)
    with database.session() as session:
        facility = Facility(
            code="91001",
            name="Bệnh viện Đa khoa tỉnh An Giang",
            care_level=CareLevel.BASIC,
            legacy_tier=LegacyTier.PROVINCIAL,
            province_code="91",
            commune_code="30742",
        )
        department = Department(facility=facility, code="K01", name="Khoa Khám bệnh")
        department.rooms.append(Room(code="P101", name="Phòng khám Nội 1"))
        session.add_all([facility, department])
        session.flush()
        session.add(
            Hl7Peer(
                name="lis",
                facility_id=facility.id,
                sending_application="LIS",
                sending_facility="BV",
                version="2.5.1",
                events="",
                mode=PeerMode.APPLY,
            )
        )
    return app, database, settings, "K01", "P101"


def durability(target, database) -> dict:
    """What a commit promises on this database, as the app's engine has it set."""
    with database.engine.connect() as conn:
        if target.backend == "sqlite":
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return {"journal_mode": mode, "synchronous": names.get(sync, sync)}
        return {
            name: conn.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "server_version")
        }


def commit_floor(target, seconds: float) -> dict:
    """Durable one-row INSERT + COMMIT per second through the raw driver, with the app's
    durability settings: what a design that commits once per message cannot beat."""
    import psycopg

    done, started = 0, time.perf_counter()
    if target.backend == "sqlite":
        conn = sqlite3.connect(target.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE bench_commit_floor (id INTEGER PRIMARY KEY, v TEXT)")
        while time.perf_counter() - started < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_commit_floor (v) VALUES ('x')")
            conn.execute("COMMIT")
            done += 1
        wall = time.perf_counter() - started
        conn.execute("DROP TABLE bench_commit_floor")
        conn.close()
    else:
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_commit_floor (id serial PRIMARY KEY, v text)")
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                conn.execute("INSERT INTO bench_commit_floor (v) VALUES ('x')")
                done += 1
            wall = time.perf_counter() - started
            conn.execute("DROP TABLE bench_commit_floor")
    return {"commits": done, "commits_per_s": round(done / wall, 1)}


def set_peer_mode(database, mode) -> None:
    from sqlalchemy import update

    from his.models import Hl7Peer

    with database.session() as session:
        session.execute(update(Hl7Peer).where(Hl7Peer.name == "lis").values(mode=mode))


class Counters:
    """Statements, commits and commits that wrote, on the app's engine (a few µs each)."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements = self.commits = self.write_commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def reset(self) -> None:
        self.statements = self.commits = self.write_commits = 0

    def snapshot(self) -> dict:
        return {
            "statements": self.statements,
            "commits": self.commits,
            "write_commits": self.write_commits,
        }

    def _statement(self, conn, _cursor, statement, *_args) -> None:
        self.statements += 1
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            conn.info["bench_dirty"] = True

    def _commit(self, conn) -> None:
        self.commits += 1
        if conn.info.pop("bench_dirty", False):
            self.write_commits += 1

    def _rollback(self, conn) -> None:
        conn.info.pop("bench_dirty", None)


# --- where the DB thread's time goes -------------------------------------------------------


class Phases:
    """Wall time of the receiver's steps on the DB thread, by wrapping the methods of this
    one ``Receiver`` instance (the class and his/ are untouched), and of every session
    commit (flush + COMMIT) charged to the step it ran in."""

    STEPS = ("handle", "_receive", "apply_pending", "_apply", "_ack")

    def __init__(self, receiver, session_factory):
        from sqlalchemy import event

        self.receiver, self.session_factory = receiver, session_factory
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # this thread's CPU time, same keys
        self.calls: dict[str, int] = {}
        self.stack: list[str] = []
        self._commit_started = 0.0
        self._event = event
        for name in self.STEPS:
            setattr(receiver, name, self._wrap(name, getattr(receiver, name)))
        event.listen(session_factory, "before_commit", self._before_commit)
        event.listen(session_factory, "after_commit", self._after_commit)

    def _wrap(self, name, method):
        def timed(*args, **kwargs):
            key = name if name != "apply_pending" or kwargs.get("before_id") else "apply_loop"
            self.stack.append(key)
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                self._add(key, time.perf_counter() - started, time.thread_time() - cpu)
                self.stack.pop()

        return timed

    def _add(self, key: str, seconds: float, cpu: float | None = None) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1
        if cpu is not None:
            self.cpu[key] = self.cpu.get(key, 0.0) + cpu

    def _before_commit(self, _session) -> None:
        self._commit_started = time.perf_counter()

    def _after_commit(self, _session) -> None:
        where = next((s for s in reversed(self.stack) if s not in ("_ack", "_apply")), "other")
        self._add(f"commit in {where}", time.perf_counter() - self._commit_started)

    def remove(self) -> None:
        for name in self.STEPS:
            delattr(self.receiver, name)
        self._event.remove(self.session_factory, "before_commit", self._before_commit)
        self._event.remove(self.session_factory, "after_commit", self._after_commit)

    def report(self, messages: int) -> dict:
        """Milliseconds per message for each step; ``receive: parse ...`` is what ``handle``
        spends outside the wrapped steps (parsing, encoding the ACK)."""
        s = self.seconds
        per = {k: round(1000 * v / messages, 3) for k, v in sorted(s.items())}
        outside = s.get("handle", 0) - sum(s.get(k, 0) for k in ("_receive", "apply_pending"))
        per["receive: parse, encode the ACK (handle minus the steps)"] = round(
            1000 * outside / messages, 3
        )
        cpu = {k: round(1000 * v / messages, 3) for k, v in sorted(self.cpu.items())}
        return {
            "ms_per_message": per,
            "cpu_ms_per_message": cpu,
            "calls": dict(sorted(self.calls.items())),
        }


class ThreadProfile:
    """cProfile of the DB thread only: enabled around each ``Receiver.handle`` call."""

    # Share of the DB thread's profiled time (cumulative: nested entries overlap).
    GROUPS = {  # noqa: RUF012
        "one transaction: store, apply, ACK, commit (Receiver._receive)": (
            "his/hl7v2/inbound.py",
            "(_receive)",
        ),
        "a repeat? (Receiver._earlier)": ("his/hl7v2/inbound.py", "(_earlier)"),
        "apply in a savepoint (Receiver._apply)": ("his/hl7v2/inbound.py", "(_apply)"),
        "- register_patient": ("his/services/patients.py", "(register_patient)"),
        "- open_visit": ("his/services/visits.py", "(open_visit)"),
        "- FHIR projection on commit (projection.sync)": ("his/fhirapi/projection.py", "(sync)"),
        "- outbox hook on commit": ("his/hl7v2/outbox.py", "(_write_before_commit)"),
        "- counters (MRN, queue number)": ("his/services/counters.py", "(next_value)"),
        "peer look-ups (Receiver._peer)": ("his/hl7v2/inbound.py", "(_peer)"),
        "earlier messages pending? (apply_pending)": ("his/hl7v2/inbound.py", "(apply_pending)"),
        "parse (codec.parse)": ("his/hl7v2/codec.py", "(parse)"),
        "build the ACK (build_ack)": ("his/hl7v2/ack.py", "(build_ack)"),
        "sqlite3 COMMIT (fsync)": ("~", "(<method 'commit' of 'sqlite3.Connection' objects>)"),
        "sqlite3 execute": ("~", "(<method 'execute' of 'sqlite3.Cursor' objects>)"),
        "psycopg waiting for the server": ("psycopg/connection.py", "(wait)"),
        "psycopg commit": ("psycopg/connection.py", "(commit)"),
    }

    def __init__(self, receiver):
        self.receiver = receiver
        self.profile = cProfile.Profile()
        method = receiver.handle

        def profiled(*args, **kwargs):
            self.profile.enable()
            try:
                return method(*args, **kwargs)
            finally:
                self.profile.disable()

        receiver.handle = profiled

    def remove(self) -> None:
        del self.receiver.handle

    def report(self, top: int = 30) -> dict:
        stats = pstats.Stats(self.profile, stream=io.StringIO())
        total = stats.total_tt  # type: ignore[attr-defined]
        rows = []
        for (path, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            where = path.replace(str(ROOT) + "/", "")
            with contextlib.suppress(ValueError):
                where = "…/" + where[where.index("site-packages/") + 14 :]
            rows.append(
                {
                    "function": f"{where}:{line}({name})",
                    "calls": calls,
                    "tottime_s": round(tottime, 4),
                    "cumtime_s": round(cumtime, 4),
                }
            )
        for row in rows:
            row["share_of_total"] = round(row["cumtime_s"] / total, 3) if total else 0.0
        by_cum = sorted(rows, key=lambda r: -r["cumtime_s"])
        groups = {}
        for label, (where, name) in self.GROUPS.items():
            found = [r for r in rows if where in r["function"] and r["function"].endswith(name)]
            if found:
                cum = max(r["cumtime_s"] for r in found)
                groups[label] = {"share": round(cum / total, 3) if total else 0.0}
        ours = [r for r in by_cum if r["function"].startswith("his/")][: 3 * top]
        driver = [r for r in by_cum if "sqlite3" in r["function"] or "psycopg/" in r["function"]]
        return {
            "total_s": round(total, 3),
            "groups": groups,
            "his_by_cumtime": ours,
            "driver_by_cumtime": driver[:10],
            "by_cumtime": by_cum[:top],
            "by_tottime": sorted(rows, key=lambda r: -r["tottime_s"])[:top],
        }


# --- one backend --------------------------------------------------------------------------


async def run_backend(target, args) -> dict:
    from common import log
    from sqlalchemy import func, select

    from his.hl7v2.listener import serve
    from his.hl7v2.server import Hl7Server
    from his.identifiers import cccd_province_codes
    from his.models import Hl7Inbound, InboundStatus, Patient, PeerMode, Visit

    create_database(target)
    app, database, settings, department, room = prepare(target)
    floor = commit_floor(target, args.floor_seconds)
    log(f"{target.backend}: durable one-row commits {floor['commits_per_s']:,.0f}/s")
    provinces = sorted(cccd_province_codes())
    tag = "B" + dt.datetime.now(dt.UTC).strftime("%H%M%S")
    next_index = 0

    def batch(count: int) -> tuple[list[str], list[bytes]]:
        nonlocal next_index
        made = [
            a04(i, tag, provinces, department, room) for i in range(next_index, next_index + count)
        ]
        next_index += count
        return [c for c, _ in made], [m for _, m in made]

    server = Hl7Server(app, database, settings)
    counters = Counters(database.engine)
    echo_listener = await serve(echo, "127.0.0.1", 0)
    ours_listener = await server.start("127.0.0.1", 0)
    lanes: dict[str, dict] = {}
    failures: dict[str, list[str]] = {}
    applied_expected = stored_expected = 0
    store_controls: list[str] = []
    store_messages: list[bytes] = []
    try:
        for connections in args.connections:
            lane_runs = []
            for run_no in range(args.runs):
                controls, messages = batch(args.warmup + args.messages)
                runs = {}
                for label, port in (
                    ("echo_before", echo_listener.port),
                    ("ours", ours_listener.port),
                    ("ours_store_only", ours_listener.port),
                    ("echo_after", echo_listener.port),
                ):
                    if label == "ours_store_only":
                        if not args.store_only:
                            continue
                        # The same path with the peer in mode store: parsed, stored, ACKed, not
                        # applied. New MSH-10s, or they would be answered as repeats.
                        store_controls, store_messages = batch(args.warmup + args.messages)
                        set_peer_mode(database, PeerMode.STORE)
                    counters.reset()
                    load = os.getloadavg()[0]
                    sent = store_messages if label == "ours_store_only" else messages
                    result = await drive(port, sent, connections, args.warmup)
                    figures = lane_figures(result, args.warmup)
                    figures["loadavg_1m_before"] = round(load, 2)
                    if label == "ours_store_only":
                        set_peer_mode(database, PeerMode.APPLY)
                        stored_expected += len(sent)
                    if label.startswith("ours"):
                        applied_expected += len(sent) if label == "ours" else 0
                        seen = counters.snapshot()
                        # warm-up messages included: the counters run for the whole drive
                        figures["per_message"] = {
                            k: round(v / len(sent), 2) for k, v in seen.items()
                        }
                    with app.app_context():
                        checked = store_controls if label == "ours_store_only" else controls
                        problems = result["errors"] + check(checked, result["acks"])
                    figures["failures"] = len(problems)
                    if problems:
                        failures[f"{connections}:{run_no + 1}:{label}"] = problems[:5]
                    runs[label] = figures
                    log(
                        f"{target.backend} {connections} conn, run {run_no + 1}/{args.runs} "
                        f"{label}: {figures['msg_per_s']:,.0f} msg/s, p50 {figures['p50_ms']} ms, "
                        f"p95 {figures['p95_ms']} ms, failures {len(problems)}"
                    )
                before, after = runs["echo_before"], runs["echo_after"]
                echo_rate = (before["messages"] + after["messages"]) / (
                    before["seconds"] + after["seconds"]
                )
                runs["echo_msg_per_s"] = round(echo_rate, 1)
                runs["ratio_ours_over_echo"] = round(runs["ours"]["msg_per_s"] / echo_rate, 4)
                if "ours_store_only" in runs:
                    runs["ratio_store_only_over_echo"] = round(
                        runs["ours_store_only"]["msg_per_s"] / echo_rate, 4
                    )
                runs["p50_ratio_ours_over_echo"] = round(
                    runs["ours"]["p50_ms"] / ((before["p50_ms"] + after["p50_ms"]) / 2), 1
                )
                lane_runs.append(runs)
            lanes[str(connections)] = combine_runs(lane_runs)

        # Where the DB thread's time goes: one connection, phases, then cProfile.
        profile: dict = {}
        if args.profile_messages:
            controls, messages = batch(args.profile_messages)
            phases = Phases(server.receiver, database.session_factory)
            result = await drive(ours_listener.port, messages, 1, 0)
            phases.remove()
            applied_expected += len(messages)
            profile["phases"] = phases.report(len(messages))
            profile["phases"]["client_p50_ms"] = round(
                percentile([s * 1000 for s in result["latency"]], 50), 3
            )
            with app.app_context():
                problems = result["errors"] + check(controls, result["acks"])
            controls, messages = batch(args.profile_messages)
            profiler = ThreadProfile(server.receiver)
            result2 = await drive(ours_listener.port, messages, 1, 0)
            profiler.remove()
            applied_expected += len(messages)
            profile["cprofile"] = profiler.report()
            profile["cprofile"]["messages"] = len(messages)
            with app.app_context():
                problems += result2["errors"] + check(controls, result2["acks"])
            if problems:
                failures["profile"] = problems[:5]
    finally:
        await echo_listener.close()
        await server.stop(ours_listener)

    with database.session(write=False) as session:
        db = {
            "patients": session.scalar(select(func.count()).select_from(Patient)),
            "visits": session.scalar(select(func.count()).select_from(Visit)),
            "inbound_applied": session.scalar(
                select(func.count())
                .select_from(Hl7Inbound)
                .where(Hl7Inbound.status == InboundStatus.APPLIED)
            ),
            "inbound_stored_only": session.scalar(
                select(func.count())
                .select_from(Hl7Inbound)
                .where(Hl7Inbound.status == InboundStatus.STORED)
            ),
            "expected_applied": applied_expected,
            "expected_stored_only": stored_expected,
        }
    if (
        not db["patients"] == db["visits"] == db["inbound_applied"] == applied_expected
        or db["inbound_stored_only"] != stored_expected
    ):
        failures["database"] = [f"rows after the run: {db}"]
    settings_seen = durability(target, database)
    floor_after = commit_floor(target, args.floor_seconds)
    log(f"{target.backend}: durable one-row commits after: {floor_after['commits_per_s']:,.0f}/s")
    database.engine.dispose()
    if not args.keep:
        drop_database(target)
    return {
        "backend": target.backend,
        "durability": settings_seen,
        "commit_floor": {"before": floor, "after": floor_after},
        "messages_per_lane": args.messages,
        "runs_per_lane": args.runs,
        "warmup": args.warmup,
        "lanes": lanes,
        "database_after": db,
        "profile": profile,
        "failures": failures,
        "status": "failed" if failures else "ok",
    }


# --- main ---------------------------------------------------------------------------------


def table(report: dict) -> str:
    lines = [
        "| backend | conns | echo msg/s (before / after) | ours msg/s | **ours/echo** "
        "| echo p50 / p95 ms | ours p50 / p95 ms | SQL, commits (writing) per msg "
        "| store-only msg/s | store-only/echo | failures |",
        "|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    for result in report["backends"]:
        for conns, lane in result["lanes"].items():
            e1, e2, o = lane["echo_before"], lane["echo_after"], lane["ours"]
            st = lane.get("ours_store_only")
            per = o["per_message"]
            failed = e1["failures"] + o["failures"] + e2["failures"] + (st or {}).get("failures", 0)
            lines.append(
                f"| {result['backend']} | {conns} | {lane['echo_msg_per_s']:,.0f} "
                f"({e1['msg_per_s']:,.0f} / {e2['msg_per_s']:,.0f}) | {o['msg_per_s']:,.0f} "
                f"| **{lane['ratio_ours_over_echo']:.4f}** "
                f"| {(e1['p50_ms'] + e2['p50_ms']) / 2:.2f} / "
                f"{(e1['p95_ms'] + e2['p95_ms']) / 2:.2f} "
                f"| {o['p50_ms']:.1f} / {o['p95_ms']:.1f} "
                f"| {per['statements']:.0f}, {per['commits']:.0f} ({per['write_commits']:.0f}) "
                + (
                    f"| {st['msg_per_s']:,.0f} | {lane['ratio_store_only_over_echo']:.3f} "
                    if st
                    else "| – | – "
                )
                + f"| {failed} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        client_main(argv[1:])
        return
    from common import RESULTS_DIR, log, resolve, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        action="append",
        help="`sqlite` (bench/.data/his_bench_hl7_ingest.sqlite) or a PostgreSQL server (the "
        "scratch database his_bench_hl7_ingest is created there and dropped); repeatable. "
        "Default: sqlite, plus $HIS_BENCH_POSTGRES_URL when set",
    )
    parser.add_argument("--messages", type=int, default=1000, help="measured, per lane")
    parser.add_argument("--warmup", type=int, default=20, help="untimed, before each lane")
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs per lane (the median run is reported)"
    )
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--profile-messages", type=int, default=200, help="0: no profile")
    parser.add_argument(
        "--no-store-only",
        dest="store_only",
        action="store_false",
        help="skip the lane with the peer in mode store (parsed, stored, ACKed, not applied)",
    )
    parser.add_argument("--floor-seconds", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    urls = args.database_url or ["sqlite"] + (
        [os.environ["HIS_BENCH_POSTGRES_URL"]] if os.environ.get("HIS_BENCH_POSTGRES_URL") else []
    )
    targets = [scratch_target(url, resolve) for url in urls]

    load_before = os.getloadavg()
    results = []
    for target in targets:
        log(f"--- {target.backend}")
        results.append(asyncio.run(run_backend(target, args)))
    report = {
        "benchmark": "hl7-ingest",
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "client": "subprocess, asyncio streams, send → wait ACK per connection",
        "backends": results,
    }
    for result in results:
        out = RESULTS_DIR / f"hl7-ingest-{result['backend']}-{args.messages}.json"
        write_json(out, report | {"backends": [result]})
        log(f"written to {out}")
    print()
    print(table(report))
    for result in results:
        floor = result["commit_floor"]
        print(
            f"\n{result['backend']}: raw durable one-row commits/s "
            f"{floor['before']['commits_per_s']:,.0f} before, "
            f"{floor['after']['commits_per_s']:,.0f} after ({json.dumps(result['durability'])})"
        )
        phases = result["profile"].get("phases")
        if phases:
            print(f"\n{result['backend']}: DB thread, ms per message (1 connection)")
            for step, ms in phases["ms_per_message"].items():
                cpu = phases["cpu_ms_per_message"].get(step)
                print(f"  {step}: {ms}" + (f" (CPU {cpu})" if cpu is not None else ""))
        groups = result["profile"].get("cprofile", {}).get("groups")
        if groups:
            print(f"\n{result['backend']}: DB thread under cProfile, share of its time")
            for label, row in groups.items():
                print(f"  {row['share']:6.1%}  {label}")
        if result["failures"]:
            print(f"\n{result['backend']}: FAILED {json.dumps(result['failures'], indent=1)}")
    if any(r["failures"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
