"""Tests for module 13 (kernels): every fast kernel equals its reference.

matmul three ways against numpy, the checked strided view, loop and shifted convolutions
against module 09's im2col `conv2d`, the fused softmax-cross-entropy against module 04's
`CrossEntropyLoss`, the fused GELU against module 02's, and the in-place Adam(W) update
against the allocating one and module 06's optimizers (exactly). Float64 gradient checks
of the fused Functions are in `GRADCHECK_CASES` (collected by tests/test_05_gradcheck.py too).
"""
import numpy as np
import pytest
from graph_helpers import gradcheck_test, ops_in_cases, t64
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import GELU, gelu
from tinytorch.core import kernels
from tinytorch.core.kernels import (
    FusedAdam, FusedAdamW, FusedCrossEntropyLoss, FusedGELU, FusedGELUFunction, SoftmaxCrossEntropyFunction,
    adam_update_allocating, adam_update_inplace, conv2d_loops, conv2d_shifted, fused_gelu, layout, matmul_blas,
    matmul_broadcast, matmul_flops, matmul_loops, softmax_cross_entropy, strided_view, tune_allocator,
    CausalSelfAttentionFunction, Conv2dReLUFunction, FusedCausalSelfAttention, FusedConv2d, FusedCrossEntropy,
    FusedDense, FusedGELULayer, FusedMaxPool2d, FusedSequential, LinearFunction, TiledMaxPoolFunction, fast_model,
    linear, DataParallel, ProcessDataParallel)
from tinytorch.core.layers import Dense, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import Adam, AdamW
from tinytorch.core.spatial import conv2d
from tinytorch.core.tensor import Tensor

F64 = np.float64


# ---- matmul -----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_three_matmuls_equal_numpy(n, k, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    ref = a @ b
    for fn in (matmul_loops, matmul_broadcast, matmul_blas):
        out = fn(a, b)
        assert out.shape == (n, m)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_matmuls_keep_float32_and_count_flops():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    for fn in (matmul_loops, matmul_broadcast, matmul_blas):
        out = fn(a, b)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, a.astype(F64) @ b.astype(F64), rtol=1e-5, atol=1e-5)
    assert matmul_flops(4, 3, 5) == 120


def test_matmul_errors_name_the_shapes():
    for fn in (matmul_loops, matmul_broadcast, matmul_blas):
        name = fn.__name__
        with pytest.raises(ValueError, match=rf"{name}: inner dimensions differ: \(2, 3\) @ \(4, 2\)"):
            fn(np.ones((2, 3)), np.ones((4, 2)))
        with pytest.raises(ValueError, match=rf"{name}: expected matrices .* got shapes \(2, 3, 1\) and \(3, 2\)"):
            fn(np.ones((2, 3, 1)), np.ones((3, 2)))
        with pytest.raises(TypeError, match=rf"{name}: expected numpy arrays, got list"):
            fn([[1.0]], np.ones((1, 1)))


# ---- layout and strided views ----------------------------------------------------------------
def test_layout_reports_strides_contiguity_and_ownership():
    a = np.zeros((3, 4), dtype=np.float32)
    info = layout(a)
    assert info == {"shape": (3, 4), "strides": (16, 4), "itemsize": 4, "c_contiguous": True,
                    "f_contiguous": False, "owns_data": True, "nbytes": 48}
    t = layout(a.T)
    assert t["strides"] == (4, 16) and t["f_contiguous"] and not t["c_contiguous"] and not t["owns_data"]
    s = layout(a[:, ::2])
    assert s["strides"] == (16, 8) and not s["c_contiguous"] and not s["f_contiguous"]
    assert layout(np.ascontiguousarray(a.T))["owns_data"]


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 30), width=st.integers(1, 6), step=st.integers(1, 4))
def test_strided_view_sliding_windows(length, width, step):
    x = np.arange(length, dtype=np.float32)
    count = (length - width) // step + 1
    if count < 1:
        with pytest.raises(ValueError, match="outside the"):
            strided_view(x, (1, width), (4 * step, 4))
        return
    windows = strided_view(x, (count, width), (4 * step, 4))
    expected = np.stack([x[i * step:i * step + width] for i in range(count)])
    assert np.array_equal(windows, expected)
    assert np.shares_memory(windows, x) and not windows.flags.writeable
    # the window after the last one that fits always runs past the end
    with pytest.raises(ValueError, match=rf"reaches bytes \[0, {4 * (count * step + width)}\) outside the {4 * length}-byte buffer"):
        strided_view(x, (count + 1, width), (4 * step, 4))


def test_strided_view_negative_strides_and_errors():
    x = np.arange(6, dtype=np.int64)
    with pytest.raises(ValueError, match=r"reaches bytes \[-40, 8\) outside the 48-byte buffer"):
        strided_view(x, (6,), (-8,))                         # would read before the start
    assert np.array_equal(strided_view(x, (2, 3), (24, 8)), x.reshape(2, 3))
    assert np.array_equal(strided_view(x, (3, 2), (8, 24)), x.reshape(2, 3).T)
    assert strided_view(x, (0, 5), (8, 8)).shape == (0, 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        strided_view(x[::2], (2,), (8,))
    with pytest.raises(ValueError, match="multiples of the itemsize 8"):
        strided_view(x, (2,), (4,))
    with pytest.raises(ValueError, match="different lengths"):
        strided_view(x, (2, 3), (8,))
    with pytest.raises(ValueError, match="negative size"):
        strided_view(x, (-1,), (8,))


# ---- convolution ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(3, 7), W=st.integers(3, 7),
       C_out=st.integers(1, 3), k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 2),
       bias=st.booleans(), seed=st.integers(0, 10_000))
def test_loop_and_shifted_convolutions_equal_im2col(N, C, H, W, C_out, k, stride, padding, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((C_out, C, k, k))
    b = rng.standard_normal(C_out) if bias else None
    ref = conv2d(Tensor(x, dtype=F64), Tensor(w, dtype=F64), None if b is None else Tensor(b, dtype=F64),
                 stride=stride, padding=padding).data
    for fn in (conv2d_loops, conv2d_shifted):
        out = fn(x, w, b, stride, padding)
        assert out.shape == ref.shape and out.flags.c_contiguous
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_convolutions_keep_float32():
    rng = np.random.default_rng(1)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(2, 3, 8, 8), (4, 3, 3, 3), (4,)])
    ref = conv2d(Tensor(x), Tensor(w), Tensor(b), padding=1).data
    for fn in (conv2d_loops, conv2d_shifted):
        out = fn(x, w, b, 1, 1)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_convolution_errors_name_the_shapes():
    for fn in (conv2d_loops, conv2d_shifted):
        name = fn.__name__
        with pytest.raises(ValueError, match=rf"{name}: .* got x \(1, 2, 5, 5\) and w \(3, 4, 3, 3\)"):
            fn(np.ones((1, 2, 5, 5)), np.ones((3, 4, 3, 3)))
        with pytest.raises(ValueError, match=rf"{name}: bias must have shape \(3,\), got \(2,\)"):
            fn(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.ones(2))
        with pytest.raises(ValueError, match=rf"{name}: kernel \(6, 6\) is larger than the padded input \(5, 5\)"):
            fn(np.ones((1, 2, 5, 5)), np.ones((3, 2, 6, 6)))
        with pytest.raises(ValueError, match=rf"{name}: stride must be >= 1"):
            fn(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)), None, 0)


# ---- fused softmax-cross-entropy -------------------------------------------------------------
def _both_losses(z, t, ignore_index=None, reduction="mean"):
    """(fused loss, grad), (module 04 loss, grad) on copies of the float64 logits z."""
    a, b = Tensor(z, dtype=F64, requires_grad=True), Tensor(z.copy(), dtype=F64, requires_grad=True)
    fused = FusedCrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)(a, t)
    ref = CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)(b, t)
    fused.backward()
    ref.backward()
    return (fused.item(), a.grad.data), (ref.item(), b.grad.data)


@settings(max_examples=40, deadline=None)
@given(lead=st.lists(st.integers(1, 5), min_size=1, max_size=3), C=st.integers(1, 7),
       ignore=st.sampled_from([None, -100, 0]), reduction=st.sampled_from(["mean", "sum"]),
       scale=st.sampled_from([0.1, 3.0, 30.0]), seed=st.integers(0, 10_000))
def test_fused_cross_entropy_equals_module_04(lead, C, ignore, reduction, scale, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((*lead, C)) * scale
    t = rng.integers(0, C, size=tuple(lead))
    if ignore is not None:
        t[rng.random(t.shape) < 0.3] = ignore
    (lf, gf), (lr, gr) = _both_losses(z, t, ignore, reduction)
    np.testing.assert_allclose(lf, lr, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gf, gr, rtol=1e-9, atol=1e-12)


def test_ignore_index_skips_rows_and_averages_over_the_rest():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2, 3, 4))
    t = np.array([[1, -1, 3], [-1, 0, 2]])
    x = Tensor(z, dtype=F64, requires_grad=True)
    loss = softmax_cross_entropy(x, t, ignore_index=-1)
    flat, ft = z.reshape(-1, 4), t.reshape(-1)
    logp = flat - np.log(np.exp(flat).sum(axis=1, keepdims=True))
    keep = ft != -1
    np.testing.assert_allclose(loss.item(), -logp[keep, ft[keep]].mean(), rtol=1e-12)
    loss.backward()
    g = x.grad.data.reshape(-1, 4)
    assert np.array_equal(g[~keep], np.zeros((2, 4))), "ignored rows get no gradient"
    p = np.exp(logp[keep])
    p[np.arange(keep.sum()), ft[keep]] -= 1
    np.testing.assert_allclose(g[keep], p / keep.sum(), rtol=1e-10, atol=1e-14)
    # every target ignored: the mean is 0 (like module 04), and so is the gradient
    x.grad = None
    none_left = softmax_cross_entropy(x, np.full((2, 3), -1), ignore_index=-1)
    assert none_left.item() == 0.0
    none_left.backward()
    assert not x.grad.data.any()
    # without ignore_index, -1 is out of range
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\) for 4 classes, got \[-1\]"):
        softmax_cross_entropy(x, t)
    # with an ignore_index, other out-of-range values are still refused
    with pytest.raises(ValueError, match=r"\[0, 4\) for 4 classes or equal ignore_index=-1, got \[4, 7\]"):
        softmax_cross_entropy(x, np.array([[1, 4, 7], [-1, 0, 2]]), ignore_index=-1)


def test_fused_cross_entropy_keeps_float32_and_is_stable():
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((12, 64, 65)) * 5).astype(np.float32)
    t = rng.integers(0, 65, size=(12, 64))
    x = Tensor(z, requires_grad=True)
    loss = softmax_cross_entropy(x, t)
    assert loss.dtype == np.float32 and loss.shape == ()
    loss.backward()
    assert x.grad.dtype == np.float32
    (lf, gf), (lr, gr) = _both_losses(z.astype(F64), t)
    np.testing.assert_allclose(loss.item(), lf, rtol=1e-5)
    np.testing.assert_allclose(x.grad.data, gf, rtol=1e-4, atol=1e-8)
    huge = Tensor(np.array([[1e4, -1e4, 0.0], [3e4, 3e4, 3e4]], dtype=np.float32), requires_grad=True)
    loss = softmax_cross_entropy(huge, [1, 0])
    np.testing.assert_allclose(loss.item(), (2e4 + np.log(3.0)) / 2, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(huge.grad.data, [[0.5, -0.5, 0.0], [-1 / 3, 1 / 6, 1 / 6]], rtol=1e-5, atol=1e-7)


def test_fused_cross_entropy_records_one_node_and_leaves_grad_alone():
    x = t64(4, 3)
    loss = softmax_cross_entropy(x, [0, 1, 2, 1])
    assert isinstance(loss._ctx, SoftmaxCrossEntropyFunction) and loss._ctx.inputs == (x,)
    g = np.array(2.0)
    (dz,) = loss._ctx.backward(g)
    assert g == 2.0 and dz.shape == (4, 3)
    np.testing.assert_allclose(dz.sum(axis=1), 0, atol=1e-12)   # softmax - onehot sums to 0 per row
    assert softmax_cross_entropy(Tensor(np.ones((2, 3))), np.array([1.0, 2.0])).dtype == np.float32


def test_fused_cross_entropy_errors():
    z = Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"logits of shape \(4, 3\) need targets of shape \(4,\), got targets of shape \(3,\)"):
        softmax_cross_entropy(z, [0, 1, 2])
    with pytest.raises(TypeError, match="targets must be integer class indices, got dtype float64"):
        softmax_cross_entropy(z, [0.5, 1, 2, 0])
    with pytest.raises(TypeError, match="got dtype bool"):
        softmax_cross_entropy(z, [True, False, True, False])
    with pytest.raises(ValueError, match=r"got \[3, 5\]"):
        softmax_cross_entropy(z, [0, 3, 5, 3])
    with pytest.raises(ValueError, match="reduction must be one of .* got 'none'"):
        softmax_cross_entropy(z, [0, 1, 2, 0], reduction="none")
    with pytest.raises(ValueError, match="FusedCrossEntropyLoss: reduction"):
        FusedCrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match="ignore_index must be an int or None, got 0.5"):
        softmax_cross_entropy(z, [0, 1, 2, 0], ignore_index=0.5)


def test_fused_cross_entropy_trains_a_classifier():
    """A Dense layer learns three separable classes with the fused loss as with module 04's."""
    rng = np.random.default_rng(4)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    y = rng.integers(0, 3, size=90)
    x = Tensor((centres[y] + rng.standard_normal((90, 2))).astype(np.float32))
    net = Sequential(Dense(2, 3, rng=np.random.default_rng(5)))
    opt = Adam(net.parameters(), lr=0.1)
    loss_fn = FusedCrossEntropyLoss()
    first = loss_fn(net(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    accuracy = float((net(x).data.argmax(axis=1) == y).mean())
    assert loss.item() < 0.3 * first and accuracy > 0.95, (first, loss.item(), accuracy)


# ---- fused GELU ---------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=0, max_size=3), scale=st.sampled_from([0.5, 3.0, 20.0]),
       seed=st.integers(0, 10_000))
def test_fused_gelu_equals_module_02(shape, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    up = rng.standard_normal(shape).astype(np.float32)
    a, b = Tensor(x, requires_grad=True), Tensor(x.copy(), requires_grad=True)
    ya, yb = fused_gelu(a), gelu(b)
    assert ya.dtype == np.float32 and ya.shape == tuple(shape)
    assert np.array_equal(ya.data, yb.data), "same operations in the same order: identical float32 values"
    ya.backward(up)
    yb.backward(up)
    assert a.grad.dtype == np.float32
    np.testing.assert_allclose(a.grad.data, b.grad.data, rtol=2e-5, atol=2e-6)
    x64 = x.astype(F64)
    c, d = Tensor(x64, dtype=F64, requires_grad=True), Tensor(x64.copy(), dtype=F64, requires_grad=True)
    fused_gelu(c).backward(up.astype(F64))
    gelu(d).backward(up.astype(F64))
    np.testing.assert_allclose(c.grad.data, d.grad.data, rtol=1e-12, atol=1e-14)


def test_fused_gelu_layer_extremes_and_state():
    layer = FusedGELU()
    assert repr(layer) == "FusedGELU()" and layer.parameters() == []
    x = Tensor(np.array([-1e30, -50.0, 0.0, 50.0, 1e30], dtype=np.float32), requires_grad=True)
    y = layer(x)
    assert np.isfinite(y.data).all()
    np.testing.assert_array_equal(y.data, GELU()(Tensor(x.data)).data)
    np.testing.assert_allclose(y.data[1:4], [0.0, 0.0, 50.0], atol=1e-6)
    ints = fused_gelu(Tensor(np.array([1, 2], dtype=np.int64)))
    assert ints.dtype == np.float32
    x = t64(3, 4)
    out = fused_gelu(x)
    fn = out._ctx
    assert isinstance(fn, FusedGELUFunction)
    kept_x, kept_t = fn.x.copy(), fn.t.copy()
    g = np.ones((3, 4))
    fn.backward(g)
    fn.backward(g)
    assert np.array_equal(fn.x, kept_x) and np.array_equal(fn.t, kept_t), "backward must not touch saved state"
    assert np.array_equal(g, np.ones((3, 4)))
    assert fn.x is x.data, "forward keeps the input itself, not a copy"


# ---- Adam in place vs allocating ---------------------------------------------------------------
@pytest.mark.parametrize("opt_cls, weight_decay, dtype", [
    (Adam, 0.0, np.float32), (Adam, 0.1, np.float32), (AdamW, 0.05, np.float32), (AdamW, 0.0, np.float64),
    (Adam, 0.01, np.float64)])
def test_fused_adam_equals_allocating_exactly_and_module_06_to_rounding(opt_cls, weight_decay, dtype):
    rng = np.random.default_rng(6)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    decoupled = opt_cls is AdamW
    p0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    alloc = [[p.copy(), np.zeros_like(p), np.zeros_like(p)] for p in p0]
    inplace = [[p.copy(), np.zeros_like(p), np.zeros_like(p)] for p in p0]
    params = [Tensor(p.copy(), dtype=dtype, requires_grad=True) for p in p0]
    opt = {Adam: FusedAdam, AdamW: FusedAdamW}[opt_cls](params, lr=0.02, betas=(0.8, 0.99), eps=1e-6,
                                                       weight_decay=weight_decay)
    plain_params = [Tensor(p.copy(), dtype=dtype, requires_grad=True) for p in p0]
    plain = opt_cls(plain_params, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    scratch = np.empty(2 * 12, dtype=dtype)                      # shared by all parameters (largest: 12)
    hyper = dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, decoupled=decoupled)
    for step in range(1, 8):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for k, g in enumerate(grads):
            before = [a.copy() for a in alloc[k]]
            new = adam_update_allocating(alloc[k][0], g, alloc[k][1], alloc[k][2], step, **hyper)
            assert all(np.array_equal(a, b) for a, b in zip(alloc[k], before)), "allocating: inputs untouched"
            alloc[k] = list(new)
            p, m, v = inplace[k]
            work = scratch[:2 * p.size].reshape(2, *p.shape)
            adam_update_inplace(p, g, m, v, step, work=work, **hyper)
            params[k].grad = plain_params[k].grad = Tensor(g, dtype=dtype)
        opt.step()
        plain.step()
        for k in range(len(shapes)):
            for a, b in zip(alloc[k], inplace[k]):
                assert a.dtype == dtype and np.array_equal(a, b), (step, k)
            assert np.array_equal(inplace[k][0], params[k].data), (step, k)
            assert np.array_equal(inplace[k][1], opt.state[f"{k}.exp_avg"])
            assert np.array_equal(inplace[k][2], opt.state[f"{k}.exp_avg_sq"])
            tol = 1e-5 if dtype == np.float32 else 1e-12              # module 06: the textbook order of operations
            np.testing.assert_allclose(plain_params[k].data, params[k].data, rtol=tol, atol=tol)
    assert not np.array_equal(inplace[0][0], p0[0])


@pytest.mark.parametrize("plain_cls, fused_cls", [(Adam, FusedAdam), (AdamW, FusedAdamW)])
def test_fused_adam_checkpoints_move_between_plain_and_fused(plain_cls, fused_cls):
    rng = np.random.default_rng(7)
    p0 = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in p0] for _ in range(4)]

    def steps(opt, params, gs):
        for g in gs:
            for p, gi in zip(params, g):
                p.grad = Tensor(gi)
            opt.step()

    straight = [Tensor(p.copy(), requires_grad=True) for p in p0]
    fused = fused_cls(straight, lr=0.01, weight_decay=0.1)
    steps(fused, straight, grads)
    first = [Tensor(p.copy(), requires_grad=True) for p in p0]
    plain = plain_cls(first, lr=0.01, weight_decay=0.1)
    steps(plain, first, grads[:2])
    state = plain.state_dict()
    assert state["type"] == plain_cls.__name__
    resumed = fused_cls([Tensor(p.data.copy(), requires_grad=True) for p in first], lr=0.01, weight_decay=0.1)
    resumed.load_state_dict(state)                           # a plain checkpoint goes into the fused optimizer
    steps(resumed, resumed.params, grads[2:])
    assert resumed.state_dict()["type"] == plain_cls.__name__ and resumed.step_count == 4
    for a, b in zip(straight, resumed.params):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-7)
    assert isinstance(resumed, plain_cls)
    with pytest.raises(ValueError):
        FusedAdamW(first).load_state_dict(Adam(first).state_dict()) if plain_cls is Adam else \
            FusedAdam(first).load_state_dict(AdamW(first).state_dict())


def test_tune_allocator_reports_what_it_did():
    import subprocess
    import sys
    code = "from tinytorch.core.kernels import tune_allocator; import json; print(json.dumps(tune_allocator()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json
    result = json.loads(out)
    assert set(result) == {"applied", "reason", "mmap_threshold", "trim_threshold"}
    assert result["mmap_threshold"] == 32 << 20 and result["trim_threshold"] == 1 << 30
    import ctypes
    try:
        ctypes.CDLL(None).gnu_get_libc_version
        glibc = sys.platform.startswith("linux")
    except (OSError, AttributeError):
        glibc = False
    assert result["applied"] is glibc and isinstance(result["reason"], str) and result["reason"]


def test_tune_allocator_does_nothing_off_linux(monkeypatch):
    import tinytorch.core.kernels as kernels
    monkeypatch.setattr(kernels.sys, "platform", "darwin")
    result = tune_allocator()
    assert result["applied"] is False and "darwin" in result["reason"]


def test_inplace_adam_writes_only_p_m_v_and_checks_shapes():
    rng = np.random.default_rng(7)
    p, g = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    m, v = np.zeros((3, 2)), np.zeros((3, 2))
    ids = (id(p), id(m), id(v))
    p_before, g_before = p.copy(), g.copy()
    adam_update_inplace(p, g, m, v, 1, weight_decay=0.1)          # L2 decay goes through scratch
    assert np.array_equal(g, g_before) and (id(p), id(m), id(v)) == ids
    g_eff = p_before * 0.1 + g                                   # the decayed gradient, never written to g
    np.testing.assert_array_equal(m, g_eff * (1.0 - 0.9))        # first step from m = 0
    np.testing.assert_array_equal(v, g_eff * g_eff * (1.0 - 0.999))
    assert not np.array_equal(p, p_before)
    with pytest.raises(ValueError, match=r"p \(3, 2\), g \(2, 3\), m \(3, 2\) and v \(3, 2\) must have one shape"):
        adam_update_inplace(p, g.T, m, v, 2)
    with pytest.raises(ValueError, match=r"work must have shape \(2, 3, 2\) and dtype float64, got \(2, 3, 2\) float32"):
        adam_update_inplace(p, g, m, v, 2, work=np.empty((2, 3, 2), np.float32))


# ---- gradient checks (float64) ------------------------------------------------------------------
def _ce_case(shape, ignore_index=None, reduction="mean", seed=0):
    def build():
        x = t64(*shape, seed=seed, scale=2.0)
        rng = np.random.default_rng(seed + 1)
        t = rng.integers(0, shape[-1], size=shape[:-1])
        if ignore_index is not None:
            t.reshape(-1)[::3] = ignore_index
        return (lambda x: softmax_cross_entropy(x, t, ignore_index=ignore_index, reduction=reduction)), [x]
    return build


def _gelu_in_a_network_case():
    dense = Dense(3, 4, dtype=F64, rng=np.random.default_rng(0))
    x = t64(2, 5, 3, seed=3)
    return (lambda x, w, b: fused_gelu(dense(x)) * 2.0), [x, dense.weight, dense.bias]


def _attention_case(B, T, C, nh, seed):
    def build():
        rng = np.random.default_rng(seed)
        ps = [Tensor(rng.standard_normal(s) * 0.5, dtype=F64, requires_grad=True) for s in [(C, C), (C,)] * 3]
        return ((lambda x, *p: CausalSelfAttentionFunction.apply(x, *p, num_heads=nh)),
                [t64(B, T, C, seed=seed), *ps])
    return build


def _conv_case(x_shape, w_shape, stride, padding, relu, bias=True, seed=0, part_bytes=None, batch_last=True):
    """part_bytes: module 13's CONV_PART_BYTES during the forward (1: one image per part); batch_last: these
    (narrow) outputs take batch-last columns (BATCH_LAST_BELOW as it is), else batch-first ones (it is 0)."""
    def build():
        x, w = t64(*x_shape, seed=seed), t64(*w_shape, seed=seed + 1)
        params = dict(stride=(stride, stride), padding=(padding, padding), relu=relu)

        def conv(*inputs):
            saved = kernels.CONV_PART_BYTES, kernels.BATCH_LAST_BELOW
            kernels.CONV_PART_BYTES = part_bytes or saved[0]
            kernels.BATCH_LAST_BELOW = saved[1] if batch_last else 0
            try:
                return Conv2dReLUFunction.apply(*inputs, **params)
            finally:
                kernels.CONV_PART_BYTES, kernels.BATCH_LAST_BELOW = saved
        if not bias:
            return (lambda x, w: conv(x, w)), [x, w]
        return (lambda x, w, b: conv(x, w, b)), [x, w, t64(w_shape[0], seed=seed + 2)]
    return build


GRADCHECK_CASES = {
    "linear_2d": lambda: (lambda x, w, b: linear(x, w, b), [t64(4, 3), t64(3, 5, seed=1), t64(5, seed=2)]),
    "linear_4d_no_bias": lambda: (lambda x, w: linear(x, w), [t64(2, 3, 2, 4), t64(4, 3, seed=1)]),
    "causal_attention": _attention_case(2, 5, 6, 2, seed=0),
    "causal_attention_one_position": _attention_case(3, 1, 4, 4, seed=1),
    "causal_attention_one_head": _attention_case(1, 6, 3, 1, seed=2),
    "causal_attention_three_heads": _attention_case(4, 5, 6, 3, seed=3),
    "conv_relu_per_image_dw": _conv_case((2, 2, 7, 7), (3, 2, 3, 3), 1, 0, relu=True, batch_last=False),
    "conv_relu_batch_last": _conv_case((2, 2, 7, 7), (3, 2, 3, 3), 1, 0, relu=True),
    "conv_batch_first_strided_padded": _conv_case((2, 2, 7, 6), (2, 2, 3, 2), 2, 1, relu=False, seed=11, batch_last=False),
    "conv_relu_one_gemm_dw_padded": _conv_case((2, 3, 4, 4), (2, 3, 3, 3), 1, 1, relu=True, seed=3),
    "conv_no_relu_strided": _conv_case((1, 2, 7, 6), (2, 2, 3, 2), 2, 1, relu=False, seed=4),
    "conv_relu_no_bias": _conv_case((2, 1, 5, 5), (2, 1, 2, 2), 1, 0, relu=True, bias=False, seed=5),
    "conv_relu_one_image_per_part": _conv_case((4, 2, 6, 6), (3, 2, 3, 3), 1, 1, relu=True, seed=6, part_bytes=1,
                                               batch_last=False),
    "conv_parts_one_gemm_dw": _conv_case((3, 3, 4, 4), (2, 3, 3, 3), 1, 0, relu=False, seed=7, part_bytes=300,
                                         batch_last=False),
    "conv_strided_parts_one_gemm_dw": _conv_case((3, 3, 5, 5), (2, 3, 3, 3), 2, 0, relu=True, seed=8, part_bytes=300,
                                                 batch_last=False),
    "tiled_max_pool_2x2": lambda: (lambda x: TiledMaxPoolFunction.apply(x, kernel=(2, 2)), [t64(2, 3, 4, 6)]),
    "tiled_max_pool_3x2": lambda: (lambda x: TiledMaxPoolFunction.apply(x, kernel=(3, 2)), [t64(1, 2, 6, 4, seed=1)]),
    "softmax_ce_2d": _ce_case((5, 4)),
    "softmax_ce_3d_btc": _ce_case((2, 3, 5), seed=1),
    "softmax_ce_ignore_index": _ce_case((3, 4, 3), ignore_index=-100, seed=2),
    "softmax_ce_sum": _ce_case((4, 6), reduction="sum", seed=3),
    "softmax_ce_single_class": _ce_case((3, 1), seed=4),
    "fused_gelu": lambda: (lambda x: fused_gelu(x), [t64(3, 4, scale=2.0)]),
    "fused_gelu_in_a_network": _gelu_in_a_network_case,
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


@pytest.mark.parametrize("shape, kernel, stride", [((2, 3, 7, 6), (3, 2), (1, 1)), ((3, 2, 9, 8), (3, 3), (2, 3)),
                                                   ((1, 1, 4, 4), (4, 4), (1, 1))])
def test_columns_equal_module_09s_im2col_in_every_order(shape, kernel, stride):
    from tinytorch.core.spatial import batch_last, im2col
    x = np.random.default_rng(0).standard_normal(shape)
    ref = im2col(x, kernel, stride)
    out_hw = tuple((shape[2 + a] - kernel[a]) // stride[a] + 1 for a in (0, 1))
    np.testing.assert_array_equal(kernels._columns(x, kernel, stride, out_hw), ref)
    buf = np.full(ref.size + 5, np.nan)
    np.testing.assert_array_equal(kernels._columns(x, kernel, stride, out_hw, out=buf), ref)
    xb = np.ascontiguousarray(x.transpose(1, 2, 3, 0))
    np.testing.assert_array_equal(kernels._columns(xb, kernel, stride, out_hw, "batch_last"), batch_last(ref, shape[0]))
    if stride == (1, 1):                     # wide columns: drop the wrapped-round ones, and they are im2col's
        (n, C, H, W), (H_out, W_out) = shape, out_hw
        wide = kernels._columns(x, kernel, stride, out_hw, "wide").reshape(C * kernel[0] * kernel[1], n, -1)
        assert wide.shape[2] == (H_out - 1) * W + W_out
        rows = np.concatenate([wide, np.zeros(wide.shape[:2] + (W - W_out,))], axis=2)   # (K, n, H_out * W)
        np.testing.assert_array_equal(rows.reshape(-1, n, H_out, W)[..., :W_out].reshape(ref.shape), ref)


def test_every_op_of_this_module_is_in_a_gradcheck_case():
    assert {SoftmaxCrossEntropyFunction, FusedGELUFunction, LinearFunction, CausalSelfAttentionFunction,
            Conv2dReLUFunction, TiledMaxPoolFunction} <= ops_in_cases(GRADCHECK_CASES)


# ---- fast_model ----------------------------------------------------------------------------------
def _tinygpt_like(seed):
    """Module 16's block structure from modules < 13: LayerNorm, causal attention, Dense-GELU-Dense."""
    from tinytorch.core.activations import Module
    from tinytorch.core.attention import MultiHeadAttention
    from tinytorch.core.normalization import LayerNorm

    class Block(Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(seed)
            self.ln1, self.ln2 = LayerNorm(8, dtype=F64), LayerNorm(8, dtype=F64)
            self.attn = MultiHeadAttention(8, 2, dtype=F64, rng=rng, causal=True)
            self.ff = Sequential(Dense(8, 16, dtype=F64, rng=rng), GELU(), Dense(16, 8, dtype=F64, rng=rng))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.ff(self.ln2(x))
    return Block()


def test_fast_model_equals_the_plain_model_values_and_gradients():
    plain, fast = _tinygpt_like(0), _tinygpt_like(0)
    swapped = fast_model(fast)
    assert swapped == {"MultiHeadAttention": 1, "Dense": 6, "Sequential": 1, "GELU": 1}
    assert type(fast.attn) is FusedCausalSelfAttention and type(fast.ff[0]) is FusedDense
    assert type(fast.ff) is FusedSequential and type(fast.ff[1]) is FusedGELULayer
    assert type(fast.attn).__name__ == "FusedCausalSelfAttention" and "FusedCausalSelfAttention" in repr(fast) and fast.state_dict().keys() == plain.state_dict().keys()
    x = np.random.default_rng(1).standard_normal((3, 5, 8))
    xa, xb = Tensor(x, dtype=F64, requires_grad=True), Tensor(x, dtype=F64, requires_grad=True)
    ya, yb = plain(xa), fast(xb)
    np.testing.assert_allclose(yb.data, ya.data, rtol=1e-12, atol=1e-12)
    up = np.random.default_rng(2).standard_normal(ya.shape)
    ya.backward(up)
    yb.backward(up)
    np.testing.assert_allclose(xb.grad.data, xa.grad.data, rtol=1e-10, atol=1e-12)
    for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
        np.testing.assert_allclose(pb.grad.data, pa.grad.data, rtol=1e-10, atol=1e-12, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), kernel=st.sampled_from([(2, 2), (3, 2), (2, 3)]), overlap=st.booleans())
def test_relu_then_max_pool_runs_as_pool_then_relu_with_equal_values_and_gradients(seed, kernel, overlap):
    """FusedSequential swaps ReLU, MaxPool2d: exactly equal outputs and input gradients, with small
    integers for many tied maxima and windows with nothing positive; tiled (module 13's pool) or
    overlapping windows (module 09's)."""
    from tinytorch.core.activations import ReLU
    from tinytorch.core.spatial import MaxPool2d
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(2, 3, 6, 6)).astype(np.float64)
    up = rng.standard_normal((2, 3) + tuple((6 - k) // (1 if overlap else k) + 1 for k in kernel))
    results = []
    for fuse in (False, True):
        net = Sequential(ReLU(), MaxPool2d(kernel, stride=1 if overlap else None))
        if fuse:
            fast_model(net)
            assert type(net) is FusedSequential
        xt = Tensor(x, requires_grad=True)
        y = net(xt)
        y.backward(up)
        results.append((y.data, xt.grad.data))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    np.testing.assert_array_equal(results[1][1], results[0][1])


def test_conv_relu_max_pool_runs_the_convolution_without_its_mask():
    """Conv2d, ReLU, MaxPool2d in a FusedSequential: the convolution runs with relu=False (the ReLU
    comes after the pool); Conv2d, ReLU alone still fuse the ReLU into the convolution."""
    from tinytorch.core.activations import ReLU
    from tinytorch.core.spatial import Conv2d, MaxPool2d
    seen = []
    original = Conv2dReLUFunction.forward

    def spy(self, *args, relu=False, **kwargs):
        seen.append(relu)
        return original(self, *args, relu=relu, **kwargs)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)))
    try:
        Conv2dReLUFunction.forward = spy
        for layers, relu in [((ReLU(), MaxPool2d(2)), False), ((ReLU(),), True)]:
            net = Sequential(Conv2d(1, 2, 3, rng=np.random.default_rng(1)), *layers)
            ref = net(x).data
            fast_model(net)
            seen.clear()
            np.testing.assert_allclose(net(x).data, ref, rtol=1e-12, atol=1e-12)
            assert seen == [relu]
    finally:
        Conv2dReLUFunction.forward = original


def test_data_parallel_fast_model_equals_the_plain_model_in_one_piece():
    """fast_model + DataParallel on 3 threads: the loss and gradients of the plain model on the whole batch."""
    from tinytorch.core.activations import Module

    class Head(Module):                                           # the block, then per-position class scores
        def __init__(self):
            super().__init__()
            self.block, self.out = _tinygpt_like(0), Dense(8, 4, dtype=F64, rng=np.random.default_rng(3))

        def forward(self, x):
            return self.out(self.block(x))

    class TokenLoss(Module):                                      # mean cross-entropy over (B, T) targets
        def __init__(self, ignore_index=None):
            super().__init__()
            self.ignore_index, self.ce = ignore_index, CrossEntropyLoss(ignore_index=ignore_index)

        def forward(self, logits, targets):
            return self.ce(logits.reshape(-1, logits.shape[-1]), np.asarray(targets).reshape(-1))
    x = np.random.default_rng(1).standard_normal((5, 6, 8))
    y = np.random.default_rng(2).integers(0, 4, size=(5, 6))
    y[0] = y[3, :4] = -1                                          # parts count different numbers of targets
    plain, fast = Head(), Head()
    la = TokenLoss(-1)(plain(Tensor(x, dtype=F64)), y)
    la.backward()
    fast_model(fast)
    dp = DataParallel(fast, TokenLoss(-1), threads=3)
    assert len(dp.copies) == 2 and all(q.data is p.data for p, q in zip(fast.parameters(), dp.copies[0][2]))
    np.testing.assert_allclose(dp.backward(x, y), la.item(), rtol=1e-12)
    for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
        np.testing.assert_allclose(pb.grad.data, pa.grad.data, rtol=1e-9, atol=1e-12, err_msg=name)
    assert all(q.grad is None for _, _, params in dp.copies for q in params)   # handed over or added, not kept


def test_data_parallel_follows_the_model_and_refuses_what_it_cannot_split():
    model = Sequential(Dense(3, 4, dtype=F64, rng=np.random.default_rng(0)), GELU(), Dense(4, 2, dtype=F64))
    dp = DataParallel(model, CrossEntropyLoss(), threads=2)
    x, y = np.random.default_rng(1).standard_normal((4, 3)), np.array([0, 1, 1, 0])
    model[0].weight.data = model[0].weight.data * 2.0             # a new array (like load_state_dict): followed
    fast_model(model)                                             # fused classes: followed
    model.zero_grad()
    loss = dp.backward(Tensor(x, dtype=F64), y)
    ref = Sequential(Dense(3, 4, dtype=F64), GELU(), Dense(4, 2, dtype=F64))
    ref.load_state_dict(model.state_dict())
    lr = CrossEntropyLoss()(ref(Tensor(x, dtype=F64)), y)
    lr.backward()
    np.testing.assert_allclose(loss, lr.item(), rtol=1e-12)
    for pa, pb in zip(ref.parameters(), model.parameters()):
        np.testing.assert_allclose(pb.grad.data, pa.grad.data, rtol=1e-10, atol=1e-12)
    assert type(dp.copies[0][0][0]) is FusedDense
    model[2].weight.requires_grad = False                         # frozen in the model: frozen in the copies
    model.zero_grad()
    dp.backward(x, y)
    assert model[2].weight.grad is None and model[0].weight.grad is not None
    with pytest.raises(ValueError, match="all|ignore_index"):
        DataParallel(model, CrossEntropyLoss(ignore_index=5)).backward(x, np.full(4, 5))
    with pytest.raises(ValueError, match="first axis"):
        dp.backward(x, y[:3])
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        DataParallel(model, CrossEntropyLoss(reduction="none"))
    with pytest.raises(ValueError, match="positive int"):
        DataParallel(model, CrossEntropyLoss(), threads=True)
    with pytest.raises(TypeError):
        DataParallel("model", CrossEntropyLoss())


def test_data_parallel_copies_draw_their_own_dropout_and_pass_on_errors():
    from tinytorch.core.layers import Dropout
    rng = np.random.default_rng(4)
    model = Sequential(Dense(3, 4, dtype=F64, rng=rng), Dropout(0.5, rng=rng))
    dp = DataParallel(model, CrossEntropyLoss(), threads=2)
    copy_rng = dp.copies[0][0][1].rng
    assert copy_rng is not model[1].rng
    assert not np.array_equal(copy_rng.random(8), np.random.default_rng(4).random(8))
    with pytest.raises(ValueError):                               # a part's own error reaches the caller
        dp.backward(np.ones((2, 5)), [0, 1])


def _whole_batch(model, loss_fn, x, y):
    model.zero_grad()
    loss = loss_fn(model(Tensor(x, dtype=x.dtype)), y)
    loss.backward()
    return loss.item(), [None if p.grad is None else p.grad.data.copy() for p in model.parameters()]


def test_process_data_parallel_equals_the_whole_batch_and_follows_the_model(monkeypatch):
    rng = np.random.default_rng(11)
    model = Sequential(Dense(4, 8, dtype=F64, rng=rng), GELU(), Dense(8, 3, dtype=F64, rng=rng))
    x, y = rng.standard_normal((9, 4)), np.array([0, -1, -1, -1, 2, 1, -1, 0, 2])
    loss_fn = CrossEntropyLoss(ignore_index=-1)
    ref_loss, ref = _whole_batch(model, loss_fn, x, y)
    monkeypatch.setattr(kernels, "INPUT_BYTES", 100)              # the first worker's inputs fit, the second's do not
    with ProcessDataParallel(model, loss_fn, processes=3) as dp:
        assert len(dp.workers) == 2 and all(w[0].is_alive() for w in dp.workers)
        model.zero_grad()
        np.testing.assert_allclose(dp.backward(x, y), ref_loss, rtol=1e-12)
        for p, r in zip(model.parameters(), ref):
            np.testing.assert_allclose(p.grad.data, r, rtol=1e-10, atol=1e-12)
        for p in model.parameters():
            p.data -= 0.1 * p.grad.data                           # in place: in shared memory, seen by the workers
        model[0].weight.data = model[0].weight.data * 0.5         # rebound: copied back into shared memory
        model[2].bias.requires_grad = False                       # frozen here: frozen in the workers
        ref_loss, ref = _whole_batch(model, loss_fn, x, y)
        model.zero_grad()
        np.testing.assert_allclose(dp.backward(Tensor(x, dtype=F64), y), ref_loss, rtol=1e-12)
        assert model[2].bias.grad is None
        for p, r in zip(model.parameters(), ref):
            if p.requires_grad:
                np.testing.assert_allclose(p.grad.data, r, rtol=1e-10, atol=1e-12)
        with pytest.raises(ValueError, match="in a ProcessDataParallel worker|in_features"):
            dp.backward(np.ones((9, 5)), y)                       # every part fails; the error keeps its type
        np.testing.assert_allclose(dp.backward(x, y), ref_loss, rtol=1e-12)   # the workers are still serving
    assert not any(w[0].is_alive() for w in dp.workers)
    with pytest.raises(RuntimeError, match="closed"):
        dp.backward(x, y)


def test_receive_polls_then_sleeps_and_gets_every_message(monkeypatch):
    """_receive: a message sent while it polls, and one sent after SPIN_S (it then sleeps in recv)."""
    import multiprocessing
    import threading
    monkeypatch.setattr(kernels, "SPIN_S", 0.05)
    here, there = multiprocessing.Pipe()
    for delay in (0.01, 0.15):                                   # inside the poll, after it
        timer = threading.Timer(delay, there.send, args=(("part", delay),))
        timer.start()
        assert kernels._receive(here) == ("part", delay)
        timer.join()
    there.close()
    with pytest.raises(EOFError):                                # the other end is gone
        kernels._receive(here)


def test_process_data_parallel_reports_a_worker_error_and_needs_fork(monkeypatch):
    model = Sequential(Dense(3, 2, dtype=F64, rng=np.random.default_rng(0)))
    with ProcessDataParallel(model, CrossEntropyLoss(), processes=2) as dp:
        with pytest.raises(ValueError, match=r"\[5\] \(in a ProcessDataParallel worker\)"):
            dp.backward(np.ones((4, 3)), np.array([0, 1, 5, 1]))   # class 5 of 2, only in the worker's half
    import multiprocessing
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(RuntimeError, match="fork"):
        ProcessDataParallel(model, CrossEntropyLoss())
    with pytest.raises(ValueError, match="positive int"):
        monkeypatch.undo()
        ProcessDataParallel(model, CrossEntropyLoss(), processes=0)


def test_fast_model_is_idempotent_and_leaves_other_classes_alone():
    model = Sequential(Dense(3, 4), GELU(), Dense(4, 2))
    assert fast_model(model) == {"Sequential": 1, "Dense": 2, "GELU": 1}
    assert fast_model(model) == {}                                # already fused: exact classes only
    loss = CrossEntropyLoss(reduction="none")
    assert fast_model(loss) == {"CrossEntropyLoss": 1} and type(loss) is FusedCrossEntropy
    logits, t = Tensor(np.random.default_rng(0).standard_normal((4, 3))), [0, 2, 1, 1]
    np.testing.assert_allclose(loss(logits, t).data, CrossEntropyLoss(reduction="none")(logits, t).data)   # module 04's path
    assert fast_model(model, fusions={}) == {}
    with pytest.raises(TypeError):
        fast_model("not a model")


def test_fused_attention_falls_back_to_module_11():
    from tinytorch.core.attention import MultiHeadAttention
    from tinytorch.core.autograd import no_grad
    rng = np.random.default_rng(3)
    plain = MultiHeadAttention(8, 2, causal=True, rng=np.random.default_rng(4))
    fast = MultiHeadAttention(8, 2, causal=True, rng=np.random.default_rng(4))
    fast_model(fast)
    x = Tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
    mask = Tensor(np.triu(np.full((5, 5), -1e9, np.float32), k=2))
    np.testing.assert_allclose(fast(x, mask=mask).data, plain(x, mask=mask).data, rtol=1e-6)    # extra mask
    out, w = fast(x, return_weights=True)
    assert w.shape == (2, 2, 5, 5) and fast.last_weights is not None
    fast(x)
    assert fast.last_weights is None                              # the fused op keeps no weights for display
    with no_grad():
        ca, cb = plain.new_cache(2, 8), fast.new_cache(2, 8)
        np.testing.assert_allclose(fast(x, cache=cb).data, plain(x, cache=ca).data, rtol=1e-6)
    dropping = MultiHeadAttention(8, 2, dropout=0.5, causal=True, rng=np.random.default_rng(5))
    fast_model(dropping)
    assert dropping(x).shape == (2, 5, 8)                         # module 11's path (dropout active)


def test_fused_lenet_like_model_equals_the_plain_one():
    from tinytorch.core.activations import ReLU
    from tinytorch.core.layers import Flatten
    from tinytorch.core.spatial import Conv2d, MaxPool2d

    def build():
        rng = np.random.default_rng(6)
        return Sequential(Conv2d(3, 4, 3, rng=rng, dtype=F64), ReLU(), MaxPool2d(2), Conv2d(4, 5, 2, rng=rng, dtype=F64),
                          ReLU(), MaxPool2d(3, stride=1), Flatten(), Dense(5, 3, rng=rng, dtype=F64))
    plain, fast = build(), build()
    assert fast_model(fast) == {"Sequential": 1, "Conv2d": 2, "MaxPool2d": 2, "Dense": 1}
    assert type(fast[0]) is FusedConv2d and type(fast[2]) is FusedMaxPool2d
    x = np.random.default_rng(7).standard_normal((2, 3, 10, 10))
    xa, xb = Tensor(x, dtype=F64, requires_grad=True), Tensor(x, dtype=F64, requires_grad=True)
    la = CrossEntropyLoss()(plain(xa), [0, 2])
    lb = FusedCrossEntropyLoss()(fast(xb), [0, 2])
    np.testing.assert_allclose(lb.item(), la.item(), rtol=1e-12)
    la.backward()
    lb.backward()
    np.testing.assert_allclose(xb.grad.data, xa.grad.data, rtol=1e-9, atol=1e-12)
    for pa, pb in zip(plain.parameters(), fast.parameters()):
        np.testing.assert_allclose(pb.grad.data, pa.grad.data, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        fast[0](Tensor(np.ones((1, 2, 5, 5))))                    # wrong channels: module 09's error
    lenet = build()
    fast_model(lenet)
    dp = DataParallel(lenet, FusedCrossEntropyLoss(), threads=2)
    np.testing.assert_allclose(dp.backward(x, [0, 2]), la.item(), rtol=1e-12)
    for pa, pc in zip(plain.parameters(), lenet.parameters()):
        np.testing.assert_allclose(pc.grad.data, pa.grad.data, rtol=1e-9, atol=1e-12)


def test_fused_adam_mixed_dtypes_scalars_and_skipped_parameters():
    rng = np.random.default_rng(8)
    p0 = [rng.standard_normal((3, 4)).astype(np.float32), np.array(0.5), rng.standard_normal(5),
          rng.standard_normal((2, 2)).astype(np.float32)]
    fused_ps = [Tensor(p.copy(), dtype=p.dtype, requires_grad=True) for p in p0]
    ref = [[p.copy(), np.zeros_like(p), np.zeros_like(p), 0] for p in p0]
    opt = FusedAdamW(fused_ps, lr=0.01, weight_decay=0.1)
    for step in range(4):
        for k, p in enumerate(fused_ps):
            if k == 3 and step % 2:                        # skipped: no gradient this step
                p.grad = None
                continue
            g = rng.standard_normal(p.shape).astype(p.dtype)
            p.grad = Tensor(g, dtype=p.dtype)
            r = ref[k]
            r[3] += 1
            r[0], r[1], r[2] = adam_update_allocating(r[0], g, r[1], r[2], r[3], lr=0.01, weight_decay=0.1,
                                                      decoupled=True)
        opt.step()
        for k, p in enumerate(fused_ps):
            assert p.dtype == p0[k].dtype and np.array_equal(p.data, ref[k][0]), (step, k)
    assert int(opt.state["3.step"]) == 2 and int(opt.state["0.step"]) == 4


def test_bench_vs_torch_quick_runs_without_torch(tmp_path, monkeypatch):
    """benchmarks/bench_vs_torch.py --quick: plain and fast steps timed, PyTorch skipped when not importable."""
    import importlib.util
    import json
    import sys
    from pathlib import Path
    bench_dir = str(Path(__file__).resolve().parents[1] / "benchmarks")
    monkeypatch.syspath_prepend(bench_dir)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    import bench_vs_torch
    monkeypatch.setattr(sys, "argv", ["bench_vs_torch.py", "--quick", "--out", str(tmp_path), "--threads", "1"])
    bench_vs_torch.main()
    data = json.loads((tmp_path / "bench_vs_torch.json").read_text())
    assert data["torch"] is None and set(data["results"]) == {"tinygpt/1", "lenet5/1"}
    for res in data["results"].values():
        assert "pytorch" not in res and res["plain"]["median_ms"] > 0 and res["fast"]["steps"] == 4
        assert res["fast/plain"]["ratio_of_medians"] > 0


def test_profile_before_after_profiles_a_tree_in_a_child_and_takes_medians(monkeypatch):
    """benchmarks/profile_before_after.py: a child process profiles the fast step with the code
    of the tree it is given (here this one), and the comparison is the median per op over the
    rounds, an op missing from a round counting as 0 there."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    import profile_before_after as pba
    one = pba.run_child(root, "lenet5", steps=2, quick=True)
    assert {"Conv2dReLUFunction", "TiledMaxPoolFunction", "LinearFunction"} <= set(one["ops"])
    assert 0 < sum(one["ops"].values()) <= one["step"]
    rounds = [{"ops": {"A": 1.0, "B": 4.0}, "engine": 1.0, "outside ops": 0.5, "step": 7.0},
              {"ops": {"A": 3.0}, "engine": 2.0, "outside ops": 0.5, "step": 5.0},
              {"ops": {"A": 2.0, "B": 2.0}, "engine": 3.0, "outside ops": 0.5, "step": 6.0}]
    assert pba.medians(rounds) == {"A": 2.0, "B": 2.0, "(engine)": 2.0, "(outside ops)": 0.5, "(step)": 6.0}
