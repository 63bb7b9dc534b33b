"""Organization (facilities) and Location (departments ``d{id}`` and rooms ``r{id}``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.fhirapi import systems
from his.fhirapi.mappers import ALL_IDS
from his.fhirapi.mappers.common import coding, concept, drop_empty, ref
from his.fhirapi.projection import Built, builder, trigger
from his.fhirapi.searchparams import REFERENCE, STRING, TOKEN, param
from his.fhirapi.wire import is_number
from his.models import CareLevel, Department, Facility, LegacyTier, Room

CARE_LEVEL_DISPLAY = {
    CareLevel.PRIMARY: "Cấp khám bệnh, chữa bệnh ban đầu",
    CareLevel.BASIC: "Cấp khám bệnh, chữa bệnh cơ bản",
    CareLevel.SPECIALISED: "Cấp khám bệnh, chữa bệnh chuyên sâu",
}
LEGACY_TIER_DISPLAY = {
    LegacyTier.CENTRAL: "Tuyến trung ương",
    LegacyTier.PROVINCIAL: "Tuyến tỉnh",
    LegacyTier.DISTRICT: "Tuyến huyện",
    LegacyTier.COMMUNE: "Tuyến xã",
}

# --- Organization -------------------------------------------------------------------

param("Organization", "identifier", TOKEN, "identifier", doc="The 5-character facility code")
param("Organization", "name", STRING, "name", doc="Accents and case ignored")
param("Organization", "partof", REFERENCE, "partOf", targets=("Organization",))
param("Organization", "type", TOKEN, "type", doc="prov, or the care level (care-level)")
param("Organization", "active", TOKEN, "active")
param("Organization", "address", STRING, "address")
param("Organization", "address-city", STRING, "address.city")


@trigger(Facility)
def _facility_changed(row: Facility):
    return [("Organization", str(row.id))]


def _organization_ids(session: Session) -> Iterator[str]:
    for fid in session.scalars(select(Facility.id).order_by(Facility.id)):
        yield str(fid)


ALL_IDS["Organization"] = _organization_ids


@builder("Organization")
def build_organization(session: Session, resource_id: str) -> Built | None:
    if not is_number(resource_id):
        return None
    facility = session.get(Facility, int(resource_id))
    if facility is None:
        return None
    # Shared: every facility of the province may see every other one (referrals).
    return Built(organization_resource(session, facility))


def organization_resource(session: Session, facility: Facility) -> dict[str, Any]:
    from his.services.admin_units import unit_name

    # A row built in this transaction may still hold the plain string it was given.
    level = CareLevel(facility.care_level)
    care_level = concept(systems.CARE_LEVEL_CS, level.value, CARE_LEVEL_DISPLAY[level])
    extensions: list[dict[str, Any]] = [
        {"url": systems.CARE_LEVEL_EXT, "valueCodeableConcept": care_level}
    ]
    if facility.legacy_tier:
        extensions.append(
            {
                "url": systems.LEGACY_TIER_EXT,
                "valueCoding": coding(
                    systems.LEGACY_TIER_CS,
                    LegacyTier(facility.legacy_tier).value,
                    LEGACY_TIER_DISPLAY[facility.legacy_tier],
                ),
            }
        )
    address_ext = [{"url": systems.ADMIN_PROVINCE, "valueCode": facility.province_code}]
    if facility.commune_code:
        address_ext.append({"url": systems.ADMIN_COMMUNE, "valueCode": facility.commune_code})
    resource = {
        "extension": extensions,
        "identifier": [
            {"use": "official", "system": systems.FACILITY_CODE, "value": facility.code}
        ],
        "active": bool(facility.active),
        "type": [
            concept(systems.ORGANIZATION_TYPE, "prov", "Healthcare Provider"),
            care_level,
        ],
        "name": facility.name,
        "address": [
            {
                "extension": address_ext,
                "use": "work",
                "district": unit_name(session, "commune", facility.commune_code)
                if facility.commune_code
                else None,
                "city": unit_name(session, "province", facility.province_code),
                "country": "VN",
            }
        ],
        "partOf": ref("Organization", facility.parent_id) if facility.parent_id else None,
    }
    return drop_empty(resource)


# --- Location -------------------------------------------------------------------------

param("Location", "identifier", TOKEN, "identifier", doc="The department or room code")
param("Location", "name", STRING, "name")
param("Location", "organization", REFERENCE, "managingOrganization", targets=("Organization",))
param("Location", "partof", REFERENCE, "partOf", targets=("Location",))
param("Location", "status", TOKEN, "status")
param("Location", "type", TOKEN, "physicalType", doc="wa (department) or ro (room)")


@trigger(Department)
def _department_changed(row: Department):
    return [("Location", f"d{row.id}")]


@trigger(Room)
def _room_changed(row: Room):
    return [("Location", f"r{row.id}")]


def _location_ids(session: Session) -> Iterator[str]:
    for did in session.scalars(select(Department.id).order_by(Department.id)):
        yield f"d{did}"
    for rid in session.scalars(select(Room.id).order_by(Room.id)):
        yield f"r{rid}"


ALL_IDS["Location"] = _location_ids


@builder("Location")
def build_location(session: Session, resource_id: str) -> Built | None:
    kind, number = resource_id[:1], resource_id[1:]
    if not is_number(number):
        return None
    if kind == "d":
        department = session.get(Department, int(number))
        if department is None:
            return None
        return Built(_department_resource(department), facility_id=department.facility_id)
    if kind == "r":
        room = session.get(Room, int(number))
        if room is None:
            return None
        return Built(_room_resource(room), facility_id=room.department.facility_id)
    return None


def _department_resource(department: Department) -> dict[str, Any]:
    # A khoa is an organisational unit with its own wards and rooms: the nearest
    # location-physical-type is "wa" (ward).
    return drop_empty(
        {
            "identifier": [{"system": systems.DEPARTMENT_CODE, "value": department.code}],
            "status": "active" if department.active else "inactive",
            "name": department.name,
            "mode": "instance",
            "physicalType": concept(systems.LOCATION_PHYSICAL_TYPE, "wa", "Ward"),
            "managingOrganization": ref("Organization", department.facility_id),
        }
    )


def _room_resource(room: Room) -> dict[str, Any]:
    department = room.department
    return drop_empty(
        {
            "identifier": [{"system": systems.ROOM_CODE, "value": room.code}],
            "status": "active" if room.active else "inactive",
            "name": room.name,
            "mode": "instance",
            "physicalType": concept(systems.LOCATION_PHYSICAL_TYPE, "ro", "Room"),
            "managingOrganization": ref("Organization", department.facility_id),
            "partOf": ref("Location", f"d{department.id}"),
        }
    )
