"""Which URLs credentials may travel to in clear text. Pure: no I/O.

Plain ``http://`` is fine to a loopback address (a simulator, a local Alertmanager, a TLS-terminating
sidecar on the same host); to any other host a password or token would cross the network readable by
anyone on the path. The config refuses that unless its section sets ``allow_insecure_http: true``,
and the daemon then warns at every start (:func:`insecure_notice`).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_cleartext_remote(url: str) -> bool:
    """True for an ``http://`` URL whose host is not loopback: what crosses it can be read on the way."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback(parts.hostname or "")


def refused(url: str, what: str) -> str:
    """The config error for a clear-text URL that was not opted into (its section names the key)."""
    host = urlsplit(url).hostname or url
    return (
        f"{what} would go to {host} over plain http: use https://, or set allow_insecure_http: true "
        "in this section if the network path is trusted"
    )


def insecure_notice(where: str, url: str, what: str) -> str:
    """The warning logged at every start while ``allow_insecure_http`` is in use."""
    host = urlsplit(url).hostname or url
    return (
        f"{where}: allow_insecure_http is set: sending {what} to {host} over plain http, readable on the way"
    )
