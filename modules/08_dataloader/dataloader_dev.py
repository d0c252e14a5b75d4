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
# # Module 08: DataLoader
#
# **Where you are.** Everything so far trained on arrays already in memory. Real data sits
# in files, in someone else's format, and a training loop needs it as a stream of
# *batches*: shuffled differently every epoch, augmented, normalised, converted to tensors.
# This module builds that pipeline and uses it on CIFAR-10 (60,000 colour images of 32 x 32
# pixels in ten classes), the data of the first milestone (`milestones/cifar10.py --model mlp`)
# and of module 09's CNN.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `Dataset`, `TensorDataset`, `Subset` | indexable collections of samples `(x, y, ...)`, with a vectorised `get_batch` |
# | `DataLoader` | batches, seeded shuffling that is a pure function of `(seed, epoch)`, `set_epoch`, `drop_last`, transforms |
# | `ToFloat`, `Normalize`, `channel_stats`, `RandomCrop`, `RandomHorizontalFlip`, `Compose` | batch transforms on `(N, C, H, W)` arrays, no loop over images |
# | `data_dir`, `file_hash`, `hash_mismatch`, `download`, `is_safe_member`, `extract_tar` | where data lives, verified (and cached) downloads, safe extraction |
# | `read_cifar_file`, `CIFAR10`, `train_val_split` | the CIFAR-10 binary format, parsed with one numpy call per file |
# | `tiny_shakespeare` | the character-level text of module 16 |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/dataloader.py`.
#
# **The one idea of this module: work on batches, never on samples.** A CIFAR MLP step
# costs tens of milliseconds for 128 images; 20 µs of Python per image in the loader would
# add 2.5 ms. So every piece works on whole batches with numpy: a dataset hands out 128
# samples with one fancy index, a random crop cuts 128 different windows with one index, a
# flip flips a masked subset in one assignment. You will measure that the loader is a
# rounding error next to the model.
#
# **Points: 23** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-07 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.dataloader

# %%
#| export
"""TinyTorch module 08: datasets, DataLoader, batch transforms, downloads, CIFAR-10, Tiny Shakespeare."""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinytorch.core.tensor import Tensor, get_rng
from tinytorch.core.training import write_atomically

# %% [markdown]
# ## 1. Datasets: samples, and batches of samples
#
# A **dataset** has a length and an index: `ds[i]` returns sample `i` as a tuple of arrays,
# typically `(image, label)` (PyTorch's "map-style" dataset). A loader built on that alone
# calls Python once per sample and `np.stack`s the results. Most data sets here are arrays
# in memory, so we add a fast path: `ds.get_batch(indices)`, `indices` an int64 array of
# shape `(B,)`, returns the whole batch as a tuple of `(B, ...)` arrays, one fancy index
# per field (a single C gather). `fetch_batch(ds, indices)` uses `get_batch` when the
# dataset has one and falls back to stacking `ds[i]` field by field (`zip(*samples,
# strict=True)` turns samples into fields and refuses samples with different numbers of
# fields; `np.stack` refuses fields of different shapes). Index checks are provided around
# your code: you write what a dataset *does*.
#
# | class | holds | `get_batch(idx)` |
# |---|---|---|
# | `TensorDataset(x, y)` | arrays (or Tensors) with the same first dimension | `(x[idx], y[idx])` |
# | `Subset(ds, indices)` | a view of `ds` restricted to some indices (no copy) | `fetch_batch(ds, indices[idx])` |

# %% nbgrader={"grade": false, "grade_id": "datasets", "locked": false, "schema_version": 3, "solution": true}
#| export
class Dataset:
    """Defines `__len__` and `ds[i]` -> tuple of arrays `(x, y, ...)`; may add `get_batch(indices)`."""


def fetch_batch(dataset: Any, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """(B,) indices -> one (B, ...) array per field: `dataset.get_batch`, else stack the `dataset[i]`."""
    ### BEGIN SOLUTION
    indices = np.asarray(indices, dtype=np.int64)
    if hasattr(dataset, "get_batch"):
        batch = dataset.get_batch(indices)
        return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    samples = [dataset[int(i)] for i in indices]
    samples = [tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in samples]
    return tuple(np.stack(field) for field in zip(*samples, strict=True))   # ValueError if ragged
    ### END SOLUTION


def _as_ndarray(a: Any) -> np.ndarray:
    return a.data if isinstance(a, Tensor) else np.asarray(a)


class TensorDataset(Dataset):
    """TensorDataset(x, y, ...): arrays or Tensors (N, ...), kept without copying; ds[i] -> (x[i], y[i])."""
    def __init__(self, *arrays: Any):
        # arrays: the inputs as a tuple of ndarrays (a Tensor gives its .data; nothing is copied)
        ### BEGIN SOLUTION
        arrays = tuple(_as_ndarray(a) for a in arrays)
        ### END SOLUTION
        if not arrays or any(a.ndim == 0 for a in arrays) or len({len(a) for a in arrays}) > 1:
            raise ValueError(f"TensorDataset: needs arrays with one first dimension, got shapes {[a.shape for a in arrays]}")
        ### BEGIN SOLUTION
        self.arrays = arrays
        ### END SOLUTION

    def __len__(self) -> int:
        ### BEGIN SOLUTION
        return self.arrays[0].shape[0]
        ### END SOLUTION

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} is out of range for {len(self)} samples")
        ### BEGIN SOLUTION
        return tuple(a[index] for a in self.arrays)
        ### END SOLUTION

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        ### BEGIN SOLUTION
        return tuple(a[indices] for a in self.arrays)
        ### END SOLUTION


class Subset(Dataset):
    """The samples of `dataset` at `indices` (an int array), without copying any data."""
    def __init__(self, dataset: Any, indices: Any):
        # indices: the given indices as a flat (K,) int64 array
        ### BEGIN SOLUTION
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        ### END SOLUTION
        bad = indices[(indices < 0) | (indices >= len(dataset))]
        if bad.size:
            raise IndexError(f"Subset: indices {bad[:5].tolist()} are out of range for a dataset of {len(dataset)} samples")
        ### BEGIN SOLUTION
        self.dataset, self.indices = dataset, indices
        ### END SOLUTION

    def __len__(self) -> int:
        ### BEGIN SOLUTION
        return int(self.indices.size)
        ### END SOLUTION

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        ### BEGIN SOLUTION
        return self.dataset[int(self.indices[index])]
        ### END SOLUTION

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        ### BEGIN SOLUTION
        return fetch_batch(self.dataset, self.indices[indices])
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-datasets", "locked": true, "points": 3, "schema_version": 3, "solution": false}
xs = np.arange(24, dtype=np.float32).reshape(6, 4)
ys = np.array([0, 1, 2, 0, 1, 2])
ds = TensorDataset(xs, Tensor(ys))
assert len(ds) == 6 and np.array_equal(ds[2][0], xs[2]) and ds[2][1] == 2
bx, by = ds.get_batch(np.array([5, 0, 5]))
assert np.array_equal(bx, xs[[5, 0, 5]]) and by.tolist() == [2, 0, 2]
try:
    TensorDataset(xs, ys[:5])
    raise AssertionError("6 images and 5 labels must be refused")
except ValueError:
    pass
sub = Subset(ds, [4, 1])
assert len(sub) == 2 and sub.get_batch(np.array([1, 0]))[1].tolist() == [1, 1]


class Squares(Dataset):              # no get_batch: fetch_batch stacks samples
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.array([i, i * i]), i % 2


sx, sy = fetch_batch(Squares(), np.array([3, 4]))
assert sx.tolist() == [[3, 9], [4, 16]] and sy.tolist() == [1, 0]
print(ds, sub, sep="\n")
print("datasets: OK")

# %% [markdown]
# ## 2. The DataLoader
#
# One **epoch** visits every sample once, in batches of `batch_size`: `len(loader)` is
# $\lceil N / B \rceil$, or $\lfloor N / B \rfloor$ with `drop_last=True` (which drops the
# smaller last batch). With `shuffle=True` each epoch uses a new random permutation.
#
# **The order is a pure function of (seed, epoch).** When a run resumes at epoch 7 from a
# checkpoint (module 07), it must see *exactly* the batches an uninterrupted run would
# have. A loader that keeps drawing from one generator cannot do that (its state is not in
# the checkpoint), so every epoch gets fresh generators from the pair `(seed, epoch)`:
# `np.random.SeedSequence([seed, epoch]).spawn(2)`, one stream for the order, one for the
# augmentation (independent of whether shuffling is on). `set_epoch(e)` (the Trainer calls
# it) picks the epoch of the next iteration, and every iteration moves the counter on, so a
# plain `for epoch ...: for batch in loader:` also reshuffles. With `seed=None` the seed is
# drawn once from TinyTorch's global generator (`manual_seed` makes it reproducible).
#
# **Conversion.** Batches are tuples of `Tensor`s: floating arrays float32, integer arrays
# int64 (labels, token ids: what `CrossEntropyLoss` expects). A `transform` (section 3)
# is applied to the *first* field (the inputs), as numpy, with the epoch's augmentation
# generator, before conversion. `__iter__` starts the epoch when it is *called*, so it is
# a plain method that returns a generator.

# %% nbgrader={"grade": false, "grade_id": "dataloader", "locked": false, "schema_version": 3, "solution": true}
#| export
def to_tensor(a: np.ndarray) -> Tensor:
    """An array as a Tensor for the model: floating -> float32, integer -> int64, bool kept."""
    a = np.asarray(a)
    ### BEGIN SOLUTION
    if a.dtype.kind == "f":
        return Tensor(a.astype(np.float32, copy=False))
    if a.dtype.kind in "iu":
        return Tensor(a.astype(np.int64, copy=False))
    if a.dtype.kind == "b":
        return Tensor(a)
    ### END SOLUTION
    raise TypeError(f"DataLoader: cannot turn an array of dtype {a.dtype} into a tensor (not numeric)")


def _check_count(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an integer >= {minimum}, got {value!r}")


class DataLoader:
    """Batches of `dataset` as tuples of Tensors; order and `transform(x, rng)` (on the first
    field) are seeded by (seed, epoch); seed None: drawn from TinyTorch's global generator."""
    def __init__(self, dataset: Any, batch_size: int = 32, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None):
        if not hasattr(dataset, "__len__") or not (transform is None or callable(transform)):
            raise TypeError(f"DataLoader: needs a dataset and a transform(x, rng) or None, got {dataset!r:.60}, {transform!r}")
        _check_count(batch_size, "batch_size", 1)
        if seed is not None:
            _check_count(seed, "seed", 0)
        ### BEGIN SOLUTION
        self.dataset, self.batch_size, self.transform = dataset, int(batch_size), transform
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = int(get_rng().integers(2**63)) if seed is None else int(seed)
        self.epoch = 0                          # the epoch the next iteration uses
        ### END SOLUTION

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (its order and augmentation depend on it)."""
        _check_count(epoch, "epoch", 0)
        ### BEGIN SOLUTION
        self.epoch = int(epoch)
        ### END SOLUTION

    def __len__(self) -> int:
        ### BEGIN SOLUTION
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        ### END SOLUTION

    def generators(self, epoch: int) -> tuple[np.random.Generator, np.random.Generator]:
        """(order generator, transform generator) of `epoch`: a pure function of (seed, epoch)."""
        ### BEGIN SOLUTION
        order_seq, transform_seq = np.random.SeedSequence([self.seed, int(epoch)]).spawn(2)
        return np.random.default_rng(order_seq), np.random.default_rng(transform_seq)
        ### END SOLUTION

    def order(self, epoch: int) -> np.ndarray:
        """The (N,) int64 sample order of `epoch`: a permutation when shuffling, else 0..N-1."""
        ### BEGIN SOLUTION
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return self.generators(epoch)[0].permutation(n).astype(np.int64, copy=False)
        ### END SOLUTION

    def _transformed(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`self.transform(x, rng)`, checked to keep the batch size."""
        out = self.transform(x, rng)
        if len(out) != len(x):
            raise ValueError(f"DataLoader: the transform returned {len(out)} samples for a batch of {len(x)}")
        return out

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        """Start epoch `self.epoch` (and move the counter on) when called; return a generator of batches."""
        ### BEGIN SOLUTION
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.order(epoch)
        rng = self.generators(epoch)[1]
        n_batches = len(self)

        def batches() -> Iterator[tuple[Tensor, ...]]:
            for b in range(n_batches):
                idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                fields = list(fetch_batch(self.dataset, idx))
                if self.transform is not None:
                    fields[0] = self._transformed(fields[0], rng)
                yield tuple(to_tensor(f) for f in fields)
        return batches()
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-dataloader", "locked": true, "points": 7, "schema_version": 3, "solution": false}
images = np.arange(10 * 3, dtype=np.float64).reshape(10, 3)
labels = np.arange(10)
loader = DataLoader(TensorDataset(images, labels), batch_size=4)
batches = list(loader)
assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
assert np.concatenate([b[1].data for b in batches]).tolist() == list(range(10)), "no shuffle: in order"
assert len(DataLoader(TensorDataset(images, labels), batch_size=4, drop_last=True)) == 2

shuffled = DataLoader(TensorDataset(images, labels), batch_size=3, shuffle=True, seed=7)
epoch0 = np.concatenate([b[1].data for b in shuffled])
epoch1 = np.concatenate([b[1].data for b in shuffled])            # the counter moved on
assert sorted(epoch0.tolist()) == list(range(10)), "every sample exactly once"
assert not np.array_equal(epoch0, epoch1), "a new order each epoch"
shuffled.set_epoch(0)
assert np.array_equal(np.concatenate([b[1].data for b in shuffled]), epoch0), "same (seed, epoch), same order"
again = DataLoader(TensorDataset(images, labels), batch_size=3, shuffle=True, seed=7)
again.set_epoch(1)
assert np.array_equal(np.concatenate([b[1].data for b in again]), epoch1), "a fresh loader resumes epoch 1"
print(shuffled)
print("dataloader: OK")

# %% [markdown]
# ## 3. Batch transforms
#
# A transform maps a batch `x` `(N, C, H, W)` and a generator `rng` to the new batch.
#
# **`ToFloat`.** uint8 pixels, converted one batch at a time (all of CIFAR-10 as float32
# would be 614 MB instead of 154 MB): `x * float32(1/255)`. It refuses float input, which
# it would otherwise scale a second time.
#
# **`Normalize(mean, std)`.** Per channel: $x' = (x - \mu_c) / \sigma_c$, with the training
# set's channel statistics, so the first layer sees inputs of unit scale (what its He
# initialisation assumes). `channel_stats` sums $x$ and $x^2$ per channel in float64, chunk
# by chunk (never a float copy of the whole set): $\sigma^2 = E[x^2] - E[x]^2$.
#
# **`RandomHorizontalFlip(p)`.** A horse facing left is still a horse: draw a mask `(N,)`
# and assign `out[mask] = x[mask, ..., ::-1]`.
#
# **`RandomCrop(size, padding)`.** Pad the batch once (zero padding: a zero array with the
# batch assigned into its middle, about 3x faster than `np.pad`), then cut a window at a
# random offset per image, $(o_y, o_x) \in [0, H + 2p - s] \times [0, W + 2p - s]$. No loop:
# `sliding_window_view(padded, (s, s), axis=(2, 3))` is a *view* `(N, C, H', W', s, s)` of
# every window, and one fancy index, `windows[np.arange(N), :, oy, ox]`, picks window
# $(o_y^{(n)}, o_x^{(n)})$ of image $n$ as `(N, C, s, s)`.
#
# **Order matters for speed.** Crop and flip only move bytes: run them on uint8, before
# `ToFloat`, and they move 4x less memory. `Compose` chains transforms in order, passing
# the same generator along.

# %% nbgrader={"grade": false, "grade_id": "transforms", "locked": false, "schema_version": 3, "solution": true}
#| export
class Transform:
    """Base class of batch transforms `t(x, rng) -> x'` on numpy batches (N, C, ...); repr: its settings."""
    def __repr__(self) -> str:
        args = (f"{k}={(v.tolist() if isinstance(v, np.ndarray) else v)!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({', '.join(args)})"


class ToFloat(Transform):
    """Integer pixels (uint8, 0..255) -> float32 in [0, 1]: x * scale, scale = 1/255."""
    def __init__(self, scale: float = 1 / 255):
        ### BEGIN SOLUTION
        self.scale = float(scale)
        ### END SOLUTION

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "iu":
            raise TypeError(f"ToFloat: expects integer pixels, got dtype {x.dtype} (scaling twice is a bug)")
        ### BEGIN SOLUTION
        return np.multiply(x, np.float32(self.scale), dtype=np.float32)
        ### END SOLUTION


class Normalize(Transform):
    """Per channel (axis 1): (x - mean[c]) / std[c]. mean, std: (C,). x: (N, C, ...) floating."""
    def __init__(self, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray):
        ### BEGIN SOLUTION
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)            # (C,)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        ### END SOLUTION
        if self.mean.shape != self.std.shape or not np.all(self.std > 0):
            raise ValueError(f"Normalize: need a positive std per mean, got {self.mean.tolist()}, {self.std.tolist()}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[1] != self.mean.size:
            raise ValueError(f"Normalize: expects a batch (N, {self.mean.size}, ...), got shape {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"Normalize: expects floating data, got dtype {x.dtype}; apply ToFloat first")
        ### BEGIN SOLUTION
        shape = (1, -1) + (1,) * (x.ndim - 2)                      # (1, C, 1, 1) for images
        mean = self.mean.reshape(shape).astype(x.dtype)
        inv_std = (1 / self.std).reshape(shape).astype(x.dtype)
        out = x - mean                                              # a new array: x is not modified
        out *= inv_std
        return out
        ### END SOLUTION


def channel_stats(data: Any, scale: float | None = None, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std), float32 (C,), of images (N, C, ...) or a dataset's first field,
    times `scale` (None: 1/255 for integer data, like ToFloat, else 1), `chunk` samples at a time."""
    # get(idx): the first field of samples idx, (B, C, ...), from an array / Tensor or a dataset
    ### BEGIN SOLUTION
    if isinstance(data, (np.ndarray, Tensor)):
        array = _as_ndarray(data)
        get = lambda idx: array[idx]
    else:
        get = lambda idx: fetch_batch(data, idx)[0]
    ### END SOLUTION
    n = len(data)
    first = np.asarray(get(np.arange(1))) if n else np.zeros(0)      # one sample, to check its shape
    if first.ndim < 2:
        raise ValueError(f"channel_stats: expects samples of shape (C, ...), got {n} samples of shape {first.shape[1:]}")
    # the default scale, then float64 sums of x and x^2 per channel over chunks of `chunk` samples
    ### BEGIN SOLUTION
    scale = (1 / 255 if first.dtype.kind in "iu" else 1.0) if scale is None else scale
    axes = (0,) + tuple(range(2, first.ndim))                  # every axis but the channel
    total = total_sq = 0.0
    count = 0
    for start in range(0, n, chunk):
        xf = np.asarray(get(np.arange(start, min(start + chunk, n)))).astype(np.float64)
        total = total + xf.sum(axis=axes)
        total_sq = total_sq + np.square(xf).sum(axis=axes)
        count += xf.size // xf.shape[1]
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0)
    return (mean * scale).astype(np.float32), (np.sqrt(var) * scale).astype(np.float32)
    ### END SOLUTION


class RandomHorizontalFlip(Transform):
    """Reverse the last (width) axis of each sample with probability p. (N, C, H, W) -> same."""
    def __init__(self, p: float = 0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p!r}")
        ### BEGIN SOLUTION
        self.p = float(p)
        ### END SOLUTION

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x, rng = np.asarray(x), rng or get_rng()
        ### BEGIN SOLUTION
        flip = rng.random(len(x)) < self.p                          # (N,)
        out = x.copy()
        out[flip] = x[flip, ..., ::-1]
        return out
        ### END SOLUTION


class RandomCrop(Transform):
    """Pad by `padding` (an np.pad `padding_mode`), cut a random (h, w) window per image: (N, C, H, W) -> (N, C, h, w)."""
    def __init__(self, size: int | tuple[int, int], padding: int = 0, padding_mode: str = "constant"):
        h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if h < 1 or w < 1 or padding < 0:
            raise ValueError(f"RandomCrop: size must be positive and padding non-negative, got {size!r}, {padding!r}")
        ### BEGIN SOLUTION
        self.size, self.padding, self.padding_mode = (int(h), int(w)), int(padding), padding_mode
        ### END SOLUTION

    def _checked(self, x: Any) -> np.ndarray:
        """x as an (N, C, H, W) array that the crop fits after padding, else ValueError."""
        x, (h, w), p = np.asarray(x), self.size, self.padding
        if x.ndim != 4 or h > x.shape[2] + 2 * p or w > x.shape[3] + 2 * p:
            raise ValueError(f"RandomCrop: a {h}x{w} crop padded by {p} needs images (N, C, H, W), got {x.shape}")
        return x

    def crop_at(self, x: np.ndarray, top: np.ndarray, left: np.ndarray) -> np.ndarray:
        """Window of image n at (top[n], left[n]) of the padded batch: (N, C, h, w)."""
        x, (h, w), p = self._checked(x), self.size, self.padding
        top, left = np.asarray(top), np.asarray(left)
        if top.shape != (len(x),) or left.shape != (len(x),) or min(top.min(initial=0), left.min(initial=0)) < 0:
            raise ValueError(f"RandomCrop: need {len(x)} offsets top, left >= 0, got {top!r:.80}, {left!r:.80}")
        ### BEGIN SOLUTION
        if p and self.padding_mode == "constant":          # zeros: 3x faster than np.pad
            padded = np.zeros(x.shape[:2] + (x.shape[2] + 2 * p, x.shape[3] + 2 * p), dtype=x.dtype)
            padded[:, :, p:p + x.shape[2], p:p + x.shape[3]] = x
            x = padded
        elif p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode=self.padding_mode)
        windows = sliding_window_view(x, (h, w), axis=(2, 3))        # (N, C, H-h+1, W-w+1, h, w), a view
        return np.ascontiguousarray(windows[np.arange(len(x)), :, top, left])
        ### END SOLUTION

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x, rng = self._checked(x), rng or get_rng()
        ### BEGIN SOLUTION
        (h, w), p = self.size, self.padding
        top = rng.integers(0, x.shape[2] + 2 * p - h + 1, size=len(x))
        left = rng.integers(0, x.shape[3] + 2 * p - w + 1, size=len(x))
        return self.crop_at(x, top, left)
        ### END SOLUTION


class Compose(Transform):
    """Apply transforms in order, each with the same generator: Compose([a, b])(x, rng) = b(a(x, rng), rng)."""
    def __init__(self, transforms: Sequence[Callable]):
        ### BEGIN SOLUTION
        self.transforms = list(transforms)
        ### END SOLUTION

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng or get_rng()
        ### BEGIN SOLUTION
        for t in self.transforms:
            x = t(x, rng)
        return x
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-transforms", "locked": true, "points": 6, "schema_version": 3, "solution": false}
rng = np.random.default_rng(0)
pix = rng.integers(0, 256, size=(64, 3, 6, 5), dtype=np.uint8)
xf = ToFloat()(pix)
assert xf.dtype == np.float32 and np.allclose(xf * 255, pix)
mean, std = channel_stats(pix)
assert mean.shape == (3,) and np.allclose(mean, xf.mean(axis=(0, 2, 3)), atol=1e-6)
assert np.allclose(std, xf.std(axis=(0, 2, 3)), atol=1e-6)
z = Normalize(mean, std)(xf)
assert z.dtype == np.float32 and np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
assert np.allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)

flipped = RandomHorizontalFlip(0.5)(pix, np.random.default_rng(1))
same = (flipped == pix).all(axis=(1, 2, 3))
mirrored = (flipped == pix[..., ::-1]).all(axis=(1, 2, 3))
assert (same | mirrored).all() and 10 < mirrored.sum() < 54, "each image is either kept or mirrored"

crop = RandomCrop(4, padding=2)
top, left = rng.integers(0, 5, 64), rng.integers(0, 6, 64)
fast = crop.crop_at(pix, top, left)
padded = np.pad(pix, ((0, 0), (0, 0), (2, 2), (2, 2)))
slow = np.stack([padded[n, :, top[n]:top[n] + 4, left[n]:left[n] + 4] for n in range(64)])
assert fast.shape == (64, 3, 4, 4) and np.array_equal(fast, slow), "matches a per-image loop"
pipeline = Compose([RandomCrop(6, padding=1), RandomHorizontalFlip(), ToFloat(), Normalize(mean, std)])
out_a = pipeline(pix, np.random.default_rng(5))
assert out_a.shape == (64, 3, 6, 6) and out_a.dtype == np.float32
assert np.array_equal(out_a, pipeline(pix, np.random.default_rng(5))), "same rng, same augmentation"
try:
    ToFloat()(xf)
    raise AssertionError("ToFloat must refuse float input")
except TypeError:
    pass
print(pipeline)
print("transforms: OK")

# %% [markdown]
# ## 4. Getting data onto the machine, and never trusting it
#
# **Where**: one directory holds all data sets, `$TINYTORCH_DATA` if set, else a per-user
# cache (`$XDG_CACHE_HOME/tinytorch` or `~/.cache/tinytorch`), never the repository.
#
# **Never train on a file you have not verified.** A download can stop halfway, a proxy can
# hand you its error page, a mirror can serve another version of the data, someone can
# tamper with it. Training on such a file does not crash: it quietly learns from garbage.
# So every file is checked against the hash its publisher printed (MD5 for CIFAR-10,
# SHA-256 for Tiny Shakespeare), and you write that check:
#
# - `file_hash(path, algorithm)` streams the file through `hashlib.new(algorithm)`
#   `chunk_size` bytes at a time (`digest.update(chunk)` until `f.read` returns `b""`), so a
#   multi-gigabyte file never has to fit in memory; `.hexdigest()` is the answer.
# - `hash_mismatch(path, md5, sha256)` compares the file with each *given* hash (`None`:
#   not checked; published hashes may be upper-case) and describes the first mismatch
#   (`"md5 <actual>, expected <expected>"`), or returns `None` when the file verifies.
# - `download(url, dest, md5, sha256)`: a file already at `dest` that verifies is the cache
#   (return it, fetch nothing); otherwise fetch into a temporary file (module 07's
#   `write_atomically` renames it into place only if the writing function returns), flush
#   it, and check what was written. The `ChecksumError` is provided: your part is the
#   decision.
# - `is_safe_member(member)`: an archive names the paths it writes. A member called
#   `../../.bashrc` or `/etc/passwd`, or a symbolic link, would write outside the data
#   folder ("tar slip"). Safe means a regular file or a directory whose path, with `\`
#   read as `/`, is relative (not absolute, no drive like `C:` in its first part) and has
#   no `..` part (`PurePosixPath(name).parts`). `extract_tar` checks every member before
#   it writes anything.
#
# **Offline machines**: when the fetch fails, the provided error says which file to put
# where, or which variable to set. The same code fetches module 16's Tiny Shakespeare.

# %% nbgrader={"grade": false, "grade_id": "downloads", "locked": false, "schema_version": 3, "solution": true}
#| export
DATA_ENV_VAR = "TINYTORCH_DATA"


class DatasetError(RuntimeError): """A data file is missing, damaged, or could not be fetched."""


class DownloadError(DatasetError): """A download failed (offline machine, server error)."""


class ChecksumError(DatasetError): """A file's hash differs from the published one."""


class CorruptFileError(DatasetError): """A file has the wrong size or contents that cannot be valid."""


def data_dir() -> Path:
    """Where data sets live: $TINYTORCH_DATA, else $XDG_CACHE_HOME/tinytorch, else ~/.cache/tinytorch."""
    ### BEGIN SOLUTION
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tinytorch"
    ### END SOLUTION


def file_hash(path: str | os.PathLike, algorithm: str = "md5", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file ("md5", "sha256", ...), streamed through hashlib `chunk_size` bytes at a time."""
    ### BEGIN SOLUTION
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
    ### END SOLUTION


def hash_mismatch(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> str | None:
    """None when the file has every given hash (None: not checked), else "<algorithm> <actual>, expected <expected>"."""
    ### BEGIN SOLUTION
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None and (actual := file_hash(path, algorithm)) != expected.lower():
            return f"{algorithm} {actual}, expected {expected.lower()}"
    return None
    ### END SOLUTION


def _fetch(url: str, out: Any, timeout: float = 60.0) -> None:
    """Stream `url` into the binary file `out`, with a progress bar (OSError when offline)."""
    from tqdm.auto import tqdm
    with urllib.request.urlopen(url, timeout=timeout) as response, tqdm(
            total=int(response.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
            desc=f"downloading {Path(url).name}", leave=False) as bar:
        while block := response.read(1 << 20):
            bar.update(out.write(block))


def download(url: str, dest: str | os.PathLike, md5: str | None = None, sha256: str | None = None,
             hint: str = "") -> Path:
    """Fetch `url` to `dest` (unless `dest` verifies) atomically, verified by `md5`/`sha256`
    (ChecksumError); DownloadError says where to put the file by hand (then `hint`)."""
    dest = Path(dest)
    # the cache: a file at dest that verifies is returned as it is
    ### BEGIN SOLUTION
    if dest.is_file() and hash_mismatch(dest, md5, sha256) is None:
        return dest
    ### END SOLUTION
    manual = (f"If this machine is offline, download {url} elsewhere and put it at {dest}{hint}, "
              f"or set {DATA_ENV_VAR} to a directory that already holds the data.")

    def fetch_verified(out: Any) -> None:
        # fetch url into the open temporary file `out` (_fetch), flush it; wrong: the mismatch of out.name
        ### BEGIN SOLUTION
        _fetch(url, out)
        out.flush()
        wrong = hash_mismatch(out.name, md5, sha256)
        ### END SOLUTION
        if wrong:
            raise ChecksumError(f"the file downloaded from {url} has {wrong}. Try again later. {manual}")
    try:
        return write_atomically(dest, fetch_verified)
    except (OSError, ValueError) as err:                  # offline, server error, unwritable folder
        raise DownloadError(f"could not download {url}: {err}. {manual}") from err


_download = download          # for functions whose `download` argument is a flag


def is_safe_member(member: tarfile.TarInfo) -> bool:
    """Whether extracting this archive member stays inside the destination: a regular file or
    a directory with a relative path (no drive) and no '..' part ('\\' read as '/')."""
    ### BEGIN SOLUTION
    path = PurePosixPath(member.name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return False
    return member.isfile() or member.isdir()
    ### END SOLUTION


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Extract a tar archive into `dest` (returns the member names), refusing it before writing
    anything if a member is not `is_safe_member` (DatasetError)."""
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        # unsafe: the names of the members that are not safe, in archive order
        ### BEGIN SOLUTION
        unsafe = [m.name for m in members if not is_safe_member(m)]
        ### END SOLUTION
        if unsafe:
            raise DatasetError(f"refusing to extract {archive}: {unsafe[0]!r} is a link, device, absolute or '..' path")
        Path(dest).mkdir(parents=True, exist_ok=True)
        tar.extractall(dest, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return [m.name for m in members]


TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def tiny_shakespeare(root: str | os.PathLike | None = None, download: bool = True, verify: bool = True) -> str:
    """The Tiny Shakespeare text (1.1 M characters) of `<root>/tinyshakespeare/input.txt`, fetched
    when missing (and `download`); with `verify`, its SHA-256 must match (else ChecksumError)."""
    path = Path(root if root is not None else data_dir()).expanduser() / "tinyshakespeare" / "input.txt"
    sha = TINY_SHAKESPEARE_SHA256 if verify else None
    if not path.is_file():
        if not download:
            raise FileNotFoundError(f"{path} is missing: use download=True, put {TINY_SHAKESPEARE_URL} "
                                    f"there, or set {DATA_ENV_VAR} to a directory holding tinyshakespeare/input.txt")
        _download(TINY_SHAKESPEARE_URL, path, sha256=sha)           # `download` is the flag here
    elif wrong := hash_mismatch(path, None, sha):
        raise ChecksumError(f"{path} has {wrong}: delete it to download it again, or pass verify=False")
    return path.read_text(encoding="utf-8")

# %% nbgrader={"grade": true, "grade_id": "test-downloads", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    src, dest = Path(tmp) / "published.bin", Path(tmp) / "cache" / "data.bin"
    body = bytes(range(256)) * 41                        # 10,496 bytes: 3 chunks of 4,096, the last one short
    src.write_bytes(body)
    md5, sha = hashlib.md5(body).hexdigest(), hashlib.sha256(body).hexdigest()
    assert file_hash(src) == md5 and file_hash(src, "sha256", chunk_size=4096) == sha
    assert hash_mismatch(src, md5.upper(), sha) is None and hash_mismatch(src) is None
    assert hash_mismatch(src, md5="0" * 32) is not None and hash_mismatch(src, sha256="0" * 64) is not None
    assert download(src.as_uri(), dest, sha256=sha) == dest and dest.read_bytes() == body
    src.write_bytes(b"the server changed")               # a fetch now would fail to verify
    assert download(src.as_uri(), dest, sha256=sha).read_bytes() == body, "a file that verifies is the cache"
    try:
        download(src.as_uri(), Path(tmp) / "new.bin", sha256=sha)
        raise AssertionError("a download that does not verify must be refused")
    except ChecksumError:
        assert not (Path(tmp) / "new.bin").exists(), "and leave nothing behind"


def member(name, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


assert is_safe_member(member("cifar/data_batch_1.bin")) and is_safe_member(member("cifar", tarfile.DIRTYPE))
for bad in ["../evil", "cifar/../../evil", "/etc/passwd", "..\\evil"]:
    assert not is_safe_member(member(bad)), bad
assert not is_safe_member(member("cifar/link", tarfile.SYMTYPE))
print("downloads: OK")

# %% [markdown]
# ## 5. CIFAR-10, byte by byte
#
# The "binary version" of CIFAR-10 is six files in `cifar-10-batches-bin/`:
# `data_batch_1.bin` ... `data_batch_5.bin` (50,000 training images) and `test_batch.bin`
# (10,000 test images). Each is 10,000 **records** of 3,073 bytes: byte 0 the label (0..9),
# then 1,024 bytes each of the red, green and blue channel, 32 rows of 32 pixels, row-major.
# That is a C-ordered uint8 array `(records, 3073)`, and a record's pixels are exactly
# `(3, 32, 32)` in `(C, H, W)` order, our models' layout. So you parse a whole file with
# one reshape and two slices, no loop (about 8 ms a file; a loop over records with
# `np.frombuffer` takes 30 ms, one through Python lists half a second).
#
# **Validate before trusting**: the MD5 (provided), the size (yours: a whole number of
# records, as many as expected, with `divmod`), and every label in 0..9 (provided); the
# provided errors name the file. `CIFAR10` is a `TensorDataset` of `(images, labels)`: you
# read each file of the split and concatenate; when files are missing, its `_download`
# (yours) fetches the archive with your verified `download`, unpacks it with `extract_tar`
# and deletes it. `train_val_split` returns two `Subset`s over a seeded permutation: the validation
# images are carved out of the training set without copying anything.

# %% nbgrader={"grade": false, "grade_id": "cifar10", "locked": false, "schema_version": 3, "solution": true}
#| export
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25", "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421", "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d", "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d"}
CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32


def read_cifar_file(path: str | os.PathLike, md5: str | None = None, records: int | None = 10000,
                    num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary file -> (images (R, 3, 32, 32) uint8, labels (R,) int64), after checking
    the MD5 (if given), the size (`records` records, if given) and labels < num_classes."""
    path = Path(path)
    # raw: every byte of the file, a flat uint8 array
    ### BEGIN SOLUTION
    raw = np.fromfile(path, dtype=np.uint8)
    ### END SOLUTION
    if md5 is not None and (actual := hashlib.md5(raw).hexdigest()) != md5.lower():
        raise ChecksumError(f"{path}: MD5 {actual}, expected {md5.lower()}: damaged or not CIFAR-10's binary "
                            f"version. Delete it and use CIFAR10(download=True), or take it from {CIFAR10_URL}")
    # whole, extra: the whole records of CIFAR10_RECORD_BYTES in raw and the bytes left over;
    # complete: no bytes left over and, if `records` is given, exactly that many records
    ### BEGIN SOLUTION
    whole, extra = divmod(raw.size, CIFAR10_RECORD_BYTES)
    complete = extra == 0 and (records is None or whole == records)
    ### END SOLUTION
    if not complete:
        raise CorruptFileError(f"{path}: {raw.size} bytes = {whole} records of {CIFAR10_RECORD_BYTES} bytes + "
                               f"{extra}, expected {records} records: truncated or not a CIFAR-10 binary file")
    ### BEGIN SOLUTION
    raw = raw.reshape(-1, CIFAR10_RECORD_BYTES)
    labels = raw[:, 0].astype(np.int64)
    images = np.ascontiguousarray(raw[:, 1:]).reshape(-1, 3, 32, 32)
    ### END SOLUTION
    if (bad := np.flatnonzero(labels >= num_classes)).size:
        raise CorruptFileError(f"{path}: corrupt: record {bad[0]} has label {labels[bad[0]]} >= {num_classes}")
    return images, labels


class CIFAR10(TensorDataset):
    """CIFAR-10's 50,000 training or 10,000 test images from `<root>/cifar-10-batches-bin/`:
    `images` (N, 3, 32, 32) uint8, `labels` (N,) int64 0..9. verify: check MD5s (`checksums`
    {file: md5} for other files); records_per_file: records per file (None: any number)."""
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    train_files = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    test_files = ("test_batch.bin",)
    images = property(lambda self: self.arrays[0])
    labels = property(lambda self: self.arrays[1])

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True, download: bool = True,
                 verify: bool = True, checksums: dict[str, str] | None = None, records_per_file: int | None = 10000):
        self.root = Path(root).expanduser() if root is not None else data_dir()
        self.train, self.folder = bool(train), self.root / CIFAR10_FOLDER
        # names: the files of this split; sums: {file name: md5} (`checksums`, else the published ones)
        ### BEGIN SOLUTION
        names = self.train_files if self.train else self.test_files
        sums = CIFAR10_MD5 if checksums is None else checksums
        ### END SOLUTION
        if missing := [n for n in names if not (self.folder / n).is_file()]:
            if not download:
                raise FileNotFoundError(f"CIFAR10: {', '.join(missing)} missing from {self.folder}: use download=True, "
                                        f"extract {CIFAR10_URL} into {self.root}, or set {DATA_ENV_VAR}")
            self._download()
        if verify and (unknown := [n for n in names if n not in sums]):
            raise KeyError(f"CIFAR10: no checksum for {unknown[0]} (checksums has {sorted(sums)}); pass verify=False")
        ### BEGIN SOLUTION
        md5s = [sums[n] if verify else None for n in names]
        parts = [read_cifar_file(self.folder / name, md5, records_per_file, len(self.classes))
                 for name, md5 in zip(names, md5s)]
        super().__init__(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        ### END SOLUTION

    def _download(self) -> None:
        """Fetch the (checksummed) archive, extract it into `root`, delete it."""
        hint = f" (or extract it yourself so that {self.folder} holds {', '.join(self.train_files + self.test_files)})"
        # download CIFAR10_URL to root/"cifar-10-binary.tar.gz" (its MD5: CIFAR10_ARCHIVE_MD5, and `hint`),
        # extract it into root, delete it
        ### BEGIN SOLUTION
        archive = download(CIFAR10_URL, self.root / "cifar-10-binary.tar.gz", md5=CIFAR10_ARCHIVE_MD5, hint=hint)
        extract_tar(archive, self.root)
        archive.unlink()
        ### END SOLUTION


def train_val_split(dataset: Any, val_size: int | float, seed: int = 0) -> tuple[Subset, Subset]:
    """(train, validation) Subsets of `dataset` from a seeded random permutation; `val_size` is a
    count (int) or a fraction in (0, 1). Both index arrays are sorted, disjoint and complete."""
    n = len(dataset)
    # k: the number of validation samples (a fraction of n, rounded, or a count)
    ### BEGIN SOLUTION
    k = int(round(val_size * n)) if isinstance(val_size, float) else int(val_size)
    ### END SOLUTION
    if not 0 < k < n or (isinstance(val_size, float) and not 0 < val_size < 1):
        raise ValueError(f"train_val_split: val_size={val_size!r} gives {k} of {n} samples; both parts must be non-empty")
    ### BEGIN SOLUTION
    perm = np.random.default_rng(seed).permutation(n)
    return Subset(dataset, np.sort(perm[k:])), Subset(dataset, np.sort(perm[:k]))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-cifar10", "locked": true, "points": 4, "schema_version": 3, "solution": false}
import tempfile


def write_cifar(path, labels, rng):
    """A file in the CIFAR-10 binary format: per record 1 label byte + 3072 pixel bytes."""
    records = np.empty((len(labels), 3073), dtype=np.uint8)
    records[:, 0] = labels
    records[:, 1:] = rng.integers(0, 256, size=(len(labels), 3072))
    path.parent.mkdir(parents=True, exist_ok=True)
    records.tofile(path)
    return records


with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp) / CIFAR10_FOLDER
    rng = np.random.default_rng(0)
    recs = [write_cifar(folder / name, rng.integers(0, 10, 8), rng) for name in CIFAR10.train_files]
    write_cifar(folder / "test_batch.bin", rng.integers(0, 10, 8), rng)
    sums = {p.name: file_hash(p) for p in folder.iterdir()}
    train = CIFAR10(tmp, train=True, download=False, checksums=sums, records_per_file=8)
    assert len(train) == 40 and train.images.shape == (40, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and train.labels.tolist() == np.concatenate([r[:, 0] for r in recs]).tolist()
    r = recs[1][3]                                       # file 2, record 3: sample 8 + 3
    assert np.array_equal(train.images[11, 0].ravel(), r[1:1025]), "red plane first"
    assert np.array_equal(train.images[11, 2, 31], r[-32:]), "last row of blue last"
    assert len(CIFAR10(tmp, train=False, download=False, verify=False, records_per_file=8)) == 8
    tr, va = train_val_split(train, 10, seed=1)
    assert len(tr) == 30 and len(va) == 10 and not set(tr.indices) & set(va.indices)
print(train, tr, sep="\n")
print("cifar10: OK")

# %% [markdown]
# ## 6. How much does loading cost?
#
# 5,000 random CIFAR-sized images through the full augmentation pipeline
# (`benchmarks/bench_dataloader.py` measures all 50,000 against a real MLP step).

# %%
import time

fake = TensorDataset(np.random.default_rng(0).integers(0, 256, (5000, 3, 32, 32), dtype=np.uint8),
                     np.random.default_rng(1).integers(0, 10, 5000))
m, s = channel_stats(fake)
timed = DataLoader(fake, batch_size=128, shuffle=True, seed=0, transform=Compose(
    [RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(), Normalize(m, s)]))
t0 = time.perf_counter()
n_seen = sum(len(y) for _, y in timed)
dt = time.perf_counter() - t0
print(f"{n_seen} images in {dt * 1e3:.0f} ms: {dt / len(timed) * 1e3:.2f} ms per batch of 128, "
      f"{n_seen / dt:,.0f} images/s")

# %% [markdown]
# ## Systems thinking
#
# 1. **Per-sample overhead.** Time an epoch of `DataLoader(TensorDataset(x, y), 128)` on
#    50,000 CIFAR-sized images, then with a dataset that has only `__getitem__`. How many
#    µs of Python does each sample cost in the slow path, against an MLP step?
# 2. **Memory.** CIFAR-10's training set is 154 MB as uint8: how much as float32 and
#    float64? Where should `ToFloat` sit in the pipeline to move the fewest bytes?
# 3. **Reproducibility.** What must a checkpoint hold so that a run resumed after epoch 6
#    sees the same batches, crops and flips in epoch 7? What if the loader kept one
#    generator for all epochs?
# 4. **Fancy indexing.** Compare `images[indices]` (128 shuffled records from 154 MB) with
#    the view `images[i:i + 128]`. When would the difference matter?
# 5. **Overlapping work.** numpy releases the GIL in most C loops. How much could a
#    background thread preparing batch k+1 save, given question 1 and
#    `benchmarks/bench_dataloader.py`?
