"""One training step of an MLP: TinyTorch against the same model written by hand in numpy.

    python benchmarks/bench_mlp_step.py           # prints a table, writes results/bench_report/bench_mlp_step.json
    python benchmarks/bench_mlp_step.py --quick   # small model, few repeats (smoke test, writes nothing)

The model is Dense(3072, 512) - ReLU - Dense(512, 256) - ReLU - Dense(256, 10) with a
cross-entropy loss, batch 64, float32 (CIFAR-10-sized inputs). One step is forward,
backward and an Adam update. The numpy version computes the same thing with the
hand-derived backward pass and an in-place Adam (preallocated moments and scratch), the way
a careful numpy programmer would write it. Before timing, both versions take one step from
the same weights on the same batch and must agree. Target: TinyTorch within 1.3x of numpy.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from common import compare, table, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.kernels import FusedAdam, tune_allocator
from tinytorch.core.tensor import Tensor

TARGET_RATIO = 1.3
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


class NumpyMLP:
    """The same MLP, forward, backward and Adam written directly with numpy (float32)."""

    def __init__(self, weights: list[np.ndarray]):
        self.params = [w.copy() for w in weights]                # W1, b1, W2, b2, W3, b3
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.work = [np.empty_like(p) for p in self.params]
        self.t = 0

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        W1, b1, W2, b2, W3, b3 = self.params
        n = x.shape[0]
        h1 = x @ W1 + b1                                         # (B, 512)
        a1 = np.maximum(h1, 0)
        h2 = a1 @ W2 + b2                                        # (B, 256)
        a2 = np.maximum(h2, 0)
        z = a2 @ W3 + b3                                         # (B, 10)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) - z[np.arange(n), y]))
        dz = e / s                                               # softmax - onehot, over B
        dz[np.arange(n), y] -= 1
        dz /= n
        dW3, db3 = a2.T @ dz, dz.sum(axis=0)
        dh2 = (dz @ W3.T) * (h2 > 0)
        dW2, db2 = a1.T @ dh2, dh2.sum(axis=0)
        dh1 = (dh2 @ W2.T) * (h1 > 0)
        dW1, db1 = x.T @ dh1, dh1.sum(axis=0)
        return loss, [dW1, db1, dW2, db2, dW3, db3]

    def adam(self, grads: list[np.ndarray]) -> None:
        b1, b2 = BETAS
        self.t += 1
        c1, c2 = LR / (1 - b1 ** self.t), 1 / math.sqrt(1 - b2 ** self.t)
        for p, g, m, v, w in zip(self.params, grads, self.m, self.v, self.work):
            m *= b1
            np.multiply(g, 1 - b1, out=w)
            m += w
            v *= b2
            np.multiply(g, g, out=w)
            w *= 1 - b2
            v += w
            np.sqrt(v, out=w)
            w *= c2
            w += EPS
            np.divide(m, w, out=w)
            w *= c1
            p -= w

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.loss_and_grads(x, y)
        self.adam(grads)
        return loss


def build(sizes: tuple[int, ...], batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(fan_in, fan_out, rng=rng))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    model = Sequential(*layers)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=batch)
    return model, x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="small model, few repeats (smoke test)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    args = parser.parse_args()
    tune_allocator()                   # opt in (module 13): keep freed memory for reuse, as training runs do
    sizes, batch, reps = ((256, 64, 32, 10), 16, 3) if args.quick else ((3072, 512, 256, 10), 64, args.repeats)

    model, x, y = build(sizes, batch)
    weights = [p.data for p in model.parameters()]
    reference = NumpyMLP(weights)
    loss_fn = CrossEntropyLoss()
    opt = FusedAdam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    tx, ty = Tensor(x), y

    def tinytorch_step() -> float:
        loss = loss_fn(model(tx), ty)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def numpy_step() -> float:
        return reference.step(x, y)

    # Both start from the same weights: one step each must give the same loss and weights.
    loss_tt, loss_np = tinytorch_step(), numpy_step()
    np.testing.assert_allclose(loss_tt, loss_np, rtol=1e-5)
    # Adam's first step moves each weight by about lr * sign(gradient), so a gradient that is
    # ~0 and differs in its last bits (another summation order) may move the other way:
    # weights agree to within 2 lr.
    for p, q in zip(model.parameters(), reference.params):
        np.testing.assert_allclose(p.data, q, rtol=0, atol=2 * LR + 1e-6)

    timing = compare(numpy_step, tinytorch_step, repeats=reps)
    ratio = timing["ratio"]
    result = {"sizes": list(sizes), "batch": batch, "parameters": model.num_parameters(),
              "numpy_ms": timing["baseline_ms"], "tinytorch_ms": timing["candidate_ms"],
              "timing": timing, "ratio": ratio, "target_ratio": TARGET_RATIO}
    print(table([["-".join(map(str, sizes)) + f" batch {batch}", f"{result['numpy_ms']:.2f}",
                  f"{result['tinytorch_ms']:.2f}", f"{ratio:.2f}x", f"<= {TARGET_RATIO}x",
                  "yes" if ratio <= TARGET_RATIO else "NO"]],
                ["MLP step (forward, backward, Adam)", "numpy ms", "tinytorch ms", "ratio", "target", "met"]))
    if not args.quick or args.out:
        print(f"\nwrote {write_results('bench_mlp_step', result, args.out)}")


if __name__ == "__main__":
    main()
