# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 16: TinyGPT
#
# **Where you are.** This is the last module. You have tensors and autograd (01, 05),
# layers and losses (03, 04), optimizers and a trainer (06, 07), data loading (08),
# normalisation (10) and attention with a key/value cache (11). This module *assembles*
# those parts into a character-level GPT, shaped like nanoGPT, trains it on Shakespeare
# and makes it write.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `CharTokenizer` | text ⇄ integer ids, one id per character; unknown characters are named, not dropped |
# | `Embedding` | a trainable lookup table `(vocab, C)`: ids `(B, T)` → vectors `(B, T, C)` |
# | `PositionalEncoding` | adds "where am I" to each vector: learned (GPT-2) or sinusoidal |
# | `GPTConfig`, `TransformerBlock` | the model's sizes; the pre-LayerNorm block `x + attn(ln1(x))`, `x + mlp(ln2(x))` |
# | `TinyGPT` | embeddings → blocks → LayerNorm → `Dense` head: logits `(B, T, vocab)`; `generate`, `save`, `load` |
# | `LanguageModelLoss`, `shift_targets` | next-token cross-entropy on `(B, T, V)` logits |
# | `greedy`, `apply_temperature`, `top_k_filter`, `top_p_filter`, `sample_next`, `generate_tokens` | how the next character is chosen, and the generation loop |
# | `TINYGPT_KIND`, `package_tinygpt` | a module-15 model package of a TinyGPT, for `tito serve` |
# | `TrainConfig`, `TextWindows`, `LanguageModelTrainer` | random windows of a text as batches; module 07's Trainer with AdamW, warm-up + cosine |
#
# **Where it goes.** `tito export` compiles the `#| export` cells into `tinytorch/tinygpt.py`.
# `MultiHeadAttention` (module 11) and `LayerNorm` (module 10) are re-exported from there
# unchanged: `tinytorch.tinygpt.LayerNorm is tinytorch.core.normalization.LayerNorm`.
#
# **The one idea of this module.** A language model is a function from a sequence of
# tokens to a probability distribution over the *next* token, evaluated at every position
# at once. Training makes it predict text it has seen; generation feeds its own
# predictions back in, one token at a time. Everything is composition: the only new
# differentiable operation is the embedding lookup, and it exists only because it is faster
# than module 01's general indexing (we measure it).
#
# **Points: 31** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-15 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp tinygpt

# %%
#| export
"""TinyGPT: a character-level GPT assembled from the components of modules 01-15.
Module 16 of TinyTorch (generated from modules/16_tinygpt/tinygpt_dev.py; do not edit)."""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from tinytorch.core.tensor import DEFAULT_FLOAT, Function, Tensor, get_rng
from tinytorch.core.activations import GELU
from tinytorch.core.layers import Dense, Dropout, Module, Parameter, Sequential, StateDictError
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.autograd import no_grad
from tinytorch.core.optimizers import AdamW, CosineWarmupLR
from tinytorch.core.training import CheckpointError, Trainer, load_npz_checkpoint, save_npz_checkpoint
from tinytorch.core.normalization import LayerNorm
from tinytorch.core.attention import KVCache, MultiHeadAttention, causal_mask, plot_attention
from tinytorch.mlops.mlops import GenerationTimeout, ModelKind, PackageError, save_package, text_spec

_all_ = ["LayerNorm", "MultiHeadAttention", "KVCache", "plot_attention"]   # re-exported, unchanged


def _as_ids(ids: Any, who: str) -> np.ndarray:
    """Token ids as an int64 ndarray (from a list, ndarray or Tensor; whole floats are accepted)."""
    arr = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(arr == np.round(arr)) and np.isfinite(arr).all():
            return arr.astype(np.int64)
        if arr.size:
            raise TypeError(f"{who}: token ids must be integers, got dtype {arr.dtype} (shape {arr.shape})")
    return arr.astype(np.int64, copy=False)

# %% [markdown]
# ## 1. From characters to numbers: `CharTokenizer`
#
# A network computes with numbers, so text becomes a sequence of integer **ids**: the
# *vocabulary* is a list of characters and a character's id is its index in that list.
# Real GPTs use sub-word tokenizers (about 50,000 tokens of 3–4 characters); a character
# tokenizer keeps the vocabulary tiny (65 symbols for Shakespeare) and needs no training.
#
# * **A default vocabulary.** `CharTokenizer()` holds tab, newline and the 95 printable
#   ASCII characters (97 ids); `fit(text)` replaces it with the sorted unique characters
#   of a corpus.
# * **Unknown characters are an error by default**, naming them: silently dropping them
#   changes the text the model sees. `CharTokenizer(unknown="?")` maps them to one id.
# * **Vectorised.** `str.encode("utf-32-le")` is an array of code points (4 bytes per
#   character); a table indexed by code point looks all of them up at once (id -1: unknown).
# * **Serialisable.** `to_dict()` is JSON, so a saved model carries its tokenizer.

# %% nbgrader={"grade": false, "grade_id": "tokenizer", "locked": false, "schema_version": 3, "solution": true}
#| export
DEFAULT_CHARS: str = "\t\n" + "".join(chr(c) for c in range(32, 127))   # 97 characters, by code point


class UnknownCharacterError(ValueError):
    """Text contains characters that are not in the tokenizer's vocabulary."""


def _quote_chars(chars: Iterable[str], limit: int = 10) -> str:
    """'a', 'b', '\\n' (at most `limit`, then 'and N more')."""
    chars = list(chars)
    return ", ".join(repr(c) for c in chars[:limit]) + (f" and {len(chars) - limit} more" if len(chars) > limit else "")


def _check_vocabulary(items: list) -> None:
    if any(not isinstance(c, str) or len(c) != 1 for c in items):
        raise TypeError(f"CharTokenizer: the vocabulary must consist of single characters, got {items[:5]!r}")
    if not items or len(set(items)) != len(items):
        repeated = sorted({c for c in items if items.count(c) > 1})
        raise ValueError(f"CharTokenizer: the vocabulary is empty or repeats {_quote_chars(repeated)}")


class CharTokenizer:
    """Character-level tokenizer: ids are positions in `chars` (default DEFAULT_CHARS).
    `unknown`: None (unknown characters raise UnknownCharacterError naming them) or one
    character whose id they get (appended to `chars` if missing)."""

    def __init__(self, chars: str | Sequence[str] | None = None, unknown: str | None = None):
        items = list(DEFAULT_CHARS if chars is None else chars)
        if unknown is not None and (not isinstance(unknown, str) or len(unknown) != 1):
            raise TypeError(f"CharTokenizer: unknown must be None or a single character, got {unknown!r}")
        if unknown is not None and unknown not in items:
            items.append(unknown)
        self.unknown = unknown
        self._set_vocabulary(items)

    def _set_vocabulary(self, items: list[str]) -> None:
        """Build `chars`, `_table` (code point -> id, -1 unknown), `_chars_array` (id -> char), `unknown_id`."""
        _check_vocabulary(items)
        ### BEGIN SOLUTION
        self.chars: tuple[str, ...] = tuple(items)
        codes = np.array([ord(c) for c in items], dtype=np.int64)
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)   # code point -> id, -1 unknown
        self._table[codes] = np.arange(len(items))
        self._chars_array = np.array(items, dtype="<U1")                    # id -> character
        self.unknown_id = None if self.unknown is None else int(self._table[ord(self.unknown)])
        ### END SOLUTION

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def fit(self, text: str) -> CharTokenizer:
        """Make the vocabulary the sorted unique characters of `text` (plus `unknown`); returns self."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"CharTokenizer.fit: needs a non-empty string, got {type(text).__name__}")
        ### BEGIN SOLUTION
        chars = set(text) if self.unknown is None else set(text) | {self.unknown}
        self._set_vocabulary(sorted(chars))
        return self
        ### END SOLUTION

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of `text`: shape (len(text),), int64."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: expects a str, got {type(text).__name__}")
        ### BEGIN SOLUTION
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        ids = np.full(codes.shape, -1, dtype=np.int64)                     # -1: not in the vocabulary
        known = codes < self._table.size
        ids[known] = self._table[codes[known]]
        ### END SOLUTION
        return self._replace_unknown(text, ids)

    def _replace_unknown(self, text: str, ids: np.ndarray) -> np.ndarray:
        """Ids -1 become `unknown_id`, or raise UnknownCharacterError naming the characters."""
        missing = np.flatnonzero(ids < 0)
        if missing.size and self.unknown_id is None:
            unseen = list(dict.fromkeys(text[i] for i in missing))           # first-seen order
            raise UnknownCharacterError(
                f"CharTokenizer.encode: unknown characters {_quote_chars(unseen)} (not in the {self.vocab_size}-"
                f"character vocabulary; first at position {missing[0]}). Fit the tokenizer on text that contains "
                f"them, or construct it with unknown='?'")
        if missing.size:
            ids[missing] = self.unknown_id
        return ids

    def decode(self, ids: Any) -> str:
        """The text of a 1-D sequence of ids (list, ndarray or Tensor of integers)."""
        arr = _as_ids(ids, "CharTokenizer.decode")
        if arr.ndim > 1 or (arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size)):
            raise ValueError(f"CharTokenizer.decode: needs one sequence of ids in [0, {self.vocab_size}), got "
                             f"shape {arr.shape}, range [{arr.min(initial=0)}, {arr.max(initial=0)}]")
        ### BEGIN SOLUTION
        return "".join(self._chars_array[arr.reshape(-1)].tolist())
        ### END SOLUTION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description: {"type", "chars" (one string), "unknown"}."""
        return {"type": "CharTokenizer", "chars": "".join(self.chars), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of `to_dict` (the vocabulary order is kept exactly)."""
        if not isinstance(d, dict) or d.get("type") != "CharTokenizer" or not isinstance(d.get("chars"), str):
            raise ValueError(f"CharTokenizer.from_dict: expected a dict from to_dict(), got {d!r:.200}")
        return cls(d["chars"], unknown=d.get("unknown"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and (self.chars, self.unknown) == (other.chars, other.unknown)

    __hash__ = None  # type: ignore[assignment]   (mutable: fit() changes it)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unknown={self.unknown!r})"

# %% nbgrader={"grade": true, "grade_id": "test-tokenizer", "locked": true, "points": 3, "schema_version": 3, "solution": false}
tok = CharTokenizer()
ids = tok.encode("Hello, TinyTorch!")
assert ids.dtype == np.int64 and ids.shape == (17,)
assert tok.decode(ids) == "Hello, TinyTorch!" and tok.vocab_size == 97
assert tok.decode(tok.encode("tab\tand\nnewline")) == "tab\tand\nnewline"
shakespeare = CharTokenizer().fit("First Citizen:\nBefore we proceed any further, hear me speak.\n")
assert list(shakespeare.chars) == sorted(set(shakespeare.chars)), "fit sorts the characters"
assert shakespeare.vocab_size == len(set("First Citizen:\nBefore we proceed any further, hear me speak.\n"))
try:
    shakespeare.encode("Fiancé → café")
    raise AssertionError("unknown characters must be refused")
except UnknownCharacterError:
    pass
lenient = CharTokenizer(unknown="?")
assert lenient.decode(lenient.encode("naïve")) == "na?ve"
assert CharTokenizer.from_dict(shakespeare.to_dict()) == shakespeare
print(ids, "->", repr(tok.decode(ids)))
print("tokenizer: OK")

# %% [markdown]
# ## 2. Embeddings: a lookup table that learns
#
# An id is a name, not a quantity: id 42 is not "twice" id 21. So the model's first layer
# looks each id up in a table `W` of shape `(vocab, C)`: $\text{out}[b, t] = W[\text{ids}[b, t]]$,
# `(B, T) → (B, T, C)`. That is `W[ids]`, which module 01's `GetItem` already does, with a
# backward (module 05) that scatters the gradient rows back with `np.add.at`, *adding*
# rows whose id repeats. `np.add.at` is correct for every index but slow (one element at a
# time). For an embedding we can do better: sort the ids, so equal ids are adjacent, and
# sum each *contiguous run* of gradient rows with one `np.add.reduceat` call:
#
# ```
# ids (flat)    : 7 2 7 0      order = argsort(ids) = [3, 1, 0, 2]
# sorted ids    : 0 2 7 7      runs start at [0, 1, 2]
# grad rows     : g3 g1 g0 g2  -> sums: W'[0] = g3, W'[2] = g1, W'[7] = g0 + g2
# ```
#
# Measured on 2 CPU cores for 12 × 64 ids and `C = 128`: `np.add.at` 0.84 ms, sort +
# `reduceat` 0.13 ms. So `EmbeddingFunction` is a new `Function`, its `backward` beside its `forward`.

# %% nbgrader={"grade": false, "grade_id": "embedding", "locked": false, "schema_version": 3, "solution": true}
#| export
class EmbeddingFunction(Function):
    """Row gather `weight[ids]`: weight (V, C), ids (...) -> (..., C). Backward: gradient rows
    summed per id (ids repeat) by sorting the ids and adding runs with np.add.reduceat."""

    def forward(self, weight: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.ids, self.shape = ids, weight.shape
        return weight[ids]                                   # (..., C), a copy
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        ### BEGIN SOLUTION
        V, C = self.shape
        flat = self.ids.reshape(-1)                          # (N,)
        out = np.zeros((V, C), dtype=grad.dtype)
        if flat.size == 0:
            return (out,)
        rows = grad.reshape(-1, C)                           # (N, C)
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)   # one sum per distinct id
        return (out,)
        ### END SOLUTION


class Embedding(Module):
    """Trainable lookup table: ids (...) in [0, num_embeddings) -> vectors (..., dim);
    `weight` (num_embeddings, dim) initialised N(0, std²)."""

    def __init__(self, num_embeddings: int, dim: int, std: float = 1.0, dtype: Any = DEFAULT_FLOAT,
                 rng: np.random.Generator | None = None):
        super().__init__()
        if int(num_embeddings) < 1 or int(dim) < 1:
            raise ValueError(f"Embedding: sizes must be positive, got num_embeddings={num_embeddings}, dim={dim}")
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        ### BEGIN SOLUTION
        w = (rng or get_rng()).standard_normal((self.num_embeddings, self.dim)) * std
        self.weight = Parameter(w, dtype=dtype)
        ### END SOLUTION

    def forward(self, ids: Any) -> Tensor:
        ids = _as_ids(ids, "Embedding")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"Embedding: ids must lie in [0, {self.num_embeddings}), got ids in "
                             f"[{ids.min()}, {ids.max()}] (shape {ids.shape})")
        ### BEGIN SOLUTION
        return EmbeddingFunction.apply(self.weight, ids=ids)  # (..., dim)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, dim={self.dim}"

# %% nbgrader={"grade": true, "grade_id": "test-embedding", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck

emb = Embedding(10, 4, rng=np.random.default_rng(0))
out = emb(np.array([[1, 2, 1], [9, 0, 1]]))
assert out.shape == (2, 3, 4) and np.array_equal(out.data[0, 0], emb.weight.data[1])
out.sum().backward()
assert emb.weight.grad.data[1].tolist() == [3.0] * 4, "id 1 occurs three times: its row gets 3"
assert emb.weight.grad.data[5].tolist() == [0.0] * 4, "id 5 does not occur"
emb64 = Embedding(6, 3, dtype=np.float64, rng=np.random.default_rng(1))
assert gradcheck(lambda w: emb64(np.array([[0, 5, 5], [2, 0, 5]])) * 2.0, [emb64.weight])
try:
    emb(np.array([3, 10]))
    raise AssertionError("id 10 is outside a 10-row table")
except IndexError:
    pass
print("embedding: OK")

# %% [markdown]
# ## 3. Where is each token? Positional encoding
#
# Attention is a *set* operation: shuffle the tokens and each output moves with its token
# but is otherwise unchanged, so "dog bites man" looks like "man bites dog". We add to each
# token vector a vector that depends only on its **position** `p`:
#
# * **Learned** (GPT-2, nanoGPT, TinyGPT's default): a `Parameter` `(max_length, C)`
#   trained like the token embedding; it knows nothing about positions it never saw.
# * **Sinusoidal** (the original transformer): $PE[p, 2i] = \sin(p / 10000^{2i/C})$,
#   $PE[p, 2i+1] = \cos(p / 10000^{2i/C})$: each feature pair is a clock hand turning at
#   its own speed; no parameters.
#
# `forward(x, offset)` adds the rows `offset ... offset + T - 1`: during generation with a
# key/value cache the new token sits at position `offset = cache length`, not at 0.
# Positions at or past `max_length` are an error, never silently wrapped.

# %% nbgrader={"grade": false, "grade_id": "positional-encoding", "locked": false, "schema_version": 3, "solution": true}
#| export
def sinusoidal_table(max_length: int, d_model: int, dtype: Any = DEFAULT_FLOAT) -> np.ndarray:
    """(max_length, d_model): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same)."""
    ### BEGIN SOLUTION
    positions = np.arange(max_length, dtype=np.float64)[:, None]              # (L, 1)
    freqs = 10000.0 ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)   # (ceil(d/2),)
    angles = positions * freqs                                                 # (L, ceil(d/2))
    table = np.empty((max_length, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, :d_model // 2])
    return table.astype(dtype)
    ### END SOLUTION


class PositionalEncoding(Module):
    """Adds a position vector to each token vector: (B, T, C) -> (B, T, C), positions
    offset .. offset + T - 1 < max_length. learned: a Parameter `weight` (max_length, C),
    N(0, std²); else the constant sinusoidal `table`."""

    def __init__(self, max_length: int, d_model: int, learned: bool = False, std: float = 0.02,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if int(max_length) < 1 or int(d_model) < 1:
            raise ValueError(f"PositionalEncoding: sizes must be positive, got max_length={max_length}, d_model={d_model}")
        self.max_length, self.d_model, self.learned = int(max_length), int(d_model), bool(learned)
        ### BEGIN SOLUTION
        if self.learned:
            w = (rng or get_rng()).standard_normal((self.max_length, self.d_model)) * std
            self.weight = Parameter(w, dtype=dtype)
        else:
            self.table = sinusoidal_table(self.max_length, self.d_model, dtype)
        ### END SOLUTION

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.shape[1] if x.ndim == 3 else 0
        if x.ndim != 3 or x.shape[-1] != self.d_model or offset < 0 or offset + T > self.max_length:
            raise ValueError(f"PositionalEncoding: input {x.shape} at positions {offset}.. does not fit "
                             f"(B, T, d_model={self.d_model}) with positions < max_length={self.max_length}")
        ### BEGIN SOLUTION
        if self.learned:
            pos = self.weight[offset:offset + T]                          # (T, C), gradient flows to weight
        else:
            pos = Tensor(self.table[offset:offset + T], dtype=self.table.dtype)   # (T, C), a constant
        return x + pos                                                    # (B, T, C) + (T, C)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, d_model={self.d_model}, learned={self.learned}"

# %% nbgrader={"grade": true, "grade_id": "test-positional", "locked": true, "points": 2, "schema_version": 3, "solution": false}
pe = PositionalEncoding(16, 6)
assert np.allclose(pe.table[0], [0, 1, 0, 1, 0, 1]), "position 0: sin 0 = 0, cos 0 = 1"
assert np.allclose(pe.table[3, 0], np.sin(3.0)) and np.allclose(pe.table[3, 1], np.cos(3.0))
assert np.allclose(pe.table[5, 2], np.sin(5 / 10000 ** (2 / 6)))
x0 = Tensor(np.zeros((2, 4, 6)))
assert np.allclose(pe(x0, offset=3).data[1, 0], pe.table[3]), "offset shifts the positions"
assert pe.parameters() == [], "the sinusoidal table is a constant"
try:
    pe(Tensor(np.zeros((1, 17, 6))))
    raise AssertionError("17 positions do not fit max_length=16")
except ValueError:
    pass
learned = PositionalEncoding(8, 3, learned=True, dtype=np.float64, rng=np.random.default_rng(0))
assert gradcheck(lambda x, w: learned(x, offset=2), [Tensor(np.ones((2, 5, 3)), dtype=np.float64), learned.weight])
print("positional encoding: OK")

# %% [markdown]
# ## 4. The configuration and the transformer block
#
# As in nanoGPT, one small dataclass holds the sizes of the model, `GPTConfig`; it is saved
# with the weights, so a file is enough to rebuild the model. A GPT is then a stack of
# identical blocks. Each block lets the tokens **communicate** (causal attention: every
# position reads from the positions before it) and then lets each position **compute** on
# what it gathered (an MLP applied to every position separately):
#
# ```
# x ──┬── LayerNorm ── MultiHeadAttention (causal) ──(+)──┬── LayerNorm ── Dense ─ GELU ─ Dense ─ Dropout ──(+)── out
#     └────────────────────────────────────────────────┘  └──────────────────────────────────────────────┘
#          x = x + attn(ln1(x))                                x = x + ff(ln2(x))
# ```
#
# * **Residual connections**: each block only *adds* a correction to `x`, so the gradient
#   reaches early layers undiminished through the identity path.
# * **Pre-LayerNorm** (GPT-2 and later): the normalisation sits *inside* each branch; the
#   residual stream itself is never normalised until the final LayerNorm after the last block.
# * The MLP widens to `ff_dim = 4 C` and back: two thirds of the block's parameters.
#
# The block is built from sizes, `TransformerBlock(128, 4)`, or from given modules that
# replace the default attention and MLP:
# `TransformerBlock(attention=MultiHeadAttention(d_model=128, num_heads=8), feedforward=Sequential([Dense(128, 512), ReLU(), Dense(512, 128)]))`.
# An attention module that is not causal itself gets module 11's `causal_mask` from the
# block; with a key/value cache (generation, section 8) the block hands the cache on.

# %% nbgrader={"grade": false, "grade_id": "transformer-block", "locked": false, "schema_version": 3, "solution": true}
#| export
@dataclass
class GPTConfig:
    """The sizes of a TinyGPT (saved with its weights)."""
    vocab_size: int                 # token ids 0 .. vocab_size - 1
    d_model: int = 128              # C: the width of every position's vector
    num_heads: int = 4              # attention heads per block (head size C // num_heads)
    num_layers: int = 4             # transformer blocks
    max_length: int = 64            # the context: most positions one forward pass sees
    dropout: float = 0.0
    ff_dim: int | None = None       # MLP width, default 4 * d_model
    learned_positions: bool = True  # learned position table (GPT-2) or sinusoidal
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.ff_dim = 4 * self.d_model if self.ff_dim is None else self.ff_dim
        sizes = {k: getattr(self, k) for k in ("vocab_size", "d_model", "num_heads", "num_layers", "max_length", "ff_dim")}
        bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1}
        if bad:
            raise ValueError(f"GPTConfig: sizes must be positive integers, got {bad}")
        for k, v in sizes.items():
            setattr(self, k, int(v))
        self.dropout, self.learned_positions = float(self.dropout), bool(self.learned_positions)
        self.dtype = np.dtype(self.dtype).name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TransformerBlock(Module):
    """Pre-LayerNorm block, (B, T, C) -> (B, T, C): x = x + attn(ln1(x)); x = x + ff(ln2(x)).
    From sizes: causal MultiHeadAttention and the MLP Dense(C, ff_dim) - GELU - Dense(ff_dim,
    C) - Dropout; `attention` / `feedforward` replace them."""

    def __init__(self, d_model: int | None = None, num_heads: int | None = None, ff_dim: int | None = None,
                 dropout: float = 0.0, *, attention: Module | None = None, feedforward: Module | None = None,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if (d_model is None or num_heads is None) if attention is None else d_model not in (None, attention.d_model):
            raise ValueError(f"TransformerBlock: give d_model and num_heads, or an attention module (of the same "
                             f"d_model), got d_model={d_model}, num_heads={num_heads}, attention={attention!r}")
        d_model = int(d_model if attention is None else attention.d_model)
        ### BEGIN SOLUTION
        self.ln1 = LayerNorm(d_model, dtype=dtype)
        if attention is None:
            attention = MultiHeadAttention(d_model, num_heads, dropout=dropout, dtype=dtype, rng=rng, causal=True)
        self.attn = attention
        self.ln2 = LayerNorm(d_model, dtype=dtype)
        if feedforward is None:
            hidden = 4 * d_model if ff_dim is None else int(ff_dim)
            feedforward = Sequential(Dense(d_model, hidden, dtype=dtype, rng=rng), GELU(),
                                     Dense(hidden, d_model, dtype=dtype, rng=rng), Dropout(dropout, rng=rng))
        self.ff = feedforward
        ### END SOLUTION
        self.d_model = d_model

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"TransformerBlock: input of shape {x.shape} does not fit (B, T, d_model={self.d_model})")
        ### BEGIN SOLUTION
        causal = cache is not None or getattr(self.attn, "causal", False)   # else the block masks the future
        mask = None if causal else causal_mask(x.shape[1], dtype=x.dtype)    # (T, T), broadcasts over (B, nh)
        x = x + self.attn(self.ln1(x), mask=mask, cache=cache)               # (B, T, C): tokens communicate
        return x + self.ff(self.ln2(x))                                      # (B, T, C): each position computes
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"

# %% nbgrader={"grade": true, "grade_id": "test-transformer-block", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.layers import Dense, Sequential
from tinytorch.core.activations import ReLU

block = TransformerBlock(16, 4, rng=np.random.default_rng(0))
x = Tensor(np.random.default_rng(1).standard_normal((2, 5, 16)))
y = block(x)
assert y.shape == (2, 5, 16) and y.dtype == np.float32
changed = x.data.copy()
changed[:, 3:] += 1.0                                   # change positions 3 and 4 only
assert np.allclose(block(Tensor(changed)).data[:, :3], y.data[:, :3], atol=1e-6), "causal: the past ignores the future"
custom = TransformerBlock(attention=MultiHeadAttention(d_model=16, num_heads=8, rng=np.random.default_rng(2)),
                          feedforward=Sequential([Dense(16, 32), ReLU(), Dense(32, 16)]))
assert custom(x).shape == (2, 5, 16)
assert np.allclose(custom(Tensor(changed)).data[:, :3], custom(x).data[:, :3], atol=1e-6), \
    "a non-causal attention module gets the causal mask from the block"
n_block = sum(p.size for p in block.parameters())
assert n_block == 4 * (16 * 16 + 16) + (16 * 64 + 64 + 64 * 16 + 16) + 2 * 2 * 16, n_block
try:
    block(Tensor(np.zeros((2, 5, 8))))
    raise AssertionError("d_model 8 does not fit")
except ValueError:
    pass
print(f"transformer block: OK ({n_block} parameters)")

# %% [markdown]
# ## 5. TinyGPT: the whole model
#
# ```
# ids (B, T) ──Embedding──> (B, T, C) ──+ positions──> Dropout ──> block 1 ... block L ──> LayerNorm ──> Dense ──> logits (B, T, V)
# ```
#
# For every position `t` the logits `(V,)` score each possible *next* character given the
# characters `0..t`: one forward pass makes `T` predictions, and the causal mask keeps each
# from peeking at its answer.
#
# **Initialisation** (GPT-2): every weight matrix and embedding is drawn from N(0, 0.02²),
# biases start at zero, and the two matrices that write into the residual stream in each
# block (attention's `out_proj`, the MLP's second `Dense`) get 0.02/√(2L), so the sum of 2L
# residual branches starts with the variance of one. The initial logits are then close to
# zero: the model starts at the uniform guess, a loss of ln(V) ≈ 4.17 for 65 characters.
#
# **Building it.** `TinyGPT(GPTConfig(vocab_size=65, ...))`, or the same sizes as keywords,
# `TinyGPT(vocab_size=65, d_model=128, num_layers=6)`; `vocab_size` may come from a
# `tokenizer`. A model whose `vocab_size` covers the 97 default characters gets the default
# `CharTokenizer()`, so `generate("Once upon a time")` works at once.
#
# | parameter group | count for V = 65, C = 128, L = 4, T = 64 |
# |---|---|
# | token embedding `V·C` + positions `T·C` | 8,320 + 8,192 |
# | per block `12 C² + 13 C` (attention `4C² + 4C`, MLP `8C² + 5C`, two LayerNorms `4C`) | 198,272 |
# | final LayerNorm + head `2C + C·V + V` | 8,641 |
# | **total** | **818,241** |

# %% nbgrader={"grade": false, "grade_id": "tinygpt", "locked": false, "schema_version": 3, "solution": true}
#| export
def _gpt_config(config: GPTConfig | int | None, tokenizer: CharTokenizer | None,
                sizes: dict[str, Any]) -> tuple[GPTConfig, CharTokenizer | None]:
    """TinyGPT's config (a GPTConfig, or sizes with vocab_size from the argument or the
    tokenizer) and its tokenizer (the default one when the vocabulary covers DEFAULT_CHARS)."""
    if not isinstance(config, GPTConfig):
        vocab = sizes.pop("vocab_size", config)               # TinyGPT(65, ...) or TinyGPT(vocab_size=65, ...)
        if vocab is None and tokenizer is None:
            raise ValueError("TinyGPT: give vocab_size (or a GPTConfig), or a tokenizer to take it from")
        config = GPTConfig(vocab_size=tokenizer.vocab_size if vocab is None else vocab, **sizes)
    elif sizes:
        raise TypeError(f"TinyGPT: give a GPTConfig or sizes, not both (got {sorted(sizes)})")
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"TinyGPT: the tokenizer has {tokenizer.vocab_size} characters but vocab_size="
                         f"{config.vocab_size}; the head must score every id the tokenizer can produce")
    if tokenizer is None and config.vocab_size >= len(DEFAULT_CHARS):
        tokenizer = CharTokenizer()                             # string prompts work out of the box
    return config, tokenizer


class TinyGPT(Module):
    """A character-level GPT: ids (B, T) -> next-token logits (B, T, vocab_size).
    `TinyGPT(GPTConfig(...))` or `TinyGPT(vocab_size=..., d_model=..., ...)` (GPTConfig's
    fields); `tokenizer` is used by `generate` and saved with the model; `rng` draws the
    initial weights and the dropout masks."""

    def __init__(self, config: GPTConfig | int | None = None, tokenizer: CharTokenizer | None = None, *,
                 rng: np.random.Generator | None = None, **sizes: Any):
        super().__init__()
        self.config, self.tokenizer = _gpt_config(config, tokenizer, sizes)
        c, init = self.config, rng or get_rng()
        ### BEGIN SOLUTION
        self.token_embedding = Embedding(c.vocab_size, c.d_model, std=0.02, dtype=c.dtype, rng=init)
        self.positions = PositionalEncoding(c.max_length, c.d_model, learned=c.learned_positions, std=0.02,
                                            dtype=c.dtype, rng=init)
        self.dropout = Dropout(c.dropout, rng=rng)
        self.blocks = [TransformerBlock(c.d_model, c.num_heads, c.ff_dim, c.dropout, dtype=c.dtype, rng=rng)
                       for _ in range(c.num_layers)]
        self.ln_f = LayerNorm(c.d_model, dtype=c.dtype)
        self.head = Dense(c.d_model, c.vocab_size, dtype=c.dtype, rng=rng)
        self._init_weights(init)
        ### END SOLUTION

    def _init_weights(self, rng: np.random.Generator, std: float = 0.02) -> None:
        """GPT-2 initialisation: Dense weights N(0, std²), biases 0; residual projections std/sqrt(2L)."""
        ### BEGIN SOLUTION
        residual = {id(b.attn.out_proj.weight) for b in self.blocks} | {id(b.ff[2].weight) for b in self.blocks}
        for m in self.modules():
            if isinstance(m, Dense):
                s = std / math.sqrt(2 * len(self.blocks)) if id(m.weight) in residual else std
                m.weight.data[...] = rng.standard_normal(m.weight.shape) * s
                if m.bias is not None:
                    m.bias.data[...] = 0
        ### END SOLUTION

    vocab_size = property(lambda self: self.config.vocab_size)
    max_length = property(lambda self: self.config.max_length)
    num_layers = property(lambda self: self.config.num_layers)

    def _check_ids(self, idx: Any, caches: Sequence[KVCache] | None) -> tuple[np.ndarray, int]:
        """ids (B, T) ((T,) -> B = 1) and the number of cached positions; refuses what does not fit."""
        ids = _as_ids(idx, "TinyGPT")
        ids = ids[None, :] if ids.ndim == 1 else ids
        past = 0 if caches is None else len(caches[0])
        if ids.ndim != 2 or ids.shape[1] == 0 or (caches is not None and len(caches) != len(self.blocks)):
            raise ValueError(f"TinyGPT: expects ids (B, T) with T >= 1 and one cache per block, got shape "
                             f"{ids.shape} and {None if caches is None else len(caches)} caches")
        if past + ids.shape[1] > self.max_length:
            raise ValueError(f"TinyGPT: {ids.shape[1]} tokens after {past} cached ones exceed the context "
                             f"max_length={self.max_length}; crop the input or use generate(), which slides")
        return ids, past

    def forward(self, idx: Any, caches: Sequence[KVCache] | None = None, last_only: bool = False) -> Tensor:
        """Logits (B, T, vocab_size) for ids (B, T). caches: one KVCache per block (generation,
        under no_grad): idx holds the positions after the cached ones. last_only: the last
        position's logits only, (B, 1, vocab_size)."""
        ids, past = self._check_ids(idx, caches)
        ### BEGIN SOLUTION
        x = self.token_embedding(ids)                                    # (B, T, C)
        x = self.dropout(self.positions(x, offset=past))                 # (B, T, C), positions past .. past + T - 1
        for i, block in enumerate(self.blocks):
            x = block(x, cache=None if caches is None else caches[i])    # (B, T, C)
        if last_only:
            x = x[:, -1:]                                                # (B, 1, C)
        return self.head(self.ln_f(x))                                   # (B, T, V)
        ### END SOLUTION

    def new_caches(self, batch_size: int = 1) -> list[KVCache]:
        """One empty KVCache per block, each with room for max_length positions."""
        ### BEGIN SOLUTION
        return [block.attn.new_cache(batch_size, self.max_length) for block in self.blocks]
        ### END SOLUTION

    def generate(self, prompt: str | Any, max_length: int = 200, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, window_keep: int | None = None) -> str | np.ndarray:
        """The prompt (a string, or 1-D ids) followed by `max_length` new tokens (section 8):
        a string when the model has a tokenizer, else int64 ids. `seed` makes it reproducible."""
        if isinstance(prompt, str) and self.tokenizer is None:
            raise ValueError("TinyGPT.generate: a string prompt needs a tokenizer; or pass token ids")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else _as_ids(prompt, "TinyGPT.generate").reshape(-1)
        if ids.size == 0:
            raise ValueError("TinyGPT.generate: the prompt is empty; give at least one character (e.g. '\\n')")
        ### BEGIN SOLUTION
        rng = np.random.default_rng(seed) if seed is not None else get_rng()
        out = generate_tokens(self, ids[None, :], max_length, temperature=temperature, top_k=top_k,
                              top_p=top_p, rng=rng, use_cache=use_cache, window_keep=window_keep)[0]   # (T0 + n,)
        return self.tokenizer.decode(out) if self.tokenizer is not None else out
        ### END SOLUTION

    def save(self, path: str | os.PathLike) -> Path:
        """Parameters, config and tokenizer in one safe .npz file, whatever its name (section 9)."""
        ### BEGIN SOLUTION
        return save_tinygpt(self, path)
        ### END SOLUTION

    @classmethod
    def load(cls, path: str | os.PathLike) -> TinyGPT:
        """A model written by `save` (never unpickles; CheckpointError if the file is not one)."""
        ### BEGIN SOLUTION
        return load_tinygpt(path)
        ### END SOLUTION

    def train_on_text(self, text: str, epochs: int = 1, iterations_per_epoch: int = 100,
                      **kwargs: Any) -> dict[str, list]:
        """Fit a tokenizer if the model has none (a model's tokenizer is kept: its ids have a
        meaning), then train for epochs * iterations_per_epoch steps with a LanguageModelTrainer
        (section 10; keyword arguments: TrainConfig fields and the trainer's options). Returns the history."""
        if self.tokenizer is None and len(set(text)) > self.vocab_size:
            raise ValueError(f"TinyGPT.train_on_text: the text has {len(set(text))} distinct characters but the "
                             f"model's vocab_size is {self.vocab_size}")
        ### BEGIN SOLUTION
        if self.tokenizer is None:
            self.tokenizer = CharTokenizer().fit(text)
        trainer = LanguageModelTrainer(self, text, iterations=epochs * iterations_per_epoch,
                                       eval_interval=iterations_per_epoch, **kwargs)
        return trainer.fit()
        ### END SOLUTION

    def extra_repr(self) -> str:
        c = self.config
        return (f"vocab_size={c.vocab_size}, d_model={c.d_model}, num_heads={c.num_heads}, "
                f"num_layers={c.num_layers}, max_length={c.max_length}")

# %% nbgrader={"grade": true, "grade_id": "test-tinygpt", "locked": true, "points": 4, "schema_version": 3, "solution": false}
model = TinyGPT(vocab_size=100, d_model=128, num_layers=6, rng=np.random.default_rng(0))
assert model.num_parameters() == 100 * 128 + 64 * 128 + 6 * (12 * 128 * 128 + 13 * 128) + 2 * 128 + 128 * 100 + 100
small = TinyGPT(vocab_size=65, d_model=32, num_heads=4, num_layers=2, max_length=16, rng=np.random.default_rng(0))
ids = np.random.default_rng(0).integers(0, 65, size=(3, 16))
logits = small(ids)
assert logits.shape == (3, 16, 65) and logits.dtype == np.float32
assert abs(float(logits.data.std())) < 0.5, "GPT-2 initialisation: small initial logits"
later = ids.copy()
later[:, 9:] = (later[:, 9:] + 1) % 65                    # change the tokens from position 9 on
assert np.allclose(small(later).data[:, :9], logits.data[:, :9], atol=1e-5), "causal: earlier logits unchanged"
assert not np.allclose(small(later).data[:, 9:], logits.data[:, 9:]), "later logits do change"
assert np.allclose(small(ids, last_only=True).data[:, 0], logits.data[:, -1], atol=1e-6)
try:
    small(np.zeros((1, 17), dtype=np.int64))
    raise AssertionError("17 tokens exceed max_length=16")
except ValueError:
    pass
print(small)
print(f"TinyGPT: OK ({small.num_parameters():,} parameters in the small one)")

# %% [markdown]
# ## 6. The language-modelling loss
#
# Take a window of `T + 1` consecutive characters. The model reads the first `T` and at
# every position predicts the one that follows, so the targets are the window shifted by one:
#
# ```
# window  : F  i  r  s  t  ␣          (T + 1 = 6)
# inputs  : F  i  r  s  t             window[:, :-1]   (B, T)
# targets : i  r  s  t  ␣             window[:, 1:]    (B, T)
# ```
#
# The loss is the mean cross-entropy over all `B · T` predictions: module 04's
# `CrossEntropyLoss` already takes logits `(..., V)` with targets `(...)` and an
# `ignore_index`. A loss `ℓ` means the model is as uncertain as a uniform choice among `e^ℓ`
# characters (the *perplexity*): `ln 65 = 4.17` is the uniform guess, 1.88 ≈ 6.6 candidates.

# %% nbgrader={"grade": false, "grade_id": "lm-loss", "locked": false, "schema_version": 3, "solution": true}
#| export
def shift_targets(window: Any) -> tuple[np.ndarray, np.ndarray]:
    """Token windows (B, T + 1) -> (inputs (B, T), targets (B, T)): targets[:, t] = window[:, t + 1]."""
    w = _as_ids(window, "shift_targets")
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"shift_targets: expects windows of shape (B, T + 1) with T >= 1, got shape {w.shape}")
    ### BEGIN SOLUTION
    return w[:, :-1], w[:, 1:]
    ### END SOLUTION


class LanguageModelLoss(Module):
    """Mean next-token cross-entropy: logits (B, T, V), targets (B, T) ids (`ignore_index` skipped)."""

    def __init__(self, ignore_index: int | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.cross_entropy = CrossEntropyLoss(ignore_index=ignore_index)

    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        t = _as_ids(targets, "LanguageModelLoss")
        if logits.ndim != 3 or t.shape != logits.shape[:2]:
            raise ValueError(f"LanguageModelLoss: logits must be (B, T, V) and targets (B, T), got {logits.shape} "
                             f"and {t.shape} (make them with shift_targets(window))")
        ### BEGIN SOLUTION
        return self.cross_entropy(logits, t)                  # mean over the B * T predictions
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"

# %% nbgrader={"grade": true, "grade_id": "test-lm-loss", "locked": true, "points": 2, "schema_version": 3, "solution": false}
window = np.array([[5, 1, 4, 1, 5, 9]])
inputs, targets = shift_targets(window)
assert inputs.tolist() == [[5, 1, 4, 1, 5]] and targets.tolist() == [[1, 4, 1, 5, 9]]
lm_loss = LanguageModelLoss()
uniform = Tensor(np.zeros((2, 5, 65)))
assert abs(lm_loss(uniform, np.zeros((2, 5), dtype=np.int64)).item() - np.log(65)) < 1e-5, "uniform: ln V"
sure = np.full((1, 5, 10), -20.0, dtype=np.float32)
sure[0, np.arange(5), targets[0]] = 20.0                 # confident and right at every position
assert lm_loss(Tensor(sure), targets).item() < 1e-6
padded = LanguageModelLoss(ignore_index=-1)(Tensor(sure), np.array([[1, 4, -1, -1, 9]]))
assert padded.item() < 1e-6, "ignored positions do not count"
try:
    lm_loss(uniform, np.zeros((2, 6), dtype=np.int64))
    raise AssertionError("targets (2, 6) do not fit logits (2, 5, 65)")
except ValueError:
    pass
print("language-model loss: OK")

# %% [markdown]
# ## 7. Choosing the next character
#
# The model gives logits `z` over the vocabulary; how we turn them into one character
# decides what the text looks like. Everything works on a batch of logits `(B, V)` (or one
# row `(V,)`) with numpy, outside the autograd graph.
#
# | strategy | what it does | semantics, exactly |
# |---|---|---|
# | greedy | the most likely character | `argmax z`, ties to the lowest id; deterministic, often a loop (`the the the`) |
# | temperature τ | sample from `softmax(z / τ)` | τ < 1 sharpens, τ > 1 flattens; τ = 0 means greedy |
# | top-k | only the `k` highest logits | exactly `k` candidates (ties: lower ids win) |
# | top-p (nucleus) | the most likely characters whose probabilities reach `p` | sorted by probability (ties: lower id first), the shortest prefix with sum `>= p`; the top one always stays |
#
# `sample_next` applies them in the order temperature → top-k → top-p, then samples by
# *inverse CDF*: one `u ~ U(0, 1]` per row picks the first token whose cumulative
# probability reaches `u`. Filtered-out tokens get logit `-inf`, probability exactly 0.

# %% nbgrader={"grade": false, "grade_id": "sampling", "locked": false, "schema_version": 3, "solution": true}
#| export
def _logits_2d(logits: Any, who: str) -> np.ndarray:
    z = np.asarray(logits.data if isinstance(logits, Tensor) else logits)
    if z.ndim not in (1, 2) or z.shape[-1] == 0 or z.dtype.kind != "f":
        raise ValueError(f"{who}: expects float logits of shape (V,) or (B, V), got shape {z.shape} and dtype {z.dtype}")
    return z.reshape(-1, z.shape[-1])


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    ### BEGIN SOLUTION
    e = np.exp(z.astype(np.float64) - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
    ### END SOLUTION


def greedy(logits: Any) -> np.ndarray:
    """The most likely id of each row: (B, V) -> (B,) int64 ((V,) -> 0-d); ties: lowest id."""
    z = _logits_2d(logits, "greedy")
    ### BEGIN SOLUTION
    ids = z.argmax(axis=-1).astype(np.int64)
    ### END SOLUTION
    return ids.reshape(np.shape(logits.data if isinstance(logits, Tensor) else logits)[:-1])


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """logits / temperature in float64, temperature > 0: below 1 sharpens, above 1 flattens."""
    z = _logits_2d(logits, "apply_temperature")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"apply_temperature: temperature must be positive and finite, got {temperature!r}")
    ### BEGIN SOLUTION
    return z.astype(np.float64) / temperature
    ### END SOLUTION


def top_k_filter(logits: Any, k: int) -> np.ndarray:
    """Logits with all but the k largest of each row set to -inf (exactly k kept; ties: lower ids)."""
    z = _logits_2d(logits, "top_k_filter")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k_filter: k must be a positive integer, got {k!r}")
    ### BEGIN SOLUTION
    if k >= z.shape[-1]:
        return z.copy()
    keep = np.argsort(-z, axis=-1, kind="stable")[:, :k]                 # (B, k) ids of the k largest
    out = np.full_like(z, -np.inf)
    np.put_along_axis(out, keep, np.take_along_axis(z, keep, axis=-1), axis=-1)
    return out
    ### END SOLUTION


def top_p_filter(logits: Any, p: float) -> np.ndarray:
    """Logits with all but the nucleus set to -inf: per row the most probable ids up to and
    including the one where the cumulative probability reaches p (within 1e-9)."""
    z = _logits_2d(logits, "top_p_filter")
    if not 0 < p <= 1:
        raise ValueError(f"top_p_filter: p must lie in (0, 1], got {p!r}")
    ### BEGIN SOLUTION
    probs = _softmax_rows(z)                                             # (B, V) float64
    order = np.argsort(-probs, axis=-1, kind="stable")                   # most probable first
    cumulative = np.cumsum(np.take_along_axis(probs, order, axis=-1), axis=-1)
    count = np.minimum((cumulative < p - 1e-9).sum(axis=-1) + 1, z.shape[-1])   # (B,) ids to keep, >= 1
    ranks = np.argsort(order, axis=-1)                                   # rank of each id, 0 = most probable
    return np.where(ranks < count[:, None], z, -np.inf)
    ### END SOLUTION


def sample_next(logits: Any, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """One id per row of `logits` (B, V) -> (B,) int64 ((V,) -> 0-d): greedy at temperature 0,
    else softmax(logits / temperature) restricted by top_k then top_p, sampled by inverse CDF
    with one uniform number per row from `rng` (default: TinyTorch's global generator)."""
    shape = np.shape(logits.data if isinstance(logits, Tensor) else logits)[:-1]
    z = _logits_2d(logits, "sample_next")
    if not np.isfinite(z.max(axis=-1)).all() or temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"sample_next: needs a finite maximum in every row and temperature >= 0, got {temperature!r}")
    if temperature == 0:
        return greedy(z).reshape(shape)
    ### BEGIN SOLUTION
    z = apply_temperature(z, temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    cdf = np.cumsum(_softmax_rows(z), axis=-1)                           # (B, V), last column ~1
    u = 1.0 - (rng or get_rng()).random(len(z))                          # (B,) in (0, 1]
    ids = (cdf < u[:, None] * cdf[:, -1:]).sum(axis=-1)                  # first id with cdf >= u
    return ids.astype(np.int64).reshape(shape)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-sampling", "locked": true, "points": 3, "schema_version": 3, "solution": false}
z = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]]))
assert greedy(z).tolist() == [0] and sample_next(z, temperature=0).tolist() == [0]
sharp, flat = _softmax_rows(apply_temperature(z, 0.5))[0], _softmax_rows(apply_temperature(z, 2.0))[0]
assert sharp[0] > 0.5 > flat[0], "a low temperature sharpens the distribution, a high one flattens it"
assert np.isfinite(top_k_filter(z, 2)).sum() == 2 and np.isfinite(top_k_filter(z, 2)[0, :2]).all()
assert np.isfinite(top_p_filter(z, 0.6)).tolist() == [[True, True, False, False, False]], "0.5 < 0.6 <= 0.7"
assert np.isfinite(top_p_filter(z, 0.5)).tolist() == [[True, False, False, False, False]], "0.5 reaches 0.5"
assert np.isfinite(top_p_filter(z, 1.0)).all()
draws = sample_next(np.repeat(z, 4000, axis=0), rng=np.random.default_rng(0))
freq = np.bincount(draws, minlength=5) / draws.size
assert np.allclose(freq, [0.5, 0.2, 0.15, 0.1, 0.05], atol=0.03), freq
assert set(sample_next(np.repeat(z, 500, axis=0), top_k=3, rng=np.random.default_rng(1)).tolist()) == {0, 1, 2}
assert set(sample_next(np.repeat(z, 500, axis=0), top_p=0.8, rng=np.random.default_rng(1)).tolist()) == {0, 1, 2}
a = sample_next(np.repeat(z, 50, axis=0), temperature=1.5, rng=np.random.default_rng(7))
b = sample_next(np.repeat(z, 50, axis=0), temperature=1.5, rng=np.random.default_rng(7))
assert np.array_equal(a, b), "same seed, same samples"
print("sampling: OK", np.round(freq, 3))

# %% [markdown]
# ## 8. Generating text, fast: the key/value cache and the sliding window
#
# Generation is a loop: run the model on the text so far, take the logits of the *last*
# position, choose a character, append it, repeat. Done naively, step `t` recomputes all
# `t` positions although only the last one is new.
#
# **The cache.** In a causal model the keys and values of position `i` never change once
# computed, so module 11's `KVCache` keeps them, one per block. The first call, *prefill*,
# runs the whole prompt and fills the caches; then each step runs only the **new** token
# through the network, at position `offset = cache length`.
#
# **The sliding window.** The model has `max_length` positions. When the cache is full we
# cannot just drop the oldest entry: the cached keys carry their absolute positions, and
# the model was trained on windows that start at position 0. So TinyGPT **re-prefills**:
# reset the caches and run the last `window_keep` tokens (default `max_length // 2`) again
# at positions `0 .. window_keep - 1`, once every `max_length - window_keep + 1` steps.
# Inside the first window cached generation computes *the same logits* as recomputation
# (tested to 1e-5); `use_cache=False` is the reference, recomputing the last `max_length`
# ids every step.
#
# **Only decodable ids.** A head wider than the tokenizer (`TinyGPT(vocab_size=100)` with
# 97 default characters) has spare ids that stand for no character: generation samples
# among the first `tokenizer.vocab_size` logits only.

# %% nbgrader={"grade": false, "grade_id": "generate", "locked": false, "schema_version": 3, "solution": true}
#| export
def generate_tokens(model: TinyGPT, ids: Any, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None,
                    rng: np.random.Generator | None = None, use_cache: bool = True,
                    window_keep: int | None = None) -> np.ndarray:
    """Append `max_new_tokens` sampled ids to each row of `ids` (B, T0) -> (B, T0 + n) int64,
    under no_grad in eval mode. use_cache: one KVCache per block, re-prefilled with the last
    `window_keep` tokens (default max_length // 2) when full; else each step runs the last
    max_length ids. Samples only decodable ids."""
    ids = _as_ids(ids, "generate_tokens")
    L = model.max_length
    keep = max(1, L // 2) if window_keep is None else int(window_keep)
    if ids.ndim != 2 or ids.shape[1] == 0 or not 1 <= keep <= L or isinstance(max_new_tokens, bool) \
            or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate_tokens: needs ids (B, T0 >= 1), max_new_tokens >= 0 and window_keep in "
                         f"[1, {L}], got {ids.shape}, {max_new_tokens!r}, {window_keep!r}")
    V = model.vocab_size if model.tokenizer is None else min(model.vocab_size, model.tokenizer.vocab_size)
    B, T0 = ids.shape
    tokens = np.empty((B, T0 + max_new_tokens), dtype=np.int64)
    tokens[:, :T0] = ids
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            ### BEGIN SOLUTION
            if use_cache and max_new_tokens:
                caches = model.new_caches(B)
                logits = model(tokens[:, max(0, T0 - L):T0], caches=caches, last_only=True)   # prefill
            for pos in range(T0, T0 + max_new_tokens):          # pos: where the new token goes
                if not use_cache:
                    logits = model(tokens[:, max(0, pos - L):pos], last_only=True)        # (B, 1, V)
                elif pos > T0 and len(caches[0]) == L:            # window full: slide
                    for cache in caches:
                        cache.reset()
                    logits = model(tokens[:, pos - keep:pos], caches=caches, last_only=True)
                elif pos > T0:                                    # one new token at position len(cache)
                    logits = model(tokens[:, pos - 1:pos], caches=caches, last_only=True)
                tokens[:, pos] = sample_next(logits.data[:, -1, :V], temperature, top_k, top_p, rng)   # decodable ids
            ### END SOLUTION
    finally:
        model.train(was_training)
    return tokens

# %% nbgrader={"grade": true, "grade_id": "test-generate", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import no_grad

gpt = TinyGPT(tokenizer=CharTokenizer(), d_model=32, num_heads=4, num_layers=2, max_length=16,
              rng=np.random.default_rng(0))
prompt = gpt.tokenizer.encode("To be, or not")                  # 13 tokens
with no_grad():
    full = gpt(prompt[None, :]).data                             # (1, 13, V): all positions at once
    caches = gpt.new_caches(1)
    stepwise = [gpt(prompt[None, :5], caches=caches).data]       # prefill 5, then one at a time
    stepwise += [gpt(prompt[None, t:t + 1], caches=caches).data for t in range(5, 13)]
assert np.allclose(np.concatenate(stepwise, axis=1), full, atol=1e-5), "cache = full recomputation"
text = gpt.generate("To be, or not", max_length=40, seed=3)      # past the 16-token window
assert text.startswith("To be, or not") and len(text) == 13 + 40
assert gpt.generate("To be, or not", max_length=40, seed=3) == text, "seeded sampling is reproducible"
assert gpt.generate("To be", max_length=10, temperature=0) == gpt.generate("To be", max_length=10, temperature=0,
                                                                            use_cache=False)
ids_only = generate_tokens(gpt, prompt[None, :], 30, rng=np.random.default_rng(0))
assert ids_only.shape == (1, 43) and ids_only[:, :13].tolist() == [prompt.tolist()]
print(repr(text))
print("generate: OK")

# %% [markdown]
# ## 9. Saving and loading a model
#
# A trained model is its parameters **plus** what rebuilds it: the `GPTConfig` and the
# tokenizer (which character is id 17). Module 07's `save_npz_checkpoint(path, arrays,
# meta, kind)` stores named arrays and JSON metadata in one `.npz`, written atomically, and
# `load_npz_checkpoint(path, kind)` reads it with `allow_pickle=False`. That matters:
# **unpickling runs code**, so a model file from the internet saved with `pickle` can
# execute anything. A TinyGPT file is only arrays and JSON whatever its name (`model.pkl`
# still loads without unpickling), and corrupt, foreign or inconsistent files raise
# `CheckpointError`.

# %% nbgrader={"grade": false, "grade_id": "save-load", "locked": false, "schema_version": 3, "solution": true}
#| export
CHECKPOINT_KIND = "tinygpt"


def save_tinygpt(model: TinyGPT, path: str | os.PathLike) -> Path:
    """Write parameters (named as in state_dict), config and tokenizer to `path` (any name)."""
    ### BEGIN SOLUTION
    meta = {"config": model.config.to_dict(),
            "tokenizer": model.tokenizer.to_dict() if model.tokenizer is not None else None}
    return save_npz_checkpoint(path, model.state_dict(), meta, kind=CHECKPOINT_KIND)
    ### END SOLUTION


def load_tinygpt(path: str | os.PathLike) -> TinyGPT:
    """Rebuild the model saved at `path`; CheckpointError if the file is not a TinyGPT
    checkpoint, is damaged, or its parts do not fit together."""
    arrays, meta = load_npz_checkpoint(path, kind=CHECKPOINT_KIND)
    keys = sorted(f.name for f in fields(GPTConfig))
    if not isinstance(meta.get("config"), dict) or sorted(meta["config"]) != keys:
        raise CheckpointError(f"{path}: the TinyGPT config should have the keys {keys}, got {meta.get('config')!r:.200}")
    try:
        ### BEGIN SOLUTION
        config = GPTConfig(**meta["config"])
        tokenizer = CharTokenizer.from_dict(meta["tokenizer"]) if meta.get("tokenizer") is not None else None
        model = TinyGPT(config, tokenizer, rng=np.random.default_rng(0))
        model.load_state_dict(arrays)
        ### END SOLUTION
    except (KeyError, ValueError, TypeError, StateDictError) as err:
        raise CheckpointError(f"{path}: the saved TinyGPT config, tokenizer and arrays do not fit: {err}") from None
    return model

# %% nbgrader={"grade": true, "grade_id": "test-save-load", "locked": true, "points": 3, "schema_version": 3, "solution": false}
import pickle
import tempfile

folder = Path(tempfile.mkdtemp())
for name in ("tiny.npz", "tiny.pkl", "no_extension"):
    gpt.save(folder / name)
    again = TinyGPT.load(folder / name)
    assert again.config == gpt.config and again.tokenizer == gpt.tokenizer
    assert np.array_equal(again(prompt).data, gpt(prompt).data), f"identical logits after {name}"
(folder / "evil.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
for bad in ("evil.pkl", "cut.npz"):
    if bad == "cut.npz":
        (folder / bad).write_bytes((folder / "tiny.npz").read_bytes()[:3000])
    try:
        TinyGPT.load(folder / bad)
        raise AssertionError(f"{bad} must be refused")
    except CheckpointError:
        pass
print("save and load: OK")

# %% [markdown]
# ### Packaging TinyGPT for serving (module 15)
#
# Module 15 serves *model packages*: a folder with a manifest (name, version, input spec,
# a sha256 of every file) and the weights, checked before anything is loaded. A model
# other than a `Sequential` classifier plugs in with a `ModelKind`, a record of functions
# (save, describe, load, and `complete` for a text model). Module 15 cannot import TinyGPT,
# so `TINYGPT_KIND` lives here and is handed to `save_package` and `load_package`. It hands
# module 15's `GPTEngine` the weights by name: the server then batches concurrent requests
# into one forward pass per token. Loading checks the arrays' shapes against the config
# before a model of that config is built.

# %%
#| export
from tinytorch.mlops.mlops import GPTEngine, check_shapes, engine_complete, gpt_weight_shapes


def _package_save(model: TinyGPT, folder: Path) -> None:
    if model.tokenizer is None:
        raise ValueError("package a TinyGPT that has a tokenizer: the server takes text prompts")
    model.save(folder / "weights.npz")


def _package_load(folder: Path, manifest: dict[str, Any]) -> TinyGPT:
    arrays, meta = load_npz_checkpoint(folder / "weights.npz", kind=CHECKPOINT_KIND)
    check_shapes({k: a.shape for k, a in arrays.items()}, gpt_weight_shapes(meta.get("config")), str(folder))
    model = TinyGPT.load(folder / "weights.npz")
    if model.tokenizer is None:
        raise PackageError(f"{folder / 'weights.npz'} holds a TinyGPT without a tokenizer; it cannot take text")
    return model.eval()


def _package_engine(model: TinyGPT, slots: int = 1) -> GPTEngine:
    """Module 15's batched numpy decoder over this model's weights (inference only)."""
    weights = dict(model.state_dict())
    if not model.config.learned_positions:
        weights["positions.weight"] = model.positions.table
    return GPTEngine(weights, model.config.num_heads, eps=model.ln_f.eps, slots=slots,
                     vocabulary="".join(model.tokenizer.chars))


TINYGPT_KIND = ModelKind(
    name="tinygpt", files=("weights.npz",), save=_package_save,
    describe=lambda model: {"config": model.config.to_dict(), "parameters": int(model.num_parameters())},
    load=_package_load, complete=lambda model, *args: engine_complete(_package_engine(model), *args),
    vocabulary=lambda model: "".join(model.tokenizer.chars), engine=_package_engine)


def package_tinygpt(model: TinyGPT, path: str | os.PathLike, *, name: str, version: str, text: str | None = None,
                    config: dict | None = None, metrics: dict | None = None, overwrite: bool = False) -> Path:
    """Write a "tinygpt" model package of `model` (which needs a tokenizer) at `path`;
    `text`, the training text, gives the character statistics for drift monitoring."""
    if model.tokenizer is None:
        raise ValueError("package_tinygpt: the model has no tokenizer; the server takes text prompts")
    vocab = "".join(model.tokenizer.chars)
    if text is not None:
        text = "".join(c for c in text if c in set(vocab))
    return save_package(path, model, TINYGPT_KIND, name=name, version=version, input_spec=text_spec(vocab),
                        config={"model": model.config.to_dict(), **(config or {})}, metrics=metrics,
                        train_inputs=text or None, overwrite=overwrite)

# %% [markdown]
# Package the small model of section 8 and ask it for a completion through the package, as
# the server would:

# %%
from tinytorch.mlops.mlops import load_package

package_dir = package_tinygpt(gpt, Path(tempfile.mkdtemp()) / "tiny-gpt", name="tiny-gpt", version="0.1.0")
served = load_package(package_dir, kinds=(TINYGPT_KIND,))
print(served.summary()["kind"], sorted(p.name for p in package_dir.iterdir()))
print(repr(served.complete("to be", max_tokens=12, seed=0)))

# %% [markdown]
# ## 10. Training on text
#
# **The data.** A corpus is one long array of ids. A training batch is `B` windows of
# `T + 1` consecutive ids at random offsets, split by `shift_targets`. There is no natural
# "epoch" (a million overlapping windows), so an *epoch* here is `eval_interval` steps,
# after which we evaluate. `TextWindows` is a data source in module 07's sense; the offsets
# of epoch `e` come from `np.random.default_rng([seed, e])`, so a run resumed after epoch 7
# draws *exactly* the windows of the uninterrupted run. The first 90% of the characters
# train, the last 10% validate (a random split of overlapping windows would measure
# memorisation), on *fixed* validation windows so that evaluations are comparable.
#
# **The optimiser**, as nanoGPT: AdamW (β = (0.9, 0.99), weight decay 0.1), a linear
# warm-up then cosine decay to `min_lr` (`CosineWarmupLR`, stepped every iteration),
# gradient clipping at norm 1, and module 07's `Trainer` for the loop, progress bar,
# history and checkpoints (`fit(resume=True)` continues bit-exactly). All of it is one
# `TrainConfig`: `LanguageModelTrainer(model, text, TrainConfig(iterations=3000))`, or the
# same fields as keywords.

# %% nbgrader={"grade": false, "grade_id": "training", "locked": false, "schema_version": 3, "solution": true}
#| export
def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """(first 1 - val_fraction of the characters, the rest): a split by position, not at random."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"split_text: val_fraction must lie in (0, 1), got {val_fraction!r}")
    ### BEGIN SOLUTION
    cut = int(round(len(text) * (1 - val_fraction)))
    return text[:cut], text[cut:]
    ### END SOLUTION


class TextWindows:
    """Batches (inputs (B, T) int64 Tensor, targets (B, T) int64 ndarray) of token windows:
    `num_batches` batches of random windows per epoch, from np.random.default_rng([seed,
    epoch]) ([seed] if not resample_each_epoch); num_batches=None: every window once, in order."""

    def __init__(self, tokens: Any, context: int, batch_size: int, num_batches: int | None = None,
                 seed: int = 0, resample_each_epoch: bool = True):
        self.tokens = _as_ids(tokens, "TextWindows").reshape(-1)
        self.context, self.batch_size = int(context), int(batch_size)
        if min(self.context, self.batch_size, 1 if num_batches is None else int(num_batches)) < 1 or self.tokens.size < self.context + 1:
            raise ValueError(f"TextWindows: needs positive sizes and at least one window of context + 1 tokens, "
                             f"got {self.tokens.size} tokens, context {context}, batch_size {batch_size}, "
                             f"num_batches {num_batches}")
        self.num_batches = None if num_batches is None else int(num_batches)
        self.seed, self.resample_each_epoch, self.epoch = int(seed), bool(resample_each_epoch), 0
        ### BEGIN SOLUTION
        self._windows = np.lib.stride_tricks.sliding_window_view(self.tokens, self.context + 1)   # (N - T, T + 1) view
        ### END SOLUTION

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches or math.ceil(self._sequential_starts().size / self.batch_size)

    def _sequential_starts(self) -> np.ndarray:
        return np.arange(0, self.tokens.size - self.context, self.context)

    def starts(self) -> np.ndarray:
        """The window offsets of the current epoch: (num_batches, B), or (n,) for the sequential walk."""
        ### BEGIN SOLUTION
        if self.num_batches is None:
            return self._sequential_starts()
        rng = np.random.default_rng([self.seed, self.epoch] if self.resample_each_epoch else [self.seed])
        return rng.integers(0, len(self._windows), size=(self.num_batches, self.batch_size))
        ### END SOLUTION

    def __iter__(self) -> Iterator[tuple[Tensor, np.ndarray]]:
        ### BEGIN SOLUTION
        starts = self.starts()
        rows = starts if starts.ndim == 2 else [starts[i:i + self.batch_size] for i in range(0, starts.size, self.batch_size)]
        for batch_starts in rows:
            window = self._windows[batch_starts]                              # (B, T + 1), a copy
            inputs, targets = shift_targets(window)
            yield Tensor(np.ascontiguousarray(inputs)), np.ascontiguousarray(targets)   # int64 stays int64
        ### END SOLUTION

    def __repr__(self) -> str:
        return (f"TextWindows(tokens={self.tokens.size}, context={self.context}, batch_size={self.batch_size}, "
                f"num_batches={self.num_batches}, seed={self.seed})")


class _Reporting:
    """`data`, calling `report()` first whenever module 07's Trainer starts an epoch (set_epoch)."""

    def __init__(self, data: TextWindows, report: Callable[[], None]):
        self.data, self.report = data, report

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[tuple[Tensor, np.ndarray]]:
        return iter(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.report()
        self.data.set_epoch(epoch)


@dataclass
class TrainConfig:
    """How LanguageModelTrainer trains (nanoGPT's recipe for a small character model)."""
    iterations: int = 2000          # optimizer steps in all
    eval_interval: int = 200        # steps per epoch: evaluate (and checkpoint) after each
    batch_size: int = 12
    context: int | None = None      # window length T, default the model's max_length
    lr: float = 1e-3
    min_lr: float = 1e-4            # the cosine decay ends here
    warmup: int = 100               # linear warm-up steps
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0
    eval_batches: int = 20          # fixed validation batches per evaluation
    val_fraction: float = 0.1       # the last 10% of the text validates
    seed: int = 0


class LanguageModelTrainer:
    """Trains a TinyGPT on a text with module 07's Trainer as `config` (a TrainConfig, whose
    fields keyword `overrides` replace) says; after every epoch the losses are printed and
    handed to `on_evaluation(row)`. `checkpoint_dir`: checkpoints for `fit(resume=True)`.
    `optimizer_class`: module 06's AdamW, or an opt-in variant with its signature (the
    milestone passes module 13's FusedAdamW)."""

    def __init__(self, model: TinyGPT, text: str, config: TrainConfig | None = None, *,
                 checkpoint_dir: str | os.PathLike | None = None, progress: bool = True, verbose: bool = True,
                 metrics: Any = ("accuracy",), on_evaluation: Callable[[dict[str, Any]], None] | None = None,
                 optimizer_class: type = AdamW, **overrides: Any):
        self.config = c = replace(config or TrainConfig(), **overrides)
        self.context = model.max_length if c.context is None else int(c.context)
        if model.tokenizer is None or c.iterations < 1 or c.eval_interval < 1 or c.iterations % c.eval_interval \
                or not 1 <= self.context <= model.max_length:
            raise ValueError(f"LanguageModelTrainer: needs a model with a tokenizer, iterations ({c.iterations}) a "
                             f"positive multiple of eval_interval ({c.eval_interval}) and context ({c.context}) in "
                             f"[1, max_length={model.max_length}]")
        self.model, self.iterations, self.eval_interval, self.batch_size = model, c.iterations, c.eval_interval, c.batch_size
        self.verbose, self.on_evaluation, self._printed = bool(verbose), on_evaluation, 0
        ### BEGIN SOLUTION
        train_text, val_text = split_text(text, c.val_fraction)
        self.train_tokens = model.tokenizer.encode(train_text)
        self.val_tokens = model.tokenizer.encode(val_text)
        self.train_data = TextWindows(self.train_tokens, self.context, c.batch_size, c.eval_interval, seed=c.seed)
        self.val_data = TextWindows(self.val_tokens, self.context, c.batch_size, c.eval_batches,
                                    seed=c.seed + 1, resample_each_epoch=False)
        self.optimizer = optimizer_class(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        self.scheduler = CosineWarmupLR(self.optimizer, warmup_steps=min(c.warmup, c.iterations - 1),
                                        total_steps=c.iterations, min_lr=min(c.min_lr, c.lr))
        self.trainer = Trainer(model, self.optimizer, LanguageModelLoss(), metrics=metrics, scheduler=self.scheduler,
                               grad_clip=c.grad_clip, checkpoint_dir=checkpoint_dir, progress=progress)
        ### END SOLUTION

    epochs = property(lambda self: self.iterations // self.eval_interval)
    history = property(lambda self: self.trainer.history)
    iterations_done = property(lambda self: self.trainer.epoch * self.eval_interval)
    tokens_seen = property(lambda self: self.iterations_done * self.batch_size * self.context,
                           doc="training tokens processed so far")

    def fit(self, resume: bool | str | os.PathLike = False, epochs: int | None = None) -> dict[str, list]:
        """Train until `epochs` epochs are done in all (default: iterations // eval_interval),
        reporting after each; returns the Trainer's history. resume: True continues from
        checkpoint_dir/last.npz (if any), or pass a checkpoint path."""
        last = self.epochs if epochs is None else min(int(epochs), self.epochs)
        ### BEGIN SOLUTION
        if self.trainer.epoch < last or resume is not False:
            self.trainer.fit(_Reporting(self.train_data, self._report), self.val_data, epochs=last, resume=resume)
        self._report()                                    # the last epoch's row
        return self.history
        ### END SOLUTION

    def _report(self) -> None:
        """Print (verbose) and hand to `on_evaluation` every history row not reported yet."""
        h = self.history
        while self._printed < len(h["epoch"]):
            i = self._printed
            row = {"iteration": h["epoch"][i] * self.eval_interval, "train_loss": h["train_loss"][i],
                   "val_loss": h["val_loss"][i], "lr": h["lr"][i], "seconds": h["seconds"][i]}
            if self.verbose:
                print(f"iter {row['iteration']:5d}/{self.iterations}: train loss {row['train_loss']:.4f}, "
                      f"val loss {row['val_loss']:.4f}, lr {row['lr']:.2e}, {sum(h['seconds'][:i + 1]):.0f} s",
                      flush=True)
            if self.on_evaluation is not None:
                self.on_evaluation(row)
            self._printed += 1

    def evaluate(self, split: str = "val", full: bool = True) -> dict[str, float]:
        """Loss (and metrics) on "val" or "train": every non-overlapping window when `full`,
        else the fixed `eval_batches` batches (val only)."""
        if split not in ("val", "train"):
            raise ValueError(f"LanguageModelTrainer.evaluate: split must be 'val' or 'train', got {split!r}")
        ### BEGIN SOLUTION
        tokens = self.val_tokens if split == "val" else self.train_tokens
        data = TextWindows(tokens, self.context, self.batch_size) if full or split == "train" else self.val_data
        return self.trainer.evaluate(data)
        ### END SOLUTION

    def plot_history(self, path: str | os.PathLike | None = None) -> Any:
        return self.trainer.plot_history(path)

# %% nbgrader={"grade": true, "grade_id": "test-training", "locked": true, "points": 4, "schema_version": 3, "solution": false}
text = "to be or not to be, that is the question. " * 30
windows = TextWindows(CharTokenizer().encode(text), context=8, batch_size=4, num_batches=3, seed=5)
windows.set_epoch(2)
first = [(x.data.copy(), y.copy()) for x, y in windows]
windows.set_epoch(0)
windows.set_epoch(2)
assert all(np.array_equal(a[0], b[0].data) for a, b in zip(first, windows)), "epoch 2 is a pure function of (seed, 2)"
x_batch, y_batch = first[0]
assert x_batch.shape == (4, 8) and np.array_equal(x_batch[:, 1:], y_batch[:, :-1]), "targets = inputs shifted by one"
assert split_text("abcdefghij") == ("abcdefghi", "j")

parrot = TinyGPT(tokenizer=CharTokenizer().fit(text), d_model=48, num_heads=2, num_layers=2, max_length=16,
                 rng=np.random.default_rng(0))
lm_trainer = LanguageModelTrainer(parrot, text, iterations=150, eval_interval=50, batch_size=8, lr=5e-3,
                                  warmup=10, weight_decay=0.0, eval_batches=2, progress=False)
history = lm_trainer.fit()
assert len(history["epoch"]) == 3 and lm_trainer.tokens_seen == 150 * 8 * 16
assert history["train_loss"][0] > history["train_loss"][-1], history["train_loss"]
# The first characters of a window are ambiguous ('o' starts "or" and ends "to"); with 8 or
# more characters of context the continuation is certain, and the model has learned it.
x_check, y_check = next(iter(TextWindows(parrot.tokenizer.encode(text), 16, 32, num_batches=1, seed=9)))
with no_grad():
    late_loss = LanguageModelLoss()(parrot(x_check)[:, 8:], y_check[:, 8:]).item()
assert late_loss < 0.05, f"a short repeated text is learned almost perfectly: loss {late_loss:.3f}"
sample = parrot.generate("to be or", max_length=40, temperature=0)
assert sample.startswith("to be or not to be, that is the"), sample
print(repr(sample))
print("training: OK")

# %% [markdown]
# ## Systems thinking
#
# 1. **Where the time goes.** Count the FLOPs of one training step of the default model
#    (B = 12, T = 64, C = 128, L = 4: forward ≈ 2 × tokens × parameters plus attention's
#    `4 B T² C` per layer, backward about twice that), measure your BLAS at these shapes,
#    and compare the best possible step time with `python benchmarks/bench_tinygpt.py`.
#    Which non-matmul operations (LayerNorm, GELU, softmax, residual adds) take the rest?
# 2. **Cache or recompute.** Without the cache, step `t` runs `min(t, L)` positions through
#    the model; with it, one. Yet at batch 1 the cached step is far from 64 times faster:
#    measure both (`generate(..., use_cache=False)`) and explain the ratio with the fixed
#    cost of each Python/numpy operation (about a microsecond, a few hundred per step).
# 3. **The cache's memory and the window.** How many bytes do the caches of one sequence
#    take (`KVCache.nbytes`), and for GPT-2 small (L = 12, C = 768, T = 1024) in float16?
#    With `window_keep = max_length // 2`, how many prefills does generating 1,000
#    characters need? Why would relative positions (rotary, ALiBi) allow `drop_oldest`?
