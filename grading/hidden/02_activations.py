# Hidden tests of module 02_activations. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-relu
# 3-D float64 input against numpy, the kept mask (bool, x > 0: zero gets no gradient), huge values, lists
rng = np.random.default_rng(11)
xr = rng.normal(size=(2, 3, 4))
xr[0, 0, :2] = 0.0
out_r = relu(Tensor(xr, dtype=np.float64))
assert out_r.shape == xr.shape and out_r.dtype == np.float64 and np.array_equal(out_r.data, np.maximum(xr, 0))
k_relu = ReLUFunction()
kept_r = k_relu.forward(xr)
assert np.array_equal(kept_r, np.maximum(xr, 0))
assert k_relu.mask.dtype == np.bool_ and k_relu.mask.shape == xr.shape, "the mask is a bool array of x's shape"
assert np.array_equal(k_relu.mask, xr > 0), "mask = x > 0: no gradient at x == 0"
assert np.array_equal(relu(Tensor([-1e30, 1e30, 0.0, -0.0])).data, np.array([0.0, 1e30, 0.0, 0.0], dtype=np.float32))
assert np.array_equal(relu(Tensor(np.array([-2, 0, 3]))).data, [0.0, 0.0, 3.0])
assert np.array_equal(relu([-1.0, 2.0]).data, [0.0, 2.0]) and relu(Tensor(-3.0)).shape == ()

# %% grade_id: test-sigmoid-tanh
# float64 relative precision far into both tails, the kept outputs give the textbook derivatives, ints, no overflow in float64
rng = np.random.default_rng(12)
xs = np.concatenate([rng.normal(scale=4.0, size=40), [-50.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 50.0]])
ref_s = np.where(xs >= 0, 1 / (1 + np.exp(-np.abs(xs))), np.exp(-np.abs(xs)) / (1 + np.exp(-np.abs(xs))))
s64, t64 = sigmoid(Tensor(xs, dtype=np.float64)), tanh(Tensor(xs, dtype=np.float64))
assert s64.dtype == np.float64 and t64.dtype == np.float64
assert np.allclose(s64.data, ref_s, rtol=1e-12, atol=0), "sigmoid must keep relative precision for x << 0"
assert np.allclose(t64.data, np.tanh(xs), rtol=1e-12, atol=0)
tail32 = sigmoid(Tensor([-20.0, -30.0])).data
assert np.allclose(tail32, np.exp([-20.0, -30.0]), rtol=1e-5, atol=0), "float32 tail: e^x, not 0"
h = 1e-6
xg = rng.normal(scale=2.0, size=(4, 5))
k_sig, k_tanh = SigmoidFunction(), TanhFunction()
out_s, out_t = k_sig.forward(xg.copy()), k_tanh.forward(xg.copy())
assert np.allclose(k_sig.out, out_s, rtol=0, atol=0) and np.allclose(k_tanh.out, out_t, rtol=0, atol=0)
num_s = (1 / (1 + np.exp(-(xg + h))) - 1 / (1 + np.exp(-(xg - h)))) / (2 * h)
num_t = (np.tanh(xg + h) - np.tanh(xg - h)) / (2 * h)
assert np.allclose(k_sig.out * (1 - k_sig.out), num_s, rtol=1e-6, atol=1e-9), "kept output: sigma' = s (1 - s)"
assert np.allclose(1 - k_tanh.out ** 2, num_t, rtol=1e-6, atol=1e-9), "kept output: tanh' = 1 - t^2"
assert sigmoid(Tensor(np.array([0, 2]))).dtype == np.float32 and tanh(Tensor(np.array([0, 2]))).dtype == np.float32
assert sigmoid(Tensor(np.zeros((2, 3, 4)))).shape == (2, 3, 4)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    s_far = sigmoid(Tensor([-1000.0, 1000.0], dtype=np.float64)).data
    t_far = tanh(Tensor([-1000.0, 1000.0], dtype=np.float64)).data
assert np.array_equal(s_far, [0.0, 1.0]) and np.array_equal(t_far, [-1.0, 1.0])

# %% grade_id: test-gelu
# 2-D float64 input, the kept x and t = tanh(u) give the GELU derivative (central differences), integer input, huge float64
rng = np.random.default_rng(13)
xg = rng.normal(scale=2.0, size=(3, 5))
c_gelu = math.sqrt(2 / math.pi)
u_ref = c_gelu * (xg + 0.044715 * xg ** 3)
k_gelu = GELUFunction()
out_g = k_gelu.forward(xg.copy())
assert out_g.shape == (3, 5) and out_g.dtype == np.float64
assert np.allclose(out_g, 0.5 * xg * (1 + np.tanh(u_ref)), rtol=1e-12, atol=1e-15)
assert np.allclose(k_gelu.x, xg, rtol=0, atol=0) and np.allclose(k_gelu.t, np.tanh(u_ref), rtol=1e-12, atol=1e-15)
du = c_gelu * (1 + 3 * 0.044715 * k_gelu.x ** 2)
analytic = 0.5 * (1 + k_gelu.t) + 0.5 * k_gelu.x * (1 - k_gelu.t ** 2) * du
h = 1e-6
gelu_np = lambda v: 0.5 * v * (1 + np.tanh(c_gelu * (v + 0.044715 * v ** 3)))
assert np.allclose(analytic, (gelu_np(xg + h) - gelu_np(xg - h)) / (2 * h), rtol=1e-6, atol=1e-8)
gi = gelu(Tensor(np.array([-2, 0, 3])))
assert gi.dtype == np.float32 and np.allclose(gi.data, gelu_np(np.array([-2.0, 0.0, 3.0])), atol=1e-6)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    g64 = gelu(Tensor([-1e200, -30.0, 30.0, 1e200], dtype=np.float64)).data
assert np.isfinite(g64).all() and np.allclose(g64, [0.0, 0.0, 30.0, 1e200])

# %% grade_id: test-softmax
# huge scores whose size differs from slice to slice, in every axis and both float dtypes; kept out/axis give the backward
rng = np.random.default_rng(14)
base = rng.normal(size=(3, 4, 5))
for dt, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
    for ax in (0, 1, 2, -1, -2, -3):
        off_shape = list(base.shape)
        off_shape[ax] = 1
        offset = rng.choice([-3000.0, -1000.0, 1000.0, 3000.0], size=off_shape)
        offset.flat[0], offset.flat[-1] = -3000.0, 3000.0
        xx = (base + offset).astype(dt)
        x64 = xx.astype(np.float64)
        sh = x64 - x64.max(axis=ax, keepdims=True)
        ref_p = np.exp(sh) / np.exp(sh).sum(axis=ax, keepdims=True)
        ref_lp = sh - np.log(np.exp(sh).sum(axis=ax, keepdims=True))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p_big, lp_big = softmax(Tensor(xx, dtype=dt), axis=ax), log_softmax(Tensor(xx, dtype=dt), axis=ax)
        assert p_big.dtype == dt and lp_big.dtype == dt and p_big.shape == xx.shape, (dt, ax)
        assert np.isfinite(p_big.data).all() and np.isfinite(lp_big.data).all(), (dt, ax)
        assert np.allclose(p_big.data, ref_p, rtol=tol, atol=tol), (dt, ax)
        assert np.allclose(lp_big.data, ref_lp, rtol=tol, atol=tol), (dt, ax)
assert softmax(Tensor(np.array([[1, 2, 3]]))).dtype == np.float32
assert np.allclose(softmax(Tensor([5.0])).data, [1.0]) and np.allclose(log_softmax(Tensor([5.0])).data, [0.0])
xb = rng.normal(size=(2, 3, 4))
g = rng.normal(size=xb.shape)
h = 1e-6
for ax in (0, -2, 2):
    k_sm, k_lsm = SoftmaxFunction(), LogSoftmaxFunction()
    out_sm, out_lsm = k_sm.forward(xb.copy(), axis=ax), k_lsm.forward(xb.copy(), axis=ax)
    assert k_sm.axis == ax % 3 and k_lsm.axis == ax % 3, "the kept axis is a non-negative int"
    assert np.allclose(k_sm.out, out_sm, rtol=0, atol=0) and np.allclose(k_lsm.out, out_lsm, rtol=0, atol=0)
    num_sm, num_lsm = np.zeros_like(xb), np.zeros_like(xb)
    for idx in np.ndindex(xb.shape):
        d = np.zeros_like(xb)
        d[idx] = h
        vals = []
        for v in (xb + d, xb - d):
            shv = v - v.max(axis=ax, keepdims=True)
            lse = np.log(np.exp(shv).sum(axis=ax, keepdims=True))
            vals.append(((g * np.exp(shv - lse)).sum(), (g * (shv - lse)).sum()))
        num_sm[idx] = (vals[0][0] - vals[1][0]) / (2 * h)
        num_lsm[idx] = (vals[0][1] - vals[1][1]) / (2 * h)
    back_sm = k_sm.out * (g - (g * k_sm.out).sum(axis=k_sm.axis, keepdims=True))
    back_lsm = g - np.exp(k_lsm.out) * g.sum(axis=k_lsm.axis, keepdims=True)
    assert np.allclose(back_sm, num_sm, rtol=1e-5, atol=1e-8), ax
    assert np.allclose(back_lsm, num_lsm, rtol=1e-5, atol=1e-8), ax
for bad_axis, err_type in [(-4, ValueError), (3, ValueError), (1.0, TypeError), (None, TypeError)]:
    for f in (softmax, log_softmax):
        try:
            f(Tensor(scores), axis=bad_axis)
            raise AssertionError(f"axis {bad_axis!r} must be refused")
        except err_type:
            pass

# %% grade_id: test-parameter
# requires_grad=False, an explicit dtype, integer data, shared memory, a Parameter made from a Tensor
frozen = Parameter(np.ones(3), requires_grad=False)
assert isinstance(frozen, Parameter) and frozen.requires_grad is False and frozen.dtype == np.float32
p64 = Parameter([1.0, 2.0], dtype=np.float64)
assert p64.dtype == np.float64 and p64.requires_grad and p64.grad is None and p64.is_leaf
assert Parameter(Tensor([[1.0, 2.0]])).shape == (1, 2) and Parameter(Tensor([[1.0, 2.0]])).requires_grad
assert Parameter(np.array([1, 2]), requires_grad=False).dtype == np.int64
try:
    Parameter(np.array([1, 2]))
    raise AssertionError("an integer Parameter cannot require gradients")
except TypeError:
    pass
backing = np.zeros(2, dtype=np.float32)
shared_p = Parameter(backing)
backing[0] = 3.0
assert shared_p.data[0] == 3.0, "a float32 array is shared, as for Tensor"

# %% grade_id: test-module
# prefixes, tuple children (one without parameters), modes, zero_grad, buffers, non-strict and refused loads (nothing changed)
class _Double(Module):                               # a child without parameters
    def forward(self, x):
        return x * 2


class Pair(Module):
    def __init__(self):
        super().__init__()
        self.parts = (Affine(2), _Double(), Affine(2))
        self.head = Affine(2)
        self.register_buffer("count", np.zeros(2))

    def forward(self, x):
        for part in self.parts:
            x = part(x)
        return self.head(x)


pair = Pair()
assert [n for n, _ in pair.named_parameters(prefix="net.")] == [
    "net.parts.0.scale", "net.parts.0.shift", "net.parts.2.scale", "net.parts.2.shift", "net.head.scale", "net.head.shift"]
assert [n for n, _ in pair.named_children()] == ["parts.0", "parts.1", "parts.2", "head"]
assert len(pair.modules()) == 5 and pair.num_parameters() == 12
assert pair.eval() is pair and not pair.parts[0].training and not pair.parts[1].training and not pair.head.training
assert pair.train() is pair and pair.parts[2].training and pair.parts[1].training
for prm in pair.parameters():
    prm.grad = Tensor(np.ones(prm.shape))
pair.zero_grad()
assert all(prm.grad is None for prm in pair.parameters())
assert [n for n, _ in pair.named_buffers()] == ["count"] and list(pair.state_dict())[-1] == "count"
snapshot = pair.state_dict()
snapshot["head.scale"] = Tensor(np.array([2.0, 3.0]), dtype=np.float64)      # a Tensor, float64
snapshot["count"] = np.array([4.0, 5.0])
result = pair.load_state_dict(snapshot)
assert np.array_equal(pair.head.scale.data, [2.0, 3.0]) and pair.head.scale.dtype == np.float32, "dtype kept"
assert np.array_equal(pair.count, [4.0, 5.0]) and list(result.missing_keys) == [] and list(result.unexpected_keys) == []
partial = {"head.shift": np.array([7.0, 8.0]), "extra.weight": np.ones(3)}
result = pair.load_state_dict(partial, strict=False)
assert np.array_equal(pair.head.shift.data, [7.0, 8.0])
assert list(result.unexpected_keys) == ["extra.weight"] and "parts.0.scale" in list(result.missing_keys)
outer = type("Outer", (Module,), {"forward": lambda self, x: self.pair(x)})()
outer.pair = pair
assert len(outer.modules()) == 6 and outer.modules()[2] is pair.parts[0], "modules() goes all the way down"
assert [n for n, _ in outer.named_parameters()][0] == "pair.parts.0.scale"
before = {k: v.copy() for k, v in pair.state_dict().items()}
bad_loads = [({**before, "extra": np.ones(1)}, True),
             ({**{k: v + 1 for k, v in before.items()}, "parts.2.shift": np.ones(3)}, True),
             ({"head.scale": before["head.scale"] + 1, "head.shift": np.ones((2, 1))}, False)]
for bad, strict in bad_loads:
    try:
        pair.load_state_dict(bad, strict=strict)
        raise AssertionError("an unexpected key or a wrong shape must be refused")
    except KeyError:
        pass
    after = pair.state_dict()
    assert all(np.array_equal(after[k], before[k]) for k in before), "a refused load changes nothing"

# %% grade_id: test-activation-layers
# every layer on 3-D input, Softmax and LogSoftmax layers along non-default axes, modes and reprs
x3 = Tensor(np.random.default_rng(15).normal(size=(2, 3, 4)))
for layer, fn in [(ReLU(), relu), (Sigmoid(), sigmoid), (Tanh(), tanh), (GELU(), gelu),
                  (Softmax(), softmax), (LogSoftmax(), log_softmax)]:
    assert np.array_equal(layer(x3).data, fn(x3).data), layer
    assert layer.named_parameters() == [] and layer.train(False) is layer and not layer.training
    assert layer.train() is layer and layer.training
for ax in (0, 1, -2):
    assert np.array_equal(Softmax(axis=ax)(x3).data, softmax(x3, axis=ax).data), ax
    assert np.array_equal(LogSoftmax(axis=ax)(x3).data, log_softmax(x3, axis=ax).data), ax
assert repr(LogSoftmax(axis=1)) == "LogSoftmax(axis=1)" and repr(GELU()) == "GELU()" and repr(Tanh()) == "Tanh()"
class _Block(Module):                               # activations are ordinary children
    def __init__(self):
        super().__init__()
        self.act = GELU()
        self.inner = Affine(3)
        self.stack = [ReLU(), Affine(3), Softmax(axis=0)]

    def forward(self, x):
        return self.stack[2](self.stack[1](self.stack[0](self.inner(self.act(x)))))


blk = _Block()
assert all(isinstance(layer, Module) for layer in (ReLU(), Sigmoid(), Tanh(), GELU(), Softmax(), LogSoftmax()))
assert [n for n, _ in blk.named_children()] == ["act", "inner", "stack.0", "stack.1", "stack.2"]
assert [n for n, _ in blk.named_parameters()] == ["inner.scale", "inner.shift", "stack.1.scale", "stack.1.shift"]
assert len(blk.modules()) == 6 and blk.eval() is blk and not blk.act.training and not blk.stack[2].training
assert blk.train().stack[0].training and list(blk.state_dict()) == [n for n, _ in blk.named_parameters()]
assert blk(Tensor([1.0, -2.0, 3.0])).shape == (3,)
