"""Mutants: subtly wrong solutions that the graded checks of a module must catch.

Each module lists its mutants in `grading/mutants/NN_name.json`:

    {"mutants": [
        {"name": "relu-keeps-negatives",
         "cell": "relu",                      # grade_id of the solution cell to change
         "find": "return np.maximum(x, 0)",   # text inside that cell's SOLUTION region(s)
         "replace": "return x",
         "why": "ReLU passes negative inputs through"}
    ]}

A mutant is one small bug a student could really make (a missing bias, a wrong sign in a
gradient, a softmax along the wrong axis, an off-by-one in a loop bound). `find` must occur
exactly once in the solution regions of cell `cell` of the dev file; the mutant is the dev
file with that one occurrence replaced. The mutation sweep (`tito mutants`) grades the
solved submission built from each mutant and expects it to lose points.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from tito.course import Course, Module

MUTANTS_DIR = Path("grading") / "mutants"


class MutantError(ValueError):
    """A mutant that cannot be applied (its text is missing, repeated or outside a solution)."""


@dataclass(frozen=True)
class Mutant:
    name: str
    cell: str
    find: str
    replace: str
    why: str = ""


def mutants_file(course: Course, module: Module) -> Path:
    return course.root / MUTANTS_DIR / f"{module.dirname}.json"


def load_mutants(course: Course, module: Module) -> list[Mutant]:
    """The module's mutants (an empty list when it has no mutants file)."""
    path = mutants_file(course, module)
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    mutants = [Mutant(**entry) for entry in data["mutants"]]
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise MutantError(f"{path}: mutant names must be unique")
    return mutants


def _cell_spans(dev_text: str) -> dict[str, tuple[int, int]]:
    """grade_id -> (start, end) character offsets of each nbgrader cell in a percent file."""
    spans: dict[str, tuple[int, int]] = {}
    starts = []
    offset = 0
    for line in dev_text.splitlines(keepends=True):
        if line.startswith("# %%"):
            starts.append((offset, line))
        offset += len(line)
    for i, (start, header) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(dev_text)
        if "nbgrader=" in header:
            meta = json.loads(header.split("nbgrader=", 1)[1].strip())
            spans[meta["grade_id"]] = (start, end)
    return spans


def _solution_regions(cell_text: str) -> list[tuple[int, int]]:
    regions, begin, offset = [], None, 0
    for line in cell_text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("### BEGIN SOLUTION"):
            begin = offset + len(line)
        elif stripped.startswith("### END SOLUTION") and begin is not None:
            regions.append((begin, offset))
            begin = None
        offset += len(line)
    return regions


def apply_mutant(dev_text: str, mutant: Mutant) -> str:
    """The dev file's text with the mutant's one change made inside a solution region."""
    spans = _cell_spans(dev_text)
    if mutant.cell not in spans:
        raise MutantError(f"mutant {mutant.name}: no cell with grade_id {mutant.cell!r}")
    start, end = spans[mutant.cell]
    cell = dev_text[start:end]
    hits = [(a, b) for a, b in _solution_regions(cell) for _ in range(cell[a:b].count(mutant.find))]
    if len(hits) != 1:
        raise MutantError(f"mutant {mutant.name}: {mutant.find!r} occurs {len(hits)} times in the "
                          f"solution regions of cell {mutant.cell!r} (it must occur exactly once)")
    a, b = hits[0]
    region = cell[a:b].replace(mutant.find, mutant.replace, 1)
    if region == cell[a:b]:
        raise MutantError(f"mutant {mutant.name}: the replacement changes nothing")
    return dev_text[:start] + cell[:a] + region + cell[b:] + dev_text[end:]


# ------------------------------------------------------------------ submissions to grade

def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _solution_ids(nb) -> list[str]:
    return [_meta(c)["grade_id"] for c in nb.cells if c.cell_type == "code" and _meta(c).get("solution")]


def filled(released, dev_text: str, module: Module):
    """The release with every solution cell answered as in `dev_text` (a dev file's text)."""
    import jupytext

    from tito.exporting import MARKER_LINE

    answers = {_meta(c)["grade_id"]: MARKER_LINE.sub("", c.source)
               for c in jupytext.reads(dev_text, fmt="py:percent").cells
               if c.cell_type == "code" and _meta(c).get("solution")}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        if cell.cell_type == "code" and _meta(cell).get("solution"):
            cell.source = answers[_meta(cell)["grade_id"]]
    return nb


def _prefix_solution(nb, code: str, which: int = 0):
    nb = copy.deepcopy(nb)
    cell = [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("solution")][which]
    cell.source = code + "\n" + cell.source
    return nb


def _graded(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("grade")]


@dataclass
class Submission:
    """One submission of the sweep and what its score may be, check by check.

    `expect`: "full" (every point), "zero" (no point), "loses" (fewer points than full), or
    "at-most:<name>" (no check passes that fails for submission <name>: tampering cannot
    win points)."""

    name: str
    notebook: object
    expect: str
    why: str


def hostile_code(course: Course, module: Module) -> dict[str, tuple[str, str]]:
    """name -> (code put at the top of the first solution cell, what it tries)."""
    root = str(course.root.resolve())
    reference = module.import_name
    return {
        "import-reference": (
            f"import sys\nsys.path[:0] = [{root!r}, {str(course.lib_dir)!r}]\n"
            f"try:\n    from {reference} import *\nexcept Exception:\n    pass\n"
            f"try:\n    import importlib.util as _u\n"
            f"    _s = _u.spec_from_file_location('_ref', {str(course.generated_file(module))!r})\n"
            f"    _m = _u.module_from_spec(_s); _s.loader.exec_module(_m); globals().update(vars(_m))\n"
            f"except Exception:\n    pass\n",
            "imports the instructor's module from the course checkout"),
        "read-solutions": (
            f"import glob\nfor _p in glob.glob({root!r} + '/**/*_dev.py', recursive=True)[:3]:\n"
            f"    print(open(_p).read()[:2000])\n",
            "prints the instructor's dev files (solutions) into its output"),
        "input-transformer": (
            "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
            "turns every later cell, the tests included, into `pass`"),
        "patch-numpy": (
            "import numpy as _np, builtins as _b\n"
            "for _n in ('allclose', 'array_equal', 'array_equiv'):\n    setattr(_np, _n, lambda *a, **k: True)\n"
            "_np.isclose = lambda a, b, *r, **k: _np.ones(_np.broadcast(_np.asarray(a), _np.asarray(b)).shape, bool)\n"
            "_np.testing.assert_allclose = lambda *a, **k: None\n"
            "_np._core.numeric.isclose = _np.isclose\n",
            "makes numpy's comparisons always succeed"),
        "patch-code-objects": (
            "import numpy as _np\n_np.allclose._implementation.__code__ = (lambda *a, **k: True).__code__\n",
            "rewrites the code of numpy.allclose in place"),
        "sys-exit": ("raise SystemExit(0)", "exits the interpreter"),
        "os-exit": ("import os\nos._exit(0)", "ends the process without cleaning up"),
        "kill-self": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "kills its own kernel"),
        "infinite-loop": ("while True:\n    pass", "never returns"),
        "trace-skip": (
            "import sys\ndef _skip(frame, event, arg):\n"
            "    if frame.f_code.co_filename.startswith('<cell test'):\n        raise SystemExit\n"
            "    return None\nsys.settrace(_skip)\n",
            "installs a trace function that aborts test cells"),
    }


def sweep_submissions(course: Course, module: Module, released, mutants: list[Mutant] | None = None) -> list[Submission]:
    """Every submission of the sweep for `module`, built from its release and dev file."""
    dev_text = course.dev_py(module).read_text(encoding="utf-8")
    perfect = filled(released, dev_text, module)
    subs = [Submission("perfect", perfect, "full", "the reference solution"),
            Submission("blank", copy.deepcopy(released), "zero", "the release, untouched")]
    stderr = _prefix_solution(perfect, "import sys, warnings\nprint('debug output', file=sys.stderr)\n"
                                       "warnings.warn('a RuntimeWarning', RuntimeWarning)")
    subs.append(Submission("stderr-and-warnings", stderr, "full", "correct, but writes to stderr and warns"))
    mutants = load_mutants(course, module) if mutants is None else mutants
    for mutant in mutants:
        subs.append(Submission(f"mutant-{mutant.name}", filled(released, apply_mutant(dev_text, mutant), module),
                               "loses", mutant.why or "a subtle bug"))
    for name, (code, why) in hostile_code(course, module).items():
        subs.append(Submission(f"hostile-{name}", _prefix_solution(released, code), "zero", why))
    if mutants:  # tampering on top of wrong code must not win back what the bug lost
        base = f"mutant-{mutants[0].name}"
        wrong = next(s.notebook for s in subs if s.name == base)
        for name in ("patch-numpy", "patch-code-objects", "input-transformer", "trace-skip"):
            code, why = hostile_code(course, module)[name]
            subs.append(Submission(f"hostile-{name}+{mutants[0].name}", _prefix_solution(wrong, code),
                                   f"at-most:{base}", f"{why}, on top of {base}"))
    blank = copy.deepcopy(released)
    for cell in _graded(blank):
        cell.source = "pass"
    subs.append(Submission("hostile-edited-tests", blank, "zero", "replaces every test cell by `pass`"))
    blank = copy.deepcopy(released)
    blank.cells = [c for c in blank.cells if c not in _graded(blank)]
    subs.append(Submission("hostile-deleted-tests", blank, "zero", "deletes every test cell"))
    blank = copy.deepcopy(released)
    for cell in _graded(blank):
        cell.metadata["nbgrader"]["points"] = 1000
        cell.metadata["nbgrader"]["grade"] = False
        cell.metadata["nbgrader"]["solution"] = True
    subs.append(Submission("hostile-changed-metadata", blank, "zero", "changes the points and kind of test cells"))
    return subs


def judge(subs: list[Submission], cells: dict[str, dict[str, float]], max_score: float) -> dict[str, str]:
    """name -> "" when the submission scored as expected, else what went wrong.
    `cells`: name -> grade_id -> points earned."""
    problems = {}
    for sub in subs:
        earned = cells[sub.name]
        score = sum(earned.values())
        problem = ""
        if sub.expect == "full" and score != max_score:
            problem = f"expected full marks ({max_score:g}), got {score:g}"
        elif sub.expect == "zero" and score != 0:
            won = ", ".join(k for k, v in earned.items() if v)
            problem = f"expected 0, got {score:g} ({won})"
        elif sub.expect == "loses" and score >= max_score:
            problem = "the bug was not caught: full marks"
        elif sub.expect.startswith("at-most:"):
            base = cells[sub.expect.split(":", 1)[1]]
            won = [k for k, v in earned.items() if v > base.get(k, 0)]
            if won:
                problem = f"won points its base lost: {', '.join(won)}"
        problems[sub.name] = problem
    return problems


@dataclass
class ModuleSweep:
    """How one module's graded checks stood up to the sweep."""

    module: Module
    max_score: float
    results: list[dict]  # one per submission: name, expect, why, score, seconds, problem
    seconds: float

    def count(self, prefix: str) -> tuple[int, int]:
        """(submissions named `prefix`... that scored as expected, how many there are)."""
        rows = [r for r in self.results if r["name"].startswith(prefix)]
        return sum(not r["problem"] for r in rows), len(rows)

    @property
    def ok(self) -> bool:
        return not any(r["problem"] for r in self.results)


def student_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


#: Submissions that never return: graded with a short time limit of their own, so that the
#: sweep does not wait out the generous limits the others get.
HANGING = ("hostile-infinite-loop",)


def sweep_module(course: Course, module: Module, work: Path, cell_timeout: int = 120,
                 notebook_timeout: int = 600, sandbox: bool = True, hang_timeout: int = 5) -> ModuleSweep:
    """Release `module` into a scratch nbgrader course under `work`, grade every sweep
    submission with `tito grade`'s machinery (no feedback), and judge the scores."""
    import nbformat

    from tito.grading import autograde, collect_submissions, gradebook, release

    started = time.perf_counter()
    book = gradebook(course, course_dir=work / "course", cell_timeout=cell_timeout,
                     notebook_timeout=notebook_timeout, sandbox=sandbox)
    released = nbformat.read(release(book, [module])[0].notebook, as_version=4)
    subs = sweep_submissions(course, module, released)
    folder = work / "submissions"
    for sub in subs:
        path = folder / student_id(sub.name) / module.dirname / f"{module.dev_stem}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(sub.notebook, path)
    collect_submissions(book, module, folder)
    hanging = [student_id(s.name) for s in subs if s.name in HANGING]
    run = autograde(book, module, feedback=False, students=[student_id(s.name) for s in subs if s.name not in HANGING])
    quick = gradebook(course, course_dir=work / "course", cell_timeout=hang_timeout,
                      notebook_timeout=hang_timeout, sandbox=sandbox)
    run.students.update(autograde(quick, module, feedback=False, students=hanging).students)
    cells = {sub.name: run.students[student_id(sub.name)].cells for sub in subs}
    problems = judge(subs, cells, sum(run.cell_points.values()))
    results = []
    for sub in subs:
        grade = run.students[student_id(sub.name)]
        results.append({"name": sub.name, "expect": sub.expect, "why": sub.why, "score": grade.score,
                        "seconds": round(grade.seconds, 2), "problem": problems[sub.name],
                        "review": grade.review,
                        "failed": {v.name: v.error for v in grade.verdicts if not v.ok}})
    return ModuleSweep(module, sum(run.cell_points.values()), results, time.perf_counter() - started)


def sweep_table(sweeps: list[ModuleSweep]) -> str:
    """The sweep as a Markdown table, one row per module."""
    lines = ["| module | points | perfect | blank | mutants caught | hostile at 0 (or at most their base) | "
             "correct + stderr | s per submission |",
             "|---|---|---|---|---|---|---|---|"]
    for sw in sweeps:
        by = {r["name"]: r for r in sw.results}
        caught, mutants = sw.count("mutant-")
        hostile_ok, hostile = sw.count("hostile-")
        per = sum(r["seconds"] for r in sw.results) / len(sw.results)
        lines.append(f"| {sw.module.dirname} | {sw.max_score:g} | {by['perfect']['score']:g} | {by['blank']['score']:g} "
                     f"| {caught}/{mutants} | {hostile_ok}/{hostile} | {by['stderr-and-warnings']['score']:g} | {per:.2f} |")
    return "\n".join(lines) + "\n"


def quick_check(course: Course, module: Module, names: list[str] | None = None) -> int:
    """Run the dev file with each mutant applied and its hidden tests put back (notebook-style,
    all cells); print which graded cells fail. A fast approximation for writing mutants; `tito mutants` grades them
    for real, in the sandbox."""
    import jupytext

    from tito.hidden import with_hidden
    from tito.notebooks import run_dev_file
    from tito.pairing import PY_FORMAT, read_py

    dev = course.dev_py(module)
    text = dev.read_text(encoding="utf-8")
    missed = 0
    for mutant in load_mutants(course, module):
        if names and mutant.name not in names:
            continue
        scratch = dev.with_name(f"_mutant_{dev.name}")
        scratch.write_text(apply_mutant(text, mutant), encoding="utf-8")
        full = with_hidden(read_py(scratch), course, module)  # graded cells with their hidden tests
        scratch.write_text(jupytext.writes(full, fmt=PY_FORMAT), encoding="utf-8")
        try:
            result = run_dev_file(scratch, course.root, timeout=300, all_cells=True)
        finally:
            scratch.unlink()
        failed = [c for c in result.cells if c.points is not None and not c.ok]
        status = "caught" if failed else "MISSED"
        missed += not failed
        print(f"{status} {mutant.name}: " + (", ".join(f"{c.name} ({c.error[:80]})" for c in failed) or "every graded cell passes"),
              flush=True)
    return 1 if missed else 0


if __name__ == "__main__":  # python -m tito.mutation MODULE [NAME ...]
    import sys

    from tito.course import default_root, resolve_module

    sys.exit(quick_check(Course(default_root()), resolve_module(sys.argv[1]), sys.argv[2:] or None))
