"""The project's benchmark suite, with one report: what `tito bench` runs.

    python benchmarks/suite.py                        # everything, writes results/bench_report/
    python benchmarks/suite.py --quick --out /tmp/r   # small sizes, a smoke test (< 1 minute)
    python benchmarks/suite.py --only mlp profile     # some of the suite

1. The machine: facts (BLAS library and threads, CPUs, load average at the start and the
   end), the matmul peak with the BLAS threads the environment gives and with one thread,
   and the copy bandwidth (module 14: `matmul_peak`, `memory_bandwidth`).
2. The benchmark scripts, each in its own process with `--out` (and `--quick`): Tensor ops
   (bench_autograd.py), the MLP step (bench_mlp_step.py), the LeNet-5 step
   (bench_lenet5_step.py), the TinyGPT step and generation (bench_tinygpt.py), the kernels
   (bench_kernels.py, when it exists), TinyTorch against PyTorch side by side
   (bench_vs_torch.py). Their printed tables and JSON go into the report.
3. Per-op profiles (module 14's `OpProfiler`, one BLAS thread) of the MLP and TinyGPT training
   steps, and of TinyGPT and LeNet-5 with and without module 13's `fast_model` (before / after).
4. Every step as a ratio to the numpy FLOP lower bound: its product FLOPs (module 14's
   `count_flops` on the model the script builds, x3 for a training step) at the best peak
   of step 1; and to its products timed alone at their exact shapes (the script's own
   measurement for LeNet-5 and TinyGPT, `time_matmuls` for the MLP); and to PyTorch's CPU
   build where the script measured it (torch is never a dependency).

Writes OUT/report.md, OUT/report.json, OUT/bench_*.json (the scripts' results), OUT/logs/
(their output) and PNG plots: ratios.png, roofline.png, profile_mlp.png, profile_tinygpt.png.
The full suite takes about 5-8 minutes on the course's 2-core machine; run it on an idle
machine (the load average is recorded: compare only runs taken under similar load).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tinytorch  # noqa: E402,F401  (switches autograd on)
from tinytorch.bench.benchmarking import (  # noqa: E402
    OpProfiler, benchmark, blas_threads, count_flops, machine_info, matmul_peak, matmul_roofline_point,
    memory_bandwidth, plot_roofline, roofline, set_blas_threads, step_report, time_matmuls)
from tinytorch.core.tensor import Tensor  # noqa: E402
from tinytorch.core.training import write_atomically  # noqa: E402
from common import git_state  # noqa: E402  (benchmarks/common.py: tito/gitstate.py)


@dataclass(frozen=True)
class Script:
    """A benchmark script of benchmarks/ and what it measures."""
    name: str
    file: str
    what: str


SCRIPTS = (
    Script("autograd", "bench_autograd.py", "Tensor ops: elementwise chain and 1024^2 matmul, forward + backward"),
    Script("mlp", "bench_mlp_step.py", "MLP training step (3072-512-256-10, batch 64, Adam)"),
    Script("lenet5", "bench_lenet5_step.py", "LeNet-5 training step (batch 64, SGD)"),
    Script("tinygpt", "bench_tinygpt.py", "TinyGPT training step (AdamW) and generation with/without KV cache"),
    Script("kernels", "bench_kernels.py", "module 13's kernels against their references"),
    Script("vs_torch", "bench_vs_torch.py", "TinyGPT and LeNet-5 steps, plain and fast_model, against PyTorch, "
                                            "alternating, with 1 and 2 BLAS threads"),
    Script("generate", "bench_generate.py", "TinyGPT generation: module 15's engine at batch 1 against PyTorch's "
                                            "KV-cached decoding, and 32 prompts batched against one by one"),
)
NAMES = [s.name for s in SCRIPTS] + ["profile"]
SCRIPT_TIMEOUT_S = {True: 180, False: 480}          # quick, full


# ---- small helpers -------------------------------------------------------------------------------
def md_table(rows: list[list[Any]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fmt(x: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


# ---- 1. the machine ------------------------------------------------------------------------------
def measure_machine(quick: bool) -> dict[str, Any]:
    size, reps = (256, 3) if quick else (2048, 5)
    info = machine_info()
    peak_env = matmul_peak(size, repeats=reps)
    peak_one = matmul_peak(size, repeats=reps, threads=1) if blas_threads() is not None else None
    bandwidth = memory_bandwidth(64 if quick else 256, repeats=3 if quick else 5)
    best = max(p for p in (peak_env, peak_one) if p is not None)
    return {"info": info, "matmul_size": size, "peak_gflops_env_threads": peak_env,
            "peak_gflops_one_thread": peak_one, "peak_gflops": best, "bandwidth_gbs": bandwidth}


# ---- 2. the scripts ------------------------------------------------------------------------------
def run_script(script: Script, quick: bool, out: Path) -> dict[str, Any]:
    path = HERE / script.file
    if not path.exists():
        return {"name": script.name, "status": "not available", "note": f"benchmarks/{script.file} does not exist yet"}
    supports_out = '"--out"' in path.read_text(encoding="utf-8")
    cmd = [sys.executable, str(path), *(["--quick"] if quick else []), *(["--out", str(out)] if supports_out else [])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_S[quick])
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        code = None
        output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        output += f"\n(stopped after {SCRIPT_TIMEOUT_S[quick]} s)"
    seconds = time.perf_counter() - started
    write_atomically(out / "logs" / f"{script.name}.txt", lambda f: f.write(output.encode("utf-8")))
    json_path = out / f"{path.stem}.json"
    result = json.loads(json_path.read_text()) if supports_out and code == 0 and json_path.exists() else None
    status = "ok" if code == 0 else ("timed out" if code is None else f"failed (exit {code})")
    print(f"  {script.name:10s} {status:18s} {seconds:6.1f} s", flush=True)
    return {"name": script.name, "status": status, "seconds": seconds,
            "command": " ".join(Path(c).name if c == sys.executable else os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd),
            "output": output, "json_file": json_path.name if result is not None else None, "result": result,
            "note": None if supports_out else f"{script.file} has no --out option: only its printed output is reported"}


# ---- 3. FLOPs and bounds of the scripts' steps -----------------------------------------------------
def mlp_model(result: dict[str, Any]):
    import bench_mlp_step
    model, x, _ = bench_mlp_step.build(tuple(result["sizes"]), result["batch"])
    return model, Tensor(x)


def lenet5_model(batch: int):
    import bench_lenet5_step
    rng = np.random.default_rng(0)
    return bench_lenet5_step.lenet5(rng), Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))


def tinygpt_model(cfg: dict[str, Any]):
    import bench_tinygpt
    model, _ = bench_tinygpt.build(cfg)
    tokens = np.random.default_rng(1).integers(0, cfg["vocab_size"], size=(cfg["batch"], cfg["max_length"]))
    return model, Tensor(tokens)


def summary_rows(runs: dict[str, dict[str, Any]], machine: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """One row per measured step: ms, FLOPs, ratio to the FLOP bound and to its products alone,
    to hand-written numpy and to PyTorch where measured."""
    peak = machine["peak_gflops"]
    rows: list[dict[str, Any]] = []

    def add(label: str, ms: float, flops: float | None, products_ms: float | None = None,
            numpy_ms: float | None = None, torch_ms: float | None = None, note: str = "") -> None:
        rep = step_report(ms / 1e3, flops, peak, None if products_ms is None else products_ms / 1e3) if flops else None
        rows.append({"benchmark": label, "ms": ms, "flops": flops,
                     "bound_ms": rep.bound_seconds * 1e3 if rep else None,
                     "ratio_to_bound": rep.ratio_to_bound if rep else None,
                     "fraction_of_peak": rep.fraction_of_peak if rep else None,
                     "products_ms": products_ms, "ratio_to_products": rep.ratio_to_matmuls if rep else None,
                     "numpy_ms": numpy_ms, "ratio_to_numpy": ms / numpy_ms if numpy_ms else None,
                     "torch_ms": torch_ms, "ratio_to_torch": ms / torch_ms if torch_ms else None, "note": note})

    r = (runs.get("autograd") or {}).get("result")
    if r:
        mm = r["matmul"]
        add(f"matmul {mm['size']}^2, forward + backward", mm["tinytorch_ms"], 3 * 2 * mm["size"] ** 3,
            numpy_ms=mm["numpy_ms"], note="numpy = the same three products")
        ew = r["elementwise_chain"]
        add(f"elementwise chain, {ew['elements']:,} elements", ew["tinytorch_ms"], None, numpy_ms=ew["numpy_ms"],
            note="memory bound: no FLOP bound; numpy = hand-written forward + backward")
    r = (runs.get("mlp") or {}).get("result")
    if r:
        model, x = mlp_model(r)
        count = count_flops(model, x)
        products = time_matmuls(count.matmuls(training=True), repeats=3 if quick else 10) * 1e3
        add(f"MLP step {'-'.join(map(str, r['sizes']))}, batch {r['batch']}", r["tinytorch_ms"], count.training_step,
            products, numpy_ms=r["numpy_ms"], note="numpy = hand-written step with in-place Adam")
    r = (runs.get("lenet5") or {}).get("result")
    if r:
        model, x = lenet5_model(r["batch"])
        torch_ms = r["torch_ms"] if isinstance(r.get("torch_ms"), (int, float)) else None
        add(f"LeNet-5 step, batch {r['batch']}", r["step_ms"], count_flops(model, x).training_step,
            r["lower_bound"]["gemm_time_ms"], torch_ms=torch_ms, note="products timed by the script")
    r = (runs.get("tinygpt") or {}).get("result")
    if r:
        cfg = r["config"]
        model, x = tinygpt_model(cfg)
        torch_ms = (r.get("pytorch") or {}).get("step_ms")
        add(f"TinyGPT step L{cfg['num_layers']} C{cfg['d_model']} T{cfg['max_length']} B{cfg['batch']}", r["step_ms"],
            count_flops(model, x).training_step, r["matmul_bound"]["blas_ms"], torch_ms=torch_ms,
            note="products timed by the script")
    r = (runs.get("vs_torch") or {}).get("result")
    for key, res in sorted((r or {}).get("results", {}).items()):
        model_name, threads = key.split("/")
        if model_name == "tinygpt":
            import bench_vs_torch
            cfg = bench_vs_torch.QUICK_GPT if quick else __import__("bench_tinygpt").DEFAULT
            flops = count_flops(*tinygpt_model(cfg)).training_step
        else:
            flops = count_flops(*lenet5_model(8 if quick else 64)).training_step
        torch_ms = (res.get("pytorch") or {}).get("median_ms")
        for variant in ("plain", "fast"):
            add(f"{res['model']}, {variant}, {threads} BLAS thread(s)", res[variant]["median_ms"], flops,
                torch_ms=torch_ms, note=f"side by side with PyTorch, alternating (bench_vs_torch.py); spread "
                                        f"{res[variant]['p25_ms']:.1f}-{res[variant]['p75_ms']:.1f} ms")
    return rows


# ---- 4. per-op profiles ----------------------------------------------------------------------------
def _profile(step, steps: int) -> OpProfiler:
    with OpProfiler() as prof:
        for _ in range(steps):
            step()
    return prof


def profile_steps(quick: bool, out: Path) -> dict[str, Any]:
    import bench_mlp_step
    import bench_tinygpt
    from tinytorch.core.losses import CrossEntropyLoss
    from tinytorch.core.kernels import FusedAdam as Adam   # module 13's opt-in in-place Adam

    steps = 3 if quick else 10
    sizes, batch = ((256, 64, 32, 10), 16) if quick else ((3072, 512, 256, 10), 64)
    model, x, y = bench_mlp_step.build(sizes, batch)
    tx, opt, loss_fn = Tensor(x), Adam(model.parameters(), lr=1e-3), CrossEntropyLoss()

    def mlp_step() -> None:
        loss = loss_fn(model(tx), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    cfg = bench_tinygpt.QUICK if quick else bench_tinygpt.DEFAULT
    _, gpt_step = bench_tinygpt.build(cfg)
    gpt_label = f"TinyGPT L{cfg['num_layers']} C{cfg['d_model']} T{cfg['max_length']} B{cfg['batch']}"
    steps_to_profile = [("mlp", f"MLP {'-'.join(map(str, sizes))}, batch {batch}", mlp_step),
                        ("tinygpt", gpt_label, gpt_step)]
    if (HERE / "bench_vs_torch.py").exists():            # module 13's fast_model: the same steps, fused
        import bench_vs_torch
        lenet_batch = 8 if quick else 64
        steps_to_profile += [
            ("tinygpt_fast", f"{gpt_label}, fast_model", bench_vs_torch.tinygpt_step(cfg, True)),
            ("lenet5", f"LeNet-5 batch {lenet_batch}", bench_vs_torch.lenet5_step(lenet_batch, False)),
            ("lenet5_fast", f"LeNet-5 batch {lenet_batch}, fast_model", bench_vs_torch.lenet5_step(lenet_batch, True))]
    out_profiles: dict[str, Any] = {}
    # One BLAS thread: on a shared 2-core machine a second OpenBLAS thread that waits for a
    # busy core makes every product many times slower, and the profiles would show the load.
    previous = blas_threads()
    if previous is not None:
        set_blas_threads(1)
    try:
        measured = [(key, label, step, benchmark(step, warmup=2, repeats=steps), _profile(step, steps))
                    for key, label, step in steps_to_profile]
    finally:
        if previous is not None:
            set_blas_threads(previous)
    for key, label, step, plain, prof in measured:
        prof.plot(out / f"profile_{key}.png", steps=steps, title=f"{label}: ms per training step, per op")
        out_profiles[key] = {"label": label, "steps": steps, "blas_threads": 1 if previous is not None else None,
                             "step_ms_unprofiled": plain.median * 1e3,
                             "step_ms_profiled": prof.wall_s / steps * 1e3, "table": prof.table(steps=steps),
                             "plot": f"profile_{key}.png", **prof.summary()}
        print(f"  profile    {key:18s} {prof.wall_s / steps * 1e3:6.1f} ms/step profiled, "
              f"{plain.median * 1e3:.1f} ms unprofiled", flush=True)
    return out_profiles


# ---- 5. plots --------------------------------------------------------------------------------------
def roofline_points(quick: bool, machine: dict[str, Any]) -> list[dict[str, Any]]:
    """The distinct products of a TinyGPT and an MLP training step, each timed alone, and an
    elementwise add: where they sit on this machine's roofline."""
    import bench_tinygpt
    cfg = bench_tinygpt.QUICK if quick else bench_tinygpt.DEFAULT
    gpt, tokens = tinygpt_model(cfg)
    mlp, x = mlp_model({"sizes": [256, 64, 32, 10] if quick else [3072, 512, 256, 10], "batch": 16 if quick else 64})
    shapes: dict[tuple[int, int, int, int], str] = {}
    for tag, count in (("gpt", count_flops(gpt, tokens)), ("mlp", count_flops(mlp, x))):
        for shape in count.matmuls(training=True):
            shapes.setdefault(shape, tag)
    points = []
    reps = 3 if quick else 10
    for shape, tag in sorted(shapes.items(), key=lambda kv: math.prod(kv[0])):
        p = matmul_roofline_point(shape, time_matmuls([shape], repeats=reps))
        points.append({"label": f"{tag} {p.label}", "flops": p.flops, "bytes": p.bytes_moved, "seconds": p.seconds})
    add = np.ones(2 ** 23, np.float32)                          # 32 MiB: larger than the caches
    seconds = benchmark(lambda: add + add, repeats=reps).min
    points.append({"label": f"add {add.size:,}", "flops": add.size, "bytes": 3 * add.nbytes, "seconds": seconds})
    return points


def plot_ratios(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["ratio_to_bound"] is not None]
    fig = Figure(figsize=(8, 0.6 * len(rows) + 1.6), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(rows))[::-1]
    ax.barh(ys + 0.2, [r["ratio_to_bound"] for r in rows], height=0.4, label="x numpy FLOP bound (at peak)")
    ax.barh(ys - 0.2, [r["ratio_to_products"] or 0 for r in rows], height=0.4, label="x its products timed alone")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(ys, [r["benchmark"] for r in rows], fontsize=8)
    ax.set_xlabel("measured time / lower bound (1 = the bound)")
    ax.set_title("TinyTorch steps against numpy lower bounds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    write_atomically(path, lambda f: fig.savefig(f, dpi=100, format="png"))


# ---- 6. the report -----------------------------------------------------------------------------------
def write_report(out: Path, data: dict[str, Any]) -> None:
    m, info = data["machine"], data["machine"]["info"]
    lines = [f"# TinyTorch benchmark report", "",
             f"`{data['command']}`, {data['started']}, {data['wall_s'] / 60:.1f} min"
             + (" (**--quick**: small sizes and few repeats, a smoke test; not for quoting)" if data["quick"] else ""),
             "", f"commit `{data['commit'] or 'unknown (no git)'}`"
             + (" with uncommitted changes (the work tree was dirty)" if data["dirty"] else ""),
             "", "## Machine", "",
             md_table([["Python / numpy", f"{info['python']} / {info['numpy']}"],
                       ["platform", info["platform"]], ["CPUs", info["cpus"]],
                       ["BLAS", info["blas"]], ["BLAS threads (in use)", info["blas_threads"]],
                       ["BLAS thread variables", info["blas_threads_env"] or "unset"],
                       ["load average at start", info["load_average"]],
                       ["load average at end", data["load_average_end"]],
                       [f"matmul peak ({m['matmul_size']}^2 float32), BLAS threads as set",
                        f"{m['peak_gflops_env_threads']:.1f} GFLOP/s"],
                       [f"matmul peak, 1 thread", fmt(m["peak_gflops_one_thread"], ".1f", " GFLOP/s")],
                       ["peak used for the bounds (the best)", f"{m['peak_gflops']:.1f} GFLOP/s"],
                       ["copy bandwidth", f"{m['bandwidth_gbs']:.1f} GB/s"]], ["fact", "value"]),
             "", "## Summary: each result as a ratio to its lower bounds", "",
             "* **x FLOP bound**: measured time / (product FLOPs / the peak above). FLOPs are counted by "
             "`tinytorch.bench.benchmarking.count_flops` (a multiply-add = 2 FLOPs, products only, a training "
             "step = 3x the forward).",
             "* **x products**: measured time / the time numpy needs for exactly the step's products, each "
             "timed alone at its shape.",
             "* **x numpy** / **x PyTorch**: against a hand-written numpy version, or PyTorch's CPU build "
             "when it was importable (never a dependency).", ""]
    rows = data["summary"]
    if rows:
        lines.append(md_table([[r["benchmark"], fmt(r["ms"], ".2f"),
                                fmt(r["flops"] / 1e9 if r["flops"] else None, ".3f"), fmt(r["bound_ms"], ".2f"),
                                fmt(r["ratio_to_bound"], ".2f", "x"),
                                fmt(100 * r["fraction_of_peak"] if r["fraction_of_peak"] else None, ".0f", "%"),
                                fmt(r["products_ms"], ".2f"), fmt(r["ratio_to_products"], ".2f", "x"),
                                fmt(r["ratio_to_numpy"], ".2f", "x"), fmt(r["ratio_to_torch"], ".2f", "x"), r["note"]]
                               for r in rows],
                              ["benchmark", "ms", "GFLOP", "FLOP bound ms", "x FLOP bound", "of peak", "products ms",
                               "x products", "x numpy", "x PyTorch", "note"]))
        if data.get("ratios_plot"):
            lines += ["", f"![ratios]({data['ratios_plot']})"]
    else:
        lines.append("(no step benchmark was selected)")
    if data.get("roofline"):
        lines += ["", "## Roofline", "",
                  "The distinct matrix products of a TinyGPT and an MLP training step, each timed alone, and an "
                  "elementwise add, against min(peak, intensity x bandwidth).", "",
                  f"![roofline]({data['roofline_plot']})", "",
                  md_table([[p["label"], f"{p['flops'] / p['bytes']:.2f}", f"{p['flops'] / p['seconds'] / 1e9:.1f}",
                             f"{100 * p['flops'] / p['seconds'] / 1e9 / m['peak_gflops']:.0f}%"] for p in data["roofline"]],
                           ["kernel", "FLOP/byte", "GFLOP/s", "of peak"])]
    for run in data["scripts"]:
        lines += ["", f"## {run['name']}: {next(s.what for s in SCRIPTS if s.name == run['name'])}", ""]
        if run["status"] == "not available":
            lines.append(run["note"])
            continue
        lines += [f"`{run['command']}`: {run['status']} in {run['seconds']:.1f} s"
                  + (f"; results in `{run['json_file']}`" if run["json_file"] else "")
                  + (f"; output in `logs/{run['name']}.txt`"), ""]
        if run.get("note"):
            lines += [run["note"], ""]
        lines += ["```", run["output"].strip()[-6000:], "```"]
    for key, prof in (data.get("profiles") or {}).items():
        lines += ["", f"## Per-op profile: {prof['label']}", "",
                  f"`OpProfiler` over {prof['steps']} training steps"
                  + (" with one BLAS thread" if prof.get("blas_threads") == 1 else "")
                  + f": {prof['step_ms_profiled']:.2f} ms per step "
                  f"profiled, {prof['step_ms_unprofiled']:.2f} ms without the profiler (median). Self times per "
                  f"step; share = of the profiled wall time.", "", "```", prof["table"], "```", "",
                  f"![profile {key}]({prof['plot']})"]
    lines += ["", "## How to reproduce", "",
              "`bin/tito bench` (everything; about 5-8 minutes on 2 cores, on an idle machine), "
              "`bin/tito bench --only NAME ...` with NAME in " + ", ".join(NAMES) + ", `--quick` for a smoke test. "
              "The method: `benchmarks/suite.py` and module 14 (`modules/14_benchmarking`)."]
    report = "\n".join(lines) + "\n"
    write_atomically(out / "report.md", lambda f: f.write(report.encode("utf-8")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test, < 1 minute)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these: {', '.join(NAMES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_report",
                        help="where the report goes (default results/bench_report)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or []) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; the suite has: {', '.join(NAMES)}")
    selected = [n for n in NAMES if not args.only or n in args.only]
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started, t0 = dt.datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    git = git_state(ROOT)                  # before the scripts run: the code measured, its uncommitted changes
    print(f"benchmark suite ({'quick' if args.quick else 'full'}): {', '.join(selected)} -> {out}", flush=True)
    machine = measure_machine(args.quick)
    print(f"  machine    peak {machine['peak_gflops']:.1f} GFLOP/s, bandwidth {machine['bandwidth_gbs']:.1f} GB/s, "
          f"load {machine['info']['load_average']}", flush=True)
    runs = {s.name: run_script(s, args.quick, out) for s in SCRIPTS if s.name in selected}
    data: dict[str, Any] = {"command": " ".join(["tito bench", *(sys.argv[1:] if argv is None else argv)]),
                            **git,
                            "started": started, "quick": args.quick, "selected": selected, "machine": machine,
                            "scripts": list(runs.values())}
    data["summary"] = summary_rows(runs, machine, args.quick)
    if any(r["ratio_to_bound"] is not None for r in data["summary"]):
        plot_ratios(data["summary"], out / "ratios.png")
        data["ratios_plot"] = "ratios.png"
    if "profile" in selected:
        data["profiles"] = profile_steps(args.quick, out)
        points = roofline_points(args.quick, machine)
        plot_roofline([roofline(p["flops"], p["bytes"], p["seconds"], p["label"]) for p in points],
                      machine["peak_gflops"], machine["bandwidth_gbs"], out / "roofline.png",
                      title="training-step products on this machine's roofline")
        data["roofline"], data["roofline_plot"] = points, "roofline.png"
    data["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    data["wall_s"] = time.perf_counter() - t0
    write_report(out, data)
    report = json.dumps({k: v for k, v in data.items()}, indent=2, default=str) + "\n"
    write_atomically(out / "report.json", lambda f: f.write(report.encode("utf-8")))
    failed = [r["name"] for r in runs.values() if r["status"] not in ("ok", "not available")]
    print(f"wrote {out / 'report.md'} ({data['wall_s']:.0f} s)" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
