from __future__ import annotations

import io
import json
import logging
import os
import re
from pathlib import Path

import pytest

from connector.logs import TransitionLog, register_secret, setup_logging

SECRET = "s3cr3t-p@ss/word"


def configure(fmt: str, level: str = "DEBUG", environ: dict[str, str] | None = None) -> io.StringIO:
    """Logging set up into a string. (Not named ``setup``: pytest 7 runs a module-level ``setup()``
    before each test, nose style, passing it the module.)"""
    out = io.StringIO()
    setup_logging(level, fmt, out, environ=environ or {})
    return out


def test_journal_prefixes_every_line_with_the_syslog_priority() -> None:
    out = configure("journal")
    log = logging.getLogger("connector.sync")
    log.debug("d")
    log.info("fetched %d tickets", 3)
    log.warning("w")
    log.error("e")
    log.critical("c")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("cycle failed")
    lines = out.getvalue().splitlines()
    assert lines[:5] == [
        "<7>connector.sync: d",
        "<6>connector.sync: fetched 3 tickets",
        "<4>connector.sync: w",
        "<3>connector.sync: e",
        "<2>connector.sync: c",
    ]
    assert lines[5] == "<3>connector.sync: cycle failed"
    assert lines[6] == "<3>Traceback (most recent call last):"
    assert all(line.startswith("<3>") for line in lines[5:])
    assert lines[-1] == "<3>ValueError: bad"


def test_text_has_utc_timestamp_level_logger_message() -> None:
    out = configure("text")
    logging.getLogger("connector.daemon").info("started")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO connector\.daemon: started\n", out.getvalue()
    )


def test_json_lines_parse_and_carry_extra_fields() -> None:
    out = configure("json")
    log = logging.getLogger("connector.sync")
    log.info("window %s announced", "CHG0000023", extra={"ticket": "CHG0000023", "source": "servicenow"})
    try:
        1 / 0  # noqa: B018 - raising on purpose
    except ZeroDivisionError:
        log.warning("poll failed", exc_info=True)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "INFO"
    assert first["logger"] == "connector.sync"
    assert first["msg"] == "window CHG0000023 announced"
    assert first["ticket"] == "CHG0000023"
    assert first["source"] == "servicenow"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])
    assert second["level"] == "WARNING"
    assert second["exc"].endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("fmt", ["text", "journal", "json"])
def test_registered_secret_is_redacted_in_message_args_exception_and_traceback(fmt: str) -> None:
    out = configure(fmt)
    register_secret(SECRET)
    log = logging.getLogger("connector.servicenow")
    log.info("logging in with %s", SECRET, extra={"detail": f"pw={SECRET}"})

    def connect(password: str) -> None:
        raise ConnectionError(f"auth failed for password {password}")

    try:
        connect(SECRET)
    except ConnectionError:
        log.exception("poll failed: %s", f"url=https://u:{SECRET}@x")
    text = out.getvalue()
    assert SECRET not in text
    assert "s3cr3t-p%40ss%2Fword" not in text  # the URL-encoded form too
    assert "***" in text
    assert "auth failed for password ***" in text
    assert "Traceback" in text


def test_url_encoded_secret_is_redacted() -> None:
    out = configure("text")
    register_secret(SECRET)
    logging.getLogger("x").error("GET https://snow/?pw=%s", "s3cr3t-p%40ss%2Fword")
    assert "pw=***" in out.getvalue()


@pytest.mark.parametrize("value", ["", "abc"])
def test_short_secrets_are_ignored(value: str) -> None:
    out = configure("text")
    register_secret(value)
    logging.getLogger("x").info("abcdef")
    assert "abcdef" in out.getvalue()


def test_setup_twice_replaces_our_handler() -> None:
    configure("text")
    out = configure("json")
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "itsm-connector"]
    assert len(ours) == 1
    logging.getLogger("x").info("once")
    assert len(out.getvalue().splitlines()) == 1


def test_setup_rejects_unknown_format_and_level() -> None:
    with pytest.raises(ValueError, match="log format"):
        setup_logging("INFO", "xml", io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        setup_logging("LOUD", "text", io.StringIO())


def test_auto_picks_journal_when_journal_stream_names_our_stream(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as f:
        st = os.fstat(f.fileno())
        setup_logging("INFO", "auto", f, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        logging.getLogger("x").warning("hi")
        f.flush()
        assert (tmp_path / "stderr").read_text() == "<4>x: hi\n"


def test_auto_picks_text_when_journal_stream_is_inherited_but_not_ours(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as f:
        setup_logging("INFO", "auto", f, environ={"JOURNAL_STREAM": "1:2"})
        logging.getLogger("x").warning("hi")
        f.flush()
        assert (tmp_path / "stderr").read_text().endswith(" WARNING x: hi\n")


def test_auto_without_journal_stream_is_text() -> None:
    out = configure("auto", environ={})
    logging.getLogger("x").info("hi")
    assert out.getvalue().endswith(" INFO x: hi\n")


# --- TransitionLog ---------------------------------------------------------------------------


def test_transition_log_logs_once_per_transition(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([100.0, 190.0]).__next__
    t = TransitionLog(logging.getLogger("connector.daemon"), "servicenow poll", clock=clock)
    with caplog.at_level(logging.DEBUG, logger="connector.daemon"):
        assert t.ok() is False  # healthy from the start: nothing to say
        assert t.failed("HTTP 503") is True
        assert t.failed("HTTP 503") is False
        assert t.failed("HTTP 503") is False
        assert t.failed("timeout") is True  # the reason changed
        assert t.failing and t.reason == "timeout"
        assert t.ok() is True
        assert t.ok() is False
        assert not t.failing
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "servicenow poll failing: HTTP 503"),
        ("ERROR", "servicenow poll still failing, now: timeout"),
        ("INFO", "servicenow poll recovered after 4 failed attempts in 90s"),
    ]


def test_transition_log_level_can_be_warning(caplog: pytest.LogCaptureFixture) -> None:
    t = TransitionLog(logging.getLogger("t"), "slack delivery", level=logging.WARNING)
    with caplog.at_level(logging.DEBUG, logger="t"):
        t.failed("ratelimited")
        t.failed("channel_not_found", level=logging.ERROR)
        t.ok()
        t.failed("ratelimited")
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR", "INFO", "WARNING"]
