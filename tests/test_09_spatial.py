"""Tests for module 09 (spatial): im2col/col2im, Conv2d, MaxPool2d, AvgPool2d.

The fast ops are compared with loop references written here (independently of the
module's own `conv2d_naive`), over many shapes with hypothesis; every op has float64
gradient checks in `GRADCHECK_CASES` (collected by tests/test_05_gradcheck.py too).
"""
import numpy as np
import pytest
from graph_helpers import gradcheck_test, ops_in_cases, t64
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dense, Flatten, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.spatial import (
    AvgPool2d, AvgPool2dFunction, Conv2d, Conv2dFunction, MaxPool2d, MaxPool2dFunction, avg_pool2d,
    batch_last, col2im, conv2d, im2col, max_pool2d)
from tinytorch.core.tensor import Tensor

F64 = np.float64


# ---- loop references ----------------------------------------------------------------------
def ref_conv(x, w, b, stride, padding):
    """out[n, o, y, x] = b[o] + sum_{c,i,j} w[o, c, i, j] * xpad[n, c, y*sh + i, x*sw + j], with loops."""
    (sh, sw), (ph, pw) = stride, padding
    N, C, H, W = x.shape
    C_out, _, kh, kw = w.shape
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    H_out, W_out = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, C_out, H_out, W_out))
    for n in range(N):
        for o in range(C_out):
            for y in range(H_out):
                for xx in range(W_out):
                    total = 0.0 if b is None else b[o]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                total += w[o, c, i, j] * xp[n, c, y * sh + i, xx * sw + j]
                    out[n, o, y, xx] = total
    return out


def ref_pool(x, kernel, stride, how):
    """Max or mean of each window, and (for max) the row-major index of its first maximum."""
    (kh, kw), (sh, sw) = kernel, stride
    N, C, H, W = x.shape
    H_out, W_out = (H - kh) // sh + 1, (W - kw) // sw + 1
    out = np.zeros((N, C, H_out, W_out))
    first = np.zeros((N, C, H_out, W_out), dtype=int)
    for n in range(N):
        for c in range(C):
            for y in range(H_out):
                for xx in range(W_out):
                    window = x[n, c, y * sh:y * sh + kh, xx * sw:xx * sw + kw].ravel()
                    out[n, c, y, xx] = window.max() if how == "max" else window.mean()
                    first[n, c, y, xx] = int(np.argmax(window))     # numpy: the first maximum
    return out, first


def fitting(k, pad, extra):
    """An image size along which a kernel of size k with padding pad fits, plus `extra`."""
    return max(1, k - 2 * pad) + extra


def conv64(c_in, c_out, k, seed=0, **kw):
    return Conv2d(c_in, c_out, k, dtype=F64, rng=np.random.default_rng(seed), **kw)


# ---- im2col / col2im ------------------------------------------------------------------------
def test_im2col_columns_are_windows():
    x = np.arange(2 * 2 * 3 * 4, dtype=F64).reshape(2, 2, 3, 4)
    cols = im2col(x, (2, 3), (1, 1), (0, 0))
    assert cols.shape == (2 * 2 * 3, 2 * 2 * 2)
    # column (n=1, y=1, x=0) is the window x[1, :, 1:3, 0:3] flattened in (c, i, j) order
    assert np.array_equal(cols[:, 1 * 4 + 1 * 2 + 0], x[1, :, 1:3, 0:3].ravel())
    assert cols.flags.c_contiguous


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), extra_h=st.integers(0, 4), extra_w=st.integers(0, 4),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 10_000))
def test_col2im_is_the_adjoint_of_im2col(n, c, extra_h, extra_w, kh, kw, sh, sw, ph, pw, seed):
    h, w = fitting(kh, ph, extra_h), fitting(kw, pw, extra_w)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    cols = im2col(x, (kh, kw), (sh, sw), (ph, pw))
    other = rng.standard_normal(cols.shape)
    back = col2im(batch_last(other, n), x.shape, (kh, kw), (sh, sw), (ph, pw))
    assert back.shape == x.shape and back.flags.c_contiguous
    assert np.isclose(np.sum(cols * other), np.sum(x * back))


def test_col2im_sums_overlapping_windows():
    """Every entry of every window set to 1: col2im counts how many windows cover each pixel."""
    x_shape, k = (2, 1, 4, 4), (3, 3)
    ones = np.ones((1 * 3 * 3, 2 * 2 * 2))
    counts = col2im(ones, x_shape, k)[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])
    strided = col2im(np.ones((9, 3 * 3 * 2)), (2, 1, 5, 5), k, (2, 2), (1, 1))[1, 0]
    np.testing.assert_array_equal(strided, [[1, 2, 1, 2, 1], [2, 4, 2, 4, 2], [1, 2, 1, 2, 1],
                                            [2, 4, 2, 4, 2], [1, 2, 1, 2, 1]])


# ---- Conv2d forward ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c_in=st.integers(1, 4), c_out=st.integers(1, 4), extra_h=st.integers(0, 5),
       extra_w=st.integers(0, 5), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3),
       sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2), bias=st.booleans(),
       seed=st.integers(0, 10_000))
def test_conv2d_matches_the_loop_reference(n, c_in, c_out, extra_h, extra_w, kh, kw, sh, sw, ph, pw, bias, seed):
    h, w = fitting(kh, ph, extra_h), fitting(kw, pw, extra_w)
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, kh, kw))
    b = rng.standard_normal(c_out) if bias else None
    out = conv2d(Tensor(x, dtype=F64), Tensor(wt, dtype=F64), None if b is None else Tensor(b, dtype=F64),
                 stride=(sh, sw), padding=(ph, pw))
    expected = ref_conv(x, wt, b, (sh, sw), (ph, pw))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-10)


def test_conv2d_layer_uses_its_parameters():
    layer = Conv2d(3, 5, (3, 2), stride=(1, 2), padding=(1, 0), rng=np.random.default_rng(0))
    layer.bias.data[:] = np.arange(5)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 7)).astype(np.float32)
    out = layer(Tensor(x))
    assert out.shape == (2, 5, 6, 3) and out.dtype == np.float32 and out.data.flags.c_contiguous
    expected = ref_conv(x.astype(F64), layer.weight.data.astype(F64), layer.bias.data.astype(F64), (1, 2), (1, 0))
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)


def test_conv2d_shapes_of_common_layers():
    assert Conv2d(3, 6, 5)(Tensor(np.zeros((4, 3, 32, 32)))).shape == (4, 6, 28, 28)
    assert Conv2d(3, 16, 3, padding=1)(Tensor(np.zeros((2, 3, 32, 32)))).shape == (2, 16, 32, 32)
    assert Conv2d(16, 32, 3, stride=2, padding=1)(Tensor(np.zeros((2, 16, 32, 32)))).shape == (2, 32, 16, 16)
    assert Conv2d(8, 4, 1)(Tensor(np.zeros((1, 8, 5, 3)))).shape == (1, 4, 5, 3)
    assert Conv2d(1, 1, 4, stride=4)(Tensor(np.zeros((1, 1, 7, 7)))).shape == (1, 1, 1, 1), "floor mode"


def test_conv2d_parameters_init_and_dtype():
    layer = Conv2d(32, 64, 3, rng=np.random.default_rng(0))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert layer.weight.shape == (64, 32, 3, 3) and layer.weight.dtype == np.float32
    fan_in = 32 * 9
    assert np.abs(layer.weight.data).max() <= np.sqrt(6 / fan_in)
    assert abs(layer.weight.data.var() - 2 / fan_in) < 0.05 * 2 / fan_in, "He: Var(w) = 2 / fan_in"
    assert (layer.bias.data == 0).all()
    assert Conv2d(2, 3, 3, bias=False).bias is None and Conv2d(2, 3, 3, bias=False).num_parameters() == 54
    a, b = Conv2d(2, 3, 3, rng=np.random.default_rng(7)), Conv2d(2, 3, 3, rng=np.random.default_rng(7))
    assert np.array_equal(a.weight.data, b.weight.data), "seeded init is reproducible"
    assert conv64(2, 3, 3)(Tensor(np.ones((1, 2, 4, 4)), dtype=F64)).dtype == F64
    images = Tensor(np.full((1, 2, 4, 4), 3, dtype=np.uint8))
    assert Conv2d(2, 3, 3)(images).dtype == np.float32, "integer images are converted"
    assert repr(Conv2d(3, 6, 5)) == "Conv2d(3, 6, kernel_size=(5, 5), stride=(1, 1), padding=(0, 0), bias=True)"


# ---- errors ---------------------------------------------------------------------------------
def test_conv2d_errors_name_the_layer_and_shapes():
    layer = Conv2d(3, 6, 5)
    with pytest.raises(ValueError, match=r"Conv2d\(3->6, k=5\): expected input \(N, 3, H, W\), got \(2, 1, 32, 32\)"):
        layer(Tensor(np.zeros((2, 1, 32, 32))))
    with pytest.raises(ValueError, match=r"Conv2d\(3->6, k=5\): expected input \(N, 3, H, W\), got \(3, 32, 32\)"):
        layer(Tensor(np.zeros((3, 32, 32))))
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the input \(4, 6\).*\(1, 3, 4, 6\)"):
        layer(Tensor(np.zeros((1, 3, 4, 6))))
    with pytest.raises(ValueError, match=r"Conv2d\(3->4, k=\(7, 3\)\).*kernel \(7, 3\) is larger than the padded "
                                         r"input \(6, 6\).*\(1, 3, 4, 4\)"):
        Conv2d(3, 4, (7, 3), padding=1)(Tensor(np.zeros((1, 3, 4, 4))))
    with pytest.raises(ValueError, match=r"conv2d: expected input \(N, 2, H, W\).*\(2, 2, 3, 3\).*\(1, 3, 5, 5\)"):
        conv2d(Tensor(np.zeros((1, 3, 5, 5))), Tensor(np.zeros((2, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\), got \(3,\)"):
        conv2d(Tensor(np.zeros((1, 2, 5, 5))), Tensor(np.zeros((2, 2, 3, 3))), Tensor(np.zeros(3)))


@pytest.mark.parametrize("kwargs, error", [
    (dict(kernel_size=0), ValueError), (dict(kernel_size=(3, 0)), ValueError), (dict(kernel_size=(3, 3, 3)), TypeError),
    (dict(kernel_size=2.5), TypeError), (dict(kernel_size=3, stride=0), ValueError),
    (dict(kernel_size=3, padding=-1), ValueError), (dict(kernel_size=True), TypeError)])
def test_conv2d_refuses_bad_hyperparameters(kwargs, error):
    with pytest.raises(error, match="Conv2d"):
        Conv2d(2, 2, **kwargs)


def test_pool_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"MaxPool2d\(k=2, s=2\): expected input \(N, C, H, W\), got \(6, 8, 8\)"):
        MaxPool2d(2)(Tensor(np.zeros((6, 8, 8))))
    with pytest.raises(ValueError, match=r"AvgPool2d\(k=3, s=1\): kernel \(3, 3\) is larger than the input "
                                         r"\(2, 8\) of an input of shape \(1, 1, 2, 8\)"):
        AvgPool2d(3, stride=1)(Tensor(np.zeros((1, 1, 2, 8))))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        MaxPool2d(2, stride=0)


# ---- Conv2d backward ------------------------------------------------------------------------
def test_conv2d_backward_skips_unneeded_gradients_and_keeps_grad_intact():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))      # images: no gradient
    layer = Conv2d(3, 4, 3, rng=np.random.default_rng(1))
    out = layer(x)
    assert isinstance(out._ctx, Conv2dFunction)
    g = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    g_before = g.copy()
    dx, dw, db = out._ctx.backward(g)
    assert dx is None, "the input does not require grad: no col2im"
    assert dw.shape == (4, 3, 3, 3) and db.shape == (4,) and dw.dtype == np.float32
    assert np.array_equal(g, g_before), "backward must not modify grad"
    layer.bias.requires_grad = False
    dx, dw, db = layer(x)._ctx.backward(g)
    assert db is None and dw is not None


def test_conv2d_gradients_match_the_summed_formula():
    """dW[o, c, i, j] = sum over n, y, x of g[n, o, y, x] * xpad[n, c, y*s + i, x*s + j]."""
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((2, 2, 5, 5)), dtype=F64, requires_grad=True)
    w = Tensor(rng.standard_normal((3, 2, 3, 3)), dtype=F64, requires_grad=True)
    out = conv2d(x, w, stride=2, padding=1)                                 # (2, 3, 3, 3)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    xp = np.pad(x.data, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.zeros(w.shape)
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i:i + 5:2, j:j + 5:2]                           # (2, 2, 3, 3)
            dw[:, :, i, j] = np.einsum("noyx,ncyx->oc", g, patch)
    np.testing.assert_allclose(w.grad.data, dw, rtol=1e-10)


def test_float32_training_keeps_float32():
    layer = Conv2d(2, 3, 3, padding=1, rng=np.random.default_rng(0))
    x = Tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 5)), requires_grad=True)
    max_pool2d(layer(x), 2).sum().backward()
    assert x.grad.dtype == np.float32 and layer.weight.grad.dtype == np.float32


# ---- pooling -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), extra_h=st.integers(0, 6), extra_w=st.integers(0, 6),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 4), sw=st.integers(1, 4),
       stride_is_kernel=st.booleans(), integers=st.booleans(), seed=st.integers(0, 10_000))
def test_pools_match_the_loop_reference(n, c, extra_h, extra_w, kh, kw, sh, sw, stride_is_kernel, integers, seed):
    h, w = fitting(kh, 0, extra_h), fitting(kw, 0, extra_w)
    stride = (kh, kw) if stride_is_kernel else (sh, sw)
    rng = np.random.default_rng(seed)
    # small integers make ties frequent, which exercises the first-maximum rule
    x = rng.integers(0, 3, (n, c, h, w)).astype(F64) if integers else rng.standard_normal((n, c, h, w))
    xt = Tensor(x, dtype=F64, requires_grad=True)
    out = max_pool2d(xt, (kh, kw), stride)
    expected, first = ref_pool(x, (kh, kw), stride, "max")
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_allclose(avg_pool2d(xt, (kh, kw), stride).data, ref_pool(x, (kh, kw), stride, "mean")[0],
                               rtol=1e-12, atol=1e-15)   # a mean near 0 loses relative precision
    g = rng.standard_normal(out.shape)
    out.backward(g)
    dx = np.zeros_like(x)                    # the whole gradient of each window goes to its first maximum
    N_, C_, Ho, Wo = out.shape
    for idx in np.ndindex(out.shape):
        nn, cc, y, xx = idx
        i, j = divmod(first[idx], kw)
        dx[nn, cc, y * stride[0] + i, xx * stride[1] + j] += g[idx]
    np.testing.assert_allclose(xt.grad.data, dx, rtol=1e-12, atol=1e-12)


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0         # window (0, 0): maxima at offsets (0, 1) and (1, 0)
    x[0, 0, 2:, 2:] = 7.0                        # window (1, 1): four equal maxima
    xt = Tensor(x, dtype=F64, requires_grad=True)
    max_pool2d(xt, 2).backward(np.ones((1, 1, 2, 2)))
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[2, 2] = 1.0        # (0, 1) before (1, 0); (2, 2) first of four
    expected[0, 2] = expected[2, 0] = 1.0        # all-zero windows: their top-left corner
    np.testing.assert_array_equal(xt.grad.data[0, 0], expected)
    # overlapping windows (stride 1): the shared maximum collects one gradient per window it wins
    y = Tensor(np.array([[[[1.0, 9.0, 1.0], [1.0, 1.0, 1.0]]]]), dtype=F64, requires_grad=True)
    max_pool2d(y, 2, stride=1).backward(np.array([[[[2.0, 3.0]]]]))
    np.testing.assert_array_equal(y.grad.data[0, 0], [[0, 5, 0], [0, 0, 0]])
    # repeated runs give the same answer
    z = Tensor(np.zeros((2, 3, 4, 4)), dtype=F64, requires_grad=True)
    max_pool2d(z, 2).sum().backward()
    first = z.grad.data.copy()
    z.zero_grad()
    max_pool2d(z, 2).sum().backward()
    np.testing.assert_array_equal(z.grad.data, first)
    assert first.sum() == 2 * 3 * 4, "one unit of gradient per window"


def test_max_pool_without_gradients_gives_the_same_values():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), requires_grad=True)
    with no_grad():
        quick = max_pool2d(x, 3, stride=2)
    assert quick._ctx is None
    np.testing.assert_array_equal(quick.data, max_pool2d(x, 3, stride=2).data)


def test_pools_keep_dtype_and_convert_integers():
    assert MaxPool2d(2)(Tensor(np.ones((1, 1, 4, 4)), dtype=F64)).dtype == F64
    assert AvgPool2d(2)(Tensor(np.ones((1, 1, 4, 4)))).dtype == np.float32
    ints = Tensor(np.arange(16).reshape(1, 1, 4, 4))
    assert AvgPool2d(2)(ints).dtype == np.float32 and AvgPool2d(2)(ints).data[0, 0, 0, 0] == 2.5
    assert MaxPool2d(2)(ints).data[0, 0].tolist() == [[5, 7], [13, 15]]


# ---- gradient checks (float64) -----------------------------------------------------------
def _conv_case(c_in, c_out, k, shape, seed=0, **kw):
    def build():
        layer = conv64(c_in, c_out, k, seed=seed, **kw)
        x = t64(*shape, seed=seed + 1)
        params = layer.parameters()
        return (lambda x, *p: layer(x)), [x, *params]
    return build


def _small_cnn_case():
    net = Sequential(conv64(1, 2, 3, padding=1, seed=1), ReLU(), MaxPool2d(2), conv64(2, 3, 2, seed=2),
                     AvgPool2d(2, stride=1), Flatten(), Dense(3, 2, dtype=F64, rng=np.random.default_rng(3)))
    x = t64(2, 1, 6, 6, seed=4)
    return (lambda x, *p: net(x)), [x, *net.parameters()]


GRADCHECK_CASES = {
    "conv_basic": _conv_case(2, 3, 3, (2, 2, 5, 5)),
    "conv_stride2_padding1": _conv_case(2, 2, 3, (2, 2, 6, 5), stride=2, padding=1),
    "conv_nonsquare_kernel_stride_padding": _conv_case(1, 2, (3, 2), (1, 1, 5, 6), stride=(2, 3), padding=(2, 1)),
    "conv_1x1": _conv_case(3, 2, 1, (2, 3, 3, 3)),
    "conv_no_bias": _conv_case(2, 2, 2, (1, 2, 4, 4), bias=False),
    "conv_functional": lambda: (lambda x, w, b: conv2d(x, w, b, stride=(1, 2), padding=(0, 1)),
                                [t64(2, 2, 4, 5), t64(3, 2, 2, 3, seed=1), t64(3, seed=2)]),
    "max_pool_tiled": lambda: (lambda x: max_pool2d(x, 2), [t64(2, 2, 4, 6)]),
    "max_pool_overlapping": lambda: (lambda x: max_pool2d(x, 3, stride=1), [t64(1, 2, 5, 5)]),
    "max_pool_strided_leftover": lambda: (lambda x: max_pool2d(x, (2, 3), stride=(3, 2)), [t64(2, 1, 7, 7)]),
    "avg_pool_tiled": lambda: (lambda x: avg_pool2d(x, 2), [t64(2, 2, 4, 6)]),
    "avg_pool_overlapping": lambda: (lambda x: avg_pool2d(x, (3, 2), stride=1), [t64(1, 2, 5, 4)]),
    "avg_pool_leftover": lambda: (lambda x: AvgPool2d(2)(x), [t64(1, 2, 5, 5)]),
    "small_cnn": _small_cnn_case,
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


def test_every_op_of_this_module_is_in_a_gradcheck_case():
    assert {Conv2dFunction, MaxPool2dFunction, AvgPool2dFunction} <= ops_in_cases(GRADCHECK_CASES)


# ---- end to end ------------------------------------------------------------------------------
def _pattern_images(n, rng):
    """n noisy 1x8x8 images, 4 classes: a horizontal bar, a vertical bar, a plus, a hollow square."""
    labels = np.arange(n) % 4
    images = 0.2 * rng.standard_normal((n, 1, 8, 8))
    shift = rng.integers(0, 4, size=(n, 2))                  # where the 5x5 pattern sits
    patterns = np.zeros((4, 5, 5))
    patterns[0, 2, :] = 1
    patterns[1, :, 2] = 1
    patterns[2, 2, :] = patterns[2, :, 2] = 1
    patterns[3, [0, 4], :] = patterns[3, :, [0, 4]] = 1
    rows = shift[:, 0, None, None] + np.arange(5)[None, :, None]           # (n, 5, 1)
    cols = shift[:, 1, None, None] + np.arange(5)[None, None, :]           # (n, 1, 5)
    images[np.arange(n)[:, None, None], 0, rows, cols] += patterns[labels]
    return images.astype(np.float32), labels


def test_a_small_cnn_overfits_a_tiny_image_set():
    rng = np.random.default_rng(0)
    images, labels = _pattern_images(32, rng)
    net = Sequential(Conv2d(1, 8, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2),
                     Flatten(), Dense(8 * 4 * 4, 4, rng=rng))
    loss_fn = CrossEntropyLoss()
    x = Tensor(images)
    first = None
    for step in range(150):
        loss = loss_fn(net(x), labels)
        first = loss.item() if first is None else first
        net.zero_grad()
        loss.backward()
        for p in net.parameters():
            p.data -= 0.05 * p.grad.data                        # plain SGD
    with no_grad():
        accuracy = (net(x).data.argmax(axis=1) == labels).mean()
    assert accuracy == 1.0, accuracy
    assert loss.item() < 0.1 * first, (first, loss.item())
