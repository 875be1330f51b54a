"""ParseNet (facexlib, from PSFRGAN): the face-parsing network whose parse maps give the official pipeline its
soft paste-back masks. NHWC; modules are named after the official state-dict keys (`encoder.1.conv1.conv2d` is
`encoder_1/conv1/conv2d`), so that `gfpgan_jax.parsing.convert_parsenet` converts by name alone.
"""
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gfpgan_jax.models.style import wide_dtype

Dtype = Any
# torch's defaults for its normalisation layers and for F.normalize.
NORM_EPS = 1e-5
PIXEL_NORM_EPS = 1e-12
GROUPS = 32
LEAKY_SLOPE = 0.2
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


def upsample_nearest_2x(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ConvLayer(nn.Module):
    """[nearest 2x up] -> reflection pad -> conv [stride 2 for `down`] -> norm -> activation."""
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
        if self.scale == 'up':
            x = upsample_nearest_2x(x)
        if self.use_pad:
            pad = math.ceil((self.kernel_size - 1) / 2)
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')
        stride = 2 if self.scale == 'down' else 1
        # A batch norm's shift makes a bias redundant, so the official drops it there.
        use_bias = self.use_bias and self.norm_type != 'bn'
        x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), strides=stride, padding='VALID',
                    use_bias=use_bias, dtype=self.dtype, name='conv2d')(x)
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
