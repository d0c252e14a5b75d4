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
# # Module 03: Layers
#
# **Where you are.** You have tensors (module 01), nonlinearities and the `Module` base
# class with its `Parameter`s (module 02). A neural network is these pieces arranged into
# *layers* that own learnable numbers. This module builds the layers and the container
# every later model uses, from the MLP of module 06 to the transformer of module 16.
# (`Module`, `Parameter` and `StateDictError` stay importable from `tinytorch.core.layers`.)
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `Dense` | the fully connected layer `y = x @ W + b`, He-initialised |
# | `Sequential` | a chain of layers applied in order |
# | `Flatten` | (N, ...) -> (N, prod(...)) |
# | `Dropout` | inverted dropout, active only in training mode |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/layers.py`.
#
# **No gradient code here.** A layer's `forward` only composes `Tensor` operations
# (`@`, `+`, `*`, `reshape`). Because every one of them records itself in the graph,
# `loss.backward()` (module 05) reaches the weights of any layer you can write, without
# the layer knowing anything about derivatives.
#
# **Points: 8** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-02 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.layers

# %%
#| export
"""Layers: Dense, Sequential, Flatten, Dropout (Module and Parameter come from module 02).

Module 03 of TinyTorch (generated from modules/03_layers/layers_dev.py; do not edit).

Layers only compose Tensor operations; gradients reach their parameters through the
graph that those operations record (module 05).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterator

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Tensor, get_rng
from tinytorch.core.activations import LoadResult, Module, Parameter, StateDictError  # noqa: F401 (re-exported)

# %% [markdown]
# ## 1. Dense: the fully connected layer
#
# $$y = x W + b, \qquad x: (\dots, \text{in}),\; W: (\text{in}, \text{out}),\; b: (\text{out},),\; y: (\dots, \text{out})$$
#
# **Layout.** We store $W$ as (in, out) so that the forward pass is a plain `x @ W`, rows of
# $x$ being examples. (PyTorch stores (out, in) and computes `x @ W.T`; the two are the same
# layer, transposed.) Because `@` broadcasts leading axes, the same layer applies to a
# batch of vectors (N, in), a batch of sequences (B, T, in), or a single vector (in,).
#
# **Initialisation.** If $W$ starts too large, activations grow layer after layer; too
# small, they shrink to nothing, and so do the gradients. For an output
# $y_j = \sum_{i=1}^{n} x_i W_{ij}$ with independent zero-mean weights,
# $\mathrm{Var}(y_j) = n\,\mathrm{Var}(W)\,E[x^2]$. ReLU zeroes half of its inputs, halving
# the second moment, so keeping the signal's scale from layer to layer needs
#
# $$\mathrm{Var}(W) = \frac{2}{n_\text{in}} \quad\text{(He / Kaiming init)}, \qquad
#   W \sim \mathcal{U}\!\left(-\sqrt{6/n_\text{in}},\; \sqrt{6/n_\text{in}}\right)$$
#
# (a uniform distribution on $[-a, a]$ has variance $a^2/3$). Biases start at 0.

# %% nbgrader={"grade": false, "grade_id": "dense", "locked": false, "schema_version": 3, "solution": true}
#| export
class Dense(Module):
    """Fully connected layer: (..., in_features) -> (..., out_features), y = x @ W + b.

    `weight` has shape (in_features, out_features), He-uniform initialised
    (U(-sqrt(6/in), sqrt(6/in)), variance 2/in); `bias` has shape (out_features,), zeros,
    or is None when `bias=False`. Random numbers come from `rng` (default: the global
    generator of `tinytorch.core.tensor`).
    """
    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense: sizes must be positive, got in_features={in_features}, "
                             f"out_features={out_features}")
        ### BEGIN SOLUTION
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = math.sqrt(6.0 / in_features)
        w = (rng or get_rng()).uniform(-bound, bound, size=(in_features, out_features))
        self.weight = Parameter(w.astype(dtype), dtype=dtype)
        self.bias = Parameter(np.zeros(out_features, dtype=dtype), dtype=dtype) if bias else None
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        x = x if isinstance(x, Tensor) else Tensor(x)
        ### END SOLUTION
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: input of shape {x.shape} does not fit: its last dimension "
                             f"must be in_features={self.in_features} (weight shape {self.weight.shape})")
        ### BEGIN SOLUTION
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-dense", "locked": true, "points": 4, "schema_version": 3, "solution": false}
layer = Dense(4, 3, rng=np.random.default_rng(0))
assert layer.weight.shape == (4, 3) and layer.bias.shape == (3,) and layer.weight.dtype == np.float32
assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
x = Tensor(np.random.default_rng(1).normal(size=(5, 4)))
assert np.allclose(layer(x).data, x.data @ layer.weight.data + layer.bias.data, atol=1e-6)
assert layer(Tensor(np.ones((2, 7, 4)))).shape == (2, 7, 3), "leading batch dimensions"
assert layer(Tensor(np.ones(4))).shape == (3,), "a single vector"
assert Dense(4, 3, bias=False).num_parameters() == 12
try:
    layer(Tensor(np.ones((5, 6))))
    raise AssertionError("last dimension 6 is not in_features 4")
except ValueError:
    pass
big = Dense(512, 512, rng=np.random.default_rng(2))
assert abs(big.weight.data.var() - 2 / 512) < 0.05 * 2 / 512, "He init: Var(W) = 2 / fan_in"
assert abs(big.weight.data.max()) <= math.sqrt(6 / 512) and (big.bias.data == 0).all()
print(layer)
print("dense: OK")

# %% [markdown]
# ## 2. Sequential, Flatten and Dropout
#
# **`Sequential`** applies its layers in order. It stores them in a list attribute named
# `layers`, so `Module`'s discovery names their parameters `layers.0.weight`,
# `layers.2.bias`, ... It also behaves like a list: `len`, indexing, iteration, `append`.
#
# **`Flatten`** turns images (N, C, H, W) into vectors (N, C·H·W) for a Dense layer: a
# `reshape`, no data moves.
#
# **`Dropout`** fights overfitting: during training each element is zeroed with
# probability $p$, so no unit can rely on any particular other unit. The survivors are
# scaled by $1/(1-p)$ (*inverted* dropout), which keeps the expected value unchanged:
# $E[\text{out}] = (1-p)\cdot\frac{x}{1-p} = x$. At evaluation time dropout does nothing,
# and thanks to the scaling no correction is needed there. The mask is a constant
# ndarray, so `x * mask` sends the gradient back through exactly the surviving elements.

# %% nbgrader={"grade": false, "grade_id": "containers", "locked": false, "schema_version": 3, "solution": true}
#| export
class Sequential(Module):
    """Layers applied in order: `Sequential(a, b, c)` or `Sequential([a, b, c])`."""
    def __init__(self, *layers: Callable):
        super().__init__()
        ### BEGIN SOLUTION
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        ### END SOLUTION
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: element {i} is a {type(layer).__name__}, not a layer")
        ### BEGIN SOLUTION
        self.layers = list(layers)
        ### END SOLUTION

    def forward(self, x: Any) -> Any:
        ### BEGIN SOLUTION
        for layer in self.layers:
            x = layer(x)
        return x
        ### END SOLUTION

    def append(self, layer: Callable) -> Sequential:
        if not callable(layer):
            raise TypeError(f"Sequential.append: a {type(layer).__name__} is not a layer")
        ### BEGIN SOLUTION
        self.layers.append(layer)
        return self
        ### END SOLUTION

    def __getitem__(self, index: int | slice) -> Any:
        ### BEGIN SOLUTION
        if isinstance(index, slice):
            return Sequential(self.layers[index])
        return self.layers[index]
        ### END SOLUTION

    def __len__(self) -> int:
        ### BEGIN SOLUTION
        return len(self.layers)
        ### END SOLUTION

    def __iter__(self) -> Iterator[Any]:
        ### BEGIN SOLUTION
        return iter(self.layers)
        ### END SOLUTION

    def _repr_children(self) -> list[tuple[str, Any]]:
        ### BEGIN SOLUTION
        return [(str(i), layer) for i, layer in enumerate(self.layers)]
        ### END SOLUTION


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...): all axes from `start_dim` on become one."""
    def __init__(self, start_dim: int = 1):
        super().__init__()
        ### BEGIN SOLUTION
        self.start_dim = start_dim
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        if not -x.ndim <= self.start_dim < x.ndim:
            raise ValueError(f"Flatten: start_dim={self.start_dim} is out of range for shape {x.shape}")
        ### BEGIN SOLUTION
        start = self.start_dim % x.ndim
        return x.reshape(*x.shape[:start], -1)
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"start_dim={self.start_dim}"
        ### END SOLUTION


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability `p` and scale the
    rest by 1/(1-p); identity in eval mode or when p == 0. Any shape; same shape out."""
    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        ### BEGIN SOLUTION
        self.p, self.rng = float(p), rng
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        if not self.training or self.p == 0:
            return x
        keep = (self.rng or get_rng()).random(x.shape) >= self.p
        mask = keep.astype(x.dtype) / np.asarray(1 - self.p, dtype=x.dtype)
        return x * Tensor(mask, dtype=x.dtype)
        ### END SOLUTION

    def extra_repr(self) -> str:
        ### BEGIN SOLUTION
        return f"p={self.p}"
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-containers", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.activations import ReLU

model = Sequential(Flatten(), Dense(12, 8), ReLU(), Dropout(0.25), Dense(8, 2))
assert model(Tensor(np.ones((5, 3, 4)))).shape == (5, 2)
assert [n for n, _ in model.named_parameters()] == [
    "layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.4.bias"]
assert len(model) == 5 and isinstance(model[1], Dense) and len(model[1:3]) == 2
assert Sequential([Dense(2, 2), ReLU()]).num_parameters() == 6, "a list works too"
model.eval()
assert not model[3].training and not model[2].training, "eval() reaches every layer"
model.train()
assert model[3].training

drop = Dropout(0.3, rng=np.random.default_rng(0))
ones_in = Tensor(np.ones((400, 500)))
out = drop(ones_in).data
assert np.allclose(np.unique(out), [0.0, 1 / 0.7]), "kept elements are scaled by 1/(1-p)"
assert abs(out.mean() - 1) < 0.01, "inverted dropout keeps the mean"
assert abs((out == 0).mean() - 0.3) < 0.01, "about p of the elements are dropped"
assert drop.eval()(ones_in) is ones_in, "identity in eval mode"
assert Dropout(0.0)(ones_in) is ones_in
for bad in (1.0, -0.1):
    try:
        Dropout(bad)
        raise AssertionError(f"p={bad} must be refused")
    except ValueError:
        pass
print(model)
print("containers: OK")

# %% [markdown]
# ## 3. A first network
#
# A two-layer MLP on a batch of random "images", and its size. Nothing is trained yet
# (that needs gradients, module 05, and an optimizer, module 06), but the forward pass
# already runs at full speed on whole batches.

# %%
from tinytorch.core.tensor import manual_seed, randn

manual_seed(0)
mlp = Sequential(Flatten(), Dense(28 * 28, 128), ReLU(), Dense(128, 10))
images = randn(64, 1, 28, 28)
logits = mlp(images)
print(mlp)
print("logits", logits.shape, "parameters", mlp.num_parameters())
h = mlp[:3](images).data
print(f"input second moment {np.mean(images.data ** 2):.3f}, after Dense+ReLU {np.mean(h ** 2):.3f} (He init keeps it near 1)")

# %% [markdown]
# ## Systems thinking
#
# 1. **Where the parameters are.** The MLP above has about 100 000 parameters. What
#    fraction sits in the first layer? Generalise: for a Dense layer, parameters grow as
#    in × out, but compute per example also grows as in × out. What changes when the same
#    weights are applied to every position of a sequence (B, T, in)?
# 2. **Memory of training.** Count, for the MLP above, the bytes of parameters, of
#    gradients (same size) and of the activations kept for backward for a batch of 64.
#    Which term grows with the batch size? Which one would an Adam optimizer (module 06)
#    double?
# 3. **Initialisation.** Stack 20 `Dense(256, 256)` + `ReLU` layers and print the second
#    moment of the activations after each layer, first with He init, then with weights
#    scaled by 0.5. How fast does the signal vanish?
# 4. **Dropout's cost.** Dropout draws one random number per element at every step. For
#    activations of shape (64, 256, 768), how many random numbers is that, and how does
#    drawing them compare with the matmul that produced the activations?
