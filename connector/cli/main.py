# PYTHON_ARGCOMPLETE_OK (shell completion: argcomplete's hook looks for this in the first 1 KB)
"""Command line: ``itsm-connector {run,sync,check,windows,status,demo}``. No business logic here.

Exit codes: 0 success; 1 a check or sync failed, or a state failure that may pass by itself (disk
full); 2 bad configuration or usage; 3 the state database is in use by another process (its lock);
4 the state database needs an operator (damaged, read-only, deleted or replaced while running). Each
with one readable message, no traceback. The commands themselves live in ``service`` (run, sync,
check) and ``report`` (windows, status, digest, calendar).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from connector import __version__
from connector.cli.check import cmd_check
from connector.cli.report import cmd_calendar, cmd_digest, cmd_status, cmd_windows
from connector.cli.service import cmd_run, cmd_sync
from connector.config import DEFAULT_CONFIG_PATH, load_settings
from connector.errors import ConfigError, StateError, StateLocked
from connector.logs import register_secret, setup_logging

log = logging.getLogger("connector")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="itsm-connector", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--version", action="version", version=f"itsm-connector {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, help: str, config: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if config:
            c.add_argument(
                "-c",
                "--config",
                type=Path,
                default=DEFAULT_CONFIG_PATH,
                help=f"YAML config file (default {DEFAULT_CONFIG_PATH})",
            )
        return c

    run = cmd("run", "run the daemon (under systemd: Type=notify)")
    run.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    sync = cmd("sync", "one cycle: poll every source, reconcile, deliver to every sink, exit")
    sync.add_argument("--once", action="store_true", default=True, help="(the default) a single cycle")
    sync.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    cmd("check", "check the config, every source, the Slack token and every channel, and Alertmanager")
    w = cmd("windows", "list known windows and their phase")
    w.add_argument("--problems", action="store_true", help="list rejected tickets and why")
    w.add_argument("--json", action="store_true", help="machine-readable output")
    cmd("status", "last poll, cursor, outbox, problems and health in one screen")
    dg = cmd("digest", "the shift digest of each channel, as it would be posted now")
    dg.add_argument("--print", action="store_true", default=True, help="(the default) print, do not post")
    dg.add_argument("--channel", help="only this channel id")
    cal = cmd(
        "calendar", "the windows as an iCalendar feed on stdout (itsm-connector calendar > windows.ics)"
    )
    cal.add_argument("--channel", help="only the windows this channel follows")
    demo = cmd("demo", "run the real pipeline against built-in ServiceNow and Slack simulators", config=False)
    demo.add_argument("--locale", choices=["ko", "en"], default="ko")
    demo.add_argument("--timezone", default="Asia/Seoul")
    return p


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion, when the optional ``completion`` extra (argcomplete) is installed: answers
    the shell hook's request and exits; does nothing otherwise."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    _complete(parser)
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from connector.cli.demo import run_demo

            return run_demo(locale=args.locale, timezone=args.timezone)
        # status and windows only read the state database: they run without the service's secrets
        settings = load_settings(args.config, secrets_required=args.command not in ("status", "windows"))
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    for secret in settings.secrets():  # every one, before anything can log or print
        register_secret(secret)
    setup_logging(settings.log.level, settings.log.format)
    if args.command in ("run", "sync", "check"):  # the commands that send credentials somewhere
        for warning in settings.warnings():
            log.warning("%s", warning)
    handlers = {
        "run": cmd_run,
        "sync": cmd_sync,
        "check": cmd_check,
        "windows": cmd_windows,
        "status": cmd_status,
        "digest": cmd_digest,
        "calendar": cmd_calendar,
    }
    try:
        return handlers[args.command](settings, args)
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    except (StateError, StateLocked) as e:  # one message saying what to do, no traceback
        if args.command == "run":
            logging.getLogger("connector").error("%s", e)  # the daemon's log (the journal, with a priority)
        else:
            print(f"itsm-connector: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
