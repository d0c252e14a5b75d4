"""Data loading cost: one epoch of CIFAR-sized batches against one epoch of MLP training.

    python benchmarks/bench_dataloader.py            # prints tables, writes results/bench_report/bench_dataloader.json
    python benchmarks/bench_dataloader.py --quick    # small sizes, nothing written (smoke test)

1. One epoch of N = 50,000 random uint8 images (3, 32, 32) with batch 128, shuffled,
   through RandomCrop(32, padding=4) + RandomHorizontalFlip + ToFloat + Normalize, with
   the vectorised get_batch path and with the per-sample __getitem__ fallback.
2. The per-batch cost of each stage (gather, crop, flip, float, normalise, to Tensor),
   two ways to pad, and three ways to cut the random crops (sliding_window_view,
   4-array fancy indexing, a per-image loop).
3. The MLP of milestones/cifar10.py --model mlp (3072-1024-512-10, ReLU, AdamW, cross-entropy):
   the time of a training step, measured over a few steps and scaled to an epoch.
Target: the loader takes less than 5% of an epoch.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common import table, time_it, write_results

import tinytorch  # noqa: F401  (switches autograd on)
from tinytorch.core.activations import ReLU
from tinytorch.core.dataloader import (
    Compose, DataLoader, Dataset, Normalize, RandomCrop, RandomHorizontalFlip, TensorDataset,
    ToFloat, channel_stats, to_tensor)
from tinytorch.core.layers import Dense, Flatten, Sequential
from tinytorch.core.losses import CrossEntropyLoss
from tinytorch.core.kernels import FusedAdamW, tune_allocator
from tinytorch.core.tensor import manual_seed

BATCH = 128
TARGET_SHARE = 0.05


class PerSample(Dataset):
    """The same arrays behind the per-sample interface only (no get_batch)."""
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


def epoch_seconds(loader: DataLoader) -> float:
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def loader_epochs(images: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    mean, std = channel_stats(images)
    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(), Normalize(mean, std)])
    plain = Compose([ToFloat(), Normalize(mean, std)])
    fast = TensorDataset(images, labels)
    slow = PerSample(images, labels)
    out = {}
    for name, ds, tf in [("get_batch, ToFloat+Normalize", fast, plain),
                         ("get_batch, crop+flip+ToFloat+Normalize", fast, augment),
                         ("__getitem__, crop+flip+ToFloat+Normalize", slow, augment)]:
        loader = DataLoader(ds, batch_size=BATCH, shuffle=True, seed=0, transform=tf)
        runs = [epoch_seconds(loader) for _ in range(repeats if ds is fast else 1)]
        out[name] = {"epoch_s": min(runs), "ms_per_batch": min(runs) / len(loader) * 1e3,
                     "images_per_s": len(ds) / min(runs)}
    return out


def stage_costs(images: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(labels))[:BATCH]
    ds = TensorDataset(images, labels)
    x = ds.get_batch(idx)[0]
    crop, flip, to_float = RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat()
    mean, std = channel_stats(images[:2000])
    norm = Normalize(mean, std)
    xf = to_float(x)
    stages = {
        "gather (get_batch)": lambda: ds.get_batch(idx),
        "RandomCrop(32, padding=4)": lambda: crop(x, rng),
        "RandomHorizontalFlip": lambda: flip(x, rng),
        "ToFloat": lambda: to_float(x),
        "Normalize": lambda: norm(xf),
        "to Tensor (float32, int64)": lambda: (to_tensor(xf), to_tensor(labels[idx])),
    }
    return {name: time_it(fn, repeats=repeats)["median_s"] * 1e3 for name, fn in stages.items()}


def crop_variants(images: np.ndarray, repeats: int) -> dict:
    x = images[:BATCH]
    rng = np.random.default_rng(1)
    top, left = rng.integers(0, 9, BATCH), rng.integers(0, 9, BATCH)
    n = np.arange(BATCH)

    def pad():
        p = np.zeros((BATCH, 3, 40, 40), dtype=x.dtype)
        p[:, :, 4:36, 4:36] = x
        return p

    def windows():
        p = pad()
        return np.ascontiguousarray(sliding_window_view(p, (32, 32), axis=(2, 3))[n, :, top, left])

    def four_index():
        p = pad()
        rows = top[:, None] + np.arange(32)
        cols = left[:, None] + np.arange(32)
        return p[n[:, None, None, None], np.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]

    def loop():
        p = pad()
        return np.stack([p[i, :, top[i]:top[i] + 32, left[i]:left[i] + 32] for i in range(BATCH)])

    ref = loop()
    assert np.array_equal(windows(), ref) and np.array_equal(four_index(), ref)
    assert np.array_equal(RandomCrop(32, padding=4).crop_at(x, top, left), ref)
    return {name: time_it(fn, repeats=repeats)["median_s"] * 1e3
            for name, fn in [("np.pad (general padding, for comparison)",
                              lambda: np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))),
                             ("zero padding by allocate + assign", pad),
                             ("pad + sliding_window_view + one index", windows),
                             ("pad + fancy index with 4 arrays", four_index),
                             ("pad + per-image Python loop", loop)]}


def mlp_step(images: np.ndarray, labels: np.ndarray, steps: int) -> dict:
    manual_seed(0)
    model = Sequential(Flatten(), Dense(3072, 1024), ReLU(), Dense(1024, 512), ReLU(), Dense(512, 10))
    opt = FusedAdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = CrossEntropyLoss()
    mean, std = channel_stats(images[:2000])
    loader = DataLoader(TensorDataset(images, labels), batch_size=BATCH, shuffle=True, seed=0,
                        drop_last=True, transform=Compose([ToFloat(), Normalize(mean, std)]))
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == steps + 2:
            break

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for x, y in batches[:2]:                     # warm-up: allocations, optimizer state
        step(x, y)
    times = []
    for x, y in batches[2:]:
        t0 = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t0)
    return {"step_ms": float(np.median(times)) * 1e3, "steps_timed": len(times),
            "params": model.num_parameters()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 images, few repeats, nothing written")
    parser.add_argument("--images", type=int, default=50_000, help="images per epoch (default 50,000)")
    args = parser.parse_args()
    tune_allocator()                   # opt in (module 13): keep freed memory for reuse, as training runs do
    n, repeats, steps = (2_000, 1, 3) if args.quick else (args.images, 3, 10)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)

    epochs = loader_epochs(images, labels, repeats)
    stages = stage_costs(images, labels, repeats=5 if args.quick else 50)
    crops = crop_variants(images, repeats=5 if args.quick else 50)
    mlp = mlp_step(images, labels, steps)
    n_batches = -(-n // BATCH)
    train_epoch_s = mlp["step_ms"] / 1e3 * n_batches
    key = "get_batch, crop+flip+ToFloat+Normalize"
    load_s = epochs[key]["epoch_s"]
    share = load_s / (load_s + train_epoch_s)

    print(f"one epoch of {n:,} images (3, 32, 32) uint8, batch {BATCH}, shuffled\n")
    print(table([[k, f"{v['epoch_s']:.2f}", f"{v['ms_per_batch']:.2f}", f"{v['images_per_s']:,.0f}"]
                 for k, v in epochs.items()], ["loader", "epoch s", "ms / batch", "images / s"]))
    print("\nper-batch cost of each stage\n")
    print(table([[k, f"{v:.3f}"] for k, v in stages.items()], ["stage", "ms / batch"]))
    print("\nrandom crop of one batch, three ways\n")
    print(table([[k, f"{v:.3f}"] for k, v in crops.items()], ["implementation", "ms / batch"]))
    print(f"\nMLP 3072-1024-512-10 ({mlp['params']:,} parameters), AdamW: {mlp['step_ms']:.1f} ms per step "
          f"(median of {mlp['steps_timed']}), about {train_epoch_s:.1f} s per epoch of {n_batches} steps")
    met = "met" if share <= TARGET_SHARE else "NOT met"
    print(f"loader share of an epoch: {load_s:.2f} s / ({load_s:.2f} + {train_epoch_s:.1f}) s = "
          f"{share:.1%} (target <= {TARGET_SHARE:.0%}: {met})")
    if not args.quick:
        path = write_results("bench_dataloader", {
            "images": n, "batch_size": BATCH, "loader_epochs": epochs, "stage_ms_per_batch": stages,
            "crop_ms_per_batch": crops, "mlp": {**mlp, "epoch_s_estimate": train_epoch_s},
            "loader_share": share, "target_share": TARGET_SHARE})
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
