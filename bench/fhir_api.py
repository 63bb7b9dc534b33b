"""FHIR read and search throughput and latency with 2 gunicorn workers, beside the
machine's limit measured in the same run.

    DB=postgresql://postgres@127.0.0.1:5432/his_bench_fhir_api_20000
    .venv/bin/python bench/province.py --database-url $DB --patients 20000
    .venv/bin/python bench/fhir_api.py --database-url $DB

The province's patients are bulk-loaded (COPY), so the script first projects them
(the Patient mapper's JSON, written a batch at a time) unless they already are. Then it
starts two servers with the same gunicorn settings (2 workers, gthread):

* ``app``: the HIS (``his:create_app()``) serving ``/fhir`` with a staff token: auth,
  scope check, audit row, stored JSON spliced into the Bundle;
* ``raw``: ``bench/fhir_raw_wsgi.py``, a bare WSGI function returning the same stored
  bytes with raw SQL (by key for a read; the same sub-selects for a search), no auth.

For each kind (read by id, search by identifier, by family + given, by birth date) both
are driven by the same client threads (keep-alive HTTP/1.1) for the same time, in
alternating rounds; the script prints requests per second, p50 and p95 for each and the
ratios app/raw. Results: ``bench/results/fhir-api-<backend>-<N>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from common import RESULTS_DIR, log, resolve, write_json
from sqlalchemy import func, select

from his.db import Database
from his.services.demo import DEMO_PASSWORD

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
KINDS = ("read", "search_identifier", "search_name", "search_birthdate")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the projection ------------------------------------------------------------------


def project(url: str, batch: int = 1000) -> int:
    """Project every Patient not projected yet, in bulk; returns how many were written.

    The same JSON as ``projection.store`` writes (the Patient mapper, version 1, its
    search values), but a batch of patients per statement: the province is bulk-loaded,
    and one ``store`` per patient would take longer than the benchmark itself. Names of
    administrative units are looked up once each."""
    from sqlalchemy import insert
    from sqlalchemy.orm import selectinload

    import his.services.admin_units as admin_units
    from his.db import utcnow
    from his.fhirapi import searchparams
    from his.fhirapi.mappers import patient as patient_mapper
    from his.fhirapi.wire import dumps, instant
    from his.models import FhirResource, FhirResourceVersion, FhirSearchValue, Patient

    names: dict[tuple[str, str], str | None] = {}
    original = admin_units.unit_name

    def cached_unit_name(session, level, code):
        if (level, code) not in names:
            names[(level, code)] = original(session, level, code)
        return names[(level, code)]

    admin_units.unit_name = cached_unit_name
    database = Database.from_url(url)
    written = 0
    try:
        with database.session() as session:
            done = set(
                session.scalars(
                    select(FhirResource.resource_id).where(FhirResource.resource_type == "Patient")
                )
            )
            todo = [
                i
                for i in session.scalars(select(Patient.id).order_by(Patient.id))
                if str(i) not in done
            ]
        log(f"projecting {len(todo):,} patients ({len(done):,} already projected)")
        started = time.perf_counter()
        for first in range(0, len(todo), batch):
            with database.session() as session:
                chunk = todo[first : first + batch]
                patients = session.scalars(
                    select(Patient)
                    .where(Patient.id.in_(chunk))
                    .options(selectinload(Patient.identifiers))
                    .order_by(Patient.id)
                ).all()
                moment = utcnow().replace(microsecond=0)
                rows, contents = [], {}
                for patient in patients:
                    built = patient_mapper.patient_resource(session, patient)
                    resource = {
                        "resourceType": "Patient",
                        "id": str(patient.id),
                        "meta": {"versionId": "1", "lastUpdated": instant(moment)}
                        | {k: v for k, v in built.get("meta", {}).items()},
                    }
                    resource.update({k: v for k, v in built.items() if k != "meta"})
                    contents[str(patient.id)] = (resource, dumps(resource))
                    rows.append(
                        {
                            "resource_type": "Patient",
                            "resource_id": str(patient.id),
                            "version_id": 1,
                            "last_updated": moment,
                            "deleted": False,
                            "content": contents[str(patient.id)][1],
                            "patient_id": patient.id,
                            "facility_id": None,
                        }
                    )
                keys = session.execute(
                    insert(FhirResource).returning(
                        FhirResource.rid, FhirResource.resource_id, sort_by_parameter_order=True
                    ),
                    rows,
                ).all()
                versions, values = [], []
                for rid, resource_id in keys:
                    resource, text = contents[resource_id]
                    versions.append(
                        {
                            "rid": rid,
                            "resource_type": "Patient",
                            "resource_id": resource_id,
                            "version_id": 1,
                            "last_updated": moment,
                            "deleted": False,
                            "method": "POST",
                            "content": text,
                        }
                    )
                    for value in searchparams.index_values("Patient", resource):
                        values.append({**value, "rid": rid, "resource_type": "Patient"})
                session.execute(insert(FhirResourceVersion), versions)
                session.execute(insert(FhirSearchValue), values)
                session.commit()
                written += len(keys)
            rate = written / max(time.perf_counter() - started, 1e-9)
            log(f"  {min(first + batch, len(todo)):,}/{len(todo):,} ({rate:,.0f}/s)")
        with database.session() as session:
            total = session.scalar(
                select(func.count()).where(FhirResource.resource_type == "Patient")
            )
    finally:
        admin_units.unit_name = original
        database.engine.dispose()
    if url.startswith("postgresql"):
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE fhir_resource")
            conn.execute("VACUUM ANALYZE fhir_search_value")
    log(f"{total:,} patients projected")
    return written


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --- servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(target: str, port: int, env: dict[str, str], workers: int, threads: int):
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--chdir",
        # The bench's own WSGI apps live in bench/, the HIS at the root.
        str(ROOT if target.startswith("his:") else BENCH_DIR),
        target,
    ]
    process = subprocess.Popen(argv, env={**os.environ, **env})  # noqa: S603
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"{target} did not start")


# --- the load ------------------------------------------------------------------------


def drive(port: int, paths: list[str], headers: dict[str, str], seconds: float, clients: int):
    """``clients`` threads, each on one keep-alive connection, request paths round robin
    for ``seconds``; returns (latencies in ms, wall seconds)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = n
        mine = latencies[n]
        while time.perf_counter() < stop:
            path = paths[i % len(paths)]
            i += clients
            t0 = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            mine.append((time.perf_counter() - t0) * 1000)
            if response.status != 200:
                errors.append(f"{response.status} {path}: {body[:200]!r}")
                return
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    return [ms for per in latencies for ms in per], wall


def samples(url: str, count: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(app path, raw path) pairs per kind, taken from the projected data."""
    rng = random.Random(seed)  # noqa: S311 (reproducible samples, not secrets)
    with psycopg.connect(_libpq(url)) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT resource_id FROM fhir_resource WHERE resource_type = 'Patient' "
                "AND NOT deleted"
            )
        ]
        idents = conn.execute(
            "SELECT system, code FROM fhir_search_value WHERE resource_type = 'Patient' "
            "AND param = 'identifier' AND system LIKE '%%cccd%%'"
        ).fetchall()
        names = conn.execute(
            "SELECT f.text, g.text FROM fhir_search_value f JOIN fhir_search_value g "
            "ON g.rid = f.rid AND g.param = 'given' AND g.resource_type = 'Patient' "
            "WHERE f.resource_type = 'Patient' AND f.param = 'family'"
        ).fetchall()
        births = conn.execute(
            "SELECT DISTINCT start, \"end\" FROM fhir_search_value WHERE resource_type = 'Patient' "
            "AND param = 'birthdate' AND \"end\" - start = interval '1 day'"
        ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for rid in rng.sample(ids, min(count, len(ids))):
        out["read"].append((f"/fhir/Patient/{rid}", f"/read/Patient/{rid}"))
    for system, code in rng.sample(idents, min(count, len(idents))):
        app = "/fhir/Patient?" + urlencode({"identifier": f"{system}|{code}"})
        out["search_identifier"].append(
            (app, "/search/identifier?" + urlencode({"system": system, "code": code}))
        )
    for family, given in rng.sample(names, min(count, len(names))):
        app = "/fhir/Patient?" + urlencode({"family": family, "given": given})
        raw = "/search/name?" + urlencode({"family": family + "%", "given": given + "%"})
        out["search_name"].append((app, raw))
    vn = dt.timezone(dt.timedelta(hours=7))
    for start, end in rng.sample(births, min(count, len(births))):
        day = start.astimezone(vn).date().isoformat()
        raw = "/search/birthdate?" + urlencode({"start": start.isoformat(), "end": end.isoformat()})
        out["search_birthdate"].append(("/fhir/Patient?birthdate=" + quote(day), raw))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per round and server")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    target = resolve(args.database_url, args.patients)
    if target.backend != "postgresql":
        raise SystemExit("the FHIR API bench runs on PostgreSQL")
    url = target.url
    project(url)
    paths = samples(url, 300, args.seed)
    with psycopg.connect(_libpq(url)) as conn:
        projected = conn.execute(
            "SELECT count(*) FROM fhir_resource WHERE resource_type = 'Patient'"
        ).fetchone()[0]

    app_port, raw_port = free_port(), free_port()
    env = {
        "HIS_ENV": "development",
        "HIS_DATABASE_URL": url,
        "HIS_SECRET_KEY": "bench-" + "x" * 40,
        "HIS_LOG_LEVEL": "WARNING",
        "HIS_LOGIN_RATE_LIMIT": "1000 per minute",
        "BENCH_CONNINFO": _libpq(url),
    }
    servers = [
        gunicorn("his:create_app()", app_port, env, args.workers, args.threads),
        gunicorn("fhir_raw_wsgi:app", raw_port, env, args.workers, args.threads),
    ]
    try:
        conn = http.client.HTTPConnection("127.0.0.1", app_port, timeout=30)
        conn.request(
            "POST",
            "/api/v1/auth/token",
            body=json.dumps({"username": "doctor", "password": DEMO_PASSWORD}),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        token = json.loads(response.read())["access_token"]
        app_headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        results: dict[str, dict] = {}
        for kind in KINDS:
            app_paths = [a for a, _r in paths[kind]]
            raw_paths = [r for _a, r in paths[kind]]
            if not app_paths:
                log(f"{kind}: no samples, skipped")
                continue
            # warm up both, then alternate which goes first
            drive(app_port, app_paths, app_headers, 1.5, args.clients)
            drive(raw_port, raw_paths, {}, 1.5, args.clients)
            measured = {"app": ([], 0.0), "raw": ([], 0.0)}
            for round_ in range(args.rounds):
                order = ("app", "raw") if round_ % 2 == 0 else ("raw", "app")
                for side in order:
                    port, plist, headers = (
                        (app_port, app_paths, app_headers)
                        if side == "app"
                        else (raw_port, raw_paths, {})
                    )
                    ms, wall = drive(port, plist, headers, args.seconds, args.clients)
                    got, total_wall = measured[side]
                    measured[side] = (got + ms, total_wall + wall)
            row = {}
            for side, (ms, wall) in measured.items():
                row[side] = {
                    "requests": len(ms),
                    "req_per_s": round(len(ms) / wall, 1),
                    "p50_ms": round(percentile(ms, 50), 2),
                    "p95_ms": round(percentile(ms, 95), 2),
                    "mean_ms": round(statistics.fmean(ms), 2),
                }
            row["throughput_ratio_raw_over_app"] = round(
                row["raw"]["req_per_s"] / row["app"]["req_per_s"], 2
            )
            row["p50_ratio_app_over_raw"] = round(row["app"]["p50_ms"] / row["raw"]["p50_ms"], 2)
            row["p95_ratio_app_over_raw"] = round(row["app"]["p95_ms"] / row["raw"]["p95_ms"], 2)
            results[kind] = row
            log(f"{kind}: {json.dumps(row)}")
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    report = {
        "backend": target.backend,
        "patients_projected": projected,
        "workers": args.workers,
        "threads": args.threads,
        "clients": args.clients,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "results": results,
    }
    out = RESULTS_DIR / f"fhir-api-{target.backend}-{projected}.json"
    write_json(out, report)
    print()
    print(
        f"FHIR API, {projected:,} Patients projected, PostgreSQL, {args.workers} gunicorn workers "
        f"x {args.threads} threads, {args.clients} client threads"
    )
    print()
    print(
        "| kind | app req/s | raw req/s | raw/app | app p50 ms | raw p50 ms | app p95 ms "
        "| raw p95 ms | p95 app/raw |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, row in results.items():
        a, r = row["app"], row["raw"]
        print(
            f"| {kind} | {a['req_per_s']} | {r['req_per_s']} | "
            f"{row['throughput_ratio_raw_over_app']} | {a['p50_ms']} | {r['p50_ms']} | "
            f"{a['p95_ms']} | {r['p95_ms']} | {row['p95_ratio_app_over_raw']} |"
        )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
