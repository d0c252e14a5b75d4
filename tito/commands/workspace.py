"""`tito workspace DIR [MODULE ...]`: a student's workspace, built from the releases."""

from __future__ import annotations

import argparse
from pathlib import Path

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Build a complete student workspace in DIR (a new or empty folder): the released notebooks
of the modules (all that exist, when none is named) with their .py pairs written from the
*student* notebooks, a tinytorch/ package exported from the stubs, the module tests
(tests/test_NN_*.py), settings.ini, pyproject.toml, constraints.txt, bin/tito, tito/,
binder/ and milestones/. Modules are released first when their release is out of date.

In the workspace, `bin/tito export NN` compiles the student's own code into tinytorch/,
and `bin/tito test NN` reports, check by check, what passes and what fails. Before
finishing, tito imports the workspace's tinytorch (every stubbed module must import) and
searches the whole workspace for solution lines; it exits 1 if either fails."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR", help="where to create the workspace")
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="modules to include (default: all that exist)")
    parser.add_argument("--course-dir", type=Path, metavar="DIR",
                        help="nbgrader's course folder (default: from nbgrader_config.py, course/)")


def run(args: argparse.Namespace, course: Course) -> int:
    # nbgrader is imported only when needed: the other commands start faster without it.
    from tito.grading import GradingError, gradebook
    from tito.workspace import WorkspaceError, build_workspace
    modules = course.select(args.modules)
    try:
        workspace = build_workspace(course, gradebook(course, course_dir=args.course_dir), args.directory, modules)
    except (WorkspaceError, GradingError) as exc:
        print(f"tito workspace: {exc}")
        return 1
    print(f"workspace {workspace.root}: {len(modules)} module(s): {', '.join(m.dirname for m in modules)}")
    ok = True
    if workspace.import_error:
        ok = False
        print(f"ERROR: `import tinytorch` fails in the workspace: {workspace.import_error}")
    else:
        print("import tinytorch (stubbed modules included): OK")
    if workspace.leaks:
        ok = False
        print(f"ERROR: solution text in the workspace ({len(workspace.leaks)} line(s)):")
        for leak in workspace.leaks[:20]:
            print(f"  {leak}")
    else:
        print("no solution text in the workspace")
    if ok:
        print(f"next: cd {workspace.root} && bin/tito status")
    return 0 if ok else 1


COMMAND = Command(
    name="workspace",
    help="build a student workspace (stubbed modules, their package, tests, tito)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
