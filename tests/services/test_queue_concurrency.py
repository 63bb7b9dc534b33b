"""100 registrations at once: every patient gets a different queue number, with no gap,
on SQLite (threads sharing one database file) and PostgreSQL (parallel connections)."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from his.db import Database, make_engine
from his.models import Department, Facility, Patient, Role, Room, Visit
from his.services.access import Principal
from his.services.demo import load_demo
from his.services.visits import VisitRequest, open_visit

REGISTRATIONS = 100


def test_queue_numbers_under_concurrency(backend, fresh_database):
    databases = fresh_database(backend)
    url = next(databases)
    # A pool as large as the burst, so every thread holds its own connection at once.
    db = Database(make_engine(url, pool_size=20, max_overflow=10))
    try:
        with db.session() as session:
            load_demo(session)
            hospital = session.scalar(select(Facility).where(Facility.code == "91001"))
            room_id = session.scalar(
                select(Room.id)
                .join(Department)
                .where(Department.facility_id == hospital.id)
                .order_by(Room.id.desc())
            )
            patient_ids = list(
                session.scalars(select(Patient.id).order_by(Patient.id).limit(REGISTRATIONS))
            )
            facility_id = hospital.id
        acting = Principal(
            user_id=None,
            username="burst",
            roles=frozenset({Role.RECEPTIONIST}),
            facility_id=facility_id,
        )

        def register(patient_id: int) -> tuple[int, str]:
            with db.session(write=True) as session:
                visit = open_visit(
                    session, acting, VisitRequest(patient_id=patient_id, room_id=room_id)
                )
                return visit.queue_number, visit.visit_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(register, patient_ids))

        numbers = sorted(n for n, _code in results)
        assert numbers == list(range(1, REGISTRATIONS + 1))
        assert len({code for _n, code in results}) == REGISTRATIONS
        with db.session(write=False) as session:
            stored = sorted(
                session.scalars(select(Visit.queue_number).where(Visit.room_id == room_id))
            )
        assert stored == list(range(1, REGISTRATIONS + 1))
    finally:
        db.engine.dispose()
        databases.close()
