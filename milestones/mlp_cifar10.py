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
from typing import Any, Sequence

import common  # the shared command line, data, optimizer and results (milestones/common.py)
from tinytorch.core.activations import GELU, ReLU
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential
from tinytorch.core.tensor import manual_seed

SPEC = common.Milestone("mlp_cifar10", "mlp_cifar10.py", published=0.527, budget_minutes=10)
PUBLISHED_ACCURACY = SPEC.published          # the course's published figure for this milestone
QUICK_SIZES = common.QUICK_SIZES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = common.make_parser(SPEC, __doc__, epochs=15, optimizer="adamw", lr=1e-3, weight_decay=0.05,
                           warmup_epochs=1.0, min_lr=1e-5, crop_padding=0)
    model = p.add_argument_group("model")
    model.add_argument("--hidden", type=int, nargs="+", default=[1024, 512], help="hidden layer widths (default 1024 512)")
    model.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    model.add_argument("--dropout", type=float, default=0.1, help="dropout after each hidden layer (default 0.1)")
    common.add_save_model_option(p)
    args = common.parse_args(p, argv)
    if not 0 <= args.dropout < 1 or min(args.hidden) < 1:
        p.error("--dropout must lie in [0, 1) and --hidden widths must be positive")
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recorder = common.Recorder(SPEC, args)

    # ---- data: 45k/5k split of the training images, the test set; per-channel normalisation
    data = common.cifar10(args)
    print(data.summary())

    # ---- model
    manual_seed(args.seed)
    model = build_model(args.hidden, args.activation, args.dropout)
    print(model)

    # ---- training: AdamW, warm-up + cosine, cross-entropy
    trainer, test, opt_hyper = common.fit_and_test(recorder, model, data, args)   # the test set once, final model

    # ---- results
    build = {"hidden": args.hidden, "activation": args.activation, "dropout": args.dropout}   # build_model(**build)
    hyper = {**build, "batch_size": args.batch_size, **opt_hyper, "loss": "CrossEntropyLoss",
             "augmentation": data.augmentation, "normalisation": "per-channel mean/std of the training split"}
    return recorder.finish(trainer, test, model, data, hyper, build=build)


if __name__ == "__main__":
    common.run_main(main)
