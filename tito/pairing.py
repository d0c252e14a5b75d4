"""Keeping a dev file `x_dev.py` (Jupytext percent format) and its notebook `x_dev.ipynb` paired.

The rules are those of `jupytext --sync`: the cell inputs come from the more recently
modified of the two files (the `.py` when they are equally old), the outputs and cell ids
come from the `.ipynb`, and both files are then written from the combined notebook. Two
differences make exporting reproducible: a file is only written when its text changes, and
cells new to the `.ipynb` get an id derived from their content instead of a random one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

PY_FORMAT = "py:percent"
IPYNB_FORMAT = "ipynb"


def read_py(py: Path) -> nbformat.NotebookNode:
    """The notebook Jupytext reads from a percent-format dev file."""
    return jupytext.read(py, fmt=PY_FORMAT)


def read_ipynb(ipynb: Path) -> nbformat.NotebookNode:
    return jupytext.read(ipynb, fmt=IPYNB_FORMAT)


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
    return ipynb.stat().st_mtime > py.stat().st_mtime


def synced_notebook(py: Path, ipynb: Path) -> nbformat.NotebookNode:
    """The notebook both files should hold after a `jupytext --sync` of the pair."""
    if not ipynb.exists():
        nb = read_py(py)
        nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
        _fix_new_cell_ids(nb, set())
        return nb
    with_outputs = read_ipynb(ipynb)
    known_ids = {c.get("id") for c in with_outputs.cells if c.get("id")}
    if _inputs_from_ipynb(py, ipynb):
        nb = with_outputs
    else:
        nb = combine_inputs_with_outputs(read_py(py), with_outputs, fmt=PY_FORMAT)
    _fix_new_cell_ids(nb, known_ids)
    return nb


def planned_sync(py: Path, ipynb: Path) -> dict[Path, str]:
    """The files a sync would (re)write, with their new text. Changes nothing on disk."""
    nb = synced_notebook(py, ipynb)
    wanted = {
        ipynb: jupytext.writes(nb, fmt=IPYNB_FORMAT),
        py: jupytext.writes(nb, fmt=PY_FORMAT),
    }
    return {
        path: text
        for path, text in wanted.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    }


def sync_pair(py: Path, ipynb: Path) -> list[Path]:
    """Bring the pair in step (creating the `.ipynb` if needed); return the files written."""
    changes = planned_sync(py, ipynb)
    # Write the notebook first and the text file last, so the text file ends up newest,
    # as jupytext does.
    for path in sorted(changes, key=lambda p: p.suffix != ".ipynb"):
        path.write_text(changes[path], encoding="utf-8")
    return sorted(changes)


def _cell_summary(cell: nbformat.NotebookNode) -> tuple[str, str, object]:
    return cell.cell_type, cell.source, cell.get("metadata", {}).get("nbgrader")


def pair_differences(py: Path, ipynb: Path) -> list[str]:
    """Why the `.py` and the `.ipynb` disagree, in words; empty when they agree.

    They agree when the notebook read from the `.py` has the same cells (types, sources and
    nbgrader metadata) as the `.ipynb`, and writing the `.ipynb` as py:percent gives the
    `.py` text exactly.
    """
    if not ipynb.exists():
        return [f"{ipynb.name} does not exist"]
    from_py, from_ipynb = read_py(py), read_ipynb(ipynb)
    reasons: list[str] = []
    if len(from_py.cells) != len(from_ipynb.cells):
        reasons.append(f"{len(from_py.cells)} cells in {py.name}, {len(from_ipynb.cells)} in {ipynb.name}")
    for index, (a, b) in enumerate(zip(from_py.cells, from_ipynb.cells), start=1):
        if _cell_summary(a) != _cell_summary(b):
            reasons.append(f"cell {index} differs (type, source or nbgrader metadata)")
            break
    if jupytext.writes(from_ipynb, fmt=PY_FORMAT) != py.read_text(encoding="utf-8"):
        reasons.append(f"{ipynb.name} written as py:percent is not the text of {py.name}")
    return reasons
