"""Upsample, FIR-filter, downsample (upfirdn2d) on NHWC, as the original StyleGAN2 resamples.

Semantics of basicsr's `upfirdn2d_native`: `up - 1` zeros follow every input pixel (the last one included),
the result is padded by `pad = (before, after)` on both spatial axes (negative values crop), convolved (a true
convolution: the kernel is flipped) with `kernel` over the valid region, and every `down`-th pixel is kept.
"""
import jax
import jax.numpy as jnp
import numpy as np


def make_resample_kernel(taps):
    """Normalised 2D FIR kernel: the outer product of 1D `taps` with itself (2D taps are taken as is)."""
    kernel = np.asarray(taps, np.float32)
    if kernel.ndim == 1:
        kernel = np.outer(kernel, kernel)
    return kernel / kernel.sum()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """(b, h, w, c) -> (b, (h * up + pad[0] + pad[1] - kh) // down + 1, ..., c), each channel filtered alone."""
    before, after = pad
    # Interior padding inserts the zeros between pixels; the trailing ones after the last pixel go to `after`.
    spatial = (before, after + up - 1, up - 1)
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), spatial, spatial, (0, 0, 0)))
    channels = x.shape[-1]
    flipped = jnp.asarray(np.asarray(kernel)[::-1, ::-1], x.dtype)
    depthwise = jnp.broadcast_to(flipped[:, :, None, None], flipped.shape + (1, channels))
    return jax.lax.conv_general_dilated(
        x, depthwise, window_strides=(down, down), padding='VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels)


def blur_after_upsample(x, taps, conv_kernel_size, factor=2):
    """The blur that follows a stride-`factor` transposed conv of size `conv_kernel_size`, back to `factor` x
    the conv's input size. The kernel is scaled by factor**2 to keep the gain of the zero-stuffed signal."""
    kernel = make_resample_kernel(taps) * factor ** 2
    pad = kernel.shape[0] - factor - (conv_kernel_size - 1)
    return upfirdn2d(x, kernel, pad=((pad + 1) // 2 + factor - 1, pad // 2 + 1))


def blur_before_downsample(x, taps, conv_kernel_size, factor=2):
    """The blur ahead of a stride-`factor` valid conv of size `conv_kernel_size` so that it lands on h / factor."""
    kernel = make_resample_kernel(taps)
    pad = kernel.shape[0] - factor + conv_kernel_size - 1
    return upfirdn2d(x, kernel, pad=((pad + 1) // 2, pad // 2))


def upsample_fir(x, taps, factor=2):
    """(b, h, w, c) -> (b, factor h, factor w, c) by zero-stuffing and FIR filtering (basicsr UpFirDnUpsample)."""
    kernel = make_resample_kernel(taps) * factor ** 2
    pad = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((pad + 1) // 2 + factor - 1, pad // 2))
