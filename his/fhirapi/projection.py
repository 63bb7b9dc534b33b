"""Keeping the FHIR projection in step with the domain tables, in the same transaction.

Each resource type registers a *builder* (domain rows → FHIR JSON) and each domain model
registers *triggers* (a changed row → the resources it shows up in). A flush notes the
touched resources; just before the transaction commits, ``sync`` rebuilds them and, where
the JSON changed, writes a new version, its history row and its search values. A commit
therefore never leaves the projection behind the data, and nothing else writes it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, event, insert, select
from sqlalchemy.orm import Session

from his.db import utcnow
from his.fhirapi.wire import dumps, instant
from his.models import FhirResource, FhirResourceVersion, FhirSearchValue

Key = tuple[str, str]  # (resource type, resource id)


@dataclass(frozen=True)
class Built:
    """A resource as built from the domain rows, without ``meta``."""

    resource: dict[str, Any]
    patient_id: int | None = None  # the Patient compartment it belongs to
    facility_id: int | None = None  # the facility whose record it is


Builder = Callable[[Session, str], Built | None]  # None: the record is gone (deleted)
Trigger = Callable[[Any], Iterable[Key]]

BUILDERS: dict[str, Builder] = {}
TRIGGERS: dict[type, list[Trigger]] = {}
_PENDING = "fhir_pending"


def builder(resource_type: str) -> Callable[[Builder], Builder]:
    def register(func: Builder) -> Builder:
        BUILDERS[resource_type] = func
        return func

    return register


def trigger(*models: type) -> Callable[[Trigger], Trigger]:
    """``@trigger(Model)`` on ``f(row) -> [(type, id), ...]``: which resources show the row."""

    def register(func: Trigger) -> Trigger:
        for model in models:
            TRIGGERS.setdefault(model, []).append(func)
        return func

    return register


def mark(session: Session, keys: Iterable[Key]) -> None:
    """Ask for these resources to be rebuilt before the transaction commits."""
    session.info.setdefault(_PENDING, set()).update(keys)


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _context: Any) -> None:
    # After the flush the new rows have their ids; the collections still list what changed.
    for obj in (*session.new, *session.dirty, *session.deleted):
        for func in TRIGGERS.get(type(obj), ()):
            mark(session, func(obj))


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, _previous: Any) -> None:
    # What was rolled back is not there to project.
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "before_commit")
def _sync_before_commit(session: Session) -> None:
    sync(session)


def sync(session: Session) -> int:
    """Rebuild every resource noted so far; returns how many got a new version."""
    written = 0
    session.flush()
    while session.info.get(_PENDING):
        pending = sorted(session.info.pop(_PENDING))
        for resource_type, resource_id in pending:
            build = BUILDERS.get(resource_type)
            if build is None:
                continue
            written += store(session, resource_type, resource_id, build(session, resource_id))
        session.flush()
    return written


def store(
    session: Session,
    resource_type: str,
    resource_id: str,
    built: Built | None,
    *,
    at: dt.datetime | None = None,
) -> bool:
    """Write ``built`` as the next version of the resource, if it differs from the last.

    ``None`` marks the resource deleted (a version without content). Returns whether a
    version was written.
    """
    from his.fhirapi import searchparams

    current = session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == resource_type,
            FhirResource.resource_id == resource_id,
        )
    ).one_or_none()
    if built is None:
        if current is None or current.deleted:
            return False
    elif current is not None and not current.deleted and _same(current.content, built.resource):
        return False

    moment = _to_millis(at or utcnow())
    version_id = 1 if current is None else current.version_id + 1
    resource: dict[str, Any] | None = None
    content = ""
    if built is not None:
        resource = {"resourceType": resource_type, "id": resource_id}
        meta = {"versionId": str(version_id), "lastUpdated": instant(moment)}
        meta.update({k: v for k, v in built.resource.get("meta", {}).items() if k not in meta})
        resource["meta"] = meta
        resource.update({k: v for k, v in built.resource.items() if k not in ("id", "meta")})
        content = dumps(resource)
    values = {
        "version_id": version_id,
        "last_updated": moment,
        "deleted": built is None,
        "content": content,
    }
    if built is not None:
        values.update(patient_id=built.patient_id, facility_id=built.facility_id)
    if current is None:
        # A new resource is written with plain INSERTs: no ORM object to flush, which is
        # most of the cost when a demo load or a transaction creates thousands.
        method = "POST"
        rid = session.execute(
            insert(FhirResource)
            .values(resource_type=resource_type, resource_id=resource_id, **values)
            .returning(FhirResource.rid)
        ).scalar_one()
    else:
        method = "DELETE" if built is None else "PUT"
        for key, value in values.items():
            setattr(current, key, value)
        session.flush()
        rid = current.rid
        session.execute(delete(FhirSearchValue).where(FhirSearchValue.rid == rid))
    session.execute(
        insert(FhirResourceVersion).values(
            rid=rid,
            resource_type=resource_type,
            resource_id=resource_id,
            version_id=version_id,
            last_updated=moment,
            deleted=built is None,
            method=method,
            content=content,
        )
    )
    if resource is not None:
        rows = searchparams.index_values(resource_type, resource)
        if rows:
            for row in rows:
                row["rid"] = rid
                row["resource_type"] = resource_type
            session.execute(insert(FhirSearchValue), rows)
    return True


def rebuild_all(session: Session, resource_types: Iterable[str] | None = None) -> int:
    """Project every record of these types (all by default); for databases filled in bulk
    (``bench/``) or before the projection existed. Returns the number of versions written."""
    from his.fhirapi.mappers import ids_of

    count = 0
    for resource_type in resource_types or sorted(BUILDERS):
        for resource_id in ids_of(session, resource_type):
            if store(
                session, resource_type, resource_id, BUILDERS[resource_type](session, resource_id)
            ):
                count += 1
    session.flush()
    return count


def _same(stored: str, resource: dict[str, Any]) -> bool:
    old = json.loads(stored)
    old.pop("meta", None)
    old.pop("resourceType", None)
    old.pop("id", None)
    new = {k: v for k, v in resource.items() if k not in ("id", "meta", "resourceType")}
    return old == json.loads(dumps(new))


def _to_millis(moment: dt.datetime) -> dt.datetime:
    # What is served is what is stored: lastUpdated has milliseconds, and _since compares
    # against the same value.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# The mappers register their builders and triggers on import. They must be registered
# before the first flush of the process, or that flush's changes would go unnoticed; the
# mappers import this module's names, which all exist by now.
import his.fhirapi.mappers  # noqa: E402,F401
