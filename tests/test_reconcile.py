"""The lifecycle decision, table-driven with an explicit ``now``.

Every reconcile case is also replayed with its own output: the same input twice yields no new event,
which is what makes replays after a crash and the periodic tick safe.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

import pytest

from connector.domain.events import Event, EventKind
from connector.domain.reconcile import Tracked, reconcile
from connector.domain.window import MaintenanceWindow, Phase, State, phase_at

UTC = timezone.utc
START = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)  # 2026-11-27 02:00 KST
END = START + timedelta(hours=2)
BEFORE = START - timedelta(hours=6)
US = timedelta(microseconds=1)
H = timedelta(hours=1)

# phases, short enough for the tables
SCH, RUN, OVR, ENDED = Phase.SCHEDULED, Phase.IN_PROGRESS, Phase.OVERRUN, Phase.ENDED
DONE, CANC, GONE, DRAFT = Phase.COMPLETED, Phase.CANCELLED, Phase.WITHDRAWN, Phase.PENDING
K = EventKind


def win(state: State = State.SCHEDULED, **kw: object) -> MaintenanceWindow:
    base: dict[str, object] = {
        "source": "servicenow",
        "sys_id": "a1b2c3",
        "number": "CHG0030001",
        "title": "DB 패치 🛠",
        "state": state,
        "planned_start": START,
        "planned_end": END,
        "cis": ("db01", "db02"),
    }
    base.update(kw)
    return MaintenanceWindow(**base)  # type: ignore[arg-type]


SCHED = win()
AUTH = win(State.AUTHORIZE)
IMPL = win(State.IMPLEMENT, actual_start=START)
IMPL_DONE = win(State.IMPLEMENT, actual_start=START, actual_end=END + H)
REVIEW = win(State.REVIEW, actual_start=START, actual_end=END, close_code="successful")
CLOSED = win(State.CLOSED, actual_start=START, actual_end=END, close_code="successful")
CANCELLED = win(State.CANCELLED)
NEW = win(State.NEW)
LATER = win(planned_start=START + 24 * H, planned_end=END + 24 * H)  # moved one day later


# -- phase_at ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "now", "phase"),
    [
        pytest.param(SCHED, BEFORE, Phase.SCHEDULED, id="scheduled-before-start"),
        pytest.param(SCHED, START - US, Phase.SCHEDULED, id="scheduled-1us-before-start"),
        pytest.param(SCHED, START, Phase.IN_PROGRESS, id="start-equals-now-in-progress"),
        pytest.param(SCHED, END - US, Phase.IN_PROGRESS, id="1us-before-end-in-progress"),
        pytest.param(SCHED, END, Phase.ENDED, id="end-equals-now-ended"),
        pytest.param(AUTH, BEFORE, Phase.SCHEDULED, id="authorize-is-announceable"),
        pytest.param(IMPL, END, Phase.OVERRUN, id="end-equals-now-implement-no-actual-end-overrun"),
        pytest.param(IMPL, END + 5 * H, Phase.OVERRUN, id="implement-long-past-end-overrun"),
        pytest.param(IMPL, BEFORE, Phase.IN_PROGRESS, id="implement-before-start-in-progress"),
        pytest.param(IMPL_DONE, END + 2 * H, Phase.ENDED, id="implement-actual-end-after-planned-end-ended"),
        pytest.param(IMPL_DONE, END, Phase.ENDED, id="implement-actual-end-at-planned-end-ended"),
        pytest.param(
            win(State.IMPLEMENT, actual_end=START + H), START + H, Phase.IN_PROGRESS,
            id="implement-finished-early-in-progress-until-planned-end",
        ),
        pytest.param(win(planned_start=None), START, Phase.PENDING, id="missing-start-pending"),
        pytest.param(win(planned_end=None), START, Phase.PENDING, id="missing-end-pending"),
        pytest.param(win(State.IMPLEMENT, planned_start=None, planned_end=None), START, Phase.PENDING,
                     id="implement-without-times-pending"),
        pytest.param(NEW, START, Phase.PENDING, id="new-pending-even-during-window"),
        pytest.param(win(State.ASSESS), BEFORE, Phase.PENDING, id="assess-pending"),
        pytest.param(REVIEW, START, Phase.COMPLETED, id="review-completed-even-during-window"),
        pytest.param(CLOSED, END + H, Phase.COMPLETED, id="closed-completed"),
        pytest.param(win(State.CLOSED, planned_start=None, planned_end=None), START, Phase.COMPLETED,
                     id="closed-without-times-completed"),
        pytest.param(CANCELLED, START + H, Phase.CANCELLED, id="cancelled-during-window"),
        pytest.param(win(State.CANCELLED, planned_end=None), BEFORE, Phase.CANCELLED,
                     id="cancelled-without-times"),
    ],
)
def test_phase_at(w: MaintenanceWindow, now: datetime, phase: Phase) -> None:
    assert phase_at(w, now) is phase


# -- reconcile ---------------------------------------------------------------------------------------


def T(w: MaintenanceWindow, phase: Phase) -> Tracked:
    return Tracked(w, phase)


# (previous, incoming, now, expected event kinds, expected tracked phase or None)
CASES = [
    # first sight
    pytest.param(None, SCHED, BEFORE, [K.ANNOUNCED], SCH, id="first-sight-scheduled"),
    pytest.param(None, AUTH, BEFORE, [K.ANNOUNCED], SCH, id="first-sight-authorized"),
    pytest.param(None, SCHED, START, [K.ANNOUNCED, K.STARTED], RUN, id="first-sight-at-start"),
    pytest.param(None, IMPL, BEFORE, [K.ANNOUNCED, K.STARTED], RUN, id="first-sight-implement-early"),
    pytest.param(None, IMPL, END + H, [K.ANNOUNCED, K.OVERRAN], OVR, id="first-sight-overrunning"),
    pytest.param(None, SCHED, END, [], ENDED, id="first-sight-already-ended"),
    pytest.param(None, REVIEW, START, [], DONE, id="first-sight-completed"),
    pytest.param(None, CLOSED, END + H, [], DONE, id="first-sight-closed"),
    pytest.param(None, CANCELLED, BEFORE, [], CANC, id="first-sight-cancelled"),
    pytest.param(None, NEW, BEFORE, [], DRAFT, id="first-sight-draft"),
    pytest.param(None, None, BEFORE, [], None, id="first-sight-gone"),
    pytest.param(T(NEW, DRAFT), SCHED, BEFORE, [K.ANNOUNCED], SCH, id="draft-gets-scheduled"),
    pytest.param(T(NEW, DRAFT), IMPL, START, [K.ANNOUNCED, K.STARTED], RUN, id="draft-goes-straight-to-work"),
    # the tick: same window, later now
    pytest.param(T(SCHED, SCH), SCHED, START - US, [], SCH, id="tick-before-start"),
    pytest.param(T(SCHED, SCH), SCHED, START, [K.STARTED], RUN, id="tick-reaches-start"),
    pytest.param(T(SCHED, SCH), SCHED, END + H, [K.ENDED], ENDED, id="tick-skips-past-whole-window"),
    pytest.param(T(SCHED, RUN), SCHED, END, [K.ENDED], ENDED, id="tick-reaches-end"),
    pytest.param(T(IMPL, RUN), IMPL, END - US, [], RUN, id="tick-implement-before-end"),
    pytest.param(T(IMPL, RUN), IMPL, END, [K.OVERRAN], OVR, id="tick-implement-overruns"),
    pytest.param(T(IMPL, OVR), IMPL, END + 3 * H, [], OVR, id="tick-overrun-stays-overrun"),
    # ticket-driven phase changes
    pytest.param(T(SCHED, SCH), IMPL, BEFORE, [K.STARTED], RUN, id="implement-before-start"),
    pytest.param(T(IMPL, RUN), IMPL_DONE, END + 2 * H, [K.ENDED], ENDED, id="in-progress-finishes-late"),
    pytest.param(T(IMPL, OVR), IMPL_DONE, END + 2 * H, [K.ENDED], ENDED, id="overrun-gets-actual-end"),
    pytest.param(T(IMPL, OVR), REVIEW, END + 2 * H, [K.COMPLETED], DONE, id="overrun-completed"),
    pytest.param(T(IMPL, RUN), REVIEW, START + H, [K.COMPLETED], DONE, id="in-progress-completed"),
    pytest.param(T(SCHED, ENDED), CLOSED, END + H, [K.COMPLETED], DONE, id="ended-closed"),
    pytest.param(T(SCHED, SCH), CANCELLED, BEFORE, [K.CANCELLED], CANC, id="scheduled-cancelled"),
    pytest.param(T(IMPL, RUN), CANCELLED, START + H, [K.CANCELLED], CANC, id="in-progress-cancelled"),
    pytest.param(T(SCHED, SCH), dataclasses.replace(CANCELLED, planned_start=None), BEFORE, [K.CANCELLED],
                 CANC, id="cancelled-and-times-cleared-no-reschedule"),
    # reschedules
    pytest.param(T(SCHED, SCH), LATER, BEFORE, [K.RESCHEDULED], SCH, id="times-changed"),
    pytest.param(T(SCHED, SCH), win(planned_end=END + H), BEFORE, [K.RESCHEDULED], SCH, id="end-extended"),
    pytest.param(T(SCHED, SCH), win(cis=("db01", "db03")), BEFORE, [K.RESCHEDULED], SCH, id="cis-changed"),
    pytest.param(T(SCHED, SCH), win(title="DB patch, retitled", description="x" * 20_000), BEFORE, [], SCH,
                 id="title-only-edit-is-not-news"),
    pytest.param(T(SCHED, RUN), LATER, START + H, [K.RESCHEDULED], SCH,
                 id="moved-back-before-start-reschedule-only"),
    pytest.param(T(SCHED, SCH), win(planned_start=BEFORE - H), BEFORE, [K.RESCHEDULED, K.STARTED], RUN,
                 id="moved-earlier-into-now"),
    pytest.param(T(IMPL, OVR), dataclasses.replace(IMPL, planned_end=END + 5 * H), END + H,
                 [K.RESCHEDULED, K.STARTED], RUN, id="overrun-extended"),
    pytest.param(T(SCHED, ENDED), LATER, END + H, [K.RESCHEDULED, K.ANNOUNCED], SCH,
                 id="ended-rescheduled-to-future"),
    # withdrawn: deleted or out of the filter
    pytest.param(T(SCHED, SCH), None, BEFORE, [K.WITHDRAWN], GONE, id="withdrawn-announced"),
    pytest.param(T(IMPL, RUN), None, START + H, [K.WITHDRAWN], GONE, id="withdrawn-in-progress"),
    pytest.param(T(NEW, DRAFT), None, BEFORE, [], GONE, id="withdrawn-never-announced"),
    pytest.param(T(REVIEW, DONE), None, END + H, [], GONE, id="withdrawn-after-completed"),
    pytest.param(T(SCHED, GONE), None, END + H, [], GONE, id="withdrawn-twice"),
    # terminal stays terminal
    pytest.param(T(REVIEW, DONE), CLOSED, END + H, [], DONE, id="completed-then-closed"),
    pytest.param(T(REVIEW, DONE), dataclasses.replace(REVIEW, planned_end=END + H, title="edited"),
                 END + 2 * H, [], DONE, id="completed-then-edited"),
    pytest.param(T(REVIEW, DONE), CANCELLED, END + H, [], DONE, id="completed-then-cancelled"),
    pytest.param(T(CANCELLED, CANC), dataclasses.replace(CANCELLED, cis=("x",)), BEFORE, [], CANC,
                 id="cancelled-then-edited"),
    pytest.param(T(SCHED, GONE), CLOSED, END + H, [], GONE, id="withdrawn-then-closed"),
    # reopened
    pytest.param(T(REVIEW, DONE), SCHED, BEFORE, [K.ANNOUNCED], SCH, id="reopened-after-completed"),
    pytest.param(T(REVIEW, DONE), LATER, BEFORE, [K.RESCHEDULED, K.ANNOUNCED], SCH,
                 id="reopened-after-completed-with-new-times"),
    pytest.param(T(REVIEW, DONE), IMPL, START + H, [K.STARTED], RUN, id="reopened-into-implement"),
    pytest.param(T(CANCELLED, CANC), SCHED, BEFORE, [K.ANNOUNCED], SCH, id="uncancelled"),
    pytest.param(T(SCHED, GONE), SCHED, BEFORE, [K.ANNOUNCED], SCH, id="back-in-the-filter"),
    # sent back to New after it was announced: keep the message, tell nothing
    pytest.param(T(SCHED, SCH), NEW, BEFORE, [], SCH, id="sent-back-to-new"),
    pytest.param(T(IMPL, RUN), NEW, START + H, [], RUN, id="sent-back-to-new-while-in-progress"),
    pytest.param(T(NEW, SCH), NEW, END + H, [], SCH, id="tick-while-back-in-new"),
    pytest.param(T(NEW, SCH), SCHED, BEFORE, [], SCH, id="rescheduled-after-new-same-times"),
    pytest.param(T(NEW, SCH), SCHED, START + H, [K.STARTED], RUN, id="rescheduled-after-new-past-start"),
]


@pytest.mark.parametrize(("previous", "incoming", "now", "kinds", "phase"), CASES)
def test_reconcile(
    previous: Tracked | None, incoming: MaintenanceWindow | None, now: datetime, kinds: list[EventKind],
    phase: Phase | None,
) -> None:
    tracked, events = reconcile(previous, incoming, now)

    assert [e.kind for e in events] == kinds
    if phase is None:
        assert tracked is None
        return
    assert tracked is not None
    assert tracked.phase is phase
    # The store keeps what the source said last; a withdrawal keeps the last window seen.
    assert tracked.window == (incoming if incoming is not None else previous.window if previous else None)
    for e in events:
        assert e.at == now
        assert e.window == (incoming if incoming is not None else previous.window)  # type: ignore[union-attr]
        assert e.key == tracked.window.key
        if e.kind is K.RESCHEDULED:
            assert previous is not None
            assert e.previous == previous.window
            assert e.phase is phase_at(e.window, now)
        else:
            assert e.previous is None
    if events:
        assert events[-1].phase is phase


@pytest.mark.parametrize(("previous", "incoming", "now", "kinds", "phase"), CASES)
def test_reconcile_with_its_own_output_is_quiet(
    previous: Tracked | None, incoming: MaintenanceWindow | None, now: datetime, kinds: list[EventKind],
    phase: Phase | None,
) -> None:
    tracked, _ = reconcile(previous, incoming, now)

    again, events = reconcile(tracked, incoming, now)

    assert events == []
    assert again == tracked


# -- windows L1 never saw: quiet until they matter, and then announced first ----------------------------
#
# A window first seen already over (ended, completed, cancelled), or withdrawn while still a draft, has
# no Slack message. Its later edits must not produce completed/withdrawn/started/rescheduled for a
# message that does not exist; if it becomes live again, the first event is the announcement.
# (Found with these tests: Tracked.announced used to be derived from the phase alone.)


def first_seen(w: MaintenanceWindow | None, now: datetime, before: Tracked | None = None) -> Tracked:
    """The state reconcile itself records for a window L1 was never told about."""
    tracked, events = reconcile(before, w, now)
    assert events == []
    assert tracked is not None
    return tracked


NEVER_ANNOUNCED = [
    pytest.param(first_seen(SCHED, END + H), CLOSED, END + 2 * H, [], id="first-seen-ended-then-closed"),
    pytest.param(first_seen(SCHED, END + H), None, END + 2 * H, [], id="first-seen-ended-then-withdrawn"),
    pytest.param(first_seen(SCHED, END + H), SCHED, END + 2 * H, [], id="first-seen-ended-then-tick"),
    pytest.param(first_seen(SCHED, END + H), LATER, END + 2 * H, [K.ANNOUNCED],
                 id="first-seen-ended-then-rescheduled"),
    pytest.param(first_seen(REVIEW, END + H), CANCELLED, END + 2 * H, [],
                 id="first-seen-completed-then-cancelled"),
    pytest.param(first_seen(REVIEW, BEFORE), SCHED, BEFORE + H, [K.ANNOUNCED],
                 id="first-seen-completed-reopened"),
    pytest.param(first_seen(REVIEW, END + H), IMPL, END + 2 * H, [K.ANNOUNCED, K.OVERRAN],
                 id="first-seen-completed-reopened-implement"),
    pytest.param(first_seen(CANCELLED, BEFORE), IMPL, START + H, [K.ANNOUNCED, K.STARTED],
                 id="first-seen-cancelled-reopened-implement"),
    pytest.param(first_seen(None, BEFORE, T(NEW, DRAFT)), IMPL, START + H, [K.ANNOUNCED, K.STARTED],
                 id="withdrawn-draft-returns-running"),
    pytest.param(first_seen(None, BEFORE, T(NEW, DRAFT)), LATER, BEFORE, [K.ANNOUNCED],
                 id="withdrawn-draft-returns-rescheduled"),
    pytest.param(first_seen(None, BEFORE, T(NEW, DRAFT)), None, START, [],
                 id="withdrawn-draft-withdrawn-again"),
]


@pytest.mark.parametrize(("previous", "incoming", "now", "kinds"), NEVER_ANNOUNCED)
def test_a_never_announced_window_is_quiet_until_announced(
    previous: Tracked, incoming: MaintenanceWindow | None, now: datetime, kinds: list[EventKind]
) -> None:
    tracked, events = reconcile(previous, incoming, now)

    assert [e.kind for e in events] == kinds
    assert reconcile(tracked, incoming, now)[1] == []


# -- randomized sequences ----------------------------------------------------------------------------

STATES = list(State)
TICKETS_PER_RUN = 300
STEPS = 25
NOTHING = object()


def random_window(rng: random.Random) -> MaintenanceWindow | None:
    if rng.random() < 0.08:
        return None  # deleted or out of the filter
    start = START + timedelta(minutes=30 * rng.randint(-8, 8))
    end = start + timedelta(minutes=30 * rng.randint(1, 6))
    return win(
        rng.choice(STATES),
        planned_start=None if rng.random() < 0.05 else start,
        planned_end=None if rng.random() < 0.05 else end,
        actual_end=rng.choice([None, None, end, end + H]),
        cis=tuple(sorted(rng.sample(["db01", "db02", "web01", "lb01"], rng.randint(0, 2)))),
        title=rng.choice(["DB 패치", "DB patch 🛠"]),
    )


def random_run(rng: random.Random) -> list[tuple[MaintenanceWindow | None, datetime, bool, list[Event]]]:
    """One ticket's life: edits (a new random ticket) and ticks (same ticket, later now).

    Returns ``(incoming, now, changed, events)`` per step; checks idempotency as it goes."""
    tracked: Tracked | None = None
    incoming: MaintenanceWindow | None = random_window(rng)
    now = START - timedelta(hours=rng.randint(0, 6))
    steps = []
    for n in range(STEPS):
        changed = n == 0 or rng.random() < 0.4
        if changed and n:
            incoming = random_window(rng) if rng.random() < 0.7 else incoming and dataclasses.replace(
                incoming, title=f"edit {n}"
            )
        now += timedelta(minutes=rng.choice([0, 0, 1, 15, 30, 60, 240]))
        tracked, events = reconcile(tracked, incoming, now)
        again, repeat = reconcile(tracked, incoming, now)
        assert repeat == [], f"step {n}: same input twice gave {[e.kind.value for e in repeat]}"
        assert again == tracked
        steps.append((incoming, now, changed, events))
    return steps


def test_random_sequences_same_input_is_quiet_and_terminal_stays_quiet() -> None:
    rng = random.Random(0)
    seen_kinds: set[EventKind] = set()
    for _ in range(TICKETS_PER_RUN):
        last_kind: EventKind | None = None
        terminal_at: object = NOTHING  # the ticket as it was when a terminal event was told
        for incoming, _now, _changed, events in random_run(rng):
            kinds = [e.kind for e in events]
            seen_kinds.update(kinds)
            if kinds:
                assert kinds[0] is not last_kind or kinds[0] is K.RESCHEDULED, kinds  # never told twice
                assert len(set(kinds)) == len(kinds), kinds
            if terminal_at is not NOTHING and incoming == terminal_at:
                assert kinds == [], f"{kinds} after a terminal event without a real change of the ticket"
            if kinds:
                last_kind = kinds[-1]
                terminal = last_kind in (K.WITHDRAWN, K.COMPLETED, K.CANCELLED)
                terminal_at = incoming if terminal else NOTHING
    # the generator reaches every lifecycle event (reminders and reroutes are per channel, not reconcile's)
    assert seen_kinds == set(EventKind) - {K.REMINDER, K.REROUTED}


def test_random_sequences_ticks_alone_tell_only_time_driven_events() -> None:
    rng = random.Random(0)
    for _ in range(TICKETS_PER_RUN):
        for _incoming, _now, changed, events in random_run(rng):
            if not changed:
                assert {e.kind for e in events} <= {K.STARTED, K.ENDED, K.OVERRAN}, events
                assert len(events) <= 1


def test_random_sequences_first_event_is_announced() -> None:
    rng = random.Random(0)
    for _ in range(TICKETS_PER_RUN):
        kinds = [e.kind for *_, events in random_run(rng) for e in events]
        if kinds:
            assert kinds[0] is K.ANNOUNCED, kinds

