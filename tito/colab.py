"""Set up a Colab runtime (or any bare Python) for module N of the course: modules < N only.

The first cell of every student notebook (the "Colab cell", written by tito/links.py)
clones the course repository *without checking anything out* (`--no-checkout
--filter=blob:none`: no file content is downloaded), checks out this one file, and calls
`setup(course_dir, N)`, which

1. checks out the generated package files of modules 1 .. N-1 and nothing else: no dev
   file, no solution of module N or later is downloaded;
2. where the student has their own export of an earlier module (a workspace on their
   Google Drive, `MyDrive/tinytorch`, made with `tito workspace` and `tito export`), uses
   that file instead of the reference one, so their own Tensor carries on into later
   modules; a module still holding release stubs is taken from the reference;
3. puts the package first on `sys.path`.

Standard library only: this file runs before anything is installed. Run it by hand as
`python tito/colab.py COURSE_DIR N [WORKSPACE]` (tests do, to simulate Colab).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: (number, generated file) of every module, in order. tests/test_colab.py checks this
#: table against tito/course.py (this file cannot import it: it runs alone on Colab).
GENERATED = (
    (1, "tinytorch/core/tensor.py"),
    (2, "tinytorch/core/activations.py"),
    (3, "tinytorch/core/layers.py"),
    (4, "tinytorch/core/losses.py"),
    (5, "tinytorch/core/autograd.py"),
    (6, "tinytorch/core/optimizers.py"),
    (7, "tinytorch/core/training.py"),
    (8, "tinytorch/core/dataloader.py"),
    (9, "tinytorch/core/spatial.py"),
    (10, "tinytorch/core/normalization.py"),
    (11, "tinytorch/core/attention.py"),
    (12, "tinytorch/optim/compression.py"),
    (13, "tinytorch/core/kernels.py"),
    (14, "tinytorch/bench/benchmarking.py"),
    (15, "tinytorch/mlops/mlops.py"),
    (16, "tinytorch/tinygpt.py"),
)

#: Text of the stubs a release leaves in an unfinished module's generated file.
STUB_MARK = "is not implemented yet"

#: Where a student keeps their workspace on Google Drive (once Drive is mounted);
#: $TINYTORCH_WORKSPACE names another folder.
DRIVE_WORKSPACE = "/content/drive/MyDrive/tinytorch"


def package_files(module: int) -> list[str]:
    """The files of the reference package that module `module` needs: modules < `module`
    and the package's `__init__.py` files."""
    files = [path for number, path in GENERATED if number < module]
    inits = {"tinytorch/__init__.py"}
    for path in files:
        parts = Path(path).parts[:-1]
        inits.update("/".join(parts[:i]) + "/__init__.py" for i in range(2, len(parts) + 1))
    return sorted(inits) + files


def own_exports(workspace: Path, module: int) -> list[str]:
    """The generated files of modules < `module` that the student's workspace holds,
    finished (no release stub left in them)."""
    own = []
    for number, path in GENERATED:
        mine = workspace / path
        if number < module and mine.is_file() and STUB_MARK not in mine.read_text(encoding="utf-8"):
            own.append(path)
    return own


def setup(course_dir: str | os.PathLike, module: int, workspace: str | os.PathLike | None = None) -> Path:
    """Check out modules < `module` of the reference package in the clone `course_dir`
    (made with `--no-checkout`), replace them by the student's own finished exports from
    `workspace` where there are any, and put the package on sys.path. Returns the folder
    that holds `tinytorch/`."""
    course = Path(course_dir)
    workspace = workspace or os.environ.get("TINYTORCH_WORKSPACE") or DRIVE_WORKSPACE
    if not 1 <= module <= len(GENERATED):
        raise ValueError(f"module must be 1..{len(GENERATED)}, got {module}")
    files = package_files(module)
    subprocess.run(["git", "-C", str(course), "checkout", "HEAD", "--", *files], check=True)
    mine = own_exports(Path(workspace), module)
    for path in mine:
        shutil.copyfile(Path(workspace) / path, course / path)
    if str(course) not in sys.path:
        sys.path.insert(0, str(course))
    for name in [n for n in sys.modules if n == "tinytorch" or n.startswith("tinytorch.")]:
        del sys.modules[name]  # a re-run of the cell sees the files just written
    names = ", ".join(f"{n:02d}" for n, _ in GENERATED if n < module) or "none"
    print(f"TinyTorch set up for module {module:02d}: modules before it ({names}) from "
          + (f"your workspace for {len(mine)} of them, the course's reference for the rest" if mine
             else "the course's reference build"))
    return course


if __name__ == "__main__":  # python tito/colab.py COURSE_DIR N [WORKSPACE]
    setup(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
