"""Tests for the CIFAR-10 milestone script (milestones/cifar10.py, one per `--model`), its shared
code (milestones/common.py) and the TinyGPT milestone (milestones/tinygpt_shakespeare.py).

The scripts need CIFAR-10, so each test writes a tiny fake CIFAR-10 (random pixels and labels)
in the canonical binary format to tmp_path and points TINYTORCH_DATA at it; the scripts are
run with --no-verify (the fake files have neither the published MD5s nor 10,000 records
each). Neither the real data nor the network is used, and nothing is written to results/.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinytorch.core.dataloader import CIFAR10, CIFAR10_FOLDER, RandomCrop, RandomHorizontalFlip, Subset
from tinytorch.core.optimizers import SGD, AdamW

ROOT = Path(__file__).resolve().parents[1]
MILESTONES = ROOT / "milestones"
MODELS = ["mlp", "lenet1", "lenet5", "cnn"]       # cifar10.py --model NAME writes results/NAME_cifar10.json
PER_FILE = 40                      # records in each fake file: 200 training, 40 test images
REQUIRED_KEYS = {"milestone", "test_accuracy", "test_loss", "test_images", "published_accuracy", "epochs",
                 "wall_seconds", "train_seconds", "seconds_per_epoch", "seed", "quick", "command", "history",
                 "hyperparameters", "params", "architecture", "data", "machine", "plot"}


def write_fake_cifar(root: Path, per_file: int = PER_FILE, seed: int = 0) -> Path:
    """<root>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin: records of 1 label byte
    and 3072 pixel bytes (3 planes of 32x32, row-major), as in the real binary version."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in CIFAR10.train_files + CIFAR10.test_files:
        rec = np.empty((per_file, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(per_file) % 10                  # every class present
        rec[:, 1:] = rng.integers(0, 256, size=(per_file, 3072))
        rec.tofile(folder / name)
    return root


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    root = write_fake_cifar(tmp_path / "data")
    monkeypatch.setenv("TINYTORCH_DATA", str(root))
    return root


@pytest.fixture
def ms(monkeypatch):
    """Import milestone modules by name ("common", "cifar10", ...) from milestones/, and
    forget them afterwards (so that no other `common` module is shadowed)."""
    names = ["common", "cifar10", "compression_cifar10", "tinygpt_shakespeare"]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    monkeypatch.syspath_prepend(str(MILESTONES))
    yield importlib.import_module
    for n in names:
        sys.modules.pop(n, None)
    sys.modules.update(saved)


# ---- every model, end to end ------------------------------------------------------------------
@pytest.mark.parametrize("milestone", MODELS)
def test_script_runs_end_to_end_with_quick(milestone, fake_data, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, TINYTORCH_DATA=str(fake_data), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)                          # the script must find tinytorch by itself
    proc = subprocess.run([sys.executable, str(MILESTONES / "cifar10.py"), "--model", milestone, "--quick",
                           "--no-verify", "--val-size", "40", "--no-progress", "--out-dir", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    name = f"{milestone}_cifar10"
    result = json.loads((out / f"{name}_quick.json").read_text())
    assert REQUIRED_KEYS <= set(result)
    assert result["milestone"] == name and result["quick"] is True and result["seed"] == 0
    assert result["epochs"] == 1 and result["history"]["epoch"] == [1]
    assert len(result["history"]["val_accuracy"]) == 1 and len(result["history"]["train_loss"]) == 1
    assert result["test_images"] == PER_FILE                    # the whole (fake) test file, once
    assert result["data"]["train"] == 5 * PER_FILE - 40 and result["data"]["val"] == 40
    assert result["data"]["verified_checksums"] is False
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["params"] > 0
    assert result["command"].startswith(f"python milestones/cifar10.py --model {milestone} --quick")
    assert result["hyperparameters"]["batch_size"] == 128 and "lr" in result["hyperparameters"]
    assert "load_average_at_end" in result["machine"] and "blas_threads_env" in result["machine"]
    assert (out / f"{name}_quick.png").stat().st_size > 1000
    assert Path(result["plot"]) == (out / f"{name}_quick.png").resolve()
    assert "test accuracy" in proc.stdout
    assert not list(out.glob(".*.tmp-*")) and not list(out.glob("*.tmp")), "no temporary files left"
    assert_git_state(result)


def test_generated_data_is_refused_without_no_verify(fake_data, tmp_path):
    env = dict(os.environ, TINYTORCH_DATA=str(fake_data), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(MILESTONES / "cifar10.py"), "--model", "lenet1", "--quick",
                           "--val-size", "40", "--no-progress", "--out-dir", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "MD5" in proc.stderr and "--no-verify" in proc.stderr
    assert not (tmp_path / "out" / "lenet1_cifar10_quick.json").exists()


@pytest.mark.parametrize("milestone", MODELS)
def test_script_help_lists_the_common_options(milestone, ms, capsys):
    mod = ms("cifar10")
    with pytest.raises(SystemExit) as exit_info:
        mod.parse_args(["--model", milestone, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--epochs", "--seed", "--quick", "--out-dir", "--no-verify", "--val-size", "--train-size",
                   "--batch-size", "--lr", "--weight-decay", "--warmup-epochs", "--crop-padding", "--no-flip",
                   "--blas-threads", "--optimizer"):
        assert option in text, option
    assert f"results/{milestone}_cifar10.json" in text


def test_the_model_must_be_named(ms, capsys):
    cifar10 = ms("cifar10")
    with pytest.raises(SystemExit) as exit_info:
        cifar10.parse_args(["--quick"])
    assert exit_info.value.code == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cifar10.parse_args(["--model", "resnet"])
    assert exit_info.value.code == 2 and "invalid choice: 'resnet'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cifar10.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in MODELS) and "--model" in text
    with pytest.raises(SystemExit):                      # another model's option
        cifar10.parse_args(["--model", "lenet5", "--hidden", "10"])


@pytest.mark.parametrize("milestone", MODELS)
def test_each_model_keeps_the_settings_of_its_recorded_run(milestone, ms):
    """Rerunning the command recorded in results/<model>_cifar10.json (the script of its day,
    e.g. milestones/mlp_cifar10.py, is now cifar10.py --model mlp) gives the recorded
    hyperparameters, epochs, seed, split, parameter count and targets: the same run."""
    cifar10, common = ms("cifar10"), ms("common")
    recorded = json.loads((ROOT / "results" / f"{milestone}_cifar10.json").read_text(encoding="utf-8"))
    _, script, *argv = shlex.split(recorded["command"])
    if script != "milestones/cifar10.py":
        assert script == f"milestones/{milestone}_cifar10.py", script
        argv = ["--model", milestone, *argv]
    args = cifar10.parse_args(argv)
    entry = cifar10.MODELS[milestone]
    model = entry.build_model(**args.build)
    train_images = recorded["data"]["train"]
    steps_per_epoch = -(-train_images // args.batch_size)
    _, _, opt_hyper = common.optimizer_and_schedule(model.parameters(), args, steps_per_epoch)
    hyper = {**args.build, "batch_size": args.batch_size, **opt_hyper, "loss": "CrossEntropyLoss",
             "augmentation": [repr(t) for t in common.augmentation(args)],
             "normalisation": "per-channel mean/std of the training split"}
    assert hyper == recorded["hyperparameters"]
    assert (args.epochs, args.seed, args.train_size) == (recorded["epochs"], recorded["seed"], recorded["data"]["train_subset"])
    assert 50_000 - args.val_size == train_images and recorded["data"]["val"] == args.val_size
    assert model.num_parameters() == recorded["params"] and repr(model) == recorded["architecture"]
    assert args.blas_threads in (recorded["machine"]["blas_threads"], None)
    spec = entry.spec
    assert (spec.name, spec.published, spec.target) == (recorded["milestone"], recorded["published_accuracy"],
                                                        recorded["target_accuracy"])
    assert recorded["budget_seconds"] == (None if spec.budget_minutes is None else 60 * spec.budget_minutes)


def test_in_process_run_returns_the_results(ms, fake_data, tmp_path):
    mod = ms("cifar10")
    result = mod.main(["--model", "lenet5", "--quick", "--no-verify", "--val-size", "40", "--no-progress",
                       "--out-dir", str(tmp_path)])
    saved = json.loads((tmp_path / "lenet5_cifar10_quick.json").read_text())
    assert saved["test_accuracy"] == result["test_accuracy"]
    assert saved["history"] == json.loads(json.dumps(result["history"]))
    assert saved["params"] == 62006


# ---- the models -------------------------------------------------------------------------------
def test_lenet_models_have_the_classic_shapes(ms):
    from tinytorch.core.tensor import Tensor
    x = Tensor(np.zeros((2, 3, 32, 32), dtype=np.float32))
    cifar10 = ms("cifar10")
    lenet1, lenet5 = cifar10.build_lenet1(), cifar10.build_lenet5()
    assert lenet1.num_parameters() == (3 * 25 * 4 + 4) + (4 * 25 * 12 + 12) + (300 * 10 + 10) == 4526
    assert lenet5.num_parameters() == 456 + 2416 + 48120 + 10164 + 850 == 62006
    assert lenet1(x).shape == (2, 10) and lenet5(x).shape == (2, 10)
    for build in (cifar10.build_lenet1, cifar10.build_lenet5):
        assert build("tanh", "avg")(x).shape == (2, 10)


def test_cnn_model_shapes_batchnorm_and_flops(ms):
    from tinytorch.core.normalization import BatchNorm2d
    from tinytorch.core.tensor import Tensor
    cifar10 = ms("cifar10")
    model = cifar10.build_cnn([8, 16, 32], [1, 2, 1], head="max", dropout=0.1)
    x = Tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    assert model(x).shape == (4, 10)
    assert sum(isinstance(m, BatchNorm2d) for m in model.layers) == 4
    expected = 2 * 9 * (32 * 32 * 3 * 8 + 16 * 16 * (8 * 16 + 16 * 16) + 8 * 8 * 16 * 32) + 2 * 32 * 10
    assert cifar10.forward_flops([8, 16, 32], [1, 2, 1]) == expected
    args = cifar10.parse_args(["--model", "cnn", "--widths", "8", "16", "--depths", "2"])
    assert args.depths == [2, 2] and args.build == {"widths": [8, 16], "depths": [2, 2], "head": "avg", "dropout": 0.0}
    with pytest.raises(SystemExit):
        cifar10.parse_args(["--model", "cnn", "--widths", "8", "16", "--depths", "1", "2", "3"])


# ---- common.py ----------------------------------------------------------------------------------
def test_missing_data_ends_with_the_loaders_message_alone(ms, capsys, monkeypatch):
    """Offline, a milestone prints the loader's "put it at ..." message and no traceback."""
    from tinytorch.core.dataloader import DownloadError

    common = ms("common")
    monkeypatch.setattr(sys, "argv", ["cifar10.py"])

    def main():
        raise DownloadError("could not download X. If this machine is offline, put it at /data/x")

    with pytest.raises(SystemExit) as stop:
        common.run_main(main)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == "cifar10.py: could not download X. If this machine is offline, put it at /data/x\n"
    for script in ["cifar10", "compression_cifar10", "tinygpt_shakespeare"]:         # every script ends so
        assert "run_main(main)" in (MILESTONES / f"{script}.py").read_text(encoding="utf-8"), script


def test_a_diverged_training_ends_the_milestone_with_exit_status_3(ms, capsys, monkeypatch):
    """A TrainingDivergedError (NaN/inf, or a finite loss far too high for too long) ends a
    milestone with the error's message, no traceback, and a non-zero status."""
    from tinytorch.core.training import TrainingDivergedError

    common = ms("common")
    monkeypatch.setattr(sys, "argv", ["tinygpt_shakespeare.py"])

    def main():
        raise TrainingDivergedError(1, 20, 1234.5, 10.0, what="loss was above 4 x 4.17 in 20 of the last 20 batches, and")

    with pytest.raises(SystemExit) as stop:
        common.run_main(main)
    assert stop.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("tinygpt_shakespeare.py: training diverged") and "Traceback" not in err


def test_script_exits_non_zero_when_a_finite_loss_diverges(fake_data, tmp_path):
    """The MLP milestone at lr=10 (AdamW, no warm-up, batches of 4: 40 steps on the fake data):
    the loss stays finite but huge, the Trainer stops it, and the script exits with status 3
    without writing results."""
    out = tmp_path / "out"
    env = dict(os.environ, TINYTORCH_DATA=str(fake_data), OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(MILESTONES / "cifar10.py"), "--model", "mlp", "--quick", "--no-verify",
                           "--val-size", "40", "--no-progress", "--out-dir", str(out), "--batch-size", "4",
                           "--lr", "10", "--warmup-epochs", "0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "training diverged: the loss was above" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "mlp_cifar10_quick.json").exists()


def test_parse_args_defaults_quick_and_errors(ms, capsys):
    common = ms("common")
    spec = common.Milestone("x_cifar10", "x_cifar10.py", published=0.5)
    parser = lambda: common.make_parser(spec, "doc", epochs=7, optimizer="sgd", lr=0.1, crop_padding=4)  # noqa: E731
    args = common.parse_args(parser(), [])
    assert (args.epochs, args.optimizer, args.lr, args.crop_padding, args.no_flip) == (7, "sgd", 0.1, 4, False)
    assert args.argv == [] and args.val_size == 5000 and args.train_size is None and not args.no_verify
    quick = common.parse_args(parser(), ["--quick", "--epochs", "9"])
    assert quick.epochs == 1 and quick.argv == ["--quick", "--epochs", "9"]
    for bad in (["--epochs", "0"], ["--lr", "0"], ["--crop-padding", "-1"], ["--train-size", "0"],
                ["--momentum", "0"], ["--val-size", "0"]):
        with pytest.raises(SystemExit):
            common.parse_args(parser(), bad)
        assert "error" in capsys.readouterr().err


def test_command_line_is_quoted_and_relative(ms):
    common = ms("common")
    assert common.command_line("cifar10.py", ["--model", "cnn", "--epochs", "3", "--out-dir", "a b"]) == \
        "python milestones/cifar10.py --model cnn --epochs 3 --out-dir 'a b'"


def test_repo_relative(ms, tmp_path):
    common = ms("common")
    assert common.repo_relative(ROOT / "results" / "cnn_cifar10.json") == "results/cnn_cifar10.json"
    assert common.repo_relative(tmp_path / "x.json") == str((tmp_path / "x.json").resolve())


def test_jsonable_and_write_json(ms, tmp_path):
    common = ms("common")
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), "d": (1, np.int64(2)),
             "e": ROOT / "results", 3: [float("inf"), None, True]}
    assert common.jsonable(value) == {"a": 0.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": "results",
                                      "3": [None, None, True]}
    path = common.write_json(tmp_path / "sub" / "r.json", value)
    assert json.loads(path.read_text())["b"] == [0, 1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]          # no temporary file left


def test_seeded_subset(ms):
    common = ms("common")
    data = list(range(100))
    a, b = common.seeded_subset(data, 10, seed=3), common.seeded_subset(data, 10, seed=3)
    assert isinstance(a, Subset) and len(a) == 10
    assert np.array_equal(a.indices, b.indices) and np.all(np.diff(a.indices) > 0)
    assert not np.array_equal(a.indices, common.seeded_subset(data, 10, seed=4).indices)
    assert common.seeded_subset(data, 100, seed=0) is data and common.seeded_subset(data, 500, seed=0) is data


def test_augmentation_follows_the_options(ms):
    common = ms("common")
    ns = lambda **kw: argparse.Namespace(**{"crop_padding": 0, "no_flip": False, **kw})  # noqa: E731
    assert [type(t) for t in common.augmentation(ns())] == [RandomHorizontalFlip]
    assert common.augmentation(ns(no_flip=True)) == []
    crop, flip = common.augmentation(ns(crop_padding=4))
    assert isinstance(crop, RandomCrop) and crop.padding == 4 and crop.size == (32, 32)
    assert isinstance(flip, RandomHorizontalFlip)


def test_optimizer_and_schedule(ms):
    common = ms("common")
    from tinytorch.core.layers import Dense
    params = Dense(4, 3).parameters()
    base = dict(lr=0.1, weight_decay=5e-4, momentum=0.9, warmup_epochs=1.0, min_lr=1e-4, epochs=3)
    opt, sched, hyper = common.optimizer_and_schedule(params, argparse.Namespace(optimizer="sgd", **base), 10)
    assert isinstance(opt, SGD) and opt.hyper["nesterov"] and opt.hyper["momentum"] == 0.9
    assert (hyper["warmup_steps"], hyper["total_steps"], hyper["optimizer"]) == (10, 30, "SGD")
    assert sched.lr_at(0) == pytest.approx(0.01) and sched.lr_at(9) == pytest.approx(0.1)
    assert sched.lr_at(30) == pytest.approx(1e-4)
    opt, sched, hyper = common.optimizer_and_schedule(params, argparse.Namespace(optimizer="adamw", **base), 10)
    assert isinstance(opt, AdamW) and hyper["optimizer"] == "AdamW" and opt.hyper["weight_decay"] == 5e-4
    one = dict(base, epochs=1, warmup_epochs=5.0)                  # warm-up longer than the run: capped
    assert common.optimizer_and_schedule(params, argparse.Namespace(optimizer="sgd", **one), 4)[2]["warmup_steps"] == 3


def test_cifar10_split_subsets_and_normalisation(ms, fake_data):
    common = ms("common")
    args = argparse.Namespace(data=None, no_verify=True, val_size=50, seed=1, train_size=None, quick=False,
                              batch_size=32, crop_padding=2, no_flip=False)
    data = common.cifar10(args)
    assert data.sizes == {"train": 150, "val": 50, "test": PER_FILE}
    assert data.root == fake_data and not data.verified
    train_idx, val_idx = data.train.dataset.indices, data.val.dataset.indices
    assert len(np.intersect1d(train_idx, val_idx)) == 0 and len(np.union1d(train_idx, val_idx)) == 200
    assert data.augmentation == [repr(RandomCrop(32, padding=2)), repr(RandomHorizontalFlip())]
    images = data.train.dataset.dataset.images[train_idx] / 255.0
    assert np.allclose(data.mean, images.mean(axis=(0, 2, 3)), atol=1e-5)
    assert np.allclose(data.std, images.std(axis=(0, 2, 3)), atol=1e-5)
    x, y = next(iter(data.val))
    assert x.shape == (50, 3, 32, 32) and x.data.dtype == np.float32 and y.shape == (50,)
    assert abs(float(x.data.mean())) < 0.2                           # normalised
    again = common.cifar10(args)
    assert np.array_equal(again.val.dataset.indices, val_idx)         # the split is a function of the seed
    small = common.cifar10(argparse.Namespace(**{**vars(args), "train_size": 20}))
    sub = small.train.dataset                                          # a Subset of the training part
    assert small.sizes["train"] == 20 and set(sub.dataset.indices[sub.indices]) <= set(train_idx.tolist())
    quick = common.cifar10(argparse.Namespace(**{**vars(args), "quick": True}))
    assert quick.sizes == {"train": 150, "val": 50, "test": PER_FILE}     # fewer than QUICK_SIZES: all of it
    describe = data.describe()
    assert describe["train"] == 150 and describe["verified_checksums"] is False and len(describe["mean"]) == 3


def test_cifar10_refuses_an_impossible_split(ms, fake_data):
    common = ms("common")
    args = argparse.Namespace(data=None, no_verify=True, val_size=5000, seed=0, train_size=None, quick=False,
                              batch_size=32, crop_padding=0, no_flip=False)
    with pytest.raises(SystemExit, match="--val-size"):
        common.cifar10(args)


def test_machine_info(ms, monkeypatch):
    common = ms("common")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    info = common.machine_info()
    assert {"python", "numpy", "platform", "cpus"} <= set(info)
    assert info["blas_threads_env"] == {"OPENBLAS_NUM_THREADS": "1", **{v: os.environ[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if v in os.environ}}
    json.dumps(info)


def test_blas_threads_can_be_set_and_read(ms):
    common = ms("common")
    before = common.blas_threads()
    if "openblas" in str(common.numpy_blas().get("name", "")).lower():
        assert before is not None, "numpy's build says OpenBLAS, but its thread count could not be reached"
    if before is None:                                   # numpy built against another BLAS
        assert common.set_blas_threads(1) is None
        return
    try:
        assert common.set_blas_threads(1) == 1
        assert common.machine_info()["blas_threads"] == 1
    finally:
        common.set_blas_threads(before)
    assert common.blas_threads() == before


def test_openblas_is_found_without_proc(ms, monkeypatch):
    """The OpenBLAS lookup asks numpy (its build config, its own binaries): it works where there
    is no /proc, and leaves another BLAS alone."""
    import builtins
    import io

    common = ms("common")
    real_open = builtins.open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc"):
            raise FileNotFoundError(f"no /proc here: {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(io, "open", no_proc)
    common._openblas.cache_clear()
    try:
        if "openblas" in str(common.numpy_blas().get("name", "")).lower():
            assert common.blas_threads() is not None
        monkeypatch.setattr(common, "numpy_blas", lambda: {"name": "accelerate"})
        common._openblas.cache_clear()
        assert common.blas_threads() is None and common.set_blas_threads(1) is None
    finally:
        monkeypatch.undo()
        common._openblas.cache_clear()


def test_conv_milestones_default_to_one_blas_thread(ms):
    parse = ms("cifar10").parse_args
    assert parse(["--model", "cnn"]).blas_threads == 1
    assert parse(["--model", "lenet5"]).blas_threads == 1
    assert parse(["--model", "lenet1", "--blas-threads", "0"]).blas_threads == 0
    assert parse(["--model", "mlp"]).blas_threads is None                  # unchanged: the environment decides


def test_tinygpt_milestone_uses_every_core_only_for_the_long_run(ms):
    script = ms("tinygpt_shakespeare")
    assert script.parse_args([]).blas_threads == 1
    assert script.parse_args(["--quick"]).blas_threads == 1
    assert script.parse_args(["--long"]).blas_threads == (os.cpu_count() or 1)
    assert script.parse_args(["--long", "--blas-threads", "1"]).blas_threads == 1


def test_tinygpt_milestone_runs_end_to_end_with_quick(tmp_path):
    """The main job's script, on a small generated text (no network, no ../shared)."""
    text_dir = tmp_path / "data" / "tinyshakespeare"
    text_dir.mkdir(parents=True)
    verse = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n"
    (text_dir / "input.txt").write_text(verse * 60, encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(MILESTONES / "tinygpt_shakespeare.py"), "--quick", "--no-verify",
                           "--no-progress", "--data", str(tmp_path / "data"), "--out-dir", str(out),
                           "--model-out", str(out / "model.npz"), "--sample-length", "40"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((out / "tinygpt_shakespeare_quick.json").read_text())
    for key in ("val_loss", "train_loss", "iterations", "tokens_seen", "wall_seconds", "params", "seed",
                "command", "sample"):
        assert key in result, key
    assert result["val_loss"] < np.log(result["data"]["vocab_size"]), "it learns something in the smoke run"
    assert (out / "model.npz").exists() and (out / "tinygpt_shakespeare_quick.png").exists()
    # the run folder of module 15: one metrics line per evaluation, the model, the plots, a summary
    from tinytorch.mlops.mlops import list_runs
    (run,) = list_runs(out / "runs")
    assert run.status == "completed" and run.config["kind"] == "quick" and run.meta["seed"] == result["seed"]
    assert [m["val_loss"] for m in run.metrics()] == result["history"]["val_loss"]
    assert [m["step"] for m in run.metrics()][-1] == result["iterations"]
    assert run.summary["val_loss_full"] == result["val_loss"]
    assert (run.checkpoints / "model.npz").exists() and (run.plots / "tinygpt_shakespeare_quick.png").exists()
    assert_git_state(result)


# ---- honest records: the commit and the dirty flag in every results JSON ---------------------------
def assert_git_state(result: dict) -> None:
    """`result` records the commit of this checkout (None without git) and a dirty flag."""
    from tito.gitstate import git_state

    assert {"commit", "dirty"} <= set(result) and isinstance(result["dirty"], bool)
    if git_state(ROOT)["commit"] is None:
        assert result["commit"] is None and result["dirty"] is False
    else:                                           # a real commit of this repository (HEAD may move on)
        assert re.fullmatch(r"[0-9a-f]{40}", result["commit"]), result["commit"]
        kind = subprocess.run(["git", "cat-file", "-t", result["commit"]], cwd=ROOT, capture_output=True, text=True)
        assert kind.stdout.strip() == "commit"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_state_commit_and_dirty_flag(tmp_path, monkeypatch):
    from tito.gitstate import git_state

    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    assert git_state(repo) == {"commit": None, "dirty": False}          # no .git: a student workspace
    _git(repo, "init", "-q")
    assert git_state(repo) == {"commit": None, "dirty": False}          # no commit yet
    (repo / "code.py").write_text("x = 1\n")
    (repo / "results" / "r.json").write_text("{}\n")
    _git(repo, "add", "code.py", "results/r.json")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "results" / "r.json").write_text('{"rerun": true}\n')    # records do not make it dirty
    (repo / "results" / "new.json").write_text("{}\n")
    assert git_state(repo) == {"commit": head, "dirty": False}
    (repo / "untracked.py").write_text("y = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True}
    (repo / "untracked.py").unlink()
    (repo / "code.py").write_text("x = 2\n")
    assert git_state(repo) == {"commit": head, "dirty": True}
    inner = repo / "workspace"                                           # inside a repository, but no .git
    inner.mkdir()
    assert git_state(inner) == {"commit": None, "dirty": False}
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))                # git is not installed
    assert git_state(repo) == {"commit": None, "dirty": False}


def test_milestone_common_records_the_git_state(ms):
    from tito import gitstate

    common = ms("common")
    assert common.git_state is gitstate.git_state                        # one helper, not a copy
    assert_git_state(common.git_state(common.ROOT))


def test_benchmark_results_record_the_git_state(tmp_path):
    import importlib.util

    from tito import gitstate

    spec = importlib.util.spec_from_file_location("bench_common_under_test", ROOT / "benchmarks" / "common.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.git_state is gitstate.git_state
    path = bench.write_results("bench_probe", {"value": 1}, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["value"] == 1 and "machine" in saved and "command" in saved
    assert_git_state(saved)



def test_the_project_has_one_run_class():
    """`Run` means module 15's run folder; the CIFAR-10 milestones' bookkeeping is a `Recorder`."""
    defined = sorted(str(path.relative_to(ROOT)) for folder in ("milestones", "benchmarks", "tito", "tinytorch")
                     for path in (ROOT / folder).rglob("*.py")
                     if re.search(r"^class Run\b", path.read_text(encoding="utf-8"), re.MULTILINE))
    assert defined == ["tinytorch/mlops/mlops.py"], defined


def test_scripts_write_files_through_module_07s_write_atomically():
    """The milestone and benchmark scripts have no atomic writer of their own, and save their
    plots through `tinytorch.core.training.write_atomically` (never half a file)."""
    for path in sorted([*MILESTONES.glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT)
        assert not re.search(r"def \w*atomic\w*\(", source), f"{name} defines its own atomic writer"
        assert "os.replace(" not in source and ".rename(" not in source, f"{name} renames files itself"
        for call in re.findall(r"savefig\(([^,)]*)", source):
            assert call == "f", f"{name}: savefig({call}, ...) writes the plot directly, not via write_atomically"
