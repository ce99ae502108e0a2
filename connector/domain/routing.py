"""Routes: which Slack channels follow a window, and what a change of route tells each. Pure: config
models and functions of the window, the stored decision and ``now``.

Rules are ordered; the first rule whose every condition matches decides the channels. A window no
rule matches goes to ``slack.channel`` (the default route). Conditions compare case-insensitively;
a list means "any of"; ``ci`` matches when any of the window's CIs matches (``*`` wildcards allowed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.domain.events import ENTERED, Event, EventKind
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import TERMINAL_PHASES, MaintenanceWindow, Phase


class RouteMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: list[str] = Field(default_factory=list)
    assignment_group: list[str] = Field(default_factory=list)
    ci: list[str] = Field(default_factory=list)
    type: list[str] = Field(default_factory=list)
    risk: list[str] = Field(default_factory=list)
    priority: list[str] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, v: object) -> object:
        return [v] if isinstance(v, str | int) else v


class Mention(BaseModel):
    """Who to mention, and on which events. Written in config, never taken from a ticket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    on: list[EventKind] = Field(default_factory=lambda: [EventKind.OVERRAN])

    @field_validator("text")
    @classmethod
    def _mention(cls, v: str) -> str:
        if not (v.startswith(("<!subteam^", "<@")) or v in ("<!here>", "<!channel>")):
            raise ValueError("must be a Slack mention such as <!subteam^S0123ABCD> or <@U0123ABCD>")
        return v


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    match: RouteMatch = Field(default_factory=RouteMatch)
    channels: list[str] = Field(min_length=1)
    mention: Mention | None = None


def _one(patterns: Sequence[str], value: str) -> bool:
    v = value.casefold()
    return any(fnmatch.fnmatchcase(v, str(p).casefold()) for p in patterns)


def matches(m: RouteMatch, w: MaintenanceWindow) -> bool:
    checks = [
        (m.source, [w.source]),
        (m.assignment_group, [w.assignment_group]),
        (m.ci, list(w.cis)),
        (m.type, [w.type]),
        (m.risk, [w.risk]),
        (m.priority, [w.priority]),
    ]
    return all(not patterns or any(_one(patterns, v) for v in values) for patterns, values in checks)


def route_for(w: MaintenanceWindow, routes: Sequence[Route]) -> Route | None:
    """The first rule that matches ``w``, or ``None`` (the default channel)."""
    return next((r for r in routes if matches(r.match, w)), None)


def channels_for(w: MaintenanceWindow, routes: Sequence[Route], default: str) -> tuple[str, ...]:
    route = route_for(w, routes)
    return tuple(dict.fromkeys(route.channels)) if route else (default,)


@dataclass(frozen=True)
class RoutePlan:
    """Where a window's events go now: ``sends`` (events, targets) batches, and the targets to store
    as the window's route decision (``targets``), with ``moved`` when that decision changed."""

    sends: list[tuple[list[Event], list[Target]]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    moved: bool = False


def plan_route(
    tracked: Tracked, events: list[Event], old: list[Target] | None, new: Sequence[Target], now: datetime
) -> RoutePlan:
    """Send ``events`` to the targets that follow the window (``new``, from :func:`channels_for`).
    When the rules now send it elsewhere, the targets it leaves get a ``rerouted`` notice and the
    targets it joins an introduction (announced, and started or overran when it is running). A
    finished window is told where it was followed (``old``); a window never routed (``old`` None)
    just takes ``new``."""
    w, phase = tracked.window, tracked.phase
    targets = list(new)
    if old is not None and phase in TERMINAL_PHASES:
        targets = list(old)
    if old is None or set(old) == set(targets):
        return RoutePlan([(events, targets)], targets, moved=False)
    intro = [Event(EventKind.ANNOUNCED, now, w, phase)]
    if phase in (Phase.IN_PROGRESS, Phase.OVERRUN):
        intro.append(Event(ENTERED[phase], now, w, phase))
    sends = [
        (events, [t for t in targets if t in old]),
        ([Event(EventKind.REROUTED, now, w, phase)], [t for t in old if t not in targets]),
        (intro, [t for t in targets if t not in old]),
    ]
    return RoutePlan(sends, targets, moved=True)
