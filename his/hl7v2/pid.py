"""Reading a patient out of PID (with NK1, IN1 and our ZBH segment) into the same input the
registration form and the REST API give the patient service, so one set of rules checks
all three doors. Where each value comes from is written down in docs/hl7v2-profile.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from his.hl7v2.codec import Message, Segment
from his.identifiers import insurance_number_of
from his.models import Facility, Hl7Peer, IdentifierType, Patient, PatientIdentifier

# PID-3 identifier type (CX-5) -> our identifier kind, unless the peer's profile says
# otherwise. NNVNM is the HL7 "national person identifier" of Viet Nam (CCCD / personal ID);
# HC the health card (BHYT); MR the medical record number.
DEFAULT_IDENTIFIER_MAP = {
    "NNVNM": "cccd",
    "NI": "cccd",
    "HC": "bhyt",
    "MR": "mrn",
    "PPN": "passport",
    "CMND": "cmnd",
}
# The countries our patients most often come from, alpha-3 (HL7 table 0212) -> alpha-2.
ALPHA3 = {
    "VNM": "VN",
    "KHM": "KH",
    "LAO": "LA",
    "CHN": "CN",
    "THA": "TH",
    "USA": "US",
    "KOR": "KR",
    "JPN": "JP",
    "TWN": "TW",
    "FRA": "FR",
    "AUS": "AU",
}
SEX_CODES = {"M": "male", "F": "female", "U": "undetermined", "O": "undetermined"}
# HL7 locations of the patient service's input fields, for the ERR segment of an AE.
FIELD_LOCATIONS = {
    "full_name": "PID^1^5",
    "sex": "PID^1^8",
    "birth_date": "PID^1^7",
    "cccd": "PID^1^3",
    "phone": "PID^1^13",
    "address": "PID^1^11",
    "ethnicity_code": "PID^1^22",
    "nationality": "PID^1^28",
    "identifiers": "PID^1^3",
    "guardian": "NK1^1^2",
    "insurance": "IN1^1^36",
    "insurance.valid_from": "IN1^1^12",
    "insurance.valid_to": "IN1^1^13",
    "insurance.registered_facility_code": "ZBH^1^3",
    "insurance.area_code": "ZBH^1^4",
    "insurance.five_year_date": "ZBH^1^5",
    "payment": "PV1^1^20",
    "room_id": "PV1^1^3",
    "mrn": "PID^1^3",
    "bhyt": "PID^1^3",
}


@dataclass(frozen=True)
class CxIdentifier:
    """One repetition of PID-3 (or MRG-1), with where it stands in the message."""

    value: str
    kind: IdentifierType
    system: str  # for external identifiers: "<sender>:<assigning authority or type>"
    location: str


@dataclass
class PatientInput:
    data: dict[str, Any]
    identifiers: list[CxIdentifier] = field(default_factory=list)


def identifier_map(peer: Hl7Peer | None) -> dict[str, str]:
    own = peer.identifier_map or {} if peer else {}
    return {**DEFAULT_IDENTIFIER_MAP, **{k.upper(): v for k, v in own.items()}}


def _ours(session: Session, authority: str) -> bool:
    return (
        bool(authority)
        and session.scalar(select(Facility.id).where(Facility.code == authority)) is not None
    )


def cx_identifiers(
    session: Session, seg: Segment, field_no: int, peer: Hl7Peer | None
) -> list[CxIdentifier]:
    """The identifiers of a CX field. An MR number is our MRN only when its assigning
    authority is one of our facility codes; another system's record number is kept as an
    external identifier of that system."""
    mapping = identifier_map(peer)
    sender = peer.name if peer else "unknown"
    found = []
    for n in range(1, len(seg.repetitions(field_no)) + 1):
        value = seg.get(field_no, 1, repetition=n).strip()
        if not value:
            continue
        type_code = seg.get(field_no, 5, repetition=n).strip().upper()
        authority = seg.get(field_no, 4, repetition=n).strip()
        kind_name = mapping.get(type_code)
        kind = IdentifierType(kind_name) if kind_name else IdentifierType.EXTERNAL
        if kind is IdentifierType.MRN and not _ours(session, authority):
            kind = IdentifierType.EXTERNAL
        if kind is IdentifierType.BHYT:
            # We key a card by its social-insurance number (mã số BHXH).
            value = insurance_number_of(value) or value
        system = "" if kind is not IdentifierType.EXTERNAL else f"{sender}:{authority or type_code}"
        found.append(CxIdentifier(value, kind, system, f"{seg.name}^1^{field_no}^{n}"))
    return found


def find_patient(
    session: Session, identifiers: list[CxIdentifier], *, follow_merges: bool = True
) -> Patient | None:
    """The patient one of these identifiers names, strongest first; a merged record
    leads to the record it was merged into (unless ``follow_merges`` is off)."""
    order = (
        IdentifierType.MRN,
        IdentifierType.CCCD,
        IdentifierType.BHYT,
        IdentifierType.PASSPORT,
        IdentifierType.CMND,
        IdentifierType.EXTERNAL,
    )
    for kind in order:
        for cx in (i for i in identifiers if i.kind is kind):
            patient_id = session.scalar(
                select(PatientIdentifier.patient_id).where(
                    PatientIdentifier.type == kind,
                    PatientIdentifier.system == cx.system,
                    PatientIdentifier.value == cx.value,
                )
            )
            if patient_id is not None:
                patient = session.get(Patient, patient_id)
                while follow_merges and patient is not None and patient.merged_into_id:
                    patient = session.get(Patient, patient.merged_into_id)
                return patient
    return None


def _date(value: str) -> dt.date | None:
    digits = value.strip()[:8]
    if len(digits) == 8 and digits.isdigit():
        try:
            return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            return None
    return None


def birth_date(value: str) -> str:
    """HL7 DTM of any precision -> the API's YYYY, YYYY-MM or YYYY-MM-DD (a bad date is
    passed on as written, so the patient service names it)."""
    digits = value.strip().split("+")[0].split("-")[0][:8]
    if digits.isdigit() and len(digits) in (4, 6, 8):
        parts = [digits[:4], digits[4:6], digits[6:8]]
        return "-".join(p for p in parts if p)
    return value.strip()


def vietnamese_name(seg: Segment, field_no: int) -> str:
    """XPN family^given^middle as a Vietnamese full name: family, middle, given. Senders
    that put the middle name with the given name in XPN-2 ("Nguyễn^Thị Thu Hương") read
    the same way."""
    family, given, middle = (seg.get(field_no, n).strip() for n in (1, 2, 3))
    return " ".join(p for p in (family, middle, given) if p)


def _phone(seg: Segment, field_no: int) -> str | None:
    """The first number of an XTN field: country + area + local number (XTN-5/6/7) when
    given in parts, else the number as written (XTN-1)."""
    for n in range(1, len(seg.repetitions(field_no)) + 1):
        local = seg.get(field_no, 7, repetition=n)
        written = seg.get(field_no, 12, repetition=n)  # XTN-12, the whole number from 2.7
        if written:
            return written
        if local:
            country = seg.get(field_no, 5, repetition=n)
            area = seg.get(field_no, 6, repetition=n)
            return (f"+{country} " if country else "") + area + local
        if seg.get(field_no, 1, repetition=n):
            return seg.get(field_no, 1, repetition=n)
    return None


def _address(pid: Segment) -> dict[str, Any] | None:
    if not pid.field(11):
        return None
    line = ", ".join(p for p in (pid.get(11, 1), pid.get(11, 2), pid.get(11, 3)) if p)
    province, area = pid.get(11, 4).strip(), pid.get(11, 9).strip()
    address: dict[str, Any] = {"line": line or None}
    # After the 2025 reform an address is province + commune (5 digits); a 3-digit
    # county code is a pre-2025 district, kept as such.
    if len(area) == 5:
        address.update(province_code=province or None, commune_code=area)
    elif len(area) == 3:
        address.update(legacy_province_code=province or None, legacy_district_code=area)
    elif province:
        address["province_code"] = province
    return address


def _insurance(msg: Message, identifiers: list[CxIdentifier]) -> dict[str, Any] | None:
    """The BHYT card: IN1-36 (or the HC identifier of PID-3), IN1-12/13 validity, and our
    ZBH segment for what HL7 has no field for (ZBH-3 MA_DKBD, ZBH-4 area code, ZBH-5 the
    five-year date; ZBH-2, the benefit level, is read from the card number itself)."""
    in1, zbh = msg.segment("IN1"), msg.segment("ZBH")
    card = in1.get(36) if in1 else ""
    card = card or next((i.value for i in identifiers if i.kind is IdentifierType.BHYT), "")
    if not card:
        return None
    insurance: dict[str, Any] = {"card_number": card.strip()}
    if in1:
        insurance["valid_from"] = _date(in1.get(12))
        insurance["valid_to"] = _date(in1.get(13))
    if zbh:
        insurance["registered_facility_code"] = zbh.get(3).strip() or None
        insurance["area_code"] = zbh.get(4).strip() or None
        insurance["five_year_date"] = _date(zbh.get(5))
    return insurance


def patient_input(
    session: Session, msg: Message, peer: Hl7Peer | None, *, pid: Segment | None = None
) -> PatientInput:
    """The patient service's input from the message; only what the message gives."""
    pid = pid or msg.segment("PID")
    assert pid is not None
    identifiers = cx_identifiers(session, pid, 3, peer)
    data: dict[str, Any] = {}
    name = vietnamese_name(pid, 5)
    if name:
        data["full_name"] = name
    if pid.get(8).strip():
        data["sex"] = SEX_CODES.get(pid.get(8).strip().upper(), pid.get(8).strip().lower())
    if pid.get(7).strip():
        data["birth_date"] = birth_date(pid.get(7))
    cccd = next((i.value for i in identifiers if i.kind is IdentifierType.CCCD), None)
    if cccd:
        data["cccd"] = cccd
    if (phone := _phone(pid, 13)) is not None:
        data["phone"] = phone
    if (address := _address(pid)) is not None:
        data["address"] = address
    if pid.get(22).strip():
        data["ethnicity_code"] = pid.get(22).strip()
    # PID-28 nationality (withdrawn in 2.7: PID-26 citizenship); ISO alpha-3 VNM is VN.
    nationality = (pid.get(28) or pid.get(26)).strip().upper()
    if nationality:
        data["nationality"] = ALPHA3.get(nationality, nationality)
    others = [
        {
            "system": i.kind.value if i.kind is not IdentifierType.EXTERNAL else i.system,
            "value": i.value,
        }
        for i in identifiers
        if i.kind in (IdentifierType.EXTERNAL, IdentifierType.PASSPORT, IdentifierType.CMND)
    ]
    if others:
        data["identifiers"] = others
    nk1 = msg.segment("NK1")
    if nk1 is not None and nk1.get(2, 1):
        data["guardian"] = {
            "name": vietnamese_name(nk1, 2),
            "relation": nk1.get(3, 2) or nk1.get(3, 1) or None,
            "phone": _phone(nk1, 5),
        }
    if (insurance := _insurance(msg, identifiers)) is not None:
        data["insurance"] = insurance
    return PatientInput(data=data, identifiers=identifiers)
