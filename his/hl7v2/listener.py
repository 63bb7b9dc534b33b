"""Asyncio MLLP server: frames in, replies out, one connection never harms another.

The listener knows bytes only. For each complete frame it awaits ``handler(payload, conn)``
and writes the returned payload back, framed, on the same socket. Decoding, storing and
building ACKs belong to the handler (the lead's code); blocking database work is the
handler's business too (it wraps it in ``loop.run_in_executor``).

Ordering: a connection reads, then handles its frames strictly one at a time, writing each
reply before handling the next frame, so replies leave in the order the frames arrived,
pipelined frames included. While a handler runs nothing more is read from that socket;
TCP flow control holds the sender back.

Failures, decided here once:
- handler raises (or returns something that cannot be framed): ``on_handler_error(frame,
  exc)`` gives the reply (the lead builds an AE/AR ACK there). If it returns None, raises,
  or was not given, only that connection is closed, after logging. The listener and the
  other connections carry on.
- frame larger than ``max_frame``: frames completed before it are answered first, then
  ``on_frame_too_large(conn)`` may give a last reply, and the connection is closed (the
  rest of the stream cannot be trusted to be in step).
- no byte for ``idle_timeout`` seconds: the connection is closed. Time spent in the
  handler does not count: the timer only runs while waiting for bytes.
- peer closes mid-frame: the partial frame is dropped and logged.
- ``close()``: stop accepting, let handlers already running finish and write their reply,
  then close every connection. Frames read but not yet handled are not answered: the
  sender did not get an ACK and sends them again.

Logs never hold payload bytes (they carry patient data); only sizes and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from his.hl7v2.mllp import DEFAULT_MAX_FRAME, Deframer, FrameTooLarge, frame
from his.logging import get_logger

log = get_logger(__name__)

READ_SIZE = 64 * 1024


@dataclass
class Connection:
    """One accepted peer connection, as handlers and event callbacks see it."""

    id: int
    peer_host: str
    peer_port: int
    opened_at: datetime
    messages: int = 0  # frames handled
    bytes_in: int = 0
    bytes_out: int = 0
    discarded_bytes: int = 0
    closed_reason: str | None = None
    _busy: bool = field(default=False, repr=False)


Handler = Callable[[bytes, Connection], Awaitable[bytes | None]]
"""Given one frame payload, return the reply payload (unframed), or None for no reply."""

HandlerErrorReply = Callable[[bytes, BaseException], "bytes | Awaitable[bytes | None] | None"]
"""``on_handler_error(frame, exc)``: reply to send when the handler failed; None closes."""

TooLargeReply = Callable[[Connection], "bytes | Awaitable[bytes | None] | None"]
"""``on_frame_too_large(conn)``: last reply before the connection is closed, or None."""

EventCallback = Callable[..., None]
"""``on_event(event: str, conn: Connection, **fields)`` for metrics; must not block.

Events: connection_opened, connection_closed (reason), frame (size), reply (size, seconds),
bytes_discarded (count), frame_too_large (limit), handler_error (error), idle_timeout,
partial_frame_dropped (size)."""


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Listener:
    """An MLLP server. ``await start()``, then ``port`` is the bound port (port 0 in tests)."""

    def __init__(
        self,
        handler: Handler,
        host: str = "0.0.0.0",  # noqa: S104 - a listener for other hosts; the CLI passes HIS_MLLP_HOST
        port: int = 2575,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        idle_timeout: float = 300.0,
        on_handler_error: HandlerErrorReply | None = None,
        on_frame_too_large: TooLargeReply | None = None,
        on_event: EventCallback | None = None,
        read_size: int = READ_SIZE,
        max_connections: int = 100,
        frame_timeout: float = 60.0,
    ):
        self.handler = handler
        self.host = host
        self.requested_port = port
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.on_handler_error = on_handler_error
        self.on_frame_too_large = on_frame_too_large
        self.on_event = on_event
        self.read_size = read_size
        # Bounds on what slow or hostile senders can hold: connections at once, and how
        # long one frame may take to arrive once begun (a byte every few minutes would
        # otherwise keep a connection and its buffer forever).
        self.max_connections = max_connections
        self.frame_timeout = frame_timeout
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        self._ids = itertools.count(1)
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.requested_port, limit=self.read_size
        )
        log.info("mllp.listening", host=self.host, port=self.port, max_frame=self.max_frame)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("listener not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def connections(self) -> list[Connection]:
        return list(self._tasks.values())

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let running handlers finish (up to ``grace`` s), close all."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Connections waiting for bytes hold nothing unanswered: stop them now. Busy ones
        # see ``_closing`` after writing their reply and leave on their own.
        for task, conn in list(self._tasks.items()):
            if not conn._busy:
                task.cancel()
        if self._tasks:
            _done, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("mllp.stopped")

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- per connection ----------------------------------------------------------------

    def _emit(self, event: str, conn: Connection, **fields: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event, conn, **fields)
        except Exception:
            log.exception("mllp.event_callback_failed", mllp_event=event, conn_id=conn.id)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.close()
            return
        peer = writer.get_extra_info("peername") or ("?", 0)
        if len(self._tasks) >= self.max_connections:
            log.warning(
                "mllp.connection_refused", peer=f"{peer[0]}:{peer[1]}", limit=self.max_connections
            )
            writer.close()
            return
        conn = Connection(
            id=next(self._ids),
            peer_host=str(peer[0]),
            peer_port=int(peer[1]),
            opened_at=datetime.now(UTC),
        )
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = conn
        log.info("mllp.connection_opened", conn_id=conn.id, peer=f"{peer[0]}:{peer[1]}")
        self._emit("connection_opened", conn)
        reason = "error"
        try:
            reason = await self._serve(conn, reader, writer)
        except asyncio.CancelledError:
            reason = "shutdown"
        except Exception:
            log.exception("mllp.connection_failed", conn_id=conn.id)
        finally:
            conn.closed_reason = reason
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._tasks.pop(task, None)
            log.info(
                "mllp.connection_closed",
                conn_id=conn.id,
                reason=reason,
                messages=conn.messages,
                bytes_in=conn.bytes_in,
                bytes_out=conn.bytes_out,
                discarded_bytes=conn.discarded_bytes,
            )
            self._emit("connection_closed", conn, reason=reason)

    async def _serve(
        self, conn: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        """Run one connection; return why it ended."""
        deframer = Deframer(self.max_frame)
        loop = asyncio.get_running_loop()
        frame_began: float | None = None
        while not self._closing:
            wait = self.idle_timeout
            if frame_began is not None:
                wait = min(wait, max(0.0, frame_began + self.frame_timeout - loop.time()))
            try:
                async with asyncio.timeout(wait):
                    data = await reader.read(self.read_size)
            except TimeoutError:
                if frame_began is not None and wait < self.idle_timeout:
                    log.warning(
                        "mllp.frame_timeout",
                        conn_id=conn.id,
                        seconds=self.frame_timeout,
                        pending_bytes=deframer.pending_bytes,
                    )
                    self._emit("frame_timeout", conn)
                    return "frame_timeout"
                log.info(
                    "mllp.idle_timeout",
                    conn_id=conn.id,
                    seconds=self.idle_timeout,
                    pending_bytes=deframer.pending_bytes,
                )
                self._emit("idle_timeout", conn)
                return "idle_timeout"
            except ConnectionError:
                data = b""
            if not data:
                dropped = deframer.close()
                self._note_discarded(conn, deframer)
                if dropped:
                    log.warning("mllp.partial_frame_dropped", conn_id=conn.id, size=dropped)
                    self._emit("partial_frame_dropped", conn, size=dropped)
                return "peer_closed"
            conn.bytes_in += len(data)
            too_large: FrameTooLarge | None = None
            try:
                frames = deframer.feed(data)
            except FrameTooLarge as exc:
                frames, too_large = exc.frames, exc
            self._note_discarded(conn, deframer)
            if not deframer.in_frame:
                frame_began = None
            elif frame_began is None or frames:
                frame_began = loop.time()  # a new frame began in this read
            for payload in frames:
                if not await self._handle(conn, payload, writer):
                    return "handler_error"
                if self._closing:
                    return "shutdown"
            if too_large is not None:
                await self._refuse_too_large(conn, writer)
                return "frame_too_large"
        return "shutdown"

    def _note_discarded(self, conn: Connection, deframer: Deframer) -> None:
        new = deframer.discarded_bytes - conn.discarded_bytes
        if new:
            conn.discarded_bytes = deframer.discarded_bytes
            log.info("mllp.bytes_discarded", conn_id=conn.id, count=new)
            self._emit("bytes_discarded", conn, count=new)

    async def _handle(self, conn: Connection, payload: bytes, writer: asyncio.StreamWriter) -> bool:
        """Handle one frame and write its reply; False means: close this connection."""
        conn._busy = True
        try:
            started = asyncio.get_running_loop().time()
            conn.messages += 1
            log.debug("mllp.frame", conn_id=conn.id, size=len(payload))
            self._emit("frame", conn, size=len(payload))
            try:
                reply = await self.handler(payload, conn)
                out = frame(reply) if reply is not None else None
            except Exception as exc:
                log.exception("mllp.handler_error", conn_id=conn.id, size=len(payload))
                self._emit("handler_error", conn, error=exc)
                out = await self._fallback(conn, payload, exc)
                if out is None:
                    return False
            if out is not None:
                writer.write(out)
                await writer.drain()
                conn.bytes_out += len(out)
                seconds = asyncio.get_running_loop().time() - started
                log.debug("mllp.reply", conn_id=conn.id, size=len(out), seconds=seconds)
                self._emit("reply", conn, size=len(out), seconds=seconds)
            return True
        except ConnectionError:
            log.info("mllp.reply_not_sent", conn_id=conn.id, reason="connection lost")
            return False
        finally:
            conn._busy = False

    async def _fallback(self, conn: Connection, payload: bytes, exc: Exception) -> bytes | None:
        if self.on_handler_error is None:
            return None
        try:
            reply = await _maybe_await(self.on_handler_error(payload, exc))
            return frame(reply) if reply is not None else None
        except Exception:
            log.exception("mllp.fallback_reply_failed", conn_id=conn.id)
            return None

    async def _refuse_too_large(self, conn: Connection, writer: asyncio.StreamWriter) -> None:
        log.warning("mllp.frame_too_large", conn_id=conn.id, limit=self.max_frame)
        self._emit("frame_too_large", conn, limit=self.max_frame)
        if self.on_frame_too_large is None:
            return
        try:
            reply = await _maybe_await(self.on_frame_too_large(conn))
            if reply is not None:
                out = frame(reply)
                writer.write(out)
                await writer.drain()
                conn.bytes_out += len(out)
        except Exception:
            log.exception("mllp.too_large_reply_failed", conn_id=conn.id)


async def serve(handler: Handler, host: str, port: int, **options: Any) -> Listener:
    """Start a listener and return it (already accepting); ``await listener.close()``.
    ``options`` are :class:`Listener`'s keyword options."""
    listener = Listener(handler, host, port, **options)
    await listener.start()
    return listener


def run_forever(
    handler: Handler,
    host: str,
    port: int,
    *,
    on_started: Callable[[Listener], object] | None = None,
    grace: float = 10.0,
    **options: Any,
) -> None:
    """Run a listener until SIGTERM or SIGINT, then shut down gracefully (for the CLI).

    ``options`` are ``serve``'s keyword options. ``on_started(listener)`` runs once the
    port is bound (the CLI logs it; tests read the port from it).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listener = await serve(handler, host, port, **options)
        if on_started is not None:
            on_started(listener)
        try:
            await stop.wait()
            log.info("mllp.shutdown_requested")
        finally:
            await listener.close(grace)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
