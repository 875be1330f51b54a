"""Official GFPGANv1Clean checkpoint layout: key renames and option detection."""
import re

from gfpgan_jax.convert.shapes import generator_options
from gfpgan_jax.models.options import CLEAN, ModelConfig

# nn.Sequential indices in the official keys; ours are named.
_MLP_TORCH = re.compile(r'style_mlp\.(\d+)\.')  # Linear at 1, 3, 5, ... after NormStyleCode
_MLP_FLAX = re.compile(r'style_mlp_(\d+)\.')
_SFT_TORCH = re.compile(r'condition_(scale|shift)\.(\d+)\.([02])\.')
_SFT_FLAX = re.compile(r'condition_(scale|shift)_(\d+)\.conv([12])\.')


def rename_to_flax(key):
    key = _MLP_TORCH.sub(lambda m: f'style_mlp_{(int(m[1]) - 1) // 2}.', key)
    return _SFT_TORCH.sub(lambda m: f'condition_{m[1]}_{m[2]}.conv{1 + int(m[3]) // 2}.', key)


def rename_to_torch(key):
    key = _MLP_FLAX.sub(lambda m: f'style_mlp.{2 * int(m[1]) + 1}.', key)
    return _SFT_FLAX.sub(lambda m: f'condition_{m[1]}.{m[2]}.{2 * (int(m[3]) - 1)}.', key)


def matches(state):
    return 'conv_body_first.weight' in state and 'stylegan_decoder.style_conv1.bias' in state


def detect(state):
    return ModelConfig(arch=CLEAN, **generator_options(state))
