"""Tests for module 16 (TinyGPT): tokenizer, embedding, positional encoding, transformer
block, the model (causality, KV cache, sliding window), loss, sampling, save/load, and
training on text (overfitting, exact resume).

The one new differentiable op is `EmbeddingFunction`; `GRADCHECK_CASES` checks it and the
compositions of this module in float64 (test_05_gradcheck gathers the dict too). All data
is generated here: no network, no shared data directory.
"""
import json
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The import list every TinyGPT user relies on.
from tinytorch.core.tensor import Tensor
from tinytorch.core.layers import Dense
from tinytorch.core.activations import ReLU, Softmax
from tinytorch.core.optimizers import Adam
from tinytorch.core.training import CheckpointError, Trainer, save_npz_checkpoint
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.tinygpt import CharTokenizer, MultiHeadAttention, TinyGPT

import tinytorch.core.attention
import tinytorch.core.normalization
import tinytorch.tinygpt as tg
from graph_helpers import gradcheck_test, t64
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Sequential
from tinytorch.tinygpt import (
    DEFAULT_CHARS, Embedding, EmbeddingFunction, LanguageModelLoss, LanguageModelTrainer,
    PositionalEncoding, TextWindows, TransformerBlock, UnknownCharacterError, generate_tokens,
    greedy, sample_next, shift_targets, top_k_filter, top_p_filter)

F64 = np.float64


def small_gpt(seed=0, **kw):
    cfg = dict(tokenizer=CharTokenizer(), d_model=32, num_heads=4, num_layers=2, max_length=16)
    cfg.update(kw)
    return TinyGPT(**cfg, rng=np.random.default_rng(seed))


def ids(*shape, high=97, seed=0):
    return np.random.default_rng(seed).integers(0, high, size=shape)


# ---- gradient checks ---------------------------------------------------------------------
def _embedding_case():
    emb = Embedding(7, 3, dtype=F64, rng=np.random.default_rng(0))
    index = np.array([[0, 6, 6, 2], [2, 2, 0, 5]])          # repeats: gradients add up
    return (lambda w: emb(index)), [emb.weight]


def _positional_learned_case():
    pe = PositionalEncoding(6, 4, learned=True, dtype=F64, rng=np.random.default_rng(1))
    x = t64(2, 3, 4, seed=2)
    return (lambda x, w: pe(x, offset=2) * x), [x, pe.weight]


def _positional_sinusoidal_case():
    pe = PositionalEncoding(5, 4, dtype=F64)
    x = t64(2, 5, 4, seed=3)
    return (lambda x: pe(x) * pe(x)), [x]


def _block_case():
    block = TransformerBlock(8, 2, ff_dim=12, dtype=F64, rng=np.random.default_rng(4))
    x = t64(2, 3, 8, seed=5)
    return (lambda x, w1, w2: block(x)), [x, block.ff[0].weight, block.attn.q_proj.weight]


def _tinygpt_case():
    model = TinyGPT(vocab_size=7, d_model=8, num_heads=2, num_layers=1, max_length=4, dtype=F64,
                    rng=np.random.default_rng(6))
    index = np.array([[1, 5, 5, 0], [3, 1, 6, 6]])
    params = [model.token_embedding.weight, model.positions.weight, model.head.weight,
              model.blocks[0].ln1.parameters()[0]]
    return (lambda *p: model(index)), params


def _lm_loss_case():
    logits = t64(2, 3, 5, seed=7)
    targets = np.array([[0, 4, 4], [2, -1, 1]])
    return (lambda z: LanguageModelLoss(ignore_index=-1)(z, targets)), [logits]


GRADCHECK_CASES = {
    "embedding_repeated_ids": _embedding_case,
    "positional_learned_offset": _positional_learned_case,
    "positional_sinusoidal": _positional_sinusoidal_case,
    "transformer_block": _block_case,
    "tinygpt_logits": _tinygpt_case,
    "lm_loss_ignore_index": _lm_loss_case,
}


test_gradcheck = gradcheck_test(GRADCHECK_CASES)


def test_embedding_backward_equals_add_at_reference():
    rng = np.random.default_rng(0)
    weight = Tensor(rng.standard_normal((11, 5)), requires_grad=True)
    index = rng.integers(0, 11, size=(4, 9))
    upstream = rng.standard_normal((4, 9, 5)).astype(np.float32)
    EmbeddingFunction.apply(weight, ids=index).backward(upstream)
    expected = np.zeros((11, 5), dtype=np.float32)
    np.add.at(expected, index.reshape(-1), upstream.reshape(-1, 5))
    assert np.allclose(weight.grad.data, expected, atol=1e-5)


# ---- the import list ----------------------------------------------------------------------
def test_public_imports_and_reexports():
    assert tg.LayerNorm is tinytorch.core.normalization.LayerNorm
    assert MultiHeadAttention is tinytorch.core.attention.MultiHeadAttention
    assert all(callable(c) for c in (Tensor, Dense, ReLU, Softmax, Adam, Trainer, CrossEntropyLoss))
    block = small_gpt().blocks[0]
    assert isinstance(block.attn, tinytorch.core.attention.MultiHeadAttention)
    assert isinstance(block.ln1, tinytorch.core.normalization.LayerNorm)


# ---- tokenizer -----------------------------------------------------------------------------
def test_tokenizer_default_round_trip():
    tok = CharTokenizer()
    text = "Hello, TinyTorch!"
    encoded = tok.encode(text)
    assert encoded.dtype == np.int64 and encoded.shape == (len(text),)
    assert tok.decode(encoded) == text
    assert tok.vocab_size == len(DEFAULT_CHARS) == 97
    assert tok.decode(tok.encode(DEFAULT_CHARS)) == DEFAULT_CHARS
    assert tok.encode("").shape == (0,) and tok.decode([]) == ""


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(DEFAULT_CHARS)), max_size=200))
def test_tokenizer_round_trip_property(text):
    tok = CharTokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_tokenizer_fit_sorted_unique():
    tok = CharTokenizer().fit("banana\nBAND")
    assert tok.chars == tuple(sorted(set("banana\nBAND")))
    assert tok.decode(tok.encode("nab\nDAB")) == "nab\nDAB"
    with pytest.raises(ValueError):
        CharTokenizer().fit("")


def test_tokenizer_unknown_characters_are_named():
    tok = CharTokenizer().fit("abc def")
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("a café → bed")
    message = str(info.value)
    assert "'é'" in message and "'→'" in message and "7-character vocabulary" in message
    assert "position 5" in message and "unknown='?'" in message
    with pytest.raises(UnknownCharacterError):
        CharTokenizer().encode("emoji 😀")


def test_tokenizer_unknown_token_policy():
    tok = CharTokenizer("abc ", unknown="?")
    assert tok.vocab_size == 5 and tok.chars[-1] == "?"
    assert tok.decode(tok.encode("a béc ✓")) == "a b?c ?"
    fitted = CharTokenizer(unknown="~").fit("xyz")
    assert "~" in fitted.chars and fitted.decode(fitted.encode("xqz")) == "x~z"


def test_tokenizer_decode_checks_ids():
    tok = CharTokenizer("ab")
    with pytest.raises(ValueError):
        tok.decode([0, 2, 7])
    with pytest.raises(ValueError):
        tok.decode(np.zeros((2, 3), dtype=np.int64))
    assert tok.decode(Tensor(np.array([1, 0, 1]))) == "bab"


def test_tokenizer_bad_vocabulary():
    with pytest.raises(ValueError):
        CharTokenizer("aba")
    with pytest.raises(TypeError):
        CharTokenizer("ab", unknown="??")


def test_tokenizer_json_round_trip():
    tok = CharTokenizer("zyx\n", unknown="?")
    again = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again == tok and again.chars == ("z", "y", "x", "\n", "?")
    with pytest.raises(ValueError):
        CharTokenizer.from_dict({"type": "BPE", "merges": []})


# ---- embedding and positions -----------------------------------------------------------
def test_embedding_lookup_and_errors():
    emb = Embedding(5, 3, rng=np.random.default_rng(0))
    out = emb(Tensor(np.array([[4, 0]])))
    assert out.shape == (1, 2, 3) and np.array_equal(out.data[0, 0], emb.weight.data[4])
    with pytest.raises(IndexError):
        emb(np.array([-1, 2, 5]))
    with pytest.raises(TypeError):
        emb(np.array([0.5, 1.0]))


def test_positional_encoding_limits():
    pe = PositionalEncoding(8, 4)
    with pytest.raises(ValueError):
        pe(Tensor(np.zeros((1, 9, 4))))
    with pytest.raises(ValueError):
        pe(Tensor(np.zeros((1, 3, 4))), offset=6)
    with pytest.raises(ValueError):
        pe(Tensor(np.zeros((1, 3, 5))))
    table = tg.sinusoidal_table(8, 5)                        # odd width works too
    assert table.shape == (8, 5) and np.allclose(table[:, 4], np.sin(np.arange(8) / 10000 ** (4 / 5)))


# ---- the model ---------------------------------------------------------------------------
def test_model_shapes_and_parameter_count():
    model = TinyGPT(vocab_size=100, d_model=128, num_layers=6, rng=np.random.default_rng(0))
    C, V, T, L = 128, 100, 64, 6
    assert model.num_parameters() == V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C + C * V + V
    logits = small_gpt()(ids(3, 10))
    assert logits.shape == (3, 10, 97) and logits.dtype == np.float32
    assert small_gpt()(ids(10)).shape == (1, 10, 97), "1-D ids are one sequence"


def test_model_is_causal():
    model = small_gpt(seed=1)
    x = ids(2, 16, seed=1)
    base = model(x).data
    for t in (0, 7, 15):
        changed = x.copy()
        changed[:, t:] = (changed[:, t:] + 13) % 97
        out = model(changed).data
        assert np.allclose(out[:, :t], base[:, :t], atol=1e-5), f"positions before {t} must not change"
        assert not np.allclose(out[:, t], base[:, t], atol=1e-3)


def test_model_input_errors():
    model = small_gpt()
    with pytest.raises(ValueError):
        model(ids(1, 17))
    with pytest.raises(IndexError):
        model(np.array([[3, 97]]))
    with pytest.raises(ValueError):
        TinyGPT(vocab_size=50, tokenizer=CharTokenizer())
    with pytest.raises(ValueError):
        TinyGPT(vocab_size=10, num_layers=0)
    with pytest.raises(ValueError):
        TinyGPT(vocab_size=10, d_model=30, num_heads=4)


def test_transformer_block_from_modules():
    block = TransformerBlock(attention=MultiHeadAttention(d_model=16, num_heads=8, rng=np.random.default_rng(0)),
                             feedforward=Sequential([Dense(16, 64), ReLU(), Dense(64, 16)]))
    x = np.random.default_rng(1).standard_normal((2, 6, 16)).astype(np.float32)
    y = block(Tensor(x)).data
    x2 = x.copy()
    x2[:, 4:] = 0
    assert np.allclose(block(Tensor(x2)).data[:, :4], y[:, :4], atol=1e-5), "the block adds the causal mask"
    with pytest.raises(ValueError):
        TransformerBlock(8, attention=MultiHeadAttention(16, 4))
    with pytest.raises(ValueError):
        TransformerBlock()


def test_kv_cache_matches_full_recomputation():
    model = small_gpt(seed=2)
    x = ids(3, 16, seed=2)
    with no_grad():
        full = model(x).data
        caches = model.new_caches(3)
        parts = [model(x[:, :6], caches=caches).data]
        parts += [model(x[:, t:t + 1], caches=caches).data for t in range(6, 12)]
        parts.append(model(x[:, 12:], caches=caches).data)          # a chunk of 4 after the cache
    assert np.abs(np.concatenate(parts, axis=1) - full).max() < 1e-5
    with no_grad(), pytest.raises(ValueError):
        model(x[:, :1], caches=caches)


def test_cached_greedy_equals_uncached_inside_the_window():
    model = small_gpt(seed=3)
    prompt = ids(2, 4, seed=3)
    cached = generate_tokens(model, prompt, 12, temperature=0)
    plain = generate_tokens(model, prompt, 12, temperature=0, use_cache=False)
    assert np.array_equal(cached, plain)


def _windowed_reference(model, prompt, n, keep):
    """Greedy generation without a cache, following the documented window rule."""
    tokens, start = list(prompt), 0
    L = model.max_length
    start = max(0, len(tokens) - L)
    for _ in range(n):
        pos = len(tokens)
        if pos - start > L:
            start = pos - keep
        with no_grad():
            logits = model(np.array(tokens[start:pos])).data[0, -1]
        tokens.append(int(np.argmax(logits)))
    return np.array(tokens)


@pytest.mark.parametrize("keep", [None, 3, 15, 16])
def test_sliding_window_beyond_the_context(keep):
    model = small_gpt(seed=4)
    prompt = ids(20, seed=4)                                   # longer than max_length=16
    out = generate_tokens(model, prompt[None], 30, temperature=0, window_keep=keep)
    assert out.shape == (1, 50) and np.array_equal(out[0, :20], prompt)
    expected = _windowed_reference(model, prompt, 30, keep=8 if keep is None else keep)
    assert np.array_equal(out[0], expected)
    if keep == 16:                                             # full window: same as no cache
        plain = generate_tokens(model, prompt[None], 30, temperature=0, use_cache=False)
        assert np.array_equal(out, plain)
    with pytest.raises(ValueError):
        generate_tokens(model, prompt[None], 3, window_keep=17)


def test_generate_text_seeded_and_restores_mode():
    model = small_gpt(seed=5, dropout=0.1)
    model.train()
    a = model.generate("ROMEO:", max_length=40, temperature=0.9, top_k=20, seed=11)
    b = model.generate("ROMEO:", max_length=40, temperature=0.9, top_k=20, seed=11)
    c = model.generate("ROMEO:", max_length=40, temperature=0.9, top_k=20, seed=12)
    assert a == b and a != c and a.startswith("ROMEO:") and len(a) == 46
    assert model.training, "generate restores training mode"
    assert model.generate("ROMEO:", max_length=0) == "ROMEO:"


def test_generate_prompt_policies():
    model = small_gpt()
    with pytest.raises(UnknownCharacterError):
        model.generate("Juliette é", max_length=5)
    lenient = small_gpt(tokenizer=CharTokenizer(unknown="?"))
    assert lenient.generate("Juliette é", max_length=5, seed=0).startswith("Juliette ?")
    with pytest.raises(ValueError):
        model.generate("", max_length=5)
    bare = TinyGPT(vocab_size=11, d_model=16, num_heads=2, num_layers=1, max_length=8)
    out = bare.generate([1, 2, 3], max_length=5, seed=0)
    assert isinstance(out, np.ndarray) and out.shape == (8,) and out[:3].tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        bare.generate("abc", max_length=2)


# ---- sampling ----------------------------------------------------------------------------
def test_greedy_and_temperature_zero():
    z = np.array([[0.1, 2.0, 2.0, -1.0], [5.0, 0.0, 0.0, 0.0]])
    assert greedy(z).tolist() == [1, 0], "ties go to the lowest id"
    assert sample_next(z, temperature=0).tolist() == [1, 0]
    assert sample_next(z[0], temperature=0).shape == ()


def test_temperature_sharpens_or_flattens_the_distribution():
    z = np.log(np.array([[0.7, 0.2, 0.1]]))
    for t in (0.5, 1.0, 3.0):
        draws = sample_next(np.repeat(z, 20000, axis=0), temperature=t, rng=np.random.default_rng(1))
        expected = np.array([0.7, 0.2, 0.1]) ** (1 / t)                   # softmax(z / T) = p^(1/T), renormalised
        assert np.allclose(np.bincount(draws, minlength=3) / draws.size, expected / expected.sum(), atol=0.015), t
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            sample_next(z, temperature=bad)


def test_top_k_support_is_exactly_k():
    z = np.random.default_rng(0).standard_normal((3, 30))
    kept = np.isfinite(top_k_filter(z, 5))
    assert (kept.sum(axis=1) == 5).all()
    top = np.argsort(-z, axis=1)[:, :5]
    assert all(set(np.flatnonzero(kept[i])) == set(top[i]) for i in range(3))
    draws = sample_next(np.repeat(z[:1], 3000, axis=0), top_k=5, rng=np.random.default_rng(1))
    assert set(draws.tolist()) == set(top[0].tolist())
    assert np.isfinite(top_k_filter(z, 99)).all()
    with pytest.raises(ValueError):
        top_k_filter(z, 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=2, max_size=20), st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_nucleus(values, p):
    z = np.array([values])
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    kept = np.isfinite(top_p_filter(z, p))[0]
    assert kept.any()
    mass = probs[0][kept].sum()
    assert mass >= p - 1e-9, "the kept tokens reach p"
    assert mass - probs[0][kept].min() < p + 1e-9, "dropping the least likely kept token falls below p"
    assert probs[0][kept].min() >= probs[0][~kept].max(initial=0) - 1e-12, "the most likely ones are kept"


def test_top_p_sampling_support_and_frequencies():
    z = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))
    draws = sample_next(np.repeat(z, 4000, axis=0), top_p=0.65, rng=np.random.default_rng(2))
    assert set(draws.tolist()) == {0, 1}
    freq = np.bincount(draws, minlength=4) / draws.size
    assert np.allclose(freq[:2], [0.4 / 0.7, 0.3 / 0.7], atol=0.03)


@pytest.mark.parametrize("temperature", [5e-324, 1e-320, 1e-310, 1e-300])
def test_tiny_temperatures_are_greedy_never_nan(temperature):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, 9)) * 30
    z[:, 4] = -np.inf                                      # a filtered-out id stays impossible
    expected = greedy(z)
    for _ in range(3):
        ids = sample_next(z, temperature=temperature, rng=rng)
        assert np.array_equal(ids, expected), "a vanishing temperature is the greedy limit"
    assert np.array_equal(sample_next(z, temperature=temperature, top_k=3, top_p=0.5, rng=rng), expected)
    z32 = z.astype(np.float32)
    assert np.array_equal(sample_next(z32, temperature=temperature, rng=rng), greedy(z32))


@pytest.mark.parametrize("temperature", [-1e-300, -1.0, float("nan"), float("inf"), float("-inf"), "0.5", None])
def test_nonsense_temperatures_are_refused(temperature):
    with pytest.raises(ValueError):
        sample_next(np.zeros((2, 5)), temperature=temperature)


def test_generate_at_a_subnormal_temperature_is_greedy():
    model = small_gpt()
    greedy_text = model.generate("to be", max_length=12, temperature=0)
    assert model.generate("to be", max_length=12, temperature=5e-324, seed=1) == greedy_text
    assert model.generate("to be", max_length=12, temperature=1e-320, top_k=5, seed=2) == greedy_text


def test_small_but_normal_temperature_still_samples_from_the_softmax():
    z = np.log(np.array([[0.5, 0.5, 1e-9]]))
    draws = sample_next(np.repeat(z, 400, axis=0), temperature=1e-3, rng=np.random.default_rng(1))
    assert set(draws.tolist()) == {0, 1}, "a tie at a small finite temperature is still a coin flip"


def test_sampling_reproducible_and_checked():
    z = np.random.default_rng(3).standard_normal((8, 12))
    a = sample_next(z, temperature=1.3, top_k=6, top_p=0.9, rng=np.random.default_rng(5))
    b = sample_next(z, temperature=1.3, top_k=6, top_p=0.9, rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == (8,)
    with pytest.raises(ValueError):
        sample_next(z, temperature=-1)
    with pytest.raises(ValueError):
        top_p_filter(z, 0.0)


# ---- loss --------------------------------------------------------------------------------
def test_shift_targets_and_loss():
    window = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    x, y = shift_targets(window)
    assert x.tolist() == [[1, 2, 3], [5, 6, 7]] and y.tolist() == [[2, 3, 4], [6, 7, 8]]
    with pytest.raises(ValueError):
        shift_targets(np.array([[1]]))
    loss = LanguageModelLoss()(Tensor(np.zeros((2, 3, 10))), y)
    assert abs(loss.item() - np.log(10)) < 1e-5
    with pytest.raises(ValueError):
        LanguageModelLoss()(Tensor(np.zeros((2, 3, 10))), window)


# ---- save and load -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["model.npz", "model.pkl", "model"])
def test_save_load_identical_logits(tmp_path, name):
    model = small_gpt(seed=6, tokenizer=CharTokenizer().fit("to be or not to be\n"), vocab_size=None,
                      learned_positions=False)
    path = model.save(tmp_path / name)
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "written atomically: no temporary file left"
    assert zipfile.is_zipfile(path), "an npz archive whatever the name"
    again = TinyGPT.load(tmp_path / name)
    assert again.config == model.config and again.tokenizer == model.tokenizer
    x = model.tokenizer.encode("not to be")
    assert np.array_equal(again(x).data, model(x).data)
    assert again.generate("to", max_length=20, seed=1) == model.generate("to", max_length=20, seed=1)


def test_load_refuses_bad_files(tmp_path):
    model = small_gpt()
    good = model.save(tmp_path / "good.npz").read_bytes()
    cases = {
        "truncated.npz": (good[: len(good) // 2], "truncated or corrupt"),
        "empty.pkl": (b"", "empty"),
        "noise.bin": (np.random.default_rng(0).bytes(2000), "not an .npz"),
        "pickled.pkl": (pickle.dumps({"weights": np.ones(3)}), "pickle"),
        "notes.txt": (b"ROMEO: hello\n", "not an .npz"),
    }
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError):
            TinyGPT.load(tmp_path / name)
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "plain.npz")
    save_npz_checkpoint(tmp_path / "trainer.npz", {"w": np.ones(2)}, {}, kind="trainer")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "trainer.npz")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "missing.npz")


def test_load_refuses_inconsistent_contents(tmp_path):
    model = small_gpt()
    state = model.state_dict()
    meta = {"config": model.config.to_dict(), "tokenizer": model.tokenizer.to_dict()}
    wrong = dict(state)
    wrong["head.weight"] = np.zeros((3, 3), dtype=np.float32)
    save_npz_checkpoint(tmp_path / "shapes.npz", wrong, meta, kind="tinygpt")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "shapes.npz")
    missing = {k: v for k, v in state.items() if k != "ln_f.bias"}
    save_npz_checkpoint(tmp_path / "missing.npz", missing, meta, kind="tinygpt")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "missing.npz")
    save_npz_checkpoint(tmp_path / "config.npz", state, {"config": {"d_model": 32}}, kind="tinygpt")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "config.npz")


def test_load_refuses_a_config_bigger_than_its_arrays_before_allocating(tmp_path, monkeypatch):
    """A tiny file whose config claims d_model=2048 (or more layers, a longer context, a wider vocabulary)
    is refused with CheckpointError before any model is built."""
    model = small_gpt()
    state = {k: np.asarray(v)[..., :1] if np.ndim(v) else v for k, v in model.state_dict().items()}
    built = []
    monkeypatch.setattr(tg.TinyGPT, "__init__", lambda self, *a, **k: built.append(1) or (_ for _ in ()).throw(
        AssertionError("a model was allocated")))
    for change in ({"d_model": 2048}, {"num_layers": 500}, {"max_length": 10**6}, {"vocab_size": 10**6},
                   {"ff_dim": 10**6}):
        config = {**model.config.to_dict(), **change}
        save_npz_checkpoint(tmp_path / "huge.npz", model.state_dict(), {"config": config, "tokenizer": None},
                            kind="tinygpt")
        with pytest.raises(CheckpointError):
            TinyGPT.load(tmp_path / "huge.npz")
    save_npz_checkpoint(tmp_path / "cut.npz", state, {"config": model.config.to_dict(), "tokenizer": None},
                        kind="tinygpt")
    with pytest.raises(CheckpointError):
        TinyGPT.load(tmp_path / "cut.npz")
    assert built == [], "no model is allocated for a file whose config and arrays disagree"


# ---- training ------------------------------------------------------------------------------
TEXT = "to be or not to be, that is the question. " * 30


def test_text_windows_are_a_pure_function_of_seed_and_epoch():
    tokens = CharTokenizer().encode(TEXT)
    a = TextWindows(tokens, 8, 4, num_batches=3, seed=1)
    b = TextWindows(tokens, 8, 4, num_batches=3, seed=1)
    a.set_epoch(5)
    b.set_epoch(2)
    b.set_epoch(5)
    assert all(np.array_equal(x.data, y.data) for (x, _), (y, _) in zip(a, b))
    a.set_epoch(6)
    assert not np.array_equal(a.starts(), b.starts())
    x, y = next(iter(a))
    assert x.dtype == np.int64 and x.shape == (4, 8) and np.array_equal(x.data[:, 1:], y[:, :-1])
    full = TextWindows(tokens[:100], 8, 5)
    starts = full.starts()
    assert len(full) == 3 and starts.tolist() == list(range(0, 92, 8))
    with pytest.raises(ValueError):
        TextWindows(tokens[:5], 8, 2)


def test_the_trainer_splits_the_text_by_position():
    text = "abcdefghijklmnopqrst" * 5                                   # 100 characters
    model = small_gpt(tokenizer=CharTokenizer().fit(text))
    trainer = LanguageModelTrainer(model, text, iterations=1, eval_interval=1, context=4, val_fraction=0.2,
                                   progress=False, verbose=False)
    assert model.tokenizer.decode(trainer.train_tokens) == text[:80]
    assert model.tokenizer.decode(trainer.val_tokens) == text[80:]
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            LanguageModelTrainer(model, text, iterations=1, eval_interval=1, context=4, val_fraction=bad)


def test_small_model_overfits_a_repeated_string():
    model = TinyGPT(tokenizer=CharTokenizer().fit(TEXT), d_model=48, num_heads=2, num_layers=2, max_length=16,
                    rng=np.random.default_rng(0))
    trainer = LanguageModelTrainer(model, TEXT, iterations=150, eval_interval=50, batch_size=8, lr=5e-3,
                                   warmup=10, weight_decay=0.0, eval_batches=2, progress=False, verbose=False)
    history = trainer.fit()
    assert history["train_loss"][-1] < history["train_loss"][0] / 4
    x, y = next(iter(TextWindows(model.tokenizer.encode(TEXT), 16, 32, num_batches=1, seed=9)))
    with no_grad():
        late = LanguageModelLoss()(model(x)[:, 8:], y[:, 8:]).item()
    assert late < 0.05, f"with 8+ characters of context the text is certain: loss {late}"
    assert model.generate("to be or", max_length=34, temperature=0) == "to be or not to be, that is the question. "
    assert trainer.evaluate("val")["loss"] < 0.3


def _count_steps(optimizer):
    """A list that gets one entry per optimizer.step() call from now on."""
    calls, step = [], optimizer.step

    def counted(*args, **kwargs):
        calls.append(1)
        return step(*args, **kwargs)
    optimizer.step = counted
    return calls


def test_trainer_resume_is_exact(tmp_path):
    """Stopped after 20 of 30 iterations, a run resumed from its checkpoint ends bit-identical to
    the uninterrupted run, taking only the 10 remaining steps. The resumed trainer's model is
    built from *another* seed, so only the checkpoint (weights, optimizer and scheduler state,
    dropout generators, history) can make it match: with resume ignored, or restoring only part
    of the state, it differs (the last check shows that this seed alone makes a run differ)."""
    def make(init_seed, checkpoint_dir):
        model = TinyGPT(tokenizer=CharTokenizer().fit(TEXT), d_model=16, num_heads=2, num_layers=1,
                        max_length=8, dropout=0.1, rng=np.random.default_rng(init_seed))
        trainer = LanguageModelTrainer(model, TEXT, iterations=30, eval_interval=10, batch_size=4, eval_batches=1,
                                       progress=False, verbose=False, seed=4, checkpoint_dir=checkpoint_dir)
        return model, trainer

    straight_model, straight = make(3, tmp_path / "a")
    straight.fit()

    _, interrupted = make(3, tmp_path / "b")
    interrupted.fit(epochs=2)                                  # stop after 20 of 30 iterations
    assert interrupted.iterations_done == 20

    resumed_model, resumed = make(99, tmp_path / "b")          # other initial weights, other dropout masks
    steps = _count_steps(resumed.optimizer)
    resumed.fit(resume=True)
    assert len(steps) == 10, f"the resumed run took {len(steps)} steps; it should continue with the last 10"
    assert resumed.iterations_done == 30 and resumed.optimizer.step_count == 30
    assert resumed.scheduler.last_step == straight.scheduler.last_step == 30
    for (name, p), q in zip(straight_model.named_parameters(), resumed_model.parameters()):
        assert np.array_equal(p.data, q.data), name
    for name, buf in straight.optimizer.state.items():
        np.testing.assert_array_equal(buf, resumed.optimizer.state[name], err_msg=name)
    for key in ("epoch", "train_loss", "val_loss", "lr"):
        assert resumed.history[key] == straight.history[key], key

    fresh_model, fresh = make(99, None)                        # the same start without resume
    fresh.fit()
    assert not all(np.array_equal(p.data, q.data)
                   for p, q in zip(straight_model.parameters(), fresh_model.parameters()))
    assert fresh.history["train_loss"] != straight.history["train_loss"]


def test_on_evaluation_receives_every_history_row_once_even_across_a_resume(tmp_path):
    def make(rows):
        model = TinyGPT(tokenizer=CharTokenizer().fit(TEXT), d_model=16, num_heads=2, num_layers=1,
                        max_length=8, rng=np.random.default_rng(3))
        return LanguageModelTrainer(model, TEXT, iterations=30, eval_interval=10, batch_size=4, eval_batches=1,
                                    progress=False, verbose=False, seed=4, checkpoint_dir=tmp_path,
                                    on_evaluation=rows.append)
    rows = []
    first = make(rows)
    first.fit(epochs=2)
    assert [r["iteration"] for r in rows] == [10, 20]
    second = make(rows)
    second.fit(resume=True)                          # the resumed history is handed on from its start
    assert [r["iteration"] for r in rows] == [10, 20, 10, 20, 30]
    assert [r["val_loss"] for r in rows[2:]] == second.history["val_loss"]
    assert set(rows[0]) == {"iteration", "train_loss", "val_loss", "lr", "seconds"}


def test_train_on_text_fits_the_tokenizer():
    model = TinyGPT(vocab_size=20, d_model=16, num_heads=2, num_layers=1, max_length=8,
                    rng=np.random.default_rng(0))
    history = model.train_on_text("abcabcabd " * 20, epochs=2, iterations_per_epoch=5, batch_size=4,
                                  progress=False, verbose=False, eval_batches=1)
    assert model.tokenizer is not None and model.tokenizer.vocab_size == 5
    assert len(history["epoch"]) == 2
    tiny = TinyGPT(vocab_size=3, d_model=8, num_heads=2, num_layers=1, max_length=4)
    with pytest.raises(ValueError):
        tiny.train_on_text("abcd ", epochs=1)
    with pytest.raises(ValueError):
        LanguageModelTrainer(model, "abcabcabd " * 20, iterations=7, eval_interval=5)


# ---- packaging for module 15's server: adapted from the outside (tito/gpt_package.py) ------------
def test_tinygpt_does_not_import_module_15_and_module_15_keeps_no_registry():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, tinytorch.tinygpt; print(sorted(m for m in sys.modules if m.startswith('tinytorch.mlops')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]", f"importing module 16 loaded module 15: {out}"
    assert not hasattr(tg, "TINYGPT_KIND") and not hasattr(tg, "package_tinygpt")
    import tinytorch.mlops.mlops as mlops
    from tito.gpt_package import TINYGPT_KIND
    assert TINYGPT_KIND.name == "tinygpt" and TINYGPT_KIND.complete is not None
    assert not hasattr(mlops, "register_kind") and not hasattr(mlops, "KINDS"), "module 15 keeps no registry"


def test_package_round_trip_and_served_completion(tmp_path):
    import time

    from tinytorch.mlops.mlops import GenerationTimeout, PackageError, load_package
    from tito.gpt_package import TINYGPT_KIND, package_tinygpt
    model = small_gpt(seed=3)
    text = "to be or not to be, that is the question\n" * 5
    path = package_tinygpt(model, tmp_path / "gpt", name="tiny", version="0.1.0", text=text,
                           metrics={"val_loss": 2.5})
    package = load_package(path, kinds=(TINYGPT_KIND,))
    assert package.manifest["kind"] == "tinygpt" and package.manifest["metrics"] == {"val_loss": 2.5}
    ids = model.tokenizer.encode("to be or")
    np.testing.assert_array_equal(package.model(ids).data, model(ids).data)
    first = package.complete("to be", max_tokens=20, seed=1)
    assert first == package.complete("to be", max_tokens=20, seed=1), "a seed makes the completion reproducible"
    assert len(first) == 20 and set(first) <= set(model.tokenizer.chars)
    long = package.complete("to be", max_tokens=3 * model.max_length, temperature=0.5, seed=2)
    assert len(long) == 3 * model.max_length, "past the context the window slides"
    with pytest.raises(GenerationTimeout):
        package.complete("to be", max_tokens=40, seed=0, deadline=time.monotonic() - 1)
    blob = bytearray((path / "weights.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF                                  # one flipped byte inside the weights
    (path / "weights.npz").write_bytes(bytes(blob))
    with pytest.raises(PackageError):
        load_package(path, kinds=(TINYGPT_KIND,))
    with pytest.raises(ValueError):
        package_tinygpt(TinyGPT(vocab_size=10, d_model=8, num_heads=2, num_layers=1, max_length=4),
                        tmp_path / "bare", name="bare", version="0.1.0")
