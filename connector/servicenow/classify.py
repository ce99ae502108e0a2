"""What a ServiceNow answer means: HTTP errors, unreadable bodies and transport failures, classified.

Functions over ``requests`` responses and exceptions, shared by the Table API adapter
(:mod:`connector.servicenow.client`) and the OAuth token client (:mod:`connector.servicenow.oauth`); no
pysnow here. They return the error for the caller to redact and raise::

    SourceError
    ├── SourceAuthError ....... 401, 403: says what to fix (never the password)
    ├── SourceUnavailable ..... 408, 429, 5xx, timeouts, refused or reset connections (``Retry-After``)
    └── SourceBadResponse ..... an HTML page or broken JSON where JSON was due, 404, other 4xx

v1's 404 "No Record found" is not an error: :func:`no_record_found` tells it apart (an empty page).
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict
from requests.utils import parse_header_links

from connector.errors import SourceAuthError, SourceBadResponse, SourceError, SourceUnavailable
from connector.retry_after import retry_after_seconds

TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def http_error(resp: requests.Response, what: str, username: str, *, oauth: bool) -> SourceError:
    """The error for an HTTP error answer about ``what``, not yet redacted."""
    status, said = resp.status_code, error_text(resp)
    said = f"HTTP {status}: {said}" if said else f"HTTP {status}"
    user = f"user '{username}'"
    error: SourceError
    if status == 401 and oauth:
        error = SourceAuthError(
            f"ServiceNow rejected the OAuth token of {user} ({said}): "
            "check servicenow.username / the password and the OAuth client"
        )
    elif status == 401:
        error = SourceAuthError(
            f"ServiceNow rejected the credentials for {user} ({said}): "
            "check servicenow.username / the password"
        )
    elif status == 403:
        error = SourceAuthError(
            f"ServiceNow {user} may not read {what} ({said}): grant it read access "
            "(for example the itil role) or fix the table's ACLs"
        )
    elif status in (408, 429) or status >= 500:
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
        kind = "rate limit reached" if status == 429 else "unavailable"
        wait = f"; it asks to retry after {retry_after:.0f}s" if retry_after is not None else ""
        error = SourceUnavailable(f"ServiceNow {kind} for {what} ({said}){wait}", retry_after=retry_after)
    elif status == 404:
        error = SourceBadResponse(
            f"ServiceNow answered {said} for {what}: check servicenow.url, "
            "servicenow.table and servicenow.api_version"
        )
    else:
        error = SourceBadResponse(f"ServiceNow refused the request for {what} ({said})")
    return error


def json_body(http: requests.Response) -> Any:
    """The JSON of a streamed answer, read in one call: ``requests`` reads a body 10 KB at a time, and
    each read gives up the GIL, which the poll's other thread (busy committing) then holds for up to
    the switch interval (5 ms); a page of 500 records is ~70 such reads. Decoded as ``Response.json``
    does: with the declared charset (bad bytes replaced), else by JSON's own detection."""
    body = http.raw.read(decode_content=True)
    encoding = http.encoding
    if encoding is None:
        return json.loads(body)
    try:
        text = str(body, encoding, errors="replace")
    except LookupError:  # an unknown charset: as requests does
        text = str(body, errors="replace")
    return json.loads(text)


def no_record_found(resp: requests.Response) -> bool:
    return resp.status_code == 404 and error_text(resp).startswith("No Record found")


def error_text(resp: requests.Response) -> str:
    """``message: detail`` of the ServiceNow (or OAuth) error envelope; "" when the body has none."""
    try:
        body = resp.json()
    except ValueError:
        return "an HTML page" if "html" in resp.headers.get("Content-Type", "") else ""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        parts = [str(err.get(k) or "") for k in ("message", "detail")]
        return ": ".join(p for p in parts if p)[:300]
    if isinstance(err, str):  # OAuth: {"error": "...", "error_description": "..."}
        return ": ".join(p for p in (err, str(body.get("error_description") or "")) if p)[:300]
    return ""


def bad_body(content_type: str, err: Exception | None, what: str, base_url: str) -> str:
    if "html" in content_type.lower():
        return (
            f"{what} answered with an HTML page instead of JSON: the instance may be hibernating or "
            f"asking for a login (wake it up at {base_url}); not treated as 'no changes'"
        )
    reason = f" ({type(err).__name__}: {str(err)[:120]})" if err else ""
    return f"{what} answered with truncated or invalid JSON{reason}; not treated as 'no changes'"


def transport_error(e: BaseException, what: str, timeout: float) -> SourceUnavailable:
    if isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return SourceUnavailable(f"{what} did not answer within {timeout:g}s")
    text = str(e)
    match = re.search(
        r"\[Errno -?\d+\][^'\")]*|Connection (?:refused|reset|aborted)[^'\")]*|"
        r"Remote end closed connection[^'\")]*|IncompleteRead[^'\")]*",
        text,
    )
    reason = match.group(0).strip(" .,") if match else type(e).__name__
    return SourceUnavailable(f"cannot reach {what}: {reason}")


def has_next_link(headers: CaseInsensitiveDict[str]) -> bool:
    link = headers.get("Link")
    return link is not None and any(item.get("rel") == "next" for item in parse_header_links(link))


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
