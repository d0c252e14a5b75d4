"""Milestones on CIFAR-10: four classifiers built with TinyTorch, one script; `--model` picks one.

    python milestones/cifar10.py --model lenet5            # the recorded run of LeNet-5
    python milestones/cifar10.py --model lenet5 --quick    # smoke test: small subsets, 1 epoch
    python milestones/cifar10.py --model lenet5 --help     # every option, with this model's defaults

  --model   needs modules   the model                                          recorded run
  mlp       01-08           Flatten -> [Dense -> ReLU -> Dropout] x 2 (1024,   15 epochs, AdamW lr 1e-3, flips
                            512) -> Dense(10)
  lenet1    01-09           LeNet-1 (LeCun et al., 1989): 4,526 weights        20 epochs, AdamW lr 1e-2, flips
  lenet5    01-09           LeNet-5 (LeCun et al., 1998): 62,006 weights       40 epochs, AdamW lr 5e-3, flips
                                                                               and shifts of <= 2 px
  cnn       01-10           [Conv2d 3x3 -> BatchNorm2d -> ReLU] stages         12 epochs, SGD + Nesterov lr 0.1,
                            32-64-128-256, global average pool, Dense(10)      crops (padding 4) and flips

Data: CIFAR-10 from $TINYTORCH_DATA (or the per-user cache; downloaded when missing and the
machine is online). The 50,000 training images are split, with a permutation seeded by
--seed, into 45,000 for training and 5,000 for validation; the validation part guides
nothing automatically, it is only reported per epoch. The 10,000 test images are evaluated
exactly once, at the end, with the final epoch's model: no model selection on the test set.
Inputs are normalised per channel with the training part's mean and std.

The models, for (N, 3, 32, 32) images and (N, 10) logits:

  mlp      Flatten -> [Dense -> ReLU/GELU -> Dropout] per --hidden width -> Dense(10)
  lenet1   Conv2d(3, 4, 5) -> ReLU -> MaxPool2d(2)      32x32 -> 28x28 -> 14x14
           Conv2d(4, 12, 5) -> ReLU -> MaxPool2d(2)     14x14 -> 10x10 -> 5x5
           Flatten -> Dense(300, 10)
  lenet5   Conv2d(3, 6, 5) -> ReLU -> MaxPool2d(2)      32x32 -> 28x28 -> 14x14
           Conv2d(6, 16, 5) -> ReLU -> MaxPool2d(2)     14x14 -> 10x10 -> 5x5
           Flatten -> Dense(400, 120) -> ReLU -> Dense(120, 84) -> ReLU -> Dense(84, 10)
  cnn      [Conv2d 3x3 (no bias) -> BatchNorm2d -> ReLU] x depth per stage, MaxPool2d(2)
           between stages (32x32 -> 16x16 -> 8x8 -> 4x4), global average pooling, Dense(256, 10)

The LeNets use ReLU and max pooling (the originals read 1x28x28 digits with tanh and average
pooling: --activation tanh --pool avg is closer to them). Training: the optimizer with a
linear warm-up and a cosine decay of the learning rate, cross-entropy loss, batch 128.

Writes results/<model>_cifar10.json (test accuracy, per-epoch history, hyperparameters,
timing, machine, command line, git commit) and results/<model>_cifar10.png (loss and
accuracy curves). With --quick, the files go to a temporary directory unless --out-dir is
given.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, Sequence

import common  # the shared command line, data, optimizer and results (milestones/common.py)
from tinytorch.core.activations import GELU, ReLU, Tanh
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential
from tinytorch.core.tensor import manual_seed


# ---- the models (each imports the modules it needs: the MLP runs with modules 01-08 alone) ---------
def build_mlp(hidden: Sequence[int], activation: str = "relu", dropout: float = 0.1) -> Sequential:
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


def build_lenet1(activation: str = "relu", pool: str = "max") -> Sequential:
    """LeNet-1 for (N, 3, 32, 32) -> (N, 10) logits."""
    from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d
    act = {"relu": ReLU, "tanh": Tanh}[activation]
    pool2 = {"max": MaxPool2d, "avg": AvgPool2d}[pool]
    return Sequential([
        Conv2d(3, 4, 5), act(), pool2(2),              # (N, 4, 14, 14)
        Conv2d(4, 12, 5), act(), pool2(2),             # (N, 12, 5, 5)
        Flatten(),                                     # (N, 300)
        Dense(12 * 5 * 5, 10),
    ])


def build_lenet5(activation: str = "relu", pool: str = "max") -> Sequential:
    """LeNet-5 for (N, 3, 32, 32) -> (N, 10) logits."""
    from tinytorch.core.spatial import AvgPool2d, Conv2d, MaxPool2d
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


def conv_bn_relu(c_in: int, c_out: int) -> list[Any]:
    """3x3 convolution keeping the size (padding 1), batch norm, ReLU. No conv bias: BN's shift replaces it."""
    from tinytorch.core.normalization import BatchNorm2d
    from tinytorch.core.spatial import Conv2d
    return [Conv2d(c_in, c_out, 3, padding=1, bias=False), BatchNorm2d(c_out), ReLU()]


def build_cnn(widths: Sequence[int] = (32, 64, 128, 256), depths: Sequence[int] = (1, 1, 1, 1),
              head: str = "avg", dropout: float = 0.0) -> Sequential:
    """(N, 3, 32, 32) -> (N, 10): stages of conv-BN-ReLU, max pools between them, global pooling, Dense."""
    from tinytorch.core.spatial import AvgPool2d, MaxPool2d
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
    """Multiply-adds x 2 of the CNN's convolutions and its classifier for one image (forward)."""
    flops, c, side = 0, 3, 32
    for stage, (width, depth) in enumerate(zip(widths, depths)):
        if stage > 0:
            side //= 2
        for _ in range(depth):
            flops += 2 * side * side * 9 * c * width
            c = width
    return flops + 2 * c * 10


# ---- each model's options: add them to the parser; read build_*'s arguments back (checked) -------
def mlp_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--hidden", type=int, nargs="+", default=[1024, 512],
                       help="hidden layer widths (default 1024 512)")
    group.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    group.add_argument("--dropout", type=float, default=0.1, help="dropout after each hidden layer (default 0.1)")


def mlp_build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if not 0 <= args.dropout < 1 or min(args.hidden) < 1:
        parser.error("--dropout must lie in [0, 1) and --hidden widths must be positive")
    return {"hidden": args.hidden, "activation": args.activation, "dropout": args.dropout}


def lenet_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--activation", choices=["relu", "tanh"], default="relu", help="default relu")
    group.add_argument("--pool", choices=["max", "avg"], default="max", help="default max")


def lenet_build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    return {"activation": args.activation, "pool": args.pool}


def cnn_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256],
                       help="channels of each stage; a 2x2 max pool between stages (default 32 64 128 256)")
    group.add_argument("--depths", type=int, nargs="+", default=[1],
                       help="conv layers per stage: one number for every stage, or one per stage (default 1)")
    group.add_argument("--head", choices=["avg", "max"], default="avg", help="global pooling before the classifier")
    group.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier (default 0)")


def cnn_build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if len(args.depths) == 1:
        args.depths = args.depths * len(args.widths)
    if len(args.depths) != len(args.widths) or min(args.widths + args.depths) < 1 or not 0 <= args.dropout < 1:
        parser.error("--depths needs one number or one per stage of --widths, all positive; --dropout in [0, 1)")
    if 32 % 2 ** (len(args.widths) - 1):
        parser.error("at most 6 stages (each pool halves 32x32)")
    return {"widths": args.widths, "depths": args.depths, "head": args.head, "dropout": args.dropout}


@dataclasses.dataclass(frozen=True)
class CifarModel:
    """One CIFAR-10 milestone.

    spec: the results' name and what they are measured against; defaults: `common.make_parser`'s
    keyword arguments, i.e. the recorded run's training; add_options / build_args: the model's
    command-line options, and `build_model`'s keyword arguments read back from them (checked);
    eval_batch_size: at least this many images per validation and test batch."""
    spec: common.Milestone
    defaults: dict[str, Any]
    add_options: Callable[[argparse._ArgumentGroup], None]
    build_args: Callable[[argparse.Namespace, argparse.ArgumentParser], dict[str, Any]]
    build_model: Callable[..., Sequential]
    eval_batch_size: int = 1000


SCRIPT = "cifar10.py"
#: --model NAME -> the milestone; each keeps the defaults of its recorded run in results/NAME_cifar10.json
MODELS: dict[str, CifarModel] = {
    "mlp": CifarModel(
        common.Milestone("mlp_cifar10", SCRIPT, published=0.527, budget_minutes=10),
        dict(epochs=15, optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=1.0, min_lr=1e-5,
             crop_padding=0),
        mlp_options, mlp_build, build_mlp),
    "lenet1": CifarModel(
        common.Milestone("lenet1_cifar10", SCRIPT, published=0.394, target=0.50, budget_minutes=10),
        dict(epochs=20, optimizer="adamw", lr=1e-2, weight_decay=0.01, warmup_epochs=1.0, min_lr=1e-5,
             crop_padding=0, threads=1),
        lenet_options, lenet_build, build_lenet1),
    "lenet5": CifarModel(
        common.Milestone("lenet5_cifar10", SCRIPT, published=0.475, target=0.60, budget_minutes=15),
        dict(epochs=40, optimizer="adamw", lr=5e-3, weight_decay=0.05, warmup_epochs=1.0, min_lr=1e-5,
             crop_padding=2, threads=1),
        lenet_options, lenet_build, build_lenet5),
    "cnn": CifarModel(
        common.Milestone("cnn_cifar10", SCRIPT, published=0.70, target=0.75, budget_minutes=30),
        dict(epochs=12, optimizer="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9, warmup_epochs=1.0, min_lr=1e-4,
             crop_padding=4, threads=1),
        cnn_options, cnn_build, build_cnn, eval_batch_size=500),
}


# ---- command line ------------------------------------------------------------------------------
def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=list(MODELS), required=True,
                        help="which milestone: " + ", ".join(MODELS) + " (the options below and their defaults "
                             "depend on it: add --help after --model NAME)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options of the model that `--model` names, with its recorded run's defaults; `build`
    holds its `build_model` keyword arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pick = argparse.ArgumentParser(add_help=False)
    pick.add_argument("--model", choices=list(MODELS))
    chosen, _ = pick.parse_known_args(argv)
    if chosen.model is None:                   # --help or a missing --model: the general usage
        general = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_model_option(general)
        general.parse_args(argv)               # prints the help, or stops: --model is required
        general.error("--model is required")
    entry = MODELS[chosen.model]
    parser = common.make_parser(entry.spec, __doc__, **entry.defaults)
    _add_model_option(parser)
    entry.add_options(parser.add_argument_group(f"model ({chosen.model})"))
    common.add_save_model_option(parser)
    args = common.parse_args(parser, argv)
    args.build = entry.build_args(args, parser)
    return args


# ---- the run -----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    entry = MODELS[args.model]
    recorder = common.Recorder(entry.spec, args)

    # ---- data: 45k/5k split of the training images, the test set; normalisation, augmentation
    data = common.cifar10(args, eval_batch_size=entry.eval_batch_size)
    print(data.summary())

    # ---- model
    manual_seed(args.seed)
    model = entry.build_model(**args.build)
    print(model)
    extra, detail = {}, ""
    if args.model == "cnn":                    # the CNN's cost per image, recorded with its results
        flops = forward_flops(args.build["widths"], args.build["depths"])
        extra["forward_mflops_per_image"] = round(flops / 1e6, 1)
        detail = f", {flops / 1e6:.0f} MFLOP per image forward"

    # ---- training: the optimizer, warm-up + cosine, cross-entropy; the test set once, final model
    trainer, test, opt_hyper = common.fit_and_test(recorder, model, data, args, detail=detail)

    # ---- results
    hyper = {**args.build, "batch_size": args.batch_size, **opt_hyper, "loss": "CrossEntropyLoss",
             "augmentation": data.augmentation, "normalisation": "per-channel mean/std of the training split"}
    return recorder.finish(trainer, test, model, data, hyper, extra=extra, build=args.build)


if __name__ == "__main__":
    common.run_main(main)
