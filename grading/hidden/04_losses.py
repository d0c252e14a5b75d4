# Hidden tests of module 04_losses. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-mse
# float64 precision with array and list targets, 3-D shapes, every reduction, the graph reaching the predictions
rng = np.random.default_rng(41)
pr, tg = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
sq = (pr - tg) ** 2
p64 = Tensor(pr, dtype=np.float64)
mse_mean = MSELoss()(p64, tg)
assert mse_mean.shape == () and mse_mean.dtype == np.float64
assert np.isclose(mse_mean.item(), sq.mean(), rtol=1e-12, atol=0), "ndarray targets keep float64 precision"
assert np.isclose(MSELoss("sum")(p64, Tensor(tg, dtype=np.float64)).item(), sq.sum(), rtol=1e-12, atol=0)
mse_none = MSELoss("none")(p64, tg)
assert mse_none.shape == (2, 3, 4) and np.allclose(mse_none.data, sq, rtol=1e-12, atol=0)
assert np.isclose(MSELoss()(Tensor([1.0, 2.0]), [0.0, 4.0]).item(), 2.5)
assert np.isclose(MSELoss()(Tensor(np.array([3.0])), Tensor(np.array([1])).astype(np.float32)).item(), 4.0)
pg = Tensor(pr, dtype=np.float64, requires_grad=True)
loss_g = MSELoss()(pg, tg)
reached, stack = [], [loss_g]
while stack:
    node = stack.pop()
    if node._ctx is None:
        reached.append(node)
    else:
        stack.extend(node._ctx.inputs)
assert loss_g.requires_grad and any(t is pg for t in reached), "the loss is built from Tensor operations"
for bad in (lambda: MSELoss()(Tensor(np.zeros(3)), Tensor(np.zeros((3, 1)))),
            lambda: MSELoss()(Tensor(np.zeros((2, 3))), np.zeros((3, 2))), lambda: MSELoss("avg")):
    try:
        bad()
        raise AssertionError("different shapes and unknown reductions must be refused")
    except ValueError:
        pass

# %% grade_id: test-cross-entropy
# float64 precision, (B, T, C) with every reduction, a non-negative ignore_index, huge logits in every row, graph
rng = np.random.default_rng(42)
zz, tt = rng.normal(size=(2, 3, 5)), rng.integers(0, 5, size=(2, 3))
tt[0, 1], tt[1, 2] = 2, 2
lp_ref = zz - np.log(np.exp(zz).sum(axis=-1, keepdims=True))
per = -np.take_along_axis(lp_ref, tt[..., None], axis=-1)[..., 0]
z64 = Tensor(zz, dtype=np.float64)
ce_mean = CrossEntropyLoss()(z64, tt)
assert ce_mean.shape == () and ce_mean.dtype == np.float64 and np.isclose(ce_mean.item(), per.mean(), rtol=1e-12, atol=0)
assert np.isclose(CrossEntropyLoss(reduction="sum")(z64, tt).item(), per.sum(), rtol=1e-12, atol=0)
ce_none = CrossEntropyLoss(reduction="none")(z64, tt)
assert ce_none.shape == (2, 3) and np.allclose(ce_none.data, per, rtol=1e-12, atol=0), "none keeps the targets' shape"
kept = tt != 2
assert np.isclose(CrossEntropyLoss(ignore_index=2)(z64, tt).item(), per[kept].mean(), rtol=1e-12, atol=0)
assert np.isclose(CrossEntropyLoss(ignore_index=2, reduction="sum")(z64, tt).item(), per[kept].sum(), rtol=1e-12, atol=0)
ign_none = CrossEntropyLoss(ignore_index=2, reduction="none")(z64, tt).data
assert ign_none.shape == (2, 3) and np.allclose(ign_none, np.where(kept, per, 0.0), rtol=1e-12, atol=0)
assert np.isclose(CrossEntropyLoss(ignore_index=7)(z64, tt).item(), per.mean(), rtol=1e-12), "7 never occurs"
for tgt in (tt.astype(np.int32), tt.astype(np.uint8), Tensor(tt), tt.tolist()):
    assert np.isclose(CrossEntropyLoss()(z64, tgt).item(), per.mean(), rtol=1e-12), type(tgt)
huge = (rng.normal(size=(6, 4)) + np.array([[1e4], [-1e4], [3e4], [-3e4], [0.0], [2e4]])).astype(np.float32)
labels_h = np.array([0, 1, 2, 3, 1, 0])
h64 = huge.astype(np.float64)
sh = h64 - h64.max(axis=1, keepdims=True)
ref_h = -(sh - np.log(np.exp(sh).sum(axis=1, keepdims=True)))[np.arange(6), labels_h]
with warnings.catch_warnings():
    warnings.simplefilter("error")
    got_h = CrossEntropyLoss(reduction="none")(Tensor(huge), labels_h).data
assert got_h.dtype == np.float32 and np.isfinite(got_h).all() and np.allclose(got_h, ref_h, rtol=1e-5, atol=1e-5)
zg = Tensor(zz, dtype=np.float64, requires_grad=True)
loss_g = CrossEntropyLoss()(zg, tt)
reached, stack = [], [loss_g]
while stack:
    node = stack.pop()
    if node._ctx is None:
        reached.append(node)
    else:
        stack.extend(node._ctx.inputs)
assert loss_g.requires_grad and any(t is zg for t in reached), "the loss is built from Tensor operations"
for bad_targets, error in [(np.array([[0, 5, 1], [1, 2, 0]]), ValueError), (np.array([[0, -1, 1], [1, 2, 0]]), ValueError),
                           (np.zeros((3, 2), dtype=np.int64), ValueError), (np.zeros(6, dtype=np.int64), ValueError),
                           (np.array([[0.0, 1.5, 1.0], [1.0, 2.0, 0.0]]), TypeError)]:
    for loss_fn in (CrossEntropyLoss(), CrossEntropyLoss(ignore_index=-100)):
        try:
            loss_fn(z64, bad_targets)
            raise AssertionError(f"{bad_targets.tolist()} must be refused")
        except error:
            pass
try:
    CrossEntropyLoss(reduction="avg")
    raise AssertionError("an unknown reduction must be refused")
except ValueError:
    pass

# %% grade_id: test-bce
# float64 precision on soft targets, 3-D shapes, every reduction, huge float64 logits, logits of exactly 0, refusals, graph
rng = np.random.default_rng(43)
xl, yl = rng.normal(scale=3.0, size=(2, 3, 4)), rng.uniform(size=(2, 3, 4))
ref_l = np.maximum(xl, 0) - xl * yl + np.log1p(np.exp(-np.abs(xl)))
x64 = Tensor(xl, dtype=np.float64)
bce_mean = bce(x64, yl)
assert bce_mean.shape == () and bce_mean.dtype == np.float64
assert np.isclose(bce_mean.item(), ref_l.mean(), rtol=1e-12, atol=0), "ndarray targets keep float64 precision"
assert np.isclose(BinaryCrossEntropyLoss("sum")(x64, Tensor(yl, dtype=np.float64)).item(), ref_l.sum(), rtol=1e-12, atol=0)
bce_none = BinaryCrossEntropyLoss("none")(x64, yl)
assert bce_none.shape == (2, 3, 4) and np.allclose(bce_none.data, ref_l, rtol=1e-12, atol=0)
assert np.allclose(BinaryCrossEntropyLoss("none")(Tensor([0.0, 0.0]), [0.0, 1.0]).data, np.log(2.0), atol=1e-7)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    far = BinaryCrossEntropyLoss("none")(Tensor([800.0, -800.0, 800.0, -800.0, 40.0], dtype=np.float64),
                                         np.array([1.0, 0.0, 0.0, 1.0, 0.25])).data
assert np.isfinite(far).all() and np.allclose(far, [0.0, 0.0, 800.0, 800.0, 30.0], rtol=1e-12, atol=1e-12)
xg = Tensor(xl, dtype=np.float64, requires_grad=True)
loss_g = bce(xg, yl)
reached, stack = [], [loss_g]
while stack:
    node = stack.pop()
    if node._ctx is None:
        reached.append(node)
    else:
        stack.extend(node._ctx.inputs)
assert loss_g.requires_grad and any(t is xg for t in reached), "the loss is built from Tensor operations"
for bad in (lambda: bce(Tensor([0.0, 1.0]), [0.5, -0.5]), lambda: bce(Tensor([0.0, 1.0]), [0.5, np.nan]),
            lambda: bce(Tensor(np.zeros((4, 1))), np.zeros(4)), lambda: bce(Tensor(np.zeros((2, 3))), np.zeros((3, 2))),
            lambda: BinaryCrossEntropyLoss("avg")):
    try:
        bad()
        raise AssertionError("targets outside [0, 1], different shapes and unknown reductions must be refused")
    except ValueError:
        pass
