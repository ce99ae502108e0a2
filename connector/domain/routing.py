"""Routes: which Slack channels follow a window. Pure: config models and one function.

Rules are ordered; the first rule whose every condition matches decides the channels. A window no
rule matches goes to ``slack.channel`` (the default route). Conditions compare case-insensitively;
a list means "any of"; ``ci`` matches when any of the window's CIs matches (``*`` wildcards allowed).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connector.domain.events import EventKind
from connector.domain.window import MaintenanceWindow


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
