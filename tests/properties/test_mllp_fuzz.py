"""Fuzzing the MLLP listener and the HL7 ingest path behind it, over a real socket.

The real ``Hl7Server`` (listener, receiver, database of each backend) gets hypothesis-made
byte streams: junk between frames, well-formed ADT messages, the same mutated byte by byte,
random bytes, empty frames, a frame over the size limit, a frame cut off by the end of the
stream, all written in random pieces. What must hold for every stream:

- every complete frame before an oversized one is answered, in order, with an ACK our own
  reader can read, acknowledging the frame's MSH-10 when it has one;
- then the connection is closed cleanly (after the oversized frame, or at the end of the
  stream); nothing waits for a timeout;
- the listener stays up: the next example connects, and a normal message still gets AA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his import create_app
from his.config import Settings
from his.db import Database
from his.hl7v2 import batch
from his.hl7v2.ack import parse_ack
from his.hl7v2.codec import Hl7Error, parse
from his.hl7v2.server import Hl7Server
from his.models import Hl7Peer, PeerMode
from tests import factories
from tests.hl7v2.peer import LoopThread, RawSender
from tests.hl7v2.test_inbound import a04
from tests.properties import BOUNDED, scaled
from tests.properties.test_hl7_properties import adt_messages, mutated

MAX_FRAME = 4096
REPLY_TIMEOUT = 15.0  # generous for a loaded machine; a hang still fails


class Running:
    def __init__(self, port: int, room):
        self.port, self.room = port, room


@pytest.fixture(scope="module")
def running(backend, fresh_database) -> Iterator[Running]:
    databases = fresh_database(backend)
    url = next(databases)
    settings_ = Settings.from_env(
        {
            "HIS_ENV": "test",
            "HIS_DATABASE_URL": url,
            "HIS_HL7_UNKNOWN_SENDERS": "store",
            "HIS_MLLP_MAX_FRAME_BYTES": str(MAX_FRAME),
            "HIS_LOG_FORMAT": "console",
        }
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
    server = Hl7Server(create_app(settings_, database=database), database, settings_)
    with LoopThread() as loop:
        listener = loop.run(server.start("127.0.0.1", 0))
        try:
            yield Running(listener.port, room)
        finally:
            loop.run(server.stop(listener), timeout=30)
            database.engine.dispose()
            databases.close()


def answered(payload: bytes) -> bool:
    """Whether the standard asks us to answer this frame with one ACK: every frame but a
    message in enhanced mode whose MSH-15 says NE, ER or SU (then it depends on the outcome),
    and batches (one batch ACK, read differently)."""
    if batch.is_batch(payload):
        return False
    try:
        msg = parse(payload)
    except Hl7Error:
        return True
    return not (msg.is_enhanced_mode and msg.accept_ack_type in ("NE", "ER", "SU"))


payloads = (
    st.one_of(
        adt_messages().map(lambda case: case[0]),
        mutated(),
        st.binary(max_size=120),
        st.just(b""),
    )
    .map(lambda p: p.replace(b"\x1c", b""))
    .filter(answered)
)
junk = st.binary(max_size=8).map(lambda b: b.replace(b"\x0b", b""))
items = st.lists(
    st.tuples(st.sampled_from(["frame", "frame", "frame", "junk"]), payloads, junk),
    max_size=4,
)


@st.composite
def streams(draw):
    """(bytes to write, the payloads that must be answered, whether it ends oversized)."""
    data, expected = b"", []
    for kind, payload, noise in draw(items):
        if kind == "junk":
            data += noise
        else:
            data += noise + b"\x0b" + payload + b"\x1c" + draw(st.sampled_from([b"\r", b""]))
            expected.append(payload)
    ending = draw(st.sampled_from(["none", "partial", "oversized"]))
    if ending == "partial":
        data += b"\x0b" + draw(payloads)  # never completed: dropped when the stream ends
    elif ending == "oversized":
        data += b"\x0bMSH|^~\\&|" + b"x" * (MAX_FRAME + draw(st.integers(1, 3000))) + b"\x1c\r"
        data += b"\x0b" + next(iter(expected), b"MSH|after") + b"\x1c\r"  # never read
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6))
    return data, expected, cuts, ending == "oversized"


@settings(BOUNDED, max_examples=scaled(40))
@given(streams())
def test_every_complete_frame_is_answered_then_the_connection_closes_cleanly(running, stream):
    data, expected, cuts, oversized = stream
    with RawSender(running.port, timeout=REPLY_TIMEOUT) as peer:
        # The listener may close while an oversized frame is still being written.
        with contextlib.suppress(OSError):
            peer.write_split(data, cuts)
            peer.shutdown_write()
        replies = peer.read_frames(len(expected), timeout=REPLY_TIMEOUT) if expected else []
        assert peer.wait_closed(REPLY_TIMEOUT), "the connection was left open"
    assert len(replies) == len(expected)
    for payload, reply in zip(expected, replies, strict=True):
        ack = parse_ack(reply)
        try:
            control_id = parse(payload).control_id
        except Hl7Error:
            assert ack.code in ("AR", "AE", "CR", "CE"), ack
            continue
        assert ack.control_id_acked == control_id
    assert oversized or not peer._ready  # nothing more than one reply per frame


def test_the_listener_still_answers_a_normal_message_after_the_fuzz(running):
    message = a04(running.room, control="AFTER-FUZZ")
    with RawSender(running.port) as peer:
        peer.send_frame(message)
        ack = parse_ack(peer.read_frame(timeout=REPLY_TIMEOUT))
    assert ack.code in ("AA", "CA"), ack.errors


@pytest.mark.parametrize("accept_ack", ["XX", "A", "al "])
def test_an_unknown_accept_ack_type_is_still_answered(running, accept_ack):
    # MSH-15 outside table 0155: the sender cannot be expected to read it as "never answer".
    message = a04(running.room, control=f"MSH15-{accept_ack.strip()}")
    fields = message.split(b"\r", 1)[0].split(b"|")
    fields[14:16] = [accept_ack.encode(), b"NE"]
    message = b"|".join(fields) + b"\r" + message.split(b"\r", 1)[1]
    assert parse(message).accept_ack_type == accept_ack.strip().upper()
    with RawSender(running.port) as peer:
        peer.send_frame(message)
        ack = parse_ack(peer.read_frame(timeout=REPLY_TIMEOUT))
    assert ack.control_id_acked == f"MSH15-{accept_ack.strip()}"
