"""sd_notify(3) without a library: tell systemd we are ready, alive, reloading or stopping.

The wire protocol is one AF_UNIX SOCK_DGRAM datagram to ``$NOTIFY_SOCKET`` holding newline-separated
``KEY=value`` lines. A leading ``@`` in the address names an abstract socket (it becomes a NUL byte).
When ``NOTIFY_SOCKET`` is unset (run from a terminal, in tests, under another supervisor) every method
is a no-op, so callers never need to ask "am I under systemd?".

Sending never raises: a supervisor we cannot reach must not take the daemon down. The first failure is
logged once at WARNING; later ones only at DEBUG.

The watchdog ping belongs in the main loop, not in a helper thread, so that a stuck loop really trips
``WatchdogSec=``; the loop withholds it while a source worker is stuck (``connector.daemon``).
``watchdog_interval()`` says how often to ping. :class:`Heartbeat` is what the main loop calls on
every turn: it rate-limits ``WATCHDOG=1`` and ``STATUS=``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to one socket address, or does nothing when ``address`` is None."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
        pid: int | None = None,
    ) -> None:
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._pid = pid if pid is not None else os.getpid()
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (malformed numbers → off)."""
        return cls(
            environ.get("NOTIFY_SOCKET") or None,
            watchdog_usec=_positive_int(environ.get("WATCHDOG_USEC")),
            watchdog_pid=_positive_int(environ.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        """True when there is a socket to talk to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when not watched
        (no ``WATCHDOG_USEC``, or no ``NOTIFY_SOCKET`` to send the pings to).

        ``WATCHDOG_PID`` names the process systemd is watching; if it is set and is not us (a child that
        inherited the environment), we must not ping.
        """
        if self._address is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != self._pid:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self) -> bool:
        return self.send(READY=1)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        # A newline would start a new KEY=value line; keep the status one line.
        return self.send(STATUS=" ".join(text.splitlines()))

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def reloading(self) -> bool:
        return self.send(RELOADING=1)

    def send(self, **fields: object) -> bool:
        """Send one datagram of ``KEY=value`` lines, in argument order. Returns whether it was sent."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as err:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "sd_notify to %r failed: %s", self._address, err)
            return False
        return True


class Heartbeat:
    """The main loop's word to systemd, called on every turn of the loop while no source worker is
    stuck: ``WATCHDOG=1`` and ``STATUS=``, each rate-limited, so calling it often costs nothing.

    It must only ever be called from the main loop: a stuck loop, or a loop that sees a stuck worker,
    stops calling it, the pings stop, and ``WatchdogSec=`` restarts the service. Nothing else keeps the
    watchdog alive.

    * ``WATCHDOG=1`` at most every ``ping_every`` seconds: half of :meth:`Notifier.watchdog_interval`,
      i.e. a quarter of ``WatchdogSec=``, so a loop busy with one job for a while still pings in time;
      never when systemd is not watching.
    * ``STATUS=`` on the first call, then at most every ``status_every`` seconds; ``status()`` is only
      evaluated then. A failing ``status()`` is logged once and never stops the pings.
    """

    def __init__(
        self,
        notifier: Notifier,
        status: Callable[[], str],
        *,
        status_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._status = status
        self._status_every = status_every
        self._clock = clock
        interval = notifier.watchdog_interval()
        self.ping_every: float | None = interval / 2 if interval else None
        self._last_ping: float | None = None
        self._last_status: float | None = None
        self._status_failed = False

    def __call__(self) -> None:
        now = self._clock()
        if self.ping_every is not None and (
            self._last_ping is None or now - self._last_ping >= self.ping_every
        ):
            self._last_ping = now
            self._notifier.watchdog()
        if not self._notifier.enabled:
            return
        if self._last_status is not None and now - self._last_status < self._status_every:
            return
        self._last_status = now
        try:
            text = self._status()
        except Exception:
            if not self._status_failed:
                log.exception("cannot compute the systemd STATUS= line (the watchdog is unaffected)")
            self._status_failed = True
            return
        self._status_failed = False
        self._notifier.status(text)


def _socket_address(address: str) -> str:
    return "\0" + address[1:] if address.startswith("@") else address


def _positive_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None
