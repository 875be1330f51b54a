"""What a GFPGAN training run carries from step to step, and the networks and optimizers that act on it."""
import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from gfpgan_jax.models.arcface import ResNetArcFace
from gfpgan_jax.models.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from gfpgan_jax.models.generator import build_model, trainable_mask
from gfpgan_jax.models.options import ModelConfig
from gfpgan_jax.models.vgg import VGGFeatureExtractor
from gfpgan_jax.training import optimizers
from gfpgan_jax.training.objective import Objective

COMPONENTS = ('left_eye', 'right_eye', 'mouth')


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; a pytree, so the step can be jitted and its buffers donated.

    `step` counts the updates made (the official's `current_iter` is step + 1). The component entries are dicts
    keyed by `COMPONENTS`, empty when the recipe has no component discriminators.
    """
    step: jax.Array
    generator: Any  # params
    generator_ema: Any  # params, the exponential moving average the released models are
    generator_opt: optax.OptState
    discriminator: Any
    discriminator_opt: optax.OptState
    components: dict
    components_opt: dict


@flax.struct.dataclass
class FrozenVariables:
    """Variables that training reads but never updates: the generator's stored noise images, and the loss
    networks (None when the objective does not use them)."""
    noise: Any
    vgg: Any = None
    arcface: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class Networks:
    """The modules and optimizers of one recipe: static for `jax.jit`, hashed by identity."""
    generator: Any
    discriminator: StyleGAN2Discriminator
    component: FacialComponentDiscriminator | None
    vgg: VGGFeatureExtractor | None
    arcface: ResNetArcFace | None
    generator_optimizer: optax.GradientTransformation
    discriminator_optimizer: optax.GradientTransformation
    component_optimizer: optax.GradientTransformation | None

    @classmethod
    def build(cls, model: ModelConfig, objective: Objective, *, fix_decoder, learning_rates, milestones=(),
              gamma=0.5, discriminator_options=None, dtype=jnp.float32, generator_params=None):
        """The recipe's networks. `learning_rates`: (generator, discriminator, components); `fix_decoder` freezes
        the StyleGAN2 decoder (its mask needs the generator's parameters, from `generator_params` or an init)."""
        generator = build_model(model, dtype)
        discriminator = StyleGAN2Discriminator(model.out_size, **(discriminator_options or {}), dtype=dtype)
        if generator_params is None:
            generator_params = jax.eval_shape(lambda: init_generator(generator, jax.random.key(0))['params'])
        lr_g, lr_d, lr_c = learning_rates
        uses_components = objective.uses_components
        return cls(
            generator=generator,
            discriminator=discriminator,
            component=FacialComponentDiscriminator(dtype=dtype) if uses_components else None,
            vgg=(VGGFeatureExtractor(tuple(name for name, _ in objective.perceptual_layers), use_input_norm=True,
                                     range_norm=True, dtype=dtype)
                 if objective.perceptual_weight > 0 or objective.style_weight > 0 else None),
            arcface=ResNetArcFace(dtype=dtype) if objective.identity_weight > 0 else None,
            generator_optimizer=optimizers.generator_optimizer(
                lr_g, milestones, gamma, trainable_mask(generator_params, fix_decoder)),
            discriminator_optimizer=optimizers.discriminator_optimizer(
                lr_d, milestones, gamma, objective.net_d_reg_every),
            component_optimizer=optimizers.component_optimizer(lr_c, milestones, gamma) if uses_components else None)


def init_generator(generator, key):
    size = generator.config.out_size
    return generator.init({'params': key, 'noise': key}, jnp.zeros((1, size, size, 3)), noise='fixed')


def create_train_state(networks: Networks, key, *, generator=None, discriminator=None, components=None):
    """A fresh state: the given variables (converted official weights, say) or random ones; the EMA starts as a copy
    of the generator, as the official's `model_ema(0)`. Returns (state, the generator's noise buffers)."""
    keys = jax.random.split(key, 2 + len(COMPONENTS))
    size = networks.generator.config.out_size
    if generator is None:
        generator = init_generator(networks.generator, keys[0])
    if discriminator is None:
        discriminator = networks.discriminator.init(keys[1], jnp.zeros((1, size, size, 3)))['params']
    components = components or {}
    if networks.component is not None:
        components = {name: components.get(name) or networks.component.init(
            k, jnp.zeros((1, 80, 80, 3)))['params'] for name, k in zip(COMPONENTS, keys[2:])}
    params = generator['params']
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        generator=params,
        generator_ema=jax.tree.map(jnp.copy, params),
        generator_opt=networks.generator_optimizer.init(params),
        discriminator=discriminator,
        discriminator_opt=networks.discriminator_optimizer.init(discriminator),
        components=components,
        components_opt={name: networks.component_optimizer.init(p) for name, p in components.items()})
    return state, generator['noise']
