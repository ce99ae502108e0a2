"""Windows and events to JSON-able dicts and back (for the state store)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from connector.domain.events import Event, EventKind
from connector.domain.window import MaintenanceWindow, Phase, State

_DATES = ("planned_start", "planned_end", "actual_start", "actual_end", "updated_on")


def _dt(v: Any) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


_FIELDS = tuple(f.name for f in dataclasses.fields(MaintenanceWindow))


def window_to_dict(w: MaintenanceWindow) -> dict[str, Any]:
    # Shallow on purpose: dataclasses.asdict deep-copies every field and was most of a save's cost.
    d = {name: getattr(w, name) for name in _FIELDS}
    d["state"] = w.state.value
    for k in _DATES:
        d[k] = d[k].isoformat() if d[k] else None
    d["cis"] = list(w.cis)
    d["extra"] = [list(kv) for kv in w.extra]
    return d


def window_from_dict(d: dict[str, Any]) -> MaintenanceWindow:
    d = dict(d)
    d["state"] = State(d["state"])
    for k in _DATES:
        d[k] = _dt(d.get(k))
    d["cis"] = tuple(d.get("cis", ()))
    d["extra"] = tuple(tuple(kv) for kv in d.get("extra", ()))
    return MaintenanceWindow(**d)


def event_to_dict(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind.value,
        "at": e.at.isoformat(),
        "phase": e.phase.value,
        "window": window_to_dict(e.window),
        "previous": window_to_dict(e.previous) if e.previous else None,
    }


def event_from_dict(d: dict[str, Any]) -> Event:
    return Event(
        kind=EventKind(d["kind"]),
        at=datetime.fromisoformat(d["at"]),
        phase=Phase(d["phase"]),
        window=window_from_dict(d["window"]),
        previous=window_from_dict(d["previous"]) if d.get("previous") else None,
    )
