"""ServiceNow Table API through pysnow: keyset paging, and every failure classified once, at the boundary.

The only module that imports pysnow. One attempt per call: retries belong to the daemon, which reads
``retryable`` / ``retry_after`` from :mod:`connector.errors`. Classification (the rules for HTTP
answers and transport failures are in :mod:`connector.servicenow.classify`):

* 401, 403 → :class:`SourceAuthError`, saying what to fix (never the password);
* 408, 429, 5xx, timeouts, refused or reset connections → :class:`SourceUnavailable` (``Retry-After``);
* HTTP 200 that is not the complete JSON answer (a hibernating instance's HTML login page, truncated
  JSON, the ``{"error": ..., "status": "failure"}`` envelope), other 4xx, a pagination loop →
  :class:`SourceBadResponse`. Never "no changes";
* v1's 404 "No Record found" for an empty list → an empty page.

Requests ask for raw values (``sysparm_display_value=false``: UTC date-times), bare reference values
(``sysparm_exclude_reference_link=true``) and only the fields needed. A page is read whole and parsed
with the standard library's ``json`` (pysnow's stream parser, pure-Python ijson, costs more CPU than
everything else a first sync does); it is handed out only once it has been read completely.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pysnow
import pysnow.exceptions
import requests
from requests.auth import HTTPBasicAuth

from connector.errors import ConfigError, SourceBadResponse, SourceError, SourceUnavailable
from connector.inflight import InFlight, TrackedAdapter
from connector.servicenow.classify import (
    TRANSPORT_ERRORS,
    bad_body,
    has_next_link,
    http_error,
    int_or_none,
    json_body,
    no_record_found,
    transport_error,
)
from connector.servicenow.lookback import lookback_start
from connector.servicenow.normalize import raw_value
from connector.servicenow.oauth import OAuthToken
from connector.servicenow.query import (
    ChangePage,
    Cursor,
    build_change_query,
    build_membership_query,
    format_sn_datetime,
    next_cursor,
    record_cursor,
)

log = logging.getLogger(__name__)

ID_CHUNK = 100  # sys_ids per IN query: keeps the URL well under common 8 KiB limits
TASK_CI_TABLE = "task_ci"
TASK_CI_FIELDS = ["task", "ci_item.name", "sys_updated_on", "sys_id"]
_TABLE_RE = re.compile(r"[a-z0-9_]+")
_API_VERSION_RE = re.compile(r"v[0-9]+")
_RAW_PARAMS = {
    "sysparm_display_value": "false",
    "sysparm_exclude_reference_link": "true",
    "sysparm_suppress_pagination_header": "false",
}


@dataclass(frozen=True)
class TableAnswer:
    """One answer of the Table API: its records and what its headers say about the rest."""

    records: list[dict[str, Any]]
    total: int | None  # X-Total-Count: rows matching the query, counted before ACLs
    has_next: bool  # Link rel="next", or offset + limit < total


class ServiceNowSource:
    def __init__(
        self,
        *,
        url: str,
        username: str,
        password: str,
        table: str = "change_request",
        api_version: str = "v2",
        page_size: int = 500,
        timeout: float = 30,
        oauth_client_id: str | None = None,
        oauth_client_secret: str | None = None,
        session: requests.Session | None = None,
        updated_field: str = "sys_updated_on",
        id_field: str = "sys_id",
        in_flight: InFlight | None = None,
    ) -> None:
        self.base_url, host, use_ssl = _split_url(url)
        if not _TABLE_RE.fullmatch(table):
            raise ConfigError(f"servicenow.table: {table!r} is not a table name (e.g. change_request)")
        if api_version and not _API_VERSION_RE.fullmatch(api_version):
            raise ConfigError(f"servicenow.api_version: {api_version!r} is not an API version (v1, v2)")
        if page_size < 1:
            raise ConfigError(f"servicenow.page_size: must be at least 1, got {page_size}")
        self.table, self.page_size, self.username = table, page_size, username
        self._password, self._timeout = password, timeout
        self._updated_field, self._id_field = updated_field, id_field
        self._base_path = f"/api/now/{api_version}" if api_version else "/api/now"
        self._owns_session = session is None
        self._session = session or requests.Session()
        #: every request under way and since when (the daemon sees a hung source before its timeout)
        self.in_flight = in_flight or InFlight()
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, TrackedAdapter(self.in_flight))
        self._oauth: OAuthToken | None = None
        if oauth_client_id or oauth_client_secret:
            if not (oauth_client_id and oauth_client_secret):
                raise ConfigError("servicenow.oauth_client_id and oauth_client_secret must be set together")
            self._oauth = OAuthToken(
                session=self._session,
                base_url=self.base_url,
                username=username,
                password=password,
                client_id=oauth_client_id,
                client_secret=oauth_client_secret,
                timeout=timeout,
                redact=self._redact,
                error_for=self._http_error,
            )
        else:
            # As UTF-8 bytes (RFC 7617): requests would encode str as Latin-1, and fail on anything else.
            self._session.auth = HTTPBasicAuth(username.encode(), password.encode())
        self._client = pysnow.Client(host=host, use_ssl=use_ssl, session=self._session)
        self._client.parameters.add_custom(dict(_RAW_PARAMS))
        self._session.headers["User-Agent"] = "itsm-connector"
        self._resources: dict[str, pysnow.Resource] = {}

    # -- public API ---------------------------------------------------------------------------------
    def fetch_changes(
        self,
        filter: str,
        cursor: Cursor | None,
        fields: list[str],
        *,
        signpost: datetime,
        max_pages: int = 1000,
        lookback: timedelta = timedelta(0),
    ) -> Iterator[ChangePage]:
        """Pages of records changed after ``cursor``, each with the cursor to commit with it. With a
        ``lookback``, the first request starts that long before ``signpost`` when that is earlier
        than the cursor (:func:`~connector.servicenow.lookback.lookback_start`); the cursors to
        commit still never go back."""
        fields = _fields_including(fields, self._updated_field, self._id_field)
        current = cursor
        start = lookback_start(cursor, signpost, lookback)
        pages = self._keyset_pages(self.table, filter, start, fields, max_pages, self._keys)
        for records, last, pages_left in pages:
            current = next_cursor(current, last, signpost)
            yield ChangePage(records, current, pages_left)

    def fetch_by_ids(
        self, sys_ids: Sequence[str], fields: list[str], filter: str = ""
    ) -> list[dict[str, Any]]:
        """The records among ``sys_ids`` that exist and match ``filter`` (absent ones: deleted or left)."""
        out: list[dict[str, Any]] = []
        fields = _fields_including(fields, self._id_field)
        for chunk in _chunks(sys_ids):
            membership = _query_or_config_error(build_membership_query, filter, chunk, self._id_field)
            query = f"{membership}^ORDERBY{self._id_field}"
            offset = 0
            while True:
                page = self.fetch_page(query, fields, offset=offset)
                out += page.records
                if not page.has_next or offset > len(chunk):
                    break
                offset += self.page_size
        return out

    def fetch_task_cis(
        self, *, task_ids: Sequence[str] | None = None, updated_since: Cursor | None = None
    ) -> list[tuple[str, str, Cursor]]:
        """``task_ci`` rows as ``(task sys_id, CI name, row cursor)``: of ``task_ids``, and/or after
        ``updated_since``. The CI name is ``""`` when the row's CI has no name (or was deleted)."""
        if task_ids is not None:
            filters = [build_membership_query("", chunk, "task") for chunk in _chunks(task_ids)]
        else:
            filters = [""]
        rows: list[tuple[str, str, Cursor]] = []
        keys = ("sys_updated_on", "sys_id")
        for filter in filters:
            for records, _, _ in self._keyset_pages(
                TASK_CI_TABLE, filter, updated_since, TASK_CI_FIELDS, 1000, keys
            ):
                for r in records:
                    c = record_cursor(r)
                    rows.append((raw_value(r.get("task")) or "", raw_value(r.get("ci_item.name")) or "", c))
        return rows

    def check(self, filter: str = "") -> None:
        """One cheap read of the table with the poll's own query (``filter`` included): raises what
        :meth:`fetch_changes` would, saying what to fix."""
        query = _query_or_config_error(build_change_query, filter, None, *self._keys)
        self.fetch_page(query, [self._id_field], limit=1)

    def unknown_fields(self, fields: Sequence[str]) -> list[str] | None:
        """Those of ``fields`` that one row of the table does not show (the Table API leaves out a
        field the table does not have, or that this user may not read); None when no row is readable."""
        if not fields:
            return []
        page = self.fetch_page("", list(dict.fromkeys([*fields, self._id_field])), limit=1)
        if not page.records:
            return None
        return [f for f in fields if f not in page.records[0]]

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    # -- paging -------------------------------------------------------------------------------------
    @property
    def _keys(self) -> tuple[str, str]:
        return (self._updated_field, self._id_field)

    def _keyset_pages(
        self,
        table: str,
        filter: str,
        cursor: Cursor | None,
        fields: list[str],
        max_pages: int,
        keys: tuple[str, str],
    ) -> Iterator[tuple[list[dict[str, Any]], Cursor | None, int | None]]:
        """Yield ``(records, cursor of the last record or None, pages left or None)``. A short or empty
        page is not the end: ACLs filter after the limit, so an empty page moves the offset and a short
        one the keyset."""
        keyset, offset, known_total = cursor, 0, None
        for _ in range(max_pages):
            query = _query_or_config_error(build_change_query, filter, keyset, *keys)
            page = self.fetch_page(query, fields, offset=offset, table=table)
            total = page.total if page.total is not None else known_total  # v1's 404 carries no headers
            last = _check_order(page.records, keyset, keys, self.base_url, table)
            more = page.has_next or (total is not None and offset + self.page_size < total)
            left: int | None = 0
            if more:  # what the instance counted after this page, in pages (at least the one it links)
                rest = None if total is None else total - offset - self.page_size
                left = None if rest is None else max(1, -(-rest // self.page_size))
            yield page.records, last, left
            if not more:
                return
            if last is None:
                offset, known_total = offset + self.page_size, total
            else:
                keyset, offset, known_total = last, 0, None
        log.warning(
            "%s: stopped after %d pages of %s; the next cycle continues from the cursor",
            self.base_url,
            max_pages,
            table,
        )

    def fetch_page(
        self,
        query: str,
        fields: list[str],
        *,
        offset: int = 0,
        limit: int | None = None,
        table: str | None = None,
    ) -> TableAnswer:
        """One GET of ``table`` (default: the configured one), classified. Exposed for tools and tests."""
        table = table or self.table
        limit = limit or self.page_size
        what = f"table '{table}' at {self.base_url}"
        if self._oauth is not None:
            self._session.headers["Authorization"] = self._oauth.header()
        resp = None
        try:
            resp = self._resource(table).get(
                query=query, limit=limit, offset=offset, fields=list(fields), stream=True
            )
            # pysnow's own parser (``resp.all()``) is ijson's pure-Python backend: ~50x slower than
            # the standard library on a page of records. Read the body and parse it here instead.
            http = resp._response
            http.raise_for_status()
            records = _result(json_body(http))
            headers = http.headers
        except requests.HTTPError as e:
            if e.response is None:
                raise SourceUnavailable(f"ServiceNow request failed: {type(e).__name__}") from e
            if no_record_found(e.response):
                records, headers = [], e.response.headers
            else:
                raise self._http_error(e.response, what) from None
        except (UnicodeDecodeError, ValueError) as e:
            content_type = str(resp.headers.get("Content-Type", "")) if resp is not None else ""
            raise SourceBadResponse(bad_body(content_type, e, what, self.base_url)) from None
        except pysnow.exceptions.ResponseError as e:
            raise SourceBadResponse(
                self._redact(f"ServiceNow returned an error for {what}: {e.message} ({e.detail})")
            ) from None
        except pysnow.exceptions.PysnowException as e:
            raise SourceBadResponse(f"unexpected answer from {what}: {type(e).__name__}: {e}") from None
        except TRANSPORT_ERRORS as e:
            raise transport_error(e, what, self._timeout) from e
        if any(not isinstance(r, dict) for r in records):
            raise SourceBadResponse(
                f"unexpected answer from {what}: 'result' holds something other than records"
            )
        total = int_or_none(headers.get("X-Total-Count"))
        has_next = has_next_link(headers) or (total is not None and offset + limit < total)
        log.debug(
            "GET %s offset=%d limit=%d: %d records (total %s)", table, offset, limit, len(records), total
        )
        return TableAnswer(records, total, has_next)

    def _resource(self, table: str) -> pysnow.Resource:
        if table not in self._resources:
            res = self._client.resource(
                api_path=f"/table/{table}", base_path=self._base_path, timeout=self._timeout
            )
            self._resources[table] = res
        return self._resources[table]

    # -- classification -----------------------------------------------------------------------------
    def _http_error(self, resp: requests.Response, what: str) -> SourceError:
        if resp.status_code == 401 and self._oauth is not None:
            self._oauth.forget()  # the next call logs in again
        error = http_error(resp, what, self.username, oauth=self._oauth is not None)
        error.message = self._redact(error.message)
        error.args = (error.message,)
        return error

    def _redact(self, message: str) -> str:
        """Belt and braces: a server that echoes the password must not put it in our messages."""
        for secret in (self._password, *(self._oauth.secrets() if self._oauth else ())):
            if secret and len(secret) >= 4:
                message = message.replace(secret, "********")
        return message


# -- helpers ------------------------------------------------------------------------------------------
def _split_url(url: str) -> tuple[str, str, bool]:
    """``https://acme.service-now.com`` → (base URL, host[:port], use_ssl); anything else is a ConfigError."""
    example = "it must look like https://acme.service-now.com (or http://127.0.0.1:8081 for a simulator)"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"servicenow.url is not a valid URL: {example}") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "servicenow.url must not contain credentials: use servicenow.username and the password"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"servicenow.url {url!r}: {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"servicenow.url {url!r} has a path: give only scheme and host; {example}")
    return f"{parts.scheme}://{parts.netloc}", parts.netloc, parts.scheme == "https"


def _check_order(
    records: list[dict[str, Any]], keyset: Cursor | None, keys: tuple[str, str], base_url: str, table: str
) -> Cursor | None:
    """The last record's cursor, after checking the instance honoured the keyset and the ORDERBY.

    Only ``updated_on`` order and exact repeats are checked: the instance's collation decides how
    ``sys_id`` values sort, and it may not be Python's.
    """
    last = keyset
    for i, r in enumerate(records):
        try:
            c = record_cursor(r, *keys)
        except ValueError as e:
            raise SourceBadResponse(f"{table} at {base_url}: {e} (check servicenow.mapping.fields)") from None
        if last is not None and c.updated_on < last.updated_on:
            where = "the cursor" if i == 0 else "the previous record"
            raise SourceBadResponse(
                f"pagination loop detected in {table} at {base_url}: record {c.sys_id} "
                f"({format_sn_datetime(c.updated_on)}) comes before {where}; the instance ignored the "
                "cursor condition or the ORDERBY"
            )
        last = c
    if records and last == keyset:
        raise SourceBadResponse(
            f"pagination loop detected in {table} at {base_url}: the page after {keyset} ends at the same "
            "record, so the next request would repeat it"
        )
    return last if records else None


def _query_or_config_error(build: Any, *args: Any) -> str:
    try:
        return str(build(*args))
    except ValueError as e:
        raise ConfigError(f"servicenow.filter: {e}") from None


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(i for i in ids if i))
    return [unique[i : i + ID_CHUNK] for i in range(0, len(unique), ID_CHUNK)]


def _fields_including(fields: list[str], *needed: str) -> list[str]:
    return list(dict.fromkeys([*fields, *needed])) if fields else []


def _result(body: Any) -> list[Any]:
    """The records of a Table API answer (``result``: a list, or one record); raises the pysnow error
    the caller classifies for the error envelope or an answer without ``result``."""
    if isinstance(body, dict):
        result = body.get("result")
        if isinstance(result, list):
            return result
        if isinstance(result, dict):
            return [result]
        if isinstance(body.get("error"), dict):
            raise pysnow.exceptions.ResponseError(body["error"])
    raise pysnow.exceptions.MissingResult("the expected 'result' key is missing from the answer")
