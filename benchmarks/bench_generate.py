"""Generation speed: module 15's batched numpy engine (GPTEngine, what `tito serve` runs)
against a KV-cached PyTorch implementation of the same model, side by side in one process.

    python benchmarks/bench_generate.py            # writes results/bench_report/bench_generate.json
    python benchmarks/bench_generate.py --quick    # small model, few repeats (smoke test, writes nothing)
    python benchmarks/bench_generate.py --threads 2

The model has the recorded TinyGPT milestone's shape (vocabulary 65, 4 layers, 4 heads,
d_model 128, context 64), float32, random weights (speed does not depend on them). Both
sides generate greedily (argmax, so the two must produce the same tokens, which is
checked) from the same prompt, with the same sliding window (when the 64-position cache is
full, the last 32 tokens are run again), and are timed alternately (ours, torch, ours,
torch...), medians and spread (min, max) reported. The PyTorch side is what one would write
for fast CPU inference: inference_mode, preallocated per-layer key/value caches, one fused
q/k/v Linear, F.scaled_dot_product_attention, F.layer_norm, F.gelu(tanh); it runs only when
torch is importable. Then batched throughput: many prompts at once through the engine's
continuous batching (BatchDecoder) against the same prompts one after another.
"""
from __future__ import annotations

import argparse
import os
import sys

def _threads_from_argv() -> int:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


THREADS = _threads_from_argv()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)                  # before numpy (and torch) load their BLAS

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common import table, write_results  # noqa: E402

from tinytorch.mlops.mlops import BatchDecoder, TextRequest  # noqa: E402
from tinytorch.tinygpt import DEFAULT_CHARS, CharTokenizer, TinyGPT  # noqa: E402
from tito.gpt_package import TINYGPT_KIND  # noqa: E402

DEFAULT = dict(vocab_size=65, d_model=128, num_heads=4, num_layers=4, max_length=64)
QUICK = dict(vocab_size=65, d_model=32, num_heads=4, num_layers=2, max_length=32)


def ours_generate(engine, prompt: list[int], n: int) -> list[int]:
    request = TextRequest(prompt, n, temperature=0.0)
    BatchDecoder(engine).run([request])
    return request.generated


def torch_reference(model, threads: int):
    """A KV-cached PyTorch model with TinyGPT's weights; returns generate(prompt, n) -> ids."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    c = model.config
    C, nh, T = c.d_model, c.num_heads, c.max_length
    hs = C // nh
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()}

    class Block(torch.nn.Module):
        def __init__(self, i: int):
            super().__init__()
            p = lambda n: sd[f"blocks.{i}.{n}"]          # noqa: E731
            self.ln1 = torch.nn.LayerNorm(C)
            self.ln2 = torch.nn.LayerNorm(C)
            self.qkv = torch.nn.Linear(C, 3 * C)
            self.proj = torch.nn.Linear(C, C)
            self.fc = torch.nn.Linear(C, c.ff_dim)
            self.out = torch.nn.Linear(c.ff_dim, C)
            with torch.no_grad():
                self.ln1.weight.copy_(p("ln1.weight")); self.ln1.bias.copy_(p("ln1.bias"))       # noqa: E702
                self.ln2.weight.copy_(p("ln2.weight")); self.ln2.bias.copy_(p("ln2.bias"))       # noqa: E702
                self.qkv.weight.copy_(torch.cat([p(f"attn.{n}_proj.weight") for n in "qkv"], 1).T)
                self.qkv.bias.copy_(torch.cat([p(f"attn.{n}_proj.bias") for n in "qkv"]))
                self.proj.weight.copy_(p("attn.out_proj.weight").T); self.proj.bias.copy_(p("attn.out_proj.bias"))  # noqa: E702
                self.fc.weight.copy_(p("ff.layers.0.weight").T); self.fc.bias.copy_(p("ff.layers.0.bias"))  # noqa: E702
                self.out.weight.copy_(p("ff.layers.2.weight").T); self.out.bias.copy_(p("ff.layers.2.bias"))  # noqa: E702
            self.k = torch.zeros(1, nh, T, hs)
            self.v = torch.zeros(1, nh, T, hs)

        def forward(self, x, past: int):
            B, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q, k, v = (a.view(B, t, nh, hs).transpose(1, 2) for a in (q, k, v))
            self.k[:, :, past:past + t] = k
            self.v[:, :, past:past + t] = v
            y = F.scaled_dot_product_attention(q, self.k[:, :, :past + t], self.v[:, :, :past + t],
                                               is_causal=t > 1)
            x = x + self.proj(y.transpose(1, 2).reshape(B, t, C))
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = sd["token_embedding.weight"]
            self.wpe = sd["positions.weight"]
            self.blocks = torch.nn.ModuleList(Block(i) for i in range(c.num_layers))
            self.ln_f = torch.nn.LayerNorm(C)
            self.head = torch.nn.Linear(C, c.vocab_size)
            with torch.no_grad():
                self.ln_f.weight.copy_(sd["ln_f.weight"]); self.ln_f.bias.copy_(sd["ln_f.bias"])  # noqa: E702
                self.head.weight.copy_(sd["head.weight"].T); self.head.bias.copy_(sd["head.bias"])  # noqa: E702

        def forward(self, ids, past: int):
            x = self.wte[ids] + self.wpe[past:past + ids.shape[1]]
            for block in self.blocks:
                x = block(x, past)
            return self.head(self.ln_f(x[:, -1]))

    gpt = GPT().eval()
    keep = max(1, T // 2)

    def generate(prompt: list[int], n: int) -> list[int]:
        tokens = list(prompt)
        with torch.inference_mode():
            context = tokens[-T:]
            logits = gpt(torch.tensor([context]), 0)
            length = len(context)
            for i in range(n):
                tokens.append(int(logits.argmax()))
                if i == n - 1:
                    break
                if length == T:                          # window full: re-run the last `keep` tokens
                    logits = gpt(torch.tensor([tokens[-keep:]]), 0)
                    length = keep
                else:
                    logits = gpt(torch.tensor([[tokens[-1]]]), length)
                    length += 1
        return tokens[len(prompt):]

    return generate, torch.__version__


def spread(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=200, help="new tokens per generation (default 200)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--prompts", type=int, default=32, help="prompts of the batched run (default 32)")
    parser.add_argument("--out", metavar="DIR", help="write the JSON into DIR instead of results/bench_report/ (also with --quick)")
    args = parser.parse_args()
    cfg = QUICK if args.quick else DEFAULT
    repeats, n = (3, 40) if args.quick else (args.repeats, args.tokens)
    tokenizer = CharTokenizer().fit(DEFAULT_CHARS[:cfg["vocab_size"]])
    model = TinyGPT(tokenizer=tokenizer, **cfg, rng=np.random.default_rng(0))
    prompt = list(np.random.default_rng(1).integers(0, cfg["vocab_size"], size=8))
    engine = TINYGPT_KIND.engine(model, slots=max(1, args.prompts))

    try:
        torch_generate, torch_version = torch_reference(model, args.threads)
    except ImportError:
        torch_generate, torch_version = None, None
    ours_ids = ours_generate(engine, prompt, n)
    same = None
    if torch_generate is not None:
        same = ours_ids == torch_generate(prompt, n)
    ours_t, torch_t = [], []
    for _ in range(repeats):                              # alternating: ours, torch, ours, torch ...
        t0 = time.perf_counter()
        ours_generate(engine, prompt, n)
        ours_t.append(time.perf_counter() - t0)
        if torch_generate is not None:
            t0 = time.perf_counter()
            torch_generate(prompt, n)
            torch_t.append(time.perf_counter() - t0)
    ours = {"tokens_per_s": n / statistics.median(ours_t), "seconds": spread(ours_t)}
    results = {"config": cfg, "threads": args.threads, "new_tokens": n, "torch_version": torch_version,
               "batch1": {"tinytorch_engine": ours}}
    rows = [["tinytorch GPTEngine, batch 1", f"{ours['tokens_per_s']:,.0f}",
             f"{min(ours_t) * 1e3:.1f}-{max(ours_t) * 1e3:.1f}"]]
    if torch_t:
        ref = {"tokens_per_s": n / statistics.median(torch_t), "seconds": spread(torch_t)}
        results["batch1"]["torch_kv_cached"] = ref
        results["batch1"]["speedup_vs_torch"] = ours["tokens_per_s"] / ref["tokens_per_s"]
        results["batch1"]["same_tokens_as_torch"] = same
        rows.append([f"PyTorch {torch_version} KV-cached, batch 1", f"{ref['tokens_per_s']:,.0f}",
                     f"{min(torch_t) * 1e3:.1f}-{max(torch_t) * 1e3:.1f}"])

    # batched: many prompts at once (continuous batching) against one after another
    rng = np.random.default_rng(2)
    prompts = [list(rng.integers(0, cfg["vocab_size"], size=int(rng.integers(4, 24)))) for _ in range(args.prompts)]
    batched_t, serial_t = [], []
    for _ in range(max(1, repeats // 3)):
        t0 = time.perf_counter()
        BatchDecoder(engine).run([TextRequest(p, n, temperature=0.0) for p in prompts])
        batched_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in prompts:
            ours_generate(engine, p, n)
        serial_t.append(time.perf_counter() - t0)
    total = n * len(prompts)
    results["batched"] = {"prompts": len(prompts), "tokens_per_s": total / statistics.median(batched_t),
                          "one_by_one_tokens_per_s": total / statistics.median(serial_t),
                          "seconds": spread(batched_t), "one_by_one_seconds": spread(serial_t)}
    rows.append([f"tinytorch, {len(prompts)} prompts batched", f"{results['batched']['tokens_per_s']:,.0f}",
                 f"{min(batched_t) * 1e3:.0f}-{max(batched_t) * 1e3:.0f}"])
    rows.append([f"tinytorch, {len(prompts)} prompts one by one", f"{results['batched']['one_by_one_tokens_per_s']:,.0f}",
                 f"{min(serial_t) * 1e3:.0f}-{max(serial_t) * 1e3:.0f}"])
    print(f"generation, {n} new tokens, greedy, {args.threads} BLAS thread(s), load average "
          f"{os.getloadavg()[0]:.2f}")
    print(table(rows, ["", "tokens/s (median)", "run ms (min-max)"]))
    if torch_t:
        print(f"speed-up over PyTorch at batch 1: {results['batch1']['speedup_vs_torch']:.2f}x "
              f"(same tokens: {same})")
    if not args.quick or args.out:
        print("wrote", write_results("bench_generate" if args.threads == 1 else f"bench_generate_{args.threads}threads",
                                     results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
