"""Where the course lives on GitHub, and everything derived from it.

The GitHub account and repository of the course are written down once, in settings.ini
(`user`, `repo`, `branch`; nbdev reads the same keys). From them come:

* the Colab link of every module, which opens the *student* notebook
  (https://colab.research.google.com/github/USER/REPO/blob/BRANCH/student/NN_name/name_dev.ipynb),
  and the Binder link of the course (JupyterLab on `student/`);
* the **Colab cell**, the first code cell of every module: on Colab it fetches the course's
  reference build of the modules *before* this one (tito/colab.py; nothing of this module
  or later is downloaded), anywhere else it does nothing;
* the launch line near the top of README.md and the `repository: url:` of _config.yml
  (the book's launch buttons).

The template's own `tinytorch/tinytorch` is a placeholder (an account that is not the
course's): from it tito makes no launch link, the Colab cell refuses to install anything,
and `tito book --check` fails until an instructor names their repository.

`tito book --update` rewrites all of these (and each module's "Points: N" line) after
settings.ini changes; `tito book --check` and the tests report any that disagree.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

from tito.course import Course, Module
from tito.pairing import PY_FORMAT, read_py

#: How every version of the Colab cell starts (older ones installed the whole package):
#: how the cell is recognised.
COLAB_CELL_MARK = "# Colab set-up (the first cell of every module)"

#: The cell's comment and the Colab test; the body follows (placeholder or real repository).
COLAB_CELL_HEAD = COLAB_CELL_MARK + """: on Google Colab, fetch TinyTorch
# modules {before} from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
"""

COLAB_CELL_BODY = """\
    import os, runpy, subprocess
    course = os.environ.get("TINYTORCH_COURSE_DIR", "/content/tinytorch-course")
    if not os.path.isdir(course):
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", "--filter=blob:none", "--depth=1",
                        "--branch={branch}", "{url}", course], check=True)
        subprocess.run(["git", "-C", course, "checkout", "HEAD", "--", "tito/colab.py"], check=True)
    runpy.run_path(os.path.join(course, "tito", "colab.py"))["setup"](course, module={number})"""

COLAB_CELL_PLACEHOLDER_BODY = """\
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder {slug}): open the notebooks from your course's own Colab links")"""

#: The template's repositories: no launch link is ever made from them.
PLACEHOLDERS = frozenset({"tinytorch/tinytorch"})

#: Where `tito release` writes the committed student notebooks (tito/student.py).
STUDENT_DIR = "student"

#: README.md's launch line starts with this (one line, near the top).
LAUNCH_PREFIX = "**Launch:**"

#: "Points: N" in a module's first markdown cell (the total of its graded cells).
POINTS_LINE = re.compile(r"\*\*Points: (\d+(?:\.\d+)?)\*\*")

_CONFIG_URL = re.compile(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)(\S+)[ \t]*$", re.MULTILINE)
_CONFIG_BRANCH = re.compile(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+branch:[ \t]*)(\S+)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Repository:
    """The course's GitHub repository, as settings.ini names it."""

    user: str
    repo: str
    branch: str = "main"
    #: Where git clones it from, when not GitHub (tests use a local repository).
    git_url: str | None = None

    @property
    def is_placeholder(self) -> bool:
        """True for the template's own `tinytorch/tinytorch`, which is nobody's course."""
        return self.slug in PLACEHOLDERS and self.git_url is None

    @property
    def clone_url(self) -> str:
        return self.git_url or self.url

    @property
    def slug(self) -> str:
        return f"{self.user}/{self.repo}"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.slug}"

    def colab_url(self, module: Module) -> str:
        """Colab's link to the student notebook of `module`."""
        notebook = student_notebook_relpath(module)
        return f"https://colab.research.google.com/github/{self.slug}/blob/{self.branch}/{notebook}"

    @property
    def binder_url(self) -> str:
        return f"https://mybinder.org/v2/gh/{self.slug}/{self.branch}?urlpath=lab/tree/{STUDENT_DIR}"


def student_notebook_relpath(module: Module) -> str:
    """`student/NN_name/name_dev.ipynb`: the committed student notebook of `module`."""
    return f"{STUDENT_DIR}/{module.dirname}/{module.dev_stem}.ipynb"


def repository(course: Course) -> Repository:
    """The repository named by the course's settings.ini (`user`, `repo`, `branch`)."""
    parser = configparser.ConfigParser()
    parser.read(course.settings_file, encoding="utf-8")
    settings = parser["DEFAULT"]
    missing = [key for key in ("user", "repo") if not settings.get(key, "").strip()]
    if missing:
        raise ValueError(f"{course.settings_file} must set {' and '.join(missing)} (the course's GitHub repository)")
    return Repository(settings["user"].strip(), settings["repo"].strip(), settings.get("branch", "main").strip())


# ------------------------------------------------------------------------ the Colab cell


def colab_cell(repo: Repository, module: Module) -> str:
    """The source of the first code cell of `module`."""
    before = f"01-{module.number - 1:02d}" if module.number > 2 else ("01" if module.number == 2 else "(none)")
    body = COLAB_CELL_PLACEHOLDER_BODY if repo.is_placeholder else COLAB_CELL_BODY
    return (COLAB_CELL_HEAD + body).format(before=before, branch=repo.branch, url=repo.clone_url,
                                           number=module.number, slug=repo.slug)


def is_colab_cell(source: str) -> bool:
    return source.startswith(COLAB_CELL_MARK)


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((cell for cell in nb.cells if cell.cell_type == "code"), None)


# ------------------------------------------------------------------------ points


def graded_points(nb: nbformat.NotebookNode) -> float:
    """The total points of a notebook's graded cells (nbgrader `grade: true`)."""
    total = 0.0
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            total += float(meta.get("points", 0))
    return total


def format_points(points: float) -> str:
    return str(int(points)) if float(points).is_integer() else str(points)


def stated_points(nb: nbformat.NotebookNode) -> list[float]:
    """Every "**Points: N**" in the notebook's markdown cells."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found += [float(m.group(1)) for m in POINTS_LINE.finditer(cell.source)]
    return found


def points_sentence(points: float) -> str:
    return f"**Points: {format_points(points)}** (the total of this module's graded test cells)"


# ------------------------------------------------------------------------ checking


def module_problems(course: Course, module: Module, repo: Repository | None = None) -> list[str]:
    """What is wrong with a module's Colab cell and Points line (empty when both are right)."""
    repo = repo or repository(course)
    nb = read_py(course.dev_py(module))
    problems = []
    first = first_code_cell(nb)
    if first is None or not is_colab_cell(first.source):
        problems.append(f"{module.dirname}: the first code cell is not the Colab cell (run `tito book --update`)")
    elif first.source != colab_cell(repo, module):
        problems.append(f"{module.dirname}: the Colab cell is not the one for {repo.url}@{repo.branch} "
                        f"(run `tito book --update`)")
    intro = next((cell for cell in nb.cells if cell.cell_type == "markdown"), None)
    stated = stated_points(nb)
    total = graded_points(nb)
    if intro is None or not POINTS_LINE.search(intro.source):
        problems.append(f"{module.dirname}: the first markdown cell does not state **Points: "
                        f"{format_points(total)}** (run `tito book --update`)")
    elif stated != [total]:
        said = ", ".join(format_points(p) for p in stated)
        problems.append(f"{module.dirname}: the notebook states Points: {said}, but its graded cells "
                        f"add up to {format_points(total)} (run `tito book --update`)")
    return problems


def launch_line(course: Course, repo: Repository | None = None) -> str:
    """README.md's launch line (without links while settings.ini holds the placeholder)."""
    repo = repo or repository(course)
    if repo.is_placeholder:
        return (f"{LAUNCH_PREFIX} no Binder or Colab links yet: settings.ini names the placeholder repository "
                f"`{repo.slug}`; set `user`, `repo` and `branch` there to your course's GitHub repository and run "
                f"`bin/tito book --update`.")
    modules = course.existing_modules()
    colab = repo.colab_url(modules[0]) if modules else f"https://colab.research.google.com/github/{repo.slug}"
    return (f"{LAUNCH_PREFIX} [![Binder](https://mybinder.org/badge_logo.svg)]({repo.binder_url}) "
            f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
            f"(the student notebooks, `{STUDENT_DIR}/`; every module opens on Colab the same way; the repository, "
            f"`{repo.slug}`, is set in settings.ini)")


def placeholder_problem(repo: Repository) -> list[str]:
    """Why no launch link may be made (empty for a real repository)."""
    if not repo.is_placeholder:
        return []
    return [f"settings.ini names the placeholder repository {repo.slug} (not your course's): set `user`, `repo` "
            f"and `branch` to your GitHub repository and run `tito book --update`; until then no launch link is made"]


def config_repository(config_text: str) -> tuple[str | None, str | None]:
    """(url, branch) of the `repository:` section of _config.yml."""
    url, branch = _CONFIG_URL.search(config_text), _CONFIG_BRANCH.search(config_text)
    return (url.group(2) if url else None, branch.group(2) if branch else None)


def site_problems(course: Course, repo: Repository | None = None) -> list[str]:
    """README's launch line and _config.yml's repository, against settings.ini."""
    repo = repo or repository(course)
    problems = []
    readme = course.root / "README.md"
    if readme.exists() and launch_line(course, repo) not in readme.read_text(encoding="utf-8").splitlines():
        problems.append("README.md: the launch line is missing or out of date (run `tito book --update`)")
    config = course.root / "_config.yml"
    if config.exists():
        url, branch = config_repository(config.read_text(encoding="utf-8"))
        if (url, branch) != (repo.url, repo.branch):
            problems.append(f"_config.yml: repository is {url} ({branch}), settings.ini says {repo.url} "
                            f"({repo.branch}) (run `tito book --update`)")
    return problems


# ------------------------------------------------------------------------ updating


def update_module(course: Course, module: Module, repo: Repository | None = None) -> bool:
    """Put the current Colab cell first and the right Points line into a module's dev file.

    Edits the `.py` only (run `tito export` afterwards to bring the `.ipynb` in step).
    Returns whether the file changed.
    """
    repo = repo or repository(course)
    py = course.dev_py(module)
    text = py.read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt=PY_FORMAT)
    first = first_code_cell(nb)
    if first is not None and is_colab_cell(first.source):
        first.source = colab_cell(repo, module)
    else:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(index, nbformat.v4.new_code_cell(colab_cell(repo, module)))
    intro = next((cell for cell in nb.cells if cell.cell_type == "markdown"), None)
    sentence = points_sentence(graded_points(nb))
    if intro is not None:
        lines = intro.source.split("\n")
        kept = [line for line in lines if not POINTS_LINE.search(line)]
        while kept and not kept[-1].strip():
            kept.pop()
        intro.source = "\n".join(kept + ["", sentence])
    new_text = jupytext.writes(nb, fmt=PY_FORMAT)
    if new_text != text:
        py.write_text(new_text, encoding="utf-8")
        return True
    return False


def update_site(course: Course, repo: Repository | None = None) -> list[Path]:
    """Rewrite README's launch line and _config.yml's repository from settings.ini."""
    repo = repo or repository(course)
    changed = []
    readme = course.root / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        lines = text.split("\n")
        line = launch_line(course, repo)
        index = next((i for i, l in enumerate(lines) if l.startswith(LAUNCH_PREFIX)), None)
        if index is None:
            # After the first paragraph following the title.
            index = next((i for i, l in enumerate(lines) if i > 1 and not l.strip()), len(lines))
            lines[index:index] = ["", line]
        else:
            lines[index] = line
        if "\n".join(lines) != text:
            readme.write_text("\n".join(lines), encoding="utf-8")
            changed.append(readme)
    config = course.root / "_config.yml"
    if config.exists():
        text = config.read_text(encoding="utf-8")
        new = _CONFIG_URL.sub(lambda m: m.group(1) + repo.url, text, count=1)
        new = _CONFIG_BRANCH.sub(lambda m: m.group(1) + repo.branch, new, count=1)
        if new != text:
            config.write_text(new, encoding="utf-8")
            changed.append(config)
    return changed
