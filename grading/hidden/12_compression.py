# Hidden tests of module 12_compression. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-masks
# masks of 3-D/4-D arrays with large negative weights, exact counts with ties and halves, and global masks over arrays of different shapes and dtypes
h_rng = np.random.default_rng(130)
h_w = h_rng.standard_normal((3, 4, 5)) * np.where(h_rng.random((3, 4, 5)) < 0.5, -10.0, 1.0)   # many large negative weights
for h_amount in (0.1, 0.5, 0.9):
    h_keep = magnitude_mask(h_w, h_amount)
    assert h_keep.shape == h_w.shape and h_keep.dtype == bool
    assert np.count_nonzero(~h_keep) == int(math.floor(h_amount * 60 + 0.5))
    assert np.abs(h_w[~h_keep]).max() <= np.abs(h_w[h_keep]).min(), "smallest |w| removed, whatever the sign"
h_ties = np.array([[2.0, -1.0, 1.0, -2.0], [1.0, 3.0, -1.0, 0.5]])
h_keep = magnitude_mask(h_ties, 0.25)                       # 2 removed: 0.5 and one of the four |w| = 1
assert np.count_nonzero(~h_keep) == 2 and not h_keep[1, 3] and np.abs(h_ties[~h_keep]).max() == 1.0
assert np.count_nonzero(~magnitude_mask(np.ones(10), 0.25)) == 3, "round(2.5) = 3: halves up, even with ties"
h_arrays = [h_rng.standard_normal((4, 3)).astype(np.float32) * 5, -np.abs(h_rng.standard_normal((2, 2, 3, 3))),
            h_rng.standard_normal(7) * 0.1]
h_keeps = global_magnitude_masks(h_arrays, 0.4)
assert [k.shape for k in h_keeps] == [a.shape for a in h_arrays] and all(k.dtype == bool for k in h_keeps)
h_kept = np.concatenate([np.abs(a[k]).astype(np.float64) for a, k in zip(h_arrays, h_keeps)])
h_gone = np.concatenate([np.abs(a[~k]).astype(np.float64) for a, k in zip(h_arrays, h_keeps)])
assert h_gone.size == int(math.floor(0.4 * 55 + 0.5)) and h_gone.max() <= h_kept.min(), "one threshold on |w| for all arrays"

# %% grade_id: test-pruned
# Pruned Dense and Conv2d (stride, padding) after their raw parameters moved: forward and gradients against float64 central differences; structured pruning by L1 vs L2; LAMP masks
def h_central(loss, arrays, k, eps=1e-6):
    a, g = arrays[k], np.zeros_like(arrays[k])
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        up = loss(*arrays)
        a[idx] = old - eps
        down = loss(*arrays)
        a[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def h_conv_ref(x, w, b, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], Ho, Wo)) + b[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("ncyx,oc->noyx", xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw], w[:, :, i, j])
    return out


h_rng = np.random.default_rng(131)
for h_layer, h_xshape in [(Dense(5, 4, dtype=np.float64, rng=h_rng), (3, 5)),
                          (Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 2), dtype=np.float64, rng=h_rng), (2, 2, 4, 3))]:
    h_wm = h_rng.random(h_layer.weight.shape) > 0.4
    h_bm = np.arange(h_layer.bias.shape[0]) != 1                      # unit 1 structurally pruned
    h_p = Pruned(h_layer, h_wm, h_bm)
    h_layer.weight.data += h_rng.standard_normal(h_layer.weight.shape)    # as if an optimizer moved every entry
    h_layer.bias.data += 1.0 + h_rng.standard_normal(h_layer.bias.shape)
    h_arrays = [h_rng.standard_normal(h_xshape), h_layer.weight.data.copy(), h_layer.bias.data.copy()]
    if isinstance(h_layer, Dense):
        h_fwd = lambda x, w, b: x @ (w * h_wm) + b * h_bm
    else:
        h_fwd = lambda x, w, b: h_conv_ref(x, w * h_wm, b * h_bm, (2, 1), (1, 2))
    h_xt = Tensor(h_arrays[0].copy(), dtype=np.float64, requires_grad=True)
    h_out = h_p(h_xt)
    h_ref = h_fwd(*h_arrays)
    assert h_out.shape == h_ref.shape and np.allclose(h_out.data, h_ref), ("forward with the masks", type(h_layer).__name__)
    h_G = h_rng.standard_normal(h_ref.shape)
    h_p.zero_grad()
    h_out.backward(h_G)
    for h_k, h_t in enumerate([h_xt, h_layer.weight, h_layer.bias]):
        h_num = h_central(lambda *a: float(np.sum(h_fwd(*a) * h_G)), h_arrays, h_k)
        assert np.allclose(h_t.grad.data, h_num, rtol=1e-5, atol=1e-7), ("gradient", h_k, type(h_layer).__name__)
h_cols = np.array([[1.0, 3.0, 5.0, 4.0], [1.0, 0.0, 5.0, 4.0], [1.0, 0.0, 5.0, 4.0], [1.0, 0.0, 5.0, 4.0]])  # L1 4, 3, 20, 16; L2 2, 3, 10, 8
for h_norm, h_dead in [(1, 1), (2, 0)]:
    h_net = Sequential(Dense(4, 4, rng=h_rng), ReLU(), Dense(4, 2, rng=h_rng))
    h_net[0].weight.data = h_cols.astype(np.float32) * np.array([1.0, -1.0, 1.0, -1.0], np.float32)
    prune_structured(h_net, 0.25, norm=h_norm)
    h_eff = h_net[0].effective_weight()
    assert np.flatnonzero(np.all(h_eff == 0, axis=0)).tolist() == [h_dead], ("norm", h_norm)
h_big, h_small = h_rng.standard_normal((6, 5)), h_rng.standard_normal((5, 2)) * 0.01
h_net = Sequential(Dense(6, 5, dtype=np.float64, rng=h_rng), Dense(5, 2, dtype=np.float64, rng=h_rng))
h_net[0].weight.data, h_net[1].weight.data = h_big.copy(), h_small.copy()
prune_magnitude(h_net, 0.6, scope="lamp")
h_scores = []
for h_w in (h_big, h_small):
    h_sq = np.sort(h_w.ravel() ** 2)
    h_tail = np.cumsum(h_sq[::-1])[::-1]
    h_scores.append((h_w ** 2) / h_tail[np.searchsorted(h_sq, h_w ** 2)])
h_cut = np.sort(np.concatenate([s.ravel() for s in h_scores]))[int(math.floor(0.6 * 40 + 0.5)) - 1]
for h_layer, h_s in zip(h_net, h_scores):
    assert np.array_equal(h_layer.weight_mask != 0, h_s > h_cut), "LAMP: one threshold on w^2 / (sum of the larger w^2)"
assert h_net[1].weight_mask.sum() >= 1, "LAMP never empties a layer"

# %% grade_id: test-finetune
# pruned zeros stay exactly zero under SGD with momentum and weight decay, and under AdamW, while the kept weights train
from tinytorch.core.optimizers import SGD

h_rng = np.random.default_rng(132)
h_net = prune_magnitude(Sequential(Dense(6, 5, rng=h_rng), ReLU(), Dense(5, 3, rng=h_rng)), 0.6)
h_masks = [layer.weight_mask.copy() for _, layer in prunable_layers(h_net)]
h_start = [layer.layer.weight.data.copy() for _, layer in prunable_layers(h_net)]
for h_opt in (SGD(h_net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1), AdamW(h_net.parameters(), lr=0.05, weight_decay=0.1)):
    for _ in range(3):
        h_net.zero_grad()
        h_out = h_net(Tensor(h_rng.standard_normal((4, 6)).astype(np.float32)))
        (h_out * h_out).sum().backward()
        h_opt.step()
    for (_, h_layer), h_m, h_w0 in zip(prunable_layers(h_net), h_masks, h_start):
        assert np.array_equal(h_layer.weight_mask, h_m), "masks do not change"
        assert np.all(h_layer.layer.weight.data[h_m == 0] == 0), "pruned weights stay exactly zero"
        assert np.any(h_layer.layer.weight.data[h_m == 1] != h_w0[h_m == 1]), "kept weights train"

# %% grade_id: test-quantize
# round trips along other axes (negative too) with error <= s/2, exact saturation error, exact zeros, float32 results, halves rounded to even, never -128
h_rng = np.random.default_rng(133)
h_x = (h_rng.standard_normal((3, 4, 5)) * np.array([0.01, 1.0, 50.0])[:, None, None]).astype(np.float32)
for h_axis in (0, -1, 1):
    h_q, h_s = quantize_per_channel(h_x, axis=h_axis)
    h_ax = h_axis % 3
    h_other = tuple(a for a in range(3) if a != h_ax)
    assert h_s.shape == (h_x.shape[h_ax],) and h_s.dtype == np.float32 and h_q.dtype == np.int8
    assert np.allclose(h_s, np.abs(h_x).max(axis=h_other) / 127)
    h_back = dequantize(h_q, h_s, axis=h_axis)
    assert h_back.dtype == np.float32 and h_back.shape == h_x.shape
    h_sb = np.expand_dims(h_s, h_other)
    assert np.all(np.abs(h_x.astype(np.float64) - h_back) <= h_sb / 2 * (1 + 1e-5)), ("round trip error <= s/2", h_axis)
    assert np.array_equal(h_q, np.clip(np.rint(h_x / h_sb), -127, 127).astype(np.int8))
h_conv = h_rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
assert np.allclose(symmetric_scale(h_conv, axis=0), np.abs(h_conv).max(axis=(1, 2, 3)) / 127)
assert symmetric_scale(np.zeros((3, 2))) == 1.0, "an all-zero tensor gets s = 1"
h_vals = np.array([0.0, 0.3, -0.3, 5.0, -9.99, 20.0, -40.0], np.float32)
h_back = dequantize(quantize(h_vals, 0.1), 0.1)
assert h_back[0] == 0.0 and np.allclose(h_back[:5], [0.0, 0.3, -0.3, 5.0, -10.0], atol=1e-6)
assert np.allclose(h_back[5:], [12.7, -12.7]), "beyond 127 s: saturated"
assert np.allclose(np.abs(h_vals[5:] - h_back[5:]), np.abs(h_vals[5:]) - 12.7, atol=1e-5), "the clipping error is |x| - 127 s"
assert quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]), 1.0).tolist() == [0, 2, 2, 0, -2, -2, 126], "halves to even"
assert quantize(np.array([-128.4, -127.6]), 1.0).tolist() == [-127, -127], "-128 is never used"
h_w = h_rng.standard_normal((6, 3)).astype(np.float32)
h_scales = np.array([0.01, 0.02, 0.005], np.float32)
assert np.array_equal(quantize(h_w, h_scales, axis=1), np.clip(np.rint(h_w / h_scales), -127, 127).astype(np.int8))
assert np.allclose(dequantize(quantize(h_w, h_scales, axis=1), h_scales, axis=1),
                   np.clip(np.rint(h_w / h_scales), -127, 127) * h_scales)

# %% grade_id: test-int8-matmul
# sums that float32 cannot hold exactly (large partial sums, K from 1500 to 40000) and the float32 path at K = 1024, against int64 arithmetic
h_a = np.full((2, 1500), 127, dtype=np.int8)
h_a[1, ::2] = -127
h_b = np.full((1500, 3), 127, dtype=np.int8)
h_b[:, 1] = 125
h_b[::3, 2] = -128
h_got = int8_matmul(h_a, h_b)
assert h_got.dtype == np.int32 and np.array_equal(h_got, h_a.astype(np.int64) @ h_b.astype(np.int64)), "exact beyond 2**24"
h_rng = np.random.default_rng(134)
for h_K in (1500, 5000, 40000):                                   # large same-sign products: partial sums far beyond 2**24
    h_a = (h_rng.integers(100, 128, size=(2, h_K)) * np.array([[1], [-1]])).astype(np.int8)
    h_b = h_rng.integers(100, 128, size=(h_K, 3)).astype(np.int8)
    assert np.array_equal(int8_matmul(h_a, h_b), h_a.astype(np.int64) @ h_b.astype(np.int64)), ("exact for K =", h_K)
for h_M, h_K, h_N in [(4, 1024, 5), (3, 1, 2), (1, 2000, 1)]:
    h_a = h_rng.integers(-128, 128, size=(h_M, h_K), dtype=np.int8)
    h_b = h_rng.integers(-128, 128, size=(h_K, h_N), dtype=np.int8)
    h_got = int8_matmul(h_a, h_b)
    assert h_got.shape == (h_M, h_N) and np.array_equal(h_got, h_a.astype(np.int64) @ h_b.astype(np.int64)), (h_M, h_K, h_N)
h_a = np.full((1, 1024), -128, dtype=np.int8)
h_b = np.full((1024, 2), -127, dtype=np.int8)
h_b[0, 1] = 127
assert np.array_equal(int8_matmul(h_a, h_b), h_a.astype(np.int64) @ h_b.astype(np.int64))

# %% grade_id: test-quantized-layers
# QuantizedConv2d with a rectangular kernel and unequal stride/padding, QuantizedDense on 3-D inputs with saturation, no bias, and pruned zeros, against plain integer arithmetic
from tinytorch.core.autograd import no_grad

h_rng = np.random.default_rng(135)
h_conv = Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(0, 2), rng=h_rng)
h_conv.bias.data = h_rng.standard_normal(3).astype(np.float32)
h_imgs = h_rng.uniform(-1, 1, size=(3, 2, 5, 4)).astype(np.float32)
h_sx = float(symmetric_scale(h_imgs))
h_qc = QuantizedConv2d.from_float(h_conv, h_sx)
h_qx = np.clip(np.rint(h_imgs / np.float32(h_sx)), -127, 127)
h_qw, h_sw = h_qc.weight_q.astype(np.float64), h_qc.weight_scale.astype(np.float64)
assert np.array_equal(h_qc.weight_q, np.clip(np.rint(h_conv.weight.data / h_sw[:, None, None, None]), -127, 127))
h_xp = np.pad(h_qx, ((0, 0), (0, 0), (0, 0), (2, 2)))
h_Ho, h_Wo = (5 - 2) // 2 + 1, (4 + 4 - 3) // 1 + 1
h_acc = np.zeros((3, 3, h_Ho, h_Wo))
for h_i in range(2):
    for h_j in range(3):
        h_acc += np.einsum("ncyx,oc->noyx", h_xp[:, :, h_i:h_i + 2 * (h_Ho - 1) + 1:2, h_j:h_j + h_Wo], h_qw[:, :, h_i, h_j])
h_ref = h_acc * (h_sx * h_sw)[None, :, None, None] + h_conv.bias.data[None, :, None, None]
h_out = h_qc(Tensor(h_imgs)).data
assert h_out.shape == (3, 3, h_Ho, h_Wo) and h_out.dtype == np.float32, h_out.shape
assert np.allclose(h_out, h_ref, rtol=1e-5, atol=1e-5), "stride (2, 1), padding (0, 2)"
h_dense = Dense(6, 4, bias=False, rng=h_rng)
h_pruned = Pruned(Dense(6, 4, rng=h_rng), h_rng.random((6, 4)) > 0.5)
h_seq = h_rng.uniform(-3, 3, size=(2, 5, 6)).astype(np.float32)
for h_layer in (h_dense, h_pruned):
    h_qd = QuantizedDense.from_float(h_layer, 0.01)               # |x| up to 3 > 127 * 0.01: saturates
    h_w, h_b = QuantizedDense._float_parts(h_layer)
    assert (h_qd.bias is None) == (h_b is None)
    assert np.all(h_qd.weight_q[h_w == 0] == 0), "zero weights stay zero"
    h_qin = np.clip(np.rint(h_seq / np.float32(0.01)), -127, 127)
    h_want = (h_qin @ h_qd.weight_q.astype(np.float64)) * (0.01 * h_qd.weight_scale.astype(np.float64))
    if h_b is not None:
        h_want = h_want + h_b
    with no_grad():
        h_got = h_qd(Tensor(h_seq, requires_grad=True)).data
    assert h_got.shape == (2, 5, 4) and np.allclose(h_got, h_want, rtol=1e-5, atol=1e-5), "(B, T, in) inputs, saturated"

# %% grade_id: test-quantize-model
# calibration in evaluation mode (a Dropout in the model), percentile over all batches together, an all-zero input, and a quantised CNN with stride and padding
h_rng = np.random.default_rng(136)
h_model = Sequential(Dense(8, 16, rng=h_rng), ReLU(), Dropout(0.5, rng=h_rng), Dense(16, 3, rng=h_rng))
h_batches = [(h_rng.standard_normal((10, 8)).astype(np.float32), np.zeros(10, np.int64)) for _ in range(3)]
h_scales = calibrate(h_model, h_batches)
h_hid = [np.maximum(b[0] @ h_model[0].weight.data + h_model[0].bias.data, 0) for b in h_batches]
assert np.isclose(h_scales["layers.3"], max(np.abs(h).max() for h in h_hid) / 127, rtol=1e-5), "calibration runs in eval mode"
assert h_model.training and h_model[2].training, "the mode is restored"
h_pct = calibrate(h_model, [b[0] for b in h_batches], method="percentile", percentile=90.0)
h_all = np.abs(np.concatenate([b[0].ravel() for b in h_batches]))
assert np.isclose(h_pct["layers.0"], np.percentile(h_all, 90.0) / 127, rtol=1e-5), "percentile over all batches together"
h_dead = Sequential(Dense(3, 2, rng=h_rng), ReLU(), Dense(2, 2, rng=h_rng))
h_dead[0].weight.data[:] = -1.0
h_dead[0].bias.data[:] = -1.0
h_dscales = calibrate(h_dead, [np.abs(h_rng.standard_normal((4, 3))).astype(np.float32)])
assert h_dscales["layers.2"] == 1.0, "a layer that only saw zeros gets scale 1"
h_cnn = Sequential(Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 0), rng=h_rng), ReLU(), MaxPool2d(2), Flatten(), Dense(16, 3, rng=h_rng))
h_imgs = h_rng.standard_normal((6, 2, 8, 6)).astype(np.float32)
h_q = quantize_model(h_cnn, [h_imgs[:3], h_imgs[3:]])
assert [type(m).__name__ for m in h_q] == ["QuantizedConv2d", "ReLU", "MaxPool2d", "Flatten", "QuantizedDense"]
assert [type(m).__name__ for m in h_cnn] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dense"], "the float model is unchanged"
assert np.isclose(float(h_q[0].input_scale), np.abs(h_imgs).max() / 127, rtol=1e-5) and h_q[0].stride == (2, 1)
h_fl, h_ql = h_cnn(Tensor(h_imgs)).data, h_q(Tensor(h_imgs)).data
assert h_ql.shape == h_fl.shape == (6, 3) and np.abs(h_ql - h_fl).max() < 0.05 * np.abs(h_fl).max()

# %% grade_id: test-files
# the encodings in memory: bitmask sizes and exact round trips (sizes not a multiple of 8, int8 and float32, forced and refused), and whole models (conv, quantised, pruned) rebuilt from their arrays
h_rng = np.random.default_rng(137)
for h_w, h_sparse, h_expect in [(h_rng.standard_normal(13).astype(np.float32) * (h_rng.random(13) > 0.5), True, "bitmask"),
                                (h_rng.integers(-5, 6, size=(3, 7)).astype(np.int8), True, "bitmask"),
                                (h_rng.standard_normal((4, 5)).astype(np.float32), False, "dense"),
                                (np.where(h_rng.random((6, 6)) < 0.9, 0.0, 1.5).astype(np.float32), False, "dense"),
                                (np.where(h_rng.random((6, 6)) < 0.5, 0, 3).astype(np.int8), "auto", "bitmask"),
                                (h_rng.standard_normal((8, 8)).astype(np.float32), "auto", "dense"),
                                (np.zeros((2, 5), np.float32), "auto", "bitmask")]:
    h_store = {}
    h_info = _encode(h_store, "w", h_w, h_sparse)
    assert h_info["encoding"] == h_expect and h_info["shape"] == list(h_w.shape), (h_w.shape, h_w.dtype, h_sparse)
    if h_expect == "bitmask":
        assert sum(a.nbytes for a in h_store.values()) == (h_w.size + 7) // 8 + np.count_nonzero(h_w) * h_w.itemsize
    h_back = _decode(h_store, "w", json.loads(json.dumps(h_info)), "memory")
    assert h_back.dtype == h_w.dtype and np.array_equal(h_back, h_w) and not h_store, (h_w.shape, h_w.dtype, h_sparse)
h_cnn = Sequential(Conv2d(1, 3, 3, stride=2, padding=1, rng=h_rng), ReLU(), MaxPool2d(2), Flatten(), Dense(12, 4, rng=h_rng))
h_x = Tensor(h_rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
for h_model in (h_cnn, prune_magnitude(copy.deepcopy(h_cnn), 0.7), quantize_model(h_cnn, [h_x.data])):
    for h_sparse in (True, False, "auto"):
        h_arrays = {}
        h_spec = json.loads(json.dumps(_describe(h_model, "", h_arrays, h_sparse)))
        h_rebuilt = _build(h_spec, "", h_arrays, "memory")
        assert not h_arrays and np.array_equal(h_rebuilt(h_x).data, h_model(h_x).data), (h_sparse, [type(m).__name__ for m in h_model])
