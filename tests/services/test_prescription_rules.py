"""Each prescribing rule of Circular 26/2025, broken and kept."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from his.models import Drug, PrescriptionType, RxClass, TreatmentCourse
from his.partial_date import PartialDate
from his.services import prescription_rules as rules
from tests.factories import FacilityFactory
from tests.prescribing_data import (
    add_drugs,
)

ON = dt.date(2026, 11, 28)
ADULT = PartialDate(1980, 5, 17)

pytestmark = pytest.mark.usefixtures("babel_context")


def drug(inn: str, rx_class: RxClass = RxClass.OTHER, code: str | None = None) -> Drug:
    return Drug(
        code=code or inn[:6].upper(),
        active_ingredient=inn,
        strength="1 mg",
        dosage_form="viên nén",
        route="uống",
        unit="viên",
        rx_class=rx_class,
        price=0,
    )


def line(d: Drug | None, days: int = 5, quantity=None, computed=None, reason=None, code=None):
    computed = Decimal(computed if computed is not None else days * 2)
    return rules.ItemFacts(
        drug_code=code or (d.code if d else "X"),
        drug=d,
        inactive=False,
        days=days,
        quantity=Decimal(quantity) if quantity is not None else computed,
        computed_quantity=computed,
        quantity_reason=reason,
    )


def facts(*items, **overrides) -> rules.RxFacts:
    values = {
        "on": ON,
        "course": TreatmentCourse.ACUTE,
        "birth": ADULT,
        "diagnosis_codes": ("J06.9",),
        "allergies": (),
        "items": tuple(items),
    }
    values.update(overrides)
    return rules.RxFacts(**values)


def codes(violations) -> list[tuple[str, str]]:
    return [(v.rule, v.field) for v in violations]


def test_limits_are_data_with_their_source():
    assert rules.limits()["max_days"] == 30
    assert rules.limits()["max_days_chronic"] == 90
    assert rules.limits()["narcotic_acute_days"] == 7
    assert rules.limits()["psychotropic_acute_days"] == 10
    assert rules.limits()["psychotropic_chronic_days"] == 30
    assert rules.limits()["child_months"] == 72
    assert rules.limits()["valid_days"] == 5


def test_a_clean_prescription_breaks_nothing():
    assert rules.check(facts(line(drug("Paracetamol")), line(drug("Amlodipin")))) == []


def test_at_most_30_days():
    ok = facts(line(drug("Paracetamol"), days=30))
    assert rules.days_limit(ok) == []
    broken = facts(line(drug("Paracetamol"), days=30), line(drug("Amlodipin"), days=31))
    assert codes(rules.days_limit(broken)) == [(rules.DAYS_OVER_LIMIT, "items.1.days")]
    assert "30" in rules.days_limit(broken)[0].message


@pytest.mark.parametrize("code", ["I10", "E11.9", "J45.0", "B20", "N18.3", "M06.9"])
def test_90_days_for_a_chronic_disease(code):
    chronic = facts(line(drug("Amlodipin"), days=90), diagnosis_codes=("J06.9", code))
    assert rules.days_limit(chronic) == []
    over = facts(line(drug("Amlodipin"), days=91), diagnosis_codes=(code,))
    assert codes(rules.days_limit(over)) == [(rules.DAYS_OVER_LIMIT, "items.0.days")]


def test_a_disease_off_the_list_keeps_30_days():
    assert not rules.is_chronic("J06.9")
    assert not rules.is_chronic("I21.0")  # acute myocardial infarction
    broken = facts(line(drug("Amlodipin"), days=60), diagnosis_codes=("K29.7",))
    assert codes(rules.days_limit(broken)) == [(rules.DAYS_OVER_LIMIT, "items.0.days")]


def test_narcotic_7_days_acute_30_chronic():
    morphine = drug("Morphin", RxClass.NARCOTIC)
    assert rules.controlled_days(facts(line(morphine, days=7))) == []
    assert codes(rules.controlled_days(facts(line(morphine, days=8)))) == [
        (rules.NARCOTIC_DAYS, "items.0.days")
    ]
    chronic = {"course": TreatmentCourse.CHRONIC}
    assert rules.controlled_days(facts(line(morphine, days=30), **chronic)) == []
    assert codes(rules.controlled_days(facts(line(morphine, days=31), **chronic))) == [
        (rules.NARCOTIC_DAYS, "items.0.days")
    ]


def test_psychotropic_10_days_acute_30_chronic():
    diazepam = drug("Diazepam", RxClass.PSYCHOTROPIC)
    assert rules.controlled_days(facts(line(diazepam, days=10))) == []
    assert codes(rules.controlled_days(facts(line(diazepam, days=11)))) == [
        (rules.PSYCHOTROPIC_DAYS, "items.0.days")
    ]
    chronic = {"course": TreatmentCourse.CHRONIC}
    assert rules.controlled_days(facts(line(diazepam, days=30), **chronic)) == []
    assert rules.controlled_days(facts(line(diazepam, days=31), **chronic))


def test_narcotic_and_psychotropic_never_together():
    mixed = facts(
        line(drug("Morphin", RxClass.NARCOTIC)), line(drug("Diazepam", RxClass.PSYCHOTROPIC))
    )
    assert codes(rules.controlled_alone(mixed)) == [(rules.CONTROLLED_MIXED, "items.1.drug_code")]


@pytest.mark.parametrize("controlled", [RxClass.NARCOTIC, RxClass.PSYCHOTROPIC])
def test_a_controlled_drug_is_not_written_with_ordinary_ones(controlled):
    broken = facts(line(drug("Controlled", controlled)), line(drug("Paracetamol")))
    assert codes(rules.controlled_alone(broken)) == [
        (rules.CONTROLLED_NOT_ALONE, "items.1.drug_code")
    ]
    alone = facts(line(drug("Controlled", controlled)), line(drug("Other", controlled)))
    assert rules.controlled_alone(alone) == []


def test_the_form_follows_the_drugs():
    assert rules.rx_type_of([RxClass.OTHER, RxClass.OTC]) is PrescriptionType.OTHER
    assert rules.rx_type_of([RxClass.NARCOTIC]) is PrescriptionType.NARCOTIC
    assert rules.rx_type_of([RxClass.PSYCHOTROPIC]) is PrescriptionType.PSYCHOTROPIC


def test_a_child_under_72_months_needs_age_weight_and_adult():
    child = PartialDate(2024, 3, 1)  # 32 months on ON
    broken = facts(line(drug("Paracetamol")), birth=child)
    assert {v.rule for v in rules.small_child(broken)} == {
        rules.CHILD_AGE_MONTHS,
        rules.CHILD_WEIGHT,
        rules.CHILD_GUARDIAN,
    }
    complete = facts(
        line(drug("Paracetamol")),
        birth=child,
        age_months=32,
        weight_kg=Decimal("13.5"),
        guardian_name="Trần Văn Bố",
    )
    assert rules.small_child(complete) == []
    no_guardian = facts(
        line(drug("Paracetamol")), birth=child, age_months=32, weight_kg=Decimal("13.5")
    )
    assert codes(rules.small_child(no_guardian)) == [(rules.CHILD_GUARDIAN, "guardian_name")]


def test_72_months_and_older_need_nothing_more():
    assert rules.small_child(facts(line(drug("X")), birth=PartialDate(2020, 11, 28))) == []
    # Born in 2020, month unknown: maybe December, so still under 72 months.
    assert rules.small_child(facts(line(drug("X")), birth=PartialDate(2020)))


def test_allergy_to_an_active_ingredient():
    broken = facts(line(drug("Paracetamol")), line(drug("Amoxicillin")), allergies=("AMOXICILLIN",))
    assert codes(rules.allergy(broken)) == [(rules.ALLERGY, "items.1.drug_code")]
    assert rules.allergy(facts(line(drug("Amoxicillin")), allergies=("Aspirin",))) == []


def test_allergy_across_vietnamese_and_english_spellings():
    broken = facts(line(drug("Amoxicilin")), allergies=("amoxicillin",))
    assert codes(rules.allergy(broken)) == [(rules.ALLERGY, "items.0.drug_code")]
    combined = facts(line(drug("Amoxicillin + Acid clavulanic")), allergies=("Amoxicilin",))
    assert codes(rules.allergy(combined)) == [(rules.ALLERGY, "items.0.drug_code")]


@pytest.mark.parametrize(
    ("allergy", "ingredient"),
    [
        ("Penicillin", "Amoxicilin"),
        ("dị ứng nhóm penicilin", "Ampicilin"),
        ("Ampicillin", "Amoxicillin + Acid clavulanic"),
        ("nhóm Cephalosporin", "Cefalexin"),
        ("Sulfamid", "Sulfamethoxazol + Trimethoprim"),
        ("kháng viêm không steroid", "Ibuprofen"),
        ("Aspirin", "Diclofenac natri"),
        ("nhóm Quinolon", "Levofloxacin"),
    ],
)
def test_allergy_to_a_drug_group_covers_its_members(allergy, ingredient):
    found = rules.allergy(facts(line(drug(ingredient)), allergies=(allergy,)))
    assert codes(found) == [(rules.ALLERGY, "items.0.drug_code")]
    assert "group" in found[0].message


@pytest.mark.parametrize(
    ("allergy", "ingredient"),
    [
        ("Penicillin", "Cefalexin"),  # another group: cross-reactivity is rare
        ("nhóm Macrolid", "Amoxicilin"),
        ("Nhôm hydroxyd", "Amoxicilin"),  # aluminium, not a "nhóm" (group)
        ("NSAIDs", "Paracetamol"),
    ],
)
def test_allergy_to_a_group_leaves_other_groups_alone(allergy, ingredient):
    assert rules.allergy(facts(line(drug(ingredient)), allergies=(allergy,))) == []


def test_the_same_active_ingredient_twice():
    broken = facts(
        line(drug("Paracetamol", code="A")),
        line(drug("Amlodipin")),
        line(drug("paracetamol", code="B")),
    )
    assert codes(rules.duplicate_ingredient(broken)) == [
        (rules.DUPLICATE_INGREDIENT, "items.2.drug_code")
    ]
    assert "1" in rules.duplicate_ingredient(broken)[0].message


def test_a_changed_quantity_needs_a_reason():
    changed = line(drug("Paracetamol"), quantity=20, computed=15)
    assert codes(rules.quantity_reason(facts(changed))) == [
        (rules.QUANTITY_REASON, "items.0.quantity_reason")
    ]
    explained = line(drug("Paracetamol"), quantity=20, computed=15, reason="Đủ hộp")
    assert rules.quantity_reason(facts(explained)) == []


def test_a_drug_missing_from_the_catalog_or_withdrawn(db_session):
    facility = FacilityFactory()
    add_drugs(db_session, facility)
    known = rules.item_facts(
        db_session, facility.id, "PARA500", ON, days=1, quantity=1, computed_quantity=1
    )
    unknown = rules.item_facts(
        db_session, facility.id, "NOPE", ON, days=1, quantity=1, computed_quantity=1
    )
    withdrawn = rules.item_facts(
        db_session, facility.id, "OLD1", ON, days=1, quantity=1, computed_quantity=1
    )
    other_facility = rules.item_facts(
        db_session, FacilityFactory().id, "PARA500", ON, days=1, quantity=1, computed_quantity=1
    )
    found = rules.drug_in_catalog(facts(known, unknown, withdrawn, other_facility))
    assert codes(found) == [
        (rules.DRUG_NOT_IN_CATALOG, "items.1.drug_code"),
        (rules.DRUG_INACTIVE, "items.2.drug_code"),
        (rules.DRUG_NOT_IN_CATALOG, "items.3.drug_code"),
    ]
    before = rules.item_facts(
        db_session,
        facility.id,
        "PARA500",
        dt.date(2019, 12, 31),
        days=1,
        quantity=1,
        computed_quantity=1,
    )
    assert before.drug is None


def test_every_rule_runs_in_check():
    broken = facts(
        line(drug("Paracetamol"), days=31),
        line(None, code="NOPE"),
        birth=PartialDate(2024, 3, 1),
    )
    found = {v.rule for v in rules.check(broken)}
    assert {rules.DAYS_OVER_LIMIT, rules.DRUG_NOT_IN_CATALOG, rules.CHILD_WEIGHT} <= found


def test_the_same_ingredient_on_another_prescription_of_the_encounter():
    losartan = drug("Losartan")
    signed = facts(line(losartan), other_items=(rules.OtherItem("91001abcdefg-c", "Losartan"),))
    [found] = rules.duplicate_ingredient(signed)
    assert (found.rule, found.field) == (rules.DUPLICATE_INGREDIENT, "items.0.drug_code")
    assert "91001abcdefg-c" in found.message
    draft = facts(line(losartan), other_items=(rules.OtherItem(None, "Losartan"),))
    assert "draft" in rules.duplicate_ingredient(draft)[0].message
    other = facts(line(losartan), other_items=(rules.OtherItem("91001abcdefg-c", "Amlodipin"),))
    assert rules.duplicate_ingredient(other) == []


def test_age_in_months_must_agree_with_the_birth_month():
    born = PartialDate(2022, 4)  # 55 months on ON, the day unknown
    child = {"birth": born, "weight_kg": Decimal("18"), "guardian_name": "Trần Văn Bố"}
    for months in (53, 54, 55, 56):
        assert rules.check(facts(line(drug("Paracetamol")), age_months=months, **child)) == []
    [found] = rules.check(facts(line(drug("Paracetamol")), age_months=900, **child))
    assert (found.rule, found.field) == (rules.AGE_MONTHS_MISMATCH, "age_months")
    assert "900" in found.message and "04/2022" in found.message and "54–55" in found.message
    assert rules.age_months_agree(facts(line(drug("X")), age_months=57, birth=born))
    assert rules.age_months_agree(facts(line(drug("X")), age_months=52, birth=born))
    # Only the year known: the month count cannot be checked to the month.
    year_only = facts(line(drug("X")), age_months=60, birth=PartialDate(2022))
    assert rules.age_months_agree(year_only) == []


def test_the_weight_must_be_plausible():
    assert rules.weight_plausible(facts(line(drug("X")), weight_kg=Decimal("13.5"))) == []
    for kg in ("0.1", "400"):
        [found] = rules.check(facts(line(drug("X")), weight_kg=Decimal(kg)))
        assert (found.rule, found.field) == (rules.WEIGHT_IMPLAUSIBLE, "weight_kg")
        assert kg in found.message and "350" in found.message
