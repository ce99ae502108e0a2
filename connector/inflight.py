"""A source's HTTP requests under way, and for how long: how a hung source is seen before its timeout.

:class:`InFlight` is shared by a source's client, which records every request in it
(:class:`TrackedAdapter`, mounted on its ``requests`` session: a request counts from the moment it
is sent until its answer's headers arrive, or it fails), and by the daemon, which reads it:

* :meth:`InFlight.age`: how long the oldest request has waited for its answer (``/healthz``,
  ``itsm-connector status``, the ``source_request_age_seconds`` gauge);
* :meth:`InFlight.quiet_for`: how long since a request last started or ended (a worker making one
  request after another is busy, not stuck: see ``connector.daemon``).

Times are on the monotonic clock given at construction: a wall-clock step changes no age.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter


class InFlight:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._ids = itertools.count()
        self._last = monotonic()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Around one request: from sending it until its answer (or failure)."""
        now = self._monotonic()
        with self._lock:
            ident = next(self._ids)
            self._started[ident] = self._last = now
        try:
            yield
        finally:
            with self._lock:
                del self._started[ident]
                self._last = self._monotonic()

    def age(self) -> float | None:
        """Seconds the oldest request under way has waited for its answer; None when none is."""
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return None if oldest is None else max(0.0, self._monotonic() - oldest)

    def quiet_for(self) -> float:
        """Seconds since a request last started or ended."""
        with self._lock:
            last = self._last
        return max(0.0, self._monotonic() - last)


class TrackedAdapter(HTTPAdapter):
    """``requests``' default adapter, recording each request in an :class:`InFlight`."""

    def __init__(self, in_flight: InFlight) -> None:
        super().__init__()
        self.in_flight = in_flight

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with self.in_flight.request():
            return super().send(request, *args, **kwargs)
