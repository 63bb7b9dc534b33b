"""Our events as HL7 v2 messages (ER7), one function per kind, for the peer's version.

Versions 2.3, 2.3.1, 2.4, 2.5, 2.5.1 and 2.6–2.8.x. What changes with the version:

- MSH-9.3 (the structure) exists from 2.3.1 (the builder drops it for 2.3);
- EVN-1, ORC-7, OBR-27 and RXE-1 (the old TQ quantity/timing) are filled up to 2.4 and
  withdrawn from 2.7; from 2.5 on timing goes in TQ1;
- orders: **ORM^O01 up to 2.4, OML^O21 from 2.5** (ORM was deprecated in 2.5 and is
  gone from 2.7, and the 2.4 OML^O21 had a laboratory-only group tree);
- pharmacy: RDE^O01 in 2.3/2.3.1, RDE^O11 from 2.4;
- the phone number is XTN-1 up to 2.6 and XTN-12 from 2.7 (XTN-1 withdrawn).

Field mapping (notes/HL7v2.md §2.2; the profile document in the repository lists it too):

- PID-3 (repeating CX): MRN ``mrn^^^<facility>^MR``, CCCD ``^^^BCA^NNVNM``, old CMND
  ``^^^BCA^CMND``, BHYT card ``^^^BHXH^HC``, passport ``^^^<nationality>^PPN``, other
  systems' ids with that system as assigning authority (a URI as HD-2 with HD-3 ``URI``).
- PID-5 family^given^middle (XPN-7 ``L``); PID-7 the birth date as precise as known (YYYY,
  YYYYMM or YYYYMMDD); PID-8 M/F/U; PID-11 line^^^province^^VNM^H^^commune; PID-13 phone;
  PID-22 ethnicity (MA_DANTOC, local table ``99DT``); PID-28 nationality.
- PV1-2 class (O/E/I), PV1-3 ``department^room^^facility^^^^^room name`` (a room is unique
  only within its department), PV1-6 the room left (A02), PV1-19 the visit code (MA_LK),
  PV1-20 ``BHYT`` or ``VP`` (viện phí), PV1-44/45 opened / closed.
- IN1 for the current BHYT card: IN1-2 ``BHYT``, IN1-3 ``BHXH<province>``, IN1-12/13
  validity, IN1-15 the beneficiary group, IN1-36 the card number. The rest has no standard
  field and goes in **ZBH**: ZBH-1 set id, ZBH-2 benefit level (1–5), ZBH-3 registered
  primary-care facility (MA_DKBD), ZBH-4 area code (K1/K2/K3), ZBH-5 five-year date,
  ZBH-6 social-insurance number (mã số BHXH), ZBH-7 card check status.
- Orders: ORC-2/OBR-2 placer ``<order id>^<facility>``, OBR-4 ``service code^name^99BYT``,
  ORC-12/OBR-16 the ordering doctor. Prescriptions: one ORC/RXE/TQ1/RXR group per item,
  ORC-2 ``<prescription code>.<item number>^<facility>``, ORC-4 the prescription code,
  RXE-2 ``drug code^name^99DMT``, RXE-3/5 dose and unit, RXE-6 form, RXE-10/11 quantity,
  RXE-21 how to take it (text).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import object_session

from his.hl7v2.builder import MessageBuilder, Repeat, format_ts
from his.models import (
    Coverage,
    IdentifierType,
    Patient,
    PatientMerge,
    Prescription,
    Room,
    ServiceOrder,
    Sex,
    User,
    Visit,
    VisitType,
)
from his.person_name import split_name

DEFAULT_APPLICATION = "HIS"
LAST_ORM_VERSION = (2, 4)  # peers up to this version get ORM^O01, later ones OML^O21

_SEX = {Sex.MALE: "M", Sex.FEMALE: "F", Sex.UNDETERMINED: "U"}
_CLASS = {VisitType.EMERGENCY: "E", VisitType.INPATIENT: "I"}  # anything else: O
_ROUTES = {  # HL7 table 0162 for the routes Vietnamese prescriptions write
    "uống": "PO",
    "ngậm": "SL",
    "ngậm dưới lưỡi": "SL",
    "tiêm bắp": "IM",
    "tiêm tĩnh mạch": "IV",
    "truyền tĩnh mạch": "IV",
    "tiêm dưới da": "SC",
    "bôi": "TP",
    "dùng ngoài": "TP",
    "đặt hậu môn": "PR",
    "nhỏ mắt": "OP",
    "nhỏ mũi": "NS",
    "xịt mũi": "NS",
    "hít": "IH",
}
_FREQUENCY = {1: "QD", 2: "BID", 3: "TID", 4: "QID"}  # table 0335; else "<n>ID"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


@dataclass(frozen=True)
class Header:
    """Who sends to whom, and the message's own id and time."""

    version: str
    application: str  # MSH-3: how this HIS names itself (settings.hl7_application)
    facility_code: str  # MSH-4 and the assigning authority of our MRNs and order numbers
    receiving_app: str
    receiving_facility: str
    control_id: str
    now: dt.datetime

    @classmethod
    def for_peer(
        cls,
        peer: Any,
        control_id: str,
        now: dt.datetime,
        *,
        application: str = DEFAULT_APPLICATION,
    ) -> Header:
        return cls(
            version=peer.version,
            application=application,
            facility_code=peer.facility.code,
            receiving_app=peer.name,
            receiving_facility=peer.sending_facility or peer.name,
            control_id=control_id,
            now=now,
        )

    @property
    def v(self) -> tuple[int, ...]:
        return version_tuple(self.version)


@dataclass(frozen=True)
class Built:
    event: str  # A28, O21, O01, O11 …
    message_type: str  # ADT^A28^ADT_A05
    patient_id: int
    text: str


# --- segments ------------------------------------------------------------------------------


def _start(h: Header, message_type: str) -> MessageBuilder:
    return MessageBuilder(
        h.version,
        sending_app=h.application,
        sending_facility=h.facility_code,
        receiving_app=h.receiving_app,
        receiving_facility=h.receiving_facility,
    ).msh(message_type, h.control_id, h.now)


def _ts(moment: dt.datetime | None) -> str | None:
    return format_ts(moment) if moment is not None else None


def _date(day: dt.date | None) -> str | None:
    return f"{day:%Y%m%d}" if day is not None else None


def _number(value: Decimal | int) -> str:
    return format(Decimal(value).normalize(), "f")


def _evn(b: MessageBuilder, h: Header, event: str) -> None:
    fields: dict[int, Any] = {2: format_ts(h.now)}
    if h.v < (2, 7):  # EVN-1 was withdrawn in 2.7
        fields[1] = event
    b.segment("EVN", fields)


def _authority(system: str) -> Any:
    if "://" in system or system.startswith(("urn:", "http")):
        return ("", system, "URI")
    return system


def patient_identifiers(h: Header, patient: Patient) -> Repeat:
    ids: list[tuple] = [(patient.mrn, "", "", h.facility_code, "MR")]
    coverage = patient.coverage
    for identifier in patient.identifiers:
        kind, value = identifier.type, identifier.value
        if kind is IdentifierType.MRN:
            continue  # the record's own MRN is first; other MRN rows are history
        if kind is IdentifierType.CCCD:
            ids.append((value, "", "", "BCA", "NNVNM"))
        elif kind is IdentifierType.CMND:
            ids.append((value, "", "", "BCA", "CMND"))
        elif kind is IdentifierType.BHYT:
            card = coverage.card_number if coverage is not None else value
            ids.append((card, "", "", "BHXH", "HC"))
        elif kind is IdentifierType.PASSPORT:
            ids.append((value, "", "", patient.nationality or "", "PPN"))
        else:
            ids.append((value, "", "", _authority(identifier.system or ""), "PI"))
    return Repeat(ids)


def _name(patient: Patient) -> tuple:
    if patient.given_name:
        family, middle, given = patient.family_name or "", patient.middle_name, patient.given_name
    else:
        family, middle, given = split_name(patient.full_name)
    return (family, given, middle or "", "", "", "", "L")


def _birth(patient: Patient) -> str:
    text = f"{patient.birth_year:04d}"
    if patient.birth_month:
        text += f"{patient.birth_month:02d}"
        if patient.birth_day:
            text += f"{patient.birth_day:02d}"
    return text


def _phone(h: Header, phone: str | None) -> Any:
    if not phone:
        return None
    if h.v < (2, 7):
        return (phone, "PRN", "PH")
    return ("", "PRN", "PH", "", "", "", "", "", "", "", "", phone)


def _ethnicity(h: Header, code: str | None) -> Any:
    if not code:
        return None
    return code if h.v < (2, 3, 1) else (code, "", "99DT")  # IS in 2.3, CE from 2.3.1


def _pid(b: MessageBuilder, h: Header, patient: Patient) -> None:
    address = None
    if patient.address_line or patient.province_code or patient.commune_code:
        address = (
            patient.address_line or "",
            "",
            "",
            patient.province_code or "",
            "",
            "VNM",
            "H",
            "",
            patient.commune_code or "",
        )
    b.segment(
        "PID",
        {
            1: "1",
            3: patient_identifiers(h, patient),
            5: _name(patient),
            7: _birth(patient),
            8: _SEX.get(patient.sex, "U"),
            11: address,
            13: _phone(h, patient.phone),
            22: _ethnicity(h, patient.ethnicity_code),
            # PID-28 was withdrawn in 2.7 (PID-26 citizenship stays).
            26: (patient.nationality, "", "ISO3166")
            if patient.nationality and h.v >= (2, 7)
            else None,
            28: (patient.nationality, "", "ISO3166")
            if patient.nationality and h.v < (2, 7)
            else None,
        },
    )


def _location(h: Header, room: Room | None, facility_code: str) -> tuple:
    if room is None:
        return ("", "", "", facility_code)
    return (room.department.code, room.code, "", facility_code, "", "", "", "", room.name)


def _pv1(
    b: MessageBuilder,
    h: Header,
    visit: Visit,
    *,
    prior_room: Room | None = None,
    closed: bool = False,
) -> None:
    facility_code = visit.facility.code
    fields: dict[int, Any] = {
        1: "1",
        2: _CLASS.get(visit.visit_type, "O"),
        3: _location(h, visit.room, facility_code),
        19: (visit.visit_code,),
        20: ("BHYT" if visit.payment.value == "bhyt" else "VP",),
        44: _ts(visit.opened_at),
    }
    if prior_room is not None:
        fields[6] = _location(h, prior_room, facility_code)
    if closed and visit.closed_at is not None:
        fields[45] = _ts(visit.closed_at)
    b.segment("PV1", fields)


def _no_visit_pv1(b: MessageBuilder) -> None:
    # ADT_A05 requires PV1; a person without a visit is "not applicable".
    b.segment("PV1", {1: "1", 2: "N"})


def _insurance(b: MessageBuilder, coverage: Coverage | None) -> None:
    if coverage is None:
        return
    b.segment(
        "IN1",
        {
            1: "1",
            2: ("BHYT", "Bảo hiểm y tế"),
            3: (f"BHXH{coverage.issuing_province or ''}", "", "", "", "NIIP"),
            4: ("Bảo hiểm xã hội Việt Nam",),
            12: _date(coverage.valid_from),
            13: _date(coverage.valid_to),
            15: coverage.group_code,
            36: coverage.card_number,
        },
    )
    b.segment(
        "ZBH",
        {
            1: "1",
            2: str(coverage.benefit_level) if coverage.benefit_level is not None else None,
            3: coverage.registered_facility_code,
            4: coverage.area_code,
            5: _date(coverage.five_year_date),
            6: coverage.insurance_number,
            7: coverage.status.value if coverage.status else None,
        },
    )


def _doctor(user: User | None) -> Any:
    if user is None:
        return None
    return (user.practising_certificate or str(user.id), user.full_name)


# --- ADT -----------------------------------------------------------------------------------


def _done(b: MessageBuilder, event: str, message_type: str, patient_id: int) -> Built:
    return Built(event=event, message_type=message_type, patient_id=patient_id, text=b.to_er7())


def build_person(h: Header, patient: Patient, event: str) -> Built:
    """A28 (add person) / A31 (update person): ADT_A05 (ADT_A01 before 2.4), no visit."""
    structure = "ADT_A05" if h.v >= (2, 4) else "ADT_A01"
    message_type = f"ADT^{event}^{structure}"
    b = _start(h, message_type)
    _evn(b, h, event)
    _pid(b, h, patient)
    _no_visit_pv1(b)
    _insurance(b, patient.coverage)
    return _done(b, event, message_type, patient.id)


def build_visit(h: Header, visit: Visit, event: str) -> Built:
    """A04 (registered) / A13 (finish undone): ADT_A01 with the card."""
    message_type = f"ADT^{event}^ADT_A01"
    b = _start(h, message_type)
    _evn(b, h, event)
    _pid(b, h, visit.patient)
    _pv1(b, h, visit)
    _insurance(b, visit.patient.coverage)
    return _done(b, event, message_type, visit.patient_id)


def build_a02(h: Header, visit: Visit, prior_room: Room | None) -> Built:
    """Room changed: ADT_A02, PV1-6 the room it left."""
    message_type = "ADT^A02^ADT_A02"
    b = _start(h, message_type)
    _evn(b, h, "A02")
    _pid(b, h, visit.patient)
    _pv1(b, h, visit, prior_room=prior_room)
    return _done(b, "A02", message_type, visit.patient_id)


def build_a03(h: Header, visit: Visit) -> Built:
    """Visit finished: ADT_A03 with PV1-45."""
    message_type = "ADT^A03^ADT_A03"
    b = _start(h, message_type)
    _evn(b, h, "A03")
    _pid(b, h, visit.patient)
    _pv1(b, h, visit, closed=True)
    return _done(b, "A03", message_type, visit.patient_id)


def build_a11(h: Header, visit: Visit) -> Built:
    """Visit cancelled: ADT_A09."""
    message_type = "ADT^A11^ADT_A09"
    b = _start(h, message_type)
    _evn(b, h, "A11")
    _pid(b, h, visit.patient)
    _pv1(b, h, visit)
    return _done(b, "A11", message_type, visit.patient_id)


def build_a40(h: Header, survivor: Patient, merged: Patient) -> Built:
    """Merge: ADT_A39, PID of the survivor, MRG-1 the merged record's MRN, MRG-7 its name."""
    message_type = "ADT^A40^ADT_A39"
    b = _start(h, message_type)
    _evn(b, h, "A40")
    _pid(b, h, survivor)
    b.segment(
        "MRG",
        # MRG-7 without XPN-7: hl7apy's v2.3 tables type MRG-7 as CX (six components).
        {1: Repeat([(merged.mrn, "", "", h.facility_code, "MR")]), 7: _name(merged)[:3]},
    )
    return _done(b, "A40", message_type, survivor.id)


# --- orders --------------------------------------------------------------------------------


def _visit_of_encounter(encounter: Any) -> Visit:
    return encounter.visit


def build_order(h: Header, order: ServiceOrder) -> Built:
    """A service ordered: OML^O21 from 2.5, ORM^O01 up to 2.4."""
    session = object_session(order)
    doctor = session.get(User, order.ordered_by_id) if session and order.ordered_by_id else None
    visit = _visit_of_encounter(order.encounter)
    placer = (str(order.id), h.facility_code)
    service = order.service
    universal = (order.service_code, service.name if service else "", "99BYT")
    old = h.v <= LAST_ORM_VERSION
    if old:
        event, message_type = "O01", "ORM^O01^ORM_O01"
    else:
        event, message_type = "O21", "OML^O21^OML_O21"
    b = _start(h, message_type)
    _pid(b, h, visit.patient)
    _pv1(b, h, visit)
    orc: dict[int, Any] = {1: "NW", 2: placer, 9: _ts(order.ordered_at), 12: _doctor(doctor)}
    obr: dict[int, Any] = {
        1: "1",
        2: placer,
        4: universal,
        16: _doctor(doctor),
    }
    if order.note:
        obr[13] = order.note
    if old:
        timing = (str(order.quantity), "", "", _ts(order.ordered_at))
        orc[7] = timing
        obr[27] = timing
        b.segment("ORC", orc)
        b.segment("OBR", obr)
    else:
        b.segment("ORC", orc)
        b.segment("TQ1", {1: "1", 2: (str(order.quantity),), 7: _ts(order.ordered_at), 9: "R"})
        b.segment("OBR", obr)
    return _done(b, event, message_type, visit.patient_id)


def _route(text: str) -> tuple:
    code = _ROUTES.get(text.strip().lower())
    return (code, text, "HL70162") if code else ("", text)


def build_rde(h: Header, prescription: Prescription) -> Built:
    """A signed prescription: RDE^O11 (RDE^O01 in 2.3/2.3.1), one ORC/RXE group per item."""
    from his.services.eprescription import usage

    session = object_session(prescription)
    doctor = session.get(User, prescription.prescriber_id) if session is not None else None
    visit = _visit_of_encounter(prescription.encounter)
    if h.v < (2, 4):
        event, message_type = "O01", "RDE^O01^RDE_O01"
    else:
        event, message_type = "O11", "RDE^O11^RDE_O11"
    b = _start(h, message_type)
    _pid(b, h, visit.patient)
    _pv1(b, h, visit)
    signed = prescription.signed_at or h.now
    code = prescription.code or str(prescription.id)
    for number, item in enumerate(prescription.items, start=1):
        frequency = _FREQUENCY.get(item.times_per_day, f"{item.times_per_day}ID")
        end = signed + dt.timedelta(days=item.days)
        unit = item.drug.unit
        orc: dict[int, Any] = {
            1: "NW",
            2: (f"{code}.{number}", h.facility_code),
            4: (code, h.facility_code),
            9: _ts(signed),
            12: _doctor(doctor),
        }
        rxe: dict[int, Any] = {
            2: (item.drug_code, item.drug_name, "99DMT"),
            3: _number(item.dose),
            5: (unit,),
            6: (item.drug.dosage_form,),
            10: _number(item.quantity),
            11: (unit,),
            21: ("", usage(item)),
        }
        if h.v < (2, 5):
            timing = (_number(item.dose), frequency, f"D{item.days}", _ts(signed), _ts(end))
            orc[7] = timing
            rxe[1] = timing
        b.segment("ORC", orc)
        b.segment("RXE", rxe)
        if h.v >= (2, 5):
            b.segment(
                "TQ1",
                {
                    1: "1",
                    2: (_number(item.dose), (unit,)),
                    3: (frequency,),
                    6: (str(item.days), ("d", "ngày", "UCUM")),
                    7: _ts(signed),
                    8: _ts(end),
                    14: str(item.times_per_day * item.days),
                },
            )
        b.segment("RXR", {1: _route(item.route)})
    return _done(b, event, message_type, prescription.patient_id)


# --- by event ------------------------------------------------------------------------------


def build(kind: str, h: Header, source: Any, *, prior_room: Room | None = None) -> Built:
    """The message for one outbox event (see ``his.hl7v2.outbox``)."""
    if kind in ("A28", "A31"):
        return build_person(h, source, kind)
    if kind in ("A04", "A13"):
        return build_visit(h, source, kind)
    if kind == "A02":
        return build_a02(h, source, prior_room)
    if kind == "A03":
        return build_a03(h, source)
    if kind == "A11":
        return build_a11(h, source)
    if kind == "A40":
        merge: PatientMerge = source
        session = object_session(merge)
        assert session is not None
        survivor = session.get(Patient, merge.survivor_id)
        merged = session.get(Patient, merge.merged_id)
        return build_a40(h, survivor, merged)
    if kind == "O21":
        return build_order(h, source)
    if kind == "O11":
        return build_rde(h, source)
    raise ValueError(f"no message for event {kind}")
