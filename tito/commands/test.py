"""`tito test [MODULE ...] [--no-notebooks] [--no-pytest] [-k EXPR] [-- PYTEST_ARGS]`."""

from __future__ import annotations

import argparse

from tito.command import Command
from tito.course import Course
from tito.notebooks import DEFAULT_CELL_TIMEOUT
from tito.testing import TestOptions, run_modules, run_suite

DESCRIPTION = f"""\
Test the course.

With no MODULE this is the whole suite, as CI runs it: `tito export --check`, then
every module's dev file run top to bottom as a notebook (headless, in the module's
folder), then one pytest run over all of tests/ (its summary is the last line printed).

With MODULEs (01_tensor, 01 or tensor): each module's dev file as a notebook, then
pytest on its tests/test_NN_*.py files.

The exit status is 1 if any step failed; every step runs either way. Arguments after
`--` go to pytest, e.g. `tito test 01 -- -x -q`. Notebook cells time out after
{DEFAULT_CELL_TIMEOUT} s unless --timeout says otherwise."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="modules to test (default: the whole suite)")
    parser.add_argument("--no-notebooks", action="store_true", help="do not run the dev files as notebooks")
    parser.add_argument("--no-pytest", action="store_true", help="do not run pytest")
    parser.add_argument("-k", metavar="EXPR", help="only run pytest tests matching EXPR (pytest's -k)")
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_CELL_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit for one notebook cell (default {DEFAULT_CELL_TIMEOUT})",
    )


def run(args: argparse.Namespace, course: Course) -> int:
    pytest_args = (["-k", args.k] if args.k else []) + list(args.passthrough)
    options = TestOptions(
        notebooks=not args.no_notebooks,
        pytest=not args.no_pytest,
        timeout=args.timeout,
        pytest_args=pytest_args,
    )
    if args.modules:
        return run_modules(course, course.select(args.modules), options)
    return run_suite(course, options)


COMMAND = Command(
    name="test",
    help="run the dev notebooks headless and the pytest suite",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
    passthrough=True,
)
