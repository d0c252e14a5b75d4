# Hidden tests of module 05_autograd. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-unbroadcast
# unbroadcast on shapes the visible part does not use (size-1 axes in the middle, several at once, float64 random values), and a shape that cannot be reached
hrng = np.random.default_rng(501)
g = hrng.standard_normal((2, 5, 4))
assert np.allclose(unbroadcast(g, (2, 1, 4)), g.sum(axis=1, keepdims=True))
assert np.allclose(unbroadcast(g, (5, 1)), g.sum(axis=(0, 2))[:, None])
assert np.allclose(unbroadcast(g, (1, 1, 1)), g.sum().reshape(1, 1, 1))
assert np.allclose(unbroadcast(g, (4,)), g.sum(axis=(0, 1)))
assert np.allclose(unbroadcast(g, (1, 4)), g.sum(axis=(0, 1))[None, :])
assert unbroadcast(g, (2, 5, 4)) is g or np.array_equal(unbroadcast(g, (2, 5, 4)), g)
g1 = hrng.standard_normal((3, 1, 4))
assert np.allclose(unbroadcast(g1, (1, 1, 4)), g1.sum(axis=0, keepdims=True))
assert unbroadcast(g1, (3, 1, 4)).shape == (3, 1, 4) and np.allclose(unbroadcast(g1, (3, 1, 4)), g1)
assert unbroadcast(np.ones((2, 3), dtype=np.float32), (3,)).dtype == np.float32
for bad_shape in [(3,), (2, 5, 4, 1), (2, 4)]:
    try:
        unbroadcast(g, bad_shape)
        raise AssertionError(f"(2, 5, 4) cannot be reduced to {bad_shape}")
    except AutogradError:
        pass

# %% grade_id: test-rules-gradcheck
# EVERY backward rule (arithmetic, matmul, reductions, exp/log/sqrt, shapes, indexing and all six activations), with broadcasting, constant inputs and reused nodes, against central differences written here in plain numpy; activations at extreme inputs and in float32; numerical_grad and gradcheck themselves against known gradients
import warnings

hid = np.random.default_rng(20240605)


def fd_check(f, *arrays, need=None, rtol=1e-5, atol=1e-6):
    """backward() of f against float64 central differences of sum(f(*x) * w), element by element."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    need = list(range(len(arrays))) if need is None else need
    leaves = [Tensor(a.copy(), dtype=np.float64, requires_grad=k in need) for k, a in enumerate(arrays)]
    out = f(*leaves)
    w = hid.standard_normal(out.shape)
    out.backward(w)
    for k, a in enumerate(arrays):
        if k not in need:
            assert leaves[k].grad is None, "a constant input gets no gradient"
            continue
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            sides = []
            for step in (1e-6, -1e-6):
                moved = [b.copy() for b in arrays]
                moved[k][i] += step
                sides.append(float(np.sum(f(*[Tensor(b, dtype=np.float64) for b in moved]).data * w)))
            num[i] = (sides[0] - sides[1]) / 2e-6
        got = leaves[k].grad
        assert got is not None and got.shape == a.shape, (k, None if got is None else got.shape, a.shape)
        assert got.dtype == np.float64, got.dtype
        assert np.allclose(got.data, num, rtol=rtol, atol=atol), (k, got.data, num)


rnd = lambda *s: hid.standard_normal(s)
pos = lambda *s: np.abs(hid.standard_normal(s)) + 0.5
away = lambda *s: (lambda z: np.sign(z) * (np.abs(z) + 0.2))(hid.standard_normal(s))   # no kink within eps

# arithmetic, broadcasting on either side, constants on either side
fd_check(lambda a, b: a + b, rnd(3, 1), rnd(1, 4))
fd_check(lambda a, b: a - b, rnd(4), rnd(2, 3, 4))
fd_check(lambda a, b: b - a, rnd(2, 1), rnd(2, 3), need=[0])
fd_check(lambda a: -a, rnd(2, 3))
fd_check(lambda a, b: a * b, rnd(2, 1, 3), rnd(4, 1))
fd_check(lambda a, b: a * b, rnd(3, 4), rnd(4), need=[0])
fd_check(lambda a, b: a * b, rnd(3, 4), rnd(3, 4), need=[1])
fd_check(lambda a, b: a / b, rnd(3, 4), pos(3, 1))
fd_check(lambda a, b: a / b, rnd(1, 4), -pos(3, 4), need=[1])
fd_check(lambda a: a ** 3, rnd(5))
fd_check(lambda a: a ** -2, pos(2, 3))
fd_check(lambda a, b: a ** b, pos(2, 3), rnd(3))
fd_check(lambda a, b: a ** b, pos(3), rnd(2, 3), need=[1])
fd_check(lambda b: 2.5 ** b, rnd(4))
# matmul: plain, shared weight (either side constant), batched, broadcast batch, 1-D operands
fd_check(lambda a, b: a @ b, rnd(2, 3), rnd(3, 5))
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2))
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2), need=[1])
fd_check(lambda a, b: a @ b, rnd(2, 3, 4), rnd(4, 2), need=[0])
fd_check(lambda a, b: a @ b, rnd(3, 2, 3), rnd(3, 3, 2))
fd_check(lambda a, b: a @ b, rnd(1, 3, 4), rnd(2, 4, 2))
fd_check(lambda a, b: a @ b, rnd(3, 4), rnd(2, 4, 2))
fd_check(lambda a, b: a @ b, rnd(3, 4), rnd(4))
fd_check(lambda a, b: a @ b, rnd(4), rnd(4, 3))
# reductions: every axis form, keepdims, negative axes
fd_check(lambda a: a.sum(), rnd(2, 3))
fd_check(lambda a: a.sum(axis=(0, 2)), rnd(2, 3, 4))
fd_check(lambda a: a.sum(axis=-1, keepdims=True), rnd(2, 3, 4))
fd_check(lambda a: a.mean(), rnd(3, 4))
fd_check(lambda a: a.mean(axis=(0, 2), keepdims=True), rnd(2, 3, 4))
fd_check(lambda a: a.mean(axis=1), rnd(2, 3, 4))
fd_check(lambda a: a.max(), rnd(3, 4))
fd_check(lambda a: a.max(axis=0, keepdims=True), rnd(3, 4))
fd_check(lambda a: a.max(axis=(1, 2)), rnd(2, 3, 4))
fd_check(lambda a: a.max(axis=-2), rnd(2, 3, 4))
# elementwise math
fd_check(lambda a: a.exp(), rnd(3, 4))
fd_check(lambda a: a.log(), pos(3, 4))
fd_check(lambda a: a.sqrt(), pos(3, 4))
# shapes and indexing
fd_check(lambda a: a.reshape(6, 4), rnd(2, 3, 4))
fd_check(lambda a: a.reshape(-1), rnd(3, 2))
fd_check(lambda a: a.permute(2, 0, 1), rnd(2, 3, 4))           # not its own inverse
fd_check(lambda a: a.permute(2, 0, 1), rnd(2, 2, 2))           # ... and a cube, where the shapes cannot tell
fd_check(lambda a: a.permute(1, 2, 0, 3), rnd(2, 3, 2, 2))
fd_check(lambda a: a.transpose(0, 2), rnd(2, 3, 4))
fd_check(lambda a: a[1], rnd(3, 4))
fd_check(lambda a: a[:, 1::2], rnd(3, 5))
fd_check(lambda a: a[None, ..., -1], rnd(3, 4))
fd_check(lambda a: a[np.array([2, 0, 2, 2])], rnd(3, 4))
fd_check(lambda a: a[np.array([0, 1, 0]), np.array([3, 3, 3])], rnd(2, 4))
fd_check(lambda a: a[:, np.array([1, 1])], rnd(2, 3))
keep = np.array([[True, False, True, True], [False, True, False, True], [True, True, False, False]])
fd_check(lambda a: a[keep], rnd(3, 4))
# all six activations, along every axis
fd_check(lambda a: ReLUFunction.apply(a), away(3, 4))
fd_check(lambda a: ReLUFunction.apply(a), away(2, 3, 2))
fd_check(lambda a: SigmoidFunction.apply(a), 3 * rnd(3, 4))
fd_check(lambda a: TanhFunction.apply(a), 2 * rnd(3, 4))
fd_check(lambda a: GELUFunction.apply(a), 2 * rnd(3, 4))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=-1), rnd(2, 5))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=0), rnd(3, 4))
fd_check(lambda a: SoftmaxFunction.apply(a, axis=1), rnd(2, 3, 4))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=-1), rnd(2, 5))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=0), rnd(3, 4))
fd_check(lambda a: LogSoftmaxFunction.apply(a, axis=1), rnd(2, 3, 4))
# reused nodes: one leaf and one intermediate reach the output along several paths
fd_check(lambda a: a * a * a + a.exp() * a - a / (a * a + 1), rnd(4))


def block(x, w, b):
    h = TanhFunction.apply(x @ w + b)
    p = SoftmaxFunction.apply(h, axis=0)
    return h * h + p * h + LogSoftmaxFunction.apply(h).sum(axis=1, keepdims=True) * ReLUFunction.apply(h)


fd_check(block, rnd(4, 3), rnd(3, 5), rnd(5))
# exact values: relu at, below and above 0; ties of max share the gradient
r = Tensor([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float64, requires_grad=True)
ReLUFunction.apply(r).backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
assert r.grad.data.tolist() == [0.0, 0.0, 0.0, 4.0, 5.0], r.grad
t = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=np.float64, requires_grad=True)
t.max(axis=1).backward(np.array([1.0, 4.0]))
assert np.allclose(t.grad.data, [[0, 0.5, 0.5], [2, 2, 0]]), t.grad
t = Tensor([[5.0, 5.0], [1.0, 5.0]], dtype=np.float64, requires_grad=True)
t.max().backward()
assert np.allclose(t.grad.data, [[1 / 3, 1 / 3], [0, 1 / 3]]), t.grad
z = Tensor([0.0], dtype=np.float64, requires_grad=True)
for act, slope in ((SigmoidFunction, 0.25), (TanhFunction, 1.0), (GELUFunction, 0.5)):
    z.grad = None
    act.apply(z).backward(np.ones(1))
    assert abs(z.grad.item() - slope) < 1e-12, (act.__name__, z.grad)
# the cast back to the leaf's dtype
c = Tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
(c.astype(np.float32) * 3).sum().backward()
assert c.grad.dtype == np.float64 and c.grad.data.tolist() == [3.0, 3.0]
# extreme inputs: finite gradients, right dtype, no warnings, in float32 and float64
extreme = [[1000.0, 0.0, -1000.0], [-800.0, 800.0, 5.0]]
with warnings.catch_warnings():
    warnings.simplefilter("error")
    for dt in (np.float32, np.float64):
        for apply in (lambda x: ReLUFunction.apply(x), lambda x: SigmoidFunction.apply(x),
                      lambda x: TanhFunction.apply(x), lambda x: GELUFunction.apply(x),
                      lambda x: SoftmaxFunction.apply(x, axis=1), lambda x: LogSoftmaxFunction.apply(x, axis=1),
                      lambda x: SoftmaxFunction.apply(x, axis=0), lambda x: LogSoftmaxFunction.apply(x, axis=0)):
            big = Tensor(extreme, dtype=dt, requires_grad=True)
            apply(big).backward(np.array([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]]))
            assert big.grad.dtype == dt and np.isfinite(big.grad.data).all(), (dt, big.grad)
sat = Tensor([-1000.0, 1000.0], dtype=np.float64, requires_grad=True)
SigmoidFunction.apply(sat).backward(np.ones(2))
assert np.allclose(sat.grad.data, 0.0)
ls = Tensor([[1000.0, 0.0, -1000.0]], dtype=np.float64, requires_grad=True)
LogSoftmaxFunction.apply(ls, axis=1).backward(np.ones((1, 3)))
assert np.allclose(ls.grad.data, [[-2.0, 1.0, 1.0]]), ls.grad
# numerical_grad against known derivatives (it must not use backward(), and must put the input back)
xv = hid.standard_normal((2, 3))
x = Tensor(xv.copy(), dtype=np.float64, requires_grad=True)
ng = numerical_grad(lambda u: u ** 3, [x], 0, np.ones((2, 3)))
assert np.allclose(ng, 3 * xv ** 2, rtol=1e-6, atol=1e-8), ng
assert np.array_equal(x.data, xv), "numerical_grad must restore every element it moved"
assert x.grad is None, "numerical_grad computes differences, it does not call backward()"
ng = numerical_grad(lambda u: (u ** 3).sum(), [x], 0, np.float64(1.0))
assert np.allclose(ng, 3 * xv ** 2, rtol=1e-6, atol=1e-8), ng
wts = hid.standard_normal((2, 3))
yv = hid.standard_normal((2, 3))
y = Tensor(yv.copy(), dtype=np.float64, requires_grad=True)
ng = numerical_grad(lambda u, v: u * v.exp(), [x, y], 1, wts)
assert np.allclose(ng, xv * np.exp(yv) * wts, rtol=1e-6, atol=1e-8), ng
assert np.array_equal(y.data, yv) and np.array_equal(x.data, xv)
ng = numerical_grad(lambda u, v: (u @ v.T).sum(axis=0), [x, y], 0, np.array([1.0, -2.0]))
assert np.allclose(ng, np.ones((2, 1)) * (np.array([1.0, -2.0]) @ yv), rtol=1e-6, atol=1e-8), ng


# gradcheck rejects a wrong backward rule (d(2a)/da is 2, the rule below says 1), accepts the right one
class DoubleIt(Function):
    def forward(self, a):
        return 2 * a


@register_backward(DoubleIt)
def _double_wrong(fn, g):
    return (g,)


try:
    gradcheck(lambda u: DoubleIt.apply(u), [Tensor(rnd(3), dtype=np.float64, requires_grad=True)])
    raise AssertionError("gradcheck must reject a backward rule that is off by a factor of 2")
except GradcheckError:
    pass


@register_backward(DoubleIt)
def _double_right(fn, g):
    return (2 * g,)


assert gradcheck(lambda u: DoubleIt.apply(u), [Tensor(rnd(2, 2), dtype=np.float64, requires_grad=True)])

# %% grade_id: test-engine
# the engine on graphs the visible part does not build: diamonds and shared intermediates, explicit upstream gradients (array or Tensor), leaves that must get no gradient, gradients that must not share memory, the topological order itself, and no_grad/enable_grad nested, as decorators and after an exception
hx = Tensor([1.5, -0.5], dtype=np.float64, requires_grad=True)
hc = Tensor([2.0, 3.0], dtype=np.float64)                      # a constant
h1 = hx * hc
h2 = h1 * h1 + h1 * hx                                         # h1 reached twice, hx three times
out = (h2 + h1).sum()
out.backward()
xv, cv = np.array([1.5, -0.5]), np.array([2.0, 3.0])
assert np.allclose(hx.grad.data, 2 * cv * cv * xv + 2 * cv * xv + cv), hx.grad
assert hc.grad is None and h1.grad is None and h2.grad is None, "only leaves that require grad get .grad"
hx.zero_grad()
(hx * 3.0).backward(np.array([1.0, -2.0]))
assert hx.grad.data.tolist() == [3.0, -6.0]
(hx * hx).backward(Tensor([0.5, 1.0], dtype=np.float64))     # accumulates into the same .grad
assert np.allclose(hx.grad.data, [3.0 + 1.5, -6.0 - 1.0])
for bad in (np.ones(3), np.ones((2, 1))):
    try:
        (hx * 2.0).backward(bad)
        raise AssertionError(f"a gradient of shape {bad.shape} for an output of shape (2,) must be refused")
    except AutogradError:
        pass
try:
    Tensor([1.0, 2.0]).sum().backward()
    raise AssertionError("backward() of a tensor that does not require grad must be refused")
except AutogradError:
    pass
# two leaves fed by one Add share nothing: writing into one .grad leaves the other alone
ha = Tensor(np.zeros((2, 3)), dtype=np.float64, requires_grad=True)
hb = Tensor(np.zeros((2, 3)), dtype=np.float64, requires_grad=True)
hd = Tensor(np.zeros(3), dtype=np.float64, requires_grad=True)
(ha + hb + hd).backward(np.ones((2, 3)))
ha.grad.data += 1.0
assert hb.grad.data.tolist() == [[1.0] * 3] * 2 and hd.grad.data.tolist() == [2.0, 2.0, 2.0]
assert ha.grad.data.flags.writeable and hb.grad.data.flags.writeable and hd.grad.data.flags.writeable
hs = Tensor(np.ones((2, 2)), dtype=np.float64, requires_grad=True)
hs.sum().backward()                                             # a broadcast view must not become .grad
hs.grad.data[0, 0] = 7.0
assert hs.grad.data.tolist() == [[7.0, 1.0], [1.0, 1.0]]
# float32 leaves get float32 gradients
hf = Tensor([1.0, 2.0], requires_grad=True)
(hf * hf).sum().backward()
assert hf.grad.dtype == np.float32 and hf.grad.data.tolist() == [2.0, 4.0]
# the order: every tensor after all of its inputs, each once, the root last, constants left out
ta = Tensor([1.0], requires_grad=True)
tb = Tensor([2.0], requires_grad=True)
tk = Tensor([5.0])
u1 = ta * tb
u2 = u1 + ta * tk
u3 = u2 * u1 + tb
order = topological_order(u3)
ids = [id(n) for n in order]
assert len(ids) == len(set(ids)) and ids[-1] == id(u3) and id(tk) not in ids
assert set(ids) >= {id(ta), id(tb), id(u1), id(u2), id(u3)}
for node in order:
    if node._ctx is not None:
        for inp in node._ctx.inputs:
            if inp.requires_grad:
                assert ids.index(id(inp)) < ids.index(id(node)), "an input must come before its user"
assert [id(n) for n in topological_order(ta)] == [id(ta)]
u3.backward()
assert ta.grad.item() == 28.0 and tb.grad.item() == 10.0, (ta.grad, tb.grad)   # (b + k) u1 + u2 b, a u1 + u2 a + 1
# no_grad / enable_grad: nested, restored after an exception, as a decorator
flags = []
with no_grad():
    flags.append(is_grad_enabled())
    with no_grad():
        flags.append(is_grad_enabled())
    flags.append(is_grad_enabled())
    with enable_grad():
        flags.append(is_grad_enabled())
        inner = ta * 2
    flags.append(is_grad_enabled())
    outer = ta * 2
flags.append(is_grad_enabled())
assert flags == [False, False, False, True, False, True], flags
assert inner.requires_grad and not outer.requires_grad and outer._ctx is None
try:
    with no_grad():
        raise KeyError("boom")
except KeyError:
    pass
assert is_grad_enabled(), "an exception inside no_grad() must not leave recording off"


@no_grad()
def predict(v):
    return v * 2, is_grad_enabled()


res, inside = predict(ta)
assert not res.requires_grad and inside is False and is_grad_enabled()

# a rule that returns the wrong number of gradients is refused, not zipped away
class _OneGradForTwo(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return (g,)


try:
    _OneGradForTwo.apply(Tensor([1.0], requires_grad=True), Tensor([2.0], requires_grad=True)).sum().backward()
    raise AssertionError("a backward that gives 1 gradient for 2 inputs must be refused")
except AutogradError:
    pass

# %% grade_id: test-it-learns
# learning with several inputs and outputs, a broadcast bias that is not zero, from a non-zero start, in float64, against the least-squares answer
lrng = np.random.default_rng(77)
X = lrng.standard_normal((40, 3))
W_true = np.array([[1.0, -2.0], [0.5, 0.0], [-1.5, 3.0]])
b_true = np.array([0.7, -1.2])
Xt, Yt = Tensor(X, dtype=np.float64), Tensor(X @ W_true + b_true, dtype=np.float64)
Wl = Tensor(lrng.standard_normal((3, 2)), dtype=np.float64, requires_grad=True)
bl = Tensor([2.0, 2.0], dtype=np.float64, requires_grad=True)
for step in range(300):
    loss = ((Xt @ Wl + bl - Yt) ** 2).mean()
    Wl.zero_grad(), bl.zero_grad()
    loss.backward()
    Wl.data -= 0.3 * Wl.grad.data
    bl.data -= 0.3 * bl.grad.data
assert np.allclose(Wl.data, W_true, atol=1e-4) and np.allclose(bl.data, b_true, atol=1e-4), (Wl, bl)
