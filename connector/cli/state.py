"""``itsm-connector state migrate --to postgresql://…``: copy the SQLite state (``state.path``) into
an empty PostgreSQL database, for replicas (docs/ha.md). The password comes from the config's
``state.password`` (``password_file``, ``ITSM_STATE__PASSWORD`` or the credential state-password)."""

from __future__ import annotations

import argparse
import sys

from connector.config import Settings, StateSettings
from connector.errors import ConfigError, StateInterrupted


def cmd_state(settings: Settings, args: argparse.Namespace) -> int:
    from connector.replica import open_state
    from connector.store.copy import NotEmpty, copy_state
    from connector.store.sqlite import Store

    try:
        target = StateSettings(url=args.to, password=settings.state.password, pg_schema=args.schema)
    except ValueError as e:
        raise ConfigError(f"state migrate --to: {e}".splitlines()[0], problems=[]) from None
    if not settings.state.path.exists():
        print(f"itsm-connector: no SQLite state at {settings.state.path} (state.path)", file=sys.stderr)
        return 1
    src = Store(settings.state.path)
    try:
        dst = open_state(target, application_name="itsm-connector state migrate")
    except StateInterrupted as e:
        src.close()
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 1
    try:
        counts = copy_state(src, dst)  # type: ignore[arg-type]  # both are SqlStores
    except NotEmpty as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 1
    finally:
        src.close()
        dst.close()
    rows = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
    print(f"copied {src.location} into {dst.location}: {rows or 'nothing (an empty state)'}")
    print("now set state.url (and state.password_file) in the config of every replica and start them")
    return 0
