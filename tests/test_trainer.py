"""train.py end to end on the tiny config and real faces: data parallelism over 8 devices and two processes,
resumption to the bit, SIGTERM and kill -9, Ctrl-C on one host of two, bfloat16 compute, monitoring, the export of
the trained generator; and the configs.

Every run is a subprocess of `python train.py` (the device count must be set before JAX starts), with XLA's
backend optimisation off (compiling takes a third of the time on this CPU; both sides of every comparison are
compiled alike) and one compilation cache shared by the runs. The reference run A (one device, 8 steps) is
compared with:
  - a run killed -9 while writing its step-4 checkpoint, resumed from step 2, stopped by SIGTERM, resumed to 8:
    every parameter, optimizer state, data position and logged loss equal, to the bit;
  - the same training on 8 devices split over 2 processes (one jax.distributed job): the same steps up to float
    rounding of the reductions, whose order changes with the device count (tolerances below).
"""
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import cv2
import jax
import numpy as np
import pytest

import official  # noqa: F401  (first: the official GFPGANer below runs on the CPU torch)
from training_faces import HELD_OUT_JITTERS, write_faces

from gfpgan_jax.cli import infer as infer_cli
from gfpgan_jax.convert import generator as convert_generator
from gfpgan_jax.files.pth import save_pth
from gfpgan_jax.files.weights import save_converted
from gfpgan_jax.training import trainer
from gfpgan_jax.training.checkpoints import Checkpoints
from gfpgan_jax.training.export import load_run_weights, numpy_item
from gfpgan_jax.training.monitoring import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 64
STEPS = 8
# 8 devices on 2 processes against one device: the sums over the batch are taken in another order, so values
# differ by float32 rounding, which the GAN's steps then amplify. Every logged loss of the 4 steps: within 1e-4
# relative (reached 1.2e-5, at step 4; 4.5e-7 up to step 3). Every parameter and optimizer state after 2 steps:
# within 1e-5 absolute, but for the few numbers whose gradient is at the rounding floor, where Adam (beta1 0: each
# update is about lr * the gradient's sign) turns the rounding into a step the other way (tests/test_train_step.py
# compares in float64 for this reason): at most 1e-5 of the numbers (reached: 3 of 1.6 million, the largest 9e-5),
# none by more than 2 lr per step.
LOSS_RTOL = 1e-4
PARAM_ATOL = 1e-5
FLIPPED_FRACTION = 1e-5
# bfloat16 compute against float32 (run A), from the same start: every logged loss of the 2 steps within 2e-2
# relative (reached 5.4e-3 at step 1, 7.4e-3 at step 2: bfloat16 keeps 8 bits, 3.9e-3). Float32 computing in its
# place would give A's losses to the bit: each step's largest difference must be above 1e-3.
BF16_LOSS_RTOL = 2e-2
BF16_LOSS_FLOOR = 1e-3
LEARNING_RATE = 2e-3
COMMON = ['--config', 'configs/tiny.py', '--config.log_every_steps=1', '--config.checkpoint_every_steps=2',
          '--config.keep_checkpoints=10', '--config.validation.every_steps=4', '--config.validation.samples=4']


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
    folder = tmp_path_factory.mktemp('faces')
    write_faces(folder / 'train', SIZE)
    write_faces(folder / 'held_out', SIZE, HELD_OUT_JITTERS)
    return folder


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp('xla-cache'))


def environment(cache, devices=1):
    return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'GFPGAN_JAX_COMPILE_CACHE': cache,
            'XLA_FLAGS': f'--xla_backend_optimization_level=0 --xla_force_host_platform_device_count={devices}'}


def train_command(workdir, faces, steps, *extra):
    return [sys.executable, 'train.py', *COMMON, f'--workdir={workdir}', f'--config.data.path={faces / "train"}',
            f'--config.validation.path={faces / "held_out"}', f'--config.num_train_steps={steps}', *extra]


def start(command, cache, log, devices=1):
    """The command in the background, its output going to the file `log` (read by `finish`)."""
    with open(log, 'w') as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environment(cache, devices), stdout=out,
                                   stderr=subprocess.STDOUT, text=True)
    process.log = log
    return process


def output_of(process):
    with open(process.log) as f:
        return f.read()


def finish(process, expected=0, timeout=600):
    process.wait(timeout=timeout)
    output = output_of(process)
    assert process.returncode == expected, output[-3000:]
    return output


def free_port():
    with socket.socket() as s:
        s.bind(('localhost', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(faces, cache, tmp_path_factory):
    """The reference run A (one device). When it is done, the job D starts in the background (two processes of
    four devices each: eight devices, two hosts) while the tests that resume A's steps run."""
    root = tmp_path_factory.mktemp('runs')
    finish(start(train_command(root / 'A', faces, STEPS), cache, root / 'A.log'))
    multi = [f'--coordinator_address=localhost:{free_port()}', '--num_processes=2']
    job = [start(train_command(root / 'D', faces, 4, *multi, f'--process_id={index}', '--config.tensorboard=False'),
                 cache, root / f'D{index}.log', devices=4) for index in range(2)]
    yield root, job
    for process in job:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope='module')
def reference(runs):
    return runs[0] / 'A'


def state_at(workdir, step):
    return flatten(numpy_item(os.path.join(workdir, 'checkpoints', str(step), 'state')))


def data_at(workdir, step, process=0, processes=1):
    with open(os.path.join(workdir, 'checkpoints', str(step), 'data', f'process_{process}-of-{processes}.json')) as f:
        return json.load(f)


def flatten(tree):
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def worst_difference(a, b):
    assert a.keys() == b.keys()
    return max((float(np.max(np.abs(a[key].astype(np.float64) - b[key]))), key) for key in a if a[key].size)


def losses(workdir):
    return {record['step']: {k: v for k, v in record.items() if k.startswith('l_')}
            for record in read_metrics(workdir) if 'l_g_total' in record}


def test_the_reference_run_trains_and_reports(reference):
    records = read_metrics(reference)
    logged = [r for r in records if 'l_g_total' in r]
    assert [r['step'] for r in logged] == list(range(1, STEPS + 1))
    # The restoration losses fall from the random start.
    first, last = logged[0], logged[-1]
    for name in ('l_g_pix', 'l_p_64', 'l_p_32'):
        assert last[name] < 0.7 * first[name], (name, first[name], last[name])
    assert all(r['skipped'] == 0 and r['lr_g'] == 2e-3 for r in logged)
    assert all(r['images_per_s'] > 0 for r in logged[1:])
    validation = [r for r in records if 'val_psnr' in r]
    assert [r['step'] for r in validation] == [4, 8]
    assert all(np.isfinite(r['val_psnr']) and 0 < r['val_ssim'] <= 1 for r in validation)
    assert validation[-1]['val_psnr'] > validation[0]['val_psnr']
    grid = cv2.imread(str(reference / 'samples' / 'samples_00000008.png'))
    assert grid.shape == (4 * SIZE + 6, 3 * SIZE + 4, 3)
    assert os.listdir(reference / 'tensorboard')
    assert Checkpoints(reference / 'checkpoints', read_only=True).all_steps() == [2, 4, 6, 8]


SLOW_SAVE = '''
import runpy, sys, time
from gfpgan_jax.training import checkpoints
save = checkpoints.ProcessJsonHandler.save
def slow_save(self, directory, args):
    save(self, directory, args)
    if args.item['batches'] == 4:
        print('WRITING STEP 4', flush=True)
        time.sleep(600)
checkpoints.ProcessJsonHandler.save = slow_save
sys.argv = sys.argv[1:]
runpy.run_path('train.py', run_name='__main__')
'''


def wait_for(predicate, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, output_of(process)[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_run_stopped_and_resumed_is_the_run_that_never_stopped(reference, faces, cache, tmp_path):
    """Killed -9 while writing its step-4 checkpoint, the run restarts from step 2, the last complete one; stopped
    there by SIGTERM after step 5, it saves and exits; resumed again it finishes the 8 steps. Parameters, optimizer
    states, the data position and every logged loss equal the run that never stopped, to the bit."""
    workdir = tmp_path / 'E'
    command = train_command(workdir, faces, STEPS)
    process = start([sys.executable, '-c', SLOW_SAVE, *command[1:]], cache, tmp_path / 'killed.log')
    wait_for(lambda: 'WRITING STEP 4' in output_of(process), process)
    assert any(name.startswith('4.') for name in os.listdir(workdir / 'checkpoints'))  # orbax's temporary folder
    process.kill()
    process.wait()
    assert Checkpoints(workdir / 'checkpoints', read_only=True).latest_step() == 2

    # Resumed, then stopped by SIGTERM once step 5 is logged: it saves where it stopped and exits 128 + 15.
    process = start(command, cache, tmp_path / 'stopped.log')
    wait_for(lambda: any(r['step'] >= 5 for r in _metrics_or_nothing(workdir)), process)
    process.send_signal(signal.SIGTERM)
    output = finish(process, expected=128 + signal.SIGTERM)
    stopped = Checkpoints(workdir / 'checkpoints', read_only=True).latest_step()
    assert 5 <= stopped < STEPS and 'on SIGTERM' in output

    output = finish(start(command, cache, tmp_path / 'finished.log'))
    assert f'resumed from step {stopped}' in output
    for step in (6, STEPS):
        assert_identical(state_at(workdir, step), state_at(reference, step))
        assert data_at(workdir, step) == data_at(reference, step)
    assert losses(workdir) == losses(reference)


def _metrics_or_nothing(workdir):
    try:
        return read_metrics(workdir)
    except (OSError, ValueError):
        return []


def test_eight_devices_on_two_processes_train_as_one_device(runs, reference):
    root, job = runs
    for process in job:
        finish(process)
    other = root / 'D'
    expected, got = losses(reference), losses(other)
    assert sorted(got) == [1, 2, 3, 4]
    for step, values in got.items():
        for name, value in values.items():
            assert abs(value - expected[step][name]) <= LOSS_RTOL * max(abs(expected[step][name]), 1e-3), (step, name)
    ours, theirs = state_at(other, 2), state_at(reference, 2)
    differences = np.concatenate([np.abs(ours[key].astype(np.float64) - theirs[key]).ravel() for key in ours])
    assert np.mean(differences > PARAM_ATOL) <= FLIPPED_FRACTION, np.sort(differences)[-20:]
    assert differences.max() <= 2 * 2 * LEARNING_RATE, worst_difference(ours, theirs)
    # Each process read its half of the same faces.
    shards = [data_at(other, 4, process, 2) for process in range(2)]
    assert [(s['shard_index'], s['host_batch_size'], s['batches']) for s in shards] == [(0, 4, 4), (1, 4, 4)]


def test_bfloat16_compute_trains_float32_parameters_as_float32_does(reference, faces, cache, tmp_path):
    """--config.dtype=bfloat16: two steps with every loss finite and no update skipped, the parameters (and
    everything else the checkpoint and the export hold) float32 as in the float32 run A, moved by each step; the
    losses those of A up to bfloat16's rounding: different from A's, but by little."""
    workdir = tmp_path / 'B'
    finish(start(train_command(workdir, faces, 2, '--config.dtype=bfloat16', '--config.checkpoint_every_steps=1'),
                 cache, tmp_path / 'B.log'))
    logged = [r for r in read_metrics(workdir) if 'l_g_total' in r]
    assert [r['step'] for r in logged] == [1, 2]
    assert all(r['skipped'] == 0 for r in logged)
    ours, expected = losses(workdir), losses(reference)
    assert all(np.isfinite(value) for values in ours.values() for value in values.values()), ours
    for step, values in ours.items():
        differences = {name: abs(value - expected[step][name]) / max(abs(expected[step][name]), 1e-3)
                       for name, value in values.items()}
        assert BF16_LOSS_FLOOR < max(differences.values()) and max(differences.values()) <= BF16_LOSS_RTOL, (
            step, differences)

    ours, float32 = state_at(workdir, 2), state_at(reference, 2)
    dtypes = lambda state: {key: value.dtype for key, value in state.items()}  # noqa: E731
    assert dtypes(ours) == dtypes(float32)  # parameters, EMA and Adam's moments: float32 all
    params = [key for key in float32 if key.startswith(("['generator']", "['discriminator']"))]
    assert params and all(float32[key].dtype == np.float32 for key in params)
    # Step 2 moved every parameter that A's steps 3 and 4 moved (all but the style MLP: the clean generator's
    # decoder takes its latents as they are).
    moved = lambda before, after: {key for key in params if np.any(before[key] != after[key])}  # noqa: E731
    assert moved(state_at(workdir, 1), ours) == moved(float32, state_at(reference, 4))
    _, exported = load_run_weights(workdir)
    assert {leaf.dtype for leaf in jax.tree.leaves(exported)} == {np.dtype(np.float32)}


def test_ctrl_c_on_one_host_stops_every_host_at_one_checkpoint_and_the_job_resumes(runs, faces, cache, tmp_path):
    """SIGINT to process 1 of the two-process job D's setup (not the coordinator): both processes stop after the
    same step, write one checkpoint there with both data positions, and exit with 128 + the signal (process 0,
    which only learned of it through the step: SIGTERM's); the same command resumes from it and finishes."""
    root, job = runs
    for process in job:  # D's programs are in the compilation cache once it is done; and the cores are free
        process.wait(timeout=600)
    workdir = tmp_path / 'I'

    def launch(steps, name):
        multi = [f'--coordinator_address=localhost:{free_port()}', '--num_processes=2', '--config.tensorboard=False',
                 '--config.validation.every_steps=0']
        return [start(train_command(workdir, faces, steps, *multi, f'--process_id={index}'), cache,
                      tmp_path / f'{name}{index}.log', devices=4) for index in range(2)]

    processes = launch(50, 'interrupted')
    try:
        # Process 0 logs step 1 only once both processes ran it, inside the loop that the signal handlers cover.
        wait_for(lambda: any(r['step'] >= 1 for r in _metrics_or_nothing(workdir)), processes[0])
        processes[1].send_signal(signal.SIGINT)
        outputs = [finish(process, expected, timeout=120)
                   for process, expected in zip(processes, (128 + signal.SIGTERM, 128 + signal.SIGINT))]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    checkpoints = workdir / 'checkpoints'
    stopped = Checkpoints(checkpoints, read_only=True).latest_step()
    assert f'stopped at step {stopped} on another host\'s signal' in outputs[0]
    assert stopped < 50 and max(r['step'] for r in read_metrics(workdir)) == stopped
    assert all(name.isdigit() for name in os.listdir(checkpoints)), os.listdir(checkpoints)  # no partial step
    # Each process wrote its own data position there, having read `stopped` batches.
    assert [data_at(workdir, stopped, index, 2)['batches'] for index in range(2)] == [stopped, stopped]

    # Up to the stop, the job trained as D did, to the bit.
    trained, same_job = losses(workdir), losses(root / 'D')
    assert all(trained[step] == same_job[step] for step in range(1, min(stopped, 4) + 1))

    outputs = [finish(process) for process in launch(stopped + 1, 'resumed')]
    assert f'resumed from step {stopped}' in outputs[0]
    assert Checkpoints(checkpoints, read_only=True).latest_step() == stopped + 1
    assert sorted(losses(workdir)) == list(range(1, stopped + 2))


def test_exported_weights_restore_faces_through_infer(reference, tmp_path):
    config, variables = load_run_weights(reference)
    assert config.out_size == SIZE
    weights = tmp_path / 'tiny.safetensors'
    save_converted(weights, config, variables)
    # The degraded held-out faces of the step-8 sample grid, restored by infer.py, must come out as the trainer's
    # validation restored them (the same EMA generator, stored noise).
    grid = cv2.imread(str(reference / 'samples' / 'samples_00000008.png'))
    pitch = SIZE + 2
    faces = tmp_path / 'faces'
    faces.mkdir()
    for row in range(4):
        cv2.imwrite(str(faces / f'face{row}.png'), grid[row * pitch:row * pitch + SIZE, :SIZE])
    assert infer_cli.main(['--aligned', '-i', str(faces), '-o', str(tmp_path / 'out'), '--model-path', str(weights),
                           '--noise', 'fixed', '--no-compile-cache']) == 0
    for row in range(4):
        ours = cv2.imread(str(tmp_path / 'out' / 'restored_faces' / f'face{row}_00.png'))
        expected = grid[row * pitch:row * pitch + SIZE, pitch:pitch + SIZE]
        assert np.abs(ours.astype(int) - expected).max() <= 1, row


def test_an_exported_pth_loads_into_the_official_gfpganer(tmp_path, monkeypatch):
    """A checkpoint of the clean fine-tuning recipe at 512 px (channel multiplier 1, random EMA weights), exported
    to .pth: the official GFPGANer loads it strictly, holds our EMA weights, and restores a face with them."""
    import gfpgan.utils
    import torch
    from test_infer import _AlignedOnlyFaceHelper

    config = trainer_config('configs/train_gfpgan_clean.py', **{'model.channel_multiplier': 1})
    recipe = trainer.build_recipe(config)
    state, noise = jax.eval_shape(lambda key: trainer.create_train_state(recipe.networks, key), jax.random.key(0))
    random = np.random.default_rng(0)
    fill = lambda tree: jax.tree.map(lambda x: (random.standard_normal(x.shape) * 0.05).astype(x.dtype), tree)  # noqa: E731
    # Random EMA weights and noise (what is exported), zeros elsewhere (quick to make and to write).
    state = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state).replace(generator_ema=fill(state.generator_ema))
    noise = fill(noise)
    checkpoints = Checkpoints(tmp_path / 'run' / 'checkpoints')
    checkpoints.save(1, state, noise, trainer.checkpoint_meta(config, recipe.model), {'batches': 1}, force=True)
    checkpoints.close()

    model_config, variables = load_run_weights(tmp_path / 'run')
    assert model_config == recipe.model
    path = tmp_path / 'finetuned.pth'
    save_pth(convert_generator.export_state_dict(model_config, variables), path)
    monkeypatch.setattr(gfpgan.utils, 'FaceRestoreHelper', _AlignedOnlyFaceHelper)
    restorer = gfpgan.utils.GFPGANer(model_path=str(path), upscale=1, arch='clean', channel_multiplier=1,
                                     device=torch.device('cpu'))  # load_state_dict(strict=True) inside
    expected = convert_generator.export_state_dict(model_config, {'params': state.generator_ema, 'noise': noise})
    loaded = restorer.gfpgan.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)
    face = cv2.imread(os.path.join(ROOT, 'examples', 'aligned', 'astronaut.png'))
    restored = restorer.enhance(face, has_aligned=True)[1][0]
    assert restored.shape == (512, 512, 3) and restored.std() > 0


def trainer_config(path, **overrides):
    config = runpy.run_path(os.path.join(ROOT, path))['get_config']()
    for key, value in overrides.items():
        section = config
        *parents, name = key.split('.')
        for parent in parents:
            section = section[parent]
        section[name] = value
    return config


# The values of options/train_gfpgan_v1.yml (GFPGAN's repository) that the configs carry.
OFFICIAL_V1 = dict(
    network_g=dict(out_size=512, num_style_feat=512, channel_multiplier=1, resample_kernel=(1, 3, 3, 1), num_mlp=8,
                   lr_mlp=0.01, input_is_latent=True, different_w=True, narrow=1, sft_half=True),
    network_d=dict(channel_multiplier=1, resample_kernel=(1, 3, 3, 1)),
    lr=2e-3, milestones=(600000, 700000), gamma=0.5, total_iter=800000, batch=3 * 4, manual_seed=0,
    objective=dict(pixel_weight=0.1, pyramid_loss_weight=1, remove_pyramid_loss=50000,
                   perceptual_layers=(('conv1_2', 0.1), ('conv2_2', 0.1), ('conv3_4', 1), ('conv4_4', 1),
                                      ('conv5_4', 1)),
                   perceptual_weight=1, style_weight=50, perceptual_criterion='l1', gan_weight=0.1, r1_reg_weight=10,
                   net_d_reg_every=16, component_gan_weight=1, comp_style_weight=200, identity_weight=10),
    save_checkpoint_freq=5000, print_freq=100, val_freq=5000)


def test_the_v1_config_is_the_official_recipe():
    from gfpgan_jax.data.degradations import TRAINING
    from gfpgan_jax.models.options import ModelConfig
    from gfpgan_jax.training.objective import Objective
    config = trainer_config('configs/train_gfpgan_v1.py')
    model = ModelConfig.from_config(config.model)
    assert model.arch == 'original' and config.fix_decoder
    assert {name: getattr(model, name) for name in OFFICIAL_V1['network_g']} == OFFICIAL_V1['network_g']
    assert (config.num_train_steps, config.batch_size, config.seed) == (
        OFFICIAL_V1['total_iter'], OFFICIAL_V1['batch'], OFFICIAL_V1['manual_seed'])
    assert set(config.learning_rates.values()) == {OFFICIAL_V1['lr']}
    assert (tuple(config.milestones), config.gamma) == (OFFICIAL_V1['milestones'], OFFICIAL_V1['gamma'])
    assert Objective.from_config(config.objective) == Objective(**OFFICIAL_V1['objective'])
    assert (config.checkpoint_every_steps, config.log_every_steps, config.validation.every_steps) == (
        OFFICIAL_V1['save_checkpoint_freq'], OFFICIAL_V1['print_freq'], OFFICIAL_V1['val_freq'])
    recipe = trainer.build_recipe(config)
    assert recipe.degradation == TRAINING  # the dataset options; tests/test_degradations.py checks them
    discriminator = recipe.networks.discriminator
    assert (discriminator.channel_multiplier, discriminator.resample_kernel) == tuple(
        OFFICIAL_V1['network_d'].values())
    assert discriminator.stddev_group == 3  # min(4, the 3 faces per GPU)
    simple = Objective.from_config(trainer_config('configs/train_gfpgan_v1_simple.py').objective)
    assert not simple.uses_components and simple.identity_weight == 0
    assert simple == Objective(**{**OFFICIAL_V1['objective'], 'component_gan_weight': 0, 'comp_style_weight': 0,
                                  'identity_weight': 0})


def test_every_config_builds(tmp_path):
    for name in ('train_gfpgan_v1', 'train_gfpgan_v1_simple', 'train_gfpgan_clean', 'tiny'):
        recipe = trainer.build_recipe(trainer_config(f'configs/{name}.py'))
        assert recipe.degradation.out_size == recipe.model.out_size
    clean = trainer.build_recipe(trainer_config('configs/train_gfpgan_clean.py'))
    assert (clean.model.arch, clean.model.channel_multiplier) == ('clean', 2)


@pytest.mark.parametrize('overrides, message', [
    ({'batch_size': 6, 'discriminator.stddev_group': 4}, 'min(batch_size, discriminator.stddev_group) = 4'),
    ({'objective.component_gan_weight': 1.0}, 'crop 512 px faces'),
    ({'dtype': 'float16'}, 'dtype must be one of'),
    ({'degradation.blur_kernel_size': 10}, 'odd blur_kernel_size'),
])
def test_bad_configs_are_refused_in_one_line(overrides, message):
    with pytest.raises(trainer.TrainingError, match=message.replace('(', r'\(').replace(')', r'\)')):
        trainer.build_recipe(trainer_config('configs/tiny.py', **overrides))


def test_a_batch_that_does_not_split_over_the_devices_is_refused():
    from gfpgan_jax.training.mesh import check_batch_size
    mesh = SimpleNamespace(devices=np.zeros(8))
    with pytest.raises(ValueError, match='does not divide evenly over the 8 devices'):
        check_batch_size(12, mesh, process_count=1)
    with pytest.raises(ValueError, match='over the 3 processes'):
        check_batch_size(16, SimpleNamespace(devices=np.zeros(4)), process_count=3)
    assert check_batch_size(16, mesh, process_count=2) == 8


@pytest.mark.filterwarnings('ignore:no facial component boxes')
def test_the_batch_is_put_in_data_order_and_the_data_position_moves_to_another_host_count(faces):
    """Two hosts read positions 0, 2, 4, ... and 1, 3, 5, ... of each global batch; data_order puts the global rows
    back in position order, and a one-host data position continues on two hosts with the faces one host reads."""
    from gfpgan_jax.data.pipeline import FaceBatches
    from gfpgan_jax.data.sources import FolderFaces

    class Device(SimpleNamespace):
        __hash__ = object.__hash__

    class TwoHostSharding:  # 8 rows over 4 devices, the first two on host 0
        def devices_indices_map(self, shape):
            return {Device(process_index=d // 2): (slice(2 * d, 2 * d + 2),) for d in range(4)}
    order = trainer.data_order(TwoHostSharding(), 8, 2)
    source = FolderFaces(faces / 'train', SIZE)
    one = FaceBatches(source, 8, seed=3, threads=0)
    two = [FaceBatches(source, 4, seed=3, shard_index=h, shard_count=2, threads=0) for h in range(2)]
    for _ in range(2):
        next(one)
    for host in two:
        host.set_state(trainer.resharded_data_state(one.get_state(), host.get_state()))
    for _ in range(3):  # across an epoch's end (12 faces)
        rows = np.concatenate([next(host)['index'] for host in two])  # the global batch, host 0's rows first
        np.testing.assert_array_equal(rows[order], next(one)['index'])


def test_several_non_finite_steps_in_a_row_stop_the_run_naming_the_last_checkpoint(tmp_path):
    config = trainer_config('configs/tiny.py', max_consecutive_skips=3)
    said = []
    monitor = SimpleNamespace(workdir=str(tmp_path), say=said.append, scalars=lambda *a, **k: None)
    log = trainer._Log(config, monitor, latest_checkpoint=lambda: 4)
    metrics = lambda skipped: {'l_g_total': np.float32(np.nan if skipped else 1.0), 'skipped': np.int32(skipped),  # noqa: E731
                               'stop': np.int32(0)}
    for step, skipped in enumerate([1, 1, 0, 1, 1], start=5):  # a finite step breaks the run of skips
        assert log.record(step, metrics(skipped)) is False
    assert said[0] == 'step 5: a loss is not finite; the update was skipped'
    with pytest.raises(trainer.Diverged, match=r'steps 8 to 10 all had a non-finite loss, so the run stops at step 10; '
                                               r'the last good checkpoint: step 4, .*checkpoints/4'):
        log.record(10, metrics(1))
