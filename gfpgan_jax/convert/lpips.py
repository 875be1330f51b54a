"""LPIPS weights -> Flax variables, strictly: torchvision's AlexNet/VGG16 file for the backbone (only its
`features`) and lpips' v0.1 file for the linear heads."""
import re

import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models.lpips import LPIPSNet

# lpips keeps each head in an nn.Sequential behind a Dropout: `lin0.model.1.weight`.
_HEAD = re.compile(r'lin(\d+)\.model\.\d+\.weight')
# Small enough to trace quickly, large enough for every layer of both backbones to keep a pixel.
_TRACE_SIZE = 64


def convert_lpips(backbone_state, heads_state, model=LPIPSNet()):
    """Flax variables of `model` from torchvision's backbone state dict (its `classifier` is not used) and lpips'
    heads state dict, both {torch key: numpy array}; a missing, unused or misshapen tensor raises ConversionError."""
    state = {f'backbone.{key}': array for key, array in backbone_state.items() if not key.startswith('classifier.')}
    for key, array in heads_state.items():
        match = _HEAD.fullmatch(key)
        if match is None:
            raise ConversionError(f'not an LPIPS heads state dict: unexpected key {key}')
        state[f'lin{match.group(1)}.weight'] = array
    image = jax.ShapeDtypeStruct((1, _TRACE_SIZE, _TRACE_SIZE, 3), jnp.float32)
    return convert(state, variable_shapes(model, image, image), what=f'LPIPS ({model.net})')
