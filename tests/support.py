"""Helpers the test modules share: a settable wall clock, and a bounded wait for a condition.

Neither sleeps to wait for time: ``Clock`` is moved by the test; ``wait_for`` polls a condition that
another thread or process makes true, and fails after ``timeout`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


class Clock:
    """A wall clock the test sets (``clock.now = ...``); pass it where the code takes ``clock``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0, every: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
