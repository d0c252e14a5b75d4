"""The `tito` command line: `tito COMMAND [ARGS]` (see `tito --help`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tito import __version__
from tito.command import Command
from tito.commands import COMMANDS
from tito.course import ROOT_ENV_VAR, Course, UnknownModuleError, default_root
from tito.exporting import ExportError

DESCRIPTION = """\
tito: the TinyTorch course tool. Export the course's notebooks (modules/) into the
tinytorch package, test them, and see where the course stands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tito", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tito {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        help=f"the course checkout to work on (default: ${ROOT_ENV_VAR}, else the checkout tito is in)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(tito_command=command)
    return parser


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split `argv` at the first `--`: tito's own arguments, then the rest."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    """Run tito with `argv` (default: the process's arguments); return the exit status."""
    own, passthrough = _split_passthrough(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    command: Command = args.tito_command
    if passthrough and not command.passthrough:
        parser.error(f"`tito {command.name}` takes no arguments after --")
    args.passthrough = passthrough
    course = Course(args.root.resolve() if args.root else default_root())
    try:
        return command.run(args, course)
    except (UnknownModuleError, ExportError) as exc:
        print(f"tito {command.name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tito {command.name}: interrupted", file=sys.stderr)
        return 130
