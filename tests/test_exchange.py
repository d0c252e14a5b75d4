"""A class through nbgrader's exchange, on a local exchange folder standing in for JupyterHub's:
tito release -> nbgrader release_assignment -> fetch_assignment -> (the student works) ->
submit -> collect -> tito grade, as docs/instructor_guide.md describes it."""

from __future__ import annotations

import getpass
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tito.course import Course, resolve_module
from tito.grading import autograde, gradebook, release
from tito.mutation import filled

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)
NBGRADER = str(Path(sys.executable).with_name("nbgrader"))


def nbgrader(*args: str, cwd: Path) -> str:
    done = subprocess.run([NBGRADER, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_release_fetch_submit_collect_grade(tmp_path: Path) -> None:
    module = resolve_module("02")
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    book = gradebook(COURSE, course_dir=tmp_path / "course")
    released = nbformat.read(release(book, [module])[0].notebook, as_version=4)
    exchange_root = f"--Exchange.root={exchange}"
    instructor = [exchange_root, "--CourseDirectory.course_id=tinytorch", f"--CourseDirectory.root={book.root}",
                  f"--CourseDirectory.db_url={book.db_url}"]
    nbgrader("release_assignment", module.dirname, *instructor, cwd=tmp_path)

    student = tmp_path / "student"
    student.mkdir()
    nbgrader("fetch_assignment", module.dirname, "--course", "tinytorch", exchange_root, cwd=student)
    fetched = student / module.dirname / f"{module.dev_stem}.ipynb"
    assert nbformat.read(fetched, as_version=4).cells[3].source == released.cells[3].source
    nbformat.write(filled(released, COURSE.dev_py(module).read_text(encoding="utf-8"), module), fetched)
    nbgrader("submit", module.dirname, "--course", "tinytorch", exchange_root, cwd=student)

    nbgrader("collect", module.dirname, *instructor, cwd=tmp_path)
    me = getpass.getuser()
    assert book.submitted_notebook(me, module).exists()
    run = autograde(book, module, feedback=False)
    assert run.students[me].score == run.students[me].max_score > 0
