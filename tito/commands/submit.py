"""`tito submit MODULE`: pack a student's module notebook for handing in."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Pack exactly what is graded, your module notebook, into a zip to hand in:

  submission-NN_name.zip
    NN_name/name_dev.ipynb

First the notebook and its .py are brought in step (whichever you edited last wins), and
the module's checks run as `tito test MODULE` runs them: the same verdicts the grader will
give on the visible checks (hidden tests are added at grading). Only your solution cells
are graded; the rest of the notebook comes from the course. Upload the zip where your
instructor asks (on JupyterHub, use nbgrader's Assignments tab instead)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", metavar="MODULE", help="the module to submit (01_tensor, 01 or tensor)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="the zip to write (default: ./submission-NN_name.zip)")
    parser.add_argument("--no-check", action="store_true", help="do not run the module's checks first")


def run(args: argparse.Namespace, course: Course) -> int:
    import nbformat

    from tito.notebooks import DEFAULT_CELL_TIMEOUT
    from tito.pairing import sync_pair
    from tito.testing import check_module

    module = course.select([args.module])[0]
    py, ipynb = course.dev_py(module), course.dev_ipynb(module)
    if not ipynb.exists() and not py.exists():
        print(f"tito submit: {ipynb} does not exist")
        return 1
    sync_pair(py, ipynb)
    try:
        nbformat.validate(nbformat.read(ipynb, as_version=4))
    except Exception as exc:  # a broken file is better found now than by the grader
        print(f"tito submit: {ipynb} is not a valid notebook ({exc}); fix it before submitting")
        return 1
    if not args.no_check:
        report = check_module(course, module, ipynb, DEFAULT_CELL_TIMEOUT)
        print(f"visible checks: {report.score:g} of {report.max_score:g} points")
        for verdict in report.verdicts:
            print(f"    {verdict.describe()}")
    out = args.out or Path.cwd() / f"submission-{module.dirname}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(ipynb, f"{module.dirname}/{ipynb.name}")
    print(f"wrote {out}: {module.dirname}/{ipynb.name} (unzip it into submissions/<your name>/ for `tito grade`)")
    return 0


COMMAND = Command(
    name="submit",
    help="pack your module notebook for handing in (runs its checks first)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
