"""The wall board in a real browser: Debian's /usr/bin/chromium, headless, driven by Playwright's Python
package (never ``playwright install``: no browser is downloaded). The connector is the real one
(``build_connector`` and its listener) against the ServiceNow and Slack simulators on loopback; its clock is
injected, so a window "starts" when the test moves the clock, and the page must notice by itself.

What is checked is what a person sees: rows and their order, bars left to right, the now-line between
them, phases turning without a reload, the stale banner, a hostile title shown as text.

Without chromium (or Playwright) these tests are skipped with the reason, except in CI (``CI=true``),
where they fail instead: .ci/run installs chromium (.ci/install-chromium.sh).
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from connector.config import Settings
from connector.simulators.servicenow import ServiceNowSimulator, make_change
from connector.simulators.slack import SlackSimulator
from connector.wiring import Connector, build_connector
from tests.support import Clock
from tests.test_e2e import CHANNEL, settings_for

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # 21:00 KST
H = timedelta(hours=1)
WAIT_MS = 10_000  # bounded waits for what the page shows (it polls every second here)
XSS = "<img src=x onerror=alert(1)>"


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (bash .ci/install-chromium.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()



@dataclass
class Running:
    snow: ServiceNowSimulator
    app: Connector
    clock: Clock
    base: str
    cis: dict[str, str]

    def change(self, number: str, title: str, start: timedelta, end: timedelta, **kw: str) -> dict[str, str]:
        kw.setdefault("cmdb_ci", self.cis["db01"])
        kw.setdefault("assignment_group", "a" * 32)
        change = make_change(number, short_description=title, start=T0 + start, end=T0 + end, **kw)
        return self.snow.put_record("change_request", change)

    def cycle(self, at: timedelta) -> None:
        self.clock.now = T0 + at
        self.app.daemon.poll()
        self.app.daemon.tick()


def with_listener(settings: Settings, **health: Any) -> Settings:
    """The settings with the HTTP listener on: loopback, any free port."""
    settings.health = settings.health.model_copy(update={"enabled": True, "listen": "127.0.0.1:0", **health})
    return settings


def start_listener(app: Connector) -> str:
    """Start the connector's own listener (as ``run`` does); its base URL. Stopped by ``app.close()``."""
    assert app.health is not None
    app.health.start()
    return f"http://127.0.0.1:{app.health.port}"


@pytest.fixture
def connector(tmp_path: Path) -> Iterator[Running]:
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        cis = {n: snow.put_record("cmdb_ci", {"name": n})["sys_id"] for n in ("db01", "web01")}
        snow.put_record("sys_user_group", {"sys_id": "a" * 32, "name": "DB Ops"})
        settings = settings_for(snow, slack, tmp_path, "silent", locale="en", timezone="Asia/Seoul")
        # retries of a failing poll must not wait for real: the fake clock's world has no sleep
        app = build_connector(with_listener(settings), clock=clock, wait=lambda seconds: False)
        try:
            yield Running(snow, app, clock, start_listener(app), cis)
        finally:
            app.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    pg = context.new_page()
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))  # type: ignore[attr-defined]
    yield pg
    context.close()


def open_board(page: Any, url: str) -> None:
    """Open and wait for the first drawing (by selector: the page's CSP forbids the eval that
    Playwright's wait_for_function would need)."""
    page.goto(url)
    page.wait_for_selector("body[data-renders]", state="attached", timeout=WAIT_MS)


def box(page: Any, selector: str) -> dict[str, float]:
    b = page.locator(selector).bounding_box()
    assert b is not None, f"{selector} is not visible"
    return dict(b)


def seed(c: Running) -> None:
    """An ended window, one in progress, one starting within 2 hours, one later tonight."""
    c.change("CHG0000001", "DB patch", -3 * H, -H)
    c.change("CHG0000002", "Web deploy", -H, 2 * H)
    c.change("CHG0000003", "Core switch firmware", H, 3 * H)
    c.change("CHG0000004", "Storage migration", 5 * H, 8 * H)
    c.cycle(-4 * H)  # announced while all were ahead
    c.cycle(timedelta(0))


def silence(c: Running, number: str, start: timedelta, end: timedelta) -> None:
    """Store a silence as the Alertmanager sink records it (the board reads, never writes, them)."""
    (t,) = [t for t in c.app.store.tracked() if t.window.number == number]
    span = {"starts_at": (T0 + start).isoformat(), "ends_at": (T0 + end).isoformat()}
    with c.app.store.transaction():
        c.app.store.set_silences(t.window.key, [{"id": f"sil-{number}", "matchers_key": "k", **span}])


def test_rows_bars_order_and_the_now_line(connector: Running, page: Any, tmp_path: Path) -> None:
    seed(connector)
    silence(connector, "CHG0000002", -H, 2 * H)  # in force now
    silence(connector, "CHG0000003", H, 3 * H)  # created for later
    open_board(page, connector.base + "/board")
    rows = page.locator(".row")
    numbers = rows.evaluate_all("rs => rs.map(r => r.dataset.number)")
    assert numbers == ["CHG0000001", "CHG0000002", "CHG0000003", "CHG0000004"]
    phases = rows.evaluate_all("rs => rs.map(r => r.dataset.phase)")
    assert phases == ["ended", "in_progress", "scheduled", "scheduled"]
    # each row says what a person needs: ticket, title, CIs, group, silence, phase in words
    second = page.locator('.row[data-number="CHG0000002"]')
    text = second.inner_text()
    for part in ("CHG0000002", "Web deploy", "db01", "DB Ops", "Silenced", "In progress", "20:00–23:00"):
        assert part in text
    link = second.locator("a.number")
    assert link.get_attribute("href", timeout=WAIT_MS).startswith(connector.snow.url)

    bars = [box(page, f'.row[data-number="{n}"] .bar') for n in numbers]
    for earlier, later in itertools.pairwise(bars):
        assert earlier["x"] < later["x"]  # left to right by start
        assert earlier["y"] < later["y"]  # one row each, top to bottom
    now_x = box(page, "#now-line")["x"]
    ended, running, soon, _ = bars
    assert ended["x"] + ended["width"] <= now_x <= soon["x"]
    assert running["x"] < now_x < running["x"] + running["width"]

    assert page.locator("#running .item").evaluate_all("xs => xs.map(x => x.dataset.id)") == [
        page.locator('.row[data-number="CHG0000002"]').get_attribute("data-id")
    ]
    assert "CHG0000003" in page.locator("#starting").inner_text()
    assert "CHG0000004" not in page.locator("#starting").inner_text()  # 5 hours away
    silences = page.locator(".row .silence").evaluate_all("xs => xs.map(x => x.textContent)")
    assert silences == ["No silence", "Silenced", "Silence planned", "No silence"]
    assert "KST" in page.locator("#tz").inner_text() and "21:00" in page.locator("#asof").inner_text()
    assert page.locator("#stale").is_hidden()
    assert page.errors == [] and page.dialogs == []

    shot = tmp_path / "board.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ITSM_BOARD_SCREENSHOT"):  # how docs/board.png is made
        shutil.copyfile(shot, os.environ["ITSM_BOARD_SCREENSHOT"])


def test_a_window_that_starts_while_open_turns_in_progress_without_a_reload(
    connector: Running, page: Any
) -> None:
    connector.change("CHG0000010", "Kernel update", 10 * timedelta(minutes=1), 2 * H)
    connector.cycle(timedelta(0))
    open_board(page, connector.base + "/board?refresh=1")
    row = page.locator('.row[data-number="CHG0000010"]')
    assert row.get_attribute("data-phase") == "scheduled"
    assert "CHG0000010" in page.locator("#starting").inner_text()
    page.evaluate("window.__sameDocument = true")

    connector.cycle(timedelta(minutes=10))  # the planned start
    page.wait_for_selector('.row[data-number="CHG0000010"][data-phase="in_progress"]', timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True  # not reloaded
    assert "CHG0000010" in page.locator("#running").inner_text()
    assert "CHG0000010" not in page.locator("#starting").inner_text()
    assert "In progress" in row.locator(".phase-tag").inner_text()


def test_stale_banner_when_the_source_fails_and_when_the_connector_is_gone(
    connector: Running, page: Any
) -> None:
    seed(connector)
    open_board(page, connector.base + "/board?refresh=1")
    assert page.locator("#stale").is_hidden()
    assert page.evaluate("document.body.dataset.state") == "ok"

    connector.snow.inject("503", count=50)
    connector.cycle(timedelta(minutes=1))
    banner = page.locator("#stale")
    banner.wait_for(state="visible", timeout=WAIT_MS)
    assert "servicenow" in banner.inner_text() and "out of date" in banner.inner_text()
    assert page.evaluate("document.body.dataset.state") == "stale"
    assert page.locator(".row").count() == 4  # still shown, but marked stale

    while connector.snow.pending_faults():  # recovers: the banner goes away by itself
        connector.cycle(timedelta(minutes=1))
    connector.cycle(timedelta(minutes=2))
    banner.wait_for(state="hidden", timeout=WAIT_MS)
    page.wait_for_selector("#asof:has-text('21:02')", timeout=WAIT_MS)  # the last answer it will get

    assert connector.app.health is not None
    connector.app.health.stop()  # the connector is gone: the page must say so, not keep old data quietly
    banner.wait_for(state="visible", timeout=WAIT_MS)
    assert "cannot be reached" in banner.inner_text() and "21:02" in banner.inner_text()


def test_a_hostile_title_is_shown_as_text_and_runs_nothing(connector: Running, page: Any) -> None:
    hostile_ci = "<b onmouseover=alert(3)>ci</b>"
    connector.snow.put_record("cmdb_ci", {"sys_id": "e" * 32, "name": hostile_ci})
    connector.change("CHG0000020", XSS, H, 2 * H, description="<script>alert(2)</script>", cmdb_ci="e" * 32)
    connector.cycle(timedelta(0))
    open_board(page, connector.base + "/board")
    titles = page.locator('.row[data-number="CHG0000020"] .title')
    assert titles.inner_text() == XSS
    assert page.locator("#starting .title").inner_text() == XSS
    assert hostile_ci in page.locator('.row[data-number="CHG0000020"] .details').inner_text()
    assert page.locator("img, b, script:not([src])").count() == 0  # no element made from ticket text
    page.locator('.row[data-number="CHG0000020"]').hover()
    assert page.dialogs == [] and page.errors == []


def test_a_channels_board_in_its_locale_and_timezone(tmp_path: Path, browser: Any, page: Any) -> None:
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        routes = [{"match": {"type": "emergency"}, "channels": ["C0KO"]}, {"channels": [CHANNEL]}]
        channels = [{"id": "C0KO", "locale": "ko", "timezone": "Europe/London"}]
        settings = settings_for(
            snow, slack, tmp_path, "silent", routes=routes, locale="en", channels=channels
        )
        for number, title, kind in (("CHG0000030", "긴급 패치", "emergency"), ("CHG0000031", "PM", "normal")):
            change = make_change(number, short_description=title, start=T0 + H, end=T0 + 2 * H, type=kind)
            snow.put_record("change_request", change)
        app = build_connector(with_listener(settings), clock=clock)
        try:
            base = start_listener(app)
            app.daemon.poll()
            open_board(page, base + "/board/C0KO")
            numbers = page.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.number)")
            assert numbers == ["CHG0000030"]  # only what this channel follows
            assert page.locator("#running-title").inner_text() == "지금 진행 중"
            assert page.evaluate("document.documentElement.lang") == "ko"
            assert page.locator("#tz").inner_text() == "GMT (Europe/London)"
            assert "12:00" in page.locator("#asof").inner_text()  # 12:00 UTC is 12:00 in London
            assert "13:00" in page.locator('.row[data-number="CHG0000030"] .when').inner_text()
            page.screenshot(path=str(tmp_path / "board-ko.png"), full_page=True)
        finally:
            app.close()


def test_ci_installs_chromium_and_never_downloads_a_browser() -> None:
    root = Path(__file__).resolve().parent.parent
    script = (root / ".ci" / "install-chromium.sh").read_text()
    assert "apt-get install" in script and "playwright install" not in script
    assert "bash .ci/install-chromium.sh" in (root / ".ci" / "run").read_text()


def test_a_board_with_a_token_opens_with_basic_auth(tmp_path: Path, browser: Any) -> None:
    """A wall screen's browser is given the token once, as Basic's password; the page's own fetches of
    /api/windows then carry it too. Without it: 401 and nothing of the tickets."""
    clock = Clock(T0)
    with ServiceNowSimulator(clock=clock) as snow, SlackSimulator() as slack:
        snow.put_record(
            "change_request", make_change("CHG0000040", short_description="PM", start=T0 + H, end=T0 + 2 * H)
        )
        settings = settings_for(snow, slack, tmp_path, "silent", locale="en")
        app = build_connector(with_listener(settings, board_token=SecretStr("wall-s3cret")), clock=clock)
        try:
            base = start_listener(app)
            app.daemon.poll()
            anonymous = browser.new_context()  # (a real browser would ask; headless cannot)
            for path in ("/board", "/api/windows"):
                response = anonymous.request.get(base + path)
                assert response.status == 401 and "CHG0000040" not in response.text()
            anonymous.close()
            wall = browser.new_context(http_credentials={"username": "wall", "password": "wall-s3cret"})
            pg = wall.new_page()
            open_board(pg, base + "/board?tv=1")
            assert pg.locator(".row").evaluate_all("rs => rs.map(r => r.dataset.number)") == ["CHG0000040"]
            assert pg.locator("#stale").is_hidden()
            wall.close()
        finally:
            app.close()
