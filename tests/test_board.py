"""The wall board without a browser: the pure selection (domain/board.py), the JSON document, the store's
range read, and the HTTP edge (routes, CSP, read-only, auth). The page itself: test_board_browser.py."""

from __future__ import annotations

import base64
import json
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.board.document import VERSION, Freshness, View, board_document
from connector.board.site import CSP, BoardSite
from connector.board.text import CATALOGS
from connector.config import load_settings
from connector.domain.board import SilenceState, select_board, silence_state
from connector.domain.reconcile import Tracked
from connector.domain.target import Target
from connector.domain.window import MaintenanceWindow, Phase, State
from connector.health import HealthServer, HealthSnapshot
from connector.metrics import Metrics
from connector.store.sqlite import Store

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # 21:00 KST
H = timedelta(hours=1)


def win(
    number: str,
    start: timedelta | None,
    end: timedelta | None,
    state: State = State.SCHEDULED,
    **kw: Any,
) -> MaintenanceWindow:
    return MaintenanceWindow(
        source=kw.pop("source", "servicenow"),
        sys_id=kw.pop("sys_id", number.lower()),
        number=number,
        title=kw.pop("title", f"work {number}"),
        state=state,
        planned_start=NOW + start if start is not None else None,
        planned_end=NOW + end if end is not None else None,
        **kw,
    )


def tracked(w: MaintenanceWindow, phase: Phase | None = None, announced: bool = True) -> Tracked:
    from connector.domain.window import phase_at

    return Tracked(w, phase or phase_at(w, NOW), announced=announced)


# --- select_board: what is shown, in which order -------------------------------------------------


@pytest.mark.parametrize(
    ("window", "shown"),
    [
        pytest.param(win("A", -5 * H, -4 * H), False, id="ended-exactly-at-range-start"),
        pytest.param(win("A", -5 * H, -4 * H + timedelta(seconds=1)), True, id="ends-just-inside"),
        pytest.param(win("A", 48 * H, 50 * H), False, id="starts-exactly-at-range-end"),
        pytest.param(win("A", 48 * H - timedelta(seconds=1), 50 * H), True, id="starts-just-inside"),
        pytest.param(win("A", -30 * H, -20 * H, State.IMPLEMENT), True, id="overrun-from-yesterday"),
        pytest.param(win("A", 60 * H, 61 * H, State.IMPLEMENT), True, id="started-early-far-ahead"),
        pytest.param(win("A", -30 * H, -20 * H, State.CLOSED), False, id="completed-yesterday"),
        pytest.param(win("A", None, None, State.NEW), False, id="draft-without-times"),
        pytest.param(win("A", H, 2 * H, State.NEW), False, id="sent-back-to-draft"),
    ],
)
def test_range_and_running_windows(window: MaintenanceWindow, shown: bool) -> None:
    board = select_board([tracked(window, Phase.SCHEDULED)], NOW)
    assert [i.window.number for i in board.rows] == (["A"] if shown else [])


def test_a_window_never_announced_is_not_shown() -> None:
    board = select_board([tracked(win("A", H, 2 * H), announced=False)], NOW)
    assert board.rows == []


def test_rows_group_then_start_then_number_and_the_two_lists() -> None:
    windows = [
        win("CHG5", 5 * H, 8 * H),
        win("CHG3", H, 3 * H),
        win("CHG2", -H, 2 * H),
        win("CHG1", -3 * H, -H),
        win("CHG0", -3 * H, -H, source="eu"),
        win("CHG4", 2 * H, 3 * H),  # starts exactly 2 h from now: not "within 2 hours"
        win("CHG7", -6 * H, -2 * H, State.IMPLEMENT),  # overrunning
        win("CHG6", H, 3 * H),  # same start as CHG3: by number
    ]
    board = select_board([tracked(w) for w in windows], NOW)
    assert [(i.group, i.window.number) for i in board.rows] == [
        ("eu", "CHG0"),
        ("servicenow", "CHG7"),
        ("servicenow", "CHG1"),
        ("servicenow", "CHG2"),
        ("servicenow", "CHG3"),
        ("servicenow", "CHG6"),
        ("servicenow", "CHG4"),
        ("servicenow", "CHG5"),
    ]
    assert [g for g, _ in board.groups()] == ["eu", "servicenow"]
    phases = {i.window.number: i.phase for i in board.rows}
    assert phases["CHG1"] is Phase.ENDED and phases["CHG2"] is Phase.IN_PROGRESS
    assert phases["CHG7"] is Phase.OVERRUN and phases["CHG5"] is Phase.SCHEDULED
    assert [i.window.number for i in board.running] == ["CHG7", "CHG2"]  # ending first
    assert [i.window.number for i in board.starting] == ["CHG3", "CHG6"]


def test_phase_is_computed_at_now_not_taken_from_the_record() -> None:
    """Between two ticks the record says scheduled; the board already says in progress."""
    w = win("A", -timedelta(seconds=1), H)
    (item,) = select_board([Tracked(w, Phase.SCHEDULED, announced=True)], NOW).rows
    assert item.phase is Phase.IN_PROGRESS
    (item,) = select_board([Tracked(w, Phase.WITHDRAWN, announced=True)], NOW).rows
    assert item.phase is Phase.WITHDRAWN  # known from the source, not from the ticket


def test_an_overrun_bar_reaches_now() -> None:
    w = win("A", -6 * H, -2 * H, State.IMPLEMENT)
    (item,) = select_board([tracked(w)], NOW).rows
    assert (item.bar_start, item.bar_end) == (NOW - 6 * H, NOW)


@pytest.mark.parametrize(
    ("spans", "state"),
    [
        ([], SilenceState.NONE),
        ([(NOW - H, NOW + H)], SilenceState.ACTIVE),
        ([(NOW, NOW + H)], SilenceState.ACTIVE),
        ([(NOW - H, NOW)], SilenceState.NONE),  # expired at now
        ([(NOW + H, NOW + 2 * H)], SilenceState.PLANNED),
        ([(NOW - 2 * H, NOW - H), (NOW + H, NOW + 2 * H)], SilenceState.PLANNED),
    ],
)
def test_silence_state(spans: list[tuple[datetime, datetime]], state: str) -> None:
    assert silence_state(spans, NOW) == state


def test_select_board_is_pure() -> None:
    windows = [tracked(win("A", -H, H)), tracked(win("B", H, 2 * H))]
    assert select_board(windows, NOW) == select_board(windows, NOW)


# --- the JSON document -------------------------------------------------------------------------


def test_document_v1_times_in_the_views_zone() -> None:
    w = win("CHG1", -H, 14 * H, cis=("db01",), assignment_group="DBA", url="https://snow/x")
    board = select_board([tracked(w)], NOW, silences={w.key: [(NOW - H, NOW + 14 * H)]})
    doc = board_document(board, View(None, "ko", "Asia/Seoul", 20), Freshness(True))
    assert doc["version"] == VERSION == 1
    assert doc["now"] == "2026-11-26T12:00:00Z" and doc["now_label"] == "21:00"
    assert doc["view"] == {"channel": None, "locale": "ko", "timezone": "Asia/Seoul", "tz_name": "KST"}
    assert doc["health"] == {"ok": True, "reasons": []}
    assert doc["text"]["running"] == "지금 진행 중"
    (group,) = doc["groups"]
    (item,) = group["windows"]
    assert item["start_label"] == "20:00" and item["end_label"] == "11-27 11:00"  # next local day
    assert (item["cis"], item["group"], item["silence"], item["phase"]) == (
        ["db01"],
        "DBA",
        "active",
        "in_progress",
    )
    assert doc["running"] == [item["id"]] and doc["starting"] == []
    ticks = doc["ticks"]
    assert len(ticks) == 51 and ticks[0]["label"] == "18:00" and ticks[0]["day"] == "11-26"
    assert next(t for t in ticks if t["day"] == "11-27")["label"] == "00:00"
    assert json.loads(json.dumps(doc)) == doc


def test_document_says_why_it_is_stale() -> None:
    board = select_board([], NOW)
    fresh = Freshness(False, ["no successful poll for 400s (limit 180s)"], {"eu": "HTTP 503"})
    doc = board_document(board, View("C1", "en", "UTC", 15), fresh)
    assert doc["health"] == {
        "ok": False,
        "reasons": ["no successful poll for 400s (limit 180s)", "source eu failing: HTTP 503"],
    }
    assert (
        board_document(board, View("C1", "en", "UTC"), Freshness(True, (), {"eu": "x"}))["health"]["ok"]
        is False
    )


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    fields = {
        loc: {k: sorted(f for _, f, _, _ in string.Formatter().parse(v) if f) for k, v in cat.items()}
        for loc, cat in CATALOGS.items()
    }
    assert fields["ko"] == fields["en"]


# --- the store's range read --------------------------------------------------------------------


def test_windows_between_reads_only_the_range_and_the_running(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    with store.transaction():
        for day in range(-300, 300):  # a long history and a long future: only a few are in range
            w = win(f"CHG{day + 1000:04d}", day * 24 * H + H, day * 24 * H + 2 * H)
            store.save_tracked(tracked(w))
        old_overrun = win("CHG9999", -200 * H, -199 * H, State.IMPLEMENT)
        store.save_tracked(tracked(old_overrun))
        store.set_targets(old_overrun.key, [Target.slack("C1")])
        store.set_silences(old_overrun.key, [{"id": "s1", "starts_at": "x", "ends_at": "y"}])
    rows = store.windows_between(NOW - 4 * H, NOW + 48 * H)
    numbers = sorted(r.tracked.window.number for r in rows)
    assert numbers == ["CHG1000", "CHG1001", "CHG9999"]  # today, tomorrow, and the overrun
    overrun = next(r for r in rows if r.tracked.window.number == "CHG9999")
    assert overrun.targets == [Target.slack("C1")] and overrun.silences[0]["id"] == "s1"
    assert next(r for r in rows if r.tracked.window.number == "CHG1000").targets is None
    store.close()


# --- the HTTP edge ------------------------------------------------------------------------------


def _doc(channel: str | None) -> dict[str, Any]:
    board = select_board([tracked(win("CHG1", -H, H))], NOW)
    return board_document(board, View(channel, "en", "UTC"), Freshness(True))


def _serve(token: str | None) -> Iterator[tuple[HealthServer, list[str | None]]]:
    asked: list[str | None] = []

    def data(channel: str | None) -> dict[str, Any]:
        asked.append(channel)
        return _doc(channel)

    snapshot = HealthSnapshot(started_at=NOW, uptime=0.0)
    srv = HealthServer(
        "127.0.0.1",
        0,
        lambda: snapshot,
        Metrics("1").registry,
        mounts=[BoardSite(data, ["C1"], token=token)],
    )
    srv.start()
    yield srv, asked
    srv.stop()


@pytest.fixture
def listener() -> Iterator[tuple[HealthServer, list[str | None]]]:
    yield from _serve(None)


@pytest.fixture
def locked() -> Iterator[tuple[HealthServer, list[str | None]]]:
    yield from _serve("s3cret")


def call(
    srv: HealthServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.integration
def test_pages_assets_and_data_carry_the_csp(listener: tuple[HealthServer, list[str | None]]) -> None:
    srv, asked = listener
    for path, ctype in [
        ("/board", "text/html"),
        ("/board/", "text/html"),
        ("/board/C1", "text/html"),
        ("/board/assets/board.js", "text/javascript"),
        ("/board/assets/board.css", "text/css"),
        ("/board/assets/favicon.svg", "image/svg+xml"),
        ("/api/windows", "application/json"),
        ("/api/windows/C1", "application/json"),
    ]:
        status, headers, body = call(srv, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype), path
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body
    assert asked == [None, "C1"]
    assert json.loads(call(srv, "/api/windows/C1")[2])["view"]["channel"] == "C1"
    assert (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'" in CSP
    )


@pytest.mark.integration
def test_the_page_has_nothing_inline_and_nothing_from_elsewhere() -> None:
    from importlib import resources

    static = resources.files("connector.board").joinpath("static")
    html = static.joinpath("board.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    for name in ("board.html", "board.css", "board.js"):
        text = static.joinpath(name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "eval(" not in text, name


@pytest.mark.integration
@pytest.mark.parametrize(
    "path", ["/board/C9", "/api/windows/C9", "/board/assets/x.js", "/boardX", "/api/windowsX"]
)
def test_unknown_paths_are_404(listener: tuple[HealthServer, list[str | None]], path: str) -> None:
    assert call(listener[0], path)[0] == 404


@pytest.mark.integration
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
@pytest.mark.parametrize("path", ["/board", "/api/windows", "/healthz", "/nope"])
def test_read_only_every_other_method_is_405(
    listener: tuple[HealthServer, list[str | None]], method: str, path: str
) -> None:
    status, headers, _ = call(listener[0], path, method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


@pytest.mark.integration
def test_gzip_for_a_client_that_takes_it(listener: tuple[HealthServer, list[str | None]]) -> None:
    import gzip

    srv, _ = listener
    _, plain_headers, plain = call(srv, "/board/assets/board.js")
    assert "Content-Encoding" not in plain_headers and plain_headers["Vary"] == "Accept-Encoding"
    status, headers, body = call(srv, "/board/assets/board.js", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == plain and len(body) < len(plain) / 2
    _, headers, _ = call(srv, "/board/assets/favicon.svg", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in headers


@pytest.mark.integration
def test_head_answers_without_a_body(listener: tuple[HealthServer, list[str | None]]) -> None:
    status, headers, body = call(listener[0], "/api/windows", "HEAD")
    assert (status, body) == (200, b"") and int(headers["Content-Length"]) > 0


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer s3cret", 200),
        ("bearer   s3cret", 200),
        ("Bearer s3cre", 401),
        ("Bearer s3cretX", 401),
        (_basic("wall", "s3cret"), 200),
        (_basic("", "s3cret"), 200),
        (_basic("s3cret", ""), 401),
        ("Basic !!notbase64", 401),
        ("Token s3cret", 401),
    ],
)
def test_token_bearer_or_basic(
    locked: tuple[HealthServer, list[str | None]], authorization: str | None, status: int
) -> None:
    srv, asked = locked
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/board", "/board/C1", "/api/windows/C1", "/board/assets/board.js"):
        got, got_headers, body = call(srv, path, headers=headers)
        assert got == status, (path, authorization)
        if status == 401:
            assert got_headers["WWW-Authenticate"].startswith('Basic realm="itsm-connector board"')
            assert got_headers["Content-Security-Policy"] == CSP
            assert b"CHG1" not in body
    assert asked == (["C1"] if status == 200 else [])  # refused before any data is read
    assert call(srv, "/healthz")[0] == 200  # the token guards the board only


def test_board_token_from_a_credential_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "servicenow: {url: 'https://x.service-now.com', username: u, password: p}\n"
        "slack: {channel: C1, token: t}\n"
        "health: {enabled: true, listen: '0.0.0.0:9464'}\n"
    )
    assert load_settings(cfg, env={}).health.board_token is None
    (tmp_path / "board-token").write_text("from-credential\n")
    settings = load_settings(cfg, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.health.board_token is not None
    assert settings.health.board_token.get_secret_value() == "from-credential"
    assert "from-credential" not in repr(settings)
    (tmp_path / "file-token").write_text("from-file")
    cfg.write_text(
        cfg.read_text().replace(
            "'0.0.0.0:9464'}", f"'0.0.0.0:9464', board_token_file: {tmp_path}/file-token}}"
        )
    )
    assert load_settings(cfg, env={}).health.board_token.get_secret_value() == "from-file"  # type: ignore[union-attr]


def _settings(tmp_path: Path, **health: Any) -> Any:
    from connector.config import Settings

    return Settings.model_validate(
        {
            "servicenow": {"url": "http://127.0.0.1:9", "username": "u", "password": "p"},
            "slack": {"channel": "C1", "token": "t", "base_url": "http://127.0.0.1:9/api/"},
            "state": {"path": tmp_path / "state.db"},
            "health": {"enabled": True, **health},
        }
    )


@pytest.mark.parametrize(
    ("listen", "token", "warned"),
    [("0.0.0.0:0", None, True), ("0.0.0.0:0", "s3cret", False), ("127.0.0.1:0", None, False)],
)
def test_an_open_board_without_a_token_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, listen: str, token: str | None, warned: bool
) -> None:
    from connector.wiring import build_connector

    caplog.set_level("WARNING", logger="connector.board.site")
    health: dict[str, Any] = {"listen": listen, **({"board_token": token} if token else {})}
    app = build_connector(_settings(tmp_path, **health))
    app.close()
    found = [r.getMessage() for r in caplog.records if "board_token" in r.getMessage()]
    assert found == ([f"the board (/board, /api/windows) is served on {listen} without health.board_token: "
                      "anyone who can reach it reads every ticket on it"] if warned else [])  # fmt: skip


def test_every_static_file_ships_as_package_data() -> None:
    """The page is served from the installed package: a file the patterns miss is a 404 in production."""
    import fnmatch
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    line = re.search(r'^"connector\.board" = \[(.*)\]$', text, re.MULTILINE)
    assert line is not None, "pyproject.toml: [tool.setuptools.package-data] has no connector.board entry"
    patterns = re.findall(r'"([^"]+)"', line.group(1))
    static = root / "connector" / "board" / "static"
    files = [p.relative_to(static.parent).as_posix() for p in static.iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), (files, patterns)


def test_the_board_can_be_turned_off(tmp_path: Path) -> None:
    from connector.wiring import build_connector

    for board, status in ((False, 404), (True, 200)):
        app = build_connector(_settings(tmp_path, listen="127.0.0.1:0", board=board))
        assert app.health is not None
        app.health.start()
        try:
            assert call(app.health, "/board")[0] == status and call(app.health, "/api/windows")[0] == status
            assert call(app.health, "/healthz")[0] in (200, 503)
        finally:
            app.close()
