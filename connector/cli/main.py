# PYTHON_ARGCOMPLETE_OK (shell completion: argcomplete's hook looks for this in the first 1 KB)
"""The ``itsm-connector`` command line: argument parsing, the config file, exit codes. No business logic.

Exit codes: 0 success; 1 a check or sync failed, or a state failure that may pass by itself (disk
full); 2 bad configuration or usage; 3 the state database is in use by another process (its lock);
4 the state database needs an operator (damaged, read-only, deleted or replaced while running). Each
with one readable message, no traceback. The commands live in ``service`` (run, sync), ``check``,
``report`` (windows, status, digest, calendar), ``demo`` and ``simulate``. The help text below is
what ``itsm-connector --help`` shows.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from connector import __version__
from connector.config import CONFIG_ENV, DEFAULT_CONFIG_PATH
from connector.errors import ConfigError, StateError, StateLocked

if TYPE_CHECKING:
    from connector.config import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Keeps a Slack channel current with the maintenance windows of ServiceNow change tickets: one message
per window, updated in place, its lifecycle in the thread (and, optionally, Alertmanager silences)."""

EPILOG = f"""\
new here?
  itsm-connector demo        an evening of change work, played in a second (nothing to set up)
  itsm-connector simulate    ServiceNow and Slack simulators and a config for them: try check, sync,
                             run and status against it (it prints how)

config:
  -c FILE (before or after the command), else ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}.
  config.example.yaml documents every key; secrets go in files (see README, "Install").

exit codes:
  0 ok; 1 a check, a sync or a source failed (each named on stderr); 2 bad configuration or usage;
  3 the state database is in use by another process; 4 the state database needs an operator."""

#: commands that only read the state database: they need no secrets
READ_ONLY = ("windows", "status", "digest", "calendar")
#: the commands that need no Slack or ServiceNow secret (the state's password, when they use it, is read)
NO_SERVICE_SECRETS = (*READ_ONLY, "state")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="itsm-connector",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"itsm-connector {__version__}")
    p.add_argument("-c", "--config", type=Path, metavar="FILE", help="the YAML config file (see below)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def cmd(name: str, help: str, config: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if config:  # also after the command; SUPPRESS keeps one given before it
            c.add_argument(
                "-c",
                "--config",
                type=Path,
                metavar="FILE",
                default=argparse.SUPPRESS,
                help=f"YAML config file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
            )
        return c

    run = cmd("run", "run the daemon: poll, keep Slack current, until stopped (under systemd: Type=notify)")
    run.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    sync = cmd("sync", "one cycle: poll every source, deliver to every channel and Alertmanager, exit")
    sync.add_argument("--once", action="store_true", help=argparse.SUPPRESS)  # it always was one cycle
    sync.add_argument("--dry-run", action="store_true", help="print messages instead of sending them")
    cmd("check", "check the config, every source, the Slack token and every channel, and Alertmanager")
    w = cmd("windows", "list known windows and their phase (reads the state only)")
    w.add_argument("--problems", action="store_true", help="list rejected tickets and why")
    w.add_argument("--json", action="store_true", help="machine-readable output")
    cmd("status", "health, last poll, cursor, outbox and problems in one screen (reads the state only)")
    dg = cmd("digest", "print each channel's shift digest as it would be posted now (reads the state only)")
    dg.add_argument("--print", action="store_true", help=argparse.SUPPRESS)  # it only ever printed
    dg.add_argument("--channel", help="only this channel id")
    cal = cmd("calendar", "the windows as an iCalendar feed on stdout (itsm-connector calendar > w.ics)")
    cal.add_argument("--channel", help="only the windows this channel follows")
    st = cmd("state", "state database tools: migrate copies the SQLite state into PostgreSQL (docs/ha.md)")
    st.add_argument("action", choices=["migrate"])
    st.add_argument("--to", required=True, help="postgresql://user@host:port/dbname (no password in it)")
    st.add_argument("--schema", help="the PostgreSQL schema to hold the tables (default: search_path)")
    demo = cmd("demo", "the real pipeline against built-in simulators, on a scripted evening", config=False)
    demo.add_argument("--locale", choices=["ko", "en"], default="ko")
    demo.add_argument("--timezone", default="Asia/Seoul")
    demo.add_argument(
        "--push", action="store_true", help="push in real time: hints from the simulator, one lost, the poll"
    )
    sim = cmd(
        "simulate",
        "start ServiceNow and Slack simulators on loopback and write a config for them; Ctrl-C stops",
        config=False,
    )
    from connector.cli.simulate import add_arguments

    add_arguments(sim)
    return p


def config_path(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Path:
    """``-c`` (before or after the command), else ``$ITSM_CONNECTOR_CONFIG``, else the default."""
    env = os.environ if environ is None else environ
    if args.config is not None:
        return Path(args.config)
    return Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else DEFAULT_CONFIG_PATH


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
    if args.command == "demo" and args.push:
        from connector.cli.demo_push import run_push_demo

        return run_push_demo(sys.stdout, locale=args.locale, tz=args.timezone)
    if args.command == "demo":
        from connector.cli.demo import run_demo

        return run_demo(locale=args.locale, timezone=args.timezone)
    if args.command == "simulate":
        from connector.cli.simulate import cmd_simulate

        return cmd_simulate(args)
    return _configured(args)


def _configured(args: argparse.Namespace) -> int:
    from connector.config import load_settings
    from connector.logs import register_secret, setup_logging

    args.config = config_path(args)
    try:
        settings = load_settings(args.config, secrets_required=args.command not in NO_SERVICE_SECRETS)
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    for secret in settings.secrets():  # every one, before anything can log or print
        register_secret(secret)
    setup_logging(settings.log.level, settings.log.format)
    if args.command in ("run", "sync", "check"):  # the commands that send credentials somewhere
        for warning in settings.warnings():
            log.warning("%s", warning)
    try:
        return _handler(args.command)(settings, args)
    except ConfigError as e:
        print(f"itsm-connector: {e}", file=sys.stderr)
        return 2
    except (StateError, StateLocked) as e:  # one message saying what to do, no traceback
        if args.command == "run":
            log.error("%s", e)  # the daemon's log (the journal, with a priority)
        else:
            print(f"itsm-connector: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _handler(command: str) -> Callable[[Settings, argparse.Namespace], int]:
    from connector.cli.check import cmd_check
    from connector.cli.report import cmd_calendar, cmd_digest, cmd_status, cmd_windows
    from connector.cli.service import cmd_run, cmd_sync
    from connector.cli.state import cmd_state

    return {
        "state": cmd_state,
        "run": cmd_run,
        "sync": cmd_sync,
        "check": cmd_check,
        "windows": cmd_windows,
        "status": cmd_status,
        "digest": cmd_digest,
        "calendar": cmd_calendar,
    }[command]
