"""The discriminators of GFPGAN training: basicsr's StyleGAN2Discriminator for whole faces and GFPGAN's
FacialComponentDiscriminator for eyes and mouth.

NHWC, built from the equalised-lr layers of the v1 generator's U-Net (the same basicsr ConvLayer and ResBlock), so
parameters are stored as the official checkpoints store them; modules are named after the official keys up to the
nn.Sequential indices, which `gfpgan_jax.convert.discriminators` renames.
"""
import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models.gfpgan_v1 import ConvLayer, ResBlock
from gfpgan_jax.models.layers import Dtype, wide_dtype
from gfpgan_jax.models.options import RESAMPLE_KERNEL
from gfpgan_jax.models.style import stylegan_channels
from gfpgan_jax.models.stylegan2 import EqualConv2d, EqualLinear

# The official fixes the minibatch standard deviation at one statistic over all channels.
STDDEV_FEAT = 1
STDDEV_EPS = 1e-8
MIN_SIZE, MAX_SIZE = 4, 1024  # the resolutions the official channel table covers
# (name, width, downsample) of the component discriminator's five 3x3 layers, a fixed VGG-like stack.
COMPONENT_LAYERS = (('conv1', 64, False), ('conv2', 128, True), ('conv3', 128, False), ('conv4', 256, True),
                    ('conv5', 256, False))


def _check_images(x, what, size=None):
    if x.ndim != 4 or x.shape[-1] != 3 or (size is not None and x.shape[1:3] != (size, size)):
        expected = f'(b, {size}, {size}, 3)' if size else '(b, h, w, 3)'
        raise ValueError(f'{what} takes NHWC RGB images {expected}, got shape {tuple(x.shape)}')


def minibatch_stddev(x, group_size):
    """x (b, h, w, c) with StyleGAN's minibatch standard deviation appended as STDDEV_FEAT more channels.

    The batch is split into min(b, group_size) strided groups, as the official views it: sample i falls in
    subgroup i mod (b / group), whose spread (over the group, at each pixel and channel, averaged) it receives.
    """
    b, h, w, c = x.shape
    group = min(b, group_size)
    if b % group:
        raise ValueError(f'the minibatch standard deviation needs a batch divisible by its group of {group} '
                         f'(min(batch, stddev_group={group_size})), got a batch of {b}')
    # The statistic is a small difference of activations: kept at least fp32 under bf16 compute.
    grouped = x.astype(wide_dtype(x.dtype)).reshape(group, b // group, h, w, STDDEV_FEAT, c // STDDEV_FEAT)
    stddev = jnp.sqrt(jnp.var(grouped, axis=0) + STDDEV_EPS).mean(axis=(1, 2, 4))  # (b / group, STDDEV_FEAT)
    stddev = jnp.tile(stddev, (group, 1))[:, None, None, :]
    return jnp.concatenate([x, jnp.broadcast_to(stddev, (b, h, w, STDDEV_FEAT)).astype(x.dtype)], axis=-1)


class StyleGAN2Discriminator(nn.Module):
    """basicsr's StyleGAN2Discriminator: (b, out_size, out_size, 3) images -> (b, 1) realness logits.

    A 1x1 conv, residual blocks that halve the size down to 4x4, the minibatch standard deviation, a 3x3 conv and
    two equalised linear layers. The batch must be divisible by min(batch, stddev_group), as in the official.
    """
    out_size: int
    channel_multiplier: int = 2
    resample_kernel: tuple = RESAMPLE_KERNEL
    stddev_group: int = 4
    narrow: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        size = self.out_size
        if size & (size - 1) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f'out_size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {size}')
        if self.stddev_group < 1:
            raise ValueError(f'stddev_group must be at least 1, got {self.stddev_group}')
        _check_images(x, 'StyleGAN2Discriminator', size)
        channels = stylegan_channels(self.channel_multiplier, self.narrow)
        out = ConvLayer(channels[size], 1, dtype=self.dtype, name='conv_body_0')(x)
        # Residual blocks down to 4x4, each to the width of the resolution it lands on.
        for index, log_resolution in enumerate(range(size.bit_length() - 2, 1, -1), start=1):
            out = ResBlock(channels[2 ** log_resolution], resample_kernel=self.resample_kernel, dtype=self.dtype,
                           name=f'conv_body_{index}')(out)
        out = minibatch_stddev(out, self.stddev_group)
        out = ConvLayer(channels[4], 3, dtype=self.dtype, name='final_conv')(out)
        # The official flattens NCHW features: its final_linear weights expect channel-major order.
        out = out.transpose(0, 3, 1, 2).reshape(out.shape[0], -1)
        out = EqualLinear(channels[4], fused_lrelu=True, dtype=self.dtype, name='final_linear_0')(out)
        out = EqualLinear(1, dtype=self.dtype, name='final_linear_1')(out)
        return out.astype(wide_dtype(self.dtype))


class FacialComponentDiscriminator(nn.Module):
    """GFPGAN's discriminator of one facial component (left eye, right eye or mouth crops): (b, h, w, 3) ->
    (b, h / 4, w / 4, 1) patch logits.

    Returns (logits, features) as the official: with `return_feats`, features are the outputs of conv3 and conv5
    (that order), which GFPGAN's component style loss compares through Gram matrices; otherwise None.
    """
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, return_feats=False):
        _check_images(x, 'FacialComponentDiscriminator')
        feats = []
        out = x
        for name, width, downsample in COMPONENT_LAYERS:
            out = ConvLayer(width, 3, downsample=downsample, dtype=self.dtype, name=name)(out)
            if name in ('conv3', 'conv5'):
                feats.append(out)
        # The official's last layer is a ConvLayer without activation, whose conv then keeps its own bias.
        logits = EqualConv2d(1, 3, padding=1, dtype=self.dtype, name='final_conv')(out)
        return logits.astype(wide_dtype(self.dtype)), (tuple(feats) if return_feats else None)
