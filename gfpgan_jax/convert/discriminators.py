"""Official discriminator state dicts (basicsr's StyleGAN2Discriminator, GFPGAN's FacialComponentDiscriminator)
<-> our variables, strictly, and the StyleGAN2 discriminator's options read from its tensors.

basicsr's ConvLayer is an nn.Sequential of (blur,) conv, activation, whose indices we name `conv` and `activate`;
the blur holds no weights, so a downsampling layer's indices start at 1.
"""
import re

import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import ConversionError, convert, export, variable_shapes
from gfpgan_jax.models.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan_jax.models.style import stylegan_channels

_PARTS = ('conv', 'activate')
_RESBLOCK_CONV = re.compile(r'conv_body\.\d+\.conv1\.0\.weight')
_FINAL_CONV_TORCH, _FINAL_CONV_OURS = 'final_conv.0.', 'final_conv.'


class ConvLayerNames:
    """Key renames for the ConvLayers whose key prefixes match `plain` (no blur) or `downsampling` (regexes)."""

    def __init__(self, plain, downsampling):
        self._torch = [(re.compile(rf'^({prefix})\.({offset}|{offset + 1})\.'), offset)
                       for prefix, offset in ((plain, 0), (downsampling, 1))]
        self._ours = [(re.compile(rf'^({prefix})\.(conv|activate)\.'), offset)
                      for prefix, offset in ((plain, 0), (downsampling, 1))]

    def to_ours(self, key):
        for pattern, offset in self._torch:
            key = pattern.sub(lambda m, offset=offset: f'{m[1]}.{_PARTS[int(m[2]) - offset]}.', key)
        return key

    def to_torch(self, key):
        for pattern, offset in self._ours:
            key = pattern.sub(lambda m, offset=offset: f'{m[1]}.{_PARTS.index(m[2]) + offset}.', key)
        return key


_STYLEGAN2_LAYERS = ConvLayerNames(plain=r'conv_body\.0|conv_body\.\d+\.conv1|final_conv',
                                   downsampling=r'conv_body\.\d+\.(?:conv2|skip)')
_COMPONENT_LAYERS = ConvLayerNames(plain=r'conv[135]', downsampling=r'conv[24]')


def _component_to_ours(key):
    if key.startswith(_FINAL_CONV_TORCH):
        return _FINAL_CONV_OURS + key[len(_FINAL_CONV_TORCH):]
    return _COMPONENT_LAYERS.to_ours(key)


def _component_to_torch(key):
    if key.startswith(_FINAL_CONV_OURS):
        return _FINAL_CONV_TORCH + key[len(_FINAL_CONV_OURS):]
    return _COMPONENT_LAYERS.to_torch(key)


def _images(size):
    return jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)


def detect_stylegan2_discriminator(state, **fields):
    """The StyleGAN2Discriminator whose weights `state` holds: out_size, channel_multiplier and narrow read from
    the tensors; `fields` set the rest (resample_kernel, stddev_group, dtype) or override."""
    try:
        top_width = state['final_conv.0.weight'].shape[0]
        first_width = state['conv_body.0.0.weight'].shape[0]
    except KeyError as error:
        sample = ', '.join(sorted(state)[:4])
        raise ConversionError(f'not a StyleGAN2Discriminator state dict: no {error.args[0]} '
                              f'(keys such as {sample})') from None
    blocks = sum(1 for key in state if _RESBLOCK_CONV.fullmatch(key))
    out_size = 2 ** (blocks + 2)
    narrow = top_width / 512
    widths = stylegan_channels(1, narrow)
    if out_size not in widths:
        raise ConversionError(f'{blocks} residual blocks make out_size {out_size}, beyond the official '
                              f'{max(widths)}')
    # Below 64 px every width is 512 * narrow and the multiplier shapes no tensor: the official default then.
    channel_multiplier = round(first_width / widths[out_size]) if out_size >= 64 else 2
    options = dict(out_size=out_size, channel_multiplier=channel_multiplier, narrow=narrow) | fields
    return StyleGAN2Discriminator(**options)


def convert_stylegan2_discriminator(state, model: StyleGAN2Discriminator):
    """`model`'s variables from an official StyleGAN2Discriminator state dict ({key: numpy array}); strict: a
    missing, unused or misshapen key raises ConversionError."""
    # The minibatch statistic does not shape any weight; a batch of 1 traces for every stddev_group.
    shapes = variable_shapes(model, _images(model.out_size))
    return convert(state, shapes, f'StyleGAN2Discriminator(out_size={model.out_size}, channel_multiplier='
                                  f'{model.channel_multiplier}, narrow={model.narrow})',
                   rename=_STYLEGAN2_LAYERS.to_ours)


def export_stylegan2_discriminator(variables):
    """The official StyleGAN2Discriminator state dict (numpy, dtypes kept) of our variables."""
    return export(variables, rename=_STYLEGAN2_LAYERS.to_torch)


def convert_component_discriminator(state, model=FacialComponentDiscriminator()):
    """`model`'s variables from an official FacialComponentDiscriminator state dict, strictly."""
    shapes = variable_shapes(model, _images(8))
    return convert(state, shapes, 'FacialComponentDiscriminator', rename=_component_to_ours)


def export_component_discriminator(variables):
    """The official FacialComponentDiscriminator state dict (numpy, dtypes kept) of our variables."""
    return export(variables, rename=_component_to_torch)
