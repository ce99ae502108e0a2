"""A flood of badly signed hints, from a process of its own (so its CPU is not the connector's):
``python -m bench.push_flood URL RATE SECONDS`` POSTs RATE requests a second for SECONDS, each on a
new connection as ServiceNow's would be, and prints ``{"sent": n, "seconds": s, "status": {...}}``."""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def flood(url: str, rate: float, seconds: float) -> dict[str, object]:
    parts = urlsplit(url)
    body = b'{"table":"change_request","sys_id":"0123456789abcdef0123456789abcdef"}'
    statuses: Counter[int] = Counter()
    start = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        stamp = str(int(time.time() * 1000))
        headers = {"Content-Type": "application/json", "X-ITSM-Timestamp": stamp,
                   "X-ITSM-Signature": "v1=" + "A" * 43 + "="}  # fmt: skip
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
        try:
            conn.request("POST", parts.path, body=body, headers=headers)
            reply = conn.getresponse()
            reply.read()
            statuses[reply.status] += 1
        except OSError:
            statuses[0] += 1
        finally:
            conn.close()
    return {"sent": total, "seconds": round(time.monotonic() - start, 2), "status": dict(statuses)}


if __name__ == "__main__":
    print(json.dumps(flood(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))))
