"""Alertmanager silences for a maintenance window: planning. Pure: no I/O, no clock.

Shaped after Alertmanager's own ``silence/`` package: a silence is plain data, its state (pending,
active, expired) is computed from its times at an explicit ``now``, and "update in place or replace" is
a pure predicate (:func:`can_update`, mirroring Alertmanager's ``canUpdate``).

From CIs to silences
--------------------
The matchers of one silence are ANDed, so "alerts from db01 OR db02" needs one matcher whose regex
alternates the CIs, or several silences:

* CIs named in ``ci_map`` get their explicit matchers: one silence per distinct matcher set.
* The other CIs use ``ci_matchers``. With one template (the default ``instance=~"{ci}(:[0-9]+)?"``) they
  share ONE silence: ``instance=~"(db01|db02)(:[0-9]+)?"``. With several templates a merge would also
  silence the cross combinations (instance of db01 AND job of db02), so each CI gets its own silence.
* ``extra_matchers`` are added to every silence; identical matcher sets are planned once.

``{ci}`` is replaced by the CI name, ``re.escape``-d in regex templates (``db-01.prod`` matches only
itself); a plain template shared by several CIs becomes the equivalent anchored regex. A silence is
refused (and reported) unless one of its CI matchers, without the extras, is selective: it matches
neither the empty string nor any value (``.*``, ``.+``, ``!=``). Alertmanager itself only refuses the
first; ``severity="critical"`` alone would silence every critical alert.

Times
-----
SCHEDULED: pending from ``planned_start``. IN_PROGRESS (also when Implement began early) and OVERRUN:
active. The end is ``planned_end + grace``; in OVERRUN it moves to ``planned_end + k·overrun_step``,
chosen at least half a step ahead of ``now`` (a late poll never lets it lapse), never beyond
``planned_end + overrun_cap``. ENDED keeps only what is left of the grace. Every silence is capped at
``max_duration`` from the start. Other phases want no silence: a live one is expired at once.
Times are kept in milliseconds, as Alertmanager keeps them, so stored and planned times compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from connector.alertmanager.settings import AlertmanagerSettings, Matcher, is_selective, matchers_key
from connector.domain.window import MaintenanceWindow, Phase

#: Our clock and Alertmanager's differ a little: an in-place update keeps this much distance from now.
CLOCK_MARGIN = timedelta(seconds=5)
_SILENCED_PHASES = frozenset({Phase.SCHEDULED, Phase.IN_PROGRESS, Phase.OVERRUN, Phase.ENDED})

SilenceState = Literal["pending", "active", "expired"]
ChangeKind = Literal["created", "updated", "replaced", "expired"]
ActionKind = Literal["keep", "create", "update", "replace", "expire", "forget"]


@dataclass(frozen=True)
class SilenceSpec:
    """A silence we want. ``matchers`` are in canonical order (Alertmanager compares them in order)."""

    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str

    @property
    def key(self) -> str:
        return matchers_key(self.matchers)


@dataclass(frozen=True)
class StoredSilence:
    """What the store keeps per silence of a window. ``starts_at`` is Alertmanager's (a past start
    becomes its creation time); an in-place update of an active silence must repeat it."""

    id: str
    matchers_key: str
    starts_at: datetime
    ends_at: datetime

    def to_dict(self) -> dict[str, str]:
        """JSON-ready, for the store; :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "matchers_key": self.matchers_key,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredSilence:
        return cls(
            str(data["id"]),
            str(data["matchers_key"]),
            datetime.fromisoformat(str(data["starts_at"])),
            datetime.fromisoformat(str(data["ends_at"])),
        )

    def state_at(self, now: datetime) -> SilenceState:
        if now >= self.ends_at:
            return "expired"
        return "pending" if now < self.starts_at else "active"


@dataclass(frozen=True)
class SilenceChange:
    """One thing that happened to a window's silences, for the Slack thread. ``expired`` is also
    reported once for a silence that ran out by itself (``ends_at`` is then its planned end)."""

    kind: ChangeKind
    id: str
    starts_at: datetime
    ends_at: datetime
    matchers_key: str = ""
    replaces: str | None = None  # for "replaced": the id it took over from


@dataclass(frozen=True)
class SilenceOutcome:
    silences: list[StoredSilence] = field(default_factory=list)
    changes: list[SilenceChange] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Action:
    """One step to reach the desired silences. ``spec`` is what to post (for an update of an active
    silence, with its stored start); ``current`` the stored silence it concerns."""

    kind: ActionKind
    spec: SilenceSpec | None = None
    current: StoredSilence | None = None


def render_comment(w: MaintenanceWindow, s: AlertmanagerSettings) -> str:
    return s.comment_template.format(number=w.number, title=w.title, url=w.url).strip()


def _ms(t: datetime) -> datetime:
    """Alertmanager keeps milliseconds: planning in them makes stored and desired times comparable."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _span(d: timedelta) -> str:
    hours, minutes = divmod(int(d.total_seconds()) // 60, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def overrun_end(planned_end: datetime, now: datetime, s: AlertmanagerSettings) -> datetime:
    """``planned_end + k·overrun_step``, the first at least half a step after ``now``, within the cap."""
    k = (now + s.overrun_step / 2 - planned_end) // s.overrun_step + 1
    return min(planned_end + max(k, 1) * s.overrun_step, planned_end + s.overrun_cap)


def _times(
    w: MaintenanceWindow, phase: Phase, now: datetime, s: AlertmanagerSettings, problems: list[str]
) -> tuple[datetime, datetime] | None:
    assert w.planned_start is not None and w.planned_end is not None
    start, end = w.planned_start, w.planned_end + s.grace
    if phase is not Phase.SCHEDULED:
        start = min(start, now)  # under way, perhaps early: silence from now on
    if phase is Phase.OVERRUN:
        end = max(end, overrun_end(w.planned_end, now, s))
    anchor = min(w.planned_start, w.actual_start or w.planned_start)
    if end - anchor > s.max_duration:
        problems.append(
            f"{w.number}: duration {_span(end - anchor)} exceeds max {_span(s.max_duration)}: capped"
        )
        end = anchor + s.max_duration
    if end <= now:
        if phase is Phase.OVERRUN:
            problems.append(
                f"{w.number}: still in Implement {_span(now - w.planned_end)} after planned end: "
                f"silence not extended past its cap, alerts are live"
            )
        return None
    if end <= start:
        problems.append(f"{w.number}: silence would end before it starts: no silence")
        return None
    return _ms(start), _ms(end)


def _ci_matcher_sets(
    w: MaintenanceWindow, s: AlertmanagerSettings, problems: list[str]
) -> list[tuple[str, list[Matcher]]]:
    """(CIs, the matchers selecting them) per silence, before ``extra_matchers``."""
    cis = sorted({ci.strip() for ci in w.cis if ci.strip()})
    templated = [ci for ci in cis if ci not in s.ci_map]
    sets = [(ci, list(s.ci_map[ci])) for ci in cis if ci in s.ci_map]
    if templated and not s.ci_matchers:
        problems.append(f"{w.number}: {', '.join(templated)}: not in ci_map and no ci_matchers: not silenced")
    elif len(s.ci_matchers) == 1 and templated:
        sets.insert(0, (", ".join(templated), [s.ci_matchers[0].render(templated)]))
    elif templated:
        sets[:0] = [(ci, [t.render([ci]) for t in s.ci_matchers]) for ci in templated]
    return sets


def plan_silences(
    w: MaintenanceWindow, phase: Phase, now: datetime, s: AlertmanagerSettings
) -> tuple[list[SilenceSpec], list[str]]:
    """The silences ``w`` should have at ``now`` in ``phase``, and the problems worth telling.
    A silence is refused unless its CI matchers alone (without ``extra_matchers``) select something."""
    if phase not in _SILENCED_PHASES:
        return [], []
    if w.planned_start is None or w.planned_end is None:
        return [], [f"{w.number}: no planned start or end: no silence"]
    problems: list[str] = []
    times = _times(w, phase, now, s, problems)
    if times is None:
        return [], problems
    if not any(ci.strip() for ci in w.cis):
        return [], [*problems, f"{w.number}: no CIs: no silence"]
    specs: dict[str, SilenceSpec] = {}
    comment = render_comment(w, s)
    for cis, matchers in _ci_matcher_sets(w, s, problems):
        if not any(is_selective(m) for m in matchers):
            problems.append(
                f"{w.number}: {{{matchers_key(matchers)}}} for {cis} would match every alert: refused"
            )
            continue
        ordered = tuple(sorted({*matchers, *s.extra_matchers}, key=str))
        spec = SilenceSpec(ordered, times[0], times[1], comment, s.created_by)
        specs.setdefault(spec.key, spec)
    return list(specs.values()), problems


def _same_start(current: StoredSilence, desired: SilenceSpec, now: datetime) -> bool:
    """Equal, or both already past: Alertmanager moves a past start to its own now anyway."""
    return current.starts_at == desired.starts_at or (current.starts_at <= now and desired.starts_at <= now)


def needs_change(current: StoredSilence, desired: SilenceSpec, now: datetime) -> bool:
    """Whether Alertmanager must be told anything to make ``current`` into ``desired``."""
    return (
        current.matchers_key != desired.key
        or current.state_at(now) == "expired"
        or not _same_start(current, desired, now)
        or current.ends_at != desired.ends_at
    )


def can_update(current: StoredSilence, desired: SilenceSpec, now: datetime) -> bool:
    """Alertmanager's ``canUpdate``, with :data:`CLOCK_MARGIN` against clock skew: same matchers;
    active: same start and an end not before now; pending: a start not before now."""
    if current.matchers_key != desired.key:
        return False
    state = current.state_at(now)
    if state == "active":
        return desired.starts_at <= now and desired.ends_at >= now + CLOCK_MARGIN
    if state == "pending":
        return desired.starts_at >= now + CLOCK_MARGIN
    return False


def decide(desired: list[SilenceSpec], current: list[StoredSilence], now: datetime) -> list[Action]:
    """The steps from ``current`` to ``desired``: creations and updates first, expirations last, so a
    replacement never leaves a gap. Of two stored silences with the same matchers the later one is kept."""
    by_key: dict[str, StoredSilence] = {}
    dropped: list[StoredSilence] = []
    for sil in current:
        if sil.matchers_key in by_key:
            dropped.append(by_key[sil.matchers_key])
        by_key[sil.matchers_key] = sil
    actions: list[Action] = []
    for spec in desired:
        cur = by_key.pop(spec.key, None)
        if cur is None:
            actions.append(Action("create", spec))
        elif cur.state_at(now) == "expired":
            actions += [Action("forget", current=cur), Action("create", spec)]
        elif not needs_change(cur, spec, now):
            actions.append(Action("keep", spec, cur))
        elif can_update(cur, spec, now):
            start = cur.starts_at if cur.state_at(now) == "active" else spec.starts_at
            actions.append(Action("update", replace(spec, starts_at=start), cur))
        else:
            actions.append(Action("replace", spec, cur))
    for sil in [*dropped, *by_key.values()]:
        actions.append(Action("forget" if sil.state_at(now) == "expired" else "expire", current=sil))
    return actions
