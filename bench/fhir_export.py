"""FHIR Bulk Data export throughput: resources per second written by the export worker,
beside the same machine's floor measured in the same run.

    .venv/bin/python bench/fhir_export.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/fhir_export.py --database-url postgresql://... --resources 100000 --keep

A throw-away database ``his_bench_fhir_export_<N>`` is created on the server given (dropped
first if it exists; dropped again at the end unless ``--keep``), migrated, and filled by
``COPY`` with N synthetic stored resources (40 % Patient, 60 % Observation in the Patient
compartment, 1 % of them deleted): compact JSON of the shape the mappers write, with
Vietnamese names, so every row is a realistic ~0.6-1 kB of text. No domain rows: the
export reads only ``fhir_resource`` (and ``fhir_resource_version`` for rows changed after
the snapshot, none here).

Three ways of writing the same rows to NDJSON files, each run once untimed (``--warmup``
rounds: caches, the worker's imports), then timed over ``--rounds`` rounds (alternating order);
the median round counts, with the min, max and every round in the JSON:

* ``app``: a queued system-level ``$export`` job run by ``his.services.fhir_export.work_once``,
  the function ``his fhir export-worker`` calls: claim, snapshot wait, one streamed query per
  type (``COPY (SELECT ...) TO STDOUT`` in the snapshot transaction, unescaped), heartbeats,
  one file per type, the manifest;
* ``raw cursor``: the same SELECT through a psycopg server-side cursor, lines joined and
  written to a file: the driver's floor for this query;
* ``raw COPY``: ``COPY (SELECT content ...) TO STDOUT`` written to a file as it comes: the
  floor of the app's own path (the app also undoes COPY's backslash escaping).

The ratio raw/app is printed; results go to ``bench/results/fhir-export-postgresql-<N>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from common import DB_PREFIX, RESULTS_DIR, log, spread, write_json
from sqlalchemy.engine import make_url
from sqlalchemy.orm import configure_mappers

from his import migrate
from his.config import Settings
from his.db import Database, utcnow
from his.services import fhir_export
from his.services.fhir_export import ExportRequest

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Hoàng", "Võ", "Đặng", "Bùi", "Đỗ", "Lý"]
MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Quốc", "Thu"]
GIVEN = ["An", "Bảo", "Châu", "Dũng", "Giang", "Hà", "Hương", "Khánh", "Linh", "Mai", "Thuý"]
LOINC = [
    ("8867-4", "Heart rate", "/min", 72),
    ("8310-5", "Body temperature", "Cel", 37),
    ("9279-1", "Respiratory rate", "/min", 18),
    ("29463-7", "Body weight", "kg", 58),
]


def _dumps(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def _meta(moment: dt.datetime) -> dict:
    return {"versionId": "1", "lastUpdated": moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")}


def patient_json(i: int, rng: random.Random, moment: dt.datetime) -> str:
    family, middle, given = rng.choice(FAMILY), rng.choice(MIDDLE), rng.choice(GIVEN)
    born = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(33000))
    return _dumps(
        {
            "resourceType": "Patient",
            "id": str(i),
            "meta": _meta(moment),
            "extension": [
                {
                    "url": "https://fhir.his.vn/StructureDefinition/ethnicity",
                    "valueCoding": {
                        "system": "https://fhir.his.vn/CodeSystem/ethnicity",
                        "code": "01",
                        "display": "Kinh",
                    },
                }
            ],
            "identifier": [
                {"system": "https://fhir.his.vn/sid/mrn", "value": f"BN{i:08d}"},
                {
                    "system": "https://fhir.his.vn/sid/cccd",
                    "value": f"0{rng.randrange(10**11):011d}",
                },
                {
                    "system": "https://fhir.his.vn/sid/bhyt",
                    "value": f"{rng.randrange(10**10):010d}",
                },
            ],
            "active": True,
            "name": [
                {
                    "use": "official",
                    "text": f"{family} {middle} {given}",
                    "family": family,
                    "given": [middle, given],
                }
            ],
            "telecom": [{"system": "phone", "value": f"09{rng.randrange(10**8):08d}"}],
            "gender": rng.choice(("male", "female")),
            "birthDate": born.isoformat(),
            "address": [
                {
                    "text": "Ấp Mỹ Thạnh, Xã Mỹ Hoà Hưng, Tỉnh An Giang",
                    "city": "Xã Mỹ Hoà Hưng",
                    "state": "Tỉnh An Giang",
                    "country": "VN",
                }
            ],
        }
    )


def observation_json(i: int, patient: int, rng: random.Random, moment: dt.datetime) -> str:
    code, name, unit, base = rng.choice(LOINC)
    return _dumps(
        {
            "resourceType": "Observation",
            "id": f"vs{i}",
            "meta": _meta(moment),
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": name}]},
            "subject": {"reference": f"Patient/{patient}"},
            "encounter": {"reference": f"Encounter/e{i // 4}"},
            "effectiveDateTime": moment.strftime("%Y-%m-%dT%H:%M:%S+07:00"),
            "valueQuantity": {
                "value": base + rng.randrange(-5, 6),
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
    )


def fill(conninfo: str, total: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)  # noqa: S311 (synthetic data, reproducible from the seed)
    moment = utcnow().replace(microsecond=0) - dt.timedelta(days=1)
    patients = max(1, total * 2 // 5)
    counts = {"Patient": 0, "Observation": 0, "deleted": 0}
    started = time.perf_counter()
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET synchronous_commit = off")
        with conn.cursor() as cur:
            columns = (
                "resource_type, resource_id, version_id, last_updated, deleted, content, "
                "patient_id, facility_id"
            )
            with cur.copy(f"COPY fhir_resource ({columns}) FROM STDIN") as copy:
                for i in range(1, total + 1):
                    deleted = rng.random() < 0.01
                    if i <= patients:
                        kind, rid = "Patient", str(i)
                        content = "" if deleted else patient_json(i, rng, moment)
                        owner, facility = i, None
                    else:
                        owner = rng.randrange(1, patients + 1)
                        kind, rid, facility = "Observation", f"vs{i}", 1 + i % 5
                        content = "" if deleted else observation_json(i, owner, rng, moment)
                    counts["deleted" if deleted else kind] += 1
                    copy.write_row((kind, rid, 1, moment, deleted, content, owner, facility))
                    if i % 100_000 == 0:
                        log(f"  copied {i:,} rows ({time.perf_counter() - started:.0f}s)")
        conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE fhir_resource")
    log(f"filled {total:,} rows in {time.perf_counter() - started:.1f}s")
    return counts


SELECT = (
    "SELECT content FROM fhir_resource WHERE resource_type = %s "
    "AND deleted IS false AND last_updated <= %s"
)


def raw_cursor(conninfo: str, folder: Path, types: list[str]) -> int:
    moment = utcnow()
    rows = 0
    with psycopg.connect(conninfo) as conn:
        for resource_type in types:
            with (
                conn.cursor(name=f"export_{resource_type}") as cur,
                open(folder / f"{resource_type}.ndjson", "w", encoding="utf-8") as out,
            ):
                cur.itersize = fhir_export.CHUNK
                cur.execute(SELECT, (resource_type, moment))
                while chunk := cur.fetchmany(fhir_export.CHUNK):
                    out.write("\n".join(r[0] for r in chunk))
                    out.write("\n")
                    rows += len(chunk)
    return rows


def raw_copy(conninfo: str, folder: Path, types: list[str]) -> int:
    moment = utcnow()
    rows = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for resource_type in types:
            with (
                open(folder / f"{resource_type}.copy", "wb") as out,
                cur.copy(f"COPY ({SELECT}) TO STDOUT", (resource_type, moment)) as copy,
            ):
                for block in copy:
                    out.write(block)
            rows += cur.rowcount
    return rows


def app_export(database: Database, settings: Settings, types: list[str]) -> int:
    with database.session() as session:
        job = fhir_export.create_job(
            session,
            owner="bench",
            scopes="system/*.rs",
            facility_ids=None,
            wanted=ExportRequest(level="system", request_url="bench", types=types),
        )
        job_id = job.id
    assert fhir_export.work_once(database, settings) == 1
    with database.session() as session:
        job = session.get(fhir_export.FhirExportJob, job_id)
        assert job.status == "completed", job.error
        return sum(item["count"] for item in job.manifest["output"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server URL")
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--seed", type=int, default=20251)
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--reuse", action="store_true", help="use the kept database as it is")
    args = parser.parse_args()

    url = make_url(args.database_url)
    if url.get_backend_name() != "postgresql":
        raise SystemExit("the export bench runs on PostgreSQL")
    name = f"{DB_PREFIX}fhir_export_{args.resources}"
    server = url.set(drivername="postgresql", database="postgres")
    bench = url.set(drivername="postgresql+psycopg", database=name)
    conninfo = url.set(drivername="postgresql", database=name).render_as_string(False)
    server_info = server.render_as_string(hide_password=False)
    if not args.reuse:
        with psycopg.connect(server_info, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        migrate.upgrade(bench.render_as_string(hide_password=False))
        counts = fill(conninfo, args.resources, args.seed)
    else:
        counts = {}
    types = ["Patient", "Observation"]
    database = Database.from_url(bench.render_as_string(hide_password=False))
    configure_mappers()  # once per worker process: not part of any export
    instance = Path(tempfile.mkdtemp(prefix="his-bench-export-"))
    settings = Settings(env="test", database_url=database.engine.url, instance_dir=instance)
    timings: dict[str, list[float]] = {"app": [], "raw_cursor": [], "raw_copy": []}
    exported: dict[str, int] = {}
    runs = {
        "app": lambda folder: app_export(database, settings, types),
        "raw_cursor": lambda folder: raw_cursor(conninfo, folder, types),
        "raw_copy": lambda folder: raw_copy(conninfo, folder, types),
    }
    try:
        for round_no in range(-args.warmup, args.rounds):
            warm = round_no < 0
            order = list(runs) if round_no % 2 == 0 else list(reversed(runs))
            for label in order:
                folder = instance / f"{label}-{round_no}"
                folder.mkdir()
                started = time.perf_counter()
                rows = runs[label](folder)
                elapsed = time.perf_counter() - started
                if not warm:
                    timings[label].append(elapsed)
                exported[label] = rows
                size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
                size += sum(
                    f.stat().st_size
                    for f in (instance / "exports").rglob("*")
                    if label == "app" and f.is_file()
                )
                log(
                    f"{'warm-up' if warm else f'round {round_no + 1}'} {label:>10}: "
                    f"{rows:,} resources in {elapsed:.1f}s "
                    f"= {rows / elapsed:,.0f}/s ({size / 1e6:,.0f} MB)"
                )
                shutil.rmtree(folder, ignore_errors=True)
                shutil.rmtree(instance / "exports", ignore_errors=True)
    finally:
        shutil.rmtree(instance, ignore_errors=True)
        database.engine.dispose()
        if not args.keep:
            with psycopg.connect(server_info, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert len(set(exported.values())) == 1, f"the three paths disagree: {exported}"
    per_round = {
        label: [exported[label] / seconds for seconds in times] for label, times in timings.items()
    }
    by_round = {label: spread(rates, 0) for label, rates in per_round.items()}
    rate = {label: figures["median"] for label, figures in by_round.items()}
    result = {
        "backend": "postgresql",
        "resources_in_table": args.resources,
        "resources_exported": exported["app"],
        "counts": counts,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "seconds": timings,
        # the median round; ``resources_per_second_runs`` has min, max and every round
        "resources_per_second": {k: round(v) for k, v in rate.items()},
        "resources_per_second_runs": by_round,
        "resources_per_second_best": {k: round(max(v)) for k, v in per_round.items()},
        "ratio_app_over_raw_copy_by_round": [
            round(a / c, 4) for a, c in zip(per_round["app"], per_round["raw_copy"], strict=True)
        ],
        "ratio_raw_cursor_over_app": round(rate["raw_cursor"] / rate["app"], 2),
        "ratio_raw_copy_over_app": round(rate["raw_copy"] / rate["app"], 2),
        "measured_at": utcnow().isoformat(),
    }
    write_json(RESULTS_DIR / f"fhir-export-postgresql-{args.resources}.json", result)
    print(f"| path | resources/s (median of {args.rounds}) | min | max | app is x slower |")
    print("|---|---:|---:|---:|---:|")
    for label in ("app", "raw_cursor", "raw_copy"):
        figures = by_round[label]
        print(
            f"| {label} | {rate[label]:,.0f} | {figures['min']:,.0f} | {figures['max']:,.0f} "
            f"| {rate[label] / rate['app']:.2f} |"
        )
    print(f"exported {exported['app']:,} of {args.resources:,} rows (the rest deleted)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
