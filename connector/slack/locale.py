"""Message catalogs for the Slack feed: one dict per locale, keyed by message id, with ``{placeholders}``.

Every locale has the same keys and the same placeholders per key (a test checks both). Values passed in
are already mrkdwn-escaped by the renderer; the catalogs themselves are trusted text. ``*bold*`` marks the
part of a sentence an L1 operator must not miss.
"""

from __future__ import annotations

from typing import Any

EN: dict[str, str] = {
    # Status badges: emoji + word, per phase.
    "badge.pending": "📝 Pending",
    "badge.scheduled": "🗓️ Scheduled",
    "badge.in_progress": "🔧 In progress",
    "badge.overrun": "⚠️ Overrun",
    "badge.ended": "✅ Ended",
    "badge.completed": "✅ Completed",
    "badge.cancelled": "🚫 Cancelled",
    "badge.withdrawn": "↩️ Withdrawn",
    # The sentence L1 needs, per phase.
    "say.pending": (
        "*Not scheduled yet.* Alerts from {cis} are not covered by this change: treat them as real."
    ),
    "say.scheduled": (
        "Alerts from {cis} between *{start} and {end}* are expected from this planned work: "
        "acknowledge them, do not escalate."
    ),
    "say.in_progress": (
        "*Work in progress.* Alerts from {cis} are now expected *until {until}*: "
        "acknowledge them, do not escalate."
    ),
    "say.overrun": (
        "*Work is running past its planned end ({until}).* Alerts from {cis} are still expected — "
        "check with {group} before escalating."
    ),
    "say.ended": "*Work ended.* Alerts from {cis} are live again: treat them as real.",
    "say.completed": "*Work completed{close}.* Alerts from {cis} are live again: treat them as real.",
    "say.cancelled": "*Change cancelled.* Alerts from {cis} are live again: treat them as real.",
    "say.withdrawn": (
        "*No longer in the change feed* (deleted or out of the filter). "
        "Alerts from {cis} are live again: treat them as real."
    ),
    "close_code": " ({code})",
    "cis.none": "its systems (no CI listed)",
    "cis.more": "+{n} more",
    "group.none": "the change owner",
    "time.unknown": "not set",
    # Parent details.
    "label.planned": "Planned",
    "label.your_time": "your time",
    "label.actual": "Actual",
    "label.actual_start": "started {start}",
    "label.actual_end": "ended {end}",
    "label.cis": "CIs",
    "label.owner": "Owner",
    "label.kind": "Type / risk / priority",
    "label.ticket": "Ticket",
    "label.silence": "Alertmanager silence",
    "label.full_text": "full text",
    "label.updated": "Updated {time}",
    "label.source": "source: {source}",
    # Thread replies, one per event kind.
    "event.announced": "📣 Announced: {range}; CIs: {cis}",
    "event.rescheduled": "🔁 Rescheduled: {changes}",
    "event.rescheduled.cis": "CIs {diff}",
    "event.started": "🔧 Started — alerts from {cis} expected until {until}",
    "event.overran": "⚠️ Past planned end {until}, still in progress — check with {group} before escalating",
    "event.ended": "✅ Ended — alerts from {cis} are live again",
    "event.completed": "✅ Completed{close} — alerts from {cis} are live again",
    "event.cancelled": "🚫 Cancelled — the work will not take place",
    "event.cancelled.live": "🚫 Cancelled — alerts from {cis} are live again",
    "event.withdrawn": "↩️ Withdrawn — no longer in the change feed (deleted or out of the filter)",
    "event.withdrawn.live": (
        "↩️ Withdrawn — no longer in the change feed (deleted or out of the filter); "
        "alerts from {cis} are live again"
    ),
    "event.reminder": (
        "⏰ Starts in {minutes} min ({start}) — alerts from {cis} will be expected until {until}"
    ),
    "event.rerouted": "↪️ This window is now followed in another channel; this message is no longer updated",
    # Digest.
    "digest.title": "Maintenance windows",
    "digest.shift_title": "Shift handover: today's and tomorrow's maintenance windows",
    "digest.as_of": "As of {time} · in progress {running} · upcoming {upcoming}",
    "digest.empty": "No maintenance windows to report.",
    "digest.more": "… and {n} more",
}

KO: dict[str, str] = {
    "badge.pending": "📝 대기",
    "badge.scheduled": "🗓️ 예정",
    "badge.in_progress": "🔧 진행 중",
    "badge.overrun": "⚠️ 초과",
    "badge.ended": "✅ 종료",
    "badge.completed": "✅ 완료",
    "badge.cancelled": "🚫 취소",
    "badge.withdrawn": "↩️ 철회",
    "say.pending": (
        "*아직 일정이 확정되지 않았습니다.* {cis}에서 발생하는 알림은 이 작업과 무관하니 평소대로 대응하세요."
    ),
    "say.scheduled": (
        "*{start}부터 {end}까지* {cis}에서 발생하는 알림은 예정된 작업으로 인한 것입니다. "
        "확인(ack)만 하고 에스컬레이션하지 마세요."
    ),
    "say.in_progress": (
        "*작업 진행 중입니다. {until}까지* {cis}에서 발생하는 알림은 예정된 작업으로 인한 것입니다. "
        "확인(ack)만 하고 에스컬레이션하지 마세요."
    ),
    "say.overrun": (
        "*작업이 계획된 종료 시각({until})을 넘겨 계속되고 있습니다.* "
        "{cis}의 알림은 아직 작업 영향일 수 있으니, 에스컬레이션하기 전에 {group}에 확인하세요."
    ),
    "say.ended": (
        "*작업이 종료되었습니다.* 이제부터 {cis}에서 발생하는 알림은 실제 상황입니다. 평소대로 대응하세요."
    ),
    "say.completed": (
        "*작업이 완료되었습니다{close}.* "
        "이제부터 {cis}에서 발생하는 알림은 실제 상황입니다. 평소대로 대응하세요."
    ),
    "say.cancelled": (
        "*변경 작업이 취소되었습니다.* "
        "이제부터 {cis}에서 발생하는 알림은 실제 상황입니다. 평소대로 대응하세요."
    ),
    "say.withdrawn": (
        "*변경 피드에서 더 이상 보이지 않습니다* (삭제되었거나 필터에서 제외됨). "
        "이제부터 {cis}에서 발생하는 알림은 실제 상황입니다. 평소대로 대응하세요."
    ),
    "close_code": " (종료 코드: {code})",
    "cis.none": "대상 시스템(CI 미지정)",
    "cis.more": "외 {n}개",
    "group.none": "변경 담당자",
    "time.unknown": "미정",
    "label.planned": "계획 일정",
    "label.your_time": "내 시간대",
    "label.actual": "실제",
    "label.actual_start": "{start} 시작",
    "label.actual_end": "{end} 종료",
    "label.cis": "대상 CI",
    "label.owner": "담당",
    "label.kind": "유형 / 위험도 / 우선순위",
    "label.ticket": "티켓",
    "label.silence": "Alertmanager 사일런스",
    "label.full_text": "전체 내용",
    "label.updated": "{time} 업데이트",
    "label.source": "출처: {source}",
    "event.announced": "📣 작업 공지: {range} · 대상 CI: {cis}",
    "event.rescheduled": "🔁 일정 변경: {changes}",
    "event.rescheduled.cis": "대상 CI {diff}",
    "event.started": "🔧 작업 시작 — {until}까지 {cis}에서 발생하는 알림은 예정된 것입니다",
    "event.overran": (
        "⚠️ 계획된 종료 시각({until})이 지났지만 아직 진행 중입니다 — 에스컬레이션 전에 {group}에 확인하세요"
    ),
    "event.ended": "✅ 작업 종료 — 이제부터 {cis}의 알림은 실제 상황입니다",
    "event.completed": "✅ 작업 완료{close} — 이제부터 {cis}의 알림은 실제 상황입니다",
    "event.cancelled": "🚫 작업 취소 — 이 작업은 진행되지 않습니다",
    "event.cancelled.live": "🚫 작업 취소 — 이제부터 {cis}의 알림은 실제 상황입니다",
    "event.withdrawn": "↩️ 철회 — 변경 피드에서 더 이상 보이지 않습니다 (삭제되었거나 필터에서 제외됨)",
    "event.withdrawn.live": (
        "↩️ 철회 — 변경 피드에서 더 이상 보이지 않습니다 (삭제되었거나 필터에서 제외됨). "
        "이제부터 {cis}의 알림은 실제 상황입니다"
    ),
    "event.reminder": "⏰ {minutes}분 후 시작 ({start}) — {until}까지 {cis}의 알림은 예정된 것입니다",
    "event.rerouted": "↪️ 이 작업은 이제 다른 채널에서 안내합니다. 이 메시지는 더 이상 갱신되지 않습니다",
    "digest.title": "유지보수 작업 현황",
    "digest.shift_title": "교대 인수인계: 오늘과 내일의 유지보수 작업",
    "digest.as_of": "{time} 기준 · 진행 중 {running}건 · 예정 {upcoming}건",
    "digest.empty": "알릴 유지보수 작업이 없습니다.",
    "digest.more": "… 외 {n}건",
}

CATALOGS: dict[str, dict[str, str]] = {"en": EN, "ko": KO}
#: Locales a config may name.
LOCALES: tuple[str, ...] = tuple(sorted(CATALOGS))


def message(locale: str, key: str, **values: Any) -> str:
    """The catalog text ``key`` in ``locale`` with ``values`` filled in (values must already be escaped)."""
    return CATALOGS[locale][key].format(**values)
