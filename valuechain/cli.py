"""The `valuechain` command.

Each subcommand is a `(name, help, add_arguments, handler)` entry in COMMANDS; handlers
import what they need lazily so `valuechain --help` stays fast. To add a command, write
`def _cmd_x(args) -> int` (and optionally `def _args_x(parser)`), then add it to COMMANDS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _cmd_run(args: argparse.Namespace) -> int:
    from valuechain.supervisor import run

    return run()


def _cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade_all

    upgrade_all()
    print("migrations: every service is at head")
    return 0


def _no_args(parser: argparse.ArgumentParser) -> None:
    return None


COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = [
    (
        "run",
        "start NATS, migrate, then run the five services and the gateway under a supervisor",
        _no_args,
        _cmd_run,
    ),
    ("migrate", "upgrade every service's database to the latest schema", _no_args, _cmd_migrate),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valuechain",
        description="Value Chain CRM: run the suite locally or manage its databases.",
        epilog="Configuration comes from VALUECHAIN_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text, add_arguments, handler in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
