"""Bilinear x2 resampling with PyTorch's `align_corners=False` arithmetic, written out exactly.

`jax.image.resize` antialiases when shrinking and renormalises its kernel at borders; the official clean
networks use `F.interpolate(..., scale_factor=2 or 0.5, mode='bilinear', align_corners=False)`, which for a
factor of two reduces to fixed 1/4-3/4 taps with edge clamping (up) and a 2x2 mean (down).
"""
import jax.numpy as jnp


def _upsample_axis(x, axis):
    n = x.shape[axis]
    first = jnp.take(x, jnp.array([0]), axis=axis)
    last = jnp.take(x, jnp.array([n - 1]), axis=axis)
    before = jnp.concatenate([first, jnp.take(x, jnp.arange(n - 1), axis=axis)], axis=axis)
    after = jnp.concatenate([jnp.take(x, jnp.arange(1, n), axis=axis), last], axis=axis)
    # Output pixel 2k sits a quarter pixel before input k, output 2k+1 a quarter pixel after it.
    even = 0.25 * before + 0.75 * x
    odd = 0.75 * x + 0.25 * after
    both = jnp.stack([even, odd], axis=axis + 1)
    return both.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])


def upsample_bilinear_2x(x):
    """(b, h, w, c) -> (b, 2h, 2w, c)."""
    return _upsample_axis(_upsample_axis(x, 1), 2)


def downsample_bilinear_2x(x):
    """(b, h, w, c) -> (b, h/2, w/2, c): each output pixel is the mean of a 2x2 block."""
    b, h, w, c = x.shape
    blocks = x.reshape(b, h // 2, 2, w // 2, 2, c)
    # Same order of additions as a bilinear tap pair per axis, so fp32 rounding follows PyTorch.
    rows = 0.5 * blocks[:, :, 0] + 0.5 * blocks[:, :, 1]
    return 0.5 * rows[:, :, :, 0] + 0.5 * rows[:, :, :, 1]
