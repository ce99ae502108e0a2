"""A ServiceNow Table API simulator on loopback, for the demo, integration tests and benchmarks.

It answers ``GET /api/now[/v1|/v2]/table/<table>[/<sys_id>]`` the way a real instance does
(protocols.md A.1-A.3), including the parts clients get wrong:

* v1 answers an empty result with 404, v2 and the unversioned path with ``200 {"result": []}``;
* ``sysparm_limit``/``sysparm_offset`` are applied *before* ACLs (``hidden``), so pages come back short;
* a query condition on an unknown field is ignored (``invalid_query_returns_no_rows`` switches that off);
* display values show date-times in the API user's zone (America/Los_Angeles) and US format;
* ``X-Total-Count`` and ``Link`` headers, and the error envelope ``{"error": {...}, "status": "failure"}``.

Push: :meth:`ServiceNowSimulator.enable_hints` makes every insert and update send a hint to the
connector's hook listener, as the Business Rule does (:mod:`connector.simulators.snow_hooks`).

Faults (:mod:`connector.simulators.snow_faults`) are queued with :meth:`ServiceNowSimulator.inject`
and consumed first-in first-out by matching requests. Every request is recorded in
:attr:`ServiceNowSimulator.requests`. The encoded-query grammar lives in
:mod:`connector.simulators.snow_query`; the record helpers tests import from here (``make_change``,
``format_snow_datetime``) in :mod:`connector.simulators.snow_fixtures`; the schema, dot-walking and
how a record is shown in :mod:`connector.simulators.snow_records`; the loopback HTTP server in
:mod:`connector.simulators.snow_http`.

Run standalone: ``python -m connector.simulators.servicenow --port 8081``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from connector.simulators.snow_faults import FAULTS, Fault, fault_reply
from connector.simulators.snow_fixtures import format_snow_datetime, make_change
from connector.simulators.snow_hooks import HintSender
from connector.simulators.snow_http import Reply, Server, dump, envelope
from connector.simulators.snow_query import parse_query, select
from connector.simulators.snow_records import (
    SYSTEM_FIELDS,
    TABLE_COLUMNS,
    RecordView,
    check_strings,
    truthy,
)

__all__ = ["RequestLogEntry", "ServiceNowSimulator", "format_snow_datetime", "main", "make_change"]

_TABLE_PATH = re.compile(r"/api/now(?:/(?P<version>v1|v2))?/table/(?P<table>[^/]+)(?:/(?P<sys_id>[^/]+))?/?")
_NOT_FOUND = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")


@dataclass(frozen=True)
class RequestLogEntry:
    method: str
    path: str  # URL path without the query string
    params: dict[str, str]  # query parameters; the last one wins when a name repeats
    status: int  # 0 when the "drop" fault closed the connection without an answer
    bytes: int = field(default=0, compare=False)  # the answer's body, as sent (for benchmarks)


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, ""))
    except ValueError:
        return default


class ServiceNowSimulator:
    """In-memory ServiceNow instance serving the Table API over HTTP on loopback."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "secret",
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username = username
        self.password = password
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(timezone.utc))
        self.host = host
        self.port = port
        self.bearer_tokens: set[str] = set()
        self.hidden: Callable[[str, dict[str, str]], bool] | None = None
        self.invalid_query_returns_no_rows = False
        self.requests: list[RequestLogEntry] = []
        self._refresh_tokens: set[str] = set()
        self._lock = threading.RLock()  # data, faults and tokens; re-entrant so `hidden` may call records()
        self._log_lock = threading.Lock()
        self._tables: dict[str, dict[str, dict[str, str]]] = {name: {} for name in TABLE_COLUMNS}
        self._columns: dict[str, set[str]] = {
            name: {*SYSTEM_FIELDS, *columns} for name, columns in TABLE_COLUMNS.items()
        }
        self._view = RecordView(self._tables, self._columns, lambda: self.url)
        self._faults: list[Fault] = []
        self._held: list[threading.Event] = []  # requests held by the "hang" fault, until release()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.hints: HintSender | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("ServiceNowSimulator.url is only known after start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ServiceNowSimulator:
        if self._server is not None:
            raise RuntimeError("ServiceNowSimulator already started")
        self._server = Server((self.host, self.port), self._handle)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="snow-sim", daemon=True
        )
        self._thread.start()
        return self

    def enable_hints(self, url: str, secret: str, **options: Any) -> HintSender:
        """From now on, hint ``url`` on every insert and update (``options``: see :class:`HintSender`)."""
        if self.hints is not None:
            self.hints.close()
        self.hints = HintSender(url, secret, **options)
        return self.hints

    def stop(self) -> None:
        if self.hints is not None:
            self.hints.close()
            self.hints = None
        self.release()
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ServiceNowSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- data --------------------------------------------------------------------------------------

    def put_record(self, table: str, record: dict[str, str]) -> dict[str, str]:
        """Insert, or replace the record with the same sys_id; returns the stored copy."""
        check_strings(record)
        with self._lock:
            rows = self._tables.setdefault(table, {})
            stored = dict(record)
            stored["sys_id"] = sys_id = record.get("sys_id") or uuid.uuid4().hex
            old = rows.get(sys_id)
            now = format_snow_datetime(self.clock())
            stored.setdefault("sys_created_on", old.get("sys_created_on", now) if old else now)
            stored.setdefault("sys_updated_on", now)
            stored.setdefault("sys_mod_count", str(int(old.get("sys_mod_count") or 0) + 1) if old else "0")
            rows[sys_id] = stored
            self._columns.setdefault(table, set(SYSTEM_FIELDS)).update(stored)
        if self.hints is not None:
            self.hints.changed(table, dict(stored))
        return dict(stored)

    def update_record(self, table: str, sys_id: str, **fields: str) -> dict[str, str]:
        """Change some fields of an existing record (KeyError if absent); returns the stored copy."""
        check_strings(fields)
        if fields.get("sys_id", sys_id) != sys_id:
            raise ValueError("update_record cannot change sys_id")
        with self._lock:
            stored = self._tables.get(table, {})[sys_id]
            stored.update(fields)
            if "sys_updated_on" not in fields:
                stored["sys_updated_on"] = format_snow_datetime(self.clock())
            if "sys_mod_count" not in fields:
                stored["sys_mod_count"] = str(int(stored.get("sys_mod_count") or 0) + 1)
            self._columns[table].update(fields)
            stored = dict(stored)
        if self.hints is not None:
            self.hints.changed(table, stored)
        return stored

    def delete_record(self, table: str, sys_id: str) -> None:
        """Remove a record; KeyError if absent."""
        with self._lock:
            gone = self._tables.get(table, {}).pop(sys_id)
        if self.hints is not None and table == "task_ci":  # the rule on task_ci runs on delete too
            self.hints.changed(table, gone)

    def records(self, table: str) -> list[dict[str, str]]:
        """Copies of the table's records in insertion order ([] for an unknown table)."""
        with self._lock:
            return [dict(row) for row in self._tables.get(table, {}).values()]

    # -- faults and observation -----------------------------------------------------------------

    def inject(
        self,
        fault: str,
        *,
        count: int = 1,
        path_contains: str = "",
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue ``fault`` for the next ``count`` requests whose path-and-query contains ``path_contains``."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(fault, count, path_contains, retry_after, delay))

    def reset_requests(self) -> None:
        with self._log_lock:
            self.requests.clear()

    def _log(self, entry: RequestLogEntry) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def pending_faults(self) -> int:
        """Injected faults not yet served (a fault is taken when its request arrives)."""
        with self._lock:
            return sum(f.count for f in self._faults)

    def held(self) -> int:
        """Requests the "hang" fault holds unanswered right now."""
        with self._lock:
            return len(self._held)

    def release(self) -> None:
        """Let every request held by the "hang" fault go on (it is then answered normally)."""
        with self._lock:
            held, self._held = self._held, []
        for event in held:
            event.set()

    def _hold(self) -> None:
        event = threading.Event()
        with self._lock:
            self._held.append(event)
        event.wait()

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in target:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- HTTP semantics (transport-free: request in, Reply out) -------------------------------------

    def _handle(self, method: str, target: str, authorization: str | None, body: bytes) -> Reply | None:
        """The reply to one HTTP request, or None to close the socket without answering."""
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        fault = self._take_fault(target)
        if fault is not None and fault.kind == "drop":
            self._log(RequestLogEntry(method, parts.path, params, 0))
            return None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "hang":
            self._hold()
        reply = fault_reply(fault) if fault is not None else None
        if reply is None:
            try:
                reply = self._respond(method, target, authorization, body)
            except Exception as exc:  # a simulator bug must show up in the test, not hang the client
                reply = envelope(500, "Simulator error", repr(exc))
        if fault is not None and fault.kind == "truncated":
            reply = replace(reply, body=reply.body[: len(reply.body) // 2])
        self._log(RequestLogEntry(method, parts.path, params, reply.status, len(reply.body)))
        return reply

    def _respond(self, method: str, target: str, authorization: str | None, body: bytes) -> Reply:
        parts = urlsplit(target)
        if method == "POST" and parts.path == "/oauth_token.do":
            return self._oauth_token(dict(parse_qsl(body.decode("utf-8", "replace"))))
        if not self._authorized(authorization):
            return envelope(401, "User Not Authenticated", "Required to provide Auth information")
        match = _TABLE_PATH.fullmatch(parts.path)
        if match is None:
            return envelope(400, "Requested URI does not represent any resource", None)
        if method != "GET":
            return envelope(405, "Method not Supported", f"{method} is not supported by the simulator")
        params_list = parse_qsl(parts.query, keep_blank_values=True)
        table, sys_id = match["table"], match["sys_id"]
        with self._lock:
            if table not in self._tables:
                return envelope(400, f"Invalid table {table}", None)
            if sys_id is not None:
                return self._get_one(table, sys_id, dict(params_list))
            return self._get_list(table, match["version"], parts.path, params_list)

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            with self._lock:
                return credentials.strip() in self.bearer_tokens
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # as bytes: compare_digest refuses str with non-ASCII characters (a Korean password was a 500)
        same_user = secrets.compare_digest(user.encode(), self.username.encode())
        return same_user and secrets.compare_digest(password.encode(), self.password.encode())

    def _oauth_token(self, form: dict[str, str]) -> Reply:
        grant = form.get("grant_type")
        with self._lock:
            if grant == "password":
                ok = bool(form.get("client_id")) and bool(form.get("client_secret"))
                ok = ok and form.get("username") == self.username and form.get("password") == self.password
            elif grant == "refresh_token":
                ok = form.get("refresh_token", "") in self._refresh_tokens
            else:
                ok = False
            if not ok:
                return Reply(401, dump({"error_description": "access_denied", "error": "server_error"}))
            access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            self.bearer_tokens.add(access)
            self._refresh_tokens.add(refresh)
        token = {"access_token": access, "refresh_token": refresh, "scope": "useraccount",
                 "token_type": "Bearer", "expires_in": 1800}  # fmt: skip
        return Reply(200, dump(token))

    def _get_one(self, table: str, sys_id: str, params: dict[str, str]) -> Reply:
        row = self._tables[table].get(sys_id)
        if row is None or (self.hidden is not None and self.hidden(table, row)):
            return envelope(404, *_NOT_FOUND)
        render = self._view.renderer(table, params)
        return Reply(200, dump({"result": render(row)}))

    def _get_list(
        self, table: str, version: str | None, path: str, params_list: list[tuple[str, str]]
    ) -> Reply:
        params = dict(params_list)
        offset = _int_param(params, "sysparm_offset", 0)
        if offset < 0:
            return envelope(400, f"offset is {offset}", "Negative offset is not supported")
        limit = _int_param(params, "sysparm_limit", 10000)
        limit = limit if limit > 0 else 10000
        query_text = params.get("sysparm_query") or "^".join(
            f"{name}={value}" for name, value in params_list if not name.startswith("sysparm_")
        )
        rows = select(
            list(self._tables[table].values()),
            parse_query(query_text),
            value_of=self._view.value_of,
            is_field=lambda name: self._view.is_field(table, name),
            invalid_returns_no_rows=self.invalid_query_returns_no_rows,
        )
        page = rows[offset : offset + limit]
        if self.hidden is not None:
            hidden = self.hidden
            page = [row for row in page if not hidden(table, row)]
        if not page and version == "v1":
            return envelope(404, *_NOT_FOUND)
        headers = []
        if not truthy(params.get("sysparm_no_count")):
            headers.append(("X-Total-Count", str(len(rows))))
        one_page = offset == 0 and len(rows) <= limit
        if not one_page and not truthy(params.get("sysparm_suppress_pagination_header")):
            headers.append(("Link", self._link_header(path, params_list, offset, limit, len(rows))))
        render = self._view.renderer(table, params)
        return Reply(200, dump({"result": [render(row) for row in page]}), headers=headers)

    def _link_header(
        self, path: str, params_list: list[tuple[str, str]], offset: int, limit: int, total: int
    ) -> str:
        kept = [pair for pair in params_list if pair[0] not in ("sysparm_offset", "sysparm_limit")]

        def link(rel: str, at: int) -> str:
            query = urlencode([*kept, ("sysparm_offset", str(at)), ("sysparm_limit", str(limit))])
            return f'<{self.url}{path}?{query}>;rel="{rel}"'

        links = [link("first", 0)]
        if offset > 0:
            links.append(link("prev", max(0, offset - limit)))
        if offset + limit < total:
            links.append(link("next", offset + limit))
        links.append(link("last", max(0, (total - 1) // limit * limit)))
        return ",".join(links)


def _sample_data(sim: ServiceNowSimulator) -> None:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    group = sim.put_record("sys_user_group", {"name": "Network"})["sys_id"]
    user = sim.put_record("sys_user", {"name": "Ada Lovelace", "user_name": "ada"})["sys_id"]
    router = sim.put_record("cmdb_ci", {"name": "core-router-1"})["sys_id"]
    db = sim.put_record("cmdb_ci", {"name": "db-primary"})["sys_id"]
    samples = [
        ("CHG0030001", "Router firmware upgrade", timedelta(hours=2), "-2", router),
        ("CHG0030002", "Database failover test", timedelta(hours=-1), "-1", db),
        ("CHG0030003", "Certificate rotation", timedelta(days=-2), "3", ""),
    ]
    for number, title, starts_in, state, ci in samples:
        change = sim.put_record("change_request", make_change(
            number, short_description=title, start=now + starts_in, end=now + starts_in + timedelta(hours=1),
            state=state, cmdb_ci=ci, assignment_group=group, assigned_to=user,
        ))  # fmt: skip
        if ci:
            sim.put_record("task_ci", {"task": change["sys_id"], "ci_item": ci})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ServiceNow Table API simulator with a few sample changes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="secret")
    args = parser.parse_args(argv)
    sim = ServiceNowSimulator(username=args.username, password=args.password, host=args.host, port=args.port)
    _sample_data(sim)
    with sim:
        print(f"ServiceNow simulator on {sim.url} (user {args.username}); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
