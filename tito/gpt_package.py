"""TinyGPT as a model package of module 15: the "tinygpt" `ModelKind` that `tito package` and
`tito serve` use.

Module 15 serves *model packages* (a folder with a manifest and hash-checked files); a model
other than a `Sequential` classifier plugs in with a `ModelKind`, a record of functions that
save, describe, load and run it. Module 16's TinyGPT knows nothing of packaging, and module 15
cannot import module 16, so the adapter between the two lives here, outside the course's
layering:

- saving writes `TinyGPT.save`'s file as weights.npz;
- loading checks the stored arrays' shapes against the saved config *before* a model of that
  config is built (a small file cannot make the server allocate a huge model);
- completions run on module 15's `GPTEngine`, so the server batches concurrent requests into
  one forward pass per token.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinytorch.core.training import load_npz_checkpoint
from tinytorch.mlops.mlops import (
    SEQUENTIAL, GPTEngine, ModelKind, PackageError, check_shapes, engine_complete, gpt_weight_shapes,
    save_package, text_spec)
from tinytorch.tinygpt import CHECKPOINT_KIND, TinyGPT

WEIGHTS = "weights.npz"


def check_weights(path: Path, where: str) -> None:
    """PackageError unless the arrays of the TinyGPT file `path` have exactly the shapes its saved
    config asks for (CheckpointError if it is not a TinyGPT file at all)."""
    arrays, meta = load_npz_checkpoint(path, kind=CHECKPOINT_KIND)
    check_shapes({k: a.shape for k, a in arrays.items()}, gpt_weight_shapes(meta.get("config")), where)


def _save(model: TinyGPT, folder: Path) -> None:
    if model.tokenizer is None:
        raise ValueError("package a TinyGPT that has a tokenizer: the server takes text prompts")
    model.save(folder / WEIGHTS)


def _describe(model: TinyGPT) -> dict[str, Any]:
    return {"config": model.config.to_dict(), "parameters": int(model.num_parameters())}


def _load(folder: Path, manifest: dict[str, Any]) -> TinyGPT:
    check_weights(folder / WEIGHTS, str(folder))                  # before a model of the config is built
    model = TinyGPT.load(folder / WEIGHTS)
    if model.tokenizer is None:
        raise PackageError(f"{folder / WEIGHTS} holds a TinyGPT without a tokenizer; it cannot take text")
    return model.eval()


def _vocabulary(model: TinyGPT) -> str:
    return "".join(model.tokenizer.chars)


def tinygpt_engine(model: TinyGPT, slots: int = 1) -> GPTEngine:
    """Module 15's batched numpy decoder over `model`'s weights (inference only; `slots`
    sequences at once)."""
    weights = dict(model.state_dict())
    if not model.config.learned_positions:                        # the engine reads positions as weights
        weights["positions.weight"] = model.positions.table
    return GPTEngine(weights, model.config.num_heads, eps=model.ln_f.eps, slots=slots,
                     vocabulary=_vocabulary(model))


def _complete(model: TinyGPT, *args: Any) -> str:
    return engine_complete(tinygpt_engine(model), *args)


TINYGPT_KIND = ModelKind(name="tinygpt", files=(WEIGHTS,), save=_save, describe=_describe, load=_load,
                         complete=_complete, vocabulary=_vocabulary, engine=tinygpt_engine)

SERVE_KINDS = (SEQUENTIAL, TINYGPT_KIND)        # what `tito serve` (and `tito package`'s check) load


def package_tinygpt(model: TinyGPT, path: str | os.PathLike, *, name: str, version: str, text: str | None = None,
                    config: dict | None = None, metrics: dict | None = None, overwrite: bool = False) -> Path:
    """Write a "tinygpt" model package of `model` (which needs a tokenizer) at `path`; `text`, the
    training text, gives the character statistics for drift monitoring."""
    if model.tokenizer is None:
        raise ValueError("package_tinygpt: the model has no tokenizer; the server takes text prompts")
    vocab = _vocabulary(model)
    if text is not None:
        known = set(vocab)
        text = "".join(c for c in text if c in known)
    return save_package(path, model, TINYGPT_KIND, name=name, version=version, input_spec=text_spec(vocab),
                        config={"model": model.config.to_dict(), **(config or {})}, metrics=metrics,
                        train_inputs=text or None, overwrite=overwrite)
