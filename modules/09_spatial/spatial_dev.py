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
# # Module 09: Spatial layers (convolution and pooling)
#
# **Where you are.** You can build, train and feed (modules 01–08) networks made of
# `Dense` layers. A `Dense` layer treats its input as a bag of unrelated numbers: shift a
# 32 x 32 image by one pixel and, to the layer, it is a different vector. Images have
# structure a network should exploit: nearby pixels belong together (*locality*) and a
# cat is a cat wherever it sits (*translation equivariance*). Convolution builds both
# into the layer, and with them LeNet-5 (1998) and every CNN since.
#
# **What you build.**
#
# | name | what it is |
# |---|---|
# | `im2col`, `col2im` | turn every sliding window into a column (and add columns back into an image) |
# | `Conv2dFunction`, `conv2d` | 2-D convolution as **one matrix product**, with its backward beside its forward |
# | `Conv2d` | the layer: `(N, C_in, H, W) -> (N, C_out, H_out, W_out)`, He-initialised |
# | `MaxPool2dFunction`, `AvgPool2dFunction` | vectorised pooling, with their backward |
# | `MaxPool2d`, `AvgPool2d`, `max_pool2d`, `avg_pool2d` | the pooling layers and functions |
#
# `Flatten` (module 03) turns the last feature maps into vectors for a `Dense` classifier.
#
# **Where it goes.** `tito export` compiles the `#| export` cells into
# `tinytorch/core/spatial.py`.
#
# **The one idea of this module.** A convolution is many small dot products, one per
# output pixel and filter. Written as Python loops it is hopelessly slow. Copy every input
# window into a column of a matrix (*im2col*) and all those dot products become a single
# matrix product, which numpy hands to BLAS, the same optimised library PyTorch uses on a
# CPU. The price is memory: the column matrix holds every input pixel about `kh * kw`
# times.
#
# These are the first ops introduced *after* autograd (module 05). So, as the course's
# convention says, each `Function` here writes its `backward(self, grad)` right beside its
# `forward`: one gradient (or `None`) per input, never modifying `grad` in place.
#
# **Points: 22** (the total of this module's graded test cells)

# %%
# Colab set-up (the first cell of every module): on Google Colab, fetch TinyTorch
# modules 01-08 from the course repository (nothing of this module or later); anywhere
# else this cell does nothing.
import sys

if "google.colab" in sys.modules:
    raise RuntimeError("this copy of TinyTorch names no course repository (settings.ini still holds the "
                       "placeholder tinytorch/tinytorch): open the notebooks from your course's own Colab links")

# %%
#| default_exp core.spatial

# %%
#| export
"""Spatial layers: Conv2d (im2col + BLAS GEMMs), MaxPool2d and AvgPool2d, on NCHW tensors.

Module 09 of TinyTorch (generated from modules/09_spatial/spatial_dev.py; do not edit).

Each op is a `Function` whose `backward` sits beside its `forward`. Inputs are
(N, C, H, W) arrays (batch, channels, height, width), as in PyTorch.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinytorch.core.tensor import DEFAULT_FLOAT, Autograd, Function, Tensor, get_rng
from tinytorch.core.layers import Module, Parameter

# %% [markdown]
# ## 1. What a convolution computes
#
# A **filter** (kernel) is a small stack of weights, `C_in x kh x kw`, that slides over the
# image. At each position it multiplies the window of the input it covers, element by
# element, and sums: one output number. A layer has `C_out` filters, each producing one
# output channel (a *feature map*), plus one bias per filter:
#
# $$\text{out}[n, o, y, x] = b[o] + \sum_{c=0}^{C_\text{in}-1} \sum_{i=0}^{k_h-1} \sum_{j=0}^{k_w-1}
#   w[o, c, i, j]\; x_p[n, c,\; y s_h + i,\; x s_w + j]$$
#
# where $x_p$ is the input surrounded by `padding` zeros and $s$ is the **stride** (how
# far the window moves between outputs). (Deep-learning "convolution" does not flip the
# kernel; mathematicians call this cross-correlation. Since the kernel is learnt, the
# difference does not matter.) Counting window positions gives the output size:
#
# $$H_\text{out} = \left\lfloor \frac{H + 2p_h - k_h}{s_h} \right\rfloor + 1, \qquad
#   W_\text{out} = \left\lfloor \frac{W + 2p_w - k_w}{s_w} \right\rfloor + 1.$$
#
# | tensor | shape |
# |---|---|
# | input `x` | `(N, C_in, H, W)` |
# | weight `w` | `(C_out, C_in, kh, kw)` |
# | bias `b` | `(C_out,)` |
# | output | `(N, C_out, H_out, W_out)` |
#
# **Why it is a good layer.** The same `C_out x C_in x kh x kw` weights are used at every
# position: LeNet's first layer has 6·3·5·5 + 6 = 456 parameters where a `Dense` layer
# from a 3x32x32 image to a 6x28x28 map would need 14 million. And a pattern detected in
# one corner is detected everywhere.
#
# Write the definition literally first: loops over images, filters and output pixels, with
# one small numpy dot product inside. It is the reference that the fast version must match,
# and the baseline it must beat. (It is not exported: nothing should ever call it on a real
# batch.)

# %% nbgrader={"grade": false, "grade_id": "conv-naive", "locked": false, "schema_version": 3, "solution": true}
def conv2d_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                 stride: int = 1, padding: int = 0) -> np.ndarray:
    """Reference convolution with loops: (N, C_in, H, W), (C_out, C_in, kh, kw) -> (N, C_out, H_out, W_out)."""
    N, C, H, W = x.shape
    C_out, _, kh, kw = w.shape
    ### BEGIN SOLUTION
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))  # (N, C, H+2p, W+2p)
    H_out = (H + 2 * padding - kh) // stride + 1
    W_out = (W + 2 * padding - kw) // stride + 1
    out = np.zeros((N, C_out, H_out, W_out), dtype=np.result_type(x, w))
    for n in range(N):
        for o in range(C_out):
            for y in range(H_out):
                for xx in range(W_out):
                    window = xp[n, :, y * stride:y * stride + kh, xx * stride:xx * stride + kw]  # (C, kh, kw)
                    out[n, o, y, xx] = np.sum(window * w[o]) + (b[o] if b is not None else 0.0)
    return out
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-conv-naive", "locked": true, "points": 2, "schema_version": 3, "solution": false}
img = np.arange(16.0).reshape(1, 1, 4, 4)
box = np.ones((1, 1, 2, 2))
assert conv2d_naive(img, box).shape == (1, 1, 3, 3)
assert conv2d_naive(img, box)[0, 0, 0, 0] == 0 + 1 + 4 + 5, "sum of the top-left 2x2 window"
assert conv2d_naive(img, box, np.array([10.0]), stride=2)[0, 0].tolist() == [[20, 28], [52, 60]]
padded = conv2d_naive(img, box, padding=1)
assert padded.shape == (1, 1, 5, 5) and padded[0, 0, 0, 0] == 0, "the corner window sees 3 zeros and x[0, 0] = 0"
print("naive convolution: OK")

# %% [markdown]
# ## 2. Checking arguments once
#
# `kernel_size`, `stride` and `padding` may each be an int (the same along height and
# width) or an `(h, w)` pair. A helper normalises them and refuses nonsense; another
# computes the output size and fails with a message that names the layer and the shapes
# when the kernel does not fit, instead of numpy's puzzling "negative dimensions".

# %%
#| export
def _as_pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An int or an (h, w) pair of ints >= `minimum` as a tuple of two ints."""
    if isinstance(value, (int, np.integer)):
        pair = (value, value)
    elif isinstance(value, (tuple, list)):
        pair = tuple(value)
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def _output_size(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], who: str) -> tuple[int, int]:
    """(H_out, W_out) of a window sliding over the last two axes of `shape` (N, C, H, W)."""
    H, W = shape[2] + 2 * padding[0], shape[3] + 2 * padding[1]
    if kernel[0] > H or kernel[1] > W:
        what = "padded input" if any(padding) else "input"
        raise ValueError(f"{who}: kernel {kernel} is larger than the {what} ({H}, {W}) "
                         f"of an input of shape {tuple(shape)}")
    return (H - kernel[0]) // stride[0] + 1, (W - kernel[1]) // stride[1] + 1

# %% [markdown]
# ## 3. im2col: every window becomes a column
#
# Look at the sum in the definition again. For a fixed output pixel `(n, y, x)` it is a
# dot product between the flattened filter `w[o]` (length `K = C_in·kh·kw`) and the
# flattened window under it (also length `K`). Collect the windows of *all* output pixels
# of *all* images as the columns of one matrix,
#
# $$\text{cols} \in \mathbb{R}^{K \times (N \cdot H_\text{out} \cdot W_\text{out})},$$
#
# and the filters as the rows of `W2 = w.reshape(C_out, K)`. Then every output number of
# the layer is one entry of a single matrix product:
#
# $$\text{out2} = W_2 \cdot \text{cols} \quad (C_\text{out}, K)(K, N H_\text{out} W_\text{out})
#   = (C_\text{out}, N H_\text{out} W_\text{out}),$$
#
# which a reshape and one transpose turn into `(N, C_out, H_out, W_out)`.
#
# **Building `cols` without loops.** `np.lib.stride_tricks.sliding_window_view(xp, (kh, kw),
# axis=(2, 3))` returns a *view* of shape `(N, C, H', W', kh, kw)`: no number is copied,
# numpy only invents strides that step through the same memory several times. Slicing
# `[:, :, ::s_h, ::s_w]` applies the stride. The single copy happens when we order the
# axes the way the product wants them and make the array contiguous.
#
# **Which layout?** The row order `(c, i, j)` of `cols` must match `w.reshape(C_out, K)`;
# the column order is ours to choose. We pick columns ordered `(n, y, x)` and rows
# `(c, i, j)`, i.e. `cols` is the array `(C, kh, kw, N, H_out, W_out)` in memory. Its
# innermost axis is the output column `x`, so the copy moves runs of `W_out` numbers that
# are contiguous in the source too (for stride 1): close to `memcpy` speed. The
# alternative, one *row* per window (`(N·H_out·W_out, K)`), copies runs of only `kw`
# numbers, which measured several times slower. (Section 4 reads the same array as one
# `(K, L)` matrix per image, `L = H_out·W_out`, without copying: the view
# `cols.reshape(K, N, L).transpose(1, 0, 2)` just steps through it with other strides.)
#
# **col2im** is the reverse, needed by backward: each entry of a column belongs to one input
# pixel, and pixels covered by several windows receive the *sum* of their entries. We loop
# over the `kh·kw` kernel offsets `(i, j)` (25 for a 5x5 kernel, never over pixels or
# images): offset `(i, j)` of every window at once is a strided slice of the input, and one
# vectorised `+=` adds all of them.
#
# Each `+=` walks its slice in runs that are contiguous in memory, and numpy pays a few
# nanoseconds per run. In NCHW order a run is one output row, `W_out` numbers: only 10 for
# LeNet's second layer, so the bookkeeping costs more than the additions. So `col2im`
# accumulates in a *batch-last* buffer `(C, H, W, N)`, where a run is `W_out·N` numbers, and
# transposes to NCHW once at the end. For that, it takes its columns ordered `(y, x, n)`
# (batch last) instead of `im2col`'s `(n, y, x)`: backward can produce either order at the
# same cost (section 4). This measured about 2x faster on LeNet's second layer and on
# CIFAR-sized 8x8 and 16x16 maps, and no slower on 32x32 maps.

# %% nbgrader={"grade": false, "grade_id": "im2col", "locked": false, "schema_version": 3, "solution": true}
#| export
def _pad(x: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H + 2 ph, W + 2 pw) surrounded by zeros (x itself if no padding)."""
    ph, pw = padding
    ### BEGIN SOLUTION
    if ph == 0 and pw == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    return xp
    ### END SOLUTION


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(N, C, H, W) -> cols (C*kh*kw, N*H_out*W_out): column (n, y, x) is the window of output pixel (y, x) of image n.

    Rows are ordered (c, i, j) like `w.reshape(C_out, -1)`; columns (n, y, x).
    """
    N, C = x.shape[:2]
    (kh, kw), (sh, sw) = kernel, stride
    H_out, W_out = _output_size(x.shape, kernel, stride, padding, "im2col")
    ### BEGIN SOLUTION
    xp = _pad(x, padding)                                                     # (N, C, Hp, Wp)
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, H_out, W_out, kh, kw), a view
    cols = np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3))           # (C, kh, kw, N, H_out, W_out), one copy
    return cols.reshape(C * kh * kw, N * H_out * W_out)
    ### END SOLUTION


def col2im(cols: np.ndarray, x_shape: tuple[int, int, int, int], kernel: tuple[int, int],
           stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Adjoint of `im2col` for columns in batch-last order: cols (C*kh*kw, H_out*W_out*N),
    rows (c, i, j), columns (y, x, n) -> (N, C, H, W), overlapping entries summed."""
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    H_out, W_out = _output_size(x_shape, kernel, stride, padding, "col2im")
    ### BEGIN SOLUTION
    c6 = cols.reshape(C, kh, kw, H_out, W_out, N)
    xp = np.zeros((C, H + 2 * ph, W + 2 * pw, N), dtype=cols.dtype)          # (C, Hp, Wp, N), batch last
    for i in range(kh):                    # a loop over the kh*kw kernel offsets only:
        for j in range(kw):                # each += handles every window and image at once
            xp[:, i:i + sh * (H_out - 1) + 1:sh, j:j + sw * (W_out - 1) + 1:sw] += c6[:, i, j]   # (C, H_out, W_out, N)
    return np.ascontiguousarray(xp[:, ph:ph + H, pw:pw + W].transpose(3, 0, 1, 2))   # (N, C, H, W)
    ### END SOLUTION


def batch_last(cols: np.ndarray, N: int) -> np.ndarray:
    """Reorder im2col's columns from (n, y, x) to (y, x, n): (K, N*L) -> (K, L*N), a copy."""
    K = cols.shape[0]
    return np.ascontiguousarray(cols.reshape(K, N, -1).transpose(0, 2, 1)).reshape(K, -1)

# %% [markdown]
# Two checks. The columns of a tiny image can be read by eye. And `col2im` must be the
# exact *adjoint* (transpose) of `im2col`: for any image `x` and any column matrix `c`,
# $\langle \text{im2col}(x), c \rangle = \langle x, \text{col2im}(c) \rangle$ (with `c`'s columns
# put in batch-last order for `col2im`). That identity is what makes the backward pass
# below correct.

# %% nbgrader={"grade": true, "grade_id": "test-im2col", "locked": true, "points": 3, "schema_version": 3, "solution": false}
tiny = np.arange(9.0).reshape(1, 1, 3, 3)
cols = im2col(tiny, (2, 2))
assert cols.shape == (4, 4), "K = 1*2*2 rows, N*H_out*W_out = 4 columns"
assert cols[:, 0].tolist() == [0, 1, 3, 4] and cols[:, 3].tolist() == [4, 5, 7, 8]
rng = np.random.default_rng(0)
for shape, k, s, p in [((2, 3, 7, 6), (3, 2), (2, 1), (1, 0)), ((1, 2, 5, 5), (5, 5), (1, 1), (2, 2))]:
    x = rng.standard_normal(shape)
    c = im2col(x, k, s, p)
    other = rng.standard_normal(c.shape)
    back = col2im(batch_last(other, shape[0]), shape, k, s, p)
    assert np.isclose(np.sum(c * other), np.sum(x * back)), "col2im is im2col's adjoint"
print("im2col / col2im: OK")

# %% [markdown]
# ## 4. The convolution op, forward and backward
#
# **Forward** (shapes with `K = C_in·kh·kw`, `L = H_out·W_out`, `M = N·L`):
#
# ```
# cols = im2col(x)                          (K, M)
# out  = W2 @ cols + b[:, None]             (C_out, K)(K, M) = (C_out, M)
# ```
#
# **Backward.** It is a matrix product, so module 05's rule applies, with `G` the upstream
# gradient arranged as `(C_out, M)`:
#
# $$\frac{\partial L}{\partial W_2} = G\, \text{cols}^\top \;(C_\text{out}, K), \qquad
#   \frac{\partial L}{\partial\, \text{cols}} = W_2^\top G \;(K, M), \qquad
#   \frac{\partial L}{\partial b} = \textstyle\sum_{M} G \;(C_\text{out},),$$
#
# and `dx = col2im(d cols)`: each window entry hands its gradient back to the pixel it was
# copied from. Forward keeps `cols` for the weight gradient, and backward skips any gradient
# whose input does not need one: the first layer never needs `dx`, because images are not
# trainable.
#
# **How to call BLAS.** The column blocks of `cols` and `G` that belong to image `n` are
# ordinary matrices, so each product can be issued either as *one* large GEMM over all `M`
# columns or as `N` GEMMs of `L` columns, one per image, with a single `np.matmul` call on
# the stack (numpy loops over the images in C, not Python). We measured both on LeNet-5 and
# on CIFAR-sized layers, and use the cheaper for each product:
#
# | product | issued as | why |
# |---|---|---|
# | `out = W2 @ cols` | one `np.matmul` over the stack of images | the result lands directly in `(N, C_out, L)` = NCHW order, no transpose; and each image's `(K, L)` block stays in cache, which matters when `C_out` is small (LeNet's 6 filters: about 2.5x faster single-threaded than one `(6, 75) @ (75, 50176)` product) |
# | `dcols = W2.T @ G` | **one** GEMM, with `G` rearranged batch-last `(C_out, H_out, W_out, N)` | its result comes out with columns `(y, x, n)`, the order in which `col2im` scatters fastest (section 3); rearranging `G` costs one copy of the output, `K` times smaller than `dcols` |
# | `dW = G @ cols.T` | **one** GEMM over all `M` columns | BLAS does the sum over images inside the product; issued per image it needs `N` partial results and a sum, which measured about 25% slower on CIFAR-sized layers and nearly 2x slower on LeNet's second convolution. We write it `(cols @ G.T).T`, which reads the long `M` axis of both operands contiguously |

# %% nbgrader={"grade": false, "grade_id": "conv-function", "locked": false, "schema_version": 3, "solution": true}
#| export
class Conv2dFunction(Function):
    """2-D convolution: x (N, C_in, H, W), weight (C_out, C_in, kh, kw), optional bias (C_out,)
    -> (N, C_out, H_out, W_out). im2col + a GEMM forward; two GEMMs + col2im backward.

    Keeps `cols` (C_in*kh*kw, N*H_out*W_out) for the weight gradient.
    """
    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None,
                stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0)) -> np.ndarray:
        if x.dtype.kind != "f":                            # uint8 images, integer test data
            x = x.astype(weight.dtype)
        N = x.shape[0]
        C_out = weight.shape[0]
        kernel = (weight.shape[2], weight.shape[3])
        H_out, W_out = _output_size(x.shape, kernel, stride, padding, "conv2d")
        ### BEGIN SOLUTION
        cols = im2col(x, kernel, stride, padding)                    # (K, N*L), L = H_out*W_out
        K = cols.shape[0]
        w2 = weight.reshape(C_out, K)                                # (C_out, K)
        per_image = cols.reshape(K, N, -1).transpose(1, 0, 2)        # (N, K, L), a strided view
        out = np.matmul(w2, per_image)                               # (N, C_out, L): lands in NCHW order
        if bias is not None:
            out += bias[:, None]
        self.cols, self.w2, self.x_shape = cols, w2, x.shape
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.has_bias = bias is not None
        return out.reshape(N, C_out, H_out, W_out)
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray | None, ...]:
        ### BEGIN SOLUTION
        N, C_out = grad.shape[:2]
        g3 = grad.reshape(N, C_out, -1)                              # (N, C_out, L), a view
        need = [t.requires_grad for t in self.inputs]
        dx = dw = db = None
        if need[0]:
            g_last = np.ascontiguousarray(grad.transpose(1, 2, 3, 0)).reshape(C_out, -1)   # (C_out, L*N)
            dcols = self.w2.T @ g_last                               # (K, L*N): columns (y, x, n)
            dx = col2im(dcols, self.x_shape, self.kernel, self.stride, self.padding)
        if need[1]:
            g2 = np.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(C_out, -1)   # (C_out, N*L)
            dw = (self.cols @ g2.T).T.reshape(self.inputs[1].shape)  # one GEMM sums over all images
        if self.has_bias and need[2]:
            db = np.einsum("ncl->c", g3)                             # (C_out,), one pass
        return (dx, dw, db) if self.has_bias else (dx, dw)
        ### END SOLUTION


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | tuple[int, int] = 1,
           padding: int | tuple[int, int] = 0) -> Tensor:
    """Convolution of x (N, C_in, H, W) with weight (C_out, C_in, kh, kw) -> (N, C_out, H_out, W_out)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    stride, padding = _as_pair(stride, "conv2d: stride", 1), _as_pair(padding, "conv2d: padding", 0)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be (C_out, C_in, kh, kw), got shape {weight.shape}")
    if x.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: expected input (N, {weight.shape[1]}, H, W) for weight of shape "
                         f"{weight.shape}, got {x.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    _output_size(x.shape, weight.shape[2:], stride, padding, f"conv2d(weight {weight.shape})")
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return Conv2dFunction.apply(*inputs, stride=stride, padding=padding)

# %% [markdown]
# The fast op must agree with the loops, and its backward with finite differences (in
# float64, as in module 05).

# %% nbgrader={"grade": true, "grade_id": "test-conv-function", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from tinytorch.core.autograd import gradcheck

rng = np.random.default_rng(1)
for (N, C, H, W), (C_out, kh, kw), s, p in [((2, 3, 8, 7), (4, 3, 3), 1, 0), ((1, 2, 9, 9), (3, 5, 5), 2, 2),
                                            ((3, 1, 6, 6), (2, 1, 1), 1, 0)]:
    xa, wa, ba = rng.standard_normal((N, C, H, W)), rng.standard_normal((C_out, C, kh, kw)), rng.standard_normal(C_out)
    fast = conv2d(Tensor(xa), Tensor(wa), Tensor(ba), stride=s, padding=p)
    assert np.allclose(fast.data, conv2d_naive(xa, wa, ba, s, p), atol=1e-4), (N, C, H, W, C_out, kh, kw, s, p)
x64 = Tensor(rng.standard_normal((2, 2, 5, 6)), dtype=np.float64, requires_grad=True)
w64 = Tensor(rng.standard_normal((3, 2, 3, 2)), dtype=np.float64, requires_grad=True)
b64 = Tensor(rng.standard_normal(3), dtype=np.float64, requires_grad=True)
assert gradcheck(lambda x, w, b: conv2d(x, w, b, stride=(2, 1), padding=1), [x64, w64, b64])
print("conv2d forward and backward: OK")

# %% [markdown]
# ## 5. The `Conv2d` layer
#
# The layer owns `weight (C_out, C_in, kh, kw)` and `bias (C_out,)` and checks its input
# before anything else, so that a wrong image size or channel count fails with the layer's
# name and both shapes.
#
# **Initialisation.** An output is a sum over `fan_in = C_in·kh·kw` products, exactly like a
# `Dense` layer with `fan_in` inputs, so the He rule of module 03 carries over:
# $\mathrm{Var}(w) = 2/\text{fan\_in}$, i.e. $w \sim \mathcal{U}(-\sqrt{6/\text{fan\_in}},
# \sqrt{6/\text{fan\_in}})$, biases zero. (PyTorch's default uses a smaller bound,
# $\sqrt{1/\text{fan\_in}}$; with ReLU networks He's choice keeps the activations' scale
# from layer to layer.)

# %% nbgrader={"grade": false, "grade_id": "conv-layer", "locked": false, "schema_version": 3, "solution": true}
#| export
class Conv2d(Module):
    """2-D convolution layer: (N, in_channels, H, W) -> (N, out_channels, H_out, W_out).

    H_out = (H + 2*padding - kernel_h) // stride + 1 (same for W). `kernel_size`, `stride`
    and `padding` are ints or (h, w) pairs. `weight` (out, in, kh, kw) is He-uniform
    initialised, U(-sqrt(6/fan_in), sqrt(6/fan_in)) with fan_in = in*kh*kw; `bias` (out,)
    starts at zero, or is None when `bias=False`.
    """
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, bias: bool = True,
                 dtype: Any = DEFAULT_FLOAT, rng: np.random.Generator | None = None):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"Conv2d: channel counts must be positive, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _as_pair(kernel_size, "Conv2d: kernel_size", 1)
        self.stride = _as_pair(stride, "Conv2d: stride", 1)
        self.padding = _as_pair(padding, "Conv2d: padding", 0)
        ### BEGIN SOLUTION
        kh, kw = self.kernel_size
        bound = math.sqrt(6.0 / (in_channels * kh * kw))
        w = (rng or get_rng()).uniform(-bound, bound, size=(out_channels, in_channels, kh, kw))
        self.weight = Parameter(w.astype(dtype), dtype=dtype)
        self.bias = Parameter(np.zeros(out_channels, dtype=dtype), dtype=dtype) if bias else None
        ### END SOLUTION

    def _name(self) -> str:
        kh, kw = self.kernel_size
        k = kh if kh == kw else self.kernel_size
        return f"Conv2d({self.in_channels}->{self.out_channels}, k={k})"

    def forward(self, x: Tensor) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self._name()}: expected input (N, {self.in_channels}, H, W), got {x.shape}")
        _output_size(x.shape, self.kernel_size, self.stride, self.padding,
                     f"{self._name()} with padding {self.padding}")
        ### BEGIN SOLUTION
        inputs = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return Conv2dFunction.apply(*inputs, stride=self.stride, padding=self.padding)
        ### END SOLUTION

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")

# %% nbgrader={"grade": true, "grade_id": "test-conv-layer", "locked": true, "points": 4, "schema_version": 3, "solution": false}
conv = Conv2d(3, 6, 5, rng=np.random.default_rng(0))
assert conv.weight.shape == (6, 3, 5, 5) and conv.bias.shape == (6,) and conv.weight.dtype == np.float32
assert conv.num_parameters() == 456, "LeNet's first layer"
assert conv(Tensor(np.ones((2, 3, 32, 32)))).shape == (2, 6, 28, 28)
assert Conv2d(3, 8, 3, stride=2, padding=1)(Tensor(np.ones((1, 3, 32, 32)))).shape == (1, 8, 16, 16)
assert Conv2d(2, 4, (3, 1), padding=(1, 0))(Tensor(np.ones((1, 2, 5, 5)))).shape == (1, 4, 5, 5)
for bad in [np.ones((2, 1, 32, 32)), np.ones((3, 32, 32))]:
    try:
        conv(Tensor(bad))
        raise AssertionError(f"input {bad.shape} must be refused")
    except ValueError:
        pass
try:
    conv(Tensor(np.ones((1, 3, 4, 4))))
    raise AssertionError("a 5x5 kernel does not fit a 4x4 image")
except ValueError:
    pass
wide = Conv2d(64, 64, 3, rng=np.random.default_rng(1))
assert abs(wide.weight.data.var() - 2 / (64 * 9)) < 0.05 * 2 / (64 * 9), "He init: Var(w) = 2 / fan_in"
print(conv)
print("Conv2d layer: OK")

# %% [markdown]
# ## 6. How much faster?
#
# Time the loops against im2col on a small batch. (The numbers depend on your machine;
# the ratio is what matters.) Then count what the fast version pays in memory: the column
# matrix of LeNet's first layer at batch 64 is `K x M = 75 x 50 176` floats.

# %%
import time

rng = np.random.default_rng(2)
xs, ws, bs = rng.standard_normal((4, 3, 16, 16)), rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8)
t0 = time.perf_counter(); slow = conv2d_naive(xs, ws, bs, 1, 1); t_naive = time.perf_counter() - t0
xt, wt, bt = Tensor(xs, dtype=np.float64), Tensor(ws, dtype=np.float64), Tensor(bs, dtype=np.float64)
t0 = time.perf_counter()
for _ in range(20):
    quick = conv2d(xt, wt, bt, padding=1)
t_fast = (time.perf_counter() - t0) / 20
assert np.allclose(slow, quick.data)
print(f"loops {t_naive * 1e3:.1f} ms, im2col + GEMM {t_fast * 1e3:.3f} ms: {t_naive / t_fast:.0f}x faster")
n_in, n_cols = 64 * 3 * 32 * 32, 75 * 64 * 28 * 28
print(f"LeNet conv1 at batch 64: input {n_in * 4 / 2**20:.2f} MiB, columns {n_cols * 4 / 2**20:.1f} MiB "
      f"({n_cols / n_in:.0f}x the input)")

# %% [markdown]
# ## 7. Pooling
#
# A pooling layer summarises each `kh x kw` window of each channel by one number: its
# **maximum** (`MaxPool2d`, "is the feature present somewhere here?") or its **mean**
# (`AvgPool2d`). With the usual `kernel_size=2` (stride defaults to the kernel size) it
# halves height and width, quartering the work of the next convolution, and makes the
# network a little insensitive to small shifts. There are no parameters, and channels never
# mix: `(N, C, H, W) -> (N, C, H_out, W_out)` with the same output-size formula (no
# padding here).
#
# **Vectorising.** As in `col2im`, we loop over the `kh·kw` offsets `(i, j)`: the element at
# offset `(i, j)` of every window of every channel and image is one strided view
# `x[:, :, i::s_h, j::s_w]` (cut to `H_out x W_out`). The max is a running `np.maximum` over
# those views. When the stride equals the kernel and divides the image (the common 2x2
# case) the windows tile the image exactly, and `x.reshape(N, C, H_out, kh, W_out, kw)` is
# a free view whose axes 3 and 5 *are* the offsets; backward then writes each input pixel
# exactly once instead of accumulating.
#
# **Backward of max.** Only the winning element influenced the output, so it gets the whole
# gradient and the others nothing. **Ties** (common after a ReLU: a window of zeros) need a
# rule; module 05's `max` shares the gradient equally, but pooling follows PyTorch and gives
# it all to **one** position: the *first* maximum in row-major order within the window
# (smallest `i`, then smallest `j`). Forward records, per output, the offset number
# `i·kw + j` of the winner, updating it only on a *strictly* greater value, which is
# exactly that rule. With overlapping windows (stride < kernel) one pixel can win several
# windows, so the general backward *adds* its gradients.
#
# **Backward of average.** Each of the `kh·kw` elements receives `g / (kh·kw)`.
#
# When no gradient will be needed (inference under `no_grad`, or an input that does not
# require grad) max-pooling skips recording the winners.

# %% nbgrader={"grade": false, "grade_id": "pooling-functions", "locked": false, "schema_version": 3, "solution": true}
#| export
def _windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int], tiled: bool) -> list[np.ndarray]:
    """The kh*kw strided views (N, C, H_out, W_out) of x, offset (i, j) at position i*kw + j."""
    (kh, kw), (sh, sw), (H_out, W_out) = kernel, stride, out_hw
    N, C = x.shape[:2]
    ### BEGIN SOLUTION
    if tiled:                                           # stride == kernel and it divides H and W
        x6 = x.reshape(N, C, H_out, kh, W_out, kw)      # a view: axes 3 and 5 are the offsets
        return [x6[:, :, :, i, :, j] for i in range(kh) for j in range(kw)]
    return [x[:, :, i:i + sh * (H_out - 1) + 1:sh, j:j + sw * (W_out - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]
    ### END SOLUTION


def _is_tiled(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int]) -> bool:
    return stride == kernel and shape[2] % kernel[0] == 0 and shape[3] % kernel[1] == 0


class MaxPool2dFunction(Function):
    """Max over each kh x kw window: (N, C, H, W) -> (N, C, H_out, W_out).

    Gradient to one position per window: the first maximum in row-major window order.
    Keeps `self.argmax` (uint8 or int16 offset numbers, output shape) when `keep_index`.
    """
    def forward(self, x: np.ndarray, kernel: tuple[int, int] = (2, 2), stride: tuple[int, int] = (2, 2),
                keep_index: bool = True) -> np.ndarray:
        out_hw = _output_size(x.shape, kernel, stride, (0, 0), "max_pool2d")
        self.shape, self.kernel, self.stride, self.out_hw = x.shape, kernel, stride, out_hw
        self.tiled = _is_tiled(x.shape, kernel, stride)
        ### BEGIN SOLUTION
        views = _windows(x, kernel, stride, out_hw, self.tiled)
        out = views[0].copy()                                            # (N, C, H_out, W_out)
        if not keep_index:
            for v in views[1:]:
                np.maximum(out, v, out=out)
            return out
        argmax = np.zeros(out.shape, dtype=np.uint8 if len(views) < 256 else np.int32)
        for k, v in enumerate(views[1:], start=1):
            better = v > out                           # strictly greater: an earlier tie keeps the win
            np.maximum(out, v, out=out)
            np.putmask(argmax, better, k)
        self.argmax = argmax
        return out
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        ### BEGIN SOLUTION
        n_offsets = self.kernel[0] * self.kernel[1]
        if self.tiled:                                 # every input pixel is in exactly one window
            dx = np.empty(self.shape, dtype=grad.dtype)
            for k, view in enumerate(_windows(dx, self.kernel, self.stride, self.out_hw, True)):
                np.multiply(grad, self.argmax == k, out=view)          # grad where offset k won, else 0
            return (dx,)
        dx = np.zeros(self.shape, dtype=grad.dtype)
        views = _windows(dx, self.kernel, self.stride, self.out_hw, False)
        for k in range(n_offsets):
            views[k] += grad * (self.argmax == k)             # overlapping windows accumulate
        return (dx,)
        ### END SOLUTION


class AvgPool2dFunction(Function):
    """Mean over each kh x kw window: (N, C, H, W) -> (N, C, H_out, W_out)."""
    def forward(self, x: np.ndarray, kernel: tuple[int, int] = (2, 2),
                stride: tuple[int, int] = (2, 2)) -> np.ndarray:
        if x.dtype.kind != "f":
            x = x.astype(DEFAULT_FLOAT)
        out_hw = _output_size(x.shape, kernel, stride, (0, 0), "avg_pool2d")
        self.shape, self.dtype, self.kernel, self.stride, self.out_hw = x.shape, x.dtype, kernel, stride, out_hw
        self.tiled = _is_tiled(x.shape, kernel, stride)
        ### BEGIN SOLUTION
        views = _windows(x, kernel, stride, out_hw, self.tiled)
        out = views[0].copy()                                            # (N, C, H_out, W_out)
        for v in views[1:]:
            out += v
        out *= 1.0 / len(views)                        # a Python float keeps float32 float32
        return out
        ### END SOLUTION

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray]:
        ### BEGIN SOLUTION
        (kh, kw), (H_out, W_out) = self.kernel, self.out_hw
        g = grad * (1.0 / (kh * kw))                                     # (N, C, H_out, W_out)
        N, C = self.shape[:2]
        if self.tiled:                                 # one broadcast copy fills the whole image
            g6 = np.broadcast_to(g[:, :, :, None, :, None], (N, C, H_out, kh, W_out, kw))
            return (g6.reshape(self.shape),)
        dx = np.zeros(self.shape, dtype=g.dtype)
        for view in _windows(dx, self.kernel, self.stride, self.out_hw, False):
            view += g
        return (dx,)
        ### END SOLUTION


def _pool_args(x: Any, kernel_size: Any, stride: Any, who: str) -> tuple[Tensor, tuple[int, int], tuple[int, int]]:
    x = x if isinstance(x, Tensor) else Tensor(x)
    kernel = _as_pair(kernel_size, f"{who}: kernel_size", 1)
    stride = kernel if stride is None else _as_pair(stride, f"{who}: stride", 1)
    if x.ndim != 4:
        raise ValueError(f"{who}: expected input (N, C, H, W), got {x.shape}")
    _output_size(x.shape, kernel, stride, (0, 0), who)
    return x, kernel, stride


def max_pool2d(x: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> Tensor:
    """Max pooling (N, C, H, W) -> (N, C, H_out, W_out); stride defaults to kernel_size."""
    x, kernel, stride = _pool_args(x, kernel_size, stride, f"max_pool2d(k={kernel_size}, s={stride})")
    keep = Autograd.grad_enabled and x.requires_grad
    return MaxPool2dFunction.apply(x, kernel=kernel, stride=stride, keep_index=keep)


def avg_pool2d(x: Tensor, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> Tensor:
    """Average pooling (N, C, H, W) -> (N, C, H_out, W_out); stride defaults to kernel_size."""
    x, kernel, stride = _pool_args(x, kernel_size, stride, f"avg_pool2d(k={kernel_size}, s={stride})")
    return AvgPool2dFunction.apply(x, kernel=kernel, stride=stride)

# %% nbgrader={"grade": true, "grade_id": "test-pooling-functions", "locked": true, "points": 4, "schema_version": 3, "solution": false}
grid = Tensor(np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
assert max_pool2d(grid, 2).data[0, 0].tolist() == [[5, 7], [13, 15]]
assert avg_pool2d(grid, 2).data[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
assert max_pool2d(grid, 3, stride=1).data[0, 0].tolist() == [[10, 11], [14, 15]], "overlapping windows"
assert max_pool2d(Tensor(np.ones((2, 3, 7, 5))), 2).shape == (2, 3, 3, 2), "leftover rows and columns are dropped"
ties = Tensor(np.zeros((1, 1, 2, 2)), requires_grad=True)          # four equal maxima
max_pool2d(ties, 2).sum().backward()
assert ties.grad.data[0, 0].tolist() == [[1, 0], [0, 0]], "all of it to the first maximum in row-major order"
rng = np.random.default_rng(3)
for k, s in [(2, None), (3, 2), (2, 1)]:
    xp = Tensor(rng.standard_normal((2, 2, 6, 7)), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda a: max_pool2d(a, k, s), [xp]) and gradcheck(lambda a: avg_pool2d(a, k, s), [xp])
try:
    max_pool2d(Tensor(np.ones((3, 8, 8))), 2)
    raise AssertionError("a 3-D input must be refused")
except ValueError:
    pass
print("pooling functions: OK")

# %% [markdown]
# The layers are thin wrappers, parameter-free `Module`s so that they sit in a
# `Sequential` and print nicely.

# %% nbgrader={"grade": false, "grade_id": "pooling-layers", "locked": false, "schema_version": 3, "solution": true}
#| export
class _Pool2d(Module):
    """Shared constructor and repr of the pooling layers."""
    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _as_pair(kernel_size, f"{name}: kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _as_pair(stride, f"{name}: stride", 1)

    def _name(self) -> str:
        k, s = self.kernel_size, self.stride
        return f"{type(self).__name__}(k={k[0] if k[0] == k[1] else k}, s={s[0] if s[0] == s[1] else s})"

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool2d):
    """Max pooling layer: (N, C, H, W) -> (N, C, (H-kh)//sh + 1, (W-kw)//sw + 1); stride defaults to the kernel."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        x, kernel, stride = _pool_args(x, self.kernel_size, self.stride, self._name())
        keep = Autograd.grad_enabled and x.requires_grad
        return MaxPool2dFunction.apply(x, kernel=kernel, stride=stride, keep_index=keep)
        ### END SOLUTION


class AvgPool2d(_Pool2d):
    """Average pooling layer: (N, C, H, W) -> (N, C, (H-kh)//sh + 1, (W-kw)//sw + 1); stride defaults to the kernel."""
    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        x, kernel, stride = _pool_args(x, self.kernel_size, self.stride, self._name())
        return AvgPool2dFunction.apply(x, kernel=kernel, stride=stride)
        ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test-pooling-layers", "locked": true, "points": 2, "schema_version": 3, "solution": false}
pool = MaxPool2d(2)
assert pool.stride == (2, 2) and pool(Tensor(np.ones((2, 6, 28, 28)))).shape == (2, 6, 14, 14)
assert AvgPool2d((2, 3), stride=1)(Tensor(np.ones((1, 1, 4, 4)))).shape == (1, 1, 3, 2)
assert pool.num_parameters() == 0 and repr(pool) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2))"
try:
    pool(Tensor(np.ones((1, 1, 1, 5))))
    raise AssertionError("a 2x2 window does not fit one row")
except ValueError:
    pass
print("pooling layers: OK")

# %% [markdown]
# ## 8. A small CNN learns
#
# Four kinds of 8x8 images (a horizontal bar, a vertical bar, a diagonal, an
# anti-diagonal) at random positions with noise. A `Dense` network would have to learn
# each position separately; a convolution learns each *pattern* once. The network is
# `Conv2d -> ReLU -> MaxPool2d -> Flatten -> Dense`, trained here with plain gradient
# steps (module 06's `SGD` does the same thing).

# %% nbgrader={"grade": true, "grade_id": "test-cnn-learns", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from tinytorch.core.activations import ReLU
from tinytorch.core.layers import Dense, Flatten, Sequential
from tinytorch.core.losses import CrossEntropyLoss


def bar_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n noisy 1x8x8 images of 4 classes: horizontal bar, vertical bar, diagonal, anti-diagonal."""
    labels = np.arange(n) % 4
    lab, pos, line = labels[:, None], rng.integers(1, 7, size=(n, 1)), np.arange(8)[None, :]
    rows = np.where(lab == 0, pos, line)                                   # (n, 8) pixel rows
    cols = np.select([lab == 0, lab == 1, lab == 2], [line, pos, line], 7 - line)   # (n, 8) pixel columns
    images = 0.1 * rng.standard_normal((n, 1, 8, 8))
    images[np.arange(n)[:, None], 0, rows, cols] += 1.0
    return images.astype(np.float32), labels


rng = np.random.default_rng(4)
images, labels = bar_images(32, rng)
cnn = Sequential(Conv2d(1, 8, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Dense(8 * 4 * 4, 4, rng=rng))
loss_fn = CrossEntropyLoss()
for step in range(60):
    loss = loss_fn(cnn(Tensor(images)), labels)
    cnn.zero_grad()
    loss.backward()
    for p in cnn.parameters():
        p.data -= 0.1 * p.grad.data
accuracy = (cnn(Tensor(images)).data.argmax(axis=1) == labels).mean()
print(f"after 60 steps: loss {loss.item():.3f}, training accuracy {accuracy:.0%}")
assert accuracy == 1.0 and loss.item() < 0.2
print("a CNN learns: OK")

# %% [markdown]
# ## Systems thinking
#
# 1. **The memory of im2col.** For a 3x3 convolution with stride 1 and padding 1, `cols`
#    holds each input pixel 9 times. For a CIFAR-10 network with 64 channels at 32x32 and
#    batch 128, how many MiB is `cols`, and how many MiB is the input? Forward keeps `cols`
#    until backward: what would recomputing it in backward cost instead?
# 2. **Where the FLOPs go.** Count the multiply-adds of LeNet-5's two convolutions and its
#    three Dense layers for one image. Which layer dominates compute, and which dominates
#    parameters? Why are they different?
# 3. **Thin matrices.** LeNet's first GEMM is `(6, 75) @ (75, 50176)` at batch 64. Compute
#    its arithmetic intensity (FLOPs per byte moved). Is it limited by the CPU's arithmetic
#    or by memory bandwidth? What about `(64, 576) @ (576, M)`?
# 4. **Layout.** We built `cols` as `(C, kh, kw, N, H_out, W_out)`. Time `im2col` against a
#    version that builds `(N, H_out, W_out, C, kh, kw)` on your machine. Why does the length
#    of the innermost contiguous run matter for a copy?
# 5. **Pooling vs stride.** A 2x2 max-pool after a stride-1 convolution and a stride-2
#    convolution both halve the resolution. Compare their cost (FLOPs, and memory kept for
#    backward) and what each can learn.
