"""The Slack simulator, driven through the real slack_sdk WebClient over loopback."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, FixedValueRetryIntervalCalculator

from connector.simulators.slack import CallLogEntry, SlackSimulator

pytestmark = pytest.mark.integration

TOKEN = "xoxb-simulator"
CHANNEL = "C0MAINT01"
TS_PATTERN = re.compile(r"^\d+\.\d{6}$")


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def header(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": "header", "text": {"type": kind, "text": text}}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


WINDOW_BLOCKS = [
    header("CHG0030001 Database failover"),
    section("*Window:* 02:00–04:00 UTC"),
    {"type": "divider"},
    {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "Owner: DBA"}, {"type": "plain_text", "text": "P2"}],
    },
]
METADATA = {"event_type": "maintenance_window", "event_payload": {"sys_id": "abc123", "number": "CHG0030001"}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SlackSimulator]:
    with SlackSimulator(clock=clock, tokens=(TOKEN, "xoxb-second")) as simulator:
        yield simulator


def make_client(
    sim: SlackSimulator, *, token: str = TOKEN, retries: bool = False, timeout: float = 2
) -> WebClient:
    """No retry handlers unless asked: the SDK's default one silently resends after a dropped socket.

    ``retries=True`` installs that same default handler (one retry on a connection error), minus its
    backoff sleep.
    """
    no_wait = FixedValueRetryIntervalCalculator(fixed_internal=0.0)
    handlers = [ConnectionErrorRetryHandler(interval_calculator=no_wait)] if retries else []
    return WebClient(token=token, base_url=sim.base_url, timeout=timeout, retry_handlers=handlers)  # type: ignore[arg-type]


@pytest.fixture
def client(sim: SlackSimulator) -> WebClient:
    return make_client(sim)


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def test_auth_test_identifies_the_bot(client: WebClient) -> None:
    response = client.auth_test()
    assert response.data == {
        "ok": True,
        "url": "https://sim.slack.com/",
        "team": "Sim",
        "user": "itsm-bot",
        "team_id": "T0SIM",
        "user_id": "U0BOT",
        "bot_id": "B0BOT",
    }


def test_post_parent_with_blocks_and_metadata_is_found_again_in_history(
    sim: SlackSimulator, client: WebClient
) -> None:
    posted = client.chat_postMessage(
        channel=CHANNEL, text="fallback", blocks=WINDOW_BLOCKS, metadata=METADATA
    )

    assert posted["channel"] == CHANNEL
    assert TS_PATTERN.match(posted["ts"])
    assert posted["message"]["ts"] == posted["ts"]
    assert posted["message"]["text"] == "fallback"
    assert posted["message"]["blocks"] == WINDOW_BLOCKS
    with_metadata = client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert [m["metadata"] for m in with_metadata["messages"]] == [METADATA]
    without = client.conversations_history(channel=CHANNEL)
    assert "metadata" not in without["messages"][0]
    [stored] = sim.parents(CHANNEL)
    assert (stored.ts, stored.blocks, stored.metadata, stored.user) == (
        posted["ts"],
        WINDOW_BLOCKS,
        METADATA,
        "U0BOT",
    )


def test_thread_reply_and_update_shape_parent_and_history(sim: SlackSimulator, client: WebClient) -> None:
    parent_ts = client.chat_postMessage(channel=CHANNEL, text="window", metadata=METADATA)["ts"]
    reply = client.chat_postMessage(channel=CHANNEL, text="started", thread_ts=parent_ts)
    updated = client.chat_update(
        channel=CHANNEL, ts=parent_ts, text="window (in progress)", blocks=WINDOW_BLOCKS
    )

    assert reply["message"]["thread_ts"] == parent_ts
    assert (updated["ts"], updated["text"]) == (parent_ts, "window (in progress)")
    [parent] = sim.parents(CHANNEL)
    assert (parent.text, parent.edited, parent.metadata) == ("window (in progress)", 1, METADATA)
    assert [(r.text, r.thread_ts) for r in parent.replies] == [("started", parent_ts)]
    [top] = client.conversations_history(channel=CHANNEL)["messages"]  # replies are not top-level
    assert (top["ts"], top["thread_ts"], top["reply_count"]) == (parent_ts, parent_ts, 1)

    client.chat_update(channel=CHANNEL, ts=parent_ts, text="window", metadata={})
    assert sim.parents(CHANNEL)[0].metadata is None
    assert sim.parents(CHANNEL)[0].edited == 2


def test_ts_strictly_increase_within_one_clock_second(sim: SlackSimulator, client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"] for i in range(5)]

    assert all(TS_PATTERN.match(ts) and ts.startswith("1700000000.") for ts in stamps)
    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps, key=float)


def test_history_pages_newest_first(client: WebClient) -> None:
    posted = [client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"] for i in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        page = client.conversations_history(channel=CHANNEL, limit=2, cursor=cursor)
        pages += 1
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] == bool(cursor)
        if not cursor:
            break
    assert (seen, pages) == (posted[::-1], 3)
    window = client.conversations_history(channel=CHANNEL, oldest=posted[1], latest=posted[4])["messages"]
    assert [m["ts"] for m in window] == [posted[3], posted[2]]  # both bounds exclusive


def test_replies_page_parent_first_then_oldest_first(client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]
    replies = [
        client.chat_postMessage(channel=CHANNEL, text=f"r{i}", thread_ts=parent)["ts"] for i in range(4)
    ]

    first = client.conversations_replies(channel=CHANNEL, ts=parent, limit=2)
    rest = client.conversations_replies(
        channel=CHANNEL, ts=parent, limit=10, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in first["messages"]] == [parent, replies[0]]
    assert first["has_more"] is True
    assert [m["ts"] for m in rest["messages"]] == replies[1:]
    assert (rest["has_more"], rest["response_metadata"]["next_cursor"]) == (False, "")


def test_channel_errors(sim: SlackSimulator, client: WebClient) -> None:
    sim.add_channel("C0OUT", "outside", member=False)
    sim.add_channel("C0OLD", "old", archived=True)
    expected = {"C0NOPE": "channel_not_found", "C0OUT": "not_in_channel", "C0OLD": "is_archived"}
    for channel, error in expected.items():
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=channel, text="hi")
        assert slack_error(excinfo) == error

    info = client.conversations_info(channel="C0OUT")["channel"]
    assert info == {
        "id": "C0OUT",
        "name": "outside",
        "is_member": False,
        "is_archived": False,
        "is_channel": True,
    }
    client.conversations_join(channel="C0OUT")
    assert client.chat_postMessage(channel="C0OUT", text="hi")["ok"] is True
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_info(channel="C0NOPE")
    assert slack_error(excinfo) == "channel_not_found"


def test_conversations_list_pages_and_info_takes_ids_only(sim: SlackSimulator, client: WebClient) -> None:
    """As Slack: chat.postMessage takes a ``#name``, conversations.info an ID only; conversations.list
    maps names to IDs, a page of ``limit`` at a time."""
    sim.add_channel("C0NET", "netops")
    sim.add_channel("C0OLD", "old", archived=True)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_info(channel="#netops")
    assert slack_error(excinfo) == "channel_not_found"
    seen, cursor = [], None
    while True:
        page = client.conversations_list(limit=2, cursor=cursor, exclude_archived=True)
        seen += [(c["id"], c["name"]) for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == [("C0MAINT01", "maintenance"), ("C0NET", "netops")]


def test_scopes_are_sent_and_enforced() -> None:
    with SlackSimulator(scopes=["chat:write", "channels:history"]) as sim:
        client = WebClient(token="xoxb-simulator", base_url=sim.base_url)
        auth = client.auth_test()
        assert auth.headers["X-OAuth-Scopes"] == "channels:history,chat:write"
        assert client.chat_postMessage(channel="C0MAINT01", text="hi")["ok"] is True
        with pytest.raises(SlackApiError) as excinfo:
            client.conversations_list()
        assert slack_error(excinfo) == "missing_scope"


def test_unknown_and_revoked_tokens(sim: SlackSimulator) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        make_client(sim, token="xoxb-forged").auth_test()
    assert slack_error(excinfo) == "invalid_auth"

    sim.revoke_token("xoxb-second")
    with pytest.raises(SlackApiError) as excinfo:
        make_client(sim, token="xoxb-second").chat_postMessage(channel=CHANNEL, text="hi")
    assert slack_error(excinfo) == "token_revoked"
    assert make_client(sim).auth_test()["ok"] is True
    assert sim.parents(CHANNEL) == []


@pytest.mark.parametrize(
    ("blocks", "error"),
    [
        pytest.param([section("x")] * 51, "invalid_blocks", id="51-blocks"),
        pytest.param([header("x", kind="mrkdwn")], "invalid_blocks", id="mrkdwn-header"),
        pytest.param([header("x" * 151)], "invalid_blocks", id="header-151"),
        pytest.param([section("x" * 3001)], "invalid_blocks", id="section-3001"),
        pytest.param([{"type": "carousel"}], "invalid_blocks", id="unknown-type"),
        pytest.param([{"text": {"type": "plain_text", "text": "x"}}], "invalid_blocks", id="no-type"),
        pytest.param([section("x")] * 50, None, id="50-blocks"),
        pytest.param([header("x" * 150), section("x" * 3000)], None, id="at-limits"),
    ],
)
def test_block_kit_limits(client: WebClient, blocks: list[dict[str, Any]], error: str | None) -> None:
    if error is None:
        assert client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)["ok"] is True
        return
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)
    assert slack_error(excinfo) == error


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_argument_errors(client: WebClient) -> None:
    ts = client.chat_postMessage(channel=CHANNEL, text="parent")["ts"]
    calls = {
        "no_text": lambda: client.chat_postMessage(channel=CHANNEL),
        "thread_not_found": lambda: client.chat_postMessage(channel=CHANNEL, text="r", thread_ts="1.000001"),
        "invalid_metadata_format": lambda: client.chat_postMessage(
            channel=CHANNEL, text="m", metadata={"event_type": "x"}
        ),
        "message_not_found": lambda: client.chat_update(channel=CHANNEL, ts="1.000001", text="x"),
        "msg_too_long": lambda: client.chat_update(channel=CHANNEL, ts=ts, text="x" * 4001),
    }
    for error, call in calls.items():
        with pytest.raises(SlackApiError) as excinfo:
            call()
        assert slack_error(excinfo) == error
    assert client.chat_update(channel=CHANNEL, ts=ts, text="x" * 4000)["ok"] is True


def test_form_bodies_and_get_queries_are_understood(sim: SlackSimulator, client: WebClient) -> None:
    form = {
        "channel": CHANNEL,
        "text": "via form",
        "blocks": json.dumps(WINDOW_BLOCKS),
        "metadata": json.dumps(METADATA),
    }
    ts = client.api_call("chat.postMessage", params=form)["ts"]  # params= is sent form-encoded
    [stored] = sim.parents(CHANNEL)
    assert (stored.ts, stored.blocks, stored.metadata) == (ts, WINDOW_BLOCKS, METADATA)

    url = f"{sim.base_url}conversations.history?channel={CHANNEL}&include_all_metadata=true&token={TOKEN}"
    with urllib.request.urlopen(url, timeout=2) as response:  # a plain GET with the token as a parameter
        body = json.loads(response.read())
    assert [(m["ts"], m["metadata"]) for m in body["messages"]] == [(ts, METADATA)]


def test_rate_limit_per_channel_answers_429_with_retry_after(clock: FakeClock) -> None:
    with SlackSimulator(clock=clock, post_rate_per_channel=0.25) as sim:  # one post per 4 s
        sim.add_channel("C0OTHER", "other")
        client = make_client(sim)
        client.chat_postMessage(channel=CHANNEL, text="first")
        clock.now += 1.5
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=CHANNEL, text="too soon")
        response = excinfo.value.response
        assert (response.status_code, response["error"], response.headers["Retry-After"]) == (
            429,
            "ratelimited",
            "3",
        )
        assert client.chat_postMessage(channel="C0OTHER", text="other channel")["ok"] is True
        clock.now += 2.5  # 4 s after the last accepted post
        assert client.chat_postMessage(channel=CHANNEL, text="on time")["ok"] is True
        assert [m.text for m in sim.parents(CHANNEL)] == ["first", "on time"]
        assert [c.status for c in sim.calls if c.channel == CHANNEL] == [200, 429, 200]


def test_steady_one_per_second_passes_and_a_burst_does_not(clock: FakeClock) -> None:
    with SlackSimulator(clock=clock, post_rate_per_channel=1.0) as sim:
        client = make_client(sim)
        for i in range(3):
            client.chat_postMessage(channel=CHANNEL, text=f"tick {i}")
            clock.now += 1.0
        client.chat_postMessage(channel=CHANNEL, text="burst 1")
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=CHANNEL, text="burst 2")
        assert excinfo.value.response.headers["Retry-After"] == "1"
        assert [c.status for c in sim.calls] == [200, 200, 200, 200, 429]


def test_injected_faults_answer_once_each_then_recover(sim: SlackSimulator, client: WebClient) -> None:
    sim.inject("chat.postMessage", "429", retry_after=7)
    sim.inject("chat.postMessage", "500")
    sim.inject("chat.postMessage", "503")
    sim.inject("chat.postMessage", "error", error="fatal_error")
    sim.inject("chat.postMessage", "html")
    seen = []
    for _ in range(5):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel=CHANNEL, text="x")
        seen.append((excinfo.value.response.status_code, excinfo.value.response.get("error")))
        if excinfo.value.response.status_code == 429:
            assert excinfo.value.response.headers["Retry-After"] == "7"
    assert seen[:4] == [
        (429, "ratelimited"),
        (500, "internal_error"),
        (503, "service_unavailable"),
        (200, "fatal_error"),
    ]
    assert seen[4][0] == 200 and "non-JSON" in str(seen[4][1])
    assert sim.parents(CHANNEL) == []
    assert client.chat_postMessage(channel=CHANNEL, text="x")["ok"] is True
    assert [c.fault for c in sim.calls] == ["429", "500", "503", "error", "html", None]


def test_lost_response_stores_the_message_but_the_client_never_learns_it(sim: SlackSimulator) -> None:
    sim.inject("chat.postMessage", "lost_response")
    client = make_client(sim)
    with pytest.raises(http.client.RemoteDisconnected):
        client.chat_postMessage(channel=CHANNEL, text="landed", metadata=METADATA)

    [found] = client.conversations_history(channel=CHANNEL, include_all_metadata=True)["messages"]
    assert (found["text"], found["metadata"]) == ("landed", METADATA)
    assert sim.calls[0] == CallLogEntry(
        "chat.postMessage", CHANNEL, 0, True, None, "lost_response", found["ts"]
    )


def test_lost_response_plus_sdk_default_retry_double_posts(sim: SlackSimulator) -> None:
    sim.inject("chat.postMessage", "lost_response")
    response = make_client(sim, retries=True).chat_postMessage(channel=CHANNEL, text="once")
    assert [m.text for m in sim.parents(CHANNEL)] == ["once", "once"]  # Slack has no idempotency key
    assert response["ts"] == sim.parents(CHANNEL)[1].ts


def test_drop_closes_the_socket_without_storing(sim: SlackSimulator, client: WebClient) -> None:
    sim.inject("chat.postMessage", "drop")
    with pytest.raises(http.client.RemoteDisconnected):
        client.chat_postMessage(channel=CHANNEL, text="lost")
    assert sim.parents(CHANNEL) == []
    assert sim.calls == [CallLogEntry("chat.postMessage", CHANNEL, 0, False, None, "drop")]
    sim.reset_calls()
    assert sim.calls == []


def test_slow_answers_late_and_still_applies(sim: SlackSimulator) -> None:
    sim.inject("chat.postMessage", "slow", delay=0.4)
    with pytest.raises(TimeoutError):
        make_client(sim, timeout=0.1).chat_postMessage(channel=CHANNEL, text="late")
    deadline = time.monotonic() + 2
    while not sim.calls and time.monotonic() < deadline:  # the handler is still asleep
        time.sleep(0.02)
    assert sim.calls[0].fault == "slow" and sim.calls[0].ok
    assert [m.text for m in sim.parents(CHANNEL)] == ["late"]

    sim.inject("chat.update", "slow", delay=0.05)
    late_ts = sim.calls[0].ts
    assert late_ts is not None
    assert make_client(sim).chat_update(channel=CHANNEL, ts=late_ts, text="edited")["ok"] is True


def test_delete_and_permalinks(client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="p")["ts"]
    reply = client.chat_postMessage(channel=CHANNEL, text="r", thread_ts=parent)["ts"]

    link = client.chat_getPermalink(channel=CHANNEL, message_ts=parent)["permalink"]
    thread_link = client.chat_getPermalink(channel=CHANNEL, message_ts=reply)["permalink"]
    assert link == f"https://sim.slack.com/archives/{CHANNEL}/p{parent.replace('.', '')}"
    assert thread_link.endswith(f"/p{reply.replace('.', '')}?thread_ts={parent}&cid={CHANNEL}")
    assert client.chat_delete(channel=CHANNEL, ts=reply).data == {"ok": True, "channel": CHANNEL, "ts": reply}
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_delete(channel=CHANNEL, ts=reply)
    assert slack_error(excinfo) == "message_not_found"


def test_transcript_shows_what_a_reader_sees(sim: SlackSimulator, client: WebClient) -> None:
    parent = client.chat_postMessage(channel=CHANNEL, text="fallback", blocks=WINDOW_BLOCKS)["ts"]
    client.chat_postMessage(channel=CHANNEL, text="Maintenance started", thread_ts=parent)
    client.chat_postMessage(channel=CHANNEL, text="Two lines\nof reply", thread_ts=parent)
    client.chat_update(
        channel=CHANNEL,
        ts=parent,
        text="fallback",
        blocks=[b for b in WINDOW_BLOCKS if b["type"] != "header"],
    )
    client.chat_postMessage(channel=CHANNEL, text="plain parent")

    assert sim.transcript(CHANNEL) == (
        "#maintenance (C0MAINT01)\n"
        "\n"
        "[1] edits: 1\n"
        "*Window:* 02:00–04:00 UTC\n"
        "Owner: DBA | P2\n"
        "    ↳ Maintenance started\n"
        "    ↳ Two lines\n"
        "      of reply\n"
        "\n"
        "[2] edits: 0\n"
        "plain parent\n"
    )


def test_concurrent_posts_get_distinct_ts(sim: SlackSimulator) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def post_many() -> None:
        client = make_client(sim)
        for i in range(10):
            ts = client.chat_postMessage(channel=CHANNEL, text=str(i))["ts"]
            with lock:
                results.append(ts)

    threads = [threading.Thread(target=post_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 40
    assert [m.ts for m in sim.parents(CHANNEL)] == sorted(
        results, key=lambda ts: tuple(map(int, ts.split(".")))
    )
