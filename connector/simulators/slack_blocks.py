"""Block Kit in the Slack simulator: what Slack would reject (``check_blocks``, ``check_metadata``) and
what a reader sees of blocks (``render_blocks``).
"""

from __future__ import annotations

import copy
from typing import Any

from connector.simulators.slack_call import SlackCallError

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
MAX_BLOCK_ID_CHARS = 255
BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "actions", "rich_text"})


def _text_len(obj: Any) -> int | None:
    """Length of a text object's text, or None when it is not a text object."""
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return len(obj["text"])
    return None


def block_problem(block: Any) -> str | None:
    """Why Slack would reject this block, or None. Covers the limits our renderer can hit."""
    if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
        return "unknown block type"
    if len(str(block.get("block_id", ""))) > MAX_BLOCK_ID_CHARS:
        return "block_id too long"
    kind = block["type"]
    if kind == "header":
        text = block.get("text")
        length = _text_len(text)
        if length is None or not isinstance(text, dict) or text.get("type") != "plain_text":
            return "header text must be plain_text"
        if not 1 <= length <= MAX_HEADER_CHARS:
            return f"header text must be 1..{MAX_HEADER_CHARS} chars"
    elif kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            return "section needs text or fields"
        if text is not None and not 1 <= (_text_len(text) or 0) <= MAX_SECTION_CHARS:
            return f"section text must be 1..{MAX_SECTION_CHARS} chars"
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                return f"section fields must be a list of at most {MAX_FIELDS}"
            if any(not 1 <= (_text_len(f) or 0) <= MAX_FIELD_CHARS for f in fields):
                return f"section field must be 1..{MAX_FIELD_CHARS} chars"
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return "context needs 1..10 elements"
    return None


def check_blocks(blocks: Any) -> list[dict[str, Any]]:
    if not isinstance(blocks, list):
        raise SlackCallError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS or any(block_problem(b) for b in blocks):
        raise SlackCallError("invalid_blocks")
    return copy.deepcopy(blocks)


def check_metadata(metadata: Any) -> dict[str, Any]:
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackCallError("invalid_metadata_format")
    return copy.deepcopy(metadata)


def _rich_text(obj: Any) -> str:
    if isinstance(obj, dict):
        if isinstance(obj.get("text"), str):
            return str(obj["text"])
        return _rich_text(obj.get("elements", []))
    if isinstance(obj, list):
        return "".join(_rich_text(e) for e in obj)
    return ""


def render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    """What a reader sees of header, section, context and rich_text blocks, one entry per line group."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header" or kind == "section":
            if _text_len(block.get("text")) is not None:
                lines.append(block["text"]["text"])
            lines.extend(f["text"] for f in block.get("fields") or [] if _text_len(f) is not None)
        elif kind == "context":
            parts = [e["text"] for e in block.get("elements", []) if _text_len(e) is not None]
            lines.append(" | ".join(parts))
        elif kind == "rich_text":
            lines.append(_rich_text(block.get("elements", [])))
    return [line for line in lines if line]
