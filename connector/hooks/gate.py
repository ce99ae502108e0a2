"""What the hook listener does with one request, transport aside: find the source, limit its rate,
read at most ``MAX_BODY`` bytes, authenticate, read the hint, queue it. Every refusal is counted
(``on_refused(source, reason)``) and logged once per kind (:class:`~connector.hooks.limits.RefusalLog`);
an unauthenticated caller learns nothing but the status code.

Order of the checks, each answering at once::

    no such source (or it takes no hints) ... 404 not_found     (source "")
    not POST ................................. 405 bad_request
    over the source's rate ................... 429 rate_limited  (before the body is read)
    chunked, no or bad Content-Length ........ 400 bad_request
    Content-Length over MAX_BODY ............. 413 too_large     (the body is not read)
    wrong or missing signature / token ....... 401 unauthorized
    timestamp outside the replay window ...... 401 expired       (only once the signature is right)
    a signature already accepted ............. 401 replayed
    not application/json, not a hint ......... 400 bad_request
    queue full ............................... 503 queue_full
    queued ................................... 202
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from connector.hooks.hint import parse_hint
from connector.hooks.limits import RefusalLog, ReplayGuard, TokenBucket
from connector.hooks.queue import HintQueue
from connector.hooks.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_bearer,
    check_signature,
    decode_mac,
    timestamp_seconds,
)

PATH_PREFIX = "/hooks/servicenow/"
#: bytes a hint's body may have (one is ~120)
MAX_BODY = 16 * 1024
#: bytes of a refused request's body read before answering (see ``_drain``)
DRAIN_AT_MOST = 4 * MAX_BODY
REASONS = (
    "unauthorized", "expired", "replayed", "too_large", "bad_request", "rate_limited", "queue_full",
)  # fmt: skip
_TEXT = {
    202: b"accepted\n",
    400: b"bad request\n",
    401: b"unauthorized\n",
    404: b"not found\n",
    405: b"method not allowed\n",
    413: b"too large\n",
    429: b"slow down\n",
    503: b"busy\n",
}


class Headers(Protocol):
    """A request's headers; ``get`` ignores case (``http.client.HTTPMessage``)."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class HookSource:
    """A source that takes hints: its name (the path's last segment), its change table, how its
    hints are authenticated (``hmac`` or ``bearer``) with which secret, and its queue."""

    name: str
    table: str
    auth: str
    secret: str
    queue: HintQueue


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def body(self) -> bytes:
        return _TEXT.get(self.status, b"\n")


class Gate:
    def __init__(
        self,
        sources: Sequence[HookSource],
        *,
        rate: float,
        burst: int,
        replay_window: float,
        on_accepted: Callable[[str], None] = lambda source: None,
        on_refused: Callable[[str, str], None] = lambda source, reason: None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = {s.name: s for s in sources}
        self._buckets = {s.name: TokenBucket(rate, burst, monotonic) for s in sources}
        self._replays = {s.name: ReplayGuard(replay_window) for s in sources}
        self._window = replay_window
        self._on_accepted, self._on_refused = on_accepted, on_refused
        self._clock = clock
        self._log = RefusalLog(monotonic)

    def receive(
        self, method: str, path: str, headers: Headers, read: Callable[[int], bytes], peer: str
    ) -> Reply | None:
        """The reply to one request; None when the client went away before its body arrived."""
        name = unquote(path.split("?", 1)[0])
        source = self.sources.get(name[len(PATH_PREFIX) :]) if name.startswith(PATH_PREFIX) else None
        length = headers.get("Content-Length") or ""
        size = int(length) if length.isdigit() and len(length) <= 12 else None
        if source is None:
            _drain(size, read)
            return self._refuse("", "not_found", 404, peer)
        if method != "POST":
            _drain(size, read)
            return self._refuse(source.name, "bad_request", 405, peer, (("Allow", "POST"),))
        if not self._buckets[source.name].allow():
            _drain(size, read)
            return self._refuse(source.name, "rate_limited", 429, peer, (("Retry-After", "1"),))
        if headers.get("Transfer-Encoding") or size is None:
            return self._refuse(source.name, "bad_request", 400, peer)
        if size > MAX_BODY:
            _drain(size, read)
            return self._refuse(source.name, "too_large", 413, peer)
        body = read(size)
        if len(body) != size:
            return None
        reason = self._authenticate(source, headers, body)
        if reason is not None:
            return self._refuse(source.name, reason, 401, peer)
        media = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        hint = parse_hint(body, source.table) if media == "application/json" else None
        if hint is None:
            return self._refuse(source.name, "bad_request", 400, peer)
        if not source.queue.add(hint):
            return self._refuse(source.name, "queue_full", 503, peer, (("Retry-After", "5"),))
        self._on_accepted(source.name)
        return Reply(202)

    def _authenticate(self, source: HookSource, headers: Headers, body: bytes) -> str | None:
        if source.auth == "bearer":
            return check_bearer(source.secret, headers.get("Authorization") or "")
        stamp, signature = headers.get(TIMESTAMP_HEADER) or "", headers.get(SIGNATURE_HEADER) or ""
        now = self._clock()
        reason = check_signature(source.secret, stamp, signature, body, now=now, window=self._window)
        if reason is not None:
            return reason
        given, when = decode_mac(signature), timestamp_seconds(stamp)
        assert given is not None and when is not None  # the signature was checked
        return None if self._replays[source.name].first_time(given, when, now) else "replayed"

    def _refuse(
        self, source: str, reason: str, status: int, peer: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> Reply:
        self._on_refused(source, reason)
        self._log.refused(source, reason, status, peer)
        return Reply(status, headers)


def _drain(size: int | None, read: Callable[[int], bytes]) -> None:
    """Read a refused request's body when it is small, so closing the connection does not reset it
    before the client reads the answer (a large one is left: the connection is closed over it)."""
    if size is not None and 0 < size <= DRAIN_AT_MOST:
        read(size)
