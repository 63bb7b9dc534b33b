"""Catalog rows and a ready examination room for the encounter tests, made with the ORM.

The ICD-10 lists here start in 2026, so they are chosen over the WHO list (valid from
2000) that the migrations may load; a later list drops a code, to test the end-date rule.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from his.localtime import local_today
from his.models import (
    Facility,
    Icd10Code,
    Icd10Version,
    MedicalService,
    Role,
    Room,
    ServiceKind,
    SexRestriction,
    User,
)
from his.services import catalogs
from his.services import encounters as encounter_service
from his.services.access import Principal
from tests.factories import (
    FacilityFactory,
    PatientFactory,
    RoomFactory,
    UserFactory,
    VisitFactory,
)

# code → (Vietnamese title, flags)
CODES: dict[str, tuple[str, dict]] = {
    "J06": ("Nhiễm trùng hô hấp trên cấp", {"has_children": True}),
    "J06.0": ("Viêm thanh quản họng cấp", {"parent_code": "J06"}),
    "J06.9": ("Nhiễm trùng hô hấp trên cấp, không đặc hiệu", {"parent_code": "J06"}),
    "I10": ("Tăng huyết áp vô căn (nguyên phát)", {}),
    "E11.9": ("Đái tháo đường type 2 không có biến chứng", {}),
    "K29.7": ("Viêm dạ dày, không đặc hiệu", {}),
    "B95.2": ("Liên cầu nhóm D là nguyên nhân gây bệnh", {"not_main": True}),
    "U85": ("Kháng thuốc chống ung thư", {"never_usable": True}),
    "R99": ("Tử vong không rõ nguyên nhân", {"cause_of_death_only": True}),
    "N40": ("Tăng sản tuyến tiền liệt", {"sex": SexRestriction.MALE}),
    "O80": ("Đẻ thường một thai", {"sex": SexRestriction.FEMALE}),
    "Z00.0": ("Khám sức khỏe tổng quát", {}),
}
# The later list no longer has this code (e.g. it was split into five-character codes).
DROPPED_LATER = "K29.7"


def _add_list(session, name: str, valid_from: dt.date, codes: dict) -> Icd10Version:
    version = Icd10Version(name=name, source="test", valid_from=valid_from, valid_to=None)
    session.add(version)
    session.flush()
    for code, (title, flags) in codes.items():
        session.add(
            Icd10Code(
                version_id=version.id,
                code=code,
                title_en=f"{code} (en)",
                title_vi=title,
                search_key=catalogs.search_text(code, title, f"{code} (en)"),
                **flags,
            )
        )
    session.flush()
    return version


def icd10_lists(session, later_from: dt.date | None = None) -> tuple[Icd10Version, Icd10Version]:
    """A list valid from 2026-01-01 and one from ``later_from`` (far future by default)
    without ``DROPPED_LATER``."""
    tag = uuid.uuid4().hex[:6]
    first = _add_list(session, f"Test ICD-10 {tag} A", dt.date(2026, 1, 1), CODES)
    later = {k: v for k, v in CODES.items() if k != DROPPED_LATER}
    second = _add_list(session, f"Test ICD-10 {tag} B", later_from or dt.date(2099, 1, 1), later)
    return first, second


def services(session, facility: Facility) -> dict[str, MedicalService]:
    rows = {
        "GLU": MedicalService(
            code="23.0075.1494",
            name="Định lượng Glucose máu",
            kind=ServiceKind.LAB,
            unit="lần",
            bhyt_price=21500,
            service_price=30000,
            result_unit="mmol/L",
            reference_range="3.9–6.4",
        ),
        "XRAY": MedicalService(
            code="18.0071.0028",
            name="Chụp X-quang ngực thẳng",
            kind=ServiceKind.IMAGING,
            unit="lần",
            bhyt_price=65400,
            service_price=90000,
        ),
    }
    for row in rows.values():
        row.facility_id = facility.id
        row.search_key = catalogs.search_text(row.code, row.name)
        row.valid_from = dt.date(2026, 1, 1)
        session.add(row)
    session.flush()
    return rows


@dataclass
class Clinic:
    facility: Facility
    room: Room
    doctor: User
    nurse: User
    receptionist: User
    cashier: User
    lab: User
    services: dict[str, MedicalService]


def clinic(session, code: str | None = None) -> Clinic:
    facility = FacilityFactory(**({"code": code} if code else {}))
    room = RoomFactory(department__facility=facility, name="Phòng khám Nội 1")
    return Clinic(
        facility=facility,
        room=room,
        doctor=UserFactory(roles=(Role.DOCTOR,), facility=facility, full_name="BS. Lê Văn An"),
        nurse=UserFactory(roles=(Role.NURSE,), facility=facility),
        receptionist=UserFactory(roles=(Role.RECEPTIONIST,), facility=facility),
        cashier=UserFactory(roles=(Role.CASHIER,), facility=facility),
        lab=UserFactory(roles=(Role.INTEGRATION,), facility=facility),
        services=services(session, facility),
    )


def today() -> dt.date:
    return local_today()


def examined(session, clinic: Clinic, **visit):
    """A new patient's waiting visit in the clinic's room, and its doctor's examination."""
    from his.models import VisitStatus

    patient = PatientFactory()
    waiting = VisitFactory(
        facility_id=clinic.facility.id,
        patient_id=patient.id,
        room_id=clinic.room.id,
        queue_date=today(),
        queue_number=1,
        status=VisitStatus.WAITING,
        **visit,
    )
    return encounter_service.start_examination(
        session, Principal.for_user(clinic.doctor), waiting.id
    )
