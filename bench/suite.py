"""The benchmark suite: every case beside its baseline measured in the same run, as one
``latest.json`` (``--quick``: 50,000 patients) or ``<date>.json`` (1,000,000), with a short
markdown summary.

    .venv/bin/python bench/suite.py --quick          # make bench-quick
    .venv/bin/python bench/suite.py                  # make bench (then bench/growth.py)

Each case is one of the bench scripts run as it is documented in bench/README.md (their own
JSON is kept under ``bench/results/``); this script only runs them in order on a PostgreSQL
server (``--database-url``, default the local one) and reads their figures back:

| case | script | figure / baseline |
|---|---|---|
| ``patient_search`` | ``search.py`` | p95 ms (name, CCCD, phone) / the same SQL run raw |
| ``registration`` | ``registration.py`` | registrations/s into the province / hello-JSON req/s |
| ``worker_rss`` | ``registration.py`` | peak MB of a web worker under that load |
| ``fhir_read`` | ``fhir_api.py`` | ``Patient/{id}`` req/s / hello-JSON req/s |
| ``fhir_search`` | ``fhir_api.py`` | ``Patient?family&given`` p95 / the same SQL, bare WSGI |
| ``fhir_search_encounter`` | ``fhir_api.py`` | ``Encounter?patient&date`` p95 / the same SQL |
| ``bulk_export`` | ``fhir_export.py`` | resources/s / ``COPY … TO STDOUT`` |
| ``mllp_ingest_1``, ``_8`` | ``hl7_ingest.py`` | ADT^A04 msg/s / an MLLP echo server |

Every figure comes from several timed runs after a warm-up (each script's ``--runs`` or
``--rounds``): a case's ``value`` and ``baseline_value`` are the medians of the runs, ``min``,
``max`` and ``runs`` give the spread of ours (``baseline_min``, ``baseline_max``,
``baseline_runs`` the baseline's), and ``ratio`` is value / baseline_value. Ratios are oriented
as in issue 8: search p95 ratios are ours over the baseline (≤ target), the others ours over the
baseline (≥ target). ``steps`` gives the seconds each script took.
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

from common import (
    DB_PREFIX,
    RESULTS_DIR,
    log,
    province_meta,
    reusable_province,
    spread,
    write_json,
)

BENCH = Path(__file__).resolve().parent
PG = "postgresql://postgres@127.0.0.1:5432/postgres"

# Run lengths. Quick: 50,000 patients in under 5 minutes on a 2-core machine, every figure
# still warmed up and the median of 3 runs; full: 1,000,000 patients, longer runs.
QUICK = {
    "patients": 50_000,
    "search_samples": 100,  # per kind, path and run (3 kinds: 300 searches per path per run)
    "runs": 3,
    "registration_seconds": 3.0,
    "registration_warmup": 2.0,
    "fhir_seconds": 3.0,
    # Which Encounters fhir_api.py projects first: the sampled patients' only, so that a first
    # run on a fresh machine fits in 5 minutes (all ~145,000 would take ~70 s more); the
    # growth run shows the Encounter search flat with the index size.
    "encounters": "sample",
    "resources": 50_000,
    "messages": 60,  # per lane and run, after 10 warm-up messages
    "message_warmup": 10,
    "floor_seconds": 1.0,  # hl7_ingest.py's commit floor, before and after (not a case)
}
FULL = {
    "patients": 1_000_000,
    "search_samples": 200,
    "runs": 3,
    "registration_seconds": 10.0,
    "registration_warmup": 3.0,
    "fhir_seconds": 8.0,
    # 3,000,000 Encounters would take ~25 min to project: those of the sampled patients only
    # (fhir_api.py --encounters auto), as bench/growth.py does at this size.
    "encounters": "auto",
    "resources": 1_000_000,
    "messages": 500,
    "message_warmup": 20,
    "floor_seconds": 2.0,
}


def _run(steps: dict[str, float], script: str, *args: str) -> None:
    command = [sys.executable, str(BENCH / script), *args]
    log("$ " + " ".join(command[1:]))
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=BENCH.parent)  # noqa: S603 (our own scripts)
    steps[script] = round(time.monotonic() - started, 1)
    log(f"  {script}: {steps[script]:.0f} s")


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def figure(value, runs=None, low=None, high=None) -> dict:
    """A figure as ``spread`` gives it: the median ``value`` with its min, max and runs (a
    single run when the script gave only one number)."""
    if runs:
        return spread(list(runs), 4) | ({"median": value} if value is not None else {})
    return {
        "median": value,
        "min": low if low is not None else value,
        "max": high if high is not None else value,
        "runs": [value],
    }


def case(name, ours, unit, baseline, base, target, lower_is_better=False) -> dict:
    """One case; ``ours`` and ``base`` are ``figure``/``spread`` dicts (``base`` None when
    there is no baseline)."""
    value = ours["median"]
    baseline_value = base["median"] if base else None
    ratio = round(value / baseline_value, 4) if baseline_value else None
    if target is None or ratio is None:
        met = None
    else:
        met = ratio <= target if lower_is_better else ratio >= target
    out = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "target": target,
        "met": met,
        "min": ours["min"],
        "max": ours["max"],
        "runs": ours["runs"],
    }
    if base:
        out |= {
            "baseline_min": base["min"],
            "baseline_max": base["max"],
            "baseline_runs": base["runs"],
        }
    return out


def fhir_figure(side: dict, key: str) -> dict:
    """``results[kind]["app"|"raw"]`` of ``fhir_api.py``: ``key`` (``req_per_s`` or ``p95_ms``)
    is the median of its rounds. The per-round figures are read from ``rounds`` (or ``runs``):
    a list of per-round dicts, or a dict of lists by key; min and max from ``min`` / ``max``
    (dicts by key) or ``<key>_min`` / ``<key>_max``, else from the rounds. A script that wrote
    none of these gives one figure standing alone."""
    value = side[key]
    if isinstance(value, dict):  # {"median", "min", "max", "runs"|"rounds"}
        runs = value.get("runs") or value.get("rounds")
        out = figure(value.get("median"), runs if isinstance(runs, list) else None)
        return out | {k: value[k] for k in ("min", "max") if value.get(k) is not None}
    runs = None
    for holder in (side.get("rounds"), side.get("runs")):
        if isinstance(holder, list):
            runs = [r[key] for r in holder if isinstance(r, dict) and r.get(key) is not None]
        elif isinstance(holder, dict) and isinstance(holder.get(key), list):
            runs = holder[key]
        if runs:
            break
    out = figure(value, runs)
    for bound in ("min", "max"):
        given = side.get(bound)
        given = given.get(key) if isinstance(given, dict) else side.get(f"{key}_{bound}")
        if given is not None:
            out[bound] = given
    return out


def _newest(pattern: str, since: float) -> Path:
    found = [p for p in RESULTS_DIR.glob(pattern) if p.stat().st_mtime >= since - 1]
    if not found:
        raise SystemExit(f"no {pattern} written by this run in {RESULTS_DIR}")
    return max(found, key=os.path.getmtime)


def run(args: argparse.Namespace, p: dict) -> dict:
    n = p["patients"]
    server = args.database_url
    province = server.rsplit("/", 1)[0] + f"/{DB_PREFIX}{n}"
    scratch = RESULTS_DIR / "suite"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    wall_started = time.time()
    runs = str(p["runs"])
    steps: dict[str, float] = {}

    meta = province_meta(province) if args.reuse else None
    reused = reusable_province(meta, n)
    if reused:
        log(f"reusing {DB_PREFIX}{n} (loaded {meta.get('loaded_at')}; --reuse)")
    else:
        _run(steps, "province.py", "--database-url", server, "--patients", str(n))
        meta = province_meta(province) or {}
    province_info = {
        "database": f"{DB_PREFIX}{n}",
        "reused": reused,
        "loaded_at": meta.get("loaded_at"),
        "load_total_s": (meta.get("timings") or {}).get("total_s"),
        "rows": meta.get("rows"),
    }
    _run(
        steps,
        "search.py",
        *("--database-url", server, "--patients", str(n)),
        *("--kinds", "name,cccd,phone", "--samples", str(p["search_samples"]), "--runs", runs),
        *("--output", str(scratch / "search.json")),
    )
    _run(
        steps,
        "registration.py",
        # into the province just searched (no scratch database to migrate and fill)
        *("--existing-database-url", province, "--database-url", server),
        *("--seconds", str(p["registration_seconds"])),
        *("--rounds", runs, "--warmup", str(p["registration_warmup"])),
        *("--output", str(scratch / "registration.json")),
    )
    fhir_started = time.time()
    _run(
        steps,
        "fhir_api.py",
        *("--database-url", province, "--patients", str(n)),
        *("--seconds", str(p["fhir_seconds"]), "--rounds", runs),
        # the kinds the cases read (fhir_api.py alone also measures identifier, birthdate)
        *("--kinds", "read,search_name,search_encounter", "--encounters", p["encounters"]),
    )
    _run(
        steps,
        "fhir_export.py",
        *("--database-url", server, "--resources", str(p["resources"]), "--rounds", runs),
    )
    _run(
        steps,
        "hl7_ingest.py",
        *("--database-url", server, "--messages", str(p["messages"])),
        *("--warmup", str(p["message_warmup"]), "--runs", runs),
        *("--floor-seconds", str(p["floor_seconds"])),
        *("--connections", "1", "8", "--profile-messages", "0", "--no-store-only"),
    )

    search = _read(scratch / "search.json")
    registration = _read(scratch / "registration.json")
    fhir_results = _read(_newest("fhir-api-postgresql-*.json", fhir_started))["results"]
    export = _read(RESULTS_DIR / f"fhir-export-postgresql-{p['resources']}.json")
    ingest = _read(RESULTS_DIR / f"hl7-ingest-postgresql-{p['messages']}.json")["backends"][0]

    by_run = search["overall_runs"]
    hello = spread(registration["hello_per_s"]["runs"], 1)
    cases = [
        case(
            "patient_search",
            by_run["app"]["p95_ms"],
            "ms (p95)",
            "the same SQL run directly",
            by_run["raw"]["p95_ms"],
            2.0,
            lower_is_better=True,
        ),
        case(
            "registration",
            registration["registration_per_s"],
            "registrations/s",
            "Flask hello-JSON, same gunicorn settings",
            hello,
            0.25,
        ),
        case(
            "fhir_read",
            fhir_figure(fhir_results["read"]["app"], "req_per_s"),
            "req/s",
            "Flask hello-JSON, same gunicorn settings",
            hello,
            0.5,
        ),
        case(
            "fhir_search",
            fhir_figure(fhir_results["search_name"]["app"], "p95_ms"),
            "ms (p95), Patient?family&given",
            "the same SQL behind a bare WSGI app",
            fhir_figure(fhir_results["search_name"]["raw"], "p95_ms"),
            2.0,
            lower_is_better=True,
        ),
    ]
    not_measured = []
    encounter = fhir_results.get("search_encounter")
    if encounter:
        cases.append(
            case(
                "fhir_search_encounter",
                fhir_figure(encounter["app"], "p95_ms"),
                "ms (p95), Encounter?patient&date",
                "the same SQL behind a bare WSGI app",
                fhir_figure(encounter["raw"], "p95_ms"),
                2.0,
                lower_is_better=True,
            )
        )
    else:
        not_measured.append("Encounter?patient=&date= (fhir_api.py did not run search_encounter)")
    export_runs = export["resources_per_second_runs"]
    cases.append(
        case(
            "bulk_export",
            export_runs["app"],
            "resources/s",
            "COPY (SELECT stored json …) TO STDOUT",
            export_runs["raw_copy"],
            0.5,
        )
    )
    for connections in ("1", "8"):
        lane = ingest["lanes"][connections]
        cases.append(
            case(
                f"mllp_ingest_{connections}",
                lane["ours_msg_per_s_runs"],
                "msg/s",
                "an MLLP echo server",
                lane["echo_msg_per_s_runs"],
                0.4,
            )
        )
    rss = registration["worker_rss_peak_mb_by_round"]
    worker_rss = case("worker_rss", rss, "MB (peak per web worker, per round)", None, None, None)
    # The limit holds for every round, not only the median one.
    worker_rss["target"] = 200
    worker_rss["met"] = 0 < rss["max"] <= 200
    worker_rss["met_on"] = "max"
    cases.append(worker_rss)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
            "python": sys.version.split()[0],
        },
        "patients": n,
        "province": province_info,
        "when": dt.datetime.fromtimestamp(wall_started, dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started),
        "steps": steps,
        "method": {
            "runs": p["runs"],
            "parameters": p,
            "value": "median of the runs; min, max and runs beside it",
        },
        "cases": cases,
        "not_measured": not_measured,
    }


def _num(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, int) or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def markdown(result: dict) -> str:
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("steps", {}).items())
    province = result.get("province") or {}
    loaded = (
        f"the province of {province.get('loaded_at')} reused"
        if province.get("reused")
        else "the province loaded in this run"
    )
    lines = [
        f"Bench suite, {result['patients']:,} patients, {result['when']} "
        f"({result['seconds']} s, {result['machine']['cpus']} CPUs; {steps}; {loaded})",
        "",
        f"Each figure: the median of {result['method']['runs']} runs after a warm-up, with the "
        "smallest and largest run.",
        "",
        "| case | ours | min–max | baseline | min–max | ratio | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in result["cases"]:
        met = {True: "yes", False: "**no**", None: "—"}[c["met"]]
        base, spread_base = "—", "—"
        if c["baseline_value"] is not None:
            base = _num(c["baseline_value"])
            spread_base = f"{_num(c['baseline_min'])}–{_num(c['baseline_max'])}"
        lines.append(
            f"| {c['name']} | {_num(c['value'])} {c['unit']} | {_num(c['min'])}–{_num(c['max'])} "
            f"| {base} | {spread_base} | {_num(c['ratio'])} | {c['target']} | {met} |"
        )
    if result.get("not_measured"):
        lines += ["", "Not measured: " + "; ".join(result["not_measured"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("HIS_BENCH_POSTGRES_URL", PG))
    parser.add_argument("--quick", action="store_true", help="50,000 patients, short runs")
    parser.add_argument("--runs", type=int, help="timed runs per figure (default 3)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"keep an existing {DB_PREFIX}<N> that holds the province (its FHIR projection and "
        "the patients registered by earlier runs included) instead of loading it again",
    )
    args = parser.parse_args(argv)
    p = dict(QUICK if args.quick else FULL)
    if args.runs:
        p["runs"] = args.runs
    result = run(args, p)
    name = "latest.json" if args.quick else f"{dt.datetime.now(dt.UTC).date().isoformat()}.json"
    write_json(RESULTS_DIR / name, result)
    summary = markdown(result)
    (RESULTS_DIR / name).with_suffix(".md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
