"""The commands that talk to ServiceNow and Slack: ``run`` (the daemon, its signals and its SIGTERM
deadline), ``sync`` (one cycle) and ``check``. ``connector.cli.main`` parses the arguments and calls them.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from connector import __version__
from connector.config import Settings, load_settings
from connector.errors import ConfigError, SinkError, StateError
from connector.logs import redact
from connector.signals import SignalWatcher
from connector.store.lock import StateLock

if TYPE_CHECKING:
    from connector.slack.delivery import DeliveryReport
    from connector.wiring import Connector

log = logging.getLogger(__name__)
#: seconds from SIGTERM to exit, however long the current request hangs (systemd's limit is 15)
STOP_DEADLINE = 9.0


def _dry_run_store(settings: Settings, tmp: Path) -> Path:
    """A throwaway copy of the state in ``tmp``, so a dry run changes nothing real (and takes no lock).
    A damaged database is said as such, by its own path, rather than found damaged in the copy."""
    from connector.store.connection import connect
    from connector.store.failures import damaged, state_error

    tmp = tmp / "state.db"
    path = str(settings.state.path)
    if settings.state.path.exists():
        try:
            src = connect(path, read_only=True)
            try:
                check = [row[0] for row in src.execute("PRAGMA quick_check").fetchall()]
                if check != ["ok"]:
                    raise damaged(path, "; ".join(check[:3]))
                dst = sqlite3.connect(tmp)
                src.backup(dst)
                dst.close()
            finally:
                src.close()
        except sqlite3.Error as e:
            raise (state_error(e, path) or e) from None
    return tmp


@contextmanager
def _built(
    settings: Settings, args: argparse.Namespace, stop: threading.Event | None = None
) -> Iterator[Connector]:
    """The connector for ``run`` and ``sync``, closed on the way out. ``--dry-run``: on a throwaway
    copy of the state (deleted on the way out too), with a Slack client that prints instead of sending."""
    from connector.slack.printing import PrintingSlackClient
    from connector.store.sqlite import Store
    from connector.wiring import build_connector

    with ExitStack() as stack:
        if getattr(args, "dry_run", False):
            if settings.state.postgresql:
                raise ConfigError(
                    "--dry-run works on a SQLite state: with state.url (PostgreSQL) it would need a "
                    "copy of the shared state; run it against a copy made by `itsm-connector state migrate`",
                    problems=[],
                )
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="itsm-dry-run-")))
            path = _dry_run_store(settings, tmp)
            print(
                "dry run: on a throwaway copy of the state (deleted at exit); "
                "messages are printed here, nothing is sent",
                file=sys.stderr,
            )
            app = build_connector(
                settings, stop=stop, slack_client=PrintingSlackClient(sys.stdout), store=Store(path)
            )
        elif settings.state.postgresql:  # replicas share it by design: the lease, not a lock, decides
            app = build_connector(settings, stop=stop)
        else:
            lock = _lock_state(settings.state.path, args.command)
            try:
                app = build_connector(settings, stop=stop)
            except BaseException:
                lock.release()
                raise
            app.state_lock = lock
        stack.callback(app.close)  # before the copy is deleted: the store closes first
        yield app


def _lock_state(path: Path, command: str) -> StateLock:
    """The state's lock (``connector.store.lock``), taken before the database is opened: a second
    writer is refused at once (exit 3) rather than posting everything a second time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(
            f"cannot create the state directory {path.parent} ({e.strerror}): create it, writable by the "
            "user the connector runs as, or point state.path elsewhere",
            operator=True,
        ) from None
    return StateLock.acquire(path, command=command)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The daemon. Under systemd (Type=notify): READY=1 once the config and the state are loaded, then
    WATCHDOG=1 and STATUS= from the main loop (``Heartbeat``), STOPPING=1 on SIGTERM.

    SIGHUP (``systemctl reload``) does not apply a changed config — that needs a restart — but re-reads
    and validates it, and logs what changed or what is wrong, so a restart will not fail unexpectedly."""
    from connector.sdnotify import Heartbeat, Notifier

    stop, hup = threading.Event(), threading.Event()
    notifier = Notifier.from_env()

    SignalWatcher(stop, hup, deadline=STOP_DEADLINE).install()
    with _built(settings, args, stop) as app:
        if app.health is not None:
            try:
                app.health.start()
            except OSError as e:  # e.g. the port is taken: say so plainly, systemd retries (on-failure)
                log.error("cannot listen on health.listen %s: %s", settings.health.listen, e.strerror or e)
                return 1
        if app.hooks is not None:
            try:
                app.hooks.start()
            except OSError as e:
                log.error("cannot listen on hooks.listen %s: %s", settings.hooks.listen, e.strerror or e)
                return 1
        beat = Heartbeat(notifier, app.view.status_line)

        def heartbeat() -> None:
            beat()
            if hup.is_set():
                hup.clear()
                _check_reload(settings, args.config)

        log.info(
            "itsm-connector %s started: %s, channels %s, state %s",
            __version__,
            ", ".join(f"source {sn.name} ({sn.url})" for sn in settings.all_sources),
            ", ".join(settings.all_channels),
            "a throwaway copy (dry run)" if getattr(args, "dry_run", False) else app.store.location,
        )
        notifier.send(READY=1, STATUS="started; first poll running")
        try:
            if app.leadership is not None:
                log.info(
                    "replica of a group on %s: lease %gs renewed every %gs; standby until it holds the lease",
                    app.store.location,
                    settings.state.lease_seconds,
                    settings.state.renew_seconds,
                )
                app.leadership.start()
            app.daemon.run(heartbeat=heartbeat, max_nap=beat.ping_every)
        finally:
            notifier.stopping()
    log.info("stopped")
    return 0


def _check_reload(settings: Settings, path: Path) -> None:
    """SIGHUP: say whether the file on disk differs from what runs, and whether it is valid."""
    try:
        new = load_settings(path)
    except ConfigError as e:
        log.error("SIGHUP: %s; the running daemon keeps its configuration, fix this before a restart", e)
        return
    changed = _changed_keys(settings.model_dump(), new.model_dump())
    if changed:
        log.warning(
            "SIGHUP: configuration changed (%s) but is not applied while running: "
            "restart to apply it (systemctl restart itsm-connector)",
            ", ".join(changed),
        )
    else:
        log.info("SIGHUP: configuration %s is valid and unchanged", path)


def _changed_keys(old: object, new: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (never the values: some are secrets)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [k for key in keys for k in _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".") or "(all)"]


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    """One cycle of everything, then exit: every source polled (with the daemon's bounded retries),
    time-driven events, then every sink: the Alertmanager silences first (a parent message names its
    silence), then each Slack channel. A failed source holds back no other and no delivery; the exit
    code is 1 when anything failed, each failure named on stderr."""
    failed: list[str] = []
    dry_run = bool(getattr(args, "dry_run", False))

    def say(line: str) -> None:
        print(redact(line), flush=True)

    with _built(settings, args) as app:
        if app.leadership is not None and not app.leadership.step():
            cur = app.leadership.current
            who = f"{cur.host} (pid {cur.pid})" if cur is not None else "another replica"
            print(f"sync: not the leader: {who} holds the lease of {app.store.location}", file=sys.stderr)
            return 1
        app.daemon.poll()
        app.daemon.tick()
        for name, st in app.daemon.state.sources.items():
            if st.last_error is not None or st.last_result is None:
                failed.append(f"source {name}: {st.last_error or 'not polled'}")
            else:
                say(f"source {name}: fetched {st.last_result.fetched}, events {st.last_result.events}")
        now = app.daemon.clock()
        if app.silences is not None and dry_run:
            say("alertmanager: not contacted (dry run)")
        elif app.silences is not None:
            try:
                silences = app.silences.deliver(now)
            except SinkError as e:
                failed.append(f"alertmanager: {e}")
                app.telemetry.sink_result("alertmanager", None, str(e))
            else:
                app.telemetry.sink_result("alertmanager", silences, None)
                say(f"alertmanager: {silences.changed} silences changed, {silences.problems} refused")
        for channel, feed in app.feeds.items():
            target = str(feed.sink.target)
            try:
                report = feed.deliver(now)
            except SinkError as e:
                failed.append(f"slack {channel}: {e}")
                app.telemetry.sink_result(target, None, str(e))
                continue
            app.telemetry.sink_result(target, report, None)
            say(f"slack {channel}: {delivery_summary(report, dry_run)}")
    for problem in failed:
        print(redact(f"sync failed: {problem}"), file=sys.stderr)
    return 1 if failed else 0


def delivery_summary(report: DeliveryReport, dry_run: bool) -> str:
    """``posted 3 (1 digest), updated 2``; in a dry run ``printed …`` (nothing was sent)."""
    digests = f" ({report.digests} digest{'s' if report.digests > 1 else ''})" if report.digests else ""
    verb = "printed" if dry_run else "posted"
    text = f"{verb} {report.posted}{digests}, updated {report.updated}"
    if report.recovered:
        text += f", recovered {report.recovered}"
    if report.poisoned:
        text += f", refused {len(report.poisoned)}"
    return text + (" (dry run: nothing sent)" if dry_run else "")


def deliver_everywhere(app: Connector, now: datetime) -> DeliveryReport:
    """One delivery pass in every channel (tests and benchmarks; ``sync`` delivers each on its own)."""
    from connector.slack.delivery import DeliveryReport

    total = DeliveryReport()
    for feed in app.feeds.values():
        r = feed.deliver(now)
        total.posted, total.updated = total.posted + r.posted, total.updated + r.updated
        total.digests += r.digests
        total.recovered += r.recovered
        total.poisoned += r.poisoned
    return total
