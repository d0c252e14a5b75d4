# Hidden tests of module 03_layers. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-dense
# a non-zero bias, bias=False, non-square He init, the rng argument, float64 layers, the graph reaching weight and bias
rng = np.random.default_rng(31)
dl = Dense(6, 3, rng=np.random.default_rng(5))
dl.bias.data[:] = np.array([1.5, -2.0, 0.25], dtype=np.float32)
xs = rng.normal(size=(4, 6)).astype(np.float32)
assert np.allclose(dl(Tensor(xs)).data, xs @ dl.weight.data + dl.bias.data, atol=1e-5), "y = x W + b"
x3 = rng.normal(size=(2, 5, 6)).astype(np.float32)
assert np.allclose(dl(Tensor(x3)).data, x3 @ dl.weight.data + dl.bias.data, atol=1e-5)
assert np.allclose(dl(Tensor(xs[0])).data, xs[0] @ dl.weight.data + dl.bias.data, atol=1e-5)
assert np.allclose(dl(xs).data, xs @ dl.weight.data + dl.bias.data, atol=1e-5), "an ndarray input works"
nb = Dense(6, 3, bias=False, rng=np.random.default_rng(5))
assert nb.bias is None and [n for n, _ in nb.named_parameters()] == ["weight"]
assert np.array_equal(nb.weight.data, dl.weight.data), "same rng seed, same weights"
assert np.allclose(nb(Tensor(xs)).data, xs @ nb.weight.data, atol=1e-5)
assert not np.array_equal(Dense(6, 3, rng=np.random.default_rng(6)).weight.data, dl.weight.data)
tall = Dense(300, 20, rng=np.random.default_rng(7))
assert tall.weight.shape == (300, 20) and tall.bias.shape == (20,) and (tall.bias.data == 0).all()
assert np.abs(tall.weight.data).max() <= math.sqrt(6 / 300), "bound sqrt(6 / in_features)"
assert abs(tall.weight.data.var() - 2 / 300) < 0.1 * 2 / 300 and abs(tall.weight.data.mean()) < 0.01
d64 = Dense(4, 2, dtype=np.float64, rng=np.random.default_rng(8))
assert d64.weight.dtype == np.float64 and d64.bias.dtype == np.float64
assert d64(Tensor(np.ones((3, 4)), dtype=np.float64)).dtype == np.float64
assert d64.weight.requires_grad and d64.bias.requires_grad and isinstance(d64.bias, Parameter)
out_graph = dl(Tensor(xs))
reached, stack, seen_ids = [], [out_graph], set()
while stack:
    node = stack.pop()
    if id(node) in seen_ids:
        continue
    seen_ids.add(id(node))
    if node._ctx is None:
        reached.append(node)
    else:
        stack.extend(node._ctx.inputs)
assert out_graph.requires_grad and any(t is dl.weight for t in reached) and any(t is dl.bias for t in reached), \
    "the output must be computed with Tensor operations on the parameters"
for bad in (lambda: Dense(0, 3), lambda: Dense(3, 0), lambda: dl(Tensor(np.ones(5))), lambda: dl(Tensor(3.0))):
    try:
        bad()
        raise AssertionError("a size of 0 or an input that does not fit must be refused")
    except ValueError:
        pass

# %% grade_id: test-containers
# Flatten's start_dim, layer order, nested Sequential names and modes, Dropout's rng, dtype, graph and rate at p = 0.6
cube = Tensor(np.arange(120.0).reshape(2, 3, 4, 5))
assert Flatten()(cube).shape == (2, 60) and np.array_equal(Flatten(2)(cube).data, cube.data.reshape(2, 3, 20))
assert Flatten(-2)(cube).shape == (2, 3, 20) and Flatten(0)(cube).shape == (120,) and Flatten(3)(cube).shape == (2, 3, 4, 5)
try:
    Flatten(4)(cube)
    raise AssertionError("start_dim 4 is out of range for 4 dimensions")
except ValueError:
    pass
order = Sequential(lambda t: t * 2, lambda t: t + 1)
assert order(Tensor([1.0])).item() == 3.0, "layers run first to last"
nested = Sequential(Sequential(Dense(3, 4), Dropout(0.5)), ReLU(), Dense(4, 2))
assert [n for n, _ in nested.named_parameters()] == [
    "layers.0.layers.0.weight", "layers.0.layers.0.bias", "layers.2.weight", "layers.2.bias"]
nested.eval()
assert not nested[0][1].training and not nested[0].training
probe = Tensor(np.ones((2, 3)))
assert np.array_equal(nested(probe).data, nested(probe).data), "eval mode is deterministic"
assert nested.append(Flatten()) is nested and len(nested) == 4
head = nested[1:]
assert isinstance(head, Sequential) and len(head) == 3 and head[1] is nested[2], "a slice is a Sequential of the same layers"
assert head(Tensor(np.ones((2, 4)))).shape == (2, 2)
d1, d2 = Dropout(0.5, rng=np.random.default_rng(3)), Dropout(0.5, rng=np.random.default_rng(3))
probe = Tensor(np.ones((50, 40)))
first = d1(probe).data
assert np.array_equal(first, d2(probe).data), "the rng argument decides the mask"
assert not np.array_equal(first, d1(probe).data), "a new mask at every call"
d6 = Dropout(0.6, rng=np.random.default_rng(4))
o6 = d6(Tensor(np.full((300, 300), 2.0), dtype=np.float64)).data
assert o6.dtype == np.float64 and np.allclose(np.unique(o6), [0.0, 5.0]), "kept: 2 / (1 - 0.6)"
assert abs((o6 == 0).mean() - 0.6) < 0.01 and abs(o6.mean() - 2.0) < 0.05
assert Dropout(0.5)(Tensor(np.ones((2, 3)))).dtype == np.float32
xg = Tensor(np.ones((3, 4)), requires_grad=True)
dropped = Dropout(0.5, rng=np.random.default_rng(5))(xg)
reached, stack = [], [dropped]
while stack:
    node = stack.pop()
    if node._ctx is None:
        reached.append(node)
    else:
        stack.extend(node._ctx.inputs)
assert dropped.requires_grad and any(t is xg for t in reached), "dropout multiplies tensors: the gradient reaches x"
