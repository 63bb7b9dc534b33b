"""Registration throughput (a new patient, then a visit with its queue number, audit rows,
FHIR projection and HL7 outbox rows) with 2 gunicorn workers and 8 clients, beside Flask
hello-JSON on the same gunicorn settings, and the peak RSS of each web worker under load.

    .venv/bin/python bench/registration.py --database-url sqlite
    .venv/bin/python bench/registration.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

The database is a scratch one (``bench/.data/his_bench_registration.sqlite`` or
``his_bench_registration`` on the server), migrated and given the demo province, dropped at
the end unless ``--keep``; or, with ``--existing-database-url``, a bench database that has the
demo province already (a ``province.py`` province), used as it is and kept, the registered
patients added to it. Two servers run with the same gunicorn settings (2 workers,
gthread, 2 threads): the HIS (``his:create_app()``) and ``bench/hello_wsgi.py``. The same 8
client threads (keep-alive HTTP/1.1) drive each for ``--seconds``, in alternating rounds:

* ``registration``: ``POST /api/v1/patients`` (a new patient: Vietnamese name, birth date,
  a valid-format CCCD of that year and sex, a phone) then ``POST /api/v1/visits`` (a queue
  number in a room of the demo hospital), as the receptionist's bearer token; one
  registration = both requests, counted once;
* ``hello``: ``GET /hello``.

The ratio is registrations per second over hello requests per second (target ≥ 0.25). While
the HIS is loaded, each worker's resident memory (``VmRSS`` of the master's children) is
sampled every 0.2 s; the peak per worker is reported (target ≤ 200 MB). After an untimed
warm-up, ``--rounds`` rounds: the median round is reported with min, max and every round.
Results: ``bench/results/registration-<backend>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import itertools
import json
import os
import random
import threading
import time
from pathlib import Path

from common import (
    DATA_DIR,
    DB_PREFIX,
    RESULTS_DIR,
    Target,
    child_pids,
    log,
    resolve,
    run_clients,
    spread,
    write_json,
)
from fhir_api import free_port, gunicorn, percentile
from province import create_database, drop_database
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from his import migrate
from his.db import Database
from his.identifiers import cccd_province_codes
from his.models import Department, Facility, Patient, PatientIdentifier, Room
from his.models.patient import IdentifierType
from his.services.demo import DEMO_PASSWORD, load_demo

TARGET_RATIO = 0.25
TARGET_RSS_MB = 200
FAMILIES = ("Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Đặng", "Bùi", "Lâm", "Châu")
MIDDLES = ("Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh")
GIVENS = ("An", "Bình", "Cường", "Dung", "Hà", "Hùng", "Lan", "Mai", "Nam", "Thuý", "Trang")


class People:
    """Unique new patients, thread-safe: a CCCD never repeats, in a run or with the CCCDs
    already in the database (``taken``); the phone is the serial number."""

    def __init__(self, seed: int, taken: set[str] | None = None):
        self.rng = random.Random(seed)  # noqa: S311 (reproducible test data)
        self.lock = threading.Lock()
        self.serial = itertools.count(1)
        self.provinces = sorted(cccd_province_codes())
        self.taken = taken if taken is not None else set()

    def next(self) -> dict:
        with self.lock:
            n = next(self.serial)
            rng = self.rng
            year = rng.randint(1940, 2015)
            female = rng.random() < 0.5
            family, middle, given = rng.choice(FAMILIES), rng.choice(MIDDLES), rng.choice(GIVENS)
            province = rng.choice(self.provinces)
            # Century/sex digit: 0/1 born in the 1900s (male/female), 2/3 in the 2000s.
            century = (0 if year < 2000 else 2) + (1 if female else 0)
            head = f"{province}{century}{year % 100:02d}"
            while (cccd := f"{head}{rng.randrange(1_000_000):06d}") in self.taken:
                pass
            self.taken.add(cccd)
        return {
            "full_name": f"{family} {middle} {given}",
            "family_name": family,
            "middle_name": middle,
            "given_name": given,
            "sex": "female" if female else "male",
            "birth_date": f"{year}-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "cccd": cccd,
            "phone": f"09{n % 100_000_000:08d}",
            # Few names, many patients: the likely-duplicate warning would stop the load.
            "allow_possible_duplicate": True,
        }


def _token(port: int, username: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"username": username, "password": DEMO_PASSWORD})
    conn.request("POST", "/api/v1/auth/token", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    if response.status != 201:
        raise SystemExit(f"login failed: {response.status} {data}")
    return data["access_token"]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssWatch:
    """Samples every worker's RSS in the background; ``peaks`` per pid, in MB."""

    def __init__(self, master: int):
        self.master = master
        self.peaks: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for pid in child_pids(self.master):
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), _rss_mb(pid))
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.stop.set()
        self.thread.join()


def register_load(port, token, room_id, people, seconds, clients):
    """``clients`` threads register patients for ``seconds``: (latencies ms, wall s)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = latencies[n]
        while time.perf_counter() < stop and not errors:
            t0 = time.perf_counter()
            conn.request("POST", "/api/v1/patients", json.dumps(people.next()), headers)
            response = conn.getresponse()
            patient = json.loads(response.read())
            if response.status != 201:
                errors.append(f"patient {response.status}: {patient}")
                return
            visit = {"patient_id": patient["id"], "room_id": room_id}
            conn.request("POST", "/api/v1/visits", json.dumps(visit), headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != 201:
                errors.append(f"visit {response.status}: {body[:300]!r}")
                return
            mine.append((time.perf_counter() - t0) * 1000)
        conn.close()

    wall = run_clients(run, clients)
    if errors:
        raise SystemExit(f"registration failed: {errors[:2]}")
    return [ms for per in latencies for ms in per], wall


def hello_load(port, seconds, clients):
    from fhir_api import drive

    return drive(port, ["/hello"], {}, seconds, clients)


def _summary(latencies: list[float], wall: float) -> dict:
    return {
        "per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "n": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
    }


def existing_target(database_url: str) -> Target:
    """A bench database that already holds the demo province (``province.py`` made it): only
    one whose name starts with ``his_bench_`` (PostgreSQL) or a file (SQLite). Registrations are
    added to it; it is never dropped."""
    target = resolve(database_url, 0)
    named = make_url(database_url).database or ""
    if target.backend == "postgresql" and not named.startswith(DB_PREFIX):
        raise SystemExit(f"--existing-database-url: a database named {DB_PREFIX}…, not {named!r}")
    if target.backend == "sqlite" and not target.path.exists():
        raise SystemExit(f"--existing-database-url: {target.path} does not exist")
    return target


def run(args) -> dict:
    existing = bool(args.existing_database_url)
    if existing:
        target = existing_target(args.existing_database_url)
    elif args.database_url.startswith("sqlite"):
        target = resolve(f"sqlite:///{DATA_DIR / 'his_bench_registration.sqlite'}", 0)
    else:
        url = make_url(args.database_url).set(database="his_bench_registration")
        target = resolve(url.render_as_string(hide_password=False), 0)
    log(f"database: {target.url}" + (" (existing: kept, registrations added)" if existing else ""))
    if not existing:
        create_database(target)
        migrate.upgrade(target.url)
    db = Database.from_url(target.url)
    with db.session() as session:
        if not existing:
            load_demo(session)
        hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
        if hospital is None:
            raise SystemExit(f"{target.url}: no demo hospital 91001 (not a bench province?)")
        room_id = session.scalar(
            select(Room.id).join(Department).where(Department.facility_id == hospital.id).limit(1)
        )
        patients_before = session.scalar(select(func.count()).select_from(Patient))
        cccd = PatientIdentifier.type == IdentifierType.CCCD
        taken = set(session.scalars(select(PatientIdentifier.value).where(cccd)))
    db.engine.dispose()

    env = {
        "HIS_DATABASE_URL": target.url,
        "HIS_ENV": "development",
        "HIS_COOKIE_SECURE": "false",
        "HIS_LOG_LEVEL": "WARNING",
        "HIS_LOGIN_RATE_LIMIT": "1000 per minute",
    }
    app_port, hello_port = free_port(), free_port()
    app = gunicorn("his:create_app()", app_port, env, args.workers, args.threads)
    people = People(args.seed, taken)
    rounds: dict[str, list[dict]] = {"registration": [], "hello": []}
    peaks: dict[int, float] = {}
    round_peaks: list[float] = []  # the largest worker's peak in each round
    servers = [app]
    try:
        # The same environment: gunicorn.conf.py (read by both) checks the HIS settings.
        hello = gunicorn("hello_wsgi:app", hello_port, env, args.workers, args.threads)
        servers.append(hello)
        token = _token(app_port, "reception")
        log("warming up")
        register_load(app_port, token, room_id, people, args.warmup, args.clients)
        hello_load(hello_port, args.warmup, args.clients)
        for n in range(args.rounds):
            with RssWatch(app.pid) as watch:
                latencies, wall = register_load(
                    app_port, token, room_id, people, args.seconds, args.clients
                )
            for pid, mb in watch.peaks.items():
                peaks[pid] = max(peaks.get(pid, 0.0), mb)
            round_peaks.append(round(max(watch.peaks.values(), default=0.0), 1))
            rounds["registration"].append(_summary(latencies, wall))
            rounds["hello"].append(_summary(*hello_load(hello_port, args.seconds, args.clients)))
            log(f"round {n + 1}: {rounds['registration'][-1]} | hello {rounds['hello'][-1]}")
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=30)
        if not args.keep and not existing:
            drop_database(target)

    def per_round(kind: str, key: str) -> dict:
        return spread([r[key] for r in rounds[kind]], 1)

    registration_per_s, hello_per_s = (
        per_round("registration", "per_s"),
        per_round("hello", "per_s"),
    )
    registrations, hellos = registration_per_s["median"], hello_per_s["median"]
    ratio = round(registrations / hellos, 4) if hellos else 0.0
    worker_peak = round(max(peaks.values()), 1) if peaks else 0.0
    return {
        "backend": target.backend,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": {
            "existing": existing,
            "name": target.db_name or str(target.path),
            "patients_before": patients_before,
        },
        "method": {
            "workers": args.workers,
            "threads": args.threads,
            "clients": args.clients,
            "warmup_seconds": args.warmup,
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
        },
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "rounds": rounds,
        # median of the rounds, with min, max and every round (``runs``)
        "registration_per_s": registration_per_s,
        "registration_p95_ms": per_round("registration", "p95_ms"),
        "hello_per_s": hello_per_s,
        "ratio_by_round": [
            round(r["per_s"] / h["per_s"], 4) if h["per_s"] else None
            for r, h in zip(rounds["registration"], rounds["hello"], strict=True)
        ],
        "ratio": ratio,
        "ratio_target": TARGET_RATIO,
        "ratio_met": ratio >= TARGET_RATIO,
        "worker_rss_peak_mb": {str(pid): round(mb, 1) for pid, mb in sorted(peaks.items())},
        "worker_rss_max_mb": worker_peak,
        "worker_rss_peak_mb_by_round": spread(round_peaks, 1),
        "rss_target_mb": TARGET_RSS_MB,
        "rss_met": 0 < worker_peak <= TARGET_RSS_MB,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per server, untimed")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--existing-database-url",
        help="register into this bench database (his_bench_…, e.g. a province.py province) "
        "instead of a scratch one; it is neither migrated nor dropped, the registrations stay",
    )
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    result = run(args)
    path = (
        Path(args.output) if args.output else RESULTS_DIR / f"registration-{result['backend']}.json"
    )
    write_json(path, result)
    print(
        f"registration {result['registration_per_s']['median']}/s, hello "
        f"{result['hello_per_s']['median']}/s, ratio {result['ratio']} "
        f"(target ≥ {TARGET_RATIO}: {'met' if result['ratio_met'] else 'NOT met'}); "
        f"peak worker RSS {result['worker_rss_max_mb']} MB "
        f"(target ≤ {TARGET_RSS_MB}: {'met' if result['rss_met'] else 'NOT met'})"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
