"""Hidden tests: kept beside the course, out of the dev files, put back where grading needs them.

Every graded cell of a module has hidden tests (other shapes, non-zero biases, gradients
against central differences, ...). They do not live in the dev file: they would make the
lesson long, and they are not lesson. They live in `grading/hidden/NN_name.py`, one section
per graded cell:

    # %% grade_id: tensor-add-tests
    a = Tensor(...)
    assert ...

tito puts each section back at the end of the graded cell with the same grade_id, between
nbgrader's `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` markers, wherever the
instructor's full notebook is needed:

- the nbgrader source notebook `tito release` writes (course/source/NN_name/), from which
  nbgrader strips them again for the student release and restores them when autograding;
- `tito grade` and `tito mutants`, which read that source notebook;
- `tito test MODULE` in the course checkout (never in a student workspace, which has no
  `grading/` folder).

`check_sections` is the drift check: every section must name a graded cell of the module
(tests/test_grading_security.py runs it for every module).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from tito.course import Course, Module

HIDDEN_DIR = Path("grading", "hidden")
BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_SECTION = re.compile(r"^# %% grade_id: (\S+)[ \t]*$", re.MULTILINE)


class HiddenTestsError(ValueError):
    """A hidden-tests file that does not fit its module (unknown grade_id, repeated section)."""


def hidden_file(course: Course, module: Module) -> Path:
    """`grading/hidden/NN_name.py` of a course checkout."""
    return course.root / HIDDEN_DIR / f"{module.dirname}.py"


def parse_sections(text: str, where: str = "hidden tests") -> dict[str, str]:
    """{grade_id: code} of a hidden-tests file (the text before the first section is its header)."""
    parts = _SECTION.split(text)
    sections: dict[str, str] = {}
    for grade_id, code in zip(parts[1::2], parts[2::2]):
        if grade_id in sections:
            raise HiddenTestsError(f"{where}: grade_id {grade_id!r} has two sections")
        sections[grade_id] = code.strip("\n")
    return sections


def read_sections(course: Course, module: Module) -> dict[str, str]:
    """The hidden tests of `module` by grade_id ({} when the course has none for it)."""
    path = hidden_file(course, module)
    if not path.is_file():
        return {}
    return parse_sections(path.read_text(encoding="utf-8"), str(path.relative_to(course.root)))


def format_sections(module: Module, sections: dict[str, str]) -> str:
    """The text of a hidden-tests file holding `sections` (the inverse of `parse_sections`)."""
    head = (f"# Hidden tests of module {module.dirname}. tito puts each section back at the end of the\n"
            f"# graded cell with the same grade_id (see tito/hidden.py); students never get this file.\n")
    body = "".join(f"\n# %% grade_id: {grade_id}\n{code.strip(chr(10))}\n" for grade_id, code in sections.items())
    return head + body


def _graded_ids(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    cells = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution") and meta.get("grade_id"):
            cells[meta["grade_id"]] = cell
    return cells


def check_sections(sections: dict[str, str], nb: nbformat.NotebookNode, module: Module) -> None:
    """Raise HiddenTestsError unless every section names a graded test cell of `nb`."""
    graded = _graded_ids(nb)
    unknown = sorted(set(sections) - set(graded))
    if unknown:
        raise HiddenTestsError(
            f"grading/hidden/{module.dirname}.py has hidden tests for {', '.join(unknown)}, which "
            f"{'is not a graded cell' if len(unknown) == 1 else 'are not graded cells'} of {module.dirname} "
            f"(the graded cells are: {', '.join(graded) or 'none'})")


def with_hidden(nb: nbformat.NotebookNode, course: Course, module: Module) -> nbformat.NotebookNode:
    """A copy of `nb` with the module's hidden tests at the end of their graded cells."""
    sections = read_sections(course, module)
    if not sections:
        return nb
    check_sections(sections, nb, module)
    nb = copy.deepcopy(nb)
    for grade_id, cell in _graded_ids(nb).items():
        if grade_id in sections:
            cell.source = f"{cell.source.rstrip()}\n{BEGIN}\n{sections[grade_id]}\n{END}"
    return nb


def hidden_text(course: Course, module: Module) -> str:
    """The module's hidden tests between nbgrader's markers (for the leak checks)."""
    sections = read_sections(course, module)
    return "".join(f"{BEGIN}\n{code}\n{END}\n" for code in sections.values())
