"""What keeps a months-long daemon small after a catch-up (issue 7, steady RSS): the pages read ahead
hold windows, not the records as well; glibc's arenas are capped and trimmed (no-ops elsewhere)."""

from __future__ import annotations

import ctypes.util
import platform
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import pytest

from connector.memory import limit_malloc_arenas, release_after_catch_up
from connector.readahead import Normalized, PageReader
from connector.servicenow.query import ChangePage

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


def test_pages_read_ahead_keep_only_the_id_of_each_record() -> None:
    records = [{"sys_id": f"id{i}", "description": "x" * 5000, "number": f"CHG{i}"} for i in range(3)]
    seen: list[Mapping[str, Any]] = []

    def normalize(raw: Mapping[str, Any]) -> Normalized:
        seen.append(raw)
        return []  # a problem: nothing to ask task_ci about

    def changes() -> Iterator[ChangePage]:
        yield ChangePage(records, None)

    reader = PageReader(
        changes=changes, normalize=normalize, task_cis=lambda ids: {}, now=NOW, name="poll-test"
    )
    with reader.ahead(on_wait=lambda: None) as pages:
        (page,) = list(pages)
    assert seen == records  # normalized from the whole record ...
    assert [raw for raw, _ in page.records] == [{"sys_id": f"id{i}"} for i in range(3)]  # ... kept: its id


@pytest.mark.skipif(
    platform.system() != "Linux" or "libc.so" not in str(ctypes.util.find_library("c")),
    reason="glibc only",
)
def test_glibc_arenas_are_capped_and_trimmed() -> None:
    assert limit_malloc_arenas() is True
    release_after_catch_up()  # returns whether memory was given back: nothing to assert on that
