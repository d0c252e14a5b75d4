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
# **Where you are.** You can build a model (module 03), measure its error (module 04),
# differentiate it (module 05) and step its parameters (module 06). Training is these
# pieces in a loop, run for hours, and everything that can go wrong in hours will (the
# loss explodes at 3 a.m., the machine reboots at epoch 37). This module writes the loop
# once, carefully, so that every later module trains with one call.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `accuracy`, `_Running` | a metric: `(outputs, targets) -> (correct, count)`; averages weighted by batch size |
# | `TrainingDivergedError` | raised when the loss becomes NaN or infinite, with where and what to try |
# | `write_atomically`, `save_npz_checkpoint`, `load_npz_checkpoint` | (provided) safe checkpoint files: one `.npz`, written atomically, never unpickled |
# | `Trainer` | `fit`, `evaluate`, `history`, `plot_history`, `save_checkpoint`, `load_checkpoint`, exact resume |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into `tinytorch/core/training.py`.
#
# **The one idea of this module.** A training run is a *deterministic function* of its
# inputs: the initial weights, the data order, and the random numbers drawn on the way
# (dropout). If a checkpoint stores *all* the state of that function (weights, optimizer
# moments, schedule position, epoch, and the state of the random generators), then
# stopping and resuming gives the **bit-identical** result of a run that never stopped.
#
# **Points: 15** (the total of this module's graded test cells)

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
detection, and safe checkpoint files.

Module 07 of TinyTorch (generated from modules/07_training/training_dev.py; do not edit).

Checkpoints are single .npz files written atomically (temporary file, fsync, os.replace)
with their JSON metadata stored inside as a string array; they are read with
np.load(allow_pickle=False), so loading a checkpoint can never run code.
"""
from __future__ import annotations

import io
import json
import math
import os
import secrets
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

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
# **Metrics** say how well the model does in terms you care about. The loss is always
# tracked; classification adds **accuracy**, the fraction of examples whose highest
# output (the argmax over the last axis) is the target class. For a language model with
# outputs `(B, T, V)` and targets `(B, T)`, the same code counts correct next tokens.
#
# **Averages over an epoch must be weighted.** The last batch is usually smaller (1000
# examples in batches of 64: the last holds 40), and averaging per-batch accuracies would
# count its examples 1.6 times as much as the others. So every metric returns a
# **(total, count)** pair: add totals and counts over the batches, divide once at the end.
# The loss, a per-batch mean, is weighted by the batch size.
#
# A custom metric is any `(outputs: ndarray, targets: ndarray) -> (total, count)`. You write
# `accuracy` and `_Running`, which adds up the batches for the Trainer.

# %% nbgrader={"grade": false, "grade_id": "metrics", "locked": false, "schema_version": 3, "solution": true}
#| export
Metric = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def accuracy(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(number of correct predictions, number of predictions).

    outputs: (..., C) scores; targets: (...) integer classes (the outputs' shape without
    the last axis). A prediction is correct when argmax over the last axis equals the target.
    """
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
    if metrics is None:
        return {}
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [
        (m if isinstance(m, str) else getattr(m, "__name__", None), m)
        for m in ([metrics] if isinstance(metrics, str) or callable(metrics) else metrics)]
    out: dict[str, Metric] = {}
    for name, m in items:
        if isinstance(m, str):
            if m not in METRICS:
                raise ValueError(f"Trainer: unknown metric {m!r}; known: {sorted(METRICS)}, "
                                 f"or pass a callable (outputs, targets) -> (total, count)")
            m = METRICS[m]
        if not callable(m):
            raise TypeError(f"Trainer: metric {name!r} is a {type(m).__name__}, not a callable")
        if not isinstance(name, str) or not name.isidentifier() or name == "loss":
            raise ValueError(f"Trainer: metric name {name!r} must be an identifier other than 'loss' "
                             f"(pass a dict {{'name': metric}} to name a lambda)")
        if name in out:
            raise ValueError(f"Trainer: metric {name!r} is given twice")
        out[name] = m
    return out


def _call_metric(name: str, metric: Metric, outputs: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """metric(outputs, targets) as a pair of floats; a failure names the metric."""
    try:
        total, count = metric(outputs, targets)
    except ValueError as err:
        raise ValueError(f"Trainer: metric {name!r} failed: {err} (a regression model needs "
                         f"metrics=() or metrics suited to it)") from None
    return float(total), float(count)


class _Running:
    """Weighted totals of the loss and each metric over the batches seen so far.

    `add(loss, outputs, targets)` for each batch: `loss` is the batch's mean loss (weighted
    by the number of examples, `targets.shape[0]`, or 1 for a 0-d target), each metric
    adds its (total, count) from `_call_metric`. `result()`: {"loss": ..., name: ...},
    each total divided by its count (NaN when nothing was counted).
    """

    def __init__(self, metrics: dict[str, Metric]):
        self.metrics = metrics
        self.loss_total, self.examples = 0.0, 0
        self.totals = {name: [0.0, 0.0] for name in metrics}     # name -> [total, count]

    def add(self, loss: float, outputs: np.ndarray, targets: np.ndarray) -> None:
        ### BEGIN SOLUTION
        n = targets.shape[0] if targets.ndim else 1
        self.loss_total += loss * n
        self.examples += n
        for name, metric in self.metrics.items():
            total, count = _call_metric(name, metric, outputs, targets)
            self.totals[name][0] += total
            self.totals[name][1] += count
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
try:
    accuracy(scores, np.array([1, 0]))
    raise AssertionError("4 outputs with 2 targets must be refused")
except ValueError:
    pass
def mean_abs_error(outputs, targets):
    return float(np.abs(outputs - targets).sum()), targets.size
assert list(_resolve_metrics(("accuracy", mean_abs_error))) == ["accuracy", "mean_abs_error"]
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
# A learning rate a bit too large, one batch of garbage, `log(0)` in a loss: the loss
# becomes `inf`, then `nan`, and `nan` spreads to every parameter in one step. We check
# the loss of every batch (one `float()`) *before* `backward()` and `step()`, and stop at
# once with an error that says **where** (epoch, batch), **what** (the value, the
# learning rate) and **what to try**; the parameters are still the finite ones.

# %% nbgrader={"grade": false, "grade_id": "diverged", "locked": false, "schema_version": 3, "solution": true}
#| export
class TrainingDivergedError(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite. `epoch` and `batch` count
    from 1; `value` is the offending number."""

    def __init__(self, epoch: int, batch: int, value: float, lr: float, what: str = "loss"):
        self.epoch, self.batch, self.value, self.lr = epoch, batch, value, lr
        ### BEGIN SOLUTION
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
msg = str(err)
assert "3" in msg and "17" in msg and "nan" in msg and "0.5" in msg, "the message gives epoch, batch, value and learning rate"
print("TrainingDivergedError: OK")

# %% [markdown]
# ## 3. Checkpoint files you can trust
#
# A checkpoint must survive three kinds of accident.
#
# **A crash while writing** would leave a truncated file, and the previous good checkpoint
# gone. The classic *atomic write*: write to a temporary file **in the same directory**,
# `flush()`, `os.fsync()` (the bytes reach the disk), then `os.replace(tmp, path)`. A
# rename within one file system is atomic: `path` is the whole old file or the whole new
# one, never a mixture. (Across file systems, from `/tmp`, a rename becomes a copy.)
#
# **A file that is not what it claims.** *Loading* a pickle runs whatever code the file
# says, so we never unpickle. A checkpoint is an `.npz` (a zip of `.npy` arrays) read with
# `np.load(..., allow_pickle=False)`. Everything that is not an array (epoch, history,
# hyperparameters, random generator states) goes into one JSON string, the 0-d string
# array `__meta__`, signed `{"format": "tinytorch-checkpoint", "version": 1, "kind":
# "trainer", "meta": {...}}`.
#
# **A file from somewhere else.** Loading checks the first bytes (a pickle starts with
# `\x80`, a zip with `PK`), the signature, the kind and the version, and turns every
# failure into a `CheckpointError` that says which it is. Any file name works:
# `save_npz_checkpoint("model.pkl", ...)` writes a safe `.npz` (module 16 uses this).
#
# This code is provided (read it: it is short, and every line guards against one of the
# accidents above). `write_atomically` is the one atomic-write helper of TinyTorch: every
# file the framework saves, in any module, goes through it.

# %%
#| export
CHECKPOINT_FORMAT = "tinytorch-checkpoint"
CHECKPOINT_VERSION = 1
_META_KEY = "__meta__"
_RESERVED_KEYS = {_META_KEY, "file", "args", "allow_pickle"}   # np.savez's own argument names


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt, foreign, or does not fit."""


def _json_default(obj: Any) -> Any:
    """Let json.dumps write numpy scalars and small arrays."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Create `path` (and its folder) with `write(f)` on a binary file object, atomically: the
    bytes go to a temporary file beside it, are flushed to disk, and the file is renamed into
    place, so `path` is either the old file or the whole new one, never half of it. Returns
    the path. Every file TinyTorch saves (checkpoints, run folders, packages) goes through here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):           # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def save_npz_checkpoint(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any],
                        kind: str) -> Path:
    """Write `arrays` (name -> ndarray or Tensor) and the JSON-able `meta` to one .npz file at
    `path` (any file name), atomically. `kind` names what the file holds ("trainer",
    "tinygpt", ...); `load_npz_checkpoint` checks it. Returns the path."""
    path = Path(path)
    checked: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        arr = np.asarray(value.data if isinstance(value, Tensor) else value)
        if not isinstance(name, str) or name in _RESERVED_KEYS:
            raise CheckpointError(f"save_npz_checkpoint: array name {name!r} is reserved or not a string")
        if arr.dtype.hasobject:
            raise CheckpointError(f"save_npz_checkpoint: array {name!r} has dtype object, which only "
                                  f"pickle could store; convert it to a numeric array")
        checked[name] = arr
    try:
        header = json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                             "kind": kind, "meta": dict(meta)}, default=_json_default)
    except TypeError as err:
        raise CheckpointError(f"save_npz_checkpoint: meta is not JSON-serialisable: {err}") from None
    # No allow_pickle= here: object arrays were refused above, and numpy < 2.2's savez would
    # store the keyword as one more array named "allow_pickle".
    return write_atomically(path, lambda f: np.savez(f, **{_META_KEY: np.array(header)}, **checked))


def _sniff(path: Path, head: bytes) -> str | None:
    """Why the first bytes of a file show that it is not an .npz archive (None if they don't)."""
    if not head:
        return "it is empty (0 bytes): probably an interrupted write"
    if head[:1] == b"\x80":
        return ("it is a Python pickle; TinyTorch never unpickles files, because loading a pickle "
                "can run arbitrary code")
    if head[:6] == b"\x93NUMPY":
        return "it is a single .npy array, not an .npz archive"
    if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        return f"it is not an .npz (zip) archive: it starts with {head[:8]!r}"
    return None


def load_npz_checkpoint(path: str | os.PathLike, kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by `save_npz_checkpoint` with the same `kind`: (arrays, meta).

    Raises CheckpointError for a missing file, a truncated or corrupt file, a foreign file
    (a pickle, a text file, an .npz without TinyTorch metadata), another kind, or a newer
    format version. Never unpickles.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(8)
    problem = _sniff(path, head)
    if problem:
        raise CheckpointError(f"{path} is not a TinyTorch checkpoint: {problem}")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise CheckpointError(f"{path} is an .npz archive without TinyTorch metadata "
                                      f"(arrays: {sorted(npz.files)[:8]}): not a TinyTorch checkpoint")
            meta_array = npz[_META_KEY]
            arrays = {name: npz[name] for name in npz.files if name != _META_KEY}
    except CheckpointError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise CheckpointError(f"{path} holds object arrays that only pickle could load; "
                                  f"refused (not a TinyTorch checkpoint)") from None
        raise CheckpointError(f"{path} is truncated or corrupt ({err})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(err).__name__}: {err})") from None
    try:
        if meta_array.dtype.kind != "U" or meta_array.ndim != 0:
            raise ValueError(f"__meta__ has dtype {meta_array.dtype} and shape {meta_array.shape}")
        header = json.loads(str(meta_array))
        if not isinstance(header, dict):
            raise ValueError("__meta__ is not a JSON object")
    except ValueError as err:
        raise CheckpointError(f"{path} has unreadable metadata ({err}): not a TinyTorch checkpoint") from None
    if header.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a TinyTorch checkpoint (format {header.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this TinyTorch reads "
                              f"versions up to {CHECKPOINT_VERSION} (was it written by a newer TinyTorch?)")
    if header.get("kind") != kind:
        raise CheckpointError(f"{path} is a {header.get('kind')!r} checkpoint, expected {kind!r}")
    return arrays, header.get("meta", {})

# %% nbgrader={"grade": false, "grade_id": "test-checkpoint-files", "locked": true, "schema_version": 3, "solution": false}
import pickle
import tempfile

tmp_dir = Path(tempfile.mkdtemp())
good = save_npz_checkpoint(tmp_dir / "demo.npz", {"w": np.arange(6.0).reshape(2, 3), "t": Tensor([1.0, 2.0])},
                           {"epoch": 3, "note": "hello"}, kind="demo")
arrays, meta = load_npz_checkpoint(good, kind="demo")
assert meta == {"epoch": 3, "note": "hello"} and arrays["w"].shape == (2, 3) and arrays["t"].dtype == np.float32
assert [p.name for p in tmp_dir.iterdir()] == ["demo.npz"], "no temporary file is left behind"

def expect_error(path, kind="demo"):
    try:
        load_npz_checkpoint(path, kind=kind)
    except CheckpointError:
        return
    raise AssertionError(f"{path} must be refused")

data = good.read_bytes()
(tmp_dir / "cut.npz").write_bytes(data[: len(data) // 2])
expect_error(tmp_dir / "cut.npz")
(tmp_dir / "model.pkl").write_bytes(pickle.dumps({"w": np.ones(2)}))
expect_error(tmp_dir / "model.pkl")
np.savez(tmp_dir / "other.npz", x=np.ones(2))
expect_error(tmp_dir / "other.npz")
(tmp_dir / "notes.txt").write_text("not a checkpoint")
expect_error(tmp_dir / "notes.txt")
expect_error(tmp_dir / "missing.npz")
expect_error(good, kind="trainer")
print("checkpoint files: OK")

# %% [markdown]
# ## 4. The Trainer
#
# ```python
# trainer = Trainer(model, optimizer, loss_fn, metrics=("accuracy",), scheduler=None,
#                   grad_clip=None, checkpoint_dir=None, progress=True)
# history = trainer.fit(train_data, val_data=None, epochs=10, resume=False)
# trainer.evaluate(test_data)        # {"loss": ..., "accuracy": ...}
# ```
#
# **Data.** Any iterable of `(inputs, targets)` batches, as Tensors or ndarrays: a list
# of pairs, or module 08's `DataLoader`. If the source has `set_epoch(epoch)`, the
# trainer calls it before each epoch, so a loader can make its shuffling a pure function
# of `(seed, epoch)`: that is what makes a resumed run see the same batches as an
# uninterrupted one. `len(source)`, when it exists, gives the progress bar its length.
#
# **`epochs` is the total**: after resuming from epoch 4, `fit(epochs=10)` trains 6 more.
#
# **Evaluation** runs under `no_grad()` (no graph: less memory, less time) and in
# `model.eval()` mode (Dropout off), and restores the mode it found afterwards.
#
# **You write** one batch (`_train_batch`), one epoch (`_train_epoch`), `evaluate`'s loop
# and `fit`'s loop over epochs. Provided: the checks, the divergence error (`_finite`), the
# progress bar (`_epoch_bar`, `_tick`: tqdm, refreshed every few batches), `_record`,
# checkpoints and plots.
#
# **History.** After each epoch `trainer.history` gains one entry per key:
# `epoch` (1, 2, ...), `train_loss`, `train_<metric>`, `val_loss`, `val_<metric>` (NaN
# without validation data), `lr` (the rate of the epoch's last step) and `seconds`
# (wall time of the epoch, validation included).

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


def _named_rngs(model: Any) -> dict[str, np.random.Generator]:
    """Generators that modules keep as their `rng` attribute (e.g. Dropout(rng=...)), by path."""
    found: dict[str, np.random.Generator] = {}

    def visit(prefix: str, module: Any) -> None:
        rng = getattr(module, "rng", None)
        if isinstance(rng, np.random.Generator):
            found[prefix or "<model>"] = rng
        if hasattr(module, "named_children"):
            for name, child in module.named_children():
                visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", model)
    return found


class Trainer:
    """Trains `model` with `optimizer` on `loss_fn(model(inputs), targets)`.

    Args:
        model: a Module (callable, with `parameters()`, `train()`, `eval()`, `state_dict()`).
        optimizer: an Optimizer over (usually) `model.parameters()`.
        loss_fn: `(outputs, targets) -> scalar Tensor`, e.g. CrossEntropyLoss().
        metrics: names ("accuracy"), callables `(outputs, targets) -> (total, count)` on
            ndarrays, or a dict name -> metric. The loss is always tracked.
        scheduler: an LRScheduler of `optimizer`, stepped after every optimizer step.
        grad_clip: max global gradient norm (clip_grad_norm), or None.
        checkpoint_dir: if set, `checkpoint_dir/last.npz` is written after every epoch.
        progress: show a tqdm progress bar per epoch.
    """

    def __init__(self, model: Any, optimizer: Optimizer, loss_fn: Callable[[Any, Any], Tensor],
                 metrics: Any = ("accuracy",), scheduler: LRScheduler | None = None,
                 grad_clip: float | None = None, checkpoint_dir: str | os.PathLike | None = None,
                 progress: bool = True):
        if not callable(model) or not hasattr(model, "state_dict"):
            raise TypeError(f"Trainer: model must be a Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"Trainer: optimizer must be an Optimizer, got {type(optimizer).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"Trainer: loss_fn must be callable, got {type(loss_fn).__name__}")
        if scheduler is not None and (not isinstance(scheduler, LRScheduler) or scheduler.optimizer is not optimizer):
            raise ValueError("Trainer: scheduler must be an LRScheduler created for this optimizer")
        if grad_clip is not None and (isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float))
                                      or not grad_clip > 0 or not math.isfinite(grad_clip)):
            raise ValueError(f"Trainer: grad_clip must be a positive number or None, got {grad_clip!r}")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.metrics = _resolve_metrics(metrics)
        self.scheduler, self.grad_clip, self.progress = scheduler, grad_clip, bool(progress)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.epoch = 0                                   # epochs completed
        self.history: dict[str, list] = {key: [] for key in self._history_keys()}
        self.postfix_every = 10                          # batches between progress-bar refreshes
        self._last_lr: float | None = None               # learning rate of the latest step

    def _history_keys(self) -> list[str]:
        names = ["loss", *self.metrics]
        return ["epoch", *[f"train_{n}" for n in names], *[f"val_{n}" for n in names], "lr", "seconds"]

    # ---- provided plumbing: divergence errors, progress bars -------------------------------
    def _finite(self, value: float, epoch: int, batch: int, what: str = "loss") -> float:
        """`value` if finite; else raise TrainingDivergedError (epoch and batch from 0 here,
        from 1 in the error) with the current learning rate."""
        if not math.isfinite(value):
            raise TrainingDivergedError(epoch + 1, batch + 1, value, self.optimizer.lr, what=what)
        return value

    def _epoch_bar(self, total: int | None, epoch: int, epochs: int) -> Any:
        """The progress bar of one epoch (a context manager: closed at the end of `with`)."""
        return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", disable=not self.progress,
                    leave=True, dynamic_ncols=True)

    def _tick(self, bar: Any, batch: int, running: _Running, val: dict[str, float] | None = None) -> None:
        """Advance `bar` after batch `batch`, showing the running averages every `postfix_every`
        batches; `_tick(bar, -1, running, val)` shows the epoch's results and validation."""
        if val is not None:
            return bar.set_postfix({**self._postfix(running.result()), **self._postfix(val, "val_")}, refresh=False)
        bar.update(1)
        if (batch + 1) % self.postfix_every == 0:
            bar.set_postfix(self._postfix(running.result()), refresh=False)

    @staticmethod
    def _postfix(values: dict[str, float], prefix: str = "") -> dict[str, str]:
        return {f"{prefix}{k}": f"{v:.4f}" for k, v in values.items()}

    # ---- one batch, one epoch --------------------------------------------------------
    def _train_batch(self, inputs: Any, targets: Any, epoch: int, batch: int) -> tuple[float, np.ndarray]:
        """Forward, divergence check of the loss (`self._finite`), zero the gradients (the
        optimizer's and the model's), backward, clip (when `grad_clip`; the norm is checked
        too), record the rate in `self._last_lr`, step, schedule. Returns (loss, outputs)."""
        ### BEGIN SOLUTION
        outputs = self.model(_as_input(inputs))
        loss = self.loss_fn(outputs, targets)
        value = self._finite(_loss_value(loss), epoch, batch)
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
        """One pass over `data` in training mode: for each batch, `_unpack` it, train on it,
        add it to the running averages, `self._tick(bar, b, running)`. Returns the averages."""
        self.model.train()
        running = _Running(self.metrics)
        ### BEGIN SOLUTION
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

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self, data: Iterable) -> dict[str, float]:
        """Loss and metrics over `data` (weighted by batch size) under no_grad() and eval mode;
        the model's previous mode is restored. Returns {"loss": ..., "<metric>": ...}."""
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        running = _Running(self.metrics)
        try:
            with no_grad():
                ### BEGIN SOLUTION
                for b, batch in enumerate(data):
                    inputs, targets = _unpack(batch, f"evaluation batch {b + 1}")
                    outputs = self.model(_as_input(inputs))
                    loss = self.loss_fn(outputs, targets)
                    running.add(_loss_value(loss), outputs.data, _as_array(targets))
                ### END SOLUTION
        finally:
            self.model.train(was_training)
        if running.examples == 0:
            raise ValueError("Trainer.evaluate: the data yielded no batches")
        return running.result()

    # ---- the loop ------------------------------------------------------------------------
    def fit(self, train_data: Iterable, val_data: Iterable | None = None, epochs: int = 1,
            resume: bool | str | os.PathLike = False) -> dict[str, list]:
        """Train until `epochs` epochs are done in total; returns `self.history`.

        resume: False; True to continue from `checkpoint_dir/last.npz` (starting fresh, with a
        note, when it does not exist yet); or the path of a checkpoint to continue from.
        Each epoch: `set_epoch` on the data (if it has it), one training pass inside
        `with self._epoch_bar(...)`, evaluation on `val_data`, `self._record`, the epoch
        count, and `checkpoint_dir/last.npz` (if set).
        """
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
        total = len(train_data) if hasattr(train_data, "__len__") else None
        ### BEGIN SOLUTION
        for epoch in range(self.epoch, epochs):
            started = time.perf_counter()
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            with self._epoch_bar(total, epoch, epochs) as bar:
                running = self._train_epoch(train_data, epoch, bar)
                val = self.evaluate(val_data) if val_data is not None else {}
                self._tick(bar, -1, running, val)
            self._record(epoch + 1, running.result(), val, time.perf_counter() - started)
            self.epoch = epoch + 1
            if self.checkpoint_dir is not None:
                self.save_checkpoint(self.checkpoint_dir / "last.npz")
        return self.history
        ### END SOLUTION

    def _record(self, epoch: int, train: dict[str, float], val: dict[str, float], seconds: float) -> None:
        h = self.history
        h["epoch"].append(epoch)
        for name in ["loss", *self.metrics]:
            h[f"train_{name}"].append(float(train[name]))
            h[f"val_{name}"].append(float(val.get(name, math.nan)))
        h["lr"].append(float(self._last_lr if self._last_lr is not None else self.optimizer.lr))
        h["seconds"].append(float(seconds))

    def _resume_from(self, resume: bool | str | os.PathLike) -> None:
        if resume is True:
            if self.checkpoint_dir is None:
                raise ValueError("Trainer.fit: resume=True continues from checkpoint_dir/last.npz, but "
                                 "checkpoint_dir is None; pass checkpoint_dir=... or resume=<path>")
            path = self.checkpoint_dir / "last.npz"
            if not path.exists():
                print(f"Trainer.fit: no checkpoint at {path} yet; starting from epoch {self.epoch}")
                return
        else:
            path = Path(resume)
        self.load_checkpoint(path)
        if self.progress:
            print(f"Trainer.fit: resumed from {path} after epoch {self.epoch}")

    # ---- checkpoints ---------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Everything needed for an exact resume, in one .npz file written atomically: model
        parameters, optimizer state, scheduler state, epoch, history, and the states of
        TinyTorch's global random generator and of generators kept by modules."""
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

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a `save_checkpoint` file. Everything is checked first (CheckpointError
        naming the problem: missing or unexpected parameters, shapes, optimizer, scheduler,
        metrics); nothing changes unless all of it fits."""
        arrays, meta = load_npz_checkpoint(path, kind="trainer")
        needed = ["epoch", "history", "optimizer", "scheduler", "rng", "module_rngs"]
        if [k for k in needed if k not in meta]:
            raise CheckpointError(f"{path}: trainer checkpoint without {[k for k in needed if k not in meta]}")
        model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        own = self.model.state_dict()
        problems = []
        missing = [k for k in own if k not in model_state]
        unexpected = [k for k in model_state if k not in own]
        if missing:
            problems.append(f"parameters missing from the checkpoint: {missing}")
        if unexpected:
            problems.append(f"parameters this {type(self.model).__name__} does not have: {unexpected}")
        problems += [f"{k}: shape {model_state[k].shape} in the checkpoint, {v.shape} in the model"
                     for k, v in own.items() if k in model_state and model_state[k].shape != v.shape]
        if problems:
            raise CheckpointError(f"{path} does not fit the model ({meta.get('model_class')} in the "
                                  f"checkpoint, {type(self.model).__name__} here): " + "; ".join(problems))
        opt_state = {**meta["optimizer"],
                     "buffers": {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}}
        try:
            self.optimizer.check_state_dict(opt_state)
            if (meta["scheduler"] is None) != (self.scheduler is None):
                raise ValueError(f"the checkpoint has {'no' if meta['scheduler'] is None else 'a'} scheduler, "
                                 f"this trainer has {'none' if self.scheduler is None else 'one'}")
            if self.scheduler is not None:
                self.scheduler.check_state_dict(meta["scheduler"])
        except ValueError as err:
            raise CheckpointError(f"{path} does not fit: {err}") from None
        if sorted(meta["history"]) != sorted(self.history):
            raise CheckpointError(f"{path} tracked {sorted(meta['history'])}, this trainer tracks "
                                  f"{sorted(self.history)} (use the same metrics to resume)")
        rngs = _named_rngs(self.model)
        if sorted(meta["module_rngs"]) != sorted(rngs):
            raise CheckpointError(f"{path} has random generators for modules {sorted(meta['module_rngs'])}, "
                                  f"this model has them for {sorted(rngs)}")
        if meta["rng"].get("bit_generator") != type(get_rng().bit_generator).__name__:
            raise CheckpointError(f"{path} saved a {meta['rng'].get('bit_generator')} generator, TinyTorch "
                                  f"uses {type(get_rng().bit_generator).__name__}")
        # everything fits: apply
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(opt_state)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        self.history = {k: list(v) for k, v in meta["history"].items()}
        self.epoch = int(meta["epoch"])
        get_rng().bit_generator.state = meta["rng"]
        for name, gen in rngs.items():
            gen.bit_generator.state = meta["module_rngs"][name]

    # ---- plots ---------------------------------------------------------------------------
    def plot_history(self, path: str | os.PathLike | None = None) -> Any:
        """Loss and metric curves (train and validation) per epoch, one panel each. Saves a PNG
        at `path` when given; shown inline in a notebook. Returns the matplotlib Figure."""
        from matplotlib.figure import Figure

        if not self.history["epoch"]:
            raise ValueError("Trainer.plot_history: the history is empty; call fit() first")
        names = ["loss", *self.metrics]
        fig = Figure(figsize=(4.5 * len(names), 3.4), layout="constrained")
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        epochs = self.history["epoch"]
        for ax, name in zip(axes, names):
            for split, style in (("train", "o-"), ("val", "s--")):
                values = self.history[f"{split}_{name}"]
                if not all(math.isnan(v) for v in values):
                    ax.plot(epochs, values, style, label=split, markersize=3)
            ax.set(title=name, xlabel="epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        if path is not None:
            write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=100))
        if in_notebook():
            from IPython.display import Image, display
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100)
            display(Image(data=buf.getvalue()))
        return fig

    def __repr__(self) -> str:
        return (f"Trainer(model={type(self.model).__name__}, optimizer={self.optimizer!r}, "
                f"metrics={list(self.metrics)}, epoch={self.epoch})")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not a plain IPython shell or script)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})

# %% [markdown]
# ### A small data source, and a first training run
#
# Module 08 builds a real `DataLoader`. For now: mini-batches of two arrays, shuffled by a
# generator seeded with `(seed, epoch)`, so each epoch's order depends on nothing else.
#
# The task: two interleaved spirals, 2 classes, 2-D points. A linear model cannot
# separate them; a small MLP can.

# %%
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
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
                 if self.shuffle else np.arange(len(self.x)))
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield self.x[idx], self.y[idx]


def spirals(n_per_class, noise=0.1, seed=0):
    """Two interleaved spirals: x (2n, 2) float32, y (2n,) int64."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1, n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * n_per_class, 2)) / 3
    y = np.concatenate([np.zeros(n_per_class), np.ones(n_per_class)]).astype(np.int64)
    return x.astype(np.float32), y


x_train, y_train = spirals(200, seed=0)
x_val, y_val = spirals(100, seed=1)
train_data = ArrayBatches(x_train, y_train, batch_size=32, seed=0)
val_data = ArrayBatches(x_val, y_val, batch_size=100, shuffle=False)

manual_seed(0)
model = Sequential(Dense(2, 64), ReLU(), Dense(64, 64), ReLU(), Dense(64, 2))
optimizer = Adam(model.parameters(), lr=0.01)
trainer = Trainer(model, optimizer, CrossEntropyLoss(), metrics=("accuracy",), progress=False)
history = trainer.fit(train_data, val_data, epochs=40)
for e in (0, 9, 19, 39):
    print(f"epoch {history['epoch'][e]:2d}  train loss {history['train_loss'][e]:.3f}  "
          f"train acc {history['train_accuracy'][e]:.3f}  val acc {history['val_accuracy'][e]:.3f}")

# %% nbgrader={"grade": true, "grade_id": "test-trainer", "locked": true, "points": 6, "schema_version": 3, "solution": false}
assert history["train_accuracy"][-1] >= 0.97, history["train_accuracy"][-1]
assert history["val_accuracy"][-1] >= 0.9, history["val_accuracy"][-1]
assert len(history["epoch"]) == 40 and history["epoch"][:3] == [1, 2, 3] and trainer.epoch == 40
assert history["lr"][-1] == 0.01 and all(s > 0 for s in history["seconds"])
model.train()
result = trainer.evaluate(val_data)
assert set(result) == {"loss", "accuracy"} and abs(result["accuracy"] - history["val_accuracy"][-1]) < 1e-12
assert model.training, "evaluate() restores training mode"
model.eval(); trainer.evaluate(val_data)
assert not model.training, "... and eval mode"
model.train()

line = Dense(1, 1)                                       # y = 3x, with a learning rate far too large
xs = np.linspace(-1, 1, 64, dtype=np.float32).reshape(-1, 1)
runaway = Trainer(line, SGD(line.parameters(), lr=50.0), MSELoss(), metrics=(), progress=False)
try:
    with np.errstate(over="ignore", invalid="ignore"):   # the overflow is the point here
        runaway.fit([(xs[i:i + 8], 3 * xs[i:i + 8]) for i in range(0, 64, 8)], epochs=20)
    raise AssertionError("an exploding loss must stop training")
except TrainingDivergedError as err:
    assert err.batch >= 1, err
    assert not math.isfinite(err.value) and runaway.epoch == err.epoch - 1
    print(err)
print("trainer: OK")

# %% [markdown]
# ## 5. Stop, resume, and get the same bits
#
# We train a model *with dropout* (random numbers at every step) on shuffled batches for
# 4 epochs straight. Then we train the same setup for 2 epochs, saving a checkpoint after
# each, throw every object away, build new ones (with a *different* seed, to be sure
# nothing leaks from the first run), resume to 4 epochs, and compare bit for bit.
#
# What has to be in the checkpoint for that to work:
#
# | state | why |
# |---|---|
# | the parameters | obviously |
# | Adam's moments and step counts | the next updates depend on them |
# | the scheduler's step count | the next learning rates depend on it |
# | the epoch | which epoch's shuffle comes next (`set_epoch`) |
# | the global random generator's state | the next dropout masks |
# | the history | the curves continue |

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
print("exact resume: OK")

# %% [markdown]
# ## 6. Looking at the curves
#
# Loss and accuracy per epoch, training and validation: the gap between the curves is the
# generalisation gap; a validation loss rising while the training loss falls is overfitting.

# %%
fig = trainer.plot_history(tmp_dir / "history.png")
print("saved", (tmp_dir / "history.png").stat().st_size, "bytes")

import shutil
for folder in (tmp_dir, ckpt_dir):          # tidy up the temporary files of this notebook
    shutil.rmtree(folder)

# %% [markdown]
# ## Systems thinking
#
# 1. **Checkpoint size.** How does `last.npz` above split between parameters and Adam's
#    state? For TinyGPT with 10M float32 parameters, how many MiB is a checkpoint, and how
#    long does writing it take at 200 MB/s?
# 2. **What fsync costs.** Time `save_npz_checkpoint` with and without `os.fsync`. What can
#    happen to the file after a power cut if you skip it?
# 3. **Resume granularity.** This trainer resumes at epoch boundaries. What extra state
#    would a mid-epoch resume need?
# 4. **Overhead of the loop.** For a model whose step takes 200 µs, measure what the loop
#    adds (the `float(loss)`, the metrics, the progress bar), with and without `progress`.
# 5. **Determinism.** Which operations would break bit-identical resume on a multi-threaded
#    BLAS or a GPU, where the order of a sum can change from run to run?
