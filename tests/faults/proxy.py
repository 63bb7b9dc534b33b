"""A TCP forwarder in front of PostgreSQL that a test can cut and restore: the database
connection is really lost (sockets closed, new connections refused or left unanswered),
not simulated inside the app."""

from __future__ import annotations

import contextlib
import socket
import threading


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``target``. Three states:

    - ``restore()``: forwarding (the initial state);
    - ``cut()``: every forwarded connection closed and new ones refused (the database
      server stopped or restarted);
    - ``silence()``: every forwarded connection closed, new ones accepted but never
      answered (a host that vanished from the network: packets dropped, no refusal).
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = "open"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._listen()

    # -- states ----------------------------------------------------------------------------

    def cut(self) -> None:
        self.mode = "cut"
        self._stop_listening()
        self._close_all()

    def silence(self) -> None:
        self.mode = "silent"
        self._close_all()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        self.mode = "open"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stop_listening()
        self._close_all()

    # -- plumbing --------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)  # the accept loop notices a stop within 0.1 s
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            if self._accepting is not None:
                self._accepting.join(timeout=2)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            if self.mode != "open":
                continue  # silent: held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._drop(client)
                continue
            upstream.settimeout(None)
            self._track(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        # Either side closed, or cut() closed both: the pump ends and both sockets go.
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        self._drop(source)
        self._drop(sink)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._drop(sock)
