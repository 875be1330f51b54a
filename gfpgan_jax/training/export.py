"""The generator a training run has made: the EMA generator and noise images of its latest checkpoint, as the
(config, variables) pair that `files.weights.load_weights` gives for a weights file, ready for `save_converted`
(.safetensors) or `convert.generator.export_state_dict` + `save_pth` (the official layout, under `params_ema`).

Only the EMA parameters are read from the checkpoint (not the optimizer states or discriminators), onto the host,
so any machine can export a run trained on any number of devices.
"""
import contextlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gfpgan_jax.files.pth import CheckpointError
from gfpgan_jax.models.options import ModelConfig
from gfpgan_jax.training.checkpoints import NOISE, STATE, Checkpoints
from gfpgan_jax.training.trainer import CHECKPOINTS_DIR


def checkpoints_folder(path):
    """A run's folder (holding checkpoints/) or its checkpoints folder itself -> the checkpoints folder."""
    path = os.fspath(path)
    nested = os.path.join(path, CHECKPOINTS_DIR)
    return nested if os.path.isdir(nested) else path


def load_run_weights(path, step=None):
    """(ModelConfig, {'params', 'noise'}) of the EMA generator at `step` (default: the latest complete one) of
    the run in `path`; CheckpointError when there is none."""
    folder = checkpoints_folder(path)
    if not os.path.isdir(folder):
        raise CheckpointError(path, 'is not a training run\'s folder')
    with _quiet_orbax():
        checkpoints = Checkpoints(folder, read_only=True)
        try:
            step = checkpoints.latest_step() if step is None else step
            if step is None:
                raise CheckpointError(path, 'is a folder, not a weights file, nor a training run with a complete '
                                            'checkpoint')
            meta = checkpoints.restore_meta(step)
        finally:
            checkpoints.close()
        step_folder = os.path.join(folder, str(step))
        params = numpy_item(os.path.join(step_folder, STATE), 'generator_ema')
        noise = numpy_item(os.path.join(step_folder, NOISE))
    return ModelConfig.from_config(meta['model']), {'params': params, 'noise': noise}


@contextlib.contextmanager
def _quiet_orbax():
    # orbax warns that a read-only folder is read-only, and that a step's item folders have no metadata of their own.
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def numpy_item(item_folder, key=None):
    """The arrays of one saved item (a step's `state` or `noise` folder), or of its entry `key`, restored as numpy
    arrays whatever their sharding when saved."""
    checkpointer = ocp.PyTreeCheckpointer()
    with _quiet_orbax():
        tree = checkpointer.metadata(item_folder).item_metadata.tree
    if key is not None:
        tree = {key: tree[key]}
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(item_folder, args=ocp.args.PyTreeRestore(
        item=jax.tree.map(lambda _: 0, tree), restore_args=restore_args, partial_restore=key is not None))
    return restored[key] if key is not None else restored

