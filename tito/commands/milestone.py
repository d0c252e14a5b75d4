"""`tito milestone NAME [-- ARGS]`: run one of the course's milestone trainings."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tito.command import Command
from tito.course import Course

#: name -> (script under milestones/ and its first arguments, what it does). The scripts write results/.
MILESTONES: dict[str, tuple[list[str], str]] = {
    "mlp": (["cifar10.py", "--model", "mlp"], "an MLP (Dense + activations) on full CIFAR-10"),
    "lenet1": (["cifar10.py", "--model", "lenet1"], "a LeNet-1-style CNN on CIFAR-10"),
    "lenet5": (["cifar10.py", "--model", "lenet5"], "LeNet-5 on CIFAR-10"),
    "cnn": (["cifar10.py", "--model", "cnn"], "a modern small CNN with BatchNorm and augmentation on CIFAR-10"),
    "tinygpt": (["tinygpt_shakespeare.py"], "TinyGPT on Tiny Shakespeare, then a sample"),
    "compression": (["compression_cifar10.py"], "module 12: int8 and 80%-sparse MLP and LeNet-5, accuracy against size on disk"),
}

DESCRIPTION = """\
Run a milestone: a full training run on real data that reproduces one of the course's
headline results, with a progress bar. Each writes results/<name>.json (accuracy or loss,
epochs, wall time, seed, the command) and a plot. Arguments after the name go to the script
(`tito milestone mlp --help` lists them). Data comes from $TINYTORCH_DATA (default
~/.cache/tinytorch), downloaded on first use.

Milestones:
""" + "\n".join(f"  {name:12s} {what}" for name, (_, what) in MILESTONES.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(MILESTONES), help="which milestone to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER,
                        help="passed to the milestone script (e.g. --long, --epochs 5, --help)")


def run(args: argparse.Namespace, course: Course) -> int:
    name, *first_args = MILESTONES[args.name][0]
    script = course.root / "milestones" / name
    if not script.exists():
        print(f"tito milestone: {args.name} is not available yet ({script.relative_to(course.root)} "
              f"does not exist)", file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(course.root), os.environ.get("PYTHONPATH")])))
    return subprocess.call([sys.executable, str(script), *first_args, *args.script_args, *args.passthrough],
                           cwd=course.root, env=env)


COMMAND = Command(
    name="milestone",
    help="run a milestone training (mlp, lenet1, lenet5, cnn, tinygpt, compression)",
    description=DESCRIPTION,
    run=run,
    add_arguments=add_arguments,
    passthrough=True,
)
