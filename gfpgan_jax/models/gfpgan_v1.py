"""GFPGANv1: the original GFP-GAN (paper, release v1), a U-Net of equalised-lr layers steering the original
StyleGAN2 decoder through spatial feature transforms."""
import math

import flax.linen as nn
import jax.numpy as jnp

from gfpgan_jax.models import unet
from gfpgan_jax.models.layers import Dtype, wide_dtype
from gfpgan_jax.models.options import ORIGINAL, RESAMPLE_KERNEL, ModelConfig
from gfpgan_jax.models.outputs import Restoration
from gfpgan_jax.models.stylegan2 import (
    EqualConv2d,
    EqualLinear,
    FusedLeakyReLU,
    StyleGAN2Generator,
    equalized_conv,
    scaled_leaky_relu,
)
from gfpgan_jax.ops.resample import upsample_bilinear_2x
from gfpgan_jax.ops.upfirdn2d import blur_before_downsample


class ConvLayer(nn.Module):
    """StyleGAN2 discriminator conv: optional FIR blur + stride-2 conv, then the fused bias + leaky ReLU.

    GFPGAN uses two forms only: `activate` with the bias inside the activation, or a bare conv without bias.
    """
    features: int
    kernel_size: int
    downsample: bool = False
    activate: bool = True
    resample_kernel: tuple = RESAMPLE_KERNEL
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.downsample:
            x = blur_before_downsample(x, self.resample_kernel, self.kernel_size)
        out = EqualConv2d(self.features, self.kernel_size, stride=2 if self.downsample else 1,
                          padding=0 if self.downsample else self.kernel_size // 2, use_bias=False,
                          dtype=self.dtype, name='conv')(x)
        return FusedLeakyReLU(name='activate')(out) if self.activate else out


class ResBlock(nn.Module):
    """Residual block that halves the resolution; the sum is scaled by 1/sqrt(2) to keep the variance."""
    out_channels: int
    resample_kernel: tuple = RESAMPLE_KERNEL
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        def layer(name, features, kernel_size, downsample=False, activate=True):
            return ConvLayer(features, kernel_size, downsample=downsample, activate=activate,
                             resample_kernel=self.resample_kernel, dtype=self.dtype, name=name)

        out = layer('conv1', x.shape[-1], 3)(x)
        out = layer('conv2', self.out_channels, 3, downsample=True)(out)
        skip = layer('skip', self.out_channels, 1, downsample=True, activate=False)(x)
        return (out + skip) / math.sqrt(2)


class ConvUpLayer(nn.Module):
    """Bilinear 2x upsample, then an equalised conv; `activate` adds the fused bias + leaky ReLU, else no bias."""
    features: int
    kernel_size: int
    activate: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        # The kernel sits on this module itself in the official checkpoints (`conv2.weight`), not on a child.
        kernel = self.param('kernel', nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features))
        out = equalized_conv(upsample_bilinear_2x(x), kernel, 1, k // 2, self.dtype)
        return FusedLeakyReLU(name='activation')(out) if self.activate else out


class ResUpBlock(nn.Module):
    """Residual block that doubles the resolution."""
    out_channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = ConvLayer(x.shape[-1], 3, dtype=self.dtype, name='conv1')(x)
        out = ConvUpLayer(self.out_channels, 3, dtype=self.dtype, name='conv2')(out)
        skip = ConvUpLayer(self.out_channels, 1, activate=False, dtype=self.dtype, name='skip')(x)
        return (out + skip) / math.sqrt(2)


class SFTBranch(nn.Module):
    """Conv, scaled leaky ReLU, conv: an SFT scale (`bias_init` 1, so it starts near identity) or shift map."""
    out_channels: int
    bias_init: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = EqualConv2d(x.shape[-1], 3, padding=1, dtype=self.dtype, name='conv1')(x)
        return EqualConv2d(self.out_channels, 3, padding=1, bias_init=self.bias_init, dtype=self.dtype,
                           name='conv2')(scaled_leaky_relu(out))


class GFPGANv1(nn.Module):
    """GFP-GAN with the original StyleGAN2 decoder, built as `config` describes (its `arch` is not read).

    `fix_decoder` and `decoder_load_path` are training matters (an optimizer mask, see
    `gfpgan_jax.models.generator.trainable_mask`, and a checkpoint merge) and so not fields here.
    Input (b, s, s, 3) in [-1, 1]; returns a `Restoration`. `fidelity` (a scalar in [0, 1], may be traced; None,
    the default, is the official output) weakens the SFT modulation towards none: see `unet.weaken_conditions`.

    With `different_w` and not `input_is_latent`, the style MLP adds its biases per feature here; the official
    fused activation would lay them along the latent axis instead (it fails on the CPU, misindexes on CUDA).
    """
    config: ModelConfig = ModelConfig(arch=ORIGINAL, channel_multiplier=1)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, noise='random', fidelity=None):
        c = self.config
        dtype, taps = self.dtype, c.resample_kernel
        style_code, conditions, rgbs = unet.degradation_removal(self, c, x, unet.UNetLayers(
            first=lambda name, c: ConvLayer(c, 1, dtype=dtype, name=name),
            down=lambda name, c: ResBlock(c, resample_kernel=taps, dtype=dtype, name=name),
            final=lambda name, c: ConvLayer(c, 3, dtype=dtype, name=name),
            linear=lambda name, c: EqualLinear(c, dtype=dtype, name=name),
            up=lambda name, c: ResUpBlock(c, dtype=dtype, name=name),
            sft_scale=lambda name, c: SFTBranch(c, bias_init=1.0, dtype=dtype, name=name),
            sft_shift=lambda name, c: SFTBranch(c, dtype=dtype, name=name),
            to_rgb=lambda name, c: EqualConv2d(c, 1, dtype=dtype, name=name)))
        decoder = StyleGAN2Generator(
            c.out_size, c.num_style_feat, c.num_mlp, c.channel_multiplier, taps, c.lr_mlp, c.narrow, c.sft_half,
            dtype=dtype, name='stylegan_decoder')
        image, latent = decoder(style_code, unet.weaken_conditions(conditions, fidelity),
                                input_is_latent=c.input_is_latent, noise=noise)
        return Restoration(image.astype(wide_dtype(dtype)), rgbs, latent)
