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
# # Module 07: Training
#
# **Where you are.** You can build a model (03), measure its error (04), differentiate it
# (05) and step its parameters (06). Training is these pieces in a loop, run for hours, and
# everything that can go wrong in hours will (the loss explodes at 3 a.m., the machine
# reboots at epoch 37). This module writes the loop once, carefully. **What you build:**
#
# | name | what it is |
# |---|---|
# | `accuracy`, `_Running` | a metric: `(outputs, targets) -> (correct, count)`; averages weighted by batch size |
# | `TrainingDivergedError` | raised when the loss becomes NaN or infinite, or stays far too high, with where and what to try |
# | `write_atomically`, `save_npz_checkpoint`, `load_npz_checkpoint` | safe checkpoint files: one `.npz`, written atomically, signed, never unpickled |
# | `Trainer` | `fit`, `evaluate`, `history`, `plot_history`, `save_checkpoint`, `load_checkpoint`, exact resume |
#
# `tito export` compiles the `#| export` cells into `tinytorch/core/training.py`.
#
# **The one idea of this module.** A training run is a *deterministic function* of the
# initial weights, the data order and the random numbers drawn on the way (dropout). If a
# checkpoint stores *all* its state (weights, optimizer moments, schedule position, epoch,
# random generators), stopping and resuming gives the **bit-identical** result.
#
# **Points: 19** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-06 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.training

# %%
#| export
"""Training: the Trainer (fit, evaluate, history, plots, exact resume), metrics, divergence
detection, and checkpoint files (one signed .npz, written atomically, never unpickled).
Module 07 of TinyTorch (generated from modules/07_training/training_dev.py; do not edit)."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import secrets
import sys
import time
import warnings
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping

import numpy as np

from tinytorch.core.tensor import Tensor, get_rng
from tinytorch.core.autograd import no_grad
from tinytorch.core.optimizers import LRScheduler, Optimizer, clip_grad_norm

with warnings.catch_warnings():      # without ipywidgets, tqdm.auto falls back to text bars
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

# %% [markdown]
# ## 1. The training loop, and what to measure
#
# One **epoch** is one pass over the training data in mini-batches. For each batch:
#
# ```
# outputs = model(inputs)               # forward: builds the graph
# loss = loss_fn(outputs, targets)      # one number
# optimizer.zero_grad()                 # forget the previous batch's gradients
# loss.backward()                       # fill p.grad
# clip_grad_norm(params, max_norm)      # optional: tame an exploding gradient
# optimizer.step()                      # move the parameters
# scheduler.step()                      # optional: next learning rate
# ```
#
# **Metrics**: the loss is always tracked; classification adds **accuracy**, the fraction of
# examples whose highest output (argmax over the last axis) is the target class; for outputs
# `(B, T, V)` and targets `(B, T)` it counts correct next tokens. **Epoch averages are
# weighted** (the last batch is usually smaller): a metric is any `(outputs, targets) ->
# (total, count)` on ndarrays; `_Running` adds totals and counts over the batches and divides
# once (the loss, a batch mean, is weighted by batch size). You write `accuracy` and `_Running`.

# %% nbgrader={"grade": false, "grade_id": "metrics", "locked": false, "schema_version": 3, "solution": true}
#| export
Metric = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def accuracy(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(number of correct predictions, number of predictions): outputs (..., C) scores,
    targets (...) integer classes; correct when the argmax over the last axis is the target."""
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    if outputs.ndim < 1 or outputs.shape[:-1] != targets.shape:
        raise ValueError(f"accuracy: outputs of shape {outputs.shape} need integer targets of shape "
                         f"{outputs.shape[:-1]}, got targets of shape {targets.shape}")
    ### BEGIN SOLUTION
    correct = int(np.count_nonzero(outputs.argmax(axis=-1) == targets))
    return correct, targets.size
    ### END SOLUTION


METRICS: dict[str, Metric] = {"accuracy": accuracy}


def _resolve_metrics(metrics: Any) -> dict[str, Metric]:
    """Names ("accuracy"), callables (named by __name__), or a dict name -> metric."""
    if isinstance(metrics, str) or callable(metrics):
        metrics = [metrics]
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [
        (m if isinstance(m, str) else getattr(m, "__name__", None), m) for m in metrics or ()]
    items = [(name, METRICS.get(m, m) if isinstance(m, str) else m) for name, m in items]
    names = [name for name, _ in items]
    for name, m in items:
        if not callable(m) or not isinstance(name, str) or not name.isidentifier() or name == "loss" \
                or names.count(name) > 1:
            raise (ValueError if isinstance(m, str) or callable(m) else TypeError)(
                f"Trainer: metric {name!r} ({m!r}) is unknown (known: {sorted(METRICS)}), not a callable, given "
                f"twice, or not an identifier other than 'loss' (pass a dict {{'name': metric}} to name a lambda)")
    return dict(items)


class _Running:
    """Weighted totals: `add` weights a batch's mean loss by its examples (`targets.shape[0]`, 1 if
    0-d) and adds each metric's (total, count); `result()` divides (NaN when nothing counted)."""

    def __init__(self, metrics: dict[str, Metric]):
        self.metrics = metrics
        ### BEGIN SOLUTION
        self.loss_total = 0.0                                     # sum of batch loss x batch examples
        self.examples = 0
        self.totals = {name: [0.0, 0.0] for name in metrics}     # name -> [total, count]
        ### END SOLUTION

    def _metric(self, name: str, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
        try:
            return self.metrics[name](outputs, targets)
        except ValueError as err:
            raise ValueError(f"Trainer: metric {name!r} failed: {err} (a regression model needs "
                             f"metrics=() or metrics suited to it)") from None

    def add(self, loss: float, outputs: np.ndarray, targets: np.ndarray) -> None:
        ### BEGIN SOLUTION
        n = targets.shape[0] if targets.ndim else 1
        self.loss_total += loss * n
        self.examples += n
        for name in self.metrics:
            total, count = self._metric(name, outputs, targets)
            self.totals[name][0] += float(total)
            self.totals[name][1] += float(count)
        ### END SOLUTION

    def result(self) -> dict[str, float]:
        ### BEGIN SOLUTION
        out = {"loss": self.loss_total / self.examples if self.examples else math.nan}
        for name, (total, count) in self.totals.items():
            out[name] = total / count if count else math.nan
        return out
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-metrics", "locked": true, "points": 4, "schema_version": 3, "solution": false}
scores = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.1, 0.2], [1.0, 0.0, 5.0]])
assert accuracy(scores, np.array([1, 0, 0, 2])) == (3, 4)
seq = np.zeros((2, 5, 7)); seq[..., 3] = 1.0                     # (B, T, V): predicts token 3
assert accuracy(seq, np.full((2, 5), 3)) == (10, 10), "language-model shapes"
def mean_abs_error(outputs, targets):
    return float(np.abs(outputs - targets).sum()), targets.size
running = _Running(_resolve_metrics(("accuracy", mean_abs_error)))
running.add(1.0, scores[:3], np.array([1, 0, 0]))                # 3 examples, 2 correct
running.add(4.0, scores[3:], np.array([0]))                       # 1 example, wrong
result = running.result()
assert result["loss"] == (3 * 1.0 + 4.0) / 4 and result["accuracy"] == 2 / 4, "weighted by batch size"
assert result["mean_abs_error"] == (np.abs(scores[:3] - [1, 0, 0]).sum() + np.abs(scores[3:] - [0]).sum()) / 4
assert math.isnan(_Running({}).result()["loss"]), "no batches: NaN"
print("metrics: OK")

# %% [markdown]
# ## 2. When the loss explodes
#
# A learning rate a bit too large, a batch of garbage, `log(0)`: the loss becomes `inf`,
# then `nan`, which spreads to every parameter in one step. We check each batch's loss
# *before* `backward()` and `step()`, and stop with an error that says **where** (epoch,
# batch), **what** (value, learning rate) and **what to try**; the parameters stay finite.
#
# A loss can also blow up and stay **finite** (TinyGPT at a learning rate of 10 wanders
# between 48 and 10,000; a uniform guess costs $\log 65 \approx 4.2$). So the Trainer also
# stops when the loss was above `divergence_factor` (4) times a reference in more than
# half of the last `divergence_patience` (20) batches; the reference is the larger of the
# run's first loss and $\log K$, a uniform guess over $K$ classes. Healthy runs never come
# near it (the milestones' worst epochs average below $0.7 \log K$).

# %% nbgrader={"grade": false, "grade_id": "diverged", "locked": false, "schema_version": 3, "solution": true}
#| export
class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite, or the loss stayed far too high
    for too long. `epoch` and `batch` count from 1; `value` is the offending number."""

    def __init__(self, epoch: int, batch: int, value: float, lr: float, what: str = "loss"):
        ### BEGIN SOLUTION
        self.epoch, self.batch, self.value, self.lr = epoch, batch, value, lr
        super().__init__(
            f"training diverged: the {what} is {value} at epoch {epoch}, batch {batch} "
            f"(learning rate {lr:g}). The parameters are those before this batch. Try: a lower "
            f"learning rate; gradient clipping (Trainer(grad_clip=1.0)); a learning-rate warm-up "
            f"(CosineWarmupLR); checking inputs and targets for NaN/inf and for their scale; "
            f"computing the loss from logits (CrossEntropyLoss takes logits, not probabilities).")
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-diverged", "locked": true, "points": 1, "schema_version": 3, "solution": false}
err = TrainingDivergedError(epoch=3, batch=17, value=float("nan"), lr=0.5)
assert isinstance(err, RuntimeError) and err.epoch == 3 and err.batch == 17
assert all(part in str(err) for part in ("3", "17", "nan", "0.5")), "the message gives epoch, batch, value and rate"
print("TrainingDivergedError: OK")

# %% [markdown]
# ## 3. Checkpoint files you can trust
#
# **A crash while writing** would leave a truncated file and the previous good one gone.
# The classic *atomic write*: write to a temporary file **in the same directory**,
# `flush()`, `os.fsync()` (the bytes reach the disk), `os.replace(tmp, path)` (a rename
# within one file system is atomic), and `fsync` the folder so the rename survives a power
# cut. A killed writer's temporary file is removed by a later save.
#
# **A file that is not what it claims.** *Loading* a pickle runs whatever code the file
# says, so we never unpickle. A checkpoint is an `.npz` (a zip of `.npy` arrays) whose
# other state is one JSON string, the 0-d string array `__meta__`, signed
# `{"format": "tinytorch-checkpoint", "version": 1, "kind": "trainer", "meta": {...}}`.
# Loading reads the arrays with `np.load(..., allow_pickle=False)`, then checks the
# **format** (is it ours?), the **version** (a newer TinyTorch's file may mean something
# else), the **kind** (a TinyGPT file is no trainer checkpoint) and, when the caller says
# what it needs, the names and **shapes**. Every failure is a `CheckpointError` naming the
# file and the problem. Any file name works (`model.pkl` holds a safe `.npz` too). These
# checks are for *your own* files; a server taking files from strangers reads every
# member's header before any data (module 15).
#
# **You write** the cores of `write_atomically`, `save_npz_checkpoint` and the read, and the
# checks `_read_header`, `_header_problem`, `shape_problems` (they *return* what is wrong).

# %% nbgrader={"grade": false, "grade_id": "checkpoint-files", "locked": false, "schema_version": 3, "solution": true}
#| export
CHECKPOINT_FORMAT = "tinytorch-checkpoint"
CHECKPOINT_VERSION = 1
_META_KEY = "__meta__"
_RESERVED_KEYS = {_META_KEY, "file", "args", "allow_pickle"}   # np.savez's own argument names


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt, foreign, or does not fit."""


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of `path` (`.NAME.tmp-<pid>-<8 hex digits>`) whose writer
    process is gone, or that are older than 10 minutes: left by a writer that was killed."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-(\d+)-[0-9a-f]{{8}}")
    for old in path.parent.iterdir():
        match = pattern.fullmatch(old.name)
        with contextlib.suppress(OSError):    # vanished meanwhile, or not ours to remove
            if match and (not process_alive(int(match.group(1))) or time.time() - old.stat().st_mtime > 600):
                old.unlink()


def process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (True where this cannot be asked safely: on Windows
    `os.kill` would terminate the process instead of asking)."""
    if os.name != "posix" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)                       # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:                           # another user's, or cannot tell: keep its file
        pass
    return True


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Create `path` (and its folder) with `write(f)` on a binary file, atomically: written to
    `.NAME.tmp-<pid>-<random>` beside it, flushed, renamed into place. Every save goes here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")   # beside it: one file system
    try:
        ### BEGIN SOLUTION
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        ### END SOLUTION
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    ### BEGIN SOLUTION
    if hasattr(os, "O_DIRECTORY"):           # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    ### END SOLUTION
    return path


def _json_default(obj: Any) -> Any:
    """Let json.dumps write numpy scalars and arrays, and sets."""
    if isinstance(obj, (np.generic, np.ndarray, set, frozenset)):
        return obj.tolist() if isinstance(obj, (np.generic, np.ndarray)) else list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_npz_checkpoint(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any],
                        kind: str) -> Path:
    """Write `arrays` (name -> ndarray or Tensor) and the JSON-able `meta` atomically to one
    .npz file at `path` (any name); `kind` ("trainer", ...) is checked on loading."""
    ### BEGIN SOLUTION
    arrays = {name: np.asarray(v.data if isinstance(v, Tensor) else v) for name, v in arrays.items()}
    header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": kind, "meta": dict(meta)}
    ### END SOLUTION
    bad = [name for name, a in arrays.items() if not isinstance(name, str) or name in _RESERVED_KEYS or a.dtype.hasobject]
    if bad:
        raise CheckpointError(f"save_npz_checkpoint: arrays {bad} have a reserved or non-string name, or dtype "
                              f"object (which only pickle could store; convert it to a numeric array)")
    try:
        text = json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"save_npz_checkpoint: meta is not JSON-serialisable: {err}") from None
    # No allow_pickle= here: numpy < 2.2's savez would store it as one more array.
    ### BEGIN SOLUTION
    return write_atomically(path, lambda f: np.savez(f, **{_META_KEY: np.array(text)}, **arrays))
    ### END SOLUTION


_NOT_NPZ = {b"": "it is empty (0 bytes): probably an interrupted write",
            b"\x80": "it is a Python pickle; TinyTorch never unpickles files (loading a pickle can run any code)",
            b"\x93": "it is a single .npy array, not an .npz archive"}         # what the first byte shows
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")                               # a zip file, an empty zip file


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz archive at `path`, or a CheckpointError naming the cause. For
    your own files: module 15 checks a stranger's file member by member first (`npz_headers`)."""
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file" if path.is_dir()
                              else f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head in _ZIP_STARTS:
                f.seek(0)
                ### BEGIN SOLUTION
                with np.load(f, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                ### END SOLUTION
    except (OSError, EOFError, ValueError, KeyError, MemoryError, RuntimeError, zipfile.BadZipFile,
            zlib.error) as err:                             # object arrays: ValueError (never unpickled)
        raise CheckpointError(f"{path} is truncated or corrupt, or holds more than plain arrays "
                              f"({type(err).__name__}: {err})") from None
    if head not in _ZIP_STARTS:
        raise CheckpointError(f"{path} is not a TinyTorch checkpoint: " + _NOT_NPZ.get(
            head[:1], f"it is not an .npz (zip) archive: it starts with {head!r}"))
    not_arrays = [name for name, a in arrays.items() if not isinstance(a, np.ndarray)]
    if not_arrays:                                      # np.load gives the raw bytes of a non-.npy member
        raise CheckpointError(f"{path} holds members that are not .npy arrays: {not_arrays[:5]}")
    return arrays


def _read_header(meta: np.ndarray | None) -> Any:
    """The JSON value stored in the 0-d string array `__meta__`, or None if there is none."""
    ### BEGIN SOLUTION
    if meta is None or meta.dtype.kind != "U" or meta.ndim != 0:
        return None
    try:
        return json.loads(str(meta))
    except ValueError:
        return None
    ### END SOLUTION


def _header_problem(header: Any, kind: str) -> str | None:
    """What is wrong with a checkpoint's header (the JSON in `__meta__`, None if none) for `kind`, said
    of the file ("is not ..."), or None: not a JSON object, other format or kind, a newer version."""
    ### BEGIN SOLUTION
    if not isinstance(header, dict):
        return f"is an .npz archive without TinyTorch metadata (a JSON object in the 0-d string array {_META_KEY})"
    if header.get("format") != CHECKPOINT_FORMAT:
        return f"is not a TinyTorch checkpoint (format {header.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
    version = header.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        return (f"has checkpoint format version {version!r}; this TinyTorch reads versions up to "
                f"{CHECKPOINT_VERSION} (was it written by a newer TinyTorch?)")
    if header.get("kind") != kind:
        return f"is a {header.get('kind')!r} checkpoint, expected {kind!r}"
    return None
    ### END SOLUTION


def shape_problems(shapes: Mapping[str, tuple], expected: Mapping[str, tuple]) -> list[str]:
    """What keeps arrays of `shapes` (name -> shape) from being exactly `expected` (name ->
    shape): names missing, names not expected, other shapes. [] when they fit. (Module 15's
    model packages check their arrays with it too.)"""
    ### BEGIN SOLUTION
    problems = [f"{name} is missing" for name in expected if name not in shapes]
    problems += [f"{name} is not expected" for name in shapes if name not in expected]
    for name, shape in expected.items():
        if name in shapes and tuple(shapes[name]) != tuple(shape):
            problems.append(f"{name} has shape {tuple(shapes[name])}, {tuple(shape)} expected")
    return problems
    ### END SOLUTION


def load_npz_checkpoint(path: str | os.PathLike, kind: str,
                        shapes: Mapping[str, tuple] | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a file written by `save_npz_checkpoint` with the same `kind`, whose
    arrays have exactly `shapes` (name -> shape) when given; else CheckpointError naming the
    problem (missing, truncated, foreign, newer, other kind or shapes). Never unpickles."""
    path = Path(path)
    arrays = _read_npz(path)
    header = _read_header(arrays.pop(_META_KEY, None))
    problem = _header_problem(header, kind)
    if problem is not None:
        raise CheckpointError(f"{path} {problem}")
    problems = shape_problems({name: a.shape for name, a in arrays.items()}, shapes) if shapes is not None else []
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(f"{path} does not fit: " + "; ".join(problems[:4]) + more)
    return arrays, header.get("meta", {})

# %% nbgrader={"grade": true, "grade_id": "test-checkpoint-files", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import pickle
import tempfile

tmp_dir = Path(tempfile.mkdtemp())
good = save_npz_checkpoint(tmp_dir / "demo.npz", {"w": np.arange(6.0).reshape(2, 3), "t": Tensor([1.0, 2.0])},
                           {"epoch": 3}, kind="demo")
arrays, meta = load_npz_checkpoint(good, kind="demo", shapes={"w": (2, 3), "t": (2,)})
assert meta == {"epoch": 3} and arrays["w"].shape == (2, 3) and arrays["t"].dtype == np.float32
assert write_atomically(tmp_dir / "raw.bin", lambda f: f.write(b"abc")).read_bytes() == b"abc"
assert sorted(p.name for p in tmp_dir.iterdir()) == ["demo.npz", "raw.bin"], "no temporary file is left behind"
class Evil:                                                     # unpickling it would create `marker`
    def __reduce__(self):
        return (Path.touch, (tmp_dir / "marker",))
signed = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": "demo", "meta": {}}
np.savez(tmp_dir / "evil.npz", __meta__=np.array(json.dumps(signed)), w=np.array([Evil()], dtype=object))
(tmp_dir / "model.pkl").write_bytes(pickle.dumps(Evil()))
for bad, kw in [("evil.npz", {}), ("model.pkl", {}), ("missing.npz", {}), ("demo.npz", {"kind": "trainer"}),
                ("demo.npz", {"shapes": {"w": (3, 2), "t": (2,)}})]:
    try:
        load_npz_checkpoint(tmp_dir / bad, **{"kind": "demo", **kw})
        raise AssertionError(f"{bad} {kw} must be refused")
    except CheckpointError:
        pass
assert not (tmp_dir / "marker").exists(), "nothing may be unpickled"
assert _read_header(np.array(json.dumps(signed))) == signed and _header_problem(signed, "demo") is None
for wrong in ({**signed, "format": "other"}, {**signed, "version": CHECKPOINT_VERSION + 1}, {**signed, "kind": "x"}):
    assert isinstance(_header_problem(wrong, "demo"), str), f"{wrong} is not a 'demo' checkpoint"
assert shape_problems({"w": (2, 3)}, {"w": [2, 3]}) == [], "a list is the same shape"
assert len(shape_problems({"w": (2, 3), "c": (1,)}, {"w": (3, 2), "b": (3,)})) == 3, "each: missing, extra, other"
print("checkpoint files: OK")

# %% [markdown]
# ## 4. The Trainer
#
# `trainer = Trainer(model, optimizer, loss_fn, metrics=("accuracy",), ...)`, then
# `history = trainer.fit(train_data, val_data, epochs=10)` and `trainer.evaluate(test_data)`.
# **Data**: any iterable of `(inputs, targets)` batches (Tensors or ndarrays). If it has
# `set_epoch(epoch)`, the trainer calls it before each epoch, so the shuffling can be a
# pure function of `(seed, epoch)`: a resumed run sees the same batches. **`epochs` is the
# total**: after resuming from epoch 4, `fit(epochs=10)` trains 6 more. **Evaluation** runs
# under `no_grad()` and in `model.eval()` mode, and restores the mode it found.
#
# **History**: one list per key, in this order, one entry per epoch: `epoch`, `train_loss`,
# `train_<metric>`..., `val_loss`, `val_<metric>`... (NaN without validation), `lr` (of the
# epoch's last step), `seconds`.
#
# **You write** the trainer's state, `_too_high`, one batch, one epoch, `evaluate`, `fit`'s
# loop, `_record`, the curves of `plot_history`, and exact resume: `save_checkpoint`,
# `load_checkpoint` and what must match (`_misfits`). Input checks and progress bar are given.

# %% nbgrader={"grade": false, "grade_id": "trainer", "locked": false, "schema_version": 3, "solution": true}
#| export
def _as_input(x: Any) -> Any:  # model inputs as a Tensor (ndarrays and lists are wrapped)
    return x if isinstance(x, Tensor) else Tensor(x)


def _as_array(y: Any) -> np.ndarray:  # targets as an ndarray
    return y.data if isinstance(y, Tensor) else np.asarray(y)


def _unpack(batch: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        kind = f"a {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        raise TypeError(f"Trainer: {where} is {kind}; each batch must be a pair (inputs, targets)")
    return batch[0], batch[1]


def _loss_value(loss: Any) -> float:
    """The loss as a Python float; it must be a one-element Tensor."""
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError(f"Trainer: loss_fn must return a one-element Tensor (use reduction='mean'), "
                         f"got {type(loss).__name__} of shape {getattr(loss, 'shape', None)}")
    return float(loss.data)


def _named_rngs(model: Any, prefix: str = "") -> dict[str, np.random.Generator]:
    """Generators that modules keep as their `rng` attribute (e.g. Dropout(rng=...)), by path
    ("<model>" for the model's own, "layers.2" for a child's, found through named_children())."""
    ### BEGIN SOLUTION
    rng = getattr(model, "rng", None)
    found = {prefix or "<model>": rng} if isinstance(rng, np.random.Generator) else {}
    for name, child in (model.named_children() if hasattr(model, "named_children") else ()):
        found.update(_named_rngs(child, f"{prefix}.{name}" if prefix else name))
    return found
    ### END SOLUTION


class Trainer:
    """Trains `model` with `optimizer` on `loss_fn(model(inputs), targets)`. metrics: names ("accuracy"),
    callables `(outputs, targets) -> (total, count)` or a dict name -> metric. scheduler: stepped after
    each optimizer step. grad_clip: max global gradient norm. checkpoint_dir: gets `last.npz` after every
    epoch. divergence_factor, divergence_patience: see `_too_high` (factor None: off; NaN always stops)."""

    def __init__(self, model: Any, optimizer: Optimizer, loss_fn: Callable[[Any, Any], Tensor],
                 metrics: Any = ("accuracy",), scheduler: LRScheduler | None = None,
                 grad_clip: float | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 progress: bool = True, divergence_factor: float | None = 4.0, divergence_patience: int = 20):
        if not callable(model) or not hasattr(model, "state_dict"):
            raise TypeError(f"Trainer: model must be a Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Trainer: optimizer must be an Optimizer, got {type(optimizer).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"Trainer: loss_fn must be callable, got {type(loss_fn).__name__}")
        if scheduler is not None and (not isinstance(scheduler, LRScheduler) or scheduler.optimizer is not optimizer):
            raise ValueError("Trainer: scheduler must be an LRScheduler created for this optimizer")
        for name, value in (("grad_clip", grad_clip), ("divergence_factor", divergence_factor)):
            positive = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf
            if value is not None and not positive:
                raise ValueError(f"Trainer: {name} must be a positive number or None, got {value!r}")
        if isinstance(divergence_patience, bool) or not isinstance(divergence_patience, int) or divergence_patience < 1:
            raise ValueError(f"Trainer: divergence_patience must be a positive integer, got {divergence_patience!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.metrics = _resolve_metrics(metrics)
        self.scheduler, self.grad_clip, self.progress = scheduler, grad_clip, bool(progress)
        self.divergence_factor, self.divergence_patience = divergence_factor, divergence_patience
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.postfix_every = 10                          # batches between progress-bar refreshes
        ### BEGIN SOLUTION
        self.epoch = 0                                   # epochs completed
        names = ["loss", *self.metrics]
        self.history: dict[str, list] = {"epoch": []}
        for split in ("train", "val"):
            for name in names:
                self.history[f"{split}_{name}"] = []
        self.history["lr"], self.history["seconds"] = [], []
        self._last_lr: float | None = None               # learning rate of the latest step
        self._reference, self._above = None, deque()     # divergence: reference loss, recent batches above
        ### END SOLUTION

    def _finite(self, value: float, epoch: int, batch: int, what: str = "loss") -> float:
        """`value` if finite, else TrainingDivergedError (epoch, batch from 0 here, from 1 in it)."""
        if not math.isfinite(value):
            raise TrainingDivergedError(epoch + 1, batch + 1, value, self.optimizer.lr, what=what)
        return value

    def _check_loss(self, value: float, outputs: np.ndarray, targets: np.ndarray, epoch: int, batch: int) -> float:
        """`value`, unless it is not finite or `_too_high` (TrainingDivergedError)."""
        self._finite(value, epoch, batch)
        if self.divergence_factor is not None and self._too_high(value, outputs, targets):
            raise TrainingDivergedError(epoch + 1, batch + 1, value, self.optimizer.lr, what=(
                f"loss was above {self.divergence_factor:g} x {self._reference:.4g} in {sum(self._above)} of "
                f"the last {len(self._above)} batches, and"))
        return value

    def _too_high(self, loss: float, outputs: np.ndarray, targets: np.ndarray) -> bool:
        """Whether the loss was above divergence_factor x the reference in more than half of the
        last divergence_patience batches (the verdicts kept in the deque `self._above`). The
        reference, set on fit()'s first batch: max(its loss, log K), K the classes when
        `targets` are class indices of (..., K) `outputs`, else 1."""
        ### BEGIN SOLUTION
        if self._reference is None:
            classes = outputs.shape[-1] if targets.dtype.kind in "iu" and outputs.ndim == targets.ndim + 1 else 1
            self._reference = max(loss, math.log(classes))
        self._above.append(loss > self.divergence_factor * self._reference)
        if len(self._above) > self.divergence_patience:
            self._above.popleft()
        return len(self._above) == self.divergence_patience and 2 * sum(self._above) > self.divergence_patience
        ### END SOLUTION

    def _tick(self, bar: Any, batch: int, running: _Running, val: dict[str, float] | None = None) -> None:
        """Advance the tqdm `bar`, with the running averages every `postfix_every` batches;
        `_tick(bar, -1, running, val)` shows the epoch's results."""
        if val is None:
            bar.update(1)
        if val is not None or (batch + 1) % self.postfix_every == 0:
            shown = {**running.result(), **{f"val_{k}": v for k, v in (val or {}).items()}}
            bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items()}, refresh=False)

    def _train_batch(self, inputs: Any, targets: Any, epoch: int, batch: int) -> tuple[float, np.ndarray]:
        """Forward, `_check_loss`, zero the gradients (optimizer's and model's), backward, clip
        (when `grad_clip`; the norm checked by `_finite`), record the rate in `_last_lr`,
        step, schedule. Returns (loss, outputs as an ndarray)."""
        ### BEGIN SOLUTION
        outputs = self.model(_as_input(inputs))
        loss = self.loss_fn(outputs, targets)
        value = self._check_loss(_loss_value(loss), outputs.data, _as_array(targets), epoch, batch)
        self.optimizer.zero_grad()
        if hasattr(self.model, "zero_grad"):
            self.model.zero_grad()
        loss.backward()
        if self.grad_clip is not None:
            self._finite(clip_grad_norm(self.optimizer.params, self.grad_clip), epoch, batch, "gradient norm")
        self._last_lr = self.optimizer.lr
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return value, outputs.data
        ### END SOLUTION

    def _train_epoch(self, data: Iterable, epoch: int, bar: Any) -> _Running:
        """One pass in training mode: `_unpack`, train on, add up and `_tick` each batch."""
        ### BEGIN SOLUTION
        self.model.train()
        running = _Running(self.metrics)
        for b, batch in enumerate(data):
            inputs, targets = _unpack(batch, f"batch {b + 1} of epoch {epoch + 1}")
            loss, outputs = self._train_batch(inputs, targets, epoch, b)
            running.add(loss, outputs, _as_array(targets))
            self._tick(bar, b, running)
        ### END SOLUTION
        if running.examples == 0:
            raise ValueError(f"Trainer.fit: train_data yielded no batches in epoch {epoch + 1} (a generator "
                             f"is used up after one pass: pass a list or a DataLoader)")
        return running

    def evaluate(self, data: Iterable) -> dict[str, float]:
        """{"loss": ..., "<metric>": ...} over `data` (weighted by batch size) under no_grad() in
        eval mode, restoring the model's mode."""
        ### BEGIN SOLUTION
        running = _Running(self.metrics)
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        try:
            with no_grad():
                for b, batch in enumerate(data):
                    inputs, targets = _unpack(batch, f"evaluation batch {b + 1}")
                    outputs = self.model(_as_input(inputs))
                    loss = self.loss_fn(outputs, targets)
                    running.add(_loss_value(loss), outputs.data, _as_array(targets))
        finally:
            self.model.train(was_training)
        ### END SOLUTION
        if running.examples == 0:
            raise ValueError("Trainer.evaluate: the data yielded no batches")
        return running.result()

    def fit(self, train_data: Iterable, val_data: Iterable | None = None, epochs: int = 1,
            resume: bool | str | os.PathLike = False) -> dict[str, list]:
        """Train until `epochs` epochs are done in total; returns `self.history`. resume: True
        (from `checkpoint_dir/last.npz`) or a checkpoint path. Each epoch: `set_epoch` (if the
        data has it), a training pass inside `with self._epoch_bar(...)`, evaluation on
        `val_data`, `_record`, the epoch count, `checkpoint_dir/last.npz` (if set)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Trainer.fit: epochs must be a positive integer (the total to reach), got {epochs!r}")
        if resume is not False:
            self._resume_from(resume)
        if self.epoch >= epochs:
            if resume is not False:
                print(f"Trainer.fit: {self.epoch} epochs already done (epochs={epochs}); nothing to train")
                return self.history
            raise ValueError(f"Trainer.fit: {self.epoch} epochs are already done and epochs={epochs} is the "
                             f"total to reach; pass epochs={self.epoch + epochs} to train {epochs} more")
        ### BEGIN SOLUTION
        self._reference, self._above = None, deque()     # a new run: a new divergence reference
        for epoch in range(self.epoch, epochs):
            started = time.perf_counter()
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            with self._epoch_bar(train_data, epoch, epochs) as bar:
                running = self._train_epoch(train_data, epoch, bar)
                val = self.evaluate(val_data) if val_data is not None else {}
                self._tick(bar, -1, running, val)
            self._record(epoch + 1, running.result(), val, time.perf_counter() - started)
            self.epoch = epoch + 1
            if self.checkpoint_dir is not None:
                self.save_checkpoint(self.checkpoint_dir / "last.npz")
        return self.history
        ### END SOLUTION

    def _epoch_bar(self, data: Iterable, epoch: int, epochs: int) -> Any:
        """The tqdm progress bar of one epoch (a context manager), of len(data) batches if known."""
        return tqdm(total=len(data) if hasattr(data, "__len__") else None, desc=f"epoch {epoch + 1}/{epochs}",
                    disable=not self.progress, leave=True, dynamic_ncols=True)

    def _record(self, epoch: int, train: dict[str, float], val: dict[str, float], seconds: float) -> None:
        """Append to every history list (val_<name>: NaN without validation; lr: `_last_lr`)."""
        ### BEGIN SOLUTION
        h = self.history
        h["epoch"].append(epoch)
        for name in ["loss", *self.metrics]:
            h[f"train_{name}"].append(float(train[name]))
            h[f"val_{name}"].append(float(val.get(name, math.nan)))
        h["lr"].append(float(self._last_lr if self._last_lr is not None else self.optimizer.lr))
        h["seconds"].append(float(seconds))
        ### END SOLUTION

    def _resume_from(self, resume: bool | str | os.PathLike) -> None:
        """Load `checkpoint_dir/last.npz` (resume=True; none yet: say so, start fresh) or the
        path `resume`, and say so (with `progress`)."""
        if resume is True and self.checkpoint_dir is None:
            raise ValueError("Trainer.fit: resume=True continues from checkpoint_dir/last.npz, but "
                             "checkpoint_dir is None; pass checkpoint_dir=... or resume=<path>")
        ### BEGIN SOLUTION
        path = self.checkpoint_dir / "last.npz" if resume is True else Path(resume)
        if resume is True and not path.exists():
            print(f"Trainer.fit: no checkpoint at {path} yet; starting from epoch {self.epoch}")
            return
        self.load_checkpoint(path)
        if self.progress:
            print(f"Trainer.fit: resumed from {path} after epoch {self.epoch}")
        ### END SOLUTION

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Everything an exact resume needs, via `save_npz_checkpoint(..., kind="trainer")`:
        arrays "model/<name>" (state_dict) and "optimizer/<name>" (buffers); meta epoch,
        history, model_class, optimizer (state_dict without buffers), scheduler (or None),
        rng (the global bit_generator.state), module_rngs (the same for `_named_rngs`)."""
        ### BEGIN SOLUTION
        opt_state = self.optimizer.state_dict()
        arrays = {f"model/{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optimizer/{k}": v for k, v in opt_state.pop("buffers").items()})
        meta = {"epoch": self.epoch,
                "history": self.history,
                "model_class": type(self.model).__name__,
                "optimizer": opt_state,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "rng": get_rng().bit_generator.state,
                "module_rngs": {k: g.bit_generator.state for k, g in _named_rngs(self.model).items()}}
        return save_npz_checkpoint(path, arrays, meta, kind="trainer")
        ### END SOLUTION

    def _check_checkpoint(self, path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, meta) of a `save_checkpoint` file that fits this trainer (array shapes,
        optimizer, scheduler, metrics, generators), or a CheckpointError saying what does not."""
        ### BEGIN SOLUTION
        shapes = {f"model/{k}": np.shape(v) for k, v in self.model.state_dict().items()}
        shapes.update({f"optimizer/{k}": np.shape(v) for k, v in self.optimizer.state.items()})
        ### END SOLUTION
        arrays, meta = load_npz_checkpoint(path, kind="trainer", shapes=shapes)
        missing = [k for k in ("epoch", "history", "optimizer", "scheduler", "rng", "module_rngs") if k not in meta]
        if missing:
            raise CheckpointError(f"{path}: a trainer checkpoint without {missing}")
        problems = self._misfits(meta)
        try:
            self.optimizer.check_state_dict({**meta["optimizer"], "buffers": {
                k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}})
            if self.scheduler is not None and meta["scheduler"] is not None:
                self.scheduler.check_state_dict(meta["scheduler"])
        except ValueError as err:
            problems.append(str(err))
        if problems:
            raise CheckpointError(f"{path} does not fit: " + "; ".join(problems))
        return arrays, meta

    def _misfits(self, meta: dict[str, Any]) -> list[str]:
        """What in a trainer checkpoint's `meta` does not fit this trainer ([] if nothing): a scheduler
        on one side only, other history keys, other `_named_rngs`, another kind of global generator."""
        ### BEGIN SOLUTION
        problems = []
        if (meta["scheduler"] is None) != (self.scheduler is None):
            problems.append(f"the checkpoint has {'no' if meta['scheduler'] is None else 'a'} scheduler, "
                            f"this trainer has {'none' if self.scheduler is None else 'one'}")
        if sorted(meta["history"]) != sorted(self.history):
            problems.append(f"the checkpoint tracked {sorted(meta['history'])}, this trainer tracks "
                            f"{sorted(self.history)} (use the same metrics)")
        if sorted(meta["module_rngs"]) != sorted(_named_rngs(self.model)):
            problems.append(f"generators of modules {sorted(meta['module_rngs'])} in the checkpoint, "
                            f"{sorted(_named_rngs(self.model))} here")
        generator = type(get_rng().bit_generator).__name__
        if meta["rng"].get("bit_generator") != generator:
            problems.append(f"a {meta['rng'].get('bit_generator')} generator in the checkpoint, {generator} here")
        return problems
        ### END SOLUTION

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a `save_checkpoint` file (model, optimizer, scheduler, history, epoch, generators),
        read and checked first by `_check_checkpoint`: nothing changes unless all of it fits."""
        ### BEGIN SOLUTION
        arrays, meta = self._check_checkpoint(path)
        self.model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
        self.optimizer.load_state_dict({**meta["optimizer"], "buffers": {
            k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}})
        if self.scheduler is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self.epoch = int(meta["epoch"])
        get_rng().bit_generator.state = meta["rng"]
        for name, gen in _named_rngs(self.model).items():
            gen.bit_generator.state = meta["module_rngs"][name]
        ### END SOLUTION

    def plot_history(self, path: str | os.PathLike | None = None) -> Any:
        """Loss and metric curves (train and validation) per epoch, one panel each; saved as a
        PNG at `path` when given, shown inline in a notebook. Returns the matplotlib Figure."""
        from matplotlib.figure import Figure
        if not self.history["epoch"]:
            raise ValueError("Trainer.plot_history: the history is empty; call fit() first")
        ### BEGIN SOLUTION
        names = ["loss", *self.metrics]
        fig = Figure(figsize=(4.5 * len(names), 3.4), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]       # one panel per name
        for ax, name in zip(axes, names):
            for split, style in (("train", "o-"), ("val", "s--")):
                values = self.history[f"{split}_{name}"]
                if not all(math.isnan(v) for v in values):           # no validation: no val curve
                    ax.plot(self.history["epoch"], values, style, label=split, markersize=3)
            ax.set(title=name, xlabel="epoch")
            ax.legend()
        ### END SOLUTION
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        if path is not None:
            write_atomically(path, lambda f: f.write(png.getvalue()))
        if in_notebook():
            from IPython.display import Image, display
            display(Image(data=png.getvalue()))
        return fig

    def __repr__(self) -> str:
        return (f"Trainer(model={type(self.model).__name__}, optimizer={self.optimizer!r}, "
                f"metrics={list(self.metrics)}, epoch={self.epoch})")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython shell or script)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})

# %%
# A first training run. Module 08 builds a real DataLoader; for now, mini-batches of two arrays
# shuffled as a pure function of (seed, epoch). The task: two interleaved spirals, which a
# linear model cannot separate and a small MLP can.
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Dropout, Sequential
from tinytorch.core.losses import CrossEntropyLoss, MSELoss
from tinytorch.core.optimizers import Adam, CosineWarmupLR, SGD
from tinytorch.core.tensor import manual_seed


class ArrayBatches:
    """Mini-batches of (x, y), shuffled per epoch as a pure function of (seed, epoch)."""
    def __init__(self, x, y, batch_size, seed=0, shuffle=True):
        self.x, self.y, self.batch_size, self.seed, self.shuffle, self.epoch = x, y, batch_size, seed, shuffle, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        yield from ((self.x[order[i:i + self.batch_size]], self.y[order[i:i + self.batch_size]])
                    for i in range(0, n, self.batch_size))


def spirals(n_per_class, noise=0.1, seed=0):                  # x (2n, 2) float32, y (2n,) int64
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1, n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * n_per_class, 2)) / 3
    return x.astype(np.float32), np.repeat(np.array([0, 1], dtype=np.int64), n_per_class)


x_train, y_train = spirals(200, seed=0)
x_val, y_val = spirals(100, seed=1)
train_data = ArrayBatches(x_train, y_train, batch_size=32, seed=0)
val_data = ArrayBatches(x_val, y_val, batch_size=100, shuffle=False)

manual_seed(0)
model = Sequential(Dense(2, 64), ReLU(), Dense(64, 64), ReLU(), Dense(64, 2))
optimizer = Adam(model.parameters(), lr=0.01)
trainer = Trainer(model, optimizer, CrossEntropyLoss(), metrics=("accuracy",), progress=False)
history = trainer.fit(train_data, val_data, epochs=40)
print({key: round(values[-1], 3) for key, values in history.items()})

# %% nbgrader={"grade": true, "grade_id": "test-trainer", "locked": true, "points": 6, "schema_version": 3, "solution": false}
assert history["train_accuracy"][-1] >= 0.97, history["train_accuracy"][-1]
assert history["val_accuracy"][-1] >= 0.9, history["val_accuracy"][-1]
assert list(history) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
assert len(history["epoch"]) == 40 and history["epoch"][:3] == [1, 2, 3] and trainer.epoch == 40
assert history["lr"][-1] == 0.01 and all(s > 0 for s in history["seconds"])
model.eval()
result = trainer.evaluate(val_data)
assert set(result) == {"loss", "accuracy"} and abs(result["accuracy"] - history["val_accuracy"][-1]) < 1e-12
assert not model.training, "evaluate() restores the mode it found"
model.train()
line = Dense(1, 1)
watch = Trainer(line, SGD(line.parameters(), lr=0.1), CrossEntropyLoss(), divergence_patience=4, progress=False)
ten_classes, target = np.zeros((1, 10)), np.zeros(1, dtype=np.int64)   # reference: max(1.0, log 10) = 2.3
verdicts = [watch._too_high(loss, ten_classes, target) for loss in (1.0, 20.0, 1.0, 20.0, 20.0)]
assert verdicts == [False, False, False, False, True], "more than half of the last 4 above 4 x 2.3"
print("trainer: OK")

# %% [markdown]
# ## 5. Stop, resume, and get the same bits
#
# A model *with dropout* trains 4 epochs straight; the same set-up trains 2 epochs with
# checkpoints, then fresh objects (another seed) resume to 4 epochs: bit for bit the same?
# Only if the checkpoint holds the parameters, Adam's moments, the scheduler's step, the
# epoch (the next shuffle), the generators (the next dropout masks) and the history.

# %%
def make_run(seed, checkpoint_dir=None, progress=False):
    manual_seed(seed)
    net = Sequential(Dense(2, 32), ReLU(), Dropout(0.2), Dense(32, 2))
    opt = Adam(net.parameters(), lr=0.01)
    sched = CosineWarmupLR(opt, warmup_steps=5, total_steps=4 * len(train_data))
    return Trainer(net, opt, CrossEntropyLoss(), scheduler=sched, grad_clip=5.0,
                   checkpoint_dir=checkpoint_dir, progress=progress)

straight = make_run(seed=1)
straight.fit(train_data, epochs=4)

ckpt_dir = Path(tempfile.mkdtemp())
first = make_run(seed=1, checkpoint_dir=ckpt_dir)
first.fit(train_data, epochs=2)
resumed = make_run(seed=123, checkpoint_dir=ckpt_dir, progress=True)   # fresh objects, other seed
resumed.fit(train_data, epochs=4, resume=True)
print(sorted(p.name for p in ckpt_dir.iterdir()), f"{(ckpt_dir / 'last.npz').stat().st_size / 1024:.1f} KiB")

# %% nbgrader={"grade": true, "grade_id": "test-resume", "locked": true, "points": 4, "schema_version": 3, "solution": false}
same = all(np.array_equal(a.data, b.data) for a, b in zip(straight.model.parameters(), resumed.model.parameters()))
assert same, "resuming must give bit-identical parameters"
assert straight.history["train_loss"] == resumed.history["train_loss"], "the same losses, epoch by epoch"
assert resumed.epoch == 4 and resumed.history["epoch"] == [1, 2, 3, 4]
_, meta = load_npz_checkpoint(ckpt_dir / "last.npz", kind="trainer")
assert resumed._misfits(meta) == [] and len(resumed._misfits({**meta, "rng": {"bit_generator": "MT19937"}})) == 1
net = Sequential(Dense(2, 32), ReLU(), Dropout(0.2, rng=np.random.default_rng(0)), Dense(32, 2))
plain = Trainer(net, Adam(net.parameters(), lr=0.01), CrossEntropyLoss(), metrics=(), progress=False)
assert len(plain._misfits(meta)) == 3, "no scheduler here, other metrics tracked, a generator of its own"
print("exact resume: OK")

# %% [markdown]
# ## 6. Looking at the curves
#
# The gap between the training and validation curves is the generalisation gap; a
# validation loss rising while the training loss falls is overfitting.

# %%
fig = trainer.plot_history(tmp_dir / "history.png")
print("saved", (tmp_dir / "history.png").stat().st_size, "bytes")

# %% nbgrader={"grade": true, "grade_id": "test-plot", "locked": true, "points": 1, "schema_version": 3, "solution": false}
assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"], "one panel per tracked quantity, the loss first"
for ax, name in zip(fig.axes, ["loss", "accuracy"]):
    assert [line.get_label() for line in ax.get_lines()] == ["train", "val"], f"{name}: a train and a val curve"
    for line, split in zip(ax.get_lines(), ["train", "val"]):
        assert list(line.get_xdata()) == history["epoch"] and list(line.get_ydata()) == history[f"{split}_{name}"]
assert (tmp_dir / "history.png").read_bytes()[:4] == b"\x89PNG"
print("plot_history: OK")

import shutil
for folder in (tmp_dir, ckpt_dir):          # tidy up the temporary files of this notebook
    shutil.rmtree(folder)

# %% [markdown]
# ## Systems thinking
#
# 1. **Checkpoint size.** How does `last.npz` split between parameters and Adam's state?
#    For TinyGPT with 10M float32 parameters, how many MiB, and how long at 200 MB/s?
# 2. **What fsync costs.** Time `save_npz_checkpoint` with and without `os.fsync`. What can
#    happen to the file after a power cut if you skip it?
# 3. **Resume granularity.** What extra state would a mid-epoch resume need?
# 4. **Overhead of the loop.** For a 200 µs step, what does the loop add (`float(loss)`,
#    metrics, progress bar)? **Determinism:** what breaks bit-identical resume on a GPU?
