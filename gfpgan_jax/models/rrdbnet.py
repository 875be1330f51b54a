"""RRDBNet, the ESRGAN / Real-ESRGAN generator (basicsr's RRDBNet): NHWC images in [0, 1] to `scale` times larger.

Scales 2 and 1 fold the image into channels first (pixel-unshuffle by 2 or 4), so that every scale runs the same
trunk and the same two nearest x2 upsampling stages.
"""
import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models.layers import LEAKY_SLOPE, Dtype, conv

# How far scales 2 and 1 fold the image into channels so that the two x2 stages end at the wanted scale.
UNSHUFFLE_FACTORS = {4: 1, 2: 2, 1: 4}


def _conv(features, name, dtype):
    return conv(features, 3, name, dtype)


def pixel_unshuffle(x, factor):
    """(b, h * f, w * f, c) -> (b, h, w, c * f * f), channels in the order torch's pixel_unshuffle gives on NCHW:
    the input channel slowest, then the row offset within a f x f cell, then the column offset."""
    batch, height, width, channels = x.shape
    cells = x.reshape(batch, height // factor, factor, width // factor, factor, channels)
    return cells.transpose(0, 1, 3, 5, 2, 4).reshape(batch, height // factor, width // factor, -1)


def upsample_nearest_2x(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; each of the first four adds `num_grow_ch` channels to what the next sees."""
    num_feat: int = 64
    num_grow_ch: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        features = [x]
        for index in range(1, 5):
            grown = _conv(self.num_grow_ch, f'conv{index}', self.dtype)(jnp.concatenate(features, axis=-1))
            features.append(nn.leaky_relu(grown, LEAKY_SLOPE))
        out = _conv(self.num_feat, 'conv5', self.dtype)(jnp.concatenate(features, axis=-1))
        return out * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, their sum scaled by 0.2 onto the input."""
    num_feat: int
    num_grow_ch: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = x
        for name in ('rdb1', 'rdb2', 'rdb3'):
            out = ResidualDenseBlock(self.num_feat, self.num_grow_ch, self.dtype, name=name)(out)
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """Options and defaults as the official class; `scale` is 4, 2 or 1. Input (b, h, w, num_in_ch) with h and w
    divisible by the unshuffle factor (2 at scale 2, 4 at scale 1); output (b, h * scale, w * scale, num_out_ch)."""
    num_in_ch: int
    num_out_ch: int
    scale: int = 4
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.scale not in UNSHUFFLE_FACTORS:
            raise ValueError(f'RRDBNet scale must be one of {sorted(UNSHUFFLE_FACTORS)}, got {self.scale}')
        factor = UNSHUFFLE_FACTORS[self.scale]
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f'RRDBNet at scale {self.scale} needs sides divisible by {factor}, got {x.shape[1:3]}')
        feat = _conv(self.num_feat, 'conv_first', self.dtype)(pixel_unshuffle(x, factor) if factor > 1 else x)
        trunk = feat
        for index in range(self.num_block):
            trunk = RRDB(self.num_feat, self.num_grow_ch, self.dtype, name=f'body_{index}')(trunk)
        feat = feat + _conv(self.num_feat, 'conv_body', self.dtype)(trunk)
        for name in ('conv_up1', 'conv_up2'):
            feat = nn.leaky_relu(_conv(self.num_feat, name, self.dtype)(upsample_nearest_2x(feat)), LEAKY_SLOPE)
        feat = nn.leaky_relu(_conv(self.num_feat, 'conv_hr', self.dtype)(feat), LEAKY_SLOPE)
        return _conv(self.num_out_ch, 'conv_last', self.dtype)(feat)
