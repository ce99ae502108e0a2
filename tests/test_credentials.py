"""Every secret the settings hold, in one list that the logs and the commands' output redact; secret
files that would put a second line or a control character into a header; Alertmanager errors that could
quote a header; Alertmanager basic auth outside Latin-1 (against the real Alertmanager)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.alertmanager.client import AlertmanagerClient, AlertmanagerError
from connector.alertmanager.settings import AlertmanagerSettings
from connector.cli.main import main
from connector.config import Settings, load_settings
from connector.errors import ConfigError
from connector.logs import redact
from tests.alertmanager_harness import free_port, run_alertmanager

ROOT = Path(__file__).resolve().parent.parent
PW_A = "acme-Pa55-비밀-1"
PW_B = "globex-Pa55-2222"
OAUTH_A = "oauth-client-SeCrEt-A"
TOKEN = "xoxb-4242-1717-SeCrEtToKeN"
AM_PASSWORD = "am-Pa55-Ωmega-3"
AM_BEARER = "am-bearer-SeCrEt-4"
ALL = (PW_A, PW_B, OAUTH_A, TOKEN, AM_PASSWORD, AM_BEARER)


def leaks(text: str) -> list[str]:
    return [s for s in ALL if s in text]


def two_sources(**am: Any) -> dict[str, Any]:
    closed = free_port()  # nobody listens: every command fails fast
    return {
        "sources": [
            {
                "name": "acme", "url": f"http://127.0.0.1:{closed}", "username": "svc", "password": PW_A,
                "oauth_client_id": "cid", "oauth_client_secret": OAUTH_A,
            },
            {"name": "globex", "url": f"http://127.0.0.1:{closed}", "username": "svc", "password": PW_B},
        ],
        "slack": {"token": TOKEN, "channel": "C0MAINT01", "base_url": f"http://127.0.0.1:{closed}/api/"},
        "alertmanager": {"url": f"http://127.0.0.1:{closed}", **am},
    }  # fmt: skip


def test_settings_list_every_secret_they_hold() -> None:
    basic = Settings.model_validate(two_sources(username="am", password=AM_PASSWORD))
    bearer = Settings.model_validate(two_sources(bearer_token=AM_BEARER))
    assert set(basic.secrets()) == {PW_A, OAUTH_A, PW_B, TOKEN, "am", AM_PASSWORD}
    assert set(bearer.secrets()) == {PW_A, OAUTH_A, PW_B, TOKEN, AM_BEARER}


@pytest.mark.parametrize("am", [{"username": "am", "password": AM_PASSWORD}, {"bearer_token": AM_BEARER}])
def test_the_entry_point_registers_every_secret_for_redaction(tmp_path: Path, am: dict[str, str]) -> None:
    """Only the first source's password, its OAuth secret and the Slack token were registered: the
    second source's password and Alertmanager's credentials went to the logs as they were."""
    data = two_sources(**am)
    data["state"] = {"path": str(tmp_path / "state.db")}
    data["log"] = {"level": "ERROR"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["check", "-c", str(config)]) == 1  # nothing answers
    held = [v for v in ALL if v in (PW_A, PW_B, OAUTH_A, TOKEN, *am.values())]
    assert not leaks(redact(" | ".join(held)))


# -- secret files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(f"{TOKEN}\nsecond-line-{TOKEN}\n", "more than one line", id="second-line"),
        pytest.param(f"{TOKEN}\r\n\r\n{TOKEN}", "more than one line", id="crlf-lines"),
        pytest.param(f"xoxb-4242 {TOKEN}", "whitespace", id="inner-space"),
        pytest.param(f"xoxb-4242\u3000{TOKEN}", "whitespace", id="inner-wide-space"),
        pytest.param(f"{TOKEN}\x00\x07", "control character", id="control-chars"),
    ],
)
def test_a_malformed_secret_file_names_the_file_not_its_content(
    tmp_path: Path, content: str, why: str
) -> None:
    """A token file with a second line gave a raw traceback quoting the token (http.client refuses the
    header value and says what it was)."""
    token_file = tmp_path / "slack-token"
    token_file.write_text(content, encoding="utf-8")
    token_file.chmod(0o600)
    data = two_sources()
    data["slack"].pop("token")
    data["slack"]["token_file"] = str(token_file)
    data["state"] = {"path": str(tmp_path / "state.db")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert [p.split(":")[0] for p in err.value.problems] == ["slack.token_file"]
    assert str(token_file) in str(err.value) and why in str(err.value)
    assert not leaks(str(err.value))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITSM_", "CREDENTIALS_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "sync", "-c", str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out and "slack.token_file" in out, out
    assert not leaks(out)


def test_a_password_may_hold_a_space_but_no_other_whitespace(tmp_path: Path) -> None:
    data = two_sources()
    data["sources"][1]["password"] = "correct horse battery staple"
    assert Settings.model_validate(data).sources[1].password is not None
    data["sources"][1]["password"] = "correct\u00a0horse"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={})
    assert err.value.problems == [
        "sources.1.password: holds whitespace inside the secret other than a plain space"
    ]


def test_a_secret_given_in_the_environment_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    data = two_sources(bearer_token=AM_BEARER)
    data["slack"].pop("token")
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("ITSM_SLACK__TOKEN", f"{TOKEN}\nX-Injected: 1")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert err.value.problems == ["slack.token: holds more than one line: put the secret alone on one line"]


# -- Alertmanager -----------------------------------------------------------------------------------------


def test_alertmanager_errors_never_quote_a_header() -> None:
    """The client put the requests exception's text into its error, and requests quotes a header value
    it refuses: the bearer token."""
    for token in (f"{AM_BEARER}\n", f"{AM_BEARER}\x7f"):
        settings = AlertmanagerSettings.model_construct(
            url=f"http://127.0.0.1:{free_port()}", bearer_token=_secret(token), username=None, password=None,
            timeout=2.0,
        )  # fmt: skip
        with pytest.raises(AlertmanagerError) as err:
            AlertmanagerClient(settings).ready()
        assert err.value.retryable and "cannot reach Alertmanager" in str(err.value)
        assert not leaks(str(err.value)) and err.value.__cause__ is None


def test_alertmanager_unreachable_says_why_without_quoting_the_library() -> None:
    port = free_port()
    client = AlertmanagerClient(AlertmanagerSettings(url=f"http://127.0.0.1:{port}", bearer_token=AM_BEARER))
    with pytest.raises(AlertmanagerError) as err:
        client.ready()
    assert str(err.value) == (
        f"GET http://127.0.0.1:{port}/-/ready: cannot reach Alertmanager: ConnectionError: Connection refused"
    )


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


@pytest.mark.integration
def test_alertmanager_basic_auth_outside_latin_1(tmp_path: Path) -> None:
    """requests encodes str credentials as Latin-1: a password outside it failed every pass with an
    unclassified UnicodeEncodeError. It is sent as UTF-8, which the real Alertmanager checks."""
    # bcrypt (cost 4) of AM_PASSWORD's UTF-8 bytes: python3 -c "import crypt; print(crypt.crypt(
    # 'am-Pa55-Ωmega-3', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"
    web = 'basic_auth_users:\n  admin: "$2b$04$x.phGD5A5vtGEZYgJEHNRu83W0pOo3fOGpIKejnEbWPwz.OOvjXZW"\n'
    with run_alertmanager(tmp_path, web_config=web) as am:
        AlertmanagerClient(AlertmanagerSettings(url=am.url, username="admin", password=AM_PASSWORD)).ready()
        wrong = AlertmanagerSettings(url=am.url, username="admin", password=AM_PASSWORD + "ω")
        with pytest.raises(AlertmanagerError) as err:
            AlertmanagerClient(wrong).ready()
        assert (err.value.auth, err.value.status) == (True, 401)


def test_status_masks_every_secret_in_what_the_state_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` prints errors stored by the daemon; an error that quoted a secret (a server echoing a
    header) is masked, for every secret of the settings."""
    from datetime import datetime, timezone

    from connector.store.facts import LastPoll, SinkState
    from connector.store.sqlite import Store

    data = two_sources(bearer_token=AM_BEARER)
    data["state"] = {"path": str(tmp_path / "state.db")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    store = Store(tmp_path / "state.db")
    with store.transaction():
        now = datetime.now(timezone.utc)
        store.set_last_poll("globex", LastPoll(ok_at=None, error=f"echoed {PW_B}", error_at=now))
        store.set_sink_state("alertmanager", SinkState(error=f"HTTP 500 Bearer {AM_BEARER}", since=now))
    store.close()
    assert main(["status", "-c", str(config)]) == 1
    out = capsys.readouterr().out
    assert "echoed ***" in out and "Bearer ***" in out, out
    assert not leaks(out)
