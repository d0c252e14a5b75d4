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
from tito.notebooks import DEFAULT_CELL_TIMEOUT, kernel_env, run_dev_file


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


def run_notebooks(course: Course, modules: list[Module], timeout: int) -> bool:
    """Execute each module's dev file; print one line per module (and why, on failure)."""
    all_ok = True
    for module in modules:
        result = run_dev_file(course.dev_py(module), course.root, timeout=timeout)
        status = "PASS" if result.ok else "FAIL"
        print(f"{status} {module.dirname}: notebook {course.dev_py(module).relative_to(course.root)} "
              f"({result.seconds:.1f} s)", flush=True)
        if not result.ok:
            print(_indent(result.describe()), flush=True)
            all_ok = False
    return all_ok


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
        ok = run_notebooks(course, modules, options.timeout)
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
