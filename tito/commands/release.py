"""`tito release [MODULE ...]`: the student versions of the modules (nbgrader)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tito.command import Command
from tito.course import Course
from tito.links import format_points, module_problems, placeholder_problem, repository
from tito.student import publish, student_notebook

DESCRIPTION = """\
Generate the student version of each module (every module whose dev file exists, when
none is named) with nbgrader:

  1. modules/NN_name/name_dev.py is written as nbgrader's source notebook,
     course/source/NN_name/name_dev.ipynb (course/ is set in nbgrader_config.py);
  2. `nbgrader generate_assignment` writes course/release/NN_name/name_dev.ipynb: every
     solution region becomes a stub that raises NotImplementedError naming the module,
     the function and the command to run; hidden tests are removed; graded cells are
     locked; the gradebook (course/gradebook.db) learns the graded cells and their points;
  3. the release is searched for every solution line of the dev file: tito exits 1 if
     any is found;
  4. the release is copied to student/NN_name/name_dev.ipynb, the committed student
     notebook that the README's Colab and Binder links and the book open (commit it; CI
     fails when it is out of step with the dev file).

While settings.ini holds the template's placeholder repository (tinytorch/tinytorch),
the notebooks' Colab cell refuses to install anything: set `user`/`repo`/`branch` to
your course's repository and run `tito book --update` first.

The dev .py files never go into a release. `tito workspace DIR` builds a student's whole
workspace from the releases; `tito grade MODULE` autogrades submissions."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="modules to release (default: all that exist)")
    parser.add_argument("--course-dir", type=Path, metavar="DIR",
                        help="nbgrader's course folder (default: from nbgrader_config.py, course/)")


def run(args: argparse.Namespace, course: Course) -> int:
    # nbgrader is imported only when needed: the other commands start faster without it.
    from tito.grading import GradingError, gradebook, release
    modules = course.select(args.modules)
    book = gradebook(course, course_dir=args.course_dir)
    try:
        released = release(book, modules)
    except GradingError as exc:
        print(f"tito release: {exc}")
        return 1
    ok = True
    for problem in placeholder_problem(repository(course)):
        print(f"warning: {problem}")
    for item in released:
        where = _relative(item.notebook, course.root)
        print(f"released {item.module.dirname} -> {where}: {item.graded_cells} graded cells, "
              f"{format_points(item.points)} points, {item.stubs} stubs")
        if not item.leaks and publish(course, item.module, item.notebook):
            print(f"    updated {_relative(student_notebook(course, item.module), course.root)} (commit it)")
        for problem in module_problems(course, item.module):
            print(f"    warning: {problem}")
        if item.leaks:
            ok = False
            print(f"    ERROR: solution text survives in the release ({len(item.leaks)} line(s)):")
            for leak in item.leaks[:20]:
                print(f"      {leak}")
    print("no solution text in any release" if ok else "tito release: solution text leaked; fix the dev files")
    return 0 if ok else 1


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


COMMAND = Command(
    name="release",
    help="generate the student versions of the modules (nbgrader), checked for leaks",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
