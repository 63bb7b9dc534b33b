"""Group: a list of patients exported together (``$export`` at the Group level)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import date_time, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import REFERENCE, STRING, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import FhirGroup, FhirGroupMember

param("Group", "identifier", TOKEN, "identifier")
param("Group", "name", STRING, "name")
param("Group", "member", REFERENCE, "member.entity", targets=("Patient",))
param("Group", "type", TOKEN, "type")
param("Group", "actual", TOKEN, "actual")
param("Group", "managing-entity", REFERENCE, "managingEntity", targets=("Organization",))


@trigger(FhirGroup)
def _group_changed(row: FhirGroup):
    return [("Group", str(row.id))]


@trigger(FhirGroupMember)
def _member_changed(row: FhirGroupMember):
    return [("Group", str(row.group_id))]


def _ids(session: Session) -> Iterator[str]:
    for gid in session.scalars(select(FhirGroup.id).order_by(FhirGroup.id)):
        yield str(gid)


ALL_IDS["Group"] = _ids


@builder("Group")
def build_group(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    group = session.get(FhirGroup, int(resource_id))
    if group is None:
        return None
    members = session.execute(
        select(FhirGroupMember.patient_id, FhirGroupMember.added_at)
        .where(FhirGroupMember.group_id == group.id)
        .order_by(FhirGroupMember.patient_id)
    ).all()
    resource = {
        "identifier": [{"system": systems.GROUP_ID, "value": str(group.id)}],
        "active": bool(group.active),
        "type": "person",
        "actual": True,
        "name": group.name,
        "quantity": len(members),
        "managingEntity": ref("Organization", group.facility_id) if group.facility_id else None,
        "member": [
            {"entity": ref("Patient", patient_id), "period": {"start": date_time(added)}}
            for patient_id, added in members
        ],
    }
    # A list of many patients belongs to no one patient's compartment.
    return Built(drop_empty(resource), facility_id=group.facility_id)
