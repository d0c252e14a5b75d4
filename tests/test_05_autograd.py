"""Module 05 (autograd): engine semantics, accumulation, no_grad, detach, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.autograd import (
    AutogradError, backward, enable_grad, is_grad_enabled, no_grad, topological_order, unbroadcast)
from tinytorch.core.tensor import Autograd, Tensor


def test_scalar_backward_and_values():
    x = Tensor(2.0, requires_grad=True)
    y = x ** 3 + 2 * x                     # dy/dx = 3x^2 + 2 = 14
    y.backward()
    assert x.grad.item() == pytest.approx(14.0)
    assert isinstance(x.grad, Tensor) and x.grad.shape == x.shape


def test_explicit_upstream_gradient():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * 2).backward(Tensor([1.0, 0.0, -1.0]))
    assert x.grad.data.tolist() == [2.0, 0.0, -2.0]
    x.zero_grad()
    (x * 2).backward(np.array([1.0, 1.0, 1.0]))
    assert x.grad.data.tolist() == [2.0, 2.0, 2.0]


def test_backward_on_non_scalar_without_gradient_names_shape():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(AutogradError, match=r"shape \(2, 3\)"):
        (x * 2).backward()


def test_backward_gradient_with_wrong_shape():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(AutogradError, match=r"\(2,\).*\(3,\)"):
        (x * 2).backward(np.ones(2))


def test_backward_without_requires_grad():
    with pytest.raises(AutogradError, match="does not require grad"):
        (Tensor([1.0]) * 2).sum().backward()


def test_backward_without_module_05_says_which_module():
    engine = Autograd.engine
    Autograd.engine = None
    try:
        with pytest.raises(RuntimeError, match="module 05"):
            Tensor(1.0, requires_grad=True).backward()
    finally:
        Autograd.engine = engine


def test_gradients_accumulate_across_calls_until_zero_grad():
    x = Tensor([1.0, -1.0], requires_grad=True)
    for expected in (3.0, 6.0, 9.0):
        (x * 3).sum().backward()
        assert x.grad.data.tolist() == [expected, expected]
    x.zero_grad()
    assert x.grad is None


def test_zero_dimensional_leaves_accumulate():
    x = Tensor(3.0, requires_grad=True)
    (x * x).backward()
    (x * x).backward()
    assert x.grad.item() == 12.0 and isinstance(x.grad.data, np.ndarray)
    assert isinstance((x * x).data, np.ndarray), "0-d results are arrays, not numpy scalars"


def test_reused_node_accumulates():
    x = Tensor(3.0, requires_grad=True)
    h = x * 2                             # h used twice
    (h * h + h).backward()               # d/dx (4x^2 + 2x) = 8x + 2 = 26
    assert x.grad.item() == pytest.approx(26.0)


def test_diamond_graph():
    x = Tensor(1.5, requires_grad=True)
    a, b = x.exp(), x * x
    (a * b).backward()                    # d/dx e^x x^2 = e^x (x^2 + 2x)
    assert x.grad.item() == pytest.approx(np.exp(1.5) * (1.5 ** 2 + 3), rel=1e-6)


def test_deep_chain_has_no_recursion_limit():
    x = Tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y + 1e-4 * y
    y.backward()
    assert x.grad.item() == pytest.approx((1 + 1e-4) ** 20000, rel=1e-9)


def test_topological_order_puts_inputs_first():
    x = Tensor(1.0, requires_grad=True)
    a = x * 2
    b = a + x
    c = b * a
    order = topological_order(c)
    pos = {id(n): i for i, n in enumerate(order)}
    assert pos[id(x)] < pos[id(a)] < pos[id(b)] < pos[id(c)]
    assert len(order) == 4


def test_only_leaves_get_grad_and_constants_get_none():
    w = Tensor([1.0, 2.0], requires_grad=True)
    c = Tensor([3.0, 4.0])
    h = w * c
    h.sum().backward()
    assert w.grad.data.tolist() == [3.0, 4.0]
    assert c.grad is None and h.grad is None


def test_leaf_grads_are_writable_and_not_aliased():
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (x + y).sum().backward()              # Add hands the same array to both inputs
    assert x.grad.data is not y.grad.data
    x.grad.data *= 10                      # optimizers update grads in place
    assert y.grad.data.tolist() == [1.0, 1.0, 1.0]
    s = Tensor(np.ones((2, 2)), requires_grad=True)
    s.sum().backward()                     # sum's rule returns a read-only broadcast view
    s.grad.data += 1
    assert s.grad.data.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_user_gradient_is_not_aliased():
    x = Tensor(np.ones(2), requires_grad=True)
    upstream = np.array([5.0, 5.0], dtype=np.float32)
    x.backward(upstream)
    x.grad.data[0] = 0
    assert upstream.tolist() == [5.0, 5.0]


def test_broadcast_inputs_get_their_own_shape():
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    b = Tensor(np.ones(4), requires_grad=True)
    col = Tensor(np.ones((3, 1)), requires_grad=True)
    (w * col + b).sum().backward()
    assert b.grad.shape == (4,) and b.grad.data.tolist() == [3.0] * 4
    assert col.grad.shape == (3, 1) and col.grad.data.ravel().tolist() == [4.0] * 3


def test_grad_dtype_follows_the_leaf():
    x = Tensor([1.0, 2.0], requires_grad=True)                       # float32
    y = x.astype(np.float64) * Tensor([2.0, 2.0], dtype=np.float64)
    y.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.data.tolist() == [2.0, 2.0]


def test_no_grad_context_and_decorator():
    x = Tensor([1.0], requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2
        with enable_grad():
            z = x * 2
    assert is_grad_enabled()
    assert not y.requires_grad and y._ctx is None and z.requires_grad

    @no_grad()
    def predict(t):
        return t * 3
    assert not predict(x).requires_grad and is_grad_enabled()


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_detach_stops_gradients():
    x = Tensor(2.0, requires_grad=True)
    y = x * x.detach()                     # treat the second factor as a constant
    y.backward()
    assert x.grad.item() == 2.0
    assert not x.detach().requires_grad and x.detach().data is x.data


def test_negative_base_with_constant_exponent_computes_no_log():
    x = Tensor([-2.0, -3.0], requires_grad=True)
    with np.errstate(all="raise"):         # log of a negative number would raise here
        (x ** 2).sum().backward()
    assert x.grad.data.tolist() == [-4.0, -6.0]


def test_gradient_only_for_the_exponent_when_the_base_is_constant():
    x = Tensor([1.0, 2.0], requires_grad=True)
    base = Tensor([2.0, 3.0])
    (base ** x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2 * np.log(2), 9 * np.log(3)], rtol=1e-6)


def test_backward_function_is_the_engine():
    x = Tensor(4.0, requires_grad=True)
    backward(x * x)
    assert x.grad.item() == 8.0


def test_max_ties_share_the_gradient_deterministically():
    x = Tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    assert x.grad.data.tolist() == [0.0, 0.5, 0.5]


def test_getitem_repeated_indices_accumulate():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    assert x.grad.data.tolist() == [3.0, 0.0, 1.0]


def test_unbroadcast_rejects_impossible_shapes():
    with pytest.raises(AutogradError):
        unbroadcast(np.ones((2, 3)), (4,))


@settings(max_examples=60, deadline=None)
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4))
def test_broadcast_gradient_counts_copies(shapes):
    """d/da sum(a + b) is, for every element of a, the number of times it was copied."""
    sa, sb = shapes.input_shapes
    a = Tensor(np.zeros(sa), dtype=np.float64, requires_grad=True)
    b = Tensor(np.zeros(sb), dtype=np.float64, requires_grad=True)
    (a + b).sum().backward()
    out_size = int(np.prod(shapes.result_shape))
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_array_equal(a.grad.data, np.full(sa, out_size / max(int(np.prod(sa)), 1)))
    np.testing.assert_array_equal(b.grad.data, np.full(sb, out_size / max(int(np.prod(sb)), 1)))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                  elements=st.floats(-3, 3)))
def test_mul_gradient_property(arr):
    """d/dx sum(x * c) == c for any shape."""
    x = Tensor(arr, dtype=np.float64, requires_grad=True)
    c = np.random.default_rng(0).standard_normal(arr.shape)
    (x * Tensor(c, dtype=np.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.data, c)


def test_views_of_one_gradient_are_not_shared_between_leaves():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = Tensor(np.ones((3, 2)), requires_grad=True)
    (x.reshape(6) + y.T.reshape(6)).sum().backward()   # both leaves get views of one array
    x.grad.data[0, 0] = 100.0
    assert y.grad.data[0, 0] == 1.0
    second = Tensor(np.ones(2), requires_grad=True)
    (second + second.detach()).sum().backward()
    (second + second.detach()).sum().backward()        # accumulates in place, no aliasing
    assert second.grad.data.tolist() == [2.0, 2.0]
