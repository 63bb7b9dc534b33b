"""The prescribing rules of Circular 26/2025/TT-BYT, one small function per rule.

Each rule reads the facts of a prescription (:class:`RxFacts`) and returns its violations:
where (a field path such as ``items.1.days``), what (a translated message) and which rule
(a stable code a client can test for). The builder runs them while the doctor types and
signing runs them again, so the screen shows a violation before the doctor signs.

Every number the rules use (30/90 days, 7/10/30 for N and H, 72 months, 5 days valid) is a
row of ``his/data/prescription_limits.csv``, and the chronic-disease list of Appendix VII is
``his/data/chronic_icd10.csv``: when the Ministry changes them, the data changes, not the code.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from his.models import Drug, PrescriptionType, RxClass, TreatmentCourse
from his.partial_date import PartialDate
from his.services import catalogs
from his.services.encounters import VITAL_RANGES

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# Stable rule codes: clients and tests rely on them, the messages may change.
DRUG_NOT_IN_CATALOG = "drug-not-in-catalog"
DRUG_INACTIVE = "drug-inactive"
DUPLICATE_INGREDIENT = "duplicate-ingredient"
DAYS_OVER_LIMIT = "days-over-limit"
CONTROLLED_MIXED = "controlled-mixed"
CONTROLLED_NOT_ALONE = "controlled-not-alone"
NARCOTIC_DAYS = "narcotic-days"
PSYCHOTROPIC_DAYS = "psychotropic-days"
CHILD_AGE_MONTHS = "child-age-months"
CHILD_WEIGHT = "child-weight"
CHILD_GUARDIAN = "child-guardian"
AGE_MONTHS_MISMATCH = "age-months-mismatch"
WEIGHT_IMPLAUSIBLE = "weight-implausible"
ALLERGY = "allergy"
QUANTITY_REASON = "quantity-reason"


@functools.cache
def limits() -> dict[str, int]:
    """``his/data/prescription_limits.csv``: every number the rules use, with its source."""
    with (DATA_DIR / "prescription_limits.csv").open(encoding="utf-8", newline="") as f:
        return {row["key"]: int(row["value"]) for row in csv.DictReader(f)}


@functools.cache
def chronic_codes() -> tuple[str, ...]:
    """ICD-10 codes or category prefixes (without the dot) of the chronic-disease list."""
    with (DATA_DIR / "chronic_icd10.csv").open(encoding="utf-8", newline="") as f:
        return tuple(row["code"].replace(".", "").upper() for row in csv.DictReader(f))


def is_chronic(icd10: str) -> bool:
    code = icd10.replace(".", "").upper()
    return any(code.startswith(prefix) for prefix in chronic_codes())


@dataclass(frozen=True)
class Violation:
    rule: str
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class ItemFacts:
    drug_code: str
    drug: Drug | None  # the catalog row valid and active on the day, if any
    inactive: bool  # the code is in the catalog on the day but withdrawn
    days: int
    quantity: Decimal
    computed_quantity: Decimal
    quantity_reason: str | None = None

    @property
    def label(self) -> str:
        return self.drug.active_ingredient if self.drug else self.drug_code

    @property
    def rx_class(self) -> RxClass | None:
        return self.drug.rx_class if self.drug else None


@dataclass(frozen=True)
class OtherItem:
    """A drug on another live prescription (draft or signed) of the same encounter."""

    code: str | None  # the other prescription's code; None while it is a draft
    active_ingredient: str


@dataclass(frozen=True)
class RxFacts:
    on: dt.date
    course: TreatmentCourse
    birth: PartialDate
    diagnosis_codes: tuple[str, ...]
    allergies: tuple[str, ...]  # the patient's recorded substances, as typed
    items: tuple[ItemFacts, ...]
    age_months: int | None = None
    weight_kg: Decimal | None = None
    guardian_name: str | None = None
    other_items: tuple[OtherItem, ...] = ()


def item_facts(
    session: Session,
    facility_id: int,
    drug_code: str,
    on: dt.date,
    *,
    days: int,
    quantity: Decimal,
    computed_quantity: Decimal,
    quantity_reason: str | None = None,
) -> ItemFacts:
    drug = catalogs.drug_by_code(session, facility_id, drug_code, on)
    inactive = False
    if drug is None:
        # Withdrawn rather than unknown: the doctor gets a message that says so.
        inactive = (
            session.scalar(
                select(Drug.id).where(
                    Drug.facility_id == facility_id,
                    Drug.code == drug_code,
                    Drug.active.is_(False),
                    Drug.valid_from <= on,
                    (Drug.valid_to.is_(None)) | (Drug.valid_to >= on),
                )
            )
            is not None
        )
    return ItemFacts(
        drug_code=drug_code,
        drug=drug,
        inactive=inactive,
        days=days,
        quantity=quantity,
        computed_quantity=computed_quantity,
        quantity_reason=quantity_reason,
    )


def rx_type_of(classes: list[RxClass | None]) -> PrescriptionType:
    """The form a prescription is written on: N if it holds a narcotic, H a psychotropic
    or precursor, else the ordinary form C."""
    if RxClass.NARCOTIC in classes:
        return PrescriptionType.NARCOTIC
    if RxClass.PSYCHOTROPIC in classes:
        return PrescriptionType.PSYCHOTROPIC
    return PrescriptionType.OTHER


def _at(index: int, name: str) -> str:
    return f"items.{index}.{name}"


# --- the rules -------------------------------------------------------------------------------


def drug_in_catalog(facts: RxFacts) -> list[Violation]:
    found = []
    for i, item in enumerate(facts.items):
        if item.drug is not None:
            continue
        if item.inactive:
            message = _l(
                "The drug %(code)s is withdrawn from the facility catalog.", code=item.drug_code
            )
            found.append(Violation(DRUG_INACTIVE, _at(i, "drug_code"), str(message)))
        else:
            message = _l(
                "The drug %(code)s is not in the facility catalog on %(date)s.",
                code=item.drug_code,
                date=facts.on.strftime("%d/%m/%Y"),
            )
            found.append(Violation(DRUG_NOT_IN_CATALOG, _at(i, "drug_code"), str(message)))
    return found


def duplicate_ingredient(facts: RxFacts) -> list[Violation]:
    found = []
    seen: list[tuple[int, frozenset[str]]] = []
    for i, item in enumerate(facts.items):
        if item.drug is None:
            continue
        keys = catalogs.ingredient_keys(item.drug.active_ingredient)
        earlier = next((j for j, other in seen if other & keys), None)
        if earlier is not None:
            message = _l(
                "%(ingredient)s is already prescribed on line %(line)s.",
                ingredient=item.drug.active_ingredient,
                line=earlier + 1,
            )
            found.append(Violation(DUPLICATE_INGREDIENT, _at(i, "drug_code"), str(message)))
        else:
            # Split over two prescriptions of one visit, the same ingredient is still doubled.
            other = next(
                (
                    o
                    for o in facts.other_items
                    if catalogs.ingredient_keys(o.active_ingredient) & keys
                ),
                None,
            )
            if other is not None:
                message = _elsewhere(item, other)
                found.append(Violation(DUPLICATE_INGREDIENT, _at(i, "drug_code"), str(message)))
        seen.append((i, keys))
    return found


def _elsewhere(item: ItemFacts, other: OtherItem):
    assert item.drug is not None
    if other.code:
        return _l(
            "%(ingredient)s is already prescribed on prescription %(code)s of this encounter.",
            ingredient=item.drug.active_ingredient,
            code=other.code,
        )
    return _l(
        "%(ingredient)s is already on a draft prescription of this encounter.",
        ingredient=item.drug.active_ingredient,
    )


def days_limit(facts: RxFacts) -> list[Violation]:
    chronic = any(is_chronic(code) for code in facts.diagnosis_codes)
    limit = limits()["max_days_chronic" if chronic else "max_days"]
    found = []
    for i, item in enumerate(facts.items):
        if item.days <= limit:
            continue
        if chronic:
            message = _l(
                "At most %(limit)s days per drug, even for a chronic disease.", limit=limit
            )
        else:
            message = _l(
                "At most %(limit)s days per drug; %(chronic)s only when a diagnosis is on the "
                "chronic-disease list.",
                limit=limit,
                chronic=limits()["max_days_chronic"],
            )
        found.append(Violation(DAYS_OVER_LIMIT, _at(i, "days"), str(message)))
    return found


def controlled_alone(facts: RxFacts) -> list[Violation]:
    """Narcotic (N) and psychotropic/precursor (H) drugs have forms of their own: one class
    per prescription, and no ordinary drug with them."""
    classes = [item.rx_class for item in facts.items]
    found = []
    if RxClass.NARCOTIC in classes and RxClass.PSYCHOTROPIC in classes:
        for i, item in enumerate(facts.items):
            if item.rx_class is RxClass.PSYCHOTROPIC:
                message = _l(
                    "%(drug)s is a psychotropic drug: it cannot be on a narcotic prescription; "
                    "prescribe it on a separate H prescription.",
                    drug=item.label,
                )
                found.append(Violation(CONTROLLED_MIXED, _at(i, "drug_code"), str(message)))
        return found
    controlled = next((c for c in classes if c in (RxClass.NARCOTIC, RxClass.PSYCHOTROPIC)), None)
    if controlled is None:
        return found
    for i, item in enumerate(facts.items):
        if item.drug is None or item.rx_class is controlled:
            continue
        if controlled is RxClass.NARCOTIC:
            message = _l(
                "A narcotic prescription (N) holds narcotic drugs only: prescribe %(drug)s on "
                "a separate prescription.",
                drug=item.label,
            )
        else:
            message = _l(
                "A psychotropic prescription (H) holds psychotropic and precursor drugs only: "
                "prescribe %(drug)s on a separate prescription.",
                drug=item.label,
            )
        found.append(Violation(CONTROLLED_NOT_ALONE, _at(i, "drug_code"), str(message)))
    return found


def controlled_days(facts: RxFacts) -> list[Violation]:
    course = "chronic" if facts.course is TreatmentCourse.CHRONIC else "acute"
    found = []
    for i, item in enumerate(facts.items):
        if item.rx_class is RxClass.NARCOTIC:
            limit, rule = limits()[f"narcotic_{course}_days"], NARCOTIC_DAYS
            if course == "acute":
                message = _l("Narcotic drugs for acute pain: at most %(limit)s days.", limit=limit)
            else:
                message = _l(
                    "Narcotic drugs for chronic or cancer pain: at most %(limit)s days.",
                    limit=limit,
                )
        elif item.rx_class is RxClass.PSYCHOTROPIC:
            limit, rule = limits()[f"psychotropic_{course}_days"], PSYCHOTROPIC_DAYS
            if course == "acute":
                message = _l(
                    "Psychotropic drugs for an acute illness: at most %(limit)s days.",
                    limit=limit,
                )
            else:
                message = _l(
                    "Psychotropic drugs for a chronic illness: at most %(limit)s days.",
                    limit=limit,
                )
        else:
            continue
        if item.days > limit:
            found.append(Violation(rule, _at(i, "days"), str(message)))
    return found


def small_child(facts: RxFacts) -> list[Violation]:
    """Under 72 months: age in months, weight and the accompanying adult. The unknown part of
    a birth date counts as late, so a child whose day is unknown is never let through."""
    if facts.birth.months_on(facts.on) >= limits()["child_months"]:
        return []
    found = []
    if facts.age_months is None:
        found.append(
            Violation(
                CHILD_AGE_MONTHS,
                "age_months",
                str(_l("A child under 72 months: enter the age in months.")),
            )
        )
    if facts.weight_kg is None or facts.weight_kg <= 0:
        found.append(
            Violation(
                CHILD_WEIGHT, "weight_kg", str(_l("A child under 72 months: enter the weight."))
            )
        )
    if not (facts.guardian_name or "").strip():
        found.append(
            Violation(
                CHILD_GUARDIAN,
                "guardian_name",
                str(_l("A child under 72 months: enter the name of the accompanying adult.")),
            )
        )
    return found


def age_months_agree(facts: RxFacts) -> list[Violation]:
    """The age in months is printed and sent to the national system: when the birth date is
    known to the month it must agree with it. One month either way is allowed, the day of
    birth may be unknown."""
    if facts.age_months is None or facts.birth.month is None:
        return []
    # The unknown day of birth: months_on takes the last day of the month, the first day may
    # give one month more.
    fewest = facts.birth.months_on(facts.on)
    first_day = facts.birth.earliest()
    most = PartialDate(first_day.year, first_day.month, first_day.day).months_on(facts.on)
    if fewest - 1 <= facts.age_months <= most + 1:
        return []
    expected = str(fewest) if fewest == most else f"{fewest}–{most}"
    message = _l(
        "The age of %(given)s months does not agree with the date of birth %(birth)s "
        "(%(expected)s months).",
        given=facts.age_months,
        birth=facts.birth.display(),
        expected=expected,
    )
    return [Violation(AGE_MONTHS_MISMATCH, "age_months", str(message))]


def weight_plausible(facts: RxFacts) -> list[Violation]:
    """The plausible range of the vital signs: outside it the weight was surely mistyped."""
    plausible = VITAL_RANGES["weight"]
    if facts.weight_kg is None or plausible.low <= facts.weight_kg <= plausible.high:
        return []
    message = _l(
        "A weight of %(weight)s kg is not plausible: between %(low)s and %(high)s kg.",
        weight=_plain(Decimal(facts.weight_kg)),
        low=_plain(plausible.low),
        high=_plain(plausible.high),
    )
    return [Violation(WEIGHT_IMPLAUSIBLE, "weight_kg", str(message))]


def allergy(facts: RxFacts) -> list[Violation]:
    allergies = [(text, catalogs.ingredient_keys(text)) for text in facts.allergies]
    found = []
    for i, item in enumerate(facts.items):
        if item.drug is None:
            continue
        keys = catalogs.ingredient_keys(item.drug.active_ingredient)
        groups = catalogs.drug_groups(keys)
        for substance, allergy_keys in allergies:
            if keys & allergy_keys:
                message = _l(
                    "The patient is allergic to %(substance)s, and %(drug)s contains it.",
                    substance=substance,
                    drug=item.drug.active_ingredient,
                )
            elif groups & catalogs.allergy_groups(allergy_keys):
                # Cross-allergy within a group: amoxicillin for a penicillin allergy.
                message = _l(
                    "The patient is allergic to %(substance)s, and %(drug)s belongs to the "
                    "same drug group.",
                    substance=substance,
                    drug=item.drug.active_ingredient,
                )
            else:
                continue
            found.append(Violation(ALLERGY, _at(i, "drug_code"), str(message)))
            break
    return found


def quantity_reason(facts: RxFacts) -> list[Violation]:
    found = []
    for i, item in enumerate(facts.items):
        if item.quantity != item.computed_quantity and not (item.quantity_reason or "").strip():
            message = _l(
                "The quantity differs from the computed %(computed)s: give the reason.",
                computed=_plain(item.computed_quantity),
            )
            found.append(Violation(QUANTITY_REASON, _at(i, "quantity_reason"), str(message)))
    return found


def _plain(number: Decimal) -> str:
    """12.000 → 12, 7.500 → 7.5."""
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


Rule = Callable[[RxFacts], list[Violation]]

RULES: tuple[Rule, ...] = (
    drug_in_catalog,
    controlled_alone,
    duplicate_ingredient,
    allergy,
    days_limit,
    controlled_days,
    small_child,
    age_months_agree,
    weight_plausible,
    quantity_reason,
)


def check(facts: RxFacts) -> list[Violation]:
    return [violation for rule in RULES for violation in rule(facts)]


def as_errors(violations: list[Violation]) -> dict[str, list[str]]:
    """Violations in the ``errors`` shape of a problem document."""
    errors: dict[str, list[str]] = {}
    for v in violations:
        errors.setdefault(v.field, []).append(v.message)
    return errors
