"""`tito status --lines` (tito/lines.py): the line counts of dev files, on small synthetic
dev files with counts worked out by hand, and once on the real course."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tito import lines
from tito.cli import main
from tito.course import MODULES, Course, resolve_module

REPO = Path(__file__).resolve().parent.parent

# 42 lines. Exported cells: the 2nd and 4th code cells. Their code lines (E = exported,
# S = also inside SOLUTION) are marked on the right; R marks raises inside SOLUTION regions.
DEV = '''\
# ---
# jupyter:
#   jupytext: {}
# ---

# %% [markdown]
# # A module
# raise ValueError("markdown is not code")

# %%
#| default_exp core.thing

# %% nbgrader={"grade": false, "grade_id": "thing", "locked": false, "schema_version": 3, "solution": true}
#| export
import numpy as np                                      # E


def thing(x):                                           # E
    """Double x."""                                     # E
    if x is None:                                       # E
        raise ValueError("x is None")                   # E (outside SOLUTION: not counted as R)
    ### BEGIN SOLUTION
    # a comment inside the solution
    if np.ndim(x) > 2:                                  # E S

        raise TypeError("too many dimensions")          # E S R
    return 2 * x                                        # E S
    ### END SOLUTION

# %% nbgrader={"grade": false, "grade_id": "exercise", "locked": false, "schema_version": 3, "solution": true}
def helper():
    ### BEGIN SOLUTION
    raise NotImplementedError                           # R (a cell that is not exported)
    ### END SOLUTION

# %%
# | not a directive (a space after the #), but a comment before the real one
#| export
y = "raise in a string"                                 # E
### BEGIN HIDDEN TESTS
assert y                                                # E
### END HIDDEN TESTS
'''


def test_count_text_on_a_synthetic_dev_file() -> None:
    counts = lines.count_text(DEV)
    assert counts == lines.Counts(dev_lines=42, exported=10, student=3, raises=2)
    assert counts.student_share == pytest.approx(0.3)


def test_markers_blank_and_comment_lines_are_not_code() -> None:
    text = ("# %%\n#| export\n\n# comment\n    # indented comment\n### BEGIN SOLUTION\n"
            "   ### END SOLUTION\nx = 1\n")
    assert lines.count_text(text) == lines.Counts(dev_lines=8, exported=1, student=0, raises=0)


def test_solution_region_outside_an_export_cell_is_not_exported() -> None:
    text = "# %%\n### BEGIN SOLUTION\nx = 1\ny = 2\n### END SOLUTION\n"
    assert lines.count_text(text) == lines.Counts(dev_lines=5, exported=0, student=0, raises=0)
    assert lines.count_text(text).student_share is None


def test_raises_count_statements_not_words() -> None:
    text = '''\
# %%
#| export
def f(x):
    ### BEGIN SOLUTION
    """Docstring:
    raise nothing here."""
    if x: raise ValueError("one")   # raise in a comment
    msg = "raise"
    raise TypeError(msg)
    ### END SOLUTION
    raise RuntimeError("after the solution")
'''
    counts = lines.count_text(text)
    assert counts.raises == 2
    assert (counts.exported, counts.student) == (7, 5)


def test_raises_in_unparsable_cells_are_found_at_line_starts() -> None:
    text = "# %%\n### BEGIN SOLUTION\n    raise ValueError(\n### END SOLUTION\n"
    assert lines.count_text(text).raises == 1


def test_export_variants_and_markdown_cells() -> None:
    text = ("# %% [markdown]\n#| export\n# x = 1\n"
            "# %% [raw]\n#| export\nnot python\n"
            "# %%\n#|export\na = 1\n"
            "# %%\n#| exporti\nb = 1\n"
            "# %%\nc = 1\n#| export\n")
    assert lines.count_text(text).exported == 2   # `a` and `b`; the directive after `c = 1` is only a comment


def _row(number: int, **counts: int) -> lines.ModuleLines:
    return lines.ModuleLines(MODULES[number - 1], lines.Counts(**counts))


def test_targets_and_their_markers() -> None:
    good = _row(1, dev_lines=1000, exported=100, student=35, raises=0)
    assert good.core and good.misses == []
    bad = _row(5, dev_lines=1001, exported=100, student=34, raises=1)
    assert len(bad.misses) == 3
    nothing_exported = _row(16, dev_lines=10, exported=0, student=0, raises=0)
    assert nothing_exported.misses == [f"students < {lines.MIN_STUDENT_SHARE:.0%}"]
    optional = _row(12, dev_lines=5000, exported=100, student=0, raises=0)
    assert not optional.core and optional.misses == []
    assert _row(12, dev_lines=5, exported=1, student=1, raises=2).misses == ["raise in solutions"]

    rows = [good, bad, optional]
    table = lines.render(rows)
    by_module = {line.split()[0]: line for line in table.splitlines() if line.split()}
    assert by_module["01_tensor"].endswith("ok")
    assert "MISS:" in by_module["05_autograd"] and "MISS" not in by_module["12_compression"]
    assert by_module["total"].split()[1:6] == ["7,001", "300", "69", "23.0%", "1"]

    data = lines.to_json(rows)
    assert [m["module"] for m in data["modules"]] == ["01_tensor", "05_autograd", "12_compression"]
    assert data["modules"][1] == {"module": "05_autograd", "core": True, "dev_lines": 1001, "exported_lines": 100,
                                  "student_lines": 34, "student_percent": 34.0, "solution_raises": 1,
                                  "misses": bad.misses}
    assert data["total"] == {"dev_lines": 7001, "exported_lines": 300, "student_lines": 69, "student_percent": 23.0,
                             "solution_raises": 1, "modules_missing_targets": 1}


def test_measure_on_a_course_with_one_module(tmp_path: Path) -> None:
    module = resolve_module("04_losses")
    dev = Course(tmp_path).dev_py(module)
    dev.parent.mkdir(parents=True)
    dev.write_text(DEV, encoding="utf-8")
    (rows,) = lines.measure(Course(tmp_path))
    assert rows.module == module and rows.counts == lines.count_text(DEV)


def test_the_real_course(capsys) -> None:
    rows = lines.measure(Course(REPO))
    assert [r.module for r in rows] == list(MODULES)
    assert len(rows) == 16
    for r in rows:
        c = r.counts
        assert c.dev_lines == len(Course(REPO).dev_py(r.module).read_text(encoding="utf-8").splitlines())
        assert 0 < c.student < c.exported < c.dev_lines, r
        assert 0 <= c.raises <= c.student, r
    assert main(["--root", str(REPO), "status", "--lines", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["module"] for m in data["modules"]] == [m.dirname for m in MODULES]
    assert data["total"]["dev_lines"] == sum(r.counts.dev_lines for r in rows)
    assert main(["--root", str(REPO), "status", "--lines"]) == 0
    table = capsys.readouterr().out
    assert all(m.dirname in table for m in MODULES) and "total" in table
    assert main(["--root", str(REPO), "status", "--json"]) == 2
