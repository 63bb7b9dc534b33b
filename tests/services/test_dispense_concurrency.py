"""Pharmacists dispensing the last units at the same moment: exactly one succeeds, the
others get a clear conflict, and the stock never goes below zero. On SQLite (threads
sharing one database file) and PostgreSQL (parallel connections), on committed data."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from his.db import Database, make_engine
from his.errors import Conflict
from his.localtime import local_today
from his.models import Dispense, Role, StockLot, StockMovement
from his.services import stock
from his.services.access import Principal
from tests import factories
from tests.pharmacy_data import make_drug, make_lot, make_prescription

DISPENSERS = 8
LAST_UNITS = 10


@dataclass(frozen=True)
class Counter:
    db: Database
    pharmacists: list[Principal]
    prescription_ids: list[int]
    lot_id: int


@pytest.fixture
def counter(backend, fresh_database) -> Iterator[callable]:
    """Builds, on a committed database, a pharmacy with one lot and some prescriptions."""
    databases = fresh_database(backend)
    url = next(databases)
    db = Database(make_engine(url, pool_size=DISPENSERS + 4, max_overflow=4))

    def build(prescriptions: int, units_each: int, same_prescription: bool = False) -> Counter:
        with db.session() as session:
            factories.bind(session)
            facility = factories.FacilityFactory(code="91001")
            users = [
                factories.UserFactory(roles=(Role.PHARMACIST,), facility=facility)
                for _ in range(DISPENSERS)
            ]
            drug = make_drug(session, facility, "MORPHIN10", "Morphin", strength="10 mg")
            lot = make_lot(
                session, facility, drug, "LAST", local_today() + dt.timedelta(days=90), LAST_UNITS
            )
            count = 1 if same_prescription else prescriptions
            made = [
                make_prescription(session, facility, [(drug, units_each)]) for _ in range(count)
            ]
            ids = [p.id for p in made] * (prescriptions if same_prescription else 1)
            pharmacists = [Principal.for_user(u) for u in users]
            return Counter(db, pharmacists, ids, lot.id)

    try:
        yield build
    finally:
        factories.bind(None)
        db.engine.dispose()
        databases.close()


def _run_at_once(counter: Counter) -> list[object]:
    """Every pharmacist dispenses their prescription, all released at the same instant."""
    start = threading.Barrier(len(counter.prescription_ids))

    def attempt(n: int) -> object:
        start.wait()
        try:
            with counter.db.session(write=True) as session:
                record = stock.dispense(
                    session, counter.pharmacists[n], counter.prescription_ids[n]
                )
                return record.id
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(counter.prescription_ids)) as pool:
        return list(pool.map(attempt, range(len(counter.prescription_ids))))


def _stock_after(counter: Counter) -> tuple[Decimal, int, Decimal]:
    with counter.db.session(write=False) as session:
        left = session.scalar(select(StockLot.quantity).where(StockLot.id == counter.lot_id))
        dispenses = session.scalar(select(func.count()).select_from(Dispense))
        moved = session.scalar(
            select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                StockMovement.lot_id == counter.lot_id
            )
        )
    return stock.quantity(left), dispenses, stock.quantity(moved)


def test_only_one_of_many_gets_the_last_units(counter):
    setup = counter(prescriptions=DISPENSERS, units_each=LAST_UNITS)
    results = _run_at_once(setup)
    won = [r for r in results if isinstance(r, int)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1 and len(lost) == DISPENSERS - 1, results
    for refusal in lost:
        assert refusal.status == 409
        assert refusal.code in ("insufficient-stock", "stock-changed")
        assert "Morphin" in refusal.detail
    assert _stock_after(setup) == (Decimal(0), 1, Decimal(-LAST_UNITS))


def test_two_dispenses_of_one_prescription_hand_it_out_once(counter):
    """Plenty of stock, one prescription, two pharmacists pressing the button together."""
    setup = counter(prescriptions=2, units_each=4, same_prescription=True)
    results = _run_at_once(setup)
    assert sum(isinstance(r, int) for r in results) == 1, results
    [refusal] = [r for r in results if isinstance(r, Conflict)]
    assert "already been dispensed in full" in refusal.detail
    assert _stock_after(setup) == (Decimal(LAST_UNITS - 4), 1, Decimal(-4))


def _wait_until_blocked(db: Database, backend: str) -> None:
    """Until the second dispense waits for the first one's lock (PostgreSQL shows it)."""
    if backend != "postgresql":
        time.sleep(0.5)  # SQLite: the second writer waits in BEGIN IMMEDIATE
        return
    # Generous: on a loaded machine (the suite runs in two processes) the second thread
    # can take seconds to reach the lock.
    deadline = time.monotonic() + 45
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            if waiting:
                return
            # pg_stat_activity is read once per transaction: end it, or every later poll
            # sees the first one's picture, taken before the second dispense got there.
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError("the second dispense never waited for the first")


def test_a_dispense_that_planned_on_units_taken_meanwhile_keeps_nothing(counter, backend):
    """The first dispense has taken 6 of the 10 units but not committed; the second plans
    on the 10 it can still see, then must fail as a whole instead of going below zero."""
    setup = counter(prescriptions=2, units_each=6)
    first, second = setup.prescription_ids
    outcome: dict[str, object] = {}

    with setup.db.session(write=True) as session:
        stock.dispense(session, setup.pharmacists[0], first)

        def late_dispense() -> None:
            try:
                with setup.db.session(write=True) as other:
                    outcome["result"] = stock.dispense(other, setup.pharmacists[1], second).id
            except Conflict as exc:
                outcome["result"] = exc

        thread = threading.Thread(target=late_dispense)
        thread.start()
        _wait_until_blocked(setup.db, backend)
    thread.join(timeout=60)

    refusal = outcome["result"]
    assert isinstance(refusal, Conflict), refusal
    # PostgreSQL: the guarded UPDATE matched no row once the first committed. SQLite: the
    # write lock made the second wait, so it planned on what was left and found too little.
    expected = "stock-changed" if backend == "postgresql" else "insufficient-stock"
    assert refusal.code == expected, refusal.detail
    assert _stock_after(setup) == (Decimal(4), 1, Decimal(-6))
