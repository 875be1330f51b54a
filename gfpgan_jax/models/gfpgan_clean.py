"""GFPGANv1Clean: the U-Net degradation remover whose features steer a StyleGAN2 prior (GFPGAN v1.2-v1.4)."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models import style, unet
from gfpgan_jax.models.outputs import Restoration
from gfpgan_jax.models.stylegan2_clean import StyleGAN2GeneratorClean
from gfpgan_jax.ops.resample import downsample_bilinear_2x, upsample_bilinear_2x

Dtype = Any


def _conv(features, kernel_size, name, dtype, use_bias=True):
    pad = kernel_size // 2
    return nn.Conv(features, (kernel_size, kernel_size), padding=((pad, pad), (pad, pad)), use_bias=use_bias,
                   dtype=dtype, name=name)


class ResBlock(nn.Module):
    """Residual block that halves (`down`) or doubles the resolution, with a 1x1 skip path."""
    out_channels: int
    down: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        resample = downsample_bilinear_2x if self.down else upsample_bilinear_2x
        out = nn.leaky_relu(_conv(x.shape[-1], 3, 'conv1', self.dtype)(x), 0.2)
        out = nn.leaky_relu(_conv(self.out_channels, 3, 'conv2', self.dtype)(resample(out)), 0.2)
        return out + _conv(self.out_channels, 1, 'skip', self.dtype, use_bias=False)(resample(x))


class SFTBranch(nn.Module):
    """Conv-LeakyReLU-conv producing an SFT scale or shift map."""
    out_channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = nn.leaky_relu(_conv(x.shape[-1], 3, 'conv1', self.dtype)(x), 0.2)
        return _conv(self.out_channels, 3, 'conv2', self.dtype)(out)


class GFPGANv1Clean(nn.Module):
    """GFP-GAN with the clean StyleGAN2 decoder. Options and defaults as the official class.

    `fix_decoder` is a training matter (an optimizer mask) and so not a field here; see
    `gfpgan_jax.architecture.trainable_mask`. Input (b, s, s, 3) in [-1, 1]; returns a `Restoration`.
    """
    out_size: int
    num_style_feat: int = 512
    channel_multiplier: int = 1
    num_mlp: int = 8
    input_is_latent: bool = False
    different_w: bool = False
    narrow: float = 1.0
    sft_half: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, noise='random'):
        def activated(layer):
            return lambda x: nn.leaky_relu(layer(x), 0.2)

        dtype = self.dtype
        style_code, conditions, rgbs = unet.degradation_removal(self, x, unet.UNetLayers(
            first=lambda name, c: activated(_conv(c, 1, name, dtype)),
            down=lambda name, c: ResBlock(c, down=True, dtype=dtype, name=name),
            final=lambda name, c: activated(_conv(c, 3, name, dtype)),
            linear=lambda name, c: nn.Dense(c, dtype=dtype, name=name),
            up=lambda name, c: ResBlock(c, down=False, dtype=dtype, name=name),
            sft_scale=lambda name, c: SFTBranch(c, dtype=dtype, name=name),
            sft_shift=lambda name, c: SFTBranch(c, dtype=dtype, name=name),
            to_rgb=lambda name, c: _conv(c, 1, name, dtype)))
        decoder = StyleGAN2GeneratorClean(
            self.out_size, self.num_style_feat, self.num_mlp, self.channel_multiplier, self.narrow, self.sft_half,
            dtype=dtype, name='stylegan_decoder')
        image, latent = decoder(style_code, conditions, input_is_latent=self.input_is_latent, noise=noise)
        return Restoration(image.astype(style.wide_dtype(dtype)), rgbs, latent)
