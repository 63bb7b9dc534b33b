"""Rows and helpers for the outbound tests: a peer, a patient with every identifier, and
hl7apy validation of what we build."""

from __future__ import annotations

import datetime as dt

from his.models import (
    Hl7Peer,
    IdentifierType,
    PatientIdentifier,
    Payment,
    VisitType,
)
from tests.factories import CoverageFactory, PatientFactory, RoomFactory, VisitFactory

UTC = dt.UTC


def add_peer(session, facility, *, name="LIS", version="2.5.1", events="ADT,OML,RDE", **kw):
    peer = Hl7Peer(
        name=name,
        facility_id=facility.id,
        sending_application=kw.pop("sending_application", name),
        sending_facility=kw.pop("sending_facility", ""),
        host=kw.pop("host", "127.0.0.1"),
        port=kw.pop("port", 9),
        events=events,
        version=version,
        **kw,
    )
    session.add(peer)
    session.flush()
    return peer


def rich_patient(session):
    """Vietnamese name with every diacritic family, CCCD, BHYT card, passport, external id."""
    patient = PatientFactory(
        family_name="Nguyễn",
        middle_name="Thị Ngọc",
        given_name="Ánh",
        full_name="Nguyễn Thị Ngọc Ánh",
        birth_year=1958,
        birth_month=None,
        birth_day=None,
        phone="0912345678",
        ethnicity_code="01",
        address_line="12 Trần Hưng Đạo",
        province_code="91",
        commune_code="30313",
    )
    patient.identifiers.extend(
        [
            PatientIdentifier(type=IdentifierType.CCCD, value="091158001234"),
            PatientIdentifier(type=IdentifierType.BHYT, value="4919123456"),
            PatientIdentifier(type=IdentifierType.PASSPORT, value="C1234567"),
            PatientIdentifier(
                type=IdentifierType.EXTERNAL, system="urn:oid:1.2.3.4", value="LAB-77"
            ),
        ]
    )
    CoverageFactory(
        patient=patient,
        card_number="DN4919123456789",
        insurance_number="4919123456",
        benefit_level=4,
        area_code="K2",
        five_year_date=dt.date(2024, 3, 1),
    )
    session.flush()
    session.refresh(patient)
    return patient


def visit_in_room(session, patient, facility, **kw):
    room = kw.pop("room", None) or RoomFactory(department__facility=facility)
    return VisitFactory(
        facility_id=facility.id,
        patient_id=patient.id,
        room_id=room.id,
        visit_type=kw.pop("visit_type", VisitType.OUTPATIENT),
        payment=kw.pop("payment", Payment.BHYT),
        **kw,
    )


def hl7apy_message(text: str, structure: str | None = None):
    """Parse STRICT with groups. ``structure`` for v2.3, whose MSH-9 has no structure
    component (hl7apy would look for ``ADT_A04``, which 2.3 does not define)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.core import Message
    from hl7apy.parser import get_message_info, parse_message, parse_segments

    if structure is None:
        return parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    encoding_chars, _, version = get_message_info(text)
    message = Message(structure, version=version, validation_level=VALIDATION_LEVEL.STRICT)
    message.children = parse_segments(
        text, version, encoding_chars, VALIDATION_LEVEL.STRICT, message.reference, True
    )
    return message
