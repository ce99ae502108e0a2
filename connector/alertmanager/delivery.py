"""Keeps each window's Alertmanager silences in step with its phase (desired state, not events).

Every pass looks at the windows that may need a silence (scheduled, running, overrunning, just
ended) or still hold one, and lets :class:`AlertmanagerSink` converge them; a pass with nothing to
change makes no HTTP request. Silence ids are stored with the window; a change to them asks the
Slack sink to refresh that window's parent message. Alertmanager being down never holds back
Slack (separate worker), and Slack never holds back this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import requests

from connector.alertmanager.apply import AlertmanagerSink
from connector.alertmanager.client import AlertmanagerClient, AlertmanagerError
from connector.alertmanager.plan import StoredSilence
from connector.alertmanager.settings import AlertmanagerSettings
from connector.domain.window import Phase
from connector.errors import SinkPermanentError, SinkRetryableError
from connector.store.api import StateStore

log = logging.getLogger(__name__)

SILENCEABLE = frozenset({Phase.SCHEDULED, Phase.IN_PROGRESS, Phase.OVERRUN, Phase.ENDED})


@dataclass
class SilenceReport:
    changed: int = 0
    problems: int = 0


class SilenceDelivery:
    def __init__(
        self, sink: AlertmanagerSink, store: StateStore, on_change: Callable[[tuple[str, str]], None]
    ) -> None:
        self.sink = sink
        self.store = store
        self.on_change = on_change
        self._problems: dict[tuple[str, str], list[str]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: AlertmanagerSettings,
        store: StateStore,
        on_change: Callable[[tuple[str, str]], None],
        session: requests.Session | None = None,
    ) -> SilenceDelivery:
        return cls(AlertmanagerSink(AlertmanagerClient(settings, session), settings), store, on_change)

    def deliver(self, now: datetime) -> SilenceReport:
        report = SilenceReport()
        for t in self.store.tracked():
            key = t.window.key
            current = [StoredSilence.from_dict(d) for d in self.store.silences(key)]
            if t.phase not in SILENCEABLE and not current:
                continue
            try:
                outcome = self.sink.apply(t.window, t.phase, current, now)
            except AlertmanagerError as e:
                if e.outcome is not None:
                    self._save(key, [s.to_dict() for s in e.outcome.silences])
                if e.auth:
                    raise SinkPermanentError(f"Alertmanager refused our credentials: {e}") from None
                if e.retryable:
                    raise SinkRetryableError(f"Alertmanager: {e}", retry_after=e.retry_after) from None
                self._note(key, t.window.number, [f"Alertmanager refused the silence: {e}"])
                report.problems += 1
                continue
            self._note(key, t.window.number, outcome.problems)
            if outcome.changes:
                self._save(key, [s.to_dict() for s in outcome.silences])
                report.changed += len(outcome.changes)
        return report

    def _save(self, key: tuple[str, str], data: list[dict[str, str]]) -> None:
        with self.store.transaction():
            self.store.set_silences(key, data)
        self.on_change(key)

    def _note(self, key: tuple[str, str], number: str, problems: list[str]) -> None:
        """Log a window's silence problems once, when they change."""
        if problems and problems != self._problems.get(key):
            for p in problems:
                log.warning("%s: silence: %s", number, p)
        if problems:
            self._problems[key] = problems
        else:
            self._problems.pop(key, None)
