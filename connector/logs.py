"""Logging setup: three output formats, secret redaction, and "log on transition" for failing things.

Formats (``setup_logging(fmt=...)``)::

    text     2024-05-01T12:00:00.123Z WARNING connector.sync: message      (a terminal)
    journal  <4>connector.sync: message                                     (systemd's journal)
    json     {"ts": "...Z", "level": "WARNING", "logger": "...", "msg": "...", "ticket": "CHG0000023"}
    auto     journal when stderr is the journal stream named by $JOURNAL_STREAM, else text

``journal`` prefixes every line with an sd-daemon(3) ``<N>`` syslog priority, so journald files each
line (traceback lines included) at the record's level, and leaves timestamps to journald.

One record, one line: a message is never split. Line breaks (CR, LF, U+0085, U+2028, U+2029) and
other control and bidi characters in it are escaped (``\n``, ``\u2028``: :func:`escape_controls`),
so a ticket number or title cannot forge a log line or reorder a terminal's text. Only a traceback
keeps its own lines (each prefixed in ``journal``); ``json`` escapes the same characters in its strings.

Secrets: ``register_secret(value)`` once the config is loaded; the ``RedactFilter`` installed on our
handler replaces every registered value with ``***`` in the message, its arguments, the traceback
and ``extra`` fields, and the formatters redact their final output again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TextIO
from urllib.parse import quote

MASK = "***"
MIN_SECRET_LENGTH = 4

_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()

# syslog priorities (sd-daemon(3)): 2 crit, 3 err, 4 warning, 5 notice, 6 info, 7 debug
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

# What a log line or a terminal must not carry raw: C0 and C1 controls, DEL, line and paragraph
# separators, and the bidi marks, embeddings, overrides and isolates.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def escape_controls(text: str, *, keep: str = "") -> str:
    """``text`` safe for one line of a log or a terminal: each control, line-break or bidi character
    (but those in ``keep``) as ``\\n``, ``\\r``, ``\\t`` or ``\\uXXXX``. Those are JSON's escapes too,
    so the result is still valid inside a JSON string. Emoji joiners and other text are untouched."""
    if text.isprintable():  # the usual case
        return text

    def one(m: re.Match[str]) -> str:
        c = m.group()
        return c if c in keep else _SHORT.get(c, f"\\u{ord(c):04x}")

    return _UNSAFE.sub(one, text)


def register_secret(value: str) -> None:
    """Have ``value`` (and its URL-encoded form) replaced by ``***`` in all log output."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    global _secrets
    with _secrets_lock:
        _secrets = _secrets | {value, quote(value, safe="")}


def clear_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _secrets
    with _secrets_lock:
        _secrets = frozenset()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``, longest secrets first."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactFilter(logging.Filter):
    """Rewrites a record in place so nothing downstream can render a registered secret.

    The message is rendered (``msg % args``) and redacted, the traceback is rendered into
    ``exc_text`` and redacted, and string ``extra`` fields are redacted. Never drops a record.
    """

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z LEVEL logger: message`` in UTC."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(self, record)


class JournalFormatter(logging.Formatter):
    """``<N>logger: message`` on every line; journald adds the timestamp."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in _one_line(self, record).split("\n"))


def _one_line(fmt: logging.Formatter, record: logging.LogRecord) -> str:
    """What ``logging.Formatter.format`` gives, redacted, with the record's line escaped: one line,
    then the traceback and stack (if any) on their own lines, their other controls escaped."""
    record.message = record.getMessage()
    if fmt.usesTime():
        record.asctime = fmt.formatTime(record, fmt.datefmt)
    parts = [escape_controls(redact(fmt.formatMessage(record)))]
    if record.exc_info and not record.exc_text:
        record.exc_text = fmt.formatException(record.exc_info)
    if record.exc_text:
        parts.append(escape_controls(redact(record.exc_text), keep="\n"))
    if record.stack_info:
        parts.append(escape_controls(redact(fmt.formatStack(record.stack_info)), keep="\n"))
    return "\n".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, ``extra`` fields, and exc/stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            doc.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return escape_controls(redact(json.dumps(doc, default=str, ensure_ascii=False)))


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _PRIORITY:
        if levelno >= threshold:
            return priority
    return 7


def setup_logging(
    level: str = "INFO",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Configure the root logger with one handler writing ``fmt`` to ``stream`` (default stderr).

    Calling it again replaces the handler installed by the previous call (other handlers are kept).
    Raises ValueError for an unknown ``fmt`` or ``level``.
    """
    stream = stream if stream is not None else sys.stderr
    env = os.environ if environ is None else environ
    if fmt == "auto":
        fmt = "journal" if _is_journal_stream(stream, env.get("JOURNAL_STREAM", "")) else "text"
    formatters: dict[str, type[logging.Formatter]] = {
        "text": TextFormatter,
        "journal": JournalFormatter,
        "json": JsonFormatter,
    }
    if fmt not in formatters:
        raise ValueError(f"unknown log format {fmt!r} (expected one of auto, {', '.join(formatters)})")
    levelno = logging.getLevelName(level.upper())
    if not isinstance(levelno, int):
        raise ValueError(f"unknown log level {level!r}")

    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters[fmt]())
    handler.addFilter(RedactFilter())
    handler.set_name("itsm-connector")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "itsm-connector"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)


def _is_journal_stream(stream: TextIO, journal_stream: str) -> bool:
    """True when $JOURNAL_STREAM is set and, if ``stream`` has a file descriptor, names that same file.

    The check (sd-daemon / systemd.exec(5)) keeps a shell started from a systemd unit, which inherits
    the variable, from writing journal prefixes to a terminal.
    """
    if not journal_stream:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # no descriptor to compare (e.g. a StringIO): trust the variable
    return journal_stream == f"{st.st_dev}:{st.st_ino}"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class TransitionLog:
    """Log a failing thing on transitions only: the first failure, a changed reason, the recovery.

    ``failed(reason)`` on every failed attempt and ``ok()`` on every success; at most one line is
    written per change of state, never one per poll.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.ERROR,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._level = level
        self._clock = clock
        self._reason: str | None = None
        self._failures = 0
        self._since = 0.0

    @property
    def failing(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def failed(
        self, reason: str, *, level: int | None = None, exc_info: BaseException | None = None
    ) -> bool:
        """Record a failure; returns True when it was logged (first failure or new reason), with
        ``exc_info``'s traceback when given (an unexpected error: its traceback once, not per retry)."""
        level = self._level if level is None else level
        self._failures += 1
        if self._reason is None:
            self._since = self._clock()
            self._reason = reason
            self._logger.log(level, "%s failing: %s", self._what, reason, exc_info=exc_info)
            return True
        if reason != self._reason:
            self._reason = reason
            self._logger.log(level, "%s still failing, now: %s", self._what, reason, exc_info=exc_info)
            return True
        return False

    def ok(self) -> bool:
        """Record a success; returns True when it was logged (the first success after failures)."""
        if self._reason is None:
            return False
        self._logger.info(
            "%s recovered after %d failed attempt%s in %.0fs",
            self._what,
            self._failures,
            "" if self._failures == 1 else "s",
            self._clock() - self._since,
        )
        self._reason = None
        self._failures = 0
        return True
