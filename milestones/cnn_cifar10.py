"""Milestone: a modern small CNN on CIFAR-10 (Conv2d + BatchNorm2d + ReLU, augmentation).

    python milestones/cnn_cifar10.py                 # the recorded run
    python milestones/cnn_cifar10.py --quick         # smoke test: small subsets, 1 epoch
    python milestones/cnn_cifar10.py --help          # every option

Data: CIFAR-10 from $TINYTORCH_DATA; the 50,000 training images split with a seeded
permutation into 45,000 for training and 5,000 for validation (reported per epoch, used
for no automatic choice); the 10,000 test images evaluated once, at the end, with the
final model. Inputs normalised per channel with the training part's mean and std;
training images randomly shifted by up to 4 pixels (RandomCrop(32, padding=4)) and
randomly flipped left-right.

Model (VGG-style, one stage per width, default 32-64-128-256):

    [Conv2d 3x3 (no bias) -> BatchNorm2d -> ReLU] x depth, then MaxPool2d(2) between stages
    32x32 -> 16x16 -> 8x8 -> 4x4, global average pooling, Dense(256, 10)

Training: SGD with Nesterov momentum, weight decay, a linear warm-up and a cosine decay of
the learning rate to ~0, cross-entropy loss, batch 128.

Writes results/cnn_cifar10.json and results/cnn_cifar10.png.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

import common  # the shared command line, data, optimizer and results (milestones/common.py)
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential
from tinytorch.core.normalization import BatchNorm2d
from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d
from tinytorch.core.tensor import manual_seed

SPEC = common.Milestone("cnn_cifar10", "cnn_cifar10.py", published=0.70, target=0.75, budget_minutes=30)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = common.make_parser(SPEC, __doc__, epochs=12, optimizer="sgd", lr=0.1, weight_decay=5e-4,
                           momentum=0.9, warmup_epochs=1.0, min_lr=1e-4, crop_padding=4, threads=1)
    model = p.add_argument_group("model")
    model.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256],
                       help="channels of each stage; a 2x2 max pool between stages (default 32 64 128 256)")
    model.add_argument("--depths", type=int, nargs="+", default=[1],
                       help="conv layers per stage: one number for every stage, or one per stage (default 1)")
    model.add_argument("--head", choices=["avg", "max"], default="avg", help="global pooling before the classifier")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier (default 0)")
    args = common.parse_args(p, argv)
    if len(args.depths) == 1:
        args.depths = args.depths * len(args.widths)
    if len(args.depths) != len(args.widths) or min(args.widths + args.depths) < 1 or not 0 <= args.dropout < 1:
        p.error("--depths needs one number or one per stage of --widths, all positive; --dropout in [0, 1)")
    if 32 % 2 ** (len(args.widths) - 1):
        p.error("at most 6 stages (each pool halves 32x32)")
    return args


def conv_bn_relu(c_in: int, c_out: int) -> list[Any]:
    """3x3 convolution keeping the size (padding 1), batch norm, ReLU. No conv bias: BN's shift replaces it."""
    return [Conv2d(c_in, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out), ReLU()]


def build_model(widths: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (1, 1, 1, 1),
                head: str = "avg", dropout: float = 0.0) -> Sequential:
    """(N, 3, 32, 32) -> (N, 10): stages of conv-BN-ReLU, max pools between them, global pooling, Dense."""
    layers: list[Any] = []
    c = 3
    for stage, (width, depth) in enumerate(zip(widths, depths)):
        if stage > 0:
            layers.append(MaxPool2d(2))
        for _ in range(depth):
            layers += conv_bn_relu(c, width)
            c = width
    side = 32 // 2 ** (len(widths) - 1)                       # spatial size of the last stage
    layers += [AvgPool2d(side) if head == "avg" else MaxPool2d(side), Flatten()]
    if dropout > 0:
        layers.append(Dropout(dropout))
    layers.append(Dense(c, 10))
    return Sequential(layers)


def forward_flops(widths: Sequence[int], depths: Sequence[int]) -> int:
    """Multiply-adds x 2 of the convolutions and the classifier for one image (forward)."""
    flops, c, side = 0, 3, 32
    for stage, (width, depth) in enumerate(zip(widths, depths)):
        if stage > 0:
            side //= 2
        for _ in range(depth):
            flops += 2 * side * side * 9 * c * width
            c = width
    return flops + 2 * c * 10


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    recorder = common.Recorder(SPEC, args)

    # ---- data: 45k/5k split, test set; random crops (padding 4) and flips for training
    data = common.cifar10(args, eval_batch_size=500)
    print(data.summary())

    # ---- model
    manual_seed(args.seed)
    model = build_model(args.widths, args.depths, args.head, args.dropout)
    flops = forward_flops(args.widths, args.depths)
    print(model)

    # ---- training: SGD + Nesterov (or AdamW), warm-up + cosine, cross-entropy
    trainer, test, opt_hyper = common.fit_and_test(recorder, model, data, args,   # the test set once, final model
                                                   detail=f", {flops / 1e6:.0f} MFLOP per image forward")

    # ---- results
    hyper = {"widths": args.widths, "depths": args.depths, "head": args.head, "dropout": args.dropout,
             "batch_size": args.batch_size, **opt_hyper, "loss": "CrossEntropyLoss",
             "augmentation": data.augmentation, "normalisation": "per-channel mean/std of the training split"}
    return recorder.finish(trainer, test, model, data, hyper, extra={"forward_mflops_per_image": round(flops / 1e6, 1)})


if __name__ == "__main__":
    common.run_main(main)
