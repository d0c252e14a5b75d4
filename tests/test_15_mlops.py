"""Tests for module 15 (MLOps): seeding and config hashes, run directories, model packages
(round trips, tampering, pickles), drift monitoring, the HTTP model server (real requests on
127.0.0.1), and the `tito runs` / `tito serve` commands.

Module 15 adds no differentiable op. All data is generated here; TinyGPT models are tiny
and untrained (module 16 is only used for its "tinygpt" package kind, as `tito serve` does).
"""
from __future__ import annotations

import http.client
import json
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.activations import ReLU
from tinytorch.core.dataloader import DataLoader, TensorDataset
from tinytorch.core.layers import Dense, Dropout, Flatten, Module, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.normalization import BatchNorm2d
from tinytorch.core.optimizers import SGD, Adam
from tinytorch.core.spatial import Conv2d, MaxPool2d
from tinytorch.core.tensor import Tensor, get_rng
from tinytorch.core.training import Trainer, TrainingDivergedError
from tinytorch.mlops.mlops import (
    SEQUENTIAL, DriftMonitor, ModelServer, PackageError, RequestError, Run, array_spec, build_sequential,
    canonical_json, compare_runs, config_hash, file_sha256, find_run, fit_with_run, format_table,
    file_problems, input_statistics, layer_spec, list_runs, load_package, psi, save_package, seed_everything, text_spec,
    text_statistics, validate_completion, validate_inputs)
from tinytorch.tinygpt import CharTokenizer, TinyGPT
from tito.cli import main as tito_main
from tito.gpt_package import SERVE_KINDS, TINYGPT_KIND, package_tinygpt

REPO = Path(__file__).resolve().parent.parent
VOCAB = "abcdefgh .\n"
KINDS = SERVE_KINDS                                 # what `tito serve` loads


# ---- helpers ----------------------------------------------------------------------------------
def blobs(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[2, 0, 0, 1], [-2, 1, 0, 0], [0, -2, 2, 0]], dtype=np.float32)
    y = rng.integers(0, 3, size=n)
    x = centres[y] + rng.standard_normal((n, 4)).astype(np.float32) + np.float32(shift)
    return x.astype(np.float32), y.astype(np.int64)


def make_trainer(seed, lr=0.05, dropout=0.2):
    seed_everything(seed)
    x, y = blobs(300, seed)
    model = Sequential(Dense(4, 16), ReLU(), Dropout(dropout), Dense(16, 3))
    trainer = Trainer(model, Adam(model.parameters(), lr=lr), CrossEntropyLoss(), progress=False)
    train = DataLoader(TensorDataset(x[:240], y[:240]), batch_size=40, shuffle=True)
    val = DataLoader(TensorDataset(x[240:], y[240:]), batch_size=60)
    return trainer, train, val


def tiny_gpt(seed=0):
    return TinyGPT(tokenizer=CharTokenizer(VOCAB), d_model=16, num_heads=2, num_layers=1, max_length=16,
                   rng=np.random.default_rng(seed))


def call(url, path, body=None, method=None, raw=None, ctype="application/json", timeout=20):
    """(status, parsed JSON body, headers) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": ctype} if data is not None else {}
    request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def raw_request(url, text: bytes, wait=5.0) -> bytes:
    """Send raw bytes on a socket and read until the server closes it."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(text)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained through fit_with_run, and its package."""
    root = tmp_path_factory.mktemp("mlops")
    trainer, train, val = make_trainer(0)
    run = Run.create("blobs", {"lr": 0.05, "hidden": 16, "dropout": 0.2}, root=root / "runs", seed=0)
    fit_with_run(trainer, run, train, val, epochs=3, plot=True)
    train_x = blobs(1000, 5)[0]
    pkg_dir = save_package(root / "pkgs" / "blobs", trainer.model, name="blobs", version="1.2.0",
                           input_spec=array_spec((4,), classes=["a", "b", "c"]), config=run.config,
                           metrics=run.final_metrics(), train_inputs=train_x)
    return {"root": root, "trainer": trainer, "run": run, "package": pkg_dir, "train_x": train_x}


@pytest.fixture(scope="module")
def gpt_package(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt")
    model = tiny_gpt()
    text = "a bad cafe. a head. " * 30
    path = package_tinygpt(model, root / "gpt", name="tiny", version="0.1", text=text, metrics={"val_loss": 2.3})
    return {"model": model, "package": path}


@pytest.fixture(scope="module")
def server(trained):
    srv = ModelServer(load_package(trained["package"]), max_body_bytes=50_000, max_batch=64,
                      socket_timeout=0.5).start()
    yield srv
    srv.shutdown()


@pytest.fixture(scope="module")
def gpt_server(gpt_package):
    srv = ModelServer(load_package(gpt_package["package"], kinds=KINDS), max_new_tokens=64, socket_timeout=2.0).start()
    yield srv
    srv.shutdown()


# ---- 1. seeding and config hashes ---------------------------------------------------------------
def test_seed_everything_makes_two_training_runs_identical():
    runs = []
    for _ in range(2):
        trainer, train, val = make_trainer(3)                  # dropout + shuffling + init: all seeded
        trainer.fit(train, val, epochs=2)
        runs.append((trainer.history, [p.data.copy() for p in trainer.model.parameters()]))
    (h1, w1), (h2, w2) = runs
    assert h1["train_loss"] == h2["train_loss"] and h1["val_accuracy"] == h2["val_accuracy"]
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    trainer, train, val = make_trainer(4)
    trainer.fit(train, val, epochs=2)
    assert trainer.history["train_loss"] != h1["train_loss"]


def test_seed_everything_seeds_every_source():
    import random
    seed_everything(11)
    a = (random.random(), np.random.rand(), get_rng().random())
    seed_everything(11)
    assert (random.random(), np.random.rand(), get_rng().random()) == a
    for bad in (-1, 2**32, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed_everything: seed"):
            seed_everything(bad)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=5),
                       st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                                 st.text(max_size=5), st.booleans(), st.none(),
                                 st.lists(st.integers(0, 9), max_size=3)), max_size=6),
       st.randoms(use_true_random=False))
def test_config_hash_ignores_key_order_and_changes_with_values(config, rnd):
    items = list(config.items())
    rnd.shuffle(items)
    assert config_hash(dict(items)) == config_hash(config)
    assert json.loads(canonical_json(config)) == json.loads(canonical_json(dict(items)))
    assert config_hash({**config, "__extra__": 1}) != config_hash(config)


def test_config_hash_is_stable_and_canonical():
    # a fixed value: the hash of this config must never change between versions
    assert canonical_json({"b": [1, 2.5], "a": {"y": None, "x": True}}) == '{"a":{"x":true,"y":null},"b":[1,2.5]}'
    assert config_hash({"lr": 1.0}) == config_hash({"lr": 1}) == config_hash({"lr": np.float64(1.0)})
    assert config_hash({"shape": (2, 3)}) == config_hash({"shape": [2, 3]})
    assert config_hash({"lr": 0.1}) != config_hash({"lr": 0.10000001})
    assert config_hash({"a": True}) != config_hash({"a": 1})
    with pytest.raises(ValueError, match=r"<config>\.opt\.eps.*inf"):
        config_hash({"opt": {"eps": float("inf")}})
    with pytest.raises(ValueError, match="object"):
        config_hash({"f": object()})


# ---- 2. run directories -------------------------------------------------------------------------
def test_run_directory_contents_and_metrics_lines(tmp_path):
    run = Run.create("exp", {"lr": 0.1, "layers": (8, 4)}, root=tmp_path, seed=5)
    assert run.path.parent == tmp_path and run.name.startswith("exp-")
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoints", "config.json", "metrics.jsonl", "plots"]
    meta = json.loads((run.path / "config.json").read_text())
    assert meta["config"] == {"layers": [8, 4], "lr": 0.1} and meta["seed"] == 5
    assert meta["config_hash"] == config_hash({"lr": 0.1, "layers": [8, 4]})
    assert meta["git_commit"] is None or len(meta["git_commit"]) == 40
    assert set(meta["environment"]) >= {"python", "numpy", "tinytorch"}
    run.log({"loss": 0.5, "acc": np.float64(0.75), "note": "warm-up"})
    run.log({"loss": np.float32(0.25), "val": float("nan")}, step=10)
    run.log({"loss": Tensor(0.125)})
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [1, 10, 11]
    assert records[0]["note"] == "warm-up" and records[1]["val"] is None and records[2]["loss"] == 0.125
    assert all(r["time"] >= 0 for r in records)
    assert Run.open(run.path).metrics() == records
    with pytest.raises(ValueError, match="reserved"):
        run.log({"step": 3})
    with pytest.raises(ValueError, match="metric 'w'"):
        run.log({"w": [1, 2]})
    assert run.status == "unfinished"
    summary = run.finish()
    assert summary["final_metrics"] == {"step": 11, "loss": 0.125} and run.status == "completed"


def test_metrics_reader_skips_a_torn_last_line_but_not_a_damaged_middle_line(tmp_path):
    run = Run.create("torn", {}, root=tmp_path)
    run.log({"loss": 1.0})
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')
    assert [r["loss"] for r in run.metrics()] == [1.0]
    (run.path / "metrics.jsonl").write_text('{"step": 1}\n{broken\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2"):
        run.metrics()


def test_runs_created_at_once_get_distinct_folders(tmp_path):
    with ThreadPoolExecutor(6) as pool:
        runs = list(pool.map(lambda i: Run.create("same", {"i": i}, root=tmp_path), range(6)))
    assert len({r.path for r in runs}) == 6
    assert sorted(r.config["i"] for r in list_runs(tmp_path)) == list(range(6))


def test_bad_run_names_and_folders_are_refused(tmp_path):
    for name in ("../escape", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError, match="name"):
            Run.create(name, root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        Run.open(tmp_path)


def test_fit_with_run_logs_every_epoch_checkpoints_and_plots(trained):
    run, trainer = trained["run"], trained["trainer"]
    records = run.metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["train_loss"] for r in records] == trainer.history["train_loss"]
    assert (run.checkpoints / "last.npz").is_file() and (run.plots / "history.png").stat().st_size > 1000
    assert run.status == "completed" and run.summary["epochs"] == 3
    # the checkpoint is module 07's exact-resume checkpoint
    again, _, _ = make_trainer(0)
    again.load_checkpoint(run.checkpoints / "last.npz")
    assert again.epoch == 3 and again.history["train_loss"] == trainer.history["train_loss"]
    # logging epoch by epoch trains exactly as one fit call
    plain, train, val = make_trainer(0)
    plain.fit(train, val, epochs=3)
    assert plain.history["train_loss"] == trainer.history["train_loss"]


def test_fit_with_run_marks_a_diverged_run_failed(tmp_path):
    seed_everything(0)
    x, y = blobs(40, 0)
    x[5, 2] = np.nan                                        # one bad input: the loss is NaN
    model = Sequential(Dense(4, 3))
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), CrossEntropyLoss(), progress=False)
    run = Run.create("boom", {"lr": 0.1}, root=tmp_path)
    with pytest.raises(TrainingDivergedError):
        fit_with_run(trainer, run, [(x, y)] * 3, epochs=5, plot=False)
    assert run.status.startswith("failed: TrainingDivergedError")
    with pytest.raises(ValueError, match="must exceed"):
        fit_with_run(trainer, run, [(x, y)], epochs=0)


def test_compare_runs_table(tmp_path):
    a = Run.create("cmp", {"lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}, "epochs": 3}, root=tmp_path, seed=1)
    b = Run.create("cmp", {"lr": 0.01, "opt": {"name": "sgd"}, "epochs": 3, "extra": True}, root=tmp_path, seed=2)
    a.log({"loss": 0.5, "acc": 0.9})
    b.log({"loss": 0.25})
    a.finish()
    table = compare_runs([a, b])
    rows = {r[0]: r[1:] for r in table}
    assert table[0] == ["", a.name, b.name]
    assert rows["lr"] == ["0.1", "0.01"] and rows["opt.momentum"] == ["0.9", "-"] and rows["extra"] == ["-", "True"]
    assert "epochs" not in rows and "opt.name" not in rows
    assert rows["seed"] == ["1", "2"] and rows["status"] == ["completed", "unfinished"]
    assert rows["loss"] == ["0.5", "0.25"] and rows["acc"] == ["0.9", "-"]
    assert rows["config_hash"] == [a.config_hash[:12], b.config_hash[:12]]
    lines = format_table(table).splitlines()
    assert len(lines) == len(table) and lines[0].index(a.name) == lines[1].index(a.config_hash[:12])
    assert find_run(a.name, tmp_path).path == a.path and find_run(str(b.path)).path == b.path
    with pytest.raises(ValueError, match="matches 2 runs"):
        find_run("cmp", tmp_path)
    with pytest.raises(ValueError, match="no run called 'zzz'"):
        find_run("zzz", tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        compare_runs([])


# ---- 3. packages ---------------------------------------------------------------------------------
def test_sequential_package_round_trip_gives_identical_predictions(trained):
    pkg = load_package(trained["package"])
    x = blobs(50, 77)[0]
    model = trained["trainer"].model.eval()
    logits = model(Tensor(x)).data
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    out = pkg.predict(x)
    assert np.array_equal(np.asarray(out["probabilities"], dtype=np.float32), probs)
    assert out["predictions"] == probs.argmax(1).tolist()
    assert out["labels"] == [["a", "b", "c"][i] for i in out["predictions"]]
    m = pkg.manifest
    assert m["format"] == "tinytorch-model-package" and m["schema_version"] == 1 and m["kind"] == "sequential"
    assert m["name"] == "blobs" and m["version"] == "1.2.0" and m["config"] == trained["run"].config
    assert m["metrics"]["val_accuracy"] == trained["run"].final_metrics()["val_accuracy"]
    assert [e["type"] for e in m["model"]["layers"]] == ["Dense", "ReLU", "Dropout", "Dense"]
    for name, entry in m["files"].items():
        assert file_sha256(trained["package"] / name) == entry["sha256"]
    assert pkg.stats["edges"].shape == (4, 9) and int(pkg.stats["count"]) == 1000


def test_conv_package_round_trip(tmp_path):
    seed_everything(1)
    model = Sequential(Conv2d(1, 4, 3, padding=1), BatchNorm2d(4), ReLU(), MaxPool2d(2), Flatten(), Dense(16, 5))
    x = np.random.default_rng(0).standard_normal((6, 1, 4, 4)).astype(np.float32)
    model.train()
    model(Tensor(x))                                   # move BatchNorm's running statistics off their start
    model.eval()
    path = save_package(tmp_path / "cnn", model, name="cnn", version="1", input_spec=array_spec((1, 4, 4)),
                        train_inputs=x)
    pkg = load_package(path)
    expected = model(Tensor(x)).data
    assert np.allclose(np.log(np.asarray(pkg.predict(x)["probabilities"])),
                       expected - np.log(np.exp(expected).sum(1, keepdims=True)), atol=1e-5)
    rebuilt = pkg.model
    assert np.array_equal(rebuilt.layers[1].running_mean, model.layers[1].running_mean)
    assert layer_spec(rebuilt) == layer_spec(model)


def test_layer_spec_refuses_layers_it_cannot_describe():
    class Custom(Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="layer 1 is a .*Custom"):
        layer_spec(Sequential(Dense(2, 2), Custom()))
    with pytest.raises(ValueError, match="Sequential"):
        layer_spec(Dense(2, 2))
    with pytest.raises(PackageError, match="unknown type 'Lambda'"):
        build_sequential([{"type": "Lambda", "args": {"code": "import os"}}])
    with pytest.raises(PackageError, match="entry 0"):
        build_sequential([{"type": "Dense", "args": {"in_features": 2, "out_features": 2, "evil": 1}}])
    with pytest.raises(PackageError, match="non-empty list"):
        build_sequential({})


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(folder: Path, change, rehash=False) -> None:
    from tinytorch.mlops.mlops import _manifest_digest
    m = json.loads((folder / "manifest.json").read_text())
    change(m)
    if rehash:
        m["manifest_sha256"] = _manifest_digest(m)
    (folder / "manifest.json").write_text(json.dumps(m, indent=4))


def test_tampered_packages_are_refused_with_clear_errors(trained, tmp_path):
    src = trained["package"]
    # one bit of the weights
    bad = _copy(src, tmp_path / "w")
    data = bytearray((bad / "weights.npz").read_bytes())
    data[100] ^= 0x01
    (bad / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(PackageError, match=r"weights\.npz has sha256 .* changed or replaced"):
        load_package(bad)
    # the statistics file swapped for the weights file
    bad = _copy(src, tmp_path / "swap")
    shutil.copy(bad / "weights.npz", bad / "stats.npz")
    with pytest.raises(PackageError, match=r"stats\.npz has sha256"):
        load_package(bad)
    # a value of the manifest
    bad = _copy(src, tmp_path / "m")
    _edit_manifest(bad, lambda m: m.update(version="9.9.9"))
    with pytest.raises(PackageError, match="manifest.json was modified after packaging"):
        load_package(bad)
    # re-indenting the manifest is not tampering
    ok = _copy(src, tmp_path / "indent")
    _edit_manifest(ok, lambda m: None)
    assert load_package(ok).version == "1.2.0"
    # schema version, format, missing fields, not JSON
    for tag, change, word in [("v2", lambda m: m.update(schema_version=2), "schema version 2"),
                              ("vs", lambda m: m.update(schema_version="1"), "schema version '1'"),
                              ("fmt", lambda m: m.update(format="other"), "format 'other'"),
                              ("nofiles", lambda m: m.pop("files"), r"lacks the fields \['files'\]")]:
        bad = _copy(src, tmp_path / tag)
        _edit_manifest(bad, change, rehash=True)
        with pytest.raises(PackageError, match=word):
            load_package(bad)
    bad = _copy(src, tmp_path / "json")
    (bad / "manifest.json").write_text('{"format": ')
    with pytest.raises(PackageError, match="not valid JSON"):
        load_package(bad)
    # a missing file, a missing manifest, nothing at all, a file instead of a folder
    bad = _copy(src, tmp_path / "missing")
    (bad / "weights.npz").unlink()
    with pytest.raises(PackageError, match=r"missing weights\.npz"):
        load_package(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(PackageError, match="no manifest.json"):
        load_package(bad)
    with pytest.raises(PackageError, match="no model package at"):
        load_package(tmp_path / "nothing")
    with pytest.raises(PackageError, match="is a file"):
        load_package(src / "weights.npz")
    # a file name that leaves the package, an unknown kind
    bad = _copy(src, tmp_path / "escape")
    _edit_manifest(bad, lambda m: m["files"].update({"../x": {"sha256": "0"}}), rehash=True)
    with pytest.raises(PackageError, match="not a plain file name"):
        load_package(bad)
    bad = _copy(src, tmp_path / "kind")
    _edit_manifest(bad, lambda m: m.update(kind="resnet"), rehash=True)
    with pytest.raises(PackageError, match="unknown model kind 'resnet'"):
        load_package(bad)


class _Exploit:
    """Unpickling this creates the file `path`: proof that something was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_is_never_unpickled_even_with_matching_hashes(trained, tmp_path):
    marker = tmp_path / "unpickled"
    for name in ("weights.npz", "stats.npz"):
        bad = _copy(trained["package"], tmp_path / name)
        (bad / name).write_bytes(pickle.dumps({"layers.0.weight": _Exploit(marker)}))
        _edit_manifest(bad, lambda m: m["files"][name].update(sha256=file_sha256(bad / name)), rehash=True)
        with pytest.raises(PackageError, match="pickle"):
            load_package(bad)
        # and without rewriting the hashes, the hash check refuses it first
        (bad / name).write_bytes(pickle.dumps(_Exploit(marker)))
        with pytest.raises(PackageError, match="sha256"):
            load_package(bad)
    assert not marker.exists()


def test_save_package_is_atomic_and_checks_its_arguments(trained, tmp_path):
    model = trained["trainer"].model
    spec = array_spec((4,))
    with pytest.raises(PackageError, match="exists"):
        save_package(trained["package"], model, name="blobs", version="1", input_spec=spec)
    path = save_package(tmp_path / "p", model, name="p", version="1", input_spec=spec)
    save_package(path, model, name="p", version="2", input_spec=spec, overwrite=True)
    assert load_package(path).version == "2" and "stats.npz" not in load_package(path).manifest["files"]
    with pytest.raises(ValueError, match="version"):
        save_package(tmp_path / "q", model, name="q", version="1/2", input_spec=spec)
    with pytest.raises(TypeError, match="ModelKind"):
        save_package(tmp_path / "q", model, "sequential", name="q", version="1", input_spec=spec)
    with pytest.raises(ValueError, match="Sequential"):
        save_package(tmp_path / "q", Dense(4, 3), name="q", version="1", input_spec=spec)

    class Broken(Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError):
        save_package(tmp_path / "q", Sequential(Broken()), name="q", version="1", input_spec=spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"], "a failed save leaves nothing behind"


def test_tinygpt_package_round_trip(gpt_package):
    pkg = load_package(gpt_package["package"], kinds=KINDS)
    model = gpt_package["model"]
    ids = model.tokenizer.encode("a bad cafe")[None, :]
    assert np.array_equal(pkg.model(ids).data, model.eval()(ids).data)
    assert pkg.manifest["kind"] == "tinygpt" and pkg.input_spec["vocabulary"] == VOCAB
    assert pkg.manifest["model"]["config"]["d_model"] == 16
    assert np.isclose(pkg.stats["char_freq"].sum(), 1) and pkg.stats["char_freq"][VOCAB.index("a")] > 0.2
    a = pkg.complete("a bad", max_tokens=20, temperature=1.0, seed=3)
    assert len(a) == 20 and set(a) <= set(VOCAB) and a == pkg.complete("a bad", max_tokens=20, seed=3)
    greedy = pkg.complete("ab" * 20, max_tokens=12, temperature=0.0)  # a prompt longer than the context
    assert len(greedy) == 12
    with pytest.raises(PackageError, match="does not predict"):
        pkg.predict(np.zeros((1, 4)))


# ---- 4. drift ---------------------------------------------------------------------------------------
def test_drift_monitor_flags_a_shift_and_not_an_unshifted_stream():
    stats = input_statistics(blobs(3000, 0)[0])
    assert np.allclose(stats["proportions"], 0.1, atol=0.005)
    for seed in range(3):
        quiet = DriftMonitor(stats)
        for k in range(4):
            quiet.observe(blobs(100, 100 + 10 * seed + k)[0])
        report = quiet.report()
        assert report["enough_data"] and report["drift"] is False and report["psi_max"] < 0.1, report
    for shift, scale in [(0.0, 3.0), (1.0, 1.0)]:                # a wider spread; a moved mean
        moved = DriftMonitor(stats)
        moved.observe(blobs(400, 9, shift=shift)[0] * np.float32(scale))
        report = moved.report()
        assert report["drift"] is True and report["psi_max"] > 0.25 and report["drifted_features"], report
    small = DriftMonitor(stats)
    small.observe(blobs(50, 1, shift=5.0)[0])
    assert small.report()["drift"] is None, "50 samples are too few to judge"
    with pytest.raises(ValueError, match="statistics have 4"):
        DriftMonitor(stats).observe(np.zeros((3, 5)))


def test_psi_values():
    e = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(e, e) == 0
    a = np.array([0.4, 0.3, 0.2, 0.1])
    assert np.isclose(psi(e, a), np.sum((a - e) * np.log(a / e)))
    assert np.isfinite(psi(e, np.array([1.0, 0, 0, 0])))


def test_text_drift():
    stats = text_statistics("abc abc cab " * 40, "abc ")
    mon = DriftMonitor(stats, vocabulary="abc ", min_samples=100)
    mon.observe("bca cab abc " * 20)
    assert mon.report()["drift"] is False
    mon.reset()
    mon.observe("abc abc ccc " * 10)                 # a moderate shift (PSI 0.15) towards c: named, not flagged
    report = mon.report()
    assert report["drift"] is False and 0.1 < report["psi_max"] < 0.25 and report["top_characters"][0] == "c", report
    mon.reset()
    mon.observe("aaaa aaaa " * 20)
    report = mon.report()
    assert report["drift"] is True and set(report["top_characters"]) == set("abc ") and "drifted_features" not in report
    with pytest.raises(ValueError, match="vocabulary"):
        DriftMonitor(stats)


# ---- 5. validation and the server -------------------------------------------------------------------
def test_validation_functions_directly():
    spec = array_spec((2, 2))
    assert validate_inputs({"inputs": [[[1, 2], [3, 4]]]}, spec).shape == (1, 2, 2)
    with pytest.raises(RequestError) as err:
        validate_inputs({"inputs": [[1, 2, 3, 4]]}, spec)
    assert err.value.status == 422 and "(B, 2, 2)" in err.value.message
    with pytest.raises(RequestError, match="limit is 3"):
        validate_inputs({"inputs": [[[0, 0], [0, 0]]] * 4}, spec, max_batch=3)
    tspec = text_spec("ab")
    with pytest.raises(RequestError, match="1 to 5"):
        validate_completion({"prompt": "ababab"}, {**tspec, "max_prompt_chars": 5})
    assert validate_completion({"prompt": "ab", "top_k": 2, "temperature": 0}, tspec)["top_k"] == 2
    with pytest.raises(RequestError, match=r"'top_k' must lie in \[1, 2\]"):
        validate_completion({"prompt": "ab", "top_k": 3}, tspec)


def test_validation_refuses_each_bad_body():
    spec = array_spec((4,))

    def status_of(fn, *args):
        try:
            fn(*args)
        except RequestError as err:
            return err.status, err.message
        return 200, ""

    good = validate_inputs({"inputs": [[1, 2, 3, 4], [0.5, 0, 0, 1]]}, spec)
    assert good.dtype == np.float32 and good.shape == (2, 4)
    assert status_of(validate_inputs, [[1, 2, 3, 4]], spec)[0] == 400
    for body, what in [({"inputs": [[1, 2, 3]]}, "shape (1, 3)"), ({"inputs": [[1, 2], [1, 2, 3, 4]]}, "ragged"),
                       ({"inputs": [[1, 2, "3", 4]]}, "strings"), ({"inputs": [[True, False, True, False]]}, "booleans"),
                       ({"inputs": [[1, 2, None, 4]]}, "null"), ({"inputs": [[1, 2, float("nan"), 4]]}, "NaN"),
                       ({"inputs": [[1, 2, 1e300, 4]]}, "too large"), ({"inputs": []}, "shape (0,)"),
                       ({"inputs": [[0.0] * 4] * 300}, "limit is 256"), ({"x": 1}, "unknown field"),
                       ({}, "missing field 'inputs'"), ({"inputs": "1,2,3,4"}, "a string")]:
        code, message = status_of(validate_inputs, body, spec)
        assert code == 422, (body if len(str(body)) < 80 else what, code, message)
    tspec = text_spec("abcdefgh \n")
    args = validate_completion({"prompt": "bad cafe", "max_tokens": 5, "seed": 3}, tspec)
    assert args == {"prompt": "bad cafe", "max_tokens": 5, "temperature": 1.0, "top_k": None, "seed": 3}
    for body, what in [({"prompt": "héllo"}, "'é'"), ({"prompt": ""}, "1 to"), ({"prompt": 5}, "must be a string"),
                       ({"prompt": "a", "max_tokens": "5"}, "'max_tokens' must be an integer"),
                       ({"prompt": "a", "max_tokens": 10_000}, "[1, 500]"), ({"prompt": "a", "max_tokens": True}, "integer"),
                       ({"prompt": "a", "temperature": -1}, "[0, 10]"), ({"prompt": "a", "top_k": 0}, "'top_k'"),
                       ({"prompt": "a", "top_p": 0.9}, "unknown field"), ({"max_tokens": 3}, "missing field 'prompt'")]:
        code, message = status_of(validate_completion, body, tspec)
        assert code == 422, (body, what, code, message)


def test_validation_boundaries():
    """Other shapes and dtypes, the exact batch limit, values finite in JSON but not in float32,
    one example that is not a batch; completion defaults and every range boundary."""
    def status_of(fn, *args):
        try:
            fn(*args)
        except RequestError as err:
            return err.status
        return 200

    tspec = text_spec("abcdefgh \n")
    spec3_h = array_spec((2, 3), "float64")
    ok_h = validate_inputs({"inputs": [[[1, 2, 3], [4, 5, 6]]] * 3}, spec3_h, max_batch=3)
    assert ok_h.shape == (3, 2, 3) and ok_h.dtype == np.float64
    for body_h in [{"inputs": [[[1, 2, 3], [4, 5, 6]]] * 4}, {"inputs": [[1, 2, 3, 4, 5, 6]]}, {"inputs": [[[1, 2, 3]]]},
                   {"inputs": [[[1, 2, 3], [4, 5, float("inf")]]]}, {"inputs": [[1, 2, 3], [4, 5, 6]]}]:
        assert status_of(validate_inputs, body_h, spec3_h, 3) == 422, body_h
    spec4_h = array_spec((4,))
    assert validate_inputs({"inputs": [[0.0] * 4] * 256}, spec4_h).shape == (256, 4)
    assert validate_inputs({"inputs": [[1, 2, 3, 4]]}, spec4_h).dtype == np.float32
    assert status_of(validate_inputs, {"inputs": [[1, 2, 3, 1e39]]}, spec4_h) == 422
    assert status_of(validate_inputs, {"inputs": [1, 2, 3, 4]}, spec4_h) == 422
    assert status_of(validate_inputs, "inputs", spec4_h) == 400
    assert validate_completion({"prompt": "ab"}, tspec) == {"prompt": "ab", "max_tokens": 100, "temperature": 1.0,
                                                            "top_k": None, "seed": None}
    assert validate_completion({"prompt": "a"}, tspec, max_new_tokens=40)["max_tokens"] == 40
    short_h = text_spec("ab", max_prompt_chars=5)
    assert validate_completion({"prompt": "ababa"}, short_h)["prompt"] == "ababa"
    temp_h = validate_completion({"prompt": "a", "temperature": 0}, tspec)["temperature"]
    assert temp_h == 0.0 and type(temp_h) is float
    for body_h in [{"prompt": "a", "max_tokens": 500}, {"prompt": "a", "max_tokens": 1}, {"prompt": "a", "temperature": 10},
                   {"prompt": "a", "top_k": 10}, {"prompt": "a", "top_k": 1}, {"prompt": "a", "top_k": None, "seed": None},
                   {"prompt": "a", "seed": 0}, {"prompt": "a", "seed": 2**63 - 1}, {"prompt": "\n"}]:
        assert status_of(validate_completion, body_h, tspec) == 200, body_h
    for body_h, spec_h in [({"prompt": "ababab"}, short_h), ({"prompt": "a", "max_tokens": 0}, tspec),
                           ({"prompt": "a", "max_tokens": 501}, tspec), ({"prompt": "a", "temperature": 10.5}, tspec),
                           ({"prompt": "a", "temperature": float("nan")}, tspec), ({"prompt": "a", "temperature": True}, tspec),
                           ({"prompt": "a", "top_k": 11}, tspec), ({"prompt": "a", "seed": -1}, tspec),
                           ({"prompt": "a", "seed": 2**63}, tspec), ({"prompt": "a", "seed": 1.0}, tspec),
                           ({"prompt": ["a"]}, tspec), ({"prompt": "a", "max_tokens": 2.0}, tspec)]:
        assert status_of(validate_completion, body_h, spec_h) == 422, body_h
    assert status_of(validate_completion, ["a"], tspec) == 400


def test_server_predicts_and_describes_itself(server, trained):
    status, body, _ = call(server.url, "/health")
    assert status == 200 and body == {"status": "ok", "model": "blobs", "version": "1.2.0"}
    status, info, _ = call(server.url, "/info")
    assert info["kind"] == "sequential" and info["input_spec"]["shape"] == [4]
    assert info["limits"]["max_batch"] == 64 and info["endpoints"]["/predict"] == ["POST"]
    x = blobs(7, 123)[0]
    status, body, headers = call(server.url, "/predict", {"inputs": x.tolist()})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == load_package(trained["package"]).predict(x)
    assert call(server.url, "/predict?verbose=1", {"inputs": x[:1].tolist()})[0] == 200


@pytest.mark.parametrize("body, raw, status, words", [
    (None, b'{"inputs": [[1, 2, 3, 4]]', 400, "malformed JSON"),
    (None, b"\xff\xfe", 400, "UTF-8"),
    ([1, 2, 3, 4], None, 400, "JSON object"),
    ({"inputs": [[1, 2, 3]]}, None, 422, "shape (1, 3)"),
    ({"inputs": [[1, 2, 3, 4]], "extra": 1}, None, 422, "unknown field(s) ['extra']"),
    ({"inputs": [[1, "2", 3, 4]]}, None, 422, "only numbers"),
    ({"inputs": [[1, 2, 3, 4], [1, 2]]}, None, 422, "ragged"),
    ({"inputs": [[0.0, 0.0, 0.0, 1e39]]}, None, 422, "too large for float32"),
    ({"inputs": [[0, 0, 0, 0]] * 65}, None, 422, "limit is 64"),
    ({"inputs": {"a": 1}}, None, 422, "list of examples"),
    ({}, None, 422, "missing field 'inputs'"),
])
def test_server_refuses_bad_predict_requests(server, body, raw, status, words):
    got, answer, _ = call(server.url, "/predict", body, raw=raw)
    assert got == status and words in answer["error"], answer
    assert call(server.url, "/health")[0] == 200


def test_server_http_level_errors(server):
    assert call(server.url, "/predict", raw=b"x" * 60_000)[:2] == (
        413, {"error": "the body has 60000 bytes; the limit is 50000"})
    status, body, headers = call(server.url, "/predict")
    assert status == 405 and headers["Allow"] == "POST" and "takes POST, not GET" in body["error"]
    assert call(server.url, "/health", {"a": 1})[0] == 405
    assert call(server.url, "/predict", {"inputs": [[1, 2, 3, 4]]}, method="PUT")[0] == 405
    status, body, _ = call(server.url, "/complete", {"prompt": "a"})
    assert status == 404 and "/predict" in body["error"]
    assert call(server.url, "/predict", {"inputs": [[1, 2, 3, 4]]}, ctype="text/plain")[0] == 415
    # a body announced as huge is refused from its Content-Length, before it is sent
    host, port = server.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders(b'{"inputs": ')
    response = conn.getresponse()
    assert response.status == 413 and "limit is 50000" in json.loads(response.read())["error"]
    conn.close()
    # no Content-Length; a broken request line (answered as JSON too)
    reply = raw_request(server.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 411") and b'"error"' in reply
    reply = raw_request(server.url, b"NONSENSE\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 400") and b'{"error"' in reply
    assert call(server.url, "/health")[0] == 200


def test_slow_clients_time_out_and_do_not_block_others(trained):
    server = ModelServer(load_package(trained["package"]), socket_timeout=2.0).start()
    host, port = server.url.split("//")[1].split(":")
    slow = socket.create_connection((host, int(port)), timeout=5)
    slow.sendall(b"POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"in")
    stalled = socket.create_connection((host, int(port)), timeout=5)
    stalled.sendall(b"GET /hea")                           # half a request line
    started = time.monotonic()
    assert call(server.url, "/health")[0] == 200           # answered while both are stuck
    assert time.monotonic() - started < 1.5, "a stuck client must not block the others"
    reply = b""
    while chunk := slow.recv(65536):
        reply += chunk
    assert reply.startswith(b"HTTP/1.0 408") and b"too slowly" in reply
    assert stalled.recv(65536).startswith(b"HTTP/1.0 408")  # answered and closed at the request deadline
    assert 1.5 < time.monotonic() - started < 6
    slow.close()
    stalled.close()
    assert call(server.url, "/health")[0] == 200
    server.shutdown()


def test_concurrent_requests_are_all_answered_correctly(server, trained):
    pkg = load_package(trained["package"])
    batches = [blobs(1 + i % 5, 1000 + i)[0] for i in range(40)]
    bad = {3, 17, 29}                                       # interleave some bad requests

    def one(i):
        if i in bad:
            return call(server.url, "/predict", raw=b"{oops")
        return call(server.url, "/predict", {"inputs": batches[i].tolist()})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(one, range(40)))
    for i, (status, body, _) in enumerate(answers):
        if i in bad:
            assert status == 400
        else:
            assert status == 200 and body == pkg.predict(batches[i]), i
    assert call(server.url, "/health")[0] == 200


def test_server_drift_endpoint(trained):
    pkg = load_package(trained["package"])
    with ModelServer(pkg) as srv:
        assert call(srv.url, "/drift")[1]["drift"] is None
        for seed in range(4):
            assert call(srv.url, "/predict", {"inputs": blobs(64, 50 + seed)[0].tolist()})[0] == 200
        report = call(srv.url, "/drift")[1]
        assert report["samples"] == 256 and report["drift"] is False, report
    with ModelServer(pkg) as srv:
        for seed in range(4):
            call(srv.url, "/predict", {"inputs": blobs(64, 60 + seed, shift=2.0)[0].tolist()})
        report = call(srv.url, "/drift")[1]
        assert report["drift"] is True and report["thresholds"]["psi"] == 0.25, report


def test_busy_model_gives_503(trained):
    with ModelServer(load_package(trained["package"]), time_limit=0.2) as srv:
        with srv.model_lock:                                # another request holds the model
            status, body, _ = call(srv.url, "/predict", {"inputs": [[0, 0, 0, 0]]})
        assert status == 503 and "busy" in body["error"]
        assert call(srv.url, "/predict", {"inputs": [[0, 0, 0, 0]]})[0] == 200


def test_server_completes_text_with_tinygpt(gpt_server, gpt_package):
    url = gpt_server.url
    status, body, _ = call(url, "/complete", {"prompt": "a bad ", "max_tokens": 10, "temperature": 0.8,
                                               "top_k": 5, "seed": 7})
    assert status == 200 and len(body["completion"]) == 10 and body["text"] == "a bad " + body["completion"]
    pkg = load_package(gpt_package["package"], kinds=KINDS)
    assert body["completion"] == pkg.complete("a bad ", max_tokens=10, temperature=0.8, top_k=5, seed=7)
    with ThreadPoolExecutor(4) as pool:                     # concurrent generations are independent
        same = list(pool.map(lambda _: call(url, "/complete", {"prompt": "a bad ", "max_tokens": 10,
                                                               "temperature": 0.8, "top_k": 5, "seed": 7}), range(4)))
    assert all(s[1] == body for s in same)
    assert call(url, "/info")[1]["kind"] == "tinygpt"
    assert call(url, "/predict", {"inputs": [[1]]})[0] == 404


@pytest.mark.parametrize("body, words", [
    ({"prompt": "a Bad cafè"}, "outside the model's vocabulary: 'B', 'è'"),
    ({"prompt": "abc", "max_tokens": 65}, "'max_tokens' must lie in [1, 64]"),
    ({"prompt": "abc", "max_tokens": "3"}, "'max_tokens' must be an integer, got a string '3'"),
    ({"prompt": "abc", "temperature": "hot"}, "'temperature' must be a number"),
    ({"prompt": "abc", "temperature": 11}, "[0, 10]"),
    ({"prompt": "abc", "seed": -1}, "'seed' must lie in"),
    ({"prompt": "abc", "top_k": 1.5}, "'top_k' must be an integer or null"),
    ({"prompt": ["abc"]}, "'prompt' must be a string"),
    ({"prompt": ""}, "1 to 2000"),
    ({"text": "abc"}, "unknown field(s) ['text']"),
])
def test_server_refuses_bad_completion_requests(gpt_server, body, words):
    status, answer, _ = call(gpt_server.url, "/complete", body)
    assert status == 422 and words in answer["error"], answer
    assert call(gpt_server.url, "/health")[0] == 200


def test_generation_time_limit_gives_504(gpt_package):
    with ModelServer(load_package(gpt_package["package"], kinds=KINDS), time_limit=0.02) as srv:
        status, body, _ = call(srv.url, "/complete", {"prompt": "abc", "max_tokens": 500})
        assert status == 504 and "of 500 tokens" in body["error"] and "time limit" in body["error"], body
        assert call(srv.url, "/health")[0] == 200


def test_load_package_takes_the_kinds_it_may_meet(gpt_package, trained):
    with pytest.raises(PackageError, match=r"unknown model kind 'tinygpt'.*\['sequential'\]"):
        load_package(gpt_package["package"])                  # the default: SEQUENTIAL only
    with pytest.raises(PackageError, match=r"unknown model kind 'sequential'.*\['tinygpt'\]"):
        load_package(trained["package"], kinds=(TINYGPT_KIND,))
    assert load_package(trained["package"], kinds=KINDS).kind is SEQUENTIAL
    assert load_package(gpt_package["package"], kinds=[TINYGPT_KIND]).kind is TINYGPT_KIND


def test_file_problems_lists_every_problem(trained, tmp_path):
    pkg = _copy(trained["package"], tmp_path / "p")
    files = json.loads((pkg / "manifest.json").read_text())["files"]
    assert file_problems(pkg, files, ["weights.npz"]) == []
    (pkg / "stats.npz").unlink()
    (pkg / "weights.npz").write_bytes(b"not the weights")
    problems = file_problems(pkg, {**files, "../x": {"sha256": "0"}}, ["weights.npz", "extra.npz"])
    assert len(problems) == 4 and any("missing stats.npz" in p for p in problems), problems
    assert any("extra.npz" in p for p in problems) and any("'../x'" in p for p in problems)
    with pytest.raises(PackageError, match="problems"):
        load_package(pkg)


# ---- the tito commands --------------------------------------------------------------------------
def test_tito_runs_list_show_compare(trained, tmp_path, capsys):
    root = tmp_path / "runs"
    a = Run.create("alpha", {"lr": 0.1, "hidden": 8}, root=root, seed=0)
    b = Run.create("beta", {"lr": 0.2, "hidden": 8}, root=root, seed=0)
    a.log({"loss": 0.5})
    b.log({"loss": 0.75})
    a.finish()
    assert tito_main(["runs", "--dir", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run", "created", "status", "steps", "config_hash", "final", "metrics"]
    assert out[1].startswith(a.name) and "completed" in out[1] and "loss=0.5" in out[1]
    assert out[2].startswith(b.name) and "unfinished" in out[2]
    assert tito_main(["runs", "--dir", str(root), "show", "alpha"]) == 0
    shown = capsys.readouterr().out
    assert f"config_hash  {a.config_hash}" in shown and "lr = 0.1" in shown and "0.5" in shown
    assert tito_main(["runs", "--dir", str(root), "compare", "alpha", "beta"]) == 0
    compared = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["lr", "0.1", "0.2"] for line in compared)
    assert not any(line.startswith("hidden") for line in compared)
    assert tito_main(["runs", "--dir", str(trained["root"] / "runs"), "show", trained["run"].name]) == 0
    assert "history.png" in capsys.readouterr().out
    assert tito_main(["runs", "--dir", str(root), "show", "gamma"]) == 2
    assert "no run called 'gamma'" in capsys.readouterr().err
    assert tito_main(["runs", "--dir", str(root), "compare", "alpha"]) == 2
    assert tito_main(["runs", "--dir", str(tmp_path / "none")]) == 0
    assert "does not exist" in capsys.readouterr().out


def test_tito_serve_in_a_subprocess(trained, gpt_package):
    for package, path, body, key in [(trained["package"], "/predict", {"inputs": [[2, 0, 0, 1]]}, "predictions"),
                                     (gpt_package["package"], "/complete", {"prompt": "a", "max_tokens": 3}, "completion")]:
        proc = subprocess.Popen([sys.executable, "-m", "tito", "serve", str(package), "--port", "0", "--quiet"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.startswith("serving ") and " at http://127.0.0.1:" in line, (line, proc.stderr.read())
            url = line.rsplit(" at ", 1)[1].strip()
            assert call(url, "/health")[0] == 200
            status, answer, _ = call(url, path, body)
            assert status == 200 and key in answer, answer
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        assert "stopped" in proc.stdout.read()


def test_tito_serve_refuses_a_broken_package(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{}")
    assert tito_main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "not a TinyTorch model package" in capsys.readouterr().err


def test_tito_package_wraps_a_saved_tinygpt(tmp_path, capsys):
    model = tiny_gpt(seed=2)
    weights = model.save(tmp_path / "model.npz")
    (tmp_path / "train.txt").write_text("a bad cafe, a head.\n" * 20)
    out = tmp_path / "pkg"
    args = ["package", str(weights), "--out", str(out), "--name", "tiny", "--version", "2.0",
            "--text", str(tmp_path / "train.txt"), "--metric", "val_loss=2.25"]
    assert tito_main(args) == 0
    assert f"tito serve {out}" in capsys.readouterr().out
    pkg = load_package(out, kinds=KINDS)
    assert pkg.manifest["kind"] == "tinygpt" and pkg.manifest["metrics"] == {"val_loss": 2.25}
    assert pkg.stats is not None and np.array_equal(pkg.model.head.weight.data, model.head.weight.data)
    assert tito_main(args) == 2 and "exists" in capsys.readouterr().err
    assert tito_main(args + ["--overwrite"]) == 0
    with pytest.raises(SystemExit):
        tito_main(args[:-1] + ["val_loss=abc"])
    assert "NAME=NUMBER" in capsys.readouterr().err
    assert tito_main(["package", str(tmp_path / "train.txt"), "--out", str(tmp_path / "x"), "--name", "x",
                      "--version", "1"]) == 2
    assert "not a TinyTorch checkpoint" in capsys.readouterr().err
