"""A year of care for the synthetic patients: visits with their visit codes and queue
numbers, one signed examination each, ICD-10 diagnoses, signed prescriptions, and a paid
bill with its charges and payment.

The bill's split comes from the co-payment engine (``billing.copay.compute``) with the
parameters in force on the day, and the signed records carry the content hash the app's
own functions compute (``encounters.content_hash``, ``prescriptions.content_hash``), so a
synthetic record reads, verifies and bills like one made at the counter.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import copay
from billing.params import params_on
from his.localtime import local_day_bounds
from his.models import Disposition, Icd10Code, PrescriptionType, TreatmentCourse
from his.partial_date import PartialDate
from his.services import encounters as encounter_records
from his.services import prescription_rules
from his.services import prescriptions as prescription_records
from his.services.prescriptions import CODE_ALPHABET, CODE_RANDOM_LENGTH
from his.services.visits import legal_priority
from his.synthetic.facilities import FacilityPlan, Place
from his.synthetic.people import Cumulative, Person

VISITS_PER_PATIENT = 3.0  # a province of 1,000,000 sees about 3,000,000 visits a year
# Where a patient of the province goes: the commune's station, the regional centre, the
# provincial hospital (people from elsewhere go to the hospital or a centre).
GOES_TO = (("station", 0.50), ("centre", 0.27), ("hospital", 0.23))
BHYT_USE = 0.9  # an insured patient shows the card at most visits
EMERGENCY_SHARE = 0.08  # of the hospital's visits
REFERRED_SHARE = 0.55  # of the BHYT visits at the hospital not registered there
PRESCRIBED_SHARE = 0.65
SECONDARY_DIAGNOSES = (0.35, 0.12)  # chance of a 1st and a 2nd secondary diagnosis
# Scrambles prescription serials into codes; coprime with 36^7, so no two serials collide.
RX_CODE_MULTIPLIER = 2_654_435_761
assert math.gcd(RX_CODE_MULTIPLIER, len(CODE_ALPHABET) ** CODE_RANDOM_LENGTH) == 1
SPLIT_CACHE = 200_000  # bill shapes remembered
PAYMENT_METHODS = (("cash", 0.70), ("transfer", 0.25), ("card", 0.05))
# Diagnoses seen in outpatient care, by age group (ICD-10, weight), and the drugs (active
# ingredients of the demo catalog) a doctor picks from for each; chronic ones get 30 days.
DIAGNOSES = {
    "child": (
        ("J06.9", 30), ("J20.9", 12), ("J02.9", 12), ("A09", 12), ("J18.9", 4),
        ("B01.9", 3), ("H66.9", 6), ("L30.9", 5), ("K29.7", 2), ("Z00.0", 14),
    ),
    "adult": (
        ("J06.9", 16), ("K29.7", 12), ("M54.5", 10), ("I10", 12), ("E11.9", 6),
        ("K21.9", 6), ("J20.9", 6), ("N39.0", 5), ("R51", 4), ("E78.5", 5), ("Z00.0", 10),
        ("H81.1", 3), ("A09", 5),
    ),
    "elder": (
        ("I10", 28), ("E11.9", 14), ("E78.5", 10), ("M17.9", 8), ("I25.9", 6),
        ("K29.7", 6), ("J20.9", 6), ("M54.5", 6), ("H81.1", 4), ("J44.9", 4), ("N39.0", 3),
    ),
}  # fmt: skip
CHRONIC = frozenset({"I10", "E11.9", "E78.5", "I25.9", "J44.9", "M17.9"})
SECONDARY = ("I10", "E11.9", "E78.5", "K29.7", "M17.9", "K21.9", "I25.9")
DRUGS_FOR = {
    "J06.9": ("Paracetamol", "Loratadin", "Bromhexin hydroclorid", "Clorpheniramin maleat"),
    "J20.9": ("Amoxicilin", "Acetylcystein", "Paracetamol", "Salbutamol sulfat"),
    "J02.9": ("Amoxicilin", "Paracetamol", "Cefuroxim"),
    "J18.9": ("Amoxicilin + Acid clavulanic", "Paracetamol", "Acetylcystein"),
    "A09": ("Oresol", "Diosmectit", "Kẽm gluconat"),
    "B01.9": ("Aciclovir", "Paracetamol"),
    "H66.9": ("Amoxicilin", "Paracetamol"),
    "L30.9": ("Cetirizin dihydroclorid", "Clotrimazol"),
    "K29.7": ("Omeprazol", "Nhôm hydroxyd + Magnesi hydroxyd", "Domperidon"),
    "K21.9": ("Esomeprazol", "Domperidon"),
    "M54.5": ("Meloxicam", "Eperison hydroclorid", "Paracetamol"),
    "M17.9": ("Glucosamin sulfat", "Meloxicam"),
    "I10": ("Amlodipin", "Losartan kali", "Perindopril"),
    "E11.9": ("Metformin hydroclorid", "Gliclazid"),
    "E78.5": ("Atorvastatin", "Rosuvastatin"),
    "I25.9": ("Clopidogrel", "Isosorbid mononitrat", "Atorvastatin"),
    "J44.9": ("Salbutamol sulfat", "Budesonid"),
    "N39.0": ("Ciprofloxacin", "Cefuroxim"),
    "R51": ("Paracetamol",),
    "H81.1": ("Betahistin dihydroclorid", "Cinnarizin"),
}
# What a commune station stocks: the drugs its doctors prescribe for these diagnoses.
STATION_FORMULARY = frozenset(d for drugs in DRUGS_FOR.values() for d in drugs)
REASONS = {
    "J06.9": "Sốt, ho, sổ mũi", "J20.9": "Ho nhiều, khạc đàm", "J02.9": "Đau họng, sốt",
    "J18.9": "Sốt cao, ho, khó thở", "A09": "Tiêu chảy, đau bụng", "B01.9": "Sốt, nổi mụn nước",
    "H66.9": "Đau tai, sốt", "L30.9": "Ngứa, nổi mẩn", "K29.7": "Đau thượng vị",
    "K21.9": "Ợ nóng, ợ chua", "M54.5": "Đau thắt lưng", "M17.9": "Đau khớp gối",
    "I10": "Tái khám tăng huyết áp", "E11.9": "Tái khám đái tháo đường",
    "E78.5": "Tái khám rối loạn mỡ máu", "I25.9": "Đau ngực khi gắng sức",
    "J44.9": "Khó thở, ho kéo dài", "N39.0": "Tiểu buốt, tiểu gắt", "R51": "Đau đầu",
    "H81.1": "Chóng mặt", "Z00.0": "Khám sức khỏe",
}  # fmt: skip

VISIT_COLUMNS = (
    "id", "visit_code", "facility_id", "patient_id", "department_id", "room_id", "visit_type",
    "payment", "referral_from_facility_code", "referral_letter_number", "referral_date",
    "priority_reason", "status", "opened_at", "closed_at", "queue_date", "queue_number",
    "called_at", "started_at", "created_by_id",
)  # fmt: skip
ENCOUNTER_COLUMNS = (
    "id", "visit_id", "facility_id", "patient_id", "room_id", "doctor_id", "status", "reason",
    "conclusion", "advice", "disposition", "follow_up_date", "refer_to_facility_code",
    "refer_reason", "started_at", "finished_at", "signed_by_id", "content_hash", "version",
)  # fmt: skip
DIAGNOSIS_COLUMNS = (
    "id", "encounter_id", "icd10_code", "title", "icd10_version_id", "is_main", "position",
    "created_at",
)  # fmt: skip
PRESCRIPTION_COLUMNS = (
    "id", "encounter_id", "facility_id", "patient_id", "prescriber_id", "rx_type", "course",
    "status", "code", "age_months", "weight_kg", "guardian_name", "advice", "created_at",
    "signed_at", "signed_by_id", "valid_until", "content_hash",
)  # fmt: skip
ITEM_COLUMNS = (
    "id", "prescription_id", "position", "drug_id", "drug_code", "drug_name", "dose",
    "times_per_day", "days", "route", "instructions", "computed_quantity", "quantity",
)  # fmt: skip
BILL_COLUMNS = (
    "id", "visit_id", "facility_id", "number", "status", "total", "insurance_pays",
    "patient_copay", "patient_out_of_scope", "patient_pays", "coverage_rule", "coverage_rate",
    "lines", "created_at", "paid_at", "version",
)  # fmt: skip
CHARGE_COLUMNS = (
    "id", "visit_id", "facility_id", "bill_id", "kind", "source_key", "code", "name", "unit",
    "quantity", "unit_price", "bhyt_price", "in_scope", "service_rate", "payment_rate",
    "service_date", "performed_at", "department_code", "doctor_licence", "created_by_id",
    "created_at",
)  # fmt: skip
PAYMENT_COLUMNS = (
    "id", "bill_id", "facility_id", "kind", "method", "amount", "receipt_number",
    "received_by_id", "at",
)  # fmt: skip
TABLES = (
    ("visit", VISIT_COLUMNS),
    ("encounter", ENCOUNTER_COLUMNS),
    ("diagnosis", DIAGNOSIS_COLUMNS),
    ("prescription", PRESCRIPTION_COLUMNS),
    ("prescription_item", ITEM_COLUMNS),
    ("bill", BILL_COLUMNS),
    ("charge", CHARGE_COLUMNS),
    ("payment", PAYMENT_COLUMNS),
)


@dataclass
class OpenBill:
    """A visit's bill while its charges are added: the rows and the engine's lines."""

    visit_id: int
    bill_id: int
    bhyt: bool
    department_code: str
    licence: str
    charges: list[tuple] = field(default_factory=list)
    lines: list[copay.Line] = field(default_factory=list)


@dataclass
class CareBatch:
    rows: dict[str, list[tuple]] = field(default_factory=lambda: {t: [] for t, _ in TABLES})


class CareGenerator:
    """Seeded visits for a stream of patients. Visit codes, queue and receipt numbers
    count per facility (room) and day as the counter would; ``counters()`` gives the final
    values so the app continues after them."""

    def __init__(
        self,
        session: Session,
        *,
        seed: int,
        as_of: dt.date,
        plan: FacilityPlan,
        next_ids: dict[str, int],
        visits_per_patient: float = VISITS_PER_PATIENT,
        visited_share: float = 0.7,
    ):
        self.rng = random.Random(seed + 2)  # noqa: S311 (reproducible synthetic data)
        self.as_of = as_of
        self.plan = plan
        self.ids = dict(next_ids)
        self.visited_share = visited_share
        # Visited patients come 1 + a geometric number of times: the mean over all patients
        # is ``visits_per_patient``.
        extra = max(visits_per_patient / visited_share - 1, 0.0) if visited_share else 0.0
        self.extra_scale = 1 / math.log(1 + 1 / extra) if extra else 0.0
        self.goes_to = Cumulative([w for w, _ in GOES_TO], [s for _, s in GOES_TO])
        self.methods = Cumulative([m for m, _ in PAYMENT_METHODS], [s for _, s in PAYMENT_METHODS])
        self.diagnoses = {
            group: Cumulative([c for c, _ in table], [w for _, w in table])
            for group, table in DIAGNOSES.items()
        }
        codes = {c for table in DIAGNOSES.values() for c, _ in table} | set(SECONDARY)
        self.titles: dict[str, str] = {}
        self.icd_version: int | None = None
        for version_id, code, title_vi, title_en in session.execute(
            select(Icd10Code.version_id, Icd10Code.code, Icd10Code.title_vi, Icd10Code.title_en)
            .where(Icd10Code.code.in_(codes))
            .order_by(Icd10Code.version_id)
        ):
            self.titles[code] = title_vi or title_en
            self.icd_version = version_id
        missing = codes - set(self.titles)
        if missing or self.icd_version is None:
            raise ValueError(f"ICD-10 codes missing from the catalog: {sorted(missing)}")
        # Days of the year before ``as_of``; Sundays see a third of a weekday's visits.
        self.days = [as_of - dt.timedelta(days=n) for n in range(365, 0, -1)]
        self.day_weights = list(
            itertools.accumulate(0.35 if d.weekday() == 6 else 1.0 for d in self.days)
        )
        # The parameters in force each day, read once per distinct table.
        tables: dict[tuple, copay.Params] = {}
        self.params = {}
        for d in self.days:
            values = params_on(session, d)
            key = tuple(sorted(values.items()))
            self.params[d] = tables.setdefault(key, copay.read_params(values))
        # Bills of the same shape split the same way (the engine is a pure function).
        self.splits: dict[tuple, copay.BillSplit] = {}
        # Local midnight of each day, in UTC.
        self.midnight = {d: local_day_bounds(d)[0].astimezone(dt.UTC) for d in self.days}
        limits = prescription_rules.limits()
        self.valid_days = limits["valid_days"]
        self.child_months = limits["child_months"]
        self.visit_seq: dict[tuple[str, dt.date], int] = defaultdict(int)
        self.queue: dict[tuple[int, dt.date], int] = defaultdict(int)
        self.receipts: dict[tuple[str, int], int] = defaultdict(int)
        self.rx_serial: dict[str, int] = defaultdict(int)
        self.centres = plan.centres

    # --- helpers ------------------------------------------------------------------------

    def _next(self, table: str) -> int:
        value = self.ids[table]
        self.ids[table] = value + 1
        return value

    def _day(self) -> dt.date:
        u = self.rng.random() * self.day_weights[-1]
        return self.days[bisect.bisect_right(self.day_weights, u)]

    def _rx_code(self, facility_code: str) -> str:
        """The facility code, 7 characters, the type: unique per facility by construction
        (a serial scrambled by an odd multiplier modulo 32^7, so not a readable sequence)."""
        serial = self.rx_serial[facility_code]
        self.rx_serial[facility_code] = serial + 1
        base = len(CODE_ALPHABET)
        value = (serial * RX_CODE_MULTIPLIER + 12_345) % base**CODE_RANDOM_LENGTH
        chars = []
        for _ in range(CODE_RANDOM_LENGTH):
            value, digit = divmod(value, base)
            chars.append(CODE_ALPHABET[digit])
        return f"{facility_code}{''.join(chars)}-{PrescriptionType.OTHER.value}"

    def _place(self, person: Person) -> Place:
        plan = self.plan
        station_code = plan.station_of_commune.get(person.commune)
        if station_code is None:  # lives in another province
            if self.rng.random() < 0.7:
                return plan.hospital
            return plan.places[self.centres[int(self.rng.random() * len(self.centres))]]
        where = self.goes_to.pick(self.rng.random())
        station = plan.places[station_code]
        if where == "station":
            return station
        if where == "centre" and station.parent_code:
            return plan.places[station.parent_code]
        return plan.hospital

    # --- a patient's year ---------------------------------------------------------------

    def person(self, person: Person, out: CareBatch) -> dt.datetime | None:
        """The patient's visits into ``out``; returns when the last one opened."""
        rng = self.rng
        if rng.random() >= self.visited_share:
            return None
        count = 1 + int(-math.log(1.0 - rng.random()) * self.extra_scale)
        # A baby born during the year is seen only after birth.
        days = sorted(d for d in (self._day() for _ in range(count)) if d >= person.born)
        last = None
        for day in days:
            opened = self.visit(person, day, out)
            last = opened if last is None else max(last, opened)
        return last

    def visit(self, person: Person, day: dt.date, out: CareBatch) -> dt.datetime:
        rng = self.rng
        rand = rng.random
        place = self._place(person)
        emergency = place.emergency_room is not None and rand() < EMERGENCY_SHARE
        room_id, department_id, department_code = (
            place.emergency_room
            if emergency
            else place.exam_rooms[int(rand() * len(place.exam_rooms))]
        )
        bhyt = person.card is not None and rand() < BHYT_USE
        referred = (
            bhyt
            and not emergency
            and place.code != person.registered_code
            and place.legacy_tier == "provincial"
            and rand() < REFERRED_SHARE
        )
        minute = 7 * 60 + int(rand() * 570)  # 07:00–16:30 local time
        opened = self.midnight[day] + dt.timedelta(minutes=minute)
        called = opened + dt.timedelta(minutes=5 + int(rand() * 55))
        finished = called + dt.timedelta(minutes=8 + int(rand() * 25))
        seq_key = (place.code, day)
        self.visit_seq[seq_key] += 1
        queue_key = (room_id, day)
        self.queue[queue_key] += 1
        priority = (
            "emergency"
            if emergency
            else legal_priority(SimpleNamespace(birth=PartialDate(*person.birth)), day)
        )
        visit_id = self._next("visit")
        referral = (None, None, None)
        if referred:
            referral = (
                person.registered_code,
                f"{day:%y}/{int(rand() * 9000) + 1000}",
                day - dt.timedelta(days=int(rand() * 5)),
            )
        out.rows["visit"].append(
            (
                visit_id, f"{place.code}{day:%y%m%d}{self.visit_seq[seq_key]:05d}", place.id,
                person.id, department_id, room_id, "emergency" if emergency else "outpatient",
                "bhyt" if bhyt else "fee", *referral, priority and str(priority), "finished",
                opened, finished, day, self.queue[queue_key], called, called,
                place.receptionist_id,
            )
        )  # fmt: skip

        # The examination: diagnoses, a conclusion, the doctor's signature.
        doctor_id, licence = place.doctors[int(rand() * len(place.doctors))]
        group = "child" if person.age < 16 else "elder" if person.age >= 60 else "adult"
        main = self.diagnoses[group].pick(rand())
        codes = [main]
        for chance in SECONDARY_DIAGNOSES:
            if group != "child" and rand() < chance:
                extra = SECONDARY[int(rand() * len(SECONDARY))]
                if extra not in codes:
                    codes.append(extra)
        encounter_id = self._next("encounter")
        diagnoses = []
        for position, code in enumerate(codes):
            diagnosis_id = self._next("diagnosis")
            row = (
                diagnosis_id, encounter_id, code, self.titles[code], self.icd_version,
                position == 0, position, called,
            )  # fmt: skip
            out.rows["diagnosis"].append(row)
            diagnoses.append(
                SimpleNamespace(
                    id=diagnosis_id, icd10_code=code, title=self.titles[code],
                    is_main=position == 0, position=position, note=None,
                )
            )  # fmt: skip
        chronic = main in CHRONIC
        disposition, follow_up, refer_to, refer_reason = Disposition.HOME, None, None, None
        u = rand()
        if chronic or u < 0.1:
            disposition = Disposition.FOLLOW_UP
            follow_up = day + dt.timedelta(days=30 if chronic else 7)
        elif u < 0.13 and place.code != self.plan.hospital.code:
            disposition = Disposition.REFER_OUT
            refer_to = place.parent_code or self.plan.hospital.code
            refer_reason = "Vượt khả năng chuyên môn"
        reason = REASONS.get(main, self.titles[main])
        conclusion = self.titles[main]
        advice = "Tái khám theo hẹn" if follow_up else "Tái khám khi có dấu hiệu bất thường"
        record = SimpleNamespace(
            id=encounter_id, visit_id=visit_id, patient_id=person.id, doctor_id=doctor_id,
            reason=reason, history=None, findings=None, conclusion=conclusion, advice=advice,
            disposition=disposition, follow_up_date=follow_up, refer_to_facility_code=refer_to,
            refer_reason=refer_reason, referral_letter_number=None, died_at=None, vitals=[],
            diagnoses=diagnoses, orders=[],
        )  # fmt: skip
        out.rows["encounter"].append(
            (
                encounter_id, visit_id, place.id, person.id, room_id, doctor_id, "finished",
                reason, conclusion, advice, disposition.value, follow_up, refer_to,
                refer_reason, called, finished, doctor_id,
                encounter_records.content_hash(record), 1,
            )
        )  # fmt: skip

        # Charges: the examination fee, then the drugs prescribed (dispensed the same day).
        bill_id = self._next("bill")
        bill = OpenBill(visit_id, bill_id, bhyt, department_code, licence)
        charges, lines = bill.charges, bill.lines
        exam = place.exam_service
        if exam is not None:
            code, name, bhyt_price, service_price = exam
            charge_id = self._next("charge")
            price = bhyt_price if bhyt else service_price
            charges.append(
                (
                    charge_id, visit_id, place.id, bill_id, "examination",
                    f"encounter:{encounter_id}", code, name, "lần", Decimal(1), price,
                    bhyt_price, bhyt, 100, 100, day, called, department_code, licence,
                    doctor_id, finished,
                )
            )  # fmt: skip
            lines.append(copay.Line(str(charge_id), Decimal(1), price, bhyt_price, bhyt, day))
        if rand() < PRESCRIBED_SHARE and main in DRUGS_FOR:
            self._prescription(
                person, place, day, finished, encounter_id, doctor_id, main, chronic, out, bill
            )  # fmt: skip
        out.rows["charge"].extend(bill.charges)
        self._bill(person, place, day, finished, bill, referred, emergency, out)
        return opened

    def _prescription(
        self, person, place, day, signed, encounter_id, doctor_id, main, chronic, out, bill
    ):
        visit_id, bill_id, bhyt = bill.visit_id, bill.bill_id, bill.bhyt
        department_code, licence, charges, lines = (
            bill.department_code, bill.licence, bill.charges, bill.lines
        )  # fmt: skip
        rand = self.rng.random
        choices = [ingredient for ingredient in DRUGS_FOR[main] if ingredient in place.drugs]
        if not choices:
            return
        picked = [choices[0]] + [c for c in choices[1:] if rand() < 0.6]
        days = 30 if chronic else 5 + int(rand() * 3)
        rx_id = self._next("prescription")
        age_months = None
        weight = None
        guardian = None
        months = (day.year - person.born.year) * 12 + day.month - person.born.month
        if months < self.child_months:
            age_months = max(months, 0)
            weight = Decimal(3 + age_months // 3)  # a rough growth curve, in kg
            guardian = person.guardian_name
        code = self._rx_code(place.code)
        items = []
        for position, ingredient in enumerate(picked):
            drug = place.drugs[ingredient][0]
            times = 1 if chronic else 2
            quantity = Decimal(times * days)
            item_id = self._next("prescription_item")
            instructions = f"Uống {times} lần/ngày, mỗi lần 1 {drug.unit}"
            out.rows["prescription_item"].append(
                (
                    item_id, rx_id, position, drug.id, drug.code, drug.name, Decimal(1), times,
                    days, drug.route, instructions, quantity, quantity,
                )
            )  # fmt: skip
            items.append(
                SimpleNamespace(
                    drug_code=drug.code, drug_name=drug.name, dose=Decimal(1),
                    times_per_day=times, days=days, route=drug.route, instructions=instructions,
                    quantity=quantity, quantity_reason=None,
                )
            )  # fmt: skip
            in_scope = bhyt and drug.bhyt_covered
            charge_id = self._next("charge")
            charges.append(
                (
                    charge_id, visit_id, place.id, bill_id, "drug", None, drug.code, drug.name,
                    drug.unit, quantity, drug.price, drug.price, in_scope, 100,
                    drug.bhyt_payment_rate, day, signed, department_code, licence, doctor_id,
                    signed,
                )
            )  # fmt: skip
            lines.append(
                copay.Line(
                    str(charge_id), quantity, drug.price, drug.price, in_scope, day,
                    payment_rate=drug.bhyt_payment_rate,
                )
            )  # fmt: skip
        course = TreatmentCourse.CHRONIC if chronic else TreatmentCourse.ACUTE
        advice = "Uống thuốc đúng giờ, tái khám khi hết thuốc"
        record = SimpleNamespace(
            code=code, rx_type=PrescriptionType.OTHER, patient_id=person.id,
            encounter_id=encounter_id, signed_by_id=doctor_id, signed_at=signed, course=course,
            age_months=age_months, weight_kg=weight, guardian_name=guardian,
            guardian_id_number=None, advice=advice, follow_up_date=None, replaces_id=None,
            items=items,
        )  # fmt: skip
        out.rows["prescription"].append(
            (
                rx_id, encounter_id, place.id, person.id, doctor_id,
                PrescriptionType.OTHER.value, course.value, "signed", code, age_months, weight,
                guardian, advice, signed, signed, doctor_id,
                day + dt.timedelta(days=self.valid_days - 1),
                prescription_records.content_hash(record),
            )
        )  # fmt: skip

    def _bill(self, person, place, day, paid_at, bill, referred, emergency, out):
        visit_id, bill_id, bhyt, charges, lines = (
            bill.visit_id, bill.bill_id, bill.bhyt, bill.charges, bill.lines
        )  # fmt: skip
        card = None
        if bhyt:
            card = copay.Card(
                benefit_level=int(person.card[2]),
                valid_from=dt.date(self.as_of.year - 1, 1, 1),
                valid_to=dt.date(self.as_of.year, 12, 31),
                five_year_date=None,
                registered_facility_code=person.registered_code,
            )
        route = (
            copay.Route.EMERGENCY
            if emergency
            else copay.Route.REFERRED
            if referred
            else copay.Route.SELF_REFERRED
        )
        facts = copay.VisitFacts(
            care_date=day,
            admitted_on=day,
            inpatient=False,
            route=route,
            facility=copay.FacilityFacts(place.code, place.care_level, place.legacy_tier),
            card=card,
        )
        params = self.params[day]
        shape = (
            id(params), place.care_level, place.legacy_tier, route, card and card.benefit_level,
            person.registered_code == place.code,
            tuple((x.quantity, x.unit_price, x.in_scope, x.payment_rate) for x in lines),
        )  # fmt: skip
        split = self.splits.get(shape)
        if split is None:
            if len(self.splits) > SPLIT_CACHE:
                self.splits.clear()
            split = self.splits[shape] = copay.compute(facts, lines, params)
        snapshot = []
        for charge, line in zip(charges, split.lines, strict=True):  # in the order given
            snapshot.append(
                {
                    "charge_id": charge[0],
                    "kind": charge[4],
                    "code": charge[6],
                    "name": charge[7],
                    "quantity": str(charge[9]),
                    "unit_price": charge[10],
                    "total": line.total,
                    "insurance_pays": line.insurance_pays,
                    "patient_copay": line.patient_copay,
                    "patient_out_of_scope": line.patient_out_of_scope,
                    "coverage_rate": line.coverage_rate,
                }
            )
        out.rows["bill"].append(
            (
                bill_id, visit_id, place.id, 1, "paid", split.total, split.insurance_pays,
                split.patient_copay, split.patient_out_of_scope, split.patient_pays,
                split.coverage_rule, split.coverage_rate,
                json.dumps(snapshot, ensure_ascii=False), paid_at, paid_at, 1,
            )
        )  # fmt: skip
        if split.patient_pays > 0:
            year = day.year  # paid the day of the visit, local time
            self.receipts[(place.code, year)] += 1
            out.rows["payment"].append(
                (
                    self._next("payment"), bill_id, place.id, "payment",
                    self.methods.pick(self.rng.random()), split.patient_pays,
                    f"{year}-{self.receipts[(place.code, year)]:06d}", place.cashier_id, paid_at,
                )
            )  # fmt: skip

    def counters(self) -> dict[str, int]:
        """The counter values the app continues from (names as ``his.services.visits`` and
        ``billing.payments`` use them)."""
        values = {}
        for (code, day), n in self.visit_seq.items():
            values[f"visit:{code}:{day.isoformat()}"] = n
        for (room_id, day), n in self.queue.items():
            values[f"queue:{room_id}:{day.isoformat()}"] = n
        for (code, year), n in self.receipts.items():
            values[f"receipt:{code}:{year}"] = n
        return values
