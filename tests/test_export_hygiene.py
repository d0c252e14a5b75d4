"""`tito export` is idempotent, and a notebook that Jupyter saved without an edit passes the check.

Two reported problems, reproduced here on temporary courses (the fake course of test_tito and a
copy of the real one):

1. a cell of the `.ipynb` whose source ends with a newline: the first export wrote it to the
   `.ipynb` as it was, the second replaced it with what the `.py` can hold, so `tito export
   --check` failed between the two;
2. a notebook opened and saved in JupyterLab without an edit (`language_info`, kernelspec,
   cell ids, execution counts, outputs, nbformat_minor, view metadata) failed the check.

A JupyterLab save is simulated as JupyterLab does it: load the `.ipynb` with nbformat, add what
JupyterLab adds, write it back with nbformat's default indent (the file becomes the newest).
"""

from __future__ import annotations

import copy
import io
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from test_tito import course, exported, paths, snapshot, touch_later  # noqa: F401 (fixtures)
from tito.checking import find_changes
from tito.course import LIB_NAME, Course, resolve_module
from tito.exporting import export
from tito.pairing import notebook_content, pair_differences, read_ipynb, read_py

REPO = Path(__file__).resolve().parent.parent
TENSOR = resolve_module("01")

LANGUAGE_INFO = {
    "name": "python",
    "version": "3.11.7",
    "mimetype": "text/x-python",
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}


def jupyterlab_save(path: Path, *edits: Callable[[nbformat.NotebookNode], None]) -> None:
    """Load `path` as Jupyter does, apply `edits`, and write it back as Jupyter does."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    for edit in edits:
        edit(nb)
    nbformat.write(nb, path)  # nbformat's default indent, like the Jupyter server
    touch_later(path)  # saved after the .py was written


# --------------------------------------------------------- what JupyterLab adds on a save


def add_language_info(nb) -> None:
    nb.metadata["language_info"] = copy.deepcopy(LANGUAGE_INFO)


def other_kernelspec(nb) -> None:
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}


def venv_kernelspec(nb) -> None:
    nb.metadata["kernelspec"] = {"display_name": "tinytorch (.venv)", "language": "python", "name": "tinytorch-venv"}


def new_cell_ids(nb) -> None:
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{index:04d}-a1b2c3d4"


def nbformat_minor_4(nb) -> None:
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id", None)


def executed(nb) -> None:
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"run {count}\n")]
        cell.metadata["execution"] = {
            "iopub.execute_input": "2024-05-01T10:00:00.000000Z",
            "shell.execute_reply": "2024-05-01T10:00:00.100000Z",
        }


def view_metadata(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.metadata.update({"collapsed": False, "scrolled": True, "trusted": True})


def jupytext_metadata(nb) -> None:
    nb.metadata["jupytext"] = {
        "formats": "ipynb,py:percent",
        "text_representation": {
            "extension": ".py",
            "format_name": "percent",
            "format_version": "1.3",
            "jupytext_version": "1.16.1",
        },
    }


JUPYTERLAB_EDITS = {
    "language_info": add_language_info,
    "kernelspec": other_kernelspec,
    "venv kernelspec": venv_kernelspec,
    "executed": executed,
    "view metadata": view_metadata,
    "jupytext metadata": jupytext_metadata,
}
ALL_JUPYTERLAB_EDITS = tuple(JUPYTERLAB_EDITS.values())

#: Edits of the cell ids: they reach the package (nbdev's cell markers), so the check reports
#: the generated file until the next export; that export must be a fixed point.
ID_EDITS = {"cell ids": new_cell_ids, "nbformat_minor 4": nbformat_minor_4}


def trailing_newline(index: int) -> Callable[[nbformat.NotebookNode], None]:
    """An edit made outside Jupyter: cell `index`'s source now ends with a newline."""

    def edit(nb) -> None:
        cell = nb.cells[index]
        cell.source = ("".join(cell.source) if isinstance(cell.source, list) else cell.source) + "\n"

    return edit


def all_trailing_newlines(nb) -> None:
    for index in range(len(nb.cells)):
        trailing_newline(index)(nb)


def assert_export_is_a_fixed_point(course: Course) -> None:
    """Export once: then the check is clean, and exporting again changes no byte."""
    export(course, course.existing_modules())
    assert find_changes(course) == []
    first = snapshot(course.root)
    export(course, course.existing_modules())
    assert snapshot(course.root) == first, "a second export changed files the first one wrote"


# ------------------------------------------------------------- problem 1: trailing newlines


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])  # markdown, default_exp, solution, test, last
def test_trailing_newline_in_a_cell_is_exported_idempotently(exported: Course, index: int) -> None:
    ipynb = exported.dev_ipynb(TENSOR)
    jupyterlab_save(ipynb, trailing_newline(index))
    assert_export_is_a_fixed_point(exported)


def test_trailing_newlines_in_every_cell_with_jupyterlab_metadata(exported: Course) -> None:
    jupyterlab_save(exported.dev_ipynb(TENSOR), all_trailing_newlines, *ALL_JUPYTERLAB_EDITS, *ID_EDITS.values())
    assert_export_is_a_fixed_point(exported)


def test_trailing_newline_when_the_py_is_newer(exported: Course) -> None:
    """The `.py` wins (it is newer): the `.ipynb` is rewritten from it, once."""
    ipynb, py = exported.dev_ipynb(TENSOR), exported.dev_py(TENSOR)
    jupyterlab_save(ipynb, all_trailing_newlines)
    touch_later(py, seconds=60)
    before = py.read_text(encoding="utf-8")
    assert_export_is_a_fixed_point(exported)
    assert py.read_text(encoding="utf-8") == before
    assert [c.source for c in read_ipynb(ipynb).cells] == [c.source for c in read_py(py).cells]


def test_trailing_newline_is_reported_until_exported(exported: Course) -> None:
    """It is an edit of a cell's source (the `.py` gains a blank line): the check says so."""
    jupyterlab_save(exported.dev_ipynb(TENSOR), trailing_newline(3))
    assert "modules/01_tensor/tensor_dev.ipynb" in paths(find_changes(exported))


# ------------------------------------------------------ problem 2: a JupyterLab save, no edit


@pytest.mark.parametrize("edit", JUPYTERLAB_EDITS.values(), ids=JUPYTERLAB_EDITS.keys())
def test_jupyterlab_save_without_edit_passes_the_check(exported: Course, edit) -> None:
    before = snapshot(exported.root)
    jupyterlab_save(exported.dev_ipynb(TENSOR), edit)
    assert snapshot(exported.root) != before  # the file really changed on disk
    assert pair_differences(exported.dev_py(TENSOR), exported.dev_ipynb(TENSOR)) == []
    assert find_changes(exported) == []
    saved = snapshot(exported.root)
    export(exported, exported.existing_modules())
    assert snapshot(exported.root) == saved, "exporting rewrote a notebook Jupyter saved without an edit"


@pytest.mark.parametrize("edit", ID_EDITS.values(), ids=ID_EDITS.keys())
def test_changed_cell_ids_export_idempotently(exported: Course, edit) -> None:
    ipynb = exported.dev_ipynb(TENSOR)
    jupyterlab_save(ipynb, edit, *ALL_JUPYTERLAB_EDITS)
    assert pair_differences(exported.dev_py(TENSOR), ipynb) == []
    assert_export_is_a_fixed_point(exported)
    assert all(cell.get("id") for cell in read_ipynb(ipynb).cells)


def test_jupyterlab_save_with_everything_passes_the_check(exported: Course) -> None:
    for module in exported.existing_modules():
        jupyterlab_save(exported.dev_ipynb(module), *ALL_JUPYTERLAB_EDITS)
    assert find_changes(exported) == []
    assert_export_is_a_fixed_point(exported)


def test_notebook_content_ignores_only_what_jupyter_adds(exported: Course) -> None:
    ipynb = exported.dev_ipynb(TENSOR)
    plain = notebook_content(read_ipynb(ipynb))
    jupyterlab_save(ipynb, *ALL_JUPYTERLAB_EDITS)
    assert notebook_content(read_ipynb(ipynb)) == plain
    jupyterlab_save(ipynb, trailing_newline(1))
    assert notebook_content(read_ipynb(ipynb)) != plain


# ---------------------------------------------- real edits are still reported after such a save


def edit_source(nb) -> None:
    nb.cells[2].source = nb.cells[2].source.replace("Wraps an array.", "Wraps a numpy array.")


def edit_type(nb) -> None:
    nb.cells[0].cell_type = "raw"


def swap_cells(nb) -> None:
    nb.cells[3], nb.cells[4] = nb.cells[4], nb.cells[3]


def delete_cell(nb) -> None:
    del nb.cells[3]


def edit_nbgrader(nb) -> None:
    nb.cells[3].metadata["nbgrader"]["points"] = 5


def edit_tags(nb) -> None:
    nb.cells[1].metadata["tags"] = ["exercise"]


REAL_EDITS = {
    "source": edit_source,
    "cell type": edit_type,
    "order": swap_cells,
    "deleted cell": delete_cell,
    "nbgrader": edit_nbgrader,
}


@pytest.mark.parametrize("edit", REAL_EDITS.values(), ids=REAL_EDITS.keys())
def test_real_edit_in_jupyterlab_is_still_reported(exported: Course, edit) -> None:
    py, ipynb = exported.dev_py(TENSOR), exported.dev_ipynb(TENSOR)
    if edit is edit_type:  # raw cells are fine; check the cell really is the markdown one
        assert read_ipynb(ipynb).cells[0].cell_type == "markdown"
    jupyterlab_save(ipynb, edit, *ALL_JUPYTERLAB_EDITS, nbformat_minor_4)
    assert pair_differences(py, ipynb) != []
    assert {"modules/01_tensor/tensor_dev.ipynb", "modules/01_tensor/tensor_dev.py"} <= paths(find_changes(exported))
    before = py.read_text(encoding="utf-8")
    assert_export_is_a_fixed_point(exported)
    assert py.read_text(encoding="utf-8") != before, "the edit made in the notebook must reach the .py"
    assert notebook_content(read_py(py)) == notebook_content(read_ipynb(ipynb))


def test_hidden_edit_of_a_stale_ipynb_is_reported(exported: Course) -> None:
    """An older `.ipynb` that disagrees with the `.py` is still out of step (the `.py` wins)."""
    ipynb, py = exported.dev_ipynb(TENSOR), exported.dev_py(TENSOR)
    jupyterlab_save(ipynb, edit_source, add_language_info)
    touch_later(py, seconds=60)
    assert "modules/01_tensor/tensor_dev.ipynb" in paths(find_changes(exported))
    assert_export_is_a_fixed_point(exported)
    assert "Wraps an array." in read_ipynb(ipynb).cells[2].source


# --------------------------------------------------------------- on a copy of the real course


@pytest.fixture
def real_course(tmp_path: Path) -> Course:
    """A copy of the committed course (HEAD: others may be editing the working tree)."""
    archive = subprocess.run(["git", "archive", "HEAD", "settings.ini", "modules", LIB_NAME],
                             cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "head", filter="data")
    return Course(tmp_path / "head")


def test_real_course_copy_is_up_to_date(real_course: Course) -> None:
    assert find_changes(real_course) == []


def test_real_notebook_saved_by_jupyterlab_passes_the_check(real_course: Course) -> None:
    ipynb = real_course.dev_ipynb(TENSOR)
    jupyterlab_save(ipynb, add_language_info)
    assert find_changes(real_course) == []
    jupyterlab_save(ipynb, *ALL_JUPYTERLAB_EDITS)
    assert find_changes(real_course) == []


def test_real_notebook_tag_added_in_jupyterlab_is_reported(real_course: Course) -> None:
    """The real .py has a header without a cell metadata filter, so tags are part of it."""
    py, ipynb = real_course.dev_py(TENSOR), real_course.dev_ipynb(TENSOR)
    jupyterlab_save(ipynb, edit_tags, *ALL_JUPYTERLAB_EDITS)
    assert {"modules/01_tensor/tensor_dev.ipynb", "modules/01_tensor/tensor_dev.py"} <= paths(find_changes(real_course))
    export(real_course, [TENSOR])
    assert 'tags=["exercise"]' in py.read_text(encoding="utf-8")
    assert find_changes(real_course) == []


def test_real_notebook_with_a_trailing_newline_exports_idempotently(real_course: Course) -> None:
    ipynb = real_course.dev_ipynb(TENSOR)
    code = next(i for i, c in enumerate(read_ipynb(ipynb).cells) if c.cell_type == "code")
    jupyterlab_save(ipynb, trailing_newline(code), add_language_info)
    export(real_course, [TENSOR])
    assert find_changes(real_course) == []
    first = snapshot(real_course.root)
    export(real_course, [TENSOR])
    assert snapshot(real_course.root) == first
