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
# # Module 13: Kernels (how fast code is made, measured)
#
# **Where you are.** Your framework trains an MLP, CNNs and (module 16) a GPT. Every one
# of those runs spends its time in a handful of **kernels**: the matrix product, the
# convolution, the normalisation, the loss, the optimizer update. Modules 01–11 already
# chose fast ways to write several of them (BLAS for `@`, im2col for `Conv2d`, a fused
# `LayerNorm`, an in-place `Adam`) and said so in passing. This module stops and
# *measures*: what makes a kernel fast, by how much, and what is still left on the table.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `matmul_loops`, `matmul_broadcast`, `matmul_blas`, `matmul_flops` | one matrix product three ways, and its operation count |
# | `layout`, `strided_view` | what an array's memory looks like; a bounds-checked `as_strided` |
# | `conv2d_loops`, `conv2d_shifted` | a direct loop convolution (the reference) and a copy-free shift-and-GEMM one, next to module 09's im2col |
# | `SoftmaxCrossEntropyFunction`, `softmax_cross_entropy`, `FusedCrossEntropyLoss` | cross-entropy as **one** op: softmax and loss forward, `(softmax - onehot) / count` backward |
# | `FusedGELUFunction`, `fused_gelu`, `FusedGELU` | module 02's GELU allocating 4 input-sized arrays per forward + backward instead of 22 |
# | `adam_update_allocating`, `adam_update_inplace` | one Adam(W) step written both ways |
# | `LinearFunction`, `CausalSelfAttentionFunction`, `Conv2dReLUFunction`, `TiledMaxPoolFunction`, `fast_model` | a Dense layer, a whole causal attention, a convolution with its ReLU, a max-pool, each as one op; an opt-in that swaps a model's layers for fused subclasses |
# | `DataParallel`, `ProcessDataParallel` | a training step's batch cut into parts run at once on threads (or worker processes), each on a copy of the model sharing its weights; the parts' gradients weighted and added |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/kernels.py`.
#
# **The one idea of this module.** On a CPU, arithmetic is cheap and *moving memory* is
# expensive. A fast kernel (1) hands the arithmetic to a library that keeps numbers in
# registers and cache (BLAS), (2) reads memory in the order it is laid out, and (3) makes
# as few passes over memory, and as few new arrays, as it can: it *fuses* several steps
# into one and works *in place*. Each section below states a claim, writes both versions,
# checks that they compute the same numbers, and times them.
#
# **How to read the timings.** They depend on your machine and on what else runs on it.
# Compare ratios, not milliseconds; `benchmarks/bench_kernels.py` repeats every
# measurement many more times and records the result in
# `results/bench_report/bench_kernels.json`. Notebook measurements here are kept short (a
# few hundred milliseconds each).
#
# **Points: 25** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-12 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.kernels

# %%
#| export
"""Kernels: matmul three ways, memory layout, loop and shift convolutions, fused
softmax-cross-entropy and GELU Functions, in-place Adam (`FusedAdam`, `FusedAdamW`: opt-in,
faster drop-ins for module 06's optimizers), `tune_allocator` (opt-in glibc malloc tuning),
and `fast_model` (opt-in: a model's Dense, GELU, causal MultiHeadAttention, CrossEntropyLoss,
Conv2d (+ ReLU), MaxPool2d and Sequential swapped for fused subclasses: `LinearFunction`,
`CausalSelfAttentionFunction`, `Conv2dReLUFunction`, `TiledMaxPoolFunction`).

Module 13 of TinyTorch (generated from modules/13_kernels/kernels_dev.py; do not edit).

The fused ops are `Function`s with their `backward` beside their `forward`; each equals
its composed reference from modules 02 and 04 (values and gradients, tested).
`benchmarks/bench_kernels.py` measures every fast kernel against its reference.
"""
from __future__ import annotations

import builtins
import copy
import ctypes
import math
import mmap
import multiprocessing
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tinytorch.core.tensor import DEFAULT_FLOAT, Function, Tensor
from tinytorch.core.activations import GELU, Activation, ReLU
from tinytorch.core.layers import Dense, Module, Sequential
from tinytorch.core.spatial import Conv2d, MaxPool2d, col2im
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.attention import MultiHeadAttention, causal_mask
from tinytorch.core.optimizers import Adam, AdamW

# %% [markdown]
# A small timer for this notebook: the best of a few runs after one warm-up run (the
# minimum is the least disturbed by other processes). `speedups` collects every measured
# ratio for the table at the end.

# %%
import time


def best_ms(fn, repeats: int = 5) -> float:
    """Best wall time of `fn()` in milliseconds over `repeats` runs, after one warm-up run."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


speedups: dict[str, float] = {}

# %% [markdown]
# ## 1. One matrix product, three ways
#
# $C = AB$ with $A \in \mathbb{R}^{n \times k}$, $B \in \mathbb{R}^{k \times m}$:
# $C_{ij} = \sum_p A_{ip} B_{pj}$. That is $nm$ dot products of length $k$: $nkm$
# multiplications and as many additions, **$2nkm$ floating-point operations** (FLOPs).
# Dividing by the time gives the rate, in GFLOP/s ($10^9$ FLOPs per second).
#
# | version | how | what limits it |
# |---|---|---|
# | `matmul_loops` | three nested Python loops, one multiply-add per iteration | the interpreter: ~50 ns of bookkeeping per multiply-add |
# | `matmul_broadcast` | `A[:, :, None] * B[None, :, :]`, shape `(n, k, m)`, summed over `k` | memory: it writes and reads an `n k m` temporary, `k` times the output |
# | `matmul_blas` | `np.matmul`, which calls BLAS (OpenBLAS here) | arithmetic: blocks that fit in cache, SIMD registers, several cores |
#
# BLAS's trick is **blocking**: it splits $A$ and $B$ into tiles small enough to stay in
# the cache while each number is used many times (each entry of $A$ is used $m$ times), and
# runs a hand-written assembly micro-kernel that keeps a small block of $C$ in SIMD
# registers. The broadcast version uses the same numpy machinery as BLAS for the
# arithmetic, but it streams an $n \times k \times m$ array through memory, so it runs at
# memory speed, not arithmetic speed.
#
# Write the two slow versions. In `matmul_loops`, convert the matrices to nested Python
# lists first (`a.tolist()`): indexing a list is several times faster than indexing a numpy
# array element by element, and we want the fastest *honest* loop.

# %% nbgrader={"grade": false, "grade_id": "matmul", "locked": false, "schema_version": 3, "solution": true}
#| export
def matmul_flops(n: int, k: int, m: int) -> int:
    """Floating-point operations of an (n, k) @ (k, m) product: 2 n k m."""
    return 2 * n * k * m


def _check_matmul(a: np.ndarray, b: np.ndarray, who: str) -> None:
    """Refuse anything but two matrices (n, k) and (k, m)."""
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        raise TypeError(f"{who}: expected numpy arrays, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{who}: expected matrices (n, k) and (k, m), got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"{who}: inner dimensions differ: {a.shape} @ {b.shape} ({a.shape[1]} vs {b.shape[0]})")


def matmul_loops(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, k) @ (k, m) -> (n, m) with three Python loops (the reference; tiny sizes only)."""
    _check_matmul(a, b, "matmul_loops")
    n, k = a.shape
    m = b.shape[1]
    out = np.empty((n, m), dtype=np.result_type(a, b))
    ### BEGIN SOLUTION
    A, B = a.tolist(), b.tolist()                    # nested lists of Python numbers
    for i in range(n):
        row, out_row = A[i], [0.0] * m
        for j in range(m):
            acc = 0.0
            for p in range(k):
                acc += row[p] * B[p][j]
            out_row[j] = acc
        out[i] = out_row
    ### END SOLUTION
    return out


def matmul_broadcast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, k) @ (k, m) -> (n, m) by broadcasting to (n, k, m) and summing over k."""
    _check_matmul(a, b, "matmul_broadcast")
    ### BEGIN SOLUTION
    return (a[:, :, None] * b[None, :, :]).sum(axis=1)   # (n, k, 1) * (1, k, m) -> (n, k, m) -> (n, m)
    ### END SOLUTION


def matmul_blas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, k) @ (k, m) -> (n, m) by BLAS (np.matmul): the version the framework uses."""
    _check_matmul(a, b, "matmul_blas")
    return np.matmul(a, b)

# %% nbgrader={"grade": true, "grade_id": "test-matmul", "locked": true, "points": 3, "schema_version": 3, "solution": false}
rng = np.random.default_rng(0)
for n, k, m in [(1, 1, 1), (3, 4, 5), (7, 2, 6)]:
    a, b = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    for fn in (matmul_loops, matmul_broadcast, matmul_blas):
        out = fn(a, b)
        assert out.shape == (n, m) and np.allclose(out, a @ b), fn.__name__
a32, b32 = a.astype(np.float32), b.astype(np.float32)
assert matmul_loops(a32, b32).dtype == np.float32 and matmul_broadcast(a32, b32).dtype == np.float32
assert matmul_flops(2, 3, 4) == 48
try:
    matmul_loops(np.ones((2, 3)), np.ones((4, 2)))
    raise AssertionError("(2, 3) @ (4, 2) must be refused")
except ValueError:
    pass
print("matmul three ways: OK")

# %% [markdown]
# Now the rates. The loops get a 64 x 64 product (262,144 multiply-adds, already tens of
# milliseconds); the broadcast version and BLAS get 128 x 128; BLAS also gets 512 x 512,
# where it reaches its full speed.

# %%
def gflops(n: int, ms: float) -> float:
    return matmul_flops(n, n, n) / (ms * 1e-3) / 1e9


rng = np.random.default_rng(1)
rates = {}
for name, fn, n, reps in [("loops", matmul_loops, 64, 1), ("broadcast", matmul_broadcast, 128, 3),
                          ("BLAS", matmul_blas, 128, 20), ("BLAS", matmul_blas, 512, 3)]:
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ms = best_ms(lambda: fn(a, b), repeats=reps)
    rates[(name, n)] = gflops(n, ms)
    print(f"{name:>9} {n:>3} x {n:<3}: {ms:9.3f} ms  {rates[(name, n)]:8.3f} GFLOP/s")
speedups["matmul: BLAS vs broadcast (128)"] = rates[("BLAS", 128)] / rates[("broadcast", 128)]
speedups["matmul: BLAS vs Python loops (rate)"] = rates[("BLAS", 128)] / rates[("loops", 64)]

# %% [markdown]
# Expect a factor of thousands between the loops and BLAS, and a factor of ten or more
# between broadcasting and BLAS, for *the same arithmetic*. This is why every product in
# the framework, from `Dense` to the attention scores of module 11, ends in `np.matmul`,
# and why module 09 turns convolution into a matrix product.

# %% [markdown]
# ## 2. Memory layout: shapes, strides, views and copies
#
# A numpy array is a flat block of bytes plus a recipe to find element $(i_0, i_1, \dots)$
# in it: the **strides**, the number of bytes to step along each axis,
#
# $$\text{address}(i_0, i_1, \dots) = \text{start} + \sum_a i_a \cdot \text{stride}_a .$$
#
# A C-contiguous (row-major) float32 array of shape `(3, 4)` has strides `(16, 4)`: the
# next column is 4 bytes away, the next row 16. Many operations only change the recipe and
# share the memory (**views**): `a.T` swaps the strides to `(4, 16)`, `a[:, ::2]` doubles
# one, `a.reshape(...)` of a contiguous array recomputes them. Others must copy:
# `np.ascontiguousarray(a.T)`, fancy indexing, reshaping a transpose.
#
# `np.lib.stride_tricks.as_strided` lets you write any recipe, including ones that read
# the same bytes several times (overlapping sliding windows, the heart of im2col) or that
# read **outside** the array (garbage, or a crash): it checks nothing. `strided_view` below
# is the checked version: it computes the lowest and highest byte the view can touch and
# refuses a recipe that leaves the array's buffer. For a view with shape $n_a$ and strides
# $s_a$, the offsets span
#
# $$\Big[\sum_{s_a < 0} s_a (n_a - 1),\; \sum_{s_a > 0} s_a (n_a - 1) + \text{itemsize}\Big).$$
#
# **Why layout changes speed.** Memory moves in 64-byte cache lines. Reading a row of a
# C-contiguous float32 matrix uses all 16 numbers of every line it loads; reading a column
# uses one number per line and throws 15 away, and the hardware prefetcher cannot hide
# the jumps.

# %% nbgrader={"grade": false, "grade_id": "layout", "locked": false, "schema_version": 3, "solution": true}
#| export
def layout(a: np.ndarray) -> dict[str, Any]:
    """What the memory of `a` looks like: shape, strides (bytes), itemsize, contiguity,
    and whether it owns its data or is a view of another array's."""
    return {"shape": a.shape, "strides": a.strides, "itemsize": a.itemsize,
            "c_contiguous": bool(a.flags.c_contiguous), "f_contiguous": bool(a.flags.f_contiguous),
            "owns_data": a.base is None, "nbytes": a.nbytes}


def strided_view(a: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of the C-contiguous array `a` with any shape and strides (in bytes),
    checked: every element of the view lies inside `a`'s buffer. (..) -> shape."""
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
        raise ValueError("strided_view: the base array must be a C-contiguous numpy array "
                         "(use np.ascontiguousarray first)")
    shape, strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
    if len(shape) != len(strides):
        raise ValueError(f"strided_view: shape {shape} and strides {strides} have different lengths")
    if any(n < 0 for n in shape):
        raise ValueError(f"strided_view: negative size in shape {shape}")
    if any(s % a.itemsize for s in strides):
        raise ValueError(f"strided_view: strides {strides} must be multiples of the itemsize {a.itemsize}")
    if 0 in shape:
        return as_strided(a, shape, strides, writeable=False)
    # the bytes [low, high) the view reaches, relative to the start of a's buffer
    ### BEGIN SOLUTION
    low = sum(s * (n - 1) for n, s in zip(shape, strides) if s < 0)
    high = sum(s * (n - 1) for n, s in zip(shape, strides) if s > 0) + a.itemsize
    ### END SOLUTION
    if low < 0 or high > a.nbytes:
        raise ValueError(f"strided_view: shape {shape} with strides {strides} reaches bytes [{low}, {high}) "
                         f"outside the {a.nbytes}-byte buffer of an array of shape {a.shape}")
    return as_strided(a, shape, strides, writeable=False)

# %% nbgrader={"grade": true, "grade_id": "test-layout", "locked": true, "points": 2, "schema_version": 3, "solution": false}
m = np.arange(12, dtype=np.float32).reshape(3, 4)
assert layout(m)["strides"] == (16, 4) and layout(m.T)["strides"] == (4, 16)
assert layout(m.T)["f_contiguous"] and not layout(m.T)["owns_data"]
signal = np.arange(10, dtype=np.float64)
windows = strided_view(signal, (8, 3), (8, 8))               # 8 overlapping windows of width 3
assert np.array_equal(windows, np.stack([signal[i:i + 3] for i in range(8)]))
assert np.shares_memory(windows, signal) and not windows.flags.writeable
assert np.array_equal(strided_view(m, (4, 3), (4, 16)), m.T)  # a transpose is only new strides
assert np.array_equal(strided_view(m, (3,), (20,)), [0.0, 5.0, 10.0])   # the diagonal
for shape, strides in [((9, 3), (8, 8)), ((3,), (-8,)), ((2, 2), (80, 8))]:
    try:
        strided_view(signal, shape, strides)
        raise AssertionError(f"{shape} / {strides} reads outside the array")
    except ValueError:
        pass
print("layout and strided_view: OK")

# %% [markdown]
# Measure the layout effects: summing rows of a 2048 x 2048 float32 matrix (each row
# contiguous) against summing columns (consecutive numbers of a column are 8 KiB apart; we
# take every 16th column so that each column sum loads its own cache lines), and copying a
# matrix against copying its transpose into C order (a copy that reads with one stride and
# writes with another).

# %%
big = np.random.default_rng(2).standard_normal((2048, 2048)).astype(np.float32)
t_rows = best_ms(lambda: [big[i].sum() for i in range(0, 2048, 16)], repeats=3)
t_cols = best_ms(lambda: [big[:, j].sum() for j in range(0, 2048, 16)], repeats=3)
t_copy = best_ms(lambda: big.copy(), repeats=3)
t_tcopy = best_ms(lambda: np.ascontiguousarray(big.T), repeats=3)
print(f"128 row sums {t_rows:.2f} ms, 128 column sums {t_cols:.2f} ms ({t_cols / t_rows:.1f}x slower)")
print(f"copy {t_copy:.2f} ms, copy of the transpose {t_tcopy:.2f} ms ({t_tcopy / t_copy:.1f}x slower)")
speedups["layout: row vs column traversal"] = t_cols / t_rows

# %% [markdown]
# ## 3. Convolution: loops, shifted GEMMs, im2col
#
# A convolution of $x$ `(N, C, H, W)` with $w$ `(C_out, C, kh, kw)` at stride $s$ is
#
# $$y_{n,o,i,j} = b_o + \sum_{c,p,q} w_{o,c,p,q}\; x_{n,\,c,\,s i + p,\,s j + q}.$$
#
# Three ways to compute it:
#
# | version | loops in Python | work per iteration | extra memory |
# |---|---|---|---|
# | `conv2d_loops` (here, the reference) | $N \cdot C_\text{out} \cdot H_\text{out} \cdot W_\text{out}$ | one `(C, kh, kw)` window times one filter, summed | none |
# | `conv2d_shifted` (here) | $kh \cdot kw$ | one GEMM `(C_out, C) @ (C, N H_out W_out)` on a *shifted strided view* of the input | one output-sized accumulator |
# | module 09's `conv2d` (im2col) | none | **one** GEMM `(C_out, C kh kw) @ (C kh kw, N H_out W_out)` | the column matrix: the input $kh \cdot kw$ times |
#
# The shifted version is a middle way worth knowing: for kernel offset $(p, q)$, the slice
# `xp[:, :, p::s, q::s]` (cut to `(H_out, W_out)`) is a strided view, no copy, of exactly
# the pixels that offset multiplies; contracting it with `w[:, :, p, q]` over the channels
# and adding up the $kh \cdot kw$ results gives the convolution. It trades im2col's big
# column matrix for $kh \cdot kw$ smaller GEMMs.

# %% nbgrader={"grade": false, "grade_id": "conv", "locked": false, "schema_version": 3, "solution": true}
#| export
def _conv_setup(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int,
                padding: int, who: str) -> tuple[np.ndarray, int, int]:
    """Check shapes; return the zero-padded input (N, C, H + 2p, W + 2p) and (H_out, W_out)."""
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"{who}: expected x (N, C, H, W) and w (C_out, C, kh, kw) with the same C, "
                         f"got x {x.shape} and w {w.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{who}: bias must have shape ({w.shape[0]},), got {b.shape}")
    if int(stride) < 1 or int(padding) < 0:
        raise ValueError(f"{who}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    kh, kw = w.shape[2:]
    if kh > xp.shape[2] or kw > xp.shape[3]:
        raise ValueError(f"{who}: kernel ({kh}, {kw}) is larger than the padded input {xp.shape[2:]} of x {x.shape}")
    return xp, (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1


def conv2d_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int = 1,
                 padding: int = 0) -> np.ndarray:
    """Direct convolution (the reference): x (N, C, H, W), w (C_out, C, kh, kw), b (C_out,)
    -> (N, C_out, H_out, W_out), one Python iteration per output number."""
    xp, H_out, W_out = _conv_setup(x, w, b, stride, padding, "conv2d_loops")
    N, C_out, (kh, kw), s = x.shape[0], w.shape[0], w.shape[2:], stride
    out = np.zeros((N, C_out, H_out, W_out), dtype=np.result_type(x, w))
    ### BEGIN SOLUTION
    for n in range(N):
        for o in range(C_out):
            for i in range(H_out):
                for j in range(W_out):
                    window = xp[n, :, s * i:s * i + kh, s * j:s * j + kw]     # (C, kh, kw)
                    out[n, o, i, j] = np.sum(window * w[o])
            if b is not None:
                out[n, o] += b[o]
    ### END SOLUTION
    return out


def conv2d_shifted(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int = 1,
                   padding: int = 0) -> np.ndarray:
    """Convolution as kh*kw GEMMs over shifted strided views (no column matrix):
    x (N, C, H, W), w (C_out, C, kh, kw), b (C_out,) -> (N, C_out, H_out, W_out)."""
    xp, H_out, W_out = _conv_setup(x, w, b, stride, padding, "conv2d_shifted")
    N, C_out, (kh, kw), s = x.shape[0], w.shape[0], w.shape[2:], stride
    acc = np.zeros((C_out, N, H_out, W_out), dtype=np.result_type(x, w))   # channels first: GEMM-friendly
    ### BEGIN SOLUTION
    for p in range(kh):
        for q in range(kw):
            view = xp[:, :, p:p + s * (H_out - 1) + 1:s, q:q + s * (W_out - 1) + 1:s]   # (N, C, H_out, W_out), a view
            acc += np.tensordot(w[:, :, p, q], view, axes=([1], [1]))               # (C_out, N, H_out, W_out)
    if b is not None:
        acc += b[:, None, None, None]
    ### END SOLUTION
    return np.ascontiguousarray(acc.transpose(1, 0, 2, 3))                      # (N, C_out, H_out, W_out)

# %% nbgrader={"grade": true, "grade_id": "test-conv", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.spatial import conv2d

rng = np.random.default_rng(3)
for (N, C, H, W), (C_out, k), s, pad in [((2, 3, 6, 5), (4, 3), 1, 0), ((1, 2, 7, 7), (3, 2), 2, 1),
                                         ((2, 1, 4, 4), (2, 1), 1, 2)]:
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((C_out, C, k, k)), rng.standard_normal(C_out)
    ref = conv2d(Tensor(x, dtype=np.float64), Tensor(w, dtype=np.float64), Tensor(b, dtype=np.float64),
                 stride=s, padding=pad).data
    assert np.allclose(conv2d_loops(x, w, b, s, pad), ref), ((N, C, H, W), k, s, pad)
    assert np.allclose(conv2d_shifted(x, w, b, s, pad), ref), ((N, C, H, W), k, s, pad)
    assert np.allclose(conv2d_shifted(x, w, None, s, pad), ref - b[:, None, None])
assert conv2d_shifted(x.astype(np.float32), w.astype(np.float32)).dtype == np.float32
try:
    conv2d_loops(np.ones((1, 2, 5, 5)), np.ones((3, 4, 3, 3)))
    raise AssertionError("2 input channels are not 4")
except ValueError:
    pass
print("convolutions: OK")

# %% [markdown]
# Time the three on a small batch (the loops are the slow reference), then the two fast
# ones on LeNet-5's second convolution: 64 images of `(6, 14, 14)`, sixteen 5 x 5 filters.

# %%
rng = np.random.default_rng(4)
xs, ws, bs = (rng.standard_normal(s).astype(np.float32) for s in [(4, 3, 16, 16), (8, 3, 3, 3), (8,)])
xt, wt, bt = Tensor(xs), Tensor(ws), Tensor(bs)
t_loops = best_ms(lambda: conv2d_loops(xs, ws, bs, 1, 1), repeats=1)
t_shift = best_ms(lambda: conv2d_shifted(xs, ws, bs, 1, 1), repeats=10)
t_im2col = best_ms(lambda: conv2d(xt, wt, bt, padding=1), repeats=10)
print(f"(4, 3, 16, 16) * (8, 3, 3, 3): loops {t_loops:.1f} ms, shifted {t_shift:.3f} ms, "
      f"im2col {t_im2col:.3f} ms ({t_loops / t_im2col:.0f}x faster than loops)")
speedups["conv: im2col (module 09) vs loops"] = t_loops / t_im2col
xs, ws, bs = (rng.standard_normal(s).astype(np.float32) for s in [(64, 6, 14, 14), (16, 6, 5, 5), (16,)])
xt, wt, bt = Tensor(xs), Tensor(ws), Tensor(bs)
t_shift = best_ms(lambda: conv2d_shifted(xs, ws, bs), repeats=5)
t_im2col = best_ms(lambda: conv2d(xt, wt, bt), repeats=5)
cols_bytes = 6 * 5 * 5 * 64 * 10 * 10 * 4                     # (C k k, N H_out W_out) float32
print(f"LeNet-5 conv2 forward, batch 64: shifted {t_shift:.2f} ms, im2col {t_im2col:.2f} ms "
      f"(im2col {t_shift / t_im2col:.2f}x faster; its columns take {cols_bytes / 2**20:.1f} MiB, "
      f"{cols_bytes / xs.nbytes:.1f}x the input)")
speedups["conv: im2col vs shifted GEMMs (LeNet-5 conv2)"] = t_shift / t_im2col

# %% [markdown]
# ## 4. Fused softmax-cross-entropy
#
# Module 04's `CrossEntropyLoss` is composed from Tensor ops: `log_softmax` (one op), a
# one-hot matrix, a product, a sum over classes, a sum over examples, a division. Each
# records a node, allocates an `(R, C)` array (for `R` rows of `C` classes), and its
# backward rule allocates more. But the derivative of the whole thing is famously simple.
# With $p = \text{softmax}(z)$ per row, target $t$, and the mean over the $M$ rows that are
# not ignored,
#
# $$L = \frac{1}{M}\sum_{r \text{ valid}} \Big(\log \sum_c e^{z_{rc}} - z_{r t_r}\Big), \qquad
#   \frac{\partial L}{\partial z_{rc}} = \frac{1}{M}\big(p_{rc} - [c = t_r]\big)
#   \text{ for valid rows, } 0 \text{ for ignored ones.}$$
#
# **The fused kernel.** Forward, per row: subtract the row maximum (so `exp` cannot
# overflow; the largest term becomes $e^0 = 1$, so the sum is $\ge 1$ and its log is safe),
# pick the target's shifted logit, exponentiate **in place**, sum, take the log, and turn
# the exponentials into probabilities in place. One `(R, C)` array is allocated and it is
# all backward needs. Backward: scale the probabilities by $g / M$ (the upstream gradient
# over the count) into one new array, subtract $g / M$ at the target positions, zero the
# ignored rows. `reduction="sum"` uses $1$ instead of $1/M$.
#
# Shapes: logits `(N, C)` or `(B, T, C)` (any leading axes), targets the leading shape.
# Targets equal to `ignore_index` are skipped (if all are, the mean loss is 0, like module
# 04's). The result keeps the logits' dtype.

# %% nbgrader={"grade": false, "grade_id": "softmax-ce", "locked": false, "schema_version": 3, "solution": true}
#| export
_CE_REDUCTIONS = ("mean", "sum")


class SoftmaxCrossEntropyFunction(Function):
    """Cross-entropy of logits (..., C) against integer targets (...), softmax included, one op -> ().

    Params: targets (int64, the logits' shape without the last axis), ignore_index (int or
    None), reduction ("mean" over non-ignored rows, or "sum"). Keeps the probabilities
    (R, C) with R = prod(leading axes), the target per row and the mask of valid rows.
    """
    def forward(self, logits: np.ndarray, targets: np.ndarray = None, ignore_index: int | None = None,
                reduction: str = "mean") -> np.ndarray:
        x = logits if logits.dtype.kind == "f" else logits.astype(DEFAULT_FLOAT)
        C = x.shape[-1]
        x2 = x.reshape(-1, C)                                    # (R, C), a view when contiguous
        t = targets.reshape(-1)                                  # (R,)
        self.shape = x.shape
        ### BEGIN SOLUTION
        valid = None if ignore_index is None else t != ignore_index   # (R,) bool, or None: all valid
        if valid is not None:
            t = np.where(valid, t, 0)                            # any in-range index for ignored rows
        rows = np.arange(x2.shape[0])
        z = x2 - x2.max(axis=1, keepdims=True)                   # (R, C), the one new array
        picked = z[rows, t]                                      # (R,) shifted logit of the target
        np.exp(z, out=z)                                         # in place: exponentials
        total = np.einsum("rc->r", z)                            # (R,), each >= 1
        losses = np.log(total) - picked                          # (R,) per-row loss
        z *= (1.0 / total)[:, None]                              # in place: probabilities
        count = x2.shape[0] if valid is None else int(valid.sum())
        if valid is not None:
            losses *= valid
        self.scale = 1.0 / max(count, 1) if reduction == "mean" else 1.0
        self.probs, self.rows, self.t, self.valid = z, rows, t, valid
        return np.asarray(losses.sum() * self.scale, dtype=x.dtype)
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        ### BEGIN SOLUTION
        g = grad * self.scale                                    # () upstream gradient over the count
        dz = self.probs * g                                      # (R, C), the one new array
        dz[self.rows, self.t] -= g                               # minus the one-hot
        if self.valid is not None:
            dz[~self.valid] = 0                                  # ignored rows get nothing
        return (dz.reshape(self.shape),)
        ### END SOLUTION


def _check_targets(logits: Tensor, targets: Any, ignore_index: int | None, who: str) -> np.ndarray:
    """Targets as int64 with the logits' leading shape, each in [0, C) or equal to ignore_index."""
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if t.dtype.kind == "f" and np.isfinite(t).all() and (t == np.round(t)).all():
        t = t.astype(np.int64)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{who}: targets must be integer class indices, got dtype {t.dtype}")
    if logits.ndim < 1 or t.shape != logits.shape[:-1]:
        raise ValueError(f"{who}: logits of shape {logits.shape} need targets of shape {logits.shape[:-1]}, "
                         f"got targets of shape {t.shape}")
    C = logits.shape[-1]
    t = t.astype(np.int64, copy=False)
    bad = (t < 0) | (t >= C)
    if ignore_index is not None:
        bad &= t != ignore_index
    if bad.any():
        raise ValueError(f"{who}: targets must lie in [0, {C}) for {C} classes"
                         f"{'' if ignore_index is None else f' or equal ignore_index={ignore_index}'}, "
                         f"got {np.unique(t[bad])[:10].tolist()}")
    return t


def softmax_cross_entropy(logits: Tensor, targets: Any, ignore_index: int | None = None,
                          reduction: str = "mean") -> Tensor:
    """Fused cross-entropy: logits (..., C), integer targets (...) -> scalar Tensor."""
    logits = logits if isinstance(logits, Tensor) else Tensor(logits)
    if reduction not in _CE_REDUCTIONS:
        raise ValueError(f"softmax_cross_entropy: reduction must be one of {_CE_REDUCTIONS}, got {reduction!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))):
        raise TypeError(f"softmax_cross_entropy: ignore_index must be an int or None, got {ignore_index!r}")
    t = _check_targets(logits, targets, ignore_index, "softmax_cross_entropy")
    return SoftmaxCrossEntropyFunction.apply(logits, targets=t, ignore_index=ignore_index, reduction=reduction)


class FusedCrossEntropyLoss(Module):
    """Drop-in for module 04's CrossEntropyLoss (reductions "mean" and "sum") as one fused op.

    logits (N, C) or (..., C); targets (N,) or (...), integer class indices; targets equal
    to `ignore_index` are skipped. Returns a scalar Tensor in the logits' dtype.
    """
    def __init__(self, ignore_index: int | None = None, reduction: str = "mean"):
        super().__init__()
        if reduction not in _CE_REDUCTIONS:
            raise ValueError(f"FusedCrossEntropyLoss: reduction must be one of {_CE_REDUCTIONS}, got {reduction!r}")
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        return softmax_cross_entropy(logits, targets, self.ignore_index, self.reduction)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"

# %% nbgrader={"grade": true, "grade_id": "test-softmax-ce", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck
from tinytorch.core.losses import CrossEntropyLoss

rng = np.random.default_rng(5)
for shape, ignore in [((6, 4), None), ((2, 5, 3), -1), ((3, 4, 7), 2)]:
    z = rng.standard_normal(shape) * 3
    t = rng.integers(0, shape[-1], size=shape[:-1])
    if ignore is not None:
        t[..., 0] = ignore                                       # ignore the first position of every row
    a, b = Tensor(z, dtype=np.float64, requires_grad=True), Tensor(z, dtype=np.float64, requires_grad=True)
    fused, ref = FusedCrossEntropyLoss(ignore_index=ignore)(a, t), CrossEntropyLoss(ignore_index=ignore)(b, t)
    assert fused.shape == () and np.isclose(fused.item(), ref.item()), (shape, fused.item(), ref.item())
    fused.backward()
    ref.backward()
    assert np.allclose(a.grad.data, b.grad.data), shape
    assert gradcheck(lambda z: softmax_cross_entropy(z, t, ignore_index=ignore), [a])
z32 = Tensor(rng.standard_normal((4, 3)).astype(np.float32) * 1000, requires_grad=True)   # huge logits
loss = softmax_cross_entropy(z32, [0, 1, 2, 0], reduction="sum")
assert loss.dtype == np.float32 and np.isfinite(loss.item())
loss.backward()
assert z32.grad.dtype == np.float32 and np.isfinite(z32.grad.data).all()
assert softmax_cross_entropy(Tensor(np.ones((2, 3))), [-1, -1], ignore_index=-1).item() == 0.0
try:
    softmax_cross_entropy(Tensor(np.ones((2, 3))), [0, 3])
    raise AssertionError("class 3 does not exist among 3 classes")
except ValueError:
    pass
print(FusedCrossEntropyLoss(ignore_index=-1))
print("fused softmax-cross-entropy: OK")

# %% [markdown]
# How much does fusing buy? Forward + backward at TinyGPT's shape: logits `(12, 64, 65)`
# (batch 12, context 64, 65 characters), float32.

# %%
logits0 = np.random.default_rng(6).standard_normal((12, 64, 65)).astype(np.float32)
targets0 = np.random.default_rng(7).integers(0, 65, size=(12, 64))
lz = Tensor(logits0, requires_grad=True)
composed_ce, fused_ce = CrossEntropyLoss(), FusedCrossEntropyLoss()


def ce_step(loss_fn):
    lz.grad = None
    loss_fn(lz, targets0).backward()


t_composed, t_fused = best_ms(lambda: ce_step(composed_ce), 20), best_ms(lambda: ce_step(fused_ce), 20)
print(f"cross-entropy (12, 64, 65) forward + backward: composed {t_composed:.3f} ms, "
      f"fused {t_fused:.3f} ms ({t_composed / t_fused:.1f}x)")
speedups["loss: fused softmax-CE vs module 04 (12, 64, 65)"] = t_composed / t_fused

# %% [markdown]
# ## 5. Fused GELU: fewer temporaries, in place
#
# GELU with the tanh approximation (module 02):
#
# $$\text{gelu}(x) = \tfrac12 x (1 + t), \quad t = \tanh u, \quad u = c\,(x + 0.044715\, x^3), \quad c = \sqrt{2/\pi},$$
# $$\text{gelu}'(x) = \tfrac12 (1 + t) + \tfrac12 x\,(1 - t^2)\, c\,(1 + 3 \cdot 0.044715\, x^2).$$
#
# Module 02 writes the forward as one numpy expression; numpy evaluates it one operation
# at a time and every operation allocates a new array: `0.044715 * x`, `* x`, `* x`,
# `x + ...`, `c * ...`, `tanh`, `0.5 * x`, `1 + t`, the product: nine arrays the size of
# the input, of which two survive. Module 05's backward rule allocates thirteen more.
# On TinyGPT's feed-forward activations `(12, 64, 512)` each is 1.5 MiB: more than the L2
# cache, so every temporary is a trip to main memory.
#
# The fused op computes **the same formula in the same order** (so the forward values are
# identical to module 02's, bit for bit) with numpy's in-place operators (`*=`, `+=`,
# `np.tanh(t, out=t)`): forward allocates `t` (kept for backward) and the output; backward
# allocates the input gradient and **one** scratch array, which it reuses for
# $1 - t^2$ and then $\frac12(1 + t)$. Backward never writes into what forward kept, so it
# can run twice on the same graph.

# %% nbgrader={"grade": false, "grade_id": "gelu", "locked": false, "schema_version": 3, "solution": true}
#| export
_GELU_C = math.sqrt(2.0 / math.pi)       # a Python float: float32 arrays stay float32
_GELU_A = 0.044715


class FusedGELUFunction(Function):
    """Tanh-approximated GELU, elementwise, any shape, with two temporaries forward and two
    backward. Keeps `self.x` (the input, not copied) and `self.t = tanh(u)`."""
    def forward(self, x: np.ndarray) -> np.ndarray:
        x = x if x.dtype.kind == "f" else x.astype(DEFAULT_FLOAT)
        ### BEGIN SOLUTION
        with np.errstate(over="ignore"):                         # x^3 may overflow to inf: tanh(inf) = 1
            t = np.multiply(x, _GELU_A, out=np.empty_like(x))    # the kept temporary (an array even for 0-d x)
            t *= x
            t *= x                                               # 0.044715 x^3
            t += x
            t *= _GELU_C                                         # u
            np.tanh(t, out=t)                                    # t = tanh(u)
        y = np.add(t, 1, out=np.empty_like(t))                   # the output: 1 + t ...
        y *= x                                                   # ... times x ...
        y *= 0.5                                                 # ... times 1/2
        self.x, self.t = x, t
        return y
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        x, t = self.x, self.t
        ### BEGIN SOLUTION
        d = np.multiply(x, x, out=np.empty_like(x))              # becomes the input gradient
        d *= 3 * _GELU_A
        d += 1
        d *= _GELU_C                                             # du/dx
        d *= x
        d *= 0.5                                                 # x du/dx / 2
        s = np.multiply(t, t, out=np.empty_like(t))              # the one scratch array
        np.subtract(1, s, out=s)                                 # 1 - t^2
        d *= s
        np.add(t, 1, out=s)                                      # reuse it: 1 + t
        s *= 0.5
        d += s                                                   # gelu'(x)
        d *= grad
        return (d,)
        ### END SOLUTION


def fused_gelu(x: Tensor) -> Tensor:
    """Fused GELU (tanh approximation) of a tensor of any shape; same shape and dtype out."""
    return FusedGELUFunction.apply(x if isinstance(x, Tensor) else Tensor(x))


class FusedGELU(Activation):
    """Layer form of `fused_gelu`, a drop-in for module 02's GELU: (...) -> (...)."""
    def forward(self, x: Tensor) -> Tensor:
        return fused_gelu(x)

# %% nbgrader={"grade": true, "grade_id": "test-gelu", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.activations import gelu

rng = np.random.default_rng(8)
x32 = rng.standard_normal((4, 5, 6)).astype(np.float32) * 3
assert np.array_equal(fused_gelu(Tensor(x32)).data, gelu(Tensor(x32)).data), "same formula, same order, same bits"
assert fused_gelu(Tensor(x32)).dtype == np.float32
a, b = Tensor(x32, requires_grad=True), Tensor(x32, requires_grad=True)
up = rng.standard_normal(x32.shape).astype(np.float32)
kept = up.copy()
FusedGELU()(a).backward(up)
gelu(b).backward(up)
assert a.grad.dtype == np.float32 and np.allclose(a.grad.data, b.grad.data, rtol=1e-5, atol=1e-6)
assert np.array_equal(up, kept), "backward must not modify grad"
x64 = Tensor(rng.standard_normal((3, 4)) * 2, dtype=np.float64, requires_grad=True)
assert gradcheck(fused_gelu, [x64])
out = fused_gelu(x64)
x64.grad = None                                                  # forget gradcheck's gradient
out.backward(np.ones((3, 4)))
first = x64.grad.data.copy()
x64.grad = None
out.backward(np.ones((3, 4)))                                    # backward twice on one graph
assert np.array_equal(x64.grad.data, first), "backward must leave what forward kept intact"
assert np.isfinite(fused_gelu(Tensor(np.array([1e30, -1e30], dtype=np.float32))).data).all()
print("fused GELU: OK")

# %% [markdown]
# Forward + backward on TinyGPT's feed-forward activations, `(12, 64, 512)` float32:

# %%
hidden = Tensor(np.random.default_rng(9).standard_normal((12, 64, 512)).astype(np.float32), requires_grad=True)
up = np.random.default_rng(10).standard_normal(hidden.shape).astype(np.float32)


def gelu_step(fn):
    hidden.grad = None
    fn(hidden).backward(up)


t_composed, t_fused = best_ms(lambda: gelu_step(gelu), 10), best_ms(lambda: gelu_step(fused_gelu), 10)
print(f"GELU (12, 64, 512) forward + backward: module 02 {t_composed:.2f} ms, fused {t_fused:.2f} ms "
      f"({t_composed / t_fused:.2f}x)")
speedups["activation: fused GELU vs module 02 (12, 64, 512)"] = t_composed / t_fused

# %% [markdown]
# **LayerNorm is already fused.** Module 10 wrote `LayerNormFunction` as one op with an
# analytic backward (six passes over memory each way instead of about twenty), next to the
# composed reference `layer_norm_composed`; TinyGPT uses the fused one. Nothing to write
# here: measure it at TinyGPT's shape `(12, 64, 128)`.

# %%
from tinytorch.core.normalization import LayerNorm, layer_norm_composed

acts = Tensor(np.random.default_rng(11).standard_normal((12, 64, 128)).astype(np.float32), requires_grad=True)
up_ln = np.random.default_rng(12).standard_normal(acts.shape).astype(np.float32)
ln = LayerNorm(128)


def ln_step(fn):
    acts.grad = ln.weight.grad = ln.bias.grad = None
    fn().backward(up_ln)


t_composed = best_ms(lambda: ln_step(lambda: layer_norm_composed(acts, 1, ln.weight, ln.bias)), 10)
t_fused = best_ms(lambda: ln_step(lambda: ln(acts)), 10)
print(f"LayerNorm (12, 64, 128) forward + backward: composed {t_composed:.2f} ms, fused (module 10) "
      f"{t_fused:.2f} ms ({t_composed / t_fused:.1f}x)")
speedups["norm: fused LayerNorm (module 10) vs composed"] = t_composed / t_fused

# %% [markdown]
# ## 6. In-place optimizer updates
#
# One Adam step (module 06), for parameter $p$, gradient $g$, moments $m, v$, step $t$:
#
# $$m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
#   p \leftarrow p - \frac{\text{lr}}{1 - \beta_1^t} \cdot \frac{m}{\sqrt{v}/\sqrt{1 - \beta_2^t} + \varepsilon},$$
#
# with L2 weight decay ($g \leftarrow g + \lambda p$ first) or, for AdamW, decoupled decay
# ($p \leftarrow p (1 - \text{lr}\,\lambda)$ first). Written the obvious way, every
# operation of these three lines allocates a new parameter-sized array, about twelve per
# parameter per step, and the old $p$, $m$, $v$ become garbage. Written with `out=`, the
# same operations run **in the same order** (so the results are identical, bit for bit)
# inside $p$, $m$, $v$ and two scratch arrays that can be reused for every parameter and
# every step.
#
# Module 06's `Adam` is the textbook version: it allocates. Below you write both versions
# as plain functions; the test checks that they agree with each other exactly, step after
# step, and with module 06's `Adam` and `AdamW` to float rounding (module 06 computes
# $\hat v = v / (1 - \beta_2^t)$ and then its root, here the root is scaled: the last bits
# differ).
#
# **Opting in.** `FusedAdam` and `FusedAdamW` (provided, below your functions) are module
# 06's optimizers with `_update` replaced by `adam_update_inplace`, on two scratch arrays
# per dtype as large as the largest parameter, reused by every parameter and every step.
# Same constructor, hyperparameters, state buffers and checkpoints (their `state_dict()`
# says "Adam" / "AdamW", so a checkpoint moves freely between the plain and the fused
# optimizer). The milestones and benchmarks use `FusedAdamW`; its numbers are those of
# TinyTorch's earlier in-place `AdamW`, bit for bit, so recorded runs reproduce.

# %% nbgrader={"grade": false, "grade_id": "adam", "locked": false, "schema_version": 3, "solution": true}
#| export
def adam_update_allocating(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, step: int,
                           lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                           weight_decay: float = 0.0, decoupled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Adam (or AdamW, `decoupled=True`) step, `step` counted from 1, allocating new
    arrays: returns (p, m, v), all of p's shape; the inputs are not modified."""
    b1, b2 = betas
    ### BEGIN SOLUTION
    if weight_decay and decoupled:
        p = p * (1.0 - lr * weight_decay)
    elif weight_decay:
        g = p * weight_decay + g
    m = m * b1 + g * (1.0 - b1)
    v = v * b2 + g * g * (1.0 - b2)
    denom = np.sqrt(v) * (1.0 / math.sqrt(1.0 - b2 ** step)) + eps
    p = p - m / denom * (lr / (1.0 - b1 ** step))
    ### END SOLUTION
    return p, m, v


def adam_update_inplace(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, step: int,
                        lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                        weight_decay: float = 0.0, decoupled: bool = False,
                        work: np.ndarray | None = None) -> None:
    """The same step in place: p, m, v (p's shape) are updated, g is only read. `work`:
    scratch of shape (2, *p.shape) and p's dtype, reused across calls (allocated if None)."""
    if not (p.shape == g.shape == m.shape == v.shape):
        raise ValueError(f"adam_update_inplace: p {p.shape}, g {g.shape}, m {m.shape} and v {v.shape} "
                         f"must have one shape")
    if work is None:
        work = np.empty((2, *p.shape), dtype=p.dtype)
    elif work.shape != (2, *p.shape) or work.dtype != p.dtype:
        raise ValueError(f"adam_update_inplace: work must have shape {(2, *p.shape)} and dtype {p.dtype}, "
                         f"got {work.shape} {work.dtype}")
    b1, b2 = betas
    w0, w1 = work[0, ...], work[1, ...]                        # views, 0-d arrays included
    ### BEGIN SOLUTION
    if weight_decay and decoupled:
        np.multiply(p, 1.0 - lr * weight_decay, out=p)
    elif weight_decay:
        np.multiply(p, weight_decay, out=w0)                     # g + wd p, into scratch
        np.add(w0, g, out=w0)
        g = w0
    np.multiply(m, b1, out=m)                                    # m <- b1 m + (1 - b1) g
    np.multiply(g, 1.0 - b1, out=w1)
    np.add(m, w1, out=m)
    np.multiply(g, g, out=w1)                                    # v <- b2 v + (1 - b2) g^2
    np.multiply(w1, 1.0 - b2, out=w1)
    np.multiply(v, b2, out=v)
    np.add(v, w1, out=v)
    np.sqrt(v, out=w1)                                           # denominator
    np.multiply(w1, 1.0 / math.sqrt(1.0 - b2 ** step), out=w1)
    np.add(w1, eps, out=w1)
    np.divide(m, w1, out=w1)
    np.multiply(w1, lr / (1.0 - b1 ** step), out=w1)
    np.subtract(p, w1, out=p)
    ### END SOLUTION


class _InPlaceAdamStep:
    """The `_update` of FusedAdam/FusedAdamW: module 06's Adam step by `adam_update_inplace`,
    on scratch shared by all parameters of one dtype (allocated on first use; each
    parameter's (2, *shape) view of it is made once)."""

    def _work(self, i: int, p: np.ndarray) -> np.ndarray:
        views = self.__dict__.setdefault("_views", {})          # parameter index -> scratch view
        work = views.get(i)
        if work is None or work.shape[1:] != p.shape or work.dtype != p.dtype:
            n = max(q.size for q in self.params if q.dtype == p.dtype)
            flat = self.__dict__.setdefault("_scratch", {})      # dtype -> flat buffer
            if flat.get(p.dtype) is None or flat[p.dtype].size < 2 * max(n, p.size):
                flat[p.dtype] = np.empty(2 * max(n, p.size), dtype=p.dtype)
                views.clear()                                    # views of the old buffer
            work = views[i] = flat[p.dtype][:2 * p.size].reshape(2, *p.shape)
        return work

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        t = self.state[f"{i}.step"]
        t += 1
        h = self.hyper
        adam_update_inplace(p, g, self.state[f"{i}.exp_avg"], self.state[f"{i}.exp_avg_sq"], int(t),
                            h["lr"], h["betas"], h["eps"], h["weight_decay"], self.decoupled_weight_decay,
                            self._work(i, p))


class FusedAdam(_InPlaceAdamStep, Adam):
    """Module 06's `Adam` without temporary arrays (opt in: same arguments, state and
    checkpoints; results equal to Adam's up to float rounding)."""
    state_type = "Adam"


class FusedAdamW(_InPlaceAdamStep, AdamW):
    """Module 06's `AdamW` without temporary arrays (opt in: same arguments, state and
    checkpoints; results equal to AdamW's up to float rounding)."""
    state_type = "AdamW"

# %% nbgrader={"grade": true, "grade_id": "test-adam", "locked": true, "points": 3, "schema_version": 3, "solution": false}
rng = np.random.default_rng(13)
for plain_cls, fused_cls, wd in [(Adam, FusedAdam, 0.0), (Adam, FusedAdam, 0.1), (AdamW, FusedAdamW, 0.05)]:
    p0 = rng.standard_normal((5, 4)).astype(np.float32)
    grads = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(6)]
    decoupled = plain_cls is AdamW
    pa, ma, va = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)     # allocating
    pi, mi, vi = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)     # in place
    plain, fused = Tensor(p0.copy(), requires_grad=True), Tensor(p0.copy(), requires_grad=True)
    opt, fopt = plain_cls([plain], lr=0.01, weight_decay=wd), fused_cls([fused], lr=0.01, weight_decay=wd)
    work = np.empty((2, 5, 4), dtype=np.float32)
    for step, g in enumerate(grads, start=1):
        g_before = g.copy()
        pa, ma, va = adam_update_allocating(pa, g, ma, va, step, lr=0.01, weight_decay=wd, decoupled=decoupled)
        adam_update_inplace(pi, g, mi, vi, step, lr=0.01, weight_decay=wd, decoupled=decoupled, work=work)
        plain.grad, fused.grad = Tensor(g), Tensor(g)
        opt.step()
        fopt.step()
        assert np.array_equal(g, g_before), "the gradient is only read"
        assert np.array_equal(pa, pi) and np.array_equal(ma, mi) and np.array_equal(va, vi), (plain_cls, wd, step)
        assert np.array_equal(pi, fused.data), (fused_cls.__name__, wd, step)
        assert np.allclose(pi, plain.data, rtol=1e-5, atol=1e-7), (plain_cls.__name__, wd, step)
    assert pi.dtype == np.float32 and not np.array_equal(pi, p0)
    assert fopt.state_dict()["type"] == plain_cls.__name__
print("Adam in place == allocating == FusedAdam(W), and == module 06 to float rounding: OK")

# %% [markdown]
# Measure one optimizer step over TinyGPT's parameters (4 blocks of 128 dimensions, 65
# characters: about 0.8 M numbers in 70 arrays): the allocating version, the in-place
# version with one scratch buffer reused across all parameters, module 06's `AdamW` and
# `FusedAdamW`.

# %%
def tinygpt_shapes(vocab: int = 65, d: int = 128, layers: int = 4, context: int = 64) -> list[tuple[int, ...]]:
    """Parameter shapes of module 16's TinyGPT (embeddings, blocks, final norm, head)."""
    shapes = [(vocab, d), (context, d)]
    for _ in range(layers):
        shapes += [(d,), (d,)] + [(d, d), (d,)] * 4 + [(d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return shapes + [(d,), (d,), (d, vocab), (vocab,)]


rng = np.random.default_rng(14)
shapes = tinygpt_shapes()
params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
moments = [[np.zeros(s, np.float32), np.zeros(s, np.float32)] for s in shapes]
scratch = np.empty(2 * max(p.size for p in params), dtype=np.float32)
print(f"{len(shapes)} arrays, {sum(p.size for p in params):,} numbers")


def step_allocating():
    for k, (p, g, (m, v)) in enumerate(zip(params, grads, moments)):
        params[k], moments[k][0], moments[k][1] = adam_update_allocating(p, g, m, v, 1, weight_decay=0.1, decoupled=True)


def step_inplace():
    for p, g, (m, v) in zip(params, grads, moments):
        work = scratch[:2 * p.size].reshape(2, *p.shape)
        adam_update_inplace(p, g, m, v, 1, weight_decay=0.1, decoupled=True, work=work)


tensors = [Tensor(p, requires_grad=True) for p in params]
for t, g in zip(tensors, grads):
    t.grad = Tensor(g)
adamw, fused_adamw = AdamW(tensors, lr=1e-3, weight_decay=0.1), FusedAdamW(tensors, lr=1e-3, weight_decay=0.1)
t_alloc, t_inplace = best_ms(step_allocating, 10), best_ms(step_inplace, 10)
t_module06, t_fused = best_ms(adamw.step, 10), best_ms(fused_adamw.step, 10)
print(f"AdamW step: allocating {t_alloc:.2f} ms, in place {t_inplace:.2f} ms ({t_alloc / t_inplace:.2f}x); "
      f"module 06's AdamW {t_module06:.2f} ms, FusedAdamW {t_fused:.2f} ms ({t_module06 / t_fused:.2f}x)")
speedups["optimizer: FusedAdamW vs module 06's AdamW"] = t_module06 / t_fused

# %% [markdown]
# ### Where the memory comes from: `tune_allocator`
#
# numpy allocates a fresh array for every result, and a training step allocates the
# *same* sizes over and over (this step's activations, then the next step's), so the
# cheapest memory is the memory just freed. glibc, the C library behind Python on Linux,
# does not always agree: blocks above a threshold (128 KiB at first) come straight from
# the operating system (`mmap`) and go back to it when freed, and the top of the heap is
# trimmed when it grows idle. The next allocation then *page-faults*: the kernel hands
# out and zero-fills every 4 KiB page again, about 100 faults for a (768, 512) float32
# temporary. Measured on TinyGPT, a training step went from 84 ms to 66 ms once freed
# memory was kept. Deep-learning frameworks keep a *caching allocator* for this reason.
#
# `tune_allocator()` gets most of the effect by asking glibc, through `mallopt`, to serve
# blocks of up to 32 MiB (its largest allowed threshold) from the heap, and to trim the
# heap only when more than 1 GiB lies free at its top. It is an **opt-in** for a whole
# process (the milestones and benchmarks call it first thing): it changes the memory
# behaviour of everything in the process, not only TinyTorch's, and it cannot be undone
# except by calling it again with glibc's defaults. Elsewhere than Linux with glibc (macOS,
# Windows, Alpine's musl) it does nothing and says why. It changes speed only, never a
# result.

# %%
#| export
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # mallopt parameter numbers (glibc's malloc.h)


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> dict[str, Any]:
    """Opt in: make glibc's malloc keep freed memory for reuse instead of returning it to
    the operating system (fewer page faults per training step). Affects the whole process.

    mmap_threshold: blocks up to this many bytes come from the heap (glibc's maximum: 32 MiB).
    trim_threshold: the heap is trimmed only when this many bytes lie free at its top.
    Returns {"applied": bool, "reason": str, "mmap_threshold": int, "trim_threshold": int};
    "applied" is False, with the reason, where there is no glibc (nothing is changed then).
    """
    done = {"applied": False, "mmap_threshold": mmap_threshold, "trim_threshold": trim_threshold}
    if not sys.platform.startswith("linux"):
        return {**done, "reason": f"not Linux ({sys.platform}): glibc's mallopt is not available"}
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version          # only glibc has it (musl has no mallopt tuning)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {**done, "reason": "the C library is not glibc: nothing to tune"}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    return {**done, "applied": ok,
            "reason": "glibc keeps freed blocks for reuse" if ok else "glibc's mallopt refused the values"}

# %%
print(tune_allocator())


# %% [markdown]
# ## 7. Fusing a whole model: `fast_model`
#
# Sections 4-6 fused single kernels. A training step of TinyGPT is made of *hundreds* of
# ops: every `Dense` is a `MatMul` and an `Add` (whose backward sums the bias gradient over
# two axes), every attention a chain of fourteen (three projections, reshapes and permutes
# for the heads, the scores, the softmax, the values, the merge, the output projection).
# Each op records a node, allocates its output, and the engine of module 05 visits it on
# the way back. Measured with module 14's `OpProfiler`, about two thirds of TinyGPT's step
# was spent outside BLAS. The remedy is the one of section 4, on a larger scale: **one op
# per layer**, with its backward written by hand beside its forward.
#
# * `LinearFunction`: $y = xW + b$ for `x (..., in)` as one GEMM on the flattened rows,
#   the bias added in place; backward $dx = g W^\top$, $dW = x^\top g$, $db = \sum_r g_r$
#   (two GEMMs and one column sum, no broadcasting machinery).
# * `CausalSelfAttentionFunction`: causal multi-head self-attention, *projections included*.
#   The three projections become one GEMM with the stacked weights $[W_q W_k W_v]$
#   `(C, 3C)`; the heads are laid out once as `(3, B, nh, T, hs)`, so the scores and the
#   values are two batched products over all `B * nh` heads at once; softmax runs in place
#   on the scores. With $S = \text{scale}\cdot QK^\top + M$ (M the causal mask),
#   $A = \text{softmax}(S)$, $Y = AV$ and upstream gradient $G$:
#
# $$dV = A^\top G, \quad dA = G V^\top, \quad dS_{ij} = A_{ij}\big(dA_{ij} - \textstyle\sum_k dA_{ik} A_{ik}\big), \quad
#   dQ = \text{scale}\cdot dS\, K, \quad dK = \text{scale}\cdot dS^\top Q,$$
#
#   and the three projection gradients are again one GEMM each way on the stacked
#   `(B T, 3C)` gradient. Masked entries have $A = 0$, so they get no gradient.
# * `Conv2dReLUFunction`: module 09's im2col convolution with the bias and a following
#   ReLU applied in place on its output (a `FusedSequential` spots `Conv2d, ReLU` pairs;
#   it runs `ReLU, MaxPool2d` as `MaxPool2d, ReLU`, which gives the same values and
#   gradients with a quarter of the ReLU's work and no mask in the convolution's backward).
#   It convolves the batch **in parts of a few images**: LeNet-5's first layer has a
#   75 x 50,176 column matrix at batch 64 (15 MB), which is written to memory and read back
#   by a product that does only 6 multiply-adds per number read; a part's columns (under
#   1 MiB, `CONV_PART_BYTES`) are still in the cache when the product reads them. They are
#   not kept: backward copies each part's columns again from the kept input (a
#   *recomputation*, as in activation checkpointing), which costs less than writing 15 MB to
#   memory and reading it back. Columns are one copy of one strided view (section 2's
#   idea, made with the `np.ndarray` constructor, which checks the bounds itself), not
#   module 09's `sliding_window_view`, whose Python overhead counts when a layer makes
#   sixteen parts. With stride 1 they are **wide**: output pixel (y, x) takes column
#   `y * Wp + x` (Wp the padded input's width), so one row of one image's columns is a
#   single run of the input, and the copy moves long runs instead of one short run of
#   `W_out` numbers per output row. The `Wp - W_out` columns after each output row are
#   windows that wrap round the image's edge: computed (14% more work for LeNet-5's first
#   layer), then dropped, since the layer's output is a view that skips them.
#   Backward masks by the kept output and sums the weight gradient per image
#   when an image has more output pixels than a filter has weights (LeNet-5's first layer:
#   784 vs 75), else as one GEMM per part. Narrow outputs (LeNet-5's second layer: 10 x 10)
#   take **batch-last** columns instead, ordered (y, x, n): im2col then copies runs of
#   `W_out * N` numbers instead of `W_out`, at the price of transposing the input and the
#   output once.
# * `TiledMaxPoolFunction`: max pooling with non-overlapping tiles as `kh*kw - 1` in-place
#   maxima of strided views; backward finds each tile's first maximum by comparison
#   instead of keeping an index array.
#
# `fast_model(model)` opts a model in *from the outside*: it walks `model.modules()` and
# gives each module whose class is exactly `Dense`, `GELU`, `MultiHeadAttention`,
# `CrossEntropyLoss`, `Conv2d`, `MaxPool2d` or `Sequential` its fused subclass
# (`m.__class__ = FusedDense`, ...). The parameters, `state_dict` and checkpoints stay
# those of the plain module (its `repr` names the fused class); the fused
# attention serves causal self-attention in training and hands everything else (the KV
# cache, extra masks, active dropout, `return_weights`) to module 11's forward. The
# results equal the plain model's up to float rounding (a different order of the same
# sums), so the milestones, which are reproduced bit for bit, do not use it; the
# benchmarks (`benchmarks/bench_vs_torch.py`) measure it.
#
# Write the attention op's forward (from the stacked projection to the merged heads) and
# its backward (from the merged heads' gradient to the stacked projection's gradient).

# %% nbgrader={"grade": false, "grade_id": "fused-model", "locked": false, "schema_version": 3, "solution": true}
#| export
class LinearFunction(Function):
    """y = x @ W + b in one op: x (..., in), W (in, out), b (out,) or absent -> (..., out).
    Keeps x (as (R, in)) and W."""
    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        x2 = x.reshape(-1, x.shape[-1])                          # (R, in), a view when contiguous
        self.x2, self.w, self.shape = x2, w, x.shape
        y = x2 @ w                                               # (R, out), the one new array
        if b is not None:
            y += b
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        g2 = grad.reshape(-1, grad.shape[-1])                    # (R, out)
        need = [t.requires_grad for t in self.inputs] + [False]
        dx = (g2 @ self.w.T).reshape(self.shape) if need[0] else None   # (..., in)
        dw = self.x2.T @ g2 if need[1] else None                 # (in, out)
        if len(self.inputs) == 2:
            return dx, dw
        return dx, dw, (np.add.reduce(g2, axis=0) if need[2] else None)   # (out,)


def linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """Fused x @ w + b: x (..., in), w (in, out), b (out,) or None -> (..., out)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[0] or (b is not None and b.shape != (w.shape[1],)):
        raise ValueError(f"linear: x (..., in), w (in, out) and b (out,) do not fit: x {x.shape}, w {w.shape}, "
                         f"b {None if b is None else b.shape}")
    return LinearFunction.apply(*((x, w) if b is None else (x, w, b)))


_MASKS: dict[tuple[int, str], np.ndarray] = {}


def _causal_mask(T: int, dtype: np.dtype) -> np.ndarray:
    """Module 11's (T, T) `causal_mask`, cached per (T, dtype) and read-only (built once per shape)."""
    key = (int(T), np.dtype(dtype).str)
    if key not in _MASKS:
        m = causal_mask(T, dtype)
        m.flags.writeable = False
        _MASKS[key] = m
    return _MASKS[key]


class CausalSelfAttentionFunction(Function):
    """Causal multi-head self-attention, projections included, in one op: x (B, T, C),
    Wq, Wk, Wv (C, C), bq, bk, bv (C,) -> the merged heads (B, T, C), before the output
    projection. Params: num_heads (divides C). Keeps x (as (B T, C)), the stacked weights
    (C, 3C), q, k, v as (3, B, nh, T, hs) and the attention weights (B, nh, T, T)."""
    def forward(self, x: np.ndarray, wq: np.ndarray, bq: np.ndarray, wk: np.ndarray, bk: np.ndarray,
                wv: np.ndarray, bv: np.ndarray, num_heads: int = 1) -> np.ndarray:
        B, T, C = x.shape
        nh, hs = num_heads, C // num_heads
        x2 = x.reshape(B * T, C)                                 # (B T, C)
        w = np.concatenate((wq, wk, wv), axis=1)                 # (C, 3C): one GEMM for q, k and v
        qkv = x2 @ w                                             # (B T, 3C)
        qkv += np.concatenate((bq, bk, bv))
        scale = 1.0 / math.sqrt(hs)
        ### BEGIN SOLUTION
        qkv = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4).copy()   # (3, B, nh, T, hs)
        q, k, v = qkv[0], qkv[1], qkv[2]                         # (B, nh, T, hs) each
        att = q @ k.transpose(0, 1, 3, 2)                        # (B, nh, T, T)
        att *= scale
        att += _causal_mask(T, att.dtype)                        # -inf above the diagonal
        att -= att.max(axis=-1, keepdims=True)
        np.exp(att, out=att)
        att *= 1.0 / att.sum(axis=-1, keepdims=True)             # rows sum to 1
        y = att @ v                                              # (B, nh, T, hs)
        ### END SOLUTION
        self.x2, self.w, self.qkv, self.att, self.shape = x2, w, qkv, att, (B, T, C, nh, hs)
        return y.transpose(0, 2, 1, 3).reshape(B, T, C)         # (B, T, C), merged heads (a copy)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        B, T, C, nh, hs = self.shape
        q, k, v = self.qkv[0], self.qkv[1], self.qkv[2]
        att, scale = self.att, 1.0 / math.sqrt(hs)
        gy = grad.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)    # (B, nh, T, hs), a view
        dqkv = np.empty((B, T, 3, nh, hs), dtype=q.dtype)        # the stacked projections' gradient
        ### BEGIN SOLUTION
        dqkv[:, :, 2] = (att.transpose(0, 1, 3, 2) @ gy).transpose(0, 2, 1, 3)   # dV = Aᵀ G
        da = gy @ v.transpose(0, 1, 3, 2)                        # dA = G Vᵀ, (B, nh, T, T)
        da -= np.einsum("bhij,bhij->bhi", da, att)[..., None]    # softmax backward ...
        da *= att
        da *= scale                                              # ... and the scale: dS
        dqkv[:, :, 0] = (da @ k).transpose(0, 2, 1, 3)           # dQ = dS K
        dqkv[:, :, 1] = (da.transpose(0, 1, 3, 2) @ q).transpose(0, 2, 1, 3)   # dK = dSᵀ Q
        ### END SOLUTION
        d2 = dqkv.reshape(B * T, 3 * C)                          # (B T, 3C)
        need = [t.requires_grad for t in self.inputs]
        dx = (d2 @ self.w.T).reshape(B, T, C) if need[0] else None
        dw = self.x2.T @ d2                                      # (C, 3C)
        db = np.add.reduce(d2, axis=0)                           # (3C,)
        out = [dx]
        for i in range(3):
            out += [dw[:, i * C:(i + 1) * C].copy(), db[i * C:(i + 1) * C].copy()]
        return tuple(g if n else None for g, n in zip(out, need))


class FusedDense(Dense):
    """Module 03's Dense computing with `linear` (one op): same parameters and state."""
    def forward(self, x: Tensor) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            return super().forward(x)                            # its own error
        return linear(x, self.weight, self.bias)


#: a part of the batch holds as many images as keep its im2col columns under this many bytes
CONV_PART_BYTES = 1 << 20
#: outputs narrower than this many pixels are convolved with batch-last columns
BATCH_LAST_BELOW = 16


def _columns(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int],
             order: str = "image", out: np.ndarray | None = None) -> np.ndarray:
    """Module 09's im2col as one copy of one strided view (section 2's idea) of padded images,
    rows (c, i, j), in one of three column orders:
    "image": xp (n, C, Hp, Wp) -> (C*kh*kw, n*H_out*W_out), columns (n, y, x);
    "batch_last": xp (C, Hp, Wp, n) -> (C*kh*kw, H_out*W_out*n), columns (y, x, n);
    "wide" (stride 1 only): xp (n, C, Hp, Wp) -> (C*kh*kw, n*R), R = (H_out - 1)*Wp + W_out,
    columns (n, r): output pixel (y, x) is r = y*Wp + x, and the Wp - W_out columns after each
    output row are windows wrapping round the image's edge (computed, then dropped). Each
    (row, image) is then one run of R consecutive numbers of xp: the copy runs at memory speed.
    out: a flat buffer of at least that many numbers to copy into (else a new array)."""
    (kh, kw), (sh, sw), (H_out, W_out) = kernel, stride, out_hw
    if order == "batch_last":
        C, n = xp.shape[0], xp.shape[3]
        sC, sH, sW, sN = xp.strides
        shape, strides = (C, kh, kw, H_out, W_out, n), (sC, sH, sW, sH * sh, sW * sw, sN)
    elif order == "wide":
        n, C, _, Wp = xp.shape
        sN, sC, sH, sW = xp.strides
        shape, strides = (C, kh, kw, n, (H_out - 1) * Wp + W_out), (sC, sH, sW, sN, sW)
    else:
        n, C = xp.shape[:2]
        sN, sC, sH, sW = xp.strides
        shape, strides = (C, kh, kw, n, H_out, W_out), (sC, sH, sW, sN, sH * sh, sW * sw)
    view = np.ndarray(shape, dtype=xp.dtype, buffer=xp, strides=strides)   # numpy refuses views outside xp
    if out is None:
        return view.copy().reshape(C * kh * kw, -1)             # the one copy, C order
    cols = out[:view.size].reshape(shape)
    np.copyto(cols, view)
    return cols.reshape(C * kh * kw, -1)


class Conv2dReLUFunction(Function):
    """Module 09's im2col convolution with the bias and, optionally, ReLU fused into its
    output: x (N, C_in, H, W), weight (C_out, C_in, kh, kw), bias (C_out,) -> (N, C_out,
    H_out, W_out). Params: stride, padding (pairs), relu (bool). The batch is convolved in
    parts of a few images whose column matrix fits in the processor's cache (CONV_PART_BYTES),
    made again from the kept input in the backward pass; with stride 1 the columns are
    "wide" (`_columns`) and the output is a view that drops their wrapped-round pixels.
    Outputs narrower than BATCH_LAST_BELOW take one batch-last column matrix instead, kept.
    Backward masks the gradient by the kept output (> 0) and sums each part's weight
    gradient either as one stacked per-image product, when an image has more output pixels
    than a filter has weights, or as one GEMM over the part."""
    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0), relu: bool = False) -> np.ndarray:
        if x.dtype.kind != "f":                                  # uint8 images, integer test data
            x = x.astype(weight.dtype)
        N, C_out, kernel = x.shape[0], weight.shape[0], weight.shape[2:]
        H_out, W_out = ((x.shape[2 + a] + 2 * padding[a] - kernel[a]) // stride[a] + 1 for a in (0, 1))
        K = weight[0].size
        self.x_shape, self.kernel, self.stride, self.padding = x.shape, kernel, stride, padding
        self.has_bias, self.batch_last = bias is not None, W_out < BATCH_LAST_BELOW
        ph, pw = padding                                         # padded once, for every part
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else np.ascontiguousarray(x)
        if self.batch_last:
            return self._forward_batch_last(xp, weight, bias, relu, H_out, W_out)
        self.order = "wide" if tuple(stride) == (1, 1) else "image"
        pitch = xp.shape[3] if self.order == "wide" else W_out   # numbers from one output row to the next
        R = (H_out - 1) * pitch + W_out                          # an image's columns (wide: with wrapped ones)
        n = max(1, CONV_PART_BYTES // max(1, K * R * x.itemsize))   # images per part
        self.parts, self.w2, self.xp = [(a, min(a + n, N)) for a in range(0, N, n)], weight.reshape(C_out, K), xp
        self.scratch = np.empty(K * min(n, N) * R, dtype=xp.dtype)   # one part's columns, made again in backward
        rows = np.empty((N, C_out, H_out * pitch), dtype=np.result_type(x, weight))   # output rows `pitch` apart
        for a, z in self.parts:
            cols = _columns(xp[a:z], kernel, stride, (H_out, W_out), self.order, out=self.scratch)   # (K, (z - a) R)
            part = rows[a:z, :, :R]                              # a view: the product lands in NCHW order
            np.matmul(self.w2, cols.reshape(K, z - a, R).transpose(1, 0, 2), out=part)
            if bias is not None:
                part += bias[:, None]
            if relu:
                np.maximum(part, 0, out=part)                    # in place, while the part is in cache
        out = rows.reshape(N, C_out, H_out, pitch)[..., :W_out]  # a view (wide: without the wrapped pixels)
        self.out_hw, self.pitch, self.out = (H_out, W_out), pitch, (out if relu else None)
        return out

    def _forward_batch_last(self, xp: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, relu: bool,
                            H_out: int, W_out: int) -> np.ndarray:
        """The whole (padded) batch with columns (c, i, j) x (y, x, n): copied in runs of W_out * N numbers."""
        N = xp.shape[0]
        xb = np.ascontiguousarray(xp.transpose(1, 2, 3, 0))      # (C, Hp, Wp, N), batch last
        self.w2 = weight.reshape(weight.shape[0], -1)          # (C_out, K)
        self.cols = _columns(xb, self.kernel, self.stride, (H_out, W_out), "batch_last")   # (K, L N)
        out = self.w2 @ self.cols                                # (C_out, L N)
        if bias is not None:
            out += bias[:, None]
        if relu:
            np.maximum(out, 0, out=out)
        self.out = out if relu else None
        return out.reshape(-1, H_out, W_out, N).transpose(3, 0, 1, 2).copy()   # (N, C_out, H_out, W_out)

    def _backward_batch_last(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        C_out, need = grad.shape[1], [t.requires_grad for t in self.inputs] + [False]
        g = np.ascontiguousarray(grad.transpose(1, 2, 3, 0)).reshape(C_out, -1)   # (C_out, L N), our own copy
        if self.out is not None:
            g *= self.out > 0                                    # ReLU's backward
        dx = col2im(self.w2.T @ g, self.x_shape, self.kernel, self.stride, self.padding) if need[0] else None
        dw = (self.cols @ g.T).T.reshape(self.inputs[1].shape) if need[1] else None
        db = np.add.reduce(g, axis=1) if self.has_bias and need[2] else None
        return (dx, dw, db) if self.has_bias else (dx, dw)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        if self.batch_last:
            return self._backward_batch_last(grad)
        if self.out is not None:
            grad = grad * (self.out > 0)                         # ReLU's backward (a new array)
        N, C_out = grad.shape[:2]
        (H_out, W_out), K, pitch = self.out_hw, self.w2.shape[1], self.pitch
        R = (H_out - 1) * pitch + W_out
        need = [t.requires_grad for t in self.inputs] + [False]
        dx = np.empty(self.x_shape, dtype=grad.dtype) if need[0] else None
        dw = np.zeros((C_out, K), dtype=grad.dtype) if need[1] else None
        if need[1] and self.order == "wide":                     # the gradient laid out like the output rows,
            rows = np.zeros((self.parts[0][1], C_out, H_out * pitch), dtype=grad.dtype)   # 0 at wrapped pixels
        for a, z in self.parts:
            g, n = grad[a:z], z - a                              # (n, C_out, H_out, W_out)
            if need[0]:
                g_last = np.ascontiguousarray(g.transpose(1, 2, 3, 0)).reshape(C_out, -1)   # (C_out, L n)
                dx[a:z] = col2im(self.w2.T @ g_last, (n, *self.x_shape[1:]), self.kernel, self.stride, self.padding)
            if not need[1]:
                continue
            cols = _columns(self.xp[a:z], self.kernel, self.stride, self.out_hw, self.order, out=self.scratch)
            if self.order == "wide":                             # (K, n R): the part's columns again, into the cache
                rows[:n].reshape(n, C_out, H_out, pitch)[..., :W_out] = g
                g = rows[:n, :, :R]
            g = g.reshape(n, C_out, R)
            if R >= K:                                           # per image: (n, C_out, R) @ (n, R, K), summed
                dw += np.matmul(g, cols.reshape(K, n, R).transpose(1, 2, 0)).sum(axis=0)
            else:                                                # one GEMM over the part's images
                dw += (cols @ np.ascontiguousarray(g.transpose(1, 0, 2)).reshape(C_out, -1).T).T
        db = np.einsum("nchw->c", grad) if self.has_bias and need[2] else None
        dw = dw.reshape(self.inputs[1].shape) if need[1] else None
        return (dx, dw, db) if self.has_bias else (dx, dw)


class FusedConv2d(Conv2d):
    """Module 09's Conv2d computing with `Conv2dReLUFunction` (a `FusedSequential` also fuses
    a following ReLU into it): same parameters and state."""
    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            return super().forward(x)                            # its own error
        inputs = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return Conv2dReLUFunction.apply(*inputs, stride=self.stride, padding=self.padding, relu=relu)


class TiledMaxPoolFunction(Function):
    """Max pooling over non-overlapping kh x kw tiles (stride = kernel, dividing H and W):
    x (N, C, H, W) -> (N, C, H / kh, W / kw). Forward takes kh*kw - 1 in-place maxima of
    strided views and keeps x and the output; backward sends each gradient to the first
    maximum of its tile in row-major order (module 09's rule), found by comparison."""
    def forward(self, x: np.ndarray, kernel: tuple[int, int] = (2, 2)) -> np.ndarray:
        (N, C, H, W), (kh, kw) = x.shape, kernel
        x6 = x.reshape(N, C, H // kh, kh, W // kw, kw)           # a view: axes 3 and 5 are the offsets
        out = x6[:, :, :, 0, :, 0].copy()                        # (N, C, H_out, W_out)
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    np.maximum(out, x6[:, :, :, i, :, j], out=out)
        self.x6, self.out = x6, out
        return out

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        x6, out = self.x6, self.out
        dx = np.empty(x6.shape, dtype=grad.dtype)                # every input pixel is in one tile
        free = np.ones(out.shape, dtype=bool)                    # tiles whose maximum is not found yet
        kh, kw = x6.shape[3], x6.shape[5]
        for i in range(kh):
            for j in range(kw):
                if i == kh - 1 and j == kw - 1:
                    hit = free                                   # the last offset: what is left
                else:
                    hit = x6[:, :, :, i, :, j] == out
                    hit &= free
                    free ^= hit
                np.multiply(grad, hit, out=dx[:, :, :, i, :, j])
        return (dx.reshape(self.inputs[0].shape),)


class FusedMaxPool2d(MaxPool2d):
    """Module 09's MaxPool2d taking `TiledMaxPoolFunction` when the tiles do not overlap and
    cover the input; anything else runs module 09's forward."""
    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), tiled = self.kernel_size, self.stride == self.kernel_size
        if not (isinstance(x, Tensor) and x.ndim == 4 and tiled and x.shape[2] % kh == 0 and x.shape[3] % kw == 0
                and x.dtype.kind == "f" and x.shape[2] >= kh and x.shape[3] >= kw):
            return super().forward(x)
        return TiledMaxPoolFunction.apply(x, kernel=self.kernel_size)


class FusedSequential(Sequential):
    """Module 03's Sequential that runs a FusedConv2d followed by a ReLU layer as one op, and
    a ReLU followed by a max-pool the other way round: max and ReLU commute (relu(max(s)) =
    max(relu(s)), and the gradients agree too, the first maximum of a window being the same
    whenever it is positive), so the ReLU touches one number per window, and the convolution
    before it needs no mask in its backward."""
    def forward(self, x: Any) -> Any:
        layers, i = self.layers, 0
        while i < len(layers):
            kinds = [type(m) for m in layers[i:i + 3]]
            if kinds[0] is ReLU and len(kinds) > 1 and issubclass(kinds[1], MaxPool2d):
                x = layers[i](layers[i + 1](x))                  # the pool first, then the ReLU
                i += 2
            elif kinds[:2] == [FusedConv2d, ReLU] and not (len(kinds) > 2 and issubclass(kinds[2], MaxPool2d)):
                x = layers[i](x, relu=True)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


class FusedGELULayer(GELU):
    """Module 02's GELU layer computing with `fused_gelu` (the same forward values)."""
    def forward(self, x: Tensor) -> Tensor:
        return fused_gelu(x)


class FusedCausalSelfAttention(MultiHeadAttention):
    """Module 11's MultiHeadAttention with `CausalSelfAttentionFunction` for causal
    self-attention without a cache, extra mask, active dropout or returned weights
    (`last_weights` is then None); anything else runs module 11's forward."""

    def forward(self, query: Any, key: Any = None, value: Any = None, mask: Any = None, *,
                cache: Any = None, return_weights: bool = False) -> Any:
        dropping = self.training and (self.attn_dropout.p > 0 or self.out_dropout.p > 0)
        fused = (key is None and value is None and mask is None and cache is None and not return_weights
                 and self.causal and not dropping and isinstance(query, Tensor) and query.ndim == 3
                 and query.shape[-1] == self.d_model and self.q_proj.bias is not None)
        if not fused:
            return super().forward(query, key, value, mask, cache=cache, return_weights=return_weights)
        y = CausalSelfAttentionFunction.apply(query, self.q_proj.weight, self.q_proj.bias, self.k_proj.weight,
                                              self.k_proj.bias, self.v_proj.weight, self.v_proj.bias,
                                              num_heads=self.num_heads)   # (B, T, C)
        self.last_weights = None
        return linear(y, self.out_proj.weight, self.out_proj.bias)   # (B, T, C)


class FusedCrossEntropy(CrossEntropyLoss):
    """Module 04's CrossEntropyLoss computing with `softmax_cross_entropy` (one op) for the
    reductions "mean" and "sum"; "none" runs module 04's forward."""
    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        if self.reduction not in _CE_REDUCTIONS:
            return super().forward(logits, targets)
        return softmax_cross_entropy(logits, targets, self.ignore_index, self.reduction)


#: plain module class -> its fused subclass (same attributes, parameters and state)
FUSIONS: dict[type, type] = {Dense: FusedDense, GELU: FusedGELULayer, MultiHeadAttention: FusedCausalSelfAttention,
                             CrossEntropyLoss: FusedCrossEntropy, Conv2d: FusedConv2d, Sequential: FusedSequential,
                             MaxPool2d: FusedMaxPool2d}


def fast_model(model: Module, fusions: dict[type, type] | None = None) -> dict[str, int]:
    """Opt in: give every module of `model` (itself included) whose class is exactly a key of
    `fusions` (default `FUSIONS`) that fused subclass, in place. Parameters, state_dict and
    checkpoints are unchanged; results equal the plain model's up to float rounding.
    Returns {plain class name: how many were swapped}."""
    if not isinstance(model, Module):
        raise TypeError(f"fast_model: expected a Module, got {type(model).__name__}")
    table = FUSIONS if fusions is None else fusions
    swapped: dict[str, int] = {}
    for m in model.modules():
        fused = table.get(type(m))
        if fused is not None:
            swapped[type(m).__name__] = swapped.get(type(m).__name__, 0) + 1
            m.__class__ = fused
    return swapped

# %% nbgrader={"grade": true, "grade_id": "test-fused-model", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.attention import MultiHeadAttention

rng = np.random.default_rng(16)
for shape in [(5, 3), (2, 4, 3), (2, 2, 2, 3)]:                  # leading axes broadcast into rows
    x, w, b = (Tensor(rng.standard_normal(s), dtype=np.float64, requires_grad=True) for s in (shape, (3, 4), (4,)))
    assert np.allclose(linear(x, w, b).data, (x @ w + b).data)
    assert gradcheck(lambda x, w, b: linear(x, w, b), [x, w, b]) and gradcheck(lambda x, w: linear(x, w), [x, w])
for B, T, C, nh in [(2, 5, 8, 2), (1, 4, 6, 3), (3, 1, 4, 1)]:
    mha = MultiHeadAttention(C, nh, causal=True, dtype=np.float64, rng=rng)
    for p in mha.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5
    x = Tensor(rng.standard_normal((B, T, C)), dtype=np.float64, requires_grad=True)
    ref = mha(x)
    up = rng.standard_normal((B, T, C))
    ref.backward(up)
    ref_grads = [x.grad.data.copy()] + [p.grad.data.copy() for p in mha.parameters()]
    x.grad = None
    mha.zero_grad()
    assert fast_model(mha) == {"MultiHeadAttention": 1, "Dense": 4} and type(mha) is FusedCausalSelfAttention
    out = mha(x)
    assert np.allclose(out.data, ref.data), (B, T, C, nh)
    out.backward(up)
    for g, r in zip([x.grad.data] + [p.grad.data for p in mha.parameters()], ref_grads):
        assert np.allclose(g, r), (B, T, C, nh)
    proj = [mha.q_proj.weight, mha.q_proj.bias, mha.k_proj.weight, mha.k_proj.bias, mha.v_proj.weight, mha.v_proj.bias]
    assert gradcheck(lambda x, *p: CausalSelfAttentionFunction.apply(x, *p, num_heads=nh), [x, *proj])
mha32 = MultiHeadAttention(8, 2, causal=True, rng=rng)
fast_model(mha32)
x32 = Tensor(rng.standard_normal((2, 6, 8)).astype(np.float32), requires_grad=True)
out32 = mha32(x32)
out32.sum().backward()
assert out32.dtype == np.float32 and x32.grad.dtype == np.float32 and mha32.q_proj.weight.grad.dtype == np.float32
assert mha32.last_weights is None and mha32(x32, return_weights=True)[1].shape == (2, 2, 6, 6)   # module 11's path

from tinytorch.core.activations import ReLU, relu
from tinytorch.core.layers import Sequential
from tinytorch.core.spatial import Conv2d, MaxPool2d, conv2d, max_pool2d

# batch-first columns (narrow 0): wide with stride 1, image order with stride 2; in parts of one
# image or not; both weight-gradient strategies (an image's columns vs a filter's weights);
# then batch-last columns (narrow 16)
for (N, C, H, W), (C_out, k), s, pad, part_bytes, narrow in [
        ((2, 2, 7, 6), (3, 3), 1, 1, 1 << 20, 0), ((3, 2, 5, 5), (2, 4), 1, 0, 1 << 20, 0),
        ((3, 2, 7, 6), (3, 3), 1, 1, 1, 0), ((3, 3, 4, 4), (2, 3), 1, 0, 1, 0),
        ((3, 3, 5, 5), (2, 3), 2, 0, 1, 0), ((2, 2, 9, 8), (3, 3), 2, 1, 1 << 20, 0),
        ((2, 2, 7, 6), (3, 3), 1, 1, 1 << 20, 16), ((1, 1, 8, 8), (2, 3), 2, 1, 1 << 20, 16)]:
    CONV_PART_BYTES, BATCH_LAST_BELOW = part_bytes, narrow
    x, w, b = (Tensor(rng.standard_normal(sh), dtype=np.float64, requires_grad=True)
               for sh in ((N, C, H, W), (C_out, C, k, k), (C_out,)))
    for use_relu in (False, True):
        fused = lambda x, w, b: Conv2dReLUFunction.apply(x, w, b, stride=(s, s), padding=(pad, pad), relu=use_relu)
        composed = conv2d(x, w, b, stride=s, padding=pad)
        composed = relu(composed) if use_relu else composed
        assert np.allclose(fused(x, w, b).data, composed.data), ((N, C, H, W), k, s, pad, use_relu)
        assert gradcheck(fused, [x, w, b])
    assert gradcheck(lambda x, w: Conv2dReLUFunction.apply(x, w, stride=(s, s), padding=(pad, pad), relu=True), [x, w])
CONV_PART_BYTES, BATCH_LAST_BELOW = 1 << 20, 16
for shape, kernel in [((2, 3, 4, 6), (2, 2)), ((1, 2, 6, 6), (3, 2))]:
    x = Tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=True)
    assert np.array_equal(TiledMaxPoolFunction.apply(x, kernel=kernel).data, max_pool2d(x, kernel).data)
    assert gradcheck(lambda x: TiledMaxPoolFunction.apply(x, kernel=kernel), [x])
ties = Tensor(np.array([[[[1.0, 1.0], [1.0, 0.0]]]]), requires_grad=True)   # a tile of equal maxima
TiledMaxPoolFunction.apply(ties, kernel=(2, 2)).backward(np.ones((1, 1, 1, 1)))
assert np.array_equal(ties.grad.data, [[[[1.0, 0.0], [0.0, 0.0]]]]), "the first maximum gets the gradient"
plain = Sequential(Conv2d(2, 3, 3, rng=np.random.default_rng(1)), ReLU(), MaxPool2d(2), Conv2d(3, 2, 2, rng=np.random.default_rng(2)))
fast = Sequential(Conv2d(2, 3, 3, rng=np.random.default_rng(1)), ReLU(), MaxPool2d(2), Conv2d(3, 2, 2, rng=np.random.default_rng(2)))
assert fast_model(fast) == {"Sequential": 1, "Conv2d": 2, "MaxPool2d": 1}
x = Tensor(rng.standard_normal((2, 2, 8, 8)).astype(np.float32))
ya, yb = plain(x), fast(x)
assert np.allclose(ya.data, yb.data, rtol=1e-5, atol=1e-6) and yb.dtype == np.float32
ya.sum().backward()
yb.sum().backward()
for pa, pb in zip(plain.parameters(), fast.parameters()):
    assert np.allclose(pa.grad.data, pb.grad.data, rtol=1e-4, atol=1e-5)
assert fast.state_dict().keys() == plain.state_dict().keys()
# ReLU then max-pool runs as max-pool then ReLU: exactly the same values and gradients, even with
# tied maxima and windows with nothing positive (their gradient is 0 either way)
ties = np.array([[[[-1, -2, 3, 3], [-3, -1, 0, 3], [0, 0, 2, -1], [0, 0, 1, 2]]]], dtype=np.float64)
up = rng.standard_normal((1, 1, 2, 2))
grads = []
for net in (Sequential(ReLU(), MaxPool2d(2)), Sequential(ReLU(), MaxPool2d(2))):
    if grads:
        fast_model(net)
    xt = Tensor(ties, requires_grad=True)
    y = net(xt)
    y.backward(up)
    grads.append((y.data, xt.grad.data))
assert np.array_equal(grads[0][0], grads[1][0]) and np.array_equal(grads[0][1], grads[1][1])
print("linear, fused causal attention, conv + ReLU, tiled max-pool == their compositions (values, gradients, "
      "gradcheck), fast_model: OK")

# %% [markdown]
# ## 8. Data parallelism over cores: `DataParallel`
#
# This machine has more than one core, and a training step of TinyGPT keeps about one of
# them busy: BLAS can use two threads inside one product, but everything between the
# products (softmax, GELU, LayerNorm, the engine's Python) runs on one. Splitting every op
# over threads costs a hand-over per op, hundreds per step, each slower than the small ops
# it hands over. The cheaper cut is the one used to train across many GPUs: **data
# parallelism**. Cut the batch into parts, run the forward and backward of each part on its
# own thread on its own copy of the model, and add the copies' parameter gradients. One
# hand-over per step, and everything in the step runs in parallel, as numpy lets go of
# Python's lock inside its kernels.
#
# Two things make the sum equal the gradient of the whole batch in one piece:
#
# * **Weights.** A mean loss over the whole batch is not the mean of the parts' means when
#   the parts count different numbers of targets (an odd batch, or targets equal to
#   `ignore_index`, which are not counted). With $n_i$ counted targets in part $i$ and
#   $N = \sum_i n_i$, the whole loss is $L = \sum_i (n_i / N) L_i$, so part $i$ starts its
#   backward from $n_i / N$ instead of 1. A summed loss takes weight 1 for every part.
# * **Shared weights, separate gradients.** Each copy's parameters are new `Tensor`s around
#   the *same* arrays (`copy.deepcopy` with a memo that maps each parameter array to itself),
#   so an optimizer's in-place update reaches every copy, while each backward fills its own
#   copy's `.grad` without racing the others.
#
# The first part runs on the model itself, on the calling thread; its gradients land in
# the model's `.grad` directly, the other parts' are added to them. Between numpy's kernels
# each thread runs Python (the ops' bookkeeping, the engine), which needs the interpreter's
# lock; by default a thread that wants it may wait up to 5 ms for the other to let go, so
# while the parts run, `DataParallel` asks Python to hand it over every 0.1 ms
# (`sys.setswitchinterval`; measured: about 6% off TinyGPT's step, 13% off LeNet-5's). Batch statistics
# (`BatchNorm` in training mode) would be computed per part, so results then differ from one
# piece; each copy's dropout draws from its own generator.
#
# Write `_weights` (each part's share of the loss) and `_add_grads` (the copies' gradients
# into the model's).

# %% nbgrader={"grade": false, "grade_id": "data-parallel", "locked": false, "schema_version": 3, "solution": true}
#| export
_POOLS: dict[int, ThreadPoolExecutor] = {}
#: seconds a thread may hold Python's lock while another waits for it, during DataParallel.backward
SWITCH_INTERVAL = 1e-4


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of n worker threads, made once per n."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tinytorch-data-parallel")
    return _POOLS[n]


def _cuts(n_rows: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges cutting n_rows into min(parts, n_rows) nearly equal parts."""
    c = np.linspace(0, n_rows, max(1, min(int(parts), n_rows)) + 1).astype(int)
    return list(zip(c[:-1].tolist(), c[1:].tolist()))


def _respawn_generators(model: Module) -> None:
    """Give each random generator held by a module of `model` an independent child, in place
    (a deep copy would otherwise draw the same numbers as the original)."""
    children: dict[int, np.random.Generator] = {}
    for m in model.modules():
        for name, value in list(getattr(m, "__dict__", {}).items()):
            if isinstance(value, np.random.Generator):
                setattr(m, name, children.setdefault(id(value), value.spawn(1)[0]))


def _part_backward(model: Module, loss_fn: Any, x: np.ndarray, targets: np.ndarray, weight: float) -> float:
    """Forward and backward of one part of the batch, its loss's gradient seeded with `weight`
    (its share of the whole loss); returns weight * its loss."""
    loss = loss_fn(model(Tensor(x, dtype=x.dtype)), targets)
    loss.backward(np.full(loss.shape, weight, dtype=loss.dtype))
    return weight * float(loss.data)


class DataParallel:
    """Opt in: the forward and backward of one training step with the batch cut into
    `threads` parts, each run at once on its own thread and its own copy of `model` (the
    copies share the parameter arrays). The copies' gradients are added into the model's
    parameters, each part's loss weighted by its share of the batch, so they equal the whole
    batch's gradients up to float rounding.

        dp = DataParallel(model, loss_fn, threads=2)     # after fast_model, if used
        optimizer.zero_grad()
        loss = dp.backward(x, targets)                   # a float; the model's .grad filled
        optimizer.step()

    loss_fn(model(x), targets) must reduce by "mean" (the default) or "sum" over the targets;
    targets equal to its `ignore_index` are not counted. Gradients go to parameters only."""

    def __init__(self, model: Module, loss_fn: Any, threads: int = 2):
        if not isinstance(model, Module) or not callable(loss_fn):
            raise TypeError(f"DataParallel: expected a Module and a callable loss, got {type(model).__name__} "
                            f"and {type(loss_fn).__name__}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"DataParallel: threads must be a positive int, got {threads!r}")
        self.reduction = getattr(loss_fn, "reduction", "mean")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"DataParallel: the loss must reduce by 'mean' or 'sum', not {self.reduction!r}")
        self.model, self.loss_fn, self.threads = model, loss_fn, int(threads)
        self.ignore_index = getattr(loss_fn, "ignore_index", None)
        self.params = model.parameters()
        self.copies: list[tuple[Module, Any, list[Tensor]]] = []   # (model, loss_fn, parameters) of parts 2, 3, ...
        for _ in range(self.threads - 1):
            m, lf = copy.deepcopy((model, loss_fn), {id(p.data): p.data for p in self.params})
            _respawn_generators(m)
            self.copies.append((m, lf, m.parameters()))

    def _sync(self) -> None:
        """Point each copy at the model's current arrays, flags and fused classes; clear its gradients."""
        for m, _, params in self.copies:
            if len(params) != len(self.params):
                raise RuntimeError("DataParallel: the model's parameters changed since it was made; make a new one")
            for p, q in zip(self.params, params):
                q.data, q.requires_grad, q.grad = p.data, p.requires_grad, None
            for a, b in zip(self.model.modules(), m.modules()):
                b.__class__, b.training = a.__class__, a.training

    def _weights(self, targets: np.ndarray, parts: list[tuple[int, int]]) -> list[float]:
        """w_i for each part [a, z) of the batch, such that sum_i w_i * (part i's loss) is the whole batch's loss."""
        ### BEGIN SOLUTION
        if self.reduction == "sum":
            return [1.0] * len(parts)
        counted = np.ones(targets.shape, bool) if self.ignore_index is None else targets != self.ignore_index
        counts = [int(np.count_nonzero(counted[a:z])) for a, z in parts]
        return [c / sum(counts) for c in counts]
        ### END SOLUTION

    def _add_grads(self) -> None:
        """Move each copy's parameter gradients into the model's `.grad` (adding where there is one)."""
        ### BEGIN SOLUTION
        for _, _, params in self.copies:
            for p, q in zip(self.params, params):
                g, q.grad = q.grad, None                         # the copy keeps nothing
                if g is None:
                    continue
                if p.grad is None:
                    p.grad = g                                   # the copy's array is its own: hand it over
                else:
                    np.add(p.grad.data, g.data, out=p.grad.data)
        ### END SOLUTION

    def _plan(self, x: Any, targets: Any) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]], list[float]]:
        """(x, targets) as arrays, the parts [a, z) of the batch and their weights; ValueError if they do not fit."""
        xs = x.data if isinstance(x, Tensor) else np.asarray(x)
        ts = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
        if xs.ndim == 0 or ts.ndim == 0 or len(xs) != len(ts) or len(ts) == 0:
            raise ValueError(f"{type(self).__name__}: x and targets need the same non-empty first axis (the batch), "
                             f"got shapes {xs.shape} and {ts.shape}")
        if self.ignore_index is not None and self.reduction == "mean" and not np.any(ts != self.ignore_index):
            raise ValueError(f"{type(self).__name__}: every target equals ignore_index={self.ignore_index}: "
                             f"the mean is undefined")
        parts = _cuts(len(ts), self.threads)
        return xs, ts, parts, self._weights(ts, parts)

    def backward(self, x: Any, targets: Any) -> float:
        """Forward and backward of loss_fn(model(x), targets) in parts (the first axis of x and
        targets); adds into the parameters' `.grad` like `loss.backward()`. Returns the loss."""
        xs, ts, parts, weights = self._plan(x, targets)
        self._sync()
        runs = [(self.model, self.loss_fn)] + [(m, lf) for m, lf, _ in self.copies]

        def run(i: int) -> float:
            (a, z), w = parts[i], weights[i]
            return _part_backward(*runs[i], xs[a:z], ts[a:z], w)
        live = [i for i in range(len(parts)) if weights[i] != 0]   # a part with nothing counted adds nothing
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)                   # hand Python's lock over sooner while parts run
        futures = [_pool(self.threads - 1).submit(run, i) for i in live if i > 0]
        try:
            total = run(0) if 0 in live else 0.0               # the first part on this thread
        finally:
            wait(futures)                                        # every part is done before anything else
            sys.setswitchinterval(switch)
        total += sum(f.result() for f in futures)                # (raises a part's error, if any)
        self._add_grads()
        return total

# %% nbgrader={"grade": true, "grade_id": "test-data-parallel", "locked": true, "points": 3, "schema_version": 3, "solution": false}
def dp_reference(model, loss_fn, x, y):
    """The whole batch in one piece: (loss, gradients)."""
    model.zero_grad()
    loss = loss_fn(model(Tensor(x, dtype=x.dtype)), y)
    loss.backward()
    return loss.item(), [p.grad.data.copy() for p in model.parameters()]


rng = np.random.default_rng(18)
net = Sequential(Dense(4, 8, dtype=np.float64, rng=rng), ReLU(), Dense(8, 3, dtype=np.float64, rng=rng))
x = rng.standard_normal((7, 4))
for threads in (1, 2, 3, 9):                                     # 9 > the batch: one row per part
    for loss_fn, y in [(CrossEntropyLoss(), rng.integers(0, 3, 7)), (CrossEntropyLoss(reduction="sum"), rng.integers(0, 3, 7)),
                       (CrossEntropyLoss(ignore_index=-1), np.array([-1, -1, -1, 2, 0, 1, -1]))]:
        ref_loss, ref_grads = dp_reference(net, loss_fn, x, y)
        dp = DataParallel(net, loss_fn, threads=threads)
        net.zero_grad()
        assert np.isclose(dp.backward(x, y), ref_loss, rtol=1e-12), (threads, loss_fn)
        for g, r in zip([p.grad.data for p in net.parameters()], ref_grads):
            assert np.allclose(g, r, rtol=1e-10, atol=1e-12), (threads, loss_fn)
dp = DataParallel(net, CrossEntropyLoss(), threads=2)
y = rng.integers(0, 3, 7)
for p in net.parameters():
    p.data -= 0.1 * p.data                                       # an in-place update reaches every copy
ref_loss, ref_grads = dp_reference(net, CrossEntropyLoss(), x, y)
net.zero_grad()
dp.backward(x, y)
dp.backward(x, y)                                                # gradients add up, like loss.backward()
for g, r in zip([p.grad.data for p in net.parameters()], ref_grads):
    assert np.allclose(g, 2 * r, rtol=1e-10, atol=1e-12)
for bad in [lambda: DataParallel(net, CrossEntropyLoss(reduction="none")), lambda: DataParallel(net, CrossEntropyLoss(), 0),
            lambda: dp.backward(x, y[:5])]:
    try:
        bad()
        raise AssertionError("expected a ValueError")
    except ValueError:
        pass
print("DataParallel: the parts' weighted gradients == the whole batch's, for mean, sum and ignore_index: OK")

# %% [markdown]
# ### Processes instead of threads: `ProcessDataParallel`
#
# Threads share one interpreter lock. Between numpy's kernels each part runs Python (the
# ops' bookkeeping, the engine), and a part that finishes a kernel waits for the lock while
# the other part holds it. When a part's kernels are long (TinyGPT's products) the waits
# hide behind them; when they are short (LeNet-5's, a few hundred microseconds each) the two
# parts take nearly twice as long side by side as one alone. Processes have an interpreter
# each. `ProcessDataParallel` runs the parts after the first in **worker processes** forked
# from this one, each with its own copy of the model, and talks to them over pipes:
#
# * **weights** live in shared memory: the model's parameter arrays are moved into
#   anonymous shared mappings before the fork, so the optimizer's in-place update in this
#   process is what every worker computes with (no copying per step);
# * **gradients** come back through shared buffers, one per parameter and worker, which this
#   process adds into the model's `.grad` after the parts are done;
# * a part's inputs go through a shared buffer of `INPUT_BYTES` per worker (larger ones
#   through the pipe); its weight (`_weights`, as above) and the modules' `training` flags go
#   over the pipe; its loss, or its error, comes back;
# * a process that waits for a message **polls its pipe for `SPIN_S` seconds** before it
#   sleeps in the kernel: a worker that has just sent its part back gets the next one
#   within a training loop's pause without being woken, which costs about 0.1 ms per
#   message on this (virtual) machine, twice per step. A longer pause costs at most
#   `SPIN_S` of a spinning core.
#
# It needs the `fork` start method (Linux, macOS; not Windows) and a model that is not
# changed in structure after it is made. A worker keeps the number of BLAS threads this
# process had when it was forked: with two parts on two cores, make it with one. Call
# `close()` (or use `with`) to stop the workers; they also stop when this process ends.

# %%
#| export
def _shared_array(a: np.ndarray) -> np.ndarray:
    """A copy of `a` in anonymous shared memory (MAP_SHARED): processes forked later see its
    changes and it sees theirs."""
    buf = mmap.mmap(-1, max(1, a.nbytes))
    out = np.frombuffer(buf, dtype=a.dtype, count=a.size).reshape(a.shape)
    out[...] = a
    return out


#: bytes of shared memory per worker for a part's inputs (larger parts go through the pipe)
INPUT_BYTES = 16 << 20
#: seconds a process waiting for a message polls its pipe before it sleeps
SPIN_S = 0.005


def _receive(conn: Any) -> Any:
    """conn.recv(), after polling the pipe for up to SPIN_S seconds (no sleep, no wake-up to pay)."""
    end = time.perf_counter() + SPIN_S
    while not conn.poll(0) and time.perf_counter() < end:
        pass
    return conn.recv()


def _put_inputs(buf: np.ndarray, x: np.ndarray, targets: np.ndarray) -> tuple:
    """Copy a part's inputs into the shared uint8 `buf` when they fit: ("shared", layouts);
    else ("sent", x, targets), to go through the pipe."""
    x, targets = np.ascontiguousarray(x), np.ascontiguousarray(targets)
    if x.dtype.hasobject or targets.dtype.hasobject or x.nbytes + targets.nbytes > buf.size:
        return ("sent", x, targets)
    buf[:x.nbytes] = x.reshape(-1).view(np.uint8)
    buf[x.nbytes:x.nbytes + targets.nbytes] = targets.reshape(-1).view(np.uint8)
    return ("shared", x.shape, x.dtype.str, targets.shape, targets.dtype.str)


def _get_inputs(buf: np.ndarray, sent: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The worker's side of `_put_inputs`: views of the shared buffer, or what was sent."""
    if sent[0] == "sent":
        return sent[1], sent[2]
    _, x_shape, x_dtype, t_shape, t_dtype = sent
    x = np.frombuffer(buf, dtype=x_dtype, count=math.prod(x_shape)).reshape(x_shape)
    offset = x.nbytes
    return x, np.frombuffer(buf, dtype=t_dtype, count=math.prod(t_shape), offset=offset).reshape(t_shape)


def _serve_parts(model: Module, loss_fn: Any, grads: list[np.ndarray], inputs: np.ndarray, conn: Any) -> None:
    """A worker process's loop: for each (inputs, weight, training flags, requires_grad flags)
    received, run the part and write its parameter gradients into `grads`; reply ("ok",
    weighted loss, which gradients came) or ("error", type name, message)."""
    params, modules = model.parameters(), model.modules()
    while True:
        try:
            job = _receive(conn)
        except EOFError:                                         # the parent is gone
            return
        if job is None:
            return
        sent, weight, training, need = job
        try:
            x, targets = _get_inputs(inputs, sent)
            for m, flag in zip(modules, training):
                m.training = flag
            for p, flag in zip(params, need):
                p.grad, p.requires_grad = None, flag
            loss = _part_backward(model, loss_fn, x, targets, weight)
            for g, p in zip(grads, params):
                if p.grad is not None:
                    g[...] = p.grad.data
            conn.send(("ok", loss, [p.grad is not None for p in params]))
        except Exception as err:                                 # reported to the parent, which raises it
            conn.send(("error", type(err).__name__, str(err)))


def _stop_workers(workers: list[tuple[Any, Any]]) -> None:
    for proc, conn in workers:
        try:
            conn.send(None)
            conn.close()
        except OSError:
            pass
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()


class ProcessDataParallel(DataParallel):
    """DataParallel whose parts after the first run in `processes - 1` worker processes forked
    from this one (no shared interpreter lock), the model's parameters moved into shared
    memory first. Same `backward(x, targets)`; `close()` stops the workers. Needs fork. The
    workers keep the BLAS thread count this process has when they are made (one BLAS
    thread per part is what fills the cores without oversubscribing them)."""

    def __init__(self, model: Module, loss_fn: Any, processes: int = 2):
        if "fork" not in multiprocessing.get_all_start_methods():
            raise RuntimeError("ProcessDataParallel: needs the 'fork' start method (Linux, macOS); "
                               "use DataParallel (threads) here")
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 1:
            raise ValueError(f"ProcessDataParallel: processes must be a positive int, got {processes!r}")
        super().__init__(model, loss_fn, threads=1)              # checks; no thread copies
        self.threads = int(processes)                            # the number of parts
        for p in self.params:
            p.data = _shared_array(p.data)                       # the workers will see every update
        self.shared = [p.data for p in self.params]
        ctx, self.workers = multiprocessing.get_context("fork"), []
        for _ in range(self.threads - 1):
            grads = [_shared_array(np.zeros_like(p.data)) for p in self.params]
            inputs = _shared_array(np.zeros(INPUT_BYTES, dtype=np.uint8))
            conn, child = ctx.Pipe()
            proc = ctx.Process(target=_serve_parts, args=(model, loss_fn, grads, inputs, child), daemon=True)
            proc.start()
            child.close()
            self.workers.append((proc, conn, grads, inputs))
        self._finalizer = weakref.finalize(self, _stop_workers, [(proc, conn) for proc, conn, _, _ in self.workers])

    def close(self) -> None:
        """Stop the worker processes (also done when this object is collected or the process ends)."""
        self._finalizer()

    def __enter__(self) -> ProcessDataParallel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _sync(self) -> None:
        """Put any parameter array rebound since (load_state_dict, a new array) back into shared memory."""
        for i, p in enumerate(self.params):
            if p.data is not self.shared[i]:
                if p.data.shape != self.shared[i].shape or p.data.dtype != self.shared[i].dtype:
                    raise RuntimeError("ProcessDataParallel: a parameter changed shape or dtype; make a new one")
                self.shared[i][...] = p.data
                p.data = self.shared[i]

    def backward(self, x: Any, targets: Any) -> float:
        """Forward and backward of loss_fn(model(x), targets) in parts, the first here and the
        others in the workers; adds into the parameters' `.grad`. Returns the loss."""
        if not self._finalizer.alive:
            raise RuntimeError("ProcessDataParallel: closed")
        xs, ts, parts, weights = self._plan(x, targets)
        self._sync()
        training, need = [m.training for m in self.model.modules()], [p.requires_grad for p in self.params]
        sent = []
        for i in range(1, len(parts)):
            if weights[i] != 0:                                  # a part with nothing counted adds nothing
                (a, z), (_, conn, grads, inputs) = parts[i], self.workers[i - 1]
                conn.send((_put_inputs(inputs, xs[a:z], ts[a:z]), weights[i], training, need))
                sent.append((conn, grads))
        try:
            (a, z) = parts[0]
            total = _part_backward(self.model, self.loss_fn, xs[a:z], ts[a:z], weights[0]) if weights[0] else 0.0
        finally:
            replies = [(_receive(conn), grads) for conn, grads in sent]   # every part is done before anything else
        for reply, grads in replies:
            if reply[0] == "error":
                kind = getattr(builtins, reply[1], None)
                raise (kind if isinstance(kind, type) and issubclass(kind, Exception) else RuntimeError)(
                    f"{reply[2]} (in a ProcessDataParallel worker)")
        for reply, grads in replies:
            total += reply[1]
            for p, g, came in zip(self.params, grads, reply[2]):
                if not came:
                    continue
                if p.grad is None:
                    p.grad = Tensor._wrap(g.copy())
                else:
                    np.add(p.grad.data, g, out=p.grad.data)
        return total

# %% [markdown]
# ## 9. float32 vs float64
#
# A float32 number is 4 bytes, a float64 one 8. Half the bytes means half the memory
# traffic for elementwise kernels (which are memory-bound) and twice as many numbers per
# SIMD register for BLAS (which is compute-bound). Both should run about twice as fast in
# float32, which is why `DEFAULT_FLOAT` (module 01) is float32 and why every module keeps
# float32 float32 (a Python float constant does; a numpy float64 scalar would not).
# Gradient checks use float64 because finite differences need the precision; training
# does not.

# %%
rng = np.random.default_rng(15)
a64, b64 = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))
a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
v64 = rng.standard_normal(1 << 20)
v32 = v64.astype(np.float32)
for name, f32, f64 in [("matmul 512", lambda: a32 @ b32, lambda: a64 @ b64),
                       ("exp, 1M numbers", lambda: np.exp(v32), lambda: np.exp(v64)),
                       ("x * y + x, 1M numbers", lambda: v32 * v32 + v32, lambda: v64 * v64 + v64)]:
    t32, t64 = best_ms(f32, 5), best_ms(f64, 5)
    print(f"{name:>22}: float32 {t32:.2f} ms, float64 {t64:.2f} ms ({t64 / t32:.2f}x)")
    speedups[f"dtype: float32 vs float64, {name}"] = t64 / t32

# %% [markdown]
# ## 10. What the framework uses, and what each buys
#
# | kernel | used where | status |
# |---|---|---|
# | BLAS matmul | every `@`: `Dense` (03), attention scores and values (11), TinyGPT (16); conv (09) ends in it | used |
# | row-major traversal, strided views | im2col's `sliding_window_view` (09), pooling windows (09), `split_heads` (11) | used |
# | im2col convolution | `Conv2d` (09) | used |
# | fused LayerNorm | `LayerNorm` (10), twice per TinyGPT block | used |
# | in-place Adam/AdamW | `FusedAdam`, `FusedAdamW` (this module): the milestones and benchmarks opt in | used |
# | kept freed memory (`tune_allocator`) | the milestones and benchmarks opt in | used |
# | float32 everywhere | `DEFAULT_FLOAT` (01) | used |
# | fused scale + mask + softmax | `ScaledMaskedSoftmax` (11), every attention | used (it halves the memory attention keeps for backward; the speed hardly changes) |
# | fused softmax-cross-entropy | module 04's `CrossEntropyLoss` is composed; TinyGPT's `LanguageModelLoss` uses it | **available, not adopted** |
# | fused GELU | module 02's `GELU` allocates about nine temporaries; TinyGPT's feed-forward uses it | **available, not adopted** |
# | one op per layer: `fast_model` (section 7) | Dense, causal attention, GELU, cross-entropy, Conv2d + ReLU, tiled max-pool | **opt-in**: `benchmarks/bench_vs_torch.py` measures it against PyTorch; the milestones keep the plain layers |
# | data parallelism over cores: `DataParallel`, `ProcessDataParallel` (section 8) | any model whose loss reduces by mean or sum | **opt-in**: `bench_vs_torch.py`'s two-thread steps (processes); the milestones train on one thread of Python |
#
# Why the last two are not adopted: TinyGPT is meant to train with the *same*
# `CrossEntropyLoss` and activations that trained the MLP, and swapping them in buys little
# at its size. `benchmarks/bench_kernels.py` measures a whole TinyGPT training step both
# ways: at most about 1.05x faster with the fused loss and GELU together (see
# `results/bench_report/bench_kernels.json`); the matrix products take most of the step.
# A kernel that is 2x faster on its own pays off only in proportion to its share of the
# whole.
#
# Fusing *every* layer is another matter: `fast_model` removes most of the step's nodes,
# temporaries and broadcasting reductions at once, which brings TinyGPT's and LeNet-5's
# one-thread steps to about PyTorch's time or under it, and with data parallelism their
# two-core steps too (measured side by side: `tito bench --only vs_torch`; with threads,
# LeNet-5's small parts wait for each other's interpreter lock, which is why the benchmark
# uses `ProcessDataParallel`). They stay opt-ins because their float results differ from
# the plain layers' in the last bits (a different order of the same sums), and the
# milestones are reproduced bit for bit.
#
# The speed-ups measured in this notebook (ratios of times, reference over fast kernel):

# %%
for name, ratio in speedups.items():
    print(f"{name:<55} {ratio:10.1f}x")

# %% [markdown]
# ## Systems thinking
#
# 1. **Arithmetic intensity.** A 512 x 512 float32 matmul does $2 \cdot 512^3$ FLOPs on
#    $3 \cdot 512^2 \cdot 4$ bytes of operands; `np.exp` on 1M float32 numbers does roughly
#    20 FLOPs per number on 8 bytes read and written. Compute FLOPs per byte for both. From
#    your measurements in sections 1 and 9, which one is limited by memory bandwidth and
#    which by arithmetic? Why did float32 help one more than the other?
# 2. **Memory of the column matrix.** For LeNet-5's second convolution (section 3), how many
#    bytes does im2col's column matrix take at batch 64, and how many does `conv2d_shifted`
#    allocate at once? When would you prefer the shifted version (think of 1 x 1 kernels,
#    of large images, of the backward pass)?
# 3. **What fusion saves.** Count the `(R, C)`-sized arrays allocated by module 04's
#    `CrossEntropyLoss` forward and backward (follow `log_softmax`, the one-hot, the product
#    and their backward rules in module 05) and by `SoftmaxCrossEntropyFunction`. Does the
#    measured speed-up follow the ratio of the counts? What else does the composed version
#    pay for?
# 4. **In place and autograd.** `FusedGELUFunction.backward` writes into its own
#    temporaries but never into `self.t` or `self.x`. Show with the code what would go wrong
#    if it computed $1 - t^2$ in `self.t` directly, and with `x *= ...` on the input inside
#    `forward`.
# 5. **Bit-for-bit equality.** The in-place Adam equals the allocating one exactly, but the
#    fused GELU's *gradient* only agrees with module 05's to about 1e-6. Why can reordering
#    floating-point operations change the last bits, and why is exact equality still a
#    useful test where it holds?
