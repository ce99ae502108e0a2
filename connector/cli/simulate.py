"""``itsm-connector simulate``: something to point ``check``, ``sync``, ``run`` and ``status`` at without a
real ServiceNow or Slack.

It starts the ServiceNow and Slack simulators on loopback, seeds a few changes around now, writes a
ready-to-use ``config.yaml`` and the secret files it names into ``--dir``, and prints how to use them.
Then, every ``--interval`` seconds, one ticket changes (:mod:`connector.simulators.churn`), up to
``--changes`` times; the channel as a reader sees it is kept in ``slack.txt`` next to the config.
Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from connector.simulators.churn import Churn
from connector.simulators.servicenow import ServiceNowSimulator
from connector.simulators.slack import DEFAULT_CHANNEL, DEFAULT_TOKEN, SlackSimulator

MARKER = "# Written by `itsm-connector simulate`"
USER, PASSWORD = "admin", "secret"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("itsm-simulate"),
        help="where to write config.yaml, its secret files, the state and slack.txt "
        "(default: ./itsm-simulate)",
    )
    p.add_argument("--interval", type=float, default=30.0, help="seconds between ticket changes (default 30)")
    p.add_argument(
        "--changes",
        type=int,
        default=120,
        help="ticket changes before it stops changing them (default 120); "
        "the simulators answer until stopped",
    )
    p.add_argument("--locale", choices=["ko", "en"], default="ko", help="language of the tickets and Slack")
    p.add_argument("--timezone", default="Asia/Seoul", help="timezone the channel shows times in")


def cmd_simulate(args: argparse.Namespace) -> int:
    directory: Path = args.dir.resolve()
    problem = _prepare(directory)
    if problem:
        print(f"itsm-connector: {problem}", file=sys.stderr)
        return 2
    if args.interval <= 0 or args.changes < 0:
        print("itsm-connector: --interval must be positive and --changes not negative", file=sys.stderr)
        return 2
    try:
        tz = ZoneInfo(args.timezone)
    except (KeyError, ValueError):
        print(f"itsm-connector: unknown timezone {args.timezone!r} (e.g. Asia/Seoul, UTC)", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _setter(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ServiceNowSimulator(username=USER, password=PASSWORD) as snow, SlackSimulator() as slack:
            churn = Churn(snow, args.locale, tz)
            seeded = churn.seed()
            config = _write(directory, snow.url, slack.base_url, args.locale, args.timezone)
            _banner(directory, config, snow.url, slack.base_url, seeded)
            _loop(churn, slack, tz, directory / "slack.txt", stop, args.interval, args.changes)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("simulators stopped", flush=True)
    return 0


def _setter(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handler


def _prepare(directory: Path) -> str | None:
    """Make ``directory``, and clear the state of a previous simulation in it (its tickets and
    messages are gone with that simulator). Refuses a directory whose config this command did not write."""
    config = directory / "config.yaml"
    if config.exists() and not config.read_text(encoding="utf-8", errors="replace").startswith(MARKER):
        return f"{config} was not written by `itsm-connector simulate`: choose another --dir"
    if not config.exists() and (directory / "state.db").exists():
        return f"{directory} holds a state.db of something else: choose another --dir"
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("state.db", "state.db-wal", "state.db-shm", "state.db.lock", "slack.txt"):
        (directory / name).unlink(missing_ok=True)
    return None


def _write(directory: Path, snow_url: str, slack_url: str, locale: str, tz: str) -> Path:
    """The secret files (mode 0600) and a config naming them; strings as JSON, which YAML reads."""
    password, token = directory / "servicenow-password", directory / "slack-token"
    for path, value in ((password, PASSWORD), (token, DEFAULT_TOKEN)):
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(value + "\n", encoding="utf-8")
    q = json.dumps
    config = directory / "config.yaml"
    config.write_text(
        f"""{MARKER} at {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, for the ServiceNow
# and Slack simulators it runs on loopback; valid while it runs, rewritten by the next one.
# Every key is explained in config.example.yaml.
servicenow:
  name: sim
  url: {q(snow_url)}
  username: {USER}
  password_file: {q(str(password))}
  poll_interval: 10
  ci_refresh_interval: 60
slack:
  token_file: {q(str(token))}
  channel: {DEFAULT_CHANNEL[0]}
  base_url: {q(slack_url)}
  locale: {locale}
  timezone: {q(tz)}
state:
  path: {q(str(directory / "state.db"))}
health:
  enabled: true
  listen: "127.0.0.1:{_free_port()}"
log:
  level: INFO
  format: text
""",
        encoding="utf-8",
    )
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _banner(directory: Path, config: Path, snow_url: str, slack_url: str, seeded: list[str]) -> None:
    c = f"-c {config}"
    print(
        f"""ServiceNow simulator: {snow_url}  (user {USER}, password in {directory / "servicenow-password"})
Slack simulator:      {slack_url}  (channel {DEFAULT_CHANNEL[0]} #{DEFAULT_CHANNEL[1]})
Seeded: {"; ".join(seeded)}

Leave this running. In another terminal:
  itsm-connector check {c}       every source and channel: ok
  itsm-connector sync {c}        one cycle, then exit
  itsm-connector run {c}         the daemon: watch updates arrive (Ctrl-C stops it)
  itsm-connector status {c}      health, last poll, windows (also while run runs)
The channel as L1 sees it: {directory / "slack.txt"}  (watch -n 2 cat {directory / "slack.txt"})
config: {config}""",
        flush=True,
    )


def _loop(
    churn: Churn,
    slack: SlackSimulator,
    tz: ZoneInfo,
    transcript: Path,
    stop: threading.Event,
    interval: float,
    changes: int,
) -> None:
    """Until stopped: a ticket change every ``interval`` s (``changes`` in all); the channel's view
    rewritten when it changed (checked every second at most)."""
    made, last_seen = 0, ""
    next_change = time.monotonic() + interval
    while not stop.is_set():
        seen = slack.seen(DEFAULT_CHANNEL[0], tz)
        if seen != last_seen:
            transcript.write_text(seen, encoding="utf-8")
            last_seen = seen
        if made < changes and time.monotonic() >= next_change:
            made += 1
            print(f"[{datetime.now(tz):%H:%M:%S}] {churn.step()}", flush=True)
            next_change = time.monotonic() + interval
            if made == changes:
                print(f"no more ticket changes (--changes {changes}); Ctrl-C stops the simulators")
        sys.stdout.flush()
        stop.wait(min(1.0, max(0.05, next_change - time.monotonic())) if made < changes else 1.0)
