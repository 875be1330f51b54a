"""Image resizing as the reference metrics do it, each axis a matrix product: torch's bilinear
`F.interpolate(..., align_corners=False)` (FID's resize to 299, the identity network's to 128) and basicsr's
MATLAB-style antialiased bicubic `imresize` (NIQE's second scale).

The matrices are built on the host in float32 as the references compute their taps; the products run in JAX at
full precision. `jax.image.resize` would differ: it antialiases bilinear shrinking, which torch does not, and it
renormalises its kernel at the borders where MATLAB mirrors the image.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def torch_bilinear_matrix(in_size, out_size):
    """(out_size, in_size) float32: torch's bilinear taps along one axis (half-pixel centres, the source
    coordinate clamped at 0 and the upper neighbour at the last pixel, no antialiasing)."""
    scale = np.float32(in_size / out_size)
    # torch's CPU kernel rounds (i + 0.5) * scale - 0.5 once, as a fused multiply-add: float32 steps would move
    # the taps of a 512 -> 299 resize by up to 1e-6 of a pixel value.
    source = (np.float64(scale) * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32)
    source = np.maximum(source, 0)
    lower = np.minimum(source.astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    upper_weight = source - lower.astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), np.float32(1) - upper_weight)
    np.add.at(matrix, (rows, upper), upper_weight)
    return matrix


def _cubic(x):
    """Keys' cubic (a = -0.5), as MATLAB's imresize; float32 in, float32 out."""
    x = np.abs(x)
    near = (1.5 * x ** 3 - 2.5 * x ** 2 + 1) * (x <= 1)
    far = (-0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2) * ((x > 1) & (x <= 2))
    return (near + far).astype(np.float32)


@functools.lru_cache(maxsize=64)
def matlab_bicubic_matrix(in_size, scale):
    """(ceil(in_size * scale), in_size) float32: basicsr's `imresize` (bicubic, antialiased when shrinking) along
    one axis, its mirrored borders folded into the matrix. basicsr drops the first (last) tap column of every
    output pixel as soon as any pixel's weight there is exactly zero; so does this."""
    out_size = math.ceil(in_size * scale)
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    centres = (np.arange(1, out_size + 1, dtype=np.float32) / np.float32(scale)
               + np.float32(0.5 * (1 - 1 / scale)))
    taps = math.ceil(kernel_width) + 2
    # 1-based MATLAB positions of each output pixel's taps.
    positions = np.floor(centres - np.float32(kernel_width / 2))[:, None] + np.arange(taps, dtype=np.float32)
    distance = centres[:, None] - positions
    if scale < 1:
        weights = np.float32(scale) * _cubic(distance * np.float32(scale))
    else:
        weights = _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    zeros = (weights == 0).sum(axis=0)
    keep = slice(1 if zeros[0] else 0, taps - 1 if zeros[-1] else taps)
    positions, weights = positions[:, keep].astype(np.int64), weights[:, keep]
    # Mirror with the edge pixel repeated (position 0 is pixel 1, position n + 1 is pixel n), 0-based.
    source = np.where(positions < 1, -positions, np.where(positions > in_size, 2 * in_size - positions,
                                                          positions - 1))
    matrix = np.zeros((out_size, in_size), np.float32)
    np.add.at(matrix, (np.repeat(np.arange(out_size), weights.shape[1]), source.ravel()), weights.ravel())
    return matrix


def resize_with(images, rows, columns):
    """`rows` @ image @ `columns`.T for each image and channel of `images` (b, h, w, c), at full precision."""
    highest = jax.lax.Precision.HIGHEST
    images = jnp.einsum('oh,bhwc->bowc', rows, images, precision=highest)
    return jnp.einsum('pw,bowc->bopc', columns, images, precision=highest)


def resize_bilinear(images, size):
    """(b, h, w, c) -> (b, size[0], size[1], c) as torch's `F.interpolate(mode='bilinear', align_corners=False)`."""
    _, h, w, _ = images.shape
    return resize_with(images, jnp.asarray(torch_bilinear_matrix(h, size[0])),
                       jnp.asarray(torch_bilinear_matrix(w, size[1])))


def imresize(images, scale):
    """(b, h, w, c) -> (b, ceil(h * scale), ceil(w * scale), c) as basicsr's MATLAB-like `imresize`."""
    _, h, w, _ = images.shape
    return resize_with(images, jnp.asarray(matlab_bicubic_matrix(h, scale)),
                       jnp.asarray(matlab_bicubic_matrix(w, scale)))
