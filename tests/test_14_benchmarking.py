"""Tests for module 14 (benchmarking): timing statistics on a fake clock, peak memory, FLOP
counts checked by hand, bounds, the per-op profiler (and that it restores what it patches),
and `tito bench --quick`.

Module 14 defines no differentiable op, so it has no GRADCHECK_CASES. The helper ops below
are `differentiable = False` (they only exercise the profiler's bookkeeping).
"""
import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.bench.benchmarking import (
    OpProfiler, attainable_gflops, benchmark, blas_threads, compare, conv2d_output_size, count_flops,
    flop_bound_seconds, flops_attention, flops_conv2d, flops_dense, flops_matmul, machine_info, matmul_peak,
    matmul_roofline_point, memory_bandwidth, peak_memory, percentile, plot_roofline, resident_memory,
    roofline, set_blas_threads, step_report, time_matmuls)
from tinytorch.core.activations import ReLU
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.layers import Dense, Dropout, Flatten, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.optimizers import SGD
from tinytorch.core.spatial import Conv2d, MaxPool2d
from tinytorch.core.tensor import Autograd, Function, Tensor
from tito.cli import main


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def scripted(clock: FakeClock, durations):
    """A function whose n-th call takes durations[n] seconds on `clock`; it counts its calls."""
    it = iter(durations)
    calls = []

    def fn():
        calls.append(1)
        clock.advance(next(it))
    return fn, calls


# ---- timing ------------------------------------------------------------------------------------
def test_statistics_on_a_fake_clock_are_exact():
    clock = FakeClock()
    fn, calls = scripted(clock, [5.0, 5.0, 5.0] + [0.010, 0.020, 0.030, 0.040, 0.050, 0.060, 0.070, 0.080,
                                                   0.090, 0.100])
    m = benchmark(fn, warmup=3, repeats=10, items=100, clock=clock)
    assert len(calls) == 13 and m.runs == 10 and m.warmup == 3
    assert m.samples == pytest.approx([0.01 * i for i in range(1, 11)])      # warm-up (5 s each) left out
    assert m.median == pytest.approx(0.055) and m.mean == pytest.approx(0.055)
    assert m.min == pytest.approx(0.010) and m.max == pytest.approx(0.100)
    assert m.p10 == pytest.approx(0.019) and m.p90 == pytest.approx(0.091)    # rank 0.9 and 8.1
    assert m.iqr == pytest.approx(0.0775 - 0.0325)
    assert m.throughput == pytest.approx(100 / 0.055)
    s = m.summary()
    assert s["median_s"] == pytest.approx(0.055) and s["items_per_s"] == pytest.approx(100 / 0.055)
    assert "median 55.000 ms" in str(m)


def test_min_time_and_max_repeats():
    clock = FakeClock()
    m = benchmark(lambda: clock.advance(0.25), warmup=0, repeats=2, min_time=1.0, clock=clock)
    assert m.runs == 4                                    # 2 repeats were not enough to reach 1 s
    frozen = FakeClock()                                  # a clock that never moves: min_time is never reached
    m = benchmark(lambda: None, warmup=0, repeats=1, min_time=1.0, max_repeats=7, clock=frozen)
    assert m.runs == 7 and m.throughput is None


@pytest.mark.parametrize("kwargs", [dict(repeats=0), dict(warmup=-1), dict(min_time=-1.0),
                                    dict(repeats=5, max_repeats=4), dict(items=0)])
def test_benchmark_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="benchmark"):
        benchmark(lambda: None, **kwargs)


@settings(max_examples=50, deadline=None)
@given(samples=st.lists(st.floats(0, 1e3), min_size=1, max_size=30), q=st.floats(0, 100))
def test_percentile_matches_numpy(samples, q):
    assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)), rel=1e-9, abs=1e-9)


def test_percentile_errors():
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)


def test_compare_alternates_and_takes_the_ratio_of_medians():
    clock = FakeClock()
    order = []

    def base():
        order.append("A")
        clock.advance(0.002)

    def cand():
        order.append("B")
        clock.advance(0.003)
    c = compare(base, cand, warmup=1, repeats=3, clock=clock)
    assert "".join(order) == "ABABABAB"
    assert c.baseline.runs == 3 and c.ratio == pytest.approx(1.5)


# ---- memory ------------------------------------------------------------------------------------
def test_peak_memory_sees_numpy_arrays():
    size = 4_000_000
    use = peak_memory(lambda: np.zeros(size, dtype=np.uint8) + 1)      # two arrays of 4 MB alive at once
    assert use.peak_bytes >= 2 * size
    assert size <= use.retained_bytes < 1.1 * size                    # the result is still alive
    use = peak_memory(lambda: (np.zeros(size, dtype=np.uint8) + 1).sum())
    assert use.peak_bytes >= 2 * size and use.retained_bytes < size // 10
    assert not tracemalloc.is_tracing()


def test_peak_memory_leaves_a_running_trace_running():
    tracemalloc.start()
    try:
        use = peak_memory(lambda: np.ones(1_000_000, dtype=np.float32))
        assert use.peak_bytes >= 4_000_000
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_resident_memory_is_plausible():
    rss = resident_memory()
    assert rss is not None and rss > 10 * 2**20               # this test process holds numpy and more


# ---- FLOPs ---------------------------------------------------------------------------------------
def test_flop_formulas_by_hand():
    assert flops_matmul(3, 4, 5) == 2 * 3 * 4 * 5 and flops_matmul(3, 4, 5, batch=2) == 240
    assert flops_dense(batch=4, in_features=3, out_features=2) == 48
    # 2 images, 3 -> 4 channels, 3x3 kernel on 5x5, stride 2, padding 1: output 3x3,
    # each output a dot product of length 3*3*3 = 27
    assert conv2d_output_size(5, 5, 3, stride=2, padding=1) == (3, 3)
    assert flops_conv2d(2, 3, 4, 3, 5, 5, stride=2, padding=1) == 2 * 2 * 4 * 9 * 27
    assert flops_conv2d(1, 1, 1, (2, 1), 3, 3) == 2 * (2 * 3) * 2
    # B=2, T=3, d=4: scores 2*2*3*3*4 = 144 and weights@V 144, projections 4 * 2*6*4*4 = 768
    assert flops_attention(2, 3, 4, 2, projections=False) == 288
    assert flops_attention(2, 3, 4, 2) == 288 + 768
    assert flops_attention(1, 2, 4, 1, kv_len=6) == 2 * (2 * 2 * 6 * 4) + 2 * (2 * 2 * 4 * 4) + 2 * (2 * 6 * 4 * 4)


@pytest.mark.parametrize("bad, match", [
    (lambda: flops_dense(2, 0, 3), "in_features"),
    (lambda: flops_conv2d(1, 1, 1, 5, 3, 3), "does not fit"),
    (lambda: flops_conv2d(1, 1, 1, (1, 2, 3), 3, 3), "kernel_size"),
    (lambda: flops_attention(1, 2, 10, 4), "not divisible"),
])
def test_flop_formulas_reject_bad_sizes(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_count_flops_of_a_small_sequential():
    rng = np.random.default_rng(0)
    model = Sequential(Dense(10, 6, rng=rng), ReLU(), Dropout(0.3, rng=rng), Dense(6, 4, rng=rng))
    state = rng.bit_generator.state
    count = count_flops(model, Tensor(np.ones((7, 10), np.float32)))
    assert count.forward == 2 * 7 * 10 * 6 + 2 * 7 * 6 * 4 == 1176
    assert count.training_step == 3 * 1176
    assert [(l.name, l.kind, l.input_shape) for l in count.layers] == [("layers.0", "Dense", (7, 10)),
                                                                       ("layers.3", "Dense", (7, 6))]
    assert count.matmuls(training=True) == [(1, 7, 10, 6), (1, 7, 6, 10), (1, 10, 7, 6),
                                            (1, 7, 6, 4), (1, 7, 4, 6), (1, 6, 7, 4)]
    assert rng.bit_generator.state == state                  # evaluation mode: Dropout drew nothing
    assert model.training and all(m.training for m in model.modules() if hasattr(m, "training"))
    assert "layers.0" in count.table() and count.by_kind() == {"Dense": 1176}


def test_count_flops_of_a_cnn_and_of_attention():
    rng = np.random.default_rng(1)
    cnn = Sequential(Conv2d(3, 6, 5, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Dense(6 * 14 * 14, 10, rng=rng))
    count = count_flops(cnn, Tensor(np.zeros((2, 3, 32, 32), np.float32)))
    assert count.forward == 2 * 2 * 6 * 28 * 28 * (3 * 5 * 5) + 2 * 2 * 1176 * 10
    assert count.layers[0].matmuls == ((1, 6, 75, 2 * 28 * 28),)
    attn = MultiHeadAttention(8, 4, rng=rng)
    q, kv = Tensor(np.zeros((2, 3, 8), np.float32)), Tensor(np.zeros((2, 5, 8), np.float32))
    cross = count_flops(attn, q, kv)
    assert cross.forward == flops_attention(2, 3, 8, 4, kv_len=5)
    assert cross.layers[0].kind == "MultiHeadAttention" and cross.layers[0].matmuls == ((8, 3, 2, 5), (8, 3, 5, 2))
    assert sum(flops_matmul(m, k, n, b) for b, m, k, n in cross.matmuls()) == cross.forward


def test_count_flops_restores_the_model_after_an_error():
    model = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    with pytest.raises(ValueError):
        count_flops(model, Tensor(np.zeros((2, 5), np.float32)))         # wrong width: the layer refuses
    assert all("forward" not in vars(layer) for layer in model.layers)
    assert model.training
    with pytest.raises(ValueError, match="no Dense, Conv2d"):
        count_flops(Sequential(ReLU()), Tensor(np.zeros(3, np.float32)))


def test_count_flops_of_tinygpt_matches_the_formulas():
    from tinytorch.tinygpt import TinyGPT
    B, T, C, L, V, H = 2, 8, 16, 2, 11, 4
    model = TinyGPT(vocab_size=V, d_model=C, num_heads=H, num_layers=L, max_length=T, rng=np.random.default_rng(0))
    count = count_flops(model, Tensor(np.zeros((B, T), np.int64)))
    per_block = flops_attention(B, T, C, H) + flops_dense(B * T, C, 4 * C) + flops_dense(B * T, 4 * C, C)
    assert count.forward == L * per_block + flops_dense(B * T, C, V)


# ---- bounds --------------------------------------------------------------------------------------
def test_step_report_and_roofline_arithmetic():
    assert flop_bound_seconds(3e9, 150.0) == pytest.approx(0.02)
    rep = step_report(0.08, 4e9, 100.0, matmul_seconds=0.05)
    assert rep.bound_seconds == pytest.approx(0.04) and rep.ratio_to_bound == pytest.approx(2.0)
    assert rep.achieved_gflops == pytest.approx(50.0) and rep.fraction_of_peak == pytest.approx(0.5)
    assert rep.ratio_to_matmuls == pytest.approx(1.6) and rep.summary()["bound_ms"] == pytest.approx(40.0)
    assert step_report(0.1, 1e9, 10.0).ratio_to_matmuls is None
    with pytest.raises(ValueError, match="positive"):
        step_report(0.0, 1e9, 10.0)
    with pytest.raises(ValueError, match="peak"):
        flop_bound_seconds(1e9, 0.0)
    assert attainable_gflops(1.0, 100.0, 25.0) == 25.0 and attainable_gflops(10.0, 100.0, 25.0) == 100.0
    p = matmul_roofline_point((3, 2, 4, 5), 1e-6)
    assert p.flops == 2 * 3 * 2 * 4 * 5 and p.bytes_moved == 4 * 3 * (8 + 20 + 10)
    assert p.gflops == pytest.approx(p.flops / 1e-6 / 1e9) and p.label == "3x(2,4)@(4,5)"
    with pytest.raises(ValueError, match="roofline"):
        roofline(1.0, 0.0, 1.0)


def test_machine_measurements_are_real_numbers(tmp_path):
    peak = matmul_peak(128, repeats=2)
    assert math.isfinite(peak) and peak > 0.01
    assert memory_bandwidth(4, repeats=2) > 0.01
    assert time_matmuls([(1, 16, 16, 16), (2, 8, 8, 8)], repeats=2) > 0
    with pytest.raises(ValueError, match="time_matmuls"):
        time_matmuls([(1, 0, 4, 4)])
    info = machine_info()
    assert info["cpus"] >= 1 and info["numpy"] == np.__version__
    fig = plot_roofline([p for p in [matmul_roofline_point((1, 64, 64, 64), 1e-5)]], peak, 10.0, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000 and fig is not None


def test_blas_threads_can_be_set_and_restored():
    before = blas_threads()
    assert before is not None, "numpy's wheels ship OpenBLAS: its thread count should be readable"
    assert set_blas_threads(1) == before
    try:
        assert blas_threads() == 1
    finally:
        set_blas_threads(before)
    assert blas_threads() == before
    with pytest.raises(ValueError, match="at least 1"):
        set_blas_threads(0)


# ---- the profiler --------------------------------------------------------------------------------
def patched_state():
    return (vars(Function)["apply"], vars(Function)["backward"], Autograd.engine,
            {cls: vars(cls).get("backward") for cls in Function.__subclasses__()})


class Outer(Function):
    """Takes 1 s of (fake) time of its own and applies Inner inside its forward."""
    differentiable = False
    clock: FakeClock = None

    def forward(self, x):
        Outer.clock.advance(1.0)
        Inner.apply(Tensor(x))
        return x


class Inner(Function):
    differentiable = False

    def forward(self, x):
        Outer.clock.advance(0.25)
        return x


def test_profiler_counts_self_time_exactly_on_a_fake_clock():
    clock = FakeClock()
    Outer.clock = clock
    with OpProfiler(clock=clock) as prof:
        Outer.apply(Tensor(np.ones(3)))
        Outer.apply(Tensor(np.ones(3)))
        clock.advance(0.5)                                     # time outside any op
    assert prof.stats["Outer"].forward_calls == 2 and prof.stats["Inner"].forward_calls == 2
    assert prof.stats["Outer"].forward_s == pytest.approx(2.0)  # not 2.5: Inner's time is its own
    assert prof.stats["Inner"].forward_s == pytest.approx(0.5)
    assert prof.wall_s == pytest.approx(3.0) and prof.other_s == pytest.approx(0.5)
    assert [s.name for s in prof.rows()] == ["Outer", "Inner"]
    summary = prof.summary()
    assert summary["ops"][0]["share"] == pytest.approx(2.0 / 3.0)


def test_profiler_sees_matmul_forward_and_backward_of_a_training_step(tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential(Dense(5, 4, rng=rng), ReLU(), Dense(4, 3, rng=rng))
    opt, loss_fn = SGD(model.parameters(), lr=0.1), CrossEntropyLoss()
    x, y = Tensor(rng.standard_normal((6, 5)).astype(np.float32)), np.array([0, 1, 2, 0, 1, 2])
    before = patched_state()
    with OpProfiler() as prof:
        for _ in range(2):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert patched_state() == before
    mm = prof.stats["MatMul"]
    assert (mm.forward_calls, mm.backward_calls) == (4, 4)
    assert prof.stats["ReLUFunction"].backward_calls == 2
    assert prof.engine_s >= prof.backward_s > 0 and prof.forward_s > 0
    assert prof.forward_s + prof.engine_s <= prof.wall_s + 1e-9
    table = prof.table(steps=2)
    assert "MatMul" in table and "(autograd engine)" in table and "(outside ops)" in table
    prof.plot(tmp_path / "p.png", steps=2)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_profiler_times_backward_defined_on_an_op_class():
    conv = Conv2d(2, 3, 3, rng=np.random.default_rng(0))
    x = Tensor(np.ones((1, 2, 5, 5), np.float32))
    with OpProfiler() as prof:
        conv(x).sum().backward()
    stat = prof.stats["Conv2dFunction"]
    assert stat.forward_calls == 1 and stat.backward_calls == 1 and stat.backward_s > 0


def test_profiler_restores_everything_after_an_exception():
    before = patched_state()
    with pytest.raises(ValueError):
        with OpProfiler():
            Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))      # shapes do not fit
    assert patched_state() == before
    with OpProfiler():                                             # usable again afterwards
        with pytest.raises(RuntimeError, match="already active"):
            with OpProfiler():
                pass
    assert patched_state() == before


def test_profiler_refuses_ops_on_another_thread_and_names_them():
    """A DataParallel step runs parts on pool threads: one profiler stack cannot time them."""
    from tinytorch.core.kernels import DataParallel
    model = Sequential(Dense(3, 4, rng=np.random.default_rng(0)), ReLU(), Dense(4, 2))
    dp = DataParallel(model, CrossEntropyLoss(), threads=2)
    x, y = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32), np.array([0, 1, 1, 0])
    before = patched_state()
    with pytest.raises(RuntimeError, match="another thread"):
        with OpProfiler():
            dp.backward(x, y)
    assert patched_state() == before
    with OpProfiler() as prof:                                     # one thread: profiled as usual
        DataParallel(model, CrossEntropyLoss(), threads=1).backward(x, y)
    assert prof.stats["MatMul"].forward_calls == 2


# ---- tito bench ----------------------------------------------------------------------------------
def test_tito_bench_quick_writes_a_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["bench", "--quick", "--only", "autograd", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for section in ("# TinyTorch benchmark report", "## Machine", "BLAS threads", "load average at start",
                    "## Summary: each result as a ratio to its lower bounds", "x FLOP bound", "x PyTorch",
                    "## autograd", "matmul 128^2, forward + backward"):
        assert section in report, section
    data = json.loads((out / "report.json").read_text())
    row = next(r for r in data["summary"] if r["benchmark"].startswith("matmul"))
    assert row["flops"] == 3 * 2 * 128 ** 3 and row["ratio_to_bound"] > 0
    assert row["ratio_to_bound"] == pytest.approx(row["ms"] / row["bound_ms"])
    assert (out / "bench_autograd.json").exists() and (out / "ratios.png").stat().st_size > 1000
    assert "## mlp" not in report                                  # --only


def test_tito_bench_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--only", "nonsense"])
    assert exit_info.value.code == 2
    assert "nonsense" in capsys.readouterr().err
