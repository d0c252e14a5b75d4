"""The registry of tito subcommands, in the order `tito --help` lists them."""

from __future__ import annotations

from tito.command import Command
from tito.commands import book, export, grade, milestone, release, reuse, bench, status, test, workspace
from tito.commands import mutants, package, runs, serve, submit

COMMANDS: tuple[Command, ...] = (
    export.COMMAND,
    test.COMMAND,
    status.COMMAND,
    milestone.COMMAND,
    reuse.COMMAND,
    bench.COMMAND,
    release.COMMAND,
    workspace.COMMAND,
    submit.COMMAND,
    grade.COMMAND,
    mutants.COMMAND,
    book.COMMAND,
    runs.COMMAND,
    package.COMMAND,
    serve.COMMAND,
)
