"""Catalog rows for tests, made with the ORM (the search keys as the importer builds them)."""

from __future__ import annotations

import datetime as dt

from his.models import Drug, MedicalService, RxClass, ServiceKind
from his.services.catalogs import ingredient_key, ingredient_keys, search_text

LONG_AGO = dt.date(2020, 1, 1)


def make_drug(session, facility, code: str, ingredient: str, **extra) -> Drug:
    values = {
        "brand": None,
        "strength": "500 mg",
        "dosage_form": "Viên nén",
        "route": "Uống",
        "unit": "viên",
        "price": 1000,
        "rx_class": RxClass.OTHER,
        "valid_from": LONG_AGO,
        "valid_to": None,
        "active": True,
    }
    values.update(extra)
    drug = Drug(
        facility_id=facility.id,
        code=code,
        active_ingredient=ingredient,
        ingredient_key=ingredient_key(ingredient),
        search_key=search_text(
            code,
            ingredient,
            " ".join(sorted(ingredient_keys(ingredient))),
            values["brand"],
            values["strength"],
        ),
        **values,
    )
    session.add(drug)
    session.flush()
    return drug


def make_service(session, facility, code: str, name: str, **extra) -> MedicalService:
    values = {
        "kind": ServiceKind.LAB,
        "unit": "lần",
        "bhyt_price": 20000,
        "service_price": 30000,
        "valid_from": LONG_AGO,
        "valid_to": None,
        "active": True,
    }
    values.update(extra)
    service = MedicalService(
        facility_id=facility.id, code=code, name=name, search_key=search_text(code, name), **values
    )
    session.add(service)
    session.flush()
    return service
