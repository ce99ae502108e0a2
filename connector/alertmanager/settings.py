"""The ``alertmanager:`` config section and the label matchers it is built from. Pure: no I/O.

:class:`Matcher` is one label matcher as Alertmanager's API has it (its string form is Prometheus
syntax); :class:`MatcherTemplate` names one CI through ``{ci}``; :class:`AlertmanagerSettings` holds
them with the URLs, credentials and durations. How a window's CIs become silences is
:mod:`connector.alertmanager.plan`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connector.transport import is_cleartext_remote, refused

CI_PLACEHOLDER = "{ci}"
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: A matcher that matches all of these (or "") would silence unrelated alerts: it selects nothing.
_PROBES = ("x", "0", "db01:9100", "node-exporter", "a.b-c_d/e f")
_COMMENT_FIELDS = ("number", "title", "url")


@lru_cache(maxsize=256)
def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from exc


def _label_name(name: str) -> str:
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid label name")
    return name


class _Labelled(BaseModel):
    """What a matcher and a matcher template share: a checked label name, strict and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _label_name(v)


class Matcher(_Labelled):
    """One label matcher, as Alertmanager's API has it. Its string form is Prometheus syntax."""

    value: str
    is_regex: bool = False
    is_equal: bool = True

    @model_validator(mode="after")
    def _check_regex(self) -> Matcher:
        if self.is_regex:
            _regex(self.value)
        return self

    def matches(self, value: str) -> bool:
        """Whether a label value matches (an absent label is ""), anchored like Alertmanager's."""
        hit = _regex(self.value).fullmatch(value) is not None if self.is_regex else self.value == value
        return hit == self.is_equal

    def __str__(self) -> str:
        op = ("=~" if self.is_regex else "=") if self.is_equal else ("!~" if self.is_regex else "!=")
        quoted = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{op}"{quoted}"'


class MatcherTemplate(_Labelled):
    """A positive matcher naming one CI: ``{ci}`` in ``value`` is replaced by the CI name."""

    value: str = CI_PLACEHOLDER
    is_regex: bool = False

    @model_validator(mode="after")
    def _check_value(self) -> MatcherTemplate:
        if CI_PLACEHOLDER not in self.value:
            raise ValueError(f"template value {self.value!r} does not contain {CI_PLACEHOLDER}")
        self.render(["db01", "db02"])
        return self

    def render(self, cis: list[str]) -> Matcher:
        """The matcher for ``cis`` (one or more CI names, in a stable order)."""
        if len(cis) == 1 and not self.is_regex:
            return Matcher(name=self.name, value=self.value.replace(CI_PLACEHOLDER, cis[0]))
        escaped = [re.escape(ci) for ci in cis]
        alternation = escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        parts = self.value.split(CI_PLACEHOLDER)
        if not self.is_regex:
            parts = [re.escape(part) for part in parts]
        return Matcher(name=self.name, value=alternation.join(parts), is_regex=True)


def _default_ci_matchers() -> list[MatcherTemplate]:
    return [MatcherTemplate(name="instance", value="{ci}(:[0-9]+)?", is_regex=True)]


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the URL: use username/password or bearer_token")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url.rstrip("/")


class AlertmanagerSettings(BaseModel):
    """The ``alertmanager:`` config section. Durations: seconds or ISO 8601 (``PT30M``). Errors do not
    echo the input: a URL or a secret may carry a password."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str
    ui_url: str | None = None
    username: SecretStr | None = None
    password: SecretStr | None = None  # or password_file; the config loader resolves it
    password_file: Path | None = None
    bearer_token: SecretStr | None = None  # or bearer_token_file
    bearer_token_file: Path | None = None
    ci_matchers: list[MatcherTemplate] = Field(default_factory=_default_ci_matchers)
    ci_map: dict[str, Annotated[list[Matcher], Field(min_length=1)]] = Field(default_factory=dict)
    extra_matchers: list[Matcher] = Field(default_factory=list)
    created_by: str = Field(default="itsm-connector", min_length=1)
    comment_template: str = "{number}: {title} — {url}"
    grace: timedelta = timedelta(0)
    overrun_step: timedelta = timedelta(minutes=30)
    overrun_cap: timedelta = timedelta(hours=4)
    max_duration: timedelta = timedelta(hours=24)
    timeout: float = Field(default=10.0, gt=0)
    # credentials over http:// to a host that is not loopback travel in clear text: refused unless set
    allow_insecure_http: bool = False

    @property
    def has_credentials(self) -> bool:
        return (
            self.username is not None or self.bearer_token is not None or self.bearer_token_file is not None
        )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _base_url(v)

    @field_validator("ui_url")
    @classmethod
    def _check_ui_url(cls, v: str | None) -> str | None:
        return None if v is None else _base_url(v)

    @field_validator("comment_template")
    @classmethod
    def _check_comment(cls, v: str) -> str:
        try:
            v.format(**dict.fromkeys(_COMMENT_FIELDS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{exc}: use only {{number}}, {{title}} and {{url}}") from exc
        return v

    @field_validator("grace", "overrun_cap")
    @classmethod
    def _not_negative(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError("must not be negative")
        return v

    @field_validator("overrun_step", "max_duration")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be positive")
        return v

    @model_validator(mode="after")
    def _check_auth(self) -> AlertmanagerSettings:
        basic = self.username is not None
        if not basic and (self.password is not None or self.password_file is not None):
            raise ValueError("password without username")
        if basic and (self.bearer_token is not None or self.bearer_token_file is not None):
            raise ValueError("choose basic auth (username/password) or bearer_token, not both")
        if self.has_credentials and is_cleartext_remote(self.url) and not self.allow_insecure_http:
            raise ValueError(refused(self.url, "the Alertmanager credentials"))
        return self


def silence_url(s: AlertmanagerSettings, silence_id: str) -> str | None:
    """Link to the silence in the Alertmanager UI, when ``ui_url`` is configured."""
    return None if s.ui_url is None else f"{s.ui_url}/#/silences/{silence_id}"


def matchers_key(matchers: tuple[Matcher, ...] | list[Matcher]) -> str:
    """Canonical text of a matcher set: equal keys mean Alertmanager sees the same matchers."""
    return ",".join(sorted(str(m) for m in matchers))


def is_selective(m: Matcher) -> bool:
    """False for a matcher that also matches the empty string or any value (``.*``, ``.+``)."""
    return not m.matches("") and not all(m.matches(p) for p in _PROBES)
