"""A Web API call as the Slack simulator's methods see it: decoded parameters (``Params``), the answer
body (``Body``), the error that ends a call (``SlackCallError``), and reading parameters the way Slack
does (strings, flags, limits, JSON arguments, ts bounds, pagination cursors).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

Params = dict[str, Any]
Body = dict[str, Any]

DEFAULT_LIMIT = 100
MAX_LIMIT = 999


class SlackCallError(Exception):
    """A Web API call answered with ``{"ok": false, "error": <error>}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def opt_str(params: Params, key: str) -> str | None:
    value = params.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise SlackCallError("invalid_arguments")


def flag(params: Params, key: str) -> bool:
    return params.get(key) in (True, 1, "1", "true", "True")


def page_limit(params: Params) -> int:
    raw = params.get("limit")
    if raw in (None, "", 0, "0"):
        return DEFAULT_LIMIT
    try:
        return max(1, min(MAX_LIMIT, int(raw)))
    except (TypeError, ValueError):
        raise SlackCallError("invalid_limit") from None


def json_arg(params: Params, key: str) -> Any:
    """Blocks and metadata arrive as JSON values in JSON bodies and as JSON strings in form bodies."""
    value = params.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise SlackCallError(f"invalid_{key}_format") from None
    return value


def parse_ts(ts: str) -> tuple[int, int]:
    """``"1700000000.000042"`` → ``(1700000000, 42)``; raises ValueError when it is not a ts."""
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(ts)
    return int(seconds), int(fraction.ljust(6, "0") or "0")


def ts_bound(params: Params, key: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = opt_str(params, key)
    if not raw:
        return default
    try:
        return parse_ts(raw)
    except ValueError:
        raise SlackCallError(f"invalid_ts_{key}") from None


def encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackCallError("invalid_cursor") from None
    if not decoded.startswith("next_ts:"):
        raise SlackCallError("invalid_cursor")
    return decoded.removeprefix("next_ts:")
