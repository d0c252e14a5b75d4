"""Float64 central-difference gradient checks for every differentiable op of the framework.

Each case builds a function and its inputs; `test_gradcheck` compares backward() with
finite differences (tests/graph_helpers.py: `check_case`). Later modules keep their cases in
their own test file, in a dict named `GRADCHECK_CASES` of the same form, and run them there
with the same harness. `test_every_differentiable_op_has_a_backward_and_a_gradcheck` walks
the graphs that all cases build and fails if any Function subclass defined anywhere in
tinytorch has no case (or no backward rule), so a new op cannot land without its gradient test.
"""
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import tinytorch
from graph_helpers import all_gradcheck_cases, check_case, gradcheck_test, ops_in_cases, t64
from tinytorch.core.activations import gelu, log_softmax, relu, sigmoid, softmax, tanh
from tinytorch.core.autograd import GradcheckError
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss
from tinytorch.core.tensor import Autograd, Function, Tensor, matmul

F64 = np.float64


def dense64(n_in, n_out, bias=True, seed=0):
    return Dense(n_in, n_out, bias=bias, dtype=F64, rng=np.random.default_rng(seed))


def _dropout_case():
    x = t64(4, 5)
    return (lambda x: Dropout(0.4, rng=np.random.default_rng(3))(x)), [x]


def _dense_case():
    layer = dense64(4, 3)
    x = t64(2, 5, 4, seed=1)                          # (B, T, in): weight shared over B*T rows
    return (lambda x, w, b: layer(x)), [x, layer.weight, layer.bias]


def _mlp_case():
    net = Sequential(Flatten(), dense64(6, 5, seed=1), dense64(5, 3, seed=2))
    x = t64(4, 2, 3, seed=3)
    params = list(net.parameters())
    return (lambda x, *p: tanh(net(x))), [x, *params]


def _reused_case():
    x, y = t64(3, 4), t64(4, seed=1)

    def f(x, y):
        h = x * y                                    # h is used three times below
        return (h * h + h.exp() * x - h / (y * y + 1)).sum(axis=1)
    return f, [x, y]


# name -> () -> (function, inputs)
GRADCHECK_CASES = {
    # elementwise arithmetic with broadcasting and reflected operands
    "add_broadcast": lambda: (lambda a, b: a + b, [t64(3, 4), t64(4, seed=1)]),
    "add_both_broadcast": lambda: (lambda a, b: a + b, [t64(3, 1), t64(1, 4, seed=1)]),
    "add_scalar_shaped": lambda: (lambda a, b: a + b, [t64(2, 3, 4), t64(1, seed=1)]),
    "sub_reflected": lambda: (lambda a, b: 1.0 - a - b, [t64(2, 3), t64(2, 1, seed=1)]),
    "mul_broadcast": lambda: (lambda a, b: a * b * 3.0, [t64(2, 3, 4), t64(3, 1, seed=1)]),
    "div_broadcast": lambda: (lambda a, b: a / b + 2.0 / b, [t64(3, 4), t64(4, seed=1, positive=True)]),
    "neg": lambda: (lambda a: -a, [t64(5)]),
    "pow_scalar": lambda: (lambda a: a ** 3 + a ** 2.0, [t64(3, 4)]),
    "pow_tensor": lambda: (lambda a, b: a ** b, [t64(3, 4, positive=True), t64(4, seed=1)]),
    "rpow": lambda: (lambda a: 2.0 ** a, [t64(3)]),
    # matrix products
    "matmul_2d": lambda: (lambda a, b: a @ b, [t64(3, 4), t64(4, 5, seed=1)]),
    "matmul_batched": lambda: (lambda a, b: a @ b, [t64(2, 3, 4), t64(2, 4, 5, seed=1)]),
    "matmul_shared_weight": lambda: (lambda a, b: a @ b, [t64(2, 3, 4), t64(4, 5, seed=1)]),
    "matmul_broadcast_batch": lambda: (lambda a, b: a @ b, [t64(1, 3, 4), t64(2, 4, 5, seed=1)]),
    "matmul_4d_attention_like": lambda: (lambda q, k: q @ k.transpose(), [t64(2, 2, 3, 4), t64(2, 2, 3, 4, seed=1)]),
    "matmul_vector_left": lambda: (lambda v, a: matmul(v, a), [t64(3), t64(3, 4, seed=1)]),
    "matmul_vector_right": lambda: (lambda a, v: a @ v, [t64(3, 4), t64(4, seed=1)]),
    # reductions with axes
    "sum_all": lambda: (lambda a: a.sum(), [t64(3, 4)]),
    "sum_axis": lambda: (lambda a: a.sum(axis=1), [t64(2, 3, 4)]),
    "sum_axes_keepdims": lambda: (lambda a: a.sum(axis=(0, 2), keepdims=True), [t64(2, 3, 4)]),
    "sum_negative_axis": lambda: (lambda a: a.sum(axis=-1), [t64(2, 3, 4)]),
    "mean_axis": lambda: (lambda a: a.mean(axis=0) + a.mean(), [t64(3, 4)]),
    "mean_keepdims": lambda: (lambda a: a - a.mean(axis=-1, keepdims=True), [t64(3, 4)]),
    "max_all": lambda: (lambda a: a.max(), [t64(3, 4)]),
    "max_axis": lambda: (lambda a: a.max(axis=1), [t64(3, 4)]),
    "max_axes_keepdims": lambda: (lambda a: a.max(axis=(0, 2), keepdims=True), [t64(2, 3, 4)]),
    # elementwise math and casts
    "exp": lambda: (lambda a: a.exp(), [t64(3, 4)]),
    "log": lambda: (lambda a: a.log(), [t64(3, 4, positive=True)]),
    "sqrt": lambda: (lambda a: a.sqrt(), [t64(3, 4, positive=True)]),
    "cast": lambda: (lambda a: a.astype(np.float64) * 2.0, [t64(3)]),
    # shapes and indexing
    "reshape": lambda: (lambda a: a.reshape(4, 3) * Tensor(np.arange(12.0).reshape(4, 3)), [t64(3, 4)]),
    "permute": lambda: (lambda a: a.permute(2, 0, 1), [t64(2, 3, 4)]),
    "transpose_T": lambda: (lambda a: a.transpose(0, 2) + a.T, [t64(3, 2, 3)]),
    "getitem_slice": lambda: (lambda a: a[1:, ::2], [t64(3, 4)]),
    "getitem_int": lambda: (lambda a: a[1] * a[-1], [t64(3, 4)]),
    "getitem_repeated_index": lambda: (lambda a: a[np.array([0, 2, 0, 0])], [t64(3, 4)]),
    "getitem_tensor_pairs": lambda: (lambda a: a[Tensor(np.array([0, 1, 1])), Tensor(np.array([3, 0, 3]))], [t64(2, 4)]),
    "getitem_mask": lambda: (lambda a: a[np.array([[True, False, True], [False, True, True]])], [t64(2, 3)]),
    # a node used several times, and a diamond
    "reused_node": _reused_case,
    "square_via_self": lambda: (lambda a: a * a, [t64(4)]),
    # activations (module 02)
    "relu": lambda: (lambda a: relu(a), [t64(3, 4, away_from_zero=True)]),
    "sigmoid": lambda: (lambda a: sigmoid(a * 3.0), [t64(3, 4)]),
    "tanh": lambda: (lambda a: tanh(a), [t64(3, 4)]),
    "gelu": lambda: (lambda a: gelu(a * 2.0), [t64(3, 4)]),
    "softmax_last": lambda: (lambda a: softmax(a, axis=-1), [t64(3, 4)]),
    "softmax_axis0": lambda: (lambda a: softmax(a, axis=0), [t64(3, 4, 2)]),
    "log_softmax": lambda: (lambda a: log_softmax(a, axis=-1), [t64(3, 5)]),
    "log_softmax_axis1": lambda: (lambda a: log_softmax(a, axis=1), [t64(2, 3, 4)]),
    # layers (module 03): gradients come from composing the ops above
    "dense": _dense_case,
    "dense_no_bias": lambda: (lambda x: dense64(3, 2, bias=False)(x), [t64(4, 3)]),
    "mlp": _mlp_case,
    "dropout": _dropout_case,
    # losses (module 04)
    "mse": lambda: (lambda p, y: MSELoss()(p, y), [t64(4, 3), t64(4, 3, seed=1)]),
    "mse_sum": lambda: (lambda p: MSELoss(reduction="sum")(p, Tensor(np.ones((4, 3)), dtype=F64)), [t64(4, 3)]),
    "cross_entropy": lambda: (lambda z: CrossEntropyLoss()(z, np.array([0, 2, 1, 2])), [t64(4, 3)]),
    "cross_entropy_ignore": lambda: (
        lambda z: CrossEntropyLoss(ignore_index=-1, reduction="sum")(z, np.array([0, -1, 1, 2])), [t64(4, 3)]),
    "cross_entropy_3d": lambda: (lambda z: CrossEntropyLoss()(z, np.array([[0, 1], [2, 2]])), [t64(2, 2, 3)]),
    "bce_logits": lambda: (
        lambda z: BinaryCrossEntropyLoss()(z, Tensor(np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.3]]), dtype=F64)),
        [t64(2, 3, away_from_zero=True)]),
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


def test_gradcheck_catches_a_wrong_rule():
    """The harness must be able to fail: break Exp's rule and watch it object."""
    from tinytorch.core.tensor import Exp
    original = Autograd.rules[Exp]
    Autograd.rules[Exp] = lambda fn, g: (g * fn.out * 1.01,)
    try:
        with pytest.raises(GradcheckError, match="input 0"):
            check_case(GRADCHECK_CASES["exp"])
    finally:
        Autograd.rules[Exp] = original


def test_the_harness_refuses_cases_that_check_nothing_or_not_in_float64():
    constant = Tensor(np.ones(3), dtype=F64)
    with pytest.raises(AssertionError, match="checks nothing"):
        check_case(lambda: (lambda a: a.exp(), [constant]))
    with pytest.raises(AssertionError, match="float64"):
        check_case(lambda: (lambda a: a.exp(), [Tensor(np.ones(3, dtype=np.float32), requires_grad=True)]))


def _all_function_subclasses():
    for info in pkgutil.walk_packages(tinytorch.__path__, prefix="tinytorch."):
        importlib.import_module(info.name)
    seen, stack = set(), [Function]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return seen


def test_every_differentiable_op_has_a_backward_and_a_gradcheck():
    covered = ops_in_cases(all_gradcheck_cases(Path(__file__).parent))
    differentiable = {f for f in _all_function_subclasses() if f.differentiable}
    assert len(differentiable) >= 20, "the op registry looks empty: did the modules import?"
    no_backward = sorted(f.__name__ for f in differentiable
                         if f not in Autograd.rules and f.backward is Function.backward)
    assert not no_backward, f"differentiable ops without a backward: {no_backward}"
    untested = sorted(f"{f.__module__}.{f.__name__}" for f in differentiable - covered)
    assert not untested, f"differentiable ops without a gradient check in any GRADCHECK_CASES: {untested}"
