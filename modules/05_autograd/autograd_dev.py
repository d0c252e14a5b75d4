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
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-04 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

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
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)                     # leading axes that broadcasting added
    if extra < 0 or any(n != 1 and n != m for n, m in zip(shape, grad.shape[extra:])):
        raise AutogradError(f"a gradient of shape {grad.shape} cannot be reduced to the input shape {shape}")
    ### BEGIN SOLUTION
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    if extra:
        out = out.reshape(out.shape[extra:])
    return out
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-unbroadcast", "locked": true, "points": 2, "schema_version": 3, "solution": false}
g = np.ones((4, 3))
assert unbroadcast(g, (3,)).tolist() == [4, 4, 4]
assert unbroadcast(g, (4, 1)).shape == (4, 1) and unbroadcast(g, (4, 1))[0, 0] == 3
assert unbroadcast(g, ()).item() == 12
assert unbroadcast(np.ones((2, 4, 3)), (1, 3)).tolist() == [[8, 8, 8]]
print("unbroadcast: OK")

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
#
# Provided around your engine: `_seed_gradient(root, gradient)` (the gradient to start from,
# refusing a root that does not require grad or a gradient of the wrong shape) and
# `_input_grads(fn, g)` (runs a node's rule and checks it gave one gradient per input).

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


def _seed_gradient(root: Tensor, gradient: Any) -> np.ndarray:
    """The gradient backward() starts from: `gradient` as an array of root's dtype and shape,
    or 1 for a one-element root when it is omitted. Refuses what cannot be backpropagated."""
    if not root.requires_grad:
        raise AutogradError("backward(): this tensor does not require grad; no input of the computation "
                            "had requires_grad=True, or it was computed under no_grad()")
    if gradient is None:
        if root.size != 1:
            raise AutogradError(f"backward(): the output has shape {root.shape}, so pass the gradient "
                                f"of the loss with respect to it (same shape); only one-element outputs "
                                f"get the implicit gradient 1")
        return np.ones_like(root.data)
    seed = np.array(gradient.data if isinstance(gradient, Tensor) else gradient, dtype=root.dtype)
    if seed.shape != root.shape:
        raise AutogradError(f"backward(): gradient has shape {seed.shape} but the output has shape {root.shape}")
    return seed


def _input_grads(fn: Function, g: np.ndarray) -> tuple[np.ndarray | None, ...]:
    """Run the backward rule of `fn` on `g`; checks that it gives one gradient per input."""
    in_grads = fn.backward(g)
    if len(in_grads) != len(fn.inputs):
        raise AutogradError(f"{type(fn).__name__} backward returned {len(in_grads)} gradients "
                            f"for {len(fn.inputs)} inputs")
    return in_grads


def backward(root: Tensor, gradient: Any = None) -> None:
    """Backpropagate from `root`: add d(root)/d(leaf) into `.grad` of every leaf that requires grad.

    `gradient` (same shape as root) is the upstream gradient; it may be omitted only for a
    one-element root, where it is 1.
    """
    seed = _seed_gradient(root, gradient)
    ### BEGIN SOLUTION
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
        in_grads = _input_grads(fn, g)      # fn's rule, checked: one gradient per input
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
