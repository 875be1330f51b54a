"""torchvision's VGG state dict (vgg19-dcbb9e9d.pth, which basicsr's VGGFeatureExtractor loads) <-> the
variables of our VGGFeatureExtractor, strictly.

The file holds the whole network; the extractor builds `features` only up to its last requested layer. The
classifier and the later convs are therefore expected and left out by name; any other key, or a missing or
misshapen one, raises ConversionError.
"""
import jax
import jax.numpy as jnp

from gfpgan_jax.convert.strict import convert, export, variable_shapes
from gfpgan_jax.models.vgg import VGGFeatureExtractor, vgg_layer_names

# torchvision's classifier: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
CLASSIFIER_LINEARS = (0, 3, 6)


def _unused_by(model):
    """The keys of torchvision's whole network that `model` does not build."""
    names = vgg_layer_names(model.vgg_type)
    built = len(model.layers_built())
    convs = [index for index, name in enumerate(names) if name.startswith('conv') and index >= built]
    layers = [f'features.{index}' for index in convs] + [f'classifier.{index}' for index in CLASSIFIER_LINEARS]
    return {f'{layer}.{name}' for layer in layers for name in ('weight', 'bias')}


def convert_vgg(state, model: VGGFeatureExtractor):
    """`model`'s variables from torchvision's VGG state dict ({key: numpy array}) of its vgg_type; strict, but
    the layers past the last one requested, and the classifier, are left out as the official extractor does."""
    unused = _unused_by(model)
    needed = {key: array for key, array in state.items() if key not in unused}
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)  # ImageNet's size; no weight depends on it
    return convert(needed, variable_shapes(model, images), f'{model.vgg_type} up to {model.layers_built()[-1]}')


def export_vgg(variables):
    """torchvision's `features.N.*` tensors (numpy) of our variables: the layers the extractor built."""
    return export(variables)
