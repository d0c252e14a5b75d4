"""Tests for module 10 (normalization): BatchNorm1d, BatchNorm2d, LayerNorm and their fused ops.

The fused Functions are compared with the composed Tensor-op versions (values and
gradients) and with numpy; float64 gradient checks are in `GRADCHECK_CASES` (collected by
tests/test_05_gradcheck.py too).
"""
import numpy as np
import pytest
from graph_helpers import gradcheck_test, ops_in_cases, t64
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dense, Parameter, Sequential
from tinytorch.core.normalization import (
    BatchNorm1d, BatchNorm2d, BatchNormFunction, LayerNorm, LayerNormFunction, batch_norm,
    batch_norm_composed, layer_norm, layer_norm_composed)
from tinytorch.core.spatial import Conv2d
from tinytorch.core.tensor import Tensor

F64 = np.float64
EPS = 1e-5


def np_batch_norm(x, weight=None, bias=None, mean=None, var=None):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes) if mean is None else mean
    var = x.var(axis=axes) if var is None else var
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + EPS)
    return y if weight is None else y * weight.reshape(shape) + bias.reshape(shape)


def np_layer_norm(x, nd, weight=None, bias=None):
    axes = tuple(range(x.ndim - nd, x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + EPS)
    return y if weight is None else y * weight + bias


def fused_vs_composed(fused_fn, composed_fn, inputs, grad):
    """Run both on copies of `inputs`; return (values, grads) of each."""
    a = [Tensor(t.data.copy(), dtype=t.dtype, requires_grad=True) for t in inputs]
    b = [Tensor(t.data.copy(), dtype=t.dtype, requires_grad=True) for t in inputs]
    out_a, out_b = fused_fn(*a), composed_fn(*b)
    out_a.backward(grad)
    out_b.backward(grad)
    return (out_a.data, [t.grad.data for t in a]), (out_b.data, [t.grad.data for t in b])


# ---- composed reference ------------------------------------------------------------------
def test_composed_versions_match_numpy():
    x = np.random.default_rng(0).normal(3, 2, size=(4, 3, 5, 2))
    w, b = np.array([1.0, 2.0, -1.0]), np.array([0.5, 0.0, 1.0])
    out = batch_norm_composed(Tensor(x, dtype=F64), Tensor(w, dtype=F64), Tensor(b, dtype=F64))
    np.testing.assert_allclose(out.data, np_batch_norm(x, w, b), rtol=1e-10, atol=1e-12)
    out = layer_norm_composed(Tensor(x, dtype=F64), 2)
    np.testing.assert_allclose(out.data, np_layer_norm(x, 2), rtol=1e-10, atol=1e-12)


# ---- fused == composed -------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 5), c=st.integers(1, 4), spatial=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       affine=st.booleans(), seed=st.integers(0, 10_000))
def test_fused_batch_norm_equals_composed(n, c, spatial, affine, seed):
    shape = (n, c, *spatial)
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(1.0, 2.0, size=shape), dtype=F64)
    inputs = [x, Tensor(rng.standard_normal(c), dtype=F64), Tensor(rng.standard_normal(c), dtype=F64)]
    inputs = inputs if affine else inputs[:1]
    grad = rng.standard_normal(shape)
    (va, ga), (vb, gb) = fused_vs_composed(lambda *t: batch_norm(t[0], None, None, *t[1:]),
                                           lambda *t: batch_norm_composed(*t), inputs, grad)
    np.testing.assert_allclose(va, vb, rtol=1e-9, atol=1e-9)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2), trailing=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       affine=st.booleans(), seed=st.integers(0, 10_000))
def test_fused_layer_norm_equals_composed(lead, trailing, affine, seed):
    shape, norm = (*lead, *trailing), tuple(trailing)
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(-2.0, 3.0, size=shape), dtype=F64)
    inputs = [x, Tensor(rng.standard_normal(norm), dtype=F64), Tensor(rng.standard_normal(norm), dtype=F64)]
    inputs = inputs if affine else inputs[:1]
    grad = rng.standard_normal(shape)
    (va, ga), (vb, gb) = fused_vs_composed(lambda *t: layer_norm(t[0], norm, *t[1:]),
                                           lambda *t: layer_norm_composed(t[0], len(norm), *t[1:]), inputs, grad)
    np.testing.assert_allclose(va, vb, rtol=1e-9, atol=1e-9)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_fused_ops_record_one_node_and_keep_grad_intact():
    x = t64(4, 3, 2)
    bn = BatchNorm1d(3, dtype=F64)
    out = bn(x)
    assert isinstance(out._ctx, BatchNormFunction) and out._ctx.inputs[0] is x
    g = np.random.default_rng(1).standard_normal(out.shape)
    before = g.copy()
    out._ctx.backward(g)
    assert np.array_equal(g, before), "backward must not modify grad"
    ln = LayerNorm(2, dtype=F64)
    out = ln(x)
    assert isinstance(out._ctx, LayerNormFunction)
    out._ctx.backward(g)
    assert np.array_equal(g, before)


# ---- BatchNorm: training vs evaluation ----------------------------------------------------
def test_training_normalises_with_batch_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(4.0, 3.0, size=(16, 5, 6, 6)).astype(np.float32)
    bn = BatchNorm2d(5)
    bn.weight.data[:] = 2.0
    bn.bias.data[:] = -1.0
    out = bn(Tensor(x))
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.data.mean(axis=(0, 2, 3)), -1.0, atol=1e-4)
    np.testing.assert_allclose(out.data.std(axis=(0, 2, 3)), 2.0, rtol=1e-3)
    np.testing.assert_allclose(out.data, np_batch_norm(x.astype(F64), bn.weight.data, bn.bias.data), atol=1e-4)


def test_running_statistics_follow_numpy_over_several_steps():
    rng = np.random.default_rng(1)
    bn = BatchNorm1d(3, momentum=0.2)
    mean, var = np.zeros(3), np.ones(3)
    for step in range(6):
        x = rng.normal(step, 1.0 + step, size=(10, 3, 4))
        bn(Tensor(x.astype(np.float32)))
        mean = 0.8 * mean + 0.2 * x.mean(axis=(0, 2))
        var = 0.8 * var + 0.2 * x.var(axis=(0, 2), ddof=1)           # unbiased for the running estimate
    assert bn.running_mean.dtype == np.float32 and bn.num_batches_tracked == 6
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)


def test_momentum_extremes_and_cumulative_average():
    rng = np.random.default_rng(2)
    batches = [rng.normal(i, 1.0, size=(8, 2)) for i in range(4)]
    last = BatchNorm1d(2, momentum=1.0, dtype=F64)
    frozen = BatchNorm1d(2, momentum=0.0, dtype=F64)
    cumulative = BatchNorm1d(2, momentum=None, dtype=F64)
    for b in batches:
        for layer in (last, frozen, cumulative):
            layer(Tensor(b, dtype=F64))
    np.testing.assert_allclose(last.running_mean, batches[-1].mean(axis=0))
    np.testing.assert_allclose(last.running_var, batches[-1].var(axis=0, ddof=1))
    assert (frozen.running_mean == 0).all() and (frozen.running_var == 1).all()
    np.testing.assert_allclose(cumulative.running_mean, np.mean([b.mean(axis=0) for b in batches], axis=0))
    np.testing.assert_allclose(cumulative.running_var, np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0))


def test_eval_uses_running_statistics_and_updates_nothing():
    rng = np.random.default_rng(3)
    bn = BatchNorm2d(3)
    for _ in range(5):
        bn(Tensor(rng.normal(2.0, 4.0, size=(6, 3, 4, 4)).astype(np.float32)))
    bn.weight.data[:] = [1.0, 2.0, 3.0]
    bn.bias.data[:] = [0.0, 1.0, -1.0]
    mean, var, count = bn.running_mean.copy(), bn.running_var.copy(), bn.num_batches_tracked
    x = rng.normal(2.0, 4.0, size=(1, 3, 4, 4)).astype(np.float32)   # a single image works in eval
    bn.eval()
    out = bn(Tensor(x))
    np.testing.assert_allclose(out.data, np_batch_norm(x, bn.weight.data, bn.bias.data, mean, var), rtol=1e-5, atol=1e-5)
    assert np.array_equal(bn.running_mean, mean) and np.array_equal(bn.running_var, var)
    assert bn.num_batches_tracked == count
    train_out = bn.train()(Tensor(np.repeat(x, 2, axis=0)))
    assert not np.allclose(train_out.data[:1], out.data, atol=1e-2), "training mode uses the batch's own statistics"


def test_eval_mode_gradient_is_a_per_channel_scale():
    bn = BatchNorm1d(2, dtype=F64)
    bn.running_mean[:] = [1.0, -1.0]
    bn.running_var[:] = [4.0, 0.25]
    bn.weight.data[:] = [3.0, 1.0]
    bn.eval()
    x = t64(5, 2)
    bn(x).backward(np.ones((5, 2)))
    np.testing.assert_allclose(x.grad.data, np.broadcast_to([3.0 / np.sqrt(4 + EPS), 1.0 / np.sqrt(0.25 + EPS)], (5, 2)))


def test_affine_false_has_no_parameters_and_pure_normalisation():
    bn = BatchNorm2d(4, affine=False)
    assert bn.weight is None and bn.bias is None and bn.num_parameters() == 0
    x = np.random.default_rng(4).normal(5, 2, size=(3, 4, 2, 5))
    np.testing.assert_allclose(bn(Tensor(x, dtype=F64)).data, np_batch_norm(x), rtol=1e-6, atol=1e-6)
    assert repr(bn) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=False)"
    ln = LayerNorm((2, 5), elementwise_affine=False)
    assert ln.num_parameters() == 0
    np.testing.assert_allclose(ln(Tensor(x, dtype=F64)).data, np_layer_norm(x, 2), rtol=1e-6, atol=1e-6)


def test_running_statistics_are_buffers_not_parameters():
    bn = BatchNorm1d(3)
    names = [n for n, _ in bn.named_parameters()]
    assert names == ["weight", "bias"]
    assert all(isinstance(p, Parameter) for p in bn.parameters())
    assert isinstance(bn.running_mean, np.ndarray) and isinstance(bn.running_var, np.ndarray)
    net = Sequential(Dense(4, 3), BatchNorm1d(3), ReLU())
    assert [n for n, _ in net.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    net.eval()
    assert not net[1].training


def test_batch_norm_under_no_grad_still_updates_in_training_mode():
    bn = BatchNorm1d(2)
    with no_grad():
        out = bn(Tensor(np.array([[0.0, 1.0], [2.0, 3.0]])))
    assert out._ctx is None and bn.num_batches_tracked == 1
    np.testing.assert_allclose(bn.running_mean, [0.1, 0.2], rtol=1e-6)


# ---- errors -------------------------------------------------------------------------------
def test_batch_norm_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(16\): expected input \(N, 16, H, W\), got \(2, 3, 8, 8\)"):
        BatchNorm2d(16)(Tensor(np.ones((2, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\): expected input \(N, 3, H, W\), got \(2, 3, 8\)"):
        BatchNorm2d(3)(Tensor(np.ones((2, 3, 8))))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected input \(N, 4\) or \(N, 4, L\), got \(2, 4, 3, 3\)"):
        BatchNorm1d(4)(Tensor(np.ones((2, 4, 3, 3))))
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 4\)"):
        BatchNorm1d(4)(Tensor(np.ones((1, 4))))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\) for input \(2, 3\), got \(4,\)"):
        batch_norm(Tensor(np.ones((2, 3))), np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], got None"):
        batch_norm(Tensor(np.ones((2, 3))), np.zeros(3), np.ones(3), momentum=None)
    with pytest.raises(ValueError, match="evaluation mode needs running_mean"):
        batch_norm(Tensor(np.ones((2, 3))), None, None, training=False)
    for bad in (dict(num_features=0), dict(num_features=3, momentum=1.5), dict(num_features=3, eps=0.0),
                dict(num_features=2.0)):
        with pytest.raises(ValueError, match="BatchNorm1d"):
            BatchNorm1d(**bad)


def test_layer_norm_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"LayerNorm\(\(128,\)\): expected input \(\.\.\., 128\), got \(2, 5, 64\)"):
        LayerNorm(128)(Tensor(np.ones((2, 5, 64))))
    with pytest.raises(ValueError, match=r"LayerNorm\(\(4, 3\)\): expected input \(\.\.\., 4, 3\), got \(3,\)"):
        LayerNorm((4, 3))(Tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\), got \(4,\)"):
        layer_norm(Tensor(np.ones((2, 3))), 3, Tensor(np.ones(4)), Tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="normalized_shape"):
        LayerNorm(0)


# ---- LayerNorm ------------------------------------------------------------------------------
def test_layer_norm_on_tokens_b_t_c():
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 5.0, size=(4, 16, 128)).astype(np.float32)
    ln = LayerNorm(128)
    ln.weight.data[:] = rng.standard_normal(128)
    ln.bias.data[:] = rng.standard_normal(128)
    out = ln(Tensor(x))
    assert out.shape == (4, 16, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, np_layer_norm(x.astype(F64), 1, ln.weight.data, ln.bias.data), atol=2e-5)
    plain = LayerNorm(128)(Tensor(x)).data
    np.testing.assert_allclose(plain.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(plain.var(-1), 1, atol=1e-3)
    ln.eval()
    np.testing.assert_array_equal(ln(Tensor(x)).data, out.data), "no train/eval difference"


def test_layer_norm_over_several_trailing_dims_and_examples_are_independent():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 4, 5))
    ln = LayerNorm((4, 5), dtype=F64)
    assert ln.weight.shape == (4, 5)
    out = ln(Tensor(x, dtype=F64)).data
    np.testing.assert_allclose(out, np_layer_norm(x, 2), rtol=1e-6, atol=1e-8)
    x2 = x.copy()
    x2[0] *= 100.0                                     # changing one example leaves the others alone
    out2 = ln(Tensor(x2, dtype=F64)).data
    np.testing.assert_allclose(out2[1:], out[1:])
    whole = LayerNorm((2, 4, 5), dtype=F64)(Tensor(x, dtype=F64)).data
    np.testing.assert_allclose(whole, np_layer_norm(x, 3), rtol=1e-6, atol=1e-8)


def test_layer_norm_keeps_float32_gradients():
    ln = LayerNorm(8)
    x = Tensor(np.random.default_rng(7).standard_normal((2, 3, 8)), requires_grad=True)
    (ln(x) * Tensor(np.arange(8.0))).sum().backward()
    assert x.grad.dtype == np.float32 and ln.weight.grad.dtype == np.float32 and ln.bias.grad.dtype == np.float32
    np.testing.assert_allclose(ln.bias.grad.data, 6 * np.arange(8.0))


# ---- gradient checks (float64) --------------------------------------------------------------
def _bn_case(layer_cls, shape, train=True, affine=True, warmup=0, seed=0):
    def build():
        layer = layer_cls(shape[1], affine=affine, dtype=F64)
        rng = np.random.default_rng(seed)
        if affine:
            layer.weight.data[:] = rng.normal(1.0, 0.5, size=shape[1])
            layer.bias.data[:] = rng.standard_normal(shape[1])
        for _ in range(warmup):                                  # non-trivial running statistics
            layer(Tensor(rng.normal(1.0, 2.0, size=shape), dtype=F64))
        layer.train(train)
        x = t64(*shape, seed=seed + 1, loc=0.5, scale=2.0)
        return (lambda x, *p: layer(x)), [x, *layer.parameters()]
    return build


def _ln_case(shape, normalized, affine=True, seed=0):
    def build():
        layer = LayerNorm(normalized, elementwise_affine=affine, dtype=F64)
        rng = np.random.default_rng(seed)
        if affine:
            layer.weight.data[:] = rng.normal(1.0, 0.5, size=layer.weight.shape)
            layer.bias.data[:] = rng.standard_normal(layer.bias.shape)
        x = t64(*shape, seed=seed + 1, loc=-1.0, scale=3.0)
        return (lambda x, *p: layer(x)), [x, *layer.parameters()]
    return build


def _conv_bn_relu_case():
    conv = Conv2d(2, 3, 3, padding=1, dtype=F64, rng=np.random.default_rng(0))
    bn = BatchNorm2d(3, dtype=F64)
    x = t64(2, 2, 4, 4, seed=1)
    params = conv.parameters() + bn.parameters()
    return (lambda x, *p: (bn(conv(x)) * 2.0).exp()), [x, *params]


def _transformer_like_case():
    ln = LayerNorm(4, dtype=F64)
    proj = Dense(4, 4, dtype=F64, rng=np.random.default_rng(0))
    x = t64(2, 3, 4, seed=2)
    return (lambda x, *p: x + proj(ln(x))), [x, *ln.parameters(), *proj.parameters()]


GRADCHECK_CASES = {
    "batchnorm1d_2d_input": _bn_case(BatchNorm1d, (5, 3)),
    "batchnorm1d_3d_input": _bn_case(BatchNorm1d, (3, 2, 4)),
    "batchnorm2d": _bn_case(BatchNorm2d, (2, 3, 3, 2)),
    "batchnorm2d_no_affine": _bn_case(BatchNorm2d, (2, 2, 2, 3), affine=False),
    "batchnorm1d_eval": _bn_case(BatchNorm1d, (4, 3), train=False, warmup=3),
    "batchnorm2d_eval_no_affine": _bn_case(BatchNorm2d, (2, 2, 2, 2), train=False, affine=False, warmup=2),
    "batch_norm_functional_x_only_requires_grad": lambda: (
        lambda x: batch_norm(x, None, None, Tensor(np.array([2.0, -1.0]), dtype=F64),
                             Tensor(np.array([0.5, 0.0]), dtype=F64)), [t64(4, 2, seed=3)]),
    "layernorm_last_dim": _ln_case((3, 5), 5),
    "layernorm_tokens_btc": _ln_case((2, 3, 6), 6),
    "layernorm_two_dims": _ln_case((2, 3, 4), (3, 4)),
    "layernorm_no_affine": _ln_case((4, 5), 5, affine=False),
    "conv_batchnorm_chain": _conv_bn_relu_case,
    "pre_layernorm_residual": _transformer_like_case,
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


def test_every_op_of_this_module_is_in_a_gradcheck_case():
    assert {BatchNormFunction, LayerNormFunction} <= ops_in_cases(GRADCHECK_CASES)


# ---- end to end -------------------------------------------------------------------------------
def test_batch_norm_rescues_a_badly_scaled_deep_network():
    """Ten Dense+ReLU layers with weights scaled by 0.3: the plain net's output vanishes and it
    does not move in 60 SGD steps; with BatchNorm1d after each Dense it fits the targets (a
    linear function), evaluated in eval mode with the running statistics."""
    rng = np.random.default_rng(8)
    x = Tensor(rng.standard_normal((64, 8)).astype(np.float32))
    y = Tensor((x.data @ rng.standard_normal((8, 1))).astype(np.float32))

    def build(with_bn):
        layers = []
        local = np.random.default_rng(9)
        for i in range(10):
            d = Dense(8 if i == 0 else 32, 32, rng=local)
            d.weight.data *= 0.3
            layers += [d, BatchNorm1d(32), ReLU()] if with_bn else [d, ReLU()]
        return Sequential(*layers, Dense(32, 1, rng=local))

    losses = {}
    for with_bn in (False, True):
        net = build(with_bn)
        for _ in range(60):
            loss = ((net(x) - y) ** 2).mean()
            net.zero_grad()
            loss.backward()
            for p in net.parameters():
                p.data -= 0.05 * p.grad.data
        net.eval()
        losses[with_bn] = ((net(x) - y) ** 2).mean().item()
    baseline = float(np.mean(y.data ** 2))
    assert losses[True] < 0.05 * baseline, losses
    assert losses[False] > 0.9 * baseline, losses


def test_running_statistics_are_saved_and_restored_by_state_dict():
    from tinytorch.core.normalization import BatchNorm2d
    from tinytorch.core.layers import Sequential
    rng = np.random.default_rng(0)
    net = Sequential(BatchNorm2d(3))
    for _ in range(3):
        net(Tensor(rng.standard_normal((4, 3, 5, 5)) * 2 + 1))
    state = net.state_dict()
    assert {"layers.0.running_mean", "layers.0.running_var", "layers.0.num_batches_tracked"} <= set(state)
    fresh = Sequential(BatchNorm2d(3))
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.layers[0].running_mean, net.layers[0].running_mean)
    np.testing.assert_array_equal(fresh.layers[0].running_var, net.layers[0].running_var)
    assert int(fresh.layers[0].num_batches_tracked) == 3
    x = Tensor(rng.standard_normal((2, 3, 5, 5)))
    np.testing.assert_array_equal(fresh.eval()(x).data, net.eval()(x).data)
    assert len(fresh.parameters()) == 2, "buffers are not parameters"
