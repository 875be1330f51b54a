"""Official GFPGANv1 (original architecture) checkpoint layout: key renames and option detection."""
import re

from gfpgan_jax.convert.shapes import generator_options
from gfpgan_jax.models.options import ORIGINAL, ModelConfig

# nn.Sequential indices in the official keys; ours are named. A ConvLayer is (blur,) conv, activation: the
# parameterless blur shifts the indices of the ResBlock's two downsampling layers by one.
_DOWN_LAYER_TORCH = re.compile(r'(conv_body_down\.\d+\.(?:conv2|skip))\.([12])\.')
_PLAIN_LAYER_TORCH = re.compile(r'(conv_body_first|final_conv|conv_body_(?:down|up)\.\d+\.conv1)\.([01])\.')
_LAYER_FLAX = re.compile(
    r'(conv_body_first|final_conv|conv_body_down_\d+\.(?:conv1|conv2|skip)|conv_body_up_\d+\.conv1)\.(conv|activate)\.')
_DOWN_LAYER_FLAX = re.compile(r'conv_body_down_\d+\.(?:conv2|skip)$')
_LAYER_PARTS = ('conv', 'activate')
_MLP_TORCH = re.compile(r'style_mlp\.(\d+)\.')  # EqualLinear at 1..num_mlp, after NormStyleCode
_MLP_FLAX = re.compile(r'style_mlp_(\d+)\.')
_SFT_TORCH = re.compile(r'condition_(scale|shift)\.(\d+)\.([02])\.')  # conv, ScaledLeakyReLU, conv
_SFT_FLAX = re.compile(r'condition_(scale|shift)_(\d+)\.conv([12])\.')


def _layer_to_torch(match):
    offset = 1 if _DOWN_LAYER_FLAX.search(match[1]) else 0
    return f'{match[1]}.{_LAYER_PARTS.index(match[2]) + offset}.'


def rename_to_flax(key):
    key = _DOWN_LAYER_TORCH.sub(lambda m: f'{m[1]}.{_LAYER_PARTS[int(m[2]) - 1]}.', key)
    key = _PLAIN_LAYER_TORCH.sub(lambda m: f'{m[1]}.{_LAYER_PARTS[int(m[2])]}.', key)
    key = _MLP_TORCH.sub(lambda m: f'style_mlp_{int(m[1]) - 1}.', key)
    return _SFT_TORCH.sub(lambda m: f'condition_{m[1]}_{m[2]}.conv{1 + int(m[3]) // 2}.', key)


def rename_to_torch(key):
    key = _LAYER_FLAX.sub(_layer_to_torch, key)
    key = _MLP_FLAX.sub(lambda m: f'style_mlp.{int(m[1]) + 1}.', key)
    return _SFT_FLAX.sub(lambda m: f'condition_{m[1]}.{m[2]}.{2 * (int(m[3]) - 1)}.', key)


def matches(state):
    return 'conv_body_first.0.weight' in state and 'stylegan_decoder.style_conv1.activate.bias' in state


def detect(state):
    return ModelConfig(arch=ORIGINAL, **generator_options(state))
