"""The Alertmanager sink: makes a window's silences what the plan says, through :mod:`.alertmanager`.

Quirks handled here (see ../shared/reference/protocols.md, section D):

* A past ``startsAt`` becomes Alertmanager's now, and an in-place update of an active silence must
  repeat its start exactly: after creating a started silence we read its start back.
* Alertmanager may replace instead of update (its clock, an expired silence): the id it returns is
  the one stored, always.

A created silence must never be lost: if a write fails after others succeeded, the error carries the
partial :class:`SilenceOutcome` to store; before creating, a live silence we made earlier for the same
matchers and comment (a reply lost on the way back) is adopted instead of duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from connector.alertmanager.client import (
    AlertmanagerClient,
    AlertmanagerError,
    api_matchers_key,
    format_time,
    parse_time,
)
from connector.alertmanager.plan import (
    CLOCK_MARGIN,
    Action,
    SilenceChange,
    SilenceOutcome,
    SilenceSpec,
    StoredSilence,
    decide,
    needs_change,
    plan_silences,
)
from connector.alertmanager.settings import AlertmanagerSettings
from connector.domain.window import MaintenanceWindow, Phase

log = logging.getLogger(__name__)


class AlertmanagerSink:
    """Makes a window's silences what :func:`plan_silences` says; idempotent."""

    def __init__(self, client: AlertmanagerClient, settings: AlertmanagerSettings) -> None:
        self._client = client
        self._settings = settings

    def apply(
        self, w: MaintenanceWindow, phase: Phase, current: list[StoredSilence], now: datetime
    ) -> SilenceOutcome:
        """Bring ``current`` (as stored for ``w``) to the plan. Raises :class:`AlertmanagerError`
        with ``outcome`` set; a second call with the returned silences makes no write."""
        desired, problems = plan_silences(w, phase, now, self._settings)
        silences = {sil.id: sil for sil in current}
        changes: list[SilenceChange] = []
        try:
            for action in decide(desired, current, now):
                self._execute(w, action, now, silences, changes)
        except AlertmanagerError as err:
            err.outcome = SilenceOutcome(list(silences.values()), changes, problems)
            raise
        return SilenceOutcome(list(silences.values()), changes, problems)

    def _execute(
        self,
        w: MaintenanceWindow,
        action: Action,
        now: datetime,
        silences: dict[str, StoredSilence],
        changes: list[SilenceChange],
    ) -> None:
        spec, cur = action.spec, action.current
        if action.kind == "create" and spec is not None:
            new = self._create(w, spec, now, silences.keys())
            silences[new.id] = new
            self._tell(
                w, changes, SilenceChange("created", new.id, new.starts_at, new.ends_at, new.matchers_key)
            )
        elif action.kind == "update" and spec is not None and cur is not None:
            new_id = self._client.post_silence(spec, cur.id)
            if new_id == cur.id:
                silences[cur.id] = StoredSilence(cur.id, spec.key, spec.starts_at, spec.ends_at)
                self._tell(
                    w, changes, SilenceChange("updated", cur.id, spec.starts_at, spec.ends_at, spec.key)
                )
            else:  # Alertmanager replaced it (and expired the old one) after all
                self._replaced(w, cur, self._stored(new_id, spec, now), silences, changes)
        elif action.kind == "replace" and spec is not None and cur is not None:
            new = self._create(w, spec, now, silences.keys())
            silences[new.id] = new  # stored before the old one goes: never lose a created id
            self._client.expire(cur.id)
            self._replaced(w, cur, new, silences, changes)
        elif action.kind in ("expire", "forget") and cur is not None:
            ends_at = cur.ends_at
            if action.kind == "expire":
                self._client.expire(cur.id)
                ends_at = now
            del silences[cur.id]
            self._tell(w, changes, SilenceChange("expired", cur.id, cur.starts_at, ends_at, cur.matchers_key))

    def _replaced(
        self,
        w: MaintenanceWindow,
        old: StoredSilence,
        new: StoredSilence,
        silences: dict[str, StoredSilence],
        changes: list[SilenceChange],
    ) -> None:
        silences.pop(old.id, None)
        silences[new.id] = new
        change = SilenceChange("replaced", new.id, new.starts_at, new.ends_at, new.matchers_key, old.id)
        self._tell(w, changes, change)

    def _tell(self, w: MaintenanceWindow, changes: list[SilenceChange], change: SilenceChange) -> None:
        changes.append(change)
        log.info(
            "%s: silence %s %s {%s} %s..%s%s",
            w.number,
            change.id,
            change.kind,
            change.matchers_key,
            format_time(change.starts_at),
            format_time(change.ends_at),
            f" (was {change.replaces})" if change.replaces else "",
        )

    def _create(
        self, w: MaintenanceWindow, spec: SilenceSpec, now: datetime, known: Collection[str]
    ) -> StoredSilence:
        """A new silence, or a live one we made before whose id never reached the store (adopted)."""
        adoptable = [
            sil
            for sil in self._client.list([str(m) for m in spec.matchers])
            if sil.get("status", {}).get("state") in ("pending", "active")
            and sil.get("id") not in known
            and sil.get("createdBy") == spec.created_by
            and sil.get("comment") == spec.comment
            and api_matchers_key(sil) == spec.key
        ]
        if not adoptable:
            return self._stored(self._client.post_silence(spec), spec, now)
        found, *extra = adoptable
        for sil in extra:
            log.warning("%s: expiring duplicate silence %s", w.number, sil["id"])
            self._client.expire(str(sil["id"]))
        old = StoredSilence(
            str(found["id"]), spec.key, parse_time(found["startsAt"]), parse_time(found["endsAt"])
        )
        log.info("%s: adopting silence %s, made earlier for the same matchers", w.number, old.id)
        if not needs_change(old, spec, now):
            return old
        if old.state_at(now) == "active":
            spec = replace(spec, starts_at=old.starts_at)
        new_id = self._client.post_silence(spec, old.id)
        if new_id == old.id:
            return StoredSilence(old.id, spec.key, spec.starts_at, spec.ends_at)
        return self._stored(new_id, spec, now)

    def _stored(self, silence_id: str, spec: SilenceSpec, now: datetime) -> StoredSilence:
        """What to store for a silence just created: its start as Alertmanager holds it."""
        starts_at = spec.starts_at
        if starts_at < now + CLOCK_MARGIN:
            try:
                got = self._client.get(silence_id)
                starts_at = parse_time(got["startsAt"]) if got else max(starts_at, now)
            except (AlertmanagerError, KeyError, ValueError) as exc:
                log.warning(
                    "silence %s: start not read back (%s): a later update may replace it", silence_id, exc
                )
                starts_at = max(starts_at, now)
        return StoredSilence(silence_id, spec.key, starts_at, spec.ends_at)
