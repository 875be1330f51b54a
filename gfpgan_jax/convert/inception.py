"""pytorch-fid's InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth) -> Flax variables, strictly."""
import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import convert, variable_shapes
from gfpgan_jax.models.inception import FIDInceptionV3

INPUT_SIZE = 299


def convert_inception(state, model=FIDInceptionV3()):
    """Flax variables of `model` from the FID Inception state dict ({torch key: numpy array}); its 1008-way
    classifier `fc` is not used. A missing, unused or misshapen tensor raises ConversionError."""
    state = {key: array for key, array in state.items() if not key.startswith('fc.')}
    image = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return convert(state, variable_shapes(model, image), what='the FID InceptionV3')
