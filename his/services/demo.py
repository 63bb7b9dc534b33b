"""The demo province: An Giang facilities, staff and 200 patients, loaded by ``his demo``.

Idempotent: every row is looked up by its natural key (facility code, username, MRN) and
only created when missing, so running it again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from his.localtime import local_today
from his.models import (
    CardStatus,
    CareLevel,
    Coverage,
    Department,
    Facility,
    IdentifierType,
    LegacyTier,
    Patient,
    PatientIdentifier,
    Payment,
    Role,
    Room,
    Sex,
    User,
    Visit,
)
from his.services import counters
from his.services.access import Principal
from his.services.auth import find_user
from his.services.catalog_import import load_demo_catalogs
from his.services.patients import MRN_COUNTER
from his.services.stock import receive_opening_stock
from his.services.users import create_user
from his.services.visits import VisitRequest, open_visit
from his.text import fold_vi

DEMO_PASSWORD = "demo"  # noqa: S105 (documented demo credential, only from `his demo`)
PATIENT_COUNT = 200
SEED = 2025


def demo_data() -> dict:
    return json.loads(resources.files("his.data").joinpath("demo_province.json").read_text("utf-8"))


@dataclass(frozen=True)
class DemoPatient:
    mrn: str
    family: str
    middle: str
    given: str
    sex: Sex
    birth_year: int
    birth_month: int | None
    birth_day: int | None
    cccd: str | None
    bhyt: str
    phone: str | None
    facility_code: str

    @property
    def full_name(self) -> str:
        return f"{self.family} {self.middle} {self.given}"


def _cccd(rng: random.Random, data: dict, sex: Sex, year: int, taken: set[str]) -> str:
    """12 digits: issuing province, century+sex digit, two year digits, six random digits."""
    century = (year // 100) - 19  # 1900s → 0, 2000s → 1
    sex_digit = century * 2 + (1 if sex is Sex.FEMALE else 0)
    while True:
        number = (
            rng.choice(data["cccd_province_codes"])
            + str(sex_digit)
            + f"{year % 100:02d}"
            + f"{rng.randrange(10**6):06d}"
        )
        if number not in taken:
            taken.add(number)
            return number


def _bhyt(rng: random.Random, groups: list[list], taken: set[str]) -> str:
    """15 characters: group code, benefit level, province of issue (91), 10-digit BHXH number."""
    group, level = rng.choice(groups)
    while True:
        number = f"{group}{level}91" + "91" + f"{rng.randrange(10**8):08d}"
        if number not in taken:
            taken.add(number)
            return number


def card_groups(groups: dict, age: int, draw: Callable[[], float]) -> list:
    """The BHYT groups (code, benefit level) a person of this age is drawn from: children
    under 6 and people over 60 by age, 15 % of the others poor households, the rest
    workers. ``draw`` is called only for those between."""
    if age < 6:
        return groups["child"]
    if age >= 60:
        return groups["elderly"]
    return groups["poor"] if draw() < 0.15 else groups["working"]


def generate_patients(today: dt.date, count: int = PATIENT_COUNT) -> list[DemoPatient]:
    """The same patients for the same day and count: a seeded generator, no Faker (its
    vi_VN names put the given name first and add honorifics)."""
    data = demo_data()
    names = data["names"]
    rng = random.Random(SEED)  # noqa: S311 (reproducible demo data, not secrets)
    families = [f for f, _w in names["family"]]
    weights = [w for _f, w in names["family"]]
    facility_codes = [f["code"] for f in data["facilities"]]
    cccds: set[str] = set()
    bhyts: set[str] = set()
    patients = []
    for n in range(1, count + 1):
        sex = Sex.FEMALE if rng.random() < 0.52 else Sex.MALE
        key = "female" if sex is Sex.FEMALE else "male"
        age = rng.choice([rng.randrange(0, 6), rng.randrange(6, 60), rng.randrange(60, 95)])
        year = today.year - age
        month: int | None = rng.randrange(1, 13)
        day: int | None = rng.randrange(1, 29)
        if (year, month, day) > (today.year, today.month, today.day):
            year -= 1  # nobody is born in the future
        if age >= 70 and rng.random() < 0.5:
            # Many elderly people know only the year (or year and month) of their birth.
            day = None
            month = month if rng.random() < 0.3 else None
        group = card_groups(data["bhyt_groups"], age, rng.random)
        # Children under 14 have a personal ID number from birth registration, but most
        # young children here are registered by their BHYT card only.
        cccd = None if age < 6 and rng.random() < 0.5 else _cccd(rng, data, sex, year, cccds)
        phone = (
            rng.choice(data["mobile_prefixes"]) + f"{rng.randrange(10**7):07d}"
            if rng.random() < 0.85
            else None
        )
        patients.append(
            DemoPatient(
                mrn=f"BN{n:08d}",
                family=rng.choices(families, weights)[0],
                middle=rng.choice(names[f"middle_{key}"]),
                given=rng.choice(names[f"given_{key}"]),
                sex=sex,
                birth_year=year,
                birth_month=month,
                birth_day=day,
                cccd=cccd,
                bhyt=_bhyt(rng, group, bhyts),
                phone=phone,
                facility_code=rng.choice(facility_codes),
            )
        )
    return patients


def _load_facilities(session: Session, data: dict) -> dict[str, Facility]:
    by_code = {f.code: f for f in session.scalars(select(Facility))}
    for spec in data["facilities"]:
        facility = by_code.get(spec["code"])
        if facility is None:
            facility = Facility(
                code=spec["code"],
                name=spec["name"],
                care_level=CareLevel(spec["care_level"]),
                legacy_tier=LegacyTier(spec["legacy_tier"]),
                parent=by_code.get(spec["parent"]) if spec["parent"] else None,
                province_code=spec["province_code"],
                commune_code=spec["commune_code"],
            )
            session.add(facility)
            session.flush()
            by_code[facility.code] = facility
        existing = {d.code: d for d in facility.departments}
        for dept_spec in spec["departments"]:
            dept = existing.get(dept_spec["code"])
            if dept is None:
                dept = Department(facility=facility, code=dept_spec["code"], name=dept_spec["name"])
                session.add(dept)
            rooms = {r.code for r in dept.rooms}
            for code, name in dept_spec["rooms"]:
                if code not in rooms:
                    dept.rooms.append(Room(code=code, name=name))
    session.flush()
    return by_code


def _load_users(session: Session, data: dict) -> None:
    for spec in data["users"]:
        if find_user(session, spec["username"]) is None:
            create_user(
                session,
                username=spec["username"],
                password=DEMO_PASSWORD,
                full_name=spec["full_name"],
                facility_code=spec["facility"],
                roles=spec["roles"],
                # The demo accounts' password is published ("demo"): demo data only.
                check_password=False,
            )


def _load_patients(session: Session, facilities: dict[str, Facility], today: dt.date) -> int:
    existing = set(session.scalars(select(Patient.mrn).where(Patient.mrn.like("BN%"))))
    created = 0
    for demo in generate_patients(today):
        if demo.mrn in existing:
            continue
        identifiers = [
            PatientIdentifier(type=IdentifierType.MRN, value=demo.mrn),
            PatientIdentifier(type=IdentifierType.BHYT, value=demo.bhyt[-10:]),
        ]
        if demo.cccd:
            identifiers.insert(0, PatientIdentifier(type=IdentifierType.CCCD, value=demo.cccd))
        session.add(
            Patient(
                mrn=demo.mrn,
                full_name=demo.full_name,
                family_name=demo.family,
                middle_name=demo.middle,
                given_name=demo.given,
                search_name=fold_vi(demo.full_name),
                sex=demo.sex,
                birth_year=demo.birth_year,
                birth_month=demo.birth_month,
                birth_day=demo.birth_day,
                phone=demo.phone,
                registered_facility_id=facilities[demo.facility_code].id,
                identifiers=identifiers,
                coverages=[_demo_card(demo, today)],
            )
        )
        created += 1
    session.flush()
    # New registrations continue after the demo's record numbers.
    counters.ensure_at_least(session, MRN_COUNTER, count_demo_mrns(session))
    return created


def count_demo_mrns(session: Session) -> int:
    last = session.scalar(select(func.max(Patient.mrn)).where(Patient.mrn.like("BN%")))
    return int(last[2:]) if last else 0


def _demo_card(demo: DemoPatient, today: dt.date) -> Coverage:
    """This year's card, registered at the patient's home facility; not yet checked."""
    return Coverage(
        card_number=demo.bhyt,
        insurance_number=demo.bhyt[-10:],
        group_code=demo.bhyt[:2],
        benefit_level=int(demo.bhyt[2]),
        issuing_province=demo.bhyt[3:5],
        valid_from=dt.date(today.year, 1, 1),
        valid_to=dt.date(today.year, 12, 31),
        registered_facility_code=demo.facility_code,
        status=CardStatus.UNVERIFIED,
    )


def _load_visits(session: Session, facilities: dict[str, Facility]) -> None:
    """A few patients waiting today at the hospital and one station, so each facility's
    users see their own queue and not the other's. Opened through the same service as
    at the counter, so they get real visit codes and queue numbers."""
    patients = list(session.scalars(select(Patient).order_by(Patient.mrn).limit(20)))
    plan = {"91001": patients[:12], "91011": patients[12:17]}
    for code, chosen in plan.items():
        facility = facilities[code]
        has_visits = session.scalar(
            select(func.count()).select_from(Visit).where(Visit.facility_id == facility.id)
        )
        if has_visits:
            continue
        acting = Principal(
            user_id=None, username="demo", roles=frozenset({Role.ADMIN}), facility_id=facility.id
        )
        room = facility.departments[0].rooms[0]
        for patient in chosen:
            payment = Payment.BHYT if patient.coverage is not None else Payment.FEE
            open_visit(
                session,
                acting,
                VisitRequest(patient_id=patient.id, room_id=room.id, payment=payment),
            )


def load_demo(session: Session, today: dt.date | None = None) -> dict[str, int]:
    data = demo_data()
    facilities = _load_facilities(session, data)
    _load_users(session, data)
    today = today or local_today()
    created = _load_patients(session, facilities, today)
    _load_visits(session, facilities)
    # Valid from New Year's day, so visits back-dated within the year find them too.
    catalogs = load_demo_catalogs(session, facilities.values(), dt.date(today.year, 1, 1))
    # Two lots of every demo drug (one near expiry), so a demo prescription can be dispensed.
    lots = sum(receive_opening_stock(session, f, today) for f in facilities.values())
    return {
        "facilities": len(facilities),
        "users": session.scalar(select(func.count()).select_from(User)) or 0,
        "patients_created": created,
        "drugs_created": catalogs["drugs"],
        "services_created": catalogs["services"],
        "stock_lots_created": lots,
    }


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Facility))
