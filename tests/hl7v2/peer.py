"""Test peers over real loopback sockets, for any HL7 v2 test (not only the MLLP ones).

- ``LoopThread``: an asyncio loop in a daemon thread, so synchronous tests can run our
  asyncio listener while talking to it with plain blocking sockets.
- ``running_listener(handler, ...)``: our ``Listener`` on 127.0.0.1, a free port, in a
  ``LoopThread``; closed on exit.
- ``RawSender``: a "remote sender" on a raw socket for fault injection: write any bytes,
  split frames at chosen offsets, several frames in one write, junk between frames, close
  early; read reply frames with a timeout.
- ``ReceiverPeer``: a "remote receiver" (a lab or provincial system) that records what it
  receives and answers as told by a ``ReplyPolicy`` (AA echoing MSH-10, AE, AR, a wrong
  MSA-2, no answer, a late answer, an answer in several packets or after junk, closing
  without answering); it can be stopped and restarted on the same port.

The ACK the receiver builds is deliberately naive (fields split on MSH-1), enough to give
MSA-2 = MSH-10; it is a stand-in for the other side, not our ACK builder.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from his.hl7v2.listener import Listener
from his.hl7v2.mllp import Deframer, frame

T = TypeVar("T")

LOCALHOST = "127.0.0.1"


class LoopThread:
    """An event loop running in its own daemon thread; ``run(coro)`` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a plain callable on the loop thread (to touch loop-owned state safely)."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(drain(), timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_listener(handler: Any, **options: Any) -> Iterator[Listener]:
    """Our MLLP listener on 127.0.0.1:<free port> in a background loop.

    ``options`` go to ``Listener`` (max_frame, idle_timeout, on_handler_error, ...). The
    handler and callbacks run on the loop thread. The yielded listener has ``port`` and,
    for tests, ``thread`` (the ``LoopThread``).
    """
    with LoopThread() as thread:
        listener = Listener(handler, LOCALHOST, 0, **options)
        thread.run(listener.start())
        listener.thread = thread  # type: ignore[attr-defined]
        try:
            yield listener
        finally:
            thread.run(listener.close(grace=5.0), timeout=10.0)


class RawSender:
    """A blocking raw-socket client that writes exactly the bytes it is given."""

    def __init__(self, port: int, host: str = LOCALHOST, *, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.deframer = Deframer()
        self._ready: list[bytes] = []

    # -- writing -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.write(frame(payload))

    def send_frames(self, payloads: Iterable[bytes], *, junk: bytes = b"") -> None:
        """Several frames in ONE write, ``junk`` between them (and before the first)."""
        self.write(b"".join(junk + frame(p) for p in payloads))

    def write_split(self, data: bytes, offsets: Iterable[int], *, pause: float = 0.0) -> None:
        """Write ``data`` cut at ``offsets``, pausing between pieces so reads see the cuts."""
        start = 0
        for cut in [*sorted(offsets), len(data)]:
            if cut > start:
                self.write(data[start:cut])
                start = cut
                if pause and start < len(data):
                    time.sleep(pause)

    def write_bytewise(self, data: bytes) -> None:
        for i in range(len(data)):
            self.write(data[i : i + 1])

    def shutdown_write(self) -> None:
        """Half-close: the listener sees end of stream but can still answer."""
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------

    def read_frame(self, timeout: float | None = None) -> bytes:
        """The next reply payload; TimeoutError if none in time, EOFError if closed."""
        return self.read_frames(1, timeout)[0]

    def read_frames(self, count: int, timeout: float | None = None) -> list[bytes]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._ready) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"got {len(self._ready)} of {count} reply frames")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError(f"connection closed after {len(self._ready)} of {count} frames")
            self._ready.extend(self.deframer.feed(chunk))
        out, self._ready = self._ready[:count], self._ready[count:]
        return out

    def wait_closed(self, timeout: float = 2.0) -> bool:
        """True if the other side closes the connection within ``timeout`` (bytes ignored)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self._ready.extend(self.deframer.feed(chunk))
        return False


# -- remote receiver -------------------------------------------------------------------


def msh_fields(message: bytes) -> list[bytes]:
    """MSH fields of a message, naively: ``fields[n - 1]`` is MSH-n for n >= 2."""
    first = message.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r", 1)[0]
    first = first.removeprefix(b"\xef\xbb\xbf")
    if not first.startswith(b"MSH") or len(first) < 4:
        return []
    return first.split(first[3:4])


def build_ack(message: bytes, code: str = "AA", control_id: bytes | None = None) -> bytes:
    """A minimal ACK: senders and receivers swapped, MSA-2 = MSH-10 (or ``control_id``)."""
    f = msh_fields(message)

    def get(n: int) -> bytes:
        return f[n - 1] if len(f) >= n else b""

    sep = b"|"
    msa2 = get(10) if control_id is None else control_id
    trigger = get(9).split(b"^")[1] if b"^" in get(9) else b""
    msh = sep.join(
        [
            b"MSH",
            get(2) or b"^~\\&",
            get(5),
            get(6),
            get(3),
            get(4),
            time.strftime("%Y%m%d%H%M%S").encode(),
            b"",
            b"ACK^" + trigger + b"^ACK",
            b"ACK" + msa2,
            get(11) or b"P",
            get(12) or b"2.5.1",
        ]
    )
    return msh + b"\rMSA|" + code.encode() + b"|" + msa2 + b"\r"


@dataclass
class ReplyPolicy:
    """How ``ReceiverPeer`` answers each message. Change it between sends freely."""

    code: str | None = "AA"  # None: read the message and never answer
    control_id: bytes | None = None  # MSA-2 to use instead of MSH-10 (a "wrong" ACK)
    delay: float = 0.0  # seconds before answering
    chunks: int = 1  # answer in this many TCP writes...
    chunk_pause: float = 0.02  # ...this far apart
    junk_before: bytes = b""  # bytes written before the reply's 0x0B
    trailing: bytes = b""  # bytes written right after the reply (an extra or partial frame)
    close_without_reply: bool = False  # read the message, then close the connection
    raw_reply: bytes | None = None  # exact bytes to write instead of a framed ACK
    responder: Callable[[bytes], bytes | None] | None = None  # full control: payload → reply

    def reply_bytes(self, payload: bytes) -> bytes | None:
        if self.raw_reply is not None:
            return self.raw_reply
        if self.responder is not None:
            reply = self.responder(payload)
            return None if reply is None else self.junk_before + frame(reply) + self.trailing
        if self.code is None:
            return None
        ack = build_ack(payload, self.code, self.control_id)
        return self.junk_before + frame(ack) + self.trailing


class ReceiverPeer:
    """A remote MLLP receiver on 127.0.0.1 in its own loop thread.

    ``received`` lists every payload in arrival order (across connections and restarts),
    ``replies`` the bytes written back; ``connections`` counts accepted connections.
    ``stop()`` closes the server and aborts open connections, as a crashed peer would;
    ``start()`` binds the same port again.
    """

    def __init__(self, policy: ReplyPolicy | None = None, *, port: int = 0):
        self.policy = policy or ReplyPolicy()
        self.port = port
        self.received: list[bytes] = []
        self.replies: list[bytes] = []  # the exact bytes written back, one item per answer
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = LoopThread()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> ReceiverPeer:
        async def start() -> None:
            self._server = await asyncio.start_server(
                self._serve, LOCALHOST, self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

        self._thread.run(start())
        return self

    def stop(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._thread.run(stop())

    def restart(self) -> None:
        self.stop()
        self.start()

    def shutdown(self) -> None:
        """Stop and end the loop thread (the peer cannot be started again)."""
        self.stop()
        self._thread.stop()

    def __enter__(self) -> ReceiverPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """Wait until ``count`` messages were received; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.005)
        raise TimeoutError(f"received {len(self.received)} of {count} messages")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        deframer = Deframer()
        try:
            while data := await reader.read(65536):
                for payload in deframer.feed(data):
                    with self._lock:
                        self.received.append(payload)
                    policy = self.policy
                    if policy.close_without_reply:
                        return
                    reply = policy.reply_bytes(payload)
                    if reply is None:
                        continue
                    if policy.delay:
                        await asyncio.sleep(policy.delay)
                    with self._lock:
                        self.replies.append(reply)
                    size = -(-len(reply) // max(1, policy.chunks))
                    for i in range(0, len(reply), size):
                        if i:
                            await asyncio.sleep(policy.chunk_pause)
                        writer.write(reply[i : i + size])
                        await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
