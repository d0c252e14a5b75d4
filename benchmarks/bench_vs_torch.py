"""TinyTorch against PyTorch, side by side in one process: the TinyGPT and LeNet-5 training
steps with 1 and with 2 BLAS threads.

    python benchmarks/bench_vs_torch.py               # writes results/bench_report/bench_vs_torch.json
    python benchmarks/bench_vs_torch.py --quick       # small models, few rounds (smoke test, writes nothing)
    bin/tito bench --only vs_torch                    # the same, inside the suite's report

For each model and thread count, three steps are built on the same shapes:

* **plain**: TinyTorch as the milestones train it today (module 13's `FusedAdamW` for
  TinyGPT, module 06's `SGD` for LeNet-5, the plain layers);
* **fast**: the same model opted into module 13's `fast_model(model)` (one op per Dense
  layer, per causal attention, per GELU, per cross-entropy; for LeNet-5 also Conv2d + ReLU,
  convolved in cache-sized parts of the batch, and the tiled max-pool). With n > 1 threads
  the step also runs through module 13's `ProcessDataParallel(model, loss, processes=n)`:
  the batch is cut into n parts whose forward and backward run at once, the first in this
  process and the others in forked worker processes (each with its own copy of the model,
  the weights in shared memory, no shared interpreter lock), with numpy's BLAS on one
  thread per part (two layers of threads on two cores would wait for each other); where
  `fork` is missing, `DataParallel`'s n threads instead. The step uses n cores either way;
* **pytorch**: the same model and update in PyTorch's CPU build, only when `torch` is
  importable (it is never a dependency: `pip install -e ".[bench]"` adds it).

They are timed *alternately* (round r: a few steps of plain, then fast, then pytorch, each
step timed alone and the first of each block dropped as a warm-up), for many rounds, so
that the load of a shared machine hits them alike. Before each block the script waits
SETTLE seconds, untimed: the previous block's idle worker threads (OpenBLAS's spin for
about 0.1 s before sleeping) would otherwise hold a core during the next block's steps.
Reported per variant: the median step and its spread (25th-75th percentile, min-max); and
the ratio fast / pytorch as the ratio of medians and as the median of the per-round
ratios. numpy's OpenBLAS threads are set with module 14's `set_blas_threads`, PyTorch's
with `torch.set_num_threads`. The load average before and after is recorded: compare only
runs taken on an idle machine.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import os
import time

import numpy as np

from common import table, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.bench.benchmarking import blas_threads, percentile, set_blas_threads
from tinytorch.core.kernels import DataParallel, FusedAdamW, ProcessDataParallel, fast_model, tune_allocator
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import Tensor

import bench_lenet5_step
import bench_tinygpt

#: seconds before each timed block: the previous block's idle worker threads (OpenBLAS's spin
#: about 0.1 s before they sleep, PyTorch's OpenMP ones briefly) would otherwise take a core
SETTLE = 0.25
QUICK_GPT = dict(vocab_size=65, d_model=32, num_heads=4, num_layers=2, max_length=16, batch=4)


# ---- TinyTorch steps -------------------------------------------------------------------------------
def _step(model, loss_fn, opt, x: Tensor, y: np.ndarray, fast: bool, threads: int):
    """One training step: the plain model, or fast_model'd and, with threads > 1, in parts on
    that many worker processes (threads where fork is missing)."""
    if fast:
        fast_model(model)
        fast_model(loss_fn)
    dp = None
    if fast and threads > 1 and "fork" in multiprocessing.get_all_start_methods():
        previous = blas_threads()
        set_blas_threads(1)                  # a worker keeps the BLAS threads it is forked with: one per part
        try:
            dp = ProcessDataParallel(model, loss_fn, processes=threads)
        finally:
            set_blas_threads(previous)
    elif fast and threads > 1:
        dp = DataParallel(model, loss_fn, threads=threads)

    def step() -> None:
        opt.zero_grad()
        if dp is not None:
            dp.backward(x, y)
        else:
            loss_fn(model(x), y).backward()
        opt.step()
    return step


def tinygpt_step(cfg: dict, fast: bool, threads: int = 1):
    from tinytorch.tinygpt import LanguageModelLoss, TinyGPT
    model = TinyGPT(vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], num_heads=cfg["num_heads"],
                    num_layers=cfg["num_layers"], max_length=cfg["max_length"], rng=np.random.default_rng(0))
    window = np.random.default_rng(1).integers(0, cfg["vocab_size"], size=(cfg["batch"], cfg["max_length"] + 1))
    opt = FusedAdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return _step(model, LanguageModelLoss(), opt, Tensor(window[:, :-1]), window[:, 1:], fast, threads)


def lenet5_step(batch: int, fast: bool, threads: int = 1):
    rng = np.random.default_rng(0)
    model = bench_lenet5_step.lenet5(rng)
    x = Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = rng.integers(0, 10, size=batch)
    opt = SGD(model.parameters(), lr=bench_lenet5_step.LR)
    return _step(model, CrossEntropyLoss(), opt, x, y, fast, threads)


# ---- PyTorch steps (only when torch is importable) ---------------------------------------------------
def torch_tinygpt_step(cfg: dict):
    return bench_tinygpt.torch_step(cfg)             # the same PyTorch model as bench_tinygpt.py's


def torch_lenet5_step(batch: int):
    return bench_lenet5_step.torch_step(batch)       # the same PyTorch model as bench_lenet5_step.py's


# ---- the alternating measurement ------------------------------------------------------------------
def set_threads(n: int, have_torch: bool) -> None:
    set_blas_threads(n)
    if have_torch:
        import torch
        torch.set_num_threads(n)


def alternate(steps: dict, rounds: int, block: int, blas: dict | None = None, settle: float = 0.0) -> dict:
    """Time the steps in turn, `block` steps each per round (the first of a block is dropped).
    blas: {name: BLAS threads for that step's block} (set before its block, outside the timing).
    settle: seconds to wait before each block (outside the timing) for the previous block's
    idle worker threads to stop spinning (OpenBLAS's spin for about 0.1 s before they sleep)."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    default = blas_threads()
    for _ in range(rounds):
        for name, step in steps.items():
            set_blas_threads((blas or {}).get(name, default))
            time.sleep(settle)
            times = []
            for _ in range(block + 1):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            samples[name] += times[1:]
            per_round[name].append(float(np.median(times[1:])))
    set_blas_threads(default)
    out: dict = {}
    for name, s in samples.items():
        out[name] = {"median_ms": percentile(s, 50) * 1e3, "p25_ms": percentile(s, 25) * 1e3,
                     "p75_ms": percentile(s, 75) * 1e3, "min_ms": min(s) * 1e3, "max_ms": max(s) * 1e3, "steps": len(s)}
    for a, b in (("fast", "pytorch"), ("plain", "pytorch"), ("fast", "plain")):
        if a in samples and b in samples:
            paired = [x / y for x, y in zip(per_round[a], per_round[b])]
            out[f"{a}/{b}"] = {"ratio_of_medians": out[a]["median_ms"] / out[b]["median_ms"],
                               "median_of_round_ratios": float(np.median(paired)),
                               "round_ratio_p25": percentile(paired, 25), "round_ratio_p75": percentile(paired, 75)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models, few rounds (smoke test, writes nothing)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    parser.add_argument("--rounds", type=int, default=12, help="alternating rounds (default 12)")
    parser.add_argument("--block", type=int, default=4, help="timed steps per variant and round (default 4)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="BLAS thread counts (default 1 2)")
    parser.add_argument("--only", nargs="+", choices=["tinygpt", "lenet5"], default=["tinygpt", "lenet5"])
    args = parser.parse_args()
    rounds, block = (2, 2) if args.quick else (args.rounds, args.block)
    gpt_cfg = QUICK_GPT if args.quick else {**bench_tinygpt.DEFAULT}
    batch = 8 if args.quick else 64
    have_torch = importlib.util.find_spec("torch") is not None
    tuned = tune_allocator()["applied"]
    if blas_threads() is None:
        raise SystemExit("bench_vs_torch: numpy's BLAS is not OpenBLAS: the thread count cannot be set")
    load_start = [round(x, 2) for x in os.getloadavg()]
    models = {"tinygpt": (f"TinyGPT L{gpt_cfg['num_layers']} C{gpt_cfg['d_model']} T{gpt_cfg['max_length']} "
                          f"B{gpt_cfg['batch']}, AdamW",
                          lambda: tinygpt_step(gpt_cfg, False), lambda n: tinygpt_step(gpt_cfg, True, threads=n),
                          lambda: torch_tinygpt_step(gpt_cfg)),
              "lenet5": (f"LeNet-5 batch {batch}, SGD", lambda: lenet5_step(batch, False),
                         lambda n: lenet5_step(batch, True, threads=n), lambda: torch_lenet5_step(batch))}
    results: dict = {}
    rows = []
    previous = blas_threads()
    try:
        for key in args.only:
            label, plain, fast, torch_step = models[key]
            for n in args.threads:
                set_threads(n, have_torch)
                steps = {"plain": plain(), "fast": fast(n)}
                if have_torch:
                    steps["pytorch"] = torch_step()
                for name, step in steps.items():                 # warm-up: caches, allocator, thread pools
                    set_blas_threads(1 if name == "fast" else n)
                    for _ in range(3):
                        step()
                set_blas_threads(n)
                r = alternate(steps, rounds, block, blas={"fast": 1}, settle=0.0 if args.quick else SETTLE)   # fast: n parts at once, BLAS on one
                results[f"{key}/{n}"] = {"model": label, "threads": n, **r}
                fp = r.get("fast/pytorch")
                pp = r.get("plain/pytorch")
                rows.append([label, str(n), *(f"{r[v]['median_ms']:.1f} ({r[v]['p25_ms']:.1f}-{r[v]['p75_ms']:.1f})"
                                               if v in r else "-" for v in ("plain", "fast", "pytorch")),
                             f"{pp['ratio_of_medians']:.2f}x" if pp else "-",
                             f"{fp['ratio_of_medians']:.2f}x (rounds {fp['round_ratio_p25']:.2f}-{fp['round_ratio_p75']:.2f})"
                             if fp else "-"])
                print(f"  {key} {n} thread(s): done", flush=True)
    finally:
        set_blas_threads(previous)
    load_end = [round(x, 2) for x in os.getloadavg()]
    torch_version = importlib.import_module("torch").__version__ if have_torch else None
    print(f"TinyTorch vs PyTorch {torch_version or '(not installed: TinyTorch only)'}, alternating, {rounds} rounds "
          f"x {block} steps; malloc tuned: {tuned}; load average {load_start} -> {load_end}")
    print(table(rows, ["model", "threads", "plain ms (p25-p75)", "fast ms (p25-p75)", "PyTorch ms (p25-p75)",
                       "plain / PyTorch", "fast / PyTorch"]))
    if args.quick and not args.out:
        return
    path = write_results("bench_vs_torch", {"torch": torch_version, "rounds": rounds, "block": block,
                                            "malloc_tuned": tuned, "load_average_start": load_start,
                                            "load_average_end": load_end, "results": results}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
