"""Prometheus metrics for the connector, in a registry of their own.

``Metrics`` owns a fresh ``CollectorRegistry`` (never the process-global one), so tests can build as
many as they like and the health listener exposes exactly these series. Callers speak in plain
parameters (``poll_failed("servicenow", "timeout")``); metric objects stay private.

Series (all prefixed ``itsm_connector_``)::

    polls_total{source,result}              counter  result: ok | error
    poll_errors_total{source,kind}          counter  kind: auth | unavailable | bad_response (errors.py),
                                                     internal (a bug: the poll crashed)
    last_success_timestamp_seconds{source}  gauge    unix time of the last successful poll
    source_request_age_seconds{source}      gauge    how long the oldest request under way has waited
                                                     for its answer (0 when none is): a hung source
    tickets_fetched_total{source}           counter
    events_total{kind}                      counter  domain events produced (announced, started, …)
    deliveries_total{sink,result}           counter  slack: posted | updated | recovered | refused;
                                                     alertmanager: changed | refused; both: error
                                                     (a delivery pass that failed and will be retried)
    outbox_depth                            gauge    undelivered events
    outbox_oldest_age_seconds               gauge    age of the oldest undelivered event (0 when empty)
    windows{phase}                          gauge    windows known per phase
    problem_tickets                         gauge    tickets that could not be turned into a window
    leader                                  gauge    1 while this replica is the active one (always 1
                                                     on SQLite: one replica), 0 on a standby
    leadership_changes_total                counter  changes of this replica's role (docs/ha.md)
    build_info{version}                     gauge    always 1
    poll_duration_seconds{source}           histogram one poll attempt of a source (all its pages)
    slack_request_duration_seconds{method}  histogram one Slack Web API request (chat.postMessage, …)
    ticket_to_slack_seconds{source,channel} histogram news (a ticket's sys_updated_on, or the planned
                                                     start/end that time brings) → Slack shows it
    hook_hints_total{source}                counter  hints accepted by the hook listener
    hook_refusals_total{source,reason}      counter  hints refused: unauthorized | expired | replayed |
                                                     too_large | bad_request | rate_limited |
                                                     queue_full | not_found (source "": a path that
                                                     names no source taking hints); all 0 at start
    hint_rereads_total{source,result}       counter  rounds of hinted records read again: ok | error
    hint_records_total{source,result}       counter  records of those rounds: applied | stale (older
                                                     than what is stored: skipped) | absent (deleted
                                                     or outside the filter)

Plus the standard ``process_*`` series (CPU, memory, open files, start time). No ``*_created``
series: they double the series count and nothing here graphs them.

Every error series an alert may ask for exists from the start at 0 (``rate()`` and ``absent()`` need
the series before the first error): per source, polls by result and failures by kind
(``sources=``); per sink, every delivery result (``sinks=``).

The gauges are state, not events: the daemon refreshes them from the store before every scrape
(``HealthServer(before_metrics=...)``) and after every delivery pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

PREFIX = "itsm_connector"

#: connector.daemon's error kinds (``_error_kind``): each source's series start at 0
POLL_ERROR_KINDS: tuple[str, ...] = ("auth", "unavailable", "bad_response", "internal")
#: the results each sink reports (``deliveries_total{sink,result}``), every one from 0
SINK_RESULTS: dict[str, tuple[str, ...]] = {
    "slack": ("posted", "updated", "recovered", "refused", "error"),
    "alertmanager": ("changed", "refused", "error"),
}
#: seconds; a poll is one request when idle, minutes of pages on a first sync
POLL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: seconds; slack.timeout is 15 s by default
SLACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
#: seconds, for the latency promise: a pushed hint (about a second), a poll interval (60 s) plus
#: delivery, up to an outage
LATENCY_BUCKETS = (
    1.0, 1.5, 2.5, 5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0
)

# The values of connector.domain.window.Phase at the time of writing, as plain strings so this module
# stays independent of the domain; the daemon should pass ``phases=[p.value for p in Phase]``.
# set_windows() also accepts phases not listed here (they are remembered and zeroed later).
DEFAULT_PHASES: tuple[str, ...] = (
    "pending",
    "scheduled",
    "in_progress",
    "overrun",
    "ended",
    "completed",
    "cancelled",
    "withdrawn",
)


class Metrics:
    def __init__(
        self,
        version: str,
        phases: Iterable[str] = DEFAULT_PHASES,
        *,
        sources: Iterable[str] = (),
        sinks: Iterable[str] = (),
        process: bool = True,
    ) -> None:
        """``sources`` and ``sinks`` (``slack``, ``alertmanager``): their series start at 0.
        ``process``: add the standard ``process_*`` series (of this process)."""
        disable_created_metrics()  # process-wide; the only registry this process serves is ours
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._phases: set[str] = set(phases)
        if process:
            ProcessCollector(registry=r)

        self._polls = Counter(
            f"{PREFIX}_polls", "Polls of a ticket source, by result.", ["source", "result"], registry=r
        )
        self._poll_errors = Counter(
            f"{PREFIX}_poll_errors", "Failed polls, by error kind.", ["source", "kind"], registry=r
        )
        self._last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds",
            "Unix time of the last successful poll.",
            ["source"],
            registry=r,
        )
        self._request_age = Gauge(
            f"{PREFIX}_source_request_age_seconds",
            "How long the oldest request to a source under way has waited for its answer (0: none).",
            ["source"],
            registry=r,
        )
        self._fetched = Counter(
            f"{PREFIX}_tickets_fetched", "Tickets fetched from a source.", ["source"], registry=r
        )
        self._events = Counter(f"{PREFIX}_events", "Window events produced, by kind.", ["kind"], registry=r)
        self._deliveries = Counter(
            f"{PREFIX}_deliveries", "Event deliveries to sinks, by result.", ["sink", "result"], registry=r
        )
        self._outbox_depth = Gauge(f"{PREFIX}_outbox_depth", "Events waiting for delivery.", registry=r)
        self._outbox_age = Gauge(
            f"{PREFIX}_outbox_oldest_age_seconds",
            "Age of the oldest undelivered event (0 when the outbox is empty).",
            registry=r,
        )
        self._windows = Gauge(f"{PREFIX}_windows", "Maintenance windows by phase.", ["phase"], registry=r)
        self._problems = Gauge(
            f"{PREFIX}_problem_tickets", "Tickets that could not be turned into a window.", registry=r
        )
        self._leader = Gauge(
            f"{PREFIX}_leader", "1 while this replica is the active one (holds the lease).", registry=r
        )
        self._leader.set(1)
        self._leadership_changes = Counter(
            f"{PREFIX}_leadership_changes", "Changes of this replica's role (leader/standby).", registry=r
        )
        self._build_info = Gauge(
            f"{PREFIX}_build_info", "Build information; always 1.", ["version"], registry=r
        )
        self._poll_seconds = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "One poll attempt of a ticket source, all its pages.",
            ["source"],
            registry=r,
            buckets=POLL_BUCKETS,
        )
        self._slack_seconds = Histogram(
            f"{PREFIX}_slack_request_duration_seconds",
            "One request to the Slack Web API, by method.",
            ["method"],
            registry=r,
            buckets=SLACK_BUCKETS,
        )
        self._shown = Histogram(
            f"{PREFIX}_ticket_to_slack_seconds",
            "From the news (a ticket's update, or the planned start/end that time brings) until Slack"
            " accepted the message that tells it, per source and channel.",
            ["source", "channel"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self._build_info.labels(version=version).set(1)
        self._hook_hints = Counter(
            f"{PREFIX}_hook_hints", "Hints accepted by the hook listener.", ["source"], registry=r
        )
        self._hook_refusals = Counter(
            f"{PREFIX}_hook_refusals", "Hints refused, by reason.", ["source", "reason"], registry=r
        )
        self._rereads = Counter(
            f"{PREFIX}_hint_rereads", "Rounds of hinted records read again.", ["source", "result"], registry=r
        )
        self._reread_records = Counter(
            f"{PREFIX}_hint_records",
            "Hinted records read again, by result.",
            ["source", "result"],
            registry=r,
        )
        for phase in sorted(self._phases):
            self._windows.labels(phase=phase).set(0)
        for source in sources:
            self.declare_source(source)
        for sink in sinks:
            self.declare_sink(sink)

    def declare_source(self, source: str) -> None:
        """Start every series of ``source`` at 0: polls by result, failures by kind, tickets."""
        for result in ("ok", "error"):
            self._polls.labels(source=source, result=result)
        for kind in POLL_ERROR_KINDS:
            self._poll_errors.labels(source=source, kind=kind)
        self._fetched.labels(source=source)
        self._poll_seconds.labels(source=source)

    def declare_sink(self, sink: str) -> None:
        """Start every delivery result of ``sink`` (``slack``, ``alertmanager``) at 0."""
        for result in SINK_RESULTS.get(sink, ("error",)):
            self._deliveries.labels(sink=sink, result=result)

    def poll_timer(self, source: str) -> AbstractContextManager[object]:
        """Times one poll attempt of ``source`` (``with metrics.poll_timer("acme"): ...``), failed or not."""
        return self._poll_seconds.labels(source=source).time()

    def slack_request(self, method: str, seconds: float) -> None:
        self._slack_seconds.labels(method=method).observe(seconds)

    def shown(self, source: str, channel: str, seconds: float) -> None:
        """Slack accepted, ``seconds`` after the news, the message telling it in ``channel``."""
        self._shown.labels(source=source, channel=channel).observe(max(0.0, seconds))

    def watch_hooks(self, sources: Iterable[str], reasons: Iterable[str]) -> None:
        """Every hook series of ``sources`` at 0, so a refusal shows as a rise, not a new series."""
        reasons = list(reasons)
        self._hook_refusals.labels(source="", reason="not_found")
        for source in sources:
            self._hook_hints.labels(source=source)
            for reason in reasons:
                self._hook_refusals.labels(source=source, reason=reason)
            for result in ("ok", "error"):
                self._rereads.labels(source=source, result=result)
            for result in ("applied", "stale", "absent"):
                self._reread_records.labels(source=source, result=result)

    def hint_accepted(self, source: str) -> None:
        self._hook_hints.labels(source=source).inc()

    def hint_refused(self, source: str, reason: str) -> None:
        self._hook_refusals.labels(source=source, reason=reason).inc()

    def reread(self, source: str, ok: bool, records: Mapping[str, int] | None = None) -> None:
        """A round of hinted records read again; ``records``: how many by result."""
        self._rereads.labels(source=source, result="ok" if ok else "error").inc()
        for result, n in (records or {}).items():
            self._reread_records.labels(source=source, result=result).inc(n)

    def poll_succeeded(self, source: str, fetched: int, at: datetime) -> None:
        """A poll of ``source`` finished at ``at`` (timezone-aware) having fetched ``fetched`` tickets."""
        self._polls.labels(source=source, result="ok").inc()
        self._fetched.labels(source=source).inc(fetched)
        self._last_success.labels(source=source).set(at.timestamp())

    def poll_failed(self, source: str, kind: str) -> None:
        self._polls.labels(source=source, result="error").inc()
        self._poll_errors.labels(source=source, kind=kind).inc()

    def watch_requests(self, source: str, age: Callable[[], float | None]) -> None:
        """``age()`` is read at every scrape: seconds the oldest request to ``source`` has waited."""
        self._request_age.labels(source=source).set_function(lambda: age() or 0.0)

    def event(self, kind: str, n: int = 1) -> None:
        self._events.labels(kind=kind).inc(n)

    def delivery(self, sink: str, result: str, n: int = 1) -> None:
        """``n`` deliveries to ``sink`` ended with ``result`` (0 still makes the series visible)."""
        self._deliveries.labels(sink=sink, result=result).inc(n)

    def set_outbox(self, depth: int, oldest_age: float | None) -> None:
        """Outbox state; ``oldest_age`` in seconds, None (or anything when depth is 0) reads as 0."""
        self._outbox_depth.set(depth)
        self._outbox_age.set(oldest_age if depth and oldest_age is not None else 0)

    def set_windows(self, counts: Mapping[str, int]) -> None:
        """Set the count of every known phase; phases absent from ``counts`` become 0."""
        self._phases.update(counts)
        for phase in self._phases:
            self._windows.labels(phase=phase).set(counts.get(phase, 0))

    def set_leader(self, leader: bool, *, changed: bool = True) -> None:
        """This replica's role; ``changed``: count it as a change of role."""
        self._leader.set(1 if leader else 0)
        if changed:
            self._leadership_changes.inc()

    def set_problems(self, n: int) -> None:
        self._problems.set(n)
