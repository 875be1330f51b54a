"""convert_weights.py: official .pth -> .safetensors without torch, the way back to .pth, and its one-line errors."""
import collections
import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

import official
from flax import traverse_util

from gfpgan_jax.convert import generator as convert
from gfpgan_jax.cli.convert import main
from gfpgan_jax.files.weights import load_converted, load_weights
from parity_utils import randomize

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'convert_weights.py'
SMALL = dict(out_size=32, num_style_feat=16, narrow=0.125, channel_multiplier=2, different_w=True, sft_half=True,
             input_is_latent=True, fix_decoder=False)


def _env():
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    env.pop('PYTHONPATH', None)
    return env


def start_cli(*args, block_torch=False):
    """convert_weights.py in a fresh interpreter; with block_torch, `import torch` fails in it."""
    if block_torch:
        code = ("import sys; sys.modules['torch'] = None; "
                f"sys.argv = {[str(SCRIPT), *map(str, args)]!r}; "
                f"import runpy; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
        command = [sys.executable, '-c', code]
    else:
        command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=120):
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_cli(*args, block_torch=False):
    return finish(start_cli(*args, block_torch=block_torch))


def official_module(seed):
    return randomize(official.gfpganv1_clean_arch.GFPGANv1Clean(**SMALL), seed)


def numpy_state(state_dict):
    return {k: v.detach().numpy() for k, v in state_dict.items()}


def assert_same_variables(ours, expected):
    ours, expected = traverse_util.flatten_dict(dict(ours)), traverse_util.flatten_dict(dict(expected))
    assert sorted(ours) == sorted(expected)
    for path, array in expected.items():
        assert ours[path].dtype == np.float32, path
        assert np.array_equal(ours[path], array), path


class _RunsCommand:
    """Unpickling it calls os.system, which would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(str(self.marker))}',)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """An official-layout checkpoint of a small randomized GFPGANv1Clean."""
    path = tmp_path_factory.mktemp('official') / 'small.pth'
    torch.save({'params_ema': official_module(seed=5).state_dict()}, path)
    return path


@pytest.fixture(scope='module')
def converted(checkpoint, tmp_path_factory):
    """The CLI's .safetensors of `checkpoint`, made in an interpreter where torch cannot be imported."""
    output = tmp_path_factory.mktemp('converted') / 'small.safetensors'
    result = run_cli('--input', checkpoint, '--output', output, block_torch=True)
    return result, output


def test_convert_without_torch(checkpoint, converted):
    result, output = converted
    assert result.returncode == 0, result.stderr
    assert 'Traceback' not in result.stderr
    assert f'{checkpoint} -> {output}' in result.stdout
    assert sorted(os.listdir(output.parent)) == ['small.safetensors']

    state = numpy_state(torch.load(checkpoint)['params_ema'])
    expected_config, expected = convert.convert_state_dict(state)
    config, variables = load_converted(output)
    assert config == expected_config == convert.detect_config(state)
    assert (config.arch, config.out_size, config.num_style_feat, config.narrow, config.channel_multiplier,
            config.different_w, config.sft_half, config.input_is_latent) == ('clean', 32, 16, 0.125, 2, True, True,
                                                                               True)
    assert_same_variables(variables, expected)


def test_round_trip_to_official_pth(checkpoint, converted, tmp_path):
    assert converted[0].returncode == 0, converted[0].stderr
    back = tmp_path / 'back.pth'
    result = run_cli('--input', converted[1], '--output', back)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ['back.pth']

    original = torch.load(checkpoint)['params_ema']
    exported = torch.load(back)
    assert list(exported) == ['params_ema']
    exported = exported['params_ema']
    assert sorted(exported) == sorted(original)
    for key, tensor in original.items():
        assert exported[key].dtype == tensor.dtype == torch.float32, key
        assert exported[key].shape == tensor.shape, key
        assert torch.equal(exported[key], tensor), key

    fresh = official_module(seed=6)  # different values, so the load below has to replace every one
    assert not torch.equal(fresh.conv_body_first.weight, original['conv_body_first.weight'])
    fresh.load_state_dict(exported, strict=True)
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, original[key]), key


def test_pth_to_pth_exports_the_official_layout(checkpoint, tmp_path):
    """An official checkpoint as input of an export: its weights, checked strictly, in a clean official file (a
    training checkpoint's `params` become `params_ema`, the rest of it is left out)."""
    original = torch.load(checkpoint)['params_ema']
    training = tmp_path / 'training.pth'
    torch.save({'params': original, 'iter': 5}, training)
    assert main(['--input', str(training), '--output', str(tmp_path / 'clean.pth')]) == 0
    exported = torch.load(tmp_path / 'clean.pth')
    assert list(exported) == ['params_ema'] and sorted(exported['params_ema']) == sorted(original)
    for key, tensor in original.items():
        assert torch.equal(exported['params_ema'][key], tensor), key


def test_no_input_is_latent_is_saved(checkpoint, tmp_path, capsys):
    output = tmp_path / 'not_latent.safetensors'
    assert main(['--input', str(checkpoint), '--output', str(output), '--no-input-is-latent']) == 0
    config, variables = load_converted(output)
    assert config.input_is_latent is False
    assert 'input_is_latent=False' in capsys.readouterr().out
    expected_config, expected = convert.convert_state_dict(numpy_state(torch.load(checkpoint)['params_ema']))
    assert config == dataclasses.replace(expected_config, input_is_latent=False)
    assert_same_variables(variables, expected)


def _missing_pth(tmp_path):
    return tmp_path / 'missing.pth', 'No such file or directory'


def _missing_safetensors(tmp_path):
    return tmp_path / 'missing.safetensors', 'No such file or directory'


def _garbage(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path, 'not a torch checkpoint'


def _garbage_safetensors(tmp_path):
    path = tmp_path / 'garbage.safetensors'
    path.write_bytes(b'\xff' * 64 + b'not safetensors')
    return path, 'cannot read it as safetensors'


def _foreign_safetensors(tmp_path):
    path = tmp_path / 'foreign.safetensors'
    safetensors.numpy.save_file({'weight': np.ones((2, 2), np.float32)}, str(path))
    return path, 'not a gfpgan-jax weights file'


def _counter(tmp_path):
    path = tmp_path / 'counter.pth'
    torch.save({'params_ema': collections.Counter({'conv_body_first.weight': 1})}, path)
    return path, 'collections.Counter'


def _runs_command(tmp_path):
    path = tmp_path / 'runs_command.pth'
    torch.save({'params_ema': _RunsCommand(tmp_path / 'marker')}, path)
    return path, 'system'


def _linear(tmp_path):
    path = tmp_path / 'linear.pth'
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    return path, 'not a GFPGAN generator'


def _linear_params_ema(tmp_path):
    path = tmp_path / 'linear_ema.pth'
    torch.save({'params_ema': torch.nn.Linear(3, 2).state_dict()}, path)
    return path, 'not a GFPGAN generator'


ERRORS = {
    'missing_pth': (_missing_pth, 'out.safetensors'),
    'missing_safetensors': (_missing_safetensors, 'out.pth'),
    'garbage': (_garbage, 'out.safetensors'),
    'garbage_safetensors': (_garbage_safetensors, 'out.pth'),
    'foreign_safetensors': (_foreign_safetensors, 'out.pth'),
    'counter_pickle': (_counter, 'out.safetensors'),
    'os_system_pickle': (_runs_command, 'out.safetensors'),
    'linear_state_dict': (_linear, 'out.safetensors'),
    'linear_params_ema': (_linear_params_ema, 'out.safetensors'),
}


def assert_one_error_line(stderr, path, detail):
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith('error: '), stderr
    assert str(path) in lines[0]
    assert detail in lines[0]
    assert 'Traceback' not in stderr


@pytest.mark.parametrize('case', ERRORS)
def test_errors(case, tmp_path, capsys):
    make, output_name = ERRORS[case]
    path, detail = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    assert main(['--input', str(path), '--output', str(tmp_path / output_name)]) == 2
    out, err = capsys.readouterr()
    assert out == ''
    assert_one_error_line(err, path, detail)
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file, no marker


def test_error_exit_code_of_the_script(tmp_path):
    """The real script, in its own process: exit status 2, one line, and the pickle's command never runs."""
    path, detail = _runs_command(tmp_path)
    marker = tmp_path / 'marker'
    result = run_cli('--input', path, '--output', tmp_path / 'out.safetensors')
    assert result.returncode == 2
    assert result.stdout == ''
    assert_one_error_line(result.stderr, path, detail)
    assert 'refuses to load' in result.stderr
    assert sorted(os.listdir(tmp_path)) == ['runs_command.pth']

    # The file is a live exploit: torch's full unpickler does run the command.
    torch.load(path, weights_only=False)
    assert marker.exists()


def _tampered_safetensors(converted, tmp_path, change):
    """A copy of the converted file with `change(tensors, metadata)` applied."""
    from safetensors import safe_open
    from safetensors.numpy import save_file
    with safe_open(str(converted[1]), framework='np') as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = dict(f.metadata())
    change(tensors, metadata)
    path = tmp_path / 'tampered.safetensors'
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize('change,detail', [
    (lambda t, m: t.pop('params/final_linear/bias'), '1 missing: params/final_linear/bias'),
    (lambda t, m: t.pop('noise/stylegan_decoder/noise0'), '1 missing: noise/stylegan_decoder/noise0'),
    (lambda t, m: t.update({'params/extra': np.zeros(2, np.float32)}), '1 unused: params/extra'),
    (lambda t, m: t.update({'params/final_linear/bias': np.zeros(2, np.float32)}), 'with the wrong shape'),
    (lambda t, m: m.pop('config'), 'architecture metadata is missing or malformed'),
    (lambda t, m: m.update(config='{"arch": "clean", "colour": 1}'), 'architecture metadata'),
])
def test_converted_files_are_checked_against_their_architecture(converted, tmp_path, capsys, change, detail):
    path = _tampered_safetensors(converted, tmp_path, change)
    assert main(['--input', str(path), '--output', str(tmp_path / 'out.pth')]) == 2
    assert_one_error_line(capsys.readouterr().err, path, detail)
    assert not (tmp_path / 'out.pth').exists()


def test_unwritable_output_is_one_line(checkpoint, tmp_path, capsys):
    output = tmp_path / 'no' / 'such' / 'dir' / 'x.safetensors'
    assert main(['--input', str(checkpoint), '--output', str(output)]) == 2
    assert_one_error_line(capsys.readouterr().err, output, 'cannot write it')


def test_overrides_apply_to_converted_files(converted):
    config, _ = load_weights(converted[1], input_is_latent=False)
    assert config.input_is_latent is False and load_weights(converted[1])[0].input_is_latent is True
