"""HTTP for the ServiceNow simulator: the reply it sends (``Reply``, ``envelope`` for ServiceNow's
error envelope), and the threaded loopback server that hands every request to one callable
(``ServiceNowSimulator._handle``), which decides faults, answers and the request log.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = "application/json;charset=UTF-8"


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def envelope(
    status: int, message: str, detail: str | None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return Reply(status, dump(body), headers=headers or [])


def dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


#: (method, path and query, Authorization header, body) -> the reply, or None: close the socket unanswered
Handle = Callable[[str, str, "str | None", bytes], "Reply | None"]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handle: Handle) -> None:
        self.handle = handle
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so their handler threads finish."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-answer are normal here; stay quiet


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as web servers and load balancers in front of an instance set it: with Nagle on,
    # the body (written after the headers) of an answer smaller than a segment waited for the
    # client's delayed ACK, ~40 ms per small answer (task_ci, by-id lookups) that no instance adds.
    disable_nagle_algorithm = True
    server: Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.handle(method, self.path, self.headers.get("Authorization"), body)
        if reply is None:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)
