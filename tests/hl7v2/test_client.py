"""The outbound MLLP clients against the remote-receiver test peer over real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from his.hl7v2.client import (
    AsyncMllpClient,
    MllpClient,
    MllpConnectionError,
    MllpProtocolError,
    MllpTimeout,
)
from his.hl7v2.mllp import frame
from tests.hl7v2.peer import (
    LoopThread,
    ReceiverPeer,
    ReplyPolicy,
    build_ack,
    msh_fields,
    running_listener,
)

ADT = (
    b"MSH|^~\\&|HIS|BV01|LIS|LAB01|20250301083015+0700||ADT^A04^ADT_A01|MSG%04d|P|2.5.1\r"
    b"PID|1||12345^^^BV01^MR||Nguy\xe1\xbb\x85n^V\xc4\x83n A\r"
)


def adt(n: int) -> bytes:
    return ADT % n


def msa(reply: bytes) -> list[bytes]:
    segment = next(s for s in reply.split(b"\r") if s.startswith(b"MSA"))
    return segment.split(b"|")


@pytest.fixture
def peer() -> Iterator[ReceiverPeer]:
    with ReceiverPeer() as receiver:
        yield receiver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_peer_acks_echo_control_id_and_swap_applications(peer):
    with MllpClient("127.0.0.1", peer.port) as client:
        reply = client.send(adt(1))
    assert msa(reply)[:3] == [b"MSA", b"AA", b"MSG0001"]
    fields = msh_fields(reply)
    assert fields[2:6] == [b"LIS", b"LAB01", b"HIS", b"BV01"]
    assert fields[11] == b"2.5.1"
    assert peer.received == [adt(1)]


def test_persistent_connection_reused_across_sends(peer):
    with MllpClient("127.0.0.1", peer.port) as client:
        for i in range(30):
            assert msa(client.send(adt(i)))[2] == b"MSG%04d" % i
        assert client.connects == 1
    assert peer.connections == 1
    assert len(peer.received) == 30


def test_reply_in_several_packets_is_read_whole(peer):
    peer.policy = ReplyPolicy(chunks=4, chunk_pause=0.03)
    with MllpClient("127.0.0.1", peer.port) as client:
        for i in range(2):
            reply = client.send(adt(i))
            assert frame(reply) == peer.replies[i]
            assert msa(reply) == [b"MSA", b"AA", b"MSG%04d" % i]


def test_junk_before_the_reply_is_skipped(peer):
    peer.policy = ReplyPolicy(junk_before=b"\x00\x00\r\n", chunks=2)
    with MllpClient("127.0.0.1", peer.port) as client:
        assert msa(client.send(adt(7)))[1:3] == [b"AA", b"MSG0007"]
        assert msa(client.send(adt(8)))[1:3] == [b"AA", b"MSG0008"]


def test_reply_codes_and_wrong_control_id_come_back_as_sent(peer):
    with MllpClient("127.0.0.1", peer.port) as client:
        peer.policy = ReplyPolicy(code="AE")
        assert msa(client.send(adt(1)))[1:3] == [b"AE", b"MSG0001"]
        peer.policy = ReplyPolicy(control_id=b"SOMETHING_ELSE")
        assert msa(client.send(adt(2)))[1:3] == [b"AA", b"SOMETHING_ELSE"]


def test_no_answer_times_out_and_a_late_reply_is_not_taken_for_the_next(peer):
    peer.policy = ReplyPolicy(delay=0.4)
    with MllpClient("127.0.0.1", peer.port, ack_timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(MllpTimeout) as info:
            client.send(adt(1))
        assert info.value.sent
        assert 0.15 < time.monotonic() - started < 2.0
        assert not client.connected  # the late ACK for MSG0001 dies with that connection
        peer.policy = ReplyPolicy()
        assert msa(client.send(adt(2)))[2] == b"MSG0002"
    peer.policy = ReplyPolicy(code=None)
    with (
        MllpClient("127.0.0.1", peer.port, ack_timeout=0.2) as client,
        pytest.raises(MllpTimeout),
    ):
        client.send(adt(3))


def test_connection_refused():
    with MllpClient("127.0.0.1", free_port(), connect_timeout=1) as client:
        with pytest.raises(MllpConnectionError) as info:
            client.send(adt(1))
        assert not info.value.sent


def test_peer_closing_before_reply_raises_with_sent(peer):
    peer.policy = ReplyPolicy(close_without_reply=True)
    with MllpClient("127.0.0.1", peer.port) as client:
        with pytest.raises(MllpConnectionError) as info:
            client.send(adt(1))
        assert info.value.sent
        peer.policy = ReplyPolicy()
        assert msa(client.send(adt(1)))[2] == b"MSG0001"  # the caller's retry
    assert peer.received == [adt(1), adt(1)]


def test_reconnects_after_the_peer_restarts(peer):
    with MllpClient("127.0.0.1", peer.port, connect_timeout=1) as client:
        assert msa(client.send(adt(1)))[2] == b"MSG0001"
        peer.restart()  # the old connection is dead; the client notices before sending
        assert msa(client.send(adt(2)))[2] == b"MSG0002"
        peer.stop()
        with pytest.raises(MllpConnectionError) as info:
            client.send(adt(3))
        assert not info.value.sent  # refused: nothing reached the peer
        peer.start()
        assert msa(client.send(adt(3)))[2] == b"MSG0003"
        assert client.connects == 3
    assert peer.received == [adt(1), adt(2), adt(3)]


@pytest.mark.parametrize(
    "trailing",
    [b"\x0bMSH|^~\\&|X||||||ACK|EXTRA\rMSA|AA|OLD\r\x1c\x0d", b"\x0bMSH|half a reply"],
    ids=["extra-frame", "partial-frame"],
)
def test_stray_bytes_after_a_reply_never_answer_the_next_message(peer, trailing):
    peer.policy = ReplyPolicy(trailing=trailing)
    with MllpClient("127.0.0.1", peer.port) as client:
        assert msa(client.send(adt(1)))[2] == b"MSG0001"
        peer.policy = ReplyPolicy()
        time.sleep(0.05)  # let any stray tail arrive
        assert msa(client.send(adt(2)))[2] == b"MSG0002"
        assert client.connects == 1


def test_oversized_reply_is_a_protocol_error(peer):
    peer.policy = ReplyPolicy(responder=lambda p: b"X" * 5000)
    with MllpClient("127.0.0.1", peer.port, max_frame=1000) as client:
        with pytest.raises(MllpProtocolError):
            client.send(adt(1))
        assert not client.connected


def test_client_against_our_own_listener():
    async def handler(payload, conn):
        return build_ack(payload)

    with running_listener(handler) as listener, MllpClient("127.0.0.1", listener.port) as client:
        for i in range(20):
            assert msa(client.send(adt(i)))[2] == b"MSG%04d" % i


def test_async_client(peer):
    async def scenario() -> None:
        async with AsyncMllpClient("127.0.0.1", peer.port, ack_timeout=0.3) as client:
            peer.policy = ReplyPolicy(chunks=3, chunk_pause=0.02, junk_before=b"\r\n")
            for i in range(5):
                assert msa(await client.send(adt(i)))[2] == b"MSG%04d" % i
            assert client.connects == 1
            peer.restart()
            peer.policy = ReplyPolicy()
            assert msa(await client.send(adt(5)))[2] == b"MSG0005"
            assert client.connects == 2
            peer.policy = ReplyPolicy(code=None)
            with pytest.raises(MllpTimeout):
                await client.send(adt(6))
            peer.stop()
            with pytest.raises(MllpConnectionError):
                await client.send(adt(7))

    with LoopThread() as loop:  # not asyncio.run: the browser tests may hold a loop here
        loop.run(scenario(), timeout=60)
