"""Tests for module 04 (losses): MSELoss, CrossEntropyLoss, BinaryCrossEntropyLoss.

The end-to-end gradient tests at the bottom need module 05 (tinytorch.core.autograd).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.tensor import Tensor
from tinytorch.core.layers import Module
from tinytorch.core.losses import BinaryCrossEntropyLoss, CrossEntropyLoss, MSELoss

RNG = np.random.default_rng(42)


def np_log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def np_ce(z, t):
    return -np_log_softmax(z)[np.arange(len(t)), t]


def np_bce(x, y):
    """-y log(sigmoid(x)) - (1-y) log(1-sigmoid(x)) = log(1 + e^x) - x y, via numpy's logaddexp."""
    return np.logaddexp(0, x) - x * y


def test_reference_bce_agrees_with_the_textbook_formula():
    x, y = np.linspace(-8, 8, 33), np.linspace(0, 1, 33)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(np_bce(x, y), -(y * np.log(s) + (1 - y) * np.log(1 - s)), rtol=1e-9)


# ---- general ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MSELoss, CrossEntropyLoss, BinaryCrossEntropyLoss])
def test_losses_are_parameter_free_modules(cls):
    loss = cls()
    assert isinstance(loss, Module) and loss.parameters() == [] and loss.num_parameters() == 0
    assert repr(loss).startswith(cls.__name__ + "(") and "reduction='mean'" in repr(loss)


@pytest.mark.parametrize("cls", [MSELoss, CrossEntropyLoss, BinaryCrossEntropyLoss])
def test_unknown_reduction_is_refused(cls):
    with pytest.raises(ValueError, match="reduction.*'avg'"):
        cls(reduction="avg")


# ---- MSE --------------------------------------------------------------------------------
def test_mse_values_and_reductions():
    p, t = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    sq = (p - t) ** 2
    P, T = Tensor(p, dtype=np.float64), Tensor(t, dtype=np.float64)
    assert MSELoss()(P, T).shape == ()
    np.testing.assert_allclose(MSELoss()(P, T).item(), sq.mean(), rtol=1e-12)
    np.testing.assert_allclose(MSELoss("sum")(P, T).item(), sq.sum(), rtol=1e-12)
    np.testing.assert_allclose(MSELoss("none")(P, T).data, sq, rtol=1e-12)


def test_mse_accepts_arrays_and_keeps_float32():
    out = MSELoss()(Tensor([1.0, 2.0]), np.array([0.0, 0.0]))
    assert out.dtype == np.float32 and np.isclose(out.item(), 2.5)
    assert np.isclose(MSELoss()(Tensor([1.0, 2.0]), [1.0, 4.0]).item(), 2.0)


def test_mse_refuses_broadcasting_and_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(8, 1\).*\(8,\)"):
        MSELoss()(Tensor(np.zeros((8, 1))), Tensor(np.zeros(8)))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 1000))
def test_mse_is_zero_for_equal_inputs_and_positive_otherwise(shape, seed):
    x = np.random.default_rng(seed).normal(size=shape)
    assert MSELoss()(Tensor(x), Tensor(x)).item() == 0
    assert MSELoss()(Tensor(x), Tensor(x + 1)).item() == pytest.approx(1.0, rel=1e-5)


# ---- cross-entropy: values ----------------------------------------------------------------
def test_cross_entropy_matches_numpy():
    z, t = RNG.normal(size=(8, 5)), RNG.integers(0, 5, size=8)
    ref = np_ce(z, t)
    Z = Tensor(z, dtype=np.float64)
    out = CrossEntropyLoss()(Z, t)
    assert out.shape == () and out.dtype == np.float64
    np.testing.assert_allclose(out.item(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(CrossEntropyLoss(reduction="sum")(Z, t).item(), ref.sum(), rtol=1e-12)
    np.testing.assert_allclose(CrossEntropyLoss(reduction="none")(Z, t).data, ref, rtol=1e-12)


def test_cross_entropy_float32_stays_float32():
    z, t = RNG.normal(size=(4, 3)).astype(np.float32), [0, 1, 2, 0]
    out = CrossEntropyLoss()(Tensor(z), t)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.item(), np_ce(z.astype(np.float64), np.array(t)).mean(), rtol=1e-5)


@pytest.mark.parametrize("make", [
    lambda t: t, lambda t: t.tolist(), lambda t: Tensor(t), lambda t: Tensor(t.astype(np.float32)),
    lambda t: t.astype(np.int32), lambda t: t.astype(np.uint8)],
    ids=["ndarray", "list", "int-tensor", "float-tensor-of-integers", "int32", "uint8"])
def test_cross_entropy_target_types(make):
    z, t = RNG.normal(size=(6, 4)), np.array([0, 3, 2, 1, 1, 0])
    np.testing.assert_allclose(CrossEntropyLoss()(Tensor(z, dtype=np.float64), make(t)).item(),
                               np_ce(z, t).mean(), rtol=1e-12)


def test_cross_entropy_sequence_logits_are_flattened():
    z, t = RNG.normal(size=(2, 3, 4, 7)), RNG.integers(0, 7, size=(2, 3, 4))
    ref = np_ce(z.reshape(-1, 7), t.reshape(-1))
    Z = Tensor(z, dtype=np.float64)
    np.testing.assert_allclose(CrossEntropyLoss()(Z, t).item(), ref.mean(), rtol=1e-12)
    none = CrossEntropyLoss(reduction="none")(Z, t)
    assert none.shape == (2, 3, 4)
    np.testing.assert_allclose(none.data.reshape(-1), ref, rtol=1e-12)


def test_cross_entropy_single_example():
    z = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(CrossEntropyLoss()(Tensor(z, dtype=np.float64), 1).item(),
                               np_ce(z[None], np.array([1]))[0], rtol=1e-12)


def test_cross_entropy_of_uniform_logits_is_log_c():
    assert np.isclose(CrossEntropyLoss()(Tensor(np.zeros((5, 10))), [0, 1, 2, 3, 9]).item(), np.log(10))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 10_000))
def test_cross_entropy_random_shapes(n, c, seed):
    rng = np.random.default_rng(seed)
    z, t = rng.normal(scale=5, size=(n, c)), rng.integers(0, c, size=n)
    out = CrossEntropyLoss()(Tensor(z, dtype=np.float64), t).item()
    assert out >= 0
    np.testing.assert_allclose(out, np_ce(z, t).mean(), rtol=1e-10, atol=1e-12)


# ---- cross-entropy: ignore_index ----------------------------------------------------------
def test_ignore_index_mean_over_remaining_targets():
    z, t = RNG.normal(size=(6, 4)), np.array([0, -100, 2, -100, 3, 1])
    keep = t != -100
    ref = np_ce(z[keep], t[keep])
    loss = CrossEntropyLoss(ignore_index=-100)
    Z = Tensor(z, dtype=np.float64)
    np.testing.assert_allclose(loss(Z, t).item(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(CrossEntropyLoss(ignore_index=-100, reduction="sum")(Z, t).item(),
                               ref.sum(), rtol=1e-12)
    none = CrossEntropyLoss(ignore_index=-100, reduction="none")(Z, t).data
    assert (none[~keep] == 0).all()
    np.testing.assert_allclose(none[keep], ref, rtol=1e-12)


def test_ignore_index_can_be_a_valid_class_id():
    z, t = RNG.normal(size=(4, 3)), np.array([0, 1, 2, 0])
    keep = t != 0
    np.testing.assert_allclose(CrossEntropyLoss(ignore_index=0)(Tensor(z, dtype=np.float64), t).item(),
                               np_ce(z[keep], t[keep]).mean(), rtol=1e-12)


def test_all_targets_ignored_gives_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = CrossEntropyLoss(ignore_index=-1)(Tensor(RNG.normal(size=(3, 4))), [-1, -1, -1])
    assert out.item() == 0.0


# ---- cross-entropy: stability and errors --------------------------------------------------
def test_cross_entropy_stable_at_huge_logits():
    z = Tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0], [0.0, 0.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = CrossEntropyLoss(reduction="none")(z, [0, 0, 1])
    np.testing.assert_allclose(out.data, [0.0, 2000.0, 1000.0])


@pytest.mark.parametrize("targets, message", [
    ([0, 1, 5], r"\[0, 4\).*\[5\]"),
    ([0, -1, 2], r"\[-1\]"),
    ([7, 9, 7], r"\[7, 9\]"),
])
def test_cross_entropy_targets_out_of_range(targets, message):
    with pytest.raises(ValueError, match=message):
        CrossEntropyLoss()(Tensor(np.zeros((3, 4))), targets)


def test_out_of_range_check_skips_ignored_targets():
    with pytest.raises(ValueError, match=r"\[4\]"):
        CrossEntropyLoss(ignore_index=-100)(Tensor(np.zeros((3, 4))), [-100, 4, 0])


@pytest.mark.parametrize("targets", [[0, 1], [[0], [1], [2]], np.zeros((3, 4), dtype=int)])
def test_cross_entropy_target_shape_mismatch_names_both_shapes(targets):
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3,\)"):
        CrossEntropyLoss()(Tensor(np.zeros((3, 4))), targets)


@pytest.mark.parametrize("targets, dtype", [
    (np.array([0.5, 1.0, 2.0]), "float64"), (Tensor([0.0, 1.5, 2.0]), "float32"),
    (np.array([True, False, True]), "bool"), (np.array([0.0, np.nan, 1.0]), "float64")])
def test_cross_entropy_non_integer_targets_name_the_dtype(targets, dtype):
    with pytest.raises(TypeError, match=dtype):
        CrossEntropyLoss()(Tensor(np.zeros((3, 4))), targets)


# ---- binary cross-entropy -----------------------------------------------------------------
def test_bce_matches_numpy():
    x, y = RNG.normal(scale=3, size=(5, 4)), RNG.random(size=(5, 4))
    X, Y = Tensor(x, dtype=np.float64), Tensor(y, dtype=np.float64)
    ref = np_bce(x, y)
    np.testing.assert_allclose(BinaryCrossEntropyLoss()(X, Y).item(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(BinaryCrossEntropyLoss("sum")(X, Y).item(), ref.sum(), rtol=1e-12)
    np.testing.assert_allclose(BinaryCrossEntropyLoss("none")(X, Y).data, ref, rtol=1e-10)


def test_bce_float32_and_array_targets():
    out = BinaryCrossEntropyLoss()(Tensor([0.0, 2.0]), np.array([1.0, 0.0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.item(), np_bce(np.array([0.0, 2.0]), np.array([1.0, 0.0])).mean(), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_stable_at_huge_logits(dtype):
    x = Tensor([1000.0, -1000.0, 1000.0, -1000.0, 0.0], dtype=dtype)
    y = Tensor([1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = BinaryCrossEntropyLoss("none")(x, y)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.data, [0.0, 0.0, 1000.0, 1000.0, np.log(2)], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=1, max_size=10), st.integers(0, 1000))
def test_bce_random_values(xs, seed):
    x = np.array(xs)
    y = np.random.default_rng(seed).random(len(xs))
    out = BinaryCrossEntropyLoss("none")(Tensor(x, dtype=np.float64), Tensor(y, dtype=np.float64)).data
    np.testing.assert_allclose(out, np_bce(x, y), rtol=1e-7, atol=1e-12)


def test_bce_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        BinaryCrossEntropyLoss()(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_bce_targets_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BinaryCrossEntropyLoss()(Tensor(np.zeros(3)), Tensor([0.0, bad, 1.0]))


# ---- end-to-end gradients (need module 05: tinytorch.core.autograd) -----------------------
def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    import tinytorch.core.autograd  # noqa: F401  (registers the backward rules)

    z, t = RNG.normal(size=(5, 4)), np.array([3, 0, 0, 2, 1])
    Z = Tensor(z, dtype=np.float64, requires_grad=True)
    CrossEntropyLoss()(Z, t).backward()
    s = np.exp(np_log_softmax(z))
    np.testing.assert_allclose(Z.grad.data, (s - np.eye(4)[t]) / 5, rtol=1e-10, atol=1e-14)


def test_cross_entropy_gradient_with_ignore_index_and_float32():
    import tinytorch.core.autograd  # noqa: F401

    z, t = RNG.normal(size=(4, 3)).astype(np.float32), np.array([1, -100, 2, -100])
    Z = Tensor(z, requires_grad=True)
    CrossEntropyLoss(ignore_index=-100)(Z, t).backward()
    assert Z.grad.dtype == np.float32
    s = np.exp(np_log_softmax(z.astype(np.float64)))
    expected = np.zeros((4, 3))
    expected[[0, 2]] = (s[[0, 2]] - np.eye(3)[[1, 2]]) / 2
    np.testing.assert_allclose(Z.grad.data, expected, rtol=1e-5, atol=1e-7)


def test_all_ignored_gradient_is_zero():
    import tinytorch.core.autograd  # noqa: F401

    Z = Tensor(RNG.normal(size=(2, 3)), requires_grad=True)
    CrossEntropyLoss(ignore_index=-1)(Z, [-1, -1]).backward()
    assert (Z.grad.data == 0).all()


def test_mse_gradient():
    import tinytorch.core.autograd  # noqa: F401

    p, t = RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2))
    P = Tensor(p, dtype=np.float64, requires_grad=True)
    MSELoss()(P, Tensor(t, dtype=np.float64)).backward()
    np.testing.assert_allclose(P.grad.data, 2 * (p - t) / 6, rtol=1e-12)


def test_bce_gradient_is_sigmoid_minus_target_even_at_zero_and_huge_logits():
    import tinytorch.core.autograd  # noqa: F401

    x = np.array([0.0, 0.0, 1000.0, -1000.0, 1000.0, 2.5, -1.0])
    y = np.array([1.0, 0.3, 1.0, 0.0, 0.0, 0.0, 1.0])
    X = Tensor(x, dtype=np.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BinaryCrossEntropyLoss("sum")(X, Tensor(y, dtype=np.float64)).backward()
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    np.testing.assert_allclose(X.grad.data, sig - y, rtol=1e-12, atol=1e-15)
