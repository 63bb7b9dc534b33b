"""kill -9 under load: nothing acknowledged is lost, nothing is stored twice.

    .venv/bin/python bench/faults.py                 # PostgreSQL (HIS_BENCH_POSTGRES_URL or local)
    .venv/bin/python bench/faults.py --sqlite
    .venv/bin/python bench/faults.py --seconds 60 --kills 5

The database is a fresh one (PostgreSQL: ``his_faults`` on the server given, dropped first;
SQLite: ``bench/.data/his_faults.sqlite``), migrated (``his db upgrade``) and given the demo
(``his demo``). Then, as real processes, the way ``make run`` starts them: ``his serve``
(gunicorn, 2 workers), ``his hl7 listen`` and ``his hl7 dispatch --loop``; and in this
script, a receiving HL7 system (an MLLP server registered with ``his hl7 peer add`` for ADT)
that records every control id it is sent and answers AA, repeats included (it deduplicates
by control id: a repeat is counted, not applied).

Load, for ``--seconds``:

* receptionists (threads, HTTP keep-alive) register a new patient (unique CCCD) and open a
  visit in one of the hospital's rooms (a queue number);
* a cashier charges a procedure on some of those visits and takes the payment (a receipt
  number);
* HL7 senders send ADT^A28 (a new person) over MLLP with unique MSH-10s to the listener,
  from a peer in apply mode (each one registers a patient).

Every write answered 2xx and every message answered AA/CA is recorded with what the answer
said. Meanwhile a killer sends SIGKILL, ``--kills`` times each, to a gunicorn worker (the
gunicorn master starts another), the gunicorn master (restarted, its orphaned workers given
5 s to finish and then killed, as a service manager would), the MLLP listener and the
dispatcher (both restarted at once). Clients behave like real ones: a request or message
without an answer is sent again; a 409 that names the record a lost answer had created
("already registered", "already waiting", "already paid") tells them the first try landed.

Then the outbox is drained and the database checked:

* lost: a 2xx patient, visit or payment missing or different; an acknowledged message not
  stored (or, in apply mode, its patient missing); an outbound message not delivered;
* duplicated: a patient (by CCCD), an open visit (patient, room, day), an HL7 message (by
  sender and MSH-10), a patient applied from HL7 (by its LIS id), a queue number (room,
  day) or a receipt number (facility) present twice; an outbound message recorded as sent
  twice;
* redelivered: outbound messages the receiver saw more than once (a dispatcher killed
  between sending and recording; allowed, the receiver drops repeats), reported apart.

Results: ``bench/results/faults-<backend>.json`` (printed too). Exit status 1 when anything
was lost or duplicated.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import itertools
import json
import os
import random
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import child_pids
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from common import DATA_DIR, RESULTS_DIR, log, write_json  # noqa: E402

HIS = str(Path(sys.executable).with_name("his"))
DB_NAME = "his_faults"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
KINDS = ("web_worker", "web_master", "mllp_listener", "dispatcher")
SENDER_APP, SENDER_FACILITY = "FAULTLIS", "BV"
START, END = b"\x0b", b"\x1c\r"
# A request or message unanswered this long (the server never came back) ends its client.
GIVE_UP = 300.0
FAMILIES = ("Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Võ", "Đặng", "Bùi")
GIVENS = ("An", "Bình", "Cường", "Dung", "Hà", "Hùng", "Lan", "Mai", "Nam", "Trang")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the receiving HL7 system ----------------------------------------------------------------


class Receiver(socketserver.ThreadingTCPServer):
    """An MLLP server that records each control id it receives and answers AA, to repeats
    too: it deduplicates by control id (a repeat is counted, never applied twice)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.seen: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _ReceiverHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        buffer = b""
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while END in buffer:
                frame, buffer = buffer.split(END, 1)
                message = frame.split(START, 1)[-1]
                msh = message.split(b"\r", 1)[0].decode("utf-8", "replace").split("|")
                control = msh[9] if len(msh) > 9 else ""
                with self.server.lock:  # type: ignore[attr-defined]
                    self.server.seen[control] += 1  # type: ignore[attr-defined]
                ack = (
                    f"MSH|^~\\&|FAULTRX|RX|{msh[2]}|{msh[3]}|{time.strftime('%Y%m%d%H%M%S')}"
                    f"||ACK|R{control}|P|2.5.1\rMSA|AA|{control}\r"
                )
                try:
                    self.request.sendall(START + ack.encode() + END)
                except OSError:
                    return


# --- the processes ----------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Supervised:
    """One of our processes, started again after each kill as a service manager would."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path, ready: Callable):
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log = (logs / f"{name}.log").open("ab")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own command)
            self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=BENCH_DIR.parent
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 90
        while not self.ready():
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited at start: see {self.log.name}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} not ready after 90 s: see {self.log.name}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def http_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    return ready


def tcp_ready(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    return ready


# --- the clients ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients were told, and how often they had to try again."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    patients: dict[int, str] = field(default_factory=dict)  # id → CCCD, answered 201
    visits: dict[int, tuple[int, int, str, int]] = field(default_factory=dict)
    payments: dict[int, str] = field(default_factory=dict)  # id → receipt number
    landed_without_answer: collections.Counter = field(default_factory=collections.Counter)
    retries: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    refused: list[str] = field(default_factory=list)  # unexpected 4xx: the bench's own fault
    hl7_acked: dict[str, str] = field(default_factory=dict)  # MSH-10 → AA/CA
    hl7_sent: int = 0
    hl7_error_answers: collections.Counter = field(default_factory=collections.Counter)

    def count(self, counter: str, key: str) -> None:
        with self.lock:
            getattr(self, counter)[key] += 1


class Api:
    """One client's keep-alive connection; ``call`` tries until it gets an answer that is not
    a connection error or a 5xx (the server or its database is away: try again)."""

    def __init__(self, port: int, token: str, tally: Tally, pause: float):
        self.port, self.token, self.tally, self.pause = port, token, tally, pause
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        payload = json.dumps(body) if body is not None else None
        kind = path.split("/")[3] if path.count("/") >= 3 else path
        deadline = time.monotonic() + GIVE_UP
        time.sleep(self.pause)  # a person at a desk, not a flood: restarts get CPU too
        while True:
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, payload, headers)
                response = self.conn.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                self.tally.count("statuses", "connection error")
                self._reset()
                status, data = 0, b""
            if status:
                self.tally.count("statuses", str(status))
            if status and status < 500:
                return status, json.loads(data) if data else {}
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path}: no answer in {GIVE_UP:.0f} s")
            self.tally.count("retries", kind)
            if status >= 500:
                self._reset()  # the worker that answered may be going away
            time.sleep(0.2)

    def _reset(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


class People:
    """Unique new patients (the database is a fresh one): the CCCD is 12 digits, province
    089 (An Giang), the century/sex digit and year of birth, then the serial number."""

    def __init__(self) -> None:
        self.serial = itertools.count(1)
        self.lock = threading.Lock()

    def next(self, rng: random.Random) -> dict:
        with self.lock:
            n = next(self.serial)
        year = rng.randint(1950, 1999)
        female = rng.random() < 0.5
        family, given = rng.choice(FAMILIES), rng.choice(GIVENS)
        middle = "Thị" if female else "Văn"
        return {
            "full_name": f"{family} {middle} {given}",
            "sex": "female" if female else "male",
            "birth_date": f"{year}-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "cccd": f"089{1 if female else 0}{year % 100:02d}{n:06d}",
            "phone": f"09{n:08d}",
            "allow_possible_duplicate": True,  # few names, many patients
        }


def receptionist(
    api: Api,
    people: People,
    rooms: list[int],
    tally: Tally,
    stop: threading.Event,
    rng: random.Random,
    visits_out: list,
) -> None:
    while not stop.is_set():
        body = people.next(rng)
        status, answer = api.call("POST", "/api/v1/patients", body)
        if status == 201:
            patient_id = answer["id"]
            with tally.lock:
                tally.patients[patient_id] = body["cccd"]
        elif status == 409 and "existing_patient" in answer:
            patient_id = answer["existing_patient"]["id"]  # a lost answer: it had landed
            tally.count("landed_without_answer", "patient")
        else:
            tally.refused.append(f"patient {status}: {str(answer)[:200]}")
            continue
        room = rng.choice(rooms)
        status, answer = api.call(
            "POST", "/api/v1/visits", {"patient_id": patient_id, "room_id": room, "payment": "fee"}
        )
        if status == 201:
            with tally.lock:
                tally.visits[answer["id"]] = (
                    patient_id,
                    room,
                    answer["queue_date"],
                    answer["queue_number"],
                )
            visits_out.append(answer["id"])
        elif status == 409 and "visit_id" in answer.get("errors", {}):
            tally.count("landed_without_answer", "visit")
            visits_out.append(int(answer["errors"]["visit_id"][0]))
        else:
            tally.refused.append(f"visit {status}: {str(answer)[:200]}")


def cashier(
    api: Api, service_code: str, tally: Tally, stop: threading.Event, visits_in: list
) -> None:
    while not stop.is_set():
        if not visits_in:
            time.sleep(0.05)
            continue
        visit_id = visits_in.pop(0)
        status, answer = api.call(
            "POST",
            f"/api/v1/visits/{visit_id}/charges",
            {"code": service_code, "quantity": "1", "kind": "service"},
        )
        if status != 201:
            tally.refused.append(f"charge {status}: {str(answer)[:200]}")
            continue
        for _ in range(5):  # the balance changes when a lost charge had landed too
            status, bill = api.call("GET", f"/api/v1/visits/{visit_id}/bill")
            if status != 200 or not bill.get("open_bill_id"):
                break
            status, answer = api.call(
                "POST",
                f"/api/v1/bills/{bill['open_bill_id']}/payments",
                {"method": "cash", "amount": bill["balance"]},
            )
            if status == 201:
                payment = answer.get("payment")
                if payment:
                    with tally.lock:
                        tally.payments[payment["id"]] = payment["receipt_number"]
                break
            if status == 409:  # paid: the answer to an earlier try was lost
                tally.count("landed_without_answer", "payment")
                break
            if status != 422:
                tally.refused.append(f"payment {status}: {str(answer)[:200]}")
                break


def adt_a28(control: str, n: int, rng: random.Random) -> bytes:
    year = rng.randint(1950, 2010)
    sex = rng.choice("MF")
    name = f"{rng.choice(FAMILIES)}^{'Thị' if sex == 'F' else 'Văn'} {rng.choice(GIVENS)}"
    now = time.strftime("%Y%m%d%H%M%S")
    return (
        f"MSH|^~\\&|{SENDER_APP}|{SENDER_FACILITY}|HIS|HIS|{now}+0700||ADT^A28^ADT_A05|"
        f"{control}|P|2.5|||||VNM|UNICODE UTF-8\r"
        f"EVN|A28|{now}+0700\r"
        f"PID|1||FL{control}^^^{SENDER_APP}^PI||{name}^^^^^L||{year}0{1 + n % 9}1{n % 9}|{sex}\r"
    ).encode()


def hl7_sender(
    port: int,
    prefix: str,
    tally: Tally,
    stop: threading.Event,
    rng: random.Random,
    serial: itertools.count,
    pause: float,
) -> None:
    """Sends each message until it is acknowledged (AA/CA), as an interface engine does:
    a lost connection or a missing ACK means send it again with the same MSH-10."""
    sock: socket.socket | None = None
    while not stop.is_set():
        n = next(serial)
        control = f"{prefix}{n:06d}"
        message = START + adt_a28(control, n, rng) + END
        with tally.lock:
            tally.hl7_sent += 1
        error_answers = 0
        deadline = time.monotonic() + GIVE_UP
        time.sleep(pause)
        while True:
            if time.monotonic() > deadline:
                tally.refused.append(f"hl7 {control}: no ACK in {GIVE_UP:.0f} s")
                return
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.settimeout(15)
                sock.sendall(message)
                reply = b""
                while END not in reply:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed before the ACK")
                    reply += chunk
            except OSError:
                tally.count("retries", "hl7")
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.2)
                continue
            msa = next((s for s in reply.split(b"\r") if s.lstrip(START).startswith(b"MSA")), b"")
            fields = msa.decode("utf-8", "replace").split("|")
            code = fields[1] if len(fields) > 1 else ""
            acked = fields[2] if len(fields) > 2 else ""
            if code in ("AA", "CA") and acked == control:
                with tally.lock:
                    tally.hl7_acked[control] = code
                break
            tally.count("hl7_error_answers", code or "unreadable")
            error_answers += 1
            if code in ("AR", "CR") or error_answers >= 20:
                tally.refused.append(f"hl7 {control} {code}: {reply[:300]!r}")
                break
            time.sleep(0.3)  # AE/CE: not stored; the sender keeps it and tries again
    if sock is not None:
        sock.close()


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Setup:
    """What the load needs in the database: logins, the facility's rooms, a procedure code."""

    receptionist: str
    cashier: str | None
    password: str
    facility_code: str
    service_code: str | None


def his(env: dict, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 (our own command)
        [HIS, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"his {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def token(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        "/api/v1/auth/token",
        json.dumps({"username": username, "password": password}),
        {"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    if response.status != 201:
        raise SystemExit(f"login of {username} failed: {response.status} {body}")
    return body["access_token"]


def run_faults(
    database_url: str,
    setup: Setup,
    workdir: Path,
    *,
    seconds: float = 40.0,
    kills: int = 3,
    receptionists: int = 4,
    hl7_senders: int = 2,
    workers: int = 2,
    drain_timeout: float = 120.0,
    seed: int = 9,
    kinds: tuple[str, ...] = KINDS,
    web: bool = True,
    peers_with_cli: bool = True,
    pause: float = 0.05,
) -> dict:
    """Starts the processes on ``database_url`` (migrated, with ``setup``'s users and
    facility), drives the load while killing, drains, checks; the results as a dict."""
    rng = random.Random(seed)  # noqa: S311 (reproducible load, not secrets)
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = int(time.time()) % 100_000
    web_port, mllp_port = free_port(), free_port()
    env = {
        **os.environ,
        "HIS_DATABASE_URL": database_url,
        "HIS_ENV": "development",
        "HIS_SECRET_KEY": "faults-" + "k" * 40,
        "HIS_COOKIE_SECURE": "false",
        "HIS_HOST": "127.0.0.1",
        "HIS_PORT": str(web_port),
        "HIS_WEB_WORKERS": str(workers),
        "HIS_WEB_THREADS": "4",
        "HIS_MLLP_HOST": "127.0.0.1",
        "HIS_MLLP_PORT": str(mllp_port),
        "HIS_HL7_ACK_TIMEOUT_SECONDS": "5",
        "HIS_HL7_RETRY_MAX_SECONDS": "2",
        "HIS_LOG_LEVEL": "WARNING",
        "HIS_LOG_FORMAT": "json",
        "HIS_LOGIN_RATE_LIMIT": "1000 per minute",
    }
    receiver = Receiver()
    processes = {
        "listener": Supervised(
            "listener", [HIS, "hl7", "listen"], env, workdir, tcp_ready(mllp_port)
        ),
        "dispatcher": Supervised(
            "dispatcher",
            [HIS, "hl7", "dispatch", "--loop", "--interval", "0.2"],
            env,
            workdir,
            lambda: True,
        ),
    }
    if web:
        processes["web"] = Supervised("web", [HIS, "serve"], env, workdir, http_ready(web_port))
    elif {"web_worker", "web_master"} & set(kinds):
        raise ValueError("web kills need the web server")
    tally = Tally()
    kills_done: collections.Counter[str] = collections.Counter()
    restart_seconds: dict[str, list[float]] = collections.defaultdict(list)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    engine = create_engine(database_url)
    try:
        # The processes boot (seconds each: they import the app) while the peers are
        # added: the listener and the dispatcher look peers up per message, not at start.
        for process in processes.values():
            process.launch()
        wanted = peers(receiver.port, setup.facility_code)
        add_peers(env, database_url, wanted, cli=peers_with_cli)
        for process in processes.values():
            process.wait_ready()
        log(f"processes ready: {', '.join(processes)}")
        # Clients give up on one request only long after the load (a stuck server is a finding).
        if web:
            rooms_sql = (
                "SELECT room.id FROM room JOIN department ON department.id = room.department_id "
                "JOIN facility ON facility.id = department.facility_id "
                "WHERE facility.code = :code ORDER BY room.id LIMIT 4"
            )
            with engine.connect() as conn:
                rooms = list(conn.execute(text(rooms_sql), {"code": setup.facility_code}).scalars())
            if not rooms:
                raise SystemExit(f"no rooms at facility {setup.facility_code}")
            reception_token = token(web_port, setup.receptionist, setup.password)
            cashier_token = token(web_port, setup.cashier, setup.password) if setup.cashier else ""
            people = People()
            visits_for_cashier: list[int] = []
            for n in range(receptionists):
                api = Api(web_port, reception_token, tally, pause)
                threads.append(
                    threading.Thread(
                        target=receptionist,
                        args=(
                            api,
                            people,
                            rooms,
                            tally,
                            stop,
                            random.Random(seed + n),  # noqa: S311
                            visits_for_cashier,
                        ),
                    )
                )
            if setup.cashier and setup.service_code:
                api = Api(web_port, cashier_token, tally, pause)
                threads.append(
                    threading.Thread(
                        target=cashier,
                        args=(api, setup.service_code, tally, stop, visits_for_cashier),
                    )
                )
        serial = itertools.count(1)
        for n in range(hl7_senders):
            threads.append(
                threading.Thread(
                    target=hl7_sender,
                    args=(
                        mllp_port,
                        f"F{run_id}",
                        tally,
                        stop,
                        random.Random(seed + 100 + n),  # noqa: S311
                        serial,
                        pause,
                    ),
                )
            )
        for thread in threads:
            thread.start()
        started = time.monotonic()

        # The kills: each kind ``kills`` times, in a shuffled order, with about ``gap``
        # seconds of load between one process being back and the next kill, and the last
        # 15 % of ``seconds`` free of kills: ``seconds`` of load with everything up, plus
        # the restarts.
        plan = [kind for kind in kinds for _ in range(kills)]
        rng.shuffle(plan)
        gap = seconds * 0.85 / max(1, len(plan))
        for kind in plan:
            time.sleep(gap * rng.uniform(0.5, 1.5))
            began = time.monotonic()
            kill(kind, processes, rng)
            kills_done[kind] += 1
            restart_seconds[kind].append(round(time.monotonic() - began, 2))
            log(
                f"  {time.monotonic() - started:5.1f}s  kill -9 {kind}"
                f" (back in {restart_seconds[kind][-1]:.1f}s)"
            )
        time.sleep(seconds * 0.15)
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
        load_seconds = time.monotonic() - started
        log(f"load done after {load_seconds:.0f}s; draining the outbox")
        drained, drain_took = drain(engine, drain_timeout)
        log(f"outbox {'drained' if drained else 'NOT drained'} in {drain_took:.0f}s")
    finally:
        stop.set()
        for process in processes.values():
            process.stop()
        receiver.shutdown()
    results = check(engine, tally, receiver, setup)
    engine.dispose()
    results["kills"] = dict(kills_done)
    results["restart_seconds"] = {k: v for k, v in restart_seconds.items()}
    results["load_seconds"] = round(load_seconds, 1)
    results["outbound"]["drained"] = drained
    results["outbound"]["drain_seconds"] = round(drain_took, 1)
    results["requests"] = {
        "answers": dict(tally.statuses),
        "retries": dict(tally.retries),
        "landed_without_answer": dict(tally.landed_without_answer),
        "unexpected_refusals": tally.refused[:20],
        "unexpected_refusal_count": len(tally.refused),
    }
    return results


def peers(receiver_port: int, facility: str) -> list[dict]:
    """The receiving system (ADT goes to it) and the sending LIS (its messages applied)."""
    return [
        {
            "name": "faultrx",
            "host": "127.0.0.1",
            "port": receiver_port,
            "events": "ADT",
            "version": "2.5.1",
            "facility_code": facility,
        },
        {
            "name": "faultlis",
            "sending_application": SENDER_APP,
            "sending_facility": SENDER_FACILITY,
            "mode": "apply",
            "version": "2.5",
            "facility_code": facility,
        },
    ]


def add_peers(env: dict, database_url: str, wanted: list[dict], *, cli: bool) -> None:
    """With ``his hl7 peer add`` as an operator would (``cli``), or in this process (the
    test: a CLI process costs an application import)."""
    if not cli:
        from his.db import Database
        from his.hl7v2.peers import PeerInput, add_peer
        from his.services.access import Principal

        database = Database.from_url(database_url)
        with database.session() as session:
            for peer in wanted:
                add_peer(session, Principal.system("faults"), PeerInput(**peer))
        database.engine.dispose()
        return
    failures: list[str] = []

    def add(peer: dict) -> None:
        argv = ["hl7", "peer", "add", peer["name"]]
        for key, value in peer.items():
            if key != "name":
                option = "facility" if key == "facility_code" else key.replace("_", "-")
                argv += [f"--{option}", str(value)]
        try:
            his(env, *argv)
        except SystemExit as exc:
            failures.append(str(exc))

    adding = [threading.Thread(target=add, args=(peer,)) for peer in wanted]
    for thread in adding:
        thread.start()
    for thread in adding:
        thread.join()
    if failures:
        raise SystemExit("\n".join(failures))


def kill(kind: str, processes: dict[str, Supervised], rng: random.Random) -> None:
    web = processes.get("web")
    if kind == "web_worker":
        assert web is not None
        workers = child_pids(web.pid)
        if workers:
            os.kill(rng.choice(workers), signal.SIGKILL)  # the master forks another
        deadline = time.monotonic() + 30
        while len([p for p in child_pids(web.pid) if alive(p)]) < len(workers):
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not replace a killed worker in 30 s")
            time.sleep(0.05)
        return
    if kind == "web_master":
        assert web is not None
        orphans = child_pids(web.pid)
        web.kill9()
        # Orphaned workers notice their parent is gone and finish what they were doing;
        # after 5 s whatever is left is killed, as systemd does with the unit's processes.
        deadline = time.monotonic() + 5
        while any(alive(p) for p in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        web.start()
        return
    process = processes["listener" if kind == "mllp_listener" else "dispatcher"]
    process.kill9()
    process.start()


def drain(engine, timeout: float) -> tuple[bool, float]:
    """Waits until no outbound message to the receiver is pending."""
    started = time.monotonic()
    query = text(
        "SELECT count(*) FROM hl7_outbound JOIN hl7_peer ON hl7_peer.id = hl7_outbound.peer_id "
        "WHERE hl7_peer.name = 'faultrx' AND hl7_outbound.status = 'pending'"
    )
    while time.monotonic() - started < timeout:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() == 0:
                return True, time.monotonic() - started
        time.sleep(0.5)
    return False, time.monotonic() - started


def _rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def check(engine, tally: Tally, receiver: Receiver, setup: Setup) -> dict:
    lost: dict[str, int] = {}
    dup: dict[str, int] = {}

    # Patients answered 201: present under the id answered, with the CCCD sent, once.
    cccds = {
        pid: value
        for pid, value in _rows(
            engine, "SELECT patient_id, value FROM patient_identifier WHERE type = 'cccd'"
        )
    }
    per_cccd = collections.Counter(cccds.values())
    lost["patients"] = sum(1 for pid, cccd in tally.patients.items() if cccds.get(pid) != cccd)
    dup["patients"] = sum(1 for cccd in tally.patients.values() if per_cccd[cccd] > 1)

    # Visits answered 201: present, same patient, room, day and queue number; one open visit
    # per patient, room and day.
    visits = {
        row[0]: (row[1], row[2], str(row[3]), row[4])
        for row in _rows(
            engine, "SELECT id, patient_id, room_id, queue_date, queue_number FROM visit"
        )
    }
    lost["visits"] = sum(1 for vid, want in tally.visits.items() if visits.get(vid) != want)
    per_slot = collections.Counter((p, r, d) for p, r, d, _ in visits.values())
    dup["visits"] = sum(1 for p, r, d, _ in tally.visits.values() if per_slot[(p, r, d)] > 1)
    dup["queue_numbers"] = len(
        _rows(
            engine,
            "SELECT room_id, queue_date, queue_number FROM visit "
            "GROUP BY room_id, queue_date, queue_number HAVING count(*) > 1",
        )
    )

    # Payments answered 201: present with the receipt number answered; receipts unique.
    receipts = dict(_rows(engine, "SELECT id, receipt_number FROM payment"))
    lost["payments"] = sum(
        1 for pid, number in tally.payments.items() if receipts.get(pid) != number
    )
    dup["receipt_numbers"] = len(
        _rows(
            engine,
            "SELECT facility_id, receipt_number FROM payment "
            "GROUP BY facility_id, receipt_number HAVING count(*) > 1",
        )
    )

    # HL7 messages acknowledged: stored once under their MSH-10, applied: one patient each.
    stored = collections.Counter(
        control
        for (control,) in _rows(
            engine,
            "SELECT control_id FROM hl7_inbound WHERE sending_application = :app",
            app=SENDER_APP,
        )
    )
    applied = collections.Counter(
        value
        for (value,) in _rows(engine, "SELECT value FROM patient_identifier WHERE value LIKE 'FL%'")
    )
    lost["hl7_messages"] = sum(1 for c in tally.hl7_acked if stored[c] == 0)
    lost["hl7_applied_patients"] = sum(1 for c in tally.hl7_acked if applied[f"FL{c}"] == 0)
    dup["hl7_messages"] = sum(1 for c in tally.hl7_acked if stored[c] > 1)
    dup["hl7_applied_patients"] = sum(1 for c in tally.hl7_acked if applied[f"FL{c}"] > 1)

    # Outbound to the receiver: every row sent (once: status is one value), each control id
    # seen by the receiver; repeats it saw are the redeliveries it dropped.
    outbound = _rows(
        engine,
        "SELECT hl7_outbound.control_id, hl7_outbound.status FROM hl7_outbound "
        "JOIN hl7_peer ON hl7_peer.id = hl7_outbound.peer_id "
        "WHERE hl7_peer.name = 'faultrx'",
    )
    statuses = collections.Counter(status for _, status in outbound)
    ids = collections.Counter(control for control, _ in outbound)
    seen = dict(receiver.seen)
    lost["outbound_undelivered"] = sum(1 for control in ids if seen.get(control, 0) == 0)
    dup["outbound_rows"] = sum(1 for n in ids.values() if n > 1)
    unknown = sorted(c for c in seen if c not in ids)

    results = {
        "acknowledged": {
            "patients": len(tally.patients),
            "visits": len(tally.visits),
            "payments": len(tally.payments),
            "writes": len(tally.patients) + len(tally.visits) + len(tally.payments),
            "hl7_messages": len(tally.hl7_acked),
        },
        "hl7_inbound": {
            "messages_started": tally.hl7_sent,
            "error_answers": dict(tally.hl7_error_answers),
        },
        "outbound": {
            "queued": len(outbound),
            "statuses": dict(statuses),
            "delivered": sum(1 for control in ids if seen.get(control, 0) > 0),
            "redelivered": sum(max(0, n - 1) for c, n in seen.items() if c in ids),
            "unknown_control_ids": len(unknown),
        },
        "lost": {**lost, "total": sum(lost.values())},
        "duplicated": {**dup, "total": sum(dup.values())},
    }
    not_sent = len(outbound) - statuses.get("sent", 0)
    results["lost"]["outbound_not_sent"] = not_sent
    results["lost"]["total"] += not_sent + len(unknown)
    return results


# --- the bench's own database -----------------------------------------------------------------


def prepare(args) -> tuple[str, Callable[[], None]]:
    """A fresh database, migrated and with the demo; its URL and how to drop it."""
    env = {**os.environ, "HIS_ENV": "development"}
    if args.sqlite:
        path = DATA_DIR / f"{DB_NAME}.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"

        def drop() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        server = make_url(args.database_url).set(drivername="postgresql+psycopg")
        admin = create_engine(
            server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
        url = server.set(database=DB_NAME).render_as_string(hide_password=False)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
            admin.dispose()

    env["HIS_DATABASE_URL"] = url
    log(f"database: {make_url(url).render_as_string()}; migrating and loading the demo")
    his(env, "db", "upgrade")
    his(env, "demo")
    return url, drop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("HIS_BENCH_POSTGRES_URL", DEFAULT_SERVER),
        help=f"PostgreSQL server (the database {DB_NAME} is created on it)",
    )
    parser.add_argument("--sqlite", action="store_true", help=f"bench/.data/{DB_NAME}.sqlite")
    parser.add_argument("--seconds", type=float, default=40.0, help="load duration")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per process kind")
    parser.add_argument("--receptionists", type=int, default=4)
    parser.add_argument("--hl7-senders", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--pause", type=float, default=0.05, help="seconds each client waits before a request"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)

    started = time.monotonic()
    url, drop = prepare(args)
    backend = "sqlite" if args.sqlite else "postgresql"
    from his.services.demo import DEMO_PASSWORD

    setup = Setup("reception", "cashier", DEMO_PASSWORD, "91001", "01.0227.0108")
    try:
        results = run_faults(
            url,
            setup,
            BENCH_DIR / ".data" / f"faults-{backend}-logs",
            seconds=args.seconds,
            kills=args.kills,
            receptionists=args.receptionists,
            hl7_senders=args.hl7_senders,
            workers=args.workers,
            pause=args.pause,
        )
    finally:
        if not args.keep:
            drop()
    results = {
        "backend": backend,
        "settings": {
            "seconds": args.seconds,
            "kills_per_kind": args.kills,
            "receptionists": args.receptionists,
            "cashiers": 1,
            "hl7_senders": args.hl7_senders,
            "gunicorn_workers": args.workers,
            "client_pause_seconds": args.pause,
        },
        **results,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    out = RESULTS_DIR / f"faults-{backend}.json"
    write_json(out, results)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    log(f"written: {out}")
    if results["lost"]["total"] or results["duplicated"]["total"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
