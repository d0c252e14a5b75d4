"""`tito grade MODULE [--submissions DIR]`: autograde a module's submissions (nbgrader)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Autograde every submission of one module with nbgrader, then write a grades table
(course/grades/NN_name.csv: one row per student, one column per graded cell) and each
student's feedback (course/feedback/<student>/NN_name/name_dev.html).

Submissions are read from nbgrader's folder, course/submitted/<student>/NN_name/, or, with
--submissions DIR, copied in from DIR/<student>/NN_name/name_dev.ipynb or
DIR/<student>/name_dev.ipynb. The module is released first if its release is out of date.

Every cell of a submission runs, even after errors. A cell may run --cell-timeout seconds
and a whole notebook --timeout seconds (defaults from nbgrader_config.py): a submission
that never returns, crashes its kernel or fails on import is graded (the cells it did not
finish earn nothing) and the others are graded as usual."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", metavar="MODULE", help="the module to grade (01_tensor, 01 or tensor)")
    parser.add_argument("--submissions", type=Path, metavar="DIR", help="folder of submissions to copy in first")
    parser.add_argument("--timeout", type=int, metavar="SECONDS", help="time limit for one notebook")
    parser.add_argument("--cell-timeout", type=int, metavar="SECONDS", help="time limit for one cell")
    parser.add_argument("--no-feedback", action="store_true", help="do not write feedback HTML")
    parser.add_argument("--course-dir", type=Path, metavar="DIR",
                        help="nbgrader's course folder (default: from nbgrader_config.py, course/)")


def run(args: argparse.Namespace, course: Course) -> int:
    # nbgrader is imported only when needed: the other commands start faster without it.
    from tito.grading import GradingError, autograde, gradebook
    module = course.select([args.module])[0]
    book = gradebook(course, course_dir=args.course_dir, cell_timeout=args.cell_timeout,
                     notebook_timeout=args.timeout)
    try:
        result = autograde(book, module, submissions=args.submissions, feedback=not args.no_feedback)
    except GradingError as exc:
        print(f"tito grade: {exc}")
        return 1
    width = max(len(s) for s in result.students)
    for student in sorted(result.students):
        grade = result.students[student]
        status = "" if grade.ok else f"  (could not be graded: {grade.error})"
        print(f"  {student:<{width}}  {grade.score:g} / {grade.max_score:g}{status}")
    print(f"graded {len(result.students)} submission(s) of {module.dirname} in {result.seconds:.1f} s")
    print(f"grades: {result.csv}")
    if result.feedback:
        print(f"feedback: {book.feedback_dir}/<student>/{module.dirname}/{module.dev_stem}.html")
    return 0


COMMAND = Command(
    name="grade",
    help="autograde a module's submissions: grades CSV and feedback HTML",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
