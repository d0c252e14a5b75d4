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
# # Module 05: Autograd
#
# **Where you are.** Modules 01–04 built tensors, activations, layers and losses, and every
# result they compute already *remembers how it was made*: `Function.apply` (module 01)
# stores the function and its inputs on each output that needs a gradient. What is
# missing is the way back. This module adds it, and with it the whole framework learns.
#
# ## The mechanism, in one paragraph
#
# Every operation is a `Function` subclass. Its `forward` (written in the module that
# introduced the op) computes on numpy arrays and keeps on `self` what the derivative will
# need. Here, in module 05, each function gets a **backward rule**, registered with
# `@register_backward(Op)`: given the function object and the gradient of the loss with
# respect to its output, it returns the gradient with respect to each input. The
# **engine** (`backward`, below) orders the recorded graph topologically, without
# recursion, and walks it from the output to the leaves, calling each rule and *adding up*
# the gradients that reach a tensor along different paths. Functions defined in later
# modules (convolution, attention, ...) write their `backward` method right beside their
# `forward`; the engine treats both kinds the same way. Layers, losses and models never
# contain gradient code: they are compositions of functions.
#
# | you build | what it does |
# |---|---|
# | `unbroadcast` | sums a gradient back to the shape of an input that numpy broadcast |
# | one backward rule per op | `Add`, `Mul`, `MatMul`, `Sum`, `Max`, `GetItem`, `Softmax`, ... |
# | `topological_order`, `backward` | the engine behind `Tensor.backward()` |
# | `no_grad`, `enable_grad`, `is_grad_enabled` | switch recording off for inference |
# | `gradcheck` | compares every rule with central finite differences, in float64 |
#
# **Points: 14** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, install TinyTorch
# from the course repository; anywhere else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "tinytorch @ git+https://github.com/tinytorch/tinytorch@main"], check=True)

# %%
#| default_exp core.autograd

# %%
#| export
"""Autograd: backward rules for every op of modules 01-04, the engine, no_grad, gradcheck.

Module 05 of TinyTorch (generated from modules/05_autograd/autograd_dev.py; do not edit).

Importing this module registers a backward rule for each Function of modules 01-04 and
installs `backward` as the engine behind `Tensor.backward()`. `tinytorch/__init__.py`
imports it, so `import tinytorch` (or any tinytorch submodule) switches autograd on.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from tinytorch.core.tensor import (
    Add, Autograd, AutogradError, Cast, Div, Exp, Function, GetItem, Log, MatMul, Max, Mean,
    Mul, Neg, Permute, Pow, Reshape, Sqrt, Sub, Sum, Tensor, register_backward)
from tinytorch.core.activations import (
    GELUFunction, LogSoftmaxFunction, ReLUFunction, SigmoidFunction, SoftmaxFunction, TanhFunction)

# %% [markdown]
# ## 1. The chain rule on a graph
#
# Take `loss = sum((w * x + b) ** 2)`. Module 01 recorded:
#
# ```
# w ─┐
#    Mul ─┐
# x ─┘    Add ── Pow ── Sum ── loss
# b ──────┘
# ```
#
# Reverse mode starts from `d loss / d loss = 1` and moves right to left. At each node it
# knows `g = d loss / d out` and asks the node's rule for `d loss / d input = g * d out / d input`
# (a vector-Jacobian product: we never build the Jacobian). For `Mul`, the rule returns
# `g * b` for `a` and `g * a` for `b`. Each rule is **local**: it only needs what its
# forward kept. The engine supplies the order and the bookkeeping.
#
# ## 2. Broadcasting runs backwards as a sum
#
# If `b` has shape `(3,)` and `h = a + b` has shape `(4, 3)`, then `b` was *copied* to four
# rows. Each copy receives a gradient, and the gradient of `b` is their **sum** over the
# broadcast axis. In general: sum over the leading axes the input did not have, and over
# every axis where the input had size 1 (keeping that axis). The engine calls
# `unbroadcast` whenever a rule returns a gradient whose shape differs from its input's,
# so the rules below can ignore broadcasting entirely.

# %% nbgrader={"grade": false, "grade_id": "unbroadcast", "locked": false, "schema_version": 3, "solution": true}
#| export
def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, giving `shape`.

    (4, 3) -> (3,): sum axis 0.   (4, 3) -> (4, 1): sum axis 1, keep it.
    """
    ### BEGIN SOLUTION
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise AutogradError(f"a gradient of shape {grad.shape} cannot belong to an input of shape {shape}")
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    if extra:
        out = out.reshape(out.shape[extra:])
    if out.shape != shape:
        raise AutogradError(f"a gradient of shape {grad.shape} cannot be reduced to the input shape {shape}")
    return out
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-unbroadcast", "locked": true, "points": 2, "schema_version": 3, "solution": false}
g = np.ones((4, 3))
assert unbroadcast(g, (3,)).tolist() == [4, 4, 4]
assert unbroadcast(g, (4, 1)).shape == (4, 1) and unbroadcast(g, (4, 1))[0, 0] == 3
assert unbroadcast(g, ()).item() == 12
assert unbroadcast(np.ones((2, 4, 3)), (1, 3)).tolist() == [[8, 8, 8]]
print("unbroadcast: OK")
### BEGIN HIDDEN TESTS
# unbroadcast on shapes the visible part does not use (size-1 axes in the middle, several at once, float64 random values), and a shape that cannot be reached
hrng = np.random.default_rng(501)
g = hrng.standard_normal((2, 5, 4))
assert np.allclose(unbroadcast(g, (2, 1, 4)), g.sum(axis=1, keepdims=True))
assert np.allclose(unbroadcast(g, (5, 1)), g.sum(axis=(0, 2))[:, None])
assert np.allclose(unbroadcast(g, (1, 1, 1)), g.sum().reshape(1, 1, 1))
assert np.allclose(unbroadcast(g, (4,)), g.sum(axis=(0, 1)))
assert np.allclose(unbroadcast(g, (1, 4)), g.sum(axis=(0, 1))[None, :])
assert unbroadcast(g, (2, 5, 4)) is g or np.array_equal(unbroadcast(g, (2, 5, 4)), g)
g1 = hrng.standard_normal((3, 1, 4))
assert np.allclose(unbroadcast(g1, (1, 1, 4)), g1.sum(axis=0, keepdims=True))
assert unbroadcast(g1, (3, 1, 4)).shape == (3, 1, 4) and np.allclose(unbroadcast(g1, (3, 1, 4)), g1)
assert unbroadcast(np.ones((2, 3), dtype=np.float32), (3,)).dtype == np.float32
for bad_shape in [(3,), (2, 5, 4, 1), (2, 4)]:
    try:
        unbroadcast(g, bad_shape)
        raise AssertionError(f"(2, 5, 4) cannot be reduced to {bad_shape}")
    except AutogradError:
        pass
### END HIDDEN TESTS

# %% [markdown]
# ## 3. Backward rules for the arithmetic of module 01
#
# Each rule receives `fn` (the `Function` object, with what its forward stored) and `g`
# (the gradient with respect to its output, same shape as the output) and returns a tuple
# with one gradient per input. Two conventions keep the rules short and safe:
#
# * return gradients with the *output's* broadcast shape; the engine reduces them;
# * never modify `g` in place: the same array may be handed to several inputs;
# * return `None` for an input that does not need a gradient (`fn.inputs[i].requires_grad`
#   tells), which saves work when, say, only the weight of `x * w` is trainable.
#
# | op | d/da | d/db |
# |---|---|---|
# | a + b | g | g |
# | a - b | g | -g |
# | a * b | g b | g a |
# | a / b | g / b | -g a / b² |
# | a ** b | g b a^(b-1) | g a^b ln a (only computed when b needs it) |

# %% nbgrader={"grade": false, "grade_id": "arithmetic-rules", "locked": false, "schema_version": 3, "solution": true}
#| export
@register_backward(Add)
def add_backward(fn: Add, g: np.ndarray):
    ### BEGIN SOLUTION
    return g, g
    ### END SOLUTION


@register_backward(Sub)
def sub_backward(fn: Sub, g: np.ndarray):
    ### BEGIN SOLUTION
    return g, -g
    ### END SOLUTION


@register_backward(Neg)
def neg_backward(fn: Neg, g: np.ndarray):
    ### BEGIN SOLUTION
    return (-g,)
    ### END SOLUTION


@register_backward(Mul)
def mul_backward(fn: Mul, g: np.ndarray):
    ### BEGIN SOLUTION
    ga = g * fn.b if fn.inputs[0].requires_grad else None
    gb = g * fn.a if fn.inputs[1].requires_grad else None
    return ga, gb
    ### END SOLUTION


@register_backward(Div)
def div_backward(fn: Div, g: np.ndarray):
    ### BEGIN SOLUTION
    ga = g / fn.b
    gb = -ga * fn.a / fn.b if fn.inputs[1].requires_grad else None
    return ga, gb
    ### END SOLUTION


@register_backward(Pow)
def pow_backward(fn: Pow, g: np.ndarray):
    ### BEGIN SOLUTION
    a, b = fn.a, fn.b
    ga = g * b * a ** (b - 1) if fn.inputs[0].requires_grad else None
    gb = g * fn.out * np.log(a) if fn.inputs[1].requires_grad else None
    return ga, gb
    ### END SOLUTION

# %% [markdown]
# ## 4. Matrix multiplication
#
# For `C = A @ B` with `A: (n, k)`, `B: (k, m)` and upstream `G: (n, m)`:
#
# $$\frac{\partial L}{\partial A} = G B^\top \quad (n, m)(m, k) = (n, k), \qquad
#   \frac{\partial L}{\partial B} = A^\top G \quad (k, n)(n, m) = (k, m).$$
#
# Check the shapes: there is only one way to multiply `G` with `B` or `A` that gives the
# right shape, which is a handy way to remember the formulas. With batch axes the same
# formulas hold on the last two axes (`swapaxes(-1, -2)` is the batched transpose), and a
# weight matrix shared by the whole batch, `(B, T, k) @ (k, m)`, gets the sum over the
# batch, which we compute as one large product by folding `(B, T)` into rows.
# Transposes are free: numpy passes them to BLAS as a flag, no copy is made.

# %% nbgrader={"grade": false, "grade_id": "matmul-rule", "locked": false, "schema_version": 3, "solution": true}
#| export
@register_backward(MatMul)
def matmul_backward(fn: MatMul, g: np.ndarray):
    ### BEGIN SOLUTION
    a, b = fn.a, fn.b
    need_a, need_b = fn.inputs[0].requires_grad, fn.inputs[1].requires_grad
    if a.ndim > 2 and b.ndim == 2:               # shared weight: fold batch axes into rows
        g2 = g.reshape(-1, g.shape[-1])           # (B*T, m)
        ga = (g2 @ b.T).reshape(a.shape) if need_a else None
        gb = a.reshape(-1, a.shape[-1]).T @ g2 if need_b else None
        return ga, gb
    ga = g @ np.swapaxes(b, -1, -2) if need_a else None
    gb = np.swapaxes(a, -1, -2) @ g if need_b else None
    return ga, gb
    ### END SOLUTION

# %% [markdown]
# ## 5. Reductions, elementwise math and shapes
#
# * `sum` copies the gradient to every summed element: re-insert the reduced axes (unless
#   `keepdims`) and broadcast. `mean` does the same divided by the count.
# * `max` sends the gradient to the maximum. With ties (two equal maxima) we split it
#   equally, a deterministic choice that keeps the total right.
# * `exp`, `log`, `sqrt` use their stored input or output.
# * `reshape`, `permute` and `astype` undo themselves on the gradient.
# * `getitem` scatters the gradient into zeros of the input's shape. An integer index
#   array may pick the same element twice (`x[[0, 0]]`), so those gradients must be
#   *added*: `np.add.at` does that, plain assignment would keep only one.

# %% nbgrader={"grade": false, "grade_id": "reduction-shape-rules", "locked": false, "schema_version": 3, "solution": true}
#| export
def _expand(g: np.ndarray, axis: tuple[int, ...] | None, keepdims: bool) -> np.ndarray:
    """Re-insert the axes a reduction removed, so `g` broadcasts against the input."""
    if axis is None or keepdims:
        return g
    return np.expand_dims(g, axis)


@register_backward(Sum)
def sum_backward(fn: Sum, g: np.ndarray):
    ### BEGIN SOLUTION
    return (np.broadcast_to(_expand(g, fn.axis, fn.keepdims), fn.shape),)
    ### END SOLUTION


@register_backward(Mean)
def mean_backward(fn: Mean, g: np.ndarray):
    ### BEGIN SOLUTION
    return (np.broadcast_to(_expand(g, fn.axis, fn.keepdims) / fn.count, fn.shape),)
    ### END SOLUTION


@register_backward(Max)
def max_backward(fn: Max, g: np.ndarray):
    ### BEGIN SOLUTION
    out = _expand(fn.out, fn.axis, fn.keepdims)
    mask = (fn.a == out).astype(g.dtype)
    mask /= mask.sum(axis=fn.axis, keepdims=True)        # ties share the gradient equally
    return (mask * _expand(g, fn.axis, fn.keepdims),)
    ### END SOLUTION


@register_backward(Exp)
def exp_backward(fn: Exp, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g * fn.out,)
    ### END SOLUTION


@register_backward(Log)
def log_backward(fn: Log, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g / fn.a,)
    ### END SOLUTION


@register_backward(Sqrt)
def sqrt_backward(fn: Sqrt, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g / (2 * fn.out),)
    ### END SOLUTION


@register_backward(Cast)
def cast_backward(fn: Cast, g: np.ndarray):
    return (g.astype(fn.dtype),)


@register_backward(Reshape)
def reshape_backward(fn: Reshape, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g.reshape(fn.shape),)
    ### END SOLUTION


@register_backward(Permute)
def permute_backward(fn: Permute, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g.transpose(np.argsort(fn.axes)),)
    ### END SOLUTION


def _is_basic_index(index: Any) -> bool:
    """True when `index` only has ints, slices, None and Ellipsis: no element can repeat."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) or p is None or p is Ellipsis for p in parts)


@register_backward(GetItem)
def getitem_backward(fn: GetItem, g: np.ndarray):
    ### BEGIN SOLUTION
    full = np.zeros(fn.shape, dtype=g.dtype)
    if _is_basic_index(fn.index):
        full[fn.index] = g
    else:
        np.add.at(full, fn.index, g)                     # repeated indices accumulate
    return (full,)
    ### END SOLUTION

# %% [markdown]
# ## 6. Backward rules for the activations of module 02
#
# | activation | derivative, using what forward kept |
# |---|---|
# | relu | g where x > 0, else 0 |
# | sigmoid | g s (1 - s) with s the output |
# | tanh | g (1 - t²) with t the output |
# | gelu (tanh form) | g [½(1 + tanh u) + ½ x (1 - tanh² u) u'], u = √(2/π)(x + 0.044715 x³) |
# | softmax | s (g - Σ g s) along the axis |
# | log-softmax | g - softmax · Σ g along the axis |
#
# The softmax rule avoids the full Jacobian `diag(s) - s sᵀ`: multiplying it by `g` gives
# `s * (g - sum(g * s))`, computed in O(n) instead of O(n²).

# %% nbgrader={"grade": false, "grade_id": "activation-rules", "locked": false, "schema_version": 3, "solution": true}
#| export
_GELU_C = float(np.sqrt(2.0 / np.pi))   # a Python float keeps float32 float32


@register_backward(ReLUFunction)
def relu_backward(fn: ReLUFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g * fn.mask,)
    ### END SOLUTION


@register_backward(SigmoidFunction)
def sigmoid_backward(fn: SigmoidFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    s = fn.out
    return (g * s * (1 - s),)
    ### END SOLUTION


@register_backward(TanhFunction)
def tanh_backward(fn: TanhFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    t = fn.out
    return (g * (1 - t * t),)
    ### END SOLUTION


@register_backward(GELUFunction)
def gelu_backward(fn: GELUFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    x, t = fn.x, fn.t                                  # t = tanh(u), kept by forward
    du = _GELU_C * (1 + 3 * 0.044715 * x * x)
    return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)
    ### END SOLUTION


@register_backward(SoftmaxFunction)
def softmax_backward(fn: SoftmaxFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    s = fn.out
    return (s * (g - (g * s).sum(axis=fn.axis, keepdims=True)),)
    ### END SOLUTION


@register_backward(LogSoftmaxFunction)
def log_softmax_backward(fn: LogSoftmaxFunction, g: np.ndarray):
    ### BEGIN SOLUTION
    return (g - np.exp(fn.out) * g.sum(axis=fn.axis, keepdims=True),)
    ### END SOLUTION

# %% [markdown]
# ## 7. The engine
#
# **Order.** A node may only pass its gradient on once *all* contributions to it have
# arrived. Reverse topological order guarantees that: every node comes after everything
# that uses it. Careful with the iterative version: a node must be marked *visited* when
# it is expanded, not when it is pushed, or a node reached by two paths (`y = x + 0.1 * x`)
# can land in the order before one of its inputs, and a gradient goes missing. We compute a post-order with an explicit stack instead of recursion:
# a recursive depth-first search would crash with `RecursionError` on a chain of a few
# thousand ops (an RNN unrolled over a long sequence, say), while a list on the heap has
# no such limit.
#
# **Accumulation.** A tensor used twice (`y = x * x`, or a weight shared by two layers)
# receives two gradients, which are summed. The engine keeps a dictionary from tensor to
# its gradient-so-far; leaves add into `.grad`, which persists across `backward()` calls
# until `zero_grad()`: that is *gradient accumulation*, and it is why training loops
# zero the gradients every step.
#
# **Ownership.** A `.grad` must be a real, writable array that belongs to that tensor alone
# (later `backward()` calls add into it in place, and so may an optimizer). Rules may
# return read-only broadcast views, or the same array for two inputs (`Add` does), so when
# the engine stores a leaf's first gradient it copies the array if it is read-only or if
# its memory already went to another leaf in this pass. Copying always would be simpler
# and cost a full pass over every parameter's gradient per step.

# %% nbgrader={"grade": false, "grade_id": "engine", "locked": false, "schema_version": 3, "solution": true}
#| export
def topological_order(root: Tensor) -> list[Tensor]:
    """Tensors of the graph below `root` that require grad, each after all of its inputs.

    Iterative depth-first post-order: no recursion, so graphs of any depth work.
    """
    ### BEGIN SOLUTION
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:                    # everything below `node` is already in `order`
            order.append(node)
            continue
        if id(node) in visited:            # reached again through another path
            continue
        visited.add(id(node))
        stack.append((node, True))         # come back once its inputs are done
        if node._ctx is not None:
            for inp in node._ctx.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order
    ### END SOLUTION


def _memory_owner(a: np.ndarray) -> np.ndarray:
    """The array whose memory `a` uses (itself, or the base of a view of a view ...)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _store_leaf_grad(leaf: Tensor, g: np.ndarray, given: set[int]) -> None:
    """Add `g` into `leaf.grad`. A first gradient is copied when it is read-only or when its
    memory was already given to another leaf in this pass (`given` holds their ids)."""
    if type(g) is not np.ndarray:          # numpy gives scalars for 0-d results
        g = np.array(g, dtype=leaf.dtype)
    elif g.dtype != leaf.dtype:
        g = g.astype(leaf.dtype)
    if leaf.grad is not None:              # accumulate across backward() calls
        np.add(leaf.grad.data, g, out=leaf.grad.data)
        return
    if not g.flags.writeable or id(_memory_owner(g)) in given:
        g = g.copy()
    given.add(id(_memory_owner(g)))
    leaf.grad = Tensor._wrap(g)


def backward(root: Tensor, gradient: Any = None) -> None:
    """Backpropagate from `root`: add d(root)/d(leaf) into `.grad` of every leaf that requires grad.

    `gradient` (same shape as root) is the upstream gradient; it may be omitted only for a
    one-element root, where it is 1.
    """
    ### BEGIN SOLUTION
    if not root.requires_grad:
        raise AutogradError("backward(): this tensor does not require grad; no input of the computation "
                            "had requires_grad=True, or it was computed under no_grad()")
    if gradient is None:
        if root.size != 1:
            raise AutogradError(f"backward(): the output has shape {root.shape}, so pass the gradient "
                                f"of the loss with respect to it (same shape); only one-element outputs "
                                f"get the implicit gradient 1")
        seed = np.ones_like(root.data)
    else:
        seed = np.array(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=root.dtype)
        if seed.shape != root.shape:
            raise AutogradError(f"backward(): gradient has shape {seed.shape} but the output has shape {root.shape}")
    grads: dict[int, np.ndarray] = {id(root): seed}
    given: set[int] = set()                # memory already stored in a leaf's .grad
    for node in reversed(topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:                      # every path to this node returned None
            continue
        fn = node._ctx
        if fn is None:
            _store_leaf_grad(node, g, given)
            continue
        in_grads = fn.backward(g)
        if len(in_grads) != len(fn.inputs):
            raise AutogradError(f"{type(fn).__name__} backward returned {len(in_grads)} gradients "
                                f"for {len(fn.inputs)} inputs")
        for inp, ig in zip(fn.inputs, in_grads):
            if ig is None or not inp.requires_grad:
                continue
            if ig.shape != inp.shape:
                ig = unbroadcast(ig, inp.shape)
            key = id(inp)
            if key in grads:
                grads[key] = grads[key] + ig       # a new array: never modify in place
            else:
                grads[key] = ig
    ### END SOLUTION


Autograd.engine = backward

# %% [markdown]
# ## 8. Switching recording off, and cutting the graph
#
# During evaluation and sampling no gradient is needed, so recording the graph only costs
# memory (every intermediate stays alive) and time. `with no_grad():` turns recording
# off; it also works as a decorator. `x.detach()` (module 01) returns the same data
# without history: gradients stop there (used, for example, for a target that must be
# treated as a constant).

# %% nbgrader={"grade": false, "grade_id": "no-grad", "locked": false, "schema_version": 3, "solution": true}
#| export
class _GradMode:
    """Context manager and decorator that sets `Autograd.grad_enabled` and restores it."""
    enabled: bool

    def __enter__(self) -> None:
        ### BEGIN SOLUTION
        self._previous = Autograd.grad_enabled
        Autograd.grad_enabled = self.enabled
        ### END SOLUTION

    def __exit__(self, *exc: Any) -> None:
        ### BEGIN SOLUTION
        Autograd.grad_enabled = self._previous
        ### END SOLUTION

    def __call__(self, func: Callable) -> Callable:
        mode = type(self)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode():
                return func(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """`with no_grad():` (or `@no_grad()`) computes without recording the graph."""
    enabled = False


class enable_grad(_GradMode):
    """Turn recording back on inside a `no_grad()` block."""
    enabled = True


def is_grad_enabled() -> bool:
    return Autograd.grad_enabled

# %% [markdown]
# ## 9. Checking gradients numerically
#
# A backward rule can be wrong in ways no shape check catches (a missing transpose on a
# square matrix, a sign). The reliable test is arithmetic: nudge one input element by ±ε
# and watch the loss,
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + \varepsilon e_i) - L(x - \varepsilon e_i)}{2\varepsilon},$$
#
# with error O(ε²). In float32 the rounding error of L (about 1e-7 relative) divided by
# ε swamps that, so gradient checks run in **float64** with ε = 1e-6. A tensor-valued
# output is reduced to a scalar by a fixed random projection `L = sum(out * w)`, which
# exercises every output element with a different weight.

# %% nbgrader={"grade": false, "grade_id": "gradcheck", "locked": false, "schema_version": 3, "solution": true}
#| export
class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def numerical_grad(func: Callable[..., Tensor], inputs: Sequence[Tensor], index: int,
                   weights: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of sum(func(*inputs) * weights) w.r.t. inputs[index]."""
    x = inputs[index].data
    grad = np.zeros_like(x)
    with no_grad():
        for i in np.ndindex(x.shape):
            ### BEGIN SOLUTION
            original = x[i]
            x[i] = original + eps
            plus = float(np.sum(func(*inputs).data * weights))
            x[i] = original - eps
            minus = float(np.sum(func(*inputs).data * weights))
            x[i] = original
            grad[i] = (plus - minus) / (2 * eps)
            ### END SOLUTION
    return grad


def gradcheck(func: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check backward() of `func` against central differences for every input that requires grad.

    Inputs must be float64. Returns True, or raises GradcheckError naming the input, the
    worst element and both values.
    """
    for k, t in enumerate(inputs):
        if t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {k} is {t.dtype}; use float64 (Tensor(..., dtype=np.float64))")
    out = func(*inputs)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    for t in inputs:
        t.grad = None
    (out * Tensor(weights, dtype=out.dtype)).sum().backward()
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        analytic = np.zeros_like(t.data) if t.grad is None else t.grad.data
        numeric = numerical_grad(func, inputs, k, weights, eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if np.any(err > 0):
            i = np.unravel_index(np.argmax(err), err.shape)
            raise GradcheckError(
                f"gradcheck: input {k} (shape {t.shape}) at index {tuple(int(j) for j in i)}: "
                f"backward gives {analytic[i]:.6g}, finite differences give {numeric[i]:.6g}")
    return True

# %% [markdown]
# ## 10. Does it learn?
#
# Everything is in place: tensors record, rules differentiate, the engine orders. Check
# the rules one by one, then fit a line by gradient descent.

# %% nbgrader={"grade": true, "grade_id": "test-rules-gradcheck", "locked": true, "points": 6, "schema_version": 3, "solution": false}
rng = np.random.default_rng(0)
def t64(*shape, positive=False):
    data = rng.standard_normal(shape)
    return Tensor(np.abs(data) + 0.5 if positive else data, dtype=np.float64, requires_grad=True)

a, b = t64(3, 4), t64(4)
assert gradcheck(lambda a, b: a + b, [a, b]), "add with broadcasting"
assert gradcheck(lambda a, b: a - b * a, [a, b])
assert gradcheck(lambda a, b: a / b, [a, t64(4, positive=True)])
assert gradcheck(lambda a: a ** 3 + (-a), [a])
assert gradcheck(lambda a, b: a ** b, [t64(3, 4, positive=True), t64(3, 4)])
assert gradcheck(lambda a, w: a @ w, [t64(2, 3, 4), t64(4, 5)]), "batched @ shared matrix"
assert gradcheck(lambda a, w: a @ w, [t64(2, 3, 4), t64(2, 4, 5)]), "batched @ batched"
assert gradcheck(lambda a: a.sum(axis=0) + a.mean(axis=1, keepdims=True).sum(), [a])
assert gradcheck(lambda a: a.max(axis=1), [a])
assert gradcheck(lambda a: a.exp().log() + a.exp().sqrt(), [a])
assert gradcheck(lambda a: a.reshape(4, 3).T[1:, ::2], [a])
assert gradcheck(lambda a: a[np.array([0, 0, 2])], [a]), "a repeated index accumulates"
print("gradcheck of module 01 ops: OK")
### BEGIN HIDDEN TESTS
# EVERY backward rule (arithmetic, matmul, reductions, exp/log/sqrt, shapes, indexing and all six activations), with broadcasting, constant inputs and reused nodes, against central differences written here in plain numpy; activations at extreme inputs and in float32; numerical_grad and gradcheck themselves against known gradients
import warnings

hid = np.random.default_rng(20240605)


def fd_check(f, *arrays, need=None, rtol=1e-5, atol=1e-6):
    """backward() of f against float64 central differences of sum(f(*x) * w), element by element."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    need = list(range(len(arrays))) if need is None else need
    leaves = [Tensor(a.copy(), dtype=np.float64, requires_grad=k in need) for k, a in enumerate(arrays)]
    out = f(*leaves)
    w = hid.standard_normal(out.shape)
    out.backward(w)
    for k, a in enumerate(arrays):
        if k not in need:
            assert leaves[k].grad is None, "a constant input gets no gradient"
            continue
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            sides = []
            for step in (1e-6, -1e-6):
                moved = [b.copy() for b in arrays]
                moved[k][i] += step
                sides.append(float(np.sum(f(*[Tensor(b, dtype=np.float64) for b in moved]).data * w)))
            num[i] = (sides[0] - sides[1]) / 2e-6
        got = leaves[k].grad
        assert got is not None and got.shape == a.shape, (k, None if got is None else got.shape, a.shape)
        assert got.dtype == np.float64, got.dtype
        assert np.allclose(got.data, num, rtol=rtol, atol=atol), (k, got.data, num)


rnd = lambda *s: hid.standard_normal(s)
pos = lambda *s: np.abs(hid.standard_normal(s)) + 0.5
away = lambda *s: (lambda z: np.sign(z) * (np.abs(z) + 0.2))(hid.standard_normal(s))   # no kink within eps

# arithmetic, broadcasting on either side, constants on either side
fd_check(lambda a, b: a + b, rnd(3, 1), rnd(1, 4))
fd_check(lambda a, b: a - b, rnd(4), rnd(2, 3, 4))
fd_check(lambda a, b: b - a, rnd(2, 1), rnd(2, 3), need=[0])
fd_check(lambda a: -a, rnd(2, 3))
fd_check(lambda a, b: a * b, rnd(2, 1, 3), rnd(4, 1))
fd_check(lambda a, b: a * b, rnd(3, 4), rnd(4), need=[0])
fd_check(lambda a, b: a * b, rnd(3, 4), rnd(3, 4), need=[1])
fd_check(lambda a, b: a / b, rnd(3, 4), pos(3, 1))
fd_check(lambda a, b: a / b, rnd(1, 4), -pos(3, 4), need=[1])
fd_check(lambda a: a ** 3, rnd(5))
fd_check(lambda a: a ** -2, pos(2, 3))
fd_check(lambda a, b: a ** b, pos(2, 3), rnd(3))
fd_check(lambda a, b: a ** b, pos(3), rnd(2, 3), need=[1])
fd_check(lambda b: 2.5 ** b, rnd(4))
# matmul: plain, shared weight (either side constant), batched, broadcast batch, 1-D operands
fd_check(lambda a, b: a @ b, rnd(2, 3), rnd(3, 5))
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2))
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2), need=[1])
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2), need=[0])
fd_check(lambda a, b: a @ b, rnd(3, 2, 3), rnd(3, 3, 2))
fd_check(lambda a, b: a @ b, rnd(1, 3, 4), rnd(2, 4, 2))
fd_check(lambda a, b: a @ b, rnd(3, 4), rnd(2, 4, 2))
fd_check(lambda a, b: a @ b, rnd(3, 4), rnd(4))
fd_check(lambda a, b: a @ b, rnd(4), rnd(4, 3))
# reductions: every axis form, keepdims, negative axes
fd_check(lambda a: a.sum(), rnd(2, 3))
fd_check(lambda a: a.sum(axis=(0, 2)), rnd(2, 3, 4))
fd_check(lambda a: a.sum(axis=-1, keepdims=True), rnd(2, 3, 4))
fd_check(lambda a: a.mean(), rnd(3, 4))
fd_check(lambda a: a.mean(axis=(0, 2), keepdims=True), rnd(2, 3, 4))
fd_check(lambda a: a.mean(axis=1), rnd(2, 3, 4))
fd_check(lambda a: a.max(), rnd(3, 4))
fd_check(lambda a: a.max(axis=0, keepdims=True), rnd(3, 4))
fd_check(lambda a: a.max(axis=(1, 2)), rnd(2, 3, 4))
fd_check(lambda a: a.max(axis=-2), rnd(2, 3, 4))
# elementwise math
fd_check(lambda a: a.exp(), rnd(3, 4))
fd_check(lambda a: a.log(), pos(3, 4))
fd_check(lambda a: a.sqrt(), pos(3, 4))
# shapes and indexing
fd_check(lambda a: a.reshape(6, 4), rnd(2, 3, 4))
fd_check(lambda a: a.reshape(-1), rnd(3, 2))
fd_check(lambda a: a.permute(2, 0, 1), rnd(2, 3, 4))           # not its own inverse
fd_check(lambda a: a.permute(2, 0, 1), rnd(2, 2, 2))           # ... and a cube, where the shapes cannot tell
fd_check(lambda a: a.permute(1, 2, 0, 3), rnd(2, 3, 2, 2))
fd_check(lambda a: a.transpose(0, 2), rnd(2, 3, 4))
fd_check(lambda a: a[1], rnd(3, 4))
fd_check(lambda a: a[:, 1::2], rnd(3, 5))
fd_check(lambda a: a[None, ..., -1], rnd(3, 4))
fd_check(lambda a: a[np.array([2, 0, 2, 2])], rnd(3, 4))
fd_check(lambda a: a[np.array([0, 1, 0]), np.array([3, 3, 3])], rnd(2, 4))
fd_check(lambda a: a[:, np.array([1, 1])], rnd(2, 3))
keep = np.array([[True, False, True, True], [False, True, False, True], [True, True, False, False]])
fd_check(lambda a: a[keep], rnd(3, 4))
# all six activations, along every axis
fd_check(lambda a: ReLUFunction.apply(a), away(3, 4))
fd_check(lambda a: ReLUFunction.apply(a), away(2, 3, 2))
fd_check(lambda a: SigmoidFunction.apply(a), 3 * rnd(3, 4))
fd_check(lambda a: TanhFunction.apply(a), 2 * rnd(3, 4))
fd_check(lambda a: GELUFunction.apply(a), 2 * rnd(3, 4))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=-1), rnd(2, 5))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=0), rnd(3, 4))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=1), rnd(2, 3, 4))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=-1), rnd(2, 5))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=0), rnd(3, 4))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=1), rnd(2, 3, 4))
# reused nodes: one leaf and one intermediate reach the output along several paths
fd_check(lambda a: a * a * a + a.exp() * a - a / (a * a + 1), rnd(4))


def block(x, w, b):
    h = TanhFunction.apply(x @ w + b)
    p = SoftmaxFunction.apply(h, axis=0)
    return h * h + p * h + LogSoftmaxFunction.apply(h).sum(axis=1, keepdims=True) * ReLUFunction.apply(h)


fd_check(block, rnd(4, 3), rnd(3, 5), rnd(5))
# exact values: relu at, below and above 0; ties of max share the gradient
r = Tensor([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float64, requires_grad=True)
ReLUFunction.apply(r).backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
assert r.grad.data.tolist() == [0.0, 0.0, 0.0, 4.0, 5.0], r.grad
t = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=np.float64, requires_grad=True)
t.max(axis=1).backward(np.array([1.0, 4.0]))
assert np.allclose(t.grad.data, [[0, 0.5, 0.5], [2, 2, 0]]), t.grad
t = Tensor([[5.0, 5.0], [1.0, 5.0]], dtype=np.float64, requires_grad=True)
t.max().backward()
assert np.allclose(t.grad.data, [[1 / 3, 1 / 3], [0, 1 / 3]]), t.grad
z = Tensor([0.0], dtype=np.float64, requires_grad=True)
for act, slope in ((SigmoidFunction, 0.25), (TanhFunction, 1.0), (GELUFunction, 0.5)):
    z.grad = None
    act.apply(z).backward(np.ones(1))
    assert abs(z.grad.item() - slope) < 1e-12, (act.__name__, z.grad)
# the cast back to the leaf's dtype
c = Tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
(c.astype(np.float32) * 3).sum().backward()
assert c.grad.dtype == np.float64 and c.grad.data.tolist() == [3.0, 3.0]
# extreme inputs: finite gradients, right dtype, no warnings, in float32 and float64
extreme = [[1000.0, 0.0, -1000.0], [-800.0, 800.0, 5.0]]
with warnings.catch_warnings():
    warnings.simplefilter("error")
    for dt in (np.float32, np.float64):
        for apply in (lambda x: ReLUFunction.apply(x), lambda x: SigmoidFunction.apply(x),
                      lambda x: TanhFunction.apply(x), lambda x: GELUFunction.apply(x),
                      lambda x: SoftmaxFunction.apply(x, axis=1), lambda x: LogSoftmaxFunction.apply(x, axis=1),
                      lambda x: SoftmaxFunction.apply(x, axis=0), lambda x: LogSoftmaxFunction.apply(x, axis=0)):
            big = Tensor(extreme, dtype=dt, requires_grad=True)
            apply(big).backward(np.array([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]]))
            assert big.grad.dtype == dt and np.isfinite(big.grad.data).all(), (dt, big.grad)
sat = Tensor([-1000.0, 1000.0], dtype=np.float64, requires_grad=True)
SigmoidFunction.apply(sat).backward(np.ones(2))
assert np.allclose(sat.grad.data, 0.0)
ls = Tensor([[1000.0, 0.0, -1000.0]], dtype=np.float64, requires_grad=True)
LogSoftmaxFunction.apply(ls, axis=1).backward(np.ones((1, 3)))
assert np.allclose(ls.grad.data, [[-2.0, 1.0, 1.0]]), ls.grad
# numerical_grad against known derivatives (it must not use backward(), and must put the input back)
xv = hid.standard_normal((2, 3))
x = Tensor(xv.copy(), dtype=np.float64, requires_grad=True)
ng = numerical_grad(lambda u: u ** 3, [x], 0, np.ones((2, 3)))
assert np.allclose(ng, 3 * xv ** 2, rtol=1e-6, atol=1e-8), ng
assert np.array_equal(x.data, xv), "numerical_grad must restore every element it moved"
assert x.grad is None, "numerical_grad computes differences, it does not call backward()"
ng = numerical_grad(lambda u: (u ** 3).sum(), [x], 0, np.float64(1.0))
assert np.allclose(ng, 3 * xv ** 2, rtol=1e-6, atol=1e-8), ng
wts = hid.standard_normal((2, 3))
yv = hid.standard_normal((2, 3))
y = Tensor(yv.copy(), dtype=np.float64, requires_grad=True)
ng = numerical_grad(lambda u, v: u * v.exp(), [x, y], 1, wts)
assert np.allclose(ng, xv * np.exp(yv) * wts, rtol=1e-6, atol=1e-8), ng
assert np.array_equal(y.data, yv) and np.array_equal(x.data, xv)
ng = numerical_grad(lambda u, v: (u @ v.T).sum(axis=0), [x, y], 0, np.array([1.0, -2.0]))
assert np.allclose(ng, np.ones((2, 1)) * (np.array([1.0, -2.0]) @ yv), rtol=1e-6, atol=1e-8), ng


# gradcheck rejects a wrong backward rule (d(2a)/da is 2, the rule below says 1), accepts the right one
class DoubleIt(Function):
    def forward(self, a):
        return 2 * a


@register_backward(DoubleIt)
def _double_wrong(fn, g):
    return (g,)


try:
    gradcheck(lambda u: DoubleIt.apply(u), [Tensor(rnd(3), dtype=np.float64, requires_grad=True)])
    raise AssertionError("gradcheck must reject a backward rule that is off by a factor of 2")
except GradcheckError:
    pass


@register_backward(DoubleIt)
def _double_right(fn, g):
    return (2 * g,)


assert gradcheck(lambda u: DoubleIt.apply(u), [Tensor(rnd(2, 2), dtype=np.float64, requires_grad=True)])
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test-engine", "locked": true, "points": 4, "schema_version": 3, "solution": false}
x = Tensor(3.0, requires_grad=True)
y = x * x + x                    # x used three times: dy/dx = 2x + 1 = 7
y.backward()
assert x.grad.item() == 7.0
y.backward()                     # a second call accumulates
assert x.grad.item() == 14.0
x.zero_grad()
deep = Tensor(1.0, dtype=np.float64, requires_grad=True)
z = deep
for _ in range(5000):            # far deeper than Python's recursion limit,
    z = z + 0.0001 * z           # and every step reaches z by two paths
z.backward()
assert abs(deep.grad.item() - 1.0001 ** 5000) < 1e-6
with no_grad():
    recorded = (deep * 2).requires_grad
assert not recorded
try:
    Tensor([1.0, 2.0], requires_grad=True).exp().backward()
    raise AssertionError("a non-scalar output needs an explicit gradient")
except AutogradError:
    pass
print("engine: OK")
### BEGIN HIDDEN TESTS
# the engine on graphs the visible part does not build: diamonds and shared intermediates, explicit upstream gradients (array or Tensor), leaves that must get no gradient, gradients that must not share memory, the topological order itself, and no_grad/enable_grad nested, as decorators and after an exception
hx = Tensor([1.5, -0.5], dtype=np.float64, requires_grad=True)
hc = Tensor([2.0, 3.0], dtype=np.float64)                      # a constant
h1 = hx * hc
h2 = h1 * h1 + h1 * hx                                         # h1 reached twice, hx three times
out = (h2 + h1).sum()
out.backward()
xv, cv = np.array([1.5, -0.5]), np.array([2.0, 3.0])
assert np.allclose(hx.grad.data, 2 * cv * cv * xv + 2 * cv * xv + cv), hx.grad
assert hc.grad is None and h1.grad is None and h2.grad is None, "only leaves that require grad get .grad"
hx.zero_grad()
(hx * 3.0).backward(np.array([1.0, -2.0]))
assert hx.grad.data.tolist() == [3.0, -6.0]
(hx * hx).backward(Tensor([0.5, 1.0], dtype=np.float64))     # accumulates into the same .grad
assert np.allclose(hx.grad.data, [3.0 + 1.5, -6.0 - 1.0])
for bad in (np.ones(3), np.ones((2, 1))):
    try:
        (hx * 2.0).backward(bad)
        raise AssertionError(f"a gradient of shape {bad.shape} for an output of shape (2,) must be refused")
    except AutogradError:
        pass
try:
    Tensor([1.0, 2.0]).sum().backward()
    raise AssertionError("backward() of a tensor that does not require grad must be refused")
except AutogradError:
    pass
# two leaves fed by one Add share nothing: writing into one .grad leaves the other alone
ha = Tensor(np.zeros((2, 3)), dtype=np.float64, requires_grad=True)
hb = Tensor(np.zeros((2, 3)), dtype=np.float64, requires_grad=True)
hd = Tensor(np.zeros(3), dtype=np.float64, requires_grad=True)
(ha + hb + hd).backward(np.ones((2, 3)))
ha.grad.data += 1.0
assert hb.grad.data.tolist() == [[1.0] * 3] * 2 and hd.grad.data.tolist() == [2.0, 2.0, 2.0]
assert ha.grad.data.flags.writeable and hb.grad.data.flags.writeable and hd.grad.data.flags.writeable
hs = Tensor(np.ones((2, 2)), dtype=np.float64, requires_grad=True)
hs.sum().backward()                                             # a broadcast view must not become .grad
hs.grad.data[0, 0] = 7.0
assert hs.grad.data.tolist() == [[7.0, 1.0], [1.0, 1.0]]
# float32 leaves get float32 gradients
hf = Tensor([1.0, 2.0], requires_grad=True)
(hf * hf).sum().backward()
assert hf.grad.dtype == np.float32 and hf.grad.data.tolist() == [2.0, 4.0]
# the order: every tensor after all of its inputs, each once, the root last, constants left out
ta = Tensor([1.0], requires_grad=True)
tb = Tensor([2.0], requires_grad=True)
tk = Tensor([5.0])
u1 = ta * tb
u2 = u1 + ta * tk
u3 = u2 * u1 + tb
order = topological_order(u3)
ids = [id(n) for n in order]
assert len(ids) == len(set(ids)) and ids[-1] == id(u3) and id(tk) not in ids
assert set(ids) >= {id(ta), id(tb), id(u1), id(u2), id(u3)}
for node in order:
    if node._ctx is not None:
        for inp in node._ctx.inputs:
            if inp.requires_grad:
                assert ids.index(id(inp)) < ids.index(id(node)), "an input must come before its user"
assert [id(n) for n in topological_order(ta)] == [id(ta)]
u3.backward()
assert ta.grad.item() == 28.0 and tb.grad.item() == 10.0, (ta.grad, tb.grad)   # (b + k) u1 + u2 b, a u1 + u2 a + 1
# no_grad / enable_grad: nested, restored after an exception, as a decorator
flags = []
with no_grad():
    flags.append(is_grad_enabled())
    with no_grad():
        flags.append(is_grad_enabled())
    flags.append(is_grad_enabled())
    with enable_grad():
        flags.append(is_grad_enabled())
        inner = ta * 2
    flags.append(is_grad_enabled())
    outer = ta * 2
flags.append(is_grad_enabled())
assert flags == [False, False, False, True, False, True], flags
assert inner.requires_grad and not outer.requires_grad and outer._ctx is None
try:
    with no_grad():
        raise KeyError("boom")
except KeyError:
    pass
assert is_grad_enabled(), "an exception inside no_grad() must not leave recording off"


@no_grad()
def predict(v):
    return v * 2, is_grad_enabled()


res, inside = predict(ta)
assert not res.requires_grad and inside is False and is_grad_enabled()
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test-it-learns", "locked": true, "points": 2, "schema_version": 3, "solution": false}
xs = Tensor(np.linspace(-1, 1, 32).reshape(-1, 1))
ys = 3 * xs - 0.5
w, b = Tensor([[0.0]], requires_grad=True), Tensor([0.0], requires_grad=True)
for step in range(200):
    loss = ((xs @ w + b - ys) ** 2).mean()
    w.zero_grad(), b.zero_grad()
    loss.backward()
    w.data -= 0.5 * w.grad.data
    b.data -= 0.5 * b.grad.data
assert abs(w.item() - 3) < 1e-3 and abs(b.item() + 0.5) < 1e-3, (w, b)
print(f"fitted y = {w.item():.3f} x + {b.item():.3f}; loss {loss.item():.2e}")
### BEGIN HIDDEN TESTS
# learning with several inputs and outputs, a broadcast bias that is not zero, from a non-zero start, in float64, against the least-squares answer
lrng = np.random.default_rng(77)
X = lrng.standard_normal((40, 3))
W_true = np.array([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]])
b_true = np.array([0.7, -1.2])
Xt, Yt = Tensor(X, dtype=np.float64), Tensor(X @ W_true + b_true, dtype=np.float64)
Wl = Tensor(lrng.standard_normal((3, 2)), dtype=np.float64, requires_grad=True)
bl = Tensor([2.0, 2.0], dtype=np.float64, requires_grad=True)
for step in range(300):
    loss = ((Xt @ Wl + bl - Yt) ** 2).mean()
    Wl.zero_grad(), bl.zero_grad()
    loss.backward()
    Wl.data -= 0.3 * Wl.grad.data
    bl.data -= 0.3 * bl.grad.data
assert np.allclose(Wl.data, W_true, atol=1e-4) and np.allclose(bl.data, b_true, atol=1e-4), (Wl, bl)
### END HIDDEN TESTS

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory.** Backward needs what forward kept. For an MLP with activations of
#    `B x 4096` floats per layer and 10 layers at batch 256, how many MiB does the graph
#    hold at the peak? What does *activation checkpointing* trade to reduce it?
# 2. **Cost.** Count the matrix products in one training step of `y = x @ W` (forward and
#    backward). Why is a training step about three times the FLOPs of a forward pass?
# 3. **Broadcast gradients.** A bias `(C,)` added to `(B, T, C)` activations gets its
#    gradient by summing `B*T` rows. What is the cost of that sum relative to the matrix
#    product that produced the activations?
# 4. **Why float64 for gradcheck.** With ε = 1e-6 in float32, what is the size of the
#    rounding error in `(L(x+ε) - L(x-ε)) / 2ε` when `L` is about 1? What ε would you need,
#    and what does that do to the O(ε²) truncation error?
# 5. **Accumulation.** Gradient accumulation lets you simulate a batch of 1024 with four
#    batches of 256 and one optimizer step. Which parts of the result are exactly equal
#    to a true batch of 1024, and which (think of batch normalisation, module 10) are not?
