"""Building the GFPGAN generator module that a `ModelConfig` describes."""
from typing import Any

import jax
import jax.numpy as jnp

from gfpgan_jax.models.gfpgan_clean import GFPGANv1Clean
from gfpgan_jax.models.gfpgan_v1 import GFPGANv1
from gfpgan_jax.models.options import CLEAN, ORIGINAL, ModelConfig


def build_model(config: ModelConfig, dtype: Any = jnp.float32):
    """The Flax module for `config`, computing in `dtype` (parameters stay fp32)."""
    if config.arch == CLEAN:
        return GFPGANv1Clean(config, dtype)
    if config.arch == ORIGINAL:
        return GFPGANv1(config, dtype)
    raise ValueError(f'unknown architecture {config.arch!r}; expected {CLEAN!r} or {ORIGINAL!r}')


def trainable_mask(params, fix_decoder=True):
    """True for the parameters an optimizer should update (use with `optax.masked`). With `fix_decoder`, as in
    the official training of GFPGAN, the pretrained StyleGAN2 decoder stays frozen."""
    return {name: jax.tree.map(lambda _, train=not (fix_decoder and name == 'stylegan_decoder'): train, subtree)
            for name, subtree in params.items()}
