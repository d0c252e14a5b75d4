"""`tito bench [--quick] [--only NAME ...] [--out DIR]`: the benchmark suite and its report."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tito.command import Command
from tito.course import Course

#: What the suite can run (benchmarks/suite.py checks the names too).
BENCHMARKS: dict[str, str] = {
    "autograd": "Tensor ops: an elementwise chain and a 1024^2 matmul, forward + backward (bench_autograd.py)",
    "mlp": "one MLP training step against hand-written numpy (bench_mlp_step.py)",
    "lenet5": "one LeNet-5 training step against its products and PyTorch (bench_lenet5_step.py)",
    "tinygpt": "one TinyGPT training step and generation with/without KV cache (bench_tinygpt.py)",
    "kernels": "module 13's kernels (bench_kernels.py, when it exists)",
    "vs_torch": "TinyGPT and LeNet-5 steps, plain and module 13's fast_model, against PyTorch side by side "
                "(alternating, 1 and 2 BLAS threads; bench_vs_torch.py)",
    "generate": "TinyGPT generation, batch 1 against PyTorch KV-cached and 32 prompts batched (bench_generate.py)",
    "profile": "per-op profiles of the MLP, TinyGPT and LeNet-5 steps (plain and fast_model), and the roofline",
}

DESCRIPTION = """\
Run the project's benchmark suite (benchmarks/suite.py) and write one report: report.md
with every step as a ratio to the numpy FLOP lower bound (its product FLOPs at this
machine's measured matmul peak) and to its products timed alone, to hand-written numpy and
to PyTorch's CPU build where measured; the machine's facts (BLAS library and threads, load
average, peak, bandwidth); the scripts' own tables; per-op profiles; PNG plots; report.json.
The scripts' JSON results go into the report folder too (results/ is left alone).

The full suite takes about 5-8 minutes on 2 cores: run it on an otherwise idle machine.

Benchmarks (for --only):
""" + "\n".join(f"  {name:9s} {what}" for name, what in BENCHMARKS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke test (< 1 minute)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BENCHMARKS),
                        help="run only these benchmarks")
    parser.add_argument("--out", type=Path, metavar="DIR", help="the report folder (default results/bench_report)")


def run(args: argparse.Namespace, course: Course) -> int:
    suite = course.root / "benchmarks" / "suite.py"
    if not suite.exists():
        print(f"tito bench: {suite.relative_to(course.root)} does not exist", file=sys.stderr)
        return 2
    out = (args.out if args.out is not None else course.root / "results" / "bench_report").resolve()
    cmd = [sys.executable, str(suite), "--out", str(out), *(["--quick"] if args.quick else []),
           *(["--only", *args.only] if args.only else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(course.root), os.environ.get("PYTHONPATH")])))
    return subprocess.call(cmd, cwd=course.root, env=env)


COMMAND = Command(
    name="bench",
    help="run the benchmark suite and write a report (results/bench_report/)",
    description=DESCRIPTION,
    run=run,
    add_arguments=add_arguments,
)
