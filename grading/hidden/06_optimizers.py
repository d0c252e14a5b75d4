# Hidden tests of module 06_optimizers. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-optimizer-base
# step() over parameters of several shapes and dtypes: each one with a gradient is updated once, those without are skipped, step_count counts calls, a gradient of the wrong shape is refused
hp = [Tensor(np.ones((2, 3)), requires_grad=True), Tensor([5.0], dtype=np.float64, requires_grad=True),
      Tensor(np.zeros((2, 2)), requires_grad=True)]
hopt = PlainGD(hp, lr=0.25)
hp[0].grad = Tensor(np.arange(6.0).reshape(2, 3))
hp[2].grad = Tensor(np.full((2, 2), -4.0))
hopt.step()
hopt.step()
assert np.allclose(hp[0].data, 1 - 2 * 0.25 * np.arange(6.0).reshape(2, 3)) and hp[0].dtype == np.float32
assert hp[1].data.tolist() == [5.0] and np.allclose(hp[2].data, 2.0) and hopt.step_count == 2
assert hp[0].grad.data.tolist() == [[0, 1, 2], [3, 4, 5]], "step() must not modify the gradient"
hp[1].grad = Tensor(np.ones(2), dtype=np.float64)
try:
    hopt.step()
    raise AssertionError("a gradient of shape (2,) for a parameter of shape (1,) must be refused")
except ValueError:
    pass

# %% grade_id: test-sgd
# SGD against the PyTorch formulas over many random steps, for every combination of momentum, Nesterov and weight decay, with two parameters of different shapes (separate momentum buffers), a parameter that skips steps, and float32 kept float32
def sgd_reference(ps, grads, lr, mu=0.0, nesterov=False, wd=0.0):
    ps = [np.array(p, dtype=np.float64) for p in ps]
    bufs = [np.zeros_like(p) for p in ps]
    for gs in grads:
        for k, g in enumerate(gs):
            if g is None:
                continue
            g = g + wd * ps[k]
            if mu:
                bufs[k] = mu * bufs[k] + g
                g = g + mu * bufs[k] if nesterov else bufs[k]
            ps[k] = ps[k] - lr * g
    return ps


srng = np.random.default_rng(61)
start = [srng.standard_normal((3, 2)), srng.standard_normal(4)]
grads = [[srng.standard_normal((3, 2)), srng.standard_normal(4) if k != 2 else None] for k in range(6)]
for kw in [dict(), dict(mu=0.5), dict(mu=0.9, nesterov=True), dict(wd=0.1), dict(mu=0.8, wd=0.05),
           dict(mu=0.7, nesterov=True, wd=0.2)]:
    ps = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in start]
    opt = SGD(ps, lr=0.05, momentum=kw.get("mu", 0.0), nesterov=kw.get("nesterov", False),
              weight_decay=kw.get("wd", 0.0))
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = None if g is None else Tensor(g.copy(), dtype=np.float64)
        opt.step()
        for p, g in zip(ps, gs):
            assert g is None or np.array_equal(p.grad.data, g), ("p.grad must stay untouched", kw)
    ref = sgd_reference(start, grads, lr=0.05, **kw)
    assert all(np.allclose(p.data, r, rtol=1e-12, atol=1e-12) for p, r in zip(ps, ref)), kw
p32 = Tensor([1.0, -1.0], requires_grad=True)
opt = SGD([p32], lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.1)
for _ in range(3):
    p32.grad = Tensor([0.5, 0.25])
    opt.step()
assert p32.dtype == np.float32 and opt.state["0.momentum_buffer"].dtype == np.float32
ref = sgd_reference([[1.0, -1.0]], [[np.array([0.5, 0.25])]] * 3, lr=0.5, mu=0.9, nesterov=True, wd=0.1)[0]
assert np.allclose(p32.data, ref, rtol=1e-5), (p32, ref)

# %% grade_id: test-adam
# Adam and AdamW over many random steps with other betas, a large eps (where it goes matters), two parameters of different shapes, a parameter that skips steps (bias correction counts its own steps), weight decay from the first step, gradients left untouched, float32 kept float32
def adam_multi(ps, grads, lr, b1, b2, eps, wd=0.0, decoupled=False):
    ps = [np.array(p, dtype=np.float64) for p in ps]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    ts = [0] * len(ps)
    for gs in grads:
        for k, g in enumerate(gs):
            if g is None:
                continue
            ts[k] += 1
            if decoupled:
                ps[k] = ps[k] * (1 - lr * wd)
            else:
                g = g + wd * ps[k]
            ms[k] = b1 * ms[k] + (1 - b1) * g
            vs[k] = b2 * vs[k] + (1 - b2) * g * g
            m_hat, v_hat = ms[k] / (1 - b1 ** ts[k]), vs[k] / (1 - b2 ** ts[k])
            ps[k] = ps[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return ps


arng = np.random.default_rng(62)
start = [arng.standard_normal((2, 3)), arng.standard_normal(5)]
grads = [[arng.standard_normal((2, 3)) * 0.3, None if k in (1, 2) else arng.standard_normal(5) * 2.0]
         for k in range(7)]
for cls, kw, decoupled in [(Adam, dict(), False), (Adam, dict(weight_decay=0.3), False),
                           (AdamW, dict(weight_decay=0.3), True), (AdamW, dict(weight_decay=0.0), True)]:
    for betas, eps in [((0.8, 0.95), 0.1), ((0.5, 0.7), 1e-8)]:
        ps = [Tensor(a.copy(), dtype=np.float64, requires_grad=True) for a in start]
        opt = cls(ps, lr=0.07, betas=betas, eps=eps, **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = None if g is None else Tensor(g.copy(), dtype=np.float64)
            opt.step()
            for p, g in zip(ps, gs):
                assert g is None or np.array_equal(p.grad.data, g), "p.grad must stay untouched"
        ref = adam_multi(start, grads, 0.07, betas[0], betas[1], eps, kw.get("weight_decay", 0.0), decoupled)
        assert all(np.allclose(p.data, r, rtol=1e-10, atol=1e-12) for p, r in zip(ps, ref)), (cls.__name__, kw, betas, eps)
        assert int(opt.state["0.step"]) == 7 and int(opt.state["1.step"]) == 5, "steps are counted per parameter"
assert AdamW([Tensor([1.0], requires_grad=True)]).hyper["weight_decay"] == 0.01, "AdamW's default decay"
# decoupled decay with a zero gradient: p shrinks by exactly (1 - lr wd) per step; Adam's L2 decay does not
pw = Tensor([2.0, -4.0], dtype=np.float64, requires_grad=True)
opt = AdamW([pw], lr=0.1, weight_decay=0.5)
for _ in range(3):
    pw.grad = Tensor([0.0, 0.0], dtype=np.float64)
    opt.step()
assert np.allclose(pw.data, np.array([2.0, -4.0]) * 0.95 ** 3, rtol=1e-12), pw
pl = Tensor([2.0, -4.0], dtype=np.float64, requires_grad=True)
opt = Adam([pl], lr=0.1, weight_decay=0.5)
pl.grad = Tensor([0.0, 0.0], dtype=np.float64)
opt.step()
assert np.allclose(pl.data, [2.0 - 0.1, -4.0 + 0.1], rtol=1e-6), "L2 decay goes through the normalised step"
# float32 parameters stay float32 and follow the formulas
q = Tensor([[0.5, -0.5]], requires_grad=True)
opt = Adam([q], lr=0.01, betas=(0.9, 0.99))
for k in range(3):
    q.grad = Tensor([[0.1 * (k + 1), -1.0]])
    opt.step()
ref = adam_multi([[[0.5, -0.5]]], [[np.array([[0.1 * (k + 1), -1.0]])] for k in range(3)], 0.01, 0.9, 0.99, 1e-8)[0]
assert q.dtype == np.float32 and opt.state["0.exp_avg"].dtype == np.float32 and np.allclose(q.data, ref, rtol=1e-5)

# %% grade_id: test-state-dict
# the round trip for SGD with Nesterov momentum and for AdamW (other buffers, other hyperparameters): bit-identical resume, copies not views, a state from another optimizer type refused without changing anything
def resume_equal(make, steps=5, split=2, seed=63):
    grng = np.random.default_rng(seed)
    gs = [[grng.standard_normal((2, 3)), grng.standard_normal(2)] for _ in range(steps)]
    def fresh():
        return [Tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True), Tensor([0.5, -0.5], requires_grad=True)]
    def feed(ps, g):
        for p, a in zip(ps, g):
            p.grad = Tensor(a)
    full = fresh()
    o = make(full)
    for g in gs:
        feed(full, g)
        o.step()
    part = fresh()
    o1 = make(part)
    for g in gs[:split]:
        feed(part, g)
        o1.step()
    st = o1.state_dict()
    for buf in st["buffers"].values():
        buf[...] = 0                     # the state_dict holds copies: this changes nothing in o1
    st = o1.state_dict()
    cont = [Tensor(p.data.copy(), requires_grad=True) for p in part]
    o2 = make(cont)
    o2.load_state_dict(json.loads(json.dumps({k: v for k, v in st.items() if k != "buffers"})) | {"buffers": st["buffers"]})
    for g in gs[split:]:
        feed(cont, g)
        o2.step()
    assert o2.step_count == steps
    return all(np.array_equal(a.data, b.data) for a, b in zip(full, cont))


assert resume_equal(lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
assert resume_equal(lambda ps: AdamW(ps, lr=0.02, betas=(0.8, 0.9), weight_decay=0.1))
sgd_state = SGD(make_params(), lr=0.1, momentum=0.9).state_dict()
target = Adam(make_params(), lr=0.3)
before = {k: v.copy() for k, v in target.state.items()}
try:
    target.load_state_dict(sgd_state)
    raise AssertionError("an SGD state must not load into Adam")
except ValueError:
    pass
assert target.lr == 0.3 and target.step_count == 0 and all(np.array_equal(before[k], v) for k, v in target.state.items())

# %% grade_id: test-schedulers
# schedules with other parameters (no warm-up, min_lr 0, gamma and base rates other than 1), the rate set on the optimizer at creation and after each step, and a resumed scheduler continuing the same sequence
w2 = Tensor([0.0], requires_grad=True)
opt = SGD([w2], lr=0.2)
sched = StepLR(opt, step_size=3, gamma=0.3)
seen = []
for _ in range(8):
    seen.append(opt.lr)
    sched.step()
assert np.allclose(seen, [0.2, 0.2, 0.2, 0.06, 0.06, 0.06, 0.018, 0.018]), seen
assert [StepLR(SGD([w2], lr=1.0), step_size=1, gamma=0.5).lr_at(t) for t in range(3)] == [1.0, 0.5, 0.25]


def cosine_ref(t, base, W, T, lo):
    if t < W:
        return base * (t + 1) / W
    if t >= T:
        return lo
    return lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * (t - W) / (T - W)))


for base, W, T, lo in [(0.5, 0, 5, 0.0), (3e-4, 3, 10, 1e-5), (1.0, 1, 2, 0.25), (0.1, 7, 20, 0.0)]:
    opt = SGD([w2], lr=base)
    sched = CosineWarmupLR(opt, warmup_steps=W, total_steps=T, min_lr=lo)
    got = []
    for _ in range(T + 3):
        got.append(opt.lr)
        sched.step()
    assert np.allclose(got, [cosine_ref(t, base, W, T, lo) for t in range(T + 3)], rtol=1e-12, atol=1e-15), (base, W, T, lo, got)
    assert sched.base_lr == base
opt = SGD([w2], lr=0.4)
sched = CosineWarmupLR(opt, warmup_steps=2, total_steps=9, min_lr=0.01)
for _ in range(4):
    sched.step()
saved = json.loads(json.dumps(sched.state_dict()))
opt2 = SGD([w2], lr=0.4)
sched2 = CosineWarmupLR(opt2, warmup_steps=2, total_steps=9, min_lr=0.01)
sched2.load_state_dict(saved)
a_lrs, b_lrs = [], []
for _ in range(6):
    a_lrs.append(opt.lr)
    b_lrs.append(opt2.lr)
    sched.step()
    sched2.step()
assert a_lrs == b_lrs and a_lrs[0] == cosine_ref(4, 0.4, 2, 9, 0.01), (a_lrs, b_lrs)

# %% grade_id: test-clip
# the GLOBAL norm over tensors of several shapes (not one norm per tensor), the direction kept, parameters without a gradient ignored, inf/nan left alone, float32 kept
crng = np.random.default_rng(64)
gs = [crng.standard_normal((3, 4)), crng.standard_normal(5) * 3, crng.standard_normal((2, 2, 2))]
ps = [Tensor(np.zeros(g.shape), dtype=np.float64, requires_grad=True) for g in gs]
for p, g in zip(ps, gs):
    p.grad = Tensor(g.copy(), dtype=np.float64)
idle = Tensor(np.zeros(3), requires_grad=True)                 # no gradient: ignored
total = math.sqrt(sum(float((g ** 2).sum()) for g in gs))
got = clip_grad_norm(ps + [idle], max_norm=2.0)
assert abs(got - total) < 1e-9 * total, (got, total)
after = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in ps))
assert abs(after - 2.0) < 1e-5, after
for p, g in zip(ps, gs):
    assert np.allclose(p.grad.data, g * (2.0 / total), rtol=1e-5), "every gradient is scaled by the same factor"
assert idle.grad is None
assert abs(clip_grad_norm(iter(ps), max_norm=5.0) - after) < 1e-9, "any iterable; below max_norm unchanged"
assert np.allclose(ps[0].grad.data, gs[0] * (2.0 / total), rtol=1e-5)
h = Tensor([0.0, 0.0], requires_grad=True)
h.grad = Tensor([0.3, -0.4])
assert abs(clip_grad_norm([h], 0.1) - 0.5) < 1e-6 and h.grad.dtype == np.float32
assert np.allclose(h.grad.data, [0.06, -0.08], atol=1e-6)
for bad in (np.inf, np.nan):
    h.grad = Tensor([bad, 1.0])
    n = clip_grad_norm([h], 1.0)
    assert not math.isfinite(n) and h.grad.data[1] == 1.0, "a non-finite norm leaves the gradients as they are"
