"""The database connection lost and restored under a running server: requests fail quickly
and cleanly (503 + Retry-After, problem+json or OperationOutcome, never a 500 or a hang),
the MLLP listener never acknowledges what it could not store, and both work again once the
database is back, without a restart.

PostgreSQL only: the loss is real, made by a TCP forwarder (``CuttableProxy``) between the
app and the server that closes every connection and refuses (or leaves unanswered) new
ones. SQLite is a file in the app's own process: there is no connection to lose. Its
"database unavailable" case, a file locked by another writer, is mapped to the same 503
(``his.db.database_unavailable``) but is not tested here: the app waits out its 10 s busy
timeout first, and that wait is the intended behaviour.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from his import create_app
from his.db import CONNECT_TIMEOUT, Database
from his.hl7v2 import dispatcher
from his.hl7v2.ack import parse_ack
from his.hl7v2.server import Hl7Server
from his.models import Facility, Hl7Inbound, Hl7Outbound, OutboundStatus, Patient, Role
from tests import databases, factories
from tests.conftest import settings_for
from tests.faults.proxy import CuttableProxy
from tests.hl7v2.outbound_data import add_peer
from tests.hl7v2.peer import LoopThread, RawSender, ReceiverPeer, msh_fields

pytestmark = pytest.mark.skipif(
    databases.postgres_admin_url() is None,
    reason=f"needs PostgreSQL: set {databases.POSTGRES_ENV}",
)

# An answer while the database is away must come at once when the server refuses, and
# within the connect timeout (plus the request's own work) when it does not answer at all.
QUICK = 2.0
BOUNDED = CONNECT_TIMEOUT + 3.0


class Served:
    def __init__(self, base: str, proxy: CuttableProxy, direct: Database, mllp_port: int):
        self.base, self.proxy, self.direct, self.mllp_port = base, proxy, direct, mllp_port
        self.token = ""
        self.database: Database | None = None  # the app's, through the proxy
        self.settings = None

    def call(self, method: str, path: str, body: dict | None = None):
        """(status, headers, parsed body, seconds taken) of one real HTTP request."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, head, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, head, raw = error.code, error.headers, error.read()
        return status, head, json.loads(raw), time.monotonic() - started

    def count(self, model, *where) -> int:
        with self.direct.session(write=False) as session:
            return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture(scope="module")
def served(fresh_database) -> Iterator[Served]:
    databases_ = fresh_database("postgresql")
    url = next(databases_)
    direct = Database.from_url(url)  # the test's own view of the data, not through the proxy
    with direct.session() as session:
        factories.bind(session)
        user = factories.UserFactory(username="reception.fault", roles=(Role.RECEPTIONIST,))
        username = user.username
    parsed = make_url(url)
    proxy = CuttableProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    through_proxy = parsed.set(host="127.0.0.1", port=proxy.port)
    settings = settings_for(
        through_proxy.render_as_string(hide_password=False), HIS_HL7_UNKNOWN_SENDERS="store"
    )
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    database = app.extensions["his_db"]
    hl7 = Hl7Server(app, database, settings)
    loop = LoopThread()
    listener = loop.run(hl7.start("127.0.0.1", 0))
    running = Served(f"http://127.0.0.1:{server.server_port}", proxy, direct, listener.port)
    running.database, running.settings = database, settings
    try:
        status, _, body, _ = running.call(
            "POST", "/api/v1/auth/token", {"username": username, "password": factories.PASSWORD}
        )
        assert status == 201, body
        running.token = body["access_token"]
        yield running
    finally:
        proxy.restore()
        loop.run(hl7.stop(listener), timeout=30)
        loop.stop()
        server.shutdown()
        proxy.close()
        database.engine.dispose()
        direct.engine.dispose()
        databases_.close()


def new_patient(name: str) -> dict:
    return {"full_name": name, "sex": "female", "birth_date": "1990-03-04"}


def adt(control: str) -> bytes:
    """An ADT^A04 from a sender no peer names: stored (HIS_HL7_UNKNOWN_SENDERS=store), AA."""
    return (
        "MSH|^~\\&|FAULTLIS|BV|HIS|HIS|20260301083015+0700||ADT^A04^ADT_A01|"
        f"{control}|P|2.5\rEVN|A04|20260301083015+0700\r"
        "PID|1||F-1^^^FAULTLIS^PI||Lê^Thị Mất Kết Nối||19900304|F\r"
    ).encode()


def assert_unavailable_problem(status, headers, body, seconds, limit):
    assert status == 503, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert int(headers["Retry-After"]) > 0
    assert body["type"].endswith("/database-unavailable")
    assert body["status"] == 503
    # Neither SQL nor a traceback nor the server's address leaks out.
    text = json.dumps(body)
    assert "SELECT" not in text and "Traceback" not in text and "5432" not in text
    assert seconds < limit, f"answered after {seconds:.1f} s"


def assert_unavailable_outcome(status, headers, body, seconds, limit):
    assert status == 503, body
    assert headers["Content-Type"].startswith("application/fhir+json")
    assert int(headers["Retry-After"]) > 0
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert seconds < limit, f"answered after {seconds:.1f} s"


def test_rest_and_fhir_answer_503_while_the_database_is_away_and_recover(served):
    status, _, body, _ = served.call("POST", "/api/v1/patients", new_patient("Trần Thị Trước"))
    assert status == 201, body
    assert served.call("GET", "/fhir/Patient?name=Tran")[0] == 200

    served.proxy.cut()  # the database server stopped: pooled connections die, connects refused
    try:
        assert_unavailable_problem(*served.call("GET", "/api/v1/patients?q=Tran"), QUICK)
        assert_unavailable_problem(
            *served.call("POST", "/api/v1/patients", new_patient("Trần Thị Trong")), QUICK
        )
        assert_unavailable_outcome(*served.call("GET", "/fhir/Patient?name=Tran"), QUICK)
        status, _, body, _ = served.call("GET", "/readyz")
        assert (status, body["database"]) == (503, "unreachable")

        # A host gone from the network: nothing refuses, nothing answers. The connect
        # timeout bounds the wait instead of the kernel's minutes-long TCP retries.
        served.proxy.silence()
        assert_unavailable_problem(*served.call("GET", "/api/v1/patients?q=Tran"), BOUNDED)
    finally:
        served.proxy.restore()

    # The same server, not restarted: stale pooled connections are replaced on checkout.
    status, _, body, _ = served.call("GET", "/api/v1/patients?q=Tran")
    assert status == 200, body
    status, _, body, _ = served.call("POST", "/api/v1/patients", new_patient("Trần Thị Sau"))
    assert status == 201, body
    assert served.call("GET", "/fhir/Patient?name=Tran")[0] == 200
    # Written: the patients answered 201, never the one answered 503.
    names = ("Trần Thị Trước", "Trần Thị Trong", "Trần Thị Sau")
    assert [served.count(Patient, Patient.full_name == n) for n in names] == [1, 0, 1]


def test_mllp_listener_never_acknowledges_what_it_could_not_store(served):
    control = f"FAULT{time.time_ns() % 10**12}"
    stored = Hl7Inbound.control_id == control
    served.proxy.cut()
    try:
        with RawSender(served.mllp_port, timeout=15) as peer:
            peer.send_frame(adt(control))
            refused = parse_ack(peer.read_frame())
        assert refused.code == "AE"  # "send it again": the sender keeps the message
        assert refused.control_id_acked == control
        assert served.count(Hl7Inbound, stored) == 0
    finally:
        served.proxy.restore()

    # The same listener, not restarted, takes the sender's retry.
    with RawSender(served.mllp_port, timeout=15) as peer:
        peer.send_frame(adt(control))
        accepted = parse_ack(peer.read_frame())
    assert (accepted.code, accepted.control_id_acked) == ("AA", control)
    assert served.count(Hl7Inbound, stored) == 1


def test_dispatcher_keeps_running_through_the_outage_and_sends_afterwards(served):
    lines: list[str] = []
    stop = threading.Event()
    with ReceiverPeer() as receiver:
        with served.direct.session() as session:
            facility = session.scalars(select(Facility)).first()
            peer_id = add_peer(session, facility, name="LOSSRX", port=receiver.port).id
        loop = threading.Thread(
            target=dispatcher.run,
            args=(served.database, served.settings),
            kwargs={
                "loop": True,
                "interval": 0.1,
                "with_parent": False,
                "echo": lines.append,
                "should_stop": stop.is_set,
            },
        )
        loop.start()
        try:
            served.proxy.cut()
            # Queued while the dispatcher cannot reach the database (the test's own
            # connection goes round the proxy).
            control = f"LOSS{time.time_ns() % 10**12}"
            with served.direct.session() as session:
                session.add(
                    Hl7Outbound(
                        peer_id=peer_id,
                        event="A31",
                        message_type="ADT^A31^ADT_A05",
                        control_id=control,
                        patient_key="loss-1",
                        text=(
                            "MSH|^~\\&|HIS|91001|LIS|LIS|20260302080000+0700||ADT^A31^ADT_A05|"
                            f"{control}|P|2.5.1\rPID|1||loss-1^^^91001^MR\r"
                        ),
                    )
                )
            deadline = time.monotonic() + 5
            while not any("round failed" in line for line in lines):
                assert time.monotonic() < deadline, lines
                time.sleep(0.05)
            assert receiver.received == []
        finally:
            served.proxy.restore()
        try:
            (message,) = receiver.wait_for(1, timeout=15)
        finally:
            stop.set()
            loop.join(timeout=15)
    assert msh_fields(message)[9].decode() == control
    assert (
        served.count(
            Hl7Outbound,
            Hl7Outbound.control_id == control,
            Hl7Outbound.status == OutboundStatus.SENT,
        )
        == 1
    )
