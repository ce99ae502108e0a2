"""``Retry-After`` (RFC 9110 §10.2.3), read the same way at every HTTP edge: ServiceNow, Slack and
Alertmanager all may send it with a 429 or a 503, as delta-seconds or as an HTTP date; and the two
tenacity strategies a poll's retries use to honour it."""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone

import tenacity


def retry_after_seconds(value: object) -> float | None:
    """Seconds to wait; None when absent or unreadable (the caller's own backoff applies then)."""
    if value is None or value == "":
        return None
    try:
        seconds = float(str(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class StopBeforeWaitingLongerThan(tenacity.stop.stop_base):
    """Give up rather than sleep longer than ``seconds`` (a long Retry-After defers the next poll)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep > self.seconds


class WaitRetryAfter(tenacity.wait.wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, fallback: tenacity.wait.wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self.fallback(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(wait, float(retry_after or 0))
