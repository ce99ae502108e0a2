"""HTTP for the Slack simulator: the reply it sends (``Reply``), a request's parameters from the query
and the JSON or form body, and the threaded loopback server that hands every ``/api/<method>``
request to one callable (``SlackSimulator._handle``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connector.simulators.slack_call import Body, Params


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    retry_after: int | None = None
    headers: tuple[tuple[str, str], ...] = ()  # e.g. X-OAuth-Scopes, which Slack sends on every answer


def json_reply(status: int, body: Body, retry_after: int | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), retry_after=retry_after)


def decode_params(query: str, body: bytes, content_type: str) -> Params:
    params: Params = dict(parse_qsl(query, keep_blank_values=True))
    if not body:
        return params
    if content_type.split(";")[0].strip().lower() == "application/json":
        decoded = json.loads(body)
        if not isinstance(decoded, dict):
            raise ValueError("JSON body must be an object")
        params.update(decoded)
    else:
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return params


#: (method, query, body, content type, authorization) -> the reply, or None: close the socket unanswered
Handle = Callable[[str, str, bytes, str, str], "Reply | None"]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handle: Handle) -> None:
        super().__init__(address, Handler)
        self.handle = handle

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (timeout) before a slow answer: expected, stay quiet
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "SlackSim/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not url.path.startswith("/api/"):
            self._send(json_reply(404, {"ok": False, "error": "unknown_method"}))
            return
        reply = self.server.handle(
            url.path.removeprefix("/api/"),
            url.query,
            body,
            self.headers.get("Content-Type", ""),
            self.headers.get("Authorization", ""),
        )
        if reply is None:
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.retry_after is not None:
            self.send_header("Retry-After", str(reply.retry_after))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)
