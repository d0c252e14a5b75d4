"""Tests for module 03 (layers): Parameter, Module, Dense, Sequential, Flatten, Dropout.

The end-to-end gradient tests at the bottom need module 05 (tinytorch.core.autograd).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.tensor import Tensor, manual_seed
from tinytorch.core.activations import GELU, ReLU, Softmax, Tanh
from tinytorch.core.layers import (
    Dense, Dropout, Flatten, LoadResult, Module, Parameter, Sequential, StateDictError)


# ---- Parameter --------------------------------------------------------------------------
def test_parameter_is_a_learnable_tensor():
    p = Parameter([[1.0, 2.0]])
    assert isinstance(p, Tensor) and p.requires_grad and p.dtype == np.float32
    assert not Parameter([1.0], requires_grad=False).requires_grad
    assert Parameter(np.ones(2), dtype=np.float64).dtype == np.float64
    assert type(p + 1) is Tensor
    assert repr(p).startswith("Parameter(") and "requires_grad=True" in repr(p)
    with pytest.raises(AttributeError):
        p.extra_attribute = 1          # __slots__: a Parameter adds no attributes


# ---- Module discovery -------------------------------------------------------------------
class Leaf(Module):
    def __init__(self, n=2):
        super().__init__()
        self.w = Parameter(np.ones((n, n)))
        self.b = Parameter(np.zeros(n))
        self.constant = Tensor(np.ones(n))          # not a Parameter: invisible
        self.number = 3

    def forward(self, x):
        return x @ self.w + self.b


class Tree(Module):
    def __init__(self):
        super().__init__()
        self.head = Leaf()
        self.act = ReLU()
        self.blocks = [Leaf(), Tanh(), Leaf()]
        self.pair = (Leaf(),)
        self.extra = [Parameter(np.zeros(3))]
        self.shared = self.head.w                   # tied weights: listed once

    def forward(self, x):
        x = self.act(self.head(x))
        for b in self.blocks:
            x = b(x)
        return self.pair[0](x)


def test_named_parameters_order_and_names():
    names = [n for n, _ in Tree().named_parameters()]
    assert names == ["head.w", "head.b", "blocks.0.w", "blocks.0.b", "blocks.2.w", "blocks.2.b",
                     "pair.0.w", "pair.0.b", "extra.0"]


def test_parameters_are_unique_and_counted():
    t = Tree()
    ps = t.parameters()
    assert len(ps) == len({id(p) for p in ps}) == 9
    assert t.num_parameters() == 4 * (4 + 2) + 3
    assert all(isinstance(p, Parameter) for p in ps)
    assert ps[0] is t.head.w


def test_named_parameters_prefix():
    assert [n for n, _ in Leaf().named_parameters(prefix="enc.")] == ["enc.w", "enc.b"]


def test_children_and_modules():
    t = Tree()
    assert [n for n, _ in t.named_children()] == ["head", "act", "blocks.0", "blocks.1", "blocks.2", "pair.0"]
    assert len(t.children()) == 6
    mods = t.modules()
    assert mods[0] is t and len(mods) == 7
    assert t(Tensor(np.ones((3, 2)))).shape == (3, 2)


def test_train_eval_propagate_and_return_self():
    t = Tree()
    assert t.training
    assert t.eval() is t
    assert all(not m.training for m in t.modules())
    assert t.train() is t
    assert all(m.training for m in t.modules())
    t.train(False)
    assert not t.blocks[1].training


def test_module_without_super_init_still_works():
    class NoInit(Module):
        def forward(self, x):
            return x

    m = NoInit()
    assert m.training and m.parameters() == [] and m.eval() is m and not m.training


def test_forward_not_implemented():
    with pytest.raises(NotImplementedError, match="Module"):
        Module()(Tensor([1.0]))


def test_zero_grad_sets_none():
    t = Tree()
    for p in t.parameters():
        p.grad = Tensor(np.ones(p.shape))
    t.zero_grad()
    assert all(p.grad is None for p in t.parameters())


# ---- state dict -------------------------------------------------------------------------
def test_state_dict_is_an_ordered_copy():
    t = Tree()
    sd = t.state_dict()
    assert list(sd) == [n for n, _ in t.named_parameters()]
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["head.w"][:] = 42
    assert (t.head.w.data == 1).all(), "state_dict returns copies"


def test_state_dict_round_trip_in_place_keeping_dtype():
    manual_seed(0)
    a = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    manual_seed(1)
    b = Sequential(Dense(4, 3), ReLU(), Dense(3, 2))
    weight_array = b[0].weight.data
    result = b.load_state_dict({k: v.astype(np.float64) for k, v in a.state_dict().items()})
    assert isinstance(result, LoadResult) and result.missing_keys == [] and result.unexpected_keys == []
    assert b[0].weight.data is weight_array, "values are copied into the existing arrays"
    assert b[0].weight.dtype == np.float32
    x = Tensor(np.random.default_rng(0).normal(size=(5, 4)))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_accepts_tensors():
    m = Dense(2, 2)
    m.load_state_dict({"weight": Tensor(np.eye(2)), "bias": Tensor([1.0, 2.0])})
    np.testing.assert_array_equal(m.weight.data, np.eye(2))


def test_load_state_dict_missing_key():
    m = Sequential(Dense(2, 3), Dense(3, 1))
    sd = m.state_dict()
    del sd["layers.1.bias"]
    with pytest.raises(StateDictError, match=r"missing keys: \['layers.1.bias'\]"):
        m.load_state_dict(sd)
    with pytest.raises(KeyError):
        m.load_state_dict(sd)
    result = m.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["layers.1.bias"]


def test_load_state_dict_unexpected_key():
    m = Dense(2, 3)
    sd = m.state_dict()
    sd["weight2"] = np.zeros((2, 3))
    with pytest.raises(StateDictError, match=r"unexpected keys: \['weight2'\]"):
        m.load_state_dict(sd)
    assert m.load_state_dict(sd, strict=False).unexpected_keys == ["weight2"]


def test_load_state_dict_wrong_shape_even_when_not_strict_and_nothing_changes():
    m = Sequential(Dense(2, 3), Dense(3, 1))
    before = m.state_dict()
    sd = m.state_dict()
    sd["layers.0.bias"] = np.full(3, 7.0)
    sd["layers.1.weight"] = np.zeros((1, 3))
    for strict in (True, False):
        with pytest.raises(StateDictError, match=r"layers.1.weight: expected shape \(3, 1\), got \(1, 3\)"):
            m.load_state_dict(sd, strict=strict)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_reports_all_problems_at_once():
    m = Dense(2, 3)
    with pytest.raises(StateDictError) as info:
        m.load_state_dict({"weight": np.zeros((3, 2)), "bogus": np.zeros(1)})
    msg = str(info.value)
    assert "missing keys: ['bias']" in msg and "unexpected keys: ['bogus']" in msg
    assert "weight: expected shape (2, 3), got (3, 2)" in msg
    assert not msg.startswith(("'", '"')), "the message is printed without quotes"


# ---- repr -------------------------------------------------------------------------------
def test_nested_repr():
    inner = Sequential(Dense(3, 3), GELU())
    m = Sequential(Flatten(), inner, Dropout(0.1), Softmax())
    assert repr(m) == (
        "Sequential(\n"
        "  (0): Flatten(start_dim=1)\n"
        "  (1): Sequential(\n"
        "    (0): Dense(in_features=3, out_features=3, bias=True)\n"
        "    (1): GELU()\n"
        "  )\n"
        "  (2): Dropout(p=0.1)\n"
        "  (3): Softmax(axis=-1)\n"
        ")")
    assert repr(Dense(2, 5, bias=False)) == "Dense(in_features=2, out_features=5, bias=False)"


# ---- Dense ------------------------------------------------------------------------------
def test_dense_forward_matches_numpy():
    layer = Dense(4, 3, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data + layer.bias.data, rtol=1e-6)
    assert layer(Tensor(x)).dtype == np.float32


def test_dense_shapes_dtype_and_no_bias():
    layer = Dense(5, 7, bias=False, dtype=np.float64)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    assert layer.weight.shape == (5, 7) and layer.weight.dtype == np.float64
    assert layer(Tensor(np.ones((2, 5)), dtype=np.float64)).dtype == np.float64
    assert layer(Tensor(np.ones(5))).shape == (7,)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=0, max_size=3), st.integers(1, 6), st.integers(1, 6))
def test_dense_output_shape_for_random_batch_dims(batch, n_in, n_out):
    layer = Dense(n_in, n_out, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(*batch, n_in))
    y = layer(Tensor(x))
    assert y.shape == (*batch, n_out)
    np.testing.assert_allclose(y.data, x @ layer.weight.data + layer.bias.data, rtol=1e-5, atol=1e-5)


def test_dense_wrong_input_dimension_names_both_shapes():
    layer = Dense(4, 3)
    with pytest.raises(ValueError, match=r"\(2, 5\).*in_features=4.*\(4, 3\)"):
        layer(Tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"in_features=4"):
        layer(Tensor(3.0))


def test_dense_invalid_sizes():
    with pytest.raises(ValueError, match="in_features=0"):
        Dense(0, 3)


def test_dense_he_uniform_init_statistics():
    fan_in = 400
    w = Dense(fan_in, 600, rng=np.random.default_rng(7)).weight.data
    bound = math.sqrt(6 / fan_in)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.mean()) < 0.01 * bound
    assert abs(w.var() / (2 / fan_in) - 1) < 0.03


def test_dense_init_reproducible_with_seed_and_rng():
    manual_seed(3)
    a = Dense(5, 5).weight.data
    manual_seed(3)
    b = Dense(5, 5).weight.data
    assert np.array_equal(a, b)
    c = Dense(5, 5, rng=np.random.default_rng(9)).weight.data
    d = Dense(5, 5, rng=np.random.default_rng(9)).weight.data
    assert np.array_equal(c, d) and not np.array_equal(a, c)


def test_he_init_keeps_relu_signal_scale():
    manual_seed(0)
    x = Tensor(np.random.default_rng(0).normal(size=(512, 256)))
    for _ in range(10):
        x = ReLU()(Dense(256, 256)(x))
    second_moment = float(np.mean(x.data ** 2))
    assert 0.25 < second_moment < 4, second_moment


# ---- Sequential -------------------------------------------------------------------------
def test_sequential_varargs_and_list_are_the_same():
    manual_seed(0)
    a = Sequential(Dense(3, 4), ReLU(), Dense(4, 2))
    manual_seed(0)
    b = Sequential([Dense(3, 4), ReLU(), Dense(4, 2)])
    x = Tensor(np.ones((2, 3)))
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert [n for n, _ in a.named_parameters()] == ["layers.0.weight", "layers.0.bias",
                                                   "layers.2.weight", "layers.2.bias"]


def test_sequential_container_protocol():
    layers = [Dense(3, 4), ReLU(), Dense(4, 2)]
    s = Sequential(*layers)
    assert len(s) == 3 and s[0] is layers[0] and s[-1] is layers[2]
    assert list(s) == layers
    sub = s[1:]
    assert isinstance(sub, Sequential) and len(sub) == 2 and sub[1] is layers[2]
    assert s.append(Tanh()) is s and len(s) == 4 and s.num_parameters() == 3 * 4 + 4 + 4 * 2 + 2
    assert len(Sequential()) == 0
    x = Tensor([1.0])
    assert Sequential()(x) is x


def test_sequential_accepts_plain_callables_and_refuses_non_callables():
    s = Sequential(Dense(2, 2), lambda t: t * 2)
    assert s(Tensor(np.ones((1, 2)))).shape == (1, 2) and len(s.parameters()) == 2
    with pytest.raises(TypeError, match="int"):
        Sequential(Dense(2, 2), 3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=5), st.integers(1, 5))
def test_sequential_composition_matches_layer_by_layer(sizes, batch):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [Dense(a, b, rng=np.random.default_rng(a * 10 + b)), ReLU()]
    model = Sequential(layers)
    x = Tensor(np.random.default_rng(0).normal(size=(batch, sizes[0])))
    expected = x
    for layer in layers:
        expected = layer(expected)
    out = model(x)
    assert out.shape == (batch, sizes[-1])
    np.testing.assert_array_equal(out.data, expected.data)
    assert len(model.parameters()) == 2 * (len(sizes) - 1)


# ---- Flatten ----------------------------------------------------------------------------
def test_flatten_shapes():
    x = Tensor(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    assert Flatten()(x).shape == (2, 60)
    assert Flatten(start_dim=2)(x).shape == (2, 3, 20)
    assert Flatten(start_dim=0)(x).shape == (120,)
    assert Flatten(start_dim=-1)(x).shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(Flatten()(x).data, x.data.reshape(2, -1))
    assert Flatten().parameters() == []


def test_flatten_bad_start_dim():
    with pytest.raises(ValueError, match=r"start_dim=1.*\(4,\)"):
        Flatten()(Tensor(np.ones(4)))


# ---- Dropout ----------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p):
    drop = Dropout(p, rng=np.random.default_rng(0))
    x = Tensor(np.full((500, 400), 3.0))
    out = drop(x).data
    assert out.dtype == np.float32 and out.shape == (500, 400)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(out[kept], 3.0 / (1 - p), rtol=1e-6)
    assert abs(out.mean() - 3.0) < 0.05 * 3.0, "inverted dropout preserves the mean"


def test_dropout_identity_in_eval_and_for_p_zero():
    x = Tensor(np.ones((3, 4)))
    d = Dropout(0.5)
    assert d.eval()(x) is x
    assert d.train()(x) is not x
    assert Dropout(0.0)(x) is x
    model = Sequential(Dense(4, 4), Dropout(0.9)).eval()
    np.testing.assert_array_equal(model(x).data, model[0](x).data)


def test_dropout_masks_differ_between_calls_but_follow_the_seed():
    x = Tensor(np.ones((20, 20)))
    manual_seed(5)
    d = Dropout(0.5)
    a, b = d(x).data, d(x).data
    assert not np.array_equal(a, b)
    manual_seed(5)
    np.testing.assert_array_equal(Dropout(0.5)(x).data, a)


def test_dropout_keeps_float64():
    assert Dropout(0.5)(Tensor(np.ones(10), dtype=np.float64)).dtype == np.float64


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, "0.5", None])
def test_dropout_invalid_p(p):
    with pytest.raises(ValueError, match="p must be"):
        Dropout(p)


# ---- end-to-end gradients (need module 05: tinytorch.core.autograd) -----------------------
def test_dense_gradients_equal_hand_formulas():
    import tinytorch.core.autograd  # noqa: F401  (registers the backward rules)

    rng = np.random.default_rng(0)
    layer = Dense(4, 3, dtype=np.float64, rng=rng)
    x_np, g = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    x = Tensor(x_np, dtype=np.float64, requires_grad=True)
    (layer(x) * Tensor(g, dtype=np.float64)).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, x_np.T @ g, rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(x.grad.data, g @ layer.weight.data.T, rtol=1e-12)


def test_dense_gradient_with_sequence_batch_dims():
    import tinytorch.core.autograd  # noqa: F401

    rng = np.random.default_rng(1)
    layer = Dense(4, 2, dtype=np.float64, rng=rng)
    x_np = rng.normal(size=(3, 5, 4))
    layer(Tensor(x_np, dtype=np.float64)).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, x_np.reshape(-1, 4).sum(axis=0)[:, None] * np.ones((1, 2)),
                               rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, [15.0, 15.0])


def test_dropout_gradient_is_the_scaled_mask():
    import tinytorch.core.autograd  # noqa: F401

    p = 0.4
    x = Tensor(np.ones((30, 30)), requires_grad=True)
    out = Dropout(p, rng=np.random.default_rng(3))(x)
    out.sum().backward()
    mask = (out.data != 0) / (1 - p)
    np.testing.assert_allclose(x.grad.data, mask, rtol=1e-6)


def test_mlp_gradients_reach_every_parameter_and_zero_grad_clears_them():
    import tinytorch.core.autograd  # noqa: F401

    manual_seed(0)
    model = Sequential(Flatten(), Dense(6, 5), ReLU(), Dense(5, 2))
    model(Tensor(np.random.default_rng(0).normal(size=(4, 2, 3)))).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert np.abs(model[3].bias.grad.data - 4).max() == 0, "d(sum)/d(last bias) = batch size"
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_buffers_are_saved_but_not_learnt():
    class Counter(Module):
        def __init__(self):
            super().__init__()
            self.scale = Parameter(np.ones(2))
            self.register_buffer("seen", np.zeros(2))

        def forward(self, x):
            self.seen += 1
            return x * self.scale

    outer = Sequential(Counter(), Counter())
    outer(Tensor([1.0, 2.0]))
    assert [n for n, _ in outer.named_buffers()] == ["layers.0.seen", "layers.1.seen"]
    assert len(outer.parameters()) == 2
    state = outer.state_dict()
    assert state["layers.0.seen"].tolist() == [1.0, 1.0]
    fresh = Sequential(Counter(), Counter())
    fresh.load_state_dict(state)
    assert fresh.layers[1].seen.tolist() == [1.0, 1.0]
    state["layers.1.seen"] = np.zeros(3)
    with pytest.raises(StateDictError, match=r"layers.1.seen: expected shape \(2,\), got \(3,\)"):
        fresh.load_state_dict(state)


def test_activations_are_ordinary_modules_inside_models():
    import tinytorch.core.activations as activations
    assert Module is activations.Module and Parameter is activations.Parameter, "module 03 re-exports module 02's base"
    model = Sequential(Dense(3, 4), ReLU(), Dense(4, 2), Softmax(axis=-1))
    assert [n for n, _ in model.named_children()] == ["layers.0", "layers.1", "layers.2", "layers.3"]
    assert [n for n, _ in model.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert model.modules()[2] is model[1] and list(model.state_dict()) == [n for n, _ in model.named_parameters()]
    model.eval()
    assert not model[1].training and not model[3].training
