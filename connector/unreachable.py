"""Why a connection failed, in words an operator can act on: DNS, refused, TLS, timeout. Pure.

Libraries wrap the cause (``urllib.error.URLError(reason=ConnectionRefusedError(...))``,
``requests.ConnectionError(MaxRetryError(NewConnectionError(...)))``); the exception's class name
("URLError") tells nobody what to fix. :func:`why_unreachable` walks the chain to the first cause
it recognises.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit


def why_unreachable(exc: BaseException, url: str, timeout: float | None = None) -> str:
    """``exc`` as one reason naming the host: "DNS: cannot resolve slack.com (…)", "connection
    refused by 127.0.0.1:8080", "TLS handshake failed with …", "no answer within 15 s from …"."""
    parts = urlsplit(url)
    host = parts.hostname or url
    where = f"{host}:{parts.port}" if parts.port else host
    causes = list(_causes(exc))

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((c for c in causes if isinstance(c, kind)), None)

    if (dns := first(socket.gaierror)) is not None:
        return f"DNS: cannot resolve {host} ({getattr(dns, 'strerror', None) or dns})"
    if (cert := first(ssl.SSLCertVerificationError)) is not None:
        return f"TLS: the certificate of {where} is not trusted ({getattr(cert, 'verify_message', cert)})"
    if (tls := first(ssl.SSLError)) is not None:
        reason = getattr(tls, "reason", None) or tls
        return f"TLS handshake failed with {where} ({reason}): does it speak https?"
    if first((TimeoutError, socket.timeout)) is not None:
        within = f" within {timeout:g} s" if timeout else ""
        return f"no answer{within} from {where} (timeout)"
    if first(ConnectionRefusedError) is not None:
        return f"connection refused by {where}: nothing listens there"
    if first(ConnectionResetError) is not None:
        return f"connection reset by {where}"
    other = next((c for c in causes if isinstance(c, OSError) and c.strerror), None)
    if other is not None:
        return f"cannot connect to {where}: {getattr(other, 'strerror', other)}"
    return f"cannot connect to {where}: {type(exc).__name__}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps: ``reason`` (urllib, urllib3), ``__cause__``, ``__context__``,
    and exception arguments (requests wraps urllib3's error as its first argument)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [getattr(e, "reason", None), e.__cause__, e.__context__, *getattr(e, "args", ())]
        todo.extend(n for n in nested if isinstance(n, BaseException))
