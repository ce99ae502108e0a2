"""``Retry-After`` (RFC 9110 §10.2.3), read the same way at every HTTP edge: ServiceNow, Slack and
Alertmanager all may send it with a 429 or a 503, as delta-seconds or as an HTTP date."""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone


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
