"""Fixtures shared by the test modules.

- ``alertmanager``: one real ``prometheus-alertmanager`` per test module (see ``alertmanager_harness``);
- ``_isolated_process`` (every test): the command line configures the root logger and registers
  secrets for redaction, and reads ``ITSM_*``, systemd's and the journal's variables from the
  environment; each test starts without them and leaves the logging as it found it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from connector.logs import clear_secrets
from tests.alertmanager_harness import alertmanager

__all__ = ["alertmanager"]

_PROCESS_VARIABLES = ("CREDENTIALS_DIRECTORY", "JOURNAL_STREAM", "NOTIFY_SOCKET", "ITSM_CONNECTOR_CONFIG")


@pytest.fixture(autouse=True)
def _isolated_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("ITSM_") or name in _PROCESS_VARIABLES:
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    root.setLevel(level)
    clear_secrets()
