"""The MLLP listener process (`his hl7 listen`): the asyncio listener in front, the
database work on one worker thread behind it.

One thread, on purpose: messages are stored and applied in the order they arrived, across
all connections, so one patient's messages are applied in order and SQLite (one writer)
never waits on itself. The event loop keeps reading and framing meanwhile. Messages
accepted in enhanced mode are applied by the same thread between frames.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

from flask import Flask

from his.config import Settings
from his.db import Database, utcnow
from his.hl7v2.ack import ErrorDetail, build_ack, encode_ack
from his.hl7v2.inbound import Receiver, new_ack_id
from his.hl7v2.listener import Connection, Listener, serve
from his.logging import get_logger

log = get_logger(__name__)

APPLY_INTERVAL = 1.0  # seconds between rounds of applying messages accepted in enhanced mode


class Hl7Server:
    def __init__(self, app: Flask, database: Database, settings: Settings):
        self.app = app
        self.receiver = Receiver(database, settings)
        self.settings = settings
        self.worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hl7-db")
        self._applier: asyncio.Task | None = None

    def _in_app(self, func: Callable, *args):
        # Error texts are translated in the deployment's language: they need an app context.
        with self.app.app_context():
            return func(*args)

    async def _run(self, func: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.worker, self._in_app, func, *args
        )

    async def handle(self, frame: bytes, conn: Connection) -> bytes | None:
        return await self._run(self.receiver.handle, frame, f"{conn.peer_host}:{conn.peer_port}")

    def on_handler_error(self, frame: bytes, exc: BaseException) -> bytes:
        """A failure we did not foresee still gets an answer (AE), never a silent close."""
        log.error("hl7.handler_failed", error=repr(exc))
        with self.app.app_context():
            detail = ErrorDetail(207, "", "Internal error; the message was not applied.")
            return encode_ack(
                build_ack(
                    None, "AE", control_id=new_ack_id(), now=utcnow(), errors=[detail], raw=frame
                )
            )

    async def _apply_loop(self) -> None:
        while True:
            try:
                await self._run(self.receiver.apply_pending)
            except Exception:
                log.exception("hl7.apply_round_failed")
            await asyncio.sleep(APPLY_INTERVAL)

    async def start(self, host: str, port: int) -> Listener:
        listener = await serve(
            self.handle,
            host,
            port,
            max_frame=self.settings.mllp_max_frame,
            idle_timeout=self.settings.mllp_idle_timeout,
            max_connections=self.settings.mllp_max_connections,
            frame_timeout=self.settings.mllp_frame_timeout,
            on_handler_error=self.on_handler_error,
        )
        self._applier = asyncio.create_task(self._apply_loop())
        return listener

    async def stop(self, listener: Listener) -> None:
        await listener.close()
        if self._applier is not None:
            self._applier.cancel()
        self.worker.shutdown(wait=True)


def run(settings: Settings, *, with_parent: bool = False) -> None:
    """`his hl7 listen`: serve MLLP until SIGTERM/SIGINT (or, with ``with_parent``, until
    the process that started it is gone: how `make run` starts it)."""
    import os
    import signal

    from his import create_app

    database = Database.from_url(settings.database_url)
    app = create_app(settings, database=database)
    server = Hl7Server(app, database, settings)
    parent = os.getppid()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listener = await server.start(settings.mllp_host, settings.mllp_port)
        log.info("hl7.listening", host=settings.mllp_host, port=listener.port)
        print(f"MLLP listening on {settings.mllp_host}:{listener.port}", flush=True)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                if with_parent and os.getppid() != parent:
                    break
        await server.stop(listener)

    asyncio.run(main())
