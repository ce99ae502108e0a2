"""No token or password in logs, error messages, ``check`` or ``status`` output, tracebacks, the config's
repr, the state database or Slack metadata.

The logs are checked twice: as the records our code emits (pytest's ``caplog``, before any
redaction, at DEBUG, so a secret is not merely masked but never logged), and as the daemon writes
them (the real handler from :func:`connector.logs.setup_logging`, text and JSON).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import Settings, load_settings
from connector.errors import ConfigError, SourceError
from connector.health import health_body
from connector.logs import clear_secrets, register_secret, setup_logging
from connector.servicenow.client import ServiceNowSource
from connector.simulators.servicenow import ServiceNowSimulator
from connector.simulators.slack import SlackSimulator
from tests.drill.drill import CHANNEL, USER, Drill
from tests.drill.scenarios import SCENARIOS, run_scenario

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sn-Pa55-비밀-Ω-7731"  # not Latin-1 either: it must still go out intact
TOKEN = "xoxb-4242-1717-SeCrEtToKeNvalue"
SECRETS = (PASSWORD, TOKEN, "Sn-Pa55", "SeCrEtToKeN")  # also no recognisable part


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


@pytest.fixture
def real_handler() -> Iterator[io.StringIO]:
    """The daemon's own log handler (as ``cli.main`` installs it), writing to a buffer."""
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()
    register_secret(PASSWORD)
    register_secret(TOKEN)
    try:
        yield buf
    finally:
        for h in [h for h in root.handlers if h.get_name() == "itsm-connector"]:
            root.removeHandler(h)
        root.setLevel(level)
        clear_secrets()


def settings_data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "servicenow": {"url": "https://acme.service-now.com", "username": USER, "password": PASSWORD},
        "slack": {"token": TOKEN, "channel": CHANNEL},
        "alertmanager": {"url": "http://127.0.0.1:9093", "password": PASSWORD, "username": "am"},
    }
    data.update(over)
    return data


def test_settings_repr_str_and_dumps_hide_secrets() -> None:
    s = Settings.model_validate(settings_data())
    shown = [repr(s), str(s), repr(s.servicenow), repr(s.slack), str(s.model_dump()), s.model_dump_json()]
    assert s.servicenow is not None and s.servicenow.password is not None
    assert s.servicenow.password.get_secret_value() == PASSWORD  # really there ...
    assert not leaks("\n".join(shown))  # ... and never shown


def test_config_errors_never_quote_a_secret(tmp_path: Path) -> None:
    data = settings_data()
    data["servicenow"]["page_size"] = "many"
    data["slack"]["tokn"] = TOKEN  # a typo'd key holding the token
    data["slack"]["timeout"] = PASSWORD  # a secret pasted into the wrong field
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    text = str(err.value)
    assert "servicenow.page_size" in text and "slack.tokn" in text and "slack.timeout" in text
    assert not leaks(text)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_in_logs_errors_or_health_under_faults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, real_handler: io.StringIO, fmt: str
) -> None:
    caplog.set_level(logging.DEBUG)  # our records and every library's, unredacted
    setup_logging("DEBUG", fmt, stream=real_handler)
    errors: list[str] = []
    for i, fault in enumerate(
        [
            "SN 401 (password changed)",
            "SN 500 x3",
            "SN HTML 200 (hibernating)",
            "Slack invalid_auth",
            "Slack lost response: parent",
            "Slack HTML 200",
        ]
    ):
        kwargs = dict(SCENARIOS[fault])
        kwargs["drill_args"] = {**kwargs.get("drill_args", {}), "password": PASSWORD, "token": TOKEN}
        if fault.startswith("SN 401"):
            kwargs["heal"] = lambda d: setattr(d.snow, "password", PASSWORD)
        _, d = run_scenario(tmp_path / str(i), fault, **kwargs)
        try:
            st = d.app.daemon.state
            errors += [str(s.last_error) for s in st.sources.values()] + [
                str(e) for e in st.sink_errors.values()
            ]
            errors.append(json.dumps(health_body(d.app.view.health_snapshot())[1]))
            errors += [c.error or "" for c in d.slack.calls]
            metadata = [json.dumps(m.metadata) for p in d.parents() for m in (p, *p.replies)]
            assert not leaks("\n".join(metadata))
        finally:
            d.close()
        for db in (tmp_path / str(i)).glob("state.db*"):
            assert not leaks(db.read_bytes().decode("utf-8", "replace")), db.name
    records = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records)
    assert "rejected the credentials" in records and "invalid_auth" in records  # the faults did happen
    assert not leaks(records), "logged by our code or a library, before any redaction"
    assert not leaks(real_handler.getvalue()), "written by the daemon's handler"
    assert not leaks("\n".join(errors))


def test_tracebacks_of_source_errors_hold_no_secret(real_handler: io.StringIO) -> None:
    """The whole chain (``raise ... from err``: the library's exception too), and a traceback
    that does carry a secret is still masked by the real handler."""
    caught: list[BaseException] = []
    with ServiceNowSimulator(username=USER, password="another-password") as sim:
        for kwargs in (
            {"password": PASSWORD},
            {"password": PASSWORD, "oauth_client_id": "cid", "oauth_client_secret": TOKEN},
        ):
            source = ServiceNowSource(url=sim.url, username=USER, **kwargs)  # type: ignore[arg-type]
            with pytest.raises(SourceError) as err:
                source.check()
            caught.append(err.value)
            source.close()
        url = sim.url
    source = ServiceNowSource(url=url, username=USER, password=PASSWORD)  # nobody listens any more
    with pytest.raises(SourceError) as err:
        source.check()
    caught.append(err.value)
    text = "\n".join("".join(traceback.format_exception(e)) for e in caught)
    assert "rejected" in text and "cannot reach" in text
    assert not leaks(text)

    setup_logging("DEBUG", "text", stream=real_handler)
    try:
        raise RuntimeError(f"a library put the password {PASSWORD} and token {TOKEN} in its message")
    except RuntimeError:
        logging.getLogger("connector.test").exception("failed")
    assert "Traceback" in real_handler.getvalue() and not leaks(real_handler.getvalue())


def write_config(tmp_path: Path, snow_url: str, slack_url: str, **secrets: Any) -> Path:
    data = {
        "servicenow": {"url": snow_url, "username": USER, **secrets.get("servicenow", {})},
        "slack": {"channel": CHANNEL, "base_url": slack_url, **secrets.get("slack", {})},
        "state": {"path": str(tmp_path / "state.db")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ITSM_", "CREDENTIALS_"))}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("how", ["in the file", "from the environment", "from *_file"])
def test_check_and_status_with_wrong_secrets_say_what_to_fix_and_show_none(tmp_path: Path, how: str) -> None:
    with (
        ServiceNowSimulator(username=USER, password="the-real-one") as snow,
        SlackSimulator(tokens=["xoxb-the-real-one"]) as slack,
    ):
        env: dict[str, str] = {}
        secrets: dict[str, Any] = {}
        if how == "in the file":
            secrets = {"servicenow": {"password": PASSWORD}, "slack": {"token": TOKEN}}
        elif how == "from the environment":
            env = {"ITSM_SERVICENOW__PASSWORD": PASSWORD, "ITSM_SLACK__TOKEN": TOKEN}
        else:
            (tmp_path / "pw").write_text(PASSWORD + "\n")
            (tmp_path / "tok").write_text(TOKEN + "\n")
            secrets = {
                "servicenow": {"password_file": str(tmp_path / "pw")},
                "slack": {"token_file": str(tmp_path / "tok")},
            }
        config = write_config(tmp_path, snow.url, slack.base_url, **secrets)
        check = run_cli("check", "-c", str(config), env=env)
        status = run_cli("status", "-c", str(config), env=env)
    out = check.stdout + check.stderr
    assert check.returncode == 1, out
    assert "check servicenow.username / the password" in out and "invalid_auth" in out
    assert not leaks(out)
    assert not leaks(status.stdout + status.stderr)


def test_a_password_outside_latin_1_is_sent_intact(tmp_path: Path) -> None:
    """requests encodes Basic credentials as Latin-1: a Korean password made every poll fail as
    "truncated or invalid JSON" (a UnicodeEncodeError taken for a bad body). It is sent as UTF-8."""
    with Drill(tmp_path, password=PASSWORD, token=TOKEN) as d:
        d.create()
        d.poll()
        d.drain()
        assert d.source_error() is None and len(d.parents()) == 1
