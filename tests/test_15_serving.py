"""Module 15 under load and under attack: the batched generation engine (against TinyGPT's
own forward and generate), continuous batching in the server, its connection limits and
deadlines, and crafted package files. Loopback only, tiny models, a few seconds."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tinytorch.core.autograd import no_grad
from tinytorch.core.training import save_npz_checkpoint
from tinytorch.mlops.mlops import (BatchDecoder, GPTEngine, ModelServer, PackageError, TextRequest,
                                   _manifest_digest, array_spec, clean_leftovers, engine_complete, file_sha256,
                                   gpt_weight_shapes, load_package, npz_headers, sample_token, save_package)
from tinytorch.core.layers import Dense, Sequential
from tinytorch.tinygpt import CharTokenizer, TinyGPT
from tito.gpt_package import SERVE_KINDS as KINDS, TINYGPT_KIND, package_tinygpt

TEXT = "a bad cafe. a head. " * 30


def tiny_gpt(dtype="float32", learned=True, seed=0):
    return TinyGPT(tokenizer=CharTokenizer().fit(TEXT), d_model=16, num_heads=2, num_layers=2, max_length=16,
                   dtype=dtype, learned_positions=learned, rng=np.random.default_rng(seed))


def post(url, body, timeout=30.0):
    """(status, parsed JSON, headers) of a POST /complete, over http.client."""
    import http.client
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        conn.request("POST", "/complete", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = package_tinygpt(tiny_gpt(), tmp_path_factory.mktemp("serving") / "gpt", name="tiny", version="0.1",
                           text=TEXT)
    return load_package(path, kinds=KINDS)


# ---- the engine gives the model's own numbers -----------------------------------------------------
@pytest.mark.parametrize("learned", [True, False])
def test_engine_logits_equal_the_model_forward_in_float64(learned):
    model = tiny_gpt("float64", learned)
    engine = TINYGPT_KIND.engine(model, slots=4)
    ids = model.tokenizer.encode("a bad cafe. a he")                  # 16 ids: the whole context
    with no_grad():
        full = model(ids[None]).data[0]                               # (16, V)
    np.testing.assert_allclose(engine.prefill(0, ids, all_logits=True), full, rtol=0, atol=1e-10)
    engine.prefill(1, ids[:4])                                        # then one token at a time
    steps = [engine.step([1], [ids[t]])[0] for t in range(4, 16)]
    np.testing.assert_allclose(np.array(steps), full[4:], rtol=0, atol=1e-10)
    engine.prefill(0, ids[:3])                                        # two slots at different lengths
    engine.prefill(3, ids[:9])
    both = engine.step([3, 0], [ids[9], ids[3]])
    np.testing.assert_allclose(both, full[[9, 3]], rtol=0, atol=1e-10)


def test_engine_generation_is_tinygpt_generate():
    model = tiny_gpt("float64")
    engine = TINYGPT_KIND.engine(model, slots=3)
    for prompt in ("a", "a bad cafe. a head. a"):                     # short, and longer than the context
        assert prompt + engine_complete(engine, prompt, 40, 0.0) == model.generate(prompt, 40, temperature=0)
        sampled = engine_complete(engine, prompt, 40, 0.9, 4, 11)
        assert prompt + sampled == model.generate(prompt, 40, temperature=0.9, top_k=4, seed=11)
    requests = [TextRequest(model.tokenizer.encode(p).tolist(), n, 0.0) for p, n in
                [("a b", 30), ("cafe", 5), ("a head", 50), ("d", 1), ("ab", 20)]]   # 5 requests, 3 slots
    BatchDecoder(engine).run(requests)
    for request, (p, n) in zip(requests, [("a b", 30), ("cafe", 5), ("a head", 50), ("d", 1), ("ab", 20)]):
        assert model.tokenizer.decode(request.tokens) == model.generate(p, n, temperature=0)


def test_engine_refuses_weights_that_do_not_fit():
    weights = dict(tiny_gpt().state_dict())
    weights["blocks.1.ln2.bias"] = np.zeros(7, np.float32)
    with pytest.raises(PackageError):
        GPTEngine(weights, 2)


@pytest.mark.parametrize("temperature", [5e-324, 1e-320, 1e-300, 1e-12])
def test_a_tiny_temperature_is_greedy_never_nan(temperature):
    logits = np.array([0.5, 3.0, -1.0, 2.9])
    rng = np.random.default_rng(0)
    assert {sample_token(logits, temperature, None, rng) for _ in range(50)} == {1}
    assert sample_token(logits, 0.0, None, rng) == 1
    assert sample_token(np.array([1.0, 5.0, 5.0]), 5e-324, 2, rng) in (1, 2)


# ---- the server under load ---------------------------------------------------------------------
def test_200_simultaneous_clients_are_all_answered(package):
    with ModelServer(package, max_connections=16, max_new_tokens=64) as server:
        start = threading.Barrier(200)

        def client(i):
            start.wait(timeout=30)
            try:
                return post(server.url, {"prompt": "a bad ", "max_tokens": 8, "seed": i})
            except OSError as err:                                  # refused, reset, timed out: a dropped client
                return (None, repr(err), {})

        t0 = time.monotonic()
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(client, range(200)))
        seconds = time.monotonic() - t0
        codes = [a[0] for a in answers]
        assert set(codes) <= {200, 503}, [a for a in answers if a[0] not in (200, 503)][:3]
        assert codes.count(200) >= 16, codes.count(200)
        assert all(a[2].get("Retry-After") for a in answers if a[0] == 503)
        assert all(len(a[1]["completion"]) == 8 for a in answers if a[0] == 200)
        assert seconds < 60
        assert post(server.url, {"prompt": "a", "max_tokens": 2})[0] == 200


def test_concurrent_completions_equal_single_ones(package):
    bodies = [{"prompt": p, "max_tokens": n, "temperature": 0.8, "top_k": 5, "seed": s}
              for p, n, s in [("a bad ", 40, 1), ("cafe", 7, 2), ("a", 60, 3), ("head. ", 25, 4)] * 3]
    with ModelServer(package, max_new_tokens=64, max_running=5) as server:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: post(server.url, b), bodies))
    for (status, answer, _), body in zip(answers, bodies):
        assert status == 200
        assert answer["completion"] == package.complete(**body)


def test_a_full_queue_answers_503_with_retry_after(package):
    with ModelServer(package, max_new_tokens=500, max_running=1, max_queue=1, time_limit=30) as server:
        start = threading.Barrier(8)

        def client(_):
            start.wait(timeout=30)
            return post(server.url, {"prompt": "a", "max_tokens": 500})

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(client, range(8)))
    codes = [a[0] for a in answers]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    assert all(a[2].get("Retry-After") == "1" for a in answers if a[0] == 503)


def test_a_slow_sender_is_cut_off_at_the_request_deadline(package):
    with ModelServer(package, socket_timeout=1.0) as server:
        host, port = server.url.split("//")[1].split(":")
        body = json.dumps({"prompt": "a", "max_tokens": 2}).encode()
        head = (f"POST /complete HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"\r\n").encode()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(head)
            answer = b""
            for byte in body:                                        # one byte every 0.3 s: 0.3 < 1.0 each time
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.3)
                if time.monotonic() - t0 > 4:
                    break
            sock.settimeout(5)
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(65536):
                    answer += chunk
            elapsed = time.monotonic() - t0
        assert answer.startswith(b"HTTP/1.0 408"), answer[:80]
        assert elapsed < 4.5, elapsed                                 # cut off near 1 s, not after 4+ s of bytes
        # and a slow client does not block a normal one
        assert post(server.url, {"prompt": "a", "max_tokens": 2})[0] == 200


def test_a_slow_request_line_gets_408_too(package):
    with ModelServer(package, socket_timeout=0.5) as server:
        host, port = server.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /comp")
            time.sleep(0.2)
            sock.sendall(b"lete HTTP/1.0\r\n")                     # the headers never end
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.0 408"), answer[:80]


def test_504_says_how_long_the_request_waited_and_generated(package):
    with ModelServer(package, max_new_tokens=500, time_limit=0.05, max_running=1) as server:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(server.url, {"prompt": "a", "max_tokens": 500}), range(4)))
    timeouts = [a[1]["error"] for a in answers if a[0] == 504]
    assert timeouts and all(a[0] in (200, 503, 504) for a in answers), answers
    for message in timeouts:
        assert "waited" in message and "generating for" in message and "of 500 tokens" in message, message


def test_nested_json_is_a_400(package):
    with ModelServer(package) as server:
        status, answer, _ = post(server.url, b"[" * 100_000 + b"]" * 100_000)
        assert status == 400 and "nested" in answer["error"]
        status, _, _ = post(server.url, {"prompt": "a", "max_tokens": 3, "temperature": 5e-324})
        assert status == 200


# ---- crafted package files -------------------------------------------------------------------------
def _rehash(folder: Path) -> None:
    """Rewrite every hash of the manifest, as an attacker who can write the folder would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name]["sha256"] = file_sha256(folder / name)
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _big_config_checkpoint(path: Path) -> Path:
    """A small TinyGPT file whose config says d_model=2048 (330 MB of parameters if built)."""
    model = tiny_gpt()
    config = {**model.config.to_dict(), "d_model": 2048, "ff_dim": 8192}
    meta = {"config": config, "tokenizer": model.tokenizer.to_dict()}
    return save_npz_checkpoint(path, model.state_dict(), meta, kind="tinygpt")


def test_config_sizes_are_checked_before_anything_is_allocated(tmp_path):
    folder = package_tinygpt(tiny_gpt(), tmp_path / "pkg", name="tiny", version="0.1")
    _big_config_checkpoint(folder / "weights.npz")
    _rehash(folder)
    assert (folder / "weights.npz").stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(PackageError):
            load_package(folder, kinds=KINDS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak


def test_tito_package_refuses_a_crafted_checkpoint_cleanly(tmp_path, capsys):
    from tito.commands import package as command
    weights = _big_config_checkpoint(tmp_path / "big.npz")
    args = argparse.Namespace(weights=weights, out=tmp_path / "out", name="x", version="1", text=None, metric=[],
                              overwrite=False)
    tracemalloc.start()
    try:
        assert command.run(args, None) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "error" in capsys.readouterr().err and peak < 20_000_000, peak
    with zipfile.ZipFile(weights, "a") as archive:                 # a member that is not .npy
        archive.writestr("notes.txt", "hello")
    assert command.run(args, None) == 2 and not (tmp_path / "out").exists()


def test_a_member_that_is_not_npy_is_a_package_error(tmp_path):
    folder = package_tinygpt(tiny_gpt(), tmp_path / "pkg", name="tiny", version="0.1")
    with zipfile.ZipFile(folder / "weights.npz", "a") as archive:
        archive.writestr("readme.txt", "not an array")
    _rehash(folder)
    with pytest.raises(PackageError):
        load_package(folder, kinds=KINDS)
    with pytest.raises(PackageError):
        npz_headers(folder / "weights.npz")


def test_a_lying_npy_header_is_a_package_error(tmp_path):
    path = tmp_path / "lie.npz"
    np.savez(path, a=np.zeros(4, np.float32))
    blob = path.read_bytes().replace(b"'shape': (4,)", b"'shape': (9,)")
    path.write_bytes(blob)
    with pytest.raises(PackageError):
        npz_headers(path)


def npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def crafted(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def huge_header(shape):
    """An .npy header declaring `shape` of float64, followed by 8 bytes of data."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = shape
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + bytes(8)


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("members, match", [
    ([("w.npy", npy_bytes(np.ones(2))), ("notes.txt", b"hello")], "not a plainly named .npy"),
    ([("../escape.npy", npy_bytes(np.ones(2)))], "not a plainly named .npy"),
    ([("/abs.npy", npy_bytes(np.ones(2)))], "not a plainly named .npy"),
    ([("a\\b.npy", npy_bytes(np.ones(2)))], "not a plainly named .npy"),
    ([("x/./w.npy", npy_bytes(np.ones(2)))], "not a plainly named .npy"),
    ([("w.npy", npy_bytes(np.ones(2))), ("w.npy", npy_bytes(np.zeros(3)))], "there twice"),
    ([("w.npy", huge_header((10**6, 10**6)))], r"declares shape \(1000000, 1000000\)"),
    ([("w.npy", huge_header((-1,)))], "declares shape"),
    ([("w.npy", b"\x93NUMPY\x01\x00garbage")], "no readable .npy header"),
    ([("w.npy", b"not numpy at all")], "no readable .npy header"),
    ([("w.npy", npy_bytes(np.ones(4))[:-8])], "declares shape"),
    ([("w.npy", b"PK")], "no readable .npy header"),
])
def test_crafted_archives_are_refused_from_their_headers(tmp_path, members, match, monkeypatch):
    path = crafted(tmp_path / "crafted.npz", members)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("array data read"))
    with pytest.raises(PackageError, match=match):
        npz_headers(path)


def test_npz_headers_reads_shapes_and_dtypes_without_the_data(tmp_path, monkeypatch):
    path = tmp_path / "ok.npz"
    np.savez(path, w=np.ones((2, 3), np.float32), **{"blocks/0.b": np.arange(4)})
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("array data read"))
    assert npz_headers(path) == {"w": ((2, 3), np.dtype(np.float32)), "blocks/0.b": ((4,), np.dtype(np.int64))}
    for not_zip in (b"", b"\x80\x04 a pickle", b"PK\x03\x04 cut short"):
        path.write_bytes(not_zip)
        with pytest.raises(PackageError, match="not a readable .npz"):
            npz_headers(path)


def test_a_member_that_claims_to_inflate_far_beyond_deflate_is_refused_before_reading(tmp_path, monkeypatch):
    """A 1 KB file whose header and zip entry both claim a 1 GB array: refused without allocating it."""
    member = huge_header((125_000_000,))                     # declares 1e9 bytes of float64
    path = crafted(tmp_path / "liar.npz", [("w.npy", member)], zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    start = raw.rindex(b"PK\x01\x02", 0, raw.rindex(b"w.npy"))       # the central directory entry of w.npy
    raw[start + 24:start + 28] = struct.pack("<I", len(member) - 8 + 10**9)   # its uncompressed size, forged
    path.write_bytes(bytes(raw))
    assert path.stat().st_size < 2000
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("array data read"))
    with pytest.raises(PackageError, match="inflates"):
        npz_headers(path)
    monkeypatch.undo()
    compressed = tmp_path / "zeros.npz"                      # a genuine compressed archive passes
    np.savez_compressed(compressed, w=np.zeros(100_000))
    assert npz_headers(compressed) == {"w": ((100_000,), np.dtype(np.float64))}


def test_load_package_checks_every_member_before_numpy_reads_any(tmp_path, monkeypatch):
    folder = package_tinygpt(tiny_gpt(), tmp_path / "pkg", name="tiny", version="0.1")
    with zipfile.ZipFile(folder / "weights.npz", "a") as archive:
        archive.writestr("extra.npy", huge_header((125_000_000,)))      # 1 GB declared, 8 bytes held
    _rehash(folder)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("array data read"))
    with pytest.raises(PackageError, match="declares shape"):
        load_package(folder, kinds=KINDS)


def test_a_deeply_nested_manifest_is_a_package_error(tmp_path):
    folder = package_tinygpt(tiny_gpt(), tmp_path / "pkg", name="tiny", version="0.1")
    text = (folder / "manifest.json").read_text()
    for depth in (100_000, 900):                                    # json's limit, then canonical JSON's
        nested = text.replace('"metrics": {}', '"metrics": {"x": ' + "[" * depth + "]" * depth + "}", 1)
        assert nested != text
        (folder / "manifest.json").write_text(nested)
        with pytest.raises(PackageError):
            load_package(folder, kinds=KINDS)


def test_gpt_weight_shapes_refuse_silly_configs():
    for bad in [None, {}, {"vocab_size": 10, "d_model": True, "num_layers": 1, "max_length": 4},
                {"vocab_size": 10, "d_model": 8, "num_layers": 1, "max_length": 10**9}]:
        with pytest.raises(PackageError):
            gpt_weight_shapes(bad)


# ---- atomic overwrite, leftovers ---------------------------------------------------------------
def _classifier(seed):
    return Sequential(Dense(4, 3, rng=np.random.default_rng(seed)))


def test_overwrite_is_atomic_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "pkgs" / "clf"
    save_package(path, _classifier(0), name="clf", version="1", input_spec=array_spec((4,)))
    seen_missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not (path / "manifest.json").is_file():
                seen_missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for version in range(2, 12):
            save_package(path, _classifier(version), name="clf", version=str(version),
                         input_spec=array_spec((4,)), overwrite=True)
    finally:
        stop.set()
        watcher.join()
    if sys.platform.startswith("linux"):
        assert not seen_missing, "a reader found no package at the path during an overwrite"
    assert load_package(path).version == "11"
    assert sorted(p.name for p in path.parent.iterdir()) == ["clf"]


def test_leftovers_of_a_killed_save_are_cleaned_on_the_next_save(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    root = tmp_path / "pkgs"
    root.mkdir()
    stale = [root / f".clf.{dead_pid}.0123abcd.tmp", root / f".clf.{dead_pid}.89abcdef.old"]
    stale[0].mkdir()
    (stale[0] / "weights.npz").write_bytes(b"half")
    stale[1].mkdir()
    live = root / f".clf.{os.getpid()}.00000000.tmp"                  # a save still running in this process
    live.mkdir()
    other = root / f".other.{dead_pid}.0123abcd.tmp"                  # another package's: not ours to clean
    other.mkdir()
    save_package(root / "clf", _classifier(0), name="clf", version="1", input_spec=array_spec((4,)))
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
    assert clean_leftovers(root / "clf") == []
