"""Training batches for each host: a seeded order reshuffled every epoch, this host's shard of it, faces decoded on
worker threads ahead of use, and batches placed on the device mesh as global arrays.

The order is the official one's (basicsr's distributed sampler): a permutation of all faces drawn from the seed and
the epoch, of which host h of n takes positions h, h + n, h + 2n, ...; the hosts' shards of an epoch are disjoint
and together are every face. Epochs follow each other without a break, as a step-based trainer wants.

>>> batches = FaceBatches(FolderFaces('ffhq_512', 512), host_batch_size=4, sharding=NamedSharding(mesh, P('data')),
...                       components=ComponentBoxes('FFHQ_eye_mouth_landmarks_512.pth', 512), seed=0)
>>> batch = next(batches)          # {'gt', 'boxes', 'has_boxes', 'index'}: global jax.Arrays
>>> state = batches.get_state()    # a JSON-able dict for the checkpoint; batches.set_state(state) resumes exactly
"""
import warnings

import grain
import jax
import numpy as np

from gfpgan_jax.data.components import ComponentBoxes

STATE_VERSION = 1
_NO_BOXES = np.zeros((3, 4), np.float32)


class FaceRecords:
    """Face number -> {'gt': uint8 (s, s, 3) RGB, 'boxes': float32 (3, 4), 'has_boxes': bool, 'index': int32}.

    A face that cannot be read is replaced by the next readable one (see FaceSource.read); 'index' is the number
    of the face given and 'boxes' are its boxes (zeros, and 'has_boxes' False, where there are none).
    """

    def __init__(self, source, components=None):
        self.source = source
        self.components = components

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        read, face = self.source.read(int(index))
        boxes = None if self.components is None else self.components.get(read)
        return {'gt': face, 'boxes': _NO_BOXES if boxes is None else boxes, 'has_boxes': np.bool_(boxes is not None),
                'index': np.int32(read)}


class FaceBatches:
    """An endless iterator of training batches: dicts of

        'gt'         uint8 (B, s, s, 3)    ground-truth RGB faces at the model size s
        'boxes'      float32 (B, 3, 4)     left eye, right eye, mouth boxes (x1, y1, x2, y2) in pixels of the
                                           unflipped face, as the official dataset computes them (flip them with
                                           components.flip_boxes with the faces); zeros where a face has none
        'has_boxes'  bool (B,)             whether the row's boxes are real
        'index'      int32 (B,)            the number of the face in the source

    With a sharding, B is host_batch_size x the number of hosts and the arrays are global jax.Arrays made with
    jax.make_array_from_process_local_data (this host gives its host_batch_size rows); without one, they are this
    host's numpy arrays, B = host_batch_size.

    source: a FaceSource; host_batch_size: faces per batch from this host; sharding: the batch's sharding over its
    first axis, e.g. NamedSharding(mesh, P('data')), or None; components: a ComponentBoxes, a landmark file's path,
    or None (then every `has_boxes` is False; training.step.train_step leaves the faces whose flag is False out of
    the component losses, which are 0 when no face has boxes); seed: the order's seed (0 to 2**32 - 1);
    shard_index, shard_count: this host's shard (default jax.process_index() and jax.process_count()); threads:
    decoding threads; prefetch_batches: batches decoded ahead.
    """

    def __init__(self, source, host_batch_size, sharding=None, *, components=None, seed=0, shard_index=None,
                 shard_count=None, threads=8, prefetch_batches=2):
        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
        _check_arguments(host_batch_size, seed, shard_index, shard_count, threads, prefetch_batches)
        if sharding is not None:
            _check_sharding(sharding, host_batch_size, shard_index, shard_count)
        if isinstance(components, (str, bytes)) or hasattr(components, '__fspath__'):
            components = ComponentBoxes(components, source.size)
        _warn_about_missing_boxes(components, len(source))
        self.source = source
        self.sharding = sharding
        self.has_boxes = components is not None
        self.host_batch_size = host_batch_size
        self._identity = {'faces': len(source), 'seed': seed, 'shard_index': shard_index, 'shard_count': shard_count,
                          'host_batch_size': host_batch_size}
        order = grain.MapDataset.source(FaceRecords(source, components)).shuffle(seed=seed).repeat()
        read_options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch_batches * host_batch_size)
        self._dataset = (order[shard_index::shard_count].to_iter_dataset(read_options)
                         .batch(host_batch_size, drop_remainder=True))
        self._iterator = iter(self._dataset)
        self._batches = 0

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._iterator)
        self._batches += 1
        if self.sharding is None:
            return batch
        return {key: jax.make_array_from_process_local_data(self.sharding, value) for key, value in batch.items()}

    @property
    def epoch(self):
        """The epoch (passes over all faces, all hosts together) the next batch starts in."""
        return self._batches * self.host_batch_size * self._identity['shard_count'] // self._identity['faces']

    def get_state(self):
        """Where the iterator stands, as a JSON-serialisable dict; `set_state` of it gives the same batches next."""
        return {'version': STATE_VERSION, **self._identity, 'batches': self._batches,
                'grain': self._iterator.get_state()}

    def set_state(self, state):
        """Continue from `get_state()`'s dict, of an iterator over the same faces with the same settings."""
        if not isinstance(state, dict) or state.get('version') != STATE_VERSION:
            raise ValueError(f'not a FaceBatches state of version {STATE_VERSION}: {state!r:.200}')
        differ = [f'{key} {state.get(key)!r} (now {value!r})' for key, value in self._identity.items()
                  if state.get(key) != value]
        if differ:
            raise ValueError(f'the data state was saved with other data settings: {", ".join(differ)}')
        # A fresh iterator: the old one's prefetched faces belong to its own position.
        self._iterator = iter(self._dataset)
        self._iterator.set_state(state['grain'])
        self._batches = state['batches']


def _check_arguments(host_batch_size, seed, shard_index, shard_count, threads, prefetch_batches):
    checks = [
        (isinstance(host_batch_size, int) and host_batch_size > 0, f'host_batch_size {host_batch_size!r} must be a '
                                                                   f'positive integer'),
        (isinstance(seed, int) and 0 <= seed < 2**32, f'seed {seed!r} must be an integer from 0 to 2**32 - 1'),
        (isinstance(shard_count, int) and shard_count > 0, f'shard_count {shard_count!r} must be a positive integer'),
        (isinstance(shard_index, int) and 0 <= shard_index < shard_count,
         f'shard_index {shard_index!r} must be an integer from 0 to shard_count - 1 ({shard_count - 1})'),
        (isinstance(threads, int) and threads >= 0, f'threads {threads!r} must be a non-negative integer'),
        (isinstance(prefetch_batches, int) and prefetch_batches >= 0,
         f'prefetch_batches {prefetch_batches!r} must be a non-negative integer'),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _check_sharding(sharding, host_batch_size, shard_index, shard_count):
    # Global arrays are assembled from every process's rows: the shards must be the processes.
    if (shard_index, shard_count) != (jax.process_index(), jax.process_count()):
        raise ValueError(f'with a sharding, each host must read its own shard: shard {shard_index} of {shard_count} '
                         f'is not process {jax.process_index()} of {jax.process_count()}')
    global_batch = host_batch_size * shard_count
    try:
        sharding.shard_shape((global_batch,))
    except ValueError as error:
        raise ValueError(f'the global batch of {global_batch} ({host_batch_size} per host) does not split evenly '
                         f'over the sharding {sharding}') from error


def _warn_about_missing_boxes(components, count):
    if components is None:
        warnings.warn('no facial component boxes: the component losses are off', stacklevel=3)
        return
    missing = components.missing(count)
    if missing:
        warnings.warn(f'{components.path}: {missing} of the {count} faces have no component boxes; their '
                      f'component losses are off', stacklevel=3)
