"""Autograd overhead: TinyTorch forward+backward against the same math written in numpy.

    python benchmarks/bench_autograd.py          # prints a table, writes results/bench_report/bench_autograd.json

1. An elementwise chain on 1M-element float32 tensors, loss = sum(exp(x * w + b) * y)
   with w and b trainable. Target: within 1.5x of hand-written numpy forward + backward.
2. A 1024 x 1024 float32 matmul, forward + backward for both operands with an explicit
   upstream gradient. Target: within 1.2x of the three raw numpy matmuls it needs.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import compare, table, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.kernels import tune_allocator
from tinytorch.core.tensor import Tensor


def elementwise(n: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x, y, w0, b0 = (rng.standard_normal(n).astype(np.float32) * 0.1 for _ in range(4))

    def numpy_version():
        h1 = x * w0
        h2 = h1 + b0
        h3 = np.exp(h2)
        loss = np.sum(h3 * y)
        g3 = y                      # d loss / d h3 (the ones of the sum are folded in)
        g2 = g3 * h3
        gw = g2 * x
        gb = g2
        return loss, gw, gb

    w = Tensor(w0.copy(), requires_grad=True)
    b = Tensor(b0.copy(), requires_grad=True)
    tx, ty = Tensor(x), Tensor(y)

    def tinytorch_version():
        w.grad = b.grad = None
        loss = ((tx * w + b).exp() * ty).sum()
        loss.backward()
        return loss

    ref_loss, ref_gw, ref_gb = numpy_version()
    loss = tinytorch_version()
    np.testing.assert_allclose(loss.item(), ref_loss, rtol=1e-4)
    np.testing.assert_allclose(w.grad.data, ref_gw, rtol=1e-5)
    np.testing.assert_allclose(b.grad.data, ref_gb, rtol=1e-5)
    r = compare(numpy_version, tinytorch_version, repeats=repeats)
    return {"numpy_ms": r["baseline_ms"], "tinytorch_ms": r["candidate_ms"], "ratio": r["ratio"],
            "target_ratio": 1.5, "elements": n}


def matmul(n: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    a0, b0, g0 = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(3))

    def numpy_version():
        c = a0 @ b0
        ga = g0 @ b0.T
        gb = a0.T @ g0
        return c, ga, gb

    a = Tensor(a0.copy(), requires_grad=True)
    b = Tensor(b0.copy(), requires_grad=True)
    g = Tensor(g0)

    def tinytorch_version():
        a.grad = b.grad = None
        c = a @ b
        c.backward(g)
        return c

    c_ref, ga_ref, gb_ref = numpy_version()
    tinytorch_version()
    np.testing.assert_allclose(a.grad.data, ga_ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.grad.data, gb_ref, rtol=1e-4, atol=1e-3)
    r = compare(numpy_version, tinytorch_version, repeats=repeats)
    flops = 3 * 2 * n ** 3
    return {"numpy_ms": r["baseline_ms"], "tinytorch_ms": r["candidate_ms"], "ratio": r["ratio"],
            "target_ratio": 1.2, "size": n, "numpy_gflops": flops / r["baseline_ms"] / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    args = parser.parse_args()
    tune_allocator()                   # opt in (module 13): keep freed memory for reuse, as training runs do
    n_elem, n_mat, reps = (10_000, 128, 3) if args.quick else (1_000_000, 1024, args.repeats)
    results = {"elementwise_chain": elementwise(n_elem, reps), "matmul": matmul(n_mat, reps)}
    rows = []
    for name, r in results.items():
        ok = "yes" if r["ratio"] <= r["target_ratio"] else "NO"
        rows.append([name, f"{r['numpy_ms']:.2f}", f"{r['tinytorch_ms']:.2f}", f"{r['ratio']:.2f}x",
                     f"<= {r['target_ratio']}x", ok])
    print(table(rows, ["benchmark", "numpy ms", "tinytorch ms", "ratio", "target", "met"]))
    if not args.quick or args.out:
        print(f"\nwrote {write_results('bench_autograd', results, args.out)}")


if __name__ == "__main__":
    main()
