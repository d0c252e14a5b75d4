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
# # Module 14: Benchmarking
#
# **Where you are.** You have a framework that trains MLPs and CNNs on CIFAR-10 (modules
# 01-10) and has every piece of a transformer (module 11). Module 16 will train a GPT with
# it. Before you make anything faster you need to know *how fast it is*, *how fast it
# could be*, and *where the time goes*. A speed-up you cannot measure reliably is a rumour.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `benchmark`, `Measurement`, `compare` | repeat a call after a warm-up; median, spread (min, max, p10/p90, IQR), throughput; A/B comparison. The clock is a parameter |
# | `peak_memory`, `resident_memory` | the most memory a call allocated (tracemalloc sees numpy's arrays); the process's resident set |
# | `flops_matmul`, `flops_dense`, `flops_conv2d`, `flops_attention` | FLOP counts from shapes (a multiply-add is 2 FLOPs) |
# | `count_flops`, `FlopCount` | walk a model's modules during one forward pass: FLOPs per layer, per forward, per training step |
# | `matmul_peak`, `memory_bandwidth`, `blas_threads`, `machine_info` | what this machine can do at best, measured |
# | `time_matmuls`, `step_report`, `roofline`, `plot_roofline` | lower bounds for a step and how far a measurement is from them |
# | `OpProfiler` | a context manager that times the forward and backward of every op of a training step, per op type |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/bench/benchmarking.py`. The project's own benchmark scripts (`benchmarks/`)
# and `tito bench` use it.
#
# **The one idea of this module.** A time means nothing alone. Report every measurement
# as a **ratio to a bound**: the time numpy's matrix multiply would need for the step's
# FLOPs at the best speed this machine reaches. "The step takes 58 ms" says little;
# "the step takes 2.3x the time of its matrix products alone" says how much there is left
# to win, and the profiler says where.
#
# **Points: 18** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-13 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp bench.benchmarking

# %%
#| export
"""Benchmarking: timing statistics, peak memory, FLOP counts, the machine's matmul peak,
lower bounds for a training step, a roofline, and a per-op profiler.

Module 14 of TinyTorch (generated from modules/14_benchmarking/benchmarking_dev.py; do not edit).

Conventions: times in seconds unless a name ends in `_ms`; a multiply-add counts as 2
FLOPs; only the products (matmul, convolution, attention scores) are counted, since the
elementwise work is memory bound and small in FLOPs; a training step is 3x the forward.
"""
from __future__ import annotations

import ctypes
import io
import math
import os
import platform
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from tinytorch.core.tensor import Autograd, Function
from tinytorch.core.layers import Dense, Module
from tinytorch.core.autograd import no_grad
from tinytorch.core.spatial import Conv2d
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.training import in_notebook, write_atomically

Clock = Callable[[], float]

# %% [markdown]
# ## 1. Timing a call: warm-up, repeats, and statistics that survive noise
#
# Time one call of a function with `time.perf_counter()` before and after, and you get a
# number that changes every time you run it. Three reasons:
#
# * **The first calls are slow.** Caches are cold, numpy allocates its first buffers,
#   OpenBLAS starts its threads, the allocator grows the heap. These **warm-up** calls
#   are run and thrown away.
# * **The machine is shared.** Another process takes a core, the CPU changes its clock
#   speed. These disturbances only ever make a call *slower*, so the distribution of times
#   has a long right tail. Its **median** ignores the tail; its mean does not.
# * **Timers have a resolution.** A call of a few microseconds must be repeated many
#   times; `min_time` keeps calling until the measured calls add up to at least that long.
#
# Given sorted samples $s_0 \le \dots \le s_{n-1}$, the $q$-th **percentile** interpolates
# between the two samples around rank $r = \frac{q}{100}(n - 1)$:
#
# $$P_q = s_{\lfloor r \rfloor} + (r - \lfloor r \rfloor)\,(s_{\lceil r \rceil} - s_{\lfloor r \rfloor}),$$
#
# (numpy's default `np.percentile`). The median is $P_{50}$; the spread is reported as
# min and max, $P_{10}$ and $P_{90}$, and the **interquartile range** $\text{IQR} = P_{75} - P_{25}$,
# the width of the middle half. **Throughput** is work per second: items per call (images,
# tokens) over the median time.
#
# The clock is a parameter, `clock=time.perf_counter` by default, so that a test can pass a
# fake clock whose "times" it chose and check every statistic exactly.

# %% nbgrader={"grade": false, "grade_id": "timing", "locked": false, "schema_version": 3, "solution": true}
#| export
def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `samples`, interpolating linearly between the
    two nearest order statistics (numpy's default method)."""
    if not len(samples):
        raise ValueError("percentile: no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile: q must be in [0, 100], got {q}")
    s = sorted(samples)
    ### BEGIN SOLUTION
    rank = q / 100 * (len(s) - 1)
    lo, hi = math.floor(rank), math.ceil(rank)
    return float(s[lo] + (rank - lo) * (s[hi] - s[lo]))
    ### END SOLUTION


@dataclass(frozen=True)
class Measurement:
    """The wall times (seconds) of repeated calls of one function, in call order.

    `items` is the work one call does (images, tokens), for `throughput`; `warmup` the
    number of calls run before timing and not in `samples`.
    """
    samples: tuple[float, ...]
    warmup: int = 0
    items: float | None = None
    name: str = ""

    @property
    def runs(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return percentile(self.samples, 50)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def p10(self) -> float:
        return percentile(self.samples, 10)

    @property
    def p90(self) -> float:
        return percentile(self.samples, 90)

    @property
    def iqr(self) -> float:
        """Interquartile range: P75 - P25, the width of the middle half of the samples."""
        return percentile(self.samples, 75) - percentile(self.samples, 25)

    @property
    def throughput(self) -> float | None:
        """Items per second at the median time; None when `items` was not given."""
        return None if self.items is None else self.items / self.median

    def summary(self) -> dict[str, Any]:
        """The statistics as a JSON-ready dict (seconds)."""
        return {"name": self.name, "runs": self.runs, "warmup": self.warmup, "median_s": self.median,
                "mean_s": self.mean, "min_s": self.min, "max_s": self.max, "p10_s": self.p10,
                "p90_s": self.p90, "iqr_s": self.iqr, "items": self.items, "items_per_s": self.throughput}

    def __str__(self) -> str:
        rate = "" if self.throughput is None else f", {self.throughput:,.0f} items/s"
        return (f"{self.name or 'call'}: median {self.median * 1e3:.3f} ms (min {self.min * 1e3:.3f}, "
                f"p90 {self.p90 * 1e3:.3f}, IQR {self.iqr * 1e3:.3f} ms; {self.runs} runs{rate})")


def benchmark(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 20, min_time: float = 0.0,
              max_repeats: int = 100_000, items: float | None = None, clock: Clock = time.perf_counter,
              name: str | None = None) -> Measurement:
    """Call `fn()` `warmup` times untimed, then time calls until there are at least `repeats`
    samples and they add up to at least `min_time` seconds (never more than `max_repeats`)."""
    if warmup < 0 or repeats < 1 or min_time < 0 or max_repeats < repeats:
        raise ValueError(f"benchmark: need warmup >= 0, repeats >= 1, min_time >= 0 and max_repeats >= "
                         f"repeats; got warmup={warmup}, repeats={repeats}, min_time={min_time}, "
                         f"max_repeats={max_repeats}")
    if items is not None and items <= 0:
        raise ValueError(f"benchmark: items (work per call) must be positive, got {items}")
    ### BEGIN SOLUTION
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    total = 0.0
    while len(samples) < max_repeats and (len(samples) < repeats or total < min_time):
        start = clock()
        fn()
        elapsed = clock() - start
        samples.append(elapsed)
        total += elapsed
    ### END SOLUTION
    return Measurement(tuple(samples), warmup, items, name if name is not None else getattr(fn, "__name__", ""))


@dataclass(frozen=True)
class Comparison:
    """Two functions timed alternately; `ratio` = candidate median / baseline median."""
    baseline: Measurement
    candidate: Measurement

    @property
    def ratio(self) -> float:
        return self.candidate.median / self.baseline.median

    def __str__(self) -> str:
        return (f"{self.candidate.name or 'candidate'} {self.candidate.median * 1e3:.3f} ms vs "
                f"{self.baseline.name or 'baseline'} {self.baseline.median * 1e3:.3f} ms: {self.ratio:.2f}x")


def compare(baseline: Callable[[], Any], candidate: Callable[[], Any], *, warmup: int = 3, repeats: int = 20,
            clock: Clock = time.perf_counter) -> Comparison:
    """Time two functions alternately (A B A B ...), so that a slow drift of the machine's
    speed (another process, the CPU's clock) hits both alike."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"compare: need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        baseline()
        candidate()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        for fn, samples in ((baseline, a), (candidate, b)):
            start = clock()
            fn()
            samples.append(clock() - start)
    return Comparison(Measurement(tuple(a), warmup, name=getattr(baseline, "__name__", "baseline")),
                      Measurement(tuple(b), warmup, name=getattr(candidate, "__name__", "candidate")))

# %% nbgrader={"grade": true, "grade_id": "test-timing", "locked": true, "points": 3, "schema_version": 3, "solution": false}
class FakeClock:
    """A clock that advances only when the function under test says so."""
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


clock = FakeClock()
durations = iter([9.0, 9.0, 0.004, 0.001, 0.003, 0.002, 0.010])   # two warm-up calls, then five
calls = []


def work() -> None:
    calls.append(1)
    clock.now += next(durations)


m = benchmark(work, warmup=2, repeats=5, items=32, clock=clock)
assert len(calls) == 7 and m.runs == 5 and m.warmup == 2
assert np.allclose(m.samples, [0.004, 0.001, 0.003, 0.002, 0.010])   # the 9 s warm-up calls are not counted
assert math.isclose(m.median, 0.003) and math.isclose(m.min, 0.001) and math.isclose(m.max, 0.010)
assert math.isclose(m.p90, np.percentile(m.samples, 90)) and math.isclose(m.iqr, 0.004 - 0.002)
assert math.isclose(m.throughput, 32 / 0.003)
assert math.isclose(percentile([1.0, 2.0, 4.0, 8.0], 50), 3.0) and percentile([5.0], 90) == 5.0
# min_time: keep going until the timed calls add up to 1 s (0.3 s each: 4 calls)
clock2 = FakeClock()
m2 = benchmark(lambda: setattr(clock2, "now", clock2.now + 0.3), warmup=0, repeats=1, min_time=1.0, clock=clock2)
assert m2.runs == 4
print(m)
print("timing: OK")

# %% [markdown]
# A real measurement: a 256 x 256 matrix product. The throughput is in products per second.

# %%
a256 = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
print(benchmark(lambda: a256 @ a256, warmup=3, repeats=30, items=1, name="matmul 256"))

# %% [markdown]
# ## 2. Memory: the peak of a call
#
# A training step allocates activations on the way forward, keeps them for backward, then
# frees them. What limits the batch size is the **peak**: the most memory alive at any
# moment of the call. Python's `tracemalloc` records every allocation made through
# Python's allocator, and numpy reports its array buffers to it, so
# `tracemalloc.get_traced_memory()` returns (current, peak) bytes including every ndarray.
# We measure the peak *above* what was allocated when the call started, and what the call
# left behind (its result, caches).
#
# tracemalloc sees Python and numpy, not what a C library allocates on its own (OpenBLAS's
# thread buffers) nor memory that the allocator keeps after a `free`. The operating
# system's view is the **resident set size** (RSS), the pages of the process actually in
# RAM; on Linux it is the second number of `/proc/self/statm`, in pages.

# %% nbgrader={"grade": false, "grade_id": "memory", "locked": false, "schema_version": 3, "solution": true}
#| export
@dataclass(frozen=True)
class MemoryUse:
    """Bytes allocated by one call (Python objects and numpy arrays, via tracemalloc):
    `peak_bytes` at its worst moment, `retained_bytes` still allocated when it returned
    (its result included)."""
    peak_bytes: int
    retained_bytes: int

    def __str__(self) -> str:
        return f"peak {self.peak_bytes / 2**20:.2f} MiB, retained {self.retained_bytes / 2**20:.2f} MiB"


def peak_memory(fn: Callable[[], Any]) -> MemoryUse:
    """Run `fn()` once and measure the memory it allocated above what was allocated before.

    Works whether or not tracemalloc is already tracing (then it is left tracing)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        ### BEGIN SOLUTION
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = fn()
        after, peak = tracemalloc.get_traced_memory()
        del result
        ### END SOLUTION
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return MemoryUse(peak - before, after - before)


def resident_memory() -> int | None:
    """The resident set size of this process in bytes (Linux: /proc/self/statm); None on
    systems without /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")

# %% nbgrader={"grade": true, "grade_id": "test-memory", "locked": true, "points": 2, "schema_version": 3, "solution": false}
n = 1_000_000
use = peak_memory(lambda: np.ones(n, dtype=np.float64).sum())        # 8 MB allocated, then freed
assert use.peak_bytes >= 8 * n, use
assert use.retained_bytes < 8 * n // 10, use                          # nothing of it is kept
kept = []
use2 = peak_memory(lambda: kept.append(np.zeros((500, 1000), dtype=np.float32)))   # 2 MB kept
assert use2.retained_bytes >= 2_000_000 and use2.peak_bytes >= 2_000_000
assert not tracemalloc.is_tracing()                                   # left as found
rss = resident_memory()
assert rss is None or rss > 2_000_000
print(use, "|", use2, "| resident", None if rss is None else f"{rss / 2**20:.0f} MiB")
print("memory: OK")

# %% [markdown]
# ## 3. Counting FLOPs
#
# A **FLOP** is one floating-point operation. A product $C = AB$ of an $(m, k)$ by a
# $(k, n)$ matrix computes $mn$ outputs, each a sum of $k$ products: $mnk$
# **multiply-adds**, which we count as **2 FLOPs each**:
#
# $$\text{FLOPs}(C = AB) = 2\,m\,k\,n.$$
#
# | layer | shapes | forward FLOPs |
# |---|---|---|
# | `Dense(in, out)` | `(N, in) -> (N, out)`; any leading axes count as rows, e.g. `N = B*T` | $2\,N\cdot\text{in}\cdot\text{out}$ |
# | `Conv2d(C_in, C_out, k)` | `(N, C_in, H, W) -> (N, C_out, H', W')` | $2\,N\,C_\text{out}H'W' \cdot C_\text{in}k_h k_w$ (each output is a dot product over a $C_\text{in} \times k_h \times k_w$ window) |
# | attention core | $Q (B, T_q, d)$, $K, V (B, T_k, d)$ in heads of $d/h$ | scores $QK^\top$: $2BT_qT_k d$; weights times $V$: $2BT_qT_k d$ |
# | `MultiHeadAttention` | + four `Dense(d, d)` projections | $4BT_qT_kd + 2(2B T_q + 2B T_k)\,d^2$ |
#
# Note that the number of heads does not appear: $h$ heads of width $d/h$ do the same
# arithmetic as one head of width $d$. Bias additions, activations, softmax and
# normalisation are left out: they are a few FLOPs per activation, memory bound, and
# counted in time by the profiler of section 6 instead.
#
# **Backward.** For every forward product $Y = AB$, backward computes $\partial A = G B^\top$
# and $\partial B = A^\top G$, two products of the same size. So a **training step costs
# 3x the forward FLOPs** (a little less when the input needs no gradient: the first
# layer's $\partial A$ is skipped).

# %% nbgrader={"grade": false, "grade_id": "flops", "locked": false, "schema_version": 3, "solution": true}
#| export
def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_positive(who: str, **sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if int(v) < 1}
    if bad:
        raise ValueError(f"{who}: sizes must be positive integers, got {bad}")


def flops_matmul(m: int, k: int, n: int, batch: int = 1) -> int:
    """FLOPs of `batch` products (m, k) @ (k, n): 2*batch*m*k*n."""
    _check_positive("flops_matmul", m=m, k=k, n=n, batch=batch)
    ### BEGIN SOLUTION
    return 2 * int(batch) * int(m) * int(k) * int(n)
    ### END SOLUTION


def flops_dense(batch: int, in_features: int, out_features: int) -> int:
    """Forward FLOPs of Dense(in_features, out_features) on `batch` rows (N, in) -> (N, out)."""
    _check_positive("flops_dense", batch=batch, in_features=in_features, out_features=out_features)
    ### BEGIN SOLUTION
    return flops_matmul(batch, in_features, out_features)
    ### END SOLUTION


def conv2d_output_size(height: int, width: int, kernel_size: int | tuple[int, int],
                       stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0) -> tuple[int, int]:
    """(H_out, W_out) of a convolution: (H + 2*padding - kernel) // stride + 1 per axis."""
    (kh, kw), (sh, sw), (ph, pw) = (_pair(kernel_size, "kernel_size"), _pair(stride, "stride"),
                                    _pair(padding, "padding"))
    h_out, w_out = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"conv2d: a {kh}x{kw} kernel with padding {(ph, pw)} does not fit a "
                         f"{height}x{width} input")
    return h_out, w_out


def flops_conv2d(batch: int, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 height: int, width: int, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0) -> int:
    """Forward FLOPs of Conv2d on (batch, in_channels, height, width) -> (batch, out_channels, H', W')."""
    _check_positive("flops_conv2d", batch=batch, in_channels=in_channels, out_channels=out_channels,
                    height=height, width=width)
    kh, kw = _pair(kernel_size, "kernel_size")
    h_out, w_out = conv2d_output_size(height, width, kernel_size, stride, padding)
    ### BEGIN SOLUTION
    return flops_matmul(out_channels, in_channels * kh * kw, h_out * w_out, batch=batch)
    ### END SOLUTION


def flops_attention(batch: int, seq_len: int, d_model: int, num_heads: int, kv_len: int | None = None,
                    projections: bool = True) -> int:
    """Forward FLOPs of multi-head attention: queries (B, seq_len, d_model) over kv_len keys
    (default seq_len). With `projections`, the four Dense(d_model, d_model) are included."""
    kv_len = seq_len if kv_len is None else kv_len
    _check_positive("flops_attention", batch=batch, seq_len=seq_len, d_model=d_model, num_heads=num_heads,
                    kv_len=kv_len)
    if d_model % num_heads:
        raise ValueError(f"flops_attention: d_model={d_model} is not divisible by num_heads={num_heads}")
    ### BEGIN SOLUTION
    core = 2 * flops_matmul(seq_len, d_model, kv_len, batch=batch)     # Q @ K.T, then weights @ V
    if not projections:
        return core
    return core + 2 * flops_dense(batch * seq_len, d_model, d_model) + 2 * flops_dense(batch * kv_len, d_model, d_model)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-flops", "locked": true, "points": 3, "schema_version": 3, "solution": false}
assert flops_matmul(2, 3, 4) == 48 and flops_matmul(2, 3, 4, batch=5) == 240
assert flops_dense(8, 3, 2) == 2 * 8 * 3 * 2 == 96
# one 3x3 kernel over a 4x4 image, no padding: 2x2 outputs, each 3*3*2 = 18 multiply-adds, for 5 filters
assert conv2d_output_size(4, 4, 3) == (2, 2) and conv2d_output_size(32, 32, 5, padding=2) == (32, 32)
assert flops_conv2d(1, 2, 5, 3, 4, 4) == 2 * (2 * 2) * 5 * (2 * 3 * 3) == 720
assert flops_conv2d(3, 1, 1, (1, 2), 3, 3, stride=(1, 1)) == 2 * 3 * (3 * 2) * 2
# attention: B=1, T=2, d=4: scores 2*2*2*4 = 32, weights@V 32, projections 4 * 2*2*4*4 = 256
assert flops_attention(1, 2, 4, 2, projections=False) == 64
assert flops_attention(1, 2, 4, 2) == 64 + 256 == flops_attention(1, 2, 4, 4)   # heads do not matter
assert flops_attention(2, 3, 4, 1, kv_len=5, projections=False) == 2 * (2 * 2 * 3 * 4 * 5)
for bad in (lambda: flops_dense(0, 3, 2), lambda: flops_attention(1, 2, 6, 4), lambda: conv2d_output_size(2, 2, 3)):
    try:
        bad()
    except ValueError as err:
        print("refused:", err)
    else:
        raise AssertionError("bad sizes were accepted")
print("flops: OK")

# %% [markdown]
# ## 4. FLOPs of a whole model
#
# The formulas need the shapes each layer actually sees, and those depend on the input:
# a `Dense` inside attention sees `(B, T, C)`, a `Dense` after `Flatten` sees `(N, 400)`.
# Instead of re-deriving every shape, `count_flops` **runs one forward pass** and looks:
#
# 1. Walk the model's modules (`named_children`, recursively) and find every `Dense`,
#    `Conv2d` and `MultiHeadAttention` with its dotted name (`blocks.0.attention.q_proj`).
# 2. For the duration of the pass, give each of them an instance attribute `forward` that
#    records the input shape and then calls the real method. (`Module.__call__` calls
#    `self.forward`, and an instance attribute shadows the class's method.)
# 3. Run `model(*inputs)` under `no_grad()` in evaluation mode (Dropout draws no random
#    numbers, so the model's random state is untouched), then remove the attributes and
#    restore each module's training flag, whatever happened.
#
# `MultiHeadAttention` counts only its attention core; its four projections are `Dense`
# layers and count themselves. Every counted layer also lists its products as
# `(batch, m, k, n)`, which section 5 times one by one.

# %% nbgrader={"grade": false, "grade_id": "count-flops", "locked": false, "schema_version": 3, "solution": true}
#| export
MatmulShape = tuple[int, int, int, int]           # (batch, m, k, n): batch products (m, k) @ (k, n)


@dataclass(frozen=True)
class LayerFlops:
    """One call of a counted layer: its dotted name, class, input shape, forward FLOPs and products."""
    name: str
    kind: str
    input_shape: tuple[int, ...]
    flops: int
    matmuls: tuple[MatmulShape, ...]


@dataclass(frozen=True)
class FlopCount:
    """The FLOPs of one forward pass, per layer call; a training step counts 3x."""
    layers: tuple[LayerFlops, ...]

    @property
    def forward(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def training_step(self) -> int:
        """Forward + backward: every product Y = A @ B has two backward products of its size."""
        return 3 * self.forward

    def matmuls(self, training: bool = False) -> list[MatmulShape]:
        """The products of the forward pass; with `training`, also G @ B.T and A.T @ G of each."""
        out: list[MatmulShape] = []
        for layer in self.layers:
            for b, m, k, n in layer.matmuls:
                out.append((b, m, k, n))
                if training:
                    out += [(b, m, n, k), (b, k, m, n)]     # (m, n) @ (n, k) and (k, m) @ (m, n)
        return out

    def by_kind(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for layer in self.layers:
            totals[layer.kind] = totals.get(layer.kind, 0) + layer.flops
        return totals

    def table(self) -> str:
        lines = [f"{'layer':36s} {'kind':20s} {'input shape':>18s} {'MFLOP':>10s}"]
        for layer in self.layers:
            lines.append(f"{layer.name[:36]:36s} {layer.kind:20s} {str(layer.input_shape):>18s} "
                         f"{layer.flops / 1e6:10.3f}")
        lines.append(f"{'forward':36s} {'':20s} {'':>18s} {self.forward / 1e6:10.3f}")
        lines.append(f"{'training step (3x forward)':36s} {'':20s} {'':>18s} {self.training_step / 1e6:10.3f}")
        return "\n".join(lines)


def _layer_flops(layer: Any, args: tuple, kwargs: dict) -> tuple[int, tuple[MatmulShape, ...]]:
    """Forward FLOPs and products of one call of a Dense, Conv2d or MultiHeadAttention."""
    shape = tuple(np.shape(getattr(args[0], "data", args[0])))
    if isinstance(layer, Dense):
        rows = math.prod(shape[:-1])                              # (..., in) -> (rows, in)
        ### BEGIN SOLUTION
        return (flops_dense(rows, layer.in_features, layer.out_features),
                ((1, rows, layer.in_features, layer.out_features),))
        ### END SOLUTION
    if isinstance(layer, Conv2d):
        N, _, H, W = shape
        kh, kw = layer.kernel_size
        h_out, w_out = conv2d_output_size(H, W, layer.kernel_size, layer.stride, layer.padding)
        K = layer.in_channels * kh * kw
        ### BEGIN SOLUTION
        flops = flops_conv2d(N, layer.in_channels, layer.out_channels, layer.kernel_size, H, W,
                             layer.stride, layer.padding)
        return flops, ((1, layer.out_channels, K, N * h_out * w_out),)   # im2col: one GEMM for the batch
        ### END SOLUTION
    if isinstance(layer, MultiHeadAttention):
        if kwargs.get("cache") is not None:
            raise ValueError("count_flops: a forward pass with a KV cache runs the projections outside "
                             "their Dense layers; count a pass without the cache")
        B, Tq, C = shape
        key = args[1] if len(args) > 1 and args[1] is not None else kwargs.get("key")
        Tk = Tq if key is None else np.shape(getattr(key, "data", key))[1]
        bh, hs = B * layer.num_heads, layer.head_dim
        ### BEGIN SOLUTION
        return (flops_attention(B, Tq, C, layer.num_heads, kv_len=Tk, projections=False),
                ((bh, Tq, hs, Tk), (bh, Tq, Tk, hs)))                # Q @ K.T, weights @ V
        ### END SOLUTION
    raise TypeError(f"count_flops: no FLOP formula for {type(layer).__name__}")


def _named_modules(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = [(prefix, model)]
    if isinstance(model, Module):
        for name, child in model.named_children():
            out += _named_modules(child, f"{prefix}.{name}" if prefix else name)
    return out


def count_flops(model: Any, *inputs: Any, **kwargs: Any) -> FlopCount:
    """FLOPs of `model(*inputs, **kwargs)`, counted per call of every Dense, Conv2d and
    MultiHeadAttention in the model (one forward pass, under no_grad, in evaluation mode)."""
    counted = [(name or type(m).__name__, m) for name, m in _named_modules(model)
               if isinstance(m, (Dense, Conv2d, MultiHeadAttention))]
    if not counted:
        raise ValueError(f"count_flops: {type(model).__name__} contains no Dense, Conv2d or "
                         f"MultiHeadAttention layer; nothing to count")
    modes = [(m, m.training) for _, m in _named_modules(model) if isinstance(m, Module)]
    records: list[LayerFlops] = []

    def recording(name: str, layer: Any) -> Callable:
        real = layer.forward                                      # the bound class method

        def forward(*args: Any, **kw: Any) -> Any:
            slot = len(records)                                   # parents before their children
            records.append(None)
            out = real(*args, **kw)                               # the layer checks its input first
            flops, matmuls = _layer_flops(layer, args, kw)
            shape = tuple(np.shape(getattr(args[0], "data", args[0])))
            records[slot] = LayerFlops(name, type(layer).__name__, shape, flops, matmuls)
            return out
        return forward

    patched = []
    try:
        for name, layer in counted:
            if "forward" in vars(layer):
                raise RuntimeError(f"count_flops: {name} already has an instance attribute 'forward'")
            layer.forward = recording(name, layer)
            patched.append(layer)
        for m, _ in modes:
            m.training = False
        with no_grad():
            model(*inputs, **kwargs)
    finally:
        for layer in patched:
            del layer.forward
        for m, mode in modes:
            m.training = mode
    return FlopCount(tuple(records))

# %% nbgrader={"grade": true, "grade_id": "test-count-flops", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dropout, Flatten, Sequential
from tinytorch.core.tensor import Tensor

rng = np.random.default_rng(0)
mlp = Sequential(Dense(12, 8, rng=rng), ReLU(), Dropout(0.5), Dense(8, 3, rng=rng))
count = count_flops(mlp, Tensor(np.ones((5, 12), np.float32)))
assert [layer.name for layer in count.layers] == ["layers.0", "layers.3"]
assert count.forward == 2 * 5 * 12 * 8 + 2 * 5 * 8 * 3 == 1200 and count.training_step == 3600
assert count.matmuls() == [(1, 5, 12, 8), (1, 5, 8, 3)]
assert sum(flops_matmul(m, k, n, b) for b, m, k, n in count.matmuls(training=True)) == count.training_step
assert mlp.training and "forward" not in vars(mlp.layers[0])          # restored
cnn = Sequential(Conv2d(3, 4, 3, padding=1, rng=rng), Flatten(), Dense(4 * 6 * 6, 2, rng=rng))
c2 = count_flops(cnn, Tensor(np.zeros((2, 3, 6, 6), np.float32)))
assert c2.forward == flops_conv2d(2, 3, 4, 3, 6, 6, padding=1) + flops_dense(2, 144, 2)
attn = MultiHeadAttention(8, 2, rng=rng)
c3 = count_flops(attn, Tensor(np.zeros((2, 5, 8), np.float32)))
assert c3.forward == flops_attention(2, 5, 8, 2) and len(c3.layers) == 5
print(count.table())
print("count_flops: OK")

# %% [markdown]
# ## 5. What the machine can do: peak, bandwidth, lower bounds, roofline
#
# **Matmul peak.** The fastest thing numpy does is a large matrix product: OpenBLAS keeps
# the CPU's vector units busy from its caches. Time `np.matmul` of two $n \times n$ float32
# matrices (best of a few runs, into a preallocated output) and divide $2n^3$ by the time:
# that is this machine's practical **peak** in GFLOP/s, for the BLAS threads it runs with.
# OpenBLAS threads can be set while the process runs (`blas_threads`, `set_blas_threads`),
# so we can measure the single-thread and the multi-thread peak.
#
# **The numpy FLOP lower bound** of a step with $F$ product FLOPs is $F / \text{peak}$: no
# numpy program computes those products faster. A tighter (larger) bound **times exactly
# the step's products**, each alone at its own shape (`time_matmuls`): small or thin
# products never reach the peak. A measured step is then reported as a **ratio** to a
# bound: 1.0 would be perfect, and the ratio says how much time goes elsewhere (memory-bound
# elementwise ops, Python overhead, the optimizer).
#
# **Roofline.** A computation that does $F$ FLOPs while moving $M$ bytes between memory and
# the CPU has **arithmetic intensity** $I = F/M$ FLOP/byte. It cannot run faster than the
# peak, nor than the memory can feed it:
#
# $$\text{attainable GFLOP/s} = \min(\text{peak},\; I \times \text{bandwidth}).$$
#
# An elementwise add of float32 arrays does 1 FLOP per 12 bytes ($I = 1/12$): memory bound.
# A product of $n \times n$ matrices moves $3 \cdot 4n^2$ bytes for $2n^3$ FLOPs
# ($I = n/6$): compute bound for large $n$. The bandwidth is measured by copying a large
# array (each byte is read once and written once).

# %% nbgrader={"grade": false, "grade_id": "bounds", "locked": false, "schema_version": 3, "solution": true}
#| export
#: OpenBLAS's thread functions under the names of its builds (numpy's wheels use scipy_openblas64_).
_BLAS_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
             "openblas_get_num_threads64_", "openblas_get_num_threads")
_BLAS_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
             "openblas_set_num_threads64_", "openblas_set_num_threads")
_BLAS_CONFIG = ("scipy_openblas_get_config64_", "scipy_openblas_get_config", "openblas_get_config64_",
                "openblas_get_config")
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _blas_function(names: Sequence[str]) -> Any:
    """The first of `names` found in an OpenBLAS library mapped into this process, or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in names:
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def blas_threads() -> int | None:
    """How many threads numpy's OpenBLAS uses now; None when it cannot be asked (another BLAS)."""
    getter = _blas_function(_BLAS_GET)
    return None if getter is None else int(getter())


def set_blas_threads(n: int) -> int:
    """Make OpenBLAS use `n` threads from now on; returns the previous count."""
    if int(n) < 1:
        raise ValueError(f"set_blas_threads: need at least 1 thread, got {n}")
    setter, previous = _blas_function(_BLAS_SET), blas_threads()
    if setter is None or previous is None:
        raise RuntimeError("set_blas_threads: numpy's BLAS is not an OpenBLAS reachable from this process; "
                           "set OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) before starting Python instead")
    setter(int(n))
    return previous


def machine_info() -> dict[str, Any]:
    """What a measurement was taken on: Python, numpy, CPUs, BLAS library and threads, load."""
    config = _blas_function(_BLAS_CONFIG)
    if config is not None:
        config.restype = ctypes.c_char_p
    return {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "blas": config().decode(errors="replace") if config is not None else "not OpenBLAS (unknown)",
            "blas_threads": blas_threads(),
            "blas_threads_env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    return benchmark(fn, warmup=1, repeats=repeats).min


def matmul_peak(size: int = 1024, repeats: int = 5, dtype: Any = np.float32, threads: int | None = None) -> float:
    """GFLOP/s of np.matmul on two (size, size) matrices, best of `repeats`. `threads`: the
    OpenBLAS threads to measure with (set for the measurement, then restored)."""
    _check_positive("matmul_peak", size=size, repeats=repeats)
    previous = set_blas_threads(threads) if threads is not None else None
    try:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
        out = np.empty((size, size), dtype=dtype)
        ### BEGIN SOLUTION
        seconds = _best_time(lambda: np.matmul(a, b, out=out), repeats)
        return flops_matmul(size, size, size) / seconds / 1e9
        ### END SOLUTION
    finally:
        if previous is not None:
            set_blas_threads(previous)


def memory_bandwidth(mib: int = 64, repeats: int = 5) -> float:
    """GB/s of copying a `mib` MiB array into another (bytes read + bytes written), best of `repeats`."""
    _check_positive("memory_bandwidth", mib=mib, repeats=repeats)
    src = np.ones(mib * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    seconds = _best_time(lambda: np.copyto(dst, src), repeats)
    return 2 * src.nbytes / seconds / 1e9


def time_matmuls(shapes: Sequence[MatmulShape], repeats: int = 5, dtype: Any = np.float32) -> float:
    """Seconds numpy needs for all of `shapes` (batch, m, k, n), each distinct shape timed alone
    (best of `repeats`, into a preallocated output) and counted as often as it appears."""
    rng = np.random.default_rng(0)
    best: dict[MatmulShape, float] = {}
    for shape in shapes:
        if shape in best:
            continue
        b, m, k, n = shape
        _check_positive("time_matmuls", batch=b, m=m, k=k, n=n)
        lead = () if b == 1 else (b,)
        x = rng.standard_normal(lead + (m, k)).astype(dtype)
        w = rng.standard_normal(lead + (k, n)).astype(dtype)
        out = np.empty(lead + (m, n), dtype=dtype)
        best[shape] = _best_time(lambda: np.matmul(x, w, out=out), repeats)
    return sum(best[shape] for shape in shapes)


def flop_bound_seconds(flops: float, peak_gflops: float) -> float:
    """The least time `flops` can take at `peak_gflops`."""
    if peak_gflops <= 0:
        raise ValueError(f"flop_bound_seconds: peak must be positive, got {peak_gflops} GFLOP/s")
    ### BEGIN SOLUTION
    return flops / (peak_gflops * 1e9)
    ### END SOLUTION


@dataclass(frozen=True)
class StepReport:
    """A measured time set against the bounds for its FLOPs (all times in seconds)."""
    seconds: float
    flops: float
    peak_gflops: float
    matmul_seconds: float | None = None        # the step's products timed alone, if measured

    @property
    def achieved_gflops(self) -> float:
        return self.flops / self.seconds / 1e9

    @property
    def fraction_of_peak(self) -> float:
        return self.achieved_gflops / self.peak_gflops

    @property
    def bound_seconds(self) -> float:
        return flop_bound_seconds(self.flops, self.peak_gflops)

    @property
    def ratio_to_bound(self) -> float:
        """How many times the numpy FLOP lower bound the measurement took (1/fraction_of_peak)."""
        return self.seconds / self.bound_seconds

    @property
    def ratio_to_matmuls(self) -> float | None:
        return None if self.matmul_seconds is None else self.seconds / self.matmul_seconds

    def summary(self) -> dict[str, Any]:
        return {"ms": self.seconds * 1e3, "flops": self.flops, "peak_gflops": self.peak_gflops,
                "achieved_gflops": self.achieved_gflops, "fraction_of_peak": self.fraction_of_peak,
                "bound_ms": self.bound_seconds * 1e3, "ratio_to_bound": self.ratio_to_bound,
                "matmuls_ms": None if self.matmul_seconds is None else self.matmul_seconds * 1e3,
                "ratio_to_matmuls": self.ratio_to_matmuls}


def step_report(seconds: float, flops: float, peak_gflops: float, matmul_seconds: float | None = None) -> StepReport:
    """Compare a measured time with the FLOP bound at `peak_gflops` (and the timed products)."""
    if seconds <= 0 or flops <= 0:
        raise ValueError(f"step_report: seconds and flops must be positive, got {seconds}, {flops}")
    return StepReport(seconds, flops, peak_gflops, matmul_seconds)


@dataclass(frozen=True)
class RooflinePoint:
    """One kernel on the roofline: its FLOPs, bytes moved, and measured seconds."""
    label: str
    flops: float
    bytes_moved: float
    seconds: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes_moved

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9


def attainable_gflops(intensity: float, peak_gflops: float, bandwidth_gbs: float) -> float:
    """The roofline: min(peak, intensity * bandwidth)."""
    ### BEGIN SOLUTION
    return min(peak_gflops, intensity * bandwidth_gbs)
    ### END SOLUTION


def roofline(flops: float, bytes_moved: float, seconds: float, label: str = "") -> RooflinePoint:
    if min(flops, bytes_moved, seconds) <= 0:
        raise ValueError(f"roofline: flops, bytes and seconds must be positive, got {flops}, {bytes_moved}, {seconds}")
    return RooflinePoint(label, flops, bytes_moved, seconds)


def matmul_roofline_point(shape: MatmulShape, seconds: float, itemsize: int = 4) -> RooflinePoint:
    """A product (batch, m, k, n) on the roofline: reads A and B and writes C once."""
    b, m, k, n = shape
    return roofline(flops_matmul(m, k, n, b), itemsize * b * (m * k + k * n + m * n), seconds,
                    f"{'' if b == 1 else f'{b}x'}({m},{k})@({k},{n})")


def _show_or_save(fig: Any, path: str | os.PathLike | None) -> None:
    if path is not None:                                           # atomic: never a half-written plot
        fmt = Path(path).suffix.lstrip(".") or "png"
        write_atomically(path, lambda f: fig.savefig(f, dpi=100, format=fmt))
    if in_notebook():
        from IPython.display import Image, display
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        display(Image(data=buf.getvalue()))


def plot_roofline(points: Sequence[RooflinePoint], peak_gflops: float, bandwidth_gbs: float,
                  path: str | os.PathLike | None = None, title: str = "roofline") -> Any:
    """Log-log roofline: the attainable line and each point's measured GFLOP/s. Saves a PNG at
    `path` when given; shown inline in a notebook. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    lo = min([p.intensity for p in points] + [0.05]) / 2
    hi = max([p.intensity for p in points] + [4 * peak_gflops / bandwidth_gbs]) * 2
    xs = np.geomspace(lo, hi, 200)
    ax.loglog(xs, [attainable_gflops(x, peak_gflops, bandwidth_gbs) for x in xs], "k-",
              label=f"min({peak_gflops:.0f} GFLOP/s, I x {bandwidth_gbs:.1f} GB/s)")
    for p in points:
        ax.loglog([p.intensity], [p.gflops], "o", label=p.label if len(points) <= 12 else None)
        if len(points) <= 8:
            ax.annotate(p.label, (p.intensity, p.gflops), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=7)
    _show_or_save(fig, path)
    return fig

# %% nbgrader={"grade": true, "grade_id": "test-bounds", "locked": true, "points": 3, "schema_version": 3, "solution": false}
assert flop_bound_seconds(2e9, 100.0) == 0.02
report = step_report(0.05, 2e9, 100.0, matmul_seconds=0.025)
assert math.isclose(report.achieved_gflops, 40.0) and math.isclose(report.fraction_of_peak, 0.4)
assert math.isclose(report.ratio_to_bound, 2.5) and math.isclose(report.ratio_to_matmuls, 2.0)
assert attainable_gflops(0.1, 100.0, 20.0) == 2.0 and attainable_gflops(50.0, 100.0, 20.0) == 100.0
point = matmul_roofline_point((1, 64, 64, 64), 1e-4)
assert point.flops == 2 * 64 ** 3 and point.bytes_moved == 4 * 3 * 64 * 64
assert math.isclose(point.intensity, 64 / 6)
peak = matmul_peak(256, repeats=3)
assert 0.1 < peak < 1e5, peak                         # a real, finite measurement in GFLOP/s
assert time_matmuls([(1, 32, 32, 32)] * 3, repeats=2) > 0
info = machine_info()
assert {"numpy", "cpus", "blas", "blas_threads", "load_average"} <= set(info)
print(f"matmul peak (256, {info['blas_threads']} BLAS threads): {peak:.1f} GFLOP/s; {info['blas']}")
print("bounds: OK")

# %% [markdown]
# The peak of this machine, single- and multi-threaded, and its copy bandwidth. (On a
# shared machine these numbers move: record them next to every result, as `tito bench`
# does.)

# %%
threads = blas_threads()
peak_all = matmul_peak(512, repeats=5)
peak_one = matmul_peak(512, repeats=5, threads=1) if threads is not None else float("nan")
bandwidth = memory_bandwidth(32, repeats=3)
print(f"matmul 512: {peak_all:.1f} GFLOP/s with {threads} BLAS threads, {peak_one:.1f} with 1; "
      f"copy bandwidth {bandwidth:.1f} GB/s")
points = []
for n in (16, 64, 256, 512):
    x = np.ones((n, n), np.float32)
    points.append(matmul_roofline_point((1, n, n, n), benchmark(lambda: x @ x, repeats=5).min))
add = np.ones(2**20, np.float32)
points.append(roofline(add.size, 3 * add.nbytes, benchmark(lambda: add + add, repeats=5).min, "add 1M"))
fig = plot_roofline(points, peak_all, bandwidth, title="numpy on this machine")

# %% [markdown]
# ## 6. Where does the time go? A per-op profiler
#
# A step can be 3x its bound, but which ops are guilty? Every op of the framework runs
# through two doors, both in module 01:
#
# * **forward**: `Function.apply` (a classmethod) creates the op object, calls `forward`
#   on the arrays and records the graph;
# * **backward**: the engine of module 05 (`Autograd.engine`) calls `fn.backward(grad)`
#   for every node. `Function.backward` looks up the rule that module 05 registered;
#   ops after module 05 (`Conv2dFunction`, `LayerNormFunction`, ...) override `backward`.
#
# `OpProfiler` is a context manager. On entry it **replaces those methods** with timing
# wrappers: `apply` on `Function` and every `backward` defined by `Function` or one of its
# subclasses, and `Autograd.engine` (for the whole backward pass). On exit it puts the
# originals back, also when the step raised an exception. Nothing in modules 01-05
# changes; the profiler only borrows their doors for a while.
#
# Ops can call ops (a backward rule may apply another op), so each wrapper measures its
# **self time**: its elapsed time minus the time of the wrapped calls nested inside it (a
# stack of frames). The rows add up to the time spent in ops; the report adds the
# autograd engine's own work (ordering the graph, summing gradients) and everything else
# in the step (Python glue, the optimizer).

# %% nbgrader={"grade": false, "grade_id": "profiler", "locked": false, "schema_version": 3, "solution": true}
#| export
@dataclass
class OpStat:
    """Calls and self time (seconds) of one op type, forward and backward."""
    name: str
    forward_calls: int = 0
    forward_s: float = 0.0
    backward_calls: int = 0
    backward_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s


def _function_classes() -> list[type]:
    """Function and every subclass defined so far."""
    seen: list[type] = []
    stack = [Function]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return seen


class OpProfiler:
    """Times every op's forward (`Function.apply`) and backward while active, per op type.

        with OpProfiler() as prof:
            loss = loss_fn(model(x), y); loss.backward(); optimizer.step()
        print(prof.table())

    Only one profiler can be active at a time, timing the ops of the thread that entered it
    (an op on another thread is an error); the patched methods are restored on exit.
    """
    _active: ClassVar[OpProfiler | None] = None

    def __init__(self, clock: Clock = time.perf_counter):
        self.clock = clock
        self.stats: dict[str, OpStat] = {}
        self.wall_s = 0.0                 # from __enter__ to __exit__
        self.engine_s = 0.0               # inside Autograd.engine (whole backward passes)
        self._stack: list[list[Any]] = []  # frames: [child seconds, object being timed]
        self._saved: list[tuple[Any, str, Any]] = []
        self._start = 0.0
        self._thread = threading.get_ident()

    # ---- the timing core ------------------------------------------------------------------
    def _timed(self, name: str, phase: str, owner: Any, call: Callable[[], Any]) -> Any:
        """Run `call()`; add its self time to `stats[name]` under `phase` (forward/backward)."""
        if threading.get_ident() != self._thread:         # one stack, one clock: one thread
            raise RuntimeError(f"OpProfiler: {name} ran on another thread than the profiled one (module 13's "
                               f"DataParallel runs parts on threads); profile a step on one thread")
        if self._stack and self._stack[-1][1] is owner:   # the same op re-entered (super().backward)
            return call()
        ### BEGIN SOLUTION
        frame = [0.0, owner]
        self._stack.append(frame)
        start = self.clock()
        try:
            return call()
        finally:
            elapsed = self.clock() - start
            self._stack.pop()
            if self._stack:
                self._stack[-1][0] += elapsed               # the parent's self time excludes ours
            stat = self.stats.setdefault(name, OpStat(name))
            if phase == "forward":
                stat.forward_calls += 1
                stat.forward_s += elapsed - frame[0]
            else:
                stat.backward_calls += 1
                stat.backward_s += elapsed - frame[0]
        ### END SOLUTION

    def _wrap_apply(self, func: Callable) -> classmethod:
        def apply(cls: type, *inputs: Any, **params: Any) -> Any:
            return self._timed(cls.__name__, "forward", cls, lambda: func(cls, *inputs, **params))
        apply.__wrapped__ = func
        return classmethod(apply)

    def _wrap_backward(self, func: Callable) -> Callable:
        def backward(fn: Any, grad: Any) -> Any:
            return self._timed(type(fn).__name__, "backward", fn, lambda: func(fn, grad))
        backward.__wrapped__ = func
        return backward

    def _wrap_engine(self, engine: Callable) -> Callable:
        def timed_engine(*args: Any, **kwargs: Any) -> Any:
            start = self.clock()
            try:
                return engine(*args, **kwargs)
            finally:
                self.engine_s += self.clock() - start
        timed_engine.__wrapped__ = engine
        return timed_engine

    # ---- entering and leaving -------------------------------------------------------------
    def __enter__(self) -> OpProfiler:
        if OpProfiler._active is not None:
            raise RuntimeError("OpProfiler: another profiler is already active; profilers do not nest")
        try:
            for cls in _function_classes():
                own = vars(cls)
                if "apply" in own:
                    self._saved.append((cls, "apply", own["apply"]))
                    setattr(cls, "apply", self._wrap_apply(own["apply"].__func__))
                if "backward" in own:
                    self._saved.append((cls, "backward", own["backward"]))
                    setattr(cls, "backward", self._wrap_backward(own["backward"]))
            if Autograd.engine is not None:
                self._saved.append((Autograd, "engine", Autograd.engine))
                Autograd.engine = self._wrap_engine(Autograd.engine)
        except BaseException:
            self._restore()
            raise
        OpProfiler._active = self
        self._thread = threading.get_ident()               # the thread whose ops are timed
        self._start = self.clock()
        return self

    def _restore(self) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def __exit__(self, *exc: Any) -> None:
        self.wall_s += self.clock() - self._start
        self._restore()
        self._stack.clear()
        OpProfiler._active = None

    # ---- the report -----------------------------------------------------------------------
    def rows(self) -> list[OpStat]:
        """Op types by total self time, largest first."""
        return sorted(self.stats.values(), key=lambda s: s.total_s, reverse=True)

    @property
    def forward_s(self) -> float:
        return sum(s.forward_s for s in self.stats.values())

    @property
    def backward_s(self) -> float:
        return sum(s.backward_s for s in self.stats.values())

    @property
    def engine_overhead_s(self) -> float:
        """Time inside the backward engine but outside every op's backward."""
        return max(self.engine_s - self.backward_s, 0.0)

    @property
    def other_s(self) -> float:
        """Time in the profiled block outside ops and the engine (Python glue, the optimizer)."""
        return max(self.wall_s - self.forward_s - max(self.engine_s, self.backward_s), 0.0)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per op (calls, ms forward/backward, share of the wall time) and the rest."""
        wall = self.wall_s or float("nan")
        return {"wall_ms": self.wall_s * 1e3, "engine_overhead_ms": self.engine_overhead_s * 1e3,
                "other_ms": self.other_s * 1e3,
                "ops": [{"op": s.name, "forward_calls": s.forward_calls, "forward_ms": s.forward_s * 1e3,
                         "backward_calls": s.backward_calls, "backward_ms": s.backward_s * 1e3,
                         "share": s.total_s / wall} for s in self.rows()]}

    def table(self, top: int | None = None, steps: int = 1) -> str:
        """The per-op table; times divided by `steps` (ms per step)."""
        wall = self.wall_s or float("nan")
        lines = [f"{'op':24s} {'calls fwd':>9s} {'fwd ms':>9s} {'calls bwd':>9s} {'bwd ms':>9s} {'share':>7s}",
                 "-" * 72]
        for s in self.rows()[:top]:
            lines.append(f"{s.name[:24]:24s} {s.forward_calls / steps:9.0f} {s.forward_s * 1e3 / steps:9.3f} "
                         f"{s.backward_calls / steps:9.0f} {s.backward_s * 1e3 / steps:9.3f} "
                         f"{100 * s.total_s / wall:6.1f}%")
        for label, seconds in (("(autograd engine)", self.engine_overhead_s), ("(outside ops)", self.other_s)):
            lines.append(f"{label:24s} {'':9s} {'':9s} {'':9s} {seconds * 1e3 / steps:9.3f} {100 * seconds / wall:6.1f}%")
        lines.append(f"{'total (wall)':24s} {'':9s} {'':9s} {'':9s} {self.wall_s * 1e3 / steps:9.3f} {'100.0%':>7s}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None, top: int = 15, steps: int = 1,
             title: str = "time per op") -> Any:
        """Horizontal bars: forward and backward ms per op (per step). Saves a PNG at `path` when
        given; shown inline in a notebook. Returns the matplotlib Figure."""
        from matplotlib.figure import Figure

        rows = self.rows()[:top]
        names = [s.name for s in rows] + ["(autograd engine)", "(outside ops)"]
        fwd = [s.forward_s * 1e3 / steps for s in rows] + [0.0, self.other_s * 1e3 / steps]
        bwd = [s.backward_s * 1e3 / steps for s in rows] + [self.engine_overhead_s * 1e3 / steps, 0.0]
        fig = Figure(figsize=(7, 0.3 * len(names) + 1.5), layout="constrained")
        ax = fig.subplots()
        ys = np.arange(len(names))[::-1]
        ax.barh(ys, fwd, color="tab:blue", label="forward")
        ax.barh(ys, bwd, left=fwd, color="tab:orange", label="backward")
        ax.set_yticks(ys, names, fontsize=8)
        ax.set_xlabel("ms per step" if steps > 1 else "ms")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="best")
        _show_or_save(fig, path)
        return fig

# %% nbgrader={"grade": true, "grade_id": "test-profiler", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.tensor import MatMul

originals = (vars(Function)["apply"], vars(Function)["backward"], Autograd.engine)
net = Sequential(Dense(6, 5, rng=rng), ReLU(), Dense(5, 3, rng=rng))
x6, y6 = Tensor(rng.standard_normal((4, 6)).astype(np.float32)), np.array([0, 1, 2, 0])
with OpProfiler() as prof:
    loss = CrossEntropyLoss()(net(x6), y6)
    loss.backward()
assert prof.stats["MatMul"].forward_calls == 2 and prof.stats["MatMul"].backward_calls == 2
assert all(s.forward_s >= 0 and s.backward_s >= 0 for s in prof.stats.values())
assert prof.forward_s + prof.backward_s <= prof.wall_s + 1e-9 and prof.engine_s >= prof.backward_s
assert (vars(Function)["apply"], vars(Function)["backward"], Autograd.engine) == originals   # restored
try:
    with OpProfiler():
        MatMul.apply(x6, Tensor(np.ones((5, 2), np.float32)))                   # (4, 6) @ (5, 2): fails
except ValueError:
    pass
else:
    raise AssertionError("the shape error should reach the caller")
assert (vars(Function)["apply"], vars(Function)["backward"], Autograd.engine) == originals   # restored again
assert OpProfiler._active is None
print(prof.table())
print("profiler: OK")

# %% [markdown]
# ## 7. Putting it together: one MLP training step, measured against its bounds
#
# The CIFAR-10 MLP of the milestones (3072-512-256-10, batch 64) with Adam: time the step,
# count its FLOPs, set it against the machine's peak and against its own products timed
# alone, and profile it.

# %%
from tinytorch.core.optimizers import Adam

rng = np.random.default_rng(0)
model = Sequential(Dense(3072, 512, rng=rng), ReLU(), Dense(512, 256, rng=rng), ReLU(), Dense(256, 10, rng=rng))
xb = Tensor(rng.standard_normal((64, 3072)).astype(np.float32))
yb = rng.integers(0, 10, size=64)
opt, loss_fn = Adam(model.parameters(), lr=1e-3), CrossEntropyLoss()


def mlp_step() -> None:
    loss = loss_fn(model(xb), yb)
    opt.zero_grad()
    loss.backward()
    opt.step()


step = benchmark(mlp_step, warmup=3, repeats=20, items=64, name="MLP step")
flops = count_flops(model, xb)
matmuls_s = time_matmuls(flops.matmuls(training=True), repeats=5)
rep = step_report(step.median, flops.training_step, peak_all, matmul_seconds=matmuls_s)
print(step)
print(f"{flops.training_step / 1e9:.3f} GFLOP per step; {rep.achieved_gflops:.1f} GFLOP/s achieved "
      f"= {100 * rep.fraction_of_peak:.0f}% of the {peak_all:.0f} GFLOP/s peak")
print(f"step = {rep.ratio_to_bound:.2f}x the numpy FLOP bound ({rep.bound_seconds * 1e3:.2f} ms), "
      f"{rep.ratio_to_matmuls:.2f}x its products timed alone ({matmuls_s * 1e3:.2f} ms)")
print("peak memory of a step:", peak_memory(mlp_step))
with OpProfiler() as prof:
    for _ in range(5):
        mlp_step()
print(prof.table(steps=5))
fig = prof.plot(steps=5, title="MLP step, per op")

# %% [markdown]
# ## Systems thinking
#
# 1. **Median or minimum?** `benchmark` reports both. For comparing two versions of an op
#    on a busy machine, which one would you trust, and why does the minimum estimate "the
#    cost without interference" while the median estimates "what a user will see"? Try
#    `benchmark` on the 256 x 256 product while another process runs.
# 2. **Profiler overhead.** Each wrapped call costs two clock reads and a few Python
#    operations (about a microsecond). Count the ops of one TinyGPT step with `OpProfiler`
#    (`forward_calls` + `backward_calls`): what fraction of the step can the profiler
#    itself add? Which ops' numbers are least trustworthy?
# 3. **Which bound?** For the MLP step above, the FLOP bound at peak and the timed
#    products differ. Which products of the step are far from the peak (look at
#    `flops.matmuls(training=True)` and place them on the roofline), and why are thin
#    products like (64, 3072) @ (3072, 512) slower per FLOP than a square one?
# 4. **Memory peak.** Use `peak_memory` on the MLP step with batch 64 and 256. How does
#    the peak grow with the batch, and which arrays are alive at the peak (think of what
#    each op keeps for backward)?
# 5. **Threads.** Measure `matmul_peak(threads=1)` and with all threads, then the MLP step
#    under `set_blas_threads(1)` and `set_blas_threads(2)`. The step gains less than the
#    peak does. Use the profiler's "(outside ops)" and elementwise rows to explain why.
