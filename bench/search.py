"""Patient search on a bench province: the app's statement through the ORM, beside the
same SQL run raw through the driver, interleaved in one run.

    .venv/bin/python bench/search.py --database-url postgresql://postgres@127.0.0.1:5432/his_bench_1000000
    .venv/bin/python bench/search.py --database-url sqlite --patients 100000

For each query kind (a name typed without accents, given name + family name, a rare
name, a CCCD, a phone, a 10-digit BHYT number, an MRN, …) it samples realistic query
strings from the loaded data (seeded), warms up, then times every query on both paths,
alternating which goes first:

* ``app``: ``patient_search.search`` for a page of 20 through a SQLAlchemy ``Session``, as
  the REST API and the reception screen run it (without the REST answer's eager loads):
  from the first statement to the list of ``Patient`` objects;
* ``raw``: the same statements (one for a number, two to five for a name, see
  ``patient_search``) with the same parameters, recorded from SQLAlchemy once per query
  string, executed one after the other through the DBAPI cursor (psycopg / sqlite3), each
  with ``fetchall()``, parsed and planned by the database every time.

The timing is done in ``--runs`` runs (3), each sampling every kind afresh and giving its
own p95; the JSON pools every run's samples per kind and reports the median of the runs' p95s
with min, max and each run (``overall_runs``, ``kinds_runs``).

Both paths open a transaction for the search (inside the timing) and roll it back
(outside). ``raw`` is the floor: what the database itself needs for this SQL, plus a round
trip per statement. The ratio app/raw is therefore the cost of the ORM path, and the raw
p95 the cost of the queries the app chose. Results:
``bench/results/search-<backend>-<N>.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from common import (
    META_TABLE,
    RESULTS_DIR,
    Target,
    display_url,
    log,
    resolve,
    spread,
    write_json,
)
from sqlalchemy import bindparam, event, text
from sqlalchemy.orm import Session

from his.db import make_engine
from his.services.patient_search import SearchQuery, search

PAGE_SIZE = 20  # the page the REST API and the reception screen fetch
TARGET_P95_MS = 50.0
TARGET_RATIO = 2.0
MIN_SAMPLES = 40  # per kind and path in a run, even past its time budget

# The kinds the target is judged on, then stress kinds a receptionist also produces
# while typing (reported, not part of "overall").
KINDS = ("name", "given_family", "rare_name", "cccd", "phone", "bhyt10", "mrn")
EXTRA_KINDS = ("bhyt15", "family_only", "typing_prefix")
FIXED = {
    "name": ["nguyen van an", "tran thi thu"],
    "given_family": ["an nguyen"],
    "family_only": ["nguyen", "tran", "le"],
    "typing_prefix": ["nguyen van a", "tran thi t", "le v"],
}


@dataclass
class Timings:
    ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        if not self.ms:
            return {"n": 0}
        return {
            "n": len(self.ms),
            "p50_ms": round(percentile(self.ms, 50), 3),
            "p95_ms": round(percentile(self.ms, 95), 3),
            "mean_ms": round(statistics.fmean(self.ms), 3),
            "max_ms": round(max(self.ms), 3),
        }


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the queries -----------------------------------------------------------------------------


def sample_queries(conn, per_kind: int, seed: int, kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """Realistic query strings drawn (seeded) from the loaded patients."""
    rng = random.Random(seed)  # noqa: S311 (choosing benchmark inputs)
    lo, hi = conn.execute(text("SELECT min(id), max(id) FROM patient WHERE id > 200")).one()
    ids = sorted({rng.randint(lo, hi) for _ in range(per_kind * 8)})
    rows = conn.execute(
        text(
            "SELECT id, search_name, given_name, family_name, phone, mrn FROM patient "
            "WHERE id IN :ids ORDER BY id"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ids},
    ).all()
    rng.shuffle(rows)
    by_type: dict[str, list[str]] = {}
    for kind in ("cccd", "bhyt"):
        by_type[kind] = list(
            conn.execute(
                text(
                    "SELECT value FROM patient_identifier WHERE type = :t "
                    "AND patient_id IN :ids ORDER BY patient_id"
                ).bindparams(bindparam("ids", expanding=True)),
                {"t": kind, "ids": ids},
            ).scalars()
        )
        rng.shuffle(by_type[kind])
    cards = list(
        conn.execute(
            text(
                "SELECT card_number FROM coverage WHERE patient_id IN :ids ORDER BY patient_id"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        ).scalars()
    )
    rng.shuffle(cards)
    rare = list(
        conn.execute(
            text(
                "SELECT search_name FROM patient GROUP BY search_name "
                "ORDER BY count(*), search_name LIMIT :n"
            ),
            {"n": per_kind * 3},
        ).scalars()
    )
    phones = [r.phone for r in rows if r.phone]

    def phone_as_typed(phone: str, n: int) -> str:
        # Receptionists type phones plain, grouped, or in the international form.
        if n % 3 == 1:
            return f"{phone[:4]} {phone[4:7]} {phone[7:]}"
        if n % 3 == 2:
            return f"+84 {phone[1:4]} {phone[4:7]} {phone[7:]}"
        return phone

    def unfold_given(r) -> str:
        given = r.search_name.split()[-1]
        family = r.search_name.split()[0]
        return f"{given} {family}"

    pools = {
        "name": FIXED["name"] + [r.search_name for r in rows],
        "given_family": FIXED["given_family"] + [unfold_given(r) for r in rows],
        "rare_name": rng.sample(rare, min(len(rare), per_kind)),
        "cccd": by_type["cccd"],
        "phone": [phone_as_typed(p, n) for n, p in enumerate(phones)],
        "bhyt10": by_type["bhyt"],
        "mrn": [r.mrn for r in rows],
        "bhyt15": cards,
        "family_only": FIXED["family_only"],
        "typing_prefix": FIXED["typing_prefix"],
    }
    out = {}
    for kind in kinds:
        seen, chosen = set(), []
        for q in pools[kind]:
            if q not in seen:
                seen.add(q)
                chosen.append(q)
            if len(chosen) == per_kind:
                break
        out[kind] = chosen
    return out


# --- the two paths ----------------------------------------------------------------------------


class Paths:
    """``app``, ``raw`` and, with ``--variant``, ``fix`` (another search function through the
    ORM) and ``fix_raw``. Each call returns (milliseconds, patient ids in order)."""

    def __init__(self, target: Target, variant: Callable | None):
        self.target = target
        self.engine = make_engine(target.url)
        self.sa_conn = self.engine.connect()  # checked out once: no pool ping per query
        self.dialect = self.engine.dialect
        self.searches: dict[str, Callable] = {"app": search}
        if variant is not None:
            self.searches["fix"] = variant
        if target.backend == "postgresql":
            # Raw: SQL text as a client like psql sends it, parsed and planned every time.
            self.raw = psycopg.connect(target.conninfo, prepare_threshold=None)
        else:
            self.raw = sqlite3.connect(target.path, isolation_level=None, cached_statements=0)
        # (search, q) -> the statements it runs with their parameters, and the ids it found
        self.sql_cache: dict[tuple[str, str], tuple[list[tuple[str, Any]], list[int]]] = {}

    def set_option(self, setting: str) -> None:
        """A session setting (``name=value``) on both connections (PostgreSQL)."""
        name, _, value = setting.partition("=")
        if self.target.backend != "postgresql" or not name.replace("_", "").isalnum():
            raise SystemExit(f"--set works on PostgreSQL with name=value, not {setting!r}")
        self.sa_conn.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
        self.sa_conn.commit()
        self.raw.execute("SELECT set_config(%s, %s, false)", [name, value])
        self.raw.commit()

    def names(self) -> list[str]:
        names = ["app", "raw"]
        if "fix" in self.searches:
            names += ["fix", "fix_raw"]
        return names

    def call(self, path: str, q: str) -> tuple[float, list[int]]:
        if path.endswith("raw"):
            return self._raw("app" if path == "raw" else "fix", q)
        return self._orm(path, q)

    def _orm(self, search: str, q: str) -> tuple[float, list[int]]:
        """The search as the app runs it (``patient_search.search``, as ``search_patients``
        calls it, without the eager loads of identifiers, allergies and cards that the REST
        answer adds): from the first statement to the page's ``Patient`` objects."""
        with Session(bind=self.sa_conn) as session:
            start = time.perf_counter_ns()
            patients, _more = self.searches[search](session, SearchQuery(q=q), 0, PAGE_SIZE)
            elapsed = time.perf_counter_ns() - start
            found = [p.id for p in patients]
            session.rollback()
        return elapsed / 1e6, found

    def sql(self, search: str, q: str) -> tuple[list[tuple[str, Any]], list[int]]:
        """Every statement the search runs for ``q``, in order, with its parameters, as
        SQLAlchemy hands them to the driver, and the ids found: recorded from one run (the
        same data gives the same steps)."""
        key = (search, q)
        cached = self.sql_cache.get(key)
        if cached is None:
            statements: list[tuple[str, Any]] = []

            def record(_conn, _cursor, statement, parameters, _context, _many):
                if not statement.startswith("BEGIN"):  # the raw path opens its own
                    statements.append((statement, parameters))

            event.listen(self.engine, "before_cursor_execute", record)
            try:
                _ms, ids = self._orm(search, q)
            finally:
                event.remove(self.engine, "before_cursor_execute", record)
            cached = self.sql_cache[key] = (statements, ids)
        return cached

    def _raw(self, search: str, q: str) -> tuple[float, list[int]]:
        statements, ids = self.sql(search, q)  # recorded before timing: the floor is the database
        raw = self.raw
        if self.target.backend == "postgresql":
            start = time.perf_counter_ns()
            with raw.cursor() as cur:
                for sql, parameters in statements:
                    cur.execute(sql, parameters)  # the implicit BEGIN goes first, as in the app
                    rows = cur.fetchall()
            elapsed = time.perf_counter_ns() - start
            raw.rollback()
        else:
            start = time.perf_counter_ns()
            cur = raw.cursor()
            cur.execute("BEGIN")  # the app's engine opens every transaction with BEGIN
            for sql, parameters in statements:
                rows = cur.execute(sql, parameters).fetchall()
            elapsed = time.perf_counter_ns() - start
            cur.execute("ROLLBACK")
        # The last statement loads the page's rows (a name's page unordered): the ids' order.
        order = {pid: n for n, pid in enumerate(ids)}
        return elapsed / 1e6, sorted((r[0] for r in rows), key=lambda pid: order.get(pid, -1))

    def explain(self, search: str, q: str) -> str:
        """The plan of every statement the search runs for ``q``."""
        plans = []
        for sql, parameters in self.sql(search, q)[0]:
            if self.target.backend == "postgresql":
                with self.raw.cursor() as cur:
                    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, parameters)
                    plan = "\n".join(r[0] for r in cur.fetchall())
                self.raw.rollback()
            else:
                rows = self.raw.execute("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
                plan = "\n".join(f"{r[0]:>3} {r[1]:>3} {r[3]}" for r in rows)
            plans.append(plan)
        return "\n--\n".join(plans)

    def settings(self) -> dict:
        if self.target.backend == "postgresql":
            with self.raw.cursor() as cur:
                cur.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', "
                    "'work_mem', 'effective_cache_size', 'random_page_cost', 'jit', "
                    "'plan_cache_mode', 'max_parallel_workers_per_gather', 'server_version')"
                )
                out = dict(cur.fetchall())
            self.raw.rollback()
            driver = self.sa_conn.connection.driver_connection
            out["psycopg_prepare_threshold_app"] = driver.prepare_threshold
            return out
        return {"sqlite_version": sqlite3.sqlite_version}

    def close(self) -> None:
        self.sa_conn.close()
        self.engine.dispose()
        self.raw.close()


# --- the run --------------------------------------------------------------------------------


def code_version() -> dict:
    """The commit the app path ran, and whether his/ differed from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "his"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "his_modified": bool(dirty)}


def load_meta(paths: Paths) -> dict:
    try:
        value = paths.sa_conn.execute(text(f"SELECT meta FROM {META_TABLE}")).scalar()  # noqa: S608
    except Exception:  # a database not made by province.py
        paths.sa_conn.rollback()
        return {}
    paths.sa_conn.rollback()
    return json.loads(value) if value else {}


def run(args: argparse.Namespace) -> dict:
    target = resolve(args.database_url, args.patients)
    variant = None
    if args.variant:
        module_name, _, func_name = args.variant.partition(":")
        variant = getattr(importlib.import_module(module_name), func_name or "search")
    code = code_version()  # before the run: the app module is imported already
    paths = Paths(target, variant)
    for setting in args.set or []:
        paths.set_option(setting)
    if args.variant_prepare:
        module = importlib.import_module(args.variant.partition(":")[0])
        module.prepare(paths.sa_conn)
    meta = load_meta(paths)
    patients = meta.get("patients") or args.patients
    kinds = tuple(args.kinds.split(",")) if args.kinds else KINDS + EXTRA_KINDS
    queries = sample_queries(paths.sa_conn, args.queries_per_kind, args.seed, kinds)
    paths.sa_conn.rollback()
    total_patients = paths.sa_conn.execute(text("SELECT count(*) FROM patient")).scalar()
    paths.sa_conn.rollback()
    log(f"{display_url(target)}: {total_patients:,} patients; {len(kinds)} kinds")
    load_before = os.getloadavg()

    # Warm-up: every query on every path; also checks both paths return the same rows.
    mismatches: list[dict] = []
    rows_seen: dict[str, list[int]] = {k: [] for k in kinds}
    for _ in range(args.warmup):
        for kind in kinds:
            for q in queries[kind]:
                results = {p: paths.call(p, q)[1] for p in paths.names()}
                if results["app"] != results["raw"] and len(mismatches) < 20:
                    mismatches.append({"kind": kind, "q": q, "app": results["app"][:5]})
    for kind in kinds:
        for q in queries[kind]:
            rows_seen[kind].append(len(paths.call("raw", q)[1]))

    # Timed runs: each run samples every kind afresh (``--samples`` per kind and path, within
    # its share of ``--kind-budget``), so each run gives its own p95; the per-kind tables and
    # "overall" pool every run's samples.
    run_timings: list[dict[str, dict[str, Timings]]] = []
    rng = random.Random(args.seed)  # noqa: S311
    order = paths.names()
    rounds = 0
    started = time.perf_counter()
    for run_no in range(args.runs):
        timings = {k: {p: Timings() for p in paths.names()} for k in kinds}
        run_timings.append(timings)
        spent = dict.fromkeys(kinds, 0.0)
        budget = args.kind_budget / args.runs
        active = list(kinds)
        while active:
            rounds += 1
            work = [(k, q) for k in active for q in queries[k]]
            rng.shuffle(work)
            for kind, q in work:
                t0 = time.perf_counter()
                order = order[1:] + order[:1]  # rotate who goes first
                for path in order:
                    ms, _ids = paths.call(path, q)
                    timings[kind][path].ms.append(ms)
                spent[kind] += time.perf_counter() - t0
            active = [
                k
                for k in active
                if len(timings[k]["app"].ms) < args.samples
                and not (spent[k] > budget and len(timings[k]["app"].ms) >= MIN_SAMPLES)
            ]
            sys.stderr.write(
                f"\rrun {run_no + 1}/{args.runs}, round {rounds}: "
                f"{len(active)} kinds still sampling   "
            )
            sys.stderr.flush()
    sys.stderr.write("\n")
    elapsed = time.perf_counter() - started
    timings = {
        k: {p: Timings([ms for run in run_timings for ms in run[k][p].ms]) for p in paths.names()}
        for k in kinds
    }

    result_kinds = {}
    for kind in kinds:
        entry = {
            "queries": queries[kind],
            "rows_returned_avg": round(statistics.fmean(rows_seen[kind]), 1),
            "extra": kind not in KINDS,
        }
        for p in paths.names():
            entry[p] = timings[kind][p].summary()
        entry["ratio_p50"] = round(entry["app"]["p50_ms"] / entry["raw"]["p50_ms"], 2)
        entry["ratio_p95"] = round(entry["app"]["p95_ms"] / entry["raw"]["p95_ms"], 2)
        if "fix" in entry:
            entry["fix_vs_app_p95"] = round(entry["fix"]["p95_ms"] / entry["app"]["p95_ms"], 3)
            entry["fix_ratio_p95"] = round(entry["fix"]["p95_ms"] / entry["fix_raw"]["p95_ms"], 2)
        result_kinds[kind] = entry

    def pooled(selected: list[str]) -> dict:
        out = {}
        for p in paths.names():
            t = Timings([ms for k in selected for ms in timings[k][p].ms])
            out[p] = t.summary()
        if out["app"].get("n"):
            out["ratio_p50"] = round(out["app"]["p50_ms"] / out["raw"]["p50_ms"], 2)
            out["ratio_p95"] = round(out["app"]["p95_ms"] / out["raw"]["p95_ms"], 2)
        return out

    judged = [k for k in kinds if k in KINDS]
    overall = pooled(judged)

    def run_figures(run: dict[str, dict[str, Timings]]) -> dict:
        """One run: p50/p95 per path over the judged kinds pooled, and per kind."""
        figures: dict = {"overall": {}, "kinds": {}}
        for p in paths.names():
            figures["overall"][p] = Timings([ms for k in judged for ms in run[k][p].ms]).summary()
        for k in kinds:
            figures["kinds"][k] = {p: run[k][p].summary() for p in paths.names()}
        return figures

    runs = [run_figures(run) for run in run_timings]

    def across(pick: Callable[[dict], float]) -> dict:
        return spread([pick(r) for r in runs])

    # The figures the suite reports: the median of the runs' p95s, with min, max and each run.
    overall_runs: dict = {}
    if judged:
        for p in paths.names():
            overall_runs[p] = {
                "p50_ms": across(lambda r, p=p: r["overall"][p]["p50_ms"]),
                "p95_ms": across(lambda r, p=p: r["overall"][p]["p95_ms"]),
            }
        overall_runs["ratio_p95"] = spread(
            [r["overall"]["app"]["p95_ms"] / r["overall"]["raw"]["p95_ms"] for r in runs]
        )
    kinds_runs = {
        k: {
            p: {"p95_ms": across(lambda r, k=k, p=p: r["kinds"][k][p]["p95_ms"])}
            for p in paths.names()
        }
        for k in kinds
    }
    worst_p95 = max((result_kinds[k]["app"]["p95_ms"] for k in judged), default=0.0)
    worst_ratio = max((result_kinds[k]["ratio_p95"] for k in judged), default=0.0)
    target_fix = None
    if variant is not None:
        fix_worst_p95 = max(result_kinds[k]["fix"]["p95_ms"] for k in judged)
        fix_worst_ratio = max(result_kinds[k]["fix_ratio_p95"] for k in judged)
        fix_ratio = overall["fix"]["p95_ms"] / overall["fix_raw"]["p95_ms"]
        target_fix = {
            "worst_kind_p95_ms": fix_worst_p95,
            "worst_kind_ratio_p95": fix_worst_ratio,
            "overall_ratio_p95": round(fix_ratio, 2),
            "met_overall": overall["fix"]["p95_ms"] < TARGET_P95_MS and fix_ratio <= TARGET_RATIO,
            "met_every_kind": fix_worst_p95 < TARGET_P95_MS and fix_worst_ratio <= TARGET_RATIO,
        }
    explain = {}
    if args.explain:
        for kind in kinds:
            explain[kind] = {"q": queries[kind][0], "plan": paths.explain("app", queries[kind][0])}
            if variant is not None:
                explain[kind]["fix_plan"] = paths.explain("fix", queries[kind][0])
    result = {
        "backend": target.backend,
        "patients": patients,
        "patients_in_table": total_patients,
        "database": display_url(target),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code": code,
        "method": {
            "page": PAGE_SIZE,
            "queries_per_kind": args.queries_per_kind,
            "samples_per_kind_target": args.samples,
            "warmup_rounds": args.warmup,
            "runs": args.runs,
            "rounds": rounds,
            "seconds": round(elapsed, 1),
            "variant": args.variant,
            "session_settings": args.set or [],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": paths.settings(),
        "load": meta,
        "row_mismatches": mismatches,
        "kinds": result_kinds,
        "overall": overall,
        "overall_with_extra": pooled(list(kinds)),
        "overall_runs": overall_runs,
        "kinds_runs": kinds_runs,
        "runs": runs,
        "target": {
            "p95_under_ms": TARGET_P95_MS,
            "p95_ratio_at_most": TARGET_RATIO,
            "worst_kind_p95_ms": worst_p95,
            "worst_kind_ratio_p95": worst_ratio,
            "met_overall": overall["app"]["p95_ms"] < TARGET_P95_MS
            and overall["ratio_p95"] <= TARGET_RATIO,
            "met_every_kind": worst_p95 < TARGET_P95_MS and worst_ratio <= TARGET_RATIO,
        },
        "target_fix": target_fix,
        "explain": explain,
    }
    paths.close()
    return result


def markdown(result: dict) -> str:
    load = result.get("load") or {}
    timings = load.get("timings") or {}
    has_fix = any("fix" in k for k in result["kinds"].values())
    lines = [
        f"### Patient search, {result['backend']}, {result['patients']:,} patients"
        + (f" (commit {result['code']['commit']})" if result.get("code") else ""),
        "",
        f"Load: {timings.get('total_s', '?')} s in all ({timings.get('load_rows_s', '?')} s rows, "
        f"{timings.get('create_indexes_s', '?')} s indexes). "
        f"Page of {result['method']['page']}; ms per query, one client; "
        f"load average {result['machine']['loadavg_before'][0]}.",
        "",
        "| kind | e.g. | rows | app p50 | app p95 | raw p50 | raw p95 | p95 app/raw |"
        + (" fix p95 | fix raw p95 |" if has_fix else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if has_fix else ""),
    ]
    for kind, e in result["kinds"].items():
        name = f"{kind} *" if e["extra"] else kind
        row = (
            f"| {name} | `{e['queries'][0]}` | {e['rows_returned_avg']:g} "
            f"| {e['app']['p50_ms']:.1f} | {e['app']['p95_ms']:.1f} "
            f"| {e['raw']['p50_ms']:.1f} | {e['raw']['p95_ms']:.1f} | {e['ratio_p95']:.2f} |"
        )
        if has_fix:
            row += f" {e['fix']['p95_ms']:.1f} | {e['fix_raw']['p95_ms']:.1f} |"
        lines.append(row)
    o = result["overall"]
    row = (
        f"| **overall** (unstarred) | | | {o['app']['p50_ms']:.1f} | {o['app']['p95_ms']:.1f} "
        f"| {o['raw']['p50_ms']:.1f} | {o['raw']['p95_ms']:.1f} | {o['ratio_p95']:.2f} |"
    )
    if has_fix:
        row += f" {o['fix']['p95_ms']:.1f} | {o['fix_raw']['p95_ms']:.1f} |"
    lines.append(row)
    t = result["target"]
    lines += [
        "",
        "\\* stress kinds (typing in progress, a 15-character card), not in *overall*.",
        "",
        f"Target (p95 < {t['p95_under_ms']:g} ms and ≤ {t['p95_ratio_at_most']:g}× raw): "
        f"overall {'met' if t['met_overall'] else 'NOT met'}; every kind "
        f"{'met' if t['met_every_kind'] else 'NOT met'} (worst p95 {t['worst_kind_p95_ms']:.1f} "
        f"ms, worst ratio {t['worst_kind_ratio_p95']:.2f}).",
    ]
    by_run = result.get("overall_runs") or {}
    if by_run:
        app, raw = by_run["app"]["p95_ms"], by_run["raw"]["p95_ms"]
        lines.append(
            f"Overall p95 over {len(app['runs'])} runs: app {app['median']:.1f} ms "
            f"(min {app['min']:.1f}, max {app['max']:.1f}), raw {raw['median']:.1f} ms "
            f"(min {raw['min']:.1f}, max {raw['max']:.1f})."
        )
    f = result.get("target_fix")
    if f:
        lines.append(
            f"Same target for `fix` ({result['method']['variant']}): overall "
            f"{'met' if f['met_overall'] else 'NOT met'} (ratio {f['overall_ratio_p95']:.2f}); "
            f"every kind {'met' if f['met_every_kind'] else 'NOT met'} (worst p95 "
            f"{f['worst_kind_p95_ms']:.1f} ms, worst ratio {f['worst_kind_ratio_p95']:.2f})."
        )
    if result["row_mismatches"]:
        lines.append(f"Row mismatches app vs raw: {len(result['row_mismatches'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--patients", type=int, default=1_000_000, help="to find the database")
    parser.add_argument(
        "--samples", type=int, default=100, help="timed searches per kind and path in each run"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs (each its own p95; median reported)"
    )
    parser.add_argument("--queries-per-kind", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="rounds over every query first")
    parser.add_argument(
        "--kind-budget", type=float, default=60.0, help="seconds per kind, all runs together"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--kinds", help="comma-separated subset of: " + ",".join(KINDS + EXTRA_KINDS)
    )
    parser.add_argument("--explain", action="store_true", help="store one plan per kind")
    parser.add_argument(
        "--variant",
        help="module[:function] searching like patient_search.search, timed as `fix`",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="PostgreSQL session setting on both paths, e.g. max_parallel_workers_per_gather=0",
    )
    parser.add_argument(
        "--variant-prepare",
        action="store_true",
        help="call the variant module's prepare(connection) first (e.g. to add its index)",
    )
    parser.add_argument(
        "--output", help="JSON path (default bench/results/search-<backend>-<N>.json)"
    )
    args = parser.parse_args(argv)
    result = run(args)
    out = args.output or RESULTS_DIR / f"search-{result['backend']}-{result['patients']}.json"
    write_json(Path(out), result)
    print(markdown(result))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
