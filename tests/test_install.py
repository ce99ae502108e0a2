"""The README's "Install" section, run as written outside systemd: a fresh venv, the command on PATH,
``simulate`` and a passing ``check`` against it, then the real config with the secret files it names.

Only the root-owned prefixes are moved into a temporary directory (``/opt/itsm-connector``,
``/usr/local/bin``, ``/etc/itsm-connector``, ``/tmp/itsm-try``) and ``/path/to/itsm-connector`` is
this checkout; every command is the README's own. It used to end with ``itsm-connector`` not found
and every secret "not set"."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from connector.config import load_settings
from connector.credentials import SECRETS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def install_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def block_with(words: str) -> str:
    (block,) = [b for b in install_blocks() if words in b]
    return block


class Machine:
    """A fresh machine's paths under ``tmp``: what the README's commands touch."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.moves = {
            "/opt/itsm-connector": str(tmp / "opt"),
            "/usr/local/bin": str(tmp / "bin"),
            "/etc/itsm-connector": str(tmp / "etc"),
            "/tmp/itsm-try": str(tmp / "try"),
            "/path/to/itsm-connector": str(ROOT),
        }
        (tmp / "bin").mkdir()
        keep = ("HOME", "LANG", "TMPDIR")  # and pip's own settings, to reach the package index
        self.env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
        # a fresh shell: the system's PATH, no venv active
        self.env["PATH"] = f"{tmp / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    def moved(self, text: str) -> str:
        for old, new in self.moves.items():
            text = text.replace(old, new)
        return text

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.moved(script)],
            capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=600,
        )  # fmt: skip


def test_the_readme_install_ends_with_a_passing_check_against_the_simulators(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    install = machine.sh(block_with("python3 -m venv"))
    assert install.returncode == 0, install.stdout + install.stderr
    assert install.stdout.splitlines()[-1].startswith("itsm-connector "), install.stdout  # on PATH, runs

    start, check = block_with("itsm-connector simulate").strip().splitlines()
    sim = subprocess.Popen(
        ["bash", "-c", "exec " + machine.moved(start.split("#")[0])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=machine.env, cwd=ROOT,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in sim.stdout or ()], daemon=True).start()
    try:
        seen = []
        while not (seen and seen[-1].startswith("config: ")):
            seen.append(lines.get(timeout=60).rstrip("\n"))
        result = machine.sh(check)
        assert result.returncode == 0, result.stdout + result.stderr
        assert [ln.split()[0] for ln in result.stdout.splitlines()] == ["ok"] * 3, result.stdout
    finally:
        sim.terminate()
        assert sim.wait(timeout=15) == 0


def test_the_example_config_reads_the_secret_files_the_readme_creates(tmp_path: Path) -> None:
    """Outside systemd, following the README: no secret is "not set"; each comes from its file."""
    machine = Machine(tmp_path)
    block = block_with("install -d -m 0755 /etc/itsm-connector")
    created = re.findall(r"install -m 0600 /dev/null (\S+)", block)
    setup = "\n".join(ln for ln in block.splitlines() if not ln.startswith("itsm-connector"))
    result = machine.sh(setup)
    assert result.returncode == 0, result.stderr
    for n, path in enumerate(created):
        Path(machine.moved(path)).write_text(f"secret-{n}\n")  # "then write the password into it"
    config = Path(machine.moved("/etc/itsm-connector/config.yaml"))
    config.write_text(machine.moved(config.read_text()))  # the same file, at the moved path

    settings = load_settings(config, env={})
    values = {s.name: s.password.get_secret_value() for s in settings.all_sources if s.password}
    assert settings.slack.token is not None
    files = {Path(machine.moved(p)).name: f"secret-{n}" for n, p in enumerate(created)}
    assert values == {"acme": files["servicenow-password"], "globex": files["globex-password"]}
    assert settings.slack.token.get_secret_value() == files["slack-token"]
    assert settings.warnings() == []  # 0600 files, nothing inline


def test_under_systemd_the_credentials_win_over_the_files_the_config_names(tmp_path: Path) -> None:
    """The unit loads the same files as credentials; the service's DynamicUser cannot read the
    root-only originals, so a credential present wins over ``password_file`` / ``token_file``."""
    unit = (ROOT / "systemd" / "itsm-connector.service").read_text().splitlines()
    loaded = dict(ln.split("=", 1)[1].split(":", 1) for ln in unit if ln.startswith("LoadCredential="))
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert loaded["servicenow-password"] == example["servicenow"]["password_file"]
    assert loaded["slack-token"] == example["slack"]["token_file"]

    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in ("servicenow-password", "slack-token", "globex-password"):
        (creds / name).write_text(f"from-systemd-{name}\n")
    # /etc/itsm-connector/* does not exist here, as if unreadable: the credentials are used instead
    settings = load_settings(ROOT / "config.example.yaml", env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.primary_source.password is not None and settings.slack.token is not None
    assert settings.primary_source.password.get_secret_value() == "from-systemd-servicenow-password"
    assert settings.slack.token.get_secret_value() == "from-systemd-slack-token"
    assert {c for _, _, _, c, required in SECRETS if required} <= set(loaded)


def test_the_command_line_help_names_the_readme_install(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "connector", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "README" in out and "itsm-connector simulate" in out
