"""A synthetic province of N patients (default 1,000,000), generated from a seed and
bulk-loaded into a fresh bench database.

    .venv/bin/python bench/province.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/province.py --database-url sqlite --patients 100000
    .venv/bin/python bench/province.py --database-url postgresql://... --drop   # remove it

The same seed and the same ``--as-of`` give the same rows, and the first k patients of a
bigger province are the first k of a smaller one. Names come from the demo province's
weighted lists (``his.services.demo.demo_data``), addresses from the real 2025 commune
codes (mostly An Giang, province 91), CCCD numbers agree with birth year and sex, every
insured patient has a BHYT card (a ``coverage`` row and a ``bhyt`` identifier with the
10-digit number), every patient an MRN (``BN`` + 8 digits) and its identifier row.

Loading: PostgreSQL through ``COPY ... FROM STDIN`` (psycopg 3), SQLite through
``executemany`` in large transactions with ``synchronous=OFF``. The schema comes from the
Alembic migrations; the big secondary indexes of the three loaded tables are dropped by
name before the load and created again, exactly as the migrations made them, afterwards;
then ``VACUUM ANALYZE`` (PostgreSQL) or ``ANALYZE`` (SQLite).
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import csv
import datetime as dt
import itertools
import json
import random
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psycopg
from common import (
    DB_PREFIX,
    META_TABLE,
    RESULTS_DIR,
    Progress,
    Target,
    display_url,
    log,
    resolve,
    write_json,
)
from sqlalchemy import func, select

from his import migrate
from his.db import Database
from his.identifiers import cccd_province_codes
from his.models import Facility, Patient
from his.services import counters
from his.services.demo import demo_data, load_demo
from his.services.patients import MRN_COUNTER
from his.text import fold_vi

DEFAULT_PATIENTS = 1_000_000
DEFAULT_SEED = 20251
DEFAULT_AS_OF = dt.date(2026, 1, 1)  # ages, card years and registration dates count from here
HOME_PROVINCE = "91"  # An Giang (2025)
HOME_SHARE = 0.92  # the rest live in other provinces (neighbours mostly)
BATCH = 25_000  # patients per COPY round / SQLite transaction
# Share of patients seen in the year before ``as_of``: a province of 1,000,000 with about
# 3,000,000 visits a year sees most of its people at least once. Only the patient's
# ``last_visit_at`` (what the search ranks by) is written, not the visits themselves.
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
LOADED_TABLES = ("patient", "patient_identifier", "coverage")

# Ages of the people in a province's patient index (years, weight): a population pyramid
# tilted towards the old, who come more often.
AGE_BANDS = ((0, 6, 8), (6, 18, 14), (18, 40, 28), (40, 60, 27), (60, 80, 18), (80, 100, 5))
# Other provinces patients come from: the neighbours and Hồ Chí Minh City mostly.
OTHER_PROVINCE_WEIGHTS = {"92": 30, "82": 20, "96": 12, "86": 10, "79": 15, "80": 3}
OTHER_PROVINCE_DEFAULT_WEIGHT = 0.4
KHMER_FAMILIES = frozenset({"Danh", "Thạch", "Sơn", "Chau"})
HOA_FAMILIES = frozenset({"Lâm", "Lý", "Trương"})
FACILITY_WEIGHTS = {"91001": 40}  # the provincial hospital registers most; others 15 each
INSURED_SHARE = 0.93  # BHYT covers about 93 % of the population


@dataclass
class Batch:
    patients: list[tuple] = field(default_factory=list)
    identifiers: list[tuple] = field(default_factory=list)
    coverages: list[tuple] = field(default_factory=list)


class Cumulative:
    """Weighted choice by bisection over cumulative weights: several times faster than
    ``random.choices`` for millions of draws."""

    def __init__(self, items: list, weights: list[float]):
        self.items = items
        self.cumulative = list(itertools.accumulate(weights))
        self.total = self.cumulative[-1]

    def pick(self, u: float):
        return self.items[bisect.bisect_right(self.cumulative, u * self.total)]


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("his.data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


class ProvinceGenerator:
    """Seeded generator of patient rows; ids and MRNs continue after those already in the
    database (the demo's 200), numbers already taken are never given again."""

    def __init__(
        self,
        *,
        seed: int,
        as_of: dt.date,
        facilities: dict[str, int],
        taken_cccd: set[str],
        taken_insurance: set[str],
        visited_share: float = VISITED_SHARE,
    ):
        self.rng = random.Random(seed)  # noqa: S311 (reproducible synthetic data)
        self.as_of = as_of
        self.as_of_midnight = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
        self.visited_share = visited_share
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

        units = _read_csv("admin_units_2025.csv")
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
        for row in _read_csv("legacy_communes_2025.csv"):
            self.legacy[row["new_commune_code"]].append(
                (row["old_province_code"], row["old_district_code"], row["old_commune_code"])
            )
        self.cccd_codes = sorted(cccd_province_codes())

        codes = sorted(facilities)
        self.facility = Cumulative(
            [(code, facilities[code]) for code in codes],
            [FACILITY_WEIGHTS.get(code, 15) for code in codes],
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

    def batch(self, first_id: int, count: int, ids: dict[str, int], mrn_base: int) -> Batch:
        """``count`` patients with ids ``first_id``…; ``ids`` holds the next identifier and
        coverage ids and is advanced."""
        rng = self.rng
        rand = rng.random
        out = Batch()
        as_of = self.as_of
        year_start, year_end = dt.date(as_of.year, 1, 1), dt.date(as_of.year, 12, 31)
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

            facility_code, facility_id = self.facility.pick(rand())
            created = dt.datetime(as_of.year - 5, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                seconds=int(rand() * 5 * 365 * 86400)
            )
            mrn = f"BN{mrn_base + pid - first_id:08d}"
            last_visit = None
            if rand() < self.visited_share:
                last_visit = self.as_of_midnight - dt.timedelta(seconds=int(rand() * 365 * 86400))
            out.patients.append(
                (
                    pid, mrn, full_name, family, middle, given, search_name, sex,
                    year, month, day, phone, ethnicity, "VN", address, province, commune,
                    *legacy, *guardian, facility_id, 1, created, created, last_visit,
                )
            )  # fmt: skip
            ident = ids["identifier"]
            if cccd is not None:
                out.identifiers.append((ident, pid, "cccd", "", cccd))
                ident += 1
            out.identifiers.append((ident, pid, "mrn", "", mrn))
            ident += 1
            if rand() < INSURED_SHARE:
                groups = self.groups
                group_list = (
                    groups["child"]
                    if age < 6
                    else groups["elderly"]
                    if age >= 60
                    else groups["poor"]
                    if rand() < 0.15
                    else groups["working"]
                )
                group, level = group_list[int(rand() * len(group_list))]
                issuing = province
                number = self.insurance_number(old[0] if old is not None else province)
                card = f"{group}{level}{issuing}{number}"
                out.coverages.append(
                    (
                        ids["coverage"], pid, card, number, group, level, issuing,
                        year_start, year_end, facility_code, "unverified", created,
                    )
                )  # fmt: skip
                ids["coverage"] += 1
                out.identifiers.append((ident, pid, "bhyt", "", number))
                ident += 1
            ids["identifier"] = ident
        return out


# --- the bench database ----------------------------------------------------------------------


def create_database(target: Target) -> None:
    if target.backend == "sqlite":
        path = target.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert target.db_name and target.db_name.startswith(DB_PREFIX)
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target.db_name}"')


def drop_database(target: Target) -> None:
    if target.backend == "sqlite":
        assert target.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{target.path}{suffix}").unlink(missing_ok=True)
        return
    assert target.db_name and target.db_name.startswith(DB_PREFIX)
    with psycopg.connect(target.server_conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target.db_name}" WITH (FORCE)')


def _existing(db: Database) -> tuple[dict[str, int], set[str], set[str], dict[str, int], int]:
    """Facilities by code, taken CCCD and BHYT numbers, next ids, next MRN number."""
    with db.session(write=False) as session:
        facilities = {
            code: id_ for code, id_ in session.execute(select(Facility.code, Facility.id))
        }
        conn = session.connection()
        taken_cccd = set(
            conn.exec_driver_sql(
                "SELECT value FROM patient_identifier WHERE type = 'cccd'"
            ).scalars()
        )
        taken_insurance = set(
            conn.exec_driver_sql("SELECT insurance_number FROM coverage").scalars()
        )
        taken_insurance |= set(
            conn.exec_driver_sql(
                "SELECT value FROM patient_identifier WHERE type = 'bhyt'"
            ).scalars()
        )
        next_ids = {
            table: (conn.exec_driver_sql(f"SELECT max(id) FROM {table}").scalar() or 0) + 1  # noqa: S608
            for table in LOADED_TABLES
        }
        last_mrn = session.scalar(select(func.max(Patient.mrn)).where(Patient.mrn.like("BN%")))
    return (
        facilities,
        taken_cccd,
        taken_insurance,
        next_ids,
        int(last_mrn[2:]) + 1 if last_mrn else 1,
    )


def _pg_indexes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Secondary indexes (not primary keys, not unique constraints) of the loaded tables,
    with their exact definitions."""
    return conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        ORDER BY i.tablename, i.indexname
        """,
        [list(LOADED_TABLES)],
    ).fetchall()


def _sqlite_indexes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    placeholders = ",".join("?" * len(LOADED_TABLES))
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608
        f"AND tbl_name IN ({placeholders}) ORDER BY tbl_name, name",
        LOADED_TABLES,
    ).fetchall()


FTS_TABLE = "patient_name_fts"  # migration 0009


def _sqlite_triggers(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """The triggers keeping the FTS5 name index, with their definitions."""
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ORDER BY name",
        (f"{FTS_TABLE}%",),
    ).fetchall()


def _copy_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608


def _sqlite_rows(rows: list[tuple]) -> list[tuple]:
    """Dates and times as SQLAlchemy writes them on SQLite (naive UTC, microseconds)."""
    out = []
    for row in rows:
        out.append(
            tuple(
                v.strftime("%Y-%m-%d %H:%M:%S.%f")
                if isinstance(v, dt.datetime)
                else v.isoformat()
                if isinstance(v, dt.date)
                else v
                for v in row
            )
        )
    return out


def load(
    target: Target, patients: int, seed: int, as_of: dt.date, visited_share: float = VISITED_SHARE
) -> dict:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 2)
        return now

    t = time.perf_counter()
    create_database(target)
    migrate.upgrade(target.url)
    db = Database.from_url(target.url)
    with db.session() as session:
        load_demo(session, today=as_of)
    t = lap("create_migrate_demo_s", t)

    facilities, taken_cccd, taken_insurance, next_ids, mrn_base = _existing(db)
    generator = ProvinceGenerator(
        seed=seed,
        as_of=as_of,
        facilities=facilities,
        taken_cccd=taken_cccd,
        taken_insurance=taken_insurance,
        visited_share=visited_share,
    )
    first_patient = next_ids["patient"]
    ids = {"identifier": next_ids["patient_identifier"], "coverage": next_ids["coverage"]}
    counts = {"patient": 0, "patient_identifier": 0, "coverage": 0}
    progress = Progress(f"loading {target.backend}", patients)
    generate_s = 0.0

    def batches():
        nonlocal generate_s
        done = 0
        while done < patients:
            n = min(BATCH, patients - done)
            g = time.perf_counter()
            batch = generator.batch(first_patient + done, n, ids, mrn_base + done)
            generate_s += time.perf_counter() - g
            done += n
            yield done, batch

    if target.backend == "postgresql":
        with psycopg.connect(target.conninfo) as conn:
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '512MB'")
            indexes = _pg_indexes(conn)
            for name, _sql in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            conn.commit()
            t = lap("drop_indexes_s", t)
            for done, batch in batches():
                with conn.cursor() as cur:
                    for table, columns, rows in (
                        ("patient", PATIENT_COLUMNS, batch.patients),
                        ("patient_identifier", IDENTIFIER_COLUMNS, batch.identifiers),
                        ("coverage", COVERAGE_COLUMNS, batch.coverages),
                    ):
                        with cur.copy(_copy_sql(table, columns)) as copy:
                            for row in rows:
                                copy.write_row(row)
                        counts[table] += len(rows)
                conn.commit()
                progress.update(done)
            progress.done(patients)
            timings["generate_s"] = round(generate_s, 2)
            t = lap("load_rows_s", t)
            for name, sql in indexes:
                i = time.perf_counter()
                conn.execute(sql)
                conn.commit()
                log(f"  index {name}: {time.perf_counter() - i:.1f}s")
            t = lap("create_indexes_s", t)
            for table in LOADED_TABLES:
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT max(id) FROM {table}))"
                )
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM (ANALYZE) patient, patient_identifier, coverage")
            t = lap("vacuum_analyze_s", t)
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    else:
        assert target.path is not None
        conn = sqlite3.connect(target.path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=OFF")  # during the load only
            conn.execute("PRAGMA cache_size=-524288")  # 512 MB, for the index builds
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA foreign_keys=OFF")  # checked once, after the load
            indexes = _sqlite_indexes(conn)
            for name, _sql in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            # The name's FTS5 index is filled once after the load, not row by row.
            triggers = _sqlite_triggers(conn)
            for name, _sql in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            t = lap("drop_indexes_s", t)
            for done, batch in batches():
                conn.execute("BEGIN")
                for table, columns, rows in (
                    ("patient", PATIENT_COLUMNS, batch.patients),
                    ("patient_identifier", IDENTIFIER_COLUMNS, batch.identifiers),
                    ("coverage", COVERAGE_COLUMNS, batch.coverages),
                ):
                    conn.executemany(_insert_sql(table, columns), _sqlite_rows(rows))
                    counts[table] += len(rows)
                conn.execute("COMMIT")
                progress.update(done)
            progress.done(patients)
            timings["generate_s"] = round(generate_s, 2)
            t = lap("load_rows_s", t)
            for name, sql in indexes:
                i = time.perf_counter()
                conn.execute(sql)
                log(f"  index {name}: {time.perf_counter() - i:.1f}s")
            if triggers:
                i = time.perf_counter()
                conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")  # noqa: S608
                for _name, sql in triggers:
                    conn.execute(sql)
                log(f"  {FTS_TABLE}: {time.perf_counter() - i:.1f}s")
            t = lap("create_indexes_s", t)
            broken = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
            if broken:
                raise SystemExit(f"foreign keys broken after the load: {broken}")
            t = lap("foreign_key_check_s", t)
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            t = lap("analyze_s", t)
        finally:
            conn.close()
        size = target.path.stat().st_size

    # New registrations continue after the province's record numbers.
    with db.session() as session:
        counters.ensure_at_least(session, MRN_COUNTER, mrn_base + patients - 1)
    db.engine.dispose()
    timings["total_s"] = round(time.perf_counter() - started, 2)
    return {
        "backend": target.backend,
        "patients": patients,
        "seed": seed,
        "visited_share": visited_share,
        "as_of": as_of.isoformat(),
        "rows": counts,
        "database_bytes": size,
        "timings": timings,
        "rows_per_s": round(sum(counts.values()) / max(timings["load_rows_s"], 1e-9)),
        "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def save_meta(target: Target, meta: dict) -> None:
    """The generation parameters and load timings, inside the bench database itself, so
    ``bench/search.py`` can report them beside the search figures."""
    text = json.dumps(meta)
    if target.backend == "postgresql":
        with psycopg.connect(target.conninfo) as conn:
            conn.execute(f"CREATE TABLE {META_TABLE} (meta text NOT NULL)")
            conn.execute(f"INSERT INTO {META_TABLE} (meta) VALUES (%s)", [text])  # noqa: S608
    else:
        conn = sqlite3.connect(target.path)
        with conn:
            conn.execute(f"CREATE TABLE {META_TABLE} (meta text NOT NULL)")
            conn.execute(f"INSERT INTO {META_TABLE} (meta) VALUES (?)", [text])  # noqa: S608
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        required=True,
        help="PostgreSQL server (a database his_bench_<N> is created on it) or `sqlite` "
        "(a file under bench/.data/) or sqlite:///path",
    )
    parser.add_argument("--patients", type=int, default=DEFAULT_PATIENTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument(
        "--visited-share",
        type=float,
        default=VISITED_SHARE,
        help="share of patients with a visit in the last year (0: a freshly imported index)",
    )
    parser.add_argument("--drop", action="store_true", help="drop the bench database and stop")
    args = parser.parse_args(argv)
    target = resolve(args.database_url, args.patients)
    if args.drop:
        drop_database(target)
        log(f"dropped {display_url(target)}")
        return
    log(f"creating {display_url(target)} with {args.patients:,} patients (seed {args.seed})")
    meta = load(target, args.patients, args.seed, args.as_of, args.visited_share)
    save_meta(target, meta)
    out = RESULTS_DIR / f"load-{target.backend}-{args.patients}.json"
    write_json(out, meta)
    log(json.dumps(meta["timings"]))
    log(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    log(f"next: .venv/bin/python bench/search.py --database-url {display_url(target)}")


if __name__ == "__main__":
    main()
