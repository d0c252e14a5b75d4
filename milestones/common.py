"""Shared parts of the CIFAR-10 milestones: the command line, the data, the optimizer and its
schedule, and the results (JSON, plot, machine facts, summary line).

A milestone (milestones/cifar10.py, one per --model) reads top to bottom as data, model,
training, results:

    spec = Milestone("lenet5_cifar10", "cifar10.py", published=0.475, target=0.60, budget_minutes=15)
    args = parse_args(make_parser(spec, __doc__, epochs=40, lr=5e-3, ...), argv)
    recorder = Recorder(spec, args)                  # clock, output folder, BLAS threads, machine facts
    data = cifar10(args)                             # loaders over the 45k/5k split and the test set
    manual_seed(args.seed); model = build_model()    # model
    trainer, test, opt_hyper = fit_and_test(recorder, model, data, args)   # AdamW/SGD + schedule, Trainer,
                                                     # fit; the test set once, with the final model
    recorder.finish(trainer, test, model, data, hyperparameters={...})   # results/NAME.json and .png

Paths written into the results are relative to the repository when they lie inside it. Every
results JSON records `git_state(ROOT)` as "commit" and "dirty", taken when the run starts.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import functools
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                      # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import tinytorch  # noqa: E402,F401  (switches autograd on)
from tinytorch.core.dataloader import (  # noqa: E402
    CIFAR10, DATA_ENV_VAR, ChecksumError, Compose, CorruptFileError, DataLoader, DatasetError, Normalize, RandomCrop,
    RandomHorizontalFlip, Subset,
    ToFloat, channel_stats, data_dir, train_val_split)
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import SGD, AdamW, CosineWarmupLR  # noqa: E402
from tinytorch.core.training import Trainer, TrainingDivergedError, write_atomically  # noqa: E402
from tito.gitstate import git_state  # noqa: E402  (the commit and dirty flag in every results JSON)


def fast_paths() -> tuple[type, bool]:
    """Module 13's opt-in fast paths, for the milestones: (the AdamW class to use, whether
    glibc's allocator now keeps freed memory). FusedAdamW gives the same numbers as module
    06's textbook AdamW up to rounding (the recorded runs used the in-place one: bit for
    bit). A package exported only up to module 08 (a student's, say) has no module 13: the
    milestones then run module 06's AdamW and glibc's default allocator, and say so."""
    import importlib.util
    if importlib.util.find_spec("tinytorch.core.kernels") is None:
        print("note: module 13 (kernels) is not exported: training with module 06's AdamW and the default allocator")
        return AdamW, False
    from tinytorch.core.kernels import FusedAdamW, tune_allocator
    return FusedAdamW, bool(tune_allocator()["applied"])

#: --quick: this many training, validation and test images (fewer if the data has fewer), 1 epoch.
QUICK_SIZES = {"train": 2000, "val": 500, "test": 1000}
#: environment variables that set the BLAS thread count; recorded with every run.
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: OpenBLAS's thread-count functions under the names of its builds (numpy's wheels: scipy_openblas64).
_BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
                 "openblas_set_num_threads")
_BLAS_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
                 "openblas_get_num_threads")


@dataclasses.dataclass(frozen=True)
class Milestone:
    """What a milestone is measured against.

    name: stem of the result files (results/NAME.json, .png); script: its file in milestones/
    (the command recorded with the results is `python milestones/SCRIPT ARGS`);
    published: the course's published test accuracy for it (to reach); target: what the
    default configuration aims at; budget_minutes: the wall time it should fit in on 2 cores.
    """
    name: str
    script: str
    published: float
    target: float | None = None
    budget_minutes: float | None = None


# ---- command line --------------------------------------------------------------------------------
def make_parser(spec: Milestone, doc: str | None, *, epochs: int, batch_size: int = 128,
                optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.05,
                momentum: float = 0.9, warmup_epochs: float = 1.0, min_lr: float = 1e-5,
                crop_padding: int = 0, flip: bool = True, val_size: int = 5000,
                threads: int | None = None) -> argparse.ArgumentParser:
    """The options every CIFAR-10 milestone has, with this milestone's defaults.

    Scripts add their model's options to the returned parser, then call `parse_args`.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Writes results/{spec.name}.json and results/{spec.name}.png "
                                       f"(with --quick: {spec.name}_quick.* in a temporary directory).")
    run = p.add_argument_group("run")
    run.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    run.add_argument("--seed", type=int, default=0,
                     help="seeds the split, the weights, dropout, shuffling and augmentation (default 0)")
    run.add_argument("--quick", action="store_true",
                     help=f"smoke test: {QUICK_SIZES['train']} training, {QUICK_SIZES['val']} validation and "
                          f"{QUICK_SIZES['test']} test images (at most), 1 epoch, results to a temporary directory")
    run.add_argument("--out-dir", type=Path, default=None,
                     help="where to write the .json and .png (default results/; with --quick a temporary directory)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--blas-threads", type=int, default=threads,
                     help="threads of numpy's OpenBLAS for this run (0 or unset: as the environment says, "
                          "e.g. OPENBLAS_NUM_THREADS, else every core; " +
                          (f"default {threads}: on a shared machine more threads can be many times slower)"
                           if threads else "the default)"))

    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None,
                      help=f"directory holding cifar-10-batches-bin/ (default: ${DATA_ENV_VAR} or the cache)")
    data.add_argument("--no-verify", action="store_true",
                      help="skip the files' MD5 and record-count checks (for generated test data)")
    data.add_argument("--val-size", type=int, default=val_size,
                      help=f"validation images carved out of the 50,000 training images (default {val_size})")
    data.add_argument("--train-size", type=int, default=None,
                      help="train on a seeded random subset of this many images of the training part "
                           "(for exploration; default: all of it)")
    data.add_argument("--batch-size", type=int, default=batch_size, help=f"training batch size (default {batch_size})")
    data.add_argument("--crop-padding", type=int, default=crop_padding,
                      help=f"random shifts of up to this many pixels (RandomCrop with zero padding; 0: off; "
                           f"default {crop_padding})")
    data.add_argument("--no-flip", action="store_true", default=not flip,
                      help="no random horizontal flips" + ("" if flip else " (the default here)"))
    if not flip:
        data.add_argument("--flip", dest="no_flip", action="store_false", help="random horizontal flips")

    opt = p.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=["adamw", "sgd"], default=optimizer,
                     help=f"AdamW, or SGD with Nesterov momentum (default {optimizer})")
    opt.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    opt.add_argument("--weight-decay", type=float, default=weight_decay,
                     help=f"weight decay: decoupled for AdamW, L2 for SGD (default {weight_decay:g})")
    opt.add_argument("--momentum", type=float, default=momentum, help=f"SGD's Nesterov momentum (default {momentum:g})")
    opt.add_argument("--warmup-epochs", type=float, default=warmup_epochs,
                     help=f"linear warm-up length in epochs (default {warmup_epochs:g})")
    opt.add_argument("--min-lr", type=float, default=min_lr,
                     help=f"learning rate at the end of the cosine decay (default {min_lr:g})")
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, apply --quick (1 epoch) and check the common options."""
    args = parser.parse_args(None if argv is None else list(argv))
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.epochs = 1
    problems = []
    if args.epochs < 1 or args.batch_size < 1:
        problems.append("--epochs and --batch-size must be positive")
    if args.val_size < 1:
        problems.append("--val-size must be positive")
    if args.train_size is not None and args.train_size < 1:
        problems.append("--train-size must be positive")
    if args.crop_padding < 0:
        problems.append("--crop-padding must be >= 0")
    if args.blas_threads is not None and args.blas_threads < 0:
        problems.append("--blas-threads must be >= 0")
    if not args.lr > 0 or args.weight_decay < 0 or not 0 <= args.momentum < 1 or args.warmup_epochs < 0:
        problems.append("--lr must be positive, --weight-decay and --warmup-epochs >= 0, --momentum in [0, 1)")
    if args.optimizer == "sgd" and args.momentum == 0:
        problems.append("--optimizer sgd uses Nesterov momentum: --momentum must be > 0")
    if problems:
        parser.error("; ".join(problems))
    return args


def run_main(main: Any) -> None:
    """Run a milestone's `main()`; a data set that cannot be had (offline, a bad checksum, a
    corrupt file) ends it with the loader's own message, which says what to do, and no
    traceback (exit status 2); a training run that diverged (the Trainer's
    TrainingDivergedError: a NaN/inf loss, or a finite loss that stayed far too high) ends it
    with the error's message (where, what, what to try) and exit status 3, never 0."""
    try:
        main()
    except DatasetError as err:
        print(f"{Path(sys.argv[0]).name}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TrainingDivergedError as err:
        print(f"{Path(sys.argv[0]).name}: {err}", file=sys.stderr)
        raise SystemExit(3) from None


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that reproduces a run, as typed from the repository root."""
    return " ".join(shlex.quote(a) for a in ["python", f"milestones/{script}", *argv])


def numpy_blas() -> dict[str, Any]:
    """numpy's own record of the BLAS it was built against (`np.show_config(mode="dicts")`:
    name, version, ...); empty when this numpy does not say (before 1.25, or no build info)."""
    try:
        config = np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.25.0" else {}
    except Exception:                                  # noqa: BLE001 (a numpy without build info)
        config = {}
    return dict(config.get("Build Dependencies", {}).get("blas", {}))


def _numpy_binaries() -> list[Path]:
    """numpy's compiled core (linked against its BLAS), then the BLAS libraries that numpy's
    wheels ship beside the package (numpy.libs/ on Linux and Windows, numpy/.dylibs/ on macOS)."""
    core = getattr(np, "_core", None) or getattr(np, "core")
    files = [Path(core._multiarray_umath.__file__)]
    package = Path(np.__file__).parent
    for folder in (package.parent / "numpy.libs", package / ".dylibs"):
        if folder.is_dir():
            files += sorted(f for f in folder.iterdir() if "openblas" in f.name.lower())
    return files


@functools.lru_cache(maxsize=1)
def _openblas() -> Any:
    """numpy's OpenBLAS, as a ctypes handle that reaches its thread-count functions; None when
    numpy's build says its BLAS is not an OpenBLAS, or none of numpy's binaries exports them.

    Loading a library that numpy has already loaded gives the same library, not a copy. On
    Linux and macOS a symbol is looked up in the library and in those it depends on, so numpy's
    core module reaches the OpenBLAS it links; on Windows the bundled DLL itself is found."""
    name = str(numpy_blas().get("name", "openblas"))   # unknown: try anyway
    if "openblas" not in name.lower():
        return None
    for path in _numpy_binaries():
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        if any(hasattr(lib, setter) for setter in _BLAS_SETTERS):
            return lib
    return None


def blas_threads() -> int | None:
    """How many threads OpenBLAS uses for a matrix product now (None when unknown)."""
    lib = _openblas()
    getter = next((getattr(lib, n) for n in _BLAS_GETTERS if lib is not None and hasattr(lib, n)), None)
    return int(getter()) if getter is not None else None


def set_blas_threads(n: int) -> int | None:
    """Make OpenBLAS use `n` threads from now on; returns the count now in use (None when numpy's
    BLAS is not an OpenBLAS this can reach; nothing changes then).

    Why: OpenBLAS's threads wait for each other at every product. On a machine where other jobs
    keep a core busy, a thread that has lost its core stalls the product, and a layer that issues
    many small products (Conv2d's forward multiplies image by image) gets 5-10x slower with 2
    threads than with 1. One thread is the robust choice for the small products of CNNs.
    """
    lib = _openblas()
    setter = next((getattr(lib, name) for name in _BLAS_SETTERS if lib is not None and hasattr(lib, name)), None)
    if setter is None:
        return None
    setter(int(n))
    return blas_threads()


# ---- data ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class CifarData:
    """The three loaders of a milestone and what describes them."""
    train: DataLoader
    val: DataLoader
    test: DataLoader
    mean: np.ndarray                  # (3,) per-channel mean of the training part, in [0, 1] units
    std: np.ndarray                   # (3,) per-channel std
    root: Path                        # the directory holding cifar-10-batches-bin/
    load_seconds: float
    augmentation: list[str]           # repr of each training transform before normalisation
    verified: bool                    # were the files' MD5s checked

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train.dataset), "val": len(self.val.dataset), "test": len(self.test.dataset)}

    def describe(self) -> dict[str, Any]:
        """The "data" entry of the results."""
        return {"root": repo_relative(self.root), **self.sizes, "verified_checksums": self.verified,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    def summary(self) -> str:
        s = self.sizes
        return (f"CIFAR-10 from {self.root} ({self.load_seconds:.1f} s): {s['train']} train / {s['val']} validation / "
                f"{s['test']} test images\nchannel mean {[round(float(m), 4) for m in self.mean]}, "
                f"std {[round(float(v), 4) for v in self.std]}; augmentation: {', '.join(self.augmentation) or 'none'}")


def seeded_subset(ds: Any, n: int, seed: int) -> Any:
    """A seeded random subset of min(n, len(ds)) samples, in memory order (ds itself if n >= len)."""
    if n >= len(ds):
        return ds
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Subset(ds, pick)


def augmentation(args: argparse.Namespace) -> list[Any]:
    """The random training transforms the options ask for (before ToFloat and Normalize)."""
    out: list[Any] = []
    if args.crop_padding:
        out.append(RandomCrop(32, padding=args.crop_padding))
    if not args.no_flip:
        out.append(RandomHorizontalFlip())
    return out


def cifar10(args: argparse.Namespace, eval_batch_size: int = 1000) -> CifarData:
    """Loaders for the training part and the validation part of a seeded split of the 50,000
    training images, and for the 10,000 test images; all normalised per channel with the
    training part's mean and std, the training part also augmented (`augmentation(args)`)."""
    root = args.data if args.data is not None else data_dir()
    verify = not args.no_verify
    extra = {} if verify else {"verify": False, "records_per_file": None}
    t0 = time.perf_counter()
    try:
        full = CIFAR10(root, train=True, **extra)
        test = CIFAR10(root, train=False, **extra)
    except (ChecksumError, CorruptFileError) as err:
        raise SystemExit(f"{err}\n(For generated test data that is not the real CIFAR-10, pass --no-verify.)") from err
    load_s = time.perf_counter() - t0
    if not 0 < args.val_size < len(full):
        raise SystemExit(f"--val-size {args.val_size}: the data has {len(full)} training images; the validation "
                         f"part must be smaller than that")
    train, val = train_val_split(full, args.val_size, seed=args.seed)
    if args.train_size is not None:
        train = seeded_subset(train, args.train_size, args.seed)
    if args.quick:
        train = seeded_subset(train, QUICK_SIZES["train"], args.seed)
        val = seeded_subset(val, QUICK_SIZES["val"], args.seed)
        test = seeded_subset(test, QUICK_SIZES["test"], args.seed)
    mean, std = channel_stats(train)
    normalise = [ToFloat(), Normalize(mean, std)]
    augment = augmentation(args)
    eval_batch = max(args.batch_size, eval_batch_size)
    return CifarData(
        train=DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                         transform=Compose(augment + normalise)),
        val=DataLoader(val, batch_size=eval_batch, transform=Compose(normalise)),
        test=DataLoader(test, batch_size=eval_batch, transform=Compose(normalise)),
        mean=mean, std=std, root=Path(root), load_seconds=load_s,
        augmentation=[repr(t) for t in augment], verified=verify)


# ---- optimizer -----------------------------------------------------------------------------------
def optimizer_and_schedule(params: list, args: argparse.Namespace,
                           steps_per_epoch: int) -> tuple[Any, CosineWarmupLR, dict[str, Any]]:
    """AdamW (decoupled weight decay) or SGD (Nesterov momentum, L2 weight decay), with a linear
    warm-up of `--warmup-epochs` and a cosine decay to `--min-lr` at the last step.

    Returns (optimizer, scheduler, the hyperparameters to record)."""
    total = steps_per_epoch * args.epochs
    warmup = min(int(round(args.warmup_epochs * steps_per_epoch)), total - 1)
    min_lr = min(args.min_lr, args.lr)
    adamw, _ = fast_paths()   # also tunes the allocator, as module 01 did at import before
    if args.optimizer == "sgd":
        optimizer = SGD(params, lr=args.lr, momentum=args.momentum, nesterov=True, weight_decay=args.weight_decay)
        hyper = {"optimizer": "SGD", "nesterov": True, "momentum": args.momentum}
    else:
        optimizer = adamw(params, lr=args.lr, weight_decay=args.weight_decay)
        hyper = {"optimizer": "AdamW"}
    scheduler = CosineWarmupLR(optimizer, warmup_steps=warmup, total_steps=total, min_lr=min_lr)
    hyper.update({"lr": args.lr, "weight_decay": args.weight_decay, "schedule": "CosineWarmupLR",
                  "warmup_steps": warmup, "total_steps": total, "min_lr": min_lr})
    return optimizer, scheduler, hyper


def describe_optimizer(hyper: dict[str, Any]) -> str:
    """One line for the console."""
    name = hyper["optimizer"] + (f" (Nesterov momentum {hyper['momentum']:g})" if hyper["optimizer"] == "SGD" else "")
    return (f"{name}, lr {hyper['lr']:g} (warm-up {hyper['warmup_steps']} steps, cosine to {hyper['min_lr']:g} "
            f"at step {hyper['total_steps']}), weight decay {hyper['weight_decay']:g}")


# ---- saved models (--save-model) -----------------------------------------------------------------
#: the `kind` of a trained milestone model file (checked when it is loaded)
MODEL_KIND = "milestone-model"


def add_save_model_option(parser: argparse.ArgumentParser) -> None:
    """`--save-model PATH`: after training, save the final model there (default: off)."""
    parser.add_argument("--save-model", type=Path, default=None, metavar="PATH",
                        help="after training, save the final model to PATH (an .npz file with the weights and, as "
                             "JSON, how to rebuild the model and normalise its inputs; results/models/ is the place, "
                             "git ignores it; default: not saved)")


def save_trained_model(path: str | os.PathLike, model: Any, spec: Milestone, build: dict[str, Any],
                       data: CifarData, test: dict[str, float], command: str) -> Path:
    """Write `model`'s state dict and what rebuilds it (`build`: the keyword arguments of the script's
    `build_model`), the input normalisation and the test accuracy to `path`, atomically, with
    `save_npz_checkpoint` (module 07): an .npz read back with allow_pickle=False."""
    from tinytorch.core.training import save_npz_checkpoint
    meta = {"milestone": spec.name, "script": spec.script, "build_model": build,
            "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
            "test_accuracy": float(test["accuracy"]), "test_images": data.sizes["test"],
            "params": int(model.num_parameters()), "command": command}
    out = save_npz_checkpoint(path, model.state_dict(), meta, kind=MODEL_KIND)
    print(f"saved the trained model to {repo_relative(out)}")
    return out


def load_trained_model(path: str | os.PathLike, build_model: Any) -> tuple[Any, dict[str, Any]]:
    """(model, meta) from a `save_trained_model` file: `build_model(**meta["build_model"])` with the
    saved weights loaded (CheckpointError for a missing, corrupt or foreign file; StateDictError
    when the weights do not fit the rebuilt model)."""
    from tinytorch.core.training import load_npz_checkpoint
    arrays, meta = load_npz_checkpoint(path, kind=MODEL_KIND)
    model = build_model(**meta["build_model"])
    model.load_state_dict(arrays)
    return model, meta


# ---- results -------------------------------------------------------------------------------------
def repo_relative(path: str | os.PathLike) -> str:
    """`path` relative to the repository root when it lies inside it, else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """What the run is measured on, including how busy the machine is (load average now)."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
        "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        if model:
            info["cpu_model"] = model
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = load_average()
    blas = numpy_blas()
    if blas:
        info["blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    threads = {v: os.environ[v] for v in THREAD_VARS if v in os.environ}
    info["blas_threads_env"] = threads or "unset"
    info["blas_threads"] = blas_threads()
    return info


def jsonable(obj: Any) -> Any:
    """History and metrics as plain JSON values (dicts, lists, finite floats, ints, strings, None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, Path):
        return repo_relative(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None                                   # JSON has no NaN or infinity
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    for method in ("to_dict", "as_dict", "state_dict"):
        if callable(getattr(obj, method, None)):
            return jsonable(getattr(obj, method)())
    if hasattr(obj, "__dict__"):
        return jsonable(vars(obj))
    return str(obj)


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON atomically (module 07's write_atomically)."""
    text = json.dumps(jsonable(payload), indent=2) + "\n"
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def plot_results(trainer: Any, path: Path, title: str, test_accuracy: float | None = None,
                 published: float | None = None) -> Path:
    """The Trainer's loss and accuracy curves (train and validation per epoch), with the final
    test accuracy and the published figure drawn as horizontal lines on the accuracy panel;
    written as PNG atomically (module 07's write_atomically)."""
    fig = trainer.plot_history()
    acc_axes = [ax for ax in fig.axes if ax.get_title() == "accuracy"]
    if acc_axes:
        ax = acc_axes[0]
        if test_accuracy is not None:
            ax.axhline(test_accuracy, color="C2", linestyle=":", label=f"test {test_accuracy:.1%}")
        if published is not None:
            ax.axhline(published, color="0.5", linestyle="--", linewidth=1, label=f"published {published:.1%}")
        ax.legend()
    fig.suptitle(title, fontsize=10)
    return write_atomically(path, lambda f: fig.savefig(f, dpi=100, format="png"))


def fit_and_test(recorder: Recorder, model: Any, data: CifarData, args: argparse.Namespace,
                 detail: str = "") -> tuple[Any, dict[str, float], dict[str, Any]]:
    """The training of every CIFAR-10 milestone: the optimizer and schedule of `args`, a Trainer
    (cross-entropy, accuracy), `args.epochs` epochs on the training part (the validation part is
    only reported), then the test set once, with the final epoch's model. Prints the parameter
    count (and `detail`) first. Returns (trainer, test metrics, optimizer hyperparameters)."""
    optimizer, scheduler, opt_hyper = optimizer_and_schedule(model.parameters(), args, len(data.train))
    print(f"{model.num_parameters():,} parameters{detail}; {args.epochs} epoch(s) of {len(data.train)} steps, "
          f"{describe_optimizer(opt_hyper)}")
    trainer = Trainer(model, optimizer, CrossEntropyLoss(), metrics=("accuracy",), scheduler=scheduler,
                      progress=not args.no_progress)
    with recorder.timed("train"):
        trainer.fit(data.train, val_data=data.val, epochs=args.epochs)
    with recorder.timed("test"):
        test = trainer.evaluate(data.test)
    return trainer, test, opt_hyper


class Recorder:
    """The bookkeeping of one CIFAR-10 milestone run: the clock, the output folder, the machine
    facts, timed phases, and at the end the results files and the summary line.

    (Not a run folder: the one `Run` of the project is module 15's `tinytorch.mlops.mlops.Run`,
    which the TinyGPT milestone records its runs in. A recorder writes the results JSON and
    plot under results/, with modules 01-08 alone.)"""

    def __init__(self, spec: Milestone, args: argparse.Namespace):
        self.started = time.perf_counter()
        self.spec, self.args = spec, args
        self.command = command_line(spec.script, args.argv)
        if args.out_dir is not None:
            self.out_dir = Path(args.out_dir)
        elif args.quick:
            self.out_dir = Path(tempfile.mkdtemp(prefix=f"tinytorch-{spec.name}-quick-"))
        else:
            self.out_dir = ROOT / "results"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stem = f"{spec.name}_quick" if args.quick else spec.name
        if args.blas_threads:
            if set_blas_threads(args.blas_threads) is None:
                print(f"note: --blas-threads {args.blas_threads} has no effect here (numpy's BLAS is not a "
                      f"reachable OpenBLAS); set OPENBLAS_NUM_THREADS or OMP_NUM_THREADS instead")
        self.machine = machine_info()
        self.git = git_state(ROOT)                 # the code that runs: its commit, uncommitted changes
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """`with recorder.timed("train"): ...` records the wall seconds of the block as seconds[what]."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[what] = time.perf_counter() - t0

    def finish(self, trainer: Any, test: dict[str, float], model: Any, data: CifarData,
               hyperparameters: dict[str, Any], extra: dict[str, Any] | None = None,
               build: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write <out_dir>/<stem>.png and <stem>.json, print the verdict; returns the results.
        With --save-model, also save the model and `build` (the keyword arguments of the
        script's build_model, which rebuild it) for module 12."""
        spec, args = self.spec, self.args
        extra = dict(extra or {})
        if getattr(args, "save_model", None) is not None:
            if build is None:
                raise ValueError(f"{spec.script}: --save-model needs the build_model arguments (finish(build=...))")
            saved = save_trained_model(args.save_model, model, spec, build, data, test, self.command)
            extra["saved_model"] = repo_relative(saved)
        accuracy = float(test["accuracy"])
        epochs = int(trainer.epoch)
        train_s, test_s = self.seconds.get("train", float("nan")), self.seconds.get("test", float("nan"))
        png = plot_results(trainer, self.out_dir / f"{self.stem}.png",
                           f"{spec.name}{' (quick)' if args.quick else ''}: test accuracy {accuracy:.2%} after "
                           f"{epochs} epochs on {data.sizes['train']:,} training images", accuracy,
                           None if args.quick else spec.published)
        wall = time.perf_counter() - self.started
        self.machine["load_average_at_end"] = load_average()
        budget_s = None if spec.budget_minutes is None else 60 * spec.budget_minutes
        result: dict[str, Any] = {
            "milestone": spec.name,
            "test_accuracy": accuracy,
            "test_loss": float(test["loss"]),
            "test_images": data.sizes["test"],
            "published_accuracy": spec.published,
            "beats_published": accuracy >= spec.published,
            "target_accuracy": spec.target,
            "reaches_target": None if spec.target is None else accuracy >= spec.target,
            "epochs": epochs,
            "wall_seconds": round(wall, 1),
            "train_seconds": round(train_s, 1),
            "seconds_per_epoch": round(train_s / max(epochs, 1), 1),
            "test_seconds": round(test_s, 2),
            "budget_seconds": budget_s,
            "within_budget": None if budget_s is None else wall <= budget_s,
            "seed": args.seed,
            "quick": args.quick,
            "command": self.command,
            **self.git,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hyperparameters": hyperparameters,
            "params": int(model.num_parameters()),
            "architecture": repr(model),
            "data": {**data.describe(), "val_split_seed": args.seed,
                     "train_subset": args.train_size, "augmentation": data.augmentation},
            "history": trainer.history,
            "machine": self.machine,
            "plot": repo_relative(png),
            **(extra or {}),
        }
        path = write_json(self.out_dir / f"{self.stem}.json", result)
        if args.quick or args.train_size is not None:
            verdict = "a run on subsets: not comparable with"
        else:
            verdict = "reaches" if result["beats_published"] else "does NOT reach"
        target = "" if spec.target is None else f", target {spec.target:.0%}"
        budget = "" if budget_s is None else f" (budget {spec.budget_minutes:g} min)"
        print(f"\ntest accuracy {accuracy:.2%} on {data.sizes['test']} images ({verdict} the published "
              f"{spec.published:.1%}{target}); {wall / 60:.1f} min wall time{budget}, "
              f"{train_s / max(epochs, 1):.0f} s per epoch")
        print(f"wrote {repo_relative(path)} and {repo_relative(png)}")
        return result
