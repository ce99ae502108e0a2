"""The poll's read-ahead: the next pages are fetched, normalized and given their ``task_ci`` CIs while
the poll (:meth:`connector.sync.Syncer.poll`) reconciles and commits the pages already read, in order,
each with its cursor.

A reader thread (:class:`ReadAhead`) normalizes the next pages and asks ``task_ci`` about the not-finished
tickets of several pages at once. The requests themselves are made by one fetching thread, two pages
ahead, so the instance is never idle waiting for the connector. Neither thread touches the store; the
source is used by one thread at a time (the fetching thread during the page loop, the poll's thread
before and after it).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from connector.domain.window import TERMINAL_PHASES, MaintenanceWindow, Problem, phase_at
from connector.memory import limit_malloc_arenas
from connector.servicenow.lookback import Remember, Seen
from connector.servicenow.query import ChangePage, Cursor

# the poll's logger: its name is in the log lines, and the read-ahead is part of the poll
log = logging.getLogger(__name__)

#: A page's tickets wait for their ``task_ci`` rows until this many not-finished tickets (the source's
#: ``IN`` chunk) or this many pages are waiting, then one question covers them all: a first sync reads
#: mostly finished history, a few open tickets per page.
CI_BATCH_IDS = 100
CI_BATCH_PAGES = 4
#: Pages read ahead of the one being committed (each a few MB of decoded records, so: few): normalized
#: and waiting to be committed (one: each held page stays in the resident high-water mark for good,
#: see connector.memory), and requested from the fetching thread.
READ_AHEAD_PAGES = 1
FETCH_AHEAD_PAGES = 2
#: While waiting for the reader longer than this, ``progress`` is called if it read something since.
_WAIT_BEAT = 1.0

Normalized = MaintenanceWindow | list[Problem]

@dataclass
class ReadPage:
    """A fetched page, normalized, with the cursor to commit with it and the ``task_ci`` CIs of its
    not-finished tickets (the others keep the CIs they were last shown with). Records read again at
    the version already applied are not in it; ``remember``: the versions of those that are, to
    commit with them (see :mod:`connector.servicenow.lookback`)."""

    records: list[tuple[Mapping[str, Any], Normalized]]
    cursor: Cursor | None
    cis: dict[str, list[str]]
    remember: list[Remember] = field(default_factory=list)


class _AwaitingCIs(NamedTuple):
    """A page waiting for its CIs: its records, its cursor, its not-finished tickets, its versions."""

    records: list[tuple[Mapping[str, Any], Normalized]]
    cursor: Cursor | None
    open_ids: list[str]
    remember: list[Remember]


class _CIQuestion(NamedTuple):
    """Pages waiting for their CIs and the ``task_ci`` question asked for them (None: nothing to ask)."""

    pages: list[_AwaitingCIs]
    answer: Future[dict[str, list[str]]] | None

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Runs ``produce`` in a thread, at most ``depth`` items ahead of the one iterating over this.

    Items come out in order; an exception raised by ``produce`` comes out, the same object, after
    the items made before it. Leaving the ``with`` block (at the end, on an exception, on a shutdown)
    stops the thread at its next item and joins it: a request in flight is let finish (it has its
    timeout), nothing after it is sent. ``produce`` calls ``busy()`` when it has done something
    (read a page): a consumer waiting longer than ``_WAIT_BEAT`` then calls ``on_wait`` (the
    daemon's watchdog heartbeat stays alive while pages are read, and stops if reading hangs)."""

    def __init__(
        self,
        produce: Callable[[ReadAhead[T]], Iterator[T]],
        *,
        depth: int,
        on_wait: Callable[[], None] = lambda: None,
        name: str = "read-ahead",
    ) -> None:
        self._produce = produce
        self._queue: queue.Queue[tuple[Literal["item", "end", "error"], Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._on_wait = on_wait
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> ReadAhead[T]:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def busy(self) -> None:
        self._busy.set()

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:
        """Stop the thread and wait for it. After one drain it can put at most one more item (it
        checks ``_stop`` after every put), which fits: the queue was just emptied."""
        self._stop.set()
        self._drain()
        if self._thread.ident is not None:
            self._thread.join()
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _get(self) -> tuple[Literal["item", "end", "error"], Any]:
        while True:
            try:
                return self._queue.get(timeout=_WAIT_BEAT)
            except queue.Empty:
                if self._busy.is_set():
                    self._busy.clear()
                    self._on_wait()

    def _put(self, kind: Literal["item", "end", "error"], value: Any) -> bool:
        self._queue.put((kind, value))
        return not self._stop.is_set()

    def _run(self) -> None:
        items: Iterator[T] | None = None
        try:
            items = self._produce(self)
            for item in items:
                if not self._put("item", item):
                    return
            self._put("end", None)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put("error", e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator stopped early runs its cleanup here, in its own thread


@dataclass(frozen=True)
class PageReader:
    """The reader's side of the poll (its own thread: the source and pure functions only).

    ``changes`` asks the source for the pages (it is called in the reader's thread), ``normalize``
    turns a record into a window or its problems, ``task_cis`` asks ``task_ci`` about tickets;
    ``seen``: the versions already applied, read from the store before the poll (None: apply all)."""

    changes: Callable[[], Iterable[ChangePage]]
    normalize: Callable[[Mapping[str, Any]], Normalized]
    task_cis: Callable[[Sequence[str]], dict[str, list[str]]]
    now: datetime
    name: str
    id_field: str = "sys_id"
    seen: Seen | None = None

    def ahead(self, on_wait: Callable[[], None]) -> ReadAhead[ReadPage]:
        """The pages, read ahead in a thread named after the poll; iterate inside its ``with`` block."""
        limit_malloc_arenas()  # before the first thread allocates: see connector.memory
        return ReadAhead[ReadPage](self._read_pages, depth=READ_AHEAD_PAGES, on_wait=on_wait, name=self.name)

    def _read_pages(self, ahead: ReadAhead[ReadPage]) -> Iterator[ReadPage]:
        """Every request is made by one more thread, ``fetch`` (a single worker: the source is used by
        that thread alone), one page ahead: the next page is on its way while this one is normalized.
        A finished ticket's CIs are never shown again: ``task_ci`` is asked only about the others (on
        a first sync, most of the history is finished), for several pages at once (``CI_BATCH_*``)."""
        fetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-fetch")
        pages = self.changes()
        try:
            yield from self._read(iter(pages), fetch, ahead)
        finally:
            fetch.shutdown(wait=True, cancel_futures=True)  # a request in flight ends (its timeout)
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    def _read(
        self,
        pages: Iterator[ChangePage],
        fetch: ThreadPoolExecutor,
        ahead: ReadAhead[ReadPage],
    ) -> Iterator[ReadPage]:
        waiting: list[_AwaitingCIs] = []
        asked = 0
        # the fetching thread always has the next pages to read: it is never idle waiting for this one
        coming = deque(fetch.submit(next, pages, None) for _ in range(FETCH_AHEAD_PAGES))
        while True:
            try:
                got = coming.popleft().result()
            except Exception:  # the pages read before it are still committed, then it is raised
                try:
                    yield from self._answer(self._ask(waiting, fetch, ahead), ahead)
                except Exception:
                    log.debug("CIs of the pages before a failed page: not read either", exc_info=True)
                raise
            if got is None:
                break
            ahead.busy()
            if ahead.stopped:
                return
            records, page_cursor, pages_left = got.records, got.cursor, got.pages_left
            remember: list[Remember] = []
            if self.seen is not None:  # read again by the lookback, at the version applied: skipped
                read = len(records)
                records, remember = self.seen.sort(records)
                if read != len(records):
                    log.debug("%s: %d records read again unchanged, skipped", self.name, read - len(records))
            # Of each record, committing needs its id only: the rest is dropped here, so the pages read
            # ahead hold windows, not the records they were made from as well.
            page: list[tuple[Mapping[str, Any], Normalized]] = [
                ({self.id_field: r.get(self.id_field)}, self.normalize(r)) for r in records
            ]
            del records, got
            wanted = [
                w.sys_id
                for _, w in page
                if isinstance(w, MaintenanceWindow) and phase_at(w, self.now) not in TERMINAL_PHASES
            ]
            waiting.append(_AwaitingCIs(page, page_cursor, wanted, remember))
            asked += len(wanted)
            question = None
            # The pages of the last question are committed after the last request: the last page
            # is asked about alone, the ones before it are committed while it is read.
            if asked >= CI_BATCH_IDS or len(waiting) >= CI_BATCH_PAGES or pages_left == 1:
                question = self._ask(waiting, fetch, ahead)
                waiting, asked = [], 0
            coming.append(fetch.submit(next, pages, None))  # after the question: answered before it
            if question is not None:
                yield from self._answer(question, ahead)
        yield from self._answer(self._ask(waiting, fetch, ahead), ahead)

    def _ask(
        self, waiting: list[_AwaitingCIs], fetch: ThreadPoolExecutor, ahead: ReadAhead[ReadPage]
    ) -> _CIQuestion:
        """One ``task_ci`` question for the waiting pages' open tickets, queued in the fetching thread."""
        ids = [sys_id for w in waiting for sys_id in w.open_ids]
        return _CIQuestion(waiting, fetch.submit(self.task_cis, ids) if ids and not ahead.stopped else None)

    def _answer(self, question: _CIQuestion, ahead: ReadAhead[ReadPage]) -> Iterator[ReadPage]:
        """The waiting pages with their CIs, once the question is answered."""
        waiting, answer = question
        if ahead.stopped:
            return
        cis = answer.result() if answer is not None else {}
        ahead.busy()
        for records, page_cursor, wanted, remember in waiting:
            yield ReadPage(records, page_cursor, {t: cis[t] for t in wanted if t in cis}, remember)
