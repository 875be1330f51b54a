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
from gfpgan_jax.files.pth import CheckpointError, load_pth, select_state_dict
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
    if not os.path.isfile(path):
        raise CheckpointError(path, 'cannot open it: No such file or directory')
    try:
        with safetensors.safe_open(path, framework='np') as f:
            metadata = f.metadata() or {}
            if metadata.get('format') != FORMAT:
                raise CheckpointError(path, f'not a gfpgan-jax weights file (no {FORMAT!r} metadata)')
            flat = {tuple(k.split('/')): f.get_tensor(k) for k in f.keys()}
    except (OSError, safetensors.SafetensorError) as error:
        raise CheckpointError(path, f'cannot read it as safetensors: {error}') from None
    try:
        config = dataclasses.replace(ModelConfig.from_json(metadata['config']), **overrides)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f'its architecture metadata is missing or malformed ({error!r})') from None
    variables = traverse_util.unflatten_dict(flat)
    try:
        generator.check_variables(config, variables)
    except ConversionError as error:
        raise CheckpointError(path, str(error)) from None
    return config, variables


def load_weights(path, **overrides):
    """(config, variables) from an official checkpoint or a converted file. `overrides` set options that the
    weights do not show (input_is_latent, lr_mlp, resample_kernel)."""
    path = os.fspath(path)
    if not is_torch_checkpoint(path):
        return load_converted(path, **overrides)
    state = select_state_dict(load_pth(path), name=path)
    try:
        return generator.convert_state_dict(state, generator.detect_config(state, **overrides))
    except ConversionError as error:
        raise CheckpointError(path, str(error)) from None


def is_torch_checkpoint(path):
    return os.fspath(path).lower().endswith(TORCH_SUFFIXES)
