"""The model server under load: `tito serve`'s ModelServer with continuous batching against
the one-lock server it replaced, on a TinyGPT of the recorded milestone's shape.

    python benchmarks/bench_serve.py                 # writes results/serve/bench_serve.json
    python benchmarks/bench_serve.py --quick         # fewer requests (smoke test, writes nothing)
    python benchmarks/bench_serve.py --weights results/tinygpt/tinygpt_shakespeare.npz

Each server runs in its own process (started by this script, loopback only, one BLAS
thread); the clients are threads of this process. Two scenarios per server:

* a crowd: 200 clients connect at once (a barrier), each asks for a 20-token completion;
  every client must get an answer, 200 or 503 (with Retry-After), none may be dropped;
* a steady load: 8 clients, each sending 50-token completions (temperature 1, its own
  seeds) one after another; latency p50 / p99 per request and requests per second.

"lock" is the old way, kept here as the baseline: one request at a time holds the model,
and generation runs module 16's `generate_tokens` in chunks of 8 tokens. Recorded before
this change on an idle machine: p99 453 ms, 19.6 requests/s (the 8-client scenario).
Without --weights the model has random weights of the milestone's shape (vocabulary 65,
4 layers, 4 heads, d_model 128, context 64): the speed does not depend on the weights.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # small per-token products: one thread is fastest
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from common import ROOT, table, write_results  # noqa: E402

OLD = {"p50_ms": 405.0, "p99_ms": 453.0, "requests_per_s": 19.6}


# ---- the server process ---------------------------------------------------------------------------
def serve(package_dir: str, mode: str) -> None:
    import time as _time

    from tinytorch.mlops.mlops import GenerationTimeout, ModelServer, load_package
    from tinytorch.tinygpt import generate_tokens
    from tito.gpt_package import TINYGPT_KIND

    kind = TINYGPT_KIND
    if mode == "lock":                                  # the server before continuous batching
        def chunked_complete(model, prompt, max_tokens, temperature, top_k, seed, deadline):
            started = _time.monotonic()
            prompt_ids = model.tokenizer.encode(prompt)
            tokens, rng, done = prompt_ids[None, :], np.random.default_rng(seed), 0
            while done < max_tokens:
                if deadline is not None and _time.monotonic() > deadline:
                    raise GenerationTimeout(done, max_tokens, _time.monotonic() - started)
                n = min(8, max_tokens - done)
                context = tokens[:, -model.max_length:]
                out = generate_tokens(model, context, n, temperature=temperature, top_k=top_k, rng=rng)
                tokens = np.concatenate([tokens, out[:, context.shape[1]:]], axis=1)
                done += n
            return model.tokenizer.decode(tokens[0, len(prompt_ids):])

        kind = dataclasses.replace(TINYGPT_KIND, complete=chunked_complete, engine=None)
    package = load_package(package_dir, kinds=(kind,))
    server = ModelServer(package, port=0, time_limit=60.0, socket_timeout=30.0)
    print(server.url, flush=True)
    server.serve_forever()


# ---- the clients ----------------------------------------------------------------------------------
def post(url: str, body: dict, timeout: float = 120.0) -> tuple[int | None, float]:
    host, port = url.split("//")[1].split(":")
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", "/complete", body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        json.loads(response.read())
        return response.status, time.perf_counter() - t0
    except OSError:
        return None, time.perf_counter() - t0
    finally:
        conn.close()


def crowd(url: str, clients: int, prompt: str) -> dict:
    start = threading.Barrier(clients)

    def client(i: int):
        start.wait()
        return post(url, {"prompt": prompt, "max_tokens": 20, "seed": i})

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(client, range(clients)))
    codes = [a[0] for a in answers]
    return {"clients": clients, "ok_200": codes.count(200), "busy_503": codes.count(503),
            "dropped": sum(c not in (200, 503) for c in codes), "seconds": time.perf_counter() - t0}


def steady(url: str, clients: int, per_client: int, tokens: int, prompt: str) -> dict:
    def client(c: int) -> list[tuple[int | None, float]]:
        return [post(url, {"prompt": prompt, "max_tokens": tokens, "seed": 1000 * c + i}) for i in range(per_client)]

    post(url, {"prompt": prompt, "max_tokens": 5})      # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - t0
    lat = sorted(s for _, s in results)
    return {"clients": clients, "requests": len(results), "tokens": tokens,
            "ok_200": sum(c == 200 for c, _ in results),
            "p50_ms": 1e3 * statistics.median(lat), "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": 1e3 * lat[-1], "requests_per_s": len(results) / wall, "seconds": wall}


def make_package(folder: Path, weights: Path | None) -> tuple[Path, str]:
    from tinytorch.tinygpt import DEFAULT_CHARS, CharTokenizer, TinyGPT
    from tito.gpt_package import package_tinygpt
    if weights is not None:
        model = TinyGPT.load(weights)
    else:
        model = TinyGPT(tokenizer=CharTokenizer().fit(DEFAULT_CHARS[:65]), vocab_size=65, d_model=128, num_heads=4,
                        num_layers=4, max_length=64, rng=np.random.default_rng(0))
    chars = "".join(model.tokenizer.chars)
    prompt = "".join(c for c in "ROMEO:\nWhat light through yonder window breaks" if c in chars) or chars[:8]
    return package_tinygpt(model, folder / "gpt", name="bench", version="1"), prompt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--weights", type=Path, help="a TinyGPT file (default: random weights of the milestone's shape)")
    parser.add_argument("--modes", default="batched,lock", help="servers to measure (default batched,lock)")
    parser.add_argument("--serve", nargs=2, metavar=("PACKAGE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    per_client = 4 if args.quick else 25
    results: dict = {"old_recorded": OLD, "servers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        package, prompt = make_package(Path(tmp), args.weights)
        results.update(model=str(args.weights) if args.weights else "random weights, milestone shape", prompt=prompt)
        for mode in args.modes.split(","):
            proc = subprocess.Popen([sys.executable, __file__, "--serve", str(package), mode], stdout=subprocess.PIPE,
                                    text=True, cwd=ROOT)
            try:
                url = proc.stdout.readline().strip()
                load_before = os.getloadavg()[0]
                entry = {"crowd": crowd(url, 200, prompt), "steady": steady(url, 8, per_client, 50, prompt),
                         "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
                results["servers"][mode] = entry
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    rows = []
    for mode, entry in results["servers"].items():
        c, s = entry["crowd"], entry["steady"]
        rows.append([mode, f"{c['ok_200']}/{c['busy_503']}/{c['dropped']} in {c['seconds']:.1f} s",
                     f"{s['p50_ms']:.0f}", f"{s['p99_ms']:.0f}", f"{s['requests_per_s']:.1f}"])
    rows.append(["recorded before (idle machine)", "87 of 200 unanswered", f"{OLD['p50_ms']:.0f}",
                 f"{OLD['p99_ms']:.0f}", f"{OLD['requests_per_s']:.1f}"])
    print(f"load average {os.getloadavg()}")
    print(table(rows, ["server", "200 at once: 200/503/dropped", "p50 ms", "p99 ms", "req/s (8 clients x 50 tokens)"]))
    if "batched" in results["servers"]:
        s = results["servers"]["batched"]["steady"]
        results["throughput_vs_old"] = s["requests_per_s"] / OLD["requests_per_s"]
        results["p99_vs_old"] = s["p99_ms"] / OLD["p99_ms"]
        if "lock" in results["servers"]:
            results["throughput_vs_lock_now"] = s["requests_per_s"] / results["servers"]["lock"]["steady"]["requests_per_s"]
        print(f"batched: {results['throughput_vs_old']:.1f}x the recorded throughput, p99 "
              f"{results['p99_vs_old']:.2f}x the recorded p99")
    if not args.quick:
        print("wrote", write_results("bench_serve", results, out_dir=ROOT / "results" / "serve"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
