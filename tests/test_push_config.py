"""The ``hooks:`` section and each source's hook secret (issue 14): where they come from, what a bad
one says, and the hook listener over TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from connector.config import load_settings
from connector.errors import ConfigError
from tests.push_harness import SECRET, desk, signed
from tests.support import wait_for

BASE = """\
servicenow:
  name: acme
  url: https://acme.service-now.com/
  username: svc_itsm
  password: sn-password
slack:
  channel: C0123ABCD
  token: xoxb-1-2-token
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value.problems


def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "hook.crt", tmp_path / "hook.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_hooks_are_off_by_default_and_a_source_without_a_secret_takes_none(tmp_path: Path) -> None:
    settings = load(tmp_path, BASE)
    assert not settings.hooks.enabled and settings.hook_sources == []


def test_enabled_hooks_need_a_source_with_a_secret(tmp_path: Path) -> None:
    found = problems(tmp_path, BASE + "hooks: {enabled: true}\n")
    assert any("hooks.enabled needs a source with a hook_secret" in p for p in found), found


def test_a_short_or_non_ascii_secret_is_refused(tmp_path: Path) -> None:
    for secret, why in (("short", "at least 16"), ("비밀" * 10, "ASCII")):
        text = BASE.replace(
            "  password: sn-password\n", f"  password: sn-password\n  hook_secret: {secret}\n"
        )
        found = problems(tmp_path, text)
        assert any(p.startswith("servicenow.hook_secret") and why in p for p in found), found
        assert not any(secret in p for p in found)


def test_hook_secrets_from_files_and_credentials(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "servicenow-hook-secret").write_text(SECRET + "\n")
    (tmp_path / "creds" / "globex-hook-secret").write_text("g" * 32 + "\n")
    (tmp_path / "globex-password").write_text("pw\n")
    text = (
        BASE
        + f"""\
sources:
  - name: globex
    url: https://globex.example
    username: u
    password_file: {tmp_path / "globex-password"}
    hook_auth: bearer
hooks: {{enabled: true, listen: "0.0.0.0:9465"}}
"""
    )
    settings = load(tmp_path, text, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert [(s.name, s.hook_auth) for s in settings.hook_sources] == [("acme", "hmac"), ("globex", "bearer")]
    assert settings.hook_sources[1].hook_secret is not None
    assert settings.hook_sources[1].hook_secret.get_secret_value() == "g" * 32
    assert SECRET in list(settings.secrets())  # redacted from every log line
    assert SECRET not in repr(settings)
    warning = [w for w in settings.warnings() if w.startswith("hooks:")]
    assert len(warning) == 1 and "plain HTTP" in warning[0] and "bearer tokens of globex" in warning[0]


def test_tls_files_go_together_and_must_load(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    base = BASE.replace("  password: sn-password\n", f"  password: sn-password\n  hook_secret: {SECRET}\n")
    alone = problems(tmp_path, base + f"hooks: {{enabled: true, tls_cert_file: {cert}}}\n")
    assert any("go together" in p for p in alone), alone
    missing = problems(tmp_path, base + f"hooks: {{tls_cert_file: {cert}, tls_key_file: {tmp_path}/nope}}\n")
    assert any("nope not found" in p for p in missing), missing
    swapped = problems(tmp_path, base + f"hooks: {{tls_cert_file: {key}, tls_key_file: {cert}}}\n")
    assert any("cannot load" in p for p in swapped), swapped
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hook-tls-cert").write_bytes(cert.read_bytes())
    (creds / "hook-tls-key").write_bytes(key.read_bytes())
    settings = load(
        tmp_path,
        base + "hooks: {enabled: true, listen: '0.0.0.0:9465'}\n",
        {"CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert settings.hooks.tls and settings.hooks.tls_cert_file == creds / "hook-tls-cert"
    assert not [w for w in settings.warnings() if w.startswith("hooks:")]


@pytest.mark.integration
def test_hints_over_tls(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    with desk(tmp_path, tls_cert_file=str(cert), tls_key_file=str(key)) as d:
        assert d.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        hints = d.snow.enable_hints(d.url, SECRET, tls=trust)
        sys_id = d.snow.records("change_request")[0]["sys_id"]
        d.snow.update_record("change_request", sys_id, short_description="over TLS")
        wait_for("the edit", lambda: "over TLS" in d.parent_text("CHG0000001"), 5)
        assert [h.status for h in hints.log] == [202]
        body = json.dumps({"table": "change_request", "sys_id": sys_id}).encode()
        plain = urllib.request.Request(d.url.replace("https", "http"), data=body, headers=signed(body))
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(plain, timeout=5).close()
        hints.changed("change_request", {"sys_id": sys_id})  # the listener still serves
        wait_for("one more hint", lambda: hints.idle() and len(hints.log) == 2, 5)
        assert hints.log[-1].status == 202
