"""``itsm-connector demo``, the README's first command, runs the real pipeline end to end, and shows a
newcomer what a person sees in Slack, what Alertmanager would get, and what to run next."""

from __future__ import annotations

import re

import pytest

from connector.cli.main import main

pytestmark = pytest.mark.integration

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def demo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    """The output: the timeline, and the channel as L1 sees it."""
    assert main(["demo", *args]) == 0
    out = capsys.readouterr().out
    timeline, _, channel = out.partition("as L1 sees it in Slack")
    assert channel, out
    return timeline, channel


@pytest.mark.parametrize(("locale", "word"), [("ko", "완료"), ("en", "Completed")])
def test_the_demo_plays_the_evening_and_leaves_nothing_undelivered(
    locale: str, word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, channel = demo(capsys, "--locale", locale)
    for number in ("CHG0030000", "CHG0030001", "CHG0030002", "CHG0030003"):
        assert number in channel
    assert word in channel
    assert "1 digest + 1 per window" in channel and "0 undelivered" in channel


@pytest.mark.parametrize("locale", ["ko", "en"])
def test_the_channel_shows_what_a_person_sees_not_the_markup(
    locale: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, channel = demo(capsys, "--locale", locale, "--timezone", "Europe/London")
    for markup in ("<!date^", "&amp;", "&lt;", "&gt;", "<http://127.0.0.1", "edits:"):
        assert markup not in channel, markup
    # the reader's own time, from the <!date> token: CHG0030001 moved to 18:00 UTC, London is UTC then
    assert "Nov 26, 2026 18:00 – Nov 26, 2026 20:00" in channel
    # the ticket's "<!channel>" and link reached Slack as text: they notify and lead nobody anywhere
    assert "@channel (inert)" in channel and "<!channel>" not in channel
    assert "<https://evil.example|click here> (inert text, not a link)" in channel
    assert "& " in channel  # "R&D"-style text is shown unescaped
    assert "'edited N×': updated in place N times" in channel and "(edited 3×)" in channel


def test_english_tickets_are_in_english(capsys: pytest.CaptureFixture[str]) -> None:
    timeline, channel = demo(capsys, "--locale", "en")
    assert not HANGUL.findall(timeline + channel), sorted(set(HANGUL.findall(timeline + channel)))
    assert "DB server maintenance (PM)" in channel


def test_the_demo_shows_the_silences_alertmanager_would_get(capsys: pytest.CaptureFixture[str]) -> None:
    timeline, _ = demo(capsys, "--locale", "en", "--timezone", "UTC")
    lines = timeline.splitlines()
    assert (
        '      alertmanager: CHG0030001: silence {instance=~"(db01|db02)(:[0-9]+)?"} '
        "11-26 17:00–19:00 UTC (pending)"
    ) in lines
    # rescheduled, extended while it overran, expired when cancelled or done
    moved = "      alertmanager: CHG0030001: silence now {"
    assert any(ln.startswith(moved) and "18:00–20:00" in ln for ln in lines)
    assert any("CHG0030003: silence now {" in ln and "12:20–13:10 UTC (active)" in ln for ln in lines)
    assert "      alertmanager: CHG0030002: silence expired, alerts from core-sw01 are live again" in lines


def test_the_demo_ends_with_what_to_run_next(capsys: pytest.CaptureFixture[str]) -> None:
    _, channel = demo(capsys, "--locale", "en")
    last = channel.rstrip().splitlines()[-1]
    assert last.startswith("Next: `itsm-connector simulate`"), last


def test_the_push_demo_shows_hints_in_seconds_and_the_poll_catching_a_lost_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--push", "--locale", "en"]) == 0
    out = capsys.readouterr().out
    assert out.count("(by hint)") == 2 and out.count("(by poll)") == 1
    _, _, channel = out.partition("as L1 sees it in Slack")
    assert "Storage migration, wave 2" in channel
    assert "<!date^" not in channel
