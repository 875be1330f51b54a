"""gfpgan_jax.pth against real torch: what load_pth reads, what it refuses, and what save_pth writes."""
import collections
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from gfpgan_jax.fileio import atomic_write
from gfpgan_jax.pth import CheckpointError, UnsafeCheckpointError, load_pth, save_pth, select_state_dict

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
from gfpgan_jax.pth import load_pth
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
    for path, ours in zip(paths, _load_without_torch(paths, tmp_path)):
        _assert_same(ours, torch.load(path, weights_only=True))


def test_loaded_arrays_are_writable_and_independent_of_shared_storage(tmp_path):
    path = tmp_path / 'views.pth'
    torch.save(_views_checkpoint(), path)
    loaded = load_pth(path)
    loaded['base'][:] = 0
    _assert_same(loaded['row'], torch.load(path, weights_only=True)['row'])
    assert all(array.flags.writeable for array in loaded.values())


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


def _missing(path):
    pass


def _directory(path):
    path.mkdir()


def _empty(path):
    path.write_bytes(b'')


def _garbage(path):
    path.write_bytes(np.random.default_rng(0).bytes(1000))


def _legacy(path):
    torch.save({'w': torch.zeros(2)}, path, _use_new_zipfile_serialization=False)


def _truncated(path):
    torch.save({'w': torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])


def _corrupt_storage(path):
    torch.save({'w': torch.full((64,), 1234.5)}, path)
    data = bytearray(path.read_bytes())
    data[data.index(np.full(16, 1234.5, np.float32).tobytes()) + 10] ^= 0xFF
    path.write_bytes(bytes(data))


def _plain_zip(path):
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('notes.txt', 'hello')


@pytest.mark.parametrize('make, expected', [
    (_missing, 'cannot open it: No such file'),
    (_directory, 'cannot open it'),
    (_empty, 'is empty'),
    (_garbage, 'not a torch checkpoint (not a zip archive)'),
    (_legacy, 'is a legacy torch checkpoint; re-save it with torch.save(..., _use_new_zipfile_serialization=True)'),
    (_truncated, 'truncated or damaged zip archive'),
    (_corrupt_storage, 'cannot read the record data/0: Bad CRC-32'),
    (_plain_zip, 'not a torch checkpoint'),
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
