"""The province's facilities around the demo's: a regional medical centre for each former
district of An Giang and Kiên Giang, a health station in every 2025 commune of the
province, their rooms, staff and the demo drug and service catalogs. A few hundred rows
written through the ORM; running it twice adds nothing.

The plan it returns (``FacilityPlan``) is what the visit generator needs to know of them:
ids, rooms, doctors, cashiers, catalog prices.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from his.models import (
    CareLevel,
    Department,
    Drug,
    Facility,
    LegacyTier,
    MedicalService,
    Role,
    Room,
    ServiceKind,
    User,
    UserRole,
)
from his.services.auth import hash_password
from his.services.catalog_import import load_demo_catalogs, load_drugs, load_services
from his.services.demo import DEMO_PASSWORD, demo_data

HOME_PROVINCE = "91"  # An Giang (2025)
HOSPITAL_CODE = "91001"  # the demo's provincial hospital
FIRST_CENTRE_CODE = 20  # regional centres 91020…, stations 91100… (the demo's are 91010–13)
FIRST_STATION_CODE = 100
# Doctors per facility by care level; every facility also has a receptionist, a cashier
# and a pharmacist.
DOCTORS = {CareLevel.BASIC: 8, CareLevel.PRIMARY: 2}
HOSPITAL_DOCTORS = 40


def read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("his.data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


@dataclass(frozen=True)
class DrugRow:
    id: int
    code: str
    name: str  # as a prescription line shows it: ingredient, strength, form
    ingredient: str
    route: str
    unit: str
    price: int
    bhyt_covered: bool
    bhyt_payment_rate: int
    rx_class: str


@dataclass
class Place:
    """One facility as the visit generator sees it."""

    id: int
    code: str
    care_level: str
    legacy_tier: str | None
    parent_code: str | None
    exam_rooms: list[tuple[int, int, str]]  # (room id, department id, department code)
    emergency_room: tuple[int, int, str] | None
    doctors: list[tuple[int, str]]  # (user id, practising certificate)
    receptionist_id: int | None
    cashier_id: int | None
    exam_service: tuple[str, str, int, int] | None  # code, name, BHYT price, service price
    drugs: dict[str, list[DrugRow]] = field(default_factory=dict)  # by ingredient


@dataclass
class FacilityPlan:
    places: dict[str, Place]  # by facility code
    station_of_commune: dict[str, str]  # 2025 commune code -> its station's code
    centres: list[str]  # regional centre codes

    @property
    def hospital(self) -> Place:
        return self.places[HOSPITAL_CODE]


def _district_of_commune() -> tuple[dict[str, str], dict[str, str]]:
    """Each 2025 commune of the province -> the former district most of it came from, and
    every commune's name."""
    names = {
        row["code"]: row["name"]
        for row in read_csv("admin_units_2025.csv")
        if row["level"] == "commune" and row["province_code"] == HOME_PROVINCE
    }
    districts: dict[str, str] = {}
    for row in read_csv("legacy_communes_2025.csv"):
        commune = row["new_commune_code"]
        if commune in names and commune not in districts:
            districts[commune] = row["old_province_code"] + row["old_district_code"]
    return districts, names


def _lower_first(name: str) -> str:
    head, _, rest = name.partition(" ")
    return f"{head.lower()} {rest}"


def _staff_name(rng: random.Random, names: dict) -> str:
    family = rng.choice(names["family"])[0]
    sex = rng.choice(("male", "female"))
    return f"{family} {rng.choice(names[f'middle_{sex}'])} {rng.choice(names[f'given_{sex}'])}"


# Departments and rooms (code, name, [(room code, room name)]) of the facilities added.
CENTRE_DEPARTMENTS = (
    ("K01", "Khoa Khám bệnh", (("P01", "Phòng khám 1"), ("P02", "Phòng khám 2"))),
    ("K43", "Khoa Dược", (("D01", "Quầy thuốc"),)),
)
STATION_DEPARTMENTS = (("K01", "Khám bệnh", (("P01", "Phòng khám chung"), ("D01", "Quầy thuốc"))),)


def _facility(
    session: Session,
    by_code: dict[str, Facility],
    *,
    code: str,
    name: str,
    care_level: CareLevel,
    legacy_tier: LegacyTier,
    parent_id: int | None,
    commune: str,
    departments: tuple,
) -> Facility:
    """The facility with this code, added with its departments and rooms if missing."""
    facility = by_code.get(code)
    if facility is None:
        facility = Facility(
            code=code,
            name=name,
            care_level=care_level,
            legacy_tier=legacy_tier,
            parent_id=parent_id,
            province_code=HOME_PROVINCE,
            commune_code=commune,
            departments=[
                Department(code=dept, name=title, rooms=[Room(code=c, name=n) for c, n in rooms])
                for dept, title, rooms in departments
            ],
        )
        session.add(facility)
        by_code[code] = facility
    return facility


def add_facilities(
    session: Session, *, seed: int, catalogs_from: dt.date, station_drugs: frozenset[str]
) -> FacilityPlan:
    """The province's facilities, rooms, staff and catalogs (after ``load_demo``). The
    regional centres get the whole demo catalog; the stations only the drugs with the
    active ingredients in ``station_drugs`` and the examinations (a commune station's
    formulary is short, and every catalog row is also a FHIR resource to project)."""
    rng = random.Random(seed)  # noqa: S311 (reproducible synthetic data)
    by_code = {f.code: f for f in session.scalars(select(Facility))}
    districts, commune_names = _district_of_commune()
    demo_centre = by_code["91010"]
    centre_of_district = {districts[demo_centre.commune_code]: demo_centre}
    # A centre for every former district, in the district's first commune (a ward if any).
    communes_of: dict[str, list[str]] = defaultdict(list)
    for commune in sorted(districts):
        communes_of[districts[commune]].append(commune)
    next_centre = FIRST_CENTRE_CODE
    for district in sorted(communes_of):
        if district in centre_of_district:
            continue
        members = communes_of[district]
        seat = next((c for c in members if commune_names[c].startswith("Phường")), members[0])
        code = f"{HOME_PROVINCE}{next_centre:03d}"
        next_centre += 1
        centre = _facility(
            session,
            by_code,
            code=code,
            name=f"Trung tâm Y tế khu vực {commune_names[seat].split(' ', 1)[1]}",
            care_level=CareLevel.BASIC,
            legacy_tier=LegacyTier.DISTRICT,
            parent_id=None,
            commune=seat,
            departments=CENTRE_DEPARTMENTS,
        )
        centre_of_district[district] = centre
    session.flush()

    station_of_commune = {
        f.commune_code: f.code
        for f in by_code.values()
        if f.care_level == CareLevel.PRIMARY and f.commune_code
    }
    next_station = FIRST_STATION_CODE
    for commune in sorted(districts):
        if commune in station_of_commune:
            continue
        code = f"{HOME_PROVINCE}{next_station:03d}"
        next_station += 1
        _facility(
            session,
            by_code,
            code=code,
            name=f"Trạm Y tế {_lower_first(commune_names[commune])}",
            care_level=CareLevel.PRIMARY,
            legacy_tier=LegacyTier.COMMUNE,
            parent_id=centre_of_district[districts[commune]].id,
            commune=commune,
            departments=STATION_DEPARTMENTS,
        )
        station_of_commune[commune] = code
    session.flush()

    new = [
        f
        for f in by_code.values()
        if not session.scalar(select(Drug.id).where(Drug.facility_id == f.id).limit(1))
    ]
    load_demo_catalogs(
        session, [f for f in new if f.care_level != CareLevel.PRIMARY], catalogs_from
    )
    drugs = [row for row in read_csv("demo_drugs.csv") if row["active_ingredient"] in station_drugs]
    exams = [row for row in read_csv("demo_services.csv") if row["kind"] == "examination"]
    for station in (f for f in new if f.care_level == CareLevel.PRIMARY):
        load_drugs(session, station, drugs, catalogs_from)
        load_services(session, station, exams, catalogs_from)
    # The demo loads its catalogs from New Year's day; the synthetic year may start before.
    for model in (Drug, MedicalService):
        session.execute(
            update(model).where(model.valid_from > catalogs_from).values(valid_from=catalogs_from)
        )
    _add_staff(session, rng, list(by_code.values()))
    session.flush()
    centres = sorted(f.code for f in by_code.values() if f.legacy_tier == LegacyTier.DISTRICT)
    return FacilityPlan(_places(session), station_of_commune, centres)


def _add_staff(session: Session, rng: random.Random, facilities: list[Facility]) -> None:
    """Doctors up to the facility's count, and a receptionist, cashier and pharmacist, all
    with the demo password (one hash: argon2 costs a tenth of a second each)."""
    names = demo_data()["names"]
    password_hash = hash_password(DEMO_PASSWORD)
    taken = set(session.scalars(select(User.username)))
    licence = 1 + len(taken)
    for facility in sorted(facilities, key=lambda f: f.code):
        wanted = (
            HOSPITAL_DOCTORS
            if facility.code == HOSPITAL_CODE
            else DOCTORS.get(facility.care_level, 2)
        )
        planned = [(f"doctor.{facility.code}.{i:02d}", Role.DOCTOR) for i in range(1, wanted + 1)]
        planned += [
            (f"{role.value}.{facility.code}", role)
            for role in (Role.RECEPTIONIST, Role.CASHIER, Role.PHARMACIST)
        ]
        for username, role in planned:
            if username in taken:
                continue
            doctor = role == Role.DOCTOR
            user_id = session.execute(
                insert(User).returning(User.id),
                {
                    "username": username,
                    "full_name": ("BS. " if doctor else "") + _staff_name(rng, names),
                    "password_hash": password_hash,
                    "facility_id": facility.id,
                    "practising_certificate": f"{licence:06d}/AG-CCHN" if doctor else None,
                },
            ).scalar_one()
            session.execute(insert(UserRole), {"user_id": user_id, "role": role})
            taken.add(username)
            licence += 1


def _places(session: Session) -> dict[str, Place]:
    facilities = list(session.scalars(select(Facility).order_by(Facility.code)))
    parents = {f.id: f.code for f in facilities}
    staff = defaultdict(list)
    for user_id, facility_id, role, certificate in session.execute(
        select(User.id, User.facility_id, UserRole.role, User.practising_certificate)
        .join(UserRole, UserRole.user_id == User.id)
        .order_by(User.id)
    ):
        staff[(facility_id, role)].append((user_id, certificate or ""))
    exam = {}
    for row in session.scalars(
        select(MedicalService)
        .where(MedicalService.kind == ServiceKind.EXAMINATION, MedicalService.bhyt_price > 0)
        .order_by(MedicalService.code)
    ):
        exam.setdefault(row.facility_id, (row.code, row.name, row.bhyt_price, row.service_price))
    drugs: dict[int, dict[str, list[DrugRow]]] = defaultdict(lambda: defaultdict(list))
    for d in session.scalars(select(Drug).where(Drug.active).order_by(Drug.code)):
        drugs[d.facility_id][d.active_ingredient].append(
            DrugRow(
                d.id,
                d.code,
                f"{d.active_ingredient} {d.strength} ({d.dosage_form})",
                d.active_ingredient,
                d.route,
                d.unit,
                d.price,
                d.bhyt_covered,
                d.bhyt_payment_rate,
                d.rx_class,
            )
        )
    places = {}
    for f in facilities:
        rooms = [
            (room.id, dept.id, dept.code, room.code)
            for dept in sorted(f.departments, key=lambda d: d.code)
            for room in dept.rooms
        ]
        exam_rooms = [r[:3] for r in rooms if r[3].startswith("P")]
        emergency = next((r[:3] for r in rooms if r[3].startswith("CC")), None)
        places[f.code] = Place(
            id=f.id,
            code=f.code,
            care_level=f.care_level.value,
            legacy_tier=f.legacy_tier.value if f.legacy_tier else None,
            parent_code=parents.get(f.parent_id) if f.parent_id else None,
            exam_rooms=exam_rooms or [r[:3] for r in rooms[:1]],
            emergency_room=emergency,
            doctors=staff[(f.id, Role.DOCTOR)],
            receptionist_id=next(iter(staff[(f.id, Role.RECEPTIONIST)]), (None,))[0],
            cashier_id=next(iter(staff[(f.id, Role.CASHIER)]), (None,))[0],
            exam_service=exam.get(f.id),
            drugs=dict(drugs[f.id]),
        )
    return places
