"""The ranked patient search, run against a plain Python ranking of the same patients: the
recent-patients window and the look-ups in the rest of the table must give exactly the order
one statement ranking everything would give, on both databases, for any window size."""

import datetime as dt
import random

import pytest
from sqlalchemy import select, update

from his.models import Patient
from his.services.patient_search import SearchQuery, find_ids
from his.text import fold_vi
from tests.factories import FacilityFactory, PatientFactory

FAMILY = ["Nguyễn", "Trần", "Lê", "Nguyễn Phước", "Đặng"]
MIDDLE = ["Văn", "Thị", "Thị Thu", "Anh"]
GIVEN = ["An", "Anh", "Ân", "Thu", "Thuý", "Thúy", "Văn", "Nguyên"]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def patients(db_session):
    """Eighty patients from few names (many share one), a third never seen, some seen at the
    same moment (ties go to the latest registered), a few merged away."""
    rng = random.Random(1)
    facility = FacilityFactory()
    made = []
    for n in range(80):
        name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
        seen = None if n % 3 == 0 else START + dt.timedelta(hours=rng.randrange(40))
        made.append(
            PatientFactory(
                full_name=name,
                search_name=fold_vi(name),
                birth_year=rng.choice([1950, 1990]),
                commune_code=rng.choice(["30280", "30283"]),
                last_visit_at=seen,
                registered_facility_id=facility.id,
            )
        )
    for merged in made[5:8]:
        merged.merged_into_id = made[0].id
    db_session.flush()
    return db_session.scalars(select(Patient)).all()


def expected(patients, query: SearchQuery) -> list[int]:
    """The ranking the search promises, written the plain way."""
    folded = fold_vi(query.q)
    tokens = folded.split()
    rows = []
    for p in patients:
        if p.merged_into_id is not None:
            continue
        if query.birth_year is not None and p.birth_year != query.birth_year:
            continue
        if query.commune_code and p.commune_code != query.commune_code:
            continue
        words = p.search_name.split()
        if not all(any(w.startswith(t) for w in words) for t in tokens):
            continue
        if p.search_name == folded:
            tier = 1
        elif p.search_name.startswith(folded):
            tier = 2
        elif all(t in words for t in tokens):
            tier = 3  # every typed word is a whole word of the name
        else:
            tier = 4
        seen = p.last_visit_at
        recency = (1, 0.0) if seen is None else (0, -seen.timestamp())
        rows.append(((tier, *recency, -p.id), p.id))
    return [pid for _key, pid in sorted(rows)]


QUERIES = [
    SearchQuery(q="nguyen thi anh"),
    SearchQuery(q="an nguyen"),
    SearchQuery(q="nguyen"),
    SearchQuery(q="nguyen thi"),
    SearchQuery(q="NGUYỄN VĂN AN"),
    SearchQuery(q="thuy"),
    SearchQuery(q="an"),
    SearchQuery(q="dang van"),
    SearchQuery(q="phuoc nguyen an"),
    SearchQuery(q="van", birth_year=1950),
    SearchQuery(q="thu", commune_code="30283"),
    SearchQuery(birth_year=1990),
    SearchQuery(q="zzz"),
]


@pytest.mark.parametrize("window", [0, 1, 4, 25, 5_000])
def test_every_window_gives_the_one_ranking(db_session, patients, window):
    dialect = db_session.get_bind().dialect.name

    def execute(stmt, values):
        return db_session.connection().execute(stmt, values).all()

    for query in QUERIES:
        want = expected(patients, query)
        for n in (1, 3, 20, 200):
            found = find_ids(execute, query, dialect, n, window=window)
            assert found == want[:n], (query, n)
    assert expected(patients, SearchQuery(q="an nguyen"))  # the data holds matches


def test_a_renamed_patient_is_found_by_the_new_name_only(db_session, patients):
    """SQLite's word index follows the name through its triggers (window 0: every row is
    looked for outside the window, through that index)."""
    dialect = db_session.get_bind().dialect.name
    target = patients[10]
    old_name = target.search_name
    db_session.execute(
        update(Patient).where(Patient.id == target.id).values(search_name="ha thi xuan")
    )

    def find(q: str) -> list[int]:
        def execute(stmt, values):
            return db_session.connection().execute(stmt, values).all()

        return find_ids(execute, SearchQuery(q=q), dialect, 200, window=0)

    assert find("xuan ha") == [target.id]
    assert target.id not in find(" ".join(reversed(old_name.split())))
    assert find(old_name)  # others still hold the old name's words
