"""The course workflow, end to end: releases, autograding, student workspaces, the book.

Every module that exists (tito.course decides) is released with nbgrader and autograded
once, in one gradebook shared by the whole file, with four submissions made from its
release: a complete one, the untouched release, one with a single solution cell left
unfinished, and one that raises as soon as it runs; the tests read the results of that
one run. A submission that never returns costs its time limit, so that case (with one
that kills its kernel and one that is not a notebook) is graded for the first module
only, through `tito release` and `tito grade`. A student workspace is built from the
same releases, and the first module is finished, exported and imported in it.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import csv
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tito.cli import main
from tito.commands.book import book_problems, module_page, render_toc, toc_files, toc_problems
from tito.course import Course, Module, resolve_module
from tito.exporting import MARKER_LINE
from tito.grading import (
    CODE_STUB, ExplainStubs, GradeRun, Gradebook, GradingExecute, Release, autograde, explain_stubs,
    find_leaks, generate_feedback, gradebook, instructor_text, release, secret_lines, stub_message,
)
from tito.links import (
    Repository, colab_cell, first_code_cell, graded_points, launch_line, placeholder_problem, repository,
    stated_points,
)
from tito.notebooks import run_dev_file
from tito.student import student_notebook
from tito.testing import check_module
from tito.pairing import pair_differences, read_py

REPO = Path(__file__).resolve().parent.parent
COURSE = Course(REPO)
MODULES = COURSE.existing_modules()
IDS = [m.dirname for m in MODULES]

slow = pytest.mark.slow  # the tests that run nbgrader or notebooks


# ------------------------------------------------------------------------------ helpers


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solution_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution")]


def graded_cells(nb) -> list:
    return [c for c in nb.cells if nbgrader_meta(c).get("grade")]


def fill(released, source, leave=()) -> nbformat.NotebookNode:
    """The release with every solution cell completed from the source (as a student who got
    everything right would write it), except the cells named in `leave`."""
    nb = copy.deepcopy(released)
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in solution_cells(source)}
    for cell in solution_cells(nb):
        grade_id = nbgrader_meta(cell)["grade_id"]
        if grade_id not in leave:
            cell.source = MARKER_LINE.sub("", answers[grade_id])
    return nb


def with_first_solution_prefixed(nb, code: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    cell = solution_cells(nb)[0]
    cell.source = code + "\n" + cell.source
    return nb


def save(nb, folder: Path, student: str, module: Module) -> Path:
    path = folder / student / module.dirname / f"{module.dev_stem}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def breakable_cell(nb) -> str:
    """The solution cell to leave unfinished: the last one with a graded cell right after it."""
    chosen = None
    current = None
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution"):
            current = meta["grade_id"]
        elif meta.get("grade") and current is not None:
            chosen = current
    return chosen or nbgrader_meta(solution_cells(nb)[-1])["grade_id"]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Gradebook:
    """One nbgrader course (and gradebook) for every module, in a temporary folder."""
    return gradebook(COURSE, course_dir=tmp_path_factory.mktemp("nbgrader-course"))


@dataclass
class Graded:
    module: Module
    release: Release
    source: nbformat.NotebookNode
    released: nbformat.NotebookNode
    broken: str  # grade_id of the solution cell left unfinished in "one-wrong"
    failing_when_broken: set[str]  # graded cells that fail when it is: run without nbgrader
    run: GradeRun


@pytest.fixture(scope="module", params=MODULES, ids=IDS)
def graded(request, book: Gradebook, tmp_path_factory) -> Graded:
    """Release the module and autograde five submissions made from its release."""
    module: Module = request.param
    item = release(book, [module])[0]
    source = nbformat.read(book.source_notebook(module), as_version=4)
    released = nbformat.read(item.notebook, as_version=4)
    broken = breakable_cell(source)
    folder = tmp_path_factory.mktemp(f"submissions-{module.dirname}")
    save(fill(released, source), folder, "complete", module)
    save(released, folder, "untouched", module)
    one_wrong = save(fill(released, source, leave={broken}), folder, "one-wrong", module)
    save(with_first_solution_prefixed(fill(released, source),
                                      'raise ImportError("this submission is broken")'), folder, "raises", module)
    # Which graded cells depend on the unfinished cell: check that notebook as its student
    # would with `tito test` (no hidden tests, no sandbox) and see which graded cells fail.
    direct = check_module(COURSE, module, one_wrong, timeout=300, hidden=False)   # what the student's tito test says
    failing = {v.name for v in direct.verdicts if v.points is not None and not v.ok}
    run = autograde(book, module, submissions=folder, feedback=False)
    # Regrading one student, with feedback (one is enough: nbgrader takes a second or two each).
    again = autograde(book, module, feedback=True, students=["one-wrong"])
    assert again.students["one-wrong"].cells == run.students["one-wrong"].cells
    run.feedback = again.feedback
    return Graded(module, item, source, released, broken, failing, run)


# ------------------------------------------------------------------------------ releases


@slow
def test_release_contains_no_solution_text(graded: Graded, book: Gradebook) -> None:
    module = graded.module
    secrets = secret_lines(instructor_text(COURSE, module))
    assert secrets, f"{module.dirname} has no solution lines: nothing for students to write"
    release_dir = book.release_dir / module.dirname
    assert find_leaks(secrets, [release_dir]) == []
    assert graded.release.leaks == []
    assert sorted(p.name for p in release_dir.iterdir()) == [f"{module.dev_stem}.ipynb"], \
        "only the student notebook is released (never the dev .py)"
    text = graded.release.notebook.read_text(encoding="utf-8")
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text


@slow
def test_committed_student_notebook_is_the_release(graded: Graded) -> None:
    """student/NN_name/name_dev.ipynb (what the links and the book open) is exactly what
    `tito release` makes of the dev file today: run `bin/tito release` and commit it."""
    committed = student_notebook(COURSE, graded.module)
    assert committed.exists(), f"{committed.relative_to(REPO)} is missing: run `bin/tito release`"
    assert committed.read_bytes() == graded.release.notebook.read_bytes(), \
        f"{committed.relative_to(REPO)} is out of step with its dev file: run `bin/tito release` and commit it"
    assert find_leaks(secret_lines(instructor_text(COURSE, graded.module)), [committed]) == []


@slow
def test_release_stubs_name_the_module_and_function(graded: Graded) -> None:
    module = graded.module
    regions = COURSE.dev_py(module).read_text(encoding="utf-8").count("### BEGIN SOLUTION")
    stubs = [line.strip() for c in solution_cells(graded.released) for line in c.source.splitlines()
             if "raise NotImplementedError(" in line and "# YOUR CODE HERE" in c.source]
    named = [s for s in stubs if s.startswith(f'raise NotImplementedError("module {module.prefix} ({module.name}): ')]
    assert len(named) == regions, "every solution region becomes one stub naming the module"
    for stub in named:
        assert f"finish it in modules/{module.dirname}/{module.dev_stem}.ipynb and run `tito export {module.dirname}`" in stub
    assert "raise NotImplementedError()" not in "\n".join(c.source for c in graded.released.cells)


@slow
def test_release_locks_graded_cells(graded: Graded) -> None:
    cells = graded_cells(graded.released)
    assert cells, f"{graded.module.dirname} has no graded cells"
    assert all(nbgrader_meta(c).get("locked") for c in cells)
    assert graded.release.points == graded_points(graded.source)


# ------------------------------------------------------------------------------ grading


@slow
def test_complete_submission_gets_full_marks(graded: Graded) -> None:
    grade = graded.run.students["complete"]
    assert grade.ok, grade.error
    assert grade.max_score == graded.release.points > 0
    assert grade.score == grade.max_score, {k: v for k, v in grade.cells.items() if v < graded.run.cell_points[k]}


@slow
def test_untouched_release_scores_zero_on_every_graded_cell(graded: Graded) -> None:
    grade = graded.run.students["untouched"]
    assert grade.ok, grade.error
    earning = {k: v for k, v in grade.cells.items() if v}
    assert earning == {}, f"these graded cells pass without any student code: {earning}"


@slow
def test_one_unfinished_function_loses_exactly_its_points(graded: Graded) -> None:
    grade = graded.run.students["one-wrong"]
    assert grade.ok, grade.error
    points = graded.run.cell_points
    lost = {k for k, v in grade.cells.items() if v < points[k]}
    assert lost, f"leaving {graded.broken} unfinished costs nothing"
    visible_lost = {v.name for v in grade.verdicts if not v.visible_ok}
    assert visible_lost == graded.failing_when_broken, "tito test and tito grade disagree on which checks fail"
    assert lost >= visible_lost  # hidden tests can only fail more checks
    assert all(grade.cells[k] == points[k] for k in points if k not in lost), "the other cells keep their points"
    assert grade.score == sum(points.values()) - sum(points[k] for k in lost)
    order = [nbgrader_meta(c)["grade_id"] for c in graded.source.cells if nbgrader_meta(c).get("grade_id")]
    before = {k for k in points if order.index(k) < order.index(graded.broken)}
    assert not lost & before, "a check that runs before the unfinished cell cannot depend on it"


@slow
def test_submission_that_raises_is_graded_and_others_are_too(graded: Graded) -> None:
    broken = graded.run.students["raises"]
    assert broken.ok, broken.error
    assert broken.score < broken.max_score
    assert graded.run.students["complete"].score == graded.release.points


@slow
def test_grades_csv_and_feedback(graded: Graded, book: Gradebook) -> None:
    with open(graded.run.csv, newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"complete", "untouched", "one-wrong", "raises"}
    for student, grade in graded.run.students.items():
        assert float(rows[student]["score"]) == grade.score
        assert rows[student]["status"] == "graded"
        for grade_id, score in grade.cells.items():
            assert float(rows[student][grade_id]) == score
    grade = graded.run.students["one-wrong"]
    html = graded.run.feedback["one-wrong"].read_text(encoding="utf-8")
    assert f"(Score: {grade.score:.1f} / {grade.max_score:.1f})" in html


@slow
def test_hanging_and_crashing_submissions_are_graded_with_a_time_limit(tmp_path: Path, capsys) -> None:
    """`tito release` then `tito grade --timeout 6`: a submission that never returns and one
    that kills its kernel are graded within the limit, and so is the one graded after them;
    a notebook nbgrader cannot read is reported as not graded."""
    module = MODULES[0]
    course_dir = tmp_path / "course"
    assert main(["--root", str(REPO), "release", module.dirname, "--course-dir", str(course_dir)]) == 0
    assert "no solution text in any release" in capsys.readouterr().out
    limited = gradebook(COURSE, course_dir=course_dir)
    source = nbformat.read(limited.source_notebook(module), as_version=4)
    complete = fill(nbformat.read(limited.release_notebook(module), as_version=4), source)
    folder = tmp_path / "submissions"
    save(with_first_solution_prefixed(complete, "import os\nos._exit(1)"), folder, "a-crashes", module)
    save(with_first_solution_prefixed(complete, "while True:\n    pass"), folder, "b-hangs", module)
    save(complete, folder, "c-complete", module)
    (folder / "d-corrupt" / module.dirname).mkdir(parents=True)
    (folder / "d-corrupt" / module.dirname / f"{module.dev_stem}.ipynb").write_text("{ not a notebook")
    started = time.perf_counter()
    assert main(["--root", str(REPO), "grade", module.dirname, "--submissions", str(folder),
                 "--course-dir", str(course_dir), "--timeout", "6"]) == 0
    assert time.perf_counter() - started < 60
    out = capsys.readouterr().out
    assert f"graded 4 submission(s) of {module.dirname}" in out
    with open(limited.grades_csv(module), newline="", encoding="utf-8") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    points = graded_points(source)
    assert [(rows[s]["score"], rows[s]["status"]) for s in ("a-crashes", "b-hangs", "c-complete")] == [
        ("0", "graded"), ("0", "graded"), (f"{points:g}", "graded")]
    assert rows["d-corrupt"]["score"] == "0"
    assert rows["d-corrupt"]["status"].startswith("failed: the submission is not a readable notebook")
    assert "d-corrupt" in out and "could not be graded" in out
    # Why the checks failed, from tito's verdicts (course/grades/NN_name/<student>.json).
    hung_report = json.loads((limited.grades_dir / module.dirname / "b-hangs.json").read_text(encoding="utf-8"))
    assert all("time limit of 6 s" in c["error"] for c in hung_report["checks"])
    crash_report = json.loads((limited.grades_dir / module.dirname / "a-crashes.json").read_text(encoding="utf-8"))
    assert all("process ended" in c["error"] for c in crash_report["checks"])
    hung = nbformat.read(limited.autograded_notebook("b-hangs", module), as_version=4)
    errors = {o.ename for c in hung.cells for o in c.get("outputs", []) if o.output_type == "error"}
    assert {"CellTimeoutError", "NotebookTimeout"} <= errors
    crashed = nbformat.read(limited.autograded_notebook("a-crashes", module), as_version=4)
    assert any(o.ename == "KernelDied" for c in crashed.cells for o in c.get("outputs", []) if o.output_type == "error")


# ------------------------------------------------------------------------------ the notebooks


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_points_line_states_the_sum_of_graded_cells(module: Module) -> None:
    nb = read_py(COURSE.dev_py(module))
    assert stated_points(nb) == [graded_points(nb)], \
        f"{module.dirname} must state **Points: {graded_points(nb):g}** in its first markdown cell"
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown")
    assert "**Points:" in first_markdown.source


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_first_code_cell_is_the_colab_cell_and_a_no_op_elsewhere(module: Module, monkeypatch) -> None:
    nb = read_py(COURSE.dev_py(module))
    source = first_code_cell(nb).source
    repo = repository(COURSE)
    assert source == colab_cell(repo, module)
    calls = []
    fake_subprocess = types.SimpleNamespace(run=lambda *a, **k: calls.append((a, k)))
    monkeypatch.setitem(sys.modules, "subprocess", fake_subprocess)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, "colab-cell", "exec"), {})
    assert calls == [], "outside Colab the cell must do nothing"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    if repo.is_placeholder:  # the template's repository: nothing is installed from it
        with pytest.raises(RuntimeError, match="placeholder"):
            exec(compile(source, "colab-cell", "exec"), {})
        assert calls == []
    real = Repository("someone", "their-course", "fall")
    cell = colab_cell(real, module)
    monkeypatch.setenv("TINYTORCH_COURSE_DIR", "/nonexistent/course")
    monkeypatch.setitem(sys.modules, "runpy", types.SimpleNamespace(
        run_path=lambda path: {"setup": lambda course, module: calls.append(("setup", path, course, module))}))
    exec(compile(cell, "colab-cell", "exec"), {})
    (clone, _), (checkout, _), setup = calls
    assert clone[0][:2] == ["git", "clone"] and "--no-checkout" in clone[0] and "--filter=blob:none" in clone[0]
    assert "--branch=fall" in clone[0] and "https://github.com/someone/their-course" in clone[0]
    assert checkout[0][-2:] == ["--", "tito/colab.py"], "only the set-up script is checked out first"
    assert setup == ("setup", "/nonexistent/course/tito/colab.py", "/nonexistent/course", module.number)


def _runs_checks(tree: ast.Module) -> bool:
    """True when some assert (or call) runs at the top level of a cell, outside any def."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if any(isinstance(n, ast.Assert) for n in ast.walk(node)):
            return True
    return False


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_graded_cells_run_their_checks(module: Module) -> None:
    """A graded cell earns its points by running without error, so it must run asserts at
    its top level (a cell that only defines a test function would award free points)."""
    nb = read_py(COURSE.dev_py(module))
    for cell in graded_cells(nb):
        tree = ast.parse(cell.source)
        assert _runs_checks(tree), f"{module.dirname}: graded cell {nbgrader_meta(cell)['grade_id']} runs no assert"


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_solution_cells_mark_their_solutions(module: Module) -> None:
    """nbgrader replaces a solution cell without markers by a stub, whole: definitions and all."""
    nb = read_py(COURSE.dev_py(module))
    for cell in solution_cells(nb):
        assert "### BEGIN SOLUTION" in cell.source, f"{module.dirname}: {nbgrader_meta(cell)['grade_id']}"
    ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), f"{module.dirname}: grade_ids repeat"


# ------------------------------------------------------------------------------ stub messages


def test_stub_message_names_module_function_and_command() -> None:
    layers = resolve_module("03_layers")
    source = "class Dense(Module):\n    def forward(self, x):\n        # YOUR CODE HERE\n        raise NotImplementedError()\n"
    assert explain_stubs(source, layers).splitlines()[3] == (
        '        raise NotImplementedError("module 03 (layers): `Dense.forward` is not implemented yet — '
        'finish it in modules/03_layers/layers_dev.ipynb and run `tito export 03_layers`")')
    top = explain_stubs(CODE_STUB, layers)
    assert "module 03 (layers): this code is not implemented yet" in top
    assert stub_message(layers, "f").startswith("module 03 (layers): `f` is not implemented yet")


# ------------------------------------------------------------------------------ configuration


def test_nbgrader_config_keeps_its_folders_outside_modules_and_never_releases_py() -> None:
    config = gradebook(COURSE).config
    root = Path(config.CourseDirectory.root)
    assert root == REPO / "course"
    assert COURSE.modules_dir not in root.parents and COURSE.lib_dir not in root.parents
    assert "*.py" in config.CourseDirectory.ignore
    assert config.CourseDirectory.course_id == "tinytorch"
    assert config.Execute.timeout > 0 and config.GradingExecute.notebook_timeout > 0
    assert GradingExecute in config.Autograde.autograde_preprocessors
    assert ExplainStubs in config.GenerateAssignment.preprocessors
    assert "course/" in (REPO / ".gitignore").read_text(encoding="utf-8").split()


def test_binder_installs_the_project_and_exports_it() -> None:
    post_build = REPO / "binder" / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "postBuild must be executable"
    text = post_build.read_text(encoding="utf-8")
    assert re.search(r'pip install .*-c constraints\.txt -e "\.\[dev\]"', text)
    assert "tito export" in text
    runtime = (REPO / "binder" / "runtime.txt").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"python-3\.(1[1-9])", runtime)


def test_binder_hides_instructor_tools_fetches_data_and_uses_its_own_environment(tmp_path: Path) -> None:
    post_build = (REPO / "binder" / "postBuild").read_text(encoding="utf-8")
    start = REPO / "binder" / "start"
    assert start.stat().st_mode & stat.S_IXUSR, "binder/start must be executable"
    start_text = start.read_text(encoding="utf-8")
    assert "export TITO_NO_VENV=1" in start_text and "export TINYTORCH_DATA=" in start_text
    assert start_text.rstrip().endswith('exec "$@"')
    assert "tiny_shakespeare()" in post_build, "Tiny Shakespeare is fetched (and checked) when the image is built"
    # Every nbgrader plugin postBuild switches off exists in the installed nbgrader.
    plugins = re.findall(r"@jupyter/nbgrader:[\w-]+", post_build)
    assert {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:course-list"} <= set(plugins)
    static = Path(sys.prefix, "share", "jupyter", "labextensions", "@jupyter", "nbgrader", "static")
    bundle = "".join(p.read_text(encoding="utf-8", errors="replace") for p in static.glob("*.js"))
    for plugin in set(plugins):
        assert f'id:"{plugin}"' in bundle, f"nbgrader has no lab plugin {plugin}"
    for extension in re.findall(r"server extension disable --sys-prefix (\S+)", post_build):
        __import__(extension)
    assert "nbgrader.server_extensions.formgrader" in post_build
    # With TITO_NO_VENV=1 bin/tito runs on the current interpreter and creates no .venv.
    copy = tmp_path / "course"
    shutil.copytree(REPO / "bin", copy / "bin")
    shutil.copytree(REPO / "tito", copy / "tito", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "TITO_NO_VENV": "1", "PYTHON": sys.executable}
    result = subprocess.run([str(copy / "bin" / "tito"), "--help"], capture_output=True, text=True, env=env, cwd=copy)
    assert result.returncode == 0, result.stderr
    assert not (copy / ".venv").exists()


# ------------------------------------------------------------------------------ the book


def test_toc_has_a_page_for_every_module() -> None:
    files = toc_files(COURSE)
    for module in MODULES:
        assert files.count(module_page(COURSE, module)) == 1, f"{module.dirname} has no page in _toc.yml"


def test_book_check_passes_but_for_the_placeholder_repository(capsys) -> None:
    """`tito book --check` checks the toc, the config and every launch link; while
    settings.ini names the template's placeholder repository it fails, saying so, and makes
    no link from it."""
    repo = repository(COURSE)
    assert book_problems(COURSE) == placeholder_problem(repo)
    assert main(["--root", str(REPO), "book", "--check"]) == (1 if repo.is_placeholder else 0)
    out = capsys.readouterr().out
    assert ("placeholder repository" in out) if repo.is_placeholder else ("OK" in out)
    line = launch_line(COURSE)
    assert line in (REPO / "README.md").read_text(encoding="utf-8")
    if repo.is_placeholder:
        assert "](" not in line and "settings.ini" in line, "no link is made from the placeholder"


def test_a_real_repository_gets_links_to_the_student_notebooks() -> None:
    repo = Repository("someone", "their-course", "fall")
    assert not repo.is_placeholder and placeholder_problem(repo) == []
    line = launch_line(COURSE, repo)
    assert "https://mybinder.org/v2/gh/someone/their-course/fall?urlpath=lab/tree/student" in line
    assert "https://colab.research.google.com/github/someone/their-course/blob/fall/student/01_tensor/tensor_dev.ipynb" in line
    assert "modules/" not in line, "students are never sent to the instructor's notebooks"
    assert Repository("tinytorch", "tinytorch").is_placeholder


def test_book_build_drops_launch_buttons_for_the_placeholder(tmp_path: Path) -> None:
    from tito.commands.book import _build_config
    config = _build_config(COURSE, tmp_path)
    if repository(COURSE).is_placeholder:
        text = config.read_text(encoding="utf-8")
        assert "launch_buttons" not in text and "tinytorch/tinytorch" not in text
    else:
        assert config is None


def test_book_check_finds_a_missing_page(tmp_path: Path) -> None:
    shutil.copy2(REPO / "settings.ini", tmp_path / "settings.ini")
    shutil.copy2(REPO / "README.md", tmp_path / "README.md")
    for module in MODULES:
        target = tmp_path / "modules" / module.dirname
        target.mkdir(parents=True)
        for path in (COURSE.dev_py(module), COURSE.dev_ipynb(module)):
            shutil.copy2(path, target / path.name)
    shutil.copytree(REPO / "student", tmp_path / "student")
    copy_course = Course(tmp_path)
    toc = render_toc(copy_course)
    (tmp_path / "_toc.yml").write_text(toc)
    assert toc_problems(copy_course) == []
    last = module_page(COURSE, MODULES[-1])
    (tmp_path / "_toc.yml").write_text(toc.replace(f"      - file: {last}\n", ""))
    assert [p for p in toc_problems(copy_course) if MODULES[-1].dirname in p]
    (tmp_path / "_toc.yml").write_text(toc.replace(f"      - file: {last}\n", "      - file: modules/nowhere\n"))
    assert [p for p in toc_problems(copy_course) if "modules/nowhere does not exist" in p]


@pytest.mark.parametrize("command", ["release", "grade", "workspace", "book"])
def test_course_commands_have_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: tito {command}" in capsys.readouterr().out


# ------------------------------------------------------------------------------ the workspace


@pytest.fixture(scope="module")
def workspace(book: Gradebook, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("student") / "workspace"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["--root", str(REPO), "workspace", str(root), "--course-dir", str(book.root)])
    assert status == 0, out.getvalue()
    assert "import tinytorch (stubbed modules included): OK" in out.getvalue()
    assert "no solution text in the workspace" in out.getvalue()
    return root


@slow
def test_submit_packs_exactly_the_graded_notebook(workspace: Path, tmp_path: Path, capsys) -> None:
    import zipfile

    module = MODULES[-1]
    out = tmp_path / "hand-in.zip"
    assert main(["--root", str(workspace), "submit", module.dirname, "--out", str(out)]) == 0
    assert "visible checks: 0 of" in capsys.readouterr().out  # the untouched release earns nothing
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [f"{module.dirname}/{module.dev_stem}.ipynb"]
        packed = nbformat.reads(archive.read(archive.namelist()[0]).decode("utf-8"), as_version=4)
    assert packed.cells == nbformat.read(Course(workspace).dev_ipynb(module), as_version=4).cells


@slow
def test_status_in_a_fresh_workspace_says_not_started(workspace: Path, capsys) -> None:
    assert main(["--root", str(workspace), "status", "--tests"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    module = MODULES[-1]  # the round-trip test works on the first module only
    assert lines[module.dirname].count("not started") == 2, lines[module.dirname]
    assert "FAIL" not in lines[module.dirname]


@slow
def test_workspace_holds_only_student_versions(workspace: Path, book: Gradebook) -> None:
    student = Course(workspace)
    assert [m.dirname for m in student.existing_modules()] == IDS
    for name in ("settings.ini", "pyproject.toml", "constraints.txt", "bin/tito", "tito/cli.py", "README.md"):
        assert (workspace / name).exists(), name
    for module in MODULES:
        py, ipynb = student.dev_py(module), student.dev_ipynb(module)
        assert pair_differences(py, ipynb) == []
        assert "### BEGIN SOLUTION" not in py.read_text(encoding="utf-8")
        released = nbformat.read(book.release_notebook(module), as_version=4)
        assert [c.source for c in read_py(py).cells] == [c.source for c in released.cells]
        assert (workspace / module.generated_relpath).exists()
        for test in COURSE.test_files(module):
            assert (student.tests_dir / test.name).exists()
        secrets = secret_lines(instructor_text(COURSE, module))
        assert find_leaks(secrets, [py, ipynb, workspace / module.generated_relpath]) == []
    assert main(["--root", str(workspace), "export", "--check"]) == 0
    assert toc_problems(Course(workspace)) == [], "the book's table of contents works in a workspace"


@slow
def test_workspace_round_trip(workspace: Path, book: Gradebook, capsys) -> None:
    """Finish the first module in the workspace, export it, and the next module imports it."""
    first, second = MODULES[0], MODULES[1]
    student = Course(workspace)
    root = ["--root", str(workspace)]
    unfinished_first = f"module {first.prefix} ({first.name}):"
    # Before: the second module's checks fail on the first module's stubs.
    capsys.readouterr()
    assert main(root + ["test", second.dirname, "--no-pytest"]) == 1
    out = capsys.readouterr().out
    assert unfinished_first in out and "FAIL" in out
    # The student completes the first module in Jupyter (the notebook is newer than its .py)...
    released = nbformat.read(book.release_notebook(first), as_version=4)
    source = nbformat.read(book.source_notebook(first), as_version=4)
    nbformat.write(fill(released, source), student.dev_ipynb(first))
    later = student.dev_py(first).stat().st_mtime + 5
    os.utime(student.dev_ipynb(first), (later, later))
    # ... `tito test` runs the notebook and reports every check passing ...
    assert main(root + ["test", first.dirname, "--no-pytest"]) == 0
    out = capsys.readouterr().out
    assert "is newer than" in out and "FAIL" not in out
    assert out.count("PASS test-") == len(graded_cells(released))
    # ... then exports it, and the package (and its own tests) use the student's code.
    assert main(root + ["export", first.dirname]) == 0
    assert "### BEGIN SOLUTION" not in student.dev_py(first).read_text(encoding="utf-8")
    assert main(root + ["test", first.dirname]) == 0
    capsys.readouterr()
    assert main(root + ["test", second.dirname, "--no-pytest"]) == 1
    out = capsys.readouterr().out
    assert unfinished_first not in out
    assert f"module {second.prefix} ({second.name}):" in out


@slow
def test_workspace_package_imports_with_every_module_stubbed(workspace: Path) -> None:
    """`import tinytorch` imports the autograd module when it exists: stubs only raise when called."""
    code = (
        "import tinytorch, importlib\n"
        f"for name in {[m.import_name for m in MODULES]!r}:\n"
        "    importlib.import_module(name)\n"
        "print('imported')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(workspace))
    result = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr


# ------------------------------------------------------------------------------ tito test, per check

CHECKS_DEV = '''\
# %%
#| default_exp core.tensor

# %% nbgrader={"grade": false, "grade_id": "double", "locked": false, "schema_version": 3, "solution": true}
#| export
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-double", "locked": true, "points": 2, "schema_version": 3, "solution": false}
assert double(2) == 4, "double(2) should be 4"

# %% nbgrader={"grade": true, "grade_id": "test-wrong-message", "locked": true, "points": 1, "schema_version": 3, "solution": false}
assert double(3) == 7, f"double(3) gave {double(3)}"

# %%
raise RuntimeError("a demo cell fails")

# %% nbgrader={"grade": true, "grade_id": "test-bare-assert", "locked": true, "points": 3, "schema_version": 3, "solution": false}
value = double(1)
assert value == 5

# %% nbgrader={"grade": false, "grade_id": "check-ungraded", "locked": true, "schema_version": 3, "solution": false}
assert double(0) == 0
'''


def test_notebook_runner_reports_every_check(tmp_path: Path, capsys) -> None:
    """`tito test MODULE` runs every cell after a failure and reports each check in plain words."""
    shutil.copy2(REPO / "settings.ini", tmp_path / "settings.ini")
    fake = Course(tmp_path)
    tensor = resolve_module("01")
    fake.dev_py(tensor).parent.mkdir(parents=True)
    fake.dev_py(tensor).write_text(CHECKS_DEV, encoding="utf-8")
    result = run_dev_file(fake.dev_py(tensor), tmp_path, timeout=60, all_cells=True)
    assert not result.ok and result.error == "AssertionError: double(3) gave 6"  # the first failure
    demo = next(i for i, line in enumerate(CHECKS_DEV.splitlines(), 1) if "a demo cell fails" in line) - 1
    assert result.other_failures == [f"cell 5 (line {demo}): RuntimeError: a demo cell fails"]
    cells = {c.name: c for c in result.cells}
    assert list(cells) == ["test-double", "test-wrong-message", "test-bare-assert", "check-ungraded"]
    assert cells["test-double"].ok and cells["test-double"].points == 2
    assert cells["test-wrong-message"].error == "AssertionError: double(3) gave 6"
    assert cells["test-bare-assert"].error == "AssertionError at `assert value == 5`"
    assert cells["check-ungraded"].ok and cells["check-ungraded"].points is None
    marker = next(i for i, line in enumerate(CHECKS_DEV.splitlines(), 1) if '"test-bare-assert"' in line)
    assert cells["test-bare-assert"].line == marker
    assert main(["--root", str(tmp_path), "test", "01", "--no-pytest"]) == 1
    out = capsys.readouterr().out
    assert "2 of 4 checks pass (2 of 6 points):" in out
    assert "PASS test-double (2 points)" in out
    assert "FAIL test-wrong-message (1 point)" in out and "double(3) gave 6" in out
    assert "PASS check-ungraded" in out
    assert "error in cell 5" in out and "RuntimeError: a demo cell fails" in out
