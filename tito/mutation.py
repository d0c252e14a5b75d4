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

import json
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


def quick_check(course: Course, module: Module, names: list[str] | None = None) -> int:
    """Run the dev file with each mutant applied (notebook-style, all cells); print which
    graded cells fail. A fast approximation for writing mutants; `tito mutants` grades them
    for real, in the sandbox."""
    from tito.notebooks import run_dev_file

    dev = course.dev_py(module)
    text = dev.read_text(encoding="utf-8")
    missed = 0
    for mutant in load_mutants(course, module):
        if names and mutant.name not in names:
            continue
        scratch = dev.with_name(f"_mutant_{dev.name}")
        scratch.write_text(apply_mutant(text, mutant), encoding="utf-8")
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
