"""TinyGPT speed: one training step against the matrix-product lower bound, and generation
with and without the key/value cache.

    python benchmarks/bench_tinygpt.py           # prints a table, writes results/bench_report/bench_tinygpt.json
    python benchmarks/bench_tinygpt.py --quick   # small model, few repeats (smoke test, writes nothing)

The model is the milestone's: vocabulary 65, 4 layers, 4 heads, d_model 128, context 64;
a training step is forward, loss, backward and an AdamW update on a batch of 12 x 64
tokens (float32). Reported:

* the step time, its ratio to the target (66 ms on the course's 2-core machine), and to a
  lower bound: the time BLAS alone needs for the step's matrix products, each product
  timed on its own at its exact shape (best of several runs), summed. The FLOPs of those
  products are counted from the shapes, so the achieved GFLOP/s is printed too;
* the same model in PyTorch, if `torch` happens to be importable (it is never a dependency);
* generation of 500 new tokens at batch 1 (sampling, temperature 1), with the KV cache
  (default sliding window) and without it (every step recomputes the last 64 positions);
* peak memory (tracemalloc, numpy's allocations included) of a training step and of
  cached generation;
* the effect of glibc's allocator settings (module 13's tune_allocator(), which this script
  opts into), measured in a subprocess that leaves the allocator alone (--default-malloc).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from common import table, time_it, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.kernels import FusedAdamW, tune_allocator
from tinytorch.core.tensor import Tensor
from tinytorch.tinygpt import LanguageModelLoss, TinyGPT, generate_tokens

TARGET_STEP_MS = 66.0
TARGET_TOKENS_PER_S = 1000.0
TARGET_CACHE_SPEEDUP = 3.0
DEFAULT = dict(vocab_size=65, d_model=128, num_heads=4, num_layers=4, max_length=64, batch=12)
QUICK = dict(vocab_size=65, d_model=32, num_heads=4, num_layers=2, max_length=32, batch=4)


# ---- the model and one step ----------------------------------------------------------------
def build(cfg: dict, seed: int = 0):
    model = TinyGPT(vocab_size=cfg["vocab_size"], d_model=cfg["d_model"], num_heads=cfg["num_heads"],
                    num_layers=cfg["num_layers"], max_length=cfg["max_length"], rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    window = rng.integers(0, cfg["vocab_size"], size=(cfg["batch"], cfg["max_length"] + 1))
    x, y = Tensor(window[:, :-1]), window[:, 1:]
    optimizer = FusedAdamW(model.parameters(), lr=1e-3)
    loss_fn = LanguageModelLoss()

    def step() -> float:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.data)
    return model, step


# ---- the matrix products of one step ---------------------------------------------------------
def step_gemms(cfg: dict) -> list[tuple[int, int, int, int, str]]:
    """(batch, M, K, N, what) of every matrix product in one training step, as TinyTorch
    computes them: forward y = a @ b, backward da = g @ b.T and db = a.T @ g."""
    B, T, C, nh, V = cfg["batch"], cfg["max_length"], cfg["d_model"], cfg["num_heads"], cfg["vocab_size"]
    rows, hs = B * T, C // nh
    forward = [(1, rows, C, C, "q/k/v/out projection")] * 4 + [
        (1, rows, C, 4 * C, "feed-forward in"), (1, rows, 4 * C, C, "feed-forward out"),
        (B * nh, T, hs, T, "attention q @ k.T"), (B * nh, T, T, hs, "attention weights @ v")]
    out: list[tuple[int, int, int, int, str]] = []
    for _ in range(cfg["num_layers"]):
        out += [(b, m, k, n, f"{what} (forward)") for b, m, k, n, what in forward]
        for b, m, k, n, what in forward:
            out.append((b, m, n, k, f"{what} (grad of left)"))      # g (m, n) @ b.T (n, k)
            out.append((b, k, m, n, f"{what} (grad of right)"))     # a.T (k, m) @ g (m, n)
    head = (1, rows, C, V, "head")
    out += [(*head[:4], "head (forward)"), (1, rows, V, C, "head (grad of left)"), (1, C, rows, V, "head (grad of right)")]
    return out


def gemm_lower_bound(gemms: list[tuple[int, int, int, int, str]], repeats: int) -> dict:
    """Time each distinct product alone (best of `repeats`) and sum over the step."""
    rng = np.random.default_rng(0)
    best: dict[tuple[int, int, int, int], float] = {}
    for b, m, k, n, _ in gemms:
        key = (b, m, k, n)
        if key in best:
            continue
        shape_a = (m, k) if b == 1 else (b, m, k)
        shape_b = (k, n) if b == 1 else (b, k, n)
        a = rng.standard_normal(shape_a).astype(np.float32)
        w = rng.standard_normal(shape_b).astype(np.float32)
        out = np.empty(shape_a[:-1] + (n,), dtype=np.float32)
        best[key] = time_it(lambda: np.matmul(a, w, out=out), repeats=repeats, warmup=3)["min_s"]
    flops = sum(2.0 * b * m * k * n for b, m, k, n, _ in gemms)
    seconds = sum(best[(b, m, k, n)] for b, m, k, n, _ in gemms)
    largest = max(best, key=lambda key: math.prod(key))
    return {"products": len(gemms), "gflop": flops / 1e9, "blas_ms": seconds * 1e3,
            "blas_gflops": flops / seconds / 1e9,
            "largest_shape": list(largest), "largest_gflops": 2 * math.prod(largest) / best[largest] / 1e9}


# ---- PyTorch, only if it is already installed ---------------------------------------------------
def torch_step(cfg: dict):
    """One training step of the same model in PyTorch (CPU), as a function of no arguments
    (bench_vs_torch.py times it too). ImportError when torch is not importable."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.manual_seed(0)
    B, T, C, nh, V, L = (cfg["batch"], cfg["max_length"], cfg["d_model"], cfg["num_heads"],
                         cfg["vocab_size"], cfg["num_layers"])

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
            self.fc, self.proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            h = self.ln1(x)
            split = lambda t: t.view(B, T, nh, C // nh).transpose(1, 2)          # (B, nh, T, hs)
            y = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), is_causal=True)
            x = x + self.o(y.transpose(1, 2).reshape(B, T, C))
            return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, C), nn.Parameter(torch.zeros(T, C))
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f, self.head = nn.LayerNorm(C), nn.Linear(C, V)

        def forward(self, idx):
            x = self.tok(idx) + self.pos
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))

    model = GPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    idx = torch.randint(0, V, (B, T))
    target = torch.randint(0, V, (B, T))

    def step() -> None:
        loss = F.cross_entropy(model(idx).view(-1, V), target.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def torch_step_ms(cfg: dict, repeats: int) -> dict | None:
    """The same model and step in PyTorch (CPU), or None when torch is not importable."""
    try:
        import torch
        step = torch_step(cfg)
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    timing = time_it(step, repeats=repeats, warmup=5)
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "step_ms": timing["median_s"] * 1e3}


# ---- generation ----------------------------------------------------------------------------------
def generation(model: TinyGPT, new_tokens: int, use_cache: bool, runs: int) -> dict:
    prompt = np.zeros((1, 1), dtype=np.int64)
    best = math.inf
    for seed in range(runs):
        started = time.perf_counter()
        out = generate_tokens(model, prompt, new_tokens, rng=np.random.default_rng(seed), use_cache=use_cache)
        best = min(best, time.perf_counter() - started)
    assert out.shape == (1, 1 + new_tokens)
    return {"seconds": best, "tokens_per_s": new_tokens / best}


def peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2 ** 20


def step_only(cfg: dict, repeats: int) -> dict:
    _, step = build(cfg)
    timing = time_it(step, repeats=repeats, warmup=5)
    return {"step_ms": timing["median_s"] * 1e3, "step_min_ms": timing["min_s"] * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small model, few repeats (smoke test, writes nothing)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    parser.add_argument("--repeats", type=int, default=30, help="timed training steps (default 30)")
    parser.add_argument("--new-tokens", type=int, default=500, help="tokens to generate (default 500)")
    parser.add_argument("--step-only", action="store_true", help=argparse.SUPPRESS)   # for the subprocess
    parser.add_argument("--default-malloc", action="store_true", help=argparse.SUPPRESS)   # ... without tuning
    args = parser.parse_args()
    cfg = QUICK if args.quick else DEFAULT
    repeats = 3 if args.quick else args.repeats
    new_tokens = 50 if args.quick else args.new_tokens
    tuned = not args.default_malloc and tune_allocator()["applied"]
    if args.step_only:
        print(json.dumps(step_only(cfg, repeats)))
        return

    model, step = build(cfg)
    loss0 = step()
    assert math.isfinite(loss0) and abs(loss0 - math.log(cfg["vocab_size"])) < 0.5, loss0
    timing = time_it(step, repeats=repeats, warmup=3)
    step_ms = timing["median_s"] * 1e3
    gemms = step_gemms(cfg)
    bound = gemm_lower_bound(gemms, repeats=5 if args.quick else 20)
    torch_result = torch_step_ms(cfg, repeats)
    step_peak = peak_mib(step)

    model.eval()
    cached = generation(model, new_tokens, use_cache=True, runs=1 if args.quick else 3)
    plain = generation(model, new_tokens, use_cache=False, runs=1 if args.quick else 2)
    gen_peak = peak_mib(lambda: generate_tokens(model, np.zeros((1, 1), dtype=np.int64), new_tokens,
                                                rng=np.random.default_rng(0)))
    speedup = cached["tokens_per_s"] / plain["tokens_per_s"]

    default_alloc = None
    if not args.quick and tuned:
        proc = subprocess.run([sys.executable, __file__, "--step-only", "--default-malloc", "--repeats", str(repeats)],
                              capture_output=True, text=True, check=True)
        default_alloc = json.loads(proc.stdout.strip().splitlines()[-1])

    cfg_text = (f"L={cfg['num_layers']} C={cfg['d_model']} heads={cfg['num_heads']} T={cfg['max_length']} "
                f"B={cfg['batch']} V={cfg['vocab_size']}")
    rows = [["training step (fwd+bwd+AdamW)", f"{step_ms:.1f} ms (min {timing['min_s'] * 1e3:.1f})",
             f"{step_ms / TARGET_STEP_MS:.2f}x of {TARGET_STEP_MS:.0f} ms target"],
            ["  BLAS lower bound (matmuls alone)", f"{bound['blas_ms']:.1f} ms",
             f"step = {step_ms / bound['blas_ms']:.2f}x the bound"],
            ["  matmul FLOPs / achieved", f"{bound['gflop']:.2f} GFLOP",
             f"{bound['gflop'] / step_ms * 1e3:.0f} GFLOP/s in the step, BLAS alone {bound['blas_gflops']:.0f}"]]
    if torch_result:
        rows.append([f"  PyTorch {torch_result['torch']} ({torch_result['threads']} threads)",
                     f"{torch_result['step_ms']:.1f} ms", f"TinyTorch = {step_ms / torch_result['step_ms']:.2f}x PyTorch"])
    else:
        rows.append(["  PyTorch", "not installed", "(never a dependency; skipped)"])
    if default_alloc:
        rows.append(["  same step, default glibc allocator", f"{default_alloc['step_ms']:.1f} ms (min {default_alloc['step_min_ms']:.1f})",
                     f"{default_alloc['step_ms'] / step_ms:.2f}x slower than tuned"])
    rows += [[f"generate {new_tokens} tokens, KV cache", f"{cached['tokens_per_s']:.0f} tok/s",
              f"{cached['tokens_per_s'] / TARGET_TOKENS_PER_S:.2f}x of {TARGET_TOKENS_PER_S:.0f} tok/s target"],
             [f"generate {new_tokens} tokens, no cache", f"{plain['tokens_per_s']:.0f} tok/s",
              f"cache speed-up {speedup:.2f}x (target >= {TARGET_CACHE_SPEEDUP:.0f}x)"],
             ["peak memory: training step", f"{step_peak:.1f} MiB", "tracemalloc"],
             ["peak memory: cached generation", f"{gen_peak:.1f} MiB", "tracemalloc"]]
    print(f"TinyGPT ({cfg_text}, {model.num_parameters():,} parameters), malloc tuned: {tuned}")
    print(table(rows, ["measurement", "value", "ratio"]))
    if args.quick and not args.out:
        return
    result = {"config": cfg, "parameters": model.num_parameters(), "malloc_tuned": tuned,
              "step_ms": step_ms, "step": timing, "target_step_ms": TARGET_STEP_MS,
              "matmul_bound": bound, "step_over_bound": step_ms / bound["blas_ms"],
              "pytorch": torch_result, "default_allocator": default_alloc,
              "generation": {"new_tokens": new_tokens, "cached": cached, "uncached": plain,
                             "cache_speedup": speedup, "target_tokens_per_s": TARGET_TOKENS_PER_S},
              "peak_mib": {"training_step": step_peak, "cached_generation": gen_peak}}
    print(f"\nwrote {write_results('bench_tinygpt', result, args.out)}")


if __name__ == "__main__":
    main()
