"""Running a dev file top to bottom, headless, as a notebook (Jupytext + nbclient).

The kernel always runs this very Python (whatever kernels are installed on the machine),
starts in the module's folder, and imports the course's `tinytorch` (the course root is put
on its PYTHONPATH). Matplotlib draws off-screen (MPLBACKEND=Agg).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from tito.pairing import read_py

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


def run_dev_file(py: Path, root: Path, timeout: int = DEFAULT_CELL_TIMEOUT) -> NotebookResult:
    """Execute `py` as a notebook in its own folder; never raises for a failing cell."""
    nb = read_py(py)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory(prefix="tito-kernel-") as sockets:
        km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPythonKernels())
        if _TRANSPORT == "ipc":
            km.transport, km.ip = "ipc", str(Path(sockets) / "kernel")
        return _execute(py, nb, km, root, timeout)


def _execute(py: Path, nb: nbformat.NotebookNode, km: AsyncKernelManager, root: Path, timeout: int) -> NotebookResult:
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(py.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute(cleanup_kc=True, env=kernel_env(root))  # shut the kernel down after
        result = NotebookResult(path=py, ok=True)
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
    return result


def _running_cell(nb: nbformat.NotebookNode) -> int | None:
    """The last code cell that started executing (for timeouts and crashes)."""
    started = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.get("metadata", {}).get("execution", {}).get("iopub.execute_input")
    ]
    return started[-1] if started else None
