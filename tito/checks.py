"""Deciding checks: one module's notebook program, run by the harness in a fresh interpreter.

`tito test MODULE` (students) and `tito grade` (instructors) decide every check here, in the
same way, so that they agree on the same code:

1. `build_program` turns a notebook into the harness's program: its code cells in order,
   each marked provided code, the student's solution, or a test (visible part, hidden part).
   For grading, provided code and tests come from the instructor's source notebook and only
   the solution cells (matched by grade_id) from the submission; cells a student added,
   deleted or edited outside solution cells do not count, nor does changed metadata.
2. `build_package` writes the `tinytorch` package the program imports: modules < N from a
   reference (the course's generated package, or the student's own earlier modules) and
   module N from the program's `#| export` cells. Later modules do not exist.
3. `run_checks` runs tito/harness.py on it (in the grading sandbox when asked) and reads one
   verdict per test cell. A check without a verdict (the process was killed, crashed, exited
   or ran out of time) fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from tito.course import Course, Module, MODULES
from tito.exporting import MARKER_LINE
from tito.sandbox import DEFAULT_MEMORY_MB, Sandbox, kill_tree

HARNESS = Path(__file__).with_name("harness.py")
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[^\n]*\n(.*?)^[ \t]*### END HIDDEN TESTS[^\n]*(\n|$)",
                    re.MULTILINE | re.DOTALL)
_DIRECTIVE = re.compile(r"^#\|\s*(\w+)")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_solution(cell) -> bool:
    return cell.cell_type == "code" and bool(_meta(cell).get("solution"))


def is_test(cell) -> bool:
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta) and not meta.get("solution") and bool(meta.get("grade_id"))


def is_exported(source: str) -> bool:
    return any((m := _DIRECTIVE.match(line)) and m.group(1) == "export" for line in source.splitlines())


def split_hidden(source: str) -> tuple[str, str | None]:
    """(the visible part of a test cell, its hidden tests or None)."""
    hidden = [m.group(1) for m in HIDDEN.finditer(source)]
    visible = HIDDEN.sub("", source)
    return visible, ("\n".join(hidden) if hidden else None)


@dataclass
class Program:
    """What the harness runs: code cells in order, and the module-N code they export."""

    module: Module
    cells: list[dict]
    cell_timeout: float = 120.0

    @property
    def checks(self) -> list[dict]:
        return [c for c in self.cells if c["kind"] == "test"]

    def module_code(self) -> str:
        """Module N's Python file, from the program's `#| export` cells."""
        parts = [f"# {self.module.import_name}: built for checking from the notebook's #| export cells\n"]
        for cell in self.cells:
            if cell["kind"] != "test" and cell.get("exported"):
                source = MARKER_LINE.sub("", cell["source"])
                parts.append("\n".join(line for line in source.splitlines() if not _DIRECTIVE.match(line)))
        return "\n\n".join(parts) + "\n"

    def to_json(self) -> str:
        return json.dumps({"cell_timeout": self.cell_timeout, "cells": self.cells})


def build_program(module: Module, source: nbformat.NotebookNode, submission: nbformat.NotebookNode | None = None,
                  release: nbformat.NotebookNode | None = None, hidden: bool = True,
                  cell_timeout: float = 120.0) -> Program:
    """The harness program for `source` (a whole notebook), or, with `submission`, for the
    instructor's `source` with the submission's solution cells (by grade_id; a solution cell
    missing from the submission is taken from `release`, i.e. left as its stub)."""
    def by_id(nb):
        return {_meta(c)["grade_id"]: c for c in (nb.cells if nb else []) if is_solution(c) and _meta(c).get("grade_id")}

    answers, stubs = by_id(submission), by_id(release)
    cells = []
    for index, cell in enumerate(source.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        meta = _meta(cell)
        name = meta.get("grade_id") or f"cell {index + 1}"
        if is_solution(cell):
            text = cell.source
            if submission is not None:
                chosen = answers.get(name) or stubs.get(name)
                text = chosen.source if chosen is not None else ""
            cells.append({"kind": "solution", "name": name, "source": text, "exported": is_exported(text),
                          "index": index})
        elif is_test(cell):
            visible, secret = split_hidden(cell.source)
            cells.append({"kind": "test", "name": name, "visible": visible,
                          "hidden": secret if hidden else None,
                          "points": float(meta.get("points", 0)) if meta.get("grade") else None, "index": index})
        else:
            cells.append({"kind": "code", "name": name, "source": cell.source, "exported": is_exported(cell.source),
                          "index": index})
    return Program(module, cells, cell_timeout)


def build_package(dest: Path, course: Course, program: Program, earlier: dict[Module, str] | None = None) -> None:
    """`dest/tinytorch`: modules < N from `course`'s generated package (or, per module, the
    code in `earlier`), module N from `program`. Nothing of modules > N."""
    lib = dest / "tinytorch"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    init = course.lib_dir / "__init__.py"
    (lib / "__init__.py").write_text(init.read_text(encoding="utf-8") if init.exists() else "", encoding="utf-8")

    def place(module: Module, code: str | None, source_file: Path | None) -> None:
        target = dest / module.generated_relpath
        package = target.parent
        while package != lib and not (package / "__init__.py").exists():
            package.mkdir(parents=True, exist_ok=True)
            init = course.lib_dir.parent / package.relative_to(dest) / "__init__.py"
            (package / "__init__.py").write_text(init.read_text(encoding="utf-8") if init.exists() else "", encoding="utf-8")
            package = package.parent
        if code is not None:
            target.write_text(code, encoding="utf-8")
        elif source_file is not None and source_file.exists():
            shutil.copy2(source_file, target)

    for module in MODULES:
        if module.number < program.module.number:
            if earlier and module in earlier:
                place(module, earlier[module], None)
            else:
                place(module, None, course.generated_file(module))
    place(program.module, program.module_code(), None)


# ------------------------------------------------------------------------------ running


@dataclass
class Verdict:
    """One check's outcome."""

    name: str
    ok: bool
    points: float | None = None
    error: str = ""
    visible_ok: bool = False
    hidden_ok: bool | None = None  # None: the check has no hidden part (or it was not run)
    index: int | None = None  # the check's cell in the notebook (0-based)

    def describe(self, line: int | None = None) -> str:
        points = ""
        if self.points is not None:
            value = int(self.points) if float(self.points).is_integer() else self.points
            points = f" ({value} point{'' if value == 1 else 's'})"
        where = f" [line {line}]" if line else ""
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}{points}{where}" + ("" if self.ok else f": {self.error}")


@dataclass
class CheckReport:
    verdicts: list[Verdict] = field(default_factory=list)
    cell_errors: list[tuple] = field(default_factory=list)  # (cell index, name, error) of failing non-check cells
    seconds: float = 0.0
    ended: str = ""  # why the harness stopped early, if it did

    @property
    def score(self) -> float:
        return sum(v.points or 0 for v in self.verdicts if v.ok)

    @property
    def max_score(self) -> float:
        return sum(v.points or 0 for v in self.verdicts)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts) and not self.ended

    def by_name(self) -> dict[str, Verdict]:
        return {v.name: v for v in self.verdicts}


def _verdict(check: dict, record: dict | None, missing: str) -> Verdict:
    if record is None:
        return Verdict(check["name"], False, check.get("points"), missing, index=check.get("index"))
    visible = record.get("visible") or {"ok": False, "error": "not run"}
    hidden = record.get("hidden")
    ok = bool(visible.get("ok")) and (hidden is None or bool(hidden.get("ok")))
    error = ""
    if not visible.get("ok"):
        error = visible.get("error", "failed")
    elif hidden is not None and not hidden.get("ok"):
        error = "hidden tests: " + hidden.get("error", "failed")
    return Verdict(check["name"], ok, check.get("points"), error, bool(visible.get("ok")),
                   None if hidden is None else bool(hidden.get("ok")), check.get("index"))


def run_checks(course: Course, program: Program, *, sandboxed: bool, timeout: float = 600.0,
               memory_mb: int = DEFAULT_MEMORY_MB, hide: list[Path] | None = None,
               earlier: dict[Module, str] | None = None) -> CheckReport:
    """Run `program` in a fresh interpreter (in a sandbox when `sandboxed`); one verdict per check.

    `timeout` bounds the whole run (wall clock; the process tree is killed after it),
    `memory_mb` its address space."""
    started = time.perf_counter()
    with Sandbox(course.root, hide=list(hide or []), memory_mb=memory_mb, isolate=sandboxed) as box:
        build_package(box.folder, course, program, earlier)
        work = box.folder / "work"
        work.mkdir()
        shutil.copy2(HARNESS, box.folder / "harness.py")
        (box.folder / "program.json").write_text(program.to_json(), encoding="utf-8")
        read_end, write_end = os.pipe()
        try:
            # `-I`: the caller's PYTHONPATH and user site stay out; the package folder goes first.
            argv = [box.python(), "-I", "-c", _BOOTSTRAP,
                    str(box.inside(box.folder / "harness.py")), str(box.inside(box.folder / "program.json")),
                    str(write_end), str(box.inside(work)), str(box.inside(box.folder))]
            errors = tempfile.TemporaryFile()
            process = box.popen(argv, pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errors)
        finally:
            os.close(write_end)
        records: list[dict] = []
        reader = threading.Thread(target=_read_records, args=(read_end, records), daemon=True)
        reader.start()
        ended = ""
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            ended = f"the notebook ran past its time limit of {timeout:g} s"
        finally:
            kill_tree(process)
            reader.join(timeout=10)
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 1500))
        stderr = errors.read().decode("utf-8", "replace").strip()
        errors.close()
    report = _report(program, records, ended, time.perf_counter() - started)
    if report.ended and stderr and not any(r.get("event") == "start" for r in records):
        report.ended += f"; the sandbox did not start: {stderr.splitlines()[-1]}"
        for verdict in report.verdicts:
            verdict.error += f"; the sandbox did not start: {stderr.splitlines()[-1]}"
    return report


_BOOTSTRAP = ("import os, sys; os.chdir(sys.argv[4]); sys.path.insert(0, sys.argv[5]); sys.argv = sys.argv[1:4]; "
              "exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))")


def _read_records(fd: int, records: list[dict]) -> None:
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)


def _report(program: Program, records: list[dict], ended: str, seconds: float) -> CheckReport:
    checks = {r["name"]: r for r in records if r.get("event") == "check" and isinstance(r.get("name"), str)}
    done = any(r.get("event") == "done" for r in records)
    last_cell = next((r for r in reversed(records) if r.get("event") == "cell"), None)
    if not done and not ended:
        where = f" in {last_cell['name']}" if last_cell else ""
        ended = f"the process ended{where} before every check had run (os._exit, a crash or its memory limit)"
    report = CheckReport(seconds=seconds, ended=ended)
    seen: set[str] = set()
    for check in program.checks:
        record = checks.get(check["name"]) if check["name"] not in seen else None
        seen.add(check["name"])
        report.verdicts.append(_verdict(check, record, f"not run: {ended}" if ended else "not run"))
    index_of = {c["name"]: c.get("index") for c in program.cells}
    report.cell_errors = [(index_of.get(r["name"]), r["name"], r["error"]) for r in records
                          if r.get("event") == "ran" and r.get("error")]
    return report
