"""Pieces of the StyleGAN2 decoders that do not depend on how convolutions are parameterised."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from gfpgan_jax.models.layers import wide_dtype

NOISE_MODES = ('random', 'fixed', 'none')


def num_latents(out_size):
    """Latent codes a decoder of `out_size` takes: one per style conv and ToRGB layer that reads a new one."""
    return 2 * (out_size.bit_length() - 1) - 2


def stylegan_channels(channel_multiplier, narrow):
    """Feature width at each resolution, as in the official StyleGAN2 (keys are resolutions)."""
    wide = {4: 512, 8: 512, 16: 512, 32: 512}
    scaled = {64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    channels = {res: int(c * narrow) for res, c in wide.items()}
    channels.update({res: int(c * channel_multiplier * narrow) for res, c in scaled.items()})
    return channels


def norm_style_code(z):
    # The official normalises over axis 1, which for a (b, num_latent, features) input is the latent axis,
    # not the features: kept as is so that different_w without input_is_latent matches it.
    return z * jax.lax.rsqrt(jnp.mean(z * z, axis=1, keepdims=True) + 1e-8)


def broadcast_latent(style, num_latent):
    """One latent code per decoder layer: (b, f) is repeated, (b, num_latent, f) is taken as is."""
    if style.ndim == 2:
        return jnp.repeat(style[:, None, :], num_latent, axis=1)
    if style.shape[1] != num_latent:
        raise ValueError(f'expected {num_latent} latent codes per image, got {style.shape[1]}')
    return style


def noise_for(module, mode, index, shape, dtype):
    """Noise image (b, h, w, 1) for style conv `index`, or None when noise is off.

    'random' draws from the module's 'noise' rng stream (fresh per call, the official default), 'fixed' reads the
    buffers that checkpoints store (collection 'noise'), 'none' drops the noise term.
    """
    if mode == 'none':
        return None
    if mode == 'random':
        return jax.random.normal(module.make_rng('noise'), shape, jnp.float32).astype(dtype)
    if mode == 'fixed':
        stored = module.get_variable('noise', f'noise{index}')
        if stored is None:
            raise ValueError("noise='fixed' needs the checkpoint's 'noise' collection in the variables")
        return stored.astype(dtype)
    raise ValueError(f'noise mode must be one of {NOISE_MODES}, got {mode!r}')


def declare_noise_buffers(module, out_size):
    """Create the 'noise' collection (one (1, r, r, 1) buffer per style conv) when initialising."""
    log_size = out_size.bit_length() - 1
    for index in range(2 * (log_size - 2) + 1):
        res = 2 ** ((index + 5) // 2)
        module.variable('noise', f'noise{index}', lambda r=res: jax.random.normal(
            module.make_rng('params'), (1, r, r, 1), jnp.float32))


def inject_noise(module, out, noise):
    """A style conv's noise term: its learned strength (the parameter 'weight', as the checkpoints name it) times
    the noise image; nothing when noise is off."""
    strength = module.param('weight', nn.initializers.zeros, (1,))
    return out if noise is None else out + strength.astype(out.dtype) * noise


def accumulate_rgb(module, rgb, skip):
    """A ToRGB layer's output: its level's RGB plus bias, added to the image so far (`skip`, at this level's size).

    The image accumulates over every level: it is kept at least fp32, so that bf16 rounds each level's contribution
    once instead of the running sum at each level.
    """
    out = rgb.astype(wide_dtype(module.dtype)) + module.param('bias', nn.initializers.zeros, (1, 1, 1, 3))
    return out if skip is None else out + skip


def sft_split(out, scale, shift, half):
    """Spatial feature transform. With `half`, only the second half of the channels is modulated."""
    if not half:
        return out * scale + shift
    keep, modulated = jnp.split(out, 2, axis=-1)
    return jnp.concatenate([keep, modulated * scale + shift], axis=-1)


def latents_from_styles(module, styles, input_is_latent, mlp_layers):
    """Per-layer latents (b, num_latent, f) from a style code, through the style MLP unless `input_is_latent`.

    The official checkpoints hold the MLP even where latents bypass it, so it is still built when initialising.
    """
    def map_style(z):
        z = norm_style_code(z)
        for layer in mlp_layers:
            z = layer(z)
        return z.astype(wide_dtype(module.dtype))

    if not input_is_latent:
        styles = map_style(styles)
    elif module.is_initializing():
        map_style(styles)
    return broadcast_latent(styles, num_latents(module.out_size))


def synthesize(module, latent, conditions, noise, channels, const, style_conv, to_rgb):
    """The StyleGAN2 synthesis network, shared by both decoders; they differ only in their layers.

    `style_conv(name, out_channels, upsample)` and `to_rgb(name, upsample_skip)` build those layers; after the
    first style conv of each level, the SFT `conditions` (scale, shift pairs, coarse to fine) modulate the
    features while pairs are left. Returns the image.
    """
    batch = latent.shape[0]
    log_size = module.out_size.bit_length() - 1
    if module.is_initializing():
        declare_noise_buffers(module, module.out_size)

    def noise_at(index, res):
        return noise_for(module, noise, index, (batch, res, res, 1), module.dtype)

    out = style_conv('style_conv1', channels[4], False)(const(batch), latent[:, 0], noise_at(0, 4))
    skip = to_rgb('to_rgb1', False)(out, latent[:, 1])
    for level, log_res in enumerate(range(3, log_size + 1)):
        res = 2 ** log_res
        i = 2 * level + 1
        out = style_conv(f'style_convs_{2 * level}', channels[res], True)(out, latent[:, i], noise_at(i, res))
        if i < len(conditions):
            out = sft_split(out, conditions[i - 1], conditions[i], module.sft_half)
        out = style_conv(f'style_convs_{2 * level + 1}', channels[res], False)(
            out, latent[:, i + 1], noise_at(i + 1, res))
        skip = to_rgb(f'to_rgbs_{level}', True)(out, latent[:, i + 2], skip)
    return skip
