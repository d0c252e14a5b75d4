# Hidden tests of module 08_dataloader. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-datasets
# three fields, negative and out-of-range indices, a mismatch in the third array, empty and repeated batches, Subset of a Subset, a dataset that returns a bare array
drng = np.random.default_rng(81)
hx = drng.standard_normal((7, 2, 3))
hy = drng.integers(0, 5, 7)
hz = np.arange(7, dtype=np.int32) * 10
hds = TensorDataset(hx, hy, hz)
assert len(hds) == 7 and len(hds[0]) == 3 and np.array_equal(hds[-1][0], hx[6]) and hds[-1][2] == 60
try:
    hds[7]
    raise AssertionError("index 7 of 7 samples must be refused")
except IndexError:
    pass
for bad in [(hx, hy, hz[:6]), (hx[:6], hy, hz), (hx, hy[:3])]:
    try:
        TensorDataset(*bad)
        raise AssertionError("arrays with different first dimensions must be refused")
    except ValueError:
        pass
b = hds.get_batch(np.array([6, 6, 0]))
assert [f.shape for f in b] == [(3, 2, 3), (3,), (3,)] and b[2].tolist() == [60, 60, 0] and np.array_equal(b[0], hx[[6, 6, 0]])
empty = hds.get_batch(np.array([], dtype=np.int64))
assert [f.shape for f in empty] == [(0, 2, 3), (0,), (0,)]
inner = Subset(hds, [6, 5, 4, 3, 2])
outer = Subset(inner, [4, 0, 2])                                # samples 2, 6, 4
assert len(outer) == 3 and outer[1][2] == 60
assert outer.get_batch(np.array([0, 1, 2, 0]))[2].tolist() == [20, 60, 40, 20]
assert fetch_batch(outer, np.array([2]))[2].tolist() == [40]
sq = Subset(Squares(), [4, 2])
assert fetch_batch(sq, np.array([0, 1]))[0].tolist() == [[4, 16], [2, 4]]


class Bare(Dataset):                    # samples are bare arrays, not tuples
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return np.full(2, i)


bare = fetch_batch(Bare(), np.array([2, 0]))
assert len(bare) == 1 and bare[0].tolist() == [[2, 2], [0, 0]]
try:
    Subset(hds, [0, 7])
    raise AssertionError("Subset index 7 of 7 samples must be refused")
except IndexError:
    pass
# len counts samples (rows), not elements; fetch_batch takes get_batch when a dataset has one
assert len(TensorDataset(np.zeros((6, 4)), np.zeros((6, 2)))) == 6


class BatchOnly(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise AssertionError("fetch_batch must use get_batch when the dataset has it")

    def get_batch(self, idx):
        return idx * 10, idx


assert fetch_batch(BatchOnly(), np.array([3, 1]))[0].tolist() == [30, 10]
# samples that cannot be stacked: different shapes, or different numbers of fields
class Uneven(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return (np.zeros(i + 1), i) if i < 2 else (np.zeros(1),)


for bad_idx in ([0, 1], [0, 2]):
    try:
        fetch_batch(Uneven(), np.array(bad_idx))
        raise AssertionError(f"samples {bad_idx} cannot be stacked and must be refused")
    except ValueError:
        pass

# %% grade_id: test-dataloader
# batching edge cases (N divisible by B, N < B, B = 1, drop_last with and without shuffling), each batch = the rows of order(epoch), dtypes (int32 and uint8 -> int64, bool kept), an iteration started but not finished still advances the epoch, the transform sees each batch with the epoch's transform generator
lrng = np.random.default_rng(82)
def collect(loader):
    return [tuple(f.data for f in batch) for batch in loader]

X = lrng.standard_normal((12, 2))
Y = np.arange(12, dtype=np.int32)
for n, bs, drop, sizes in [(12, 4, False, [4, 4, 4]), (12, 4, True, [4, 4, 4]), (12, 5, True, [5, 5]),
                           (12, 5, False, [5, 5, 2]), (3, 8, False, [3]), (3, 8, True, []), (4, 1, False, [1, 1, 1, 1])]:
    for shuffle in (False, True):
        dl = DataLoader(TensorDataset(X[:n], Y[:n]), batch_size=bs, shuffle=shuffle, drop_last=drop, seed=11)
        got = collect(dl)
        assert len(dl) == len(sizes) and [len(b[1]) for b in got] == sizes, (n, bs, drop, shuffle, [len(b[1]) for b in got])
        labels = np.concatenate([b[1] for b in got]) if got else np.zeros(0, dtype=np.int64)
        assert len(set(labels.tolist())) == len(labels), "no sample twice in one epoch"
        order = dl.order(0)
        assert np.array_equal(labels, order[:len(labels)]), "batches follow order(epoch)"
        for b in got:
            assert b[0].dtype == np.float32 and b[1].dtype == np.int64
            assert np.allclose(b[0], X[b[1]].astype(np.float32))
        if not shuffle:
            assert labels.tolist() == list(range(len(labels)))
sh = DataLoader(TensorDataset(X, Y), batch_size=5, shuffle=True, drop_last=True, seed=3)
seen = set()
for e in range(6):
    lab = np.concatenate([b[1] for b in collect(sh)])
    assert len(lab) == 10 and np.array_equal(lab, sh.order(e)[:10])
    seen |= set(lab.tolist())
assert seen == set(range(12)), "with drop_last, different samples are dropped in different epochs"
assert not np.array_equal(DataLoader(TensorDataset(X, Y), shuffle=True, seed=4).order(0), sh.order(0))
# partly consumed iterations still move the epoch on
pe = DataLoader(TensorDataset(X, Y), batch_size=2, shuffle=True, seed=5)
next(iter(pe))
assert pe.epoch == 1
second = collect(pe)
assert np.array_equal(np.concatenate([b[1] for b in second]), pe.order(1)) and pe.epoch == 2
# dtypes
mix = TensorDataset(lrng.integers(0, 256, (5, 3), dtype=np.uint8), np.arange(5, dtype=np.int32) % 2 == 0,
                    np.arange(5, dtype=np.int16), lrng.standard_normal(5))
fields = next(iter(DataLoader(mix, batch_size=5)))
assert [f.dtype for f in fields] == [np.int64, np.bool_, np.int64, np.float32], [f.dtype for f in fields]
# the transform: applied to the first field only, with the transform generator of the epoch, drawn batch after batch
draws = []
def noisy(x, rng):
    d = rng.random(len(x))
    draws.append(d)
    return x + d[:, None]
same = np.zeros((8, 2))                              # identical samples: only the transform tells batches apart
tl = DataLoader(TensorDataset(same, np.arange(8)), batch_size=3, transform=noisy, seed=6)
tl.set_epoch(2)
tb = collect(tl)
ref_rng = tl.generators(2)[1]
for d, (xb, yb) in zip(draws, tb):
    expected = ref_rng.random(len(d))
    assert np.array_equal(d, expected), "the transform gets the epoch's transform generator, one stream per epoch"
    assert np.allclose(xb, d[:, None]) and np.array_equal(yb, np.arange(8)[yb])
assert not np.allclose(tb[0][0][:2], tb[1][0][:2]), "batches of one epoch get different random numbers"
try:
    collect(DataLoader(TensorDataset(same, np.arange(8)), batch_size=4, transform=lambda x, rng: x[:2]))
    raise AssertionError("a transform that changes the batch size must be refused")
except ValueError:
    pass
# the order and the augmentation streams of an epoch are the two children of SeedSequence([seed, epoch])
gl = DataLoader(TensorDataset(np.zeros((5, 1))), batch_size=2, shuffle=True, seed=11)
g_order, g_aug = gl.generators(3)
c_order, c_aug = np.random.SeedSequence([11, 3]).spawn(2)
assert g_order.random() == np.random.default_rng(c_order).random()
assert g_aug.random() == np.random.default_rng(c_aug).random()

# %% grade_id: test-transforms
# other scales, dtypes and layouts ((N, C) and (N, C, L) batches, float64), inputs never modified, flips with p = 0, 1 and 0.25, crops that are not square, other padding modes, no padding, offsets at the edges
trng = np.random.default_rng(83)
px = trng.integers(0, 256, size=(6, 2, 3, 4), dtype=np.uint8)
keep_px = px.copy()
assert np.allclose(ToFloat(scale=1 / 127.5)(px), px / 127.5, rtol=1e-6) and ToFloat(0.5)(px).dtype == np.float32
assert np.allclose(ToFloat()(np.array([[0, 255]], dtype=np.int16)), [[0.0, 1.0]])
for shape in [(5, 3), (4, 3, 7), (2, 3, 4, 5)]:
    data = trng.standard_normal(shape) * 3 + 1
    m, s = np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 4.0])
    kept = data.copy()
    out = Normalize(m, s)(data)
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    assert out.shape == shape and out.dtype == np.float64, (out.shape, out.dtype)
    assert np.allclose(out, (data - m.reshape(bshape)) / s.reshape(bshape), rtol=1e-6), shape
    assert np.array_equal(data, kept), "Normalize must not modify its input"
n32 = Normalize([0.5, 0.5], [0.25, 0.25])(ToFloat()(px))
assert n32.dtype == np.float32 and np.allclose(n32, (px / 255 - 0.5) / 0.25, atol=1e-5)
for bad in (trng.standard_normal((2, 4, 3, 3)), px):
    try:
        Normalize([0.5, 0.5], [0.25, 0.25])(bad)
        raise AssertionError("4 channels for 2, or integer data, must be refused")
    except (ValueError, TypeError):
        pass
many = trng.integers(0, 256, size=(400, 1, 2, 3), dtype=np.uint8)
keep_many = many.copy()
assert np.array_equal(RandomHorizontalFlip(0.0)(many, np.random.default_rng(0)), many)
assert np.array_equal(RandomHorizontalFlip(1.0)(many, np.random.default_rng(0)), many[..., ::-1])
quarter = RandomHorizontalFlip(0.25)(many, np.random.default_rng(1))
flipped_q = (quarter == many[..., ::-1]).all(axis=(1, 2, 3)) & ~(many == many[..., ::-1]).all(axis=(1, 2, 3))
assert 60 < flipped_q.sum() < 140, flipped_q.sum()
assert np.array_equal(many, keep_many), "flipping must not modify its input"
for size, pad, mode in [((2, 3), 0, "constant"), ((3, 2), 1, "reflect"), (4, 2, "edge"), ((5, 6), 1, "constant")]:
    cr = RandomCrop(size, padding=pad, padding_mode=mode)
    h, w = (size, size) if isinstance(size, int) else size
    H, W = 3 + 2 * pad, 4 + 2 * pad
    top, left = trng.integers(0, H - h + 1, 6), trng.integers(0, W - w + 1, 6)
    top[0], left[0], top[1], left[1] = 0, 0, H - h, W - w              # both corners
    got = cr.crop_at(px, top, left)
    padded = np.pad(px, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=mode)
    ref = np.stack([padded[n, :, top[n]:top[n] + h, left[n]:left[n] + w] for n in range(6)])
    assert got.shape == (6, 2, h, w) and got.dtype == np.uint8 and np.array_equal(got, ref), (size, pad, mode)
    got[...] = 0
assert np.array_equal(px, keep_px), "cropping must not modify (or return a view of) its input"
# every offset in [0, H + 2p - h] is drawn, the last one included
grid_h = np.tile(np.arange(25, dtype=np.uint8).reshape(1, 1, 5, 5), (400, 1, 1, 1))
corner_h = RandomCrop(4)(grid_h, np.random.default_rng(2))[:, 0, 0, 0]
assert set((corner_h // 5).tolist()) == {0, 1} and set((corner_h % 5).tolist()) == {0, 1}

# %% grade_id: test-downloads
# file_hash on empty files, on files of whole chunks and a short last chunk, other algorithms; hash_mismatch with one or both hashes; download: a small body (the flush), md5 only, a cache without hashes, a damaged cache replaced, a failed verification leaves the old file and no temporary file; is_safe_member on hard links, devices, fifos, drives, '..' anywhere, names that only contain '..'; extract_tar checks every member; data_dir's precedence
import io
import os
with tempfile.TemporaryDirectory() as htmp:
    hroot = Path(htmp)
    for size, chunk in [(0, 4), (12, 4), (13, 4), (1, 1), (5000, 1 << 20), (3 * (1 << 20) + 1, 1 << 20)]:
        blob = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        fp = hroot / f"b{size}"
        fp.write_bytes(blob)
        assert file_hash(fp, chunk_size=chunk) == hashlib.md5(blob).hexdigest(), (size, chunk)
        for alg in ("sha256", "sha1", "blake2b"):
            assert file_hash(fp, alg, chunk_size=chunk) == hashlib.new(alg, blob).hexdigest(), (size, chunk, alg)
    assert file_hash(hroot / "b13") == hashlib.md5(np.random.default_rng(13).integers(0, 256, 13, dtype=np.uint8).tobytes()).hexdigest()
    small = b"tiny but whole"                                  # below any write buffer: must be flushed before it is hashed
    hsrc = hroot / "small.txt"
    hsrc.write_bytes(small)
    m5, s2 = hashlib.md5(small).hexdigest(), hashlib.sha256(small).hexdigest()
    assert hash_mismatch(hsrc, m5, s2) is None and hash_mismatch(hsrc, None, s2.upper()) is None
    for args in [(m5, "0" * 64), ("0" * 32, s2), ("0" * 32, None), (None, "f" * 64)]:
        assert isinstance(hash_mismatch(hsrc, *args), str), args
    hdest = hroot / "a" / "b" / "small.txt"
    assert download(hsrc.as_uri(), hdest, md5=m5) == hdest and hdest.read_bytes() == small
    assert download(hsrc.as_uri(), hroot / "s.txt", sha256=s2).read_bytes() == small
    hsrc.write_bytes(b"changed upstream")
    assert download(hsrc.as_uri(), hdest, md5=m5, sha256=s2).read_bytes() == small, "cached file, both hashes"
    assert download(hsrc.as_uri(), hdest).read_bytes() == small, "no hash given: a present file is the cache"
    hdest.write_bytes(b"damaged")
    assert download(hsrc.as_uri(), hdest, md5=hashlib.md5(b"changed upstream").hexdigest()).read_bytes() == b"changed upstream", "a cache that does not verify is fetched again"
    hdest.write_bytes(b"damaged")
    try:
        download(hsrc.as_uri(), hdest, md5=m5)
        raise AssertionError("a fetched file with the wrong MD5 must be refused")
    except ChecksumError:
        pass
    assert hdest.read_bytes() == b"damaged" and sorted(p.name for p in hdest.parent.iterdir()) == ["small.txt"], "no temporary file left"
    try:
        download((hroot / "nowhere.bin").as_uri(), hroot / "nowhere.bin")
        raise AssertionError("a failed fetch must be a DownloadError")
    except DownloadError:
        pass

    def hmember(name, kind=tarfile.REGTYPE):
        info = tarfile.TarInfo(name)
        info.type = kind
        return info

    for ok in ["a", "a/b/c.bin", "./a", "a..b", "a/..b/c", "x/y..", "a/./b"]:
        assert is_safe_member(hmember(ok)), ok
    assert is_safe_member(hmember("d/e", tarfile.DIRTYPE))
    for bad in ["..", "a/..", "a/b/../../../c", "/a", "//a", "C:/evil", "C:evil", "d:\\evil", "a\\..\\..\\b"]:
        assert not is_safe_member(hmember(bad)), bad
    for kind in (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
        assert not is_safe_member(hmember("a/b", kind)), kind
    tar_path = hroot / "t.tar"
    with tarfile.open(tar_path, "w") as tw:
        for name, data in [("ok/one.txt", b"1"), ("ok/two.txt", b"2"), ("ok/../../three.txt", b"3")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tw.addfile(info, io.BytesIO(data))
    try:
        extract_tar(tar_path, hroot / "out")
        raise AssertionError("an archive whose third member escapes must be refused")
    except DatasetError:
        pass
    assert not (hroot / "out").exists() and not (hroot / "three.txt").exists(), "nothing is extracted"
    saved_env = {k: os.environ.get(k) for k in (DATA_ENV_VAR, "XDG_CACHE_HOME", "HOME")}
    try:
        os.environ[DATA_ENV_VAR], os.environ["XDG_CACHE_HOME"], os.environ["HOME"] = f"{htmp}/d", f"{htmp}/x", f"{htmp}/h"
        assert data_dir() == hroot / "d"
        os.environ[DATA_ENV_VAR] = ""
        assert data_dir() == hroot / "x" / "tinytorch"
        del os.environ[DATA_ENV_VAR], os.environ["XDG_CACHE_HOME"]
        assert data_dir() == hroot / "h" / ".cache" / "tinytorch"
        os.environ[DATA_ENV_VAR] = "~/mine"
        assert data_dir() == hroot / "h" / "mine"
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

# %% grade_id: test-cifar10
# read_cifar_file on its own: the pixel layout, an upper-case MD5, a label equal to num_classes, fewer or more records than expected, any count with records=None; train_val_split with a fraction: sorted, disjoint, complete, seeded
with tempfile.TemporaryDirectory() as htmp:
    hrng = np.random.default_rng(84)
    f1 = Path(htmp) / "one.bin"
    recs = write_cifar(f1, np.array([0, 9, 3]), hrng)
    imgs, labs = read_cifar_file(f1, md5=file_hash(f1).upper(), records=3)
    assert imgs.shape == (3, 3, 32, 32) and imgs.dtype == np.uint8 and labs.dtype == np.int64 and labs.tolist() == [0, 9, 3]
    assert np.array_equal(imgs.reshape(3, -1), recs[:, 1:]) and imgs[1, 1, 0, 0] == recs[1, 1 + 1024]
    assert imgs.flags.c_contiguous
    assert read_cifar_file(f1, records=None)[0].shape == (3, 3, 32, 32)
    for records in (2, 4):
        try:
            read_cifar_file(f1, records=records)
            raise AssertionError(f"3 records when {records} are expected must be refused")
        except CorruptFileError:
            pass
    try:
        read_cifar_file(f1, md5="0" * 32)
        raise AssertionError("a wrong MD5 must be refused")
    except ChecksumError:
        pass
    f2 = Path(htmp) / "ten.bin"
    write_cifar(f2, np.array([1, 10]), hrng)
    try:
        read_cifar_file(f2, records=2)
        raise AssertionError("label 10 of 10 classes must be refused")
    except CorruptFileError:
        pass
    assert read_cifar_file(f2, records=2, num_classes=11)[1].tolist() == [1, 10]
    try:
        read_cifar_file(f1, records=3, num_classes=9)
        raise AssertionError("label 9 with 9 classes must be refused")
    except CorruptFileError:
        pass
split_ds = TensorDataset(np.arange(40.0).reshape(40, 1), np.arange(40))
tr1, va1 = train_val_split(split_ds, 0.25, seed=3)
tr2, va2 = train_val_split(split_ds, 0.25, seed=3)
tr3, va3 = train_val_split(split_ds, 0.25, seed=4)
assert len(va1) == 10 and len(tr1) == 30 and np.array_equal(va1.indices, va2.indices)
assert not np.array_equal(va1.indices, va3.indices)
assert np.all(np.diff(tr1.indices) > 0) and np.all(np.diff(va1.indices) > 0), "both parts sorted"
assert sorted(tr1.indices.tolist() + va1.indices.tolist()) == list(range(40))
assert va1.get_batch(np.arange(10))[1].tolist() == va1.indices.tolist()
assert [len(p) for p in train_val_split(TensorDataset(np.arange(10)), 0.26)] == [7, 3], "a fraction is rounded"
# the size check: bytes left over (with and without a record count); a missing split downloaded through _download: fetched once, verified, extracted, the archive deleted; a tampered archive refused
with tempfile.TemporaryDirectory() as htmp:
    hrng = np.random.default_rng(85)
    f3 = Path(htmp) / "three.bin"
    write_cifar(f3, np.array([1, 2, 3]), hrng)
    with open(f3, "ab") as fa:
        fa.write(b"\0" * 5)
    for records in (None, 3):
        try:
            read_cifar_file(f3, records=records)
            raise AssertionError("3 records and 5 bytes must be refused")
        except CorruptFileError:
            pass
    srcdir = Path(htmp) / "src" / CIFAR10_FOLDER
    for name in CIFAR10.train_files + CIFAR10.test_files:
        write_cifar(srcdir / name, hrng.integers(0, 10, 2), hrng)
    hsums = {p.name: file_hash(p) for p in srcdir.iterdir()}
    arch = Path(htmp) / "upstream.tar.gz"
    with tarfile.open(arch, "w:gz") as tw:
        tw.add(srcdir, arcname=CIFAR10_FOLDER)
    saved = (CIFAR10_URL, CIFAR10_ARCHIVE_MD5)
    try:
        CIFAR10_URL, CIFAR10_ARCHIVE_MD5 = arch.as_uri(), file_hash(arch)
        got = CIFAR10(Path(htmp) / "root", train=False, checksums=hsums, records_per_file=2)
        assert len(got) == 2 and sorted(p.name for p in (Path(htmp) / "root").iterdir()) == [CIFAR10_FOLDER], "archive deleted"
        assert len(CIFAR10(Path(htmp) / "root", train=True, checksums=hsums, records_per_file=2)) == 10
        CIFAR10_ARCHIVE_MD5 = "0" * 32
        try:
            CIFAR10(Path(htmp) / "other", checksums=hsums, records_per_file=2)
            raise AssertionError("an archive with the wrong MD5 must be refused")
        except ChecksumError:
            pass
        assert not (Path(htmp) / "other" / CIFAR10_FOLDER).exists()
    finally:
        CIFAR10_URL, CIFAR10_ARCHIVE_MD5 = saved
