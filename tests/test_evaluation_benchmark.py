"""`python -m gfpgan_jax.evaluation.benchmark`: a synthetic set from the bundled faces, restored by a small
random-weight GFPGAN and scored; the paper's Table 1 layout, the JSON, the restored files, the Input row equal to
scoring the degraded faces directly, unreadable files reported, usage errors."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

import official
from gfpgan_jax.evaluation import benchmark, synthesize
from gfpgan_jax.evaluation.folders import Evaluator
from gfpgan_jax.inference.restorer import FaceRestorer
from parity_utils import randomize
from test_evaluation_cli import cache  # noqa: F401  (a fixture: the metrics' files, random weights)
from test_infer import EXAMPLES, save_checkpoint

SIZE = 256  # the smallest power of two on which NIQE has its two 96x96 blocks
# FID is left out: its Inception network alone would take this file's time budget (it is tested in
# test_evaluation_cli.py); the table then has no FID column.
METRICS = 'psnr,ssim,niqe,identity,lpips'
HEADINGS = ['Method', 'LPIPS↓', 'NIQE↓', 'Deg.↓', 'PSNR↑', 'SSIM↑']
DECIMALS = {'lpips': 4, 'niqe': 3, 'identity': 2, 'psnr': 2, 'ssim': 4}


@pytest.fixture(scope='module')
def face_set(tmp_path_factory):
    """The bundled aligned faces degraded as CelebA-Test at SIZE px, and an unreadable file among the inputs."""
    root = tmp_path_factory.mktemp('benchmark')
    assert synthesize.main(['--input', EXAMPLES, '--output', str(root / 'set'), '--size', str(SIZE)]) == 0
    (root / 'set' / 'lq' / 'broken.png').write_bytes(b'not a png')
    return root / 'set'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    module = randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(
        out_size=SIZE, num_style_feat=16, narrow=0.125, channel_multiplier=2, fix_decoder=False,
        input_is_latent=True, different_w=True, sft_half=True))
    return save_checkpoint(module, tmp_path_factory.mktemp('weights') / 'small.pth')


def test_restores_and_prints_table_1(face_set, checkpoint, cache, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv('GFPGAN_JAX_HOME', str(cache))
    evaluators = []  # the run's Evaluator, reused below: its networks are compiled once
    monkeypatch.setattr(benchmark, 'Evaluator', lambda *args, **kwargs: evaluators.append(Evaluator(*args, **kwargs))
                        or evaluators[-1])
    report = face_set / 'table1.json'
    code = benchmark.main(['--set', str(face_set), '--model-path', checkpoint, '--metrics', METRICS,
                           '--lpips-net', 'alex', '--json', str(report), '--batch-size', '2'])
    out, err = capsys.readouterr()
    assert code == 1  # the unreadable face was reported
    assert f'{face_set / "lq" / "broken.png"}: not a readable image' in err

    # The restored faces: named as their inputs, the model's output with the noise numbered by the input's place
    # among SET/lq's files (broken.png is the second).
    restored = face_set / 'restored_small'
    assert sorted(os.listdir(restored)) == ['astronaut.png', 'grace_hopper.png']
    lq = np.stack([cv2.imread(str(face_set / 'lq' / name))[..., ::-1] for name in sorted(os.listdir(restored))])
    expected = FaceRestorer.from_checkpoint(checkpoint, noise='random', seed=0).restore(lq, indices=[0, 2])
    for face, name in zip(expected, sorted(os.listdir(restored))):
        np.testing.assert_array_equal(cv2.imread(str(restored / name))[..., ::-1], face)

    # The JSON, and each row equal to the Evaluator run on its folder directly.
    result = json.loads(report.read_text())
    assert [row['name'] for row in result['rows']] == ['Input', 'small.pth']
    assert result['metrics'] == METRICS.split(',')
    for row, folder in zip(result['rows'], ('lq', 'restored_small')):
        direct = evaluators[0].evaluate_folders(str(face_set / folder), str(face_set / 'gt'), batch_size=2,
                                                  progress=False)
        assert set(row['per_image']) == {'astronaut.png', 'grace_hopper.png'}
        assert row['per_image'] == direct['per_image'] and row['mean'] == direct['mean']
        assert set(row['mean']) == set(DECIMALS)

    # The table, printed last: the paper's columns, arrows and decimals.
    lines = out.strip().splitlines()
    assert lines[-3].split() == HEADINGS
    for line, row in zip(lines[-2:], result['rows']):
        assert line.startswith(row['name'])
        cells = line[len(row['name']):].split()
        assert cells == [f'{row["mean"][metric]:.{DECIMALS[metric]}f}'
                         for metric in ('lpips', 'niqe', 'identity', 'psnr', 'ssim')]


@pytest.mark.parametrize('argv,message', [
    (['--set', 'no/such/set'], 'no/such/set/lq: not a folder'),
    (['--metrics', 'psnr,sharpness'], 'unknown metrics sharpness'),
    (['--batch-size', '0'], '--batch-size: must be at least 1'),
    (['--fidelity', '2'], '--fidelity: must be from 0 to 1'),
    (['--output', '{set}/lq'], "that is the set's own lq/"),
    (['--model-path', 'missing.pth'], 'missing.pth'),
])
def test_usage_errors_are_one_line(argv, message, face_set, capsys):
    argv = ['--set', str(face_set), '--metrics', 'psnr'] + [arg.format(set=face_set) for arg in argv]
    assert benchmark.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error:') and message in err[0]


def test_an_empty_set_is_a_usage_error(tmp_path, capsys):
    for folder in ('lq', 'gt'):
        (tmp_path / folder).mkdir()
    shutil.copy(os.path.join(EXAMPLES, 'astronaut.png'), tmp_path / 'gt')
    assert benchmark.main(['--set', str(tmp_path), '--metrics', 'psnr']) == 2
    assert f'{tmp_path / "lq"}: no images in it' in capsys.readouterr().err
