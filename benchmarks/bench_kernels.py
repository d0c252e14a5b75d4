"""Module 13 (kernels): every fast kernel against its reference, with the speed-up of each.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernels.py    # table + results/bench_report/bench_kernels.json
    python benchmarks/bench_kernels.py --quick                    # small sizes, few repeats, writes nothing

One BLAS thread is the default (set before numpy loads, unless the environment says
otherwise): the development machine has two cores shared with other work. Each pair is
timed alternately (A B A B ...) by `common.compare`; the speed-up is reference median /
fast median. Every pair is checked to compute the same numbers before it is timed.

1. matmul: Python loops, broadcast-multiply-sum, BLAS (GFLOP/s at several sizes).
2. memory layout: row vs column traversal, copy vs transposed copy.
3. convolution: direct loops and shifted GEMMs vs module 09's im2col Conv2d.
4. fused kernels: softmax-cross-entropy vs module 04's CrossEntropyLoss, GELU vs module
   02's, module 10's fused LayerNorm vs its composed reference; and whole TinyGPT training
   steps (module 16, 4 layers, 128 dims, batch 12, context 64) with the fused loss and GELU.
5. optimizer: AdamW update allocating vs in place (this module's kernel and FusedAdamW) and module 06's textbook AdamW.
6. float32 vs float64 for matmul and elementwise kernels.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")           # before numpy is imported
os.environ.setdefault("OMP_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])

import argparse
import time

import numpy as np

from common import compare, table, time_it, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.activations import GELU, gelu
from tinytorch.core.kernels import (
    FusedAdamW, FusedCrossEntropyLoss, FusedGELU, adam_update_allocating, adam_update_inplace, conv2d_loops, conv2d_shifted,
    fused_gelu, matmul_blas, matmul_broadcast, matmul_flops, matmul_loops, tune_allocator)
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.normalization import LayerNorm, layer_norm_composed
from tinytorch.core.optimizers import AdamW
from tinytorch.core.spatial import conv2d
from tinytorch.core.tensor import Tensor
from tinytorch.tinygpt import LanguageModelLoss, TinyGPT

ROWS: list[dict] = []


def record(name: str, reference: str, fast: str, r: dict, used: str, **extra) -> dict:
    """Store one comparison (from `compare`, reference = baseline) as a row of the final table."""
    row = {"kernel": name, "reference": reference, "fast": fast, "reference_ms": r["baseline_ms"],
           "fast_ms": r["candidate_ms"], "speedup": r["baseline_ms"] / r["candidate_ms"], "runs": r["runs"],
           "reference_spread_ms": r["baseline_spread_ms"], "fast_spread_ms": r["candidate_spread_ms"],
           "used_on_hot_path": used, **extra}
    ROWS.append(row)
    print(f"  {name}: {row['reference_ms']:.3f} ms -> {row['fast_ms']:.3f} ms ({row['speedup']:.2f}x)", flush=True)
    return row


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---- 1. matmul ----------------------------------------------------------------------------------
def bench_matmul(quick: bool, repeats: int) -> dict:
    print("matmul", flush=True)
    rates = {}
    plan = [("loops", matmul_loops, 32 if quick else 64, 1 if quick else 3),
            ("broadcast", matmul_broadcast, 64 if quick else 128, 3 if quick else 10),
            ("broadcast", matmul_broadcast, 64 if quick else 256, 2 if quick else 5)]
    plan += [("blas", matmul_blas, n, 3 if quick else repeats) for n in ([64, 128] if quick else [64, 128, 256, 512, 1024])]
    for name, fn, n, reps in plan:
        a, b = (rng(n + k).standard_normal((n, n)).astype(np.float32) for k in range(2))
        np.testing.assert_allclose(fn(a, b), a.astype(np.float64) @ b, rtol=1e-3, atol=1e-3)
        t = time_it(lambda: fn(a, b), repeats=reps, warmup=1)
        rates[f"{name}_{n}"] = {"n": n, "median_ms": t["median_s"] * 1e3,
                                "gflops": matmul_flops(n, n, n) / t["median_s"] / 1e9}
        print(f"  {name:>9} {n:>4}: {t['median_s'] * 1e3:9.3f} ms {rates[f'{name}_{n}']['gflops']:9.3f} GFLOP/s", flush=True)
    n_b = 64 if quick else 128
    a, b = (rng(k).standard_normal((n_b, n_b)).astype(np.float32) for k in range(2))
    record(f"matmul {n_b}x{n_b} float32", "broadcast-multiply-sum", "BLAS (np.matmul)",
           compare(lambda: matmul_broadcast(a, b), lambda: matmul_blas(a, b), repeats=repeats),
           "yes: every @ (Dense 03, attention 11, TinyGPT 16); Conv2d 09 ends in it")
    n_l = rates[[k for k in rates if k.startswith("loops")][0]]["n"]
    ROWS.append({"kernel": f"matmul, GFLOP/s rate (loops at {n_l}, BLAS at {n_b})", "reference": "Python loops",
                 "fast": "BLAS (np.matmul)", "reference_ms": None, "fast_ms": None,
                 "speedup": rates[f"blas_{n_b}"]["gflops"] / rates[f"loops_{n_l}"]["gflops"], "runs": None,
                 "used_on_hot_path": "yes: loops appear nowhere in the framework",
                 "note": "ratio of GFLOP/s rates: the loops cannot run at the BLAS size in reasonable time"})
    return rates


# ---- 2. layout ----------------------------------------------------------------------------------
def bench_layout(quick: bool, repeats: int) -> None:
    print("memory layout", flush=True)
    n = 1024 if quick else 2048
    big = rng(2).standard_normal((n, n)).astype(np.float32)
    step = 16                                                    # one column per 64-byte cache line
    record(f"sum of {n // step} rows vs {n // step} columns ({n}x{n} float32)", "column traversal (stride 8 KiB)",
           "row traversal (contiguous)",
           compare(lambda: [big[:, j].sum() for j in range(0, n, step)],
                   lambda: [big[i].sum() for i in range(0, n, step)], repeats=repeats),
           "yes: kernels reduce along the contiguous last axis (LayerNorm 10, softmax 02, fused CE here)")
    record(f"copy {n}x{n} float32", "np.ascontiguousarray(a.T)", "a.copy()",
           compare(lambda: np.ascontiguousarray(big.T), lambda: big.copy(), repeats=repeats),
           "in part: im2col (09) and split_heads/merge_heads (11) pay one transposed copy each")


# ---- 3. convolution -----------------------------------------------------------------------------
def bench_conv(quick: bool, repeats: int) -> None:
    print("convolution", flush=True)
    xs, ws, bs = (rng(4).standard_normal(s).astype(np.float32) for s in [(4, 3, 16, 16), (8, 3, 3, 3), (8,)])
    xt, wt, bt = Tensor(xs), Tensor(ws), Tensor(bs)
    np.testing.assert_allclose(conv2d_loops(xs, ws, bs, 1, 1), conv2d(xt, wt, bt, padding=1).data, rtol=1e-4, atol=1e-4)
    record("conv (4,3,16,16) * (8,3,3,3), pad 1, forward", "direct loops (this module)", "im2col + GEMM (module 09)",
           compare(lambda: conv2d_loops(xs, ws, bs, 1, 1), lambda: conv2d(xt, wt, bt, padding=1),
                   repeats=3 if quick else 5, warmup=1),
           "yes: Conv2d (09), every CNN milestone")
    xs, ws, bs = (rng(5).standard_normal(s).astype(np.float32) for s in [(64, 6, 14, 14), (16, 6, 5, 5), (16,)])
    xt, wt, bt = Tensor(xs), Tensor(ws), Tensor(bs)
    np.testing.assert_allclose(conv2d_shifted(xs, ws, bs), conv2d(xt, wt, bt).data, rtol=1e-4, atol=1e-4)
    record("conv LeNet-5 conv2 (64,6,14,14) * (16,6,5,5), forward", "shifted GEMMs (this module)",
           "im2col + GEMM (module 09)",
           compare(lambda: conv2d_shifted(xs, ws, bs), lambda: conv2d(xt, wt, bt), repeats=repeats),
           "yes: Conv2d (09); the shifted version needs no column matrix (12.8x the input here)")


# ---- 4. fused kernels ---------------------------------------------------------------------------
def bench_fused(quick: bool, repeats: int) -> None:
    print("fused kernels", flush=True)
    for shape in [(12, 64, 65), (64, 10)] if not quick else [(12, 64, 65)]:
        z = Tensor(rng(6).standard_normal(shape).astype(np.float32), requires_grad=True)
        t = rng(7).integers(0, shape[-1], size=shape[:-1])
        composed, fused = CrossEntropyLoss(), FusedCrossEntropyLoss()

        def step(loss_fn):
            z.grad = None
            loss = loss_fn(z, t)
            loss.backward()
            return loss.item(), z.grad.data.copy()

        (lc, gc), (lf, gf) = step(composed), step(fused)
        np.testing.assert_allclose(lf, lc, rtol=1e-5)
        np.testing.assert_allclose(gf, gc, rtol=1e-4, atol=1e-7)
        where = "TinyGPT's LanguageModelLoss (16)" if len(shape) == 3 else "CIFAR-10 classifiers (07)"
        record(f"cross-entropy {shape} float32, forward + backward", "CrossEntropyLoss (module 04, composed)",
               "softmax_cross_entropy (fused)",
               compare(lambda: step(composed), lambda: step(fused), repeats=4 * repeats),
               f"no: available; would replace module 04's loss in {where}")

    h = Tensor(rng(9).standard_normal((12, 64, 512)).astype(np.float32), requires_grad=True)
    up = rng(10).standard_normal(h.shape).astype(np.float32)

    def gelu_step(fn):
        h.grad = None
        fn(h).backward(up)
        return h.grad.data

    np.testing.assert_allclose(gelu_step(fused_gelu).copy(), gelu_step(gelu), rtol=2e-5, atol=2e-6)
    record("GELU (12, 64, 512) float32, forward + backward", "GELU (module 02 + rule of 05)", "fused_gelu",
           compare(lambda: gelu_step(gelu), lambda: gelu_step(fused_gelu), repeats=2 * repeats),
           "no: available; would replace GELU in TinyGPT's feed-forward (16)")

    acts = Tensor(rng(11).standard_normal((12, 64, 128)).astype(np.float32), requires_grad=True)
    up_ln = rng(12).standard_normal(acts.shape).astype(np.float32)
    ln = LayerNorm(128)

    def ln_step(fn):
        acts.grad = ln.weight.grad = ln.bias.grad = None
        fn().backward(up_ln)
        return acts.grad.data

    np.testing.assert_allclose(ln_step(lambda: ln(acts)).copy(),
                               ln_step(lambda: layer_norm_composed(acts, 1, ln.weight, ln.bias)), rtol=1e-3, atol=1e-4)
    record("LayerNorm (12, 64, 128) float32, forward + backward", "layer_norm_composed (module 10)",
           "LayerNorm (module 10, fused)",
           compare(lambda: ln_step(lambda: layer_norm_composed(acts, 1, ln.weight, ln.bias)),
                   lambda: ln_step(lambda: ln(acts)), repeats=2 * repeats),
           "yes: module 10's LayerNorm is the fused kernel; TinyGPT (16) uses it")


def bench_tinygpt_step(quick: bool, repeats: int) -> dict:
    """Whole TinyGPT training steps (forward, loss, backward) with module 04's loss vs the fused one."""
    print("TinyGPT step (forward + loss + backward)", flush=True)
    B, T, V = 12, 64, 65
    idx = rng(13).integers(0, V, size=(B, T))
    targets = rng(14).integers(0, V, size=(B, T))
    models = {}
    for name in ("module04_loss", "fused_loss", "fused_loss_and_gelu"):
        model = TinyGPT(V, d_model=128, num_heads=4, num_layers=4, max_length=T, rng=rng(15))
        if name == "fused_loss_and_gelu":
            for block in model.blocks:
                assert isinstance(block.ff.layers[1], GELU)
                block.ff.layers[1] = FusedGELU()
        models[name] = model
    losses = {"module04_loss": LanguageModelLoss(), "fused_loss": FusedCrossEntropyLoss(),
              "fused_loss_and_gelu": FusedCrossEntropyLoss()}

    def step(name):
        model = models[name]
        model.zero_grad()
        loss = losses[name](model(idx), targets)
        loss.backward()
        return loss.item()

    values = {name: step(name) for name in models}
    assert abs(values["fused_loss"] - values["module04_loss"]) < 1e-5 * abs(values["module04_loss"]), values
    assert abs(values["fused_loss_and_gelu"] - values["module04_loss"]) < 1e-4 * abs(values["module04_loss"]), values
    g_ref = models["module04_loss"].head.weight.grad.data
    np.testing.assert_allclose(models["fused_loss"].head.weight.grad.data, g_ref, rtol=1e-3, atol=1e-6)
    n = max(3, repeats)
    record("TinyGPT step (B=12, T=64, 4x128), forward + loss + backward", "LanguageModelLoss (module 04 inside)",
           "FusedCrossEntropyLoss", compare(lambda: step("module04_loss"), lambda: step("fused_loss"), repeats=n),
           "no: what adopting the fused loss in module 16 would give")
    record("TinyGPT step, fused loss + fused GELU", "LanguageModelLoss + GELU (modules 04, 02)",
           "FusedCrossEntropyLoss + FusedGELU",
           compare(lambda: step("module04_loss"), lambda: step("fused_loss_and_gelu"), repeats=n),
           "no: what adopting both in module 16 would give")
    return {"losses": values}


# ---- 5. optimizer -------------------------------------------------------------------------------
def bench_adam(quick: bool, repeats: int) -> dict:
    print("AdamW update", flush=True)
    model = TinyGPT(65, d_model=128, num_heads=4, num_layers=4, max_length=64, rng=rng(16))
    shapes = [p.shape for p in model.parameters()]
    params = [rng(17).standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng(18).standard_normal(s).astype(np.float32) for s in shapes]
    state = [[np.zeros(s, np.float32), np.zeros(s, np.float32)] for s in shapes]
    scratch = np.empty(2 * max(p.size for p in params), dtype=np.float32)
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, decoupled=True)

    def allocating():
        for k, (p, g, (m, v)) in enumerate(zip(params, grads, state)):
            params[k], state[k][0], state[k][1] = adam_update_allocating(p, g, m, v, 1, **hyper)

    def inplace():
        for p, g, (m, v) in zip(params, grads, state):
            adam_update_inplace(p, g, m, v, 1, work=scratch[:2 * p.size].reshape(2, *p.shape), **hyper)

    tensors = [Tensor(p.copy(), requires_grad=True) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = Tensor(g)
    adamw = AdamW(tensors, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    fused = FusedAdamW(tensors, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    info = {"arrays": len(shapes), "numbers": int(sum(p.size for p in params))}
    record(f"AdamW step over TinyGPT's {info['arrays']} parameter arrays ({info['numbers']:,} numbers)",
           "allocating (this module)", "in place with out= (this module)",
           compare(allocating, inplace, repeats=2 * repeats), "yes: FusedAdamW's kernel")
    record("AdamW step, module 06 (textbook) vs FusedAdamW", "AdamW.step (module 06, allocating)",
           "FusedAdamW.step (this module, in place)",
           compare(adamw.step, fused.step, repeats=2 * repeats),
           "yes: milestones and benchmarks opt into FusedAdamW")
    record("FusedAdamW vs the bare in-place kernel loop", "FusedAdamW.step (this module)",
           "adam_update_inplace loop (this module)",
           compare(fused.step, inplace, repeats=2 * repeats),
           "no: same operations; a difference is per-parameter overhead (state lookups, scratch views)")
    return info


# ---- 6. dtypes ----------------------------------------------------------------------------------
def bench_dtypes(quick: bool, repeats: int) -> None:
    print("float32 vs float64", flush=True)
    n = 256 if quick else 512
    a64, b64 = rng(19).standard_normal((n, n)), rng(20).standard_normal((n, n))
    a32, b32 = a64.astype(np.float32), b64.astype(np.float32)
    v64 = rng(21).standard_normal(1 << (16 if quick else 20))
    v32 = v64.astype(np.float32)
    used = "yes: DEFAULT_FLOAT (01) is float32; gradient checks alone use float64"
    record(f"matmul {n}x{n}", "float64", "float32", compare(lambda: a64 @ b64, lambda: a32 @ b32, repeats=repeats), used)
    record(f"exp of {v64.size:,} numbers", "float64", "float32",
           compare(lambda: np.exp(v64), lambda: np.exp(v32), repeats=repeats), used)
    record(f"x * x + x on {v64.size:,} numbers", "float64", "float32",
           compare(lambda: v64 * v64 + v64, lambda: v32 * v32 + v32, repeats=repeats), used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test); writes nothing")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    args = parser.parse_args()
    tune_allocator()                   # opt in (module 13): keep freed memory for reuse, as training runs do
    repeats = 3 if args.quick else args.repeats
    started = time.perf_counter()
    details = {"matmul": bench_matmul(args.quick, repeats)}
    bench_layout(args.quick, repeats)
    bench_conv(args.quick, repeats)
    bench_fused(args.quick, repeats)
    details["tinygpt_step"] = bench_tinygpt_step(args.quick, repeats)
    details["adamw"] = bench_adam(args.quick, repeats)
    bench_dtypes(args.quick, repeats)
    fmt = lambda v: "" if v is None else f"{v:.3f}"
    print()
    print(table([[r["kernel"], r["reference"], fmt(r["reference_ms"]), r["fast"], fmt(r["fast_ms"]),
                  f"{r['speedup']:.2f}x", r["used_on_hot_path"]] for r in ROWS],
                ["kernel", "reference", "ms", "fast kernel", "ms", "speed-up", "used by the framework"]))
    wall = time.perf_counter() - started
    print(f"\n{wall:.1f} s, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    if not args.quick or args.out:
        path = write_results("bench_kernels", {
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "repeats": repeats, "wall_s": round(wall, 1),
            "speedup_definition": "reference median time / fast median time, timed alternately (common.compare)",
            "rows": ROWS, "details": details}, args.out)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
