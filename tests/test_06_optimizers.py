"""Tests for module 06 (optimizers): SGD, Adam, AdamW, state dicts, LR schedules, clipping."""
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch  # noqa: F401  (autograd on)
from tinytorch.core.layers import Dense, Parameter, Sequential
from tinytorch.core.activations import Tanh
from tinytorch.core.optimizers import (
    SGD, Adam, AdamW, CosineWarmupLR, LRScheduler, Optimizer, StepLR, clip_grad_norm)
from tinytorch.core.tensor import Tensor


def f64(values):
    return Tensor(np.array(values, dtype=np.float64), dtype=np.float64, requires_grad=True)


def apply_grads(opt, params, grads_per_step):
    """Set the given gradients and step, once per entry; the parameters after each step."""
    history = []
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = None if g is None else Tensor(np.array(g, dtype=p.dtype), dtype=p.dtype)
        opt.step()
        history.append([p.data.copy() for p in params])
    return history


# ---- SGD: hand-computed steps -----------------------------------------------------------
def test_sgd_plain_steps():
    p = f64([1.0, -2.0])
    h = apply_grads(SGD([p], lr=0.1), [p], [[[1.0, 1.0]], [[0.5, -1.0]], [[-2.0, 0.0]]])
    np.testing.assert_allclose([s[0] for s in h], [[0.9, -2.1], [0.85, -2.0], [1.05, -2.0]], rtol=1e-14)


def test_sgd_momentum_three_steps():
    p = f64([1.0, 0.0])
    grads = [[[1.0, 2.0]], [[1.0, -1.0]], [[0.0, 0.5]]]
    h = apply_grads(SGD([p], lr=0.1, momentum=0.9), [p], grads)
    # v1 = (1, 2), v2 = (1.9, 0.8), v3 = (1.71, 1.22)
    expected = [[0.9, -0.2], [0.71, -0.28], [0.539, -0.402]]
    np.testing.assert_allclose([s[0] for s in h], expected, rtol=1e-13)


def test_sgd_nesterov_three_steps():
    p = f64([1.0])
    h = apply_grads(SGD([p], lr=0.1, momentum=0.5, nesterov=True), [p], [[[1.0]], [[2.0]], [[-1.0]]])
    # v1 = 1, d1 = 1 + 0.5 = 1.5; v2 = 2.5, d2 = 2 + 1.25 = 3.25; v3 = 0.25, d3 = -1 + 0.125
    np.testing.assert_allclose([s[0][0] for s in h], [0.85, 0.525, 0.6125], rtol=1e-13)


def test_sgd_weight_decay_with_momentum_and_nesterov():
    p = f64([2.0])
    h = apply_grads(SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.5), [p], [[[1.0]], [[1.0]]])
    # step 1: g = 1 + 1 = 2, v = 2, d = 2 + 1.8 = 3.8 -> p = 1.62
    # step 2: g = 1 + 0.81 = 1.81, v = 1.8 + 1.81 = 3.61, d = 1.81 + 3.249 = 5.059 -> p = 1.1141
    np.testing.assert_allclose([s[0][0] for s in h], [1.62, 1.1141], rtol=1e-13)
    assert p.grad.data.tolist() == [1.0], "the L2 term must not be written into p.grad"


def test_sgd_keeps_float32_and_allocates_state_once():
    p = Parameter(np.ones((3, 4)))
    opt = SGD([p], lr=0.1, momentum=0.9)
    buf = opt.state["0.momentum_buffer"]
    assert buf.dtype == np.float32 and buf.shape == (3, 4)
    for _ in range(3):
        p.grad = Tensor(np.full((3, 4), 0.5))
        opt.step()
    assert p.dtype == np.float32 and opt.state["0.momentum_buffer"] is buf
    assert SGD([p], lr=0.1).state == {}, "plain SGD has no state"


# ---- Adam and AdamW: against the textbook formulas ----------------------------------------
def adam_reference(p0, grads, lr, betas=(0.9, 0.999), eps=1e-8, wd=0.0, decoupled=False):
    p, m, v, out = np.array(p0, dtype=np.float64), 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        g = np.array(g, dtype=np.float64)
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g ** 2
        p = p - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
        out.append(p)
    return out


GRADS = [[0.5, -3.0, 1e-4, 0.0], [0.4, 2.0, 2e-4, 0.0], [-1.0, 1.0, 1e-4, 1.0]]


@pytest.mark.parametrize("cls, kwargs, ref", [
    (Adam, {}, {}),
    (Adam, {"betas": (0.5, 0.9), "eps": 1e-3}, {"betas": (0.5, 0.9), "eps": 1e-3}),
    (Adam, {"weight_decay": 0.1}, {"wd": 0.1}),
    (AdamW, {"weight_decay": 0.1}, {"wd": 0.1, "decoupled": True}),
    (AdamW, {"weight_decay": 0.0}, {}),
])
def test_adam_matches_reference(cls, kwargs, ref):
    p0 = [1.0, 2.0, -1.0, 0.5]
    p = f64(p0)
    h = apply_grads(cls([p], lr=0.01, **kwargs), [p], [[g] for g in GRADS])
    np.testing.assert_allclose([s[0] for s in h], adam_reference(p0, GRADS, lr=0.01, **ref), rtol=1e-12, atol=1e-15)


def test_adamw_default_decay_and_difference_from_adam():
    p = f64([1.0])
    assert AdamW([p]).hyper["weight_decay"] == 0.01 and Adam([p]).hyper["weight_decay"] == 0.0
    a, b = f64([3.0]), f64([3.0])
    grads = [[[10.0]]] * 5
    apply_grads(Adam([a], lr=0.1, weight_decay=0.1), [a], grads)
    apply_grads(AdamW([b], lr=0.1, weight_decay=0.1), [b], grads)
    assert b.data[0] < a.data[0], "with a large gradient, L2 decay is divided away; decoupled decay is not"


def test_adam_per_parameter_step_counts_and_skipping():
    a, b = f64([1.0]), f64([1.0])
    opt = Adam([a, b], lr=0.1)
    apply_grads(opt, [a, b], [[[1.0], None], [[1.0], None], [[1.0], [1.0]]])
    assert int(opt.state["0.step"]) == 3 and int(opt.state["1.step"]) == 1 and opt.step_count == 3
    # b took one step: bias correction for t = 1 makes it exactly lr (up to eps)
    np.testing.assert_allclose(b.data, [0.9], rtol=1e-7)
    np.testing.assert_allclose(a.data, adam_reference([1.0], [[1.0]] * 3, lr=0.1)[-1], rtol=1e-12)


def test_step_never_modifies_gradients():
    p = Parameter(np.ones(5))
    g = np.linspace(-1, 1, 5).astype(np.float32)
    for opt in (SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
                Adam([p], weight_decay=0.1), AdamW([p])):
        p.grad = Tensor(g.copy())
        opt.step()
        np.testing.assert_array_equal(p.grad.data, g)
        assert p.dtype == np.float32


def test_gradient_shape_mismatch_is_named():
    p = Parameter(np.ones((2, 3)))
    p.grad = Tensor(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(2, 3\).*\(3, 2\)"):
        Adam([p]).step()


# ---- convergence on least squares ---------------------------------------------------------
def least_squares(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 5)) * np.array([3.0, 2.0, 1.0, 0.7, 0.5])
    y = X @ rng.standard_normal(5) + 0.1 * rng.standard_normal(64)
    return X, y


def fit(make_opt, X, y, steps):
    w = Tensor(np.zeros(X.shape[1]), dtype=np.float64, requires_grad=True)
    opt = make_opt([w])
    Xt, yt = Tensor(X, dtype=np.float64), Tensor(y, dtype=np.float64)
    for _ in range(steps):
        loss = 0.5 * ((Xt @ w - yt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.data


@pytest.mark.parametrize("name, make, steps", [
    ("sgd", lambda ps: SGD(ps, lr=0.15), 1500),
    ("momentum", lambda ps: SGD(ps, lr=0.05, momentum=0.9), 600),
    ("nesterov", lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True), 600),
    ("adam", lambda ps: Adam(ps, lr=0.05), 1500),
    ("adamw-no-decay", lambda ps: AdamW(ps, lr=0.05, weight_decay=0.0), 1500),
])
def test_optimizers_converge_on_least_squares(name, make, steps):
    X, y = least_squares()
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(fit(make, X, y, steps), w_star, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.3),
                                  lambda ps: Adam(ps, lr=0.05, weight_decay=0.3)])
def test_l2_weight_decay_converges_to_the_ridge_solution(make):
    X, y = least_squares(1)
    n = len(y)
    ridge = np.linalg.solve(X.T @ X / n + 0.3 * np.eye(X.shape[1]), X.T @ y / n)
    np.testing.assert_allclose(fit(make, X, y, 1500), ridge, atol=1e-6)


def test_adam_trains_a_small_network():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(128, 1)).astype(np.float32)
    y = np.sin(x)
    model = Sequential(Dense(1, 32, rng=rng), Tanh(), Dense(32, 1, rng=rng))
    opt = Adam(model.parameters(), lr=0.02)
    for _ in range(400):
        loss = ((model(Tensor(x)) - Tensor(y)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 2e-3, loss.item()


# ---- construction errors ------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda p: SGD([p], lr=-0.1), "lr"),
    (lambda p: SGD([p], lr=float("nan")), "lr"),
    (lambda p: SGD([p], lr=0.1, momentum=1.0), "momentum"),
    (lambda p: SGD([p], lr=0.1, nesterov=True), "nesterov"),
    (lambda p: SGD([p], lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda p: Adam([p], betas=(0.9,)), "betas"),
    (lambda p: Adam([p], betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda p: Adam([p], eps=0.0), "eps"),
    (lambda p: SGD([], lr=0.1), "empty"),
    (lambda p: SGD([p, p], lr=0.1), "same tensor twice"),
])
def test_bad_construction_is_refused(build, match):
    p = Parameter(np.ones((2, 2)))
    with pytest.raises(ValueError, match=match):
        build(p)


def test_non_floating_or_non_tensor_parameters_are_refused():
    with pytest.raises(TypeError, match=r"parameter 0 .*int64"):
        Adam([Tensor(np.array([1, 2]))])
    with pytest.raises(TypeError, match="parameter 1 is a ndarray"):
        Adam([Parameter(np.ones(2)), np.ones(2)])
    with pytest.raises(TypeError, match="iterable of parameters"):
        SGD(Parameter(np.ones(2)), lr=0.1)
    with pytest.raises(TypeError, match=r"model.parameters\(\).*not a Sequential"):
        SGD(Sequential(Dense(2, 2)), lr=0.1)


def test_lr_setter_validates_and_repr():
    opt = Adam([Parameter(np.ones(2))], lr=0.1)
    opt.lr = 0.5
    assert opt.lr == 0.5 and opt.hyper["lr"] == 0.5 and "Adam(1 parameters" in repr(opt)
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0


# ---- state_dict / load_state_dict ---------------------------------------------------------
def make_params():
    rng = np.random.default_rng(3)
    return [Parameter(rng.standard_normal((4, 3))), Parameter(rng.standard_normal(3)),
            Parameter(rng.standard_normal((2, 2)))]


def set_grads(params, k):
    for j, p in enumerate(params):
        if k % 3 == 2 and j == 2:                 # parameter 2 sometimes has no gradient
            p.grad = None
        else:
            p.grad = Tensor(np.cos(np.arange(p.size) * (k + 1) + j).reshape(p.shape))


def through_disk(state):
    """What a checkpoint does: buffers through np.savez/np.load, the rest through JSON."""
    f = io.BytesIO()
    np.savez(f, **state["buffers"])
    meta = json.dumps({k: v for k, v in state.items() if k != "buffers"})
    f.seek(0)
    with np.load(f, allow_pickle=False) as npz:
        return {**json.loads(meta), "buffers": {k: npz[k] for k in npz.files}}


OPTIMIZERS = {
    "sgd-momentum": (lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
                     lambda o: StepLR(o, step_size=3, gamma=0.5)),
    "adam": (lambda ps: Adam(ps, lr=0.01, weight_decay=1e-3),
             lambda o: CosineWarmupLR(o, warmup_steps=2, total_steps=8, min_lr=1e-4)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, betas=(0.8, 0.99)), None),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_save_restore_continue_is_bit_identical(name):
    make_opt, make_sched = OPTIMIZERS[name]
    straight = make_params()
    opt = make_opt(straight)
    sched = make_sched(opt) if make_sched else None
    for k in range(10):
        set_grads(straight, k)
        opt.step()
        if sched:
            sched.step()

    first = make_params()
    opt = make_opt(first)
    sched = make_sched(opt) if make_sched else None
    for k in range(5):
        set_grads(first, k)
        opt.step()
        if sched:
            sched.step()
    opt_state = through_disk(opt.state_dict())
    sched_state = json.loads(json.dumps(sched.state_dict())) if sched else None
    weights = [p.data.copy() for p in first]

    second = make_params()                        # fresh parameters, optimizer, scheduler
    for p, w in zip(second, weights):
        p.data[...] = w
    opt2 = make_opt(second)
    sched2 = make_sched(opt2) if make_sched else None
    opt2.load_state_dict(opt_state)
    if sched2:
        sched2.load_state_dict(sched_state)
    assert opt2.lr == opt.lr and opt2.step_count == 5
    for k in range(5, 10):
        set_grads(second, k)
        opt2.step()
        if sched2:
            sched2.step()
    for a, b in zip(straight, second):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_contents_are_copies_and_json_able():
    params = make_params()
    opt = Adam(params, lr=0.01)
    set_grads(params, 0)
    opt.step()
    state = opt.state_dict()
    assert set(state) == {"type", "hyper", "step", "param_shapes", "buffers"}
    assert state["type"] == "Adam" and state["step"] == 1 and state["param_shapes"] == [[4, 3], [3], [2, 2]]
    json.dumps({k: v for k, v in state.items() if k != "buffers"})
    assert state["hyper"]["betas"] == [0.9, 0.999] and state["hyper"]["lr"] == 0.01
    assert sorted(state["buffers"]) == sorted(f"{i}.{n}" for i in range(3) for n in ("exp_avg", "exp_avg_sq", "step"))
    state["buffers"]["0.exp_avg"][...] = 99
    assert not (opt.state["0.exp_avg"] == 99).any(), "state_dict returns copies"


def bad_states():
    params = make_params()
    opt = Adam(params, lr=0.01)
    good = opt.state_dict()

    def edit(fn):
        s = json.loads(json.dumps({k: v for k, v in good.items() if k != "buffers"}))
        s["buffers"] = {k: v.copy() for k, v in good["buffers"].items()}
        fn(s)
        return s

    return opt, [
        (edit(lambda s: s.update(type="SGD")), r"type: SGD in the state, Adam here"),
        (edit(lambda s: s["param_shapes"].pop()), r"parameter shapes: \[\(4, 3\), \(3,\)\] in the state"),
        (edit(lambda s: s["param_shapes"].__setitem__(1, [4])), r"parameter shapes: \[\(4, 3\), \(4,\), \(2, 2\)\] in the state, \[\(4, 3\), \(3,\)"),
        (edit(lambda s: s["buffers"].pop("2.exp_avg_sq")), r"buffer 2.exp_avg_sq: missing in the state"),
        (edit(lambda s: s["buffers"].update({"3.exp_avg": np.zeros(1)})), r"buffer 3.exp_avg: \(1,\) in the state, none here"),
        (edit(lambda s: s["buffers"].update({"1.exp_avg": np.zeros(5)})), r"buffer 1.exp_avg: \(5,\) in the state, \(3,\) here"),
        (edit(lambda s: s["hyper"].pop("eps")), "hyperparameters"),
        (edit(lambda s: s.pop("buffers")), "has no"),
        ([1, 2, 3], "expected a dict"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_load_state_dict_errors_name_the_problem_and_change_nothing(case):
    opt, cases = bad_states()
    state, match = cases[case]
    opt.state["0.exp_avg"][...] = 7.0
    before = {k: v.copy() for k, v in opt.state.items()}
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    for k, v in before.items():
        np.testing.assert_array_equal(opt.state[k], v)
    assert opt.lr == 0.01


# ---- schedules ----------------------------------------------------------------------------
def lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.optimizer.lr)
        sched.step()
    return out


def test_step_lr_point_by_point():
    opt = SGD([Parameter(np.ones(1))], lr=0.8)
    sched = StepLR(opt, step_size=3, gamma=0.5)
    assert lrs(sched, 10) == [0.8] * 3 + [0.4] * 3 + [0.2] * 3 + [0.1]
    assert sched.get_lr() == 0.1 and sched.lr_at(0) == 0.8 and sched.base_lr == 0.8


def cosine_reference(t, base, W, T, lo):
    if t < W:
        return base * (t + 1) / W
    if t >= T:
        return lo
    return lo + 0.5 * (base - lo) * (1 + math.cos(math.pi * (t - W) / (T - W)))


@pytest.mark.parametrize("W, T, lo", [(5, 20, 0.0), (3, 10, 0.01), (0, 6, 0.0), (1, 2, 0.05)])
def test_cosine_warmup_point_by_point(W, T, lo):
    opt = Adam([Parameter(np.ones(1))], lr=0.1)
    sched = CosineWarmupLR(opt, warmup_steps=W, total_steps=T, min_lr=lo)
    got = lrs(sched, T + 5)
    np.testing.assert_allclose(got, [cosine_reference(t, 0.1, W, T, lo) for t in range(T + 5)], rtol=1e-12, atol=1e-15)
    if W:
        assert got[0] == pytest.approx(0.1 / W) and got[W - 1] == pytest.approx(0.1)
    assert got[W] == pytest.approx(0.1), "the cosine starts at the base rate"
    assert got[T:] == [lo] * 5, "after total_steps the rate stays at min_lr"
    assert all(a >= b for a, b in zip(got[W:], got[W + 1:])), "monotone decay"


def test_cosine_exact_midpoint():
    opt = SGD([Parameter(np.ones(1))], lr=1.0)
    sched = CosineWarmupLR(opt, warmup_steps=2, total_steps=12, min_lr=0.2)
    assert sched.lr_at(7) == pytest.approx(0.6) and sched.lr_at(2) == 1.0 and sched.lr_at(12) == 0.2


@pytest.mark.parametrize("build, match", [
    (lambda o: CosineWarmupLR(o, warmup_steps=5, total_steps=5), "total_steps"),
    (lambda o: CosineWarmupLR(o, warmup_steps=-1, total_steps=5), "warmup_steps"),
    (lambda o: CosineWarmupLR(o, warmup_steps=1, total_steps=5, min_lr=1.0), "min_lr"),
    (lambda o: StepLR(o, step_size=0), "step_size"),
    (lambda o: StepLR(o, step_size=2.5), "step_size"),
])
def test_scheduler_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build(SGD([Parameter(np.ones(1))], lr=0.5))


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="expected an Optimizer"):
        StepLR([Parameter(np.ones(1))], step_size=2)
    with pytest.raises(NotImplementedError):
        LRScheduler(SGD([Parameter(np.ones(1))], lr=0.5))


def test_scheduler_state_round_trip_and_mismatch():
    opt = SGD([Parameter(np.ones(1))], lr=1.0)
    sched = CosineWarmupLR(opt, warmup_steps=2, total_steps=10)
    lrs(sched, 4)
    state = json.loads(json.dumps(sched.state_dict()))
    opt2 = SGD([Parameter(np.ones(1))], lr=1.0)
    sched2 = CosineWarmupLR(opt2, warmup_steps=2, total_steps=10)
    sched2.load_state_dict(state)
    assert sched2.last_step == 4 and opt2.lr == opt.lr and lrs(sched2, 6) == lrs(sched, 6)
    with pytest.raises(ValueError, match="expected the state of"):
        CosineWarmupLR(SGD([Parameter(np.ones(1))], lr=1.0), warmup_steps=3, total_steps=10).load_state_dict(state)
    with pytest.raises(ValueError, match="expected the state of"):
        StepLR(SGD([Parameter(np.ones(1))], lr=1.0), step_size=2).load_state_dict(state)


# ---- clip_grad_norm -----------------------------------------------------------------------
def test_clip_grad_norm_scales_all_gradients_together():
    a, b, c = Parameter(np.zeros((2, 2))), Parameter(np.zeros(3)), Parameter(np.zeros(1))
    a.grad = Tensor(np.full((2, 2), 1.5))             # squared norm 9
    b.grad = Tensor([0.0, 4.0, 0.0])                 # 16; c has no grad: ignored
    norm = clip_grad_norm([a, b, c], max_norm=2.5)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.data, np.full((2, 2), 0.75), rtol=1e-5)
    np.testing.assert_allclose(b.grad.data, [0.0, 2.0, 0.0], rtol=1e-5)
    assert c.grad is None and a.grad.dtype == np.float32
    before = a.grad.data.copy()
    assert clip_grad_norm([a, b], max_norm=100.0) == pytest.approx(2.5, rel=1e-5)
    np.testing.assert_array_equal(a.grad.data, before)


def test_clip_grad_norm_non_finite_and_bad_max_norm():
    a = Parameter(np.zeros(2))
    a.grad = Tensor([np.inf, 1.0])
    assert clip_grad_norm([a], 1.0) == math.inf
    assert a.grad.data[1] == 1.0, "a non-finite norm leaves the gradients alone"
    a.grad = Tensor([np.nan, 1.0])
    assert math.isnan(clip_grad_norm([a], 1.0))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm([a], bad)
    assert clip_grad_norm([Parameter(np.zeros(2))], 1.0) == 0.0, "no gradients: norm 0"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.floats(0.01, 10.0), st.integers(0, 2 ** 16))
def test_clip_grad_norm_property(sizes, max_norm, seed):
    rng = np.random.default_rng(seed)
    params = [Parameter(np.zeros(n)) for n in sizes]
    raw = [rng.standard_normal(n) * rng.uniform(0.01, 20) for n in sizes]
    for p, g in zip(params, raw):
        p.grad = Tensor(g)
    total = math.sqrt(sum(float((g.astype(np.float32).astype(np.float64) ** 2).sum()) for g in raw))
    norm = clip_grad_norm(params, max_norm)
    assert norm == pytest.approx(total, rel=1e-5)
    after = math.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum()) for p in params))
    assert after <= max_norm * (1 + 1e-5) + 1e-6
    scale = min(1.0, max_norm / total) if total else 1.0
    for p, g in zip(params, raw):
        np.testing.assert_allclose(p.grad.data, g.astype(np.float32) * scale, rtol=1e-4, atol=1e-6)


def test_optimizer_base_requires_update():
    class Nothing(Optimizer):
        pass

    p = Parameter(np.ones(1))
    p.grad = Tensor([1.0])
    with pytest.raises(NotImplementedError, match="Nothing"):
        Nothing([p], {"lr": 0.1}).step()
