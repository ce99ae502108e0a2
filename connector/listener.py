"""An HTTP server that no number of clients can exhaust: a fixed pool of worker threads, a bounded
queue, and a deadline on every connection.

The stdlib ``ThreadingHTTPServer`` starts one thread per connection and waits for a request as long
as the client likes: 500 half-sent requests held 504 threads, and under systemd's ``TasksMax`` the
daemon's own threads then failed to start. Here:

* ``workers`` threads are started once, in :meth:`BoundedHTTPServer.start_workers`; serving never
  starts another;
* an accepted connection waits in a queue of ``workers`` places for a free worker; when the queue is
  full it is answered ``503`` at once, from the accepting thread, without reading it;
* every connection has ``timeout`` seconds from its accept to its end, the request read included
  (each read also times out after that long): the accepting thread, between two ``select`` calls,
  shuts down the sockets that are past their deadline, so a client sending one byte every few
  seconds is cut off too;
* an exception in a handler is logged and ends that connection only: the worker carries on;
* with a TLS context, the accepting thread only wraps the socket: the handshake happens in the
  worker, within the connection's deadline (a full listener then closes the connection: the 503
  cannot be sent before a handshake);
* a host with a ``:`` (``::1``) is bound over IPv6.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: what a connection that finds every worker busy and the queue full is told, before it is closed
BUSY_REPLY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n"
)


class BoundedHTTPServer(HTTPServer):
    """``HTTPServer`` whose connections are served by a fixed pool of threads, each within ``timeout``
    seconds. Run :meth:`serve_forever` in one thread after :meth:`start_workers`."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        workers: int,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
        label: str = "health listener",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # the stdlib server binds IPv4 unless told
        super().__init__(address, handler)
        self.tls = tls
        self.label = label
        self.workers = workers
        self.connection_timeout = timeout
        self._monotonic = monotonic
        self._waiting: queue.Queue[tuple[socket.socket, Any] | None] = queue.Queue(maxsize=workers)
        self._deadlines: dict[socket.socket, float] = {}
        self._deadlines_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.refused = 0  # connections answered 503 because every worker was busy

    def start_workers(self, name: str) -> int:
        """Start the pool; returns how many threads started. A thread that cannot be started (the
        process is at its task limit) is logged, not raised: the listener serves with fewer."""
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            try:
                thread.start()
            except RuntimeError as e:  # "can't start new thread"
                log.error(
                    "%s: started %d of %d worker threads (%s); serving with those",
                    self.label,
                    len(self._threads),
                    self.workers,
                    e,
                )
                break
            self._threads.append(thread)
        return len(self._threads)

    def stop_workers(self, timeout: float = 5) -> None:
        """After ``shutdown()``: close the waiting connections, end the workers, wait for them."""
        while True:
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        with self._deadlines_lock:
            for sock in list(self._deadlines):
                _cut(sock)
        for _ in self._threads:
            self._waiting.put(None)
        deadline = self._monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - self._monotonic()))
        self._threads = []

    # -- in the accepting thread ------------------------------------------------------------------
    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:  # no I/O here: the handshake is the worker's, within the deadline
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        if not self._threads:
            self._refuse(sock)
            return
        with self._deadlines_lock:
            self._deadlines[sock] = self._monotonic() + self.connection_timeout
        try:
            self._waiting.put_nowait((sock, client_address))
        except queue.Full:
            with self._deadlines_lock:
                self._deadlines.pop(sock, None)
            self._refuse(sock)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` after every ``select``: cut the connections past their deadline
        (the worker reading or writing one sees its end at once and moves on)."""
        now = self._monotonic()
        with self._deadlines_lock:
            late = [s for s, deadline in self._deadlines.items() if deadline <= now]
            for sock in late:
                del self._deadlines[sock]
        for sock in late:
            log.debug("%s: connection cut after %.0fs", self.label, self.connection_timeout)
            _cut(sock)

    def _refuse(self, sock: socket.socket) -> None:
        """``503`` without waiting for anything: the bytes fit in an empty socket buffer."""
        self.refused += 1
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # what already arrived: closing over unread data resets
                sock.recv(65536)
            with contextlib.suppress(OSError):
                sock.send(BUSY_REPLY)
        finally:
            self.shutdown_request(sock)

    # -- in a worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._waiting.get()
            if item is None:
                return
            sock, address = item
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sock.settimeout(self.connection_timeout)
                    sock.do_handshake()
                self.finish_request(sock, address)
            except Exception:  # a client gone mid-answer, a handler bug, a failed handshake
                log.debug("%s: connection from %s failed", self.label, address, exc_info=True)
            finally:
                with self._deadlines_lock:
                    self._deadlines.pop(sock, None)
                self.shutdown_request(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection from %s failed", self.label, client_address, exc_info=True)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its worker
        sock.shutdown(socket.SHUT_RDWR)


class Listener:
    """A :class:`BoundedHTTPServer` in threads of its own: :meth:`start` binds (``OSError`` when the
    address cannot be bound) and serves; :meth:`stop` ends it. A thread that cannot be started (a task
    limit) is logged and the listener stays off: the daemon goes on without it."""

    def __init__(
        self,
        label: str,
        name: str,
        address: tuple[str, int],
        handler: Callable[[], type[BaseHTTPRequestHandler]],
        *,
        workers: int,
        timeout: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.label, self._name, self._address = label, name, address
        self._handler = handler
        self._workers, self._timeout, self._tls = workers, timeout, tls
        self._server: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0 and started)."""
        return int(self._server.server_address[1]) if self._server is not None else self._address[1]

    @property
    def refused(self) -> int:
        """Connections answered 503 because every worker was busy."""
        return self._server.refused if self._server is not None else 0

    @property
    def serving(self) -> bool:
        return self._thread is not None

    def start(self) -> bool:
        """Bind and serve; True when serving."""
        if self._server is not None:
            return self.serving
        server = BoundedHTTPServer(
            self._address,
            self._handler(),
            workers=self._workers,
            timeout=self._timeout,
            tls=self._tls,
            label=self.label,
        )
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how quickly stop() returns and late connections are cut
            name=f"{self._name}-http",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError as e:  # "can't start new thread": no listener, the daemon goes on
            log.error("%s off: cannot start its thread (%s)", self.label, e)
            server.server_close()
            return False
        self._server, self._thread = server, thread
        server.start_workers(f"{self._name}-worker")
        return True

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.stop_workers()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
