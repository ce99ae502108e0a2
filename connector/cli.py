"""Command line: ``itsm-connector {run,sync,check,windows,status,demo}``. No business logic here.

Exit codes: 0 success; 1 a check or sync failed; 2 bad configuration or usage (one readable message,
no traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from connector import __version__
from connector.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from connector.errors import ConfigError, SinkError, SourceError
from connector.logs import register_secret, setup_logging

log = logging.getLogger("connector")


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
        settings = load_settings(args.config)
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
    from connector.health import HealthServer
    from connector.sdnotify import Notifier

    stop = threading.Event()
    notifier = Notifier.from_env()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping after the current step", signal.Signals(signum).name)
        notifier.stopping()
        stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        log.warning("SIGHUP: configuration reload is not supported; restart the service to apply changes")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    app = _build(settings, args, stop)
    if settings.health.enabled:
        host, port = settings.health.address
        app.health = HealthServer(host, port, app.health_snapshot, app.metrics.registry)
        app.health.start()
        log.info("health and metrics on http://%s:%d/healthz and /metrics", host, app.health.port)
    last_status = [0.0]

    def heartbeat() -> None:
        notifier.watchdog()
        if time.monotonic() - last_status[0] >= 10:
            last_status[0] = time.monotonic()
            notifier.status(app.status_line())

    log.info(
        "itsm-connector %s started: source %s, channel %s, state %s",
        __version__,
        settings.primary_source.url,
        settings.slack.channel,
        app.store.path,
    )
    notifier.ready()
    try:
        app.daemon.run(watchdog_interval=notifier.watchdog_interval())
    finally:
        app.close()
    return 0


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
    from connector.store.sqlite import Store

    store = Store(settings.state.path)
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
    from connector.store.sqlite import Store

    store = Store(settings.state.path)
    now = datetime.now(timezone.utc)
    name = settings.primary_source.name
    poll = json.loads(store.meta_get(f"last_poll:{name}") or "{}")
    cursor = store.cursor(name)
    depth, age = store.outbox_stats(now)
    problems = store.problems()
    print(f"state        {settings.state.path}")
    print(f"last poll ok {poll.get('ok_at', 'never')}")
    if poll.get("error"):
        print(f"last error   {poll['error']}")
    print(
        f"cursor       {cursor.updated_on:%Y-%m-%d %H:%M:%S} UTC {cursor.sys_id}"
        if cursor
        else "cursor       (none)"
    )
    print(f"outbox       {depth} undelivered" + (f", oldest {age:.0f}s" if depth else ""))
    print(f"problems     {len(problems)} rejected tickets" + (" (windows --problems)" if problems else ""))
    ok_at = poll.get("ok_at")
    healthy = (
        bool(ok_at)
        and (now - datetime.fromisoformat(ok_at)).total_seconds() <= 3 * settings.primary_source.poll_interval
    )
    print(f"health       {'ok' if healthy else 'FAILING'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
