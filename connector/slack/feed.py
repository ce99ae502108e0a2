"""One Slack channel's feed: its delivery pass (:class:`ChannelFeed.deliver`) and its digest preview.

A pass posts a pending digest (first run, shift handover), then the outbox of the channel and the
parents that :class:`connector.refresh.RefreshRequests` asks to bring up to date, and counts what
it did. Every channel has its own feed and its own worker (``connector.daemon.SinkWorker``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from connector.metrics import Metrics
from connector.refresh import RefreshRequests
from connector.slack.delivery import DeliveryReport, SlackSink
from connector.slack.digest import DigestPoster

log = logging.getLogger(__name__)


class ChannelFeed:
    def __init__(
        self,
        sink: SlackSink,
        digest: DigestPoster,
        refreshes: RefreshRequests,
        metrics: Metrics,
        *,
        after_pass: Callable[[datetime], None] = lambda now: None,
    ) -> None:
        self.sink = sink
        self.digest = digest
        self._refreshes = refreshes
        self._metrics = metrics
        self._after_pass = after_pass  # e.g. the outbox and window gauges

    @property
    def channel(self) -> str:
        return self.sink.channel

    def deliver(self, now: datetime) -> DeliveryReport:
        digests = int(self.digest.post_if_pending(now) is not None)
        self.digest.schedule_shift_digest(now)
        digests += int(self.digest.post_if_pending(now) is not None)
        target = self.sink.target
        refresh = self._refreshes.take(target)
        try:
            report = self.sink.deliver(now, also_refresh=refresh)
        except Exception:
            self._refreshes.give_back(target, refresh)
            raise
        report.digests = digests  # a digest is a post too: counted in posted
        report.posted += digests
        for result, n in (
            ("posted", report.posted),
            ("updated", report.updated),
            ("recovered", report.recovered),
            ("refused", len(report.poisoned)),
        ):
            self._metrics.delivery("slack", result, n)
        self._after_pass(now)
        if report.posted or report.updated or report.recovered or report.poisoned:
            depth, _ = self.sink.store.outbox_stats(now)
            log.info(
                "slack %s: %s %d (%d digest), updated %d, recovered %d, refused %d; outbox %d",
                self.channel,
                "printed (dry run)" if self.sink.dry_run else "posted",
                report.posted,
                report.digests,
                report.updated,
                report.recovered,
                len(report.poisoned),
                depth,
            )
        return report

    def digest_preview(self, now: datetime) -> str:
        """The shift digest of this channel at ``now``, as text (``itsm-connector digest --print``)."""
        return self.digest.preview(now)
