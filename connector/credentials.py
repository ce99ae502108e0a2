"""Secrets: where the config loader finds them, what shape they must have, and every one a settings
model holds. Pure but for reading the secret files.

Each secret is the value itself (inline, or an ``ITSM_*`` environment variable), else
``$CREDENTIALS_DIRECTORY/<credential>`` when systemd loaded it (``LoadCredential=``), else
``<key>_file``. The example config names the files the README creates, and the unit loads the same
files as credentials: outside systemd the files are read, under it the credentials. A file holding a second
line, a control character or (for a token) inner whitespace is a config error naming the file, never
its content: such a value would otherwise reach an HTTP header, and the library's error would quote it.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

#: (config section, secret key, file key, systemd credential name, required)
SECRETS = [
    ("servicenow", "password", "password_file", "servicenow-password", True),
    ("slack", "token", "token_file", "slack-token", True),
    ("alertmanager", "password", "password_file", "alertmanager-password", False),
    ("alertmanager", "bearer_token", "bearer_token_file", "alertmanager-bearer-token", False),
    ("health", "board_token", "board_token_file", "board-token", False),
    ("state", "password", "password_file", "state-password", False),
    ("servicenow", "hook_secret", "hook_secret_file", "servicenow-hook-secret", False),
]
#: the hook listener's TLS files, when not set: systemd credentials of these names
TLS_CREDENTIALS = {"tls_cert_file": "hook-tls-cert", "tls_key_file": "hook-tls-key"}


def secret_items(value: object, key: str = "") -> Iterator[tuple[str, str]]:
    """``(dotted key, value)`` of every non-empty ``SecretStr`` in a settings model, at any depth."""
    if isinstance(value, SecretStr):
        if value.get_secret_value():
            yield key, value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_items(getattr(value, name), f"{key}.{name}" if key else name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from secret_items(item, f"{key}.{i}")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from secret_items(item, f"{key}.{k}")


def secret_shape(value: str, *, token: bool) -> str | None:
    """Why ``value`` cannot be a secret as it is (never quoting it), or None. A second line or a
    control character would end up in an HTTP header; a token has no whitespace either (a password
    may hold a space)."""
    if "\n" in value or "\r" in value:
        return "holds more than one line: put the secret alone on one line"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "holds a control character"
    if any(c.isspace() and (token or c != " ") for c in value):
        return "holds whitespace inside the secret" + ("" if token else " other than a plain space")
    return None


#: secret key -> where it belongs instead of the config file (a sibling key, else the environment)
_BELONGS = {"password": "password_file", "token": "token_file", "bearer_token": "bearer_token_file"}


def inline_secrets(data: dict[str, Any]) -> list[str]:
    """Dotted keys of the secrets written in the config file itself (``slack.token: xoxb-…``): the
    config is often world-readable, copied into tickets and pasted into chats; a secret belongs in a
    credential file. Read from the raw file, before the secret files fill in theirs."""
    found = []
    for section, key, *_ in SECRETS:
        sect = data.get(section)
        if isinstance(sect, dict) and sect.get(key):
            found.append(f"{section}.{key}")
    for i, src in enumerate(data.get("sources") or []):
        if isinstance(src, dict) and src.get("password"):
            found.append(f"sources.{i}.password")
    for where in ["servicenow", *(f"sources.{i}" for i in range(len(data.get("sources") or [])))]:
        sect = _at(data, where)
        if isinstance(sect, dict) and sect.get("oauth_client_secret"):
            found.append(f"{where}.oauth_client_secret")
    return found


def inline_notice(key: str, path: Path) -> str:
    """The warning for a secret written in the config file: which key, and where it belongs."""
    section, _, name = key.rpartition(".")
    env = f"ITSM_{key.upper().replace('.', '__')}"
    instead = f"{section}.{_BELONGS[name]} (a file of mode 0600), " if name in _BELONGS else ""
    return (
        f"{key}: written inline in {path}: anyone who can read the config can use it; "
        f"move it to {instead}a systemd credential, or {env}"
    )


def _at(data: dict[str, Any], where: str) -> object:
    node: object = data
    for part in where.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def is_token(key: str) -> bool:
    return key.endswith(("token", "secret"))


def resolve_secrets(data: dict[str, Any], env: Mapping[str, str], files: list[tuple[str, Path]]) -> list[str]:
    """Fill secrets into the raw config (before validation, so missing ones are listed with every
    other problem). Returns problems, each named by its key; ``files`` gets ``(key, path)`` of every
    secret read from a file."""
    problems = []
    for i, src in enumerate(data.get("sources") or []):
        if isinstance(src, dict):
            name = str(src.get("name") or f"source{i}")
            problems += _resolve_one(
                src, f"sources.{i}", "password", "password_file", f"{name}-password", True, env, files
            )
            problems += _resolve_one(
                src,
                f"sources.{i}",
                "hook_secret",
                "hook_secret_file",
                f"{name}-hook-secret",
                False,
                env,
                files,
            )
    _tls_credentials(data, env)
    for section, key, file_key, credential, required in SECRETS:
        prefix = f"ITSM_{section.upper()}__"
        sect = data.get(section)
        if section == "servicenow" and sect is None and data.get("sources"):
            continue  # several sources: each resolved its own (above)
        if sect is None and any(k.startswith(prefix) for k in (*env, *os.environ)):
            sect = data[section] = {}  # the section comes from the environment alone
        if isinstance(sect, dict):  # a missing section is reported by validation (Alertmanager is optional)
            problems += _resolve_one(sect, section, key, file_key, credential, required, env, files)
    return problems


def _tls_credentials(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """``hooks.tls_cert_file`` / ``tls_key_file`` not set: systemd credentials ``hook-tls-cert`` and
    ``hook-tls-key``, when both are there."""
    hooks, directory = data.get("hooks"), env.get("CREDENTIALS_DIRECTORY")
    if not isinstance(hooks, dict) or not directory or any(hooks.get(k) for k in TLS_CREDENTIALS):
        return
    paths = {key: Path(directory) / name for key, name in TLS_CREDENTIALS.items()}
    if all(p.exists() for p in paths.values()):
        hooks.update({key: str(p) for key, p in paths.items()})


def _resolve_one(
    sect: dict[str, Any],
    where: str,
    key: str,
    file_key: str,
    credential: str,
    required: bool,
    env: Mapping[str, str],
    files: list[tuple[str, Path]],
) -> list[str]:
    """One secret: the value itself (inline or ``ITSM_*`` env), else ``$CREDENTIALS_DIRECTORY/<credential>``
    if it exists, else ``<key>_file``."""
    env_key = f"ITSM_{where.upper().replace('.', '__')}__"
    file = sect.pop(file_key, None) or os.environ.get(env_key + file_key.upper())
    if sect.get(key) or env.get(env_key + key.upper()) or os.environ.get(env_key + key.upper()):
        return []  # given directly: it wins over a file
    path = Path(file) if file else None
    if env.get("CREDENTIALS_DIRECTORY"):
        # systemd handed it over (LoadCredential=): it wins over <key>_file, typically the very file
        # it was loaded from, which the service's DynamicUser may not read itself
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / credential
        if candidate.exists() or (path is None and required):
            path = candidate
    if path is None:
        if not required:
            return []
        return [
            f"{where}.{key}: not set (set {env_key}{key.upper()}, {where}.{file_key}, "
            f"or a systemd credential named {credential!r})"
        ]
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        return [f"{where}.{file_key}: cannot read {path}: {e.strerror}"]
    except UnicodeDecodeError:
        return [f"{where}.{file_key}: {path} is not UTF-8 text"]
    if not text:
        return [f"{where}.{file_key}: {path} is empty"]
    bad = secret_shape(text, token=is_token(key))
    if bad:
        return [f"{where}.{file_key}: {path} {bad}"]  # the file, never its content
    sect[key] = text
    files.append((f"{where}.{file_key}", path))
    return []
