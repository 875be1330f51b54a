"""`python -m gfpgan_jax.evaluate` over folders: pairing by name, reporting of unreadable and unmatched files, the
JSON, FID statistics saved once and reused, usage errors; with every network's official file laid out in the
cache (random weights, written by torch as the official files are) and fetched from there.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import official  # noqa: F401  (mends the official packages' imports; before torchvision and basicsr)
import torchvision
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from gfpgan.archs.arcface_arch import ResNetArcFace

from gfpgan_jax.cli.evaluate import main
from gfpgan_jax.evaluation import FIDStatistics, IdentityDistance, InceptionFeatures, LPIPS, niqe
from gfpgan_jax.evaluation import folders, synthesize
from gfpgan_jax.files import releases
from parity_utils import randomize
from test_evaluation_metrics import LPIPS_HEADS, NIQE_PARAMS, blurred, photos, random_fid_inception

ROOT = os.path.join(os.path.dirname(__file__), '..')


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    """A GFPGAN_JAX_HOME holding what the metrics fetch, under the official names."""
    home = tmp_path_factory.mktemp('cache')
    _, inception_state = random_fid_inception()
    torch.save(torchvision.models.alexnet().state_dict(), home / 'alexnet-owt-7be5be79.pth')
    shutil.copy(os.path.join(LPIPS_HEADS, 'alex.pth'), home / 'alex.pth')
    torch.save({key: torch.from_numpy(value) for key, value in inception_state.items()},
               home / 'pt_inception-2015-12-05-6726825d.pth')
    # As saved from a DataParallel-wrapped network, which basicsr's loader (and ours) unwraps.
    arcface = randomize(ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False))
    torch.save({f'module.{key}': value for key, value in arcface.state_dict().items()}, home / 'arcface_resnet18.pth')
    shutil.copy(NIQE_PARAMS, home / 'niqe_pris_params.npz')
    return home


def write(folder, name, image):
    folder.mkdir(exist_ok=True)
    assert cv2.imwrite(str(folder / name), np.ascontiguousarray(image[..., ::-1]))


@pytest.fixture(scope='module')
def folders_on_disk(tmp_path_factory):
    """gt: a, b, c, d; restored: a_00 (the official aligned-face name), b, c, e (no ground truth) and an
    unreadable broken.png; a text file that is not an image."""
    root = tmp_path_factory.mktemp('faces')
    faces = photos()
    faces = np.concatenate([faces, faces[:, :, ::-1]])
    restored = blurred(faces, 1.5)
    for name, image in zip('abcd', faces):
        write(root / 'gt', f'{name}.png' if name != 'd' else 'd.jpg', image)
    for name, image in zip(('a_00.png', 'b.png', 'c.png', 'e.png'), restored):
        write(root / 'restored', name, image)
    (root / 'restored' / 'broken.png').write_bytes(b'not a png')
    (root / 'restored' / 'notes.txt').write_text('ignored')
    return root


@pytest.fixture
def recorded_fid(monkeypatch):
    """Stands in for the 2048-d Frechet distance (scipy's sqrtm takes minutes on two cores; the distance itself
    is tested in test_evaluation_metrics.py): records the statistics it is given, returns 12.5."""
    calls = []

    def record(first, second):
        calls.append((first, second))
        return 12.5

    monkeypatch.setattr(folders, 'frechet_distance', record)
    return calls


def read(path):
    return cv2.imread(str(path))[..., ::-1]


def test_cli_evaluates_folders(cache, folders_on_disk, recorded_fid, monkeypatch, capsys):
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(cache))
    restored, gt = folders_on_disk / 'restored', folders_on_disk / 'gt'
    report, stats = folders_on_disk / 'metrics.json', folders_on_disk / 'gt_stats.npz'
    code = main(['--restored', str(restored), '--gt', str(gt), '--metrics', 'psnr,ssim,lpips,niqe,fid,identity',
                 '--lpips-net', 'alex', '--json', str(report), '--fid-stats', str(stats), '--batch-size', '2',
                 '--crop-border', '2'])
    out, err = capsys.readouterr()
    assert code == 1  # files were reported
    assert f'{restored / "broken.png"}: not a readable image' in err
    assert f'{restored / "e.png"}: no ground truth' in err
    assert f'{gt / "d.jpg"}: no restored image' in err
    assert 'notes.txt' not in err
    result = json.loads(report.read_text())
    assert set(result) == {'mean', 'per_image'}
    assert set(result['per_image']) == {'a_00.png', 'b.png', 'c.png', 'e.png'}
    assert set(result['per_image']['e.png']) == {'niqe'}
    pairs = [('a_00.png', 'a.png'), ('b.png', 'b.png'), ('c.png', 'c.png')]
    for name, gt_name in pairs:
        values = result['per_image'][name]
        ours, reference = read(restored / name), read(gt / gt_name)
        assert abs(values['psnr'] - calculate_psnr(ours[..., ::-1], reference[..., ::-1], 2)) < 1e-4
        assert abs(values['ssim'] - calculate_ssim(ours[..., ::-1], reference[..., ::-1], 2)) < 2e-6
    restored_images = np.stack([read(restored / name) for name, _ in pairs])
    gt_images = np.stack([read(gt / name) for _, name in pairs])
    np.testing.assert_allclose([result['per_image'][name]['lpips'] for name, _ in pairs],
                               LPIPS.from_pretrained('alex')(restored_images, gt_images), rtol=1e-5)
    np.testing.assert_allclose([result['per_image'][name]['identity'] for name, _ in pairs],
                               IdentityDistance.from_pretrained()(restored_images, gt_images), atol=1e-4)
    np.testing.assert_allclose([result['per_image'][name]['niqe'] for name, _ in pairs],
                               niqe(restored_images, 2, NIQE_PARAMS), rtol=1e-6)
    for metric in ('psnr', 'ssim', 'lpips', 'identity'):
        assert result['mean'][metric] == pytest.approx(np.mean([result['per_image'][n][metric] for n, _ in pairs]))
    assert result['mean']['niqe'] == pytest.approx(np.mean([row['niqe'] for row in result['per_image'].values()]))
    assert result['mean']['fid'] == 12.5
    # FID: every readable restored image against every ground truth, the unmatched d.jpg included.
    inception = InceptionFeatures.from_pretrained()
    (ours, reference), = recorded_fid
    all_restored = np.stack([read(restored / name) for name in ('a_00.png', 'b.png', 'c.png', 'e.png')])
    all_gt = np.stack([read(gt / name) for name in ('a.png', 'b.png', 'c.png', 'd.jpg')])
    np.testing.assert_allclose(ours.mu, FIDStatistics.of(inception(all_restored)).mu, atol=1e-5)
    np.testing.assert_allclose(reference.sigma, FIDStatistics.of(inception(all_gt)).sigma, atol=1e-6)
    saved = FIDStatistics.load(stats)
    np.testing.assert_array_equal(saved.sigma, reference.sigma)
    assert out.splitlines()[-7].split() == ['metric', 'mean', 'images', 'better']
    assert out.splitlines()[-2].split() == ['fid', '12.5000', '4', 'lower']

    # The Python API gives the same per-image values.
    evaluator = folders.Evaluator(('psnr', 'niqe'), crop_border=2, niqe_params=NIQE_PARAMS)
    values = evaluator.per_image(restored_images, gt_images)
    assert values['psnr'].tolist() == [result['per_image'][name]['psnr'] for name, _ in pairs]
    assert list(evaluator.per_image(restored_images)) == ['niqe']

    # A second run takes the saved statistics and needs no ground truth.
    recorded_fid.clear()
    assert main(['--restored', str(restored), '--metrics', 'fid', '--fid-stats', str(stats), '--batch-size', '2']) == 1
    (_, reloaded), = recorded_fid
    np.testing.assert_array_equal(reloaded.sigma, saved.sigma)


@pytest.mark.parametrize('arguments, message', [
    (['--metrics', 'psnr'], 'psnr need --gt'),
    (['--metrics', 'fid'], 'fid needs --gt, or --fid-stats'),
    (['--metrics', 'psnr,sharpness', '--gt', '.'], 'unknown metrics sharpness'),
    (['--metrics', 'niqe', '--batch-size', '0'], '--batch-size must be at least 1'),
    (['--metrics', 'niqe', '--crop-border', '-1'], '--crop-border must not be negative'),
    (['--metrics', 'niqe', '--gt', 'missing-folder'], '--gt missing-folder: not a folder'),
])
def test_cli_usage_errors(folders_on_disk, arguments, message, capsys):
    assert main(['--restored', str(folders_on_disk / 'restored')] + arguments) == 2
    assert message in capsys.readouterr().err


def test_cli_names_every_missing_file(folders_on_disk, tmp_path, monkeypatch, capsys):
    """Without a connection, one error names each file the chosen metrics need and where to put it."""
    def offline(url, path, timeout=30, instead=''):
        raise releases.DownloadError(f'cannot download {url} (offline); ' + instead.format(path=path))

    monkeypatch.setattr(releases, 'fetch', offline)
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(tmp_path / 'empty'))
    assert main(['--restored', str(folders_on_disk / 'restored'), '--gt', str(folders_on_disk / 'gt'),
                 '--metrics', 'lpips,niqe,fid,identity']) == 2
    err = capsys.readouterr().err
    assert 'cannot download 5 files' in err
    for name in ('vgg16-397923af.pth', 'vgg.pth', 'niqe_pris_params.npz', 'pt_inception-2015-12-05-6726825d.pth',
                 'arcface_resnet18.pth'):
        assert str(tmp_path / 'empty' / name) in err
    assert not (tmp_path / 'empty').exists()


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, '-m', 'gfpgan_jax.evaluate', '--restored', 'missing-folder',
                             '--metrics', 'niqe'], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert 'error: --restored missing-folder: not a folder' in result.stderr


def test_pairing_by_name():
    pairs, unmatched = folders.pair_by_name({'x_00': 'r/x_00.png', 'y': 'r/y.png', 'z_01': 'r/z_01.png'},
                                            {'x': 'g/x.png', 'y': 'g/y.jpg', 'z': 'g/z.png'})
    assert pairs == [('r/x_00.png', 'g/x.png'), ('r/y.png', 'g/y.jpg'), ('r/z_01.png', None)]
    assert unmatched == ['g/z.png']
    assert folders.parse_metrics(' PSNR, ssim,psnr ') == ('psnr', 'ssim')


def test_synthesize_builds_a_reproducible_set(folders_on_disk, tmp_path, capsys):
    """The CelebA-Test degradation (at 64 px, to keep the test small) of every readable face; the set does not
    depend on the batch size; the drawn degradations are recorded and within the paper's ranges."""
    faces = folders_on_disk / 'gt'
    (tmp_path / 'in').mkdir()
    for name in ('a.png', 'b.png', 'c.png'):
        shutil.copy(faces / name, tmp_path / 'in' / name)
    (tmp_path / 'in' / 'broken.png').write_bytes(b'not a png')
    assert synthesize.main(['--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'one'), '--size', '64',
                            '--batch-size', '2']) == 1
    assert 'broken.png: not a readable image' in capsys.readouterr().err
    assert synthesize.main(['--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'two'), '--size', '64',
                            '--batch-size', '3', '--seed', '0']) == 1
    for name in ('a.png', 'b.png', 'c.png'):
        gt, lq = read(tmp_path / 'one' / 'gt' / name), read(tmp_path / 'one' / 'lq' / name)
        assert gt.shape == lq.shape == (64, 64, 3)
        np.testing.assert_array_equal(gt, cv2.resize(read(faces / name), (64, 64), interpolation=cv2.INTER_AREA))
        np.testing.assert_array_equal(lq, read(tmp_path / 'two' / 'lq' / name))
        assert calculate_psnr(lq, gt, 0) < 40
    recorded = json.loads((tmp_path / 'one' / 'degradations.json').read_text())
    assert recorded['seed'] == 0 and set(recorded['faces']) == {'a.png', 'b.png', 'c.png'}
    for drawn in recorded['faces'].values():
        assert 0.2 <= drawn['sigma_x'] <= 10 and 1 <= drawn['scale'] <= 8
        assert 0 <= drawn['noise_sigma'] <= 15 and 60 <= drawn['jpeg_quality'] <= 100
    assert synthesize.main(['--input', str(tmp_path / 'missing'), '--output', str(tmp_path / 'x')]) == 2
