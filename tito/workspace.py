"""`tito workspace DIR`: a complete course for one student, with every solution removed.

The workspace is a checkout-like folder the student works in (or a repository the
instructor publishes for students):

    modules/NN_name/name_dev.ipynb   the released (student) notebook
    modules/NN_name/name_dev.py      its Jupytext pair, written from the *student* notebook
    tinytorch/                       exported from those stubs (`import tinytorch` works;
                                     unfinished functions raise NotImplementedError naming
                                     the module to finish)
    tests/test_NN_*.py               the module tests, which test the student's package
    tests/<helper>.py                the helpers those tests import
    bin/tito, tito/, settings.ini, pyproject.toml, constraints.txt, binder/, milestones/
    student/, _toc.yml, _config.yml, _static/  the course's student notebooks and book set-up
                                     (`tito book` builds the book in a workspace too)
    README.md                        how to work in it

Nothing in it is copied from a dev `.py` file: every module file comes from nbgrader's
release, and the whole folder is searched for solution lines before tito reports success.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

from tito.course import Course, Module
from tito.exporting import export
from tito.grading import Gradebook, course_secret_lines, find_leaks, instructor_text, release, secret_lines
from tito.notebooks import kernel_env
from tito.pairing import IPYNB_FORMAT, PY_FORMAT

#: Copied as they are (when they exist in the course).
COPIED_FILES = ("settings.ini", "pyproject.toml", "constraints.txt", ".gitignore",
                "_toc.yml", "_config.yml", "constraints-book.txt")  # the book builds in a workspace too
COPIED_DIRS = ("bin", "tito", "binder", "milestones", "student", "_static")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")

README = """\
# TinyTorch: your workspace

Build a deep-learning framework from scratch, in Python and numpy, one module at a time.
Each module is a notebook in `modules/`; the code you write in it is compiled by
`tito export` into your own package, `tinytorch/`, which later modules import.

## Set-up

```bash
bin/tito status                # creates .venv on first use (Python 3.11+), then lists the modules
.venv/bin/jupyter lab          # open the notebooks
```

## Working on a module

1. Open `modules/01_tensor/tensor_dev.ipynb`, read it, and replace every
   `raise NotImplementedError(...)` under `# YOUR CODE HERE` with your code. Run the test
   cells under each section as you go.
2. `bin/tito export 01_tensor` compiles your code into `tinytorch/core/tensor.py`.
3. `bin/tito test 01_tensor` runs the notebook headless and tells you which checks pass
   and which fail (and why), then runs the module's tests in `tests/`.

Until a module is finished, code that needs it fails with a message that names it, e.g.
`module 01 (tensor): `Tensor.__init__` is not implemented yet — finish it in
modules/01_tensor/tensor_dev.ipynb and run `tito export 01_tensor``.

The modules in this workspace: {modules}.
"""


class WorkspaceError(RuntimeError):
    """Why a workspace could not be built."""


@dataclass
class Workspace:
    """What `build_workspace` made."""

    root: Path
    modules: list[Module]
    leaks: list[str] = field(default_factory=list)
    import_error: str = ""


def _copy_course_files(course: Course, target: Path) -> None:
    for name in COPIED_FILES:
        if (course.root / name).exists():
            shutil.copy2(course.root / name, target / name)
    for name in COPIED_DIRS:
        if (course.root / name).is_dir():
            shutil.copytree(course.root / name, target / name, ignore=IGNORED, symlinks=True)


def write_student_pair(notebook: Path, module: Module, target: Course) -> None:
    """Put a released notebook into a workspace with its `.py` pair, written from it."""
    ipynb, py = target.dev_ipynb(module), target.dev_py(module)
    ipynb.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(notebook, fmt=IPYNB_FORMAT)
    ipynb.write_text(jupytext.writes(nb, fmt=IPYNB_FORMAT), encoding="utf-8")
    py.write_text(jupytext.writes(nb, fmt=PY_FORMAT), encoding="utf-8")


def check_imports(root: Path, modules: list[Module]) -> str:
    """Import the workspace's `tinytorch` and every module's generated file in a fresh
    Python; the error text, or "" when all import."""
    names = ["tinytorch"] + [m.import_name for m in modules if (root / m.generated_relpath).exists()]
    code = "import importlib\nfor name in %r:\n    importlib.import_module(name)\n" % names
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=kernel_env(root),
                            capture_output=True, text=True)
    return "" if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


def workspace_leaks(course: Course, student: Course, modules: list[Module]) -> list[str]:
    """Solution lines found in the workspace: each module's own solution lines in its
    notebook, its .py and its generated file; and the course's solution lines that no dev
    file shows outside a solution region, in everything made from the releases."""
    leaks = []
    for module in modules:
        secrets = secret_lines(instructor_text(course, module))
        leaks += find_leaks(secrets, [student.module_dir(module), student.generated_file(module)])
    derived = [student.modules_dir, student.lib_dir, student.root / "README.md", student.root / "student"]
    return leaks + find_leaks(course_secret_lines(course, modules), derived)


def build_workspace(course: Course, book: Gradebook, target: Path, modules: list[Module]) -> Workspace:
    """Release `modules` (when out of date) and build a student workspace in `target`."""
    target = Path(target).resolve()
    if target.exists() and any(target.iterdir()):
        raise WorkspaceError(f"{target} exists and is not empty; choose a new folder")
    if target == course.root or target == course.modules_dir or course.modules_dir in target.parents:
        raise WorkspaceError(f"{target} is the course itself or inside its modules/ folder; choose a folder elsewhere")
    released = release(book, modules, only_if_stale=True)
    target.mkdir(parents=True, exist_ok=True)
    _copy_course_files(course, target)
    student = Course(target)
    student.tests_dir.mkdir(exist_ok=True)
    for helper in sorted(course.tests_dir.glob("*.py")):       # shared test helpers, not tests
        if not helper.name.startswith("test_"):
            shutil.copy2(helper, student.tests_dir / helper.name)
    for item in released:
        write_student_pair(item.notebook, item.module, student)
        for test in course.test_files(item.module):
            shutil.copy2(test, student.tests_dir / test.name)
    (target / "README.md").write_text(
        README.format(modules=", ".join(m.dirname for m in modules)), encoding="utf-8")
    export(student, modules)
    workspace = Workspace(target, list(modules))
    workspace.leaks = workspace_leaks(course, student, modules)
    workspace.import_error = check_imports(target, modules)
    return workspace
