# Hidden tests of module 15_mlops. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-seeding
# Hidden: every random source is seeded with the given seed itself; canonical JSON details: booleans stay booleans,
# large whole floats stay floats, -0.0, numpy arrays and booleans, Paths, non-ASCII text; nested bad values refused.
seed_everything(12345)
draws_h = (random.random(), float(np.random.rand()), get_rng().random())
assert draws_h[0] == random.Random(12345).random()
assert draws_h[1] == float(np.random.RandomState(12345).rand())
assert draws_h[2] == manual_seed(12345).random()
assert seed_everything(np.int64(9)) is get_rng()
for bad_h in (-1, 2**32, 1.5, True, "3"):
    try:
        seed_everything(bad_h)
        raise AssertionError(f"seed {bad_h!r} must be refused")
    except ValueError:
        pass
assert canonical_json({"b": True, "a": np.bool_(False), "n": None}) == '{"a":false,"b":true,"n":null}'
assert canonical_json({"big": 1e20, "neg": -2.0, "z": -0.0, "half": 2.5, "i": np.int32(-7)}) == \
    '{"big":1e+20,"half":2.5,"i":-7,"neg":-2,"z":0}'
assert canonical_json({"arr": np.arange(3), "m": np.array([[1.5, 2.0]]), "p": Path("a/b")}) == \
    '{"arr":[0,1,2],"m":[[1.5,2]],"p":"a/b"}'
assert canonical_json([1, (2, 3.0), {"k": []}]) == '[1,[2,3],{"k":[]}]'
assert canonical_json({"name": "café"}) == '{"name":"caf\\u00e9"}'
assert config_hash({"a": True}) != config_hash({"a": 1}) and config_hash({"a": 1.0}) == config_hash({"a": np.int8(1)})
for bad_h in [{"a": {"b": [1, float("inf")]}}, {"a": [{"b": {2: 3}}]}, {"a": object()}, {"a": b"bytes"}]:
    try:
        config_hash(bad_h)
        raise AssertionError(f"{bad_h} should be refused")
    except ValueError:
        pass

# %% grade_id: test-runs
# Hidden: the stored config is canonical (tuples, numpy numbers, whole floats); explicit and default steps; metrics
# from Tensors and numpy; reserved, non-string and empty metrics refused; names stay unique within one second.
root_h = workdir / "hidden-runs"
cfg_h = {"layers": (8, 4), "lr": np.float32(0.5), "epochs": 3.0, "opt": {"b": [1, 2]}}
run_h = Run.create("hid", cfg_h, root=root_h, seed=11)
meta_h = json.loads((run_h.path / "config.json").read_text())
assert meta_h["config"] == {"layers": [8, 4], "lr": 0.5, "epochs": 3, "opt": {"b": [1, 2]}}
assert type(meta_h["config"]["epochs"]) is int and meta_h["name"] == run_h.name and meta_h["seed"] == 11
assert meta_h["config_hash"] == config_hash(cfg_h) and run_h.config == meta_h["config"]
assert run_h.log({"loss": Tensor(np.array(2.5)), "ok": True, "tag": "x", "n": np.int64(4)}, step=10)["step"] == 10
assert run_h.log({"loss": 2.0})["step"] == 11
for bad_h in [{}, {"step": 1.0}, {"time": 3}, {3: 1.0}]:
    try:
        run_h.log(bad_h)
        raise AssertionError(f"{bad_h} must be refused")
    except ValueError:
        pass
recs_h = Run.open(run_h.path).metrics()
assert [r["step"] for r in recs_h] == [10, 11], recs_h
assert {k: v for k, v in recs_h[0].items() if k != "time"} == {"step": 10, "loss": 2.5, "ok": True, "tag": "x", "n": 4}
assert isinstance(recs_h[0]["time"], (int, float)) and recs_h[0]["time"] >= 0
names_h = [Run.create("same", {}, root=root_h).name for _ in range(3)]
assert len(set(names_h)) == 3 and all(re.fullmatch(r"same-\d{8}-\d{6}(-\d+)?", n) for n in names_h), names_h

# %% grade_id: test-fit-with-run
# Hidden: a trainer that already trained two epochs (only the new epoch is logged, under its own number),
# checkpoint=False, and an epoch that fails: the run ends as failed and the error reaches the caller.
tr_h, train_h, val_h = make_trainer(seed=3)
tr_h.fit(train_h, val_h, epochs=2)
run_h = Run.create("hid-fit", {"seed": 3}, root=workdir / "hidden-runs", seed=3)
hist_h = fit_with_run(tr_h, run_h, train_h, val_h, epochs=3, checkpoint=False, plot=False)
recs_h = run_h.metrics()
assert [r["step"] for r in recs_h] == [3] and recs_h[0]["epoch"] == 3 and len(hist_h["epoch"]) == 3, recs_h
assert recs_h[0]["train_loss"] == hist_h["train_loss"][-1] and tr_h.epoch == 3
assert not (run_h.checkpoints / "last.npz").exists() and run_h.status == "completed"


class BrokenData:
    def __len__(self):
        return 2

    def __iter__(self):
        raise RuntimeError("the disk went away")


tr2_h, _, _ = make_trainer(seed=4)
run2_h = Run.create("hid-fail", {}, root=workdir / "hidden-runs", seed=4)
try:
    fit_with_run(tr2_h, run2_h, BrokenData(), None, epochs=2, plot=False)
    raise AssertionError("the training error must reach the caller")
except RuntimeError:
    pass
assert run2_h.status.startswith("failed") and run2_h.metrics() == [], run2_h.status

# %% grade_id: test-compare
# Hidden: nested config keys (flattened), keys and metrics present in only one run, an unfinished run, one run alone.
root_h = workdir / "hidden-compare"
ra_h = Run.create("cmp-a", {"opt": {"lr": 0.1, "name": "sgd"}, "hidden": 8, "only_a": 1}, root=root_h, seed=1)
rb_h = Run.create("cmp-b", {"opt": {"lr": 0.2, "name": "sgd"}, "hidden": 8, "only_b": "x"}, root=root_h, seed=2)
ra_h.log({"loss": 0.5, "acc": 0.75})
rb_h.log({"loss": 0.25, "extra": 3})
ra_h.finish()
t_h = compare_runs([ra_h, rb_h])
names_h = [row[0] for row in t_h]
rows_h = {row[0]: row[1:] for row in t_h}
assert names_h[:4] == ["", "config_hash", "seed", "status"], names_h
assert set(names_h[4:7]) == {"only_a", "only_b", "opt.lr"} and set(names_h[7:]) == {"step", "loss", "acc", "extra"}, names_h
assert rows_h["only_a"] == ["1", "-"] and rows_h["only_b"] == ["-", "x"] and rows_h["opt.lr"] == ["0.1", "0.2"]
assert rows_h["status"] == ["completed", "unfinished"] and rows_h["seed"] == ["1", "2"]
assert rows_h["acc"] == ["0.75", "-"] and rows_h["extra"] == ["-", "3"] and rows_h["loss"] == ["0.5", "0.25"]
alone_h = compare_runs([ra_h])
assert [row[0] for row in alone_h][:4] == ["", "config_hash", "seed", "status"] and len(alone_h) == 7, alone_h
try:
    compare_runs([])
    raise AssertionError("nothing to compare")
except ValueError:
    pass

# %% grade_id: test-layer-spec
# Hidden: every layer type round-trips with non-default settings (outputs equal once the weights are loaded,
# running statistics included); a subclass of a known layer, extra keys, bad arguments and bad entries are refused.
rng_h = np.random.default_rng(1505)
cnn_h = Sequential(Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0), bias=False), BatchNorm2d(3, eps=1e-3, momentum=0.2),
                   ReLU(), MaxPool2d(2), Flatten(), Dense(18, 5), LayerNorm(5), Tanh(), Dropout(0.3), Dense(5, 2),
                   LogSoftmax())
mlp_h = Sequential(Dense(4, 6, bias=False), BatchNorm1d(6, affine=False), GELU(), Dense(6, 3), Sigmoid(), Softmax())
pool_h = Sequential(AvgPool2d((2, 3), stride=1), Flatten(start_dim=2))
for model_h, shape_h in ((cnn_h, (4, 2, 6, 8)), (mlp_h, (5, 4)), (pool_h, (2, 3, 4, 5))):
    x_h = Tensor(rng_h.standard_normal(shape_h).astype(np.float32))
    model_h.train()
    model_h(x_h)                                                # running statistics move away from their start
    spec_h = layer_spec(model_h)
    assert json.loads(json.dumps(spec_h)) == spec_h
    again_h = build_sequential(spec_h)
    assert layer_spec(again_h) == spec_h and [type(l) for l in again_h.layers] == [type(l) for l in model_h.layers]
    again_h.load_state_dict(model_h.state_dict())
    assert np.allclose(again_h.eval()(x_h).data, model_h.eval()(x_h).data, atol=1e-6)


DoubledDense = type("Dense", (Dense,), {"forward": lambda self, x: Dense.forward(self, x) * 2.0})   # its own 'Dense'
try:
    layer_spec(Sequential(Dense(2, 2), DoubledDense(2, 2)))
    raise AssertionError("a class that is only called Dense is not module 03's Dense")
except ValueError:
    pass
for bad_h in [[{"type": "Dense", "args": {"in_features": 2, "out_features": 2}, "code": "x"}],
              [{"type": "Dropout", "args": {"p": 1.5}}], [{"type": "Dense", "args": [2, 2]}],
              [{"type": "ReLU"}], ["ReLU"], [], {"type": "ReLU", "args": {}}]:
    try:
        build_sequential(bad_h)
        raise AssertionError(f"{bad_h} should be refused")
    except PackageError:
        pass

# %% grade_id: test-package
# Hidden: more tampering (the statistics file, a swapped file, format and schema changes with the manifest hash
# rewritten, a removed manifest hash, a file listed outside the folder); a re-indented manifest still loads;
# the recorded sizes and hashes; overwrite=True replaces a package and leaves nothing behind; a failing save neither.
bad_h = copy_package("hid-stats")
data_h = bytearray((bad_h / "stats.npz").read_bytes())
data_h[-10] ^= 0xFF
(bad_h / "stats.npz").write_bytes(bytes(data_h))
refused(bad_h)
bad_h = copy_package("hid-swapped")
(bad_h / "weights.npz").write_bytes((bad_h / "stats.npz").read_bytes())
refused(bad_h)


def rewrite_h(tag, change):
    dst_ = copy_package(tag)
    m_ = json.loads((dst_ / "manifest.json").read_text())
    change(m_)
    if "manifest_sha256" in m_:
        m_["manifest_sha256"] = _manifest_digest(m_)
    (dst_ / "manifest.json").write_text(json.dumps(m_))
    return dst_


refused(rewrite_h("hid-format", lambda m_: m_.update(format="another-package")))
refused(rewrite_h("hid-schema-0", lambda m_: m_.update(schema_version=0)))
refused(rewrite_h("hid-schema-str", lambda m_: m_.update(schema_version="1")))
refused(rewrite_h("hid-no-digest", lambda m_: m_.pop("manifest_sha256")))
refused(rewrite_h("hid-unlisted", lambda m_: m_["files"].pop("weights.npz")))   # the weights, not in the manifest
ok_h = copy_package("hid-ok")                              # an intact copy, which the next package points into
bad_h = rewrite_h("hid-outside", lambda m_: m_["files"].update({"sub/../../hid-ok/weights.npz": m_["files"]["weights.npz"]}))
(bad_h / "sub").mkdir()
refused(bad_h)
m_h = json.loads((ok_h / "manifest.json").read_text())
(ok_h / "manifest.json").write_text(json.dumps(m_h, indent=7, sort_keys=False))
assert load_package(ok_h).version == "1.0.0", "re-indenting the manifest changes nothing"
for f_h, entry_h in m_h["files"].items():
    assert entry_h["sha256"] == file_sha256(ok_h / f_h) and entry_h["bytes"] == (ok_h / f_h).stat().st_size, f_h
pack_root_h = workdir / "hidden-packages"
alt_h = Sequential(Dense(4, 6), Tanh(), Dense(6, 3))
save_package(pack_root_h / "hid", trainer.model, name="hid", version="1", input_spec=array_spec((4,)), train_inputs=train_x)
save_package(pack_root_h / "hid", alt_h, name="hid", version="2", input_spec=array_spec((4,), classes=["x", "y", "z"]),
             overwrite=True)
pkg_h = load_package(pack_root_h / "hid")
assert pkg_h.version == "2" and pkg_h.stats is None and set(pkg_h.manifest["files"]) == {"weights.npz"}
assert np.allclose(np.asarray(pkg_h.predict(probe)["probabilities"]), _softmax(alt_h.eval()(Tensor(probe)).data), atol=1e-6)
assert sorted(p.name for p in pack_root_h.iterdir()) == ["hid"], "no temporary or old folders left"


class NotAModel:
    pass


try:
    save_package(pack_root_h / "broken", NotAModel(), name="broken", version="1", input_spec=array_spec((4,)))
    raise AssertionError("a model without weights cannot be packaged")
except AssertionError:
    raise
except Exception:
    pass
assert sorted(p.name for p in pack_root_h.iterdir()) == ["hid"], "a failed save leaves nothing behind"

# %% grade_id: test-drift
# Hidden: values equal to an edge fall in the lower bin; statistics of 3-D inputs with many ties against numpy;
# PSI against its formula (empty bins, symmetry); text frequencies ignore foreign characters; the z-score and PSI
# of a window made of two batches against an inline computation.
x_h = np.array([[0., 5.], [1., 5.], [1., 6.], [2., 7.], [3., 9.]])
assert bin_counts(x_h, np.array([[1., 2.], [5., 7.]])).tolist() == [[3, 1, 1], [2, 2, 1]]
rng_h = np.random.default_rng(1507)
xr_h = rng_h.integers(0, 6, size=(300, 2, 3)).astype(np.float64)
st_h = input_statistics(xr_h, bins=4)
flat_h = xr_h.reshape(300, -1)
assert np.allclose(st_h["mean"], flat_h.mean(axis=0)) and np.allclose(st_h["std"], flat_h.std(axis=0))
assert st_h["edges"].shape == (6, 3) and np.allclose(st_h["edges"], np.quantile(flat_h, [0.25, 0.5, 0.75], axis=0).T)
ref_counts_h = np.array([np.bincount(np.searchsorted(st_h["edges"][f], flat_h[:, f], side="left"), minlength=4)
                         for f in range(6)])
assert np.array_equal(bin_counts(flat_h, st_h["edges"]), ref_counts_h)
assert np.allclose(st_h["proportions"], ref_counts_h / 300) and int(st_h["count"]) == 300
e_h = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
a_h = np.array([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5]])
ec_h, ac_h = np.clip(e_h, 1e-4, None), np.clip(a_h, 1e-4, None)
got_h = psi(e_h, a_h)
assert got_h.shape == (2,) and np.isfinite(got_h).all() and np.allclose(got_h, ((ac_h - ec_h) * np.log(ac_h / ec_h)).sum(-1))
assert got_h[1] == 0 and np.isclose(psi(a_h, e_h)[0], got_h[0])
assert np.isclose(psi(np.array([0.5, 0.5]), np.array([0.0, 1.0]), eps=0.01),
                  (0.01 - 0.5) * np.log(0.01 / 0.5) + 0.5 * np.log(2))
ts_h = text_statistics("aab?c!!", "abc")
assert np.allclose(ts_h["char_freq"], [0.5, 0.25, 0.25]) and int(ts_h["count"]) == 4
stats_z_h = input_statistics(rng_h.standard_normal((1000, 3)))
mon_h = DriftMonitor(stats_z_h, min_samples=10)
b1_h, b2_h = rng_h.standard_normal((30, 3)) + [0, 0.4, 0], rng_h.standard_normal((20, 3)) - [0.3, 0, 0]
mon_h.observe(b1_h)
mon_h.observe(b2_h)
rep_h = mon_h.report()
both_h = np.concatenate([b1_h, b2_h])
z_h = np.abs(both_h.mean(axis=0) - stats_z_h["mean"]) / (stats_z_h["std"] / math.sqrt(50))
psi_h = psi(stats_z_h["proportions"], bin_counts(both_h, stats_z_h["edges"]) / 50)
assert rep_h["samples"] == 50 and math.isclose(rep_h["z_max"], z_h.max(), rel_tol=1e-9), (rep_h, z_h)
assert math.isclose(rep_h["psi_max"], psi_h.max(), rel_tol=1e-9) and math.isclose(rep_h["psi_mean"], psi_h.mean(), rel_tol=1e-9)

# %% grade_id: test-engine
# Hidden: other head counts, float32 weights, a one-token prompt, a slot reused after another prefill, three slots at
# three lengths in one step, sampling frequencies at a high temperature, per-request seeded sampling in a batch.
for heads_h in (1, 4):
    w_h = gpt_weights(V=9, C=8, L=3, T=10, F=12, rng=np.random.default_rng(10 + heads_h))
    w_h["positions.weight"] = np.sin(np.arange(80).reshape(10, 8) / 7.0)              # another position table
    ids_h = np.random.default_rng(heads_h).integers(0, 9, size=10)
    ref_h = reference_logits(w_h, ids_h, num_heads=heads_h)
    eng_h = GPTEngine(w_h, num_heads=heads_h, slots=4)
    assert np.allclose(eng_h.prefill(3, ids_h, all_logits=True), ref_h, atol=1e-6)
    assert np.allclose(eng_h.prefill(3, ids_h[:1]), ref_h[0], atol=1e-6)             # slot 3 restarts
    for s_h, k_h in ((0, 6), (1, 2), (2, 9)):
        eng_h.prefill(s_h, ids_h[:k_h])
    got_h = eng_h.step([2, 3, 0, 1], [ids_h[9], ids_h[1], ids_h[6], ids_h[2]])
    assert np.allclose(got_h, ref_h[[9, 1, 6, 2]], atol=1e-6), heads_h
    assert eng_h.lengths.tolist() == [7, 3, 10, 2]
    w32_h = {k_h: v_h.astype(np.float32) for k_h, v_h in w_h.items()}
    eng32_h = GPTEngine(w32_h, num_heads=heads_h, slots=1)
    out32_h = eng32_h.prefill(0, ids_h, all_logits=True)
    assert out32_h.dtype == np.float32 and np.allclose(out32_h, ref_h, atol=2e-4)
z_h = np.array([1.0, 0.0, -1.0, 0.5])
draws_h = [sample_token(z_h, 3.0, None, np.random.default_rng(s_h)) for s_h in range(3000)]
p_h = np.exp(z_h / 3.0) / np.exp(z_h / 3.0).sum()
assert np.allclose(np.bincount(draws_h, minlength=4) / 3000, p_h, atol=0.03)
assert sample_token(z_h, 0.0, None, np.random.default_rng(0)) == 0
assert {sample_token(z_h, 50.0, 1, np.random.default_rng(s_h)) for s_h in range(30)} == {0}
eng_h = GPTEngine(gpt_weights(V=11, C=8, L=2, T=12, F=20, rng=np.random.default_rng(0)), num_heads=2, slots=2)
made_h = lambda: [TextRequest([1, 2, 3][:k_h], 20, 0.9, None, 100 + k_h) for k_h in (1, 2, 3)]   # noqa: E731
batch_h = made_h()
BatchDecoder(eng_h).run(batch_h)
for r_h, again_h in zip(batch_h, made_h()):
    BatchDecoder(eng_h).run([again_h])
    assert r_h.tokens == again_h.tokens and len(r_h.generated) == 20
assert made_h()[0].generated == []

# %% grade_id: test-server
# Hidden: ModelServer.handle without a network: Content-Type in capitals and with parameters, missing or bad
# Content-Length, chunked and short bodies, non-UTF-8 bytes, a body of exactly the limit, JSON that is not an object,
# wrong methods (with Allow), a query string, 503 while the model is busy, 504 past the time limit, and the drift
# monitor fed by accepted requests only.
class BodyH:
    def __init__(self, data):
        self.data = data

    def read(self, n=-1):
        out_ = self.data if n is None or n < 0 else self.data[:n]
        self.data = self.data[len(out_):]
        return out_


def handle_h(srv_, method_, path_, body_=b"", **headers_):
    hdrs_ = {"Content-Type": "application/json", "Content-Length": str(len(body_))}
    hdrs_.update({k.replace("_", "-"): v for k, v in headers_.items()})
    return srv_.handle(method_, path_, {k: v for k, v in hdrs_.items() if v is not None}, BodyH(body_))


srv_h = server                                         # shut down: handle() needs no socket
srv_h.monitor.reset()
body_h = json.dumps({"inputs": probe[:2].tolist()}).encode()
code_h, answer_h, _ = handle_h(srv_h, "POST", "/predict", body_h, Content_Type="Application/JSON; charset=utf-8")
assert code_h == 200 and answer_h["predictions"] == pkg.predict(probe[:2])["predictions"], (code_h, answer_h)
assert handle_h(srv_h, "POST", "/predict?verbose=1", body_h)[0] == 200
for headers_h, status_h in [({"Content_Length": None}, 411), ({"Content_Length": "12abc"}, 400), ({"Content_Length": "-5"}, 400),
                            ({"Transfer_Encoding": "chunked"}, 411), ({"Content_Type": "text/json"}, 415),
                            ({"Content_Type": None}, 415), ({"Content_Length": str(len(body_h) + 10)}, 400)]:
    assert handle_h(srv_h, "POST", "/predict", body_h, **headers_h)[0] == status_h, (headers_h, status_h)
assert handle_h(srv_h, "POST", "/predict", b'{"inputs": "\xff"}')[0] == 400
assert handle_h(srv_h, "POST", "/predict", b"[1, 2]")[0] == 400
assert handle_h(srv_h, "POST", "/predict", b'{"inputs": [[1, 2, 3]]}')[0] == 422
exact_h = b'{"inputs": [[1, 2, 3, 4]]}' + b" " * (20_000 - 26)          # exactly max_body_bytes
assert len(exact_h) == 20_000 and handle_h(srv_h, "POST", "/predict", exact_h)[0] == 200
assert handle_h(srv_h, "POST", "/predict", exact_h + b" ")[0] == 413
code_h, _, headers_h = handle_h(srv_h, "HEAD", "/health")
assert code_h == 405 and headers_h.get("Allow") == "GET"
code_h, _, headers_h = handle_h(srv_h, "GET", "/predict")
assert code_h == 405 and headers_h.get("Allow") == "POST"
busy_pool_h = ThreadPoolExecutor(1)
srv_h.time_limit = 0.05
srv_h.model_lock.acquire()                             # another request holds the model
try:
    busy_h = busy_pool_h.submit(handle_h, srv_h, "POST", "/predict", body_h).result(timeout=10)[0]
finally:
    srv_h.model_lock.release()
    busy_pool_h.shutdown(wait=True)
    srv_h.time_limit = 10.0
assert busy_h == 503, busy_h
assert srv_h.monitor.report()["samples"] == 2 + 2 + 1, srv_h.monitor.report()
tbody_h = json.dumps({"prompt": "the ", "max_tokens": 50}).encode()
text_server.time_limit = 1e-6
try:
    slow_h = handle_h(text_server, "POST", "/complete", tbody_h)[0]
finally:
    text_server.time_limit = 10.0
code_h, answer_h, _ = handle_h(text_server, "POST", "/complete", tbody_h)
assert slow_h == 504 and code_h == 200 and len(answer_h["completion"]) == 50, (slow_h, code_h)
assert handle_h(text_server, "POST", "/complete", b"[" * 50_000 + b"]" * 50_000)[0] == 400
gw_h = gpt_weights(V=6, C=8, L=1, T=8, F=8, rng=np.random.default_rng(5))   # a text kind with a batched engine
GPT_H = ModelKind(name="gpt-h", files=("weights.npz",),
                  save=lambda m, folder: save_npz_checkpoint(folder / "weights.npz", m, {}, kind="gpt-h"),
                  describe=lambda m: {}, load=lambda folder, _: load_npz_checkpoint(folder / "weights.npz", "gpt-h")[0],
                  vocabulary=lambda m: "abcdef",
                  engine=lambda m, slots=1: GPTEngine(m, num_heads=2, slots=slots, vocabulary="abcdef"))
gpt_dir_h = save_package(workdir / "packages" / "gpt-h", gw_h, GPT_H, name="gpt-h", version="1",
                         input_spec=text_spec("abcdef"), overwrite=True)
gpt_srv_h = ModelServer(load_package(gpt_dir_h, kinds=(GPT_H,)), max_running=2)
try:
    assert gpt_srv_h.batcher is not None
    bodies_h = [{"prompt": "abc"[:1 + i % 3], "max_tokens": 5 + 3 * i, "temperature": 0.8, "seed": i} for i in range(6)]
    with ThreadPoolExecutor(6) as pool_h:
        answers_h = list(pool_h.map(lambda b_h: handle_h(gpt_srv_h, "POST", "/complete", json.dumps(b_h).encode()),
                                    bodies_h))
    for (code_h, answer_h, _), b_h in zip(answers_h, bodies_h):
        single_h = engine_complete(GPTEngine(gw_h, 2, vocabulary="abcdef"), b_h["prompt"], b_h["max_tokens"], 0.8,
                                   None, b_h["seed"])
        assert code_h == 200 and answer_h["completion"] == single_h, (code_h, answer_h, single_h)
    gpt_srv_h.time_limit = 1e-4
    assert handle_h(gpt_srv_h, "POST", "/complete", json.dumps({"prompt": "a", "max_tokens": 500}).encode())[0] == 504
finally:
    gpt_srv_h.shutdown()
