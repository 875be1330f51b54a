"""Official PyTorch GFPGAN state dicts <-> gfpgan-jax variables, strict both ways.

Our module and parameter names mirror the official keys: `a.b.0.c` is `a/b_0/c`, a conv or linear `weight` is
our `kernel` (HWIO / (in, out) instead of OIHW / (out, in)), the stored noise buffers live in the 'noise'
collection, and each layout module renames the few nn.Sequential indices it has.
"""
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gfpgan_jax.convert import clean, original
from gfpgan_jax.convert.strict import ConversionError, place, raise_on_problems
from gfpgan_jax.models.generator import build_model
from gfpgan_jax.models.options import CLEAN, ORIGINAL, ModelConfig

_LAYOUTS = {CLEAN: clean, ORIGINAL: original}


def _layout(config):
    return _LAYOUTS[config.arch]


def detect_config(state, **overrides) -> ModelConfig:
    """The architecture and its options, read from tensor names and shapes; `overrides` set the rest."""
    for layout in _LAYOUTS.values():
        if layout.matches(state):
            try:
                return dataclasses.replace(layout.detect(state), **overrides)
            except KeyError as error:
                raise ConversionError(f'a GFPGAN generator state dict without {error.args[0]}') from None
    sample = ', '.join(sorted(state)[:4])
    raise ConversionError(f'not a GFPGAN generator state dict (keys such as {sample})')


def variable_shapes(config: ModelConfig):
    """{(collection, *path): shape} of the variables our model for `config` has."""
    model = build_model(config)
    image = jax.ShapeDtypeStruct((1, config.out_size, config.out_size, 3), jnp.float32)
    key = jax.random.key(0)
    shapes = jax.eval_shape(lambda x: model.init({'params': key, 'noise': key}, x, noise='fixed'), image)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes).items()}


def flax_path(key, layout, shapes):
    parts = re.sub(r'\.(\d+)(?=\.)', r'_\1', layout.rename_to_flax(key)).split('.')
    if len(parts) > 1 and parts[-2] == 'noises':
        return ('noise', *parts[:-2], parts[-1])
    path = ('params', *parts)
    if parts[-1] == 'weight' and path not in shapes:
        path = path[:-1] + ('kernel',)
    return path


def torch_key(path, layout):
    collection, *parts = path
    if collection == 'noise':
        parts.insert(-1, 'noises')
    if parts[-1] == 'kernel':
        parts[-1] = 'weight'
    return re.sub(r'_(\d+)(?=\.)', r'.\1', layout.rename_to_torch('.'.join(parts)))


def to_flax_array(array, path):
    if path[-1] == 'kernel':
        if array.ndim == 5:  # modulated conv weight (1, out, in, k, k)
            array = array[0]
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    if array.ndim == 4:  # (1, c, h, w) constants, biases and noise images -> (1, h, w, c)
        return array.transpose(0, 2, 3, 1)
    return array


def to_torch_array(array, path):
    if path[-1] == 'kernel':
        if array.ndim == 2:
            return array.T
        array = array.transpose(3, 2, 0, 1)
        return array[None] if path[-2] == 'modulated_conv' else array
    if array.ndim == 4:
        return array.transpose(0, 3, 1, 2)
    return array


def convert_state_dict(state, config: ModelConfig | None = None):
    """(config, variables) from an official state dict of numpy arrays. Every tensor must map, and every
    variable be filled, with matching shapes, like `load_state_dict(strict=True)`."""
    config = config or detect_config(state)
    layout = _layout(config)
    shapes = variable_shapes(config)
    flat, unused, mismatched = place(state, shapes, lambda key: flax_path(key, layout, shapes), to_flax_array)
    missing = [torch_key(path, layout) for path in shapes if path not in flat and path not in mismatched]
    raise_on_problems(_describe(config), missing, unused, mismatched.values())
    return config, traverse_util.unflatten_dict(flat)


def check_variables(config: ModelConfig, variables):
    """Raise ConversionError unless `variables` are exactly those of our model for `config`."""
    shapes = variable_shapes(config)
    flat = traverse_util.flatten_dict(dict(variables))
    raise_on_problems(
        _describe(config),
        ['/'.join(p) for p in shapes if p not in flat], ['/'.join(p) for p in flat if p not in shapes],
        [f'{"/".join(p)} {a.shape} != {shapes[p]}' for p, a in flat.items() if p in shapes and a.shape != shapes[p]])


def _describe(config):
    return f'{config.arch} out_size={config.out_size}'


def export_state_dict(config: ModelConfig, variables):
    """The official-layout state dict (numpy, dtypes kept) of our variables, noise buffers included."""
    layout = _layout(config)
    return {torch_key(path, layout): np.ascontiguousarray(to_torch_array(np.asarray(array), path))
            for path, array in traverse_util.flatten_dict(dict(variables)).items()}


DECODER = 'stylegan_decoder'


def load_decoder(config: ModelConfig, variables, state):
    """`variables` (ours, for `config`) with the StyleGAN2 decoder's parameters and stored noise taken from
    `state`, a StyleGAN2 generator state dict of the official layout (for GFPGANv1, the `params_ema` of
    StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth): the official `decoder_load_path`. Strict both ways: every
    decoder variable must be filled and every tensor used, with matching shapes."""
    check_variables(config, variables)
    layout = _layout(config)
    # Checked to be exactly our model's, the variables give the decoder's shapes without tracing the model again.
    merged = traverse_util.flatten_dict(dict(variables))
    prefix = DECODER + '.'
    decoder_shapes = {path: array.shape for path, array in merged.items() if path[1] == DECODER}
    flat, unused, mismatched = place({prefix + key: array for key, array in state.items()}, decoder_shapes,
                                     lambda key: flax_path(key, layout, decoder_shapes), to_flax_array)
    missing = [torch_key(path, layout) for path in decoder_shapes if path not in flat and path not in mismatched]
    raise_on_problems(f'the decoder of {_describe(config)}', [key.removeprefix(prefix) for key in missing],
                      [key.removeprefix(prefix) for key in unused],
                      [problem.removeprefix(prefix) for problem in mismatched.values()])
    merged.update(flat)
    return traverse_util.unflatten_dict(merged)
