"""Addresses in the 2025 administrative units, and turning a pre-2025 address into one.

Only the list in force is used (rows with no end date): a code alone is not a place, since
new communes reuse a predecessor's code. A pre-2025 commune goes through the official
conversion table; when it was split between several new communes, nothing is guessed: the
error lists the candidates and the receptionist chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from his.errors import ValidationFailed
from his.models import AdminUnit, LegacyCommuneMap
from his.text import fold_vi

PROVINCE = "province"
COMMUNE = "commune"


@dataclass(frozen=True)
class ResolvedAddress:
    province_code: str | None
    commune_code: str | None
    legacy_province_code: str | None
    legacy_district_code: str | None
    legacy_commune_code: str | None


@dataclass(frozen=True)
class _Unit:
    code: str
    name: str
    province_code: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})"


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: object) -> None:
        self.by_field.setdefault(field, []).append(str(message))

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationFailed(str(_l("The address is not valid.")), errors=self.by_field)


def _in_force():
    return AdminUnit.valid_to.is_(None)


def _units(session: Session, level: str, codes: list[str]) -> dict[str, _Unit]:
    rows = session.execute(
        select(AdminUnit.code, AdminUnit.name, AdminUnit.province_code).where(
            AdminUnit.level == level, AdminUnit.code.in_(codes), _in_force()
        )
    )
    return {code: _Unit(code, name, province) for code, name, province in rows}


def _unit(session: Session, level: str, code: str) -> _Unit | None:
    return _units(session, level, [code]).get(code)


def _by_name(units) -> list:
    return sorted(units, key=lambda u: (fold_vi(u.name), u.name, u.code))


def _labels(units: list[_Unit]) -> str:
    return ", ".join(u.label for u in units)


def unit_name(session: Session, level: str, code: str) -> str | None:
    """The name of a province or commune (``level`` "province" or "commune") in force."""
    unit = _unit(session, level, code)
    return unit.name if unit else None


def communes_of(session: Session, province_code: str) -> list[tuple[str, str]]:
    """(code, name) of the communes of a province, in Vietnamese alphabetical order."""
    rows = session.execute(
        select(AdminUnit.code, AdminUnit.name, AdminUnit.province_code).where(
            AdminUnit.level == COMMUNE, AdminUnit.province_code == province_code, _in_force()
        )
    )
    return [(u.code, u.name) for u in _by_name(_Unit(*row) for row in rows)]


def _new_provinces(session: Session, column, old_code: str) -> list[_Unit]:
    codes = session.scalars(
        select(LegacyCommuneMap.new_province_code).where(column == old_code).distinct()
    ).all()
    return _by_name(_units(session, PROVINCE, list(codes)).values())


@dataclass
class _Legacy:
    province: str | None = None  # each one set only when known
    district: str | None = None
    commune_label: str | None = None
    successors: tuple[_Unit, ...] = ()


def _check_legacy(
    session: Session,
    errors: _Errors,
    province_code: str | None,
    district_code: str | None,
    commune_code: str | None,
) -> _Legacy:
    """Checks the pre-2025 codes against each other; returns the ones that are known."""
    legacy = _Legacy()
    m = LegacyCommuneMap
    if province_code:
        if session.scalar(select(exists().where(m.old_province_code == province_code))):
            legacy.province = province_code
        else:
            errors.add(
                "legacy_province_code",
                _l("No pre-2025 province has the code %(code)s.", code=province_code),
            )
    if district_code:
        in_province = session.scalar(
            select(m.old_province_code).where(m.old_district_code == district_code).limit(1)
        )
        if in_province is None:
            errors.add(
                "legacy_district_code",
                _l("No pre-2025 district has the code %(code)s.", code=district_code),
            )
        elif legacy.province and in_province != legacy.province:
            errors.add(
                "legacy_district_code",
                _l(
                    "The pre-2025 district %(code)s was not in province %(province)s.",
                    code=district_code,
                    province=legacy.province,
                ),
            )
        else:
            legacy.district = district_code
    if not commune_code:
        return legacy
    rows = session.scalars(select(m).where(m.old_commune_code == commune_code)).all()
    successors = _units(session, COMMUNE, [r.new_commune_code for r in rows])
    if not successors:
        errors.add(
            "legacy_commune_code",
            _l("No pre-2025 commune has the code %(code)s.", code=commune_code),
        )
        return legacy
    old = rows[0]
    if legacy.district and old.old_district_code != legacy.district:
        errors.add(
            "legacy_commune_code",
            _l(
                "The pre-2025 commune %(code)s was not in district %(district)s.",
                code=commune_code,
                district=legacy.district,
            ),
        )
    elif legacy.province and old.old_province_code != legacy.province:
        errors.add(
            "legacy_commune_code",
            _l(
                "The pre-2025 commune %(code)s was not in province %(province)s.",
                code=commune_code,
                province=legacy.province,
            ),
        )
    else:
        name = old.old_commune_name
        legacy.commune_label = f"{name} ({commune_code})" if name else commune_code
        legacy.successors = tuple(_by_name(successors.values()))
    return legacy


def _province_of_old_area(
    session: Session,
    errors: _Errors,
    legacy: _Legacy,
    province: _Unit | None,
    commune: _Unit | None,
) -> _Unit | None:
    """Without a pre-2025 commune, the old district (or province) still gives the new
    province when all of it went to one, and must agree with the one chosen."""
    m = LegacyCommuneMap
    if legacy.district:
        provinces = _new_provinces(session, m.old_district_code, legacy.district)
    else:
        provinces = _new_provinces(session, m.old_province_code, legacy.province)
    chosen = province or commune
    if chosen is None:
        return provinces[0] if len(provinces) == 1 else None
    if chosen.province_code not in {p.code for p in provinces}:
        names = ", ".join(p.name for p in provinces)
        if legacy.district:
            message = _l(
                "The pre-2025 district %(code)s is now in %(provinces)s.",
                code=legacy.district,
                provinces=names,
            )
        else:
            message = _l(
                "The pre-2025 province %(code)s is now in %(provinces)s.",
                code=legacy.province,
                provinces=names,
            )
        errors.add("province_code" if province else "commune_code", message)
    return province


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def resolve_address(
    session: Session,
    *,
    province_code: str | None = None,
    commune_code: str | None = None,
    legacy_province_code: str | None = None,
    legacy_district_code: str | None = None,
    legacy_commune_code: str | None = None,
) -> ResolvedAddress:
    """The 2025 province and commune of an address given in 2025 codes, pre-2025 codes or
    both; the pre-2025 codes are kept as given. Raises ``ValidationFailed`` with each
    message under the field it concerns."""
    province_code = _blank_to_none(province_code)
    commune_code = _blank_to_none(commune_code)
    legacy_province_code = _blank_to_none(legacy_province_code)
    legacy_district_code = _blank_to_none(legacy_district_code)
    legacy_commune_code = _blank_to_none(legacy_commune_code)
    errors = _Errors()

    province = commune = None
    if province_code:
        province = _unit(session, PROVINCE, province_code)
        if province is None:
            errors.add(
                "province_code", _l("No province has the code %(code)s.", code=province_code)
            )
    if commune_code:
        commune = _unit(session, COMMUNE, commune_code)
        if commune is None:
            errors.add("commune_code", _l("No commune has the code %(code)s.", code=commune_code))
        elif province is not None and commune.province_code != province.code:
            errors.add(
                "commune_code",
                _l(
                    "%(commune)s is not in %(province)s.",
                    commune=commune.label,
                    province=province.name,
                ),
            )
    legacy = _check_legacy(
        session, errors, legacy_province_code, legacy_district_code, legacy_commune_code
    )
    errors.raise_if_any()

    if legacy.successors:
        now_part_of = _l(
            "%(old)s is now part of %(communes)s.",
            old=legacy.commune_label,
            communes=_labels(list(legacy.successors)),
        )
        if commune is not None:
            if commune.code not in {s.code for s in legacy.successors}:
                errors.add("commune_code", now_part_of)
        else:
            candidates = [
                s for s in legacy.successors if province is None or s.province_code == province.code
            ]
            if not candidates:
                errors.add("province_code", now_part_of)
            elif len(candidates) > 1:
                errors.add(
                    "commune_code",
                    _l(
                        "%(old)s was split between several communes; choose one: %(communes)s.",
                        old=legacy.commune_label,
                        communes=_labels(candidates),
                    ),
                )
            else:
                commune = candidates[0]
    elif legacy.district or legacy.province:
        province = _province_of_old_area(session, errors, legacy, province, commune)
    errors.raise_if_any()

    if commune is not None and province is None:
        province_code = commune.province_code
    elif province is not None:
        province_code = province.code
    return ResolvedAddress(
        province_code=province_code,
        commune_code=commune.code if commune else None,
        legacy_province_code=legacy_province_code,
        legacy_district_code=legacy_district_code,
        legacy_commune_code=legacy_commune_code,
    )
