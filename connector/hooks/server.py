"""The hook listener: ``POST /hooks/servicenow/<source>`` on an address of its own, optionally over
TLS, served by a fixed pool of threads with a deadline per connection
(:class:`~connector.listener.BoundedHTTPServer`: 503 when full). What a request gets is decided by
:class:`~connector.hooks.gate.Gate`; this module only speaks HTTP. Every connection is closed after
its one answer. Request lines are logged at DEBUG only, bodies never.
"""

from __future__ import annotations

import logging
import ssl
from http.server import BaseHTTPRequestHandler
from typing import Any

from connector.hooks.gate import Gate
from connector.listener import Listener

log = logging.getLogger(__name__)

#: threads serving connections (and places in the queue of those waiting for one)
WORKERS = 8
#: seconds a connection may take from accept to its end, TLS handshake and body included
REQUEST_TIMEOUT = 5.0


class HookServer:
    def __init__(
        self,
        host: str,
        port: int,
        gate: Gate,
        *,
        tls: ssl.SSLContext | None = None,
        workers: int = WORKERS,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._host = host
        self.gate = gate
        self._tls = tls
        self._listener = Listener(
            "hook listener",
            "hooks",
            (host, port),
            lambda: _make_handler(gate, request_timeout),
            workers=workers,
            timeout=request_timeout,
            tls=tls,
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0 and started)."""
        return self._listener.port

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in daemon threads; raises OSError if the address cannot be bound. A thread
        that cannot be started is logged: no hints, the polls go on."""
        if self._listener.start():
            sources = ", ".join(self.gate.sources)
            log.info("hook listener on %s/hooks/servicenow/<source> (%s)", self.url, sources)

    def stop(self) -> None:
        self._listener.stop()


def _make_handler(gate: Gate, request_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "itsm-connector"
        sys_version = ""
        timeout = request_timeout

        def do_POST(self) -> None:
            self._handle(send_body=True)

        def do_GET(self) -> None:
            self._handle(send_body=True)

        def do_PUT(self) -> None:
            self._handle(send_body=True)

        def do_HEAD(self) -> None:
            self._handle(send_body=False)

        def _handle(self, send_body: bool) -> None:
            self.close_connection = True
            reply = gate.receive(
                self.command, self.path, self.headers, self.rfile.read, self.client_address[0]
            )
            if reply is None:
                return
            body = reply.body
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("hook listener: %s - " + format, self.address_string(), *args)

    return Handler
