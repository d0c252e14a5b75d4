"""Shared helpers for the benchmark scripts: timing with warm-up and repeats, machine facts,
and writing results next to the printed table (results/bench_report/bench_*.json).

The measuring is module 14's harness (`tinytorch.bench.benchmarking`): `time_it` and
`compare` are thin adapters that keep the dictionaries these scripts have always written.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:                      # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tinytorch.bench.benchmarking import benchmark, compare as _compare, machine_info  # noqa: E402
from tinytorch.core.training import write_atomically  # noqa: E402
from tito.gitstate import git_state  # noqa: E402


def time_it(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, min_seconds: float = 0.0) -> dict:
    """Median and spread of wall time of `fn()` over `repeats` runs after `warmup` runs (more
    runs while the timed ones add up to less than `min_seconds`). p90 is the nearest-rank
    sample below the 90% rank, as these scripts have always recorded it."""
    m = benchmark(fn, warmup=warmup, repeats=repeats, min_time=min_seconds)
    samples = sorted(m.samples)
    return {"median_s": m.median, "min_s": m.min, "p90_s": samples[int(0.9 * (len(samples) - 1))], "runs": m.runs}


def compare(baseline: Callable[[], object], candidate: Callable[[], object], repeats: int = 20,
            warmup: int = 3) -> dict:
    """Time two functions alternately (A B A B ...) so that a slow drift of the machine's
    speed (another process, frequency scaling) hits both alike; medians and their ratio."""
    c = _compare(baseline, candidate, warmup=warmup, repeats=repeats)
    a, b = c.baseline, c.candidate
    return {"baseline_ms": a.median * 1e3, "candidate_ms": b.median * 1e3, "ratio": c.ratio, "runs": repeats,
            "baseline_spread_ms": (a.max - a.min) * 1e3, "candidate_spread_ms": (b.max - b.min) * 1e3}


def machine() -> dict:
    """What the numbers were measured on (module 14's `machine_info`: BLAS library and threads,
    the thread variables, CPUs, load average)."""
    return machine_info()


def write_results(name: str, payload: dict, out_dir: str | os.PathLike | None = None) -> Path:
    """Write NAME.json (in results/bench_report/, beside the report of `tito bench`, or in
    `out_dir`) with the machine facts, the command that produced it, and the git commit and
    whether the work tree was dirty (changes under results/ aside); atomically (a temporary
    file renamed into place)."""
    folder = Path(out_dir) if out_dir is not None else ROOT / "results" / "bench_report"
    payload = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), **git_state(ROOT),
               "machine": machine(), **payload}
    text = json.dumps(payload, indent=2) + "\n"
    return write_atomically(folder / f"{name}.json", lambda f: f.write(text.encode("utf-8")))


def table(rows: list[list[str]], header: list[str]) -> str:
    """A markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
