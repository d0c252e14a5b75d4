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
# # Module 02: Activations
#
# **Where you are.** Module 01 gave you `Tensor` and the `Function` mechanism. A network
# built only from matrix products and additions is still a *linear* function of its
# input, however many layers you stack: `(x @ W1) @ W2 = x @ (W1 @ W2)`. The small
# nonlinear functions of this module, applied elementwise between layers, are what let a
# network bend its decision boundary.
#
# **What you build.**
#
# | function (forward on ndarrays) | functional form | layer class | used in |
# |---|---|---|---|
# | `ReLUFunction` | `relu(x)` | `ReLU()` | hidden layers of MLPs and CNNs |
# | `SigmoidFunction` | `sigmoid(x)` | `Sigmoid()` | probabilities of yes/no outputs, gates |
# | `TanhFunction` | `tanh(x)` | `Tanh()` | bounded hidden units, RNNs |
# | `GELUFunction` | `gelu(x)` | `GELU()` | the MLP inside every transformer block (module 16) |
# | `SoftmaxFunction` | `softmax(x, axis)` | `Softmax(axis)` | turning scores into probabilities (attention) |
# | `LogSoftmaxFunction` | `log_softmax(x, axis)` | `LogSoftmax(axis)` | the stable half of cross-entropy (module 04) |
#
# The layer classes are the first *layers* of the course, so this module also builds what
# every layer shares: `Parameter` (a `Tensor` that learns) and `Module`, the base class of
# every layer and model (it finds parameters, switches `train()`/`eval()`, saves and loads
# `state_dict()`s). Module 03 builds `Dense` and `Sequential` on it.
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/activations.py`.
#
# **Gradients.** As in module 01, every `forward` keeps on `self` what its derivative will
# need; module 05 registers the backward rules. The table below each section says what is
# kept and why.
#
# **Points: 18** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.activations

# %%
#| export
"""Activation functions and the layer base: Parameter, Module, and the activation layers.

Module 02 of TinyTorch (generated from modules/02_activations/activations_dev.py; do not edit).

Each activation is a `Function` (forward on ndarrays; backward registered by module 05),
a functional form (`relu(x)`) and a parameter-free layer (`ReLU()`), a `Module`: the base
class of every layer and model, whose parameters it finds (module 03 builds `Dense` on it).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Function, Tensor

# %% [markdown]
# ## 1. Two small helpers
#
# Activations only make sense on floating numbers: `exp` of an int64 array would silently
# give float64. So integer inputs are converted to float32 first, and floating inputs keep
# their dtype (float64 gradient checks stay float64).
#
# Softmax and log-softmax normalise along one `axis`; we check it once, with a message
# that names the shape.

# %%
#| export
def _floating(x: np.ndarray) -> np.ndarray:
    """x itself if it is floating, otherwise x converted to float32."""
    return x if x.dtype.kind == "f" else x.astype(DEFAULT_FLOAT)


def _check_axis(axis: Any, shape: tuple[int, ...], name: str) -> int:
    """`axis` as a non-negative int, or a ValueError that names the shape."""
    ndim = len(shape)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{name}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for shape {shape} ({ndim} dimensions)")
    return int(axis) % ndim


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)

# %% [markdown]
# ## 2. ReLU
#
# $$\mathrm{ReLU}(x) = \max(x, 0)$$
#
# The rectified linear unit is the default hidden activation since AlexNet (2012). Its
# derivative is 1 for positive inputs and 0 for negative ones, so the gradient passes
# through active units *unchanged*: no shrinking factor per layer, which is why deep ReLU
# networks train where deep sigmoid networks stall. The price: a unit whose input is
# negative for every example gets no gradient at all ("dead ReLU").
#
# Backward needs only *where* the input was positive, so we keep a boolean mask
# (1 byte per element instead of 4).

# %% nbgrader={"grade": false, "grade_id": "relu", "locked": false, "schema_version": 3, "solution": true}
#| export
class ReLUFunction(Function):
    """max(x, 0) elementwise; any shape. Keeps `self.mask = x > 0` (bool, same shape as x)."""
    def forward(self, x: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        x = _floating(x)
        self.mask = x > 0
        return np.maximum(x, 0)                    # NaN stays NaN (easier to debug)
        ### END SOLUTION


def relu(x: Tensor) -> Tensor:
    """ReLU of a tensor of any shape; same shape out."""
    ### BEGIN SOLUTION
    return ReLUFunction.apply(_as_tensor(x))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-relu", "locked": true, "points": 2, "schema_version": 3, "solution": false}
r = relu(Tensor([[-2.0, 0.0, 3.0], [1.5, -0.5, 0.0]]))
assert np.array_equal(r.data, [[0, 0, 3], [1.5, 0, 0]]) and r.dtype == np.float32
assert relu(Tensor(np.array([-1.0, 2.0]), dtype=np.float64)).dtype == np.float64, "float64 stays float64"
assert relu(Tensor(np.array([-3, 4]))).dtype == np.float32, "integers become float32"
print("relu: OK")

# %% [markdown]
# ## 3. Sigmoid and tanh
#
# $$\sigma(x) = \frac{1}{1 + e^{-x}} \in (0, 1), \qquad \tanh(x) = 2\sigma(2x) - 1 \in (-1, 1)$$
#
# Both squash any real number into a bounded interval, which makes them natural for
# probabilities (sigmoid) and for bounded hidden states (tanh). Both **saturate**: for
# large $|x|$ the curve is flat, the derivative $\sigma(1-\sigma)$ or $1 - \tanh^2$ is
# almost 0, and the gradient vanishes. That is why they are no longer used between the
# hidden layers of deep networks.
#
# **Stability.** The textbook formula computes $e^{-x}$, which overflows float32 for
# $x < -88$ (`RuntimeWarning: overflow`). The fix is to only ever exponentiate a
# *non-positive* number: with $e = e^{-|x|} \in (0, 1]$,
#
# $$\sigma(x) = \begin{cases} 1/(1+e) & x \ge 0 \\ e/(1+e) & x < 0 \end{cases}$$
#
# Both derivatives are functions of the *output* ($\sigma' = \sigma(1-\sigma)$,
# $\tanh' = 1 - \tanh^2$), so backward keeps the output, not the input.

# %% nbgrader={"grade": false, "grade_id": "sigmoid-tanh", "locked": false, "schema_version": 3, "solution": true}
#| export
class SigmoidFunction(Function):
    """1 / (1 + exp(-x)) elementwise, without overflow; any shape. Keeps `self.out`."""
    def forward(self, x: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        x = _floating(x)
        e = np.exp(-np.abs(x))                     # in (0, 1]: never overflows
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self.out
        ### END SOLUTION


class TanhFunction(Function):
    """tanh(x) elementwise; any shape. Keeps `self.out`."""
    def forward(self, x: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.out = np.tanh(_floating(x))
        return self.out
        ### END SOLUTION


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid of a tensor of any shape; values in [0, 1], same shape out."""
    ### BEGIN SOLUTION
    return SigmoidFunction.apply(_as_tensor(x))
    ### END SOLUTION


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent of a tensor of any shape; values in [-1, 1], same shape out."""
    ### BEGIN SOLUTION
    return TanhFunction.apply(_as_tensor(x))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-sigmoid-tanh", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import warnings

z = np.linspace(-6, 6, 25).astype(np.float32)
assert np.allclose(sigmoid(Tensor(z)).data, 1 / (1 + np.exp(-z)), atol=1e-6)
assert np.allclose(tanh(Tensor(z)).data, np.tanh(z), atol=1e-6)
assert sigmoid(Tensor(0.0)).item() == 0.5
with warnings.catch_warnings():
    warnings.simplefilter("error")              # an overflow warning would fail here
    s = sigmoid(Tensor([-1000.0, 1000.0]))
    t = tanh(Tensor([-1000.0, 1000.0]))
assert np.array_equal(s.data, [0.0, 1.0]) and np.array_equal(t.data, [-1.0, 1.0])
assert sigmoid(Tensor(z)).dtype == np.float32
print("sigmoid and tanh: OK")

# %% [markdown]
# ## 4. GELU
#
# $$\mathrm{GELU}(x) = x\,\Phi(x) \approx \tfrac12 x\left(1 + \tanh\!\left(\sqrt{2/\pi}\,(x + 0.044715\,x^3)\right)\right)$$
#
# where $\Phi$ is the standard normal CDF. GELU weights its input by how likely it is to
# be "on": like ReLU for large $|x|$, but smooth around 0 and slightly negative for small
# negative inputs. GPT-2 and BERT use exactly this tanh approximation, and so will our
# TinyGPT.
#
# Backward needs the input and the tanh value; we keep both (`self.x`, `self.t`).
# For huge $|x|$ the cube overflows float32 to $\pm\infty$; `tanh(±inf) = ±1` is the
# right limit, so we silence that one overflow rather than let it warn.

# %% nbgrader={"grade": false, "grade_id": "gelu", "locked": false, "schema_version": 3, "solution": true}
#| export
_GELU_C = math.sqrt(2.0 / math.pi)   # a Python float: multiplying keeps float32 float32


class GELUFunction(Function):
    """Tanh-approximated GELU elementwise; any shape. Keeps `self.x` (input) and
    `self.t = tanh(sqrt(2/pi) (x + 0.044715 x^3))`."""
    def forward(self, x: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        x = _floating(x)
        with np.errstate(over="ignore"):
            self.t = np.tanh(_GELU_C * (x + 0.044715 * x * x * x))
        self.x = x
        return 0.5 * x * (1 + self.t)
        ### END SOLUTION


def gelu(x: Tensor) -> Tensor:
    """GELU (tanh approximation) of a tensor of any shape; same shape out."""
    ### BEGIN SOLUTION
    return GELUFunction.apply(_as_tensor(x))
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-gelu", "locked": true, "points": 2, "schema_version": 3, "solution": false}
zz = np.linspace(-5, 5, 21)
ref = 0.5 * zz * (1 + np.tanh(np.sqrt(2 / np.pi) * (zz + 0.044715 * zz ** 3)))
assert np.allclose(gelu(Tensor(zz, dtype=np.float64)).data, ref, atol=1e-12)
assert gelu(Tensor(zz)).dtype == np.float32, "a float32 input must stay float32"
with warnings.catch_warnings():
    warnings.simplefilter("error")
    g = gelu(Tensor([-1000.0, 0.0, 1000.0, 1e30]))
assert np.allclose(g.data, [0.0, 0.0, 1000.0, 1e30]) and np.isfinite(g.data).all()
print("gelu: OK")

# %% [markdown]
# ## 5. Softmax and log-softmax
#
# $$\mathrm{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}}, \qquad
#   \log\mathrm{softmax}(x)_i = x_i - \log\sum_j e^{x_j}$$
#
# along one axis (the class axis, usually the last). Softmax turns arbitrary scores into
# a probability distribution: positive, summing to 1, order preserved.
#
# **Stability: the max trick.** $e^{1000}$ is `inf` in any float format, and
# `inf / inf` is `nan`. But softmax does not change when the same constant is subtracted
# from every score (it cancels between numerator and denominator). Subtracting the row
# maximum $m$ makes the largest exponent $e^0 = 1$: no overflow, and the sum is at least
# 1, so no division by zero either:
#
# $$\log\mathrm{softmax}(x)_i = (x_i - m) - \log\sum_j e^{x_j - m}$$
#
# Never compute `log(softmax(x))`: a probability that underflows to 0 gives
# `log(0) = -inf`. The log-softmax formula above stays finite (about $-2000$ for
# scores $\pm 1000$). This is why cross-entropy (module 04) is built on log-softmax.
#
# | function | keeps | because its derivative is |
# |---|---|---|
# | softmax | output, axis | $s \odot (g - \sum g\,s)$ |
# | log-softmax | output, axis | $g - e^{\text{out}} \sum g$ |

# %% nbgrader={"grade": false, "grade_id": "softmax", "locked": false, "schema_version": 3, "solution": true}
#| export
class SoftmaxFunction(Function):
    """Softmax along `axis`; any shape, same shape out. Keeps `self.out` and `self.axis`
    (a non-negative int)."""
    def forward(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        ### BEGIN SOLUTION
        x = _floating(x)
        self.axis = _check_axis(axis, x.shape, "softmax")
        e = np.exp(x - x.max(axis=self.axis, keepdims=True))
        self.out = e / e.sum(axis=self.axis, keepdims=True)
        return self.out
        ### END SOLUTION


class LogSoftmaxFunction(Function):
    """log(softmax(x)) along `axis`, computed stably; any shape, same shape out. Keeps
    `self.out` and `self.axis` (a non-negative int)."""
    def forward(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        ### BEGIN SOLUTION
        x = _floating(x)
        self.axis = _check_axis(axis, x.shape, "log_softmax")
        shifted = x - x.max(axis=self.axis, keepdims=True)
        self.out = shifted - np.log(np.exp(shifted).sum(axis=self.axis, keepdims=True))
        return self.out
        ### END SOLUTION


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along `axis` (default: last); same shape out, slices along `axis` sum to 1."""
    ### BEGIN SOLUTION
    return SoftmaxFunction.apply(_as_tensor(x), axis=axis)
    ### END SOLUTION


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Log-softmax along `axis` (default: last); same shape out, values <= 0."""
    ### BEGIN SOLUTION
    return LogSoftmaxFunction.apply(_as_tensor(x), axis=axis)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-softmax", "locked": true, "points": 4, "schema_version": 3, "solution": false}
scores = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
for ax in (0, 1, 2, -1):
    p = softmax(Tensor(scores), axis=ax)
    assert p.shape == scores.shape and np.allclose(p.data.sum(axis=ax), 1, atol=1e-6), ax
    ref = np.exp(scores) / np.exp(scores).sum(axis=ax, keepdims=True)
    assert np.allclose(p.data, ref, atol=1e-6)
    assert np.allclose(log_softmax(Tensor(scores), axis=ax).data, np.log(ref), atol=1e-5)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    big = Tensor([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, 1000.0]])
    p, lp = softmax(big), log_softmax(big)
assert np.isfinite(p.data).all() and np.isfinite(lp.data).all()
assert np.allclose(p.data[1], 1 / 3) and np.allclose(lp.data[0], [0, -2000, -1000])
try:
    softmax(Tensor(scores), axis=3)
    raise AssertionError("axis 3 does not exist for shape (2, 3, 4)")
except ValueError:
    pass
print("softmax and log_softmax: OK")

# %% [markdown]
# ## 6. Parameter: a tensor that learns
#
# Networks are built by stacking layers: `Sequential(Dense(784, 128), ReLU(), Dense(128, 10))`
# (module 03). So each activation also comes as a small layer class, and every layer, from
# `ReLU()` here to the transformer of module 16, shares one base class, `Module`. It is
# built here, where the first layers appear; module 03 builds `Dense` and `Sequential` on it.
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
# ## 7. Module: the base of every layer and model
#
# A model is a tree: a `Sequential` holds `Dense` layers, each `Dense` holds two
# `Parameter`s. `Module` walks this tree by looking at an object's attributes
# (`vars(self)`, a dict that remembers the order in which attributes were assigned):
#
# * a `Parameter` attribute is a parameter, named after the attribute (`weight`);
# * a `Module` attribute is a child, and its parameters get its name as a prefix
#   (`encoder.weight`);
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
        """Direct sub-modules as (name, module), in definition order."""
        ### BEGIN SOLUTION
        out = []
        for name, value in vars(self).items():
            if isinstance(value, Module):
                out.append((name, value))
            elif isinstance(value, (list, tuple)):
                out.extend((f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, Module))
        return out
        ### END SOLUTION

    def children(self) -> list[Any]:
        ### BEGIN SOLUTION
        return [m for _, m in self.named_children()]
        ### END SOLUTION

    def modules(self) -> list[Any]:
        """This module and all modules below it, depth first."""
        ### BEGIN SOLUTION
        out = [self]
        for child in self.children():
            out.extend(child.modules())
        return out
        ### END SOLUTION

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
            elif isinstance(value, Module):
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
        ### BEGIN SOLUTION
        return [p for _, p in self.named_parameters()]
        ### END SOLUTION

    def num_parameters(self) -> int:
        """Total number of learnable numbers."""
        ### BEGIN SOLUTION
        return sum(p.size for p in self.parameters())
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        for p in self.parameters():
            p.grad = None
        ### END SOLUTION

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
        ### BEGIN SOLUTION
        out = [(prefix + n, getattr(self, n)) for n in self.__dict__.get("_buffer_names", [])]
        for child_name, child in self.named_children():
            out.extend(child.named_buffers(prefix=f"{prefix}{child_name}."))
        return out
        ### END SOLUTION

    # ---- checkpoints ----------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Name -> a copy of each parameter's array (in `named_parameters()` order), then of
        each buffer."""
        ### BEGIN SOLUTION
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, np.array(b, copy=True)) for name, b in self.named_buffers())
        return state
        ### END SOLUTION

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> LoadResult:
        """Copy arrays (or Tensors) from `state` into the parameters and buffers, in place,
        keeping each one's dtype. Raises StateDictError (a KeyError) listing missing and unexpected keys (when
        `strict`) and every shape mismatch; nothing is modified if anything is wrong."""
        own = OrderedDict((n, p.data) for n, p in self.named_parameters())
        own.update(self.named_buffers())
        missing, unexpected, problems = _state_problems(own, state, strict)
        if problems:
            raise StateDictError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        ### BEGIN SOLUTION
        for name, p in own.items():
            if name in state:
                value = state[name].data if isinstance(state[name], Tensor) else state[name]
                np.copyto(p, np.asarray(value), casting="same_kind")
        return LoadResult(missing, unexpected)
        ### END SOLUTION

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


def _state_problems(own: dict[str, np.ndarray], state: dict[str, Any],
                    strict: bool) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict with a module's own arrays (name -> array). Returns the missing
    keys, the unexpected keys, and the problems that refuse the load: the missing and the
    unexpected keys (only when `strict`) and every shape that differs, as readable strings."""
    ### BEGIN SOLUTION
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
    return missing, unexpected, problems
    ### END SOLUTION

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
# ## 8. Activation layers
#
# Each activation also comes as a layer: a `Module` without parameters whose `forward`
# calls the function. `Activation` is their common base (a plain `Module` subclass, so
# `Sequential`, `train()`/`eval()` and `parameters()` treat it like any other layer).

# %% nbgrader={"grade": false, "grade_id": "activation-layers", "locked": false, "schema_version": 3, "solution": true}
#| export
class Activation(Module):
    """Base of the parameter-free activation layers: `layer(x)` calls `layer.forward(x)`."""


class ReLU(Activation):
    """Layer form of `relu`: (...) -> (...)."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return relu(x)
        ### END SOLUTION


class Sigmoid(Activation):
    """Layer form of `sigmoid`: (...) -> (...)."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return sigmoid(x)
        ### END SOLUTION


class Tanh(Activation):
    """Layer form of `tanh`: (...) -> (...)."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return tanh(x)
        ### END SOLUTION


class GELU(Activation):
    """Layer form of `gelu` (tanh approximation): (...) -> (...)."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return gelu(x)
        ### END SOLUTION


class Softmax(Activation):
    """Layer form of `softmax` along `axis`: (...) -> (...)."""
    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return softmax(x, axis=self.axis)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Activation):
    """Layer form of `log_softmax` along `axis`: (...) -> (...)."""
    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        return log_softmax(x, axis=self.axis)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

# %% nbgrader={"grade": true, "grade_id": "test-activation-layers", "locked": true, "points": 2, "schema_version": 3, "solution": false}
x = Tensor([[-1.0, 0.5, 2.0]])
for layer, fn in [(ReLU(), relu), (Sigmoid(), sigmoid), (Tanh(), tanh), (GELU(), gelu),
                  (Softmax(), softmax), (LogSoftmax(), log_softmax)]:
    assert np.array_equal(layer(x).data, fn(x).data), layer
    assert layer.parameters() == []
assert repr(ReLU()) == "ReLU()" and repr(Softmax(axis=0)) == "Softmax(axis=0)"
assert Softmax(axis=0)(x).data.sum() == 3.0, "axis=0 of a (1, 3) tensor: each column sums to 1"
assert ReLU().eval().training is False
print("activation layers: OK")

# %% [markdown]
# ### Look at them
# A table of values makes the shapes of the curves concrete: ReLU is 0 then linear,
# GELU dips slightly below 0 near $x = -0.75$, sigmoid and tanh flatten out.

# %%
grid = Tensor(np.array([-3.0, -1.0, -0.75, 0.0, 0.75, 1.0, 3.0]))
print("x       ", np.round(grid.data, 3))
for name, fn in [("relu", relu), ("gelu", gelu), ("sigmoid", sigmoid), ("tanh", tanh)]:
    print(f"{name:8s}", np.round(fn(grid).data, 3))

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory per activation.** For a batch of activations of shape (64, 4096) in
#    float32, how many bytes does each `Function` above keep for backward? (ReLU keeps a
#    bool mask; GELU keeps two float arrays.) In a 48-layer transformer, which choice
#    costs more memory during training, and how could you recompute instead of storing?
# 2. **Saturation.** Compute the largest value of $\sigma'(x)$. If a signal passes through
#    20 sigmoid layers, by what factor at most can the gradient shrink? Why does ReLU not
#    have this problem, and what is its own failure mode?
# 3. **The max trick.** Why does subtracting the row maximum change neither the softmax
#    nor (mathematically) its gradient? Which smaller constant would also prevent overflow
#    but risk underflow of every term?
# 4. **Elementwise cost.** An activation does a handful of arithmetic operations per
#    element and reads and writes each element once; a matmul of (B, n) by (n, n) does
#    about $2n$ operations per output element. For n = 1024, which of the two is limited by
#    memory bandwidth and which by arithmetic? Time them with numpy to check.
