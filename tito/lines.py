"""How lean the course is: line counts of every module's dev file (`tito status --lines`).

For one dev file (Jupytext percent format, `# %%` starts a cell):

* dev lines: every line of the file;
* exported lines: the code lines of `#| export` cells (what `tito export` puts into the
  package), not counting blank lines, comment-only lines (directives included) or
  nbgrader's marker lines (`### BEGIN/END SOLUTION`, `### BEGIN/END HIDDEN TESTS`);
* student lines: those exported lines that lie between `### BEGIN SOLUTION` and
  `### END SOLUTION`, i.e. what a student writes;
* raises: `raise` statements inside SOLUTION regions of any code cell (error handling a
  student would have to write), found with Python's tokenizer, so a "raise" in a string
  or a comment does not count.

    >>> counts = count_text(path.read_text())       # Counts(dev_lines, exported, student, raises)
    >>> rows = measure(course)                       # one ModuleLines per existing module
    >>> print(render(rows)); data = to_json(rows)

The targets of the course are below; `ModuleLines.misses` names the ones a module misses.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from tito.course import MODULES, Course, Module

#: The core modules: every student builds these (the rest are optional deep dives).
CORE_MODULES: frozenset[int] = frozenset([*range(1, 12), 16])
#: Core modules: students write at least this share of the exported lines ...
MIN_STUDENT_SHARE = 0.35
#: ... and the dev file has at most this many lines.
MAX_DEV_LINES = 1000
#: Every module: at most this many `raise` statements inside SOLUTION regions.
MAX_SOLUTION_RAISES = 0

_CELL_START = re.compile(r"^# %%(.*)$")
_TEXT_CELL = re.compile(r"^\s*\[(?:markdown|md|raw)\]")
_EXPORT = re.compile(r"^#\|\s*export[is]?\s*$")
_MARKER = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")


@dataclass(frozen=True)
class Counts:
    """The line counts of one dev file (or the sum of several)."""

    dev_lines: int
    exported: int
    student: int
    raises: int

    @property
    def student_share(self) -> float | None:
        """student / exported, or None when nothing is exported."""
        return self.student / self.exported if self.exported else None

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.dev_lines + other.dev_lines, self.exported + other.exported,
                      self.student + other.student, self.raises + other.raises)


def _code_cells(text: str) -> list[list[str]]:
    """The lines of every code cell (without its `# %%` line); markdown and raw cells and
    the header before the first cell are left out."""
    cells: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        start = _CELL_START.match(line)
        if start:
            current = None if _TEXT_CELL.match(start.group(1)) else []
            if current is not None:
                cells.append(current)
        elif current is not None:
            current.append(line)
    return cells


def _is_exported(cell: list[str]) -> bool:
    """Whether the cell's leading comments hold an nbdev `#| export` (or exporti/exports)."""
    for line in cell:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return False
        if _EXPORT.match(stripped):
            return True
    return False


def _raise_lines(cell: list[str]) -> list[int]:
    """0-based indices of the cell's lines where a `raise` statement starts."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO("\n".join(cell) + "\n").readline))
    except (tokenize.TokenError, SyntaxError):          # not valid Python: look at line starts
        return [i for i, line in enumerate(cell) if re.match(r"\s*raise\b", line)]
    return [t.start[0] - 1 for t in tokens if t.type == tokenize.NAME and t.string == "raise"]


def count_text(text: str) -> Counts:
    """The counts of one dev file's text."""
    exported = student = raises = 0
    for cell in _code_cells(text):
        export = _is_exported(cell)
        raise_at = set(_raise_lines(cell))
        in_solution = False
        for i, line in enumerate(cell):
            marker = _MARKER.match(line)
            if marker:
                if marker.group(2) == "SOLUTION":
                    in_solution = marker.group(1) == "BEGIN"
                continue
            if in_solution and i in raise_at:
                raises += 1
            stripped = line.strip()
            if export and stripped and not stripped.startswith("#"):
                exported += 1
                student += in_solution
    return Counts(len(text.splitlines()), exported, student, raises)


def count_file(path: Path) -> Counts:
    return count_text(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ModuleLines:
    """One module's counts and the targets it misses."""

    module: Module
    counts: Counts

    @property
    def core(self) -> bool:
        return self.module.number in CORE_MODULES

    @property
    def misses(self) -> list[str]:
        """The targets this module misses, in words (empty: none)."""
        c, missed = self.counts, []
        if self.core:
            share = c.student_share
            if share is None or share < MIN_STUDENT_SHARE:
                missed.append(f"students < {MIN_STUDENT_SHARE:.0%}")
            if c.dev_lines > MAX_DEV_LINES:
                missed.append(f"dev file > {MAX_DEV_LINES:,}")
        if c.raises > MAX_SOLUTION_RAISES:
            missed.append("raise in solutions")
        return missed


def measure(course: Course) -> list[ModuleLines]:
    """The counts of every module of the course whose dev file exists, in course order."""
    return [ModuleLines(m, count_file(course.dev_py(m))) for m in MODULES if course.exists(m)]


def total(rows: list[ModuleLines]) -> Counts:
    return sum((r.counts for r in rows), Counts(0, 0, 0, 0))


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def render(rows: list[ModuleLines]) -> str:
    """The table: one row per module, a total row, the targets; missed targets marked MISS."""
    header = ("module", "core", "dev lines", "exported", "students", "share", "raises", "targets")
    table = [header]
    for r in rows:
        c = r.counts
        verdict = ("MISS: " + ", ".join(r.misses)) if r.misses else "ok"
        table.append((r.module.dirname, "yes" if r.core else "-", f"{c.dev_lines:,}", f"{c.exported:,}",
                      f"{c.student:,}", _percent(c.student_share), str(c.raises), verdict))
    t = total(rows)
    table.append(("total", "", f"{t.dev_lines:,}", f"{t.exported:,}", f"{t.student:,}",
                  _percent(t.student_share), str(t.raises), f"{sum(bool(r.misses) for r in rows)} module(s) miss"))
    numeric = {2, 3, 4, 5, 6}
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n\n" + (
        f"exported: code lines of `#| export` cells (no blank, comment or ### marker lines); students: those inside "
        f"SOLUTION regions;\nraises: `raise` statements inside SOLUTION regions. Targets: core modules "
        f"({', '.join(f'{n:02d}' for n in sorted(CORE_MODULES))}) students >= {MIN_STUDENT_SHARE:.0%} and "
        f"dev file <= {MAX_DEV_LINES:,} lines; every module {MAX_SOLUTION_RAISES} raises.")


def _counts_json(c: Counts) -> dict:
    share = c.student_share
    return {"dev_lines": c.dev_lines, "exported_lines": c.exported, "student_lines": c.student,
            "student_percent": None if share is None else round(100 * share, 1), "solution_raises": c.raises}


def to_json(rows: list[ModuleLines]) -> dict:
    """The same as `render`, as JSON-ready data."""
    return {
        "targets": {"core_modules": [m.dirname for m in MODULES if m.number in CORE_MODULES],
                    "min_student_percent": 100 * MIN_STUDENT_SHARE, "max_dev_lines": MAX_DEV_LINES,
                    "max_solution_raises": MAX_SOLUTION_RAISES},
        "modules": [{"module": r.module.dirname, "core": r.core, **_counts_json(r.counts), "misses": r.misses}
                    for r in rows],
        "total": {**_counts_json(total(rows)), "modules_missing_targets": sum(bool(r.misses) for r in rows)},
    }
