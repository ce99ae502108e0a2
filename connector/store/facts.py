"""Small facts the state keeps beside the windows, each behind a named, typed method.

They live in the ``meta`` table (one row per fact, a JSON or ISO value) so that an existing state
database needs no migration; no caller spells a key. :class:`Facts` is mixed into
:class:`connector.store.sqlite.Store`, which provides ``_meta_get`` / ``_meta_set``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from connector.domain.target import Target


@dataclass(frozen=True)
class LastPoll:
    """A source's last poll: when it last succeeded, and the error of the last failure since."""

    ok_at: datetime | None
    error: str | None
    error_at: datetime | None


@dataclass(frozen=True)
class SinkState:
    """A sink's state as of its last change: ``error`` None while it delivers."""

    error: str | None
    since: datetime | None


def _dt(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Facts:
    def _meta_get(self, key: str) -> str | None:
        raise NotImplementedError

    def _meta_set(self, key: str, value: str) -> None:
        raise NotImplementedError

    # -- sources ------------------------------------------------------------------------------------
    def last_poll(self, source: str) -> LastPoll | None:
        raw = self._meta_get(f"last_poll:{source}")
        if raw is None:
            return None
        d = json.loads(raw)
        return LastPoll(_dt(d.get("ok_at")), d.get("error"), _dt(d.get("error_at")))

    def set_last_poll(self, source: str, poll: LastPoll) -> None:
        record = {"ok_at": _iso(poll.ok_at), "error": poll.error, "error_at": _iso(poll.error_at)}
        self._meta_set(f"last_poll:{source}", json.dumps(record))

    def first_sync_done(self, source: str) -> bool:
        return self._meta_get(f"initial_sync_done:{source}") is not None

    def mark_first_sync_done(self, source: str, at: datetime) -> None:
        self._meta_set(f"initial_sync_done:{source}", at.isoformat())

    # -- sinks --------------------------------------------------------------------------------------
    def sink_state(self, sink: str) -> SinkState | None:
        raw = self._meta_get(f"sink:{sink}")
        if raw is None:
            return None
        d = json.loads(raw)
        return SinkState(d.get("error"), _dt(d.get("since")))

    def set_sink_state(self, sink: str, state: SinkState) -> None:
        self._meta_set(f"sink:{sink}", json.dumps({"error": state.error, "since": _iso(state.since)}))

    # -- digests and reminders ----------------------------------------------------------------------
    def digest_state(self, target: Target) -> str:
        """``pending[:shift:<slot>]`` → ``inflight:…`` → ``done:<ts>``; "" when none was asked for."""
        return self._meta_get(f"digest:{target}") or ""

    def set_digest_state(self, target: Target, state: str) -> None:
        self._meta_set(f"digest:{target}", state)

    def digest_slot(self, target: Target) -> datetime | None:
        """The last shift-digest time served in ``target``."""
        return _dt(self._meta_get(f"digest_slot:{target}"))

    def set_digest_slot(self, target: Target, slot: datetime) -> None:
        self._meta_set(f"digest_slot:{target}", slot.isoformat())

    def reminded(self, target: Target, key: tuple[str, str], start: datetime) -> bool:
        return self._meta_get(self._reminder(target, key, start)) is not None

    def mark_reminded(self, target: Target, key: tuple[str, str], start: datetime, at: datetime) -> None:
        self._meta_set(self._reminder(target, key, start), at.isoformat())

    @staticmethod
    def _reminder(target: Target, key: tuple[str, str], start: datetime) -> str:
        return f"reminded:{target}:{key[0]}:{key[1]}:{start.isoformat()}"
