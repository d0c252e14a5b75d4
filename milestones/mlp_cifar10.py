"""Milestone 1: a multilayer perceptron on CIFAR-10, built only from TinyTorch's Dense layers.

    python milestones/mlp_cifar10.py                 # the recorded run (about 15 epochs)
    python milestones/mlp_cifar10.py --quick         # smoke test: small subsets, 1 epoch
    python milestones/mlp_cifar10.py --help

Data: CIFAR-10 from $TINYTORCH_DATA (or the per-user cache; downloaded when missing and
the machine is online). The 50,000 training images are split, with a seeded permutation,
into a training part and a validation part (45,000 / 5,000 by default); the validation
part guides nothing automatically, it is only reported per epoch. The 10,000 test images
are evaluated exactly once, at the end, with the final epoch's model: no model selection
on the test set.

Model: Flatten -> [Dense -> ReLU/GELU -> Dropout] x len(hidden) -> Dense(10); inputs
normalised per channel with the mean and std of the training part; training images
randomly flipped (and, with --crop-padding > 0, randomly shifted). AdamW with a linear
warm-up and cosine decay of the learning rate, cross-entropy loss, batch 128.

Writes results/mlp_cifar10.json (test accuracy, per-epoch history, hyperparameters,
timing, machine, command line) and results/mlp_cifar10.png (loss and accuracy curves).
With --quick, the files go to a temporary directory unless --out-dir is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                      # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import tinytorch  # noqa: E402,F401  (switches autograd on)
from tinytorch.core.activations import GELU, ReLU  # noqa: E402
from tinytorch.core.dataloader import (  # noqa: E402
    CIFAR10, Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip, Subset, ToFloat,
    channel_stats, data_dir, train_val_split)
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential  # noqa: E402
from tinytorch.core.losses import CrossEntropyLoss  # noqa: E402
from tinytorch.core.optimizers import AdamW, CosineWarmupLR  # noqa: E402
from tinytorch.core.tensor import manual_seed  # noqa: E402
from tinytorch.core.training import Trainer  # noqa: E402

NAME = "mlp_cifar10"
PUBLISHED_ACCURACY = 0.527          # the course's published figure for this milestone
QUICK_SIZES = {"train": 2000, "val": 500, "test": 1000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the weights, dropout, shuffling and augmentation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, nargs="+", default=[1024, 512], help="hidden layer widths (default 1024 512)")
    p.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout after each hidden layer (default 0.1)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW's decoupled weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up length in epochs (default 1)")
    p.add_argument("--min-lr", type=float, default=1e-5, help="learning rate at the end of the cosine (default 1e-5)")
    p.add_argument("--val-size", type=int, default=5000, help="validation images carved out of the 50,000 (default 5000)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument("--crop-padding", type=int, default=0,
                   help="random shifts of up to this many pixels (RandomCrop with padding; default 0: off)")
    p.add_argument("--data", type=Path, default=None, help="directory holding cifar-10-batches-bin/ (default: $TINYTORCH_DATA or the cache)")
    p.add_argument("--out-dir", type=Path, default=None, help="where to write the .json and .png (default results/)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK_SIZES['train']} training, {QUICK_SIZES['val']} validation and "
                        f"{QUICK_SIZES['test']} test images, 1 epoch, results to a temporary directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = 1
    if args.epochs < 1 or args.batch_size < 1 or not 0 <= args.dropout < 1 or args.crop_padding < 0:
        p.error("--epochs and --batch-size must be positive, --dropout in [0, 1), --crop-padding >= 0")
    return args


def build_model(hidden: list[int], activation: str = "relu", dropout: float = 0.1) -> Sequential:
    """Flatten -> [Dense -> activation -> Dropout] per hidden width -> Dense(10): (N, 3, 32, 32) -> (N, 10)."""
    act = {"relu": ReLU, "gelu": GELU}[activation]
    layers: list[Any] = [Flatten()]
    width = 3 * 32 * 32
    for h in hidden:
        layers += [Dense(width, h), act()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = h
    layers.append(Dense(width, 10))
    return Sequential(layers)


def _head(ds: Any, n: int, seed: int) -> Subset:
    """A seeded random subset of n samples (for --quick)."""
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    return Subset(ds, pick)


def make_data(args: argparse.Namespace) -> dict[str, Any]:
    """The three loaders, the normalisation statistics and the split sizes."""
    root = args.data if args.data is not None else data_dir()
    t0 = time.perf_counter()
    full = CIFAR10(root, train=True)
    test = CIFAR10(root, train=False)
    load_s = time.perf_counter() - t0
    train, val = train_val_split(full, args.val_size, seed=args.seed)
    if args.quick:
        train, val = _head(train, QUICK_SIZES["train"], args.seed), _head(val, QUICK_SIZES["val"], args.seed)
        test = _head(test, QUICK_SIZES["test"], args.seed)
    mean, std = channel_stats(train)
    normalise = [ToFloat(), Normalize(mean, std)]
    augment: list[Any] = []
    if args.crop_padding:
        augment.append(RandomCrop(32, padding=args.crop_padding))
    if not args.no_flip:
        augment.append(RandomHorizontalFlip())
    eval_batch = max(args.batch_size, 1000)
    return {
        "root": str(root), "load_seconds": load_s, "mean": mean, "std": std,
        "train": DataLoader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                            transform=Compose(augment + normalise)),
        "val": DataLoader(val, batch_size=eval_batch, transform=Compose(normalise)),
        "test": DataLoader(test, batch_size=eval_batch, transform=Compose(normalise)),
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "augmentation": [repr(t) for t in augment],
    }


def machine_info() -> dict[str, Any]:
    """What the run was measured on, including how busy the machine was."""
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
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    config = np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.25.0" else {}
    blas = config.get("Build Dependencies", {}).get("blas", {})
    if blas:
        info["blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    return info


def jsonable(obj: Any) -> Any:
    """History and metrics as plain JSON values (dicts, lists, floats, ints, strings)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    args = parse_args(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "milestones/mlp_cifar10.py", *(sys.argv[1:] if argv is None else argv)])
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="tinytorch-mlp-quick-")) if args.quick else ROOT / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()

    data = make_data(args)
    sizes = data["sizes"]
    print(f"CIFAR-10 from {data['root']} ({data['load_seconds']:.1f} s): {sizes['train']} train / "
          f"{sizes['val']} validation / {sizes['test']} test images")
    print(f"channel mean {[round(float(m), 4) for m in data['mean']]}, "
          f"std {[round(float(v), 4) for v in data['std']]}; "
          f"augmentation: {', '.join(data['augmentation']) or 'none'}")

    manual_seed(args.seed)
    model = build_model(args.hidden, args.activation, args.dropout)
    params = model.num_parameters()
    steps_per_epoch = len(data["train"])
    total_steps = steps_per_epoch * args.epochs
    warmup = min(int(round(args.warmup_epochs * steps_per_epoch)), total_steps - 1)
    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = CosineWarmupLR(optimizer, warmup_steps=warmup, total_steps=total_steps,
                               min_lr=min(args.min_lr, args.lr))
    print(model)
    print(f"{params:,} parameters; {args.epochs} epoch(s) of {steps_per_epoch} steps, AdamW lr {args.lr} "
          f"(warm-up {warmup} steps, cosine to {args.min_lr}), weight decay {args.weight_decay}")

    trainer = Trainer(model, optimizer, CrossEntropyLoss(), metrics=("accuracy",), scheduler=scheduler,
                      progress=not args.no_progress)
    t_train = time.perf_counter()
    history = trainer.fit(data["train"], val_data=data["val"], epochs=args.epochs)
    train_seconds = time.perf_counter() - t_train

    t_test = time.perf_counter()
    test = trainer.evaluate(data["test"])         # once, with the final epoch's model
    test_seconds = time.perf_counter() - t_test
    accuracy = float(test["accuracy"])

    stem = f"{NAME}_quick" if args.quick else NAME
    png = out_dir / f"{stem}.png"
    trainer.plot_history(png)
    wall = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "milestone": NAME,
        "test_accuracy": accuracy,
        "test_loss": float(test["loss"]),
        "test_images": sizes["test"],
        "published_accuracy": PUBLISHED_ACCURACY,
        "beats_published": accuracy >= PUBLISHED_ACCURACY,
        "epochs": args.epochs,
        "wall_seconds": round(wall, 1),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / args.epochs, 1),
        "test_seconds": round(test_seconds, 2),
        "seed": args.seed,
        "quick": args.quick,
        "command": command,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hyperparameters": {
            "hidden": args.hidden, "activation": args.activation, "dropout": args.dropout,
            "batch_size": args.batch_size, "optimizer": "AdamW", "lr": args.lr,
            "weight_decay": args.weight_decay, "schedule": "CosineWarmupLR", "warmup_steps": warmup,
            "total_steps": total_steps, "min_lr": min(args.min_lr, args.lr), "loss": "CrossEntropyLoss",
            "augmentation": data["augmentation"], "normalisation": "per-channel mean/std of the training split",
        },
        "params": params,
        "architecture": repr(model),
        "data": {"root": data["root"], **sizes, "val_split_seed": args.seed,
                 "mean": np.asarray(data["mean"]).tolist(), "std": np.asarray(data["std"]).tolist()},
        "history": jsonable(history),
        "machine": machine,
        "plot": str(png),
    }
    path = out_dir / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    if args.quick:
        verdict = "a smoke test on subsets: not comparable with"
    else:
        verdict = "reaches" if result["beats_published"] else "does NOT reach"
    print(f"\ntest accuracy {accuracy:.2%} on {sizes['test']} images ({verdict} the published "
          f"{PUBLISHED_ACCURACY:.1%}); {wall / 60:.1f} min wall time, {train_seconds / args.epochs:.0f} s per epoch")
    print(f"wrote {path} and {png}")
    return result


if __name__ == "__main__":
    main()
