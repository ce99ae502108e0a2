"""``itsm-connector demo``, the README's first command, runs the real pipeline end to end."""

from __future__ import annotations

import pytest

from connector.cli.main import main

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("locale", "word"), [("ko", "완료"), ("en", "Completed")])
def test_the_demo_plays_the_evening_and_leaves_nothing_undelivered(
    locale: str, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--locale", locale]) == 0
    out = capsys.readouterr().out
    for number in ("CHG0030000", "CHG0030001", "CHG0030002", "CHG0030003"):
        assert number in out
    assert word in out
    assert "1 digest + 1 per window" in out and "0 undelivered" in out
