"""Growth: the same cases at 10,000, 100,000 and 1,000,000 patients, plotted, with how the
p95 grows with the size of the index (issue 8: it should stay nearly flat).

    .venv/bin/python bench/growth.py --reuse                         # make bench-growth
    .venv/bin/python bench/growth.py --sizes 10000,50000 --reuse
    .venv/bin/python bench/growth.py --plot-only                     # redraw from growth.json

For each size N, on the PostgreSQL server given (``--database-url``, default the local one):

1. the province ``his_bench_<N>`` made by ``province.py --patients N`` (with ``--reuse``, an
   existing one is kept when its ``bench_province`` table says it holds N patients and their
   visits);
2. ``search.py`` on it: patient search through the app's path (what the REST API runs) beside
   the same SQL run raw, ``--runs`` runs of ``--search-samples`` per kind and path;
3. ``fhir_api.py`` on it: FHIR ``Patient?family=&given=`` (``search_name``) and, when the
   script runs it, ``Encounter?patient=&date=`` (``search_encounter``), each beside the same
   SQL behind a bare WSGI app (it also measures its other kinds; they are kept in its JSON);
4. ``registration.py --existing-database-url`` on it: registrations per second into that
   province (the registered patients stay in it: a reused province grows by a few hundred
   patients a run; ``patients_in_table`` says how many there were).

Every figure is the median of the script's runs after its warm-up, with min and max. Out:
``bench/results/growth.json`` (written after every size), the plots
``bench/results/growth-patient-search.png``, ``growth-fhir-search.png``,
``growth-registration.png`` (matplotlib, Agg) and ``bench/results/growth.md``; the scripts'
own JSON per size under ``bench/results/growth/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from common import (
    DB_PREFIX,
    RESULTS_DIR,
    log,
    province_meta,
    reusable_province,
    write_json,
)
from sqlalchemy.engine import make_url
from suite import fhir_figure

BENCH = Path(__file__).resolve().parent
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SIZES = (10_000, 100_000, 1_000_000)
SEARCH_KINDS = "name,given_family,rare_name,cccd,phone,bhyt10,mrn"  # search.py's judged kinds
OUT = RESULTS_DIR / "growth.json"
STEP_DIR = RESULTS_DIR / "growth"

# The series plotted and summarised: (key in a size's entry, label).
SEARCH_SERIES = (
    ("patient_search", "patient search, REST path (app)", "patient search, raw SQL"),
    ("fhir_search_name", "FHIR Patient?family&given (app)", "same SQL, bare WSGI"),
    ("fhir_search_encounter", "FHIR Encounter?patient&date (app)", "same SQL, bare WSGI"),
)


def _url(server: str, database: str) -> str:
    return make_url(server).set(database=database).render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def patients_in_table(url: str) -> int:
    with psycopg.connect(_libpq(url)) as conn:
        return conn.execute("SELECT count(*) FROM patient").fetchone()[0]


def _script(script: str, *args: str) -> float:
    command = [sys.executable, str(BENCH / script), *args]
    log("$ " + " ".join(command[1:]))
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=BENCH.parent)  # noqa: S603 (our own scripts)
    seconds = round(time.monotonic() - started, 1)
    log(f"  {script}: {seconds:.0f} s")
    return seconds


def _newest_fhir(since: float) -> Path | None:
    found = [
        p for p in RESULTS_DIR.glob("fhir-api-postgresql-*.json") if p.stat().st_mtime >= since - 1
    ]
    return max(found, key=os.path.getmtime) if found else None


def measure(n: int, args: argparse.Namespace) -> dict:
    """Every case at one size; a step that fails is recorded as an error, the rest go on."""
    url = _url(args.database_url, f"{DB_PREFIX}{n}")
    entry: dict = {
        "patients": n,
        "database": make_url(url).database,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": {},
        "errors": {},
    }
    seconds = entry["seconds"]
    STEP_DIR.mkdir(parents=True, exist_ok=True)

    meta = province_meta(url) if args.reuse else None
    if reusable_province(meta, n):
        log(f"{n:,}: reusing {entry['database']} (loaded {meta.get('loaded_at', '?')})")
        entry["province"] = {"reused": True, "loaded_at": meta.get("loaded_at")}
    else:
        seconds["province"] = _script(
            "province.py",
            *("--database-url", args.database_url, "--patients", str(n)),
            *args.province_arg,
        )
        meta = province_meta(url) or {}
        entry["province"] = {"reused": False, "loaded_at": meta.get("loaded_at")}
    entry["province"]["load_total_s"] = (meta.get("timings") or {}).get("total_s")
    entry["patients_in_table"] = patients_in_table(url)
    runs = str(args.runs)

    if "search" not in args.skip:
        out = STEP_DIR / f"search-{n}.json"
        try:
            seconds["search"] = _script(
                "search.py",
                *("--database-url", url, "--patients", str(n), "--kinds", args.search_kinds),
                *("--samples", str(args.search_samples), "--runs", runs, "--output", str(out)),
            )
            result = json.loads(out.read_text())
            by_run = result["overall_runs"]
            entry["patient_search"] = {
                "app": by_run["app"]["p95_ms"],
                "raw": by_run["raw"]["p95_ms"],
                "app_p50": by_run["app"]["p50_ms"],
                "raw_p50": by_run["raw"]["p50_ms"],
                "ratio": by_run["ratio_p95"],
                "kinds": {
                    kind: {"app": k["app"]["p95_ms"], "raw": k["raw"]["p95_ms"]}
                    for kind, k in result["kinds_runs"].items()
                },
            }
        except (subprocess.CalledProcessError, KeyError, OSError, ValueError) as exc:
            entry["errors"]["search"] = repr(exc)

    if "fhir" not in args.skip:
        started = time.time()
        try:
            seconds["fhir"] = _script(
                "fhir_api.py",
                *("--database-url", url, "--patients", str(n)),
                *("--seconds", str(args.fhir_seconds), "--rounds", runs),
                *("--kinds", "search_name,search_encounter"),
                *("--encounters", args.fhir_encounters),
            )
            written = _newest_fhir(started)
            if written is None:
                raise FileNotFoundError("fhir_api.py wrote no fhir-api-postgresql-*.json")
            shutil.copyfile(written, STEP_DIR / f"fhir-{n}.json")
            report = json.loads(written.read_text())
            entry["fhir_projected"] = report.get("patients_projected")
            for kind in ("search_name", "search_encounter"):
                row = report["results"].get(kind)
                if row:
                    entry[f"fhir_{kind}"] = {
                        "app": fhir_figure(row["app"], "p95_ms"),
                        "raw": fhir_figure(row["raw"], "p95_ms"),
                        "app_req_per_s": fhir_figure(row["app"], "req_per_s"),
                    }
        except (subprocess.CalledProcessError, KeyError, OSError, ValueError) as exc:
            entry["errors"]["fhir"] = repr(exc)

    if "registration" not in args.skip:
        out = STEP_DIR / f"registration-{n}.json"
        try:
            seconds["registration"] = _script(
                "registration.py",
                *("--existing-database-url", url, "--database-url", args.database_url),
                *("--seconds", str(args.registration_seconds), "--rounds", runs),
                *("--output", str(out)),
            )
            result = json.loads(out.read_text())
            entry["registration"] = {
                "per_s": result["registration_per_s"],
                "p95_ms": result["registration_p95_ms"],
                "hello_per_s": result["hello_per_s"],
                "patients_before": result["database"]["patients_before"],
            }
        except (subprocess.CalledProcessError, KeyError, OSError, ValueError) as exc:
            entry["errors"]["registration"] = repr(exc)
    if not entry["errors"]:
        del entry["errors"]
    return entry


# --- summary --------------------------------------------------------------------------------


def _series(sizes: dict, key: str, side: str) -> list[tuple[int, dict]]:
    """(patients, figure) for every size that has it, smallest first."""
    out = []
    for n in sorted(sizes, key=int):
        figure = (sizes[n].get(key) or {}).get(side)
        if figure and figure.get("median") is not None:
            out.append((int(n), figure))
    return out


def growth_of(points: list[tuple[int, dict]]) -> dict | None:
    """From the smallest size to the largest: the ratio of the medians, and the ratio per
    tenfold growth of the index (the ratio to the power 1 / decades)."""
    if len(points) < 2:
        return None
    (n0, first), (n1, last) = points[0], points[-1]
    ratio = last["median"] / first["median"]
    decades = math.log10(n1 / n0)
    return {
        "from_patients": n0,
        "to_patients": n1,
        "from": first["median"],
        "to": last["median"],
        "ratio": round(ratio, 3),
        "per_tenfold": round(ratio ** (1 / decades), 3) if decades > 0 else None,
    }


def _kinds(sizes: dict) -> list[str]:
    return sorted(
        {k for e in sizes.values() for k in (e.get("patient_search") or {}).get("kinds", {})}
    )


def _kind_series(sizes: dict, kind: str) -> list[tuple[int, dict]]:
    out = []
    for n in sorted(sizes, key=int):
        figure = ((sizes[n].get("patient_search") or {}).get("kinds") or {}).get(kind)
        if figure:
            out.append((int(n), figure["app"]))
    return out


def summarise(sizes: dict) -> dict:
    """Smallest to largest size: ``p95`` per search series and side, ``patient_search_kinds``
    (the REST path's p95 per kind), ``registration`` (per_s, p95_ms)."""
    p95 = {}
    for key, _ours, _base in SEARCH_SERIES:
        sides = {side: growth_of(_series(sizes, key, side)) for side in ("app", "raw")}
        if any(sides.values()):
            p95[key] = sides
    return {
        "p95": p95,
        "patient_search_kinds": {
            kind: found for kind in _kinds(sizes) if (found := growth_of(_kind_series(sizes, kind)))
        },
        "registration": {
            side: found
            for side in ("per_s", "p95_ms")
            if (found := growth_of(_series(sizes, "registration", side)))
        },
    }


def _fmt_n(n: int) -> str:
    return f"{n:,}"


def _f(x: float) -> str:
    """3 significant figures or so, without exponent notation."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def markdown(result: dict) -> str:
    sizes = result["sizes"]
    ordered = sorted(sizes, key=int)
    head = " | ".join(_fmt_n(int(n)) for n in ordered)
    lines = [
        f"Growth, {', '.join(_fmt_n(int(n)) for n in ordered)} patients "
        f"({result['when']}, {result['machine']['cpus']} CPUs)",
        "",
        "Each figure: the median of the runs after a warm-up (min–max in brackets). p95 in ms.",
        "",
        f"| case | {head} | largest / smallest | per tenfold |",
        "|---|" + "---:|" * len(ordered) + "---:|---:|",
    ]

    growth = result["growth"]

    def row(label: str, key: str, side: str, found: dict | None) -> None:
        cells = []
        for n in ordered:
            figure = (sizes[n].get(key) or {}).get(side)
            if figure and figure.get("median") is not None:
                cells.append(f"{_f(figure['median'])} ({_f(figure['min'])}–{_f(figure['max'])})")
            else:
                cells.append("—")
        ratio = f"×{found['ratio']:.2f}" if found else "—"
        tenfold = f"×{found['per_tenfold']:.2f}" if found and found["per_tenfold"] else "—"
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} | {tenfold} |")

    for key, ours, base in SEARCH_SERIES:
        row(f"{ours} p95", key, "app", growth["p95"].get(key, {}).get("app"))
        row(f"{base} p95", key, "raw", growth["p95"].get(key, {}).get("raw"))
    for kind, found in growth["patient_search_kinds"].items():
        cells = {int(n): f for n, f in _kind_series(sizes, kind)}
        lines.append(
            f"| · patient search {kind}, REST p95 | "
            + " | ".join(_f(cells[int(n)]["median"]) if int(n) in cells else "—" for n in ordered)
            + f" | ×{found['ratio']:.2f} | ×{found['per_tenfold']:.2f} |"
        )
    registration = growth["registration"]
    row("registrations/s", "registration", "per_s", registration.get("per_s"))
    row("registration p95 ms (8 clients)", "registration", "p95_ms", registration.get("p95_ms"))
    lines.append("")
    first, last = _fmt_n(int(ordered[0])), _fmt_n(int(ordered[-1]))
    sentences = []
    for key, ours, _base in SEARCH_SERIES:
        app, raw = growth["p95"].get(key, {}).get("app"), growth["p95"].get(key, {}).get("raw")
        if app:
            sentences.append(
                f"- {ours}: p95 {_f(app['from'])} ms at {first} → {_f(app['to'])} ms at {last}, "
                f"**×{app['ratio']:.2f}** (×{app['per_tenfold']:.2f} per tenfold)"
                + (f"; its baseline ×{raw['ratio']:.2f}" if raw else "")
                + "."
            )
    per_s = registration.get("per_s")
    if per_s:
        sentences.append(
            f"- registration: {_f(per_s['from'])}/s at {first} → "
            f"{_f(per_s['to'])}/s at {last}, ×{per_s['ratio']:.2f}."
        )
    kinds = list(growth["patient_search_kinds"].items())
    if kinds:
        worst = max(kinds, key=lambda kv: kv[1]["ratio"])
        sentences.append(
            f"- patient search by kind (REST path p95, {first} → {last}): "
            + ", ".join(f"{k} ×{v['ratio']:.2f}" for k, v in kinds)
            + f"; the steepest is {worst[0]}."
        )
    lines += ["How p95 grows with the index:", "", *sentences, ""]
    errors = {n: e["errors"] for n, e in sizes.items() if e.get("errors")}
    if errors:
        lines += ["Steps that failed: " + json.dumps(errors, ensure_ascii=False), ""]
    lines += [
        "Plots: `growth-patient-search.png`, `growth-fhir-search.png`, `growth-registration.png`.",
        "",
    ]
    return "\n".join(lines)


# --- plots ----------------------------------------------------------------------------------


def _errorbar(ax, points, label, style) -> None:
    xs = [n for n, _f in points]
    ys = [f["median"] for _n, f in points]
    low = [f["median"] - f["min"] for _n, f in points]
    high = [f["max"] - f["median"] for _n, f in points]
    ax.errorbar(xs, ys, yerr=[low, high], label=label, capsize=3, marker="o", **style)


def _axes(ax, sizes: list[int], ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.minorticks_off()
    if len(sizes) == 1:
        ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the legend above the lines
    ax.set_xlabel("patients in the index (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=8, loc="upper left", ncol=3 if entries > 4 else 1)


OURS = {"linestyle": "-"}
BASE = {"linestyle": "--"}
C0 = {"color": "C0"}


def _save(plt, fig, name: str) -> Path:
    fig.tight_layout()
    path = RESULTS_DIR / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_patient_search(plt, sizes: dict, ns: list[int]) -> Path | None:
    if not _series(sizes, "patient_search", "app"):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _errorbar(left, _series(sizes, "patient_search", "app"), "REST path (app)", OURS | C0)
    _errorbar(left, _series(sizes, "patient_search", "raw"), "same SQL, raw (baseline)", BASE | C0)
    _axes(left, ns, "p95 ms", "Patient search, every kind pooled, page of 20")
    for kind in _kinds(sizes):
        _errorbar(right, _kind_series(sizes, kind), kind, {"linestyle": "-", "linewidth": 1})
    _axes(right, ns, "p95 ms (REST path)", "Patient search by kind")
    return _save(plt, fig, "growth-patient-search.png")


def _plot_fhir_search(plt, sizes: dict, ns: list[int]) -> Path | None:
    lines = [
        (key, side, label, style | {"color": color})
        for (key, ours, base), color in zip(SEARCH_SERIES[1:], ("C0", "C2"), strict=True)
        for side, label, style in (("app", ours, OURS), ("raw", f"{base} ({key[5:]})", BASE))
        if _series(sizes, key, side)
    ]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, side, label, style in lines:
        _errorbar(ax, _series(sizes, key, side), label, style)
    _axes(ax, ns, "p95 ms", "FHIR search, page of 20, 4 clients, 2 gunicorn workers")
    return _save(plt, fig, "growth-fhir-search.png")


def _plot_registration(plt, sizes: dict, ns: list[int]) -> Path | None:
    if not _series(sizes, "registration", "per_s"):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    _errorbar(left, _series(sizes, "registration", "per_s"), "patient + visit", OURS)
    _axes(left, ns, "registrations/s", "Registration, 8 clients, 2 gunicorn workers")
    _errorbar(right, _series(sizes, "registration", "p95_ms"), "patient + visit", OURS)
    _axes(right, ns, "p95 ms", "Registration latency")
    return _save(plt, fig, "growth-registration.png")


def plot(result: dict) -> list[Path]:
    """The PNGs that have data (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    ns = sorted(int(n) for n in sizes)
    drawn = (
        _plot_patient_search(plt, sizes, ns),
        _plot_fhir_search(plt, sizes, ns),
        _plot_registration(plt, sizes, ns),
    )
    return [path for path in drawn if path is not None]


# --- main -----------------------------------------------------------------------------------


def finish(result: dict) -> None:
    result["growth"] = summarise(result["sizes"])
    write_json(OUT, result)
    OUT.with_suffix(".md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("HIS_BENCH_POSTGRES_URL", PG),
        help="the PostgreSQL server; the provinces are his_bench_<N> on it",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SIZES),
        help="patients, comma-separated (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep a his_bench_<N> that holds N patients already"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--search-kinds", default=SEARCH_KINDS)
    parser.add_argument("--search-samples", type=int, default=100, help="per kind, path, run")
    parser.add_argument("--fhir-seconds", type=float, default=4.0, help="per round and server")
    parser.add_argument(
        "--fhir-encounters",
        default="auto",
        help="fhir_api.py --encounters: auto (default: every visit and examination projected up "
        "to 1,000,000 records, so the Encounter index has its real size at 10,000 and 100,000; "
        "above that only the sampled patients', since 3,000,000 would take ~25 min), all, "
        "sample or none",
    )
    parser.add_argument("--registration-seconds", type=float, default=5.0, help="per round")
    parser.add_argument(
        "--skip", default="", help="comma-separated steps to leave out: search,fhir,registration"
    )
    parser.add_argument(
        "--province-arg",
        action="append",
        default=[],
        help="an extra argument for province.py (repeat), e.g. --province-arg=--seed=7",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sizes of the existing growth.json that this run does not measure",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plots and growth.md from growth.json"
    )
    args = parser.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}

    if args.plot_only:
        result = json.loads(OUT.read_text())
        finish(result)
        for path in plot(result):
            log(f"wrote {path}")
        print(OUT.with_suffix(".md").read_text())
        return

    sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    previous = json.loads(OUT.read_text())["sizes"] if args.merge and OUT.exists() else {}
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "method": {
            "runs": args.runs,
            "search_kinds": args.search_kinds,
            "search_samples": args.search_samples,
            "fhir_seconds": args.fhir_seconds,
            "fhir_encounters": args.fhir_encounters,
            "registration_seconds": args.registration_seconds,
            "value": "median of the runs; min, max and runs beside it",
        },
        "sizes": dict(previous),
    }
    started = time.monotonic()
    for n in sizes:
        log(f"--- {n:,} patients")
        entry = measure(n, args)
        entry["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        if args.merge and str(n) in previous:
            # the steps skipped now keep their earlier figures (and their own "when")
            kept = {k: v for k, v in previous[str(n)].items() if k not in entry}
            kept["seconds"] = previous[str(n)].get("seconds", {}) | entry["seconds"]
            entry = (
                kept | entry | {"seconds": kept["seconds"], "merged_from": previous[str(n)]["when"]}
            )
        result["sizes"][str(n)] = entry
        result["seconds"] = round(time.monotonic() - started)
        finish(result)  # after every size: a long run that stops keeps what it measured
    for path in plot(result):
        log(f"wrote {path}")
    log(f"wrote {OUT} and {OUT.with_suffix('.md')} in {result['seconds']} s")
    print(OUT.with_suffix(".md").read_text())
    if any(e.get("errors") for e in result["sizes"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
