"""The ServiceNow simulator's push: what the Business Rule of ``contrib/servicenow/
itsm_connector_hint.js`` does on a real instance. Every insert or update of a ``change_request``
(and every insert, update or delete of a ``task_ci`` row) sends a hint to the connector's hook URL,
signed (``X-ITSM-Timestamp`` in ms, ``X-ITSM-Signature: v1=<Base64 HMAC>``) or with a bearer token,
from a sender thread, after the record is saved (an async rule).

Faults, each decided per hint by a seeded random generator: ``drop`` (never sent), ``delay`` (sent
that many seconds late), ``duplicate`` (the same request sent twice, bytes and signature included,
as a retrying network would), ``reorder`` (held back and sent after the next one). What happened to
each hint is recorded in :attr:`HintSender.log`.
"""

from __future__ import annotations

import json
import queue
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from connector.hooks.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

#: seconds a reordered hint waits for a next one to overtake it, at most
HOLD = 0.3


@dataclass
class SentHint:
    """One hint: what it said, and what became of it (``status`` 0: dropped, or no answer)."""

    hint: dict[str, str]
    queued_at: float  # time.monotonic() when the record was saved
    status: int = 0
    dropped: bool = False
    duplicated: bool = False
    sent_at: float | None = None


class HintSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        auth: str = "hmac",
        table: str = "change_request",
        drop: float = 0.0,
        delay: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        seed: int = 0,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url, self.secret, self.auth, self.table = url, secret, auth, table
        self.drop, self.delay, self.duplicate, self.reorder = drop, delay, duplicate, reorder
        self._rng = random.Random(seed)
        self._tls, self._clock = tls, clock
        self.log: list[SentHint] = []
        self._unsent = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[SentHint | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="snow-sim-hints", daemon=True)
        self._thread.start()

    def changed(self, table: str, record: dict[str, str]) -> None:
        """A record was saved (or a ``task_ci`` row deleted): queue its hint, if its table has a rule."""
        if table == self.table:
            hint = {"table": table, "sys_id": record["sys_id"]}
            hint.update({k: record.get(k, "") for k in ("sys_updated_on", "sys_mod_count")})
        elif table == "task_ci" and record.get("task"):
            hint = {"table": "task_ci", "sys_id": record["sys_id"], "task": record["task"]}
        else:
            return
        sent = SentHint(hint, time.monotonic())
        with self._lock:
            self.log.append(sent)
            self._unsent += 1
        self._queue.put(sent)

    def idle(self) -> bool:
        """Every hint so far has been sent (or dropped)."""
        with self._lock:
            return self._unsent == 0

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    # -- the sender thread -------------------------------------------------------------------------
    def _run(self) -> None:
        held: SentHint | None = None  # reordered: sent after the next one, or after HOLD alone
        while True:
            try:
                item = self._queue.get(timeout=HOLD if held is not None else None)
            except queue.Empty:
                self._send(held)
                held = None
                continue
            if item is None:
                self._send(held)
                return
            late = item.queued_at + self.delay - time.monotonic()
            if late > 0:
                time.sleep(late)
            if self._rng.random() < self.drop:
                item.dropped = True
                self._done()
            elif held is None and self._rng.random() < self.reorder:
                held = item
            else:
                self._send(item)
                self._send(held)
                held = None

    def _send(self, item: SentHint | None) -> None:
        if item is None:
            return
        body = json.dumps(item.hint, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "ServiceNow/1.0"}
        if self.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.secret}"
        else:
            stamp = str(int(self._clock() * 1000))
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
        item.duplicated = self._rng.random() < self.duplicate
        for _ in range(2 if item.duplicated else 1):
            item.status = self._post(body, headers)
        item.sent_at = time.monotonic()
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._unsent -= 1

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._tls) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)
        except OSError:  # what a Business Rule's execute() would log: no retry, the poll catches up
            return 0
