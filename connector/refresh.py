"""Which windows' parent messages must be brought up to date, per target.

Something other than an event can change what a window's parent message shows: a new silence id
(Alertmanager), a quiet edit of the ticket (title, description, group). :class:`RefreshRequests`
collects such windows and hands each target only the windows routed there (``Store.targets``), so
asking for a refresh can never put a window in a channel its route does not name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from connector.domain.target import Target
from connector.store.api import StateStore

Key = tuple[str, str]


class RefreshRequests:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._pending: dict[Target, set[Key]] = {}

    def request(self, key: Key) -> None:
        """The window's parent message may be out of date in every target it is routed to."""
        targets = self._store.targets(key) or []
        with self._lock:
            for target in targets:
                self._pending.setdefault(target, set()).add(key)

    def take(self, target: Target) -> list[Key]:
        """The windows to refresh in ``target``, forgotten here: give back what was not done."""
        with self._lock:
            return sorted(self._pending.pop(target, set()))

    def give_back(self, target: Target, keys: Iterable[Key]) -> None:
        with self._lock:
            self._pending.setdefault(target, set()).update(keys)
