"""The board's fixed text, per locale (the channel's ``locale``, as in Slack: ko or en).

Every locale has the same keys (a test checks it). The page receives the catalog of its channel in
``/api/windows`` (``text``) and inserts each string as text, never as HTML. Words, not emoji: a wall
screen's browser may have no emoji font.
"""

from __future__ import annotations

EN: dict[str, str] = {
    "title": "Maintenance board",
    "title.channel": "Maintenance board: {channel}",
    "running": "In progress now",
    "starting": "Starting within 2 hours",
    "none": "None",
    "now": "now",
    "as_of": "As of {time}",
    "until": "until {time}",
    "from": "from {time}",
    "phase.scheduled": "Scheduled",
    "phase.in_progress": "In progress",
    "phase.overrun": "Overrunning",
    "phase.ended": "Ended",
    "phase.completed": "Completed",
    "phase.cancelled": "Cancelled",
    "phase.withdrawn": "Withdrawn",
    "silence.active": "Silenced",
    "silence.planned": "Silence planned",
    "silence.none": "No silence",
    "cis.none": "no CI listed",
    "group.none": "no group",
    "empty": "No maintenance windows from {since} to {until}.",
    "stale": "Data may be out of date: {reason}",
    "stale.unreachable": "Data may be out of date: the connector cannot be reached (last update {time})",
    "stale.source": "source {source} failing: {error}",
    "loading": "Loading…",
}

KO: dict[str, str] = {
    "title": "유지보수 작업 현황판",
    "title.channel": "유지보수 작업 현황판: {channel}",
    "running": "지금 진행 중",
    "starting": "2시간 이내 시작",
    "none": "없음",
    "now": "현재",
    "as_of": "{time} 기준",
    "until": "{time}까지",
    "from": "{time}부터",
    "phase.scheduled": "예정",
    "phase.in_progress": "진행 중",
    "phase.overrun": "시간 초과",
    "phase.ended": "종료",
    "phase.completed": "완료",
    "phase.cancelled": "취소",
    "phase.withdrawn": "철회",
    "silence.active": "사일런스 적용 중",
    "silence.planned": "사일런스 예정",
    "silence.none": "사일런스 없음",
    "cis.none": "CI 미지정",
    "group.none": "담당 그룹 미지정",
    "empty": "{since}부터 {until}까지 유지보수 작업이 없습니다.",
    "stale": "데이터가 최신이 아닐 수 있습니다: {reason}",
    "stale.unreachable": "데이터가 최신이 아닐 수 있습니다: 커넥터에 연결할 수 없습니다 (마지막 갱신 {time})",
    "stale.source": "소스 {source} 실패: {error}",
    "loading": "불러오는 중…",
}

CATALOGS: dict[str, dict[str, str]] = {"en": EN, "ko": KO}


def catalog(locale: str) -> dict[str, str]:
    """The board's text in ``locale`` (English for a locale it does not know)."""
    return CATALOGS.get(locale, EN)
