"""Tests for module 12 (compression): magnitude pruning, masks through fine-tuning, int8
quantisation, integer products, quantised layers, calibration, compact model files, and the
compression milestone's --quick run on generated data.

Module 12 adds no Function: `Pruned` composes Mul, MatMul/Add and Conv2dFunction, and the
quantised layers are inference-only. `GRADCHECK_CASES` still checks the gradients of the
pruned layers' composed forward (collected by tests/test_05_gradcheck.py too).
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_helpers import gradcheck_test, t64
from tinytorch.core.activations import GELU, ReLU, Tanh
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dense, Dropout, Flatten, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD, Adam, AdamW
from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d, im2col
from tinytorch.core.tensor import Tensor, get_rng, manual_seed
from tinytorch.core.training import CheckpointError, Trainer, save_npz_checkpoint
from tinytorch.optim.compression import (
    COMPRESSED_KIND, INT8_MAX, Pruned, QuantizedConv2d, QuantizedDense, SparsityReport, calibrate, dequantize,
    evaluate_accuracy, global_magnitude_masks, int8_matmul, int8_matmul_reference, lamp_scores, load_compressed,
    magnitude_mask,
    model_size_bytes, prunable_layers, prune_magnitude, prune_structured, pruned_count, quantize, quantize_model,
    quantize_per_channel, remove_pruning, save_compressed, sparsity, symmetric_scale, unit_norms)

ROOT = Path(__file__).resolve().parents[1]
from test_milestones import write_fake_cifar  # noqa: E402  (the tiny generated CIFAR-10 of the milestone tests)
F64 = np.float64


def _pruned_dense_case():
    rng = np.random.default_rng(0)
    layer = Pruned(Dense(5, 4, dtype=F64, rng=rng), rng.random((5, 4)) > 0.4)
    return (lambda x, w, b: Pruned(_with(Dense(5, 4, dtype=F64, rng=rng), w, b), layer.weight_mask)(x),
            [t64(3, 5, seed=1), t64(5, 4, seed=2), t64(4, seed=3)])


def _pruned_conv_case():
    rng = np.random.default_rng(1)
    mask = rng.random((3, 2, 2, 2)) > 0.5
    return (lambda x, w, b: Pruned(_with(Conv2d(2, 3, 2, padding=1, dtype=F64, rng=rng), w, b), mask, [1, 0, 1])(x),
            [t64(2, 2, 3, 3, seed=4), t64(3, 2, 2, 2, seed=5), t64(3, seed=6)])


def _with(layer, weight, bias):
    """`layer` with its Parameters replaced by the given Tensors (so gradcheck perturbs them)."""
    layer.weight, layer.bias = weight, bias
    return layer


#: float64 gradient checks of the pruned layers' composed forward (inputs, weights and biases)
GRADCHECK_CASES = {"pruned_dense": _pruned_dense_case, "pruned_conv2d": _pruned_conv_case}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


def mlp(rng, sizes=(16, 32, 32, 4)):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [Dense(a, b, rng=rng), ReLU()]
    return Sequential(layers[:-1])


def blobs(n, seed, dim=16, classes=4, spread=2.0):
    r = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((classes, dim)) * spread
    y = r.integers(0, classes, n)
    return (centres[y] + r.standard_normal((n, dim))).astype(np.float32), y.astype(np.int64)


def batches(x, y, size=64):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained on generated 4-class data: (model, train batches, test batches)."""
    manual_seed(0)
    tx, ty = blobs(2000, 1)
    vx, vy = blobs(2000, 2)
    model = mlp(np.random.default_rng(0), sizes=(16, 64, 64, 4))
    Trainer(model, Adam(model.parameters(), lr=3e-3), CrossEntropyLoss(), progress=False).fit(batches(tx, ty), epochs=3)
    return model, batches(tx, ty), batches(vx, vy, 500)


# ---- masks ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), amount=st.floats(0, 1),
       seed=st.integers(0, 10_000), ties=st.booleans())
def test_magnitude_mask_removes_exactly_the_requested_count(shape, amount, seed, ties):
    rng = np.random.default_rng(seed)
    w = rng.integers(-2, 3, size=shape).astype(np.float32) if ties else rng.standard_normal(shape)
    keep = magnitude_mask(w, amount)
    k = pruned_count(amount, w.size)
    assert keep.shape == w.shape and keep.dtype == bool
    assert np.count_nonzero(~keep) == k == min(w.size, int(np.floor(amount * w.size + 0.5)))
    if 0 < k < w.size:
        assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=4),
       amount=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_global_masks_remove_exactly_the_requested_count_overall(shapes, amount, seed):
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(s) * rng.uniform(0.01, 3) for s in shapes]
    keeps = global_magnitude_masks(weights, amount)
    total = sum(w.size for w in weights)
    assert [k.shape for k in keeps] == [w.shape for w in weights]
    assert sum(np.count_nonzero(~k) for k in keeps) == pruned_count(amount, total)
    removed = np.concatenate([np.abs(w[~k]) for w, k in zip(weights, keeps)])
    kept = np.concatenate([np.abs(w[k]) for w, k in zip(weights, keeps)])
    if removed.size and kept.size:
        assert removed.max() <= kept.min(), "one threshold for all layers"


def lamp_reference(w):
    """The definition, one weight at a time: w_i^2 over the sum of w_j^2 of every w_j at least as large."""
    sq = np.asarray(w, dtype=F64).ravel() ** 2
    out = np.empty_like(sq)
    order = np.argsort(sq, kind="stable")
    for rank, i in enumerate(order):
        rest = sq[order[rank:]].sum()
        out[i] = sq[i] / rest if rest > 0 else 0.0
    return out.reshape(np.shape(w))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), zeros=st.floats(0, 0.9), seed=st.integers(0, 10_000))
def test_lamp_scores_follow_the_definition(shape, zeros, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * (rng.random(shape) >= zeros)
    scores = lamp_scores(w)
    assert scores.shape == w.shape and scores.dtype == F64
    np.testing.assert_allclose(scores, lamp_reference(w), rtol=1e-12, atol=0)
    assert (scores[w == 0] == 0).all(), "pruned weights score 0: they go first"
    if np.any(w != 0):
        assert scores[np.unravel_index(np.argmax(np.abs(w)), w.shape)] == 1.0, "the largest weight scores 1"


def test_lamp_never_empties_a_layer_of_small_weights():
    rng = np.random.default_rng(3)
    small = Dense(4, 4, rng=rng)
    small.weight.data *= 0.001                                   # 16 weights, a thousand times smaller
    big = Dense(4, 64, rng=rng)
    for scope, small_layer_emptied in (("global", True), ("lamp", False)):
        model = Sequential(copy.deepcopy(small), copy.deepcopy(big))
        prune_magnitude(model, 0.9, scope=scope)
        report = sparsity(model)
        assert report.zeros == pruned_count(0.9, 16 + 256)
        assert (report.layers["layers.0"][0] == 16) == small_layer_emptied, (scope, report)


def test_mask_arguments_are_checked():
    for bad in (-0.1, 1.01, "half", True, float("nan")):
        with pytest.raises(ValueError, match="amount must be a fraction in"):
            magnitude_mask(np.ones(4), bad)
    with pytest.raises(ValueError, match="no weights"):
        global_magnitude_masks([], 0.5)


# ---- pruning a model -------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(amount=st.floats(0, 1), scope=st.sampled_from(["global", "lamp", "layer"]), seed=st.integers(0, 1000))
def test_prune_magnitude_reaches_the_requested_sparsity_exactly(amount, scope, seed):
    rng = np.random.default_rng(seed)
    model = Sequential(Conv2d(2, 3, 3, rng=rng), ReLU(), Flatten(), Dense(3 * 4 * 4, 7, rng=rng), Dense(7, 2, rng=rng))
    prune_magnitude(model, amount, scope=scope)
    report = sparsity(model)
    sizes = {"layers.0": 54, "layers.3": 336, "layers.4": 14}
    assert {k: n for k, (_, n) in report.layers.items()} == sizes
    if scope in ("global", "lamp"):
        assert report.zeros == pruned_count(amount, 404)
    else:
        assert all(report.layers[k][0] == pruned_count(amount, n) for k, n in sizes.items())
    assert all(isinstance(m, Pruned) for _, m in prunable_layers(model))
    assert model(Tensor(rng.standard_normal((2, 2, 6, 6)).astype(np.float32))).shape == (2, 2)


def test_pruned_forward_equals_the_layer_with_masked_weights():
    rng = np.random.default_rng(0)
    dense, conv = Dense(6, 5, rng=rng), Conv2d(3, 4, 3, stride=2, padding=1, rng=rng)
    dense.bias.data[:] = rng.standard_normal(5)
    conv.bias.data[:] = rng.standard_normal(4)
    x, img = rng.standard_normal((2, 3, 6)).astype(np.float32), rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    for layer, inp in [(dense, x), (conv, img)]:
        mask = rng.random(layer.weight.shape) > 0.5
        reference = copy.deepcopy(layer)
        reference.weight.data *= mask
        pruned = Pruned(layer, mask)
        np.testing.assert_allclose(pruned(Tensor(inp)).data, reference(Tensor(inp)).data, rtol=1e-6, atol=1e-6)
        assert np.all(layer.weight.data[~mask] == 0), "installing the mask zeroes the weights themselves"
        assert [n for n, _ in pruned.named_parameters()] == ["layer.weight", "layer.bias"]
        assert list(pruned.state_dict()) == ["layer.weight", "layer.bias", "weight_mask", "bias_mask"]


def test_pruned_checks_its_arguments():
    with pytest.raises(TypeError, match="can wrap a Dense or a Conv2d, got a ReLU"):
        Pruned(ReLU(), np.ones(3))
    with pytest.raises(ValueError, match=r"weight_mask of shape \(3, 4\) does not fit the weight of shape \(4, 3\)"):
        Pruned(Dense(4, 3), np.ones((3, 4)))
    with pytest.raises(ValueError, match="bias_mask given, but the Dense has no bias"):
        Pruned(Dense(4, 3, bias=False), np.ones((4, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"Pruned\(Dense\): input of shape \(2, 5\) does not fit"):
        Pruned(Dense(4, 3), np.ones((4, 3)))(Tensor(np.ones((2, 5))))
    with pytest.raises(TypeError, match="not the Dense itself"):
        prune_magnitude(Dense(4, 3), 0.5)
    with pytest.raises(KeyError, match=r"no Dense/Conv2d called \['layers.9'\]"):
        prune_magnitude(Sequential(Dense(4, 3)), 0.5, layers=["layers.9"])
    with pytest.raises(ValueError, match="scope must be 'global', 'lamp' or 'layer'"):
        prune_magnitude(Sequential(Dense(4, 3)), 0.5, scope="row")


def test_pruning_again_keeps_the_old_zeros_and_layers_can_be_chosen():
    rng = np.random.default_rng(2)
    model = mlp(rng)
    prune_magnitude(model, 0.5, layers=["layers.2"])
    assert isinstance(model[0], Dense) and isinstance(model[2], Pruned) and isinstance(model[4], Dense)
    first_mask = model[2].weight_mask.copy()
    prune_magnitude(model, 0.8, scope="layer")
    assert np.all(model[2].weight_mask[first_mask == 0] == 0), "masks only grow"
    assert sparsity(model).layers["layers.2"] == (pruned_count(0.8, 1024), 1024)
    zeros = sparsity(model).layers
    prune_magnitude(model, 0.3, scope="layer")                  # less than before: nothing comes back
    assert sparsity(model).layers == zeros


@pytest.mark.parametrize("norm", [1, 2])
def test_structured_pruning_removes_whole_units_by_norm(norm):
    rng = np.random.default_rng(3)
    model = Sequential(Conv2d(3, 10, 3, rng=rng), ReLU(), Flatten(), Dense(10 * 4 * 4, 8, rng=rng), ReLU(), Dense(8, 3, rng=rng))
    for _, layer in prunable_layers(model):
        layer.bias.data[:] = 1.0
    conv_w, dense_w = model[0].weight.data.copy(), model[3].weight.data.copy()
    ord_ = (lambda a, axes: np.abs(a).sum(axes)) if norm == 1 else (lambda a, axes: np.sqrt((a * a).sum(axes)))
    expect_filters = set(np.argsort(ord_(conv_w, (1, 2, 3)))[:4])
    expect_columns = set(np.argsort(ord_(dense_w, 0))[:3])
    np.testing.assert_allclose(unit_norms(model[0], norm), ord_(conv_w.astype(F64), (1, 2, 3)))
    prune_structured(model, 0.4, norm=norm)
    conv, dense = model[0], model[3]
    dead_filters = set(np.flatnonzero(np.all(conv.effective_weight() == 0, axis=(1, 2, 3))))
    dead_columns = set(np.flatnonzero(np.all(dense.effective_weight() == 0, axis=0)))
    assert dead_filters == expect_filters and dead_columns == expect_columns
    assert np.count_nonzero(conv.effective_weight()) == 6 * 27 and np.count_nonzero(dense.effective_weight()) == 160 * 5
    assert set(np.flatnonzero(conv.effective_bias() == 0)) == expect_filters
    assert isinstance(model[5], Dense), "the output layer is not pruned by default"
    out = model(Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32)))
    assert out.shape == (2, 3)
    hidden = model[:2](Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))).data
    assert np.all(hidden[:, sorted(expect_filters)] == 0), "a removed channel outputs exactly zero"
    prune_structured(model, 1 / 3, layers=["layers.5"])                # named explicitly: the output layer too
    assert np.all(model[5].effective_weight() == 0, axis=0).sum() == 1
    with pytest.raises(ValueError, match="norm must be 1"):
        prune_structured(model, 0.5, norm=3)


def test_remove_pruning_bakes_the_masks():
    rng = np.random.default_rng(4)
    model = prune_magnitude(mlp(rng), 0.6)
    x = Tensor(rng.standard_normal((3, 16)).astype(np.float32))
    before, zeros = model(x).data, sparsity(model).zeros
    remove_pruning(model)
    assert all(isinstance(m, Dense) for _, m in prunable_layers(model))
    np.testing.assert_array_equal(model(x).data, before)
    assert sparsity(model).zeros == zeros


def test_sparsity_report():
    model = Sequential(Dense(2, 2), Dense(2, 3))
    model[0].weight.data[:] = [[0, 1], [0, 0]]
    model[1].weight.data[:] = 1
    report = sparsity(model)
    assert isinstance(report, SparsityReport)
    assert report.layers == {"layers.0": (3, 4), "layers.1": (0, 6)}
    assert report.zeros == 3 and report.total == 10 and report.overall == pytest.approx(0.3)
    assert report.fraction("layers.0") == 0.75
    text = str(report)
    assert "layers.0" in text and "75.0%" in text and "overall" in text and "30.0%" in text
    with pytest.raises(TypeError, match="sparsity: expected a model"):
        sparsity(Dense(2, 2))


# ---- fine-tuning with masks ---------------------------------------------------------------------
@pytest.mark.parametrize("make_opt", [lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                      lambda p: Adam(p, lr=3e-3, weight_decay=1e-3),
                                      lambda p: AdamW(p, lr=3e-3, weight_decay=0.05)], ids=["sgd", "adam", "adamw"])
def test_masks_survive_optimizer_steps(make_opt, trained):
    model, train, _ = trained
    pruned = prune_magnitude(copy.deepcopy(model), 0.8)
    masks = {n: m.weight_mask.copy() for n, m in prunable_layers(pruned)}
    weights_before = {n: m.layer.weight.data.copy() for n, m in prunable_layers(pruned)}
    Trainer(pruned, make_opt(pruned.parameters()), CrossEntropyLoss(), progress=False).fit(train[:10], epochs=2)
    for name, layer in prunable_layers(pruned):
        assert np.array_equal(layer.weight_mask, masks[name])
        assert np.all(layer.layer.weight.data[masks[name] == 0] == 0), "pruned weights stay exactly zero"
        assert not np.array_equal(layer.layer.weight.data, weights_before[name]), "the others train"
    assert sparsity(pruned).zeros == pruned_count(0.8, sparsity(pruned).total)


def test_pruned_and_fine_tuned_model_stays_accurate(trained):
    model, train, test = trained
    dense_acc = evaluate_accuracy(model, test)
    pruned = prune_magnitude(copy.deepcopy(model), 0.8)
    tuner = Trainer(pruned, AdamW(pruned.parameters(), lr=3e-3, weight_decay=0.01), CrossEntropyLoss(), progress=False)
    tuner.fit(train, epochs=3)
    tuned = evaluate_accuracy(pruned, test)
    assert dense_acc > 0.95
    assert tuned >= dense_acc - 0.02, (dense_acc, tuned)
    assert sparsity(pruned).zeros == pruned_count(0.8, sparsity(pruned).total)


# ---- quantise / dequantise -------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 10_000),
       log_scale=st.floats(-6, 4), per_channel=st.booleans(), data=st.data())
def test_quantize_dequantize_error_is_at_most_half_a_step(shape, seed, log_scale, per_channel, data):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * 10.0 ** log_scale).astype(np.float32)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1)) if per_channel else None
    q, scale = quantize_per_channel(w, axis) if per_channel else (quantize(w, symmetric_scale(w)), symmetric_scale(w))
    assert q.dtype == np.int8 and q.shape == w.shape and np.abs(q.astype(int)).max() <= INT8_MAX
    deq = dequantize(q, scale, axis).astype(F64)
    s = scale if axis is None else scale.reshape([-1 if a == axis % len(shape) else 1 for a in range(len(shape))])
    assert deq.dtype == F64 and np.all(np.abs(w - deq) <= s / 2 * (1 + 1e-5))
    if axis is not None:
        assert scale.shape == (shape[axis],)


def test_scales_clipping_and_zero_channels():
    w = np.array([[0.5, 0.0, -2.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
    q, s = quantize_per_channel(w, axis=1)
    np.testing.assert_allclose(s, [1.0 / 127, 1.0, 2.0 / 127], rtol=1e-7)
    assert q.tolist() == [[64, 0, -127], [-127, 0, 64]]
    assert symmetric_scale(w).shape == () and symmetric_scale(np.zeros(3)) == 1.0
    assert quantize([300.0, -300.0, 1.2, 0.5, 1.5], 1.0).tolist() == [127, -127, 1, 0, 2], "clip; round half to even"
    np.testing.assert_array_equal(dequantize(np.array([1, -2], np.int8), 0.5), [0.5, -1.0])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        symmetric_scale(w, axis=2)
    with pytest.raises(ValueError, match="a per-tensor scale must be one number"):
        quantize(w, np.ones(3))


# ---- the integer product ------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 6), k=st.sampled_from([1, 7, 1023, 1024, 1025, 3000]), n=st.integers(1, 6),
       seed=st.integers(0, 10_000), extreme=st.booleans())
def test_int8_matmul_is_exactly_int32_accumulation(m, k, n, seed, extreme):
    rng = np.random.default_rng(seed)
    if extreme:
        a = np.full((m, k), -128, np.int8)
        b = rng.choice(np.array([-128, 127], np.int8), size=(k, n))
    else:
        a, b = rng.integers(-128, 128, (m, k), dtype=np.int8), rng.integers(-128, 128, (k, n), dtype=np.int8)
    got = int8_matmul(a, b)
    naive = np.einsum("mk,kn->mn", a.astype(np.int64), b.astype(np.int64))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, naive)
    np.testing.assert_array_equal(int8_matmul_reference(a, b), naive)


def test_int8_matmul_checks_operands():
    a = np.ones((2, 3), np.int8)
    with pytest.raises(TypeError, match="both operands must be int8, got float32 and int8"):
        int8_matmul(a.astype(np.float32), a.T)
    with pytest.raises(ValueError, match=r"expected \(M, K\) @ \(K, N\), got \(2, 3\) @ \(2, 3\)"):
        int8_matmul(a, a)
    big = np.zeros((1, 131_072), np.int8)
    with pytest.raises(ValueError, match="could overflow an int32 accumulator"):
        int8_matmul(big, big.T)


# ---- quantised layers ----------------------------------------------------------------------------
def naive_conv_int32(qx, qw, stride, padding):
    """Direct convolution in int64 with Python loops over output positions (independent of im2col)."""
    N, C, H, W = qx.shape
    O, _, kh, kw = qw.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), np.int64)
    xp[:, :, ph:ph + H, pw:pw + W] = qx
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    out = np.zeros((N, O, Ho, Wo), np.int64)
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, qw.astype(np.int64))
    return out


def dense_bound(x, w, s_x, s_w):
    """|y_q - y| bound of a quantised Dense, (M, out)."""
    K = w.shape[0]
    return s_x / 2 * np.abs(w).sum(0) + s_w / 2 * np.abs(x).sum(1, keepdims=True) + K * s_x * s_w / 4


@settings(max_examples=25, deadline=None)
@given(batch=st.lists(st.integers(1, 3), min_size=1, max_size=2), fan_in=st.integers(1, 50), out=st.integers(1, 9),
       seed=st.integers(0, 10_000), bias=st.booleans())
def test_quantized_dense_matches_float_within_the_bound_and_the_integer_reference(batch, fan_in, out, seed, bias):
    rng = np.random.default_rng(seed)
    dense = Dense(fan_in, out, bias=bias, rng=rng)
    if bias:
        dense.bias.data[:] = rng.standard_normal(out)
    x = rng.uniform(-3, 3, size=(*batch, fan_in)).astype(np.float32)
    s_x = float(symmetric_scale(x))
    layer = QuantizedDense.from_float(dense, s_x)
    got = layer(Tensor(x)).data
    assert got.shape == (*batch, out) and got.dtype == np.float32
    want = dense(Tensor(x)).data
    x2, got2, want2 = x.reshape(-1, fan_in), got.reshape(-1, out), want.reshape(-1, out)
    bound = dense_bound(x2.astype(F64), dense.weight.data.astype(F64), s_x, layer.weight_scale.astype(F64))
    assert np.all(np.abs(got2 - want2) <= bound * (1 + 1e-4) + 1e-6)
    ints = int8_matmul_reference(quantize(x2, s_x), layer.weight_q)
    expect = ints.astype(np.float32) * (np.float32(s_x) * layer.weight_scale) + (layer.bias if bias else 0)
    np.testing.assert_allclose(got2, expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride,padding", [((1, 1), (0, 0)), ((2, 1), (1, 2)), ((2, 2), (1, 1))])
def test_quantized_conv2d_matches_float_and_the_naive_integer_convolution(stride, padding):
    rng = np.random.default_rng(7)
    conv = Conv2d(3, 4, (3, 2), stride=stride, padding=padding, rng=rng)
    conv.bias.data[:] = rng.standard_normal(4)
    img = rng.uniform(-2, 2, size=(2, 3, 6, 7)).astype(np.float32)
    s_x = float(symmetric_scale(img))
    layer = QuantizedConv2d.from_float(conv, s_x)
    got, want = layer(Tensor(img)).data, conv(Tensor(img)).data
    assert got.shape == want.shape and got.dtype == np.float32
    ints = naive_conv_int32(quantize(img, s_x), layer.weight_q, stride, padding)
    expect = ints * (np.float32(s_x) * layer.weight_scale)[None, :, None, None] + layer.bias[None, :, None, None]
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    # the same bound as a Dense on each im2col column
    cols = im2col(img.astype(F64), (3, 2), stride, padding)                     # (K, N*L)
    bound = dense_bound(cols.T, conv.weight.data.reshape(4, -1).T.astype(F64), s_x, layer.weight_scale.astype(F64))
    err = np.abs(got - want).transpose(1, 0, 2, 3).reshape(4, -1).T           # (N*L, C_out), columns (n, y, x)
    assert np.all(err <= bound * (1 + 1e-4) + 1e-6)


def test_quantized_layers_are_inference_only_and_check_inputs():
    rng = np.random.default_rng(8)
    qd = QuantizedDense.from_float(Dense(4, 3, rng=rng), 0.05)
    qc = QuantizedConv2d.from_float(Conv2d(2, 3, 3, rng=rng), 0.05)
    with pytest.raises(RuntimeError, match="QuantizedDense is inference-only"):
        qd(Tensor(np.ones((2, 4)), requires_grad=True))
    with no_grad():
        assert qd(Tensor(np.ones((2, 4)), requires_grad=True)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"QuantizedDense: input of shape \(2, 5\) does not fit"):
        qd(Tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"QuantizedConv2d\(2->3\): expected input \(N, 2, H, W\), got \(1, 3, 5, 5\)"):
        qc(Tensor(np.ones((1, 3, 5, 5))))
    with pytest.raises(TypeError, match="weight_q must be int8, got float32"):
        QuantizedDense(np.ones((4, 3), np.float32), np.ones(3), 0.1)
    with pytest.raises(ValueError, match="weight_scale must hold 3 positive finite scales"):
        QuantizedDense(np.ones((4, 3), np.int8), np.ones(4), 0.1)
    with pytest.raises(ValueError, match="input_scale must be one positive finite number"):
        QuantizedDense(np.ones((4, 3), np.int8), np.ones(3), 0.0)
    assert qd.num_parameters() == 0 and set(qd.state_dict()) == {"weight_q", "weight_scale", "input_scale", "bias"}


# ---- calibration and quantize_model --------------------------------------------------------------
def test_quantized_model_keeps_accuracy_within_a_point(trained):
    model, train, test = trained
    calib = train[:5]
    q = quantize_model(model, calib)
    assert [type(m).__name__ for m in q] == ["QuantizedDense", "ReLU", "QuantizedDense", "ReLU", "QuantizedDense"]
    assert isinstance(model[0], Dense) and model.training, "the float model is unchanged"
    assert not q.training
    float_acc, int8_acc = evaluate_accuracy(model, test), evaluate_accuracy(q, test)
    assert abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)
    logits_f = model(Tensor(test[0][0])).data
    logits_q = q(Tensor(test[0][0])).data
    assert np.abs(logits_f - logits_q).mean() < 0.03 * np.abs(logits_f).mean()


def test_quantized_cnn_keeps_accuracy_and_other_layers():
    rng = np.random.default_rng(9)
    manual_seed(1)
    y = rng.integers(0, 3, 600)
    imgs = rng.normal(0, 0.5, size=(600, 1, 8, 8)).astype(np.float32)
    imgs[y == 0, :, :4, :] += 1.5                                     # the class is where the bright patch is
    imgs[y == 1, :, 4:, :] += 1.5
    imgs[y == 2, :, :, :4] += 1.5
    model = Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 6, 3), Tanh(), AvgPool2d(2),
                       Flatten(), Dropout(0.1), Dense(6, 3))
    data = batches(imgs[:400], y[:400], 50)
    Trainer(model, Adam(model.parameters(), lr=1e-2), CrossEntropyLoss(), progress=False).fit(data, epochs=4)
    test = batches(imgs[400:], y[400:], 100)
    q = quantize_model(model, [b[0] for b in data[:3]], method="percentile", percentile=99.9)
    assert [type(m).__name__ for m in q] == ["QuantizedConv2d", "ReLU", "MaxPool2d", "QuantizedConv2d", "Tanh",
                                             "AvgPool2d", "Flatten", "Dropout", "QuantizedDense"]
    float_acc, int8_acc = evaluate_accuracy(model, test), evaluate_accuracy(q, test)
    assert float_acc > 0.9 and abs(float_acc - int8_acc) <= 0.01, (float_acc, int8_acc)


def test_calibration_methods_and_errors(trained):
    model, train, _ = trained
    calib = train[:3]
    inputs = np.concatenate([b[0] for b in calib])
    scales = calibrate(model, calib)
    assert scales["layers.0"] == pytest.approx(np.abs(inputs).max() / 127, rel=1e-6)
    p = calibrate(model, [b[0] for b in calib], method="percentile", percentile=99.0)
    assert p["layers.0"] == pytest.approx(np.percentile(np.abs(inputs), 99.0) / 127, rel=1e-5)
    assert all(p[k] < scales[k] for k in scales)
    hidden = np.maximum(inputs @ model[0].weight.data + model[0].bias.data, 0)
    assert scales["layers.2"] == pytest.approx(np.abs(hidden).max() / 127, rel=1e-5)
    assert model.training and all(isinstance(m, Dense) for _, m in prunable_layers(model))
    with pytest.raises(ValueError, match="the calibration batches were empty"):
        calibrate(model, [])
    with pytest.raises(ValueError, match="method must be 'minmax' or 'percentile'"):
        calibrate(model, calib, method="mse")
    with pytest.raises(ValueError, match="has no Dense or Conv2d"):
        calibrate(Sequential(ReLU()), calib)


def test_sparse_model_stays_sparse_when_quantised(trained):
    model, train, test = trained
    pruned = prune_magnitude(copy.deepcopy(model), 0.8)
    q = quantize_model(pruned, train[:3])
    assert sparsity(q).zeros >= sparsity(pruned).zeros
    for name, layer in prunable_layers(pruned):
        qlayer = q[int(name.split(".")[1])]
        assert isinstance(qlayer, QuantizedDense)
        assert np.all(qlayer.weight_q[layer.weight_mask == 0] == 0), "pruned weights quantise to exactly 0"
    assert evaluate_accuracy(q, test) >= evaluate_accuracy(pruned, test) - 0.01


# ---- files ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wide():
    rng = np.random.default_rng(10)
    model = Sequential(Flatten(), Dense(512, 256, rng=rng), GELU(), Dropout(0.2), Dense(256, 10, rng=rng))
    calib = [rng.standard_normal((64, 2, 16, 16)).astype(np.float32)]
    x = Tensor(rng.standard_normal((5, 2, 16, 16)).astype(np.float32))
    return model, calib, x


def test_int8_file_is_about_4x_smaller_and_sparse_files_clearly_smaller(wide, tmp_path):
    model, calib, x = wide
    weights = 512 * 256 + 256 * 10
    f32 = model_size_bytes(save_compressed(model, tmp_path / "f32.npz"))
    assert 4 * weights < f32 < 4 * weights * 1.02
    i8 = model_size_bytes(save_compressed(quantize_model(model, calib), tmp_path / "i8.npz"))
    assert 3.8 < f32 / i8 < 4.0, (f32, i8)
    pruned = prune_magnitude(copy.deepcopy(model), 0.8)
    sp = model_size_bytes(save_compressed(pruned, tmp_path / "sp.npz"))
    assert 4.0 < f32 / sp < 1 / (1 / 32 + 0.2), (f32, sp)                # bitmask + 20% of the values
    forced_dense = model_size_bytes(save_compressed(pruned, tmp_path / "spd.npz", sparse=False))
    assert forced_dense >= f32 - 100
    spq = model_size_bytes(save_compressed(quantize_model(pruned, calib), tmp_path / "spq.npz"))
    assert f32 / spq > 10, (f32, spq)
    forced_sparse = model_size_bytes(save_compressed(model, tmp_path / "fs.npz", sparse=True))
    assert forced_sparse > f32, "a bitmask does not pay for dense weights"
    with pytest.raises(ValueError, match="sparse must be True, False or 'auto'"):
        save_compressed(model, tmp_path / "x.npz", sparse="yes")


def test_round_trip_gives_identical_outputs(wide, tmp_path):
    model, calib, x = wide
    model.eval()
    cnn = Sequential(Conv2d(2, 3, 3, stride=2, padding=1), ReLU(), MaxPool2d(2), Flatten(), Dense(48, 4, bias=False))
    variants = {"float": model, "pruned": prune_magnitude(copy.deepcopy(model), 0.7),
                "structured": prune_structured(copy.deepcopy(model), 0.5),
                "int8": quantize_model(model, calib), "sparse-int8": quantize_model(prune_magnitude(copy.deepcopy(model), 0.9), calib),
                "cnn": cnn, "cnn-int8": quantize_model(cnn, calib)}
    for name, m in variants.items():
        m.eval()
        path = save_compressed(m, tmp_path / f"{name}.npz", meta={"name": name})
        state = get_rng().bit_generator.state
        back = load_compressed(path)
        assert get_rng().bit_generator.state == state, "loading does not consume TinyTorch's random numbers"
        assert isinstance(back, Sequential) and not back.training
        np.testing.assert_array_equal(back(x).data, m(x).data, err_msg=name)
        assert [type(layer).__name__ for layer in back] == [
            type(layer.layer if isinstance(layer, Pruned) else layer).__name__ for layer in m]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.npz" for name in variants), \
        "atomic writes leave no temporary files"
    with np.load(tmp_path / "int8.npz", allow_pickle=False) as npz:
        assert npz["1.weight_q"].dtype == np.int8 and npz["1.weight_scale"].dtype == np.float32
    with np.load(tmp_path / "pruned.npz", allow_pickle=False) as npz:
        assert "1.weight.bitmask" in npz.files and "1.weight" not in npz.files
        assert npz["1.weight.values"].size + npz["4.weight.values"].size == 512 * 256 + 2560 - pruned_count(0.7, 512 * 256 + 2560)


def test_pruned_file_uses_a_bitmask_and_restores_the_zeros(tmp_path):
    rng = np.random.default_rng(11)
    model = prune_magnitude(Sequential(Dense(64, 32, rng=rng), ReLU(), Dense(32, 4, rng=rng)), 0.75)
    path = save_compressed(model, tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        assert {"0.weight.bitmask", "0.weight.values", "0.bias", "2.weight.bitmask"} <= files
        assert "0.weight" not in files
        kept = npz["0.weight.values"].size + npz["2.weight.values"].size
    assert kept == (64 * 32 + 32 * 4) - pruned_count(0.75, 64 * 32 + 32 * 4)
    back = load_compressed(path)
    np.testing.assert_array_equal(back[0].weight.data, model[0].effective_weight())


def test_saving_refuses_what_it_cannot_describe(tmp_path):
    class Custom(Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="cannot describe a Custom .at 1.; supported layers: Sequential, Dense"):
        save_compressed(Sequential(Dense(2, 2), Custom()), tmp_path / "c.npz")
    with pytest.raises(TypeError, match="expected a Sequential model, got a Dense"):
        save_compressed(Dense(2, 2), tmp_path / "d.npz")
    assert not (tmp_path / "c.npz").exists()


def test_model_size_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"x" * 1234)
    assert model_size_bytes(path) == 1234
    with pytest.raises(FileNotFoundError, match="model_size_bytes: no file at"):
        model_size_bytes(tmp_path / "missing.npz")


def test_corrupt_truncated_and_foreign_files_give_clear_errors(wide, tmp_path):
    model, calib, _ = wide
    good = save_compressed(quantize_model(model, calib), tmp_path / "good.npz")
    data = good.read_bytes()
    cases = {}
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    cases["truncated.npz"] = "truncated or corrupt"
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = "empty"
    with open(tmp_path / "pickled.npz", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    cases["pickled.npz"] = "pickle"
    (tmp_path / "text.npz").write_text("hello")
    cases["text.npz"] = "not an .npz"
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    cases["plain.npz"] = "without TinyTorch metadata"
    save_npz_checkpoint(tmp_path / "trainer.npz", {"model/w": np.ones(2)}, {}, kind="trainer")
    cases["trainer.npz"] = "is a 'trainer' checkpoint, expected 'compressed-model'"
    save_npz_checkpoint(tmp_path / "noarch.npz", {"0.weight": np.ones(2)}, {}, kind=COMPRESSED_KIND)
    cases["noarch.npz"] = "without a readable 'architecture.json' array"
    arch = json.dumps({"type": "Sequential", "layers": [{"type": "Dense", "bias": True,
                       "weight": {"shape": [3, 2], "dtype": "float32", "encoding": "dense"}}]}).encode()
    arrays = {"architecture.json": np.frombuffer(arch, np.uint8), "0.weight": np.ones((3, 2), np.float32)}
    save_npz_checkpoint(tmp_path / "nobias.npz", arrays, {}, kind=COMPRESSED_KIND)
    cases["nobias.npz"] = "array '0.bias' is missing"
    save_npz_checkpoint(tmp_path / "shape.npz", {**arrays, "0.weight": np.ones((2, 3), np.float32),
                                                 "0.bias": np.ones(2, np.float32)}, {}, kind=COMPRESSED_KIND)
    cases["shape.npz"] = r"array '0.weight' has shape \(2, 3\) and dtype float32, expected \(3, 2\)"
    save_npz_checkpoint(tmp_path / "extra.npz", {**arrays, "0.bias": np.ones(2, np.float32), "9.weight": np.ones(1)},
                        {}, kind=COMPRESSED_KIND)
    cases["extra.npz"] = r"arrays \['9.weight'\] belong to no layer"
    bad_json = {"architecture.json": np.frombuffer(b"{not json", np.uint8)}
    save_npz_checkpoint(tmp_path / "badjson.npz", bad_json, {}, kind=COMPRESSED_KIND)
    cases["badjson.npz"] = "the architecture is not valid JSON"
    unknown = {"architecture.json": np.frombuffer(json.dumps({"type": "Sequential", "layers": [{"type": "LSTM"}]}).encode(), np.uint8)}
    save_npz_checkpoint(tmp_path / "unknown.npz", unknown, {}, kind=COMPRESSED_KIND)
    cases["unknown.npz"] = "layer 0 has unknown type 'LSTM'"
    # a sparse weight whose values do not match its bitmask
    sparse_model = prune_magnitude(Sequential(Dense(8, 4)), 0.5)
    src = save_compressed(sparse_model, tmp_path / "sparse.npz")
    with np.load(src, allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files if k != "__meta__"}
    loaded["0.weight.values"] = loaded["0.weight.values"][:-1]
    save_npz_checkpoint(tmp_path / "values.npz", loaded, {}, kind=COMPRESSED_KIND)
    cases["values.npz"] = r"array '0.weight.values' has shape \(15,\)"
    corrupt = bytearray(data)
    middle = len(corrupt) // 2
    corrupt[middle:middle + 64] = bytes(64)
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    cases["corrupt.npz"] = "truncated or corrupt|arrays|shape|cannot be rebuilt|JSON"
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            load_compressed(tmp_path / name)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_compressed(tmp_path / "missing.npz")


# ---- the milestone -----------------------------------------------------------------------------------
def test_compression_milestone_runs_with_quick_on_generated_data(tmp_path):
    data = write_fake_cifar(tmp_path / "data")
    out = tmp_path / "out"
    env = dict(os.environ, TINYTORCH_DATA=str(data), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / "compression_cifar10.py"), "--quick", "--no-verify",
                           "--val-size", "40", "--no-progress", "--out-dir", str(out), "--models-dir", str(tmp_path / "models")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "is missing: training it now with python milestones/cifar10.py --model mlp" in proc.stdout
    assert (tmp_path / "models" / "mlp_cifar10.npz").exists() and (tmp_path / "models" / "lenet5_cifar10.npz").exists()
    result = json.loads((out / "compression_cifar10_quick.json").read_text())
    assert result["quick"] is True and result["command"].startswith("python milestones/compression_cifar10.py --quick")
    assert (out / "compression_cifar10_quick.png").stat().st_size > 1000
    for key in ("mlp", "lenet5"):
        model = result["models"][key]
        assert set(model["variants"]) == {"float32", "int8", "sparse80", "sparse80_int8"}
        v = model["variants"]
        assert v["float32"]["test_accuracy"] == pytest.approx(model["saved_test_accuracy"])
        assert v["sparse80"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
        assert v["int8"]["size_ratio"] > 3.4 and v["sparse80"]["size_ratio"] > 3.4 and v["sparse80_int8"]["size_ratio"] > 7
        assert [round(step["sparsity"], 3) for step in v["sparse80"]["steps"]] == [0.4, 0.6, 0.7, 0.75, 0.8]
        for entry in v.values():
            assert Path(entry["file"]).exists() and entry["bytes"] == Path(entry["file"]).stat().st_size
    # a second run finds the models and trains nothing
    proc = subprocess.run([sys.executable, str(ROOT / "milestones" / "compression_cifar10.py"), "--quick", "--no-verify",
                           "--val-size", "40", "--no-progress", "--out-dir", str(out), "--models-dir", str(tmp_path / "models"),
                           "--models", "lenet5"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is missing" not in proc.stdout
    # choosing a recipe: validation accuracy only, one appended line per candidate, the test set untouched
    for scope in ("global", "lamp"):
        proc = subprocess.run([sys.executable, str(ROOT / "milestones" / "compression_cifar10.py"), "--quick", "--no-verify",
                               "--val-size", "40", "--no-progress", "--out-dir", str(out), "--models-dir",
                               str(tmp_path / "models"), "--models", "lenet5", "--validation-only", "--scope", scope],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "test accuracy" not in proc.stdout and "validation accuracy" in proc.stdout
    lines = [json.loads(line) for line in (out / "compression_cifar10_quick_recipes.jsonl").read_text().splitlines()]
    assert [line["recipe"]["scope"] for line in lines] == ["global", "lamp"]
    assert all(0 <= line["val_accuracy"]["lenet5"] <= 1 and len(line["steps"]["lenet5"]) == 5 for line in lines)


@pytest.fixture
def milestone_modules(monkeypatch):
    """Import milestones/common.py and cifar10.py, and forget them afterwards (as test_milestones.py does)."""
    names = ["common", "cifar10"]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    monkeypatch.syspath_prepend(str(ROOT / "milestones"))
    import cifar10
    import common
    yield common, cifar10
    for n in names:
        sys.modules.pop(n, None)
    sys.modules.update(saved)


def test_milestones_save_model_option(tmp_path, milestone_modules):
    common, cifar10 = milestone_modules
    data = write_fake_cifar(tmp_path / "data")
    path = tmp_path / "models" / "m.npz"
    result = cifar10.main(["--model", "mlp", "--quick", "--no-verify", "--val-size", "40", "--no-progress",
                           "--data", str(data), "--out-dir", str(tmp_path), "--hidden", "32", "--save-model", str(path)])
    model, meta = common.load_trained_model(path, cifar10.build_mlp)
    assert meta["build_model"] == {"hidden": [32], "activation": "relu", "dropout": 0.1}
    assert meta["test_accuracy"] == result["test_accuracy"] and result["saved_model"] == str(path.resolve())
    assert model.num_parameters() == 3072 * 32 + 32 + 32 * 10 + 10
    assert cifar10.parse_args(["--model", "mlp"]).save_model is None, "off by default"
    with pytest.raises(CheckpointError, match="is a 'trainer' checkpoint, expected 'milestone-model'"):
        save_npz_checkpoint(tmp_path / "t.npz", {}, {}, kind="trainer")
        common.load_trained_model(tmp_path / "t.npz", cifar10.build_mlp)
