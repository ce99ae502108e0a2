"""plan_silences / needs_change / can_update / decide: table-driven, every ``now`` explicit."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from connector.alertmanager.plan import (
    SilenceSpec,
    StoredSilence,
    can_update,
    decide,
    needs_change,
    overrun_end,
    plan_silences,
)
from connector.alertmanager.settings import (
    AlertmanagerSettings,
    Matcher,
    MatcherTemplate,
    is_selective,
    matchers_key,
    silence_url,
)
from connector.domain.window import MaintenanceWindow, Phase, State, phase_at

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # planned start
PE = T0 + timedelta(hours=2)  # planned end
H, M, S = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


def window(**changes: Any) -> MaintenanceWindow:
    w = MaintenanceWindow(
        source="sn",
        sys_id="abc",
        number="CHG0001",
        title="Patch the database hosts",
        state=State.SCHEDULED,
        planned_start=T0,
        planned_end=PE,
        cis=("db01", "db02"),
        url="https://snow.example/chg/abc",
    )
    return dataclasses.replace(w, **changes)


def settings(**changes: Any) -> AlertmanagerSettings:
    return AlertmanagerSettings(url="http://am.example:9093", **changes)


def plan(
    w: MaintenanceWindow, now: datetime, s: AlertmanagerSettings | None = None
) -> tuple[list[SilenceSpec], list[str]]:
    return plan_silences(w, phase_at(w, now), now, s or settings())


def times(specs: list[SilenceSpec]) -> list[tuple[datetime, datetime]]:
    return [(spec.starts_at, spec.ends_at) for spec in specs]


# -- lifecycle: which silence, when ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w", "now", "expected"),
    [
        pytest.param(window(), T0 - H, [(T0, PE)], id="scheduled: pending from planned start"),
        pytest.param(window(), T0 - S, [(T0, PE)], id="scheduled: a second before start"),
        pytest.param(window(), T0, [(T0, PE)], id="start == now: active"),
        pytest.param(window(state=State.IMPLEMENT), T0 + H, [(T0, PE)], id="in progress"),
        pytest.param(window(), PE - S, [(T0, PE)], id="a second before end"),
        pytest.param(window(), PE, [], id="end == now: ended, nothing"),
        pytest.param(
            window(state=State.IMPLEMENT), T0 - 30 * M, [(T0 - 30 * M, PE)], id="implement early: active now"
        ),
        pytest.param(window(state=State.REVIEW), T0 + H, [], id="completed early"),
        pytest.param(window(state=State.CLOSED), T0 - H, [], id="closed before start"),
        pytest.param(window(state=State.CANCELLED), T0 + H, [], id="cancelled"),
        pytest.param(window(state=State.NEW), T0 + H, [], id="pending (draft)"),
        pytest.param(window(state=State.ASSESS), T0 - H, [], id="pending (assess)"),
    ],
)
def test_lifecycle(w: MaintenanceWindow, now: datetime, expected: list[tuple[datetime, datetime]]) -> None:
    specs, problems = plan(w, now)
    assert times(specs) == expected
    assert problems == []


def test_withdrawn_wants_no_silence() -> None:
    assert plan_silences(window(), Phase.WITHDRAWN, T0 + H, settings()) == ([], [])


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0 - H, [(T0, PE + 15 * M)]),
        (PE, [(T0, PE + 15 * M)]),  # ended: the grace is left
        (PE + 14 * M, [(T0, PE + 15 * M)]),
        (PE + 15 * M, []),  # grace over
    ],
)
def test_grace(now: datetime, expected: list[tuple[datetime, datetime]]) -> None:
    specs, _ = plan(window(), now, settings(grace=timedelta(minutes=15)))
    assert times(specs) == expected


@pytest.mark.parametrize(
    ("after_end", "expected_end"),
    [
        (timedelta(0), 30 * M),  # end == now, still in Implement: overrun
        (14 * M + 59 * S, 30 * M),
        (15 * M, 60 * M),  # half a step left: extend by the next step
        (44 * M + 59 * S, 60 * M),
        (45 * M, 90 * M),
        (3 * H + 30 * M, 4 * H),  # reaches the cap
        (3 * H + 59 * M, 4 * H),  # never beyond it
    ],
)
def test_overrun_steps_and_cap(after_end: timedelta, expected_end: timedelta) -> None:
    w = window(state=State.IMPLEMENT)
    now = PE + after_end
    assert phase_at(w, now) is Phase.OVERRUN
    specs, problems = plan(w, now)
    assert times(specs) == [(T0, PE + expected_end)]
    assert problems == []


def test_overrun_beyond_cap_lets_alerts_through_and_says_so() -> None:
    specs, problems = plan(window(state=State.IMPLEMENT), PE + 4 * H)
    assert specs == []
    assert problems == [
        "CHG0001: still in Implement 4h after planned end: silence not extended past its cap, alerts are live"
    ]


def test_overrun_keeps_a_longer_grace() -> None:
    specs, _ = plan(window(state=State.IMPLEMENT), PE + M, settings(grace=H))
    assert times(specs) == [(T0, PE + H)]


def test_overrun_end_is_stable_between_steps() -> None:
    s = settings()
    ends = {overrun_end(PE, PE + k * M, s) for k in range(15)}
    assert ends == {PE + 30 * M}


def test_actual_end_set_means_ended_not_overrun() -> None:
    w = window(state=State.IMPLEMENT, actual_end=PE - M)
    assert plan(w, PE + M) == ([], [])


@pytest.mark.parametrize(
    ("w", "now", "expected", "problems"),
    [
        pytest.param(
            window(planned_end=T0 + 30 * H),
            T0 - H,
            [(T0, T0 + 24 * H)],
            ["CHG0001: duration 30h exceeds max 24h: capped"],
            id="30h window capped to 24h",
        ),
        pytest.param(
            window(planned_end=T0 + 30 * H),
            T0 + 24 * H,
            [],
            ["CHG0001: duration 30h exceeds max 24h: capped"],
            id="after 24h: no more silence",
        ),
        pytest.param(
            window(planned_end=T0 + 24 * H), T0 - H, [(T0, T0 + 24 * H)], [], id="exactly the max: fine"
        ),
        pytest.param(
            window(state=State.IMPLEMENT, planned_end=T0 + 23 * H),
            T0 + 23 * H + 10 * M,
            [(T0, T0 + 23 * H + 30 * M)],
            [],
            id="overrun within max",
        ),
        pytest.param(
            window(state=State.IMPLEMENT, planned_end=T0 + 23 * H + 50 * M),
            T0 + 23 * H + 55 * M,
            [(T0, T0 + 24 * H)],
            ["CHG0001: duration 24h20m exceeds max 24h: capped"],
            id="overrun capped by max",
        ),
    ],
)
def test_max_duration(
    w: MaintenanceWindow, now: datetime, expected: list[tuple[datetime, datetime]], problems: list[str]
) -> None:
    specs, found = plan(w, now)
    assert times(specs) == expected
    assert found == problems


def test_times_are_milliseconds() -> None:
    now = T0 - 30 * M + timedelta(microseconds=123_456)
    specs, _ = plan(window(state=State.IMPLEMENT), now)
    assert specs[0].starts_at == T0 - 30 * M + timedelta(microseconds=123_000)


# -- matchers ----------------------------------------------------------------------------------------


def matchers(specs: list[SilenceSpec]) -> list[str]:
    return [spec.key for spec in specs]


@pytest.mark.parametrize(
    ("cis", "s", "expected"),
    [
        pytest.param(("db01",), settings(), ['instance=~"db01(:[0-9]+)?"'], id="one CI"),
        pytest.param(
            ("db02", "db01", "db01"),
            settings(),
            ['instance=~"(db01|db02)(:[0-9]+)?"'],
            id="CIs merged, sorted",
        ),
        pytest.param(
            ("db-01.prod",), settings(), ['instance=~"db\\\\-01\\\\.prod(:[0-9]+)?"'], id="CI name escaped"
        ),
        pytest.param(
            ("db01",),
            settings(ci_matchers=[{"name": "host", "value": "{ci}"}]),
            ['host="db01"'],
            id="plain template",
        ),
        pytest.param(
            ("a.b", "c"),
            settings(ci_matchers=[{"name": "host", "value": "{ci}.example"}]),
            ['host=~"(a\\\\.b|c)\\\\.example"'],
            id="plain template, several CIs: equivalent regex",
        ),
        pytest.param(
            ("db01", "db02"),
            settings(ci_matchers=[{"name": "host", "value": "{ci}"}, {"name": "service", "value": "{ci}"}]),
            ['host="db01",service="db01"', 'host="db02",service="db02"'],
            id="several templates: one silence per CI",
        ),
        pytest.param(
            ("db01", "lb01", "lb02"),
            settings(
                ci_map={
                    "lb01": [{"name": "job", "value": "haproxy"}],
                    "lb02": [{"name": "job", "value": "haproxy"}],
                }
            ),
            ['instance=~"db01(:[0-9]+)?"', 'job="haproxy"'],
            id="ci_map overrides the template; same sets merged",
        ),
        pytest.param(
            ("db01",),
            settings(extra_matchers=[{"name": "severity", "value": "critical"}]),
            ['instance=~"db01(:[0-9]+)?",severity="critical"'],
            id="extra matchers",
        ),
    ],
)
def test_matchers(cis: tuple[str, ...], s: AlertmanagerSettings, expected: list[str]) -> None:
    specs, problems = plan(window(cis=cis), T0 - H, s)
    assert matchers(specs) == expected
    assert problems == []


@pytest.mark.parametrize(
    ("value", "hit"),
    [
        ("db-01.prod", True),
        ("db-01.prod:9100", True),
        ("db-01Xprod:9100", False),  # "." escaped
        ("db-01.prod:", False),
        ("xdb-01.prod", False),  # anchored
        ("db-01.prod.other", False),
    ],
)
def test_escaped_ci_matches_only_itself(value: str, hit: bool) -> None:
    (spec,), _ = plan(window(cis=("db-01.prod",)), T0 - H)
    assert spec.matchers[0].matches(value) is hit


@pytest.mark.parametrize(
    ("w", "s", "problems"),
    [
        pytest.param(window(cis=()), settings(), ["CHG0001: no CIs: no silence"], id="no CIs"),
        pytest.param(window(cis=("  ",)), settings(), ["CHG0001: no CIs: no silence"], id="blank CI"),
        pytest.param(
            window(cis=("db01",)),
            settings(ci_matchers=[]),
            ["CHG0001: db01: not in ci_map and no ci_matchers: not silenced"],
            id="no template",
        ),
        pytest.param(
            window(cis=("db01",)),
            settings(ci_map={"db01": [{"name": "job", "value": ".*", "is_regex": True}]}),
            ['CHG0001: {job=~".*"} for db01 would match every alert: refused'],
            id="match-all regex",
        ),
        pytest.param(
            window(cis=("db01",)),
            settings(
                ci_map={"db01": [{"name": "job", "value": ".+", "is_regex": True}]},
                extra_matchers=[{"name": "severity", "value": "critical"}],
            ),
            ['CHG0001: {job=~".+"} for db01 would match every alert: refused'],
            id="extra matchers do not make a CI selective",
        ),
        pytest.param(
            window(cis=("db01",)),
            settings(ci_map={"db01": [{"name": "instance", "value": "db01", "is_equal": False}]}),
            ['CHG0001: {instance!="db01"} for db01 would match every alert: refused'],
            id="negative matcher",
        ),
    ],
)
def test_refusals(w: MaintenanceWindow, s: AlertmanagerSettings, problems: list[str]) -> None:
    assert plan(w, T0 - H, s) == ([], problems)


def test_refusal_keeps_the_other_silences() -> None:
    s = settings(ci_map={"db02": [{"name": "job", "value": ".*", "is_regex": True}]})
    specs, problems = plan(window(), T0 - H, s)
    assert matchers(specs) == ['instance=~"db01(:[0-9]+)?"']
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("m", "selective"),
    [
        (Matcher(name="a", value="x"), True),
        (Matcher(name="a", value=""), False),
        (Matcher(name="a", value=".*", is_regex=True), False),
        (Matcher(name="a", value=".+", is_regex=True), False),
        (Matcher(name="a", value="db.*", is_regex=True), True),
        (Matcher(name="a", value="x", is_equal=False), False),
        (Matcher(name="a", value="", is_equal=False), False),  # "a is set": any value
        (Matcher(name="a", value="db01", is_regex=True, is_equal=False), False),
    ],
)
def test_is_selective(m: Matcher, selective: bool) -> None:
    assert is_selective(m) is selective


def test_comment_and_created_by() -> None:
    (spec,), _ = plan(window(cis=("db01",)), T0 - H)
    assert spec.comment == "CHG0001: Patch the database hosts — https://snow.example/chg/abc"
    assert spec.created_by == "itsm-connector"
    s = settings(comment_template="{number} ({url})", created_by="bot")
    (spec,), _ = plan(window(cis=("db01",), title="has {braces}"), T0 - H, s)
    assert (spec.comment, spec.created_by) == ("CHG0001 (https://snow.example/chg/abc)", "bot")


# -- current vs desired: nothing, update in place, or replace ----------------------------------------

NOW = T0 + H
KEY = 'instance=~"(db01|db02)(:[0-9]+)?"'


def spec(start: datetime, end: datetime, key_ci: str = "(db01|db02)") -> SilenceSpec:
    m = Matcher(name="instance", value=f"{key_ci}(:[0-9]+)?", is_regex=True)
    return SilenceSpec((m,), start, end, "c", "itsm-connector")


def stored(start: datetime, end: datetime, key: str = KEY, sid: str = "s1") -> StoredSilence:
    return StoredSilence(sid, key, start, end)


@pytest.mark.parametrize(
    ("current", "desired", "change", "update"),
    [
        pytest.param(
            stored(NOW + H, NOW + 2 * H), spec(NOW + H, NOW + 2 * H), False, True, id="pending, same"
        ),
        pytest.param(
            stored(NOW + H, NOW + 2 * H),
            spec(NOW + 2 * H, NOW + 3 * H),
            True,
            True,
            id="pending, moved later",
        ),
        pytest.param(
            stored(NOW + H, NOW + 2 * H),
            spec(NOW + 10 * S, NOW + 2 * H),
            True,
            True,
            id="pending, moved nearer",
        ),
        pytest.param(
            stored(NOW + H, NOW + 2 * H),
            spec(NOW, NOW + 2 * H),
            True,
            False,
            id="pending, started early: replace",
        ),
        pytest.param(
            stored(NOW + H, NOW + 2 * H),
            spec(NOW + 4 * S, NOW + 2 * H),
            True,
            False,
            id="pending, within margin",
        ),
        pytest.param(
            stored(NOW - 50 * M, NOW + H),
            spec(T0, NOW + H),
            False,
            True,
            id="active, past starts are the same",
        ),
        pytest.param(stored(NOW - 50 * M, NOW + H), spec(T0, NOW + 2 * H), True, True, id="active, extended"),
        pytest.param(
            stored(NOW - 50 * M, NOW + H), spec(T0, NOW + 10 * M), True, True, id="active, shortened"
        ),
        pytest.param(
            stored(NOW - 50 * M, NOW + H), spec(T0, NOW + 4 * S), True, False, id="active, end within margin"
        ),
        pytest.param(
            stored(NOW - 50 * M, NOW + H),
            spec(NOW + H, NOW + 2 * H),
            True,
            False,
            id="active, moved to later",
        ),
        pytest.param(
            stored(NOW - 50 * M, NOW + H), spec(T0, NOW + H, "db01"), True, False, id="CIs changed: replace"
        ),
        pytest.param(stored(T0, NOW), spec(T0, NOW + H), True, False, id="expired: end == now"),
    ],
)
def test_needs_change_and_can_update(
    current: StoredSilence, desired: SilenceSpec, change: bool, update: bool
) -> None:
    assert needs_change(current, desired, NOW) is change
    assert can_update(current, desired, NOW) is update


def kinds(desired: list[SilenceSpec], current: list[StoredSilence]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.current.id if a.current else None) for a in decide(desired, current, NOW)]


def test_decide() -> None:
    active = stored(NOW - 50 * M, NOW + H)
    assert kinds([spec(T0, NOW + H)], [active]) == [("keep", "s1")]
    assert kinds([spec(T0, NOW + 2 * H)], [active]) == [("update", "s1")]
    assert kinds([spec(NOW + H, NOW + 2 * H)], [active]) == [("replace", "s1")]
    assert kinds([spec(T0, NOW + H, "db01")], [active]) == [("create", None), ("expire", "s1")]
    assert kinds([], [active]) == [("expire", "s1")]
    assert kinds([], [stored(T0, NOW - M)]) == [("forget", "s1")]
    assert kinds([spec(T0, NOW + H)], [stored(T0, NOW - M)]) == [("forget", "s1"), ("create", None)]
    assert kinds([spec(T0, NOW + H)], []) == [("create", None)]


def test_decide_updates_an_active_silence_with_its_stored_start() -> None:
    (action,) = decide([spec(T0, NOW + 2 * H)], [stored(NOW - 50 * M, NOW + H)], NOW)
    assert action.spec is not None
    assert (action.spec.starts_at, action.spec.ends_at) == (NOW - 50 * M, NOW + 2 * H)


def test_decide_keeps_the_later_of_two_with_the_same_matchers() -> None:
    older, newer = stored(T0, NOW + H, sid="old"), stored(T0, NOW + H, sid="new")
    assert kinds([spec(T0, NOW + H)], [older, newer]) == [("keep", "new"), ("expire", "old")]


def test_same_plan_twice_needs_nothing() -> None:
    w = window(state=State.IMPLEMENT)
    for now in (T0 - H, T0 + H, PE + 20 * M):
        specs, _ = plan(w, now)
        current = [StoredSilence(f"id{i}", sp.key, sp.starts_at, sp.ends_at) for i, sp in enumerate(specs)]
        again, _ = plan(w, now + M)
        assert {a.kind for a in decide(again, current, now + M)} == {"keep"}


def test_stored_silence_round_trip() -> None:
    sil = StoredSilence("s1", KEY, T0 + timedelta(microseconds=465_000), PE)
    assert StoredSilence.from_dict(sil.to_dict()) == sil
    assert (
        sil.state_at(T0) == "pending" and sil.state_at(T0 + H) == "active" and sil.state_at(PE) == "expired"
    )


# -- settings ----------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = settings()
    assert s.ci_matchers == [MatcherTemplate(name="instance", value="{ci}(:[0-9]+)?", is_regex=True)]
    assert (s.grace, s.overrun_step, s.overrun_cap, s.max_duration) == (timedelta(0), 30 * M, 4 * H, 24 * H)
    assert silence_url(s, "x") is None
    s = settings(ui_url="https://am.example/", overrun_step="PT15M", max_duration=3600)
    assert silence_url(s, "abc") == "https://am.example/#/silences/abc"
    assert (s.overrun_step, s.max_duration) == (15 * M, H)


def test_every_problem_reported_at_once_without_echoing_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        AlertmanagerSettings(
            url="http://admin:hunter2@am.example",
            ci_matchers=[{"name": "1bad", "value": "{ci}"}, {"name": "host", "value": "fixed"}],
            ci_map={"db01": [{"name": "job", "value": "(", "is_regex": True}], "db02": []},
            comment_template="{number} {owner}",
            grace=-1,
            overrun_step=0,
            timeout=0,
            extra="x",
        )
    text = str(info.value)
    assert "hunter2" not in text
    fields = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert fields == {
        "url",
        "ci_matchers.0.name",
        "ci_matchers.1",
        "ci_map.db01.0",
        "ci_map.db02",
        "comment_template",
        "grace",
        "overrun_step",
        "timeout",
        "extra",
    }


@pytest.mark.parametrize(
    "auth",
    [
        {"password": "p"},
        {"username": "u", "password": "p", "bearer_token": "t"},
        {"username": "u", "bearer_token_file": "/run/credentials/x"},
    ],
)
def test_auth_combinations_refused(auth: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        settings(**auth)


def test_secrets_are_not_in_repr() -> None:
    s = AlertmanagerSettings(url="https://am.example:9093", username="u", password="hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert matchers_key([Matcher(name="a", value='q"\\')]) == 'a="q\\"\\\\"'
