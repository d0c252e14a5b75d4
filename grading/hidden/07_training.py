# Hidden tests of module 07_training. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-metrics
# accuracy on random scores against numpy, on other dtypes, one prediction, no predictions, infinite scores, (B, T, V) with some wrong; shapes that do not fit; how metrics are named
mrng = np.random.default_rng(71)
out = mrng.standard_normal((50, 7))
tgt = mrng.integers(0, 7, 50)
assert accuracy(out, tgt) == (int((out.argmax(axis=1) == tgt).sum()), 50)
c32, n32 = accuracy(out.astype(np.float32), tgt.astype(np.int32))
assert c32 == int((out.astype(np.float32).argmax(axis=1) == tgt).sum()) and n32 == 50
out3 = mrng.standard_normal((3, 4, 5))
tgt3 = out3.argmax(axis=-1)
tgt3[0, 0] = (tgt3[0, 0] + 1) % 5
tgt3[2, 3] = (tgt3[2, 3] + 2) % 5
assert accuracy(out3, tgt3) == (10, 12)
assert accuracy(np.array([0.1, 0.9, 0.3]), np.array(1)) == (1, 1), "one prediction: (C,) scores, a 0-d target"
assert accuracy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)) == (0, 0)
assert accuracy(np.array([[1e30, -1e30, 0.0], [-np.inf, 5.0, np.inf]]), np.array([0, 2])) == (2, 2)
for bad_out, bad_tgt in [(np.zeros(4), np.zeros(4, dtype=int)), (np.zeros((4, 3, 1)), np.zeros(4, dtype=int)),
                         (np.zeros((2, 5, 7)), np.zeros((5, 2), dtype=int))]:
    try:
        accuracy(bad_out, bad_tgt)
        raise AssertionError(f"outputs {bad_out.shape} with targets {bad_tgt.shape} must be refused")
    except ValueError:
        pass
assert list(_resolve_metrics({"acc": "accuracy", "mae": mean_abs_error})) == ["acc", "mae"]
assert _resolve_metrics(None) == {} and list(_resolve_metrics("accuracy")) == ["accuracy"]
for bad in (("nonsense",), ("accuracy", "accuracy"), {"loss": mean_abs_error}, {"two words": mean_abs_error}):
    try:
        _resolve_metrics(bad)
        raise AssertionError(f"metrics {bad!r} must be refused")
    except ValueError:
        pass

# %% grade_id: test-diverged
# other numbers, an infinite value, and the gradient-norm variant: the message carries each number, and says which quantity diverged
e2 = TrainingDivergedError(epoch=12, batch=345, value=float("inf"), lr=0.003)
m2 = str(e2)
assert "12" in m2 and "345" in m2 and "inf" in m2 and "0.003" in m2, m2
assert (e2.epoch, e2.batch, e2.value, e2.lr) == (12, 345, float("inf"), 0.003)
e3 = TrainingDivergedError(epoch=12, batch=345, value=float("inf"), lr=0.003, what="gradient norm")
assert str(e3) != m2 and "345" in str(e3), "the message names what diverged"
try:
    raise e3
except RuntimeError as caught:
    assert caught is e3

# %% grade_id: test-trainer
# fit against a hand-written loop, bit for bit (zero_grad, backward, global clipping, SGD momentum, a scheduler stepped after every optimizer step, the rate recorded, losses averaged by batch size); set_epoch called with each epoch; a NaN batch stops training before the update; a non-finite gradient norm stops it too
from tinytorch.core.optimizers import StepLR


class Recorded:
    """A list of batches that records set_epoch calls and the parameters before each batch."""
    def __init__(self, batches, params):
        self.batches, self.params, self.epochs, self.before = batches, params, [], []

    def set_epoch(self, e):
        self.epochs.append(e)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            self.before.append([p.data.copy() for p in self.params])
            yield b


trng = np.random.default_rng(73)
hb = [(trng.standard_normal((n, 3)).astype(np.float32), 4 * trng.standard_normal((n, 2)).astype(np.float32))
      for n in (4, 4, 4, 4, 3)]


def tiny(seed):
    manual_seed(seed)
    net = Sequential(Dense(3, 4), ReLU(), Dense(4, 2))
    o = SGD(net.parameters(), lr=0.05, momentum=0.9)
    return net, o, StepLR(o, step_size=2, gamma=0.5)


net_a, opt_a, sch_a = tiny(5)
data_a = Recorded(hb, net_a.parameters())
ta = Trainer(net_a, opt_a, MSELoss(), metrics=(), scheduler=sch_a, grad_clip=0.5, progress=False)
hist_a = ta.fit(data_a, epochs=3)
assert hist_a is ta.history and data_a.epochs == [0, 1, 2] and ta.epoch == 3 and hist_a["epoch"] == [1, 2, 3]
net_b, opt_b, sch_b = tiny(5)
mse = MSELoss()
losses, rates = [], []
for e in range(3):
    total = 0.0
    for xb, yb in hb:
        lb = mse(net_b(Tensor(xb)), yb)
        opt_b.zero_grad()
        lb.backward()
        clip_grad_norm(opt_b.params, 0.5)
        rate = opt_b.lr
        opt_b.step()
        sch_b.step()
        total += float(lb.data) * len(xb)
    losses.append(total / 19)
    rates.append(rate)
assert all(np.array_equal(p.data, q.data) for p, q in zip(net_a.parameters(), net_b.parameters())), "fit differs from the loop"
assert np.allclose(hist_a["train_loss"], losses, rtol=1e-12) and hist_a["lr"] == rates, (hist_a, losses, rates)
assert all(math.isnan(v) for v in hist_a["val_loss"]) and opt_a.lr == opt_b.lr
tv = Trainer(*tiny(5)[:2], MSELoss(), metrics=(), progress=False)
hist_v = tv.fit(hb, val_data=hb[:2], epochs=1)
assert len(hist_v["val_loss"]) == 1 and math.isfinite(hist_v["val_loss"][0])
with no_grad():                                      # evaluate: every batch, weighted by its size
    ev_losses = [(float(mse(tv.model(Tensor(xb)), yb).data), len(xb)) for xb, yb in hb]
ev_expected = sum(l * n for l, n in ev_losses) / sum(n for _, n in ev_losses)
assert math.isclose(tv.evaluate(hb)["loss"], ev_expected, rel_tol=1e-12)
val_expected = sum(l * n for l, n in ev_losses[:2]) / 8
assert math.isclose(tv.evaluate(hb[:2])["loss"], val_expected, rel_tol=1e-12)
assert not math.isclose(tv.evaluate(hb)["loss"], val_expected, rel_tol=1e-9)
assert hist_v["val_loss"][0] == tv.evaluate(hb[:2])["loss"], "fit validates on val_data"
# a NaN batch (epoch 2, batch 3): the error says where, and the parameters are those before that batch
net_c, opt_c, _ = tiny(6)
poisoned = list(hb)
data_c = Recorded(poisoned, net_c.parameters())
tc = Trainer(net_c, opt_c, MSELoss(), metrics=(), progress=False)
tc.fit(data_c, epochs=1)
poisoned[2] = (np.full((4, 3), np.nan, dtype=np.float32), hb[2][1])
try:
    with np.errstate(invalid="ignore", over="ignore"):
        tc.fit(data_c, epochs=2)
    raise AssertionError("a NaN loss must stop training")
except TrainingDivergedError as err:
    assert (err.epoch, err.batch) == (2, 3) and math.isnan(err.value) and tc.epoch == 1, (err.epoch, err.batch)
assert all(np.array_equal(p.data, q) for p, q in zip(net_c.parameters(), data_c.before[-1])), "no update from the bad batch"
# a finite loss whose gradient is NaN (sqrt at 0): with grad_clip set, training stops before the update
net_d, opt_d, _ = tiny(7)
start_d = [p.data.copy() for p in net_d.parameters()]
td = Trainer(net_d, opt_d, lambda out, y: (out * 0.0).sum().sqrt(), metrics=(), grad_clip=1.0, progress=False)
try:
    with np.errstate(divide="ignore", invalid="ignore"):
        td.fit(hb, epochs=1)
    raise AssertionError("a NaN gradient norm must stop training")
except TrainingDivergedError as err:
    assert (err.epoch, err.batch) == (1, 1) and math.isnan(err.value)
assert all(np.array_equal(p.data, q) for p, q in zip(net_d.parameters(), start_d))

# evaluate runs the model in eval mode under no_grad, whatever mode it found
from tinytorch.core.autograd import is_grad_enabled
from tinytorch.core.layers import Module


class ModeProbe(Module):
    def __init__(self):
        super().__init__()
        self.inner, self.seen = Dense(3, 2), []

    def forward(self, x):
        self.seen.append((self.training, is_grad_enabled()))
        return self.inner(x)


probe = ModeProbe()
tp = Trainer(probe, SGD(probe.parameters(), lr=0.01), MSELoss(), metrics=(), progress=False)
probe.train()
tp.evaluate(hb[:1])
assert probe.seen[-1] == (False, False) and probe.training
# divergence while finite: a few spiky batches are forgiven; a loss that keeps growing, or stays high, is not
hrng = np.random.default_rng(74)
hx, hy = hrng.standard_normal((400, 6)).astype(np.float32), hrng.integers(0, 4, 400)
hbatches = [(hx[i:i + 10], hy[i:i + 10]) for i in range(0, 400, 10)]


def scaled_ce(scale):
    ce, calls = CrossEntropyLoss(), [0]

    def loss_fn(out, t):
        calls[0] += 1
        return ce(out, t) * float(scale(calls[0]))
    return loss_fn


def run_with(scale, **kw):
    manual_seed(3)
    net = Sequential(Dense(6, 8), ReLU(), Dense(8, 4))
    tr = Trainer(net, SGD(net.parameters(), lr=1e-4), scaled_ce(scale), metrics=(), progress=False, **kw)
    try:
        tr.fit(hbatches, epochs=1)
    except TrainingDivergedError as err:
        return err
    return None


assert run_with(lambda c: 1000.0 if c % 5 in (2, 4) else 1.0, divergence_patience=10) is None, "2 spikes in 5 forgiven"
err = run_with(lambda c: 1000.0 if c % 5 in (0, 2, 4) else 1.0, divergence_patience=10)
assert err is not None and math.isfinite(err.value) and err.batch == 10, "3 of 5 above the bound: stopped"
err = run_with(lambda c: 1.5 ** c)                          # grows steadily, finite
assert err is not None and math.isfinite(err.value) and err.batch <= 30, err
assert run_with(lambda c: 1.5 ** c, divergence_factor=None) is None, "divergence_factor=None turns it off"
assert run_with(lambda c: 3.0 if c > 1 else 1.0) is None, "3x the reference is below the default bound of 4x"

# %% grade_id: test-resume
# resuming from an explicit checkpoint path, a run that is already finished, and training more epochs than a resumed run had
done = make_run(seed=9)
done.fit(train_data, resume=ckpt_dir / "last.npz", epochs=4)
assert done.epoch == 4 and done.history["train_loss"] == resumed.history["train_loss"]
assert all(np.array_equal(a.data, b.data) for a, b in zip(done.model.parameters(), resumed.model.parameters()))
before_done = [p.data.copy() for p in done.model.parameters()]
done.fit(train_data, epochs=4, resume=ckpt_dir / "last.npz")          # nothing left to do
assert done.epoch == 4 and all(np.array_equal(a.data, b) for a, b in zip(done.model.parameters(), before_done))
more = make_run(seed=10, checkpoint_dir=ckpt_dir)
more.fit(train_data, epochs=5, resume=True)
assert more.epoch == 5 and more.history["epoch"] == [1, 2, 3, 4, 5]
assert more.history["train_loss"][:4] == straight.history["train_loss"]

# a checkpoint that does not fit (no scheduler, other metrics, a generator of its own) is refused and changes nothing
before_plain = [p.data.copy() for p in net.parameters()]
try:
    plain.load_checkpoint(ckpt_dir / "last.npz")
    raise AssertionError("a checkpoint that does not fit must be refused")
except CheckpointError:
    pass
assert plain.epoch == 0 and all(np.array_equal(a, p.data) for a, p in zip(before_plain, net.parameters())), "unchanged"

# %% grade_id: test-checkpoint-files
# write_atomically: the writer's exception propagates and leaves the old file and no temporary; a fresh folder is made; save/load keep every dtype and shape bit for bit; a crafted member is refused
hdir = Path(tempfile.mkdtemp())
keep = write_atomically(hdir / "sub" / "keep.bin", lambda f: f.write(b"old"))
assert keep == hdir / "sub" / "keep.bin" and keep.read_bytes() == b"old"
def broken(f):
    f.write(b"half")
    raise OSError("disk full")
try:
    write_atomically(keep, broken)
    raise AssertionError("the writer's exception must propagate")
except OSError:
    pass
assert keep.read_bytes() == b"old" and sorted(p.name for p in keep.parent.iterdir()) == ["keep.bin"]
crng = np.random.default_rng(75)
stored = {"model/0.weight": crng.standard_normal((3, 2)), "i64": np.arange(5, dtype=np.int64),
          "u8": np.array([[0, 255]], dtype=np.uint8), "scalar": np.array(2.5), "empty": np.zeros((0, 3), np.float32)}
back, back_meta = load_npz_checkpoint(save_npz_checkpoint(hdir / "c.ckpt", stored, {"n": np.int64(3), "s": {1, 2}}, "h"), "h")
assert sorted(back) == sorted(stored) and back_meta == {"n": 3, "s": [1, 2]}
assert all(back[k].dtype == v.dtype and np.array_equal(back[k], v) for k, v in stored.items())
assert load_npz_checkpoint(hdir / "c.ckpt", "h", shapes={k: v.shape for k, v in stored.items()})[0].keys() == stored.keys()
with zipfile.ZipFile(hdir / "bad.npz", "w") as zf:
    zf.writestr("__meta__.npy", (hdir / "c.ckpt").read_bytes()[:0])
    zf.writestr("x/../y.npy", b"")
try:
    load_npz_checkpoint(hdir / "bad.npz", "h")
    raise AssertionError("a crafted archive must be refused")
except CheckpointError:
    pass

# the file and then its folder are synced (the rename survives a power cut); what the header and shape checks accept and refuse
import stat
real_fsync, synced = os.fsync, []
def spy_fsync(fd):
    synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
    real_fsync(fd)
os.fsync = spy_fsync
try:
    write_atomically(hdir / "synced.bin", lambda f: f.write(b"abc"))
finally:
    os.fsync = real_fsync
assert synced == ([False, True] if hasattr(os, "O_DIRECTORY") else [False]), "the file, then its folder, synced"
assert _header_problem({**signed, "version": 0}, "demo") is None, "older versions are read"
for wrong in ({**signed, "version": "1"}, {**signed, "version": None}, {}, [signed], "text", None):
    assert isinstance(_header_problem(wrong, "demo"), str), f"{wrong!r} is not a 'demo' checkpoint"
assert _read_header(None) is None and _read_header(np.arange(3)) is None and _read_header(np.array(["{}"])) is None
assert _read_header(np.array("{not json")) is None and _read_header(np.array("[1, 2]")) == [1, 2]
(hdir / "cut.npz").write_bytes((hdir / "c.ckpt").read_bytes()[:300])
np.savez(hdir / "plain.npz", x=np.ones(2))                     # no TinyTorch metadata
for bad in ("cut.npz", "plain.npz"):
    try:
        load_npz_checkpoint(hdir / bad, "h")
        raise AssertionError(f"{bad} must be refused")
    except CheckpointError:
        pass
assert shape_problems({}, {}) == [] and shape_problems({"a": (0, 3)}, {"a": (0, 3)}) == []
assert len(shape_problems({"a": (2,), "b": (3,)}, {})) == 2 and len(shape_problems({}, {"a": (1,)})) == 1
assert len(shape_problems({"a": (2, 3)}, {"a": (2, 3, 1)})) == 1 and len(shape_problems({"a": ()}, {"a": (1,)})) == 1

# %% grade_id: test-plot
# a regression run with a custom metric: one panel per name in order, titled, "epoch" on the x axis, each curve the history's numbers; the PNG is written
pnet = Dense(2, 1, rng=np.random.default_rng(3))
def max_err(out, tgt):
    return float(np.abs(out - tgt).max()) * len(tgt), len(tgt)
preg = Trainer(pnet, SGD(pnet.parameters(), lr=0.1), MSELoss(), metrics={"err": max_err}, progress=False)
pxs = np.random.default_rng(4).standard_normal((32, 2)).astype(np.float32)
pbatches = [(pxs[i:i + 8], pxs[i:i + 8].sum(axis=1, keepdims=True)) for i in range(0, 32, 8)]
preg.fit(pbatches, val_data=pbatches[:2], epochs=3)
pfig = preg.plot_history(tmp_dir / "hidden-plot" / "curves.png")
assert [ax.get_title() for ax in pfig.axes] == ["loss", "err"], [ax.get_title() for ax in pfig.axes]
for ax, name in zip(pfig.axes, ["loss", "err"]):
    assert ax.get_xlabel() == "epoch" and [line.get_label() for line in ax.get_lines()] == ["train", "val"]
    for line, split in zip(ax.get_lines(), ["train", "val"]):
        assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == preg.history[f"{split}_{name}"], (name, split)
assert (tmp_dir / "hidden-plot" / "curves.png").read_bytes()[:4] == b"\x89PNG"
no_val = straight.plot_history()                     # trained without validation data: no val curves
assert [[line.get_label() for line in ax.get_lines()] for ax in no_val.axes] == [["train"], ["train"]]
