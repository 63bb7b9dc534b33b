"""FHIR Bulk Data export: the jobs, the worker that writes their NDJSON files, the groups.

The web request only stores a job row (``queued``); a separate process (``his fhir
export-worker``) claims it with a guarded UPDATE, writes one NDJSON file per type under
``instance/exports/<job id>/`` and stores the manifest. Everything a restarted worker needs
is in the row, so a job whose worker died (stale heartbeat) is simply done again.

The stored JSON text of the projection is written line by line, never parsed: the export
costs one streamed query per type.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from his.config import Settings
from his.db import Database, utcnow
from his.errors import NotFound
from his.fhirapi.resource_types import PROJECTED
from his.fhirapi.wire import dumps, instant
from his.logging import get_logger
from his.models import (
    Facility,
    FhirExportFile,
    FhirExportJob,
    FhirGroup,
    FhirGroupMember,
    FhirResource,
    FhirResourceVersion,
    Patient,
)

log = get_logger(__name__)

# What $export can write: the projected types (AuditEvent and the conformance artefacts are
# served live, not stored as resources).
EXPORT_TYPES = PROJECTED
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
ACTIVE = ("queued", "running")
CHUNK = 5000  # rows per fetch
# A running job heartbeats (and notices a cancel) after a chunk once this many seconds have
# passed: a commit per chunk cost a tenth of the export's time.
BEAT_EVERY = 1.0
STALE_AFTER = dt.timedelta(minutes=2)  # no heartbeat for this long: the worker died
WRITERS_WAIT_SECONDS = 60.0


@dataclass
class ExportRequest:
    level: str  # system | patient | group
    request_url: str
    types: list[str]
    since: dt.datetime | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type → ["a=b&c=d"]
    output_format: str = "application/fhir+ndjson"
    group_id: int | None = None


def exports_dir(settings: Settings) -> Path:
    return Path(settings.instance_dir) / "exports"


def active_count(session: Session, owner: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(FhirExportJob)
        .where(FhirExportJob.owner == owner, FhirExportJob.status.in_(ACTIVE))
    )


def create_job(
    session: Session,
    *,
    owner: str,
    scopes: str,
    facility_ids: frozenset[int] | None,
    wanted: ExportRequest,
) -> FhirExportJob:
    job = FhirExportJob(
        id=str(uuid.uuid4()),
        owner=owner,
        status="queued",
        level=wanted.level,
        group_id=wanted.group_id,
        request_url=wanted.request_url[:2000],
        params={
            "types": wanted.types,
            "since": instant(wanted.since) if wanted.since else None,
            "typeFilter": wanted.type_filters,
            "outputFormat": wanted.output_format,
        },
        scopes=scopes[:1000],
        facility_ids=sorted(facility_ids) if facility_ids is not None else None,
        progress="queued",
    )
    session.add(job)
    session.flush()
    return job


def owned_job(session: Session, owner: str, job_id: str) -> FhirExportJob | None:
    """The caller's job, unless cancelled or expired (those are gone for the client)."""
    job = session.get(FhirExportJob, job_id)
    if job is None or job.owner != owner or job.status in ("cancelled", "expired"):
        return None
    return job


def cancel(session: Session, settings: Settings, job: FhirExportJob) -> None:
    """Mark the job cancelled; a running worker notices at its next chunk and removes its
    files itself (removing them under it would make it fail instead of stop)."""
    was_running = job.status == "running"
    session.execute(
        update(FhirExportJob)
        .where(FhirExportJob.id == job.id)
        .values(status="cancelled", finished_at=utcnow(), progress="cancelled")
    )
    if not was_running:
        _remove_files(session, settings, job.id)
    session.expire(job)


def _remove_files(session: Session, settings: Settings, job_id: str) -> None:
    session.query(FhirExportFile).filter(FhirExportFile.job_id == job_id).delete()
    shutil.rmtree(exports_dir(settings) / _safe(job_id), ignore_errors=True)


def _safe(job_id: str) -> str:
    return str(uuid.UUID(job_id))  # never a path: ids are uuids


# --- the worker --------------------------------------------------------------------------


def claim(session: Session, job_id: str, now: dt.datetime) -> dt.datetime | None:
    """Take the job if it is queued, or running with a stale heartbeat (its worker died).

    One guarded UPDATE: of two workers racing for the job exactly one sees a row change
    (PostgreSQL re-checks the WHERE after the row lock; SQLite has one writer at a time).
    The new ``started_at`` is this run's token: every later write of the run names it, so a
    run that was presumed dead cannot overwrite its successor's work.
    """
    result = session.execute(
        update(FhirExportJob)
        .where(
            FhirExportJob.id == job_id,
            (FhirExportJob.status == "queued")
            | (
                (FhirExportJob.status == "running")
                & (
                    FhirExportJob.heartbeat_at.is_(None)
                    | (FhirExportJob.heartbeat_at < now - STALE_AFTER)
                )
            ),
        )
        .values(
            status="running",
            started_at=now,
            heartbeat_at=now,
            progress="started",
            manifest=None,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return now if result.rowcount == 1 else None


def claimable(session: Session, now: dt.datetime) -> list[str]:
    return list(
        session.scalars(
            select(FhirExportJob.id)
            .where(
                (FhirExportJob.status == "queued")
                | (
                    (FhirExportJob.status == "running")
                    & (
                        FhirExportJob.heartbeat_at.is_(None)
                        | (FhirExportJob.heartbeat_at < now - STALE_AFTER)
                    )
                )
            )
            .order_by(FhirExportJob.created_at, FhirExportJob.id)
        )
    )


def work_once(database: Database, settings: Settings) -> int:
    """Run every job that is waiting (or was abandoned), then expire old ones. Returns the
    number of jobs this call ran to an end (completed or failed)."""
    done = 0
    while True:
        now = utcnow()
        with database.session() as session:
            candidates = claimable(session, now)
        token = None
        for job_id in candidates:
            with database.session() as session:
                token = claim(session, job_id, utcnow())
            if token is not None:
                break
        if token is None:
            break
        if run_job(database, settings, job_id, token):
            done += 1
    expire(database, settings)
    return done


class _Stopped(Exception):
    """The job was cancelled or taken over by another worker."""


@dataclass
class _Run:
    database: Database
    settings: Settings
    job_id: str
    token: dt.datetime
    folder: Path
    written: int = 0
    step: str = ""
    last_beat: float = 0.0

    @property
    def separate_connections(self) -> bool:
        """Whether heartbeats go through another connection than the export's reads. When
        they share one (a test's transaction), a heartbeat cannot be sent in the middle of
        a COPY, which holds the connection."""
        return isinstance(self.database.session_factory.kw.get("bind"), Engine)

    def maybe_beat(self) -> None:
        if time.monotonic() - self.last_beat >= BEAT_EVERY:
            self.beat()

    def beat(self) -> None:
        """Heartbeat and progress; stops the run when the job is no longer ours."""
        with self.database.session() as session:
            result = session.execute(
                update(FhirExportJob)
                .where(
                    FhirExportJob.id == self.job_id,
                    FhirExportJob.status == "running",
                    FhirExportJob.started_at == self.token,
                )
                .values(
                    heartbeat_at=utcnow(),
                    progress=f"{self.step}: {self.written} resources written"[:100],
                )
                .execution_options(synchronize_session=False)
            )
        self.last_beat = time.monotonic()
        if result.rowcount != 1:
            raise _Stopped


def run_job(database: Database, settings: Settings, job_id: str, token: dt.datetime) -> bool:
    """Write the job's files and manifest. From scratch every time: a half-written folder
    from a dead worker is removed first. Returns False when the job was cancelled."""
    with database.session() as session:
        job = session.get(FhirExportJob, job_id)
        session.expunge(job)
    folder = exports_dir(settings) / _safe(job_id)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    run = _Run(database, settings, job_id, token, folder)
    try:
        manifest, files = _export(run, job)
    except _Stopped:
        shutil.rmtree(folder, ignore_errors=True)
        with database.session() as session:
            session.query(FhirExportFile).filter(FhirExportFile.job_id == job_id).delete()
        log.info("fhir export stopped", job=job_id)
        return False
    except Exception as exc:
        log.exception("fhir export failed", job=job_id)
        shutil.rmtree(folder, ignore_errors=True)
        _finish(run, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return True
    if not _finish(run, status="completed", manifest=manifest, files=files):
        shutil.rmtree(folder, ignore_errors=True)
        return False
    return True


def _finish(
    run: _Run,
    *,
    status: str,
    manifest: dict[str, Any] | None = None,
    files: list[FhirExportFile] | None = None,
    error: str | None = None,
) -> bool:
    now = utcnow()
    with run.database.session() as session:
        result = session.execute(
            update(FhirExportJob)
            .where(
                FhirExportJob.id == run.job_id,
                FhirExportJob.status == "running",
                FhirExportJob.started_at == run.token,
            )
            .values(
                status=status,
                manifest=manifest,
                error=error,
                finished_at=now,
                heartbeat_at=now,
                transaction_time=_parse_instant(manifest["transactionTime"]) if manifest else None,
                expires_at=now + dt.timedelta(hours=run.settings.fhir_export_retention_hours),
                progress=status,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            session.rollback()
            return False
        session.query(FhirExportFile).filter(FhirExportFile.job_id == run.job_id).delete()
        session.add_all(files or [])
    return True


def _parse_instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _export(run: _Run, job: FhirExportJob) -> tuple[dict[str, Any], list[FhirExportFile]]:
    params = job.params or {}
    since = _parse_instant(params["since"]) if params.get("since") else None
    moment = _snapshot_instant(run.database)
    outputs: list[dict[str, Any]] = []
    deleted: list[dict[str, Any]] = []
    errors: list[str] = []
    files: list[FhirExportFile] = []
    base = f"bulk/{run.job_id}/file/"
    session = _reading_session(run.database)
    try:
        scope = _Scope.of(session, job)
        for resource_type in params.get("types") or []:
            run.step = resource_type
            run.beat()
            try:
                counts = _export_type(session, run, scope, resource_type, moment, since)
            except _Stopped:
                raise
            except Exception as exc:
                log.exception("fhir export of a type failed", job=run.job_id, type=resource_type)
                session.rollback()
                for name in (f"{resource_type}.ndjson", f"deleted-{resource_type}.ndjson"):
                    (run.folder / name).unlink(missing_ok=True)  # half written
                errors.append(_error_line(resource_type, exc))
                continue
            for kind, name, count, size in counts:
                entry = {"type": resource_type if kind == "output" else "Bundle"}
                entry.update({"url": base + name, "count": count})
                (outputs if kind == "output" else deleted).append(entry)
                files.append(_file_row(run.job_id, kind, resource_type, name, count, size))
    finally:
        # It only read: ending it with a commit rather than a rollback matters only where the
        # session shares its connection with the job's other writes (a test's transaction).
        try:
            session.commit()
        finally:
            session.close()
    if errors:
        name = "error-OperationOutcome.ndjson"
        path = run.folder / name
        path.write_text("".join(line + "\n" for line in errors), encoding="utf-8")
        files.append(
            _file_row(
                run.job_id, "error", "OperationOutcome", name, len(errors), path.stat().st_size
            )
        )
    manifest = {
        "transactionTime": instant(moment),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": outputs,
        "deleted": deleted,
        "error": (
            [{"type": "OperationOutcome", "url": base + "error-OperationOutcome.ndjson"}]
            if errors
            else []
        ),
    }
    return manifest, files


def _file_row(job_id, kind, resource_type, name, count, size) -> FhirExportFile:
    return FhirExportFile(
        job_id=job_id,
        kind=kind,
        resource_type=resource_type,
        path=f"exports/{_safe(job_id)}/{name}",
        count=count,
        size=size,
    )


def _error_line(resource_type: str, exc: Exception) -> str:
    from flask_babel import gettext as _

    detail = getattr(exc, "diagnostics", None) or f"{type(exc).__name__}: {exc}"
    return dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "exception",
                    "diagnostics": _("The export of %(type)s failed: %(error)s")
                    % {"type": resource_type, "error": detail},
                }
            ],
        }
    )


# --- the snapshot ---------------------------------------------------------------------------


def _snapshot_instant(database: Database) -> dt.datetime:
    """The export's ``transactionTime`` T, once every write stamped at or before T has
    committed: then the rows read afterwards hold every change up to T, and the versions
    table gives each resource as it was at T. An incremental export from T (``_since=T``)
    therefore neither misses nor repeats a change."""
    moment = utcnow()
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    engine = database.engine
    bound = database.session_factory.kw.get("bind")
    if not isinstance(bound, Engine):
        return moment  # a test's shared connection: nothing else can be writing
    if engine.dialect.name == "postgresql":
        _wait_for_pg_writers(engine, moment)
    else:
        # SQLite has one writer: taking the write lock once waits for the current one.
        with database.session(write=True):
            pass
    return moment


def _wait_for_pg_writers(engine: Engine, moment: dt.datetime) -> None:
    # A transaction that has written (it has an xid) and began at or before T may still
    # commit rows stamped <= T. Read-only ones (other exports' snapshots) cannot.
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL "
        "AND xact_start IS NOT NULL AND xact_start <= :moment"
    )
    deadline = time.monotonic() + WRITERS_WAIT_SECONDS
    with engine.connect() as connection:
        while True:
            waiting = connection.execute(query, {"moment": moment}).scalar()
            connection.rollback()
            if not waiting:
                return
            if time.monotonic() > deadline:
                log.warning("fhir export: writers still open at the snapshot", count=waiting)
                return
            time.sleep(0.2)


def _reading_session(database: Database) -> Session:
    session = database.session_factory()
    bound = database.session_factory.kw.get("bind")
    if isinstance(bound, Engine) and bound.dialect.name == "postgresql":
        # One snapshot for every type: the files agree with each other.
        session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
    return session


# --- one type --------------------------------------------------------------------------------


@dataclass
class _Scope:
    """Which rows the job may see: facilities, the compartment, the group's patients."""

    level: str
    facility_ids: list[int] | None
    patient_ids: Any = None  # a subquery of patient ids (group level)
    access: Any = None  # a FhirAccess for _typeFilter (search.matching)
    type_filters: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, session: Session, job: FhirExportJob) -> _Scope:
        patient_ids = None
        if job.level == "group":
            patient_ids = select(FhirGroupMember.patient_id).where(
                FhirGroupMember.group_id == job.group_id
            )
        filters = (job.params or {}).get("typeFilter") or {}
        return cls(
            level=job.level,
            facility_ids=job.facility_ids,
            patient_ids=patient_ids,
            access=access_of(job) if filters else None,
            type_filters=filters,
        )

    def where(self, model: Any, resource_type: str) -> list[Any]:
        """Conditions on FhirResource (or the current row joined to a version)."""
        found = [model.resource_type == resource_type]
        if self.facility_ids is not None:
            found.append(model.facility_id.is_(None) | model.facility_id.in_(self.facility_ids))
        if self.level in ("patient", "group"):
            found.append(model.patient_id.is_not(None))
        if self.patient_ids is not None:
            found.append(model.patient_id.in_(self.patient_ids))
        return found

    def filtered(self, session: Session, resource_type: str) -> Any:
        """The rids matching any of the type's _typeFilter queries, or None (no filter)."""
        queries = self.type_filters.get(resource_type)
        if not queries:
            return None
        from urllib.parse import parse_qsl

        from his.fhirapi.search import matching

        selects = []
        for query in queries:
            params = parse_qsl(query, keep_blank_values=True)
            stmt = matching(session, self.access, resource_type, params)
            selects.append(stmt.with_only_columns(FhirResource.rid).order_by(None))
        from sqlalchemy import union

        return union(*selects) if len(selects) > 1 else selects[0]


def access_of(job: FhirExportJob):
    """The kick-off caller's rights, as stored with the job."""
    from his.fhirapi import scopes as scope_rules
    from his.fhirapi.security import FhirAccess
    from his.services.access import Principal

    client_id = job.owner.removeprefix("client:") if job.owner.startswith("client:") else None
    return FhirAccess(
        principal=Principal.system("fhir-export"),
        scopes=tuple(scope_rules.parse_all(job.scopes)),
        client_id=client_id,
        facility_ids=frozenset(job.facility_ids) if job.facility_ids is not None else None,
    )


def _export_type(
    session: Session,
    run: _Run,
    scope: _Scope,
    resource_type: str,
    moment: dt.datetime,
    since: dt.datetime | None,
) -> list[tuple[str, str, int, int]]:
    """Write ``<Type>.ndjson`` (and ``deleted-<Type>.ndjson``); returns (kind, file name,
    count, size) of the files that got at least one line."""
    matching_rids = scope.filtered(session, resource_type)
    current = [
        *scope.where(FhirResource, resource_type),
        FhirResource.deleted.is_(False),
        FhirResource.last_updated <= moment,
    ]
    if since is not None:
        current.append(FhirResource.last_updated > since)
    if matching_rids is not None:
        current.append(FhirResource.rid.in_(matching_rids))
    output = _Writer(run, f"{resource_type}.ndjson")
    gone = _Writer(run, f"deleted-{resource_type}.ndjson")
    try:
        stmt = select(FhirResource.content).where(*current)
        if run.separate_connections and _copy_capable(session):
            for block, count in _copy_stream(session, stmt):
                output.write_block(block, count)
        else:
            for chunk in _stream(session, stmt):
                output.write(chunk)
        # Resources changed after T: the version they had at T (a version table scan only
        # for the few rows touched while the export started).
        for is_deleted, content, resource_id in _as_of(
            session, scope, resource_type, moment, since, matching_rids
        ):
            if not is_deleted:
                output.write([content])
            elif since is not None:
                gone.write([_deleted_bundle(resource_type, resource_id)])
        if since is not None:
            stmt = select(FhirResource.resource_id).where(
                *scope.where(FhirResource, resource_type),
                FhirResource.deleted.is_(True),
                FhirResource.last_updated <= moment,
                FhirResource.last_updated > since,
            )
            for chunk in _stream(session, stmt):
                gone.write([_deleted_bundle(resource_type, rid) for rid in chunk])
    finally:
        output.close()
        gone.close()
    return [w.summary(kind) for kind, w in (("output", output), ("deleted", gone)) if w.count]


def _stream(session: Session, stmt: Any) -> Iterator[list[str]]:
    """The first column of every row, in lists of CHUNK, through a server-side cursor
    (PostgreSQL) or the driver's incremental fetch (SQLite): memory stays flat however
    many rows. The driver's own tuples: the column is text, which SQLAlchemy hands over
    unprocessed, and building its Row objects cost as much as the query (the ORM's twice)."""
    result = session.connection().execute(
        stmt, execution_options={"stream_results": True, "max_row_buffer": CHUNK}
    )
    try:
        # SQLAlchemy reads one row ahead of a server-side cursor: take that one through it
        # (its buffer is then empty), the rest straight from the cursor.
        ahead = [row[0] for row in result.fetchmany(1)]
        if not ahead:
            return
        while rows := result.cursor.fetchmany(CHUNK):
            yield ahead + [row[0] for row in rows]
            ahead = []
        if ahead:
            yield ahead
    finally:
        result.close()


def _copy_capable(session: Session) -> bool:
    connection = session.connection()
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


# COPY's text format escapes these with a backslash; stored JSON text holds no raw control
# characters, so in practice only the backslash itself (from JSON's own escapes) comes back.
_COPY_ESCAPES = {
    b"\\": b"\\",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"b": b"\b",
    b"f": b"\f",
    b"v": b"\v",
}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.S)


def _copy_unescape(data: bytes) -> bytes:
    if b"\\" not in data:
        return data
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES[m.group(1)], data)


def _copy_stream(session: Session, stmt: Any) -> Iterator[tuple[bytes, int]]:
    """PostgreSQL: the rows of ``stmt`` (one text column) through ``COPY (...) TO STDOUT``
    in the session's transaction, as NDJSON blocks of CHUNK lines. COPY skips the
    per-row protocol and cursor work: the bench measured it 1.6 times faster than a
    server-side cursor for the same rows."""
    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    driver = connection.connection.driver_connection
    batch: list[bytes] = []
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY ({compiled}) TO STDOUT", compiled.params) as copy,
    ):
        for row in copy:  # one row per message, newline included
            batch.append(bytes(row))
            if len(batch) >= CHUNK:
                yield _copy_unescape(b"".join(batch)), len(batch)
                batch = []
    if batch:
        yield _copy_unescape(b"".join(batch)), len(batch)


def _as_of(session, scope, resource_type, moment, since, matching_rids) -> Iterator[tuple]:
    version = FhirResourceVersion
    changed = select(FhirResource.rid).where(
        *scope.where(FhirResource, resource_type), FhirResource.last_updated > moment
    )
    if matching_rids is not None:
        changed = changed.where(FhirResource.rid.in_(matching_rids))
    latest = (
        select(version.rid, func.max(version.version_id).label("version_id"))
        .where(version.rid.in_(changed), version.last_updated <= moment)
        .group_by(version.rid)
        .subquery()
    )
    stmt = select(version.deleted, version.content, version.resource_id).join(
        latest, and_(version.rid == latest.c.rid, version.version_id == latest.c.version_id)
    )
    if since is not None:
        stmt = stmt.where(version.last_updated > since)
    yield from session.execute(stmt)


def _deleted_bundle(resource_type: str, resource_id: str) -> str:
    return dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": f"{resource_type}/{resource_id}"}}],
        }
    )


class _Writer:
    """One NDJSON file, opened on the first line; heartbeats after every chunk."""

    def __init__(self, run: _Run, name: str):
        self.run = run
        self.name = name
        self.path = run.folder / name
        self.count = 0
        self.handle = None

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        self.write_block(("\n".join(lines) + "\n").encode(), len(lines))

    def write_block(self, block: bytes, count: int) -> None:
        """``count`` complete lines, newlines included, UTF-8."""
        if self.handle is None:
            self.handle = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self.handle.write(block)
        self.count += count
        self.run.written += count
        self.run.maybe_beat()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()

    def summary(self, kind: str) -> tuple[str, str, int, int]:
        return kind, self.name, self.count, self.path.stat().st_size


# --- retention ------------------------------------------------------------------------------


def expire(database: Database, settings: Settings) -> int:
    """Remove the files of jobs past their ``Expires`` and of cancelled jobs; the rows stay
    (as ``expired``/``cancelled``) so a late poll is a clean 404."""
    now = utcnow()
    removed = 0
    with database.session() as session:
        old = session.scalars(
            select(FhirExportJob).where(
                (FhirExportJob.status.in_(("completed", "failed")))
                & (FhirExportJob.expires_at < now)
            )
        ).all()
        for job in old:
            job.status = "expired"
            _remove_files(session, settings, job.id)
            removed += 1
        # A cancelled run's worker removes its own files; this catches one that died first.
        stale = now - STALE_AFTER
        for job in session.scalars(
            select(FhirExportJob).where(
                FhirExportJob.status == "cancelled",
                (FhirExportJob.heartbeat_at.is_(None)) | (FhirExportJob.heartbeat_at < stale),
            )
        ):
            if (exports_dir(settings) / _safe(job.id)).exists():
                _remove_files(session, settings, job.id)
    return removed


# --- groups -----------------------------------------------------------------------------------


def create_group(session: Session, name: str, facility_code: str | None = None) -> FhirGroup:
    facility_id = None
    if facility_code:
        facility_id = session.scalar(select(Facility.id).where(Facility.code == facility_code))
        if facility_id is None:
            raise NotFound(f"No facility has the code {facility_code}.")
    group = FhirGroup(name=name, facility_id=facility_id, active=True)
    session.add(group)
    session.flush()
    return group


def add_members(session: Session, group_id: int, patient_ids: list[int]) -> int:
    """Add these patients to the group (already members are skipped); returns how many
    were added."""
    group = session.get(FhirGroup, group_id)
    if group is None:
        raise NotFound(f"No group has the id {group_id}.")
    known = set(session.scalars(select(Patient.id).where(Patient.id.in_(patient_ids))))
    missing = sorted(set(patient_ids) - known)
    if missing:
        raise NotFound(f"No patient has the id {', '.join(map(str, missing))}.")
    present = set(
        session.scalars(
            select(FhirGroupMember.patient_id).where(FhirGroupMember.group_id == group_id)
        )
    )
    added = 0
    for patient_id in dict.fromkeys(patient_ids):
        if patient_id not in present:
            session.add(FhirGroupMember(group_id=group_id, patient_id=patient_id))
            added += 1
    session.flush()
    return added
