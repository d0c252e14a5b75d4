"""Keeping a dev file `x_dev.py` (Jupytext percent format) and its notebook `x_dev.ipynb` paired.

The rules are those of `jupytext --sync`: the cell inputs come from the more recently
modified of the two files (the `.py` when they are equally old), the outputs and cell ids
come from the `.ipynb`, and both files are then written from the combined notebook. A few
differences make exporting reproducible and idempotent (a second export never changes what
the first one wrote, and opening and saving the notebook in Jupyter changes nothing):

- The cell inputs always go through the `.py` text (written as py:percent, read back) before
  the `.ipynb` is written, so both files hold what the `.py` can hold. Otherwise a cell source
  the percent format cannot keep as it is (one ending with a newline, say) would be written
  to the `.ipynb` by one export and replaced by its `.py` form in the next.
- The notebook header of the `.py` (kernelspec, jupytext) belongs to the `.py`: a kernelspec
  that Jupyter rewrote in the `.ipynb` does not flow back into the `.py`.
- A file is only written when it would change: the `.py` when its text changes, the `.ipynb`
  when its content changes in the sense of `notebook_content` (so a notebook that Jupyter
  saved without an edit is left as it is).
- Cells new to the `.ipynb` get an id derived from their content instead of a random one, and
  a notebook that is (re)written is nbformat 4.5 (cell ids are part of 4.5).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

PY_FORMAT = "py:percent"
IPYNB_FORMAT = "ipynb"

#: Cell metadata that records how Jupyter showed or ran a cell, not what the cell is. These are
#: Jupytext's own list (`jupytext.cell_metadata._IGNORE_CELL_METADATA`: it never writes them to
#: the `.py`), so they cannot be compared with the `.py` either.
VIEW_CELL_METADATA = frozenset({"autoscroll", "collapsed", "scrolled", "trusted", "execution", "ExecuteTime"})

#: Notebook metadata that Jupytext writes in the header of the `.py` (its default filter).
TEXT_NOTEBOOK_METADATA = ("jupytext", "kernelspec", "kernel_info", "orphan", "tocdepth")

#: Cell fields that are not compared (see `notebook_content`).
_UNCOMPARED_CELL_FIELDS = frozenset({"id", "execution_count", "outputs", "attachments"})


def read_py(py: Path) -> nbformat.NotebookNode:
    """The notebook Jupytext reads from a percent-format dev file."""
    return jupytext.read(py, fmt=PY_FORMAT)


def read_ipynb(ipynb: Path) -> nbformat.NotebookNode:
    return jupytext.read(ipynb, fmt=IPYNB_FORMAT)


def _cell_content(cell: nbformat.NotebookNode) -> dict:
    """What a cell *is*: its type, its source and every metadata but `VIEW_CELL_METADATA`."""
    content = {key: value for key, value in cell.items() if key not in _UNCOMPARED_CELL_FIELDS}
    content["metadata"] = {
        key: value for key, value in cell.get("metadata", {}).items() if key not in VIEW_CELL_METADATA
    }
    return content


def notebook_content(nb: nbformat.NotebookNode) -> list[dict]:
    """The part of a notebook that the check compares, strictly; the rest is Jupyter's business.

    Compared: the number and order of the cells, and of each cell its type, its source
    (character for character) and its metadata (nbgrader's included), except the view state
    listed below.

    Ignored, per field, because Jupyter writes it when a notebook is merely opened, run and
    saved, and it does not reach the `.py` or the package:

    - the file's layout: indentation, key order, final newline (nbformat writes `indent=1`
      and a final newline; Jupytext writes none);
    - `nbformat_minor` and cell `id`s: the `.py` has no ids. They are not ignored altogether
      though: nbdev writes the ids of exported cells into the package as cell markers, so a
      changed id changes a generated file (and the check reports that file), and a notebook
      without ids (4.4) is normalised, rewritten as 4.5 with ids made from the cell contents
      (see `_needs_rewrite`). Jupyter keeps the ids of a 4.5 notebook when it saves one;
    - all notebook-level metadata: `language_info` (written by the kernel), `kernelspec`
      (the name of whatever kernel ran the notebook; the course's lives in the `.py`
      header, which tito never takes from the `.ipynb`), `jupytext` (written by Jupytext's
      JupyterLab extension; again the `.py` header is what counts), `widgets` and the like;
    - of each cell: `execution_count`, `outputs`, `attachments`, and the metadata in
      `VIEW_CELL_METADATA` (`collapsed`, `scrolled`, `trusted`, `execution`, ...).

    These are ignored rather than normalised away: rewriting them would make every Jupyter
    save fail `tito export --check` until the next export. When the `.ipynb` is rewritten
    for a real change, its outputs, ids and Jupyter metadata are kept.
    """
    return [_cell_content(cell) for cell in nb.cells]


def _content_id(cell: nbformat.NotebookNode, taken: set[str]) -> str:
    """A cell id made from the cell's type and source, unique among `taken`."""
    digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()
    candidate, n = digest[:8], 1
    while candidate in taken:
        n += 1
        candidate = f"{digest[:8]}-{n}"
    return candidate


def _fix_new_cell_ids(nb: nbformat.NotebookNode, known_ids: set[str]) -> None:
    """Give every cell whose id is not one of `known_ids` (or is repeated) a content id."""
    taken: set[str] = set()
    for cell in nb.cells:
        cell_id = cell.get("id")
        if cell_id not in known_ids or cell_id in taken:
            cell["id"] = _content_id(cell, taken | known_ids)
        taken.add(cell["id"])


def _inputs_from_ipynb(py: Path, ipynb: Path) -> bool:
    """True when the `.ipynb` was modified after the `.py` (so its inputs win)."""
    return not py.exists() or ipynb.stat().st_mtime > py.stat().st_mtime


def _through_py(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook read back from `nb` written as py:percent: the inputs the `.py` holds."""
    return jupytext.reads(jupytext.writes(nb, fmt=PY_FORMAT), fmt=PY_FORMAT)


def synced_notebook(py: Path, ipynb: Path) -> nbformat.NotebookNode:
    """The notebook both files should hold after a `jupytext --sync` of the pair."""
    if not ipynb.exists():
        nb = _through_py(read_py(py))
        nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
        _fix_new_cell_ids(nb, set())
        return nb
    with_outputs = read_ipynb(ipynb)
    known_ids = {c.get("id") for c in with_outputs.cells if c.get("id")}
    if _inputs_from_ipynb(py, ipynb):
        inputs = copy.deepcopy(with_outputs)
        if py.exists():
            inputs.metadata = read_py(py).metadata  # the .py's header wins (kernelspec, jupytext)
    else:
        inputs = read_py(py)
    from_text = _through_py(inputs)
    nb = combine_inputs_with_outputs(from_text, with_outputs, fmt=PY_FORMAT)
    for key in TEXT_NOTEBOOK_METADATA:  # exactly the .py's header, nothing kept from the .ipynb
        if key in from_text.metadata:
            nb.metadata[key] = copy.deepcopy(from_text.metadata[key])
        else:
            nb.metadata.pop(key, None)
    nb.metadata.get("jupytext", {}).pop("text_representation", None)
    if not nb.metadata.get("jupytext", True):
        nb.metadata.pop("jupytext")
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    _fix_new_cell_ids(nb, known_ids)
    return nb


def _needs_rewrite(on_disk: nbformat.NotebookNode, wanted: nbformat.NotebookNode) -> bool:
    """Whether the `.ipynb` must be written: its content changes, or a cell has no id.

    Cell ids are not content, but nbdev writes them into the package as cell markers, and
    execnb makes up random ones for cells without: so a notebook without ids (nbformat 4.4)
    is rewritten as 4.5 with ids derived from the cell contents.
    """
    if any(not cell.get("id") for cell in on_disk.cells):
        return True
    return notebook_content(on_disk) != notebook_content(wanted)


def planned_sync(py: Path, ipynb: Path) -> dict[Path, str]:
    """The files a sync would (re)write, with their new text. Changes nothing on disk.

    The `.py` is rewritten when its text would change; the `.ipynb` only when its content
    would (`notebook_content`), so what Jupyter alone adds to it stays and passes the check.
    """
    nb = synced_notebook(py, ipynb)
    changes: dict[Path, str] = {}
    if not ipynb.exists() or _needs_rewrite(read_ipynb(ipynb), nb):
        changes[ipynb] = jupytext.writes(nb, fmt=IPYNB_FORMAT)
    py_text = jupytext.writes(nb, fmt=PY_FORMAT)
    if not py.exists() or py.read_text(encoding="utf-8") != py_text:
        changes[py] = py_text
    return changes


def sync_pair(py: Path, ipynb: Path) -> list[Path]:
    """Bring the pair in step (creating the `.ipynb` if needed); return the files written."""
    changes = planned_sync(py, ipynb)
    # Write the notebook first and the text file last, so the text file ends up newest,
    # as jupytext does.
    for path in sorted(changes, key=lambda p: p.suffix != ".ipynb"):
        path.write_text(changes[path], encoding="utf-8")
    return sorted(changes)


def pair_differences(py: Path, ipynb: Path) -> list[str]:
    """Why the `.py` and the `.ipynb` disagree, in words; empty when they agree.

    They agree when the notebook read from the `.py` has the same `notebook_content` as the
    `.ipynb` read through the `.py`'s format (same cells in the same order, each with the
    same type, source and the metadata the `.py` holds, nbgrader's included; what Jupyter
    adds on a save is not compared), and the `.ipynb` written as py:percent under the
    `.py`'s header gives the `.py` text exactly.
    """
    if not ipynb.exists():
        return [f"{ipynb.name} does not exist"]
    from_py, from_ipynb = read_py(py), read_ipynb(ipynb)
    reasons: list[str] = []
    if len(from_py.cells) != len(from_ipynb.cells):
        reasons.append(f"{len(from_py.cells)} cells in {py.name}, {len(from_ipynb.cells)} in {ipynb.name}")
    from_ipynb.metadata = from_py.metadata
    # Compare what the .py can hold: its header's cell_metadata_filter may leave some out.
    as_text = _through_py(from_ipynb)
    for index, (a, b) in enumerate(zip(notebook_content(from_py), notebook_content(as_text)), start=1):
        if a != b:
            fields = ", ".join(key for key in ("cell_type", "source", "metadata") if a.get(key) != b.get(key))
            reasons.append(f"cell {index} differs ({fields or 'other fields'})")
            break
    if jupytext.writes(from_ipynb, fmt=PY_FORMAT) != py.read_text(encoding="utf-8"):
        reasons.append(f"{ipynb.name} written as py:percent is not the text of {py.name}")
    return reasons
