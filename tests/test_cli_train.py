"""`gfpgan-jax train`: the installed command's subcommand is `python train.py`, with its flags, its help, one-line
errors for a config file it cannot load, and absl's process-wide flags reset between two calls in one process.

The runs are subprocesses (XLA's flags must be set before JAX starts; see tests/test_trainer.py, whose settings
these share: backend optimisation off, one compilation cache for the runs). The installed command is imitated by
`python -I` (no current folder and no repository on the import path) calling gfpgan_jax.cli.main.main.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gfpgan_jax.cli import train as train_cli
from gfpgan_jax.cli.main import main as gfpgan_jax_command
from gfpgan_jax.training.export import numpy_item
from gfpgan_jax.training.monitoring import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two steps of batch 2 on the two example faces, a checkpoint at the end, no validation, no tensorboard.
FAST = ['--config.num_train_steps=2', '--config.batch_size=2', '--config.checkpoint_every_steps=2',
        '--config.validation.every_steps=0', '--config.tensorboard=False',
        f'--config.data.path={os.path.join(ROOT, "examples", "aligned")}']
TIMING = ('steps_per_s', 'images_per_s')
END = '=== exit status'
# Each argv of the JSON list through the installed command's main, in one process.
CALLS = f'''
import json, sys
from gfpgan_jax.cli.main import main
for argv in json.loads(sys.argv[1]):
    print('{END}', main(argv), flush=True)
'''


def environment(cache):
    return {**os.environ, 'JAX_PLATFORMS': 'cpu', 'GFPGAN_JAX_COMPILE_CACHE': cache,
            'XLA_FLAGS': '--xla_backend_optimization_level=0'}


def run(command, cache):
    done = subprocess.run(command, cwd=ROOT, env=environment(cache), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    return done.returncode, done.stdout


def outputs_of_calls(output):
    """Each call's output (a list of lines) and exit status."""
    calls, lines = [], []
    for line in output.splitlines():
        if line.startswith(END):
            calls.append((lines, int(line[len(END):])))
            lines = []
        else:
            lines.append(line)
    return calls


def state(workdir):
    flat = jax.tree_util.tree_leaves_with_path(numpy_item(os.path.join(workdir, 'checkpoints', '2', 'state')))
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def without_timing(records):
    return [{name: value for name, value in record.items() if name not in TIMING} for record in records]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """In one process of the installed command: three calls that fail before training, then run A (a metrics line
    per step) and run B (the same without --config.log_every_steps=1: one line at the end). Then run C, A's command
    as `python train.py`."""
    root = tmp_path_factory.mktemp('runs')
    cache = str(root / 'xla-cache')
    (root / 'recipes').mkdir()
    (root / 'recipes' / 'mine.py').write_text('from configs import tiny\n\n\ndef get_config():\n'
                                              '    return tiny.get_config()\n')
    tiny = ['--config', 'configs/tiny.py']  # from the repository's folder, which is not on the import path

    def logging_every_step(workdir):
        return [*tiny, '--workdir', str(workdir), *FAST, '--config.log_every_steps=1']

    calls = [['train', '--config', str(root / 'missing.py'), '--workdir', str(root / 'M')],
             ['train', '--config', str(root / 'recipes' / 'mine.py'), '--workdir', str(root / 'M')],
             ['train', *tiny, '--workdir', str(root / 'M'), '--config.num_train_step=2'],
             ['train', *logging_every_step(root / 'A')],
             ['train', *tiny, '--workdir', str(root / 'B'), *FAST]]
    code, output = run([sys.executable, '-I', '-c', CALLS, json.dumps(calls)], cache)
    assert code == 0, output[-3000:]
    script = run([sys.executable, 'train.py', *logging_every_step(root / 'C')], cache)
    return root, outputs_of_calls(output), script


def test_help_names_the_flags_and_exits_0(capsys):
    for call in (lambda: gfpgan_jax_command(['train', '--help']), lambda: train_cli.main(['-h'])):
        assert call() == 0
        out = capsys.readouterr().out
        assert 'gfpgan-jax train --config configs/NAME.py --workdir DIR' in out
        for flag in ('--config:', '--workdir:', '--coordinator_address:', '--num_processes:', '--process_id:',
                     '--[no]distributed:'):
            assert flag in out, flag
    assert gfpgan_jax_command(['--help']) == 0  # the command's list of subcommands
    assert any(line.split()[:2] == ['train', 'train'] for line in capsys.readouterr().out.splitlines())


def test_a_config_that_cannot_load_is_one_line(runs):
    root, calls, _ = runs
    (missing, missing_code), (outside, outside_code), (unknown, unknown_code) = calls[:3]
    assert missing_code == outside_code == unknown_code == 2
    assert missing == [f'error: config file {root / "missing.py"} not found: run from a checkout of the repository '
                       '(configs/ holds the recipes) or give the config file\'s path']
    # A recipe outside a checkout's configs/ folder cannot import its siblings.
    assert len(outside) == 1 and outside[0].startswith(f'error: config file {root / "recipes" / "mine.py"} cannot '
                                                       'be loaded: No module named \'configs\' (the recipes import')
    assert unknown == ['error: the config has no field \'num_train_step\'; Did you mean "num_train_steps" instead '
                       'of "num_train_step"? (see --help)']
    assert not os.path.exists(root / 'M')


def test_the_subcommand_trains_as_train_py_and_a_second_call_starts_afresh(runs):
    root, calls, (script_code, script_output) = runs
    assert [code for _, code in calls[3:]] == [0, 0], calls[3:]
    assert script_code == 0, script_output[-3000:]
    a, b, c = (read_metrics(root / name) for name in 'ABC')
    assert [r['step'] for r in a] == [1, 2] and all(r['skipped'] == 0 for r in a)
    # python train.py: the same run, to the bit.
    assert without_timing(c) == without_timing(a)
    state_a, state_c = state(root / 'A'), state(root / 'C')
    assert state_a.keys() == state_c.keys() and len(state_a) > 100
    for key in state_a:
        np.testing.assert_array_equal(state_c[key], state_a[key], err_msg=key)
    # The second call in the process kept none of the first's flags: its log interval is the config's (10), so its
    # one line at the end is the mean of A's two lines, which the same training gives exactly.
    assert [r['step'] for r in b] == [2]
    for name, value in b[0].items():
        if name.startswith(('l_', 'grad_norm', 'real_score', 'fake_score')):
            assert value == (0.0 + a[0][name] + a[1][name]) / 2, name
    assert sorted(os.listdir(root / 'B' / 'checkpoints')) == ['2']
