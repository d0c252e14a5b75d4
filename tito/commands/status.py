"""`tito status [--tests] [--lines [--json]]`: one line per course module."""

from __future__ import annotations

import argparse
import json
import sys

from tito.checking import Change, find_changes, module_is_current
from tito.command import Command
from tito.course import MODULES, Course, Module
from tito.testing import run_pytest

DESCRIPTION = """\
Show every module of the course: whether its dev file exists (modules not written yet
are "planned"), how many of its solution cells are written (a module whose every
solution cell is still the release's stub is "not started"), whether it is exported and
up to date (its generated file exists and matches a fresh export, and its .py and .ipynb
agree), and, with --tests, whether its tests (tests/test_NN_*.py) pass (modules not
started are not tested).

--lines measures instead how lean each module is (tito/lines.py): lines of its dev file,
exported code lines, the lines students write (inside SOLUTION regions) and their share,
and `raise` statements inside SOLUTION regions, with a total row and the course's targets
(rows that miss one are marked MISS). --json prints the same as JSON."""

HEADER = ("module", "dev file", "written", "export", "tests")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tests", action="store_true", help="also run each started module's tests")
    parser.add_argument("--no-tests", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--lines", action="store_true",
                        help="line counts instead: dev file, exported, written by students, raises in solutions")
    parser.add_argument("--json", action="store_true", help="with --lines: print the counts as JSON")


def export_state(course: Course, module: Module, changes: list[Change]) -> str:
    if not course.generated_file(module).exists():
        return "not exported"
    return "up to date" if module_is_current(course, module, changes) else "out of date"


def test_state(course: Course, module: Module) -> str:
    files = course.test_files(module)
    if not files:
        return "no tests"
    result = run_pytest(course, files, ["-q", "--no-header", "-p", "no:warnings"], capture=True)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    return ("pass" if result.returncode == 0 else "FAIL") + (f" ({summary})" if summary else "")


def written_state(course: Course, module: Module) -> tuple[int, int]:
    """(solution cells that are no longer nbgrader's stub, solution cells) of the dev file."""
    from tito.grading import STUB_COMMENT
    from tito.pairing import read_py

    cells = [c for c in read_py(course.dev_py(module)).cells
             if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    return sum(STUB_COMMENT not in c.source for c in cells), len(cells)


def rows(course: Course, changes: list[Change], run_tests: bool) -> list[tuple[str, ...]]:
    table = []
    for module in MODULES:
        if not course.exists(module):
            table.append((module.dirname, "planned", "-", "-", "-"))
            continue
        done, total = written_state(course, module)
        written = "not started" if total and not done else f"{done} of {total}"
        if total and not done:
            tests = "not started"
        else:
            tests = test_state(course, module) if run_tests else "not run (--tests)"
        table.append((module.dirname, "yes", written, export_state(course, module, changes), tests))
    return table


def render(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def package_changes(course: Course, changes: list[Change]) -> list[Change]:
    """Changes that belong to no single module (e.g. tinytorch/__init__.py, _modidx.py)."""
    owned = {
        p.relative_to(course.root).as_posix()
        for m in MODULES
        for p in (course.dev_py(m), course.dev_ipynb(m), course.generated_file(m))
    }
    return [c for c in changes if c.path not in owned]


def run(args: argparse.Namespace, course: Course) -> int:
    if args.lines:
        from tito import lines

        counted = lines.measure(course)
        print(json.dumps(lines.to_json(counted), indent=2) if args.json else lines.render(counted))
        return 0
    if args.json:
        print("tito status: --json goes with --lines", file=sys.stderr)
        return 2
    changes = find_changes(course)
    print(render([HEADER, *rows(course, changes, run_tests=args.tests)]))
    for change in package_changes(course, changes):
        print(f"out of date: {change.path}: {change.reason} (run `tito export`)")
    return 0


COMMAND = Command(
    name="status",
    help="show each course module: written, exported, tests passing",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
