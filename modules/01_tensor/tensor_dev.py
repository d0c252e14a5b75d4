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
# # Module 01: Tensor
#
# **Where you are.** This is the first module of TinyTorch. By module 16 you will have
# trained a GPT on Shakespeare with a framework you wrote yourself, and every single
# number in that model will live inside the class you build here.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `Tensor` | an n-dimensional array of numbers (a numpy `ndarray` inside) that remembers how it was made |
# | `Function` | one operation (`Add`, `MatMul`, `Sum`, ...): a `forward` on numpy arrays; its `backward` arrives in module 05 |
# | `zeros`, `ones`, `full`, `arange`, `randn`, `rand`, `manual_seed` | constructors, with one seedable random generator |
#
# **Where it goes.** The `#| export` cells are compiled by `tito export` into
# `tinytorch/core/tensor.py`, which every later module imports.
#
# **The one design idea of this module.** Every operation is a small `Function` object.
# `Mul.apply(a, b)` runs `Mul.forward` on the two numpy arrays and, when gradients are
# tracked, records on the output *which* function made it *from which* inputs: an edge of
# a computation graph. Module 05 gives each `Function` a `backward` and walks the graph in
# reverse (automatic differentiation); everything else only composes `Tensor` operations.
#
# **Points: 21** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules (none) from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.tensor

# %%
#| export
"""Tensor: an n-dimensional array that records the operations that produced it.

Module 01 of TinyTorch (generated from modules/01_tensor/tensor_dev.py; do not edit).
Every operation is a `Function`; `Function.apply` records it on its output (`out._ctx`),
building the graph that module 05 (autograd) walks backwards with the rules it registers.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

# %% [markdown]
# ## 1. Storage and dtypes
#
# A tensor is a numpy array plus a little bookkeeping. Deep learning works in **float32**:
# half the memory of float64, about twice the throughput, and SGD needs no more precision:
#
# * Python numbers and nested lists become **float32** (booleans stay `bool`).
# * numpy arrays keep **integer and boolean** dtypes (class labels, token ids, masks), and
#   floating arrays become float32.
# * An explicit `dtype=` always wins: gradient checks use `dtype=np.float64`.
#
# A ragged list such as `[[1, 2], [3]]` is refused with a message that says so.

# %%
#| export
DEFAULT_FLOAT = np.float32


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Convert `data` (number, nested list, ndarray or Tensor) to an ndarray under the dtype policy."""
    if isinstance(data, Tensor):
        data = data.data
    try:
        arr = np.asarray(data, dtype=dtype)
    except ValueError as err:
        if "inhomogeneous" in str(err) or "sequence" in str(err):
            raise ValueError(
                f"Tensor: ragged nested list: every row must have the same length "
                f"(numpy says: {err})") from None
        raise
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Tensor: data must be numeric or boolean, got dtype {arr.dtype} "
                        f"from {type(data).__name__}")
    if dtype is None and arr.dtype.kind == "f" and arr.dtype != DEFAULT_FLOAT:
        arr = arr.astype(DEFAULT_FLOAT)
    elif dtype is None and arr.dtype.kind in "iu" and not isinstance(data, np.ndarray | np.generic):
        arr = arr.astype(DEFAULT_FLOAT)  # Python ints and int lists are numbers, not labels
    return arr

# %% [markdown]
# ## 2. Functions: the unit of computation
#
# A `Function` subclass implements `forward(self, *arrays, **params) -> ndarray` and
# keeps on `self` whatever its backward will need (an input, the output, a mask).
# `Function.apply(*tensors, **params)` (yours to write) runs `forward` on the inputs'
# arrays (a failure is reported with the op's name and shapes, provided), wraps the
# result in a new `Tensor` with `Tensor._wrap`, and, if `Autograd.grad_enabled`, the
# function is `differentiable` and some input `requires_grad`, records the function on
# the output: `fn.inputs = tensors`, `out._ctx = fn`, `out.requires_grad = True`.
#
# `Autograd` holds the three hooks that module 05 fills in: `grad_enabled` (switched off
# by `no_grad()`), the backward rule of each function (`rules`, filled by the decorator
# `register_backward`), and the `engine` that `Tensor.backward()` calls.

# %% nbgrader={"grade": false, "grade_id": "function", "locked": false, "schema_version": 3, "solution": true}
#| export
class AutogradError(RuntimeError):
    """Raised when a gradient is asked for that cannot be computed."""


class Autograd:
    """Hooks filled in by module 05 (autograd). Module 01 only records the graph."""
    grad_enabled: bool = True                      # False inside `no_grad()`
    rules: dict[type, Callable] = {}               # Function subclass -> backward(fn, grad)
    engine: Callable | None = None                 # backward(tensor, gradient) -> None


class Function:
    """One operation on tensors: `forward` on ndarrays here, `backward` from module 05
    (a rule: (this object, d loss/d output) -> one gradient or None per input).
    Subclasses set `differentiable = False` when no gradient flows through them."""
    differentiable: bool = True
    inputs: tuple[Tensor, ...] = ()

    def forward(self, *arrays: np.ndarray, **params: Any) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} does not define forward()")

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        """Gradients for each input. Looks up the rule that module 05 registered."""
        rule = Autograd.rules.get(type(self))
        if rule is None:
            raise AutogradError(
                f"{type(self).__name__} has no backward rule: module 05 (autograd) registers "
                f"them. Import tinytorch.core.autograd (or finish and export module 05).")
        ### BEGIN SOLUTION
        return rule(self, grad)
        ### END SOLUTION

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run the op on tensors and record it in the graph when gradients are tracked."""
        fn = cls()
        try:
            data = fn.forward(*[t.data for t in inputs], **params)
        except (ValueError, IndexError) as err:
            raise _op_error(cls, inputs, err) from None
        ### BEGIN SOLUTION
        if type(data) is not np.ndarray:     # numpy returns scalars for 0-d results
            data = np.asarray(data)
        out = Tensor._wrap(data)
        if Autograd.grad_enabled and cls.differentiable:
            for t in inputs:
                if t.requires_grad:
                    fn.inputs = inputs
                    out.requires_grad = True
                    out._ctx = fn
                    break
        return out
        ### END SOLUTION


def _op_error(op: type, inputs: Sequence[Tensor], err: Exception) -> Exception:
    """The error for a failed forward: `err` itself when it names every input shape, else
    one of the same kind (ValueError or IndexError) that names the op and the shapes."""
    if all(str(t.shape) in str(err) for t in inputs):
        return err
    shapes = " and ".join(str(t.shape) for t in inputs)
    kind = ValueError if isinstance(err, ValueError) else IndexError
    return kind(f"{op.__name__.lower()}: cannot apply to shapes {shapes}: {err}")


def register_backward(function: type[Function]) -> Callable[[Callable], Callable]:
    """Decorator used by module 05: `@register_backward(Add)` attaches a backward rule."""
    def decorate(rule: Callable) -> Callable:
        Autograd.rules[function] = rule
        return rule
    return decorate

# %% [markdown]
# ## 3. The Tensor class
#
# A tensor owns `data` (the numpy array; shared, not copied, when its dtype is right, like
# `torch.from_numpy`), `requires_grad` (floating tensors only), `grad` (after `backward()`,
# a `Tensor` of the same shape) and `_ctx` (the `Function` that made it; `None` for a leaf).
#
# Operators are one-liners that hand the work to a `Function` of sections 5-8
# (`x + y` is `Add.apply(*_pair(x, y))`, `2 - x` is `Sub.apply(*_pair(2, x))`, `x @ y` is
# `matmul(x, y)`, `x.sum(axis)` is `Sum.apply(x, axis=axis, keepdims=keepdims)`). `_pair`
# makes both operands tensors, so `2 * x` and `x + [1, 2]` work: a number adopts the
# tensor's dtype (`x * 0.5` stays float32, `labels + 1` int64) unless it is a float meeting
# integers; an integer tensor meeting a float one is converted (numpy would give float64).

# %% nbgrader={"grade": false, "grade_id": "tensor-class", "locked": false, "schema_version": 3, "solution": true}
#| export
Axis = int | tuple[int, ...] | None


class Tensor:
    """An n-dimensional array (numpy inside) that records how it was computed.

    Args:
        data: a number, a nested list, a numpy array or another Tensor.
        dtype: numpy dtype; default float32 for numbers and floating data, integer and
            boolean arrays keep theirs.
        requires_grad: track gradients with respect to this tensor (floating dtypes only).
    """
    __slots__ = ("data", "requires_grad", "grad", "_ctx", "__weakref__")
    __array_ufunc__ = None          # `ndarray + Tensor` defers to Tensor.__radd__
    __hash__ = object.__hash__      # hash by identity although `==` is elementwise

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        ### BEGIN SOLUTION
        self.data = _as_array(data, dtype)
        self.grad: Tensor | None = None
        self._ctx: Function | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)
        ### END SOLUTION

    @classmethod
    def _wrap(cls, data: np.ndarray) -> Tensor:
        """Fast internal constructor: adopt an ndarray as is (no dtype policy, no copy)."""
        ### BEGIN SOLUTION
        t = cls.__new__(cls)
        t.data, t.requires_grad, t.grad, t._ctx = data, False, None, None
        return t
        ### END SOLUTION

    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Set `requires_grad` in place (floating dtypes only) and return self."""
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating tensors can require gradients, this one is {self.dtype}")
        ### BEGIN SOLUTION
        self.requires_grad = bool(flag)
        return self
        ### END SOLUTION

    @property
    def shape(self) -> tuple[int, ...]:
        ### BEGIN SOLUTION
        return self.data.shape
        ### END SOLUTION

    @property
    def ndim(self) -> int:
        ### BEGIN SOLUTION
        return self.data.ndim
        ### END SOLUTION

    @property
    def size(self) -> int:
        ### BEGIN SOLUTION
        return self.data.size
        ### END SOLUTION

    @property
    def dtype(self) -> np.dtype:
        ### BEGIN SOLUTION
        return self.data.dtype
        ### END SOLUTION

    @property
    def is_leaf(self) -> bool:
        """True for tensors you created, False for results of operations that track gradients."""
        ### BEGIN SOLUTION
        return self._ctx is None
        ### END SOLUTION

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared memory, not a copy)."""
        ### BEGIN SOLUTION
        return self.data
        ### END SOLUTION

    def item(self) -> float | int | bool:
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors convert to a number, this one has shape {self.shape}")
        ### BEGIN SOLUTION
        return self.data.item()
        ### END SOLUTION

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (`backward()` adds to `.grad`, it never resets it)."""
        ### BEGIN SOLUTION
        self.grad = None
        ### END SOLUTION

    def detach(self) -> Tensor:
        """A tensor with the same data and no history: gradients stop here."""
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data)
        ### END SOLUTION

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        ### BEGIN SOLUTION
        return self.data.shape[0]
        ### END SOLUTION

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with shape {self.shape} is ambiguous; reduce it first (e.g. `.sum()`, or `.data.any()`)")
        ### BEGIN SOLUTION
        return bool(self.data)
        ### END SOLUTION

    def __repr__(self) -> str:
        body = np.array2string(self.data, precision=4, separator=", ", threshold=64, prefix="Tensor(")
        extras = ([f"shape={self.shape}"] if self.data.size > 64 else []) + [f"dtype={self.dtype}"]
        if self._ctx is not None or self.requires_grad:
            extras.append(f"grad_fn={type(self._ctx).__name__}" if self._ctx else "requires_grad=True")
        return f"Tensor({body}, {', '.join(extras)})"

    def backward(self, gradient: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad.

        `gradient` is the upstream gradient, required unless self has one element.
        """
        if Autograd.engine is None:
            raise AutogradError("backward() needs module 05 (autograd): import "
                                "tinytorch.core.autograd, or finish and export module 05.")
        ### BEGIN SOLUTION
        Autograd.engine(self, gradient)
        ### END SOLUTION

    def __add__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Add.apply(*_pair(self, other))
        ### END SOLUTION

    def __radd__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Add.apply(*_pair(other, self))
        ### END SOLUTION

    def __sub__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Sub.apply(*_pair(self, other))
        ### END SOLUTION

    def __rsub__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Sub.apply(*_pair(other, self))
        ### END SOLUTION

    def __mul__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Mul.apply(*_pair(self, other))
        ### END SOLUTION

    def __rmul__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Mul.apply(*_pair(other, self))
        ### END SOLUTION

    def __truediv__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Div.apply(*_pair(self, other))
        ### END SOLUTION

    def __rtruediv__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Div.apply(*_pair(other, self))
        ### END SOLUTION

    def __pow__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Pow.apply(*_pair(self, other))
        ### END SOLUTION

    def __rpow__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Pow.apply(*_pair(other, self))
        ### END SOLUTION

    def __neg__(self) -> Tensor:
        ### BEGIN SOLUTION
        return Neg.apply(self)
        ### END SOLUTION

    def __matmul__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return matmul(self, other)
        ### END SOLUTION

    def __rmatmul__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return matmul(other, self)
        ### END SOLUTION

    def sum(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        ### BEGIN SOLUTION
        return Sum.apply(self, axis=axis, keepdims=keepdims)
        ### END SOLUTION

    def mean(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        ### BEGIN SOLUTION
        return Mean.apply(self, axis=axis, keepdims=keepdims)
        ### END SOLUTION

    def max(self, axis: Axis = None, keepdims: bool = False) -> Tensor:
        ### BEGIN SOLUTION
        return Max.apply(self, axis=axis, keepdims=keepdims)
        ### END SOLUTION

    def exp(self) -> Tensor:
        ### BEGIN SOLUTION
        return Exp.apply(self)
        ### END SOLUTION

    def log(self) -> Tensor:
        ### BEGIN SOLUTION
        return Log.apply(self)
        ### END SOLUTION

    def sqrt(self) -> Tensor:
        ### BEGIN SOLUTION
        return Sqrt.apply(self)
        ### END SOLUTION

    def astype(self, dtype: Any) -> Tensor:
        """Convert to another floating or integer dtype (gradients flow between float dtypes)."""
        ### BEGIN SOLUTION
        return Cast.apply(self, dtype=np.dtype(dtype))
        ### END SOLUTION

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """Same data, new shape; one dimension may be -1. `x.reshape(2, 3)` or `x.reshape((2, 3))`."""
        ### BEGIN SOLUTION
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)
        ### END SOLUTION

    def permute(self, *axes: int | Sequence[int]) -> Tensor:
        """Reorder all axes: `x.permute(0, 2, 1)` turns (B, T, C) into (B, C, T)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if sorted(a % self.ndim for a in axes) != list(range(self.ndim)):
            raise ValueError(f"permute: {axes} is not a permutation of the {self.ndim} axes of shape {self.shape}")
        ### BEGIN SOLUTION
        return Permute.apply(self, axes=tuple(a % self.ndim for a in axes))
        ### END SOLUTION

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        """Swap two axes (by default the last two, as matrix transposition does)."""
        if self.ndim < 2:
            raise ValueError(f"transpose: needs at least 2 dimensions, got shape {self.shape}")
        if not (-self.ndim <= dim0 < self.ndim and -self.ndim <= dim1 < self.ndim):
            raise ValueError(f"transpose: axes ({dim0}, {dim1}) out of range for shape {self.shape}")
        ### BEGIN SOLUTION
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return Permute.apply(self, axes=tuple(axes))
        ### END SOLUTION

    @property
    def T(self) -> Tensor:
        """All axes reversed (numpy's convention); for a matrix, its transpose."""
        ### BEGIN SOLUTION
        return Permute.apply(self, axes=tuple(reversed(range(self.ndim))))
        ### END SOLUTION

    def __getitem__(self, index: Any) -> Tensor:
        ### BEGIN SOLUTION
        return GetItem.apply(self, index=_index_arrays(index))
        ### END SOLUTION

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data == _data(other))
        ### END SOLUTION

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data != _data(other))
        ### END SOLUTION

    def __lt__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data < _data(other))
        ### END SOLUTION

    def __le__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data <= _data(other))
        ### END SOLUTION

    def __gt__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data > _data(other))
        ### END SOLUTION

    def __ge__(self, other: Any) -> Tensor:
        ### BEGIN SOLUTION
        return Tensor._wrap(self.data >= _data(other))
        ### END SOLUTION


def _data(x: Any) -> Any:
    """The ndarray inside a Tensor, or x itself."""
    ### BEGIN SOLUTION
    return x.data if isinstance(x, Tensor) else x
    ### END SOLUTION


def _lift(x: Any, like: Tensor) -> Tensor:
    """`x` as a Tensor. A plain number adopts the dtype of the tensor it meets (so `x * 0.5`
    stays float32 and `labels + 1` stays int64), unless it is a float meeting integers."""
    ### BEGIN SOLUTION
    if isinstance(x, Tensor):
        return x
    if np.ndim(x) == 0 and (like.dtype.kind == "f" or np.asarray(x).dtype.kind in "biu"):
        return Tensor._wrap(np.asarray(x, dtype=like.dtype))
    return Tensor(x)
    ### END SOLUTION


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Two operands as tensors of a common kind: numbers are lifted with `_lift`, and an
    integer tensor meeting a floating one is converted to the floating dtype (numpy would
    promote int64 * float32 to float64)."""
    ### BEGIN SOLUTION
    if not isinstance(a, Tensor):
        a = _lift(a, b)
    elif not isinstance(b, Tensor):
        b = _lift(b, a)
    ka, kb = a.dtype.kind, b.dtype.kind
    if ka == "f" and kb != "f":
        b = Tensor._wrap(b.data.astype(a.dtype))
    elif kb == "f" and ka != "f":
        a = Tensor._wrap(a.data.astype(b.dtype))
    return a, b
    ### END SOLUTION


def _index_arrays(index: Any) -> Any:
    """Replace Tensors inside an index by their arrays (x[idx_tensor], x[mask])."""
    ### BEGIN SOLUTION
    if isinstance(index, tuple):
        return tuple(_data(i) for i in index)
    return _data(index)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-tensor-storage", "locked": true, "points": 3, "schema_version": 3, "solution": false}
t = Tensor([[1, 2, 3], [4, 5, 6]])
assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6
assert t.dtype == np.float32, "Python numbers become float32"
labels = Tensor(np.array([3, 1, 4]))
assert labels.dtype == np.int64, "integer arrays keep their dtype"
assert Tensor(np.ones(3)).dtype == np.float32, "float64 arrays become float32"
assert Tensor(np.ones(3), dtype=np.float64).dtype == np.float64, "explicit dtype wins"
assert Tensor(7.5).item() == 7.5
try:
    Tensor([[1, 2], [3]])
    raise AssertionError("a ragged list must be refused")
except ValueError:
    pass
print(t)
print("storage: OK")

# %% [markdown]
# ## 4. Constructors and the random generator
#
# Two runs with the same seed must give the same model: all randomness (initial weights,
# dropout masks, shuffling) draws from one `numpy.random.Generator` that `manual_seed(s)`
# resets, unless you pass your own `rng`.

# %% nbgrader={"grade": false, "grade_id": "constructors", "locked": false, "schema_version": 3, "solution": true}
#| export
_RNG: list[np.random.Generator] = [np.random.default_rng(0)]


def manual_seed(seed: int) -> np.random.Generator:
    """Reset TinyTorch's global random generator; returns it."""
    ### BEGIN SOLUTION
    _RNG[0] = np.random.default_rng(seed)
    return _RNG[0]
    ### END SOLUTION


def get_rng() -> np.random.Generator:
    """The global generator that initialisers, dropout and shuffling draw from."""
    ### BEGIN SOLUTION
    return _RNG[0]
    ### END SOLUTION


def _shape(shape: tuple) -> tuple[int, ...]:
    """Accept `f(2, 3)` as well as `f((2, 3))`."""
    ### BEGIN SOLUTION
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)
    ### END SOLUTION


def zeros(*shape: int, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    return Tensor(np.zeros(_shape(shape)), dtype=dtype, requires_grad=requires_grad)
    ### END SOLUTION


def ones(*shape: int, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    return Tensor(np.ones(_shape(shape)), dtype=dtype, requires_grad=requires_grad)
    ### END SOLUTION


def full(shape: Sequence[int], value: float, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    return Tensor(np.full(tuple(shape), value), dtype=dtype, requires_grad=requires_grad)
    ### END SOLUTION


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    return Tensor(np.zeros_like(t.data), dtype=t.dtype, requires_grad=requires_grad)
    ### END SOLUTION


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    ### BEGIN SOLUTION
    return Tensor(np.ones_like(t.data), dtype=t.dtype, requires_grad=requires_grad)
    ### END SOLUTION


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Like numpy.arange; integer arguments give an int64 tensor unless dtype says otherwise."""
    ### BEGIN SOLUTION
    return Tensor(np.arange(start, stop, step, dtype=dtype))
    ### END SOLUTION


def randn(*shape: int, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False,
          rng: np.random.Generator | None = None) -> Tensor:
    """Standard normal samples from `rng` (default: the global generator)."""
    ### BEGIN SOLUTION
    data = (rng or get_rng()).standard_normal(_shape(shape))
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)
    ### END SOLUTION


def rand(*shape: int, dtype: Any = DEFAULT_FLOAT, requires_grad: bool = False,
         rng: np.random.Generator | None = None) -> Tensor:
    """Uniform samples in [0, 1) from `rng` (default: the global generator)."""
    ### BEGIN SOLUTION
    data = (rng or get_rng()).random(_shape(shape))
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-constructors", "locked": true, "points": 2, "schema_version": 3, "solution": false}
assert zeros(2, 3).shape == (2, 3) and ones((4,)).data.sum() == 4
assert arange(5).dtype == np.int64 and arange(0.0, 1.0, 0.25).shape == (4,)
manual_seed(42); a = randn(3, 3)
manual_seed(42); b = randn(3, 3)
assert np.array_equal(a.data, b.data), "same seed, same numbers"
assert a.dtype == np.float32
print("constructors: OK")

# %% [markdown]
# ## 5. Elementwise arithmetic with broadcasting
#
# Each `forward` computes the result with numpy and keeps what the derivative will need:
# nothing for `a + b`, `a - b`, `-a`; both inputs for `a * b` and `a / b`; inputs and
# output for `a ** b`. Broadcasting comes for free from numpy: a `(3, 1)` tensor plus a
# `(4,)` tensor gives `(3, 4)`. (In module 05 you will see the price: the gradient of a
# broadcast input must be *summed back* to its own shape.)

# %% nbgrader={"grade": false, "grade_id": "elementwise-ops", "locked": false, "schema_version": 3, "solution": true}
#| export
class Add(Function):
    """a + b, broadcasting."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        return a + b
        ### END SOLUTION


class Sub(Function):
    """a - b, broadcasting."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        return a - b
        ### END SOLUTION


class Neg(Function):
    """-a."""
    def forward(self, a: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        return -a
        ### END SOLUTION


class Mul(Function):
    """a * b, broadcasting. Keeps a and b: d(ab)/da = b, d(ab)/db = a."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.a, self.b = a, b
        return a * b
        ### END SOLUTION


class Div(Function):
    """a / b, broadcasting. Integer inputs give float32 (true division)."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        if a.dtype.kind != "f" and b.dtype.kind != "f":
            a, b = a.astype(DEFAULT_FLOAT), b.astype(DEFAULT_FLOAT)
        self.a, self.b = a, b
        return a / b
        ### END SOLUTION


class Pow(Function):
    """a ** b, broadcasting. Keeps inputs and output: d/da = b a^(b-1), d/db = a^b ln a."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.a, self.b = a, b
        self.out = a ** b
        return self.out
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-elementwise", "locked": true, "points": 4, "schema_version": 3, "solution": false}
x = Tensor([[1.0, 2.0, 3.0]])
y = Tensor([[10.0], [20.0]])
assert (x + y).shape == (2, 3), "broadcasting (1, 3) with (2, 1)"
assert np.allclose((x + y).data, [[11, 12, 13], [21, 22, 23]])
assert np.allclose((x - 1).data, [[0, 1, 2]]) and np.allclose((1 - x).data, [[0, -1, -2]])
assert np.allclose((x * 2).data, [[2, 4, 6]]) and np.allclose((2 * x).data, [[2, 4, 6]])
assert np.allclose((x / 2).data, [[0.5, 1, 1.5]]) and np.allclose((6 / x).data, [[6, 3, 2]])
assert np.allclose((x ** 2).data, [[1, 4, 9]]) and np.allclose((2 ** x).data, [[2, 4, 8]])
assert np.allclose((-x).data, [[-1, -2, -3]])
assert (x * 2).dtype == np.float32, "a Python number must not turn float32 into float64"
try:
    Tensor([1.0, 2.0, 3.0]) + Tensor([1.0, 2.0])
    raise AssertionError("shapes (3,) and (2,) cannot broadcast")
except ValueError:
    pass
print("elementwise: OK")

# %% [markdown]
# ## 6. Matrix multiplication
#
# `a @ b` multiplies the last two axes and broadcasts the rest: `(B, T, C) @ (C, D)` gives
# `(B, T, D)`, and `(B, h, T, d) @ (B, h, d, T)` the attention scores of module 11. numpy
# hands this to BLAS, like PyTorch's CPU build; that is why a numpy framework can be fast.
#
# A 1-D operand is a row (left) or column (right) vector whose axis is dropped from the
# result, as in numpy: `matmul` reshapes it around `MatMul`, which only sees matrices.

# %% nbgrader={"grade": false, "grade_id": "matmul", "locked": false, "schema_version": 3, "solution": true}
#| export
class MatMul(Function):
    """(..., n, k) @ (..., k, m) -> (..., n, m), batch axes broadcast. Keeps both inputs."""
    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: inner dimensions differ: {a.shape[-1]} (last of {a.shape}) "
                             f"vs {b.shape[-2]} (second to last of {b.shape})")
        ### BEGIN SOLUTION
        self.a, self.b = a, b
        if a.ndim > 2 and b.ndim == 2:   # (B, T, k) @ (k, m): one big GEMM beats B small ones
            return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
        return a @ b
        ### END SOLUTION


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with numpy's rules for 1-D operands."""
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    ### BEGIN SOLUTION
    if a.ndim == 1 and b.ndim == 1:                  # (k,) @ (k,) -> ()
        return (a.reshape(1, -1) @ b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:                                  # (k,) @ (..., k, m) -> (..., m)
        return MatMul.apply(a.reshape(1, -1), b).reshape(*b.shape[:-2], b.shape[-1])
    if b.ndim == 1:                                  # (..., n, k) @ (k,) -> (..., n)
        return MatMul.apply(a, b.reshape(-1, 1)).reshape(*a.shape[:-1])
    return MatMul.apply(a, b)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-matmul", "locked": true, "points": 3, "schema_version": 3, "solution": false}
A = Tensor([[1.0, 2.0], [3.0, 4.0]])
B = Tensor([[5.0, 6.0], [7.0, 8.0]])
assert np.allclose((A @ B).data, [[19, 22], [43, 50]])
batch = Tensor(np.ones((4, 3, 2)))
assert (batch @ A).shape == (4, 3, 2), "a batch of matrices times one matrix"
try:
    Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    raise AssertionError("(2, 3) @ (4, 5) must fail")
except ValueError:
    pass
print("matmul: OK")

# %% [markdown]
# ## 7. Reductions
#
# `sum`, `mean` and `max` take `axis` (an int, a tuple, or `None` for all; negative axes
# count from the end) and `keepdims`. `max` keeps input and output: its backward routes
# the gradient to the position(s) of the maximum.

# %% nbgrader={"grade": false, "grade_id": "reductions", "locked": false, "schema_version": 3, "solution": true}
#| export
def _normalize_axis(axis: Axis, ndim: int) -> tuple[int, ...] | None:
    """Axis as a sorted tuple of non-negative ints (None stays None); checks the range."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    bad = [a for a in axes if not -ndim <= a < ndim]
    if bad:
        raise ValueError(f"axis {bad[0]} is out of range for a tensor with {ndim} dimensions")
    ### BEGIN SOLUTION
    return tuple(sorted(a % ndim for a in axes))
    ### END SOLUTION


class Sum(Function):
    """Sum over `axis` (None: all). Keeps the input shape for backward."""
    def forward(self, a: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
        ### BEGIN SOLUTION
        self.shape, self.axis, self.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        return np.sum(a, axis=self.axis, keepdims=keepdims)
        ### END SOLUTION


class Mean(Function):
    """Mean over `axis` (None: all); integer inputs give float32."""
    def forward(self, a: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
        ### BEGIN SOLUTION
        self.shape, self.axis, self.keepdims = a.shape, _normalize_axis(axis, a.ndim), keepdims
        self.count = a.size if self.axis is None else int(np.prod([a.shape[i] for i in self.axis]))
        out = np.mean(a, axis=self.axis, keepdims=keepdims)
        return out.astype(DEFAULT_FLOAT) if a.dtype.kind != "f" else out
        ### END SOLUTION


class Max(Function):
    """Maximum over `axis` (None: all). Keeps input and output to find the argmax."""
    def forward(self, a: np.ndarray, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
        ### BEGIN SOLUTION
        self.a, self.axis, self.keepdims = a, _normalize_axis(axis, a.ndim), keepdims
        self.out = np.max(a, axis=self.axis, keepdims=keepdims)
        return self.out
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-reductions", "locked": true, "points": 3, "schema_version": 3, "solution": false}
m = Tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
assert m.sum().item() == 21 and m.sum(axis=0).shape == (3,)
assert m.sum(axis=1, keepdims=True).shape == (2, 1)
assert np.allclose(m.mean(axis=-1).data, [3, 4])
assert np.allclose(m.max(axis=1).data, [5, 6]) and m.max().item() == 6
assert m.sum(axis=(0, 1)).item() == 21
try:
    m.sum(axis=2)
    raise AssertionError("axis 2 does not exist for a 2-D tensor")
except ValueError:
    pass
print("reductions: OK")

# %% [markdown]
# ## 8. Elementwise math, casting and shape operations
#
# `exp`, `log` and `sqrt` keep their output or input for backward. `reshape` and
# `permute` move no numbers: numpy returns a *view* with new strides (module 13 looks at
# memory layout). `astype` converts dtypes; between float dtypes the gradient flows.

# %% nbgrader={"grade": false, "grade_id": "math-shape-ops", "locked": false, "schema_version": 3, "solution": true}
#| export
class Exp(Function):
    """e ** a. Keeps the output: d/da e^a = e^a."""
    def forward(self, a: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.out = np.exp(a)
        return self.out
        ### END SOLUTION


class Log(Function):
    """Natural logarithm. Keeps the input: d/da ln a = 1/a."""
    def forward(self, a: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.a = a
        return np.log(a)
        ### END SOLUTION


class Sqrt(Function):
    """Square root. Keeps the output: d/da sqrt(a) = 1 / (2 sqrt(a))."""
    def forward(self, a: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.out = np.sqrt(a)
        return self.out
        ### END SOLUTION


class Cast(Function):
    """Convert to `dtype`; gradients flow back converted to the input's dtype."""
    def forward(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        ### BEGIN SOLUTION
        self.dtype = a.dtype
        return a.astype(dtype)
        ### END SOLUTION


class Reshape(Function):
    """Same elements, new shape. Keeps the input shape."""
    def forward(self, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ### BEGIN SOLUTION
        self.shape = a.shape
        return a.reshape(shape)
        ### END SOLUTION


class Permute(Function):
    """Reorder axes: output axis i is input axis axes[i]."""
    def forward(self, a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        ### BEGIN SOLUTION
        self.axes = axes
        return a.transpose(axes)
        ### END SOLUTION


class GetItem(Function):
    """a[index] for slices, integers, integer arrays and boolean masks."""
    def forward(self, a: np.ndarray, index: Any) -> np.ndarray:
        ### BEGIN SOLUTION
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-math-shape", "locked": true, "points": 4, "schema_version": 3, "solution": false}
v = Tensor([1.0, 4.0, 9.0])
assert np.allclose(v.sqrt().data, [1, 2, 3]) and np.allclose(v.log().exp().data, v.data, rtol=1e-5)
r = arange(6).astype(np.float32).reshape(2, 3)
assert r.shape == (2, 3) and r.T.shape == (3, 2) and r.reshape(-1).shape == (6,)
cube = Tensor(np.zeros((2, 3, 4)))
assert cube.permute(2, 0, 1).shape == (4, 2, 3) and cube.transpose().shape == (2, 4, 3)
assert np.allclose(r[1].data, [3, 4, 5]) and r[:, 1:].shape == (2, 2)
assert np.allclose(r[Tensor(np.array([1, 0]))].data, [[3, 4, 5], [0, 1, 2]])
assert np.allclose(r[r > 2].data, [3, 4, 5])
assert (r > 2).dtype == np.bool_ and (r == r).data.all()
assert (Tensor([1.0, 1.0]) @ A).shape == (2,) and (A @ Tensor([1.0, 1.0])).shape == (2,), "1-D matmul uses reshape"
print(r)
print("math and shape: OK")

# %% [markdown]
# ## 9. What `apply` recorded
#
# No derivative is written yet, but every result already knows where it came from:

# %%
w = Tensor([[0.5, -1.0]], requires_grad=True)
x_in = Tensor([[2.0], [3.0]])
loss = (w @ x_in).sum()
print(loss)                                          # grad_fn=Sum
print(type(loss._ctx).__name__, "<-", [type(t._ctx).__name__ if t._ctx else "leaf" for t in loss._ctx.inputs])

# %% nbgrader={"grade": true, "grade_id": "test-graph-recording", "locked": true, "points": 2, "schema_version": 3, "solution": false}
assert isinstance(loss._ctx, Sum) and isinstance(loss._ctx.inputs[0]._ctx, MatMul)
assert loss._ctx.inputs[0]._ctx.inputs[0] is w, "the graph reaches back to the leaf w"
assert (x_in * 2)._ctx is None, "no input requires grad: nothing is recorded"
assert w.is_leaf and not loss.is_leaf
print("graph recording: OK")

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory of a recorded graph.** `Mul.forward` keeps both inputs. If a forward pass
#    creates 1 GB of intermediates, how much does the graph hold until `backward()`
#    finishes? Why does `no_grad()` (module 05) make inference cheaper than training?
# 2. **float32 vs float64.** A 4096 x 4096 float32 matrix takes 64 MiB. Time `a @ a` in
#    both dtypes on your machine: is the ratio 2x?
# 3. **Views.** What happens to `y = x.T` if you later modify `x.data` in place? When is
#    a copy unavoidable (hint: `reshape` after `permute`)?
# 4. **Python overhead.** `Function.apply` costs microseconds of Python per call. At what
#    matrix size does that stop mattering, and what does it say about batching work?
