"""`tito export --check`: would exporting change anything? Changes nothing in the repo.

Two questions, per the course's rules:
(a) does every dev `.py` agree with its `.ipynb` (see `tito.pairing.pair_differences`)?
(b) would a fresh export change, add or remove any file under `tinytorch/`? The export is
    run for real in a temporary copy of settings.ini, the dev files and `tinytorch/`, and
    the two trees are compared.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tito.course import LIB_NAME, Course, Module
from tito.exporting import ExportError, export
from tito.pairing import pair_differences


@dataclass(frozen=True)
class Change:
    """A file (relative to the course root, POSIX style) that exporting would touch, and why."""

    path: str
    reason: str


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tracked_files(course: Course) -> dict[str, str]:
    """Digest of every file an export may write: the package and the dev file pairs."""
    files: dict[str, str] = {}
    if course.lib_dir.exists():
        for path in course.lib_dir.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(course.root).as_posix()] = _digest(path)
    for module in course.existing_modules():
        for path in (course.dev_py(module), course.dev_ipynb(module)):
            if path.is_file():
                files[path.relative_to(course.root).as_posix()] = _digest(path)
    return files


def _copy_for_export(course: Course, scratch: Path) -> Course:
    """Copy what an export reads and writes into `scratch` (keeping modification times)."""
    copy = Course(scratch)
    shutil.copy2(course.settings_file, copy.settings_file)
    for module in course.existing_modules():
        copy.module_dir(module).mkdir(parents=True)
        for path in (course.dev_py(module), course.dev_ipynb(module)):
            if path.exists():
                shutil.copy2(path, copy.module_dir(module) / path.name)
    if course.lib_dir.exists():
        shutil.copytree(course.lib_dir, copy.lib_dir, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def pairing_changes(course: Course) -> list[Change]:
    """Dev files whose `.py` and `.ipynb` disagree."""
    changes = []
    for module in course.existing_modules():
        reasons = pair_differences(course.dev_py(module), course.dev_ipynb(module))
        if reasons:
            ipynb = course.dev_ipynb(module).relative_to(course.root).as_posix()
            changes.append(Change(ipynb, "not in step with its .py: " + "; ".join(reasons)))
    return changes


def export_changes(course: Course) -> list[Change]:
    """Files a fresh export of every existing module would change, add or remove."""
    with tempfile.TemporaryDirectory(prefix="tito-check-") as tmp:
        copy = _copy_for_export(course, Path(tmp))
        try:
            export(copy, copy.existing_modules())
        except ExportError as exc:
            return [Change(LIB_NAME + "/", f"export fails: {exc}")]
        before, after = tracked_files(course), tracked_files(copy)
    changes = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            changes.append(Change(path, "would be removed"))
        elif path not in before:
            changes.append(Change(path, "would be created"))
        elif before[path] != after[path]:
            changes.append(Change(path, "would change"))
    return changes


def find_changes(course: Course) -> list[Change]:
    """Everything `tito export` would change, with reasons; empty when all is up to date."""
    found: dict[str, list[str]] = {}
    for change in pairing_changes(course) + export_changes(course):
        found.setdefault(change.path, []).append(change.reason)
    return [Change(path, "; ".join(reasons)) for path, reasons in sorted(found.items())]


def module_is_current(course: Course, module: Module, changes: list[Change]) -> bool:
    """True when none of `changes` touches the module's dev files or generated file."""
    own = {
        p.relative_to(course.root).as_posix()
        for p in (course.dev_py(module), course.dev_ipynb(module), course.generated_file(module))
    }
    return not any(change.path in own for change in changes)
