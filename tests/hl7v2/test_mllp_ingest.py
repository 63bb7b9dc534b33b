"""The listener process end to end: a real peer on a real socket sends to `Hl7Server`, which
stores, acknowledges and applies into a real (committed) database of each backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import hl7.mllp
import pytest
from sqlalchemy import func, select

from his import create_app
from his.config import Settings
from his.db import Database
from his.hl7v2 import batch
from his.hl7v2.ack import parse_ack
from his.hl7v2.codec import SUPPORTED_VERSIONS, Hl7Error, parse
from his.hl7v2.inbound import BILLING_TYPES, PROCESSING_IDS, _same_message
from his.hl7v2.server import Hl7Server
from his.models import Hl7Inbound, Hl7Peer, InboundStatus, PeerMode, Visit
from tests import factories
from tests.hl7v2.peer import LoopThread, RawSender
from tests.hl7v2.samples import MESSAGE_FILES, REFUSED
from tests.hl7v2.test_inbound import a04

START, END = b"\x0b", b"\x1c\r"


class Running:
    def __init__(self, database: Database, port: int, room):
        self.database, self.port, self.room = database, port, room

    def rows(self, **where) -> list[Hl7Inbound]:
        with self.database.session(write=False) as session:
            query = select(Hl7Inbound).filter_by(**where).order_by(Hl7Inbound.id)
            return list(session.scalars(query))

    def count(self, model) -> int:
        with self.database.session(write=False) as session:
            return session.scalar(select(func.count()).select_from(model))


@pytest.fixture(scope="module")
def running(backend, fresh_database) -> Iterator[Running]:
    databases = fresh_database(backend)
    url = next(databases)
    settings = Settings.from_env(
        {"HIS_ENV": "test", "HIS_DATABASE_URL": url, "HIS_HL7_UNKNOWN_SENDERS": "store"}
    )
    database = Database.from_url(url)
    with database.session() as session:
        factories.bind(session)
        room = factories.RoomFactory()
        session.add(
            Hl7Peer(
                name="lis",
                facility_id=room.department.facility_id,
                sending_application="LIS",
                sending_facility="BV",
                version="2.5",
                mode=PeerMode.APPLY,
            )
        )
        session.flush()
        session.expunge_all()
    server = Hl7Server(create_app(settings, database=database), database, settings)
    with LoopThread() as loop:
        listener = loop.run(server.start("127.0.0.1", 0))
        try:
            yield Running(database, listener.port, room)
        finally:
            loop.run(server.stop(listener), timeout=30)
            database.engine.dispose()
            databases.close()


def new_child(running: Running, n: int, control: str) -> bytes:
    """An ADT^A04 of a new child (born 2019, male) whose CCCD ends in ``n``."""
    cccd = f"0012190{n:05d}"
    given = "".join("abcdeghikl"[int(d)] for d in str(n)).capitalize()  # names have no digits
    raw = a04(running.room, control=control, cccd=cccd, name=f"Lê^Văn {given}")
    return raw.replace(b"LIS-77", f"LIS-{n}".encode())


def test_a_persistent_connection_carries_many_messages(running):
    with RawSender(running.port) as peer:
        for n in range(1, 6):
            peer.send_frame(new_child(running, n, f"P{n}"))
            ack = parse_ack(peer.read_frame())
            assert (ack.code, ack.control_id_acked) == ("AA", f"P{n}"), ack.errors
    assert [r.status for r in running.rows(sending_application="LIS")][:5] == [
        InboundStatus.APPLIED
    ] * 5


def test_split_frames_two_frames_in_one_write_and_junk_between(running):
    one, two = new_child(running, 11, "S1"), new_child(running, 12, "S2")
    with RawSender(running.port) as peer:
        framed = START + one + END
        peer.write_split(framed, [1, 7, len(framed) - 1], pause=0.01)
        assert parse_ack(peer.read_frame()).control_id_acked == "S1"
        three, four = new_child(running, 13, "S3"), new_child(running, 14, "S4")
        peer.write(START + two + END + b"\x00\x00\r\n" + START + three + END + START + four + END)
        acked = [parse_ack(f).control_id_acked for f in peer.read_frames(3)]
        assert acked == ["S2", "S3", "S4"]


def test_a_repeated_control_id_gets_the_first_ack_and_is_applied_once(running):
    message = new_child(running, 21, "D1")
    with RawSender(running.port) as peer:
        peer.send_frame(message)
        first = peer.read_frame()
        visits = running.count(Visit)
        peer.send_frame(message)
        assert peer.read_frame() == first
    assert running.count(Visit) == visits
    (row,) = running.rows(control_id="D1")
    assert row.duplicates == 1


def test_enhanced_mode_answers_ca_then_applies(running):
    raw = new_child(running, 31, "E1").replace(b"|P|2.5|||||VNM|", b"|P|2.5|||AL|NE|VNM|", 1)
    with RawSender(running.port) as peer:
        peer.send_frame(raw)
        assert parse_ack(peer.read_frame()).code == "CA"
    deadline = time.monotonic() + 10
    while running.rows(control_id="E1")[0].status is InboundStatus.RECEIVED:
        assert time.monotonic() < deadline, "the enhanced-mode message was never applied"
        time.sleep(0.1)
    assert running.rows(control_id="E1")[0].status is InboundStatus.APPLIED


def test_an_early_close_loses_nothing_acknowledged_and_the_listener_carries_on(running):
    with RawSender(running.port) as peer:
        peer.write(START + new_child(running, 41, "C1")[:50])
    assert running.rows(control_id="C1") == []
    with RawSender(running.port) as peer:
        peer.send_frame(new_child(running, 42, "C2"))
        assert parse_ack(peer.read_frame()).code == "AA"


def test_an_invalid_cccd_is_ae_naming_the_field(running):
    bad = new_child(running, 51, "V1").replace(b"001219000051", b"001019000051")
    with RawSender(running.port) as peer:
        peer.send_frame(bad)
        ack = parse_ack(peer.read_frame())
    assert ack.code == "AE" and ack.errors[0].location.startswith("PID^1^3")
    assert running.rows(control_id="V1")[0].patient_id is None


def test_python_hl7s_asyncio_client_is_answered(running):
    async def send() -> str:
        reader, writer = await hl7.mllp.open_hl7_connection(
            "127.0.0.1", running.port, encoding="utf-8"
        )
        try:
            writer.writemessage(hl7.parse(new_child(running, 61, "H1").decode()))
            await writer.drain()
            return str(await asyncio.wait_for(reader.readmessage(), 10))
        finally:
            writer.close()

    # On a loop thread of its own: the browser tests may leave a loop in this one.
    with LoopThread() as loop:
        reply = loop.run(send(), timeout=15)
    assert "MSA|AA|H1" in reply


# Its sender is unknown and stored; a repeat is answered from the store each time.
PROBE = b"MSH|^~\\&|PROBE|X|HIS|HIS|20260301||ADT^A08|PROBE|P|2.5\rPID|1||1^^^X^PI\r"


def expected_answer(raw: bytes, name: str) -> tuple[str | None, int | None]:
    """What the listener must answer: (ACK code or None for no answer, ERR code)."""
    if name in REFUSED:
        return "AR", REFUSED[name][0]
    try:
        message = parse(raw)
    except Hl7Error as refused:
        return "AR", refused.code
    if message.processing_id not in PROCESSING_IDS:
        return "AR", 202  # e.g. the CDC sample's "N"
    if message.message_code in BILLING_TYPES:
        return "AR", 200
    if message.version not in SUPPORTED_VERSIONS:
        return "AR", 203
    if message.is_enhanced_mode:
        return ("CA", None) if message.accept_ack_type in ("", "AL", "SU") else (None, None)
    return "AA", None


@pytest.mark.parametrize("path", MESSAGE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_file_is_stored_and_answered(running, path):
    """Unknown senders are stored (HIS_HL7_UNKNOWN_SENDERS=store): every sample gets the
    answer its header calls for — AA/CA, AR with the codec's code, or none when MSH-15
    asks for none — and is kept. Samples reusing another's MSH-10 get that one's ACK."""
    raw = path.read_bytes().replace(b"\x1c", b"")
    name = f"{path.parent.name}/{path.name}"
    earlier = None
    try:
        message = parse(raw)
        earlier = running.rows(
            sending_application=message.sending_application,
            sending_facility=message.sending_facility,
            control_id=message.control_id,
        )
    except Hl7Error:
        pass
    code, error = expected_answer(raw, name)
    with RawSender(running.port) as peer:
        peer.send_frame(raw)
        if earlier and not _same_message(earlier[0].raw, message):
            # Another sample already used this MSH-3/4/10 for a different message.
            ack = parse_ack(peer.read_frame(timeout=10))
            refused = "CR" if message.is_enhanced_mode else "AR"
            assert (ack.code, ack.errors[0].code) == (refused, 205), name
            return
        if earlier and earlier[0].ack:
            assert peer.read_frame(timeout=10) == earlier[0].ack.encode()
            return
        if earlier:
            code = None
        if code is None:
            # Answers come in order: the next frame answers the probe, so none came before.
            peer.send_frame(PROBE)
            assert parse_ack(peer.read_frame(timeout=10)).control_id_acked == "PROBE"
            return
        reply = peer.read_frame(timeout=10)
    if reply.lstrip(b"\xef\xbb\xbf").startswith((b"FHS", b"BHS")):
        acks = reply.count(b"\rMSA")
        assert f"BTS|{acks}\r".encode() in reply  # one ACK per message answered
        return
    ack = parse_ack(reply)
    assert (ack.code, ack.errors[0].code if ack.errors else None) == (code, error), name


def test_no_sample_was_lost(running):
    """Each sample is kept byte for byte, or is a repeat of a kept one (same MSH-3/4/10).
    The samples are sent here again: the tests above may run in another worker process."""
    for path in MESSAGE_FILES:
        with RawSender(running.port) as peer:
            peer.send_frame(path.read_bytes().replace(b"\x1c", b""))
            peer.send_frame(PROBE)
            # Answers come in order: the probe's comes after the sample's, if it has one.
            reply = peer.read_frame(timeout=10)
            while b"|PROBE" not in reply:
                reply = peer.read_frame(timeout=10)
    kept = {bytes(r.raw) for r in running.rows()}
    keys = {(r.sending_application, r.sending_facility, r.control_id) for r in running.rows()}
    for path in MESSAGE_FILES:
        raw = path.read_bytes().replace(b"\x1c", b"")
        if raw in kept:
            continue
        # A batch is kept message by message; a refused message is kept whole (found above).
        parts = batch.split(raw).messages if batch.is_batch(raw) else [raw]
        for part in parts:
            message = parse(part)
            key = (message.sending_application, message.sending_facility, message.control_id)
            assert part in kept or key in keys, path
