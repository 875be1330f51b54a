"""NIQE (Mittal et al. 2013, no-reference; lower is better) as basicsr 1.4.2's `calculate_niqe` computes it.

The per-pixel work runs batched in JAX: the Y channel, MSCN coefficients at two scales (the second after basicsr's
MATLAB-like bicubic halving) and, per 96x96 block (48x48 at the second scale), the sums that the asymmetric
generalised Gaussian fits need, for the block and for its products with its four circularly shifted neighbours.
The fits themselves pick the shape parameter from a float64 table of 9801 values, as basicsr does, where a float32
comparison would choose neighbouring entries; they, the mean and covariance of the block features and the
distance to the pristine model run on the host in float64.

The local variances are taken about each centre pixel, not as float32 differences of values near 255^2 as
basicsr's are: basicsr's figure carries that rounding (one float32 ulp in its half-size image moves it by up to
2.4e-3, relative), and ours stays within 2e-3 of it on real photos.

The pristine model (mu, cov, 7x7 window) is basicsr's niqe_pris_params.npz, fetched once into the cache from
https://github.com/XPixelGroup/BasicSR/raw/master/basicsr/metrics/niqe_pris_params.npz (basicsr's repository).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import gamma

from gfpgan_jax.evaluation.pixel import check_batch, crop, y_channel
from gfpgan_jax.evaluation.resize import imresize
from gfpgan_jax.files.releases import helper_weights_path

BLOCK = 96
# The AGGD shape parameters basicsr searches, and the ratio r(shape) each gives.
SHAPES = np.arange(0.2, 10.001, 0.001)
SHAPE_RATIOS = gamma(2 / SHAPES) ** 2 / (gamma(1 / SHAPES) * gamma(3 / SHAPES))
# np.roll shifts (rows, columns) of the paired-product features: horizontal, vertical and both diagonals.
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


@functools.lru_cache(maxsize=4)
def load_pristine_model(path=None):
    """(mu (36,), cov (36, 36), window (7, 7)) from niqe_pris_params.npz (`path`, else the cached official file)."""
    with np.load(path or helper_weights_path('niqe_pris_params')) as params:
        return (params['mu_pris_param'].reshape(-1), params['cov_pris_param'],
                params['gaussian_window'].astype(np.float32))


def _mscn(images, window):
    """Mean-subtracted contrast-normalised coefficients of (b, h, w) images: local mean and deviation over the
    7x7 window, the border pixels repeated (scipy's 'nearest')."""
    size = window.shape[0]
    half = size // 2
    _, h, w = images.shape
    padded = jnp.pad(images, ((0, 0), (half, half), (half, half)), mode='edge')
    # Moments of each neighbour's difference from the centre pixel: a flat neighbourhood gives exactly zero
    # coefficients, as basicsr's float64 filtering does and as it counts them (neither negative nor positive),
    # where a float32 filter of the values themselves would leave rounding noise of either sign.
    mean_difference = jnp.zeros_like(images)
    mean_square = jnp.zeros_like(images)
    for i in range(size):
        for j in range(size):
            # scipy's convolve flips the window (symmetric here, flipped anyway).
            weight = window[size - 1 - i, size - 1 - j]
            difference = padded[:, i:i + h, j:j + w] - images
            mean_difference = mean_difference + weight * difference
            mean_square = mean_square + weight * difference * difference
    sigma = jnp.sqrt(jnp.abs(mean_square - mean_difference * mean_difference))
    return -mean_difference / (sigma + 1)


def _blocks(images, size):
    """(b, h, w) -> (b, blocks, size, size), the blocks in any fixed order (the statistics are over all)."""
    b, h, w = images.shape
    blocks = images.reshape(b, h // size, size, w // size, size).transpose(0, 1, 3, 2, 4)
    return blocks.reshape(b, -1, size, size)


def _aggd_sums(x):
    """Over the last two axes: sum and count of squares of the negative values, of the positive ones, the sum of
    absolute values and of squares: (..., 6)."""
    squares = x * x
    negative, positive = x < 0, x > 0
    return jnp.stack([jnp.sum(jnp.where(negative, squares, 0), axis=(-2, -1)), jnp.sum(negative, axis=(-2, -1)),
                      jnp.sum(jnp.where(positive, squares, 0), axis=(-2, -1)), jnp.sum(positive, axis=(-2, -1)),
                      jnp.sum(jnp.abs(x), axis=(-2, -1)), jnp.sum(squares, axis=(-2, -1))], axis=-1)


def _scale_sums(images, window, size):
    """AGGD sums of each block of the MSCN coefficients and of its four neighbour products: (b, blocks, 5, 6)."""
    blocks = _blocks(_mscn(images, window), size)
    products = [blocks * jnp.roll(blocks, shift, axis=(-2, -1)) for shift in NEIGHBOURS]
    return jnp.stack([_aggd_sums(x) for x in [blocks] + products], axis=-2)


@functools.partial(jax.jit, static_argnames=('crop_border',))
def _block_sums(images, window, crop_border):
    """(b, h, w, c) in [0, 255] -> the AGGD sums of both scales, (b, blocks, 2, 5, 6)."""
    y = jnp.round(crop(y_channel(images), crop_border)[..., 0])
    _, h, w = y.shape
    y = y[:, :h - h % BLOCK, :w - w % BLOCK]
    first = _scale_sums(y, window, BLOCK)
    # basicsr halves the image in [0, 1] and scales it back.
    half = imresize((y / 255)[..., None], 0.5)[..., 0] * 255
    second = _scale_sums(half, window, BLOCK // 2)
    return jnp.stack([first, second], axis=2)


def _fit(left_std, right_std, mean_abs, mean_square):
    """basicsr's `estimate_aggd_param` from a block's statistics (float32, as basicsr's): the shape (from the
    float64 table) and the left and right scales. A block without negative (or positive) values has no fit and
    gives NaN, as in basicsr, which then leaves the block out."""
    with np.errstate(invalid='ignore', divide='ignore'):
        gamma_hat = left_std / right_std
        r_hat = mean_abs ** 2 / mean_square
        r_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    shape = SHAPES[np.argmin((SHAPE_RATIOS - r_norm[..., None].astype(np.float64)) ** 2, axis=-1)]
    spread = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return shape, left_std * spread, right_std * spread


def _features(sums):
    """(b, blocks, 2, 5, 6) block sums -> (b, blocks, 36) NIQE features, basicsr's order."""
    sums = np.asarray(sums, np.float32)
    pixels = np.float32([BLOCK * BLOCK, (BLOCK // 2) ** 2])[:, None]  # per scale
    left_squares, left_count, right_squares, right_count, absolute, squares = np.moveaxis(sums, -1, 0)
    with np.errstate(invalid='ignore', divide='ignore'):
        left_std = np.sqrt(left_squares / left_count)
        right_std = np.sqrt(right_squares / right_count)
    shape, left, right = _fit(left_std, right_std, absolute / pixels, squares / pixels)
    # Per scale: the block's shape and mean scale, then per neighbour product its shape, mean, left and right scale.
    own = [shape[..., 0], (left[..., 0] + right[..., 0]) / 2]
    mean = (right - left) * (gamma(2 / shape) / gamma(1 / shape))
    pairs = np.stack([shape, mean, left, right], axis=-1)[..., 1:, :]
    per_scale = np.concatenate([np.stack(own, axis=-1), pairs.reshape(pairs.shape[:-2] + (-1,))], axis=-1)
    return per_scale.reshape(per_scale.shape[:-2] + (-1,))


def _quality(features, mu, cov):
    """NIQE of one image's block features (blocks, 36): the Mahalanobis-like distance of their Gaussian fit to
    the pristine one, blocks with an undefined feature left out of the covariance (MATLAB's nancov). NaN when
    fewer than two blocks are left (flat images), where basicsr fails in its pseudo-inverse."""
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        return float('nan')
    mean = np.nanmean(features, axis=0)
    difference = mu - mean
    return float(np.sqrt(difference @ np.linalg.pinv((cov + np.cov(complete, rowvar=False)) / 2) @ difference))


def niqe(images, crop_border=0, params=None):
    """(b,) NIQE of RGB (or single-channel) images (b, h, w, c) in [0, 255], as basicsr's `calculate_niqe` with
    convert_to='y': on the rounded Y channel, over the image cropped to whole 96x96 blocks (at least two); NaN
    for an image too flat to fit. `params`: a niqe_pris_params.npz path (default: basicsr's official file,
    fetched once)."""
    check_batch(images)
    h, w = np.shape(images)[1] - 2 * crop_border, np.shape(images)[2] - 2 * crop_border
    if (h // BLOCK) * (w // BLOCK) < 2:
        raise ValueError(f'NIQE needs at least two {BLOCK}x{BLOCK} blocks (e.g. {2 * BLOCK}x{BLOCK} pixels); '
                         f'the images are {h}x{w} after cropping')
    mu, cov, window = load_pristine_model(params)
    sums = _block_sums(jnp.asarray(images), jnp.asarray(window), crop_border=crop_border)
    features = _features(sums)
    return np.array([_quality(image_features, mu, cov) for image_features in features])
