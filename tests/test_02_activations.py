"""Tests for module 02 (activations): values, dtypes, stability, softmax properties, layers.

The end-to-end gradient tests at the bottom need module 05 (tinytorch.core.autograd).
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.tensor import Tensor
from tinytorch.core.activations import (
    Module,
    GELU, Activation, GELUFunction, LogSoftmax, LogSoftmaxFunction, ReLU, ReLUFunction, Sigmoid,
    SigmoidFunction, Softmax, SoftmaxFunction, Tanh, TanhFunction, gelu, log_softmax, relu,
    sigmoid, softmax, tanh)

RNG = np.random.default_rng(1234)


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ELEMENTWISE = [
    (relu, lambda x: np.maximum(x, 0)),
    (sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    (tanh, np.tanh),
    (gelu, np_gelu),
]


# ---- values -----------------------------------------------------------------------------
@pytest.mark.parametrize("fn, ref", ELEMENTWISE, ids=["relu", "sigmoid", "tanh", "gelu"])
def test_elementwise_values_float64(fn, ref):
    x = RNG.normal(scale=3, size=(4, 5))
    out = fn(Tensor(x, dtype=np.float64))
    assert out.shape == x.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, ref(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn, ref", ELEMENTWISE, ids=["relu", "sigmoid", "tanh", "gelu"])
def test_elementwise_values_float32_stay_float32(fn, ref):
    x = RNG.normal(scale=3, size=(3, 2, 4)).astype(np.float32)
    out = fn(Tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, ref(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [relu, sigmoid, tanh, gelu, softmax, log_softmax])
def test_integer_input_becomes_float32(fn):
    out = fn(Tensor(np.array([[-2, 0, 3]])))
    assert out.dtype == np.float32


def test_relu_exact_values_and_nan_propagates():
    out = relu(Tensor([-2.0, -0.0, 0.0, 1e-30, 5.0, np.nan]))
    assert np.array_equal(out.data[:5], [0, 0, 0, np.float32(1e-30), 5])
    assert np.isnan(out.data[5]), "a NaN input must not be hidden as 0"


def test_sigmoid_symmetry_and_tanh_identity():
    x = np.linspace(-20, 20, 101)
    s = sigmoid(Tensor(x, dtype=np.float64)).data
    np.testing.assert_allclose(s + sigmoid(Tensor(-x, dtype=np.float64)).data, 1, atol=1e-15)
    np.testing.assert_allclose(tanh(Tensor(x, dtype=np.float64)).data,
                               2 * sigmoid(Tensor(2 * x, dtype=np.float64)).data - 1, atol=1e-12)
    assert sigmoid(Tensor(0.0)).item() == 0.5


def test_gelu_close_to_exact_gelu():
    x = np.linspace(-6, 6, 241)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(gelu(Tensor(x, dtype=np.float64)).data, exact, atol=1e-3)
    assert gelu(Tensor([-0.75])).item() < 0, "GELU dips below zero for small negative inputs"


def test_softmax_and_log_softmax_values_every_axis():
    x = RNG.normal(size=(2, 3, 4, 5))
    for axis in range(-4, 4):
        ref = np_softmax(x, axis)
        np.testing.assert_allclose(softmax(Tensor(x, dtype=np.float64), axis=axis).data, ref, rtol=1e-12)
        np.testing.assert_allclose(log_softmax(Tensor(x, dtype=np.float64), axis=axis).data,
                                   np.log(ref), rtol=1e-10, atol=1e-12)


def test_softmax_default_axis_is_last():
    x = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(softmax(Tensor(x)).data, np_softmax(x, -1), rtol=1e-5)
    np.testing.assert_allclose(Softmax()(Tensor(x)).data, np_softmax(x, -1), rtol=1e-5)
    np.testing.assert_allclose(Softmax(axis=0)(Tensor(x)).data, np_softmax(x, 0), rtol=1e-5)


def test_softmax_with_minus_inf_entries():
    x = Tensor([[0.0, -np.inf, 0.0]])
    np.testing.assert_allclose(softmax(x).data, [[0.5, 0.0, 0.5]])


# ---- stability --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_warnings_at_huge_inputs(dtype):
    x = Tensor(np.array([[-1000.0, 0.0, 1000.0], [1000.0, 1000.0, -1000.0]]), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = {f.__name__: f(x).data for f in (relu, sigmoid, tanh, gelu, softmax, log_softmax)}
    for name, out in outs.items():
        assert np.isfinite(out).all(), name
        assert out.dtype == dtype, name
    np.testing.assert_allclose(outs["sigmoid"][0], [0, 0.5, 1])
    np.testing.assert_allclose(outs["tanh"][0], [-1, 0, 1])
    np.testing.assert_allclose(outs["gelu"][0], [0, 0, 1000])
    np.testing.assert_allclose(outs["softmax"], [[0, 0, 1], [0.5, 0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(outs["log_softmax"], [[-2000, -1000, 0], [-np.log(2), -np.log(2), -2000 - np.log(2)]],
                               rtol=1e-6)


def test_gelu_no_warning_when_cube_overflows():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = gelu(Tensor([1e30, -1e30]))
    np.testing.assert_allclose(out.data, [1e30, 0.0])


# ---- property tests ---------------------------------------------------------------------
def arrays_and_axis(max_dims=4):
    return hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1, max_side=5).flatmap(
        lambda shape: st.tuples(
            hnp.arrays(np.float64, shape, elements=st.floats(-60, 60, allow_nan=False)),
            st.integers(-len(shape), len(shape) - 1)))


@settings(max_examples=60, deadline=None)
@given(arrays_and_axis())
def test_softmax_sums_to_one_on_random_axes(data):
    x, axis = data
    p = softmax(Tensor(x, dtype=np.float64), axis=axis).data
    assert p.shape == x.shape
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays_and_axis())
def test_log_softmax_is_log_of_softmax(data):
    x, axis = data
    lp = log_softmax(Tensor(x, dtype=np.float64), axis=axis).data
    p = softmax(Tensor(x, dtype=np.float64), axis=axis).data
    assert (lp <= 1e-12).all()
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(lp, np.log(np_softmax(x, axis)), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(arrays_and_axis(max_dims=3), st.floats(-500, 500))
def test_softmax_invariant_to_shift(data, c):
    x, axis = data
    a = softmax(Tensor(x, dtype=np.float64), axis=axis).data
    b = softmax(Tensor(x + c, dtype=np.float64), axis=axis).data
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6),
                  elements=st.floats(-1e4, 1e4, width=32)))
def test_bounded_activations_stay_in_range(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(Tensor(x)).data
        t = tanh(Tensor(x)).data
        g = gelu(Tensor(x)).data
    assert ((s >= 0) & (s <= 1)).all() and ((t >= -1) & (t <= 1)).all()
    assert (g >= -0.2).all() and np.isfinite(g).all()
    assert (relu(Tensor(x)).data >= 0).all()


# ---- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [softmax, log_softmax])
def test_axis_out_of_range_names_shape(fn):
    with pytest.raises(ValueError, match=r"axis 2.*\(3, 4\)"):
        fn(Tensor(np.zeros((3, 4))), axis=2)
    with pytest.raises(ValueError, match=r"axis -3"):
        fn(Tensor(np.zeros((3, 4))), axis=-3)


def test_axis_must_be_an_int():
    with pytest.raises(TypeError, match="axis"):
        softmax(Tensor(np.zeros((3, 4))), axis=(0, 1))


# ---- what forward keeps for backward (module 05 relies on these names) --------------------
def test_functions_keep_what_backward_needs():
    x = Tensor([[-1.0, 0.5, 2.0]], requires_grad=True)
    assert isinstance(relu(x)._ctx, ReLUFunction)
    assert np.array_equal(relu(x)._ctx.mask, [[False, True, True]])
    for fn, cls in [(sigmoid, SigmoidFunction), (tanh, TanhFunction)]:
        y = fn(x)
        assert isinstance(y._ctx, cls) and np.array_equal(y._ctx.out, y.data)
    g = gelu(x)
    assert isinstance(g._ctx, GELUFunction) and np.array_equal(g._ctx.x, x.data)
    for fn, cls in [(softmax, SoftmaxFunction), (log_softmax, LogSoftmaxFunction)]:
        y = fn(x, axis=-1)
        assert isinstance(y._ctx, cls) and y._ctx.axis == 1 and np.array_equal(y._ctx.out, y.data)
    assert relu(Tensor([1.0]))._ctx is None, "nothing recorded without requires_grad"


# ---- layer classes ----------------------------------------------------------------------
LAYERS = [(ReLU(), relu), (Sigmoid(), sigmoid), (Tanh(), tanh), (GELU(), gelu),
          (Softmax(), softmax), (LogSoftmax(), log_softmax)]


@pytest.mark.parametrize("layer, fn", LAYERS, ids=lambda v: type(v).__name__)
def test_layer_classes_match_functions(layer, fn):
    x = Tensor(RNG.normal(size=(2, 3, 4)))
    assert isinstance(layer, Activation) and isinstance(layer, Module)
    assert np.array_equal(layer(x).data, fn(x).data)
    assert np.array_equal(layer.forward(x).data, fn(x).data)
    assert layer.parameters() == [] and list(layer.named_parameters()) == []


def test_layer_reprs_and_modes():
    assert [repr(layer) for layer, _ in LAYERS] == [
        "ReLU()", "Sigmoid()", "Tanh()", "GELU()", "Softmax(axis=-1)", "LogSoftmax(axis=-1)"]
    assert repr(LogSoftmax(axis=1)) == "LogSoftmax(axis=1)"
    r = ReLU()
    assert r.training and r.eval() is r and not r.training and r.train().training


def test_functional_forms_accept_arrays():
    np.testing.assert_allclose(relu(np.array([-1.0, 2.0])).data, [0, 2])
    np.testing.assert_allclose(softmax([[0.0, 0.0]]).data, [[0.5, 0.5]])


# ---- end-to-end gradients (need module 05: tinytorch.core.autograd) -----------------------
def test_gradients_flow_through_activations():
    import tinytorch.core.autograd  # noqa: F401  (registers the backward rules)

    x_np = np.array([[-1.5, -0.2, 0.3, 2.0]])
    for fn, deriv in [
        (relu, lambda x: (x > 0).astype(float)),
        (sigmoid, lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
        (tanh, lambda x: 1 - np.tanh(x) ** 2),
    ]:
        x = Tensor(x_np, dtype=np.float64, requires_grad=True)
        fn(x).sum().backward()
        np.testing.assert_allclose(x.grad.data, deriv(x_np), rtol=1e-10)


def test_gradient_of_log_softmax_pick_is_onehot_minus_softmax():
    import tinytorch.core.autograd  # noqa: F401

    z = RNG.normal(size=(3, 5))
    x = Tensor(z, dtype=np.float64, requires_grad=True)
    onehot = np.eye(5)[[4, 0, 2]]
    (log_softmax(x) * Tensor(onehot, dtype=np.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.data, onehot - np_softmax(z, -1), rtol=1e-10, atol=1e-12)


def test_gelu_gradient_matches_finite_differences():
    import tinytorch.core.autograd  # noqa: F401

    z = np.linspace(-3, 3, 13)
    x = Tensor(z, dtype=np.float64, requires_grad=True)
    gelu(x).sum().backward()
    h = 1e-6
    numeric = (np_gelu(z + h) - np_gelu(z - h)) / (2 * h)
    np.testing.assert_allclose(x.grad.data, numeric, rtol=1e-6, atol=1e-8)

