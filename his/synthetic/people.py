"""Synthetic patients: names in family–middle–given order from the demo's weighted lists,
ages from a pyramid tilted to the old (half of those over 70 know only the year, or year
and month, of birth), addresses in real 2025 communes (mostly An Giang), CCCD numbers that
agree with birth year and sex, BHYT cards for most, MRNs, phones and guardians.

The same seed gives the same rows, and the first k patients of a bigger province are the
first k of a smaller one.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

from his.identifiers import cccd_province_codes
from his.services.demo import card_groups, demo_data
from his.synthetic.facilities import FacilityPlan, read_csv
from his.text import fold_vi

DEFAULT_PATIENTS = 1_000_000
DEFAULT_SEED = 20251
DEFAULT_AS_OF = dt.date(2026, 1, 1)  # ages, card years and registration dates count from here
HOME_PROVINCE = "91"  # An Giang (2025)
HOME_SHARE = 0.92  # the rest live in other provinces (neighbours mostly)
# Share of patients seen in the year before ``as_of``: a province of 1,000,000 with about
# 3,000,000 visits a year sees most of its people at least once.
VISITED_SHARE = 0.7

# The three tables loaded, their columns in load order.
PATIENT_COLUMNS = (
    "id", "mrn", "full_name", "family_name", "middle_name", "given_name", "search_name",
    "sex", "birth_year", "birth_month", "birth_day", "phone", "ethnicity_code", "nationality",
    "address_line", "province_code", "commune_code", "legacy_province_code",
    "legacy_district_code", "legacy_commune_code", "guardian_name", "guardian_relation",
    "guardian_phone", "registered_facility_id", "version", "created_at", "updated_at",
    "last_visit_at",
)  # fmt: skip
IDENTIFIER_COLUMNS = ("id", "patient_id", "type", "system", "value")
COVERAGE_COLUMNS = (
    "id", "patient_id", "card_number", "insurance_number", "group_code", "benefit_level",
    "issuing_province", "valid_from", "valid_to", "registered_facility_code", "status",
    "created_at",
)  # fmt: skip

# Ages of the people in a province's patient index (years, weight): a population pyramid
# tilted towards the old, who come more often.
AGE_BANDS = ((0, 6, 8), (6, 18, 14), (18, 40, 28), (40, 60, 27), (60, 80, 18), (80, 100, 5))
# Other provinces patients come from: the neighbours and Hồ Chí Minh City mostly.
OTHER_PROVINCE_WEIGHTS = {"92": 30, "82": 20, "96": 12, "86": 10, "79": 15, "80": 3}
OTHER_PROVINCE_DEFAULT_WEIGHT = 0.4
KHMER_FAMILIES = frozenset({"Danh", "Thạch", "Sơn", "Chau"})
HOA_FAMILIES = frozenset({"Lâm", "Lý", "Trương"})
# Where a patient of the province registered for primary care (MA_DKBD): the station of
# their commune, the regional centre above it, or the provincial hospital.
REGISTERED_AT = (("station", 0.55), ("centre", 0.25), ("hospital", 0.20))
INSURED_SHARE = 0.93  # BHYT covers about 93 % of the population


class Person(NamedTuple):
    """What the visit generator needs to know of a patient."""

    id: int
    born: dt.date  # the real birthday; the record may know only the year (``birth``)
    birth: tuple[int, int | None, int | None]  # year, month, day as recorded
    age: int  # whole years on ``as_of``
    female: bool
    commune: str
    registered_code: str  # MA_DKBD: the facility of initial registration
    card: str | None  # the 15-character BHYT card, None when uninsured
    guardian_name: str | None


@dataclass
class Batch:
    patients: list[tuple] = field(default_factory=list)
    identifiers: list[tuple] = field(default_factory=list)
    coverages: list[tuple] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)


class Cumulative:
    """Weighted choice by bisection over cumulative weights: several times faster than
    ``random.choices`` for millions of draws."""

    def __init__(self, items: list, weights: list[float]):
        self.items = items
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def pick(self, u: float):
        return self.items[bisect.bisect_right(self.cumulative, u * self.total)]


class PeopleGenerator:
    """Seeded generator of patient rows; ids and MRNs continue after those already in the
    database (the demo's), numbers already taken are never given again."""

    def __init__(
        self,
        *,
        seed: int,
        as_of: dt.date,
        plan: FacilityPlan,
        taken_cccd: set[str],
        taken_insurance: set[str],
    ):
        self.rng = random.Random(seed)  # noqa: S311 (reproducible synthetic data)
        self.as_of = as_of
        self.as_of_ordinal = as_of.toordinal()
        data = demo_data()
        names = data["names"]
        self.family = Cumulative([f for f, _ in names["family"]], [w for _, w in names["family"]])
        self.middle = {"male": names["middle_male"], "female": names["middle_female"]}
        self.given = {"male": names["given_male"], "female": names["given_female"]}
        self.groups = data["bhyt_groups"]
        self.mobile_prefixes = data["mobile_prefixes"]
        self._fold: dict[str, str] = {}

        ages, weights = [], []
        for low, high, weight in AGE_BANDS:
            for age in range(low, high):
                ages.append(age)
                weights.append(weight / (high - low))
        self.age = Cumulative(ages, weights)

        units = read_csv("admin_units_2025.csv")
        communes: dict[str, list[str]] = defaultdict(list)
        self.commune_names: dict[str, str] = {}
        for row in units:
            if row["level"] == "commune":
                communes[row["province_code"]].append(row["code"])
                self.commune_names[row["code"]] = row["name"]
        home = communes[HOME_PROVINCE]
        # Communes differ in size: a seeded log-normal weight each (wards are bigger).
        size_rng = random.Random(seed + 1)  # noqa: S311
        self.home_communes = Cumulative(
            home,
            [
                size_rng.lognormvariate(0, 0.6) * (2.0 if self.commune_names[c][:1] == "P" else 1)
                for c in home
            ],
        )
        others = sorted(p for p in communes if p != HOME_PROVINCE)
        self.other_provinces = Cumulative(
            others, [OTHER_PROVINCE_WEIGHTS.get(p, OTHER_PROVINCE_DEFAULT_WEIGHT) for p in others]
        )
        self.communes = communes

        # The pre-2025 communes each 2025 commune came from: old codes for older records,
        # and the province of birth registration the CCCD starts with.
        self.legacy: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for row in read_csv("legacy_communes_2025.csv"):
            self.legacy[row["new_commune_code"]].append(
                (row["old_province_code"], row["old_district_code"], row["old_commune_code"])
            )
        self.cccd_codes = sorted(cccd_province_codes())

        self.plan = plan
        self.registered_at = Cumulative(
            [where for where, _ in REGISTERED_AT], [share for _, share in REGISTERED_AT]
        )
        self.taken_cccd = taken_cccd
        self.taken_insurance = taken_insurance
        self.days_in_month = {
            (y, m): calendar.monthrange(y, m)[1] for y in range(1900, 2101) for m in range(1, 13)
        }

    def fold(self, part: str) -> str:
        folded = self._fold.get(part)
        if folded is None:
            folded = self._fold[part] = fold_vi(part)
        return folded

    # --- numbers -----------------------------------------------------------------------------

    def cccd(self, province3: str, sex_female: bool, year: int) -> str:
        """Digits 1–3 the province of birth registration, 4 century and sex, 5–6 the year."""
        rng = self.rng
        head = f"{province3}{(year // 100 - 19) * 2 + sex_female}{year % 100:02d}"
        while True:
            number = f"{head}{rng.randrange(1_000_000):06d}"
            if number not in self.taken_cccd:
                self.taken_cccd.add(number)
                return number

    def insurance_number(self, province2: str) -> str:
        """The 10-digit social-insurance number (mã số BHXH): issuing province + 8 digits."""
        rng = self.rng
        while True:
            number = f"{province2}{rng.randrange(100_000_000):08d}"
            if number not in self.taken_insurance:
                self.taken_insurance.add(number)
                return number

    def phone(self) -> str:
        rng = self.rng
        return f"{rng.choice(self.mobile_prefixes)}{rng.randrange(10_000_000):07d}"

    # --- people ------------------------------------------------------------------------------

    def registered_facility(self, province: str, commune: str, u: float) -> str:
        station = self.plan.station_of_commune.get(commune) if province == HOME_PROVINCE else None
        if station is None:
            return self.plan.hospital.code
        where = self.registered_at.pick(u)
        if where == "station":
            return station
        if where == "centre":
            return self.plan.places[station].parent_code or station
        return self.plan.hospital.code

    def batch(self, first_id: int, count: int, ids: dict[str, int], mrn_base: int) -> Batch:
        """``count`` patients with ids ``first_id``…; ``ids`` holds the next identifier and
        coverage ids and is advanced. ``last_visit_at`` (the last column) is left empty for
        the visit generator."""
        rng = self.rng
        rand = rng.random
        out = Batch()
        as_of = self.as_of
        # Cards cover the year of visits before ``as_of`` and the year after.
        card_from, card_to = dt.date(as_of.year - 1, 1, 1), dt.date(as_of.year, 12, 31)
        places = self.plan.places
        for pid in range(first_id, first_id + count):
            female = rand() < 0.52
            sex = "female" if female else "male"
            age = self.age.pick(rand())
            born = dt.date.fromordinal(self.as_of_ordinal - int((age + rand()) * 365.2425) - 1)
            year, month, day = born.year, born.month, born.day
            if age >= 70 and rand() < 0.5:
                # Many elderly people know only the year (or year and month) of birth.
                day = None
                if rand() >= 0.3:
                    month = None
            family = self.family.pick(rand())
            middle = rng.choice(self.middle[sex])
            given = rng.choice(self.given[sex])
            full_name = f"{family} {middle} {given}"
            search_name = f"{self.fold(family)} {self.fold(middle)} {self.fold(given)}"

            if family in KHMER_FAMILIES:
                ethnicity = "05"  # Khơ-me
            elif family in HOA_FAMILIES and rand() < 0.3:
                ethnicity = "04"  # Hoa
            else:
                ethnicity = "01"  # Kinh

            if rand() < HOME_SHARE:
                province = HOME_PROVINCE
                commune = self.home_communes.pick(rand())
            else:
                province = self.other_provinces.pick(rand())
                communes = self.communes[province]
                commune = communes[int(rand() * len(communes))]
            olds = self.legacy.get(commune)
            old = olds[int(rand() * len(olds))] if olds else None
            # Records made before July 2025 kept the old address codes as given.
            legacy = old if old is not None and rand() < 0.6 else (None, None, None)
            if self.commune_names[commune][:1] == "P":  # phường: street addresses
                address = f"Số {1 + int(rand() * 400)}, khóm {1 + int(rand() * 12)}"
            else:
                address = f"Tổ {1 + int(rand() * 20)}, ấp {1 + int(rand() * 12)}"

            # Digits 1–3 of the CCCD: the province of birth registration.
            if rand() < 0.9 and old is not None:
                born_in = f"0{old[0]}"
            else:
                born_in = self.cccd_codes[int(rand() * len(self.cccd_codes))]
            cccd = None if age < 6 and rand() < 0.5 else self.cccd(born_in, female, year)

            guardian = (None, None, None)
            if age < 6:
                phone = None
                if rand() < 0.7:
                    guardian_name = (
                        f"{self.family.pick(rand())} {rng.choice(self.middle['female'])} "
                        f"{rng.choice(self.given['female'])}"
                    )
                    relation = "mẹ"
                else:
                    guardian_name = (
                        f"{family} {rng.choice(self.middle['male'])} "
                        f"{rng.choice(self.given['male'])}"
                    )
                    relation = "cha"
                guardian = (guardian_name, relation, self.phone())
            elif age < 15:
                phone = self.phone() if rand() < 0.3 else None
            else:
                phone = self.phone() if rand() < 0.85 else None

            facility_code = self.registered_facility(province, commune, rand())
            facility_id = places[facility_code].id
            created = dt.datetime(as_of.year - 5, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                seconds=int(rand() * 5 * 365 * 86400)
            )
            mrn = f"BN{mrn_base + pid - first_id:08d}"
            out.patients.append(
                (
                    pid, mrn, full_name, family, middle, given, search_name, sex,
                    year, month, day, phone, ethnicity, "VN", address, province, commune,
                    *legacy, *guardian, facility_id, 1, created, created, None,
                )
            )  # fmt: skip
            ident = ids["identifier"]
            card = None
            if cccd is not None:
                out.identifiers.append((ident, pid, "cccd", "", cccd))
                ident += 1
            out.identifiers.append((ident, pid, "mrn", "", mrn))
            ident += 1
            if rand() < INSURED_SHARE:
                group_list = card_groups(self.groups, age, rand)
                group, level = group_list[int(rand() * len(group_list))]
                issuing = province
                number = self.insurance_number(old[0] if old is not None else province)
                card = f"{group}{level}{issuing}{number}"
                out.coverages.append(
                    (
                        ids["coverage"], pid, card, number, group, level, issuing,
                        card_from, card_to, facility_code, "unverified", created,
                    )
                )  # fmt: skip
                ids["coverage"] += 1
                out.identifiers.append((ident, pid, "bhyt", "", number))
                ident += 1
            ids["identifier"] = ident
            out.people.append(
                Person(
                    pid,
                    born,
                    (year, month, day),
                    age,
                    female,
                    commune,
                    facility_code,
                    card,
                    guardian[0],
                )
            )
        return out
