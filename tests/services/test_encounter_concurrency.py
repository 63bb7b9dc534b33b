"""Two doctors of one room pressing at the same moment: "call next" calls different
patients, and "start examination" on the same visit opens one encounter, not two."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from his.db import Database, make_engine
from his.errors import Conflict, NotFound
from his.localtime import local_today
from his.models import Encounter, Role, VisitStatus
from his.services import encounters as svc
from his.services.access import Principal
from tests import factories

PATIENTS = 12


def _setup(db: Database):
    with db.session() as session:
        factories.bind(session)
        facility = factories.FacilityFactory()
        room = factories.RoomFactory(department__facility=facility)
        doctors = [factories.UserFactory(roles=(Role.DOCTOR,), facility=facility) for _ in range(2)]
        visits = [
            factories.VisitFactory(
                facility_id=facility.id,
                patient_id=factories.PatientFactory().id,
                room_id=room.id,
                queue_date=local_today(),
                queue_number=n,
                status=VisitStatus.WAITING,
            )
            for n in range(1, PATIENTS + 1)
        ]
        session.flush()
        principals = [Principal.for_user(d) for d in doctors]
        ids = (room.id, [v.id for v in visits])
    factories.bind(None)
    return principals, ids


def test_concurrent_call_next_and_start(backend, fresh_database):
    databases = fresh_database(backend)
    url = next(databases)
    db = Database(make_engine(url, pool_size=8, max_overflow=4))
    try:
        principals, (room_id, visit_ids) = _setup(db)

        def call(n: int) -> int | None:
            try:
                with db.session(write=True) as session:
                    return svc.call_next(session, principals[n % 2], room_id).id
            except NotFound:
                return None

        with ThreadPoolExecutor(max_workers=4) as pool:
            called = list(pool.map(call, range(PATIENTS + 4)))
        got = [v for v in called if v is not None]
        assert sorted(got) == sorted(visit_ids)  # everyone called once, nobody twice

        def start(n: int) -> str:
            try:
                with db.session(write=True) as session:
                    svc.start_examination(session, principals[n % 2], visit_ids[0])
                    return "started"
            except Conflict:
                return "refused"

        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(start, range(4)))
        assert outcomes.count("started") == 1
        with db.session(write=False) as session:
            count = session.scalar(select(func.count()).where(Encounter.visit_id == visit_ids[0]))
        assert count == 1
    finally:
        db.engine.dispose()
        next(databases, None)
