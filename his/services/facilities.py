"""Facilities and their hierarchy."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.models import Facility


def list_facilities(session: Session) -> list[Facility]:
    return list(session.scalars(select(Facility).order_by(Facility.code)))


def facility_subtree(session: Session, root_id: int | None) -> set[int]:
    """The facility and every facility below it (a health centre and its stations)."""
    if root_id is None:
        return set()
    children: dict[int | None, list[int]] = {}
    for fid, parent in session.execute(select(Facility.id, Facility.parent_id)):
        children.setdefault(parent, []).append(fid)
    found, todo = set(), [root_id]
    while todo:
        fid = todo.pop()
        if fid not in found:
            found.add(fid)
            todo.extend(children.get(fid, []))
    return found
