"""The benchmark suite: every case beside its baseline measured in the same run, as one
``latest.json`` (``--quick``: 50,000 patients) or ``<date>.json`` (1,000,000), with a short
markdown summary.

    .venv/bin/python bench/suite.py --quick          # make bench-quick
    .venv/bin/python bench/suite.py                  # make bench

Each case is one of the bench scripts run as it is documented in bench/README.md (their own
JSON is kept under ``bench/results/``); this script only runs them in order on a PostgreSQL
server (``--database-url``, default the local one) and reads their figures back:

| case | script | figure / baseline |
|---|---|---|
| ``patient_search`` | ``search.py`` | p95 ms (name, CCCD, phone) / the same SQL run raw |
| ``registration`` | ``registration.py`` | registrations/s / Flask hello-JSON req/s |
| ``worker_rss`` | ``registration.py`` | peak MB of a web worker under that load |
| ``fhir_read`` | ``fhir_api.py`` | ``Patient/{id}`` req/s / hello-JSON req/s |
| ``fhir_search`` | ``fhir_api.py`` | ``Patient?family&given`` p95 / the same SQL, bare WSGI |
| ``bulk_export`` | ``fhir_export.py`` | resources/s / ``COPY … TO STDOUT`` |
| ``mllp_ingest_1``, ``_8`` | ``hl7_ingest.py`` | ADT^A04 msg/s / an MLLP echo server |

Ratios are oriented as in issue 8: search p95 ratios are ours over the baseline (≤ target),
the others ours over the baseline (≥ target). Not measured yet (issue 8 open):
``Encounter?patient=&date=`` (the synthetic province has no visits), growth plots.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DB_PREFIX, RESULTS_DIR, log, write_json

BENCH = Path(__file__).resolve().parent
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _run(script: str, *args: str) -> None:
    command = [sys.executable, str(BENCH / script), *args]
    log("$ " + " ".join(command[1:]))
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=BENCH.parent)  # noqa: S603 (our own scripts)
    log(f"  {script}: {time.monotonic() - started:.0f} s")


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def case(name, value, unit, baseline, baseline_value, target, lower_is_better=False):
    ratio = round(value / baseline_value, 4) if baseline_value else None
    if target is None or ratio is None:
        met = None
    else:
        met = ratio <= target if lower_is_better else ratio >= target
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def run(args: argparse.Namespace) -> dict:
    n = args.patients
    server = args.database_url
    province = server.rsplit("/", 1)[0] + f"/{DB_PREFIX}{n}"
    scratch = RESULTS_DIR / "suite"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    _run("province.py", "--database-url", server, "--patients", str(n))
    _run(
        "search.py",
        *("--database-url", server, "--patients", str(n)),
        *("--kinds", "name,cccd,phone", "--samples", str(args.samples)),
        *("--output", str(scratch / "search.json")),
    )
    _run(
        "registration.py",
        *("--database-url", server, "--seconds", str(args.seconds), "--rounds", str(args.rounds)),
        *("--output", str(scratch / "registration.json")),
    )
    _run(
        "fhir_api.py",
        *("--database-url", province, "--patients", str(n)),
        *("--seconds", str(args.seconds), "--rounds", str(args.rounds)),
    )
    _run("fhir_export.py", "--database-url", server, "--resources", str(args.resources))
    _run(
        "hl7_ingest.py",
        *("--database-url", server, "--messages", str(args.messages)),
        *("--connections", "1", "8", "--profile-messages", "0", "--no-store-only"),
    )

    search = _read(scratch / "search.json")["overall"]
    registration = _read(scratch / "registration.json")
    fhir = sorted(RESULTS_DIR.glob("fhir-api-postgresql-*.json"), key=os.path.getmtime)[-1]
    fhir_results = _read(fhir)["results"]
    export = _read(RESULTS_DIR / f"fhir-export-postgresql-{args.resources}.json")
    ingest = _read(RESULTS_DIR / f"hl7-ingest-postgresql-{args.messages}.json")["backends"][0]
    hello = registration["hello_per_s"]["median"]
    read = fhir_results["read"]["app"]["req_per_s"]
    by_name = fhir_results["search_name"]
    cases = [
        case(
            "patient_search",
            search["app"]["p95_ms"],
            "ms (p95)",
            "the same SQL run directly",
            search["raw"]["p95_ms"],
            2.0,
            lower_is_better=True,
        ),
        case(
            "registration",
            registration["registration_per_s"]["median"],
            "registrations/s",
            "Flask hello-JSON, same gunicorn settings",
            hello,
            0.25,
        ),
        case("fhir_read", read, "req/s", "Flask hello-JSON, same gunicorn settings", hello, 0.5),
        case(
            "fhir_search",
            by_name["app"]["p95_ms"],
            "ms (p95), Patient?family&given",
            "the same SQL behind a bare WSGI app",
            by_name["raw"]["p95_ms"],
            2.0,
            lower_is_better=True,
        ),
        case(
            "bulk_export",
            export["resources_per_second"]["app"],
            "resources/s",
            "COPY (SELECT stored json …) TO STDOUT",
            export["resources_per_second"]["raw_copy"],
            0.5,
        ),
    ]
    for connections in ("1", "8"):
        lane = ingest["lanes"][connections]
        cases.append(
            case(
                f"mllp_ingest_{connections}",
                lane["ours"]["msg_per_s"],
                "msg/s",
                "an MLLP echo server",
                lane["echo_msg_per_s"],
                0.4,
            )
        )
    cases.append(
        {
            "name": "worker_rss",
            "value": registration["worker_rss_max_mb"],
            "unit": "MB (peak per web worker)",
            "baseline": None,
            "baseline_value": None,
            "ratio": None,
            "target": 200,
            "met": registration["rss_met"],
        }
    )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
            "python": sys.version.split()[0],
        },
        "patients": n,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started),
        "cases": cases,
        "not_measured": ["Encounter?patient=&date= (the synthetic province has no visits)"],
    }


def markdown(result: dict) -> str:
    lines = [
        f"Bench suite, {result['patients']:,} patients, {result['when']} "
        f"({result['seconds']} s, {result['machine']['cpus']} CPUs)",
        "",
        "| case | ours | baseline | ratio | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in result["cases"]:
        met = {True: "yes", False: "**no**", None: "—"}[c["met"]]
        lines.append(
            f"| {c['name']} | {c['value']} {c['unit']} | {c['baseline_value'] or '—'} | "
            f"{c['ratio'] if c['ratio'] is not None else '—'} | {c['target']} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("HIS_BENCH_POSTGRES_URL", PG))
    parser.add_argument("--quick", action="store_true", help="50,000 patients, short rounds")
    args = parser.parse_args(argv)
    quick = args.quick
    args.patients = 50_000 if quick else 1_000_000
    args.samples = 60 if quick else 200
    args.seconds = 4 if quick else 10
    args.rounds = 2 if quick else 3
    args.resources = 50_000 if quick else 1_000_000
    args.messages = 200 if quick else 1000
    result = run(args)
    name = "latest.json" if quick else f"{dt.datetime.now(dt.UTC).date().isoformat()}.json"
    write_json(RESULTS_DIR / name, result)
    summary = markdown(result)
    (RESULTS_DIR / name).with_suffix(".md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
