"""Shared helpers for the benchmark scripts: timing with warm-up and repeats, machine facts,
and writing results next to the printed table (results/bench_*.json)."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def time_it(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, min_seconds: float = 0.0) -> dict:
    """Median and spread of wall time of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return {"median_s": statistics.median(samples), "min_s": samples[0],
            "p90_s": samples[int(0.9 * (len(samples) - 1))], "runs": len(samples)}


def compare(baseline: Callable[[], object], candidate: Callable[[], object], repeats: int = 20,
            warmup: int = 3) -> dict:
    """Time two functions alternately (A B A B ...) so that a slow drift of the machine's
    speed (another process, frequency scaling) hits both alike; medians and their ratio."""
    for _ in range(warmup):
        baseline()
        candidate()
    a, b = [], []
    for _ in range(repeats):
        for fn, samples in ((baseline, a), (candidate, b)):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    ma, mb = statistics.median(a), statistics.median(b)
    return {"baseline_ms": ma * 1e3, "candidate_ms": mb * 1e3, "ratio": mb / ma, "runs": repeats,
            "baseline_spread_ms": (max(a) - min(a)) * 1e3, "candidate_spread_ms": (max(b) - min(b)) * 1e3}


def machine() -> dict:
    """What the numbers were measured on."""
    return {"python": sys.version.split()[0], "numpy": np.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "blas_threads_env": {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                                 if k in os.environ},
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def write_results(name: str, payload: dict) -> Path:
    """Write results/NAME.json with the machine facts and the command that produced it."""
    out = ROOT / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    payload = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": machine(), **payload}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return out


def table(rows: list[list[str]], header: list[str]) -> str:
    """A markdown table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
