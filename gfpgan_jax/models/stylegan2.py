"""The original StyleGAN2 generator (equalised learning rate, FIR resampling) and its SFT variant of GFPGAN v1.

Parameters are stored as the official checkpoints store them, N(0, 1) at init, and scaled by He's constant at
run time (equalised learning rate), so converted weights are used as is and optimisers see the same landscape.
Names follow the official state-dict keys (`style_convs_0/modulated_conv/kernel` for
`style_convs.0.modulated_conv.weight`).
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gfpgan_jax.models import style
from gfpgan_jax.models.layers import LEAKY_SLOPE, Dtype, wide_dtype
from gfpgan_jax.models.options import RESAMPLE_KERNEL
from gfpgan_jax.models.stylegan2_clean import ConstantInput, modulate_and_convolve
from gfpgan_jax.ops.upfirdn2d import blur_after_upsample, upsample_fir


def scaled_leaky_relu(x):
    # The sqrt(2) gain restores the variance that the leaky ReLU halves.
    return nn.leaky_relu(x, LEAKY_SLOPE) * math.sqrt(2)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, then the scaled leaky ReLU (basicsr's fused CUDA op)."""

    @nn.compact
    def __call__(self, x):
        bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
        return scaled_leaky_relu(x + bias.astype(x.dtype))


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate.

    The kernel is stored divided by `lr_mul` and the bias undivided; both are multiplied back at run time, so a
    small `lr_mul` slows their effective learning rate by that factor. `fused_lrelu` adds the bias inside the
    scaled leaky ReLU.
    """
    features: int
    bias_init: float = 0.0
    lr_mul: float = 1.0
    fused_lrelu: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1]
        kernel = self.param('kernel', nn.initializers.normal(1 / self.lr_mul), (in_features, self.features))
        bias = self.param('bias', nn.initializers.constant(self.bias_init), (self.features,))
        scale = self.lr_mul / math.sqrt(in_features)
        out = x.astype(self.dtype) @ (kernel * scale).astype(self.dtype)
        out = out + (bias * self.lr_mul).astype(self.dtype)
        return scaled_leaky_relu(out) if self.fused_lrelu else out


def equalized_conv(x, kernel, stride, padding, dtype):
    """Conv with the stored (k, k, cin, cout) kernel scaled by 1/sqrt(fan_in); `padding` zeros on every side."""
    k, _, in_channels, _ = kernel.shape
    scale = 1 / math.sqrt(in_channels * k * k)
    return jax.lax.conv_general_dilated(
        x.astype(dtype), (kernel * scale).astype(dtype), window_strides=(stride, stride),
        padding=((padding, padding),) * 2, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate."""
    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    bias_init: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param('kernel', nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features))
        out = equalized_conv(x, kernel, self.stride, self.padding, self.dtype)
        if self.use_bias:
            out = out + self.param('bias', nn.initializers.constant(self.bias_init), (self.features,)).astype(
                out.dtype)
        return out


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated conv without bias.

    With `upsample` it is a stride-2 transposed conv followed by the FIR blur, which doubles the size.
    """
    out_channels: int
    kernel_size: int
    demodulate: bool = True
    upsample: bool = False
    resample_kernel: tuple = RESAMPLE_KERNEL
    dtype: Dtype = jnp.float32
    eps: float = 1e-8

    @nn.compact
    def __call__(self, x, latent):
        in_channels = x.shape[-1]
        k = self.kernel_size
        styles = EqualLinear(in_channels, bias_init=1.0, dtype=wide_dtype(self.dtype),
                             name='modulation')(latent)
        kernel = self.param('kernel', nn.initializers.normal(1.0), (k, k, in_channels, self.out_channels))
        kernel = kernel / math.sqrt(in_channels * k * k)
        if not self.upsample:
            return modulate_and_convolve(x, kernel, styles, self.demodulate, self.dtype, self.eps)

        out = modulate_and_convolve(x, kernel, styles, self.demodulate, self.dtype, self.eps,
                                    convolve=transposed_conv_stride_2)
        return blur_after_upsample(out, self.resample_kernel, k)  # 2h + k - 2 back to 2h


def transposed_conv_stride_2(x, kernel):
    """torch's conv_transpose2d (stride 2, no padding): a conv of the 2x zero-stuffed input, padded by k - 1,
    with the spatially flipped kernel; output size 2h + k - 2."""
    k = kernel.shape[0]
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], window_strides=(1, 1),
                                        padding=((k - 1, k - 1),) * 2, lhs_dilation=(2, 2),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class StyleConv(nn.Module):
    """Modulated 3x3 conv, noise injection, then the fused bias + scaled leaky ReLU."""
    out_channels: int
    upsample: bool = False
    resample_kernel: tuple = RESAMPLE_KERNEL
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, latent, noise):
        out = ModulatedConv2d(self.out_channels, 3, upsample=self.upsample, resample_kernel=self.resample_kernel,
                              dtype=self.dtype, name='modulated_conv')(x, latent)
        return FusedLeakyReLU(name='activate')(style.inject_noise(self, out, noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB plus the previous level's image, FIR-upsampled (`upsample_skip`)."""
    upsample_skip: bool = True
    resample_kernel: tuple = RESAMPLE_KERNEL
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, latent, skip=None):
        rgb = ModulatedConv2d(3, 1, demodulate=False, dtype=self.dtype, name='modulated_conv')(x, latent)
        if skip is not None and self.upsample_skip:
            skip = upsample_fir(skip, self.resample_kernel)
        return style.accumulate_rgb(self, rgb, skip)


class StyleGAN2Generator(nn.Module):
    """Original StyleGAN2 generator; given SFT `conditions` it is GFPGAN v1's StyleGAN2GeneratorSFT.

    Call with a style code (b, f) or one code per layer (b, num_latent, f). Returns the image (b, s, s, 3) and
    the per-layer latents (b, num_latent, f).
    """
    out_size: int
    num_style_feat: int = 512
    num_mlp: int = 8
    channel_multiplier: int = 2
    resample_kernel: tuple = RESAMPLE_KERNEL
    lr_mlp: float = 0.01
    narrow: float = 1.0
    sft_half: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, styles, conditions: Sequence = (), input_is_latent=False, noise='random'):
        mlp = [EqualLinear(self.num_style_feat, lr_mul=self.lr_mlp, fused_lrelu=True,
                           dtype=wide_dtype(self.dtype), name=f'style_mlp_{i}')
               for i in range(self.num_mlp)]
        latent = style.latents_from_styles(self, styles, input_is_latent, mlp)
        channels = style.stylegan_channels(self.channel_multiplier, self.narrow)
        image = style.synthesize(
            self, latent, conditions, noise, channels,
            const=ConstantInput(channels[4], dtype=self.dtype, name='constant_input'),
            style_conv=lambda name, width, upsample: StyleConv(
                width, upsample=upsample, resample_kernel=self.resample_kernel, dtype=self.dtype, name=name),
            to_rgb=lambda name, upsample_skip: ToRGB(
                upsample_skip, resample_kernel=self.resample_kernel, dtype=self.dtype, name=name))
        return image, latent
