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
# # Module 06: Optimizers
#
# **Where you are.** Module 05 gave every parameter a gradient: `loss.backward()` fills
# `p.grad` with $\partial L / \partial p$. A gradient says which way is uphill; this module
# decides how far to step the other way, and how to use what earlier steps have seen.
# Module 07 wraps it all in a training loop.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `Optimizer` | base class: holds the parameters, `zero_grad()`, `step()`, `state_dict()` / `load_state_dict()` |
# | `SGD` | stochastic gradient descent, with momentum, Nesterov momentum and L2 weight decay |
# | `Adam`, `AdamW` | adaptive moments with bias correction; AdamW decouples the weight decay |
# | `LRScheduler`, `StepLR`, `CosineWarmupLR` | the learning rate as a function of the step count |
# | `clip_grad_norm` | rescale all gradients together when their global norm is too large |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/optimizers.py`.
#
# **The one idea of this module.** An optimizer step is *not* part of the model: no
# gradient flows through it, and nothing is recorded. It is plain numpy arithmetic on the
# arrays `p.data`, written exactly as the formulas read, that updates the parameters
# **in place** (`p -= ...`: the Tensor keeps its array). Each operation allocates a
# temporary array; module 13 writes the same step without any (`FusedAdam`, `FusedAdamW`:
# the same numbers up to float rounding), and the long training runs opt into it.
#
# **Points: 18** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-05 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.optimizers

# %%
#| export
"""Optimizers (SGD, Adam, AdamW), learning-rate schedules and gradient clipping: numpy updates
of `p.data` in place, outside the autograd graph. Module 06 of TinyTorch (generated from
modules/06_optimizers/optimizers_dev.py; do not edit)."""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

from tinytorch.core.tensor import Tensor

# %% [markdown]
# ## 1. The optimizer base class
#
# Every optimizer does the same bookkeeping:
#
# * It keeps the **list of parameters** it is responsible for, in a fixed order: usually
#   `model.parameters()` (module 02), whose order is deterministic. The order matters:
#   the state of parameter `i` is saved under the name `"i.<buffer>"`.
# * `zero_grad()` sets every `p.grad` to `None`. The engine *adds* into `.grad`
#   (module 05), so forgetting this sums the gradients of all steps so far.
# * `step()` visits each parameter that has a gradient and calls `_update(i, p, g)` on
#   the **numpy arrays** `p = param.data` and `g = self._grad(i)` (the gradient, checked
#   to have the parameter's shape). A parameter whose `.grad` is `None` did not take part
#   in this loss (a frozen layer, a branch of the model that this batch did not use) and
#   is skipped, state included.
# * The per-parameter state (momentum, moment estimates) is allocated **once**, in the
#   constructor, with the parameter's shape and dtype, and named `"i.<buffer>"`. Updates
#   write into it in place (`m[...] = ...`), so `state_dict()` always sees the live arrays.
#
# `_update` changes `p` in place (`p -= ...`) and never writes into `g`: the gradient
# belongs to the user (they may log it or clip it), and a step that silently changed it
# would be a nasty surprise. So weight decay is added into a *new* array, `g = g + wd * p`.
#
# **Hyperparameters** (`lr`, `momentum`, ...) live in the dict `self.hyper`, as plain
# Python numbers (a Python float keeps float32 arrays float32, a numpy float64 would not).
# A learning-rate schedule changes `optimizer.lr` between steps.

# %% nbgrader={"grade": false, "grade_id": "optimizer-base", "locked": false, "schema_version": 3, "solution": true}
#| export
def _check_params(params: Iterable[Tensor], owner: str) -> list[Tensor]:
    """The parameters as a non-empty list of distinct floating Tensors."""
    if isinstance(params, Tensor) or callable(getattr(params, "parameters", None)):
        raise TypeError(f"{owner}: pass an iterable of parameters (model.parameters()), not a {type(params).__name__}")
    out = list(params)
    for i, p in enumerate(out):
        if not isinstance(p, Tensor) or p.dtype.kind != "f":
            raise TypeError(f"{owner}: parameter {i} is a {type(p).__name__} of dtype {getattr(p, 'dtype', None)}, "
                            f"not a floating Tensor")
    if not out or len({id(p) for p in out}) < len(out):
        raise ValueError(f"{owner}: the parameter list is empty or holds the same tensor twice ({len(out)} entries)")
    return out


def _check_number(value: Any, name: str, owner: str, low: float = 0.0, high: float = math.inf,
                  high_open: bool = False, kind: type = numbers.Real) -> Any:
    """`value` as a Python float (an int with kind=numbers.Integral) in [low, high] (or [low, high))."""
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
            or not low <= value <= high or (high_open and value == high):
        raise ValueError(f"{owner}: {name} must be a finite {kind.__name__.lower()} number in [{low}, {high}"
                         f"{')' if high_open else ']'}, got {value!r}")
    return int(value) if kind is numbers.Integral else float(value)


_RANGES = {"lr": (0.0, math.inf, False), "weight_decay": (0.0, math.inf, False), "eps": (0.0, math.inf, False),
           "momentum": (0.0, 1.0, True)}                  # (low, high, high_open) of each hyperparameter


def _check_hyper(owner: str, hyper: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters checked against `_RANGES` and as Python numbers (a Python float keeps
    float32 arrays float32, a numpy float64 would not); "lr" is required, betas a pair, eps > 0."""
    out = {k: _check_number(v, k, owner, *_RANGES[k]) if k in _RANGES else v for k, v in {"lr": None, **hyper}.items()}
    if "betas" in out and (not isinstance(out["betas"], (tuple, list)) or len(out["betas"]) != 2):
        raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {out['betas']!r}")
    if "betas" in out:
        out["betas"] = tuple(_check_number(b, f"betas[{k}]", owner, 0.0, 1.0, True) for k, b in enumerate(out["betas"]))
    if out.get("eps", 1) == 0 or (out.get("nesterov") and out["momentum"] == 0):
        raise ValueError(f"{owner}: eps must be > 0 and nesterov=True needs momentum > 0, got {hyper}")
    return out


class Optimizer:
    """Base class: `step()` updates each parameter with a gradient by `_update(i, p, g)` on
    ndarrays (subclasses define it; their state comes from `_buffer`). `hyper` holds "lr"."""

    def __init__(self, params: Iterable[Tensor], hyper: dict[str, Any]):
        params, hyper = _check_params(params, type(self).__name__), _check_hyper(type(self).__name__, hyper)
        ### BEGIN SOLUTION
        self.params: list[Tensor] = params
        self.hyper: dict[str, Any] = hyper
        self.step_count: int = 0                       # calls of step() so far
        self.state: dict[str, np.ndarray] = {}         # "i.name" -> buffer of parameter i
        ### END SOLUTION

    @property
    def lr(self) -> float:                             # the learning rate of the next step
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hyper["lr"] = _check_number(value, "lr", type(self).__name__)

    #: the "type" that `state_dict()` records (module 13's FusedAdamW keeps AdamW's: same state)
    state_type = property(lambda self: type(self).__name__)

    def _buffer(self, i: int, name: str, dtype: Any = None, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Allocate (zeros) and register the state buffer `"i.name"` of parameter i; by
        default with the parameter's shape and dtype."""
        ### BEGIN SOLUTION
        p = self.params[i]
        buf = np.zeros(p.shape if shape is None else shape, dtype=p.dtype if dtype is None else dtype)
        self.state[f"{i}.{name}"] = buf
        return buf
        ### END SOLUTION

    def _grad(self, i: int) -> np.ndarray | None:
        """The gradient of parameter i as an ndarray (None if it has none), of its shape."""
        grad, shape = self.params[i].grad, self.params[i].shape
        if grad is not None and grad.shape != shape:
            raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {shape} but its gradient {grad.shape}")
        return None if grad is None else grad.data

    def zero_grad(self) -> None:
        """Forget the gradients: every parameter's `.grad` becomes None."""
        ### BEGIN SOLUTION
        for p in self.params:
            p.grad = None
        ### END SOLUTION

    def step(self) -> None:
        """Update every parameter whose `.grad` is not None (`self._grad(i)`); the others
        are skipped. Counts the call in `step_count`."""
        ### BEGIN SOLUTION
        for i, p in enumerate(self.params):
            g = self._grad(i)
            if g is not None:
                self._update(i, p.data, g)
        self.step_count += 1
        ### END SOLUTION

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: {"type", "hyper", "step", "param_shapes",
        "buffers"}. All but "buffers" is JSON-able (tuples become lists); "buffers" maps
        names ("0.exp_avg") to copies of the state arrays, ready for np.savez."""
        ### BEGIN SOLUTION
        return {"type": self.state_type,
                "hyper": {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyper.items()},
                "step": self.step_count,
                "param_shapes": [list(p.shape) for p in self.params],
                "buffers": {name: buf.copy() for name, buf in self.state.items()}}
        ### END SOLUTION

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ValueError naming every way `state` does not fit (type, shapes, buffers, ...)."""
        owner, keys = f"{type(self).__name__}.load_state_dict", {"type", "hyper", "step", "param_shapes", "buffers"}
        if not isinstance(state, dict) or keys - set(state):
            raise ValueError(f"{owner}: expected a dict from state_dict(), the state has no "
                             f"{keys - set(state if isinstance(state, dict) else ())}")
        here = {"type": self.state_type, "hyperparameters": sorted(self.hyper),
                "parameter shapes": [p.shape for p in self.params],
                **{f"buffer {k}": v.shape for k, v in self.state.items()}}
        there = {"type": state["type"], "hyperparameters": sorted(state["hyper"]),
                 "parameter shapes": [tuple(s) for s in state["param_shapes"]],
                 **{f"buffer {k}": np.shape(v) for k, v in state["buffers"].items()}}
        problems = [f"{k}: {there.get(k, 'missing')} in the state, {here.get(k, 'none')} here"
                    for k in {**here, **there} if there.get(k) != here.get(k)]
        if problems:
            raise ValueError(f"{owner}: the state does not fit: " + "; ".join(problems))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore hyperparameters (lists back to tuples where this optimizer has tuples),
        step count and buffers (copied into the existing arrays) from `state_dict()`
        output. Checked first with `check_state_dict`: nothing changes if it does not fit."""
        self.check_state_dict(state)
        ### BEGIN SOLUTION
        self.hyper = {k: tuple(v) if isinstance(self.hyper[k], tuple) else v for k, v in state["hyper"].items()}
        self.step_count = int(state["step"])
        for name, own in self.state.items():
            np.copyto(own, np.asarray(state["buffers"][name]), casting="same_kind")
        ### END SOLUTION

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.params)} parameters, {self.hyper})"
# %% nbgrader={"grade": true, "grade_id": "test-optimizer-base", "locked": true, "points": 2, "schema_version": 3, "solution": false}
class PlainGD(Optimizer):
    """p <- p - lr g, the simplest possible subclass (for this test)."""
    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def _update(self, i, p, g):
        p -= self.lr * g


a = Tensor([1.0, 2.0], requires_grad=True)
b = Tensor([[3.0]], requires_grad=True)
opt = PlainGD([a, b], lr=0.5)
a.grad = Tensor([2.0, -2.0])                       # b has no gradient: skipped
opt.step()
assert np.allclose(a.data, [0.0, 3.0]) and b.data[0, 0] == 3.0 and opt.step_count == 1
assert a.grad.data.tolist() == [2.0, -2.0], "step() must not modify the gradient"
opt.zero_grad()
assert a.grad is None and b.grad is None
for bad in ([], [a, a], [Tensor(np.array([1, 2]))]):
    try:
        PlainGD(bad, lr=0.1)
        raise AssertionError(f"{bad!r} must be refused")
    except (ValueError, TypeError):
        pass
print(opt)
print("optimizer base: OK")

# %% [markdown]
# ## 2. SGD with momentum and weight decay
#
# **Plain SGD** steps against the gradient of the mini-batch loss:
# $p \leftarrow p - \eta\, g$.
#
# **Weight decay (L2).** Adding $\frac{\lambda}{2}\lVert p\rVert^2$ to the loss adds
# $\lambda p$ to the gradient, pulling every weight towards zero a little at each step:
# $g \leftarrow g + \lambda p$.
#
# **Momentum.** On a long narrow valley the gradient points mostly *across* the valley,
# and SGD zig-zags. Momentum keeps a running *velocity* $v$ that accumulates consistent
# directions and cancels the oscillating ones:
#
# $$v \leftarrow \mu v + g, \qquad p \leftarrow p - \eta\, v.$$
#
# With $\mu = 0.9$ a constant gradient gives a velocity of $g/(1-\mu) = 10g$: the
# effective step along consistent directions is ten times larger. (This is PyTorch's
# formulation; some texts write $v \leftarrow \mu v - \eta g$, which differs when $\eta$
# changes during training.)
#
# **Nesterov momentum** steps with the gradient *plus* the velocity it is about to add,
# a look-ahead that damps oscillations further: $p \leftarrow p - \eta\,(g + \mu v)$, with
# $v$ already updated.
#
# The velocity is stored per parameter as `"i.momentum_buffer"` (only when $\mu > 0$: plain
# SGD has no state at all).

# %% nbgrader={"grade": false, "grade_id": "sgd", "locked": false, "schema_version": 3, "solution": true}
#| export
class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
    (PyTorch's formulas). State of parameter i, when momentum > 0: "i.momentum_buffer"."""

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        ### BEGIN SOLUTION
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": bool(nesterov),
                                  "weight_decay": weight_decay})
        if self.hyper["momentum"] > 0:
            for i in range(len(self.params)):
                self._buffer(i, "momentum_buffer")
        ### END SOLUTION

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        ### BEGIN SOLUTION
        lr, mu, wd = self.hyper["lr"], self.hyper["momentum"], self.hyper["weight_decay"]
        if wd:
            g = g + wd * p                       # L2 weight decay (a new array: p.grad untouched)
        if mu:
            v = self.state[f"{i}.momentum_buffer"]
            v[...] = mu * v + g                  # velocity, in its state buffer
            g = g + mu * v if self.hyper["nesterov"] else v
        p -= lr * g
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-sgd", "locked": true, "points": 4, "schema_version": 3, "solution": false}
def run_steps(opt, param, grads):
    """Apply the given gradients one step at a time; return the parameter after each step."""
    out = []
    for g in grads:
        param.grad = Tensor(np.array(g, dtype=np.float64), dtype=np.float64)
        opt.step()
        out.append(param.data.copy())
    return out


p = Tensor([1.0, -2.0], dtype=np.float64, requires_grad=True)
steps = run_steps(SGD([p], lr=0.1), p, [[1.0, 1.0], [0.5, -1.0]])
assert np.allclose(steps[0], [0.9, -2.1]) and np.allclose(steps[1], [0.85, -2.0])

p = Tensor([1.0], dtype=np.float64, requires_grad=True)
steps = run_steps(SGD([p], lr=0.1, momentum=0.9), p, [[1.0], [1.0], [1.0]])
# v: 1, 1.9, 2.71  ->  p: 0.9, 0.71, 0.439
assert np.allclose(np.ravel(steps), [0.9, 0.71, 0.439]), steps

p = Tensor([1.0], dtype=np.float64, requires_grad=True)
steps = run_steps(SGD([p], lr=0.1, momentum=0.9, nesterov=True), p, [[1.0], [1.0]])
# v1 = 1, step g + mu v = 1.9 -> 0.81;  v2 = 1.9, step 1 + 1.71 = 2.71 -> 0.539
assert np.allclose(np.ravel(steps), [0.81, 0.539]), steps

p = Tensor([2.0], dtype=np.float64, requires_grad=True)
steps = run_steps(SGD([p], lr=0.1, weight_decay=0.5), p, [[0.0], [0.0]])
# g + wd p = 1 -> 1.9; then 0.95 -> 1.805
assert np.allclose(np.ravel(steps), [1.9, 1.805]), steps
assert p.grad.data.tolist() == [0.0], "weight decay must not be written into p.grad"
print("sgd: OK")

# %% [markdown]
# ## 3. Adam and AdamW
#
# SGD uses one learning rate for every parameter. But gradients of different parameters
# differ in scale by orders of magnitude (an embedding row that is rarely used, a bias, a
# weight in the last layer). **Adam** keeps two running averages per parameter element,
# of the gradient (first moment) and of its square (second moment), and divides one by the
# square root of the other, so each element takes a step of roughly the same size, $\eta$:
#
# $$m \leftarrow \beta_1 m + (1-\beta_1)\, g, \qquad v \leftarrow \beta_2 v + (1-\beta_2)\, g^2$$
#
# **Bias correction.** Both averages start at 0, so early on they underestimate: after
# $t$ steps with a constant gradient, $m = (1-\beta_1^t)\, g$. Dividing by $1-\beta^t$
# removes this bias:
#
# $$\hat m = \frac{m}{1-\beta_1^t}, \qquad \hat v = \frac{v}{1-\beta_2^t}, \qquad
#   p \leftarrow p - \eta\, \frac{\hat m}{\sqrt{\hat v} + \varepsilon}.$$
#
# On the very first step $\hat m = g$ and $\sqrt{\hat v} = |g|$: every element moves by
# almost exactly $\eta$, whatever the gradient's scale. The step count $t$ is kept per
# parameter (`"i.step"`), so a parameter that skipped some steps is corrected for the steps
# it actually took.
#
# **Weight decay, two ways.** `Adam(weight_decay=λ)` adds $\lambda p$ to the gradient
# (L2, as SGD does); the decay then goes through the division by $\sqrt{\hat v}$, so
# parameters with large gradients are barely regularised. **AdamW** (Loshchilov & Hutter)
# *decouples* it: shrink the weights directly, $p \leftarrow p\,(1 - \eta\lambda)$, then
# take the Adam step on the bare gradient. AdamW is the standard for transformers
# (TinyGPT, module 16).
#
# **Memory.** Adam's state is two arrays the size of the model: with the gradients,
# training with Adam needs four times the memory of the parameters alone.
#
# Write the four lines as the formulas read (the state arrays are updated in place with
# `m[...] = ...`; the step count `t` is a 0-d array, so take `int(t)` for the powers:
# a numpy integer would turn $\beta^t$ into a float64 scalar and float32 into float64):

# %% nbgrader={"grade": false, "grade_id": "adam", "locked": false, "schema_version": 3, "solution": true}
#| export
class Adam(Optimizer):
    """Adam with bias-corrected moments (PyTorch's formulas); weight_decay is L2 (AdamW
    decouples it). State of parameter i: "i.exp_avg", "i.exp_avg_sq" (its shape) and
    "i.step" (a 0-d int64 array: the steps this parameter has taken)."""
    decoupled_weight_decay: bool = False

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        ### BEGIN SOLUTION
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        for i in range(len(self.params)):
            self._buffer(i, "exp_avg")
            self._buffer(i, "exp_avg_sq")
            self._buffer(i, "step", dtype=np.int64, shape=())
        ### END SOLUTION

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        ### BEGIN SOLUTION
        lr, eps, wd = self.hyper["lr"], self.hyper["eps"], self.hyper["weight_decay"]
        b1, b2 = self.hyper["betas"]
        m, v, t = self.state[f"{i}.exp_avg"], self.state[f"{i}.exp_avg_sq"], self.state[f"{i}.step"]
        if wd and self.decoupled_weight_decay:
            p *= 1.0 - lr * wd                   # AdamW: shrink the weights directly
        elif wd:
            g = g + wd * p                       # Adam: L2 through the gradient
        t += 1
        step = int(t)                            # a Python int: keeps float32 float32
        m[...] = b1 * m + (1 - b1) * g
        v[...] = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**step), v / (1 - b2**step)
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)
        ### END SOLUTION


class AdamW(Adam):
    """Adam with decoupled weight decay, p <- p (1 - lr * weight_decay) before each step."""
    decoupled_weight_decay = True

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        ### BEGIN SOLUTION
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-adam", "locked": true, "points": 4, "schema_version": 3, "solution": false}
def adam_reference(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    """The textbook formulas, step by step, with fresh arrays."""
    p, m, v, out = np.array(p, dtype=np.float64), 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        g = np.array(g, dtype=np.float64)
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


grads = [[0.5, -3.0, 1e-4], [0.4, 2.0, 2e-4], [-1.0, 1.0, 1e-4]]
for cls, kw, ref_kw in [(Adam, {}, {}),
                        (Adam, {"weight_decay": 0.1}, {"wd": 0.1}),
                        (AdamW, {"weight_decay": 0.1}, {"wd": 0.1, "decoupled": True})]:
    p = Tensor([1.0, 2.0, -1.0], dtype=np.float64, requires_grad=True)
    got = run_steps(cls([p], lr=0.01, **kw), p, grads)
    ref = adam_reference([1.0, 2.0, -1.0], grads, lr=0.01, **ref_kw)
    assert np.allclose(got, ref, rtol=1e-12, atol=1e-14), (cls.__name__, kw, got, ref)
p = Tensor([0.0, 0.0], dtype=np.float64, requires_grad=True)
run_steps(Adam([p], lr=0.01), p, [[1e-4, 1e3]])
assert np.allclose(p.data, [-0.01, -0.01], rtol=1e-3), "Adam's first step is about lr for any gradient scale"
print("adam and adamw: OK")

# %% [markdown]
# ## 4. Saving and restoring the optimizer
#
# To continue an interrupted training run *exactly*, the parameters are not enough: the
# momentum and the moment estimates hold the last thousands of gradients, and Adam's bias
# correction needs the step count. `state_dict()` returns
#
# ```
# {"type": "Adam", "hyper": {"lr": 0.001, "betas": [0.9, 0.999], ...}, "step": 120,
#  "param_shapes": [[4, 8], [8]],
#  "buffers": {"0.exp_avg": ndarray, "0.exp_avg_sq": ndarray, "0.step": ndarray, "1.exp_avg": ...}}
# ```
#
# Everything except `"buffers"` is JSON; the buffers are arrays for `np.savez`. Module 07
# puts both in one checkpoint file. `load_state_dict` checks *everything* before changing
# anything (type, number and shapes of parameters, buffer names and shapes): loading
# an Adam state into an optimizer for another model must fail loudly, not half-succeed.
#
# The test below interrupts a run after two steps, writes the state to bytes exactly as a
# checkpoint file would (arrays with `np.savez`, the rest with `json`), restores it into a
# *new* optimizer and checks that the continued run is bit-identical to the uninterrupted one.

# %% nbgrader={"grade": true, "grade_id": "test-state-dict", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import io
import json

def make_params():
    return [Tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True), Tensor([0.5, -0.5], requires_grad=True)]

def grad_at(k, params):
    for j, p in enumerate(params):
        p.grad = Tensor(np.sin(np.arange(p.size) + 3 * k + j).reshape(p.shape))

straight = make_params()
opt = Adam(straight, lr=0.05, weight_decay=0.01)
for k in range(4):
    grad_at(k, straight)
    opt.step()

first = make_params()
opt = Adam(first, lr=0.05, weight_decay=0.01)
for k in range(2):
    grad_at(k, first)
    opt.step()
state = opt.state_dict()
buf = io.BytesIO()
np.savez(buf, **state["buffers"])
meta = json.dumps({k: v for k, v in state.items() if k != "buffers"})
buf.seek(0)
with np.load(buf, allow_pickle=False) as npz:
    restored = {**json.loads(meta), "buffers": {k: npz[k] for k in npz.files}}

second = [Tensor(p.data.copy(), requires_grad=True) for p in first]
opt2 = Adam(second, lr=0.05, weight_decay=0.01)
opt2.load_state_dict(restored)
assert opt2.step_count == 2 and sorted(restored["buffers"])[:3] == ["0.exp_avg", "0.exp_avg_sq", "0.step"]
for k in range(2, 4):
    grad_at(k, second)
    opt2.step()
assert all(np.array_equal(a.data, b.data) for a, b in zip(straight, second)), "bit-identical resume"
try:
    Adam([Tensor(np.zeros((3, 2)), requires_grad=True), second[1]]).load_state_dict(restored)
    raise AssertionError("a state for other shapes must be refused")
except ValueError:
    pass
print("state_dict round trip: OK")

# %% [markdown]
# ## 5. Learning-rate schedules
#
# A schedule makes the learning rate a function of the number of optimizer steps taken,
# $t = 0, 1, 2, \dots$: step $t$ uses $\eta(t)$. The scheduler wraps an optimizer, sets
# `optimizer.lr = η(0)` when it is created, and `scheduler.step()`, called once **after
# each** `optimizer.step()`, advances $t$ and sets the next rate.
#
# **StepLR**: divide the rate by a constant every `step_size` steps:
# $\eta(t) = \eta_0\, \gamma^{\lfloor t / \text{step\_size} \rfloor}$.
#
# **CosineWarmupLR**: the schedule of most transformer training runs. Adam's second-moment
# estimate is noisy during the first steps, so large steps then can throw the model into a
# bad region; a linear **warm-up** over $W$ steps avoids that. Then a **cosine** decay
# brings the rate smoothly down to $\eta_\min$ at step $T$ (`total_steps`), and it stays
# there:
#
# $$\eta(t) = \begin{cases}
#   \eta_0 \,\dfrac{t + 1}{W} & t < W \\[2mm]
#   \eta_\min + \tfrac12 (\eta_0 - \eta_\min)\left(1 + \cos\left(\pi\, \dfrac{t - W}{T - W}\right)\right) & W \le t < T \\[2mm]
#   \eta_\min & t \ge T
# \end{cases}$$
#
# The warm-up uses $t+1$ so that the very first step already moves ($\eta_0 / W$, not 0),
# and step $W-1$ reaches $\eta_0$; the cosine starts at $\eta_0$ at $t = W$ and reaches
# $\eta_\min$ exactly at $t = T$.

# %% nbgrader={"grade": false, "grade_id": "schedulers", "locked": false, "schema_version": 3, "solution": true}
#| export
class LRScheduler:
    """Sets `optimizer.lr` from the number of optimizer steps taken so far (`last_step`);
    call `step()` after every `optimizer.step()`. Subclasses implement `lr_at(t)`."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got {type(optimizer).__name__}")
        ### BEGIN SOLUTION
        self.optimizer = optimizer
        self.base_lr: float = optimizer.lr     # the rate when the scheduler was created
        self.last_step: int = 0                # optimizer steps taken so far
        self.optimizer.lr = self.get_lr()
        ### END SOLUTION

    def lr_at(self, t: int) -> float:
        """The learning rate of step t (t = 0 for the first step)."""
        raise NotImplementedError(f"{type(self).__name__} does not define lr_at()")

    def get_lr(self) -> float:
        """The learning rate of the next optimizer step."""
        ### BEGIN SOLUTION
        return self.lr_at(self.last_step)
        ### END SOLUTION

    def step(self) -> None:
        """Advance by one optimizer step and set the optimizer's learning rate."""
        ### BEGIN SOLUTION
        self.last_step += 1
        self.optimizer.lr = self.get_lr()
        ### END SOLUTION

    def _hyper(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: {"type", "base_lr", "last_step", "hyper" (from `_hyper()`)}."""
        ### BEGIN SOLUTION
        return {"type": type(self).__name__, "base_lr": self.base_lr,
                "last_step": self.last_step, "hyper": self._hyper()}
        ### END SOLUTION

    def check_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ValueError if `state` is not from a scheduler of this type and configuration."""
        expected = {"type": type(self).__name__, "hyper": self._hyper()}
        if not isinstance(state, dict) or {"base_lr", "last_step"} - set(state) or \
                {k: state.get(k) for k in expected} != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected the state of a {expected}, got {state!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step count and base rate, and set the optimizer's learning rate."""
        self.check_state_dict(state)
        ### BEGIN SOLUTION
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self.get_lr()
        ### END SOLUTION

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._hyper()}, base_lr={self.base_lr}, last_step={self.last_step})"


class StepLR(LRScheduler):
    """lr(t) = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _check_number(step_size, "step_size", "StepLR", 1, kind=numbers.Integral)
        self.gamma = _check_number(gamma, "gamma", "StepLR")
        ### BEGIN SOLUTION
        super().__init__(optimizer)                    # sets the rate of step 0
        ### END SOLUTION

    def lr_at(self, t: int) -> float:
        ### BEGIN SOLUTION
        return self.base_lr * self.gamma ** (t // self.step_size)
        ### END SOLUTION

    def _hyper(self) -> dict[str, Any]:
        ### BEGIN SOLUTION
        return {"step_size": self.step_size, "gamma": self.gamma}
        ### END SOLUTION


class CosineWarmupLR(LRScheduler):
    """Linear warm-up over `warmup_steps` steps, cosine decay to `min_lr` at `total_steps`,
    then `min_lr` (the formula is in the text above)."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        self.warmup_steps = _check_number(warmup_steps, "warmup_steps", "CosineWarmupLR", kind=numbers.Integral)
        self.total_steps = _check_number(total_steps, "total_steps", "CosineWarmupLR", self.warmup_steps + 1,
                                         kind=numbers.Integral)
        self.min_lr = _check_number(min_lr, "min_lr", "CosineWarmupLR", 0.0, getattr(optimizer, "lr", math.inf))
        ### BEGIN SOLUTION
        super().__init__(optimizer)                    # sets the rate of step 0
        ### END SOLUTION

    def lr_at(self, t: int) -> float:
        ### BEGIN SOLUTION
        W, T = self.warmup_steps, self.total_steps
        if t < W:
            return self.base_lr * (t + 1) / W
        if t >= T:
            return self.min_lr
        progress = (t - W) / (T - W)
        return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        ### END SOLUTION

    def _hyper(self) -> dict[str, Any]:
        ### BEGIN SOLUTION
        return {"warmup_steps": self.warmup_steps, "total_steps": self.total_steps, "min_lr": self.min_lr}
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-schedulers", "locked": true, "points": 3, "schema_version": 3, "solution": false}
w = Tensor([0.0], requires_grad=True)
opt = SGD([w], lr=1.0)
sched = StepLR(opt, step_size=2, gamma=0.5)
seen = []
for _ in range(6):
    seen.append(opt.lr)
    sched.step()
assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25], seen

opt = SGD([w], lr=1.0)
sched = CosineWarmupLR(opt, warmup_steps=4, total_steps=8, min_lr=0.1)
lrs = []
for _ in range(10):
    lrs.append(opt.lr)
    sched.step()
expected = [0.25, 0.5, 0.75, 1.0,                                        # warm-up
            1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55, 0.1 + 0.45 * (1 + math.cos(3 * math.pi / 4)),
            0.1, 0.1]                                                    # after total_steps
assert np.allclose(lrs, expected), lrs
print("schedules: OK")

# %% [markdown]
# ## 6. Gradient clipping
#
# One unlucky batch (or a long sequence through an RNN) can produce a gradient a thousand
# times larger than usual, and one step along it can destroy the model. **Clipping by
# global norm** treats all gradients of the model as one long vector
# $G = (g_1, \dots, g_n)$ with norm $\lVert G\rVert = \sqrt{\sum_i \lVert g_i\rVert^2}$, and
# when it exceeds `max_norm` scales *all* of them by the same factor
# $\text{max\_norm} / \lVert G\rVert$. The direction of the update is kept; only its length
# is limited. (Clipping each gradient separately would change the direction.)
#
# This is the one place where gradients are modified in place, on purpose: it runs between
# `backward()` and `step()`. It returns the norm *before* clipping, a useful number to
# log: a norm that grows steadily is an early warning of divergence. A norm that is not
# finite is returned without touching the gradients, so the caller can stop.

# %% nbgrader={"grade": false, "grade_id": "clip-grad-norm", "locked": false, "schema_version": 3, "solution": true}
#| export
def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most `max_norm`
    (> 0); tensors without `.grad` are ignored. Returns the norm before clipping (inf or
    nan leaves the gradients unchanged)."""
    if _check_number(max_norm, "max_norm", "clip_grad_norm") == 0:
        raise ValueError("clip_grad_norm: max_norm must be > 0")
    ### BEGIN SOLUTION
    grads = [p.grad.data for p in params if p.grad is not None]
    total = 0.0
    for g in grads:
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    norm = math.sqrt(total)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads:
            g *= scale
    return norm
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-clip", "locked": true, "points": 2, "schema_version": 3, "solution": false}
a = Tensor([0.0, 0.0], requires_grad=True)
b = Tensor([0.0], requires_grad=True)
a.grad, b.grad = Tensor([3.0, 0.0]), Tensor([4.0])
norm = clip_grad_norm([a, b], max_norm=1.0)
assert abs(norm - 5.0) < 1e-6, "the norm before clipping"
assert np.allclose(a.grad.data, [0.6, 0.0], atol=1e-6) and np.allclose(b.grad.data, [0.8], atol=1e-6)
assert abs(clip_grad_norm([a, b], max_norm=10.0) - 1.0) < 1e-5
assert np.allclose(b.grad.data, [0.8], atol=1e-6), "below max_norm nothing changes"
print("clip_grad_norm: OK")

# %% [markdown]
# ## 7. Race on a valley
#
# Least squares $L(w) = \frac{1}{2N}\lVert Xw - y\rVert^2$ with badly scaled features:
# the curvature (the eigenvalues of the Hessian $X^\top X / N$) ranges from about 0.09 to
# about 97, a condition number of 1000. Plain SGD must use a learning rate below
# $2/97$ for the steep direction, and then crawls along the flat one. Momentum
# accumulates speed along the flat direction; Adam rescales each coordinate. Same number
# of steps for all four.

# %%
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 4)) * np.array([10.0, 3.0, 1.0, 0.3])     # badly scaled features
w_true = np.array([0.5, -1.0, 2.0, 3.0])
y = X @ w_true
w_star = np.linalg.lstsq(X, y, rcond=None)[0]

def race(make_opt, steps=300):
    w = Tensor(np.zeros(4), dtype=np.float64, requires_grad=True)
    opt = make_opt([w])
    Xt, yt = Tensor(X, dtype=np.float64), Tensor(y, dtype=np.float64)
    for _ in range(steps):
        loss = ((Xt @ w - yt) ** 2).mean() * 0.5
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item(), np.abs(w.data - w_star).max()

for name, make in [("SGD lr=0.01", lambda ps: SGD(ps, lr=0.01)),
                   ("SGD momentum 0.9", lambda ps: SGD(ps, lr=0.01, momentum=0.9)),
                   ("SGD Nesterov 0.9", lambda ps: SGD(ps, lr=0.01, momentum=0.9, nesterov=True)),
                   ("Adam lr=0.1", lambda ps: Adam(ps, lr=0.1))]:
    loss, err = race(make)
    print(f"{name:18s} loss after 300 steps {loss:10.3e}   max |w - w*| {err:.2e}")

# %% [markdown]
# ## Systems thinking
#
# 1. **Memory.** For a model with $N$ float32 parameters, count the bytes of parameters,
#    gradients, and optimizer state for SGD, SGD with momentum, and Adam. For TinyGPT
#    with 10M parameters, how many MiB is that?
# 2. **Temporaries.** Count the temporary arrays of the size of the parameter that one
#    call of `Adam._update` allocates (every `*`, `+`, `/`, `**` and `np.sqrt` makes one).
#    At ~10 GB/s of memory bandwidth, how long does an Adam step over 100M float32
#    parameters take, and how does it compare with plain SGD's step?
# 3. **Fusion.** Module 13's `FusedAdamW` computes the same step with `np.multiply(...,
#    out=...)` into preallocated scratch arrays. Time both on TinyGPT's parameters. Why do
#    real frameworks fuse the whole update into one kernel?
# 4. **Numerics.** In float32, what happens to `v` when gradients are around 1e-20? Why
#    is `eps` added *outside* the square root, and what is the effective step when
#    $\sqrt{\hat v} \ll \varepsilon$?
# 5. **Schedules and resume.** A scheduler is a pure function of the step count. Why does
#    that make an interrupted run resumable from just two numbers (`base_lr`, `last_step`),
#    and what would break if the schedule depended on the wall clock or on the loss?
