"""A stand-in Slack client for ``--dry-run``: prints what would be sent, sends nothing."""

from __future__ import annotations

import itertools
import json
from typing import Any, TextIO


class PrintingSlackClient:
    base_url = "(dry run)"
    dry_run = True

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._ts = itertools.count(1)

    def api_call(
        self,
        method: str,
        *,
        json: dict[str, Any] | None = None,
        http_verb: str = "POST",
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        args = json or params or {}
        if method.startswith("conversations."):
            return {"ok": True, "messages": [], "has_more": False}
        ts = args.get("ts") or f"{next(self._ts)}.000000"
        where = f"thread {args['thread_ts']}" if args.get("thread_ts") else f"message {ts}"
        print(f"--- {method} {args.get('channel')} ({where})", file=self.out)
        print(args.get("text", ""), file=self.out)
        return {"ok": True, "channel": args.get("channel"), "ts": ts}

    def auth_test(self) -> dict[str, Any]:
        return {"ok": True, "user": "dry-run"}

    def conversations_info(self, channel: str) -> dict[str, Any]:
        return {"ok": True, "channel": {"id": channel, "name": channel, "is_member": True}}

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj, ensure_ascii=False)
