# Hidden tests of module 09_spatial. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-conv-naive
# several images and filters with a per-filter bias, rectangular kernels, strides and padding, against a reference summing over kernel offsets
h_rng = np.random.default_rng(90)
for (h_N, h_C, h_H, h_W), (h_O, h_kh, h_kw), h_s, h_p in [((2, 3, 6, 7), (4, 3, 2), 2, 1), ((3, 2, 5, 5), (2, 1, 3), 1, 2),
                                                          ((1, 1, 4, 6), (3, 4, 4), 3, 0)]:
    h_x, h_w, h_b = h_rng.standard_normal((h_N, h_C, h_H, h_W)), h_rng.standard_normal((h_O, h_C, h_kh, h_kw)), h_rng.standard_normal(h_O)
    h_xp = np.pad(h_x, ((0, 0), (0, 0), (h_p, h_p), (h_p, h_p)))
    h_Ho, h_Wo = (h_H + 2 * h_p - h_kh) // h_s + 1, (h_W + 2 * h_p - h_kw) // h_s + 1
    h_ref = np.zeros((h_N, h_O, h_Ho, h_Wo))
    for h_i in range(h_kh):
        for h_j in range(h_kw):
            h_win = h_xp[:, :, h_i:h_i + h_s * (h_Ho - 1) + 1:h_s, h_j:h_j + h_s * (h_Wo - 1) + 1:h_s]
            h_ref += np.einsum("ncyx,oc->noyx", h_win, h_w[:, :, h_i, h_j])
    h_got = conv2d_naive(h_x, h_w, h_b, stride=h_s, padding=h_p)
    assert h_got.shape == h_ref.shape, (h_got.shape, h_ref.shape)
    assert np.allclose(h_got, h_ref + h_b[None, :, None, None]), "each filter adds its own bias"
    assert np.allclose(conv2d_naive(h_x, h_w, stride=h_s, padding=h_p), h_ref), "without a bias"

# %% grade_id: test-im2col
# im2col and col2im element by element against loops, with rectangular kernels, unequal strides and paddings, and stride > kernel
h_rng = np.random.default_rng(91)
for (h_N, h_C, h_H, h_W), (h_kh, h_kw), (h_sh, h_sw), (h_ph, h_pw) in [((3, 2, 6, 7), (2, 3), (2, 3), (1, 2)),
                                                                      ((2, 1, 7, 5), (2, 2), (3, 3), (0, 1)),
                                                                      ((1, 3, 4, 4), (3, 1), (1, 2), (2, 0))]:
    h_x = h_rng.standard_normal((h_N, h_C, h_H, h_W))
    h_xp = np.zeros((h_N, h_C, h_H + 2 * h_ph, h_W + 2 * h_pw))
    h_xp[:, :, h_ph:h_ph + h_H, h_pw:h_pw + h_W] = h_x
    h_Ho, h_Wo = (h_H + 2 * h_ph - h_kh) // h_sh + 1, (h_W + 2 * h_pw - h_kw) // h_sw + 1
    h_ref = np.zeros((h_C * h_kh * h_kw, h_N * h_Ho * h_Wo))
    h_cols = h_rng.standard_normal((h_C * h_kh * h_kw, h_Ho * h_Wo * h_N))      # batch-last columns (y, x, n)
    h_back = np.zeros_like(h_xp)
    for h_c in range(h_C):
        for h_i in range(h_kh):
            for h_j in range(h_kw):
                h_row = (h_c * h_kh + h_i) * h_kw + h_j
                for h_n in range(h_N):
                    for h_y in range(h_Ho):
                        for h_xx in range(h_Wo):
                            h_ref[h_row, (h_n * h_Ho + h_y) * h_Wo + h_xx] = h_xp[h_n, h_c, h_y * h_sh + h_i, h_xx * h_sw + h_j]
                            h_back[h_n, h_c, h_y * h_sh + h_i, h_xx * h_sw + h_j] += h_cols[h_row, (h_y * h_Wo + h_xx) * h_N + h_n]
    h_got = im2col(h_x, (h_kh, h_kw), (h_sh, h_sw), (h_ph, h_pw))
    assert h_got.shape == h_ref.shape and np.array_equal(h_got, h_ref), ((h_kh, h_kw), (h_sh, h_sw), (h_ph, h_pw))
    h_img = col2im(h_cols, (h_N, h_C, h_H, h_W), (h_kh, h_kw), (h_sh, h_sw), (h_ph, h_pw))
    assert h_img.shape == h_x.shape and np.allclose(h_img, h_back[:, :, h_ph:h_ph + h_H, h_pw:h_pw + h_W]), \
        ("col2im", (h_kh, h_kw), (h_sh, h_sw), (h_ph, h_pw))
assert im2col(h_x.astype(np.float32), (2, 2)).dtype == np.float32, "im2col keeps float32"

# %% grade_id: test-conv-function
# conv2d's backward (dx, dw, db) against float64 central differences of a reference convolution, for unequal strides and paddings, no bias, and a frozen input
def h_ref_conv(x, w, b, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = w.shape[2:]
    Ho, Wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], Ho, Wo)) + (0.0 if b is None else b[None, :, None, None])
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("ncyx,oc->noyx", xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw], w[:, :, i, j])
    return out


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


h_rng = np.random.default_rng(92)
for h_xs, h_ws, h_s, h_p, h_bias in [((2, 3, 5, 7), (2, 3, 2, 3), (3, 2), (0, 2), True),
                                     ((1, 2, 6, 4), (4, 2, 1, 1), (2, 2), (1, 1), True),
                                     ((3, 1, 4, 5), (2, 1, 3, 2), (1, 1), (1, 0), False)]:
    h_arrays = [h_rng.standard_normal(h_xs), h_rng.standard_normal(h_ws)] + ([h_rng.standard_normal(h_ws[0])] if h_bias else [])
    h_in = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in h_arrays]
    h_out = conv2d(h_in[0], h_in[1], h_in[2] if h_bias else None, stride=h_s, padding=h_p)
    h_expect = h_ref_conv(h_arrays[0], h_arrays[1], h_arrays[2] if h_bias else None, h_s, h_p)
    assert h_out.shape == h_expect.shape and np.allclose(h_out.data, h_expect), (h_xs, h_ws, h_s, h_p)
    h_G = h_rng.standard_normal(h_expect.shape)
    h_out.backward(h_G)
    h_loss = lambda x, w, b=None: float(np.sum(h_ref_conv(x, w, b, h_s, h_p) * h_G))
    for h_k, h_t in enumerate(h_in):
        h_num = h_central(h_loss, h_arrays, h_k)
        assert h_t.grad is not None and np.allclose(h_t.grad.data, h_num, rtol=1e-5, atol=1e-6), \
            ("gradient of input", h_k, h_xs, h_ws, h_s, h_p)
h_x32 = Tensor(h_rng.standard_normal((2, 2, 5, 5)).astype(np.float32))              # an image: no gradient wanted
h_w32 = Tensor(h_rng.standard_normal((3, 2, 3, 3)).astype(np.float32), requires_grad=True)
h_y32 = conv2d(h_x32, h_w32, stride=2, padding=1)
assert h_y32.dtype == np.float32 and h_y32.shape == (2, 3, 3, 3)
h_y32.sum().backward()
h_xp32 = np.pad(h_x32.data.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
h_dw = np.stack([np.stack([h_xp32[:, :, i:i + 5:2, j:j + 5:2].sum(axis=(0, 2, 3)) for j in range(3)], -1) for i in range(3)], -2)
assert h_x32.grad is None and h_w32.grad.dtype == np.float32
assert np.allclose(h_w32.grad.data, np.broadcast_to(h_dw, (3, 2, 3, 3)), atol=1e-4), "weight gradient without bias"

# %% grade_id: test-conv-layer
# He bound with a rectangular kernel, bias=False, a non-zero bias, tuple stride/padding, and the layer's parameter gradients
h_rng = np.random.default_rng(93)
h_rect = Conv2d(16, 32, (3, 1), rng=h_rng)
h_bound = math.sqrt(6.0 / (16 * 3 * 1))
assert h_rect.weight.shape == (32, 16, 3, 1) and np.all(h_rect.bias.data == 0)
assert np.abs(h_rect.weight.data).max() <= h_bound * (1 + 1e-6) and np.abs(h_rect.weight.data).max() > 0.95 * h_bound, \
    "U(-sqrt(6/fan_in), sqrt(6/fan_in)) with fan_in = C_in*kh*kw"
assert abs(h_rect.weight.data.var() - 2 / 48) < 0.1 * 2 / 48
h_nb = Conv2d(2, 3, 2, bias=False, dtype=np.float64, rng=h_rng)
assert h_nb.bias is None and h_nb.num_parameters() == 3 * 2 * 2 * 2 and h_nb.weight.dtype == np.float64
h_layer = Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 2), dtype=np.float64, rng=h_rng)
h_layer.bias.data = h_rng.standard_normal(3)
h_x = h_rng.standard_normal((2, 2, 5, 4))
h_xp = np.pad(h_x, ((0, 0), (0, 0), (1, 1), (2, 2)))
h_Ho, h_Wo = (5 + 2 - 2) // 2 + 1, (4 + 4 - 3) // 1 + 1
h_win = np.stack([np.stack([h_xp[:, :, i:i + 2 * (h_Ho - 1) + 1:2, j:j + h_Wo] for j in range(3)], -1) for i in range(2)], -2)  # (N, C, Ho, Wo, kh, kw)
h_ref = np.einsum("ncyxij,ocij->noyx", h_win, h_layer.weight.data)
h_out = h_layer(Tensor(h_x, dtype=np.float64))
assert h_out.shape == (2, 3, h_Ho, h_Wo) and np.allclose(h_out.data, h_ref + h_layer.bias.data[None, :, None, None]), \
    "stride (2, 1), padding (1, 2) and the bias"
h_G = h_rng.standard_normal(h_out.shape)
h_out.backward(h_G)
assert np.allclose(h_layer.bias.grad.data, h_G.sum(axis=(0, 2, 3)))
assert np.allclose(h_layer.weight.grad.data, np.einsum("ncyxij,noyx->ocij", h_win, h_G))
assert np.allclose(h_nb(Tensor(h_x, dtype=np.float64)).data,
                   np.einsum("ncyxij,ocij->noyx", np.stack([np.stack([h_x[:, :, i:i + 4, j:j + 3] for j in range(2)], -1)
                                                            for i in range(2)], -2), h_nb.weight.data)), "bias=False"

# %% grade_id: test-pooling-functions
# max/avg pooling values and gradients for rectangular kernels, unequal strides, overlapping and tiled windows, ties under overlap, the no-gradient path and dtypes
from tinytorch.core.autograd import no_grad


def h_views(x, k, s):
    Ho, Wo = (x.shape[2] - k[0]) // s[0] + 1, (x.shape[3] - k[1]) // s[1] + 1
    return np.stack([x[:, :, i:i + s[0] * (Ho - 1) + 1:s[0], j:j + s[1] * (Wo - 1) + 1:s[1]]
                     for i in range(k[0]) for j in range(k[1])])          # (kh*kw, N, C, Ho, Wo)


h_rng = np.random.default_rng(94)
for h_shape, h_k, h_s in [((2, 3, 7, 6), (3, 2), (2, 1)), ((1, 2, 5, 8), (2, 2), (1, 2)),
                          ((2, 1, 4, 9), (2, 3), (2, 3)), ((1, 2, 8, 7), (3, 3), (3, 3))]:
    h_x = h_rng.standard_normal(h_shape)
    h_V = h_views(h_x, h_k, h_s)
    h_G = h_rng.standard_normal(h_V.shape[1:])
    for h_fn, h_ref in [(max_pool2d, h_V.max(axis=0)), (avg_pool2d, h_V.mean(axis=0))]:
        h_t = Tensor(h_x, dtype=np.float64, requires_grad=True)
        h_out = h_fn(h_t, h_k, h_s)
        assert h_out.shape == h_ref.shape and np.allclose(h_out.data, h_ref), (h_fn.__name__, h_shape, h_k, h_s)
        h_out.backward(h_G)
        h_num = np.zeros_like(h_x)
        h_red = np.max if h_fn is max_pool2d else np.mean
        for h_idx in np.ndindex(h_x.shape):                    # float64 central differences
            h_old = h_x[h_idx]
            h_x[h_idx] = h_old + 1e-6
            h_up = np.sum(h_red(h_views(h_x, h_k, h_s), axis=0) * h_G)
            h_x[h_idx] = h_old - 1e-6
            h_down = np.sum(h_red(h_views(h_x, h_k, h_s), axis=0) * h_G)
            h_x[h_idx] = h_old
            h_num[h_idx] = (h_up - h_down) / 2e-6
        assert np.allclose(h_t.grad.data, h_num, atol=1e-6), ("backward", h_fn.__name__, h_shape, h_k, h_s)
    h_plain = max_pool2d(Tensor(h_x), h_k, h_s).data              # no gradient wanted: the path without winners
    with no_grad():
        h_quiet = max_pool2d(Tensor(h_x, requires_grad=True), h_k, h_s).data
    assert np.allclose(h_plain, h_V.max(axis=0)) and np.allclose(h_quiet, h_V.max(axis=0)), ("no-grad max", h_shape)
h_ties = Tensor(np.zeros((1, 1, 3, 3)), requires_grad=True)        # overlapping windows, all equal
max_pool2d(h_ties, 2, 1).sum().backward()
assert h_ties.grad.data[0, 0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]], "each window's first maximum wins"
h_steps = Tensor(np.array([[[[1.0, 1.0, 1.0, 0.0], [1.0, 2.0, 2.0, 0.0]]]]), requires_grad=True)
max_pool2d(h_steps, (2, 2), (1, 1)).sum().backward()
assert h_steps.grad.data[0, 0].tolist() == [[0, 0, 0, 0], [0, 2, 1, 0]], "ties in overlapping windows accumulate"
h_f32 = Tensor(h_rng.standard_normal((2, 2, 6, 6)).astype(np.float32), requires_grad=True)
h_o32 = avg_pool2d(h_f32, 3, 2)
assert h_o32.dtype == np.float32 and max_pool2d(h_f32, 2).dtype == np.float32
h_o32.sum().backward()
assert h_f32.grad.dtype == np.float32
assert np.allclose(avg_pool2d(Tensor(np.arange(16).reshape(1, 1, 4, 4)), 2).data[0, 0], [[2.5, 4.5], [10.5, 12.5]]), "integer input"

# %% grade_id: test-pooling-layers
# the layers with custom strides and rectangular kernels: values, gradients, and the no_grad path
from tinytorch.core.autograd import no_grad

h_rng = np.random.default_rng(95)
h_x = h_rng.standard_normal((2, 3, 7, 8))
for h_layer, h_k, h_s in [(MaxPool2d(3, stride=(1, 2)), (3, 3), (1, 2)), (AvgPool2d((2, 3), stride=(2, 1)), (2, 3), (2, 1)),
                          (MaxPool2d((2, 4)), (2, 4), (2, 4)), (AvgPool2d(2, stride=3), (2, 2), (3, 3))]:
    h_Ho, h_Wo = (7 - h_k[0]) // h_s[0] + 1, (8 - h_k[1]) // h_s[1] + 1
    h_V = np.stack([h_x[:, :, i:i + h_s[0] * (h_Ho - 1) + 1:h_s[0], j:j + h_s[1] * (h_Wo - 1) + 1:h_s[1]]
                    for i in range(h_k[0]) for j in range(h_k[1])])
    h_is_max = isinstance(h_layer, MaxPool2d)
    h_ref = h_V.max(axis=0) if h_is_max else h_V.mean(axis=0)
    assert h_layer.stride == h_s, "stride defaults to the kernel"
    h_t = Tensor(h_x, dtype=np.float64, requires_grad=True)
    h_out = h_layer(h_t)
    assert h_out.shape == h_ref.shape and np.allclose(h_out.data, h_ref), (h_layer, h_out.shape, h_ref.shape)
    h_G = h_rng.standard_normal(h_ref.shape)
    h_out.backward(h_G)
    h_dx = np.zeros_like(h_x)
    h_win = (h_V == h_ref[None]) if h_is_max else np.full(h_V.shape, 1.0 / (h_k[0] * h_k[1]))
    for h_o, (h_i, h_j) in enumerate((i, j) for i in range(h_k[0]) for j in range(h_k[1])):
        h_dx[:, :, h_i:h_i + h_s[0] * (h_Ho - 1) + 1:h_s[0], h_j:h_j + h_s[1] * (h_Wo - 1) + 1:h_s[1]] += h_win[h_o] * h_G
    assert np.allclose(h_t.grad.data, h_dx), ("gradient", h_layer)
    with no_grad():
        h_quiet = h_layer(Tensor(h_x, requires_grad=True)).data
    assert np.allclose(h_quiet, h_ref), ("under no_grad", h_layer)

# %% grade_id: test-cnn-learns
# the gradient of a whole Conv2d(stride, padding, bias) -> ReLU -> MaxPool2d -> Flatten -> Dense network against float64 central differences
h_rng = np.random.default_rng(96)
h_net = Sequential(Conv2d(2, 3, 3, stride=(1, 2), padding=1, dtype=np.float64, rng=h_rng), ReLU(), MaxPool2d(2), Flatten(),
                   Dense(3 * 3 * 2, 2, dtype=np.float64, rng=h_rng))
h_net[0].bias.data = 0.1 * h_rng.standard_normal(3)
h_x = Tensor(h_rng.standard_normal((2, 2, 6, 8)), dtype=np.float64)
h_G = h_rng.standard_normal((2, 2))
h_net.zero_grad()
h_net(h_x).backward(h_G)
for h_p in (h_net[0].weight, h_net[0].bias):
    h_num = np.zeros_like(h_p.data)
    for h_idx in np.ndindex(h_p.shape):
        h_old = h_p.data[h_idx]
        h_p.data[h_idx] = h_old + 1e-6
        h_up = np.sum(h_net(h_x).data * h_G)
        h_p.data[h_idx] = h_old - 1e-6
        h_down = np.sum(h_net(h_x).data * h_G)
        h_p.data[h_idx] = h_old
        h_num[h_idx] = (h_up - h_down) / 2e-6
    assert np.allclose(h_p.grad.data, h_num, rtol=1e-4, atol=1e-6), "end-to-end convolution gradients"
