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
# # Module 11: Attention
#
# **Where you are.** You can build and train networks of `Dense` layers (modules 03–07),
# feed them batches (08), look at images with convolutions (09) and keep deep stacks
# stable with normalisation (10). All of these treat their input as a fixed-size thing.
# Text is not: a sentence is a *sequence* whose length varies, and the meaning of a word
# depends on words far away from it. This module builds the layer that lets every
# position of a sequence read from every other position. Module 16 stacks it into
# TinyGPT.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `causal_mask(T)`, `additive_mask(allowed)` | the one mask convention of TinyTorch: a float array added to the scores, 0 = may attend, -inf = may not |
# | `ScaledMaskedSoftmax`, `scaled_masked_softmax(scores, scale, mask)` | softmax(scale·scores + mask) as one op with its own backward: the hot path of attention |
# | `scaled_dot_product_attention(q, k, v, mask, dropout)` | softmax(q kᵀ / √d + mask) v over any leading axes; returns the output and the weights |
# | `SelfAttention(d_model, causal)` | one head, three `Dense` projections: the version to understand first |
# | `KVCache` | preallocated keys and values of the positions seen so far, for fast generation |
# | `MultiHeadAttention(d_model, num_heads, ...)` | several heads computed at once by reshaping, an output projection, dropout, masks, cross-attention and the KV cache |
# | `plot_attention(weights, tokens, path)` | a heatmap of who attends to whom |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/attention.py`.
#
# **The one idea of this module.** Attention is a *soft dictionary lookup* computed with
# two matrix products: each position asks a question (its **query**), every position
# advertises what it holds (its **key**), and each position receives the average of all
# **values**, weighted by how well its query matches each key. Everything else (scaling,
# masking, heads, caching) is bookkeeping around those two products, and we never write a
# Python loop over the batch or the heads: one batched `@` does them all. Almost no
# gradient code either: attention is a composition of `MatMul`, `Reshape` and `Permute`,
# whose backward rules module 05 already has, around one fused op, `ScaledMaskedSoftmax`
# (scale, mask and softmax of the `(T, T)` scores in one pass, with its three-line
# backward), because those are the largest arrays of the model.
#
# **Points: 22** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-10 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.attention

# %%
#| export
"""Module 11 of TinyTorch, attention (generated from modules/11_attention/attention_dev.py; do not edit)."""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Function, Tensor
from tinytorch.core.activations import softmax
from tinytorch.core.layers import Dense, Dropout, Module
from tinytorch.core.autograd import is_grad_enabled

# %% [markdown]
# ## 1. Why attention
#
# Take the sentence *"The animal didn't cross the street because **it** was too tired."*
# To represent *it*, a model must look back seven words to *animal*. A `Dense` layer per
# position never mixes positions, a convolution (module 09) mixes only neighbours, and a
# recurrent network must carry *animal* through six sequential updates.
#
# Attention gives every position a direct, content-based connection to every other
# position, and computes all of them in parallel. For an input `x` of shape `(T, C)`:
#
# $$Q = x W_Q,\quad K = x W_K,\quad V = x W_V \qquad (T, C)(C, d) = (T, d)$$
#
# * row $i$ of $Q$ is what position $i$ is **looking for**,
# * row $j$ of $K$ is what position $j$ **offers** (its label),
# * row $j$ of $V$ is what position $j$ **hands over** if chosen.
#
# The match between query $i$ and key $j$ is the dot product $q_i \cdot k_j$; a softmax
# over $j$ turns the matches into weights that sum to 1, and the output of position $i$
# is the weighted average of the values:
#
# $$\mathrm{out}_i = \sum_j \mathrm{softmax}_j\!\left(\frac{q_i \cdot k_j}{\sqrt{d}}\right) v_j
# \qquad\Longleftrightarrow\qquad
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right) V$$
#
# | tensor | shape | |
# |---|---|---|
# | $Q$ | $(T_q, d)$ | one query per output position |
# | $K$ | $(T_k, d)$ | one key per input position |
# | $V$ | $(T_k, d_v)$ | one value per input position |
# | $S = QK^\top/\sqrt d$ | $(T_q, T_k)$ | all scores at once: **one** matrix product |
# | $A = \mathrm{softmax}(S)$ | $(T_q, T_k)$ | each row sums to 1 |
# | $A V$ | $(T_q, d_v)$ | **one** more matrix product |
#
# With a batch and several heads in front, `(B, nh, T, d)`, the same two lines work
# unchanged because `@` broadcasts over all leading axes (module 01).
#
# ## 2. Why divide by √d
#
# Suppose the components of $q$ and $k$ are independent with mean 0 and variance 1. Then
# $q \cdot k = \sum_{m=1}^{d} q_m k_m$ is a sum of $d$ terms of variance 1: its variance
# is $d$, its standard deviation $\sqrt d$. With $d = 64$, scores are spread over about
# $\pm 8$, and softmax of such numbers is nearly one-hot. A saturated softmax has a
# vanishing gradient ($s(1-s) \approx 0$ for $s \approx 0$ or $1$), so the layer stops
# learning. Dividing by $\sqrt d$ brings the scores back to variance 1, whatever the head
# size. The cell below measures it.

# %%
def softmax_np(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)

_rng = np.random.default_rng(0)
for d in (4, 64, 512):
    q = _rng.standard_normal((200, 1, d))               # 200 queries
    k = _rng.standard_normal((200, 16, d))              # 16 keys for each
    scores = (q * k).sum(axis=-1)                       # (200, 16) dot products q.k
    peak_raw = softmax_np(scores).max(axis=-1).mean()
    peak_scaled = softmax_np(scores / math.sqrt(d)).max(axis=-1).mean()
    print(f"d={d:4d}: std(q.k) = {scores.std():5.2f} (sqrt(d) = {math.sqrt(d):5.2f});  largest of 16 "
          f"softmax weights, on average: unscaled {peak_raw:.3f}, scaled {peak_scaled:.3f}")

# %% [markdown]
# Without scaling, at `d = 512` the softmax puts almost all its weight on one key before
# training starts; with scaling the weights stay spread out (uniform: 1/16 = 0.0625).
#
# **Implementation note.** The factor $1/\sqrt d$ is a Python `float`: a numpy float64
# scalar would silently turn float32 scores into float64 (module 01's dtype rule).
#
# ## 3. Masks: who may attend to whom
#
# Some scores must not count: a **causal** model (GPT) predicts token $t+1$ from tokens
# $\le t$ (reading $j > i$ it would copy the answer), and nobody attends to **padding**.
# One convention everywhere: a mask is a float array **added to the scores** before the
# softmax, broadcasting against `(..., Tq, Tk)`:
#
# $$A = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt d} + M\right),\qquad
#   M_{ij} = \begin{cases} 0 & \text{query } i \text{ may attend to key } j\\ -\infty & \text{it may not}\end{cases}$$
#
# Since $e^{-\infty} = 0$, a masked key gets *exactly* zero weight, and the remaining
# weights still sum to 1. The causal mask of `T = 4`:
#
# ```
#          key j:  0     1     2     3
# query 0  [[  0,  -inf, -inf, -inf],
# query 1   [  0,    0,  -inf, -inf],
# query 2   [  0,    0,    0,  -inf],
# query 3   [  0,    0,    0,    0 ]]
# ```
#
# **Why -inf and not -1e9?** Both give zero weight in float32, but -1e9 overflows float16
# and *hides* a bug: a row where every key is masked silently becomes a uniform average,
# while with -inf it is `0/0 = nan`. Softmax subtracts the row maximum first (module 02),
# so -inf is safe as long as each row keeps one finite score; the attention functions
# refuse a fully masked row with an error instead of returning `nan`.
#
# **Why additive and not boolean?** Additive masks compose by addition (causal + padding),
# can carry soft or learned biases (a mask `Tensor` that requires grad gets a gradient),
# and cost one `+`; booleans are ambiguous ("keep" or "hide"?), so TinyTorch refuses them
# and offers `additive_mask(allowed)`, where `allowed[i, j] = True` means *i may attend to j*.
#
# **Queries that start later.** In generation (section 6) the `T` queries are the last of
# `past + T` keys: `causal_mask(T, past=p)` is the `(T, p + T)` mask in which query `i`
# (absolute position `p + i`) may attend to keys `j <= p + i`.

# %% nbgrader={"grade": false, "grade_id": "masks", "locked": false, "schema_version": 3, "solution": true}
#| export
def causal_mask(T: int, dtype: Any = DEFAULT_FLOAT, past: int = 0) -> np.ndarray:
    """Additive causal mask (T, past + T): 0 where query i (at position past + i) may see key j <= past + i, else -inf."""
    if int(T) < 1 or int(past) < 0:
        raise ValueError(f"causal_mask: need T >= 1 and past >= 0, got T={T}, past={past}")
    ### BEGIN SOLUTION
    query_pos = np.arange(T)[:, None] + past            # (T, 1) absolute positions
    key_pos = np.arange(past + T)[None, :]               # (1, past + T)
    return np.where(key_pos <= query_pos, 0.0, -np.inf).astype(dtype)
    ### END SOLUTION


def additive_mask(allowed: Any, dtype: Any = DEFAULT_FLOAT) -> np.ndarray:
    """Boolean "may attend" array -> additive float mask (True -> 0, False -> -inf), same shape."""
    allowed = allowed.data if isinstance(allowed, Tensor) else np.asarray(allowed)
    if allowed.dtype != np.bool_:
        raise TypeError(f"additive_mask: expects a boolean array (True = may attend), got dtype {allowed.dtype}")
    ### BEGIN SOLUTION
    return np.where(allowed, 0.0, -np.inf).astype(dtype)
    ### END SOLUTION


def _add_masks(causal: np.ndarray | None, mask: Tensor | None, dtype: Any) -> Tensor | np.ndarray | None:
    """The sum of two additive masks, either of which may be None (masks compose by addition)."""
    ### BEGIN SOLUTION
    if mask is None:
        return causal
    return mask if causal is None else Tensor(causal, dtype=dtype) + mask   # a learned mask stays in the graph
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test-masks", "locked": true, "points": 2, "schema_version": 3, "solution": false}
m = causal_mask(4)
print(m)
assert m.shape == (4, 4) and m.dtype == np.float32
assert (m[np.tril_indices(4)] == 0).all(), "on and below the diagonal: may attend"
assert np.isneginf(m[np.triu_indices(4, k=1)]).all(), "above the diagonal: -inf"
assert causal_mask(3, dtype=np.float64).dtype == np.float64
late = causal_mask(2, past=3)
assert late.shape == (2, 5) and np.isneginf(late[0, 4]) and (late[0, :4] == 0).all() and (late[1] == 0).all()
allowed = np.array([[True, False], [True, True]])
assert np.array_equal(additive_mask(allowed), causal_mask(2)), "tril(True) is the causal mask"
try:
    additive_mask(np.array([[1, 0], [1, 1]]))
    raise AssertionError("an integer array is not a boolean mask")
except TypeError:
    pass
print("masks: OK")

# %% [markdown]
# ## 4. Scaled dot-product attention
#
# The function below is the heart of the module. Shapes, with any leading axes `...`
# (none, a batch `B`, or a batch and heads `B, nh`), broadcast like `@`:
#
# ```
# q (..., Tq, d)   k (..., Tk, d)   v (..., Tk, dv)   mask broadcastable to (..., Tq, Tk)
# scores  = q @ kᵀ                    (..., Tq, d) @ (..., d, Tk) -> (..., Tq, Tk)
# weights = softmax(scores / sqrt(d) + mask, axis=-1)    over the keys: each row sums to 1
# out     = dropout(weights) @ v       (..., Tq, Tk) @ (..., Tk, dv) -> (..., Tq, dv)
# ```
#
# `k.transpose(-2, -1)` swaps the last two axes without copying (a view). The optional
# `dropout` (a `Dropout` module from module 03) zeroes random attention weights during
# training: a position cannot rely on one particular other position. The function returns
# the output *and* the weights **before** dropout (rows sum to 1), for inspection and
# plotting.
#
# The helpers in the next cell check shapes and masks, so a mistake gets a message that
# names the shapes.

# %%
#| export
def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, who: str) -> tuple[int, ...]:
    """Check q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv); return the scores' shape (..., Tq, Tk)."""
    try:
        assert min(q.ndim, k.ndim, v.ndim) >= 2 and q.shape[-1] == k.shape[-1] and k.shape[-2] == v.shape[-2]
        same = q.shape[:-2] == k.shape[:-2] == v.shape[:-2]                  # broadcast only when needed
        return (*(q.shape[:-2] if same else np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])),
                q.shape[-2], k.shape[-2])
    except (AssertionError, ValueError):
        raise ValueError(f"{who}: q {q.shape}, k {k.shape}, v {v.shape} do not fit (..., Tq, d), (..., Tk, d), (..., Tk, dv)") from None


def _check_mask(mask: Any, scores_shape: tuple[int, ...], dtype: Any, who: str) -> Tensor | None:
    """Check an additive mask (or None) against the scores (..., Tq, Tk); return it as a Tensor of `dtype`."""
    if mask is None:
        return None
    data = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if data.dtype.kind != "f":
        raise TypeError(f"{who}: a mask is a float array (0 = may attend, -inf = may not; for booleans use "
                        f"additive_mask(allowed)), got dtype {data.dtype}")
    fits = data.ndim <= len(scores_shape) and all(a in (1, b) for a, b in zip(data.shape[::-1], scores_shape[::-1]))
    if not fits or (np.isneginf(data).all(axis=-1).any() if data.ndim else np.isneginf(data)):
        raise ValueError(f"{who}: mask of shape {data.shape} does not broadcast to the scores {tuple(scores_shape)} "
                         f"or hides every key from some query (softmax 0/0 = nan)")
    return Tensor(data, dtype=dtype) if not isinstance(mask, Tensor) else mask if mask.dtype == dtype else mask.astype(dtype)

# %% [markdown]
# ### One op for scale, mask and softmax
#
# Between the two products, the scores `(..., Tq, Tk)` are the largest arrays of the
# whole model: at context `T` they hold `T²` numbers per head, against `T·d` for queries,
# keys and values. Composed from module-05 ops, "scale, add the mask, softmax" costs a
# `Mul`, an `Add` and a `Softmax` node, and the graph keeps each node's `(..., Tq, Tk)`
# output alive until backward: four such arrays per layer with the scores themselves.
# Fused into one `Function`, the forward writes **one** array, in place, and only two stay
# alive (the scores, an input of the op, and the weights): half the memory held for
# backward. The step time hardly changes, because the matrix products
# dominate it (module 14 measures where the time of a step goes). The fused forward:
#
# $$z = \text{scale}\cdot S + M,\qquad A = \mathrm{softmax}(z) = \frac{e^{z - \max z}}{\sum e^{z - \max z}}$$
#
# and the backward is the softmax rule of module 05 followed by the chain rule through the
# scale and the sum with the mask:
#
# $$\frac{\partial L}{\partial z} = A \odot \left(G - \textstyle\sum_k G \odot A\right),\qquad
# \frac{\partial L}{\partial S} = \text{scale}\cdot\frac{\partial L}{\partial z},\qquad
# \frac{\partial L}{\partial M} = \frac{\partial L}{\partial z}\ \text{(summed over the axes the mask was broadcast along)}$$
#
# Only `A` is kept for backward. A mask is usually a constant (the causal mask); when it is
# a Tensor that requires grad (a learned bias), it gets its gradient like any other input.
# `scaled_masked_softmax_composed` is the same computation from module-05 ops: the test
# checks that both agree, values and gradients.

# %% nbgrader={"grade": false, "grade_id": "scaled-masked-softmax", "locked": false, "schema_version": 3, "solution": true}
#| export
class ScaledMaskedSoftmax(Function):
    """softmax(scale * scores + mask, axis=-1) in one op: scores (..., Tq, Tk) -> weights (..., Tq, Tk)."""
    def forward(self, scores: np.ndarray, mask: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
        ### BEGIN SOLUTION
        z = scores * scale                           # (..., Tq, Tk): the one new array
        if mask is not None:
            z += mask                                # in place, broadcast over leading axes
        z -= z.max(axis=-1, keepdims=True)           # largest entry of each row becomes 0
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)           # rows sum to 1
        self.out, self.scale = z, scale
        return z
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        ### BEGIN SOLUTION
        a = self.out
        dz = grad * a                                # (..., Tq, Tk), new array
        dz -= a * dz.sum(axis=-1, keepdims=True)     # A ⊙ (G - Σ G⊙A)
        need = [t.requires_grad for t in self.inputs]
        dscores = dz * self.scale if need[0] else None
        if len(self.inputs) == 1:
            return (dscores,)
        return dscores, (dz if need[1] else None)    # the engine sums dz down to the mask's shape
        ### END SOLUTION


def scaled_masked_softmax(scores: Tensor, scale: float, mask: Tensor | None = None) -> Tensor:
    """softmax(scale * scores + mask, axis=-1) as one op: scores (..., Tq, Tk) -> weights (..., Tq, Tk)."""
    ### BEGIN SOLUTION
    scale = float(scale)                             # a Python float keeps float32 float32
    if mask is None:
        return ScaledMaskedSoftmax.apply(scores, scale=scale)
    return ScaledMaskedSoftmax.apply(scores, mask, scale=scale)
    ### END SOLUTION


def scaled_masked_softmax_composed(scores: Tensor, scale: float, mask: Tensor | None = None) -> Tensor:
    """The same computation from module-05 ops (Mul, Add, Softmax): the reference for tests."""
    ### BEGIN SOLUTION
    z = scores * float(scale)
    if mask is not None:
        z = z + mask
    return softmax(z, axis=-1)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-scaled-masked-softmax", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck

rng = np.random.default_rng(5)
s_np = rng.standard_normal((2, 3, 4, 5))
bias_np = rng.standard_normal((4, 5))
bias_np[:, 4] = -np.inf                                   # key 4 hidden from every query
for mask_np in (None, bias_np, bias_np[0]):
    outs, grads = [], []
    for fn in (scaled_masked_softmax, scaled_masked_softmax_composed):
        s = Tensor(s_np, dtype=np.float64, requires_grad=True)
        m = None if mask_np is None else Tensor(mask_np, dtype=np.float64)
        a = fn(s, 0.5, m)
        (a * Tensor(np.arange(a.size, dtype=np.float64).reshape(a.shape))).sum().backward()
        outs.append(a.data)
        grads.append(s.grad.data)
    assert np.allclose(outs[0], outs[1], atol=1e-12) and np.allclose(grads[0], grads[1], atol=1e-12)
    assert np.allclose(outs[0].sum(axis=-1), 1)
assert (outs[0][..., 4] == 0).all(), "a -inf mask entry gives exactly zero weight"
assert scaled_masked_softmax(Tensor(s_np.astype(np.float32)), 0.5).dtype == np.float32
learned = Tensor(rng.standard_normal((4, 5)), dtype=np.float64, requires_grad=True)
assert gradcheck(lambda s, m: scaled_masked_softmax(s, 0.7, m),
                 [Tensor(s_np, dtype=np.float64, requires_grad=True), learned])
print("scaled_masked_softmax: OK")

# %% nbgrader={"grade": false, "grade_id": "sdpa", "locked": false, "schema_version": 3, "solution": true}
#| export
def scaled_dot_product_attention(q: Any, k: Any, v: Any, mask: Any = None,
                                 dropout: Module | None = None) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / sqrt(d) + mask) v: q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv), additive mask
    broadcastable to (..., Tq, Tk) -> out (..., Tq, dv) and the weights (..., Tq, Tk) before `dropout`."""
    q, k, v = _as_tensor(q), _as_tensor(k), _as_tensor(v)
    scores_shape = _check_qkv(q, k, v, "scaled_dot_product_attention")
    mask = _check_mask(mask, scores_shape, np.result_type(q.dtype, k.dtype), "scaled_dot_product_attention")
    ### BEGIN SOLUTION
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-2, -1)                     # (..., Tq, d) @ (..., d, Tk) -> (..., Tq, Tk)
    weights = scaled_masked_softmax(scores, scale, mask) # softmax(scale*scores + mask): (..., Tq, Tk), rows sum to 1
    attended = dropout(weights) if dropout is not None else weights
    out = attended @ v                                   # (..., Tq, Tk) @ (..., Tk, dv) -> (..., Tq, dv)
    return out, weights
    ### END SOLUTION

# %% [markdown]
# The test compares the batched function with the formula computed one batch element at a
# time with plain numpy, checks that masked keys get exactly zero weight, and that mistakes
# are reported with the shapes.

# %% nbgrader={"grade": true, "grade_id": "test-sdpa", "locked": true, "points": 4, "schema_version": 3, "solution": false}
rng = np.random.default_rng(1)
B, Tq, Tk, d, dv = 3, 4, 5, 8, 6
q_np = rng.standard_normal((B, Tq, d)).astype(np.float32)
k_np = rng.standard_normal((B, Tk, d)).astype(np.float32)
v_np = rng.standard_normal((B, Tk, dv)).astype(np.float32)
pad = np.zeros((B, 1, Tk), np.float32)
pad[0, 0, 3:] = -np.inf                                   # batch element 0: keys 3 and 4 are padding
out, weights = scaled_dot_product_attention(Tensor(q_np), Tensor(k_np), Tensor(v_np), mask=pad)
assert out.shape == (B, Tq, dv) and weights.shape == (B, Tq, Tk)
assert out.dtype == np.float32 and weights.dtype == np.float32, "float32 in, float32 out"
for b in range(B):                                        # the reference: one example at a time
    s = q_np[b] @ k_np[b].T / np.sqrt(d) + pad[b]
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    assert np.allclose(weights.data[b], w, atol=1e-6) and np.allclose(out.data[b], w @ v_np[b], atol=1e-5)
assert np.allclose(weights.data.sum(axis=-1), 1, atol=1e-6)
assert (weights.data[0, :, 3:] == 0).all(), "padded keys get exactly zero weight"
heads = scaled_dot_product_attention(rng.standard_normal((2, 3, Tq, d)), rng.standard_normal((2, 3, Tk, d)),
                                     rng.standard_normal((2, 3, Tk, dv)), mask=causal_mask(Tq, past=Tk - Tq))[0]
assert heads.shape == (2, 3, Tq, dv), "(B, nh, T, d): one call for all batches and heads"
for bad, error in [((q_np, k_np[..., :5], v_np), ValueError),                  # d of q and k differ
                   ((q_np, k_np, v_np[:, :3]), ValueError),                     # Tk of k and v differ
                   ((q_np, k_np, v_np, np.zeros((Tq, Tq), np.float32)), ValueError),   # mask does not fit
                   ((q_np, k_np, v_np, np.full((Tq, Tk), -np.inf, np.float32)), ValueError),  # all masked
                   ((q_np, k_np, v_np, np.ones((Tq, Tk), bool)), TypeError)]:  # booleans are refused
    try:
        scaled_dot_product_attention(*bad)
        raise AssertionError(f"should have failed: {[np.shape(a) for a in bad]}")
    except error:
        pass
print("scaled_dot_product_attention: OK")

# %% [markdown]
# ## 5. Self-attention with one head
#
# In **self**-attention, queries, keys and values all come from the same sequence `x`,
# through three learned projections (three `Dense` layers of module 03):
#
# ```
# x (B, T, C)
# q = x Wq + bq,  k = x Wk + bk,  v = x Wv + bv      each (B, T, C)
# out, weights = scaled_dot_product_attention(q, k, v, mask)   (B, T, C), (B, T, T)
# ```
#
# Why project at all, instead of `attention(x, x, x)`? Because the same token should be
# able to *look for* something different from what it *offers*: the word "it" looks for a
# noun, while it offers "I am a pronoun". Without projections, $q_i \cdot k_i = |x_i|^2$
# makes every token attend mostly to itself.
#
# With `causal=True` the layer adds `causal_mask(T)`: position `t`'s output then depends
# only on positions `<= t`. `last_weights` keeps the weights of the last call, for plots.

# %% nbgrader={"grade": false, "grade_id": "self-attention", "locked": false, "schema_version": 3, "solution": true}
#| export
class SelfAttention(Module):
    """One head: (..., T, d_model) -> (..., T, d_model) via q_proj, k_proj, v_proj; causal=True masks the future."""
    def __init__(self, d_model: int, causal: bool = False, bias: bool = True,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if int(d_model) < 1:
            raise ValueError(f"SelfAttention: d_model must be positive, got {d_model}")
        ### BEGIN SOLUTION
        self.d_model, self.causal, self.last_weights = int(d_model), bool(causal), None
        self.q_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.k_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.v_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        ### END SOLUTION

    def forward(self, x: Any, mask: Any = None, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        x = _as_tensor(x)
        if x.ndim < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"SelfAttention: input of shape {x.shape} does not fit (..., T, d_model={self.d_model})")
        mask = _check_mask(mask, (*x.shape[:-1], x.shape[-2]), x.dtype, "SelfAttention")
        ### BEGIN SOLUTION
        T = x.shape[-2]
        causal = causal_mask(T, x.dtype) if self.causal else None
        mask = _add_masks(causal, mask, x.dtype)                           # (..., T, T) or None
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)           # (..., T, C) each
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask)    # (..., T, C), (..., T, T)
        self.last_weights = weights.data
        return (out, weights) if return_weights else out
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-self-attention", "locked": true, "points": 3, "schema_version": 3, "solution": false}
sa = SelfAttention(8, causal=True, rng=np.random.default_rng(0))
x = Tensor(np.random.default_rng(2).standard_normal((2, 6, 8)))
y, w = sa(x, return_weights=True)
assert y.shape == (2, 6, 8) and w.shape == (2, 6, 6) and sa.last_weights.shape == (2, 6, 6)
assert np.allclose(np.triu(sa.last_weights, k=1), 0), "causal: no weight on the future"
q, k, v = (x.data @ p.weight.data + p.bias.data for p in (sa.q_proj, sa.k_proj, sa.v_proj))
s = q @ k.transpose(0, 2, 1) / np.sqrt(8) + causal_mask(6)
ref = np.exp(s - s.max(-1, keepdims=True))
ref = (ref / ref.sum(-1, keepdims=True)) @ v
assert np.allclose(y.data, ref, atol=1e-5)
future = x.data.copy()
future[:, 4:] = 100.0                                     # change positions 4 and 5
assert np.allclose(sa(Tensor(future)).data[:, :4], y.data[:, :4], atol=1e-5), "the past ignores the future"
assert not np.allclose(SelfAttention(8, rng=np.random.default_rng(0))(Tensor(future)).data[:, :4], y.data[:, :4]), \
    "without causal=True the future does leak"
try:
    sa(Tensor(np.ones((2, 6, 5))))
    raise AssertionError("last dimension 5 is not d_model 8")
except ValueError:
    pass
print(sa)
print("self-attention: OK")

# %% [markdown]
# ## 6. Generating text, and the KV cache
#
# A causal model generates one token at a time: run the model, sample the next token from
# the last position, append it, run again. Run naively, step `t` recomputes keys and values
# for all `t` positions, although in a causal model those of positions `< t` are *exactly*
# those of the previous step: only the **new** token's query, key and value are new.
#
# So we store the keys and values of every position seen so far in a **KV cache**, one
# per attention layer. A step then costs:
#
# | | without cache | with cache |
# |---|---|---|
# | projections at step t | $t$ tokens: $O(t\,C^2)$ | 1 token: $O(C^2)$ |
# | attention scores at step t | $(t, t)$: $O(t^2 C)$ | $(1, t)$: $O(t\,C)$ |
# | generating T tokens | $O(T^2 C^2 + T^3 C)$ | $O(T C^2 + T^2 C)$ |
# | extra memory | none | $2 \cdot B \cdot T_{max} \cdot C$ numbers per layer |
#
# **Design.** `KVCache` preallocates two arrays `(B, nh, max_len, hs)` and a `length`:
# appending `t` new positions writes into slots `[length, length + t)` (no reallocation,
# no concatenation, which would copy the whole cache at every step) and returns *views*
# of the filled part. `MultiHeadAttention` (next section) accepts `cache=`: the new
# tokens' queries attend to all cached positions and, causally, to each other.
#
# **When the cache is full** (`max_len` is the context length), what to do depends on the
# positions: with *learned absolute* positions (TinyGPT) cached keys carry their position,
# so module 16 `reset()`s the cache and re-runs the last tokens; with *relative* ones
# (rotary, ALiBi) `drop_oldest(n)` (shift the cache left by `n` slots) is correct.

# %% nbgrader={"grade": false, "grade_id": "kv-cache", "locked": false, "schema_version": 3, "solution": true}
#| export
class KVCache:
    """One layer's keys and values so far: buffers (B, nh, max_len, hs), the first `length` positions filled."""
    def __init__(self, batch_size: int, num_heads: int, max_len: int, head_dim: int, dtype: Any = DEFAULT_FLOAT):
        shape = tuple(int(n) for n in (batch_size, num_heads, max_len, head_dim))
        if min(shape) < 1:
            raise ValueError(f"KVCache: sizes must be positive, got (batch_size, num_heads, max_len, head_dim) = {shape}")
        ### BEGIN SOLUTION
        self.batch_size, self.num_heads, self.max_len, self.head_dim = shape
        self.key_buffer = np.zeros(shape, dtype=dtype)   # (B, nh, max_len, hs), allocated once
        self.value_buffer = np.zeros(shape, dtype=dtype)
        self.length = 0                                  # positions filled so far
        self.dtype = self.key_buffer.dtype
        ### END SOLUTION

    remaining = property(lambda self: self.max_len - self.length, doc="free slots")
    nbytes = property(lambda self: self.key_buffer.nbytes + self.value_buffer.nbytes, doc="bytes of both buffers")
    keys = property(lambda self: self.key_buffer[:, :, :self.length], doc="(B, nh, length, hs) view")
    values = property(lambda self: self.value_buffer[:, :, :self.length], doc="(B, nh, length, hs) view")
    __len__ = lambda self: self.length                   # noqa: E731

    def reset(self) -> None:
        """Forget every position (the buffers are reused)."""
        ### BEGIN SOLUTION
        self.length = 0
        ### END SOLUTION

    def _check_append(self, k: np.ndarray, v: np.ndarray) -> None:
        """Refuse keys/values that do not fit (before anything is written)."""
        t = k.shape[2] if k.ndim == 4 else -1
        if k.shape != v.shape or k.shape != (self.batch_size, self.num_heads, t, self.head_dim) or t > self.remaining:
            raise ValueError(f"KVCache.append: keys {k.shape}, values {v.shape} do not fit the free slots of {self!r}")
        if k.dtype != self.dtype or v.dtype != self.dtype:
            raise TypeError(f"KVCache.append: the cache holds {self.dtype}, got keys {k.dtype} and values {v.dtype}")

    def append(self, k: Any, v: Any) -> tuple[Tensor, Tensor]:
        """Store k, v (B, nh, t, hs) of t new positions; return all so far, (B, nh, length, hs) views as Tensors."""
        k, v = (a.data if isinstance(a, Tensor) else np.asarray(a) for a in (k, v))
        self._check_append(k, v)
        ### BEGIN SOLUTION
        end = self.length + k.shape[2]
        self.key_buffer[:, :, self.length:end] = k       # write into the preallocated slots
        self.value_buffer[:, :, self.length:end] = v
        self.length = end
        return Tensor(self.keys, dtype=self.dtype), Tensor(self.values, dtype=self.dtype)
        ### END SOLUTION

    def drop_oldest(self, n: int) -> None:
        """Forget the n oldest positions (shift the rest to the front): right only for relative positions."""
        if not 0 <= n <= self.length:
            raise ValueError(f"KVCache.drop_oldest: n must be in [0, length={self.length}], got {n}")
        ### BEGIN SOLUTION
        keep = self.length - n
        self.key_buffer[:, :, :keep] = self.key_buffer[:, :, n:self.length].copy()
        self.value_buffer[:, :, :keep] = self.value_buffer[:, :, n:self.length].copy()
        self.length = keep
        ### END SOLUTION

    def __repr__(self) -> str:
        return f"KVCache(batch_size={self.batch_size}, num_heads={self.num_heads}, length={self.length}, max_len={self.max_len}, head_dim={self.head_dim}, dtype={self.dtype})"

# %% nbgrader={"grade": true, "grade_id": "test-kv-cache", "locked": true, "points": 2, "schema_version": 3, "solution": false}
kv = KVCache(batch_size=2, num_heads=3, max_len=6, head_dim=4)
chunks = [np.random.default_rng(i).standard_normal((2, 3, t, 4)).astype(np.float32) for i, t in enumerate((3, 1, 2))]
for c in chunks:
    keys, values = (t.data for t in kv.append(c, -c))     # Tensors viewing the buffers
assert len(kv) == 6 and kv.remaining == 0 and keys.shape == (2, 3, 6, 4)
assert np.array_equal(keys, np.concatenate(chunks, axis=2)) and np.array_equal(values, -keys)
assert np.shares_memory(keys, kv.key_buffer), "views, not copies"
try:
    kv.append(chunks[1], chunks[1])
    raise AssertionError("the cache is full")
except ValueError:
    pass
kv.drop_oldest(2)
assert len(kv) == 4 and np.array_equal(kv.keys, np.concatenate(chunks, axis=2)[:, :, 2:])
kv.reset()
assert len(kv) == 0 and kv.keys.shape == (2, 3, 0, 4)
print(kv, f"{kv.nbytes} bytes")
print("kv cache: OK")

# %% [markdown]
# ## 7. Multi-head attention
#
# One softmax per query gives one weighted average; real sentences need several relations
# at once (the subject of this verb, the previous word...). **Multi-head**
# attention runs `nh` independent attentions, each on its own `hs = C / nh` dimensional
# slice of the projected queries, keys and values, and concatenates the results:
#
# $$\mathrm{head}_h = \mathrm{Attention}(Q_h, K_h, V_h),\qquad
#   \mathrm{MHA}(x) = [\mathrm{head}_1, \dots, \mathrm{head}_{nh}]\, W_O + b_O$$
#
# **Heads are a reshape, not a loop.** The projections produce `(B, T, C)`. Splitting the
# last axis into `(nh, hs)` and moving the head axis forward gives a batch of heads:
#
# ```
# (B, T, C) --reshape--> (B, T, nh, hs) --permute(0, 2, 1, 3)--> (B, nh, T, hs)
# ```
#
# `scaled_dot_product_attention` treats `(B, nh)` as leading axes: one batched matmul for
# all scores `(B, nh, T, T)`, one for all outputs. Merging undoes the split; the output
# projection $W_O$ (`Dense(C, C)`) mixes the heads' results. Same cost as one head of size C.
#
# **Projections.** Three `Dense(C, C)` layers `q_proj`, `k_proj`, `v_proj` rather than one
# fused `Dense(C, 3C)` (whose sliced output costs three full-size gradient arrays in
# backward); they also make **cross-attention** trivial: `attn(query, key, value)`.
#
# **Dropout** (probability `dropout`) is applied twice, as in GPT-2: on the attention
# weights and on the output. It is active only in training mode (`attn.train()`).
#
# **Calls.**
#
# | call | meaning |
# |---|---|
# | `attn(x)` | self-attention (causal if the layer was built with `causal=True`) |
# | `attn(x, mask=m)` | plus an additive mask broadcastable to `(B, nh, Tq, Tk)`: `(T, T)`, or `(B, 1, 1, T)` for padding |
# | `attn(query, key, value, mask=m)` | cross-attention; `key` alone means `value = key` |
# | `attn(x, return_weights=True)` | `(out, weights)` with weights `(B, nh, Tq, Tk)` |
# | `attn(x_new, cache=kv)` | incremental decoding under `no_grad()`: always causal |
#
# **The cached path is the same code.** With `cache=kv` holding `L` positions, the `t`
# new tokens are projected and split into heads as always; `kv.append(k, v)` writes their
# keys and values into the cache and hands back *all* `L + t` of them, and the queries
# attend over those with the mask `causal_mask(t, past=L)`. The outputs equal the last `t`
# rows of a full recomputation over all `L + t` tokens (the test checks it). It runs under
# `no_grad()` (gradients cannot flow into keys computed at earlier steps), so the Tensor
# operations record no graph.

# %% nbgrader={"grade": false, "grade_id": "multi-head", "locked": false, "schema_version": 3, "solution": true}
#| export
class MultiHeadAttention(Module):
    """(B, Tq, d_model) -> (B, Tq, d_model): num_heads heads of d_model // num_heads; causal=True masks the future."""
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None, *, causal: bool = False):
        super().__init__()
        if int(d_model) < 1 or int(num_heads) < 1 or d_model % num_heads:
            raise ValueError(f"MultiHeadAttention: d_model={d_model} must be a positive multiple of num_heads={num_heads}")
        ### BEGIN SOLUTION
        self.d_model, self.num_heads, self.head_dim = int(d_model), int(num_heads), int(d_model) // int(num_heads)
        self.causal, self.dtype, self.last_weights = bool(causal), np.dtype(dtype), None
        self.q_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.k_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.v_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.out_proj = Dense(d_model, d_model, bias=bias, dtype=dtype, rng=rng)
        self.attn_dropout = Dropout(dropout, rng=rng)
        self.out_dropout = Dropout(dropout, rng=rng)
        ### END SOLUTION

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, nh, T, hs)."""
        ### BEGIN SOLUTION
        B, T, _ = x.shape
        return x.reshape(B, T, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        ### END SOLUTION

    def merge_heads(self, y: Tensor) -> Tensor:
        """(B, nh, T, hs) -> (B, T, C)."""
        ### BEGIN SOLUTION
        B, _, T, _ = y.shape
        return y.permute(0, 2, 1, 3).reshape(B, T, self.d_model)
        ### END SOLUTION

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for this layer: (batch_size, num_heads, max_len, head_dim)."""
        ### BEGIN SOLUTION
        return KVCache(batch_size, self.num_heads, max_len, self.head_dim, dtype=self.dtype)
        ### END SOLUTION

    def _check(self, query: Any, key: Any, value: Any, mask: Any,
               cache: KVCache | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None, int]:
        """Check the inputs; return query, key, value, mask as Tensors and the number of cached positions."""
        who, query = "MultiHeadAttention", _as_tensor(query)
        if (key is None and value is not None) or (cache is not None and key is not None):
            raise ValueError(f"{who}: give key (and value) for cross-attention, neither for self-attention or a cache")
        key = query if key is None else _as_tensor(key)
        value = key if value is None else _as_tensor(value)
        if any(t.ndim != 3 or t.shape[-1] != self.d_model for t in (query, key, value)) or key.shape[0] != query.shape[0] \
                or value.shape[:2] != key.shape[:2] or (self.causal and cache is None and key.shape[1] < query.shape[1]):
            raise ValueError(f"{who}: query {query.shape}, key {key.shape}, value {value.shape} do not fit (B, T, d_model={self.d_model})")
        (B, Tq, _), Tk, past = query.shape, key.shape[1], len(cache) if isinstance(cache, KVCache) else 0
        if cache is not None and is_grad_enabled():
            raise RuntimeError(f"{who}: the KV cache is for generation: call it inside `with no_grad():`")
        if cache is not None and not (isinstance(cache, KVCache) and (cache.batch_size, cache.num_heads,
                                                                      cache.head_dim) == (B, self.num_heads, self.head_dim)):
            raise ValueError(f"{who}: {cache!r} does not fit an input {query.shape}: use attn.new_cache(B, max_len)")
        mask = _check_mask(mask, (B, self.num_heads, Tq, past + Tk), query.dtype, who)
        return query, key, value, mask, past

    def forward(self, query: Any, key: Any = None, value: Any = None, mask: Any = None, *,
                cache: KVCache | None = None, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """query (B, Tq, C) attends over key/value (B, Tk, C) (default: query; value: key), plus the cached
        past with `cache`; mask broadcasts to (B, nh, Tq, Tk). -> (B, Tq, C) (and weights if return_weights)."""
        query, key, value, mask, past = self._check(query, key, value, mask, cache)
        ### BEGIN SOLUTION
        Tq, Tk = query.shape[1], past + key.shape[1]            # Tk: all keys, the cached ones included
        masked = (self.causal or cache is not None) and Tq > 1          # one query (the last) sees every key
        causal = causal_mask(Tq, query.dtype, past=Tk - Tq) if masked else None
        mask = _add_masks(causal, mask, query.dtype)            # broadcasts to (B, nh, Tq, Tk)
        q = self.split_heads(self.q_proj(query))                # (B, nh, Tq, hs)
        k = self.split_heads(self.k_proj(key))                  # (B, nh, Tk, hs)
        v = self.split_heads(self.v_proj(value))                # (B, nh, Tk, hs)
        if cache is not None:
            k, v = cache.append(k, v)                           # (B, nh, past + Tk, hs): the past and the new
        y, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout=self.attn_dropout)  # (B, nh, Tq, hs)
        out = self.out_dropout(self.out_proj(self.merge_heads(y)))   # (B, nh, Tq, hs) -> (B, Tq, C)
        self.last_weights = weights.data
        return (out, weights) if return_weights else out
        ### END SOLUTION

# %% [markdown]
# First check: with a single head, `MultiHeadAttention` is `SelfAttention` followed by the
# output projection. Then compare several heads with a reference that loops over batch
# elements and heads in plain numpy (the slow, obvious way), with a padding mask.

# %% nbgrader={"grade": true, "grade_id": "test-multi-head", "locked": true, "points": 4, "schema_version": 3, "solution": false}
def reference_mha(attn, query, key, value, mask):
    """Per-example, per-head loop in numpy: the definition, without any batching trick."""
    (Wq, bq), (Wk, bk), (Wv, bv), (Wo, bo) = [(p.weight.data, p.bias.data) for p in
                                              (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj)]
    B, Tq, C = query.shape
    hs = C // attn.num_heads
    concat = np.zeros((B, Tq, C))
    for b in range(B):
        for h in range(attn.num_heads):
            cols = slice(h * hs, (h + 1) * hs)
            qh, kh, vh = (query[b] @ Wq + bq)[:, cols], (key[b] @ Wk + bk)[:, cols], (value[b] @ Wv + bv)[:, cols]
            s = qh @ kh.T / np.sqrt(hs) + np.broadcast_to(mask, (B, attn.num_heads, Tq, key.shape[1]))[b, h]
            w = np.exp(s - s.max(axis=1, keepdims=True))
            concat[b, :, cols] = (w / w.sum(axis=1, keepdims=True)) @ vh
    return concat @ Wo + bo

rng = np.random.default_rng(3)
mha = MultiHeadAttention(12, num_heads=3, rng=rng)
x = rng.standard_normal((2, 5, 12)).astype(np.float32)
memory = rng.standard_normal((2, 7, 12)).astype(np.float32)
padding = np.zeros((2, 1, 1, 7), np.float32)
padding[1, ..., 5:] = -np.inf                           # sequence 1 of `memory` has 2 padding positions
out, w = mha(Tensor(x), Tensor(memory), Tensor(memory), mask=padding, return_weights=True)
assert out.shape == (2, 5, 12) and w.shape == (2, 3, 5, 7) and out.dtype == np.float32
assert np.allclose(out.data, reference_mha(mha, x, memory, memory, padding), atol=1e-5)
assert (mha.last_weights[1, :, :, 5:] == 0).all()
self_out = mha(Tensor(x), mask=causal_mask(5))
assert np.allclose(self_out.data, reference_mha(mha, x, x, x, causal_mask(5)), atol=1e-5)

one = MultiHeadAttention(8, num_heads=1, causal=True, rng=np.random.default_rng(0))
single = SelfAttention(8, causal=True, rng=np.random.default_rng(0))   # same draws: same q, k, v weights
xs = Tensor(np.random.default_rng(4).standard_normal((2, 6, 8)))
assert np.allclose(one(xs).data, one.out_proj(single(xs)).data, atol=1e-5), "1 head = SelfAttention + out_proj"

for build, expected in [(lambda: MultiHeadAttention(10, 3), "not divisible by num_heads=3"),
                        (lambda: mha(Tensor(np.ones((2, 5, 8)))), "(2, 5, 8)"),
                        (lambda: mha(Tensor(x), mask=np.zeros((4, 4), np.float32)), "does not broadcast")]:
    try:
        build()
        raise AssertionError(f"should have failed: {expected}")
    except ValueError:
        pass
print(mha)
print("multi-head attention: OK")

# %% [markdown]
# Gradients need no new code: the graph of `MultiHeadAttention` consists of `MatMul`,
# `Add`, `Reshape` and `Permute`, differentiated by module 05, and the fused
# `ScaledMaskedSoftmax` of section 4. A float64 gradient check confirms that the
# composition is right, for the input and for every parameter, with a causal mask.

# %% nbgrader={"grade": true, "grade_id": "test-mha-gradients", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck, no_grad

mha64 = MultiHeadAttention(4, num_heads=2, dtype=np.float64, rng=np.random.default_rng(5), causal=True)
x64 = Tensor(np.random.default_rng(6).standard_normal((2, 3, 4)), dtype=np.float64, requires_grad=True)
assert gradcheck(lambda x, *params: mha64(x), [x64, *mha64.parameters()])
print("multi-head attention gradients: OK")

# %% [markdown]
# And the cache: feed a sequence in chunks (a prompt of 4 tokens, then one token at a
# time, then a chunk of 3), and compare with one full causal pass.

# %% nbgrader={"grade": true, "grade_id": "test-kv-cache-equivalence", "locked": true, "points": 3, "schema_version": 3, "solution": false}
gen = MultiHeadAttention(16, num_heads=4, causal=True, rng=np.random.default_rng(7)).eval()
seq = Tensor(np.random.default_rng(8).standard_normal((2, 10, 16)))
with no_grad():
    full = gen(seq).data
    kv = gen.new_cache(batch_size=2, max_len=10)
    pieces = [gen(seq[:, a:b], cache=kv).data for a, b in [(0, 4), (4, 5), (5, 6), (6, 7), (7, 10)]]
assert len(kv) == 10 and gen.last_weights.shape == (2, 4, 3, 10)
assert np.abs(np.concatenate(pieces, axis=1) - full).max() < 1e-5, "cached == recomputed"
try:
    gen(seq[:, :1], cache=kv)
    raise AssertionError("gradients are on: the cache must refuse")
except RuntimeError:
    pass
print("kv-cache decoding matches full recomputation: OK")

# %% [markdown]
# ## 8. Looking at attention
#
# Attention weights show *what a network uses*. `plot_attention` draws them as heatmaps
# (rows: queries, columns: keys, one panel per head) with matplotlib's `Figure` (no
# `pyplot`, no display needed) and saves a PNG when given a path.

# %%
#| export
def plot_attention(weights: Any, tokens: Sequence[str] | None = None, path: str | os.PathLike | None = None,
                   title: str | None = None, max_heads: int = 16) -> Any:
    """Heatmaps of attention weights (Tq, Tk), (nh, Tq, Tk) or (B, nh, Tq, Tk) (the first example),
    one panel per head (at most max_heads); `tokens` label the keys; saved as a PNG at `path`."""
    from matplotlib.figure import Figure

    w = np.asarray(weights.data if isinstance(weights, Tensor) else weights, dtype=np.float64)
    w = w[0] if w.ndim == 4 else w[None] if w.ndim == 2 else w
    if w.ndim != 3 or 0 in w.shape or (tokens is not None and len(tokens) != w.shape[-1]):
        raise ValueError(f"plot_attention: weights must be (Tq, Tk), (nh, Tq, Tk) or (B, nh, Tq, Tk) with one "
                         f"token per key, got shape {np.shape(weights)} and tokens {tokens!r:.80}")
    (nh, Tq, Tk), cols = w[:max_heads].shape, math.ceil(math.sqrt(min(len(w), max_heads)))
    fig = Figure(figsize=(2.8 * cols + 1.2, 2.8 * math.ceil(nh / cols) + 0.4), layout="constrained")
    axes = fig.subplots(math.ceil(nh / cols), cols, squeeze=False).ravel()
    for ax in axes[nh:]:
        ax.set_axis_off()
    for h, ax in enumerate(axes[:nh]):
        image = ax.imshow(w[h], vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        ax.set(title=f"head {h}" if nh > 1 else "", xlabel="key", ylabel="query")
        if tokens is not None and Tk <= 48:
            ax.set_xticks(range(Tk), [str(t) for t in tokens], rotation=90, fontsize=7)
            ax.set_yticks(range(Tq), [str(t) for t in tokens[Tk - Tq:]], fontsize=7)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="weight")
    fig.suptitle(title or "")
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig

# %% [markdown]
# ### Watching a head learn
#
# Each sequence holds 8 random vectors, one **flagged** (last feature 1). Every position must
# output the flagged vector's content, wherever it is: a per-position `Dense` cannot, attention
# can learn to weigh the flagged key. One `SelfAttention` head, SGD + momentum (module 06).

# %%
from tinytorch.core.losses import MSELoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.tensor import manual_seed

def flag_batch(rng, B=32, T=8, d=8):
    x = np.zeros((B, T, d), np.float32)
    x[..., :d - 1] = rng.standard_normal((B, T, d - 1))
    where = rng.integers(0, T, size=B)
    x[np.arange(B), where, d - 1] = 1.0
    target = np.repeat(x[np.arange(B), where][:, None, :], T, axis=1)
    target[..., d - 1] = 0.0
    return Tensor(x), Tensor(target), where

manual_seed(0)
data_rng = np.random.default_rng(0)
head = SelfAttention(8, rng=np.random.default_rng(1))
optimizer, loss_fn = SGD(head.parameters(), lr=0.05, momentum=0.9), MSELoss()
for step in range(300):
    xb, yb, _ = flag_batch(data_rng)
    loss = loss_fn(head(xb), yb)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 100 == 0 or step == 299:
        print(f"step {step:3d}  loss {loss.item():.4f}")

import io
from IPython.display import Image, display
xb, yb, where = flag_batch(np.random.default_rng(123), B=4)
with no_grad():
    head(xb)
on_flag = head.last_weights[np.arange(4), :, where].mean()
print(f"average attention on the flagged position: {on_flag:.3f} (uniform would be {1 / 8:.3f})")
fig = plot_attention(head.last_weights[:4], tokens=[f"t{i}" for i in range(8)],
                     title="4 sequences (one panel each): every query reads the flagged key")
fig.savefig(png := io.BytesIO(), format="png", dpi=90)
display(Image(png.getvalue()))                      # the figure, as a PNG in the notebook

# %% [markdown]
# One panel per sequence: every row (query) weighs the same column, the flagged position,
# different in each sequence: content-based addressing, found by gradient descent.
#
# ## Systems thinking
#
# 1. **Quadratic memory.** Training keeps the `(B, nh, T, T)` attention weights for the
#    backward pass. How many bytes per layer for B = 12, nh = 4, T = 64 in float32, and for
#    GPT-2's T = 1024, nh = 12? Why do "flash" kernels, which never materialise the full
#    matrix, matter more for long contexts?
# 2. **KV-cache size.** The cache holds $2 L B T C$ numbers for L layers: compute it for
#    TinyGPT (L = 4, C = 128, T = 64, B = 1, float32) and for L = 32, C = 4096, T = 4096,
#    B = 8 in float16. Why do large models share keys and values between query heads?
# 3. **Masks and numerics.** What happens to a row of the softmax if every key is masked
#    with -inf? With -1e9 instead? Which of the two failures would you rather debug, and
#    why does float16 (max 65504) turn the second into the first?
