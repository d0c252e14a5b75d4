"""The numbers of README.md's results and performance tables are those of the recorded results
(results/*.json, results/bench_report/*.json), formatted as the README prints them.

Each table row is found by the text it starts with, and every figure it states is rebuilt
from the JSON: rerunning a milestone or the benchmarks and forgetting the README, or
rounding a figure the wrong way, fails here with the row and the expected text.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def readme_row(start: str) -> str:
    """The one table row of README.md that begins with `| start`."""
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.startswith(f"| {start}")]
    assert len(rows) == 1, f"README.md has {len(rows)} table rows starting with {start!r}"
    return rows[0]


def pct(x: float) -> str:
    """0.527 -> "52.7%", 0.7 -> "70%": a target as the README writes it."""
    return f"{round(100 * x, 1):g}%"


def assert_in_row(row: str, expected: list[str]) -> None:
    missing = [text for text in expected if text not in row]
    assert not missing, f"README.md row {row[:60]!r}... should say {missing} (from results/)"


CIFAR_ROWS = {"mlp": "MLP (Dense", "lenet1": "LeNet-1-style CNN", "lenet5": "LeNet-5,", "cnn": "BatchNorm CNN"}


@pytest.mark.parametrize("model", sorted(CIFAR_ROWS))
def test_cifar10_rows(model):
    r = load(f"{model}_cifar10.json")
    target = [f"≥ {pct(r['published_accuracy'])}"]
    if r["target_accuracy"] is not None:
        target.append(f"aim {pct(r['target_accuracy'])}")
    if r["budget_seconds"] is not None:
        target.append(f"≤ {r['budget_seconds'] / 60:g} min")
    assert_in_row(readme_row(CIFAR_ROWS[model]), [
        f"| CIFAR-10 test accuracy **{r['test_accuracy']:.2%}** ({r['test_images']:,} images) |",
        f"| {r['epochs']} epochs, {r['wall_seconds'] / 60:.1f} min |",
        f"| {', '.join(target)} |",
        f"| `results/{model}_cifar10.json` |"])


@pytest.mark.parametrize("kind, start", [("", "TinyGPT, 4 layers"), ("_long", "TinyGPT `--long`")])
def test_tinygpt_rows(kind, start):
    r = load(f"tinygpt_shakespeare{kind}.json")
    cfg = r["config"]
    row = readme_row(start)
    expected = [f"{cfg['num_layers']} layers, {cfg['d_model']} dims, context {cfg['max_length']}",
                f"validation loss **{r['val_loss']:.3f}**",
                f"| {r['iterations']} iterations, {r['wall_seconds'] / 60:.1f} min",
                f"| ≤ {r['target_val_loss']:.2f} in {r['budget_minutes']:g} min |"]
    if kind:
        expected.append(f"({r['machine']['blas_threads']} BLAS threads")
    else:
        expected.append(f"(all {r['data']['val_characters']:,} validation characters; tuned on this validation split")
    assert_in_row(row, expected)
    assert "validation" in row and "test accuracy" not in row     # a validation loss, named as one


def test_compression_row():
    r = load("compression_cifar10.json")
    mlp, lenet5 = r["models"]["mlp"]["variants"], r["models"]["lenet5"]["variants"]
    sparse = f"sparse{round(100 * r['settings']['sparsity'])}"

    def acc(v: dict[str, Any]) -> str:
        return f"{100 * v['test_accuracy']:.2f}%"

    assert_in_row(readme_row("Compression of the MLP"), [
        f"int8: MLP **{acc(mlp['int8'])}** (float {acc(mlp['float32'])}), {mlp['int8']['size_ratio']:.2f}x smaller",
        f"LeNet-5 **{acc(lenet5['int8'])}** ({acc(lenet5['float32'])}), {lenet5['int8']['size_ratio']:.2f}x smaller",
        f"{pct(r['settings']['sparsity'])} of weights pruned and fine-tuned: "
        f"MLP **{acc(mlp[sparse])}**, {mlp[sparse]['size_ratio']:.2f}x smaller",
        f"LeNet-5 **{acc(lenet5[sparse])}**, {lenet5[sparse]['size_ratio']:.2f}x smaller",
        f"MLP **{acc(mlp[sparse + '_int8'])}**, {mlp[sparse + '_int8']['size_ratio']:.2f}x smaller",
        f"LeNet-5 **{acc(lenet5[sparse + '_int8'])}**, {lenet5[sparse + '_int8']['size_ratio']:.2f}x smaller",
        f"| {r['wall_seconds'] / 60:.1f} min |",
        f"int8 within {100 * r['targets']['int8_max_accuracy_drop']:g} point at about "
        f"{r['targets']['int8_size_ratio']:g}x; {pct(r['targets']['sparsity'])} sparse within "
        f"{100 * r['targets']['sparse_max_accuracy_drop']:g} points"])


def test_performance_rows():
    summary = {row["benchmark"]: row for row in load("bench_report/report.json")["summary"]}
    mlp = next(v for k, v in summary.items() if k.startswith("MLP step"))
    lenet5 = next(v for k, v in summary.items() if k.startswith("LeNet-5 step"))
    gpt = next(v for k, v in summary.items() if k.startswith("TinyGPT step"))
    tinygpt = load("bench_report/bench_tinygpt.json")
    torch = ".".join(tinygpt["pytorch"]["torch"].split(".")[:2])
    assert_in_row(readme_row("MLP step"), [f"| {mlp['ms']:.1f} ms |", f"| {mlp['ratio_to_numpy']:.2f}x hand-written numpy |"])
    assert_in_row(readme_row("LeNet-5 step"), [f"| {lenet5['ms']:.1f} ms |",
                                               f"| {lenet5['ratio_to_torch']:.2f}x PyTorch {torch} CPU |"])
    assert_in_row(readme_row("TinyGPT step"), [f"| {gpt['ms']:.1f} ms |",
                                               f"| {gpt['ratio_to_torch']:.2f}x PyTorch; "
                                               f"{gpt['ratio_to_bound']:.2f}x the FLOP bound |"])
    generation = tinygpt["generation"]
    assert_in_row(readme_row("TinyGPT generation"), [
        f"| {generation['cached']['tokens_per_s']:,.0f} tokens/s |",
        f"| {generation['cache_speedup']:.2f}x faster than without the cache |",
        f"≥ {generation['target_tokens_per_s']:,.0f} tokens/s"])


def test_side_by_side_rows():
    """The rows from bench_vs_torch.json (fast_model and plain against PyTorch, alternating) and
    bench_generate.json (module 15's engine against PyTorch's KV-cached decoding)."""
    runs = load("bench_report/bench_vs_torch.json")["results"]
    for model, start in (("tinygpt", "side by side, TinyGPT step"), ("lenet5", "side by side, LeNet-5 step")):
        one, two = runs[f"{model}/1"], runs[f"{model}/2"]
        assert_in_row(readme_row(start), [
            f"| {one['fast']['median_ms']:.1f} / {two['fast']['median_ms']:.1f} ms |",
            f"| {one['fast/pytorch']['ratio_of_medians']:.2f}x / {two['fast/pytorch']['ratio_of_medians']:.2f}x "
            f"PyTorch (plain layers: {one['plain/pytorch']['ratio_of_medians']:.2f}x / "
            f"{two['plain/pytorch']['ratio_of_medians']:.2f}x) |"])
    batch1 = load("bench_report/bench_generate.json")["batch1"]
    assert batch1["same_tokens_as_torch"]
    assert_in_row(readme_row("generation with module 15's batched engine"), [
        f"| {batch1['tinytorch_engine']['tokens_per_s']:,.0f} tokens/s |",
        f"| {batch1['speedup_vs_torch']:.2f}x PyTorch's KV-cached decoding (same tokens) |"])
