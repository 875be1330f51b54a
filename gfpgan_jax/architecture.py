"""Which network a checkpoint holds, and building its Flax module."""
import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp

from gfpgan_jax.models.gfpgan_clean import GFPGANv1Clean
from gfpgan_jax.models.gfpgan_v1 import GFPGANv1

CLEAN = 'clean'  # GFPGANv1Clean: v1.2, v1.3, v1.4
ORIGINAL = 'original'  # GFPGANv1 of the paper: v1


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Constructor options of the official classes. Defaults are those of the official inference tool."""
    arch: str = CLEAN
    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    num_mlp: int = 8
    input_is_latent: bool = True
    different_w: bool = True
    narrow: float = 1.0
    sft_half: bool = True
    # Original architecture only: learning-rate multiplier of the style MLP (it scales the forward pass too)
    # and the blur kernel of upfirdn2d resampling.
    lr_mlp: float = 0.01
    resample_kernel: tuple = (1, 3, 3, 1)

    @classmethod
    def from_config(cls, model_config):
        """From the `model` section of a `configs/*.py` get_config() (an ml_collections ConfigDict)."""
        fields = dict(model_config)
        fields['resample_kernel'] = tuple(fields.get('resample_kernel', cls.resample_kernel))
        return cls(**fields)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls.from_config(json.loads(text))


def build_model(config: ModelConfig, dtype: Any = jnp.float32):
    """The Flax module for `config`, computing in `dtype` (parameters stay fp32)."""
    common = dict(out_size=config.out_size, num_style_feat=config.num_style_feat,
                  channel_multiplier=config.channel_multiplier, num_mlp=config.num_mlp,
                  input_is_latent=config.input_is_latent, different_w=config.different_w, narrow=config.narrow,
                  sft_half=config.sft_half, dtype=dtype)
    if config.arch == CLEAN:
        return GFPGANv1Clean(**common)
    if config.arch == ORIGINAL:
        return GFPGANv1(lr_mlp=config.lr_mlp, resample_kernel=config.resample_kernel, **common)
    raise ValueError(f'unknown architecture {config.arch!r}; expected {CLEAN!r} or {ORIGINAL!r}')


def trainable_mask(params, fix_decoder=True):
    """True for the parameters an optimizer should update (use with `optax.masked`). With `fix_decoder`, as in
    the official training of GFPGAN, the pretrained StyleGAN2 decoder stays frozen."""
    return {name: jax.tree.map(lambda _, train=not (fix_decoder and name == 'stylegan_decoder'): train, subtree)
            for name, subtree in params.items()}
