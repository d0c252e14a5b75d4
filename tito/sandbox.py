"""A sandbox for running one submission: its own process tree, file system view and limits.

Grading runs student code. Inside the sandbox that code sees

* `/tmp/submission/`: the only writable folder, holding the `tinytorch` package built for
  this submission (modules < N from the reference build, module N from the submission),
  the files tito put there, and a fresh HOME;
* the Python environment, read-only, with the course's editable-install hooks blanked;
* the rest of the machine's file system read-only, except that the course checkout, the
  nbgrader course folder and any other installed `tinytorch` are covered by empty folders,
  and `/tmp` is a fresh, empty tmpfs;
* its own process tree (`/proc` shows only the sandbox's processes), no capabilities, and
  (for the check harness) no network at all.

It is built with Linux namespaces through util-linux (`unshare` and `setpriv`, part of every
Linux distribution): an unprivileged user namespace when the grader is not root. Each
sandbox also gets a wall-clock limit (its whole process tree is killed) and an address-space
limit (RLIMIT_AS). Where namespaces are not available (macOS, a kernel with unprivileged
user namespaces switched off), `available()` says why, and tito refuses to grade unless the
instructor explicitly passes `--no-sandbox`.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: Where the submission's folder appears inside the sandbox.
INSIDE = Path("/tmp/submission")
DEFAULT_MEMORY_MB = 4096


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when sandboxes can be made here, otherwise why not."""
    if not sys.platform.startswith("linux"):
        return f"grading sandboxes need Linux namespaces; this is {sys.platform}"
    for tool in ("unshare", "setpriv", "mount", "prlimit"):
        if shutil.which(tool) is None:
            return f"`{tool}` (util-linux) is not installed"
    probe = subprocess.run(_unshare_prefix(isolate_net=True) + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("this kernel does not let tito create namespaces "
                f"(`unshare --user --mount --pid` failed: {probe.stderr.strip() or probe.returncode})")
    return None


def _unshare_prefix(isolate_net: bool) -> list[str]:
    return ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
            "--mount-proc"] + (["--net"] if isolate_net else [])


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            points.append(point)
    return points


def _is_under(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def installed_packages(name: str, hide_root: str) -> tuple[str, ...]:
    """Folders from which a clean interpreter would import `name`, outside `hide_root`."""
    probe = subprocess.run(
        [sys.executable, "-I", "-c",
         f"import importlib.util as u; s = u.find_spec({name!r}); "
         "print('\\n'.join(s.submodule_search_locations or []) if s else '')"],
        capture_output=True, text=True, cwd="/", env={"PATH": os.environ.get("PATH", "")})
    return tuple(p for p in probe.stdout.split() if p and not _is_under(Path(p), Path(hide_root)))


def _scratch_parent(course_root: Path) -> str | None:
    """Where sandbox folders are made: outside /tmp (the sandbox covers /tmp with a fresh
    tmpfs, and its folder must stay reachable) and outside the course checkout."""
    for candidate in (Path("/var/tmp"), Path.home() / ".cache" / "tito-sandboxes"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK) and not _is_under(candidate, course_root) \
                and not _is_under(candidate, Path("/tmp")):
            return str(candidate)
    return None


@dataclass
class Sandbox:
    """A folder to fill, then commands run with it as their only writable world.

    `course_root` is hidden (covered); `hide` lists more folders to cover (the nbgrader
    course folder when it lies elsewhere)."""

    course_root: Path
    hide: list[Path] = field(default_factory=list)
    memory_mb: int = DEFAULT_MEMORY_MB
    isolate: bool = True
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tito-sandbox-", dir=_scratch_parent(self.course_root)))
        os.chmod(self.folder, 0o700)
        (self.folder / "home").mkdir()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---------------------------------------------------------------- paths

    def inside(self, path: Path) -> Path:
        """Where a file of the sandbox folder appears to the sandboxed process."""
        if not self.isolate:
            return Path(path)
        return INSIDE / Path(path).relative_to(self.folder)

    @property
    def _venv(self) -> Path | None:
        prefix = Path(sys.prefix)
        return prefix if prefix != Path(sys.base_prefix) and _is_under(prefix, self.course_root) else None

    def python(self) -> str:
        """The interpreter, as the sandboxed process names it."""
        venv = self._venv
        if self.isolate and venv is not None:
            return str(INSIDE / ".venv" / Path(sys.executable).relative_to(venv))
        return sys.executable

    # ---------------------------------------------------------------- running

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        home = self.inside(self.folder / "home")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "IPYTHONDIR": str(home / ".ipython"),
            "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(home / ".matplotlib"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": str(self.inside(self.folder)),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        for key in ("TINYTORCH_DATA", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra or {})
        return env

    def setup_script(self, own_network: bool = True, cwd: Path | None = None) -> str:
        """The shell commands that build the sandbox's view, run inside the new namespaces.
        With `own_network`, the sandbox has a network of its own: loopback only."""
        q = shlex.quote
        root, folder = self.course_root.resolve(), self.folder
        lines = ["set -e"]
        if own_network:
            lines.append("ip link set lo up 2>/dev/null || ifconfig lo up 2>/dev/null || true")
        venv = self._venv
        if venv is not None:
            (folder / ".venv").mkdir(exist_ok=True)
            lines += [f"mount --bind {q(str(venv))} {q(str(folder / '.venv'))}",
                      f"mount -o remount,bind,ro {q(str(folder / '.venv'))}"]
        originals = [p for p in _mount_points()
                     if not p.startswith(("/proc", "/sys", "/dev", "/tmp")) and not _is_under(Path(p), root)]
        # The folder lies outside /tmp (see `_scratch_parent`), so it stays visible after /tmp
        # is covered, and appears at INSIDE; the venv was bound into it above.
        lines += ["mount -t tmpfs -o size=1g,mode=1777 tmpfs /tmp",
                  f"mkdir -p {INSIDE}",
                  f"mount --rbind {q(str(folder))} {INSIDE}"]
        if not _is_under(root, Path("/tmp")):  # under /tmp it is covered already
            lines.append(f"mount -t tmpfs -o size=4k,mode=755 tmpfs {q(str(root))}")
        covered = {str(p.resolve()) for p in self.hide
                   if p.exists() and not _is_under(p, root) and not _is_under(p, Path("/tmp"))}
        covered |= set(installed_packages("tinytorch", str(root)))
        covered |= set(installed_packages("tito", str(root)))
        for path in sorted(covered):
            lines.append(f"mount -t tmpfs -o size=4k,mode=755 tmpfs {q(path)}")
        if venv is not None:
            lines.append(f"for f in {INSIDE}/.venv/lib/python*/site-packages/__editable__*; do "
                         f"[ -e \"$f\" ] && mount --bind /dev/null \"$f\"; done")
        for point in originals:
            lines.append(f"mount -o remount,bind,ro {q(point)} 2>/dev/null || true")
        lines.append(f"cd {q(str(cwd or INSIDE))}")
        return "\n".join(lines) + "\n"

    def command(self, argv: list[str], net: bool = False, cwd: Path | None = None) -> list[str]:
        """`argv` (with paths as seen inside) wrapped so that it runs in the sandbox, in `cwd`
        (a path inside; default: the sandbox folder), with the loopback network of its own
        unless `net` (then it shares the grader's, e.g. to talk to Jupyter), and limited to
        `memory_mb` of address space."""
        limit = ["prlimit", f"--as={self.memory_mb * 1024 * 1024}", "--"] if shutil.which("prlimit") else []
        if not self.isolate:
            return limit + argv
        inner = " ".join(shlex.quote(a) for a in
                         ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--", *argv])
        return (limit + _unshare_prefix(isolate_net=not net)
                + ["sh", "-c", self.setup_script(own_network=not net, cwd=cwd) + f"exec {inner}\n"])

    def popen(self, argv: list[str], net: bool = False, pass_fds: tuple[int, ...] = (), **kwargs) -> subprocess.Popen:
        """Start `argv` in the sandbox, in a process group of its own (see `kill_tree`)."""
        return subprocess.Popen(self.command(argv, net=net), env=self.env(kwargs.pop("env", None)),
                                start_new_session=True, pass_fds=pass_fds, cwd=str(self.folder), **kwargs)


def kill_tree(process: subprocess.Popen) -> None:
    """Kill a sandboxed process and everything it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
