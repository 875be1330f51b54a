"""The weights a training run starts from: a released or saved generator to fine-tune, the official pretrained
StyleGAN2 decoder, discriminators and loss networks, or random ones.

Each source in a config is a string: '' (random: trained from scratch, or a loss network left random for smoke
tests, where config says 'random'), 'release' (the official file, downloaded into the cache on first use), or
the path of a .pth file. The generator's `init_from` is '' (random), a release version ('1', '1.2', '1.3', '1.4')
or a weights file (official .pth or converted .safetensors).
"""
import dataclasses

import jax
import jax.numpy as jnp

from gfpgan_jax.convert import pretrained
from gfpgan_jax.convert.arcface import convert_arcface
from gfpgan_jax.convert.discriminators import convert_component_discriminator, convert_stylegan2_discriminator
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.convert.vgg import convert_vgg
from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.files.releases import RELEASES, helper_weights_path, pretrained_path
from gfpgan_jax.files.weights import load_weights
from gfpgan_jax.models.arcface import INPUT_SIZE as ARCFACE_SIZE
from gfpgan_jax.training.state import COMPONENTS, FrozenVariables, Networks, init_generator

RANDOM, RELEASE = ('', 'random'), 'release'


class WeightsError(ValueError):
    """A weights source that cannot be used, said in one line."""


def _state_dict(source, release, what):
    path = helper_weights_path(release) if source == RELEASE else source
    try:
        return pretrained.read_state_dict(path)
    except CheckpointError as error:
        raise WeightsError(f'{what}: {error}') from None


def _converted(convert, state, what):
    try:
        return convert(state)
    except ConversionError as error:
        raise WeightsError(f'{what}: the weights do not fit the configured network: {error}') from None


def generator_variables(init_from, model_config, networks: Networks, decoder=''):
    """The generator's variables to start from, or None for random ones (create_train_state draws them).

    init_from: '' or a release version or a weights file, whose architecture must be the configured one.
    decoder: with a random generator, '' or 'release' (StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth, as the
    official recipe's decoder_load_path) or a .pth of the StyleGAN2 generator whose decoder to take.
    """
    if init_from:
        path = pretrained_path(init_from) if init_from in RELEASES else init_from
        try:
            config, variables = load_weights(path, input_is_latent=model_config.input_is_latent)
        except CheckpointError as error:
            raise WeightsError(f'init_from: {error}') from None
        differ = [f'{field.name} {getattr(config, field.name)!r} (configured {getattr(model_config, field.name)!r})'
                  for field in dataclasses.fields(config)
                  if getattr(config, field.name) != getattr(model_config, field.name)]
        if differ:
            raise WeightsError(f'init_from {init_from}: its architecture is not the configured model: '
                               f'{", ".join(differ)}; set --config.model.* to match')
        return variables
    if decoder in RANDOM:
        return None
    variables = jax.jit(init_generator, static_argnums=0)(networks.generator, jax.random.key(0))
    try:
        return pretrained.load_pretrained_decoder(
            model_config, variables, None if decoder == RELEASE else decoder)
    except (CheckpointError, ConversionError) as error:
        raise WeightsError(f'weights.decoder: {error}') from None


def discriminator_variables(source, networks: Networks):
    """The StyleGAN2 discriminator's params, or None for random ones."""
    if source in RANDOM:
        return None
    state = _state_dict(source, pretrained.DISCRIMINATOR_RELEASE, 'weights.discriminator')
    return _converted(lambda s: convert_stylegan2_discriminator(s, networks.discriminator),
                      state, 'weights.discriminator')['params']


def component_variables(source, networks: Networks):
    """{part: params} of the facial component discriminators, or None for random ones. A path names a folder
    holding GFPGANv1_net_d_{part}.pth files, or has a '{part}' field."""
    if source in RANDOM or networks.component is None:
        return None
    params = {}
    for part in COMPONENTS:
        release = pretrained.COMPONENT_RELEASES[part]
        path = source if source == RELEASE else source.format(part=part)
        state = _state_dict(path, release, f'weights.components ({part})')
        params[part] = _converted(lambda s: convert_component_discriminator(s, networks.component), state,
                                  f'weights.components ({part})')['params']
    return params


def frozen_variables(noise, networks: Networks, size, *, vgg, arcface, key):
    """FrozenVariables: the generator's noise, and the loss networks the objective needs from their sources
    ('random' draws them from `key`: only for tests and smoke runs, the losses then mean little)."""
    vgg_key, arcface_key = jax.random.split(key)
    vgg_variables = arcface_variables = None
    if networks.vgg is not None:
        if vgg in RANDOM:
            vgg_variables = jax.jit(networks.vgg.init)(vgg_key, jnp.zeros((1, size, size, 3)))
        else:
            state = _state_dict(vgg, pretrained.VGG_RELEASES['vgg19'], 'weights.vgg')
            vgg_variables = _converted(lambda s: convert_vgg(s, networks.vgg), state, 'weights.vgg')
    if networks.arcface is not None:
        if arcface in RANDOM:
            arcface_variables = jax.jit(networks.arcface.init)(
                arcface_key, jnp.zeros((1, ARCFACE_SIZE, ARCFACE_SIZE, 1)))
        else:
            state = _state_dict(arcface, pretrained.ARCFACE_RELEASE, 'weights.arcface')
            arcface_variables = _converted(lambda s: convert_arcface(s, networks.arcface), state, 'weights.arcface')
    return FrozenVariables(noise=noise, vgg=vgg_variables, arcface=arcface_variables)
