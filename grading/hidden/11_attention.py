# Hidden tests of module 11_attention. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-masks
# other sizes and offsets of the causal mask, and dtype and shape of additive_mask for 3-D and Tensor inputs
for h_T, h_past in [(1, 0), (5, 2), (3, 6)]:
    h_m = causal_mask(h_T, past=h_past)
    h_ref = np.where(np.arange(h_past + h_T)[None, :] <= np.arange(h_T)[:, None] + h_past, 0.0, -np.inf)
    assert h_m.shape == (h_T, h_past + h_T) and h_m.dtype == np.float32 and np.array_equal(h_m, h_ref), (h_T, h_past)
h_allowed = np.random.default_rng(110).random((2, 3, 4)) > 0.4
h_add = additive_mask(h_allowed)
assert h_add.shape == (2, 3, 4) and h_add.dtype == np.float32, "float32 by default"
assert np.all(h_add[h_allowed] == 0) and np.all(np.isneginf(h_add[~h_allowed]))
h_add64 = additive_mask(Tensor(h_allowed.astype(np.float32)).data.astype(bool), dtype=np.float64)
assert h_add64.dtype == np.float64 and np.array_equal(h_add64, h_add)

# %% grade_id: test-scaled-masked-softmax
# the fused softmax on huge scores (finite, NaN-free, exact masked zeros, float32 and float64), with large finite mask offsets, broadcast padding masks, and its backward (scores and a learned broadcast mask) against float64 central differences
def h_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


h_rng = np.random.default_rng(111)
h_s = h_rng.standard_normal((2, 3, 4, 6)) * 1e4                     # exp(1e4) overflows any float
h_pad = np.zeros((2, 1, 1, 6))
h_pad[1, ..., 4:] = -np.inf                                          # padding keys of batch element 1
h_shift = np.full((4, 6), -2000.0)                                   # a large finite offset on whole rows (ALiBi-like)
h_shift[0] = 0.0
h_shift[:, 5] = -np.inf
for h_dtype in (np.float64, np.float32):
    for h_mask in (None, h_pad, h_shift):
        h_a = scaled_masked_softmax(Tensor(h_s, dtype=h_dtype), 0.5, None if h_mask is None else Tensor(h_mask, dtype=h_dtype))
        h_ref = h_softmax(0.5 * h_s.astype(h_dtype).astype(np.float64) + (0.0 if h_mask is None else h_mask))
        assert h_a.dtype == h_dtype and np.all(np.isfinite(h_a.data)), "huge scores: finite, no NaN"
        assert np.allclose(h_a.data, h_ref, atol=1e-6) and np.allclose(h_a.data.sum(axis=-1), 1, atol=1e-6)
        if h_mask is not None:
            assert np.all(h_a.data[np.broadcast_to(np.isneginf(h_mask), h_a.shape)] == 0), "masked keys: exactly 0"
h_big = Tensor(h_s, dtype=np.float64, requires_grad=True)
scaled_masked_softmax(h_big, 1.0, Tensor(h_pad, dtype=np.float64)).backward(h_rng.standard_normal(h_s.shape))
assert np.all(np.isfinite(h_big.grad.data)), "huge scores: a finite gradient"
h_s = h_rng.standard_normal((2, 2, 3, 5)) * 10.0                    # saturating but differentiable scores
h_m = h_rng.standard_normal((3, 5))                                 # a learned bias, broadcast over batch and heads
h_G = h_rng.standard_normal(h_s.shape)
h_st, h_mt = Tensor(h_s.copy(), dtype=np.float64, requires_grad=True), Tensor(h_m.copy(), dtype=np.float64, requires_grad=True)
scaled_masked_softmax(h_st, 0.37, h_mt).backward(h_G)
h_loss = lambda s, m: float(np.sum(h_softmax(0.37 * s + m) * h_G))
for h_arr, h_t, h_other in [(h_s, h_st, "scores"), (h_m, h_mt, "mask")]:
    h_num = np.zeros_like(h_arr)
    for h_idx in np.ndindex(h_arr.shape):
        h_old = h_arr[h_idx]
        h_arr[h_idx] = h_old + 1e-6
        h_up = h_loss(h_s, h_m)
        h_arr[h_idx] = h_old - 1e-6
        h_down = h_loss(h_s, h_m)
        h_arr[h_idx] = h_old
        h_num[h_idx] = (h_up - h_down) / 2e-6
    assert h_t.grad.shape == h_arr.shape and np.allclose(h_t.grad.data, h_num, rtol=1e-5, atol=1e-7), ("gradient of", h_other)
h_s2 = Tensor(h_rng.standard_normal((3, 4)), dtype=np.float64, requires_grad=True)
h_fixed = np.where(np.tri(3, 4, 1, dtype=bool), 0.0, -np.inf)
h_G2 = h_rng.standard_normal((3, 4))
scaled_masked_softmax(h_s2, 2.0, Tensor(h_fixed, dtype=np.float64)).backward(h_G2)
h_a2 = h_softmax(2.0 * h_s2.data + h_fixed)
assert np.allclose(h_s2.grad.data, 2.0 * h_a2 * (h_G2 - (h_G2 * h_a2).sum(-1, keepdims=True))), "constant mask, scale 2"
assert np.all(h_s2.grad.data[np.isneginf(h_fixed)] == 0), "masked scores get no gradient"

# %% grade_id: test-sdpa
# 4-D heads with broadcast keys/values and float64, huge scores, gradients for q, k, v against float64 central differences, and dropout on the weights (not on the returned ones)
def h_sdpa_ref(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1]) + (0.0 if mask is None else mask)
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return w @ v, w


h_rng = np.random.default_rng(112)
h_q, h_k, h_v = h_rng.standard_normal((2, 3, 4, 5)), h_rng.standard_normal((1, 3, 6, 5)), h_rng.standard_normal((1, 3, 6, 2))
h_pad = np.zeros((2, 1, 1, 6))
h_pad[0, ..., :2] = -np.inf
h_out, h_w = scaled_dot_product_attention(Tensor(h_q, dtype=np.float64), Tensor(h_k, dtype=np.float64),
                                          Tensor(h_v, dtype=np.float64), mask=h_pad)
h_ro, h_rw = h_sdpa_ref(h_q, h_k, h_v, h_pad)
assert h_out.shape == (2, 3, 4, 2) and h_out.dtype == np.float64 and np.allclose(h_out.data, h_ro) and np.allclose(h_w.data, h_rw)
h_huge = scaled_dot_product_attention(*(Tensor(a, dtype=np.float64) for a in (h_q * 300.0, h_k * 300.0, h_v)),
                                      mask=causal_mask(4, past=2))[0].data
assert np.all(np.isfinite(h_huge)) and np.allclose(h_huge, h_sdpa_ref(h_q * 300.0, h_k * 300.0, h_v, causal_mask(4, past=2))[0]), \
    "huge scores stay finite"
h_arrays = [h_rng.standard_normal((2, 3, 4)), h_rng.standard_normal((2, 5, 4)), h_rng.standard_normal((2, 5, 3))]
h_mask = causal_mask(3, past=2, dtype=np.float64)
h_G = h_rng.standard_normal((2, 3, 3))
h_ts = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in h_arrays]
scaled_dot_product_attention(*h_ts, mask=h_mask)[0].backward(h_G)
for h_n, h_t in enumerate(h_ts):
    h_a, h_num = h_arrays[h_n], np.zeros_like(h_arrays[h_n])
    for h_idx in np.ndindex(h_a.shape):
        h_old = h_a[h_idx]
        h_a[h_idx] = h_old + 1e-6
        h_up = np.sum(h_sdpa_ref(*h_arrays, h_mask)[0] * h_G)
        h_a[h_idx] = h_old - 1e-6
        h_down = np.sum(h_sdpa_ref(*h_arrays, h_mask)[0] * h_G)
        h_a[h_idx] = h_old
        h_num[h_idx] = (h_up - h_down) / 2e-6
    assert np.allclose(h_t.grad.data, h_num, rtol=1e-5, atol=1e-7), ("gradient of", "qkv"[h_n])
h_drop = Dropout(0.5, rng=np.random.default_rng(7))
h_twin = np.random.default_rng(7).random((2, 3, 4, 6)) >= 0.5     # the same draws the dropout will make
h_out, h_w = scaled_dot_product_attention(*(Tensor(a, dtype=np.float64) for a in (h_q, h_k, h_v)), dropout=h_drop)
h_ro, h_rw = h_sdpa_ref(h_q, h_k, h_v)
assert np.allclose(h_w.data, h_rw), "the returned weights are those before dropout"
assert np.allclose(h_out.data, (h_rw * h_twin * 2.0) @ h_v, atol=1e-10), "dropout is applied to the weights that multiply v"
h_drop.eval()
assert np.allclose(scaled_dot_product_attention(*(Tensor(a, dtype=np.float64) for a in (h_q, h_k, h_v)), dropout=h_drop)[0].data, h_ro)

# %% grade_id: test-self-attention
# causal attention plus a user padding mask with non-zero biases, a non-causal unbatched (T, d) input, and the input gradient against float64 central differences
h_rng = np.random.default_rng(113)
h_sa = SelfAttention(4, causal=True, dtype=np.float64, rng=h_rng)
for h_p in (h_sa.q_proj, h_sa.k_proj, h_sa.v_proj):
    h_p.bias.data = h_rng.standard_normal(4)
h_x = h_rng.standard_normal((2, 5, 4))
h_pad = np.zeros((2, 1, 5))
h_pad[1, :, 3:] = -np.inf                                  # batch element 1: keys 3 and 4 are padding


def h_sa_ref(layer, x, mask):
    q, k, v = (x @ p.weight.data + p.bias.data for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    s = q @ np.swapaxes(k, -1, -2) / 2.0 + mask
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    return (w / w.sum(axis=-1, keepdims=True)) @ v


h_full = causal_mask(5, dtype=np.float64) + h_pad
h_xt = Tensor(h_x.copy(), dtype=np.float64, requires_grad=True)
h_y, h_w = h_sa(h_xt, mask=h_pad, return_weights=True)
assert np.allclose(h_y.data, h_sa_ref(h_sa, h_x, h_full)), "causal + padding, non-zero biases"
assert np.all(h_w.data[1, :, 3:] == 0) and np.allclose(np.triu(h_w.data, 1), 0)
h_G = h_rng.standard_normal(h_y.shape)
h_y.backward(h_G)
h_num = np.zeros_like(h_x)
for h_idx in np.ndindex(h_x.shape):
    h_old = h_x[h_idx]
    h_x[h_idx] = h_old + 1e-6
    h_up = np.sum(h_sa_ref(h_sa, h_x, h_full) * h_G)
    h_x[h_idx] = h_old - 1e-6
    h_down = np.sum(h_sa_ref(h_sa, h_x, h_full) * h_G)
    h_x[h_idx] = h_old
    h_num[h_idx] = (h_up - h_down) / 2e-6
assert np.allclose(h_xt.grad.data, h_num, rtol=1e-5, atol=1e-7), "input gradient"
h_plain = SelfAttention(4, dtype=np.float64, rng=np.random.default_rng(114))
for h_p in (h_plain.q_proj, h_plain.k_proj, h_plain.v_proj):
    h_p.bias.data = h_rng.standard_normal(4)
assert np.allclose(h_plain(Tensor(h_x[0], dtype=np.float64)).data, h_sa_ref(h_plain, h_x[0], 0.0)), "unbatched (T, d), no mask"

# %% grade_id: test-kv-cache
# independent keys and values, chunks of other sizes, float64, reuse after reset, and the views' contents after every append
h_rng = np.random.default_rng(115)
h_kv = KVCache(batch_size=1, num_heads=2, max_len=7, head_dim=3, dtype=np.float64)
h_all_k, h_all_v = h_rng.standard_normal((1, 2, 7, 3)), h_rng.standard_normal((1, 2, 7, 3))
h_end = 0
for h_t in (2, 0, 1, 4):
    h_keys, h_vals = (h_a.data for h_a in h_kv.append(h_all_k[:, :, h_end:h_end + h_t], h_all_v[:, :, h_end:h_end + h_t]))
    h_end += h_t
    assert len(h_kv) == h_end and h_kv.remaining == 7 - h_end and h_keys.shape == (1, 2, h_end, 3)
    assert np.array_equal(h_keys, h_all_k[:, :, :h_end]) and np.array_equal(h_vals, h_all_v[:, :, :h_end]), h_end
    assert np.shares_memory(h_vals, h_kv.value_buffer)
h_kv.reset()
h_keys, h_vals = (h_a.data for h_a in h_kv.append(h_all_v[:, :, :3], h_all_k[:, :, :3]))
assert len(h_kv) == 3 and np.array_equal(h_keys, h_all_v[:, :, :3]) and np.array_equal(h_vals, h_all_k[:, :, :3]), "after reset"

# %% grade_id: test-multi-head
# cross-attention with key only (value = key), 2-D masks, non-zero biases, and both dropouts (on the weights and on the output) in training mode against the same random draws
h_rng = np.random.default_rng(116)
h_mha = MultiHeadAttention(8, num_heads=2, dropout=0.3, dtype=np.float64, rng=np.random.default_rng(117))
for h_p in (h_mha.q_proj, h_mha.k_proj, h_mha.v_proj, h_mha.out_proj):
    h_p.bias.data = h_rng.standard_normal(8)
h_x, h_mem = h_rng.standard_normal((3, 4, 8)), h_rng.standard_normal((3, 6, 8))
h_m2 = np.where(h_rng.random((4, 6)) < 0.3, -np.inf, 0.0)
h_m2[:, 0] = 0.0
h_mha.eval()
h_out = h_mha(Tensor(h_x, dtype=np.float64), Tensor(h_mem, dtype=np.float64), mask=h_m2).data
assert np.allclose(h_out, reference_mha(h_mha, h_x, h_mem, h_mem, h_m2), atol=1e-8), "key only: value = key"
h_mha.train()
h_state = h_mha.attn_dropout.rng.bit_generator.state
h_twin = np.random.default_rng()
h_twin.bit_generator.state = h_state
h_keep_w = h_twin.random((3, 2, 4, 6)) >= 0.3                      # attention-weight dropout, drawn first
h_keep_o = h_twin.random((3, 4, 8)) >= 0.3                         # output dropout
h_train, h_wts = h_mha(Tensor(h_x, dtype=np.float64), Tensor(h_mem, dtype=np.float64), Tensor(h_mem, dtype=np.float64),
                         mask=h_m2, return_weights=True)
(h_Wq, h_bq), (h_Wk, h_bk), (h_Wv, h_bv), (h_Wo, h_bo) = [(p.weight.data, p.bias.data) for p in
                                                          (h_mha.q_proj, h_mha.k_proj, h_mha.v_proj, h_mha.out_proj)]
h_split = lambda a: a.reshape(a.shape[0], a.shape[1], 2, 4).transpose(0, 2, 1, 3)
h_q, h_k, h_v = h_split(h_x @ h_Wq + h_bq), h_split(h_mem @ h_Wk + h_bk), h_split(h_mem @ h_Wv + h_bv)
h_s = h_q @ h_k.transpose(0, 1, 3, 2) / 2.0 + h_m2
h_w = np.exp(h_s - h_s.max(-1, keepdims=True))
h_w /= h_w.sum(-1, keepdims=True)
h_y = ((h_w * h_keep_w / 0.7) @ h_v).transpose(0, 2, 1, 3).reshape(3, 4, 8)
assert np.allclose(h_wts.data, h_w), "returned weights: before dropout"
assert np.allclose(h_train.data, (h_y @ h_Wo + h_bo) * h_keep_o / 0.7), "dropout on the weights, then on the output"

# %% grade_id: test-mha-gradients
# cross-attention gradients (query, key, value and projection parameters) with a padding mask and non-zero biases, against float64 central differences
h_rng = np.random.default_rng(118)
h_mha = MultiHeadAttention(4, num_heads=2, dtype=np.float64, rng=h_rng)
for h_p in (h_mha.q_proj, h_mha.k_proj, h_mha.v_proj, h_mha.out_proj):
    h_p.bias.data = h_rng.standard_normal(4)
h_pad = np.zeros((2, 1, 1, 3))
h_pad[0, ..., 2] = -np.inf
h_ins = [Tensor(h_rng.standard_normal(s), dtype=np.float64, requires_grad=True) for s in ((2, 2, 4), (2, 3, 4), (2, 3, 4))]
h_G = h_rng.standard_normal((2, 2, 4))
h_mha.zero_grad()
h_mha(*h_ins, mask=h_pad).backward(h_G)
for h_t in h_ins + [h_mha.q_proj.weight, h_mha.k_proj.bias, h_mha.v_proj.weight, h_mha.out_proj.weight, h_mha.out_proj.bias]:
    h_num = np.zeros_like(h_t.data)
    for h_idx in np.ndindex(h_t.shape):
        h_old = h_t.data[h_idx]
        h_t.data[h_idx] = h_old + 1e-6
        with no_grad():
            h_up = h_mha(*h_ins, mask=h_pad).data
        h_t.data[h_idx] = h_old - 1e-6
        with no_grad():
            h_down = h_mha(*h_ins, mask=h_pad).data
        h_t.data[h_idx] = h_old
        h_num[h_idx] = np.sum((h_up - h_down) * h_G) / 2e-6
    assert np.allclose(h_t.grad.data, h_num, rtol=1e-5, atol=1e-7), ("gradient", h_t.shape)

# %% grade_id: test-kv-cache-equivalence
# the cached path with a padding mask, batch 1 and float64, single tokens after a chunk, and its returned weights
from tinytorch.core.autograd import no_grad

h_gen = MultiHeadAttention(6, num_heads=3, causal=True, dtype=np.float64, rng=np.random.default_rng(119)).eval()
for h_p in (h_gen.q_proj, h_gen.k_proj, h_gen.v_proj, h_gen.out_proj):
    h_p.bias.data = np.random.default_rng(120).standard_normal(6)
h_seq = Tensor(np.random.default_rng(121).standard_normal((2, 7, 6)), dtype=np.float64)
h_pad = np.zeros((2, 1, 1, 7))
h_pad[1, ..., 1] = -np.inf                                         # sequence 1: position 1 is padding
with no_grad():
    h_full, h_fw = h_gen(h_seq, mask=h_pad, return_weights=True)
    h_kv = h_gen.new_cache(batch_size=2, max_len=7)
    h_parts, h_ws = [], []
    for h_a, h_b in [(0, 3), (3, 4), (4, 5), (5, 7)]:
        h_o, h_w = h_gen(h_seq[:, h_a:h_b], mask=h_pad[..., :h_b], cache=h_kv, return_weights=True)
        h_parts.append(h_o.data)
        h_ws.append(h_w.data)
    h_one = h_gen.new_cache(batch_size=1, max_len=7)
    h_single = [h_gen(h_seq[1:, h_t:h_t + 1], cache=h_one).data for h_t in range(7)]
    h_nopad = h_gen(h_seq).data
assert np.abs(np.concatenate(h_parts, axis=1) - h_full.data).max() < 1e-10, "cached == recomputed, with a padding mask"
assert np.allclose(h_ws[1], h_fw.data[:, :, 3:4, :4]) and np.allclose(h_ws[3], h_fw.data[:, :, 5:7, :7]), "cached weights"
assert np.abs(np.concatenate(h_single, axis=1) - h_nopad[1:]).max() < 1e-10, "batch 1, one token at a time"
