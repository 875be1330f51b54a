"""The degradation-removal U-Net that both GFP-GAN generations share; they differ only in their layers.

It encodes the degraded face down to 4x4, maps that to the decoder's style code, and on the way back up emits,
per resolution, an SFT scale and shift for the StyleGAN2 decoder and an RGB image for the pyramid loss.
"""
import dataclasses
import numbers
from typing import Callable

import jax.numpy as jnp

from gfpgan_jax.models import style
from gfpgan_jax.models.layers import wide_dtype


@dataclasses.dataclass(frozen=True)
class UNetLayers:
    """One architecture's layers: each factory takes (name, out_channels) and returns a callable on NHWC."""
    first: Callable  # from RGB, 1x1, activated
    down: Callable  # residual block halving the resolution
    final: Callable  # 3x3 at 4x4, activated
    linear: Callable  # flattened 4x4 features -> style code
    up: Callable  # residual block doubling the resolution
    sft_scale: Callable
    sft_shift: Callable
    to_rgb: Callable  # 1x1 to the intermediate RGB image


def degradation_removal(module, config, x, layers: UNetLayers):
    """(style_code, conditions, rgbs) for the decoder; `config` holds the GFPGAN options, `module` the dtype."""
    log_size = config.out_size.bit_length() - 1
    channels = style.stylegan_channels(config.channel_multiplier, config.narrow * 0.5)
    wide = wide_dtype(module.dtype)

    feat = layers.first('conv_body_first', channels[config.out_size])(x.astype(module.dtype))
    unet_skips = []
    for i, log_res in enumerate(range(log_size, 2, -1)):
        feat = layers.down(f'conv_body_down_{i}', channels[2 ** (log_res - 1)])(feat)
        unet_skips.append(feat)
    feat = layers.final('final_conv', channels[4])(feat)

    # Flatten channel-major, as the official does on NCHW, so the linear layer's weights carry over as is.
    flat = feat.transpose(0, 3, 1, 2).reshape(feat.shape[0], -1)
    num_latent = style.num_latents(config.out_size)
    code_width = config.num_style_feat * (num_latent if config.different_w else 1)
    style_code = layers.linear('final_linear', code_width)(flat).astype(wide)
    if config.different_w:
        style_code = style_code.reshape(style_code.shape[0], num_latent, config.num_style_feat)

    conditions, rgbs = [], []
    for i, log_res in enumerate(range(3, log_size + 1)):
        out_channels = channels[2 ** log_res]
        # With sft_half the conditions cover half of the decoder's channels, which are twice the U-Net's.
        sft_channels = out_channels if config.sft_half else 2 * out_channels
        feat = layers.up(f'conv_body_up_{i}', out_channels)(feat + unet_skips[-1 - i])
        conditions.append(layers.sft_scale(f'condition_scale_{i}', sft_channels)(feat))
        conditions.append(layers.sft_shift(f'condition_shift_{i}', sft_channels)(feat))
        rgbs.append(layers.to_rgb(f'toRGB_{i}', 3)(feat).astype(wide))
    return style_code, conditions, tuple(rgbs)


def weaken_conditions(conditions, fidelity):
    """The SFT `conditions` (scale, shift, scale, shift, ...) moved from the identity modulation (scale 1, shift 0)
    towards the model's own by `fidelity`: 0 leaves the decoder driven by the style code alone, 1 (or None) is the
    model's own modulation. Written `scale * w + (1 - w)` and `shift * w` so that w = 1 gives the model's own numbers
    exactly, traced or not; None returns `conditions` as they are, for the official program unchanged.
    """
    if fidelity is None:
        return conditions
    if isinstance(fidelity, numbers.Real) and not 0 <= fidelity <= 1:
        raise ValueError(f'fidelity must be a number in [0, 1], got {fidelity!r}')
    w = jnp.asarray(fidelity, jnp.float32)
    return [condition * w.astype(condition.dtype) + (1 - w).astype(condition.dtype) if i % 2 == 0
            else condition * w.astype(condition.dtype) for i, condition in enumerate(conditions)]
