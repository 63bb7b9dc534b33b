"""Each outbound message kind, built from real rows, validates with hl7apy (STRICT parse +
validate()) and reads back with our codec with the Vietnamese text intact (NFC)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from decimal import Decimal

import pytest

from his.hl7v2 import outbound_messages as om
from his.hl7v2.codec import parse
from his.models import (
    Encounter,
    PatientMerge,
    Prescription,
    PrescriptionItem,
    PrescriptionStatus,
    PrescriptionType,
    ServiceOrder,
    VisitStatus,
)
from tests import encounters_data, prescribing_data
from tests.factories import FacilityFactory, PatientFactory, RoomFactory
from tests.hl7v2.outbound_data import hl7apy_message, rich_patient, visit_in_room

NOW = dt.datetime(2026, 3, 2, 1, 30, tzinfo=dt.UTC)  # 08:30 in Viet Nam
VERSIONS = ["2.3", "2.5", "2.5.1"]
# v2.3 MSH-9 has no structure component: the structure each kind uses there.
V23_STRUCTURES = {
    "A28": "ADT_A01",
    "A04": "ADT_A01",
    "A02": "ADT_A02",
    "A03": "ADT_A03",
    "A11": "ADT_A09",
    "A40": "ADT_A39",
    "order": "ORM_O01",
    "rde": "RDE_O01",
}


def header(version: str, facility_code: str) -> om.Header:
    return om.Header(
        version=version,
        application="HIS",
        facility_code=facility_code,
        receiving_app="LIS",
        receiving_facility="LIS",
        control_id="260302083000ABCDEF12",
        now=NOW,
    )


# hl7apy's v2.3 tables model two optional parts as required: ORM_O01's <OBR|RQD|...> choice
# as a sequence of all of them, and RDE_O01's [{OBX}] group. validate() fails on those
# alone there; the STRICT parse (segments, groups, datatypes) must still pass.
HL7APY_V23_DEFECTS = {"order": "ORM_O01_CHOICE.RQD", "rde": "RDE_O01_OBSERVATION"}


def _validate(text: str, version: str, kind: str):
    message = hl7apy_message(text, V23_STRUCTURES[kind] if version == "2.3" else None)
    if version == "2.3" and kind in HL7APY_V23_DEFECTS:
        with pytest.raises(Exception, match=HL7APY_V23_DEFECTS[kind]):
            message.validate()
    else:
        message.validate()
    return message


def _rows(db_session):
    facility = FacilityFactory()
    patient = rich_patient(db_session)
    return facility, patient


@pytest.mark.parametrize("version", VERSIONS)
def test_adt_messages_validate_and_read_back(db_session, version):
    facility, patient = _rows(db_session)
    visit = visit_in_room(db_session, patient, facility)
    old_room = RoomFactory(department__facility=facility, name="Phòng khám Nhi")
    h = header(version, facility.code)

    built = om.build("A28", h, patient)
    _validate(built.text, version, "A28")
    msg = parse(built.text.encode())
    assert msg.get("MSH-9-2") == "A28"
    assert msg.get("PID-5-1") == "Nguyễn" and msg.get("PID-5-2") == "Ánh"
    assert msg.get("PID-5-3") == "Thị Ngọc"
    assert unicodedata.is_normalized("NFC", msg.get("PID-5-3"))
    assert msg.get("PID-7") == "1958"  # only the year is known
    assert msg.get("PID-8") == "F"
    pid3 = built.text.split("\rPID|")[1].split("|")[2]
    assert pid3.split("~") == [
        f"{patient.mrn}^^^{facility.code}^MR",
        "091158001234^^^BCA^NNVNM",
        "DN4919123456789^^^BHXH^HC",
        "C1234567^^^VN^PPN",
        "LAB-77^^^&urn:oid:1.2.3.4&URI^PI",
    ]
    assert "\rIN1|1|BHYT^" in built.text and "|DN4919123456789" in built.text
    assert "\rZBH|1|4|91011|K2|20240301|4919123456|unverified" in built.text
    assert built.patient_id == patient.id

    a04 = om.build("A04", h, visit)
    _validate(a04.text, version, "A04")
    msg = parse(a04.text.encode())
    assert msg.get("PV1-19") == visit.visit_code
    assert msg.get("PV1-20") == "BHYT" and msg.get("PV1-2") == "O"
    room = visit.room
    assert msg.get("PV1-3-2") == room.code and msg.get("PV1-3-1") == room.department.code
    assert msg.get("PV1-3-4") == facility.code

    visit.room_id = RoomFactory(department__facility=facility).id
    db_session.flush()
    db_session.refresh(visit)
    a02 = om.build_a02(h, visit, old_room)
    _validate(a02.text, version, "A02")
    msg = parse(a02.text.encode())
    assert msg.get("PV1-6-2") == old_room.code
    assert msg.get("PV1-6-9") == "Phòng khám Nhi"

    visit.status = VisitStatus.FINISHED
    visit.closed_at = NOW
    a03 = om.build_a03(h, visit)
    _validate(a03.text, version, "A03")
    assert parse(a03.text.encode()).get("PV1-45") == "20260302083000+0700"

    a11 = om.build_a11(h, visit)
    _validate(a11.text, version, "A11")

    merged = PatientFactory(family_name="Nguyễn", middle_name="Thị", given_name="Ánh")
    a40 = om.build_a40(h, patient, merged)
    _validate(a40.text, version, "A40")
    msg = parse(a40.text.encode())
    assert msg.get("MRG-1-1") == merged.mrn
    assert msg.get("PID-3-1") == patient.mrn


def test_newer_versions_drop_withdrawn_fields(db_session):
    facility, patient = _rows(db_session)
    h = header("2.8", facility.code)
    built = om.build("A28", h, patient)
    message = hl7apy_message(built.text)
    message.validate()
    assert "\rEVN||" in built.text  # EVN-1 withdrawn in 2.7
    assert parse(built.text.encode()).get("PID-13-12") == "0912345678"


def _order(db_session):
    clinic = encounters_data.clinic(db_session)
    encounter = encounters_data.examined(db_session, clinic)
    service = clinic.services["GLU"]
    order = ServiceOrder(
        encounter_id=encounter.id,
        facility_id=clinic.facility.id,
        service_id=service.id,
        service_code=service.code,
        ordered_by_id=clinic.doctor.id,
        note="Nhịn ăn 8 giờ",
    )
    db_session.add(order)
    db_session.flush()
    db_session.refresh(order)
    return clinic, order


@pytest.mark.parametrize("version", VERSIONS)
def test_service_order(db_session, version):
    clinic, order = _order(db_session)
    built = om.build_order(header(version, clinic.facility.code), order)
    message = _validate(built.text, version, "order")
    msg = parse(built.text.encode())
    assert msg.get("MSH-9-1") == ("ORM" if version == "2.3" else "OML")
    assert message.name == ("ORM_O01" if version == "2.3" else "OML_O21")
    assert msg.get("ORC-1") == "NW"
    assert msg.get("ORC-2-1") == str(order.id) and msg.get("ORC-2-2") == clinic.facility.code
    assert msg.get("OBR-4-1") == "23.0075.1494"
    assert msg.get("OBR-4-2") == "Định lượng Glucose máu"
    assert msg.get("OBR-16-2") == "BS. Lê Văn An"
    assert ("\rTQ1|" in built.text) is (version != "2.3")


def _prescription(db_session):
    s = prescribing_data.make_setting(db_session, facility_code="91901")
    rx = Prescription(
        encounter_id=s.encounter.id,
        facility_id=s.facility.id,
        patient_id=s.patient.id,
        prescriber_id=s.doctor.id,
        rx_type=PrescriptionType.OTHER,
        status=PrescriptionStatus.SIGNED,
        code="91901ABC1234-c",
        signed_at=NOW,
    )
    db_session.add(rx)
    db_session.flush()
    for position, (key, dose, times, days, route) in enumerate(
        [("PARA500", "1", 3, 5, "uống"), ("SIRO", "2.5", 2, 7, "uống")]
    ):
        drug = s.drugs[key]
        quantity = Decimal(dose) * times * days
        db_session.add(
            PrescriptionItem(
                prescription_id=rx.id,
                position=position,
                drug_id=drug.id,
                drug_code=drug.code,
                drug_name=f"{drug.active_ingredient} ({drug.brand or ''}) {drug.strength}",
                dose=Decimal(dose),
                times_per_day=times,
                days=days,
                route=route,
                instructions="Sau ăn no",
                computed_quantity=quantity,
                quantity=quantity,
            )
        )
    db_session.flush()
    db_session.refresh(rx)
    assert isinstance(rx.encounter, Encounter)
    return s, rx


def _rde_shape(text: str) -> list[str]:
    return [seg.split("|", 1)[0] for seg in text.split("\r") if seg]


@pytest.mark.parametrize("version", VERSIONS)
def test_prescription(db_session, version):
    s, rx = _prescription(db_session)
    built = om.build_rde(header(version, s.facility.code), rx)
    shape = _rde_shape(built.text)
    if version == "2.3":
        assert shape == ["MSH", "PID", "PV1", "ORC", "RXE", "RXR", "ORC", "RXE", "RXR"]
        _validate(built.text, version, "rde")
    else:
        assert shape == [
            *("MSH", "PID", "PV1"),
            *("ORC", "RXE", "TQ1", "RXR"),
            *("ORC", "RXE", "TQ1", "RXR"),
        ]
        # hl7apy's known RDE^O11 grouping bug (notes/HL7v2.md §2.3): a TQ1 after RXE is put
        # in the ORC-level TIMING group and validate() then wrongly misses the required
        # TIMING_ENCODED group. The STRICT parse (datatypes, cardinalities of the fields)
        # still has to pass; the group order is asserted above on our own.
        message = hl7apy_message(built.text)
        with pytest.raises(Exception, match="TIMING_ENCODED"):
            message.validate()
    msg = parse(built.text.encode())
    assert msg.get("MSH-9-2") == ("O01" if version == "2.3" else "O11")
    assert msg.get("ORC-2-1") == "91901ABC1234-c.1"
    assert msg.get("ORC-4-1") == "91901ABC1234-c"
    assert msg.get("RXE-2-1") == "PARA500"
    assert msg.get("RXE-3") == "1" and msg.get("RXE-5-1") == "viên"
    assert msg.get("RXE-10") == "15"
    assert msg.get("RXE-21-2").startswith("Uống, mỗi lần 1 viên, ngày 3 lần, trong 5 ngày")
    assert msg.get("RXR-1-1") == "PO"
    if version != "2.3":
        assert msg.get("TQ1-3-1") == "TID"


def test_a40_from_merge_row(db_session):
    facility, patient = _rows(db_session)
    merged = PatientFactory()
    merge = PatientMerge(survivor_id=patient.id, merged_id=merged.id, moved="{}")
    db_session.add(merge)
    db_session.flush()
    built = om.build("A40", header("2.5.1", facility.code), merge)
    assert parse(built.text.encode()).get("MRG-1-1") == merged.mrn
    assert built.patient_id == patient.id
