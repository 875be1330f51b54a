"""PyTorch checkpoint files (`.pth`): reading them without torch, and writing the official layout.

A `.pth` file is a pickle, and unpickling calls whatever the file names, so loading an untrusted one with plain
`pickle` runs its code. `load_pth` resolves only the few names that tensors, state dicts and numpy number scalars
are made of, each to a function of this module, and refuses the file at the first other name, before anything of it
has run.

It reads both formats of `torch.save`: the zip archive of torch 1.6 on, and the legacy one before it, pickles in a
row followed by the storages' bytes.
"""
import collections
import io
import math
import os
import pickle
import sys
import types
import zipfile
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import ml_dtypes
import numpy as np

from gfpgan_jax.files.atomic import atomic_write

# torch.save's format before torch 1.6 opens with a pickle of this number: a 10-byte LONG1 from protocol 2 on (after
# the PROTO and FRAME opcodes), a decimal LONG before.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_LONG1 = b'\x8a\x0a' + _LEGACY_MAGIC_NUMBER.to_bytes(10, 'little')
_LEGACY_MAGIC_LONG = b'L%dL\n' % _LEGACY_MAGIC_NUMBER
_LEGACY_PROTOCOL_VERSION = 1001


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, not a torch checkpoint, damaged, or holding no state dict."""

    def __init__(self, path, detail):
        super().__init__(os.fspath(path), detail)
        self.path = os.fspath(path)
        self.detail = detail

    def __str__(self):
        return _one_line(f'{self.path}: {self.detail}')


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle asks for something that is not part of a tensor or a state dict; none of it ran."""

    def __str__(self):
        return _one_line(f'{self.path}: refuses to load: {self.detail}')


def _one_line(text):
    return ' '.join(text.splitlines())


def load_pth(path) -> dict:
    """The object a `torch.save` file holds, with tensors as numpy arrays and ordered dicts as dicts.

    bfloat16 tensors come back as `ml_dtypes.bfloat16` arrays. Each storage is read once; a tensor spanning its
    whole storage is that array, while the other views of a shared storage (slices, transposes) are copies.
    """
    try:
        file = open(path, 'rb')
    except OSError as exc:
        raise CheckpointError(path, f'cannot open it: {exc.strerror}') from None
    with file:
        head = file.read(512)
        file.seek(0)
        if head.startswith(_LEGACY_MAGIC_LONG) or _LEGACY_MAGIC_LONG1 in head[:32]:
            return _load_legacy(file, path)
        try:
            archive = zipfile.ZipFile(file)
        except zipfile.BadZipFile:
            raise CheckpointError(path, _why_not_zip(head)) from None
        with archive:
            return _load_zip(archive, path)


def _why_not_zip(head):
    if not head:
        return 'is empty'
    if head.startswith(b'PK'):
        return 'is a truncated or damaged zip archive'
    if head[257:262] == b'ustar':
        return 'is a tar archive, the checkpoint format of torch before 0.1.10, which is not supported'
    return 'is not a torch checkpoint (not a zip archive)'


def _load_zip(archive, path):
    pickles = [name for name in archive.namelist() if name.count('/') == 1 and name.endswith('/data.pkl')]
    if len(pickles) != 1:
        raise CheckpointError(path, 'is a zip archive but not a torch checkpoint (no single <name>/data.pkl in it)')
    prefix = pickles[0][:-len('data.pkl')]
    storages = _ZipStorages(archive, prefix, path)
    unpickler = _Unpickler(io.BytesIO(storages.read_member('data.pkl')), path, storages.load)
    try:
        return _plain(unpickler.load(), {})
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged or hand-made pickle can fail in any of the unpickler's many ways
        raise CheckpointError(path, f'data.pkl is malformed ({type(exc).__name__}: {exc})') from exc


def _load_legacy(file, path):
    """Reads the pickles one after another from `file`: magic number, protocol version, sys info, the object, and
    the keys of its storages, whose bytes then follow in that order."""
    storages = _LegacyStorages(file, path)
    try:
        if _Unpickler(file, path).load() != _LEGACY_MAGIC_NUMBER:
            raise CheckpointError(path, 'is not a torch checkpoint (no torch magic number where a legacy one has it)')
        if _Unpickler(file, path).load() != _LEGACY_PROTOCOL_VERSION:
            raise CheckpointError(path, 'is a legacy torch checkpoint of a protocol other than the known '
                                        f'{_LEGACY_PROTOCOL_VERSION}')
        # The sys info gives the writer's byte order and C type sizes, neither of which matters: the storages are
        # little-endian whatever the writer, as torch reads them.
        _Unpickler(file, path).load()
        obj = _Unpickler(file, path, storages.load).load()
        storages.fill(_Unpickler(file, path).load())
        return _plain(obj, {})
    except CheckpointError:
        raise
    except Exception as exc:  # as in _load_zip, and a file cut short fails wherever it ends
        raise CheckpointError(
            path, f'is a legacy torch checkpoint that is truncated or malformed ({type(exc).__name__}: {exc})') from exc


class _Unpickler(pickle.Unpickler):

    def __init__(self, file, path, load_storage=None):
        super().__init__(file)
        self._path = path
        self._load_storage = load_storage

    def find_class(self, module, name):
        try:
            allowed = _ALLOWED_GLOBALS[module, name]
        except KeyError:
            wanted = f'{module}.{name}'
            if not wanted.isprintable():
                wanted = ascii(wanted)
            raise UnsafeCheckpointError(
                self._path, f'the pickle asks for {wanted}, which is not a tensor or a state dict') from None
        # A fresh object per request: the pickle's BUILD opcode may set attributes on what it gets, which must
        # not outlive this file and change how later files load.
        if isinstance(allowed, _StorageType):
            return _StorageType(allowed.dtype)
        if isinstance(allowed, types.FunctionType):
            return lambda *args: allowed(*args)
        return allowed

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise pickle.UnpicklingError('a pickle other than the main one refers to a storage')
        return self._load_storage(pid)


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stands in for a `torch.*Storage` class: an instance, not a class, so the pickle cannot instantiate it."""
    dtype: np.dtype


class _StateDict(dict):
    """Stands in for `collections.OrderedDict` while unpickling; `_plain` turns it into a dict."""

    def __setstate__(self, state):
        # A module's state_dict() carries `_metadata` (per-module format versions) as an attribute; weights don't
        # need it, and a dict cannot hold attributes.
        pass


class _Storages:
    """The storages a checkpoint's pickle names, each made once: the tensors that share a storage share its array."""

    def __init__(self, path):
        self._path = path
        self._arrays = {}

    def _storage(self, key, dtype, numel):
        array = self._arrays.get(key)
        if array is None:
            array = self._arrays[key] = self._new(key, dtype, numel)
        if array.dtype != dtype or array.size != numel:
            raise CheckpointError(self._path, f'its pickle uses storage {key} with two different types or sizes')
        return array


class _ZipStorages(_Storages):
    """The archive's storage records, each read when the pickle first names it."""

    def __init__(self, archive, prefix, path):
        super().__init__(path)
        self._archive = archive
        self._prefix = prefix
        has_order = prefix + 'byteorder' in archive.namelist()
        order = self.read_member('byteorder').decode('ascii', 'replace') if has_order else 'little'
        if order not in ('little', 'big'):
            raise CheckpointError(path, f'its byteorder record says {order!r}, not little or big')
        self._swap = order != sys.byteorder

    def read_member(self, name):
        try:
            return self._archive.read(self._prefix + name)
        except KeyError:
            raise CheckpointError(self._path, f'the record {name} is missing from the archive') from None
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as exc:
            raise CheckpointError(self._path, f'cannot read the record {name}: {exc}') from None

    def load(self, pid):
        match pid:
            case ('storage', _StorageType(dtype=dtype), str(key), _, int(numel)):
                return self._storage(key, dtype, numel)
        raise CheckpointError(self._path, 'data.pkl refers to something other than a torch storage')

    def _new(self, key, dtype, numel):
        name = f'data/{key}'
        try:
            info = self._archive.getinfo(self._prefix + name)
        except KeyError:
            raise CheckpointError(self._path, f'the record {name} is missing from the archive') from None
        if info.file_size != numel * dtype.itemsize:
            raise CheckpointError(
                self._path, f'the record {name} holds {info.file_size} bytes, not {numel} items of {dtype.itemsize}')
        # Reading into an array of our own keeps it writable, as torch's tensors are, with no bytes object beside it.
        array = np.empty(numel, dtype)
        try:
            with self._archive.open(info) as member:
                got = member.readinto(array.view(np.uint8))
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as exc:
            raise CheckpointError(self._path, f'cannot read the record {name}: {exc}') from None
        if got != info.file_size:
            raise CheckpointError(self._path, f'the record {name} ends early')
        if self._swap:
            _swap_bytes(array)
        return array


class _LegacyStorages(_Storages):
    """A legacy file's storages: made empty as its pickle names them, and filled from the records that follow it."""

    def __init__(self, file, path):
        super().__init__(path)
        self._file = file
        # Every storage's bytes are in the file, so the file's size bounds them: a damaged or hand-made pickle
        # naming more cannot make a small file allocate gigabytes.
        self._bytes_left = os.fstat(file.fileno()).st_size

    def load(self, pid):
        match pid:
            case ('storage', _StorageType(dtype=dtype), str(key), _, int(numel), None):
                return self._storage(key, dtype, numel)
            case ('storage', _StorageType(dtype=dtype), str(key), _, int(numel), (_, int(start), int(length))):
                # A slice of storage `key`, as early torch versions saved storage slices; torch counts in items.
                storage = self._storage(key, dtype, numel)
                if not 0 <= start <= start + length <= numel:
                    raise CheckpointError(self._path, f'its pickle slices items {start} to {start + length} '
                                                      f'out of storage {key} of {numel} items')
                return storage[start:start + length]
        raise CheckpointError(self._path, 'its pickle refers to something other than a torch storage')

    def _new(self, key, dtype, numel):
        if numel * dtype.itemsize > self._bytes_left:
            raise CheckpointError(self._path, 'is truncated or malformed: its pickle names storages of more bytes '
                                              'than the file holds')
        self._bytes_left -= numel * dtype.itemsize
        return np.empty(numel, dtype)

    def fill(self, keys):
        """Reads the storages' records in the order of `keys`: each an int64 count of items, then the items."""
        if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)
                and sorted(keys) == sorted(self._arrays)):
            raise CheckpointError(self._path, 'its list of storages is not the storages its pickle uses')
        for key in keys:
            array = self._arrays[key]
            count = self._file.read(8)
            if len(count) < 8:
                raise CheckpointError(self._path, f'is truncated: it ends before the record of storage {key}')
            count = int.from_bytes(count, 'little', signed=True)
            if count != array.size:
                raise CheckpointError(self._path, f'its record of storage {key} holds {count} items, '
                                                  f'not the {array.size} its pickle says')
            if self._file.readinto(array.view(np.uint8)) != array.nbytes:
                raise CheckpointError(self._path, f'is truncated: the record of storage {key} ends early')
            if sys.byteorder == 'big':
                _swap_bytes(array)
        if self._file.read(1):
            raise CheckpointError(self._path, 'has bytes after the record of its last storage')


def _swap_bytes(array):
    if array.itemsize > 1:
        array.view(f'u{array.itemsize}').byteswap(inplace=True)


class _Tensor(NamedTuple):
    """A tensor as its pickle gives it; `_plain` makes it an array once all storages hold their data, which a legacy
    file stores after the pickle. Being a tuple, the pickle cannot change it once built."""
    storage: object
    offset: object
    size: object
    stride: object


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _Tensor(storage, storage_offset, size, stride)


def _array(tensor):
    storage, storage_offset, size, stride = tensor
    if not (isinstance(storage, np.ndarray) and storage.ndim == 1 and storage.flags.c_contiguous):
        raise ValueError('a tensor is built from something other than a storage')
    if not (_is_index(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(map(_is_index, size + stride))):
        raise ValueError(f'a tensor has an invalid layout: offset {storage_offset!r}, size {size!r}, stride {stride!r}')
    numel = math.prod(size)
    if numel == 0:
        return np.empty(size, storage.dtype)
    last = storage_offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= storage.size:
        raise ValueError(f'a tensor of size {size} and stride {stride} at offset {storage_offset} '
                         f'reaches past the end of its storage of {storage.size} items')
    # A legacy storage slice shares its memory with the storage it slices, so a tensor spanning it is a copy too.
    if storage.base is None and storage_offset == 0 and numel == storage.size and stride == _contiguous_strides(size):
        return storage.reshape(size)
    byte_strides = tuple(step * storage.itemsize for step in stride)
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size, byte_strides, writeable=False)
    return view.copy()


def _is_index(value):
    return isinstance(value, int) and value >= 0


def _contiguous_strides(size):
    strides = []
    step = 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


_STORAGE_DTYPES = {
    'FloatStorage': np.float32,
    'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16,
    'DoubleStorage': np.float64,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ShortStorage': np.int16,
    'CharStorage': np.int8,
    'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


class _NumpyDtype:
    """Stands in for a `numpy.dtype` while unpickling a numpy scalar: a plain number type (bool, integer, float,
    complex) and its byte order; nothing that could hold Python objects or fields."""

    def __init__(self, name):
        dtype = np.dtype(name) if isinstance(name, str) and name.isalnum() else None
        if dtype is None or dtype.kind not in 'biufc':
            raise pickle.UnpicklingError(f'a numpy scalar of type {name!r}, which is not a plain number type')
        self.dtype = dtype

    def __setstate__(self, state):
        # numpy's state: (version, byte order, subarray, names, fields, ...); a plain type has none of the three.
        if not (isinstance(state, tuple) and len(state) >= 5 and state[1] in ('<', '>', '|', '=')
                and state[2:5] == (None, None, None)):
            raise pickle.UnpicklingError('a numpy scalar whose type is not a plain number type')
        if state[1] in ('<', '>'):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(name, align=False, copy=False):
    return _NumpyDtype(name)


def _numpy_scalar(dtype, data):
    if not (isinstance(dtype, _NumpyDtype) and isinstance(data, bytes) and len(data) == dtype.dtype.itemsize):
        raise pickle.UnpicklingError('a numpy scalar that is not a plain number of its type\'s size')
    return np.frombuffer(data, dtype.dtype)[0]


def _latin1_bytes(text, encoding):
    # Pickle protocol 2 (torch.save's) writes a bytes object as `_codecs.encode(its bytes as str, 'latin1')`.
    if not (isinstance(text, str) and encoding == 'latin1'):
        raise pickle.UnpicklingError('_codecs.encode is allowed only to make bytes from latin-1 text')
    return text.encode('latin1')


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): _StateDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch', 'Size'): tuple,
    **{('torch', name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
    # Numpy number scalars, as in the official FFHQ_eye_mouth_landmarks_512.pth (lists of numpy.float64); numpy 2
    # pickles them from numpy._core, numpy 1 from numpy.core.
    ('numpy', 'dtype'): _numpy_dtype,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('_codecs', 'encode'): _latin1_bytes,
}


def _plain(obj, done):
    """`obj` with every tensor an array and every dict (the `_StateDict` stand-ins included) a plain dict, in lists
    and tuples too.

    `done` maps the ids of tensors and containers already converted to their copies, which keeps shared and
    self-containing containers as they were, and a tensor the pickle gives twice one array.
    """
    if id(obj) in done:
        return done[id(obj)]
    if isinstance(obj, _Tensor):
        out = done[id(obj)] = _array(obj)
        return out
    if isinstance(obj, dict):
        out = done[id(obj)] = {}
        for key, value in obj.items():
            out[key] = _plain(value, done)
        return out
    if isinstance(obj, list):
        out = done[id(obj)] = []
        out.extend(_plain(value, done) for value in obj)
        return out
    if isinstance(obj, tuple):
        return tuple(_plain(value, done) for value in obj)
    return obj


def select_state_dict(checkpoint, name='checkpoint') -> dict:
    """The weights the official inference tool uses: `params_ema`, else `params`, else the checkpoint itself.

    `name` (the file, say) starts the message of the CheckpointError raised when none of those is a dict of arrays
    named by strings, or when a floating-point array in it holds NaN or infinite values.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(name, f'holds {_describe(checkpoint)}, not a dict of arrays')
    for key in ('params_ema', 'params'):
        if key in checkpoint:
            if not _is_state_dict(checkpoint[key]):
                raise CheckpointError(name, f'its {key!r} is not a dict of arrays')
            return check_finite(checkpoint[key], name)
    if _is_state_dict(checkpoint):
        return check_finite(checkpoint, name)
    keys = [repr(key) for key in checkpoint]
    if len(keys) > 10:
        keys[10:] = [f'and {len(keys) - 10} more']
    raise CheckpointError(name, f"holds no state dict: no 'params_ema' or 'params', and not all of its values are "
                                f"arrays; its keys: {', '.join(keys) or 'none'}")


def check_finite(state, name='checkpoint'):
    """`state` itself, after checking that no floating-point array in it holds NaN or infinity: such weights give
    black or garbage images without any error."""
    for key, array in state.items():
        floating = isinstance(array, np.ndarray) and (array.dtype.kind in 'fc' or array.dtype == ml_dtypes.bfloat16)
        if floating and not np.isfinite(array).all():
            raise CheckpointError(name, f'its tensor {key} holds NaN or infinite values')
    return state


def _is_state_dict(value):
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items()))


def _describe(value):
    """A few words for what a checkpoint holds instead of a state dict."""
    if isinstance(value, np.ndarray):
        return f'a single array of shape {value.shape}'
    if value is None or isinstance(value, (bool, int, float, str)):
        return f'only {value!r}'[:80]
    article = 'an' if type(value).__name__[0] in 'aeiou' else 'a'
    return f'{article} {type(value).__name__}'


def save_pth(state_dict: dict, path, key='params_ema'):
    """Writes `{key: OrderedDict(name -> tensor)}`, the official checkpoint layout, with torch (needed here only).

    The file appears complete or not at all: it is written beside `path` and renamed over it.
    """
    try:
        import torch
    except ImportError:
        raise CheckpointError(path, 'writing the official .pth format needs torch (pip install torch)') from None

    tensors = collections.OrderedDict((name, _to_torch(torch, value)) for name, value in state_dict.items())
    with atomic_write(path) as temp:
        torch.save({key: tensors}, temp)


def save_pth_data(data, path):
    """Writes plain data as `torch.save` does, without torch: dicts, lists and tuples of str, bool, int, float, None
    and numpy number scalars (no tensors), pickled with torch's protocol into torch's zip archive layout, which
    `torch.load` and `load_pth` read.

    The file appears complete or not at all: it is written beside `path` and renamed over it.
    """
    _check_plain_data(data, path)
    with atomic_write(path) as temp, zipfile.ZipFile(temp, 'w', zipfile.ZIP_STORED) as archive:
        archive.writestr('archive/data.pkl', pickle.dumps(data, protocol=2))
        archive.writestr('archive/byteorder', sys.byteorder)
        archive.writestr('archive/version', '3\n')


_PLAIN_SCALARS = (str, bool, int, float, type(None))


def _check_plain_data(data, path):
    """Raises a CheckpointError if `data` holds anything `load_pth` would refuse, before any of it is written."""
    pending, seen = [data], set()
    while pending:
        item = pending.pop()
        if type(item) in (dict, collections.OrderedDict, list, tuple):
            if id(item) in seen:  # shared, or containing itself
                continue
            seen.add(id(item))
            # Keys and values, not items(): fresh pairs could reuse the id of a pair already checked.
            pending.extend([*item.keys(), *item.values()] if isinstance(item, dict) else item)
        elif not (type(item) in _PLAIN_SCALARS or isinstance(item, np.generic) and item.dtype.kind in 'biufc'):
            raise CheckpointError(path, f'cannot be written: it would hold a {type(item).__name__}, which is not '
                                        f'plain data')


def _to_torch(torch, value):
    # A fresh C-ordered copy: torch.from_numpy needs a writable, positively strided array, and the copy keeps the
    # caller's array from sharing memory with the tensor.
    array = np.array(value, order='C')
    if array.dtype == ml_dtypes.bfloat16:
        # numpy's bfloat16 is an extension dtype torch does not know; the bits are the same, so reinterpret them.
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
