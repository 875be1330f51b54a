"""A training run's checkpoints: orbax-checkpoint steps under DIR/checkpoints, written asynchronously, the last N kept.

Each step's folder holds four items:
  state   the TrainState (every network, EMA and optimizer state), written as global arrays by all processes
  noise   the generator's stored noise images (part of the exported weights)
  meta    JSON: the run's configuration, its model options and the number of processes and faces per batch
  data    one JSON file per process, process_{i}-of-{n}.json: that process's data iterator position
          (FaceBatches.get_state())

orbax writes a step into a temporary folder and renames it when every process has finished, so a run killed at any
moment (during a save included) leaves its earlier steps complete, and the half-written one is deleted when the
next run opens the folder. Arrays are restored straight onto the shardings asked for, so a checkpoint written on
one device or host count restores on another.
"""
import dataclasses
import json
import os
import re
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

STATE, NOISE, META, DATA = 'state', 'noise', 'meta', 'data'
_PROCESS_FILE = re.compile(r'process_(\d+)-of-(\d+)\.json')


class ProcessJsonHandler(ocp.CheckpointHandler):
    """Each process's own JSON document, in process_{i}-of-{n}.json; restore gives every process's document,
    keyed by (i, n), so that a job of another size can still find a position to start from."""

    def save(self, directory: epath.Path, args: 'ProcessJsonSave'):
        name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
        (directory / name).write_text(json.dumps(args.item, sort_keys=True))

    def restore(self, directory: epath.Path, args: 'ProcessJsonRestore' = None):
        documents = {}
        for path in directory.iterdir():
            match = _PROCESS_FILE.fullmatch(path.name)
            if match:
                documents[int(match[1]), int(match[2])] = json.loads(path.read_text())
        return documents


@ocp.args.register_with_handler(ProcessJsonHandler, for_save=True)
@dataclasses.dataclass
class ProcessJsonSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(ProcessJsonHandler, for_restore=True)
@dataclasses.dataclass
class ProcessJsonRestore(ocp.args.CheckpointArgs):
    pass


@dataclasses.dataclass
class Restored:
    step: int
    state: Any
    noise: Any
    meta: dict
    data: dict  # {(process index, process count): FaceBatches state}


class Checkpoints:
    """The checkpoints of a run in `directory`.

    every_steps: the interval of `save` (other steps are skipped unless forced); keep: how many steps to keep (the
    newest); asynchronous: write the arrays in the background (the call returns once they are copied off the
    devices, so the next step may reuse their buffers); read_only: only read (an export), changing nothing.
    """

    def __init__(self, directory, *, every_steps=1, keep=3, asynchronous=True, read_only=False):
        self.directory = os.path.abspath(os.fspath(directory))
        self.every_steps = every_steps
        # The interval is applied here: orbax's own would also save the first step of every run.
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=0 if read_only else 1, max_to_keep=None if read_only else keep,
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=not read_only, create=not read_only, read_only=read_only)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={STATE: ocp.StandardCheckpointHandler(), NOISE: ocp.StandardCheckpointHandler(),
                           META: ocp.JsonCheckpointHandler(), DATA: ProcessJsonHandler()})

    def latest_step(self):
        """The newest complete step, or None."""
        return self._manager.latest_step()

    def all_steps(self):
        return list(self._manager.all_steps())

    def path(self, step):
        return os.path.join(self.directory, str(step))

    def save(self, step, state, noise, meta, data_state, *, force=False):
        """Start writing step `step` (all processes call this with their own `data_state`); False where the
        interval skips it. Raises if a write of an earlier step failed."""
        if step % self.every_steps and not force:
            return False
        return self._manager.save(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardSave(state), NOISE: ocp.args.StandardSave(noise), META: ocp.args.JsonSave(meta),
            DATA: ProcessJsonSave(data_state)}), force=True)

    def restore(self, step, abstract_state, abstract_noise):
        """Step `step` onto the shardings of the abstract trees (jax.ShapeDtypeStruct leaves with a sharding)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state), NOISE: ocp.args.StandardRestore(abstract_noise),
            META: ocp.args.JsonRestore(), DATA: ProcessJsonRestore()}))
        return Restored(step, restored[STATE], restored[NOISE], restored[META], restored[DATA])

    def restore_meta(self, step):
        return self._manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]

    def restore_items(self, step, **abstract_trees):
        """Some array items of step `step` (e.g. state=..., noise=...), each onto its abstract tree."""
        restored = self._manager.restore(step, args=ocp.args.Composite(**{
            name: ocp.args.StandardRestore(tree) for name, tree in abstract_trees.items()}))
        return {name: restored[name] for name in abstract_trees}

    def wait(self):
        """Block until the writes under way are complete."""
        self._manager.wait_until_finished()

    def close(self):
        self._manager.wait_until_finished()
        self._manager.close()
