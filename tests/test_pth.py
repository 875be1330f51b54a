"""gfpgan_jax.files.pth against real torch: what load_pth reads, what it refuses, and what save_pth writes."""
import collections
import io
import os
import pickle
import pickletools
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from gfpgan_jax.files.atomic import atomic_write
from gfpgan_jax.files.pth import CheckpointError, UnsafeCheckpointError, load_pth, save_pth, select_state_dict

ROOT = Path(__file__).resolve().parents[1]


def _dtypes_checkpoint():
    g = torch.Generator().manual_seed(0)
    return {
        'f32': torch.randn(3, 4, generator=g),
        'f16': torch.randn(5, generator=g).half(),
        'bf16': torch.randn(2, 3, generator=g).bfloat16(),
        'f64': torch.randn(2, generator=g).double(),
        'i64': torch.randint(-2**40, 2**40, (4,), generator=g),
        'i32': torch.randint(-2**31, 2**31 - 1, (3,), generator=g, dtype=torch.int32),
        'i16': torch.randint(-2**15, 2**15 - 1, (3,), generator=g, dtype=torch.int16),
        'i8': torch.randint(-128, 127, (3,), generator=g, dtype=torch.int8),
        'u8': torch.randint(0, 255, (3,), generator=g, dtype=torch.uint8),
        'bool': torch.randn(6, generator=g) > 0,
        'scalar': torch.tensor(2.5),
        'empty': torch.zeros(0, 3),
    }


def _views_checkpoint():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, generator=g)
    return {
        'base': base,
        'transposed': base.t(),
        'row': base[2],
        'column': base[:, 1],
        'reshaped_slice': base.view(-1)[5:17].view(3, 4),
        'element': base[1, 2],
        'broadcast': torch.randn(3, 1, generator=g).expand(3, 4),
        'half_transposed': torch.randn(3, 5, generator=g).half().t(),
        'long_strided': torch.arange(20)[3:11:2],
    }


def _nested_checkpoint():
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    return {
        'params_ema': net.state_dict(),  # an OrderedDict with a `_metadata` attribute, as official files have
        'params': {'weight': torch.nn.Parameter(torch.randn(2, 2))},
        'iter': 5,
        'name': 'net',
        'shape': torch.Size([2, 3]),
        'lrs': [0.1, 0.2],
        'pair': (1, 'a'),
        'nothing': None,
    }


CHECKPOINTS = {'dtypes': _dtypes_checkpoint, 'views': _views_checkpoint, 'nested': _nested_checkpoint}


def _save_legacy(obj, path, protocol=2):
    torch.save(obj, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)


def _assert_same(ours, theirs):
    """`ours` (from load_pth) holds what `theirs` (from torch) does: arrays for tensors, dicts for OrderedDicts."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach()  # parameters come back requiring grad, which numpy() refuses
        assert isinstance(ours, np.ndarray)
        assert ours.shape == tuple(theirs.shape)
        if theirs.dtype == torch.bfloat16:
            assert ours.dtype == ml_dtypes.bfloat16
            np.testing.assert_array_equal(ours.astype(np.float32), theirs.float().numpy())
        else:
            assert ours.dtype == theirs.numpy().dtype
            np.testing.assert_array_equal(ours, theirs.numpy())
    elif isinstance(theirs, dict):
        assert type(ours) is dict
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            _assert_same(ours[key], value)
    elif isinstance(theirs, (list, tuple)):  # torch.Size included: it comes back as a tuple
        assert type(ours) is (list if isinstance(theirs, list) else tuple)
        assert len(ours) == len(theirs)
        for mine, value in zip(ours, theirs):
            _assert_same(mine, value)
    else:
        assert type(ours) is type(theirs) and ours == theirs


_LOAD_WITHOUT_TORCH = '''
import pickle, sys
sys.modules['torch'] = None  # from here on, importing torch (or any torch.*) raises ImportError
from gfpgan_jax.files.pth import load_pth
loaded = [load_pth(path) for path in sys.argv[2:]]
assert not [name for name, module in sys.modules.items() if name.startswith('torch') and module is not None]
with open(sys.argv[1], 'wb') as out:
    pickle.dump(loaded, out)
'''


def _load_without_torch(paths, tmp_path):
    out = tmp_path / 'loaded.pkl'
    done = subprocess.run([sys.executable, '-c', _LOAD_WITHOUT_TORCH, str(out), *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return pickle.loads(out.read_bytes())  # written just now by the subprocess above


def test_load_matches_torch_load_without_torch(tmp_path):
    paths = []
    for name, build in CHECKPOINTS.items():
        paths.append(tmp_path / f'{name}.pth')
        torch.save(build(), paths[-1])
        paths.append(tmp_path / f'{name}_legacy.pth')
        _save_legacy(build(), paths[-1])
    for path, ours in zip(paths, _load_without_torch(paths, tmp_path)):
        _assert_same(ours, torch.load(path, weights_only=True))


@pytest.mark.parametrize('protocol', [1, 4, 5])
def test_reads_legacy_files_of_other_pickle_protocols(tmp_path, protocol):
    path = tmp_path / 'legacy.pth'
    _save_legacy(_nested_checkpoint(), path, protocol)
    # torch's weights-only loader knows only protocol 2; this file is our own, so its full loader is safe here.
    _assert_same(load_pth(path), torch.load(path, weights_only=False))


@pytest.mark.parametrize('save', [torch.save, _save_legacy])
def test_loaded_arrays_are_writable_and_independent_of_shared_storage(tmp_path, save):
    path = tmp_path / 'views.pth'
    save(_views_checkpoint(), path)
    loaded = load_pth(path)
    loaded['base'][:] = 0
    _assert_same(loaded['row'], torch.load(path, weights_only=True)['row'])
    assert all(array.flags.writeable for array in loaded.values())


@pytest.mark.parametrize('save', [torch.save, _save_legacy])
def test_a_tensor_given_twice_loads_as_one_array(tmp_path, save):
    path = tmp_path / 'twice.pth'
    transposed = torch.arange(6.0).view(2, 3).t()
    save({'a': transposed, 'b': transposed}, path)
    loaded = load_pth(path)
    assert loaded['a'] is loaded['b']
    np.testing.assert_array_equal(loaded['a'], transposed.numpy())


def test_reads_big_endian_checkpoints(tmp_path):
    tensors = _dtypes_checkpoint()
    little, big = tmp_path / 'little.pth', tmp_path / 'big.pth'
    torch.save(tensors, little)
    sizes = [tensor.element_size() for tensor in tensors.values()]  # torch names the storages 0, 1, ... in order

    def to_big_endian(name, data):
        if name.endswith('/byteorder'):
            return b'big'
        folder, _, key = name.rpartition('/')
        if folder.endswith('/data') and sizes[int(key)] > 1:
            return np.frombuffer(data, f'<u{sizes[int(key)]}').byteswap().tobytes()
        return data

    _rewrite_zip(little, big, to_big_endian)
    _assert_same(load_pth(big), torch.load(little, weights_only=True))


def _rewrite_zip(source, target, edit):
    """Copies the zip `source` to `target`, each member's data through edit(name, data); None drops the member."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, 'w') as dst:
        for info in src.infolist():
            data = edit(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)


def _write_checkpoint_zip(path, pickled):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/data.pkl', pickled)
        archive.writestr('archive/byteorder', b'little')
        archive.writestr('archive/version', b'3\n')


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __init__(self, expression):
        self.expression = expression

    def __reduce__(self):
        return eval, (self.expression,)


def _shell_via_torch_save(path, marker):
    torch.save({'params_ema': {'w': torch.zeros(2)}, 'hook': _RunsShell(f'touch {marker}')}, path)


def _shell_via_legacy_torch_save(path, marker):
    _save_legacy({'params_ema': {'w': torch.zeros(2)}, 'hook': _RunsShell(f'touch {marker}')}, path)


def _shell_in_legacy_sys_info(path, marker):
    # The pickles before and after the main one are unpickled too, by torch and by load_pth.
    with open(path, 'wb') as file:
        for part in (0x1950A86A20F9469CFC6C, 1001, _RunsShell(f'touch {marker}'), {}, []):
            pickle.dump(part, file, 2)


def _eval_protocol_4(path, marker):
    # Protocol 4 names globals with STACK_GLOBAL rather than GLOBAL.
    _write_checkpoint_zip(path, pickle.dumps({'params': _Evaluates(f'open({str(marker)!r}, "w").close()')}, 4))


def _counter(path, marker):
    _write_checkpoint_zip(path, pickle.dumps({'params': collections.Counter('aab')}, 2))


def _numpy_array(path, marker):
    _write_checkpoint_zip(path, pickle.dumps({'params': {'w': np.zeros(2)}}, 2))


def _whole_module(path, marker):
    torch.save(torch.nn.Linear(2, 2), path)


@pytest.mark.parametrize('write, refused, runs_code', [
    (_shell_via_torch_save, 'system', True),
    (_shell_via_legacy_torch_save, 'system', True),
    (_shell_in_legacy_sys_info, 'system', True),
    (_eval_protocol_4, 'builtins.eval', True),
    (_counter, 'collections.Counter', False),
    (_numpy_array, 'numpy', False),
    (_whole_module, 'torch.nn.modules.linear.Linear', False),
])
def test_refuses_pickles_that_ask_for_anything_else(tmp_path, write, refused, runs_code):
    path, marker = tmp_path / 'evil.pth', tmp_path / 'pwned'
    write(path, marker)
    with pytest.raises(UnsafeCheckpointError) as caught:
        load_pth(path)
    message = str(caught.value)
    assert '\n' not in message
    assert message.startswith(f'{path}: refuses to load: ') and refused in message
    assert isinstance(caught.value, CheckpointError) and isinstance(caught.value, ValueError)
    assert not marker.exists()
    if runs_code:  # the payload is live: an ordinary load runs it
        torch.load(path, weights_only=False)
        assert marker.exists()


def _patched_pickle(old, new):
    def edit(name, data):
        if name.endswith('/data.pkl'):
            assert data.count(old) == 1
            return data.replace(old, new)
        return data
    return edit


@pytest.mark.parametrize('edit, expected', [
    # The tensor below is pickled with size (3, 4) as BININT1 3, BININT1 4, TUPLE2 and its storage's numel, 12, as
    # BININT1 12 closing the persistent id's TUPLE.
    (_patched_pickle(b'K\x03K\x04\x86', b'K\x09K\x04\x86'), 'reaches past the end of its storage'),
    (_patched_pickle(b'K\x0ct', b'K\x0dt'), 'holds 48 bytes, not 13 items'),
    (lambda name, data: None if name.endswith('/data/0') else data, 'the record data/0 is missing'),
    (lambda name, data: None if name.endswith('/data.pkl') else data, 'not a torch checkpoint'),
])
def test_inconsistent_archives_give_checkpoint_errors(tmp_path, edit, expected):
    good, bad = tmp_path / 'good.pth', tmp_path / 'bad.pth'
    torch.save({'w': torch.arange(12.0).reshape(3, 4)}, good)
    _rewrite_zip(good, bad, edit)
    with pytest.raises(CheckpointError) as caught:
        load_pth(bad)
    _assert_plain_error(caught.value, bad, expected)


def _assert_plain_error(error, path, expected):
    assert not isinstance(error, UnsafeCheckpointError)
    message = str(error)
    assert '\n' not in message
    assert message.startswith(f'{path}: ') and expected in message


def _storage_slice(data):
    # The tensor's persistent id ends with its storage's numel, 12, and None for "no slice" (BININT1 12, NONE,
    # TUPLE); a slice of items 2 to 8 replaces that None, and the tensor's size and stride (3, 4) and (4, 1) become
    # (2, 3) and (3, 1). Only the first of the two tensors on the storage is patched.
    return (data.replace(b'K\x0cNt', b'K\x0c(X\x01\x00\x00\x00vK\x02K\x06tt', 1)
            .replace(b'K\x03K\x04\x86', b'K\x02K\x03\x86').replace(b'K\x04K\x01\x86', b'K\x03K\x01\x86'))


def test_reads_legacy_storage_slices(tmp_path):
    # torch.save no longer writes storage slices, which early versions did; this file is one made by hand.
    base, path = torch.arange(12.0).view(3, 4), tmp_path / 'slice.pth'
    _save_legacy({'w': base, 'all': base.view(12)}, path)
    path.write_bytes(_storage_slice(path.read_bytes()))
    loaded = load_pth(path)
    _assert_same(loaded, torch.load(path, weights_only=True))
    np.testing.assert_array_equal(loaded['w'], np.arange(2.0, 8.0).reshape(2, 3))
    loaded['all'][:] = 0
    np.testing.assert_array_equal(loaded['w'], np.arange(2.0, 8.0).reshape(2, 3))


def _legacy_pickle_ends(data):
    """Where each of the five pickles of the legacy file `data` ends, found without running any of them."""
    ends = []
    file = io.BytesIO(data)
    for _ in range(5):
        for _ in pickletools.genops(file):
            pass
        ends.append(file.tell())
    return ends


@pytest.mark.parametrize('cut, expected', [
    ('magic', 'is a legacy torch checkpoint that is truncated or malformed (EOFError'),
    ('main pickle', 'is a legacy torch checkpoint that is truncated or malformed (EOFError'),
    ('storage keys', 'is a legacy torch checkpoint that is truncated or malformed (EOFError'),
    ('first count', 'is truncated: it ends before the record of storage'),
    ('first storage', 'is truncated: the record of storage'),
    ('last byte', 'is truncated: the record of storage'),
    ('half of big storages', 'is truncated or malformed: its pickle names storages of more bytes than the file holds'),
])
def test_truncated_legacy_files_give_one_line_checkpoint_errors(tmp_path, cut, expected):
    path = tmp_path / 'legacy.pth'
    # Storages smaller than the pickles let a file cut after the pickles fail where the cut is, not on its size.
    _save_legacy({'w': torch.arange(1000.0 if cut == 'half of big storages' else 2.0), 'b': torch.ones(3)}, path)
    data = path.read_bytes()
    magic, _, sys_info, main, keys = _legacy_pickle_ends(data)
    end = {'magic': magic - 1, 'main pickle': (sys_info + main) // 2, 'storage keys': keys - 2,
           'first count': keys + 4, 'first storage': keys + 10, 'last byte': len(data) - 1,
           'half of big storages': len(data) // 2}[cut]
    path.write_bytes(data[:end])
    with pytest.raises(CheckpointError) as caught:
        load_pth(path)
    _assert_plain_error(caught.value, path, expected)


def _replace_last(old, new):
    def edit(data):
        start = data.rindex(old)
        return data[:start] + new + data[start + len(old):]
    return edit


@pytest.mark.parametrize('edit, expected', [
    (lambda data: data + b'\0', 'has bytes after the record of its last storage'),
    (lambda data: data.replace(b'M\xe9\x03.', b'M\xea\x03.', 1), 'a protocol other than the known 1001'),
    (lambda data: data.replace((12).to_bytes(8, 'little'), (13).to_bytes(8, 'little')),
     'holds 13 items, not the 12 its pickle says'),
    (_replace_last(b'X\x01\x00\x00\x00s', b'X\x01\x00\x00\x00t'), 'its list of storages is not the storages'),
    (lambda data: data.replace(b'K\x0cNt', b'J\x00\x00\x00\x01Nt'), 'storages of more bytes than the file holds'),
    (lambda data: _storage_slice(data).replace(b'K\x02K\x06t', b'K\x0aK\x06t'), 'slices items 10 to 16'),
    (lambda data: data.replace(b'K\x03K\x04\x86', b'K\x09K\x04\x86', 1), 'reaches past the end of its storage'),
    # A storage named in the list of storage keys (BINUNICODE 's', BINPERSID) rather than in the main pickle.
    (lambda data: data[:_legacy_pickle_ends(data)[3]] + b'\x80\x02X\x01\x00\x00\x00sQ.',
     'a pickle other than the main one refers to a storage'),
])
def test_inconsistent_legacy_files_give_checkpoint_errors(tmp_path, edit, expected):
    path = tmp_path / 'legacy.pth'
    base = torch.arange(12.0).view(3, 4)
    _save_legacy({'w': base, 'all': base.view(12)}, path)
    data = path.read_bytes()
    # torch names a storage after its address, a BINUNICODE of digits; naming it 's' makes the edits predictable.
    key = re.search(rb'X.\x00\x00\x00[0-9]{6,}', data).group()
    path.write_bytes(edit(data.replace(key, b'X\x01\x00\x00\x00s')))
    with pytest.raises(CheckpointError) as caught:
        load_pth(path)
    _assert_plain_error(caught.value, path, expected)


def _missing(path):
    pass


def _directory(path):
    path.mkdir()


def _empty(path):
    path.write_bytes(b'')


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(1000))


def _truncated(path):
    torch.save({'w': torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])


def _corrupt_storage(path):
    torch.save({'w': torch.full((64,), 1234.5)}, path)
    data = bytearray(path.read_bytes())
    data[data.index(np.full(16, 1234.5, np.float32).tobytes()) + 10] ^= 0xFF
    path.write_bytes(bytes(data))


def _tar(path):
    # torch before 0.1.10 saved a tar archive of these three records.
    with tarfile.open(path, 'w', format=tarfile.PAX_FORMAT) as archive:
        for name in ('storages', 'tensors', 'pickle'):
            data = pickle.dumps(0, 2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _magic_elsewhere(path):
    path.write_bytes(pickle.dumps([0x1950A86A20F9469CFC6C], 2))


def _plain_zip(path):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('notes.txt', 'hello')


@pytest.mark.parametrize('make, expected', [
    (_missing, 'cannot open it: No such file'),
    (_directory, 'cannot open it'),
    (_empty, 'is empty'),
    (_garbage, 'not a torch checkpoint (not a zip archive)'),
    (_truncated, 'truncated or damaged zip archive'),
    (_corrupt_storage, 'cannot read the record data/0: Bad CRC-32'),
    (_plain_zip, 'not a torch checkpoint'),
    (_tar, 'is a tar archive, the checkpoint format of torch before 0.1.10, which is not supported'),
    (_magic_elsewhere, 'not a torch checkpoint (no torch magic number where a legacy one has it)'),
])
def test_unreadable_files_give_one_line_checkpoint_errors(tmp_path, make, expected):
    path = tmp_path / 'model.pth'
    make(path)
    with pytest.raises(CheckpointError) as caught:
        load_pth(path)
    _assert_plain_error(caught.value, path, expected)


def test_select_state_dict_prefers_params_ema_then_params_then_a_flat_dict():
    ema, plain = {'w': np.zeros(2)}, {'w': np.ones(2)}
    assert select_state_dict({'params': plain, 'params_ema': ema, 'iter': 5}) is ema
    assert select_state_dict({'params': plain, 'iter': 5}) is plain
    assert select_state_dict(plain) is plain


@pytest.mark.parametrize('checkpoint, expected', [
    ({'generator': {'w': np.zeros(2)}, 'iter': 5}, "its keys: 'generator', 'iter'"),
    ({'w': np.zeros(2), 'iter': 5}, "its keys: 'w', 'iter'"),
    ({f'k{i}': i for i in range(12)}, "'k9', and 2 more"),
    ({}, 'its keys: none'),
    ({'params_ema': {'w': 'not an array'}, 'params': {'w': np.zeros(2)}}, "its 'params_ema' is not a dict of arrays"),
])
def test_select_state_dict_names_what_it_found(checkpoint, expected):
    with pytest.raises(CheckpointError) as caught:
        select_state_dict(checkpoint, 'model.pth')
    _assert_plain_error(caught.value, 'model.pth', expected)


def _state_dict():
    rng = np.random.default_rng(3)
    return {
        'conv.weight': rng.standard_normal((3, 2, 3, 3), np.float32),
        'half': rng.standard_normal(4).astype(np.float16),
        'bf16': rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        'steps': np.array(7, np.int64),
        'mask': rng.standard_normal(3) > 0,
        'strided': rng.standard_normal((4, 6), np.float32)[:, ::2],
    }


@pytest.mark.parametrize('key', ['params_ema', 'params'])
def test_save_pth_writes_the_official_layout(tmp_path, key):
    state = _state_dict()
    path = tmp_path / 'out.pth'
    save_pth(state, path, key=key)
    assert os.listdir(tmp_path) == ['out.pth']
    saved = torch.load(path, weights_only=True)
    assert list(saved) == [key] and isinstance(saved[key], collections.OrderedDict)
    _assert_same(state, saved[key])
    reloaded = load_pth(path)[key]
    assert list(reloaded) == list(state)
    for name, array in state.items():
        assert reloaded[name].dtype == array.dtype
        np.testing.assert_array_equal(reloaded[name], array)


def test_save_pth_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / 'out.pth'
    path.write_bytes(b'old')

    def fail_midway(obj, file):
        Path(file).write_bytes(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', fail_midway)
    with pytest.raises(OSError, match='disk full'):
        save_pth(_state_dict(), path)
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['out.pth']


def test_atomic_write_replaces_the_file_only_on_success(tmp_path):
    path = tmp_path / 'face.png'
    path.write_bytes(b'old')
    with atomic_write(path) as temp:
        assert Path(temp).parent == tmp_path and temp.endswith('.png') and Path(temp) != path
        Path(temp).write_bytes(b'new')
        assert path.read_bytes() == b'old'
    assert path.read_bytes() == b'new'
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError):
        with atomic_write(path) as temp:
            Path(temp).write_bytes(b'half')
            raise RuntimeError
    assert path.read_bytes() == b'new'
    assert os.listdir(tmp_path) == ['face.png']


def test_a_pickle_cannot_change_how_later_files_load(tmp_path):
    # BUILD on the allowed storage type and on an allowed function, then a good file must load as before.
    pickles = [b'\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00xsb.',
               b'\x80\x02ctorch._utils\n_rebuild_parameter\nN}X\x0c\x00\x00\x00__defaults__K\x01s\x86b.']
    for i, payload in enumerate(pickles):
        poisoned = tmp_path / f'poison{i}.pth'
        with zipfile.ZipFile(poisoned, 'w') as archive:
            archive.writestr('archive/data.pkl', payload)
            archive.writestr('archive/version', '3\n')
        try:
            load_pth(poisoned)
        except CheckpointError:
            pass
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.arange(6, dtype=torch.float32).view(2, 3), 'p': torch.nn.Parameter(torch.ones(2))}, good)
    loaded = load_pth(good)
    np.testing.assert_array_equal(loaded['w'], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(loaded['p'], np.ones(2, np.float32))
