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
# # Module 04: Losses
#
# **Where you are.** A network (module 03) maps inputs to predictions. Training needs one
# number that says how wrong the predictions are, and that shrinks when they improve: the
# **loss**. Module 05 differentiates it with respect to every parameter; module 06 moves
# the parameters downhill.
#
# **What you build.**
#
# | loss | predictions | targets | typical use |
# |---|---|---|---|
# | `MSELoss` | any shape | same shape, real values | regression |
# | `CrossEntropyLoss` | logits (N, C) or (..., C) | class indices (N,) or (...) | classification, next-token prediction (TinyGPT) |
# | `BinaryCrossEntropyLoss` | logits, any shape | same shape, values in [0, 1] | yes/no, multi-label |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/losses.py`.
#
# **No gradient code, again.** Each loss is a `Module` without parameters whose `forward`
# composes Tensor operations and the log-softmax and ReLU of module 02. Its gradient comes
# out of the graph; the tests at the end of module 05 check that it is the textbook one.
#
# **Points: 9** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-03 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.losses

# %%
#| export
"""Loss functions: MSELoss, CrossEntropyLoss, BinaryCrossEntropyLoss.

Module 04 of TinyTorch (generated from modules/04_losses/losses_dev.py; do not edit).

Losses are parameter-free Modules built from Tensor operations, so their gradients come
from the recorded graph (module 05).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import log_softmax, relu
from tinytorch.core.layers import Module

# %% [markdown]
# ## 1. Reductions
#
# A loss is computed per element (or per example) and then reduced: `"mean"` (the usual
# choice: the scale of the loss, and of the gradients, does not depend on the batch size),
# `"sum"`, or `"none"` (keep the per-element losses, e.g. to weight them yourself).

# %% nbgrader={"grade": false, "grade_id": "reductions", "locked": false, "schema_version": 3, "solution": true}
#| export
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, name: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    """The mean or the sum of `losses` (a scalar tensor), or `losses` itself for "none"."""
    ### BEGIN SOLUTION
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses
    ### END SOLUTION


def _as_tensor(x: Any, like: Tensor | None = None) -> Tensor:
    """x as a Tensor; arrays and lists adopt the dtype of `like` when it is floating."""
    ### BEGIN SOLUTION
    if isinstance(x, Tensor):
        return x
    if like is not None and like.dtype.kind == "f":
        return Tensor(x, dtype=like.dtype)
    return Tensor(x)
    ### END SOLUTION

# %% [markdown]
# ## 2. Mean squared error
#
# $$\mathrm{MSE}(\hat y, y) = \frac1n \sum_i (\hat y_i - y_i)^2$$
#
# Large errors count quadratically, and the gradient $\frac2n(\hat y - y)$ is proportional
# to the error. Predictions and targets must have **the same shape**: with broadcasting,
# predictions of shape (N, 1) minus targets of shape (N,) silently give an (N, N) matrix of
# all pairwise differences, a classic bug that still trains, badly. We refuse it.

# %% nbgrader={"grade": false, "grade_id": "mse", "locked": false, "schema_version": 3, "solution": true}
#| export
class MSELoss(Module):
    """Mean squared error. predictions: any shape; targets: same shape.
    Returns a scalar tensor (`"mean"`, `"sum"`) or the elementwise losses (`"none"`)."""
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        ### BEGIN SOLUTION
        self.reduction = _check_reduction(reduction, "MSELoss")
        ### END SOLUTION

    def forward(self, predictions: Tensor, targets: Any) -> Tensor:
        ### BEGIN SOLUTION
        predictions = _as_tensor(predictions)
        targets = _as_tensor(targets, like=predictions)
        ### END SOLUTION
        if predictions.shape != targets.shape:
            raise ValueError(f"MSELoss: predictions of shape {predictions.shape} and targets of "
                             f"shape {targets.shape} differ (reshape one; broadcasting is refused)")
        ### BEGIN SOLUTION
        diff = predictions - targets
        return _reduce(diff * diff, self.reduction)
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"reduction={self.reduction!r}"
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-mse", "locked": true, "points": 2, "schema_version": 3, "solution": false}
pred = Tensor([[1.0, 2.0], [3.0, 4.0]])
target = Tensor([[1.5, 2.0], [2.0, 6.0]])
assert np.isclose(MSELoss()(pred, target).item(), (0.25 + 0 + 1 + 4) / 4)
assert np.isclose(MSELoss("sum")(pred, target).item(), 5.25)
assert MSELoss("none")(pred, target).shape == (2, 2)
assert MSELoss()(pred, target).dtype == np.float32
try:
    MSELoss()(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))
    raise AssertionError("(4, 1) vs (4,) must be refused")
except ValueError:
    pass
print("mse: OK")

# %% [markdown]
# ## 3. Cross-entropy
#
# A classifier outputs one score (**logit**) per class; softmax turns the scores into
# probabilities $p$. The cross-entropy of an example with true class $t$ is the negative
# log-probability the model gives to it:
#
# $$\ell = -\log p_t = -\log\mathrm{softmax}(z)_t = -\left(z_t - \log\sum_j e^{z_j}\right)$$
#
# It is 0 for a confident correct answer and grows without bound for a confident wrong
# one. Computed as `log(softmax(z))` it would break: a probability that underflows to 0
# gives $-\log 0 = \infty$. So we use the stable `log_softmax` of module 02 and **select**
# the entry of the true class in each row.
#
# **Selecting by composing operations.** Build a one-hot mask $M$ (an ndarray, a constant:
# $M_{i,t_i} = 1$, zeros elsewhere) and compute $\sum_j M_{ij}\,\log p_{ij}$. This is `Mul`
# and `Sum`, both of which already know how to pass gradients back, and the familiar
# gradient $(\mathrm{softmax}(z) - M)/N$ comes out of the chain rule by itself.
#
# **Details that matter in practice.**
# * Logits of shape (B, T, C) (a language model predicting every position) are flattened
#   to (B·T, C), targets (B, T) to (B·T,).
# * Targets are integer class indices, given as a Tensor, an ndarray or a list. A float
#   tensor holding whole numbers (`Tensor([0, 2])` is float32) is accepted; `1.5` is not.
# * `ignore_index`: targets equal to it (padding) contribute nothing, and the mean is over
#   the other targets only. If *every* target is ignored the loss is defined as **0**
#   (not `0/0 = nan`), with zero gradient.
# * A target outside $[0, C)$ is an error that names the offending values (numpy indexing
#   would happily accept $-1$ and pick the last class).

# %% nbgrader={"grade": false, "grade_id": "cross-entropy", "locked": false, "schema_version": 3, "solution": true}
#| export
def _class_targets(targets: Any, name: str) -> np.ndarray:
    """Targets as an int64 array; float arrays must hold whole numbers."""
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if t.dtype.kind == "f":
        if not (np.isfinite(t).all() and (t == np.round(t)).all()):
            raise TypeError(f"{name}: targets must be integer class indices, got dtype {t.dtype} "
                            f"with non-integer values")
        t = t.astype(np.int64)
    elif t.dtype.kind not in "iu":
        raise TypeError(f"{name}: targets must be integer class indices, got dtype {t.dtype}")
    return t.astype(np.int64)


class CrossEntropyLoss(Module):
    """Cross-entropy between logits and integer class targets, computed via log-softmax.

    logits: (N, C) or (..., C); targets: (N,) or (...) -- the logits' shape without the last
    axis -- as a Tensor, ndarray or list. Targets equal to `ignore_index` are skipped; the
    mean is over the others (0 if there are none). `reduction="none"` returns the per-example
    losses with the targets' shape (0 where ignored).
    """
    def __init__(self, ignore_index: int | None = None, reduction: str = "mean"):
        super().__init__()
        ### BEGIN SOLUTION
        self.ignore_index = ignore_index
        self.reduction = _check_reduction(reduction, "CrossEntropyLoss")
        ### END SOLUTION

    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        logits = _as_tensor(logits)
        t = _class_targets(targets, "CrossEntropyLoss")
        if logits.ndim < 1 or t.shape != logits.shape[:-1]:
            raise ValueError(f"CrossEntropyLoss: logits of shape {logits.shape} need targets of "
                             f"shape {logits.shape[:-1]}, got targets of shape {t.shape}")
        ### BEGIN SOLUTION
        C = logits.shape[-1]
        flat_t = t.reshape(-1)
        valid = np.ones(flat_t.shape, dtype=bool) if self.ignore_index is None else flat_t != self.ignore_index
        bad = flat_t[valid & ((flat_t < 0) | (flat_t >= C))]           # out of range, not ignored
        ### END SOLUTION
        if bad.size:
            raise ValueError(f"CrossEntropyLoss: targets must lie in [0, {C}) for {C} classes, "
                             f"got {np.unique(bad)[:10].tolist()}")
        ### BEGIN SOLUTION
        logp = log_softmax(logits.reshape(-1, C), axis=-1)                  # (N, C)
        onehot = np.zeros(logp.shape, dtype=logp.dtype)
        rows = np.nonzero(valid)[0]
        onehot[rows, flat_t[rows]] = 1
        per_example = -(logp * Tensor(onehot, dtype=logp.dtype)).sum(axis=-1)   # (N,), 0 where ignored
        if self.reduction == "none":
            return per_example.reshape(t.shape)
        total = per_example.sum()
        if self.reduction == "sum":
            return total
        return total / max(int(valid.sum()), 1)                            # all ignored: 0, not nan
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-cross-entropy", "locked": true, "points": 4, "schema_version": 3, "solution": false}
import warnings

z = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
labels = np.array([0, 3, 1, 1, 2, 0])
logp_ref = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
ref = -logp_ref[np.arange(6), labels]
ce = CrossEntropyLoss()
assert np.isclose(ce(Tensor(z), labels).item(), ref.mean(), atol=1e-6)
assert np.isclose(ce(Tensor(z), labels.tolist()).item(), ref.mean(), atol=1e-6), "a list works"
assert np.isclose(ce(Tensor(z), Tensor(labels.astype(np.float32))).item(), ref.mean(), atol=1e-6)
assert np.allclose(CrossEntropyLoss(reduction="none")(Tensor(z), labels).data, ref, atol=1e-6)
ignored = labels.copy(); ignored[[1, 4]] = -100
keep = ignored != -100
assert np.isclose(CrossEntropyLoss(ignore_index=-100)(Tensor(z), ignored).item(), ref[keep].mean(), atol=1e-6)
assert CrossEntropyLoss(ignore_index=-100)(Tensor(z), np.full(6, -100)).item() == 0.0, "all ignored: 0"
seq = z.reshape(2, 3, 4)
assert np.isclose(ce(Tensor(seq), labels.reshape(2, 3)).item(), ref.mean(), atol=1e-6), "(B, T, C) logits"
with warnings.catch_warnings():
    warnings.simplefilter("error")
    huge = ce(Tensor([[1000.0, -1000.0], [-1000.0, 1000.0]]), [0, 0]).item()
assert np.isclose(huge, 1000.0), "half the examples are wrong by a margin of 2000"
for bad_targets, error in [([0, 4, 1, 1, 2, 0], ValueError), ([0, -1, 1, 1, 2, 0], ValueError),
                           ([0, 1], ValueError), (np.full(6, 0.5), TypeError)]:
    try:
        ce(Tensor(z), bad_targets)
        raise AssertionError(f"{bad_targets} must be refused")
    except error:
        pass
print("cross-entropy: OK")

# %% [markdown]
# ## 4. Binary cross-entropy on logits
#
# For a yes/no target $y \in [0, 1]$ and a logit $x$ (so $p = \sigma(x)$):
#
# $$\ell = -y \log \sigma(x) - (1-y)\log(1 - \sigma(x))$$
#
# Computing $\sigma(x)$ first fails twice: $\sigma(40)$ is exactly 1 in float32 and
# $\log(1 - 1) = -\infty$. Simplifying with $\log\sigma(x) = -\log(1 + e^{-x})$ gives
# $\ell = \log(1 + e^{x}) - xy$, and writing $\log(1 + e^{x}) = \max(x, 0) + \log(1 + e^{-|x|})$
# keeps every exponent non-positive:
#
# $$\ell = \max(x, 0) - x\,y + \log\!\left(1 + e^{-|x|}\right)$$
#
# No overflow at $|x| = 1000$. We build it from `relu` and Tensor operations, writing
# $|x| = 2\max(x, 0) - x$. That choice matters at exactly $x = 0$, where $\max$ and $|\cdot|$
# have kinks: expressed through the *same* `relu`, the kinks cancel in the chain rule and
# the gradient is the true $\sigma(x) - y$ even there (an independent `abs` would give
# $-y$ at $x = 0$, and zero logits are common at initialisation).

# %% nbgrader={"grade": false, "grade_id": "bce", "locked": false, "schema_version": 3, "solution": true}
#| export
class BinaryCrossEntropyLoss(Module):
    """Binary cross-entropy on logits (sigmoid built in), computed stably.
    logits: any shape; targets: same shape, values in [0, 1]. Returns a scalar tensor
    (`"mean"`, `"sum"`) or the elementwise losses (`"none"`)."""
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        ### BEGIN SOLUTION
        self.reduction = _check_reduction(reduction, "BinaryCrossEntropyLoss")
        ### END SOLUTION

    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        ### BEGIN SOLUTION
        logits = _as_tensor(logits)
        targets = _as_tensor(targets, like=logits)
        ### END SOLUTION
        if logits.shape != targets.shape:
            raise ValueError(f"BinaryCrossEntropyLoss: logits of shape {logits.shape} and targets "
                             f"of shape {targets.shape} differ")
        ### BEGIN SOLUTION
        y = targets.data
        outside = y[~((y >= 0) & (y <= 1))]                    # NaN is outside too
        ### END SOLUTION
        if outside.size:
            raise ValueError(f"BinaryCrossEntropyLoss: targets must lie in [0, 1], got "
                             f"{np.unique(outside)[:10].tolist()}")
        ### BEGIN SOLUTION
        r = relu(logits)                                       # max(x, 0)
        neg_abs = logits - 2 * r                               # -|x|
        losses = r - logits * targets + (1 + neg_abs.exp()).log()
        return _reduce(losses, self.reduction)
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"reduction={self.reduction!r}"
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-bce", "locked": true, "points": 3, "schema_version": 3, "solution": false}
xb = np.array([[-3.0, -0.5, 0.0], [0.5, 2.0, 4.0]])
yb = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 1.0]])
sig = 1 / (1 + np.exp(-xb))
ref_b = -(yb * np.log(sig) + (1 - yb) * np.log(1 - sig))
bce = BinaryCrossEntropyLoss()
assert np.isclose(bce(Tensor(xb), Tensor(yb)).item(), ref_b.mean(), atol=1e-6)
assert np.allclose(BinaryCrossEntropyLoss("none")(Tensor(xb, dtype=np.float64), yb).data, ref_b, atol=1e-12)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    extreme = BinaryCrossEntropyLoss("none")(Tensor([1000.0, -1000.0, 1000.0]), Tensor([1.0, 0.0, 0.0]))
assert np.allclose(extreme.data, [0.0, 0.0, 1000.0]), extreme
try:
    bce(Tensor(xb), Tensor(yb + 1))
    raise AssertionError("targets above 1 must be refused")
except ValueError:
    pass
print("binary cross-entropy: OK")

# %% [markdown]
# ### What an untrained classifier scores
# With random logits near 0 every class gets probability about $1/C$, so the cross-entropy
# starts near $\log C$. Checking this on the first batch catches a badly initialised or
# badly wired model before you spend hours training it.

# %%
for C in (2, 10, 65):
    near_zero = Tensor(np.random.default_rng(C).normal(scale=0.01, size=(256, C)))
    targets = np.random.default_rng(C + 1).integers(0, C, size=256)
    print(f"C={C:3d}: loss {CrossEntropyLoss()(near_zero, targets).item():.4f}   log C = {np.log(C):.4f}")

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory of the one-hot mask.** For TinyGPT with a batch of 64 sequences of 256 tokens
#    and a vocabulary of 65 characters, how large is the one-hot mask in float32? And for a
#    GPT-2 vocabulary of 50 257 tokens? What would selecting with integer indices
#    (`logp[rows, targets]`) save, and what must its backward then do?
# 2. **Mean vs sum.** With `reduction="sum"`, what happens to the size of the gradient when
#    you double the batch size? Why does that make the learning rate depend on the batch
#    size?
# 3. **Stability.** In float32, for which logit $x$ does $\sigma(x)$ round to exactly 1?
#    What would the naive BCE formula return there, and what does ours return?
# 4. **Ignored targets.** Padding tokens are ignored with `ignore_index`. If half of a
#    batch is padding, is the loss a mean over the batch or over the real tokens? Why does
#    the difference matter when batches have different amounts of padding?
