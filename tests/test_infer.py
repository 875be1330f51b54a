"""infer.py on aligned faces: the official pipeline's pixels, the official output layout, and bad input."""
import functools
import os
import re

import cv2
import jax
import numpy as np
import pytest
import torch

import official
from gfpgan_jax.cli import infer as infer_cli
from gfpgan_jax.inference.restorer import FaceRestorer
from parity_utils import FixedDetector, detection_rows, randomize, tame_rgb_heads

EXAMPLES = os.path.join(os.path.dirname(__file__), '..', 'examples', 'aligned')


class _AlignedOnlyFaceHelper:
    """Stands in for facexlib's FaceRestoreHelper, whose constructor downloads detector weights. On aligned input
    GFPGANer.enhance only stores the crops and restored faces in it."""

    def __init__(self, *args, **kwargs):
        self.clean_all()

    def clean_all(self):
        self.cropped_faces, self.restored_faces = [], []

    def add_restored_face(self, face):
        self.restored_faces.append(face)


def save_checkpoint(module, path):
    torch.save({'params_ema': module.state_dict()}, path)
    return str(path)


RELEASED_LAYOUTS = {  # architecture name in GFPGANer -> (official class, channel multiplier)
    'clean': (official.gfpganv1_clean_arch.GFPGANv1Clean, 2),  # v1.2, v1.3, v1.4
    'original': (official.gfpganv1_arch.GFPGANv1, 1),  # v1
}


@pytest.fixture(scope='module', params=sorted(RELEASED_LAYOUTS))
def released_checkpoint(request, tmp_path_factory):
    arch = request.param
    cls, channel_multiplier = RELEASED_LAYOUTS[arch]
    module = randomize(cls(out_size=512, channel_multiplier=channel_multiplier, fix_decoder=False,
                           input_is_latent=True, different_w=True, sft_half=True), seed=7)
    if arch == 'original':
        tame_rgb_heads(module)
    return arch, save_checkpoint(module, tmp_path_factory.mktemp('weights') / f'{arch}-random.pth')


@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    module = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, fix_decoder=False,
        input_is_latent=True, different_w=True, sft_half=True))
    return save_checkpoint(module, tmp_path_factory.mktemp('weights') / 'small.pth')


def level_difference(a, b):
    """The largest difference between two uint8 images, in levels."""
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def official_restore(arch, checkpoint, paths, monkeypatch):
    """The official GFPGANer.enhance(has_aligned=True) with the checkpoint's stored noise."""
    import gfpgan.utils
    monkeypatch.setattr(gfpgan.utils, 'FaceRestoreHelper', _AlignedOnlyFaceHelper)
    restorer = gfpgan.utils.GFPGANer(model_path=checkpoint, upscale=2, arch=arch,
                                     channel_multiplier=RELEASED_LAYOUTS[arch][1], device=torch.device('cpu'))
    restorer.gfpgan.forward = functools.partial(restorer.gfpgan.forward, randomize_noise=False)
    return [restorer.enhance(cv2.imread(p), has_aligned=True)[1][0] for p in paths]


def test_restored_pngs_equal_the_official_pipeline(released_checkpoint, tmp_path, monkeypatch):
    arch, checkpoint = released_checkpoint
    paths = sorted(os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES))
    theirs = official_restore(arch, checkpoint, paths, monkeypatch)
    code = infer_cli.main(['--aligned', '-i', EXAMPLES, '-o', str(tmp_path), '--model-path', checkpoint,
                           '--noise', 'fixed', '--batch-size', '2'])
    assert code == 0
    for path, expected in zip(paths, theirs):
        stem = os.path.splitext(os.path.basename(path))[0]
        ours = cv2.imread(str(tmp_path / 'restored_faces' / f'{stem}_00.png'))
        assert ours.shape == expected.shape == (512, 512, 3)
        diff = np.abs(ours.astype(int) - expected.astype(int))
        assert diff.max() <= 1, (stem, diff.max())
        assert np.mean((expected == 0) | (expected == 255)) < 0.5  # the comparison is not of saturated pixels
        assert np.mean(diff > 0) < 1e-3  # off-by-one only where fp32 rounding straddles a .5
        cmp = cv2.imread(str(tmp_path / 'cmp' / f'{stem}_00.png'))
        np.testing.assert_array_equal(cmp, np.concatenate([cv2.imread(path), ours], axis=1))
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'cropped_faces' / f'{stem}_00.png')),
                                      cv2.imread(path))


def test_bad_files_are_reported_and_skipped(small_checkpoint, tmp_path, capsys):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    cv2.imwrite(str(inputs / 'a.png'), np.full((40, 30, 3), 120, np.uint8))  # resized to the model's size
    (inputs / 'b.png').write_bytes(b'not an image')
    cv2.imwrite(str(inputs / 'c.jpg'), np.full((32, 32, 3), 60, np.uint8))
    cv2.imwrite(str(inputs / 'c.png'), np.full((32, 32, 3), 90, np.uint8))  # would overwrite c.jpg's results
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    official_flags = ['-s', '2', '--bg_upsampler', 'realesrgan', '--bg_tile', '400', '-w', '0.5']
    code = infer_cli.main(['--aligned', '-i', str(inputs), '-o', str(tmp_path / 'out'), '--model-path',
                           small_checkpoint, '--batch-size', '2', '--suffix', 'x'] + official_flags)
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert errors == [f'error: {inputs / "c.png"}: skipped, its results would overwrite those of '
                      f'{inputs / "c.jpg"}', f'error: {inputs / "b.png"}: not a readable image']
    assert sorted(os.listdir(tmp_path / 'out' / 'restored_faces')) == ['a_00_x.png', 'c_00_x.png']
    assert cv2.imread(str(tmp_path / 'out' / 'restored_faces' / 'a_00_x.png')).shape == (32, 32, 3)
    assert (cv2.imread(str(tmp_path / 'out' / 'cropped_faces' / 'c_00.png')) == 60).all()  # c.jpg's, kept
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched
    leftovers = [f for _, _, files in os.walk(tmp_path / 'out') for f in files if not f.endswith('.png')]
    assert leftovers == []


@pytest.mark.parametrize('argv,message', [
    (['--aligned', '-i', 'no/such/dir'], 'no/such/dir: no such file or folder'),
    (['--aligned', '-i', EXAMPLES, '--model-path', 'missing.pth'], 'missing.pth: cannot open it: No such file'),
    (['-i', 'no/such/photo.jpg'], 'no/such/photo.jpg: no such file or folder'),
])
def test_usage_errors_are_one_line(argv, message, tmp_path, capsys):
    code = infer_cli.main(argv + ['-o', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith('error:') and message in err[0]


def test_api_restores_batches_deterministically(small_checkpoint):
    faces = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    restorer = FaceRestorer.from_checkpoint(small_checkpoint, noise='random', seed=3)
    first = restorer.restore(faces)
    assert first.dtype == np.uint8 and first.shape == faces.shape
    again = FaceRestorer.from_checkpoint(small_checkpoint, noise='random', seed=3).restore(faces)
    np.testing.assert_array_equal(first, again)
    # The same noise whatever the batch; only fp32 rounding of differently batched convolutions may differ.
    assert level_difference(first[1:], restorer.restore(faces[1:], indices=[1, 2])) <= 1
    assert level_difference(first[1:], restorer.restore(faces[1:])) > 1  # later faces draw new noise
    fixed = FaceRestorer.from_checkpoint(small_checkpoint, noise='fixed')
    assert level_difference(fixed.restore(faces)[1:], fixed.restore(faces[1:])) <= 1
    with pytest.raises(ValueError, match='expected uint8 faces'):
        restorer.restore(faces.astype(np.float32))


def test_random_noise_does_not_depend_on_batching(small_checkpoint, tmp_path):
    inputs = tmp_path / 'in'
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for name in 'abcd':
        cv2.imwrite(str(inputs / f'{name}.png'), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (inputs / 'e.png').write_bytes((inputs / 'a.png').read_bytes())
    (inputs / 'b2.png').write_bytes(b'broken')  # shifts every later face within its batch
    runs = {}
    for batch_size in (1, 3):
        out = tmp_path / f'out{batch_size}'
        assert infer_cli.main(['--aligned', '-i', str(inputs), '-o', str(out), '--model-path', small_checkpoint,
                               '--noise', 'random', '--seed', '5', '--batch-size', str(batch_size)]) == 1
        runs[batch_size] = {f: cv2.imread(str(out / 'restored_faces' / f))
                            for f in sorted(os.listdir(out / 'restored_faces'))}
    assert len(runs[1]) == 5 and runs[1].keys() == runs[3].keys()
    for name in runs[1]:  # the same noise; only fp32 rounding of differently batched convolutions may differ
        assert level_difference(runs[1][name], runs[3][name]) <= 1, name
    assert not np.array_equal(runs[1]['a_00.png'], runs[1]['e_00.png'])  # the same face, its own noise


def test_empty_input_and_bad_output_fail_before_any_work(small_checkpoint, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    for argv, message in (([str(empty), '-o', str(tmp_path / 'out')], 'no files in it'),
                          ([EXAMPLES, '-o', str(blocker / 'out')], 'Not a directory')):
        assert infer_cli.main(['--aligned', '--model-path', small_checkpoint, '-i'] + argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith('error:') and message in err[0], err


def test_api_apply_is_the_compiled_forward_pass(small_checkpoint):
    images = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    fixed = FaceRestorer.from_checkpoint(small_checkpoint, noise='fixed')
    out = fixed.apply(images)
    expected = fixed.model.apply(fixed.variables, images, noise='fixed')
    assert np.abs(np.asarray(out.image) - np.asarray(expected.image)).max() < 1e-5
    assert len(out.rgbs) == len(expected.rgbs) and out.latent.shape == expected.latent.shape
    restorer = FaceRestorer.from_checkpoint(small_checkpoint, noise='random')
    assert not np.allclose(restorer.apply(images).image, restorer.apply(images).image)  # fresh noise per call
    key = jax.random.key(4)
    np.testing.assert_array_equal(restorer.apply(images, key).image, restorer.apply(images, key).image)


def test_a_run_traces_one_program(small_checkpoint, tmp_path, monkeypatch):
    """The short last batch is padded to the batch shape, so five faces in batches of two compile once."""
    inputs = tmp_path / 'in'
    inputs.mkdir()
    for name in 'abcde':
        cv2.imwrite(str(inputs / f'{name}.png'), np.full((32, 32, 3), ord(name), np.uint8))
    traced = []
    trace = FaceRestorer._restore_faces
    monkeypatch.setattr(FaceRestorer, '_restore_faces',
                        lambda self, variables, faces, indices, fidelity: traced.append(faces.shape) or
                        trace(self, variables, faces, indices, fidelity))
    assert infer_cli.main(['--aligned', '-i', str(inputs), '-o', str(tmp_path / 'out'), '--model-path',
                           small_checkpoint, '--batch-size', '2']) == 0
    assert traced == [(2, 32, 32, 3)]
    assert len(os.listdir(tmp_path / 'out' / 'restored_faces')) == 5


def test_whole_photos(small_checkpoint, tmp_path, monkeypatch, capsys):
    grace_hopper = detection_rows([[[113, 98.5], [152.5, 97.5], [131.5, 122.5], [119, 138], [145, 137.5]]])
    monkeypatch.setattr(infer_cli.FaceDetector, 'from_pretrained',
                        classmethod(lambda cls: FixedDetector(grace_hopper)))
    monkeypatch.setattr(infer_cli.FaceParser, 'from_pretrained', classmethod(lambda cls: None))  # square masks
    home = tmp_path / 'home'  # the helper networks' files are there, so nothing is downloaded
    home.mkdir()
    for name in (infer_cli.FaceDetector.RELEASE, infer_cli.FaceParser.RELEASE):
        (home / f'{name}.pth').write_bytes(b'')
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(home))
    inputs = tmp_path / 'in'
    inputs.mkdir()
    photo = os.path.join(EXAMPLES, '..', 'photos', 'grace_hopper.jpg')
    (inputs / 'hopper.jpg').write_bytes(open(photo, 'rb').read())
    cv2.imwrite(str(inputs / 'plain.png'), np.full((60, 50, 3), 90, np.uint8))
    (inputs / 'broken.jpg').write_bytes(b'not a photo')
    out = tmp_path / 'out'
    code = infer_cli.main(['-i', str(inputs), '-o', str(out), '--model-path', small_checkpoint, '-s', '3',
                           '--suffix', 'x'])
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith('error:')] == [
        f'error: {inputs / "broken.jpg"}: not a readable image']
    assert any(line.startswith('note: no Real-ESRGAN background upsampling on the CPU') for line in err)
    assert sorted(os.listdir(out / 'restored_imgs')) == ['hopper_x.jpg', 'plain_x.png']
    assert cv2.imread(str(out / 'restored_imgs' / 'hopper_x.jpg')).shape == (900, 768, 3)
    assert sorted(os.listdir(out / 'restored_faces')) == ['hopper_00_x.png', 'plain_00_x.png']
    assert sorted(os.listdir(out / 'cmp')) == ['hopper_00.png', 'plain_00.png']
    assert cv2.imread(str(out / 'cmp' / 'hopper_00.png')).shape == (32, 64, 3)  # the small model's faces


def test_batched_restore_uses_no_grouped_convolutions(small_checkpoint):
    """Per-face random noise must not make per-face kernels: grouped convolutions are many times slower."""
    restorer = FaceRestorer.from_checkpoint(small_checkpoint, noise='random')
    faces = np.zeros((3, 32, 32, 3), np.uint8)
    text = restorer._restore_uint8.lower(restorer.variables, faces, np.arange(3, dtype=np.int32), None).as_text()
    groups = set(re.findall(r'feature_group_count = (\d+)', text))
    assert groups == {'1'}, groups
