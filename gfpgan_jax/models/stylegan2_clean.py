"""The clean StyleGAN2 generator (no custom CUDA ops) and its channel-split SFT variant, as in GFPGAN v1.2-v1.4.

Submodule and parameter names follow the official checkpoints (`style_convs_0/modulated_conv/kernel` for
`style_convs.0.modulated_conv.weight`) so that weight conversion is a mechanical renaming.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gfpgan_jax.models import style
from gfpgan_jax.models.layers import LEAKY_SLOPE, Dtype
from gfpgan_jax.ops.resample import upsample_bilinear_2x


def same_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding='SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def modulate_and_convolve(x, kernel, styles, demodulate, dtype, eps=1e-8, convolve=same_conv):
    """StyleGAN2's per-sample weight modulation.

    For a batch, scaling input channels by the style and output channels by the demodulation factor around one
    convolution shared by the whole batch is the same linear map as per-sample modulated kernels, and lets XLA
    use its ordinary batched convolution instead of a grouped one (6.7x slower at batch 4 on CPU, see
    bench/modulated_conv.py). A single sample has a single kernel: modulating its k*k*cin*cout numbers costs
    less than two passes over the activations. `kernel` is (k, k, cin, cout), `styles` (b, cin), both fp32;
    `convolve(x, kernel)` is any convolution linear in its kernel.
    """
    if x.shape[0] == 1:
        kernel = kernel * styles[0, None, None, :, None]
        if demodulate:
            kernel = kernel * jax.lax.rsqrt(jnp.sum(jnp.square(kernel), axis=(0, 1, 2)) + eps)
        return convolve(x.astype(dtype), kernel.astype(dtype))
    out = convolve((x * styles[:, None, None, :].astype(x.dtype)).astype(dtype), kernel.astype(dtype))
    if demodulate:
        out = out * demodulation(kernel, styles, eps)[:, None, None, :].astype(out.dtype)
    return out


def demodulation(kernel, styles, eps=1e-8):
    """(b, cout) factors that give each modulated kernel unit norm: over (k, k, cin), the sum of
    (kernel * style)^2 is styles^2 @ (kernel^2 summed over k, k)."""
    return jax.lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(kernel), axis=(0, 1)) + eps)


class ModulatedConv(nn.Module):
    """Modulated convolution without bias; `upsample` resizes the input bilinearly first."""
    out_channels: int
    kernel_size: int
    demodulate: bool = True
    upsample: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, latent):
        in_channels = x.shape[-1]
        fan_in = in_channels * self.kernel_size ** 2
        styles = nn.Dense(in_channels, bias_init=nn.initializers.ones, name='modulation')(latent)
        kernel = self.param('kernel', nn.initializers.normal(1 / math.sqrt(fan_in)),
                            (self.kernel_size, self.kernel_size, in_channels, self.out_channels))
        if self.upsample:
            x = upsample_bilinear_2x(x)
        return modulate_and_convolve(x, kernel, styles, self.demodulate, self.dtype)


class StyleConv(nn.Module):
    out_channels: int
    upsample: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, latent, noise):
        out = ModulatedConv(self.out_channels, 3, upsample=self.upsample, dtype=self.dtype,
                            name='modulated_conv')(x, latent)
        # The sqrt(2) gain keeps activations at the scale of the original, equalised-lr StyleGAN2.
        out = out * math.sqrt(2)
        out = style.inject_noise(self, out, noise)
        out = out + self.param('bias', nn.initializers.zeros, (1, 1, 1, self.out_channels)).astype(out.dtype)
        return nn.leaky_relu(out, LEAKY_SLOPE)


class ToRGB(nn.Module):
    upsample_skip: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, latent, skip=None):
        rgb = ModulatedConv(3, 1, demodulate=False, dtype=self.dtype, name='modulated_conv')(x, latent)
        if skip is not None and self.upsample_skip:
            skip = upsample_bilinear_2x(skip)
        return style.accumulate_rgb(self, rgb, skip)


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network, repeated over the batch."""
    channels: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, batch):
        const = self.param('weight', nn.initializers.normal(1.0), (1, 4, 4, self.channels))
        return jnp.broadcast_to(const.astype(self.dtype), (batch, 4, 4, self.channels))


class StyleGAN2GeneratorClean(nn.Module):
    """Clean StyleGAN2 generator; given SFT `conditions` it is the official StyleGAN2GeneratorCSFT.

    Call with a style code (b, f) or one code per layer (b, num_latent, f). Returns the image (b, s, s, 3) and
    the per-layer latents (b, num_latent, f).
    """
    out_size: int
    num_style_feat: int = 512
    num_mlp: int = 8
    channel_multiplier: int = 2
    narrow: float = 1.0
    sft_half: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, styles, conditions: Sequence = (), input_is_latent=False, noise='random'):
        # He init for leaky ReLU (a=0.2), like the official's default_init_weights.
        mlp_init = nn.initializers.variance_scaling(2 / (1 + LEAKY_SLOPE ** 2), 'fan_in', 'normal')
        mlp = [nn.Dense(self.num_style_feat, kernel_init=mlp_init, name=f'style_mlp_{i}') for i in range(self.num_mlp)]
        latent = style.latents_from_styles(
            self, styles, input_is_latent, [lambda z, d=d: nn.leaky_relu(d(z), LEAKY_SLOPE) for d in mlp])
        channels = style.stylegan_channels(self.channel_multiplier, self.narrow)
        image = style.synthesize(
            self, latent, conditions, noise, channels,
            const=ConstantInput(channels[4], dtype=self.dtype, name='constant_input'),
            style_conv=lambda name, width, upsample: StyleConv(width, upsample, dtype=self.dtype, name=name),
            to_rgb=lambda name, upsample_skip: ToRGB(upsample_skip, dtype=self.dtype, name=name))
        return image, latent
