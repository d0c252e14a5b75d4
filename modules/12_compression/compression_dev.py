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
# # Module 12: Compression
#
# **Where you are.** You have trained real networks on CIFAR-10: an MLP of `Dense` layers
# (modules 03–08) and LeNet-5 with `Conv2d` and `MaxPool2d` (module 09). Every one of their
# weights is a float32: 4 bytes. The MLP milestone has 3.7 million of them, 14.7 MB on
# disk, and every prediction reads all of them from memory. This module makes trained
# models **smaller and cheaper** after training, with the two workhorses of model
# compression: **pruning** (most weights can be set to zero) and **quantisation** (the
# rest do not need 32 bits).
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `magnitude_mask`, `global_magnitude_masks` | keep-masks that zero exactly the requested fraction of the smallest weights |
# | `Pruned(layer, mask)` | a `Dense`/`Conv2d` whose weight is multiplied by a fixed 0/1 mask in every forward: pruned weights stay zero while fine-tuning |
# | `prune_magnitude`, `lamp_scores`, `prune_structured`, `remove_pruning` | unstructured (global, layer-adaptive LAMP, or per-layer) and structured (whole neurons / channels, by L1 or L2 norm) pruning of a model |
# | `sparsity(model)` | the fraction of zero weights, per layer and overall |
# | `symmetric_scale`, `quantize`, `dequantize` | symmetric int8 quantisation, per tensor or per output channel |
# | `int8_matmul` (and `int8_matmul_reference`) | the integer product with int32 accumulation |
# | `QuantizedDense`, `QuantizedConv2d` | inference-only layers computing in int8 and rescaling to float |
# | `calibrate`, `quantize_model` | activation scales from a few batches; a model with every `Dense`/`Conv2d` replaced |
# | `save_compressed`, `load_compressed`, `model_size_bytes` | compact, safe model files: int8 weights + scales, bitmask + nonzero values |
# | `evaluate_accuracy` | the accuracy of any model on (inputs, targets) batches |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/optim/compression.py`.
#
# **The one idea of this module.** A trained network is far more precise than it needs to
# be. Rounding every weight to one of 255 levels (int8) or deleting 80 % of them barely
# moves its predictions, and a short fine-tuning repairs most of what pruning breaks. The
# art is to measure it: every claim here (accuracy, bytes on disk) is a number you compute.
#
# **Points: 24** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-11 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp optim.compression

# %%
#| export
"""Compression: magnitude pruning (unstructured and structured, masks kept through
fine-tuning), post-training int8 quantisation (per-channel weights, calibrated activation
scales, integer products with int32 accumulation) and compact, safe model files.

Module 12 of TinyTorch (generated from modules/12_compression/compression_dev.py; do not edit).

Pruning wraps a Dense or Conv2d in `Pruned`, whose forward multiplies the weight by a 0/1
mask with Tensor operations, so gradients of pruned weights are exactly zero. Quantised
layers are inference-only. Files are .npz archives written atomically and read with
allow_pickle=False (module 07's `save_npz_checkpoint` / `load_npz_checkpoint`).
"""
from __future__ import annotations

import copy
import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import GELU, ReLU, Sigmoid, Tanh
from tinytorch.core.layers import Dense, Dropout, Flatten, Module, Sequential
from tinytorch.core.autograd import is_grad_enabled, no_grad
from tinytorch.core.training import CheckpointError, load_npz_checkpoint, save_npz_checkpoint
from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d, conv2d, im2col

# %% [markdown]
# ## 1. Where the bytes are
#
# A `Dense(in, out)` holds `in * out` weights and `out` biases; a `Conv2d(C_in, C_out, k)`
# holds `C_out * C_in * k * k` weights. For the two CIFAR-10 milestones:
#
# | model | weights | float32 bytes | biggest layer |
# |---|---|---|---|
# | MLP 3072-1024-512-10 | 3,676,682 | 14.7 MB | `Dense(3072, 1024)`: 86 % of the weights |
# | LeNet-5 | 62,006 | 248 kB | `Dense(400, 120)`: 77 % of the weights |
#
# Biases are a rounding error next to the weights, so everything below compresses the
# **weights** of `Dense` and `Conv2d` layers and keeps biases in float32. Two ways to spend
# fewer bytes per weight:
#
# * **Pruning** sets most weights to exactly zero. Zeros cost nothing if the file stores
#   only *which* weights are nonzero (1 bit each) and their values. At 80 % sparsity a
#   float32 layer shrinks to $1/32 + 0.2 \approx 0.23$ of its size.
# * **Quantisation** stores each weight in 8 bits instead of 32: 4x smaller, and integer
#   arithmetic is what phones, NPUs and the VNNI instructions of x86 CPUs are fastest at.
#
# The two combine: an 80 %-sparse int8 layer needs $1/32 + 0.2/4 \approx 0.08$ of the bytes.

# %% [markdown]
# ## 2. Magnitude pruning: which weights to delete
#
# The simplest criterion is also hard to beat: **delete the weights of smallest magnitude**
# $|w|$. A small weight contributes little to the sum $\sum_k x_k w_{kj}$, so removing it
# changes the output little. To remove a fraction $a$ ("amount") of $n$ weights we remove
# exactly $k = \lfloor a n + \tfrac12 \rfloor$ of them (the nearest integer): the $k$ smallest
# $|w|$. Sorting all $n$ values costs $O(n \log n)$; `np.argpartition(values, k - 1)` only
# puts the $k$ smallest first, in $O(n)$, and breaks ties so that the count is exact even
# when many weights are equal (a threshold "$|w| \le t$" would not be).
#
# The result is a **keep-mask**: a boolean array of the weight's shape, True for weights
# that stay. Three scopes:
#
# * **per layer**: every layer loses the same fraction $a$;
# * **global**: one threshold for all layers together. Layers whose weights are small
#   (often the wide early ones) lose more, layers whose weights matter keep more. With the
#   same total sparsity, global pruning is usually the more accurate.
# * **LAMP** (layer-adaptive magnitude pruning, Lee et al., 2021): global, but on a score
#   that puts every layer on the same scale. Sort a layer's weights by $w^2$ ascending;
#   the score of the $i$-th is $w_i^2 / \sum_{j \ge i} w_j^2$, its share of what would be
#   left of the layer if everything smaller were gone. The largest weight of every layer
#   scores 1, so no layer is ever emptied, and a small layer whose weights are all of a
#   similar size (a convolution with a few hundred weights) is not pruned away just because
#   its weights are smaller than a big layer's. On the LeNet-5 of the CIFAR-10 milestone,
#   pruned to 80 % and fine-tuned the same way, LAMP kept 71.5 % validation accuracy and one
#   global threshold 69.6 % (`results/compression_cifar10_recipes.jsonl`).

# %% nbgrader={"grade": false, "grade_id": "masks", "locked": false, "schema_version": 3, "solution": true}
#| export
def _check_amount(amount: Any, who: str) -> float:
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"{who}: amount must be a fraction in [0, 1], got {amount!r}")
    return float(amount)


def pruned_count(amount: float, n: int) -> int:
    """How many of n weights a pruning `amount` removes: the nearest integer to amount * n (halves up)."""
    return min(n, int(math.floor(amount * n + 0.5)))


def magnitude_mask(weight: np.ndarray, amount: float) -> np.ndarray:
    """Keep-mask of `weight` (any shape -> bool, same shape): False for exactly
    `pruned_count(amount, size)` entries of smallest |w|, True elsewhere."""
    amount = _check_amount(amount, "magnitude_mask")
    w = np.asarray(weight)
    k = pruned_count(amount, w.size)
    ### BEGIN SOLUTION
    keep = np.ones(w.size, dtype=bool)
    if k > 0:
        smallest = np.argpartition(np.abs(w).ravel(), k - 1)[:k]    # the k smallest |w|, in O(n)
        keep[smallest] = False
    return keep.reshape(w.shape)
    ### END SOLUTION


def global_magnitude_masks(weights: Sequence[np.ndarray], amount: float) -> list[np.ndarray]:
    """Keep-masks for several arrays with one threshold: exactly `pruned_count(amount, total)`
    of all their entries together are removed, the smallest |w| wherever they are."""
    amount = _check_amount(amount, "global_magnitude_masks")
    arrays = [np.asarray(w) for w in weights]
    if not arrays:
        raise ValueError("global_magnitude_masks: no weights given")
    ### BEGIN SOLUTION
    flat = np.concatenate([np.abs(a).ravel().astype(np.float64) for a in arrays])   # (total,)
    keep = magnitude_mask(flat, amount)
    ends = np.cumsum([a.size for a in arrays])[:-1]
    return [part.reshape(a.shape) for part, a in zip(np.split(keep, ends), arrays)]
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-masks", "locked": true, "points": 2, "schema_version": 3, "solution": false}
rng = np.random.default_rng(0)
w = rng.standard_normal((20, 30)).astype(np.float32)
keep = magnitude_mask(w, 0.8)
assert keep.shape == w.shape and keep.dtype == bool and np.count_nonzero(~keep) == 480
assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min(), "the removed weights are the smallest"
assert magnitude_mask(np.zeros(10), 0.35).sum() == 6, "ties: still exactly round(0.35 * 10) = 4 removed"
assert magnitude_mask(w, 0.0).all() and not magnitude_mask(w, 1.0).any()
small, large = rng.standard_normal(100) * 0.01, rng.standard_normal(100)
k_small, k_large = global_magnitude_masks([small, large], 0.5)
assert np.count_nonzero(~k_small) + np.count_nonzero(~k_large) == 100
assert np.count_nonzero(~k_small) > 90, "one global threshold prunes the small-weight layer most"
try:
    magnitude_mask(w, 1.5)
    raise AssertionError("1.5 is not a fraction")
except ValueError:
    pass
print("magnitude masks: OK")

# %% [markdown]
# ## 3. Pruned layers: masks that survive training
#
# Zeroing weights once is not enough: pruning hurts accuracy, and we want to **fine-tune**
# the remaining weights to recover it. The optimizer would happily move the deleted weights
# away from zero again. So a pruned layer keeps its mask $M$ (1 = keep, 0 = pruned) and
# computes with $W \odot M$ in every forward pass:
#
# $$y = x\,(W \odot M) + b \qquad\Longrightarrow\qquad
#   \frac{\partial L}{\partial W} = \frac{\partial L}{\partial (W \odot M)} \odot M .$$
#
# The gradient of a pruned weight is exactly $g \cdot 0 = 0$. We write no gradient code
# for this: `W * Tensor(M)` is module 01's `Mul`, whose backward (module 05) multiplies by
# the other operand. With a zero gradient, SGD (with momentum and weight decay), Adam and
# AdamW leave a weight that starts at zero at exactly zero, so we also zero the pruned
# entries of `W` itself when the mask is installed.
#
# `Pruned(layer, weight_mask, bias_mask)` wraps a `Dense` (weight `(in, out)`) or a
# `Conv2d` (weight `(C_out, C_in, kh, kw)`). The masks are **buffers** (module 03's
# `register_buffer`): saved by `state_dict`, not trained.
#
# **Structured pruning** removes whole output units instead of scattered weights: a column
# $j$ of a `Dense` weight (neuron $j$) or a filter `weight[c]` of a `Conv2d` (output
# channel $c$), ranked by the L1 norm $\sum |w|$ or the L2 norm $\sqrt{\sum w^2}$ of their
# weights. Its bias is masked too, so the unit outputs exactly zero. The payoff is
# different: unstructured zeros need sparse formats to save anything, but a deleted
# neuron can be cut out of the matrices, giving smaller *dense* products that run fast on
# any hardware. It costs more accuracy per weight removed. The output layer's units are the
# classes, so `prune_structured` leaves the last layer alone unless told otherwise.

# %% nbgrader={"grade": false, "grade_id": "pruned", "locked": false, "schema_version": 3, "solution": true}
#| export
PRUNABLE = (Dense, Conv2d)


class Pruned(Module):
    """A Dense or Conv2d computing with weight * weight_mask (and bias * bias_mask).

    layer: the wrapped layer; its Parameters train as usual. weight_mask: buffer with the
    weight's shape and dtype, 1 = keep, 0 = pruned. bias_mask: buffer (out,) when the layer
    has a bias (ones unless structured pruning removed units). Same input and output shapes
    as `layer`. Pruned weights get a zero gradient, so they stay zero under any optimizer.
    """
    def __init__(self, layer: Dense | Conv2d, weight_mask: np.ndarray, bias_mask: np.ndarray | None = None):
        super().__init__()
        if not isinstance(layer, PRUNABLE):
            raise TypeError(f"Pruned: can wrap a Dense or a Conv2d, got a {type(layer).__name__}")
        mask = np.asarray(weight_mask)
        if mask.shape != layer.weight.shape:
            raise ValueError(f"Pruned: weight_mask of shape {mask.shape} does not fit the weight of shape "
                             f"{layer.weight.shape} of {type(layer).__name__}")
        self.layer = layer
        self.register_buffer("weight_mask", (mask != 0).astype(layer.weight.dtype))
        if layer.bias is not None:
            bmask = np.ones(layer.bias.shape) if bias_mask is None else np.asarray(bias_mask)
            if bmask.shape != layer.bias.shape:
                raise ValueError(f"Pruned: bias_mask of shape {bmask.shape} does not fit the bias of shape "
                                 f"{layer.bias.shape}")
            self.register_buffer("bias_mask", (bmask != 0).astype(layer.bias.dtype))
        elif bias_mask is not None:
            raise ValueError(f"Pruned: bias_mask given, but the {type(layer).__name__} has no bias")
        self.apply_mask()

    def apply_mask(self) -> None:
        """Zero the pruned entries of the layer's own weight (and bias), in place."""
        self.layer.weight.data *= self.weight_mask
        if self.layer.bias is not None:
            self.layer.bias.data *= self.bias_mask

    def effective_weight(self) -> np.ndarray:
        """weight * weight_mask, as an ndarray (what the forward pass uses)."""
        return self.layer.weight.data * self.weight_mask

    def effective_bias(self) -> np.ndarray | None:
        return None if self.layer.bias is None else self.layer.bias.data * self.bias_mask

    def forward(self, x: Tensor) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        layer = self.layer
        if isinstance(layer, Dense) and (x.ndim == 0 or x.shape[-1] != layer.in_features):
            raise ValueError(f"Pruned(Dense): input of shape {x.shape} does not fit: its last dimension "
                             f"must be in_features={layer.in_features}")
        ### BEGIN SOLUTION
        w = layer.weight * Tensor(self.weight_mask, dtype=self.weight_mask.dtype)     # W ⊙ M: a Mul in the graph
        b = None if layer.bias is None else layer.bias * Tensor(self.bias_mask, dtype=self.bias_mask.dtype)
        if isinstance(layer, Dense):
            y = x @ w                                                           # (..., out)
            return y if b is None else y + b
        return conv2d(x, w, b, stride=layer.stride, padding=layer.padding)     # (N, C_out, H_out, W_out)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"sparsity={1.0 - float(self.weight_mask.mean()):.1%}"


def _is_weight_layer(m: Any) -> bool:
    """Dense, Conv2d, Pruned, or a quantised layer (anything holding `weight_q`)."""
    return isinstance(m, (Dense, Conv2d, Pruned)) or hasattr(m, "weight_q")


def _weight_array(layer: Any) -> np.ndarray:
    """The weight a layer computes with: W (Dense, Conv2d), W * M (Pruned), weight_q (quantised)."""
    if isinstance(layer, Pruned):
        return layer.effective_weight()
    if isinstance(layer, PRUNABLE):
        return layer.weight.data
    return layer.weight_q


def _find(module: Any, match: Callable[[Any], bool], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, sub-module) of every sub-module for which match() is True, in definition
    order, not looking inside matches. Names follow named_parameters: "layers.3", "block.conv"."""
    found = []
    for name, value in vars(module).items():
        items = [(f"{name}.{i}", v) for i, v in enumerate(value)] if isinstance(value, (list, tuple)) else [(name, value)]
        for path, item in items:
            if match(item):
                found.append((prefix + path, item))
            elif isinstance(item, Module):
                found.extend(_find(item, match, prefix + path + "."))
    return found


def _replace(module: Any, match: Callable[[Any], bool], make: Callable[[str, Any], Any], prefix: str = "") -> None:
    """Replace, in place, every matching sub-module m (named as in `_find`) by make(name, m);
    make may return m itself to keep it."""
    for name, value in list(vars(module).items()):
        if isinstance(value, (list, tuple)):
            items = list(value)
            for i, item in enumerate(items):
                if match(item):
                    items[i] = make(f"{prefix}{name}.{i}", item)
                elif isinstance(item, Module):
                    _replace(item, match, make, f"{prefix}{name}.{i}.")
            setattr(module, name, items if isinstance(value, list) else tuple(items))
        elif match(value):
            setattr(module, name, make(prefix + name, value))
        elif isinstance(value, Module):
            _replace(value, match, make, prefix + name + ".")


def prunable_layers(model: Module) -> list[tuple[str, Any]]:
    """(name, layer) of every Dense, Conv2d or Pruned inside `model`, in definition order."""
    if not isinstance(model, Module):
        raise TypeError(f"expected a Module (e.g. a Sequential), got a {type(model).__name__}")
    if _is_weight_layer(model):
        raise TypeError(f"pass a model that contains the layer (e.g. Sequential({type(model).__name__}(...))), "
                        f"not the {type(model).__name__} itself: pruning replaces layers inside their parent")
    return _find(model, lambda m: isinstance(m, (Dense, Conv2d, Pruned)))


def _targets(model: Module, layers: Sequence[str] | None, who: str) -> list[tuple[str, Any]]:
    found = prunable_layers(model)
    if layers is None:
        return found
    names = [n for n, _ in found]
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise KeyError(f"{who}: no Dense/Conv2d called {unknown} in the model; its layers are {names}")
    return [(n, m) for n, m in found if n in set(layers)]


def _install_masks(model: Module, masks: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Wrap (or re-mask) the named layers: masks[name] = (weight keep-mask, bias keep-mask or None).
    A layer that is already Pruned keeps its old zeros (the masks are multiplied)."""
    def make(name: str, layer: Any) -> Any:
        if name not in masks:
            return layer
        wmask, bmask = masks[name]
        if isinstance(layer, Pruned):
            layer.weight_mask *= np.asarray(wmask, dtype=layer.weight_mask.dtype)
            if bmask is not None and layer.layer.bias is not None:
                layer.bias_mask *= np.asarray(bmask, dtype=layer.bias_mask.dtype)
            layer.apply_mask()
            return layer
        return Pruned(layer, wmask, bmask)
    _replace(model, lambda m: isinstance(m, (Dense, Conv2d, Pruned)), make)


def lamp_scores(weight: np.ndarray) -> np.ndarray:
    """LAMP scores of one layer's weights (any shape -> float64, same shape): with the weights
    sorted by w^2 ascending, the i-th scores w_i^2 / sum_{j >= i} w_j^2. The largest scores 1;
    zeros (already pruned) score 0."""
    sq = np.asarray(weight, dtype=np.float64).ravel() ** 2
    order = np.argsort(sq, kind="stable")                      # ascending w^2
    ranked = sq[order]
    rest = np.cumsum(ranked[::-1])[::-1]                        # sum of w^2 from i to the end
    scores = np.zeros_like(sq)
    scores[order] = np.divide(ranked, rest, out=np.zeros_like(ranked), where=rest > 0)
    return scores.reshape(np.shape(weight))


def prune_magnitude(model: Module, amount: float, scope: str = "global", layers: Sequence[str] | None = None) -> Module:
    """Unstructured magnitude pruning, in place; returns `model`.

    Every selected Dense/Conv2d (all of them unless `layers` names some, as in
    `prunable_layers`) becomes a `Pruned` layer. scope="global": exactly
    pruned_count(amount, n) of the n selected weights together are zero (one threshold on
    |w|); scope="lamp": the same count, one threshold on `lamp_scores`; scope="layer": that
    fraction of each layer. Biases are not pruned. Layers that are already pruned keep
    their zeros (so sparsity never decreases).
    """
    amount = _check_amount(amount, "prune_magnitude")
    if scope not in ("global", "lamp", "layer"):
        raise ValueError(f"prune_magnitude: scope must be 'global', 'lamp' or 'layer', got {scope!r}")
    targets = _targets(model, layers, "prune_magnitude")
    weights = [_weight_array(m) for _, m in targets]
    ### BEGIN SOLUTION
    if scope == "global":
        keeps = global_magnitude_masks(weights, amount)
    elif scope == "lamp":
        keeps = global_magnitude_masks([lamp_scores(w) for w in weights], amount)
    else:
        keeps = [magnitude_mask(w, amount) for w in weights]
    _install_masks(model, {name: (keep, None) for (name, _), keep in zip(targets, keeps)})
    ### END SOLUTION
    return model


def unit_norms(layer: Any, norm: int = 1) -> np.ndarray:
    """L1 (norm=1) or L2 (norm=2) norm of each output unit's weights: (out_features,) for a Dense
    (columns of the (in, out) weight), (C_out,) for a Conv2d (filters weight[c])."""
    if norm not in (1, 2):
        raise ValueError(f"unit_norms: norm must be 1 (L1) or 2 (L2), got {norm!r}")
    inner = layer.layer if isinstance(layer, Pruned) else layer
    w = _weight_array(layer).astype(np.float64)
    axes = (0,) if isinstance(inner, Dense) else (1, 2, 3)
    return np.abs(w).sum(axis=axes) if norm == 1 else np.sqrt((w * w).sum(axis=axes))


def prune_structured(model: Module, amount: float, norm: int = 1, layers: Sequence[str] | None = None) -> Module:
    """Structured pruning, in place; returns `model`.

    In each selected layer (default: every Dense/Conv2d but the last, whose units are the
    model's outputs) the pruned_count(amount, units) output units with the smallest L1/L2
    norm lose all their weights and their bias: whole columns of a Dense weight (in, out),
    whole filters of a Conv2d weight (C_out, C_in, kh, kw).
    """
    amount = _check_amount(amount, "prune_structured")
    targets = _targets(model, layers, "prune_structured")
    if layers is None:
        targets = targets[:-1]
    masks = {}
    for name, layer in targets:
        inner = layer.layer if isinstance(layer, Pruned) else layer
        ### BEGIN SOLUTION
        scores = unit_norms(layer, norm)                                  # (units,)
        keep_units = magnitude_mask(scores, amount)                       # False for the weakest units
        wmask = np.ones(inner.weight.shape, dtype=bool)
        if isinstance(inner, Dense):
            wmask[:, ~keep_units] = False                                 # whole columns (neurons)
        else:
            wmask[~keep_units] = False                                    # whole filters (channels)
        masks[name] = (wmask, keep_units)
        ### END SOLUTION
    _install_masks(model, masks)
    return model


def remove_pruning(model: Module) -> Module:
    """Replace every Pruned layer by its own layer with the mask baked into its weights (pruned
    entries exactly zero), in place; returns `model`. Further training may revive zeros."""
    def unwrap(name: str, p: Pruned) -> Any:
        p.apply_mask()
        return p.layer
    _replace(model, lambda m: isinstance(m, Pruned), unwrap)
    return model


@dataclass
class SparsityReport:
    """Zero weights per layer: layers[name] = (zeros, weights). Biases are not counted."""
    layers: dict[str, tuple[int, int]]

    @property
    def zeros(self) -> int:
        return sum(z for z, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(n for _, n in self.layers.values())

    @property
    def overall(self) -> float:
        """Fraction of all counted weights that are zero."""
        return self.zeros / self.total if self.total else 0.0

    def fraction(self, name: str) -> float:
        zeros, total = self.layers[name]
        return zeros / total

    def __str__(self) -> str:
        width = max([len(n) for n in self.layers] + [7])
        lines = [f"{'layer':<{width}}  {'weights':>10}  {'zeros':>10}  sparsity"]
        lines += [f"{n:<{width}}  {t:>10,}  {z:>10,}  {z / t:8.1%}" for n, (z, t) in self.layers.items()]
        lines.append(f"{'overall':<{width}}  {self.total:>10,}  {self.zeros:>10,}  {self.overall:8.1%}")
        return "\n".join(lines)


def sparsity(model: Module) -> SparsityReport:
    """Zero weights of every Dense, Conv2d, Pruned (weight * mask) and quantised layer of `model`."""
    if not isinstance(model, Module) or _is_weight_layer(model):
        raise TypeError(f"sparsity: expected a model containing layers, got a {type(model).__name__}")
    found = _find(model, _is_weight_layer)
    return SparsityReport({name: (int(np.count_nonzero(_weight_array(m) == 0)), int(_weight_array(m).size))
                           for name, m in found})

# %% nbgrader={"grade": true, "grade_id": "test-pruned", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import gradcheck

rng = np.random.default_rng(1)
net = Sequential(Dense(12, 20, rng=rng), ReLU(), Dense(20, 8, rng=rng), ReLU(), Dense(8, 3, rng=rng))
x = Tensor(rng.standard_normal((5, 12)).astype(np.float32))
before = net(x).data
prune_magnitude(net, 0.0)
assert all(isinstance(m, Pruned) for _, m in prunable_layers(net)) and np.array_equal(net(x).data, before)
prune_magnitude(net, 0.75)
report = sparsity(net)
assert report.zeros == round(0.75 * (240 + 160 + 24)) and report.total == 424, report
assert list(report.layers) == ["layers.0", "layers.2", "layers.4"]
print(report)
per_layer = prune_magnitude(Sequential(Dense(10, 10, rng=rng), Dense(10, 4, rng=rng)), 0.5, scope="layer")
assert [z for z, _ in sparsity(per_layer).layers.values()] == [50, 20]
# pruned weights get exactly zero gradient
net(x).sum().backward()
first = net[0]
assert np.all(first.layer.weight.grad.data[first.weight_mask == 0] == 0)
assert np.any(first.layer.weight.grad.data[first.weight_mask == 1] != 0)
# structured: whole columns (Dense) and filters (Conv2d), bias included; the last layer untouched
cnn = Sequential(Conv2d(3, 8, 3, rng=rng), ReLU(), Flatten(), Dense(8 * 4 * 4, 6, rng=rng), Dense(6, 2, rng=rng))
for _, layer in prunable_layers(cnn):
    layer.bias.data[:] = 1.0
prune_structured(cnn, 0.5, norm=2)
conv_w, dense_w = cnn[0].effective_weight(), cnn[3].effective_weight()
dead_filters = np.all(conv_w == 0, axis=(1, 2, 3))
dead_columns = np.all(dense_w == 0, axis=0)
assert dead_filters.sum() == 4 and dead_columns.sum() == 3
assert np.all(cnn[0].effective_bias()[dead_filters] == 0) and np.all(cnn[0].effective_bias()[~dead_filters] == 1)
assert isinstance(cnn[4], Dense), "the output layer is left alone"
out = cnn(Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32)))
assert out.shape == (2, 2)
# the composed forward differentiates correctly (float64)
p64 = Pruned(Dense(4, 3, dtype=np.float64, rng=rng), rng.random((4, 3)) > 0.5)
assert gradcheck(lambda a: p64(a), [Tensor(rng.standard_normal((2, 4)), dtype=np.float64, requires_grad=True)])
remove_pruning(net)
assert isinstance(net[0], Dense) and sparsity(net).zeros == report.zeros
print("pruning: OK")

# %% [markdown]
# ## 4. Fine-tuning a pruned model
#
# One-shot pruning of 80 % of a trained network costs accuracy; a few epochs of ordinary
# training with the masks in place recover most of it. Nothing new is needed: `Pruned`
# layers are Modules, so module 07's `Trainer` trains them, and the zeros stay zero. A
# gentler recipe often works better still: prune in a few steps
# (e.g. 50 %, 70 %, 80 %) with some fine-tuning after each, and start each step with a
# fresh optimizer, so that no momentum remembered from before the step can push a newly
# pruned weight.
#
# Below: an MLP learns a generated 4-class problem, then 80 % of its weights are removed
# and it is fine-tuned for two epochs.

# %%
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam
from tinytorch.core.tensor import manual_seed
from tinytorch.core.training import Trainer


def blobs(n: int, seed: int, dim: int = 16, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """n points around `classes` random centres in `dim` dimensions: (n, dim) float32, (n,) int64."""
    r = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((classes, dim)) * 2.0
    y = r.integers(0, classes, n)
    return (centres[y] + r.standard_normal((n, dim))).astype(np.float32), y.astype(np.int64)


def batches_of(x: np.ndarray, y: np.ndarray, size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


manual_seed(0)
train_x, train_y = blobs(2000, seed=1)
test_x, test_y = blobs(1000, seed=2)
train_batches, test_batches = batches_of(train_x, train_y), batches_of(test_x, test_y, 500)
mlp = Sequential(Dense(16, 64), ReLU(), Dense(64, 64), ReLU(), Dense(64, 4))
Trainer(mlp, Adam(mlp.parameters(), lr=3e-3), CrossEntropyLoss(), progress=False).fit(train_batches, epochs=3)
print(f"float:                          test accuracy {Trainer(mlp, Adam(mlp.parameters()), CrossEntropyLoss(), progress=False).evaluate(test_batches)['accuracy']:.3f}")

# %% nbgrader={"grade": true, "grade_id": "test-finetune", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.optimizers import AdamW

dense_acc = Trainer(mlp, Adam(mlp.parameters()), CrossEntropyLoss(), progress=False).evaluate(test_batches)["accuracy"]
pruned_mlp = prune_magnitude(copy.deepcopy(mlp), 0.8)
one_shot = Trainer(pruned_mlp, Adam(pruned_mlp.parameters()), CrossEntropyLoss(), progress=False).evaluate(test_batches)["accuracy"]
masks = {name: layer.weight_mask.copy() for name, layer in prunable_layers(pruned_mlp)}
tuner = Trainer(pruned_mlp, AdamW(pruned_mlp.parameters(), lr=1e-3, weight_decay=0.01), CrossEntropyLoss(), progress=False)
tuner.fit(train_batches, epochs=2)
tuned = tuner.evaluate(test_batches)["accuracy"]
for name, layer in prunable_layers(pruned_mlp):
    assert np.array_equal(layer.weight_mask, masks[name]), "the masks do not change while training"
    assert np.all(layer.layer.weight.data[masks[name] == 0] == 0), "pruned weights are still exactly zero"
assert sparsity(pruned_mlp).zeros == pruned_count(0.8, sparsity(pruned_mlp).total)
print(f"80% pruned, no fine-tuning:     test accuracy {one_shot:.3f}")
print(f"80% pruned, 2 epochs fine-tune: test accuracy {tuned:.3f}")
assert dense_acc > 0.9 and tuned >= dense_acc - 0.02, (dense_acc, tuned)
print("fine-tuning with masks: OK")

# %% [markdown]
# ## 5. Int8 quantisation: 255 levels are enough
#
# **Symmetric quantisation** maps a float $x$ to an integer $q \in [-127, 127]$ with one
# positive **scale** $s$:
#
# $$q = \operatorname{clip}\!\left(\operatorname{round}(x / s), -127, 127\right), \qquad
#   \hat{x} = s\, q, \qquad s = \frac{\max |x|}{127}.$$
#
# Zero maps to exactly zero (pruned weights stay pruned, zero padding stays zero), and
# -128 is left out so that the range is symmetric. For every $x$ with $|x| \le 127 s$,
# rounding to the nearest level makes the error at most half a step:
#
# $$|x - \hat x| \le s/2 .$$
#
# Values beyond $127 s$ are **clipped** (saturated) to $\pm 127 s$: their error is larger.
#
# **Per-channel scales.** One scale for a whole weight matrix lets a single large weight
# stretch $s$ for everyone. Output unit $j$ of a layer only ever multiplies its own weights
# (column $j$ of a Dense weight `(in, out)`, filter $c$ of a Conv2d weight), so each gets
# its own $s_j = \max_k |w_{kj}| / 127$: more levels for units with small weights, at the
# cost of one float per unit. An all-zero unit (a structurally pruned one) gets $s = 1$.
#
# In code, `axis` names the axis that indexes the channels: `scale` then has shape
# `(x.shape[axis],)` and is broadcast along that axis; `axis=None` means one scale.

# %% nbgrader={"grade": false, "grade_id": "quantize", "locked": false, "schema_version": 3, "solution": true}
#| export
INT8_MAX = 127


def _along(scale: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """A per-tensor scale as is; per-channel scales (C,) reshaped to broadcast along `axis`."""
    scale = np.asarray(scale, dtype=np.float32)
    if axis is None:
        if scale.size != 1:
            raise ValueError(f"a per-tensor scale must be one number, got shape {scale.shape} (pass axis=...)")
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def _axis(axis: int | None, ndim: int, who: str) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{who}: axis {axis!r} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def symmetric_scale(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """s = max|x| / 127 as float32: a 0-d array (axis=None) or one per index of `axis`,
    shape (x.shape[axis],), the max taken over the other axes. Where max|x| is 0, s = 1."""
    x = np.asarray(x)
    axis = _axis(axis, x.ndim, "symmetric_scale")
    ### BEGIN SOLUTION
    if axis is None:
        top = np.max(np.abs(x)) if x.size else 0.0
    else:
        top = np.max(np.abs(x), axis=tuple(a for a in range(x.ndim) if a != axis))   # (C,)
    s = np.asarray(top / INT8_MAX, dtype=np.float32)
    return np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    ### END SOLUTION


def quantize(x: np.ndarray, scale: np.ndarray | float, axis: int | None = None) -> np.ndarray:
    """int8 q = clip(round(x / s), -127, 127), same shape as x; `scale` one number (axis=None)
    or one per index of `axis`. Rounds half to even (np.rint)."""
    x = np.asarray(x)
    s = _along(scale, x.ndim, _axis(axis, x.ndim, "quantize"))
    ### BEGIN SOLUTION
    q = np.rint(x / s)
    np.clip(q, -INT8_MAX, INT8_MAX, out=q)
    return q.astype(np.int8)
    ### END SOLUTION


def dequantize(q: np.ndarray, scale: np.ndarray | float, axis: int | None = None) -> np.ndarray:
    """float32 s * q, the float value that each int8 level stands for."""
    q = np.asarray(q)
    s = _along(scale, q.ndim, _axis(axis, q.ndim, "dequantize"))
    ### BEGIN SOLUTION
    return q.astype(np.float32) * s
    ### END SOLUTION


def quantize_per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(q int8 of w's shape, scales float32 (w.shape[axis],)): symmetric, one scale per channel."""
    scale = symmetric_scale(w, axis)
    return quantize(w, scale, axis), scale

# %% nbgrader={"grade": true, "grade_id": "test-quantize", "locked": true, "points": 3, "schema_version": 3, "solution": false}
rng = np.random.default_rng(3)
w = (rng.standard_normal((64, 32)) * np.linspace(0.01, 2.0, 32)).astype(np.float32)   # columns of very different size
q, s = quantize_per_channel(w, axis=1)
assert q.dtype == np.int8 and q.shape == w.shape and s.shape == (32,) and s.dtype == np.float32
assert np.allclose(s, np.abs(w).max(axis=0) / 127) and np.abs(q).max(axis=0).tolist() == [127] * 32
error = np.abs(w.astype(np.float64) - dequantize(q, s, axis=1))
assert np.all(error <= s / 2 * (1 + 1e-5)), "per-channel error bound |w - deq(q(w))| <= s/2"
s_tensor = symmetric_scale(w)
assert s_tensor.shape == () and np.isclose(s_tensor, np.abs(w).max() / 127)
error_tensor = np.abs(w - dequantize(quantize(w, s_tensor), s_tensor))
assert error.mean(axis=0)[0] < error_tensor.mean(axis=0)[0] / 10, "per-channel scales help small channels"
assert quantize(np.array([0.0, 1000.0, -1000.0]), 1.0).tolist() == [0, 127, -127], "zero exact, the rest clipped"
conv_w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
conv_w[2] = 0.0
qc, sc = quantize_per_channel(conv_w, axis=0)
assert sc.shape == (4,) and sc[2] == 1.0 and np.all(qc[2] == 0)
print("int8 quantisation: OK")

# %% [markdown]
# ## 6. The integer product
#
# With per-channel weight scales $s_j$ and one input scale $s_x$, a Dense output is
#
# $$y_j = \sum_k x_k w_{kj} + b_j \;\approx\; \sum_k (s_x q^x_k)(s_j q^w_{kj}) + b_j
#       = s_x s_j \underbrace{\sum_k q^x_k q^w_{kj}}_{\text{integers}} + b_j .$$
#
# The sum is pure integer arithmetic: int8 times int8, **accumulated in int32** (one
# product is at most $128^2 = 2^{14}$, so $K$ of them need $14 + \log_2 K$ bits; int32 is
# safe for $K < 2^{31}/2^{14} = 131{,}072$). Only the final rescaling by $s_x s_j$ is in
# float. That is how int8 inference runs on phones and CPUs with int8 dot-product
# instructions.
#
# numpy has no fast integer matrix product (`int32 @ int32` is a simple loop, no BLAS).
# But float arithmetic on integers is *exact* as long as every intermediate sum is an
# integer that the format represents exactly: up to $2^{24}$ for float32, $2^{53}$ for
# float64. So we compute the same int32 result with BLAS: in float32 when
# $K \cdot 2^{14} \le 2^{24}$ ($K \le 1024$: the convolutions), otherwise in float64.
# Whatever order BLAS adds in, every partial sum is an exact integer, and the result is
# bit-identical to `int8_matmul_reference`, the plain definition.

# %% nbgrader={"grade": false, "grade_id": "int8-matmul", "locked": false, "schema_version": 3, "solution": true}
#| export
def _check_int8_operands(a: np.ndarray, b: np.ndarray, who: str) -> int:
    if a.dtype != np.int8 or b.dtype != np.int8:
        raise TypeError(f"{who}: both operands must be int8, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{who}: expected (M, K) @ (K, N), got {a.shape} @ {b.shape}")
    K = a.shape[1]
    if K * 128 * 128 >= 2 ** 31:
        raise ValueError(f"{who}: K = {K} products of int8 values could overflow an int32 accumulator "
                         f"(K must be below {2 ** 31 // (128 * 128)})")
    return K


def int8_matmul_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) int8 @ (K, N) int8 -> (M, N) int32: the definition, with numpy's integer matmul (slow)."""
    _check_int8_operands(a, b, "int8_matmul_reference")
    return a.astype(np.int32) @ b.astype(np.int32)


def int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) int8 @ (K, N) int8 -> (M, N) int32, bit-identical to int32 accumulation, computed
    exactly with a float BLAS product (float32 when K * 2**14 <= 2**24, else float64)."""
    K = _check_int8_operands(a, b, "int8_matmul")
    ### BEGIN SOLUTION
    exact = np.float32 if K * 128 * 128 <= 2 ** 24 else np.float64
    out = a.astype(exact) @ b.astype(exact)                  # every partial sum is an exact integer
    return out.astype(np.int32)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-int8-matmul", "locked": true, "points": 2, "schema_version": 3, "solution": false}
rng = np.random.default_rng(4)
for M, K, N in [(3, 5, 4), (7, 1024, 6), (5, 1025, 3), (2, 4000, 9)]:
    a = rng.integers(-128, 128, size=(M, K), dtype=np.int8)
    b = rng.integers(-128, 128, size=(K, N), dtype=np.int8)
    got = int8_matmul(a, b)
    assert got.dtype == np.int32 and np.array_equal(got, int8_matmul_reference(a, b)), (M, K, N)
worst = np.full((1, 4000), -128, dtype=np.int8)
assert int8_matmul(worst, worst.T)[0, 0] == 4000 * 128 * 128, "large sums are still exact"
try:
    int8_matmul(a.astype(np.int32), b)
    raise AssertionError("int32 operands are not int8")
except TypeError:
    pass
print("integer product: OK")

# %% [markdown]
# ## 7. Quantised layers
#
# `QuantizedDense` keeps the int8 weight `weight_q` `(in, out)`, the per-column scales
# `weight_scale` `(out,)`, the calibrated input scale `input_scale` and a float32 bias.
# Its forward quantises the input with `input_scale`, multiplies in integers and rescales:
#
# ```
# x (..., in) float ─quantize(s_x)─> (M, in) int8 ─@ weight_q─> (M, out) int32 ─* s_x s_w + b─> (..., out) float32
# ```
#
# `QuantizedConv2d` does the same through module 09's im2col: the int8 input image is
# unfolded into columns `(C_in kh kw, N H_out W_out)` (zero padding is the int8 level 0, the
# exact float 0), one integer product with `weight_q.reshape(C_out, -1)` gives
# `(C_out, N H_out W_out)` int32, and a per-channel rescale gives `(N, C_out, H_out, W_out)`.
#
# These layers are **inference-only**: their outputs record no graph, so they refuse an
# input that requires a gradient (a model to train must stay in float). Everything they
# hold is a buffer, so `state_dict` saves it.
#
# How far is the quantised output from the float one? With $|\delta x_k| \le s_x/2$ and
# $|\delta w_{kj}| \le s_j/2$ (inputs inside the calibrated range),
#
# $$|\hat y_j - y_j| \le \frac{s_x}{2} \sum_k |w_{kj}| + \frac{s_j}{2} \sum_k |x_k| + K \frac{s_x s_j}{4}.$$
#
# The tests check this bound, and that the integer part matches `int8_matmul_reference`
# exactly.

# %% nbgrader={"grade": false, "grade_id": "quantized-layers", "locked": false, "schema_version": 3, "solution": true}
#| export
def _positive_scale(value: Any, who: str) -> np.ndarray:
    s = np.asarray(value, dtype=np.float32)
    if s.size != 1 or not np.isfinite(s).all() or not (s > 0).all():
        raise ValueError(f"{who}: input_scale must be one positive finite number, got {value!r}")
    return s.reshape(())


def _check_inference_input(x: Any, who: str) -> Tensor:
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.requires_grad and is_grad_enabled():
        raise RuntimeError(f"{who} is inference-only (int8 arithmetic has no gradient): its input requires a "
                           f"gradient; run it under no_grad(), or fine-tune the float model instead")
    return x


class _QuantizedLayer(Module):
    """Shared checks of QuantizedDense and QuantizedConv2d: int8 weights, per-output-channel
    scales (axis `channel_axis` of the weight), one input scale, a float32 bias or None."""
    channel_axis = 0

    def __init__(self, weight_q: np.ndarray, weight_scale: np.ndarray, input_scale: float,
                 bias: np.ndarray | None = None):
        super().__init__()
        who = type(self).__name__
        weight_q, weight_scale = np.asarray(weight_q), np.asarray(weight_scale, dtype=np.float32)
        if weight_q.dtype != np.int8:
            raise TypeError(f"{who}: weight_q must be int8, got {weight_q.dtype}")
        units = weight_q.shape[self.channel_axis]
        if weight_scale.shape != (units,) or not np.isfinite(weight_scale).all() or not (weight_scale > 0).all():
            raise ValueError(f"{who}: weight_scale must hold {units} positive finite scales (one per output "
                             f"channel), got shape {weight_scale.shape}")
        if bias is not None and np.shape(bias) != (units,):
            raise ValueError(f"{who}: bias must have shape ({units},), got {np.shape(bias)}")
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("input_scale", _positive_scale(input_scale, who))
        self.bias = None
        if bias is not None:
            self.register_buffer("bias", np.asarray(bias, dtype=np.float32))

    @staticmethod
    def _float_parts(layer: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, bias) arrays of a Dense/Conv2d, or the masked ones of a Pruned."""
        if isinstance(layer, Pruned):
            return layer.effective_weight(), layer.effective_bias()
        return layer.weight.data, None if layer.bias is None else layer.bias.data

    def dequantized_weight(self) -> np.ndarray:
        """float32 weight that the int8 weights stand for: weight_q * weight_scale (per channel)."""
        return dequantize(self.weight_q, self.weight_scale, axis=self.channel_axis)


class QuantizedDense(_QuantizedLayer):
    """Inference-only int8 Dense: (..., in_features) float -> (..., out_features) float32.

    weight_q (in, out) int8 with weight_scale (out,) float32, one per output column;
    input_scale: the calibrated scale s_x of the inputs; bias (out,) float32 or None.
    y = int8_matmul(quantize(x, s_x), weight_q) * (s_x * weight_scale) + bias.
    """
    channel_axis = 1

    def __init__(self, weight_q: np.ndarray, weight_scale: np.ndarray, input_scale: float,
                 bias: np.ndarray | None = None):
        if np.ndim(weight_q) != 2:
            raise ValueError(f"QuantizedDense: weight_q must be (in_features, out_features), got shape {np.shape(weight_q)}")
        super().__init__(weight_q, weight_scale, input_scale, bias)
        self.in_features, self.out_features = self.weight_q.shape

    @classmethod
    def from_float(cls, layer: Dense | Pruned, input_scale: float) -> QuantizedDense:
        """Quantise a Dense (or a Pruned Dense) with per-column scales."""
        weight, bias = cls._float_parts(layer)
        q, scale = quantize_per_channel(weight, axis=1)
        return cls(q, scale, input_scale, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = _check_inference_input(x, "QuantizedDense")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedDense: input of shape {x.shape} does not fit: its last dimension "
                             f"must be in_features={self.in_features}")
        lead = x.shape[:-1]
        ### BEGIN SOLUTION
        qx = quantize(x.data.reshape(-1, self.in_features), self.input_scale)    # (M, in) int8
        acc = int8_matmul(qx, self.weight_q)                                      # (M, out) int32
        y = acc.astype(np.float32) * (self.input_scale * self.weight_scale)       # (M, out) float32
        if self.bias is not None:
            y += self.bias
        return Tensor(y.reshape(*lead, self.out_features))
        ### END SOLUTION

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, input_scale={float(self.input_scale):.4g}")


class QuantizedConv2d(_QuantizedLayer):
    """Inference-only int8 Conv2d: (N, C_in, H, W) float -> (N, C_out, H_out, W_out) float32.

    weight_q (C_out, C_in, kh, kw) int8 with weight_scale (C_out,) float32, one per filter;
    input_scale s_x; bias (C_out,) float32 or None; stride and padding as in Conv2d.
    im2col of the int8 input, one int8_matmul, then a per-channel rescale and the bias.
    """
    channel_axis = 0

    def __init__(self, weight_q: np.ndarray, weight_scale: np.ndarray, input_scale: float,
                 bias: np.ndarray | None = None, stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] = (0, 0)):
        if np.ndim(weight_q) != 4:
            raise ValueError(f"QuantizedConv2d: weight_q must be (C_out, C_in, kh, kw), got shape {np.shape(weight_q)}")
        super().__init__(weight_q, weight_scale, input_scale, bias)
        self.out_channels, self.in_channels, kh, kw = self.weight_q.shape
        self.kernel_size = (kh, kw)
        self.stride, self.padding = tuple(int(v) for v in stride), tuple(int(v) for v in padding)

    @classmethod
    def from_float(cls, layer: Conv2d | Pruned, input_scale: float) -> QuantizedConv2d:
        """Quantise a Conv2d (or a Pruned Conv2d) with one scale per output channel."""
        inner = layer.layer if isinstance(layer, Pruned) else layer
        weight, bias = cls._float_parts(layer)
        q, scale = quantize_per_channel(weight, axis=0)
        return cls(q, scale, input_scale, bias, stride=inner.stride, padding=inner.padding)

    def forward(self, x: Tensor) -> Tensor:
        x = _check_inference_input(x, "QuantizedConv2d")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"QuantizedConv2d({self.in_channels}->{self.out_channels}): expected input "
                             f"(N, {self.in_channels}, H, W), got {x.shape}")
        N, C_out = x.shape[0], self.out_channels
        ### BEGIN SOLUTION
        qx = quantize(x.data, self.input_scale)                                   # (N, C_in, H, W) int8
        cols = im2col(qx, self.kernel_size, self.stride, self.padding)           # (K, N*L) int8, columns (n, y, x)
        acc = int8_matmul(self.weight_q.reshape(C_out, -1), cols)                 # (C_out, N*L) int32
        y = acc.astype(np.float32) * (self.input_scale * self.weight_scale)[:, None]
        if self.bias is not None:
            y += self.bias[:, None]
        H_out = (x.shape[2] + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1
        y = y.reshape(C_out, N, H_out, -1).transpose(1, 0, 2, 3)                  # (N, C_out, H_out, W_out)
        return Tensor(np.ascontiguousarray(y))
        ### END SOLUTION

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, input_scale={float(self.input_scale):.4g}")

# %% nbgrader={"grade": true, "grade_id": "test-quantized-layers", "locked": true, "points": 4, "schema_version": 3, "solution": false}
rng = np.random.default_rng(5)
dense = Dense(40, 7, rng=rng)
dense.bias.data[:] = rng.standard_normal(7)
xs = rng.uniform(-1, 1, size=(6, 40)).astype(np.float32)
s_x = float(symmetric_scale(xs))
qd = QuantizedDense.from_float(dense, s_x)
assert qd.weight_q.dtype == np.int8 and qd.weight_scale.shape == (7,) and qd.num_parameters() == 0
got, want = qd(Tensor(xs)).data, dense(Tensor(xs)).data
assert got.dtype == np.float32 and got.shape == (6, 7)
w = dense.weight.data
bound = (s_x / 2 * np.abs(w).sum(0) + qd.weight_scale / 2 * np.abs(xs).sum(1, keepdims=True)
         + 40 * s_x * qd.weight_scale / 4)
assert np.all(np.abs(got - want) <= bound * (1 + 1e-4)), "within the quantisation error bound"
integers = int8_matmul_reference(quantize(xs, s_x), qd.weight_q)
assert np.allclose(got, integers * (np.float32(s_x) * qd.weight_scale) + qd.bias, rtol=1e-6, atol=1e-6)
conv = Conv2d(3, 5, 3, stride=2, padding=1, rng=rng)
imgs = rng.uniform(-2, 2, size=(2, 3, 7, 7)).astype(np.float32)
s_img = float(symmetric_scale(imgs))
qc = QuantizedConv2d.from_float(conv, s_img)
out_q, out_f = qc(Tensor(imgs)).data, conv(Tensor(imgs)).data
assert out_q.shape == out_f.shape == (2, 5, 4, 4)
ref = int8_matmul_reference(qc.weight_q.reshape(5, -1), im2col(quantize(imgs, s_img), (3, 3), (2, 2), (1, 1)))
ref = (ref * (np.float32(s_img) * qc.weight_scale)[:, None]).reshape(5, 2, 4, 4).transpose(1, 0, 2, 3)
assert np.allclose(out_q, ref + qc.bias[None, :, None, None], rtol=1e-6, atol=1e-6), "same integer arithmetic"
assert np.abs(out_q - out_f).max() < 0.05 * np.abs(out_f).max()
try:
    qd(Tensor(xs, requires_grad=True))
    raise AssertionError("inference-only")
except RuntimeError:
    pass
print(qd)
print("quantised layers: OK")

# %% [markdown]
# ## 8. Calibration and whole-model quantisation
#
# Weights are known after training, so their scales are exact. **Activations** depend on
# the input, so their scale $s_x$ is *calibrated*: run the float model on a few batches of
# **training** data (never the test set) and record what reaches each layer.
#
# * `method="minmax"` (default): $s_x = \max|x| / 127$ over all calibration inputs. No
#   calibration input is ever clipped, but one outlier can stretch the scale for everyone.
# * `method="percentile"`: $s_x$ = the `percentile` (default 99.99) of $|x|$ over all
#   calibration values, divided by 127: the rare largest values are clipped, and the rest
#   get finer levels. It keeps every observed $|x|$ in memory during calibration.
#
# `calibrate` replaces each weight layer by an observer that records its input and calls
# the layer, runs the batches under `no_grad` in evaluation mode, then puts the layers
# back. `quantize_model` copies the model (the float one stays usable), replaces every
# `Dense`/`Conv2d` (pruned or not) by its quantised version, and keeps the other layers
# (`ReLU`, `MaxPool2d`, `Flatten`, `Dropout`...) as they are.

# %% nbgrader={"grade": false, "grade_id": "quantize-model", "locked": false, "schema_version": 3, "solution": true}
#| export
def _inputs_of(batch: Any) -> Any:
    """The model input of a batch: `inputs` of an (inputs, targets) pair, else the batch itself."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class _Observer(Module):
    """Calls `layer` unchanged and records the absolute values of what it receives."""
    def __init__(self, layer: Any, keep_values: bool):
        super().__init__()
        self.layer, self.keep_values = layer, keep_values
        self.max_abs, self.values, self.batches = 0.0, [], 0

    def forward(self, x: Any) -> Any:
        a = np.abs(x.data if isinstance(x, Tensor) else np.asarray(x))
        self.max_abs = max(self.max_abs, float(a.max()) if a.size else 0.0)
        if self.keep_values:
            self.values.append(a.astype(np.float32).ravel())
        self.batches += 1
        return self.layer(x)


def calibrate(model: Module, batches: Iterable[Any], method: str = "minmax",
              percentile: float = 99.99) -> dict[str, float]:
    """Input scale s_x of every weight layer of `model` (name -> float, names as in
    `prunable_layers`), from running the float model on `batches` (inputs, or (inputs,
    targets) pairs) under no_grad in evaluation mode. method "minmax": max|x| / 127;
    "percentile": the `percentile` of |x| / 127. The model is left as it was."""
    if method not in ("minmax", "percentile"):
        raise ValueError(f"calibrate: method must be 'minmax' or 'percentile', got {method!r}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise ValueError(f"calibrate: percentile must lie in (0, 100], got {percentile!r}")
    prunable_layers(model)                                       # checks that model is a container
    observers: dict[str, _Observer] = {}

    def watch(name: str, layer: Any) -> _Observer:
        observers[name] = _Observer(layer, keep_values=method == "percentile")
        return observers[name]

    was_training = model.training
    _replace(model, lambda m: isinstance(m, (Dense, Conv2d, Pruned)), watch)
    try:
        ### BEGIN SOLUTION
        model.eval()
        with no_grad():
            for batch in batches:
                inputs = _inputs_of(batch)
                model(inputs if isinstance(inputs, Tensor) else Tensor(inputs))
        ### END SOLUTION
    finally:
        _replace(model, lambda m: isinstance(m, _Observer), lambda name, obs: obs.layer)
        model.train(was_training)
    if not observers:
        raise ValueError("calibrate: the model has no Dense or Conv2d layer to quantise")
    scales = {}
    for name, obs in observers.items():
        if obs.batches == 0:
            raise ValueError(f"calibrate: layer {name} saw no data: the calibration batches were empty "
                             f"(a generator is used up after one pass: pass a list)")
        ### BEGIN SOLUTION
        top = obs.max_abs if method == "minmax" else float(np.percentile(np.concatenate(obs.values), percentile))
        scales[name] = top / INT8_MAX if top > 0 else 1.0
        ### END SOLUTION
    return scales


def quantize_model(model: Module, calibration_batches: Iterable[Any], method: str = "minmax",
                   percentile: float = 99.99) -> Module:
    """A quantised copy of `model`, in evaluation mode: every Dense / Conv2d (or Pruned one)
    replaced by a QuantizedDense / QuantizedConv2d whose input scale is calibrated on
    `calibration_batches`; the other layers kept. `model` itself is not changed."""
    scales = calibrate(model, calibration_batches, method, percentile)
    quantized = copy.deepcopy(model)
    ### BEGIN SOLUTION
    def convert(name: str, layer: Any) -> Any:
        inner = layer.layer if isinstance(layer, Pruned) else layer
        cls = QuantizedDense if isinstance(inner, Dense) else QuantizedConv2d
        return cls.from_float(layer, scales[name])
    _replace(quantized, lambda m: isinstance(m, (Dense, Conv2d, Pruned)), convert)
    ### END SOLUTION
    return quantized.eval()


def evaluate_accuracy(model: Module, batches: Iterable[Any]) -> float:
    """Fraction of (inputs, targets) examples whose argmax output equals the target, under
    no_grad in evaluation mode (the model's mode is restored)."""
    correct = total = 0
    was_training = getattr(model, "training", True)
    model.eval()
    try:
        with no_grad():
            for batch in batches:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise TypeError("evaluate_accuracy: each batch must be a pair (inputs, targets)")
                inputs, targets = batch
                out = model(inputs if isinstance(inputs, Tensor) else Tensor(inputs)).data
                targets = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
                correct += int(np.count_nonzero(out.argmax(axis=-1) == targets))
                total += targets.size
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate_accuracy: the batches hold no examples")
    return correct / total

# %% nbgrader={"grade": true, "grade_id": "test-quantize-model", "locked": true, "points": 3, "schema_version": 3, "solution": false}
calibration = train_batches[:5]                                  # training data only
scales = calibrate(mlp, calibration)
assert list(scales) == ["layers.0", "layers.2", "layers.4"]
assert np.isclose(scales["layers.0"], np.abs(np.concatenate([b[0] for b in calibration])).max() / 127)
assert all(isinstance(m, Dense) for _, m in prunable_layers(mlp)), "calibration puts the float layers back"
q_mlp = quantize_model(mlp, calibration)
assert [type(m).__name__ for m in q_mlp] == ["QuantizedDense", "ReLU", "QuantizedDense", "ReLU", "QuantizedDense"]
assert isinstance(mlp[0], Dense), "the float model is unchanged"
float_acc, int8_acc = evaluate_accuracy(mlp, test_batches), evaluate_accuracy(q_mlp, test_batches)
print(f"float {float_acc:.3f}, int8 {int8_acc:.3f}")
assert abs(float_acc - int8_acc) <= 0.01, "int8 within one point of float"
p_scales = calibrate(mlp, calibration, method="percentile", percentile=99.0)
assert p_scales["layers.0"] < scales["layers.0"]
q_pruned = quantize_model(pruned_mlp, calibration)
assert sparsity(q_pruned).zeros >= sparsity(pruned_mlp).zeros, "pruned zeros stay zero in int8"
print("quantize_model: OK")

# %% [markdown]
# ## 9. Files that are really smaller
#
# A compressed model is only smaller if its **file** is. `save_compressed(model, path)`
# writes an `.npz` archive (module 07's `save_npz_checkpoint`: written to a temporary file
# and renamed into place, read back with `allow_pickle=False`, never unpickled) holding:
#
# * the **architecture** as JSON: the list of layers of a `Sequential` (nested ones too)
#   with their settings, so that `load_compressed(path)` rebuilds a working model by itself
#   (stored as UTF-8 bytes in a uint8 array: a numpy string array would spend 4 bytes per
#   character);
# * per weight, one of two **encodings**:
#   * `dense`: the array as it is (float32, or int8 for quantised layers);
#   * `bitmask`: `np.packbits` of "is nonzero" (1 bit per weight) plus the nonzero values
#     in order. It costs $n/8 + \text{nnz} \cdot b$ bytes instead of $n b$ for $b$-byte
#     values, so it pays off below a density of $1 - 1/(8b)$: 97 % for float32, 87.5 % for int8.
#     `sparse="auto"` (default) picks the smaller encoding for each weight;
# * quantised layers: int8 weights, their float32 scales, and the input scale (in the JSON).
#
# A `Pruned` layer is saved as its plain layer with the mask baked in: the file is for
# inference, and the zeros are exactly where the mask was. `model_size_bytes(path)` is the
# file's size: what a download or a flash chip would hold. The archive is not
# zip-compressed, so the sizes are the honest byte counts of the encodings (plus about
# 200 bytes of headers per array).

# %% nbgrader={"grade": false, "grade_id": "files", "locked": false, "schema_version": 3, "solution": true}
#| export
COMPRESSED_KIND = "compressed-model"
_ARCHITECTURE = "architecture.json"          # the array holding the architecture as UTF-8 JSON
_ACTIVATIONS = {"ReLU": ReLU, "Sigmoid": Sigmoid, "Tanh": Tanh, "GELU": GELU}


def _encode(arrays: dict[str, np.ndarray], key: str, w: np.ndarray, sparse: bool | str) -> dict[str, Any]:
    """Store weight `w` under `key`, dense or as bitmask + nonzero values; returns its description."""
    w = np.ascontiguousarray(w)
    nnz = int(np.count_nonzero(w))
    dense_bytes = w.size * w.itemsize
    bitmask_bytes = (w.size + 7) // 8 + nnz * w.itemsize
    ### BEGIN SOLUTION
    if sparse is True or (sparse == "auto" and bitmask_bytes < dense_bytes):
        nonzero = w.ravel() != 0
        arrays[key + ".bitmask"] = np.packbits(nonzero)        # (ceil(n / 8),) uint8
        arrays[key + ".values"] = w.ravel()[nonzero]           # (nnz,), w's dtype
        encoding = "bitmask"
    else:
        arrays[key] = w
        encoding = "dense"
    ### END SOLUTION
    return {"shape": list(w.shape), "dtype": str(w.dtype), "encoding": encoding}


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], dtype: Any, where: str) -> np.ndarray:
    """arrays[key], checked for presence, shape and dtype (CheckpointError naming the key)."""
    if key not in arrays:
        raise CheckpointError(f"{where}: array {key!r} is missing")
    a = arrays.pop(key)
    if a.shape != tuple(shape) or a.dtype != np.dtype(dtype):
        raise CheckpointError(f"{where}: array {key!r} has shape {a.shape} and dtype {a.dtype}, "
                              f"expected {tuple(shape)} and {np.dtype(dtype)}")
    return a


def _decode(arrays: dict[str, np.ndarray], key: str, info: dict[str, Any], where: str) -> np.ndarray:
    """The weight stored by `_encode` under `key`, as a dense array."""
    shape, dtype = tuple(int(d) for d in info["shape"]), np.dtype(info["dtype"])
    n = math.prod(shape)
    if info["encoding"] == "dense":
        return _array(arrays, key, shape, dtype, where)
    if info["encoding"] != "bitmask":
        raise CheckpointError(f"{where}: unknown encoding {info['encoding']!r} of {key!r}")
    ### BEGIN SOLUTION
    bits = _array(arrays, key + ".bitmask", ((n + 7) // 8,), np.uint8, where)
    nonzero = np.unpackbits(bits, count=n).astype(bool)                     # (n,)
    values = _array(arrays, key + ".values", (int(nonzero.sum()),), dtype, where)
    w = np.zeros(n, dtype=dtype)
    w[nonzero] = values
    return w.reshape(shape)
    ### END SOLUTION


def _describe(layer: Any, key: str, arrays: dict[str, np.ndarray], sparse: bool | str) -> dict[str, Any]:
    """JSON description of `layer` (arrays stored under names starting with `key`)."""
    if isinstance(layer, Sequential):
        return {"type": "Sequential",
                "layers": [_describe(sub, f"{key}{i}.", arrays, sparse) for i, sub in enumerate(layer.layers)]}
    if isinstance(layer, (Pruned, Dense, Conv2d)):
        inner = layer.layer if isinstance(layer, Pruned) else layer
        weight, bias = _QuantizedLayer._float_parts(layer)
        spec: dict[str, Any] = {"type": type(inner).__name__, "weight": _encode(arrays, key + "weight", weight, sparse),
                                "bias": bias is not None}
        if isinstance(inner, Conv2d):
            spec.update(stride=list(inner.stride), padding=list(inner.padding))
    elif isinstance(layer, _QuantizedLayer):
        spec = {"type": type(layer).__name__, "weight": _encode(arrays, key + "weight_q", layer.weight_q, sparse),
                "input_scale": float(layer.input_scale), "bias": layer.bias is not None}
        arrays[key + "weight_scale"] = layer.weight_scale
        bias = layer.bias
        if isinstance(layer, QuantizedConv2d):
            spec.update(stride=list(layer.stride), padding=list(layer.padding))
    elif isinstance(layer, Flatten):
        return {"type": "Flatten", "start_dim": layer.start_dim}
    elif isinstance(layer, Dropout):
        return {"type": "Dropout", "p": layer.p}
    elif isinstance(layer, (MaxPool2d, AvgPool2d)):
        return {"type": type(layer).__name__, "kernel_size": list(layer.kernel_size), "stride": list(layer.stride)}
    elif type(layer).__name__ in _ACTIVATIONS and type(layer) is _ACTIVATIONS[type(layer).__name__]:
        return {"type": type(layer).__name__}
    else:
        supported = ["Sequential", "Dense", "Conv2d", "Pruned", "QuantizedDense", "QuantizedConv2d", "Flatten",
                     "Dropout", "MaxPool2d", "AvgPool2d", *_ACTIVATIONS]
        raise TypeError(f"save_compressed: cannot describe a {type(layer).__name__} (at {key.rstrip('.') or 'the top'}); "
                        f"supported layers: {', '.join(supported)}")
    if bias is not None:
        arrays[key + "bias"] = np.asarray(bias, dtype=np.float32)
    return spec


def _build(spec: Any, key: str, arrays: dict[str, np.ndarray], where: str) -> Any:
    """The layer described by `spec`, with its arrays taken out of `arrays`."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise CheckpointError(f"{where}: layer {key.rstrip('.') or '<top>'} has no valid description: {spec!r}")
    kind = spec["type"]
    try:
        if kind == "Sequential":
            return Sequential([_build(s, f"{key}{i}.", arrays, where) for i, s in enumerate(spec["layers"])])
        if kind in ("Dense", "Conv2d", "QuantizedDense", "QuantizedConv2d"):
            wkey = key + ("weight_q" if kind.startswith("Quantized") else "weight")
            weight = _decode(arrays, wkey, spec["weight"], where)
            units = weight.shape[1] if kind.endswith("Dense") else weight.shape[0]
            bias = _array(arrays, key + "bias", (units,), np.float32, where) if spec["bias"] else None
            if kind.startswith("Quantized"):
                scale = _array(arrays, key + "weight_scale", (units,), np.float32, where)
                if kind == "QuantizedDense":
                    return QuantizedDense(weight, scale, spec["input_scale"], bias)
                return QuantizedConv2d(weight, scale, spec["input_scale"], bias, tuple(spec["stride"]), tuple(spec["padding"]))
            init = np.random.default_rng(0)                   # throw-away init: TinyTorch's global RNG is untouched
            if kind == "Dense":
                layer = Dense(weight.shape[0], weight.shape[1], bias=bias is not None, dtype=weight.dtype, rng=init)
            else:
                layer = Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], stride=tuple(spec["stride"]),
                               padding=tuple(spec["padding"]), bias=bias is not None, dtype=weight.dtype, rng=init)
            layer.weight.data = weight
            if bias is not None:
                layer.bias.data = bias.astype(weight.dtype, copy=False)
            return layer
        if kind == "Flatten":
            return Flatten(int(spec["start_dim"]))
        if kind == "Dropout":
            return Dropout(float(spec["p"]))
        if kind in ("MaxPool2d", "AvgPool2d"):
            return (MaxPool2d if kind == "MaxPool2d" else AvgPool2d)(tuple(spec["kernel_size"]), tuple(spec["stride"]))
        if kind in _ACTIVATIONS:
            return _ACTIVATIONS[kind]()
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{where}: layer {key.rstrip('.') or '<top>'} ({kind}) cannot be rebuilt: "
                              f"{type(err).__name__}: {err}") from None
    raise CheckpointError(f"{where}: layer {key.rstrip('.') or '<top>'} has unknown type {kind!r}")


def save_compressed(model: Module, path: str | os.PathLike, sparse: bool | str = "auto",
                    meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (a Sequential of the layers `load_compressed` knows) to `path` atomically.

    sparse: "auto" stores each weight as a bitmask + nonzero values when that is smaller,
    True always, False never. Quantised layers keep their int8 weights and scales; Pruned
    layers are saved with their masks baked in. `meta`: extra JSON-able facts to keep.
    Returns the path."""
    if sparse not in (True, False, "auto"):
        raise ValueError(f"save_compressed: sparse must be True, False or 'auto', got {sparse!r}")
    if not isinstance(model, Sequential):
        raise TypeError(f"save_compressed: expected a Sequential model, got a {type(model).__name__}")
    arrays: dict[str, np.ndarray] = {}
    architecture = _describe(model, "", arrays, sparse)
    text = json.dumps(architecture, separators=(",", ":"))              # compact UTF-8 bytes, not a
    arrays[_ARCHITECTURE] = np.frombuffer(text.encode("utf-8"), np.uint8)   # 4-byte-per-character str array
    return save_npz_checkpoint(path, arrays, {"user": dict(meta or {})}, kind=COMPRESSED_KIND)


def load_compressed(path: str | os.PathLike) -> Sequential:
    """Rebuild the model saved by `save_compressed`, in evaluation mode. CheckpointError (naming
    the file and the problem) for a missing, truncated, corrupt or foreign file, or one whose
    arrays do not match its architecture. Never unpickles."""
    arrays, meta = load_npz_checkpoint(path, kind=COMPRESSED_KIND)
    where = str(path)
    text = arrays.pop(_ARCHITECTURE, None)
    if text is None or text.dtype != np.uint8 or text.ndim != 1:
        raise CheckpointError(f"{where}: a compressed-model file without a readable {_ARCHITECTURE!r} array")
    try:
        architecture = json.loads(text.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{where}: the architecture is not valid JSON ({err})") from None
    model = _build(architecture, "", arrays, where)
    if arrays:
        raise CheckpointError(f"{where}: arrays {sorted(arrays)[:5]} belong to no layer of the architecture")
    if not isinstance(model, Sequential):
        raise CheckpointError(f"{where}: the architecture is a {type(model).__name__}, not a Sequential")
    return model.eval()


def compressed_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The `meta` dict given to `save_compressed` for this file."""
    return load_npz_checkpoint(path, kind=COMPRESSED_KIND)[1].get("user", {})


def model_size_bytes(path: str | os.PathLike) -> int:
    """Size of the file at `path` in bytes: what the compressed model costs on disk."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model_size_bytes: no file at {p}")
    return p.stat().st_size

# %% nbgrader={"grade": true, "grade_id": "test-files", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import tempfile

folder = Path(tempfile.mkdtemp(prefix="tinytorch-compression-"))
rng = np.random.default_rng(6)
big = Sequential(Flatten(), Dense(256, 128, rng=rng), ReLU(), Dense(128, 10, rng=rng))
x = Tensor(rng.standard_normal((4, 1, 16, 16)).astype(np.float32))
f32 = model_size_bytes(save_compressed(big, folder / "float32.npz"))
assert f32 > 4 * (256 * 128 + 128 * 10)
calib = [rng.standard_normal((32, 1, 16, 16)).astype(np.float32)]
q_big = quantize_model(big, calib)
i8 = model_size_bytes(save_compressed(q_big, folder / "int8.npz"))
assert f32 / i8 > 3.5, f"int8 is about 4x smaller: {f32} vs {i8} bytes"
restored = load_compressed(folder / "int8.npz")
assert np.array_equal(restored(x).data, q_big(x).data), "save -> load gives identical outputs"
sparse_big = prune_magnitude(copy.deepcopy(big), 0.8)
sp = model_size_bytes(save_compressed(sparse_big, folder / "sparse.npz"))
assert f32 / sp > 3.5, f"80% sparse: bitmask + values: {f32} vs {sp} bytes"
back = load_compressed(folder / "sparse.npz")
assert np.array_equal(back(x).data, sparse_big(x).data) and sparsity(back).overall == sparsity(sparse_big).overall
(folder / "truncated.npz").write_bytes((folder / "int8.npz").read_bytes()[:500])
try:
    load_compressed(folder / "truncated.npz")
    raise AssertionError("a truncated file must be refused")
except CheckpointError:
    pass
print(f"float32 {f32:,} B, int8 {i8:,} B ({f32 / i8:.2f}x smaller), 80% sparse {sp:,} B ({f32 / sp:.2f}x smaller)")
print("compressed files: OK")

# %% [markdown]
# ## 10. Accuracy against size
#
# Everything together on the generated problem of section 4: the float model, int8, 80 %
# pruned and fine-tuned, and both at once. The milestone `milestones/compression_cifar10.py`
# does the same for the trained MLP and LeNet-5 on the full CIFAR-10 test set and records
# the numbers in `results/compression_cifar10.json`.

# %%
variants = {"float32": mlp, "int8": q_mlp, "80% sparse": pruned_mlp, "80% sparse + int8": q_pruned}
sizes, accs = {}, {}
for name, model in variants.items():
    path = save_compressed(model, folder / f"{name.replace(' ', '_').replace('%', '')}.npz")
    sizes[name], accs[name] = model_size_bytes(path), evaluate_accuracy(load_compressed(path), test_batches)
    print(f"{name:>18}: {sizes[name]:>7,} bytes ({sizes['float32'] / sizes[name]:4.1f}x smaller), "
          f"test accuracy {accs[name]:.3f}")

# %% [markdown]
# ## Systems thinking
#
# 1. **Sparse is not automatically fast.** The 80 %-sparse MLP above still runs dense
#    matrix products (the zeros are multiplied too). Estimate, for a `Dense(3072, 1024)` at
#    80 % and at 95 % sparsity, the bytes a CSR product would read (values + int32 column
#    indices + row pointers) against the dense float32 weight. Where is the break-even, and
#    why does structured pruning (section 3) not have this problem?
# 2. **Where does the int8 error come from?** Use the bound of section 7 to find which
#    term dominates for the first layer of the MLP milestone ($K = 3072$, inputs normalised
#    to about unit scale). What happens to it if one calibration image has a pixel 20 times
#    larger than the others, with `minmax` and with `percentile` calibration?
# 3. **Accumulator width.** `int8_matmul` refuses $K \ge 131{,}072$. Why exactly that
#    number? Real int8 kernels (e.g. with 16-bit intermediate sums) must split long sums
#    earlier: at what $K$ could a 16-bit partial sum overflow?
# 4. **The file against memory.** `load_compressed` rebuilds float32 `Dense` layers from a
#    sparse file. How much memory does the loaded 80 %-sparse MLP take compared with its
#    file, and what would an inference engine have to do to keep the savings at run time?
# 5. **Calibration data.** Why must calibration use training images and never test images,
#    even though it trains no weight? What could go wrong if the calibration batches were
#    all from one class?
