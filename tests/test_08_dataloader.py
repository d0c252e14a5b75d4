"""Tests for module 08 (dataloader): datasets, DataLoader, batch transforms, downloads,
CIFAR-10 parsing and validation, train/val splits, Tiny Shakespeare.

All data is generated in tmp_path in the real binary formats; the network is never used
(the fetch function is monkeypatched), and neither is the shared data directory.
"""
import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.core.dataloader as dl
from tinytorch.core.dataloader import (
    CIFAR10, CIFAR10_FOLDER, CIFAR10_MD5, ChecksumError, Compose, CorruptFileError, DataLoader,
    Dataset, DatasetError, DownloadError, Normalize, RandomCrop, RandomHorizontalFlip, Subset,
    TensorDataset, ToFloat, channel_stats, data_dir, download, extract_tar, fetch_batch,
    file_hash, hash_mismatch, is_safe_member, read_cifar_file, tiny_shakespeare, train_val_split)
from tinytorch.core.tensor import Tensor, manual_seed


# ---- helpers ----------------------------------------------------------------------------
def records(labels, seed=0):
    """CIFAR-10 binary records: (R, 3073) uint8, label byte then 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    rec = np.empty((len(labels), 3073), dtype=np.uint8)
    rec[:, 0] = labels
    rec[:, 1:] = rng.integers(0, 256, size=(len(labels), 3072))
    return rec


def write_cifar_tree(root: Path, per_file=6, seed=0):
    """<root>/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin; returns {name: records}."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CIFAR10.train_files + CIFAR10.test_files):
        rec = records(rng.integers(0, 10, per_file), seed=seed * 100 + k)
        rec.tofile(folder / name)
        out[name] = rec
    return out


def sums_of(root: Path):
    return {p.name: file_hash(p) for p in (root / CIFAR10_FOLDER).glob("*.bin")}


def labels_of(loader_or_batches):
    return np.concatenate([b[1].data for b in loader_or_batches]) if loader_or_batches else np.array([], int)


class NoBatch(Dataset):
    """Only __getitem__: the loader must stack samples."""
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return np.full((2, 3), i, dtype=np.float64), np.int32(i)


class BatchOnly(Dataset):
    """get_batch works, __getitem__ explodes: proves the loader uses the fast path."""
    def __init__(self, n):
        self.n, self.calls = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("per-sample __getitem__ called although get_batch exists")

    def get_batch(self, idx):
        self.calls += 1
        return idx.astype(np.float32)[:, None] * np.ones((1, 4), np.float32), idx.copy()


# ---- datasets -----------------------------------------------------------------------------
def test_tensor_dataset_indexing_batches_and_no_copy():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    t = Tensor(np.arange(10))
    ds = TensorDataset(x, t)
    assert len(ds) == 10 and ds.arrays[0] is x and ds.arrays[1] is t.data
    assert np.array_equal(ds[-1][0], x[9]) and ds[3][1] == 3
    bx, by = ds.get_batch(np.array([9, 0, 9]))
    assert np.array_equal(bx, x[[9, 0, 9]]) and by.tolist() == [9, 0, 9]
    with pytest.raises(IndexError):
        ds[10]


def test_tensor_dataset_refuses_mismatched_and_scalar_arrays():
    with pytest.raises(ValueError):
        TensorDataset(np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(ValueError):
        TensorDataset(np.zeros(3), np.float32(1.0))
    with pytest.raises(ValueError):
        TensorDataset()


def test_fetch_batch_stacks_samples_without_get_batch():
    x, y = fetch_batch(NoBatch(5), np.array([4, 1]))
    assert x.shape == (2, 2, 3) and x.dtype == np.float64 and x[0, 0, 0] == 4 and y.tolist() == [4, 1]


def test_fetch_batch_refuses_ragged_samples():
    class Ragged(NoBatch):
        def __getitem__(self, i):
            return (np.zeros(i + 1), i) if i < 2 else (np.zeros(1),)
    with pytest.raises(ValueError):                     # field 0 has shapes (1,) and (2,)
        fetch_batch(Ragged(3), np.array([0, 1]))
    with pytest.raises(ValueError):                     # two fields, then one
        fetch_batch(Ragged(3), np.array([0, 2]))


def test_subset_views_and_range_check():
    base = TensorDataset(np.arange(20).reshape(10, 2), np.arange(10))
    sub = Subset(base, [7, 2, 5])
    assert len(sub) == 3 and sub[0][1] == 7
    assert sub.get_batch(np.array([2, 0]))[1].tolist() == [5, 7]
    nested = Subset(Subset(NoBatch(6), [5, 4, 3]), [2, 0])        # falls back to stacking
    assert fetch_batch(nested, np.array([0, 1]))[1].tolist() == [3, 5]
    with pytest.raises(IndexError):
        Subset(base, [1, 10, -1])


# ---- DataLoader ---------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 90), batch_size=st.integers(1, 40), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**32))
def test_every_sample_once_per_epoch_property(n, batch_size, shuffle, drop_last, seed):
    ds = TensorDataset(np.arange(n, dtype=np.float32).reshape(n, 1), np.arange(n))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)
    batches = list(loader)
    assert len(batches) == len(loader)
    sizes = [len(b[1]) for b in batches]
    full, rest = divmod(n, batch_size)
    expected = [batch_size] * full + ([] if drop_last or rest == 0 else [rest])
    assert sizes == expected
    seen = labels_of(batches)
    assert len(set(seen.tolist())) == len(seen), "no sample twice in one epoch"
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n)), "every sample exactly once"
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))
    for x, y in batches:
        assert np.array_equal(x.data[:, 0], y.data.astype(np.float32)), "fields stay aligned"


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 60), batch_size=st.integers(1, 16), seed=st.integers(0, 1000),
       epoch=st.integers(0, 50))
def test_order_is_a_pure_function_of_seed_and_epoch_property(n, batch_size, seed, epoch):
    ds = TensorDataset(np.zeros((n, 1)), np.arange(n))
    a = DataLoader(ds, batch_size=batch_size, shuffle=True, seed=seed)
    b = DataLoader(ds, batch_size=batch_size, shuffle=True, seed=seed)
    for _ in range(3):                                         # a runs three other epochs first
        list(a)
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    seen = labels_of(list(a))
    assert np.array_equal(seen, labels_of(list(b)))
    assert np.array_equal(seen, b.order(epoch)) and sorted(seen.tolist()) == list(range(n))


def test_shuffle_differs_across_epochs_and_seeds_and_counter_advances():
    ds = TensorDataset(np.zeros((200, 1)), np.arange(200))
    loader = DataLoader(ds, batch_size=32, shuffle=True, seed=11)
    assert loader.epoch == 0
    e0 = labels_of(list(loader))
    assert loader.epoch == 1
    e1 = labels_of(list(loader))
    assert not np.array_equal(e0, e1)
    other = labels_of(list(DataLoader(ds, batch_size=32, shuffle=True, seed=12)))
    assert not np.array_equal(e0, other)
    loader.set_epoch(1)
    assert np.array_equal(labels_of(list(loader)), e1), "set_epoch(1) replays epoch 1"
    assert loader.epoch == 2
    it = iter(loader)                                          # the epoch starts at iter(), not at next()
    assert loader.epoch == 3
    assert np.array_equal(labels_of(list(it)), loader.order(2))


def test_seed_none_follows_manual_seed():
    ds = TensorDataset(np.zeros((50, 1)), np.arange(50))
    manual_seed(5)
    a = labels_of(list(DataLoader(ds, batch_size=8, shuffle=True)))
    manual_seed(5)
    b = labels_of(list(DataLoader(ds, batch_size=8, shuffle=True)))
    assert np.array_equal(a, b)


def test_batch_dtypes_and_shapes():
    ds = TensorDataset(np.ones((7, 3, 4, 4), dtype=np.float64), np.arange(7, dtype=np.int32),
                       np.zeros((7, 2), dtype=np.uint8), np.ones(7, dtype=bool))
    x, y, u, m = next(iter(DataLoader(ds, batch_size=5)))
    assert isinstance(x, Tensor) and x.shape == (5, 3, 4, 4) and x.dtype == np.float32
    assert y.dtype == np.int64 and u.dtype == np.int64 and u.shape == (5, 2) and m.dtype == np.bool_
    assert not x.requires_grad


def test_loader_uses_get_batch_and_falls_back_to_getitem():
    fast = BatchOnly(10)
    batches = list(DataLoader(fast, batch_size=4, shuffle=True, seed=0))
    assert fast.calls == 3 and sorted(labels_of(batches).tolist()) == list(range(10))
    slow = list(DataLoader(NoBatch(7), batch_size=3))
    assert [b[0].shape for b in slow] == [(3, 2, 3), (3, 2, 3), (1, 2, 3)]
    assert slow[0][0].dtype == np.float32 and slow[0][1].dtype == np.int64


def test_loader_validates_its_arguments():
    ds = TensorDataset(np.zeros((4, 1)))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError):
            DataLoader(ds, batch_size=bad)
    with pytest.raises(ValueError):
        DataLoader(ds, seed=-1)
    with pytest.raises(TypeError):
        DataLoader(42)
    with pytest.raises(TypeError):
        DataLoader(ds, transform="flip")
    with pytest.raises(ValueError):
        DataLoader(ds).set_epoch(-1)


def test_transform_randomness_is_reproducible_per_epoch():
    x = np.random.default_rng(0).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    ds = TensorDataset(x, np.arange(40))
    pipe = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip(), ToFloat()])
    loader = DataLoader(ds, batch_size=16, shuffle=False, seed=9, transform=pipe)
    e0 = np.concatenate([b[0].data for b in loader])
    e1 = np.concatenate([b[0].data for b in loader])
    assert e0.dtype == np.float32 and e0.shape == (40, 3, 8, 8)
    assert not np.array_equal(e0, e1), "new crops and flips each epoch"
    loader.set_epoch(0)
    assert np.array_equal(np.concatenate([b[0].data for b in loader]), e0)
    # the augmentation stream is separate from the order stream: with 40 copies of one
    # image, position k of the batch gets the same crop and flip whether or not we shuffle
    same = TensorDataset(np.repeat(x[:1], 40, axis=0), np.arange(40))
    xs, ys = next(iter(DataLoader(same, batch_size=40, shuffle=True, seed=9, transform=pipe)))
    xu, yu = next(iter(DataLoader(same, batch_size=40, shuffle=False, seed=9, transform=pipe)))
    assert not np.array_equal(ys.data, yu.data)
    assert np.array_equal(xs.data, xu.data)
    assert len({xs.data[k].tobytes() for k in range(40)}) > 10, "positions get different augmentations"


def test_transform_that_changes_the_batch_size_is_reported():
    ds = TensorDataset(np.zeros((6, 1, 2, 2)))
    loader = DataLoader(ds, batch_size=4, transform=lambda x, rng: x[:1])
    with pytest.raises(ValueError):
        list(loader)


# ---- transforms ---------------------------------------------------------------------------
def reference_crop(x, top, left, size, padding, mode="constant"):
    """The obvious per-image loop that RandomCrop.crop_at must match."""
    p = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode=mode)
    h, w = size
    return np.stack([p[n, :, top[n]:top[n] + h, left[n]:left[n] + w] for n in range(len(x))])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), c=st.integers(1, 3), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       padding=st.integers(0, 3), data=st.data())
def test_crop_matches_per_image_reference_property(n, c, hw, padding, data):
    H, W = hw
    h = data.draw(st.integers(1, H + 2 * padding))
    w = data.draw(st.integers(1, W + 2 * padding))
    mode = data.draw(st.sampled_from(["constant", "edge"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    x = rng.integers(0, 256, (n, c, H, W), dtype=np.uint8)
    crop = RandomCrop((h, w), padding=padding, padding_mode=mode)
    top = rng.integers(0, H + 2 * padding - h + 1, n)
    left = rng.integers(0, W + 2 * padding - w + 1, n)
    out = crop.crop_at(x, top, left)
    assert out.shape == (n, c, h, w) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.array_equal(out, reference_crop(x, top, left, (h, w), padding, mode))


def test_random_crop_windows_stay_in_bounds_and_cover_all_offsets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2, 5, 5)).astype(np.float32) + 10       # no zeros inside images
    out = RandomCrop(5, padding=2)(x, np.random.default_rng(1))
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    found = set()
    for n in range(len(x)):                                          # search every possible window
        hits = [(i, j) for i in range(5) for j in range(5)
                if np.array_equal(padded[n, :, i:i + 5, j:j + 5], out[n])]
        assert len(hits) == 1, f"image {n}: output is not a window of its padded image"
        found.add(hits[0])
    assert found == {(i, j) for i in range(5) for j in range(5)}, "all 25 offsets occur"
    assert x.min() > 0, "the input is not modified"


def test_random_crop_errors():
    crop = RandomCrop(40, padding=2)
    with pytest.raises(ValueError):
        crop(np.zeros((2, 3, 32, 32), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError):
        RandomCrop(8)(np.zeros((3, 32, 32)), np.random.default_rng(0))
    with pytest.raises(ValueError):                                     # negative offsets would wrap
        RandomCrop(4).crop_at(np.zeros((1, 1, 4, 4)), np.array([-1]), np.array([0]))
    with pytest.raises(ValueError):                                     # one offset per image
        RandomCrop(4).crop_at(np.zeros((2, 1, 4, 4)), np.array([0]), np.array([0]))
    with pytest.raises(IndexError):                                     # past the last window
        RandomCrop(4).crop_at(np.zeros((1, 1, 4, 4)), np.array([1]), np.array([0]))
    with pytest.raises(ValueError):
        RandomCrop(0)


def test_horizontal_flip():
    x = np.random.default_rng(0).integers(0, 256, (1000, 3, 4, 6), dtype=np.uint8)
    before = x.copy()
    assert np.array_equal(RandomHorizontalFlip(0.0)(x, np.random.default_rng(0)), x)
    assert np.array_equal(RandomHorizontalFlip(1.0)(x, np.random.default_rng(0)), x[..., ::-1])
    out = RandomHorizontalFlip(0.3)(x, np.random.default_rng(2))
    kept = (out == x).all(axis=(1, 2, 3))
    flipped = (out == x[..., ::-1]).all(axis=(1, 2, 3))
    assert (kept | flipped).all()
    assert 0.25 < flipped.mean() < 0.35
    assert np.array_equal(x, before), "the input batch is not modified"
    with pytest.raises(ValueError):
        RandomHorizontalFlip(1.5)


def test_to_float_and_normalize_statistics():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (300, 3, 8, 8), dtype=np.uint8)
    x[:, 1] //= 2                                                    # different channel statistics
    f = ToFloat()(x)
    assert f.dtype == np.float32 and f.max() <= 1 and np.array_equal(np.round(f * 255), x)
    with pytest.raises(TypeError):
        ToFloat()(f)
    mean, std = channel_stats(x)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-5)
    assert mean.dtype == np.float32 and mean.shape == (3,)
    z = Normalize(mean, std)(f)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError):
        Normalize([0.5, 0.5], [1, 1])(f)
    with pytest.raises(TypeError):
        Normalize(mean, std)(x)
    with pytest.raises(ValueError):
        Normalize([0.0], [0.0])


def test_channel_stats_chunks_datasets_and_float_data():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (101, 2, 3, 3), dtype=np.uint8)
    whole = channel_stats(x, chunk=1000)
    chunked = channel_stats(x, chunk=7)
    np.testing.assert_allclose(whole, chunked, rtol=1e-6)
    ds = TensorDataset(x, np.arange(101))
    sub = Subset(ds, np.arange(0, 101, 2))
    np.testing.assert_allclose(channel_stats(sub, chunk=10),
                               channel_stats(x[::2]), rtol=1e-6)
    xf = rng.normal(2.0, 3.0, size=(500, 2, 4)).astype(np.float32)
    m, s = channel_stats(xf)                                          # floating: scale 1
    np.testing.assert_allclose(m, xf.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(s, xf.std(axis=(0, 2)), rtol=1e-5)
    with pytest.raises(ValueError):
        channel_stats(np.zeros((0, 3, 2, 2)))


def test_compose_applies_in_order_with_one_generator():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.uint8).reshape(2, 1, 2, 3)
    pipe = Compose([RandomHorizontalFlip(1.0), ToFloat(scale=1.0), Normalize([1.0], [2.0])])
    np.testing.assert_allclose(pipe(x, np.random.default_rng(0)), (x[..., ::-1] - 1.0) / 2.0)
    assert "RandomHorizontalFlip(p=1.0)" in repr(pipe)
    with pytest.raises(TypeError):                                      # 3 is not a transform
        Compose([ToFloat(), 3])(np.zeros((1, 1), np.uint8), np.random.default_rng(0))


# ---- data directory and downloads -----------------------------------------------------------
def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "shared"
    monkeypatch.delenv("TINYTORCH_DATA")
    assert data_dir() == tmp_path / "xdg" / "tinytorch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "tinytorch"


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=300), chunk=st.integers(1, 64), algorithm=st.sampled_from(["md5", "sha256", "sha1"]))
def test_file_hash_streams_any_size_in_any_chunk(tmp_path_factory, body, chunk, algorithm):
    path = tmp_path_factory.mktemp("h") / "f.bin"
    path.write_bytes(body)
    assert file_hash(path, algorithm, chunk_size=chunk) == hashlib.new(algorithm, body).hexdigest()


def test_hash_mismatch_checks_each_given_hash(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    md5, sha = hashlib.md5(b"abc").hexdigest(), hashlib.sha256(b"abc").hexdigest()
    assert hash_mismatch(path) is None and hash_mismatch(path, md5.upper(), sha) is None
    assert md5 in hash_mismatch(path, md5, "0" * 64) or sha in hash_mismatch(path, md5, "0" * 64)
    assert hash_mismatch(path, "0" * 32) is not None and hash_mismatch(path, None, "1" * 64) is not None


@pytest.mark.parametrize("name, kind, safe", [
    ("a/b.bin", tarfile.REGTYPE, True), ("a", tarfile.DIRTYPE, True), ("a..b/c", tarfile.REGTYPE, True),
    ("../x", tarfile.REGTYPE, False), ("a/../../x", tarfile.REGTYPE, False), ("/x", tarfile.REGTYPE, False),
    ("C:/x", tarfile.REGTYPE, False), ("..\\x", tarfile.REGTYPE, False), ("a/l", tarfile.SYMTYPE, False),
    ("a/h", tarfile.LNKTYPE, False), ("dev", tarfile.CHRTYPE, False), ("p", tarfile.FIFOTYPE, False),
])
def test_is_safe_member(name, kind, safe):
    info = tarfile.TarInfo(name)
    info.type = kind
    assert is_safe_member(info) is safe


def fake_server(monkeypatch, files: dict):
    """Replace the fetch function by a dict lookup; returns the list of fetched URLs."""
    fetched = []

    def fetch(url, out, timeout=60.0):
        fetched.append(url)
        if url not in files:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        out.write(files[url])
    monkeypatch.setattr(dl, "_fetch", fetch)
    return fetched


def test_download_verifies_renames_and_caches(monkeypatch, tmp_path):
    body = b"some bytes\n" * 500
    fetched = fake_server(monkeypatch, {"https://x.org/f.bin": body})
    dest = tmp_path / "deep" / "dir" / "f.bin"
    out = download("https://x.org/f.bin", dest, md5=hashlib.md5(body).hexdigest(),
                   sha256=hashlib.sha256(body).hexdigest())
    assert out == dest and dest.read_bytes() == body and fetched == ["https://x.org/f.bin"]
    download("https://x.org/f.bin", dest, md5=hashlib.md5(body).hexdigest())
    assert len(fetched) == 1, "a file that verifies is not fetched again"
    dest.write_bytes(b"damaged")
    download("https://x.org/f.bin", dest, md5=hashlib.md5(body).hexdigest())
    assert dest.read_bytes() == body and len(fetched) == 2, "a file that does not verify is replaced"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"], "no temporary files left"


def test_download_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path):
    body = b"not what you expected"
    fake_server(monkeypatch, {"https://x.org/g": body})
    with pytest.raises(ChecksumError) as err:
        download("https://x.org/g", tmp_path / "g", sha256="ab" * 32)
    assert "ab" * 32 in str(err.value) and hashlib.sha256(body).hexdigest() in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_download_offline_says_what_to_do(monkeypatch, tmp_path):
    fake_server(monkeypatch, {})
    with pytest.raises(DownloadError) as err:
        download("https://x.org/data.tgz", tmp_path / "data.tgz", hint=" (extra advice)")
    msg = str(err.value)
    assert "https://x.org/data.tgz" in msg and str(tmp_path / "data.tgz") in msg
    assert "TINYTORCH_DATA" in msg and "extra advice" in msg and "name resolution" in msg
    assert list(tmp_path.iterdir()) == []


def make_tar(path: Path, members: dict, gz=True):
    """Members: name -> bytes (file), None (directory), or ('symlink', target)."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def test_extract_tar_extracts_a_generated_archive(tmp_path):
    archive = make_tar(tmp_path / "ok.tar.gz", {"top": None, "top/a.txt": b"alpha", "top/sub/b.bin": b"\x00\x01"})
    names = extract_tar(archive, tmp_path / "out")
    assert set(names) == {"top", "top/a.txt", "top/sub/b.bin"}
    assert (tmp_path / "out/top/a.txt").read_bytes() == b"alpha"
    assert (tmp_path / "out/top/sub/b.bin").read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("bad, why", [
    ("../evil.txt", "'..' component"),
    ("top/../../evil.txt", "'..' component"),
    ("/tmp/evil.txt", "absolute"),
])
def test_extract_tar_refuses_escaping_paths(tmp_path, bad, why):
    archive = make_tar(tmp_path / "bad.tar.gz", {"top/fine.txt": b"ok", bad: b"evil"})
    with pytest.raises(DatasetError) as err:
        extract_tar(archive, tmp_path / "out")
    assert repr(bad) in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing is extracted from a refused archive"
    assert not (tmp_path / "evil.txt").exists()


def test_extract_tar_refuses_links(tmp_path):
    archive = make_tar(tmp_path / "link.tar", {"top/link": ("symlink", "/etc/passwd")}, gz=False)
    with pytest.raises(DatasetError, match="'top/link'"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- CIFAR-10 ---------------------------------------------------------------------------------
def test_cifar_record_layout_is_parsed_exactly(tmp_path):
    recs = write_cifar_tree(tmp_path, per_file=6)
    ds = CIFAR10(tmp_path, train=True, download=False, checksums=sums_of(tmp_path), records_per_file=6)
    assert len(ds) == 30 and ds.images.shape == (30, 3, 32, 32) and ds.images.dtype == np.uint8
    assert ds.images.flags.c_contiguous and ds.labels.dtype == np.int64
    expect = np.concatenate([recs[n] for n in CIFAR10.train_files])
    assert np.array_equal(ds.labels, expect[:, 0])
    r = expect[17]
    img = ds.images[17]
    assert np.array_equal(img[0].ravel(), r[1:1025]) and np.array_equal(img[1].ravel(), r[1025:2049])
    assert img[2, 0, 0] == r[2049] and img[0, 0, 1] == r[2] and img[0, 1, 0] == r[1 + 32], "row-major 32x32"
    x, y = ds[17]
    assert np.array_equal(x, img) and y == r[0]
    bx, by = ds.get_batch(np.array([3, 29]))
    assert np.array_equal(bx, ds.images[[3, 29]]) and by.tolist() == expect[[3, 29], 0].tolist()
    test = CIFAR10(tmp_path, train=False, download=False, checksums=sums_of(tmp_path), records_per_file=6)
    assert np.array_equal(test.labels, recs["test_batch.bin"][:, 0])
    assert CIFAR10.classes[0] == "airplane" and CIFAR10.classes[9] == "truck" and len(CIFAR10.classes) == 10


def test_cifar_default_root_is_the_data_dir(monkeypatch, tmp_path):
    write_cifar_tree(tmp_path, per_file=2)
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path))
    ds = CIFAR10(train=False, download=False, verify=False, records_per_file=2)
    assert ds.root == tmp_path and len(ds) == 2


def test_cifar_embeds_the_published_checksums():
    assert CIFAR10_MD5 == {
        "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
        "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
        "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
        "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
        "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
        "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d"}
    assert dl.CIFAR10_ARCHIVE_MD5 == "c32a1d4ab5d03f1284b67883e8d87530"


def test_cifar_checksum_mismatch_is_refused(tmp_path):
    write_cifar_tree(tmp_path, per_file=3)
    with pytest.raises(ChecksumError) as err:
        CIFAR10(tmp_path, train=False, download=False, records_per_file=3)      # published MD5s
    msg = str(err.value)
    actual = file_hash(tmp_path / CIFAR10_FOLDER / "test_batch.bin")
    assert "test_batch.bin" in msg and CIFAR10_MD5["test_batch.bin"] in msg and actual in msg
    assert "download=True" in msg


def test_cifar_truncated_file(tmp_path):
    write_cifar_tree(tmp_path, per_file=4)
    path = tmp_path / CIFAR10_FOLDER / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CorruptFileError) as err:
        CIFAR10(tmp_path, download=False, verify=False, records_per_file=4)
    assert "data_batch_2.bin" in str(err.value) and str(4 * 3073 - 1000) in str(err.value)
    assert "truncated" in str(err.value)


def test_cifar_wrong_record_count(tmp_path):
    write_cifar_tree(tmp_path, per_file=4)
    path = tmp_path / CIFAR10_FOLDER / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:3 * 3073])                  # whole records, one missing
    with pytest.raises(CorruptFileError, match="test_batch.bin"):
        CIFAR10(tmp_path, train=False, download=False, verify=False, records_per_file=4)
    assert len(read_cifar_file(path, records=None)[1]) == 3


def test_cifar_label_out_of_range_is_corrupt(tmp_path):
    write_cifar_tree(tmp_path, per_file=5)
    path = tmp_path / CIFAR10_FOLDER / "data_batch_4.bin"
    raw = np.fromfile(path, dtype=np.uint8).reshape(5, 3073)
    raw[2, 0] = 200
    raw.tofile(path)
    with pytest.raises(CorruptFileError, match="data_batch_4.bin"):
        CIFAR10(tmp_path, download=False, verify=False, records_per_file=5)


def test_cifar_missing_files_without_download(tmp_path):
    write_cifar_tree(tmp_path, per_file=2)
    (tmp_path / CIFAR10_FOLDER / "data_batch_5.bin").unlink()
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10(tmp_path, download=False, verify=False, records_per_file=2)
    msg = str(err.value)
    assert "data_batch_5.bin" in msg and "data_batch_1.bin" not in msg
    assert str(tmp_path / CIFAR10_FOLDER) in msg and "TINYTORCH_DATA" in msg and dl.CIFAR10_URL in msg
    with pytest.raises(KeyError, match="no checksum for test_batch.bin"):
        CIFAR10(tmp_path, train=False, download=False, checksums={}, records_per_file=2)


def test_cifar_download_refused_offline(monkeypatch, tmp_path):
    fetched = fake_server(monkeypatch, {})
    with pytest.raises(DownloadError) as err:
        CIFAR10(tmp_path / "data", train=True)
    msg = str(err.value)
    assert fetched == [dl.CIFAR10_URL]
    assert str(tmp_path / "data" / "cifar-10-binary.tar.gz") in msg
    assert str(tmp_path / "data" / CIFAR10_FOLDER) in msg and "data_batch_1.bin" in msg
    assert "TINYTORCH_DATA" in msg


def cifar_archive(tmp_path: Path, per_file=3, extra=None) -> bytes:
    src = tmp_path / "src"
    write_cifar_tree(src, per_file=per_file, seed=7)
    members = {CIFAR10_FOLDER: None}
    for p in sorted((src / CIFAR10_FOLDER).iterdir()):
        members[f"{CIFAR10_FOLDER}/{p.name}"] = p.read_bytes()
    members[f"{CIFAR10_FOLDER}/batches.meta.txt"] = "\n".join(CIFAR10.classes).encode()
    members.update(extra or {})
    return make_tar(tmp_path / "archive.tar.gz", members).read_bytes()


def test_cifar_download_extracts_verifies_and_cleans_up(monkeypatch, tmp_path):
    body = cifar_archive(tmp_path)
    sums = sums_of(tmp_path / "src")
    fetched = fake_server(monkeypatch, {dl.CIFAR10_URL: body})
    monkeypatch.setattr(dl, "CIFAR10_ARCHIVE_MD5", hashlib.md5(body).hexdigest())
    root = tmp_path / "data"
    train = CIFAR10(root, train=True, checksums=sums, records_per_file=3)
    assert len(train) == 15 and fetched == [dl.CIFAR10_URL]
    assert sorted(p.name for p in root.iterdir()) == [CIFAR10_FOLDER], "archive and temp dirs removed"
    assert (root / CIFAR10_FOLDER / "batches.meta.txt").is_file()
    test = CIFAR10(root, train=False, checksums=sums, records_per_file=3)
    assert len(test) == 3 and fetched == [dl.CIFAR10_URL], "present files are not fetched again"


def test_cifar_download_with_wrong_archive_checksum(monkeypatch, tmp_path):
    fake_server(monkeypatch, {dl.CIFAR10_URL: cifar_archive(tmp_path)})      # real MD5 cannot match
    with pytest.raises(ChecksumError, match="c32a1d4ab5d03f1284b67883e8d87530"):
        CIFAR10(tmp_path / "data")
    assert not (tmp_path / "data" / CIFAR10_FOLDER).exists()


def test_cifar_download_refuses_a_malicious_archive(monkeypatch, tmp_path):
    body = cifar_archive(tmp_path, extra={"../../escaped.txt": b"gotcha"})
    fake_server(monkeypatch, {dl.CIFAR10_URL: body})
    monkeypatch.setattr(dl, "CIFAR10_ARCHIVE_MD5", hashlib.md5(body).hexdigest())
    with pytest.raises(DatasetError, match=r"'\.\./\.\./escaped\.txt'"):
        CIFAR10(tmp_path / "a" / "b", verify=False, records_per_file=3)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_train_val_split(tmp_path):
    write_cifar_tree(tmp_path, per_file=20)
    ds = CIFAR10(tmp_path, download=False, verify=False, records_per_file=20)
    tr, va = train_val_split(ds, 30, seed=3)
    assert len(tr) == 70 and len(va) == 30
    both = np.concatenate([tr.indices, va.indices])
    assert sorted(both.tolist()) == list(range(100)), "disjoint and complete"
    assert np.all(np.diff(tr.indices) > 0) and np.all(np.diff(va.indices) > 0), "sorted"
    again, _ = train_val_split(ds, 30, seed=3)
    other, _ = train_val_split(ds, 30, seed=4)
    assert np.array_equal(tr.indices, again.indices) and not np.array_equal(tr.indices, other.indices)
    x, y = va.get_batch(np.array([0, 29]))
    assert np.array_equal(x, ds.images[va.indices[[0, 29]]]) and np.array_equal(y, ds.labels[va.indices[[0, 29]]])
    assert len(train_val_split(ds, 0.1)[1]) == 10
    for bad in (0, 100, 1.0, -5):
        with pytest.raises(ValueError):
            train_val_split(ds, bad)


def test_cifar_pipeline_end_to_end(tmp_path):
    write_cifar_tree(tmp_path, per_file=10)
    ds = CIFAR10(tmp_path, download=False, verify=False, records_per_file=10)
    tr, va = train_val_split(ds, 10, seed=0)
    mean, std = channel_stats(tr)
    aug = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(), Normalize(mean, std)])
    loader = DataLoader(tr, batch_size=16, shuffle=True, seed=1, transform=aug, drop_last=True)
    batches = list(loader)
    assert len(batches) == 2 and all(x.shape == (16, 3, 32, 32) and x.dtype == np.float32 for x, _ in batches)
    assert all(y.dtype == np.int64 and y.shape == (16,) for _, y in batches)
    plain = list(DataLoader(va, batch_size=4, transform=Compose([ToFloat(), Normalize(mean, std)])))
    np.testing.assert_allclose(plain[0][0].data, (ds.images[va.indices[:4]] / 255 - mean[:, None, None])
                               / std[:, None, None], rtol=1e-5, atol=1e-5)


# ---- Tiny Shakespeare --------------------------------------------------------------------------
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_tiny_shakespeare_downloads_once_and_verifies(monkeypatch, tmp_path):
    body = TEXT.encode()
    fetched = fake_server(monkeypatch, {dl.TINY_SHAKESPEARE_URL: body})
    monkeypatch.setattr(dl, "TINY_SHAKESPEARE_SHA256", hashlib.sha256(body).hexdigest())
    assert tiny_shakespeare(tmp_path) == TEXT
    assert tiny_shakespeare(tmp_path) == TEXT and len(fetched) == 1
    assert (tmp_path / "tinyshakespeare" / "input.txt").read_text() == TEXT


def test_tiny_shakespeare_refuses_the_wrong_text(monkeypatch, tmp_path):
    path = tmp_path / "tinyshakespeare" / "input.txt"
    path.parent.mkdir()
    path.write_text("not shakespeare")
    with pytest.raises(ChecksumError, match=dl.TINY_SHAKESPEARE_SHA256):
        tiny_shakespeare(tmp_path)
    assert tiny_shakespeare(tmp_path, verify=False) == "not shakespeare"


def test_tiny_shakespeare_offline(monkeypatch, tmp_path):
    fake_server(monkeypatch, {})
    with pytest.raises(DownloadError) as err:
        tiny_shakespeare(tmp_path)
    assert str(tmp_path / "tinyshakespeare" / "input.txt") in str(err.value)
    assert "TINYTORCH_DATA" in str(err.value)
    with pytest.raises(FileNotFoundError, match="tinyshakespeare"):
        tiny_shakespeare(tmp_path, download=False)
