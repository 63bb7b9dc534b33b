"""The synthetic province (``his demo --size N``, ``bench/province.py``): loaded through the
CLI into a real database of each backend, then read back through the app's own services.
The records must verify, bill and number exactly as records made at the counter would."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from billing.bills import compute_visit
from billing.models import Bill, Charge, Payment
from his import migrate
from his.cli import main
from his.db import Database
from his.identifiers import parse_bhyt_card, parse_cccd
from his.localtime import local_date, local_today
from his.models import (
    Counter,
    Diagnosis,
    Encounter,
    Facility,
    IdentifierType,
    Patient,
    Prescription,
    PrescriptionItem,
    Visit,
)
from his.person_name import normalise_full_name
from his.phone import normalise_phone
from his.services import encounters, prescriptions
from his.services.demo import count_demo_mrns
from his.synthetic.care import STATION_FORMULARY
from his.synthetic.facilities import add_facilities
from his.synthetic.load import LOADED_COUNTER
from his.synthetic.people import PeopleGenerator

SIZE = 120
SEED = 7
DEMO_LAST_MRN = "BN00000200"  # the demo's patients come first
SYNTHETIC = select(Patient.id).where(Patient.mrn > DEMO_LAST_MRN)


@pytest.fixture(scope="module")
def province(backend, fresh_database, tmp_path_factory):
    """A committed database with the demo and a synthetic province of SIZE patients,
    loaded the way an operator would: ``his demo --size``."""
    databases = fresh_database(backend)
    url = next(databases)
    env = {
        "HIS_ENV": "development",
        "HIS_DATABASE_URL": url,
        "HIS_CLAIM_KEYS_DIR": str(tmp_path_factory.mktemp("claim-keys")),
    }
    result = CliRunner().invoke(
        main, ["demo", "--size", str(SIZE), "--seed", str(SEED), "--no-fhir"], env=env
    )
    assert result.exit_code == 0, result.output
    db = Database.from_url(url)
    yield db, env, result.output
    db.engine.dispose()
    databases.close()


def test_cli_reports_what_it_loaded(province):
    db, _env, output = province
    with db.session(write=False) as session:
        visits = session.scalar(
            select(func.count()).select_from(Visit).where(Visit.patient_id.in_(SYNTHETIC))
        )
        facilities = session.scalar(select(func.count()).select_from(Facility))
    assert f"{facilities} facilities, {SIZE} patients" in output
    assert f"{visits} visits" in output


def test_schema_ends_as_the_migrations_made_it(province):
    """Indexes, unique and foreign-key constraints dropped for the load are all back."""
    db, _env, _output = province
    migrate.check(db.engine.url.render_as_string(hide_password=False))


def test_every_visit_has_a_signed_examination_and_a_bill(province):
    db, _env, _output = province
    today = local_today()
    with db.session(write=False) as session:
        visits = session.scalars(select(Visit).where(Visit.patient_id.in_(SYNTHETIC))).all()
        assert len(visits) > SIZE  # about three a year each
        for visit in visits:
            assert visit.status.value == "finished"
            assert local_date(visit.opened_at) < today
            assert re.fullmatch(rf"{visit.facility.code}\d{{6}}\d{{5}}", visit.visit_code)
            (encounter,) = session.scalars(select(Encounter).where(Encounter.visit_id == visit.id))
            assert encounters.verify(encounter), encounter.id
            assert sum(d.is_main for d in encounter.diagnoses) == 1
            (bill,) = session.scalars(select(Bill).where(Bill.visit_id == visit.id))
            assert bill.status.value == "paid"
        # Every patient's last visit is what the search ranks by.
        last = dict(
            session.execute(
                select(Visit.patient_id, func.max(Visit.opened_at)).group_by(Visit.patient_id)
            ).all()
        )
        for patient in session.scalars(select(Patient).where(Patient.id.in_(list(last)))):
            assert patient.last_visit_at == last[patient.id]


def test_prescriptions_verify_and_keep_the_paediatric_fields(province):
    db, _env, _output = province
    with db.session(write=False) as session:
        rxs = session.scalars(select(Prescription)).all()
        assert rxs
        for rx in rxs:
            assert rx.content_hash == prescriptions.content_hash(rx), rx.id
            assert rx.items
            if rx.age_months is not None:
                assert rx.age_months < 72 and rx.weight_kg and rx.guardian_name
        codes = [rx.code for rx in rxs]
        assert len(set(codes)) == len(codes)


def test_bills_split_as_the_app_splits_them(province):
    """The stored split of each bill equals what the app computes from the visit, its card
    and its charges today (route, card, facility level and parameters all agree)."""
    db, _env, _output = province
    with db.session(write=False) as session:
        bills = session.scalars(
            select(Bill).join(Visit, Bill.visit_id == Visit.id).order_by(Bill.id)
        ).all()
        checked = 0
        for bill in bills:
            visit = session.get(Visit, bill.visit_id)
            split, charges = compute_visit(session, visit)
            assert (split.total, split.insurance_pays, split.patient_copay) == (
                bill.total,
                bill.insurance_pays,
                bill.patient_copay,
            ), bill.id
            assert split.patient_out_of_scope == bill.patient_out_of_scope
            assert split.coverage_rule == bill.coverage_rule
            assert [line["charge_id"] for line in bill.lines] == [c.id for c in charges]
            paid = sum(p.amount for p in bill.payments)
            assert paid == bill.patient_pays
            checked += 1
        assert checked > SIZE
        rules = set(session.scalars(select(Bill.coverage_rule).distinct()))
    assert {"no_insurance", "primary_level"} <= rules


def test_counters_continue_after_the_loaded_numbers(province):
    db, _env, _output = province
    with db.session(write=False) as session:
        counters = dict(session.execute(select(Counter.name, Counter.value)).all())
        assert counters[LOADED_COUNTER] == SIZE
        for code, day, last in session.execute(
            select(
                Facility.code,
                Visit.queue_date,
                func.max(func.substr(Visit.visit_code, 12, 5)),
            )
            .join(Facility, Facility.id == Visit.facility_id)
            .group_by(Facility.code, Visit.queue_date)
        ):
            assert counters[f"visit:{code}:{day.isoformat()}"] >= int(last)
        for room, day, last in session.execute(
            select(Visit.room_id, Visit.queue_date, func.max(Visit.queue_number)).group_by(
                Visit.room_id, Visit.queue_date
            )
        ):
            assert counters[f"queue:{room}:{day.isoformat()}"] >= last
        receipts = session.execute(
            select(Facility.code, Payment.receipt_number).join(
                Facility, Facility.id == Payment.facility_id
            )
        ).all()
        assert len(set(receipts)) == len(receipts)  # a receipt number per facility and year
        for code, number in receipts:
            year, serial = number.split("-")
            assert counters[f"receipt:{code}:{year}"] >= int(serial)
        assert counters["mrn"] >= count_demo_mrns(session)


def test_rows_come_from_the_seed_and_grow_by_prefix(province):
    """The same seed gives the same patients, and a bigger province starts with a smaller
    one's patients."""
    db, _env, _output = province
    with db.session() as session:
        plan = add_facilities(
            session,
            seed=SEED,
            catalogs_from=local_today() - dt.timedelta(days=366),
            station_drugs=STATION_FORMULARY,
        )

        def people(count: int):
            generator = PeopleGenerator(
                seed=SEED, as_of=local_today(), plan=plan, taken_cccd=set(), taken_insurance=set()
            )
            rows = generator.batch(1, count, {"identifier": 1, "coverage": 1}, 1).patients
            return [row[2:8] for row in rows]  # names, folded name, sex

        small, big = people(40), people(SIZE)
        stored = session.execute(
            select(
                Patient.full_name,
                Patient.family_name,
                Patient.middle_name,
                Patient.given_name,
                Patient.search_name,
                Patient.sex,
            )
            .where(Patient.mrn > DEMO_LAST_MRN)
            .order_by(Patient.id)
        ).all()
        session.rollback()
    assert small == big[:40]
    assert [(*row[:5], row[5].value) for row in stored] == big


def test_a_second_province_is_refused_clearly(province):
    db, env, _output = province
    tables = (Patient, Visit, Diagnosis, PrescriptionItem, Charge)

    def counts():
        with db.session(write=False) as session:
            return [session.scalar(select(func.count()).select_from(t)) for t in tables]

    before = counts()
    result = CliRunner().invoke(main, ["demo", "--size", "10", "--no-fhir"], env=env)
    assert result.exit_code != 0
    assert f"already holds a synthetic province of {SIZE} patients" in result.output
    assert counts() == before


def test_patients_pass_the_apps_own_validators(province):
    """Names, CCCD (year and sex), BHYT cards and phones as reception would accept them."""
    db, _env, _output = province
    with db.session(write=False) as session:
        patients = session.scalars(
            select(Patient).where(Patient.id.in_(SYNTHETIC)).order_by(Patient.id)
        ).all()
        assert len(patients) == SIZE
        for patient in patients:
            assert normalise_full_name(patient.full_name) == patient.full_name
            assert patient.full_name == " ".join(
                (patient.family_name, patient.middle_name, patient.given_name)
            )
            for identifier in patient.identifiers:
                if identifier.type == IdentifierType.CCCD:
                    parse_cccd(identifier.value, birth_year=patient.birth_year, sex=patient.sex)
            if patient.phone:
                assert normalise_phone(patient.phone) == patient.phone
            if patient.coverage is not None:
                card = parse_bhyt_card(patient.coverage.card_number)
                assert card.benefit_level == patient.coverage.benefit_level
