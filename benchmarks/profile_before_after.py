"""Where the time of a fast training step goes at two commits: per-op profiles, taken in turn.

    python benchmarks/profile_before_after.py --before 2d197ba     # writes results/bench_report/profile_before_after.json
    python benchmarks/profile_before_after.py --before 2d197ba --only lenet5 --rounds 3 --out /tmp/pba

The `before` commit is checked out into a temporary git worktree (removed at the end). Each
round profiles the step once in a fresh process running that tree's code and once in a
fresh process running this tree's, one after the other (which goes first alternates from
round to round): this machine's speed drifts by a
third from minute to minute, and taking the two in turn, round after round, lets the drift
hit both alike (profiles taken in separate runs of `tito bench` minutes apart are not
comparable op by op). A profile is module 14's `OpProfiler` over STEPS steps of the
`fast_model` step that `bench_vs_torch.py` builds (each tree builds its own), on one BLAS
thread with the allocator tuned, after WARMUP untimed steps.

Reported per model: for each op (and the engine, the Python outside the ops, and the whole
profiled step), the median over the rounds of its milliseconds per step before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ("lenet5", "tinygpt")
WARMUP, STEPS = 5, 10


# ---- one profile, in a child process running a given tree's code ----------------------------------
def child(tree: Path, model: str, steps: int, quick: bool) -> dict:
    """Profile `model`'s fast step with the code of `tree`: {op: ms per step, ...}."""
    sys.path[:] = [str(tree / "benchmarks"), str(tree)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
    import bench_vs_torch                                      # the tree's own step builders
    from tinytorch.bench.benchmarking import OpProfiler, set_blas_threads
    from tinytorch.core.kernels import tune_allocator
    tune_allocator()
    set_blas_threads(1)
    if model == "lenet5":
        step = bench_vs_torch.lenet5_step(8 if quick else 64, True)
    else:
        cfg = bench_vs_torch.QUICK_GPT if quick else dict(bench_vs_torch.bench_tinygpt.DEFAULT)
        step = bench_vs_torch.tinygpt_step(cfg, True)
    for _ in range(WARMUP):
        step()
    with OpProfiler() as prof:
        for _ in range(steps):
            step()
    ops = {s.name: s.total_s * 1e3 / steps for s in prof.rows()}
    return {"ops": ops, "engine": prof.engine_overhead_s * 1e3 / steps, "outside ops": prof.other_s * 1e3 / steps,
            "step": prof.wall_s * 1e3 / steps, "tinytorch": str(Path(sys.modules["tinytorch"].__file__).parent)}


def run_child(tree: Path, model: str, steps: int, quick: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree), "--only", model,
               "--steps", str(steps)] + (["--quick"] if quick else [])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        raise RuntimeError(f"profiling {model} in {tree} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["tinytorch"]).resolve() != (tree / "tinytorch").resolve():   # the tree's code, not another's
        raise RuntimeError(f"the child in {tree} imported tinytorch from {result['tinytorch']}")
    return result


# ---- the comparison --------------------------------------------------------------------------------
def medians(profiles: list[dict]) -> dict[str, float]:
    """Median over the rounds of each op's (and each total's) ms per step; an op missing from a
    round counts as 0 there."""
    names = {name for p in profiles for name in p["ops"]}
    out = {name: statistics.median(p["ops"].get(name, 0.0) for p in profiles) for name in names}
    for key in ("engine", "outside ops", "step"):
        out[f"({key})"] = statistics.median(p[key] for p in profiles)
    return out


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="the commit to compare with (any git revision)")
    parser.add_argument("--only", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5, help="profiles per tree and model (default 5)")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"profiled steps per profile (default {STEPS})")
    parser.add_argument("--quick", action="store_true", help="small models, 1 round (smoke test, writes nothing)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/")
    parser.add_argument("--child", metavar="TREE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.only[0], args.steps, args.quick)))
        return
    if not args.before:
        parser.error("--before REV is needed: the commit whose step to compare with this tree's")
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    before = git("rev-parse", "--verify", f"{args.before}^{{commit}}")
    rounds = 1 if args.quick else args.rounds
    scratch = Path(tempfile.mkdtemp(prefix="tinytorch-before-"))
    tree = scratch / "tree"
    git("worktree", "add", "--detach", str(tree), before)
    try:
        if not (tree / "benchmarks" / "bench_vs_torch.py").exists():
            raise SystemExit(f"{before[:7]} has no benchmarks/bench_vs_torch.py: nothing to build its fast step with")
        results: dict = {}
        for model in args.only:
            runs: dict[str, list[dict]] = {"before": [], "after": []}
            for r in range(rounds):
                order = (("before", tree), ("after", ROOT))
                for side, where in order if r % 2 == 0 else order[::-1]:   # neither always goes first
                    runs[side].append(run_child(where, model, args.steps, args.quick))
                print(f"  {model}: round {r + 1} of {rounds}", flush=True)
            results[model] = {side: medians(p) for side, p in runs.items()}
            results[model]["profiles"] = {side: [{k: v for k, v in p.items() if k != "tinytorch"} for p in ps]
                                          for side, ps in runs.items()}
    finally:
        git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)

    from common import table, write_results                   # this tree's helpers (after the children)
    for model, res in results.items():
        b, a = res["before"], res["after"]
        names = sorted((n for n in b.keys() | a.keys() if not n.startswith("(")), key=lambda n: -max(b.get(n, 0), a.get(n, 0)))
        rows = [[n, f"{b.get(n, 0):.2f}", f"{a.get(n, 0):.2f}", f"{a.get(n, 0) - b.get(n, 0):+.2f}"]
                for n in names + ["(engine)", "(outside ops)", "(step)"]]
        print(f"\n{model}, fast_model, 1 BLAS thread: ms per step, median of {rounds} profiles each, "
              f"before {before[:7]} / after (this tree)")
        print(table(rows, ["op", "before ms", "after ms", "change"]))
    if not args.quick:
        path = write_results("profile_before_after", {"before": before, "rounds": rounds, "steps": args.steps,
                                                      "warmup": WARMUP, "results": results}, args.out)
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
