# Hidden tests of module 01_tensor. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-tensor-storage
# every branch of the dtype policy, shared memory, who may require gradients, a fresh tensor's graph state
a32 = np.arange(6, dtype=np.float32).reshape(2, 3)
shared = Tensor(a32)
a32[0, 0] = 42.0
assert shared.data[0, 0] == 42.0 and shared.numpy() is shared.data, "a float32 array is shared, not copied"
assert Tensor(np.array([1, 2], dtype=np.uint8)).dtype == np.uint8
assert Tensor(np.array([1, 2], dtype=np.int32)).dtype == np.int32
assert Tensor(np.array([True, False])).dtype == np.bool_ and Tensor([True, False]).dtype == np.bool_
assert Tensor(np.ones(2, dtype=np.float16)).dtype == np.float32 and Tensor(np.float64(2.5)).dtype == np.float32
assert Tensor(3).dtype == np.float32 and Tensor([[1, 2]]).dtype == np.float32 and Tensor(True).dtype == np.bool_
assert Tensor([1, 2], dtype=np.int32).dtype == np.int32 and Tensor([0.1], dtype=np.float64).data[0] == 0.1
assert Tensor(np.arange(3), dtype=np.float64).dtype == np.float64
again = Tensor(shared)
assert again.shape == (2, 3) and again.dtype == np.float32 and np.array_equal(again.data, shared.data)
assert Tensor(np.zeros((0, 3))).shape == (0, 3) and Tensor(5.0).shape == () and Tensor(5.0).ndim == 0
fresh = Tensor([1.0, 2.0])
assert fresh.requires_grad is False and fresh.grad is None and fresh._ctx is None and fresh.is_leaf
learn = Tensor([1.0, 2.0], requires_grad=True)
assert learn.requires_grad is True and learn.grad is None and learn._ctx is None and learn.is_leaf
assert Tensor(np.ones(2), dtype=np.float64, requires_grad=True).requires_grad
assert Tensor([1, 2], requires_grad=True).dtype == np.float32, "Python ints are numbers: float32, may learn"
for not_float in (np.array([1, 2]), [True, False], np.array([1, 2], dtype=np.uint8)):
    try:
        Tensor(not_float, requires_grad=True)
        raise AssertionError(f"a {np.asarray(not_float).dtype} tensor must not require gradients")
    except TypeError:
        pass
for ragged in ([[1.0], [2.0, 3.0]], [[[1, 2]], [[3]]]):
    try:
        Tensor(ragged)
        raise AssertionError("a ragged list must be refused")
    except ValueError:
        pass
try:
    Tensor(["a", "b"])
    raise AssertionError("strings are not numbers")
except TypeError:
    pass

# %% grade_id: test-constructors
# dtype and requires_grad arguments, shapes given as a tuple, rng= independent of the global generator
assert zeros((2, 3)).shape == (2, 3) and zeros(2, 3, dtype=np.float64).dtype == np.float64
assert ones(3, requires_grad=True).requires_grad and not zeros(3).requires_grad
assert full((2, 2), 7.0).dtype == np.float32 and np.all(full((2, 2), 7.0).data == 7)
assert arange(5).dtype == np.int64 and arange(2, 8, 2).data.tolist() == [2, 4, 6]
assert arange(3, dtype=np.float32).dtype == np.float32
assert zeros_like(Tensor(np.array([1, 2]))).dtype == np.int64 and ones_like(a).shape == (3, 3)
r1 = randn(4, 5, rng=np.random.default_rng(9)).data
r2 = randn((4, 5), rng=np.random.default_rng(9)).data
assert r1.shape == (4, 5) and np.array_equal(r1, r2), "the rng argument decides the numbers"
u = rand(1000, rng=np.random.default_rng(10)).data
assert u.dtype == np.float32 and 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
manual_seed(5); s1 = rand(3).data
manual_seed(5); randn(2, rng=np.random.default_rng(1)); s2 = rand(3).data
assert np.array_equal(s1, s2), "an explicit rng does not consume the global generator"

# %% grade_id: test-elementwise
# broadcasting of 3-D with 2-D operands in both orders against numpy, and the dtype of every operator
rng = np.random.default_rng(101)
na, nb = rng.normal(size=(3, 1, 4)), rng.uniform(1.0, 3.0, size=(2, 1))
ta, tb = Tensor(na, dtype=np.float64), Tensor(nb, dtype=np.float64)
for got, want in [(ta + tb, na + nb), (tb + ta, nb + na), (ta - tb, na - nb), (tb - ta, nb - na),
                  (ta * tb, na * nb), (ta / tb, na / nb), (tb / (ta * ta + 1), nb / (na * na + 1)),
                  (tb ** ta, nb ** na), (ta ** 2, na ** 2), (-ta, -na)]:
    assert isinstance(got, Tensor) and got.shape == want.shape and got.dtype == np.float64
    assert np.allclose(got.data, want, rtol=1e-12, atol=1e-12)
neg = Tensor([-2.0, -3.0, 0.5])
assert np.allclose((neg ** 3).data, [-8.0, -27.0, 0.125]) and np.allclose((neg ** 2).data, [4.0, 9.0, 0.25])
assert np.allclose((neg ** Tensor([2.0, 3.0, -1.0])).data, [4.0, -27.0, 2.0])
f32, f64 = Tensor([1.0, 2.0]), Tensor([1.0, 2.0], dtype=np.float64)
i64, j64 = Tensor(np.array([1, 2])), Tensor(np.array([4, 6]))
assert (f64 + f64).dtype == np.float64 and (f64 * 0.5).dtype == np.float64 and (1 - f64).dtype == np.float64
assert (f64 / f64).dtype == np.float64 and (f64 ** 2).dtype == np.float64 and (-f64).dtype == np.float64
assert (f32 + f32).dtype == np.float32 and (f32 / 3).dtype == np.float32 and (f32 + np.float64(1.5)).dtype == np.float32
assert (f32 + np.ones(2)).dtype == np.float32 and isinstance(np.ones(2) + f32, Tensor)
assert (i64 + j64).dtype == np.int64 and (i64 + 1).dtype == np.int64 and (i64 * 2).dtype == np.int64
assert (j64 - i64).dtype == np.int64 and (-i64).dtype == np.int64 and (i64 ** 2).dtype == np.int64
assert np.array_equal((j64 - i64).data, [3, 4]) and np.array_equal((i64 * 3).data, [3, 6])
assert (i64 + f32).dtype == np.float32 and (f32 * i64).dtype == np.float32 and (i64 + f64).dtype == np.float64
assert (i64 * 0.5).dtype == np.float32 and np.allclose((i64 * 0.5).data, [0.5, 1.0])
assert (j64 / i64).dtype == np.float32 and np.allclose((j64 / i64).data, [4.0, 3.0])
assert (i64 / 2).dtype == np.float32 and np.allclose((i64 / 2).data, [0.5, 1.0]), "true division"
assert (i64 / f64).dtype == np.float64
for bad in [(Tensor(np.ones((2, 3))), Tensor(np.ones((3, 2)))), (Tensor(np.ones((4, 1, 3))), Tensor(np.ones((2, 2))))]:
    try:
        bad[0] * bad[1]
        raise AssertionError("shapes that do not broadcast must be refused")
    except ValueError:
        pass

# %% grade_id: test-matmul
# non-square products, broadcasting batch axes, (B, T, k) @ (k, m), 1-D operands, float64, against numpy
rng = np.random.default_rng(202)
for sa, sb in [((3, 5), (5, 2)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
               ((6, 4), (2, 4, 3)), ((3, 2, 4), (1, 4, 6)), ((1, 4), (3, 4, 2))]:
    na, nb = rng.normal(size=sa), rng.normal(size=sb)
    got = Tensor(na, dtype=np.float64) @ Tensor(nb, dtype=np.float64)
    assert got.shape == (na @ nb).shape and got.dtype == np.float64, (sa, sb, got.shape)
    assert np.allclose(got.data, na @ nb, rtol=1e-10, atol=1e-12), (sa, sb)
    assert (Tensor(na) @ Tensor(nb)).dtype == np.float32
ints = Tensor(np.array([[1, 2], [3, 4]]))
assert (ints @ ints).dtype == np.int64 and np.array_equal((ints @ ints).data, [[7, 10], [15, 22]])
assert (ints @ Tensor([[1.0], [0.5]])).dtype == np.float32
assert isinstance(np.eye(2) @ A, Tensor) and np.allclose((np.eye(2) @ A).data, A.data)
for sa, sb in [((2, 3, 4), (3, 5)), ((2, 3, 4), (2, 3, 5)), ((2, 3, 4), (3, 4, 2))]:
    try:
        Tensor(np.ones(sa)) @ Tensor(np.ones(sb))
        raise AssertionError(f"{sa} @ {sb} must fail")
    except ValueError:
        pass

# %% grade_id: test-reductions
# every axis form (None, int, negative, tuple in any order) with and without keepdims, on 3-D data; dtypes
rng = np.random.default_rng(303)
cube = rng.normal(size=(2, 3, 4))
tc = Tensor(cube, dtype=np.float64)
for axis in (None, 0, 1, 2, -1, -2, (0, 2), (2, 0), (-1, -3), (0, 1, 2)):
    for keepdims in (False, True):
        for name in ("sum", "mean", "max"):
            got = getattr(tc, name)(axis=axis, keepdims=keepdims)
            want = getattr(np, name)(cube, axis=axis, keepdims=keepdims)
            assert got.shape == np.shape(want) and got.dtype == np.float64, (name, axis, keepdims, got.shape)
            assert np.allclose(got.data, want, rtol=1e-12, atol=1e-12), (name, axis, keepdims)
assert m.max(axis=0).shape == (3,) and m.max(axis=-1, keepdims=True).shape == (2, 1)
assert m.mean().shape == () and m.max().shape == () and m.sum().dtype == np.float32
assert m.mean(axis=0).dtype == np.float32 and m.max(axis=1).dtype == np.float32
counts = Tensor(np.array([[1, 2], [3, 5]]))
assert counts.sum().dtype == np.int64 and counts.sum().item() == 11 and counts.max().dtype == np.int64
assert counts.mean().dtype == np.float32 and np.isclose(counts.mean().item(), 2.75)
assert counts.mean(axis=0).dtype == np.float32 and np.allclose(counts.mean(axis=0).data, [2.0, 3.5])
assert Tensor(np.array([True, False, True])).sum().item() == 2
for name, axis in [("sum", 3), ("mean", -4), ("max", (0, 5)), ("sum", (1, -4))]:
    try:
        getattr(tc, name)(axis=axis)
        raise AssertionError(f"axis {axis} does not exist for a 3-D tensor")
    except ValueError:
        pass

# %% grade_id: test-math-shape
# exp/log/sqrt precision and dtypes, tiny inputs, 3-D permutations, reshapes and indexing against numpy
rng = np.random.default_rng(404)
pos = rng.uniform(0.5, 3.0, size=(2, 3, 4))
tp = Tensor(pos, dtype=np.float64)
for got, want in [(tp.exp(), np.exp(pos)), (tp.log(), np.log(pos)), (tp.sqrt(), np.sqrt(pos))]:
    assert got.dtype == np.float64 and np.allclose(got.data, want, rtol=1e-13, atol=0)
small = np.array([1e-6, 1e-3, 1.0, 50.0])
for dt in (np.float32, np.float64):
    ts = Tensor(small, dtype=dt)
    for got, want in [(ts.exp(), np.exp(small)), (ts.log(), np.log(small)), (ts.sqrt(), np.sqrt(small))]:
        assert got.dtype == dt and np.allclose(got.data, want, rtol=1e-6, atol=0), (dt, got, want)
assert Tensor(np.array([1.0, 4.0])).astype(np.float64).dtype == np.float64
assert Tensor(np.array([1.7, -2.2])).astype(np.int64).data.tolist() == [1, -2]
cube = np.arange(24.0).reshape(2, 3, 4)
tcube = Tensor(cube)
for axes in [(0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1), (-1, 0, 1)]:
    assert np.array_equal(tcube.permute(*axes).data, cube.transpose(axes)), axes
assert np.array_equal(tcube.permute((1, 2, 0)).data, cube.transpose(1, 2, 0))
assert np.array_equal(tcube.transpose(0, 2).data, np.swapaxes(cube, 0, 2)) and np.array_equal(tcube.T.data, cube.T)
assert np.array_equal(tcube.transpose().data, np.swapaxes(cube, 1, 2))
assert np.array_equal(tcube.reshape(4, -1).data, cube.reshape(4, -1)) and tcube.reshape((6, 4)).shape == (6, 4)
assert np.array_equal(tcube.permute(2, 0, 1).reshape(4, 6).data, cube.transpose(2, 0, 1).reshape(4, 6))
for index in [(1, slice(None), 2), (slice(None), [2, 0, 2]), (Ellipsis, -1), (0, 1), np.array([1, 1, 0]),
              (slice(None), slice(None, None, -1)), (0, slice(1, 3), np.array([3, 0]))]:
    assert np.array_equal(tcube[index].data, cube[index]), index
assert np.array_equal(tcube[Tensor(np.array([1, 0])), 2].data, cube[[1, 0], 2])
for sa, sb in [((4,), (4, 3)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((4,), (4,))]:   # 1-D matmul operands
    na, nb = rng.normal(size=sa), rng.normal(size=sb)
    got = Tensor(na, dtype=np.float64) @ Tensor(nb, dtype=np.float64)
    assert got.shape == (na @ nb).shape and np.allclose(got.data, na @ nb, rtol=1e-10, atol=1e-12), (sa, sb)
assert np.array_equal(tcube[tcube > 20].data, [21.0, 22.0, 23.0]) and tcube[0, 1, 2].shape == ()
for bad in (lambda: tcube[5], lambda: tcube[0, 0, 4]):
    try:
        bad()
        raise AssertionError("an index outside the shape must be refused")
    except IndexError:
        pass
for bad in (lambda: tcube.reshape(5, 5), lambda: tcube.permute(0, 1), lambda: tcube.permute(0, 0, 1)):
    try:
        bad()
        raise AssertionError("an impossible reshape or permutation must be refused")
    except ValueError:
        pass

# %% grade_id: test-graph-recording
# every operator records its Function and inputs when (and only when) an input requires gradients
wg = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
plain = Tensor([[0.5, 1.0], [1.5, 2.0]])
for made, kind in [(wg + plain, Add), (plain - wg, Sub), (-wg, Neg), (wg * plain, Mul), (plain / wg, Div),
                   (wg ** 2, Pow), (wg @ plain, MatMul), (wg.sum(axis=0), Sum), (wg.mean(), Mean),
                   (wg.max(axis=1), Max), (wg.exp(), Exp), (wg.log(), Log), (wg.sqrt(), Sqrt),
                   (wg.reshape(4), Reshape), (wg.T, Permute), (wg[1], GetItem), (wg.astype(np.float64), Cast)]:
    assert isinstance(made._ctx, kind) and made.requires_grad and not made.is_leaf, kind.__name__
    assert any(t is wg for t in made._ctx.inputs), kind.__name__
for made in [plain + plain, plain @ plain, plain.sum(), wg.detach() * 2, (wg > 2), plain.exp()]:
    assert made._ctx is None and not made.requires_grad
assert wg.detach().data is wg.data and wg.detach().is_leaf
chain = ((wg * plain).sum(axis=1) + 1).mean()
assert isinstance(chain._ctx, Mean) and isinstance(chain._ctx.inputs[0]._ctx, Add)
Autograd.grad_enabled = False                        # what no_grad() (module 05) switches off
try:
    assert (wg * plain)._ctx is None and not (wg * plain).requires_grad, "nothing is recorded with recording off"
finally:
    Autograd.grad_enabled = True
assert isinstance((wg * plain)._ctx, Mul)
