"""The hint's authentication: an HMAC-SHA256 over ``<timestamp>.<body>``, or a bearer token. Pure.

Headers (what the Business Rule in ``contrib/servicenow/itsm_connector_hint.js`` sends)::

    X-ITSM-Timestamp: 1700000000000          Unix time in milliseconds (seconds are accepted too)
    X-ITSM-Signature: v1=<MAC>               HMAC-SHA256(secret, timestamp + "." + body)

The MAC may be Base64 (what ServiceNow's ``CertificateEncryption.generateMac`` returns) or hex; a
``v1=`` or ``sha256=`` prefix is optional. The key is the secret's UTF-8 bytes (ServiceNow takes it
Base64-wrapped: ``gs.base64Encode(secret)``). Comparisons are constant-time (``hmac.compare_digest``).
A timestamp further than the replay window from the connector's clock, either way, is refused; a
signature seen before within the window is a replay (:class:`connector.hooks.limits.ReplayGuard`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re

TIMESTAMP_HEADER = "X-ITSM-Timestamp"
SIGNATURE_HEADER = "X-ITSM-Signature"
#: a timestamp above this is in milliseconds (1e11 s is the year 5138)
_MS_ABOVE = 1e11
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def mac(secret: str, timestamp: str, body: bytes) -> bytes:
    """The raw HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``."""
    return hmac.new(secret.encode(), timestamp.encode("ascii") + b"." + body, hashlib.sha256).digest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-ITSM-Signature`` value, Base64 as ServiceNow writes it (for the simulator and tests)."""
    return "v1=" + base64.b64encode(mac(secret, timestamp, body)).decode("ascii")


def timestamp_seconds(value: str) -> float | None:
    """The header's Unix time in seconds, or None when it is not a plain number."""
    if not value or len(value) > 20 or not value.isascii() or not value.strip().isdigit():
        return None
    number = float(value.strip())
    return number / 1000 if number > _MS_ABOVE else number


def decode_mac(value: str) -> bytes | None:
    """The 32 bytes a signature header carries (Base64 or hex, optional prefix), or None."""
    text = value.strip()
    for prefix in ("v1=", "sha256="):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if not text.isascii() or len(text) > 100:
        return None
    if _HEX.fullmatch(text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def check_signature(
    secret: str, timestamp: str, signature: str, body: bytes, *, now: float, window: float
) -> str | None:
    """None when the request is signed with ``secret`` within ``window`` seconds of ``now``; else
    why not: ``"unauthorized"`` (missing or wrong) or ``"expired"`` (outside the window)."""
    given = decode_mac(signature)
    when = timestamp_seconds(timestamp)
    if given is None or when is None:
        return "unauthorized"
    if not hmac.compare_digest(mac(secret, timestamp.strip(), body), given):
        return "unauthorized"
    if not math.isfinite(when) or abs(now - when) > window:
        return "expired"
    return None


def check_bearer(secret: str, authorization: str) -> str | None:
    """None when ``Authorization: Bearer <secret>``; else ``"unauthorized"``."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "unauthorized"
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        return "unauthorized"
    return None
