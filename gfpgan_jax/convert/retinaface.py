"""facexlib's RetinaFace state dicts -> Flax variables: which backbone a file holds, and the strict conversion."""
import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import ConversionError, convert, variable_shapes
from gfpgan_jax.models.retinaface import RetinaFace

# For each backbone, a key that only its state dicts have.
BACKBONE_KEYS = {'resnet50': 'body.layer1.0.conv1.weight', 'mobile0.25': 'body.stage1.0.0.weight'}


def detect_backbone(state):
    for backbone, key in BACKBONE_KEYS.items():
        if key in state:
            return backbone
    raise ConversionError(f'not a RetinaFace state dict: it has none of {", ".join(BACKBONE_KEYS.values())}')


def convert_retinaface(state):
    """(backbone, Flax variables) from a facexlib RetinaFace state dict ({key: numpy array}), strictly; keys may
    carry the 'module.' prefix of the official files."""
    state = {key.removeprefix('module.'): value for key, value in state.items()}
    backbone = detect_backbone(state)
    shapes = variable_shapes(RetinaFace(backbone), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    return backbone, convert(state, shapes, what=f'RetinaFace ({backbone})')
