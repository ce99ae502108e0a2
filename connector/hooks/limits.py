"""What keeps the hook listener cheap under abuse: a per-source rate limit, the replay guard, and
refusals logged once per kind. Times are injected (monotonic for the rate and the log, the wall
clock's Unix seconds for the replay guard, whose entries are the signed timestamps)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)

#: seconds between two summary lines of one kind of refusal
SUMMARY_EVERY = 600.0


class TokenBucket:
    """``rate`` requests a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float]) -> None:
        self._rate, self._burst, self._monotonic = rate, float(burst), monotonic
        self._tokens, self._at = float(burst), monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class ReplayGuard:
    """The signatures accepted in the last ``window`` seconds: one met again is a replay. Entries
    older than the window go (their timestamps are refused anyway); at most ``limit`` are kept."""

    def __init__(self, window: float, limit: int = 100_000) -> None:
        self._window, self._limit = window, limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # signature -> its timestamp
        self._lock = threading.Lock()

    def first_time(self, signature: bytes, timestamp: float, now: float) -> bool:
        """Record ``signature``; False when it was already recorded (a replay)."""
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if at >= now - self._window and len(self._seen) < self._limit:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                return False
            self._seen[signature] = timestamp
            return True


class RefusalLog:
    """One WARNING at the first refusal of each (source, reason), then at most one summary line per
    ``SUMMARY_EVERY`` seconds with the count since; never the body, never a header's value."""

    def __init__(self, monotonic: Callable[[], float], every: float = SUMMARY_EVERY) -> None:
        self._monotonic, self._every = monotonic, every
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, refused since)
        self._lock = threading.Lock()

    def refused(self, source: str, reason: str, status: int, peer: str) -> None:
        key = (source, reason)
        now = self._monotonic()
        with self._lock:
            logged_at, since = self._last.get(key, (None, 0))
            if logged_at is not None and now - logged_at < self._every:
                self._last[key] = (logged_at, since + 1)
                return
            self._last[key] = (now, 0)
        who = f"source {source!r}" if source else "an unknown source"
        if logged_at is None:
            log.warning(
                "hook listener: refused a hint for %s from %s: %s (HTTP %d); further refusals of this "
                "kind are counted (itsm_connector_hook_refusals_total) and summarised every %.0f min",
                who, peer, reason, status, self._every / 60,
            )  # fmt: skip
        else:
            log.warning(
                "hook listener: %d more hints for %s refused (%s) in the last %.0f min; latest from %s",
                since + 1, who, reason, (now - logged_at) / 60, peer,
            )  # fmt: skip
