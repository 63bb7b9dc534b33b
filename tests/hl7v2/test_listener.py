"""The MLLP listener over real sockets on 127.0.0.1, driven by the raw-socket test peer."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from his.hl7v2.listener import Connection
from his.hl7v2.mllp import frame
from tests.hl7v2.peer import LoopThread, RawSender, build_ack, running_listener
from tests.hl7v2.test_mllp_framing import sample


async def echo(payload: bytes, conn: Connection) -> bytes:
    return b"ACK:" + payload


class Events:
    """Collects on_event calls (made on the loop thread)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int, dict]] = []

    def __call__(self, event: str, conn: Connection, **fields: object) -> None:
        self.items.append((event, conn.id, fields))

    def named(self, event: str) -> list[dict]:
        return [fields for name, _, fields in self.items if name == event]

    def wait(self, event: str, timeout: float = 2.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.named(event):
                return found
            time.sleep(0.005)
        raise AssertionError(f"no {event} event in {self.items}")


def test_persistent_connection_with_fifty_messages():
    seen: list[tuple[int, int]] = []

    async def handler(payload: bytes, conn: Connection) -> bytes:
        seen.append((conn.id, conn.messages))
        return b"ACK:" + payload

    with running_listener(handler) as listener, RawSender(listener.port) as peer:
        for i in range(50):
            peer.send_frame(b"MSH|%d" % i)
            assert peer.read_frame() == b"ACK:MSH|%d" % i
    assert {conn_id for conn_id, _ in seen} == {seen[0][0]}
    assert [count for _, count in seen] == list(range(1, 51))


def test_split_frame_is_answered_only_when_complete():
    with running_listener(echo) as listener, RawSender(listener.port) as peer:
        data = frame(b"MSH|split")
        peer.write(data[:3])
        peer.write(data[3:8])
        with pytest.raises(TimeoutError):
            peer.read_frame(timeout=0.05)
        peer.write(data[8:])
        assert peer.read_frame() == b"ACK:MSH|split"


def test_frame_written_byte_by_byte():
    with running_listener(echo) as listener, RawSender(listener.port) as peer:
        for i in range(3):
            peer.write_bytewise(b"\x00\r\n" + frame(b"MSH|byte%d|" % i + b"x" * 100))
            assert peer.read_frame() == b"ACK:MSH|byte%d|" % i + b"x" * 100


def test_split_between_fs_and_cr_and_missing_final_cr_do_not_hang():
    with running_listener(echo) as listener, RawSender(listener.port) as peer:
        peer.write(b"\x0bMSH|no-cr\x1c")  # the sender forgot the CR and waits for its ACK
        assert peer.read_frame(timeout=1.0) == b"ACK:MSH|no-cr"
        peer.write(b"\x0d" + frame(b"MSH|next"))  # the CR comes late: not junk, no harm
        assert peer.read_frame() == b"ACK:MSH|next"


def test_two_frames_in_one_write_get_replies_in_order():
    async def uneven(payload: bytes, conn: Connection) -> bytes:
        # The first frames are the slowest: replies must still keep arrival order.
        await asyncio.sleep(0.02 if payload.endswith(b"0") else 0)
        return b"ACK:" + payload

    with running_listener(uneven) as listener, RawSender(listener.port) as peer:
        peer.send_frames([b"MSH|0", b"MSH|1"])
        assert peer.read_frames(2) == [b"ACK:MSH|0", b"ACK:MSH|1"]
        payloads = [b"MSH|%d" % i for i in range(20)]
        peer.send_frames(payloads)
        assert peer.read_frames(20) == [b"ACK:" + p for p in payloads]


def test_junk_between_frames_is_skipped_and_counted():
    events = Events()
    with running_listener(echo, on_event=events) as listener, RawSender(listener.port) as peer:
        peer.send_frames([b"MSH|a", b"MSH|b", b"MSH|c"], junk=b"\x00\x00\x0d\x0a")
        assert peer.read_frames(3) == [b"ACK:MSH|a", b"ACK:MSH|b", b"ACK:MSH|c"]
    assert sum(f["count"] for f in events.named("bytes_discarded")) == 12


def test_early_close_mid_frame_then_listener_serves_a_new_connection():
    events = Events()
    with running_listener(echo, on_event=events) as listener:
        with RawSender(listener.port) as early:
            early.send_frame(b"MSH|complete")
            assert early.read_frame() == b"ACK:MSH|complete"
            early.write(b"\x0bMSH|half a messa")
        assert events.wait("partial_frame_dropped")[0]["size"] == 17
        assert events.wait("connection_closed")[0]["reason"] == "peer_closed"
        with RawSender(listener.port) as peer:
            peer.send_frame(b"MSH|again")
            assert peer.read_frame() == b"ACK:MSH|again"


def test_half_closed_sender_still_gets_its_reply():
    with running_listener(echo) as listener, RawSender(listener.port) as peer:
        peer.write(b"\x0bMSH|last\x1c")
        peer.shutdown_write()
        assert peer.read_frame() == b"ACK:MSH|last"
        assert peer.wait_closed()


def test_frame_too_large_gets_its_reply_and_close_while_others_work():
    events = Events()
    with (
        running_listener(
            echo,
            max_frame=1000,
            on_frame_too_large=lambda conn: b"TOO LARGE",
            on_event=events,
        ) as listener,
        RawSender(listener.port) as other,
        RawSender(listener.port) as big,
    ):
        other.send_frame(b"MSH|before")
        assert other.read_frame() == b"ACK:MSH|before"
        # A good frame, then an oversized one, in one write: the good one is answered first.
        big.write(frame(b"MSH|ok") + b"\x0bMSH|" + b"x" * 5000)
        assert big.read_frames(2) == [b"ACK:MSH|ok", b"TOO LARGE"]
        assert big.wait_closed()
        other.send_frame(b"MSH|after")
        assert other.read_frame() == b"ACK:MSH|after"
    assert events.named("frame_too_large") == [{"limit": 1000}]


def test_handler_error_gets_fallback_reply_and_connection_lives_on():
    async def handler(payload: bytes, conn: Connection) -> bytes:
        if b"BOOM" in payload:
            raise RuntimeError("broken message")
        return b"ACK:" + payload

    errors: list[tuple[bytes, BaseException]] = []

    def fallback(payload: bytes, exc: BaseException) -> bytes:
        errors.append((payload, exc))
        return b"AE:" + payload

    with (
        running_listener(handler, on_handler_error=fallback) as listener,
        RawSender(listener.port) as peer,
    ):
        peer.send_frames([b"MSH|1", b"MSH|BOOM", b"MSH|3"])
        assert peer.read_frames(3) == [b"ACK:MSH|1", b"AE:MSH|BOOM", b"ACK:MSH|3"]
        peer.send_frame(b"MSH|4")
        assert peer.read_frame() == b"ACK:MSH|4"
    assert [(p, str(e)) for p, e in errors] == [(b"MSH|BOOM", "broken message")]


def test_handler_error_without_fallback_closes_only_that_connection():
    async def handler(payload: bytes, conn: Connection) -> bytes:
        if payload == b"BOOM":
            raise RuntimeError("broken")
        return b"ACK:" + payload

    with (
        running_listener(handler) as listener,
        RawSender(listener.port) as bystander,
        RawSender(listener.port) as victim,
    ):
        victim.send_frame(b"BOOM")
        assert victim.wait_closed()
        bystander.send_frame(b"MSH|fine")
        assert bystander.read_frame() == b"ACK:MSH|fine"
        with RawSender(listener.port) as newcomer:
            newcomer.send_frame(b"MSH|new")
            assert newcomer.read_frame() == b"ACK:MSH|new"


def test_failing_fallback_or_unframeable_reply_closes_the_connection():
    async def handler(payload: bytes, conn: Connection) -> bytes:
        return b"bad\x1creply"  # cannot be framed

    def fallback(payload: bytes, exc: BaseException) -> bytes:
        raise ValueError("fallback broken too")

    with running_listener(handler, on_handler_error=fallback) as listener:
        with RawSender(listener.port) as peer:
            peer.send_frame(b"MSH|x")
            assert peer.wait_closed()
        with RawSender(listener.port) as peer:  # the listener itself is fine
            peer.write(b"\x0b")
            assert not peer.wait_closed(timeout=0.05)


def test_handler_may_return_none_for_no_reply():
    async def handler(payload: bytes, conn: Connection) -> bytes | None:
        return None if payload == b"QUIET" else b"ACK:" + payload

    with running_listener(handler) as listener, RawSender(listener.port) as peer:
        peer.send_frames([b"QUIET", b"MSH|loud"])
        assert peer.read_frame() == b"ACK:MSH|loud"


def test_idle_timeout_closes_an_idle_connection():
    events = Events()
    with running_listener(echo, idle_timeout=0.3, on_event=events) as listener:
        with RawSender(listener.port) as peer:
            started = time.monotonic()
            # Activity keeps it open: each byte resets the idle timer.
            for _ in range(4):
                peer.write(b"\x00")
                time.sleep(0.1)
            peer.send_frame(b"MSH|alive")
            assert peer.read_frame() == b"ACK:MSH|alive"
            assert peer.wait_closed(timeout=2.0)
            assert time.monotonic() - started >= 0.6
        assert events.wait("idle_timeout")
        assert events.wait("connection_closed")[0]["reason"] == "idle_timeout"


def test_a_frame_that_never_ends_is_cut_off():
    """A byte now and then keeps the idle timer at bay, but a begun frame must arrive
    within the frame timeout: a sender cannot hold a connection and its buffer forever."""
    events = Events()
    with running_listener(echo, idle_timeout=5, frame_timeout=0.4, on_event=events) as listener:
        with RawSender(listener.port) as peer:
            peer.write(b"\x0bMSH|slow")
            for _ in range(10):
                time.sleep(0.1)
                try:
                    peer.write(b"x")
                except OSError:
                    break
            assert peer.wait_closed(timeout=2.0)
        assert events.wait("connection_closed")[0]["reason"] == "frame_timeout"
        with RawSender(listener.port) as peer:  # and it serves the next one
            peer.send_frame(b"MSH|next")
            assert peer.read_frame() == b"ACK:MSH|next"


def test_connections_beyond_the_limit_are_closed_at_once():
    with running_listener(echo, max_connections=2) as listener:
        with RawSender(listener.port) as one, RawSender(listener.port) as two:
            one.send_frame(b"MSH|1")
            two.send_frame(b"MSH|2")
            assert one.read_frame() == b"ACK:MSH|1" and two.read_frame() == b"ACK:MSH|2"
            with RawSender(listener.port) as three:
                assert three.wait_closed(timeout=2.0)
        deadline = time.monotonic() + 2
        while listener.connections and time.monotonic() < deadline:
            time.sleep(0.01)  # the listener notices the closes
        with RawSender(listener.port) as four:  # a place is free again
            four.send_frame(b"MSH|4")
            assert four.read_frame() == b"ACK:MSH|4"


def test_eight_concurrent_connections_each_get_their_own_replies_in_order():
    async def handler(payload: bytes, conn: Connection) -> bytes:
        await asyncio.sleep(0)  # let the connections interleave
        return b"ACK:" + payload

    failures: list[BaseException] = []

    def client(n: int, port: int) -> None:
        try:
            with RawSender(port) as peer:
                for batch in range(10):
                    payloads = [b"MSH|c%d|m%d" % (n, batch * 5 + k) for k in range(5)]
                    peer.send_frames(payloads)  # pipelined
                    assert peer.read_frames(5) == [b"ACK:" + p for p in payloads]
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    with running_listener(handler) as listener:
        threads = [threading.Thread(target=client, args=(n, listener.port)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_close_lets_the_running_handler_finish_then_stops_accepting():
    started = threading.Event()

    async def slow(payload: bytes, conn: Connection) -> bytes:
        started.set()
        await asyncio.sleep(0.2)
        return b"ACK:" + payload

    with running_listener(slow) as listener:
        port = listener.port
        with RawSender(port) as busy, RawSender(port) as idle:
            busy.send_frame(b"MSH|in-flight")
            assert started.wait(2)
            closing = asyncio.run_coroutine_threadsafe(
                listener.close(grace=5.0), listener.thread.loop
            )
            assert busy.read_frame(timeout=2) == b"ACK:MSH|in-flight"
            assert busy.wait_closed()
            assert idle.wait_closed()
            closing.result(5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


RUN_FOREVER = """
import asyncio, sys
from his.hl7v2.listener import run_forever

async def echo(payload, conn):
    print("HANDLING", file=sys.stderr, flush=True)
    await asyncio.sleep(0.3)
    return b"ACK:" + payload

run_forever(echo, "127.0.0.1", 0,
            on_started=lambda listener: print("PORT", listener.port, file=sys.stderr, flush=True))
print("STOPPED", file=sys.stderr, flush=True)
"""


def test_run_forever_shuts_down_gracefully_on_sigterm():
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_FOREVER],
        cwd=root,
        stdout=subprocess.DEVNULL,  # structlog's default output
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr.readline, b"")
        port = int(next(line for line in lines if line.startswith(b"PORT")).split()[1])
        with RawSender(port) as peer:
            peer.send_frame(b"MSH|x")
            assert next(
                line for line in lines if line.startswith(b"HANDLING")
            )  # SIGTERM lands mid-handler
            proc.send_signal(signal.SIGTERM)
            assert peer.read_frame(timeout=3) == b"ACK:MSH|x"
            assert peer.wait_closed()
        assert proc.wait(5) == 0
        assert b"STOPPED" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_python_hl7_asyncio_client_talks_to_our_listener():
    """An independent MLLP implementation (python-hl7's asyncio streams) as the sender."""
    hl7 = pytest.importorskip("hl7")
    from hl7.mllp import open_hl7_connection

    async def handler(payload: bytes, conn: Connection) -> bytes:
        return build_ack(payload)

    async def scenario(port: int) -> list[str]:
        reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        try:
            ids = []
            for i in range(20):
                text = (
                    "MSH|^~\\&|LIS|LAB01|HIS|BV01|20250301083015+0700||ORU^R01^ORU_R01|"
                    f"L{i:04d}|P|2.5.1|||||VNM|UNICODE UTF-8\rPID|1||9^^^BV01^MR||Trần^Thị Bích\r"
                )
                writer.writemessage(hl7.parse(text))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), 5)
                ids.append(str(ack.segment("MSA")[2]))
            return ids
        finally:
            writer.close()
            await writer.wait_closed()

    with running_listener(handler) as listener, LoopThread() as loop:
        # Not asyncio.run: the browser tests may hold a loop in this thread.
        assert loop.run(scenario(listener.port)) == [f"L{i:04d}" for i in range(20)]


@pytest.mark.parametrize(
    ("name", "replies", "discarded"),
    [
        ("mllp_stream_three_messages.bin", 3, 0),
        ("mllp_stream_junk_between_frames.bin", 2, 5),
        ("mllp_frame_missing_end_cr.bin", 1, 0),
        ("mllp_frame_no_start_block.bin", 0, 620),
    ],
)
def test_sample_streams_over_the_socket(name, replies, discarded):
    data = sample(name)

    async def handler(payload: bytes, conn: Connection) -> bytes:
        return b"ACK:" + payload.split(b"\r", 1)[0][-20:]

    events = Events()
    with running_listener(handler, on_event=events) as listener:
        with RawSender(listener.port) as peer:
            peer.write_split(data, [len(data) // 3], pause=0.01)
            frames = peer.read_frames(replies)
            assert all(f.startswith(b"ACK:") for f in frames)
            with pytest.raises(TimeoutError):
                peer.read_frame(timeout=0.05)
        events.wait("connection_closed")
    assert sum(f["count"] for f in events.named("bytes_discarded")) == discarded
