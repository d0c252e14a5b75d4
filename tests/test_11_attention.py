"""Tests for module 11 (attention): masks, scaled dot-product attention, SelfAttention,
MultiHeadAttention (heads, masks, cross-attention, dropout), the KV cache and plot_attention.

Attention adds one Function, the fused `ScaledMaskedSoftmax` (checked against its
composition from module-05 ops); the rest of its gradients come from composing MatMul, Add,
Reshape, Permute and Dropout. `GRADCHECK_CASES` checks the fused op and those compositions
in float64 (test_05_gradcheck gathers the dict too).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_helpers import gradcheck_test, t64
from tinytorch.core.attention import (
    KVCache, MultiHeadAttention, SelfAttention, additive_mask, causal_mask, plot_attention,
    scaled_dot_product_attention, scaled_masked_softmax, scaled_masked_softmax_composed)
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dropout
from tinytorch.core.losses import MSELoss
from tinytorch.core.tensor import Tensor

F64 = np.float64


def arr(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---- numpy references: loops over batch elements and heads, the definition ---------------
def softmax_rows(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_sdpa(q, k, v, mask=None):
    """q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) with equal leading axes; loops over them."""
    lead = q.shape[:-2]
    out = np.zeros((*lead, q.shape[-2], v.shape[-1]))
    weights = np.zeros((*lead, q.shape[-2], k.shape[-2]))
    full_mask = None if mask is None else np.broadcast_to(mask, weights.shape)
    for idx in np.ndindex(*lead):
        s = q[idx].astype(F64) @ k[idx].astype(F64).T / math.sqrt(q.shape[-1])
        if full_mask is not None:
            s = s + full_mask[idx]
        weights[idx] = softmax_rows(s)
        out[idx] = weights[idx] @ v[idx]
    return out, weights


def reference_mha(attn, query, key, value, mask=None):
    """Per-example, per-head loop: project, slice columns per head, attend, concatenate, project."""
    proj = [(p.weight.data.astype(F64), p.bias.data.astype(F64))
            for p in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj)]
    (Wq, bq), (Wk, bk), (Wv, bv), (Wo, bo) = proj
    B, Tq, C = query.shape
    Tk, nh = key.shape[1], attn.num_heads
    hs = C // nh
    full_mask = np.zeros((B, nh, Tq, Tk)) if mask is None else np.broadcast_to(mask, (B, nh, Tq, Tk))
    concat = np.zeros((B, Tq, C))
    for b in range(B):
        Q, K, V = query[b] @ Wq + bq, key[b] @ Wk + bk, value[b] @ Wv + bv
        for h in range(nh):
            cols = slice(h * hs, (h + 1) * hs)
            w = softmax_rows(Q[:, cols] @ K[:, cols].T / math.sqrt(hs) + full_mask[b, h])
            concat[b, :, cols] = w @ V[:, cols]
    return concat @ Wo + bo


# ---- masks -------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 2, 5])
def test_causal_mask_is_zero_on_and_below_the_diagonal(T):
    m = causal_mask(T)
    assert m.shape == (T, T) and m.dtype == np.float32
    i, j = np.indices((T, T))
    assert (m[j <= i] == 0).all() and np.isneginf(m[j > i]).all()
    assert m.flags.writeable, "callers get their own array"


def test_causal_mask_with_past_positions():
    m = causal_mask(3, dtype=F64, past=4)
    assert m.shape == (3, 7) and m.dtype == F64
    for i in range(3):
        assert (m[i, :4 + i + 1] == 0).all() and np.isneginf(m[i, 4 + i + 1:]).all()
    assert np.array_equal(causal_mask(3, past=4), causal_mask(7)[4:])


@pytest.mark.parametrize("T, past", [(0, 0), (3, -1)])
def test_causal_mask_rejects_bad_sizes(T, past):
    with pytest.raises(ValueError):
        causal_mask(T, past=past)


def test_additive_mask_converts_may_attend_booleans():
    allowed = np.tril(np.ones((4, 4), bool))
    assert np.array_equal(additive_mask(allowed), causal_mask(4))
    pad = additive_mask(Tensor(np.array([[True, True, False]])), dtype=F64)
    assert pad.dtype == F64 and pad[0, 0] == 0 and np.isneginf(pad[0, 2])
    with pytest.raises(TypeError):
        additive_mask(np.ones((2, 2)))


# ---- scaled dot-product attention --------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), H=st.integers(1, 3), Tq=st.integers(1, 5), Tk=st.integers(1, 6),
       d=st.integers(1, 6), dv=st.integers(1, 5), masked=st.booleans(), seed=st.integers(0, 10_000))
def test_sdpa_matches_loop_reference(B, H, Tq, Tk, d, dv, masked, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, H, T, n)).astype(np.float32) for T, n in ((Tq, d), (Tk, d), (Tk, dv)))
    mask = None
    if masked:
        allowed = rng.random((B, 1, Tq, Tk)) < 0.6
        allowed[..., rng.integers(0, Tk)] = True               # every query keeps at least one key
        mask = additive_mask(allowed)
    out, weights = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask=mask)
    ref_out, ref_w = reference_sdpa(q, k, v, mask)
    assert out.shape == (B, H, Tq, dv) and weights.shape == (B, H, Tq, Tk)
    assert out.dtype == np.float32 and weights.dtype == np.float32
    np.testing.assert_allclose(weights.data, ref_w, atol=1e-5)
    np.testing.assert_allclose(out.data, ref_out, atol=1e-5)
    if masked:
        assert (weights.data[np.broadcast_to(np.isneginf(mask), weights.shape)] == 0).all()


def test_sdpa_broadcasts_leading_axes():
    q = arr(2, 3, 4, 5)                         # (B, nh, Tq, d)
    k, v = arr(6, 5, seed=1), arr(6, 2, seed=2)  # one set of keys/values for every batch and head
    out, weights = scaled_dot_product_attention(q, k, v)
    ref_out, ref_w = reference_sdpa(q, np.broadcast_to(k, (2, 3, 6, 5)), np.broadcast_to(v, (2, 3, 6, 2)))
    assert out.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(out.data, ref_out, atol=1e-5)
    np.testing.assert_allclose(weights.data, ref_w, atol=1e-5)


def test_sdpa_unbatched_and_dtypes():
    out, weights = scaled_dot_product_attention(Tensor(arr(3, 4), dtype=F64), Tensor(arr(5, 4, seed=1), dtype=F64),
                                                Tensor(arr(5, 2, seed=2), dtype=F64))
    assert out.shape == (3, 2) and out.dtype == F64 and weights.dtype == F64, "float64 stays float64"
    np.testing.assert_allclose(weights.data.sum(axis=-1), 1, atol=1e-12)


def test_sdpa_is_stable_for_huge_scores():
    q = Tensor(arr(2, 3, 4) * 1e4)
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no inf, no nan (underflow to 0 is fine)
        out, weights = scaled_dot_product_attention(q, q, q, mask=causal_mask(3))
    assert np.isfinite(out.data).all() and np.isfinite(weights.data).all()


def test_sdpa_dropout_on_weights_only_in_training():
    q, k, v = Tensor(arr(2, 4, 3)), Tensor(arr(2, 5, 3, seed=1)), Tensor(arr(2, 5, 6, seed=2))
    plain, w_plain = scaled_dot_product_attention(q, k, v)
    drop = Dropout(0.5, rng=np.random.default_rng(0))
    out, weights = scaled_dot_product_attention(q, k, v, dropout=drop)
    np.testing.assert_allclose(weights.data, w_plain.data, atol=1e-7)   # weights are returned before dropout
    keep = np.random.default_rng(0).random(weights.shape) >= 0.5        # the same draw as Dropout's
    np.testing.assert_allclose(out.data, (w_plain.data * keep / 0.5) @ v.data, atol=1e-5)
    assert not np.allclose(out.data, plain.data)
    drop.eval()
    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, dropout=drop)[0].data, plain.data, atol=1e-7)


@pytest.mark.parametrize("shapes, mask, match", [
    (((2, 3, 4), (2, 5, 3), (2, 5, 2)), None, "same last dimension d"),
    (((2, 3, 4), (2, 5, 4), (2, 6, 2)), None, "same number of positions Tk"),
    (((4,), (5, 4), (5, 2)), None, "at least 2 dimensions"),
    (((2, 3, 4), (3, 5, 4), (3, 5, 2)), None, "do not broadcast"),
    (((2, 3, 4), (2, 5, 4), (2, 5, 2)), np.zeros((3, 3), np.float32), r"mask of shape \(3, 3\) does not broadcast"),
    (((2, 3, 4), (2, 5, 4), (2, 5, 2)), np.zeros((4, 2, 3, 5), np.float32), "does not broadcast"),
    (((2, 3, 4), (2, 5, 4), (2, 5, 2)), np.full((1, 5), -np.inf, np.float32), "hides every key"),
    (((2, 3, 4), (2, 5, 4), (2, 5, 2)), np.array(-np.inf, np.float32), "every key"),
])
def test_sdpa_errors_name_the_function_and_shapes(shapes, mask, match):
    q, k, v = (arr(*s, seed=i) for i, s in enumerate(shapes))
    with pytest.raises(ValueError):
        scaled_dot_product_attention(q, k, v, mask=mask)


@pytest.mark.parametrize("mask, match", [(np.ones((3, 5), bool), "additive_mask"),
                                         (np.zeros((3, 5), np.int64), "float array")])
def test_sdpa_refuses_non_float_masks(mask, match):
    with pytest.raises(TypeError):
        scaled_dot_product_attention(arr(3, 4), arr(5, 4, seed=1), arr(5, 2, seed=2), mask=mask)


def test_learned_additive_bias_receives_a_gradient():
    bias = Tensor(np.zeros((3, 5)), dtype=F64, requires_grad=True)
    out, _ = scaled_dot_product_attention(t64(2, 3, 4), t64(2, 5, 4, seed=1), t64(2, 5, 2, seed=2), mask=bias)
    out.sum().backward()
    assert bias.grad is not None and bias.grad.shape == (3, 5) and np.abs(bias.grad.data).sum() > 0


# ---- SelfAttention -----------------------------------------------------------------------
def test_self_attention_matches_reference_and_keeps_weights():
    sa = SelfAttention(6, rng=np.random.default_rng(0))
    x = arr(2, 5, 6, seed=1)
    pad = np.zeros((2, 1, 5), np.float32)
    pad[1, :, 3:] = -np.inf
    out, weights = sa(Tensor(x), mask=pad, return_weights=True)
    q, k, v = (x @ p.weight.data + p.bias.data for p in (sa.q_proj, sa.k_proj, sa.v_proj))
    ref_out, ref_w = reference_sdpa(q, k, v, pad)
    assert out.shape == (2, 5, 6) and weights.shape == (2, 5, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, ref_out, atol=1e-5)
    np.testing.assert_allclose(sa.last_weights, ref_w, atol=1e-5)
    assert isinstance(sa(Tensor(x)), Tensor), "without return_weights: only the output"
    assert [n for n, _ in sa.named_parameters()] == [
        "q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"]


def test_self_attention_causal_plus_padding_and_errors():
    sa = SelfAttention(4, causal=True, rng=np.random.default_rng(0))
    x = Tensor(arr(3, 4, seed=2))                           # unbatched (T, C) works too
    pad = np.array([0, 0, -np.inf], np.float32)             # key 2 is padding
    sa(x, mask=pad)
    expected = np.tril(np.ones((3, 3), bool))
    expected[:, 2] = False
    assert (sa.last_weights[~expected] == 0).all() and np.allclose(sa.last_weights.sum(-1), 1)
    with pytest.raises(ValueError):
        sa(Tensor(arr(3, 5)))
    with pytest.raises(ValueError):
        SelfAttention(0)
    with pytest.raises(TypeError):
        sa(x, mask=np.ones((3, 3), bool))


@settings(max_examples=20, deadline=None)
@given(T=st.integers(2, 7), cut=st.integers(0, 6), num_heads=st.sampled_from([1, 2, 4]),
       single=st.booleans(), seed=st.integers(0, 10_000))
def test_causality_future_tokens_never_change_the_past(T, cut, num_heads, single, seed):
    """Property: with causal attention, changing the tokens after position t leaves the
    outputs at positions <= t unchanged."""
    cut = cut % (T - 1)                                      # positions > cut change
    rng = np.random.default_rng(seed)
    layer = (SelfAttention(8, causal=True, rng=rng) if single
             else MultiHeadAttention(8, num_heads, causal=True, rng=rng))
    x = rng.standard_normal((2, T, 8)).astype(np.float32)
    changed = x.copy()
    changed[:, cut + 1:] = rng.standard_normal((2, T - cut - 1, 8)) * 10
    before, after = layer(Tensor(x)).data, layer(Tensor(changed)).data
    np.testing.assert_allclose(after[:, :cut + 1], before[:, :cut + 1], atol=1e-6)
    assert not np.allclose(after[:, cut + 1:], before[:, cut + 1:], atol=1e-3), "the future did change"


# ---- MultiHeadAttention ------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(num_heads=st.sampled_from([1, 2, 3, 6]), B=st.integers(1, 3), Tq=st.integers(1, 5),
       Tk=st.integers(1, 5), cross=st.booleans(), seed=st.integers(0, 10_000))
def test_mha_matches_per_head_loop(num_heads, B, Tq, Tk, cross, seed):
    rng = np.random.default_rng(seed)
    attn = MultiHeadAttention(12, num_heads, rng=rng)
    query = rng.standard_normal((B, Tq, 12)).astype(np.float32)
    key = rng.standard_normal((B, Tk if cross else Tq, 12)).astype(np.float32) if cross else query
    allowed = rng.random((B, 1, 1, key.shape[1])) < 0.7
    allowed[..., 0] = True
    mask = additive_mask(allowed)                           # key padding, per example
    out, weights = attn(Tensor(query), Tensor(key), Tensor(key), mask=mask, return_weights=True)
    assert out.shape == (B, Tq, 12) and weights.shape == (B, num_heads, Tq, key.shape[1])
    np.testing.assert_allclose(out.data, reference_mha(attn, query, key, key, mask), atol=2e-5)
    assert attn.last_weights is weights.data


def test_mha_causal_self_attention_and_value_defaults_to_key():
    rng = np.random.default_rng(0)
    attn = MultiHeadAttention(8, 2, causal=True, rng=rng)
    x = arr(2, 5, 8, seed=3)
    np.testing.assert_allclose(attn(Tensor(x)).data, reference_mha(attn, x, x, x, causal_mask(5)), atol=1e-5)
    assert np.allclose(np.triu(attn.last_weights, k=1), 0)
    memory = arr(2, 7, 8, seed=4)
    cross = MultiHeadAttention(8, 2, rng=rng)
    np.testing.assert_allclose(cross(Tensor(x), Tensor(memory)).data,
                               reference_mha(cross, x, memory, memory), atol=1e-5)
    # causal with more keys than queries: the queries are the last Tq positions
    causal_cross = MultiHeadAttention(8, 2, causal=True, rng=rng)
    np.testing.assert_allclose(causal_cross(Tensor(x), Tensor(memory)).data,
                               reference_mha(causal_cross, x, memory, memory, causal_mask(5, past=2)), atol=1e-5)


def test_mha_one_head_is_self_attention_plus_output_projection():
    mha = MultiHeadAttention(6, 1, causal=True, rng=np.random.default_rng(1))
    sa = SelfAttention(6, causal=True, rng=np.random.default_rng(1))
    x = Tensor(arr(3, 4, 6))
    np.testing.assert_allclose(mha(x).data, mha.out_proj(sa(x)).data, atol=1e-5)


def test_split_and_merge_heads_are_inverse_reshapes():
    attn = MultiHeadAttention(6, 3)
    x = Tensor(np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6))
    heads = attn.split_heads(x)
    assert heads.shape == (2, 3, 4, 2)
    assert np.array_equal(heads.data[1, 2, 3], x.data[1, 3, 4:6]), "head h holds columns h*hs:(h+1)*hs"
    assert np.array_equal(attn.merge_heads(heads).data, x.data)


def test_mha_parameters_names_and_dtypes():
    attn = MultiHeadAttention(8, 4, bias=True)
    names = [n for n, _ in attn.named_parameters()]
    assert names == [f"{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")]
    assert attn.num_parameters() == 4 * (8 * 8 + 8) and attn.head_dim == 2
    assert MultiHeadAttention(8, 4, bias=False).num_parameters() == 4 * 64
    a64 = MultiHeadAttention(8, 2, dtype=F64)
    out = a64(Tensor(arr(1, 3, 8), dtype=F64))
    assert out.dtype == F64 and a64.last_weights.dtype == F64
    assert MultiHeadAttention(8, 2)(Tensor(arr(1, 3, 8))).dtype == np.float32, "the 1/sqrt(hs) factor keeps float32"


def test_mha_dropout_is_active_only_in_training():
    attn = MultiHeadAttention(8, 2, dropout=0.5, rng=np.random.default_rng(0))
    x = Tensor(arr(4, 16, 8))
    assert attn.training
    a, b = attn(x).data, attn(x).data
    assert not np.allclose(a, b), "two training passes draw different dropout masks"
    assert 0.4 < (a == 0).mean() < 0.6, "the output dropout zeroes about p of the outputs"
    weights = attn.last_weights
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-5)   # kept weights are the pre-dropout ones
    attn.eval()
    assert not attn.attn_dropout.training and not attn.out_dropout.training
    np.testing.assert_allclose(attn(x).data, reference_mha(attn, x.data, x.data, x.data), atol=1e-5)


@pytest.mark.parametrize("build, error, match", [
    (lambda: MultiHeadAttention(10, 3), ValueError, "d_model=10 is not divisible by num_heads=3"),
    (lambda: MultiHeadAttention(8, 0), ValueError, "must be positive"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 6)))), ValueError, r"query of shape \(2, 5, 6\)"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((5, 8)))), ValueError, r"\(B, T, d_model=8\)"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 8))), Tensor(np.ones((2, 4, 7)))), ValueError,
     r"key of shape \(2, 4, 7\)"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 8))), Tensor(np.ones((2, 4, 8))),
                                      Tensor(np.ones((2, 3, 8)))), ValueError, "length Tk"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 8))), Tensor(np.ones((3, 4, 8)))), ValueError,
     "batch size"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 8))), value=Tensor(np.ones((2, 5, 8)))), ValueError,
     "no key"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((2, 5, 8))), mask=np.zeros((2, 3, 5, 5), np.float32)),
     ValueError, r"mask of shape \(2, 3, 5, 5\) does not broadcast"),
    (lambda: MultiHeadAttention(8, 2, causal=True)(Tensor(np.ones((2, 5, 8))), mask=np.zeros((4, 4), np.float32)),
     ValueError, "does not broadcast with the causal mask"),
    (lambda: MultiHeadAttention(8, 2, causal=True)(Tensor(np.ones((1, 5, 8))), Tensor(np.ones((1, 3, 8)))),
     ValueError, "at least as many keys"),
    (lambda: MultiHeadAttention(8, 2)(Tensor(np.ones((1, 5, 8))), mask=np.ones((5, 5), bool)), TypeError,
     "additive_mask"),
])
def test_mha_errors_name_the_layer_and_shapes(build, error, match):
    with pytest.raises(error):
        build()


# ---- gradient checks (float64) -----------------------------------------------------------
def _sdpa_dropout_case():
    q, k, v = t64(2, 3, 4), t64(2, 4, 4, seed=1), t64(2, 4, 3, seed=2)
    # a fresh generator per call: every evaluation draws the same dropout mask
    return (lambda q, k, v: scaled_dot_product_attention(
        q, k, v, dropout=Dropout(0.3, rng=np.random.default_rng(4)))[0]), [q, k, v]


def _self_attention_case():
    sa = SelfAttention(4, causal=True, dtype=F64, rng=np.random.default_rng(0))
    return (lambda x, *p: sa(x)), [t64(2, 3, 4, seed=3), *sa.parameters()]


def _mha_masked_case():
    attn = MultiHeadAttention(6, 3, causal=True, dtype=F64, rng=np.random.default_rng(1))
    pad = np.zeros((2, 1, 1, 4))
    pad[1, ..., 3] = -np.inf
    return (lambda x, *p: attn(x, mask=pad)), [t64(2, 4, 6, seed=4), *attn.parameters()]


def _mha_cross_case():
    attn = MultiHeadAttention(4, 2, dtype=F64, rng=np.random.default_rng(2))
    return (lambda q, m, *p: attn(q, m)), [t64(2, 2, 4, seed=5), t64(2, 3, 4, seed=6), *attn.parameters()]


def _mha_dropout_case():
    attn = MultiHeadAttention(4, 2, dropout=0.25, dtype=F64, rng=np.random.default_rng(3))

    def f(x, *p):
        attn.attn_dropout.rng = np.random.default_rng(7)     # same masks at every evaluation
        attn.out_dropout.rng = np.random.default_rng(8)
        return attn(x)
    return f, [t64(1, 3, 4, seed=7), *attn.parameters()]


# name -> () -> (function, inputs), as in tests/test_05_gradcheck.py
GRADCHECK_CASES = {
    "scaled_masked_softmax": lambda: (lambda s: scaled_masked_softmax(s, 0.3),
                                      [t64(2, 3, 4)]),
    "scaled_masked_softmax_learned_mask": lambda: (lambda s, m: scaled_masked_softmax(s, 0.6, m),
                                                   [t64(2, 2, 3, 4), t64(3, 4, seed=1)]),
    "scaled_masked_softmax_reused_scores": lambda: (lambda s: scaled_masked_softmax(s, 1.5, s) * s,
                                                    [t64(3, 3)]),
    "sdpa_qkv": lambda: (lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
                         [t64(2, 3, 4), t64(2, 5, 4, seed=1), t64(2, 5, 3, seed=2)]),
    "sdpa_weights": lambda: (lambda q, k: scaled_dot_product_attention(q, k, k)[1],
                             [t64(3, 4), t64(5, 4, seed=1)]),
    "sdpa_heads_causal": lambda: (lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=causal_mask(3, F64))[0],
                                  [t64(2, 2, 3, 2), t64(2, 2, 3, 2, seed=1), t64(2, 2, 3, 2, seed=2)]),
    "sdpa_shared_keys": lambda: (lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
                                 [t64(2, 2, 3, 2), t64(4, 2, seed=1), t64(4, 3, seed=2)]),
    "sdpa_learned_bias": lambda: (lambda q, b: scaled_dot_product_attention(q, q, q, mask=b)[0],
                                  [t64(2, 3, 4), t64(3, 3, seed=1)]),
    "sdpa_dropout": _sdpa_dropout_case,
    "self_attention_causal": _self_attention_case,
    "mha_causal_padding": _mha_masked_case,
    "mha_cross": _mha_cross_case,
    "mha_dropout": _mha_dropout_case,
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


# ---- KV cache ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (F64, 1e-12)])
@pytest.mark.parametrize("chunks", [(1,) * 9, (4, 1, 1, 3), (9,), (2, 3, 1, 1, 2)])
def test_kv_cache_matches_full_recomputation(dtype, tol, chunks):
    rng = np.random.default_rng(sum(chunks) * 7 + len(chunks))
    attn = MultiHeadAttention(16, 4, causal=True, dtype=dtype, rng=rng).eval()
    x = Tensor(rng.standard_normal((2, 9, 16)), dtype=dtype)
    with no_grad():
        full = attn(x).data
        cache = attn.new_cache(2, max_len=12)
        start, pieces = 0, []
        for t in chunks:
            out = attn(x[:, start:start + t], cache=cache)
            assert out.dtype == dtype and attn.last_weights.shape == (2, 4, t, start + t)
            pieces.append(out.data)
            start += t
    assert len(cache) == 9 and cache.remaining == 3
    assert np.abs(np.concatenate(pieces, axis=1) - full).max() < tol


def test_kv_cache_with_padding_mask_and_weights():
    rng = np.random.default_rng(0)
    attn = MultiHeadAttention(8, 2, causal=True, rng=rng).eval()
    x = Tensor(rng.standard_normal((2, 6, 8)))
    pad = np.zeros((2, 1, 1, 6), np.float32)
    pad[1, ..., 1] = -np.inf                               # example 1: position 1 is padding
    with no_grad():
        full, full_w = attn(x, mask=pad, return_weights=True)
        cache = attn.new_cache(2, 6)
        first, w1 = attn(x[:, :3], cache=cache, mask=pad[..., :3], return_weights=True)
        rest = [attn(x[:, t:t + 1], cache=cache, mask=pad[..., :t + 1]) for t in range(3, 6)]
    np.testing.assert_allclose(np.concatenate([first.data] + [r.data for r in rest], axis=1), full.data, atol=1e-5)
    np.testing.assert_allclose(w1.data, full_w.data[:, :, :3, :3], atol=1e-6)
    np.testing.assert_allclose(attn.last_weights, full_w.data[:, :, 5:], atol=1e-6)


def test_kv_cache_decoding_with_dropout_layer_in_eval_mode_is_deterministic():
    attn = MultiHeadAttention(8, 2, dropout=0.5, causal=True, rng=np.random.default_rng(0)).eval()
    x = Tensor(arr(1, 4, 8))
    with no_grad():
        runs = []
        for _ in range(2):
            cache = attn.new_cache(1, 4)
            runs.append(np.concatenate([attn(x[:, t:t + 1], cache=cache).data for t in range(4)], axis=1))
        np.testing.assert_allclose(runs[0], attn(x).data, atol=1e-5)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_kv_cache_refusals():
    attn = MultiHeadAttention(8, 2, causal=True)
    x = Tensor(arr(1, 3, 8))
    cache = attn.new_cache(1, 4)
    with pytest.raises(RuntimeError):
        attn(x, cache=cache)
    with no_grad():
        with pytest.raises(ValueError):
            attn(x, x, cache=cache)
        with pytest.raises(ValueError):
            attn(Tensor(arr(2, 1, 8)), cache=cache)        # batch 2 vs a cache for batch 1
        with pytest.raises(ValueError):
            attn(x, cache=KVCache(1, 4, 8, 2))             # wrong number of heads
        with pytest.raises(TypeError):
            attn(x, cache=KVCache(1, 2, 8, 4, dtype=F64))
        attn(x, cache=cache)
        with pytest.raises(ValueError):
            attn(x[:, :2], cache=cache)
        assert len(cache) == 3, "a refused append leaves the cache as it was"
        cache.reset()
        assert attn(x, cache=cache).shape == (1, 3, 8)


def test_kv_cache_object():
    cache = KVCache(2, 3, 5, 4)
    assert (cache.batch_size, cache.num_heads, cache.max_len, cache.head_dim) == (2, 3, 5, 4)
    assert cache.dtype == np.float32 and cache.nbytes == 2 * 2 * 3 * 5 * 4 * 4 and len(cache) == 0
    a, b = arr(2, 3, 2, 4), arr(2, 3, 3, 4, seed=1)
    cache.append(a, -a)
    keys, values = (t.data for t in cache.append(b, -b))
    assert np.array_equal(keys, np.concatenate([a, b], axis=2)) and np.array_equal(values, -keys)
    assert np.shares_memory(keys, cache.key_buffer) and cache.remaining == 0
    cache.drop_oldest(3)
    assert len(cache) == 2 and np.array_equal(cache.keys, b[:, :, 1:]) and np.array_equal(cache.values, -b[:, :, 1:])
    cache.drop_oldest(0)
    assert len(cache) == 2
    with pytest.raises(ValueError):
        cache.drop_oldest(3)
    with pytest.raises(ValueError):
        cache.append(arr(2, 3, 1, 5), arr(2, 3, 1, 5))
    with pytest.raises(ValueError):
        cache.append(arr(2, 3, 1, 4), arr(2, 3, 2, 4))
    with pytest.raises(ValueError):
        KVCache(1, 0, 4, 4)
    cache.reset()
    assert cache.keys.shape == (2, 3, 0, 4) and "length=0" in repr(cache)
    made = MultiHeadAttention(12, 3, dtype=F64).new_cache(batch_size=2, max_len=7)
    assert made.key_buffer.shape == (2, 3, 7, 4) and made.dtype == F64


# ---- plotting ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, tokens", [((4, 4), list("abcd")), ((3, 2, 5), None), ((2, 4, 3, 3), ["x", "y", "z"])])
def test_plot_attention_writes_a_png(tmp_path, shape, tokens):
    w = softmax_rows(np.random.default_rng(0).standard_normal(shape))
    path = tmp_path / "attention.png"
    fig = plot_attention(Tensor(w), tokens=tokens, path=path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    heads = 1 if len(shape) == 2 else shape[-3]
    assert sum(len(ax.images) for ax in fig.axes) == heads, "one heatmap per head"
    assert [p.name for p in tmp_path.iterdir()] == ["attention.png"], "no temporary file left behind"


def test_plot_attention_refuses_bad_input():
    with pytest.raises(ValueError):
        plot_attention(np.ones(5))
    with pytest.raises(ValueError):
        plot_attention(np.ones((3, 3)) / 3, tokens=["a", "b"])


# ---- end to end: attention learns content-based lookup ----------------------------------
def test_self_attention_learns_to_find_the_flagged_position():
    """Every position must output the content of the one flagged position: only attention,
    putting its weight on the flagged key, can do that."""
    rng, T, d = np.random.default_rng(0), 6, 6

    def batch(n=32):
        x = np.zeros((n, T, d), np.float32)
        x[..., :d - 1] = rng.standard_normal((n, T, d - 1))
        where = rng.integers(0, T, size=n)
        x[np.arange(n), where, d - 1] = 1.0
        target = np.repeat(x[np.arange(n), where][:, None], T, axis=1)
        target[..., d - 1] = 0.0
        return Tensor(x), Tensor(target), where

    head = SelfAttention(d, rng=np.random.default_rng(1))
    velocity = {id(p): np.zeros_like(p.data) for p in head.parameters()}
    for _ in range(250):
        x, y, _ = batch()
        loss = MSELoss()(head(x), y)
        head.zero_grad()
        loss.backward()
        for p in head.parameters():
            velocity[id(p)] = 0.9 * velocity[id(p)] + p.grad.data
            p.data -= 0.05 * velocity[id(p)]
    x, y, where = batch(64)
    with no_grad():
        final = MSELoss()(head(x), y).item()
    on_flag = head.last_weights[np.arange(64), :, where].mean()
    assert final < 0.02 and on_flag > 0.85, (final, on_flag)


# ---- the fused ScaledMaskedSoftmax against its composition ---------------------------------
@settings(max_examples=30, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), tq=st.integers(1, 5), tk=st.integers(1, 5),
       scale=st.floats(0.05, 4.0), mask_kind=st.sampled_from(["none", "full", "row", "causal"]),
       seed=st.integers(0, 10_000))
def test_fused_softmax_equals_composition(lead, tq, tk, scale, mask_kind, seed):
    rng = np.random.default_rng(seed)
    s_np = rng.standard_normal((*lead, tq, tk)) * 3
    mask_np = {"none": None, "full": rng.standard_normal((*lead, tq, tk)), "row": rng.standard_normal(tk),
               "causal": causal_mask(tq, past=tk - tq, dtype=F64) if tk >= tq else None}[mask_kind]
    results = []
    for fn in (scaled_masked_softmax, scaled_masked_softmax_composed):
        s = Tensor(s_np, dtype=F64, requires_grad=True)
        m = None if mask_np is None else Tensor(mask_np, dtype=F64, requires_grad=True)
        a = fn(s, scale, m)
        weights = Tensor(np.cos(np.arange(a.size)).reshape(a.shape), dtype=F64)   # a generic upstream gradient
        (a * weights).sum().backward()
        results.append((a.data, s.grad.data, None if m is None else m.grad.data))
    (a1, gs1, gm1), (a2, gs2, gm2) = results
    np.testing.assert_allclose(a1, a2, atol=1e-12)
    np.testing.assert_allclose(gs1, gs2, atol=1e-12)
    if gm1 is not None:
        assert gm1.shape == np.shape(mask_np)
        np.testing.assert_allclose(gm1, gm2, atol=1e-12)


def test_fused_softmax_keeps_float32_and_zeroes_masked_keys():
    s = Tensor(arr(2, 3, 4), requires_grad=True)
    a = scaled_masked_softmax(s, 0.5, Tensor(causal_mask(3, past=1)))
    assert a.dtype == np.float32 and a.shape == (2, 3, 4)
    assert (a.data[:, 0, 2:] == 0).all() and (a.data[:, 1, 3:] == 0).all()
    np.testing.assert_allclose(a.data.sum(-1), 1, rtol=1e-6)
    a.sum().backward()
    assert s.grad.dtype == np.float32
    np.testing.assert_allclose(s.grad.data, 0, atol=1e-6)     # rows sum to 1: d(sum)/ds = 0
