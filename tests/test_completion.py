"""Shell completion of the command line through argcomplete (the optional ``completion`` extra).

The shell hook (``eval "$(register-python-argcomplete itsm-connector)"``) runs the program with
``_ARGCOMPLETE`` and ``COMP_LINE`` set and reads the candidates it writes; this does the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("argcomplete")

MAIN = Path(__file__).resolve().parent.parent / "connector" / "cli" / "main.py"


def complete(line: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",  # the words start with the program's name
        "_ARGCOMPLETE_IFS": "\n",
        "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
    }
    subprocess.run(
        [sys.executable, "-m", "connector"], env=env, capture_output=True, timeout=60, check=False
    )
    return [c.strip() for c in out.read_text().split("\n")] if out.exists() else []  # "status ": unique


def test_commands_and_options_complete(tmp_path: Path) -> None:
    assert complete("itsm-connector sta", tmp_path) == ["status", "state"]
    assert complete("itsm-connector statu", tmp_path) == ["status"]
    assert set(complete("itsm-connector ", tmp_path)) >= {"run", "sync", "check", "windows", "status"}
    assert "--dry-run" in complete("itsm-connector run --d", tmp_path)


def test_the_entry_module_carries_the_marker_the_shell_hook_looks_for() -> None:
    """register-python-argcomplete completes only scripts whose module says PYTHON_ARGCOMPLETE_OK in
    its first 1024 bytes."""
    assert "PYTHON_ARGCOMPLETE_OK" in MAIN.read_bytes()[:1024].decode()
