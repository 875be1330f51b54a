"""facexlib's ParseNet state dict -> Flax variables, strictly."""
import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import convert, variable_shapes
from gfpgan_jax.models.parsenet import ParseNet


def convert_parsenet(state, model=ParseNet()):
    """Flax variables of `model` from an official ParseNet state dict ({torch key: numpy array}); strict: a
    missing, unused or misshapen key raises `ConversionError`."""
    shapes = variable_shapes(model, jax.ShapeDtypeStruct((1, model.in_size, model.in_size, 3), jnp.float32))
    return convert(state, shapes, what='ParseNet')
