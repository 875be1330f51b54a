"""GFPGAN's training degradation (the official FFHQDegradationDataset with basicsr's degradations), batched and
jit-compiled: every random choice is drawn per sample from a JAX key, then applied on the device.

    params = sample_params(key, batch, TRAINING)               # DegradationParams: one row per sample
    out = apply_degradations(params, gt, TRAINING, boxes)      # {'lq', 'gt', 'boxes'}
    out = degrade(key, gt, boxes, config=TRAINING)             # both

gt: (b, s, s, 3) RGB, uint8 levels or float in [0, 1] (s = config.out_size). lq and gt come back float32 in [-1, 1]
(normalised with the config's mean and std, 0.5 and 0.5 officially). boxes: (b, 3, 4) left eye, right eye, mouth
(x1, y1, x2, y2) of the unflipped face (components.component_boxes), flipped with the face.

The official reads BGR images; here they are RGB, and the operations whose result depends on the channel order
(OpenCV's grey weights, JPEG's colour conversion, the per-channel colour shift) are written for RGB. Its steps, in
its order:
 1. horizontal flip of gt (p 0.5 with use_hflip), the component boxes with it;
 2. blur with a mixed isotropic / anisotropic Gaussian kernel (cv2.filter2D, kernels.py);
 3. resize to int(s // scale) for a scale in downsample_range (cv2 INTER_LINEAR, resize.py; a scale under 1
    enlarges, so the intermediate canvas is s // downsample_range[0] wide);
 4. Gaussian noise of sigma in noise_range levels, clipped to [0, 1];
 5. JPEG at a quality in jpeg_range (OpenCV's libjpeg-turbo, jpeg.py), on the image rounded to 8 bits;
 6. resize back to s x s (INTER_LINEAR);
 7. colour shift of each channel by up to color_jitter_shift levels (p color_jitter_prob), clipped;
 8. grey (cv2 BGR2GRAY, tiled to three channels; p gray_prob), gt too with gt_gray;
 9. torchvision's brightness, contrast, saturation and hue jitter in a random order (p color_jitter_pt_prob);
 10. lq rounded to 8 bits and clipped; both normalised.
"""
import dataclasses
import fractions
import functools
import math
from typing import Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gfpgan_jax.data.arithmetic import divide, levels_to_unit
from gfpgan_jax.data.colour import jitter_in_order, opencv_grey
from gfpgan_jax.data.components import flip_boxes
from gfpgan_jax.data.jpeg import jpeg_round_trip
from gfpgan_jax.data.kernels import bivariate_gaussian, filter2d
from gfpgan_jax.data.resize import floor_quotient, resize_linear

KERNEL_TYPES = ('iso', 'aniso')  # of basicsr's mixed kernels, the two GFPGAN uses
Range = Tuple[float, float]


@dataclasses.dataclass(frozen=True)
class DegradationConfig:
    """The degradation settings of the official dataset's options (train_gfpgan_v1.yml names; the defaults are its
    values, or the dataset code's defaults where the file sets none). A range or probability of None skips that
    step, as in the official. Brightness, contrast, saturation and hue are the dataset's defaults (the official
    options file sets none)."""
    out_size: int = 512
    blur_kernel_size: int = 41
    kernel_list: Tuple[str, ...] = KERNEL_TYPES
    kernel_prob: Tuple[float, ...] = (0.5, 0.5)
    blur_sigma: Range = (0.1, 10.0)
    downsample_range: Range = (0.8, 8.0)
    noise_range: Optional[Range] = (0.0, 20.0)
    jpeg_range: Optional[Range] = (60.0, 100.0)
    color_jitter_prob: Optional[float] = 0.3
    color_jitter_shift: float = 20.0  # in 8-bit levels
    color_jitter_pt_prob: Optional[float] = 0.3
    brightness: Range = (0.5, 1.5)
    contrast: Range = (0.5, 1.5)
    saturation: Range = (0.0, 1.5)
    hue: Range = (-0.1, 0.1)
    gray_prob: Optional[float] = 0.01
    gt_gray: bool = False
    use_hflip: bool = True
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self):
        if self.out_size < 2 or self.blur_kernel_size % 2 != 1 or not 0 < self.blur_kernel_size // 2 < self.out_size:
            raise ValueError(f'need an odd blur_kernel_size under twice out_size, got {self.blur_kernel_size} and '
                             f'out_size {self.out_size}')
        unknown = set(self.kernel_list) - set(KERNEL_TYPES)
        if unknown or len(self.kernel_prob) != len(self.kernel_list) or min(self.kernel_prob, default=-1) < 0 \
                or sum(self.kernel_prob) <= 0:
            raise ValueError(f'kernel_list must be from {KERNEL_TYPES} with as many non-negative kernel_prob, got '
                             f'{self.kernel_list} and {self.kernel_prob}')
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f'blur_sigma must be a positive range, got {self.blur_sigma}')
        low, high = self.downsample_range
        # The smallest image must keep a pixel; the largest bounds the intermediate canvas (and int32 arithmetic).
        if not (0 < low <= high <= self.out_size and self.out_size / low < 2048):
            raise ValueError(f'downsample_range must lie in (out_size / 2048, out_size], got {self.downsample_range}')
        for name in ('color_jitter_prob', 'color_jitter_pt_prob', 'gray_prob'):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f'{name} must be a probability or None, got {value}')
        for name in ('noise_range', 'jpeg_range', 'brightness', 'contrast', 'saturation', 'hue'):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f'{name} must be a (low, high) pair, got {value}')

    @property
    def canvas_size(self):
        """Side of the intermediate image's canvas: the largest int(out_size // scale) of a fp32 scale in range."""
        low = float(np.float32(self.downsample_range[0]))
        return math.floor(fractions.Fraction(self.out_size) / fractions.Fraction(low))

    @property
    def isotropic_prob(self):
        weights = dict(zip(self.kernel_list, self.kernel_prob))
        return weights.get('iso', 0.0) / sum(self.kernel_prob)


# Official training (options/train_gfpgan_v1.yml). Its file leaves gt_gray unset, so grey faces keep a colour target.
TRAINING = DegradationConfig()
# The paper's CelebA-Test synthesis: sigma 0.2-10, scale 1-8, noise 0-15, JPEG 60-100; no colour changes, no flip.
CELEBA_TEST = DegradationConfig(blur_sigma=(0.2, 10.0), downsample_range=(1.0, 8.0), noise_range=(0.0, 15.0),
                                color_jitter_prob=None, color_jitter_pt_prob=None, gray_prob=None, use_hflip=False)


@flax.struct.dataclass
class DegradationParams:
    """Every random choice of a batch, one row per sample. Colour vectors are in RGB order; jitter_order is a
    permutation of 0..3 (brightness, contrast, saturation, hue: colour.JITTERS) and jitter_factors follow that index
    order, not the application order."""
    flip: jax.Array            # bool (b,)
    isotropic: jax.Array       # bool (b,)
    sigma_x: jax.Array         # float32 (b,)
    sigma_y: jax.Array         # float32 (b,); equals sigma_x for isotropic kernels
    theta: jax.Array           # float32 (b,); 0 for isotropic kernels
    scale: jax.Array           # float32 (b,)
    noise_sigma: jax.Array     # float32 (b,), in 8-bit levels
    noise_key: jax.Array       # key (b,): standard_noise draws each sample's noise from it
    jpeg_quality: jax.Array    # float32 (b,), as drawn; the codec gets its integer part
    shift_applied: jax.Array   # bool (b,)
    shift: jax.Array           # float32 (b, 3), in [0, 1] units
    grey: jax.Array            # bool (b,)
    jitter_applied: jax.Array  # bool (b,)
    jitter_order: jax.Array    # int32 (b, 4)
    jitter_factors: jax.Array  # float32 (b, 4)


def _in_range(unit, bounds):
    # A uniform [0, 1) draw moved to [low, high), as jax.random.uniform does it.
    low, high = (jnp.asarray(b, jnp.float32) for b in bounds)
    return jnp.maximum(low, unit * (high - low) + low)


def _happens(unit, probability):
    # A step whose probability is None (or 0, as the official's falsy gray_prob) never happens.
    return unit < probability if probability else jnp.zeros(unit.shape, bool)


@functools.partial(jax.jit, static_argnames=('batch', 'config'))
def sample_params(key, batch, config=TRAINING):
    """Draws a batch's DegradationParams from `key` with the official's distributions."""
    draw_key, noise_key = jax.random.split(key)
    # One uniform draw for every scalar choice (a single random-bits program compiles much faster than many).
    unit = iter(jnp.moveaxis(jax.random.uniform(draw_key, (batch, 22)), 1, 0))

    def take(count=1):
        return next(unit) if count == 1 else jnp.stack([next(unit) for _ in range(count)], axis=1)

    isotropic = take() < config.isotropic_prob
    sigma_x = _in_range(take(), config.blur_sigma)
    sigma_y = jnp.where(isotropic, sigma_x, _in_range(take(), config.blur_sigma))
    theta = jnp.where(isotropic, 0.0, _in_range(take(), (-math.pi, math.pi)))
    shift = np.float32(config.color_jitter_shift / 255)
    factor_ranges = np.array([config.brightness, config.contrast, config.saturation, config.hue], np.float32).T
    return DegradationParams(
        flip=_happens(take(), 0.5 if config.use_hflip else None),
        isotropic=isotropic, sigma_x=sigma_x, sigma_y=sigma_y, theta=theta,
        scale=_in_range(take(), config.downsample_range),
        noise_sigma=_in_range(take(), config.noise_range or (0.0, 0.0)),
        noise_key=jax.random.split(noise_key, batch),
        jpeg_quality=_in_range(take(), config.jpeg_range or (100.0, 100.0)),
        shift_applied=_happens(take(), config.color_jitter_prob),
        shift=_in_range(take(3), (-shift, shift)),
        grey=_happens(take(), config.gray_prob),
        jitter_applied=_happens(take(), config.color_jitter_pt_prob),
        jitter_order=jnp.argsort(take(4), axis=1).astype(jnp.int32),
        jitter_factors=_in_range(take(4), factor_ranges))


def standard_noise(params, canvas):
    """Each sample's standard normal noise, (b, canvas, canvas, 3) RGB; the official's noise for an h x w image is
    the top-left h x w of it, times sigma / 255."""
    return jax.vmap(lambda key: jax.random.normal(key, (canvas, canvas, 3), jnp.float32))(params.noise_key)


def _check_faces(gt, config):
    if gt.ndim != 4 or gt.shape[1:] != (config.out_size, config.out_size, 3):
        raise ValueError(f'gt must be (batch, {config.out_size}, {config.out_size}, 3), got {gt.shape}')


def _unit_float(gt):
    if gt.dtype == jnp.uint8:
        return levels_to_unit(gt)
    if not jnp.issubdtype(gt.dtype, jnp.floating):
        raise ValueError(f'gt must be uint8 or float in [0, 1], got {gt.dtype}')
    return gt.astype(jnp.float32)


def _where(condition, a, b):
    return jnp.where(condition.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


@functools.partial(jax.jit, static_argnames=('config',))
def apply_degradations(params, gt, config=TRAINING, boxes=None, has_boxes=None):
    """The official degradation of `gt` with the given parameters; see the module's docstring for the arguments.
    Returns {'lq', 'gt'} and, when boxes are given, 'boxes' (has_boxes (b,): which rows are real; others pass
    through unflipped)."""
    _check_faces(gt, config)
    batch, size = gt.shape[:2]
    gt = _unit_float(gt)
    gt = _where(params.flip, gt[:, :, ::-1], gt)

    kernels = bivariate_gaussian(config.blur_kernel_size, params.sigma_x, params.sigma_y, params.theta)
    lq = filter2d(gt, kernels)
    canvas = config.canvas_size
    full = jnp.full((batch,), size, jnp.int32)
    small = floor_quotient(size, params.scale)
    lq = resize_linear(lq, (full, full), (small, small), (canvas, canvas))
    if config.noise_range is not None:
        noise = divide(standard_noise(params, canvas) * params.noise_sigma[:, None, None, None], 255.0)
        lq = jnp.clip(lq + noise, 0.0, 1.0)
    if config.jpeg_range is not None:
        # OpenCV converts the float image to 8 bits (round half to even, saturated) before encoding.
        levels = jnp.round(jnp.clip(lq, 0.0, 1.0) * 255.0).astype(jnp.int32)
        quality = jnp.floor(params.jpeg_quality).astype(jnp.int32)
        lq = levels_to_unit(jpeg_round_trip(levels, quality, small, small))
    lq = resize_linear(lq, (small, small), (full, full), (size, size))

    if config.color_jitter_prob is not None:
        lq = _where(params.shift_applied, jnp.clip(lq + params.shift[:, None, None, :], 0.0, 1.0), lq)
    if config.gray_prob:
        lq = _where(params.grey, opencv_grey(lq), lq)
        if config.gt_gray:
            gt = _where(params.grey, opencv_grey(gt), gt)
    if config.color_jitter_pt_prob is not None:
        jittered = jitter_in_order(lq, params.jitter_order, params.jitter_factors)
        lq = _where(params.jitter_applied, jittered, lq)
    lq = levels_to_unit(jnp.clip(jnp.round(lq * 255.0), 0, 255).astype(jnp.int32))

    mean, std = jnp.asarray(config.mean, jnp.float32), jnp.asarray(config.std, jnp.float32)
    out = {'lq': divide(lq - mean, std), 'gt': divide(gt - mean, std)}
    if boxes is not None:
        flipped = params.flip if has_boxes is None else params.flip & has_boxes
        out['boxes'] = _where(flipped, flip_boxes(boxes, config.out_size), boxes)
    return out


def degrade(key, gt, boxes=None, has_boxes=None, *, config=TRAINING):
    """A degraded training batch from a key: sample_params then apply_degradations, two programs each compiled once
    per batch shape and config (or inlined into the caller's when called under jit)."""
    _check_faces(gt, config)
    return apply_degradations(sample_params(key, gt.shape[0], config), gt, config, boxes, has_boxes)
