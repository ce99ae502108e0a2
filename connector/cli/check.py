"""``itsm-connector check``: everything the daemon will talk to, each on its own line, before it runs.

* every source: reachable, credentials accepted, the table readable with the poll's own query, and
  every field the filter names present (ServiceNow drops a condition on an unknown field, which
  widens the filter silently);
* Slack: the token, then every channel named anywhere (``slack.channel``, ``routes[].channels``,
  ``slack.channels[].id``): an ID, not a name; it exists; the bot is a member and can post;
* Alertmanager, when configured: ready, and API v2 answering with the configured credentials.

Every line starts ``ok`` or ``FAIL`` and names its source, channel or Alertmanager; the exit code is
1 when any line fails. The results go to stdout; while checking, only errors are logged (to stderr),
so no library's debug lines end up between them. Output goes through the log redaction: an error
that quotes a secret (a server echoing a header) prints ``***``.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from connector.config import ServiceNowSettings, Settings
from connector.errors import ConfigError, SourceError
from connector.logs import redact
from connector.slack.checks import Result, check_slack

if TYPE_CHECKING:
    from connector.servicenow.client import ServiceNowSource


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # the results say it all: no library chatter between them
    try:
        results = check_sources(settings) + _check_slack(settings) + check_alertmanager(settings)
    finally:
        root.setLevel(level)
    for r in results:
        print(redact(f"{'ok  ' if r.ok else 'FAIL'} {r.text}"), flush=True)
    return 0 if all(r.ok for r in results) else 1


def channel_refs(settings: Settings) -> dict[str, list[str]]:
    """Every channel the configuration names -> the keys naming it, the default first."""
    refs: dict[str, list[str]] = {settings.slack.channel: ["slack.channel"]}
    for i, route in enumerate(settings.routes):
        for channel in route.channels:
            refs.setdefault(channel, []).append(f"routes.{i}.channels")
    for i, ch in enumerate(settings.slack.channels):
        refs.setdefault(ch.id, []).append(f"slack.channels.{i}")
    return {c: list(dict.fromkeys(keys)) for c, keys in refs.items()}


def check_sources(settings: Settings) -> list[Result]:
    from connector.wiring import _source  # the daemon's own construction of a source

    results = []
    for sn in settings.all_sources:
        label = f"source {sn.name} ({sn.url}, table {sn.table})"
        try:
            source = _source(sn)
        except ConfigError as e:
            results.append(Result(False, f"{label}: {e}"))
            continue
        try:
            results.append(_check_source(source, sn, label))
        finally:
            source.close()
    return results


def _check_source(source: ServiceNowSource, sn: ServiceNowSettings, label: str) -> Result:
    from connector.servicenow.query import filter_fields

    try:
        source.check(sn.filter)
        fields = filter_fields(sn.filter)
        unknown = source.unknown_fields(fields)
    except (SourceError, ConfigError) as e:
        return Result(False, f"{label}: {e}")
    except ValueError as e:
        return Result(False, f"{label}: filter: {e}")
    readable = f"readable as {sn.username}"
    if unknown:
        return Result(
            False,
            f"{label}: {readable}, but the filter names fields the table does not show "
            f"({', '.join(unknown)}): ServiceNow ignores such a condition, which widens the filter",
        )
    if unknown is None and fields:
        return Result(True, f"{label}: {readable}; filter accepted (its fields unverified: no row to read)")
    return Result(True, f"{label}: {readable}; filter ok" if sn.filter else f"{label}: {readable}")


def _check_slack(settings: Settings) -> list[Result]:
    from slack_sdk import WebClient

    from connector.slack.api import sdk_logger

    sl = settings.slack
    client = WebClient(
        token=sl.token.get_secret_value() if sl.token else None,
        base_url=sl.base_url,
        timeout=sl.timeout,  # type: ignore[arg-type]  # annotated int; urllib takes float seconds
        retry_handlers=[],
        logger=sdk_logger(),
    )
    return check_slack(client, channel_refs(settings))


def check_alertmanager(settings: Settings) -> list[Result]:
    am = settings.alertmanager
    if am is None:
        return []
    from connector.alertmanager.client import AlertmanagerClient, AlertmanagerError

    label = f"alertmanager {am.url}"
    try:
        status = AlertmanagerClient(am).ready()
    except AlertmanagerError as e:
        return [Result(False, f"{label}: {e}")]
    version = (status.get("versionInfo") or {}).get("version") or "unknown"
    cluster = (status.get("cluster") or {}).get("status") or "unknown"
    return [Result(True, f"{label}: ready, API v2 answers (version {version}, cluster {cluster})")]
