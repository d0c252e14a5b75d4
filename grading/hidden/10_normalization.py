# Hidden tests of module 10_normalization. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-composed
# both composed norms with a non-trivial weight and bias, eps inside the square root, several axes, and their gradients against float64 central differences
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


def h_norm_ref(x, axes, w, b, eps=1e-5, shape=None):
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y * w.reshape(shape or w.shape) + b.reshape(shape or b.shape)


h_rng = np.random.default_rng(100)
h_x = h_rng.normal(1.0, 2.0, size=(3, 2, 2, 2))
h_x[:, 1] = 0.5 + 1e-3 * h_rng.standard_normal((3, 2, 2))   # a channel with a tiny variance: eps matters
h_w, h_b = h_rng.standard_normal(2), h_rng.standard_normal(2)
h_ins = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in (h_x, h_w, h_b)]
h_out = batch_norm_composed(*h_ins)
h_bn = lambda x, w, b: h_norm_ref(x, (0, 2, 3), w, b, shape=(1, 2, 1, 1))
assert np.allclose(h_out.data, h_bn(h_x, h_w, h_b)), "batch norm with weight and bias, eps inside the sqrt"
h_G = h_rng.standard_normal(h_x.shape)
h_out.backward(h_G)
for h_k, h_t in enumerate(h_ins):
    h_num = h_central(lambda *a: float(np.sum(h_bn(*a) * h_G)), [h_x, h_w, h_b], h_k)
    assert np.allclose(h_t.grad.data, h_num, rtol=1e-4, atol=1e-5), ("batch_norm_composed gradient", h_k)
h_flat = batch_norm_composed(Tensor(np.full((4, 3), 2.0), dtype=np.float64)).data
assert np.all(np.isfinite(h_flat)) and np.allclose(h_flat, 0), "a constant channel normalises to 0, not nan"
h_x = h_rng.normal(-2.0, 3.0, size=(2, 3, 4))
h_x[1, 2] = 7.0 + 1e-3 * h_rng.standard_normal(4)            # a row with a tiny variance
h_w, h_b = h_rng.standard_normal((3, 4)), h_rng.standard_normal((3, 4))
h_ins = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in (h_x, h_w, h_b)]
h_out = layer_norm_composed(h_ins[0], 2, h_ins[1], h_ins[2])
h_ln = lambda x, w, b: h_norm_ref(x, (1, 2), w, b)
assert np.allclose(h_out.data, h_ln(h_x, h_w, h_b)), "layer norm over the last 2 axes, with weight and bias"
h_G = h_rng.standard_normal(h_x.shape)
h_out.backward(h_G)
for h_k, h_t in enumerate(h_ins):
    h_num = h_central(lambda *a: float(np.sum(h_ln(*a) * h_G)), [h_x, h_w, h_b], h_k)
    assert np.allclose(h_t.grad.data, h_num, rtol=1e-4, atol=1e-5), ("layer_norm_composed gradient", h_k)

# %% grade_id: test-batchnorm-function
# fused batch norm against plain numpy: eps inside the sqrt, the backward (training and evaluation) by float64 central differences, in-place running statistics with another momentum, evaluation with the running statistics and an affine, float32
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


def h_bn_ref(x, w, b, mean=None, var=None, eps=1e-5):
    axes, shape = (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True) if mean is None else mean.reshape(shape)
    var = x.var(axis=axes, keepdims=True) if var is None else var.reshape(shape)
    y = (x - mean) / np.sqrt(var + eps)
    return y if w is None else y * w.reshape(shape) + b.reshape(shape)


h_rng = np.random.default_rng(101)
h_x = h_rng.normal(3.0, 2.0, size=(2, 3, 3, 2))
h_x[:, 0] = -1.0 + 2e-3 * h_rng.standard_normal((2, 3, 2))   # tiny variance: eps matters
h_w, h_b = h_rng.standard_normal(3), h_rng.standard_normal(3)
h_rm0, h_rv0 = h_rng.standard_normal(3), h_rng.uniform(0.5, 2.0, 3)
h_G = h_rng.standard_normal(h_x.shape)
for h_training in (True, False):
    h_rm, h_rv = h_rm0.copy(), h_rv0.copy()
    h_ins = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in (h_x, h_w, h_b)]
    h_out = batch_norm(h_ins[0], h_rm, h_rv, h_ins[1], h_ins[2], training=h_training, momentum=0.3)
    h_stats = (None, None) if h_training else (h_rm0, h_rv0)
    h_ref = lambda x, w, b: h_bn_ref(x, w, b, *h_stats)
    assert np.allclose(h_out.data, h_ref(h_x, h_w, h_b)), ("forward", h_training)
    if h_training:
        assert np.allclose(h_rm, 0.7 * h_rm0 + 0.3 * h_x.mean(axis=(0, 2, 3))), "running mean, momentum 0.3"
        assert np.allclose(h_rv, 0.7 * h_rv0 + 0.3 * h_x.var(axis=(0, 2, 3), ddof=1)), "running var: unbiased"
    else:
        assert np.array_equal(h_rm, h_rm0) and np.array_equal(h_rv, h_rv0), "evaluation updates nothing"
    h_out.backward(h_G)
    for h_k, h_t in enumerate(h_ins):
        h_num = h_central(lambda *a: float(np.sum(h_ref(*a) * h_G)), [h_x, h_w, h_b], h_k)
        assert np.allclose(h_t.grad.data, h_num, rtol=1e-4, atol=1e-5), ("gradient", h_k, "training" if h_training else "eval")
h_plain = Tensor(h_x.reshape(6, 3, 2).copy(), dtype=np.float64, requires_grad=True)   # (N, C, L), no affine
h_out = batch_norm(h_plain, None, None)
assert np.allclose(h_out.data, h_bn_ref(h_plain.data, None, None))
h_G3 = h_rng.standard_normal((6, 3, 2))
h_out.backward(h_G3)
h_num = h_central(lambda x: float(np.sum(h_bn_ref(x, None, None) * h_G3)), [h_plain.data.copy()], 0)
assert np.allclose(h_plain.grad.data, h_num, rtol=1e-4, atol=1e-5), "gradient without weight and bias"
h_const = batch_norm(Tensor(np.full((4, 2, 3), 5.0)), None, None).data
assert np.all(np.isfinite(h_const)) and np.allclose(h_const, 0), "a constant channel gives 0, not nan"
h_rm32, h_rv32 = np.zeros(3, np.float32), np.ones(3, np.float32)
h_y32 = batch_norm(Tensor(h_x.astype(np.float32)), h_rm32, h_rv32, training=True)
assert h_y32.dtype == np.float32 and h_rm32.dtype == np.float32 and h_rv32.dtype == np.float32
assert np.allclose(h_y32.data, h_bn_ref(h_x, None, None), atol=1e-4)

# %% grade_id: test-batchnorm-layers
# momentum=None (cumulative average), (N, C, L) statistics, evaluation with a trained affine (values and gradients), custom eps, the counter in eval mode, buffers in the state_dict
h_rng = np.random.default_rng(102)
h_cum = BatchNorm1d(3, momentum=None)
h_batches = [h_rng.normal(2.0, 3.0, size=(5, 3, 4)) for _ in range(3)]
for h_xb in h_batches:
    h_cum(Tensor(h_xb))
assert np.allclose(h_cum.running_mean, np.mean([b.mean(axis=(0, 2)) for b in h_batches], axis=0), rtol=1e-5), \
    "momentum=None: plain average of the batch means"
assert np.allclose(h_cum.running_var, np.mean([b.var(axis=(0, 2), ddof=1) for b in h_batches], axis=0), rtol=1e-5), \
    "momentum=None: average of the unbiased batch variances over N*L values"
assert h_cum.num_batches_tracked == 3
h_layer = BatchNorm2d(2, eps=0.5, momentum=0.2, dtype=np.float64)
h_layer.weight.data = np.array([1.5, -0.5])
h_layer.bias.data = np.array([0.3, 2.0])
h_xt = h_rng.normal(1.0, 0.7, size=(4, 2, 3, 3))
h_y = h_layer(Tensor(h_xt, dtype=np.float64)).data
h_mu, h_var = h_xt.mean(axis=(0, 2, 3)), h_xt.var(axis=(0, 2, 3))
h_sh = lambda v: v[None, :, None, None]
assert np.allclose(h_y, h_sh(h_layer.weight.data) * (h_xt - h_sh(h_mu)) / np.sqrt(h_sh(h_var) + 0.5) + h_sh(h_layer.bias.data)), \
    "training with eps=0.5 and an affine"
h_rm, h_rv = 0.2 * h_mu, 0.8 + 0.2 * h_xt.var(axis=(0, 2, 3), ddof=1)
assert np.allclose(h_layer.running_mean, h_rm) and np.allclose(h_layer.running_var, h_rv)
assert {"running_mean", "running_var", "num_batches_tracked"} <= set(h_layer.state_dict()), "buffers are saved"
assert [n for n, _ in h_layer.named_parameters()] == ["weight", "bias"], "running statistics are not parameters"
h_layer.eval()
h_xe = Tensor(h_rng.standard_normal((1, 2, 2, 2)), dtype=np.float64, requires_grad=True)
h_ye = h_layer(h_xe)
h_scale = h_layer.weight.data / np.sqrt(h_rv + 0.5)
assert np.allclose(h_ye.data, h_sh(h_scale) * (h_xe.data - h_sh(h_rm)) + h_sh(h_layer.bias.data)), "evaluation: running statistics and the affine"
assert h_layer.num_batches_tracked == 1 and np.allclose(h_layer.running_mean, h_rm), "evaluation changes no buffer"
h_Ge = h_rng.standard_normal(h_ye.shape)
h_ye.backward(h_Ge)
assert np.allclose(h_xe.grad.data, h_Ge * h_sh(h_scale)), "evaluation gradient: constant statistics"
assert np.allclose(h_layer.bias.grad.data, h_Ge.sum(axis=(0, 2, 3)))
assert np.allclose(h_layer.weight.grad.data, (h_Ge * (h_xe.data - h_sh(h_rm)) / np.sqrt(h_sh(h_rv) + 0.5)).sum(axis=(0, 2, 3)))
h_layer.train()
h_y2 = h_layer(Tensor(h_xt, dtype=np.float64)).data
assert np.allclose(h_y2, h_y) and h_layer.num_batches_tracked == 2, "back in training mode"

# %% grade_id: test-layernorm
# LayerNorm over two axes with a trained affine, custom eps, constant rows, the backward (with and without affine) against float64 central differences, float32 with a large mean, and a residual branch's gradient left untouched
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


def h_ln_ref(x, nd, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - nd, x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y if w is None else y * w + b


h_rng = np.random.default_rng(103)
h_layer = LayerNorm((3, 4), eps=0.25, dtype=np.float64)
h_layer.weight.data = h_rng.standard_normal((3, 4))
h_layer.bias.data = h_rng.standard_normal((3, 4))
h_x = h_rng.normal(0.5, 0.6, size=(2, 3, 4))
h_x[1] = 4.0                                               # a constant example
h_xt = Tensor(h_x.copy(), dtype=np.float64, requires_grad=True)
h_out = h_layer(h_xt)
h_ref = lambda x, w, b: h_ln_ref(x, 2, w, b, eps=0.25)
assert np.allclose(h_out.data, h_ref(h_x, h_layer.weight.data, h_layer.bias.data)), "over the last 2 axes, eps=0.25"
assert np.all(np.isfinite(h_out.data)) and np.allclose(h_out.data[1], h_layer.bias.data), "a constant example gives the bias"
h_G = h_rng.standard_normal(h_x.shape)
h_out.backward(h_G)
h_arrays = [h_x, h_layer.weight.data.copy(), h_layer.bias.data.copy()]
for h_k, h_t in enumerate([h_xt, h_layer.weight, h_layer.bias]):
    h_num = h_central(lambda *a: float(np.sum(h_ref(*a) * h_G)), h_arrays, h_k)
    assert np.allclose(h_t.grad.data, h_num, rtol=1e-4, atol=1e-5), ("LayerNorm gradient", h_k)
h_plain = LayerNorm(5, elementwise_affine=False)
assert h_plain.weight is None and h_plain.num_parameters() == 0
h_x5 = h_rng.normal(-1.0, 2.0, size=(3, 2, 5))
h_t5 = Tensor(h_x5.copy(), dtype=np.float64, requires_grad=True)
h_o5 = h_plain(h_t5)
assert np.allclose(h_o5.data, h_ln_ref(h_x5, 1))
h_G5 = h_rng.standard_normal(h_x5.shape)
h_o5.backward(h_G5)
h_num = h_central(lambda x: float(np.sum(h_ln_ref(x, 1) * h_G5)), [h_x5], 0)
assert np.allclose(h_t5.grad.data, h_num, rtol=1e-4, atol=1e-5), "gradient without weight and bias"
h_big = (1000.0 + h_rng.standard_normal((4, 64))).astype(np.float32)
h_o32 = LayerNorm(64)(Tensor(h_big))
assert h_o32.dtype == np.float32
assert np.abs(h_o32.data - h_ln_ref(h_big.astype(np.float64), 1)).max() < 1e-3, "float32 rows with mean 1000: two-pass variance"
for h_affine in (True, False):                             # a residual sum hands the same gradient to both branches
    h_skip = Tensor(h_rng.standard_normal((3, 5)), dtype=np.float64, requires_grad=True)
    h_xr = Tensor(h_rng.standard_normal((3, 5)), dtype=np.float64, requires_grad=True)
    h_Gr = h_rng.standard_normal((3, 5))
    (h_skip + LayerNorm(5, elementwise_affine=h_affine, dtype=np.float64)(h_xr)).backward(h_Gr)
    assert np.allclose(h_skip.grad.data, h_Gr), "backward must not modify its upstream gradient in place"
