"""`tito book [--check | --update]`: the course book (Jupyter Book 1.x)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

from tito.command import Command
from tito.course import Course, Module
from tito.exporting import export
from tito.links import (module_problems, placeholder_problem, repository, site_problems, student_notebook_relpath,
                        update_module, update_site)

TOC_FILE = "_toc.yml"
CONFIG_FILE = "_config.yml"
BOOK_VENV = ".venv-book"

#: The parts of the book, by module number (the toc lists each existing module in its part).
PARTS: tuple[tuple[str, range], ...] = (
    ("Foundations", range(1, 6)),
    ("Training", range(6, 9)),
    ("Architectures", range(9, 12)),
    ("Systems", range(12, 16)),
    ("Capstone", range(16, 17)),
)

DESCRIPTION = f"""\
Build the course book: README.md as its front page and one chapter per module: the
module's student notebook from student/ (written by `tito release`; solutions stubbed),
with the outputs of a run of the reference notebook in every cell the two share (figures,
printed results; --no-execute skips that run). `--instructor` builds from the dev notebooks instead, solutions and all. The chapters are listed in
{TOC_FILE}, the settings in {CONFIG_FILE}. Every page has Binder and Colab launch buttons.

Jupyter Book 1.x cannot share the development environment (it needs older Markdown
packages than Jupytext's), so on first use tito installs the `book` extra of
pyproject.toml into its own environment, {BOOK_VENV}/ (about half a minute, from PyPI).
The HTML goes to _build/html/ (or --output DIR/_build/html/).

--check builds nothing and installs nothing (CI runs it): {TOC_FILE} must list every
module that exists, in course order, and only files that exist; {CONFIG_FILE} must never
execute notebooks and must name the repository of settings.ini; README.md's launch line
and every module's Colab cell (its first code cell) must name that repository too, and
every module must state its points ("**Points: N**", the sum of its graded cells).

--update rewrites what --check compares from the course: {TOC_FILE} (a chapter for every
existing module), the launch line of README.md, the repository of {CONFIG_FILE}, and in
every module the Colab cell and the Points line (then re-exports the modules it changed).
Change the GitHub user/repository of the course in settings.ini (`user`, `repo`,
`branch`), then run `tito book --update`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="check the toc, config and launch links; build nothing")
    group.add_argument("--update", action="store_true",
                       help="rewrite the toc, launch links, Colab cells and Points lines from the course")
    parser.add_argument("--output", type=Path, metavar="DIR", help="build into DIR/_build/html (default: the course root)")
    parser.add_argument("--no-execute", action="store_true",
                        help="show the student notebooks without outputs (faster: no notebook is run)")
    parser.add_argument("--instructor", action="store_true",
                        help="build the instructor book from the dev notebooks (solutions shown) instead of the student one")


# ------------------------------------------------------------------------------ the toc


def toc_files(course: Course) -> list[str]:
    """Every `file:` of _toc.yml, in order (the root first)."""
    toc = yaml.safe_load((course.root / TOC_FILE).read_text(encoding="utf-8")) or {}
    files = [toc.get("root", "")]

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def module_page(course: Course, module: Module, instructor: bool = False) -> str:
    """The toc entry of a module: its student notebook (student/, what `tito release`
    writes), or with `instructor` its dev notebook; relative to the root, no extension."""
    if instructor:
        return course.dev_ipynb(module).relative_to(course.root).with_suffix("").as_posix()
    return student_notebook_relpath(module).removesuffix(".ipynb")


def _exists(course: Course, page: str) -> bool:
    return any((course.root / f"{page}{ext}").exists() for ext in ("", ".md", ".ipynb"))


def toc_problems(course: Course) -> list[str]:
    path = course.root / TOC_FILE
    if not path.exists():
        return [f"{TOC_FILE} does not exist (run `tito book --update`)"]
    toc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = []
    if toc.get("format") != "jb-book":
        problems.append(f"{TOC_FILE}: `format: jb-book` expected")
    files = toc_files(course)
    for page in files:
        if not page or not _exists(course, page):
            problems.append(f"{TOC_FILE}: {page or 'the root'} does not exist")
    pages = [module_page(course, m) for m in course.existing_modules()]
    for module, page in zip(course.existing_modules(), pages):
        count = files.count(page)
        if count != 1:
            problems.append(f"{TOC_FILE}: module {module.dirname} ({page}) is listed {count} times, not once "
                            f"(run `tito book --update`)")
    listed = [f for f in files if f in pages]
    if listed != sorted(listed, key=pages.index):
        problems.append(f"{TOC_FILE}: the modules are not in course order")
    return problems


def render_toc(course: Course, instructor: bool = False) -> str:
    """_toc.yml with a chapter for every existing module, grouped into the course's parts
    (the student notebooks; the dev notebooks, solutions and all, with `instructor`)."""
    lines = ["# Table of contents of the TinyTorch course book (Jupyter Book).",
             "# One chapter per module that exists; `tito book --update` rewrites this file.",
             "format: jb-book", "root: README", "parts:"]
    existing = course.existing_modules()
    for caption, numbers in PARTS:
        chapters = [m for m in existing if m.number in numbers]
        if chapters:
            lines += [f'  - caption: "{caption}"', "    chapters:"]
            lines += [f"      - file: {module_page(course, m, instructor)}" for m in chapters]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the config


def config_problems(course: Course) -> list[str]:
    path = course.root / CONFIG_FILE
    if not path.exists():
        return [f"{CONFIG_FILE} does not exist"]
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems = []
    if str(config.get("execute", {}).get("execute_notebooks")) not in ("off", "False"):
        problems.append(f"{CONFIG_FILE}: execute.execute_notebooks must be \"off\" (the book never runs notebooks)")
    if config.get("only_build_toc_files") is not True:
        problems.append(f"{CONFIG_FILE}: only_build_toc_files must be true (nothing outside {TOC_FILE})")
    excluded = set(config.get("exclude_patterns", []))
    for pattern in (".venv", BOOK_VENV, "_build", "course"):
        if pattern not in excluded:
            problems.append(f"{CONFIG_FILE}: exclude_patterns must contain {pattern}")
    buttons = config.get("launch_buttons", {})
    for key in ("colab_url", "binderhub_url"):
        if not buttons.get(key):
            problems.append(f"{CONFIG_FILE}: launch_buttons.{key} is not set")
    return problems


def book_problems(course: Course) -> list[str]:
    """Everything `tito book --check` reports (empty when the book is consistent)."""
    problems = toc_problems(course) + config_problems(course)
    try:
        repo = repository(course)
    except ValueError as exc:
        return problems + [str(exc)]
    problems += placeholder_problem(repo) + site_problems(course, repo)
    for module in course.existing_modules():
        problems += module_problems(course, module, repo)
    return problems


# ------------------------------------------------------------------------------ building


def book_requirements(course: Course) -> list[str]:
    import tomllib

    project = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project.get("optional-dependencies", {}).get("book", []))


BOOK_CONSTRAINTS = "constraints-book.txt"


def ensure_jupyter_book(course: Course) -> Path:
    """The jupyter-book command of .venv-book/, installed there on first use (and again
    whenever constraints-book.txt, the book environment's pins, changes)."""
    venv = course.root / BOOK_VENV
    command = venv / ("Scripts/jupyter-book.exe" if os.name == "nt" else "bin/jupyter-book")
    constraints = course.root / BOOK_CONSTRAINTS
    want = constraints.read_text(encoding="utf-8") if constraints.exists() else ""
    stamp = venv / ".tito-installed"
    if command.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == want:
        return command
    requirements = book_requirements(course)
    if not requirements:
        raise RuntimeError("pyproject.toml has no `book` extra to install")
    print(f"tito book: installing {' '.join(requirements)} into {BOOK_VENV}/ (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pins = ["-c", str(constraints)] if constraints.exists() else []
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *pins, *requirements], check=True)
    stamp.write_text(want, encoding="utf-8")
    return command


def _build_config(course: Course, folder: Path) -> Path | None:
    """While settings.ini holds the placeholder repository, a copy of _config.yml without
    launch or repository buttons (no link is ever made to the placeholder); else None."""
    if not repository(course).is_placeholder:
        return None
    config = yaml.safe_load((course.root / CONFIG_FILE).read_text(encoding="utf-8")) or {}
    config.pop("launch_buttons", None)
    config.pop("repository", None)
    config.setdefault("html", {})["use_repository_button"] = False
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    if "html_static_path" in sphinx:  # relative to the config file, which now lives elsewhere
        sphinx["html_static_path"] = [str(course.root / p) for p in sphinx["html_static_path"]]
    path = folder / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


#: Top-level entries of the course never shown in (or needed by) the book.
_NOT_IN_BOOK = {"student", "_build", ".venv", BOOK_VENV, "course", ".git"}


def executed_student_book(course: Course, root: Path) -> list[str]:
    """A book root in `root` whose student notebooks carry outputs: each dev notebook is run
    (the reference solutions), and every cell the student notebook shares with it word for
    word (explanations, provided code, checks: not the solution cells) gets its outputs:
    printed results, loss curves, attention maps, the roofline. Everything else of the course
    is linked in. Returns the problems met (a module that failed to run keeps no outputs
    past its failure); raises RuntimeError if any solution text reached an output."""
    from tito.grading import find_leaks, instructor_text, secret_lines
    from tito.notebooks import run_dev_file

    for entry in course.root.iterdir():
        if entry.name not in _NOT_IN_BOOK:
            (root / entry.name).symlink_to(entry)
    problems = []
    for module in course.existing_modules():
        student = nbformat.read(course.root / student_notebook_relpath(module), as_version=4)
        result = run_dev_file(course.dev_py(module), course.root)
        if not result.ok:
            problems.append(f"{module.dirname}: {result.error}")
        outputs: dict[str, list] = {}
        for cell in (result.notebook.cells if result.notebook is not None else []):
            if cell.cell_type == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                outputs.setdefault(cell.source, cell.get("outputs", []))
        for cell in student.cells:
            if cell.cell_type == "code" and not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                cell.outputs = [o for o in outputs.get(cell.source, []) if o.get("output_type") != "error"]
        target = root / student_notebook_relpath(module)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student, target)
        leaks = find_leaks(secret_lines(instructor_text(course, module)), [target])
        if leaks:
            raise RuntimeError(f"{module.dirname}: solution text in the outputs: {leaks[:3]}")
    return problems


def build(course: Course, output: Path | None, instructor: bool = False, execute: bool = True) -> int:
    blocking = toc_problems(course) + config_problems(course)
    if blocking:
        _print_problems(blocking)
        return 1
    for problem in book_problems(course):
        if problem not in blocking:
            print(f"warning: {problem}")
    missing = [m.dirname for m in course.existing_modules()
               if not instructor and not (course.root / student_notebook_relpath(m)).exists()]
    if missing:
        print(f"tito book: no student notebook for {', '.join(missing)}: run `tito release` first")
        return 1
    command = ensure_jupyter_book(course)
    out = (output or course.root).resolve()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        extra, source = [], course.root
        if execute and not instructor:
            source = Path(scratch) / "book"
            source.mkdir()
            print("tito book: running every module's notebook for its outputs ...", flush=True)
            for problem in executed_student_book(course, source):
                print(f"warning: {problem}")
        config = _build_config(course, Path(scratch))
        if config is not None:
            extra += ["--config", str(config)]
        if instructor:  # the dev notebooks, solutions and all: only when asked for
            toc = Path(scratch) / TOC_FILE
            toc.write_text(render_toc(course, instructor=True), encoding="utf-8")
            extra += ["--toc", str(toc)]
        result = subprocess.run([str(command), "build", str(source), "--path-output", str(out),
                                 "--builder", "html", *extra], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-4000:] + result.stderr[-4000:])
        print("tito book: the build failed")
        return 1
    which = "instructor book (with solutions)" if instructor else "student book"
    print(f"built the {which} in {time.perf_counter() - started:.1f} s: {out / '_build' / 'html' / 'index.html'}")
    return 0


# ------------------------------------------------------------------------------ commands


def _print_problems(problems: list[str]) -> None:
    print(f"{len(problems)} problem(s) with the book:")
    for problem in problems:
        print(f"  {problem}")


def check(course: Course) -> int:
    problems = book_problems(course)
    if problems:
        _print_problems(problems)
        return 1
    print(f"OK: {TOC_FILE} lists all {len(course.existing_modules())} modules; {CONFIG_FILE}, README.md and "
          f"every module's Colab cell name {repository(course).url}; every module states its points")
    return 0


def update(course: Course) -> int:
    repo = repository(course)
    toc = course.root / TOC_FILE
    changed: list[Path] = []
    if not toc.exists() or toc_problems(course):
        toc.write_text(render_toc(course), encoding="utf-8")
        changed.append(toc)
    changed += update_site(course, repo)
    edited = [m for m in course.existing_modules() if update_module(course, m, repo)]
    changed += [course.dev_py(m) for m in edited]
    if edited:
        export(course, edited)
    for path in changed:
        print(f"  updated {path.relative_to(course.root)}")
    print(f"tito book --update: {len(changed)} file(s) changed" + (" (modules re-exported)" if edited else ""))
    return check(course)


def run(args: argparse.Namespace, course: Course) -> int:
    if args.check:
        return check(course)
    if args.update:
        return update(course)
    return build(course, args.output, instructor=args.instructor, execute=not args.no_execute)


COMMAND = Command(
    name="book",
    help="build the course book (Jupyter Book), or --check / --update its toc and links",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
