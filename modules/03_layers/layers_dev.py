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
# **Where you are.** You have tensors (module 01) and nonlinearities (module 02). A
# neural network is these pieces arranged into *layers* that own learnable numbers. This
# module builds the container machinery every later model uses, from the MLP of module 06
# to the transformer of module 16.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `Parameter` | a `Tensor` that is learnable (`requires_grad=True` by default) |
# | `Module` | base class: `forward` via `__call__`, finds its parameters recursively, `train()`/`eval()`, `zero_grad()`, `state_dict()`/`load_state_dict()` |
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
# **Points: 13** (the total of this module's graded test cells)

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
"""Layers: Parameter, Module, Dense, Sequential, Flatten, Dropout.

Module 03 of TinyTorch (generated from modules/03_layers/layers_dev.py; do not edit).

Layers only compose Tensor operations; gradients reach their parameters through the
graph that those operations record (module 05).
"""
from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Tensor, get_rng
from tinytorch.core.activations import Activation

# %% [markdown]
# ## 1. Parameter: a tensor that learns
#
# An optimizer (module 06) must find every number it is allowed to change. We mark those
# tensors with a subclass: a `Parameter` *is* a `Tensor` (all operations work on it), it
# requires gradients unless told otherwise, and `Module` finds it by its type. Tensors a
# layer keeps that are *not* Parameters (a constant mask, a cached value) are invisible to
# the optimizer.
#
# `Tensor` declares `__slots__`, so the subclass declares an empty `__slots__` too: it adds
# no attributes, only a type.

# %% nbgrader={"grade": false, "grade_id": "parameter", "locked": false, "schema_version": 3, "solution": true}
#| export
class Parameter(Tensor):
    """A learnable Tensor: `requires_grad=True` by default, found by `Module.parameters()`."""
    __slots__ = ()

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = True):
        ### BEGIN SOLUTION
        super().__init__(data, dtype=dtype, requires_grad=requires_grad)
        ### END SOLUTION

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]

# %% nbgrader={"grade": true, "grade_id": "test-parameter", "locked": true, "points": 1, "schema_version": 3, "solution": false}
p = Parameter(np.zeros((2, 3)))
assert isinstance(p, Tensor) and p.requires_grad and p.dtype == np.float32 and p.shape == (2, 3)
assert type(p * 2) is Tensor, "results of operations are plain tensors, not parameters"
assert repr(p).startswith("Parameter(")
print("parameter: OK")

# %% [markdown]
# ## 2. Module: the base of every layer and model
#
# A model is a tree: a `Sequential` holds `Dense` layers, each `Dense` holds two
# `Parameter`s. `Module` walks this tree by looking at an object's attributes
# (`vars(self)`, a dict that remembers the order in which attributes were assigned):
#
# * a `Parameter` attribute is a parameter, named after the attribute (`weight`);
# * a `Module` attribute (or a parameter-free `Activation` from module 02) is a child,
#   and its parameters get its name as a prefix (`encoder.weight`);
# * a list or tuple of modules or parameters gives children named by position
#   (`layers.0.weight`).
#
# The order is deterministic (definition order), and a parameter shared by two layers
# (tied weights) is listed once, under its first name.
#
# What the tree gives us for free:
#
# | method | what it does |
# |---|---|
# | `parameters()`, `named_parameters()` | what the optimizer updates |
# | `train()`, `eval()` | set `training` on every module (Dropout and BatchNorm behave differently) |
# | `zero_grad()` | forget the gradients of the previous step |
# | `state_dict()`, `load_state_dict()` | save and restore the numbers (checkpoints), parameters and buffers |
# | `register_buffer()`, `named_buffers()` | state that is saved but not learnt (BatchNorm's running statistics, module 10) |
# | `num_parameters()` | the model's size |
#
# `load_state_dict` checks everything *before* copying anything, and names each problem:
# a missing key, an unexpected key, a shape that differs. Silently loading a checkpoint into
# the wrong architecture is one of the most expensive bugs in practice.

# %% nbgrader={"grade": false, "grade_id": "module", "locked": false, "schema_version": 3, "solution": true}
#| export
def _is_module(obj: Any) -> bool:
    return isinstance(obj, (Module, Activation))


class StateDictError(KeyError):
    """A state dict that does not fit the module (missing or unexpected keys, wrong shapes)."""
    def __str__(self) -> str:          # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


class LoadResult(NamedTuple):
    """What `load_state_dict(strict=False)` skipped."""
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models. Subclasses define `forward` and assign their
    `Parameter`s and sub-`Module`s as attributes; `module(x)` calls `forward(x)`."""
    training: bool = True

    def __init__(self) -> None:
        self.training = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- walking the tree -----------------------------------------------------------
    def named_children(self) -> list[tuple[str, Any]]:
        """Direct sub-modules (and activations) as (name, module), in definition order."""
        ### BEGIN SOLUTION
        out = []
        for name, value in vars(self).items():
            if _is_module(value):
                out.append((name, value))
            elif isinstance(value, (list, tuple)):
                out.extend((f"{name}.{i}", v) for i, v in enumerate(value) if _is_module(v))
        return out
        ### END SOLUTION

    def children(self) -> list[Any]:
        return [m for _, m in self.named_children()]

    def modules(self) -> list[Any]:
        """This module and all modules below it, depth first."""
        out = [self]
        for child in self.children():
            out.extend(child.modules() if isinstance(child, Module) else [child])
        return out

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """All parameters of this module and its children as (dotted name, parameter),
        in definition order, each parameter once."""
        ### BEGIN SOLUTION
        out: list[tuple[str, Parameter]] = []
        seen: set[int] = set()

        def visit(name: str, value: Any) -> None:
            if isinstance(value, Parameter):
                if id(value) not in seen:
                    seen.add(id(value))
                    out.append((name, value))
            elif _is_module(value):
                for sub, p in value.named_parameters():
                    visit(f"{name}.{sub}", p)

        for name, value in vars(self).items():
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    visit(f"{name}.{i}", item)
            else:
                visit(name, value)
        return [(prefix + n, p) for n, p in out]
        ### END SOLUTION

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        """Total number of learnable numbers."""
        return sum(p.size for p in self.parameters())

    # ---- modes and gradients -------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode on this module and every module below it; returns self."""
        ### BEGIN SOLUTION
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self
        ### END SOLUTION

    def eval(self) -> Module:
        """Evaluation mode (Dropout off); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Forget accumulated gradients: every parameter's `.grad` becomes None."""
        for p in self.parameters():
            p.grad = None

    # ---- buffers: state that is saved but not learnt --------------------------------
    def register_buffer(self, name: str, value: Any) -> np.ndarray:
        """Keep `value` (an array) as the attribute `name`: saved by `state_dict()` but not
        returned by `parameters()` (e.g. BatchNorm's running statistics). Returns the array."""
        array = np.asarray(value)
        setattr(self, name, array)
        names = self.__dict__.setdefault("_buffer_names", [])
        if name not in names:
            names.append(name)
        return array

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """All buffers of this module and its children as (dotted name, array)."""
        out = [(prefix + n, getattr(self, n)) for n in self.__dict__.get("_buffer_names", [])]
        for child_name, child in self.named_children():
            if isinstance(child, Module):
                out.extend(child.named_buffers(prefix=f"{prefix}{child_name}."))
        return out

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Name -> a copy of each parameter's array (in `named_parameters()` order), then of
        each buffer."""
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, np.array(b, copy=True)) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> LoadResult:
        """Copy arrays (or Tensors) from `state` into the parameters and buffers, in place,
        keeping each one's dtype. Raises StateDictError (a KeyError) listing missing and unexpected keys (when
        `strict`) and every shape mismatch; nothing is modified if anything is wrong."""
        ### BEGIN SOLUTION
        own = OrderedDict((n, p.data) for n, p in self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        for name, p in own.items():
            if name in state:
                shape = np.shape(state[name].data if isinstance(state[name], Tensor) else state[name])
                if shape != p.shape:
                    problems.append(f"{name}: expected shape {p.shape}, got {shape}")
        if problems:
            raise StateDictError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for name, p in own.items():
            if name in state:
                value = state[name].data if isinstance(state[name], Tensor) else state[name]
                np.copyto(p, np.asarray(value), casting="same_kind")
        return LoadResult(missing, unexpected)
        ### END SOLUTION

    # ---- printing -------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown between the parentheses of this module's repr."""
        return ""

    def _repr_children(self) -> list[tuple[str, Any]]:
        return self.named_children()

    def __repr__(self) -> str:
        children = self._repr_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in children:
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"

# %% [markdown]
# A small hand-written module shows the discovery rules at work:

# %% nbgrader={"grade": true, "grade_id": "test-module", "locked": true, "points": 4, "schema_version": 3, "solution": false}
class Affine(Module):
    def __init__(self, n):
        super().__init__()
        self.scale = Parameter(np.ones(n))
        self.shift = Parameter(np.zeros(n))
        self.note = Tensor(np.ones(n))              # a plain tensor: not a parameter

    def forward(self, x):
        return x * self.scale + self.shift


class Net(Module):
    def __init__(self):
        super().__init__()
        self.first = Affine(3)
        self.blocks = [Affine(3), Affine(3)]
        self.tied = self.first.scale                 # shared: listed once, as first.scale

    def forward(self, x):
        x = self.first(x)
        for b in self.blocks:
            x = b(x)
        return x


net = Net()
names = [n for n, _ in net.named_parameters()]
assert names == ["first.scale", "first.shift", "blocks.0.scale", "blocks.0.shift",
                 "blocks.1.scale", "blocks.1.shift"], names
assert len(net.parameters()) == 6 and net.num_parameters() == 18
assert len(net.modules()) == 4 and net(Tensor([1.0, 2.0, 3.0])).shape == (3,)
assert net.eval() is net and not net.blocks[1].training
assert net.train().blocks[1].training
sd = net.state_dict()
assert list(sd) == names and sd["first.scale"] is not net.first.scale.data, "copies"
net.first.shift.data[:] = 5
net.load_state_dict(sd)
assert (net.first.shift.data == 0).all(), "loading restores the saved values"
try:
    net.load_state_dict({k: v for k, v in sd.items() if k != "blocks.1.shift"})
    raise AssertionError("a missing key must be refused")
except KeyError:
    pass
print(net)
print("module: OK")

# %% [markdown]
# ## 3. Dense: the fully connected layer
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
        self.in_features, self.out_features = int(in_features), int(out_features)
        ### BEGIN SOLUTION
        bound = math.sqrt(6.0 / in_features)
        w = (rng or get_rng()).uniform(-bound, bound, size=(in_features, out_features))
        self.weight = Parameter(w.astype(dtype), dtype=dtype)
        self.bias = Parameter(np.zeros(out_features, dtype=dtype), dtype=dtype) if bias else None
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Dense: input of shape {x.shape} does not fit: its last dimension "
                             f"must be in_features={self.in_features} (weight shape {self.weight.shape})")
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

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
# ## 4. Sequential, Flatten and Dropout
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
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: element {i} is a {type(layer).__name__}, not a layer")
        self.layers = list(layers)

    def forward(self, x: Any) -> Any:
        ### BEGIN SOLUTION
        for layer in self.layers:
            x = layer(x)
        return x
        ### END SOLUTION

    def append(self, layer: Callable) -> Sequential:
        if not callable(layer):
            raise TypeError(f"Sequential.append: a {type(layer).__name__} is not a layer")
        self.layers.append(layer)
        return self

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Sequential(self.layers[index])
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def _repr_children(self) -> list[tuple[str, Any]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...): all axes from `start_dim` on become one."""
    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        if not -x.ndim <= self.start_dim < x.ndim:
            raise ValueError(f"Flatten: start_dim={self.start_dim} is out of range for shape {x.shape}")
        start = self.start_dim % x.ndim
        return x.reshape(*x.shape[:start], -1)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}"


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability `p` and scale the
    rest by 1/(1-p); identity in eval mode or when p == 0. Any shape; same shape out."""
    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        if not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p, self.rng = float(p), rng

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        if not self.training or self.p == 0:
            return x
        keep = (self.rng or get_rng()).random(x.shape) >= self.p
        mask = keep.astype(x.dtype) / np.asarray(1 - self.p, dtype=x.dtype)
        return x * Tensor(mask, dtype=x.dtype)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"p={self.p}"

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
# ## 5. A first network
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
