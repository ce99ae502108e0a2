"""Alertmanager (API v2, 0.25+) adapter, and the sink that keeps a window's silences as planned.

Every failure is one exception type (a :class:`connector.errors.SinkError`), sorted by what the caller
does::

    AlertmanagerError
    ├── retryable=True    unreachable, timeout, 429, 5xx, unreadable reply: try again next cycle
    └── retryable=False   401/403 (auth=True): fix the credentials
                          400/422 and other 4xx: a refused silence or a wrong URL: fix config or data

Quirks handled here (see ../shared/reference/protocols.md, section D):

* DELETE of an unknown id answers 500 "silence not found" in 0.25 and 404 from 0.26: both mean gone.
* POST with an id Alertmanager does not know answers 404: the silence is created afresh.
* A past ``startsAt`` becomes Alertmanager's now, and an in-place update of an active silence must
  repeat its start exactly: after creating a started silence we read its start back.
* Alertmanager may replace instead of update (its clock, an expired silence): the id it returns is
  the one stored, always.

A created silence must never be lost: if a write fails after others succeeded, the error carries the
partial :class:`SilenceOutcome` to store; before creating, a live silence we made earlier for the same
matchers and comment (a reply lost on the way back) is adopted instead of duplicated.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import requests

from connector.domain.window import MaintenanceWindow, Phase
from connector.errors import SinkError
from connector.sinks.silence_plan import (
    CLOCK_MARGIN,
    Action,
    AlertmanagerSettings,
    Matcher,
    SilenceChange,
    SilenceOutcome,
    SilenceSpec,
    StoredSilence,
    decide,
    matchers_key,
    needs_change,
    plan_silences,
)

log = logging.getLogger(__name__)

_API = "/api/v2"
_BODY_EXCERPT = 200


class AlertmanagerError(SinkError):
    """Alertmanager could not be used. ``retryable``: the same call may work later; ``auth``: the
    credentials were refused. ``outcome``: set by :meth:`AlertmanagerSink.apply` — the silences as
    they are after the writes that did succeed; store them."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        auth: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.auth = auth
        self.retry_after = retry_after
        self.outcome: SilenceOutcome | None = None


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """RFC 3339 as Alertmanager writes it (``Z``, 0–9 fraction digits), on Python 3.10 too."""
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", text.replace("Z", "+00:00"))
    text = re.sub(r"\.(\d{1,5})(?=[+-])", lambda m: "." + m.group(1).ljust(6, "0"), text)
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _body(spec: SilenceSpec, silence_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
            for m in spec.matchers
        ],
        "startsAt": format_time(spec.starts_at),
        "endsAt": format_time(spec.ends_at),
        "createdBy": spec.created_by,
        "comment": spec.comment,
    }
    if silence_id is not None:
        body["id"] = silence_id
    return body


def _api_key(silence: dict[str, Any]) -> str:
    matchers = [
        Matcher.model_construct(
            name=m.get("name", ""),
            value=m.get("value", ""),
            is_regex=bool(m.get("isRegex")),
            is_equal=m.get("isEqual", True) is not False,
        )
        for m in silence.get("matchers", [])
    ]
    return matchers_key(matchers)


class AlertmanagerClient:
    """The silence endpoints of one Alertmanager. Credentials go in headers, never in URLs or logs."""

    def __init__(self, settings: AlertmanagerSettings, session: requests.Session | None = None) -> None:
        self.base_url = settings.url
        self._timeout = settings.timeout
        self._session = session if session is not None else requests.Session()
        self._auth: tuple[str, str] | None = None
        self._headers: dict[str, str] = {}
        self._missing_password = settings.username is not None and settings.password is None
        if settings.username is not None and settings.password is not None:
            self._auth = (settings.username.get_secret_value(), settings.password.get_secret_value())
        if settings.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"

    def _request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> requests.Response:
        where = f"{method} {self.base_url}{path}"
        try:
            reply = self._session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                auth=self._auth,
                headers=self._headers,
                timeout=self._timeout,
            )
        except requests.Timeout as exc:
            raise AlertmanagerError(f"{where}: no answer within {self._timeout}s", retryable=True) from exc
        except requests.RequestException as exc:
            raise AlertmanagerError(f"{where}: cannot reach Alertmanager: {exc}", retryable=True) from exc
        log.debug("%s -> %s", where, reply.status_code)
        return reply

    def _fail(self, method: str, path: str, reply: requests.Response) -> AlertmanagerError:
        status = reply.status_code
        where = f"{method} {self.base_url}{path}"
        if status in (401, 403):
            return AlertmanagerError(
                f"{where}: Alertmanager refused the configured credentials (HTTP {status})",
                retryable=False,
                status=status,
                auth=True,
            )
        excerpt = reply.text.strip()[:_BODY_EXCERPT]
        retry_after = reply.headers.get("Retry-After", "")
        return AlertmanagerError(
            f"{where}: HTTP {status} {excerpt}",
            retryable=status == 429 or status >= 500,
            status=status,
            retry_after=float(retry_after) if retry_after.isdigit() else None,
        )

    def _json(self, method: str, path: str, reply: requests.Response) -> Any:
        try:
            return reply.json()
        except ValueError as exc:
            raise AlertmanagerError(
                f"{method} {self.base_url}{path}: unreadable reply {reply.text[:_BODY_EXCERPT]!r}",
                retryable=True,
                status=reply.status_code,
            ) from exc

    def ready(self) -> None:
        """Reachable, ready and accepting our credentials on the API (for ``check``); raises otherwise."""
        if self._missing_password:
            raise AlertmanagerError(
                "alertmanager.username is set but no password was given", retryable=False, auth=True
            )
        for path in ("/-/ready", f"{_API}/status"):
            reply = self._request("GET", path)
            if reply.status_code != 200:
                raise self._fail("GET", path, reply)

    def post_silence(self, spec: SilenceSpec, silence_id: str | None = None) -> str:
        """Create, or update ``silence_id``; the id Alertmanager answers, which may be a new one."""
        path = f"{_API}/silences"
        reply = self._request("POST", path, json=_body(spec, silence_id))
        if reply.status_code == 404 and silence_id is not None:
            log.info("silence %s unknown to Alertmanager: creating it afresh", silence_id)
            return self.post_silence(spec, None)
        if reply.status_code != 200:
            raise self._fail("POST", path, reply)
        data = self._json("POST", path, reply)
        if not isinstance(data, dict) or not isinstance(data.get("silenceID"), str):
            raise AlertmanagerError(f"POST {self.base_url}{path}: no silenceID in reply", retryable=True)
        return str(data["silenceID"])

    def expire(self, silence_id: str) -> None:
        """Expire a silence now. Already expired or unknown (404, or 0.25's 500) counts as done."""
        path = f"{_API}/silence/{silence_id}"
        reply = self._request("DELETE", path)
        if reply.status_code in (200, 404):
            return
        if reply.status_code == 500 and "silence not found" in reply.text:
            return
        raise self._fail("DELETE", path, reply)

    def get(self, silence_id: str) -> dict[str, Any] | None:
        path = f"{_API}/silence/{silence_id}"
        reply = self._request("GET", path)
        if reply.status_code == 404:
            return None
        if reply.status_code != 200:
            raise self._fail("GET", path, reply)
        data = self._json("GET", path, reply)
        return data if isinstance(data, dict) else None

    def list(self, filters: Sequence[str] = ()) -> builtins.list[dict[str, Any]]:
        """Silences having every matcher in ``filters`` (Prometheus syntax, compared as text)."""
        path = f"{_API}/silences"
        reply = self._request("GET", path, params={"filter": list(filters)} if filters else None)
        if reply.status_code != 200:
            raise self._fail("GET", path, reply)
        data = self._json("GET", path, reply)
        return [s for s in data if isinstance(s, dict)] if isinstance(data, builtins.list) else []


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
            and _api_key(sil) == spec.key
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
