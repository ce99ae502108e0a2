"""The daemon's schedule, on injected clocks: each source on its own interval and in its own worker,
intervals on the monotonic clock (a wall-clock step changes nothing), a hung source holding back
only itself and seen before its timeout, the watchdog withheld only for a stuck worker, and a
crash in one source's job contained to that source.

The daemon runs as in production (``Daemon.run`` in a thread, one worker per source, real HTTP to
the ServiceNow simulators); time is :class:`tests.manual_time.ManualTime`, moved by the test.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.cli import status
from connector.config import Settings
from connector.health import evaluate_health
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.source_worker import STUCK_MARGIN
from connector.wiring import build_connector
from tests.manual_time import ManualTime
from tests.support import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
CHANNEL = "C0MAINT01"


class Desk:
    """ServiceNow simulators (one per source), Slack, and the app on manual time. Delivery to Slack
    is driven by hand (:meth:`deliver`): only the schedule of the sources runs by itself."""

    def __init__(self, tmp_path: Path, **sources: dict[str, Any]) -> None:
        self.stop = threading.Event()
        self.time = ManualTime(self.stop, T0)
        mono0 = self.time.mono
        # ServiceNow's clock is another machine's: true elapsed time, whatever our wall clock does
        self.snow = {
            name: ServiceNowSimulator(clock=lambda: T0 + timedelta(seconds=self.time.mono - mono0)).start()
            for name in sources
        }
        self.slack = SlackSimulator().start()
        self.settings = Settings.model_validate(
            {
                "sources": [
                    {
                        "name": name,
                        "url": self.snow[name].url,
                        "username": "admin",
                        "password": "secret",
                        "poll_interval": 2,
                        **extra,
                    }
                    for name, extra in sources.items()
                ],
                "slack": {
                    "token": "xoxb-simulator",
                    "channel": CHANNEL,
                    "base_url": self.slack.base_url,
                    "locale": "en",
                    "post_interval": 0,
                    "first_run": "announce",
                },
                "state": {"path": tmp_path / "state.db"},
            }
        )
        self.app = build_connector(
            self.settings,
            clock=self.time.clock,
            monotonic=self.time.monotonic,
            stop=self.stop,
            wait=self.time.wait,
        )
        self.app.daemon.sinks.clear()
        self.beats: list[float] = []
        self.threads = 1 + len(sources)  # the main loop and one worker per source
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        beat = lambda: self.beats.append(self.time.mono)  # noqa: E731
        self._thread = threading.Thread(target=self.app.daemon.run, kwargs={"heartbeat": beat}, daemon=True)
        self._thread.start()
        self.time.settle(self.threads)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self.stop.set()
        for sim in self.snow.values():
            sim.release()
        if self._thread is not None:
            self._thread.join(10)
        self.app.close()
        for sim in self.snow.values():
            sim.stop()
        self.slack.stop()

    def polls(self, name: str) -> int:
        return len([r for r in self.snow[name].requests if r.path.endswith("/change_request")])

    def add(self, name: str, number: str, title: str) -> str:
        start = T0 + timedelta(days=1)
        record = make_change(number, short_description=title, start=start, end=start + timedelta(hours=1))
        return self.snow[name].put_record("change_request", record)["sys_id"]

    def deliver(self) -> list[str]:
        """One delivery pass; the texts of the channel's parent messages."""
        for feed in self.app.feeds.values():
            feed.deliver(self.time.wall)
        return [p.text for p in self.slack.parents(CHANNEL)]

    def reasons(self) -> list[str]:
        return evaluate_health(self.app.view.health_snapshot())[1]


@pytest.fixture
def desk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Desk]:
    d = Desk(tmp_path, **request.param)
    try:
        yield d
    finally:
        d.close()


def poll_times(d: Desk, seconds: float, step: float = 0.5) -> dict[str, list[float]]:
    """Run ``seconds``; the moments (since now) at which each source was polled."""
    start, seen = d.time.mono, {name: d.polls(name) for name in d.snow}
    times: dict[str, list[float]] = {name: [] for name in d.snow}
    for _ in range(round(seconds / step)):
        d.time.advance(step)
        d.time.settle(d.threads)
        for name in d.snow:
            n = d.polls(name)
            times[name] += [d.time.mono - start] * (n - seen[name])
            seen[name] = n
    return times


# -- issue 11 item 7: each source on its own poll_interval, not rounded ------------------------------
@pytest.mark.parametrize(
    "desk", [{"acme": {"poll_interval": 1.5}, "globex": {"poll_interval": 4}}], indirect=True
)
def test_each_source_is_polled_on_its_own_interval_and_judged_by_it(desk: Desk) -> None:
    desk.start()
    times = poll_times(desk, 12)
    assert times["acme"] == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0]  # not every round(1.5) = 2 s
    assert times["globex"] == [4.0, 8.0, 12.0]  # not at acme's pace

    for sim in desk.snow.values():  # both fail from now on
        sim.inject("503", count=10_000, path_contains="change_request")
    poll_times(desk, 6)
    # 6 s without a successful poll: three of acme's 1.5 s, not yet three of globex's 4 s
    assert [r.split(":")[0] for r in desk.reasons()] == ["acme"], desk.reasons()
    assert desk.reasons()[0].startswith("acme: no successful poll for 6s (limit 4.5s): ")
    offline = status.collect(desk.settings, desk.app.store, desk.time.wall)  # `status`, no /healthz
    assert [r.split(":")[0] for r in offline.reasons] == ["acme"], offline.reasons
    poll_times(desk, 7)  # 13 s: now three of globex's too
    assert sorted({r.split(":")[0] for r in desk.reasons()}) == ["acme", "globex"]


# -- issue 12 item 5: a wall-clock step neither stops polling nor fools the health -------------------
@pytest.mark.parametrize("desk", [{"servicenow": {}}], indirect=True)
def test_a_wall_clock_step_back_or_forward_changes_nothing(desk: Desk) -> None:
    sys_id = desk.add("servicenow", "CHG0000001", "before the step")
    desk.start()
    assert poll_times(desk, 10)["servicenow"] == [2, 4, 6, 8, 10]

    desk.time.step_wall(-3600)  # back one hour
    desk.snow["servicenow"].update_record("change_request", sys_id, short_description="after the step")
    assert poll_times(desk, 10)["servicenow"] == [2, 4, 6, 8, 10]  # not one hour of nothing
    assert desk.app.store.get_tracked(("servicenow", sys_id)).window.title == "after the step"  # type: ignore[union-attr]
    health = desk.app.daemon.source_health()["servicenow"]
    assert health.ok_age is not None and 0 <= health.ok_age <= 2  # never negative
    assert desk.reasons() == []
    assert health.last_ok_at == desk.time.wall  # the wall clock only dates it

    desk.time.step_wall(+7200)  # and one hour ahead of the true time
    assert poll_times(desk, 10)["servicenow"] == [2, 4, 6, 8, 10]  # no burst of "missed" polls
    assert desk.reasons() == []  # not "no successful poll for 3600s"
    assert desk.app.daemon.uptime() == pytest.approx(30)
    assert len(desk.beats) >= 30  # the watchdog was fed all along


# -- issue 17: a hung source holds back only itself, is seen before its timeout ----------------------
@pytest.mark.parametrize("desk", [{"acme": {"timeout": 30}, "globex": {"timeout": 30}}], indirect=True)
def test_a_hung_source_is_seen_and_holds_back_only_itself(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    desk.add("globex", "CHG0000002", "globex before")
    desk.start()
    poll_times(desk, 4)
    desk.snow["acme"].inject("hang", path_contains="change_request")  # its next poll never answered
    desk.time.advance(2)
    wait_for("acme's poll to hang", lambda: desk.snow["acme"].held() == 1)
    desk.time.settle(desk.threads - 1)  # acme's worker is in the request, not waiting

    # while it hangs: globex on schedule, acme's request visible with its age, the watchdog fed
    times = poll_times_while_hung(desk, 16)
    assert times["globex"] == [2, 4, 6, 8, 10, 12, 14, 16] and times["acme"] == []
    assert desk.reasons() == [
        "acme: no successful poll for 18s (limit 6s)",
        "acme: a request has waited 16s for an answer (timeout 30s)",
    ]
    assert "FAILING: acme (no answer for 16s)" in desk.app.view.status_line()
    gauge = desk.app.metrics.registry.get_sample_value(
        "itsm_connector_source_request_age_seconds", {"source": "acme"}
    )
    assert gauge == 16
    beats = len(desk.beats)
    poll_times_while_hung(desk, 30 + STUCK_MARGIN - 16)
    assert len(desk.beats) - beats == 30 + STUCK_MARGIN - 16, "a request within its timeout + margin"

    # beyond its timeout and the margin (the timeout did not end it): the worker is stuck
    beats = len(desk.beats)
    poll_times_while_hung(desk, 3)
    assert len(desk.beats) == beats
    stuck = [r.getMessage() for r in caplog.records if "no sign of life" in r.getMessage()]
    assert len(stuck) == 1 and "'acme'" in stuck[0] and stuck[0].startswith("ServiceNow source"), stuck

    desk.snow["acme"].release()
    desk.time.settle(desk.threads)
    poll_times(desk, 2)
    assert len(desk.beats) > beats and desk.reasons() == []
    assert any("moving again" in r.getMessage() for r in caplog.records)




def poll_times_while_hung(d: Desk, seconds: float) -> dict[str, list[float]]:
    threads, d.threads = d.threads, d.threads - 1
    try:
        return poll_times(d, seconds)
    finally:
        d.threads = threads


# -- issue 12 item 3: an unexpected exception stays with its source ----------------------------------
ATTEMPTS = {"poll": [0, 2, 6, 14], "tick": [0, 5, 15], "refresh": [10, 20]}  # backoff after each crash


@pytest.mark.parametrize("job", list(ATTEMPTS))
@pytest.mark.parametrize(
    "desk", [{"acme": {"ci_refresh_interval": 10}, "globex": {"ci_refresh_interval": 10}}], indirect=True
)
def test_a_crash_in_one_source_is_contained(desk: Desk, job: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    acme = next(s for s in desk.app.daemon.syncers if s.name == "acme")
    attempts: list[float] = []
    real = getattr(acme, job)

    def crash(*args: Any, **kwargs: Any) -> Any:
        attempts.append(desk.time.mono - start)
        raise ValueError("a bug")

    setattr(acme, job, crash)
    sys_id = desk.add("globex", "CHG0000003", "globex before")
    start = desk.time.mono
    desk.start()
    assert any("globex before" in t for t in desk.deliver())
    poll_times(desk, 4)
    desk.snow["globex"].update_record("change_request", sys_id, short_description="globex after")
    poll_times(desk, 2)
    assert any("globex after" in t for t in desk.deliver())  # the other source flows
    poll_times(desk, 14)

    assert desk.running
    assert attempts == ATTEMPTS[job]
    assert f"acme: internal error in {job}: ValueError (retrying)" in desk.reasons()
    assert all(r.startswith("acme: ") for r in desk.reasons()), desk.reasons()
    crashes = [r for r in caplog.records if r.exc_info and "acme" in r.getMessage()]
    assert len(crashes) == 1, [r.getMessage() for r in crashes]  # the traceback once, not per attempt
    assert crashes[0].levelno == logging.ERROR and "ValueError: a bug" in caplog.text

    setattr(acme, job, real)  # fixed: the next attempt works
    poll_times(desk, 21)
    assert desk.reasons() == []
    assert any("recovered after" in r.getMessage() and "acme" in r.getMessage() for r in caplog.records)
