"""Where a window's messages are delivered: a :class:`Target`. Pure.

Today a target is a Slack channel; the kind leaves room for others. The state database stores a
target as ``"<kind>:<id>"`` (``slack:C0ACME``): :meth:`Target.parse` and ``str()`` are the only two
places that know that spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["slack"]
KINDS: tuple[Kind, ...] = ("slack",)


@dataclass(frozen=True, order=True)
class Target:
    kind: Kind
    id: str

    @classmethod
    def slack(cls, channel: str) -> Target:
        return cls("slack", channel)

    @classmethod
    def parse(cls, text: str) -> Target:
        kind, sep, ident = text.partition(":")
        if not sep or not ident or kind not in KINDS:
            raise ValueError(f"not a delivery target: {text!r} (expected slack:<channel id>)")
        return cls("slack", ident)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"
