"""`tito export [MODULE ...] [--check]`."""

from __future__ import annotations

import argparse
import time

from tito.checking import find_changes, tracked_files
from tito.command import Command
from tito.course import Course
from tito.exporting import export

DESCRIPTION = """\
Export the course's dev notebooks into the generated `tinytorch` package.

For each module (every module whose dev file exists, when none is named): keep
modules/NN_name/name_dev.py and name_dev.ipynb paired (as `jupytext --sync` does; the
.ipynb is created from the .py when missing), then export the notebook's `#| export`
cells with nbdev into tinytorch/ (nbgrader's BEGIN/END SOLUTION and HIDDEN TESTS marker
lines are dropped; the code between them is kept). Then generated files whose module is
gone are removed, the package's __init__.py files and _modidx.py are rewritten.
Exporting is deterministic: running it twice changes nothing. A notebook that Jupyter
saved without an edit (language_info, kernelspec, outputs, execution counts, view metadata)
is not rewritten and passes --check; see tito.pairing.notebook_content for what is compared.

With --check nothing is written: tito lists every file that an export would change
(a .py and .ipynb that disagree, or any change under tinytorch/) and exits 1, or prints
one OK line and exits 0.

MODULE may be written 01_tensor, 01 or tensor."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="modules to export (default: all that exist)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and list the files an export would change",
    )


def run(args: argparse.Namespace, course: Course) -> int:
    if args.check:
        return _check(course, args.modules)
    modules = course.select(args.modules)
    started = time.perf_counter()
    before = tracked_files(course)
    export(course, modules)
    after = tracked_files(course)
    changed = [p for p in sorted(before.keys() | after.keys()) if before.get(p) != after.get(p)]
    for path in changed:
        verb = "removed" if path not in after else "created" if path not in before else "updated"
        print(f"  {verb} {path}")
    names = ", ".join(m.dirname for m in modules) or "no modules"
    summary = f"{len(changed)} file(s) changed" if changed else "nothing changed"
    print(f"exported {names} to {course.lib_dir.name}/: {summary} ({time.perf_counter() - started:.1f} s)")
    return 0


def _check(course: Course, names: list[str]) -> int:
    if names:
        print("note: --check always checks every module", flush=True)
    changes = find_changes(course)
    if not changes:
        print(f"OK: {len(course.existing_modules())} modules paired and exported; tinytorch/ is up to date")
        return 0
    print(f"{len(changes)} file(s) would change; run `tito export` to update them:")
    for change in changes:
        print(f"  {change.path}: {change.reason}")
    return 1


COMMAND = Command(
    name="export",
    help="export modules/ into the tinytorch package (or --check that it is up to date)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
