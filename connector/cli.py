"""Command line: ``itsm-connector {run,sync,check,windows,status,demo}``. No business logic here.

Exit codes: 0 success; 1 a check or sync failed; 2 bad configuration or usage (one readable message,
no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from connector import __version__
from connector.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from connector.errors import ConfigError, SinkError, SourceError
from connector.logs import register_secret, setup_logging

log = logging.getLogger("connector")
#: seconds from SIGTERM to exit, however long the current request hangs (systemd's limit is 15)
STOP_DEADLINE = 9.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="itsm-connector", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--version", action="version", version=f"itsm-connector {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, help: str, config: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if config:
            c.add_argument(
                "-c",
                "--config",
                type=Path,
                default=DEFAULT_CONFIG_PATH,
                help=f"YAML config file (default {DEFAULT_CONFIG_PATH})",
            )
        return c

    run = cmd("run", "run the daemon (under systemd: Type=notify)")
    run.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    sync = cmd("sync", "one sync cycle: poll, reconcile, deliver, exit")
    sync.add_argument("--once", action="store_true", default=True, help="(the default) a single cycle")
    sync.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    cmd("check", "check the config, ServiceNow (reachable, auth, table) and Slack (auth, channel)")
    w = cmd("windows", "list known windows and their phase")
    w.add_argument("--problems", action="store_true", help="list rejected tickets and why")
    w.add_argument("--json", action="store_true", help="machine-readable output")
    cmd("status", "last poll, cursor, outbox, problems and health in one screen")
    dg = cmd("digest", "the shift digest of each channel, as it would be posted now")
    dg.add_argument("--print", action="store_true", default=True, help="(the default) print, do not post")
    dg.add_argument("--channel", help="only this channel id")
    cal = cmd(
        "calendar", "the windows as an iCalendar feed on stdout (itsm-connector calendar > windows.ics)"
    )
    cal.add_argument("--channel", help="only the windows this channel follows")
    demo = cmd("demo", "run the real pipeline against built-in ServiceNow and Slack simulators", config=False)
    demo.add_argument("--locale", choices=["ko", "en"], default="ko")
    demo.add_argument("--timezone", default="Asia/Seoul")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from connector.demo import run_demo

            return run_demo(locale=args.locale, timezone=args.timezone)
        # status and windows only read the state database: they run without the service's secrets
        settings = load_settings(args.config, secrets_required=args.command not in ("status", "windows"))
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    for secret in (
        settings.primary_source.password,
        settings.slack.token,
        settings.primary_source.oauth_client_secret,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())
    setup_logging(settings.log.level, settings.log.format)
    handlers = {
        "run": cmd_run,
        "sync": cmd_sync,
        "check": cmd_check,
        "windows": cmd_windows,
        "status": cmd_status,
        "digest": cmd_digest,
        "calendar": cmd_calendar,
    }
    try:
        return handlers[args.command](settings, args)
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dry_run_store(settings: Settings) -> Path:
    """A throwaway copy of the state, so a dry run changes nothing real."""
    tmp = Path(tempfile.mkdtemp(prefix="itsm-dry-run-")) / "state.db"
    if settings.state.path.exists():
        src = sqlite3.connect(settings.state.path)
        dst = sqlite3.connect(tmp)
        src.backup(dst)
        src.close()
        dst.close()
    return tmp


def _build(settings: Settings, args: argparse.Namespace, stop: threading.Event | None = None):  # type: ignore[no-untyped-def]
    from connector.app import build_app
    from connector.sinks.printing import PrintingSlackClient
    from connector.store.sqlite import Store

    if getattr(args, "dry_run", False):
        path = _dry_run_store(settings)
        print(f"dry run: state copied to {path}; messages are printed, not sent", file=sys.stderr)
        return build_app(settings, stop=stop, slack_client=PrintingSlackClient(sys.stdout), store=Store(path))
    settings.state.path.parent.mkdir(parents=True, exist_ok=True)
    return build_app(settings, stop=stop)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """The daemon. Under systemd (Type=notify): READY=1 once the config and the state are loaded, then
    WATCHDOG=1 and STATUS= from the main loop (``Heartbeat``), STOPPING=1 on SIGTERM.

    SIGHUP (``systemctl reload``) does not apply a changed config — that needs a restart — but re-reads
    and validates it, and logs what changed or what is wrong, so a restart will not fail unexpectedly."""
    from connector.health import HealthServer
    from connector.sdnotify import Heartbeat, Notifier

    stop, hup = threading.Event(), threading.Event()
    notifier = Notifier.from_env()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # logged by the loop, not here: a handler must not take the logging lock
        # A request that hangs cannot be interrupted; every step commits atomically (a kill at any
        # instant loses nothing, tests/test_crash.py), so past the deadline exiting is safe.
        deadline = threading.Timer(STOP_DEADLINE, os._exit, args=(0,))
        deadline.daemon = True
        deadline.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda signum, frame: hup.set())
    app = _build(settings, args, stop)
    if settings.health.enabled:
        host, port = settings.health.address
        app.health = HealthServer(
            host,
            port,
            app.health_snapshot,
            app.metrics.registry,
            before_metrics=lambda: app.update_gauges(app.daemon.clock()),
            extra_routes=app.calendar_routes(),
        )
        try:
            app.health.start()
        except OSError as e:  # e.g. the port is taken: say so plainly, systemd retries (on-failure)
            log.error("cannot listen on health.listen %s: %s", settings.health.listen, e.strerror or e)
            app.health = None
            app.close()
            return 1
    beat = Heartbeat(notifier, app.status_line)

    def heartbeat() -> None:
        beat()
        if hup.is_set():
            hup.clear()
            _check_reload(settings, args.config)

    _warn_watchdog_vs_timeout(settings, notifier.watchdog_interval())
    log.info(
        "itsm-connector %s started: source %s, channel %s, state %s",
        __version__,
        settings.primary_source.url,
        settings.slack.channel,
        app.store.path,
    )
    notifier.send(READY=1, STATUS="started; first poll running")
    try:
        app.daemon.run(heartbeat=heartbeat, max_nap=beat.ping_every)
    finally:
        notifier.stopping()
        app.close()
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


def _warn_watchdog_vs_timeout(settings: Settings, ping_interval: float | None) -> None:
    """A request may block the loop for ``timeout`` seconds on top of the time since the last ping
    (at most WatchdogSec/4): together they must stay well inside WatchdogSec (60 s and 30 s do)."""
    if ping_interval is None:
        return
    watchdog = ping_interval * 2
    for sn in settings.all_sources:
        if sn.timeout + watchdog / 4 >= 0.9 * watchdog:
            log.warning(
                "servicenow.timeout (%gs) is not well below the systemd watchdog (%gs): a request that "
                "hangs until its timeout may get the service restarted; lower the timeout or raise "
                "WatchdogSec=",
                sn.timeout,
                watchdog,
            )


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    app = _build(settings, args)
    try:
        app.daemon.poll()
        app.daemon.tick()
        st = next(iter(app.daemon.status.sources.values()))
        if st.last_error:
            print(f"sync failed: {st.last_error}", file=sys.stderr)
            return 1
        try:
            report = app.deliver_slack(app.daemon.clock())
        except SinkError as e:
            print(f"delivery failed: {e}", file=sys.stderr)
            return 1
        r = st.last_result
        print(
            f"fetched {r.fetched if r else 0}, events {r.events if r else 0}, "
            f"posted {report.posted}, updated {report.updated}"
        )
        return 0
    finally:
        app.close()


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from connector.app import build_app

    app = build_app(settings, store=_memory_store())
    problems: list[str] = []
    try:
        app.sources[0].check()
        print(
            f"ok   servicenow: {settings.primary_source.url} table {settings.primary_source.table} readable "
            f"as {settings.primary_source.username}"
        )
    except SourceError as e:
        problems.append(f"servicenow: {e}")
    slack_problems = app.slack.check()
    if not slack_problems:
        print(f"ok   slack: token valid, bot can post in {settings.slack.channel}")
    problems += slack_problems
    if settings.alertmanager is not None:
        from connector.sinks.alertmanager import AlertmanagerClient

        try:
            AlertmanagerClient(settings.alertmanager).ready()
            print(f"ok   alertmanager: {settings.alertmanager.url} ready")
        except Exception as e:
            problems.append(f"alertmanager: {e}")
    app.close()
    for p in problems:
        print(f"FAIL {p}")
    return 1 if problems else 0


def _memory_store():  # type: ignore[no-untyped-def]
    from connector.store.sqlite import Store

    return Store(":memory:")


def cmd_windows(settings: Settings, args: argparse.Namespace) -> int:
    from connector.sinks.slack_render import RenderContext, format_time

    store = _open_state(settings)
    if store is None:
        return 1
    if args.problems:
        rows = store.problems()
        if args.json:
            print(
                json.dumps(
                    [{"number": r.number, "sys_id": r.sys_id, "problems": r.problems} for r in rows],
                    ensure_ascii=False,
                    indent=2,
                )
            )
        for r in rows if not args.json else []:
            for p in r.problems:
                print(p)
        if not rows and not args.json:
            print("no rejected tickets")
        return 0
    ctx = RenderContext(locale=settings.slack.locale, tz=settings.slack.tz)
    tracked = sorted(
        store.tracked(), key=lambda t: t.window.planned_start or datetime.max.replace(tzinfo=timezone.utc)
    )
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "number": t.window.number,
                        "phase": t.phase.value,
                        "title": t.window.title,
                        "start": t.window.planned_start.isoformat() if t.window.planned_start else None,
                        "end": t.window.planned_end.isoformat() if t.window.planned_end else None,
                        "cis": list(t.window.cis),
                    }
                    for t in tracked
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    for t in tracked:
        w = t.window
        start = format_time(w.planned_start, ctx) if w.planned_start else "-"
        end = format_time(w.planned_end, ctx) if w.planned_end else "-"
        print(f"{w.number:<12} {t.phase.value:<12} {start} → {end}  {', '.join(w.cis) or '-'}  {w.title}")
    if not tracked:
        print("no windows yet")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """One screen: health, last poll, cursor, windows, outbox, failing sinks, problem tickets.
    Exit 0 when healthy, 1 when not (or there is no state yet)."""
    from connector import status

    store = _open_state(settings)
    if store is None:
        return 1
    try:
        healthz = None
        if settings.health.enabled:
            host, port = settings.health.address
            healthz = lambda: status.fetch_healthz(host, port)  # noqa: E731
        now = datetime.now(timezone.utc)
        report = status.collect(settings, store, now, healthz or (lambda: None))
        print(status.render(report, now, __version__))
    finally:
        store.close()
    return 0 if report.healthy else 1


def _open_state(settings: Settings):  # type: ignore[no-untyped-def]
    """The state database for a read-only command: never created, never migrated (a database of
    another schema belongs to a daemon of another version). None, with a message, when unusable."""
    from connector.store.sqlite import MIGRATIONS, Store

    path = settings.state.path
    if not path.exists():
        print(
            f"itsm-connector: no state database at {path}: the daemon has not run yet, "
            "or state.path in the config points elsewhere",
            file=sys.stderr,
        )
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as e:
        print(f"itsm-connector: cannot read the state database {path}: {e}", file=sys.stderr)
        return None
    if version != len(MIGRATIONS):
        print(
            f"itsm-connector: the state database {path} is schema v{version}, this version "
            f"({__version__}) expects v{len(MIGRATIONS)}: restart the daemon so it migrates it",
            file=sys.stderr,
        )
        return None
    return Store(path)


def cmd_digest(settings: Settings, args: argparse.Namespace) -> int:
    from connector.app import build_app
    from connector.store.sqlite import Store

    store = _open_state(settings) if settings.state.path.exists() else Store(":memory:")
    if store is None:
        return 1
    app = build_app(settings, store=store)
    try:
        now = app.daemon.clock()
        for channel in [args.channel] if args.channel else settings.all_channels:
            if channel not in app.channels:
                print(
                    f"itsm-connector: unknown channel {channel!r} (known: {', '.join(app.channels)})",
                    file=sys.stderr,
                )
                return 2
            print(f"=== {channel}")
            print(app.digest_preview(channel, now))
        return 0
    finally:
        app.close()


def cmd_calendar(settings: Settings, args: argparse.Namespace) -> int:
    from connector.app import build_app
    from connector.store.sqlite import Store

    store = _open_state(settings) if settings.state.path.exists() else Store(":memory:")
    if store is None:
        return 1
    app = build_app(settings, store=store)
    try:
        sys.stdout.write(app.calendar(app.daemon.clock(), args.channel).decode("utf-8"))
        return 0
    finally:
        app.close()


if __name__ == "__main__":
    sys.exit(main())
