"""Configuration: one YAML file, environment overrides, secrets from env, files or systemd credentials.

Precedence, highest first: environment (``ITSM_SLACK__CHANNEL=C123``), the YAML file, defaults.
Secrets never live in the model as plain strings (``SecretStr``): their repr is ``**********``.
Every problem in a file is reported at once, each named by its dotted key (:func:`load_settings`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.alertmanager.settings import AlertmanagerSettings
from connector.credentials import (
    inline_notice,
    inline_secrets,
    is_token,
    resolve_secrets,
    secret_items,
    secret_shape,
)
from connector.domain.routing import Route
from connector.errors import ConfigError
from connector.hooks.settings import HooksSettings
from connector.servicenow.lookback import default_lookback
from connector.servicenow.mapping import SourceMapping
from connector.transport import insecure_notice, is_cleartext_remote, is_loopback, refused

DEFAULT_CONFIG_PATH = Path("/etc/itsm-connector/config.yaml")
#: the environment variable naming the config file when ``-c`` is not given
CONFIG_ENV = "ITSM_CONNECTOR_CONFIG"
ENV_PREFIX = "ITSM_"
MISSING_CONFIG_HINT = (
    f"give one with -c FILE (or {CONFIG_ENV}=FILE); start from config.example.yaml (every key, with its "
    "default), or try `itsm-connector simulate`, which writes a ready-to-use one"
)


def valid_timezone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {v!r} (e.g. Asia/Seoul, UTC)") from None
    return v
#: characters a source's hook_secret has at least
MIN_HOOK_SECRET = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceNowSettings(_Strict):
    name: str = "servicenow"
    url: str
    username: str
    password: SecretStr | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: SecretStr | None = None
    table: str = "change_request"
    api_version: Literal["v1", "v2"] = "v2"
    filter: str = ""
    page_size: int = Field(500, ge=1, le=10000)
    timeout: float = Field(30.0, gt=0)
    poll_interval: float = Field(60.0, ge=1)
    ci_refresh_interval: float = Field(900.0, ge=10)
    # seconds each poll reads again before it started, for updates stamped in a second already read
    # (late commits, two updates in one second); None: two poll intervals or 60 s, whichever is larger
    lookback: float | None = Field(None, ge=0, le=86400)
    mapping: SourceMapping = Field(default_factory=SourceMapping)
    # http:// to a host that is not loopback sends the credentials in clear text: refused unless set
    allow_insecure_http: bool = False
    # push (``hooks:``): the shared secret this source's hints are signed with (hmac) or carry as a
    # bearer token; a source without one takes no hints
    hook_secret: SecretStr | None = None
    hook_auth: Literal["hmac", "bearer"] = "hmac"

    @property
    def lookback_seconds(self) -> float:
        return self.lookback if self.lookback is not None else default_lookback(self.poll_interval)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local simulator)")
        if "@" in v.split("://", 1)[1].split("/", 1)[0]:
            raise ValueError("must not contain credentials: use servicenow.username and the password secret")
        return v.rstrip("/")

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: str) -> str:
        if "ORDERBY" in v:
            raise ValueError(
                "must not contain ORDERBY: the connector orders by sys_updated_on, sys_id itself"
            )
        return v

    @field_validator("hook_secret")
    @classmethod
    def _hook_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < MIN_HOOK_SECRET:
            raise ValueError(
                f"must be at least {MIN_HOOK_SECRET} characters (e.g. 64 hex digits: openssl rand -hex 32)"
            )
        if v is not None and not v.get_secret_value().isascii():
            raise ValueError("must be ASCII (ServiceNow and the connector must agree on its bytes)")
        return v

    @model_validator(mode="after")
    def _cleartext(self) -> ServiceNowSettings:
        if is_cleartext_remote(self.url) and not self.allow_insecure_http:
            raise ValueError(refused(self.url, "the ServiceNow password"))
        return self


class ChannelSettings(_Strict):
    """Per-channel overrides; a channel not listed uses the ``slack`` defaults."""

    id: str
    locale: Literal["ko", "en"] | None = None
    timezone: str | None = None
    digest_times: list[str] = Field(default_factory=list)
    reminder_minutes: int | None = Field(None, ge=1, le=24 * 60)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else valid_timezone(v)

    @field_validator("digest_times")
    @classmethod
    def _times(cls, v: list[str]) -> list[str]:
        for t in v:
            try:
                time.fromisoformat(t)
            except ValueError:
                raise ValueError(f"{t!r} is not a local time HH:MM") from None
        return v


class SlackSettings(_Strict):
    token: SecretStr | None = None
    channel: str
    base_url: str = "https://slack.com/api/"
    locale: Literal["ko", "en"] = "ko"
    timezone: str = "Asia/Seoul"
    first_run: Literal["digest", "announce", "silent"] = "digest"
    digest_horizon_hours: float = Field(168.0, gt=0)
    post_interval: float = Field(1.1, ge=0)
    timeout: float = Field(15.0, gt=0)
    overrun_mention: str | None = None
    # The parent message is the announcement; true also posts an "announced" reply in its thread
    # (one more post per new window at Slack's ~1 post/s per channel).
    announce_in_thread: bool = False
    channels: list[ChannelSettings] = Field(default_factory=list)
    # a base_url over http:// to a host that is not loopback sends the token in clear text
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _cleartext(self) -> SlackSettings:
        if is_cleartext_remote(self.base_url) and not self.allow_insecure_http:
            raise ValueError(refused(self.base_url, "the Slack token"))
        return self

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return valid_timezone(v)

    @field_validator("overrun_mention")
    @classmethod
    def _mention(cls, v: str | None) -> str | None:
        if v is not None and not (
            v.startswith("<!subteam^") or v.startswith("<@") or v in ("<!here>", "<!channel>")
        ):
            raise ValueError("must be a Slack mention such as <!subteam^S0123ABCD> or <@U0123ABCD>")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def channel_settings(self, channel: str) -> ChannelSettings:
        """The effective settings of ``channel``: its own entry over the slack defaults."""
        own = next((c for c in self.channels if c.id == channel), None) or ChannelSettings.model_validate(
            {"id": channel}
        )
        return own.model_copy(
            update={"locale": own.locale or self.locale, "timezone": own.timezone or self.timezone}
        )


class StateSettings(_Strict):
    """Where the state lives: a SQLite file (``path``, the default), or PostgreSQL (``url``) shared by
    replicas on several hosts, of which the one holding the lease works (docs/ha.md)."""

    path: Path = Field(default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY", ".")) / "state.db")
    #: how long a finished window is kept (``connector.store.retention``): ``90d``, ``26w``, ``2160h``;
    #: a bare number is days. At least 7 days, the calendar feed's horizon.
    retention: timedelta = timedelta(days=90)

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, v: object) -> timedelta:
        return parse_retention(v)

    #: postgresql://user@host:port/dbname[?sslmode=…]; the password goes in ``password`` (a secret)
    url: str | None = None
    password: SecretStr | None = None
    #: the PostgreSQL schema of the tables (created if missing); default: the role's search_path
    pg_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    #: seconds a leader's lease lasts; the standby takes over at most this long after the leader died
    lease_seconds: float = Field(default=10.0, ge=3, le=300)
    #: how often the leader renews its lease (and a standby looks whether it lapsed)
    renew_seconds: float = Field(default=3.0, ge=0.5, le=100)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        scheme, sep, rest = v.partition("://")
        if not sep or scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL: postgresql://user@host:5432/dbname")
        if ":" in rest.split("/", 1)[0].rpartition("@")[0]:
            raise ValueError(
                "must not contain a password: put it in state.password_file (or ITSM_STATE__PASSWORD, "
                "or the systemd credential state-password)"
            )
        return v

    @model_validator(mode="after")
    def _timing(self) -> StateSettings:
        # a renewal may fail (a slow query, a reconnect) and the next one still be in time
        if self.renew_seconds * 3 > self.lease_seconds:
            raise ValueError(
                f"renew_seconds ({self.renew_seconds:g}) must be at most a third of lease_seconds "
                f"({self.lease_seconds:g})"
            )
        return self

    @property
    def postgresql(self) -> bool:
        return self.url is not None


_UNITS = {"d": timedelta(days=1), "w": timedelta(weeks=1), "h": timedelta(hours=1)}


def parse_retention(v: object) -> timedelta:
    if isinstance(v, timedelta):
        value = v
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        value = timedelta(days=v)
    elif isinstance(v, str) and (m := re.fullmatch(r"\s*(\d+)\s*([dwh])\s*", v)):
        value = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("must be a duration such as 90d, 26w or 2160h (at least 7d)")
    if value < timedelta(days=7):
        raise ValueError("must be at least 7d: the calendar feed shows windows finished up to 7 days ago")
    return value


class HealthSettings(_Strict):
    enabled: bool = False
    listen: str = "127.0.0.1:9464"
    # The wall board (/board, /api/windows) on the same listener; docs/board.md.
    board: bool = True
    # Required by /board and /api/windows when set (Bearer, or Basic with it as the password).
    board_token: SecretStr | None = None
    board_refresh: float = Field(default=15.0, ge=1, le=600)  # seconds between the page's polls

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: object) -> object:
        if not isinstance(v, str):  # `listen: 9464` reads as a number: say what is wanted, not "a string"
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9464")
        return v

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class LogSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "journal", "json"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ITSM_", env_nested_delimiter="__", extra="forbid")

    servicenow: ServiceNowSettings | None = None
    sources: list[ServiceNowSettings] = Field(default_factory=list)
    slack: SlackSettings
    routes: list[Route] = Field(default_factory=list)
    alertmanager: AlertmanagerSettings | None = None
    state: StateSettings = Field(default_factory=StateSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    hooks: HooksSettings = Field(default_factory=HooksSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    #: (key, path) of every secret read from a file, for :meth:`warnings` (set by :func:`load_settings`)
    _secret_files: list[tuple[str, Path]] = PrivateAttr(default_factory=list)
    #: (key, config file) of every secret written in the config file itself, for :meth:`warnings`
    _inline_secrets: list[tuple[str, Path]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _sources(self) -> Settings:
        names = [s.name for s in self.all_sources]
        if not names:
            raise ValueError("servicenow (or sources) is required: at least one ITSM to poll")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique (servicenow.name / sources[].name): {dup}")
        if self.hooks.enabled and not self.hook_sources:
            raise ValueError(
                "hooks.enabled needs a source with a hook_secret (servicenow.hook_secret or "
                "sources[].hook_secret, or a systemd credential named <source>-hook-secret)"
            )
        return self

    @property
    def hook_sources(self) -> list[ServiceNowSettings]:
        """The sources that take hints (those with a ``hook_secret``)."""
        return [s for s in self.all_sources if s.hook_secret is not None]

    @property
    def all_sources(self) -> list[ServiceNowSettings]:
        return ([self.servicenow] if self.servicenow else []) + list(self.sources)

    @property
    def primary_source(self) -> ServiceNowSettings:
        """The first source (``servicenow``, else ``sources[0]``): where one source is assumed."""
        return self.all_sources[0]

    @property
    def all_channels(self) -> list[str]:
        """Every channel a window can be routed to, the default first."""
        chans = [self.slack.channel, *(c for r in self.routes for c in r.channels)]
        return list(dict.fromkeys(chans))

    def secrets(self) -> Iterator[str]:
        """Every secret value these settings hold, wherever it sits (each ``SecretStr``: the sources'
        passwords and OAuth client secrets, the Slack token, Alertmanager's credentials, ...): what
        the logs and the commands' output redact (``connector.cli.main`` registers them, once)."""
        for _, value in secret_items(self):
            yield value

    def warnings(self) -> list[str]:
        """What is allowed but unsafe, to log at every start: clear-text http opted into with
        ``allow_insecure_http``, secrets written in the config file, secret files that the group or
        others can read."""
        out = []
        for i, sn in enumerate(self.all_sources):
            if sn.allow_insecure_http and is_cleartext_remote(sn.url):
                key = (
                    "servicenow" if sn is self.servicenow else f"sources.{i - (self.servicenow is not None)}"
                )
                out.append(insecure_notice(key, sn.url, f"the password of source {sn.name!r}"))
        hooks = self.hooks
        if hooks.enabled and not hooks.tls and not is_loopback(hooks.address[0]):
            bearer = [s.name for s in self.hook_sources if s.hook_auth == "bearer"]
            out.append(
                f"hooks: listening on {hooks.listen} over plain HTTP: hints can be read on the way"
                + (f", and the bearer tokens of {', '.join(bearer)} with them" if bearer else "")
                + "; set hooks.tls_cert_file/tls_key_file or put a TLS proxy in front"
            )
        if self.slack.allow_insecure_http and is_cleartext_remote(self.slack.base_url):
            out.append(insecure_notice("slack", self.slack.base_url, "the Slack token"))
        am = self.alertmanager
        if am is not None and am.allow_insecure_http and am.has_credentials and is_cleartext_remote(am.url):
            out.append(insecure_notice("alertmanager", am.url, "the Alertmanager credentials"))
        for key, path in self._inline_secrets:
            out.append(inline_notice(key, path))
        for key, path in self._secret_files:
            try:
                mode = path.stat().st_mode
            except OSError:
                continue
            if mode & 0o044:
                out.append(
                    f"{key}: {path} is readable by its group or by others (mode {mode & 0o777:04o}): "
                    f"chmod 600 {path}"
                )
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the file


def _format_errors(err: ValidationError, environ: Mapping[str, str]) -> list[str]:
    from_env = _environment_keys(environ)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        var = next((v for k, v in from_env.items() if key == k or key.startswith(k + ".")), None)
        lines.append(f"{key}: {msg} (from the environment variable {var})" if var else f"{key}: {msg}")
    return lines


def _environment_keys(environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted config key -> the ``ITSM_*`` variable setting it (``slack.channel``: ITSM_SLACK__CHANNEL)."""
    return {
        name[len(ENV_PREFIX) :].lower().replace("__", "."): name
        for name in environ
        if name.startswith(ENV_PREFIX) and "__" in name
    }


def _unknown_sections(environ: Mapping[str, str]) -> list[str]:
    """``ITSM_SLAK__CHANNEL``: a variable shaped like an override of a section that does not exist
    (pydantic-settings would ignore it silently)."""
    sections = set(Settings.model_fields)
    return [
        f"environment variable {var}: no config section {key.split('.')[0]!r} "
        f"(sections: {', '.join(sorted(sections))})"
        for key, var in sorted(_environment_keys(environ).items())
        if key.split(".")[0] not in sections
    ]


def _yaml_problem(path: Path, e: yaml.YAMLError) -> str:
    """The parser's reason and where: 'found character '\\t' that cannot start any token'."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    reason = " ".join(str(p) for p in (getattr(e, "context", None), getattr(e, "problem", None)) if p)
    return f"config file {path} is not valid YAML{where}" + (f": {reason}" if reason else "")


def load_settings(
    path: Path | None, env: Mapping[str, str] | None = None, *, secrets_required: bool = True
) -> Settings:
    """Load, validate and resolve secrets; raise :class:`ConfigError` listing every problem by key.
    ``secrets_required=False`` is for commands that only read the state database (``status``,
    ``windows``): a secret that is not set is then no problem (one that is set must still be readable)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found: {MISSING_CONFIG_HINT}", problems=[]) from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}", problems=[]) from None
        except yaml.YAMLError as e:
            raise ConfigError(_yaml_problem(path, e), problems=[]) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping of keys", problems=[])
        data = loaded
    inline = inline_secrets(data)  # before the files fill in theirs
    files: list[tuple[str, Path]] = []
    problems = resolve_secrets(data, env, files)
    if not secrets_required:
        problems = [p for p in problems if ": not set (set " not in p]
    if (
        not data.get("servicenow")
        and not data.get("sources")
        and not any(k.startswith("ITSM_SERVICENOW__") for k in os.environ)
    ):
        problems.insert(0, "servicenow: Field required (or a list of sources)")
    problems += _unknown_sections(os.environ)
    try:
        settings = Settings(**data)
    except ValidationError as e:
        found = _format_errors(e, os.environ)
        found = [p for p in found if not p.startswith("(top level): servicenow (or sources)")]
        raise ConfigError(
            f"invalid configuration in {path or 'environment'}", problems=found + problems
        ) from None
    for key, value in secret_items(settings):  # given inline or from the environment
        bad = secret_shape(value, token=is_token(key))
        if bad:
            problems.append(f"{key}: {bad}")
    if problems:
        raise ConfigError(f"invalid configuration in {path or 'environment'}", problems=problems)
    settings._secret_files = files
    settings._inline_secrets = [(key, path) for key in inline if path is not None]
    return settings
