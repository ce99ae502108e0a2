"""The signal handler takes no lock: it may interrupt the main thread while that thread holds one."""

from __future__ import annotations

import signal
import threading

from connector.signals import SignalWatcher

WAIT = 10.0  # a failsafe: every event below is set by another thread, not by time passing


class Caller:
    """Calls a handler in another thread, started before the test takes its locks, so that a handler
    that waits for one of them fails the test (``call`` returns False) instead of hanging it."""

    def __init__(self, handler: object, signum: int) -> None:
        self._go, self._done = threading.Event(), threading.Event()

        def run() -> None:
            self._go.wait(WAIT)
            handler(signum, None)  # type: ignore[operator]
            self._done.set()

        threading.Thread(target=run, daemon=True).start()

    def call(self) -> bool:
        self._go.set()
        return self._done.wait(2.0)


def test_sigterm_while_the_main_thread_is_inside_event_wait_stops_and_arms_the_deadline() -> None:
    stop, hup, exited = threading.Event(), threading.Event(), threading.Event()
    watcher = SignalWatcher(stop, hup, deadline=0.0, exit_now=lambda code: exited.set())
    # The interrupted thread holds the lock of ``stop``'s condition (as inside ``stop.wait()``) and
    # threading's thread-start lock (as inside ``Thread.start()`` of the read-ahead).
    caller = Caller(watcher.handler, signal.SIGTERM)
    with stop._cond, threading._active_limbo_lock:  # type: ignore[attr-defined]
        assert caller.call(), "the handler waited for a lock"
    assert stop.wait(WAIT) and exited.wait(WAIT) and not hup.is_set()


def test_sighup_only_asks_for_a_config_check() -> None:
    stop, hup, exited = threading.Event(), threading.Event(), threading.Event()
    watcher = SignalWatcher(stop, hup, deadline=0.0, exit_now=lambda code: exited.set())
    caller = Caller(watcher.handler, signal.SIGHUP)
    with hup._cond:  # type: ignore[attr-defined]
        assert caller.call()
    assert hup.wait(WAIT) and not stop.is_set() and not exited.is_set()


def test_the_check_catches_a_handler_that_takes_the_lock() -> None:
    """The daemon's handler before: ``stop.set()`` (then ``Timer.start()``) inside the handler."""
    stop = threading.Event()
    caller = Caller(lambda signum, frame: stop.set(), signal.SIGTERM)
    with stop._cond:  # type: ignore[attr-defined]
        assert not caller.call()
    assert stop.wait(WAIT)  # it went on once the lock was let go
