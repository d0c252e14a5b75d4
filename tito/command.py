"""What a tito subcommand is: a name, help text, its arguments, and a function that runs it.

To add a subcommand, write a module in tito/commands/ that defines `COMMAND = Command(...)`
and list it in `tito.commands.COMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from tito.course import Course


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take no arguments."""


@dataclass(frozen=True)
class Command:
    """A tito subcommand."""

    name: str
    help: str  # one line, shown in `tito --help`
    description: str  # shown in `tito NAME --help`
    run: Callable[[argparse.Namespace, Course], int]  # returns the exit status
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    #: Whether arguments after `--` are accepted (they arrive as `args.passthrough`).
    passthrough: bool = False
