"""Coverage: the BHYT (health-insurance) cards a patient presented, newest in force.

A card is never deleted: when the patient presents a newer one, the earlier cards stay as
history with status ``cancelled``, so a claim of last year still points at the card it
was made with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, object_session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, drop_empty, ref
from his.fhirapi.mappers.encounter import row_id
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import REFERENCE, TOKEN, param
from his.models import BhytGroup, Coverage

# BHXH pays; it has no Organization of ours, so the payor is named by identifier.
PAYOR = {
    "identifier": {"system": systems.PAYOR_ID, "value": "BHXH"},
    "display": "Bảo hiểm xã hội Việt Nam",
}

param("Coverage", "beneficiary", REFERENCE, "beneficiary", targets=("Patient",))
param("Coverage", "patient", REFERENCE, "beneficiary", targets=("Patient",))
param("Coverage", "identifier", TOKEN, "identifier", doc="BHYT card code or BHXH number")
param("Coverage", "status", TOKEN, "status", doc="active: the card presented last")
param("Coverage", "payor", REFERENCE, "payor", doc="payor:identifier=...sid/payor|BHXH")
param("Coverage", "type", TOKEN, "type")
param("Coverage", "class-value", TOKEN, "class.value", doc="The BHYT group code (DN, HT, ...)")


@trigger(Coverage)
def _coverage_changed(row: Coverage):
    keys = [("Coverage", str(row.id))]
    session = object_session(row)
    if session is not None and row.patient_id is not None:
        # A new card ends the patient's earlier ones (status), and the other way round.
        for cid in session.scalars(
            select(Coverage.id).where(Coverage.patient_id == row.patient_id)
        ):
            keys.append(("Coverage", str(cid)))
    return keys


def _ids(session: Session) -> Iterator[str]:
    for cid in session.scalars(select(Coverage.id).order_by(Coverage.id)):
        yield str(cid)


ALL_IDS["Coverage"] = _ids


@builder("Coverage")
def build_coverage(session: Session, resource_id: str) -> Built | None:
    cid = row_id(resource_id)
    card = session.get(Coverage, cid) if cid is not None else None
    if card is None:
        return None
    return Built(coverage_resource(session, card), card.patient_id, None)


def _group(session: Session, card: Coverage) -> BhytGroup | None:
    if not card.group_code:
        return None
    on = card.valid_from or (card.created_at.date() if card.created_at else None)
    query = select(BhytGroup).where(BhytGroup.code == card.group_code)
    if on is not None:
        query = query.where(
            BhytGroup.valid_from <= on,
            or_(BhytGroup.valid_to.is_(None), BhytGroup.valid_to >= on),
        )
    return session.scalars(query.order_by(BhytGroup.valid_from.desc()).limit(1)).first()


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def coverage_resource(session: Session, card: Coverage) -> dict[str, Any]:
    newest = session.scalar(
        select(func.max(Coverage.id)).where(Coverage.patient_id == card.patient_id)
    )
    group = _group(session, card)
    extensions: list[dict[str, Any]] = []
    if card.benefit_level is not None:
        extensions.append(
            {
                "url": systems.BENEFIT_LEVEL_EXT,
                "valueCoding": coding(systems.BENEFIT_LEVEL_CS, str(card.benefit_level)),
            }
        )
    if card.registered_facility_code:
        extensions.append(
            {
                "url": systems.REGISTERED_FACILITY_EXT,
                "valueIdentifier": {
                    "system": systems.FACILITY_CODE,
                    "value": card.registered_facility_code,
                },
            }
        )
    if card.area_code:
        extensions.append({"url": systems.AREA_CODE_EXT, "valueCode": card.area_code})
    if card.five_year_date:
        extensions.append({"url": systems.FIVE_YEARS_EXT, "valueDate": _day(card.five_year_date)})
    extensions.append({"url": systems.VERIFICATION_EXT, "valueCode": str(card.status)})
    resource = {
        "extension": extensions,
        "identifier": [
            {
                "use": "official",
                "type": concept(systems.V2_0203, "MB"),
                "system": systems.BHYT,
                "value": card.card_number,
            },
            {"use": "secondary", "system": systems.BHXH, "value": card.insurance_number},
        ],
        "status": "active" if card.id == newest else "cancelled",
        "type": concept(systems.ACT_CODE, "PUBLICPOL", "public healthcare"),
        "subscriberId": card.insurance_number,
        "beneficiary": ref("Patient", card.patient_id),
        "relationship": concept(systems.SUBSCRIBER_RELATIONSHIP, "self", "Self"),
        "period": {"start": _day(card.valid_from), "end": _day(card.valid_to)},
        "payor": [PAYOR],
        "class": [
            {
                "type": concept(systems.COVERAGE_CLASS, "group", "Group"),
                "value": card.group_code,
                "name": group.description if group else None,
            }
        ]
        if card.group_code
        else [],
    }
    return drop_empty(resource)
