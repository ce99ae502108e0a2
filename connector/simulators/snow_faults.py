"""Faults the ServiceNow simulator can inject, and the canned answers of those that replace the
normal one: ServiceNow's error envelope for 429, 500, 503, 401 and 403 (``Retry-After`` when asked
for; 429 always has one), a proxy's HTML page for 502, a hibernating instance's login page with
HTTP 200 for ``html``. ``truncated`` (half the normal answer), ``slow`` (the normal answer after
``delay``), ``hang`` (the request read and held unanswered until ``ServiceNowSimulator.release``:
an instance that accepts connections and never answers) and ``drop`` (the socket closed
unanswered) alter the normal answer instead: the simulator applies them in
``ServiceNowSimulator._handle``.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.simulators.snow_http import Reply, envelope

FAULTS = frozenset({"429", "500", "502", "503", "401", "403", "html", "truncated", "slow", "hang", "drop"})

_HIBERNATING_PAGE = (
    "<html><head><title>ServiceNow - Instance Hibernating</title></head><body>"
    "<h1>Your instance is hibernating</h1><p>Sign in to the ServiceNow Developer Program to wake it up.</p>"
    '<form action="/login.do" method="post"><input name="user_name"/><input name="user_password" '
    'type="password"/></form></body></html>'
)
_BAD_GATEWAY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
)


@dataclass
class Fault:
    kind: str
    count: int
    path_contains: str
    retry_after: int | None
    delay: float


def fault_reply(fault: Fault) -> Reply | None:
    """The canned answer of a status-like fault; None for faults that alter the normal answer."""
    headers = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
    if fault.kind == "429":
        headers = headers or [("Retry-After", "1")]
        return envelope(429, "Too Many Requests", "Rate limit exceeded", headers)
    if fault.kind == "500":
        return envelope(500, "Internal Server Error", "Simulated fault", headers)
    if fault.kind == "502":
        return Reply(502, _BAD_GATEWAY_PAGE.encode(), "text/html;charset=UTF-8", headers)
    if fault.kind == "503":
        return envelope(503, "Service Unavailable", "Simulated fault", headers)
    if fault.kind == "401":
        return envelope(401, "User Not Authenticated", "Required to provide Auth information")
    if fault.kind == "403":
        return envelope(403, "User Not Authorized", "Failed API level ACL Validation")
    if fault.kind == "html":
        return Reply(200, _HIBERNATING_PAGE.encode(), "text/html;charset=UTF-8")
    return None
