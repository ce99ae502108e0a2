"""The Alertmanager sink against the real binary (Debian's 0.25), plus error classification with
``responses``. Alerts are posted for the window's CIs and for look-alikes, and ``status.silencedBy`` of
each is read back through the API after every step."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses

from connector.alertmanager.apply import AlertmanagerSink
from connector.alertmanager.client import AlertmanagerClient, AlertmanagerError, format_time, parse_time
from connector.alertmanager.plan import SilenceOutcome, SilenceSpec, StoredSilence, plan_silences
from connector.alertmanager.settings import AlertmanagerSettings, Matcher
from connector.domain.window import MaintenanceWindow, State, phase_at
from tests.alertmanager_harness import RunningAlertmanager, free_port, run_alertmanager

UTC = timezone.utc
H, M = timedelta(hours=1), timedelta(minutes=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Counted:
    """A session that records every request it sends."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.calls: list[str] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, reply: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.calls.append(f"{reply.request.method} {reply.request.path_url}")

    def writes(self) -> list[str]:
        return [c for c in self.calls if not c.startswith("GET")]


@pytest.fixture
def counted() -> Counted:
    return Counted()


def make_sink(url: str, counted: Counted, **changes: Any) -> tuple[AlertmanagerClient, AlertmanagerSink]:
    s = AlertmanagerSettings(url=url, **changes)
    client = AlertmanagerClient(s, counted.session)
    return client, AlertmanagerSink(client, s)


def window(
    cis: tuple[str, ...], start: datetime, end: datetime, state: State = State.SCHEDULED
) -> MaintenanceWindow:
    return MaintenanceWindow(
        source="sn",
        sys_id=uuid.uuid4().hex,
        number="CHG0042",
        title="Patch database hosts",
        state=state,
        planned_start=start,
        planned_end=end,
        cis=cis,
        url="https://snow.example/chg/42",
    )


def apply(sink: AlertmanagerSink, w: MaintenanceWindow, current: list[StoredSilence]) -> SilenceOutcome:
    now = utcnow()
    return sink.apply(w, phase_at(w, now), current, now)


def post_alerts(am: RunningAlertmanager, *instances: str) -> None:
    now = utcnow()
    alerts = [
        {
            "labels": {"alertname": "HostDown", "instance": i, "severity": "critical"},
            "startsAt": format_time(now - M),
            "endsAt": format_time(now + H),
        }
        for i in instances
    ]
    requests.post(f"{am.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()


def silenced(am: RunningAlertmanager, *instances: str) -> dict[str, list[str]]:
    """instance → ids of the silences muting its alert, for ``instances``."""
    reply = requests.get(f"{am.url}/api/v2/alerts", timeout=5)
    reply.raise_for_status()
    found = {a["labels"]["instance"]: sorted(a["status"]["silencedBy"]) for a in reply.json()}
    return {i: found[i] for i in instances}


def state(client: AlertmanagerClient, silence_id: str) -> str:
    got = client.get(silence_id)
    assert got is not None
    return str(got["status"]["state"])


# -- the proof: a window's life against the real Alertmanager -----------------------------------------


@pytest.mark.integration
def test_window_lifecycle(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted, extra_matchers=[{"name": "severity", "value": "critical"}])
    ours = ("lc-db-01.prod:9100", "lc-db02:9100", "lc-db02")
    others = ("lc-db03:9100", "lc-db-01Xprod:9100", "lc-db021:9100", "lc-db-01.prod.other:9100")
    post_alerts(am, *ours, *others)
    nobody: dict[str, list[str]] = {i: [] for i in [*ours, *others]}
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds

    # Announced, starts in an hour: a pending silence; nothing muted before the window.
    w = window(("lc-db02", "lc-db-01.prod"), t + H, t + 3 * H)
    out = apply(sink, w, [])
    assert [c.kind for c in out.changes] == ["created"] and out.problems == []
    (pending,) = out.silences
    assert state(client, pending.id) == "pending"
    assert silenced(am, *ours, *others) == nobody

    # Rescheduled while pending: updated in place, same id.
    w = window(w.cis, t + 2 * H, t + 4 * H)
    out = apply(sink, w, out.silences)
    assert [(c.kind, c.id) for c in out.changes] == [("updated", pending.id)]

    # Work starts early (Implement): the pending silence cannot become active in place -> new id.
    w = window(w.cis, t - 10 * M, t + H, State.IMPLEMENT)
    out = apply(sink, w, out.silences)
    (active,) = out.silences
    assert [(c.kind, c.id, c.replaces) for c in out.changes] == [("replaced", active.id, pending.id)]
    assert state(client, pending.id) == "expired" and state(client, active.id) == "active"
    assert silenced(am, *ours, *others) == {**nobody, **{i: [active.id] for i in ours}}

    # Applying the same state again writes nothing and reads nothing.
    counted.calls.clear()
    again = apply(sink, w, out.silences)
    assert (again.silences, again.changes, counted.calls) == (out.silences, [], [])

    # Planned end moved out: the active silence is extended in place.
    w = window(w.cis, w.planned_start or t, t + 2 * H, State.IMPLEMENT)
    out = apply(sink, w, out.silences)
    assert [(c.kind, c.id) for c in out.changes] == [("updated", active.id)]
    got = client.get(active.id)
    assert got is not None and parse_time(got["endsAt"]) == w.planned_end
    assert silenced(am, *ours, *others) == {**nobody, **{i: [active.id] for i in ours}}

    # Closed early: expired at once, nothing muted any more, and nothing left to do.
    w = window(w.cis, t - 10 * M, t + 2 * H, State.CLOSED)
    out = apply(sink, w, out.silences)
    assert [(c.kind, c.id) for c in out.changes] == [("expired", active.id)] and out.silences == []
    assert state(client, active.id) == "expired"
    assert silenced(am, *ours, *others) == nobody
    counted.calls.clear()
    assert apply(sink, w, []) == SilenceOutcome() and counted.calls == []


@pytest.mark.integration
def test_cis_changed_new_silence_old_expired(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted)
    post_alerts(am, "cc-a:9100", "cc-b:9100")
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    out = apply(sink, window(("cc-a",), t - M, t + H, State.IMPLEMENT), [])
    (old,) = out.silences
    assert silenced(am, "cc-a:9100", "cc-b:9100") == {"cc-a:9100": [old.id], "cc-b:9100": []}

    out = apply(sink, window(("cc-b",), t - M, t + H, State.IMPLEMENT), out.silences)
    (new,) = out.silences
    assert [(c.kind, c.id) for c in out.changes] == [("created", new.id), ("expired", old.id)]
    assert state(client, old.id) == "expired"
    assert silenced(am, "cc-a:9100", "cc-b:9100") == {"cc-a:9100": [], "cc-b:9100": [new.id]}


@pytest.mark.integration
def test_active_rescheduled_to_later_is_replaced(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted)
    post_alerts(am, "rs-a:9100")
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    out = apply(sink, window(("rs-a",), t - M, t + H), [])
    (active,) = out.silences
    out = apply(sink, window(("rs-a",), t + 24 * H, t + 25 * H), out.silences)
    (pending,) = out.silences
    assert [(c.kind, c.replaces) for c in out.changes] == [("replaced", active.id)]
    assert (state(client, active.id), state(client, pending.id)) == ("expired", "pending")
    assert silenced(am, "rs-a:9100") == {"rs-a:9100": []}


@pytest.mark.integration
def test_overrun_extended_in_place(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted)
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    w = window(("ov-a",), t - 2 * H, t - M, State.IMPLEMENT)  # planned end passed: overrun
    out = sink.apply(w, phase_at(w, t), [], t)
    (sil,) = out.silences
    assert sil.ends_at == t - M + 30 * M
    later = t + 20 * M  # our plan looks ahead; Alertmanager's clock is earlier: still in place
    out = sink.apply(w, phase_at(w, later), out.silences, later)
    assert [(c.kind, c.id) for c in out.changes] == [("updated", sil.id)]
    got = client.get(sil.id)
    assert got is not None and parse_time(got["endsAt"]) == out.silences[0].ends_at


@pytest.mark.integration
def test_lost_reply_is_adopted_not_duplicated(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted)
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    w = window(("lr-a",), t + H, t + 2 * H)
    (spec,), _ = plan_silences(w, phase_at(w, t), t, sink._settings)
    orphan = client.post_silence(spec)  # created, but the id never reached the store
    counted.calls.clear()
    out = apply(sink, w, [])
    assert [(c.kind, c.id) for c in out.changes] == [("created", orphan)]
    assert counted.writes() == []
    live = [s for s in client.list(['instance=~"lr\\\\-a(:[0-9]+)?"']) if s["status"]["state"] != "expired"]
    assert [s["id"] for s in live] == [orphan]


@pytest.mark.integration
def test_unknown_ids(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    client, _ = make_sink(alertmanager.url, counted)
    unknown = str(uuid.uuid4())
    client.expire(unknown)  # 0.25 answers 500 "silence not found": gone is gone
    assert client.get(unknown) is None
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    spec = SilenceSpec((Matcher(name="instance", value="uk-a"),), t + H, t + 2 * H, "c", "itsm-connector")
    created = client.post_silence(spec, unknown)  # 404: created afresh
    assert created != unknown and state(client, created) == "pending"
    client.expire(created)
    client.expire(created)  # expired already: still fine


@pytest.mark.integration
def test_refusals_are_not_retryable(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    client, _ = make_sink(alertmanager.url, counted)
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    match_all = SilenceSpec((Matcher(name="a", value=".*", is_regex=True),), t, t + H, "c", "x")
    with pytest.raises(AlertmanagerError) as info:
        client.post_silence(match_all)
    assert (info.value.status, info.value.retryable) == (400, False)
    with pytest.raises(AlertmanagerError) as info:
        client.expire("not-a-uuid")
    assert (info.value.status, info.value.retryable) == (422, False)


@pytest.mark.integration
def test_partial_failure_keeps_created_ids(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    am = alertmanager
    client, sink = make_sink(am.url, counted)
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    out = apply(sink, window(("pf-a",), t - M, t + H, State.IMPLEMENT), [])
    (old,) = out.silences

    def refuse_delete(reply: requests.Response, *args: Any, **kwargs: Any) -> None:
        if reply.request.method == "DELETE":
            raise requests.ConnectionError("connection reset")

    counted.session.hooks["response"].append(refuse_delete)
    w = window(("pf-b",), t - M, t + H, State.IMPLEMENT)
    with pytest.raises(AlertmanagerError) as info:
        apply(sink, w, out.silences)
    assert info.value.retryable and info.value.outcome is not None
    kept = info.value.outcome.silences
    assert {s.id for s in kept} - {old.id} and old in kept  # the new one is stored, the old one remembered

    counted.session.hooks["response"].remove(refuse_delete)
    out = apply(sink, w, kept)
    assert [(c.kind, c.id) for c in out.changes] == [("expired", old.id)]
    assert state(client, old.id) == "expired"


@pytest.mark.integration
def test_ready(alertmanager: RunningAlertmanager, counted: Counted) -> None:
    client, _ = make_sink(alertmanager.url, counted)
    client.ready()


def test_down_is_retryable() -> None:
    port = free_port()  # nothing listens there
    s = AlertmanagerSettings(url=f"http://127.0.0.1:{port}", timeout=2)
    client = AlertmanagerClient(s)
    with pytest.raises(AlertmanagerError) as info:
        client.ready()
    assert info.value.retryable and f"127.0.0.1:{port}" in str(info.value)
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    w = window(("down-a",), t - H, t + H, State.CLOSED)
    current = [StoredSilence("5f0c0a7e-0000-4000-8000-000000000000", "k", t - H, t + H)]
    with pytest.raises(AlertmanagerError) as info:
        AlertmanagerSink(client, s).apply(w, phase_at(w, t), current, t)
    assert info.value.retryable and info.value.outcome is not None
    assert info.value.outcome.silences == current


@pytest.mark.integration
def test_basic_auth(tmp_path_factory: pytest.TempPathFactory) -> None:
    # bcrypt of "s3cret-pass" with cost 4 (fast), as exporter-toolkit's web config wants it.
    web = 'basic_auth_users:\n  admin: "$2b$04$h3bDfDNsBnD7zuO4EyQRfe0oVHj3TpMicQSyndhenvb7c91.xMjN2"\n'
    with run_alertmanager(tmp_path_factory.mktemp("am-auth"), web_config=web) as am:
        AlertmanagerClient(AlertmanagerSettings(url=am.url, username="admin", password="s3cret-pass")).ready()
        for auth in ({"username": "admin", "password": "wrong-pass"}, {"bearer_token": "tok-wrong"}, {}):
            with pytest.raises(AlertmanagerError) as info:
                AlertmanagerClient(AlertmanagerSettings(url=am.url, **auth)).ready()
            assert (info.value.auth, info.value.retryable, info.value.status) == (True, False, 401)
            assert "wrong" not in str(info.value) and "credentials" in str(info.value)


def test_username_without_password_is_reported() -> None:
    s = AlertmanagerSettings(url="http://127.0.0.1:1", username="admin")
    with pytest.raises(AlertmanagerError, match="no password") as info:
        AlertmanagerClient(s).ready()
    assert info.value.auth and not info.value.retryable


# -- classification of answers 0.25 does not give (recorded shapes) ----------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("status", "body", "headers", "retryable", "retry_after"),
    [
        (500, '"boom"', {}, True, None),
        (503, "", {"Retry-After": "7"}, True, 7.0),
        (429, "", {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, True, 0.0),  # a date already past
        (503, "", {"Retry-After": "soon"}, True, None),  # unreadable: our own backoff
        (404, "", {}, False, None),  # e.g. a wrong base path behind a proxy
    ],
)
def test_classification(
    status: int, body: str, headers: dict[str, str], retryable: bool, retry_after: float | None
) -> None:
    responses.get("http://am.test/api/v2/silences", status=status, body=body, headers=headers)
    client = AlertmanagerClient(AlertmanagerSettings(url="http://am.test"))
    with pytest.raises(AlertmanagerError) as info:
        client.list()
    assert (info.value.retryable, info.value.retry_after, info.value.status) == (
        retryable,
        retry_after,
        status,
    )


@responses.activate
def test_delete_404_from_0_26_is_gone_too() -> None:
    responses.delete("http://am.test/api/v2/silence/x", status=404, body='"silence not found"')
    AlertmanagerClient(AlertmanagerSettings(url="http://am.test")).expire("x")


@responses.activate
def test_timeout_and_garbage_are_retryable() -> None:
    responses.get("https://am.test/api/v2/silences", body=requests.Timeout("slow"))
    responses.post("https://am.test/api/v2/silences", status=200, body="<html>login</html>")
    client = AlertmanagerClient(AlertmanagerSettings(url="https://am.test", bearer_token="tok-secret"))
    with pytest.raises(AlertmanagerError, match="no answer within") as info:
        client.list()
    assert info.value.retryable
    t = utcnow().replace(microsecond=0)  # ServiceNow times are whole seconds
    spec = SilenceSpec((Matcher(name="a", value="b"),), t, t + H, "c", "x")
    with pytest.raises(AlertmanagerError, match="unreadable reply") as info:
        client.post_silence(spec)
    assert info.value.retryable and "tok-secret" not in str(info.value)
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok-secret"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T01:33:29.465Z", datetime(2026, 11, 25, 1, 33, 29, 465000, tzinfo=UTC)),
        ("2026-11-25T01:33:29Z", datetime(2026, 11, 25, 1, 33, 29, tzinfo=UTC)),
        ("2026-11-25T01:33:29.123456789Z", datetime(2026, 11, 25, 1, 33, 29, 123456, tzinfo=UTC)),
        ("2026-11-25T10:33:29.5+09:00", datetime(2026, 11, 25, 1, 33, 29, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected
