"""Module 01 (Tensor): construction, dtype policy, operators, reductions, shapes, errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core.tensor import (
    Tensor, arange, full, get_rng, manual_seed, ones, ones_like, rand, randn, zeros, zeros_like)

# ---------------------------------------------------------------- construction and dtypes

def test_numbers_and_lists_become_float32():
    assert Tensor(3).dtype == np.float32
    assert Tensor(2.5).item() == 2.5
    assert Tensor([[1, 2], [3, 4]]).dtype == np.float32
    assert Tensor([[1, 2], [3, 4]]).shape == (2, 2)


def test_integer_and_bool_arrays_keep_their_dtype():
    assert Tensor(np.array([1, 2, 3])).dtype == np.int64
    assert Tensor(np.array([1, 2], dtype=np.uint8)).dtype == np.uint8
    assert Tensor(np.array([True, False])).dtype == np.bool_
    assert Tensor([True, False]).dtype == np.bool_


def test_float_arrays_become_float32_unless_dtype_given():
    assert Tensor(np.zeros(3)).dtype == np.float32
    assert Tensor(np.zeros(3), dtype=np.float64).dtype == np.float64
    assert Tensor([1, 2], dtype="int32").dtype == np.int32


def test_array_memory_is_shared_like_from_numpy():
    a = np.zeros(3, dtype=np.float32)
    t = Tensor(a)
    a[0] = 5
    assert t.data[0] == 5 and t.numpy() is t.data


def test_ragged_list_is_refused_clearly():
    with pytest.raises(ValueError, match="ragged"):
        Tensor([[1, 2, 3], [4, 5]])


def test_non_numeric_data_is_refused():
    with pytest.raises(TypeError, match="numeric"):
        Tensor(["a", "b"])


def test_only_float_tensors_can_require_grad():
    with pytest.raises(TypeError, match="floating"):
        Tensor(np.array([1, 2]), requires_grad=True)
    assert Tensor([1.0], requires_grad=True).requires_grad


def test_properties_and_item():
    t = Tensor(np.arange(24).reshape(2, 3, 4))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3, 4), 3, 24, 2)
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    assert isinstance(Tensor([[7.0]]).item(), float)


def test_repr_is_helpful():
    r = repr(Tensor([1.0, 2.0], requires_grad=True))
    assert r.startswith("Tensor([1., 2.]") and "float32" in r and "requires_grad=True" in r
    big = repr(Tensor(np.zeros((100, 100))))
    assert "shape=(100, 100)" in big and len(big) < 600
    assert "grad_fn=Mul" in repr(Tensor([1.0], requires_grad=True) * 2)


def test_constructors():
    assert zeros(2, 3).shape == (2, 3) and zeros((2, 3)).data.sum() == 0
    assert ones(4).data.sum() == 4 and full((2, 2), 7.0).data.max() == 7
    assert zeros_like(ones(3)).data.sum() == 0 and ones_like(zeros(2, 2)).shape == (2, 2)
    assert arange(5).dtype == np.int64 and arange(5).data.tolist() == [0, 1, 2, 3, 4]
    assert arange(0.0, 1.0, 0.5).dtype == np.float32
    assert randn(3, 4).dtype == np.float32 and rand(3).data.min() >= 0
    assert zeros(2, requires_grad=True).requires_grad


def test_seeded_generator_is_reproducible():
    manual_seed(123)
    a, b = randn(5), rand(5)
    manual_seed(123)
    assert np.array_equal(a.data, randn(5).data) and np.array_equal(b.data, rand(5).data)
    rng = np.random.default_rng(7)
    c = randn(3, rng=rng)
    assert np.array_equal(c.data, np.random.default_rng(7).standard_normal(3).astype(np.float32))
    fresh = manual_seed(1)
    assert get_rng() is fresh, "manual_seed returns the new global generator"


# ---------------------------------------------------------------- arithmetic

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_broadcasting_arithmetic_matches_numpy(data):
    shape_a, shape_b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)).input_shapes
    a = data.draw(hnp.arrays(np.float32, shape_a, elements=st.floats(-10, 10, width=32)))
    b = data.draw(hnp.arrays(np.float32, shape_b, elements=st.floats(0.5, 10, width=32)))
    ta, tb = Tensor(a), Tensor(b)
    np.testing.assert_allclose((ta + tb).data, a + b, rtol=1e-6)
    np.testing.assert_allclose((ta - tb).data, a - b, rtol=1e-6)
    np.testing.assert_allclose((ta * tb).data, a * b, rtol=1e-6)
    np.testing.assert_allclose((ta / tb).data, a / b, rtol=1e-6)
    np.testing.assert_allclose((tb ** ta).data, b ** a, rtol=1e-5)
    np.testing.assert_allclose((-ta).data, -a)
    assert (ta + tb).dtype == np.float32


@pytest.mark.parametrize("scalar", [2, 2.5, np.float64(2.5)])
def test_scalars_and_reflected_operands_keep_float32(scalar):
    x = Tensor([1.0, 2.0])
    for result in (x + scalar, scalar + x, x - scalar, scalar - x, x * scalar, scalar * x,
                   x / scalar, scalar / x, x ** scalar, scalar ** x):
        assert result.dtype == np.float32


def test_ndarray_on_the_left_gives_a_tensor():
    x = Tensor([1.0, 2.0])
    out = np.array([1.0, 1.0]) + x
    assert isinstance(out, Tensor) and out.data.tolist() == [2.0, 3.0]


def test_integer_meets_float_gives_float():
    labels = Tensor(np.array([1, 2, 3]))
    assert (labels + 1).dtype == np.int64, "int + int number stays int"
    assert (labels * Tensor([0.5, 0.5, 0.5])).dtype == np.float32
    assert (labels * 0.5).dtype == np.float32
    assert (labels / Tensor(np.array([2, 2, 2]))).dtype == np.float32


def test_non_broadcastable_op_names_op_and_shapes():
    with pytest.raises(ValueError) as err:
        Tensor(np.ones((2, 3))) * Tensor(np.ones((4,)))
    assert "mul" in str(err.value) and "(2, 3)" in str(err.value) and "(4,)" in str(err.value)


# ---------------------------------------------------------------- matmul

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 5),
       st.sampled_from(["2d", "batched", "shared"]))
def test_matmul_matches_numpy(batch, n, k, m, kind):
    rng = np.random.default_rng(batch * 100 + n * 10 + k)
    if kind == "2d":
        a, b = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    elif kind == "batched":
        a, b = rng.standard_normal((batch, 2, n, k)), rng.standard_normal((batch, 2, k, m))
    else:
        a, b = rng.standard_normal((batch, n, k)), rng.standard_normal((k, m))
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, (a @ b).astype(np.float32), rtol=1e-4, atol=1e-5)


def test_matmul_1d_follows_numpy():
    A = np.arange(6.0).reshape(2, 3)
    v3, v2 = np.ones(3), np.ones(2)
    assert (Tensor(A) @ Tensor(v3)).shape == (2,)
    assert (Tensor(v2) @ Tensor(A)).shape == (3,)
    assert (Tensor(v3) @ Tensor(v3)).shape == ()
    np.testing.assert_allclose((Tensor(v2) @ Tensor(A)).data, v2 @ A)


def test_matmul_shape_mismatch_names_shapes():
    with pytest.raises(ValueError) as err:
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    msg = str(err.value)
    assert "matmul" in msg and "(2, 3)" in msg and "(4, 5)" in msg


def test_matmul_batch_mismatch_names_shapes():
    with pytest.raises(ValueError) as err:
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((5, 4, 2)))
    assert "(2, 3, 4)" in str(err.value) and "(5, 4, 2)" in str(err.value)


def test_matmul_of_a_scalar_is_refused():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        Tensor(2.0) @ Tensor([1.0])


# ---------------------------------------------------------------- reductions

@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=4),
                  elements=st.floats(-100, 100)), st.data(), st.booleans())
def test_reductions_match_numpy(arr, data, keepdims):
    axis = data.draw(st.one_of(st.none(), st.integers(-arr.ndim, arr.ndim - 1),
                               st.lists(st.integers(0, arr.ndim - 1), min_size=1, unique=True).map(tuple)))
    t = Tensor(arr, dtype=np.float64)
    np.testing.assert_allclose(t.sum(axis=axis, keepdims=keepdims).data, arr.sum(axis=axis, keepdims=keepdims))
    np.testing.assert_allclose(t.mean(axis=axis, keepdims=keepdims).data, arr.mean(axis=axis, keepdims=keepdims))
    np.testing.assert_allclose(t.max(axis=axis, keepdims=keepdims).data, arr.max(axis=axis, keepdims=keepdims))


def test_reduction_axis_out_of_range():
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        Tensor(np.ones((2, 2))).sum(axis=3)


def test_mean_of_integers_is_float32():
    assert Tensor(np.array([1, 2])).mean().dtype == np.float32


# ---------------------------------------------------------------- elementwise math and shapes

def test_exp_log_sqrt():
    x = np.array([0.5, 1.0, 4.0], dtype=np.float32)
    t = Tensor(x)
    np.testing.assert_allclose(t.exp().data, np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(t.log().data, np.log(x), rtol=1e-6)
    np.testing.assert_allclose(t.sqrt().data, np.sqrt(x), rtol=1e-6)


def test_reshape_permute_transpose_T():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(x)
    assert t.reshape(6, 4).shape == (6, 4) and t.reshape((4, -1)).shape == (4, 6)
    np.testing.assert_array_equal(t.permute(2, 0, 1).data, x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.permute((1, 2, 0)).data, x.transpose(1, 2, 0))
    np.testing.assert_array_equal(t.transpose().data, x.swapaxes(-1, -2))
    np.testing.assert_array_equal(t.transpose(0, 2).data, x.swapaxes(0, 2))
    np.testing.assert_array_equal(t.T.data, x.T)
    with pytest.raises(ValueError, match="permutation"):
        t.permute(0, 0, 1)
    with pytest.raises(ValueError):
        t.reshape(5, 5)


def test_indexing_and_slicing():
    x = np.arange(12.0).reshape(3, 4)
    t = Tensor(x)
    np.testing.assert_array_equal(t[1].data, x[1])
    np.testing.assert_array_equal(t[:, 1:3].data, x[:, 1:3])
    np.testing.assert_array_equal(t[..., -1].data, x[..., -1])
    np.testing.assert_array_equal(t[np.array([2, 0, 2])].data, x[[2, 0, 2]])
    np.testing.assert_array_equal(t[Tensor(np.array([0, 1])), Tensor(np.array([3, 2]))].data, x[[0, 1], [3, 2]])
    np.testing.assert_array_equal(t[t > 5].data, x[x > 5])
    with pytest.raises(IndexError, match=r"\(3, 4\)"):
        t[5]


def test_comparisons_give_boolean_tensors():
    a, b = Tensor([1.0, 2.0, 3.0]), Tensor([3.0, 2.0, 1.0])
    assert (a < b).data.tolist() == [True, False, False]
    assert (a <= b).data.tolist() == [True, True, False]
    assert (a > 2).data.tolist() == [False, False, True]
    assert (a >= 2).data.tolist() == [False, True, True]
    assert (a == b).data.tolist() == [False, True, False]
    assert (a != b).data.tolist() == [True, False, True]
    assert not (a > b).requires_grad


def test_astype():
    t = Tensor([1.7, 2.2])
    assert t.astype(np.float64).dtype == np.float64
    assert t.astype(np.int32).data.tolist() == [1, 2]


def test_tensors_are_hashable_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2


def test_bool_of_multi_element_tensor_is_ambiguous():
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]))
    assert bool(Tensor([1.0]))


@pytest.mark.parametrize("make", [lambda d: zeros(2, dtype=d), lambda d: ones(2, dtype=d),
                                  lambda d: full((2,), 1.0, dtype=d), lambda d: randn(2, dtype=d),
                                  lambda d: rand(2, dtype=d), lambda d: zeros_like(Tensor([1.0], dtype=d)),
                                  lambda d: ones_like(Tensor([1.0], dtype=d))])
def test_constructors_honour_dtype(make):
    assert make(np.float64).dtype == np.float64
    assert make(np.float32).dtype == np.float32


def test_transpose_out_of_range_names_shape():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        Tensor(np.ones((2, 3))).transpose(0, 5)


def test_importing_tensor_leaves_the_allocator_alone():
    # Allocator tuning (glibc mallopt) is an opt-in of module 13, never a side effect of import.
    import inspect
    import tinytorch.core.tensor as tensor_module
    source = inspect.getsource(tensor_module)
    assert "mallopt" not in source and "ctypes" not in source
