"""Grading tested like security: the sandbox, the harness, and a sweep of every module.

The sweep (tito/mutation.py, also `tito mutants`) grades, for every module, the reference
solution (full marks), the untouched release (0), a correct submission that writes to
stderr and warns (full marks), every mutant of grading/mutants/NN_name.json (each must lose
points) and a set of hostile submissions (0, or no point more than the wrong code under
them). The other tests look at single mechanisms: what a submission can see and do from
inside the sandbox, what the harness does with tampering, and what feedback may contain.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest

from tito.checks import Program, build_program, run_checks, split_hidden
from tito.course import Course, resolve_module
from tito.grading import autograde, find_leaks, gradebook, instructor_text, release, secret_lines
from tito.hidden import HiddenTestsError, check_sections, parse_sections, read_sections, with_hidden
from tito.mutation import filled, load_mutants, sweep_module
from tito.sandbox import available

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)
MODULES = COURSE.existing_modules()
slow = pytest.mark.slow

needs_sandbox = pytest.mark.skipif(available() is not None, reason=f"no sandbox here: {available()}")


def program(module_name: str, cells: list[dict]) -> Program:
    return Program(resolve_module(module_name), cells, cell_timeout=20)


def test_sandbox_is_available_on_linux_ci() -> None:
    # CI runs on Linux with user namespaces: grading must be able to isolate there.
    assert available() is None, available()


# ------------------------------------------------------------------------ the sandbox


PROBE = r'''
import os, sys, json, socket, glob
seen = {}
seen["root_listing"] = os.listdir(ROOT) if os.path.isdir(ROOT) else None
seen["dev_files"] = glob.glob(ROOT + "/modules/*/*_dev.py")
seen["tmp"] = sorted(os.listdir("/tmp"))
try:
    open("/etc/tito-sandbox-write-test", "w")
    seen["write_etc"] = True
except OSError:
    seen["write_etc"] = False
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    seen["network"] = True
except OSError:
    seen["network"] = False
import tinytorch
seen["tinytorch"] = os.path.dirname(tinytorch.__file__)
seen["modules"] = sorted(p.split("/tinytorch/")[1] for p in glob.glob(os.path.dirname(tinytorch.__file__) + "/**/*.py", recursive=True))
import importlib.util
seen["later_module"] = importlib.util.find_spec("tinytorch.core.layers") is not None
try:
    block = bytearray(8 * 1024 ** 3)
    seen["8GiB"] = True
except MemoryError:
    seen["8GiB"] = False
print(json.dumps(seen))
'''


@needs_sandbox
def test_sandbox_hides_the_checkout_and_limits_the_submission(tmp_path: Path) -> None:
    root = str(REPO.resolve())
    probe = PROBE.replace("ROOT", repr(root))
    check = ("import json, io, contextlib\n"
             "buffer = io.StringIO()\n"
             "with contextlib.redirect_stdout(buffer):\n"
             + "".join(f"    {line}\n" for line in probe.splitlines()) +
             "seen = json.loads(buffer.getvalue())\n"
             f"assert seen['root_listing'] in ([], None) and seen['dev_files'] == [], seen\n"
             "assert seen['tmp'] == ['submission'], seen\n"
             "assert not seen['write_etc'] and not seen['network'] and not seen['later_module'], seen\n"
             "assert not seen['8GiB'], seen\n"
             "assert seen['tinytorch'] == '/tmp/submission/tinytorch', seen\n"
             "assert seen['modules'] == ['__init__.py', 'core/__init__.py', 'core/activations.py', 'core/tensor.py'], seen\n")
    # Grading module 02: the package holds module 01 (reference) and module 02 (the submission).
    prog = program("02", [{"kind": "test", "name": "probe", "visible": check, "hidden": None, "points": 1.0}])
    report = run_checks(COURSE, prog, sandboxed=True, timeout=120, memory_mb=2048)
    assert report.verdicts[0].ok, report.verdicts[0].error


@needs_sandbox
def test_sandbox_wall_clock_limit_kills_the_whole_tree() -> None:
    spin = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True:\n    pass\n"
    prog = program("02", [{"kind": "solution", "name": "spin", "source": spin, "exported": False},
                          {"kind": "test", "name": "after", "visible": "x = 1", "hidden": None, "points": 1.0}])
    prog.cell_timeout = 600
    report = run_checks(COURSE, prog, sandboxed=True, timeout=3)
    assert not report.verdicts[0].ok and "time limit of 3 s" in report.verdicts[0].error


# ------------------------------------------------------------------------ the harness


def _run(cells: list[dict], module: str = "02"):
    return run_checks(COURSE, program(module, cells), sandboxed=False, timeout=120).by_name()


def test_harness_decides_checks_without_ipython_and_ignores_stderr_and_warnings() -> None:
    noisy = "import sys, warnings\nprint('x', file=sys.stderr)\nwarnings.warn('careful')\nimport numpy as np\n"
    verdicts = _run([
        {"kind": "solution", "name": "a", "source": noisy + "def double(x):\n    return 2 * x\n", "exported": False},
        {"kind": "test", "name": "good", "visible": noisy + "assert double(2) == 4", "hidden": None, "points": 1.0},
        {"kind": "test", "name": "bad", "visible": "assert double(2) == 5", "hidden": None, "points": 1.0},
        {"kind": "test", "name": "secret", "visible": "assert double(1) == 2",
         "hidden": "assert double(-1) == -3, 'hidden'", "points": 2.0},
        {"kind": "test", "name": "ipython", "visible": "get_ipython()", "hidden": None, "points": 1.0},
    ])
    assert verdicts["good"].ok
    assert verdicts["bad"].error == "AssertionError at `assert double(2) == 5`"
    assert verdicts["secret"].visible_ok and not verdicts["secret"].ok
    assert verdicts["secret"].error == "hidden tests: AssertionError: hidden"
    assert verdicts["ipython"].error.startswith("NameError")


@pytest.mark.parametrize("attack", [
    "np.allclose = lambda *a, **k: True",
    "import numpy\nnumpy._core.numeric.isclose = lambda *a, **k: numpy.array(True)",
    "np.allclose._implementation.__code__ = (lambda *a, **k: True).__code__",
    "import builtins\nbuiltins.abs = lambda x: 0",
    "import sys\nsys.modules['numpy'] = type(sys)('numpy')",
])
def test_tampering_fails_the_checks_that_follow(attack: str) -> None:
    verdicts = _run([
        {"kind": "code", "name": "setup", "source": "import numpy as np", "exported": False},
        {"kind": "test", "name": "before", "visible": "assert np.allclose(1.0, 1.0)", "hidden": None, "points": 1.0},
        {"kind": "solution", "name": "attack", "source": attack, "exported": False},
        {"kind": "test", "name": "wrong", "visible": "assert np.allclose(1.0, 2.0)", "hidden": None, "points": 1.0},
        {"kind": "test", "name": "after", "visible": "assert np.allclose(1.0, 1.0)", "hidden": None, "points": 1.0},
    ])
    assert verdicts["before"].ok
    assert not verdicts["wrong"].ok and not verdicts["after"].ok
    assert "tampering detected" in verdicts["after"].error


def test_tests_see_numpy_as_captured_even_if_a_solution_replaces_it_and_restores_it() -> None:
    sneaky = ("import numpy\n_orig = numpy.allclose\n"
              "def _once(*a, **k):\n    numpy.allclose = _orig\n    return True\n"
              "numpy.allclose = _once\n")
    verdicts = _run([
        {"kind": "solution", "name": "sneaky", "source": sneaky, "exported": False},
        {"kind": "test", "name": "wrong", "visible": "assert np.allclose(1.0, 2.0)", "hidden": None, "points": 1.0},
    ])
    assert not verdicts["wrong"].ok


def test_comparisons_refuse_objects_that_run_student_code() -> None:
    liar = ("import numpy as np\nclass Liar:\n    def __array__(self, dtype=None, copy=None):\n"
            "        return np.array([object()], dtype=object)\n")
    verdicts = _run([
        {"kind": "solution", "name": "liar", "source": liar, "exported": False},
        {"kind": "test", "name": "wrong", "visible": "assert np.allclose(Liar(), [1.0])", "hidden": None, "points": 1.0},
        {"kind": "test", "name": "sub", "visible": "class A(np.ndarray):\n    def __eq__(self, o):\n        return True\n"
                                                    "assert np.array_equal(np.zeros(2).view(A), np.ones(2))",
         "hidden": None, "points": 1.0},
    ])
    assert not verdicts["wrong"].ok and not verdicts["sub"].ok


def test_a_solution_cell_cannot_swap_a_test_helper() -> None:
    verdicts = _run([
        {"kind": "code", "name": "helper", "source": "def expected(x):\n    return 2 * x", "exported": False},
        {"kind": "solution", "name": "s", "source": "def double(x):\n    return 3 * x\nexpected = double", "exported": False},
        {"kind": "test", "name": "t", "visible": "assert double(2) == expected(2)", "hidden": None, "points": 1.0},
    ])
    assert not verdicts["t"].ok


def test_exits_and_kills_fail_every_check_not_yet_decided() -> None:
    for code in ("import os\nos._exit(0)", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"):
        verdicts = _run([
            {"kind": "test", "name": "first", "visible": "x = 1", "hidden": None, "points": 1.0},
            {"kind": "solution", "name": "s", "source": code, "exported": False},
            {"kind": "test", "name": "second", "visible": "x = 1", "hidden": None, "points": 1.0},
        ])
        assert verdicts["first"].ok and not verdicts["second"].ok
        assert "process ended in s" in verdicts["second"].error


def test_split_hidden_separates_the_block() -> None:
    visible, hidden = split_hidden("a = 1\n### BEGIN HIDDEN TESTS\nassert a == 1\n### END HIDDEN TESTS\nb = 2\n")
    assert visible == "a = 1\nb = 2\n" and hidden == "assert a == 1\n"
    assert split_hidden("a = 1\n") == ("a = 1\n", None)


def test_program_takes_only_solution_cells_from_the_submission() -> None:
    module = resolve_module("02")
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("y = 2", metadata={"nbgrader": {"grade_id": "answer", "solution": True}}),
        nbformat.v4.new_code_cell("assert y == 2\n### BEGIN HIDDEN TESTS\nassert x == 1\n### END HIDDEN TESTS\n",
                                  metadata={"nbgrader": {"grade_id": "check", "grade": True, "points": 3}}),
    ])
    submission = copy.deepcopy(source)
    submission.cells[0].source = "x = 99"  # an edited provided cell
    submission.cells[1].source = "y = 3"
    submission.cells[2].source = "pass"  # an edited test
    submission.cells[2].metadata["nbgrader"]["points"] = 100
    submission.cells.append(nbformat.v4.new_code_cell("get_ipython()"))  # an added cell
    prog = build_program(module, source, submission, hidden=True)
    assert [(c["kind"], c.get("source", c.get("visible"))) for c in prog.cells] == [
        ("code", "x = 1"), ("solution", "y = 3"), ("test", "assert y == 2\n")]
    assert prog.cells[2]["hidden"] == "assert x == 1\n" and prog.cells[2]["points"] == 3.0


# ------------------------------------------------------------------------ feedback


@slow
@needs_sandbox
def test_feedback_never_shows_reference_source_or_instructor_paths(tmp_path: Path) -> None:
    """A submission that prints what it can find of the instructor's code: none of it may
    reach its feedback, and its correct neighbour's stderr output costs nothing."""
    module = resolve_module("02")
    book = gradebook(COURSE, course_dir=tmp_path / "course")
    released = nbformat.read(release(book, [module])[0].notebook, as_version=4)
    dev = COURSE.dev_py(module).read_text(encoding="utf-8")
    root = str(REPO.resolve())
    snoop = filled(released, dev, module)
    first = next(c for c in snoop.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    first.source = (
        "import glob, inspect, sys\n"
        f"for p in glob.glob({root!r} + '/**/*.py', recursive=True)[:50]:\n    print(open(p).read())\n"
        "try:\n    import tinytorch.core.activations as ref\n    print(inspect.getsource(ref))\nexcept Exception as e:\n"
        "    print('no reference:', type(e).__name__)\n"
        "print(sys.path, file=sys.stderr)\n") + first.source
    snoop.cells.append(nbformat.v4.new_code_cell("print('a cell the student added')"))
    del snoop.cells[[i for i, c in enumerate(snoop.cells) if c.get("metadata", {}).get("nbgrader", {}).get("grade")][0]]
    for name, nb in {"snoop": snoop, "noisy": filled(released, dev, module)}.items():
        path = tmp_path / "in" / name / module.dirname / f"{module.dev_stem}.ipynb"
        path.parent.mkdir(parents=True)
        if name == "noisy":
            nb.cells[-1].source += "\nimport sys\nprint('debugging', file=sys.stderr)"
        nbformat.write(nb, path)
    run = autograde(book, module, submissions=tmp_path / "in", feedback=True)
    assert run.students["noisy"].score == run.students["noisy"].max_score
    html = run.feedback["snoop"].read_text(encoding="utf-8")
    secrets = secret_lines(dev)
    # The snoop's own solution cells are a correct solution: compare against the
    # solution lines of the *other* modules and the hidden tests, which it must not see.
    hidden_tests = {line.strip() for cell in nbformat.read(book.source_notebook(module), as_version=4).cells
                    for line in (split_hidden(cell.source)[1] or "").splitlines() if line.strip()}
    others = set().union(*(secret_lines(instructor_text(COURSE, m))
                           for m in MODULES if m.number > module.number))
    own = {line.strip() for line in dev.splitlines()}  # text the snoop's own notebook holds anyway
    leaked = [line for line in sorted(others - own) if len(line) > 25 and line in html]
    assert leaked == [], leaked[:5]
    graded_nb = nbformat.read(book.autograded_notebook("snoop", module), as_version=4)
    outputs = json.dumps([cell.get("outputs", []) for cell in graded_nb.cells])
    # The feedback notebook runs what was graded: no added cell, no deleted test cell.
    assert "a cell the student added" not in json.dumps([c.source for c in graded_nb.cells])
    assert sum(bool(c.get("metadata", {}).get("nbgrader", {}).get("grade")) for c in graded_nb.cells) == \
        len(run.cell_points)
    # No file of the checkout was found and printed: no dev file, no generated module.
    assert "nbgrader={" not in outputs and "AUTOGENERATED" not in outputs and "_dev.ipynb #" not in outputs
    assert "tito grade: PASS" in html or "tito grade: FAIL" in html
    assert secrets and hidden_tests  # the comparison above had something to compare


# ------------------------------------------------------------------------ the sweep


@pytest.mark.parametrize("module", MODULES, ids=[m.dirname for m in MODULES])
def test_every_graded_cell_has_hidden_tests_and_every_section_a_graded_cell(module) -> None:
    """grading/hidden/NN_name.py and the dev file agree: one section per graded cell."""
    from tito.pairing import read_py
    nb = read_py(COURSE.dev_py(module))
    graded = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
              if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    sections = read_sections(COURSE, module)
    check_sections(sections, nb, module)
    assert sorted(sections) == sorted(graded), "every graded cell has hidden tests"
    assert "HIDDEN TESTS" not in COURSE.dev_py(module).read_text(encoding="utf-8"), \
        "hidden tests live in grading/hidden/, not in the dev file"
    full = with_hidden(nb, COURSE, module)
    for cell in full.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in sections:
            assert split_hidden(cell.source)[1].strip() == sections[grade_id].strip()


def test_hidden_sections_that_name_no_graded_cell_are_refused() -> None:
    module = resolve_module("02")
    from tito.pairing import read_py
    nb = read_py(COURSE.dev_py(module))
    with pytest.raises(HiddenTestsError, match="no-such-cell"):
        check_sections({"no-such-cell": "assert False"}, nb, module)
    with pytest.raises(HiddenTestsError, match="two sections"):
        parse_sections("# %% grade_id: a\nx = 1\n# %% grade_id: a\nx = 2\n")
    assert parse_sections("# header\n\n# %% grade_id: a\nx = 1\n\n# %% grade_id: b\ny = 2\n") == \
        {"a": "x = 1", "b": "y = 2"}


@pytest.mark.parametrize("module", MODULES, ids=[m.dirname for m in MODULES])
def test_every_module_has_at_least_five_mutants(module) -> None:
    assert len(load_mutants(COURSE, module)) >= 5, f"grading/mutants/{module.dirname}.json"


@slow
@needs_sandbox
@pytest.mark.parametrize("module", MODULES, ids=[m.dirname for m in MODULES])
def test_sweep_perfect_full_blank_zero_mutants_caught_hostile_held(module, tmp_path: Path) -> None:
    sweep = sweep_module(COURSE, module, tmp_path)
    bad = {r["name"]: r["problem"] for r in sweep.results if r["problem"]}
    assert bad == {}, json.dumps(bad, indent=1)
    caught, total = sweep.count("mutant-")
    assert total >= 5 and caught == total


@slow
@needs_sandbox
def test_earlier_modules_can_come_from_the_students_own_submissions(tmp_path: Path) -> None:
    """`tito grade --earlier own`: module 02 is graded on top of the student's own module 01."""
    from tito.grading import own_earlier_modules

    tensor, activations = resolve_module("01"), resolve_module("02")
    book = gradebook(COURSE, course_dir=tmp_path / "course")
    items = {item.module: item for item in release(book, [tensor, activations])}
    extra = {"alice": "ALICE_WROTE_THIS = True",  # a correct Tensor, recognisable
             "bob": "Tensor.__init__ = lambda self, *args, **kwargs: None"}  # a broken one
    for student, line in extra.items():
        for module in (tensor, activations):
            released = nbformat.read(items[module].notebook, as_version=4)
            nb = filled(released, COURSE.dev_py(module).read_text(encoding="utf-8"), module)
            if module is tensor:
                cell = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")
                        and "#| export" in c.source][-1]
                cell.source += f"\n\n{line}\n"
            path = book.submitted_notebook(student, module)
            path.parent.mkdir(parents=True)
            nbformat.write(nb, path)
    own = own_earlier_modules(book, activations, "alice")
    assert list(own) == [tensor] and "ALICE_WROTE_THIS = True" in own[tensor]
    run = autograde(book, activations, feedback=False, earlier="own")
    assert run.students["alice"].score == run.students["alice"].max_score
    assert run.students["bob"].score == 0  # his own module 01 breaks every check of 02
    run = autograde(book, activations, feedback=False)  # the reference module 01 instead
    assert run.students["bob"].score == run.students["bob"].max_score
