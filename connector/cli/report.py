"""The commands that read the state database and print: ``windows``, ``status``, ``digest`` and
``calendar``. They never create or migrate the database (``_open_state``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime, timezone

from connector import __version__
from connector.config import Settings


def cmd_windows(settings: Settings, args: argparse.Namespace) -> int:
    from connector.slack.render import RenderContext, format_time

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
    from connector.store.schema import MIGRATIONS
    from connector.store.sqlite import Store

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


def _app_over_state(settings: Settings):  # type: ignore[no-untyped-def]
    """The app over the state database as it is (an empty one when there is none yet), for the
    commands that only read it; None (after saying why) when it cannot be opened."""
    from connector.store.sqlite import Store
    from connector.wiring import build_app

    store = _open_state(settings) if settings.state.path.exists() else Store(":memory:")
    return None if store is None else build_app(settings, store=store)


def cmd_digest(settings: Settings, args: argparse.Namespace) -> int:
    app = _app_over_state(settings)
    if app is None:
        return 1
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
    app = _app_over_state(settings)
    if app is None:
        return 1
    try:
        sys.stdout.write(app.calendar(app.daemon.clock(), args.channel).decode("utf-8"))
        return 0
    finally:
        app.close()
