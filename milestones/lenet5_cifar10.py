"""Milestone: LeNet-5 (LeCun et al., 1998) on CIFAR-10, with TinyTorch's Conv2d and MaxPool2d.

    python milestones/lenet5_cifar10.py              # the recorded run
    python milestones/lenet5_cifar10.py --quick      # smoke test: small subsets, 1 epoch
    python milestones/lenet5_cifar10.py --help       # every option

Data: CIFAR-10 from $TINYTORCH_DATA; the 50,000 training images split with a seeded
permutation into 45,000 for training and 5,000 for validation (reported per epoch, used
for no automatic choice); the 10,000 test images evaluated once, at the end, with the
final model. Inputs normalised per channel with the training part's mean and std;
training images randomly flipped left-right and shifted by up to 2 pixels.

Model: LeNet-5 with ReLU and max pooling (the original used scaled tanh and trainable
average pooling; --activation tanh --pool avg is closer to it), on 3x32x32 inputs:

    Conv2d(3, 6, 5)  -> ReLU -> MaxPool2d(2)     32x32 -> 28x28 -> 14x14
    Conv2d(6, 16, 5) -> ReLU -> MaxPool2d(2)     14x14 -> 10x10 -> 5x5
    Flatten -> Dense(400, 120) -> ReLU -> Dense(120, 84) -> ReLU -> Dense(84, 10)

Training: AdamW, a linear warm-up and a cosine decay of the learning rate, cross-entropy
loss, batch 128. Target: at least the course's published 47.5 % test accuracy, aiming at
60 %, within 15 minutes on 2 cores.

Writes results/lenet5_cifar10.json and results/lenet5_cifar10.png.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

import common  # the shared command line, data, optimizer and results (milestones/common.py)
from tinytorch.core.activations import ReLU, Tanh
from tinytorch.core.layers import Dense, Flatten, Sequential
from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d
from tinytorch.core.tensor import manual_seed

SPEC = common.Milestone("lenet5_cifar10", "lenet5_cifar10.py", published=0.475, target=0.60, budget_minutes=15)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = common.make_parser(SPEC, __doc__, epochs=40, optimizer="adamw", lr=5e-3, weight_decay=0.05,
                           warmup_epochs=1.0, min_lr=1e-5, crop_padding=2, threads=1)
    model = p.add_argument_group("model")
    model.add_argument("--activation", choices=["relu", "tanh"], default="relu", help="default relu")
    model.add_argument("--pool", choices=["max", "avg"], default="max", help="default max")
    common.add_save_model_option(p)
    return common.parse_args(p, argv)


def build_model(activation: str = "relu", pool: str = "max") -> Sequential:
    """LeNet-5 for (N, 3, 32, 32) -> (N, 10) logits."""
    act = {"relu": ReLU, "tanh": Tanh}[activation]
    pool2 = {"max": MaxPool2d, "avg": AvgPool2d}[pool]
    return Sequential([
        Conv2d(3, 6, 5), act(), pool2(2),              # (N, 6, 14, 14)
        Conv2d(6, 16, 5), act(), pool2(2),             # (N, 16, 5, 5)
        Flatten(),                                     # (N, 400)
        Dense(16 * 5 * 5, 120), act(),
        Dense(120, 84), act(),
        Dense(84, 10),
    ])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recorder = common.Recorder(SPEC, args)

    # ---- data: 45k/5k split, test set; per-channel normalisation, flips and small shifts
    data = common.cifar10(args)
    print(data.summary())

    # ---- model
    manual_seed(args.seed)
    model = build_model(args.activation, args.pool)
    print(model)

    # ---- training
    trainer, test, opt_hyper = common.fit_and_test(recorder, model, data, args)   # the test set once, final model

    # ---- results
    build = {"activation": args.activation, "pool": args.pool}   # build_model(**build)
    hyper = {**build, "batch_size": args.batch_size, **opt_hyper, "loss": "CrossEntropyLoss",
             "augmentation": data.augmentation, "normalisation": "per-channel mean/std of the training split"}
    return recorder.finish(trainer, test, model, data, hyper, build=build)


if __name__ == "__main__":
    common.run_main(main)
