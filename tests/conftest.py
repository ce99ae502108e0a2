"""Fixtures shared by the test modules.

``alertmanager``: one real ``prometheus-alertmanager`` per test module (see ``alertmanager_harness``).
"""

from __future__ import annotations

from tests.alertmanager_harness import alertmanager

__all__ = ["alertmanager"]
