"""A real PostgreSQL for the tests: the server ``.ci/install-postgresql.sh`` starts, found through
``ITSM_TEST_POSTGRES_DSN`` (``.ci/run`` sets it; the default is what that script creates).

Each test gets a schema of its own (``fresh_schema``), dropped afterwards, so tests are independent.
Where no server answers, the tests that need one are skipped with the reason — except in CI
(``CI=true``), where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

DEFAULT_DSN = "postgresql://itsm:itsm-test-only@127.0.0.1:5432/itsm_test"
_checked: list[str | None] = []


def dsn() -> str:
    """The test server's DSN (with its password), or skip (fail in CI) when none answers."""
    url = os.environ.get("ITSM_TEST_POSTGRES_DSN") or DEFAULT_DSN
    if not _checked:
        try:
            psycopg.connect(url, connect_timeout=3).close()
            _checked.append(None)
        except psycopg.Error as e:
            _checked.append(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    problem = _checked[0]
    if problem is not None:
        reason = (
            f"no PostgreSQL for the tests at {split(url)[0]} ({problem}): run .ci/install-postgresql.sh "
            "and set ITSM_TEST_POSTGRES_DSN"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


def split(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=netloc)), parts.password


def admin(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


@contextmanager
def fresh_schema() -> Iterator[tuple[str, str]]:
    """``(dsn, schema)``: a new, empty schema in the test database, dropped at the end."""
    url = dsn()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin(url, f"CREATE SCHEMA {schema}")
    try:
        yield url, schema
    finally:
        admin(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def raw(url: str, schema: str, sql: str) -> list[tuple[object, ...]]:
    """Read through a connection of its own: what is committed."""
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:
        return conn.execute(sql).fetchall()
