"""Configuration: one YAML file, environment overrides, secrets from env, files or systemd credentials.

Precedence, highest first: environment (``ITSM_SLACK__CHANNEL=C123``), the YAML file, defaults.
Secrets never live in the model as plain strings (``SecretStr``): their repr is ``**********``.
Every problem in a file is reported at once, each named by its dotted key (:func:`load_settings`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.errors import ConfigError
from connector.sinks.silence_plan import AlertmanagerSettings
from connector.source.mapping import SourceMapping

DEFAULT_CONFIG_PATH = Path("/etc/itsm-connector/config.yaml")


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
    mapping: SourceMapping = Field(default_factory=SourceMapping)

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

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {v!r} (e.g. Asia/Seoul, UTC)") from None
        return v

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


class StateSettings(_Strict):
    path: Path = Field(default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY", ".")) / "state.db")


class HealthSettings(_Strict):
    enabled: bool = False
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
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

    servicenow: ServiceNowSettings
    slack: SlackSettings
    alertmanager: AlertmanagerSettings | None = None
    state: StateSettings = Field(default_factory=StateSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)

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


#: (config section, secret key, file key, systemd credential name, required)
SECRETS = [
    ("servicenow", "password", "password_file", "servicenow-password", True),
    ("slack", "token", "token_file", "slack-token", True),
    ("alertmanager", "password", "password_file", "alertmanager-password", False),
    ("alertmanager", "bearer_token", "bearer_token_file", "alertmanager-bearer-token", False),
]


def _resolve_secrets(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Fill secrets into the raw config (before validation, so missing ones are listed with every
    other problem): the value itself (file or ``ITSM_*`` env), else ``<key>_file``, else
    ``$CREDENTIALS_DIRECTORY/<credential>``. Returns problems, each named by its key."""
    problems = []
    for section, key, file_key, credential, required in SECRETS:
        prefix = f"ITSM_{section.upper()}__"
        sect = data.get(section)
        if sect is None and any(k.startswith(prefix) for k in (*env, *os.environ)):
            sect = data[section] = {}  # the section comes from the environment alone
        if not isinstance(sect, dict):
            continue  # a missing section is reported by validation (Alertmanager is optional)
        file = sect.pop(file_key, None) or os.environ.get(prefix + file_key.upper())
        from_env = env.get(prefix + key.upper()) or os.environ.get(prefix + key.upper())
        if sect.get(key) or from_env:
            continue  # given directly: it wins over a file
        path = Path(file) if file else None
        if path is None and env.get("CREDENTIALS_DIRECTORY"):
            candidate = Path(env["CREDENTIALS_DIRECTORY"]) / credential
            path = candidate if (required or candidate.exists()) else None
        if path is None:
            if required:
                problems.append(
                    f"{section}.{key}: not set (set {prefix}{key.upper()}, {section}.{file_key}, "
                    f"or a systemd credential named {credential!r})"
                )
            continue
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            problems.append(f"{section}.{file_key}: cannot read {path}: {e.strerror}")
            continue
        if not text:
            problems.append(f"{section}.{file_key}: {path} is empty")
            continue
        sect[key] = text
    return problems


def _format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"{key}: {msg}")
    return lines


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Load, validate and resolve secrets; raise :class:`ConfigError` listing every problem by key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found", problems=[]) from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}", problems=[]) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}", problems=[]) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a mapping of keys", problems=[])
        data = loaded
    problems = _resolve_secrets(data, env)
    try:
        settings = Settings(**data)
    except ValidationError as e:
        raise ConfigError(
            f"invalid configuration in {path or 'environment'}", problems=_format_errors(e) + problems
        ) from None
    if problems:
        raise ConfigError(f"invalid configuration in {path or 'environment'}", problems=problems)
    return settings
