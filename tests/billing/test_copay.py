"""The BHYT co-payment engine, case by case against figures worked out by hand.

Every expected amount below is a literal, with the arithmetic beside it: the test must not
ask the code under test what the answer is. Line figures are
(total, bhyt_amount, insurance_pays, patient_copay, patient_out_of_scope, coverage_rate);
bill figures are (total, insurance_pays, patient_copay, patient_out_of_scope, patient_pays,
coverage_rule, coverage_rate, rules). Rounding is half up, to whole VND.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.copay import (
    PARAMETER_NAMES,
    RULE_LABELS,
    BillSplit,
    Card,
    FacilityFacts,
    Line,
    LineSplit,
    Route,
    VisitFacts,
    compute,
)

# Parameters in force from 2024-07-01 (base salary 2,340,000: small bill under 351,000,
# exemption threshold 14,040,000; self-referred outpatient at former provincial hospitals 0%).
P2024 = {
    "base_salary": Decimal(2_340_000),
    "small_bill_share_percent": Decimal(15),
    "copay_exemption_months": Decimal(6),
    "benefit_rate_level_1": Decimal(100),
    "benefit_rate_level_2": Decimal(100),
    "benefit_rate_level_3": Decimal(95),
    "benefit_rate_level_4": Decimal(80),
    "benefit_rate_level_5": Decimal(100),
    "self_referral_outpatient_rate": Decimal(0),
    "self_referral_inpatient_central_rate": Decimal(40),
    "card_expiry_grace_days": Decimal(15),
}
# From 2026-07-01: base salary 2,530,000 (small bill under 379,500, threshold 15,180,000) and
# self-referred outpatient care at former provincial hospitals gets 50% of the benefit.
P2026 = {
    **P2024,
    "base_salary": Decimal(2_530_000),
    "self_referral_outpatient_rate": Decimal(50),
}

CENTRAL = FacilityFacts("01001", "specialised", "central")
PROVINCIAL_SPECIALISED = FacilityFacts("79001", "specialised", "provincial")
PROVINCIAL_BASIC = FacilityFacts("79002", "basic", "provincial")
DISTRICT_BASIC = FacilityFacts("79003", "basic", "district")
COMMUNE = FacilityFacts("79004", "primary", "commune")
NEW_CLINIC = FacilityFacts("79005", "basic", None)
ELSEWHERE = "79999"  # the default card is registered at none of the facilities above

MAR_10 = date(2025, 3, 10)
JUN_1 = date(2025, 6, 1)
JUN_30_2026 = date(2026, 6, 30)
JUL_1_2026 = date(2026, 7, 1)
JUL_15_2026 = date(2026, 7, 15)

SELF = Route.SELF_REFERRED
REFERRED = Route.REFERRED
EMERGENCY = Route.EMERGENCY


def card(
    level: int = 4,
    *,
    valid_from: date | None = date(2025, 1, 1),
    valid_to: date | None = date(2026, 12, 31),
    five_year: date | None = None,
    registered: str | None = ELSEWHERE,
) -> Card:
    return Card(level, valid_from, valid_to, five_year, registered)


def visit(
    facility: FacilityFacts,
    route: Route,
    the_card: Card | None,
    *,
    care: date = MAR_10,
    admitted: date | None = None,
    inpatient: bool = False,
    ytd: int = 0,
) -> VisitFacts:
    return VisitFacts(
        care_date=care,
        admitted_on=admitted or care,
        inpatient=inpatient,
        route=route,
        facility=facility,
        card=the_card,
        copay_year_to_date=ytd,
    )


def line(
    key: str,
    unit: int,
    quantity: str = "1",
    *,
    bhyt: int | None = None,
    in_scope: bool = True,
    day: date = MAR_10,
    service_rate: int = 100,
    payment_rate: int = 100,
) -> Line:
    """A charge; the fund's price is the facility's unless ``bhyt`` says otherwise."""
    return Line(
        key=key,
        quantity=Decimal(quantity),
        unit_price=unit,
        bhyt_price=unit if bhyt is None else bhyt,
        in_scope=in_scope,
        service_date=day,
        service_rate=service_rate,
        payment_rate=payment_rate,
    )


def registered_at(facility: FacilityFacts, level: int = 4, **kwargs) -> Card:
    return card(level, registered=facility.code, **kwargs)


# Two charges of an inpatient stay used by the five-year cases: at 80% their co-payments are
# 500,000 x 20% = 100,000 and 300,000 x 20% = 60,000, 160,000 in all.
def stay(day: date = JUN_1) -> list[Line]:
    return [line("surgery", 500_000, day=day), line("bed", 300_000, day=day)]


CASES = [
    # --- Route rules --------------------------------------------------------------------
    pytest.param(
        visit(CENTRAL, EMERGENCY, card(4), inpatient=True),
        [line("bed", 500_000)],
        P2024,
        # 500,000 x 80% = 400,000; copay 100,000
        [(500_000, 500_000, 400_000, 100_000, 0, 80)],
        (500_000, 400_000, 100_000, 0, 100_000, "emergency", 80, ("emergency",)),
        id="emergency-at-central-hospital-level-4",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("ct", 250_000, "2")],
        P2024,
        # 2 x 250,000 = 500,000; x 80% = 400,000; copay 100,000
        [(500_000, 500_000, 400_000, 100_000, 0, 80)],
        (
            500_000,
            400_000,
            100_000,
            0,
            100_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="level-4-registered-facility-80",
    ),
    pytest.param(
        visit(CENTRAL, SELF, registered_at(CENTRAL, 4)),
        [line("mri", 400_000)],
        P2024,
        # registered there, so not self-referral: 400,000 x 80% = 320,000; copay 80,000
        [(400_000, 400_000, 320_000, 80_000, 0, 80)],
        (400_000, 320_000, 80_000, 0, 80_000, "registered_facility", 80, ("registered_facility",)),
        id="registered-facility-wins-over-self-referral",
    ),
    pytest.param(
        visit(PROVINCIAL_SPECIALISED, REFERRED, card(3), inpatient=True),
        [line("drug", 10_030), line("surgery", 400_001)],
        P2024,
        [
            # 10,030 x 95% = 9,528.5 -> 9,529 (half up, not to even); copay 501
            (10_030, 10_030, 9_529, 501, 0, 95),
            # 400,001 x 95% = 380,000.95 -> 380,001; copay 20,000
            (400_001, 400_001, 380_001, 20_000, 0, 95),
        ],
        # 10,030 + 400,001 = 410,031; 9,529 + 380,001 = 389,530; 501 + 20,000 = 20,501
        (410_031, 389_530, 20_501, 0, 20_501, "referred", 95, ("referred",)),
        id="level-3-referred-95-rounding",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 2)),
        [line("ultrasound", 600_000)],
        P2024,
        # level 2: 100%
        [(600_000, 600_000, 600_000, 0, 0, 100)],
        (600_000, 600_000, 0, 0, 0, "registered_facility", 100, ("registered_facility",)),
        id="level-2-registered-100",
    ),
    pytest.param(
        visit(CENTRAL, REFERRED, card(1), inpatient=True),
        [line("surgery", 1_000_000)],
        P2024,
        # level 1 with a referral letter: 100%
        [(1_000_000, 1_000_000, 1_000_000, 0, 0, 100)],
        (1_000_000, 1_000_000, 0, 0, 0, "referred", 100, ("referred",)),
        id="level-1-referred-to-central-100",
    ),
    pytest.param(
        visit(CENTRAL, REFERRED, card(2, valid_from=None, valid_to=None)),
        [line("pet-ct", 700_000)],
        P2024,
        # no validity bounds: covered; level 2 referred: 100%
        [(700_000, 700_000, 700_000, 0, 0, 100)],
        (700_000, 700_000, 0, 0, 0, "referred", 100, ("referred",)),
        id="card-with-open-validity",
    ),
    pytest.param(
        visit(PROVINCIAL_SPECIALISED, SELF, card(4), care=JUN_30_2026),
        [line("endoscopy", 500_000, day=JUN_30_2026)],
        P2024,
        # before 2026-07-01 self-referred outpatient at a former provincial hospital: 80 x 0% = 0
        [(500_000, 500_000, 0, 500_000, 0, 0)],
        (
            500_000,
            0,
            500_000,
            0,
            500_000,
            "self_referral_outpatient",
            0,
            ("self_referral_outpatient",),
        ),
        id="self-referred-outpatient-former-provincial-before-2026-07",
    ),
    pytest.param(
        visit(PROVINCIAL_SPECIALISED, SELF, card(4), care=JUL_1_2026),
        [line("endoscopy", 500_000, day=JUL_1_2026)],
        P2026,
        # from 2026-07-01: 80 x 50% = 40; 500,000 x 40% = 200,000; copay 300,000
        # (500,000 is not under 379,500, so no small bill)
        [(500_000, 500_000, 200_000, 300_000, 0, 40)],
        (
            500_000,
            200_000,
            300_000,
            0,
            300_000,
            "self_referral_outpatient",
            40,
            ("self_referral_outpatient",),
        ),
        id="self-referred-outpatient-former-provincial-from-2026-07",
    ),
    pytest.param(
        visit(PROVINCIAL_BASIC, SELF, card(4), care=JUN_30_2026),
        [line("ct", 360_000, day=JUN_30_2026)],
        P2024,
        # 360,000 is not under 351,000: no small bill; 80 x 0% = 0
        [(360_000, 360_000, 0, 360_000, 0, 0)],
        (
            360_000,
            0,
            360_000,
            0,
            360_000,
            "self_referral_outpatient",
            0,
            ("self_referral_outpatient",),
        ),
        id="basic-former-provincial-360k-before-salary-change",
    ),
    pytest.param(
        visit(PROVINCIAL_BASIC, SELF, card(4), care=JUL_1_2026),
        [line("ct", 360_000, day=JUL_1_2026)],
        P2026,
        # 360,000 < 2,530,000 x 15% = 379,500: small bill, benefit 100; x 50% route = 50
        # 360,000 x 50% = 180,000; copay 180,000
        [(360_000, 360_000, 180_000, 180_000, 0, 50)],
        (
            360_000,
            180_000,
            180_000,
            0,
            180_000,
            "small_bill",
            50,
            ("self_referral_outpatient", "small_bill"),
        ),
        id="small-bill-plus-self-referral-after-salary-change",
    ),
    pytest.param(
        visit(PROVINCIAL_BASIC, SELF, card(4), care=JUN_30_2026),
        [line("x-ray", 300_000, day=JUN_30_2026)],
        P2024,
        # 300,000 < 351,000 raises the benefit to 100, but 100 x 0% = 0 = 80 x 0%:
        # the small bill decided nothing, the self-referral rate did
        [(300_000, 300_000, 0, 300_000, 0, 0)],
        (
            300_000,
            0,
            300_000,
            0,
            300_000,
            "self_referral_outpatient",
            0,
            ("self_referral_outpatient",),
        ),
        id="small-bill-does-not-lift-a-zero-self-referral-rate",
    ),
    pytest.param(
        visit(PROVINCIAL_BASIC, SELF, card(3), care=JUL_1_2026),
        [line("surgery", 1_000_001, day=JUL_1_2026)],
        P2026,
        # 95 x 50% = 47.5 -> 48; 1,000,001 x 48% = 480,000.48 -> 480,000; copay 520,001
        [(1_000_001, 1_000_001, 480_000, 520_001, 0, 48)],
        (
            1_000_001,
            480_000,
            520_001,
            0,
            520_001,
            "self_referral_outpatient",
            48,
            ("self_referral_outpatient",),
        ),
        id="level-3-self-referred-outpatient-2026-rate-rounds-to-48",
    ),
    pytest.param(
        visit(CENTRAL, SELF, card(4), inpatient=True),
        [line("surgery", 2_000_000)],
        P2024,
        # 80 x 40% = 32; 2,000,000 x 32% = 640,000; copay 1,360,000
        [(2_000_000, 2_000_000, 640_000, 1_360_000, 0, 32)],
        (
            2_000_000,
            640_000,
            1_360_000,
            0,
            1_360_000,
            "self_referral_inpatient_central",
            32,
            ("self_referral_inpatient_central",),
        ),
        id="self-referred-inpatient-former-central-32",
    ),
    pytest.param(
        visit(PROVINCIAL_SPECIALISED, SELF, card(4), inpatient=True),
        [line("surgery", 1_000_000)],
        P2024,
        # nationwide inpatient interconnection: route 100; 80%: 800,000; copay 200,000
        [(1_000_000, 1_000_000, 800_000, 200_000, 0, 80)],
        (
            1_000_000,
            800_000,
            200_000,
            0,
            200_000,
            "self_referral_inpatient",
            80,
            ("self_referral_inpatient",),
        ),
        id="self-referred-inpatient-former-provincial-full-route",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, card(4), care=JUL_1_2026),
        [line("ultrasound", 400_000, day=JUL_1_2026)],
        P2026,
        # former district basic hospital: route 100 even after 2026-07-01;
        # 400,000 is not under 379,500; 80%: 320,000; copay 80,000
        [(400_000, 400_000, 320_000, 80_000, 0, 80)],
        (
            400_000,
            320_000,
            80_000,
            0,
            80_000,
            "self_referral_outpatient_basic",
            80,
            ("self_referral_outpatient_basic",),
        ),
        id="self-referred-outpatient-former-district-basic",
    ),
    pytest.param(
        visit(NEW_CLINIC, SELF, card(4)),
        [line("ultrasound", 400_000)],
        P2024,
        # basic level with no legacy tier: route 100; 80%: 320,000; copay 80,000
        [(400_000, 400_000, 320_000, 80_000, 0, 80)],
        (
            400_000,
            320_000,
            80_000,
            0,
            80_000,
            "self_referral_outpatient_basic",
            80,
            ("self_referral_outpatient_basic",),
        ),
        id="self-referred-outpatient-basic-without-legacy-tier",
    ),
    pytest.param(
        visit(CENTRAL, SELF, card(4), care=JUL_1_2026),
        [line("mri", 400_000, day=JUL_1_2026)],
        P2026,
        # former central specialised outpatient: 0%, also after 2026-07-01
        [(400_000, 400_000, 0, 400_000, 0, 0)],
        (
            400_000,
            0,
            400_000,
            0,
            400_000,
            "self_referral_outpatient_central",
            0,
            ("self_referral_outpatient_central",),
        ),
        id="self-referred-outpatient-former-central-0",
    ),
    # --- Primary level and small bills ---------------------------------------------------
    pytest.param(
        visit(COMMUNE, SELF, card(4)),
        [line("dressing", 500_000)],
        P2024,
        # commune station: route 100, benefit raised 80 -> 100; no duplicate rule
        [(500_000, 500_000, 500_000, 0, 0, 100)],
        (500_000, 500_000, 0, 0, 0, "primary_level", 100, ("primary_level",)),
        id="primary-level-commune-station-self-referred",
    ),
    pytest.param(
        visit(COMMUNE, SELF, registered_at(COMMUNE, 3)),
        [line("dressing", 400_000)],
        P2024,
        # registered there (route 100); primary level raises 95 -> 100
        [(400_000, 400_000, 400_000, 0, 0, 100)],
        (
            400_000,
            400_000,
            0,
            0,
            0,
            "primary_level",
            100,
            ("registered_facility", "primary_level"),
        ),
        id="primary-level-registered-level-3",
    ),
    pytest.param(
        visit(COMMUNE, SELF, registered_at(COMMUNE, 4)),
        [line("dressing", 100_000)],
        P2024,
        # primary level raises first; the small bill (100,000 < 351,000) has nothing left
        [(100_000, 100_000, 100_000, 0, 0, 100)],
        (
            100_000,
            100_000,
            0,
            0,
            0,
            "primary_level",
            100,
            ("registered_facility", "primary_level"),
        ),
        id="primary-level-before-small-bill",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("x-ray", 350_999)],
        P2024,
        # 350,999 < 351,000: small bill, 100%
        [(350_999, 350_999, 350_999, 0, 0, 100)],
        (
            350_999,
            350_999,
            0,
            0,
            0,
            "small_bill",
            100,
            ("registered_facility", "small_bill"),
        ),
        id="small-bill-just-below-threshold",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("x-ray", 351_000)],
        P2024,
        # 351,000 is not below 351,000: 80%: 280,800; copay 70,200
        [(351_000, 351_000, 280_800, 70_200, 0, 80)],
        (351_000, 280_800, 70_200, 0, 70_200, "registered_facility", 80, ("registered_facility",)),
        id="small-bill-exactly-at-threshold",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("x-ray", 400_000, bhyt=300_000)],
        P2024,
        # the fund's amount 300,000 (not the 400,000 charged) is under 351,000: 100% of it;
        # the price difference 100,000 is the patient's
        [(400_000, 300_000, 300_000, 0, 100_000, 100)],
        (
            400_000,
            300_000,
            0,
            100_000,
            100_000,
            "small_bill",
            100,
            ("registered_facility", "small_bill"),
        ),
        id="small-bill-counts-the-bhyt-amount",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 1)),
        [line("x-ray", 100_000)],
        P2024,
        # level 1 is already 100%: the small bill raises nothing and is not recorded
        [(100_000, 100_000, 100_000, 0, 0, 100)],
        (100_000, 100_000, 0, 0, 0, "registered_facility", 100, ("registered_facility",)),
        id="small-bill-on-level-1-changes-nothing",
    ),
    # --- Scope, prices, rates, quantities ------------------------------------------------
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 5)),
        [
            line("exam", 400_000),
            line("implant", 250_000, bhyt=0, in_scope=False),
        ],
        P2024,
        [
            (400_000, 400_000, 400_000, 0, 0, 100),
            # level 5 covers items outside the list: bhyt_amount = total
            (250_000, 250_000, 250_000, 0, 0, 100),
        ],
        (
            650_000,
            650_000,
            0,
            0,
            0,
            "registered_facility",
            100,
            ("registered_facility", "level_5_out_of_list"),
        ),
        id="level-5-out-of-list-item-covered",
    ),
    pytest.param(
        visit(CENTRAL, SELF, card(5), inpatient=True),
        [
            line("surgery", 1_000_000),
            line("implant", 500_000, bhyt=0, in_scope=False),
        ],
        P2024,
        [
            # 100 x 40% = 40; 1,000,000 x 40% = 400,000; copay 600,000
            (1_000_000, 1_000_000, 400_000, 600_000, 0, 40),
            # out of list, level 5: 500,000 x 40% = 200,000; copay 300,000
            (500_000, 500_000, 200_000, 300_000, 0, 40),
        ],
        (
            1_500_000,
            600_000,
            900_000,
            0,
            900_000,
            "self_referral_inpatient_central",
            40,
            ("self_referral_inpatient_central", "level_5_out_of_list"),
        ),
        id="level-5-self-referred-inpatient-central-40",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [
            line("ct", 500_000),
            line("vitamins", 120_000, bhyt=0, in_scope=False),
        ],
        P2024,
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            # out of the list: all the patient's, outside the co-payment
            (120_000, 0, 0, 0, 120_000, 80),
        ],
        # pays 100,000 + 120,000 = 220,000
        (
            620_000,
            400_000,
            100_000,
            120_000,
            220_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="level-4-out-of-list-item-patient-pays",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("room", 600_000, bhyt=500_000)],
        P2024,
        # fund's amount 500,000 x 80% = 400,000; copay 100,000; price difference 100,000
        [(600_000, 500_000, 400_000, 100_000, 100_000, 80)],
        (
            600_000,
            400_000,
            100_000,
            100_000,
            200_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="facility-price-above-bhyt-price",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("stent", 800_000, payment_rate=50)],
        P2024,
        # fund considers 800,000 x 50% = 400,000; x 80% = 320,000; copay 80,000;
        # the other 400,000 is the patient's
        [(800_000, 400_000, 320_000, 80_000, 400_000, 80)],
        (
            800_000,
            320_000,
            80_000,
            400_000,
            480_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="payment-rate-50-item",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [
            line("exam-1", 50_600),
            line("exam-2", 50_600, service_rate=30),
            line("exam-3", 50_600, service_rate=10),
            line("exam-4", 50_600, service_rate=0),
            line("ct", 600_000),
        ],
        P2024,
        [
            # 50,600 x 80% = 40,480; copay 10,120
            (50_600, 50_600, 40_480, 10_120, 0, 80),
            # 50,600 x 30% = 15,180; x 80% = 12,144; copay 3,036
            (15_180, 15_180, 12_144, 3_036, 0, 80),
            # 50,600 x 10% = 5,060; x 80% = 4,048; copay 1,012
            (5_060, 5_060, 4_048, 1_012, 0, 80),
            # 4th examination: 0%
            (0, 0, 0, 0, 0, 80),
            (600_000, 600_000, 480_000, 120_000, 0, 80),
        ],
        # 50,600 + 15,180 + 5,060 + 600,000 = 670,840; x 80% = 536,672; copay 134,168
        (
            670_840,
            536_672,
            134_168,
            0,
            134_168,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="second-third-fourth-examination-service-rates",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, registered_at(DISTRICT_BASIC, 4)),
        [line("syrup", 123_457, "0.5"), line("infusion", 300_001, "1.333")],
        P2024,
        [
            # 0.5 x 123,457 = 61,728.5 -> 61,729; x 80% = 49,383.2 -> 49,383; copay 12,346
            (61_729, 61_729, 49_383, 12_346, 0, 80),
            # 1.333 x 300,001 = 399,901.333 -> 399,901; x 80% = 319,920.8 -> 319,921;
            # copay 79,980
            (399_901, 399_901, 319_921, 79_980, 0, 80),
        ],
        # 61,729 + 399,901 = 461,630; 49,383 + 319,921 = 369,304; 12,346 + 79,980 = 92,326
        (461_630, 369_304, 92_326, 0, 92_326, "registered_facility", 80, ("registered_facility",)),
        id="fractional-quantities",
    ),
    pytest.param(
        visit(PROVINCIAL_SPECIALISED, REFERRED, card(3), inpatient=True),
        [
            line("bed-days", 250_000, "3", bhyt=220_000),
            line("antibiotic", 12_345, "1.5"),
            line("comfort-kit", 75_000, bhyt=0, in_scope=False),
            line("surgery", 2_000_000, payment_rate=50),
        ],
        P2024,
        [
            # 3 x 250,000 = 750,000; fund 3 x 220,000 = 660,000; x 95% = 627,000;
            # copay 33,000; difference 90,000
            (750_000, 660_000, 627_000, 33_000, 90_000, 95),
            # 1.5 x 12,345 = 18,517.5 -> 18,518; x 95% = 17,592.1 -> 17,592; copay 926
            (18_518, 18_518, 17_592, 926, 0, 95),
            (75_000, 0, 0, 0, 75_000, 95),
            # fund 2,000,000 x 50% = 1,000,000; x 95% = 950,000; copay 50,000
            (2_000_000, 1_000_000, 950_000, 50_000, 1_000_000, 95),
        ],
        # total 750,000 + 18,518 + 75,000 + 2,000,000 = 2,843,518
        # insurance 627,000 + 17,592 + 950,000 = 1,594,592; copay 33,000 + 926 + 50,000 = 83,926
        # out of scope 90,000 + 75,000 + 1,000,000 = 1,165,000; pays 83,926 + 1,165,000
        (2_843_518, 1_594_592, 83_926, 1_165_000, 1_248_926, "referred", 95, ("referred",)),
        id="multi-line-inpatient-bill-level-3",
    ),
    # --- Five-year exemption -------------------------------------------------------------
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUN_1,
            inpatient=True,
            ytd=13_900_000,
        ),
        stay(),
        P2024,
        # allowed 14,040,000 - 13,900,000 = 140,000; copay 160,000; 20,000 moves off the bed
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 300_000, 260_000, 40_000, 0, 80),
        ],
        (
            800_000,
            660_000,
            140_000,
            0,
            140_000,
            "five_year_exemption",
            80,
            ("registered_facility", "five_year_exemption"),
        ),
        id="five-year-exemption-partial-last-line",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUN_1,
            inpatient=True,
            ytd=13_960_000,
        ),
        stay(),
        P2024,
        # allowed 80,000; excess 80,000: the bed's 60,000 then 20,000 of the surgery's
        [
            (500_000, 500_000, 420_000, 80_000, 0, 80),
            (300_000, 300_000, 300_000, 0, 0, 80),
        ],
        (
            800_000,
            720_000,
            80_000,
            0,
            80_000,
            "five_year_exemption",
            80,
            ("registered_facility", "five_year_exemption"),
        ),
        id="five-year-exemption-partial-across-lines",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUN_1,
            inpatient=True,
            ytd=14_040_000,
        ),
        stay(),
        P2024,
        # threshold reached already: allowed 0, the fund pays all 800,000
        [
            (500_000, 500_000, 500_000, 0, 0, 80),
            (300_000, 300_000, 300_000, 0, 0, 80),
        ],
        (
            800_000,
            800_000,
            0,
            0,
            0,
            "five_year_exemption",
            80,
            ("registered_facility", "five_year_exemption"),
        ),
        id="five-year-exemption-fully-used",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUN_1,
            inpatient=True,
            ytd=20_000_000,
        ),
        stay(),
        P2024,
        # paid beyond the threshold: allowed max(0, negative) = 0
        [
            (500_000, 500_000, 500_000, 0, 0, 80),
            (300_000, 300_000, 300_000, 0, 0, 80),
        ],
        (
            800_000,
            800_000,
            0,
            0,
            0,
            "five_year_exemption",
            80,
            ("registered_facility", "five_year_exemption"),
        ),
        id="five-year-exemption-year-to-date-above-threshold",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUN_1,
            inpatient=True,
        ),
        stay(),
        P2024,
        # copay 160,000 is well under 14,040,000: nothing moves
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 300_000, 240_000, 60_000, 0, 80),
        ],
        (
            800_000,
            640_000,
            160_000,
            0,
            160_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="five-year-exemption-under-threshold",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2025, 6, 2)),
            care=JUN_1,
            inpatient=True,
            ytd=14_040_000,
        ),
        stay(),
        P2024,
        # five years are reached the day after: no exemption yet
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 300_000, 240_000, 60_000, 0, 80),
        ],
        (
            800_000,
            640_000,
            160_000,
            0,
            160_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="five-year-date-after-care-date",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, five_year=date(2024, 1, 1)),
            care=JUL_15_2026,
            inpatient=True,
            ytd=15_100_000,
        ),
        stay(JUL_15_2026),
        P2026,
        # threshold 2,530,000 x 6 = 15,180,000; allowed 80,000 (at the 2024 salary it
        # would be 0): the bed's 60,000 then 20,000 of the surgery's move to the fund
        [
            (500_000, 500_000, 420_000, 80_000, 0, 80),
            (300_000, 300_000, 300_000, 0, 0, 80),
        ],
        (
            800_000,
            720_000,
            80_000,
            0,
            80_000,
            "five_year_exemption",
            80,
            ("registered_facility", "five_year_exemption"),
        ),
        id="five-year-exemption-threshold-at-2026-base-salary",
    ),
    pytest.param(
        visit(
            CENTRAL,
            SELF,
            card(4, five_year=date(2020, 1, 1)),
            inpatient=True,
            ytd=14_040_000,
        ),
        [line("surgery", 2_000_000)],
        P2024,
        # reduced self-referral rate (32%): no exemption; copay stays 1,360,000
        [(2_000_000, 2_000_000, 640_000, 1_360_000, 0, 32)],
        (
            2_000_000,
            640_000,
            1_360_000,
            0,
            1_360_000,
            "self_referral_inpatient_central",
            32,
            ("self_referral_inpatient_central",),
        ),
        id="five-year-exemption-not-for-reduced-self-referral",
    ),
    pytest.param(
        visit(
            PROVINCIAL_SPECIALISED,
            SELF,
            card(4, five_year=date(2020, 1, 1)),
            inpatient=True,
            ytd=14_040_000,
        ),
        [line("surgery", 1_000_000)],
        P2024,
        # self-referred inpatient at a full route rate (100): the exemption applies;
        # copay 200,000 moves to the fund
        [(1_000_000, 1_000_000, 1_000_000, 0, 0, 80)],
        (
            1_000_000,
            1_000_000,
            0,
            0,
            0,
            "five_year_exemption",
            80,
            ("self_referral_inpatient", "five_year_exemption"),
        ),
        id="five-year-exemption-self-referred-inpatient-full-route",
    ),
    # --- Card validity -------------------------------------------------------------------
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, valid_to=date(2025, 3, 31)),
            care=date(2025, 4, 2),
        ),
        [line("ct", 500_000, day=date(2025, 4, 2))],
        P2024,
        # admitted after expiry: no grace, the patient pays all
        [(500_000, 0, 0, 0, 500_000, 0)],
        (500_000, 0, 0, 500_000, 500_000, "card_expired", 0, ("card_expired",)),
        id="card-expired",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, valid_from=date(2025, 5, 1)),
            care=date(2025, 4, 20),
        ),
        [line("ct", 500_000, day=date(2025, 4, 20))],
        P2024,
        [(500_000, 0, 0, 0, 500_000, 0)],
        (500_000, 0, 0, 500_000, 500_000, "card_not_yet_valid", 0, ("card_not_yet_valid",)),
        id="card-not-yet-valid",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, valid_to=date(2025, 3, 31)),
            care=date(2025, 4, 15),
            admitted=date(2025, 3, 25),
            inpatient=True,
        ),
        [
            line("bed-march", 500_000, day=date(2025, 3, 30)),
            line("bed-april", 300_000, day=date(2025, 4, 15)),
        ],
        P2024,
        # 2025-04-15 = expiry + 15 days: still covered
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 300_000, 240_000, 60_000, 0, 80),
        ],
        (
            800_000,
            640_000,
            160_000,
            0,
            160_000,
            "registered_facility",
            80,
            ("registered_facility", "card_expiry_grace"),
        ),
        id="card-expiring-mid-stay-within-15-days",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, valid_to=date(2025, 3, 31)),
            care=date(2025, 4, 16),
            admitted=date(2025, 3, 25),
            inpatient=True,
        ),
        [
            line("bed-march", 500_000, day=date(2025, 3, 30)),
            line("bed-april-15", 300_000, day=date(2025, 4, 15)),
            line("bed-april-16", 200_000, day=date(2025, 4, 16)),
        ],
        P2024,
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 300_000, 240_000, 60_000, 0, 80),
            # 16 days after expiry: not covered
            (200_000, 0, 0, 0, 200_000, 0),
        ],
        # pays 160,000 + 200,000 = 360,000
        (
            1_000_000,
            640_000,
            160_000,
            200_000,
            360_000,
            "registered_facility",
            80,
            ("registered_facility", "card_expiry_grace"),
        ),
        id="card-expiring-mid-stay-beyond-15-days",
    ),
    pytest.param(
        visit(
            DISTRICT_BASIC,
            SELF,
            registered_at(DISTRICT_BASIC, 4, valid_to=date(2025, 3, 31)),
            care=date(2025, 4, 16),
            admitted=date(2025, 3, 25),
            inpatient=True,
        ),
        [
            line("bed-march", 500_000, day=date(2025, 3, 30)),
            line("bed-april-16", 300_000, day=date(2025, 4, 16)),
        ],
        P2024,
        # only the line inside validity is covered; no grace was needed
        [
            (500_000, 500_000, 400_000, 100_000, 0, 80),
            (300_000, 0, 0, 0, 300_000, 0),
        ],
        (
            800_000,
            400_000,
            100_000,
            300_000,
            400_000,
            "registered_facility",
            80,
            ("registered_facility",),
        ),
        id="card-expired-mid-stay-only-beyond-grace",
    ),
    pytest.param(
        visit(DISTRICT_BASIC, SELF, None),
        [line("exam", 200_000), line("syrup", 50_001, "0.5")],
        P2024,
        # 0.5 x 50,001 = 25,000.5 -> 25,001; all the patient's: 225,001
        [
            (200_000, 0, 0, 0, 200_000, 0),
            (25_001, 0, 0, 0, 25_001, 0),
        ],
        (225_001, 0, 0, 225_001, 225_001, "no_insurance", 0, ("no_insurance",)),
        id="no-card",
    ),
]


def line_figures(split: LineSplit) -> tuple[int, ...]:
    return (
        split.total,
        split.bhyt_amount,
        split.insurance_pays,
        split.patient_copay,
        split.patient_out_of_scope,
        split.coverage_rate,
    )


def bill_figures(bill: BillSplit) -> tuple[object, ...]:
    return (
        bill.total,
        bill.insurance_pays,
        bill.patient_copay,
        bill.patient_out_of_scope,
        bill.patient_pays,
        bill.coverage_rule,
        bill.coverage_rate,
        bill.rules,
    )


@pytest.mark.parametrize(("facts", "lines", "params", "want_lines", "want_bill"), CASES)
def test_split(facts, lines, params, want_lines, want_bill):
    bill = compute(facts, lines, params)

    assert [split.key for split in bill.lines] == [charge.key for charge in lines]
    assert [line_figures(split) for split in bill.lines] == want_lines
    assert bill_figures(bill) == want_bill


def test_every_case_rule_has_a_label():
    used = {rule for case in CASES for rule in case.values[4][7]}
    assert used <= set(RULE_LABELS)
    # Outside a request the labels fall back to their English source text.
    assert all(str(label) for label in RULE_LABELS.values())


def test_at_least_thirty_hand_worked_cases():
    assert len(CASES) >= 30


def test_empty_bill():
    bill = compute(visit(DISTRICT_BASIC, SELF, card(4)), [], P2024)
    assert bill_figures(bill)[:5] == (0, 0, 0, 0, 0)
    assert bill.lines == ()


# --- Invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 6, -1])
def test_benefit_level_out_of_range(level):
    with pytest.raises(ValueError, match="benefit_level"):
        compute(visit(DISTRICT_BASIC, SELF, card(level)), [line("ct", 100)], P2024)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"quantity": Decimal("NaN")}, "quantity", id="quantity-not-a-number"),
        pytest.param({"quantity": Decimal("0.0001")}, "quantity", id="quantity-4-decimals"),
        pytest.param({"unit_price": -1}, "unit_price", id="negative-unit-price"),
        pytest.param({"bhyt_price": -5}, "bhyt_price", id="negative-bhyt-price"),
        pytest.param({"service_rate": 101}, "service_rate", id="service-rate-above-100"),
        pytest.param({"service_rate": -1}, "service_rate", id="negative-service-rate"),
        pytest.param({"payment_rate": 150}, "payment_rate", id="payment-rate-above-100"),
        pytest.param({"payment_rate": -10}, "payment_rate", id="negative-payment-rate"),
    ],
)
def test_invalid_line_names_field_and_key(change, field):
    good = line("ok", 100_000)
    bad = Line(**{**good.__dict__, "key": "bad-line", **change})
    with pytest.raises(ValueError, match=rf"'bad-line'.*{field}"):
        compute(visit(DISTRICT_BASIC, SELF, card(4)), [good, bad], P2024)


def test_unknown_care_level():
    clinic = FacilityFacts("79006", "tertiary", None)
    with pytest.raises(ValueError, match="care_level"):
        compute(visit(clinic, SELF, card(4)), [line("ct", 100)], P2024)


def test_negative_copay_year_to_date():
    with pytest.raises(ValueError, match="copay_year_to_date"):
        compute(visit(DISTRICT_BASIC, SELF, card(4), ytd=-1), [line("ct", 100)], P2024)


@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_missing_parameter_is_named(name):
    params = {key: value for key, value in P2024.items() if key != name}
    with pytest.raises(KeyError, match=name):
        compute(visit(DISTRICT_BASIC, SELF, card(4)), [line("ct", 100)], params)


def test_parameter_names_are_the_documented_ones():
    assert set(PARAMETER_NAMES) == set(P2024)


# --- Properties over random bills -------------------------------------------------------

FACILITIES = [
    CENTRAL,
    PROVINCIAL_SPECIALISED,
    PROVINCIAL_BASIC,
    DISTRICT_BASIC,
    COMMUNE,
    NEW_CLINIC,
]
DAYS = st.dates(min_value=date(2024, 12, 1), max_value=date(2027, 2, 1))

random_lines = st.lists(
    st.builds(
        Line,
        key=st.text(min_size=1, max_size=5),
        quantity=st.decimals(
            min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False
        ),
        unit_price=st.integers(0, 50_000_000),
        bhyt_price=st.integers(0, 50_000_000),
        in_scope=st.booleans(),
        service_date=DAYS,
        service_rate=st.integers(0, 100),
        payment_rate=st.integers(0, 100),
    ),
    max_size=8,
)
random_cards = st.none() | st.builds(
    Card,
    benefit_level=st.integers(1, 5),
    valid_from=st.none() | DAYS,
    valid_to=st.none() | DAYS,
    five_year_date=st.none() | DAYS,
    registered_facility_code=st.none() | st.sampled_from([f.code for f in FACILITIES]),
)
random_visits = st.builds(
    VisitFacts,
    care_date=DAYS,
    admitted_on=DAYS,
    inpatient=st.booleans(),
    route=st.sampled_from(list(Route)),
    facility=st.sampled_from(FACILITIES),
    card=random_cards,
    copay_year_to_date=st.integers(0, 30_000_000),
)


@settings(max_examples=300, deadline=None)
@given(facts=random_visits, lines=random_lines, params=st.sampled_from([P2024, P2026]))
def test_amounts_always_add_up(facts, lines, params):
    bill = compute(facts, lines, params)

    assert bill.total == bill.insurance_pays + bill.patient_pays
    assert bill.patient_pays == bill.patient_copay + bill.patient_out_of_scope
    assert bill.total == sum(split.total for split in bill.lines)
    assert bill.insurance_pays == sum(split.insurance_pays for split in bill.lines)
    assert bill.patient_copay == sum(split.patient_copay for split in bill.lines)
    assert bill.patient_out_of_scope == sum(split.patient_out_of_scope for split in bill.lines)
    assert 0 <= bill.coverage_rate <= 100
    assert bill.coverage_rule in RULE_LABELS
    assert set(bill.rules) <= set(RULE_LABELS)
    for split in bill.lines:
        assert min(line_figures(split)) >= 0
        assert (
            split.total == split.insurance_pays + split.patient_copay + split.patient_out_of_scope
        )
        assert split.bhyt_amount == split.insurance_pays + split.patient_copay
        assert split.bhyt_amount <= split.total


def test_a_return_undoes_what_its_dispensing_charged():
    """Units given back are a negative line: it splits as the mirror of the same units
    charged. Level 4 at a former district hospital, 400,000 of X-rays, 10 tablets at 1,500
    (15,000) and 4 of them back (-6,000): the bill is that of 6 tablets."""
    the_visit = visit(DISTRICT_BASIC, SELF, card(4))
    xray = line("xray", 400_000)
    with_return = compute(
        the_visit,
        [xray, line("tablets", 1_500, "10"), line("back", 1_500, "-4")],
        P2024,
    )
    kept = compute(the_visit, [xray, line("tablets", 1_500, "6")], P2024)
    # 80 %: 400,000 -> 320,000 + 80,000; 15,000 -> 12,000 + 3,000; -6,000 -> -4,800 - 1,200.
    assert line_figures(with_return.lines[2]) == (-6_000, -6_000, -4_800, -1_200, 0, 80)
    assert (with_return.total, with_return.insurance_pays, with_return.patient_pays) == (
        409_000,
        327_200,
        81_800,
    )
    assert (kept.total, kept.insurance_pays, kept.patient_pays) == (409_000, 327_200, 81_800)
