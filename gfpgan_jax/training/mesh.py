"""Where training runs: the processes of a (possibly multi-host) job and a device mesh with one `data` axis.

The design's data parallelism written with `jax.jit` and shardings: the global batch is split over the mesh's
`data` axis, parameters and optimizer state are replicated on every device, and XLA turns every mean over the batch
(hence every gradient) into a mean over all devices.
"""
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None, detect=False):
    """Join the multi-host job, if there is one, before JAX touches a device.

    Given a coordinator address (or num_processes > 1), the three values describe the job. With `detect` (or
    JAX_COORDINATOR_ADDRESS set), jax.distributed.initialize reads the job from the launcher's environment where it
    knows it (Cloud TPU pods, SLURM, Open MPI, ...). Otherwise this is a single process and nothing happens. On the
    CPU, processes exchange their collectives over gloo.
    """
    if coordinator_address or (num_processes or 1) > 1:
        _use_cpu_collectives()
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif detect or os.environ.get('JAX_COORDINATOR_ADDRESS'):
        _use_cpu_collectives()
        jax.distributed.initialize()


def _use_cpu_collectives():
    if os.environ.get('JAX_PLATFORMS', '').split(',')[0] in ('', 'cpu'):
        jax.config.update('jax_cpu_collectives_implementation', 'gloo')


def data_mesh(devices=None):
    """A mesh of all the job's devices (or `devices`) along DATA_AXIS. Auto axes: the shardings below are given
    to jit explicitly, and XLA places everything in between."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh):
    """The batch's first axis split over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh):
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(batch_size, mesh: Mesh, process_count=None):
    """The batch each process loads, or a ValueError saying why `batch_size` cannot be split: every device and
    every process must get the same number of faces."""
    process_count = jax.process_count() if process_count is None else process_count
    devices = mesh.devices.size
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
    if batch_size % devices:
        raise ValueError(f'the global batch_size {batch_size} does not divide evenly over the {devices} devices; '
                         f'use a multiple of {devices} (--config.batch_size=...)')
    if batch_size % process_count:
        raise ValueError(f'the global batch_size {batch_size} does not divide evenly over the {process_count} '
                         f'processes')
    return batch_size // process_count


def replicate(tree, mesh: Mesh):
    """Host values (numpy or single-device arrays, the same on every process) as global arrays replicated on
    every device of the mesh, also where the mesh spans processes."""
    sharding = replicated(mesh)

    def place(value):
        if isinstance(value, jax.Array):
            # Exactly this sharding: an equivalent one (a single device's) is another type to jit, another program.
            if value.sharding == sharding:
                return value
            value = value.addressable_data(0) if value.is_fully_replicated else value
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.tree.map(place, tree)


def to_host(tree):
    """Replicated global arrays as numpy values, read from this process's first copy (no collective needed)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)
