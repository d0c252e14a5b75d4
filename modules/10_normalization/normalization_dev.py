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
# # Module 10: Normalization
#
# **Where you are.** You can build deep networks: convolutions (module 09), dense layers
# (module 03), trained by SGD or Adam (module 06). Stack enough of them and training
# becomes fragile: the scale of each layer's input drifts as the layers below it learn, a
# learning rate that suits one layer is too large for another, and a bad initialisation
# can stall everything. **Normalisation layers** fix the scale of the activations inside the
# network: subtract a mean, divide by a standard deviation, then let the network choose its
# own scale and shift with two learnable vectors. Batch normalisation (2015) made deep CNNs
# routine; layer normalisation (2016) is in every transformer, including the TinyGPT of
# module 16.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `batch_norm_composed`, `layer_norm_composed` | the definitions written with Tensor ops: gradients for free, the reference |
# | `BatchNormFunction`, `batch_norm` | fused batch norm: one `forward`, an analytic `backward` beside it, running statistics |
# | `BatchNorm1d`, `BatchNorm2d` | layers for `(N, C)` / `(N, C, L)` and `(N, C, H, W)` |
# | `LayerNormFunction`, `layer_norm`, `LayerNorm` | fused layer norm over the last dimensions, e.g. `(B, T, C)` |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/normalization.py`.
#
# **The one idea of this module.** Write the maths with Tensor operations first: it is
# short, autograd differentiates it, and it is obviously right. Then derive the backward by
# hand and *fuse* the whole layer into one `Function`. The fused version computes the same
# numbers (the tests check values and gradients against the composed one) with a fraction
# of the passes over memory, which is what makes it fast.
#
# **Points: 15** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-09 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.normalization

# %%
#| export
"""Normalization: BatchNorm1d, BatchNorm2d and LayerNorm, as fused Functions with analytic backward.

Module 10 of TinyTorch (generated from modules/10_normalization/normalization_dev.py; do not edit).

`batch_norm_composed` and `layer_norm_composed` are the same maths written with Tensor
operations (autograd differentiates them); they are the reference the fused ops are
tested against.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Function, Tensor
from tinytorch.core.layers import Module, Parameter

# %% [markdown]
# ## 1. Normalise, then scale and shift
#
# Given a group of numbers $x_1, \dots, x_m$, normalisation computes
#
# $$\mu = \frac{1}{m}\sum_i x_i, \qquad \sigma^2 = \frac{1}{m}\sum_i (x_i - \mu)^2, \qquad
#   \hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad y_i = \gamma\, \hat{x}_i + \beta.$$
#
# $\hat x$ has mean 0 and variance (almost) 1; $\varepsilon$ (1e-5) keeps the division safe
# when a group is constant. The learnable **weight** $\gamma$ (starts at 1) and **bias**
# $\beta$ (starts at 0) give the network its freedom back: with $\gamma = \sigma$ and
# $\beta = \mu$ the layer could even undo itself.
#
# The two layers differ only in **which numbers form a group**:
#
# | layer | input | statistics over | one $(\mu, \sigma^2)$ per | $\gamma, \beta$ shape |
# |---|---|---|---|---|
# | `BatchNorm1d` | `(N, C)` or `(N, C, L)` | axes `(0,)` or `(0, 2)`: the batch (and length) | channel | `(C,)` |
# | `BatchNorm2d` | `(N, C, H, W)` | axes `(0, 2, 3)`: the batch and all pixels | channel | `(C,)` |
# | `LayerNorm` | `(..., *normalized_shape)`, e.g. `(B, T, C)` | the last dimensions | example (each token) | `normalized_shape` |
#
# Batch norm mixes the examples of a batch, so it behaves differently in training and
# evaluation (section 4); layer norm treats each example on its own and does not.
#
# Here is the definition, composed from the Tensor operations of module 01. The mean,
# variance and division each record themselves, so module 05 gives us the gradient.
# (Batch norm here always uses the statistics of the batch, as in training.)

# %% nbgrader={"grade": false, "grade_id": "composed", "locked": false, "schema_version": 3, "solution": true}
#| export
def _channel_shape(ndim: int, C: int) -> tuple[int, ...]:
    """(1, C, 1, ...) with `ndim` axes: a per-channel vector that broadcasts over (N, C, ...)."""
    return (1, C) + (1,) * (ndim - 2)


def batch_norm_composed(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None,
                        eps: float = 1e-5) -> Tensor:
    """Batch norm with batch statistics, from Tensor ops: (N, C, *) -> (N, C, *); weight, bias (C,)."""
    axes = (0,) + tuple(range(2, x.ndim))                   # all but the channel axis
    ### BEGIN SOLUTION
    mean = x.mean(axis=axes, keepdims=True)                  # (1, C, 1, ...)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)  # biased: divide by m
    y = centred / (var + eps).sqrt()
    if weight is not None:
        shape = _channel_shape(x.ndim, x.shape[1])
        y = y * weight.reshape(shape) + bias.reshape(shape)
    return y
    ### END SOLUTION


def layer_norm_composed(x: Tensor, normalized_ndim: int = 1, weight: Tensor | None = None,
                        bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last `normalized_ndim` axes, from Tensor ops; weight, bias have those axes' shape."""
    axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    ### BEGIN SOLUTION
    mean = x.mean(axis=axes, keepdims=True)                  # (..., 1, 1)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    y = centred / (var + eps).sqrt()
    if weight is not None:
        y = y * weight + bias                                # broadcast over the leading axes
    return y
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-composed", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck

rng = np.random.default_rng(0)
images = rng.normal(3.0, 2.0, size=(8, 3, 5, 5))
bn = batch_norm_composed(Tensor(images, dtype=np.float64)).data
assert np.allclose(bn.mean(axis=(0, 2, 3)), 0) and np.allclose(bn.var(axis=(0, 2, 3)), 1, atol=1e-4)
tokens = rng.normal(-1.0, 5.0, size=(2, 4, 6))
ln = layer_norm_composed(Tensor(tokens, dtype=np.float64)).data
assert np.allclose(ln.mean(axis=-1), 0) and np.allclose(ln.var(axis=-1), 1, atol=1e-4)
expected = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-5)
assert np.allclose(ln, expected)
x64 = Tensor(rng.standard_normal((4, 3, 2)), dtype=np.float64, requires_grad=True)
g64 = Tensor(rng.standard_normal(3), dtype=np.float64, requires_grad=True)
b64 = Tensor(rng.standard_normal(3), dtype=np.float64, requires_grad=True)
assert gradcheck(lambda x, g, b: batch_norm_composed(x, g, b), [x64, g64, b64])
print("composed normalisation: OK")

# %% [markdown]
# ## 2. Why fuse? Counting passes over memory
#
# The composed layer norm above records seven operations (mean, subtract, multiply, mean,
# add, sqrt, divide), plus two for the affine part. Each one reads and writes an array the
# size of the input, keeps its inputs alive for backward, and then its backward rule runs
# one to three more elementwise passes. For TinyGPT's activations, `(B, T, C) = (64, 256, 128)`
# float32, every pass moves 8 MiB. Normalisation does almost no arithmetic per number, so
# its speed *is* the number of passes over memory. Writing the whole layer as one
# `Function` lets us choose the passes ourselves.
#
# **The backward, by hand.** For one group of $m$ numbers, with upstream gradient $g_i$
# and $\text{inv} = 1/\sqrt{\sigma^2 + \varepsilon}$:
#
# $$\frac{\partial L}{\partial \beta} = \sum_i g_i, \qquad
#   \frac{\partial L}{\partial \gamma} = \sum_i g_i \hat x_i, \qquad
#   \frac{\partial L}{\partial \hat x_i} = \gamma g_i.$$
#
# $\hat x_i$ depends on $x_i$ directly and through $\mu$ and $\sigma^2$, which depend on
# every $x_j$ of the group. Using $\partial\mu/\partial x_j = 1/m$ and
# $\partial\sigma^2/\partial x_j = 2(x_j - \mu)/m$ and collecting terms gives the
# well-known result
#
# $$\frac{\partial L}{\partial x_i} = \frac{\text{inv}}{m}\left( m\, \hat g_i - \sum_j \hat g_j
#   - \hat x_i \sum_j \hat g_j \hat x_j \right), \qquad \hat g = \gamma g.$$
#
# Read it as: take the gradient, remove its mean (the layer cannot change the group's mean)
# and remove its component along $\hat x$ (nor its variance), then scale by inv. Since
# $\gamma$ is constant within a group for batch norm, the two sums are exactly
# $\gamma\,\partial L/\partial\beta$ and $\gamma\,\partial L/\partial\gamma$: computed once,
# they serve both the parameters and the input.
#
# Forward keeps only $\hat x$ (one array the size of the input) and inv (one number per
# group). In **evaluation** mode batch norm's $\mu, \sigma^2$ are constants, so the input
# gradient is just $\gamma\, \text{inv}\, g$.
#
# **Reductions.** Per-channel sums like $\sum_{n,l} x_{ncl}$ use `np.einsum("ncl->c", x)`
# and `np.einsum("ncl,ncl->c", a, b)`: both are single passes without temporaries, several
# times faster than `(a * b).sum(axis=(0, 2))` in our measurements.

# %% [markdown]
# ## 3. Fused batch normalisation
#
# Inputs of any layout `(N, C, *)` are viewed as `(N, C, L)` (a free reshape), so one
# implementation serves `BatchNorm1d` and `BatchNorm2d`.
#
# **Training vs evaluation.** In training, $\mu, \sigma^2$ come from the batch. At test
# time there may be a single example, and its prediction must not depend on what else is
# in the batch, so batch norm keeps **running statistics**, exponential moving averages
# updated at every training step:
#
# $$\text{running\_mean} \leftarrow (1 - m)\,\text{running\_mean} + m\,\mu_\text{batch}, \qquad
#   \text{running\_var} \leftarrow (1 - m)\,\text{running\_var} + m\,\frac{n}{n - 1}\sigma^2_\text{batch}$$
#
# with momentum $m$ (0.1) and $n$ values per channel. Note the two variances (PyTorch's
# convention): the batch is normalised with the *biased* $\sigma^2$ (divide by $n$), but the
# running estimate of the population variance uses the *unbiased* one (divide by $n - 1$).
# In evaluation, forward uses the running statistics and updates nothing.
#
# Like PyTorch's functional `batch_norm`, the op receives the running arrays and updates
# them **in place** during a training forward pass; they are plain arrays, not inputs of the
# graph (no gradient flows into them).

# %% nbgrader={"grade": false, "grade_id": "batchnorm-function", "locked": false, "schema_version": 3, "solution": true}
#| export
class BatchNormFunction(Function):
    """Batch norm of x (N, C, *) with optional weight, bias (C,) -> (N, C, *).

    training=True: batch statistics over every axis but 1, and (when given) running_mean /
    running_var (C,) updated in place with `momentum` (unbiased variance). training=False:
    the running statistics normalise. Keeps xhat (input-sized) and inv_std (C,).
    """
    def forward(self, x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                training: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None) -> np.ndarray:
        if x.dtype.kind != "f":
            x = x.astype(DEFAULT_FLOAT)
        N, C = x.shape[:2]
        x3 = x.reshape(N, C, -1)                                 # (N, C, L), a view
        n = N * x3.shape[2]                                      # values per channel
        ### BEGIN SOLUTION
        if training:
            mean = np.einsum("ncl->c", x3) / n                   # (C,)
            xc = x3 - mean[:, None]                              # (N, C, L), new array
            var = np.einsum("ncl,ncl->c", xc, xc) / n            # (C,), biased
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += momentum * mean
                running_var *= 1.0 - momentum
                running_var += (momentum * n / (n - 1)) * var    # unbiased
        else:
            mean, var = running_mean.astype(x.dtype, copy=False), running_var.astype(x.dtype, copy=False)
            xc = x3 - mean[:, None]
        inv_std = 1.0 / np.sqrt(var + eps)                       # (C,)
        xc *= inv_std[:, None]                                   # xhat, in place
        self.xhat, self.inv_std, self.training, self.n = xc, inv_std, training, n
        self.weight = weight
        if weight is None:
            return xc.reshape(x.shape)
        y = xc * weight[:, None]
        y += bias[:, None]
        return y.reshape(x.shape)
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        ### BEGIN SOLUTION
        xhat, n = self.xhat, self.n
        g3 = grad.reshape(xhat.shape)                            # (N, C, L), a view
        db = np.einsum("ncl->c", g3)                             # dL/dbeta  (C,)
        dw = np.einsum("ncl,ncl->c", g3, xhat)                   # dL/dgamma (C,)
        dx = None
        if self.inputs[0].requires_grad:
            scale = self.inv_std if self.weight is None else self.inv_std * self.weight   # (C,)
            if self.training:                                    # remove mean and xhat component
                dx = xhat * (dw / n)[:, None]
                np.subtract(g3, dx, out=dx)
                dx -= (db / n)[:, None]
                dx *= scale[:, None]
            else:                                                # constant statistics
                dx = g3 * scale[:, None]
            dx = dx.reshape(grad.shape)
        if self.weight is None:
            return (dx,)
        return (dx, dw if self.inputs[1].requires_grad else None, db if self.inputs[2].requires_grad else None)
        ### END SOLUTION


def batch_norm(x: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Fused batch norm of x (N, C, *). Updates running_mean / running_var (C,) in place when
    training; normalises with them when not (then they are required)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C, ...), got {x.shape}")
    C = x.shape[1]
    for name, v in [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)]:
        if v is not None and v.shape != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for input {x.shape}, got {v.shape}")
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: pass both weight and bias, or neither")
    if training and x.size // C < 2:
        raise ValueError(f"batch_norm: training needs more than one value per channel, got input {x.shape}")
    if training and running_mean is not None and not (isinstance(momentum, numbers.Real) and 0 <= momentum <= 1):
        raise ValueError(f"batch_norm: momentum must be a number in [0, 1], got {momentum!r}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    inputs = (x,) if weight is None else (x, weight, bias)
    return BatchNormFunction.apply(*inputs, training=training, momentum=momentum, eps=eps,
                                   running_mean=running_mean, running_var=running_var)

# %% [markdown]
# The fused op must agree with the composed one, values *and* gradients, and its backward
# with finite differences.

# %% nbgrader={"grade": true, "grade_id": "test-batchnorm-function", "locked": true, "points": 4, "schema_version": 3, "solution": false}
rng = np.random.default_rng(1)
for shape in [(6, 3), (4, 3, 5), (2, 3, 4, 4)]:
    xs = rng.normal(2.0, 3.0, size=shape)
    gs = rng.standard_normal(shape)
    fused_in = [Tensor(xs, dtype=np.float64, requires_grad=True), Tensor(rng.standard_normal(3), dtype=np.float64, requires_grad=True),
                Tensor(rng.standard_normal(3), dtype=np.float64, requires_grad=True)]
    plain_in = [Tensor(t.data.copy(), dtype=np.float64, requires_grad=True) for t in fused_in]
    fused = batch_norm(fused_in[0], None, None, fused_in[1], fused_in[2])
    plain = batch_norm_composed(*plain_in)
    assert np.allclose(fused.data, plain.data), shape
    fused.backward(gs)
    plain.backward(gs)
    for a, b in zip(fused_in, plain_in):
        assert np.allclose(a.grad.data, b.grad.data), shape
rm, rv = np.zeros(3), np.ones(3)
assert gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=True), fused_in)
assert gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=False), fused_in)
print("fused batch norm: OK")

# %% [markdown]
# ## 4. The BatchNorm layers
#
# The layers own `weight` (ones) and `bias` (zeros) as `Parameter`s when `affine=True`, and
# the running statistics as plain numpy arrays: `running_mean` (zeros), `running_var`
# (ones) and the counter `num_batches_tracked`. They are *buffers*: part of the model's
# state but not learnt by gradient descent, so they must not be `Parameter`s (the optimizer
# would update them). `register_buffer` (module 02) records them so that `state_dict()`
# saves them and `load_state_dict()` restores them: a checkpoint without the running
# statistics would evaluate differently. `momentum=None` switches to a cumulative average over all batches
# seen, $m = 1/\text{num\_batches\_tracked}$.
#
# `model.train()` / `model.eval()` (module 02) set `training`, which picks the statistics.

# %% nbgrader={"grade": false, "grade_id": "batchnorm-layers", "locked": false, "schema_version": 3, "solution": true}
#| export
class _BatchNorm(Module):
    """Shared code of BatchNorm1d and BatchNorm2d (see those)."""
    _ndims: tuple[int, ...] = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, dtype: Any = DEFAULT_FLOAT):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, (int, np.integer)) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not (isinstance(momentum, numbers.Real) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        if not (isinstance(eps, numbers.Real) and eps > 0):
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        self.num_features, self.eps, self.momentum, self.affine = int(num_features), float(eps), momentum, bool(affine)
        ### BEGIN SOLUTION
        C = self.num_features
        self.weight = Parameter(np.ones(C), dtype=dtype) if affine else None
        self.bias = Parameter(np.zeros(C), dtype=dtype) if affine else None
        self.register_buffer("running_mean", np.zeros(C, dtype=dtype))   # buffers: saved, not learnt
        self.register_buffer("running_var", np.ones(C, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            layout = self._layout.format(C=self.num_features)
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected input {layout}, got {x.shape}")
        ### BEGIN SOLUTION
        momentum = self.momentum
        if self.training and momentum is None:                   # cumulative moving average
            momentum = 1.0 / (self.num_batches_tracked + 1)
        out = batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         training=self.training, momentum=momentum, eps=self.eps)
        if self.training:
            self.num_batches_tracked += 1
        return out
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L): statistics per channel over N (and L).

    weight, bias: Parameters (C,) when affine. running_mean, running_var: arrays (C,).
    """
    _ndims = (2, 3)
    _layout = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): statistics per channel over N, H and W.

    weight, bias: Parameters (C,) when affine. running_mean, running_var: arrays (C,).
    """
    _ndims = (4,)
    _layout = "(N, {C}, H, W)"

# %% nbgrader={"grade": true, "grade_id": "test-batchnorm-layers", "locked": true, "points": 4, "schema_version": 3, "solution": false}
bn2 = BatchNorm2d(4)
assert [n for n, _ in bn2.named_parameters()] == ["weight", "bias"] and bn2.weight.dtype == np.float32
rng = np.random.default_rng(2)
batches = [rng.normal(5.0, 2.0, size=(8, 4, 3, 3)).astype(np.float32) for _ in range(3)]
mean_ref, var_ref = np.zeros(4), np.ones(4)
for b in batches:
    out = bn2(Tensor(b))
    assert np.allclose(out.data.mean(axis=(0, 2, 3)), 0, atol=1e-5), "training: batch statistics"
    mean_ref = 0.9 * mean_ref + 0.1 * b.mean(axis=(0, 2, 3))
    var_ref = 0.9 * var_ref + 0.1 * b.var(axis=(0, 2, 3), ddof=1)
assert np.allclose(bn2.running_mean, mean_ref, rtol=1e-5) and np.allclose(bn2.running_var, var_ref, rtol=1e-5)
assert bn2.num_batches_tracked == 3
bn2.eval()
single = bn2(Tensor(batches[0][:1])).data
expected = (batches[0][:1] - mean_ref[None, :, None, None]) / np.sqrt(var_ref[None, :, None, None] + 1e-5)
assert np.allclose(single, expected, atol=1e-5), "evaluation: running statistics"
assert np.allclose(bn2.running_mean, mean_ref, rtol=1e-5), "evaluation updates nothing"
assert BatchNorm1d(5)(Tensor(np.ones((2, 5, 7)) * np.arange(2)[:, None, None])).shape == (2, 5, 7)
assert BatchNorm1d(5, affine=False).num_parameters() == 0
try:
    BatchNorm2d(16)(Tensor(np.ones((2, 3, 8, 8))))
    raise AssertionError("3 channels are not 16")
except ValueError:
    pass
print(bn2)
print("BatchNorm layers: OK")

# %% [markdown]
# ## 5. Fused layer normalisation
#
# Layer norm normalises each example (each token of a `(B, T, C)` sequence) over its last
# dimensions. View the input as a matrix `(R, D)`: `R` rows (all leading axes together),
# `D` numbers per row (the product of `normalized_shape`). Every statistic is a per-row
# reduction along the contiguous axis, and the same formulas as above apply with
# $m = D$ and a $\gamma$ that varies *within* the group, so here the two sums of the input
# gradient are $\sum_j \gamma_j g_j$ and $\sum_j \gamma_j g_j \hat x_j$.
#
# **Reductions without temporaries.** Row sums (`np.einsum("rd->r", x)`), weighted row sums
# (`np.einsum("rd,rd->r", a, b)`) and column sums (`np.einsum("rd,rd->d", g, xhat)`) each
# read their operands once and allocate only the small result. (A matrix-vector product
# `X @ ones(D)` is as fast on a quiet machine, but BLAS starts threads for it, and on a busy
# machine those threads can make it a hundred times slower.) Forward and backward each make
# about six passes over the `(R, D)` array; the composed version makes about twenty.
#
# TinyGPT (module 16) calls this on `(B, T, 128)` activations twice per block, forward and
# backward, which is why it is fused.

# %% nbgrader={"grade": false, "grade_id": "layernorm-function", "locked": false, "schema_version": 3, "solution": true}
#| export
class LayerNormFunction(Function):
    """Layer norm of x (..., *S) over its last `normalized_ndim` axes S; optional weight, bias of shape S.

    Keeps xhat (input-sized, as (R, D)) and inv_std (R,).
    """
    def forward(self, x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                normalized_ndim: int = 1, eps: float = 1e-5) -> np.ndarray:
        if x.dtype.kind != "f":
            x = x.astype(DEFAULT_FLOAT)
        D = math.prod(x.shape[x.ndim - normalized_ndim:])
        x2 = x.reshape(-1, D)                                    # (R, D)
        ### BEGIN SOLUTION
        mean = np.einsum("rd->r", x2) * (1.0 / D)                # (R,)
        xc = x2 - mean[:, None]                                  # (R, D), new array
        var = np.einsum("rd,rd->r", xc, xc) * (1.0 / D)          # (R,), biased
        inv_std = 1.0 / np.sqrt(var + eps)
        xc *= inv_std[:, None]                                   # xhat, in place
        self.xhat, self.inv_std = xc, inv_std
        self.w = None if weight is None else weight.reshape(D)
        if weight is None:
            return xc.reshape(x.shape)
        y = xc * self.w
        y += bias.reshape(D)
        return y.reshape(x.shape)
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        ### BEGIN SOLUTION
        xhat, w = self.xhat, self.w
        R, D = xhat.shape
        g2 = grad.reshape(R, D)                                  # (R, D), a view
        need = [t.requires_grad for t in self.inputs]
        dw = db = None
        if w is not None and need[1]:
            dw = np.einsum("rd,rd->d", g2, xhat).reshape(self.inputs[1].shape)   # column sums
        if w is not None and need[2]:
            db = np.einsum("rd->d", g2).reshape(self.inputs[2].shape)
        dx = None
        if need[0]:
            gw = g2 * w if w is not None else g2.copy()          # gamma*g, a new array (R, D)
            mean_g = np.einsum("rd->r", gw) * (1.0 / D)          # (R,)
            mean_gx = np.einsum("rd,rd->r", gw, xhat) * (1.0 / D)   # (R,)
            gw -= mean_g[:, None]
            gw -= xhat * mean_gx[:, None]
            gw *= self.inv_std[:, None]
            dx = gw.reshape(grad.shape)
        return (dx,) if w is None else (dx, dw, db)
        ### END SOLUTION


def layer_norm(x: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Fused layer norm of x (..., *normalized_shape) over its last len(normalized_shape) axes."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    shape = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"layer_norm: expected input (..., {', '.join(map(str, shape))}), got {x.shape}")
    for name, v in [("weight", weight), ("bias", bias)]:
        if v is not None and v.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {v.shape}")
    if (weight is None) != (bias is None):
        raise ValueError("layer_norm: pass both weight and bias, or neither")
    inputs = (x,) if weight is None else (x, weight, bias)
    return LayerNormFunction.apply(*inputs, normalized_ndim=len(shape), eps=eps)


class LayerNorm(Module):
    """Layer norm over the last dimensions: (..., *normalized_shape) -> same shape.

    weight (ones) and bias (zeros) have shape normalized_shape (when elementwise_affine).
    Same behaviour in training and evaluation.
    """
    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, dtype: Any = DEFAULT_FLOAT):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be a positive int or a tuple of them, "
                             f"got {normalized_shape!r}")
        if not (isinstance(eps, numbers.Real) and eps > 0):
            raise ValueError(f"LayerNorm: eps must be positive, got {eps!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = float(eps)
        ### BEGIN SOLUTION
        self.weight = Parameter(np.ones(self.normalized_shape), dtype=dtype) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape), dtype=dtype) if elementwise_affine else None
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        shape = self.normalized_shape
        if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
            raise ValueError(f"LayerNorm({shape}): expected input (..., {', '.join(map(str, shape))}), got {x.shape}")
        ### BEGIN SOLUTION
        inputs = (x,) if self.weight is None else (x, self.weight, self.bias)
        return LayerNormFunction.apply(*inputs, normalized_ndim=len(shape), eps=self.eps)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"

# %% nbgrader={"grade": true, "grade_id": "test-layernorm", "locked": true, "points": 4, "schema_version": 3, "solution": false}
rng = np.random.default_rng(3)
ln = LayerNorm(6)
assert ln.weight.shape == (6,) and ln.bias.shape == (6,) and ln.weight.dtype == np.float32
seq = rng.normal(4.0, 3.0, size=(2, 5, 6)).astype(np.float32)
out = ln(Tensor(seq))
assert out.shape == (2, 5, 6) and out.dtype == np.float32
assert np.allclose(out.data.mean(-1), 0, atol=1e-5) and np.allclose(out.data.var(-1), 1, atol=1e-3)
for shape, nd in [((3, 4, 5), 1), ((2, 3, 4, 2), 2), ((5, 3), 2)]:
    xs, gs = rng.standard_normal(shape), rng.standard_normal(shape)
    wshape = shape[len(shape) - nd:]
    fused_in = [Tensor(xs, dtype=np.float64, requires_grad=True), Tensor(rng.standard_normal(wshape), dtype=np.float64, requires_grad=True),
                Tensor(rng.standard_normal(wshape), dtype=np.float64, requires_grad=True)]
    plain_in = [Tensor(t.data.copy(), dtype=np.float64, requires_grad=True) for t in fused_in]
    fused = layer_norm(fused_in[0], wshape, fused_in[1], fused_in[2])
    plain = layer_norm_composed(plain_in[0], nd, plain_in[1], plain_in[2])
    assert np.allclose(fused.data, plain.data)
    fused.backward(gs)
    plain.backward(gs)
    for a, b in zip(fused_in, plain_in):
        assert np.allclose(a.grad.data, b.grad.data), shape
    assert gradcheck(lambda x, w, b: layer_norm(x, wshape, w, b), fused_in)
try:
    ln(Tensor(np.ones((2, 5, 4))))
    raise AssertionError("the last dimension 4 is not 6")
except ValueError:
    pass
print(ln)
print("LayerNorm: OK")

# %% [markdown]
# ## 6. How much does fusing buy?
#
# Forward and backward of layer norm on TinyGPT-sized activations, composed vs fused.
# (Timings depend on your machine and on what else runs on it; compare the ratio.)

# %%
import time


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


rng = np.random.default_rng(4)
acts = Tensor(rng.standard_normal((16, 256, 128)).astype(np.float32), requires_grad=True)
upstream = rng.standard_normal(acts.shape).astype(np.float32)
ln128 = LayerNorm(128)


def composed_step():
    layer_norm_composed(acts, 1, ln128.weight, ln128.bias).backward(upstream)


def fused_step():
    ln128(acts).backward(upstream)


t_composed, t_fused = best_of(composed_step), best_of(fused_step)
print(f"LayerNorm on {acts.shape}, forward + backward: composed {t_composed * 1e3:.2f} ms, "
      f"fused {t_fused * 1e3:.2f} ms ({t_composed / t_fused:.1f}x)")
imgs = Tensor(rng.standard_normal((32, 16, 16, 16)).astype(np.float32), requires_grad=True)
bn16 = BatchNorm2d(16)
t_composed = best_of(lambda: batch_norm_composed(imgs, bn16.weight, bn16.bias).backward(np.ones(imgs.shape, np.float32)))
t_fused = best_of(lambda: bn16(imgs).backward(np.ones(imgs.shape, np.float32)))
print(f"BatchNorm2d on {imgs.shape}, forward + backward: composed {t_composed * 1e3:.2f} ms, "
      f"fused {t_fused * 1e3:.2f} ms ({t_composed / t_fused:.1f}x)")

# %% [markdown]
# ## 7. What normalisation does to a deep stack
#
# Twenty `Dense(64, 64) + ReLU` layers initialised a little too small: the signal shrinks
# layer after layer (module 03's question 3). With a `BatchNorm1d` after each `Dense`, every
# layer's output is back to unit scale whatever the weights do.

# %%
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Sequential

rng = np.random.default_rng(5)
plain_layers, bn_layers = [], []
for _ in range(20):
    d = Dense(64, 64, rng=rng)
    d.weight.data *= 0.5                                      # a poor initialisation
    plain_layers += [d, ReLU()]
    bn_layers += [d, BatchNorm1d(64), ReLU()]
batch = Tensor(rng.standard_normal((128, 64)).astype(np.float32))
print(f"second moment after 20 layers: plain {np.mean(Sequential(plain_layers)(batch).data ** 2):.2e}, "
      f"with BatchNorm1d {np.mean(Sequential(bn_layers)(batch).data ** 2):.2f}")

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory kept for backward.** The fused batch norm keeps one input-sized array
#    ($\hat x$). List what the composed version keeps alive until backward (look at which
#    inputs each op of module 01 stores). For a ResNet-style network with a batch norm after
#    every convolution, what fraction of the activation memory is that?
# 2. **Batch size.** With batch size 1 and `BatchNorm1d` on `(N, C)` inputs, training fails
#    (one value per channel). What happens with batch size 2? Why does layer norm have no
#    such problem, and why do transformers (module 16) prefer it?
# 3. **Train/eval mismatch.** A model that scores well in training mode but badly after
#    `model.eval()` usually has wrong running statistics. Name two ways they go wrong
#    (think of momentum and of the data seen in the last training batches).
# 4. **Folding into the convolution.** In evaluation mode batch norm is an affine map per
#    channel: $y = a x + b$ with constants $a, b$. Show that a `Conv2d` followed by an
#    evaluation-mode `BatchNorm2d` equals a single `Conv2d` with rescaled weights and bias.
#    What does that save at inference time?
# 5. **Precision.** The variance is computed as the mean of $(x - \mu)^2$, in two passes.
#    The one-pass formula $E[x^2] - E[x]^2$ needs one pass less. Try both in float32 on
#    data with mean 1000 and standard deviation 1: what goes wrong, and why?
