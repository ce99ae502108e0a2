"""How a window is rendered in one channel: the channel's locale and timezone, the window's silence,
and the mention of the route that sent it there (a :class:`~connector.slack.render.RenderContext`).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from connector.alertmanager.settings import silence_url
from connector.config import Settings
from connector.domain.events import EventKind
from connector.domain.routing import route_for
from connector.domain.window import MaintenanceWindow
from connector.slack.render import RenderContext
from connector.store.api import StateStore


def render_context(
    settings: Settings, store: StateStore, channel: str | None = None
) -> Callable[[MaintenanceWindow], RenderContext]:
    """How a window is rendered in ``channel``: the channel's locale and timezone, the silence, and
    the mention of the route that sent the window there (for the events it names)."""
    am = settings.alertmanager
    ch = settings.slack.channel_settings(channel or settings.slack.channel)

    def context(w: MaintenanceWindow) -> RenderContext:
        sil = store.silences(w.key)
        sid = str(sil[0]["id"]) if sil else None
        url = silence_url(am, sid) if (am and sid) else None
        route = route_for(w, settings.routes)
        mention, mention_on = settings.slack.overrun_mention, frozenset({EventKind.OVERRAN})
        if route is not None and route.mention is not None:
            mention, mention_on = route.mention.text, frozenset(route.mention.on)
        return RenderContext(
            locale=ch.locale or settings.slack.locale,
            tz=ZoneInfo(ch.timezone or settings.slack.timezone),
            silence_id=sid,
            silence_url=url,
            mention=mention,
            mention_on=mention_on,
        )

    return context
