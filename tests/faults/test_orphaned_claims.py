"""A dispatcher killed while holding claims: the next one started on the same host takes its
rows back at once (``release_orphaned``) instead of waiting out the lease (2 minutes and
more), and never takes the rows of a dispatcher that still runs or runs elsewhere."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys

import pytest

from his.db import Database
from his.hl7v2 import dispatcher
from his.models import Hl7Outbound
from tests.factories import FacilityFactory
from tests.hl7v2.outbound_data import add_peer

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def database(engine, session_factory) -> Database:
    return Database(engine, session_factory)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claims_of_a_killed_local_dispatcher_are_released_and_only_those(db_session, database):
    host = socket.gethostname()
    peer = add_peer(db_session, FacilityFactory())
    holders = {
        "killed": f"{host}:{_dead_pid()}:aaaaaa",
        "running": f"{host}:{os.getppid()}:bbbbbb",  # the test runner's parent: alive
        "elsewhere": f"other-host:{_dead_pid()}:cccccc",
    }
    rows = {}
    for n, (name, holder) in enumerate(holders.items()):
        rows[name] = Hl7Outbound(
            peer_id=peer.id,
            event="A31",
            message_type="ADT^A31^ADT_A05",
            control_id=f"ORPHAN{n}",
            patient_key=f"p{n}",
            text="MSH|^~\\&|HIS|91001|LIS|LIS|20260302080000+0700||ADT^A31^ADT_A05|x|P|2.5.1\r",
            claimed_by=holder,
            claimed_until=T0 + dt.timedelta(minutes=2),
        )
    db_session.add_all(rows.values())
    db_session.commit()

    assert dispatcher.release_orphaned(database, now=T0) == 1
    db_session.expire_all()
    assert rows["killed"].claimed_by is None and rows["killed"].claimed_until is None
    assert rows["running"].claimed_by == holders["running"]
    assert rows["elsewhere"].claimed_by == holders["elsewhere"]
    # Released means due: the next round takes the row at once.
    due = db_session.scalars(dispatcher.due_rows(T0)).all()
    assert [r.control_id for r in due] == ["ORPHAN0"]
