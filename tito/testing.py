"""`tito test`: run the dev notebooks headless, then pytest.

`run_suite` is the whole course (what CI runs): the export check, every module's notebook,
then one pytest run over all of tests/, so that pytest's summary is the last line printed.
`run_modules` is the same for a few named modules and their tests/test_NN_*.py files.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tito.checking import find_changes, module_is_current
from tito.course import Course, Module
from tito.checks import CheckReport, build_program, run_checks
from tito.hidden import with_hidden
from tito.notebooks import DEFAULT_CELL_TIMEOUT, _cell_start_lines, kernel_env, run_dev_file
from tito.pairing import pair_differences, read_ipynb, read_py


@dataclass
class TestOptions:
    """What `tito test` should run."""

    notebooks: bool = True
    pytest: bool = True
    timeout: int = DEFAULT_CELL_TIMEOUT
    pytest_args: list[str] = field(default_factory=list)


def pytest_command(paths: list[Path], args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *map(str, paths), *args]


def run_pytest(course: Course, paths: list[Path], args: list[str], capture: bool = False) -> subprocess.CompletedProcess:
    """Run pytest from the course root, with the same environment as the notebook kernels."""
    return subprocess.run(
        pytest_command(paths, args),
        cwd=course.root,
        env=kernel_env(course.root),
        capture_output=capture,
        text=True,
    )


def check_module(course: Course, module: Module, source: Path, timeout: int, hidden: bool = True) -> CheckReport:
    """Decide every check of a dev file or notebook as `tito grade` does (tito/checks.py):
    one fresh interpreter, the module's own code from the notebook, the course's generated
    package for the modules before it. In the course checkout the module's hidden tests
    (grading/hidden/) run too; a student workspace has none."""
    nb = read_ipynb(source) if source.suffix == ".ipynb" else read_py(source)
    if hidden:  # `hidden=False`: exactly what a student sees (their notebook has no hidden tests)
        nb = with_hidden(nb, course, module)
    program = build_program(module, nb, hidden=True, cell_timeout=timeout)
    return run_checks(course, program, sandboxed=False, timeout=max(600, 4 * timeout))


def run_notebooks(course: Course, modules: list[Module], timeout: int, report_cells: bool = False) -> bool:
    """Execute each module's dev file; print one line per module (and why, on failure).

    With `report_cells` each check gets a line of its own: its grade_id, PASS or FAIL, and
    the error (what students see with `tito test MODULE`). Those verdicts come from the
    same harness as `tito grade`'s, so the two agree on the same code; output on stderr and
    warnings never fail a check. When the notebook was edited after its `.py` (in Jupyter,
    before `tito export`), the notebook is what runs.
    """
    all_ok = True
    for module in modules:
        source = _newest_source(course, module) if report_cells else course.dev_py(module)
        if source != course.dev_py(module):
            print(f"note: {source.name} is newer than {course.dev_py(module).name}: testing the notebook "
                  f"(`tito export {module.dirname}` brings the two in step and updates tinytorch/)", flush=True)
        if report_cells:
            all_ok = _report_checks(course, module, source, timeout) and all_ok
            continue
        result = run_dev_file(source, course.root, timeout=timeout)
        status = "PASS" if result.ok else "FAIL"
        print(f"{status} {module.dirname}: notebook {source.relative_to(course.root)} "
              f"({result.seconds:.1f} s)", flush=True)
        if not result.ok:
            print(_indent(result.describe()), flush=True)
        all_ok = all_ok and result.ok
    return all_ok


def _report_checks(course: Course, module: Module, source: Path, timeout: int) -> bool:
    report = check_module(course, module, source, timeout)
    ok = report.ok and not report.cell_errors
    print(f"{'PASS' if ok else 'FAIL'} {module.dirname}: notebook {source.relative_to(course.root)} "
          f"({report.seconds:.1f} s)", flush=True)
    starts = None
    if source.suffix == ".py":
        starts = _cell_start_lines(source, len(read_py(source).cells))
    passed = [v for v in report.verdicts if v.ok]
    graded = any(v.points is not None for v in report.verdicts)
    print(f"    {len(passed)} of {len(report.verdicts)} checks pass"
          + (f" ({report.score:g} of {report.max_score:g} points)" if graded else "") + ":", flush=True)
    for verdict in report.verdicts:
        line = starts[verdict.index] if starts and verdict.index is not None else None
        print(f"    {verdict.describe(line)}", flush=True)
    for index, name, error in report.cell_errors:  # cells that are not checks fail too
        where = f"cell {index + 1}" if index is not None else name
        if starts and index is not None:
            where += f" (line {starts[index]})"
        print(f"    error in {where}: {error}", flush=True)
    if report.ended:
        print(f"    the run stopped early: {report.ended}", flush=True)
    return ok


def _newest_source(course: Course, module: Module) -> Path:
    """The dev `.py`, or its `.ipynb` when that was modified later and differs (edited in Jupyter)."""
    py, ipynb = course.dev_py(module), course.dev_ipynb(module)
    if ipynb.exists() and ipynb.stat().st_mtime > py.stat().st_mtime and pair_differences(py, ipynb):
        return ipynb
    return py


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def check_export(course: Course) -> bool:
    """The `tito export --check` step; prints what it finds."""
    changes = find_changes(course)
    if not changes:
        print("PASS export check: dev files paired and tinytorch/ up to date", flush=True)
        return True
    print(f"FAIL export check: {len(changes)} file(s) would change (run `tito export`):", flush=True)
    for change in changes:
        print(f"    {change.path}: {change.reason}", flush=True)
    return False


def warn_if_stale(course: Course, modules: list[Module]) -> None:
    """Point out modules whose generated code is older than their dev file."""
    changes = find_changes(course)
    for module in modules:
        if not module_is_current(course, module, changes):
            print(f"warning: {module.dirname} is not exported as it stands, so pytest tests old "
                  f"code: run `tito export {module.dirname}` first", flush=True)


def run_suite(course: Course, options: TestOptions) -> int:
    """The whole course: export check, every notebook, one pytest run over tests/."""
    ok = check_export(course)
    if options.notebooks:
        ok = run_notebooks(course, course.existing_modules(), options.timeout) and ok
    if options.pytest:
        print("pytest tests/", flush=True)
        ok = run_pytest(course, [course.tests_dir], options.pytest_args).returncode == 0 and ok
    else:
        print(f"tito test: {'all steps passed' if ok else 'some steps failed'}", flush=True)
    return 0 if ok else 1


def run_modules(course: Course, modules: list[Module], options: TestOptions) -> int:
    """Named modules: their notebooks, then one pytest run over their test files."""
    ok = True
    if options.notebooks:
        ok = run_notebooks(course, modules, options.timeout, report_cells=True)
    if options.pytest:
        files = [path for module in modules for path in course.test_files(module)]
        for module in modules:
            if not course.test_files(module):
                print(f"note: {module.dirname} has no tests/test_{module.prefix}_*.py", flush=True)
        if files:
            warn_if_stale(course, modules)
            names = " ".join(str(f.relative_to(course.root)) for f in files)
            print(f"pytest {names}", flush=True)
            ok = run_pytest(course, files, options.pytest_args).returncode == 0 and ok
    return 0 if ok else 1
