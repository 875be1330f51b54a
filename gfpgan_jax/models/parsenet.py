"""ParseNet (facexlib, from PSFRGAN): the face-parsing network whose parse maps give the official pipeline its
soft paste-back masks. NHWC; modules are named after the official state-dict keys (`encoder.1.conv1.conv2d` is
`encoder_1/conv1/conv2d`), so that `gfpgan_jax.inference.parsing.convert_parsenet` converts by name alone.
"""
import functools
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gfpgan_jax.models.layers import LEAKY_SLOPE, Dtype, wide_dtype

# torch's defaults for its normalisation layers and for F.normalize.
NORM_EPS = 1e-5
PIXEL_NORM_EPS = 1e-12
GROUPS = 32
PRELU_INIT = 0.25
# Which of a residual block's two convs changes the resolution: the second halves it, the first doubles it.
BLOCK_SCALES = {'down': ('none', 'down'), 'up': ('up', 'none'), 'none': ('none', 'none')}


class Parsing(NamedTuple):
    """ParseNet's outputs, in the official order."""
    logits: jax.Array  # (b, h, w, parsing_ch): per-class scores of the parse map
    image: jax.Array  # (b, h, w, 3): the restored-image head, which the paste-back does not use


class NormLayer(nn.Module):
    """The official NormLayer; its layer is named `norm` as there. Batch norm uses its running statistics (the
    network only runs in eval mode); instance norm has no running statistics, so it normalises by each image's."""
    norm_type: str = 'none'
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        norm_type = self.norm_type.lower()
        if norm_type == 'bn':
            return nn.BatchNorm(use_running_average=True, epsilon=NORM_EPS, dtype=self.dtype, name='norm')(x)
        if norm_type == 'in':
            return nn.InstanceNorm(epsilon=NORM_EPS, use_scale=False, use_bias=False, use_fast_variance=False,
                                   dtype=self.dtype, name='norm')(x)
        if norm_type == 'gn':
            return nn.GroupNorm(GROUPS, epsilon=NORM_EPS, use_fast_variance=False, dtype=self.dtype, name='norm')(x)
        if norm_type == 'pixel':
            length = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
            return x / jnp.maximum(length, PIXEL_NORM_EPS)
        if norm_type == 'none':
            return x
        # The official accepts 'layer' by name, but builds a LayerNorm without a shape, which fails.
        raise ValueError(f'norm type {self.norm_type!r} is not supported')


class PReLU(nn.Module):
    """torch.nn.PReLU with one slope per channel."""

    @nn.compact
    def __call__(self, x):
        slope = self.param('weight', nn.initializers.constant(PRELU_INIT), (x.shape[-1],))
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class ReluLayer(nn.Module):
    """The official ReluLayer; a PReLU is its `func`, as there."""
    relu_type: str = 'none'

    @nn.compact
    def __call__(self, x):
        relu_type = self.relu_type.lower()
        if relu_type == 'relu':
            return nn.relu(x)
        if relu_type == 'leakyrelu':
            return nn.leaky_relu(x, LEAKY_SLOPE)
        if relu_type == 'prelu':
            return PReLU(name='func')(x)
        if relu_type == 'selu':
            return nn.selu(x)
        if relu_type == 'none':
            return x
        raise ValueError(f'relu type {self.relu_type!r} is not supported')


def _reflect_index(i, size):
    return -i if i < 0 else min(i, 2 * (size - 1) - i)


def _border_strip(x, axis, start, stop, pads, upsample):
    """Rows start..stop-1 along `axis` (start may be negative, stop past the end) of x nearest-upsampled by
    `upsample` and reflection-padded by `pads`, whole along the other spatial axes, so that corners come out
    right too."""
    size = x.shape[axis] * upsample
    rows = [_reflect_index(i, size) // upsample for i in range(start, stop)]
    strip = jnp.concatenate([lax.slice_in_dim(x, row, row + 1, axis=axis) for row in rows], axis)
    for other, pad in zip(range(1, x.ndim - 1), pads):
        if other != axis:
            strip = jnp.repeat(strip, upsample, axis=other)
            strip = jnp.pad(strip, [(pad, pad) if a == other else (0, 0) for a in range(x.ndim)], mode='reflect')
    return strip


def _phase_taps(kernel, pad, upsample, phase):
    """For the outputs upsample * i + phase of a conv over an upsampled input: the offset from i of the first
    input row they read, and for each row they read, the kernel taps that fall on it."""
    rows = [(phase - pad + t) // upsample for t in range(kernel)]
    return rows[0], [[t for t in range(kernel) if rows[t] == row] for row in range(rows[0], rows[-1] + 1)]


def _sum_taps(rhs, axis, groups):
    return jnp.stack([sum(lax.index_in_dim(rhs, t, axis, keepdims=False) for t in group) for group in groups], axis)


def _upsampled_conv(lhs, rhs, upsample, pads, **kwargs):
    """The zero-padded stride-1 2d conv of lhs upsampled (nearest) by `upsample`, without upsampling: the
    outputs of one phase (row and column index mod `upsample`) read each input pixel through several taps, so
    they are a conv of lhs with those taps summed (for 3x3 at 2x, 4 taps instead of 9)."""
    wide = jnp.promote_types(rhs.dtype, jnp.float32)  # bf16 kernels are summed no coarser than fp32
    phases = []
    for row_phase in range(upsample):
        row_offset, row_groups = _phase_taps(rhs.shape[0], pads[0], upsample, row_phase)
        row_rhs = _sum_taps(rhs.astype(wide), 0, row_groups)
        phase_row = []
        for col_phase in range(upsample):
            col_offset, col_groups = _phase_taps(rhs.shape[1], pads[1], upsample, col_phase)
            phase_rhs = _sum_taps(row_rhs, 1, col_groups).astype(rhs.dtype)
            padding = [(-row_offset, row_offset + len(row_groups) - 1), (-col_offset, col_offset + len(col_groups) - 1)]
            phase_row.append(lax.conv_general_dilated(lhs, phase_rhs, (1, 1), padding, **kwargs))
        phases.append(jnp.stack(phase_row, 3))
    batch, height, width, _ = lhs.shape
    return jnp.stack(phases, 2).reshape(batch, height * upsample, width * upsample, -1)


def reflect_padded_conv(lhs, rhs, window_strides, padding, *, lhs_dilation, rhs_dilation, upsample=1, **kwargs):
    """`lax.conv_general_dilated` (channels-last, undilated) of lhs upsampled (nearest) by `upsample`, with its
    padding reflected instead of zero: what torch's interpolate, ReflectionPad2d and unpadded conv compute.

    XLA's CPU convolutions (YNNPACK) run an unpadded conv about 3.5 times slower than a zero-padded one of the
    same size, so padding the input by reflection and then convolving it was most of ParseNet's time. Here a
    zero-padded conv computes every output, and only those whose windows reach into the padding (a border a row
    or two wide) are computed again, from thin reflection-padded strips of the input. An upsampled input is
    never built: its conv is done by phases, with 4/9 of the multiplies for 3x3 kernels at 2x."""
    if any(d != 1 for d in (*lhs_dilation, *rhs_dilation)):
        raise ValueError('reflect_padded_conv supports no dilation')
    if any(low != high for low, high in padding):
        raise ValueError(f'reflect_padded_conv needs symmetric padding, got {padding}')
    pads = [low for low, _ in padding]
    spatial = range(1, lhs.ndim - 1)
    # The phases split the output evenly only where it keeps the upsampled input's size.
    if upsample != 1 and not all(s == 1 and k == 2 * p + 1 for s, k, p in zip(window_strides, rhs.shape, pads)):
        for axis in spatial:
            lhs = jnp.repeat(lhs, upsample, axis=axis)
        upsample = 1
    if upsample == 1:
        out = lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
    else:
        out = _upsampled_conv(lhs, rhs, upsample, pads, **kwargs)
    valid_conv = functools.partial(lax.conv_general_dilated, rhs=rhs, window_strides=window_strides, padding='VALID',
                                   **kwargs)
    for axis, stride, pad, kernel in zip(spatial, window_strides, pads, rhs.shape):
        size, outputs = lhs.shape[axis] * upsample, out.shape[axis]
        first_clean = min(-(-pad // stride), outputs)  # output o reads input rows stride * o - pad onwards
        last_clean = max(first_clean, -(-(size + pad - kernel + 1) // stride))
        spans = [(begin, end) for begin, end in ((0, first_clean), (last_clean, outputs)) if begin < end]
        strips = [_border_strip(lhs, axis, stride * begin - pad, stride * (end - 1) - pad + kernel, pads, upsample)
                  for begin, end in spans]
        # Opposite borders as wide as each other take one conv between them, as one batch.
        if len(strips) == 2 and strips[0].shape == strips[1].shape:
            fixed = jnp.split(valid_conv(jnp.concatenate(strips)), 2)
        else:
            fixed = [valid_conv(strip) for strip in strips]
        for (begin, _), values in zip(spans, fixed):
            out = lax.dynamic_update_slice_in_dim(out, values, begin, axis)
    return out


class ConvLayer(nn.Module):
    """[nearest 2x up] -> reflection pad -> conv [stride 2 for `down`] -> norm -> activation; the first three
    as `reflect_padded_conv`, which builds neither the upsampled nor the padded input."""
    features: int
    kernel_size: int = 3
    scale: str = 'none'  # 'up', 'down' or 'none'
    norm_type: str = 'none'
    relu_type: str = 'none'
    use_pad: bool = True
    use_bias: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        pad = math.ceil((self.kernel_size - 1) / 2) if self.use_pad else 0
        stride = 2 if self.scale == 'down' else 1
        conv = functools.partial(reflect_padded_conv, upsample=2 if self.scale == 'up' else 1)
        # A batch norm's shift makes a bias redundant, so the official drops it there.
        use_bias = self.use_bias and self.norm_type != 'bn'
        x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), strides=stride, padding=pad,
                    use_bias=use_bias, dtype=self.dtype, conv_general_dilated=conv, name='conv2d')(x)
        x = NormLayer(self.norm_type, self.dtype, name='norm')(x)
        return ReluLayer(self.relu_type, name='relu')(x)


class ResidualBlock(nn.Module):
    """Two ConvLayers (the second without activation) plus a shortcut, a plain 3x3 ConvLayer where the shape
    changes."""
    features: int
    relu_type: str = 'prelu'
    norm_type: str = 'bn'
    scale: str = 'none'
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.scale == 'none' and x.shape[-1] == self.features:
            identity = x
        else:
            identity = ConvLayer(self.features, 3, self.scale, dtype=self.dtype, name='shortcut_func')(x)
        first_scale, second_scale = BLOCK_SCALES[self.scale]
        out = ConvLayer(self.features, 3, first_scale, self.norm_type, self.relu_type, dtype=self.dtype,
                        name='conv1')(x)
        out = ConvLayer(self.features, 3, second_scale, self.norm_type, 'none', dtype=self.dtype, name='conv2')(out)
        return identity + out


class ParseNet(nn.Module):
    """facexlib's ParseNet; the defaults are those `init_parsing_model('parsenet')` builds (512 in and out).

    Input (b, h, w, 3) RGB in [-1, 1], h and w multiples of in_size // min_feat_size (a power of two); returns
    a `Parsing`. The sizes only set how many times the encoder halves and the decoder doubles the resolution.
    """
    in_size: int = 512
    out_size: int = 512
    min_feat_size: int = 32
    base_ch: int = 64
    parsing_ch: int = 19
    res_depth: int = 10
    relu_type: str = 'LeakyReLU'
    norm_type: str = 'bn'
    ch_range: tuple = (32, 256)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        min_ch, max_ch = self.ch_range

        def clip(channels):
            return max(min_ch, min(channels, max_ch))

        min_feat_size = min(self.in_size, self.min_feat_size)
        down_steps = int(math.log2(self.in_size // min_feat_size))
        up_steps = int(math.log2(self.out_size // min_feat_size))
        block = dict(relu_type=self.relu_type, norm_type=self.norm_type, dtype=self.dtype)

        feat = ConvLayer(self.base_ch, 3, dtype=self.dtype, name='encoder_0')(x)
        # The width doubles (or halves) on every step but is clipped into ch_range, so it is tracked unclipped.
        width = self.base_ch
        for i in range(down_steps):
            width *= 2
            feat = ResidualBlock(clip(width), scale='down', name=f'encoder_{i + 1}', **block)(feat)
        body = feat
        for i in range(self.res_depth):
            body = ResidualBlock(clip(width), name=f'body_{i}', **block)(body)
        out = feat + body
        for i in range(up_steps):
            width //= 2
            out = ResidualBlock(clip(width), scale='up', name=f'decoder_{i}', **block)(out)
        image = ConvLayer(3, dtype=self.dtype, name='out_img_conv')(out)
        logits = ConvLayer(self.parsing_ch, dtype=self.dtype, name='out_mask_conv')(out)
        wide = wide_dtype(self.dtype)
        return Parsing(logits.astype(wide), image.astype(wide))
