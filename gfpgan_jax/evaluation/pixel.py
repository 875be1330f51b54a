"""PSNR and SSIM as basicsr 1.4.2 computes them (`calculate_psnr`, `calculate_ssim`), batched and compiled.

Images are NHWC (b, h, w, c) with c = 3 (RGB) or 1, values in [0, 255], uint8 or float; a pair of batches gives
one value per image. basicsr takes BGR images (as cv2 reads them); ours are RGB, and the Y channel of
`test_y_channel` weighs R, G and B as basicsr's `bgr2ycbcr` does, so the figures equal basicsr's on the same
pixels. basicsr computes in float64; we compute in float32 and centre each image on its mean before SSIM's
second moments, so that they do not cancel to float32 rounding: SSIM stays within 2e-6 of basicsr's, PSNR within
1e-4 dB (tests/test_evaluation_metrics.py).
"""
import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np

# ITU-R BT.601 luma of [0, 1] RGB, in [16, 235] (MATLAB's rgb2ycbcr, basicsr's bgr2ycbcr reversed).
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def check_batch(images, name='images'):
    """`images` as a (b, h, w, c) array with c in (1, 3), or a ValueError that says what came instead."""
    shape = np.shape(images)
    if len(shape) != 4 or shape[-1] not in (1, 3) or 0 in shape:
        raise ValueError(f'{name}: expected a batch (b, h, w, 3) or (b, h, w, 1), got shape {shape}')
    return images


def check_pair(images, references):
    check_batch(images, 'images')
    check_batch(references, 'references')
    if np.shape(images) != np.shape(references):
        raise ValueError(f'images {np.shape(images)} and references {np.shape(references)} differ in shape')


def y_channel(images):
    """(b, h, w, 3) RGB in [0, 255] -> (b, h, w, 1) float32 Y in [16, 235], in basicsr's float32 steps (scaled
    to [0, 1], converted, back to [0, 255]); single-channel images are returned as float32."""
    images = images.astype(jnp.float32)
    if images.shape[-1] == 1:
        return images
    y = jnp.dot(images / 255, jnp.array(Y_WEIGHTS, jnp.float32), precision=jax.lax.Precision.HIGHEST)
    return ((y + Y_OFFSET) / 255 * 255)[..., None]


def crop(images, border):
    if border == 0:
        return images
    if 2 * border >= min(images.shape[1:3]):
        raise ValueError(f'crop_border {border} leaves nothing of {images.shape[1]}x{images.shape[2]} images')
    return images[:, border:-border, border:-border]


def _prepare(images, crop_border, test_y_channel):
    images = crop(images, crop_border)
    return y_channel(images) if test_y_channel else images.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=('crop_border', 'test_y_channel'))
def _psnr(images, references, crop_border, test_y_channel):
    images = _prepare(images, crop_border, test_y_channel)
    references = _prepare(references, crop_border, test_y_channel)
    mse = jnp.mean((images - references) ** 2, axis=(1, 2, 3))
    return jnp.where(mse == 0, jnp.inf, 10 * jnp.log10(255.0 ** 2 / mse))


def psnr(images, references, crop_border=0, test_y_channel=False):
    """(b,) PSNR in dB of `images` against `references` (both (b, h, w, c) in [0, 255]); inf where equal."""
    check_pair(images, references)
    return _psnr(jnp.asarray(images), jnp.asarray(references), crop_border=crop_border,
                 test_y_channel=test_y_channel)


def _gaussian_taps():
    """cv2.getGaussianKernel(11, 1.5): basicsr's window is the outer product of these taps."""
    return cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA).ravel().astype(np.float32)


def _filter_valid(x, taps):
    """The separable Gaussian window over each channel of (b, h, w, c), 'valid' (as basicsr crops its filter2D
    output by 5 pixels): a weighted sum of shifted views per axis, which XLA fuses into one pass (a depthwise
    convolution is several times slower on the CPU)."""
    n = len(taps)
    for axis in (1, 2):
        length = x.shape[axis] - n + 1

        def view(k, x=x, axis=axis, length=length):
            return jax.lax.slice_in_dim(x, k, k + length, axis=axis)

        # The window is symmetric: each pair of mirrored taps is one product, and the small outer terms are summed
        # first, which keeps the float32 sum within 1e-6 of basicsr's float64 SSIM.
        total = float(taps[0]) * (view(0) + view(n - 1))
        for k in range(1, n // 2):
            total = total + float(taps[k]) * (view(k) + view(n - 1 - k))
        x = total + float(taps[n // 2]) * view(n // 2)
    return x


@functools.partial(jax.jit, static_argnames=('crop_border', 'test_y_channel'))
def _ssim(images, references, crop_border, test_y_channel):
    taps = _gaussian_taps()
    x = _prepare(images, crop_border, test_y_channel)
    y = _prepare(references, crop_border, test_y_channel)
    # Variances and covariance do not change when an image moves by a constant; about its mean they are
    # computed from small numbers, not as differences of two large ones.
    x_mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    y_mean = jnp.mean(y, axis=(1, 2), keepdims=True)
    x, y = x - x_mean, y - y_mean
    # The five local moments filtered as one stack.
    mu_x, mu_y, xx, yy, xy = jnp.split(_filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1), taps),
                                       5, axis=-1)
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    mu_x, mu_y = mu_x + x_mean, mu_y + y_mean
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
                / ((mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return jnp.mean(ssim_map, axis=(1, 2, 3))


def ssim(images, references, crop_border=0, test_y_channel=False):
    """(b,) SSIM of `images` against `references` (both (b, h, w, c) in [0, 255]): the mean over channels and
    pixels of the 11x11 Gaussian (sigma 1.5) SSIM map, 'valid' at the borders, as basicsr."""
    check_pair(images, references)
    if min(np.shape(images)[1:3]) - 2 * crop_border < SSIM_WINDOW:
        raise ValueError(f'SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping')
    return _ssim(jnp.asarray(images), jnp.asarray(references), crop_border=crop_border,
                 test_y_channel=test_y_channel)
