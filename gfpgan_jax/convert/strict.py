"""State dicts of plain PyTorch conv nets <-> Flax variables, strict like `load_state_dict(strict=True)`.

For models whose Flax modules are named after the torch keys (`body.0.conv` is `body_0/conv`): a conv or linear
`weight` becomes our `kernel` (HWIO / (in, out)), a BatchNorm's `weight` our `scale`, its running statistics our
'batch_stats' collection; `export` goes back. The GFPGAN generators have their own rules in generator.py.
"""
import re

import jax
import numpy as np
from flax import traverse_util

_BATCH_STATS = {'running_mean': 'mean', 'running_var': 'var'}
_TORCH_BATCH_STATS = {ours: theirs for theirs, ours in _BATCH_STATS.items()}
_LIST_SHOWN = 8


class ConversionError(ValueError):
    """The state dict does not fit the model exactly."""


def variable_shapes(model, *inputs, **kwargs):
    """{(collection, *path): shape} of `model`'s variables for inputs like `inputs` (arrays or shape structs)."""
    shapes = jax.eval_shape(lambda *x: model.init(jax.random.key(0), *x, **kwargs), *inputs)
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes).items()}


def flax_path(key, shapes):
    *parts, name = re.sub(r'\.(\d+)(?=\.)', r'_\1', key).split('.')
    if name in _BATCH_STATS:
        return ('batch_stats', *parts, _BATCH_STATS[name])
    if name == 'weight':
        for ours in ('kernel', 'scale'):
            if ('params', *parts, ours) in shapes:
                return ('params', *parts, ours)
    return ('params', *parts, name)


def to_flax_array(array, path):
    if path[-1] == 'kernel':
        return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    return array


def torch_key(path):
    """The torch key of our variable at `path`, `flax_path`'s inverse: a module name ending in `_N` is taken for
    an nn.Sequential or ModuleList index (`body_0` is `body.0`)."""
    collection, *parts, name = path
    if collection == 'batch_stats':
        name = _TORCH_BATCH_STATS[name]
    elif name in ('kernel', 'scale'):
        name = 'weight'
    return '.'.join([re.sub(r'_(\d+)$', r'.\1', part) for part in parts] + [name])


def to_torch_array(array, path):
    if path[-1] == 'kernel':
        return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return array


def export(variables, rename=None):
    """The torch state dict ({key: numpy array}) of `variables`, `convert`'s inverse; `rename` maps `torch_key`'s
    key to torch's where the names differ. Each BatchNorm also gets torch's step counter `num_batches_tracked`,
    as 0: only training-mode updates with momentum=None read it, and `convert` ignores it."""
    rename = rename or (lambda key: key)
    state = {}
    for path, array in traverse_util.flatten_dict(dict(variables)).items():
        key = torch_key(path)
        state[rename(key)] = np.ascontiguousarray(to_torch_array(np.asarray(array), path))
        if path[0] == 'batch_stats' and path[-1] == 'mean':
            state[rename(key.rsplit('.', 1)[0] + '.num_batches_tracked')] = np.zeros((), np.int64)
    return state


def _listing(what, items):
    items = sorted(items)
    more = f' and {len(items) - _LIST_SHOWN} more' if len(items) > _LIST_SHOWN else ''
    return f'{len(items)} {what}: {", ".join(items[:_LIST_SHOWN])}{more}'


def place(state, shapes, path_of, array_of):
    """Each tensor of `state` at its variable path `path_of(key)`, as `array_of(array, path)`: (the variables
    placed, the keys with no place, {path: the shape complaint} for those that do not fit)."""
    flat, unused, mismatched = {}, [], {}
    for key, array in state.items():
        path = path_of(key)
        if path not in shapes:
            unused.append(key)
            continue
        array = array_of(np.asarray(array, np.float32), path)
        if array.shape != shapes[path]:
            mismatched[path] = f'{key} {array.shape} != {shapes[path]}'
            continue
        flat[path] = array
    return flat, unused, mismatched


def convert(state, shapes, what='the model', rename=None, ignore=('num_batches_tracked',)):
    """Variables from `state` ({torch key: numpy array}); `shapes` from `variable_shapes`. `rename` maps a torch
    key to ours where the names differ; keys ending in `ignore` hold nothing we need."""
    state = {key: array for key, array in state.items() if key.rsplit('.', 1)[-1] not in ignore}
    flat, unused, mismatched = place(state, shapes, lambda key: flax_path(rename(key) if rename else key, shapes),
                                     to_flax_array)
    missing = ['/'.join(path) for path in shapes if path not in flat and path not in mismatched]
    raise_on_problems(what, missing, unused, mismatched.values())
    return traverse_util.unflatten_dict(flat)


def raise_on_problems(what, missing, unused, mismatched):
    """ConversionError listing the missing, unused and misshapen tensors, if there are any."""
    problems = [_listing(name, items) for name, items in
                (('missing', missing), ('unused', unused), ('with the wrong shape', mismatched)) if items]
    if problems:
        raise ConversionError(f'weights do not fit {what}: ' + '; '.join(problems))
