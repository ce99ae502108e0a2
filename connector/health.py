"""The optional HTTP listener: ``/healthz``, ``/metrics`` and whatever extra routes the daemon adds.

Routes are exact paths (``extra_routes``); a *mount* (``mounts``) is a callable given the request that
answers for the paths it knows and returns ``None`` for the rest (the board: ``/board/<channel>``,
auth, its own headers). The listener is read-only: GET and HEAD, any other method gets 405.

The health decision is the pure function :func:`evaluate_health` over a :class:`HealthSnapshot`: each
source judged on its own (``SourceHealth``), with ages measured on the monotonic clock, so a step of
the wall clock changes no verdict. The server only reads snapshots (a callable the daemon provides)
and, before a ``/metrics`` answer, calls the daemon's ``before_metrics`` hook (which refreshes gauges
from the state store); it does no other I/O. Healthy means, for every source:

* its last successful poll is at most ``STALE_AFTER_INTERVALS`` of *its own* poll intervals old —
  before its first success, the same allowance is counted from the start (starting, not failing);
* no request of it has waited for its answer longer than ``HUNG_AFTER`` of its timeout (a source
  that hangs is seen before the timeout ends the request);
* none of its jobs crashed (a bug: retried, but not healthy);

and Slack delivery is not failing.

``HealthServer`` serves from a fixed pool of ``WORKERS`` threads with a ``REQUEST_TIMEOUT`` deadline
per connection (:mod:`connector.listener`: clients cannot exhaust the daemon's threads or hold them),
bound to 127.0.0.1 by default; request lines are logged at DEBUG only. Nothing that goes wrong in it
reaches the daemon's loop: a failing route answers 500, a worker that cannot be started is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from connector.listener import Listener

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3
HUNG_AFTER = 0.5  # of the source's timeout
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
ALLOW = "GET, HEAD"
#: threads serving connections (and places in the queue of connections waiting for one); beyond
#: that, a connection is answered 503 at once. The listener uses WORKERS + 1 threads, never more.
WORKERS = 16
#: seconds a connection may take from accept to its end, reading the request included
REQUEST_TIMEOUT = 10.0

Route = Callable[[], tuple[int, str, bytes]]


@dataclass(frozen=True)
class Request:
    """What a mount sees of a request: the path without the query, the query, and the headers."""

    method: str  # GET or HEAD
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    status: int
    ctype: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


Mount = Callable[[Request], "Response | None"]


@dataclass(frozen=True)
class SourceHealth:
    """One source at one moment. Ages are seconds on the monotonic clock; ``last_ok_at`` (the wall
    clock, timezone-aware UTC) is only shown."""

    poll_interval: float
    ok_age: float | None = None  # since its last successful poll; None: none since the start
    error: str | None = None  # its last poll's error, e.g. "HTTP 503"
    broken: str | None = None  # a job that crashed, e.g. "internal error in tick: ValueError"
    request_age: float | None = None  # the oldest of its requests still waiting for an answer
    timeout: float | None = None  # its requests' timeout
    last_ok_at: datetime | None = None

    def hung(self) -> bool:
        """A request has waited for its answer longer than ``HUNG_AFTER`` of the timeout."""
        age, timeout = self.request_age, self.timeout
        return age is not None and timeout is not None and age > HUNG_AFTER * timeout

    def detail(self) -> dict[str, Any]:
        """The source's entry in ``/healthz``."""
        return {
            "poll_interval": self.poll_interval,
            "last_ok_at": _iso(self.last_ok_at),
            "last_ok_age": _round(self.ok_age),
            "last_error": self.error,
            "broken": self.broken,
            "request_age": _round(self.request_age),
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class HealthSnapshot:
    """What the daemon knows about its own health at one moment."""

    started_at: datetime  # timezone-aware UTC; shown only
    uptime: float  # seconds since the start, on the monotonic clock
    sources: Mapping[str, SourceHealth] = field(default_factory=lambda: MappingProxyType({}))
    slack_failing: str | None = None  # e.g. "channel_not_found"; None while delivery works
    #: replicas on PostgreSQL: "leader" or "standby" (None: one replica on SQLite)
    role: str | None = None
    #: who leads, as the lease says: host, pid, since (ISO), token
    leader: Mapping[str, Any] | None = None
    #: why the state database cannot be reached (a replica of a group); None while it answers
    state_error: str | None = None


def evaluate_health(s: HealthSnapshot) -> tuple[bool, list[str]]:
    """Return ``(healthy, reasons)``; ``reasons`` names every failed check and is empty when healthy.
    A standby replica polls nothing: it is healthy while it reaches the state database (and watches
    the lease)."""
    reasons: list[str] = []
    if s.state_error:
        reasons.append(f"state database unreachable: {s.state_error}")
    if s.role == "standby":
        return not reasons, reasons
    for name, src in s.sources.items():
        limit = STALE_AFTER_INTERVALS * src.poll_interval
        age = src.ok_age if src.ok_age is not None else s.uptime
        if age > limit:
            reason = f"{name}: no successful poll for {age:.0f}s (limit {limit:g}s)"
            if src.ok_age is None:
                reason = f"{name}: no successful poll since start {age:.0f}s ago (limit {limit:g}s)"
            reasons.append(reason + (f": {src.error}" if src.error else ""))
        if src.hung():
            waited = f"{src.request_age:.0f}s for an answer (timeout {src.timeout:g}s)"
            reasons.append(f"{name}: a request has waited {waited}")
        if src.broken:
            reasons.append(f"{name}: {src.broken} (retrying)")
    if s.slack_failing:
        reasons.append(f"slack delivery failing: {s.slack_failing}")
    return not reasons, reasons


def health_body(s: HealthSnapshot) -> tuple[int, dict[str, Any]]:
    """The ``/healthz`` status code and JSON document for a snapshot."""
    healthy, reasons = evaluate_health(s)
    body: dict[str, Any] = {"status": "ok" if healthy else "failing"}
    if not healthy:
        body["reasons"] = reasons
    if s.role is not None:
        body["role"] = s.role
        body["leader"] = dict(s.leader) if s.leader is not None else None
    oks = [src.last_ok_at for src in s.sources.values()]
    errors = [f"{name}: {src.error}" for name, src in s.sources.items() if src.error]
    body.update(
        {
            "started_at": _iso(s.started_at),
            "last_poll_ok_at": None if None in oks or not oks else _iso(min(o for o in oks if o)),
            "last_poll_error": "; ".join(errors) or None,
            "slack_failing": s.slack_failing,
            "sources": {name: src.detail() for name, src in s.sources.items()},
        }
    )
    return (HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE), body


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], HealthSnapshot],
        registry: CollectorRegistry,
        extra_routes: Mapping[str, Route] | None = None,
        *,
        before_metrics: Callable[[], None] | None = None,
        workers: int = WORKERS,
        request_timeout: float = REQUEST_TIMEOUT,
        mounts: Sequence[Mount] = (),
    ) -> None:
        self._host = host
        self._routes: dict[str, Route] = {"/healthz": self._healthz, **(extra_routes or {})}
        self._mounts = (self._metrics, *mounts)  # /metrics reads the request's Accept header
        self._snapshot = snapshot
        self._registry = registry
        self._before_metrics = before_metrics  # e.g. refresh gauges from the store
        self._listener = Listener(
            "health listener",
            "health",
            (host, port),
            lambda: _make_handler(self._routes, self._mounts, request_timeout),
            workers=workers,
            timeout=request_timeout,
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0 and started)."""
        return self._listener.port

    @property
    def refused(self) -> int:
        """Connections answered 503 because every worker was busy."""
        return self._listener.refused

    def start(self) -> None:
        """Bind and serve in daemon threads. Raises OSError if the address cannot be bound; threads
        that cannot be started (a task limit) are logged, and the listener serves with fewer or none."""
        if self._listener.start():
            host = f"[{self._host}]" if ":" in self._host else self._host
            log.info("health listener on http://%s:%d/", host, self.port)

    def stop(self) -> None:
        self._listener.stop()

    def _healthz(self) -> tuple[int, str, bytes]:
        status, body = health_body(self._snapshot())
        return status, JSON_TYPE, json.dumps(body, default=str).encode()

    def _metrics(self, request: Request) -> Response | None:
        """``/metrics``: the Prometheus text format, or OpenMetrics when the scraper asks for it
        (``Accept: application/openmetrics-text``, as Prometheus does), as prometheus_client
        negotiates it."""
        if request.path != "/metrics":
            return None
        if self._before_metrics is not None:
            try:
                self._before_metrics()
            except Exception:  # stale gauges beat no metrics at all
                log.exception("health listener: refreshing the gauges failed")
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return Response(HTTPStatus.OK, content_type, encode(self._registry))


def _make_handler(
    routes: Mapping[str, Route], mounts: Sequence[Mount], request_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "itsm-connector"
        sys_version = ""
        # each read and write of the connection (the server also cuts it after this long in all)
        timeout = request_timeout

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def __getattr__(self, name: str) -> Any:
            # Every other method (POST, PUT, DELETE, OPTIONS, any made-up one): 405, not http.server's 501.
            if name.startswith("do_"):
                return self._not_allowed
            raise AttributeError(name)

        def _not_allowed(self) -> None:
            body = b"method not allowed: this listener is read-only (GET, HEAD)\n"
            answer = Response(HTTPStatus.METHOD_NOT_ALLOWED, TEXT_TYPE, body, (("Allow", ALLOW),))
            self._send(answer, send_body=True)

        def _respond(self, send_body: bool) -> None:
            path, _, query = self.path.partition("?")
            try:
                response = self._answer(path, query)
            except Exception:
                log.exception("health listener: %s failed", path)
                response = Response(HTTPStatus.INTERNAL_SERVER_ERROR, TEXT_TYPE, b"internal error\n")
            self._send(response, send_body)

        def _answer(self, path: str, query: str) -> Response:
            route = routes.get(path)
            if route is not None:
                return Response(*route())
            request = Request(self.command, path, query, self.headers)  # type: ignore[arg-type]
            for mount in mounts:
                answer = mount(request)
                if answer is not None:
                    return answer
            return Response(HTTPStatus.NOT_FOUND, TEXT_TYPE, b"not found\n")

        def _send(self, r: Response, send_body: bool) -> None:
            self.send_response(r.status)
            self.send_header("Content-Type", r.ctype)
            self.send_header("Content-Length", str(len(r.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in r.headers:
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(r.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health listener: %s - " + format, self.address_string(), *args)

    return Handler


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)
