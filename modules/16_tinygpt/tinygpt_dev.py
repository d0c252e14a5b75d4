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
# The last module assembles tensors and autograd (01, 05), layers and losses (03, 04), AdamW and
# the trainer (06, 07), LayerNorm (10) and cached attention (11) into a character-level GPT
# shaped like nanoGPT, trains it on Shakespeare and makes it write.
#
# **The one idea.** A language model maps tokens to a distribution over the *next* token, at
# every position at once. Training makes it predict text it has seen; generation feeds its
# own predictions back in. The only new differentiable op is the embedding lookup.
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
"""Module 16 of TinyTorch, TinyGPT (generated from modules/16_tinygpt/tinygpt_dev.py; do not edit)."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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

_all_ = ["LayerNorm", "MultiHeadAttention", "KVCache", "plot_attention"]   # re-exported, unchanged


def _as_ids(ids: Any, who: str) -> np.ndarray:
    """Token ids as an int64 ndarray (from a list, ndarray or Tensor; whole floats are accepted)."""
    arr = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if arr.dtype.kind not in "iu" and arr.size and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))
                                                        and np.isfinite(arr).all()):
        raise TypeError(f"{who}: token ids must be integers, got dtype {arr.dtype} (shape {arr.shape})")
    return arr.astype(np.int64, copy=False)

# %% [markdown]
# ## 1. From characters to numbers: `CharTokenizer`
#
# A character's **id** is its index in the vocabulary: `CharTokenizer()` holds tab, newline and
# the 95 printable ASCII characters, `fit(text)` the sorted unique characters of a corpus (65 for
# Shakespeare; real GPTs use ~50,000 sub-word tokens). Unknown characters are an error, or with
# `unknown="?"` that one id. Encoding is vectorised: `text.encode("utf-32-le")` gives the code
# points, and a table indexed by code point (−1: unknown) looks them all up at once.

# %% nbgrader={"grade": false, "grade_id": "tokenizer", "locked": false, "schema_version": 3, "solution": true}
#| export
DEFAULT_CHARS: str = "\t\n" + "".join(chr(c) for c in range(32, 127))   # 97 characters, by code point


class UnknownCharacterError(ValueError):
    """Text contains characters that are not in the tokenizer's vocabulary."""


class CharTokenizer:
    """Ids are positions in `chars` (default DEFAULT_CHARS); `unknown`: None (an error) or the stand-in character."""

    def __init__(self, chars: str | Sequence[str] | None = None, unknown: str | None = None):
        if unknown is not None and (not isinstance(unknown, str) or len(unknown) != 1):
            raise TypeError(f"CharTokenizer: unknown must be None or a single character, got {unknown!r}")
        ### BEGIN SOLUTION
        items = list(DEFAULT_CHARS if chars is None else chars)
        self.unknown = unknown
        self._set_vocabulary(items + [unknown] if unknown is not None and unknown not in items else items)
        ### END SOLUTION

    def _set_vocabulary(self, items: list[str]) -> None:
        """Build `chars`, `_table` (code point -> id, -1 unknown), `_chars_array` (id -> char), `unknown_id`."""
        if any(not isinstance(c, str) or len(c) != 1 for c in items):
            raise TypeError(f"CharTokenizer: the vocabulary must consist of single characters, got {items[:5]!r}")
        if not items or len(set(items)) != len(items):
            raise ValueError(f"CharTokenizer: the vocabulary is empty or repeats a character: {''.join(items)[:80]!r}")
        ### BEGIN SOLUTION
        self.chars: tuple[str, ...] = tuple(items)
        codes = np.array([ord(c) for c in items], dtype=np.int64)
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)   # code point -> id, -1 unknown
        self._table[codes] = np.arange(len(items))
        self._chars_array = np.array(items, dtype="<U1")                    # id -> character
        self.unknown_id = None if self.unknown is None else int(self._table[ord(self.unknown)])
        ### END SOLUTION

    vocab_size = property(lambda self: len(self.chars))

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
        if self.unknown_id is not None:
            ids[ids < 0] = self.unknown_id
        ### END SOLUTION
        missing = np.flatnonzero(ids < 0)
        if missing.size:
            unseen = ", ".join(repr(c) for c in list(dict.fromkeys(text[i] for i in missing))[:10])
            raise UnknownCharacterError(
                f"CharTokenizer.encode: unknown characters {unseen} (not in the {self.vocab_size}-character vocabulary;"
                f" first at position {missing[0]}). Fit the tokenizer on text with them, or use unknown='?'")
        return ids

    def decode(self, ids: Any) -> str:
        """The text of a 1-D sequence of ids (list, ndarray or Tensor of integers)."""
        arr = _as_ids(ids, "CharTokenizer.decode")
        if arr.ndim > 1 or (arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size)):
            raise ValueError(f"CharTokenizer.decode: needs one sequence of ids in [0, {self.vocab_size}), got {arr!r:.80}")
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

# %% nbgrader={"grade": true, "grade_id": "test-tokenizer", "locked": true, "points": 3, "schema_version": 3, "solution": false}
tok = CharTokenizer()
ids = tok.encode("Hello, TinyTorch!")
assert ids.dtype == np.int64 and ids.shape == (17,) and tok.vocab_size == 97
assert tok.decode(ids) == "Hello, TinyTorch!" and tok.decode(tok.encode("tab\tand\nnewline")) == "tab\tand\nnewline"
speech = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
assert CharTokenizer().fit(speech).chars == tuple(sorted(set(speech))), "fit: the sorted unique characters"
lenient = CharTokenizer(unknown="?")
assert lenient.decode(lenient.encode("naïve")) == "na?ve", "unknown characters become '?'"
print("tokenizer: OK", ids, "->", repr(tok.decode(ids)))

# %% [markdown]
# ## 2. Embeddings: a lookup table that learns
#
# An id is a name, not a quantity, so the first layer looks it up in a table `W` `(V, C)`:
# `out[b, t] = W[ids[b, t]]`. The backward sums the gradient rows of repeated ids: sorting
# makes equal ids adjacent and one `np.add.reduceat` sums each run (ids `7 2 7 0` → sorted
# `0 2 7 7`, runs start at `[0, 1, 2]`, so `W'[7] = g0 + g2`), 6× faster than `np.add.at`.

# %% nbgrader={"grade": false, "grade_id": "embedding", "locked": false, "schema_version": 3, "solution": true}
#| export
class EmbeddingFunction(Function):
    """weight[ids]: weight (V, C), ids (...) -> (..., C); backward sums the rows of repeated ids (sort + reduceat)."""

    def forward(self, weight: np.ndarray, ids: np.ndarray) -> np.ndarray:
        ### BEGIN SOLUTION
        self.ids, self.shape = ids, weight.shape
        return weight[ids]                                   # (..., C), a copy
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        ### BEGIN SOLUTION
        V, C = self.shape
        flat = self.ids.reshape(-1)                          # (N,)
        rows = grad.reshape(-1, C)                           # (N, C)
        order = np.argsort(flat, kind="stable")
        sorted_ids = flat[order]
        starts = np.flatnonzero(np.diff(sorted_ids, prepend=-1))   # where each run of equal ids begins
        out = np.zeros((V, C), dtype=grad.dtype)
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)   # one sum per distinct id
        return (out,)
        ### END SOLUTION


class Embedding(Module):
    """Trainable lookup table: ids (...) in [0, num_embeddings) -> (..., dim); `weight` starts N(0, std²)."""

    def __init__(self, num_embeddings: int, dim: int, std: float = 1.0, dtype: Any = DEFAULT_FLOAT,
                 rng: np.random.Generator | None = None):
        super().__init__()
        if int(num_embeddings) < 1 or int(dim) < 1:
            raise ValueError(f"Embedding: sizes must be positive, got num_embeddings={num_embeddings}, dim={dim}")
        ### BEGIN SOLUTION
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        w = (rng or get_rng()).standard_normal((self.num_embeddings, self.dim)) * std
        self.weight = Parameter(w, dtype=dtype)
        ### END SOLUTION

    def forward(self, ids: Any) -> Tensor:
        ids = _as_ids(ids, "Embedding")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise IndexError(f"Embedding: ids must lie in [0, {self.num_embeddings}), got [{ids.min()}, {ids.max()}]")
        ### BEGIN SOLUTION
        return EmbeddingFunction.apply(self.weight, ids=ids)  # (..., dim)
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-embedding", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck

emb = Embedding(10, 4, rng=np.random.default_rng(0))
out = emb(np.array([[1, 2, 1], [9, 0, 1]]))
assert out.shape == (2, 3, 4) and np.array_equal(out.data[0, 0], emb.weight.data[1])
out.sum().backward()
assert emb.weight.grad.data[:, 0].tolist() == [1, 3, 1, 0, 0, 0, 0, 0, 0, 1], "row i: how often id i occurs"
emb64 = Embedding(6, 3, dtype=np.float64, rng=np.random.default_rng(1))
assert gradcheck(lambda w: emb64(np.array([[0, 5, 5], [2, 0, 5]])) * 2.0, [emb64.weight])
print("embedding: OK")

# %% [markdown]
# ## 3. Where is each token? Positional encoding
#
# Attention is a *set* operation ("dog bites man" = "man bites dog"), so each token gets the vector
# of its **position** `p` added: **learned** (GPT-2, TinyGPT's default) or **sinusoidal**
# ($PE[p, 2i] = \sin(p / 10000^{2i/C})$, $PE[p, 2i+1] = \cos(\cdot)$). `forward(x, offset)` adds
# rows `offset … offset + T − 1`: with a KV cache the new token sits at `offset = cache length`.

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
    """x (B, T, C) + the vectors of positions offset .. offset + T - 1: learned `weight` or sinusoidal `table`."""

    def __init__(self, max_length: int, d_model: int, learned: bool = False, std: float = 0.02,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if int(max_length) < 1 or int(d_model) < 1:
            raise ValueError(f"PositionalEncoding: sizes must be positive, got max_length={max_length}, d_model={d_model}")
        ### BEGIN SOLUTION
        self.max_length, self.d_model, self.learned = int(max_length), int(d_model), bool(learned)
        if self.learned:
            w = (rng or get_rng()).standard_normal((self.max_length, self.d_model)) * std
            self.weight = Parameter(w, dtype=dtype)
        else:
            self.table = sinusoidal_table(self.max_length, self.d_model, dtype)
        ### END SOLUTION

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.shape[1] if x.ndim == 3 else 0
        if x.ndim != 3 or x.shape[-1] != self.d_model or offset < 0 or offset + T > self.max_length:
            raise ValueError(f"PositionalEncoding: input {x.shape} at offset {offset} does not fit {self.max_length}, {self.d_model}")
        ### BEGIN SOLUTION
        if self.learned:
            pos = self.weight[offset:offset + T]                          # (T, C), gradient flows to weight
        else:
            pos = Tensor(self.table[offset:offset + T], dtype=self.table.dtype)   # (T, C), a constant
        return x + pos                                                    # (B, T, C) + (T, C)
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-positional", "locked": true, "points": 2, "schema_version": 3, "solution": false}
pe = PositionalEncoding(16, 6)
assert np.allclose(pe.table[0], [0, 1, 0, 1, 0, 1]), "position 0: sin 0 = 0, cos 0 = 1"
assert np.allclose(pe.table[3, 0], np.sin(3.0)) and np.allclose(pe.table[3, 1], np.cos(3.0))
assert np.allclose(pe.table[5, 2], np.sin(5 / 10000 ** (2 / 6)))
assert np.allclose(pe(Tensor(np.zeros((2, 4, 6))), offset=3).data[1, 0], pe.table[3]), "offset shifts the positions"
assert pe.parameters() == [], "the sinusoidal table is a constant"
learned = PositionalEncoding(8, 3, learned=True, dtype=np.float64, rng=np.random.default_rng(0))
assert gradcheck(lambda x, w: learned(x, offset=2), [Tensor(np.ones((2, 5, 3)), dtype=np.float64), learned.weight])
print("positional encoding: OK")

# %% [markdown]
# ## 4. The configuration and the transformer block
#
# As in nanoGPT, a dataclass `GPTConfig` holds the sizes (saved with the weights). A GPT is a stack
# of identical blocks: tokens **communicate** (causal attention), then each position **computes**:
#
# ```
# x = x + attn(ln1(x))        # pre-LayerNorm, residual: the gradient reaches early layers undiminished
# x = x + ff(ln2(x))          # ff: Dense(C, 4C) - GELU - Dense(4C, C) - Dropout
# ```
#
# `TransformerBlock(128, 4)` builds it from sizes, `TransformerBlock(attention=..., feedforward=...)`
# from given modules; an attention that is not causal itself gets module 11's `causal_mask`.

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
        for k in ("vocab_size", "d_model", "num_heads", "num_layers", "max_length", "ff_dim"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"GPTConfig: {k} must be a positive integer, got {v!r}")
            setattr(self, k, int(v))
        self.dropout, self.learned_positions = float(self.dropout), bool(self.learned_positions)
        self.dtype = np.dtype(self.dtype).name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TransformerBlock(Module):
    """Pre-LayerNorm block (B, T, C) -> (B, T, C): x += attn(ln1(x)); x += ff(ln2(x)), from sizes or given modules."""

    def __init__(self, d_model: int | None = None, num_heads: int | None = None, ff_dim: int | None = None,
                 dropout: float = 0.0, *, attention: Module | None = None, feedforward: Module | None = None,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if (d_model is None or num_heads is None) if attention is None else d_model not in (None, attention.d_model):
            raise ValueError("TransformerBlock: give d_model and num_heads, or an attention module of that d_model")
        d_model = int(d_model if attention is None else attention.d_model)
        ### BEGIN SOLUTION
        self.d_model = d_model
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

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        ### BEGIN SOLUTION
        causal = cache is not None or getattr(self.attn, "causal", False)   # else the block masks the future
        mask = None if causal else causal_mask(x.shape[1], dtype=x.dtype)    # (T, T), broadcasts over (B, nh)
        x = x + self.attn(self.ln1(x), mask=mask, cache=cache)               # (B, T, C): tokens communicate
        return x + self.ff(self.ln2(x))                                      # (B, T, C): each position computes
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-transformer-block", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.activations import ReLU

block = TransformerBlock(16, 4, rng=np.random.default_rng(0))
x = Tensor(np.random.default_rng(1).standard_normal((2, 5, 16)))
y = block(x)
assert y.shape == (2, 5, 16) and y.dtype == np.float32
changed = x.data.copy()
changed[:, 3:] += np.random.default_rng(2).standard_normal((2, 2, 16))   # change positions 3 and 4 only
assert np.allclose(block(Tensor(changed)).data[:, :3], y.data[:, :3], atol=1e-6), "causal: the past ignores the future"
custom = TransformerBlock(attention=MultiHeadAttention(d_model=16, num_heads=8, rng=np.random.default_rng(3)),
                          feedforward=Sequential([Dense(16, 32), ReLU(), Dense(32, 16)]))
assert np.allclose(custom(Tensor(changed)).data[:, :3], custom(x).data[:, :3], atol=1e-6), \
    "a non-causal attention module gets the causal mask from the block"
print(f"transformer block: OK ({sum(p.size for p in block.parameters())} parameters)")

# %% [markdown]
# ## 5. TinyGPT: the whole model
#
# `ids (B, T) → Embedding + positions → Dropout → blocks → LayerNorm → Dense → logits (B, T, V)`:
# logits at position `t` score the character after `0..t`, so one pass makes `T` predictions.
# GPT-2 initialisation: weights N(0, 0.02²), biases 0, the two residual projections of each block
# 0.02/√(2L), so the initial loss is about ln V. `TinyGPT(GPTConfig(vocab_size=65, ...))` or
# `TinyGPT(vocab_size=65, ...)`; a `vocab_size` covering the 97 default characters gets the default
# `CharTokenizer()`. V = 65, C = 128, L = 4, T = 64: `V·C + T·C + L(12C² + 13C) + 2C + C·V + V` =
# 818,241 parameters.

# %% nbgrader={"grade": false, "grade_id": "tinygpt", "locked": false, "schema_version": 3, "solution": true}
#| export
def _gpt_config(config: GPTConfig | int | None, tokenizer: CharTokenizer | None,
                sizes: dict[str, Any]) -> tuple[GPTConfig, CharTokenizer | None]:
    """The config (a GPTConfig, or sizes; vocab_size may come from the tokenizer) and the tokenizer."""
    if isinstance(config, GPTConfig) and sizes:
        raise TypeError(f"TinyGPT: give a GPTConfig or sizes, not both (got {sorted(sizes)})")
    if not isinstance(config, GPTConfig):
        vocab = sizes.pop("vocab_size", config)               # TinyGPT(65, ...) or TinyGPT(vocab_size=65, ...)
        config = GPTConfig(vocab_size=tokenizer.vocab_size if vocab is None and tokenizer else vocab, **sizes)
    if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"TinyGPT: the tokenizer's {tokenizer.vocab_size} ids do not fit vocab_size={config.vocab_size}")
    if tokenizer is None and config.vocab_size >= len(DEFAULT_CHARS):
        tokenizer = CharTokenizer()                             # string prompts work out of the box
    return config, tokenizer


class TinyGPT(Module):
    """ids (B, T) -> next-token logits (B, T, V); `tokenizer` serves generate() and is saved with the model."""

    def __init__(self, config: GPTConfig | int | None = None, tokenizer: CharTokenizer | None = None, *,
                 rng: np.random.Generator | None = None, **sizes: Any):
        super().__init__()
        self.config, self.tokenizer = _gpt_config(config, tokenizer, sizes)
        ### BEGIN SOLUTION
        c, init = self.config, rng or get_rng()
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

    def forward(self, idx: Any, caches: Sequence[KVCache] | None = None, last_only: bool = False) -> Tensor:
        """Logits (B, T, V) for ids (B, T) or (T,) after the positions in `caches`; last_only: (B, 1, V)."""
        ids = _as_ids(idx, "TinyGPT")
        ids, past = ids[None, :] if ids.ndim == 1 else ids, 0 if caches is None else len(caches[0])
        if ids.ndim != 2 or not 1 <= ids.shape[1] <= self.max_length - past \
                or (caches is not None and len(caches) != len(self.blocks)):
            raise ValueError(f"TinyGPT: expects ids (B, 1 <= T <= max_length={self.max_length} - {past} cached) "
                             f"and one cache per block, got shape {ids.shape}")
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
        """The prompt (a string, or 1-D ids) and `max_length` new tokens: a string if the model has a tokenizer."""
        if isinstance(prompt, str) and self.tokenizer is None:
            raise ValueError("TinyGPT.generate: a string prompt needs a tokenizer; or pass token ids")
        ### BEGIN SOLUTION
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else _as_ids(prompt, "TinyGPT.generate").reshape(-1)
        rng = np.random.default_rng(seed) if seed is not None else get_rng()
        out = generate_tokens(self, ids[None, :], max_length, temperature=temperature, top_k=top_k,
                              top_p=top_p, rng=rng, use_cache=use_cache, window_keep=window_keep)[0]   # (T0 + n,)
        return self.tokenizer.decode(out) if self.tokenizer is not None else out
        ### END SOLUTION

    def save(self, path: str | os.PathLike) -> Path:
        """Parameters, config and tokenizer in one safe .npz file, whatever its name (section 9)."""
        return save_tinygpt(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TinyGPT:
        """A model written by `save` (never unpickles; CheckpointError if the file is not one)."""
        return load_tinygpt(path)

    def train_on_text(self, text: str, epochs: int = 1, iterations_per_epoch: int = 100,
                      **kwargs: Any) -> dict[str, list]:
        """Fit a tokenizer if there is none, train epochs * iterations_per_epoch steps (kwargs: TrainConfig's)."""
        if self.tokenizer is None and len(set(text)) > self.vocab_size:
            raise ValueError(f"TinyGPT.train_on_text: {len(set(text))} distinct characters > vocab_size={self.vocab_size}")
        ### BEGIN SOLUTION
        if self.tokenizer is None:
            self.tokenizer = CharTokenizer().fit(text)
        trainer = LanguageModelTrainer(self, text, iterations=epochs * iterations_per_epoch,
                                       eval_interval=iterations_per_epoch, **kwargs)
        return trainer.fit()
        ### END SOLUTION

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
assert np.allclose(small(ids, last_only=True).data[:, 0], logits.data[:, -1], atol=1e-6)
print(f"TinyGPT: OK ({small.num_parameters():,} parameters in the small one)")

# %% [markdown]
# ## 6. The language-modelling loss
#
# A window of `T + 1` characters gives inputs `window[:, :-1]` and targets `window[:, 1:]`
# (`F i r s t` → `i r s t ␣`). The loss is the mean cross-entropy over all `B·T` predictions (module
# 04's `CrossEntropyLoss` takes logits `(..., V)`); `e^loss` is the number of equally likely
# candidates: ln 65 = 4.17 is the uniform guess.

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
        ### BEGIN SOLUTION
        self.ignore_index = ignore_index
        self.cross_entropy = CrossEntropyLoss(ignore_index=ignore_index)
        ### END SOLUTION

    def forward(self, logits: Tensor, targets: Any) -> Tensor:
        t = _as_ids(targets, "LanguageModelLoss")
        if logits.ndim != 3 or t.shape != logits.shape[:2]:
            raise ValueError(f"LanguageModelLoss: logits must be (B, T, V) and targets (B, T), got {logits.shape} "
                             f"and {t.shape} (make them with shift_targets(window))")
        ### BEGIN SOLUTION
        return self.cross_entropy(logits, t)                  # mean over the B * T predictions
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-lm-loss", "locked": true, "points": 2, "schema_version": 3, "solution": false}
inputs, targets = shift_targets(np.array([[5, 1, 4, 1, 5, 9]]))
assert inputs.tolist() == [[5, 1, 4, 1, 5]] and targets.tolist() == [[1, 4, 1, 5, 9]]
uniform = Tensor(np.zeros((2, 5, 65)))
assert abs(LanguageModelLoss()(uniform, np.zeros((2, 5), dtype=np.int64)).item() - np.log(65)) < 1e-5, "uniform: ln V"
sure = np.full((1, 5, 10), -20.0, dtype=np.float32)
sure[0, np.arange(5), targets[0]] = 20.0                 # confident and right at every position
assert LanguageModelLoss()(Tensor(sure), targets).item() < 1e-6
print("language-model loss: OK")

# %% [markdown]
# ## 7. Choosing the next character
#
# | strategy | on logits `z` `(B, V)` or `(V,)`, in numpy outside the graph |
# |---|---|
# | greedy (temperature 0) | `argmax z`, ties to the lowest id |
# | temperature τ | sample `softmax(z / τ)`: τ < 1 sharpens, τ > 1 flattens |
# | top-k | keep exactly the `k` highest logits (ties: lower ids) |
# | top-p | keep the most probable ids until their probability reaches `p` (the top one always) |
#
# `sample_next` applies temperature → top-k → top-p, then samples by inverse CDF: one
# `u ~ U(0, 1]` per row picks the first id whose cumulative probability reaches `u`; a
# temperature so small that `z / τ` would overflow is greedy (the limit τ → 0).

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
    ids = z.argmax(axis=-1).astype(np.int64)                             # (B,)
    return ids.reshape(np.shape(logits.data if isinstance(logits, Tensor) else logits)[:-1])
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
    """Logits with all but the nucleus set to -inf: the most probable ids until their sum reaches p (1e-9)."""
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
    """One id per row: logits (B, V) -> (B,) int64 ((V,) -> 0-d); temperature, top_k, top_p, then inverse CDF."""
    shape = np.shape(logits.data if isinstance(logits, Tensor) else logits)[:-1]
    z = _logits_2d(logits, "sample_next")
    if not np.isfinite(z.max(axis=-1)).all() or not (isinstance(temperature, (int, float, np.number))
                                                       and 0 <= temperature < math.inf):
        raise ValueError(f"sample_next: needs a finite maximum in every row and temperature >= 0, got {temperature!r}")
    ### BEGIN SOLUTION
    with np.errstate(over="ignore", invalid="ignore"):      # a subnormal temperature: z / t overflows -> greedy
        tiny = temperature == 0 or not np.isfinite(z[np.isfinite(z)].astype(np.float64) / temperature).all()
    if tiny:
        return greedy(z).reshape(shape)
    z = z.astype(np.float64) / temperature                               # τ < 1 sharpens, τ > 1 flattens
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
cold = sample_next(np.repeat(z, 2000, axis=0), temperature=0.5, rng=np.random.default_rng(2))
assert (cold == 0).mean() > 0.65, "a low temperature sharpens the distribution (p0: 0.5 -> 0.77)"
assert np.isfinite(top_k_filter(z, 2)).tolist() == [[True, True, False, False, False]]
assert np.isfinite(top_p_filter(z, 0.6)).tolist() == [[True, True, False, False, False]], "0.5 < 0.6 <= 0.7"
draws = sample_next(np.repeat(z, 4000, axis=0), rng=np.random.default_rng(0))
freq = np.bincount(draws, minlength=5) / draws.size
assert np.allclose(freq, [0.5, 0.2, 0.15, 0.1, 0.05], atol=0.03), freq
assert set(sample_next(np.repeat(z, 500, axis=0), top_p=0.8, rng=np.random.default_rng(1)).tolist()) == {0, 1, 2}
print("sampling: OK", np.round(freq, 3))

# %% [markdown]
# ## 8. Generating text, fast: the KV cache and the sliding window
#
# Generation is a loop: run the model, take the last position's logits, choose, append. The keys and
# values of earlier positions never change, so one `KVCache` per block keeps them: a *prefill* runs
# the prompt, then each step runs only the new token, at `offset = cache length`. When the cache is
# full (`max_length`), TinyGPT **re-prefills** the last `window_keep` tokens (default `max_length // 2`)
# at positions 0… (cached keys carry absolute positions); `use_cache=False` recomputes the last
# `max_length` ids every step. Only ids the tokenizer can decode are sampled.

# %% nbgrader={"grade": false, "grade_id": "generate", "locked": false, "schema_version": 3, "solution": true}
#| export
def generate_tokens(model: TinyGPT, ids: Any, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None,
                    rng: np.random.Generator | None = None, use_cache: bool = True,
                    window_keep: int | None = None) -> np.ndarray:
    """ids (B, T0) -> (B, T0 + max_new_tokens) int64; KV caches re-prefilled with `window_keep` ids when full."""
    ids = _as_ids(ids, "generate_tokens")
    L = model.max_length
    keep = max(1, L // 2) if window_keep is None else int(window_keep)
    if ids.ndim != 2 or ids.shape[1] == 0 or not 1 <= keep <= L or isinstance(max_new_tokens, bool) \
            or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"generate_tokens: needs ids (B, T0 >= 1), max_new_tokens >= 0 and window_keep in "
                         f"[1, {L}], got {ids.shape}, {max_new_tokens!r}, {window_keep!r}")
    ### BEGIN SOLUTION
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            V = model.vocab_size if model.tokenizer is None else min(model.vocab_size, model.tokenizer.vocab_size)
            B, T0 = ids.shape
            tokens = np.empty((B, T0 + max_new_tokens), dtype=np.int64)
            tokens[:, :T0] = ids
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
    finally:
        model.train(was_training)
    return tokens
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-generate", "locked": true, "points": 4, "schema_version": 3, "solution": false}
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
assert gpt.generate("To be", max_length=10, temperature=0) == gpt.generate("To be", max_length=10, temperature=0,
                                                                            use_cache=False)
print("generate: OK", repr(text))

# %% [markdown]
# ## 9. Saving and loading a model
#
# A model is its parameters plus what rebuilds it: the `GPTConfig` and the tokenizer. Module 07's
# `save_npz_checkpoint` stores arrays and JSON in one `.npz`, read back with `allow_pickle=False`
# because **unpickling runs code** (`model.pkl` is npz inside too). Bad files raise `CheckpointError`;
# the sizes are checked against the arrays' shapes *before* a model is built (no huge allocations).

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


def _check_sizes(path: Any, config: GPTConfig, arrays: dict[str, np.ndarray]) -> None:
    """Refuse a config whose sizes disagree with the stored arrays' shapes, before any model is allocated."""
    c = config
    expected = {"token_embedding.weight": (c.vocab_size, c.d_model), "head.weight": (c.d_model, c.vocab_size),
                "blocks.0.ff.layers.0.weight": (c.d_model, c.ff_dim),
                "positions.weight": (c.max_length, c.d_model) if c.learned_positions else None}
    wrong = {k: np.shape(arrays[k]) if k in arrays else None for k, s in expected.items()
             if (np.shape(arrays[k]) if k in arrays else None) != s}
    if wrong or len({k.split(".")[1] for k in arrays if k.startswith("blocks.")}) != c.num_layers:
        raise CheckpointError(f"{path}: the config {c.to_dict()} does not fit the stored arrays {wrong}")


def load_tinygpt(path: str | os.PathLike) -> TinyGPT:
    """The model saved at `path`; CheckpointError if the file is not one, is damaged or does not fit together."""
    arrays, meta = load_npz_checkpoint(path, kind=CHECKPOINT_KIND)
    keys = sorted(f.name for f in fields(GPTConfig))
    if not isinstance(meta.get("config"), dict) or sorted(meta["config"]) != keys:
        raise CheckpointError(f"{path}: the TinyGPT config should have the keys {keys}, got {meta.get('config')!r:.200}")
    try:
        config = GPTConfig(**meta["config"])
        _check_sizes(path, config, arrays)                                # before allocating anything
        ### BEGIN SOLUTION
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
(folder / "evil.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))   # a pickle: refused, never unpickled
try:
    TinyGPT.load(folder / "evil.pkl")
    raise AssertionError("a pickle must be refused")
except CheckpointError:
    pass
print("save and load: OK")

# %% [markdown]
# ## 10. Training on text
#
# A batch is `B` windows of `T + 1` ids at random offsets, split by `shift_targets`. An *epoch* is
# `eval_interval` steps; epoch `e` draws its offsets from `np.random.default_rng([seed, e])`, so a
# resumed run sees exactly the windows of an uninterrupted one. The first 90% of the text trains, the
# last 10% validates. nanoGPT's recipe (AdamW, β = (0.9, 0.99), weight decay 0.1, warm-up then cosine
# decay, clipping at norm 1) runs on module 07's `Trainer`, all of it set by one `TrainConfig`.

# %% nbgrader={"grade": false, "grade_id": "training", "locked": false, "schema_version": 3, "solution": true}
#| export
class TextWindows:
    """Batches (inputs (B, T), targets (B, T)): num_batches random windows per epoch, or all in order (None)."""

    def __init__(self, tokens: Any, context: int, batch_size: int, num_batches: int | None = None,
                 seed: int = 0, resample_each_epoch: bool = True):
        ### BEGIN SOLUTION
        self.tokens = _as_ids(tokens, "TextWindows").reshape(-1)                # (N,)
        self.context, self.batch_size = int(context), int(batch_size)
        self.num_batches = None if num_batches is None else int(num_batches)
        self.seed, self.resample_each_epoch, self.epoch, self.on_epoch = int(seed), bool(resample_each_epoch), 0, None
        ### END SOLUTION
        if min(self.context, self.batch_size, self.num_batches or 1) < 1 or self.tokens.size < self.context + 1:
            raise ValueError(f"TextWindows: needs positive sizes and context + 1 <= {self.tokens.size} tokens")

    def set_epoch(self, epoch: int) -> None:
        """Draw the windows of `epoch` next (module 07's Trainer calls this before every epoch)."""
        if self.on_epoch is not None:
            self.on_epoch()
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches or math.ceil(self.starts().size / self.batch_size)

    def starts(self) -> np.ndarray:
        """The window offsets of the current epoch: (num_batches, B), or (n,) for the walk in order."""
        ### BEGIN SOLUTION
        n = self.tokens.size - self.context                                  # windows of T + 1 tokens
        if self.num_batches is None:
            return np.arange(0, n, self.context)
        rng = np.random.default_rng([self.seed, self.epoch] if self.resample_each_epoch else [self.seed])
        return rng.integers(0, n, size=(self.num_batches, self.batch_size))
        ### END SOLUTION

    def __iter__(self) -> Iterator[tuple[Tensor, np.ndarray]]:
        ### BEGIN SOLUTION
        starts = self.starts()
        rows = starts if starts.ndim == 2 else [starts[i:i + self.batch_size] for i in range(0, starts.size, self.batch_size)]
        for batch_starts in rows:
            window = self.tokens[batch_starts[:, None] + np.arange(self.context + 1)]   # (B, T + 1)
            inputs, targets = shift_targets(window)
            yield Tensor(np.ascontiguousarray(inputs)), np.ascontiguousarray(targets)   # int64 stays int64
        ### END SOLUTION


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
    """Trains a TinyGPT on `text` with module 07's Trainer as a TrainConfig (or keyword overrides) says."""

    def __init__(self, model: TinyGPT, text: str, config: TrainConfig | None = None, *,
                 checkpoint_dir: str | os.PathLike | None = None, progress: bool = True, verbose: bool = True,
                 metrics: Any = ("accuracy",), on_evaluation: Callable[[dict[str, Any]], None] | None = None,
                 optimizer_class: type = AdamW, **overrides: Any):
        self.config = c = replace(config or TrainConfig(), **overrides)
        self.context = model.max_length if c.context is None else int(c.context)
        if model.tokenizer is None or c.iterations < 1 or c.eval_interval < 1 or c.iterations % c.eval_interval \
                or not 1 <= self.context <= model.max_length or not 0 < c.val_fraction < 1:
            raise ValueError(f"LanguageModelTrainer: needs a tokenizer, iterations a multiple of eval_interval, "
                             f"context in [1, max_length] and val_fraction in (0, 1), got {c} for {model!r:.60}")
        ### BEGIN SOLUTION
        self.model, self.iterations, self.eval_interval, self.batch_size = model, c.iterations, c.eval_interval, c.batch_size
        self.verbose, self.on_evaluation, self._printed = bool(verbose), on_evaluation, 0
        cut = int(round(len(text) * (1 - c.val_fraction)))         # by position: the end of the text validates
        self.train_tokens = model.tokenizer.encode(text[:cut])
        self.val_tokens = model.tokenizer.encode(text[cut:])
        self.train_data = TextWindows(self.train_tokens, self.context, c.batch_size, c.eval_interval, seed=c.seed)
        self.val_data = TextWindows(self.val_tokens, self.context, c.batch_size, c.eval_batches,
                                    seed=c.seed + 1, resample_each_epoch=False)
        self.optimizer = optimizer_class(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        self.scheduler = CosineWarmupLR(self.optimizer, warmup_steps=min(c.warmup, c.iterations - 1),
                                        total_steps=c.iterations, min_lr=min(c.min_lr, c.lr))
        self.trainer = Trainer(model, self.optimizer, LanguageModelLoss(), metrics=metrics, scheduler=self.scheduler,
                               grad_clip=c.grad_clip, checkpoint_dir=checkpoint_dir, progress=progress)
        self.train_data.on_epoch = self._report             # report the last epoch when the next one starts
        ### END SOLUTION

    epochs = property(lambda self: self.iterations // self.eval_interval)
    history = property(lambda self: self.trainer.history)
    iterations_done = property(lambda self: self.trainer.epoch * self.eval_interval)
    tokens_seen = property(lambda self: self.iterations_done * self.batch_size * self.context)

    def fit(self, resume: bool | str | os.PathLike = False, epochs: int | None = None) -> dict[str, list]:
        """Train until `epochs` epochs are done (default all); resume: True (checkpoint_dir/last.npz) or a path."""
        last = self.epochs if epochs is None else min(int(epochs), self.epochs)
        if self.trainer.epoch < last or resume is not False:
            self.trainer.fit(self.train_data, self.val_data, epochs=last, resume=resume)
        self._report()                                    # the last epoch's row
        return self.history

    def _report(self) -> None:
        """Print (verbose) and pass to `on_evaluation` every history row not reported yet."""
        h = self.history
        for i in range(self._printed, len(h["epoch"])):
            row = {"iteration": h["epoch"][i] * self.eval_interval, **{k: h[k][i] for k in ("train_loss", "val_loss", "lr", "seconds")}}
            if self.verbose:
                print(f"iter {row['iteration']:5d}/{self.iterations}: train loss {row['train_loss']:.4f}, val loss "
                      f"{row['val_loss']:.4f}, lr {row['lr']:.2e}, {sum(h['seconds'][:i + 1]):.0f} s", flush=True)
            if self.on_evaluation is not None:
                self.on_evaluation(row)
            self._printed = i + 1

    def evaluate(self, split: str = "val", full: bool = True) -> dict[str, float]:
        """Loss and metrics on "val" or "train": every window once if `full`, else the fixed validation batches."""
        if split not in ("val", "train"):
            raise ValueError(f"LanguageModelTrainer.evaluate: split must be 'val' or 'train', got {split!r}")
        ### BEGIN SOLUTION
        tokens = self.val_tokens if split == "val" else self.train_tokens
        data = TextWindows(tokens, self.context, self.batch_size) if full or split == "train" else self.val_data
        return self.trainer.evaluate(data)
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-training", "locked": true, "points": 4, "schema_version": 3, "solution": false}
text = "to be or not to be, that is the question. " * 30
x_batch, y_batch = next(iter(TextWindows(CharTokenizer().encode(text), context=8, batch_size=4, num_batches=3)))
assert x_batch.shape == (4, 8) and np.array_equal(x_batch.data[:, 1:], y_batch[:, :-1]), "targets: inputs shifted by one"
parrot = TinyGPT(tokenizer=CharTokenizer().fit(text), d_model=48, num_heads=2, num_layers=2, max_length=16,
                 rng=np.random.default_rng(0))
lm_trainer = LanguageModelTrainer(parrot, text, iterations=150, eval_interval=50, batch_size=8, lr=5e-3,
                                  warmup=10, weight_decay=0.0, eval_batches=2, progress=False)
history = lm_trainer.fit()
assert len(history["epoch"]) == 3 and history["train_loss"][0] > history["train_loss"][-1], history["train_loss"]
sample = parrot.generate("to be or", max_length=40, temperature=0)
assert sample.startswith("to be or not to be, that is the"), f"a short repeated text is learned: {sample!r}"
print("training: OK", repr(sample))

# %% [markdown]
# ## Systems thinking
#
# 1. **Where the time goes.** Count the FLOPs of a training step (B = 12, T = 64, C = 128, L = 4:
#    forward ≈ 2 × tokens × parameters plus `4 B T² C` per layer for attention, backward twice
#    that) and compare with `python benchmarks/bench_tinygpt.py`.
# 2. **Cache or recompute.** Why is a cached step at batch 1 far from 64× faster than `use_cache=False`?
# 3. **The cache's memory.** How many bytes do one sequence's caches take (`KVCache.nbytes`), and
#    GPT-2 small's (L = 12, C = 768, T = 1024) in float16? Why would relative positions (rotary,
#    ALiBi) allow `drop_oldest` instead of re-prefilling?

