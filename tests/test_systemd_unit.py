"""The shipped unit file passes ``systemd-analyze verify`` cleanly and stays hardened.

``verify`` exits 1 when the ExecStart binary is missing and only *warns* (exit 0) on unknown keys or
bad values, so we run it on a copy whose ExecStart points at an existing executable and fail on any
stderr. ``--root=`` does not help on systemd 252: with a root, the unit path is looked up inside it
("Unit ... not found") and ``security`` then exits 0 having checked nothing — so no ``--root``.
``security --threshold`` is on a 0-100 scale (exposure x 10).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connector.health import WORKERS
from connector.hooks.server import WORKERS as HOOK_WORKERS

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "itsm-connector.service"
EXEC_START = "/opt/itsm-connector/venv/bin/itsm-connector run --config /etc/itsm-connector/config.yaml"
MAX_EXPOSURE = 1.5

pytestmark = pytest.mark.integration


@pytest.fixture
def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed")
    return path


def runnable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit, with ExecStart's binary replaced by this Python (arguments kept)."""
    text = UNIT.read_text() if text is None else text
    text, n = re.subn(
        r"^ExecStart=/opt/itsm-connector/venv/bin/itsm-connector ",
        f"ExecStart={sys.executable} ",
        text,
        flags=re.M,
    )
    assert n == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(("#", "["))]


def test_unit_declares_what_the_daemon_relies_on() -> None:
    lines = directives(UNIT.read_text())
    for expected in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=60",
        "Restart=on-failure",
        "RestartPreventExitStatus=4",  # the state database needs someone: do not start over by itself
        "DynamicUser=yes",
        "StateDirectory=itsm-connector",
        "ConfigurationDirectory=itsm-connector",
        "LoadCredential=servicenow-password:/etc/itsm-connector/servicenow-password",
        "LoadCredential=slack-token:/etc/itsm-connector/slack-token",
        f"ExecStart={EXEC_START}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "TimeoutStopSec=15",
        "WantedBy=multi-user.target",
        "After=network-online.target",
        "Wants=network-online.target",
    ]:
        assert expected in lines


def test_tasks_max_leaves_room_for_every_thread_the_daemon_starts() -> None:
    """Under systemd's task limit a thread that cannot start kills a poll; the listener's share is
    bounded (WORKERS + 1), so the limit must cover it, the fixed threads and many channels."""
    (line,) = [d for d in directives(UNIT.read_text()) if d.startswith("TasksMax=")]
    fixed = 1 + 1 + 2 + 1  # main, signals, the poll's reader and fetcher, the Alertmanager sink
    listener = WORKERS + 1
    hooks = HOOK_WORKERS + 1
    channels = 32  # one sink worker each
    assert int(line.removeprefix("TasksMax=")) >= fixed + listener + hooks + channels


def test_verify_prints_nothing(analyze: str, tmp_path: Path) -> None:
    result = run(analyze, "verify", f"./{UNIT.name}", cwd=runnable_copy(tmp_path).parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_verify_would_catch_a_typo(analyze: str, tmp_path: Path) -> None:
    """Guards the check above: a misspelt key is only a warning, so stderr is what we must look at."""
    broken = UNIT.read_text().replace("WatchdogSec=60", "WatchdogSecc=60")
    result = run(analyze, "verify", f"./{UNIT.name}", cwd=runnable_copy(tmp_path, broken).parent)
    assert "Unknown key 'WatchdogSecc'" in result.stderr


def test_security_exposure_is_low(analyze: str, tmp_path: Path) -> None:
    copy = runnable_copy(tmp_path)
    result = run(
        analyze,
        "security",
        "--offline=true",
        f"--threshold={int(MAX_EXPOSURE * 10)}",
        f"./{UNIT.name}",
        cwd=copy.parent,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


ROOT = UNIT.parent.parent


def test_a_config_error_is_not_restarted_every_10_seconds(tmp_path: Path) -> None:
    """A bad config exits 2; ``Restart=on-failure`` would retry it every ``RestartSec=`` until the
    start limit, flooding the journal with the same message: the unit must not restart on that code."""
    bad = tmp_path / "config.yaml"
    bad.write_text("slack: {channel: C0123ABCD}\nservicenow: {url: ftp://x}\n")
    result = subprocess.run(
        [sys.executable, "-m", "connector", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    codes = {
        code
        for d in directives(UNIT.read_text())
        if d.startswith("RestartPreventExitStatus=")
        for code in d.removeprefix("RestartPreventExitStatus=").split()
    }
    assert str(result.returncode) in codes


def install_commands(doc: Path, section: str) -> list[str]:
    """The ``install …`` lines of the shell blocks in one section of a Markdown document."""
    commands: list[str] = []
    inside = fenced = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            inside = line == section
        elif inside and fenced and line.startswith("install "):
            commands.append(line.split(" #", 1)[0].strip())
    return commands


@pytest.mark.parametrize(
    ("doc", "section"), [("README.md", "## Install"), ("docs/operations.md", "### Install")]
)
def test_documentation_exists_after_the_documented_install(tmp_path: Path, doc: str, section: str) -> None:
    """``Documentation=`` is what ``systemctl help itsm-connector`` opens: following the install steps
    must put the file there (run here with /opt and /etc moved under a temporary root)."""
    (line,) = [d for d in directives(UNIT.read_text()) if d.startswith("Documentation=")]
    target = line.removeprefix("Documentation=")
    assert target.startswith("file:///")
    commands = install_commands(ROOT / doc, section)
    assert commands, f"no install commands in {doc} {section}"
    for command in commands:
        moved = re.sub(r"(?<=\s)/(opt|etc)/", f"{tmp_path}/\\1/", command)
        result = subprocess.run(moved, shell=True, cwd=ROOT, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{command}: {result.stderr}"
    assert (tmp_path / target.removeprefix("file:///")).is_file()
