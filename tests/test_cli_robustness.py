"""infer.py and convert_weights.py against what a new user throws at them: hostile files, bad flags, weight files that
are not weights, no connection, Ctrl-C, huge photos, and the Python API's edges.

Each case checks the exit code, the one line naming the file, that no traceback is printed, that the other files were
processed and that the inputs are byte-identical afterwards. The runs share one small random-weight GFPGAN, compiled
once; the detector is a stand-in (its network is tested in test_retinaface.py) and the paste masks are square.
"""
import os
import signal
import subprocess
import sys
import time
import tracemalloc
import types

import cv2
import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch

import official
from gfpgan_jax.cli import convert as convert_cli
from gfpgan_jax.cli import infer as infer_cli
from gfpgan_jax.convert.generator import convert_state_dict
from gfpgan_jax.files import compile_cache, releases
from gfpgan_jax.files.weights import save_converted
from gfpgan_jax.inference import alignment, detection
from gfpgan_jax.inference.pipeline import ImageRestorer
from gfpgan_jax.inference.restorer import FaceRestorer
from parity_utils import detection_rows, randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, fix_decoder=False,
             input_is_latent=True, different_w=True, sft_half=True)
# The stand-in detector's face in every photo that is not square (eyes 20 px apart), and where a second one goes.
FACE = np.float32([[22, 28], [42, 28], [32, 38], [24, 48], [40, 48]])
SECOND_FACE_OFFSET = (40, 0)


class StandInDetector:
    """Finds `faces` faces (FACE, then shifted copies) in every photo that is not square, none in square ones."""

    def __init__(self, faces=1):
        self.faces = faces

    def detect_faces(self, image, conf_threshold):
        if image.shape[0] == image.shape[1]:
            return np.zeros((0, 15), np.float32)
        return detection_rows([FACE + np.multiply(SECOND_FACE_OFFSET, i) for i in range(self.faces)])


@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'small.pth'
    torch.save({'params_ema': randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(**SMALL)).state_dict()}, path)
    return str(path)


@pytest.fixture(scope='module')
def restorer(small_checkpoint):
    """The one restorer of the module's runs, so that its program is compiled once (batches of one face)."""
    return FaceRestorer.from_checkpoint(small_checkpoint)


@pytest.fixture
def run(restorer, small_checkpoint, tmp_path, monkeypatch, capsys):
    """infer.py in this process with the shared restorer and the stand-in detector: (exit code, stdout, stderr)."""
    monkeypatch.setattr(FaceRestorer, 'from_checkpoint', classmethod(lambda cls, path, **options: restorer))
    monkeypatch.setattr(infer_cli.FaceDetector, 'from_pretrained', classmethod(lambda cls: StandInDetector()))
    monkeypatch.setattr(infer_cli.FaceParser, 'from_pretrained', classmethod(lambda cls: None))
    home = tmp_path / 'home'  # the helper networks' files are there, so nothing is downloaded
    home.mkdir()
    for name in (infer_cli.FaceDetector.RELEASE, infer_cli.FaceParser.RELEASE):
        (home / f'{name}.pth').write_bytes(b'')
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(home))

    def run_infer(*argv):
        capsys.readouterr()
        # The process-wide compilation cache stays as the other tests have it; its switch is tested on its own.
        code = infer_cli.main([*map(str, argv), '--model-path', small_checkpoint, '--batch-size', '1',
                               '--no-compile-cache'])
        out, err = capsys.readouterr()
        assert 'Traceback' not in err
        return code, out, err
    return run_infer


def photo(seed, shape=(64, 80)):
    return np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)


def encoded(image, extension='.png'):
    return cv2.imencode(extension, image)[1].tobytes()


def snapshot(folder):
    """Every entry under `folder`: a file's bytes, a link's target, or what else it is."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in files + folders:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = f'link to {os.readlink(path)}'
            elif os.path.isfile(path):
                with open(path, 'rb') as file:
                    found[key] = file.read()
            else:
                found[key] = 'folder' if os.path.isdir(path) else 'special'
    return found


def flagged(err):
    """The error, warning and note lines of a run's stderr."""
    return sorted(line for line in err.splitlines() if line.startswith(('error:', 'warning:', 'note:')))


def leftovers(folder):
    """Temporary files of atomic writes under `folder`: there must be none."""
    return [name for _, _, files in os.walk(folder) for name in files if name.startswith('.')]


@pytest.fixture
def hostile(tmp_path):
    """A folder of what a person may have in a photo folder."""
    folder = tmp_path / 'in'
    folder.mkdir()
    (folder / 'a.png').write_bytes(encoded(photo(0)))
    (folder / 'b_noext').write_bytes(encoded(photo(1)))  # OpenCV writes no format without an extension
    (folder / 'c.jfif').write_bytes(encoded(photo(2), '.jpg'))  # reads as JPEG, cannot be written as .jfif
    jpeg = encoded(photo(3), '.jpg')
    (folder / 'd.jpg').write_bytes(jpeg[:len(jpeg) * 2 // 3])  # cut short: decodes with its bottom grey
    (folder / 'e.png').write_bytes(b'not an image')
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'f.jpg').write_bytes(encoded(photo(4), '.jpg'))
    (folder / 'f.png').write_bytes(encoded(photo(5)))  # its results would overwrite f.jpg's
    (folder / 'g.png').write_bytes(encoded(photo(6, (64, 64))))  # square: the stand-in finds no face
    (folder / 'sub').mkdir()
    (folder / 'sub' / 'h.png').write_bytes(encoded(photo(7)))
    os.symlink(folder / 'gone.png', folder / 'link.png')
    (folder / '.hidden.png').write_bytes(encoded(photo(8)))
    os.mkfifo(folder / 'pipe')  # reading it would block the run forever
    return folder


def test_a_folder_of_hostile_files(run, hostile, tmp_path):
    before = snapshot(hostile)
    out = tmp_path / 'out'
    code, stdout, err = run('-i', hostile, '-o', out)
    assert code == 1
    assert flagged(err) == sorted([
        f'error: {hostile}/e.png: not a readable image',
        f'error: {hostile}/empty.jpg: is empty',
        f'error: {hostile}/f.png: skipped, its results would overwrite those of {hostile}/f.jpg',
        f'error: {hostile}/link.png: a broken link (what it points to does not exist)',
        f'note: {hostile}/sub: a folder, skipped (subfolders are not searched)',
        f'note: {hostile}/pipe: a special file, skipped',
        f'warning: {hostile}/d.jpg: its JPEG data ends early (no end-of-image marker): the part below is missing',
        f'note: {hostile}/b_noext: OpenCV cannot write files without an extension: the restored photo is written '
        'as PNG',
        f'note: {hostile}/c.jfif: OpenCV cannot write .jfif files: the restored photo is written as PNG',
        f'note: {hostile}/g.png: no face found; the photo is written upscaled as it is',
        'note: no Real-ESRGAN background upsampling on the CPU, as in the official tool; the background is resized',
    ])
    assert stdout.splitlines()[-1] == (
        f'restored 6 of 10 photos into {out} (5 faces, 1 photo with no face found, 1 damaged file restored as far '
        'as it decodes); 4 failed; skipped 1 folder, 1 hidden file, 1 special file')
    assert sorted(os.listdir(out / 'restored_imgs')) == ['a.png', 'b_noext.png', 'c.png', 'd.jpg', 'f.jpg', 'g.png']
    for name in os.listdir(out / 'restored_imgs'):
        assert cv2.imread(str(out / 'restored_imgs' / name)).shape[:2] in ((128, 160), (128, 128)), name
    faces = ['a_00.png', 'b_noext_00.png', 'c_00.png', 'd_00.png', 'f_00.png']
    for folder in ('cropped_faces', 'restored_faces', 'cmp'):
        assert sorted(os.listdir(out / folder)) == faces
    assert leftovers(out) == []
    assert snapshot(hostile) == before


def test_a_photo_its_format_refuses_is_one_line_and_the_run_goes_on(run, tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    (inputs / 'a.png').write_bytes(encoded(photo(0)))
    (inputs / 'wide.png').write_bytes(encoded(photo(1, (8, 8200))))  # 16400 px wide at 2x: past WebP's 16383
    before = snapshot(inputs)
    out = tmp_path / 'out'
    code, stdout, err = run('-i', inputs, '-o', out, '--ext', '.webp')
    assert code == 1
    assert [line for line in flagged(err) if line.startswith('error')] == [
        f'error: {inputs}/wide.png: cannot write {out}/restored_imgs/wide.webp: OpenCV cannot encode it as .webp']
    assert stdout.splitlines()[-1] == f'restored 1 of 2 photos into {out} (1 face); 1 failed'
    assert os.listdir(out / 'restored_imgs') == ['a.webp'] and os.listdir(out / 'cmp') == ['a_00.png']
    assert leftovers(out) == [] and snapshot(inputs) == before


def test_rerun_removes_the_faces_a_photo_no_longer_has(run, tmp_path, monkeypatch):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for name, seed in (('p', 0), ('q', 1)):
        (inputs / f'{name}.png').write_bytes(encoded(photo(seed, (64, 100))))
    before = snapshot(inputs)
    out = tmp_path / 'out'
    monkeypatch.setattr(infer_cli.FaceDetector, 'from_pretrained', classmethod(lambda cls: StandInDetector(2)))
    assert run('-i', inputs, '-o', out, '--suffix', 'x')[0] == 0
    assert sorted(os.listdir(out / 'restored_faces')) == ['p_00_x.png', 'p_01_x.png', 'q_00_x.png', 'q_01_x.png']
    others = [out / 'cropped_faces' / 'r_01.png', out / 'restored_faces' / 'p_01_y.png', out / 'cmp' / 'p_001.png']
    for path in others:  # another photo's face, another suffix's, a name this tool does not write
        path.write_bytes(b'kept')

    monkeypatch.setattr(infer_cli.FaceDetector, 'from_pretrained', classmethod(lambda cls: StandInDetector(1)))
    code, stdout, _ = run('-i', inputs / 'p.png', '-o', out, '--suffix', 'x')
    assert code == 0 and stdout.splitlines()[-1] == f'restored 1 of 1 photo into {out} (1 face)'
    assert sorted(os.listdir(out / 'restored_faces')) == ['p_00_x.png', 'p_01_y.png', 'q_00_x.png', 'q_01_x.png']
    assert sorted(os.listdir(out / 'cropped_faces')) == ['p_00.png', 'q_00.png', 'q_01.png', 'r_01.png']
    assert sorted(os.listdir(out / 'cmp')) == ['p_00.png', 'p_001.png', 'q_00.png', 'q_01.png']
    assert all(path.read_bytes() == b'kept' for path in others)
    assert snapshot(inputs) == before


def test_outputs_never_overwrite_inputs(run, tmp_path):
    out = tmp_path / 'out'
    (out / 'restored_imgs').mkdir(parents=True)
    (out / 'cmp').mkdir()
    (out / 'restored_imgs' / 'a.png').write_bytes(encoded(photo(0)))
    (out / 'cmp' / 'b_00.png').write_bytes(encoded(photo(1)))
    os.symlink(out / 'restored_imgs', tmp_path / 'linked')
    before = snapshot(out)
    for argv, culprit in ((['-i', out / 'restored_imgs'], out / 'restored_imgs' / 'a.png'),
                          (['-i', tmp_path / 'linked'], tmp_path / 'linked' / 'a.png'),  # the same folder
                          (['-i', out / 'restored_imgs' / 'a.png'], out / 'restored_imgs' / 'a.png'),
                          (['-i', out / 'cmp', '--aligned'], out / 'cmp' / 'b_00.png')):
        code, _, err = run(*argv, '-o', out)
        assert code == 2
        assert err.splitlines() == [f'error: {culprit}: an input in {os.path.dirname(culprit)}, where this run '
                                    'writes its results; choose another --output']
    assert snapshot(out) == before


@pytest.mark.parametrize('flags, message', [
    (['-s', '0'], 'argument -s/--upscale: must be at least 1, got 0'),
    (['--upscale', '-1'], 'argument -s/--upscale: must be at least 1, got -1'),
    (['-s', '1.5'], "argument -s/--upscale: expected a whole number, got '1.5'"),
    (['--bg_tile', '-1'], 'argument --bg_tile: must be at least 0, got -1'),
    (['--batch-size', '0'], 'argument --batch-size: must be at least 1, got 0'),
    (['--ext', 'xyz'], "argument --ext: OpenCV cannot write 'xyz' images"),
    (['--ext', 'pgm'], "argument --ext: OpenCV cannot write 'pgm' images"),  # grey only
    (['--suffix', '../elsewhere'], 'argument --suffix: must not contain / or \\'),
    (['--seed', str(2 ** 64)], 'argument --seed: must be between'),
    (['-v', '2.0'], "argument -v/--version: invalid choice: '2.0'"),
    (['--dtype', 'float16'], "argument --dtype: invalid choice: 'float16'"),
    (['-w', 'heavy'], "argument -w/--weight: invalid float value: 'heavy'"),
    (['--no-such-flag'], 'unrecognized arguments: --no-such-flag'),
])
def test_bad_flags_stop_before_any_work(flags, message, tmp_path, capsys):
    code = infer_cli.main(['-i', str(tmp_path), '-o', str(tmp_path / 'out')] + flags)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f'error: {message}'), err
    assert err[0].endswith('(see infer.py --help)')
    assert os.listdir(tmp_path) == []  # no output folder made


def _state(seed=5):
    return {key: value.numpy() for key, value in
            randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(**SMALL), seed).state_dict().items()}


def _with_nan(path):
    state = _state()
    state['conv_body_first.weight'][0, 0, 0, 0] = np.nan
    torch.save({'params_ema': {k: torch.from_numpy(v) for k, v in state.items()}}, path)


def _with_inf_in_params(path):
    state = _state()
    state['final_linear.bias'][3] = -np.inf
    torch.save({'params': {k: torch.from_numpy(v) for k, v in state.items()}, 'iter': 3}, path)


def _converted(path, change=None):
    """A converted file of the small model, with `change(tensors, metadata)` applied."""
    save_converted(path, *convert_state_dict(_state()))
    if change:
        with safetensors.safe_open(str(path), framework='np') as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
        change(tensors, metadata)
        safetensors.numpy.save_file(tensors, str(path), metadata=metadata)


def _int_tensor(tensors, metadata):
    tensors['params/final_linear/bias'] = tensors['params/final_linear/bias'].astype(np.int32)


def _nan_tensor(tensors, metadata):
    tensors['params/final_linear/bias'][0] = np.nan


WEIRD_WEIGHTS = {  # file name, how to make it, what the one line must say
    'an int': ('five.pth', lambda p: torch.save(5, p), 'holds only 5, not a dict of arrays'),
    'None': ('none.pth', lambda p: torch.save(None, p), 'holds only None, not a dict of arrays'),
    'a scalar tensor': ('scalar.pth', lambda p: torch.save(torch.tensor(1.5), p),
                        'holds a single array of shape (), not a dict of arrays'),
    'a list': ('list.pth', lambda p: torch.save([1, 2, 3], p), 'holds a list, not a dict of arrays'),
    'NaN weights': ('nan.pth', _with_nan, 'its tensor conv_body_first.weight holds NaN or infinite values'),
    'inf in params': ('inf.pth', _with_inf_in_params, 'its tensor final_linear.bias holds NaN or infinite values'),
    'a folder': ('folder.pth', lambda p: p.mkdir(), 'is a folder, not a weights file'),
    'a checkpoint named .safetensors': (
        'renamed.safetensors', lambda p: torch.save([1], p), 'holds a list, not a dict of arrays'),
    'converted, out_size 48': (
        'size48.safetensors', lambda p: _converted(p, lambda t, m: m.update(config=m['config'].replace(
            '"out_size": 32', '"out_size": 48'))), 'describes no model that can be built'),
    'converted, out_size a string': (
        'sizestr.safetensors', lambda p: _converted(p, lambda t, m: m.update(config=m['config'].replace(
            '"out_size": 32', '"out_size": "32"'))), "metadata is missing or malformed (ValueError(\"out_size='32'"),
    'converted, int32 tensors': ('int.safetensors', lambda p: _converted(p, _int_tensor),
                                 'its tensor params/final_linear/bias is int32, not floating point'),
    'converted, NaN': ('nan.safetensors', lambda p: _converted(p, _nan_tensor),
                       'its tensor params/final_linear/bias holds NaN or infinite values'),
}


@pytest.mark.parametrize('case', WEIRD_WEIGHTS)
def test_weight_files_that_are_not_weights(case, tmp_path, capsys):
    """Both tools: exit status 2, one line naming the file and what is wrong with it, nothing written."""
    name, make, detail = WEIRD_WEIGHTS[case]
    weights = tmp_path / name
    make(weights)
    faces = tmp_path / 'faces'
    faces.mkdir()
    (faces / 'a.png').write_bytes(encoded(photo(0, (32, 32))))
    before = snapshot(tmp_path)
    for main, argv in ((convert_cli.main, ['--input', weights, '--output', tmp_path / 'out.safetensors']),
                       (convert_cli.main, ['--input', weights, '--output', tmp_path / 'out.pth']),
                       (infer_cli.main, ['--aligned', '-i', faces, '-o', tmp_path / 'out', '--model-path', weights,
                                         '--no-compile-cache'])):
        assert main(list(map(str, argv))) == 2
        out, err = capsys.readouterr()
        assert out == '' and len(err.splitlines()) == 1, err
        assert err.startswith(f'error: {weights}: ') and detail in err, err
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith('out')} == before
    assert not os.path.exists(tmp_path / 'out.safetensors') and not os.path.exists(tmp_path / 'out.pth')
    assert not os.path.exists(tmp_path / 'out' / 'restored_faces')


def test_convert_refuses_to_overwrite_its_input(tmp_path, capsys):
    weights = tmp_path / 'w.safetensors'
    _converted(weights)
    before = weights.read_bytes()
    assert convert_cli.main(['--input', str(weights), '--output', str(tmp_path / '.' / 'w.safetensors')]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f'error: {tmp_path / "." / "w.safetensors"}: is the input; choose another --output']
    assert weights.read_bytes() == before


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but not listening."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    yield sock.getsockname()[1]
    sock.close()


def test_offline_names_every_missing_file_at_once(tmp_path, closed_port, monkeypatch, capsys):
    home = tmp_path / 'home'  # not there yet, and not left behind
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(home))
    def url(name):
        return f'http://127.0.0.1:{closed_port}/{name}'
    monkeypatch.setitem(releases.RELEASES, '1.3', releases.Release('GFPGANv1.3', url('GFPGANv1.3.pth')))
    for name in ('detection_Resnet50_Final', 'parsing_parsenet'):
        monkeypatch.setitem(releases.HELPER_WEIGHTS, name, url(f'{name}.pth'))
    photos = tmp_path / 'in'
    photos.mkdir()
    (photos / 'a.png').write_bytes(encoded(photo(0)))
    assert infer_cli.main(['-i', str(photos), '-o', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('error: cannot download 3 files (')
    for name, what in (('GFPGANv1.3', 'pass --model-path FILE (or put it at {})'),
                       ('detection_Resnet50_Final', 'put it at {}'), ('parsing_parsenet', 'put it at {}')):
        assert f'for {url(name + ".pth")}, {what.format(home / (name + ".pth"))}' in err[0], name
    assert not home.exists()


def test_ctrl_c_keeps_what_was_written_and_says_so(run, tmp_path, monkeypatch):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for index, name in enumerate('abc'):
        (inputs / f'{name}.png').write_bytes(encoded(photo(index)))
    before = snapshot(inputs)
    calls = []
    enhance = ImageRestorer.enhance

    def interrupted_at_the_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return enhance(self, *args, **kwargs)
    monkeypatch.setattr(ImageRestorer, 'enhance', interrupted_at_the_second)
    out = tmp_path / 'out'
    code, stdout, err = run('-i', inputs, '-o', out)
    assert code == 130
    assert stdout.splitlines()[-1] == (f'interrupted: restored 1 of 3 photos into {out} (1 face); 2 not done: '
                                       'interrupted')
    assert os.listdir(out / 'restored_imgs') == ['a.png'] and os.listdir(out / 'cmp') == ['a_00.png']
    assert leftovers(out) == [] and snapshot(inputs) == before


SLOW_RESTORER = '''
import sys, time
from gfpgan_jax.cli import infer
from gfpgan_jax.models.options import ModelConfig

class SlowRestorer:
    """Gives each face back as it is, half a second later: time to interrupt the run in its middle."""
    config = ModelConfig(out_size=32)

    def restore_async(self, faces, indices, fidelity=None):
        time.sleep(0.5)
        return faces

infer.FaceRestorer.from_checkpoint = classmethod(lambda cls, path, **options: SlowRestorer())
sys.exit(infer.main())
'''


def interruptible():
    """In the child before it runs: Ctrl-C's default action. A process started with SIGINT ignored keeps ignoring
    it (POSIX; Python then installs no KeyboardInterrupt), and a test runner's worker may be such a process."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_ends_the_run_with_a_summary(tmp_path):
    """A real Ctrl-C (SIGINT) to infer.py in its own process, in the middle of a folder of faces."""
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for index in range(12):
        (inputs / f'face{index:02d}.png').write_bytes(encoded(photo(index, (32, 32))))
    before = snapshot(inputs)
    out = tmp_path / 'out'
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env.pop('PYTHONPATH', None)
    process = subprocess.Popen([sys.executable, '-c', SLOW_RESTORER, '--aligned', '-i', inputs, '-o', out,
                                '--model-path', 'unused.pth', '--batch-size', '1', '--no-compile-cache'],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=interruptible)
    deadline = time.monotonic() + 60
    while len(os.listdir(out / 'cmp') if (out / 'cmp').is_dir() else ()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, 'the run ended before it could be interrupted'
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert 'Traceback' not in stderr
    written = sorted(os.listdir(out / 'restored_faces'))
    assert 2 <= len(written) < 12
    assert stdout.splitlines()[-1] == (f'interrupted: restored {len(written)} of 12 faces into {out}; '
                                       f'{12 - len(written)} not done: interrupted')
    for folder in ('cropped_faces', 'restored_faces', 'cmp'):  # each face whole, in every folder
        assert sorted(os.listdir(out / folder)) == written
        assert all(cv2.imread(str(out / folder / name)) is not None for name in written)
    assert leftovers(out) == [] and snapshot(inputs) == before


def test_api_edges(restorer):
    faces = np.zeros((2, 32, 32, 3), np.uint8)
    assert restorer.restore(faces[:0]).shape == (0, 32, 32, 3)
    for indices in ([0], [0, 1, 2], [-1, 0], [0.5, 1], [0, 2 ** 31]):
        with pytest.raises(ValueError, match='indices must be 2 whole numbers in'):
            restorer.restore(faces, indices=indices)
    with pytest.raises(ValueError, match='expected float images in'):
        restorer.apply(faces)
    with pytest.raises(ValueError, match='expected float images in'):
        restorer.apply(np.zeros((2, 16, 16, 3), np.float32))
    empty = restorer.apply(np.zeros((0, 32, 32, 3), np.float32))
    assert empty.image.shape == (0, 32, 32, 3) and empty.latent.shape[0] == 0 and empty.rgbs[0].shape[0] == 0
    for options, message in ((dict(dtype=np.int32), 'dtype must be a floating-point type'),
                             (dict(seed=2 ** 64), 'seed must be a whole number'), (dict(noise='loud'), 'noise')):
        with pytest.raises(ValueError, match=message):
            FaceRestorer(restorer.config, restorer.variables, **options)
    for options in (dict(upscale=0), dict(upscale=-1), dict(upscale=float('nan')), dict(upscale=True),
                    dict(upscale='2'), dict(batch_size=0), dict(batch_size=2.0)):
        with pytest.raises(ValueError, match=f'{next(iter(options))} must be'):
            ImageRestorer(restorer, StandInDetector(), **options)
    photos = ImageRestorer(restorer, StandInDetector())
    for image in (np.zeros((0, 0, 3), np.uint8), np.zeros((5, 0, 3), np.uint8)):
        with pytest.raises(ValueError, match='expected an'):
            photos.enhance(image)


class RecordingDetector:
    """Reports FACE scaled to the size of the photo it is given, as if it were the photo's content; keeps what it
    was given."""

    def __init__(self):
        self.seen = []

    def detect_faces(self, image, conf_threshold):
        self.seen.append(image)
        return detection_rows([FACE * (image.shape[1] / 80)])


def test_large_photos_are_searched_on_a_shrunk_copy():
    detector = RecordingDetector()
    small = np.zeros((2000, 2000, 3), np.uint8)  # 4 MP: searched as it is, as the official does
    np.testing.assert_array_equal(detection.detect_faces_within(detector, small, 0.97),
                                  detection_rows([FACE * 25]))
    assert detector.seen[-1] is small
    large = np.zeros((3000, 4000, 3), np.uint8)  # 12 MP
    rows = detection.detect_faces_within(detector, large, 0.97)
    shrunk = detector.seen[-1]
    assert shrunk.shape == (1732, 2309, 3) and shrunk.shape[0] * shrunk.shape[1] <= detection.MAX_DETECTION_PIXELS
    # The face is found where it is in the photo: the shrunk copy's coordinates scaled back.
    np.testing.assert_allclose(rows[:, 4:], detection_rows([FACE * 50])[:, 4:], rtol=1e-3)


def _paste(canvas, faces, transforms, upscale, masks, whole):
    threshold = alignment.WHOLE_CANVAS_PASTE_PIXELS
    alignment.WHOLE_CANVAS_PASTE_PIXELS = canvas.shape[0] * canvas.shape[1] if whole else 0
    try:
        return alignment.paste_faces(canvas, faces, transforms, upscale, masks)
    finally:
        alignment.WHOLE_CANVAS_PASTE_PIXELS = threshold


@pytest.mark.parametrize('parsed', [False, True])
def test_large_canvases_are_pasted_on_face_by_face(parsed):
    """Face by face gives the whole-canvas (official) pixels but for rare levels, and needs memory for the faces'
    regions only: the float canvas of the whole way is not made."""
    rng = np.random.default_rng(0)
    canvas = cv2.resize(photo(0, (60, 80)), (3200, 2400), interpolation=cv2.INTER_LINEAR)
    landmarks = np.stack([FACE * 3 + (100, 150), FACE * 2 + (500, 100), FACE * 2 + (520, 120)])  # the last overlap
    crops, transforms = alignment.align_faces(canvas[::2, ::2], landmarks, 64)
    faces = np.stack([cv2.GaussianBlur(255 - crop, (5, 5), 2) for crop in crops])
    masks = ([cv2.GaussianBlur((rng.random((64, 64)) > 0.3).astype(np.float64), (9, 9), 3) for _ in faces]
             if parsed else None)
    results, peaks = [], []
    for on_whole_canvas in (True, False):
        tracemalloc.start()
        results.append(_paste(canvas, faces, transforms, 2, masks, on_whole_canvas))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    whole, by_face = results
    difference = np.abs(whole.astype(int) - by_face)
    assert (whole != canvas).mean() > 0.03  # the faces are pasted
    # Measured: at most 1 level with square masks, 6 with these steep random masks, on 0.06% and 0.15% of the
    # values: where cv2's fixed-point warp rounds the shifted transform differently, and where faces overlap.
    assert difference.max() <= (8 if parsed else 1) and (difference > 0).mean() < 0.005, difference.max()
    # Measured: the whole way takes 9.5x (square masks) and 14x (parsed) the canvas's bytes at its peak, face by face
    # 1.6x and 1.9x: the result and float regions of the faces' size.
    assert peaks[1] < peaks[0] / 4 and peaks[1] < 2.5 * canvas.nbytes, (peaks[0] / canvas.nbytes,
                                                                         peaks[1] / canvas.nbytes)


def test_compile_cache_is_on_by_default_in_the_cache_folder(tmp_path, monkeypatch):
    class Config:
        jax_compilation_cache_dir = None

        def update(self, name, value):
            setattr(self, name, value)
    monkeypatch.setattr(compile_cache, 'jax', types.SimpleNamespace(config=Config()))
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path / 'home'))
    monkeypatch.delenv(compile_cache.ENVIRONMENT_VARIABLE, raising=False)
    assert compile_cache.enable() == str(tmp_path / 'home' / 'xla-cache')
    config = compile_cache.jax.config
    assert config.jax_compilation_cache_dir == str(tmp_path / 'home' / 'xla-cache')
    assert config.jax_persistent_cache_min_compile_time_secs == 0 and (tmp_path / 'home' / 'xla-cache').is_dir()
    assert compile_cache.enable() == str(tmp_path / 'home' / 'xla-cache')  # a folder already chosen is kept

    config.jax_compilation_cache_dir = None
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, 'off')
    assert compile_cache.enable() is None and config.jax_compilation_cache_dir is None
    monkeypatch.setenv(compile_cache.ENVIRONMENT_VARIABLE, str(tmp_path / 'mine'))
    assert compile_cache.enable() == str(tmp_path / 'mine') == config.jax_compilation_cache_dir

