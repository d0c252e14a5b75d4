"""The student's path on Colab: a student notebook alone, its first cell, modules < N only.

The slow tests simulate Colab for modules 01, 05, 11 and 16: a fresh virtual environment
with only what Colab has (current numpy from the package index, matplotlib, tqdm,
ipykernel; no tinytorch), `google.colab` loaded at kernel start, the committed student
notebook copied alone into an empty folder, and its Colab cell pointed at a local git
repository holding this checkout's generated package. The cell must fetch modules < N and
nothing else; the untouched notebook must fail at the first unfinished function with the
module's own message, and the notebook with its solutions filled in must run through.
(Colab runs Python 3.12; this machine has only 3.11, which the simulation uses.)

test_numpy_floor runs the framework's save/load and a short training on the lowest numpy
pyproject.toml admits (numpy 2.0, which Colab shipped in 2025).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest

from tito.colab import GENERATED, STUB_MARK, own_exports, package_files
from tito.course import MODULES, Course, resolve_module
from tito.links import Repository, colab_cell, first_code_cell
from tito.mutation import filled
from tito.student import student_notebook

REPO = Path(__file__).resolve().parents[1]
COURSE = Course(REPO)
slow = pytest.mark.slow


def test_colab_table_is_the_course_table() -> None:
    assert [(n, p) for n, p in GENERATED] == [(m.number, m.generated_relpath.as_posix()) for m in MODULES]


def test_package_files_are_the_modules_before_and_their_packages() -> None:
    assert package_files(1) == ["tinytorch/__init__.py"]
    files = package_files(13)
    assert "tinytorch/optim/compression.py" in files and "tinytorch/optim/__init__.py" in files
    assert "tinytorch/core/kernels.py" not in files and "tinytorch/tinygpt.py" not in files
    for path in files:
        assert (REPO / path).is_file(), f"{path} is not in the generated package"


def test_own_exports_skip_modules_still_holding_stubs(tmp_path: Path) -> None:
    core = tmp_path / "tinytorch" / "core"
    core.mkdir(parents=True)
    (core / "tensor.py").write_text("class Tensor: ...\n")
    (core / "activations.py").write_text(f'raise NotImplementedError("module 02 (activations): relu {STUB_MARK}")\n')
    (core / "layers.py").write_text("class Dense: ...\n")
    assert own_exports(tmp_path, 3) == ["tinytorch/core/tensor.py"], "finished modules < 3 only"


# ------------------------------------------------------------------ the simulation


def _venv(root: Path, packages: list[str]) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             *packages], capture_output=True, text=True)
    assert result.returncode == 0, f"pip install {' '.join(packages)} failed:\n{result.stdout}{result.stderr}"
    return python


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> dict:
    """A Colab-like kernel and a local 'GitHub' repository with this checkout's package."""
    root = tmp_path_factory.mktemp("colab")
    python = _venv(root / "venv", ["numpy", "matplotlib", "tqdm", "ipykernel"])
    fake = root / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s own module."""\n')
    (fake / "sitecustomize.py").write_text("import google.colab  # as on Colab: loaded before the notebook runs\n")
    kernels = root / "jupyter" / "kernels" / "colab-sim"
    kernels.mkdir(parents=True)
    origin = root / "origin"
    shutil.copytree(REPO / "tinytorch", origin / "tinytorch", ignore=shutil.ignore_patterns("__pycache__"))
    (origin / "tito").mkdir()
    shutil.copy2(REPO / "tito" / "colab.py", origin / "tito" / "colab.py")
    shutil.copytree(REPO / "modules", origin / "modules", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(origin)]
    subprocess.run([*git, "init", "--quiet", "--initial-branch=main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "--quiet", "-m", "course"], check=True)
    subprocess.run([*git, "config", "uploadpack.allowFilter", "true"], check=True)
    return {"root": root, "python": python, "fake": fake, "jupyter": root / "jupyter", "kernel": kernels,
            "repo": Repository("someone", "course", "main", git_url=f"file://{origin}")}


def _run(colab: dict, nb: nbformat.NotebookNode, name: str, allow_errors: bool,
         workspace: Path | None = None) -> tuple[nbformat.NotebookNode, Path]:
    from nbclient import NotebookClient

    folder = colab["root"] / name
    course_dir = colab["root"] / f"{name}-content" / "tinytorch-course"
    folder.mkdir()
    course_dir.parent.mkdir()
    (folder / "notebook.ipynb").write_text(nbformat.writes(nb))  # the notebook alone in a folder
    env = {"PYTHONPATH": str(colab["fake"]), "TINYTORCH_COURSE_DIR": str(course_dir), "MPLBACKEND": "Agg",
           "TINYTORCH_DATA": str(colab["root"] / "no-data"), "TINYTORCH_WORKSPACE": str(workspace or folder / "none")}
    (colab["kernel"] / "kernel.json").write_text(json.dumps({
        "argv": [str(colab["python"]), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab (simulated)", "language": "python", "env": env}))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(colab["jupyter"])
    try:
        client = NotebookClient(nb, kernel_name="colab-sim", timeout=900, allow_errors=allow_errors,
                                resources={"metadata": {"path": str(folder)}})
        client.execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb, course_dir


def _errors(nb: nbformat.NotebookNode) -> list[tuple[int, dict]]:
    return [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@slow
@pytest.mark.parametrize("name", ["01", "05", "11", "16"])
def test_student_notebook_runs_on_colab_with_earlier_modules_only(colab: dict, name: str) -> None:
    module = resolve_module(name)
    student = nbformat.read(student_notebook(COURSE, module), as_version=4)
    first_code_cell(student).source = colab_cell(colab["repo"], module)

    # The release as it is: the set-up works, then the first unfinished function says which module.
    untouched, course_dir = _run(colab, nbformat.from_dict(json.loads(json.dumps(student))),
                                 f"{module.prefix}-release", allow_errors=True)
    errors = _errors(untouched)
    assert errors, "an unfinished notebook must fail somewhere"
    index, first = errors[0]
    assert untouched.cells[index].get("metadata", {}).get("nbgrader", {}) or index > 0
    assert first["ename"] == "NotImplementedError", first
    assert f"module {module.prefix} ({module.name})" in first["evalue"], first["evalue"]
    fetched = sorted(p.relative_to(course_dir).as_posix() for p in course_dir.rglob("*.py")
                     if ".git" not in p.parts)
    assert fetched == sorted(package_files(module.number) + ["tito/colab.py"]), \
        "the set-up fetches modules before this one and nothing else"
    assert not (course_dir / "modules").exists(), "no dev file (no solution) is checked out"

    # The same notebook with its solutions written: every cell runs. From module 05 on, the
    # student keeps a workspace (on Drive) in which module 01 is finished and module 02 not:
    # their own module 01 is used, the reference for the rest.
    workspace = None
    if module.number > 2:
        workspace = colab["root"] / f"{module.prefix}-drive"
        own = workspace / "tinytorch" / "core"
        own.mkdir(parents=True)
        (own / "tensor.py").write_text((REPO / "tinytorch" / "core" / "tensor.py").read_text(encoding="utf-8")
                                       + "\nMADE_BY_THE_STUDENT = True\n")
        (own / "activations.py").write_text(f'raise NotImplementedError("module 02 (activations): relu {STUB_MARK}")\n')
        solved_cells = filled(student, COURSE.dev_py(module).read_text(encoding="utf-8"), module)
        solved_cells.cells.append(nbformat.v4.new_code_cell(
            "import tinytorch.core.tensor as t\nassert t.MADE_BY_THE_STUDENT"))
    else:
        solved_cells = filled(student, COURSE.dev_py(module).read_text(encoding="utf-8"), module)
    done, _ = _run(colab, solved_cells, f"{module.prefix}-solved", allow_errors=True, workspace=workspace)
    problems = [f"cell {i}: {o['ename']}: {o['evalue'][:300]}" for i, o in _errors(done)]
    assert problems == [], "\n".join(problems)
    setup_output = "".join(o.get("text", "") for o in first_code_cell(done).get("outputs", []))
    assert ("your workspace for 1 of them" in setup_output) == (workspace is not None), setup_output


@slow
def test_numpy_floor(tmp_path: Path) -> None:
    """The lowest numpy pyproject.toml allows: checkpoints, packages and a training run work."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    floor = next(re.fullmatch(r"numpy\s*>=\s*([\d.]+)", d.replace(" ", "")) for d in project["dependencies"]
                 if d.replace(" ", "").startswith("numpy"))
    assert floor, "pyproject.toml must state numpy's lower bound (numpy>=X.Y)"
    version = floor.group(1)
    python = _venv(tmp_path / "venv", [f"numpy=={version}.*" if version.count(".") == 1 else f"numpy=={version}",
                                       "tqdm", "matplotlib"])
    script = tmp_path / "floor.py"
    script.write_text(FLOOR_SCRIPT)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
           "HOME": str(tmp_path)}
    result = subprocess.run([str(python), str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"numpy {version}" in result.stdout and "OK" in result.stdout


FLOOR_SCRIPT = '''
import sys
from pathlib import Path

import numpy as np

from tinytorch.tinygpt import TinyGPT

out = Path(sys.argv[1])
print("numpy", np.__version__)
text = "to be, or not to be, that is the question. " * 20
model = TinyGPT(vocab_size=100, d_model=32, num_layers=1)
model.train_on_text(text, epochs=1)
model.save(out / "model.npz")
again = TinyGPT.load(out / "model.npz")
for name, value in model.state_dict().items():
    assert np.array_equal(value, again.state_dict()[name]), name
print(again.generate("to be", max_length=20))
print("OK")
'''
