"""The commands that read the state database and print: ``windows``, ``status``, ``digest`` and
``calendar``. They never create or migrate the database (``_open_state``).

Everything they print goes through :func:`_out`: a control, line-break or bidi character that came
from a ticket (or a state saved before ticket text was cleaned) is shown escaped (``\u001b``), so a
terminal shows it and never obeys it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from connector import __version__
from connector.config import Settings
from connector.logs import escape_controls, redact

if TYPE_CHECKING:
    from connector.slack.render import RenderContext


def _out(text: str, *, one_line: bool = False) -> None:
    """Print ``text`` terminal-safe: only our own newlines kept (none with ``one_line``). JSON stays
    valid: the escapes are JSON's."""
    print(escape_controls(text, keep="" if one_line else "\n"))


def cmd_windows(settings: Settings, args: argparse.Namespace) -> int:
    from connector.slack.render import RenderContext

    store = _open_state(settings)
    if store is None:
        return 1
    if args.problems:
        rows = store.problems()
        if args.json:
            _out(
                json.dumps(
                    [{"number": r.number, "sys_id": r.sys_id, "problems": r.problems} for r in rows],
                    ensure_ascii=False,
                    indent=2,
                )
            )
        for r in rows if not args.json else []:
            for p in r.problems:
                _out(p, one_line=True)
        if not rows and not args.json:
            print("no rejected tickets")
        return 0
    ctx = RenderContext(locale=settings.slack.locale, tz=settings.slack.tz)
    tracked = sorted(
        store.tracked(), key=lambda t: t.window.planned_start or datetime.max.replace(tzinfo=timezone.utc)
    )
    if args.json:
        _out(
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
        start, end = _when(w.planned_start, ctx), _when(w.planned_end, ctx)
        _out(
            f"{w.number:<12} {t.phase.value:<12} {start} → {end}  {', '.join(w.cis) or '-'}  {w.title}",
            one_line=True,
        )
    if not tracked:
        print("no windows yet")
    return 0


def _when(dt: datetime | None, ctx: RenderContext) -> str:
    """``dt`` in the display timezone; in UTC if that zone cannot show it (a date saved before dates
    were checked: 9999-12-31 east of UTC)."""
    from connector.slack.render import format_time

    if dt is None:
        return "-"
    try:
        return format_time(dt, ctx)
    except (OverflowError, ValueError):
        return f"{dt.isoformat(sep=' ', timespec='minutes')} UTC"


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """One screen: health, last poll, cursor, windows, outbox, failing sinks, problem tickets.
    Exit 0 when healthy, 1 when not (or there is no state yet)."""
    from connector.cli import status

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
        _out(redact(status.render(report, now, __version__)))  # stored errors may quote a secret
    finally:
        store.close()
    return 0 if report.healthy else 1


def _open_state(settings: Settings):  # type: ignore[no-untyped-def]
    """The state database for a read-only command: never created, never migrated (a database of
    another schema belongs to a daemon of another version). None, with a message, when unusable."""
    from connector.store.schema import MIGRATIONS
    from connector.store.sqlite import Store

    if settings.state.postgresql:
        return _open_shared_state(settings)
    path = settings.state.path
    if not path.exists():
        print(
            f"itsm-connector: no state database at {path}: the daemon has not run yet, "
            "or state.path in the config points elsewhere",
            file=sys.stderr,
        )
        return None
    store = Store(path, read_only=True)  # a damaged or unreadable file: StateError, said by main
    version = store.schema_version()
    if version != len(MIGRATIONS):
        store.close()
        print(
            f"itsm-connector: the state database {path} is schema v{version}, this version "
            f"({__version__}) expects v{len(MIGRATIONS)}: restart the daemon so it migrates it",
            file=sys.stderr,
        )
        return None
    return store


def _open_shared_state(settings: Settings):  # type: ignore[no-untyped-def]
    """The PostgreSQL state for a read-only command: neither created nor migrated."""
    from connector.store.pg_schema import PG_MIGRATIONS
    from connector.store.postgres import PostgresStore

    st = settings.state
    assert st.url is not None
    store = PostgresStore(
        st.url,
        password=st.password.get_secret_value() if st.password else None,
        schema=st.pg_schema,
        application_name="itsm-connector status",
        migrate=False,
    )
    try:
        version = store.schema_version()
    except Exception:
        store.close()
        raise
    if version != len(PG_MIGRATIONS):
        store.close()
        print(
            f"itsm-connector: the state database {store.location} is schema v{version}, this version "
            f"({__version__}) expects v{len(PG_MIGRATIONS)}: start a replica so it migrates it",
            file=sys.stderr,
        )
        return None
    return store


def cmd_digest(settings: Settings, args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from connector.domain.target import Target
    from connector.slack.context import render_context
    from connector.slack.digest import shift_preview

    channels = settings.all_channels
    if args.channel and args.channel not in channels:
        known = ", ".join(channels)
        print(f"itsm-connector: unknown channel {args.channel!r} (known: {known})", file=sys.stderr)
        return 2
    store = _open_state(settings)
    if store is None:
        return 1
    try:
        now = datetime.now(timezone.utc)
        for channel in [args.channel] if args.channel else channels:
            cs = settings.slack.channel_settings(channel)
            tz = ZoneInfo(cs.timezone or settings.slack.timezone)
            context = render_context(settings, store, channel)
            _out(f"=== {channel}", one_line=True)
            _out(shift_preview(store, Target.slack(channel), context, tz, now))
        return 0
    finally:
        store.close()


def cmd_calendar(settings: Settings, args: argparse.Namespace) -> int:
    from connector.calendar import CalendarFeed

    store = _open_state(settings)
    if store is None:
        return 1
    try:
        now = datetime.now(timezone.utc)
        feed = CalendarFeed(store, lambda: now).render(now, args.channel).decode("utf-8")
        sys.stdout.write("\r\n".join(escape_controls(line) for line in feed.split("\r\n")))
        return 0
    finally:
        store.close()
