"""Which code produced a record: the checked-out git commit and whether the work tree was dirty.

Every results JSON of the milestones (milestones/common.py), the benchmarks
(benchmarks/common.py, benchmarks/suite.py) and `tito mutants --record` carries
`git_state(root)`. Only the standard library is used, so scripts outside tito can import it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: Changes under these folders do not make the tree dirty: they hold the records themselves
#: (a run that rewrites results/ while it works is still a run of a clean commit).
RECORD_DIRS = ("results",)


def _git(root: Path, *args: str) -> str | None:
    """`git ARGS` in `root`: its output, or None when git is missing or fails."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})   # never take the index lock
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: str | os.PathLike) -> dict:
    """{"commit": the commit checked out in `root` (40 hex digits) or None, "dirty": whether
    tracked or untracked files outside results/ differ from it}.

    `root` must be the top of the repository (it holds `.git`): a folder without one, such as
    a student workspace, gives {"commit": None, "dirty": False} even inside another repository.
    """
    root = Path(root)
    if not (root / ".git").exists():
        return {"commit": None, "dirty": False}
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": False}
    status = _git(root, "status", "--porcelain", "--", ".", *(f":(exclude){d}" for d in RECORD_DIRS))
    return {"commit": commit, "dirty": bool(status)}
