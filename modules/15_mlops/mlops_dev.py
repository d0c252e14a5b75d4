# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 15: MLOps
#
# **Where you are.** You can build, train and checkpoint models (modules 01-11), and
# module 07's `Trainer` resumes a run bit for bit. What you cannot do yet is answer the
# questions that come *after* training: which settings produced this model? Was it the
# run from Tuesday or the one with the higher learning rate? Can a colleague run it
# without my training script? Is it safe to load a model file someone sent me? And once
# it answers requests, are the requests still like the data it was trained on?
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `seed_everything`, `canonical_json`, `config_hash` | one call seeds every random source; a configuration gets a stable fingerprint |
# | `Run`, `fit_with_run`, `list_runs`, `find_run`, `compare_runs`, `format_table` | run directories: `config.json`, `metrics.jsonl`, `checkpoints/`, `plots/`; logging a `Trainer` epoch by epoch; comparing runs |
# | `ModelKind`, `SEQUENTIAL`, `layer_spec`, `build_sequential` | a model kind: how one kind of model is saved, rebuilt and used |
# | `save_package`, `load_package`, `file_problems`, `ModelPackage`, `PackageError` | a versioned model package: a manifest, safe weights, a sha256 for every file |
# | `input_statistics`, `text_statistics`, `psi`, `DriftMonitor` | training statistics of the inputs and a monitor that tells when requests drift away from them |
# | `GPTEngine`, `sample_token`, `BatchDecoder`, `ContinuousBatcher` | batched KV-cached generation in numpy: requests join and leave one running batch |
# | `validate_inputs`, `validate_completion`, `RequestError`, `ModelServer` | an HTTP model server on the standard library: strict validation, limits, deadlines, JSON errors |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/mlops/mlops.py`. Three commands use it: `tito runs` lists and compares runs,
# `tito package` packages a TinyGPT saved by module 16, and `tito serve PACKAGE` serves a
# package (they pass the `TINYGPT_KIND` of tito/gpt_package.py, which adapts module 16's
# TinyGPT from the outside, to `load_package`; module 15 cannot import module 16 itself).
#
# **The one idea of this module.** Everything that leaves the training process (a run
# directory, a model package, an HTTP request) is *data from outside*, and is treated that
# way: written atomically in formats that cannot run code (JSON, `.npz` without pickle),
# fingerprinted with sha256, and checked on the way back in against a written
# specification, with an error that names exactly what does not fit.
#
# **Points: 22** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-14 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp mlops.mlops

# %%
#| export
"""MLOps: reproducible runs, versioned model packages, drift monitoring and an HTTP model server.

Module 15 of TinyTorch (generated from modules/15_mlops/mlops_dev.py; do not edit).

seed_everything and config_hash make runs repeatable and identifiable; Run writes a run
directory (config.json, metrics.jsonl, checkpoints/, plots/); save_package / load_package
write and check a model package (manifest.json with a sha256 for every file, weights in
.npz without pickle); DriftMonitor compares requests with training statistics; ModelServer
serves a package over HTTP (standard library only). A ModelKind says how one kind of model
is packaged (SEQUENTIAL here; TINYGPT_KIND in tito/gpt_package.py); save_package takes the
kind, load_package the kinds it may meet.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from tinytorch.core.tensor import Tensor, manual_seed
from tinytorch.core.activations import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential, StateDictError
from tinytorch.core.autograd import no_grad
from tinytorch.core.training import CheckpointError, load_npz_checkpoint, save_npz_checkpoint, shape_problems, write_atomically
from tinytorch.core.training import process_alive
from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d
from tinytorch.core.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from tinytorch.core.attention import causal_mask

# %% [markdown]
# ## 1. Reproducibility: one seed, one fingerprint
#
# A training run draws random numbers in several places: Python's `random` module,
# numpy's legacy global generator (`np.random.rand`, used by many libraries), and
# TinyTorch's own generator (`manual_seed` / `get_rng` of module 01), from which the
# initialisers of modules 03 and 09, `Dropout` and the `DataLoader` of module 08 draw
# (a `DataLoader` without an explicit `seed` takes its seed from `get_rng()` when it is
# created, and then derives the order of epoch $e$ from `(seed, e)`). `seed_everything`
# seeds all three; a layer given its own `rng=` argument keeps its own generator, which
# is the point of passing one.
#
# Two runs are "the same experiment" when their configurations are equal. To recognise
# that at a glance, and to name a package after the configuration that trained it, we
# hash the configuration. A hash needs *one* byte string per configuration, so the JSON is
# written canonically:
#
# | choice | why |
# |---|---|
# | keys sorted, no spaces (`separators=(",", ":")`) | `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` are the same configuration |
# | tuples → lists, numpy scalars → Python numbers | `(32, 32)` from code and `[32, 32]` read back from JSON |
# | a float with an integer value → int | `lr=1` and `lr=1.0` are the same setting |
# | NaN, infinity, non-string keys, other types → an error naming the key | JSON has no NaN; a `set` has no order |
#
# and `config_hash` is the SHA-256 of those bytes, 64 hex digits. Change any value and
# the hash changes completely.

# %% nbgrader={"grade": false, "grade_id": "seeding", "locked": false, "schema_version": 3, "solution": true}
#| export
def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's `random`, numpy's global generator and TinyTorch's generator with `seed`
    (an int in [0, 2**32)). Returns TinyTorch's new generator (what `get_rng()` now returns)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed_everything: seed must be an integer in [0, 2**32), got {seed!r}")
    ### BEGIN SOLUTION
    random.seed(int(seed))
    np.random.seed(int(seed))
    return manual_seed(int(seed))
    ### END SOLUTION


def _check_json(value: Any, where: str) -> None:
    """ValueError naming `where` if `value` has no canonical JSON form: NaN or infinity, a
    non-string key, or a type other than None, bool, int, float, str, Path, list, tuple,
    dict and numpy numbers or arrays."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config value at {where} is {value!r}; JSON has no NaN or infinity")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"config key {key!r} at {where} is a {type(key).__name__}; keys must be strings")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str, Path))):
        raise ValueError(f"config value at {where} is a {type(value).__name__}, which has no canonical JSON form "
                         f"(use numbers, strings, booleans, None, lists and dicts)")


def _to_canonical(value: Any) -> Any:
    """`value` (checked by `_check_json`) as plain JSON types in the canonical form above:
    numpy numbers and arrays -> Python numbers and lists, tuples -> lists, a whole float
    below 2**53 -> int, a Path -> its '/'-separated text; dicts and lists item by item."""
    ### BEGIN SOLUTION
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()                           # numpy -> Python numbers and lists
    if isinstance(value, Mapping):
        return {key: _to_canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)                                # lr=1.0 and lr=1 are one setting
    if isinstance(value, Path):
        return value.as_posix()
    return value                                         # None, bool, int, str, other floats
    ### END SOLUTION


def _canonical(value: Any, where: str) -> Any:
    """`value` in canonical form; ValueError naming `where` if it has none."""
    _check_json(value, where)
    return _to_canonical(value)


def canonical_json(config: Any) -> str:
    """The one JSON text of `config`: sorted keys, no spaces, ASCII, canonical numbers."""
    return json.dumps(_canonical(config, "<config>"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def config_hash(config: Any) -> str:
    """SHA-256 (64 hex digits) of `canonical_json(config)`: equal configurations, equal hashes."""
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()

# %% nbgrader={"grade": true, "grade_id": "test-seeding", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.tensor import get_rng, randn
from tinytorch.core.layers import Dense as _Dense


def _draws():
    layer = _Dense(3, 2)                                  # initialised from TinyTorch's generator
    return (random.random(), float(np.random.rand()), randn(2).data.tolist(), layer.weight.data.tolist())


seed_everything(7)
first = _draws()
seed_everything(7)
assert _draws() == first, "the same seed must give the same numbers from every source"
seed_everything(8)
assert _draws() != first
assert seed_everything(3) is get_rng()
cfg = {"lr": 0.01, "layers": (64, 32), "optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "epochs": 5.0}
same = {"epochs": 5, "optimizer": {"betas": (0.9, 0.999), "name": "adam"}, "layers": [64, 32], "lr": 0.01}
assert canonical_json(cfg) == canonical_json(same) == (
    '{"epochs":5,"layers":[64,32],"lr":0.01,"optimizer":{"betas":[0.9,0.999],"name":"adam"}}')
assert config_hash(cfg) == config_hash(same) and len(config_hash(cfg)) == 64
assert config_hash({**cfg, "lr": 0.02}) != config_hash(cfg)
assert config_hash({"x": np.float32(0.5), "n": np.int64(3)}) == config_hash({"x": 0.5, "n": 3})
for bad in [{"lr": float("nan")}, {"s": {1, 2}}, {1: "a"}]:
    try:
        config_hash(bad)
        raise AssertionError(f"{bad} should be refused")
    except ValueError:
        pass
print("seeding and config hashes: OK")

# %% [markdown]
# ## 2. Run directories
#
# Every training run gets its own folder, created once and never reused:
#
# ```
# runs/mlp-20260101-120000/          <name>-<date>-<time>, then -2, -3... if taken
#   config.json      what produced the run: config, its hash, seed, git commit, versions
#   metrics.jsonl    one JSON object per line, appended as training goes
#   checkpoints/     Trainer checkpoints (module 07)
#   plots/           curves
#   summary.json     written when the run ends: status and final metrics
# ```
#
# **Why JSON Lines?** A run can be killed at any moment. Appending one complete line per
# epoch and flushing it means the file always holds every finished epoch; a crash can at
# worst leave one half-written *last* line, which the reader skips (a damaged line in the
# middle is an error). `config.json` and `summary.json` are written to a temporary file and
# renamed into place, so they are either complete or absent. The folder itself is created
# with `os.mkdir`, which fails if the name exists: two runs started in the same second
# get different folders, even from two processes.
#
# A metric is a number (NaN, e.g. a validation loss when there is no validation data, is
# written as `null`, since JSON has no NaN), a string, a boolean or `null`.

# %% nbgrader={"grade": false, "grade_id": "runs", "locked": false, "schema_version": 3, "solution": true}
#| export
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ValueError(f"{what} must be 1-100 letters, digits, '_', '.' or '-' (starting with a letter or "
                         f"digit), got {name!r}")
    return name


def _json_bytes(obj: Any) -> bytes:
    """`obj` as indented JSON text (UTF-8), for files written with module 07's `write_atomically`."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit checked out at `cwd` (default: the current folder), or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


def environment() -> dict[str, Any]:
    """Versions that can change a result: Python, numpy, TinyTorch, and the machine."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "tinytorch": getattr(sys.modules.get("tinytorch"), "__version__", None),
            "platform": platform.platform(), "machine": platform.machine()}


def _metric_value(key: str, value: Any) -> Any:
    """A metric as JSON: finite numbers, strings, booleans, None; NaN -> None."""
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise ValueError(f"Run.log: metric {key!r} is a {type(value).__name__}; log numbers, strings, booleans or None")


def _check_metrics(metrics: Any) -> None:
    """ValueError unless `metrics` is a non-empty dict whose names are strings other than
    "step" and "time" (the record's own fields)."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"Run.log: metrics must be a non-empty dict of name -> value, got {metrics!r}")
    for key in metrics:
        if not isinstance(key, str) or key in ("step", "time"):
            raise ValueError(f"Run.log: metric name {key!r} is reserved or not a string")


class Run:
    """One training run: a folder with config.json, metrics.jsonl, checkpoints/, plots/.

    Create one with `Run.create(name, config, root="runs", seed=...)`; open an existing one
    with `Run.open(path)`. `log(metrics)` appends a line to metrics.jsonl; `finish()` writes
    summary.json.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"Run: {self.path} is not a run directory (no config.json)")
        try:
            self.meta: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"Run: {config_file} is not valid JSON ({err})") from None
        self._step = len(self.metrics())

    # ---- creating and opening --------------------------------------------------------
    @classmethod
    def create(cls, name: str = "run", config: Mapping[str, Any] | None = None,
               root: str | os.PathLike = "runs", seed: int | None = None) -> Run:
        """Make `root/<name>-<YYYYmmdd-HHMMSS>[-k]/` with config.json, empty metrics.jsonl,
        checkpoints/ and plots/. `config` must be JSON-able (see `canonical_json`)."""
        _check_name(name, "Run.create: name")
        config = dict(config or {})
        digest = config_hash(config)                     # also checks that config is JSON-able
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        ### BEGIN SOLUTION
        for k in itertools.count(1):
            path = root / (f"{name}-{stamp}" if k == 1 else f"{name}-{stamp}-{k}")
            try:
                os.mkdir(path)                           # atomic: fails if the name is taken
                break
            except FileExistsError:
                continue
        (path / "checkpoints").mkdir()
        (path / "plots").mkdir()
        (path / "metrics.jsonl").touch()
        meta = {"name": path.name, "created": _now(), "seed": seed, "config": _canonical(config, "<config>"),
                "config_hash": digest, "git_commit": git_commit(), "environment": environment(),
                "command": sys.argv}
        write_atomically(path / "config.json", lambda f: f.write(_json_bytes(meta)))
        ### END SOLUTION
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        return cls(path)

    # ---- what is in it -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> dict[str, Any]:
        return self.meta.get("config", {})

    @property
    def config_hash(self) -> str:
        return self.meta.get("config_hash", "")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def summary(self) -> dict[str, Any] | None:
        file = self.path / "summary.json"
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None

    @property
    def status(self) -> str:
        """"completed", "failed", ... from summary.json; "unfinished" while there is none."""
        summary = self.summary
        return summary.get("status", "?") if summary else "unfinished"

    # ---- metrics -------------------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        """Append {"step": step, "time": seconds since creation, **metrics} to metrics.jsonl
        (one line, flushed). step defaults to the number of lines logged before + 1."""
        _check_metrics(metrics)
        ### BEGIN SOLUTION
        self._step = self._step + 1 if step is None else int(step)
        created = _dt.datetime.fromisoformat(self.meta["created"])
        seconds = (_dt.datetime.now(_dt.timezone.utc) - created).total_seconds()
        record = {"step": self._step, "time": round(seconds, 3)}
        for key, value in metrics.items():
            record[key] = _metric_value(key, value)
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
            f.flush()
        return record
        ### END SOLUTION

    def metrics(self) -> list[dict[str, Any]]:
        """Every line of metrics.jsonl as a dict; a damaged last line (a crash while
        writing) is skipped, a damaged line before it raises ValueError naming the line."""
        file = self.path / "metrics.jsonl"
        if not file.is_file():
            return []
        lines = file.read_text(encoding="utf-8").split("\n")
        records = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if i == len(lines) - 1:                  # the unterminated last line
                    break
                raise ValueError(f"Run: line {i + 1} of {file} is not valid JSON: {line[:80]!r}") from None
        return records

    def final_metrics(self) -> dict[str, Any]:
        """The last logged line, without "time"."""
        records = self.metrics()
        return {k: v for k, v in records[-1].items() if k != "time"} if records else {}

    def finish(self, status: str = "completed", **extra: Any) -> dict[str, Any]:
        """Write summary.json: status, finish time, final metrics (and any `extra` fields)."""
        summary = {"status": status, "finished": _now(), "final_metrics": self.final_metrics(),
                   **{k: _canonical(v, k) for k, v in extra.items()}}
        write_atomically(self.path / "summary.json", lambda f: f.write(_json_bytes(summary)))
        return summary

    def __repr__(self) -> str:
        return f"Run({self.name!r}, status={self.status!r}, steps={len(self.metrics())})"

# %% nbgrader={"grade": true, "grade_id": "test-runs", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import tempfile

workdir = Path(tempfile.mkdtemp(prefix="mlops-"))
run_a = Run.create("demo", {"lr": 0.1, "hidden": 16}, root=workdir / "runs", seed=0)
run_b = Run.create("demo", {"lr": 0.1, "hidden": 16}, root=workdir / "runs", seed=0)
assert run_a.path != run_b.path and run_a.path.parent == workdir / "runs"
assert sorted(p.name for p in run_a.path.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "plots"]
meta = json.loads((run_a.path / "config.json").read_text())
assert meta["config"] == {"hidden": 16, "lr": 0.1} and meta["seed"] == 0
assert meta["config_hash"] == config_hash({"lr": 0.1, "hidden": 16}) == run_b.config_hash
assert {"python", "numpy"} <= set(meta["environment"])
run_a.log({"loss": 1.5, "acc": np.float32(0.25)})
run_a.log({"loss": 1.25, "val_loss": float("nan")})
lines = (run_a.path / "metrics.jsonl").read_text().splitlines()
assert len(lines) == 2 and json.loads(lines[1])["val_loss"] is None and json.loads(lines[0])["step"] == 1
with open(run_a.path / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "loss": 1.')                   # a crash in the middle of a line
assert [r["loss"] for r in Run.open(run_a.path).metrics()] == [1.5, 1.25]
assert run_a.status == "unfinished"
run_a.finish()
assert Run.open(run_a.path).status == "completed" and run_a.final_metrics()["loss"] == 1.25
print("run directories: OK")

# %% [markdown]
# ### Logging a `Trainer`
#
# Module 07's `Trainer.fit(train, val, epochs=E)` trains *until E epochs are done in
# total*, continuing from `trainer.epoch`. So calling it with `epochs=1`, then `2`, then
# `3`... trains exactly as one call with `epochs=3` would: the trainer keeps the model,
# the optimizer, the scheduler and the epoch count, and a `DataLoader` derives the order
# of epoch $e$ from `(seed, e)`. Between the calls we have an epoch-end hook for free:
# `fit_with_run` logs the last row of `trainer.history` and writes
# `checkpoints/last.npz` (module 07's exact-resume checkpoint) after every epoch, draws
# the curves into `plots/history.png`, and finishes the run, with status `"failed: ..."`
# if training raised.

# %% nbgrader={"grade": false, "grade_id": "fit-with-run", "locked": false, "schema_version": 3, "solution": true}
#| export
def fit_with_run(trainer: Any, run: Run, train_data: Iterable, val_data: Iterable | None = None,
                 epochs: int = 1, checkpoint: bool = True, plot: bool = True) -> dict[str, list]:
    """Train `trainer` (module 07) up to `epochs` epochs in total, one epoch per `fit` call;
    after each: log the epoch's row of `trainer.history` to `run` (step = epoch) and, if
    `checkpoint`, save `run.checkpoints / "last.npz"`. Then plot (if `plot`) and finish the
    run. Returns the trainer's history."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= trainer.epoch:
        raise ValueError(f"fit_with_run: epochs is the total to reach and must exceed the {trainer.epoch} "
                         f"epochs already done, got {epochs!r}")
    try:
        ### BEGIN SOLUTION
        for epoch in range(trainer.epoch + 1, epochs + 1):
            trainer.fit(train_data, val_data, epochs=epoch)
            row = {key: values[-1] for key, values in trainer.history.items()}
            run.log(row, step=epoch)
            if checkpoint:
                trainer.save_checkpoint(run.checkpoints / "last.npz")
        if plot:
            trainer.plot_history(run.plots / "history.png")
        ### END SOLUTION
    except BaseException as err:                         # the run records the failure, the caller gets it
        run.finish(status=f"failed: {type(err).__name__}: {err}")
        raise
    run.finish(epochs=trainer.epoch)
    return trainer.history

# %% [markdown]
# A small problem to train on: three Gaussian blobs in 4 dimensions, a two-layer network.
# We train it twice with the same seed, once through `fit_with_run`: the histories must be
# identical (the `seconds` column aside), which shows both that seeding works and that
# logging epoch by epoch does not change training.

# %%
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam
from tinytorch.core.training import Trainer
from tinytorch.core.dataloader import DataLoader, TensorDataset


def blobs(n: int, rng: np.random.Generator, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """n points (n, 4) float32 around three centres, labels (n,) int64; `shift` moves every point."""
    centres = np.array([[2, 0, 0, 1], [-2, 1, 0, 0], [0, -2, 2, 0]], dtype=np.float32)
    labels = rng.integers(0, 3, size=n)
    points = centres[labels] + rng.standard_normal((n, 4)).astype(np.float32) + np.float32(shift)
    return points.astype(np.float32), labels.astype(np.int64)


def make_trainer(seed: int) -> tuple[Trainer, DataLoader, DataLoader]:
    seed_everything(seed)
    x, y = blobs(600, np.random.default_rng(seed))
    model = Sequential(Dense(4, 16), ReLU(), Dense(16, 3))
    trainer = Trainer(model, Adam(model.parameters(), lr=0.02), CrossEntropyLoss(), progress=False)
    train = DataLoader(TensorDataset(x[:500], y[:500]), batch_size=50, shuffle=True)
    val = DataLoader(TensorDataset(x[500:], y[500:]), batch_size=100)
    return trainer, train, val


trainer, train_loader, val_loader = make_trainer(seed=0)
run = Run.create("blobs", {"lr": 0.02, "hidden": 16, "epochs": 4}, root=workdir / "runs", seed=0)
history = fit_with_run(trainer, run, train_loader, val_loader, epochs=4, plot=False)
print(run, "final:", run.final_metrics())

# %% nbgrader={"grade": true, "grade_id": "test-fit-with-run", "locked": true, "points": 2, "schema_version": 3, "solution": false}
again, train_again, val_again = make_trainer(seed=0)
plain = again.fit(train_again, val_again, epochs=4)
for key in plain:
    if key != "seconds":
        assert np.allclose(plain[key], history[key], equal_nan=True), key
records = run.metrics()
assert [r["step"] for r in records] == [1, 2, 3, 4] and [r["epoch"] for r in records] == [1, 2, 3, 4]
assert np.allclose([r["val_accuracy"] for r in records], history["val_accuracy"])
assert (run.checkpoints / "last.npz").is_file() and run.status == "completed"
assert run.summary["final_metrics"]["train_loss"] == history["train_loss"][-1]
assert history["val_accuracy"][-1] > 0.8, "the blobs are easy: the model should learn them"
print("fit_with_run: OK")

# %% [markdown]
# ### Finding and comparing runs
#
# `list_runs(root)` opens every run folder under `root` (oldest first); `find_run` takes
# what a person types: a folder name, a path, or an unambiguous prefix of a name.
# `compare_runs` answers "what was different, and what came out?": the rows are the
# config hash and seed, then **only the configuration keys whose values differ** (nested
# keys are flattened to `optimizer.lr`), then the final metrics. `format_table` aligns
# columns for a terminal; `tito runs compare A B` prints exactly this.

# %% nbgrader={"grade": false, "grade_id": "compare", "locked": false, "schema_version": 3, "solution": true}
#| export
def list_runs(root: str | os.PathLike = "runs") -> list[Run]:
    """Every run directory (a folder with config.json) directly under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [Run(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / "config.json").is_file()]
    return sorted(runs, key=lambda r: (r.meta.get("created", ""), r.name))


def find_run(ref: str | os.PathLike, root: str | os.PathLike = "runs") -> Run:
    """The run named by `ref`: a path to a run folder, a folder name under `root`, or a
    unique prefix of one. Raises ValueError naming the candidates otherwise."""
    path = Path(ref)
    if (path / "config.json").is_file():
        return Run(path)
    runs = list_runs(root)
    exact = [r for r in runs if r.name == str(ref)]
    matches = exact or [r for r in runs if r.name.startswith(str(ref))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(r.name for r in runs[-10:]) or "none"
        raise ValueError(f"no run called {str(ref)!r} in {root} (runs there: {known})")
    raise ValueError(f"{str(ref)!r} matches {len(matches)} runs in {root}: "
                     f"{', '.join(r.name for r in matches)}; give more of the name")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"opt": {"lr": 1}} -> {"opt.lr": 1}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def compare_runs(runs: Sequence[Run]) -> list[list[str]]:
    """A table (list of rows of strings): a header row ["", run names...], then
    "config_hash" (12 digits), "seed", "status", every flattened config key whose values
    differ between the runs (missing = "-"), and every final metric."""
    if not runs:
        raise ValueError("compare_runs: give at least one run")
    ### BEGIN SOLUTION
    configs = [_flatten(r.config) for r in runs]
    finals = [r.final_metrics() for r in runs]
    table = [["", *[r.name for r in runs]],
             ["config_hash", *[r.config_hash[:12] for r in runs]],
             ["seed", *[_cell(r.meta.get("seed")) for r in runs]],
             ["status", *[r.status for r in runs]]]
    keys = sorted(set().union(*configs))
    for key in keys:
        values = [c.get(key, None) for c in configs]
        present = [key in c for c in configs]
        if not all(present) or any(v != values[0] for v in values):
            table.append([key, *[_cell(v) if p else "-" for v, p in zip(values, present)]])
    metric_keys = []
    for final in finals:
        metric_keys += [k for k in final if k not in metric_keys]
    for key in metric_keys:
        table.append([key, *[_cell(f.get(key)) for f in finals]])
    return table
    ### END SOLUTION


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of strings as aligned columns (two spaces apart), one line per row."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

# %%
other, train_other, val_other = make_trainer(seed=1)
other.optimizer.lr = 0.005
run2 = Run.create("blobs", {"lr": 0.005, "hidden": 16, "epochs": 4}, root=workdir / "runs", seed=1)
fit_with_run(other, run2, train_other, val_other, epochs=4, plot=False)
print(format_table(compare_runs([run, run2])))

# %% nbgrader={"grade": true, "grade_id": "test-compare", "locked": true, "points": 2, "schema_version": 3, "solution": false}
table = compare_runs([run, run2])
rows = {row[0]: row[1:] for row in table}
assert table[0] == ["", run.name, run2.name]
assert rows["lr"] == ["0.02", "0.005"] and "hidden" not in rows and "epochs" not in rows
assert rows["seed"] == ["0", "1"] and rows["status"] == ["completed", "completed"]
assert rows["val_accuracy"] == [f"{history['val_accuracy'][-1]:.4g}", f"{other.history['val_accuracy'][-1]:.4g}"]
assert rows["config_hash"][0] == config_hash({"lr": 0.02, "hidden": 16, "epochs": 4})[:12]
names = [r.name for r in list_runs(workdir / "runs")]
assert run.name in names and run2.name in names and names.index(run.name) < names.index(run2.name)
assert find_run(run2.name, workdir / "runs").path == run2.path
try:
    find_run("blobs", workdir / "runs")
    raise AssertionError("an ambiguous prefix must be refused")
except ValueError:
    pass
text = format_table(table)
assert len(text.splitlines()) == len(table) and "lr" in text
print("compare runs: OK")

# %% [markdown]
# ## 3. Model packages
#
# A checkpoint (module 07) is for *resuming*: it holds the optimizer and the random
# state, and it needs the training script to rebuild the model. A **package** is for
# *using* a model: it holds everything needed to rebuild and call it, and nothing else.
#
# ```
# blobs-classifier-1.0.0/
#   manifest.json   {"format": "tinytorch-model-package", "schema_version": 1,
#                    "name", "version", "kind", "created", "config", "config_hash",
#                    "metrics", "model": {how to rebuild it}, "input_spec": {...},
#                    "files": {"weights.npz": {"sha256": ..., "bytes": ...}, "stats.npz": {...}},
#                    "manifest_sha256": ...}
#   weights.npz     the parameters (module 07's safe npz: allow_pickle=False)
#   stats.npz       training statistics of the inputs, for drift monitoring (section 4)
# ```
#
# **Kinds.** How a model is written and rebuilt depends on what it is. A `ModelKind` says
# it: `save(model, folder)` writes its files, `describe(model)` gives the `"model"` entry of
# the manifest, `load(folder, manifest)` rebuilds it, and `predict` (arrays in, scores out)
# or `complete` (text in, text out) serve it. `save_package(path, model, kind)` writes the
# kind's name into the manifest; `load_package(path, kinds=...)` takes the kinds the caller
# is ready to load and picks the manifest's by name, so what a package may rebuild is
# decided by the code that loads it, never by the file. This module defines `SEQUENTIAL`;
# TinyGPT's `TINYGPT_KIND` lives beside the CLI in tito/gpt_package.py (module 16 knows nothing
# of packaging), and `tito serve` loads with `kinds=(SEQUENTIAL, TINYGPT_KIND)`.
#
# **Rebuilding without the training script.** For a `Sequential` the manifest stores a
# *layer spec*: one `{"type": "Dense", "args": {"in_features": 4, ...}}` per layer. Only
# the layer types in `LAYER_TYPES` can be named, and only with their constructor
# arguments: the package describes a model, it cannot run code.

# %%
#| export
#: layer type name -> (class, the constructor arguments of a layer of that class).
LAYER_TYPES: dict[str, tuple[type, Callable[[Any], dict[str, Any]]]] = {
    "Dense": (Dense, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                "bias": m.bias is not None, "dtype": m.weight.dtype.name}),
    "Conv2d": (Conv2d, lambda m: {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                  "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                                  "padding": list(m.padding), "bias": m.bias is not None,
                                  "dtype": m.weight.dtype.name}),
    "MaxPool2d": (MaxPool2d, lambda m: {"kernel_size": list(m.kernel_size), "stride": list(m.stride)}),
    "AvgPool2d": (AvgPool2d, lambda m: {"kernel_size": list(m.kernel_size), "stride": list(m.stride)}),
    "BatchNorm1d": (BatchNorm1d, lambda m: {"num_features": m.num_features, "eps": m.eps,
                                            "momentum": m.momentum, "affine": m.affine,
                                            "dtype": m.running_mean.dtype.name}),
    "BatchNorm2d": (BatchNorm2d, lambda m: {"num_features": m.num_features, "eps": m.eps,
                                            "momentum": m.momentum, "affine": m.affine,
                                            "dtype": m.running_mean.dtype.name}),
    "LayerNorm": (LayerNorm, lambda m: {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
                                        "elementwise_affine": m.weight is not None}),
    "Flatten": (Flatten, lambda m: {"start_dim": m.start_dim}),
    "Dropout": (Dropout, lambda m: {"p": m.p}),
    "ReLU": (ReLU, lambda m: {}),
    "Sigmoid": (Sigmoid, lambda m: {}),
    "Tanh": (Tanh, lambda m: {}),
    "GELU": (GELU, lambda m: {}),
    "Softmax": (Softmax, lambda m: {"axis": m.axis}),
    "LogSoftmax": (LogSoftmax, lambda m: {"axis": m.axis}),
}


class PackageError(ValueError):
    """A model package that is missing, damaged, tampered with, foreign, or does not fit."""


class GenerationTimeout(RuntimeError):
    """Generation ran past its deadline; `done` of `wanted` tokens were produced."""

    def __init__(self, done: int, wanted: int, seconds: float, waited: float = 0.0):
        super().__init__(f"generation stopped after generating for {seconds:.2f} s (having waited {waited:.2f} s "
                         f"for the model) with {done} of {wanted} tokens")
        self.done, self.wanted, self.seconds, self.waited = done, wanted, seconds, waited


@dataclass(frozen=True)
class ModelKind:
    """How one kind of model is packaged and served.

    save(model, folder): write `files` into `folder`.
    describe(model) -> dict: the "model" entry of the manifest (enough to rebuild it).
    load(folder, manifest) -> model: rebuild it (files are already hash-checked).
    predict(model, x) -> (B, K) scores, for array inputs (x: (B, *shape) float array).
    complete(model, prompt, max_tokens, temperature, top_k, seed, deadline) -> str, for text.
    vocabulary(model) -> str: the characters a text model accepts.
    engine(model) -> GPTEngine: batched generation (section 5); the server then batches
    concurrent completions into one forward pass per step.
    """
    name: str
    files: tuple[str, ...]
    save: Callable[[Any, Path], None]
    describe: Callable[[Any], dict[str, Any]]
    load: Callable[[Path, dict[str, Any]], Any]
    predict: Callable[[Any, np.ndarray], np.ndarray] | None = None
    complete: Callable[..., str] | None = None
    vocabulary: Callable[[Any], str] | None = None
    engine: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "ModelKind: name")

# %% nbgrader={"grade": false, "grade_id": "layer-spec", "locked": false, "schema_version": 3, "solution": true}
#| export
def _check_describable(model: Any) -> None:
    """ValueError unless `model` is a Sequential whose layers are all of the exact classes of
    LAYER_TYPES (a subclass could behave differently from what the spec would rebuild)."""
    if not isinstance(model, Sequential):
        raise ValueError(f"layer_spec: the 'sequential' kind packages a Sequential, got {type(model).__name__}")
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        if name not in LAYER_TYPES or LAYER_TYPES[name][0] is not type(layer):
            raise ValueError(f"layer_spec: layer {i} is a {type(layer).__module__}.{name}, which a package cannot "
                             f"describe; supported layer types: {sorted(LAYER_TYPES)}")


def _check_spec(spec: Any) -> None:
    """PackageError unless `spec` is a non-empty list of {"type": a LAYER_TYPES name, "args": {...}}."""
    if not isinstance(spec, list) or not spec:
        raise PackageError(f"the layer spec must be a non-empty list, got {type(spec).__name__}")
    for i, entry in enumerate(spec):
        if not isinstance(entry, dict) or set(entry) != {"type", "args"} or not isinstance(entry["args"], dict):
            raise PackageError(f"layer spec entry {i} must be {{'type': ..., 'args': {{...}}}}, got {entry!r}")
        if entry["type"] not in LAYER_TYPES:
            raise PackageError(f"layer spec entry {i} has unknown type {entry['type']!r}; "
                               f"known: {sorted(LAYER_TYPES)}")


def layer_spec(model: Sequential) -> list[dict[str, Any]]:
    """[{"type": "Dense", "args": {...}}, ...], one entry per layer of `model`. Only the
    exact classes of LAYER_TYPES are accepted (ValueError naming the layer otherwise)."""
    _check_describable(model)
    ### BEGIN SOLUTION
    spec = []
    for layer in model.layers:
        name = type(layer).__name__
        describe = LAYER_TYPES[name][1]                  # the layer's constructor arguments
        spec.append({"type": name, "args": describe(layer)})
    return spec
    ### END SOLUTION


def build_sequential(spec: Any) -> Sequential:
    """The Sequential described by `spec` (from `layer_spec`), freshly initialised.
    PackageError naming the entry for an unknown type or arguments that do not fit."""
    _check_spec(spec)
    layers: list[Any] = []
    try:
        ### BEGIN SOLUTION
        for entry in spec:
            cls = LAYER_TYPES[entry["type"]][0]          # a class of the table: a name never imports code
            layers.append(cls(**entry["args"]))
        ### END SOLUTION
    except (TypeError, ValueError) as err:              # a constructor refused the arguments
        i = len(layers)
        raise PackageError(f"layer spec entry {i} ({spec[i]['type']}) has arguments that do not fit: {err}") from None
    return Sequential(*layers)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sequential_predict(model: Sequential, x: np.ndarray) -> np.ndarray:
    """Class probabilities (B, K) for inputs x (B, ...): eval mode, no graph."""
    model.eval()
    with no_grad():
        out = model(Tensor(x)).data
    if out.ndim != 2:
        raise ValueError(f"the model's output has shape {out.shape}; a classifier gives (B, classes)")
    last = model.layers[-1] if len(model.layers) else None
    if isinstance(last, Softmax):
        return out
    return np.exp(out) if isinstance(last, LogSoftmax) else _softmax(out)


def _sequential_save(model: Sequential, folder: Path) -> None:
    save_npz_checkpoint(folder / "weights.npz", model.state_dict(), {}, kind="mlops-sequential")


def _sequential_load(folder: Path, manifest: dict[str, Any]) -> Sequential:
    model = build_sequential(manifest.get("model", {}).get("layers"))
    arrays, _ = load_npz_checkpoint(folder / "weights.npz", kind="mlops-sequential")
    try:
        model.load_state_dict(arrays)
    except (StateDictError, ValueError) as err:
        raise PackageError(f"{folder / 'weights.npz'} does not fit the layer spec: {err}") from None
    return model.eval()


SEQUENTIAL = ModelKind(
    name="sequential", files=("weights.npz",), save=_sequential_save,
    describe=lambda model: {"layers": layer_spec(model)}, load=_sequential_load, predict=_sequential_predict)

# %% nbgrader={"grade": true, "grade_id": "test-layer-spec", "locked": true, "points": 2, "schema_version": 3, "solution": false}
net = Sequential(Flatten(), Dense(4, 8), ReLU(), Dropout(0.1), Dense(8, 3, bias=False), Softmax())
spec = layer_spec(net)
assert [e["type"] for e in spec] == ["Flatten", "Dense", "ReLU", "Dropout", "Dense", "Softmax"]
assert spec[4]["args"] == {"in_features": 8, "out_features": 3, "bias": False, "dtype": "float32"}
assert json.loads(json.dumps(spec)) == spec, "the spec is plain JSON"
rebuilt = build_sequential(spec)
assert layer_spec(rebuilt) == spec
rebuilt.load_state_dict(net.state_dict())
probe = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
assert np.array_equal(rebuilt.eval()(Tensor(probe)).data, net.eval()(Tensor(probe)).data)
for bad in [[{"type": "os.system", "args": {}}], [{"type": "Dense", "args": {"in_features": 4}}]]:
    try:
        build_sequential(bad)
        raise AssertionError(f"{bad} should be refused")
    except PackageError:
        pass
print("layer specs: OK")

# %% [markdown]
# ### Writing and checking a package
#
# **Integrity.** The manifest records the SHA-256 and size of every file. `load_package`
# recomputes them *before* it opens any file with numpy, so a file changed by one byte, a
# missing file, or a file swapped for another is refused with its name. The manifest
# protects itself the same way: `manifest_sha256` is the hash of its canonical JSON
# without that field, so editing a value in it (a version, an input shape) is detected,
# while re-indenting it is not an error. This is integrity, not authenticity: someone who
# rewrites a file *and* every hash can still fool it; a signature (e.g. an HMAC with a
# secret key) would be the next step.
#
# **No code in data, no bombs.** Module 07's `load_npz_checkpoint` is made for your own
# files: it refuses a pickle and loads with `allow_pickle=False`. A package may come from
# someone else, so `load_package` first reads every `.npz` member by member with
# `npz_headers`: each must be a plainly named `.npy` (no `../`), there once, must not
# claim to inflate a thousandfold (a *zip bomb*), and its header's shape and dtype must
# match its size exactly, all before numpy reads a byte of data. Even a pickle whose hash
# has been rewritten into the manifest is refused, and nothing is unpickled.
#
# **Atomic.** The package is written into a temporary sibling folder, and renamed into
# place when complete: a reader sees the whole package or nothing.
#
# **Input spec.** What the model accepts, for validating requests (section 5):
# `array_spec((4,), "float32", classes=[...])` for arrays (the shape *without* the batch
# dimension) or `text_spec(vocabulary)` for text.

# %% nbgrader={"grade": false, "grade_id": "package", "locked": false, "schema_version": 3, "solution": true}
#| export
PACKAGE_FORMAT = "tinytorch-model-package"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
STATS_FILE = "stats.npz"
_MAX_MANIFEST_BYTES = 16 << 20


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (64 hex digits)."""
    ### BEGIN SOLUTION
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):                    # never the whole file in memory
            h.update(block)
    return h.hexdigest()
    ### END SOLUTION


def array_spec(shape: Sequence[int], dtype: str = "float32", classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Input spec of an array model: one example has `shape` (no batch axis)."""
    shape = [int(n) for n in shape]
    if not shape or min(shape) < 1:
        raise ValueError(f"array_spec: shape must be a non-empty list of positive sizes, got {shape}")
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"array_spec: dtype must be a float type, got {dtype!r}")
    spec = {"type": "array", "shape": shape, "dtype": np.dtype(dtype).name}
    if classes is not None:
        spec["classes"] = [str(c) for c in classes]
    return spec


def text_spec(vocabulary: str | Sequence[str], max_prompt_chars: int = 2000) -> dict[str, Any]:
    """Input spec of a text model: prompts use only the characters of `vocabulary`."""
    chars = "".join(vocabulary)
    if not chars or len(set(chars)) != len(chars):
        raise ValueError("text_spec: the vocabulary must be a non-empty string of distinct characters")
    return {"type": "text", "vocabulary": chars, "max_prompt_chars": int(max_prompt_chars)}


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    return config_hash({k: v for k, v in manifest.items() if k != "manifest_sha256"})


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.(tmp|old)$")


def clean_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders and files (`.NAME.PID.XXXXXXXX.tmp` / `.old`) that a save
    of `path` killed midway left beside it, when their process is gone; returns them."""
    path, removed = Path(path), []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        found = _LEFTOVER.match(entry.name)
        if found and found["name"] == path.name and not process_alive(int(found["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _swap_folders(a: Path, b: Path) -> None:
    """Exchange the folders a and b. On Linux in one step (renameat2 RENAME_EXCHANGE), so b
    always holds a whole package; elsewhere b goes aside, a into place, the old one to a."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if hasattr(libc, "renameat2") and libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:
                return                                   # -100: AT_FDCWD, 2: RENAME_EXCHANGE
        except OSError:
            pass
    aside = b.with_name(f".{b.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


def save_package(path: str | os.PathLike, model: Any, kind: ModelKind = SEQUENTIAL, *, name: str,
                 version: str, input_spec: dict[str, Any], config: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, train_inputs: Any = None,
                 overwrite: bool = False) -> Path:
    """Write the package folder `path` for `model` of the given `kind`, atomically.

    name, version: identify it (letters, digits, '_', '.', '-'). input_spec: `array_spec`
    or `text_spec`. config, metrics: how it was trained and how well it did (JSON-able).
    train_inputs: the training inputs (an array (N, *shape) or a text), whose statistics
    go to stats.npz for drift monitoring. overwrite: replace an existing package.
    """
    path = Path(path)
    if not isinstance(kind, ModelKind):
        raise TypeError(f"save_package: kind must be a ModelKind (e.g. SEQUENTIAL), got {kind!r}")
    _check_name(name, "save_package: name")
    _check_name(version, "save_package: version")
    if not isinstance(input_spec, dict) or input_spec.get("type") not in ("array", "text"):
        raise ValueError("save_package: input_spec must come from array_spec(...) or text_spec(...)")
    if path.exists() and not overwrite:
        raise PackageError(f"save_package: {path} exists; pass overwrite=True to replace it")
    config = dict(config or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        ### BEGIN SOLUTION
        kind.save(model, tmp)
        files = list(kind.files)
        if train_inputs is not None:
            stats = (text_statistics(train_inputs, input_spec["vocabulary"]) if isinstance(train_inputs, str)
                     else input_statistics(train_inputs))
            save_npz_checkpoint(tmp / STATS_FILE, stats, {}, kind="mlops-stats")
            files.append(STATS_FILE)
        manifest = {"format": PACKAGE_FORMAT, "schema_version": SCHEMA_VERSION, "name": name,
                    "version": version, "kind": kind.name, "created": _now(),
                    "config": _canonical(config, "<config>"), "config_hash": config_hash(config),
                    "metrics": {k: _metric_value(k, v) for k, v in (metrics or {}).items()},
                    "model": _canonical(kind.describe(model), "<model>"),
                    "input_spec": _canonical(input_spec, "<input_spec>"),
                    "environment": environment(),
                    "files": {f: {"sha256": file_sha256(tmp / f), "bytes": (tmp / f).stat().st_size}
                              for f in files}}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        write_atomically(tmp / MANIFEST, lambda f: f.write(_json_bytes(manifest)))
        if path.exists():                                # overwrite: new and old change places at once
            _swap_folders(tmp, path)
            shutil.rmtree(tmp, ignore_errors=True)       # the old package, now at tmp
        else:
            os.rename(tmp, path)
        ### END SOLUTION
    except BaseException:                                # a failed save leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


@dataclass
class ModelPackage:
    """A loaded package: its folder, manifest, the rebuilt model, its kind and statistics."""
    path: Path
    manifest: dict[str, Any]
    model: Any
    kind: ModelKind
    stats: dict[str, np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def input_spec(self) -> dict[str, Any]:
        return self.manifest["input_spec"]

    def predict(self, x: Any) -> dict[str, list]:
        """{"predictions": (B,) class ids, "probabilities": (B, K)} for x (B, *shape)."""
        if self.kind.predict is None:
            raise PackageError(f"a {self.kind.name!r} model does not predict from arrays")
        probs = np.asarray(self.kind.predict(self.model, np.asarray(x, dtype=self.input_spec["dtype"])))
        out = {"predictions": probs.argmax(axis=-1).tolist(), "probabilities": probs.tolist()}
        classes = self.input_spec.get("classes")
        if classes:
            out["labels"] = [classes[i] if i < len(classes) else str(i) for i in out["predictions"]]
        return out

    def complete(self, prompt: str, max_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None, deadline: float | None = None) -> str:
        """The continuation of `prompt` (text models); GenerationTimeout past `deadline`
        (a time.monotonic() value)."""
        if self.kind.complete is None:
            raise PackageError(f"a {self.kind.name!r} model does not complete text")
        return self.kind.complete(self.model, prompt, max_tokens, temperature, top_k, seed, deadline)

    def summary(self) -> dict[str, Any]:
        """What /info shows: the manifest without file hashes and environment."""
        keep = ("name", "version", "kind", "created", "config", "config_hash", "metrics", "input_spec",
                "schema_version")
        return {k: self.manifest.get(k) for k in keep}


def _read_manifest(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The package folder named by `path` (the folder or its manifest.json) and its manifest,
    checked: a folder with a manifest of sane size, valid JSON of our format and schema
    version, with every required field, and unchanged since packaging (manifest_sha256)."""
    path = Path(path)
    folder = path.parent if path.name == MANIFEST and path.is_file() else path
    if not folder.exists():
        raise PackageError(f"no model package at {folder}")
    if not folder.is_dir():
        raise PackageError(f"{folder} is a file, not a model package folder (a package is a folder "
                           f"with {MANIFEST}); was it made with save_package?")
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise PackageError(f"{folder} has no {MANIFEST}: not a model package")
    if manifest_file.stat().st_size > _MAX_MANIFEST_BYTES:
        raise PackageError(f"{manifest_file} is larger than {_MAX_MANIFEST_BYTES} bytes: refused")
    try:
        manifest = json.loads(manifest_file.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise PackageError(f"{manifest_file} is not valid JSON ({err})") from None
    except RecursionError:
        raise PackageError(f"{manifest_file} is nested too deeply to be a manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PackageError(f"{manifest_file} is not a TinyTorch model package manifest "
                           f"(format {found!r}, expected {PACKAGE_FORMAT!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PackageError(f"{manifest_file} has schema version {version!r}; this TinyTorch reads schema version "
                           f"{SCHEMA_VERSION} only (written by another TinyTorch version?)")
    missing = [k for k in ("name", "version", "kind", "input_spec", "files", "model", "manifest_sha256")
               if k not in manifest]
    if missing:
        raise PackageError(f"{manifest_file} lacks the fields {missing}")
    if not isinstance(manifest["files"], dict):
        raise PackageError(f"{manifest_file}: 'files' must map file names to hashes")
    try:
        digest = _manifest_digest(manifest)
    except ValueError as err:
        raise PackageError(f"{manifest_file} holds values that are not canonical JSON ({err})") from None
    except RecursionError:
        raise PackageError(f"{manifest_file} is nested too deeply to be a manifest") from None
    if digest != manifest["manifest_sha256"]:
        raise PackageError(f"{manifest_file} was modified after packaging: its content hash is {digest[:16]}..., "
                           f"the recorded manifest_sha256 is {str(manifest['manifest_sha256'])[:16]}...")
    return folder, manifest


def _pick_kind(name: Any, kinds: Iterable[ModelKind]) -> ModelKind:
    """The kind called `name` among `kinds`; PackageError naming the known kinds otherwise."""
    known = {kind.name: kind for kind in kinds}
    if name not in known:
        raise PackageError(f"unknown model kind {name!r}; this load knows the kinds {sorted(known)} (a TinyGPT "
                           f"package loads with kinds=(SEQUENTIAL, TINYGPT_KIND), from tito.gpt_package)")
    return known[name]


def file_problems(folder: Path, files: Mapping[str, Any], needed: Iterable[str]) -> list[str]:
    """Everything wrong with the files of the package in `folder`, compared with the manifest's
    `files` ({name: {"sha256": ..., "bytes": ...}}); `needed`: names the manifest must list.
    An empty list: every file is there, inside the folder, with its recorded hash."""
    ### BEGIN SOLUTION
    problems = [f"{MANIFEST} does not list {name}, which this kind of package needs"
                for name in needed if name not in files]
    for name, entry in files.items():
        file = folder / name
        if Path(name).name != name or name.startswith("."):
            problems.append(f"{MANIFEST} lists {name!r}, which is not a plain file name in the package")
        elif not file.is_file():
            problems.append(f"{folder} is missing {name}, which the manifest lists")
        else:
            expected = entry.get("sha256") if isinstance(entry, dict) else None
            actual = file_sha256(file)
            if actual != expected:
                problems.append(f"{file} has sha256 {actual[:16]}..., the manifest says {str(expected)[:16]}...: "
                                f"the file was changed or replaced after packaging; refused")
    return problems
    ### END SOLUTION


_MEMBER = re.compile(r"(?:[A-Za-z0-9_.\-]+/)*[A-Za-z0-9_.\-]+\.npy")   # no '..', '\', absolute paths


def npz_headers(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """name -> (shape, dtype) of every array in the .npz at `path`, from the zip directory and
    the .npy headers alone (no array data is read). PackageError unless the file is a zip whose
    every member is a plainly named .npy, once, that does not inflate like a zip bomb, with a
    readable header, no object dtype, and exactly the size its header declares."""
    path = Path(path)
    found: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size                           # no member is larger than the file
            for info in archive.infolist():
                name, what = info.filename[:-4], f"{path}: member {info.filename!r}"
                if not _MEMBER.fullmatch(info.filename) or {".", ".."} & set(name.split("/")) or name in found:
                    raise PackageError(f"{what} is not a plainly named .npy array, or is there twice")
                if info.compress_size > size or info.file_size > 1100 * info.compress_size + 2**16:
                    raise PackageError(f"{what} inflates {info.compress_size} bytes to {info.file_size}: refused")
                with archive.open(info) as f:
                    found[name] = _npy_header(f, info.file_size, what)
    except PackageError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as err:
        raise PackageError(f"{path} is not a readable .npz archive ({type(err).__name__}: {err})") from None
    return found


def _npy_header(f: Any, size: int, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header at the start of the open member `f` of `size` bytes;
    PackageError unless the header is readable, the dtype holds no objects and the data after
    the header is exactly shape x itemsize bytes."""
    try:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version](f)
    except (ValueError, KeyError, EOFError) as err:
        raise PackageError(f"{what} has no readable .npy header ({type(err).__name__}: {err})") from None
    data_bytes = math.prod(shape) * dtype.itemsize
    if dtype.hasobject or f.tell() + data_bytes != size:
        raise PackageError(f"{what} declares shape {shape} of {dtype} ({data_bytes} bytes; object arrays "
                           f"only pickle could load) but holds {size - f.tell()} bytes: refused")
    return tuple(shape), dtype


def load_package(path: str | os.PathLike, kinds: Iterable[ModelKind] = (SEQUENTIAL,)) -> ModelPackage:
    """Check and load the package at `path` (its folder, or its manifest.json), whose kind must
    be one of `kinds`. Every check happens before any weights are read; PackageError names the
    problem and the file."""
    folder, manifest = _read_manifest(path)
    kind = _pick_kind(manifest["kind"], kinds)
    files = manifest["files"]
    problems = file_problems(folder, files, kind.files)
    if problems:
        raise PackageError(problems[0] if len(problems) == 1 else
                           f"{len(problems)} problems: " + "; ".join(problems))
    for name in files:
        if name.endswith(".npz"):
            npz_headers(folder / name)                   # .npy members with honest sizes, before numpy reads them
    try:
        stats = load_npz_checkpoint(folder / STATS_FILE, kind="mlops-stats")[0] if STATS_FILE in files else None
        model = kind.load(folder, manifest)
    except CheckpointError as err:
        raise PackageError(f"{folder}: {err}") from None
    return ModelPackage(folder, manifest, model, kind, stats)

# %% [markdown]
# ## 4. Drift: are the requests still like the training data?
#
# A model is only as good as the match between its training data and what it is asked
# later. A new camera, a changed unit, a sensor that starts to fail: the model keeps
# answering, confidently and wrongly. The package therefore carries **training statistics**
# of its inputs, and the server compares the recent requests with them.
#
# **For arrays**, each of the $F$ features (pixels, columns) is cut into $B = 10$ bins at
# the deciles of its training values, so each bin held 10% of the training data. For a
# window of recent inputs with bin proportions $a_b$ (training: $e_b$), the **population
# stability index** of a feature is
#
# $$\text{PSI} = \sum_{b=1}^{B} (a_b - e_b)\,\ln\frac{a_b}{e_b}$$
#
# (proportions clipped at $10^{-4}$ so an empty bin is finite). It is a symmetrised KL
# divergence: 0 for identical distributions, growing with the shift. The usual reading:
# **below 0.1, no real change; 0.1-0.25, a moderate shift; above 0.25, a significant
# shift**. We flag drift when some feature's PSI exceeds 0.25.
#
# A finite window is noisy: with $n$ samples and no drift at all, PSI is about
# $(B-1)/n$ per feature (it behaves like $\chi^2_{B-1}/n$). With $n = 200$ that is 0.045,
# and even the largest of a few dozen features stays well under 0.25; with $n = 20$ it
# would be 0.45, a false alarm. So the monitor reports nothing until it has
# `min_samples` (200) inputs, and looks at the last `window` (1000) of them.
#
# As a second, more sensitive signal for small shifts of the **mean**, the monitor
# reports, per feature, the z-score of the window mean against the training mean and
# standard deviation: $z = (\bar x - \mu)\,/\,(\sigma/\sqrt{n})$. Without drift $|z|$
# rarely exceeds 4; we flag drift when some $|z| > 6$, a threshold high enough for many
# features at once.
#
# **For text**, the bins are the characters of the vocabulary: the statistic is the
# character frequency of the training text, and PSI compares it with the frequencies in
# the recent prompts (counted in characters).
#
# Counting is vectorised: `(x[:, :, None] > edges[None]).sum(-1)` gives the bin of every
# value `(n, F)`, and one `np.bincount` over `bin + B * feature` counts all features at
# once; large arrays are processed in chunks of rows to bound the temporary.

# %% nbgrader={"grade": false, "grade_id": "drift", "locked": false, "schema_version": 3, "solution": true}
#| export
def bin_counts(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts (F, B) of the rows of x (n, F) in the bins cut at `edges` (F, B-1): value v
    of feature f falls in bin #{edges[f] < v}."""
    F, B = edges.shape[0], edges.shape[1] + 1
    counts = np.zeros((F, B), dtype=np.int64)
    offsets = np.arange(F) * B                                        # (F,)
    chunk = max(1, (1 << 22) // max(1, F * (B - 1)))                  # rows per chunk
    ### BEGIN SOLUTION
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]                                 # (n, F)
        bins = (part[:, :, None] > edges[None]).sum(axis=-1)          # (n, F) in [0, B-1]
        counts += np.bincount((bins + offsets).ravel(), minlength=F * B).reshape(F, B)
    return counts
    ### END SOLUTION


def input_statistics(x: Any, bins: int = 10) -> dict[str, np.ndarray]:
    """Training statistics of inputs x (N, *shape), per feature of the flattened shape:
    mean, std (F,), decile edges (F, bins-1), proportions per bin (F, bins), count."""
    x = np.asarray(x.data if isinstance(x, Tensor) else x)
    if x.ndim < 2 or len(x) < 2 or x.dtype.kind not in "iuf":
        raise ValueError(f"input_statistics: expected numeric inputs (N, *shape) with N >= 2, got "
                         f"shape {x.shape} dtype {x.dtype}")
    x = x.reshape(len(x), -1).astype(np.float64)                      # (N, F)
    ### BEGIN SOLUTION
    edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1], axis=0).T   # (F, bins-1)
    counts = bin_counts(x, edges)
    return {"mean": x.mean(axis=0), "std": x.std(axis=0), "edges": np.ascontiguousarray(edges),
            "proportions": counts / len(x), "count": np.array(len(x))}
    ### END SOLUTION


def text_statistics(text: str, vocabulary: str) -> dict[str, np.ndarray]:
    """Character frequencies (V,) of `text` over `vocabulary` (characters outside it are
    ignored), and the number of characters counted."""
    if not set(text) & set(vocabulary):
        raise ValueError("text_statistics: the text has no characters of the vocabulary")
    ### BEGIN SOLUTION
    index = {c: i for i, c in enumerate(vocabulary)}
    ids = np.fromiter((index[c] for c in text if c in index), dtype=np.int64)
    counts = np.bincount(ids, minlength=len(vocabulary))
    return {"char_freq": counts / counts.sum(), "count": np.array(ids.size)}
    ### END SOLUTION


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Population stability index along the last axis of two arrays of proportions."""
    ### BEGIN SOLUTION
    e = np.clip(expected, eps, None)
    a = np.clip(actual, eps, None)
    return ((a - e) * np.log(a / e)).sum(axis=-1)
    ### END SOLUTION


class DriftMonitor:
    """Compares a window of recent inputs with training statistics (from input_statistics
    or text_statistics). `observe(batch)` adds inputs (an array (n, *shape) or a string);
    `report()` says whether they drifted. Thread-safe.

    Flags drift when, over the last `window` samples (at least `min_samples`), some
    feature's PSI exceeds `psi_threshold` (0.25) or, for arrays, some |z| of a feature's
    mean exceeds `z_threshold` (6).
    """

    def __init__(self, stats: Mapping[str, np.ndarray], vocabulary: str | None = None, window: int = 1000,
                 min_samples: int = 200, psi_threshold: float = 0.25, z_threshold: float = 6.0):
        self.text = "char_freq" in stats
        if self.text and (vocabulary is None or len(vocabulary) != len(stats["char_freq"])):
            raise ValueError("DriftMonitor: text statistics need the vocabulary they were counted over")
        if not self.text and not {"mean", "std", "edges", "proportions"} <= set(stats):
            raise ValueError(f"DriftMonitor: statistics need mean, std, edges, proportions; got {sorted(stats)}")
        self.stats = {k: np.asarray(v) for k, v in stats.items()}
        self.vocabulary = vocabulary if self.text else None
        self.index = {c: i for i, c in enumerate(vocabulary)} if self.text else None
        self.window, self.min_samples = int(window), int(min_samples)
        self.psi_threshold, self.z_threshold = float(psi_threshold), float(z_threshold)
        self._batches: deque = deque()                       # (n, counts, sums) per observed batch
        self._lock = threading.Lock()

    @property
    def features(self) -> int:
        return len(self.stats["char_freq"]) if self.text else len(self.stats["mean"])

    def reset(self) -> None:
        with self._lock:
            self._batches.clear()

    def observe(self, batch: Any) -> None:
        """Add a batch: an array (n, *shape) for array statistics, a string for text."""
        if self.text and not isinstance(batch, str):
            raise TypeError(f"DriftMonitor: text statistics observe strings, got {type(batch).__name__}")
        if not self.text:
            batch = np.asarray(batch, dtype=np.float64).reshape(len(batch), -1)    # (n, F)
            if batch.shape[1] != self.features:
                raise ValueError(f"DriftMonitor: batch has {batch.shape[1]} features per example, the statistics "
                                 f"have {self.features}")
        ### BEGIN SOLUTION
        if self.text:
            ids = np.fromiter((self.index[c] for c in batch if c in self.index), dtype=np.int64)
            entry = (ids.size, np.bincount(ids, minlength=self.features), None)
        else:
            entry = (len(batch), bin_counts(batch, self.stats["edges"]), batch.sum(axis=0))
        if entry[0] == 0:
            return
        with self._lock:
            self._batches.append(entry)
            total = sum(b[0] for b in self._batches)
            while len(self._batches) > 1 and total - self._batches[0][0] >= self.window:
                total -= self._batches.popleft()[0]
        ### END SOLUTION

    def report(self) -> dict[str, Any]:
        """{"samples", "enough_data", "drift" (None until min_samples), "psi_max",
        "psi_mean", "thresholds"}; for arrays "drifted_features" (PSI above the threshold,
        worst first, at most 10) and "z_max"; for text "top_characters" (the characters
        whose frequency moved most)."""
        with self._lock:
            batches = list(self._batches)
        n = sum(b[0] for b in batches)
        report: dict[str, Any] = {"samples": int(n), "enough_data": n >= self.min_samples, "drift": None,
                                  "thresholds": {"psi": self.psi_threshold, "z": self.z_threshold,
                                                 "min_samples": self.min_samples, "window": self.window}}
        if n == 0:
            return report
        ### BEGIN SOLUTION
        counts = sum(b[1] for b in batches)
        expected = self.stats["char_freq"][None] if self.text else self.stats["proportions"]
        values = np.atleast_1d(psi(expected, counts / n))                       # (F,) or (1,)
        report["psi_max"], report["psi_mean"] = float(values.max()), float(values.mean())
        drift = bool(values.max() > self.psi_threshold)
        if self.text:                                    # which characters moved most: PSI's terms
            e, a = np.clip(expected[0], 1e-4, None), np.clip(counts / n, 1e-4, None)
            terms = (a - e) * np.log(a / e)                                      # (V,)
            report["top_characters"] = [self.vocabulary[i] for i in np.argsort(-terms)[:5] if terms[i] > 0.01]
        else:
            drifted = np.flatnonzero(values > self.psi_threshold)
            report["drifted_features"] = [int(i) for i in drifted[np.argsort(-values[drifted])][:10]]
            mean, std = self.stats["mean"], self.stats["std"]
            window_mean = sum(b[2] for b in batches) / n
            scale = np.maximum(std, 1e-6 * np.maximum(1.0, np.abs(mean))) / math.sqrt(n)
            z = np.abs(window_mean - mean) / scale
            report["z_max"] = float(z.max())
            drift = drift or bool(z.max() > self.z_threshold)
        if report["enough_data"]:
            report["drift"] = drift
        return report
        ### END SOLUTION

# %% [markdown]
# Now package the classifier trained in section 2, with the statistics of 2000 training
# inputs, load it back, and try to break it: a changed byte, an edited manifest, a
# package from the future, a missing file, and a pickle disguised as weights.

# %%
train_x, train_y = blobs(2000, np.random.default_rng(10))
package_dir = save_package(workdir / "packages" / "blobs-1.0.0", trainer.model, SEQUENTIAL,
                           name="blobs", version="1.0.0", input_spec=array_spec((4,), classes=["a", "b", "c"]),
                           config=run.config, metrics=run.final_metrics(), train_inputs=train_x)
print(sorted(p.name for p in package_dir.iterdir()))
print(json.dumps(load_package(package_dir).summary(), indent=1)[:600])

# %% nbgrader={"grade": true, "grade_id": "test-package", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import pickle

pkg = load_package(package_dir)
probe = blobs(32, np.random.default_rng(99))[0]
expected = _softmax(trainer.model.eval()(Tensor(probe)).data)
assert np.array_equal(np.asarray(pkg.predict(probe)["probabilities"], dtype=np.float32), expected)
assert pkg.manifest["kind"] == "sequential" and pkg.version == "1.0.0" and pkg.stats["edges"].shape == (4, 9)
assert set(pkg.manifest["files"]) == {"weights.npz", "stats.npz"}
assert load_package(package_dir / "manifest.json").name == "blobs"


def refused(folder):
    try:
        load_package(folder)
    except PackageError as err:
        return str(err)
    raise AssertionError(f"{folder} should have been refused")


def copy_package(tag):
    dst = workdir / "broken" / tag
    shutil.copytree(package_dir, dst)
    return dst


bad = copy_package("weights-tampered")                 # one byte of the weights changed
data = bytearray((bad / "weights.npz").read_bytes())
data[len(data) // 2] ^= 1
(bad / "weights.npz").write_bytes(bytes(data))
refused(bad)
bad = copy_package("manifest-tampered")                # a value in the manifest changed
m = json.loads((bad / "manifest.json").read_text())
m["input_spec"]["shape"] = [5]
(bad / "manifest.json").write_text(json.dumps(m))
refused(bad)
bad = copy_package("future-schema")
m = json.loads((bad / "manifest.json").read_text())
m["schema_version"] = 2
(bad / "manifest.json").write_text(json.dumps(m))
refused(bad)
bad = copy_package("missing-file")
(bad / "stats.npz").unlink()
refused(bad)
marker = workdir / "pwned"


class Evil:                                            # unpickling this would create `marker`
    def __reduce__(self):
        return (Path.touch, (marker,))


bad = copy_package("pickle")                           # a pickle, with every hash rewritten to match
(bad / "weights.npz").write_bytes(pickle.dumps({"layers.0.weight": Evil()}))
m = json.loads((bad / "manifest.json").read_text())
m["files"]["weights.npz"]["sha256"] = file_sha256(bad / "weights.npz")
m["manifest_sha256"] = _manifest_digest(m)
(bad / "manifest.json").write_text(json.dumps(m))
refused(bad)
assert not marker.exists(), "nothing may be unpickled"
try:
    save_package(package_dir, trainer.model, name="blobs", version="1.0.0", input_spec=array_spec((4,)))
    raise AssertionError("an existing package must not be overwritten silently")
except PackageError:
    pass
assert not [p for p in package_dir.parent.iterdir() if p.name.startswith(".")], "no temporary folders left"
print("packages: OK")

# %% nbgrader={"grade": true, "grade_id": "test-drift", "locked": true, "points": 3, "schema_version": 3, "solution": false}
stats = pkg.stats
assert np.allclose(stats["proportions"].sum(axis=1), 1) and np.allclose(stats["proportions"], 0.1, atol=0.01)
assert np.allclose(stats["mean"], train_x.mean(axis=0)) and int(stats["count"]) == 2000
monitor = DriftMonitor(stats)
assert monitor.report()["drift"] is None
monitor.observe(blobs(100, np.random.default_rng(1))[0])
assert monitor.report()["samples"] == 100 and monitor.report()["drift"] is None, "too few samples to judge"
monitor.observe(blobs(300, np.random.default_rng(2))[0])
same = monitor.report()
assert same["enough_data"] and same["drift"] is False and same["psi_max"] < 0.1, same
shifted = DriftMonitor(stats)
shifted.observe(blobs(400, np.random.default_rng(3), shift=1.0)[0])
moved = shifted.report()
assert moved["drift"] is True and moved["psi_max"] > 0.25 and moved["z_max"] > 6, moved
assert psi(np.full(4, 0.25), np.full(4, 0.25)) == 0
small = DriftMonitor(stats, window=300)
for seed in range(10):
    small.observe(blobs(100, np.random.default_rng(seed))[0])
assert small.report()["samples"] == 300, "only the last `window` samples count"
vocab = "abc "
text_monitor = DriftMonitor(text_statistics("abc abc aab ccb " * 50, vocab), vocabulary=vocab, min_samples=50)
text_monitor.observe("cab bac abc " * 10)
assert text_monitor.report()["drift"] is False
text_monitor.reset()
text_monitor.observe("aaaa" * 30)
assert text_monitor.report()["drift"] is True and set(text_monitor.report()["top_characters"]) == set(vocab)
print("drift monitor: OK")

# %% [markdown]
# ## 5. Serving over HTTP
#
# A server is code that strangers call. Every request is checked before the model sees
# it, and every answer, including every error, is a JSON object; an error is
# `{"error": "..."}` that names the problem, with the HTTP status saying whose fault it is:
#
# | request | status |
# |---|---|
# | `GET /health`, `GET /info`, `GET /drift`; `POST /predict` (array models) or `POST /complete` (text models), valid | 200 |
# | body is not JSON, not an object; no `Content-Length` (411) | 400 |
# | unknown path (the answer lists the endpoints) | 404 |
# | known path, wrong method (with an `Allow` header) | 405 |
# | the request (line, headers and body) is not complete within `socket_timeout`: one deadline, not per byte | 408 |
# | body larger than `max_body_bytes` (checked from `Content-Length` before reading) | 413 |
# | `Content-Type` is not `application/json` | 415 |
# | valid JSON that does not fit: missing or unknown fields, wrong types, shapes, NaN, batch too big, characters outside the vocabulary, values out of range | 422 |
# | the model stays busy for longer than the time limit; too many connections or waiting completions (with `Retry-After`) | 503 |
# | waiting plus generating runs past the time limit (the message says how long each took) | 504 |
#
# **Validation** of `/predict`: `{"inputs": [...]}` must be a *batch*: shape
# `(B, *input_spec.shape)` with `1 <= B <= max_batch`, numbers only (no booleans, strings
# or `null`), finite after conversion to the spec's dtype. `/complete` takes
# `{"prompt": str, "max_tokens": int, "temperature": number, "top_k": int or null,
# "seed": int or null}`; only `prompt` is required. These validators are given below: each
# is a list of checks that raise a `RequestError` with the status and a message. What you
# write is the server's side of it (next section): the path of one request through them to
# the model, and `handle`, which turns every outcome, errors included, into an answer.
#
# **Concurrency.** `ThreadingHTTPServer` runs each connection in its own thread, so a slow
# client does not block the others; the operating system queues `backlog` (256)
# connections before they are accepted, at most `max_connections` are handled at once (the
# rest get an immediate 503), and each request must arrive whole within `socket_timeout`,
# so a client trickling a byte at a time cannot hold a thread. `/predict` uses the model
# one request at a time, under a lock: `no_grad` (module 05) and `train()`/`eval()`
# (module 03) are process-wide state, and two threads switching them could corrupt each
# other; waiting for the lock is bounded too (503). `/complete` on a kind with an `engine`
# joins the continuous batch of the previous section instead, and generation checks a
# deadline as it goes (504).
#
# **Bound to 127.0.0.1** by default: only programs on this machine can connect. Serving
# to a network needs more than this module gives (TLS, authentication, rate limits); put a
# real reverse proxy in front.

# %%
#| export
class RequestError(Exception):
    """A request the server refuses: the HTTP `status` and a message naming the problem."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = int(status), message, dict(headers or {})


def _type_name(value: Any) -> str:
    return {bool: "a boolean", str: "a string", list: "a list", dict: "an object", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def validate_inputs(payload: Any, spec: Mapping[str, Any], max_batch: int = 256) -> np.ndarray:
    """The batch of a /predict body {"inputs": [...]} as an array (B, *spec["shape"]) of
    spec["dtype"]; RequestError(400 or 422) naming what does not fit."""
    if not isinstance(payload, dict):
        raise RequestError(400, f"the request body must be a JSON object like {{\"inputs\": [[...]]}}, "
                                f"got {_type_name(payload)}")
    unknown = sorted(set(payload) - {"inputs"})
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; /predict takes only 'inputs'")
    if "inputs" not in payload:
        raise RequestError(422, "missing field 'inputs' (a batch: a list of examples)")
    inputs = payload["inputs"]
    if not isinstance(inputs, list):
        raise RequestError(422, f"'inputs' must be a list of examples (a batch), got {_type_name(inputs)}")
    try:
        arr = np.array(inputs)
    except (ValueError, TypeError):
        raise RequestError(422, "'inputs' is ragged: its lists have different lengths at the same depth") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings"}.get(arr.dtype.kind, "null, objects, mixed types or huge integers")
        raise RequestError(422, f"'inputs' must hold only numbers, found {what}")
    shape = tuple(spec["shape"])
    if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
        raise RequestError(422, f"'inputs' has shape {arr.shape}; this model takes a batch of shape (B, "
                                f"{', '.join(map(str, shape))}), e.g. {[[0.0] * shape[-1]] if len(shape) == 1 else '...'}")
    if arr.shape[0] == 0:
        raise RequestError(422, "'inputs' is an empty batch; send at least one example")
    if arr.shape[0] > max_batch:
        raise RequestError(422, f"'inputs' holds {arr.shape[0]} examples; the limit is {max_batch} per request")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(spec["dtype"])
    finite = np.isfinite(arr)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise RequestError(422, f"'inputs' holds a value that is NaN, infinite or too large for {spec['dtype']} "
                                f"at index {list(where)}")
    return arr


def _integer(payload: dict, key: str, default: Any, low: int, high: int, nullable: bool = False) -> Any:
    value = payload.get(key, default)
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(422, f"'{key}' must be an integer{' or null' if nullable else ''}, got "
                                f"{_type_name(value)} {value!r}")
    if not low <= value <= high:
        raise RequestError(422, f"'{key}' must lie in [{low}, {high}], got {value}")
    return value


def validate_completion(payload: Any, spec: Mapping[str, Any], max_new_tokens: int = 500) -> dict[str, Any]:
    """The arguments of a /complete body: prompt (str in the vocabulary, 1..max_prompt_chars
    characters), max_tokens (1..max_new_tokens, default 100), temperature (0..10, default
    1), top_k (1..vocabulary size, or null), seed (0..2**63-1, or null).
    RequestError(400 or 422) naming the field otherwise."""
    if not isinstance(payload, dict):
        raise RequestError(400, f"the request body must be a JSON object like {{\"prompt\": \"...\"}}, "
                                f"got {_type_name(payload)}")
    vocabulary = spec["vocabulary"]
    unknown = sorted(set(payload) - {"prompt", "max_tokens", "temperature", "top_k", "seed"})
    if unknown:
        raise RequestError(422, f"unknown field(s) {unknown}; /complete takes prompt, max_tokens, temperature, "
                                f"top_k, seed")
    if "prompt" not in payload:
        raise RequestError(422, "missing field 'prompt' (a string)")
    prompt = payload["prompt"]
    if not isinstance(prompt, str):
        raise RequestError(422, f"'prompt' must be a string, got {_type_name(prompt)}")
    limit = int(spec.get("max_prompt_chars", 2000))
    if not 1 <= len(prompt) <= limit:
        raise RequestError(422, f"'prompt' must have 1 to {limit} characters, got {len(prompt)}")
    outside = sorted(set(prompt) - set(vocabulary))
    if outside:
        shown = ", ".join(repr(c) for c in outside[:10]) + (f" and {len(outside) - 10} more" if len(outside) > 10 else "")
        raise RequestError(422, f"'prompt' holds characters outside the model's vocabulary: {shown} "
                                f"(the vocabulary has {len(vocabulary)} characters)")
    temperature = payload.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise RequestError(422, f"'temperature' must be a number, got {_type_name(temperature)} {temperature!r}")
    if not (math.isfinite(temperature) and 0 <= temperature <= 10):
        raise RequestError(422, f"'temperature' must lie in [0, 10] (0 = greedy), got {temperature}")
    return {"prompt": prompt,
            "max_tokens": _integer(payload, "max_tokens", min(100, max_new_tokens), 1, max_new_tokens),
            "temperature": float(temperature),
            "top_k": _integer(payload, "top_k", None, 1, len(vocabulary), nullable=True),
            "seed": _integer(payload, "seed", None, 0, 2**63 - 1, nullable=True)}

# %%
# What a client sees: the checked batch, or the status and the message of the first problem.
print(validate_inputs({"inputs": [[1, 2, 3, 4], [0.5, 0, 0, 1]]}, array_spec((4,))).shape)
for body in [{"inputs": [[1, 2, 3]]}, {"inputs": [[1, 2, None, 4]]}, {"prompt": "a"}]:
    try:
        validate_inputs(body, array_spec((4,)))
    except RequestError as err:
        print(err.status, err.message)
print(validate_completion({"prompt": "bad cafe", "max_tokens": 5}, text_spec("abcdefgh \n")))

# %% [markdown]
# ### Batched generation: one forward pass for many requests
#
# A text model answers one token at a time, and one token of one request is a tiny amount
# of work: a `(1, C)` row through every layer. Ten requests served one after another cost
# ten such passes per token; served **together**, a `(10, C)` batch through the same
# matrices costs little more than one. So the server does not lock the model per request:
# a single worker thread keeps a *running batch*, and between two steps requests **join**
# it (their prompt is run once, the *prefill*, filling their own rows of the KV cache) and
# **leave** it (done, or past their deadline). This is *continuous batching*.
#
# The worker runs a `GPTEngine`: inference only (no autograd, no `Tensor`), plain numpy,
# for any model of the GPT shape (token and position embeddings; pre-LayerNorm blocks of
# attention `q/k/v/out_proj` and an MLP `Dense - GELU - Dense`; a final LayerNorm; a
# head). Its KV cache has one row per *slot* `(layers, slots, heads, max_length,
# head_size)`, and each slot its own length, so a step attends row by row to a different
# number of past positions (a mask hides the rest). The model's kind hands its weights to
# the engine by name (`gpt_weight_shapes` lists them): module 15 never imports module 16.
# When a slot's cache is full the engine **re-prefills** the last `max_length // 2`
# tokens, exactly as module 16's `generate_tokens` slides its window, so greedy output is
# identical to `TinyGPT.generate`.
#
# `sample_token` draws a token the way module 16's `sample_next` does, but subtracts the
# maximum *before* dividing by the temperature: a temperature of `5e-324` then means
# "greedy", where `logits / 5e-324` would be `inf - inf = NaN`.

# %% nbgrader={"grade": false, "grade_id": "engine", "locked": false, "schema_version": 3, "solution": true}
#| export
_GELU_C = math.sqrt(2.0 / math.pi)
_MAX_GPT_SIZE = 1 << 16          # largest size of one axis a GPT config may ask for


def gpt_weight_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The name -> shape of every array of a GPT-shaped model with `config` (vocab_size,
    d_model, num_layers, max_length, ff_dim (None: 4 d_model), learned_positions). Dense
    weights are (in, out). PackageError if a size is not a positive integer."""
    sizes = {}
    for key in ("vocab_size", "d_model", "num_layers", "max_length", "ff_dim"):
        value = config.get(key) if isinstance(config, Mapping) else None
        if key == "ff_dim" and value is None and isinstance(config, Mapping):
            value = 4 * sizes.get("d_model", 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_GPT_SIZE:
            raise PackageError(f"a GPT config needs {key} as an integer in [1, {_MAX_GPT_SIZE}], got {value!r}")
        sizes[key] = value
    V, C, L, T, F = (sizes[k] for k in ("vocab_size", "d_model", "num_layers", "max_length", "ff_dim"))
    shapes = {"token_embedding.weight": (V, C)}
    if config.get("learned_positions", True):
        shapes["positions.weight"] = (T, C)
    for i in range(L):
        b = f"blocks.{i}."
        for name in ("ln1", "ln2"):
            shapes[b + name + ".weight"] = shapes[b + name + ".bias"] = (C,)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[b + f"attn.{name}.weight"], shapes[b + f"attn.{name}.bias"] = (C, C), (C,)
        shapes[b + "ff.layers.0.weight"], shapes[b + "ff.layers.0.bias"] = (C, F), (F,)
        shapes[b + "ff.layers.2.weight"], shapes[b + "ff.layers.2.bias"] = (F, C), (C,)
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,), "head.weight": (C, V), "head.bias": (V,)})
    return shapes


def check_shapes(shapes: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], where: str) -> None:
    """PackageError naming the first differences if `shapes` (name -> shape, e.g. from
    `npz_headers`) is not exactly `expected` (missing, unexpected or differently shaped:
    module 07's `shape_problems`)."""
    problems = shape_problems(shapes, expected)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise PackageError(f"{where}: the arrays do not fit the model's config: {'; '.join(problems[:3])}{more}")


def _normalize(x: np.ndarray, mean: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm without its scale and shift (folded into the next product): rows of x
    (R, C) to mean 0, biased variance 1. `mean`: a (C, 1) column of 1/C (a product is the
    fastest row mean for small R)."""
    xc = x - x @ mean
    var = (xc * xc) @ mean
    var += eps
    xc /= np.sqrt(var)
    return xc


def _gelu(h: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (module 02's), in place on h."""
    t = np.tanh(_GELU_C * (h + 0.044715 * h * h * h))
    t += 1.0
    h *= t
    h *= 0.5
    return h


class GPTEngine:
    """Batched, KV-cached inference of a GPT-shaped model in plain numpy (no autograd).

    weights: name -> array, the names and shapes of `gpt_weight_shapes` (a sinusoidal model
    gives its table as "positions.weight"). num_heads: attention heads. eps: LayerNorm's
    epsilon. slots: sequences the cache holds at once. vocabulary: the characters of ids
    0 .. len - 1 (only those ids are sampled; default: all of the head's).
    `prefill(slot, ids)` runs a prompt into one slot; `step(slots, ids)` one token for each
    of several slots; both return logits."""

    def __init__(self, weights: Mapping[str, Any], num_heads: int, *, eps: float = 1e-5, slots: int = 32,
                 vocabulary: str | None = None):
        w = {name: np.asarray(a) for name, a in weights.items()}
        V, C = w["token_embedding.weight"].shape
        L = sum(1 for name in w if name.endswith(".ln1.weight"))
        config = {"vocab_size": V, "d_model": C, "num_layers": L, "max_length": w["positions.weight"].shape[0],
                  "ff_dim": w["blocks.0.ff.layers.0.weight"].shape[1] if L else None}
        check_shapes({n: a.shape for n, a in w.items()}, gpt_weight_shapes(config), "GPTEngine")
        if C % num_heads or isinstance(slots, bool) or not 1 <= slots <= 4096:
            raise ValueError(f"GPTEngine: d_model={C} must be a multiple of num_heads={num_heads}, slots in [1, 4096]")
        self.dtype = w["token_embedding.weight"].dtype
        self.vocab_size, self.d_model, self.num_heads, self.head_size = V, C, int(num_heads), C // int(num_heads)
        self.max_length, self.eps, self.slots = config["max_length"], float(eps), int(slots)
        self.vocabulary = vocabulary
        self.decodable = V if vocabulary is None else min(V, len(vocabulary))
        self.wte, self.wpe = w["token_embedding.weight"], w["positions.weight"]
        self.mean = np.full((C, 1), 1.0 / C, dtype=self.dtype)

        def fold(ln: str, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """LayerNorm `ln`'s scale g and shift b folded into the next product:
            (xhat * g + b) @ W + c = xhat @ (g[:, None] W) + (b @ W + c)."""
            return w[ln + ".weight"][:, None] * weight, w[ln + ".bias"] @ weight + bias

        self.layers = []
        for i in range(L):
            p = lambda name: w[f"blocks.{i}.{name}"]              # noqa: E731
            wqkv = np.concatenate([p(f"attn.{n}_proj.weight") for n in "qkv"], axis=1)    # (C, 3C): one product
            bqkv = np.concatenate([p(f"attn.{n}_proj.bias") for n in "qkv"])
            self.layers.append((*fold(f"blocks.{i}.ln1", wqkv, bqkv), p("attn.out_proj.weight"),
                                p("attn.out_proj.bias"), *fold(f"blocks.{i}.ln2", p("ff.layers.0.weight"),
                                                               p("ff.layers.0.bias")),
                                p("ff.layers.2.weight"), p("ff.layers.2.bias")))
        self.head = fold("ln_f", w["head.weight"], w["head.bias"])
        shape = (L, self.slots, self.num_heads, self.max_length, self.head_size)
        self.keys, self.values = np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
        self.lengths = np.zeros(self.slots, dtype=np.int64)       # positions cached per slot
        self.scale = 1.0 / math.sqrt(self.head_size)

    def prefill(self, slot: int, ids: Any, all_logits: bool = False) -> np.ndarray:
        """Run ids (T,) at positions 0..T-1 into `slot` (its cache restarts); the logits of
        the last position (V,), or of every position (T, V) with all_logits."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        T, nh, hs = len(ids), self.num_heads, self.head_size
        if not 1 <= T <= self.max_length or not 0 <= slot < self.slots or ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"GPTEngine.prefill: needs 1..{self.max_length} ids in [0, {self.vocab_size}) and a "
                             f"slot in [0, {self.slots}), got {T} ids, slot {slot}")
        future = causal_mask(T, self.dtype)                                     # (T, T), module 11's
        ### BEGIN SOLUTION
        x = self.wte[ids] + self.wpe[:T]                                        # (T, C)
        for l, (wqkv, bqkv, wo, bo, w1, c1, w2, c2) in enumerate(self.layers):
            qkv = _normalize(x, self.mean, self.eps) @ wqkv + bqkv              # (T, 3C), ln1 folded in
            q, k, v = qkv.reshape(T, 3, nh, hs).transpose(1, 2, 0, 3)           # each (nh, T, hs)
            self.keys[l, slot, :, :T], self.values[l, slot, :, :T] = k, v        # the slot's cache
            att = q @ k.transpose(0, 2, 1) * self.scale + future                # (nh, T, T)
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            x = x + (att @ v).transpose(1, 0, 2).reshape(T, -1) @ wo + bo      # (T, C)
            x = x + _gelu(_normalize(x, self.mean, self.eps) @ w1 + c1) @ w2 + c2   # ln2 folded in
        ### END SOLUTION
        self.lengths[slot] = T
        x = x if all_logits else x[-1:]
        logits = _normalize(x, self.mean, self.eps) @ self.head[0] + self.head[1]   # ln_f folded in
        return logits if all_logits else logits[0]

    def step(self, slots: Sequence[int], ids: Any) -> np.ndarray:
        """One new token ids[i] (at position lengths[slots[i]]) for each of the slots (B,):
        one batched pass through the network; logits (B, V). Every slot needs a prefill
        first and room for one more position."""
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = self.lengths[slots]                                               # (B,)
        if len(slots) != len(ids) or len(set(slots.tolist())) != len(slots) or pos.min() < 1 \
                or pos.max() >= self.max_length:
            raise ValueError(f"GPTEngine.step: needs one id per distinct prefilled slot with room left, got slots "
                             f"{slots.tolist()} at lengths {pos.tolist()} and {len(ids)} ids")
        B, nh, hs, n = len(slots), self.num_heads, self.head_size, int(pos.max()) + 1
        first = int(slots[0])
        if B == 1:                                                              # views, no copies
            rows, put = slice(first, first + 1), (first, slice(None), int(pos[0]))
            mask = None
        else:                                                                   # consecutive slots: views too
            rows = slice(first, first + B) if (slots == np.arange(first, first + B)).all() else slots
            put = (slots, slice(None), pos)                                     # row i: slot i, position i
            mask = np.where(np.arange(n) <= pos[:, None], 0.0, -np.inf).astype(self.dtype)[:, None, :]  # (B, 1, n)
        ### BEGIN SOLUTION
        x = self.wte[ids] + self.wpe[pos]                                       # (B, C)
        for l, (wqkv, bqkv, wo, bo, w1, c1, w2, c2) in enumerate(self.layers):
            qkv = _normalize(x, self.mean, self.eps) @ wqkv + bqkv              # (B, 3C), ln1 folded in
            q, k, v = qkv.reshape(B, 3, nh, hs).transpose(1, 0, 2, 3)           # each (B, nh, hs)
            self.keys[l][put], self.values[l][put] = k, v                       # append to each slot
            keys, values = self.keys[l, rows, :, :n], self.values[l, rows, :, :n]   # (B, nh, n, hs)
            att = (keys @ q[..., None])[..., 0] * self.scale                    # (B, nh, n)
            if mask is not None:
                att += mask                                                     # each row: its own past
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            y = (att[:, :, None, :] @ values)[:, :, 0]                          # (B, nh, hs)
            x = x + y.reshape(B, -1) @ wo + bo                                  # (B, C)
            x = x + _gelu(_normalize(x, self.mean, self.eps) @ w1 + c1) @ w2 + c2   # ln2 folded in
        ### END SOLUTION
        self.lengths[slots] = pos + 1
        return _normalize(x, self.mean, self.eps) @ self.head[0] + self.head[1]     # (B, V), ln_f folded in


def sample_token(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """One id from logits (V,): the argmax at temperature 0, else softmax(logits / temperature)
    over the top_k largest (ties: lower ids), by inverse CDF with one rng.random() draw."""
    if not temperature > 0:
        return int(np.argmax(logits))
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):
        z = (z - z.max()) / temperature              # max first: a tiny temperature gives -inf, not NaN
    if top_k is not None and top_k < len(z):
        drop = np.argsort(-z, kind="stable")[top_k:]
        z[drop] = -np.inf
    cdf = np.cumsum(np.exp(z))
    u = 1.0 - rng.random()                           # (0, 1]
    return int(min((cdf < u * cdf[-1]).sum(), len(z) - 1))


class TextRequest:
    """One completion in a batch: its tokens (prompt ids, then generated), sampling settings
    and deadline; `done` is set when it has a result or an error."""

    def __init__(self, ids: Sequence[int], max_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None, deadline: float | None = None):
        self.tokens, self.prompt_length, self.max_tokens = [int(i) for i in ids], len(ids), int(max_tokens)
        self.temperature, self.top_k, self.rng = float(temperature), top_k, np.random.default_rng(seed)
        self.deadline, self.submitted, self.admitted = deadline, time.monotonic(), None
        self.slot: int | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    generated = property(lambda self: self.tokens[self.prompt_length:])

    def timeout(self) -> GenerationTimeout:
        now = time.monotonic()
        started = self.admitted if self.admitted is not None else now
        return GenerationTimeout(len(self.generated), self.max_tokens, now - started, waited=started - self.submitted)


class BatchDecoder:
    """Continuous batching over a GPTEngine: `admit(request)` prefills it into a free slot and
    samples its first token; `step()` advances every running request by one token in one
    batched pass, re-prefilling (sliding) a full slot first, and returns those that finished
    or ran past their deadline (their slots are free again)."""

    def __init__(self, engine: GPTEngine):
        self.engine, self.running = engine, {}           # slot -> TextRequest, slots 0 .. len - 1
        self.keep = max(1, engine.max_length // 2)       # tokens kept when the window slides

    @property
    def free_slots(self) -> int:
        return self.engine.slots - len(self.running)

    def _sample(self, request: TextRequest, logits: np.ndarray) -> None:
        request.tokens.append(sample_token(logits[:self.engine.decodable], request.temperature, request.top_k,
                                           request.rng))

    def _finished(self, request: TextRequest, now: float) -> bool:
        if len(request.generated) >= request.max_tokens:
            return True
        if request.deadline is not None and now > request.deadline:
            request.error = request.timeout()
            return True
        return False

    def admit(self, request: TextRequest) -> None:
        """Prefill `request` (its last max_length tokens) into a free slot; sample its first token."""
        slot = len(self.running)                         # the running requests keep slots 0 .. B - 1
        request.slot, request.admitted = slot, time.monotonic()
        self.running[slot] = request
        if request.max_tokens > 0:
            self._sample(request, self.engine.prefill(slot, request.tokens[-self.engine.max_length:]))

    def _leave(self, slot: int) -> TextRequest:
        """Remove the request in `slot`; the last slot's request moves into the gap, so the
        running requests stay in consecutive slots (one view of the cache, no gather)."""
        request, last = self.running.pop(slot), len(self.running)
        if slot != last:
            moved = self.running.pop(last)
            n, e = int(self.engine.lengths[last]), self.engine
            e.keys[:, slot, :, :n], e.values[:, slot, :, :n] = e.keys[:, last, :, :n], e.values[:, last, :, :n]
            e.lengths[slot], moved.slot = n, slot
            self.running[slot] = moved
        return request

    def step(self) -> list[TextRequest]:
        """One token for every running request; the requests that left the batch."""
        now, finished = time.monotonic(), []
        for slot in sorted(self.running, reverse=True):
            if self._finished(self.running[slot], now):
                finished.append(self._leave(slot))
        batch = []
        for slot, request in sorted(self.running.items()):
            if self.engine.lengths[slot] == self.engine.max_length:   # window full: slide, as generate_tokens
                self._sample(request, self.engine.prefill(slot, request.tokens[-self.keep:]))
            else:
                batch.append((slot, request))
        if batch:
            logits = self.engine.step([s for s, _ in batch], [r.tokens[-1] for _, r in batch])   # (B, V)
            for row, (_, request) in zip(logits, batch):
                self._sample(request, row)
        now = time.monotonic()
        for slot in sorted(self.running, reverse=True):
            if self._finished(self.running[slot], now):
                finished.append(self._leave(slot))
        return finished

    def run(self, requests: Sequence[TextRequest]) -> list[TextRequest]:
        """Decode `requests` to the end in batches of at most engine.slots; returns them."""
        waiting = deque(requests)
        while waiting or self.running:
            while waiting and self.free_slots:
                self.admit(waiting.popleft())
            self.step()
        return list(requests)


def engine_complete(engine: GPTEngine, prompt: str, max_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, seed: int | None = None, deadline: float | None = None) -> str:
    """One text completion on `engine` (its `vocabulary` maps characters to ids); raises
    GenerationTimeout past `deadline` (a time.monotonic() value)."""
    index = {c: i for i, c in enumerate(engine.vocabulary)}
    request = TextRequest([index[c] for c in prompt], max_tokens, temperature, top_k, seed, deadline)
    BatchDecoder(engine).run([request])
    if request.error is not None:
        raise request.error
    return "".join(engine.vocabulary[i] for i in request.generated)


class ContinuousBatcher:
    """A worker thread that serves TextRequests on one GPTEngine with continuous batching:
    `submit(request)` queues it (RequestError 503 with Retry-After when `max_queue` wait
    already); between two steps waiting requests join the batch and finished ones leave."""

    def __init__(self, engine: GPTEngine, max_queue: int = 256):
        self.decoder, self.max_queue = BatchDecoder(engine), int(max_queue)
        self.waiting: deque[TextRequest] = deque()
        self.wakeup = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name="continuous-batcher", daemon=True)
        self.thread.start()

    def submit(self, request: TextRequest) -> TextRequest:
        with self.wakeup:
            if len(self.waiting) >= self.max_queue:
                raise RequestError(503, f"{len(self.waiting)} requests are already waiting for the model; retry "
                                        f"in a second", {"Retry-After": "1"})
            self.waiting.append(request)
            self.wakeup.notify()
        return request

    def stop(self) -> None:
        with self.wakeup:
            self.stopped = True
            self.wakeup.notify()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        decoder = self.decoder
        while True:
            with self.wakeup:
                while not self.stopped and not self.waiting and not decoder.running:
                    self.wakeup.wait()
                if self.stopped:
                    break
                joining = [self.waiting.popleft() for _ in range(min(len(self.waiting), decoder.free_slots))]
            left: list[TextRequest] = []
            try:
                for request in joining:
                    if request.deadline is not None and time.monotonic() > request.deadline:
                        request.error = request.timeout()       # waited too long: never admitted
                        left.append(request)
                    else:
                        decoder.admit(request)
                left += decoder.step()
            except Exception as err:                            # a model failure: fail the batch, keep serving
                left += [r for r in joining if not r.done.is_set()] + list(decoder.running.values())
                decoder.running.clear()
                for request in left:
                    request.error = request.error or err
            for request in left:
                request.done.set()
        for request in list(self.waiting) + list(decoder.running.values()):
            request.error = RequestError(503, "the server is shutting down", {"Retry-After": "1"})
            request.done.set()

# %% nbgrader={"grade": true, "grade_id": "test-engine", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from tinytorch.core.attention import MultiHeadAttention


def gpt_weights(V, C, L, T, F, rng):
    """Random float64 weights of a GPT shape (what a kind's `engine` hands over)."""
    return {name: rng.standard_normal(shape) * (0.3 if len(shape) == 2 else 0.1) + (1.0 if "ln" in name and
            name.endswith("weight") else 0.0) for name, shape in gpt_weight_shapes(
            {"vocab_size": V, "d_model": C, "num_layers": L, "max_length": T, "ff_dim": F}).items()}


def reference_logits(w, ids, num_heads):
    """The same model built from modules 02, 03, 10 and 11 (eval, no cache): logits (T, V)."""
    def dense(name):
        layer = Dense(*w[name + ".weight"].shape, dtype="float64")
        layer.weight.data[...], layer.bias.data[...] = w[name + ".weight"], w[name + ".bias"]
        return layer

    def norm(name):
        ln = LayerNorm(w[name + ".weight"].shape[0], dtype="float64")
        ln.weight.data[...], ln.bias.data[...] = w[name + ".weight"], w[name + ".bias"]
        return ln

    x = Tensor((w["token_embedding.weight"][ids] + w["positions.weight"][:len(ids)])[None])   # (1, T, C)
    with no_grad():
        for i in range(sum(n.endswith(".ln1.weight") for n in w)):
            b = f"blocks.{i}."
            attn = MultiHeadAttention(x.shape[-1], num_heads, dtype="float64", causal=True)
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(attn, proj, dense(b + "attn." + proj))
            x = x + attn(norm(b + "ln1")(x))
            x = x + dense(b + "ff.layers.2")(GELU()(dense(b + "ff.layers.0")(norm(b + "ln2")(x))))
        return dense("head")(norm("ln_f")(x)).data[0]


w = gpt_weights(V=11, C=8, L=2, T=12, F=20, rng=np.random.default_rng(0))
ids = np.random.default_rng(1).integers(0, 11, size=12)
ref = reference_logits(w, ids, num_heads=2)
engine = GPTEngine(w, num_heads=2, slots=3, vocabulary="abcdefghijk")
assert np.allclose(engine.prefill(0, ids, all_logits=True), ref, atol=1e-6), "prefill = the model's forward"
assert np.allclose(engine.prefill(1, ids[:5]), ref[4], atol=1e-6)
steps = [engine.step([1], [ids[t]])[0] for t in range(5, 12)]             # one token at a time, from the cache
assert np.allclose(steps, ref[5:], atol=1e-6), "a cached step = the forward at that position"
engine.prefill(0, ids[:2])
engine.prefill(2, ids[:7])                                              # slots of different lengths...
both = engine.step([2, 0], [ids[7], ids[2]])                            # ...in one batched step
assert np.allclose(both, ref[[7, 2]], atol=1e-6) and engine.lengths[[2, 0]].tolist() == [8, 3]
assert sample_token(np.array([0.0, 9.0, 1.0]), 5e-324, None, np.random.default_rng(0)) == 1, "tiny T: greedy"
draws = [sample_token(np.log([0.6, 0.3, 0.1]), 1.0, 2, np.random.default_rng(s)) for s in range(2000)]
assert set(draws) == {0, 1} and abs(draws.count(0) / 2000 - 2 / 3) < 0.05, "top_k=2 renormalises 0.6 : 0.3"
many = [TextRequest(list(ids[:k]), 15, temperature=0.0) for k in (1, 3, 12, 5)]      # 4 requests, 3 slots
BatchDecoder(engine).run(many)
alone = [TextRequest(list(ids[:k]), 15, temperature=0.0) for k in (1, 3, 12, 5)]
for request in alone:
    BatchDecoder(engine).run([request])
assert [r.tokens for r in many] == [r.tokens for r in alone], "batched = one by one, past the window too"
print("generation engine: OK")

# %% [markdown]
# ### The server
#
# `ModelServer(package)` binds a `ThreadingHTTPServer` (port 0 asks the operating system
# for a free port; `server.url` says which). `start()` serves from a background thread,
# `serve_forever()` from the calling one (what `tito serve` does), `shutdown()` stops it.
# All the HTTP work happens in `handle(method, path, headers, body)`: routing, reading the
# body under the limits, validation, the model call under the lock; it returns
# `(status, json_object, extra_headers)` and raises nothing. The request handler only
# moves bytes.

# %% nbgrader={"grade": false, "grade_id": "server", "locked": false, "schema_version": 3, "solution": true}
#| export
class _DeadlineReader:
    """The read side of a connection with one deadline for the whole request: each recv may
    only wait for the time that is left, so a client trickling a byte at a time is cut off
    (TimeoutError) when the request's time is up, not when it pauses."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline, self.buffer, self.expired = sock, deadline, bytearray(), False

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the request was not complete before its deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            self.expired = True
            raise
        self.buffer += chunk
        return bool(chunk)

    def readline(self, limit: int = -1) -> bytes:
        while b"\n" not in self.buffer and not (0 <= limit <= len(self.buffer)) and self._fill():
            pass
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        end = min(end, limit) if limit >= 0 else end
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and self._fill():
            pass
        n = len(self.buffer) if n < 0 else min(n, len(self.buffer))
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def close(self) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    """Moves bytes between a socket and `ModelServer.handle`; every answer is JSON."""
    protocol_version = "HTTP/1.0"                     # one request per connection
    server_version = "TinyTorchServe/1"
    app: ModelServer                                  # set on the per-server subclass

    def setup(self) -> None:
        super().setup()
        self.rfile = _DeadlineReader(self.connection, time.monotonic() + self.timeout)   # type: ignore[assignment]

    def handle_one_request(self) -> None:
        self.answered = False
        super().handle_one_request()                  # the base class closes silently on a timeout...
        if self.rfile.expired and not self.answered:  # ...so say why: the request line or headers came too slowly
            self.close_connection = True
            self.request_version = getattr(self, "request_version", "HTTP/1.0") or "HTTP/1.0"
            self.command, self.requestline = getattr(self, "command", None) or "", getattr(self, "requestline", "")
            self.connection.settimeout(1.0)
            self._send_json(408, {"error": f"the request was not complete within {self.timeout:g} s"})

    def _dispatch(self) -> None:
        status, body, headers = self.app.handle(self.command, self.path, self.headers, self.rfile)
        self.connection.settimeout(self.timeout)      # the answer gets its own time to be written
        self._send_json(status, body, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch

    def _send_json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        self.answered = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (ConnectionError, TimeoutError, OSError):   # the client went away; nothing to tell it
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (bad request line, headers too long...) as JSON too."""
        self.close_connection = True
        if self.request_version in ("", "HTTP/0.9"):   # an unparsable request line: answer HTTP/1.0 anyway
            self.request_version = "HTTP/1.0"
        self._send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.verbose:
            super().log_message(format, *args)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a listen backlog (`request_queue_size`, set per server) and a
    cap on the connections handled at once: past it, a connection gets an immediate 503 with
    Retry-After from the accepting thread, and no thread of its own."""
    daemon_threads = True
    connections: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False):
            _refuse(request, f"the server is handling its limit of {self.max_connections} connections; retry later")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


def _refuse(sock: socket.socket, message: str) -> None:
    """Answer 503 with Retry-After on a fresh connection without reading it through: drain what
    has already arrived (so closing does not reset the connection), send, close for writing."""
    body = json.dumps({"error": message}).encode("utf-8")
    head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("ascii")
    try:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while sock.recv(1 << 16):
                pass
        sock.settimeout(0.5)
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ModelServer:
    """Serve a ModelPackage over HTTP on `host:port` (port 0: a free one; see `url`).

    max_body_bytes: largest request body (413 above). max_batch: examples per /predict.
    max_new_tokens: largest max_tokens of /complete. socket_timeout: seconds a client may
    take to send its whole request (one deadline, 408). time_limit: seconds a request may wait
    for the model plus generate (503 / 504). monitor: a DriftMonitor (default: from the
    package's statistics). backlog: connections the operating system queues before accept.
    max_connections: connections handled at once (more: 503). A kind with an `engine` serves
    /complete by continuous batching: at most max_running sequences per forward pass, at most
    max_queue waiting (more: 503 with Retry-After).
    """

    def __init__(self, package: ModelPackage, host: str = "127.0.0.1", port: int = 0, *,
                 max_body_bytes: int = 1 << 20, max_batch: int = 256, max_new_tokens: int = 500,
                 socket_timeout: float = 10.0, time_limit: float = 10.0,
                 monitor: DriftMonitor | None = None, verbose: bool = False, backlog: int = 256,
                 max_connections: int = 128, max_running: int = 32, max_queue: int = 256):
        self.package, self.verbose = package, verbose
        self.max_body_bytes, self.max_batch, self.max_new_tokens = int(max_body_bytes), int(max_batch), int(max_new_tokens)
        self.time_limit = float(time_limit)
        spec = package.input_spec
        if monitor is None and package.stats is not None:
            monitor = DriftMonitor(package.stats, vocabulary=spec.get("vocabulary"))
        self.monitor = monitor
        self.routes: dict[str, tuple[str, ...]] = {"/health": ("GET",), "/info": ("GET",), "/drift": ("GET",)}
        self.routes["/predict" if spec["type"] == "array" else "/complete"] = ("POST",)
        self.model_lock = threading.Lock()
        self.batcher: ContinuousBatcher | None = None
        if spec["type"] == "text" and package.kind.engine is not None:
            self.batcher = ContinuousBatcher(package.kind.engine(package.model, slots=int(max_running)), int(max_queue))
        handler = type("Handler", (_Handler,), {"app": self, "timeout": float(socket_timeout)})
        server = type("Server", (_HTTPServer,), {"request_queue_size": int(backlog),
                                                 "max_connections": int(max_connections)})
        try:
            self.httpd = server((host, int(port)), handler)
        except BaseException:
            self._stop_batcher()
            raise
        self.httpd.connections = threading.BoundedSemaphore(int(max_connections))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ModelServer:
        """Serve from a background (daemon) thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="model-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
        self._stop_batcher()

    def _stop_batcher(self) -> None:
        if self.batcher is not None:
            self.batcher.stop()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ---- one request -----------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: Any) -> tuple[int, dict, dict]:
        """(status, JSON object, extra headers) for one request; never raises: a RequestError
        gives its status, generation past the time limit 504, any other exception 500."""
        ### BEGIN SOLUTION
        try:
            return 200, self._route(method, urlsplit(raw_path).path, headers, body), {}
        except RequestError as err:
            return err.status, {"error": err.message}, err.headers
        except GenerationTimeout as err:
            return 504, {"error": f"{err} (the time limit is {self.time_limit:g} s); ask for fewer max_tokens"}, {}
        except Exception as err:                      # a bug or a model failure: say so, keep serving
            return 500, {"error": f"internal error: {type(err).__name__}: {err}"}, {}
        ### END SOLUTION

    @contextlib.contextmanager
    def _model_turn(self, started: float) -> Iterator[None]:
        """Hold the model for one request (that arrived at `started`); RequestError 503 if
        other requests keep it busy for longer than the time limit. A GenerationTimeout
        inside says how long the request waited and how long it generated."""
        if not self.model_lock.acquire(timeout=self.time_limit):
            raise RequestError(503, f"the model stayed busy with other requests for {self.time_limit:g} s; retry later",
                               {"Retry-After": "1"})
        turn = time.monotonic()
        try:
            yield
        except GenerationTimeout as err:
            raise GenerationTimeout(err.done, err.wanted, time.monotonic() - turn, waited=turn - started) from None
        finally:
            self.model_lock.release()

    def _join_batch(self, args: Mapping[str, Any], started: float) -> str:
        """The completion of a validated /complete request, decoded by the continuous batcher."""
        engine = self.batcher.decoder.engine
        index = {c: i for i, c in enumerate(engine.vocabulary)}
        request = TextRequest([index[c] for c in args["prompt"]], args["max_tokens"], args["temperature"],
                              args["top_k"], args["seed"], deadline=started + self.time_limit)
        self.batcher.submit(request)
        if not request.done.wait(self.time_limit + 5.0):    # the worker is stuck: give up on it
            request.deadline = -math.inf
            raise request.timeout()
        if request.error is not None:
            raise request.error
        return "".join(engine.vocabulary[i] for i in request.generated)

    def _read_json(self, headers: Mapping[str, str], body: Any) -> Any:
        """The request body as parsed JSON, within the limits."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(415, f"Content-Type must be application/json, got {ctype or 'none'}")
        if headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not accepted; send a Content-Length")
        length = headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "a Content-Length header is required")
        if not length.strip().isdigit():
            raise RequestError(400, f"Content-Length must be a non-negative integer, got {length!r}")
        length = int(length)
        if length > self.max_body_bytes:
            if length <= 8 * self.max_body_bytes:     # read it away, so that the client sees the answer
                try:
                    while length > 0:
                        chunk = body.read(min(length, 1 << 16))
                        if not chunk:
                            break
                        length -= len(chunk)
                except (TimeoutError, ConnectionError):
                    pass
            raise RequestError(413, f"the body has {headers.get('Content-Length')} bytes; the limit is "
                                    f"{self.max_body_bytes}", {"Connection": "close"})
        try:
            data = body.read(length)
        except TimeoutError:
            raise RequestError(408, "the request body arrived too slowly (socket timeout)") from None
        if len(data) < length:
            raise RequestError(400, f"the body ended after {len(data)} of {length} bytes")
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(400, "the body is not UTF-8 text") from None
        except RecursionError:
            raise RequestError(400, "the JSON body is nested too deeply") from None
        except json.JSONDecodeError as err:
            raise RequestError(400, f"malformed JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None

    def _route(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> dict[str, Any]:
        if path not in self.routes:
            raise RequestError(404, f"no endpoint {path}; this server has {sorted(self.routes)}")
        if method not in self.routes[path]:
            allowed = ", ".join(self.routes[path])
            raise RequestError(405, f"{path} takes {allowed}, not {method}", {"Allow": allowed})
        package = self.package
        if path == "/health":
            return {"status": "ok", "model": package.name, "version": package.version}
        if path == "/info":
            return {**package.summary(), "endpoints": self.routes,
                    "limits": {"max_body_bytes": self.max_body_bytes, "max_batch": self.max_batch,
                               "max_new_tokens": self.max_new_tokens, "time_limit_s": self.time_limit}}
        if path == "/drift":
            if self.monitor is None:
                raise RequestError(404, "this package has no training statistics, so no drift monitor")
            return self.monitor.report()
        ### BEGIN SOLUTION
        payload = self._read_json(headers, body)
        started = time.monotonic()
        if path == "/predict":
            x = validate_inputs(payload, package.input_spec, self.max_batch)
            with self._model_turn(started):           # one request at a time uses the model
                result = package.predict(x)
        else:
            args = validate_completion(payload, package.input_spec, self.max_new_tokens)
            if self.batcher is not None:              # joins the running batch: one pass for all
                completion = self._join_batch(args, started)
            else:
                with self._model_turn(started):
                    completion = package.complete(**args, deadline=started + self.time_limit)
            result = {"completion": completion, "text": args["prompt"] + completion, "tokens": len(completion)}
        if self.monitor is not None:
            self.monitor.observe(x if path == "/predict" else args["prompt"])
        return result
        ### END SOLUTION

# %% [markdown]
# A second kind, to serve text: a character **bigram** model (the probability of each
# character given the previous one, counted from a text). It is ten lines, and it plugs
# into packages and the server exactly as module 16's TinyGPT does:
# `save`, `describe`, `load`, `complete` (which checks the deadline as it generates) and
# `vocabulary`.

# %%
class Bigram:
    def __init__(self, text: str):
        self.vocab = "".join(sorted(set(text)))
        ids = np.array([self.vocab.index(c) for c in text])
        self.counts = np.ones((len(self.vocab), len(self.vocab)))          # add-one smoothing
        np.add.at(self.counts, (ids[:-1], ids[1:]), 1)


def bigram_complete(model, prompt, max_tokens, temperature, top_k, seed, deadline):
    rng, out, last = np.random.default_rng(seed), [], model.vocab.index(prompt[-1])
    for _ in range(max_tokens):
        if deadline is not None and time.monotonic() > deadline:
            raise GenerationTimeout(len(out), max_tokens, 0.0)
        p = model.counts[last] ** (1 / max(temperature, 1e-3))
        last = int(rng.choice(len(p), p=p / p.sum()))
        out.append(model.vocab[last])
    return "".join(out)


def bigram_load(folder, manifest):
    arrays, meta = load_npz_checkpoint(folder / "weights.npz", kind="bigram")
    model = Bigram.__new__(Bigram)
    model.vocab, model.counts = meta["vocab"], arrays["counts"]
    return model


BIGRAM = ModelKind(
    name="bigram", files=("weights.npz",),
    save=lambda m, folder: save_npz_checkpoint(folder / "weights.npz", {"counts": m.counts}, {"vocab": m.vocab},
                                               kind="bigram"),
    describe=lambda m: {"vocab_size": len(m.vocab)}, load=bigram_load, complete=bigram_complete,
    vocabulary=lambda m: m.vocab)
corpus = "the cat sat on the mat. the dog sat on the log. " * 20
bigram = Bigram(corpus)
text_dir = save_package(workdir / "packages" / "bigram-0.1", bigram, BIGRAM, name="bigram", version="0.1",
                        input_spec=text_spec(bigram.vocab), train_inputs=corpus)

# %% nbgrader={"grade": true, "grade_id": "test-server", "locked": true, "points": 2, "schema_version": 3, "solution": false}
import http.client
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def call(url, path, body=None, method=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": ctype} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


server = ModelServer(pkg, max_body_bytes=20_000).start()
try:
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    assert call(url, "/health") == (200, {"status": "ok", "model": "blobs", "version": "1.0.0"})
    code, answer = call(url, "/predict", {"inputs": probe[:3].tolist()})
    assert code == 200 and answer["predictions"] == pkg.predict(probe[:3])["predictions"], answer
    assert answer["labels"] == [["a", "b", "c"][i] for i in answer["predictions"]]
    assert call(url, "/predict", raw=b'{"inputs": [[1, 2')[0] == 400
    assert call(url, "/predict", {"inputs": [[1, 2, 3]]})[0] == 422
    assert call(url, "/predict", raw=b"x" * 30_000)[0] == 413
    assert call(url, "/predict", {"inputs": [[1, 2, 3, 4]]}, ctype="text/plain")[0] == 415
    code, answer = call(url, "/nowhere")
    assert code == 404 and "error" in answer
    assert call(url, "/predict")[0] == 405 and call(url, "/health", {"x": 1})[0] == 405
    with ThreadPoolExecutor(8) as pool:                # concurrent requests, each answered correctly
        batches = [blobs(5, np.random.default_rng(s))[0] for s in range(16)]
        answers = list(pool.map(lambda b: call(url, "/predict", {"inputs": b.tolist()}), batches))
    assert all(c == 200 and a["predictions"] == pkg.predict(b)["predictions"] for (c, a), b in zip(answers, batches))
    assert call(url, "/drift")[1]["samples"] == 3 + 16 * 5
    assert call(url, "/health")[0] == 200, "still serving after the bad requests"
finally:
    server.shutdown()
with ModelServer(load_package(text_dir, kinds=(BIGRAM,))) as text_server:
    code, answer = call(text_server.url, "/complete", {"prompt": "the ", "max_tokens": 12, "seed": 0})
    assert code == 200 and len(answer["completion"]) == 12 and answer["text"].startswith("the ")
    assert answer == call(text_server.url, "/complete", {"prompt": "the ", "max_tokens": 12, "seed": 0})[1]
    code, answer = call(text_server.url, "/complete", {"prompt": "the CAT"})
    assert code == 422 and "error" in answer, answer
    assert call(text_server.url, "/predict", {"inputs": [[1]]})[0] == 404
print("model server: OK")

# %% [markdown]
# From a terminal, the same thing is `tito serve PACKAGE --port 8000` (it loads with
# `kinds=(SEQUENTIAL, TINYGPT_KIND)`), and then, for example:
#
# ```bash
# curl -s localhost:8000/info
# curl -s -X POST localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": [[2, 0, 0, 1]]}'
# ```

# %%
shutil.rmtree(workdir, ignore_errors=True)

# %% [markdown]
# ## Systems thinking
#
# 1. `Run.log` appends and flushes one line per epoch. What exactly survives if the process
#    is killed (a) between two epochs, (b) in the middle of `f.write`, (c) by a power cut
#    right after `flush()` (which reaches the operating system, not the disk)? What would
#    `os.fsync` after every line cost for a run that logs every *batch*?
# 2. `load_package` hashes every file before loading it. For a 500 MB package, how much
#    reading does a load cost, and what would you change to start a server faster without
#    giving up the check? What can an attacker who can write the package folder still do?
# 3. `/predict` still serialises model calls with one lock, while `/complete` batches. With
#    8 concurrent `/predict` requests of 10 examples each, how many forward passes run, and
#    how would you batch waiting requests into one forward pass (what does it do to the
#    latency of the first request)? Why does batching pay off so much more for generation
#    (a `(1, C)` row per step) than for a `/predict` of 10 examples?
# 4. `DriftMonitor` flags drift at PSI > 0.25 after 200 samples. Using the $(B-1)/n$ rule,
#    what window would you need to detect a shift that moves PSI to 0.05, and why is a
#    z-score of the mean more sensitive to a small change of the mean than PSI?
# 5. `validate_inputs` converts the whole JSON batch with `np.array`. How many bytes does a
#    1 MB JSON body of numbers become as Python objects and then as float32, and why does
#    the body limit have to be checked *before* reading and parsing?
