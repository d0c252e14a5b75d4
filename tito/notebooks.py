"""Running a dev file top to bottom, headless, as a notebook (Jupytext + nbclient).

The kernel always runs this very Python (whatever kernels are installed on the machine),
starts in the module's folder, and imports the course's `tinytorch` (the course root is put
on its PYTHONPATH). Matplotlib draws off-screen (MPLBACKEND=Agg).

By default a run stops at the first failing cell. With `all_cells=True` every cell runs
even after a failure, and the result lists each *test cell* (a cell with nbgrader metadata
that is not a solution cell: graded, or a plain read-only check) with its grade_id, points,
pass or fail, and the error: what `tito test MODULE` reports to students.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from tito.pairing import read_ipynb, read_py

DEFAULT_CELL_TIMEOUT = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_MARKER = re.compile(r"^# %%", re.MULTILINE)
SOURCE_HEAD_LINES = 8
#: Kernels talk to tito over Unix sockets where there are some: no TCP port, no loopback
#: network needed, and no warning from ipykernel about unencrypted TCP.
_TRANSPORT = "tcp" if os.name == "nt" else "ipc"


class _ThisPythonKernels(KernelSpecManager):
    """Kernel specs that always start an ipykernel on the current interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        from ipykernel.kernelspec import get_kernel_dict

        spec = get_kernel_dict()
        return KernelSpec(
            resource_dir="",
            argv=spec["argv"],
            display_name=spec["display_name"],
            language=spec["language"],
            metadata=spec.get("metadata", {}),
        )


@dataclass
class CellResult:
    """How one test cell went (with `all_cells=True`)."""

    number: int  # 1-based index of the cell in the notebook
    name: str  # the nbgrader grade_id
    ok: bool
    points: float | None = None  # None for an ungraded check
    line: int | None = None  # where the cell starts in the dev file, when known
    error: str = ""  # e.g. "AssertionError: shapes differ", with the failing line if no message

    def describe(self) -> str:
        """One line in plain words."""
        points = ""
        if self.points is not None:
            value = int(self.points) if float(self.points).is_integer() else self.points
            points = f" ({value} point{'' if value == 1 else 's'})"
        where = f" [line {self.line}]" if self.line else ""
        status = "PASS" if self.ok else "FAIL"
        return f"{status} {self.name}{points}{where}" + ("" if self.ok else f": {self.error}")


@dataclass
class NotebookResult:
    """How running one dev file went."""

    path: Path
    ok: bool
    seconds: float = 0.0
    cell_number: int | None = None  # 1-based index of the failing cell
    line: int | None = None  # line of the dev file where that cell starts
    source_head: str = ""
    error: str = ""  # short form, e.g. "AssertionError: shapes differ"
    traceback: str = ""
    cells: list[CellResult] = field(default_factory=list)  # test cells, with all_cells=True
    other_failures: list[str] = field(default_factory=list)  # failing cells that are not tests
    notebook: nbformat.NotebookNode | None = field(default=None, repr=False)  # with its outputs

    def describe(self) -> str:
        """The failure in plain words (empty when the notebook ran through)."""
        if self.ok:
            return ""
        where = f"cell {self.cell_number}" if self.cell_number else "a cell"
        if self.line:
            where += f" (line {self.line} of {self.path.name})"
        parts = [f"{where} failed with {self.error}"]
        if self.source_head:
            parts += ["the cell begins:", _indent(self.source_head)]
        if self.traceback:
            parts += ["traceback:", _indent(self.traceback)]
        return "\n".join(parts)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def kernel_env(root: Path) -> dict[str, str]:
    """Environment for kernels and pytest: the course root first on PYTHONPATH, Agg backend."""
    env = dict(os.environ)
    paths = [str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["MPLBACKEND"] = "Agg"
    return env


def _cell_start_lines(py: Path, n_cells: int) -> list[int] | None:
    """Line number where each cell starts in the percent file, when it can be told."""
    text = py.read_text(encoding="utf-8")
    starts = [text.count("\n", 0, m.start()) + 1 for m in _CELL_MARKER.finditer(text)]
    if len(starts) == n_cells:
        return starts
    return None


def _failing_cell(nb: nbformat.NotebookNode) -> int | None:
    """0-based index of the first cell whose outputs hold an error."""
    for index, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return None


def _source_head(source: str) -> str:
    lines = source.splitlines()
    head = "\n".join(lines[:SOURCE_HEAD_LINES])
    if len(lines) > SOURCE_HEAD_LINES:
        head += f"\n... ({len(lines) - SOURCE_HEAD_LINES} more lines)"
    return head


def _error_traceback(cell: nbformat.NotebookNode) -> str | None:
    """The traceback the kernel reported for a cell, if it reported one."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return "\n".join(output.get("traceback", []))
    return None


def _failure(py: Path, nb: nbformat.NotebookNode, index: int | None, error: str, tb: str) -> NotebookResult:
    if index is not None:
        tb = _error_traceback(nb.cells[index]) or tb
    result = NotebookResult(path=py, ok=False, error=error, traceback=_ANSI.sub("", tb).strip())
    if index is not None:
        result.cell_number = index + 1
        result.source_head = _source_head(nb.cells[index].source)
        starts = _cell_start_lines(py, len(nb.cells))
        result.line = starts[index] if starts else None
    return result


def run_dev_file(py: Path, root: Path, timeout: int = DEFAULT_CELL_TIMEOUT, all_cells: bool = False) -> NotebookResult:
    """Execute `py` as a notebook in its own folder; never raises for a failing cell.

    `py` is a percent-format dev file, or a notebook (`.ipynb`). With `all_cells`, every
    cell runs even after a failure and `result.cells` reports each test cell.
    """
    nb = read_ipynb(py) if py.suffix == ".ipynb" else read_py(py)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory(prefix="tito-kernel-") as sockets:
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPythonKernels())
        if _TRANSPORT == "ipc":
            km.transport, km.ip = "ipc", str(Path(sockets) / "kernel")
        return _execute(py, nb, km, root, timeout, all_cells)


def _execute(py: Path, nb: nbformat.NotebookNode, km: AsyncKernelManager, root: Path, timeout: int,
             all_cells: bool = False) -> NotebookResult:
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=all_cells,
        resources={"metadata": {"path": str(py.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute(cleanup_kc=True, env=kernel_env(root))  # shut the kernel down after
        index = _failing_cell(nb) if all_cells else None
        if index is None:
            result = NotebookResult(path=py, ok=True)
        else:
            ename, evalue = _error_name(nb.cells[index])
            result = _failure(py, nb, index, f"{ename}: {evalue}", "")
    except CellExecutionError as exc:
        result = _failure(py, nb, _failing_cell(nb), f"{exc.ename}: {exc.evalue}", exc.traceback)
    except CellTimeoutError as exc:
        index = _running_cell(nb)
        result = _failure(py, nb, index, f"a timeout (more than {timeout} s)", str(exc))
    except DeadKernelError as exc:
        result = _failure(py, nb, _running_cell(nb), "the kernel dying", str(exc))
    except RuntimeError as exc:  # e.g. "Kernel didn't respond in 60 seconds"
        result = _failure(py, nb, None, f"the kernel not starting ({exc})", "")
    result.seconds = time.perf_counter() - started
    result.notebook = nb
    if all_cells:
        result.cells = test_cell_results(py, nb)
        result.other_failures = other_failures(py, nb)
    return result


def _is_test_cell(cell: nbformat.NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta) and not meta.get("solution") and bool(meta.get("grade_id"))


def other_failures(py: Path, nb: nbformat.NotebookNode) -> list[str]:
    """"cell N (line L): Error: message" for every failing cell that is not a test cell."""
    starts = _cell_start_lines(py, len(nb.cells)) if py.suffix != ".ipynb" else None
    failures = []
    for index, cell in enumerate(nb.cells):
        if _is_test_cell(cell) or not any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            continue
        ename, evalue = _error_name(cell)
        where = f"cell {index + 1}" + (f" (line {starts[index]})" if starts else "")
        failures.append(f"{where}: {ename}: {evalue}" if evalue else f"{where}: {ename}")
    return failures


def _error_name(cell: nbformat.NotebookNode) -> tuple[str, str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output.get("ename", "Error"), output.get("evalue", "")
    return "Error", ""


def _failing_line(traceback: str) -> str:
    """The source line IPython marks with an arrow in the cell's own frame, if any."""
    for line in _ANSI.sub("", traceback).splitlines():
        match = re.match(r"^-*> ?\d+\s(.*)$", line.strip())
        if match:
            return match.group(1).strip()
    return ""


def test_cell_results(py: Path, nb: nbformat.NotebookNode) -> list[CellResult]:
    """Pass or fail of every test cell (nbgrader metadata, not a solution) that ran or
    should have run; a cell that never ran (the kernel stopped first) counts as failed."""
    starts = _cell_start_lines(py, len(nb.cells)) if py.suffix != ".ipynb" else None
    results = []
    for index, cell in enumerate(nb.cells):
        if not _is_test_cell(cell):
            continue
        meta = cell.metadata["nbgrader"]
        ran = "execution" in cell.get("metadata", {}) or cell.get("outputs")
        error = ""
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            ename, evalue = _error_name(cell)
            error = f"{ename}: {evalue}" if evalue else ename
            if not evalue:
                failing = _failing_line(_error_traceback(cell) or "")
                error += f" at `{failing}`" if failing else ""
        elif not ran:
            error = "not run (the notebook stopped before this cell)"
        results.append(CellResult(
            number=index + 1,
            name=meta["grade_id"],
            ok=not error,
            points=float(meta.get("points", 0)) if meta.get("grade") else None,
            line=starts[index] if starts else None,
            error=error,
        ))
    return results


def _running_cell(nb: nbformat.NotebookNode) -> int | None:
    """The last code cell that started executing (for timeouts and crashes)."""
    started = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.get("metadata", {}).get("execution", {}).get("iopub.execute_input")
    ]
    return started[-1] if started else None
