"""The board's HTTP edge, mounted on the health listener (:class:`connector.health.HealthServer`).

- ``/board`` and ``/board/<channel>``: the page (one static file; it reads its data from the API);
- ``/board/assets/board.css``, ``/board/assets/board.js``: the page's only other files;
- ``/api/windows`` and ``/api/windows/<channel>``: the data, JSON version 1 (docs/board.md).

Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from another
origin). With a token configured, every path here needs it: ``Authorization: Bearer <token>``, or Basic
with the token as the password (what a wall screen's browser can be given); compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import replace
from http import HTTPStatus
from importlib import resources
from typing import Any

from connector.health import Request, Response

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
REALM = 'Basic realm="itsm-connector board", charset="UTF-8"'
ASSETS = {
    "board.css": "text/css; charset=utf-8",
    "board.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
GZIP_FROM = 1024  # bytes: smaller answers gain nothing

#: the data of one view: ``None`` for every window, else a channel id
Data = Callable[[str | None], dict[str, Any]]


def _static(name: str) -> bytes:
    return resources.files("connector.board").joinpath("static").joinpath(name).read_bytes()


def _compressed(r: Response, accept: str) -> Response:
    """gzip for a client that takes it (every browser): 500 windows of JSON go from ~300 KB to ~20 KB."""
    vary = (("Vary", "Accept-Encoding"),)
    codings = {c.split(";")[0].strip().lower() for c in accept.split(",")}
    if len(r.body) < GZIP_FROM or "gzip" not in codings or r.ctype.startswith("image/"):
        return replace(r, headers=r.headers + vary)
    body = gzip.compress(r.body, compresslevel=6, mtime=0)
    return replace(r, body=body, headers=(*r.headers, *vary, ("Content-Encoding", "gzip")))


class BoardSite:
    """A mount for :class:`~connector.health.HealthServer`: answers the board's paths, ``None`` else."""

    def __init__(self, data: Data, channels: Collection[str], token: str | None = None) -> None:
        self._data = data
        self._channels = frozenset(channels)
        self._token = token.encode() if token else None
        # Read once: a few kilobytes, and a page load then touches no disk.
        self._files = {name: _static(name) for name in (*ASSETS, "board.html")}

    def __call__(self, request: Request) -> Response | None:
        path = request.path
        if not any(path == p or path.startswith(p + "/") for p in ("/board", "/api/windows")):
            return None
        if not self._authorized(request.headers.get("Authorization")):
            return self._answer(HTTPStatus.UNAUTHORIZED, TEXT, b"authorization required\n", auth=True)
        return _compressed(self._route(path), request.headers.get("Accept-Encoding") or "")

    def _route(self, path: str) -> Response:
        if path in ("/board", "/board/"):
            return self._answer(HTTPStatus.OK, HTML, self._files["board.html"])
        if path.startswith("/board/assets/"):
            name = path.removeprefix("/board/assets/")
            if name in ASSETS:
                return self._answer(HTTPStatus.OK, ASSETS[name], self._files[name])
            return self._not_found()
        if path.startswith("/board/"):
            channel = path.removeprefix("/board/").rstrip("/")
            if channel in self._channels:
                return self._answer(HTTPStatus.OK, HTML, self._files["board.html"])
            return self._not_found()
        wanted = path.removeprefix("/api/windows").strip("/") or None
        if wanted is not None and wanted not in self._channels:
            return self._not_found()
        body = json.dumps(self._data(wanted), ensure_ascii=False, separators=(",", ":")).encode()
        return self._answer(HTTPStatus.OK, JSON, body)

    def _authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        given: bytes
        if scheme.lower() == "bearer":
            given = value.encode()
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            given = decoded.partition(b":")[2]  # any user name; the token is the password
        else:
            return False
        return hmac.compare_digest(given, self._token)

    def _not_found(self) -> Response:
        return self._answer(HTTPStatus.NOT_FOUND, TEXT, b"not found\n")

    @staticmethod
    def _answer(status: int, ctype: str, body: bytes, *, auth: bool = False) -> Response:
        headers = SECURITY_HEADERS + ((("WWW-Authenticate", REALM),) if auth else ())
        return Response(status, ctype, body, headers)


def warn_if_open(host: str, listen: str, token: str | None) -> None:
    """At start: a board beyond loopback without a token shows every ticket to whoever reaches it."""
    if token is None and not _loopback(host):
        log.warning(
            "the board (/board, /api/windows) is served on %s without health.board_token: anyone "
            "who can reach it reads every ticket on it",
            listen,
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
