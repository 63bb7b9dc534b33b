"""FHIR read and search throughput and latency with 2 gunicorn workers, beside the
machine's limit measured in the same run.

    DB=postgresql://postgres@127.0.0.1:5432/his_bench_20000
    .venv/bin/python bench/province.py --database-url $DB --patients 20000
    .venv/bin/python bench/fhir_api.py --database-url $DB

The province is bulk-loaded (COPY), so the script first projects what is not projected
yet: every Patient, and the Encounters (visits ``v{id}`` and examinations ``e{id}``; all of
them, or only those of the sampled patients: ``--encounters``), with the app's own mappers
and search values, written a batch at a time with COPY (see "the projection" below).
``--verify N`` then rebuilds N of each through the app's ``projection.store`` and compares.
Then it starts two servers with the same gunicorn settings (2 workers, gthread):

* ``app``: the HIS (``his:create_app()``) serving ``/fhir`` with a staff token: auth,
  scope check, audit row, stored JSON spliced into the Bundle;
* ``raw``: ``bench/fhir_raw_wsgi.py``, a bare WSGI function returning the same stored
  bytes with raw SQL (by key for a read; the same sub-selects for a search), no auth.

For each kind (read by id; Patient search by identifier, by family + given, by birth date;
``Encounter?patient=&date=ge&date=le``) both are driven by the same client threads
(keep-alive HTTP/1.1) for the same time, in alternating rounds, after checking that both
give the same answers. Each figure (requests per second, p50, p95) is the median of the
rounds, with the min, max and every round beside it; the ratios app/raw are those of the
medians. Results: ``bench/results/fhir-api-<backend>-<N>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlencode

import psycopg
from common import RESULTS_DIR, log, resolve, run_clients, write_json
from sqlalchemy import func, select

from his.db import Database
from his.services.demo import DEMO_PASSWORD

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
KINDS = ("read", "search_identifier", "search_name", "search_birthdate", "search_encounter")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- the projection ------------------------------------------------------------------
#
# The province is bulk-loaded, and one ``projection.store`` per record (an ORM load, a
# dozen statements) would take longer than the benchmark itself. The bulk projection
# writes what ``store`` writes for a new resource -- version 1, method POST, the same JSON
# and the same search values -- but a few thousand records at a time:
#
# * the rows are read with plain psycopg (a server-side cursor, no ORM objects) and handed
#   to the app's own mapper functions (``patient_resource``, ``visit_resource``,
#   ``examination_resource``) as plain attribute bags: the JSON is the mapper's;
# * what a mapper looks up per record is answered from memory: the names of
#   administrative units (read for a whole batch with ``unit_name``'s own query), whether
#   a doctor is a Practitioner (the app's function, asked once per user), rooms through a
#   cached ``session.get``, an examination's diagnoses loaded for the whole batch with the
#   mapper's own filter and order;
# * ``fold_vi`` (what string search values are folded with) is memoised while the
#   projection runs: names, cities and communes repeat across patients; the mappers'
#   ``drop_empty`` is swapped for an equivalent doing a third of the work;
# * the three tables are written with COPY by a writer thread while the next batch is
#   mapped, the ``rid`` of each resource reserved from its sequence beforehand.
#
# ``--verify N`` rebuilds N records of each type through ``projection.store`` with the
# registered builder, in a transaction rolled back afterwards, and compares.

PROJECTED_TYPES = ("Patient", "Encounter")
# --encounters auto projects every visit and examination up to this many (the synthetic
# province's ~160,000 patients; five minutes or so), else only the sampled patients'.
AUTO_ALL_ENCOUNTERS = 1_000_000
_RESOURCE_COLUMNS = (
    "rid, resource_type, resource_id, version_id, last_updated, deleted, content, "
    "patient_id, facility_id"
)
_VERSION_COLUMNS = (
    "rid, resource_type, resource_id, version_id, last_updated, deleted, method, content"
)
_VALUE_FIELDS = ("system", "code", "text", "exact", "start", "end", "reference", "number")
_VALUE_OF = itemgetter("param", *_VALUE_FIELDS)
_TABLES = (
    ("fhir_resource", _RESOURCE_COLUMNS),
    ("fhir_resource_version", _VERSION_COLUMNS),
    (
        "fhir_search_value",
        'rid, resource_type, param, system, code, text, exact, start, "end", reference, number',
    ),
)


class _Rows(list):
    """What ``session.scalars(...)`` returns, for the one query it is asked."""

    def all(self) -> list:
        return list(self)


class _Lookups:
    """The session handed to the mappers: answers what they ask about one record from
    what was loaded in bulk, and refuses anything else (a mapper that starts asking
    something new must be taught here, not silently given a wrong answer)."""

    def __init__(self, session):
        self.session = session  # a real Session, for the few look-ups cached here
        self.diagnoses: list = []  # the current examination's, as the mapper selects them
        self.units: _UnitNames | None = None
        self._got: dict = {}

    def get(self, model, ident):
        from his.models import Room

        if model is not Room:
            raise NotImplementedError(f"bulk projection: session.get({model.__name__})")
        key = (model, ident)
        if key not in self._got:
            self._got[key] = self.session.get(model, ident)
        return self._got[key]

    def scalars(self, statement):
        from his.models import Diagnosis

        entity = statement.column_descriptions[0].get("entity")
        if entity is not Diagnosis:
            raise NotImplementedError(f"bulk projection: session.scalars({statement})")
        return _Rows(self.diagnoses)


def _cached(function, session):
    """``function(session, *key)`` asked once per key, always with the real session."""
    found: dict = {}

    def lookup(_session, *key):
        if key not in found:
            found[key] = function(session, *key)
        return found[key]

    return lookup


class _UnitNames:
    """``admin_units.unit_name`` for a batch of patients at a time: the names of the
    communes and provinces a batch mentions are read with the query ``unit_name`` itself
    runs (``admin_units._units``), one per level instead of one per code."""

    LEVELS = (("commune", "commune_code"), ("province", "province_code"))

    def __init__(self, session):
        import his.services.admin_units as admin_units

        self.session = session
        self.original = admin_units.unit_name
        self.units = admin_units._units  # the query unit_name runs, for many codes
        self.names: dict[tuple[str, str], str | None] = {}

    def prefetch(self, rows: list[dict]) -> None:
        for level, column in self.LEVELS:
            codes = sorted({r[column] for r in rows if r[column]} - {c for _l, c in self.names})
            if codes:
                found = self.units(self.session, level, codes)
                for code in codes:
                    unit = found.get(code)
                    self.names[(level, code)] = unit.name if unit else None

    def __call__(self, _session, level: str, code: str) -> str | None:
        if (level, code) not in self.names:
            self.names[(level, code)] = self.original(self.session, level, code)
        return self.names[(level, code)]


def _memoised(function, limit: int = 200_000):
    """``function(text)`` remembered (names and places repeat; address lines do not, hence
    the limit)."""
    found: dict = {}

    def call(text):
        value = found.get(text)
        if value is None:
            if len(found) >= limit:
                found.clear()
            value = found[text] = function(text)
        return value

    return call


def _drop_empty(resource: dict) -> dict:
    """``mappers.common.drop_empty`` (no None, "", [] or {} anywhere), the same result in
    about half the time: each value is looked at once, with no intermediate dict. Used
    while the bulk projection runs; ``--verify`` compares with the app's own path."""
    return _clean_dict(resource)


def _clean_dict(node: dict) -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            if value := _clean_dict(value):
                out[key] = value
        elif isinstance(value, list):
            if value := _clean_list(value):
                out[key] = value
        elif value is not None and value != "":
            out[key] = value
    return out


def _clean_list(items: list) -> list:
    out = []
    for value in items:
        if isinstance(value, dict):
            if value := _clean_dict(value):
                out.append(value)
        elif isinstance(value, list):
            if value := _clean_list(value):
                out.append(value)
        elif value is not None and value != "":
            out.append(value)
    return out


class _Bulk:
    """Writes new resources as ``projection.store`` does (version 1, method POST), a
    batch at a time, with COPY. The JSON and search values are made by the caller's
    thread; a writer thread copies the previous batch meanwhile, so the database works
    while Python maps."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(_libpq(url))
        # A throw-away bench database: no waiting for the WAL flush at each commit, and no
        # foreign-key trigger per row (the rows point at the resources written just
        # before them in the same transaction).
        self.conn.execute("SET synchronous_commit = off")
        self.conn.execute("SET session_replication_role = replica")
        self.conn.commit()
        self.sequence = psycopg.connect(_libpq(url), autocommit=True)
        self.pending: list[tuple[str, str, dict, int | None, int | None]] = []
        self.batches: queue.Queue = queue.Queue(maxsize=1)
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def add(self, resource_type: str, resource_id: str, built) -> None:
        self.pending.append(
            (resource_type, resource_id, built.resource, built.patient_id, built.facility_id)
        )

    def flush(self) -> int:
        """Hand the pending resources to the writer; returns how many."""
        from his.db import utcnow
        from his.fhirapi import searchparams
        from his.fhirapi.wire import dumps, instant

        self._check()
        if not self.pending:
            return 0
        now = utcnow()
        moment = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as store does
        stamp = instant(moment)
        rids = [
            r[0]
            for r in self.sequence.execute(
                "SELECT nextval(pg_get_serial_sequence('fhir_resource', 'rid')) "
                "FROM generate_series(1, %s)",
                (len(self.pending),),
            )
        ]
        index_values, value_of = searchparams.index_values, _VALUE_OF
        resources, versions, values = [], [], []
        for rid, (resource_type, resource_id, built, patient_id, facility_id) in zip(
            rids, self.pending, strict=True
        ):
            # projection.store, for a resource not stored yet
            resource = {"resourceType": resource_type, "id": resource_id}
            meta = {"versionId": "1", "lastUpdated": stamp}
            meta.update({k: v for k, v in built.get("meta", {}).items() if k not in meta})
            resource["meta"] = meta
            resource.update({k: v for k, v in built.items() if k not in ("id", "meta")})
            content = dumps(resource)
            row = (rid, resource_type, resource_id, 1, moment, False, content)
            resources.append((*row, patient_id, facility_id))
            versions.append((rid, resource_type, resource_id, 1, moment, False, "POST", content))
            values.extend(
                (rid, resource_type, *value_of(v)) for v in index_values(resource_type, resource)
            )
        self.batches.put((resources, versions, values))
        written = len(self.pending)
        self.pending = []
        return written

    def _write(self) -> None:
        while True:
            batch = self.batches.get()
            try:
                if batch is None:
                    return
                if self.failed is None:
                    with self.conn.cursor() as cur:
                        for (table, columns), rows in zip(_TABLES, batch, strict=True):
                            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                                for row in rows:
                                    copy.write_row(row)
                    self.conn.commit()
            except BaseException as error:  # raised again in the caller's thread
                self.failed = error
            finally:
                self.batches.task_done()

    def _check(self) -> None:
        if self.failed is not None:
            raise RuntimeError("the bulk writer failed") from self.failed

    def drain(self) -> None:
        """Wait until everything handed over is written."""
        self.batches.join()
        self._check()

    def close(self) -> None:
        self.batches.put(None)
        self.thread.join()
        self.conn.close()
        self.sequence.close()
        self._check()


def _stream(conn: psycopg.Connection, query: str, params: dict, batch: int):
    """Batches of dict rows from a server-side cursor."""
    from psycopg.rows import dict_row

    with conn.cursor(name="bench_projection", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(query, params)
        while rows := cur.fetchmany(batch):
            yield rows


def _patients(reader, lookups, batch: int):
    """(resource id, Built) of every Patient not projected yet."""
    from his.fhirapi.mappers import patient as patient_mapper
    from his.fhirapi.projection import Built
    from his.partial_date import PartialDate

    query = (
        "SELECT p.* FROM patient p WHERE NOT EXISTS (SELECT 1 FROM fhir_resource r "
        "WHERE r.resource_type = 'Patient' AND r.resource_id = p.id::text) ORDER BY p.id"
    )
    for rows in _stream(reader, query, {}, batch):
        lookups.units.prefetch(rows)
        identifiers: dict[int, list] = {}
        with reader.cursor() as cur:
            cur.execute(
                "SELECT patient_id, type, system, value FROM patient_identifier "
                "WHERE patient_id = ANY(%s) ORDER BY id",  # Patient.identifiers' order
                ([r["id"] for r in rows],),
            )
            for pid, kind, system, value in cur:
                identifiers.setdefault(pid, []).append(
                    SimpleNamespace(patient_id=pid, type=kind, system=system, value=value)
                )
        out = []
        for row in rows:
            patient = SimpleNamespace(**row)
            patient.birth = PartialDate(row["birth_year"], row["birth_month"], row["birth_day"])
            patient.identifiers = identifiers.get(row["id"], [])
            built = Built(patient_mapper.patient_resource(lookups, patient), patient_id=row["id"])
            out.append((str(row["id"]), built))
        yield out


def _visits(reader, lookups, batch: int, patient_ids: list[int] | None):
    """(resource id, Built) of every visit (``v{id}``) not projected yet."""
    from his.fhirapi.mappers import encounter as encounter_mapper
    from his.fhirapi.projection import Built

    query = (
        "SELECT v.* FROM visit v WHERE NOT EXISTS (SELECT 1 FROM fhir_resource r "
        "WHERE r.resource_type = 'Encounter' AND r.resource_id = 'v' || v.id) "
        "AND (%(only)s::int[] IS NULL OR v.patient_id = ANY(%(only)s)) ORDER BY v.id"
    )
    params = {"only": patient_ids}
    for rows in _stream(reader, query, params, batch):
        out = []
        for row in rows:
            visit = SimpleNamespace(**row)
            resource = encounter_mapper.visit_resource(lookups, visit)
            out.append((f"v{row['id']}", Built(resource, row["patient_id"], row["facility_id"])))
        yield out


def _examinations(reader, lookups, batch: int, patient_ids: list[int] | None):
    """(resource id, Built) of every examination (``e{id}``) not projected yet."""
    from psycopg.rows import dict_row

    from his.fhirapi.mappers import encounter as encounter_mapper
    from his.fhirapi.projection import Built

    query = (
        "SELECT e.* FROM encounter e WHERE NOT EXISTS (SELECT 1 FROM fhir_resource r "
        "WHERE r.resource_type = 'Encounter' AND r.resource_id = 'e' || e.id) "
        "AND (%(only)s::int[] IS NULL "
        "OR e.visit_id IN (SELECT id FROM visit WHERE patient_id = ANY(%(only)s))) "
        "ORDER BY e.id"
    )
    params = {"only": patient_ids}
    for rows in _stream(reader, query, params, batch):
        with reader.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT * FROM visit WHERE id = ANY(%s)",
                (sorted({r["visit_id"] for r in rows}),),
            )
            visits = {v["id"]: SimpleNamespace(**v) for v in cur}
            # the mapper's own query: in force, main first, then by position and id
            cur.execute(
                "SELECT * FROM diagnosis WHERE encounter_id = ANY(%s) AND removed_at IS NULL "
                "ORDER BY encounter_id, is_main DESC, position, id",
                ([r["id"] for r in rows],),
            )
            diagnoses: dict[int, list] = {}
            for d in cur:
                diagnoses.setdefault(d["encounter_id"], []).append(SimpleNamespace(**d))
        out = []
        for row in rows:
            encounter = SimpleNamespace(**row)
            visit = visits[row["visit_id"]]
            lookups.diagnoses = diagnoses.get(row["id"], [])
            resource = encounter_mapper.examination_resource(lookups, encounter, visit)
            built = Built(resource, visit.patient_id, row["facility_id"])
            out.append((f"e{row['id']}", built))
        yield out


@contextmanager
def _bulk_lookups(session):
    """While the bulk projection runs: the mappers' per-record look-ups cached (each
    asked of the app's own function once, with a real session), ``fold_vi`` memoised, and
    ``drop_empty`` the equivalent above. Everything is put back afterwards."""
    import his.fhirapi.mappers.encounter as encounter_mapper
    import his.fhirapi.mappers.patient as patient_mapper
    import his.fhirapi.searchparams as searchparams
    import his.services.admin_units as admin_units

    units = _UnitNames(session)
    replaced = [
        (admin_units, "unit_name", lambda _f: units),
        (encounter_mapper, "clinician_ref", lambda f: _cached(f, session)),
        (searchparams, "fold_vi", _memoised),
        (patient_mapper, "drop_empty", lambda _f: _drop_empty),
        (encounter_mapper, "drop_empty", lambda _f: _drop_empty),
    ]
    originals = [(module, name, getattr(module, name)) for module, name, _ in replaced]
    try:
        for (module, name, make), (_m, _n, original) in zip(replaced, originals, strict=True):
            setattr(module, name, make(original))
        lookups = _Lookups(session)
        lookups.units = units
        yield lookups
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


def project(
    url: str,
    *,
    encounters: str = "all",
    encounter_patients: list[int] | None = None,
    batch: int = 2000,
) -> dict:
    """Project every Patient (and Encounter: every visit and examination, those of
    ``encounter_patients`` only, or none) not projected yet, in bulk; returns how many of
    each were written and how fast."""
    from his.fhirapi import projection  # noqa: F401  (registers the mappers)

    database = Database.from_url(url)
    stats: dict = {}
    try:
        with (
            database.session() as session,
            psycopg.connect(_libpq(url)) as reader,
            _bulk_lookups(session) as lookups,
        ):
            streams = {"Patient": [_patients(reader, lookups, batch)]}
            if encounters != "none":
                only = encounter_patients if encounters == "sample" else None
                streams["Encounter"] = [
                    _visits(reader, lookups, batch, only),
                    _examinations(reader, lookups, batch, only),
                ]
            bulk = _Bulk(url)
            try:
                for resource_type, sources in streams.items():
                    written, started = 0, time.perf_counter()
                    for source in sources:
                        for chunk in source:
                            for resource_id, built in chunk:
                                bulk.add(resource_type, resource_id, built)
                            written += bulk.flush()
                            if written % 20_000 < batch:
                                rate = written / (time.perf_counter() - started)
                                log(f"  {resource_type}: {written:,} projected ({rate:,.0f}/s)")
                        reader.commit()  # the server-side cursor's transaction
                    bulk.drain()
                    seconds = time.perf_counter() - started
                    stats[resource_type] = {
                        "written": written,
                        "seconds": round(seconds, 2),
                        "per_s": round(written / seconds, 1) if written else None,
                    }
            finally:
                bulk.close()
            for resource_type in PROJECTED_TYPES:
                count = reader.execute(
                    "SELECT count(*) FROM fhir_resource WHERE resource_type = %s",
                    (resource_type,),
                ).fetchone()
                stats.setdefault(resource_type, {})["projected"] = count[0]
    finally:
        database.engine.dispose()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE fhir_resource")
        conn.execute("VACUUM ANALYZE fhir_search_value")
    for resource_type, figures in stats.items():
        log(
            f"{resource_type}: {figures['projected']:,} projected "
            f"({figures.get('written', 0):,} now, {figures.get('per_s') or 0:,.0f}/s)"
        )
    return stats


def verify(url: str, count: int, seed: int) -> dict:
    """Rebuild ``count`` stored resources of each projected type through the app's own
    path (the registered builder and ``projection.store``) and compare with what is
    stored: the content (``meta.lastUpdated`` aside), the compartment and facility, and
    the search values. All in one transaction, rolled back."""
    from sqlalchemy import delete

    from his.fhirapi import projection
    from his.fhirapi.wire import instant
    from his.models import FhirResource, FhirResourceVersion, FhirSearchValue

    database = Database.from_url(url)
    checked: dict[str, int] = {}
    mismatches: list[str] = []

    def snapshot(session, resource_type: str, resource_id: str):
        row = session.execute(
            select(FhirResource).where(
                FhirResource.resource_type == resource_type,
                FhirResource.resource_id == resource_id,
            )
        ).scalar_one()
        values = sorted(
            (
                (v.param, *(str(getattr(v, f)) for f in _VALUE_FIELDS))
                for v in session.scalars(
                    select(FhirSearchValue).where(FhirSearchValue.rid == row.rid)
                )
            ),
        )
        stamp = json.loads(row.content)["meta"]["lastUpdated"]
        # the JSON text as stored, byte for byte, but for the moment it was written
        content = row.content.replace(f'"lastUpdated":"{stamp}"', '"lastUpdated":""', 1)
        version = session.scalars(
            select(FhirResourceVersion).where(FhirResourceVersion.rid == row.rid)
        ).one()
        same_version = (version.content, version.method, version.version_id) == (
            row.content,
            "POST",
            1,
        )
        facts = (
            row.version_id,
            row.deleted,
            row.patient_id,
            row.facility_id,
            same_version,
            stamp == instant(row.last_updated),
        )
        return row.rid, content, values, facts

    session = database.open_session()
    try:
        for resource_type in PROJECTED_TYPES:
            # a reproducible sample without reading every id
            ids = session.scalars(
                select(FhirResource.resource_id)
                .where(FhirResource.resource_type == resource_type)
                .order_by(func.md5(FhirResource.resource_id + str(seed)))
                .limit(count)
            ).all()
            checked[resource_type] = 0
            for resource_id in ids:
                rid, bulk_content, bulk_values, bulk_facts = snapshot(
                    session, resource_type, resource_id
                )
                for table in (FhirSearchValue, FhirResourceVersion):
                    session.execute(delete(table).where(table.rid == rid))
                session.execute(delete(FhirResource).where(FhirResource.rid == rid))
                built = projection.BUILDERS[resource_type](session, resource_id)
                projection.store(session, resource_type, resource_id, built)
                _rid, app_content, app_values, app_facts = snapshot(
                    session, resource_type, resource_id
                )
                checked[resource_type] += 1
                key = f"{resource_type}/{resource_id}"
                if bulk_content != app_content:
                    mismatches.append(f"{key}: content {bulk_content} != {app_content}")
                if bulk_values != app_values:
                    mismatches.append(f"{key}: search values {bulk_values} != {app_values}")
                if bulk_facts != app_facts:
                    mismatches.append(f"{key}: row {bulk_facts} != {app_facts}")
    finally:
        session.rollback()
        session.close()
        database.engine.dispose()
    result = {"checked": checked, "mismatches": len(mismatches), "first": mismatches[:5]}
    log(f"verify: {json.dumps(result, ensure_ascii=False)[:2000]}")
    return result


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

    wall = run_clients(run, clients)
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    return [ms for per in latencies for ms in per], wall


def clinical_records(url: str) -> int:
    """Visits and examinations in the database (what ``--encounters all`` projects)."""
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM visit) + (SELECT count(*) FROM encounter)"
        ).fetchone()
    return row[0] if row else 0


def doctor_facility(url: str) -> int | None:
    """The facility whose records the bench's staff user (``doctor``) sees."""
    with psycopg.connect(_libpq(url)) as conn:
        row = conn.execute("SELECT facility_id FROM app_user WHERE username = 'doctor'").fetchone()
    return row[0] if row else None


def encounter_patients(url: str, count: int, seed: int) -> list[int]:
    """``count`` patients with a visit at the doctor's facility (for ``--encounters
    sample``: whose Encounters to project)."""
    rng = random.Random(seed)  # noqa: S311 (reproducible samples, not secrets)
    with psycopg.connect(_libpq(url)) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT patient_id FROM visit WHERE facility_id = %s ORDER BY 1",
                (doctor_facility(url),),
            )
        ]
    return sorted(rng.sample(ids, min(count, len(ids))))


def same_answers(app_port: int, raw_port: int, pairs, headers: dict[str, str]) -> int:
    """How many of these (app path, raw path) give the same resources in the same order
    (the raw SQL is meant to be the app's)."""
    app = http.client.HTTPConnection("127.0.0.1", app_port, timeout=30)
    raw = http.client.HTTPConnection("127.0.0.1", raw_port, timeout=30)

    def ids(conn, path: str, hdrs: dict[str, str]) -> list[str]:
        conn.request("GET", path, headers=hdrs)
        body = json.loads(conn.getresponse().read())
        if body.get("resourceType") != "Bundle":
            return [body.get("id")]
        return [e["resource"]["id"] for e in body.get("entry", [])]

    same = 0
    for app_path, raw_path in pairs:
        a, r = ids(app, app_path, headers), ids(raw, raw_path, {})
        if a == r:
            same += 1
        else:
            log(f"  different answers: {app_path} {a[:5]} vs {raw_path} {r[:5]}")
    app.close()
    raw.close()
    return same


def samples(url: str, count: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(app path, raw path) pairs per kind, taken from the projected data."""
    from his.fhirapi.searchparams import parse_date

    rng = random.Random(seed)  # noqa: S311 (reproducible samples, not secrets)
    facility = doctor_facility(url)
    with psycopg.connect(_libpq(url)) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT resource_id FROM fhir_resource WHERE resource_type = 'Patient' "
                "AND NOT deleted ORDER BY rid"
            )
        ]
        idents = conn.execute(
            "SELECT system, code FROM fhir_search_value WHERE resource_type = 'Patient' "
            "AND param = 'identifier' AND system LIKE '%%cccd%%' ORDER BY id"
        ).fetchall()
        names = conn.execute(
            "SELECT f.text, g.text FROM fhir_search_value f JOIN fhir_search_value g "
            "ON g.rid = f.rid AND g.param = 'given' AND g.resource_type = 'Patient' "
            "WHERE f.resource_type = 'Patient' AND f.param = 'family' ORDER BY f.id, g.id"
        ).fetchall()
        births = conn.execute(
            "SELECT DISTINCT start, \"end\" FROM fhir_search_value WHERE resource_type = 'Patient' "
            "AND param = 'birthdate' AND \"end\" - start = interval '1 day' ORDER BY 1"
        ).fetchall()
        # Patients with Encounters the doctor sees (the app's search is scoped to the
        # user's facility: the raw query carries the same condition).
        seen = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT patient_id FROM fhir_resource WHERE resource_type = 'Encounter' "
                "AND NOT deleted AND patient_id IS NOT NULL "
                "AND (facility_id IS NULL OR facility_id = %s) ORDER BY 1",
                (facility,),
            )
        ]
        chosen = rng.sample(seen, min(count, len(seen)))
        starts: dict[int, list[dt.datetime]] = {}
        for pid, start in conn.execute(
            "SELECT r.patient_id, v.start FROM fhir_resource r JOIN fhir_search_value v "
            "ON v.rid = r.rid AND v.resource_type = 'Encounter' AND v.param = 'date' "
            "WHERE r.resource_type = 'Encounter' AND NOT r.deleted AND r.patient_id = ANY(%s) "
            "AND (r.facility_id IS NULL OR r.facility_id = %s) ORDER BY 1, 2",
            (chosen, facility),
        ):
            starts.setdefault(pid, []).append(start)
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
    for pid in chosen:
        # a window of ~3 months around one of the patient's encounters
        day = rng.choice(starts[pid]).astimezone(vn).date()
        first = day - dt.timedelta(days=rng.randint(0, 60))
        last = first + dt.timedelta(days=90)
        app = "/fhir/Encounter?" + urlencode(
            [("patient", pid), ("date", f"ge{first}"), ("date", f"le{last}")]
        )
        ge, le = parse_date(first.isoformat()), parse_date(last.isoformat())
        assert ge is not None and le is not None
        raw = "/search/encounter?" + urlencode(
            {
                "patient": f"Patient/{pid}",
                "facility": facility,
                "ge_low": ge[0].isoformat(),
                "ge_high": ge[1].isoformat(),
                "le_low": le[0].isoformat(),
                "le_high": le[1].isoformat(),
            }
        )
        out["search_encounter"].append((app, raw))
    return out


def summary(rounds: list[dict]) -> dict:
    """One server's figures for one kind: the median of the rounds (``req_per_s``,
    ``p50_ms``, ``p95_ms``, ``mean_ms``), their ``min`` and ``max``, and each round."""
    figures = ("req_per_s", "p50_ms", "p95_ms", "mean_ms")
    row: dict = {
        f: round(statistics.median(r[f] for r in rounds), 2 if f != "req_per_s" else 1)
        for f in figures
    }
    row["requests"] = sum(r["requests"] for r in rounds)
    row["min"] = {f: min(r[f] for r in rounds) for f in figures}
    row["max"] = {f: max(r[f] for r in rounds) for f in figures}
    row["rounds"] = rounds
    return row


def measure_round(ms: list[float], wall: float) -> dict:
    return {
        "requests": len(ms),
        "req_per_s": round(len(ms) / wall, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=8.0, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--encounters",
        choices=("auto", "all", "sample", "none"),
        default="auto",
        help="which Encounters to project: every visit and examination, only those of "
        "the 300 patients the Encounter search samples, or none; auto (default): all up "
        f"to {AUTO_ALL_ENCOUNTERS:,} visits and examinations, else sample",
    )
    parser.add_argument(
        "--verify",
        type=int,
        default=50,
        metavar="N",
        help="rebuild N projected resources of each type through the app's own path and "
        "compare (0: skip)",
    )
    parser.add_argument(
        "--project-only", action="store_true", help="project (and verify), no HTTP load"
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of {','.join(KINDS)}"
    )
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")

    target = resolve(args.database_url, args.patients)
    if target.backend != "postgresql":
        raise SystemExit("the FHIR API bench runs on PostgreSQL")
    url = target.url
    encounters = args.encounters
    if encounters == "auto":
        encounters = "all" if clinical_records(url) <= AUTO_ALL_ENCOUNTERS else "sample"
        log(f"--encounters auto: {encounters}")
    only = encounter_patients(url, 300, args.seed) if encounters == "sample" else None
    projection = project(url, encounters=encounters, encounter_patients=only)
    projection["encounters"] = encounters
    if args.verify:
        projection["verify"] = verify(url, args.verify, args.seed)
        if projection["verify"]["mismatches"]:
            raise SystemExit("the bulk projection differs from the app's: see verify above")
    if args.project_only:
        print(json.dumps(projection, indent=2, ensure_ascii=False))
        return
    paths = samples(url, 300, args.seed)
    projected = projection["Patient"]["projected"]

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
        for kind in kinds:
            app_paths = [a for a, _r in paths[kind]]
            raw_paths = [r for _a, r in paths[kind]]
            if not app_paths:
                log(f"{kind}: no samples, skipped")
                continue
            sides = {"app": (app_port, app_paths, app_headers), "raw": (raw_port, raw_paths, {})}
            checked = paths[kind][:20]
            same = same_answers(app_port, raw_port, checked, app_headers)
            # warm up both, then alternate which goes first
            for port, plist, headers in sides.values():
                drive(port, plist, headers, 1.5, args.clients)
            rounds: dict[str, list[dict]] = {"app": [], "raw": []}
            for round_ in range(args.rounds):
                order = ("app", "raw") if round_ % 2 == 0 else ("raw", "app")
                for side in order:
                    port, plist, headers = sides[side]
                    ms, wall = drive(port, plist, headers, args.seconds, args.clients)
                    rounds[side].append(measure_round(ms, wall))
            row = {side: summary(per_round) for side, per_round in rounds.items()}
            row["same_answers"] = f"{same}/{len(checked)}"
            # the ratios of the medians
            row["throughput_ratio_raw_over_app"] = round(
                row["raw"]["req_per_s"] / row["app"]["req_per_s"], 2
            )
            row["p50_ratio_app_over_raw"] = round(row["app"]["p50_ms"] / row["raw"]["p50_ms"], 2)
            row["p95_ratio_app_over_raw"] = round(row["app"]["p95_ms"] / row["raw"]["p95_ms"], 2)
            results[kind] = row
            log(
                f"{kind}: app {row['app']['req_per_s']} req/s p95 {row['app']['p95_ms']} ms "
                f"(rounds {[r['p95_ms'] for r in rounds['app']]}), raw "
                f"{row['raw']['req_per_s']} req/s p95 {row['raw']['p95_ms']} ms "
                f"(rounds {[r['p95_ms'] for r in rounds['raw']]}), "
                f"p95 app/raw {row['p95_ratio_app_over_raw']}"
            )
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
        "encounters_projected": projection.get("Encounter", {}).get("projected", 0),
        "projection": projection,
        "workers": args.workers,
        "threads": args.threads,
        "clients": args.clients,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "figures": "median of the rounds (min, max and each round beside); ratios of medians",
        "cpus": os.cpu_count(),
        "results": results,
    }
    out = RESULTS_DIR / f"fhir-api-{target.backend}-{projected}.json"
    write_json(out, report)
    print()
    print(
        f"FHIR API, {projected:,} Patients and {report['encounters_projected']:,} Encounters "
        f"projected, PostgreSQL, {args.workers} gunicorn workers x {args.threads} threads, "
        f"{args.clients} client threads; median of {args.rounds} rounds [min–max]"
    )
    print()
    print(
        "| kind | app req/s | raw req/s | raw/app | app p50 ms | raw p50 ms | app p95 ms "
        "| raw p95 ms | p95 app/raw |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def spread(side: dict, figure: str) -> str:
        return f"{side[figure]} [{side['min'][figure]}–{side['max'][figure]}]"

    for kind, row in results.items():
        a, r = row["app"], row["raw"]
        print(
            f"| {kind} | {spread(a, 'req_per_s')} | {spread(r, 'req_per_s')} | "
            f"{row['throughput_ratio_raw_over_app']} | {spread(a, 'p50_ms')} | "
            f"{spread(r, 'p50_ms')} | {spread(a, 'p95_ms')} | {spread(r, 'p95_ms')} | "
            f"{row['p95_ratio_app_over_raw']} |"
        )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
