# Hidden tests of module 13_kernels. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-matmul
# Hidden: random non-square shapes (float64 and float32), a zero inner dimension, integer inputs, FLOP counts of other shapes.
rng_h = np.random.default_rng(1301)
for n_h, k_h, m_h in [(5, 7, 3), (1, 9, 1), (8, 1, 4), (6, 13, 11)]:
    a_h, b_h = rng_h.standard_normal((n_h, k_h)), rng_h.standard_normal((k_h, m_h))
    ref_h = np.einsum("ik,kj->ij", a_h, b_h)
    for fn_h in (matmul_loops, matmul_broadcast):
        out_h = fn_h(a_h, b_h)
        assert out_h.shape == (n_h, m_h) and np.allclose(out_h, ref_h, rtol=1e-12, atol=1e-12), (fn_h.__name__, n_h, k_h, m_h)
        out_h = fn_h(a_h.astype(np.float32), b_h.astype(np.float32))
        assert out_h.dtype == np.float32 and np.allclose(out_h, ref_h, rtol=1e-4, atol=1e-4), fn_h.__name__
ai_h, bi_h = np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4)
for fn_h in (matmul_loops, matmul_broadcast):
    assert np.array_equal(fn_h(np.ones((2, 0)), np.ones((0, 3))), np.zeros((2, 3))), fn_h.__name__
    assert np.array_equal(fn_h(ai_h, bi_h), ai_h @ bi_h), fn_h.__name__
assert matmul_flops(3, 5, 7) == 210 and matmul_flops(1, 1, 1) == 2 and matmul_flops(64, 128, 32) == 524288

# %% grade_id: test-layout
# Hidden: views that exactly fill the buffer are accepted and one element more is refused; zero, negative and float32 strides.
sig_h = np.arange(10, dtype=np.float64)
assert np.array_equal(strided_view(sig_h, (10,), (8,)), sig_h)                   # exactly the whole buffer
assert np.array_equal(strided_view(sig_h, (5,), (16,)), sig_h[::2])
assert np.array_equal(strided_view(sig_h, (2, 5), (40, 8)), sig_h.reshape(2, 5))
assert np.array_equal(strided_view(sig_h, (4, 3), (0, 24)), np.tile([0.0, 3.0, 6.0], (4, 1)))   # stride 0: one row, repeated
assert np.array_equal(strided_view(sig_h, (1,), (-8,)), [0.0])                   # one element: its stride is never used
m32_h = np.arange(12, dtype=np.float32).reshape(3, 4)
assert np.array_equal(strided_view(m32_h, (2, 2), (16, 4))[1], [4.0, 5.0])
assert np.array_equal(strided_view(m32_h, (12,), (4,)), np.arange(12))
for shape_h, strides_h, base_h in [((11,), (8,), sig_h), ((6,), (16,), sig_h), ((2, 6), (40, 8), sig_h),
                                   ((2,), (-8,), sig_h), ((13,), (4,), m32_h), ((3, 5), (16, 4), m32_h),
                                   ((2, 2), (8, -4), m32_h)]:
    try:
        strided_view(base_h, shape_h, strides_h)
        raise AssertionError(f"{shape_h} / {strides_h} reads outside the array")
    except ValueError:
        pass

# %% grade_id: test-conv
# Hidden: rectangular kernels and images, stride 3 with padding, one output channel, float32, against an inline reference.
def conv_ref_h(x_, w_, b_, s_, pad_):
    xp_ = np.pad(x_, ((0, 0), (0, 0), (pad_, pad_), (pad_, pad_)))
    kh_, kw_ = w_.shape[2:]
    ho_, wo_ = (xp_.shape[2] - kh_) // s_ + 1, (xp_.shape[3] - kw_) // s_ + 1
    out_ = np.zeros((x_.shape[0], w_.shape[0], ho_, wo_))
    for i_ in range(ho_):
        for j_ in range(wo_):
            out_[:, :, i_, j_] = np.einsum("ncpq,ocpq->no", xp_[:, :, s_ * i_:s_ * i_ + kh_, s_ * j_:s_ * j_ + kw_], w_)
    return out_ + b_[None, :, None, None]


rng_h = np.random.default_rng(1303)
for (N_h, C_h, H_h, W_h), (co_h, kh_h, kw_h), s_h, pad_h in [((3, 2, 7, 9), (1, 2, 4), 1, 0), ((2, 3, 8, 6), (5, 3, 1), 3, 1),
                                                            ((1, 4, 5, 5), (2, 5, 5), 1, 0), ((2, 1, 9, 4), (3, 3, 2), 2, 2)]:
    x_h = rng_h.standard_normal((N_h, C_h, H_h, W_h))
    w_h, b_h = rng_h.standard_normal((co_h, C_h, kh_h, kw_h)), rng_h.standard_normal(co_h)
    ref_h = conv_ref_h(x_h, w_h, b_h, s_h, pad_h)
    for fn_h in (conv2d_loops, conv2d_shifted):
        out_h = fn_h(x_h, w_h, b_h, s_h, pad_h)
        assert out_h.shape == ref_h.shape and np.allclose(out_h, ref_h), (fn_h.__name__, (kh_h, kw_h), s_h, pad_h)
        assert np.allclose(fn_h(x_h, w_h, None, s_h, pad_h), ref_h - b_h[:, None, None]), fn_h.__name__
        out_h = fn_h(x_h.astype(np.float32), w_h.astype(np.float32), b_h.astype(np.float32), s_h, pad_h)
        assert out_h.dtype == np.float32 and np.allclose(out_h, ref_h, rtol=1e-4, atol=1e-4), fn_h.__name__

# %% grade_id: test-softmax-ce
# Hidden: backward with a non-unit upstream gradient against float64 central differences, the "sum" reduction,
# huge and far-apart logits on a large batch (float32 and float64) against an inline log-sum-exp, the input left untouched.
def ce_ref_h(z_, t_, ignore_=None, reduction_="mean"):
    z2_, t2_ = z_.reshape(-1, z_.shape[-1]).astype(np.float64), np.asarray(t_).reshape(-1)
    valid_ = np.ones(t2_.shape, bool) if ignore_ is None else t2_ != ignore_
    zs_ = z2_ - z2_.max(axis=1, keepdims=True)
    losses_ = np.log(np.exp(zs_).sum(axis=1)) - zs_[np.arange(len(t2_)), np.where(valid_, t2_, 0)]
    total_ = (losses_ * valid_).sum()
    return total_ / max(valid_.sum(), 1) if reduction_ == "mean" else total_


rng_h = np.random.default_rng(1304)
z_h = rng_h.standard_normal((3, 4, 5)) * 2
t_h = rng_h.integers(0, 5, size=(3, 4))
t_h[0, 1] = t_h[2, 3] = -1
for red_h in ("mean", "sum"):
    zt_h = Tensor(z_h.copy(), dtype=np.float64, requires_grad=True)
    loss_h = softmax_cross_entropy(zt_h, t_h, ignore_index=-1, reduction=red_h)
    assert np.isclose(loss_h.item(), ce_ref_h(z_h, t_h, -1, red_h), rtol=1e-12), red_h
    assert np.array_equal(zt_h.data, z_h), "the forward pass must not change the logits"
    loss_h.backward(np.array(1.7))
    num_h = np.zeros_like(z_h)
    for idx_h in np.ndindex(*z_h.shape):
        zp_h, zm_h = z_h.copy(), z_h.copy()
        zp_h[idx_h] += 1e-6
        zm_h[idx_h] -= 1e-6
        num_h[idx_h] = 1.7 * (softmax_cross_entropy(Tensor(zp_h, dtype=np.float64), t_h, -1, red_h).item()
                              - softmax_cross_entropy(Tensor(zm_h, dtype=np.float64), t_h, -1, red_h).item()) / 2e-6
    assert np.allclose(zt_h.grad.data, num_h, atol=1e-7), (red_h, np.abs(zt_h.grad.data - num_h).max())
    assert np.allclose(zt_h.grad.data[0, 1], 0) and np.allclose(zt_h.grad.data[2, 3], 0), "ignored rows get no gradient"
big_h = rng_h.standard_normal((500, 300)) * 50 + 1e4                  # huge logits with a wide spread
big_h[::7] -= 3e4
big_h[1::5, 0] += 1e5                                                 # one class far ahead of the others
tb_h = rng_h.integers(1, 300, size=500)
for dt_h, tol_h in ((np.float64, 1e-10), (np.float32, 1e-4)):
    zs_h = big_h.astype(dt_h).astype(np.float64)
    zs_h -= zs_h.max(axis=1, keepdims=True)
    grad_ref_h = np.exp(zs_h) / np.exp(zs_h).sum(axis=1, keepdims=True)
    grad_ref_h[np.arange(500), tb_h] -= 1
    grad_ref_h /= 500
    zb_h = Tensor(big_h, dtype=dt_h, requires_grad=True)
    lb_h = softmax_cross_entropy(zb_h, tb_h)
    assert lb_h.dtype == dt_h and np.isfinite(lb_h.item())
    assert np.isclose(lb_h.item(), ce_ref_h(big_h.astype(dt_h), tb_h), rtol=tol_h), (dt_h, lb_h.item())
    lb_h.backward()
    assert zb_h.grad.dtype == dt_h and np.isfinite(zb_h.grad.data).all()
    assert np.allclose(zb_h.grad.data, grad_ref_h, atol=1e-6), dt_h
one_h = Tensor(np.full((4, 1), 1e30), dtype=np.float64, requires_grad=True)   # one class: loss 0, gradient 0
loss_h = softmax_cross_entropy(one_h, [0, 0, 0, 0], reduction="sum")
loss_h.backward()
assert loss_h.item() == 0.0 and np.array_equal(one_h.grad.data, np.zeros((4, 1)))

# %% grade_id: test-gelu
# Hidden: backward against float64 central differences with a random upstream gradient, the forward against the
# formula, large inputs in float32 and float64 (finite; gelu(x) ~ x and gelu'(x) ~ 1 far right, ~ 0 far left), a 0-d input.
rng_h = np.random.default_rng(1305)
xh_h = rng_h.standard_normal((2, 3, 4)) * 2.5
uh_h = rng_h.standard_normal(xh_h.shape)
c_h = math.sqrt(2 / math.pi)
assert np.allclose(fused_gelu(Tensor(xh_h, dtype=np.float64)).data,
                   0.5 * xh_h * (1 + np.tanh(c_h * (xh_h + 0.044715 * xh_h ** 3))), rtol=1e-12, atol=1e-14)
xt_h = Tensor(xh_h.copy(), dtype=np.float64, requires_grad=True)
fused_gelu(xt_h).backward(uh_h)
num_h = np.zeros_like(xh_h)
for idx_h in np.ndindex(*xh_h.shape):
    xp_h, xm_h = xh_h.copy(), xh_h.copy()
    xp_h[idx_h] += 1e-6
    xm_h[idx_h] -= 1e-6
    num_h[idx_h] = ((fused_gelu(Tensor(xp_h, dtype=np.float64)).data * uh_h).sum()
                    - (fused_gelu(Tensor(xm_h, dtype=np.float64)).data * uh_h).sum()) / 2e-6
assert np.allclose(xt_h.grad.data, num_h, rtol=1e-6, atol=1e-8), np.abs(xt_h.grad.data - num_h).max()
assert np.array_equal(xt_h.data, xh_h), "the input is not modified"
big_h = np.array([-1e4, -60.0, -12.0, 12.0, 60.0, 1e4, 1e6])
for dt_h in (np.float32, np.float64):
    xb_h = Tensor(big_h, dtype=dt_h, requires_grad=True)
    yb_h = fused_gelu(xb_h)
    yb_h.backward(np.ones(big_h.shape, dt_h))
    assert yb_h.dtype == dt_h and xb_h.grad.dtype == dt_h, dt_h
    assert np.isfinite(yb_h.data).all() and np.isfinite(xb_h.grad.data).all(), dt_h
    assert np.allclose(yb_h.data[big_h > 0], big_h[big_h > 0], rtol=1e-6) and np.allclose(yb_h.data[big_h < 0], 0, atol=1e-6)
    assert np.allclose(xb_h.grad.data[big_h > 0], 1, atol=1e-6) and np.allclose(xb_h.grad.data[big_h < 0], 0, atol=1e-6)
x0_h = Tensor(np.array(0.7), dtype=np.float64, requires_grad=True)   # a 0-d input
y0_h = fused_gelu(x0_h)
y0_h.backward()
t0_h = math.tanh(c_h * (0.7 + 0.044715 * 0.7 ** 3))
assert y0_h.shape == () and math.isclose(y0_h.item(), 0.35 * (1 + t0_h), rel_tol=1e-12)
assert math.isclose(float(x0_h.grad.data), 0.5 * (1 + t0_h) + 0.35 * (1 - t0_h ** 2) * c_h * (1 + 3 * 0.044715 * 0.49),
                    rel_tol=1e-10)

# %% grade_id: test-adam
# Hidden: non-default betas, eps and lr against an inline float64 formula, the in-place version without a scratch
# buffer, and the inputs of the allocating version left untouched.
rng_h = np.random.default_rng(1306)
lr_h, b1_h, b2_h, eps_h = 0.05, 0.8, 0.95, 1e-3
for wd_h, dec_h in [(0.0, False), (0.2, False), (0.3, True)]:
    p_ref_h = rng_h.standard_normal((3, 7))
    m_ref_h, v_ref_h = np.zeros_like(p_ref_h), np.zeros_like(p_ref_h)
    pa_h, ma_h, va_h = p_ref_h.copy(), m_ref_h.copy(), v_ref_h.copy()
    pi_h, mi_h, vi_h = p_ref_h.copy(), m_ref_h.copy(), v_ref_h.copy()
    for step_h in range(1, 5):
        g_h = rng_h.standard_normal(p_ref_h.shape)
        gr_h = g_h + wd_h * p_ref_h if wd_h and not dec_h else g_h
        if wd_h and dec_h:
            p_ref_h = p_ref_h * (1 - lr_h * wd_h)
        m_ref_h = b1_h * m_ref_h + (1 - b1_h) * gr_h
        v_ref_h = b2_h * v_ref_h + (1 - b2_h) * gr_h ** 2
        p_ref_h = p_ref_h - lr_h / (1 - b1_h ** step_h) * m_ref_h / (np.sqrt(v_ref_h) / math.sqrt(1 - b2_h ** step_h) + eps_h)
        before_h = [arr.copy() for arr in (pa_h, g_h, ma_h, va_h)]
        new_h = adam_update_allocating(pa_h, g_h, ma_h, va_h, step_h, lr=lr_h, betas=(b1_h, b2_h), eps=eps_h,
                                       weight_decay=wd_h, decoupled=dec_h)
        assert all(np.array_equal(a_, b_) for a_, b_ in zip((pa_h, g_h, ma_h, va_h), before_h)), "inputs are not modified"
        pa_h, ma_h, va_h = new_h
        adam_update_inplace(pi_h, g_h, mi_h, vi_h, step_h, lr=lr_h, betas=(b1_h, b2_h), eps=eps_h,
                            weight_decay=wd_h, decoupled=dec_h)
        for got_h in ((pa_h, ma_h, va_h), (pi_h, mi_h, vi_h)):
            assert all(np.allclose(g_, r_, rtol=1e-12, atol=1e-14) for g_, r_ in zip(got_h, (p_ref_h, m_ref_h, v_ref_h))), \
                (wd_h, dec_h, step_h)

# %% grade_id: test-fused-model
# Hidden: the fused attention against an inline numpy reference (not module 11) for several head counts and T = 1,
# backward with a non-unit upstream gradient against float64 central differences, the input and upstream gradient
# left untouched, backward twice on one graph; float32 kept; fast_model leaves the module's outputs of the KV-cache
# path unchanged; linear without bias on 4-D input.
def attn_ref_h(x_, ws_, bs_, nh_):
    B_, T_, C_ = x_.shape
    hs_ = C_ // nh_
    q_, k_, v_ = ((x_ @ w_ + b_).reshape(B_, T_, nh_, hs_).transpose(0, 2, 1, 3) for w_, b_ in zip(ws_, bs_))
    s_ = q_ @ k_.transpose(0, 1, 3, 2) / np.sqrt(hs_)
    s_ = np.where(np.tril(np.ones((T_, T_), bool)), s_, -np.inf)
    a_ = np.exp(s_ - s_.max(-1, keepdims=True))
    a_ /= a_.sum(-1, keepdims=True)
    return (a_ @ v_).transpose(0, 2, 1, 3).reshape(B_, T_, C_)


rng_h = np.random.default_rng(1316)
for B_h, T_h, C_h, nh_h in [(2, 6, 12, 3), (1, 1, 4, 2), (3, 4, 8, 8), (2, 7, 6, 1)]:
    x_h = rng_h.standard_normal((B_h, T_h, C_h))
    ws_h = [rng_h.standard_normal((C_h, C_h)) * 0.4 for _ in range(3)]
    bs_h = [rng_h.standard_normal(C_h) * 0.4 for _ in range(3)]
    xt_h = Tensor(x_h.copy(), dtype=np.float64, requires_grad=True)
    pt_h = [Tensor(a_, dtype=np.float64, requires_grad=True) for pair_ in zip(ws_h, bs_h) for a_ in pair_]
    out_h = CausalSelfAttentionFunction.apply(xt_h, *pt_h, num_heads=nh_h)
    assert out_h.shape == (B_h, T_h, C_h) and np.allclose(out_h.data, attn_ref_h(x_h, ws_h, bs_h, nh_h)), (B_h, T_h, C_h, nh_h)
    up_h = rng_h.standard_normal((B_h, T_h, C_h))
    up_keep_h = up_h.copy()
    out_h.backward(up_h)
    assert np.array_equal(up_h, up_keep_h) and np.array_equal(xt_h.data, x_h), "inputs and upstream gradient unchanged"
    eps_h = 1e-6
    for idx_h in [(0, 0, 0), (B_h - 1, T_h - 1, C_h - 1), (0, T_h // 2, C_h // 2)]:
        xp_h, xm_h = x_h.copy(), x_h.copy()
        xp_h[idx_h] += eps_h
        xm_h[idx_h] -= eps_h
        num_h = ((attn_ref_h(xp_h, ws_h, bs_h, nh_h) - attn_ref_h(xm_h, ws_h, bs_h, nh_h)) * up_h).sum() / (2 * eps_h)
        assert np.isclose(xt_h.grad.data[idx_h], num_h, rtol=1e-5, atol=1e-7), (idx_h, xt_h.grad.data[idx_h], num_h)
    wq_num_h = ws_h[0].copy()
    wq_num_h[0, -1] += eps_h
    up_val_h = (attn_ref_h(x_h, [wq_num_h, ws_h[1], ws_h[2]], bs_h, nh_h) * up_h).sum()
    wq_num_h[0, -1] -= 2 * eps_h
    dn_val_h = (attn_ref_h(x_h, [wq_num_h, ws_h[1], ws_h[2]], bs_h, nh_h) * up_h).sum()
    assert np.isclose(pt_h[0].grad.data[0, -1], (up_val_h - dn_val_h) / (2 * eps_h), rtol=1e-5, atol=1e-7)
    first_h = [p_.grad.data.copy() for p_ in [xt_h, *pt_h]]
    for p_ in [xt_h, *pt_h]:
        p_.grad = None
    out_h.backward(up_h)                                             # twice on one graph: same gradients
    assert all(np.allclose(p_.grad.data, f_) for p_, f_ in zip([xt_h, *pt_h], first_h))
x4_h = Tensor(rng_h.standard_normal((2, 3, 2, 5)), dtype=np.float64, requires_grad=True)
w4_h = Tensor(rng_h.standard_normal((5, 3)), dtype=np.float64, requires_grad=True)
assert np.allclose(linear(x4_h, w4_h).data, x4_h.data @ w4_h.data)
assert gradcheck(lambda a_, b_: linear(a_, b_), [x4_h, w4_h])
x32_h = Tensor(rng_h.standard_normal((2, 5, 8)).astype(np.float32), requires_grad=True)
p32_h = [Tensor(rng_h.standard_normal(s_).astype(np.float32), requires_grad=True) for s_ in [(8, 8), (8,)] * 3]
o32_h = CausalSelfAttentionFunction.apply(x32_h, *p32_h, num_heads=2)
o32_h.sum().backward()
assert o32_h.dtype == np.float32 and x32_h.grad.dtype == np.float32 and all(p_.grad.dtype == np.float32 for p_ in p32_h)
mha_h = MultiHeadAttention(8, 2, causal=True, rng=np.random.default_rng(3))
from tinytorch.core.autograd import no_grad as no_grad_h
with no_grad_h():
    cache_a_h = mha_h.new_cache(1, 6)
    plain_h = mha_h(Tensor(x32_h.data[:1]), cache=cache_a_h).data
    fast_model(mha_h)
    cache_b_h = mha_h.new_cache(1, 6)
    assert np.allclose(mha_h(Tensor(x32_h.data[:1]), cache=cache_b_h).data, plain_h, rtol=1e-5, atol=1e-6)
    assert np.allclose(mha_h(Tensor(x32_h.data[:1])).data, plain_h, rtol=1e-5, atol=1e-5)   # fused == cached path


# %% grade_id: test-data-parallel
# Hidden: a GELU network in float64 on 4 threads and an odd batch of 11, against the whole batch in one piece, for the
# mean, the sum and an ignore_index that leaves whole parts uncounted; 3-D (B, T) targets through a reshaping loss;
# backward twice adds; the copies keep no gradient.
from tinytorch.core.activations import GELU as GELU_h

rng_dp_h = np.random.default_rng(1318)
net_h = Sequential(Dense(5, 6, dtype=np.float64, rng=rng_dp_h), GELU_h(), Dense(6, 4, dtype=np.float64, rng=rng_dp_h))
x_dp_h = rng_dp_h.standard_normal((11, 5))
for loss_h, y_dp_h in [(CrossEntropyLoss(), rng_dp_h.integers(0, 4, 11)), (CrossEntropyLoss(reduction="sum"), rng_dp_h.integers(0, 4, 11)),
                       (CrossEntropyLoss(ignore_index=7), np.array([7, 7, 7, 7, 7, 7, 1, 7, 0, 3, 2]))]:
    net_h.zero_grad()
    ref_loss_h = loss_h(net_h(Tensor(x_dp_h, dtype=np.float64)), y_dp_h)
    ref_loss_h.backward()
    ref_g_h = [p_.grad.data.copy() for p_ in net_h.parameters()]
    dp_h = DataParallel(net_h, loss_h, threads=4)
    net_h.zero_grad()
    got_h = dp_h.backward(x_dp_h, y_dp_h)
    assert np.isclose(got_h, ref_loss_h.item(), rtol=1e-12), (loss_h.reduction, got_h, ref_loss_h.item())
    assert all(np.allclose(p_.grad.data, r_, rtol=1e-10, atol=1e-12) for p_, r_ in zip(net_h.parameters(), ref_g_h))
    dp_h.backward(x_dp_h, y_dp_h)
    assert all(np.allclose(p_.grad.data, 2 * r_, rtol=1e-10, atol=1e-12) for p_, r_ in zip(net_h.parameters(), ref_g_h))
    assert all(q_.grad is None for _m, _l, ps_ in dp_h.copies for q_ in ps_)


class TokensLoss_h(Module):
    reduction, ignore_index = "mean", None

    def forward(self, logits_, targets_):
        return CrossEntropyLoss()(logits_.reshape(-1, logits_.shape[-1]), np.asarray(targets_).reshape(-1))


x3_h = rng_dp_h.standard_normal((3, 4, 5))
y3_h = rng_dp_h.integers(0, 4, (3, 4))
net_h.zero_grad()
ref3_h = TokensLoss_h()(net_h(Tensor(x3_h, dtype=np.float64)), y3_h)
ref3_h.backward()
ref3_g_h = [p_.grad.data.copy() for p_ in net_h.parameters()]
net_h.zero_grad()
assert np.isclose(DataParallel(net_h, TokensLoss_h(), threads=2).backward(x3_h, y3_h), ref3_h.item(), rtol=1e-12)
assert all(np.allclose(p_.grad.data, r_, rtol=1e-10, atol=1e-12) for p_, r_ in zip(net_h.parameters(), ref3_g_h))
