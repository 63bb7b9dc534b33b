"""What the fake outside services of the tests share: a real HTTP server on 127.0.0.1 in a
thread of its own, and writing an answer the way those services do."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    """A context manager serving ``handler_class`` on a free port of 127.0.0.1 while open.
    ``_stopping`` is set on exit, so an answer held back on purpose (a slow-gateway test) is
    let go at once and the server closes without waiting for it."""

    def _serve(self, handler_class: type[BaseHTTPRequestHandler]) -> None:
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


def reply(handler: BaseHTTPRequestHandler, status: int, text: str, content_type: str) -> None:
    """Writes the answer; a client that gave up meanwhile (a timeout test) is no error."""
    data = text.encode("utf-8")
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", f"{content_type}; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output free of access-log lines."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
