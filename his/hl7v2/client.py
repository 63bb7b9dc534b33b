"""MLLP clients for the outbound dispatcher: send one frame, read exactly one reply frame.

``MllpClient`` is blocking (a dispatcher worker thread or process owns one per peer);
``AsyncMllpClient`` is the same contract on asyncio streams. Both:

- keep one connection open across sends, and open a new one when the previous one was
  closed by the peer while idle (checked before each send, so a restarted peer costs no
  failed message);
- read until one *complete* reply frame has arrived, however many TCP segments it takes
  and whatever junk precedes its 0x0B (python-hl7's client returns after a single recv);
- never let a late reply be read as the answer to the next message: after a timeout or an
  error the connection is dropped, and stray bytes found before a send are discarded.

Errors say whether the message may have reached the peer (``exc.sent``). When it may have,
the caller retries with the same MSH-10 and the receiver deduplicates; the client itself
never resends. The client reads bytes only: checking MSA-2 against MSH-10 is the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from types import TracebackType

from his.hl7v2.mllp import DEFAULT_MAX_FRAME, Deframer, FrameTooLarge, frame
from his.logging import get_logger

log = get_logger(__name__)

READ_SIZE = 64 * 1024


class MllpError(Exception):
    """Base of client errors. ``sent``: the message may have reached the peer."""

    def __init__(self, message: str, *, sent: bool = False):
        super().__init__(message)
        self.sent = sent


class MllpConnectionError(MllpError):
    """Could not connect, or the connection broke before a complete reply arrived."""


class MllpTimeout(MllpError):
    """No complete reply frame within ``ack_timeout`` (a connect timeout is a connection error)."""


class MllpProtocolError(MllpError):
    """The peer's reply broke the framing rules (a reply larger than ``max_frame``)."""


class MllpClient:
    """Blocking MLLP client with a persistent, self-repairing connection.

    Not thread-safe: one client per worker and peer (replies are matched to sends by order).

    >>> with MllpClient("lab.example", 2575) as client:
    ...     ack = client.send(message_bytes)
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        ack_timeout: float = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        read_size: int = READ_SIZE,
    ):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_frame = max_frame
        self.read_size = read_size
        self._sock: socket.socket | None = None
        self._deframer = Deframer(max_frame)
        self.connects = 0  # connections opened, for metrics and tests

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection now (``send`` does it on demand)."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise MllpConnectionError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise MllpConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._deframer = Deframer(self.max_frame)
        self.connects += 1
        log.debug("mllp.client_connected", peer=f"{self.host}:{self.port}")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_idle_connection(self) -> None:
        """Before reusing the socket: drop it if the peer closed it, drop stray bytes."""
        sock = self._sock
        if sock is None:
            return
        stray = 0
        while True:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                break
            try:
                data = sock.recv(self.read_size)
            except OSError:
                data = b""
            if not data:
                log.info("mllp.client_reconnect", peer=f"{self.host}:{self.port}")
                self.close()
                return
            stray += len(data)
        if stray or self._deframer.pending_bytes:
            # A late or extra reply: it answers nothing we are waiting for.
            log.warning("mllp.client_stray_bytes", peer=f"{self.host}:{self.port}", count=stray)
            self._deframer = Deframer(self.max_frame)

    def send(self, payload: bytes) -> bytes:
        """Send one message; return the payload of the one reply frame."""
        data = frame(payload)
        self._check_idle_connection()
        self.connect()
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + self.ack_timeout
        try:
            sock.settimeout(self.ack_timeout)
            sock.sendall(data)
        except TimeoutError as exc:
            self.close()
            raise MllpTimeout("peer does not read (send timed out)", sent=True) from exc
        except OSError as exc:
            self.close()
            raise MllpConnectionError(f"connection lost while sending: {exc}", sent=True) from exc
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise MllpTimeout(f"no reply within {self.ack_timeout} s", sent=True)
            try:
                sock.settimeout(remaining)
                chunk = sock.recv(self.read_size)
            except TimeoutError as exc:
                self.close()
                raise MllpTimeout(f"no reply within {self.ack_timeout} s", sent=True) from exc
            except OSError as exc:
                self.close()
                raise MllpConnectionError(
                    f"connection lost before reply: {exc}", sent=True
                ) from exc
            if not chunk:
                self.close()
                raise MllpConnectionError("peer closed the connection before replying", sent=True)
            try:
                frames = self._deframer.feed(chunk)
            except FrameTooLarge as exc:
                self.close()
                raise MllpProtocolError(str(exc), sent=True) from exc
            if frames:
                if len(frames) > 1:
                    log.warning("mllp.client_extra_replies", count=len(frames) - 1)
                return frames[0]


class AsyncMllpClient:
    """``MllpClient`` on asyncio streams: ``await send(payload)``, ``await close()``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        ack_timeout: float = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
        read_size: int = READ_SIZE,
    ):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_frame = max_frame
        self.read_size = read_size
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._deframer = Deframer(max_frame)
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> None:
        if self._writer is not None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=self.read_size
                )
        except TimeoutError as exc:
            raise MllpConnectionError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise MllpConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._reader, self._writer = reader, writer
        self._deframer = Deframer(self.max_frame)
        self.connects += 1

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def __aenter__(self) -> AsyncMllpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _check_idle_connection(self) -> None:
        """As in ``MllpClient``: reconnect if the peer left, discard stray bytes."""
        reader = self._reader
        if reader is None:
            return
        # Two loop turns: the first runs the selector, the second the I/O callbacks it
        # queued, so an EOF or bytes that arrived while idle are in the reader now.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        stray = len(reader._buffer)  # StreamReader has no public "buffered" count
        if stray:
            await reader.read(stray)
        if reader.at_eof() or reader.exception() is not None:
            log.info("mllp.client_reconnect", peer=f"{self.host}:{self.port}")
            await self.close()
            return
        if stray or self._deframer.pending_bytes:
            log.warning("mllp.client_stray_bytes", peer=f"{self.host}:{self.port}", count=stray)
            self._deframer = Deframer(self.max_frame)

    async def send(self, payload: bytes) -> bytes:
        data = frame(payload)
        await self._check_idle_connection()
        await self.connect()
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            async with asyncio.timeout(self.ack_timeout):
                try:
                    writer.write(data)
                    await writer.drain()
                except OSError as exc:
                    raise MllpConnectionError(
                        f"connection lost while sending: {exc}", sent=True
                    ) from exc
                while True:
                    try:
                        chunk = await reader.read(self.read_size)
                    except OSError as exc:
                        raise MllpConnectionError(
                            f"connection lost before reply: {exc}", sent=True
                        ) from exc
                    if not chunk:
                        raise MllpConnectionError(
                            "peer closed the connection before replying", sent=True
                        )
                    try:
                        frames = self._deframer.feed(chunk)
                    except FrameTooLarge as exc:
                        raise MllpProtocolError(str(exc), sent=True) from exc
                    if frames:
                        return frames[0]
        except TimeoutError as exc:
            await self.close()
            raise MllpTimeout(f"no reply within {self.ack_timeout} s", sent=True) from exc
        except MllpError:
            await self.close()
            raise
