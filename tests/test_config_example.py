"""``config.example.yaml`` documents every key of the settings model, with its real default, and loads.

The keys come from the pydantic models themselves (:class:`connector.config.Settings` and every model
it holds, Alertmanager's included) plus the ``*_file`` keys the loader reads for secrets, so a key
added to the code without a line in the example fails here. A key may appear commented out
(``# allow_insecure_http: false``). A value shown that differs from the default must say so: the
comment above it names the default ("Default: false").
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from connector.config import Settings, load_settings
from connector.credentials import SECRETS

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"
SECTIONS = tuple(Settings.model_fields)


@dataclass(frozen=True)
class Key:
    section: str
    path: str  # dotted, "[]" for the items of a list or a mapping
    name: str
    field: FieldInfo | None  # None for the secret-file keys the loader reads

    @property
    def single(self) -> bool:
        """Not inside a list or a mapping: the example shows its one value."""
        return "[]" not in self.path


def models_in(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The models an annotation holds, and whether they sit in a list or a mapping."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return models_in(args[0])
    many = origin in (list, dict, tuple)
    found: list[type[BaseModel]] = []
    for arg in args[1:] if origin is dict else args:
        inner, nested = models_in(arg)
        found += inner
        many = many or nested
    if origin not in (list, dict, tuple, typing.Union, types.UnionType):
        return [], False
    return found, many


def walk(model: type[BaseModel], section: str, prefix: str, seen: set[type[BaseModel]]) -> Iterator[Key]:
    seen = seen | {model}
    hints = typing.get_type_hints(model, include_extras=True)  # forward references resolved
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield Key(section, path, name, field)
        inner, many = models_in(hints[name])
        for sub in inner:
            if sub in seen or sub is Settings:
                continue  # sources: the same keys as servicenow
            yield from walk(sub, section, path + ("[]" if many else ""), seen)


#: model fields that are not written as keys: ``states`` is the mapping itself (``StateMap``)
NOT_KEYS = {"servicenow.mapping.states.values"}


def all_keys() -> list[Key]:
    keys: list[Key] = []
    walked: set[type[BaseModel]] = {Settings}
    for section, field in Settings.model_fields.items():
        keys.append(Key(section, section, section, field))
        models, many = models_in(field.annotation)
        for sub in models:
            if sub not in walked:  # sources: "each with the same keys" as servicenow
                prefix = section + ("[]" if many else "")
                keys += (k for k in walk(sub, section, prefix, walked) if k.path not in NOT_KEYS)
                walked.add(sub)
    paths = {k.path for k in keys}
    for section, _, file_key, _, _ in SECRETS:
        if f"{section}.{file_key}" not in paths:
            keys.append(Key(section, f"{section}.{file_key}", file_key, None))
    return keys


def sections(text: str) -> dict[str, list[str]]:
    """The example's lines by top-level key; a section that is all comments counts too."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = re.match(r"(?:# ?)?(\w+):", line)
        if m and m.group(1) in SECTIONS:
            current = m.group(1)
        elif line.startswith("# ----"):
            current = None
        if current is not None:
            out.setdefault(current, []).append(line)
    return out


LINES = sections(EXAMPLE.read_text(encoding="utf-8"))


def key_line(key: Key) -> tuple[int, str] | None:
    """The first line of the key's section that sets it (or would, uncommented)."""
    pattern = re.compile(rf"""^(\s*(?:#\s*)?(?:-\s+)?)["']?{key.name}["']?:(.*)$""")
    for i, line in enumerate(LINES.get(key.section, [])):
        if pattern.match(line):
            return i, line
    return None


@pytest.mark.parametrize("key", all_keys(), ids=lambda k: k.path)
def test_every_key_is_in_the_example(key: Key) -> None:
    assert key.section in LINES, f"config.example.yaml has no {key.section}: section"
    text = "\n".join(LINES[key.section])
    assert re.search(rf"""(^|[\s{{,#-])["']?{key.name}["']?:""", text, flags=re.M), (
        f"{key.path} is not in config.example.yaml"
    )


def default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return PydanticUndefined
    return field.default


def as_yaml(value: Any) -> str:
    if value == "":
        return '""'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "value"):  # an enum
        value = value.value
    return str(yaml.safe_dump(value, default_flow_style=True)).removesuffix("\n...\n").strip()


SHOWN = [
    k
    for k in all_keys()
    if k.single
    and k.field is not None
    and default_of(k.field) is not PydanticUndefined
    and not models_in(k.field.annotation)[0]
]


@pytest.mark.parametrize("key", SHOWN, ids=lambda k: k.path)
def test_a_value_shown_is_the_default_or_says_what_the_default_is(key: Key) -> None:
    assert key.field is not None
    found = key_line(key)
    assert found is not None, f"{key.path} is not in config.example.yaml"
    i, line = found
    commented = line.lstrip().startswith("#")
    raw = line.split(":", 1)[1].split(" #", 1)[0].strip()
    default = default_of(key.field)
    if not raw or (commented and default is None):
        return  # "# password: never here", or an illustration of an optional key
    shown = TypeAdapter(key.field.annotation).validate_python(yaml.safe_load(raw))
    if shown == default:
        return
    above = []
    for prev in reversed(LINES[key.section][:i]):
        if not prev.lstrip().startswith("#") or re.match(r"\s*#\s*[a-z_]+:", prev):
            break
        above.append(prev)
    comment = " ".join(reversed(above))
    assert not commented, f"{key.path}: commented out, it shows {raw}, but the default is {default!r}"
    assert re.search(r"\bdefault\b", comment, flags=re.I), (
        f"{key.path}: the example sets {raw}; the comment above it must name the default ({as_yaml(default)})"
    )
    if default is not None:
        assert as_yaml(default) in comment, (
            f"{key.path}: the comment must name the default {as_yaml(default)}"
        )


def test_the_example_loads(tmp_path: Path) -> None:
    """As installed: secrets from systemd credentials, one file per credential the example needs."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in ("servicenow-password", "slack-token", "globex-password", "alertmanager-password"):
        (creds / name).write_text("s3cret-value\n")
    settings = load_settings(EXAMPLE, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert [s.name for s in settings.all_sources] == ["acme", "globex"]


def test_the_walk_finds_nested_and_alertmanager_keys() -> None:
    """Guards the walker: keys several models deep, in lists, in mappings, in Alertmanager's section."""
    paths = {k.path for k in all_keys()}
    assert {
        "servicenow.mapping.fields.updated_on",
        "routes[].mention.on",
        "slack.channels[].reminder_minutes",
        "alertmanager.ci_map[].is_equal",
        "alertmanager.overrun_cap",
        "slack.token_file",
        "health.enabled",
    } <= paths
