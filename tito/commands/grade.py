"""`tito grade MODULE [--submissions DIR]`: autograde a module's submissions (nbgrader)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Autograde the submissions of one module, then write a grades table
(course/grades/NN_name.csv: one row per student, one column per graded cell), each
student's verdicts (course/grades/NN_name/<student>.json) and feedback
(course/feedback/<student>/NN_name/name_dev.html).

Each submission runs in a sandbox of its own (Linux namespaces: nothing of this checkout
is visible to it, only the reference modules before this one and the submission's own
code for this one) and a fresh interpreter in which tito decides every check, hidden
tests included; nbgrader runs it once more, in a sandboxed kernel, for the feedback.
--student NAME regrades one student (repeatable) and leaves the others' grades as they
are. --earlier own builds the modules before this one from each student's own
submissions of them (where present) instead of the reference solutions.

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
    parser.add_argument("--student", action="append", metavar="NAME",
                        help="grade only this student's submission (repeatable)")
    parser.add_argument("--earlier", choices=("reference", "own"), default="reference",
                        help="where modules before this one come from (default: reference)")
    parser.add_argument("--memory-mb", type=int, metavar="MIB", help="memory limit of one submission (default 4096)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="grade without the sandbox (unsafe: submissions can read your files)")
    parser.add_argument("--course-dir", type=Path, metavar="DIR",
                        help="nbgrader's course folder (default: from nbgrader_config.py, course/)")


def run(args: argparse.Namespace, course: Course) -> int:
    # nbgrader is imported only when needed: the other commands start faster without it.
    from tito.grading import GradingError, autograde, gradebook
    module = course.select([args.module])[0]
    book = gradebook(course, course_dir=args.course_dir, cell_timeout=args.cell_timeout,
                     notebook_timeout=args.timeout, sandbox=not args.no_sandbox, memory_mb=args.memory_mb)
    try:
        result = autograde(book, module, submissions=args.submissions, feedback=not args.no_feedback,
                           students=args.student, earlier=args.earlier)
    except GradingError as exc:
        print(f"tito grade: {exc}")
        return 1
    width = max(len(s) for s in result.students)
    for student in sorted(result.students):
        grade = result.students[student]
        status = "" if grade.ok else f"  (could not be graded: {grade.error})"
        status += f"  [review: {', '.join(grade.review)}]" if grade.review else ""
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
