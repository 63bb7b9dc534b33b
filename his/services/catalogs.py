"""Looking things up in the catalogs: by code on a date, and by accent-free text.

A catalog row is valid over a period; every look-up names the date it is for (the visit's
or the episode's), so an old record is read with the catalog of its own day.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from his.models import Drug, Icd10Code, Icd10Version, MedicalService


def _valid_on(model, on: dt.date):
    return (model.valid_from <= on) & or_(model.valid_to.is_(None), model.valid_to >= on)


def icd10_version_on(session: Session, on: dt.date) -> Icd10Version | None:
    """The ICD-10 list in force on a date: of those valid then, the most recently started."""
    return session.scalars(
        select(Icd10Version)
        .where(_valid_on(Icd10Version, on))
        .order_by(Icd10Version.valid_from.desc(), Icd10Version.id.desc())
        .limit(1)
    ).first()


def icd10_code(session: Session, code: str, on: dt.date) -> Icd10Code | None:
    """The code as the list in force on ``on`` has it; ``code`` with or without the dot."""
    version = icd10_version_on(session, on)
    if version is None:
        return None
    return session.scalars(
        select(Icd10Code).where(
            Icd10Code.version_id == version.id, Icd10Code.code == normalise_icd10(code)
        )
    ).first()


def normalise_icd10(code: str) -> str:
    """``j189``, ``J18.9``, ``J18.9†`` → ``J18.9``."""
    raw = "".join(ch for ch in code.strip().upper() if ch.isalnum())
    return raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"


def drug_by_code(session: Session, facility_id: int, code: str, on: dt.date) -> Drug | None:
    return session.scalars(
        select(Drug).where(
            Drug.facility_id == facility_id,
            Drug.code == code,
            Drug.active.is_(True),
            _valid_on(Drug, on),
        )
    ).first()


def service_by_code(
    session: Session, facility_id: int, code: str, on: dt.date
) -> MedicalService | None:
    return session.scalars(
        select(MedicalService).where(
            MedicalService.facility_id == facility_id,
            MedicalService.code == code,
            MedicalService.active.is_(True),
            _valid_on(MedicalService, on),
        )
    ).first()
