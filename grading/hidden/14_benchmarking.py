# Hidden tests of module 14_benchmarking. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-timing
# Hidden: percentiles of other sample counts and q against numpy; an injected clock that does not start at 0; the
# min_time boundary (reached exactly: stop); the max_repeats cap; no warm-up; no items, no throughput; even counts.
rng_h = np.random.default_rng(1401)
for n_h in (1, 2, 5, 6, 11):
    samples_h = rng_h.random(n_h).tolist()
    for q_h in (0, 10, 25, 33.3, 50, 75, 90, 99, 100):
        assert math.isclose(percentile(samples_h, q_h), float(np.percentile(samples_h, q_h)), rel_tol=1e-12,
                            abs_tol=1e-15), (n_h, q_h)
assert percentile((3.0, 1.0, 2.0), 50) == 2.0 and percentile([4.0, 1.0], 25) == 1.75


class ClockH:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


clk_h = ClockH()
steps_h = iter([0.5, 0.25, 0.25, 0.25, 0.25, 0.25])
m_h = benchmark(lambda: setattr(clk_h, "now", clk_h.now + next(steps_h)), warmup=0, repeats=2, min_time=1.0, clock=clk_h)
assert m_h.samples == (0.5, 0.25, 0.25), m_h.samples          # 0.5 + 0.25 + 0.25 reaches min_time = 1.0 exactly
assert m_h.warmup == 0 and m_h.throughput is None
clk_h = ClockH()
m_h = benchmark(lambda: setattr(clk_h, "now", clk_h.now + 0.001), warmup=1, repeats=3, min_time=100.0, max_repeats=7,
                clock=clk_h)
assert m_h.runs == 7, m_h.runs                                  # min_time is not reached, max_repeats stops it
calls_h = []
m_h = benchmark(lambda: calls_h.append(1), warmup=4, repeats=9, clock=ClockH())
assert m_h.runs == 9 and len(calls_h) == 13 and m_h.samples == (0.0,) * 9
even_h = Measurement((0.004, 0.001, 0.003, 0.002), items=10)
assert math.isclose(even_h.median, 0.0025) and math.isclose(even_h.iqr, 0.0015) and math.isclose(even_h.throughput, 4000)

# %% grade_id: test-memory
# Hidden: measured while tracemalloc already traces (and is left tracing), with a large array allocated before the
# call and kept alive, after an even larger peak: only what the call itself allocates counts.
tracemalloc.start()
try:
    held_h = np.ones(2_000_000)                                    # 16 MB allocated before the call, kept during it
    big_h = np.ones(3_000_000)                                     # a 24 MB peak before the call
    del big_h
    use_h = peak_memory(lambda: np.zeros(100_000).sum())           # 0.8 MB, freed
    still_h = tracemalloc.is_tracing()
    keep_h = []
    use2_h = peak_memory(lambda: keep_h.append(np.zeros(500_000)))  # 4 MB, kept
finally:
    tracemalloc.stop()
del held_h
assert still_h, "a profiler that was tracing keeps tracing"
assert 800_000 <= use_h.peak_bytes < 3_000_000 and use_h.retained_bytes < 200_000, use_h
assert 4_000_000 <= use2_h.retained_bytes < 5_000_000 and use2_h.peak_bytes < 6_000_000, use2_h
none_h = peak_memory(lambda: None)
assert none_h.peak_bytes < 100_000 and abs(none_h.retained_bytes) < 100_000, none_h

# %% grade_id: test-flops
# Hidden: FLOP counts of shapes the visible tests do not use: batched products, rectangular kernels with stride and
# padding pairs, a strided 1x1 convolution, cross-attention (kv_len != seq_len) with and without projections.
assert flops_matmul(7, 11, 13, batch=3) == 2 * 3 * 7 * 11 * 13 and flops_dense(33, 17, 9) == 2 * 33 * 17 * 9
assert conv2d_output_size(9, 7, (3, 5), stride=(2, 1), padding=(1, 2)) == (5, 7)
assert flops_conv2d(4, 3, 6, (3, 5), 9, 7, stride=(2, 1), padding=(1, 2)) == 2 * 4 * 6 * (5 * 7) * (3 * 3 * 5)
assert flops_conv2d(2, 16, 32, 1, 8, 8, stride=2) == 2 * 2 * 32 * (4 * 4) * 16
# B=2, Tq=3, Tk=5, d=8: core 2 * (2*2*3*8*5); q and out projections on 6 rows, k and v projections on 10 rows
assert flops_attention(2, 3, 8, 2, kv_len=5) == 2 * (2 * 2 * 3 * 8 * 5) + 2 * (2 * 6 * 8 * 8) + 2 * (2 * 10 * 8 * 8)
assert flops_attention(3, 7, 12, 3, kv_len=2, projections=False) == 2 * (2 * 3 * 7 * 12 * 2)
assert flops_attention(1, 4, 6, 6) == flops_attention(1, 4, 6, 1) == 2 * (2 * 4 * 6 * 4) + 4 * (2 * 4 * 6 * 6)

# %% grade_id: test-count-flops
# Hidden: the products listed per layer (not only their FLOP sum), a strided rectangular convolution in a nested
# model, Dense on 3-D inputs, cross-attention with keys of another length, and evaluation modes restored.
rng_h = np.random.default_rng(1404)
inner_h = Sequential(Conv2d(2, 3, (3, 2), stride=2, padding=1, rng=rng_h), ReLU())
net_h = Sequential(inner_h, Flatten(), Dense(3 * 4 * 5, 4, rng=rng_h))     # conv output (3, 4, 5)
net_h.eval()
cnt_h = count_flops(net_h, Tensor(np.zeros((5, 2, 7, 8), np.float32)))
assert [layer.name for layer in cnt_h.layers] == ["layers.0.layers.0", "layers.2"]
assert cnt_h.layers[0].input_shape == (5, 2, 7, 8) and cnt_h.layers[0].kind == "Conv2d"
assert cnt_h.forward == 2 * 3 * (2 * 3 * 2) * (5 * 4 * 5) + 2 * 5 * 60 * 4
assert cnt_h.matmuls() == [(1, 3, 12, 100), (1, 5, 60, 4)], cnt_h.matmuls()
assert not net_h.training and not inner_h.layers[0].training
dense_h = count_flops(Dense(6, 4, rng=rng_h), Tensor(np.zeros((2, 3, 6), np.float32)))
assert dense_h.forward == 2 * 6 * 6 * 4 and dense_h.matmuls() == [(1, 6, 6, 4)]
attn_h = MultiHeadAttention(8, 2, rng=rng_h)
cross_h = count_flops(attn_h, Tensor(np.zeros((2, 3, 8), np.float32)), Tensor(np.zeros((2, 5, 8), np.float32)))
assert cross_h.forward == flops_attention(2, 3, 8, 2, kv_len=5), cross_h.forward
assert cross_h.layers[0].kind == "MultiHeadAttention" and cross_h.layers[0].matmuls == ((4, 3, 4, 5), (4, 3, 5, 4))
assert sum(flops_matmul(m, k, n, b) for b, m, k, n in cross_h.matmuls()) == cross_h.forward

# %% grade_id: test-bounds
# Hidden: bounds, reports and the roofline with other numbers; the matmul peak in GFLOP/s against an inline timing
# (a wrong unit is a factor of 1000).
assert math.isclose(flop_bound_seconds(3e9, 1.5), 2.0) and math.isclose(flop_bound_seconds(1e6, 1e3), 1e-6)
assert attainable_gflops(2.0, 50.0, 10.0) == 20.0 and attainable_gflops(5.0, 50.0, 10.0) == 50.0
assert attainable_gflops(10.0, 50.0, 10.0) == 50.0
rep_h = step_report(0.2, 1e9, 20.0)
assert math.isclose(rep_h.bound_seconds, 0.05) and math.isclose(rep_h.ratio_to_bound, 4.0) and rep_h.ratio_to_matmuls is None
a_h = np.ones((192, 192), np.float32)
o_h = np.empty_like(a_h)
previous_h = set_blas_threads(1) if blas_threads() is not None else None   # one thread: steadier on a busy machine
try:
    inline_h = peak_h = 0.0
    for _ in range(3):                                  # interleaved, best of each
        for _ in range(3):
            t0_h = time.perf_counter()
            np.matmul(a_h, a_h, out=o_h)
            inline_h = max(inline_h, 2 * 192 ** 3 / (time.perf_counter() - t0_h) / 1e9)
        peak_h = max(peak_h, matmul_peak(192, repeats=3))
finally:
    if previous_h is not None:
        set_blas_threads(previous_h)
assert inline_h / 100 < peak_h < inline_h * 100, (peak_h, inline_h)

# %% grade_id: test-profiler
# Hidden: self times with an injected clock: a nested op's time is excluded from its parent's, forward and backward
# are counted apart, and an op that raises is still counted and leaves nothing behind (the next call counts normally).
class ClockP:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


clk_h = ClockP()
prof_h = OpProfiler(clock=clk_h)
owner_a_h, owner_b_h = object(), object()


def inner_h():
    clk_h.now += 2.0
    return "inner"


def outer_h():
    clk_h.now += 1.0
    got = prof_h._timed("Inner", "backward", owner_b_h, inner_h)
    clk_h.now += 4.0
    return got


def failing_h():
    clk_h.now += 3.0
    raise KeyError("boom")


assert prof_h._timed("Outer", "forward", owner_a_h, outer_h) == "inner"
assert prof_h._timed("Outer", "forward", owner_a_h, lambda: setattr(clk_h, "now", clk_h.now + 0.5)) is None
st_o_h, st_i_h = prof_h.stats["Outer"], prof_h.stats["Inner"]
assert (st_o_h.forward_calls, st_o_h.backward_calls) == (2, 0) and math.isclose(st_o_h.forward_s, 5.5), st_o_h
assert st_o_h.backward_s == 0
assert (st_i_h.forward_calls, st_i_h.backward_calls) == (0, 1) and math.isclose(st_i_h.backward_s, 2.0), st_i_h
assert st_i_h.forward_s == 0
try:
    prof_h._timed("Failing", "backward", owner_a_h, failing_h)
    raise AssertionError("the error must reach the caller")
except KeyError:
    pass
assert prof_h.stats["Failing"].backward_calls == 1 and math.isclose(prof_h.stats["Failing"].backward_s, 3.0)
assert prof_h._timed("Outer", "forward", owner_a_h, outer_h) == "inner"     # after the failure: counted as before
assert prof_h.stats["Outer"].forward_calls == 3 and math.isclose(prof_h.stats["Outer"].forward_s, 10.5)
assert prof_h.stats["Inner"].backward_calls == 2 and math.isclose(prof_h.stats["Inner"].backward_s, 4.0)
