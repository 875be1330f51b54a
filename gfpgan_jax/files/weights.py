"""Loading generator weights: official .pth checkpoints (read without torch) or our converted safetensors files.

A converted file stores each variable under its '/'-joined path ('params/stylegan_decoder/...',
'noise/stylegan_decoder/noise0') and the architecture as JSON metadata, so it loads with no detection step and
can be memory-mapped.
"""
import dataclasses
import os

import numpy as np
import safetensors
import safetensors.numpy
from flax import traverse_util

from gfpgan_jax.convert import generator
from gfpgan_jax.convert.strict import ConversionError
from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.pth import CheckpointError, check_finite, load_pth, select_state_dict
from gfpgan_jax.models.options import ModelConfig

FORMAT = 'gfpgan-jax/1'
TORCH_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin')


def save_converted(path, config: ModelConfig, variables):
    flat = {'/'.join(p): np.ascontiguousarray(np.asarray(a, np.float32))
            for p, a in traverse_util.flatten_dict(dict(variables)).items()}
    # Serialised in memory and written by us: safetensors' own file writer makes owner-only files.
    data = safetensors.numpy.save(flat, metadata={'format': FORMAT, 'config': config.to_json()})
    with atomic_write(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def load_converted(path, **overrides):
    """(config, variables) from a file written by `save_converted`, checked against the model it describes.
    `overrides` replace options of the stored config (input_is_latent, say)."""
    path = os.fspath(path)
    _check_is_file(path)
    try:
        with safetensors.safe_open(path, framework='np') as f:
            metadata = f.metadata() or {}
            if metadata.get('format') != FORMAT:
                raise CheckpointError(path, f'not a gfpgan-jax weights file (no {FORMAT!r} metadata)')
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, safetensors.SafetensorError, TypeError) as error:  # TypeError: a dtype numpy does not have
        raise CheckpointError(path, f'cannot read it as safetensors: {error}') from None
    config = _stored_config(path, metadata, overrides)
    for key, array in flat.items():
        if array.dtype.kind != 'f':
            raise CheckpointError(path, f'its tensor {key} is {array.dtype}, not floating point')
    check_finite(flat, path)
    variables = traverse_util.unflatten_dict({tuple(k.split('/')): a.astype(np.float32, copy=False)
                                              for k, a in flat.items()})
    try:
        generator.check_variables(config, variables)
    except ConversionError as error:
        raise CheckpointError(path, str(error)) from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:  # options no model can be built with
        raise CheckpointError(path, f'its architecture metadata {metadata["config"]} describes no model that can be '
                                    f'built ({type(error).__name__}: {error})') from None
    return config, variables


def _stored_config(path, metadata, overrides):
    """The ModelConfig of a converted file's metadata with `overrides`, each option of its field's type."""
    try:
        config = dataclasses.replace(ModelConfig.from_json(metadata['config']), **overrides)
        for field in dataclasses.fields(config):
            if not _of_the_type_of(getattr(config, field.name), field.default):
                raise ValueError(f'{field.name}={getattr(config, field.name)!r}')
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f'its architecture metadata is missing or malformed ({error!r})') from None
    return config


def _of_the_type_of(value, default):
    if isinstance(default, tuple):
        return isinstance(value, tuple) and all(map(_is_number, value))
    if isinstance(default, (bool, str)):
        return type(value) is type(default)
    return _is_number(value) and (isinstance(default, float) or isinstance(value, int))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_weights(path, **overrides):
    """(config, variables) from an official checkpoint or a converted file, told apart by their first bytes (by
    the name where those do not say). `overrides` set options that the weights do not show (input_is_latent,
    lr_mlp, resample_kernel)."""
    path = os.fspath(path)
    _check_is_file(path)
    if not _is_torch_file(path):
        return load_converted(path, **overrides)
    state = select_state_dict(load_pth(path), name=path)
    try:
        return generator.convert_state_dict(state, generator.detect_config(state, **overrides))
    except ConversionError as error:
        raise CheckpointError(path, str(error)) from None


def is_torch_checkpoint(path):
    """Whether `path` is named as a torch checkpoint (the converter writes that format to such names)."""
    return os.fspath(path).lower().endswith(TORCH_SUFFIXES)


def _check_is_file(path):
    if os.path.isdir(path):
        raise CheckpointError(path, 'is a folder, not a weights file')
    if not os.path.isfile(path):
        raise CheckpointError(path, 'cannot open it: No such file or directory')


def _is_torch_file(path):
    """A zip archive or a pickle is torch's; a safetensors header (its length, then JSON) is ours; else the name."""
    try:
        with open(path, 'rb') as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError as error:
        raise CheckpointError(path, f'cannot open it: {error.strerror}') from None
    if head[8:9] == b'{' and int.from_bytes(head[:8], 'little') <= size - 8:
        return False
    return head.startswith((b'PK', b'\x80')) or is_torch_checkpoint(path)
