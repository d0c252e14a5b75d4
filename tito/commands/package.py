"""`tito package WEIGHTS.npz --out DIR --name NAME --version V [--text FILE]`: make a TinyGPT model package."""

from __future__ import annotations

import argparse
import math
import sys
import zipfile
from pathlib import Path

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Wrap a TinyGPT saved with `TinyGPT.save` (e.g. results/tinygpt/tinygpt_shakespeare.npz,
written by `tito milestone tinygpt`) into a model package of module 15 that `tito serve`
can serve: a folder with manifest.json (name, version, kind "tinygpt", the model's
configuration, metrics, the input vocabulary, a sha256 for every file) and weights.npz.

--text FILE adds the character statistics of the training text (stats.npz), which the
server's /drift endpoint compares with incoming prompts. --metric NAME=VALUE (repeatable)
records a measured number in the manifest, e.g. --metric val_loss=1.785. A Sequential
classifier is packaged from Python with tinytorch.mlops.mlops.save_package; the TinyGPT
adapter (the "tinygpt" ModelKind) is tito/gpt_package.py."""


def _metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"a metric is NAME=NUMBER, got {text!r}")
    return name, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", type=Path, help="a TinyGPT file written by TinyGPT.save")
    parser.add_argument("--out", type=Path, required=True, help="the package folder to create")
    parser.add_argument("--name", required=True, help="package name (letters, digits, '_', '.', '-')")
    parser.add_argument("--version", required=True, help="package version, e.g. 1.0.0")
    parser.add_argument("--text", type=Path, help="the training text, for drift statistics")
    parser.add_argument("--metric", type=_metric, action="append", default=[], metavar="NAME=VALUE",
                        help="a measured metric to record (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package folder")


def run(args: argparse.Namespace, course: Course) -> int:
    from tinytorch.core.training import CheckpointError
    from tinytorch.mlops.mlops import PackageError, load_package, npz_headers
    from tinytorch.tinygpt import TinyGPT
    from tito.gpt_package import SERVE_KINDS, check_weights, package_tinygpt

    try:
        if zipfile.is_zipfile(args.weights):        # sizes checked before a model of the file's config is built
            npz_headers(args.weights)
            check_weights(args.weights, str(args.weights))
        model = TinyGPT.load(args.weights)
        text = args.text.read_text(encoding="utf-8") if args.text is not None else None
        path = package_tinygpt(model, args.out, name=args.name, version=args.version, text=text,
                               config={"source": str(args.weights)}, metrics=dict(args.metric),
                               overwrite=args.overwrite)
        package = load_package(path, kinds=SERVE_KINDS)   # check what was written
    except (CheckpointError, PackageError, ValueError, OSError) as err:
        print(f"tito package: error: {err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"tito package: error: {args.weights} asks for more memory than this machine has", file=sys.stderr)
        return 2
    files = ", ".join(f"{n} ({e['bytes']} bytes)" for n, e in package.manifest["files"].items())
    print(f"packaged {package.name} {package.version} (tinygpt, {len(package.input_spec['vocabulary'])} "
          f"characters) at {path}: {files}")
    print(f"serve it with: tito serve {path}")
    return 0


COMMAND = Command(
    name="package",
    help="package a trained TinyGPT for `tito serve` (module 15)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
