"""`tito serve PACKAGE [--port N] [--host 127.0.0.1]`: serve a model package over HTTP.

The server is module 15's `ModelServer` (tinytorch.mlops.mlops). A package is loaded with the
kinds this command knows: module 15's "sequential" and the "tinygpt" adapter of module 16's
TinyGPT in tito/gpt_package.py (tito sits outside the course's layering, so it can import both).
"""

from __future__ import annotations

import argparse
import signal
import sys
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
"serving NAME VERSION (KIND) at URL". The host defaults to 127.0.0.1 (this machine only).

Under load: the operating system queues --backlog connections; at most --max-connections
are handled at once (more get 503 with Retry-After); a client must send its whole request
within --socket-timeout seconds (one deadline, not per byte). Text completions of a TinyGPT
are batched: up to --max-running sequences share one forward pass per token, joining and
leaving between steps, and at most --max-queue wait (more get 503 with Retry-After)."""


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
                        help="seconds a client may take to send its whole request (default 10)")
    parser.add_argument("--backlog", type=int, default=256, help="connections queued before accept (default 256)")
    parser.add_argument("--max-connections", type=int, default=128,
                        help="connections handled at once; more get 503 (default 128)")
    parser.add_argument("--max-running", type=int, default=32,
                        help="text completions decoded together in one forward pass per token (default 32)")
    parser.add_argument("--max-queue", type=int, default=256,
                        help="text completions waiting to join the batch; more get 503 (default 256)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="OpenBLAS threads (default 1: a step's small products run fastest on one thread, "
                             "and the other cores serve connections)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")


def run(args: argparse.Namespace, course: Course) -> int:
    from tinytorch.mlops.mlops import ModelServer, PackageError, load_package
    from tito.gpt_package import SERVE_KINDS

    if not 0 <= args.port <= 65535:
        print(f"tito serve: error: --port must be in [0, 65535], got {args.port}", file=sys.stderr)
        return 2
    small = [f"--{name.replace('_', '-')}" for name in ("backlog", "max_connections", "max_running", "max_queue")
             if getattr(args, name) < 1]
    if small:
        print(f"tito serve: error: {', '.join(small)} must be at least 1", file=sys.stderr)
        return 2
    if args.blas_threads < 1:
        print("tito serve: error: --blas-threads must be at least 1", file=sys.stderr)
        return 2
    try:
        from tinytorch.bench.benchmarking import set_blas_threads
        set_blas_threads(args.blas_threads)
    except RuntimeError:                            # not an OpenBLAS this process can reach: leave it
        pass
    try:
        package = load_package(args.model, kinds=SERVE_KINDS)
        server = ModelServer(package, host=args.host, port=args.port, max_body_bytes=args.max_body_bytes,
                             max_batch=args.max_batch, max_new_tokens=args.max_new_tokens,
                             socket_timeout=args.socket_timeout, time_limit=args.time_limit,
                             verbose=not args.quiet, backlog=args.backlog, max_connections=args.max_connections,
                             max_running=args.max_running, max_queue=args.max_queue)
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
        server.shutdown()
        print("tito serve: stopped", flush=True)
    return 0


COMMAND = Command(
    name="serve",
    help="serve a model package over HTTP (module 15)",
    description=DESCRIPTION,
    add_arguments=add_arguments,
    run=run,
)
