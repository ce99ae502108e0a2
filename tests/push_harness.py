"""A desk for the push tests: the ServiceNow and Slack simulators, the connector built from its
settings with the hook listener on loopback, ``Daemon.run`` in a thread (real clocks, as in
production), and helpers to send hints over real HTTP and wait on observable facts."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from connector.config import Settings
from connector.hooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from connector.simulators.servicenow import ServiceNowSimulator, format_snow_datetime, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import Connector, build_connector
from tests.support import wait_for

CHANNEL = "C0MAINT01"
SECRET = "0123456789abcdef0123456789abcdef"


def settings(snow: str, slack: str, state: Path, *, poll: float = 60, **hooks: Any) -> Settings:
    return Settings.model_validate(
        {
            "servicenow": {
                "name": "acme",
                "url": snow,
                "username": "admin",
                "password": "secret",
                "poll_interval": poll,
                "hook_secret": hooks.pop("secret", SECRET),
                "hook_auth": hooks.pop("auth", "hmac"),
            },
            "slack": {
                "token": "xoxb-simulator",
                "channel": CHANNEL,
                "base_url": slack,
                "locale": "en",
                "post_interval": 0,
                "first_run": "announce",
            },
            "state": {"path": state},
            "hooks": {"enabled": True, "listen": "127.0.0.1:0", **hooks},
        }
    )


@dataclass
class Desk:
    snow: ServiceNowSimulator
    slack: SlackSimulator
    app: Connector
    beats: list[float]

    @property
    def url(self) -> str:
        assert self.app.hooks is not None
        return f"{self.app.hooks.url}/hooks/servicenow/acme"

    def post(self, body: bytes, headers: dict[str, str], path: str = "/hooks/servicenow/acme") -> int:
        assert self.app.hooks is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.app.hooks.port, timeout=5)
        try:
            conn.request("POST", path, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            return reply.status
        finally:
            conn.close()

    def hint(self, sys_id: str, *, stamp: str | None = None, secret: str = SECRET, **extra: str) -> int:
        body = json.dumps({"table": "change_request", "sys_id": sys_id, **extra}).encode()
        return self.post(body, signed(body, stamp=stamp, secret=secret))

    def parent_text(self, number: str) -> str:
        return next((p.text for p in self.slack.parents(CHANNEL) if number in p.text), "")

    def rereads(self) -> list[str]:
        """The sys_idIN queries of change_request made so far (the hints' re-reads, and refreshes)."""
        return [
            r.params.get("sysparm_query", "")
            for r in self.snow.requests
            if r.path.endswith("/change_request") and "sys_idIN" in r.params.get("sysparm_query", "")
        ]


def signed(body: bytes, *, stamp: str | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = stamp or str(int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, body),
    }


def add_change(snow: ServiceNowSimulator, number: str, title: str, **extra: str) -> str:
    start = datetime.now(timezone.utc) + timedelta(days=1)
    record = make_change(
        number, short_description=title, start=start, end=start + timedelta(hours=1), **extra
    )
    return snow.put_record("change_request", record)["sys_id"]


@contextmanager
def desk(tmp_path: Path, *, changes: int = 1, poll: float = 60, **hooks: Any) -> Iterator[Desk]:
    """``changes`` windows announced by the first poll before the desk is handed over."""
    with ServiceNowSimulator() as snow, SlackSimulator() as slack:
        earlier = format_snow_datetime(datetime.now(timezone.utc) - timedelta(minutes=5))
        for i in range(changes):
            add_change(snow, f"CHG{i + 1:07d}", f"change {i + 1}", sys_updated_on=earlier)
        app = build_connector(settings(snow.url, slack.base_url, tmp_path / "state.db", poll=poll, **hooks))
        assert app.hooks is not None
        app.hooks.start()
        beats: list[float] = []
        loop = threading.Thread(
            target=app.daemon.run, kwargs={"heartbeat": lambda: beats.append(time.monotonic())}, daemon=True
        )
        loop.start()
        try:
            wait_for(
                "the first sync",
                lambda: len(slack.parents(CHANNEL)) == changes and app.store.first_sync_done("acme"),
            )
            yield Desk(snow, slack, app, beats)
        finally:
            app.daemon.stop.set()
            loop.join(timeout=15)
            snow.stop()
            app.close()
