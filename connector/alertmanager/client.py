"""Alertmanager (API v2, 0.25+) adapter: the silence endpoints of one Alertmanager.

Every failure is one exception type (a :class:`connector.errors.SinkError`), sorted by what the caller
does::

    AlertmanagerError
    ├── retryable=True    unreachable, timeout, 429, 5xx, unreadable reply: try again next cycle
    └── retryable=False   401/403 (auth=True): fix the credentials
                          400/422 and other 4xx: a refused silence or a wrong URL: fix config or data

Quirks handled here (see ../shared/reference/protocols.md, section D; the others are in
:mod:`connector.alertmanager.apply`):

* DELETE of an unknown id answers 500 "silence not found" in 0.25 and 404 from 0.26: both mean gone.
* POST with an id Alertmanager does not know answers 404: the silence is created afresh.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import requests
from requests.auth import HTTPBasicAuth

from connector.alertmanager.plan import SilenceOutcome, SilenceSpec
from connector.alertmanager.settings import AlertmanagerSettings, Matcher, matchers_key
from connector.errors import SinkError
from connector.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

_API = "/api/v2"
_BODY_EXCERPT = 200


class AlertmanagerError(SinkError):
    """Alertmanager could not be used. ``retryable``: the same call may work later; ``auth``: the
    credentials were refused. ``outcome``: set by
    :meth:`connector.alertmanager.apply.AlertmanagerSink.apply` — the silences as they are after
    the writes that did succeed; store them."""

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


def transport_reason(exc: BaseException) -> str:
    """What went wrong on the way, from the exception's type and its errno, never its text."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno is not None and e.strerror:
            return f"{type(exc).__name__}: {e.strerror}"
    return type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (``__cause__``/``__context__``, urllib3's ``reason``), bounded."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 10:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        reason = getattr(e, "reason", None)
        todo += [e.__cause__, e.__context__, reason if isinstance(reason, BaseException) else None]
        todo += [a for a in e.args if isinstance(a, BaseException)]


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


def api_matchers_key(silence: dict[str, Any]) -> str:
    """The :func:`matchers_key` of a silence as the API lists it."""
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
        self._auth: HTTPBasicAuth | None = None
        self._headers: dict[str, str] = {}
        self._missing_password = settings.username is not None and settings.password is None
        if settings.username is not None and settings.password is not None:
            # As UTF-8 bytes (RFC 7617), as the ServiceNow client does: requests would encode str as
            # Latin-1 and fail on anything else, on every pass.
            user, password = settings.username.get_secret_value(), settings.password.get_secret_value()
            self._auth = HTTPBasicAuth(user.encode(), password.encode())
        if settings.bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
        self._secrets = [
            s.get_secret_value()
            for s in (settings.password, settings.bearer_token)
            if s is not None and len(s.get_secret_value()) >= 4
        ]

    def _redact(self, text: str) -> str:
        """A reply that echoes our request (a proxy's error page) must not put a secret in an error."""
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

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
        except (requests.RequestException, OSError, ValueError) as exc:
            # Never the exception's text: requests quotes a header value it refuses (the credentials).
            raise AlertmanagerError(
                f"{where}: cannot reach Alertmanager: {transport_reason(exc)}", retryable=True
            ) from None
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
        excerpt = self._redact(reply.text).strip()[:_BODY_EXCERPT]
        return AlertmanagerError(
            f"{where}: HTTP {status} {excerpt}",
            retryable=status == 429 or status >= 500,
            status=status,
            retry_after=retry_after_seconds(reply.headers.get("Retry-After")),
        )

    def _json(self, method: str, path: str, reply: requests.Response) -> Any:
        try:
            return reply.json()
        except ValueError as exc:
            excerpt = self._redact(reply.text)[:_BODY_EXCERPT]
            raise AlertmanagerError(
                f"{method} {self.base_url}{path}: unreadable reply {excerpt!r}",
                retryable=True,
                status=reply.status_code,
            ) from exc

    def ready(self) -> dict[str, Any]:
        """Reachable, ready and accepting our credentials on API v2 (for ``check``): its status
        document (``versionInfo``, ``cluster``); raises otherwise."""
        if self._missing_password:
            raise AlertmanagerError(
                "alertmanager.username is set but no password was given", retryable=False, auth=True
            )
        for path in ("/-/ready", f"{_API}/status"):
            reply = self._request("GET", path)
            if reply.status_code != 200:
                raise self._fail("GET", path, reply)
        status = self._json("GET", f"{_API}/status", reply)
        if not isinstance(status, dict) or "versionInfo" not in status:
            raise AlertmanagerError(
                f"GET {self.base_url}{_API}/status: not Alertmanager API v2 status: check alertmanager.url",
                retryable=False,
                status=reply.status_code,
            )
        return status

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
