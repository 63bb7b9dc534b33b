"""The demo province: realistic, valid-format, and idempotent."""

import datetime as dt
import re

from sqlalchemy import func, select

from his.models import (
    Department,
    Facility,
    IdentifierType,
    Patient,
    PatientIdentifier,
    Role,
    Room,
    Sex,
    User,
    Visit,
)
from his.services.demo import demo_data, generate_patients, load_demo

TODAY = dt.date(2026, 11, 27)
TABLES = (Facility, Department, Room, User, Patient, PatientIdentifier, Visit)


def _counts(session):
    return {t.__name__: session.scalar(select(func.count()).select_from(t)) for t in TABLES}


def test_loading_twice_changes_nothing(db_session):
    first = load_demo(db_session, TODAY)
    after_first = _counts(db_session)
    second = load_demo(db_session, TODAY)
    assert _counts(db_session) == after_first
    assert first["patients_created"] == 200
    assert second["patients_created"] == 0
    assert after_first["Facility"] == 5
    assert after_first["Patient"] == 200


def test_facilities_and_hierarchy(db_session):
    load_demo(db_session, TODAY)
    by_code = {f.code: f for f in db_session.scalars(select(Facility))}
    hospital = next(f for f in by_code.values() if f.legacy_tier == "provincial")
    assert hospital.care_level == "basic"
    assert "An Giang" in hospital.name
    stations = [f for f in by_code.values() if f.care_level == "primary"]
    assert len(stations) == 3
    assert {s.legacy_tier for s in stations} == {"commune"}
    assert all(s.parent is not None and s.parent.legacy_tier == "district" for s in stations)
    assert all(len(f.code) == 5 and f.province_code == "91" for f in by_code.values())
    assert all(f.departments and all(d.rooms for d in f.departments) for f in by_code.values())


def test_demo_users_and_roles(db_session):
    load_demo(db_session, TODAY)
    users = {u.username: u for u in db_session.scalars(select(User))}
    expected = {
        "admin": Role.ADMIN,
        "reception": Role.RECEPTIONIST,
        "doctor": Role.DOCTOR,
        "pharmacist": Role.PHARMACIST,
        "cashier": Role.CASHIER,
        "reception.tyt": Role.RECEPTIONIST,
        "doctor.tyt": Role.DOCTOR,
    }
    for username, role in expected.items():
        assert users[username].roles == [role]
    assert users["reception"].facility.legacy_tier == "provincial"
    assert users["reception.tyt"].facility.care_level == "primary"


def test_demo_users_log_in_with_demo(client, db_session):
    load_demo(db_session, TODAY)
    response = client.post("/api/v1/auth/token", json={"username": "reception", "password": "demo"})
    assert response.status_code == 201


def test_names_are_family_middle_given():
    names = demo_data()["names"]
    families = {f for f, _w in names["family"]}
    for p in generate_patients(TODAY):
        parts = p.full_name.split(" ")
        assert parts[0] in families
        assert p.full_name == f"{p.family} {p.middle} {p.given}"
        assert not re.search(r"\b(Ông|Bà|Anh|Chị|Cô)\b\.", p.full_name)
        middles = names["middle_female" if p.sex is Sex.FEMALE else "middle_male"]
        givens = names["given_female" if p.sex is Sex.FEMALE else "given_male"]
        assert p.middle in middles and p.given in givens


def test_cccd_agrees_with_birth_year_and_sex():
    with_cccd = [p for p in generate_patients(TODAY) if p.cccd]
    assert len(with_cccd) > 150
    for p in with_cccd:
        assert re.fullmatch(r"\d{12}", p.cccd)
        century_sex = int(p.cccd[3])
        assert century_sex // 2 == p.birth_year // 100 - 19
        assert century_sex % 2 == (1 if p.sex is Sex.FEMALE else 0)
        assert p.cccd[4:6] == f"{p.birth_year % 100:02d}"
    assert len({p.cccd for p in with_cccd}) == len(with_cccd)


def test_bhyt_numbers_have_the_15_character_layout():
    groups = demo_data()["bhyt_groups"]
    levels = {code: level for g in groups.values() if isinstance(g, list) for code, level in g}
    for p in generate_patients(TODAY):
        assert re.fullmatch(r"[A-Z]{2}[1-5]\d{2}\d{10}", p.bhyt)
        assert int(p.bhyt[2]) == levels[p.bhyt[:2]]
        if TODAY.year - p.birth_year < 6:
            assert p.bhyt.startswith("TE1")


def test_some_elderly_have_partial_birth_dates():
    patients = generate_patients(TODAY)
    year_only = [p for p in patients if p.birth_month is None]
    year_month = [p for p in patients if p.birth_month and p.birth_day is None]
    assert year_only and year_month
    assert all(TODAY.year - p.birth_year >= 70 for p in year_only + year_month)


def test_generation_is_reproducible():
    assert generate_patients(TODAY) == generate_patients(TODAY)


def test_patients_are_stored_with_search_keys_and_identifiers(db_session):
    load_demo(db_session, TODAY)
    patient = db_session.scalars(select(Patient).order_by(Patient.mrn)).first()
    types = {i.type for i in patient.identifiers}
    assert {IdentifierType.MRN, IdentifierType.BHYT} <= types
    assert patient.search_name == patient.search_name.lower()
    assert all(ord(c) < 128 for c in patient.search_name)


def test_each_station_sees_its_own_demo_visits(db_session):
    load_demo(db_session, TODAY)
    per_facility = dict(
        db_session.execute(
            select(Facility.code, func.count(Visit.id)).join(Visit).group_by(Facility.code)
        ).all()
    )
    assert per_facility == {"91001": 12, "91011": 5}


def test_nobody_is_born_in_the_future():
    for p in generate_patients(TODAY):
        born = (p.birth_year, p.birth_month or 1, p.birth_day or 1)
        assert born <= (TODAY.year, TODAY.month, TODAY.day)
