"""The instructor's side of the course: nbgrader releases, autograding, feedback.

Every course module is one nbgrader *assignment* named after its folder (`03_layers`),
holding one notebook (`layers_dev.ipynb`). nbgrader's folders live under `course/` (see
nbgrader_config.py), outside modules/ and outside nbdev's reach:

    course/source/03_layers/layers_dev.ipynb      written by tito from modules/03_layers/layers_dev.py
    course/release/03_layers/layers_dev.ipynb     the student version (nbgrader generate_assignment)
    course/submitted/<student>/03_layers/...      submissions to grade
    course/autograded/..., course/feedback/...    nbgrader's results
    course/grades/03_layers.csv                   tito's grades table
    course/gradebook.db                           nbgrader's gradebook (SQLite)

Two nbgrader preprocessors of tito's are configured into nbgrader's pipelines (see
`use_tito_preprocessors`, called from nbgrader_config.py):

* `ExplainStubs` (after ClearSolutions): every stub `raise NotImplementedError()` becomes
  `raise NotImplementedError("module 03 (layers): `Dense.forward` is not implemented yet —
  finish it in modules/03_layers/layers_dev.ipynb and run `tito export 03_layers`")`.
* `GradingExecute` (instead of Execute when autograding): runs every cell even after
  errors, on a kernel of this very Python with the course on its PYTHONPATH, and enforces
  a time limit per *notebook* (`notebook_timeout`) on top of nbgrader's per-cell limit, so
  a submission that never returns is graded (its remaining cells fail) and the grading of
  the other submissions goes on. A kernel that dies is handled the same way.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from tito.checks import CheckReport, Verdict, build_package, build_program, run_checks
from tito.course import Course, Module, UnknownModuleError, resolve_module
from tito.hidden import hidden_text, with_hidden
from tito.links import graded_points
from tito.notebooks import _TRANSPORT, _ThisPythonKernels, kernel_env
from tito.pairing import _fix_new_cell_ids, read_py
from tito.sandbox import DEFAULT_MEMORY_MB, Sandbox
from tito.sandbox import available as sandbox_unavailable

CONFIG_FILE = "nbgrader_config.py"
DEFAULT_COURSE_DIR = "course"
GRADES_DIR = "grades"

#: What nbgrader puts in place of a solution region (nbgrader_config.py sets the same);
#: ExplainStubs then names the module, the function and the command in the error.
STUB_COMMENT = "# YOUR CODE HERE"
STUB_RAISE = "raise NotImplementedError()"
CODE_STUB = f"{STUB_COMMENT}\n{STUB_RAISE}"

BEGIN_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")
END_MARKERS = ("### END SOLUTION", "### END HIDDEN TESTS")


def _prepare_nbgrader() -> None:
    """Two fixes to how nbgrader is run from tito.

    nbgrader's gradebook runs the `alembic` command to learn its schema version, each time a
    gradebook is opened: it must be found on PATH even when the virtual environment is not
    activated (bin/tito runs .venv/bin/tito directly), and asking once per process is enough.
    """
    import nbgrader.api as api

    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    if not getattr(api.get_alembic_version, "tito_cached", False):
        cached = functools.lru_cache(maxsize=1)(api.get_alembic_version)
        cached.tito_cached = True
        api.get_alembic_version = cached


class GradingError(RuntimeError):
    """Something that stops a release or a grading run, explained for the instructor."""


# =============================================================================== messages


def stub_message(module: Module, name: str | None) -> str:
    """The error a student's unfinished code raises."""
    what = f"`{name}` is" if name else "this code is"
    return (f"module {module.prefix} ({module.name}): {what} not implemented yet — finish it in "
            f"modules/{module.dirname}/{module.dev_stem}.ipynb and run `tito export {module.dirname}`")


_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)")
_CLASS = re.compile(r"^\s*class\s+(\w+)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def enclosing_name(lines: list[str], index: int) -> str | None:
    """`Class.method` or `function` around line `index` (None at the top level)."""
    limit = _indent(lines[index])
    names: list[str] = []
    for line in reversed(lines[:index]):
        if not line.strip() or line.lstrip().startswith("#") or _indent(line) >= limit:
            continue
        limit = _indent(line)
        match = _DEF.match(line) or _CLASS.match(line)
        if match:
            names.append(match.group(1))
        if limit == 0:
            break
    return ".".join(reversed(names)) or None


def explain_stubs(source: str, module: Module) -> str:
    """Replace nbgrader's stubs (`# YOUR CODE HERE` + `raise NotImplementedError()`) by
    errors that name the module, the function and what to do."""
    lines = source.split("\n")
    for i in range(1, len(lines)):
        if lines[i].strip() == STUB_RAISE and lines[i - 1].strip() == STUB_COMMENT \
                and _indent(lines[i]) == _indent(lines[i - 1]):
            message = stub_message(module, enclosing_name(lines, i))
            lines[i] = " " * _indent(lines[i]) + f'raise NotImplementedError("{message}")'
    return "\n".join(lines)


def module_of_assignment(assignment_id: str | None) -> Module | None:
    try:
        return resolve_module(assignment_id) if assignment_id else None
    except UnknownModuleError:
        return None


# ============================================================================ preprocessors


class ExplainStubs(NbGraderPreprocessor):
    """nbgrader preprocessor: make every stub's NotImplementedError name the module to finish."""

    def preprocess(self, nb, resources):
        module = module_of_assignment(resources.get("nbgrader", {}).get("assignment"))
        if module is None:
            return nb, resources
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                cell.source = explain_stubs(cell.source, module)
        return nb, resources


def _error_output(ename: str, evalue: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class _SandboxKernels(KernelSpecManager):
    """Kernel specs for one sandbox: an ipykernel started inside it (see tito/sandbox.py)."""

    def __init__(self, box: Sandbox, **kwargs) -> None:
        super().__init__(**kwargs)
        self.box = box

    def get_kernel_spec(self, kernel_name: str):
        from jupyter_client.kernelspec import KernelSpec

        box = self.box
        argv = box.command([box.python(), "-m", "ipykernel_launcher", "-f", str(box.inside(box.folder / "kernel.json"))],
                           net=True, cwd=box.inside(box.folder / "work"))
        return KernelSpec(resource_dir="", argv=argv, display_name="Python 3 (grading sandbox)", language="python")


class GradingExecute(Execute):
    """nbgrader's Execute with a time limit per notebook, in the grading sandbox.

    The kernel runs inside a sandbox built for the submission being executed (tito/sandbox.py):
    its `tinytorch` holds the reference modules before this one and the submission's own
    module, nothing of the instructor's checkout is visible, and it has a memory limit. This
    run produces the feedback notebook; the points come from tito's checks (tito/checks.py)."""

    notebook_timeout = Integer(
        600, allow_none=True,
        help="Seconds one notebook may run in all; cells not reached by then fail. None: no limit.",
    ).tag(config=True)

    course_root = Unicode(
        "", help="The course whose generated `tinytorch` provides the modules before the graded one.",
    ).tag(config=True)

    sandbox = Bool(True, help="Run each submission's kernel in a sandbox (Linux namespaces).").tag(config=True)

    memory_mb = Integer(DEFAULT_MEMORY_MB, help="Address-space limit of a submission's kernel, in MiB.").tag(config=True)

    hide_paths = List(Unicode(), help="More folders to hide from submissions (nbgrader's course folder).").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline: float | None = None
        self._dead_since: int | None = None
        self._box: Sandbox | None = None
        module = module_of_assignment((resources or {}).get("nbgrader", {}).get("assignment"))
        with tempfile.TemporaryDirectory(prefix="tito-grade-") as sockets:
            self._sockets = sockets
            if module is None or not self.course_root:
                return super().preprocess(nb, resources, km=km)
            course = Course(Path(self.course_root))
            source = Path(self.config.CourseDirectory.root, self.config.CourseDirectory.source_directory,
                          module.dirname, f"{module.dev_stem}.ipynb")
            if source.exists():  # execute what is graded: the source with the student's answers
                nb.cells = graded_cells(nbformat.read(source, as_version=4), nb)
            with Sandbox(course.root, hide=[Path(p) for p in self.hide_paths], memory_mb=self.memory_mb,
                         isolate=self.sandbox) as box:
                build_package(box.folder, course, build_program(module, nb, hidden=False))
                (box.folder / "work").mkdir()
                self._box = box
                return super().preprocess(nb, resources, km=km)

    def create_kernel_manager(self):
        from jupyter_client.manager import AsyncKernelManager

        if self._box is not None:
            km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_SandboxKernels(self._box),
                                    config=self.config)
            km.transport, km.ip = "tcp", "127.0.0.1"
            km.connection_file = str(self._box.folder / "kernel.json")
            self.km = km
            return km
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPythonKernels(), config=self.config)
        if _TRANSPORT == "ipc":
            km.transport, km.ip = "ipc", str(Path(self._sockets) / "kernel")
        self.km = km
        return km

    async def async_start_new_kernel(self, **kwargs):
        if "env" not in kwargs:
            if self._box is not None:
                kwargs["env"] = self._box.env()
            else:
                kwargs["env"] = kernel_env(Path(self.course_root)) if self.course_root else dict(os.environ, MPLBACKEND="Agg")
        return await super().async_start_new_kernel(**kwargs)

    # nbclient binds the synchronous wrapper to its own coroutine: rebind it to ours.
    start_new_kernel = run_sync(async_start_new_kernel)

    def _get_timeout(self, cell):
        timeout = super()._get_timeout(cell)
        if self._deadline is None:
            return timeout
        remaining = max(1, math.ceil(self._deadline - time.monotonic()))
        return remaining if timeout is None else min(timeout, remaining)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return super().preprocess_cell(cell, resources, index)
        if self._dead_since is not None:
            cell.outputs = [_error_output(
                "KernelDied", f"not run: the kernel died in cell {self._dead_since + 1}")]
            return cell, self.resources
        now = time.monotonic()
        if self.notebook_timeout:
            if self._deadline is None:
                self._deadline = now + self.notebook_timeout
            elif now >= self._deadline:
                cell.outputs = [_error_output(
                    "NotebookTimeout", f"not run: the notebook used up its time limit of {self.notebook_timeout} s")]
                return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._dead_since = index
            cell.outputs = [_error_output("KernelDied", "the kernel died while running this cell")]
            return cell, self.resources


def graded_cells(source: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> list:
    """The cells that count, as a notebook: the instructor's `source`, with each solution cell
    replaced by the submission's cell of the same grade_id (a stub when it has none) and each
    test cell taken from the submission when nbgrader has restored it there (it then holds
    the hidden tests). Cells a student added or changed outside solution cells drop out, so
    the feedback notebook runs exactly what the checks ran."""
    def grade_id(cell) -> str | None:
        return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")

    theirs = {grade_id(c): c for c in submission.cells if grade_id(c)}
    cells = []
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        mine = theirs.get(grade_id(cell)) if grade_id(cell) else None
        if meta.get("solution"):
            if mine is not None and mine.get("metadata", {}).get("nbgrader", {}).get("solution"):
                cells.append(mine)
            else:
                cells.append(nbformat.v4.new_code_cell(CODE_STUB, metadata=cell.metadata, id=cell.get("id")))
        elif meta.get("grade") and mine is not None and mine.cell_type == cell.cell_type:
            cells.append(mine)
        else:
            cells.append(cell)
    return cells


def use_tito_preprocessors(c: Config) -> None:
    """Put ExplainStubs and GradingExecute into nbgrader's pipelines (nbgrader_config.py calls this)."""
    from nbgrader.converters import Autograde, GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions

    generate = [p for p in GenerateAssignment.class_traits()["preprocessors"].default() if p is not ExplainStubs]
    generate.insert(generate.index(ClearSolutions) + 1, ExplainStubs)
    c.GenerateAssignment.preprocessors = generate
    autograde = Autograde.class_traits()["autograde_preprocessors"].default()
    c.Autograde.autograde_preprocessors = [GradingExecute if p is Execute else p for p in autograde]
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.GradingExecute.shutdown_kernel = "immediate"  # nothing to save in a graded kernel


# ================================================================================= config


@dataclass(frozen=True)
class Gradebook:
    """Where one nbgrader course lives, and the configuration nbgrader runs with."""

    course: Course
    config: Config

    @property
    def root(self) -> Path:
        return Path(self.config.CourseDirectory.root)

    def _dir(self, key: str) -> Path:
        return self.root / self.config.CourseDirectory[key]

    @property
    def source_dir(self) -> Path:
        return self._dir("source_directory")

    @property
    def release_dir(self) -> Path:
        return self._dir("release_directory")

    @property
    def submitted_dir(self) -> Path:
        return self._dir("submitted_directory")

    @property
    def autograded_dir(self) -> Path:
        return self._dir("autograded_directory")

    @property
    def feedback_dir(self) -> Path:
        return self._dir("feedback_directory")

    @property
    def grades_dir(self) -> Path:
        return self.root / GRADES_DIR

    @property
    def db_url(self) -> str:
        return self.config.CourseDirectory.db_url

    @property
    def course_id(self) -> str:
        return self.config.CourseDirectory.course_id

    @property
    def sandboxed(self) -> bool:
        return bool(self.config.GradingExecute.get("sandbox", True))

    @property
    def memory_mb(self) -> int:
        return int(self.config.GradingExecute.get("memory_mb", DEFAULT_MEMORY_MB))

    @property
    def cell_timeout(self) -> float:
        return float(self.config.Execute.get("timeout", 120) or 120)

    @property
    def notebook_timeout(self) -> float:
        return float(self.config.GradingExecute.get("notebook_timeout", 600) or 600)

    def source_notebook(self, module: Module) -> Path:
        return self.source_dir / module.dirname / f"{module.dev_stem}.ipynb"

    def release_notebook(self, module: Module) -> Path:
        return self.release_dir / module.dirname / f"{module.dev_stem}.ipynb"

    def submitted_notebook(self, student: str, module: Module) -> Path:
        return self.submitted_dir / student / module.dirname / f"{module.dev_stem}.ipynb"

    def autograded_notebook(self, student: str, module: Module) -> Path:
        return self.autograded_dir / student / module.dirname / f"{module.dev_stem}.ipynb"

    def feedback_file(self, student: str, module: Module) -> Path:
        return self.feedback_dir / student / module.dirname / f"{module.dev_stem}.html"

    def grades_csv(self, module: Module) -> Path:
        return self.grades_dir / f"{module.dirname}.csv"

    def coursedir(self, **attrs):
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        for key, value in attrs.items():
            setattr(coursedir, key, value)
        return coursedir


def default_config(course: Course) -> Config:
    """nbgrader's settings for `course` (nbgrader_config.py merges them; a student workspace,
    which has no nbgrader_config.py, uses them directly)."""
    c = Config()
    root = course.root / DEFAULT_COURSE_DIR
    c.CourseDirectory.course_id = "tinytorch"
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "source"
    c.CourseDirectory.release_directory = "release"
    c.CourseDirectory.submitted_directory = "submitted"
    c.CourseDirectory.autograded_directory = "autograded"
    c.CourseDirectory.feedback_directory = "feedback"
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]
    c.Execute.timeout = 120
    c.GradingExecute.notebook_timeout = 600
    use_tito_preprocessors(c)
    return c


def gradebook(course: Course, course_dir: Path | None = None, cell_timeout: int | None = None,
              notebook_timeout: int | None = None, sandbox: bool = True,
              memory_mb: int | None = None) -> Gradebook:
    """The course's nbgrader setup: nbgrader_config.py at the course root (or defaults),
    optionally moved to another folder (`course_dir`, e.g. for tests) or with other timeouts.
    `sandbox=False` grades without the sandbox (only where Linux namespaces are missing: then
    submissions can read the instructor's files); `memory_mb` limits each submission."""
    path = course.root / CONFIG_FILE
    if path.exists():
        config = PyFileConfigLoader(CONFIG_FILE, path=str(course.root)).load_config()
    else:
        config = default_config(course)
    config = Config(config)  # a copy we may change
    if course_dir is not None:
        course_dir = Path(course_dir).resolve()
        config.CourseDirectory.root = str(course_dir)
        config.CourseDirectory.db_url = f"sqlite:///{course_dir / 'gradebook.db'}"
    if cell_timeout is not None:
        config.Execute.timeout = cell_timeout
    if notebook_timeout is not None:
        config.GradingExecute.notebook_timeout = notebook_timeout
    config.GradingExecute.course_root = str(course.root)
    config.GradingExecute.sandbox = sandbox
    if memory_mb is not None:
        config.GradingExecute.memory_mb = memory_mb
    config.GradingExecute.hide_paths = [str(Path(config.CourseDirectory.root).resolve())]
    _prepare_nbgrader()
    return Gradebook(course, config)


# ============================================================================ nbgrader runs


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]


@contextlib.contextmanager
def _nbgrader_log() -> Iterator[tuple[logging.Logger, _Capture]]:
    """A logger for nbgrader's converters that records everything and prints nothing."""
    logger = logging.getLogger(f"tito.nbgrader.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    capture = _Capture()
    logger.addHandler(capture)
    try:
        yield logger, capture
    finally:
        logger.removeHandler(capture)


def _run_converter(converter_class, book: Gradebook, logger: logging.Logger, **coursedir_attrs) -> str | None:
    """Run an nbgrader converter; the error text if it reported failures (None when fine)."""
    from nbgrader.converters.base import NbGraderException

    converter = converter_class(coursedir=book.coursedir(**coursedir_attrs), config=book.config, log=logger)
    converter.force = True
    try:
        with warnings.catch_warnings():
            # nbgrader 0.9 with SQLAlchemy 2 warns about its own session handling; harmless.
            warnings.simplefilter("ignore")
            converter.start()
    except NbGraderException as exc:
        return str(exc) or type(exc).__name__
    return None


# ================================================================================= release


def source_notebook(course: Course, module: Module) -> nbformat.NotebookNode:
    """The nbgrader source notebook of a module: its dev `.py`, as a notebook without outputs,
    with the module's hidden tests (grading/hidden/NN_name.py) at the end of their graded cells."""
    nb = with_hidden(read_py(course.dev_py(module)), course, module)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    _fix_new_cell_ids(nb, set())
    return nb


def write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` (creating its folder) unless it already holds exactly that."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def write_source(book: Gradebook, module: Module) -> Path:
    """Write course/source/NN_name/name_dev.ipynb from the dev file (only when it changed)."""
    path = book.source_notebook(module)
    write_if_changed(path, nbformat.writes(source_notebook(book.course, module)) + "\n")
    return path


def _in_gradebook(book: Gradebook, module: Module) -> bool:
    from nbgrader.api import Gradebook as NbGradebook, MissingEntry

    if not book.db_url.startswith("sqlite:///") or not Path(book.db_url[len("sqlite:///"):]).exists():
        return False
    with NbGradebook(book.db_url, book.course_id) as gb:
        try:
            gb.find_notebook(module.dev_stem, module.dirname)
        except MissingEntry:
            return False
    return True


@dataclass
class Release:
    """One released module."""

    module: Module
    notebook: Path
    points: float
    graded_cells: int
    stubs: int
    leaks: list[str] = field(default_factory=list)


def is_current(book: Gradebook, module: Module) -> bool:
    """True when the module's release is up to date with its dev file and in the gradebook."""
    source, release = book.source_notebook(module), book.release_notebook(module)
    if not (source.exists() and release.exists()):
        return False
    expected = nbformat.writes(source_notebook(book.course, module)) + "\n"
    return (source.read_text(encoding="utf-8") == expected
            and release.stat().st_mtime >= source.stat().st_mtime
            and _in_gradebook(book, module))


def release(book: Gradebook, modules: Iterable[Module], only_if_stale: bool = False) -> list[Release]:
    """Write each module's source notebook, generate its student version, check it for leaks."""
    results = []
    for module in modules:
        if not (only_if_stale and is_current(book, module)):
            write_source(book, module)
            from nbgrader.converters import GenerateAssignment

            with _nbgrader_log() as (logger, capture):
                error = _run_converter(GenerateAssignment, book, logger, assignment_id=module.dirname)
            if error or not book.release_notebook(module).exists():
                details = "\n".join(capture.errors()) or error or "no release notebook was written"
                raise GradingError(f"{module.dirname}: nbgrader generate_assignment failed:\n{details}")
        notebook = book.release_notebook(module)
        released = nbformat.read(notebook, as_version=4)
        results.append(Release(
            module=module,
            notebook=notebook,
            points=graded_points(released),
            graded_cells=sum(1 for c in released.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")),
            stubs=sum(c.source.count(STUB_COMMENT) for c in released.cells
                      if c.get("metadata", {}).get("nbgrader", {}).get("solution")),
            leaks=find_leaks(secret_lines(instructor_text(book.course, module)),
                             [book.release_dir / module.dirname]),
        ))
    return results


# ============================================================================ leak checking


def split_solutions(dev_text: str) -> tuple[set[str], str]:
    """(the stripped non-blank lines inside BEGIN/END SOLUTION or HIDDEN TESTS regions,
    the text outside those regions)."""
    inside, hidden, outside = False, set(), []
    for line in dev_text.splitlines():
        stripped = line.strip()
        if any(stripped.startswith(m) for m in BEGIN_MARKERS):
            inside = True
        elif any(stripped.startswith(m) for m in END_MARKERS):
            inside = False
        elif inside:
            if stripped:
                hidden.add(stripped)
        else:
            outside.append(line)
    return hidden, "\n".join(outside)


def secret_lines(dev_text: str) -> set[str]:
    """Solution (and hidden-test) lines of a dev file that appear nowhere else in it.

    Every non-blank line between BEGIN/END SOLUTION (or HIDDEN TESTS) markers, stripped,
    unless it also occurs in the text outside those regions. None of them may appear in
    what students get of that module.
    """
    hidden, visible = split_solutions(dev_text)
    return {line for line in hidden if line not in visible}


def instructor_text(course: Course, module: Module) -> str:
    """The dev file of `module` followed by its hidden tests (between nbgrader's markers)."""
    return course.dev_py(module).read_text(encoding="utf-8") + "\n" + hidden_text(course, module)


def course_secret_lines(course: Course, modules: Iterable[Module]) -> set[str]:
    """Solution (and hidden-test) lines of `modules` that appear outside the solution regions
    of *no* dev file of the course: none of them may appear anywhere in a student workspace."""
    visible = "\n".join(split_solutions(course.dev_py(m).read_text(encoding="utf-8"))[1]
                        for m in course.existing_modules())
    hidden = set().union(*(split_solutions(instructor_text(course, m))[0] for m in modules))
    return {line for line in hidden if line not in visible}


def _searchable_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        try:
            nb = nbformat.reads(text, as_version=4)
        except Exception:  # not a notebook after all: search the raw text
            return text
        parts = []
        for cell in nb.cells:
            parts.append(cell.source)
            for output in cell.get("outputs", []):
                parts.append(str(output.get("text", "")))
                parts.extend(str(v) for v in output.get("data", {}).values())
        return "\n".join(parts)
    return text


def find_leaks(secrets: set[str], roots: Iterable[Path]) -> list[str]:
    """`path: line` for every secret line found in a text file below `roots`."""
    leaks = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix in (".pyc", ".db", ".png", ".npz"):
                continue
            text = _searchable_text(path)
            leaks += [f"{path}: {line}" for line in sorted(secrets) if line in text]
    return leaks


# =============================================================================== grading


@dataclass
class StudentGrade:
    """One student's result for one module."""

    student: str
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float] = field(default_factory=dict)  # grade_id -> score
    error: str = ""  # why the submission could not be graded at all (then the scores are 0)
    note: str = ""  # e.g. why no feedback notebook could be made; the scores stand
    verdicts: list[Verdict] = field(default_factory=list)
    review: list[str] = field(default_factory=list)  # constructs an instructor may want to look at
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class GradeRun:
    """The result of grading one module."""

    module: Module
    cell_points: dict[str, float]  # grade_id -> max points, in notebook order
    students: dict[str, StudentGrade]
    csv: Path | None = None
    feedback: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def collect_submissions(book: Gradebook, module: Module, submissions: Path) -> list[str]:
    """Copy `submissions` into nbgrader's submitted folder; return the student ids.

    Accepted layouts: SUBMISSIONS/<student>/<NN_name>/<name>_dev.ipynb (nbgrader's own) or
    SUBMISSIONS/<student>/<name>_dev.ipynb.
    """
    students = []
    name = f"{module.dev_stem}.ipynb"
    for folder in sorted(p for p in Path(submissions).iterdir() if p.is_dir()):
        found = folder / module.dirname / name
        if not found.exists():
            found = folder / name
        if not found.exists():
            continue
        target = book.submitted_notebook(folder.name, module)
        if target.parent.exists():
            shutil.rmtree(target.parent)
        target.parent.mkdir(parents=True)
        shutil.copy2(found, target)
        students.append(folder.name)
    return students


def submitted_students(book: Gradebook, module: Module) -> list[str]:
    if not book.submitted_dir.exists():
        return []
    return sorted(p.name for p in book.submitted_dir.iterdir()
                  if book.submitted_notebook(p.name, module).exists())


def _failures(errors: list[str], module: Module) -> dict[str, str]:
    """student -> why nbgrader could not grade the submission, from nbgrader's error log.

    nbgrader logs "There was an error processing assignment: <folder>" and then the
    traceback, whose last line says what went wrong; at the end it names each failed
    (assignment, student) pair.
    """
    failed: dict[str, str] = {}
    reasons: dict[str, str] = {}
    final = re.compile(r"There was an error processing assignment '([^']*)' for student '([^']*)'")
    for i, message in enumerate(errors):
        if message.startswith("There was an error processing assignment: ") and i + 1 < len(errors):
            folder = Path(message.split(": ", 1)[1].strip())
            lines = [line for line in errors[i + 1].splitlines() if line.strip()]
            if folder.name == module.dirname and lines:
                reasons[folder.parent.name] = lines[-1].strip()
        match = final.search(message)
        if match and match.group(1) == module.dirname:
            student = match.group(2)
            failed[student] = "nbgrader could not grade it: " + reasons.get(student, "see nbgrader's log")
    return failed


#: Constructs that a correct solution never needs and that tampering with a grader does.
#: A submission using one that the module's own solution does not use is graded as usual
#: and flagged in the grades table for a look.
REVIEW_PATTERNS = {
    "ctypes": r"\bctypes\b", "gc": r"\bgc\.", "frames": r"_getframe|currentframe|f_back|f_globals|f_locals",
    "code objects": r"__code__|__globals__|__closure__", "sys.modules": r"sys\.modules",
    "builtins": r"\bbuiltins\b|__builtins__", "IPython": r"get_ipython|input_transformers|IPython",
    "tracing": r"settrace|setprofile|sys\.monitoring", "exit": r"os\._exit|sys\.exit|os\.kill|signal\.",
    "raw I/O": r"os\.write|os\.open|/proc/|\bsocket\b|subprocess|os\.system",
    "dynamic code": r"(?<!def )(?<![\w.])(exec|eval)\s*\(|__import__|importlib",
    "numpy patching": r"\b(np|numpy)(\.\w+)*\.\w+\s*=(?!=)|setattr\(\s*(np|numpy)\b",
}


def review_flags(submission: nbformat.NotebookNode) -> list[str]:
    """Which REVIEW_PATTERNS the submission's solution cells contain."""
    code = "\n".join(c.source for c in submission.cells
                     if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    return [name for name, pattern in REVIEW_PATTERNS.items() if re.search(pattern, code)]


def graded_cell_points(source: nbformat.NotebookNode) -> dict[str, float]:
    """grade_id -> points of every graded cell of the instructor's source notebook."""
    return {c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader.get("points", 0))
            for c in source.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = nbformat.read(path, as_version=4)
    if not isinstance(nb.get("cells"), list):
        raise ValueError("it has no list of cells")
    return nb


def own_earlier_modules(book: Gradebook, module: Module, student: str) -> dict[Module, str]:
    """Module code of the student's own submissions of the modules before `module` (those
    that were submitted); the others come from the reference build."""
    code = {}
    for earlier in book.course.existing_modules():
        path = book.submitted_notebook(student, earlier)
        if earlier.number >= module.number or not path.exists():
            continue
        try:
            submission = _read_notebook(path)
        except Exception:  # an unreadable earlier submission: use the reference
            continue
        source = source_notebook(book.course, earlier)
        code[earlier] = build_program(earlier, source, submission, hidden=False).module_code()
    return code


def check_submission(book: Gradebook, module: Module, student: str, source: nbformat.NotebookNode,
                     released: nbformat.NotebookNode, earlier: str = "reference") -> StudentGrade:
    """Decide every check of one submission with tito's harness, in the sandbox."""
    points = graded_cell_points(source)
    grade = StudentGrade(student, max_score=sum(points.values()), cells={k: 0.0 for k in points})
    try:
        submission = _read_notebook(book.submitted_notebook(student, module))
    except Exception as exc:  # not JSON, not a notebook: nothing of it can run
        grade.error = f"the submission is not a readable notebook ({type(exc).__name__}: {str(exc)[:200]})"
        return grade
    program = build_program(module, source, submission, released, hidden=True, cell_timeout=book.cell_timeout)
    own = own_earlier_modules(book, module, student) if earlier == "own" else None
    report = run_checks(book.course, program, sandboxed=book.sandboxed, timeout=book.notebook_timeout,
                        memory_mb=book.memory_mb, hide=[book.root], earlier=own)
    grade.verdicts = [v for v in report.verdicts if v.points is not None]
    for verdict in grade.verdicts:
        grade.cells[verdict.name] = verdict.points if verdict.ok else 0.0
    grade.score = sum(grade.cells.values())
    expected = set(review_flags(source))  # what the reference solution itself uses is no signal
    grade.review = [flag for flag in review_flags(submission) if flag not in expected]
    grade.seconds = report.seconds
    return grade


def record_scores(book: Gradebook, module: Module, grades: dict[str, StudentGrade]) -> None:
    """Put tito's verdicts into nbgrader's gradebook (which feedback reads), and a line with
    each verdict under its graded cell in the autograded notebook."""
    from nbgrader.api import Gradebook as NbGradebook, MissingEntry

    with NbGradebook(book.db_url, book.course_id) as gb:
        for student, grade in grades.items():
            for grade_id, score in grade.cells.items():
                try:
                    entry = gb.find_grade(grade_id, module.dev_stem, module.dirname, student)
                except MissingEntry:
                    continue
                entry.auto_score, entry.manual_score = score, None
            gb.db.commit()
    for student, grade in grades.items():
        path = book.autograded_notebook(student, module)
        if not path.exists() or not grade.verdicts:
            continue
        nb = _read_notebook(path)
        verdicts = {v.name: v for v in grade.verdicts}
        for cell in nb.cells:
            verdict = verdicts.get(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
            if verdict is not None and cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                earned = verdict.points if verdict.ok else 0
                line = (f"tito grade: {'PASS' if verdict.ok else 'FAIL'} ({_num(earned)} of {_num(verdict.points)} "
                        f"points)" + ("" if verdict.ok else f": {verdict.error}") + "\n")
                cell.setdefault("outputs", []).append(nbformat.v4.new_output("stream", name="stdout", text=line))
        nbformat.write(nb, path)


def report_file(book: Gradebook, student: str, module: Module) -> Path:
    """course/grades/NN_name/<student>.json: one submission's verdicts, as last graded."""
    return book.grades_dir / module.dirname / f"{student}.json"


def _save_report(book: Gradebook, module: Module, grade: StudentGrade) -> None:
    path = report_file(book, grade.student, module)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"student": grade.student, "module": module.dirname, "score": grade.score, "max_score": grade.max_score,
            "cells": grade.cells, "error": grade.error, "note": grade.note, "review": grade.review,
            "seconds": round(grade.seconds, 2),
            "checks": [{"name": v.name, "ok": v.ok, "points": v.points, "error": v.error,
                        "visible_ok": v.visible_ok, "hidden_ok": v.hidden_ok}
                       for v in grade.verdicts]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _load_report(book: Gradebook, module: Module, student: str) -> StudentGrade | None:
    path = report_file(book, student, module)
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    grade = StudentGrade(student, data["score"], data["max_score"], data["cells"], data["error"], data["note"],
                         review=data["review"], seconds=data["seconds"])
    grade.verdicts = [Verdict(c["name"], c["ok"], c["points"], c["error"], c["visible_ok"], c["hidden_ok"])
                      for c in data["checks"]]
    return grade


def autograde(book: Gradebook, module: Module, submissions: Path | None = None,
              feedback: bool = True, students: Iterable[str] | None = None,
              earlier: str = "reference") -> GradeRun:
    """Autograde the submissions of `module` (all, or only `students`); write the grades CSV
    (every graded student of the module) and, with `feedback`, feedback HTML.

    Points come from tito's checks: every submission runs in its own sandbox and fresh
    interpreter (see tito/checks.py); nbgrader executes it again, in a sandboxed kernel, for
    the feedback notebook only. `earlier="own"` builds the modules before this one from the
    student's own submissions of them (where there are some) instead of the reference.
    """
    from nbgrader.converters import Autograde

    started = time.perf_counter()
    if book.sandboxed and (why := sandbox_unavailable()):
        raise GradingError(f"cannot grade in a sandbox here: {why}. Grade on Linux, or pass --no-sandbox "
                           f"(then submissions can read every file this account can, solutions included)")
    release(book, [module], only_if_stale=True)
    if submissions is not None:
        collect_submissions(book, module, submissions)
    everyone = submitted_students(book, module)
    chosen = list(students) if students is not None else everyone
    if not chosen:
        raise GradingError(f"{module.dirname}: no submissions in {book.submitted_dir} "
                           f"(expected <student>/{module.dirname}/{module.dev_stem}.ipynb)")
    unknown = sorted(set(chosen) - set(everyone))
    if unknown:
        raise GradingError(f"{module.dirname}: no submission from {', '.join(unknown)} in {book.submitted_dir}")
    source = _read_notebook(book.source_notebook(module))
    released = _read_notebook(book.release_notebook(module))
    cell_points = graded_cell_points(source)
    grades = {student: check_submission(book, module, student, source, released, earlier) for student in chosen}
    failed: dict[str, str] = {}
    if feedback:  # nbgrader executes the submissions once more, for the feedback notebooks
        before = {s: _mtime(book.autograded_notebook(s, module)) for s in chosen}
        with _nbgrader_log() as (logger, capture):
            for student in chosen:
                if grades[student].ok:
                    _run_converter(Autograde, book, logger, assignment_id=module.dirname, student_id=student)
            failed = _failures(capture.errors(), module)
        for student in chosen:
            after = _mtime(book.autograded_notebook(student, module))
            if grades[student].ok and student not in failed and (after is None or after == before[student]):
                failed[student] = "nbgrader wrote no graded notebook"
            if student in failed:
                grades[student].note = f"no feedback notebook ({failed[student]})"
        record_scores(book, module, {s: g for s, g in grades.items() if g.ok and s not in failed})
    for grade in grades.values():
        _save_report(book, module, grade)
    everything = {s: grades.get(s) or _load_report(book, module, s) for s in everyone}
    run = GradeRun(module, cell_points, {s: g for s, g in everything.items() if g is not None})
    run.csv = write_grades_csv(book, run)
    if feedback:
        run.feedback = generate_feedback(book, module, [s for s in chosen if grades[s].ok and s not in failed])
    run.students = {s: run.students[s] for s in chosen}
    run.seconds = time.perf_counter() - started
    return run


def generate_feedback(book: Gradebook, module: Module, students: Iterable[str]) -> dict[str, Path]:
    """nbgrader generate_feedback for these (autograded) students: student -> HTML file."""
    from nbgrader.converters import GenerateFeedback

    written = {}
    with _nbgrader_log() as (logger, _):
        for student in students:
            _run_converter(GenerateFeedback, book, logger, assignment_id=module.dirname, student_id=student)
            if book.feedback_file(student, module).exists():
                written[student] = book.feedback_file(student, module)
    return written


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def write_grades_csv(book: Gradebook, run: GradeRun) -> Path:
    """course/grades/NN_name.csv: one row per student, one column per graded cell."""
    path = book.grades_csv(run.module)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "score", "max_score", *run.cell_points, "status", "review"])
    for student in sorted(run.students):
        grade = run.students[student]
        writer.writerow([student, _num(grade.score), _num(grade.max_score),
                         *(_num(grade.cells.get(k, 0.0)) for k in run.cell_points),
                         "graded" if grade.ok else f"failed: {grade.error}", "; ".join(grade.review)])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
