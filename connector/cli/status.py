"""``itsm-connector status``: what the daemon is doing, in one screen.

Everything comes from the state database, which the daemon keeps current (last poll per source,
cursor, outbox, windows, rejected tickets, each sink's last failure), so the command works while the
daemon runs (SQLite WAL lets a reader in) and after it stopped. When the health listener is enabled the
running daemon's own ``/healthz`` verdict is shown; otherwise (or when nothing answers) the verdict is
worked out from the database with the same rule (:func:`connector.health.evaluate_health`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connector.config import Settings
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES, Phase
from connector.health import HealthSnapshot, SourceHealth, evaluate_health
from connector.store.api import StateStore

HealthAnswer = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class SourceLine:
    name: str
    url: str
    ok_at: datetime | None
    error: str | None
    error_at: datetime | None
    cursor: str | None


@dataclass(frozen=True)
class StatusReport:
    state_path: str
    sources: list[SourceLine]
    phases: Mapping[str, int]
    outbox_depth: int
    outbox_age: float
    problems: list[str]  # ticket numbers
    sink_errors: Mapping[str, tuple[str, datetime | None]]  # failing sinks only
    healthy: bool
    reasons: list[str] = field(default_factory=list)
    health_from: str = "the state database"
    #: replicas on PostgreSQL: this host's daemon's role ("leader", "standby"; None: not answering)
    role: str | None = None
    #: who leads, as the lease row says: "host (pid N) since …, token T"; None on SQLite
    leader: str | None = None
    replicated: bool = False


def fetch_healthz(host: str, port: int, timeout: float = 2.0) -> HealthAnswer | None:
    """The running daemon's ``/healthz`` (status, body), or None when nothing answers there."""
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def collect(
    settings: Settings,
    store: StateStore,
    now: datetime,
    healthz: Callable[[], HealthAnswer | None] = lambda: None,
) -> StatusReport:
    sources = []
    for sn in settings.all_sources:
        poll = store.last_poll(sn.name)
        cursor = store.cursor(sn.name)
        sources.append(
            SourceLine(
                name=sn.name,
                url=sn.url,
                ok_at=poll.ok_at if poll else None,
                error=poll.error if poll else None,
                error_at=poll.error_at if poll else None,
                cursor=f"{_utc(cursor.updated_on)} · {cursor.sys_id or '-'}" if cursor else None,
            )
        )
    phases: dict[str, int] = {}
    for t in store.tracked():
        phases[t.phase.value] = phases.get(t.phase.value, 0) + 1
    depth, age = store.outbox_stats(now)
    sink_errors = {}
    for sink in ["alertmanager", *(str(Target.slack(c)) for c in settings.all_channels)]:
        state = store.sink_state(sink)
        if state is not None and state.error:
            sink_errors[sink] = (state.error, state.since)
    answer = healthz()
    role = None
    if answer is not None:
        code, body = answer
        healthy, reasons, origin = code == 200, list(body.get("reasons") or []), "the running daemon"
        role = body.get("role")
    else:
        healthy, reasons = _offline_health(settings, sources, sink_errors, now)
        origin = "the state database"
    return StatusReport(
        state_path=store.location,
        sources=sources,
        phases=phases,
        outbox_depth=depth,
        outbox_age=age,
        problems=sorted(r.number for r in store.problems()),
        sink_errors=sink_errors,
        healthy=healthy,
        reasons=reasons,
        health_from=origin,
        role=role,
        leader=_leader(store, now),
        replicated=settings.state.postgresql,
    )


def _leader(store: StateStore, now: datetime) -> str | None:
    """Who holds the lease (PostgreSQL), read from the state: host, pid, since, until, token."""
    lease = getattr(store, "lease", None)
    found = lease() if lease is not None else None
    if found is None:
        return None
    host, pid, since, expires_at, token = found
    line = f"{host} (pid {pid}) since {_utc(since)}, token {token}"
    if expires_at < now:
        line += f"; the lease lapsed {_ago(expires_at, now)} ago: no replica leads"
    return line


def _offline_health(
    settings: Settings,
    sources: list[SourceLine],
    sink_errors: Mapping[str, tuple[str, datetime | None]],
    now: datetime,
) -> tuple[bool, list[str]]:
    """The daemon's rule, applied to what the database says: each source by its own interval. The
    ages are the wall clock's here (another process, perhaps no daemon running), not the daemon's
    monotonic ones."""
    reasons: list[str] = []
    plans = {sn.name: sn for sn in settings.all_sources}
    judged = {}
    for s in sources:
        if s.ok_at is None:
            reasons.append(f"{s.name}: no successful poll recorded" + (f": {s.error}" if s.error else ""))
            continue
        age = max(0.0, (now - s.ok_at).total_seconds())
        judged[s.name] = SourceHealth(plans[s.name].poll_interval, ok_age=age, error=s.error)
    reasons += evaluate_health(HealthSnapshot(started_at=now, uptime=0.0, sources=judged))[1]
    reasons += [f"{sink} delivery failing: {err}" for sink, (err, _) in sink_errors.items()]
    return not reasons, reasons


def render(r: StatusReport, now: datetime, version: str) -> str:
    lines = [f"itsm-connector {version}   state {r.state_path}"]
    verdict = "ok" if r.healthy else "FAILING"
    lines.append(f"health     {verdict} (according to {r.health_from})")
    lines += [f"           - {reason}" for reason in r.reasons]
    if r.replicated:
        lines.append(f"replica    this host: {r.role or 'no daemon answers (health.enabled?)'}")
        lines.append(f"leader     {r.leader or 'none: no replica has held the lease yet'}")
    for s in r.sources:
        lines.append(f"source     {s.name}  {s.url}")
        last = f"{_utc(s.ok_at)} ({_ago(s.ok_at, now)} ago)" if s.ok_at else "never"
        lines.append(f"  last ok  {last}")
        if s.error:
            lines.append(f"  error    {s.error}" + (f" (at {_utc(s.error_at)})" if s.error_at else ""))
        lines.append(f"  cursor   {s.cursor or '(none yet: the first sync has not finished)'}")
    lines.append(f"windows    {_phases(r.phases)}")
    outbox = f"{r.outbox_depth} undelivered"
    if r.outbox_depth:
        outbox += f", oldest {_duration(r.outbox_age)}"
    lines.append(f"outbox     {outbox}")
    for sink, (err, since) in r.sink_errors.items():
        lines.append(f"sink       {sink} failing" + (f" since {_utc(since)}" if since else "") + f": {err}")
    if r.problems:
        shown = ", ".join(r.problems[:8]) + (", …" if len(r.problems) > 8 else "")
        lines.append(
            f"problems   {len(r.problems)} rejected ticket{'s' if len(r.problems) != 1 else ''}: {shown}"
            " (itsm-connector windows --problems)"
        )
    else:
        lines.append("problems   none")
    return "\n".join(lines)


def _phases(counts: Mapping[str, int]) -> str:
    """``2 in progress, 5 scheduled; 12 finished`` (open phases in lifecycle order)."""
    if not counts:
        return "none yet"
    live = [p for p in Phase if counts.get(p.value) and p not in TERMINAL_PHASES]
    open_ = [f"{counts[p.value]} {p.value.replace('_', ' ')}" for p in live]
    done = sum(counts.get(p.value, 0) for p in TERMINAL_PHASES)
    return (", ".join(open_) or "none open") + (f"; {done} finished" if done else "")


def _dt(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _utc(value: datetime | None) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC" if value else "-"


def _ago(then: datetime, now: datetime) -> str:
    return _duration((now - then).total_seconds())


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
