"""One LeNet-5 training step in TinyTorch, against a numpy GEMM-only lower bound (and PyTorch if installed).

    python benchmarks/bench_lenet5_step.py           # prints a table, writes results/bench_report/bench_lenet5_step.json
    python benchmarks/bench_lenet5_step.py --quick   # batch 8, few repeats (smoke test, writes nothing)

The model is LeNet-5 on 3x32x32 inputs: Conv2d(3, 6, 5) - ReLU - MaxPool2d(2) - Conv2d(6, 16, 5)
- ReLU - MaxPool2d(2) - Flatten - Dense(400, 120) - ReLU - Dense(120, 84) - ReLU - Dense(84, 10),
cross-entropy loss, batch 64, float32. One step is forward, backward and a plain SGD update
(module 06's `SGD`).

Reported:
* the median time of a step;
* a numpy-only lower bound: the step's matrix products (the convolutions' im2col GEMMs and
  the Dense layers' products, forward and backward, skipping the input's gradient) timed
  alone with numpy at exactly those shapes, each issued the faster of two ways (one GEMM
  over the whole batch, or one GEMM per image in a single stacked np.matmul). Their FLOPs
  divided by that time is the BLAS speed at these sizes; an implementation built on these
  products cannot beat the bound. Also FLOPs / the speed of a large square GEMM (the
  machine's best case);
* the peak memory of a step (tracemalloc, which sees numpy's allocations);
* PyTorch's time for the same model and step, if `torch` happens to be importable (it is
  never a dependency). Target: within 2.5x of PyTorch's ~6 ms.

BLAS threads: on a machine shared with other jobs, OpenBLAS's worker threads wait for busy
cores and small products slow down by 10x or more. The thread settings in the environment
are recorded with the results; compare runs with the same settings (OPENBLAS_NUM_THREADS=1
gives the most stable numbers on a busy machine).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import tracemalloc

import numpy as np

from common import table, time_it, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Flatten, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.spatial import Conv2d, MaxPool2d
from tinytorch.core.tensor import Tensor

LR = 0.01
TARGET_RATIO_TO_TORCH = 2.5
TORCH_REFERENCE_MS = 6.0


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def lenet5(rng: np.random.Generator) -> Sequential:
    return Sequential(
        Conv2d(3, 6, 5, rng=rng), ReLU(), MaxPool2d(2),               # (B, 6, 14, 14)
        Conv2d(6, 16, 5, rng=rng), ReLU(), MaxPool2d(2),              # (B, 16, 5, 5)
        Flatten(),                                                    # (B, 400)
        Dense(400, 120, rng=rng), ReLU(), Dense(120, 84, rng=rng), ReLU(), Dense(84, 10, rng=rng))


def make_sgd_step(params: list):
    """Module 06's SGD when it has been exported, else the same update in numpy."""
    if importlib.util.find_spec("tinytorch.core.optimizers") is not None:
        opt = importlib.import_module("tinytorch.core.optimizers").SGD(params, lr=LR)
        return opt.zero_grad, opt.step, "tinytorch SGD (module 06)"

    def zero_grad() -> None:
        for p in params:
            p.grad = None

    def step() -> None:
        for p in params:
            if p.grad is not None:
                p.data -= LR * p.grad.data
    return zero_grad, step, "numpy SGD"


def gemm_products(batch: int, rng: np.random.Generator) -> list[tuple[str, str, int, dict]]:
    """(name, shape, FLOPs, {strategy: thunk}) for every matrix product of one step.

    A convolution's product over M = N*L columns can be issued as one GEMM or as N per-image
    GEMMs in one stacked np.matmul call; both are timed and the faster one counts.
    """
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    products = []
    for name, c_in, c_out, k, hw_out, needs_dx in [("conv1", 3, 6, 5, 28, False), ("conv2", 6, 16, 5, 10, True)]:
        K, L = c_in * k * k, hw_out * hw_out
        M = batch * L
        w, cols, g = f32(c_out, K), f32(K, M), f32(c_out, M)
        cols_n, g_n = f32(batch, K, L), f32(batch, c_out, L)
        products.append((f"{name} forward", f"({c_out}, {K}) @ ({K}, {M})", 2 * c_out * K * M, {
            "one GEMM": lambda w=w, cols=cols: w @ cols,
            "per image": lambda w=w, c=cols_n: np.matmul(w, c)}))
        products.append((f"{name} dW", f"({K}, {M}) @ ({M}, {c_out})", 2 * c_out * K * M, {
            "one GEMM": lambda cols=cols, g=g: cols @ g.T,
            "per image": lambda c=cols_n, g=g_n: np.matmul(g, c.transpose(0, 2, 1)).sum(axis=0)}))
        if needs_dx:
            products.append((f"{name} dX", f"({K}, {c_out}) @ ({c_out}, {M})", 2 * c_out * K * M, {
                "one GEMM": lambda w=w, g=g: w.T @ g,
                "per image": lambda w=w, g=g_n: np.matmul(w.T, g)}))
    for name, fan_in, fan_out in [("dense1", 400, 120), ("dense2", 120, 84), ("dense3", 84, 10)]:
        x, w, g = f32(batch, fan_in), f32(fan_in, fan_out), f32(batch, fan_out)
        flops = 2 * batch * fan_in * fan_out
        products.append((f"{name} forward", f"({batch}, {fan_in}) @ ({fan_in}, {fan_out})", flops,
                         {"one GEMM": lambda x=x, w=w: x @ w}))
        products.append((f"{name} dW", f"({fan_in}, {batch}) @ ({batch}, {fan_out})", flops,
                         {"one GEMM": lambda x=x, g=g: x.T @ g}))
        products.append((f"{name} dX", f"({batch}, {fan_out}) @ ({fan_out}, {fan_in})", flops,
                         {"one GEMM": lambda g=g, w=w: g @ w.T}))
    return products


def gemm_lower_bound(batch: int, repeats: int) -> dict:
    """Time every matrix product of the step alone with numpy (float32), the faster strategy of each."""
    rng = np.random.default_rng(0)
    rows, total_s, total_flops = [], 0.0, 0
    for name, shape, flops, strategies in gemm_products(batch, rng):
        times = {k: time_it(fn, repeats=repeats)["median_s"] for k, fn in strategies.items()}
        best = min(times, key=times.get)
        rows.append({"gemm": name, "shape": shape, "ms": times[best] * 1e3, "strategy": best,
                     "ms_by_strategy": {k: t * 1e3 for k, t in times.items()},
                     "gflops_per_s": flops / times[best] / 1e9})
        total_s += times[best]
        total_flops += flops
    n_big = 1024
    a = rng.standard_normal((n_big, n_big)).astype(np.float32)
    t_big = time_it(lambda: a @ a, repeats=max(3, repeats // 4))["median_s"]
    peak = 2 * n_big ** 3 / t_big
    return {"gemms": rows, "flops": total_flops, "gemm_time_ms": total_s * 1e3,
            "gflops_per_s_at_these_sizes": total_flops / total_s / 1e9,
            "gflops_per_s_1024_square": peak / 1e9, "bound_at_peak_ms": total_flops / peak * 1e3}


def torch_step(batch: int):
    """One training step of the same LeNet-5 in PyTorch (CPU), as a function of no arguments
    (bench_vs_torch.py times it too). ImportError when torch is not importable."""
    import torch
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def torch_step_ms(batch: int, repeats: int) -> float | None:
    """Median ms of the same step in PyTorch (CPU), or None when torch is not installed."""
    if importlib.util.find_spec("torch") is None:
        return None
    return time_it(torch_step(batch), repeats=repeats)["median_s"] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="batch 8, few repeats (smoke test, writes nothing)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    args = parser.parse_args()
    batch, reps = (8, 3) if args.quick else (args.batch, args.repeats)

    rng = np.random.default_rng(0)
    model = lenet5(rng)
    x = Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = rng.integers(0, 10, size=batch)
    loss_fn = CrossEntropyLoss()
    zero_grad, update, optimizer_name = make_sgd_step(model.parameters())

    def tinytorch_step() -> float:
        loss = loss_fn(model(x), y)
        zero_grad()
        loss.backward()
        update()
        return loss.item()

    losses = [tinytorch_step() for _ in range(5)]                 # sanity: it learns this batch
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    step = time_it(tinytorch_step, repeats=reps)
    step_ms = step["median_s"] * 1e3

    tracemalloc.start()
    tinytorch_step()
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    bound = gemm_lower_bound(batch, reps)
    torch_ms = torch_step_ms(batch, reps)

    rows = [["TinyTorch step (median)", f"{step_ms:.2f} ms", f"min {step['min_s'] * 1e3:.2f} ms, {optimizer_name}"],
            ["numpy GEMMs of the step alone", f"{bound['gemm_time_ms']:.2f} ms",
             f"{bound['flops'] / 1e6:.0f} MFLOP at {bound['gflops_per_s_at_these_sizes']:.1f} GFLOP/s"],
            ["ratio to the GEMM lower bound", f"{step_ms / bound['gemm_time_ms']:.2f}x", ""],
            ["FLOPs / large-GEMM speed", f"{bound['bound_at_peak_ms']:.2f} ms",
             f"1024^3 GEMM at {bound['gflops_per_s_1024_square']:.1f} GFLOP/s"],
            ["peak memory of a step", f"{peak_bytes / 2**20:.1f} MiB", "tracemalloc"]]
    if torch_ms is None:
        rows.append(["PyTorch step", "not installed", f"target: within {TARGET_RATIO_TO_TORCH}x of ~{TORCH_REFERENCE_MS:.0f} ms"])
    else:
        rows.append(["PyTorch step (median)", f"{torch_ms:.2f} ms", f"ratio {step_ms / torch_ms:.2f}x "
                     f"(target {TARGET_RATIO_TO_TORCH}x)"])
    threads = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    print(f"LeNet-5 training step, batch {batch}, float32, {model.num_parameters()} parameters, "
          f"BLAS threads: {threads or 'library default'}")
    print(table(rows, ["what", "value", "notes"]))
    print()
    print(table([[g["gemm"], g["shape"], g["strategy"], f"{g['ms']:.3f}", f"{g['gflops_per_s']:.1f}",
                  ", ".join(f"{k} {v:.3f}" for k, v in g["ms_by_strategy"].items())] for g in bound["gemms"]],
                ["product", "shape", "faster", "ms", "GFLOP/s", "ms by strategy"]))

    if not args.quick or args.out:
        out = write_results("bench_lenet5_step", {
            "batch": batch, "optimizer": optimizer_name, "blas_thread_env": threads, "step_ms": step_ms, "step_min_ms": step["min_s"] * 1e3,
            "runs": step["runs"], "lower_bound": bound, "ratio_to_gemm_bound": step_ms / bound["gemm_time_ms"],
            "peak_memory_mib": peak_bytes / 2**20,
            "torch_ms": torch_ms if torch_ms is not None else "not installed",
            "ratio_to_torch": step_ms / torch_ms if torch_ms else None,
            "target": f"within {TARGET_RATIO_TO_TORCH}x of PyTorch (~{TORCH_REFERENCE_MS} ms)"}, args.out)
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
