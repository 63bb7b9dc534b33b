"""factory_boy factories for test data; the session is the test's rolled-back one."""

from __future__ import annotations

import datetime as dt

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy.orm import Session

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
    Role,
    Room,
    Sex,
    User,
    UserRole,
    Visit,
)
from his.services.auth import hash_password
from his.text import fold_vi

PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # hashing once keeps argon2's cost out of every test

_session: Session | None = None


def bind(session: Session) -> None:
    global _session
    _session = session


def _current_session() -> Session:
    assert _session is not None, "use the db_session fixture before the factories"
    return _session


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = _current_session
        sqlalchemy_session_persistence = "flush"


class FacilityFactory(Base):
    class Meta:
        model = Facility

    # 8xxxx: never one of the fixed 91xxx codes tests give their own facilities, however
    # many facilities the whole run has made.
    code = factory.Sequence(lambda n: f"8{n % 10000:04d}")
    name = factory.Sequence(lambda n: f"Trạm Y tế xã Thử nghiệm {n}")
    care_level = CareLevel.PRIMARY
    legacy_tier = LegacyTier.COMMUNE
    province_code = "91"
    commune_code = "30313"


class UserFactory(Base):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    full_name = "Nguyễn Văn Thử"
    password_hash = _HASH
    facility = factory.SubFactory(FacilityFactory)

    class Params:
        roles = (Role.RECEPTIONIST,)

    role_rows = factory.LazyAttribute(lambda u: [UserRole(role=r) for r in u.roles])


class PatientFactory(Base):
    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"T{n:08d}")
    family_name = "Trần"
    middle_name = "Thị"
    given_name = factory.Sequence(lambda n: f"Mai{n}")
    full_name = factory.LazyAttribute(lambda p: f"{p.family_name} {p.middle_name} {p.given_name}")
    search_name = factory.LazyAttribute(lambda p: fold_vi(p.full_name))
    sex = Sex.FEMALE
    birth_year = 1980
    birth_month = 5
    birth_day = 17
    registered_facility_id = factory.LazyFunction(lambda: FacilityFactory().id)
    identifiers = factory.LazyAttribute(
        lambda p: [PatientIdentifier(type=IdentifierType.MRN, value=p.mrn)]
    )


class VisitFactory(Base):
    class Meta:
        model = Visit

    visit_code = factory.Sequence(lambda n: f"TEST{n:010d}")
    facility_id = factory.LazyFunction(lambda: FacilityFactory().id)
    patient_id = factory.LazyFunction(lambda: PatientFactory().id)


class DepartmentFactory(Base):
    class Meta:
        model = Department

    facility = factory.SubFactory(FacilityFactory)
    code = factory.Sequence(lambda n: f"K{n:02d}")
    name = "Khoa Khám bệnh"


class RoomFactory(Base):
    class Meta:
        model = Room

    department = factory.SubFactory(DepartmentFactory)
    code = factory.Sequence(lambda n: f"P{n:03d}")
    name = factory.Sequence(lambda n: f"Phòng khám {n}")


class CoverageFactory(Base):
    class Meta:
        model = Coverage

    patient = factory.SubFactory(PatientFactory)
    card_number = factory.Sequence(lambda n: f"DN4919{n:09d}")
    insurance_number = factory.LazyAttribute(lambda c: c.card_number[-10:])
    group_code = "DN"
    benefit_level = 4
    issuing_province = "91"
    valid_from = dt.date(2026, 1, 1)
    valid_to = dt.date(2026, 12, 31)
    registered_facility_code = "91011"
    status = CardStatus.UNVERIFIED
