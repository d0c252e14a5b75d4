"""The TinyGPT API exactly as the course's seed documents show it.

Users copy these snippets verbatim, so each one runs here as written (the snippets' own
arguments unchanged; where a snippet elides arguments with `...`, tiny sizes keep the test
fast). All text is generated here: no network, no shared data directory.
"""
import os
import pickle
import zipfile

import numpy as np
import pytest

from tinytorch.core.activations import ReLU
from tinytorch.core.autograd import no_grad
from tinytorch.core.layers import Dense, Sequential
from tinytorch.core.tensor import Tensor
from tinytorch.core.training import CheckpointError
from tinytorch.tinygpt import (DEFAULT_CHARS, CharTokenizer, LanguageModelLoss, MultiHeadAttention, TextWindows,
                               TinyGPT, TransformerBlock, UnknownCharacterError, generate_tokens)

TEXT = "to be or not to be, that is the question.\n" * 40      # 15 distinct characters


def text_loss(model, text):
    """Mean next-character loss of `model` over every non-overlapping window of `text`."""
    windows = TextWindows(model.tokenizer.encode(text), model.max_length, batch_size=64)
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [LanguageModelLoss()(model(x), y).item() for x, y in windows]
    model.train(was_training)
    return float(np.mean(losses))


# ---- CharTokenizer ------------------------------------------------------------------------
def test_char_tokenizer_round_trip():
    tok = CharTokenizer()
    assert tok.decode(tok.encode("Hello")) == "Hello"
    assert tok.vocab_size == len(DEFAULT_CHARS) == 97


# ---- MultiHeadAttention and TransformerBlock ----------------------------------------------------
def test_multi_head_attention_on_a_sequence():
    seq = Tensor(np.random.default_rng(0).standard_normal((2, 10, 128)))
    out = MultiHeadAttention(d_model=128, num_heads=8)(seq)
    assert out.shape == (2, 10, 128)


def test_transformer_block_from_given_modules():
    block = TransformerBlock(attention=MultiHeadAttention(d_model=128, num_heads=8),
                             feedforward=Sequential([Dense(128, 512), ReLU(), Dense(512, 128)]))
    x = np.random.default_rng(1).standard_normal((2, 6, 128))
    y = block(Tensor(x))
    assert y.shape == (2, 6, 128) and np.isfinite(y.data).all()
    later = x.copy()
    later[:, 4:] += np.random.default_rng(2).standard_normal((2, 2, 128))
    assert np.allclose(block(Tensor(later)).data[:, :4], y.data[:, :4], atol=1e-5), "the block stays causal"


# ---- TinyGPT.generate ---------------------------------------------------------------------------
def test_generate_from_a_string_prompt_with_the_default_tokenizer():
    model = TinyGPT(vocab_size=100, d_model=128, num_layers=6)
    assert model.tokenizer == CharTokenizer(), "vocab_size=100 covers the default characters"
    text = model.generate("Once upon a time", max_length=100)
    assert isinstance(text, str) and text.startswith("Once upon a time")
    assert len(text) == len("Once upon a time") + 100, "max_length counts the new characters"
    assert set(text) <= set(DEFAULT_CHARS)
    assert model.generate("Once upon a time", max_length=0) == "Once upon a time"


def test_generation_never_samples_the_spare_ids_of_a_wide_head():
    model = TinyGPT(vocab_size=100, d_model=16, num_heads=2, num_layers=1, max_length=8,
                    rng=np.random.default_rng(0))
    model.head.bias.data[97:] = 50.0                       # the three spare ids would win every draw
    text = model.generate("abc", max_length=30, seed=0)
    assert len(text) == 33 and set(text) <= set(DEFAULT_CHARS)
    greedy = model.generate("abc", max_length=5, temperature=0)          # inside the 8-position window
    assert greedy == model.generate("abc", max_length=5, temperature=0, use_cache=False)
    ids = generate_tokens(model, model.tokenizer.encode("abc")[None, :], 40, rng=np.random.default_rng(1))
    assert ids.max() < 97
    bare = TinyGPT(vocab_size=20, d_model=8, num_heads=2, num_layers=1, max_length=4)
    assert bare.tokenizer is None, "a vocabulary smaller than the default characters gets no default tokenizer"


# ---- save / load ---------------------------------------------------------------------------------
class _Planted:
    """Unpickling this creates a directory: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_save_and_load_a_pkl_name_without_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = TinyGPT(vocab_size=100, d_model=16, num_heads=2, num_layers=1, max_length=8,
                    rng=np.random.default_rng(3))
    model.save("trained_model.pkl")
    assert zipfile.is_zipfile("trained_model.pkl"), "a .pkl name still holds the npz/JSON format"

    def no_unpickling(*args, **kwargs):
        raise AssertionError("loading a model must never unpickle")

    with monkeypatch.context() as m:
        for name in ("load", "loads", "Unpickler"):
            m.setattr(pickle, name, no_unpickling)
        loaded = TinyGPT.load("trained_model.pkl")
    probe = model.tokenizer.encode("to be")
    assert loaded.config == model.config and loaded.tokenizer == model.tokenizer
    assert np.array_equal(loaded(probe).data, model(probe).data)
    assert loaded.generate("to", max_length=12, seed=4) == model.generate("to", max_length=12, seed=4)

    marker = tmp_path / "unpickled"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))
    with pytest.raises(CheckpointError, match="not a TinyTorch checkpoint"):
        TinyGPT.load("evil.pkl")
    assert not marker.exists(), "the pickle was not run"


# ---- train_on_text ------------------------------------------------------------------------------
def test_train_on_text_lowers_the_loss_and_generates_decodable_text():
    text = TEXT
    model = TinyGPT(vocab_size=100, d_model=32, num_heads=2, num_layers=1, max_length=16,
                    rng=np.random.default_rng(0))
    before = text_loss(model, text)
    model.train_on_text(text, epochs=10)
    after = text_loss(model, text)
    assert model.tokenizer == CharTokenizer(), "the text fits the default characters, which the model keeps"
    assert before > 4.0 and after < 0.5 * before and after < 1.0, (before, after)
    sample = model.generate("to be", max_length=60, seed=0)
    assert len(sample) == 65 and set(sample) <= set(model.tokenizer.chars)
    assert model.tokenizer.decode(model.tokenizer.encode(sample)) == sample


def test_train_on_text_refuses_characters_the_tokenizer_lacks():
    model = TinyGPT(vocab_size=100, d_model=16, num_heads=2, num_layers=1, max_length=8)
    with pytest.raises(UnknownCharacterError, match="'é'"):
        model.train_on_text("un café, deux cafés " * 10, epochs=1)


def test_a_fitted_tokenizer_smaller_than_the_head_still_decodes():
    model = TinyGPT(vocab_size=65, d_model=16, num_heads=2, num_layers=1, max_length=8,
                    rng=np.random.default_rng(1))
    model.train_on_text(TEXT, epochs=1, iterations_per_epoch=5, batch_size=4, progress=False, verbose=False,
                        eval_batches=1)
    assert model.tokenizer.vocab_size == len(set(TEXT)) < model.vocab_size
    model.head.bias.data[len(set(TEXT)):] = 50.0             # the spare ids would win every draw
    sample = model.generate("to be", max_length=40, seed=2)
    assert len(sample) == 45 and set(sample) <= set(TEXT)
