"""`tito serve PACKAGE [--port N] [--host 127.0.0.1]`: serve a model package over HTTP.

The server is module 15's `ModelServer` (tinytorch.mlops.mlops). This file also defines
the "tinygpt" model kind (module 16's TinyGPT, saved with `TinyGPT.save`), which module 15
cannot import itself, and registers it before loading the package.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tito.command import Command
from tito.course import Course

DESCRIPTION = """\
Serve a model package (made with tinytorch.mlops.mlops.save_package, or `tito package`)
on http://HOST:PORT until interrupted. Endpoints: GET /health, GET /info, GET /drift, and
POST /predict (array models: {"inputs": [[...], ...]}) or POST /complete (text models such
as TinyGPT: {"prompt": "...", "max_tokens": 100, "temperature": 1.0, "top_k": null,
"seed": null}). Every answer is JSON; errors are {"error": "..."}.

The package's files are checked against the sha256 hashes of its manifest before
anything is loaded. --port 0 picks a free port; the first line printed is
"serving NAME VERSION (KIND) at URL". The host defaults to 127.0.0.1 (this machine only)."""

#: tokens generated between two checks of the request's deadline
GENERATION_CHUNK = 8


# ---- the "tinygpt" kind --------------------------------------------------------------------------
def tinygpt_kind() -> Any:
    """The ModelKind of module 16's TinyGPT: weights.npz is the file of `TinyGPT.save`."""
    import numpy as np

    from tinytorch.mlops.mlops import GenerationTimeout, ModelKind, PackageError
    from tinytorch.tinygpt import TinyGPT, generate_tokens

    def save(model: TinyGPT, folder: Path) -> None:
        if model.tokenizer is None:
            raise ValueError("package a TinyGPT that has a tokenizer: the server takes text prompts")
        model.save(folder / "weights.npz")

    def describe(model: TinyGPT) -> dict[str, Any]:
        return {"config": dict(model.config), "parameters": int(model.num_parameters())}

    def load(folder: Path, manifest: dict[str, Any]) -> TinyGPT:
        model = TinyGPT.load(folder / "weights.npz")
        if model.tokenizer is None:
            raise PackageError(f"{folder / 'weights.npz'} holds a TinyGPT without a tokenizer; it cannot take text")
        return model.eval()

    def vocabulary(model: TinyGPT) -> str:
        return "".join(model.tokenizer.chars)

    def complete(model: TinyGPT, prompt: str, max_tokens: int, temperature: float, top_k: int | None,
                 seed: int | None, deadline: float | None) -> str:
        """Generate in chunks of GENERATION_CHUNK tokens (each with the KV cache), checking
        the deadline between chunks; the context is the last max_length tokens."""
        started = time.monotonic()
        prompt_ids = model.tokenizer.encode(prompt)
        tokens = prompt_ids[None, :]                                     # (1, T)
        rng = np.random.default_rng(seed)
        done = 0
        while done < max_tokens:
            if deadline is not None and time.monotonic() > deadline:
                raise GenerationTimeout(done, max_tokens, time.monotonic() - started)
            n = min(GENERATION_CHUNK, max_tokens - done)
            context = tokens[:, -model.max_length:]                      # (1, <= L)
            out = generate_tokens(model, context, n, temperature=temperature, top_k=top_k, rng=rng)
            tokens = np.concatenate([tokens, out[:, context.shape[1]:]], axis=1)
            done += n
        return model.tokenizer.decode(tokens[0, len(prompt_ids):])

    return ModelKind(name="tinygpt", files=("weights.npz",), save=save, describe=describe, load=load,
                     complete=complete, vocabulary=vocabulary)


def register_tinygpt() -> Any:
    """Register the "tinygpt" kind with module 15's registry (idempotent); returns it."""
    from tinytorch.mlops.mlops import KINDS, register_kind

    return KINDS["tinygpt"] if "tinygpt" in KINDS else register_kind(tinygpt_kind())


def package_tinygpt(model: Any, path: str | Path, *, name: str, version: str, text: str | None = None,
                    config: dict | None = None, metrics: dict | None = None, overwrite: bool = False) -> Path:
    """Write a "tinygpt" package of `model` at `path`; `text` (the training text) gives the
    character statistics for drift monitoring."""
    from tinytorch.mlops.mlops import save_package, text_spec

    register_tinygpt()
    if model.tokenizer is None:
        raise ValueError("package_tinygpt: the model has no tokenizer")
    vocab = "".join(model.tokenizer.chars)
    if text is not None:
        text = "".join(c for c in text if c in set(vocab))
    return save_package(path, model, "tinygpt", name=name, version=version, input_spec=text_spec(vocab),
                        config={"model": dict(model.config), **(config or {})}, metrics=metrics,
                        train_inputs=text or None, overwrite=overwrite)


# ---- the command -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the model package folder (the one holding manifest.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-batch", type=int, default=256, help="examples per /predict request (default 256)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="largest max_tokens of /complete (default 500)")
    parser.add_argument("--time-limit", type=float, default=10.0,
                        help="seconds a request may wait for the model and generate (default 10)")
    parser.add_argument("--socket-timeout", type=float, default=10.0,
                        help="seconds a client may take to send its request (default 10)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")


def run(args: argparse.Namespace, course: Course) -> int:
    from tinytorch.mlops.mlops import ModelServer, PackageError, load_package

    register_tinygpt()
    if not 0 <= args.port <= 65535:
        print(f"tito serve: error: --port must be in [0, 65535], got {args.port}", file=sys.stderr)
        return 2
    try:
        package = load_package(args.model)
        server = ModelServer(package, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes,
                             max_batch=args.max_batch, max_new_tokens=args.max_new_tokens,
                             socket_timeout=args.socket_timeout, time_limit=args.time_limit,
                             verbose=not args.quiet)
    except PackageError as err:
        print(f"tito serve: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"tito serve: error: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    print(f"serving {package.name} {package.version} ({package.manifest['kind']}) at {server.url}", flush=True)
    print(f"endpoints: {', '.join(f'{m} {p}' for p, ms in sorted(server.routes.items()) for m in ms)}; "
          f"Ctrl-C stops", flush=True)

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.httpd.server_close()
        print("tito serve: stopped", flush=True)
    return 0


COMMAND = Command(
    name="serve",
    help="serve a model package over HTTP (module 15)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
