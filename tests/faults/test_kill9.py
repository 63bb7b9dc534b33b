"""kill -9 under load, a short run of ``bench/faults.py``: real ``his hl7 listen`` and
``his hl7 dispatch`` processes (and on PostgreSQL ``his serve``: gunicorn, 2 workers) on a
committed database, an HL7 sender (and receptionists and a cashier) as real clients, a real
MLLP receiver; each process kind is killed with SIGKILL once and restarted during the load.
Afterwards nothing that was answered 2xx or AA is missing or stored twice, no queue or
receipt number repeats, and every outbound message reached the receiver.

PostgreSQL: a web worker (mid-request: its clients' connections drop, its transactions
are rolled back, the gunicorn master forks another), the listener and the dispatcher, under
HTTP and MLLP load. SQLite: the listener and the dispatcher under MLLP load (each message
applied registers a patient and queues outbound ADT). Every process boot imports the whole
application (seconds of CPU each), and this file has to stay within its share of `make
test`'s time: killing the gunicorn master (a full web server restart), and every kind
several times on both databases, is ``bench/faults.py`` (``make bench-faults``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from his.db import Database
from tests import factories
from tests.encounters_data import clinic

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import faults  # bench/faults.py, found through the path above

KINDS = {
    "postgresql": ("web_worker", "mllp_listener", "dispatcher"),
    "sqlite": ("mllp_listener", "dispatcher"),
}


def test_nothing_acknowledged_is_lost_or_duplicated_under_kill_9(backend, fresh_database, tmp_path):
    databases = fresh_database(backend)
    url = next(databases)
    database = Database.from_url(url)
    try:
        with database.session() as session:
            factories.bind(session)
            place = clinic(session)
            setup = faults.Setup(
                receptionist=place.receptionist.username,
                cashier=place.cashier.username,
                password=factories.PASSWORD,
                facility_code=place.facility.code,
                service_code=place.services["GLU"].code,
            )
        database.engine.dispose()
        results = faults.run_faults(
            url,
            setup,
            tmp_path / "logs",
            seconds=8,
            kills=1,
            receptionists=2,
            hl7_senders=1,
            drain_timeout=60,
            kinds=KINDS[backend],
            web=backend == "postgresql",
            peers_with_cli=False,  # added in this process: a CLI process is an app boot
        )
    finally:
        databases.close()

    assert results["kills"] == dict.fromkeys(KINDS[backend], 1)
    acknowledged = results["acknowledged"]
    # The load really ran through the kills: each kind of write and message was answered.
    assert acknowledged["hl7_messages"] > 0
    if backend == "postgresql":
        assert acknowledged["patients"] > 0 and acknowledged["visits"] > 0
        assert acknowledged["payments"] > 0
    assert results["requests"]["unexpected_refusals"] == []
    # Dropped connections are retried; a 500 would be a bug, not a fault being survived.
    assert "500" not in results["requests"]["answers"]
    assert results["lost"]["total"] == 0, results["lost"]
    assert results["duplicated"]["total"] == 0, results["duplicated"]
    outbound = results["outbound"]
    assert outbound["drained"] and outbound["queued"] > 0
    assert outbound["delivered"] == outbound["queued"] == outbound["statuses"]["sent"]
