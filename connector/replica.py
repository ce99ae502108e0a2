"""A replica of a group sharing one PostgreSQL state: its store, its leader election and the guards
put in front of every outside effect (``connector.leader`` explains the election and the fence).

:func:`open_state` opens the store the ``state`` settings name (SQLite unless ``state.url``);
:func:`elect` builds the replica's :class:`~connector.leader.Leadership` and installs the fence in
the store; :class:`FencedSlackClient` and :class:`FencedSession` check the lease right before each
Slack call and Alertmanager request (after any pacing wait: a process paused in that wait notices
when it wakes, before the request leaves).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from connector.config import StateSettings
from connector.store.api import StateStore

if TYPE_CHECKING:
    from connector.leader import Leadership

log = logging.getLogger(__name__)

#: set to 1 in the tests that show what fencing prevents: the lease is still elected, but neither the
#: store nor the outside requests check it. Never in production (a loud warning says so).
UNFENCED_ENV = "CONNECTOR_TEST_DISABLE_FENCING"


def open_state(state: StateSettings, *, application_name: str = "itsm-connector") -> StateStore:
    """The state store the settings name: PostgreSQL when ``state.url`` is set, else SQLite."""
    if state.url is None:
        from connector.store.sqlite import Store

        state.path.parent.mkdir(parents=True, exist_ok=True)
        return Store(state.path)
    from connector.store.postgres import PostgresStore

    return PostgresStore(
        state.url,
        password=state.password.get_secret_value() if state.password else None,
        schema=state.pg_schema,
        idle_in_transaction_timeout=state.lease_seconds,
        application_name=application_name,
    )


def elect(
    state: StateSettings, store: StateStore, on_change: Callable[[bool], None]
) -> Leadership:
    """This replica's leader election on the state database (``state.url`` must be set)."""
    import psycopg

    from connector.leader import Leadership
    from connector.store.postgres import PostgresStore, connect_args

    assert state.url is not None and isinstance(store, PostgresStore)
    args = connect_args(
        state.url,
        state.password.get_secret_value() if state.password else None,
        timeout=min(5.0, state.renew_seconds * 2),
        application_name="itsm-connector lease",
        idle_in_tx=state.lease_seconds,
        schema=state.pg_schema,
        lock_timeout=state.renew_seconds,
    )
    fenced = os.environ.get(UNFENCED_ENV) != "1"
    leadership = Leadership(
        lambda: psycopg.connect(**args),
        lease=state.lease_seconds,
        renew=state.renew_seconds,
        on_change=on_change,
        fenced=fenced,
    )
    if fenced:
        store.fence = leadership.fence
    else:
        log.warning(
            "FENCING IS OFF (%s=1, for tests only): a leader that lost its lease can still write and post",
            UNFENCED_ENV,
        )
    return leadership


class FencedSlackClient:
    """A Slack ``WebClient`` whose ``api_call`` first asks ``guard`` (which raises NotLeader)."""

    def __init__(self, client: Any, guard: Callable[[], None]) -> None:
        self._client = client
        self._guard = guard

    def api_call(self, *args: Any, **kwargs: Any) -> Any:
        self._guard()
        return self._client.api_call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FencedSession(requests.Session):
    """A ``requests.Session`` (Alertmanager's) that asks ``guard`` before each request."""

    def __init__(self, guard: Callable[[], None]) -> None:
        super().__init__()
        self._guard = guard

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self._guard()
        return super().request(method, url, *args, **kwargs)
